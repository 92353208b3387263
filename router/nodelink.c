/*
 * router/nodelink.c — node-to-node links of a cluster (nodelink.h; the wire
 * protocol is described in nodelink-int.h).
 *
 * Topology. Each worker keeps its own outbound link to each peer node it
 * forwards to (struct nl_out, in hubw.nl), opened on first use and kept.
 * One link per (worker, peer) rather than one per peer: the worker routing a
 * stanza is the one that sends it, so the sending side needs no cross-worker
 * handoff, no lock and no copy (net_send_slice of the source buffer), and
 * every stanza of one source connection — hence of one (from, to) pair —
 * goes down one ordered TCP stream. The cost is workers x nodes connections
 * per node, a few hundred for tens of nodes: nothing next to the s2s links.
 * Each link carries stanzas one way (connector to acceptor); the acceptor
 * sends back only control elements and refused stanzas. The acceptor routes
 * what arrives on the worker that accepted the link, in arrival order, so
 * per-pair order holds end to end.
 *
 * Back-pressure. An outbound node link is a destination like a component,
 * with its own queue: every stanza accepted for the link enters its ring
 * (struct nl_ring) and goes on the stream while the send queue is below
 * send_queue_max and fewer than NL_UNACKED_MAX stanzas (send_queue_max
 * bytes) are unacknowledged; past that it waits in the ring (our copy, not
 * a receive buffer), and while more than source_allowance bytes wait each
 * waiting stanza holds a pause of its source. A link with stanzas
 * unacknowledged for stall_timeout is closed (the failure path below). On
 * the acceptor, the link is a source: a slow destination pauses its
 * reading, TCP fills, acknowledgements slow down, the connector's ring
 * fills and its sources pause in turn. Nothing bounces while stanzas move.
 *
 * Acknowledgements (nodelink.h has the contract). The send queue borrows
 * the stanza bytes from the ring (slices without a buffer: zero-copy, no
 * extra reference, which another worker's buffer would not allow); the
 * ring's reference goes when the acceptor's cumulative <a h=.../> covers
 * the stanza. A link that closes drops what its send queue held (borrowed
 * bytes and control elements) and, once no write refers to the ring any
 * more (on_close), puts the whole ring in front of the connect queue, in
 * order; no new link to that node starts before that, so nothing overtakes.
 *
 * Until a link has authenticated, stanzas for it wait in its connect queue
 * (copies: a provided buffer must not wait on a connect), stall_timeout
 * long, then are bounced; past link_queue_max of them (or source_allowance
 * bytes) each holds a pause of its source, and only 16 times link_queue_max
 * is refused, as for an s2s link coming up. When the node leaves the
 * directory they are routed again.
 *
 * Leases. The receiver checks each stanza that travels under a lease
 * against its own: none, or an older token than the one named, means the
 * sender's knowledge is newer than ours (we lost the lease) or simply wrong,
 * and the stanza goes back to the sender after a <refused/>; the sender
 * re-asks the owner and routes it again. An older token than ours is
 * accepted: we are the owner, the sender just has not heard of our newer
 * acquisition.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/alloc.h"
#include "net/log.h"
#include "router/hub.h"
#include "router/sess.h"
#include "router/route.h"
#include "router/flow.h"
#include "router/clu.h"
#include "router/nodelink.h"
#include "router/nodelink-int.h"

#define NL_TOKEN_REFUSED (1ull << 63) /* in a sender's context table: that token was refused */
#define NL_TOKEN_NONE UINT64_MAX       /* in a sender's context table: named, not announced yet */
/* Unacknowledged stanzas one link may have on its stream (the bytes are
 * bounded by send_queue_max too), and entries its ring may hold in all. */
#define NL_UNACKED_MAX 65536
#define NL_RING_MAX (1u << 18)
/* Unacknowledged entries past which a slice of a receive buffer that runs
 * short is moved into a buffer of its own before it goes on the stream
 * (net/'s rule for slow send queues: the ring must not pin the pool). */
#define NL_PIN_MAX 64

/* ---- state ---------------------------------------------------------------- */

enum nl_st {
	NLS_HDR,   /* waiting for the peer's stream header */
	NLS_AUTH,  /* waiting for the peer's proof */
	NLS_OK,    /* connector: proof sent, waiting for <ok/> */
	NLS_READY, /* stanzas flow */
};

struct nl_conn {
	bool outbound;
	uint8_t st; /* enum nl_st */
	bool counted_up;
	int idx;                /* outbound: the peer's directory index */
	char peer[CLU_ID_MAX];  /* the peer's node id */
	char peer_sid[128];     /* the peer's stream id */
	struct nl_ctx ctx;      /* lease contexts announced (out) or received (in) */
	bool refused_seen;      /* outbound: a <refused/> came: stanzas may follow */
	bool detached;          /* outbound: no longer its nl_out's link (closing) */
	char ref_r[CFG_NAME_MAX]; /* inbound: the last <refused/> sent */
	uint64_t ref_t;
	struct nl_ring ring;    /* outbound: stanzas not acknowledged yet */
	uint64_t ack_at;        /* outbound: ms: the ring last moved (or became non-empty) */
	uint32_t rx_n, rx_acked; /* inbound: stanzas taken / acknowledged so far */
	bool window_full;       /* outbound: too much unacknowledged: wait for half of it */
	struct net_ref *hsrc;   /* outbound: sources paused for what waits in the ring */
	uint32_t nhsrc, chsrc;
};

/* A stanza waiting for its link to authenticate: our copy, the stanza's
 * bytes then the remote's name. */
struct nl_wait {
	struct net_buf *b;
	uint32_t n;
	uint16_t rn;
	bool held; /* it holds a pause of src */
	uint64_t token;
	struct net_ref src;
};

struct nl_out {
	struct sess *s; /* the link's session; NULL: none */
	struct clu_node node;
	uint64_t gen; /* clu_nodes_gen() when node was read */
	bool known;
	uint32_t fails;    /* connection attempts in a row that did not authenticate */
	uint64_t retry_at; /* ms: no new attempt before */
	uint64_t last_tx;  /* ms: last bytes queued (keepalive) */
	struct nl_wait *wq;
	uint32_t whead, wlen, wcap;
	uint64_t wbytes, wsince;
	uint32_t old; /* its former links not closed yet: no new one before */
	bool rerouting;
};

struct nl_worker {
	struct nl_out out[CLU_MAX_NODES];
	int nout; /* indexes used: 0..nout-1 */
	bool stopping;
};

static nl_refused_fn *refused_hook;
static const struct net_conn_ops nl_ops;

void nl_set_refused_hook(nl_refused_fn *fn)
{
	refused_hook = fn;
}

static struct nl_worker *nlw(struct hubw *h)
{
	if (!h->nl)
		h->nl = xcalloc(1, sizeof(*h->nl));
	return h->nl;
}

/* Node ids and stream ids on the wire: short, and nothing to escape. */
static bool id_ok(struct xml_span v, size_t cap)
{
	if (!v.n || v.n >= cap)
		return false;
	for (uint32_t i = 0; i < v.n; i++) {
		char ch = v.p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		      ch == '_' || ch == '.' || ch == ':'))
			return false;
	}
	return true;
}

static void span_copy(struct xml_span v, char *out, size_t cap)
{
	size_t n = v.n < cap - 1 ? v.n : cap - 1;
	memcpy(out, v.p, n);
	out[n] = 0;
}

static void send_header(struct sess *s, const char *to)
{
	sess_sendf(s,
		   "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
		   "xmlns:stream='http://etherx.jabber.org/streams' from='%s' to='%s' id='%s' version='1.0'>",
		   clu_self_id(), to, s->stream_id);
	s->state = SESS_OPEN;
}

static void send_proof(struct sess *s, const char *role)
{
	struct nl_conn *nc = s->nl;
	size_t slen;
	const unsigned char *secret = clu_secret(&slen);
	char mac[NL_MAC_HEX + 1], buf[160];
	if (nc->outbound)
		nl_mac(secret, slen, role, s->stream_id, nc->peer_sid, clu_self_id(), nc->peer, mac);
	else
		nl_mac(secret, slen, role, nc->peer_sid, s->stream_id, nc->peer, clu_self_id(), mac);
	int k = nl_ctrl_auth(buf, sizeof(buf), mac);
	sess_send(s, buf, (size_t)k);
}

/* The peer's proof of `role`. */
static bool proof_ok(struct sess *s, const char *role, struct xml_span got)
{
	struct nl_conn *nc = s->nl;
	size_t slen;
	const unsigned char *secret = clu_secret(&slen);
	char want[NL_MAC_HEX + 1];
	if (!secret || !slen)
		return false;
	if (nc->outbound)
		nl_mac(secret, slen, role, s->stream_id, nc->peer_sid, clu_self_id(), nc->peer, want);
	else
		nl_mac(secret, slen, role, nc->peer_sid, s->stream_id, nc->peer, clu_self_id(), want);
	return nl_mac_ok(got, want);
}

static void auth_failed(struct hubw *h, struct sess *s)
{
	MET_INC(h->m, cluster_node_auth_failures);
	log_warn(s->c->id, "node link %s %s: the cluster secret was not proved", s->nl->outbound ? "to" : "from",
		 s->nl->peer[0] ? s->nl->peer : "?");
	sess_stream_error(s, SERR_NOT_AUTHORIZED, NULL);
}

static void link_up(struct hubw *h, struct sess *s)
{
	struct nl_conn *nc = s->nl;
	nc->st = NLS_READY;
	s->tok.authenticated = true;
	net_conn_set_deadline(s->c, 0);
	met_link_up(h->m, &s->ml, MET_AUTH_CLUSTER_SECRET, MET_TLS_NONE, MET_DOM_REMOTE, NULL);
	log_info(s->c->id, "node link %s %s up", nc->outbound ? "to" : "from", nc->peer);
}

/* ---- the connect queue ----------------------------------------------------- */

static struct nl_wait wq_pop(struct nl_out *o)
{
	struct nl_wait it = o->wq[o->whead];
	o->whead = (o->whead + 1) & (o->wcap - 1);
	o->wlen--;
	o->wbytes -= it.n;
	return it;
}

static void wq_bounce_all(struct hubw *h, struct nl_out *o, enum hub_sterr err)
{
	while (o->wlen) {
		struct nl_wait it = wq_pop(o);
		if (it.held)
			flow_src_release(h, it.src);
		route_bounce_raw(h, it.b->data, it.n, err);
		net_buf_unref(h->w, it.b);
	}
}

static void wq_reroute_all(struct hubw *h, struct nl_out *o)
{
	uint32_t n = o->wlen; /* what comes back here stays */
	if (o->rerouting)
		return; /* a stanza being routed again triggered this again */
	o->rerouting = true;
	while (n-- && o->wlen) {
		struct nl_wait it = wq_pop(o);
		if (it.held)
			flow_src_release(h, it.src);
		route_raw(h, it.b, it.b->data, it.n);
	}
	o->rerouting = false;
}

/* Room in o's connect queue for `more` entries. */
static int wq_room(struct nl_out *o, uint32_t more)
{
	if (o->wlen + more <= o->wcap)
		return 0;
	uint32_t ncap = o->wcap ? o->wcap : 64;
	while (ncap < o->wlen + more)
		ncap *= 2;
	struct nl_wait *a = malloc(ncap * sizeof(*a));
	if (!a)
		return -ENOMEM;
	for (uint32_t i = 0; i < o->wlen; i++)
		a[i] = o->wq[(o->whead + i) & (o->wcap - 1)];
	free(o->wq);
	o->wq = a;
	o->whead = 0;
	o->wcap = ncap;
	return 0;
}

/* Our copy of a stanza for the connect queue: its bytes, then the remote's
 * name. NULL when out of memory. */
static struct net_buf *wq_copy(struct hubw *h, const char *p, size_t n, const char *remote, size_t rn)
{
	struct net_buf *cb = net_buf_new(h->w, n + rn);
	if (!cb)
		return NULL;
	memcpy(cb->data, p, n);
	if (rn)
		memcpy(cb->data + n, remote, rn);
	cb->len = (uint32_t)(n + rn);
	return cb;
}

static int wq_push(struct hubw *h, struct nl_out *o, struct net_buf *b, const char *p, size_t n, const char *remote,
		   size_t rn, uint64_t token, struct net_ref src, enum hub_sterr *why)
{
	*why = STERR_RESOURCE_CONSTRAINT;
	/* like an s2s link coming up: past link_queue_max a stanza still waits
	 * and pauses its source; only 16 times that is refused */
	if (o->wlen >= 16 * hub_cfg->link_queue_max) {
		MET_INC(h->m, send_queue_full);
		return -ENOBUFS;
	}
	if (wq_room(o, 1) < 0)
		return -ENOMEM;
	struct net_buf *cb = wq_copy(h, p, n, remote, rn);
	if (!cb)
		return -ENOMEM;
	net_buf_unref(h->w, b); /* the caller's reference: we keep our copy */
	struct nl_wait it = {cb, (uint32_t)n, (uint16_t)rn, false, token, src};
	if (!o->wlen)
		o->wsince = net_now_ms();
	o->wbytes += n;
	if (src.worker != FLOW_NO_SRC && (o->wbytes > hub_cfg->source_allowance || o->wlen >= hub_cfg->link_queue_max)) {
		it.held = true; /* the link is slow to come up: slow its sources too */
		flow_src_hold(h, src);
	}
	o->wq[(o->whead + o->wlen) & (o->wcap - 1)] = it;
	o->wlen++;
	return 0;
}

/* ---- outbound links ------------------------------------------------------- */

static bool out_node(struct nl_out *o, int idx)
{
	uint64_t g = clu_nodes_gen();
	if (!o->known || o->gen != g) {
		o->known = clu_node_get(idx, &o->node);
		o->gen = g;
	}
	return o->known && o->node.alive;
}

static void out_connect(struct hubw *h, struct nl_out *o, int idx)
{
	if (o->old)
		return; /* a former link still holds stanzas that go first */
	struct sess *s = sess_new(SESS_NODE);
	struct nl_conn *nc = xcalloc(1, sizeof(*nc));
	nc->outbound = true;
	nc->idx = idx;
	snprintf(nc->peer, sizeof(nc->peer), "%s", o->node.id);
	s->nl = nc;
	char label[CLU_ID_MAX + 8];
	snprintf(label, sizeof(label), "node:%s", o->node.id);
	s->remote = xstrdup(label); /* what flow.c and the logs name */
	struct net_conn *c = net_connect(h->w, (struct sockaddr *)&o->node.addr, o->node.alen, &nl_ops, s);
	if (!c) {
		free(nc);
		s->nl = NULL;
		sess_free(s);
		o->retry_at = net_now_ms() + 1000;
		return;
	}
	s->c = c;
	met_conn_open(h->m, &s->ml, MET_DIR_NODE);
	net_conn_set_deadline(c, net_now_ms() + (uint64_t)hub_cfg->connect_timeout * 1000);
	o->s = s;
	log_debug(c->id, "node link to %s: connecting", nc->peer);
}

/* The link of o is going away: new stanzas wait for the next one (behind
 * what its ring holds, which joins them when it has closed). */
static void out_detach(struct nl_out *o, bool was_ready)
{
	if (o->s && o->s->nl && !o->s->nl->detached) {
		o->s->nl->detached = true;
		o->old++;
	}
	o->s = NULL;
	if (was_ready) {
		o->fails = 0;
		o->retry_at = 0;
	} else {
		o->fails++;
		uint32_t sh = o->fails < 5 ? o->fails : 5;
		o->retry_at = net_now_ms() + (250ull << sh); /* 0.5 s .. 8 s */
	}
}

static struct nl_out *out_of(struct hubw *h, struct sess *s)
{
	if (!h->nl || !s->nl || !s->nl->outbound)
		return NULL;
	struct nl_out *o = &h->nl->out[s->nl->idx];
	return o->s == s ? o : NULL;
}

static bool ref_eq(struct net_ref a, struct net_ref b)
{
	return a.worker == b.worker && a.slot == b.slot && a.gen == b.gen;
}

/* More than source_allowance bytes wait in the ring: pause src (once) until
 * no more than half of that waits. */
static void ring_hold_src(struct hubw *h, struct nl_conn *nc, struct net_ref src)
{
	if (src.worker == FLOW_NO_SRC)
		return;
	for (uint32_t i = 0; i < nc->nhsrc; i++)
		if (ref_eq(nc->hsrc[i], src))
			return;
	if (nc->nhsrc == nc->chsrc) {
		uint32_t ncap = nc->chsrc ? nc->chsrc * 2 : 8;
		struct net_ref *a = realloc(nc->hsrc, ncap * sizeof(*a));
		if (!a)
			return; /* not paused: the ring's bounds still hold */
		nc->hsrc = a;
		nc->chsrc = ncap;
	}
	nc->hsrc[nc->nhsrc++] = src;
	flow_src_hold(h, src);
}

static void ring_release_srcs(struct hubw *h, struct nl_conn *nc)
{
	for (uint32_t i = 0; i < nc->nhsrc; i++)
		flow_src_release(h, nc->hsrc[i]);
	nc->nhsrc = 0;
}

/* Put what the ring of link s holds on its stream while there is room:
 * the send queue below send_queue_max, fewer than NL_UNACKED_MAX stanzas
 * (and send_queue_max bytes) unacknowledged. Each stanza's lease context
 * goes first when the link has not announced it. The send queue borrows
 * the bytes: the ring keeps the reference until the acknowledgement. */
static void out_pump(struct hubw *h, struct sess *s)
{
	struct net_conn *c = s->c;
	struct nl_conn *nc = s->nl;
	struct nl_ring *r = &nc->ring;
	struct nl_ua *e;
	bool moved = false;
	while ((e = nl_ring_pending(r))) {
		if (r->nsent >= NL_UNACKED_MAX || (r->nsent && r->sent_bytes + e->n > hub_cfg->send_queue_max)) {
			nc->window_full = true; /* the acknowledgements make room */
			break;
		}
		if (e->rn) {
			struct nl_ctx_ent *x = nl_ctx_find(&nc->ctx, e->remote, e->rn, e->hv);
			/* a refused token stays announced: the receiver refuses again */
			if (x && (x->token & ~NL_TOKEN_REFUSED) != e->token) {
				char buf[CFG_NAME_MAX + 96];
				int k = nl_ctrl_lease(buf, sizeof(buf), e->remote, e->rn, e->token);
				if (k < 0 || net_send_copy(c, buf, (size_t)k) < 0)
					break;
				x->token = e->token;
			}
		}
		if (r->nsent >= NL_PIN_MAX && net_buf_scarce(e->b))
			(void)net_buf_own(h->w, &e->b, &e->p, e->n); /* out of memory: it stays a slice */
		if (net_send_slice_take(c, NULL, e->p, e->n) < 0)
			break; /* full (on_drain comes back) or closing (on_close takes the ring) */
		nl_ring_mark_sent(r);
		moved = true;
	}
	if (nc->nhsrc && r->pend_bytes <= hub_cfg->source_allowance / 2)
		ring_release_srcs(h, nc);
	if (moved && h->nl)
		h->nl->out[nc->idx].last_tx = net_now_ms();
}

/* A stanza on a ready link: into its ring, then on the stream if there is
 * room; if not, it waits in the ring (our copy, not a receive buffer), and
 * while more than source_allowance bytes wait its source is paused, until
 * half of that is left (so a source is not paused and resumed per stanza). */
static int out_send(struct hubw *h, struct nl_out *o, struct net_buf *b, const char *p, size_t n, const char *remote,
		    size_t rn, uint64_t token, struct net_ref src, enum hub_sterr *why)
{
	struct net_conn *c = o->s->c;
	struct nl_conn *nc = o->s->nl;
	struct nl_ring *r = &nc->ring;
	if (!(c->flags & NET_F_OPEN) || (c->flags & NET_F_CLOSING))
		return -EPIPE;
	struct nl_ua e = {.b = b, .p = p, .n = (uint32_t)n, .rn = (uint16_t)rn, .token = token, .src = src};
	if (rn) {
		e.hv = rt_hash(remote, rn);
		struct nl_ctx_ent *x = nl_ctx_find(&nc->ctx, remote, rn, e.hv);
		if (x && x->token == (token | NL_TOKEN_REFUSED)) {
			*why = STERR_REMOTE_SERVER_TIMEOUT;
			return -ESTALE;
		}
		if (!x) {
			if (nl_ctx_put(&nc->ctx, remote, rn, e.hv, NL_TOKEN_NONE) < 0 ||
			    !(x = nl_ctx_find(&nc->ctx, remote, rn, e.hv))) {
				*why = STERR_RESOURCE_CONSTRAINT;
				return -ENOMEM;
			}
		}
		e.remote = x->name;
	}
	*why = STERR_RESOURCE_CONSTRAINT;
	if (r->len > r->nsent && r->pend_bytes + n > flow_mem_share()) {
		MET_INC(h->m, send_queue_full);
		return -ENOBUFS;
	}
	int rc = nl_ring_push(r, &e, NL_RING_MAX);
	if (rc < 0) {
		MET_INC(h->m, send_queue_full);
		return rc;
	}
	if (r->len == 1)
		nc->ack_at = net_now_ms();
	out_pump(h, o->s);
	if (r->len > r->nsent) {
		/* it waits: the last entry is this stanza */
		struct nl_ua *w = &r->v[(r->head + r->len - 1) & (r->cap - 1)];
		(void)net_buf_own(h->w, &w->b, &w->p, w->n);
		if (r->pend_bytes > hub_cfg->source_allowance)
			ring_hold_src(h, nc, src);
	}
	MET_INC(h->m, cluster_fwd[0]);
	MET_INC(h->m, stanzas_routed);
	MET_INC(h->m, stanzas_dir[1][MET_DIR_NODE]);
	MET_ADD(h->m, bytes_dir[1][MET_DIR_NODE], n);
	return 0;
}

/* An acknowledgement on link s: what it covers leaves the ring. */
static void out_acked(struct hubw *h, struct sess *s, uint64_t hv)
{
	struct nl_conn *nc = s->nl;
	int k = nl_ring_ack(&nc->ring, (uint32_t)hv);
	if (k < 0) {
		sess_stream_error(s, SERR_UNDEFINED_CONDITION, "acknowledgement of stanzas not sent");
		return;
	}
	if (!k)
		return;
	while (k--) {
		struct nl_ua e = nl_ring_pop(&nc->ring);
		net_buf_unref(h->w, e.b);
	}
	nc->ack_at = net_now_ms();
	/* a full window reopens at half, like a send queue's drain: stanzas
	 * move (and sources resume) in large steps, not one per ack */
	if (nc->window_full &&
	    (nc->ring.nsent > NL_UNACKED_MAX / 2 || nc->ring.sent_bytes > hub_cfg->send_queue_max / 2))
		return;
	nc->window_full = false;
	out_pump(h, s);
}

/* Link s closed (no write refers to its ring any more): what its ring holds,
 * acknowledged by nobody, goes to the front of o's connect queue, in order,
 * ahead of what came meanwhile. From there it goes on the next link to that
 * node, or, once the node has left the directory, is routed again (to the
 * new lease owner, waiting for it in the s2s link's queue), or is bounced
 * after stall_timeout: sent at least once more, never dropped silently. */
static void out_requeue(struct hubw *h, struct nl_out *o, struct sess *s)
{
	struct nl_ring *r = &s->nl->ring;
	uint32_t m = r->len;
	if (!m)
		return;
	if ((h->nl && h->nl->stopping) || wq_room(o, m) < 0) {
		log_warn(s->c->id, "node link to %s closed%s: %u unacknowledged stanzas bounced", s->nl->peer,
			 h->nl && h->nl->stopping ? " at shutdown" : " (out of memory)", m);
		while (r->len) {
			struct nl_ua e = nl_ring_pop(r);
			route_bounce_raw(h, e.p, e.n, STERR_REMOTE_SERVER_TIMEOUT);
			net_buf_unref(h->w, e.b);
		}
		return;
	}
	log_info(s->c->id, "node link to %s closed with %u stanzas unacknowledged: they go again, first", s->nl->peer,
		 m);
	if (!o->wlen)
		o->wsince = net_now_ms();
	uint32_t at = (o->whead + o->wcap - m) & (o->wcap - 1), put = 0;
	while (r->len) {
		struct nl_ua e = nl_ring_pop(r);
		struct net_buf *cb = wq_copy(h, e.p, e.n, e.remote, e.rn);
		if (!cb) {
			route_bounce_raw(h, e.p, e.n, STERR_RESOURCE_CONSTRAINT);
			net_buf_unref(h->w, e.b);
			continue;
		}
		net_buf_unref(h->w, e.b);
		o->wq[(at + put) & (o->wcap - 1)] = (struct nl_wait){cb, e.n, e.rn, false, e.token, e.src};
		o->wbytes += e.n;
		put++;
	}
	/* close the gap the copies that failed left */
	uint32_t newhead = (o->whead + o->wcap - put) & (o->wcap - 1);
	for (uint32_t i = put; i-- > 0;)
		o->wq[(newhead + i) & (o->wcap - 1)] = o->wq[(at + i) & (o->wcap - 1)];
	o->whead = newhead;
	o->wlen += put;
	MET_ADD(h->m, node_link_resent, put);
}

/* The link authenticated: what waited goes, in order. */
static void out_ready(struct hubw *h, struct nl_out *o)
{
	while (o->wlen && o->s) {
		struct nl_wait it = wq_pop(o);
		enum hub_sterr why;
		int rc = out_send(h, o, it.b, it.b->data, it.n, it.b->data + it.n, it.rn, it.token, it.src, &why);
		if (rc == -EPIPE) { /* closing already: it waits, first, for the next link */
			o->whead = (o->whead + o->wcap - 1) & (o->wcap - 1);
			o->wq[o->whead] = it;
			o->wlen++;
			o->wbytes += it.n;
			out_detach(o, true);
			break;
		}
		if (it.held)
			flow_src_release(h, it.src);
		if (rc < 0) {
			route_bounce_raw(h, it.b->data, it.n, why);
			net_buf_unref(h->w, it.b);
		}
	}
}

int nl_forward(struct hubw *h, int node_idx, struct net_buf *b, const char *p, size_t n, const char *remote,
	       size_t rn, uint64_t token, struct net_ref src, enum hub_sterr *why)
{
	*why = STERR_SERVICE_UNAVAILABLE;
	if (node_idx < 0 || node_idx >= CLU_MAX_NODES || node_idx == clu_self() || !clu_enabled())
		return -EHOSTUNREACH;
	struct nl_worker *nw = nlw(h);
	struct nl_out *o = &nw->out[node_idx];
	if (o->s && o->s->nl->st == NLS_READY && !o->wlen && !o->old) {
		int rc = out_send(h, o, b, p, n, remote, rn, token, src, why);
		if (rc != -EPIPE)
			return rc;
		out_detach(o, true); /* closing: the stanza waits for the next link */
	}
	if (!out_node(o, node_idx))
		return -EHOSTUNREACH;
	if (node_idx >= nw->nout)
		nw->nout = node_idx + 1;
	int rc = wq_push(h, o, b, p, n, remote, rn, token, src, why);
	if (rc == 0 && !o->s && !o->old && net_now_ms() >= o->retry_at)
		out_connect(h, o, node_idx);
	return rc;
}

void nl_reroute_waiting(struct hubw *h, int node_idx)
{
	if (!h->nl || node_idx < 0 || node_idx >= CLU_MAX_NODES)
		return;
	struct nl_out *o = &h->nl->out[node_idx];
	if (o->wlen && !o->old && !(o->s && o->s->nl->st == NLS_READY))
		wq_reroute_all(h, o);
}

/* ---- component placement -------------------------------------------------- */

bool nl_comp_forward(struct hubw *h, const char *domain, size_t dn, struct net_buf *b, const struct xml_stanza *st,
		     struct net_ref src)
{
	if (!clu_enabled() || !dn)
		return false;
	/* a stanza that came from another node is not forwarded again */
	if (src.worker == net_worker_id(h->w)) {
		struct net_conn *sc = net_conn_get(h->w, src);
		if (sc && sc->user && ((struct sess *)sc->user)->kind == SESS_NODE)
			return false;
	}
	int idx[16];
	int k = clu_comp_nodes(domain, idx, 16);
	if (k <= 0)
		return false;
	if (k > 16)
		k = 16;
	/* the same choice as among a pool's connections: one node per conversation */
	struct xml_span f = jid_bare(st->from), t = jid_bare(st->to);
	uint32_t hv = rt_hash(f.p, f.n) * 31u ^ rt_hash(t.p, t.n);
	enum hub_sterr why;
	int rc = nl_forward(h, idx[hv % (uint32_t)k], b, st->raw.p, st->raw.n, NULL, 0, 0, src, &why);
	if (rc < 0) {
		route_bounce(h, st, why, NULL);
		net_buf_unref(h->w, b);
	}
	return true;
}

/* ---- receiving ------------------------------------------------------------ */

/* A stanza under a lease we do not hold (or an older one than named): back
 * to the sender, after a <refused/> naming the lease. */
static void in_refuse(struct hubw *h, struct sess *s, struct net_buf *b, const struct xml_stanza *st,
		      const struct nl_ctx_ent *e)
{
	struct nl_conn *nc = s->nl;
	MET_INC(h->m, cluster_refused);
	if (nc->ref_t != e->token || strcmp(nc->ref_r, e->name) != 0) {
		char buf[CFG_NAME_MAX + 96];
		int k = nl_ctrl_refused(buf, sizeof(buf), e->name, e->len, e->token);
		if (k < 0 || net_send_copy(s->c, buf, (size_t)k) < 0)
			goto bounce;
		snprintf(nc->ref_r, sizeof(nc->ref_r), "%s", e->name);
		nc->ref_t = e->token;
		log_info(s->c->id, "node link from %s: lease %s token %llu is not ours: stanzas sent back", nc->peer,
			 e->name, (unsigned long long)e->token);
	}
	net_buf_ref(b);
	if (net_send_slice(s->c, b, st->raw.p, st->raw.n) == 0)
		return;
	net_buf_unref(h->w, b);
bounce:
	route_bounce(h, st, STERR_REMOTE_SERVER_TIMEOUT, NULL);
}

static void in_stanza(struct hubw *h, struct sess *s, struct net_buf *b, const struct xml_stanza *st)
{
	struct nl_conn *nc = s->nl;
	MET_INC(h->m, cluster_fwd[1]);
	if (st->flags & (XML_ST_HDR_PREFIX | XML_ST_PREFIXED)) {
		/* the sending node forwards self-contained stanzas only */
		route_bounce(h, st, STERR_BAD_REQUEST, "stanza not namespace-self-contained");
		return;
	}
	struct stanza_addrs a;
	stanza_addrs_decode(st, &a);
	if (a.tl > 0 && nc->ctx.n) {
		struct nl_ctx_ent *e = nl_ctx_find(&nc->ctx, a.to, (size_t)a.tl, rt_hash(a.to, (size_t)a.tl));
		if (e) {
			uint64_t mine = clu_lease_token(a.to, (size_t)a.tl);
			if (!mine || e->token > mine) {
				in_refuse(h, s, b, st, e);
				return;
			}
			net_buf_ref(b);
			route_decoded(h, s, b, st, &a);
			return;
		}
	}
	/* no lease: only a component connected here may take it (a stanza is
	 * forwarded once, never on to a third node) */
	if (!a.route || a.route->kind != RT_COMPONENT || !a.route->nconns) {
		route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
		return;
	}
	net_buf_ref(b); /* ours: b is what this worker received */
	route_decoded(h, s, b, st, &a);
}

/* Outbound link: the acceptor refused forwards under a lease. */
static void out_refused(struct hubw *h, struct sess *s, const struct nl_ctrl *k)
{
	struct nl_conn *nc = s->nl;
	uint32_t hv = rt_hash(k->remote, (size_t)k->rn);
	nc->refused_seen = true;
	if (nl_ctx_put(&nc->ctx, k->remote, (size_t)k->rn, hv, k->token | NL_TOKEN_REFUSED) < 0)
		log_warn(s->c->id, "node link to %s: refusal of %s not kept", nc->peer, k->remote);
	log_info(s->c->id, "node link to %s: lease %s token %llu refused: asking again", nc->peer, k->remote,
		 (unsigned long long)k->token);
	if (refused_hook)
		refused_hook(h, k->remote, (size_t)k->rn, k->token, nc->idx);
	else
		clu_lease_ask(h->w, k->remote, (size_t)k->rn);
}

static void on_header(struct hubw *h, struct sess *s)
{
	struct nl_conn *nc = s->nl;
	const struct xml_stream_hdr *hd = &s->tok.hdr;
	if (hd->default_ns != XML_NS_SERVER) {
		sess_stream_error(s, SERR_INVALID_NAMESPACE, NULL);
		return;
	}
	if (!id_ok(hd->id, sizeof(nc->peer_sid)) || !id_ok(hd->from, sizeof(nc->peer))) {
		sess_stream_error(s, SERR_BAD_FORMAT, "node stream without a usable id or from");
		return;
	}
	span_copy(hd->id, nc->peer_sid, sizeof(nc->peer_sid));
	if (nc->outbound) {
		/* the address in the directory answers as another node: not ours */
		if (!span_eq(hd->from, nc->peer)) {
			sess_stream_error(s, SERR_HOST_UNKNOWN, "not the node expected at this address");
			return;
		}
	} else {
		if (hd->to.n && !span_eq(hd->to, clu_self_id())) {
			sess_stream_error(s, SERR_HOST_UNKNOWN, "not this node");
			return;
		}
		span_copy(hd->from, nc->peer, sizeof(nc->peer));
		sess_new_stream_id(h, s);
		send_header(s, nc->peer);
		send_proof(s, "acceptor");
	}
	nc->st = NLS_AUTH;
}

static enum drive nl_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	struct nl_conn *nc = s->nl;
	if (ev == XML_EV_STREAM_OPEN) {
		if (nc->st != NLS_HDR)
			sess_stream_error(s, SERR_BAD_FORMAT, NULL);
		else
			on_header(h, s);
		return DRIVE_ON;
	}
	const struct xml_stanza *st = &s->tok.st;
	struct nl_ctrl k;
	nl_ctrl_parse(st, &k);
	if (nc->st != NLS_READY) {
		if (nc->st == NLS_AUTH && k.kind == NL_C_AUTH) {
			if (!proof_ok(s, nc->outbound ? "acceptor" : "connector", k.text)) {
				auth_failed(h, s);
			} else if (nc->outbound) {
				send_proof(s, "connector");
				nc->st = NLS_OK;
			} else {
				sess_send(s, nl_ctrl_ok, strlen(nl_ctrl_ok));
				link_up(h, s);
			}
		} else if (nc->st == NLS_OK && k.kind == NL_C_OK) {
			link_up(h, s);
			struct nl_out *o = out_of(h, s);
			if (o)
				out_ready(h, o);
		} else {
			auth_failed(h, s);
		}
		return DRIVE_ON;
	}
	switch (k.kind) {
	case NL_C_STANZA:
		if (st->nsid != XML_NS_SERVER || !st_routable(st)) {
			sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		} else if (!nc->outbound) {
			in_stanza(h, s, b, st);
			nc->rx_n++; /* routed, bounced or sent back: ours now */
		} else if (nc->refused_seen) {
			/* sent back: route it again as the hub's own */
			MET_INC(h->m, cluster_returned);
			net_buf_ref(b);
			route_stanza(h, NULL, b, st);
		} else {
			sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		}
		break;
	case NL_C_LEASE:
		if (nc->outbound) {
			sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		} else if (nl_ctx_put(&nc->ctx, k.remote, (size_t)k.rn, rt_hash(k.remote, (size_t)k.rn), k.token) <
			   0) {
			sess_stream_error(s, SERR_RESOURCE_CONSTRAINT, "too many lease contexts");
		}
		break;
	case NL_C_REFUSED:
		if (nc->outbound)
			out_refused(h, s, &k);
		else
			sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		break;
	case NL_C_ACK:
		if (nc->outbound)
			out_acked(h, s, k.token);
		else
			sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		break;
	default:
		sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		break;
	}
	return DRIVE_ON;
}

/* ---- connection callbacks ------------------------------------------------- */

static size_t nl_on_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	struct sess *s = c->user;
	size_t used = sess_drive(s, b, p, n, nl_event);
	struct nl_conn *nc = s->nl;
	if (nc && !nc->outbound && nc->rx_n != nc->rx_acked && !(c->flags & NET_F_CLOSING)) {
		/* one acknowledgement per read batch, queued behind what routing
		 * the batch wrote: the sender may forget these stanzas */
		char buf[64];
		int k = nl_ctrl_ack(buf, sizeof(buf), nc->rx_n);
		if (k > 0 && net_send_copy(c, buf, (size_t)k) == 0)
			nc->rx_acked = nc->rx_n;
	}
	return used;
}

static void nl_on_connect(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (err) {
		log_info(c->id, "node link to %s: connect failed: %s", s->nl->peer, strerror(-err));
		return; /* on_close follows */
	}
	sess_new_stream_id(h, s);
	send_header(s, s->nl->peer);
}

static void nl_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct nl_conn *nc = s->nl;
	sess_log_enter(s);
	if (!nc->outbound)
		MET_INC(h->m, conn_closed); /* the pair of hub.c's conn_accepted */
	log_info(c->id, "node link %s %s closed: %s", nc->outbound ? "to" : "from", nc->peer[0] ? nc->peer : "?",
		 err ? strerror(-err) : "by us or the peer");
	if (nc->outbound && h->nl) {
		struct nl_out *o = &h->nl->out[nc->idx];
		if (o->s == s)
			out_detach(o, nc->st == NLS_READY);
		if (nc->detached && o->old)
			o->old--;
		out_requeue(h, o, s);
	}
	ring_release_srcs(h, nc);
	free(nc->hsrc);
	nl_ring_free(&nc->ring);
	nl_ctx_clear(&nc->ctx);
	s->nl = NULL;
	free(nc);
	sess_free(s);
}

/* Bytes queued to the link that never left. Outbound: the stanzas among
 * them are borrowed from the ring, which on_close queues again; our control
 * elements are made anew on the next link. Inbound: what we sent back
 * (refused stanzas) and acknowledgements: the sender, not acknowledged for
 * those stanzas, sends them again. So nothing here is routed. */
static void nl_on_unsent(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct nl_out *o = s->nl ? out_of(h, s) : NULL;
	(void)p;
	(void)n;
	if (o)
		out_detach(o, s->nl->st == NLS_READY);
	net_buf_unref(h->w, b);
}

static void nl_on_drain(struct net_conn *c)
{
	struct sess *s = c->user;
	if (s->nl && s->nl->outbound && s->nl->st == NLS_READY)
		out_pump(hubw_of(c->w), s);
	else
		flow_drain(hubw_of(c->w), s);
}

static void nl_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	if (s->nl && s->nl->st != NLS_READY)
		sess_stream_error(s, SERR_CONNECTION_TIMEOUT, "node link not authenticated in time");
}

static const struct net_conn_ops nl_ops = {
	.on_data = nl_on_data,
	.on_connect = nl_on_connect,
	.on_close = nl_on_close,
	.on_timer = nl_on_timer,
	.on_unsent = nl_on_unsent,
	.on_drain = nl_on_drain,
};

void nl_accept(struct net_conn *c)
{
	struct sess *s = sess_new(SESS_NODE);
	s->nl = xcalloc(1, sizeof(*s->nl));
	s->c = c;
	met_conn_open(hubw_of(c->w)->m, &s->ml, MET_DIR_NODE);
	c->ops = &nl_ops;
	c->user = s;
	net_conn_set_deadline(c, net_now_ms() + (uint64_t)hub_cfg->connect_timeout * 1000);
	if (!clu_enabled()) {
		sess_stream_error(s, SERR_NOT_AUTHORIZED, "not clustered");
		return;
	}
}

int nl_listen(const struct sockaddr *sa, socklen_t len)
{
	return net_listen(NL_LISTEN_KIND, sa, len);
}

int nl_init(const struct cfg *c)
{
	if (!c->cluster.on)
		return 0;
	const struct cfg_addr *a = &c->cluster.node_listen;
	int rc = nl_listen((const struct sockaddr *)&a->ss, a->len);
	if (rc < 0) {
		log_error(0, "cannot listen for node links on %s: %s", a->text, strerror(-rc));
		return rc;
	}
	log_info(0, "listening: node links %s (node %s)", a->text, clu_self_id());
	return 0;
}

/* ---- ticks ------------------------------------------------------------------ */

void nl_tick(struct hubw *h, uint64_t now)
{
	struct nl_worker *nw = h->nl;
	if (!nw)
		return;
	uint64_t stall = (uint64_t)hub_cfg->stall_timeout * 1000;
	uint64_t keep = (uint64_t)hub_cfg->keepalive_interval * 1000;
	uint64_t qbytes = 0, qstanzas = 0, unacked = 0;
	for (int i = 0; i < nw->nout; i++) {
		struct nl_out *o = &nw->out[i];
		struct sess *s = o->s;
		if (s && s->nl->st == NLS_READY) {
			struct nl_conn *nc = s->nl;
			if (!out_node(o, i)) {
				/* gone from the directory: its ring goes again (on_close) */
				log_warn(s->c->id, "node link to %s: the node is gone: link closed, %u stanzas unacknowledged",
					 nc->peer, nc->ring.len);
				out_detach(o, true);
				net_close(s->c, false);
				s = NULL;
			} else if (nc->ring.len && now - nc->ack_at >= stall) {
				log_warn(s->c->id, "node link to %s: no acknowledgement for %us: link closed, %u stanzas unacknowledged",
					 nc->peer, hub_cfg->stall_timeout, nc->ring.len);
				out_detach(o, true);
				net_close(s->c, false); /* no flush: the peer does not take it */
				s = NULL;
			} else if (nl_ring_pending(&nc->ring)) {
				out_pump(h, s);
			}
		}
		if (o->old)
			continue; /* a former link's ring joins the connect queue first */
		if (o->wlen && now - o->wsince >= stall) {
			log_warn(0, "node link to %s: not up for %us: %u waiting stanzas bounced", o->node.id,
				 hub_cfg->stall_timeout, o->wlen);
			wq_bounce_all(h, o, STERR_REMOTE_SERVER_TIMEOUT);
		}
		if (o->wlen && !out_node(o, i)) {
			/* the node left the directory: what waited for it is routed
			 * again (another node, or a bounce), not held for a dead one */
			log_info(0, "node link to %s: the node is gone: %u waiting stanzas routed again", o->node.id,
				 o->wlen);
			wq_reroute_all(h, o);
		}
		if (o->wlen && !o->s && now >= o->retry_at && out_node(o, i))
			out_connect(h, o, i);
		qbytes += o->wbytes;
		qstanzas += o->wlen;
		if (!s || s != o->s)
			continue;
		struct net_conn *c = s->c;
		unacked += s->nl->ring.len;
		qbytes += c->oq_bytes + s->nl->ring.pend_bytes;
		if (s->nl->st == NLS_READY && keep && !c->oq_len && !nl_ring_pending(&s->nl->ring) &&
		    now - o->last_tx >= keep) {
			net_send_copy(c, " ", 1); /* whitespace keepalive: a dead peer shows */
			o->last_tx = now;
		}
	}
	MET_SET(h->m, nl_queue_bytes, qbytes);
	MET_SET(h->m, nl_queue_stanzas, qstanzas);
	MET_SET(h->m, nl_unacked, unacked);
}

void nl_worker_stop(struct hubw *h)
{
	struct nl_worker *nw = h->nl;
	if (!nw)
		return;
	nw->stopping = true; /* rings of links closing from here on are bounced */
	for (int i = 0; i < nw->nout; i++) {
		wq_bounce_all(h, &nw->out[i], STERR_REMOTE_SERVER_TIMEOUT);
		free(nw->out[i].wq);
		nw->out[i].wq = NULL;
		nw->out[i].wcap = 0;
	}
}
