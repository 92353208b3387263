/*
 * net/tls_cert.c — the hosted domains' certificates of a TLS context
 * (net/tls.c is the engine that uses them).
 *
 * Chains and keys are loaded from PEM once, at start or reload, kept as DER,
 * and indexed in an open-addressing hash table name -> cert by every
 * dNSName of their subjectAltName (wildcards as "*.example.org", looked up
 * after the exact name), or by a host-like CN when there is no SAN. A key
 * that does not belong to its certificate is refused at load, not at the
 * first handshake. The first certificate loaded becomes the default one in
 * the server WOLFSSL_CTX (wolfSSL will not create a server object without
 * one); the certificate callback in tls.c picks the others by SNI.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"
#include "net/tls-int.h"
#include "net/x509.h"

/* Lower-case copy without trailing dot; length or -1 if too long/empty. */
int tls_canon(const char *in, char out[TLS_NAME_MAX + 1])
{
	size_t n = strlen(in);
	if (n && in[n - 1] == '.')
		n--;
	if (n == 0 || n > TLS_NAME_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char ch = in[i];
		out[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
	}
	out[n] = 0;
	return (int)n;
}

static char *tls_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			char *p = realloc(buf, cap);
			if (!p) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = p;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = 0;
	*len = n;
	return buf;
}

void tls_cert_free(struct tls_cert *cert)
{
	if (!cert)
		return;
	if (cert->key)
		memset(cert->key, 0, cert->key_len);
	free(cert->key);
	free(cert->chain);
	free(cert);
}

static struct tls_name *names_find(const struct tls_ctx *ctx, const char *name, size_t n, uint64_t h)
{
	if (!ctx->names_cap)
		return NULL;
	size_t mask = ctx->names_cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct tls_name *e = &ctx->names[i];
		if (!e->name)
			return NULL;
		if (e->hash == h && strncmp(e->name, name, n) == 0 && e->name[n] == 0)
			return e;
	}
}

static int names_grow(struct tls_ctx *ctx)
{
	size_t cap = ctx->names_cap ? ctx->names_cap * 2 : 1024;
	struct tls_name *t = calloc(cap, sizeof(*t));
	if (!t)
		return TLS_ERR_NOMEM;
	for (size_t i = 0; i < ctx->names_cap; i++) {
		struct tls_name *e = &ctx->names[i];
		if (!e->name)
			continue;
		size_t j = e->hash & (cap - 1);
		while (t[j].name)
			j = (j + 1) & (cap - 1);
		t[j] = *e;
	}
	free(ctx->names);
	ctx->names = t;
	ctx->names_cap = cap;
	return 0;
}

static int names_put(struct tls_ctx *ctx, const char *name, struct tls_cert *cert)
{
	size_t n = strlen(name);
	uint64_t h = tls_hash(name, n);
	struct tls_name *e = names_find(ctx, name, n, h);
	if (e) {
		e->cert = cert; /* the newest certificate wins: a renewal */
		return 0;
	}
	if ((ctx->nnames + 1) * 10 > ctx->names_cap * 7 && names_grow(ctx) < 0)
		return TLS_ERR_NOMEM;
	size_t mask = ctx->names_cap - 1, i = h & mask;
	while (ctx->names[i].name)
		i = (i + 1) & mask;
	if (!(ctx->names[i].name = strdup(name)))
		return TLS_ERR_NOMEM;
	ctx->names[i].hash = h;
	ctx->names[i].cert = cert;
	ctx->nnames++;
	return 0;
}

/* Exact name, then the wildcard covering its left-most label. */
struct tls_cert *tls_names_lookup(const struct tls_ctx *ctx, const char *domain)
{
	char c[TLS_NAME_MAX + 3];
	int n = tls_canon(domain, c + 2);
	if (n < 0)
		return NULL;
	struct tls_name *e = names_find(ctx, c + 2, (size_t)n, tls_hash(c + 2, (size_t)n));
	if (e)
		return e->cert;
	char *dot = memchr(c + 2, '.', (size_t)n);
	if (!dot || dot == c + 2)
		return NULL;
	char *w = dot - 1; /* reuse the buffer: "*" + ".rest" */
	w[0] = '*';
	size_t wn = (size_t)(c + 2 + n - w);
	e = names_find(ctx, w, wn, tls_hash(w, wn));
	return e ? e->cert : NULL;
}

/*
 * Index a certificate under the names a lookup can hit: its DNS-IDs, or its
 * CN when it has no SAN and the CN looks like a host name (RFC 6125 CN-ID);
 * no partial or inner wildcards, no "*.tld". Returns the number of names
 * indexed, or TLS_ERR_NOMEM.
 */
static int names_index(struct tls_ctx *ctx, struct tls_cert *cert, const struct x509_ids *ids)
{
	struct x509_id id;
	size_t pos = 0;
	int count = 0;
	while (x509_ids_next(ids->b, ids->len, &pos, &id)) {
		char raw[TLS_NAME_MAX + 2], c[TLS_NAME_MAX + 1];
		if ((id.kind != X509_ID_DNS && id.kind != X509_ID_CN) || id.n > TLS_NAME_MAX)
			continue;
		if (id.kind == X509_ID_CN && !memchr(id.s, '.', id.n))
			continue;
		memcpy(raw, id.s, id.n);
		raw[id.n] = 0;
		if (tls_canon(raw, c) < 0)
			continue;
		char *star = strchr(c, '*');
		if (star && (star != c || c[1] != '.' || strchr(c + 1, '*') || !strchr(c + 2, '.')))
			continue;
		if (names_put(ctx, c, cert) < 0)
			return TLS_ERR_NOMEM;
		count++;
	}
	return count;
}

/* wolfSSL refuses to create a server WOLFSSL without a certificate in its
 * context: the default one lives there, and other domains' replace it per
 * connection from the certificate callback. */
static int tls_use_default(struct tls_ctx *ctx, struct tls_cert *cert)
{
	if (wolfSSL_CTX_use_certificate_chain_buffer_format(ctx->srv, cert->chain, cert->chain_len,
							    WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_use_PrivateKey_buffer(ctx->srv, cert->key, cert->key_len, WOLFSSL_FILETYPE_ASN1) !=
		    WOLFSSL_SUCCESS)
		return TLS_ERR_ARG;
	ctx->def = cert;
	return 0;
}

/* PEM chain file -> concatenated DER; returns bytes or -1. */
static long tls_pem_chain_to_der(const char *pem, size_t len, uint8_t **out)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----", end_[] = "-----END CERTIFICATE-----";
	uint8_t *der = malloc(len);
	long n = 0;
	const char *p = pem, *pe = pem + len;
	if (!der)
		return -1;
	while ((p = memmem(p, (size_t)(pe - p), begin, sizeof(begin) - 1))) {
		const char *e = memmem(p, (size_t)(pe - p), end_, sizeof(end_) - 1);
		if (!e)
			break;
		e += sizeof(end_) - 1;
		int r = wc_CertPemToDer((const unsigned char *)p, (int)(e - p), der + n, (int)(len - (size_t)n),
					CERT_TYPE);
		if (r <= 0) {
			free(der);
			return -1;
		}
		n += r;
		p = e;
	}
	if (n == 0) {
		free(der);
		return -1;
	}
	*out = realloc(der, (size_t)n) ?: der;
	return n;
}

int tls_ctx_add_cert(struct tls_ctx *ctx, const char *cert_path, const char *key_path)
{
	size_t clen = 0, klen = 0;
	char *cpem = tls_read_file(cert_path, &clen);
	char *kpem = tls_read_file(key_path, &klen);
	struct tls_cert *cert = calloc(1, sizeof(*cert)), *added;
	struct x509_ids *ids = NULL;
	int kn, count, ret = TLS_ERR_ARG;
	long n, leaf_len;

	if (!cpem || !kpem || !cert || (n = tls_pem_chain_to_der(cpem, clen, &cert->chain)) < 0)
		goto out;
	cert->chain_len = (uint32_t)n;
	/* the leaf is the first DER element of the chain */
	if ((leaf_len = x509_der_len(cert->chain, cert->chain_len)) < 0)
		goto out;
	if (!(cert->key = malloc(klen)) ||
	    (kn = wc_KeyPemToDer((const unsigned char *)kpem, (int)klen, cert->key, (int)klen, NULL)) <= 0)
		goto out;
	cert->key_len = (uint32_t)kn;

	/* Refuse a key that does not belong to its certificate now, not at the first handshake. */
	if (!ctx->scratch && !(ctx->scratch = wolfSSL_CTX_new(wolfSSLv23_server_method())))
		goto out;
	if (wolfSSL_CTX_use_certificate_chain_buffer_format(ctx->scratch, cert->chain, cert->chain_len,
							    WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_use_PrivateKey_buffer(ctx->scratch, cert->key, cert->key_len, WOLFSSL_FILETYPE_ASN1) !=
		    WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_check_private_key(ctx->scratch) != WOLFSSL_SUCCESS ||
	    x509_key_matches_cert(cert->chain, (size_t)leaf_len, cert->key, cert->key_len) == 0)
		goto out;

	if (ctx->ncerts == ctx->certs_cap) {
		size_t cap = ctx->certs_cap ? ctx->certs_cap * 2 : 64;
		struct tls_cert **vec = realloc(ctx->certs, cap * sizeof(*vec));
		if (!vec) {
			ret = TLS_ERR_NOMEM;
			goto out;
		}
		ctx->certs = vec;
		ctx->certs_cap = cap;
	}
	/* wolfSSL has parsed the certificate above; x509 only collects names */
	if (!(ids = malloc(sizeof(*ids)))) {
		ret = TLS_ERR_NOMEM;
		goto out;
	}
	if (x509_cert_ids(cert->chain, (size_t)leaf_len, ids) < 0 || ids->len == 0)
		goto out;
	ctx->certs[ctx->ncerts++] = cert;
	count = names_index(ctx, cert, ids);
	if (count == 0) {
		ctx->ncerts--; /* names nothing; nothing refers to it */
		goto out;
	}
	/* indexed names point at it: the ctx owns it from here, even on error */
	added = cert;
	cert = NULL;
	if (count < 0)
		ret = count;
	else if (!ctx->def && tls_use_default(ctx, added) < 0)
		ret = TLS_ERR_ARG;
	else
		ret = count;
out:
	free(ids);
	tls_cert_free(cert);
	if (kpem) {
		memset(kpem, 0, klen); /* private key text */
		free(kpem);
	}
	free(cpem);
	return ret;
}

int tls_ctx_set_default(struct tls_ctx *ctx, const char *domain)
{
	struct tls_cert *c = tls_names_lookup(ctx, domain);
	return c ? tls_use_default(ctx, c) : TLS_ERR_ARG;
}

size_t tls_ctx_cert_count(const struct tls_ctx *ctx)
{
	return ctx->ncerts;
}
size_t tls_ctx_name_count(const struct tls_ctx *ctx)
{
	return ctx->nnames;
}
bool tls_ctx_has_name(const struct tls_ctx *ctx, const char *domain)
{
	return tls_names_lookup(ctx, domain) != NULL;
}

/* The index and the certificates (tls_ctx_free). */
void tls_certs_free(struct tls_ctx *ctx)
{
	for (size_t i = 0; i < ctx->names_cap; i++)
		free(ctx->names[i].name);
	free(ctx->names);
	for (size_t i = 0; i < ctx->ncerts; i++)
		tls_cert_free(ctx->certs[i]);
	free(ctx->certs);
}
