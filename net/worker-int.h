/*
 * net/worker-int.h — what the files of the worker runtime share: net/worker.c
 * (threads, the loop, batching, timers, start/stop), net/conn.c (connection
 * slots, buffers, the send queue, close and teardown, pause/resume),
 * net/rx.c (the receive path, delivery, the TLS and PROXY glue) and
 * net/msg.c (SPSC rings, messages between workers, connect, accept) and
 * net/timer.c (the timer wheel: deadlines, idle-buffer release).
 * Nothing here is API: other modules use net/net.h.
 *
 * user_data of an SQE is a pointer with the operation in its low 3 bits.
 * A connection has at most one receive, one send and one connect armed, so
 * that value names one request: closing a connection cancels exactly its
 * own requests by user_data (the kernel looks them up in a hash), which costs
 * the same at a hundred connections or a hundred thousand, where cancelling
 * by file descriptor walks every pending request of the ring.
 */
#ifndef FEDHUB_NET_WORKER_INT_H
#define FEDHUB_NET_WORKER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <liburing.h>

#include "net/net.h"

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
#define TW_SLOTS     512 /* timer wheel: 51.2 s of ticks, a power of two */
#define IDLE_FREE_MS 5000 /* no input for this long: a connection's idle buffers go back */
#define IOV_PER_SEND 256
/* A listener out of file descriptors waits this long before accepting again. */
#define ACCEPT_PAUSE_MS 250
/* Completion batching: the longest a completion waits for others (µs), chosen
 * between the two bounds so that about BATCH_TARGET completions or
 * BATCH_TARGET_BYTES received (whichever comes first) arrive within it at the
 * current rates, and the range of the batch size a busy loop waits for. */
#define BATCH_WAIT_MIN_US  200
#define BATCH_WAIT_MAX_US  500
#define BATCH_TARGET       20
#define BATCH_TARGET_BYTES 6144
#define BATCH_MIN         4
#define BATCH_MAX         64
/* Completions per second below which the loop does not batch at all: fewer
 * than BATCH_MIN would arrive within the longest wait, too few to pay for
 * the delay. Measured over windows of BATCH_RATE_WIN_US. */
#define BATCH_MIN_RATE    (BATCH_MIN * 1000000 / BATCH_WAIT_MAX_US)
#define BATCH_RATE_WIN_US 10000
/* A turn that received this much had enough work to pay for its wake-up. */
#define BATCH_BYTES 8192
/* Received faster than this (bytes per ms, over the last ms or more), the
 * loop has work enough at every wake-up: no batching, no added delay. */
#define BATCH_FAST_BPMS 49152

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
	/* timer wheel (net/timer.c): tw[i] lists the connections due in a
	 * tick t with t % TW_SLOTS == i; tw[TW_SLOTS] those being visited */
	struct net_conn *tw[TW_SLOTS + 1];
	uint64_t tw_done; /* the last tick (now / TICK_MS) visited */
	bool stopped;
	/* completion batching (see the header comment) */
	bool min_wait_ok; /* the kernel has IORING_FEAT_MIN_TIMEOUT */
	bool batching;    /* the last turn was busy: wait for a batch */
	uint32_t batch;   /* completions to wait for while batching */
	uint32_t wait_us; /* the longest a completion waits for others (min-wait) */
	uint64_t win_n;   /* completions since rate_us */
	uint64_t rate_rx; /* bytes received since rate_us */
	uint64_t rate_us;
	uint64_t cps;     /* completions per second over the last window */
	uint64_t turn_rx; /* bytes received in this loop turn */
	uint64_t win_rx;  /* bytes received since win_us */
	uint64_t win_us;
	bool fast; /* the last window received faster than BATCH_FAST_BPMS */
	/* router-added latency (nw_lat_add; net.h has what it measures) */
	uint64_t turn_in_us; /* this turn's ingress time, stamped on what it received */
	uint64_t reap_us;    /* when the last wait returned */
	uint64_t flush_us;   /* when this turn's sends were prepared */
	uint64_t lat_hist[NET_LAT_BUCKETS];
	uint64_t lat_sum_us, lat_n;
};

/* Count one stanza that left after us µs in the hub (plain stores that the
 * HTTP thread reads: one writer, see router/met.h's MET_INC). Buckets: 1 µs
 * wide below 4 µs, then four per power of two (about 19% wide). */
static inline int nw_lat_bucket(uint64_t us)
{
	if (us < 4)
		return (int)us;
	int k = 63 - __builtin_clzll(us);
	int i = 4 + (k - 2) * 4 + (int)((us >> (k - 2)) & 3);
	return i < NET_LAT_BUCKETS - 1 ? i : NET_LAT_BUCKETS - 1;
}

static inline void nw_lat_add(struct net_worker *w, const struct net_buf *b)
{
	if (!b || !b->rx_us)
		return; /* not received bytes: generated by the hub */
	uint64_t us = w->flush_us > b->rx_us ? w->flush_us - b->rx_us : 0;
	uint64_t *h = &w->lat_hist[nw_lat_bucket(us)];
	__atomic_store_n(h, *h + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&w->lat_sum_us, w->lat_sum_us + us, __ATOMIC_RELAXED);
	__atomic_store_n(&w->lat_n, w->lat_n + 1, __ATOMIC_RELAXED);
}

/* ---- shared state (worker.c) ---------------------------------------- */

extern struct net_config nw_cfg;
extern struct net_worker *nw_workers;
extern int nw_nworkers;
extern struct spsc *nw_ctrl_in[NET_MAX_WORKERS];  /* worker -> control */
extern struct spsc *nw_ctrl_out[NET_MAX_WORKERS]; /* control -> worker (== nw_workers[i].in[NET_CTRL]) */
extern int nw_ctrl_efd;
extern _Atomic bool nw_no_accept; /* net_stop_accepting() */
extern _Atomic uint64_t nw_next_conn_id;
extern uint64_t nw_queue_limit;
extern _Atomic uint64_t nw_starttls_dropped; /* bytes discarded after <starttls/> or <proceed/> */
extern _Atomic uint64_t nw_proxy_refused;    /* PROXY headers from untrusted sources */

/* ---- connections and the send path (conn.c) ------------------------- */

struct net_conn *nw_conn_alloc(struct net_worker *w);
void nw_conn_maybe_free(struct net_conn *c);
void nw_cancel_req(struct net_worker *w, uint64_t ud, struct net_conn *c);
void nw_conn_teardown(struct net_conn *c, int err);
/* net/timer.c: visit the connections due up to w->now; file c again for
 * its next wake (deadline, idle-buffer release); take c off the wheel. */
void nw_timers_run(struct net_worker *w);
void nw_timer_rearm(struct net_conn *c);
void nw_timer_unlink(struct net_conn *c);
struct io_uring_sqe *nw_get_sqe(struct net_worker *w);
void nw_arm_recv(struct net_conn *c);
void nw_mark_dirty(struct net_conn *c);
bool nw_bye_due(const struct net_conn *c);
void nw_flush_sends(struct net_worker *w);
void nw_on_send_done(struct net_worker *w, struct net_conn *c, int res);

/* ---- the receive path and TLS (rx.c) -------------------------------- */

void nw_tls_fail(struct net_worker *w, struct net_conn *c, int err);
void nw_tls_prep_send(struct net_worker *w, struct net_conn *c);
void nw_run_resumed(struct net_worker *w);
void nw_on_recv(struct net_worker *w, struct net_conn *c, struct io_uring_cqe *cqe);

/* ---- rings, messages, connect and accept (msg.c) -------------------- */

struct spsc *nw_spsc_new(uint32_t n);
uint32_t nw_spsc_drain(struct spsc *r, struct net_worker *w, uint32_t max,
		       void (*fn)(struct net_worker *, struct net_msg *));
void nw_on_connect_done(struct net_worker *w, struct net_conn *c, int res);
void nw_arm_accept(struct net_worker *w, struct listener *l);
void nw_accept_resume(struct net_worker *w);
void nw_on_accept(struct net_worker *w, struct listener *l, struct io_uring_cqe *cqe);
void nw_drain_msgs(struct net_worker *w);
void nw_flush_wakes(struct net_worker *w);
void nw_arm_wake(struct net_worker *w);

#endif
