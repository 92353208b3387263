/*
 * net/tls-int.h — what net/tls.c (the engine) and net/tls_cert.c (the
 * hosted domains' certificates) share: the context's layout and the
 * certificate index. Nothing outside net/tls*.c includes it; the rest of
 * the tree sees net/tls.h.
 */
#ifndef FEDHUB_TLS_INT_H
#define FEDHUB_TLS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "net/tls.h"

#define TLS_NAME_MAX 253

struct tls_cert {
	uint8_t *chain; /* leaf then intermediates, DER, concatenated */
	uint8_t *key;   /* private key, DER */
	uint32_t chain_len, key_len;
};

struct tls_name {
	char *name; /* lower case; "*.example.org" for a wildcard */
	uint64_t hash;
	struct tls_cert *cert;
};

struct tls_sess {
	char *key; /* "remote local" */
	uint64_t hash;
	WOLFSSL_SESSION *sess;
	uint8_t *ident;
	uint16_t ident_len;
	int verify_err;
	bool have_cert;
};

struct tls_ctx {
	struct tls_opts opts;
	WOLFSSL_CTX *srv, *cli;
	struct tls_cert **certs;
	size_t ncerts, certs_cap;
	struct tls_name *names; /* open addressing, power-of-two size */
	size_t nnames, names_cap;
	struct tls_cert *def;
	WOLFSSL_CTX *scratch; /* checks that a key matches its certificate at load */
	pthread_mutex_t sess_lock;
	struct tls_sess *sess;
	size_t sess_mask;
	/* One for the owner (tls_ctx_free) and one per tls_conn: a reload
	 * swaps in a new ctx while links made from the old one live on. */
	_Atomic long refs;
};

static inline uint64_t tls_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* tls_cert.c */
/* Lower-case copy without trailing dot; length or -1 if too long/empty. */
int tls_canon(const char *in, char out[TLS_NAME_MAX + 1]);
/* The certificate for domain: the exact name, then the wildcard covering
 * its left-most label; NULL if none. */
struct tls_cert *tls_names_lookup(const struct tls_ctx *ctx, const char *domain);
void tls_cert_free(struct tls_cert *cert);
/* The index and the certificates (tls_ctx_free). */
void tls_certs_free(struct tls_ctx *ctx);

#endif
