/*
 * bench/engine-int.h — what the files of the load generator's engine share:
 * bench/engine.c (the io_uring loop, connections, sockets, the plan),
 * bench/stream.c (XMPP streams, TLS, traffic and accounting) and
 * bench/run.c (a run's phases, sampling, bench_run). Not an API: the rest
 * of the bench uses bench/bench.h.
 */
#ifndef FEDHUB_BENCH_ENGINE_INT_H
#define FEDHUB_BENCH_ENGINE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <netinet/in.h>
#include <liburing.h>
#include "bench/bench.h"
#include "net/tls.h"

#define NS_TLS  "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
/* ciphertext read per recv: with the plaintext drained after each feed, the
 * engine's input (bounded at 64 KiB) never holds more than a record plus this */
#define BE_CIPHER_RECV 16384

/* ---- the engine's state ----------------------------------------------------- */

enum bc_role { BC_S2S_OUT, BC_S2S_IN, BC_COMP, BC_RELAY_IN };
enum bc_state { BC_IDLE, BC_CONNECTING, BC_STREAM, BC_AUTH, BC_READY, BC_CLOSED };
enum { OP_CONNECT = 1, OP_RECV, OP_SEND, OP_ACCEPT };

struct bc_obuf {
	char *p;
	size_t len, cap;
};

struct bconn {
	int fd, idx;
	enum bc_role role;
	enum bc_state state;
	bool recv_busy, send_busy, connect_busy, dirty, closing, counted_setup;
	char *rbuf;
	size_t rlen, rcap;
	int depth;          /* 0 before the stream header, 1 after */
	bool want_features; /* S2S_OUT: peer said version='1.0' */
	struct bc_obuf ob[2];
	int acc; /* ob[acc] accumulates; ob[acc^1] is in flight */
	size_t soff;
	char stream_id[128];
	int dom_first, ndom, ndom_valid; /* S2S_OUT: piggybacked bench domains */
	/* S2S_OUT of s2s-backend: a stream of the backend (from its domain) to
	 * one remote bench domain, remote_dom, through the target */
	bool backend;
	int remote_dom;
	int comp_dom;                    /* COMP: index into comp_domains */
	int flow_first, nflows, next_flow;
	/* TLS (--tls) */
	struct tls_conn *tls;
	bool tls_done;   /* handshake finished */
	bool switch_tls; /* stop parsing: what follows is TLS */
	bool starttls_sent, sasl_sent, sasl_ok;
	bool send_cipher;   /* the send in flight is from cob */
	char *cbuf;         /* ciphertext receive buffer */
	struct bc_obuf cob; /* ciphertext being sent */
	char peer[256];     /* S2S_IN: the stream's from */
	uint32_t inflight;
	uint64_t next_ns; /* open loop: when the next stanza is due */
	uint64_t base_ns; /* open loop: when the first one was due */
	double interval_ns;
	uint64_t due_count;
	/* S2S_IN: a dialback verification stream (XEP-0220 §2.1.2) is one the
	 * target opens, asks <db:verify/> on and closes: its end is normal */
	bool verified, carried, counted_verify;
	/* COMP: reading held back until hold_ns (--comp-read-rate,
	 * --comp-pause, --stall-ms); read_vt is the read-rate clock */
	bool held;
	uint64_t hold_ns, read_vt;
	uint64_t nread; /* stanzas this component has taken in */
	bool recv_full; /* the last recv filled the buffer: grow it */
};

struct bflow {
	int conn;             /* sending connection */
	int from_dom, to_dom; /* bench domain index / component domain index */
	int user;
	bool from_comp;              /* component -> s2s */
	bool from_backend;           /* s2s-backend: backend -> remote (from_dom is the remote) */
	uint32_t next_seq, max_seen; /* max_seen = highest seq received + 1 */
	uint64_t sent, delivered, bounced;
	bool held; /* --fault reorder: a stanza kept back */
	char held_buf[2048];
	size_t held_len;
};

struct eng {
	const struct bench_opts *o;
	struct bench_result *r;
	struct io_uring ring;
	struct bconn *c;
	int nc, capc;
	struct bflow *f;
	int nf;
	int lfd_db, lfd_relay;
	int *dirty;
	int ndirty, capdirty;
	int setups_pending;
	int next_link_to_start, next_comp_to_start;
	uint64_t now;
	uint64_t t_measure0, t_measure1;
	bool generating, measuring;
	struct bench_hist sec_hist;
	uint64_t sec_delivered;
	uint64_t rng;
	bool fault_done;
	char body[8192];
	int body_len;
	struct tls_ctx *tls;
	int nheld;                   /* components whose reading is held back */
	uint64_t last_acct;          /* when the last stanza was accounted */
	uint64_t stall_t0, stall_t1; /* stall: the first component does not read */
	uint64_t first_bounce, last_bounce; /* stall: when bounces came back (0: none yet) */
};

/* ---- engine.c ----------------------------------------------------------------- */

uint64_t be_now(void);
void be_error(struct eng *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void be_domain(const struct eng *e, int i, char *out, size_t cap);
void be_mark_dirty(struct eng *e, struct bconn *c);
void be_write(struct eng *e, struct bconn *c, const char *p, size_t n);
void be_writef(struct eng *e, struct bconn *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int be_tls_more_certs(struct eng *e);
void be_close(struct eng *e, struct bconn *c, const char *why);
int be_listen(struct eng *e, const struct sockaddr_in *sa);
void be_arm_accept(struct eng *e, int lfd, int tag);
void be_plan(struct eng *e);
void be_start_setups(struct eng *e);
uint64_t be_inflight(struct eng *e);
int be_ring_turn(struct eng *e, uint64_t wait_ns);
void be_progress(struct eng *e, double t, const char *phase);

/* ---- traffic.c ---------------------------------------------------------------- */

uint64_t be_rand(struct eng *e);
void be_send_one(struct eng *e, struct bconn *c, uint64_t ts);
void be_generate(struct eng *e);
/* A stanza reached its final receiver: el (n bytes, start tag tl bytes). */
void be_account(struct eng *e, const char *el, size_t n, size_t tl);

/* ---- stream.c ----------------------------------------------------------------- */

extern const char *be_stream_ns_db;
void be_setup_done(struct eng *e, struct bconn *c);
void be_s2s_out_header(struct eng *e, struct bconn *c);
bool be_close_is_error(struct eng *e, struct bconn *c);
void be_process(struct eng *e, struct bconn *c);
void be_tls_in(struct eng *e, struct bconn *c, size_t n);

#endif
