/*
 * tests/fuzz/fuzz_x509.c — certificate identities (net/x509.c) on arbitrary
 * bytes (libFuzzer).
 *
 * The input is one DER certificate, as a peer sends it. It is copied into a
 * buffer of exactly its size (so ASan sees any read past it) and read with
 * x509_cert_ids. Then: a refusal leaves no identity; every identity in the
 * blob is walkable, 1..255 bytes, without NUL, printable ASCII except an
 * XmppAddr's UTF-8; every identity that names a domain exactly (a DNS-ID or
 * CN without '*', an XmppAddr, an SRV-ID's name) matches that domain; and
 * the chain-length and key-pairing helpers stay inside the input too.
 *
 * Seeds: tests/fuzz/corpus/x509/, the certificates of tests/certs/mkcerts.sh
 * in DER (tests/fuzz/mkcorpus-x509.sh remakes them). Run: make fuzz &&
 * build/fuzz/fuzz_x509 -max_len=8192 -max_total_time=300 <a copy of that directory>
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/x509.h"

static void must(bool ok)
{
	if (!ok)
		abort();
}

static bool has_star(const char *s, size_t n)
{
	return memchr(s, '*', n) != NULL;
}

/* The identity as a domain: NUL-terminated, or false when it cannot be one. */
static bool as_domain(const char *s, size_t n, char *out)
{
	size_t k = n;
	if (k && s[k - 1] == '.')
		k--;
	if (k == 0 || has_star(s, n))
		return false;
	memcpy(out, s, n);
	out[n] = 0;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct x509_ids ids;
	static const char srv[] = "_xmpp-server.";
	uint8_t *der = malloc(size ? size : 1);
	if (!der)
		return 0;
	memcpy(der, data, size);

	int r = x509_cert_ids(der, size, &ids);
	must(r == 0 || r == -1);
	must(ids.len <= X509_IDS_MAX);
	if (r < 0)
		must(ids.len == 0);

	struct x509_id id;
	size_t pos = 0;
	while (x509_ids_next(ids.b, ids.len, &pos, &id)) {
		char d[300];
		must(id.n >= 1 && id.n <= 255 && pos <= ids.len);
		must(!memchr(id.s, 0, id.n));
		if (id.kind != X509_ID_XMPP)
			for (size_t i = 0; i < id.n; i++)
				must(id.s[i] > ' ' && id.s[i] < 0x7f);
		/* a DNS-ID's trailing dot is ignored; the other kinds compare whole */
		switch (id.kind) {
		case X509_ID_DNS:
			if (as_domain(id.s, id.n, d))
				must(x509_ids_match(ids.b, ids.len, d));
			break;
		case X509_ID_CN:
		case X509_ID_XMPP:
			if (as_domain(id.s, id.n, d) && d[id.n - 1] != '.')
				must(x509_ids_match(ids.b, ids.len, d));
			break;
		case X509_ID_SRV:
			if (id.n > sizeof(srv) - 1 && strncasecmp(id.s, srv, sizeof(srv) - 1) == 0 &&
			    as_domain(id.s + sizeof(srv) - 1, id.n - (sizeof(srv) - 1), d) && id.s[id.n - 1] != '.')
				must(x509_ids_match(ids.b, ids.len, d));
			break;
		default:
			abort();
		}
		/* a pattern never matches a domain holding '*' */
		if (id.kind == X509_ID_DNS)
			must(!x509_dns_id_match(id.s, id.n, "*.example"));
	}
	must(pos == ids.len);
	/* names of the kind peers have: exercises the IDNA path for XmppAddrs */
	x509_ids_match(ids.b, ids.len, "xn--bcher-kva.example");
	x509_ids_match(ids.b, ids.len, "a.example.");

	long l = x509_der_len(der, size);
	must(l == -1 || (l >= 2 && (size_t)l <= size));
	/* the input as both certificate and key: any answer, inside the bounds */
	int k = x509_key_matches_cert(der, size, der, size);
	must(k >= -1 && k <= 1);
	free(der);
	return 0;
}
