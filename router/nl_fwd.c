/*
 * router/nl_fwd.c — the sending side of node links: forwarding into a
 * link's ring, the connect queue, acknowledgements, requeue on close, and
 * component placement (nodelink.c sets the links up and receives; the wire
 * protocol is described in nodelink-int.h).
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

/* ---- the connect queue ----------------------------------------------------- */

static struct nl_wait wq_pop(struct nl_out *o)
{
	struct nl_wait it = o->wq[o->whead];
	o->whead = (o->whead + 1) & (o->wcap - 1);
	o->wlen--;
	o->wbytes -= it.n;
	return it;
}

void nl_wq_bounce_all(struct hubw *h, struct nl_out *o, enum hub_sterr err)
{
	while (o->wlen) {
		struct nl_wait it = wq_pop(o);
		if (it.held)
			flow_src_release(h, it.src);
		route_bounce_raw(h, it.b->data, it.n, err);
		net_buf_unref(h->w, it.b);
	}
}

void nl_wq_reroute_all(struct hubw *h, struct nl_out *o)
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
	if (src.worker != FLOW_NO_SRC &&
	    (o->wbytes > hub_cfg->source_allowance || o->wlen >= hub_cfg->link_queue_max)) {
		it.held = true; /* the link is slow to come up: slow its sources too */
		flow_src_hold(h, src);
	}
	o->wq[(o->whead + o->wlen) & (o->wcap - 1)] = it;
	o->wlen++;
	return 0;
}

/* ---- sending on a link ---------------------------------------------------- */

/* The link of o is going away: new stanzas wait for the next one (behind
 * what its ring holds, which joins them when it has closed). */
void nl_out_detach(struct nl_out *o, bool was_ready)
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

void nl_release_srcs(struct hubw *h, struct nl_conn *nc)
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
void nl_out_pump(struct hubw *h, struct sess *s)
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
		nl_release_srcs(h, nc);
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
	nl_out_pump(h, o->s);
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
void nl_out_acked(struct hubw *h, struct sess *s, uint64_t hv)
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
	nl_out_pump(h, s);
}

/* Link s closed (no write refers to its ring any more): what its ring holds,
 * acknowledged by nobody, goes to the front of o's connect queue, in order,
 * ahead of what came meanwhile. From there it goes on the next link to that
 * node, or, once the node has left the directory, is routed again (to the
 * new lease owner, waiting for it in the s2s link's queue), or is bounced
 * after stall_timeout: sent at least once more, never dropped silently. */
void nl_out_requeue(struct hubw *h, struct nl_out *o, struct sess *s)
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
void nl_out_ready(struct hubw *h, struct nl_out *o)
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
			nl_out_detach(o, true);
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

int nl_forward(struct hubw *h, int node_idx, struct net_buf *b, const char *p, size_t n, const char *remote, size_t rn,
	       uint64_t token, struct net_ref src, enum hub_sterr *why)
{
	*why = STERR_SERVICE_UNAVAILABLE;
	if (node_idx < 0 || node_idx >= CLU_MAX_NODES || node_idx == clu_self() || !clu_enabled())
		return -EHOSTUNREACH;
	struct nl_worker *nw = nl_worker_of(h);
	struct nl_out *o = &nw->out[node_idx];
	if (o->s && o->s->nl->st == NLS_READY && !o->wlen && !o->old) {
		int rc = out_send(h, o, b, p, n, remote, rn, token, src, why);
		if (rc != -EPIPE)
			return rc;
		nl_out_detach(o, true); /* closing: the stanza waits for the next link */
	}
	if (!nl_out_node(o, node_idx))
		return -EHOSTUNREACH;
	if (node_idx >= nw->nout)
		nw->nout = node_idx + 1;
	int rc = wq_push(h, o, b, p, n, remote, rn, token, src, why);
	if (rc == 0 && !o->s && !o->old && net_now_ms() >= o->retry_at)
		nl_out_connect(h, o, node_idx);
	return rc;
}

void nl_reroute_waiting(struct hubw *h, int node_idx)
{
	if (!h->nl || node_idx < 0 || node_idx >= CLU_MAX_NODES)
		return;
	struct nl_out *o = &h->nl->out[node_idx];
	if (o->wlen && !o->old && !(o->s && o->s->nl->st == NLS_READY))
		nl_wq_reroute_all(h, o);
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
