/*
 * router/route.c — the stanza path: check the addresses, look the `to`
 * domain up in the routing table, hand the stanza's own bytes to the
 * destination connection (on this worker, or through the SPSC ring of the
 * worker that owns it), or bounce it with the RFC 6120 stanza error.
 *
 * Nothing here allocates or copies a routed stanza: the destination queues a
 * slice of the receive buffer. The one exception is a stanza that is not
 * namespace-well-formed on its own (it uses a prefix its sender's stream
 * header bound, or its top-level element is prefixed): it is routed as a
 * self-contained copy (route_selfcontained), since the destination's stream
 * binds other prefixes or none.
 *
 * Address checks come first, one function per kind of source (s2s_in_accepts,
 * s2s_out_accepts, comp_accepts): each says route, stream error, bounce or
 * drop, and route_stanza only acts on the verdict. The `to` domain is decoded
 * and looked up once (stanza_addrs_decode) for the checks and the routing.
 *
 * References: every function here that takes a buffer CONSUMES one reference
 * on it: it hands it on (to a connection's queue, a link's queue, or another
 * worker in a message) or drops it. Only the owning worker ever adds
 * references; another worker only moves the one its message carried, so
 * counts are never touched by two threads. Only bounces and the hub's own answers are
 * built anew, and those are parsed again by a per-worker tokenizer so they
 * take the same path as everything else.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/hub.h"
#include "router/sess.h"
#include "router/route.h"
#include "router/flow.h"
#include "router/s2s.h"
#include "router/local.h"
#include "router/backend.h"
#include "router/nodelink.h"
#include "net/log.h"

/* What a cross-worker message carries: the slice plus where its `to` and
 * `from` values sit inside it, so the receiver needs no re-parse. */
struct xstz {
	struct net_ref dst;
	uint32_t n;
	const char *p;
	uint32_t to_off, from_off;
	uint16_t to_len, from_len;
	uint8_t flags;
	uint8_t hops;
	/* the source connection, for flow control (FLOW_NO_SRC: none) */
	uint16_t src_worker;
	uint32_t src_slot, src_gen;
};
_Static_assert(sizeof(struct xstz) <= NET_MSG_PAYLOAD, "xstz fits a message");

static const char *const sterr_names[] = {
	[STERR_REMOTE_SERVER_NOT_FOUND] = "remote-server-not-found",
	[STERR_REMOTE_SERVER_TIMEOUT] = "remote-server-timeout",
	[STERR_SERVICE_UNAVAILABLE] = "service-unavailable",
	[STERR_RESOURCE_CONSTRAINT] = "resource-constraint",
	[STERR_FEATURE_NOT_IMPLEMENTED] = "feature-not-implemented",
	[STERR_ITEM_NOT_FOUND] = "item-not-found",
	[STERR_BAD_REQUEST] = "bad-request",
	[STERR_POLICY_VIOLATION] = "policy-violation",
};
static const char *const sterr_types[] = {
	[STERR_REMOTE_SERVER_NOT_FOUND] = "cancel",
	[STERR_REMOTE_SERVER_TIMEOUT] = "wait",
	[STERR_SERVICE_UNAVAILABLE] = "cancel",
	[STERR_RESOURCE_CONSTRAINT] = "wait",
	[STERR_FEATURE_NOT_IMPLEMENTED] = "cancel",
	[STERR_ITEM_NOT_FOUND] = "cancel",
	[STERR_BAD_REQUEST] = "modify",
	[STERR_POLICY_VIOLATION] = "modify", /* RFC 6120 §8.3.3.12 */
};

/* A tokenizer already inside a stream, for parsing bytes the hub made or
 * must look at again. One per worker, in thread-local storage: a malloc'ed
 * one had no owner to free it when the worker thread ends (LeakSanitizer). */
static __thread struct xml_tok gen_tok_store;
static __thread struct xml_tok *gen_tok;

static const char gen_hdr[] = "<stream:stream xmlns='jabber:server' "
			      "xmlns:stream='http://etherx.jabber.org/streams' "
			      "xmlns:db='jabber:server:dialback'>";

/* Parse the first stanza of [p, p+n); returns the bytes it takes, or -1. */
static long parse_next(const char *p, size_t n, struct xml_stanza *st)
{
	size_t used;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!gen_tok || gen_tok->err) {
			gen_tok = &gen_tok_store;
			struct xml_limits lim;
			/* it parses what links accepted, under any configured limits,
			 * and self-contained copies that have a few more attributes */
			xml_limits_widest(&lim, 1u << 30);
			xml_tok_init(gen_tok, &lim);
			gen_tok->authenticated = true;
			if (xml_tok_next(gen_tok, gen_hdr, sizeof(gen_hdr) - 1, &used) != XML_EV_STREAM_OPEN)
				return -1;
		}
		int ev = xml_tok_next(gen_tok, p, n, &used);
		while (ev == XML_EV_WHITESPACE && used < n) {
			size_t more;
			ev = xml_tok_next(gen_tok, p + used, n - used, &more);
			used += more;
		}
		if (ev == XML_EV_STANZA) {
			*st = gen_tok->st;
			return (long)used;
		}
		/* anything else leaves the tokenizer mid-way: start over once */
		gen_tok->err = XML_ERR_NOT_WELL_FORMED;
	}
	return -1;
}

static int parse_one(const char *p, size_t n, struct xml_stanza *st)
{
	return parse_next(p, n, st) == (long)n ? 0 : -1;
}

/* May a component for `base` send from domain d? From its own domain, and
 * from a subdomain of it that nothing else owns: XEP-0114 leaves subdomains
 * to policy, and a subdomain configured as a [component] (with its own
 * secret), a [domain] (for which the hub speaks dialback and SASL to the
 * world) or the hub's own domain is not the component's to use. Walks the
 * labels of d down to base, one routing-table lookup per label between
 * them: nothing when d is base itself, never a scan of the configuration.
 * A label whose entry is a live outbound link (a remote domain under the
 * component's) is refused as well. */
bool comp_from_allowed(const char *d, size_t dn, const char *base, size_t bn)
{
	if (dn == bn)
		return memcmp(d, base, bn) == 0;
	if (dn < bn + 2 || d[dn - bn - 1] != '.' || memcmp(d + dn - bn, base, bn) != 0)
		return false;
	while (dn > bn) {
		if (rt_lookup(d, dn))
			return false;
		const char *dot = memchr(d, '.', dn - bn);
		if (!dot)
			return false;
		dn -= (size_t)(dot + 1 - d);
		d = dot + 1;
	}
	return true;
}

/* Error paths only: a stream's pairs are scanned when a stanza is refused. */
static bool any_valid_pair(const struct sess *s)
{
	return s->nvalid > 0;
}

static bool any_valid_pair_from(struct sess *s, const char *remote)
{
	for (int i = 0; i < s->npairs; i++)
		if (s->pairs[i].state == PAIR_VALID && strcmp(s->pairs[i].remote, remote) == 0)
			return true;
	return false;
}

static void to_conn(struct hubw *h, struct net_ref dst, struct net_buf *b, const struct xml_stanza *st, int hops,
		    struct net_ref src);

/* m: the stanza in b handed to another worker as a message of that type,
 * carrying our reference to b. Returns its struct xstz. */
static struct xstz *xstz_msg(struct net_msg *m, uint16_t type, struct net_buf *b, const struct xml_stanza *st,
			     struct net_ref src)
{
	*m = (struct net_msg){.type = type, .buf = b};
	struct xstz *x = (struct xstz *)m->u.bytes;
	x->n = st->raw.n;
	x->p = st->raw.p;
	x->to_off = st->to.n ? (uint32_t)(st->to.p - st->raw.p) : 0;
	x->to_len = (uint16_t)st->to.n;
	x->from_off = st->from.n ? (uint32_t)(st->from.p - st->raw.p) : 0;
	x->from_len = (uint16_t)st->from.n;
	x->flags = (uint8_t)st->flags;
	x->src_worker = src.worker;
	x->src_slot = src.slot;
	x->src_gen = src.gen;
	return x;
}

/* Sends it to worker dst: a full ring keeps the message (and pauses its
 * source), never bounces it. */
static void xstz_send(struct hubw *h, int dst, const struct net_msg *m, struct net_ref src)
{
	flow_msg_send(h, dst, m, src.worker == net_worker_id(h->w) ? src : (struct net_ref){.worker = FLOW_NO_SRC});
	MET_INC(h->m, stanzas_cross_worker);
}

static struct net_ref xstz_src(const struct xstz *x)
{
	return (struct net_ref){.worker = x->src_worker, .slot = x->src_slot, .gen = x->src_gen};
}

static void deliver_component(struct hubw *h, const struct rt_route *r, const char *dom, int dl, struct net_buf *b,
			      const struct xml_stanza *st, int hops, struct net_ref src)
{
	if (!r->nconns) {
		/* another node of the cluster may hold one (not for a reroute:
		 * that one found a local connection closing) */
		if (!hops && nl_comp_forward(h, dom, (size_t)dl, b, st, src))
			return;
		route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
		net_buf_unref(h->w, b);
		return;
	}
	/* Spread by the (from, to) bare JIDs so each conversation stays on one
	 * connection, hence in order. */
	struct xml_span f = jid_bare(st->from), t = jid_bare(st->to);
	uint32_t hv = rt_hash(f.p, f.n) * 31u ^ rt_hash(t.p, t.n);
	/* A reroute (hops > 0) found the chosen connection closing while the
	 * table still lists it: take the next one, not the same one again. */
	to_conn(h, r->conns[(hv + (uint32_t)hops) % r->nconns], b, st, hops, src);
}

static void reroute(struct hubw *h, struct net_buf *b, const struct xml_stanza *st, int hops, struct net_ref src)
{
	char to[CFG_NAME_MAX];
	int tl = jid_domain(st->to, st->flags & XML_ST_TO_ESC, to, sizeof(to));
	const struct rt_route *r = tl > 0 ? rt_lookup(to, (size_t)tl) : NULL;
	if (hops < 3 && r && r->kind == RT_COMPONENT) {
		deliver_component(h, r, to, tl, b, st, hops + 1, src);
		return;
	}
	route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
	net_buf_unref(h->w, b);
}

static void to_conn(struct hubw *h, struct net_ref dst, struct net_buf *b, const struct xml_stanza *st, int hops,
		    struct net_ref src)
{
	if (dst.worker == net_worker_id(h->w)) {
		struct net_conn *c = net_conn_get(h->w, dst);
		enum hub_sterr why;
		int rc = c && c->user ? flow_send(h, c, b, st->raw.p, st->raw.n, src, &why) : -EPIPE;
		if (rc == -EPIPE) { /* it went or is going away: its share moves to the others */
			reroute(h, b, st, hops, src);
			return;
		}
		if (rc < 0) {
			route_bounce(h, st, why, NULL);
			net_buf_unref(h->w, b);
			return;
		}
		MET_INC(h->m, stanzas_routed);
		const struct sess *ds = c->user;
		MET_INC(h->m, stanzas_dir[1][ds->ml.dir]);
		MET_ADD(h->m, bytes_dir[1][ds->ml.dir], st->raw.n);
		if (ds->ml.dom >= 0) {
			MET_INC(h->m, dom[ds->ml.dom].stanzas[1]);
			MET_ADD(h->m, dom[ds->ml.dom].bytes[1], st->raw.n);
		}
		return;
	}
	struct net_msg m;
	struct xstz *x = xstz_msg(&m, HUB_MSG_STANZA, b, st, src);
	x->dst = dst;
	x->hops = (uint8_t)hops;
	xstz_send(h, dst.worker, &m, src);
}

static void to_remote(struct hubw *h, const struct rt_route *r, const char *to, int tl, const char *fr,
		      struct net_buf *b, const struct xml_stanza *st, struct net_ref src)
{
	/* the lookup already found the owner: no second lookup, no lock */
	int owner = r ? r->owner : rt_s2s_claim(to, (size_t)tl, (uint16_t)net_worker_id(h->w));
	if (owner < 0) {
		route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
		net_buf_unref(h->w, b);
		return;
	}
	if (owner == net_worker_id(h->w)) {
		s2s_link_enqueue(h, to, fr, b, st->raw.p, st->raw.n, src);
		return;
	}
	struct net_msg m;
	xstz_msg(&m, HUB_MSG_TO_LINK, b, st, src);
	xstz_send(h, owner, &m, src);
}

/* A backend's domain: over the internal link for (from domain, backend),
 * which lives on one worker (backend_owner()) so the pair's order holds. */
static void to_backend(struct hubw *h, const struct cfg_backend *bk, const struct stanza_addrs *a, struct net_buf *b,
		       const struct xml_stanza *st, struct net_ref src)
{
	int owner = backend_owner(a->fr, bk);
	if (owner == net_worker_id(h->w)) {
		backend_enqueue(h, bk, a->fr, a->to, b, st->raw.p, st->raw.n, src);
		return;
	}
	struct net_msg m;
	xstz_msg(&m, HUB_MSG_TO_BACKEND, b, st, src);
	xstz_send(h, owner, &m, src);
}

/* A stanza that leans on its stream header's prefix bindings, or whose
 * top-level element is prefixed, would not parse in the stream it goes to
 * (a component stream binds no `db`, no stream binds what a peer's header
 * made up): route a self-contained copy instead. Rare, so a copy is fine;
 * the copy is made while src's tokenizer still holds the header's
 * bindings. Consumes the reference on b. */
static void route_selfcontained(struct hubw *h, struct sess *src, struct net_buf *b, const struct xml_stanza *st)
{
	size_t cap = st->raw.n + xml_stanza_selfcontain_extra(&src->tok);
	struct net_buf *nb = net_buf_new(h->w, cap);
	if (!nb) {
		route_bounce(h, st, STERR_RESOURCE_CONSTRAINT, NULL);
		net_buf_unref(h->w, b);
		return;
	}
	int n = xml_stanza_selfcontain(&src->tok, st, nb->data, cap);
	struct xml_stanza copy;
	if (n < 0 || parse_one(nb->data, (size_t)n, &copy) < 0 ||
	    (copy.flags & (XML_ST_HDR_PREFIX | XML_ST_PREFIXED))) {
		/* -2: a prefixed top-level element that also sets a default
		 * namespace, which no copy can express in another stream;
		 * else a copy over the tokenizer's own bounds (attributes) */
		route_bounce(h, st, STERR_BAD_REQUEST,
			     n == -2 ? "prefixed stanza element with a default namespace"
				     : "stanza cannot be made namespace-self-contained");
		net_buf_unref(h->w, nb);
		net_buf_unref(h->w, b);
		return;
	}
	nb->len = (uint32_t)n;
	net_buf_unref(h->w, b);
	route_stanza(h, src, nb, &copy);
}

/* An entry for a domain we are the server for (the hub's, a [domain], a
 * [component]). */
static bool route_served(const struct rt_route *r)
{
	return r && (r->kind == RT_HUB || r->kind == RT_HOSTED || r->kind == RT_COMPONENT);
}

bool hub_serves(const char *domain, size_t n)
{
	return route_served(rt_lookup(domain, n));
}

static const struct addr_verdict accept_v = {ADDR_ROUTE, 0, 0};

static struct addr_verdict stream_err(enum hub_serr e)
{
	return (struct addr_verdict){ADDR_STREAM_ERROR, e, 0};
}

/* Inbound s2s: both addresses (RFC 6120 §8.1.1.1 / §8.1.2.1), `to` a
 * domain we serve, and the (from, to) pair validated on this stream. */
struct addr_verdict s2s_in_accepts(struct sess *s, const struct stanza_addrs *a)
{
	if (a->tl <= 0 || a->fl <= 0)
		return stream_err(SERR_IMPROPER_ADDRESSING);
	/* a backend's stream carries transit to any domain, on pairs
	 * validated for its own domains (backend_in.c) */
	if (!route_served(a->route) && !s->bk_src)
		return stream_err(SERR_HOST_UNKNOWN);
	struct pair *pr = pair_find(s, a->fr, a->to);
	if (!pr || pr->state != PAIR_VALID) {
		/* §4.9.3.12 not-authorized: nothing is authenticated on this
		 * stream yet; §4.9.3.10 invalid-from: the domain is not validated
		 * on it; §4.9.3.7 host-unknown would name our side instead */
		if (!any_valid_pair(s))
			return stream_err(SERR_NOT_AUTHORIZED);
		return stream_err(any_valid_pair_from(s, a->fr) ? SERR_HOST_UNKNOWN : SERR_INVALID_FROM);
	}
	return accept_v;
}

/* XEP-0288: on our bidirectional link the peer may send from its domain (the
 * one we connected to and authenticated with) to the local domains
 * authenticated on the link. */
struct addr_verdict s2s_out_accepts(struct sess *s, const struct stanza_addrs *a)
{
	if (a->tl <= 0 || a->fl <= 0)
		return stream_err(SERR_IMPROPER_ADDRESSING);
	if (!s->remote || strcmp(a->fr, s->remote) != 0)
		return stream_err(SERR_INVALID_FROM);
	if (!route_served(a->route) || !s2s_out_pair_valid(s, a->to))
		return stream_err(SERR_HOST_UNKNOWN);
	return accept_v;
}

/* XEP-0114: a component sends from its domain or a free subdomain of it
 * (comp_from_allowed); a stanza without a usable `to` is bounced. */
struct addr_verdict comp_accepts(struct sess *s, const struct stanza_addrs *a)
{
	if (a->fl <= 0 || !comp_from_allowed(a->fr, (size_t)a->fl, s->local, strlen(s->local)))
		return stream_err(SERR_INVALID_FROM);
	if (a->tl <= 0)
		return (struct addr_verdict){ADDR_BOUNCE, 0, STERR_BAD_REQUEST};
	return accept_v;
}

/* The hub's own stanzas (answers, bounces, stanzas routed again) carry both
 * addresses; one without is dropped. */
static struct addr_verdict generated_accepts(const struct stanza_addrs *a)
{
	if (a->tl <= 0 || a->fl <= 0) {
		log_warn(0, "route: generated stanza without addresses dropped");
		return (struct addr_verdict){ADDR_DROP, 0, 0};
	}
	return accept_v;
}

struct addr_verdict route_accepts(struct sess *src, const struct stanza_addrs *a)
{
	if (!src)
		return generated_accepts(a);
	switch ((enum sess_kind)src->kind) {
	case SESS_S2S_IN:
		return s2s_in_accepts(src, a);
	case SESS_S2S_OUT:
		return s2s_out_accepts(src, a);
	case SESS_COMP:
		return comp_accepts(src, a);
	case SESS_NODE:
		/* another node of the cluster made the checks of its own source */
		if (a->tl <= 0 || a->fl <= 0)
			return (struct addr_verdict){ADDR_BOUNCE, 0, STERR_BAD_REQUEST};
		return accept_v;
	case SESS_VERIFY:
	case SESS_BACKEND:
		break;
	}
	/* a verification stream or an internal link routes nothing */
	return stream_err(SERR_UNSUPPORTED_STANZA_TYPE);
}

void stanza_addrs_decode(const struct xml_stanza *st, struct stanza_addrs *a)
{
	a->tl = st->to.n ? jid_domain(st->to, st->flags & XML_ST_TO_ESC, a->to, sizeof(a->to)) : -1;
	a->fl = st->from.n ? jid_domain(st->from, st->flags & XML_ST_FROM_ESC, a->fr, sizeof(a->fr)) : -1;
	a->route = a->tl > 0 ? rt_lookup(a->to, (size_t)a->tl) : NULL;
}

void route_stanza(struct hubw *h, struct sess *src, struct net_buf *b, const struct xml_stanza *st)
{
	if (src && __builtin_expect(st->flags & (XML_ST_HDR_PREFIX | XML_ST_PREFIXED), 0)) {
		route_selfcontained(h, src, b, st);
		return;
	}
	struct stanza_addrs a;
	stanza_addrs_decode(st, &a);
	route_decoded(h, src, b, st, &a);
}

void route_decoded(struct hubw *h, struct sess *src, struct net_buf *b, const struct xml_stanza *st,
		   const struct stanza_addrs *a)
{
	struct addr_verdict v = route_accepts(src, a);
	switch (v.verdict) {
	case ADDR_ROUTE:
		break;
	case ADDR_STREAM_ERROR:
		sess_stream_error(src, v.serr, NULL);
		goto drop;
	case ADDR_BOUNCE:
		route_bounce(h, st, v.sterr, NULL);
		goto drop;
	case ADDR_DROP:
		goto drop;
	}
	const struct cfg_backend *fb = NULL; /* from a backend's domain, on its own stream */
	if (src) {
		/* counted once it passed the address checks: what a peer or
		 * component sent us; the hub's own stanzas count apart */
		MET_INC(h->m, stanzas_in);
		MET_INC(h->m, stanzas_dir[0][src->ml.dir]);
		int ds = src->kind == SESS_COMP ? met_dom_slot(MET_DOM_COMPONENT, src->local)
						: met_dom_slot(MET_DOM_REMOTE, a->fr);
		MET_INC(h->m, dom[ds].stanzas[0]);
		MET_ADD(h->m, dom[ds].bytes[0], st->raw.n);
		fb = src->bk_src ? cfg_backend_of(hub_cfg, a->fr) : NULL;
		if (fb)
			MET_INC(h->m, bk[met_backend_slot((int)(fb - hub_cfg->backends))].stanzas_out);
	}
	log_debug(src && src->c ? src->c->id : 0, "stanza %.*s from=%s to=%s id='%.*s' size=%zu",
		  (int)(st->name.n ? st->name.n : 1), st->name.n ? st->name.p : "?", a->fr, a->to,
		  (int)(st->id.n > 64 ? 64 : st->id.n), st->id.p ? st->id.p : "", (size_t)st->raw.n);

	const struct rt_route *r = a->route;
	if (r) {
		switch (r->kind) {
		case RT_HUB:
			MET_INC(h->m, stanzas_local);
			local_handle(h, st);
			goto drop;
		case RT_HOSTED: {
			const struct cfg_backend *bk = cfg_backend_of(hub_cfg, a->to);
			if (bk) {
				to_backend(h, bk, a, b, st, flow_src_of(src));
				return;
			}
			route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
			goto drop;
		}
		case RT_COMPONENT:
			deliver_component(h, r, a->to, a->tl, b, st, 0, flow_src_of(src));
			return;
		case RT_S2S_OUT:
			break;
		}
	}
	/* A remote domain: only for stanzas from a domain we serve (a
	 * backend's domain is one: no second lookup for its transit). */
	if (!fb && !hub_serves(a->fr, (size_t)a->fl)) {
		route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
		goto drop;
	}
	to_remote(h, r, a->to, a->tl, a->fr, b, st, flow_src_of(src));
	return;
drop:
	net_buf_unref(h->w, b);
}

static void xstz_to_stanza(const struct xstz *x, struct xml_stanza *st)
{
	memset(st, 0, sizeof(*st));
	st->raw.p = x->p;
	st->raw.n = x->n;
	if (x->to_len)
		st->to = (struct xml_span){x->p + x->to_off, x->to_len};
	if (x->from_len)
		st->from = (struct xml_span){x->p + x->from_off, x->from_len};
	st->flags = x->flags;
}

void route_on_msg(struct hubw *h, struct net_msg *m)
{
	struct xstz *x = (struct xstz *)m->u.bytes;
	struct xml_stanza st;
	xstz_to_stanza(x, &st);
	if (m->type == HUB_MSG_PAUSE || m->type == HUB_MSG_RESUME) {
		flow_on_msg(h, m);
		return;
	}
	struct net_ref src = xstz_src(x);
	if (m->type == HUB_MSG_STANZA) {
		to_conn(h, x->dst, m->buf, &st, x->hops, src);
		return;
	}
	if (m->type != HUB_MSG_TO_BACKEND && m->type != HUB_MSG_TO_LINK)
		return;
	/* for a backend or an outbound link: its queue is by (from, to) domain */
	char to[CFG_NAME_MAX], fr[CFG_NAME_MAX];
	int tl = jid_domain(st.to, st.flags & XML_ST_TO_ESC, to, sizeof(to));
	int fl = jid_domain(st.from, st.flags & XML_ST_FROM_ESC, fr, sizeof(fr));
	if (tl <= 0 || fl <= 0)
		net_buf_unref(h->w, m->buf);
	else if (m->type == HUB_MSG_TO_BACKEND)
		backend_enqueue(h, NULL, fr, to, m->buf, st.raw.p, st.raw.n, src);
	else
		s2s_link_enqueue(h, to, fr, m->buf, st.raw.p, st.raw.n, src);
}

void route_bounce(struct hubw *h, const struct xml_stanza *st, enum hub_sterr err, const char *text)
{
	if (!st->name.n) {
		/* A stanza that came from another worker carries only its bytes
		 * and addresses (struct xstz): no name, type or id. Parse it
		 * again (slow path, bounces only) rather than build "<" ... "</>". */
		struct xml_stanza full;
		if (parse_one(st->raw.p, st->raw.n, &full) < 0 || !full.name.n) {
			log_warn(0, "route: a stanza from another worker could not be parsed again to bounce it");
			return;
		}
		route_bounce(h, &full, err, text);
		return;
	}
	if (span_eq(st->type, "error") || !st->from.n) {
		/* RFC 6120 §8.3.1: never answer an error with an error */
		MET_INC(h->m, stanzas_dropped_error);
		return;
	}
	MET_INC(h->m, stanzas_bounced);
	MET_INC(h->m, bounces[met_cond(sterr_names[err])]);
	MET_INC(h->m, generated[MET_GEN_BOUNCE]);
	char buf[4096];
	size_t n = 0;
	int k = snprintf(buf, sizeof(buf), "<%.*s", (int)st->name.n, st->name.p);
	n += (size_t)k;
	if ((k = put_attr(buf + n, sizeof(buf) - n, "from", st->to)) < 0)
		return;
	n += (size_t)k;
	if ((k = put_attr(buf + n, sizeof(buf) - n, "to", st->from)) < 0)
		return;
	n += (size_t)k;
	if ((k = put_attr(buf + n, sizeof(buf) - n, "id", st->id)) < 0)
		return;
	n += (size_t)k;
	k = snprintf(buf + n, sizeof(buf) - n,
		     " type='error'><error type='%s'><%s xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>",
		     sterr_types[err], sterr_names[err]);
	if (k < 0 || (size_t)k >= sizeof(buf) - n)
		return;
	n += (size_t)k;
	if (text) {
		k = snprintf(buf + n, sizeof(buf) - n, "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>");
		n += (size_t)k;
		k = xml_escape(buf + n, sizeof(buf) - n, text, strlen(text), false);
		if (k < 0)
			return;
		n += (size_t)k;
		k = snprintf(buf + n, sizeof(buf) - n, "</text>");
		n += (size_t)k;
	}
	k = snprintf(buf + n, sizeof(buf) - n, "</error></%.*s>", (int)st->name.n, st->name.p);
	if (k < 0 || (size_t)k >= sizeof(buf) - n)
		return;
	n += (size_t)k;
	route_generated(h, buf, n);
}

void route_bounce_raw(struct hubw *h, const char *p, size_t n, enum hub_sterr err)
{
	struct xml_stanza st;
	if (parse_one(p, n, &st) < 0) {
		log_warn(0, "route: a queued stanza could not be parsed again to bounce it");
		return;
	}
	route_bounce(h, &st, err, NULL);
}

/* Bytes the hub wrote itself into a queue, which are not stanzas: the
 * stream header (with or without an XML declaration) and its close. Returns
 * their length, 0 when p is something else. */
static size_t hub_framing_len(const char *p, size_t n)
{
	static const char *const heads[] = {"<?xml", "<stream:stream", "</stream:stream"};
	for (size_t k = 0; k < sizeof heads / sizeof heads[0]; k++) {
		size_t hl = strlen(heads[k]);
		if (n >= hl && !memcmp(p, heads[k], hl)) {
			const char *gt = memchr(p, '>', n);
			return gt ? (size_t)(gt - p) + 1 : n;
		}
	}
	return 0;
}

/* Bytes queued to a connection that went away: one stanza, or several
 * when the queue had copied them together, possibly with what the hub
 * wrote on that stream (its header, dialback, handshake, stream errors),
 * which is skipped. Every stanza in it is routed again; if the rest cannot
 * be parsed it is dropped and counted. Consumes the reference. */
void route_raw(struct hubw *h, struct net_buf *b, const char *p, size_t n)
{
	size_t off = 0;
	while (off < n) {
		while (off < n && (p[off] == ' ' || p[off] == '\n' || p[off] == '\t' || p[off] == '\r'))
			off++;
		if (off == n)
			break;
		const char *q = p + off;
		size_t left = n - off;
		size_t skip = hub_framing_len(q, left);
		if (skip) {
			off += skip;
			continue;
		}
		struct xml_stanza st;
		long used = parse_next(q, left, &st);
		if (used <= 0) {
			MET_INC(h->m, stanzas_dropped_error);
			log_warn(0, "route: queued bytes could not be parsed again to route them");
			break;
		}
		off += (size_t)used;
		/* only stanzas: not dialback, handshakes or errors of the stream */
		if (st.nsid != XML_NS_SERVER || !st_routable(&st))
			continue;
		if (off < n) {
			/* more follow in this buffer: each routed stanza needs its own
			 * reference; a buffer of another worker gets copied instead */
			if (b->owner == (uint16_t)net_worker_id(h->w)) {
				net_buf_ref(b);
				route_stanza(h, NULL, b, &st);
			} else {
				route_generated(h, q, (size_t)used);
			}
		} else {
			route_stanza(h, NULL, b, &st);
			return;
		}
	}
	net_buf_unref(h->w, b);
}

void route_generated(struct hubw *h, const char *p, size_t n)
{
	struct net_buf *b = net_buf_new(h->w, n);
	if (!b)
		return;
	memcpy(b->data, p, n);
	b->len = (uint32_t)n;
	struct xml_stanza st;
	if (parse_one(b->data, n, &st) == 0) {
		route_stanza(h, NULL, b, &st); /* consumes our reference */
		return;
	}
	log_warn(0, "route: generated stanza did not parse: %.*s", (int)(n > 200 ? 200 : n), p);
	net_buf_unref(h->w, b);
}
