/*
 * bench/engine.c — the load generator's io_uring loop.
 *
 * One thread, one ring, every socket non-blocking and driven by completions:
 * connect, recv (one outstanding per connection into its own buffer), send
 * (one outstanding per connection, double-buffered so that stanzas produced
 * while a send is in flight go out together in the next one), accept on the
 * bench's own listeners. A single pinned loop keeps the bench cheap and its
 * timing simple; it is far from being the bottleneck for the targets measured
 * so far (see BENCHMARKS.md), and the target runs on the other CPUs.
 *
 * The protocol side (the roles of a connection, TLS, the accounting of each
 * stanza) is in bench/stream.c, a run's phases and bench_run() in
 * bench/run.c; bench/engine-int.h is what the three share.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <liburing.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/sha.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include "bench/engine-int.h"

uint64_t be_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void be_error(struct eng *e, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (!e->r->error[0])
		snprintf(e->r->error, sizeof e->r->error, "%s", msg);
	fprintf(stderr, "fedhub-bench: %s\n", msg);
}

void be_domain(const struct eng *e, int i, char *out, size_t cap)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(out, cap, e->o->domain_fmt, i + 1);
#pragma GCC diagnostic pop
}

/* ---- ring helpers ---------------------------------------------------------- */

static struct io_uring_sqe *be_sqe(struct eng *e)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&e->ring);
	if (!s) {
		io_uring_submit(&e->ring);
		s = io_uring_get_sqe(&e->ring);
	}
	return s;
}

static uint64_t be_ud(int idx, int op)
{
	return ((uint64_t)(uint32_t)idx << 8) | (uint64_t)op;
}

static void be_arm_recv(struct eng *e, struct bconn *c)
{
	if (c->recv_busy || c->closing)
		return;
	if (c->role == BC_COMP && c->hold_ns > e->now) {
		if (!c->held) { /* be_resume_reads arms it when the time comes */
			c->held = true;
			e->nheld++;
		}
		return;
	}
	struct io_uring_sqe *s;
	if (c->tls) {
		if (!c->cbuf)
			c->cbuf = malloc(BE_CIPHER_RECV);
		s = be_sqe(e);
		io_uring_prep_recv(s, c->fd, c->cbuf, BE_CIPHER_RECV, 0);
		io_uring_sqe_set_data64(s, be_ud(c->idx, OP_RECV));
		c->recv_busy = true;
		return;
	}
	if (c->rcap - c->rlen < 4096 || (c->recv_full && c->rcap < 262144)) {
		c->rcap *= 2;
		c->rbuf = realloc(c->rbuf, c->rcap);
	}
	c->recv_full = false;
	size_t want = c->rcap - c->rlen;
	/* a slow reader takes about 10 ms of its rate per recv, so that what the
	 * kernel holds for it, not the bench's buffer, is what fills up */
	if (c->role == BC_COMP && e->o->comp_read_rate > 0) {
		size_t k = (size_t)(e->o->comp_read_rate / 100 * e->o->size);
		if (k < 4096)
			k = 4096;
		if (want > k)
			want = k;
	}
	s = be_sqe(e);
	io_uring_prep_recv(s, c->fd, c->rbuf + c->rlen, want, 0);
	io_uring_sqe_set_data64(s, be_ud(c->idx, OP_RECV));
	c->recv_busy = true;
}

static void be_obuf_put(struct bc_obuf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 4096;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* The connection has output for the next flush (be_flush_dirty). */
void be_mark_dirty(struct eng *e, struct bconn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		if (e->ndirty == e->capdirty) {
			e->capdirty = e->capdirty ? e->capdirty * 2 : 256;
			e->dirty = realloc(e->dirty, sizeof(int) * (size_t)e->capdirty);
		}
		e->dirty[e->ndirty++] = c->idx;
	}
}

void be_write(struct eng *e, struct bconn *c, const char *p, size_t n)
{
	be_obuf_put(&c->ob[c->acc], p, n);
	be_mark_dirty(e, c);
}

void be_writef(struct eng *e, struct bconn *c, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > 0)
		be_write(e, c, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* TLS output: the plaintext written since the last flush becomes records
 * (one tls_write for all of it), then every pending ciphertext byte, the
 * handshake's included, is copied to cob and sent. */
static void be_flush_tls(struct eng *e, struct bconn *c)
{
	struct bc_obuf *pb = &c->ob[c->acc];
	if (pb->len && c->tls_done) {
		int rc = tls_write(c->tls, pb->p, pb->len);
		if (rc == 0)
			pb->len = 0;
		else if (rc != TLS_ERR_AGAIN) {
			be_close(e, c, tls_error(c->tls));
			return;
		}
	}
	const void *p;
	size_t n = tls_pending_out(c->tls, &p);
	if (n == 0)
		return;
	c->cob.len = 0;
	be_obuf_put(&c->cob, p, n);
	tls_consume_out(c->tls, n);
	c->soff = 0;
	c->send_cipher = true;
	struct io_uring_sqe *s = be_sqe(e);
	io_uring_prep_send(s, c->fd, c->cob.p, c->cob.len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(s, be_ud(c->idx, OP_SEND));
	c->send_busy = true;
}

static void be_flush(struct eng *e, struct bconn *c)
{
	if (c->send_busy || c->closing)
		return;
	/* bytes written before the handshake finished are the STARTTLS
	 * exchange itself (<proceed/>): they go out in the clear, first */
	if (c->tls && (c->tls_done || c->ob[c->acc].len == 0)) {
		be_flush_tls(e, c);
		return;
	}
	if (c->ob[c->acc].len == 0)
		return;
	struct bc_obuf *b = &c->ob[c->acc];
	c->acc ^= 1;
	c->soff = 0;
	struct io_uring_sqe *s = be_sqe(e);
	io_uring_prep_send(s, c->fd, b->p, b->len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(s, be_ud(c->idx, OP_SEND));
	c->send_busy = true;
}

static void be_flush_dirty(struct eng *e)
{
	for (int i = 0; i < e->ndirty; i++) {
		struct bconn *c = &e->c[e->dirty[i]];
		c->dirty = false;
		be_flush(e, c);
	}
	e->ndirty = 0;
}

/* bench/peers/mkcerts.sh splits the bench's domains over bench.pem and
 * bench-2.pem, bench-3.pem, ... beside it: load those that exist. */
int be_tls_more_certs(struct eng *e)
{
	const char *cert = e->o->tls_cert;
	size_t n = strlen(cert), sfx = strlen("bench.pem");
	if (n < sfx || strcmp(cert + n - sfx, "bench.pem"))
		return 0;
	for (int g = 2;; g++) {
		char c[600], k[600];
		snprintf(c, sizeof c, "%.*sbench-%d.pem", (int)(n - sfx), cert, g);
		snprintf(k, sizeof k, "%.*sbench-%d.key", (int)(n - sfx), cert, g);
		if (access(c, R_OK) != 0)
			return 0;
		int r = tls_ctx_add_cert(e->tls, c, k);
		if (r < 1) {
			be_error(e, "TLS: cannot load certificate %s / key %s: %s", c, k, tls_strerror(r));
			return -1;
		}
	}
}

static struct bconn *be_new_conn(struct eng *e, enum bc_role role, int fd)
{
	if (e->nc == e->capc) {
		e->capc = e->capc ? e->capc * 2 : 64;
		e->c = realloc(e->c, sizeof(struct bconn) * (size_t)e->capc);
	}
	struct bconn *c = &e->c[e->nc];
	memset(c, 0, sizeof *c);
	c->idx = e->nc++;
	c->fd = fd;
	c->role = role;
	/* A component connection receives the traffic of every link: one recv
	 * per loop turn must take many stanzas. The others stay small, as
	 * idle-links holds thousands of them, and remote-up thousands of the
	 * target's links to the bench; a buffer that a recv fills grows. */
	c->rcap = role == BC_COMP ? 262144 : role == BC_S2S_IN ? 4096 : 16384;
	c->rbuf = malloc(c->rcap);
	c->flow_first = -1;
	return c;
}

void be_close(struct eng *e, struct bconn *c, const char *why)
{
	if (c->state == BC_CLOSED)
		return;
	if (why)
		be_error(e, "connection %d (%s) closed: %s", c->idx,
			 c->role == BC_S2S_OUT  ? "s2s out"
			 : c->role == BC_S2S_IN ? "s2s in"
			 : c->role == BC_COMP   ? "component"
						: "relay",
			 why);
	if (!c->counted_setup && (c->role == BC_S2S_OUT || c->role == BC_COMP) && c->state != BC_IDLE) {
		c->counted_setup = true;
		e->setups_pending--;
	}
	c->state = BC_CLOSED;
	c->closing = true;
	if (c->fd >= 0) {
		shutdown(c->fd, SHUT_RDWR);
		if (!c->recv_busy && !c->send_busy && !c->connect_busy) {
			close(c->fd);
			c->fd = -1;
		}
	}
}

/* Close the fd once no operation refers to it any more. */
static void be_maybe_release(struct bconn *c)
{
	if (c->closing && c->fd >= 0 && !c->recv_busy && !c->send_busy && !c->connect_busy) {
		close(c->fd);
		c->fd = -1;
	}
}

/* ---- connections ------------------------------------------------------------- */

static int be_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	return fd;
}

static void be_start_connect(struct eng *e, struct bconn *c)
{
	const struct sockaddr_in *sa = c->role == BC_COMP ? &e->o->target_comp : &e->o->target_s2s;
	c->fd = be_socket();
	if (c->fd < 0) {
		be_error(e, "socket: %s", strerror(errno));
		c->state = BC_CLOSED;
		return;
	}
	c->state = BC_CONNECTING;
	e->setups_pending++;
	struct io_uring_sqe *s = be_sqe(e);
	io_uring_prep_connect(s, c->fd, (const struct sockaddr *)sa, sizeof *sa);
	io_uring_sqe_set_data64(s, be_ud(c->idx, OP_CONNECT));
	c->connect_busy = true;
}

static void be_on_connected(struct eng *e, struct bconn *c)
{
	if (c->role == BC_COMP) {
		be_writef(e, c,
			  "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
			  "xmlns:stream='http://etherx.jabber.org/streams' to='%s'>",
			  e->o->comp_domains[c->comp_dom]);
	} else if (e->o->relay) {
		char d[256];
		be_domain(e, c->dom_first, d, sizeof d);
		be_writef(e, c, "<?xml version='1.0'?><stream:stream %s from='%s' to='%s' version='1.0'>",
			  be_stream_ns_db, c->backend ? e->o->backend_domain : d,
			  c->backend ? d : e->o->target_domain);
		c->state = BC_READY; /* nothing answers on a plain relay */
		be_setup_done(e, c);
	} else {
		be_s2s_out_header(e, c);
	}
	be_arm_recv(e, c);
}

int be_listen(struct eng *e, const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* a previous run's ring may release its listener a moment after it exits */
	int rc;
	for (int i = 0; (rc = bind(fd, (const struct sockaddr *)sa, sizeof *sa)) < 0 && errno == EADDRINUSE && i < 30;
	     i++)
		usleep(100000);
	if (rc < 0 || listen(fd, 4096) < 0) {
		char a[64];
		inet_ntop(AF_INET, &sa->sin_addr, a, sizeof a);
		be_error(e, "listen on %s:%d: %s", a, ntohs(sa->sin_port), strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Multishot: one completion per connection without re-arming in between,
 * so that thousands of the target's links arriving at once (remote-domains)
 * are taken as fast as they come; re-armed when the kernel ends it. */
void be_arm_accept(struct eng *e, int lfd, int tag)
{
	struct io_uring_sqe *s = be_sqe(e);
	io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(s, be_ud(tag, OP_ACCEPT));
}

/* --comp-read-rate: a component that has read ahead of its rate waits
 * until its clock catches up. */
static void be_read_rate(struct eng *e, struct bconn *c, uint64_t stanzas)
{
	if (c->role != BC_COMP || e->o->comp_read_rate <= 0)
		return;
	if (c->read_vt < e->now)
		c->read_vt = e->now;
	c->read_vt += (uint64_t)((double)stanzas * 1e9 / e->o->comp_read_rate);
	if (c->read_vt > c->hold_ns)
		c->hold_ns = c->read_vt;
}

/* Components whose time to read again has come. */
static void be_resume_reads(struct eng *e)
{
	if (!e->nheld)
		return;
	for (int i = 0; i < e->nc; i++) {
		struct bconn *c = &e->c[i];
		if (c->held && c->hold_ns <= e->now) {
			c->held = false;
			e->nheld--;
			if (c->state != BC_CLOSED)
				be_arm_recv(e, c);
		}
	}
}

static void be_on_cqe(struct eng *e, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	int op = (int)(ud & 0xff), idx = (int)(uint32_t)(ud >> 8);
	int res = cqe->res;
	if (op == OP_ACCEPT) {
		bool relay = idx == 1;
		if (res >= 0) {
			int one = 1;
			setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			struct bconn *c = be_new_conn(e, relay ? BC_RELAY_IN : BC_S2S_IN, res);
			c->state = BC_IDLE;
			be_arm_recv(e, c);
		} else if (res != -ECANCELED) {
			be_error(e, "accept: %s", strerror(-res));
		}
		if (!(cqe->flags & IORING_CQE_F_MORE) && res != -ECANCELED && res != -EBADF && res != -EINVAL)
			be_arm_accept(e, relay ? e->lfd_relay : e->lfd_db, idx);
		return;
	}
	struct bconn *c = &e->c[idx];
	switch (op) {
	case OP_CONNECT:
		c->connect_busy = false;
		if (c->closing) {
			be_maybe_release(c);
			return;
		}
		if (res < 0) {
			char a[64];
			const struct sockaddr_in *sa = c->role == BC_COMP ? &e->o->target_comp : &e->o->target_s2s;
			inet_ntop(AF_INET, &sa->sin_addr, a, sizeof a);
			be_error(e, "connect %s:%d: %s", a, ntohs(sa->sin_port), strerror(-res));
			be_close(e, c, NULL);
			return;
		}
		be_on_connected(e, c);
		return;
	case OP_RECV:
		c->recv_busy = false;
		if (c->closing) {
			be_maybe_release(c);
			return;
		}
		if (res <= 0) {
			be_close(e, c, be_close_is_error(e, c) ? (res == 0 ? "peer closed" : strerror(-res)) : NULL);
			be_maybe_release(c);
			return;
		}
		if (c->tls) {
			be_tls_in(e, c, (size_t)res);
		} else {
			c->rlen += (size_t)res;
			c->recv_full = c->rlen == c->rcap;
			uint64_t n0 = c->nread;
			be_process(e, c);
			be_read_rate(e, c, c->nread - n0);
		}
		be_arm_recv(e, c);
		be_maybe_release(c);
		return;
	case OP_SEND: {
		c->send_busy = false;
		struct bc_obuf *b = c->send_cipher ? &c->cob : &c->ob[c->acc ^ 1];
		if (c->closing) {
			be_maybe_release(c);
			return;
		}
		if (res < 0) {
			be_close(e, c, e->generating ? strerror(-res) : NULL);
			be_maybe_release(c);
			return;
		}
		c->soff += (size_t)res;
		if (c->soff < b->len) {
			struct io_uring_sqe *s = be_sqe(e);
			io_uring_prep_send(s, c->fd, b->p + c->soff, b->len - c->soff, MSG_NOSIGNAL);
			io_uring_sqe_set_data64(s, be_ud(c->idx, OP_SEND));
			c->send_busy = true;
			return;
		}
		b->len = 0;
		c->send_cipher = false;
		be_flush(e, c);
		return;
	}
	}
}

/* ---- plan: connections and flows ----------------------------------------------- */

void be_plan(struct eng *e)
{
	const struct bench_opts *o = e->o;
	int links = o->links, doms = o->domains > 0 ? o->domains : o->links;
	int per = links ? (doms + links - 1) / links : 0; /* piggybacked domains per link */
	if (per < 1)
		per = 1;
	/* components first: they must be attached before traffic reaches the target */
	for (int k = 0; k < o->components && o->have_comp; k++) {
		struct bconn *c = be_new_conn(e, BC_COMP, -1);
		c->comp_dom = k % o->ncomp_domains;
	}
	for (int l = 0; l < links; l++) {
		struct bconn *c = be_new_conn(e, BC_S2S_OUT, -1);
		c->dom_first = (l * per) % doms;
		c->ndom = per;
		if (c->dom_first + c->ndom > doms)
			c->ndom = doms - c->dom_first;
	}
	/* s2s-backend: as many links again, the backend's, each a stream from
	 * its domain to one remote domain (a server opens one per remote) */
	for (int l = 0; l < links && o->scenario == BS_S2S_BACKEND; l++) {
		struct bconn *c = be_new_conn(e, BC_S2S_OUT, -1);
		c->backend = true;
		c->remote_dom = c->dom_first = l % doms;
		c->ndom = 1;
	}
	/* flows */
	int cap = 0;
	for (int i = 0; i < e->nc; i++) {
		struct bconn *c = &e->c[i];
		int want = 0;
		bool comp_sends = o->scenario == BS_COMPONENT_S2S || o->scenario == BS_REMOTE_UP;
		if (c->role == BC_S2S_OUT && !comp_sends)
			want = c->ndom;
		if (c->role == BC_COMP && comp_sends) {
			/* component k talks to the bench domains d with d % K == k */
			for (int d = 0; d < doms; d++)
				if (d % o->components == c->idx)
					want++;
		}
		if (!want)
			continue;
		if (e->nf + want > cap) {
			cap = (e->nf + want) * 2;
			e->f = realloc(e->f, sizeof(struct bflow) * (size_t)cap);
		}
		c->flow_first = e->nf;
		c->nflows = want;
		for (int j = 0, d = 0; j < want; j++) {
			struct bflow *f = &e->f[e->nf++];
			memset(f, 0, sizeof *f);
			f->conn = i;
			if (c->role == BC_S2S_OUT) {
				f->from_dom = c->dom_first + j;
				f->to_dom = f->from_dom % o->ncomp_domains;
				f->user = i;
				f->from_backend = c->backend;
			} else {
				while (d % o->components != c->idx)
					d++;
				f->from_comp = true;
				f->from_dom = d++;
				f->to_dom = c->comp_dom;
				f->user = c->idx;
			}
		}
	}
}

void be_start_setups(struct eng *e)
{
	for (int i = 0; i < e->nc && e->setups_pending < e->o->connect_concurrency; i++) {
		struct bconn *c = &e->c[i];
		if ((c->role == BC_S2S_OUT || c->role == BC_COMP) && c->state == BC_IDLE && c->fd < 0) {
			/* links wait until every component is attached */
			if (c->role == BC_S2S_OUT && e->r->comps_up < (e->o->have_comp ? e->o->components : 0))
				return;
			be_start_connect(e, c);
		}
	}
}

uint64_t be_inflight(struct eng *e)
{
	uint64_t n = 0;
	for (int i = 0; i < e->nf; i++)
		n += e->f[i].sent - e->f[i].delivered - e->f[i].bounced;
	return n;
}

int be_ring_turn(struct eng *e, uint64_t wait_ns)
{
	be_resume_reads(e);
	if (e->nheld && wait_ns > 1000000ull)
		wait_ns = 1000000ull;
	be_flush_dirty(e);
	struct __kernel_timespec ts = {.tv_sec = (long long)(wait_ns / 1000000000ull),
				       .tv_nsec = (long long)(wait_ns % 1000000000ull)};
	struct io_uring_cqe *cqe;
	int rc = io_uring_submit_and_wait_timeout(&e->ring, &cqe, 1, &ts, NULL);
	if (rc < 0 && rc != -ETIME && rc != -EINTR) {
		be_error(e, "io_uring: %s", strerror(-rc));
		return -1;
	}
	e->now = be_now();
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&e->ring, head, cqe)
	{
		be_on_cqe(e, cqe);
		seen++;
	}
	io_uring_cq_advance(&e->ring, seen);
	return 0;
}

void be_progress(struct eng *e, double t, const char *phase)
{
	if (e->o->quiet)
		return;
	uint64_t p99 = bench_hist_quantile(&e->sec_hist, 0.99);
	fprintf(stderr,
		"[%6.1fs] %-8s rate %9llu/s  p99 %8.3f ms  in-flight %7llu  bounced %llu  links %d/%d  comps %d\n", t,
		phase, (unsigned long long)e->sec_delivered, (double)p99 / 1e6, (unsigned long long)be_inflight(e),
		(unsigned long long)e->r->bounced, e->r->links_up, e->r->links_wanted, e->r->comps_up);
	bench_hist_reset(&e->sec_hist);
	e->sec_delivered = 0;
}
