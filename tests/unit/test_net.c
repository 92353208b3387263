/*
 * tests/unit/test_net.c — the worker runtime (net/worker.c) for real: one
 * worker with its io_uring ring, a loopback listener, and the test thread as
 * the remote end of each connection (plain sockets, and the TLS engine of
 * net/tls.c over a socket for TLS links).
 *
 * The test thread plays the control thread: it sends commands to the worker
 * as messages (net_msg_send from "control"), and the worker runs them in
 * on_msg on the connection it accepted, then acknowledges through an atomic.
 * Every wait is bounded (WAIT_MS); nothing asserts on timing.
 *
 * The group setup makes a throw-away PKI with tests/certs/mkcerts.sh (run
 * from the repository root, or set FEDHUB_SRCDIR) and removes it at the end.
 */
#include <wolfssl/options.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "net/net.h"
#include "net/tls.h"

#define WAIT_MS  10000
#define FILL_MAX (512u << 20) /* a paused receiver must stop the sender well before this */

enum cmd { CMD_PAUSE = 1, CMD_RESUME, CMD_CLOSE_FLUSH, CMD_PAUSE_CLOSE, CMD_FILL, CMD_LIMIT_DEFAULT };
enum mode { M_PLAIN, M_PAUSE_IN_DATA, M_TLS_PAUSE, M_TLS_BYE, M_TLS_REFUSE, M_TLS_SMALL_IN, M_TLS_DRAIN };
#define FILL_LIMIT (256u << 10) /* CMD_FILL: the send queue's limit while filling */
#define MSG_CMD (NET_MSG_USER + 1)

static char dir[64];
static struct tls_ctx *sctx, *cctx;
static struct tls_ctx *sctx_small; /* M_TLS_SMALL_IN: an input bound of 8,000 bytes */
static int port;

/* worker side; the test thread reads these through atomics */
static _Atomic int mode;
static struct net_conn *conn; /* worker only */
static _Atomic int accepted, closed, acked, tls_ok;
static _Atomic int worker_err; /* cmocka asserts only on the test thread */
static _Atomic uint64_t rx_total;
static _Atomic uint64_t rx_bad;       /* 1 + position of the first wrong byte */
static _Atomic uint64_t calls_paused; /* on_data calls while paused: must stay 0 */
/* set by the test thread before it connects (atomics: ThreadSanitizer does
 * not see the ordering the socket gives) */
static _Atomic bool paused_flag;  /* M_PAUSE_IN_DATA: on_data paused itself */
static _Atomic uint64_t pause_at; /* M_PAUSE_IN_DATA: pause once this many bytes came */
static _Atomic size_t bye_len;    /* M_TLS_BYE: bytes queued before the close */
static _Atomic uint64_t fill_len; /* CMD_FILL: bytes queued until the queue refused more */
static _Atomic int drains;        /* on_drain calls */

static uint8_t pat(uint64_t i)
{
	return (uint8_t)(i % 251 + i / 4093);
}

static uint64_t ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait until *v reaches want (bounded). */
static bool wait_at_least(_Atomic uint64_t *v, uint64_t want)
{
	uint64_t end = ms() + WAIT_MS;
	while (atomic_load(v) < want) {
		if (ms() > end)
			return false;
		usleep(1000);
	}
	return true;
}

static bool wait_int(_Atomic int *v, int want)
{
	uint64_t end = ms() + WAIT_MS;
	while (atomic_load(v) != want) {
		if (ms() > end)
			return false;
		usleep(1000);
	}
	return true;
}

/* ---- the worker's connection ---- */

static size_t t_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	(void)b;
	if (c->flags & NET_F_RECV_PAUSED)
		atomic_fetch_add(&calls_paused, 1);
	uint64_t at = atomic_load(&rx_total);
	size_t take = n;
	if (atomic_load(&mode) == M_PAUSE_IN_DATA && !atomic_load(&paused_flag) && at + n > atomic_load(&pause_at)) {
		/* pause in the middle of a buffer, leaving part of it unconsumed */
		take = n / 2;
		atomic_store(&paused_flag, true);
		net_conn_pause_recv(c);
		net_conn_pause_recv(c); /* idempotent */
		atomic_store(&acked, CMD_PAUSE);
	}
	for (size_t i = 0; i < take; i++)
		if ((uint8_t)p[i] != pat(at + i) && !atomic_load(&rx_bad))
			atomic_store(&rx_bad, at + i + 1);
	atomic_store(&rx_total, at + take);
	return take;
}

static void t_close(struct net_conn *c, int err)
{
	(void)err;
	if (c == conn)
		conn = NULL;
	atomic_store(&closed, 1);
}

static void t_tls(struct net_conn *c, int err)
{
	if (err) {
		atomic_store(&tls_ok, -1);
		return;
	}
	atomic_store(&tls_ok, 1);
	if (atomic_load(&mode) == M_TLS_BYE) {
		/* queued data, then a flushing close: the data, then close_notify */
		char chunk[4096];
		size_t len = atomic_load(&bye_len);
		for (size_t off = 0; off < len; off += sizeof(chunk)) {
			size_t k = len - off < sizeof(chunk) ? len - off : sizeof(chunk);
			for (size_t i = 0; i < k; i++)
				chunk[i] = (char)pat(off + i);
			if (net_send_copy(c, chunk, k) != 0)
				atomic_store(&worker_err, 1);
		}
		net_close(c, true);
	}
}

static void t_drain(struct net_conn *c)
{
	(void)c;
	atomic_fetch_add(&drains, 1);
}

static const struct net_conn_ops t_ops = {
	.on_data = t_data, .on_close = t_close, .on_tls = t_tls, .on_drain = t_drain};

/* CMD_FILL: queue the pattern until the send queue refuses more. */
static void fill_queue(struct net_conn *c)
{
	static char chunk[16384];
	uint64_t pos = 0;
	net_set_queue_limit(FILL_LIMIT);
	for (;;) {
		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = (char)pat(pos + i);
		int rc = net_send_copy(c, chunk, sizeof(chunk));
		if (rc == -ENOBUFS)
			break;
		if (rc < 0 || pos > 4 * FILL_LIMIT) {
			atomic_store(&worker_err, 1);
			break;
		}
		pos += sizeof(chunk);
	}
	atomic_store(&fill_len, pos);
}

static size_t t_out_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	(void)c, (void)b, (void)p;
	return n;
}

static void t_out_close(struct net_conn *c, int err)
{
	(void)c, (void)err;
}

static void t_out_connect(struct net_conn *c, int err)
{
	(void)c;
	if (err)
		atomic_store(&worker_err, 1);
}

static const struct net_conn_ops t_out_ops = {
	.on_data = t_out_data, .on_close = t_out_close, .on_connect = t_out_connect};

/* M_TLS_REFUSE: TLS set up on the accepted connection (which puts it on the
 * send list), then refused at once, as the accept path refuses a PROXY
 * header from an untrusted source; in the same turn a new connection takes
 * the freed slot and starts a TLS handshake toward our own listener. */
static void refuse_then_reuse(struct net_conn *c)
{
	struct net_worker *w = c->w;
	struct tls_conn *t = tls_conn_new(sctx, true, NULL, NULL);
	if (!t) {
		atomic_store(&worker_err, 1);
		return;
	}
	net_start_tls(c, t, false);
	net_close(c, false);
	conn = NULL;
	atomic_store(&mode, M_PLAIN); /* the next accept is the connection below */
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct net_conn *o = net_connect(w, (struct sockaddr *)&a, sizeof(a), &t_out_ops, NULL);
	struct tls_conn *ct = o ? tls_conn_new(cctx, false, "a.example", NULL) : NULL;
	if (!ct) {
		atomic_store(&worker_err, 1);
		return;
	}
	net_start_tls(o, ct, true); /* on the send list too */
}

static void t_accept(struct net_conn *c, int kind)
{
	(void)kind;
	c->ops = &t_ops;
	conn = c;
	int m = atomic_load(&mode);
	if (m == M_TLS_REFUSE) {
		refuse_then_reuse(c);
		return;
	}
	if (m == M_TLS_PAUSE || m == M_TLS_BYE || m == M_TLS_SMALL_IN || m == M_TLS_DRAIN) {
		struct tls_conn *t = tls_conn_new(m == M_TLS_SMALL_IN ? sctx_small : sctx, true, NULL, NULL);
		if (!t) {
			atomic_store(&worker_err, 1);
			net_close(c, false);
			return;
		}
		net_start_tls(c, t, false);
	}
	atomic_store(&accepted, 1);
}

static void t_msg(struct net_worker *w, struct net_msg *m)
{
	(void)w;
	if (m->type != MSG_CMD)
		return;
	struct net_conn *c = conn;
	if (c) {
		switch (m->u32) {
		case CMD_PAUSE:
			net_conn_pause_recv(c);
			net_conn_pause_recv(c);
			break;
		case CMD_RESUME:
			net_conn_resume_recv(c);
			net_conn_resume_recv(c); /* idempotent */
			break;
		case CMD_CLOSE_FLUSH:
			net_close(c, true);
			break;
		case CMD_PAUSE_CLOSE:
			net_conn_pause_recv(c);
			net_close(c, false);
			/* closed, not freed yet (its receive is being cancelled) */
			net_conn_resume_recv(c);
			net_conn_pause_recv(c);
			net_conn_resume_recv(c);
			break;
		case CMD_FILL:
			fill_queue(c);
			break;
		}
	}
	if (m->u32 == CMD_LIMIT_DEFAULT)
		net_set_queue_limit(4u << 20);
	atomic_store(&acked, (int)m->u32);
}

static void cmd(int what)
{
	atomic_store(&acked, 0);
	struct net_msg m = {.type = MSG_CMD, .u32 = (uint32_t)what};
	assert_int_equal(net_msg_send(NULL, 0, &m), 0);
	assert_true(wait_int(&acked, what));
}

/* ---- the remote end ---- */

static int dial(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct timeval tv = {WAIT_MS / 1000, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	assert_true(wait_int(&accepted, 1));
	return fd;
}

static void reset(int m)
{
	atomic_store(&mode, m);
	atomic_store(&accepted, 0);
	atomic_store(&closed, 0);
	atomic_store(&tls_ok, 0);
	atomic_store(&rx_total, 0);
	atomic_store(&rx_bad, 0);
	atomic_store(&calls_paused, 0);
	atomic_store(&worker_err, 0);
	atomic_store(&paused_flag, false);
	atomic_store(&drains, 0);
}

/* Bytes of the pattern from position *pos, written whole (blocking). */
static void send_pat(int fd, uint64_t *pos, size_t n)
{
	static char buf[65536];
	while (n) {
		size_t k = n < sizeof(buf) ? n : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = (char)pat(*pos + i);
		ssize_t w = send(fd, buf, k, MSG_NOSIGNAL);
		assert_true(w > 0);
		*pos += (uint64_t)w;
		n -= (size_t)w;
	}
}

/* Without blocking, until the kernel takes no more: true when it said EAGAIN. */
static bool fill(int fd, uint64_t *pos)
{
	static char buf[65536];
	while (*pos < FILL_MAX) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (char)pat(*pos + i);
		ssize_t w = send(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* the window may still open a little (autotuning): settle, retry once */
			usleep(50000);
			w = send(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return true;
		}
		if (w <= 0)
			return false;
		*pos += (uint64_t)w;
	}
	return false;
}

/* Every byte sent up to pos reached on_data, in order, and none while
 * paused. */
static void expect_all_received(uint64_t pos)
{
	assert_true(wait_at_least(&rx_total, pos));
	assert_int_equal(atomic_load(&rx_total), pos);
	assert_int_equal(atomic_load(&rx_bad), 0);
	assert_int_equal(atomic_load(&calls_paused), 0);
}

/* The hub side closes after flushing; then the client's end. */
static void close_flushed(int fd)
{
	cmd(CMD_CLOSE_FLUSH);
	assert_true(wait_int(&closed, 1));
	close(fd);
}

/* ---- tests: plain TCP ---- */

static void test_pause_fills_sender_resume_delivers_in_order(void **state)
{
	(void)state;
	reset(M_PLAIN);
	int fd = dial();
	uint64_t pos = 0;
	send_pat(fd, &pos, 100000);
	assert_true(wait_at_least(&rx_total, pos));

	cmd(CMD_PAUSE);
	uint64_t at_pause = atomic_load(&rx_total);
	assert_true(fill(fd, &pos)); /* EAGAIN: TCP stopped the sender */
	usleep(100000);
	assert_int_equal(atomic_load(&rx_total), at_pause); /* nothing reached on_data */
	assert_true(pos > at_pause);

	cmd(CMD_RESUME);
	send_pat(fd, &pos, 300000); /* and more after the resume */
	expect_all_received(pos);

	/* a second pause/resume cycle on the same connection */
	cmd(CMD_PAUSE);
	assert_true(fill(fd, &pos));
	cmd(CMD_RESUME);
	assert_true(wait_at_least(&rx_total, pos));
	assert_int_equal(atomic_load(&rx_bad), 0);

	close_flushed(fd);
}

static void test_pause_inside_on_data_keeps_the_rest(void **state)
{
	(void)state;
	reset(M_PAUSE_IN_DATA);
	atomic_store(&pause_at, 50000);
	int fd = dial();
	uint64_t pos = 0;
	send_pat(fd, &pos, 200000);
	assert_true(wait_int(&acked, CMD_PAUSE)); /* on_data paused itself */
	usleep(100000);
	uint64_t at_pause = atomic_load(&rx_total);
	assert_true(at_pause < pos);
	assert_true(fill(fd, &pos));
	assert_int_equal(atomic_load(&rx_total), at_pause);
	cmd(CMD_RESUME);
	expect_all_received(pos);
	close_flushed(fd);
}

/* The peer sent everything before on_data paused: the unconsumed half is
 * handed over on resume without waiting for another byte from the socket. */
static void test_pause_inside_on_data_resumes_without_more_bytes(void **state)
{
	(void)state;
	reset(M_PAUSE_IN_DATA);
	atomic_store(&pause_at, 1);
	int fd = dial();
	uint64_t pos = 0;
	send_pat(fd, &pos, 2000); /* one receive: the pause leaves 1000 bytes */
	assert_true(wait_int(&acked, CMD_PAUSE));
	uint64_t at_pause = atomic_load(&rx_total);
	assert_true(at_pause < pos);
	cmd(CMD_RESUME);
	expect_all_received(pos);
	close_flushed(fd);
}

static void test_pause_then_close_and_resume_after_close(void **state)
{
	(void)state;
	reset(M_PLAIN);
	int fd = dial();
	uint64_t pos = 0;
	send_pat(fd, &pos, 10000);
	assert_true(wait_at_least(&rx_total, pos));
	cmd(CMD_PAUSE);
	send_pat(fd, &pos, 10000); /* kept while paused, then dropped with the connection */
	cmd(CMD_PAUSE_CLOSE);
	assert_true(wait_int(&closed, 1));
	cmd(CMD_RESUME); /* no connection any more: nothing happens */
	char b;
	assert_true(recv(fd, &b, 1, 0) <= 0); /* the peer sees the close */
	close(fd);
}

/* ---- tests: TLS ---- */

/* A connection closed in the turn it was put on the send list leaves that
 * list only at the end of the turn: its slot must not be handed to another
 * connection before (that one would be linked to itself and the worker
 * would spin in its send loop). The worker keeps working: the new
 * connection reaches our listener. */
static void test_tls_refused_at_accept_slot_not_reused_while_listed(void **state)
{
	(void)state;
	reset(M_TLS_REFUSE);
	alarm(60); /* a spinning worker would hang the whole binary in net_stop */
	/* accepted is set by the second accept, of the worker's own connection:
	 * only a worker that still runs its loop gets there */
	int fd = dial();
	char b;
	assert_true(recv(fd, &b, 1, 0) <= 0); /* the refused connection is closed */
	close(fd);
	assert_int_equal(atomic_load(&worker_err), 0);
	atomic_store(&closed, 0);
	cmd(CMD_CLOSE_FLUSH);
	assert_true(wait_int(&closed, 1));
	alarm(0);
}

static void flush_out(int fd, struct tls_conn *t)
{
	const void *p;
	size_t n;
	while ((n = tls_pending_out(t, &p)) > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		assert_true(w > 0);
		tls_consume_out(t, (size_t)w);
	}
}

static struct tls_conn *tls_dial(int *fdp)
{
	int fd = dial();
	struct tls_conn *t = tls_conn_new(cctx, false, "a.example", NULL);
	assert_non_null(t);
	int hs = tls_handshake(t);
	while (hs == 0) {
		flush_out(fd, t);
		char buf[16384];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		assert_true(n > 0);
		assert_int_equal(tls_feed(t, buf, (size_t)n), 0);
		hs = tls_handshake(t);
	}
	assert_int_equal(hs, 1);
	flush_out(fd, t);
	*fdp = fd;
	return t;
}

/* Feed one chunk received on the transport to t, reading out what it
 * decrypts into plain (from *got, up to cap). Returns TLS_ERR_CLOSED as soon
 * as t saw a close_notify, else 0. */
static ssize_t feed_read(struct tls_conn *t, const char *buf, size_t n, char *plain, size_t cap, size_t *got)
{
	size_t off = 0;
	while (off < n) {
		size_t k = n - off;
		int rc = tls_feed(t, buf + off, k);
		if (rc == TLS_ERR_AGAIN)
			k = 0;
		else
			assert_int_equal(rc, 0);
		off += k;
		ssize_t r;
		while ((r = tls_read(t, plain + *got, cap - *got)) > 0)
			*got += (size_t)r;
		if (r == TLS_ERR_CLOSED)
			return r;
		assert_int_equal(r, 0);
	}
	return 0;
}

static void test_tls_close_sends_close_notify_after_data(void **state)
{
	(void)state;
	reset(M_TLS_BYE);
	atomic_store(&bye_len, 200000);
	int fd;
	struct tls_conn *t = tls_dial(&fd);
	static char plain[300000];
	size_t got = 0;
	bool notified = false;
	for (;;) {
		char buf[16384];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		assert_true(n >= 0);
		if (n == 0)
			break; /* the transport ended */
		/* TLS_ERR_CLOSED before any end of the transport: close_notify */
		if (feed_read(t, buf, (size_t)n, plain, sizeof(plain), &got) == TLS_ERR_CLOSED) {
			notified = true;
			break;
		}
	}
	assert_true(notified);
	assert_int_equal(got, atomic_load(&bye_len));
	for (size_t i = 0; i < got; i++)
		if ((uint8_t)plain[i] != pat(i))
			fail_msg("byte %zu differs", i);
	assert_true(wait_int(&closed, 1));
	assert_int_equal(atomic_load(&worker_err), 0);
	tls_conn_free(t);
	close(fd);
}

/* Ciphertext pushed at a paused TLS link until TCP stops the sender, then
 * resumed: everything arrives, in order. */
static void tls_pause_fill_resume(void)
{
	int fd;
	struct tls_conn *t = tls_dial(&fd);
	assert_true(wait_int(&tls_ok, 1));
	uint64_t pos = 0;
	static char buf[16384];
	/* some bytes through, then pause and push ciphertext until TCP stops us */
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)pat(pos + i);
	assert_int_equal(tls_write(t, buf, sizeof(buf)), 0);
	pos += sizeof(buf);
	flush_out(fd, t);
	assert_true(wait_at_least(&rx_total, pos));
	cmd(CMD_PAUSE);
	uint64_t at_pause = atomic_load(&rx_total);
	bool full = false;
	const void *p;
	while (!full && pos < FILL_MAX) {
		if (tls_pending_out(t, &p) == 0) {
			for (size_t i = 0; i < sizeof(buf); i++)
				buf[i] = (char)pat(pos + i);
			assert_int_equal(tls_write(t, buf, sizeof(buf)), 0);
			pos += sizeof(buf);
		}
		size_t n = tls_pending_out(t, &p);
		ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			usleep(50000);
			w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				full = true;
				break;
			}
		}
		assert_true(w > 0);
		tls_consume_out(t, (size_t)w);
	}
	assert_true(full);
	assert_int_equal(atomic_load(&rx_total), at_pause);
	cmd(CMD_RESUME);
	flush_out(fd, t); /* blocking: the rest of the last records */
	expect_all_received(pos);
	close_flushed(fd);
	tls_conn_free(t);
}

static void test_tls_pause_and_resume(void **state)
{
	(void)state;
	reset(M_TLS_PAUSE);
	tls_pause_fill_resume();
}

/* The engine's input bound is smaller than one receive (16 KiB), as the
 * bytes held while a link is paused can be larger than the default bound:
 * the link feeds them in pieces (it used to offer them whole, forever, and
 * spin). */
static void test_tls_input_beyond_the_engine_bound(void **state)
{
	(void)state;
	reset(M_TLS_SMALL_IN);
	tls_pause_fill_resume();
}

/* ---- setup ---- */

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		return -1;
	close(fd);
	return ntohs(a.sin_port);
}

static int group_setup(void **state)
{
	(void)state;
	char cmdline[256], ca[128], pem[128], key[128];
	const char *src = getenv("FEDHUB_SRCDIR");
	snprintf(dir, sizeof(dir), "/tmp/fedhub-net-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cmdline, sizeof(cmdline), "sh %s/tests/certs/mkcerts.sh %s", src ? src : ".", dir);
	if (system(cmdline) != 0)
		return -1;
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(pem, sizeof(pem), "%s/a.pem", dir);
	snprintf(key, sizeof(key), "%s/a.key", dir);
	struct tls_opts so = {.ca_file = ca}, co = {.ca_file = ca}, small = {.ca_file = ca, .in_max = 8000};
	sctx = tls_ctx_new(&so);
	cctx = tls_ctx_new(&co);
	sctx_small = tls_ctx_new(&small);
	if (!sctx || !cctx || !sctx_small || tls_ctx_add_cert(sctx, pem, key) < 1 ||
	    tls_ctx_add_cert(sctx_small, pem, key) < 1)
		return -1;

	struct net_config nc = {.workers = 1, .on_msg = t_msg, .on_accept = t_accept};
	if (net_init(&nc) < 0)
		return -1;
	port = free_port();
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (port <= 0 || net_listen(0, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	return net_start();
}

static int group_teardown(void **state)
{
	(void)state;
	net_stop();
	tls_ctx_free(sctx);
	tls_ctx_free(sctx_small);
	tls_ctx_free(cctx);
	char cmdline[128];
	snprintf(cmdline, sizeof(cmdline), "rm -rf %s", dir);
	return system(cmdline) == 0 ? 0 : -1;
}

/* A TLS link's send queue filled until it refused more, then read by the
 * peer: its owner hears on_drain. The queue empties into the TLS engine when
 * its records are made, not on a send completion: a flow queue waiting for
 * this link was drained only by the router's tick when on_drain looked at
 * completions alone. */
static void test_tls_drain_after_full_queue(void **state)
{
	(void)state;
	reset(M_TLS_DRAIN);
	int fd;
	struct tls_conn *t = tls_dial(&fd);
	assert_true(wait_int(&tls_ok, 1));
	cmd(CMD_FILL);
	uint64_t want = atomic_load(&fill_len);
	assert_true(want >= FILL_LIMIT / 2);
	assert_int_equal(atomic_load(&worker_err), 0);
	static char plain[FILL_LIMIT + 65536];
	size_t got = 0;
	while (got < want) {
		char buf[16384];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		assert_true(n > 0); /* SO_RCVTIMEO bounds it */
		assert_int_equal(feed_read(t, buf, (size_t)n, plain, sizeof(plain), &got), 0);
	}
	assert_int_equal(got, want);
	for (size_t i = 0; i < got; i++)
		if ((uint8_t)plain[i] != pat(i))
			fail_msg("byte %zu differs", i);
	int ok = 0;
	for (uint64_t end = ms() + WAIT_MS; !(ok = atomic_load(&drains) > 0) && ms() < end;)
		usleep(1000);
	cmd(CMD_LIMIT_DEFAULT);
	assert_true(ok);
	tls_conn_free(t);
	close(fd);
	assert_true(wait_int(&closed, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pause_fills_sender_resume_delivers_in_order),
		cmocka_unit_test(test_pause_inside_on_data_keeps_the_rest),
		cmocka_unit_test(test_pause_inside_on_data_resumes_without_more_bytes),
		cmocka_unit_test(test_pause_then_close_and_resume_after_close),
		cmocka_unit_test(test_tls_refused_at_accept_slot_not_reused_while_listed),
		cmocka_unit_test(test_tls_close_sends_close_notify_after_data),
		cmocka_unit_test(test_tls_pause_and_resume),
		cmocka_unit_test(test_tls_input_beyond_the_engine_bound),
		cmocka_unit_test(test_tls_drain_after_full_queue),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
