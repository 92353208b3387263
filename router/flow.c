/*
 * router/flow.c — flow control: a slow destination slows its sources.
 *
 * A destination is a connection (a component, an outbound s2s link) with a
 * send queue in net/ bounded by send_queue_max: that bound is its
 * high-water mark. A stanza that does not fit waits in the destination's
 * flow queue (struct flowq, on the destination's worker), in arrival order;
 * once the queue is non-empty every later stanza for that destination waits
 * behind it, so order is kept. The flow queue holds copies, never receive
 * buffers (a stalled reader must not pin the provided-buffer pool).
 *
 * Each source (the connection a waiting stanza was read from) has an
 * allowance, source_allowance bytes, in each destination's flow queue.
 * Below it the source keeps being read, so its stanzas for other
 * destinations keep flowing; above it the source is paused
 * (net_conn_pause_recv: TCP then slows the remote sender) until the
 * destination has taken half of it. A source on another worker is paused
 * and resumed by message (HUB_MSG_PAUSE / HUB_MSG_RESUME); a source counts
 * how many destinations hold it (sess.paused_by) and is read again when
 * the last one lets go. Head-of-line delay for a source's other
 * destinations is thus bounded by the allowance and by stall_timeout.
 *
 * A destination that makes no progress (its send queue does not move) for
 * stall_timeout has what waits for it bounced with the RFC 6120 stanza
 * error and its sources resumed; while it stays stuck, new stanzas for it
 * are bounced at once. A destination that goes away hands what waits for
 * it to the router again (another connection of the pool, or the link's
 * reconnect queue).
 *
 * Messages to another worker whose ring is full wait in this worker's
 * outbox (in order per destination worker) and are retried every loop
 * turn; the source of such a stanza is paused until it has gone.
 *
 * Memory: all flow queues of one worker together hold at most
 * queue_memory_max / workers bytes; a stanza beyond that is bounced with
 * resource-constraint. With sources paused at their allowance this bound
 * is only reached by very many sources feeding stuck destinations.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/hub.h"
#include "router/sess.h"
#include "router/route.h"
#include "router/flow.h"
#include "net/log.h"

static const struct net_ref no_src = {.worker = FLOW_NO_SRC};

static uint64_t mem_share(void)
{
	int n = net_nworkers();
	return (uint64_t)hub_cfg->queue_memory_max / (uint64_t)(n > 0 ? n : 1);
}

static bool ref_eq(struct net_ref a, struct net_ref b)
{
	return a.worker == b.worker && a.slot == b.slot && a.gen == b.gen;
}

/* ---- sources: pause and resume --------------------------------------- */

static void src_apply(struct hubw *h, struct net_ref r, bool hold)
{
	struct net_conn *c = net_conn_get(h->w, r);
	if (!c || !c->user)
		return;
	struct sess *s = c->user;
	if (hold) {
		if (s->paused_by++ == 0) {
			net_conn_pause_recv(c);
			MET_INC(h->m, flow_paused_sources);
			MET_INC(h->m, flow_pauses);
		}
	} else if (s->paused_by && --s->paused_by == 0) {
		MET_DEC(h->m, flow_paused_sources);
		net_conn_resume_recv(c);
	}
}

static void src_hold_release(struct hubw *h, struct net_ref r, bool hold)
{
	if (r.worker == FLOW_NO_SRC)
		return;
	if (r.worker == net_worker_id(h->w)) {
		src_apply(h, r, hold);
		return;
	}
	struct net_msg m = {.type = hold ? HUB_MSG_PAUSE : HUB_MSG_RESUME};
	memcpy(m.u.bytes, &r, sizeof(r));
	flow_msg_send(h, r.worker, &m, no_src);
}

void flow_src_hold(struct hubw *h, struct net_ref src)
{
	src_hold_release(h, src, true);
}

void flow_src_release(struct hubw *h, struct net_ref src)
{
	src_hold_release(h, src, false);
}

uint64_t flow_mem_share(void)
{
	return mem_share();
}

void flow_sess_gone(struct hubw *h, struct sess *s)
{
	if (s->paused_by) {
		s->paused_by = 0;
		MET_DEC(h->m, flow_paused_sources);
	}
}

/* ---- the outbox: messages to workers whose ring was full --------------- */

static void outbox_push(struct hubw *h, int dst, const struct net_msg *m, struct net_ref src)
{
	if (h->olen == h->ocap) {
		uint32_t ncap = h->ocap ? h->ocap * 2 : 64;
		struct flow_omsg *o = realloc(h->obox, ncap * sizeof(*o));
		if (!o) {
			/* data path: out of memory loses this one message (counted) */
			MET_INC(h->m, send_queue_full);
			log_warn(0, "flow: out of memory for a message to worker %d", dst);
			if (m->buf)
				net_buf_unref(h->w, m->buf);
			return;
		}
		h->obox = o;
		h->ocap = ncap;
	}
	h->obox[h->olen++] = (struct flow_omsg){*m, src, (uint16_t)dst};
	h->oblocked |= 1ull << dst;
	MET_INC(h->m, flow_ring_waits);
	if (src.worker != FLOW_NO_SRC)
		src_apply(h, src, true); /* src is ours: it sent the message */
}

void flow_msg_send(struct hubw *h, int dst, const struct net_msg *m, struct net_ref src)
{
	if (!(h->oblocked & (1ull << dst)) && net_msg_send(h->w, dst, m) == 0)
		return;
	outbox_push(h, dst, m, src);
}

void flow_turn(struct hubw *h)
{
	if (!h->olen)
		return;
	uint64_t blocked = 0;
	uint32_t k = 0, n = h->olen;
	for (uint32_t i = 0; i < n; i++) {
		struct flow_omsg *o = &h->obox[i];
		if (!(blocked & (1ull << o->dst)) && net_msg_send(h->w, o->dst, &o->m) == 0) {
			if (o->src.worker != FLOW_NO_SRC)
				src_apply(h, o->src, false);
			continue;
		}
		blocked |= 1ull << o->dst; /* keep the order to that worker */
		h->obox[k++] = *o;
	}
	h->olen = k;
	h->oblocked = blocked;
}

/* ---- destinations ------------------------------------------------------ */

static void busy_add(struct hubw *h, struct sess *d)
{
	if (d->fq->busy)
		return;
	if (h->nfbusy == h->cfbusy) {
		uint32_t ncap = h->cfbusy ? h->cfbusy * 2 : 16;
		struct net_ref *a = realloc(h->fbusy, ncap * sizeof(*a));
		if (!a)
			return; /* the tick will not see it; a drain still will */
		h->fbusy = a;
		h->cfbusy = ncap;
	}
	h->fbusy[h->nfbusy++] = d->c->ref;
	d->fq->busy = true;
}

/* ---- a flow queue's sources, indexed by net_ref ----------------------- */

uint32_t flow_ref_hash(struct net_ref r)
{
	uint64_t k = ((uint64_t)r.slot << 16 | r.worker) ^ ((uint64_t)r.gen << 40);
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return (uint32_t)k;
}

struct src_key {
	const struct flowq *q;
	struct net_ref r;
};

static bool src_eq(const void *ctx, uint32_t i, uint32_t h)
{
	const struct src_key *k = ctx;
	return k->q->src[i].hash == h && ref_eq(k->q->src[i].ref, k->r);
}

static uint32_t src_hash_at(const void *ctx, uint32_t i)
{
	const struct src_key *k = ctx;
	return k->q->src[i].hash;
}

struct flow_src *flow_src_find(struct flowq *q, struct net_ref r)
{
	struct src_key k = {q, r};
	int64_t i = pix_find(&q->six, q->nsrc, flow_ref_hash(r), src_eq, &k);
	return i < 0 ? NULL : &q->src[i];
}

struct flow_src *flow_src_add(struct flowq *q, struct net_ref r)
{
	struct src_key k = {q, r};
	uint32_t h = flow_ref_hash(r);
	if (q->nsrc == q->csrc) {
		uint32_t ncap = q->csrc ? q->csrc * 2 : 4;
		struct flow_src *a = realloc(q->src, ncap * sizeof(*a));
		if (!a)
			return NULL;
		q->src = a;
		q->csrc = ncap;
	}
	if (pix_reserve(&q->six, q->nsrc + 1, src_hash_at, &k) < 0)
		return NULL;
	uint32_t i = q->nsrc++;
	q->src[i] = (struct flow_src){.ref = r, .hash = h};
	pix_added(&q->six, i, h, src_hash_at, &k); /* room made: no allocation */
	return &q->src[i];
}

void flow_src_del(struct flowq *q, struct flow_src *e)
{
	struct src_key k = {q, e->ref};
	uint32_t i = (uint32_t)(e - q->src);
	pix_removing(&q->six, q->nsrc, i, e->hash, src_hash_at, &k);
	q->src[i] = q->src[--q->nsrc];
}

void flow_src_clear(struct flowq *q)
{
	/* last first: nothing moves, each removal is one probe run; the
	 * table stays for the next episode (freed with the queue) */
	while (q->nsrc)
		flow_src_del(q, &q->src[q->nsrc - 1]);
	q->npaused = 0;
}

static struct flow_src *src_entry(struct flowq *q, struct net_ref r, bool add)
{
	struct flow_src *e = flow_src_find(q, r);
	return e || !add ? e : flow_src_add(q, r);
}

static void release_all(struct hubw *h, struct flowq *q)
{
	for (uint32_t i = 0; i < q->nsrc; i++)
		if (q->src[i].paused)
			src_hold_release(h, q->src[i].ref, false);
	flow_src_clear(q);
}

/* Take the head item off q, with its accounting. */
static struct flow_item pop(struct hubw *h, struct flowq *q)
{
	struct flow_item it = q->q[q->head];
	q->head = (q->head + 1) & (q->cap - 1);
	q->len--;
	q->bytes -= it.n;
	h->fq_bytes -= it.n;
	MET_ADD(h->m, flow_queue_bytes, -(int64_t)it.n);
	MET_DEC(h->m, flow_queue_stanzas);
	struct flow_src *e = it.src.worker == FLOW_NO_SRC ? NULL : src_entry(q, it.src, false);
	if (e) {
		e->bytes -= it.n;
		if (e->paused && e->bytes <= hub_cfg->source_allowance / 2) {
			e->paused = false;
			q->npaused--;
			src_hold_release(h, e->ref, false);
		}
		if (!e->bytes && !e->paused)
			flow_src_del(q, e);
	}
	return it;
}

static int push(struct hubw *h, struct sess *d, struct net_buf *b, const char *p, size_t n, struct net_ref src)
{
	struct flowq *q = d->fq;
	if (!q) {
		q = d->fq = calloc(1, sizeof(*q));
		if (!q)
			return -ENOMEM;
	}
	if (q->len == q->cap) {
		uint32_t ncap = q->cap ? q->cap * 2 : 64;
		struct flow_item *a = malloc(ncap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		for (uint32_t i = 0; i < q->len; i++)
			a[i] = q->q[(q->head + i) & (q->cap - 1)];
		free(q->q);
		q->q = a;
		q->head = 0;
		q->cap = ncap;
	}
	struct flow_src *e = src.worker == FLOW_NO_SRC ? NULL : src_entry(q, src, true);
	if (src.worker != FLOW_NO_SRC && !e)
		return -ENOMEM;
	if (net_buf_own(h->w, &b, &p, n) < 0)
		return -ENOMEM;
	if (!q->len) {
		q->progress_at = net_now_ms();
		q->last_oq = d->c->oq_bytes;
	}
	q->q[(q->head + q->len) & (q->cap - 1)] = (struct flow_item){b, p, (uint32_t)n, src};
	q->len++;
	q->bytes += n;
	h->fq_bytes += n;
	MET_ADD(h->m, flow_queue_bytes, n);
	MET_INC(h->m, flow_queue_stanzas);
	MET_INC(h->m, flow_waited);
	busy_add(h, d);
	if (e) {
		e->bytes += (uint32_t)n;
		if (!e->paused && e->bytes > hub_cfg->source_allowance) {
			e->paused = true;
			q->npaused++;
			src_hold_release(h, src, true);
		}
	}
	return 0;
}

int flow_send(struct hubw *h, struct net_conn *c, struct net_buf *b, const char *p, size_t n, struct net_ref src,
	      enum hub_sterr *why)
{
	struct sess *d = c->user;
	struct flowq *q = d->fq;
	if (!q || !q->len) {
		int rc = net_send_slice_take(c, b, p, n);
		if (rc != -ENOBUFS) {
			*why = STERR_RESOURCE_CONSTRAINT;
			return rc;
		}
	} else if (!(c->flags & NET_F_OPEN) || (c->flags & NET_F_CLOSING)) {
		return -EPIPE;
	}
	if (q && q->stalled) {
		/* stuck for stall_timeout already: what cannot be delivered is bounced */
		*why = d->kind == SESS_COMP ? STERR_RESOURCE_CONSTRAINT : STERR_REMOTE_SERVER_TIMEOUT;
		MET_INC(h->m, flow_stall_bounced);
		return -ETIMEDOUT;
	}
	*why = STERR_RESOURCE_CONSTRAINT;
	if (n > hub_cfg->send_queue_max || h->fq_bytes + n > mem_share()) {
		MET_INC(h->m, send_queue_full);
		return -ENOBUFS;
	}
	if (push(h, d, b, p, n, src) < 0) {
		MET_INC(h->m, send_queue_full);
		return -ENOMEM;
	}
	return 0;
}

void flow_drain(struct hubw *h, struct sess *d)
{
	struct flowq *q = d->fq;
	if (!q || !q->len)
		return;
	struct net_conn *c = d->c;
	bool moved = false;
	while (q->len) {
		struct flow_item *it = &q->q[q->head];
		if (net_send_slice_take(c, it->b, it->p, it->n) < 0)
			break; /* full again (or closing: flow_close takes the rest) */
		moved = true;
		MET_INC(h->m, stanzas_routed);
		pop(h, q);
	}
	if (moved) {
		q->progress_at = net_now_ms();
		q->last_oq = c->oq_bytes;
		q->stalled = false;
	}
	if (!q->len)
		release_all(h, q);
}

static void bounce_all(struct hubw *h, struct sess *d, enum hub_sterr err)
{
	struct flowq *q = d->fq;
	uint32_t n = q->len;
	log_warn(d->c->id, "flow: %s made no progress for %us: %u waiting stanzas bounced",
		 d->kind == SESS_COMP ? d->local : d->remote, hub_cfg->stall_timeout, n);
	q->stalled = true;
	while (n-- && q->len) {
		struct flow_item it = pop(h, q);
		MET_INC(h->m, flow_stall_bounced);
		route_bounce_raw(h, it.p, it.n, err);
		net_buf_unref(h->w, it.b);
	}
	release_all(h, q);
}

void flow_close(struct hubw *h, struct sess *d)
{
	struct flowq *q = d->fq;
	if (!q)
		return;
	d->fq = NULL; /* what is routed again must not come back here */
	while (q->len) {
		struct flow_item it = pop(h, q);
		route_raw(h, it.b, it.p, it.n);
	}
	release_all(h, q);
	free(q->q);
	free(q->src);
	pix_free(&q->six);
	free(q);
}

void flow_tick(struct hubw *h, uint64_t now)
{
	uint64_t stall = (uint64_t)hub_cfg->stall_timeout * 1000;
	/* bounces made here may add destinations to the list: those stay */
	uint32_t k = 0, n = h->nfbusy;
	for (uint32_t i = 0; i < n; i++) {
		struct net_conn *c = net_conn_get(h->w, h->fbusy[i]);
		struct sess *d = c ? c->user : NULL;
		struct flowq *q = d ? d->fq : NULL;
		if (!q)
			continue;
		if (c->oq_bytes != q->last_oq) {
			q->progress_at = now;
			q->last_oq = c->oq_bytes;
			q->stalled = false;
		}
		flow_drain(h, d);
		if (q->len && now - q->progress_at >= stall)
			bounce_all(h, d,
				   d->kind == SESS_COMP ? STERR_RESOURCE_CONSTRAINT : STERR_REMOTE_SERVER_TIMEOUT);
		if (!q->len && !q->stalled) {
			q->busy = false;
			continue;
		}
		h->fbusy[k++] = h->fbusy[i];
	}
	if (h->nfbusy > n)
		memmove(h->fbusy + k, h->fbusy + n, (h->nfbusy - n) * sizeof(*h->fbusy));
	h->nfbusy = k + (h->nfbusy - n);
	flow_publish(h);
}

/* /metrics: the deepest flow queues of this worker, published once a tick
 * under a sequence count so the HTTP thread reads a consistent copy. */
void flow_publish(struct hubw *h)
{
	struct met_flow tmp[MET_FLOW_TOP];
	int nt = 0;
	for (uint32_t i = 0; i < h->nfbusy; i++) {
		struct net_conn *c = net_conn_get(h->w, h->fbusy[i]);
		struct sess *d = c ? c->user : NULL;
		if (!d || !d->fq)
			continue;
		struct met_flow f = {.stanzas = d->fq->len, .bytes = d->fq->bytes, .paused = d->fq->npaused};
		const char *name = d->kind == SESS_COMP ? d->local : d->remote;
		snprintf(f.dest, sizeof(f.dest), "%s", name ? name : "?");
		int at;
		if (nt < MET_FLOW_TOP)
			at = nt++;
		else if (tmp[MET_FLOW_TOP - 1].bytes < f.bytes)
			at = MET_FLOW_TOP - 1;
		else
			continue;
		tmp[at] = f; /* then up to its place: tmp stays sorted, deepest first */
		while (at > 0 && tmp[at - 1].bytes < tmp[at].bytes) {
			struct met_flow x = tmp[at - 1];
			tmp[at - 1] = tmp[at];
			tmp[at] = x;
			at--;
		}
	}
	met_flow_publish(h->m, tmp, nt);
}

void flow_on_msg(struct hubw *h, struct net_msg *m)
{
	struct net_ref r;
	memcpy(&r, m->u.bytes, sizeof(r));
	src_apply(h, r, m->type == HUB_MSG_PAUSE);
}
