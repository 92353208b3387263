/*
 * router/s2s.c — server-to-server streams (RFC 6120) with Server Dialback
 * (XEP-0220, keys per XEP-0185), inbound and outbound.
 *
 * Three kinds of connection:
 *   inbound  (SESS_S2S_IN)  a remote server's stream to us. Each (remote,
 *            local) pair it claims with <db:result/> is checked by a verify
 *            connection and then carries stanzas; several pairs may share the
 *            stream (piggybacking). It also answers <db:verify/> for keys we
 *            gave out on our outbound links: XEP-0185 keys need no state.
 *   outbound (SESS_S2S_OUT) our stream to a remote domain, one per remote
 *            domain on the worker that owns it in the routing table. Every
 *            local domain that sends to that remote is one pair on it; its
 *            stanzas queue (bounded) until the pair is valid, and are bounced
 *            if the link cannot be made.
 *   verify   (SESS_VERIFY)  a short stream to a remote's authoritative server
 *            carrying one <db:verify/>, on the inbound session's worker.
 *
 * Address checks on inbound stanzas live in route.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/coding.h>

#include "router/hub.h"
#include "net/log.h"
#include "net/tls.h"

#define STREAM_NS "xmlns:stream='http://etherx.jabber.org/streams'"
#define NS_TLS    "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL   "urn:ietf:params:xml:ns:xmpp-sasl"

enum link_state { L_IDLE, L_RESOLVING, L_CONNECTING, L_OPEN, L_BACKOFF };

struct qitem {
	struct net_buf *b;
	const char *p;
	uint32_t n;
};

struct lpair {
	char *local;
	uint8_t state; /* enum pair_state */
	struct qitem *q;
	uint32_t qlen, qcap;
	uint64_t since;      /* PENDING: db:result sent; INVALID: refused */
	struct s2s_out *alt; /* a link of its own for this local domain */
};

struct s2s_out {
	char *remote;
	/* A peer that takes SASL EXTERNAL but no dialback can authenticate one
	 * local domain per stream: every other local domain then gets a link of
	 * its own, an `alt` hanging off its pair, outside the table. */
	struct s2s_out *parent;
	bool peer_dialback;
	bool unlinked; /* out of the table: only its memory is left */
	struct s2s_out *hnext;
	struct sess *sess;
	uint8_t state;
	bool dns_pending;
	bool dead; /* remove once DNS comes back */
	struct lpair *lp;
	int nlp;
	uint32_t queued;
	struct dns_target t[DNS_MAX_TARGETS];
	int nt, next_t;
	int last_fail; /* enum hub_sterr for bounces */
	uint32_t backoff_ms;
	uint64_t retry_at;
	uint64_t last_activity;
	uint64_t last_keepalive;
};

struct verify {
	struct net_ref in; /* the inbound session waiting for the answer */
	char *remote, *local, *key, *id;
	struct dns_target t[DNS_MAX_TARGETS];
	int nt, next_t;
	struct sess *sess;
	bool dns_pending;
	bool done;
};

/* DNS requests carry one of these as their cookie. */
struct dns_wait {
	struct dns_req req;
	struct s2s_out *link;
	struct verify *v;
};

static void link_try_next(struct hubw *h, struct s2s_out *L);
static void out_start_dialback(struct hubw *h, struct s2s_out *L);
static void verify_try_next(struct hubw *h, struct verify *v);

/* ---- dialback keys (XEP-0185) -------------------------------------- */

void dialback_key(const char *receiving, const char *originating, const char *id, char out[65])
{
	Hmac hmac;
	unsigned char mac[WC_SHA256_DIGEST_SIZE];
	wc_HmacInit(&hmac, NULL, INVALID_DEVID);
	wc_HmacSetKey(&hmac, WC_SHA256, (const byte *)hub_dialback_key, 64);
	wc_HmacUpdate(&hmac, (const byte *)receiving, (word32)strlen(receiving));
	wc_HmacUpdate(&hmac, (const byte *)" ", 1);
	wc_HmacUpdate(&hmac, (const byte *)originating, (word32)strlen(originating));
	wc_HmacUpdate(&hmac, (const byte *)" ", 1);
	wc_HmacUpdate(&hmac, (const byte *)id, (word32)strlen(id));
	wc_HmacFinal(&hmac, mac);
	wc_HmacFree(&hmac);
	hex_encode(mac, WC_SHA256_DIGEST_SIZE, out);
}

static bool key_ok(struct xml_span got, const char *want)
{
	size_t n = strlen(want);
	if (got.n != n)
		return false;
	unsigned char d = 0;
	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(got.p[i] ^ want[i]);
	return d == 0;
}

static int norm_attr(struct xml_span v, bool esc, char *out, size_t cap)
{
	if (!v.n)
		return -1;
	return jid_domain(v, esc, out, cap);
}

/* ---- static routes and resolution ---------------------------------- */

static const struct cfg_route *static_route(const char *domain)
{
	for (int i = 0; i < hub_cfg->nroutes; i++)
		if (strcmp(hub_cfg->routes[i].name, domain) == 0)
			return &hub_cfg->routes[i];
	return NULL;
}

/* Fill targets from a [route]; returns true if the domain has one. */
static bool route_targets(const char *domain, struct dns_target *t, int *nt)
{
	const struct cfg_route *r = static_route(domain);
	if (!r)
		return false;
	*nt = 0;
	for (int i = 0; i < r->nconnect && *nt < DNS_MAX_TARGETS; i++) {
		memcpy(&t[*nt].ss, &r->connect[i].ss, r->connect[i].len);
		t[*nt].len = r->connect[i].len;
		(*nt)++;
	}
	return true;
}

static void resolve(struct hubw *h, const char *domain, struct s2s_out *L, struct verify *v)
{
	struct dns_wait *dw = calloc(1, sizeof(*dw));
	snprintf(dw->req.domain, sizeof(dw->req.domain), "%s", domain);
	dw->link = L;
	dw->v = v;
	dw->req.cookie = dw;
	MET_INC(h->m, dns_queries);
	if (dns_submit(h->w, &dw->req) < 0) {
		dw->req.status = -EAGAIN;
		s2s_on_dns(h, &dw->req);
	}
}

/* ---- outbound links ------------------------------------------------ */

static uint32_t link_slot(struct hubw *h, const char *remote)
{
	return rt_hash(remote, strlen(remote)) & (h->nlinks_cap - 1);
}

static struct s2s_out *link_find(struct hubw *h, const char *remote)
{
	if (!h->nlinks_cap)
		return NULL;
	for (struct s2s_out *L = h->links[link_slot(h, remote)]; L; L = L->hnext)
		if (strcmp(L->remote, remote) == 0)
			return L;
	return NULL;
}

static struct s2s_out *link_new(struct hubw *h, const char *remote)
{
	if (!h->nlinks_cap) {
		h->nlinks_cap = 1024;
		h->links = calloc(h->nlinks_cap, sizeof(*h->links));
	}
	struct s2s_out *L = calloc(1, sizeof(*L));
	L->remote = strdup(remote);
	L->backoff_ms = hub_cfg->retry_min * 1000;
	L->last_activity = net_now_ms();
	uint32_t s = link_slot(h, remote);
	L->hnext = h->links[s];
	h->links[s] = L;
	h->nlinks++;
	return L;
}

/* Take L out of everything, drop what it holds, and free it, or leave the
 * memory to s2s_on_dns() when a lookup for it is still out. */
static void link_free(struct hubw *h, struct s2s_out *L)
{
	if (!L->unlinked) {
		L->unlinked = true;
		if (!L->parent) {
			struct s2s_out **pp = &h->links[link_slot(h, L->remote)];
			while (*pp && *pp != L)
				pp = &(*pp)->hnext;
			if (*pp)
				*pp = L->hnext;
			h->nlinks--;
			rt_s2s_release(L->remote, (uint16_t)net_worker_id(h->w));
		}
		if (L->sess) { /* e.g. an alt still connected while its parent goes */
			struct sess *s = L->sess;
			L->sess = NULL;
			s->link = NULL;
			sess_sendf(s, "</stream:stream>");
			net_close(s->c, true);
		}
		for (int i = 0; i < L->nlp; i++) {
			if (L->lp[i].alt)
				link_free(h, L->lp[i].alt);
			L->lp[i].alt = NULL;
			for (uint32_t k = 0; k < L->lp[i].qlen; k++)
				net_buf_unref(h->w, L->lp[i].q[k].b);
			L->lp[i].qlen = 0;
		}
		L->queued = 0;
	}
	if (L->dns_pending) {
		L->dead = true;
		return;
	}
	for (int i = 0; i < L->nlp; i++) {
		free(L->lp[i].q);
		free(L->lp[i].local);
	}
	free(L->lp);
	free(L->remote);
	free(L);
}

static struct lpair *link_pair(struct s2s_out *L, const char *local)
{
	for (int i = 0; i < L->nlp; i++)
		if (strcmp(L->lp[i].local, local) == 0)
			return &L->lp[i];
	L->lp = realloc(L->lp, (size_t)(L->nlp + 1) * sizeof(*L->lp));
	struct lpair *p = &L->lp[L->nlp++];
	memset(p, 0, sizeof(*p));
	p->local = strdup(local);
	return p;
}

static void pair_bounce_queue(struct hubw *h, struct s2s_out *L, struct lpair *p, enum hub_sterr err)
{
	for (uint32_t k = 0; k < p->qlen; k++) {
		route_bounce_raw(h, p->q[k].p, p->q[k].n, err);
		net_buf_unref(h->w, p->q[k].b);
	}
	L->queued -= p->qlen;
	p->qlen = 0;
}

static void pair_flush(struct hubw *h, struct s2s_out *L, struct lpair *p)
{
	for (uint32_t k = 0; k < p->qlen; k++) {
		/* the queue's reference moves to the connection's queue */
		if (net_send_slice_take(L->sess->c, p->q[k].b, p->q[k].p, p->q[k].n) < 0) {
			route_bounce_raw(h, p->q[k].p, p->q[k].n, STERR_RESOURCE_CONSTRAINT);
			net_buf_unref(h->w, p->q[k].b);
		} else {
			MET_INC(h->m, stanzas_routed);
		}
	}
	L->queued -= p->qlen;
	p->qlen = 0;
}

static void send_db_result(struct hubw *h, struct s2s_out *L, struct lpair *p)
{
	char key[65];
	dialback_key(L->remote, p->local, L->sess->stream_id, key);
	sess_sendf(L->sess, "<db:result from='%s' to='%s'>%s</db:result>", p->local, L->remote, key);
	p->state = PAIR_PENDING;
	p->since = net_now_ms();
}

/* The link failed: bounce everything queued and back off. */
static void link_fail(struct hubw *h, struct s2s_out *L, enum hub_sterr err, const char *why)
{
	log_info(0, "s2s out %s: failed: %s", L->remote, why);
	MET_INC(h->m, s2s_out_failed);
	L->last_fail = err;
	for (int i = 0; i < L->nlp; i++) {
		pair_bounce_queue(h, L, &L->lp[i], err);
		L->lp[i].state = PAIR_NONE;
	}
	L->state = L_BACKOFF;
	L->retry_at = net_now_ms() + L->backoff_ms;
	L->backoff_ms *= 2;
	if (L->backoff_ms > hub_cfg->retry_max * 1000)
		L->backoff_ms = hub_cfg->retry_max * 1000;
}

static void link_start(struct hubw *h, struct s2s_out *L)
{
	L->next_t = 0;
	if (route_targets(L->remote, L->t, &L->nt)) {
		link_try_next(h, L);
		return;
	}
	L->state = L_RESOLVING;
	L->dns_pending = true;
	resolve(h, L->remote, L, NULL);
}

/* Outbound TLS policy: the [route]'s, else s2s_tls. */
static enum cfg_tls_mode out_tls_policy(const char *remote)
{
	const struct cfg_route *r = static_route(remote);
	if (!hub_tls)
		return CFG_TLS_OFF;
	return r ? r->tls : hub_cfg->s2s_tls;
}

static void link_try_next(struct hubw *h, struct s2s_out *L)
{
	while (L->next_t < L->nt) {
		struct dns_target *t = &L->t[L->next_t++];
		struct sess *s = sess_new(SESS_S2S_OUT);
		s->tls_policy = (uint8_t)out_tls_policy(L->remote);
		const struct cfg_route *sr = static_route(L->remote);
		s->direct_tls = (sr && sr->direct_tls) || t->tls;
		s->link = L;
		s->remote = strdup(L->remote);
		s->local = strdup(L->nlp ? L->lp[0].local : hub_cfg->hub_domain);
		s->tok.authenticated = true; /* we chose to talk to it */
		struct net_conn *c = net_connect(h->w, (struct sockaddr *)&t->ss, t->len, &s2s_out_ops, s);
		if (!c) {
			sess_free(s);
			continue;
		}
		s->c = c;
		MET_INC(hubw_of(c->w)->m, conns_open);
		c->deadline = net_now_ms() + hub_cfg->connect_timeout * 1000;
		L->sess = s;
		L->state = L_CONNECTING;
		L->peer_dialback = true; /* until its features say otherwise */
		return;
	}
	link_fail(h, L, STERR_REMOTE_SERVER_NOT_FOUND, L->nt ? "no address could be reached" : "no address");
}

/* A stanza for `remote` from our domain `local`. Consumes the reference on b. */
void s2s_link_enqueue(struct hubw *h, const char *remote, const char *local, struct net_buf *b, const char *p, size_t n)
{
	struct s2s_out *L = link_find(h, remote);
	enum hub_sterr bounce;
	if (!L) {
		/* make sure the table names us as the owner (it may have been
		 * released while the message was on its way) */
		int owner = rt_s2s_claim(remote, strlen(remote), (uint16_t)net_worker_id(h->w));
		if (owner >= 0 && owner != net_worker_id(h->w)) {
			bounce = STERR_RESOURCE_CONSTRAINT;
			goto bounce;
		}
		L = link_new(h, remote);
	}
	L->last_activity = net_now_ms();
	struct lpair *pr = link_pair(L, local);
	if (pr->alt) {
		L = pr->alt;
		pr = &L->lp[0];
		L->last_activity = net_now_ms();
	}
	if (L->state == L_OPEN && pr->state == PAIR_VALID && !pr->qlen) {
		if (net_send_slice_take(L->sess->c, b, p, n) < 0) {
			MET_INC(h->m, send_queue_full);
			bounce = STERR_RESOURCE_CONSTRAINT;
			goto bounce;
		}
		MET_INC(h->m, stanzas_routed);
		return;
	}
	if (L->state == L_BACKOFF) {
		if (net_now_ms() < L->retry_at) {
			bounce = (enum hub_sterr)L->last_fail;
			goto bounce;
		}
		L->state = L_IDLE;
	}
	if (pr->state == PAIR_INVALID) {
		if (net_now_ms() - pr->since < (uint64_t)hub_cfg->retry_min * 1000) {
			bounce = STERR_REMOTE_SERVER_NOT_FOUND;
			goto bounce;
		}
		pr->state = PAIR_NONE; /* try again */
	}
	if (L->queued >= hub_cfg->link_queue_max) {
		MET_INC(h->m, send_queue_full);
		bounce = STERR_RESOURCE_CONSTRAINT;
		goto bounce;
	}
	if (pr->qlen == pr->qcap) {
		pr->qcap = pr->qcap ? pr->qcap * 2 : 16;
		pr->q = realloc(pr->q, pr->qcap * sizeof(*pr->q));
	}
	if (b->bid >= 0) {
		/* a link may take seconds to come up: do not hold a receive
		 * buffer (the worker's, or another's) for that long, keep a copy */
		struct net_buf *cb = net_buf_new(h->w, n);
		if (!cb) {
			bounce = STERR_RESOURCE_CONSTRAINT;
			goto bounce;
		}
		memcpy(cb->data, p, n);
		cb->len = (uint32_t)n;
		net_buf_unref(h->w, b);
		b = cb;
		p = cb->data;
	}
	pr->q[pr->qlen++] = (struct qitem){b, p, (uint32_t)n}; /* the queue holds the reference */
	L->queued++;
	if (L->state == L_IDLE)
		link_start(h, L);
	else if (L->state == L_OPEN && pr->state == PAIR_NONE && L->sess && L->sess->got_features)
		out_start_dialback(h, L);
	return;
bounce:
	route_bounce_raw(h, p, n, bounce);
	net_buf_unref(h->w, b);
}

static void out_open_stream(struct sess *s)
{
	sess_sendf(s,
		   "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " STREAM_NS
		   " xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>",
		   s->local, s->remote);
}

static void out_on_connect(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (err) {
		log_info(c->id, "s2s out %s: connect failed: %s", s->remote, strerror(-err));
		return; /* on_close follows and tries the next address */
	}
	(void)h;
	log_debug(c->id, "s2s out %s: connected%s", s->remote, s->direct_tls ? " (direct TLS)" : "");
	if (s->direct_tls && hub_tls) {
		struct tls_conn *t = tls_conn_new(hub_tls, false, s->remote, s->local);
		if (!t) {
			net_close(c, false);
			return;
		}
		net_start_tls(c, t, true); /* the stream opens once the handshake is done */
		return;
	}
	out_open_stream(s);
}

/* The outbound handshake finished: check the certificate, open the stream. */
static void out_on_tls(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (err) {
		MET_INC(h->m, tls_failures);
		log_warn(c->id, "s2s out %s: TLS failed: %s", s->remote,
			 c->tls ? tls_error(c->tls) : tls_strerror(err));
		return; /* the connection closes; on_close tries the next address or fails */
	}
	MET_INC(h->m, tls_handshakes);
	s->tls_on = true;
	int v = tls_peer_verify_domain(c->tls, s->remote);
	log_info(c->id, "s2s out %s: %s %s%s, certificate %s", s->remote, tls_version(c->tls), tls_cipher(c->tls),
		 tls_resumed(c->tls) ? " (resumed)" : "", v == 0 ? "valid" : tls_strerror(v));
	xml_tok_reset(&s->tok);
	s->got_features = false;
	out_open_stream(s);
}

static void link_start(struct hubw *h, struct s2s_out *L);

/* A link of its own for pair p of L, which carries its queue along. */
static void pair_to_alt(struct hubw *h, struct s2s_out *L, struct lpair *p)
{
	struct s2s_out *A = calloc(1, sizeof(*A));
	if (!A)
		return;
	A->remote = strdup(L->remote);
	A->parent = L;
	A->backoff_ms = hub_cfg->retry_min * 1000;
	A->last_activity = net_now_ms();
	A->lp = calloc(1, sizeof(*A->lp));
	A->nlp = 1;
	A->lp[0] = *p; /* the queue moves */
	A->lp[0].local = strdup(p->local);
	A->lp[0].alt = NULL;
	A->lp[0].state = PAIR_NONE;
	A->queued = p->qlen;
	L->queued -= p->qlen;
	p->q = NULL;
	p->qlen = p->qcap = 0;
	p->alt = A;
	log_info(L->sess ? L->sess->c->id : 0, "s2s out %s: no dialback offered; %s gets a link of its own", L->remote,
		 p->local);
	link_start(h, A);
}

static void out_start_dialback(struct hubw *h, struct s2s_out *L)
{
	for (int i = 0; i < L->nlp; i++) {
		struct lpair *p = &L->lp[i];
		if (p->state != PAIR_NONE || p->alt)
			continue;
		if (L->peer_dialback) {
			send_db_result(h, L, p);
		} else if (!L->parent) {
			pair_to_alt(h, L, p);
		} else {
			/* a link of its own already, and neither SASL nor dialback */
			log_warn(L->sess ? L->sess->c->id : 0, "s2s out %s -> %s: peer offers no way to authenticate",
				 p->local, L->remote);
			p->state = PAIR_INVALID;
			p->since = net_now_ms();
			pair_bounce_queue(h, L, p, STERR_REMOTE_SERVER_NOT_FOUND);
		}
	}
}

static void out_give_up(struct hubw *h, struct sess *s, const char *why)
{
	struct s2s_out *L = s->link;
	if (L) {
		L->sess = NULL;
		link_fail(h, L, STERR_REMOTE_SERVER_NOT_FOUND, why);
	}
	s->link = NULL;
	sess_sendf(s, "</stream:stream>");
	net_close(s->c, true);
}

static void out_features(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	s->got_features = true;
	struct s2s_out *L = s->link;
	bool offers_tls = memmem(st->raw.p, st->raw.n, NS_TLS, sizeof(NS_TLS) - 1) != NULL;
	if (!s->tls_on) {
		if (offers_tls && s->tls_policy != CFG_TLS_OFF) {
			/* RFC 6120 §5.4.2.1 */
			sess_sendf(s, "<starttls xmlns='" NS_TLS "'/>");
			s->starttls_sent = true;
			return;
		}
		if (s->tls_policy == CFG_TLS_REQUIRED) {
			log_warn(s->c->id, "s2s out %s: peer offers no STARTTLS and TLS is required", s->remote);
			out_give_up(h, s, "TLS required, not offered");
			return;
		}
		/* RFC 6120 §5.3.1: STARTTLS marked <required/> cannot be skipped. */
		if (offers_tls && memmem(st->raw.p, st->raw.n, "<required", 9)) {
			log_warn(s->c->id, "s2s out %s: peer requires STARTTLS and TLS is off here", s->remote);
			out_give_up(h, s, "peer requires TLS");
			return;
		}
	}
	if (!L)
		return;
	L->state = L_OPEN;
	/* XEP-0288: ask for a bidirectional stream before authenticating, so
	 * the peer sends its stanzas for us over this link too */
	if (!s->bidi && memmem(st->raw.p, st->raw.n, "urn:xmpp:features:bidi", 22)) {
		sess_sendf(s, "<bidi xmlns='urn:xmpp:bidi'/>");
		s->bidi = true;
		log_debug(s->c->id, "s2s out %s: bidirectional (XEP-0288)", s->remote);
	}
	{
		bool offers_db = memmem(st->raw.p, st->raw.n, "urn:xmpp:features:dialback", 26) != NULL;
		bool offers_ext = s->tls_on && memmem(st->raw.p, st->raw.n, "EXTERNAL", 8) != NULL;
		/* servers that predate the dialback feature still do dialback;
		 * one that offers SASL EXTERNAL and not dialback does not (and
		 * after SASL the restarted stream's features name neither) */
		if (offers_db)
			L->peer_dialback = true;
		else if (offers_ext)
			L->peer_dialback = false;
	}
	/* XEP-0178: SASL EXTERNAL for the first local domain our certificate covers,
	 * when the peer's certificate is good too (it will check ours). */
	if (s->tls_on && !s->sasl_domain && !s->sasl_sent &&
	    memmem(st->raw.p, st->raw.n, NS_SASL, sizeof(NS_SASL) - 1) && memmem(st->raw.p, st->raw.n, "EXTERNAL", 8)) {
		for (int i = 0; i < L->nlp; i++) {
			if (L->lp[i].state != PAIR_NONE || !tls_ctx_has_name(hub_tls, L->lp[i].local))
				continue;
			byte b64[CFG_NAME_MAX * 2];
			word32 bl = sizeof(b64);
			const char *d = L->lp[i].local;
			if (Base64_Encode_NoNl((const byte *)d, (word32)strlen(d), b64, &bl) != 0)
				break;
			sess_sendf(s, "<auth xmlns='" NS_SASL "' mechanism='EXTERNAL'>%.*s</auth>", (int)bl, b64);
			s->sasl_sent = true;
			s->sasl_domain = strdup(d);
			L->lp[i].state = PAIR_PENDING;
			return; /* dialback for the others once SASL is done */
		}
	}
	out_start_dialback(h, L);
}

static void out_sasl_result(struct hubw *h, struct sess *s, bool ok)
{
	struct s2s_out *L = s->link;
	s->sasl_sent = false;
	struct lpair *p = NULL;
	if (L)
		for (int i = 0; i < L->nlp; i++)
			if (s->sasl_domain && strcmp(L->lp[i].local, s->sasl_domain) == 0)
				p = &L->lp[i];
	if (ok) {
		/* RFC 6120 §6.4.6: the stream restarts */
		log_info(s->c->id, "s2s out %s -> %s: authenticated (SASL EXTERNAL)", s->sasl_domain, s->remote);
		MET_INC(h->m, s2s_out_links);
		xml_tok_reset(&s->tok);
		s->got_features = false;
		free(s->local);
		s->local = strdup(s->sasl_domain);
		out_open_stream(s);
		if (p) {
			p->state = PAIR_VALID;
			if (L)
				L->backoff_ms = hub_cfg->retry_min * 1000;
			pair_flush(h, L, p);
		}
	} else {
		log_info(s->c->id, "s2s out %s: SASL EXTERNAL refused, using dialback", s->remote);
		free(s->sasl_domain);
		s->sasl_domain = strdup(""); /* do not try again on this stream */
		if (p)
			p->state = PAIR_NONE;
		if (L)
			out_start_dialback(h, L);
	}
}

static void out_db_result(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	struct s2s_out *L = s->link;
	char local[CFG_NAME_MAX];
	if (!L || norm_attr(st->to, st->flags & XML_ST_TO_ESC, local, sizeof(local)) < 0)
		return;
	struct lpair *p = NULL;
	for (int i = 0; i < L->nlp; i++)
		if (strcmp(L->lp[i].local, local) == 0)
			p = &L->lp[i];
	if (!p || p->state != PAIR_PENDING)
		return;
	if (span_eq(st->type, "valid")) {
		p->state = PAIR_VALID;
		MET_INC(h->m, s2s_out_links);
		L->backoff_ms = hub_cfg->retry_min * 1000;
		log_info(s->c->id, "s2s out %s -> %s: authenticated (dialback)", p->local, L->remote);
		pair_flush(h, L, p);
	} else {
		log_warn(s->c->id, "s2s out %s -> %s: dialback refused (%.*s)", p->local, L->remote, (int)st->type.n,
			 st->type.p);
		p->state = PAIR_INVALID;
		p->since = net_now_ms();
		pair_bounce_queue(h, L, p, STERR_REMOTE_SERVER_NOT_FOUND);
	}
}

static enum drive out_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	if (ev == XML_EV_STREAM_OPEN) {
		const struct xml_stream_hdr *hd = &s->tok.hdr;
		int k = hd->id.n ? xml_attr_decode(hd->id, s->stream_id, sizeof(s->stream_id) - 1) : -1;
		if (k <= 0) {
			/* the id is part of the dialback key: it must be whole */
			sess_stream_error(s, SERR_BAD_FORMAT, "missing or oversized stream id");
			return DRIVE_ALL;
		}
		s->stream_id[k] = 0;
		s->state = 1;
		s->peer_v1 = span_eq(hd->version, "1.0");
		if (!s->peer_v1) /* no features will come (RFC 3920 peers) */
			out_features(h, s, &(struct xml_stanza){.raw = {"", 0}});
		return DRIVE_ON;
	}
	const struct xml_stanza *st = &s->tok.st;
	if (st->nsid == XML_NS_STREAMS && span_eq(st->name, "features")) {
		if (!s->got_features)
			out_features(h, s, st);
	} else if (st->nsid == XML_NS_DIALBACK && span_eq(st->name, "result")) {
		out_db_result(h, s, st);
	} else if (st->nsid == XML_NS_TLS && s->starttls_sent) {
		s->starttls_sent = false;
		struct tls_conn *t =
			span_eq(st->name, "proceed") ? tls_conn_new(hub_tls, false, s->remote, s->local) : NULL;
		if (!t) {
			out_give_up(h, s, "STARTTLS refused or failed");
			return DRIVE_ALL;
		}
		net_start_tls(s->c, t, true);
		return DRIVE_ALL; /* nothing may follow <proceed/> in the clear */
	} else if (st->nsid == XML_NS_SASL && s->sasl_sent) {
		/* on success the tokenizer starts over: the peer's new header follows */
		out_sasl_result(h, s, span_eq(st->name, "success"));
	} else if (s->bidi && st->nsid == XML_NS_SERVER && st_routable(st)) {
		/* XEP-0288: the peer's stanzas on our link */
		net_buf_ref(b);
		route_stanza(h, s, b, st);
	}
	/* anything else on our outbound stream is ignored */
	return DRIVE_ON;
}

static size_t out_on_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	return sess_drive(c->user, b, p, n, out_event);
}

static void out_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct s2s_out *L = s->link;
	if (L && L->sess == s) {
		L->sess = NULL;
		bool any_valid = false;
		for (int i = 0; i < L->nlp; i++)
			if (L->lp[i].state == PAIR_VALID)
				any_valid = true;
		if (!any_valid && L->state != L_OPEN) {
			/* never got through: next address, or fail */
			L->state = L_CONNECTING;
			link_try_next(h, L);
		} else if (!any_valid && L->queued) {
			L->state = L_IDLE;
			link_fail(h, L, STERR_REMOTE_SERVER_NOT_FOUND, "stream closed before authentication");
		} else {
			/* an established link went away: start again if work is queued */
			for (int i = 0; i < L->nlp; i++)
				L->lp[i].state = PAIR_NONE;
			L->state = L_IDLE;
			if (L->queued)
				link_start(h, L);
		}
	}
	log_debug(c->id, "s2s out %s closed (%d)", s->remote, err);
	sess_free(s);
}

/* Stanzas queued on a link that died before sending them: detach the link
 * so it starts again, and queue them there anew (route.c parses them). */
static void out_on_unsent(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct s2s_out *L = s->link;
	if (L && L->sess == s) {
		L->sess = NULL;
		for (int i = 0; i < L->nlp; i++)
			if (L->lp[i].state != PAIR_INVALID)
				L->lp[i].state = PAIR_NONE;
		L->state = L_IDLE;
		s->link = NULL;
	}
	route_raw(h, b, p, n);
}

static void out_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct s2s_out *L = s->link;
	if (L && L->sess == s) {
		bool any_valid = false;
		for (int i = 0; i < L->nlp; i++)
			if (L->lp[i].state == PAIR_VALID)
				any_valid = true;
		if (!any_valid) {
			L->sess = NULL;
			s->link = NULL;
			link_fail(h, L, STERR_REMOTE_SERVER_TIMEOUT, "timed out connecting or authenticating");
			net_close(c, false);
			return;
		}
	}
}

const struct net_conn_ops s2s_out_ops = {
	.on_data = out_on_data,
	.on_connect = out_on_connect,
	.on_tls = out_on_tls,
	.on_unsent = out_on_unsent,
	.on_close = out_on_close,
	.on_timer = out_on_timer,
};

/* ---- verify connections (we are the receiving server) -------------- */

static void verify_answer(struct hubw *h, struct verify *v, int result);

static void verify_try_next(struct hubw *h, struct verify *v)
{
	while (v->next_t < v->nt) {
		struct dns_target *t = &v->t[v->next_t++];
		struct sess *s = sess_new(SESS_VERIFY);
		s->remote = strdup(v->remote);
		s->local = strdup(v->local);
		s->tls_policy = (uint8_t)out_tls_policy(v->remote);
		s->tok.authenticated = true;
		struct net_conn *c = net_connect(h->w, (struct sockaddr *)&t->ss, t->len, &s2s_verify_ops, s);
		if (!c) {
			sess_free(s);
			continue;
		}
		s->c = c;
		MET_INC(hubw_of(c->w)->m, conns_open);
		s->key = (char *)v; /* back-pointer; sess_free must not free it */
		c->deadline = net_now_ms() + hub_cfg->connect_timeout * 1000;
		v->sess = s;
		return;
	}
	verify_answer(h, v, -1);
}

static void verify_free(struct verify *v)
{
	free(v->remote);
	free(v->local);
	free(v->key);
	free(v->id);
	free(v);
}

/* result: 1 valid, 0 invalid, -1 could not ask */
static void verify_answer(struct hubw *h, struct verify *v, int result)
{
	if (v->done)
		return;
	v->done = true;
	struct net_conn *ic = net_conn_get(h->w, v->in);
	struct sess *in = ic ? ic->user : NULL;
	if (in) {
		struct pair *p = NULL;
		for (int i = 0; i < in->npairs; i++)
			if (strcmp(in->pairs[i].remote, v->remote) == 0 && strcmp(in->pairs[i].local, v->local) == 0)
				p = &in->pairs[i];
		if (p && p->state == PAIR_PENDING) {
			if (result == 1) {
				p->state = PAIR_VALID;
				MET_INC(h->m, dialback_ok);
				MET_INC(h->m, s2s_in_links);
				in->tok.authenticated = true;
				log_info(ic->id, "s2s in %s -> %s: authenticated (dialback)", v->remote, v->local);
				sess_sendf(in, "<db:result from='%s' to='%s' type='valid'/>", v->local, v->remote);
			} else if (result == 0) {
				p->state = PAIR_INVALID;
				MET_INC(h->m, dialback_fail);
				log_warn(ic->id, "s2s in %s -> %s: dialback key invalid", v->remote, v->local);
				sess_sendf(in, "<db:result from='%s' to='%s' type='invalid'/>", v->local, v->remote);
			} else {
				p->state = PAIR_NONE;
				MET_INC(h->m, dialback_fail);
				log_warn(ic->id, "s2s in %s -> %s: authoritative server unreachable", v->remote,
					 v->local);
				/* XEP-0220 §2.4: dialback errors */
				sess_sendf(in,
					   "<db:result from='%s' to='%s' type='error'><error type='cancel'>"
					   "<remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
					   "</error></db:result>",
					   v->local, v->remote);
			}
		}
	}
	if (!v->dns_pending && !v->sess)
		verify_free(v);
}

static void verify_start(struct hubw *h, struct sess *in, const char *remote, const char *local, struct xml_span key)
{
	struct verify *v = calloc(1, sizeof(*v));
	v->in = in->c->ref;
	v->remote = strdup(remote);
	v->local = strdup(local);
	v->key = span_dup(key, false);
	v->id = strdup(in->stream_id);
	if (route_targets(remote, v->t, &v->nt)) {
		verify_try_next(h, v);
		return;
	}
	v->dns_pending = true;
	resolve(h, remote, NULL, v);
}

static enum drive verify_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	struct verify *v = (struct verify *)s->key;
	struct net_conn *c = s->c;
	bool ask = false;
	if (ev == XML_EV_STREAM_OPEN) {
		s->state = 1;
		if (!span_eq(s->tok.hdr.version, "1.0"))
			ask = true;
	} else {
		const struct xml_stanza *st = &s->tok.st;
		if (st->nsid == XML_NS_STREAMS && span_eq(st->name, "features") && !s->got_features) {
			s->got_features = true;
			bool offers_tls = memmem(st->raw.p, st->raw.n, NS_TLS, sizeof(NS_TLS) - 1) != NULL;
			if (!s->tls_on && offers_tls && s->tls_policy != CFG_TLS_OFF) {
				/* the key travels under the same TLS policy as the link */
				sess_sendf(s, "<starttls xmlns='" NS_TLS "'/>");
				s->starttls_sent = true;
			} else if (!s->tls_on && s->tls_policy == CFG_TLS_REQUIRED) {
				log_warn(c->id, "s2s verify %s: no STARTTLS offered and TLS is required", s->remote);
				if (v)
					verify_answer(h, v, -1);
				sess_sendf(s, "</stream:stream>");
				net_close(c, true);
				return DRIVE_ALL;
			} else {
				ask = true;
			}
		} else if (st->nsid == XML_NS_TLS && s->starttls_sent) {
			s->starttls_sent = false;
			struct tls_conn *t =
				span_eq(st->name, "proceed") ? tls_conn_new(hub_tls, false, s->remote, s->local) : NULL;
			if (!t) {
				if (v)
					verify_answer(h, v, -1);
				net_close(c, false);
				return DRIVE_ALL;
			}
			net_start_tls(c, t, true);
			return DRIVE_ALL; /* nothing may follow <proceed/> in the clear */
		} else if (st->nsid == XML_NS_DIALBACK && span_eq(st->name, "verify")) {
			int res = span_eq(st->type, "valid") ? 1 : span_eq(st->type, "invalid") ? 0 : -1;
			if (v)
				verify_answer(h, v, res);
			sess_sendf(s, "</stream:stream>");
			net_close(c, true);
			return DRIVE_ALL;
		}
	}
	if (ask && v)
		sess_sendf(s, "<db:verify from='%s' to='%s' id='%s'>%s</db:verify>", v->local, v->remote, v->id,
			   v->key);
	(void)b;
	return DRIVE_ON;
}

static size_t verify_on_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	return sess_drive(c->user, b, p, n, verify_event);
}

static void verify_on_connect(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	if (err)
		return;
	sess_sendf(s,
		   "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " STREAM_NS
		   " xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>",
		   s->local, s->remote);
}

static void verify_on_tls(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (err) {
		MET_INC(h->m, tls_failures);
		log_warn(c->id, "s2s verify %s: TLS failed: %s", s->remote,
			 c->tls ? tls_error(c->tls) : tls_strerror(err));
		return; /* on_close tries the next address */
	}
	MET_INC(h->m, tls_handshakes);
	s->tls_on = true;
	xml_tok_reset(&s->tok);
	s->got_features = false;
	verify_on_connect(c, 0); /* a new stream over TLS */
}

static void verify_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct verify *v = (struct verify *)s->key;
	s->key = NULL;
	if (v) {
		v->sess = NULL;
		if (!v->done) {
			if (c->flags & NET_F_CONNECTING || err)
				verify_try_next(h, v);
			else
				verify_answer(h, v, -1);
		} else if (!v->dns_pending) {
			verify_free(v);
		}
	}
	sess_free(s);
}

static void verify_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct verify *v = (struct verify *)s->key;
	if (v)
		verify_answer(h, v, -1);
	net_close(c, false);
}

const struct net_conn_ops s2s_verify_ops = {
	.on_data = verify_on_data,
	.on_connect = verify_on_connect,
	.on_tls = verify_on_tls,
	.on_close = verify_on_close,
	.on_timer = verify_on_timer,
};

bool s2s_out_pair_valid(struct sess *s, const char *local)
{
	struct s2s_out *L = s->link;
	if (!L)
		return false;
	for (int i = 0; i < L->nlp; i++)
		if (L->lp[i].state == PAIR_VALID && strcmp(L->lp[i].local, local) == 0)
			return true;
	return false;
}

void s2s_on_dns(struct hubw *h, struct dns_req *r)
{
	struct dns_wait *dw = r->cookie;
	if (r->status)
		MET_INC(h->m, dns_failures);
	if (dw->link) {
		struct s2s_out *L = dw->link;
		L->dns_pending = false;
		if (L->dead) {
			link_free(h, L);
		} else if (r->status) {
			link_fail(h, L, STERR_REMOTE_SERVER_NOT_FOUND, "DNS lookup failed");
		} else {
			memcpy(L->t, r->t, sizeof(L->t));
			L->nt = r->ntargets;
			L->next_t = 0;
			link_try_next(h, L);
		}
	} else if (dw->v) {
		struct verify *v = dw->v;
		v->dns_pending = false;
		if (r->status) {
			/* verify_answer() frees v itself when it answers (no DNS
			 * wait, no session left); one answered before only waited
			 * for this lookup */
			if (v->done)
				verify_free(v);
			else
				verify_answer(h, v, -1);
		} else {
			memcpy(v->t, r->t, sizeof(v->t));
			v->nt = r->ntargets;
			v->next_t = 0;
			verify_try_next(h, v);
		}
	}
	free(dw);
}

/* ---- inbound streams ----------------------------------------------- */

/* Domain pairs one inbound stream may claim (XEP-0220 piggybacking). Each
 * costs a verification (a DNS lookup and a connection) and memory; without a
 * bound one unauthenticated stream could claim millions, and the uint16_t
 * count would wrap. */
#define S2S_MAX_PAIRS 1000

static struct pair *in_pair(struct sess *s, const char *remote, const char *local, bool add)
{
	for (int i = 0; i < s->npairs; i++)
		if (strcmp(s->pairs[i].remote, remote) == 0 && strcmp(s->pairs[i].local, local) == 0)
			return &s->pairs[i];
	if (!add)
		return NULL;
	if (s->npairs == s->cpairs) {
		s->cpairs = s->cpairs ? s->cpairs * 2 : 2;
		s->pairs = realloc(s->pairs, s->cpairs * sizeof(*s->pairs));
	}
	struct pair *p = &s->pairs[s->npairs++];
	memset(p, 0, sizeof(*p));
	p->remote = strdup(remote);
	p->local = strdup(local);
	return p;
}

static bool in_has_valid(struct sess *s)
{
	for (int i = 0; i < s->npairs; i++)
		if (s->pairs[i].state == PAIR_VALID)
			return true;
	return false;
}

static void in_stream_open(struct hubw *h, struct sess *s)
{
	const struct xml_stream_hdr *hd = &s->tok.hdr;
	char to[CFG_NAME_MAX];
	sess_new_stream_id(h, s);
	if (hd->default_ns != XML_NS_SERVER) {
		sess_stream_error(s, SERR_INVALID_NAMESPACE, NULL);
		return;
	}
	int tl = hd->to.n ? jid_domain(hd->to, memchr(hd->to.p, '&', hd->to.n) != NULL, to, sizeof(to)) : -1;
	if (tl > 0 && !hub_serves(to, (size_t)tl)) {
		sess_stream_error(s, SERR_HOST_UNKNOWN, NULL);
		return;
	}
	free(s->local);
	s->local = strdup(tl > 0 ? to : hub_cfg->hub_domain);
	s->peer_v1 = span_eq(hd->version, "1.0");
	char from_attr[CFG_NAME_MAX + 16] = "";
	char fr[CFG_NAME_MAX] = "";
	if (hd->from.n && jid_domain(hd->from, false, fr, sizeof(fr)) > 0) {
		snprintf(from_attr, sizeof(from_attr), " to='%s'", fr);
		free(s->remote);
		s->remote = strdup(fr);
	} else {
		fr[0] = 0;
	}
	sess_sendf(s,
		   "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " STREAM_NS
		   " xmlns:db='jabber:server:dialback' id='%s' from='%s'%s%s>",
		   s->stream_id, s->local, from_attr, s->peer_v1 ? " version='1.0'" : "");
	s->state = 1;
	if (!s->peer_v1)
		return;
	/* RFC 6120 §4.3.2: STARTTLS first (alone when it is required); after
	 * TLS, SASL EXTERNAL when the peer's certificate proves its domain
	 * (XEP-0178), and dialback (XEP-0220) for the rest. */
	char feat[512];
	int n = snprintf(feat, sizeof(feat), "<stream:features>");
	bool can_tls = !s->tls_on && hub_tls && s->tls_policy != CFG_TLS_OFF && tls_ctx_cert_count(hub_tls) > 0;
	if (can_tls) {
		s->tls_offered = true;
		n += snprintf(feat + n, sizeof(feat) - (size_t)n, "<starttls xmlns='" NS_TLS "'>%s</starttls>",
			      s->tls_policy == CFG_TLS_REQUIRED ? "<required/>" : "");
	}
	if (!(can_tls && s->tls_policy == CFG_TLS_REQUIRED)) {
		if (s->tls_on && fr[0] && !in_has_valid(s) && tls_peer_verify_domain(s->c->tls, fr) == 0) {
			s->sasl_offered = true;
			n += snprintf(feat + n, sizeof(feat) - (size_t)n,
				      "<mechanisms xmlns='" NS_SASL "'><mechanism>EXTERNAL</mechanism></mechanisms>");
		}
		n += snprintf(feat + n, sizeof(feat) - (size_t)n,
			      "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>");
	}
	snprintf(feat + n, sizeof(feat) - (size_t)n, "</stream:features>");
	sess_sendf(s, "%s", feat);
}

/* <starttls/> from the peer (RFC 6120 §5.4.2.3). */
static void in_starttls(struct hubw *h, struct sess *s)
{
	if (!s->tls_offered || s->tls_on) {
		sess_sendf(s, "<failure xmlns='" NS_TLS "'/></stream:stream>");
		net_close(s->c, true);
		return;
	}
	/* without SNI, the certificate of the domain the stream is for */
	struct tls_conn *t = tls_conn_new(hub_tls, true, NULL, s->local);
	if (!t) {
		sess_sendf(s, "<failure xmlns='" NS_TLS "'/></stream:stream>");
		net_close(s->c, true);
		return;
	}
	sess_sendf(s, "<proceed xmlns='" NS_TLS "'/>");
	net_start_tls(s->c, t, false);
	(void)h;
}

/* <auth mechanism='EXTERNAL'/> (XEP-0178 §2): the authorization identity is
 * the peer's domain, base64, or "=" for the stream's `from`. */
static void in_sasl_auth(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	char domain[CFG_NAME_MAX] = "";
	struct xml_span txt = elem_text(st);
	const char *mech = memmem(st->raw.p, st->raw.n, "EXTERNAL", 8);
	if (!s->sasl_offered || !mech) {
		sess_sendf(s, "<failure xmlns='" NS_SASL "'><invalid-mechanism/></failure>");
		return;
	}
	if (txt.n && !(txt.n == 1 && txt.p[0] == '=')) {
		byte dec[CFG_NAME_MAX];
		word32 dl = sizeof(dec) - 1;
		if (Base64_Decode((const byte *)txt.p, txt.n, dec, &dl) != 0 || dl == 0) {
			sess_sendf(s, "<failure xmlns='" NS_SASL "'><incorrect-encoding/></failure>");
			return;
		}
		struct xml_span d = {(const char *)dec, dl};
		if (jid_domain(d, false, domain, sizeof(domain)) < 0) {
			sess_sendf(s, "<failure xmlns='" NS_SASL "'><invalid-authzid/></failure>");
			return;
		}
	} else if (s->remote) {
		snprintf(domain, sizeof(domain), "%s", s->remote);
	}
	if (!domain[0] || tls_peer_verify_domain(s->c->tls, domain) != 0) {
		MET_INC(h->m, dialback_fail);
		log_warn(s->c->id, "s2s in: SASL EXTERNAL for %s refused: %s", domain[0] ? domain : "(none)",
			 tls_error(s->c->tls));
		sess_sendf(s, "<failure xmlns='" NS_SASL "'><not-authorized/></failure></stream:stream>");
		net_close(s->c, true);
		return;
	}
	if (s->npairs >= S2S_MAX_PAIRS && !in_pair(s, domain, s->local, false)) {
		sess_stream_error(s, SERR_POLICY_VIOLATION, "too many domain pairs on one stream");
		return;
	}
	struct pair *p = in_pair(s, domain, s->local, true);
	p->state = PAIR_VALID;
	MET_INC(h->m, s2s_in_links);
	s->tok.authenticated = true;
	s->sasl_offered = false;
	log_info(s->c->id, "s2s in %s -> %s: authenticated (SASL EXTERNAL)", domain, s->local);
	sess_sendf(s, "<success xmlns='" NS_SASL "'/>");
	xml_tok_reset(&s->tok); /* RFC 6120 §6.4.6: the peer restarts the stream */
	s->tok.authenticated = true;
	s->state = 0;
}

static void in_db_result(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	char from[CFG_NAME_MAX], to[CFG_NAME_MAX];
	if (norm_attr(st->from, st->flags & XML_ST_FROM_ESC, from, sizeof(from)) < 0 ||
	    norm_attr(st->to, st->flags & XML_ST_TO_ESC, to, sizeof(to)) < 0) {
		sess_stream_error(s, SERR_IMPROPER_ADDRESSING, NULL);
		return;
	}
	if (!hub_serves(to, strlen(to))) {
		/* XEP-0220 §2.4.1: item-not-found for a domain we do not host */
		sess_sendf(s,
			   "<db:result from='%s' to='%s' type='error'><error type='cancel'>"
			   "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
			   to, from);
		return;
	}
	struct xml_span key = elem_text(st);
	if (!key.n) {
		sess_stream_error(s, SERR_BAD_FORMAT, "db:result without a key");
		return;
	}
	if (s->npairs >= S2S_MAX_PAIRS && !in_pair(s, from, to, false)) {
		sess_stream_error(s, SERR_POLICY_VIOLATION, "too many domain pairs on one stream");
		return;
	}
	struct pair *p = in_pair(s, from, to, true);
	if (p->state == PAIR_VALID) {
		sess_sendf(s, "<db:result from='%s' to='%s' type='valid'/>", to, from);
		return;
	}
	if (p->state == PAIR_PENDING)
		return;
	if (s->tls_on && tls_peer_verify_domain(s->c->tls, from) == 0) {
		/* XEP-0344 §2.3: the certificate already proves the domain */
		p->state = PAIR_VALID;
		MET_INC(h->m, dialback_ok);
		MET_INC(h->m, s2s_in_links);
		s->tok.authenticated = true;
		log_info(s->c->id, "s2s in %s -> %s: authenticated (dialback, certificate trusted)", from, to);
		sess_sendf(s, "<db:result from='%s' to='%s' type='valid'/>", to, from);
		return;
	}
	p->state = PAIR_PENDING;
	verify_start(h, s, from, to, key);
}

static void in_db_verify(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	char from[CFG_NAME_MAX], to[CFG_NAME_MAX], key[65];
	if (norm_attr(st->from, st->flags & XML_ST_FROM_ESC, from, sizeof(from)) < 0 ||
	    norm_attr(st->to, st->flags & XML_ST_TO_ESC, to, sizeof(to)) < 0 || !st->id.n) {
		sess_stream_error(s, SERR_IMPROPER_ADDRESSING, NULL);
		return;
	}
	char raw_id[128], id[128 * 6];
	int il = xml_attr_decode(st->id, raw_id, sizeof(raw_id) - 1);
	if (il < 0) {
		sess_stream_error(s, SERR_BAD_FORMAT, NULL);
		return;
	}
	raw_id[il] = 0;
	/* the key is computed over the decoded id; the answer echoes it
	 * escaped, or an id like "x' type='valid" would add attributes */
	int el = xml_escape(id, sizeof(id) - 1, raw_id, (size_t)il, true);
	if (el < 0) {
		sess_stream_error(s, SERR_BAD_FORMAT, NULL);
		return;
	}
	id[el] = 0;
	if (!hub_serves(to, strlen(to))) {
		sess_sendf(s,
			   "<db:verify from='%s' to='%s' id='%s' type='error'><error type='cancel'>"
			   "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>",
			   to, from, id);
		return;
	}
	/* we are the authoritative server: `from` received our key for `to` */
	dialback_key(from, to, raw_id, key);
	bool ok = key_ok(elem_text(st), key);
	sess_sendf(s, "<db:verify from='%s' to='%s' id='%s' type='%s'/>", to, from, id, ok ? "valid" : "invalid");
	(void)h;
}

static enum drive in_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	if (ev == XML_EV_STREAM_OPEN) {
		in_stream_open(h, s);
		return DRIVE_ON;
	}
	const struct xml_stanza *st = &s->tok.st;
	if (st->nsid == XML_NS_TLS && span_eq(st->name, "starttls")) {
		in_starttls(h, s);
		return DRIVE_ALL; /* what follows is TLS */
	}
	if (st->nsid == XML_NS_SASL && span_eq(st->name, "auth")) {
		in_sasl_auth(h, s, st);
		return DRIVE_ON;
	}
	if (!s->tls_on && s->tls_policy == CFG_TLS_REQUIRED && s->tls_offered) {
		/* RFC 6120 §5.3.1: STARTTLS is mandatory-to-negotiate here */
		sess_stream_error(s, SERR_POLICY_VIOLATION, "STARTTLS required");
		return DRIVE_ALL;
	}
	if (st->nsid == XML_NS_SERVER && st_routable(st)) {
		net_buf_ref(b); /* ours: b is what this worker received */
		route_stanza(h, s, b, st);
	} else if (st->nsid == XML_NS_DIALBACK && span_eq(st->name, "result")) {
		in_db_result(h, s, st);
	} else if (st->nsid == XML_NS_DIALBACK && span_eq(st->name, "verify")) {
		in_db_verify(h, s, st);
	} else {
		sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
	}
	return DRIVE_ON;
}

static size_t in_on_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	return sess_drive(c->user, b, p, n, in_event);
}

static void in_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	MET_INC(hubw_of(c->w)->m, conn_closed); /* the pair of main.c's conn_accepted */
	log_debug(c->id, "s2s in closed (%d)", err);
	sess_free(s);
}

static void in_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	uint64_t now = net_now_ms();
	bool authed = false;
	for (int i = 0; i < s->npairs; i++)
		if (s->pairs[i].state == PAIR_VALID)
			authed = true;
	if (!authed && s->npairs == 0) {
		sess_stream_error(s, SERR_CONNECTION_TIMEOUT, "no authentication in time");
		return;
	}
	if (now - c->last_rx >= (uint64_t)hub_cfg->idle_timeout * 1000) {
		sess_stream_error(s, SERR_CONNECTION_TIMEOUT, NULL);
		return;
	}
	c->deadline = c->last_rx + (uint64_t)hub_cfg->idle_timeout * 1000;
	if (c->deadline <= now)
		c->deadline = now + 1000;
}

static void in_on_tls(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (err) {
		MET_INC(h->m, tls_failures);
		log_warn(c->id, "s2s in: TLS failed: %s", c->tls ? tls_error(c->tls) : tls_strerror(err));
		return;
	}
	MET_INC(h->m, tls_handshakes);
	s->tls_on = true;
	s->tls_offered = false;
	log_info(c->id, "s2s in: %s %s, SNI %s", tls_version(c->tls), tls_cipher(c->tls),
		 tls_sni(c->tls) ? tls_sni(c->tls) : "(none)");
	xml_tok_reset(&s->tok);
	s->state = 0;
}

const struct net_conn_ops s2s_in_ops = {
	.on_data = in_on_data,
	.on_tls = in_on_tls,
	.on_close = in_on_close,
	.on_timer = in_on_timer,
};

void s2s_accept(struct net_conn *c, const struct cfg_listen *l)
{
	struct sess *s = sess_new(SESS_S2S_IN);
	s->c = c;
	MET_INC(hubw_of(c->w)->m, conns_open);
	c->ops = &s2s_in_ops;
	c->user = s;
	s->tls_policy = (uint8_t)(hub_tls ? l->tls : CFG_TLS_OFF);
	if (l->kind == CFG_LISTEN_S2S_TLS && hub_tls) {
		/* XEP-0368: TLS from the first byte */
		s->direct_tls = true;
		struct tls_conn *t = tls_conn_new(hub_tls, true, NULL, NULL);
		if (t)
			net_start_tls(c, t, false);
		else
			net_close(c, false);
	}
	c->deadline = net_now_ms() + hub_cfg->connect_timeout * 1000 * 3;
}

/* Once a second: keepalives on idle links, idle links closed, back-offs ended. */
/* Once a second for each link: back-off ended, dialback answers that never
 * came, whitespace keepalives, idle links closed. Returns true if L was freed. */
static bool link_tick(struct hubw *h, struct s2s_out *L, uint64_t now)
{
	uint64_t idle = (uint64_t)hub_cfg->idle_timeout * 1000;
	uint64_t ka = (uint64_t)hub_cfg->keepalive_interval * 1000;
	for (int i = 0; i < L->nlp; i++) {
		struct lpair *p = &L->lp[i];
		if (p->alt && link_tick(h, p->alt, now))
			p->alt = NULL;
		if (p->state == PAIR_PENDING && now - p->since > (uint64_t)hub_cfg->connect_timeout * 1000) {
			/* XEP-0220 has no deadline of its own: a peer that ignores
			 * our db:result must not hold the queue forever */
			log_warn(L->sess ? L->sess->c->id : 0, "s2s out %s -> %s: no dialback answer in %us", p->local,
				 L->remote, hub_cfg->connect_timeout);
			p->state = PAIR_INVALID;
			p->since = now;
			pair_bounce_queue(h, L, p, STERR_REMOTE_SERVER_TIMEOUT);
		}
	}
	if (L->state == L_BACKOFF && now >= L->retry_at) {
		if (L->queued == 0 && now - L->last_activity > idle) {
			link_free(h, L);
			return true;
		}
		L->state = L_IDLE;
	}
	if (L->state == L_OPEN && L->sess && !L->queued) {
		if (now - L->last_activity >= idle) {
			link_free(h, L); /* closes the stream */
			return true;
		}
		if (ka && now - L->last_keepalive >= ka && now - L->last_activity >= ka) {
			/* RFC 6120 §4.6.1 whitespace keepalive */
			L->last_keepalive = now;
			sess_send(L->sess, " ", 1);
		}
	}
	if (L->state == L_IDLE && !L->queued && !L->sess && !L->dns_pending && now - L->last_activity > idle) {
		link_free(h, L);
		return true;
	}
	return false;
}

void s2s_tick(struct hubw *h, uint64_t now)
{
	for (uint32_t i = 0; i < h->nlinks_cap; i++) {
		struct s2s_out *L = h->links[i], *next;
		for (; L; L = next) {
			next = L->hnext;
			link_tick(h, L, now);
		}
	}
}

static void link_shutdown(struct hubw *h, struct s2s_out *L)
{
	for (int k = 0; k < L->nlp; k++) {
		pair_bounce_queue(h, L, &L->lp[k], STERR_REMOTE_SERVER_TIMEOUT);
		if (L->lp[k].alt)
			link_shutdown(h, L->lp[k].alt);
	}
	if (L->sess) {
		sess_sendf(L->sess, "</stream:stream>");
		net_close(L->sess->c, true);
	}
}

void s2s_shutdown(struct hubw *h)
{
	for (uint32_t i = 0; i < h->nlinks_cap; i++)
		for (struct s2s_out *L = h->links[i]; L; L = L->hnext)
			link_shutdown(h, L);
}
