/*
 * router/route.c — the stanza path: check the addresses, look the `to`
 * domain up in the routing table, hand the stanza's own bytes to the
 * destination connection (on this worker, or through the SPSC ring of the
 * worker that owns it), or bounce it with the RFC 6120 stanza error.
 *
 * Nothing here allocates or copies a routed stanza: the destination queues a
 * slice of the receive buffer.
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
};
static const char *const sterr_types[] = {
	[STERR_REMOTE_SERVER_NOT_FOUND] = "cancel",
	[STERR_REMOTE_SERVER_TIMEOUT] = "wait",
	[STERR_SERVICE_UNAVAILABLE] = "cancel",
	[STERR_RESOURCE_CONSTRAINT] = "wait",
	[STERR_FEATURE_NOT_IMPLEMENTED] = "cancel",
	[STERR_ITEM_NOT_FOUND] = "cancel",
	[STERR_BAD_REQUEST] = "modify",
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
			xml_limits_default(&lim);
			lim.max_stanza = lim.max_stanza_preauth = 1u << 30;
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

bool hub_serves(const char *domain, size_t n)
{
	const struct rt_route *r = rt_lookup(domain, n);
	return r && (r->kind == RT_HUB || r->kind == RT_HOSTED || r->kind == RT_COMPONENT);
}

static bool domain_within(const char *d, size_t dn, const char *base)
{
	size_t bn = strlen(base);
	if (dn == bn)
		return memcmp(d, base, bn) == 0;
	/* a subdomain of the component's domain (XEP-0114 leaves it to policy) */
	return dn > bn && d[dn - bn - 1] == '.' && memcmp(d + dn - bn, base, bn) == 0;
}

static struct pair *find_pair(struct sess *s, const char *remote, const char *local)
{
	for (int i = 0; i < s->npairs; i++)
		if (strcmp(s->pairs[i].remote, remote) == 0 && strcmp(s->pairs[i].local, local) == 0)
			return &s->pairs[i];
	return NULL;
}

static bool any_valid_pair_from(struct sess *s, const char *remote)
{
	for (int i = 0; i < s->npairs; i++)
		if (s->pairs[i].state == PAIR_VALID && strcmp(s->pairs[i].remote, remote) == 0)
			return true;
	return false;
}

static void fill_xstz(struct xstz *x, const struct xml_stanza *st)
{
	x->n = st->raw.n;
	x->p = st->raw.p;
	x->to_off = st->to.n ? (uint32_t)(st->to.p - st->raw.p) : 0;
	x->to_len = (uint16_t)st->to.n;
	x->from_off = st->from.n ? (uint32_t)(st->from.p - st->raw.p) : 0;
	x->from_len = (uint16_t)st->from.n;
	x->flags = (uint8_t)st->flags;
}

static void to_conn(struct hubw *h, struct net_ref dst, struct net_buf *b, const struct xml_stanza *st, int hops,
		    struct net_ref src);

static void fill_src(struct xstz *x, struct net_ref src)
{
	x->src_worker = src.worker;
	x->src_slot = src.slot;
	x->src_gen = src.gen;
}

static struct net_ref xstz_src(const struct xstz *x)
{
	return (struct net_ref){.worker = x->src_worker, .slot = x->src_slot, .gen = x->src_gen};
}

static void deliver_component(struct hubw *h, const struct rt_route *r, struct net_buf *b, const struct xml_stanza *st,
			      int hops, struct net_ref src)
{
	if (!r->nconns) {
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
		deliver_component(h, r, b, st, hops + 1, src);
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
		return;
	}
	struct net_msg m = {.type = HUB_MSG_STANZA, .buf = b}; /* carries our reference */
	struct xstz *x = (struct xstz *)m.u.bytes;
	fill_xstz(x, st);
	fill_src(x, src);
	x->dst = dst;
	x->hops = (uint8_t)hops;
	/* a full ring keeps the message (and pauses its source), never bounces it */
	flow_msg_send(h, dst.worker, &m,
		      src.worker == net_worker_id(h->w) ? src : (struct net_ref){.worker = FLOW_NO_SRC});
	MET_INC(h->m, stanzas_cross_worker);
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
	struct net_msg m = {.type = HUB_MSG_TO_LINK, .buf = b}; /* carries our reference */
	struct xstz *x = (struct xstz *)m.u.bytes;
	fill_xstz(x, st);
	fill_src(x, src);
	flow_msg_send(h, owner, &m, src.worker == net_worker_id(h->w) ? src : (struct net_ref){.worker = FLOW_NO_SRC});
	MET_INC(h->m, stanzas_cross_worker);
}

void route_stanza(struct hubw *h, struct sess *src, struct net_buf *b, const struct xml_stanza *st)
{
	char to[CFG_NAME_MAX], fr[CFG_NAME_MAX];
	int tl = st->to.n ? jid_domain(st->to, st->flags & XML_ST_TO_ESC, to, sizeof(to)) : -1;
	int fl = st->from.n ? jid_domain(st->from, st->flags & XML_ST_FROM_ESC, fr, sizeof(fr)) : -1;

	if (src && src->kind == SESS_S2S_IN) {
		/* RFC 6120 §8.1.1.1 / §8.1.2.1: s2s stanzas carry both addresses */
		if (tl <= 0 || fl <= 0) {
			sess_stream_error(src, SERR_IMPROPER_ADDRESSING, NULL);
			goto drop;
		}
		if (!hub_serves(to, (size_t)tl)) {
			sess_stream_error(src, SERR_HOST_UNKNOWN, NULL);
			goto drop;
		}
		struct pair *pr = find_pair(src, fr, to);
		if (!pr || pr->state != PAIR_VALID) {
			/* §4.9.3.10 invalid-from: the domain is not validated on this
			 * stream; §4.9.3.7 host-unknown would name our side instead */
			sess_stream_error(src, any_valid_pair_from(src, fr) ? SERR_HOST_UNKNOWN : SERR_INVALID_FROM,
					  NULL);
			goto drop;
		}
	} else if (src && src->kind == SESS_S2S_OUT) {
		/* XEP-0288: on our bidirectional link the peer may send from its
		 * domain (the one we connected to and authenticated with) to the
		 * local domains authenticated on the link */
		if (tl <= 0 || fl <= 0) {
			sess_stream_error(src, SERR_IMPROPER_ADDRESSING, NULL);
			goto drop;
		}
		if (!src->remote || strcmp(fr, src->remote) != 0) {
			sess_stream_error(src, SERR_INVALID_FROM, NULL);
			goto drop;
		}
		if (!hub_serves(to, (size_t)tl) || !s2s_out_pair_valid(src, to)) {
			sess_stream_error(src, SERR_HOST_UNKNOWN, NULL);
			goto drop;
		}
	} else if (src && src->kind == SESS_COMP) {
		if (fl <= 0 || !domain_within(fr, (size_t)fl, src->local)) {
			sess_stream_error(src, SERR_INVALID_FROM, NULL);
			goto drop;
		}
		if (tl <= 0) {
			route_bounce(h, st, STERR_BAD_REQUEST, NULL);
			goto drop;
		}
	} else if (tl <= 0 || fl <= 0) {
		log_warn(0, "route: generated stanza without addresses dropped");
		goto drop;
	}
	MET_INC(h->m, stanzas_in);

	const struct rt_route *r = rt_lookup(to, (size_t)tl);
	if (r) {
		switch (r->kind) {
		case RT_HUB:
			MET_INC(h->m, stanzas_local);
			local_handle(h, st);
			goto drop;
		case RT_HOSTED:
			route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
			goto drop;
		case RT_COMPONENT:
			deliver_component(h, r, b, st, 0, flow_src_of(src));
			return;
		case RT_S2S_OUT:
			break;
		}
	}
	/* A remote domain: only for stanzas from a domain we serve. */
	if (!hub_serves(fr, (size_t)fl)) {
		route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
		goto drop;
	}
	to_remote(h, r, to, tl, fr, b, st, flow_src_of(src));
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
	} else if (m->type == HUB_MSG_TO_LINK) {
		char to[CFG_NAME_MAX], fr[CFG_NAME_MAX];
		int tl = jid_domain(st.to, st.flags & XML_ST_TO_ESC, to, sizeof(to));
		int fl = jid_domain(st.from, st.flags & XML_ST_FROM_ESC, fr, sizeof(fr));
		if (tl > 0 && fl > 0)
			s2s_link_enqueue(h, to, fr, m->buf, st.raw.p, st.raw.n, src);
		else
			net_buf_unref(h->w, m->buf);
	}
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

/* Bytes queued to a connection that went away: one stanza, or several
 * when the queue had copied them together. Consumes the reference. */
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
		/* only stanzas: not stream headers, dialback, keepalives the hub wrote */
		if (!(left > 3 && (!memcmp(q, "<message", left < 8 ? left : 8) ||
				   !memcmp(q, "<presence", left < 9 ? left : 9) || !memcmp(q, "<iq", 3))))
			break;
		struct xml_stanza st;
		long used = parse_next(q, left, &st);
		if (used <= 0 || st.nsid != XML_NS_SERVER) {
			MET_INC(h->m, stanzas_dropped_error);
			log_warn(0, "route: a queued stanza could not be parsed again to route it");
			break;
		}
		off += (size_t)used;
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
