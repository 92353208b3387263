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
 * Waiting in batches. At light load a loop that wakes for every completion
 * pays an io_uring_enter, a wake-up and a sendmsg for each stanza: at 20,000
 * stanzas/s over 8 links that was 20 µs of CPU per stanza, HAProxy's cost.
 * Most of a turn's cost is fixed: the worker's own sleep and wake-up and the
 * wake-up of each peer its sends reach (on a VM, an inter-processor
 * interrupt each); profiled at about 40 µs per turn against 1-3 µs per
 * stanza received. So the wait adapts to the load (batch_adapt):
 *   - sparse (fewer than BATCH_MIN_RATE completions/s over the last 10 ms, or
 *     at most one completion after a full wait): wait for one completion, as
 *     before; a lone stanza is not delayed;
 *   - busy: wait for a batch of twice the last turn's count (BATCH_MIN..
 *     BATCH_MAX), but with the kernel's min-wait (IORING_FEAT_MIN_TIMEOUT,
 *     Linux 6.12; min_wait_usec of IORING_ENTER_EXT_ARG) any completion ends
 *     the wait once wait_us have passed: no completion waits longer than that
 *     for others, and with DEFER_TASKRUN the thread is not even woken before.
 *     wait_us is the time BATCH_TARGET completions or BATCH_TARGET_BYTES
 *     received take at the rates of the last 10 ms, whichever is shorter,
 *     within BATCH_WAIT_MIN_US..BATCH_WAIT_MAX_US: 500 µs at 20,000 stanzas/s
 *     of 300 bytes, 200 µs from 100,000/s (where one receive carries several
 *     stanzas, the bytes decide);
 *   - loaded (BATCH_MAX completions or BATCH_BYTES received in one turn, or
 *     more than BATCH_FAST_BPMS received per ms): every wake-up finds work
 *     already; no added delay. Counting completions alone is not enough: at
 *     high load one receive carries dozens of stanzas, and a closed-loop peer
 *     (a bounded window of stanzas in flight) slowed down by a third when the
 *     loop waited there.
 * The sends of a whole batch then leave in one sendmsg per connection.
 * Measured (bench/NOTES.md, in BENCHMARKS.md): a fixed 200 µs halved the CPU
 * per stanza at 20,000/s; the adaptive bound halved it again. A plain
 * timeout of wait_us (kernels without min-wait, the fallback here) costs
 * about the same CPU at that load but wakes when traffic stops.
 *
 * The rest of the runtime: net/conn.c (connections and the send queue),
 * net/rx.c (the receive path, TLS, PROXY), net/msg.c (messages between
 * workers, connect, accept); net/worker-int.h is what they share.
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

struct net_config nw_cfg;
struct net_worker *nw_workers;
int nw_nworkers;
struct spsc *nw_ctrl_in[NET_MAX_WORKERS];  /* worker -> control */
struct spsc *nw_ctrl_out[NET_MAX_WORKERS]; /* control -> worker (== nw_workers[i].in[NET_CTRL]) */
int nw_ctrl_efd = -1;
static _Atomic bool stopping;
_Atomic bool nw_no_accept; /* net_stop_accepting() */
static _Atomic uint32_t stop_flush_ms = 1000;
_Atomic uint64_t nw_next_conn_id = 1;
uint64_t nw_queue_limit = 4u << 20;
static struct {
	int kind;
	struct sockaddr_storage ss;
	socklen_t len;
} listens[NET_MAX_LISTENERS];
static int nlistens;
static __thread struct net_worker *self_worker;
_Atomic uint64_t nw_starttls_dropped; /* bytes discarded after <starttls/> or <proceed/> */
_Atomic uint64_t nw_proxy_refused;    /* PROXY headers from untrusted sources */

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t net_now_ms(void)
{
	return self_worker ? self_worker->now : mono_ms();
}

void net_stop_accepting(void)
{
	atomic_store(&nw_no_accept, true); /* seen within a tick */
}

void net_set_stop_flush_ms(uint32_t ms)
{
	atomic_store(&stop_flush_ms, ms);
}

bool net_stopping(void)
{
	return atomic_load_explicit(&stopping, memory_order_relaxed);
}
int net_nworkers(void)
{
	return nw_nworkers;
}
struct net_worker *net_worker_at(int i)
{
	return &nw_workers[i];
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
	nw_queue_limit = bytes;
}

/* ---- the loop ------------------------------------------------------ */

static int ring_setup(struct net_worker *w)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	/* TASKRUN_FLAG: the ring says when completions wait to be posted
	 * (the latency histogram's ingress time, see worker_main) */
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN |
		  IORING_SETUP_TASKRUN_FLAG;
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
	nw_timers_run(w); /* only the connections due (net/timer.c) */
	nw_accept_resume(w);
	if (nw_cfg.on_tick)
		nw_cfg.on_tick(w, w->now);
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
			nw_arm_recv(c);
	}
}

static void handle_cqe(struct net_worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	void *ptr = UD_PTR(ud);
	switch (UD_OP(ud)) {
	case OP_ACCEPT:
		nw_on_accept(w, ptr, cqe);
		break;
	case OP_RECV: {
		struct net_conn *c = ptr;
		if (!(cqe->flags & IORING_CQE_F_MORE))
			c->inflight--;
		nw_on_recv(w, c, cqe);
		nw_conn_maybe_free(c);
		break;
	}
	case OP_SEND: {
		struct net_conn *c = ptr;
		c->inflight--;
		nw_on_send_done(w, c, cqe->res);
		nw_conn_maybe_free(c);
		break;
	}
	case OP_CONNECT: {
		struct net_conn *c = ptr;
		c->inflight--;
		nw_on_connect_done(w, c, cqe->res);
		nw_conn_maybe_free(c);
		break;
	}
	case OP_CANCEL: {
		struct net_conn *c = ptr;
		if (!c)
			break; /* a listener's */
		c->inflight--;
		nw_conn_maybe_free(c);
		break;
	}
	case OP_WAKE:
		if (ptr == (char *)w + 8 && !w->stopped)
			nw_arm_wake(w); /* our eventfd read completed */
		break;
	default:
		break;
	}
}

/* ---- waiting for completions ------------------------------------- */

#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif

/* Hand the queued SQEs to the kernel's view of the ring (what liburing's
 * submit does before io_uring_enter) and say how many there are. */
static unsigned sq_flush(struct io_uring *r)
{
	struct io_uring_sq *sq = &r->sq;
	unsigned tail = sq->sqe_tail;
	if (sq->sqe_head != tail) {
		for (unsigned i = sq->sqe_head; i != tail; i++)
			sq->array[i & sq->ring_mask] = i & sq->ring_mask;
		sq->sqe_head = tail;
		io_uring_smp_store_release(sq->ktail, tail);
	}
	return tail - IO_URING_READ_ONCE(*sq->khead);
}

/* One io_uring_enter: submit what is queued and wait. Not batching: for one
 * completion or the tick. Batching: for w->batch completions, but once
 * w->wait_us has passed any completion at all ends the wait (the kernel's
 * min-wait, where it has one; else a plain timeout of w->wait_us). */
static unsigned submit_and_wait(struct net_worker *w, uint64_t tick_ms)
{
	struct __kernel_timespec ts = {.tv_sec = (long long)(tick_ms / 1000),
				       .tv_nsec = (long long)(tick_ms % 1000) * 1000000};
	struct io_uring_getevents_arg arg = {
		.sigmask = 0, .sigmask_sz = _NSIG / 8, .pad = 0, .ts = (uint64_t)(uintptr_t)&ts};
	if (!(w->ring.features & IORING_FEAT_EXT_ARG)) { /* before Linux 5.11: liburing emulates the timeout */
		struct io_uring_cqe *cqe;
		io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		return 1;
	}
	unsigned nr = 1;
	if (w->batching && tick_ms > 0) {
		nr = w->batch;
		if (w->min_wait_ok) {
			arg.pad = w->wait_us; /* min_wait_usec */
		} else if (tick_ms * 1000 > w->wait_us) {
			ts.tv_sec = 0;
			ts.tv_nsec = (long long)w->wait_us * 1000;
		}
	}
	unsigned todo = sq_flush(&w->ring);
	int rc = io_uring_enter2((unsigned)w->ring_fd, todo, nr, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
				 (sigset_t *)&arg, sizeof(arg));
	if (rc == -EINVAL && arg.pad) {
		/* a kernel that names the feature but refuses the value */
		w->min_wait_ok = false;
		log_warn(0, "worker %d: io_uring min-wait refused; batching with a plain timeout", w->id);
	}
	/* -ETIME, -EINTR, -EBUSY (CQ full): the completions are read all the same */
	return nr;
}

/* After a turn that handled n completions, received w->turn_rx bytes and
 * waited waited_us (it ended at now_us), choose the next wait: a batch when
 * completions come at BATCH_MIN_RATE or faster (the batch target twice the
 * last turn's count, the bound wait_us the time BATCH_TARGET completions or
 * BATCH_TARGET_BYTES take at the current rates); a plain wait when traffic is sparse or the last turn was
 * nearly idle (a lone stanza is handled at once), or had work enough
 * (BATCH_MAX completions or BATCH_BYTES received), or bytes arrive faster
 * than BATCH_FAST_BPMS. At that load a receive carries many stanzas, every
 * wake-up finds work, and a wait would only add delay: a peer that waits for
 * our output before sending more (a bounded window) would slow down by it. */
static void batch_adapt(struct net_worker *w, unsigned n, uint64_t waited_us, uint64_t now_us)
{
	uint64_t rx = w->turn_rx;
	w->turn_rx = 0;
	w->win_rx += rx;
	w->win_n += n;
	w->rate_rx += rx;
	if (now_us - w->win_us >= 1000) {
		w->fast = w->win_rx * 1000 / (now_us - w->win_us) >= BATCH_FAST_BPMS;
		w->win_rx = 0;
		w->win_us = now_us;
	}
	if (now_us - w->rate_us >= BATCH_RATE_WIN_US) {
		uint64_t dt = now_us - w->rate_us;
		w->cps = w->win_n * 1000000 / dt;
		/* at high load one receive carries many stanzas: the bytes say so */
		uint64_t t = w->win_n ? BATCH_TARGET * dt / w->win_n : BATCH_WAIT_MAX_US;
		if (w->rate_rx && BATCH_TARGET_BYTES * dt / w->rate_rx < t)
			t = BATCH_TARGET_BYTES * dt / w->rate_rx;
		w->win_n = w->rate_rx = 0;
		w->rate_us = now_us;
		w->wait_us = t < BATCH_WAIT_MIN_US ? BATCH_WAIT_MIN_US : t > BATCH_WAIT_MAX_US ? BATCH_WAIT_MAX_US : (uint32_t)t;
	}
	if (w->fast || n >= BATCH_MAX || rx >= BATCH_BYTES || w->cps < BATCH_MIN_RATE ||
	    (n < 2 && waited_us >= w->wait_us)) {
		w->batching = false;
		return;
	}
	w->batching = true;
	w->batch = n * 2 < BATCH_MIN ? BATCH_MIN : n * 2 > BATCH_MAX ? BATCH_MAX : n * 2;
}

/* ---- the latency histogram (net.h) --------------------------------- */

uint64_t net_lat_bound_us(int i)
{
	if (i < 4)
		return (uint64_t)i + 1;
	if (i >= NET_LAT_BUCKETS - 1)
		return UINT64_MAX;
	int k = (i - 4) / 4 + 2, sub = (i - 4) % 4;
	return (uint64_t)(4 + sub + 1) << (k - 2);
}

void net_lat_get(uint64_t counts[NET_LAT_BUCKETS], uint64_t *sum_us, uint64_t *n)
{
	memset(counts, 0, NET_LAT_BUCKETS * sizeof(counts[0]));
	*sum_us = *n = 0;
	for (int i = 0; i < nw_nworkers; i++) {
		struct net_worker *w = &nw_workers[i];
		for (int j = 0; j < NET_LAT_BUCKETS; j++)
			counts[j] += __atomic_load_n(&w->lat_hist[j], __ATOMIC_RELAXED);
		*sum_us += __atomic_load_n(&w->lat_sum_us, __ATOMIC_RELAXED);
		*n += __atomic_load_n(&w->lat_n, __ATOMIC_RELAXED);
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
	w->reap_us = mono_us();
	int rc = ring_setup(w);
	if (rc < 0) {
		log_error(0, "worker %d: io_uring setup failed: %s", w->id, strerror(-rc));
		exit(1);
	}
	w->min_wait_ok = (w->ring.features & IORING_FEAT_MIN_TIMEOUT) != 0;
	if (!w->min_wait_ok && w->id == 0)
		log_info(0, "io_uring: no min-wait in this kernel; busy loops wait for batches with a %d-%d us timeout",
			 BATCH_WAIT_MIN_US, BATCH_WAIT_MAX_US);
	w->batch = BATCH_MIN;
	w->wait_us = BATCH_WAIT_MAX_US;
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
		nw_arm_accept(w, &w->lis[w->nlis]);
		w->nlis++;
	}
	nw_arm_wake(w);
	rcu_register_thread();
	if (nw_cfg.on_worker_start)
		nw_cfg.on_worker_start(w);
	__atomic_store_n(&w->ring_ready, true, __ATOMIC_RELEASE);
	/* Our first accepted connection may hand a stanza to another worker:
	 * its ring (ring_fd for MSG_RING, its message rings) must be set up and
	 * visible here first. A worker that fails its setup exits the process. */
	for (int i = 0; i < nw_nworkers; i++)
		while (!__atomic_load_n(&nw_workers[i].ring_ready, __ATOMIC_ACQUIRE))
			usleep(100);
	w->next_tick = w->now + TICK_MS;
	uint64_t stop_at = 0;

	for (;;) {
		rcu_quiescent_state();
		w->flush_us = mono_us(); /* the sends' egress time */
		nw_flush_sends(w);
		nw_flush_wakes(w);
		uint64_t wait = w->next_tick > w->now ? w->next_tick - w->now : 0;
		/* completions already waiting to be posted arrived during the
		 * last turn: with DEFER_TASKRUN the kernel posts them only in
		 * the next io_uring_enter */
		bool pending = io_uring_cq_ready(&w->ring) ||
			       (IO_URING_READ_ONCE(*w->ring.sq.kflags) & IORING_SQ_TASKRUN);
		rcu_thread_offline();
		uint64_t t0 = mono_us();
		unsigned nr = submit_and_wait(w, wait);
		uint64_t t1 = mono_us();
		rcu_thread_online();
		w->now = t1 / 1000;
		/* The ingress time stamped on what this turn receives, no later
		 * than its true arrival (bar the wake-up's own latency): the last
		 * reap if it was waiting already; the wait's start if the wait was
		 * for a batch (it may have come at any time in it); else the
		 * wait's end (it was woken by the first completion). */
		w->turn_in_us = pending ? w->reap_us : nr > 1 ? t0 : t1;
		w->reap_us = t1;
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		batch_adapt(w, n, t1 - t0, t1);
		nw_drain_msgs(w);
		if (nw_cfg.on_turn)
			nw_cfg.on_turn(w);
		if (w->nresumed)
			nw_run_resumed(w);
		if (w->nobufs_wait && w->bufs_out < w->nbufs - w->nbufs / 4)
			rearm_nobufs(w);
		if (w->now >= w->next_tick) {
			w->next_tick = w->now + TICK_MS;
			run_timers(w);
		}
		if ((net_stopping() || atomic_load_explicit(&nw_no_accept, memory_order_relaxed)) && w->nlis) {
			/* the ring holds the socket open while its multishot
			 * accept is armed, and the cancel completes later (or,
			 * at exit, only when the kernel tears the ring down):
			 * shutdown stops the listening now, whatever holds the
			 * file, and resets what waits in the backlog; then
			 * cancel and close */
			for (int i = 0; i < w->nlis; i++) {
				shutdown(w->lis[i].fd, SHUT_RDWR);
				if (w->lis[i].armed)
					nw_cancel_req(w, UD(&w->lis[i], OP_ACCEPT), NULL);
				w->lis[i].resume_at = 0;
				close(w->lis[i].fd);
			}
			w->nlis = 0;
		}
		if (net_stopping() && !w->stopped) {
			w->stopped = true;
			if (nw_cfg.on_worker_stop)
				nw_cfg.on_worker_stop(w);
			stop_at = w->now + atomic_load_explicit(&stop_flush_ms, memory_order_relaxed);
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
		nw_conn_teardown(c, 0);
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
	nw_cfg = *c;
	raise_nofile();
	if (!nw_cfg.buf_size)
		nw_cfg.buf_size = 16384; /* one TLS record; the pool is 8 MiB per worker */
	if (!nw_cfg.buf_count)
		nw_cfg.buf_count = 512;
	if (!nw_cfg.ring_msgs)
		nw_cfg.ring_msgs = 16384;
	if (!nw_cfg.max_pending)
		nw_cfg.max_pending = 1 << 20;
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
	nw_nworkers = nw_cfg.workers > 0 ? nw_cfg.workers : ncpu;
	if (nw_nworkers > NET_MAX_WORKERS)
		nw_nworkers = NET_MAX_WORKERS;
	nw_workers = xcalloc((size_t)nw_nworkers, sizeof(*nw_workers));
	nw_ctrl_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (int i = 0; i < nw_nworkers; i++) {
		struct net_worker *w = &nw_workers[i];
		w->id = i;
		w->cpu = ncpu > 1 ? cpus[i % ncpu] : -1; /* one CPU: nothing to choose */
		w->nbufs = nw_cfg.buf_count;
		w->bufsz = nw_cfg.buf_size;
		w->wake_fd = eventfd(0, EFD_CLOEXEC);
		nw_ctrl_in[i] = nw_spsc_new(nw_cfg.ring_msgs);
	}
	for (int i = 0; i < nw_nworkers; i++) {
		for (int s = 0; s < nw_nworkers; s++)
			if (s != i)
				nw_workers[i].in[s] = nw_spsc_new(nw_cfg.ring_msgs);
		nw_workers[i].in[NET_CTRL] = nw_ctrl_out[i] = nw_spsc_new(nw_cfg.ring_msgs);
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
	for (int i = 0; i < nw_nworkers; i++) {
		int rc = pthread_create(&nw_workers[i].th, NULL, worker_main, &nw_workers[i]);
		if (rc)
			return -rc;
	}
	for (int i = 0; i < nw_nworkers; i++)
		while (!__atomic_load_n(&nw_workers[i].ring_ready, __ATOMIC_ACQUIRE))
			usleep(1000);
	return 0;
}

void net_stop(void)
{
	atomic_store(&stopping, true);
	for (int i = 0; i < nw_nworkers; i++) {
		uint64_t one = 1;
		if (write(nw_workers[i].wake_fd, &one, sizeof(one)) < 0) {
		}
	}
	for (int i = 0; i < nw_nworkers; i++)
		pthread_join(nw_workers[i].th, NULL);
}

int net_ctrl_eventfd(void)
{
	return nw_ctrl_efd;
}

static void ctrl_handle(struct net_worker *unused, struct net_msg *m)
{
	(void)unused;
	if (m->type == NET_MSG_RELEASE)
		return; /* control never lends buffers to workers */
	if (nw_cfg.on_ctrl_msg)
		nw_cfg.on_ctrl_msg(m);
}

int net_ctrl_drain(void)
{
	uint64_t v;
	if (read(nw_ctrl_efd, &v, sizeof(v)) < 0) {
	}
	int n = 0;
	for (int i = 0; i < nw_nworkers; i++)
		n += (int)nw_spsc_drain(nw_ctrl_in[i], NULL, 1u << 30, ctrl_handle);
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
