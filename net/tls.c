/*
 * net/tls.c — the TLS engine for s2s links, on wolfSSL, without sockets.
 *
 * I/O. wolfSSL is given receive/send callbacks that read ciphertext from the
 * connection's input buffer (filled by tls_feed) and append records to its
 * output buffer (drained by tls_pending_out/tls_consume_out). The receive
 * callback answers WANT_READ when the buffer is empty, so wolfSSL returns to
 * the caller instead of blocking; nothing here ever sees a file descriptor.
 * Both buffers are allocated only while they hold bytes and freed when
 * drained, so an idle link costs wolfSSL's own state plus ~100 bytes. The
 * output bound is enforced before wolfSSL_write runs (room for the plaintext
 * plus record overhead), so the send callback never has to refuse and
 * wolfSSL never sees a partial write.
 *
 * Certificates. Hosted domains' chains and keys are kept as DER in the ctx
 * (loaded by net/tls_cert.c; the layout is shared in net/tls-int.h) and
 * indexed in an open-addressing hash table name -> cert by every dNSName
 * of their subjectAltName (wildcards as "*.example.org", looked up after the
 * exact name). The default certificate sits in the server WOLFSSL_CTX (wolfSSL
 * will not create a server object without one) and is shared by reference;
 * wolfSSL's certificate-setup callback picks another entry from the SNI on
 * each inbound handshake and loads it into that WOLFSSL object only;
 * wolfSSL frees per-object certs and keys with the other handshake-only state
 * (FreeHandshakeResources) when the handshake ends. One WOLFSSL_CTX per
 * direction serves all domains, so 10,000 domains cost their DER bytes plus
 * the index, not 10,000 wolfSSL contexts.
 *
 * Verification. wolfSSL verifies the chain against the CA bundle, dates and
 * extended key usage; our verify callback records the outcome and, at depth 0,
 * extracts the leaf's identities (dNSName, SRV-ID and XmppAddr otherNames, CN
 * only when there is no SAN) with net/x509.c, because wolfSSL does not expose
 * otherName SANs. The identities are kept as x509's compact blob so
 * tls_peer_verify_domain() can answer for every domain pair
 * multiplexed on a link (XEP-0288 / dialback piggybacking), and so a resumed
 * outbound session — which carries no certificate — still knows whom it
 * talks to: the session cache stores the blob beside the ticket.
 * With verify_required false the handshake completes despite a bad chain and
 * the s2s layer decides (dialback); with it true the handshake fails.
 *
 * Sessions. Outbound connections resume with tickets: a direct-mapped cache
 * keyed by (remote, local) domain pair, filled from wolfSSL's new-session
 * callback (wolfSSL's global cache is bypassed), guarded by a mutex because
 * the ctx is shared by workers; only touched at connect and on a new ticket.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "net/tls.h"
#include "net/tls-int.h"
#include "net/x509.h"

/* The peer's identities are read in the verify callback at depth 0, which
 * wolfSSL calls on success only with this (both the Debian package and
 * scripts/build-wolfssl.sh define it). */
#ifndef WOLFSSL_ALWAYS_VERIFY_CB
#error "net/tls.c needs wolfSSL built with -DWOLFSSL_ALWAYS_VERIFY_CB"
#endif

#define TLS_DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"
#define TLS_DEFAULT_CIPHERS                                                               \
	"TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:" \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                      \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                      \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_RECORD_MAX 16384
/* header 5 + AEAD tag 16 + TLS 1.2 explicit nonce 8 or TLS 1.3 type byte 1, rounded up */
#define TLS_RECORD_OVERHEAD 32

struct tls_buf {
	uint8_t *p;
	uint32_t off, len, cap;
};

struct tls_conn {
	struct tls_ctx *ctx;
	WOLFSSL *ssl;
	struct tls_buf in, out;
	uint8_t *ident;        /* peer identities, an x509_ids blob */
	uint8_t *resume_ident; /* from the session cache, used if resumed */
	char *sess_key;        /* client: session cache key */
	char *remote;          /* client: the domain dialled; server: the stream's `to`,
				* used when the client sends no SNI (STARTTLS peers
				* such as Prosody send none) */
	int verify_err;        /* first chain error (wolfSSL or X509 code), 0 = none */
	int werr;              /* last wolfSSL error */
	int fail;              /* tls_err of the failure, 0 = none */
	uint16_t ident_len, resume_ident_len;
	int16_t verify_depth;
	int resume_verify_err;
	bool server, done, eof, have_cert, name_err, resumed;
	bool resume_have_cert;
	bool offered; /* client: a cached session was offered (tls_sess_resume) */
};

/* ---------------------------------------------------------------- helpers */

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static void tls_global_init(void)
{
	wolfSSL_Init();
}

static int tls_buf_reserve(struct tls_buf *b, size_t more)
{
	if (b->off && b->off == b->len)
		b->off = b->len = 0;
	if ((size_t)b->len + more <= b->cap)
		return 0;
	if (b->off) { /* compact before growing */
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if ((size_t)b->len + more <= b->cap)
			return 0;
	}
	size_t cap = b->cap ? b->cap : 512;
	while (cap < (size_t)b->len + more)
		cap *= 2;
	if (cap > UINT32_MAX)
		return TLS_ERR_NOMEM;
	uint8_t *p = realloc(b->p, cap);
	if (!p)
		return TLS_ERR_NOMEM;
	b->p = p;
	b->cap = (uint32_t)cap;
	return 0;
}

/* Drained buffers are released: idle links hold no ciphertext memory. */
static void tls_buf_release_if_empty(struct tls_buf *b)
{
	if (b->off == b->len) {
		free(b->p);
		memset(b, 0, sizeof(*b));
	}
}

/* ------------------------------------------------------------ callbacks */

static int tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls_conn *c = arg;
	(void)ssl;
	size_t avail = c->in.len - c->in.off;
	if (avail == 0)
		return c->eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
	size_t n = avail < (size_t)sz ? avail : (size_t)sz;
	memcpy(buf, c->in.p + c->in.off, n);
	c->in.off += (uint32_t)n;
	tls_buf_release_if_empty(&c->in);
	return (int)n;
}

static int tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls_conn *c = arg;
	(void)ssl;
	/* Bounds are checked before wolfSSL_write; handshake and alerts are small. */
	if (tls_buf_reserve(&c->out, (size_t)sz) < 0)
		return WOLFSSL_CBIO_ERR_GENERAL;
	memcpy(c->out.p + c->out.len, buf, (size_t)sz);
	c->out.len += (uint32_t)sz;
	return sz;
}

static int tls_load_cert(WOLFSSL *ssl, const struct tls_cert *cert)
{
	if (wolfSSL_use_certificate_chain_buffer_format(ssl, cert->chain, cert->chain_len, WOLFSSL_FILETYPE_ASN1) !=
		    WOLFSSL_SUCCESS ||
	    wolfSSL_use_PrivateKey_buffer(ssl, cert->key, cert->key_len, WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
		return -1;
	return 0;
}

/* The name in the client's SNI (NUL-terminated by wolfSSL), or NULL. */
static const char *tls_sni_get(WOLFSSL *ssl)
{
	void *d = NULL;
	return wolfSSL_SNI_GetRequest(ssl, WOLFSSL_SNI_HOST_NAME, &d) ? d : NULL;
}

/* Server: choose the certificate from the client's SNI (after ClientHello). */
static int tls_cert_setup_cb(WOLFSSL *ssl, void *arg)
{
	struct tls_ctx *ctx = arg;
	const char *sni = tls_sni_get(ssl);
	struct tls_cert *cert = sni ? tls_names_lookup(ctx, sni) : NULL;
	if (!sni) {
		struct tls_conn *c = wolfSSL_GetIOReadCtx(ssl);
		if (c && c->server && c->remote)
			cert = tls_names_lookup(ctx, c->remote);
	}
	/* The default is loaded in the WOLFSSL_CTX and shared, not copied. */
	if (!cert || cert == ctx->def)
		return 1;
	return tls_load_cert(ssl, cert) == 0 ? 1 : 0;
}

static int tls_verify_cb(int ok, WOLFSSL_X509_STORE_CTX *st)
{
	struct tls_conn *c = st->userCtx;
	if (!c)
		return ok;
	if (!ok && c->verify_err == 0) {
		c->verify_err = st->error ? st->error : -1;
		c->verify_depth = (int16_t)st->error_depth;
	}
	if (st->error_depth == 0 && st->certs && st->totalCerts > 0 && !c->ident) {
		/* data path: without memory the peer has no identity, and fails to match */
		struct x509_ids *a = malloc(sizeof(*a));
		c->have_cert = true;
		if (a) {
			if (x509_cert_ids(st->certs[0].buffer, st->certs[0].length, a) == 0 && a->len &&
			    (c->ident = malloc(a->len))) {
				memcpy(c->ident, a->b, a->len);
				c->ident_len = (uint16_t)a->len;
			}
			free(a);
		}
		/* An outbound link must reach the domain it dialled (RFC 6120 §13.7.2.1). */
		if (!c->server && c->remote && c->ctx->opts.verify_required && ok &&
		    !x509_ids_match(c->ident, c->ident_len, c->remote)) {
			c->name_err = true;
			return 0;
		}
	}
	return c->ctx->opts.verify_required ? ok : 1;
}

/* --------------------------------------------------------- session cache */

static struct tls_sess *sess_slot(struct tls_ctx *ctx, const char *key, uint64_t *h)
{
	*h = tls_hash(key, strlen(key));
	return &ctx->sess[*h & ctx->sess_mask];
}

static void sess_clear(struct tls_sess *s)
{
	if (s->sess)
		wolfSSL_SESSION_free(s->sess);
	free(s->key);
	free(s->ident);
	memset(s, 0, sizeof(*s));
}

/* Client: wolfSSL has a new session (ticket): remember it for this domain pair. */
static int tls_new_session_cb(WOLFSSL *ssl, WOLFSSL_SESSION *sess)
{
	struct tls_conn *c = wolfSSL_GetIOReadCtx(ssl);
	if (!c || c->server || !c->sess_key || !wolfSSL_SESSION_has_ticket(sess))
		return 0;
	/* A resumed session has no certificate: carry the first handshake's identity on. */
	bool resumed = wolfSSL_session_reused(ssl) && !c->done; /* once done, ident is the effective one */
	const uint8_t *id = resumed ? c->resume_ident : c->ident;
	size_t idn = resumed ? c->resume_ident_len : c->ident_len;
	WOLFSSL_SESSION *dup = wolfSSL_SESSION_dup(sess);
	uint8_t *idc = idn ? malloc(idn) : NULL;
	char *key = strdup(c->sess_key);
	if (!dup || (idn && !idc) || !key) {
		if (dup)
			wolfSSL_SESSION_free(dup);
		free(idc);
		free(key);
		return 0;
	}
	if (idn)
		memcpy(idc, id, idn);
	struct tls_ctx *ctx = c->ctx;
	uint64_t h;
	pthread_mutex_lock(&ctx->sess_lock);
	struct tls_sess *s = sess_slot(ctx, key, &h);
	sess_clear(s);
	s->key = key;
	s->hash = h;
	s->sess = dup;
	s->ident = idc;
	s->ident_len = (uint16_t)idn;
	s->verify_err = resumed ? c->resume_verify_err : c->verify_err;
	s->have_cert = resumed ? c->resume_have_cert : c->have_cert;
	pthread_mutex_unlock(&ctx->sess_lock);
	return 0; /* wolfSSL keeps ownership of `sess` */
}

static void tls_sess_resume(struct tls_conn *c)
{
	struct tls_ctx *ctx = c->ctx;
	uint64_t h;
	pthread_mutex_lock(&ctx->sess_lock);
	struct tls_sess *s = sess_slot(ctx, c->sess_key, &h);
	if (s->sess && s->hash == h && strcmp(s->key, c->sess_key) == 0 &&
	    wolfSSL_set_session(c->ssl, s->sess) == WOLFSSL_SUCCESS) {
		if (s->ident_len && (c->resume_ident = malloc(s->ident_len))) {
			memcpy(c->resume_ident, s->ident, s->ident_len);
			c->resume_ident_len = s->ident_len;
		}
		c->resume_verify_err = s->verify_err;
		c->resume_have_cert = s->have_cert;
		c->offered = true;
	}
	pthread_mutex_unlock(&ctx->sess_lock);
}

/* Client: a handshake that offered a cached session failed. Forget the
 * session, so the next attempt is a full handshake: wolfSSL 5.5.4 as a TLS
 * 1.2 client fails the whole handshake when the server turns its ticket
 * down (a server restarted, a node with other ticket keys), and a session
 * kept would make every later attempt fail the same way. */
static void tls_sess_forget(struct tls_conn *c)
{
	struct tls_ctx *ctx = c->ctx;
	uint64_t h;
	pthread_mutex_lock(&ctx->sess_lock);
	struct tls_sess *s = sess_slot(ctx, c->sess_key, &h);
	if (s->sess && s->hash == h && strcmp(s->key, c->sess_key) == 0)
		sess_clear(s);
	pthread_mutex_unlock(&ctx->sess_lock);
}

/* ------------------------------------------------------------------ ctx */

static WOLFSSL_CTX *tls_wctx_new(const struct tls_opts *o, bool server)
{
	WOLFSSL_METHOD *m;
	if (o->max_version == 12)
		m = server ? wolfTLSv1_2_server_method() : wolfTLSv1_2_client_method();
	else if (o->min_version == 13)
		m = server ? wolfTLSv1_3_server_method() : wolfTLSv1_3_client_method();
	else
		m = server ? wolfSSLv23_server_method() : wolfSSLv23_client_method();
	WOLFSSL_CTX *w = m ? wolfSSL_CTX_new(m) : NULL;
	if (!w)
		return NULL;
	if (wolfSSL_CTX_SetMinVersion(w, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_set_cipher_list(w, o->ciphers) != WOLFSSL_SUCCESS)
		goto fail;
	if (wolfSSL_CTX_load_verify_locations_ex(w, o->ca_file, NULL, WOLFSSL_LOAD_FLAG_IGNORE_ERR) != WOLFSSL_SUCCESS)
		goto fail;
	wolfSSL_CTX_SetIORecv(w, tls_io_recv);
	wolfSSL_CTX_SetIOSend(w, tls_io_send);
	int mode = WOLFSSL_VERIFY_PEER;
	if (server && o->verify_required)
		mode |= WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	wolfSSL_CTX_set_verify(w, mode, tls_verify_cb);
	if (server) {
		/* wolfSSL keeps the client's SNI only if the server "uses" SNI itself:
		 * a placeholder name answered on mismatch stores whatever the client
		 * asked for, for the certificate callback (works without
		 * WOLFSSL_ALWAYS_KEEP_SNI or the OpenSSL-compat servername API). */
		static const char placeholder[] = "fedhub.invalid";
		if (wolfSSL_CTX_UseSNI(w, WOLFSSL_SNI_HOST_NAME, placeholder, sizeof(placeholder) - 1) !=
		    WOLFSSL_SUCCESS)
			goto fail;
		wolfSSL_CTX_SNI_SetOptions(w, WOLFSSL_SNI_HOST_NAME, WOLFSSL_SNI_ANSWER_ON_MISMATCH);
		/* tickets are stateless: no server-side session cache; their
		 * keys are net/tls_ticket.c's, shared by a cluster's nodes */
		wolfSSL_CTX_set_session_cache_mode(w, WOLFSSL_SESS_CACHE_OFF);
		if (tls_ticket_setup(w) < 0)
			goto fail;
	} else {
		wolfSSL_CTX_UseSessionTicket(w);
		wolfSSL_CTX_set_session_cache_mode(w, WOLFSSL_SESS_CACHE_CLIENT | WOLFSSL_SESS_CACHE_NO_INTERNAL);
		wolfSSL_CTX_sess_set_new_cb(w, tls_new_session_cb);
	}
	return w;
fail:
	wolfSSL_CTX_free(w);
	return NULL;
}

struct tls_ctx *tls_ctx_new(const struct tls_opts *opts)
{
	pthread_once(&tls_once, tls_global_init);
	struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return NULL;
	atomic_init(&ctx->refs, 1);
	if (opts)
		ctx->opts = *opts;
	struct tls_opts *o = &ctx->opts;
	if (!o->ca_file)
		o->ca_file = TLS_DEFAULT_CA;
	if (!o->ciphers)
		o->ciphers = TLS_DEFAULT_CIPHERS;
	if (!o->session_cache)
		o->session_cache = 1024;
	if (!o->out_max)
		o->out_max = 256 * 1024;
	if (!o->in_max)
		o->in_max = 64 * 1024;
	size_t slots = 1;
	while (slots < o->session_cache)
		slots *= 2;
	ctx->sess_mask = slots - 1;
	pthread_mutex_init(&ctx->sess_lock, NULL);
	ctx->sess = calloc(slots, sizeof(*ctx->sess));
	ctx->srv = tls_wctx_new(o, true);
	ctx->cli = tls_wctx_new(o, false);
	if (!ctx->sess || !ctx->srv || !ctx->cli) {
		tls_ctx_free(ctx);
		return NULL;
	}
	wolfSSL_CTX_set_cert_cb(ctx->srv, tls_cert_setup_cb, ctx);
	return ctx;
}

static void ctx_destroy(struct tls_ctx *ctx);

void tls_ctx_free(struct tls_ctx *ctx)
{
	if (ctx && atomic_fetch_sub(&ctx->refs, 1) == 1)
		ctx_destroy(ctx);
}

static void ctx_destroy(struct tls_ctx *ctx)
{
	if (ctx->srv)
		wolfSSL_CTX_free(ctx->srv);
	if (ctx->cli)
		wolfSSL_CTX_free(ctx->cli);
	if (ctx->scratch)
		wolfSSL_CTX_free(ctx->scratch);
	tls_certs_free(ctx);
	if (ctx->sess) {
		for (size_t i = 0; i <= ctx->sess_mask; i++)
			sess_clear(&ctx->sess[i]);
		free(ctx->sess);
	}
	pthread_mutex_destroy(&ctx->sess_lock);
	free(ctx);
}

/* ----------------------------------------------------------------- conn */

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, bool server, const char *remote, const char *local)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->ctx = ctx;
	atomic_fetch_add(&ctx->refs, 1);
	c->server = server;
	c->ssl = wolfSSL_new(server ? ctx->srv : ctx->cli);
	if (!c->ssl)
		goto fail;
	wolfSSL_SetIOReadCtx(c->ssl, c);
	wolfSSL_SetIOWriteCtx(c->ssl, c);
	wolfSSL_SetCertCbCtx(c->ssl, c);
	if (!server && remote) {
		char canon[TLS_NAME_MAX + 1];
		if (tls_canon(remote, canon) < 0 || !(c->remote = strdup(canon)))
			goto fail;
		if (wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, canon, (unsigned short)strlen(canon)) !=
		    WOLFSSL_SUCCESS)
			goto fail;
		size_t kn = strlen(canon) + 2 + (local ? strlen(local) : 0);
		if (!(c->sess_key = malloc(kn)))
			goto fail;
		snprintf(c->sess_key, kn, "%s %s", canon, local ? local : "");
		tls_sess_resume(c);
	}
	if (server && local) {
		char canon[TLS_NAME_MAX + 1];
		if (tls_canon(local, canon) >= 0 && !(c->remote = strdup(canon)))
			goto fail;
	}
	if (!server) {
		struct tls_cert *cert = local ? tls_names_lookup(ctx, local) : NULL;
		if (!cert && ctx->opts.client_default_cert)
			cert = ctx->def;
		if (cert && tls_load_cert(c->ssl, cert) < 0)
			goto fail;
	}
	return c;
fail:
	tls_conn_free(c);
	return NULL;
}

void tls_conn_free(struct tls_conn *c)
{
	if (!c)
		return;
	if (c->ssl)
		wolfSSL_free(c->ssl);
	free(c->in.p);
	free(c->out.p);
	free(c->ident);
	free(c->resume_ident);
	free(c->sess_key);
	free(c->remote);
	tls_ctx_free(c->ctx);
	free(c);
}

int tls_feed(struct tls_conn *c, const void *cipher, size_t n)
{
	if (n == 0) {
		c->eof = true;
		return 0;
	}
	if ((size_t)(c->in.len - c->in.off) + n > c->ctx->opts.in_max)
		return TLS_ERR_AGAIN;
	if (tls_buf_reserve(&c->in, n) < 0)
		return TLS_ERR_NOMEM;
	memcpy(c->in.p + c->in.len, cipher, n);
	c->in.len += (uint32_t)n;
	return 0;
}

size_t tls_in_room(const struct tls_conn *c)
{
	size_t have = (size_t)(c->in.len - c->in.off);
	return have < c->ctx->opts.in_max ? c->ctx->opts.in_max - have : 0;
}

static int tls_failed(struct tls_conn *c, int ret)
{
	int e = wolfSSL_get_error(c->ssl, ret);
	c->werr = e;
	if (c->name_err)
		c->fail = TLS_ERR_NAME;
	else if (c->verify_err && c->ctx->opts.verify_required)
		c->fail = TLS_ERR_VERIFY;
	else if (e == NO_PEER_CERT)
		c->fail = TLS_ERR_NOCERT;
	else if (e == WOLFSSL_ERROR_ZERO_RETURN || e == SOCKET_PEER_CLOSED_E || e == SOCKET_ERROR_E)
		c->fail = TLS_ERR_CLOSED;
	else
		c->fail = TLS_ERR_PROTO;
	if (!c->server && !c->done && c->offered && c->sess_key) {
		tls_sess_forget(c);
		c->offered = false;
	}
	return c->fail;
}

int tls_handshake(struct tls_conn *c)
{
	if (c->done)
		return 1;
	if (c->fail)
		return c->fail;
	int r = c->server ? wolfSSL_accept(c->ssl) : wolfSSL_connect(c->ssl);
	if (r == WOLFSSL_SUCCESS) {
		c->done = true;
		c->resumed = wolfSSL_session_reused(c->ssl) != 0;
		if (c->resumed && !c->ident) {
			c->ident = c->resume_ident;
			c->ident_len = c->resume_ident_len;
			c->verify_err = c->resume_verify_err;
			c->have_cert = c->resume_have_cert;
			c->resume_ident = NULL;
		}
		free(c->resume_ident);
		c->resume_ident = NULL;
		c->resume_ident_len = 0;
		return 1;
	}
	int e = wolfSSL_get_error(c->ssl, r);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return 0;
	return tls_failed(c, r);
}

ssize_t tls_read(struct tls_conn *c, void *plain, size_t cap)
{
	if (!c->done)
		return TLS_ERR_STATE;
	if (c->fail)
		return c->fail;
	if (cap == 0)
		return TLS_ERR_ARG;
	if (cap > INT_MAX)
		cap = INT_MAX;
	int r = wolfSSL_read(c->ssl, plain, (int)cap);
	if (r > 0)
		return r;
	int e = wolfSSL_get_error(c->ssl, r);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return c->eof && c->in.len == c->in.off ? (c->fail = TLS_ERR_CLOSED) : 0;
	return tls_failed(c, r);
}

int tls_write(struct tls_conn *c, const void *plain, size_t n)
{
	if (!c->done)
		return TLS_ERR_STATE;
	if (c->fail)
		return c->fail;
	if (n == 0)
		return 0;
	if (n > INT_MAX)
		return TLS_ERR_ARG;
	size_t records = (n + TLS_RECORD_MAX - 1) / TLS_RECORD_MAX;
	size_t need = n + records * TLS_RECORD_OVERHEAD;
	size_t pending = c->out.len - c->out.off;
	/* An empty buffer always takes one call, so a batch larger than out_max still progresses. */
	if (pending && pending + need > c->ctx->opts.out_max)
		return TLS_ERR_AGAIN;
	if (tls_buf_reserve(&c->out, need) < 0)
		return TLS_ERR_NOMEM;
	int r = wolfSSL_write(c->ssl, plain, (int)n);
	if (r == (int)n)
		return 0;
	return tls_failed(c, r);
}

int tls_close_notify(struct tls_conn *c)
{
	int r = wolfSSL_shutdown(c->ssl);
	if (r == WOLFSSL_SUCCESS || r == WOLFSSL_SHUTDOWN_NOT_DONE)
		return 0;
	int e = wolfSSL_get_error(c->ssl, r);
	return e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE ? 0 : TLS_ERR_PROTO;
}

size_t tls_pending_out(struct tls_conn *c, const void **p)
{
	*p = c->out.p ? c->out.p + c->out.off : NULL;
	return c->out.len - c->out.off;
}

void tls_consume_out(struct tls_conn *c, size_t n)
{
	size_t pending = c->out.len - c->out.off;
	c->out.off += (uint32_t)(n < pending ? n : pending);
	tls_buf_release_if_empty(&c->out);
}

const char *tls_sni(struct tls_conn *c)
{
	if (!c->server)
		return NULL;
	return tls_sni_get(c->ssl);
}

int tls_peer_verify_domain(struct tls_conn *c, const char *domain)
{
	if (!c->have_cert)
		return TLS_ERR_NOCERT;
	if (c->verify_err)
		return TLS_ERR_VERIFY;
	return x509_ids_match(c->ident, c->ident_len, domain) ? 0 : TLS_ERR_NAME;
}

bool tls_resumed(struct tls_conn *c)
{
	return c->resumed;
}
const char *tls_version(struct tls_conn *c)
{
	return wolfSSL_get_version(c->ssl);
}
const char *tls_cipher(struct tls_conn *c)
{
	return wolfSSL_get_cipher_name(c->ssl);
}

const char *tls_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case TLS_ERR_CLOSED:
		return "connection closed";
	case TLS_ERR_PROTO:
		return "TLS protocol error";
	case TLS_ERR_VERIFY:
		return "peer certificate not trusted";
	case TLS_ERR_NAME:
		return "peer certificate does not match the domain";
	case TLS_ERR_NOCERT:
		return "peer presented no certificate";
	case TLS_ERR_AGAIN:
		return "buffer full";
	case TLS_ERR_NOMEM:
		return "out of memory";
	case TLS_ERR_STATE:
		return "not valid in this state";
	case TLS_ERR_ARG:
		return "bad argument or certificate";
	}
	return "unknown TLS error";
}

/* wolfSSL reports chain errors as its own (negative) codes or, with
 * OPENSSL_COMPATIBLE_DEFAULTS, as X509_V_ERR_* (positive). */
static const char *tls_verify_str(int e)
{
	if (e > 0)
		return wolfSSL_X509_verify_cert_error_string(e);
	return wolfSSL_ERR_reason_error_string((unsigned long)e);
}

const char *tls_error(struct tls_conn *c)
{
	/* a few per-thread buffers, so two calls in one log line do not clobber each other */
	static __thread char bufs[4][256];
	static __thread unsigned turn;
	char *buf = bufs[turn++ & 3];
	const char *ws = c->werr ? wolfSSL_ERR_reason_error_string((unsigned long)c->werr) : NULL;
	if (c->name_err) {
		snprintf(buf, sizeof(bufs[0]), "%s: %s", tls_strerror(TLS_ERR_NAME), c->remote ? c->remote : "");
	} else if (c->verify_err) {
		const char *vs = tls_verify_str(c->verify_err);
		if (ws && (!vs || strstr(vs, "unknown")))
			vs = ws, ws = NULL; /* X509 codes wolfSSL cannot name */
		if (ws && strcmp(ws, vs) == 0)
			ws = NULL;
		snprintf(buf, sizeof(bufs[0]), "certificate at depth %d: %s%s%s", c->verify_depth, vs ? vs : "?",
			 ws ? "; " : "", ws ? ws : "");
	} else if (ws) {
		snprintf(buf, sizeof(bufs[0]), "%s (wolfSSL %d)", ws, c->werr);
	} else {
		snprintf(buf, sizeof(bufs[0]), "%s", tls_strerror(c->fail));
	}
	return buf;
}

const char *tls_library_info(void)
{
	static __thread char buf[96];
	const char *aesni = "no (not in this wolfSSL build)";
#ifdef WOLFSSL_AESNI
	aesni = "no (CPU lacks AES-NI)";
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, cx, d;
	if (__get_cpuid(1, &a, &b, &cx, &d) && (cx & bit_AES))
		aesni = "yes";
#endif
#endif
	snprintf(buf, sizeof(buf), "wolfSSL %s, AES-NI: %s", wolfSSL_lib_version(), aesni);
	return buf;
}
