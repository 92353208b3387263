/*
 * router/nl_proto.c — the node stream's control elements, its
 * authentication MAC and the lease-context table (router/nodelink-int.h has
 * the protocol). No I/O here: router/nodelink.c drives the links, and the
 * unit tests drive these directly.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include "router/nodelink-int.h"
#include "router/cfg.h"

const char nl_ctrl_ok[] = "<ok xmlns='" NL_NS "'/>";

static bool name_is(const struct xml_stanza *st, const char *s)
{
	size_t n = strlen(s);
	return st->name.n == n && !memcmp(st->name.p, s, n);
}

/* The root element's attributes: what follows its qualified name. */
static struct xml_span root_attrs(const struct xml_stanza *st)
{
	const char *a = st->name.p + st->name.n;
	return (struct xml_span){a, (uint32_t)(st->raw.p + st->raw.n - a)};
}

static bool parse_token(struct xml_span v, uint64_t *out)
{
	uint64_t t = 0;
	if (!v.n || v.n > 20)
		return false;
	for (uint32_t i = 0; i < v.n; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return false;
		uint64_t d = (uint64_t)(v.p[i] - '0');
		if (t > (UINT64_MAX - d) / 10)
			return false;
		t = t * 10 + d;
	}
	*out = t;
	return true;
}

/* r= and t= of <lease/> and <refused/>: a normalised remote and a token. */
static bool parse_lease(const struct xml_stanza *st, struct nl_ctrl *out)
{
	struct xml_span a = root_attrs(st), r, t;
	if (!xml_attr_get(a, "r", &r) || !xml_attr_get(a, "t", &t) || !parse_token(t, &out->token))
		return false;
	out->rn = r.n ? cfg_domain_normalise(r.p, r.n, out->remote, sizeof(out->remote)) : -1;
	return out->rn > 0;
}

void nl_ctrl_parse(const struct xml_stanza *st, struct nl_ctrl *out)
{
	out->kind = NL_C_STANZA;
	out->rn = 0;
	out->token = 0;
	out->text = (struct xml_span){NULL, 0};
	if (st->ns.n != sizeof(NL_NS) - 1 || memcmp(st->ns.p, NL_NS, sizeof(NL_NS) - 1))
		return;
	out->kind = NL_C_BAD;
	if (name_is(st, "auth")) {
		const char *gt = memchr(st->raw.p, '>', st->raw.n);
		const char *end = st->raw.p + st->raw.n;
		if (st->flags & XML_ST_EMPTY || !gt)
			return;
		const char *lt = end;
		while (lt > gt && lt[-1] != '<')
			lt--;
		if (lt - 1 <= gt + 1)
			return; /* no text */
		out->text = (struct xml_span){gt + 1, (uint32_t)(lt - 1 - (gt + 1))};
		out->kind = NL_C_AUTH;
	} else if (name_is(st, "ok")) {
		out->kind = NL_C_OK;
	} else if (name_is(st, "lease")) {
		if (parse_lease(st, out))
			out->kind = NL_C_LEASE;
	} else if (name_is(st, "refused")) {
		if (parse_lease(st, out))
			out->kind = NL_C_REFUSED;
	} else if (name_is(st, "a")) {
		struct xml_span h;
		if (xml_attr_get(root_attrs(st), "h", &h) && parse_token(h, &out->token) && out->token <= UINT32_MAX)
			out->kind = NL_C_ACK;
	}
}

static int fit(int k, size_t cap)
{
	return k < 0 || (size_t)k >= cap ? -1 : k;
}

int nl_ctrl_lease(char *out, size_t cap, const char *remote, size_t rn, uint64_t token)
{
	return fit(snprintf(out, cap, "<lease xmlns='" NL_NS "' r='%.*s' t='%" PRIu64 "'/>", (int)rn, remote, token),
		   cap);
}

int nl_ctrl_refused(char *out, size_t cap, const char *remote, size_t rn, uint64_t token)
{
	return fit(snprintf(out, cap, "<refused xmlns='" NL_NS "' r='%.*s' t='%" PRIu64 "'/>", (int)rn, remote, token),
		   cap);
}

int nl_ctrl_auth(char *out, size_t cap, const char *mac)
{
	return fit(snprintf(out, cap, "<auth xmlns='" NL_NS "'>%s</auth>", mac), cap);
}

int nl_ctrl_ack(char *out, size_t cap, uint32_t h)
{
	return fit(snprintf(out, cap, "<a xmlns='" NL_NS "' h='%" PRIu32 "'/>", h), cap);
}

void nl_mac(const unsigned char *secret, size_t slen, const char *role, const char *id_conn, const char *id_acc,
	    const char *from_conn, const char *from_acc, char *out)
{
	static const char hex[] = "0123456789abcdef";
	const char *parts[] = {role, id_conn, id_acc, from_conn, from_acc};
	unsigned char mac[WC_SHA256_DIGEST_SIZE];
	Hmac hmac;
	wc_HmacInit(&hmac, NULL, INVALID_DEVID);
	wc_HmacSetKey(&hmac, WC_SHA256, secret, (word32)slen);
	wc_HmacUpdate(&hmac, (const byte *)"fedhub-node ", 12);
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		wc_HmacUpdate(&hmac, (const byte *)parts[i], (word32)strlen(parts[i]) + (i + 1 < 5)); /* NUL between */
	wc_HmacFinal(&hmac, mac);
	wc_HmacFree(&hmac);
	for (int i = 0; i < WC_SHA256_DIGEST_SIZE; i++) {
		out[2 * i] = hex[mac[i] >> 4];
		out[2 * i + 1] = hex[mac[i] & 15];
	}
	out[NL_MAC_HEX] = 0;
}

bool nl_mac_ok(struct xml_span got, const char *want)
{
	if (got.n != NL_MAC_HEX)
		return false;
	unsigned char d = 0;
	for (int i = 0; i < NL_MAC_HEX; i++)
		d |= (unsigned char)(got.p[i] ^ want[i]);
	return d == 0;
}

/* ---- lease contexts ------------------------------------------------------ */

struct nl_ctx_ent *nl_ctx_find(const struct nl_ctx *t, const char *d, size_t n, uint32_t hv)
{
	if (!t->cap)
		return NULL;
	for (uint32_t i = hv & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		struct nl_ctx_ent *e = &t->v[i];
		if (!e->len)
			return NULL;
		if (e->hash == hv && e->len == n && !memcmp(e->name, d, n))
			return e;
	}
}

static int grow(struct nl_ctx *t)
{
	uint32_t cap = t->cap ? t->cap * 2 : 16;
	struct nl_ctx_ent *v = calloc(cap, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < t->cap; i++) {
		struct nl_ctx_ent *e = &t->v[i];
		if (!e->len)
			continue;
		uint32_t j = e->hash & (cap - 1);
		while (v[j].len)
			j = (j + 1) & (cap - 1);
		v[j] = *e;
	}
	free(t->v);
	t->v = v;
	t->cap = cap;
	return 0;
}

int nl_ctx_put(struct nl_ctx *t, const char *d, size_t n, uint32_t hv, uint64_t token)
{
	struct nl_ctx_ent *e = nl_ctx_find(t, d, n, hv);
	if (e) {
		e->token = token;
		return 0;
	}
	if (!n || n >= CFG_NAME_MAX)
		return -EINVAL;
	if (t->n >= NL_CTX_MAX)
		return -ENOSPC;
	if ((t->n + 1) * 4 > t->cap * 3 && grow(t) < 0) /* load at most 3/4 */
		return -ENOMEM;
	char *name = malloc(n + 1);
	if (!name)
		return -ENOMEM;
	memcpy(name, d, n);
	name[n] = 0;
	uint32_t i = hv & (t->cap - 1);
	while (t->v[i].len)
		i = (i + 1) & (t->cap - 1);
	t->v[i] = (struct nl_ctx_ent){hv, (uint16_t)n, token, name};
	t->n++;
	return 0;
}

void nl_ctx_clear(struct nl_ctx *t)
{
	for (uint32_t i = 0; i < t->cap; i++)
		free(t->v[i].name);
	free(t->v);
	*t = (struct nl_ctx){0};
}

/* ---- the connector's ring ------------------------------------------------ */

int nl_ring_push(struct nl_ring *r, const struct nl_ua *e, uint32_t max)
{
	if (r->len >= max)
		return -ENOBUFS;
	if (r->len == r->cap) {
		uint32_t ncap = r->cap ? r->cap * 2 : 64;
		struct nl_ua *v = malloc(ncap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		for (uint32_t i = 0; i < r->len; i++)
			v[i] = r->v[(r->head + i) & (r->cap - 1)];
		free(r->v);
		r->v = v;
		r->head = 0;
		r->cap = ncap;
	}
	r->v[(r->head + r->len) & (r->cap - 1)] = *e;
	r->len++;
	r->pend_bytes += e->n;
	return 0;
}

struct nl_ua *nl_ring_pending(struct nl_ring *r)
{
	return r->nsent < r->len ? &r->v[(r->head + r->nsent) & (r->cap - 1)] : NULL;
}

void nl_ring_mark_sent(struct nl_ring *r)
{
	struct nl_ua *e = nl_ring_pending(r);
	if (!e)
		return;
	r->nsent++;
	r->pend_bytes -= e->n;
	r->sent_bytes += e->n;
}

int nl_ring_ack(const struct nl_ring *r, uint32_t h)
{
	uint32_t d = h - r->acked; /* modulo 2^32 */
	return d > r->nsent ? -EPROTO : (int)d;
}

struct nl_ua nl_ring_pop(struct nl_ring *r)
{
	struct nl_ua e = r->v[r->head];
	r->head = (r->head + 1) & (r->cap - 1);
	r->len--;
	if (r->nsent) {
		r->nsent--;
		r->acked++;
		r->sent_bytes -= e.n;
	} else {
		r->pend_bytes -= e.n;
	}
	return e;
}

void nl_ring_free(struct nl_ring *r)
{
	free(r->v);
	uint32_t acked = r->acked;
	*r = (struct nl_ring){0};
	r->acked = acked;
}
