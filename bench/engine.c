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
 * Roles of a connection:
 *   S2S_OUT  the bench as a remote server dialling the target's s2s port:
 *            stream header, then one <db:result/> per bench domain piggybacked
 *            on the link (XEP-0220 §2.1, keys per XEP-0185), ready once the
 *            target says type='valid' for all of them.
 *   S2S_IN   the target dialling the bench, which is the authoritative server
 *            of its domains: it answers <db:verify/> by recomputing the key
 *            (valid only if it matches), accepts the target's own <db:result/>
 *            on that stream (both ends are on loopback and the bench is not
 *            the system under test), and receives stanzas: echo replies,
 *            component-to-s2s traffic, bounces.
 *   COMP     an XEP-0114 component: handshake = hex(SHA-1(stream id + secret)).
 *   RELAY_IN HAProxy mode: the far end of a plain TCP relay; no XMPP peer
 *            answers, the bench only frames and accounts what arrives.
 *
 * TLS (--tls). Every s2s link, in both directions, runs STARTTLS (RFC 6120
 * §5) after the first stream features, through fedhub's own engine
 * (net/tls.h: memory buffers, no socket inside): received ciphertext goes
 * to tls_feed() and the plaintext from tls_read() into the same parser as a
 * plain link; plaintext written by the protocol code is encrypted with one
 * tls_write() per flush (many stanzas per record) and the ciphertext is
 * copied out of the engine before it is sent, since the engine may move its
 * buffer while a send is in flight. On its own links the bench then asks
 * for SASL EXTERNAL (XEP-0178) for its first domain when the target offers
 * it, and uses dialback for the domains piggybacked after it (which a
 * target implementing XEP-0344 validates from the certificate). On the
 * target's links to the bench, the bench offers STARTTLS (required), then
 * EXTERNAL when the target's certificate proves the stream's `from`.
 * Certificates: bench/peers/mkcerts.sh (one CA, a *.fhb leaf for the bench).
 *
 * Accounting. A sender "flow" is one (from, to) pair with its own sequence.
 * Each stanza's id is "fhb-FLOW-SEQ-TS" (hex; TS = CLOCK_MONOTONIC ns of the
 * intended send time). The final receiver parses it back: latency = now - TS,
 * order per flow (a sequence number below the highest seen so far counts as
 * out of order), type='error' counts as bounced. Lost = sent - delivered -
 * bounced after the drain. In open loop, TS is the time the stanza was due,
 * not the time it was written, so a stalled target shows up in the latency
 * (no coordinated omission). The --fault option changes only what the bench
 * sends (one stanza never written, or two written swapped), so the receive
 * side accounting is exercised exactly as in a real run.
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
#include "bench/bench.h"
#include "net/tls.h"

#define NS_TLS  "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
/* ciphertext read per recv: with the plaintext drained after each feed, the
 * engine's input (bounded at 64 KiB) never holds more than a record plus this */
#define BE_CIPHER_RECV 16384

/* ---- crypto ---------------------------------------------------------------- */

static void be_hex(const unsigned char *b, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[b[i] >> 4];
		out[2 * i + 1] = hx[b[i] & 15];
	}
	out[2 * n] = 0;
}

void bench_db_key(const char *secret, const char *recv, const char *orig, const char *stream_id, char out[65])
{
	unsigned char d[WC_SHA256_DIGEST_SIZE];
	char khex[2 * WC_SHA256_DIGEST_SIZE + 1], text[1024];
	wc_Sha256Hash((const byte *)secret, (word32)strlen(secret), d);
	be_hex(d, sizeof d, khex);
	int n = snprintf(text, sizeof text, "%s %s %s", recv, orig, stream_id);
	Hmac h;
	wc_HmacInit(&h, NULL, INVALID_DEVID);
	wc_HmacSetKey(&h, WC_SHA256, (const byte *)khex, (word32)strlen(khex));
	wc_HmacUpdate(&h, (const byte *)text, (word32)n);
	wc_HmacFinal(&h, d);
	wc_HmacFree(&h);
	be_hex(d, sizeof d, out);
}

void bench_comp_handshake(const char *stream_id, const char *secret, char out[41])
{
	wc_Sha s;
	unsigned char d[WC_SHA_DIGEST_SIZE];
	wc_InitSha(&s);
	wc_ShaUpdate(&s, (const byte *)stream_id, (word32)strlen(stream_id));
	wc_ShaUpdate(&s, (const byte *)secret, (word32)strlen(secret));
	wc_ShaFinal(&s, d);
	wc_ShaFree(&s);
	be_hex(d, sizeof d, out);
}

/* ---- /proc ----------------------------------------------------------------- */

int bench_proc_sample(int pid, double *cpu_s, uint64_t *rss_kib, uint64_t *hwm_kib)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	/* the command name may hold spaces and parentheses: fields count from the last ')' */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long ut = 0, st = 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	if (cpu_s)
		*cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		unsigned long v;
		if (rss_kib && sscanf(line, "VmRSS: %lu", &v) == 1)
			*rss_kib = v;
		if (hwm_kib && sscanf(line, "VmHWM: %lu", &v) == 1)
			*hwm_kib = v;
	}
	fclose(f);
	return 0;
}

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
};

static uint64_t be_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void be_error(struct eng *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void be_error(struct eng *e, const char *fmt, ...)
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

static void be_domain(const struct eng *e, int i, char *out, size_t cap)
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
static void be_mark_dirty(struct eng *e, struct bconn *c)
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

static void be_write(struct eng *e, struct bconn *c, const char *p, size_t n)
{
	be_obuf_put(&c->ob[c->acc], p, n);
	be_mark_dirty(e, c);
}

static void be_writef(struct eng *e, struct bconn *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void be_writef(struct eng *e, struct bconn *c, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > 0)
		be_write(e, c, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void be_close(struct eng *e, struct bconn *c, const char *why);

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
static int be_tls_more_certs(struct eng *e)
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

static void be_close(struct eng *e, struct bconn *c, const char *why)
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

/* ---- XML framing ------------------------------------------------------------ */

/* Length of the tag starting at p[0] == '<' up to and including '>', quotes
 * respected; 0 if the buffer ends first. */
static size_t bx_tag_len(const char *p, size_t n)
{
	char q = 0;
	for (size_t i = 1; i < n; i++) {
		char ch = p[i];
		if (q) {
			if (ch == q)
				q = 0;
		} else if (ch == '\'' || ch == '"') {
			q = ch;
		} else if (ch == '>') {
			return i + 1;
		}
	}
	return 0;
}

/* Length of the complete element starting at p[0] == '<'; 0 if incomplete. */
static size_t bx_elem_len(const char *p, size_t n)
{
	size_t i = 0;
	int d = 0;
	while (i < n) {
		if (p[i] != '<') {
			const char *lt = memchr(p + i, '<', n - i);
			if (!lt)
				return 0;
			i = (size_t)(lt - p);
			continue;
		}
		size_t t = bx_tag_len(p + i, n - i);
		if (!t)
			return 0;
		if (p[i + 1] == '/')
			d--;
		else if (p[i + t - 2] != '/')
			d++;
		i += t;
		if (d <= 0)
			return i;
	}
	return 0;
}

struct bx_span {
	const char *p;
	size_t n;
};

static bool bx_eq(struct bx_span s, const char *lit)
{
	size_t l = strlen(lit);
	return s.n == l && memcmp(s.p, lit, l) == 0;
}

static struct bx_span bx_name(const char *tag, size_t tl)
{
	size_t i = 1;
	while (i < tl && tag[i] != ' ' && tag[i] != '\t' && tag[i] != '\n' && tag[i] != '\r' && tag[i] != '/' &&
	       tag[i] != '>')
		i++;
	return (struct bx_span){tag + 1, i - 1};
}

/* Attribute value (raw, unescaped: the bench's own values need no escaping). */
static bool bx_attr(const char *tag, size_t tl, const char *name, struct bx_span *v)
{
	size_t nl = strlen(name), i = 1 + bx_name(tag, tl).n;
	while (i < tl) {
		while (i < tl && (tag[i] == ' ' || tag[i] == '\t' || tag[i] == '\n' || tag[i] == '\r'))
			i++;
		if (i >= tl || tag[i] == '>' || tag[i] == '/')
			return false;
		size_t a = i;
		while (i < tl && tag[i] != '=' && tag[i] != ' ')
			i++;
		size_t an = i - a;
		while (i < tl && tag[i] != '\'' && tag[i] != '"')
			i++;
		if (i >= tl)
			return false;
		char q = tag[i++];
		size_t vs = i;
		while (i < tl && tag[i] != q)
			i++;
		if (an == nl && memcmp(tag + a, name, nl) == 0) {
			v->p = tag + vs;
			v->n = i - vs;
			return true;
		}
		i++;
	}
	return false;
}

static void bx_cstr(struct bx_span s, char *out, size_t cap)
{
	size_t n = s.n < cap - 1 ? s.n : cap - 1;
	memcpy(out, s.p, n);
	out[n] = 0;
}

/* Text between the start tag and the first child or end tag. */
static struct bx_span bx_text(const char *el, size_t n, size_t tl)
{
	const char *lt = memchr(el + tl, '<', n - tl);
	return (struct bx_span){el + tl, lt ? (size_t)(lt - (el + tl)) : 0};
}

/* ---- traffic ---------------------------------------------------------------- */

static uint64_t be_rand(struct eng *e)
{
	e->rng ^= e->rng << 13;
	e->rng ^= e->rng >> 7;
	e->rng ^= e->rng << 17;
	return e->rng;
}

static void be_flow_jids(struct eng *e, struct bflow *f, char *from, char *to, size_t cap)
{
	char d[256];
	be_domain(e, f->from_dom, d, sizeof d);
	if (f->from_comp) {
		snprintf(from, cap, "svc%d@%s", f->user, e->o->comp_domains[f->to_dom]);
		snprintf(to, cap, "u%d@%s", f->user, d);
	} else {
		snprintf(from, cap, "u%d@%s", f->user, d);
		snprintf(to, cap, "%s", e->o->comp_domains[f->to_dom]);
	}
}

/* Build one stanza of flow fi into out; returns its length. */
static size_t be_make_stanza(struct eng *e, int fi, uint32_t seq, uint64_t ts, const char *to_over, char *out,
			     size_t cap)
{
	struct bflow *f = &e->f[fi];
	char from[300], to[300], id[64];
	be_flow_jids(e, f, from, to, sizeof from);
	if (to_over)
		snprintf(to, sizeof to, "%s", to_over);
	snprintf(id, sizeof id, "fhb-%x-%x-%llx", fi, seq, (unsigned long long)ts);
	int tot = e->o->mix_msg + e->o->mix_presence + e->o->mix_iq;
	int pick = tot > 0 ? (int)(be_rand(e) % (uint64_t)tot) : 0;
	int n;
	if (pick < e->o->mix_msg || tot == 0) {
		n = snprintf(out, cap, "<message from='%s' to='%s' id='%s' type='chat'><body>", from, to, id);
		/* pad the body so the whole stanza is about --size bytes */
		int pad = e->o->size - n - (int)strlen("</body></message>");
		if (pad < 1)
			pad = 1;
		if (pad > e->body_len)
			pad = e->body_len;
		memcpy(out + n, e->body, (size_t)pad);
		n += pad;
		n += snprintf(out + n, cap - (size_t)n, "</body></message>");
	} else if (pick < e->o->mix_msg + e->o->mix_presence) {
		n = snprintf(out, cap, "<presence from='%s' to='%s' id='%s'/>", from, to, id);
	} else {
		n = snprintf(out, cap, "<iq from='%s' to='%s' id='%s' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
			     from, to, id);
	}
	return (size_t)n;
}

static void be_send_one(struct eng *e, struct bconn *c, uint64_t ts)
{
	int fi = c->flow_first + c->next_flow;
	c->next_flow = (c->next_flow + 1) % c->nflows;
	struct bflow *f = &e->f[fi];
	char buf[2048];
	uint32_t seq = f->next_seq++;
	/* --fault bounce-one: one stanza to a domain the target serves with
	 * nothing attached, which it must bounce (service-unavailable) */
	bool bounce = e->o->fault == BF_BOUNCE_ONE && !e->fault_done && e->measuring && seq >= 3 && !f->from_comp &&
		      f->from_dom == c->dom_first;
	size_t n = be_make_stanza(e, fi, seq, ts, bounce ? e->o->bounce_domain : NULL, buf, sizeof buf);
	if (bounce)
		e->fault_done = true;
	f->sent++;
	e->r->sent++;
	c->inflight++;
	/* Faults act on the sending side only, after warm-up so that the stanza
	 * concerned is one the receiver accounts like any other. */
	if (e->o->fault != BF_NONE && !e->fault_done && e->measuring && seq >= 3) {
		if (e->o->fault == BF_DROP_ONE) {
			e->fault_done = true;
			return; /* counted as sent, never written */
		}
		if (e->o->fault == BF_REORDER && !f->held) {
			f->held = true;
			memcpy(f->held_buf, buf, n);
			f->held_len = n;
			return;
		}
	}
	be_write(e, c, buf, n);
	if (f->held && !e->fault_done) {
		be_write(e, c, f->held_buf, f->held_len); /* the earlier one, after the later */
		e->fault_done = true;
	}
}

static void be_generate(struct eng *e)
{
	if (!e->generating || e->o->scenario == BS_IDLE_LINKS)
		return;
	for (int i = 0; i < e->nc; i++) {
		struct bconn *c = &e->c[i];
		if (c->state != BC_READY || c->nflows == 0)
			continue;
		if (e->o->rate > 0) {
			/* open loop: every stanza that is due goes now, stamped with when it was due */
			int burst = 0;
			while (c->next_ns <= e->now && burst < 4096) {
				be_send_one(e, c, c->next_ns);
				c->due_count++;
				c->next_ns = c->base_ns + (uint64_t)((double)c->due_count * c->interval_ns);
				burst++;
			}
		} else {
			while (c->inflight < (uint32_t)e->o->window)
				be_send_one(e, c, e->now);
		}
	}
}

/* The condition of a bounce: the child of <error/> in the stanzas namespace
 * (RFC 6120 §8.3.2), counted by name. */
static void be_count_cond(struct eng *e, const char *el, size_t n)
{
	static const char ns[] = "urn:ietf:params:xml:ns:xmpp-stanzas";
	const char *x = memmem(el, n, ns, sizeof ns - 1), *lt = x;
	char name[40] = "(none)";
	while (lt && lt > el && *lt != '<')
		lt--;
	if (lt && *lt == '<') {
		size_t k = 0;
		for (const char *q = lt + 1; q < x && *q != ' ' && *q != '/' && *q != '>' && k < sizeof name - 1; q++)
			name[k++] = *q;
		name[k] = 0;
	}
	struct bench_result *r = e->r;
	for (int i = 0; i < r->ncond; i++)
		if (!strcmp(r->cond[i].name, name)) {
			r->cond[i].n++;
			return;
		}
	/* the table is full: the rest share its last row */
	int i = r->ncond < BENCH_NCOND ? r->ncond++ : BENCH_NCOND - 1;
	if (r->cond[i].name[0])
		snprintf(name, sizeof name, "(other)");
	snprintf(r->cond[i].name, sizeof r->cond[i].name, "%s", name);
	r->cond[i].n++;
}

/* A stanza reached its final receiver. */
static void be_account(struct eng *e, const char *el, size_t n, size_t tl)
{
	struct bx_span id, type;
	if (!bx_attr(el, tl, "id", &id) || id.n < 5 || memcmp(id.p, "fhb-", 4) != 0)
		return;
	char *end;
	unsigned long fi = strtoul(id.p + 4, &end, 16);
	if (*end != '-' || fi >= (unsigned long)e->nf)
		return;
	unsigned long seq = strtoul(end + 1, &end, 16);
	if (*end != '-')
		return;
	unsigned long long ts = strtoull(end + 1, &end, 16);
	struct bflow *f = &e->f[fi];
	struct bconn *sc = &e->c[f->conn];
	if (sc->inflight)
		sc->inflight--;
	bool err = bx_attr(el, tl, "type", &type) && bx_eq(type, "error");
	e->last_acct = e->now;
	if (err) {
		f->bounced++;
		e->r->bounced++;
		be_count_cond(e, el, n);
		return;
	}
	f->delivered++;
	if (f->delivered > f->sent) {
		e->r->dup++;
		return;
	}
	e->r->delivered++;
	if ((uint32_t)seq + 1 <= f->max_seen)
		e->r->out_of_order++;
	else
		f->max_seen = (uint32_t)seq + 1;
	uint64_t lat = e->now > ts ? e->now - ts : 0;
	if (e->measuring) {
		bench_hist_add(&e->r->hist, lat);
		e->r->measured_delivered++;
	}
	if (e->stall_t0 && e->now >= e->stall_t0 && e->now < e->stall_t1 && f->to_dom != 0)
		bench_hist_add(&e->r->other_hist, lat);
	bench_hist_add(&e->sec_hist, lat);
	e->sec_delivered++;
}

/* ---- protocol ------------------------------------------------------------------ */

static const char *be_stream_ns_db = "xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
				     "xmlns:db='jabber:server:dialback'";

static void be_setup_done(struct eng *e, struct bconn *c)
{
	if (!c->counted_setup) {
		c->counted_setup = true;
		e->setups_pending--;
		if (c->role == BC_S2S_OUT)
			e->r->links_up++;
		else
			e->r->comps_up++;
	}
}

/* The component domain a bench domain's flow sends to when that is not
 * the stream's to (--comp-domain a,b,...): dialback pairs are per (remote,
 * local) domain (XEP-0220 §2), so the link authenticates that pair too. */
static const char *be_extra_local(const struct eng *e, int dom)
{
	const char *cd = e->o->comp_domains[dom % (e->o->ncomp_domains ? e->o->ncomp_domains : 1)];
	return strcmp(cd, e->o->target_domain) ? cd : NULL;
}

/* Pairs a link authenticates: one per domain, the extra ones above, and
 * --fault bounce-one's. */
static int be_auth_want(const struct eng *e, const struct bconn *c)
{
	int n = c->ndom + (e->o->fault == BF_BOUNCE_ONE);
	for (int i = 0; i < c->ndom; i++)
		n += be_extra_local(e, c->dom_first + i) != NULL;
	return n;
}

/* Dialback for the link's domains from index `first` on (the ones before
 * it are authenticated already, by SASL EXTERNAL). */
static void be_s2s_out_results(struct eng *e, struct bconn *c, int first)
{
	for (int i = first; i < c->ndom; i++) {
		char d[256], key[65];
		be_domain(e, c->dom_first + i, d, sizeof d);
		bench_db_key(e->o->db_secret, e->o->target_domain, d, c->stream_id, key);
		be_writef(e, c, "<db:result from='%s' to='%s'>%s</db:result>", d, e->o->target_domain, key);
	}
	for (int i = 0; i < c->ndom; i++) {
		const char *local = be_extra_local(e, c->dom_first + i);
		char d[256], key[65];
		if (!local)
			continue;
		be_domain(e, c->dom_first + i, d, sizeof d);
		bench_db_key(e->o->db_secret, local, d, c->stream_id, key);
		be_writef(e, c, "<db:result from='%s' to='%s'>%s</db:result>", d, local, key);
	}
	if (e->o->fault == BF_BOUNCE_ONE) {
		/* the bounce-one stanza goes from the first domain to another local
		 * domain of the target: that pair must be authenticated too */
		char d[256], key[65];
		be_domain(e, c->dom_first, d, sizeof d);
		bench_db_key(e->o->db_secret, e->o->bounce_domain, d, c->stream_id, key);
		be_writef(e, c, "<db:result from='%s' to='%s'>%s</db:result>", d, e->o->bounce_domain, key);
	}
	c->state = BC_AUTH;
	if (c->ndom_valid >= be_auth_want(e, c)) {
		c->state = BC_READY;
		be_setup_done(e, c);
	}
}

static void be_s2s_out_header(struct eng *e, struct bconn *c)
{
	char d[256];
	be_domain(e, c->dom_first, d, sizeof d);
	be_writef(e, c, "<?xml version='1.0'?><stream:stream %s from='%s' to='%s' version='1.0'>", be_stream_ns_db, d,
		  e->o->target_domain);
}

/* The handshake finished: check the peer, restart the stream (RFC 6120 §5.4.3.3). */
static void be_on_tls_ready(struct eng *e, struct bconn *c)
{
	if (!e->r->tls_info[0])
		snprintf(e->r->tls_info, sizeof e->r->tls_info, "%s %s", tls_version(c->tls), tls_cipher(c->tls));
	c->depth = 0;
	if (c->role == BC_S2S_OUT) {
		int v = tls_peer_verify_domain(c->tls, e->o->target_domain);
		if (v != 0) {
			be_error(e, "connection %d: the target's certificate does not prove %s: %s (%s)", c->idx,
				 e->o->target_domain, tls_strerror(v), tls_error(c->tls));
			be_close(e, c, NULL);
			return;
		}
		e->r->tls_out++;
		c->want_features = false;
		be_s2s_out_header(e, c);
	} else {
		e->r->tls_in++;
	}
}

static void be_on_header(struct eng *e, struct bconn *c, const char *tag, size_t tl)
{
	struct bx_span v;
	if (bx_attr(tag, tl, "id", &v))
		bx_cstr(v, c->stream_id, sizeof c->stream_id);
	if (c->role == BC_S2S_OUT) {
		/* RFC 6120 streams announce features first; a pre-1.0 peer does not */
		c->want_features = bx_attr(tag, tl, "version", &v) && bx_eq(v, "1.0");
		if (!c->want_features && e->o->tls) {
			be_error(e, "connection %d: the target's stream is not version 1.0: no STARTTLS", c->idx);
			be_close(e, c, NULL);
		} else if (!c->want_features) {
			be_s2s_out_results(e, c, 0);
		}
	} else if (c->role == BC_S2S_IN) {
		struct bx_span from = {"", 0}, to = {"", 0};
		bx_attr(tag, tl, "from", &from);
		bx_attr(tag, tl, "to", &to);
		bool v1 = bx_attr(tag, tl, "version", &v) && bx_eq(v, "1.0");
		bx_cstr(from, c->peer, sizeof c->peer);
		snprintf(c->stream_id, sizeof c->stream_id, "fhb%lx%x", (unsigned long)be_rand(e), c->idx);
		be_writef(e, c, "<?xml version='1.0'?><stream:stream %s id='%s' from='%.*s'%s%.*s%s%s>",
			  be_stream_ns_db, c->stream_id, (int)to.n, to.p, from.n ? " to='" : "", (int)from.n, from.p,
			  from.n ? "'" : "", v1 ? " version='1.0'" : "");
		if (v1 && e->o->tls && !c->tls) {
			/* RFC 6120 §5.3.1: mandatory-to-negotiate, offered alone */
			be_writef(e, c,
				  "<stream:features><starttls xmlns='" NS_TLS "'><required/></starttls>"
				  "</stream:features>");
		} else if (v1) {
			/* XEP-0178: EXTERNAL once the certificate proves the stream's from */
			bool ext = c->tls_done && !c->sasl_ok && c->peer[0] &&
				   tls_peer_verify_domain(c->tls, c->peer) == 0;
			be_writef(e, c,
				  "<stream:features>%s<dialback xmlns='urn:xmpp:features:dialback'>"
				  "<errors/></dialback></stream:features>",
				  ext ? "<mechanisms xmlns='" NS_SASL "'><mechanism>EXTERNAL</mechanism></mechanisms>"
				      : "");
		}
		c->state = BC_READY;
	} else if (c->role == BC_COMP) {
		char hs[41];
		bench_comp_handshake(c->stream_id, e->o->comp_secret, hs);
		be_writef(e, c, "<handshake>%s</handshake>", hs);
		c->state = BC_AUTH;
	}
}

/* Component: send back what arrived, addresses swapped (echo scenario). */
static void be_echo(struct eng *e, struct bconn *c, const char *el, size_t n, size_t tl, struct bx_span name)
{
	struct bx_span from, to, id, type;
	if (!bx_attr(el, tl, "from", &from) || !bx_attr(el, tl, "to", &to) || !bx_attr(el, tl, "id", &id))
		return;
	bool has_type = bx_attr(el, tl, "type", &type);
	if (has_type && bx_eq(type, "error"))
		return; /* never answer an error */
	if (bx_eq(name, "iq")) {
		be_writef(e, c, "<iq type='result' from='%.*s' to='%.*s' id='%.*s'/>", (int)to.n, to.p, (int)from.n,
			  from.p, (int)id.n, id.p);
		return;
	}
	be_writef(e, c, "<%.*s from='%.*s' to='%.*s' id='%.*s'%s%.*s%s%s", (int)name.n, name.p, (int)to.n, to.p,
		  (int)from.n, from.p, (int)id.n, id.p, has_type ? " type='" : "", has_type ? (int)type.n : 0,
		  has_type ? type.p : "", has_type ? "'" : "", el[tl - 2] == '/' ? "/>" : ">");
	if (el[tl - 2] != '/')
		be_write(e, c, el + tl, n - tl); /* children and end tag as received */
}

/* S2S_OUT: the target's features. With --tls: STARTTLS first, then SASL
 * EXTERNAL for the link's first domain when offered, dialback for the rest. */
static void be_s2s_out_features(struct eng *e, struct bconn *c, const char *el, size_t n)
{
	if (e->o->tls && !c->tls) {
		if (!memmem(el, n, NS_TLS, strlen(NS_TLS))) {
			be_error(e, "connection %d: --tls, but the target offers no STARTTLS", c->idx);
			be_close(e, c, NULL);
			return;
		}
		be_writef(e, c, "<starttls xmlns='" NS_TLS "'/>");
		c->starttls_sent = true;
		return;
	}
	if (c->sasl_ok) { /* the stream restarted after SASL: the other domains */
		be_s2s_out_results(e, c, 1);
		return;
	}
	if (c->tls_done && memmem(el, n, NS_SASL, strlen(NS_SASL)) &&
	    memmem(el, n, "<mechanism>EXTERNAL</mechanism>", 31)) {
		char d[256];
		byte b64[512];
		word32 bl = sizeof b64;
		be_domain(e, c->dom_first, d, sizeof d);
		if (Base64_Encode_NoNl((const byte *)d, (word32)strlen(d), b64, &bl) == 0) {
			be_writef(e, c, "<auth xmlns='" NS_SASL "' mechanism='EXTERNAL'>%.*s</auth>", (int)bl, b64);
			c->sasl_sent = true;
			return;
		}
	}
	be_s2s_out_results(e, c, 0);
}

/* S2S_IN: <auth mechanism='EXTERNAL'> (XEP-0178 §2): the authorization
 * identity is the target's domain in base64, or "=" / nothing for the
 * stream's from; it must be proved by the certificate. */
static void be_sasl_external(struct eng *e, struct bconn *c, const char *el, size_t n, size_t tl)
{
	struct bx_span mech, txt = bx_text(el, n, tl);
	char domain[256];
	snprintf(domain, sizeof domain, "%s", c->peer);
	if (!c->tls_done || !bx_attr(el, tl, "mechanism", &mech) || !bx_eq(mech, "EXTERNAL")) {
		be_writef(e, c, "<failure xmlns='" NS_SASL "'><invalid-mechanism/></failure>");
		return;
	}
	if (txt.n && !(txt.n == 1 && txt.p[0] == '=')) {
		byte dec[256];
		word32 dl = sizeof dec - 1;
		if (Base64_Decode((const byte *)txt.p, (word32)txt.n, dec, &dl) != 0) {
			be_writef(e, c, "<failure xmlns='" NS_SASL "'><incorrect-encoding/></failure>");
			return;
		}
		dec[dl] = 0;
		snprintf(domain, sizeof domain, "%s", (const char *)dec);
	}
	int v = domain[0] ? tls_peer_verify_domain(c->tls, domain) : TLS_ERR_NAME;
	if (v != 0) {
		be_error(e, "connection %d (s2s in): SASL EXTERNAL for '%s' refused: %s", c->idx, domain,
			 tls_strerror(v));
		be_writef(e, c, "<failure xmlns='" NS_SASL "'><not-authorized/></failure>");
		return;
	}
	c->sasl_ok = true;
	e->r->external_in++;
	be_writef(e, c, "<success xmlns='" NS_SASL "'/>");
	c->depth = 0; /* RFC 6120 §6.4.6: a new stream header follows */
}

static void be_on_stanza(struct eng *e, struct bconn *c, const char *el, size_t n)
{
	size_t tl = bx_tag_len(el, n);
	struct bx_span name = bx_name(el, tl), v;
	bool is_traffic = bx_eq(name, "message") || bx_eq(name, "presence") || bx_eq(name, "iq");

	if (c->role == BC_RELAY_IN) {
		if (is_traffic)
			be_account(e, el, n, tl);
		return;
	}
	if (bx_eq(name, "stream:error")) {
		be_error(e, "stream error from target on connection %d (%s): %.*s", c->idx,
			 c->role == BC_COMP     ? "component"
			 : c->role == BC_S2S_IN ? "s2s in"
						: "s2s out",
			 (int)(n > 300 ? 300 : n), el);
		be_close(e, c, NULL);
		return;
	}
	if (c->role == BC_S2S_OUT) {
		if (bx_eq(name, "stream:features")) {
			if (c->state == BC_STREAM && c->want_features)
				be_s2s_out_features(e, c, el, n);
			return;
		}
		if (c->starttls_sent && bx_attr(el, tl, "xmlns", &v) && bx_eq(v, NS_TLS)) {
			c->starttls_sent = false;
			if (!bx_eq(name, "proceed")) {
				be_error(e, "connection %d: STARTTLS refused by the target: %.*s", c->idx,
					 (int)(n > 200 ? 200 : n), el);
				be_close(e, c, NULL);
				return;
			}
			char d[256];
			be_domain(e, c->dom_first, d, sizeof d);
			c->tls = tls_conn_new(e->tls, false, e->o->target_domain, d);
			if (!c->tls) {
				be_error(e, "connection %d: tls_conn_new failed", c->idx);
				be_close(e, c, NULL);
				return;
			}
			c->switch_tls = true;
			return;
		}
		if (c->sasl_sent && bx_attr(el, tl, "xmlns", &v) && bx_eq(v, NS_SASL)) {
			c->sasl_sent = false;
			if (bx_eq(name, "success")) {
				/* RFC 6120 §6.4.6: both ends restart the stream */
				c->sasl_ok = true;
				c->ndom_valid++;
				e->r->external_out++;
				c->depth = 0;
				c->want_features = false;
				be_s2s_out_header(e, c);
			} else {
				/* the features of this stream offered dialback too */
				be_s2s_out_results(e, c, 0);
			}
			return;
		}
		if (bx_eq(name, "db:result")) {
			if (bx_attr(el, tl, "type", &v) && bx_eq(v, "valid")) {
				if (++c->ndom_valid >= be_auth_want(e, c) && c->state != BC_READY) {
					c->state = BC_READY;
					be_setup_done(e, c);
				}
			} else {
				be_error(e, "dialback refused by target: %.*s", (int)(n > 400 ? 400 : n), el);
				be_close(e, c, NULL);
			}
			return;
		}
		if (is_traffic)
			be_account(e, el, n, tl);
		return;
	}
	if (c->role == BC_S2S_IN) {
		struct bx_span from = {"", 0}, to = {"", 0}, id = {"", 0};
		bx_attr(el, tl, "from", &from);
		bx_attr(el, tl, "to", &to);
		if (bx_eq(name, "starttls")) {
			if (!e->o->tls || c->tls || !(c->tls = tls_conn_new(e->tls, true, NULL, NULL))) {
				be_writef(e, c, "<failure xmlns='" NS_TLS "'/></stream:stream>");
				be_error(e, "connection %d (s2s in): unexpected <starttls/>", c->idx);
				be_close(e, c, NULL);
				return;
			}
			be_writef(e, c, "<proceed xmlns='" NS_TLS "'/>");
			c->switch_tls = true;
			return;
		}
		if (bx_eq(name, "auth")) {
			c->carried = true;
			be_sasl_external(e, c, el, n, tl);
			return;
		}
		if (e->o->tls && !c->tls_done && bx_eq(name, "db:verify")) {
			/* A verification stream that skipped the STARTTLS the bench
			 * requires: answered (the run is about load, and failing it
			 * would stall the link being set up), counted and reported,
			 * since the dialback key then crossed the wire in the clear. */
			if (!e->r->plain_verify_in++)
				fprintf(stderr,
					"fedhub-bench: connection %d (s2s in): the target sent <db:verify/> "
					"without the STARTTLS the bench requires\n",
					c->idx);
		} else if (e->o->tls && !c->tls_done) {
			/* RFC 6120 §5.3.1: nothing but STARTTLS before TLS */
			be_error(e, "connection %d (s2s in): the target sent <%.*s/> before STARTTLS", c->idx,
				 (int)name.n, name.p);
			be_writef(e, c,
				  "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
				  "</stream:error></stream:stream>");
			be_close(e, c, NULL);
			return;
		}
		if (bx_eq(name, "db:verify")) {
			char f[256], t[256], sid[256], want[65];
			bx_attr(el, tl, "id", &id);
			bx_cstr(from, f, sizeof f);
			bx_cstr(to, t, sizeof t);
			bx_cstr(id, sid, sizeof sid);
			struct bx_span key = bx_text(el, n, tl);
			bench_db_key(e->o->db_secret, f, t, sid, want);
			bool ok = key.n == 64 && memcmp(key.p, want, 64) == 0;
			be_writef(e, c, "<db:verify from='%s' to='%s' id='%s' type='%s'/>", t, f, sid,
				  ok ? "valid" : "invalid");
			c->verified = true;
			if (!ok)
				be_error(e, "target presented a wrong dialback key for %s -> %s", f, t);
			return;
		}
		if (bx_eq(name, "db:result")) {
			/* The target authenticating its own stream to us: accepted (see top). */
			c->carried = true;
			be_writef(e, c, "<db:result from='%.*s' to='%.*s' type='valid'/>", (int)to.n, to.p, (int)from.n,
				  from.p);
			return;
		}
		if (is_traffic) {
			c->carried = true;
			be_account(e, el, n, tl);
		}
		return;
	}
	if (c->role == BC_COMP) {
		if (bx_eq(name, "handshake")) {
			if (c->state != BC_READY) {
				c->state = BC_READY;
				be_setup_done(e, c);
			}
			return;
		}
		if (!is_traffic)
			return;
		c->nread++;
		if (e->o->comp_pause_ms > 0 && e->o->comp_pause_every > 0 &&
		    c->nread % (uint64_t)e->o->comp_pause_every == 0)
			c->hold_ns = e->now + (uint64_t)e->o->comp_pause_ms * 1000000ull;
		if (e->o->scenario == BS_ECHO)
			be_echo(e, c, el, n, tl, name);
		else
			be_account(e, el, n, tl);
	}
}

static void be_start_tls(struct eng *e, struct bconn *c);

/* Whether the peer ending this connection now breaks the run. Our own links
 * must stay up; the target's links to us may end once traffic has stopped;
 * a verification stream ends after its answer at any time (the target has
 * what it asked for), which is counted, not reported. */
static bool be_close_is_error(struct eng *e, struct bconn *c)
{
	if (c->role == BC_S2S_OUT || c->role == BC_COMP)
		return true;
	if (c->role == BC_S2S_IN && c->verified && !c->carried) {
		if (!c->counted_verify) {
			c->counted_verify = true;
			e->r->verify_streams++;
		}
		return false;
	}
	return e->generating;
}

static void be_process(struct eng *e, struct bconn *c)
{
	size_t pos = 0;
	while (pos < c->rlen && c->state != BC_CLOSED) {
		char *p = c->rbuf + pos;
		size_t n = c->rlen - pos;
		if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') {
			pos++;
			continue;
		}
		if (*p != '<') {
			size_t k = n < 120 ? n : 120;
			for (size_t j = 0; j < k; j++) /* keep the message on one line */
				if ((unsigned char)p[j] < 0x20)
					p[j] = '.';
			be_error(e,
				 "connection %d (%s): text outside any element at byte %zu of the buffer, "
				 "after %zu bytes of stanzas: \"%.*s\"",
				 c->idx,
				 c->role == BC_COMP     ? "component"
				 : c->role == BC_S2S_IN ? "s2s in"
							: "s2s out",
				 pos, pos, (int)k, p);
			be_close(e, c, NULL);
			return;
		}
		if (n < 2)
			break;
		if (p[1] == '?') {
			const char *q = memmem(p, n, "?>", 2);
			if (!q)
				break;
			pos += (size_t)(q + 2 - p);
			continue;
		}
		if (p[1] == '/') { /* </stream:stream> */
			size_t t = bx_tag_len(p, n);
			if (!t)
				break;
			pos += t;
			be_close(e, c, be_close_is_error(e, c) ? "stream closed by peer" : NULL);
			return;
		}
		if (c->depth == 0) {
			size_t t = bx_tag_len(p, n);
			if (!t)
				break;
			c->depth = 1;
			if (c->state == BC_CONNECTING || c->state == BC_IDLE)
				c->state = BC_STREAM;
			be_on_header(e, c, p, t);
			pos += t;
			continue;
		}
		size_t el = bx_elem_len(p, n);
		if (!el)
			break;
		be_on_stanza(e, c, p, el);
		pos += el;
		if (c->switch_tls)
			break;
	}
	if (pos > 0 && c->rbuf) {
		memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
		c->rlen -= pos;
	}
	if (c->switch_tls && c->state != BC_CLOSED)
		be_start_tls(e, c);
}

/* ---- TLS input ------------------------------------------------------------------ */

/* Drive the handshake, then move every plaintext byte into rbuf and parse it. */
static void be_tls_pump(struct eng *e, struct bconn *c)
{
	if (!c->tls_done) {
		int r = tls_handshake(c->tls);
		if (r < 0) {
			be_error(e, "connection %d (%s): TLS handshake failed: %s", c->idx,
				 c->role == BC_S2S_IN ? "s2s in" : "s2s out", tls_error(c->tls));
			be_close(e, c, NULL);
			return;
		}
		if (r == 1) {
			c->tls_done = true;
			be_on_tls_ready(e, c);
		}
	}
	while (c->tls_done && c->state != BC_CLOSED) {
		if (c->rcap - c->rlen < 16384) {
			c->rcap = c->rcap * 2 > c->rlen + 16384 ? c->rcap * 2 : c->rlen + 16384;
			c->rbuf = realloc(c->rbuf, c->rcap);
		}
		ssize_t k = tls_read(c->tls, c->rbuf + c->rlen, c->rcap - c->rlen);
		if (k == 0)
			break;
		if (k < 0) {
			be_close(e, c, be_close_is_error(e, c) ? tls_strerror((int)k) : NULL);
			return;
		}
		c->rlen += (size_t)k;
		be_process(e, c);
	}
	if (c->state != BC_CLOSED) {
		const void *p;
		if (tls_pending_out(c->tls, &p) > 0)
			be_mark_dirty(e, c);
	}
}

/* <proceed/> was received (S2S_OUT) or written (S2S_IN): the connection's
 * next bytes are TLS. Whatever followed it in the buffer is ciphertext. */
static void be_start_tls(struct eng *e, struct bconn *c)
{
	c->switch_tls = false;
	c->depth = 0;
	size_t left = c->rlen;
	c->rlen = 0;
	if (left && tls_feed(c->tls, c->rbuf, left) < 0) {
		be_close(e, c, "TLS input overflow");
		return;
	}
	if (c->role == BC_S2S_OUT || left)
		be_tls_pump(e, c); /* the client speaks first: ClientHello */
}

static void be_tls_in(struct eng *e, struct bconn *c, size_t n)
{
	int rc = tls_feed(c->tls, c->cbuf, n);
	if (rc < 0) {
		be_close(e, c, tls_strerror(rc));
		return;
	}
	be_tls_pump(e, c);
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
			  be_stream_ns_db, d, e->o->target_domain);
		c->state = BC_READY; /* nothing answers on a plain relay */
		be_setup_done(e, c);
	} else {
		be_s2s_out_header(e, c);
	}
	be_arm_recv(e, c);
}

static int be_listen(struct eng *e, const struct sockaddr_in *sa)
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
static void be_arm_accept(struct eng *e, int lfd, int tag)
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

static void be_plan(struct eng *e)
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

static void be_start_setups(struct eng *e)
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

static uint64_t be_inflight(struct eng *e)
{
	uint64_t n = 0;
	for (int i = 0; i < e->nf; i++)
		n += e->f[i].sent - e->f[i].delivered - e->f[i].bounced;
	return n;
}

static int be_ring_turn(struct eng *e, uint64_t wait_ns)
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

static void be_progress(struct eng *e, double t, const char *phase)
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

static void be_pin(const struct bench_opts *o)
{
	if (o->ncpus <= 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	for (int i = 0; i < o->ncpus; i++)
		CPU_SET(o->cpus[i], &set);
	if (sched_setaffinity(0, sizeof set, &set) < 0)
		fprintf(stderr, "fedhub-bench: cannot pin to the given CPUs: %s\n", strerror(errno));
}

/* /proc/net/snmp Udp RcvbufErrors, host-wide; -1 if unreadable. */
static int64_t be_udp_rcvbuf_errors(void)
{
	FILE *f = fopen("/proc/net/snmp", "r");
	char head[1024], vals[1024];
	int64_t v = -1;
	if (!f)
		return -1;
	while (fgets(head, sizeof head, f) && fgets(vals, sizeof vals, f)) {
		if (strncmp(head, "Udp:", 4) || strncmp(vals, "Udp:", 4))
			continue;
		/* the column named RcvbufErrors in the header line */
		int col = -1, i = 0;
		for (char *s1 = NULL, *t = strtok_r(head, " \n", &s1); t; t = strtok_r(NULL, " \n", &s1), i++)
			if (!strcmp(t, "RcvbufErrors"))
				col = i;
		i = 0;
		for (char *s2 = NULL, *t = strtok_r(vals, " \n", &s2); t; t = strtok_r(NULL, " \n", &s2), i++)
			if (i == col)
				v = strtoll(t, NULL, 10);
		break;
	}
	fclose(f);
	return v;
}

/* The fd limit raised to the hard limit; returns the limit now in force. */
static long be_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
}

/* Connections a run holds at once, about: one fd each on the bench's side. */
static long be_fds_needed(const struct bench_opts *o)
{
	long n = o->links + o->components + 64;
	if (o->scenario == BS_REMOTE_UP || o->scenario == BS_COMPONENT_S2S || o->scenario == BS_ECHO)
		n += o->domains; /* a link from the target per remote domain */
	return n;
}

static void be_sample_peak(struct eng *e)
{
	uint64_t rss = 0;
	if (e->r->have_target && bench_proc_sample(e->o->target_pid, NULL, &rss, NULL) == 0 &&
	    rss > e->r->target_peak_kib)
		e->r->target_peak_kib = rss;
}

/* burst and remote-up: everything is written at once (burst: --burst
 * stanzas over the sending links; remote-up: one per flow), then the run
 * lasts until each is accounted or --drain seconds have passed. The
 * measured window is that time; latency counts from the write. */
static void be_oneshot(struct eng *e)
{
	const struct bench_opts *o = e->o;
	struct bench_result *r = e->r;
	double cpu0 = 0, cpu1 = 0;
	e->generating = e->measuring = true;
	if (r->have_target)
		bench_proc_sample(o->target_pid, &cpu0, NULL, NULL);
	uint64_t t0 = e->now = be_now();
	int nsenders = 0;
	for (int i = 0; i < e->nc; i++)
		nsenders += e->c[i].state == BC_READY && e->c[i].nflows > 0;
	long left = o->burst;
	for (int i = 0, k = 0; i < e->nc; i++) {
		struct bconn *c = &e->c[i];
		if (c->state != BC_READY || !c->nflows)
			continue;
		long n = o->scenario == BS_BURST ? left / (nsenders - k) : c->nflows;
		left -= n;
		k++;
		for (long j = 0; j < n; j++)
			be_send_one(e, c, t0);
	}
	uint64_t next_tick = t0 + 1000000000ull, next_sample = t0;
	while (be_inflight(e) > 0 && (double)(e->now - t0) / 1e9 < o->drain) {
		if (be_ring_turn(e, 10000000ull) < 0)
			break;
		if (e->now >= next_sample) {
			be_sample_peak(e);
			next_sample = e->now + 100000000ull;
		}
		if (e->now >= next_tick) {
			be_progress(e, (double)(e->now - t0) / 1e9, o->scenario == BS_BURST ? "burst" : "come-up");
			next_tick += 1000000000ull;
		}
		if (r->error[0] && o->fault == BF_NONE)
			break;
	}
	e->measuring = false;
	uint64_t t1 = e->last_acct > t0 ? e->last_acct : e->now;
	r->drain_s = r->measured_s = (double)(t1 - t0) / 1e9;
	e->t_measure0 = t0;
	e->t_measure1 = t1;
	if (r->have_target && bench_proc_sample(o->target_pid, &cpu1, &r->target_rss_kib, &r->target_hwm_kib) == 0)
		r->target_cpu_s = cpu1 - cpu0;
	else if (r->have_target)
		be_error(e, "target process %d exited during the run", o->target_pid);
	if (r->target_peak_kib > r->target_rss_kib)
		r->target_rss_kib = r->target_peak_kib;
	e->generating = false;
}

/* The other scenarios: warm-up, measured window (closed or open loop), drain. */
static void be_timed(struct eng *e)
{
	const struct bench_opts *o = e->o;
	struct bench_result *r = e->r;
	/* traffic: warm-up, measured window, drain */
	uint64_t t0 = e->now;
	e->t_measure0 = t0 + (uint64_t)(o->warmup * 1e9);
	e->t_measure1 = e->t_measure0 + (uint64_t)(o->seconds * 1e9);
	e->generating = true;
	int nsenders = 0;
	for (int i = 0; i < e->nc; i++)
		if (e->c[i].nflows)
			nsenders++;
	for (int i = 0; i < e->nc && o->rate > 0; i++) {
		struct bconn *c = &e->c[i];
		if (!c->nflows)
			continue;
		c->interval_ns = 1e9 * nsenders / o->rate;
		/* spread the senders' phases over one interval */
		c->next_ns = c->base_ns = t0 + (uint64_t)(c->interval_ns * i / (nsenders ? nsenders : 1));
	}
	uint64_t next_tick = t0 + 1000000000ull;
	uint64_t next_sample = t0;
	double cpu0 = 0, cpu1 = 0;
	bool measuring_started = false;
	for (;;) {
		e->now = be_now();
		if (!measuring_started && e->now >= e->t_measure0) {
			measuring_started = e->measuring = true;
			if (r->have_target)
				bench_proc_sample(o->target_pid, &cpu0, &r->target_rss_kib, NULL);
			if (o->scenario == BS_STALL) {
				/* the first component (the first component domain) stops reading */
				e->stall_t0 = e->now;
				e->stall_t1 = e->now + (uint64_t)o->stall_ms * 1000000ull;
				r->stall_s = o->stall_ms / 1e3;
				for (int i = 0; i < e->nc; i++)
					if (e->c[i].role == BC_COMP && e->c[i].comp_dom == 0)
						e->c[i].hold_ns = e->stall_t1;
			}
		}
		if (e->now >= next_sample) {
			be_sample_peak(e);
			next_sample = e->now + 100000000ull;
		}
		/* a broken link ends the measurement early (except when faults are
		 * injected on purpose): the window is then what was measured */
		bool stop = r->error[0] && o->fault == BF_NONE;
		if (e->now >= e->t_measure1 || stop) {
			if (e->now < e->t_measure1)
				e->t_measure1 = e->now > e->t_measure0 ? e->now : e->t_measure0;
			e->measuring = false;
			if (measuring_started && r->have_target &&
			    bench_proc_sample(o->target_pid, &cpu1, NULL, &r->target_hwm_kib) < 0) {
				be_error(e, "target process %d exited during the run", o->target_pid);
				cpu1 = cpu0;
			}
			if (!measuring_started)
				cpu1 = cpu0 = 0;
			break;
		}
		be_generate(e);
		uint64_t wait = o->rate > 0 ? 200000ull : 50000000ull;
		if (be_ring_turn(e, wait) < 0)
			return;
		if (e->now >= next_tick) {
			if (e->measuring && r->have_target) {
				uint64_t rss = 0;
				if (bench_proc_sample(o->target_pid, NULL, &rss, NULL) == 0 && rss > r->target_rss_kib)
					r->target_rss_kib = rss;
			}
			be_progress(e, (double)(e->now - t0) / 1e9, e->measuring ? "measure" : "warmup");
			next_tick += 1000000000ull;
		}
	}
	r->measured_s = (double)(e->t_measure1 - e->t_measure0) / 1e9;
	r->target_cpu_s = cpu1 - cpu0;

	if (o->scenario == BS_IDLE_LINKS) {
		/* prove the links are alive: one stanza per flow after the idle window */
		for (int i = 0; i < e->nc; i++) {
			struct bconn *c = &e->c[i];
			if (c->state == BC_READY && c->nflows)
				for (int j = 0; j < c->nflows; j++)
					be_send_one(e, c, e->now);
		}
	}
	/* drain: wait for what is in flight, bounded */
	e->generating = false;
	uint64_t t_drain = be_now();
	while (be_inflight(e) > 0 && (double)(be_now() - t_drain) / 1e9 < o->drain) {
		if (be_ring_turn(e, 10000000ull) < 0)
			break;
		if (o->fault == BF_REORDER && e->fault_done == false)
			break;
	}
	if (measuring_started && e->last_acct > e->t_measure1)
		r->drain_s = (double)(e->last_acct - e->t_measure1) / 1e9;
}

int bench_run(const struct bench_opts *o, struct bench_result *r)
{
	struct eng E, *e = &E;
	int64_t udp0 = -1;
	memset(e, 0, sizeof E);
	memset(r, 0, sizeof *r);
	e->o = o;
	e->r = r;
	e->rng = 0x9e3779b97f4a7c15ull;
	e->lfd_db = e->lfd_relay = -1;
	for (int i = 0; i < (int)sizeof e->body; i++)
		e->body[i] = (char)('a' + i % 26);
	e->body_len = (int)sizeof e->body;
	be_pin(o);
	long nofile = be_raise_nofile(), need = be_fds_needed(o);
	if (nofile > 0 && need > nofile) {
		snprintf(r->limit_note, sizeof r->limit_note,
			 "the fd limit (hard limit %ld) is below the %ld this run needs", nofile, need);
		be_error(e, "%s", r->limit_note);
		return -1;
	}

	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	p.cq_entries = 65536;
	int rc = io_uring_queue_init_params(4096, &e->ring, &p);
	if (rc < 0) {
		memset(&p, 0, sizeof p);
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = 65536;
		rc = io_uring_queue_init_params(4096, &e->ring, &p);
	}
	if (rc < 0) {
		be_error(e, "io_uring_queue_init: %s", strerror(-rc));
		return -1;
	}

	if (o->target_pid > 0) {
		r->have_target = bench_proc_sample(o->target_pid, NULL, &r->target_rss_before_kib, NULL) == 0;
		if (!r->have_target)
			fprintf(stderr, "fedhub-bench: target pid %d not readable; no CPU/RSS figures\n",
				o->target_pid);
	}
	if (o->tls) {
		struct tls_opts to = {.ca_file = o->tls_ca, .verify_required = false};
		e->tls = tls_ctx_new(&to);
		int k = e->tls ? tls_ctx_add_cert(e->tls, o->tls_cert, o->tls_key) : TLS_ERR_NOMEM;
		if (k < 1) {
			be_error(e, "TLS: cannot load CA %s / certificate %s / key %s: %s", o->tls_ca, o->tls_cert,
				 o->tls_key, tls_strerror(k));
			goto out;
		}
		if (be_tls_more_certs(e) < 0)
			goto out;
	}
	if (o->relay) {
		e->lfd_relay = be_listen(e, &o->relay_listen);
		if (e->lfd_relay < 0)
			goto out;
		be_arm_accept(e, e->lfd_relay, 1);
	} else {
		e->lfd_db = be_listen(e, &o->listen_db);
		if (e->lfd_db < 0)
			goto out;
		be_arm_accept(e, e->lfd_db, 0);
	}
	be_plan(e);
	r->links_wanted = o->links;
	udp0 = be_udp_rcvbuf_errors();

	/* setup: components, then links, a bounded number at a time */
	uint64_t t_start = be_now(), next_tick = t_start + 1000000000ull;
	e->now = t_start;
	while (r->links_up < o->links || (o->have_comp && r->comps_up < o->components)) {
		be_start_setups(e);
		if (be_ring_turn(e, 10000000ull) < 0)
			goto out;
		if (e->now >= next_tick) {
			be_progress(e, (double)(e->now - t_start) / 1e9, "setup");
			next_tick += 1000000000ull;
		}
		bool stuck = true;
		for (int i = 0; i < e->nc; i++)
			if ((e->c[i].role == BC_S2S_OUT || e->c[i].role == BC_COMP) && e->c[i].state != BC_CLOSED)
				stuck = false;
		if (stuck || r->error[0] || (double)(e->now - t_start) / 1e9 > o->setup_timeout) {
			if (!r->error[0]) {
				int st[BC_CLOSED + 1] = {0}, nin = 0;
				for (int i = 0; i < e->nc; i++) {
					if (e->c[i].role == BC_S2S_OUT)
						st[e->c[i].state]++;
					nin += e->c[i].role == BC_S2S_IN;
				}
				be_error(e,
					 "setup incomplete after %.0f s: %d/%d links (%d connecting, %d awaiting "
					 "the stream, %d awaiting dialback results, %d closed; %d connections from "
					 "the target), %d/%d components",
					 o->setup_timeout, r->links_up, o->links, st[BC_CONNECTING], st[BC_STREAM],
					 st[BC_AUTH], st[BC_CLOSED], nin, r->comps_up,
					 o->have_comp ? o->components : 0);
			}
			goto out;
		}
	}
	r->setup_s = (double)(e->now - t_start) / 1e9;
	if (o->scenario == BS_BURST || o->scenario == BS_REMOTE_UP)
		be_oneshot(e);
	else
		be_timed(e);
out:
	r->lost = r->sent > r->delivered + r->bounced ? r->sent - r->delivered - r->bounced : 0;
	int64_t udp1 = be_udp_rcvbuf_errors();
	r->udp_rcvbuf_drops = udp0 >= 0 && udp1 >= udp0 ? udp1 - udp0 : -1;
	for (int i = 0; i < e->nc; i++) {
		struct bconn *c = &e->c[i];
		if (c->fd >= 0)
			close(c->fd);
		free(c->rbuf);
		free(c->ob[0].p);
		free(c->ob[1].p);
		tls_conn_free(c->tls);
		free(c->cbuf);
		free(c->cob.p);
	}
	/* shutdown() fails the pending accept, so the ring drops its reference
	 * to the listener now and the port is free for the next run */
	if (e->lfd_db >= 0)
		shutdown(e->lfd_db, SHUT_RDWR);
	if (e->lfd_relay >= 0)
		shutdown(e->lfd_relay, SHUT_RDWR);
	struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 50000000};
	struct io_uring_cqe *cqe;
	while (io_uring_wait_cqe_timeout(&e->ring, &cqe, &ts) == 0)
		io_uring_cqe_seen(&e->ring, cqe);
	if (e->lfd_db >= 0)
		close(e->lfd_db);
	if (e->lfd_relay >= 0)
		close(e->lfd_relay);
	io_uring_queue_exit(&e->ring);
	tls_ctx_free(e->tls);
	free(e->c);
	free(e->f);
	free(e->dirty);
	return r->error[0] ? -1 : 0;
}
