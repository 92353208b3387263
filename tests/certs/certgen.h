/*
 * tests/certs/certgen.h — many domain certificates, fast, in-process.
 *
 * The SNI test needs a thousand domain certificates and the start-up bench
 * ten thousand; one openssl process per certificate would take minutes, so
 * they are made here with wolfSSL's certgen: an EC P-256 key each, signed by
 * the test CA that tests/certs/mkcerts.sh wrote. Header-only (static), shared
 * by tests/unit/test_tls.c and bench/tls_bench.c; never part of the daemon.
 *
 * The domain goes in a subjectAltName dNSName when the wolfSSL build has
 * WOLFSSL_ALT_NAMES, else in the subject CN only (the TLS module indexes the
 * CN of a certificate without SAN, so both kinds exercise SNI selection).
 */
#ifndef FEDHUB_TESTS_CERTGEN_H
#define FEDHUB_TESTS_CERTGEN_H

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct certgen {
	WC_RNG rng;
	ecc_key ca_key;
	unsigned char ca_der[4096];
	int ca_der_len;
	ecc_key key; /* reused when share_key */
	bool share_key, have_key;
};

static unsigned char *certgen_slurp(const char *path, long *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	unsigned char *b = malloc(65536);
	*len = b ? (long)fread(b, 1, 65535, f) : 0;
	fclose(f);
	return b;
}

/* 0 on success. share_key: one leaf key for every certificate (faster, for tests). */
static int certgen_init(struct certgen *g, const char *ca_pem, const char *ca_keyfile, bool share_key)
{
	long n;
	unsigned char *pem, der[4096];
	word32 idx = 0;
	int r = -1;

	memset(g, 0, sizeof(*g));
	g->share_key = share_key;
	if (wc_InitRng(&g->rng) != 0 || wc_ecc_init(&g->ca_key) != 0 || wc_ecc_init(&g->key) != 0)
		return -1;
	if (!(pem = certgen_slurp(ca_pem, &n)))
		return -1;
	g->ca_der_len = wc_CertPemToDer(pem, (int)n, g->ca_der, sizeof(g->ca_der), CERT_TYPE);
	free(pem);
	if (g->ca_der_len <= 0 || !(pem = certgen_slurp(ca_keyfile, &n)))
		return -1;
	int dn = wc_KeyPemToDer(pem, (int)n, der, sizeof(der), NULL);
	free(pem);
	if (dn <= 0)
		return -1;
	/* openssl genpkey writes PKCS#8; step into the SEC1 key inside */
	if (wc_GetPkcs8TraditionalOffset(der, &idx, (word32)dn) < 0)
		idx = 0;
	if (wc_EccPrivateKeyDecode(der, &idx, &g->ca_key, (word32)dn) == 0)
		r = 0;
	return r;
}

static void certgen_free(struct certgen *g)
{
	wc_ecc_free(&g->ca_key);
	wc_ecc_free(&g->key);
	wc_FreeRng(&g->rng);
}

static int certgen_write(const char *path, const unsigned char *der, int n, int type)
{
	unsigned char pem[8192];
	int pn = wc_DerToPem(der, (word32)n, pem, sizeof(pem), type);
	FILE *f = pn > 0 ? fopen(path, "wb") : NULL;
	if (!f)
		return -1;
	int ok = fwrite(pem, 1, (size_t)pn, f) == (size_t)pn;
	return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Writes DIR/DOMAIN.pem and DIR/DOMAIN.key; 0 on success. */
static int certgen_domain(struct certgen *g, const char *dir, const char *domain)
{
	Cert cert;
	unsigned char der[4096], kder[512];
	char path[512];

	if (!g->share_key || !g->have_key) {
		wc_ecc_free(&g->key);
		if (wc_ecc_init(&g->key) != 0 || wc_ecc_make_key_ex(&g->rng, 32, &g->key, ECC_SECP256R1) != 0)
			return -1;
		g->have_key = true;
	}
	if (wc_InitCert(&cert) != 0)
		return -1;
	snprintf(cert.subject.commonName, CTC_NAME_SIZE, "%s", domain);
	cert.daysValid = 365;
	cert.sigType = CTC_SHA256wECDSA;
	if (wc_SetIssuerBuffer(&cert, g->ca_der, g->ca_der_len) != 0)
		return -1;
#ifdef WOLFSSL_CERT_EXT
	if (wc_SetExtKeyUsage(&cert, "serverAuth,clientAuth") != 0)
		return -1;
#endif
#ifdef WOLFSSL_ALT_NAMES
	{ /* GeneralNames ::= SEQUENCE { dNSName [2] IA5String } */
		size_t dn = strlen(domain);
		if (dn > 120)
			return -1;
		cert.altNames[0] = 0x30;
		cert.altNames[1] = (unsigned char)(dn + 2);
		cert.altNames[2] = 0x82;
		cert.altNames[3] = (unsigned char)dn;
		memcpy(cert.altNames + 4, domain, dn);
		cert.altNamesSz = (int)dn + 4;
	}
#endif
	int n = wc_MakeCert_ex(&cert, der, sizeof(der), ECC_TYPE, &g->key, &g->rng);
	if (n <= 0)
		return -1;
	n = wc_SignCert_ex(cert.bodySz, cert.sigType, der, sizeof(der), ECC_TYPE, &g->ca_key, &g->rng);
	if (n <= 0)
		return -1;
	snprintf(path, sizeof(path), "%s/%s.pem", dir, domain);
	if (certgen_write(path, der, n, CERT_TYPE) < 0)
		return -1;
	int kn = wc_EccKeyToDer(&g->key, kder, sizeof(kder));
	if (kn <= 0)
		return -1;
	snprintf(path, sizeof(path), "%s/%s.key", dir, domain);
	return certgen_write(path, kder, kn, ECC_PRIVATEKEY_TYPE);
}

#endif
