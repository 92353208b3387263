/*
 * net/worker.c — the io_uring worker loop.
 *
 * One thread per worker, pinned to a core, owning one ring created with
 * SINGLE_ISSUER | DEFER_TASKRUN (falling back when the kernel refuses). Each
 * worker has its own SO_REUSEPORT listener per configured address with a
 * multishot accept, a provided-buffer ring for multishot receives, and a slab
 * of connection slots whose generation numbers make cross-worker references
 * safe after a connection is gone.
 *
 * One loop turn:
 *   report an RCU quiescent state; prepare one sendmsg for every connection
 *   with queued output; wake every worker we sent messages to (MSG_RING);
 *   go RCU-offline and wait for completions (or the next tick); handle
 *   completions; drain the message rings; run timers.
 *
 * user_data of an SQE is a pointer with the operation in its low 3 bits.
 * A connection has at most one receive, one send and one connect armed, so
 * that value names one request: closing a connection cancels exactly its
 * own requests by user_data (the kernel looks them up in a hash), which costs
 * the same at a hundred connections or a hundred thousand, where cancelling
 * by file descriptor walks every pending request of the ring.
 *
 * Out of file descriptors, a listener stops accepting for ACCEPT_PAUSE_MS
 * (the connections wait in the kernel's backlog) instead of retrying at once
 * in a loop that would spin a core; the tick re-arms it.
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

#include "net/net.h"
#include "net/alloc.h"
#include "net/log.h"
#include "net/tls.h"
#include "net/proxy.h"

enum op {
	OP_ACCEPT = 1, /* ptr: struct listener */
	OP_RECV,       /* ptr: conn */
	OP_SEND,
	OP_CONNECT,
	OP_CANCEL,
	OP_WAKE,    /* eventfd read; ptr: worker */
	OP_MSGRING, /* completion of our own MSG_RING sqe */
};
#define UD(ptr, op) ((uint64_t)(uintptr_t)(ptr) | (op))
#define UD_PTR(ud)  ((void *)(uintptr_t)((ud) & ~7ULL))
#define UD_OP(ud)   ((int)((ud)&7))

#define BGID         1
#define TICK_MS      100
#define IOV_PER_SEND 256
/* A listener out of file descriptors waits this long before accepting again. */
#define ACCEPT_PAUSE_MS 250

struct spsc {
	_Alignas(64) _Atomic uint32_t head; /* consumer */
	_Alignas(64) _Atomic uint32_t tail; /* producer */
	uint32_t mask;
	struct net_msg *m;
};

struct listener {
	int fd;
	int kind;
	struct net_worker *w;
	bool armed;         /* the multishot accept is in the ring */
	uint64_t resume_at; /* ms; paused (out of descriptors) until then, 0 = not */
};

struct net_worker {
	int id;
	int cpu;
	pthread_t th;
	struct io_uring ring;
	int ring_fd;
	int wake_fd; /* eventfd the control thread writes */
	uint64_t wake_buf;
	bool ring_ready;
	void *user;
	/* provided receive buffers */
	struct io_uring_buf_ring *br;
	char *bufmem;
	struct net_buf *bufs;
	uint32_t nbufs, bufsz;
	uint32_t bufs_out; /* buffers not in the ring */
	/* connections */
	struct net_conn **slots;
	uint32_t nslots, slots_cap;
	uint32_t *free_slots;
	uint32_t nfree;
	struct net_conn *all;
	struct net_conn *dirty;
	struct net_conn *nobufs_wait;
	/* listeners */
	struct listener lis[NET_MAX_LISTENERS];
	int nlis;
	uint64_t accept_refused; /* out-of-descriptor failures since the last log line */
	uint64_t accept_log_at;  /* ms: the next such line may be logged then */
	/* connections whose reads were resumed, handled once per loop turn */
	struct net_ref *resumed;
	uint32_t nresumed, resumed_cap;
	/* messages: in[src] is the ring from src to us */
	struct spsc *in[NET_MAX_WORKERS + 1];
	bool woke[NET_MAX_WORKERS + 1]; /* we pushed to dst this turn */
	/* releases that did not fit their ring; retried each turn */
	struct net_msg *backlog;
	uint32_t nbacklog, backlog_cap;
	struct iovec *iov;
	uint32_t iov_used, iov_cap;
	struct msghdr *mh;
	uint32_t mh_used, mh_cap;
	uint64_t now;
	uint64_t next_tick;
	bool stopped;
};

static struct net_config cfg;
static struct net_worker *workers;
static int nworkers;
static struct spsc *ctrl_in[NET_MAX_WORKERS];  /* worker -> control */
static struct spsc *ctrl_out[NET_MAX_WORKERS]; /* control -> worker (== workers[i].in[NET_CTRL]) */
static int ctrl_efd = -1;
static _Atomic bool stopping;
static _Atomic uint64_t next_conn_id = 1;
static uint64_t queue_limit = 4u << 20;
static struct {
	int kind;
	struct sockaddr_storage ss;
	socklen_t len;
} listens[NET_MAX_LISTENERS];
static int nlistens;
static __thread struct net_worker *self_worker;
static _Atomic uint64_t starttls_dropped; /* bytes discarded after <starttls/> or <proceed/> */
static _Atomic uint64_t proxy_refused;    /* PROXY headers from untrusted sources */

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t net_now_ms(void)
{
	return self_worker ? self_worker->now : mono_ms();
}

bool net_stopping(void)
{
	return atomic_load_explicit(&stopping, memory_order_relaxed);
}
int net_nworkers(void)
{
	return nworkers;
}
struct net_worker *net_worker_at(int i)
{
	return &workers[i];
}
int net_worker_id(const struct net_worker *w)
{
	return w->id;
}
void *net_worker_user(struct net_worker *w)
{
	return w->user;
}
void net_worker_set_user(struct net_worker *w, void *u)
{
	w->user = u;
}
void net_set_queue_limit(uint64_t bytes)
{
	queue_limit = bytes;
}

/* ---- SPSC rings ---------------------------------------------------- */

static struct spsc *spsc_new(uint32_t n)
{
	struct spsc *r = aligned_alloc(64, sizeof(*r));
	memset(r, 0, sizeof(*r));
	r->mask = n - 1;
	r->m = xcalloc(n, sizeof(struct net_msg));
	return r;
}

static int spsc_push(struct spsc *r, const struct net_msg *m)
{
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t h = atomic_load_explicit(&r->head, memory_order_acquire);
	if (t - h > r->mask)
		return -ENOBUFS;
	r->m[t & r->mask] = *m;
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return 0;
}

/* Drain up to max messages into fn; returns how many. */
static uint32_t spsc_drain(struct spsc *r, struct net_worker *w, uint32_t max,
			   void (*fn)(struct net_worker *, struct net_msg *))
{
	uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	uint32_t n = 0;
	while (h != t && n < max) {
		struct net_msg m = r->m[h & r->mask];
		h++;
		n++;
		atomic_store_explicit(&r->head, h, memory_order_release);
		fn(w, &m);
	}
	return n;
}

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
	return b;
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

static struct net_conn *conn_alloc(struct net_worker *w)
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
	c->id = atomic_fetch_add_explicit(&next_conn_id, 1, memory_order_relaxed);
	c->flags = NET_F_OPEN;
	c->last_rx = w->now;
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
static void conn_maybe_free(struct net_conn *c)
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
	if (c->all_prev)
		c->all_prev->all_next = c->all_next;
	else
		w->all = c->all_next;
	if (c->all_next)
		c->all_next->all_prev = c->all_prev;
	c->flags = NET_F_CLOSED | NET_F_CLOSE_NOTIFIED | NET_F_FREED;
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

static struct io_uring_sqe *get_sqe(struct net_worker *w);

/* Cancel the one request whose user_data is ud. The cancel's own completion
 * counts as an operation of c (NULL: a listener's, nothing to count). */
static void cancel_req(struct net_worker *w, uint64_t ud, struct net_conn *c)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, UD(c, OP_CANCEL));
	if (c)
		c->inflight++;
}

static void conn_teardown(struct net_conn *c, int err)
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
				cancel_req(w, UD(c, OP_RECV), c);
			if (c->flags & NET_F_SENDING)
				cancel_req(w, UD(c, OP_SEND), c);
			if (c->flags & NET_F_CONNECTING)
				cancel_req(w, UD(c, OP_CONNECT), c);
			io_uring_submit(&w->ring);
		}
		shutdown(c->fd, SHUT_RDWR);
		close(c->fd);
		c->fd = -1;
	}
	conn_maybe_free(c);
}

static void mark_dirty(struct net_conn *c);

void net_close(struct net_conn *c, bool flush)
{
	if (c->flags & (NET_F_CLOSED))
		return;
	/* A TLS link says goodbye with close_notify after its queued data
	 * (RFC 8446 §6.1); not after a failed handshake (tls_fail sent its
	 * alert) nor while one is in progress. */
	if (flush && c->tls && !(c->flags & (NET_F_TLS_HS | NET_F_CONNECTING | NET_F_CLOSING))) {
		c->flags |= NET_F_CLOSING | NET_F_TLS_BYE;
		c->deadline = c->w->now + 2000;
		mark_dirty(c);
		return;
	}
	if (flush && c->oq_len && !(c->flags & NET_F_CONNECTING)) {
		c->flags |= NET_F_CLOSING;
		c->deadline = c->w->now + 2000; /* do not wait forever for a dead peer */
		return;
	}
	conn_teardown(c, 0);
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
		cancel_req(c->w, UD(c, OP_RECV), c);
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

/* Keep n bytes at the end of *hp while reads are paused. A heap copy: what
 * arrives after the pause is only what the kernel had already received when
 * the receive was cancelled, at most the provided-buffer pool. Data path:
 * -ENOMEM closes this one connection. */
static int hold(struct net_worker *w, struct net_buf **hp, const char *p, size_t n)
{
	struct net_buf *h = *hp;
	if (!n)
		return 0;
	if (!h) {
		h = net_buf_new(w, n < 4096 ? 4096 : n);
		if (!h)
			return -ENOMEM;
		*hp = h;
	} else if (h->len + n > h->cap) {
		size_t ncap = (size_t)h->cap * 2;
		while (ncap < h->len + n)
			ncap *= 2;
		if (ncap > UINT32_MAX)
			return -ENOMEM;
		char *d = realloc(h->data, ncap);
		if (!d)
			return -ENOMEM;
		h->data = d;
		h->cap = (uint32_t)ncap;
	}
	memcpy(h->data + h->len, p, n);
	h->len += (uint32_t)n;
	return 0;
}

static struct io_uring_sqe *get_sqe(struct net_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	if (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

static void arm_recv(struct net_conn *c)
{
	if (c->flags & NET_F_RECV_PAUSED)
		return;
	struct io_uring_sqe *sqe = get_sqe(c->w);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, UD(c, OP_RECV));
	c->flags |= NET_F_RECV_ARMED;
	c->inflight++;
}

static void mark_dirty(struct net_conn *c)
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
	if (owner >= nworkers)
		return false;
	struct net_worker *o = &workers[owner];
	return __atomic_load_n(&o->bufs_out, __ATOMIC_RELAXED) > o->nbufs / 2;
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
	if (c->oq_bytes + n > queue_limit)
		return -ENOBUFS;
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
		free(c->oq);
		c->oq = q;
		c->oq_head = 0;
		c->oq_cap = ncap;
	}
	c->oq[(c->oq_head + c->oq_len) & (c->oq_cap - 1)] = (struct net_slice){b, p, (uint32_t)n};
	c->oq_len++;
	c->oq_bytes += n;
	if (!(c->flags & NET_F_CONNECTING))
		mark_dirty(c);
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
			if (c->oq_bytes + n > queue_limit)
				return -ENOBUFS;
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

static void tls_prep_send(struct net_worker *w, struct net_conn *c);

/* net_close asked for close_notify and it is not written yet. */
static bool bye_due(const struct net_conn *c)
{
	return (c->flags & (NET_F_TLS_BYE | NET_F_TLS_BYE_SENT)) == NET_F_TLS_BYE;
}

/* Returns false when this turn has no room left for the send. */
static bool prep_send(struct net_worker *w, struct net_conn *c)
{
	if (c->tls && !c->raw_slices) {
		tls_prep_send(w, c);
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
	}
	iov[0].iov_base = (char *)iov[0].iov_base + c->oq_sent_in_head;
	iov[0].iov_len -= c->oq_sent_in_head;
	w->iov_used += n;
	struct msghdr *mh = &w->mh[w->mh_used++];
	memset(mh, 0, sizeof(*mh));
	mh->msg_iov = iov;
	mh->msg_iovlen = n;
	struct io_uring_sqe *sqe = get_sqe(w);
	io_uring_prep_sendmsg(sqe, c->fd, mh, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, UD(c, OP_SEND));
	c->flags |= NET_F_SENDING;
	c->oq_inflight_n = n;
	c->inflight++;
	return true;
}

static void flush_sends(struct net_worker *w)
{
	struct net_conn *c = w->dirty, *next;
	struct net_conn *retry = NULL;
	w->dirty = NULL;
	w->iov_used = 0;
	w->mh_used = 0;
	for (; c; c = next) {
		next = c->dirty_next;
		c->flags &= ~NET_F_DIRTY;
		if (!(c->flags & NET_F_OPEN) || c->fd < 0 || (c->flags & (NET_F_SENDING | NET_F_CONNECTING)))
			continue;
		if (!c->oq_len && !(c->tls && tls_pending_out(c->tls, &(const void *){NULL})) && !bye_due(c))
			continue;
		if (!prep_send(w, c)) { /* no room this turn */
			c->flags |= NET_F_DIRTY;
			c->dirty_next = retry;
			retry = c;
		}
	}
	w->dirty = retry;
}

static void on_send_done(struct net_worker *w, struct net_conn *c, int res)
{
	c->flags &= ~NET_F_SENDING;
	if (c->flags & NET_F_CLOSED) {
		if (res < 0) /* the send in flight at close did not happen */
			give_back_unsent(c, 0);
		return;
	}
	if (res < 0) {
		if (res == -EAGAIN || res == -EINTR) {
			mark_dirty(c);
			return;
		}
		conn_teardown(c, res);
		return;
	}
	if (c->tls && c->tls_inflight) {
		c->tls_inflight = 0;
		tls_consume_out(c->tls, (size_t)res);
		const void *p;
		if (c->oq_len || tls_pending_out(c->tls, &p) || bye_due(c))
			mark_dirty(c);
		else if (c->flags & NET_F_CLOSING)
			conn_teardown(c, 0);
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
		net_buf_unref(w, s->b);
		c->oq_head = (c->oq_head + 1) & (c->oq_cap - 1);
		c->oq_len--;
	}
	if (c->oq_len || (c->tls && !c->raw_slices))
		mark_dirty(c);
	else if (c->flags & NET_F_CLOSING)
		conn_teardown(c, 0);
	if (was > queue_limit / 2 && c->oq_bytes <= queue_limit / 2 && c->ops && c->ops->on_drain &&
	    !(c->flags & NET_F_CLOSED))
		c->ops->on_drain(c);
}

static void conn_teardown(struct net_conn *c, int err);

/* Bytes on_data was not offered because reads were paused: plaintext on a
 * TLS link (decrypted already), else bytes as received. */
static void hold_rest(struct net_worker *w, struct net_conn *c, const char *p, size_t n)
{
	if (hold(w, c->tls ? &c->held_plain : &c->held, p, n) < 0)
		conn_teardown(c, -ENOMEM);
}

/* Paused from inside on_data: a pending unit and the rest of the input are
 * held, in that order. Left as c->pend they would wait for bytes from the
 * socket, and none may come: the peer may have sent everything already. */
static void hold_paused(struct net_worker *w, struct net_conn *c, const char *p, size_t n)
{
	struct net_buf *pb = c->pend;
	if (pb) {
		c->pend = NULL;
		hold_rest(w, c, pb->data, pb->len);
		net_buf_unref(w, pb);
		if (c->flags & NET_F_CLOSED)
			return;
	}
	if (n)
		hold_rest(w, c, p, n);
}

/* The owner put TLS under a plaintext connection from inside on_data (it
 * read <starttls/> or <proceed/>): every byte that came in the clear after
 * that element, and any unit pending, is dropped. RFC 6120 §5.4.3.3: nothing
 * received before the handshake counts; the stream restarts from nothing,
 * and bytes injected by a man in the middle behind the element (the STARTTLS
 * injection of CVE-2011-0411) are never parsed as if TLS had carried them.
 * Returns true when that happened. */
static bool tls_began(struct net_worker *w, struct net_conn *c, bool was_clear, size_t dropped)
{
	if (!was_clear || !c->tls)
		return false;
	if (c->pend) {
		net_buf_unref(w, c->pend);
		c->pend = NULL;
	}
	if (dropped) {
		atomic_fetch_add_explicit(&starttls_dropped, dropped, memory_order_relaxed);
		log_info(c->id, "%zu byte%s received in the clear after STARTTLS: discarded", dropped,
			 dropped == 1 ? "" : "s");
	}
	return true;
}

uint64_t net_starttls_dropped(void)
{
	return atomic_load_explicit(&starttls_dropped, memory_order_relaxed);
}

/* Hand bytes to the owner. When an incomplete unit is pending, new bytes are
 * appended to it in growing chunks only until the owner completes it; the
 * rest of the receive buffer is then handed over in place. */
static void deliver(struct net_worker *w, struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	size_t off = 0;
	const bool clear = c->tls == NULL;
	while (c->pend && off < n && !(c->flags & (NET_F_CLOSED | NET_F_CLOSING | NET_F_RECV_PAUSED))) {
		struct net_buf *pb = c->pend;
		size_t old = pb->len;
		size_t chunk = old < 1024 ? 1024 : old;
		if (chunk > n - off)
			chunk = n - off;
		if (old + chunk > cfg.max_pending) {
			chunk = cfg.max_pending > old ? cfg.max_pending - old : 0;
			if (!chunk) { /* the owner's limits should have caught this */
				conn_teardown(c, -EMSGSIZE);
				return;
			}
		}
		if (old + chunk > pb->cap) {
			size_t ncap = pb->cap * 2;
			while (ncap < old + chunk)
				ncap *= 2;
			char *d = realloc(pb->data, ncap);
			if (!d) {
				conn_teardown(c, -ENOMEM);
				return;
			}
			pb->data = d;
			pb->cap = (uint32_t)ncap;
		}
		memcpy(pb->data + old, p + off, chunk);
		pb->len = (uint32_t)(old + chunk);
		size_t used = c->ops->on_data(c, pb, pb->data, pb->len);
		if (c->flags & NET_F_CLOSED)
			return;
		if (tls_began(w, c, clear, (pb->len > used ? pb->len - used : 0) + (n - off - chunk)))
			return; /* pb was c->pend: released */
		if (used >= old) {
			/* the pending unit is complete; continue in place */
			off += used - old;
			c->pend = NULL;
			net_buf_unref(w, pb);
			break;
		}
		off += chunk;
		size_t rest = pb->len - used;
		if (pb->ref > 1) { /* the owner kept slices of it: start a new one */
			struct net_buf *nb = net_buf_new(w, rest * 2 > 4096 ? rest * 2 : 4096);
			memcpy(nb->data, pb->data + used, rest);
			nb->len = (uint32_t)rest;
			net_buf_unref(w, pb);
			c->pend = nb;
		} else if (used) {
			memmove(pb->data, pb->data + used, rest);
			pb->len = (uint32_t)rest;
		}
	}
	if ((c->flags & NET_F_RECV_PAUSED) && !(c->flags & (NET_F_CLOSED | NET_F_CLOSING))) {
		hold_paused(w, c, p + off, n - off); /* offered again first on resume */
		return;
	}
	if (c->pend || off >= n || (c->flags & (NET_F_CLOSED | NET_F_CLOSING)))
		return;
	size_t used = c->ops->on_data(c, b, p + off, n - off);
	if (c->flags & NET_F_CLOSED)
		return;
	if (tls_began(w, c, clear, used < n - off ? n - off - used : 0))
		return;
	if (used < n - off && (c->flags & NET_F_RECV_PAUSED) && !(c->flags & NET_F_CLOSING)) {
		hold_rest(w, c, p + off + used, n - off - used);
		return;
	}
	if (used < n - off && !(c->flags & NET_F_CLOSING)) {
		size_t rest = n - off - used;
		struct net_buf *nb = net_buf_new(w, rest * 2 > 4096 ? rest * 2 : 4096);
		if (!nb) {
			conn_teardown(c, -ENOMEM);
			return;
		}
		memcpy(nb->data, p + off + used, rest);
		nb->len = (uint32_t)rest;
		c->pend = nb;
	}
}

/* ---- TLS ----------------------------------------------------------- */

void net_start_tls(struct net_conn *c, struct tls_conn *t, bool client)
{
	c->tls = t;
	c->raw_slices = c->oq_len;
	c->flags |= NET_F_TLS_HS;
	if (client)
		tls_handshake(t); /* writes the ClientHello */
	mark_dirty(c);
}

static void tls_fail(struct net_worker *w, struct net_conn *c, int err)
{
	if (c->ops->on_tls && (c->flags & NET_F_TLS_HS))
		c->ops->on_tls(c, err);
	c->flags &= ~NET_F_TLS_HS;
	if (c->flags & NET_F_CLOSED)
		return;
	/* let an alert go out, then close */
	c->flags |= NET_F_RECV_STOPPED;
	const void *p;
	if (tls_pending_out(c->tls, &p)) {
		c->flags |= NET_F_CLOSING;
		c->deadline = w->now + 1000;
		mark_dirty(c);
	} else {
		conn_teardown(c, err);
	}
}

/* Ciphertext arrived: feed it, drive the handshake, hand plaintext on. */
static void tls_in(struct net_worker *w, struct net_conn *c, const char *p, size_t n)
{
	size_t off = 0;
	while (off < n || (c->flags & NET_F_TLS_HS) == 0) {
		if (off < n) {
			size_t k = n - off;
			int rc = tls_feed(c->tls, p + off, k);
			if (rc == TLS_ERR_AGAIN)
				k = 0; /* read what is buffered first */
			else if (rc < 0) {
				tls_fail(w, c, rc);
				return;
			}
			off += k;
		}
		if (c->flags & NET_F_TLS_HS) {
			int rc = tls_handshake(c->tls);
			mark_dirty(c);
			if (rc < 0) {
				tls_fail(w, c, rc);
				return;
			}
			if (rc == 0) {
				if (off >= n)
					return;
				continue;
			}
			c->flags &= ~NET_F_TLS_HS;
			if (c->ops->on_tls)
				c->ops->on_tls(c, 0);
			if (c->flags & (NET_F_CLOSED | NET_F_CLOSING))
				return;
		}
		/* plaintext */
		for (;;) {
			if (c->flags & NET_F_RECV_PAUSED) {
				/* the records fed stay in the engine; the rest waits here */
				if (hold(w, &c->held, p + off, n - off) < 0)
					conn_teardown(c, -ENOMEM);
				return;
			}
			struct net_buf *pb = c->plain;
			if (!pb || pb->ref > 1) {
				if (pb)
					net_buf_unref(w, pb);
				pb = c->plain = net_buf_new(w, 16384 + 512);
				if (!pb) {
					conn_teardown(c, -ENOMEM);
					return;
				}
			}
			ssize_t r = tls_read(c->tls, pb->data, pb->cap);
			if (r == 0)
				break;
			if (r < 0) {
				if (r == TLS_ERR_CLOSED)
					conn_teardown(c, 0);
				else
					tls_fail(w, c, (int)r);
				return;
			}
			pb->len = (uint32_t)r;
			deliver(w, c, pb, pb->data, (size_t)r);
			if (c->flags & (NET_F_CLOSED | NET_F_CLOSING))
				return;
		}
		const void *q;
		if (tls_pending_out(c->tls, &q))
			mark_dirty(c);
		if (c->plain && c->plain->ref == 1) { /* nothing kept it: an idle link holds none */
			net_buf_unref(w, c->plain);
			c->plain = NULL;
		}
		if (off >= n)
			return;
	}
}

/* Encrypt everything queued (many stanzas per record) and send the records. */
static void tls_prep_send(struct net_worker *w, struct net_conn *c)
{
	static __thread char stage[16384];
	if (!(c->flags & NET_F_TLS_HS)) {
		while (c->oq_len) {
			size_t k = 0;
			uint32_t taken = 0, head = c->oq_head, skip = c->oq_sent_in_head;
			while (taken < c->oq_len) {
				struct net_slice *s = &c->oq[(head + taken) & (c->oq_cap - 1)];
				size_t rem = s->n - skip;
				if (k + rem > sizeof(stage)) {
					if (k == 0) { /* one big slice: a part of it */
						memcpy(stage, s->p + skip, sizeof(stage));
						k = sizeof(stage);
						skip += (uint32_t)sizeof(stage);
					}
					break;
				}
				memcpy(stage + k, s->p + skip, rem);
				k += rem;
				skip = 0;
				taken++;
			}
			if (tls_write(c->tls, stage, k) < 0)
				break; /* output full: the records already made go first */
			c->oq_bytes -= k;
			for (uint32_t i = 0; i < taken; i++) {
				net_buf_unref(w, c->oq[c->oq_head].b);
				c->oq_head = (c->oq_head + 1) & (c->oq_cap - 1);
				c->oq_len--;
			}
			c->oq_sent_in_head = skip;
		}
		if (bye_due(c) && !c->oq_len) {
			c->flags |= NET_F_TLS_BYE_SENT;
			if (tls_close_notify(c->tls) < 0)
				log_debug(c->id, "TLS: close_notify: %s", tls_error(c->tls));
		}
	}
	const void *p;
	size_t n = tls_pending_out(c->tls, &p);
	if (!n) {
		if ((c->flags & NET_F_TLS_BYE_SENT) && !c->oq_len && (c->flags & NET_F_CLOSING))
			conn_teardown(c, 0); /* nothing left to say */
		return;
	}
	struct io_uring_sqe *sqe = get_sqe(w);
	io_uring_prep_send(sqe, c->fd, p, n, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, UD(c, OP_SEND));
	c->flags |= NET_F_SENDING;
	c->tls_inflight = (uint32_t)n;
	c->inflight++;
}

void net_conn_expect_proxy(struct net_conn *c)
{
	c->flags |= NET_F_PROXY;
}

/* The PROXY header in front of a balanced connection. A balancer writes it
 * whole, first, so it must be whole in the first segment: anything else
 * closes the connection. Returns where the stream's own bytes start. */
static const char *proxy_strip(struct net_conn *c, const char *p, size_t *n)
{
	struct sockaddr_in6 src;
	int k = proxy_parse(p, *n, &src);
	if (k <= 0) {
		log_info(c->id, "PROXY protocol header missing, split or invalid: closing");
		conn_teardown(c, -EPROTO);
		return NULL;
	}
	c->flags &= ~NET_F_PROXY;
	if (src.sin6_family != AF_UNSPEC) {
		char a[INET6_ADDRSTRLEN] = "";
		const void *ip = src.sin6_family == AF_INET ? (const void *)&((struct sockaddr_in *)&src)->sin_addr
							    : (const void *)&src.sin6_addr;
		inet_ntop(src.sin6_family, ip, a, sizeof(a));
		log_debug(c->id, "PROXY: connection for %s", a);
		c->peer = src;
	}
	*n -= (size_t)k;
	if (c->ops && c->ops->on_peer) {
		c->ops->on_peer(c);
		if (c->flags & (NET_F_CLOSED | NET_F_CLOSING))
			return NULL; /* refused: nothing after the header is read */
	}
	return p + k;
}

/* Received bytes, in order: the PROXY header, then TLS records or the
 * stream itself. */
static void rx_dispatch(struct net_worker *w, struct net_conn *c, struct net_buf *b, const char *data, size_t len)
{
	if (c->flags & NET_F_PROXY)
		data = proxy_strip(c, data, &len);
	if (data && len && c->tls)
		tls_in(w, c, data, len);
	else if (data && len)
		deliver(w, c, b, data, len);
}

/* After a resume: what was kept while paused goes first, in order. */
static void replay_held(struct net_worker *w, struct net_conn *c)
{
	struct net_buf *b = c->held_plain;
	if (b) {
		c->held_plain = NULL;
		deliver(w, c, b, b->data, b->len);
		net_buf_unref(w, b);
		if (c->flags & (NET_F_CLOSED | NET_F_CLOSING | NET_F_RECV_PAUSED))
			return;
	}
	b = c->held;
	if (b) {
		c->held = NULL;
		rx_dispatch(w, c, b, b->data, b->len);
		net_buf_unref(w, b);
	} else if (c->tls && !(c->flags & NET_F_TLS_HS)) {
		tls_in(w, c, NULL, 0); /* records the engine holds decrypted */
	}
}

/* Connections whose reads were resumed since the last turn. */
static void run_resumed(struct net_worker *w)
{
	uint32_t n = w->nresumed; /* resumes made while replaying wait for the next turn */
	for (uint32_t i = 0; i < n; i++) {
		struct net_conn *c = net_conn_get(w, w->resumed[i]);
		if (!c || !(c->flags & NET_F_RESUME_Q))
			continue;
		c->flags &= ~NET_F_RESUME_Q;
		if (c->flags & NET_F_RECV_PAUSED)
			continue; /* paused again: everything stays held */
		replay_held(w, c);
		if (!(c->flags & (NET_F_CLOSED | NET_F_CLOSING | NET_F_RECV_PAUSED | NET_F_RECV_ARMED | NET_F_NOBUFS |
				  NET_F_RECV_STOPPED | NET_F_CONNECTING)))
			arm_recv(c);
	}
	memmove(w->resumed, w->resumed + n, (w->nresumed - n) * sizeof(*w->resumed));
	w->nresumed -= n;
}

static void on_recv(struct net_worker *w, struct net_conn *c, struct io_uring_cqe *cqe)
{
	int res = cqe->res;
	bool more = cqe->flags & IORING_CQE_F_MORE;
	if (!more) {
		c->flags &= ~(NET_F_RECV_ARMED | NET_F_RECV_CANCEL);
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		struct net_buf *b = &w->bufs[bid];
		b->ref = 1;
		b->len = res > 0 ? (uint32_t)res : 0;
		__atomic_store_n(&w->bufs_out, w->bufs_out + 1, __ATOMIC_RELAXED);
		if (res > 0 && !(c->flags & (NET_F_CLOSED | NET_F_RECV_STOPPED))) {
			c->last_rx = w->now;
			/* paused, or resumed with kept bytes not handed over yet */
			if (c->held || c->held_plain || (c->flags & NET_F_RECV_PAUSED)) {
				if (hold(w, &c->held, b->data, (size_t)res) < 0)
					conn_teardown(c, -ENOMEM);
			} else {
				rx_dispatch(w, c, b, b->data, (size_t)res);
			}
		}
		net_buf_unref(w, b);
	}
	if (c->flags & NET_F_CLOSED)
		return;
	if (res == 0) {
		conn_teardown(c, 0);
		return;
	}
	if (res < 0) {
		if (res == -ENOBUFS) {
			/* out of receive buffers: retry as soon as some come back */
			if (!(c->flags & NET_F_NOBUFS)) {
				c->flags |= NET_F_NOBUFS;
				c->nobufs_prev = NULL;
				c->nobufs_next = w->nobufs_wait;
				if (w->nobufs_wait)
					w->nobufs_wait->nobufs_prev = c;
				w->nobufs_wait = c;
			}
			return;
		}
		if (res != -ECANCELED)
			conn_teardown(c, res);
		else if (!more && !(c->flags & (NET_F_RECV_STOPPED | NET_F_CLOSING)))
			arm_recv(c); /* cancelled by a pause since resumed: receive again */
		return;
	}
	if (!more && !(c->flags & (NET_F_RECV_STOPPED | NET_F_CLOSING)))
		arm_recv(c);
}

static void set_sock_opts(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct net_conn *net_connect(struct net_worker *w, const struct sockaddr *sa, socklen_t len,
			     const struct net_conn_ops *ops, void *user)
{
	if (len > sizeof(((struct net_conn *)0)->peer))
		return NULL; /* not IPv4 or IPv6 */
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	set_sock_opts(fd);
	struct net_conn *c = conn_alloc(w);
	c->fd = fd;
	c->ops = ops;
	c->user = user;
	memcpy(&c->peer, sa, len);
	c->flags |= NET_F_CONNECTING;
	struct io_uring_sqe *sqe = get_sqe(w);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&c->peer, len);
	io_uring_sqe_set_data64(sqe, UD(c, OP_CONNECT));
	c->inflight++;
	return c;
}

static void on_connect_done(struct net_worker *w, struct net_conn *c, int res)
{
	c->flags &= ~NET_F_CONNECTING;
	if (c->flags & NET_F_CLOSED)
		return;
	if (res < 0) {
		c->ops->on_connect(c, res);
		conn_teardown(c, res);
		return;
	}
	arm_recv(c);
	if (c->oq_len)
		mark_dirty(c);
	c->ops->on_connect(c, 0);
}

static void arm_accept(struct net_worker *w, struct listener *l)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, UD(l, OP_ACCEPT));
	l->armed = true;
}

/* accept(2) failed for lack of descriptors or memory: the connection stays
 * in the backlog, so accepting again at once fails again at once, forever.
 * Stop this listener for a while instead, and say so once a second. */
static void accept_pause(struct net_worker *w, struct listener *l, int err, bool more)
{
	w->accept_refused++;
	if (w->now >= w->accept_log_at) {
		log_warn(0, "worker %d: accept: %s (%llu time%s since the last report): accepting again in %d ms",
			 w->id, strerror(-err), (unsigned long long)w->accept_refused,
			 w->accept_refused == 1 ? "" : "s", ACCEPT_PAUSE_MS);
		w->accept_refused = 0;
		w->accept_log_at = w->now + 1000;
	}
	l->resume_at = w->now + ACCEPT_PAUSE_MS;
	if (more)
		cancel_req(w, UD(l, OP_ACCEPT), NULL);
}

/* From the tick: listeners whose pause is over accept again. */
static void accept_resume(struct net_worker *w)
{
	for (int i = 0; i < w->nlis; i++) {
		struct listener *l = &w->lis[i];
		if (l->resume_at && w->now >= l->resume_at && !l->armed && !w->stopped && !net_stopping()) {
			l->resume_at = 0;
			arm_accept(w, l);
		}
	}
}

/* A PROXY protocol header is believed only from the balancers named in
 * proxy_from: from anyone else it would let a peer choose the address that
 * logs and per-source limits see. Refused before a byte is read; logged the
 * first time and then at most every 10 s per worker, so a flood of such
 * connections cannot flood the log. */
static void proxy_refuse(struct net_worker *w, struct net_conn *c)
{
	static __thread uint64_t last_log, quiet;
	atomic_fetch_add_explicit(&proxy_refused, 1, memory_order_relaxed);
	if (!last_log || w->now - last_log >= 10000) {
		char a[INET6_ADDRSTRLEN] = "?";
		const struct sockaddr_in6 *sa = &c->peer;
		const void *ip = sa->sin6_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
							    : (const void *)&sa->sin6_addr;
		inet_ntop(sa->sin6_family, ip, a, sizeof(a));
		log_warn(c->id,
			 "PROXY protocol from %s, which is not in proxy_from: closed (%llu more since the last "
			 "report)",
			 a, (unsigned long long)quiet);
		last_log = w->now ? w->now : 1;
		quiet = 0;
	} else {
		quiet++;
	}
	conn_teardown(c, -EACCES);
}

uint64_t net_proxy_refused(void)
{
	return atomic_load_explicit(&proxy_refused, memory_order_relaxed);
}

static void on_accept(struct net_worker *w, struct listener *l, struct io_uring_cqe *cqe)
{
	bool more = cqe->flags & IORING_CQE_F_MORE;
	if (!more)
		l->armed = false;
	if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOBUFS || cqe->res == -ENOMEM) {
		if (!l->resume_at)
			accept_pause(w, l, cqe->res, more);
		return;
	}
	if (!more && !w->stopped && !net_stopping() && !l->resume_at)
		arm_accept(w, l);
	if (cqe->res < 0)
		return;
	int fd = cqe->res;
	if (net_stopping()) {
		close(fd);
		return;
	}
	set_sock_opts(fd);
	struct net_conn *c = conn_alloc(w);
	c->fd = fd;
	c->listen_kind = (uint16_t)l->kind;
	socklen_t sl = sizeof(c->peer);
	getpeername(fd, (struct sockaddr *)&c->peer, &sl);
	cfg.on_accept(c, l->kind);
	if (c->flags & NET_F_CLOSED)
		return;
	if ((c->flags & NET_F_PROXY) && !proxy_trusted((const struct sockaddr *)&c->peer)) {
		proxy_refuse(w, c);
		return;
	}
	arm_recv(c);
}

/* ---- messages ------------------------------------------------------ */

int net_msg_send(struct net_worker *self, int dst, const struct net_msg *m)
{
	struct spsc *r;
	if (!self) { /* control thread */
		r = ctrl_out[dst];
		int rc = spsc_push(r, m);
		if (rc == 0) {
			uint64_t one = 1;
			if (write(workers[dst].wake_fd, &one, sizeof(one)) < 0) {
				/* the counter saturates only if the worker is gone */
			}
		}
		return rc;
	}
	if (dst == NET_CTRL) {
		int rc = spsc_push(ctrl_in[self->id], m);
		if (rc == 0) {
			uint64_t one = 1;
			if (write(ctrl_efd, &one, sizeof(one)) < 0) {
			}
		}
		return rc;
	}
	r = workers[dst].in[self->id];
	int rc = spsc_push(r, m);
	if (rc == 0)
		self->woke[dst] = true;
	return rc;
}

static void handle_msg(struct net_worker *w, struct net_msg *m)
{
	if (m->type == NET_MSG_RELEASE) {
		net_buf_unref(w, m->buf);
		return;
	}
	if (m->type == NET_MSG_WAKE)
		return;
	cfg.on_msg(w, m);
}

static void drain_msgs(struct net_worker *w)
{
	for (int s = 0; s < nworkers; s++)
		if (s != w->id)
			spsc_drain(w->in[s], w, 4096, handle_msg);
	spsc_drain(w->in[NET_CTRL], w, 4096, handle_msg);
}

static void flush_wakes(struct net_worker *w)
{
	/* releases that did not fit earlier */
	if (w->nbacklog) {
		uint32_t k = 0;
		for (uint32_t i = 0; i < w->nbacklog; i++) {
			struct net_msg *m = &w->backlog[i];
			if (spsc_push(workers[m->buf->owner].in[w->id], m) < 0)
				w->backlog[k++] = *m;
			else
				w->woke[m->buf->owner] = true;
		}
		w->nbacklog = k;
	}
	for (int d = 0; d < nworkers; d++) {
		if (!w->woke[d])
			continue;
		w->woke[d] = false;
		struct io_uring_sqe *sqe = get_sqe(w);
		io_uring_prep_msg_ring(sqe, workers[d].ring_fd, 0, UD(&workers[d], OP_WAKE) | 0, 0);
		io_uring_sqe_set_data64(sqe, UD(w, OP_MSGRING));
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	}
}

static void arm_wake(struct net_worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, UD(w, OP_WAKE) | 0);
	/* distinguish our eventfd read from MSG_RING wakes by the buffer: a
	 * MSG_RING CQE carries res 0 and user_data UD(w, OP_WAKE) too, so the
	 * read is tagged by setting bit 0 of the worker pointer offset below */
	sqe->user_data = UD((char *)w + 8, OP_WAKE);
}

/* ---- the loop ------------------------------------------------------ */

static int ring_setup(struct net_worker *w)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN;
	p.flags |= IORING_SETUP_CQSIZE;
	p.cq_entries = 16384;
	int rc = io_uring_queue_init_params(4096, &w->ring, &p);
	if (rc < 0) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = 16384;
		rc = io_uring_queue_init_params(4096, &w->ring, &p);
		if (rc < 0)
			return rc;
		if (w->id == 0)
			log_warn(0, "io_uring: SINGLE_ISSUER/DEFER_TASKRUN unavailable, using defaults");
	}
	w->ring_fd = w->ring.ring_fd;
	/* provided buffer ring */
	size_t ringsz = w->nbufs * sizeof(struct io_uring_buf);
	w->br = mmap(NULL, ringsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (w->br == MAP_FAILED)
		return -ENOMEM;
	struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)w->br, .ring_entries = w->nbufs, .bgid = BGID};
	rc = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (rc < 0)
		return rc;
	io_uring_buf_ring_init(w->br);
	w->bufmem = mmap(NULL, (size_t)w->nbufs * w->bufsz, PROT_READ | PROT_WRITE,
			 MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
	if (w->bufmem == MAP_FAILED)
		return -ENOMEM;
	w->bufs = xcalloc(w->nbufs, sizeof(struct net_buf));
	for (uint32_t i = 0; i < w->nbufs; i++) {
		struct net_buf *b = &w->bufs[i];
		b->bid = (int32_t)i;
		b->owner = (uint16_t)w->id;
		b->cap = w->bufsz;
		b->data = w->bufmem + (size_t)i * w->bufsz;
		io_uring_buf_ring_add(w->br, b->data, w->bufsz, (unsigned short)i, io_uring_buf_ring_mask(w->nbufs),
				      (int)i);
	}
	io_uring_buf_ring_advance(w->br, (int)w->nbufs);
	return 0;
}

static int open_listener(int kind, const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, len) < 0 || listen(fd, 4096) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	(void)kind;
	return fd;
}

static void run_timers(struct net_worker *w)
{
	struct net_conn *c, *next;
	for (c = w->all; c; c = next) {
		next = c->all_next;
		if (c->flags & NET_F_CLOSED)
			continue;
		/* an idle connection keeps no buffers: what it had is given back */
		if (w->now - c->last_rx > 5000 && !(c->flags & NET_F_SENDING)) {
			if (!c->oq_len && c->oq) {
				free(c->oq);
				c->oq = NULL;
				c->oq_cap = 0;
				c->oq_head = 0;
			}
			if (c->plain && c->plain->ref == 1) {
				net_buf_unref(w, c->plain);
				c->plain = NULL;
			}
		}
		if (c->deadline && c->deadline <= w->now) {
			c->deadline = 0;
			if (c->flags & NET_F_CLOSING)
				conn_teardown(c, -ETIMEDOUT);
			else if (c->ops && c->ops->on_timer)
				c->ops->on_timer(c);
		}
	}
	accept_resume(w);
	if (cfg.on_tick)
		cfg.on_tick(w, w->now);
}

/* Connections whose multishot receive stopped for lack of buffers. */
static void rearm_nobufs(struct net_worker *w)
{
	struct net_conn *c = w->nobufs_wait, *next;
	w->nobufs_wait = NULL;
	for (; c; c = next) {
		next = c->nobufs_next;
		c->nobufs_next = c->nobufs_prev = NULL;
		c->flags &= ~NET_F_NOBUFS;
		if (!(c->flags & (NET_F_CLOSED | NET_F_RECV_ARMED | NET_F_RECV_STOPPED | NET_F_CLOSING)))
			arm_recv(c);
	}
}

static void handle_cqe(struct net_worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	void *ptr = UD_PTR(ud);
	switch (UD_OP(ud)) {
	case OP_ACCEPT:
		on_accept(w, ptr, cqe);
		break;
	case OP_RECV: {
		struct net_conn *c = ptr;
		if (!(cqe->flags & IORING_CQE_F_MORE))
			c->inflight--;
		on_recv(w, c, cqe);
		conn_maybe_free(c);
		break;
	}
	case OP_SEND: {
		struct net_conn *c = ptr;
		c->inflight--;
		on_send_done(w, c, cqe->res);
		conn_maybe_free(c);
		break;
	}
	case OP_CONNECT: {
		struct net_conn *c = ptr;
		c->inflight--;
		on_connect_done(w, c, cqe->res);
		conn_maybe_free(c);
		break;
	}
	case OP_CANCEL: {
		struct net_conn *c = ptr;
		if (!c)
			break; /* a listener's */
		c->inflight--;
		conn_maybe_free(c);
		break;
	}
	case OP_WAKE:
		if (ptr == (char *)w + 8 && !w->stopped)
			arm_wake(w); /* our eventfd read completed */
		break;
	default:
		break;
	}
}

static void *worker_main(void *arg)
{
	struct net_worker *w = arg;
	self_worker = w;
	if (w->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	w->now = mono_ms();
	int rc = ring_setup(w);
	if (rc < 0) {
		log_error(0, "worker %d: io_uring setup failed: %s", w->id, strerror(-rc));
		exit(1);
	}
	w->iov_cap = 65536;
	w->iov = xmalloc(w->iov_cap * sizeof(struct iovec));
	w->mh_cap = 4096;
	w->mh = xmalloc(w->mh_cap * sizeof(struct msghdr));
	for (int i = 0; i < nlistens; i++) {
		int fd = open_listener(listens[i].kind, (struct sockaddr *)&listens[i].ss, listens[i].len);
		if (fd < 0) {
			/* a bind failure names its address */
			const struct sockaddr *sa = (const struct sockaddr *)&listens[i].ss;
			const void *ip = sa->sa_family == AF_INET6
						 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
						 : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
			char a[INET6_ADDRSTRLEN] = "?";
			inet_ntop(sa->sa_family, ip, a, sizeof(a));
			log_error(0, "worker %d: cannot listen on %s port %d: %s", w->id, a,
				  ntohs(((const struct sockaddr_in *)sa)->sin_port), strerror(-fd));
			exit(1);
		}
		w->lis[w->nlis] = (struct listener){.fd = fd, .kind = listens[i].kind, .w = w};
		arm_accept(w, &w->lis[w->nlis]);
		w->nlis++;
	}
	arm_wake(w);
	rcu_register_thread();
	if (cfg.on_worker_start)
		cfg.on_worker_start(w);
	__atomic_store_n(&w->ring_ready, true, __ATOMIC_RELEASE);
	/* Our first accepted connection may hand a stanza to another worker:
	 * its ring (ring_fd for MSG_RING, its message rings) must be set up and
	 * visible here first. A worker that fails its setup exits the process. */
	for (int i = 0; i < nworkers; i++)
		while (!__atomic_load_n(&workers[i].ring_ready, __ATOMIC_ACQUIRE))
			usleep(100);
	w->next_tick = w->now + TICK_MS;
	uint64_t stop_at = 0;

	for (;;) {
		rcu_quiescent_state();
		flush_sends(w);
		flush_wakes(w);
		struct __kernel_timespec ts;
		uint64_t wait = w->next_tick > w->now ? w->next_tick - w->now : 0;
		ts.tv_sec = (long long)(wait / 1000);
		ts.tv_nsec = (long long)(wait % 1000) * 1000000;
		struct io_uring_cqe *cqe = NULL;
		rcu_thread_offline();
		rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		rcu_thread_online();
		w->now = mono_ms();
		unsigned head, n = 0;
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		drain_msgs(w);
		if (w->nresumed)
			run_resumed(w);
		if (w->nobufs_wait && w->bufs_out < w->nbufs - w->nbufs / 4)
			rearm_nobufs(w);
		if (w->now >= w->next_tick) {
			w->next_tick = w->now + TICK_MS;
			run_timers(w);
		}
		if (net_stopping() && !w->stopped) {
			w->stopped = true;
			for (int i = 0; i < w->nlis; i++) {
				close(w->lis[i].fd);
			}
			if (cfg.on_worker_stop)
				cfg.on_worker_stop(w);
			stop_at = w->now + 1000;
		}
		if (w->stopped) {
			bool busy = false;
			for (struct net_conn *c = w->all; c; c = c->all_next)
				if (!(c->flags & NET_F_CLOSED) && (c->oq_len || (c->flags & NET_F_CLOSING)))
					busy = true; /* still flushing (a close_notify, too) */
			if (!busy || w->now >= stop_at)
				break;
		}
	}
	for (struct net_conn *c = w->all, *next; c; c = next) {
		next = c->all_next;
		conn_teardown(c, 0);
	}
	rcu_unregister_thread();
	return NULL;
}

/* Every link is a descriptor: take all the process may have (the soft limit
 * up to the hard one) and say how many that is. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit want = rl;
		want.rlim_cur = rl.rlim_max;
		if (rl.rlim_max == RLIM_INFINITY) { /* the kernel still caps it at fs.nr_open */
			FILE *f = fopen("/proc/sys/fs/nr_open", "r");
			unsigned long long v = 0;
			if (!f || fscanf(f, "%llu", &v) != 1 || v == 0)
				v = 1048576;
			if (f)
				fclose(f);
			want.rlim_cur = (rlim_t)v;
		}
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl.rlim_cur = want.rlim_cur;
		else
			log_warn(0, "cannot raise the file descriptor limit to %llu: %s",
				 (unsigned long long)want.rlim_cur, strerror(errno));
	}
	log_info(0, "file descriptors: up to %llu (RLIMIT_NOFILE)", (unsigned long long)rl.rlim_cur);
}

int net_init(const struct net_config *c)
{
	cfg = *c;
	raise_nofile();
	if (!cfg.buf_size)
		cfg.buf_size = 16384; /* one TLS record; the pool is 8 MiB per worker */
	if (!cfg.buf_count)
		cfg.buf_count = 512;
	if (!cfg.ring_msgs)
		cfg.ring_msgs = 16384;
	if (!cfg.max_pending)
		cfg.max_pending = 1 << 20;
	/* Workers are pinned inside the CPU set the process was given (taskset,
	 * cgroups): `workers auto` is one per CPU of that set. */
	cpu_set_t allowed;
	int cpus[CPU_SETSIZE], ncpu = 0;
	if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
		for (int i = 0; i < CPU_SETSIZE; i++)
			if (CPU_ISSET(i, &allowed))
				cpus[ncpu++] = i;
	}
	if (ncpu == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		for (ncpu = 0; ncpu < (n > 0 ? n : 1) && ncpu < CPU_SETSIZE; ncpu++)
			cpus[ncpu] = ncpu;
	}
	nworkers = cfg.workers > 0 ? cfg.workers : ncpu;
	if (nworkers > NET_MAX_WORKERS)
		nworkers = NET_MAX_WORKERS;
	workers = xcalloc((size_t)nworkers, sizeof(*workers));
	ctrl_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (int i = 0; i < nworkers; i++) {
		struct net_worker *w = &workers[i];
		w->id = i;
		w->cpu = ncpu > 1 ? cpus[i % ncpu] : -1; /* one CPU: nothing to choose */
		w->nbufs = cfg.buf_count;
		w->bufsz = cfg.buf_size;
		w->wake_fd = eventfd(0, EFD_CLOEXEC);
		ctrl_in[i] = spsc_new(cfg.ring_msgs);
	}
	for (int i = 0; i < nworkers; i++) {
		for (int s = 0; s < nworkers; s++)
			if (s != i)
				workers[i].in[s] = spsc_new(cfg.ring_msgs);
		workers[i].in[NET_CTRL] = ctrl_out[i] = spsc_new(cfg.ring_msgs);
	}
	return 0;
}

int net_listen(int kind, const struct sockaddr *sa, socklen_t len)
{
	if (nlistens == NET_MAX_LISTENERS)
		return -ENOSPC;
	/* Check now that the address can be bound, so a bad config fails early. */
	int fd = open_listener(kind, sa, len);
	if (fd < 0)
		return fd;
	close(fd);
	listens[nlistens].kind = kind;
	memcpy(&listens[nlistens].ss, sa, len);
	listens[nlistens].len = len;
	nlistens++;
	return 0;
}

int net_start(void)
{
	for (int i = 0; i < nworkers; i++) {
		int rc = pthread_create(&workers[i].th, NULL, worker_main, &workers[i]);
		if (rc)
			return -rc;
	}
	for (int i = 0; i < nworkers; i++)
		while (!__atomic_load_n(&workers[i].ring_ready, __ATOMIC_ACQUIRE))
			usleep(1000);
	return 0;
}

void net_stop(void)
{
	atomic_store(&stopping, true);
	for (int i = 0; i < nworkers; i++) {
		uint64_t one = 1;
		if (write(workers[i].wake_fd, &one, sizeof(one)) < 0) {
		}
	}
	for (int i = 0; i < nworkers; i++)
		pthread_join(workers[i].th, NULL);
}

int net_ctrl_eventfd(void)
{
	return ctrl_efd;
}

static void ctrl_handle(struct net_worker *unused, struct net_msg *m)
{
	(void)unused;
	if (m->type == NET_MSG_RELEASE)
		return; /* control never lends buffers to workers */
	if (cfg.on_ctrl_msg)
		cfg.on_ctrl_msg(m);
}

int net_ctrl_drain(void)
{
	uint64_t v;
	if (read(ctrl_efd, &v, sizeof(v)) < 0) {
	}
	int n = 0;
	for (int i = 0; i < nworkers; i++)
		n += (int)spsc_drain(ctrl_in[i], NULL, 1u << 30, ctrl_handle);
	return n;
}

void net_worker_foreach(struct net_worker *w, void (*fn)(struct net_conn *c, void *arg), void *arg)
{
	for (struct net_conn *c = w->all, *next; c; c = next) {
		next = c->all_next;
		if (!(c->flags & NET_F_CLOSED))
			fn(c, arg);
	}
}
