/*
 * net/conn.c — connections of a worker and their output.
 *
 * Connection slots come from the worker's slab; a generation number in each
 * slot makes a struct net_ref from another worker safe after the connection
 * is gone. Receive buffers are reference-counted slices of the provided
 * buffer ring (or heap buffers); a buffer owned by another worker goes back
 * to it as a NET_MSG_RELEASE message. Output is a bounded queue of slices per
 * connection; every connection with queued output is on the dirty list and
 * gets one sendmsg per loop turn (flush_sends). Closing cancels exactly the
 * connection's own requests; the slot is freed once none is in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#include <liburing.h>
#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "net/alloc.h"
#include "net/log.h"
#include "net/tls.h"
#include "net/proxy.h"
#include "net/worker-int.h"

/* ---- buffers ------------------------------------------------------- */

static void buf_recycle(struct net_worker *w, struct net_buf *b)
{
	if (b->bid >= 0) {
		io_uring_buf_ring_add(w->br, b->data, w->bufsz, (unsigned short)b->bid,
				      io_uring_buf_ring_mask(w->nbufs), 0);
		io_uring_buf_ring_advance(w->br, 1);
		__atomic_store_n(&w->bufs_out, w->bufs_out - 1, __ATOMIC_RELAXED); /* one writer */
	} else {
		free(b->data);
		free(b);
	}
}

struct net_buf *net_buf_new(struct net_worker *w, size_t cap)
{
	struct net_buf *b = malloc(sizeof(*b));
	if (!b)
		return NULL;
	b->data = malloc(cap ? cap : 1);
	if (!b->data) {
		free(b);
		return NULL;
	}
	b->ref = 1;
	b->bid = -1;
	b->owner = w ? (uint16_t)w->id : NET_CTRL;
	b->cap = (uint32_t)cap;
	b->len = 0;
	b->rx_us = 0;
	return b;
}

int net_buf_own(struct net_worker *w, struct net_buf **b, const char **p, size_t n)
{
	if (!*b || (*b)->bid < 0)
		return 0;
	struct net_buf *cb = net_buf_new(w, n);
	if (!cb)
		return -ENOMEM;
	memcpy(cb->data, *p, n);
	cb->len = (uint32_t)n;
	cb->rx_us = (*b)->rx_us; /* still the same stanza's ingress */
	net_buf_unref(w, *b);
	*b = cb;
	*p = cb->data;
	return 0;
}

static void backlog_push(struct net_worker *w, const struct net_msg *m)
{
	if (w->nbacklog == w->backlog_cap) {
		w->backlog_cap = w->backlog_cap ? w->backlog_cap * 2 : 64;
		w->backlog = xrealloc(w->backlog, w->backlog_cap * sizeof(*m));
	}
	w->backlog[w->nbacklog++] = *m;
}

void net_buf_unref(struct net_worker *w, struct net_buf *b)
{
	if (!b)
		return;
	if (b->owner == (uint16_t)w->id) {
		if (--b->ref == 0)
			buf_recycle(w, b);
		return;
	}
	struct net_msg m = {.type = NET_MSG_RELEASE, .src = (uint16_t)w->id, .buf = b};
	if (b->owner == NET_CTRL) { /* control-made buffers are plain heap, shared-free */
		if (__atomic_sub_fetch(&b->ref, 1, __ATOMIC_ACQ_REL) == 0)
			buf_recycle(w, b);
		return;
	}
	if (w->nbacklog || net_msg_send(w, b->owner, &m) < 0)
		backlog_push(w, &m);
}

/* ---- connections --------------------------------------------------- */

struct net_conn *nw_conn_alloc(struct net_worker *w)
{
	struct net_conn *c;
	uint32_t slot;
	if (w->nfree) {
		slot = w->free_slots[--w->nfree];
		c = w->slots[slot];
		uint32_t gen = c->ref.gen + 1;
		memset(c, 0, sizeof(*c));
		c->ref.gen = gen;
	} else {
		if (w->nslots == w->slots_cap) {
			w->slots_cap = w->slots_cap ? w->slots_cap * 2 : 256;
			w->slots = xrealloc(w->slots, w->slots_cap * sizeof(*w->slots));
			w->free_slots = xrealloc(w->free_slots, w->slots_cap * sizeof(uint32_t));
		}
		slot = w->nslots++;
		c = xcalloc(1, sizeof(*c));
		w->slots[slot] = c;
		c->ref.gen = 1;
	}
	c->ref.worker = (uint16_t)w->id;
	c->ref.slot = slot;
	c->w = w;
	c->fd = -1;
	c->id = atomic_fetch_add_explicit(&nw_next_conn_id, 1, memory_order_relaxed);
	c->flags = NET_F_OPEN;
	c->last_rx = w->now;
	c->born = w->now;
	c->all_next = w->all;
	if (w->all)
		w->all->all_prev = c;
	w->all = c;
	return c;
}

struct net_conn *net_conn_get(struct net_worker *w, struct net_ref r)
{
	if (r.worker != w->id || r.slot >= w->nslots)
		return NULL;
	struct net_conn *c = w->slots[r.slot];
	if (c->ref.gen != r.gen || !(c->flags & NET_F_OPEN) || (c->flags & (NET_F_CLOSED | NET_F_CLOSING)))
		return NULL;
	return c;
}

static void oq_release_all(struct net_conn *c)
{
	while (c->oq_len) {
		net_buf_unref(c->w, c->oq[c->oq_head].b);
		c->oq_head = (c->oq_head + 1) & (c->oq_cap - 1);
		c->oq_len--;
	}
	c->oq_bytes = 0;
	free(c->oq);
	c->oq = NULL;
	c->oq_cap = 0;
}

/* Free the slot once no ring operation refers to it any more. */
void nw_conn_maybe_free(struct net_conn *c)
{
	struct net_worker *w = c->w;
	if (!(c->flags & NET_F_CLOSED) || c->inflight || (c->flags & NET_F_FREED))
		return;
	if (!(c->flags & NET_F_CLOSE_NOTIFIED)) {
		c->flags |= NET_F_CLOSE_NOTIFIED;
		if (c->ops && c->ops->on_close)
			c->ops->on_close(c, c->close_err);
	}
	oq_release_all(c);
	if (c->tls) {
		tls_conn_free(c->tls);
		c->tls = NULL;
	}
	if (c->plain) {
		net_buf_unref(w, c->plain);
		c->plain = NULL;
	}
	if (c->pend) {
		net_buf_unref(w, c->pend);
		c->pend = NULL;
	}
	net_buf_unref(w, c->held);
	net_buf_unref(w, c->held_plain);
	c->held = c->held_plain = NULL;
	nw_timer_unlink(c);
	if (c->all_prev)
		c->all_prev->all_next = c->all_next;
	else
		w->all = c->all_next;
	if (c->all_next)
		c->all_next->all_prev = c->all_prev;
	/* Still on the send list (closed in the turn it was marked, e.g. a
	 * connection refused at accept after its TLS was set up): the slot is
	 * reused only once nw_flush_sends has unlinked it, or a connection
	 * allocated in it this turn would be linked to itself. */
	bool dirty = c->flags & NET_F_DIRTY;
	c->flags = NET_F_CLOSED | NET_F_CLOSE_NOTIFIED | NET_F_FREED | (dirty ? NET_F_DIRTY : 0);
	if (!dirty)
		w->free_slots[w->nfree++] = c->ref.slot;
}

/* Hand queued slices [from, oq_len) that never left back to the owner,
 * which may route them elsewhere, and drop them from the queue. Plaintext
 * only: TLS output was gathered for this peer already. */
static void give_back_unsent(struct net_conn *c, uint32_t from)
{
	if (!c->ops || !c->ops->on_unsent || c->tls)
		return;
	for (uint32_t k = from; k < c->oq_len; k++) {
		struct net_slice *sl = &c->oq[(c->oq_head + k) & (c->oq_cap - 1)];
		c->oq_bytes -= sl->n;
		c->ops->on_unsent(c, sl->b, sl->p, sl->n); /* takes the queue's reference */
	}
	if (c->oq_len > from)
		c->oq_len = from;
}

/* Cancel the one request whose user_data is ud. The cancel's own completion
 * counts as an operation of c (NULL: a listener's, nothing to count). */
void nw_cancel_req(struct net_worker *w, uint64_t ud, struct net_conn *c)
{
	struct io_uring_sqe *sqe = nw_get_sqe(w);
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, UD(c, OP_CANCEL));
	if (c)
		c->inflight++;
}

void nw_conn_teardown(struct net_conn *c, int err)
{
	if (c->flags & NET_F_CLOSED)
		return;
	give_back_unsent(c, (c->flags & NET_F_SENDING) ? c->oq_inflight_n : 0);
	c->flags |= NET_F_CLOSED;
	c->flags &= ~NET_F_OPEN;
	c->close_err = err;
	if (c->flags & NET_F_NOBUFS) { /* off the waiting list before the slot is reused */
		if (c->nobufs_prev)
			c->nobufs_prev->nobufs_next = c->nobufs_next;
		else
			c->w->nobufs_wait = c->nobufs_next;
		if (c->nobufs_next)
			c->nobufs_next->nobufs_prev = c->nobufs_prev;
		c->nobufs_next = c->nobufs_prev = NULL;
		c->flags &= ~NET_F_NOBUFS;
	}
	if (c->fd >= 0) {
		/* Cancel each request still armed on the fd, by its user_data,
		 * then close it. A plain close(2) is fine here: closing is not
		 * on the stanza path. */
		if (c->flags & (NET_F_RECV_ARMED | NET_F_SENDING | NET_F_CONNECTING)) {
			struct net_worker *w = c->w;
			if ((c->flags & (NET_F_RECV_ARMED | NET_F_RECV_CANCEL)) == NET_F_RECV_ARMED)
				nw_cancel_req(w, UD(c, OP_RECV), c);
			if (c->flags & NET_F_SENDING)
				nw_cancel_req(w, UD(c, OP_SEND), c);
			if (c->flags & NET_F_CONNECTING)
				nw_cancel_req(w, UD(c, OP_CONNECT), c);
			io_uring_submit(&w->ring);
		}
		shutdown(c->fd, SHUT_RDWR);
		close(c->fd);
		c->fd = -1;
	}
	nw_conn_maybe_free(c);
}

void net_close(struct net_conn *c, bool flush)
{
	if (c->flags & (NET_F_CLOSED))
		return;
	/* A TLS link says goodbye with close_notify after its queued data
	 * (RFC 8446 §6.1); not after a failed handshake (nw_tls_fail sent its
	 * alert) nor while one is in progress. */
	if (flush && c->tls && !(c->flags & (NET_F_TLS_HS | NET_F_CONNECTING | NET_F_CLOSING))) {
		c->flags |= NET_F_CLOSING | NET_F_TLS_BYE;
		net_conn_set_deadline(c, c->w->now + 2000);
		nw_mark_dirty(c);
		return;
	}
	if (flush && c->oq_len && !(c->flags & NET_F_CONNECTING)) {
		c->flags |= NET_F_CLOSING;
		net_conn_set_deadline(c, c->w->now + 2000); /* do not wait forever for a dead peer */
		return;
	}
	nw_conn_teardown(c, 0);
}

void net_conn_stop_reading(struct net_conn *c)
{
	c->flags |= NET_F_RECV_STOPPED;
}

void net_conn_pause_recv(struct net_conn *c)
{
	if (c->flags & (NET_F_CLOSED | NET_F_CLOSING | NET_F_RECV_PAUSED))
		return;
	c->flags |= NET_F_RECV_PAUSED;
	if ((c->flags & (NET_F_RECV_ARMED | NET_F_RECV_CANCEL)) == NET_F_RECV_ARMED) {
		c->flags |= NET_F_RECV_CANCEL;
		nw_cancel_req(c->w, UD(c, OP_RECV), c);
	}
}

void net_conn_resume_recv(struct net_conn *c)
{
	struct net_worker *w = c->w;
	if (!(c->flags & NET_F_RECV_PAUSED) || (c->flags & (NET_F_CLOSED | NET_F_CLOSING)))
		return;
	c->flags &= ~NET_F_RECV_PAUSED;
	if (c->flags & NET_F_RESUME_Q)
		return;
	if (w->nresumed == w->resumed_cap) {
		w->resumed_cap = w->resumed_cap ? w->resumed_cap * 2 : 64;
		w->resumed = xrealloc(w->resumed, w->resumed_cap * sizeof(*w->resumed));
	}
	w->resumed[w->nresumed++] = c->ref;
	c->flags |= NET_F_RESUME_Q;
}

struct io_uring_sqe *nw_get_sqe(struct net_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	if (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

void nw_arm_recv(struct net_conn *c)
{
	if (c->flags & NET_F_RECV_PAUSED)
		return;
	struct io_uring_sqe *sqe = nw_get_sqe(c->w);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, UD(c, OP_RECV));
	c->flags |= NET_F_RECV_ARMED;
	c->inflight++;
}

void nw_mark_dirty(struct net_conn *c)
{
	if (c->flags & NET_F_DIRTY)
		return;
	c->flags |= NET_F_DIRTY;
	c->dirty_next = c->w->dirty;
	c->w->dirty = c;
}

/* Slices a queue may hold before it copies what it gets from receive
 * buffers that are running short: a queue that does not drain (a peer that
 * does not read) would otherwise pin the receive buffers, one per slice,
 * until none is left and every connection of that worker stops receiving. */
#define PIN_MAX_SLICES 32

static bool bufs_short(uint16_t owner)
{
	if (owner >= nw_nworkers)
		return false;
	struct net_worker *o = &nw_workers[owner];
	return __atomic_load_n(&o->bufs_out, __ATOMIC_RELAXED) > o->nbufs / 2;
}

bool net_buf_scarce(const struct net_buf *b)
{
	return b && b->bid >= 0 && bufs_short(b->owner);
}

int net_send_slice(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	net_buf_ref(b); /* only ever on the owner's thread: see net.h */
	int rc = net_send_slice_take(c, b, p, n);
	if (rc < 0)
		net_buf_unref(c->w, b);
	return rc;
}

int net_send_slice_take(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	if (!(c->flags & NET_F_OPEN) || (c->flags & NET_F_CLOSING))
		return -EPIPE;
	if (n == 0) {
		net_buf_unref(c->w, b);
		return 0;
	}
	if (c->oq_bytes + n > nw_queue_limit) {
		c->flags |= NET_F_OQ_REFUSED;
		return -ENOBUFS;
	}
	if (b && b->bid >= 0 && c->oq_len >= PIN_MAX_SLICES && bufs_short(b->owner)) {
		int rc = net_send_copy(c, p, n);
		if (rc == 0)
			net_buf_unref(c->w, b);
		return rc;
	}
	if (c->oq_len == c->oq_cap) {
		uint32_t ncap = c->oq_cap ? c->oq_cap * 2 : 4; /* idle links stay small */
		struct net_slice *q = malloc(ncap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		for (uint32_t i = 0; i < c->oq_len; i++)
			q[i] = c->oq[(c->oq_head + i) & (c->oq_cap - 1)];
		bool first = !c->oq;
		free(c->oq);
		c->oq = q;
		c->oq_head = 0;
		c->oq_cap = ncap;
		if (first)
			nw_timer_rearm(c); /* for its release once idle */
	}
	c->oq[(c->oq_head + c->oq_len) & (c->oq_cap - 1)] = (struct net_slice){b, p, (uint32_t)n};
	c->oq_len++;
	c->oq_bytes += n;
	if (!(c->flags & NET_F_CONNECTING))
		nw_mark_dirty(c);
	return 0;
}

int net_send_copy(struct net_conn *c, const char *p, size_t n)
{
	/* Append to the last slice when it is our own small copy with room:
	 * generated bytes are coalesced instead of one buffer each. */
	if (c->oq_len > (c->flags & NET_F_SENDING ? c->oq_inflight_n : 0)) {
		struct net_slice *last = &c->oq[(c->oq_head + c->oq_len - 1) & (c->oq_cap - 1)];
		struct net_buf *b = last->b;
		if (b && b->bid < 0 && b->ref == 1 && b->owner == c->w->id && last->p + last->n == b->data + b->len &&
		    b->len + n <= b->cap) {
			if (c->oq_bytes + n > nw_queue_limit) {
				c->flags |= NET_F_OQ_REFUSED;
				return -ENOBUFS;
			}
			memcpy(b->data + b->len, p, n);
			b->len += (uint32_t)n;
			last->n += (uint32_t)n;
			c->oq_bytes += n;
			return 0;
		}
	}
	struct net_buf *b = net_buf_new(c->w, n < 2048 ? 2048 : n);
	if (!b)
		return -ENOMEM;
	memcpy(b->data, p, n);
	b->len = (uint32_t)n;
	int r = net_send_slice_take(c, b, b->data, n);
	if (r < 0)
		net_buf_unref(c->w, b);
	return r;
}

/* net_close asked for close_notify and it is not written yet. */
bool nw_bye_due(const struct net_conn *c)
{
	return (c->flags & (NET_F_TLS_BYE | NET_F_TLS_BYE_SENT)) == NET_F_TLS_BYE;
}

/* Returns false when this turn has no room left for the send. */
static bool prep_send(struct net_worker *w, struct net_conn *c)
{
	if (c->tls && !c->raw_slices) {
		nw_tls_prep_send(w, c);
		return true;
	}
	uint32_t n = c->oq_len < IOV_PER_SEND ? c->oq_len : IOV_PER_SEND;
	if (c->tls && n > c->raw_slices)
		n = c->raw_slices;
	if (w->iov_used + n > w->iov_cap || w->mh_used == w->mh_cap)
		return false; /* next turn */
	struct iovec *iov = &w->iov[w->iov_used];
	for (uint32_t i = 0; i < n; i++) {
		struct net_slice *s = &c->oq[(c->oq_head + i) & (c->oq_cap - 1)];
		iov[i].iov_base = (void *)s->p;
		iov[i].iov_len = s->n;
		if (i >= c->oq_lat_n) /* first time out, not a retry of a short send */
			nw_lat_add(w, s->b);
	}
	if (n > c->oq_lat_n)
		c->oq_lat_n = n;
	iov[0].iov_base = (char *)iov[0].iov_base + c->oq_sent_in_head;
	iov[0].iov_len -= c->oq_sent_in_head;
	w->iov_used += n;
	struct msghdr *mh = &w->mh[w->mh_used++];
	memset(mh, 0, sizeof(*mh));
	mh->msg_iov = iov;
	mh->msg_iovlen = n;
	struct io_uring_sqe *sqe = nw_get_sqe(w);
	io_uring_prep_sendmsg(sqe, c->fd, mh, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, UD(c, OP_SEND));
	c->flags |= NET_F_SENDING;
	c->oq_inflight_n = n;
	c->inflight++;
	return true;
}

void nw_flush_sends(struct net_worker *w)
{
	struct net_conn *c = w->dirty, *next;
	struct net_conn *retry = NULL;
	w->dirty = NULL;
	w->iov_used = 0;
	w->mh_used = 0;
	for (; c; c = next) {
		next = c->dirty_next;
		c->flags &= ~NET_F_DIRTY;
		if (c->flags & NET_F_FREED) { /* freed while listed: its slot is free now */
			w->free_slots[w->nfree++] = c->ref.slot;
			continue;
		}
		if (!(c->flags & NET_F_OPEN) || c->fd < 0 || (c->flags & (NET_F_SENDING | NET_F_CONNECTING)))
			continue;
		if (!c->oq_len && !(c->tls && tls_pending_out(c->tls, &(const void *){NULL})) && !nw_bye_due(c))
			continue;
		if (!prep_send(w, c)) { /* no room this turn */
			c->flags |= NET_F_DIRTY;
			c->dirty_next = retry;
			retry = c;
		}
	}
	w->dirty = retry;
}

/* After a send completion: on_drain once the queue is at or below half of
 * its limit, for a sender that was refused room (whatever took the bytes
 * off: this completion, or, on TLS, the encryption in nw_tls_prep_send) or
 * when this completion crossed the half mark. */
static void drain_due(struct net_conn *c, uint64_t was)
{
	uint64_t half = nw_queue_limit / 2;
	if ((c->flags & NET_F_CLOSED) || c->oq_bytes > half)
		return;
	if (!(c->flags & NET_F_OQ_REFUSED) && was <= half)
		return;
	c->flags &= ~NET_F_OQ_REFUSED;
	if (c->ops && c->ops->on_drain)
		c->ops->on_drain(c);
}

void nw_on_send_done(struct net_worker *w, struct net_conn *c, int res)
{
	c->flags &= ~NET_F_SENDING;
	if (c->flags & NET_F_CLOSED) {
		if (res < 0) /* the send in flight at close did not happen */
			give_back_unsent(c, 0);
		return;
	}
	if (res < 0) {
		if (res == -EAGAIN || res == -EINTR) {
			nw_mark_dirty(c);
			return;
		}
		nw_conn_teardown(c, res);
		return;
	}
	if (c->tls && c->tls_inflight) {
		c->tls_inflight = 0;
		tls_consume_out(c->tls, (size_t)res);
		const void *p;
		if (c->oq_len || tls_pending_out(c->tls, &p) || nw_bye_due(c))
			nw_mark_dirty(c);
		else if (c->flags & NET_F_CLOSING)
			nw_conn_teardown(c, 0);
		drain_due(c, c->oq_bytes);
		return;
	}
	uint64_t was = c->oq_bytes;
	size_t left = (size_t)res;
	c->oq_bytes -= left;
	while (left && c->oq_len) {
		struct net_slice *s = &c->oq[c->oq_head];
		uint32_t rem = s->n - c->oq_sent_in_head;
		if (left < rem) {
			c->oq_sent_in_head += (uint32_t)left;
			break;
		}
		left -= rem;
		c->oq_sent_in_head = 0;
		if (c->raw_slices)
			c->raw_slices--;
		if (c->oq_lat_n)
			c->oq_lat_n--;
		net_buf_unref(w, s->b);
		c->oq_head = (c->oq_head + 1) & (c->oq_cap - 1);
		c->oq_len--;
	}
	if (c->oq_len || (c->tls && !c->raw_slices))
		nw_mark_dirty(c);
	else if (c->flags & NET_F_CLOSING)
		nw_conn_teardown(c, 0);
	drain_due(c, was);
}
