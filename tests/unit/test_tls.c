/*
 * tests/unit/test_tls.c — the TLS engine (net/tls.c) with two real wolfSSL
 * endpoints in one process, bytes pumped between their memory buffers.
 *
 * The group setup makes a throw-away PKI in a temp dir with
 * tests/certs/mkcerts.sh (openssl) plus 1,000 domain certificates made
 * in-process by tests/certs/certgen.h, and removes it all at teardown.
 * Run from the repository root (make test does), or set FEDHUB_SRCDIR.
 */
#include <wolfssl/options.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/tls.h"
#include "tests/certs/certgen.h"

#define NDOMAINS 1000

static char dir[64]; /* temp dir with the PKI */
static char ca[128];

static const char *P(const char *name, const char *ext)
{
	static char bufs[8][192];
	static int i;
	char *b = bufs[i++ & 7];
	snprintf(b, sizeof(bufs[0]), "%s/%s.%s", dir, name, ext);
	return b;
}

static int group_setup(void **state)
{
	(void)state;
	char cmd[512];
	const char *src = getenv("FEDHUB_SRCDIR");
	snprintf(dir, sizeof(dir), "/tmp/fedhub-tls-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "sh %s/tests/certs/mkcerts.sh %s", src ? src : ".", dir);
	if (system(cmd) != 0)
		return -1;
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	char sub[128];
	snprintf(sub, sizeof(sub), "%s/many", dir);
	if (mkdir(sub, 0700) < 0)
		return -1;
	struct certgen g;
	if (certgen_init(&g, P("ca", "pem"), P("ca", "key"), true) < 0)
		return -1;
	for (int i = 0; i < NDOMAINS; i++) {
		char d[64];
		snprintf(d, sizeof(d), "d%04d.example", i);
		if (certgen_domain(&g, sub, d) < 0)
			return -1;
	}
	certgen_free(&g);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ harness */

struct end {
	struct tls_conn *c;
	int hs;   /* last tls_handshake result */
	int rerr; /* last negative tls_read result */
	unsigned char rx[256 * 1024];
	size_t rxlen;
};

static struct tls_ctx *mkctx(bool verify_required, int max_version)
{
	struct tls_opts o = {.ca_file = ca, .verify_required = verify_required, .max_version = max_version};
	struct tls_ctx *x = tls_ctx_new(&o);
	assert_non_null(x);
	return x;
}

static void add(struct tls_ctx *x, const char *name)
{
	assert_true(tls_ctx_add_cert(x, P(name, "pem"), P(name, "key")) >= 1);
}

/* Drive one side after input arrived. */
static void step(struct end *e)
{
	if (e->hs != 1) {
		if (e->hs >= 0)
			e->hs = tls_handshake(e->c);
		if (e->hs != 1)
			return;
	}
	for (;;) {
		ssize_t n = tls_read(e->c, e->rx + e->rxlen, sizeof(e->rx) - e->rxlen);
		if (n <= 0) {
			if (n < 0)
				e->rerr = (int)n;
			return;
		}
		e->rxlen += (size_t)n;
	}
}

/* Move a's pending ciphertext to b, `chunk` bytes per tls_feed, stepping b after each. */
static size_t xfer(struct end *a, struct end *b, size_t chunk)
{
	const void *p;
	size_t n, moved = 0;
	while ((n = tls_pending_out(a->c, &p)) > 0) {
		if (n > chunk)
			n = chunk;
		assert_int_equal(tls_feed(b->c, p, n), 0);
		tls_consume_out(a->c, n);
		moved += n;
		step(b);
	}
	return moved;
}

/* Pump until both handshakes end (or one fails) and no bytes move. */
static void pump(struct end *cl, struct end *sv, size_t chunk)
{
	step(cl); /* ClientHello */
	for (int i = 0; i < 1000; i++) {
		size_t m = xfer(cl, sv, chunk) + xfer(sv, cl, chunk);
		if (m == 0)
			return;
	}
	fail_msg("pump did not settle");
}

static struct end *end_new(struct tls_ctx *x, bool server, const char *remote, const char *local)
{
	struct end *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	e->c = tls_conn_new(x, server, remote, local);
	assert_non_null(e->c);
	return e;
}

static void end_free(struct end *e)
{
	tls_conn_free(e->c);
	free(e);
}

static void roundtrip(struct end *cl, struct end *sv)
{
	static const char a[] = "<stream:stream to='a.example'>", b[] = "<stream:stream from='a.example'>";
	assert_int_equal(tls_write(cl->c, a, sizeof(a) - 1), 0);
	xfer(cl, sv, SIZE_MAX);
	assert_int_equal(tls_write(sv->c, b, sizeof(b) - 1), 0);
	xfer(sv, cl, SIZE_MAX);
	assert_int_equal(sv->rxlen, sizeof(a) - 1);
	assert_memory_equal(sv->rx, a, sizeof(a) - 1);
	assert_int_equal(cl->rxlen, sizeof(b) - 1);
	assert_memory_equal(cl->rx, b, sizeof(b) - 1);
}

/* A handshake between fresh contexts: a server holding sv_cert and a client
 * holding cl_cert (NULL: none; else its local domain is cl_cert.example),
 * each verify_required as *_strict, the client at most TLS 1.x cl_max (0:
 * 1.3) and dialling `remote`; pumped in chunks of `chunk` bytes (0: whole
 * flights). */
struct hs {
	bool sv_strict, cl_strict;
	int cl_max;
	const char *sv_cert, *cl_cert, *remote;
	size_t chunk;
	char local[64];
	struct tls_ctx *sx, *cx;
	struct end *sv, *cl;
};

static void hs_run(struct hs *h)
{
	h->sx = mkctx(h->sv_strict, 0);
	h->cx = mkctx(h->cl_strict, h->cl_max);
	add(h->sx, h->sv_cert);
	if (h->cl_cert) {
		add(h->cx, h->cl_cert);
		snprintf(h->local, sizeof(h->local), "%s.example", h->cl_cert);
	}
	h->sv = end_new(h->sx, true, NULL, NULL);
	h->cl = end_new(h->cx, false, h->remote, h->cl_cert ? h->local : NULL);
	pump(h->cl, h->sv, h->chunk ? h->chunk : SIZE_MAX);
}

static void hs_free(struct hs *h)
{
	end_free(h->cl), end_free(h->sv);
	tls_ctx_free(h->sx), tls_ctx_free(h->cx);
}

/* -------------------------------------------------------------- tests */

static void test_tls13_mutual_verification(void **state)
{
	(void)state;
	struct hs h = {.sv_strict = true, .cl_strict = true, .sv_cert = "a", .cl_cert = "c", .remote = "a.example"};
	hs_run(&h);
	struct end *sv = h.sv, *cl = h.cl;
	assert_int_equal(cl->hs, 1);
	assert_int_equal(sv->hs, 1);
	assert_string_equal(tls_version(cl->c), "TLSv1.3");
	assert_false(tls_resumed(cl->c));
	assert_string_equal(tls_sni(sv->c), "a.example");
	assert_int_equal(tls_peer_verify_domain(cl->c, "a.example"), 0);
	assert_int_equal(tls_peer_verify_domain(sv->c, "c.example"), 0);
	assert_int_equal(tls_peer_verify_domain(sv->c, "a.example"), TLS_ERR_NAME);
	roundtrip(cl, sv);
	hs_free(&h);
}

static void test_tls12_handshake(void **state)
{
	(void)state;
	struct hs h = {.sv_strict = true,
		       .cl_strict = true,
		       .cl_max = 12,
		       .sv_cert = "a",
		       .cl_cert = "c",
		       .remote = "a.example"};
	hs_run(&h);
	struct end *sv = h.sv, *cl = h.cl;
	assert_int_equal(cl->hs, 1);
	assert_int_equal(sv->hs, 1);
	assert_string_equal(tls_version(cl->c), "TLSv1.2");
	assert_string_equal(tls_version(sv->c), "TLSv1.2");
	assert_non_null(strstr(tls_cipher(cl->c), "GCM"));
	assert_int_equal(tls_peer_verify_domain(sv->c, "c.example"), 0);
	roundtrip(cl, sv);
	hs_free(&h);
}

static void test_cipher_list_narrowed_to_chacha(void **state)
{
	(void)state;
	struct tls_opts o = {.ca_file = ca, .ciphers = "TLS13-CHACHA20-POLY1305-SHA256"};
	struct tls_ctx *sx = tls_ctx_new(&o), *cx = mkctx(true, 0);
	assert_non_null(sx);
	add(sx, "a");
	struct end *sv = end_new(sx, true, NULL, NULL), *cl = end_new(cx, false, "a.example", NULL);
	pump(cl, sv, SIZE_MAX);
	assert_int_equal(cl->hs, 1);
	assert_non_null(strstr(tls_cipher(cl->c), "CHACHA20"));
	end_free(cl), end_free(sv);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

static void sni_pick(struct tls_ctx *sx, struct tls_ctx *cx, const char *want, const char * not )
{
	struct end *sv = end_new(sx, true, NULL, NULL), *cl = end_new(cx, false, want, NULL);
	pump(cl, sv, SIZE_MAX);
	assert_int_equal(cl->hs, 1);
	assert_int_equal(strcasecmp(tls_sni(sv->c), want), 0);
	assert_int_equal(tls_peer_verify_domain(cl->c, want), 0);
	assert_int_equal(tls_peer_verify_domain(cl->c, not ), TLS_ERR_NAME);
	end_free(cl), end_free(sv);
}

static void test_sni_selects_among_1000_domains(void **state)
{
	(void)state;
	struct tls_ctx *sx = mkctx(false, 0), *cx = mkctx(true, 0);
	char c[160], k[160], d[64];
	for (int i = 0; i < NDOMAINS; i++) {
		snprintf(d, sizeof(d), "d%04d.example", i);
		snprintf(c, sizeof(c), "%s/many/%s.pem", dir, d);
		snprintf(k, sizeof(k), "%s/many/%s.key", dir, d);
		assert_int_equal(tls_ctx_add_cert(sx, c, k), 1);
	}
	add(sx, "a"); /* wildcard *.wild.example among them */
	assert_int_equal(tls_ctx_cert_count(sx), NDOMAINS + 1);
	assert_int_equal(tls_ctx_name_count(sx), NDOMAINS + 2);
	sni_pick(sx, cx, "d0000.example", "d0001.example");
	sni_pick(sx, cx, "d0517.example", "d0000.example");
	sni_pick(sx, cx, "d0999.example", "d0998.example");
	sni_pick(sx, cx, "D0042.Example", "d0043.example");     /* case-insensitive */
	sni_pick(sx, cx, "host.wild.example", "d0000.example"); /* wildcard entry */

	/* A name we do not hold gets the default (the first loaded) certificate. */
	struct tls_ctx *lax = mkctx(false, 0);
	struct end *sv = end_new(sx, true, NULL, NULL), *cl = end_new(lax, false, "nowhere.example", NULL);
	pump(cl, sv, SIZE_MAX);
	assert_int_equal(cl->hs, 1);
	assert_int_equal(tls_peer_verify_domain(cl->c, "nowhere.example"), TLS_ERR_NAME);
	assert_int_equal(tls_peer_verify_domain(cl->c, "d0000.example"), 0);
	end_free(cl), end_free(sv);
	/* and the default can be moved (a fresh client: no session to resume) */
	tls_ctx_free(lax);
	lax = mkctx(false, 0);
	assert_int_equal(tls_ctx_set_default(sx, "d0007.example"), 0);
	sv = end_new(sx, true, NULL, NULL), cl = end_new(lax, false, "nowhere.example", NULL);
	pump(cl, sv, SIZE_MAX);
	assert_int_equal(tls_peer_verify_domain(cl->c, "d0007.example"), 0);
	end_free(cl), end_free(sv);
	tls_ctx_free(lax);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

/* Connect a lenient client to a server holding `cert`; the caller checks names. */
static struct end *peer_of(struct tls_ctx **sx, struct tls_ctx **cx, struct end **sv, const char *cert)
{
	*sx = mkctx(false, 0), *cx = mkctx(false, 0);
	add(*sx, cert);
	*sv = end_new(*sx, true, NULL, NULL);
	struct end *cl = end_new(*cx, false, "whatever.example", NULL);
	pump(cl, *sv, SIZE_MAX);
	assert_int_equal(cl->hs, 1);
	return cl;
}

static void test_wildcard_rules(void **state)
{
	(void)state;
	struct tls_ctx *sx, *cx;
	struct end *sv, *cl = peer_of(&sx, &cx, &sv, "a");
	assert_int_equal(tls_peer_verify_domain(cl->c, "a.example"), 0);
	assert_int_equal(tls_peer_verify_domain(cl->c, "A.Example."), 0);
	assert_int_equal(tls_peer_verify_domain(cl->c, "x.wild.example"), 0);
	assert_int_equal(tls_peer_verify_domain(cl->c, "wild.example"), TLS_ERR_NAME);      /* needs one label */
	assert_int_equal(tls_peer_verify_domain(cl->c, "a.b.wild.example"), TLS_ERR_NAME);  /* only one label */
	assert_int_equal(tls_peer_verify_domain(cl->c, "f.partial.example"), TLS_ERR_NAME); /* f* partial label */
	assert_int_equal(tls_peer_verify_domain(cl->c, "foo.partial.example"), TLS_ERR_NAME);
	assert_int_equal(tls_peer_verify_domain(cl->c, "x.y.inner.example"), TLS_ERR_NAME); /* not left-most */
	assert_int_equal(tls_peer_verify_domain(cl->c, "com.tld"), TLS_ERR_NAME);           /* "*.tld" refused */
	assert_int_equal(tls_peer_verify_domain(cl->c, "b.example"), TLS_ERR_NAME);
	end_free(cl), end_free(sv);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

static void test_srv_id_and_xmppaddr(void **state)
{
	(void)state;
	struct tls_ctx *sx, *cx;
	struct end *sv, *cl = peer_of(&sx, &cx, &sv, "b");
	assert_int_equal(tls_peer_verify_domain(cl->c, "srv.example"), 0);                   /* SRV-ID */
	assert_int_equal(tls_peer_verify_domain(cl->c, "addr.example"), 0);                  /* XmppAddr */
	assert_int_equal(tls_peer_verify_domain(cl->c, "b.example"), 0);                     /* DNS-ID */
	assert_int_equal(tls_peer_verify_domain(cl->c, "cn-ignored.example"), TLS_ERR_NAME); /* CN with SAN */
	assert_int_equal(tls_peer_verify_domain(cl->c, "_xmpp-server.srv.example"), TLS_ERR_NAME);
	assert_int_equal(tls_peer_verify_domain(cl->c, "example"), TLS_ERR_NAME);
	end_free(cl), end_free(sv);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

static void test_xmppaddr_internationalized(void **state)
{
	(void)state;
	struct tls_ctx *sx, *cx;
	struct end *sv, *cl = peer_of(&sx, &cx, &sv, "idn");
	/* XmppAddr "bücher.example" (UTF-8) matches its A-label form */
	assert_int_equal(tls_peer_verify_domain(cl->c, "xn--bcher-kva.example"), 0);
	assert_int_equal(tls_peer_verify_domain(cl->c, "xn--bcher-kva.example."), 0);
	assert_int_equal(tls_peer_verify_domain(cl->c, "bucher.example"), TLS_ERR_NAME);
	assert_int_equal(tls_peer_verify_domain(cl->c, "idn.example"), TLS_ERR_NAME);
	end_free(cl), end_free(sv);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

static void test_cn_used_only_without_san(void **state)
{
	(void)state;
	struct tls_ctx *sx, *cx;
	struct end *sv, *cl = peer_of(&sx, &cx, &sv, "cn");
	assert_int_equal(tls_peer_verify_domain(cl->c, "cn.example"), 0);
	assert_int_equal(tls_peer_verify_domain(cl->c, "x.cn.example"), TLS_ERR_NAME);
	end_free(cl), end_free(sv);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

/* verify_required client against a server presenting `cert` for `remote`. */
static void expect_rejected(const char *cert, const char *remote, int want)
{
	struct hs h = {.cl_strict = true, .sv_cert = cert, .remote = remote};
	hs_run(&h);
	assert_int_equal(h.cl->hs, want);
	assert_true(h.sv->hs < 0); /* the server got the client's alert */
	assert_non_null(tls_error(h.cl->c));
	hs_free(&h);

	/* lenient: the handshake completes, the verdict is kept for the s2s layer */
	h.cl_strict = false;
	hs_run(&h);
	assert_int_equal(h.cl->hs, 1);
	assert_int_equal(tls_peer_verify_domain(h.cl->c, remote), want);
	hs_free(&h);
}

static void test_wrong_name_rejected(void **state)
{
	(void)state;
	expect_rejected("a", "wrong.example", TLS_ERR_NAME);
}

static void test_expired_cert_rejected(void **state)
{
	(void)state;
	expect_rejected("expired", "expired.example", TLS_ERR_VERIFY);
}

static void test_untrusted_ca_rejected(void **state)
{
	(void)state;
	expect_rejected("untrusted", "untrusted.example", TLS_ERR_VERIFY);
}

static void test_server_cert_without_server_auth_rejected(void **state)
{
	(void)state;
	expect_rejected("clientonly", "clientonly.example", TLS_ERR_VERIFY);
}

static void test_client_cert_without_client_auth_rejected(void **state)
{
	(void)state;
	struct hs h = {
		.sv_strict = true, .cl_strict = true, .sv_cert = "a", .cl_cert = "serveronly", .remote = "a.example"};
	hs_run(&h);
	assert_int_equal(h.sv->hs, TLS_ERR_VERIFY);
	hs_free(&h);
}

static void test_untrusted_client_cert_rejected(void **state)
{
	(void)state;
	struct hs h = {
		.sv_strict = true, .cl_strict = true, .sv_cert = "a", .cl_cert = "untrusted", .remote = "a.example"};
	hs_run(&h);
	assert_int_equal(h.sv->hs, TLS_ERR_VERIFY);
	hs_free(&h);
}

static void test_no_client_cert_is_reported(void **state)
{
	(void)state;
	struct hs h = {.cl_strict = true, .sv_cert = "a", .remote = "a.example"};
	hs_run(&h);
	assert_int_equal(h.sv->hs, 1);
	assert_int_equal(tls_peer_verify_domain(h.sv->c, "c.example"), TLS_ERR_NOCERT);
	hs_free(&h);
}

static void resume(int max_version)
{
	struct tls_ctx *sx = mkctx(true, 0), *cx = mkctx(true, max_version);
	add(sx, "a");
	add(cx, "c");
	for (int round = 0; round < 3; round++) {
		struct end *sv = end_new(sx, true, NULL, NULL), *cl = end_new(cx, false, "a.example", "c.example");
		pump(cl, sv, SIZE_MAX);
		assert_int_equal(cl->hs, 1);
		assert_int_equal(sv->hs, 1);
		assert_int_equal(tls_resumed(cl->c), round > 0);
		assert_int_equal(tls_resumed(sv->c), round > 0);
		/* the identity checked in the full handshake holds for the resumed one */
		assert_int_equal(tls_peer_verify_domain(cl->c, "a.example"), 0);
		assert_int_equal(tls_peer_verify_domain(cl->c, "b.example"), TLS_ERR_NAME);
		/* a stateless ticket does not carry the client's certificate: a resumed
		 * inbound link has no certificate identity (dialback applies) */
		assert_int_equal(tls_peer_verify_domain(sv->c, "c.example"), round > 0 ? TLS_ERR_NOCERT : 0);
		roundtrip(cl, sv);
		end_free(cl), end_free(sv);
	}
	/* another remote domain has no session yet */
	struct end *sv = end_new(sx, true, NULL, NULL), *cl = end_new(cx, false, "x.wild.example", "c.example");
	pump(cl, sv, SIZE_MAX);
	assert_int_equal(cl->hs, 1);
	assert_false(tls_resumed(cl->c));
	end_free(cl), end_free(sv);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

static void test_session_resumption_tls13(void **state)
{
	(void)state;
	resume(0);
}

static void test_session_resumption_tls12(void **state)
{
	(void)state;
	resume(12);
}

/* ---- session tickets (net/tls_ticket.c) ---- */

static unsigned char master_a[96], master_b[96];
static const unsigned char *master_now; /* NULL: the local random master */

static size_t test_source(unsigned char *out, size_t cap, uint64_t *gen)
{
	*gen = master_now == master_a ? 1 : master_now == master_b ? 2 : 0;
	if (!master_now)
		return 0;
	size_t n = cap < sizeof(master_a) ? cap : sizeof(master_a);
	memcpy(out, master_now, n);
	return sizeof(master_a);
}

/* One handshake of client cx to server sx: whether it resumed (both ends agree). */
static bool connect_resumed(struct tls_ctx *sx, struct tls_ctx *cx)
{
	struct end *sv = end_new(sx, true, NULL, NULL), *cl = end_new(cx, false, "a.example", "c.example");
	pump(cl, sv, SIZE_MAX);
	assert_int_equal(cl->hs, 1);
	assert_int_equal(sv->hs, 1);
	roundtrip(cl, sv); /* the TLS 1.3 ticket arrives after the handshake */
	bool r = tls_resumed(cl->c);
	assert_int_equal(tls_resumed(sv->c), r);
	end_free(cl), end_free(sv);
	return r;
}

/* Two server contexts stand for two nodes: a ticket one issued resumes on
 * the other when both take the same master from the source, not when the
 * master differs; without a source each process has its own. TLS 1.3 only:
 * wolfSSL 5.5.4 as a TLS 1.2 client fails the handshake ("out of order
 * message") when it resumes against another server context, and when a
 * server turns its ticket down (an OpenSSL client falls back to a full
 * handshake there: t_cluster_haproxy). */
static void tickets_across_nodes(int max_version)
{
	memset(master_a, 0xa5, sizeof(master_a));
	memset(master_b, 0x5a, sizeof(master_b));
	tls_ticket_source(test_source);
	master_now = master_a;
	struct tls_ctx *node1 = mkctx(false, 0), *node2 = mkctx(false, 0), *cx = mkctx(false, max_version);
	add(node1, "a");
	add(node2, "a");
	add(cx, "c");
	assert_false(connect_resumed(node1, cx)); /* full: the client has no ticket yet */
	assert_true(connect_resumed(node2, cx));  /* node 1's ticket, on node 2 */
	assert_true(connect_resumed(node1, cx));
	uint64_t rej = tls_ticket_rejected();
	master_now = master_b; /* another cluster's keys: the ticket opens nowhere */
	assert_false(connect_resumed(node2, cx));
	assert_int_equal(tls_ticket_rejected(), rej + 1); /* one ticket, counted once */
	assert_true(connect_resumed(node1, cx)); /* the new ticket, under master b */
	master_now = NULL; /* the local random master */
	assert_false(connect_resumed(node1, cx));
	assert_true(connect_resumed(node2, cx)); /* one process: one local master */
	tls_ticket_source(NULL);
	tls_ctx_free(node1), tls_ctx_free(node2), tls_ctx_free(cx);
}

static void test_ticket_resumes_on_another_node_with_the_shared_master(void **state)
{
	(void)state;
	tickets_across_nodes(0);
}

/* A handshake that offered a cached session and failed drops that session:
 * the next attempt is a full handshake and completes. (wolfSSL 5.5.4 as a
 * TLS 1.2 client fails when a server turns its ticket down; kept, the
 * session would fail every later attempt too.) */
static void test_failed_resumption_forgets_the_session(void **state)
{
	(void)state;
	memset(master_a, 0xa5, sizeof(master_a));
	memset(master_b, 0x5a, sizeof(master_b));
	tls_ticket_source(test_source);
	struct tls_ctx *sx = mkctx(false, 0), *cx = mkctx(false, 12);
	add(sx, "a");
	add(cx, "c");
	master_now = master_a;
	assert_false(connect_resumed(sx, cx));
	master_now = master_b; /* the server no longer opens the client's ticket */
	struct end *sv = end_new(sx, true, NULL, NULL), *cl = end_new(cx, false, "a.example", "c.example");
	pump(cl, sv, SIZE_MAX);
	bool ok = cl->hs == 1 && sv->hs == 1; /* a full handshake, or a failure */
	assert_false(ok && tls_resumed(cl->c));
	end_free(cl), end_free(sv);
	assert_false(connect_resumed(sx, cx)); /* completes (connect_resumed asserts it), in full */
	assert_true(connect_resumed(sx, cx));  /* and its new ticket works */
	master_now = NULL;
	tls_ticket_source(NULL);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

/* A ticket stays good through the next rotation (and is replaced), not
 * through two. */
static void test_ticket_keys_rotate(void **state)
{
	(void)state;
	struct tls_ctx *sx = mkctx(false, 0), *cx = mkctx(false, 0);
	add(sx, "a");
	add(cx, "c");
	tls_ticket_clock_skew(0);
	assert_false(connect_resumed(sx, cx));
	tls_ticket_clock_skew(TLS_TICKET_PERIOD); /* the ticket's key is the previous one now */
	assert_true(connect_resumed(sx, cx));
	tls_ticket_clock_skew(2 * TLS_TICKET_PERIOD); /* the replacement: previous again */
	assert_true(connect_resumed(sx, cx));
	tls_ticket_clock_skew(4 * TLS_TICKET_PERIOD); /* two rotations later: rejected */
	assert_false(connect_resumed(sx, cx));
	tls_ticket_clock_skew(0);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

/* Count TLS records in a ciphertext span (5-byte headers). */
static int count_records(const unsigned char *p, size_t n)
{
	int k = 0;
	for (size_t i = 0; i + 5 <= n; k++)
		i += 5 + ((size_t)p[i + 3] << 8 | p[i + 4]);
	return k;
}

static void test_many_stanzas_in_few_records(void **state)
{
	(void)state;
	struct hs h = {.cl_strict = true, .sv_cert = "a", .remote = "a.example"};
	hs_run(&h);
	struct end *sv = h.sv, *cl = h.cl;
	assert_int_equal(cl->hs, 1);
	assert_int_equal(sv->hs, 1);
	enum { N = 200, S = 300 };
	static unsigned char batch[N * S];
	for (int i = 0; i < N; i++) {
		int n = snprintf((char *)batch + i * S, S, "<message to='x@a.example' id='%d'><body>", i);
		memset(batch + i * S + n, 'x', S - n - 17);
		memcpy(batch + i * S + S - 17, "</body></message>", 17);
	}
	int wr = tls_write(cl->c, batch, sizeof(batch));
	if (wr)
		fail_msg("%s", tls_error(cl->c));
	const void *p;
	size_t n = tls_pending_out(cl->c, &p);
	/* 60,000 bytes: four 16 KiB records, not 200 */
	assert_int_equal(count_records(p, n), (N * S + 16383) / 16384);
	xfer(cl, sv, SIZE_MAX);
	assert_int_equal(sv->rxlen, sizeof(batch));
	assert_memory_equal(sv->rx, batch, sizeof(batch));
	hs_free(&h);
}

static void byte_at_a_time(int max_version)
{
	struct hs h = {.sv_strict = true,
		       .cl_strict = true,
		       .cl_max = max_version,
		       .sv_cert = "a",
		       .cl_cert = "c",
		       .remote = "a.example",
		       .chunk = 1};
	hs_run(&h);
	struct end *sv = h.sv, *cl = h.cl;
	assert_int_equal(cl->hs, 1);
	assert_int_equal(sv->hs, 1);
	assert_int_equal(tls_peer_verify_domain(sv->c, "c.example"), 0);
	static const char msg[] = "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>";
	assert_int_equal(tls_write(cl->c, msg, sizeof(msg) - 1), 0);
	assert_int_equal(xfer(cl, sv, 1) > sizeof(msg), 1);
	assert_int_equal(sv->rxlen, sizeof(msg) - 1);
	assert_memory_equal(sv->rx, msg, sizeof(msg) - 1);
	hs_free(&h);
}

static void test_byte_at_a_time_tls13(void **state)
{
	(void)state;
	byte_at_a_time(0);
}

static void test_byte_at_a_time_tls12(void **state)
{
	(void)state;
	byte_at_a_time(12);
}

static void test_output_is_bounded(void **state)
{
	(void)state;
	struct tls_opts o = {.ca_file = ca, .out_max = 8192};
	struct tls_ctx *sx = tls_ctx_new(&o), *cx = mkctx(false, 0);
	assert_non_null(sx);
	add(sx, "a");
	struct end *sv = end_new(sx, true, NULL, NULL), *cl = end_new(cx, false, "a.example", NULL);
	pump(cl, sv, SIZE_MAX);
	assert_int_equal(sv->hs, 1);
	static char big[6000];
	memset(big, 'y', sizeof(big));
	const void *p;
	assert_int_equal(tls_write(sv->c, big, sizeof(big)), 0);
	size_t first = tls_pending_out(sv->c, &p);
	assert_int_equal(tls_write(sv->c, big, sizeof(big)), TLS_ERR_AGAIN);
	assert_int_equal(tls_pending_out(sv->c, &p), first); /* nothing half-written */
	xfer(sv, cl, SIZE_MAX);
	assert_int_equal(tls_pending_out(sv->c, &p), 0);
	assert_int_equal(tls_write(sv->c, big, sizeof(big)), 0);
	xfer(sv, cl, SIZE_MAX);
	assert_int_equal(cl->rxlen, 2 * sizeof(big));
	/* input is bounded too */
	static char junk[70000];
	assert_int_equal(tls_feed(cl->c, junk, sizeof(junk)), TLS_ERR_AGAIN);
	end_free(cl), end_free(sv);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

static void test_close_notify_and_garbage(void **state)
{
	(void)state;
	struct tls_ctx *sx = mkctx(false, 0), *cx = mkctx(false, 0);
	add(sx, "a");
	struct end *sv = end_new(sx, true, NULL, NULL), *cl = end_new(cx, false, "a.example", NULL);
	pump(cl, sv, SIZE_MAX);
	assert_int_equal(cl->hs, 1);
	assert_int_equal(tls_close_notify(cl->c), 0);
	xfer(cl, sv, SIZE_MAX);
	assert_int_equal(sv->rerr, TLS_ERR_CLOSED);
	end_free(cl), end_free(sv);

	/* the transport ending without close_notify is reported as closed too */
	sv = end_new(sx, true, NULL, NULL), cl = end_new(cx, false, "a.example", NULL);
	pump(cl, sv, SIZE_MAX);
	assert_int_equal(sv->hs, 1);
	assert_int_equal(tls_feed(sv->c, NULL, 0), 0);
	step(sv);
	assert_int_equal(sv->rerr, TLS_ERR_CLOSED);
	end_free(cl), end_free(sv);

	/* a peer speaking something else fails the handshake, without crashing */
	sv = end_new(sx, true, NULL, NULL);
	static const char junk[] = "<?xml version='1.0'?><stream:stream xmlns='jabber:server'>";
	assert_int_equal(tls_feed(sv->c, junk, sizeof(junk) - 1), 0);
	assert_true(tls_handshake(sv->c) < 0);
	assert_non_null(tls_error(sv->c));
	end_free(sv);
	tls_ctx_free(sx), tls_ctx_free(cx);
}

static void test_bad_cert_files_refused(void **state)
{
	(void)state;
	struct tls_ctx *x = mkctx(false, 0);
	assert_int_equal(tls_ctx_add_cert(x, P("nope", "pem"), P("a", "key")), TLS_ERR_ARG);
	assert_int_equal(tls_ctx_add_cert(x, P("a", "pem"), P("b", "key")), TLS_ERR_ARG); /* key mismatch */
	assert_int_equal(tls_ctx_add_cert(x, P("a", "key"), P("a", "key")), TLS_ERR_ARG);
	assert_int_equal(tls_ctx_cert_count(x), 0);
	assert_false(tls_ctx_has_name(x, "a.example"));
	assert_int_equal(tls_ctx_add_cert(x, P("a", "pem"), P("a", "key")), 2); /* a.example, *.wild.example */
	assert_true(tls_ctx_has_name(x, "a.example"));
	assert_true(tls_ctx_has_name(x, "q.wild.example"));
	assert_false(tls_ctx_has_name(x, "q.r.wild.example"));
	tls_ctx_free(x);
}

static void test_system_ca_store_loads(void **state)
{
	(void)state;
	if (access("/etc/ssl/certs/ca-certificates.crt", R_OK) != 0)
		skip();
	struct tls_ctx *x = tls_ctx_new(NULL);
	assert_non_null(x);
	/* a server certificate from our private CA is not trusted by the system store */
	struct tls_ctx *sx = mkctx(false, 0);
	add(sx, "a");
	struct end *sv = end_new(sx, true, NULL, NULL), *cl = end_new(x, false, "a.example", NULL);
	pump(cl, sv, SIZE_MAX);
	assert_int_equal(cl->hs, 1);
	assert_int_equal(tls_peer_verify_domain(cl->c, "a.example"), TLS_ERR_VERIFY);
	end_free(cl), end_free(sv);
	tls_ctx_free(sx);
	tls_ctx_free(x);
}

static void test_combined_cert_and_key_file(void **state)
{
	(void)state;
	char both[192], cmd[512];
	snprintf(both, sizeof(both), "%s/both.pem", dir);
	snprintf(cmd, sizeof(cmd), "cat %s %s > %s", P("c", "pem"), P("c", "key"), both);
	assert_int_equal(system(cmd), 0);
	struct tls_ctx *x = mkctx(false, 0);
	assert_int_equal(tls_ctx_add_cert(x, both, both), 1);
	assert_true(tls_ctx_has_name(x, "c.example"));
	tls_ctx_free(x);
}

static void test_library_info(void **state)
{
	(void)state;
	const char *s = tls_library_info();
	assert_int_equal(strncmp(s, "wolfSSL ", 8), 0);
	assert_non_null(strstr(s, "AES-NI: "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls13_mutual_verification),
		cmocka_unit_test(test_tls12_handshake),
		cmocka_unit_test(test_cipher_list_narrowed_to_chacha),
		cmocka_unit_test(test_sni_selects_among_1000_domains),
		cmocka_unit_test(test_wildcard_rules),
		cmocka_unit_test(test_srv_id_and_xmppaddr),
		cmocka_unit_test(test_xmppaddr_internationalized),
		cmocka_unit_test(test_cn_used_only_without_san),
		cmocka_unit_test(test_wrong_name_rejected),
		cmocka_unit_test(test_expired_cert_rejected),
		cmocka_unit_test(test_untrusted_ca_rejected),
		cmocka_unit_test(test_server_cert_without_server_auth_rejected),
		cmocka_unit_test(test_client_cert_without_client_auth_rejected),
		cmocka_unit_test(test_untrusted_client_cert_rejected),
		cmocka_unit_test(test_no_client_cert_is_reported),
		cmocka_unit_test(test_session_resumption_tls13),
		cmocka_unit_test(test_session_resumption_tls12),
		cmocka_unit_test(test_ticket_resumes_on_another_node_with_the_shared_master),
		cmocka_unit_test(test_ticket_keys_rotate),
		cmocka_unit_test(test_failed_resumption_forgets_the_session),
		cmocka_unit_test(test_many_stanzas_in_few_records),
		cmocka_unit_test(test_byte_at_a_time_tls13),
		cmocka_unit_test(test_byte_at_a_time_tls12),
		cmocka_unit_test(test_output_is_bounded),
		cmocka_unit_test(test_close_notify_and_garbage),
		cmocka_unit_test(test_bad_cert_files_refused),
		cmocka_unit_test(test_combined_cert_and_key_file),
		cmocka_unit_test(test_system_ca_store_loads),
		cmocka_unit_test(test_library_info),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
