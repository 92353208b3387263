/*
 * net/net.h — the worker runtime: one io_uring per worker thread, pinned.
 *
 * A connection lives on one worker for its whole life. Bytes arrive in
 * provided buffers (multishot recv) and are handed to the connection's owner
 * in place; the owner may keep slices of them (taking a reference on the
 * buffer) and queue those slices for sending on any connection, on any worker,
 * without copying. Sends are coalesced: one sendmsg per connection per loop
 * turn with every queued slice. Workers talk to each other and to the control
 * thread through single-producer/single-consumer rings of fixed-size messages;
 * a worker that pushed messages wakes the destination with IORING_OP_MSG_RING
 * once per loop turn.
 *
 * Buffer references are plain integers touched only by the buffer's owning
 * worker: a worker that is done with another worker's buffer sends it back in
 * a NET_MSG_RELEASE message. No atomic read-modify-write anywhere.
 */
#ifndef FEDHUB_NET_H
#define FEDHUB_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define NET_MAX_WORKERS 64
#define NET_CTRL        NET_MAX_WORKERS /* index of the control thread in rings */
/* listen addresses; each worker opens its own socket for each */
#define NET_MAX_LISTENERS 16

struct net_worker;
struct net_conn;

/* A reference-counted byte buffer owned by one worker. */
struct net_buf {
	int32_t ref;    /* owner worker only */
	int32_t bid;    /* provided-buffer id, or -1 for a heap buffer */
	uint16_t owner; /* worker index */
	uint32_t cap, len;
	char *data;
	uint64_t rx_us; /* µs, monotonic: the loop turn that handed these bytes to on_data (0: not received) */
};

struct net_slice {
	struct net_buf *b; /* may be NULL for static bytes */
	const char *p;
	uint32_t n;
};

/* A stable reference to a connection, valid across workers: a stale one
 * (connection closed and slot reused) is detected by its generation. */
struct net_ref {
	uint16_t worker;
	uint32_t slot;
	uint32_t gen;
};

struct net_conn_ops {
	/* Bytes [p, p+n) arrived, contiguous, in buffer b. Return how many were
	 * consumed; the rest is presented again, first, with more bytes after it.
	 * Take net_buf_ref(b) to keep any of them past the return. */
	size_t (*on_data)(struct net_conn *c, struct net_buf *b, const char *p, size_t n);
	/* Outbound connect finished (err = 0 or -errno). */
	void (*on_connect)(struct net_conn *c, int err);
	/* The connection is gone (peer closed, error, or net_close). Last call. */
	void (*on_close)(struct net_conn *c, int err);
	/* c->deadline passed. */
	void (*on_timer)(struct net_conn *c);
	/* Output queue drained below its limit after being full (optional). */
	void (*on_drain)(struct net_conn *c);
	/* At close, each queued slice that was not sent (optional): the owner
	 * may route it elsewhere. The call takes over the slice's reference. */
	void (*on_unsent)(struct net_conn *c, struct net_buf *b, const char *p, size_t n);
	/* TLS handshake finished: err = 0, or a negative tls_err (the
	 * connection is closed after this returns). */
	void (*on_tls)(struct net_conn *c, int err);
	/* A PROXY protocol header was read: c->peer is now the client it
	 * names (or still the balancer, for LOCAL/UNKNOWN). Before any other
	 * byte, also before a direct TLS handshake (optional). */
	void (*on_peer)(struct net_conn *c);
};

struct net_conn {
	uint64_t id; /* for logs: unique per process */
	struct net_ref ref;
	struct net_worker *w;
	int fd;
	uint32_t flags;
	int close_err;
	uint16_t inflight;    /* ring operations not completed yet */
	uint16_t listen_kind; /* which listener accepted it (cfg_listen_kind) */
	const struct net_conn_ops *ops;
	void *user;
	uint64_t deadline;        /* ms, monotonic; 0 = none; set it with net_conn_set_deadline */
	uint64_t tw_at;           /* ms: filed in the worker's timer wheel for then; 0 = not filed */
	struct net_conn *tw_next, *tw_prev;
	uint32_t tw_slot;
	uint64_t last_rx;         /* ms of the last received bytes */
	uint64_t born;            /* ms: accepted or connected (its age, for fedhubctl links) */
	struct sockaddr_in6 peer; /* IPv4 or IPv6: both fit, and a conn stays small */
	/* input: bytes of an incomplete unit kept between receives */
	struct net_buf *pend;
	/* output: a ring of slices */
	struct net_slice *oq;
	uint32_t oq_head, oq_len, oq_cap;
	uint32_t oq_sent_in_head; /* bytes of oq[head] already sent */
	uint32_t oq_inflight_n;   /* slices covered by the send in flight */
	uint32_t oq_lat_n;        /* slices at the head already counted in the latency histogram */
	uint64_t oq_bytes;
	/* TLS (net/tls.h), once net_start_tls() was called */
	struct tls_conn *tls;
	uint32_t raw_slices;          /* queued before TLS started: sent in the clear */
	uint32_t tls_inflight;        /* ciphertext bytes in the send in flight */
	struct net_buf *plain;        /* decrypted bytes being handed to on_data */
	struct net_conn *dirty_next;  /* on the worker's send list */
	struct net_conn *nobufs_next; /* waiting for receive buffers */
	struct net_conn *all_next, *all_prev;
	/* Reads paused (net_conn_pause_recv): bytes that arrived or were not
	 * offered to on_data yet, kept in order for the resume. held: as they
	 * came off the socket (ciphertext on a TLS link); held_plain: plaintext
	 * already decrypted, which goes first. */
	struct net_buf *held, *held_plain;
	struct net_conn *nobufs_prev; /* doubly linked: a close unlinks in O(1) */
};

enum net_conn_flag {
	NET_F_OPEN = 1 << 0,
	NET_F_CONNECTING = 1 << 1,
	NET_F_RECV_ARMED = 1 << 2,
	NET_F_SENDING = 1 << 3,
	NET_F_DIRTY = 1 << 4,
	NET_F_CLOSING = 1 << 5,      /* close once the output queue is sent */
	NET_F_CLOSED = 1 << 6,       /* fd closed, waiting for inflight ops */
	NET_F_RECV_STOPPED = 1 << 7, /* no more reads wanted */
	NET_F_NOBUFS = 1 << 8,       /* recv stopped for lack of buffers */
	NET_F_CLOSE_NOTIFIED = 1 << 9,
	NET_F_FREED = 1 << 10,  /* slot back on the free list */
	NET_F_TLS_HS = 1 << 11, /* TLS handshake in progress */
	NET_F_PROXY = 1 << 12,  /* a PROXY protocol header comes first */

	NET_F_RECV_PAUSED = 1 << 13, /* net_conn_pause_recv: nothing to on_data */
	NET_F_RECV_CANCEL = 1 << 14, /* the armed receive is being cancelled */
	NET_F_TLS_BYE = 1 << 15,     /* send close_notify after the queue */
	NET_F_TLS_BYE_SENT = 1 << 16,
	NET_F_RESUME_Q = 1 << 17, /* on the worker's list of resumed reads */
	NET_F_OQ_REFUSED = 1 << 18, /* a send was refused for room: on_drain is owed */
};

/* Fixed-size messages between threads. */
#define NET_MSG_PAYLOAD 48
enum net_msg_type {
	NET_MSG_RELEASE = 1, /* buf: a buffer of the destination, one ref less */
	NET_MSG_WAKE,
	NET_MSG_USER = 16, /* router-defined from here */
};
struct net_msg {
	uint16_t type;
	uint16_t src;
	uint32_t u32;
	struct net_buf *buf;
	union {
		unsigned char bytes[NET_MSG_PAYLOAD];
	} u;
};

struct net_config {
	int workers;          /* 0 = one per core */
	uint32_t buf_size;    /* provided buffer size */
	uint32_t buf_count;   /* provided buffers per worker (power of two) */
	uint32_t ring_msgs;   /* messages per SPSC ring (power of two) */
	uint32_t max_pending; /* max bytes kept for one incomplete unit */
	void (*on_worker_start)(struct net_worker *w);
	void (*on_worker_stop)(struct net_worker *w);
	/* a message of type >= NET_MSG_USER arrived on worker w */
	void (*on_msg)(struct net_worker *w, struct net_msg *m);
	/* a listener accepted c (set c->ops/user) */
	void (*on_accept)(struct net_conn *c, int listen_kind);
	/* called every tick (~100 ms) on each worker */
	void (*on_tick)(struct net_worker *w, uint64_t now_ms);
	/* called once every loop turn, after the messages (optional; keep it cheap) */
	void (*on_turn)(struct net_worker *w);
	/* the control thread got a message (type >= NET_MSG_USER) */
	void (*on_ctrl_msg)(struct net_msg *m);
};

int net_init(const struct net_config *cfg);
int net_listen(int kind, const struct sockaddr *sa, socklen_t len);
int net_start(void); /* start the workers */
void net_stop(void); /* ask every worker to finish, then join */
int net_nworkers(void);
struct net_worker *net_worker_at(int i);
int net_worker_id(const struct net_worker *w);
void *net_worker_user(struct net_worker *w);
void net_worker_set_user(struct net_worker *w, void *u);
uint64_t net_now_ms(void); /* cached per loop turn on workers */
/* Set c's deadline (ms, monotonic; 0 clears it): ops->on_timer runs at the
 * first tick after it. Every write goes through here: the worker's timer
 * wheel (net/timer.c) visits only connections that are due. */
void net_conn_set_deadline(struct net_conn *c, uint64_t at);
bool net_stopping(void);
/* Every worker closes its listeners on its next loop turn (a drain): new
 * connections are refused, open ones carry on. Not undone. */
void net_stop_accepting(void);
/* How long net_stop() lets workers flush their queues (default 1000 ms). */
void net_set_stop_flush_ms(uint32_t ms);

/* Connections (worker thread only, on the connection's own worker). */
struct net_conn *net_connect(struct net_worker *w, const struct sockaddr *sa, socklen_t len,
			     const struct net_conn_ops *ops, void *user);
/* Queue bytes. net_send_slice() adds a reference to b for the queue: only
 * the worker that owns b may call it. net_send_slice_take() moves a
 * reference the caller holds into the queue (any worker: this is how a
 * reference that came in a message is used); on failure the caller still
 * holds it. Both return 0, or -ENOBUFS when the connection's queue limit
 * would be exceeded, -EPIPE when it is closing. A queue that keeps growing
 * while receive buffers run short gets copies instead of slices. */
int net_send_slice(struct net_conn *c, struct net_buf *b, const char *p, size_t n);
int net_send_slice_take(struct net_conn *c, struct net_buf *b, const char *p, size_t n);
/* Copy small generated bytes (stream headers, errors, answers) and queue them. */
int net_send_copy(struct net_conn *c, const char *p, size_t n);
void net_set_queue_limit(uint64_t bytes);
/* flush: send the queue first; on a TLS link whose handshake is done, then
 * a close_notify alert (RFC 8446 §6.1), then close. */
void net_close(struct net_conn *c, bool flush);
struct net_conn *net_conn_get(struct net_worker *w, struct net_ref r); /* NULL if stale */
void net_worker_foreach(struct net_worker *w, void (*fn)(struct net_conn *c, void *arg), void *arg);
void net_conn_stop_reading(struct net_conn *c);
/* Flow control. Pausing stops handing bytes to on_data at once (also from
 * inside on_data: what it did not consume is kept) and cancels the
 * connection's receive, so the kernel's buffer fills and TCP slows the
 * sender. Bytes that were already on their way are kept, in order, and
 * handed to on_data first after net_conn_resume_recv(), which does that from
 * the worker loop (never from inside the caller) and then receives again.
 * On a TLS link the kept bytes are ciphertext (plus any plaintext already
 * decrypted but not offered). Both are idempotent and do nothing on a
 * closed or closing connection. */
void net_conn_pause_recv(struct net_conn *c);
void net_conn_resume_recv(struct net_conn *c);
/* The first bytes are a PROXY protocol v1/v2 header (net/proxy.h): strip it
 * and take the client's address from it. Call from on_accept. */
void net_conn_expect_proxy(struct net_conn *c);
/* Put TLS under the connection: everything queued so far still goes out in
 * the clear (e.g. <proceed/>), everything after is encrypted, and received
 * bytes from now on are TLS records. A client connection starts its
 * handshake at once. The connection owns t from here on. */
struct tls_conn;
void net_start_tls(struct net_conn *c, struct tls_conn *t, bool client);
/* Called from on_data, net_start_tls() also drops every byte that arrived
 * in the clear after the element being handled, and the pending unit
 * (RFC 6120 §5.4.3.3): the next bytes the owner sees are the first ones TLS
 * decrypted. This counts the bytes so dropped, since start. */
uint64_t net_starttls_dropped(void);
/* Connections refused because their PROXY header came from a source not in
 * the trusted list (net/proxy.h: proxy_set_trusted), since start. */
uint64_t net_proxy_refused(void);

/* Buffers. */
static inline void net_buf_ref(struct net_buf *b)
{
	if (b)
		b->ref++;
}
void net_buf_unref(struct net_worker *self, struct net_buf *b);
struct net_buf *net_buf_new(struct net_worker *w, size_t cap);
/* A slice (*p, n) of *b that will wait long (a queue for a link coming up,
 * a stalled destination): if *b is a receive buffer, move the slice into a
 * buffer of its own so the ring gets its buffer back; *b's reference passes
 * to the copy. 0, or -ENOMEM with *b and *p unchanged. */
int net_buf_own(struct net_worker *w, struct net_buf **b, const char **p, size_t n);
/* b is a receive buffer of a worker whose provided buffers run short (more
 * than half are held): a slice that will be held a while should be moved
 * out of it (net_buf_own), as send queues do past a few slices. */
bool net_buf_scarce(const struct net_buf *b);

/* Messages: from worker `self` (NULL on the control thread) to worker dst
 * (or NET_CTRL). Returns 0 or -ENOBUFS when that ring is full. */
int net_msg_send(struct net_worker *self, int dst, const struct net_msg *m);

/* The control thread: runs fn(arg) in a loop with its own wake-up eventfd;
 * net_ctrl_wait() blocks until a message arrives or timeout_ms passes, also
 * watching the given fds (for c-ares). */
/* Router-added latency, per stanza forwarded from a received buffer: from
 * the loop turn that handed its bytes to on_data to the turn that handed them
 * to the kernel (sendmsg, or tls_write on a TLS link). Each worker keeps its
 * own histogram; net_lat_get() sums them (any thread; counts read relaxed).
 * Bucket i holds values below net_lat_bound_us(i); the last one, above
 * every bound, is counted only in the total. */
#define NET_LAT_BUCKETS 89
uint64_t net_lat_bound_us(int i);
void net_lat_get(uint64_t counts[NET_LAT_BUCKETS], uint64_t *sum_us, uint64_t *n);

int net_ctrl_eventfd(void);
int net_ctrl_drain(void); /* deliver pending messages to on_ctrl_msg */

#endif
