/*
 * net/tls.h — TLS for s2s links: a wolfSSL engine driven from memory buffers.
 *
 * Nothing here touches a socket. The connection code owns the socket and the
 * ring; it hands received ciphertext to tls_feed() and sends whatever
 * tls_pending_out() shows, then calls tls_consume_out() for what the kernel took.
 * wolfSSL's WANT_READ / WANT_WRITE never leave this module: they become
 * "need more input" (return 0) or "output full" (TLS_ERR_AGAIN).
 *
 * One struct tls_ctx serves both directions of a hub: it holds every hosted
 * domain's certificate (indexed by every DNS name in its SANs, wildcards
 * included, for SNI on inbound links and for the client certificate on
 * outbound ones), the trusted CAs, the cipher policy and the outbound session
 * cache. A tls_ctx is built at start-up (or reload), then shared read-only by
 * all workers; a struct tls_conn belongs to one worker.
 *
 * Driving a connection (either side):
 *   c = tls_conn_new(ctx, server, remote, local);
 *   loop: bytes from socket -> tls_feed(c, p, n);
 *         until handshake done: r = tls_handshake(c)  (1 done, 0 more, <0 fail)
 *         then: while ((n = tls_read(c, buf, cap)) > 0) deliver(buf, n);
 *         after EVERY call above, and after tls_write():
 *               while ((n = tls_pending_out(c, &p)) > 0) send p[0..n), tls_consume_out(c, sent);
 *   A client starts with tls_handshake() before any input (it writes ClientHello).
 *   On failure, flush tls_pending_out() (it may hold an alert) before closing.
 *   Keep calling tls_read() after the handshake even before sending: in TLS 1.3
 *   the server's session ticket and any rejection of the client certificate
 *   (an alert: the client's tls_handshake() has already returned 1) arrive then.
 *   Authenticate each domain pair with tls_peer_verify_domain() once done.
 *
 * Resumption: outbound links resume with tickets and keep the identity
 * verified in the full handshake. Inbound links resumed by a peer carry no
 * client certificate (tickets are stateless): tls_peer_verify_domain() says
 * TLS_ERR_NOCERT there, and the s2s layer uses dialback.
 */
#ifndef FEDHUB_TLS_H
#define FEDHUB_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct tls_ctx;
struct tls_conn;

/* Error codes (negative); tls_strerror() names them, tls_error() adds detail. */
enum tls_err {
	TLS_ERR_CLOSED = -1, /* peer sent close_notify or the transport ended */
	TLS_ERR_PROTO = -2,  /* TLS failure (alert, bad record, handshake) */
	TLS_ERR_VERIFY = -3, /* peer certificate chain not trusted / expired / bad usage */
	TLS_ERR_NAME = -4,   /* certificate does not name the domain (RFC 6125) */
	TLS_ERR_NOCERT = -5, /* peer presented no certificate */
	TLS_ERR_AGAIN = -6,  /* output or input buffer full: drain, then retry */
	TLS_ERR_NOMEM = -7,
	TLS_ERR_STATE = -8, /* call not valid now (e.g. write before handshake) */
	TLS_ERR_ARG = -9,   /* bad argument, file or certificate */
};

struct tls_opts {
	const char *ca_file; /* PEM bundle; NULL: /etc/ssl/certs/ca-certificates.crt */
	const char *ciphers; /* wolfSSL/OpenSSL cipher names, ':'-separated; NULL: AES-GCM + ChaCha20 (ECDHE) */
	int min_version;     /* 12 or 13 (TLS 1.x); 0: 12 */
	int max_version;     /* 12 or 13; 0: 13 */
	/* true: a peer whose chain does not verify fails the handshake (and a
	 * server then requires a client certificate). false: the handshake
	 * completes and tls_peer_verify_domain() reports the failure, so the s2s
	 * layer can fall back to dialback (XEP-0220). */
	bool verify_required;
	unsigned session_cache; /* outbound session cache slots; 0: 1024 */
	size_t out_max;         /* bound on buffered ciphertext to send; 0: 256 KiB */
	size_t in_max;          /* bound on buffered ciphertext received; 0: 64 KiB */
	/* true: a client whose `local` names no certificate held presents the
	 * default one (node links: one certificate per node, no domain) */
	bool client_default_cert;
};

/* wolfSSL global init is done on first use. */
struct tls_ctx *tls_ctx_new(const struct tls_opts *opts);
/* Drop the owner's reference: the ctx is freed when the last tls_conn made
 * from it is freed too (a reload swaps contexts under live links). */
void tls_ctx_free(struct tls_ctx *ctx);

/*
 * Load a hosted domain's certificate chain (PEM, leaf first) and its private
 * key (PEM), index it under every dNSName of its subjectAltName (or its CN when
 * it has no SAN). Returns the number of names indexed (>= 1) or a negative
 * tls_err. A name already indexed moves to the new certificate (a renewal).
 * The first certificate loaded is the default, used when SNI names nothing we
 * hold. Not thread-safe: load before workers use the ctx.
 */
int tls_ctx_add_cert(struct tls_ctx *ctx, const char *cert_pem_path, const char *key_pem_path);
int tls_ctx_set_default(struct tls_ctx *ctx, const char *domain);
size_t tls_ctx_cert_count(const struct tls_ctx *ctx); /* certificates held */
size_t tls_ctx_name_count(const struct tls_ctx *ctx); /* names indexed */
/* The certificate the hub would present for a name (exact, then wildcard): true if one matches. */
bool tls_ctx_has_name(const struct tls_ctx *ctx, const char *domain);

/*
 * A new connection. server: remote is NULL; the certificate is chosen from
 * the client's SNI, or, when it sends none, by `local` (the domain the
 * stream was opened to) if given. client: remote is the domain to reach (sent as SNI,
 * checked against the server's certificate when verify_required, and the key
 * of the session cache); local, when we hold its certificate, is presented if
 * the server asks for one.
 */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, bool server, const char *remote, const char *local);
void tls_conn_free(struct tls_conn *c);

/* Ciphertext from the socket. Copies. n == 0 marks end of stream. 0 or TLS_ERR_AGAIN (input full: read first). */
int tls_feed(struct tls_conn *c, const void *cipher, size_t n);
/* Bytes tls_feed() takes now (in_max less what is buffered): feed more in pieces. */
size_t tls_in_room(const struct tls_conn *c);
/* 1 done, 0 in progress (feed more / flush output), < 0 failed (tls_error() says why). */
int tls_handshake(struct tls_conn *c);
/* Plaintext: > 0 bytes, 0 nothing until more input, < 0 TLS_ERR_CLOSED or an error. */
ssize_t tls_read(struct tls_conn *c, void *plain, size_t cap);
/* Encrypts the whole buffer as records of up to 16 KiB (many stanzas per
 * record). Returns 0, or TLS_ERR_AGAIN when the bounded output cannot take it:
 * nothing was written, drain and retry. */
int tls_write(struct tls_conn *c, const void *plain, size_t n);
/* Queue close_notify. */
int tls_close_notify(struct tls_conn *c);

/* Ciphertext waiting to go out (one contiguous span) and its consumption. */
size_t tls_pending_out(struct tls_conn *c, const void **p);
void tls_consume_out(struct tls_conn *c, size_t n);

/* Server side: the name the client asked for (SNI), or NULL. */
const char *tls_sni(struct tls_conn *c);
/*
 * RFC 6125 / RFC 6120 §13.7.2: 0 if the peer's chain is trusted and its
 * certificate names `domain` as a DNS-ID (SAN dNSName, '*' only as the whole
 * left-most label, matching one label), SRV-ID (_xmpp-server.DOMAIN) or
 * XmppAddr; the CN only when the certificate has no subjectAltName (the
 * rules and the certificate reader are net/x509.h's).
 * Otherwise TLS_ERR_NOCERT, TLS_ERR_VERIFY or TLS_ERR_NAME. For a resumed
 * outbound session the identity of the original handshake is used.
 * `domain` is an A-label (IDNA) name; trailing dot ignored.
 */
int tls_peer_verify_domain(struct tls_conn *c, const char *domain);
bool tls_resumed(struct tls_conn *c);
const char *tls_version(struct tls_conn *c); /* "TLSv1.3" ... */
const char *tls_cipher(struct tls_conn *c);
/* Why the last failure happened (handshake, read, verification). Never NULL;
 * a per-thread buffer, valid until four more tls_error() calls on the thread. */
const char *tls_error(struct tls_conn *c);
const char *tls_strerror(int err);

/* "wolfSSL 5.5.4, AES-NI: yes" — the build's AES-NI support and the CPU's. */
const char *tls_library_info(void);

/*
 * Session tickets issued on inbound links (net/tls_ticket.c): ChaCha20-
 * Poly1305 under a key that rotates every TLS_TICKET_PERIOD seconds of wall
 * time, derived from a master secret; a ticket under the previous (or next)
 * period's key is still accepted and replaced. The master comes from the
 * source set here (any thread; fn returns the length of the secret it
 * copied into out, 0 for none, and its generation), so nodes that share it
 * resume each other's tickets; without a source, or while it has none, a
 * random master drawn once per process.
 */
#define TLS_TICKET_PERIOD 3600
typedef size_t (*tls_ticket_source_fn)(unsigned char *out, size_t cap, uint64_t *gen);
void tls_ticket_source(tls_ticket_source_fn fn);
/* Tickets presented that no key we hold opens (rotated out, another
 * cluster, damaged): those handshakes were full ones. */
uint64_t tls_ticket_rejected(void);
/* Tests: move the ticket clock by this many seconds. */
void tls_ticket_clock_skew(int64_t seconds);
/* net/tls.c: install the ticket callback on a server context. */
struct WOLFSSL_CTX;
int tls_ticket_setup(struct WOLFSSL_CTX *w);

#endif
