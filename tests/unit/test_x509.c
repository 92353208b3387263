/*
 * tests/unit/test_x509.c — certificate identities (net/x509.c): what is read
 * from DER, what matches a domain, and what a malformed certificate yields
 * (nothing).
 *
 * Two sources of certificates: the openssl-made PKI of tests/certs/mkcerts.sh
 * (made in a temp dir at group setup, removed at teardown; run from the
 * repository root or set FEDHUB_SRCDIR), and certificates assembled here
 * byte by byte with a small DER writer, so each malformation is exact.
 * Neither is signed meaningfully: x509 reads identities, wolfSSL verifies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/x509.h"

/* ------------------------------------------------------------ a DER writer */

typedef struct {
	size_t n;
	uint8_t b[8192];
} der;

static der raw(const void *p, size_t n)
{
	der d = {.n = n};
	assert_true(n <= sizeof(d.b));
	memcpy(d.b, p, n);
	return d;
}

static der str(const char *s)
{
	return raw(s, strlen(s));
}

static der cat(int count, ...)
{
	der d = {0};
	va_list ap;
	va_start(ap, count);
	for (int i = 0; i < count; i++) {
		der x = va_arg(ap, der);
		assert_true(d.n + x.n <= sizeof(d.b));
		memcpy(d.b + d.n, x.b, x.n);
		d.n += x.n;
	}
	va_end(ap);
	return d;
}

/* tag, minimal DER length, value */
static der tlv(uint8_t tag, der v)
{
	uint8_t h[6] = {tag};
	size_t hn = 2;
	if (v.n < 0x80) {
		h[1] = (uint8_t)v.n;
	} else if (v.n < 0x100) {
		h[1] = 0x81, h[2] = (uint8_t)v.n, hn = 3;
	} else {
		h[1] = 0x82, h[2] = (uint8_t)(v.n >> 8), h[3] = (uint8_t)v.n, hn = 4;
	}
	return cat(2, raw(h, hn), v);
}

static const uint8_t OID_SAN[] = {0x55, 0x1d, 0x11};
static const uint8_t OID_CN[] = {0x55, 0x04, 0x03};
static const uint8_t OID_O[] = {0x55, 0x04, 0x0a};
static const uint8_t OID_BC[] = {0x55, 0x1d, 0x13};
static const uint8_t OID_XMPP[] = {0x2b, 6, 1, 5, 5, 7, 8, 5};
static const uint8_t OID_SRV[] = {0x2b, 6, 1, 5, 5, 7, 8, 7};
static const uint8_t OID_ECDSA_SHA256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

static der oid(const uint8_t *o, size_t n)
{
	return tlv(0x06, raw(o, n));
}
#define OID(o) oid(o, sizeof(o))

static der dns(const char *s)
{
	return tlv(0x82, str(s));
}
static der other(const uint8_t *o, size_t on, uint8_t strtag, der v)
{
	return tlv(0xa0, cat(2, oid(o, on), tlv(0xa0, tlv(strtag, v))));
}
static der xmpp(const char *s)
{
	return other(OID_XMPP, sizeof(OID_XMPP), 0x0c, str(s));
}
static der srv(const char *s)
{
	return other(OID_SRV, sizeof(OID_SRV), 0x16, str(s));
}
static der ext(const uint8_t *o, size_t on, der value)
{
	return tlv(0x30, cat(2, oid(o, on), tlv(0x04, value)));
}
static der san(der names)
{
	return ext(OID_SAN, sizeof(OID_SAN), tlv(0x30, names));
}
/* Name with one RDN: CN of the given string type */
static der name_cn_typed(uint8_t strtag, der v)
{
	return tlv(0x30, tlv(0x31, tlv(0x30, cat(2, OID(OID_CN), tlv(strtag, v)))));
}
static der name_cn(const char *cn)
{
	return name_cn_typed(0x0c, str(cn));
}

static der tbs_with(der subject, der tail)
{
	static const uint8_t point[66] = {0x00, 0x04}; /* BIT STRING: no unused bits, uncompressed point */
	der alg = tlv(0x30, OID(OID_ECDSA_SHA256));
	der validity = tlv(0x30, cat(2, tlv(0x17, str("250101000000Z")), tlv(0x17, str("350101000000Z"))));
	der spki = tlv(0x30, cat(2, tlv(0x30, OID(OID_ECDSA_SHA256)), tlv(0x03, raw(point, sizeof(point)))));
	return tlv(0x30, cat(8, tlv(0xa0, tlv(0x02, raw("\x02", 1))), tlv(0x02, raw("\x01", 1)), alg, name_cn("ca"),
			     validity, subject, spki, tail));
}

static der cert_of_tbs(der tbs)
{
	return tlv(0x30, cat(3, tbs, tlv(0x30, OID(OID_ECDSA_SHA256)), tlv(0x03, raw("\x00\x01", 2))));
}

/* A certificate with this subject and these extensions (none when exts.n == 0). */
static der cert(der subject, der exts)
{
	der tail = exts.n ? tlv(0xa3, tlv(0x30, exts)) : (der){0};
	return cert_of_tbs(tbs_with(subject, tail));
}

static const der none;

/* ------------------------------------------------------------- helpers */

static struct x509_ids ids;

static int read_ids(der d)
{
	return x509_cert_ids(d.b, d.n, &ids);
}

static bool match(const char *domain)
{
	return x509_ids_match(ids.b, ids.len, domain);
}

static int count_ids(void)
{
	struct x509_id id;
	size_t pos = 0;
	int n = 0;
	while (x509_ids_next(ids.b, ids.len, &pos, &id))
		n++;
	return n;
}

/* The one identity kept, as a string. */
static const char *only_id(enum x509_id_kind *kind)
{
	static char s[300];
	struct x509_id id;
	size_t pos = 0;
	assert_int_equal(count_ids(), 1);
	assert_true(x509_ids_next(ids.b, ids.len, &pos, &id));
	memcpy(s, id.s, id.n);
	s[id.n] = 0;
	*kind = id.kind;
	return s;
}

/* A malformed certificate gives -1 and no identity, whatever it held. */
static void expect_malformed(der d)
{
	ids.len = 99;
	assert_int_equal(read_ids(d), -1);
	assert_int_equal(ids.len, 0);
	assert_false(match("a.example"));
}

/* ---------------------------------------------------- the test PKI */

static char dir[64];

static int group_setup(void **state)
{
	(void)state;
	char cmd[256];
	const char *src = getenv("FEDHUB_SRCDIR");
	snprintf(dir, sizeof(dir), "/tmp/fedhub-x509-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "sh %s/tests/certs/mkcerts.sh %s", src ? src : ".", dir);
	if (system(cmd) != 0)
		return -1;
	/* DER copies of what the tests read: the certificates and two keys */
	snprintf(cmd, sizeof(cmd),
		 "cd %s && for n in a b cn idn ca; do openssl x509 -in $n.pem -outform DER -out $n.der || exit 1; done"
		 " && for n in a b; do openssl pkey -in $n.key -outform DER -out $n.key.der || exit 1; done",
		 dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static der slurp_der(const char *name, const char *ext)
{
	char path[128];
	der d = {0};
	snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	d.n = fread(d.b, 1, sizeof(d.b), f);
	fclose(f);
	assert_true(d.n > 0 && d.n < sizeof(d.b));
	return d;
}

/* tests/certs/mkcerts.sh's NAME.pem and NAME.key, in DER. */
static der pki_cert(const char *name)
{
	return slurp_der(name, "der");
}

static der pki_key(const char *name)
{
	return slurp_der(name, "key.der");
}

/* ------------------------------------------------ identities of real certs */

static void test_openssl_dns_ids_and_wildcards(void **state)
{
	(void)state;
	assert_int_equal(read_ids(pki_cert("a")), 0);
	assert_int_equal(count_ids(), 5);
	assert_true(match("a.example"));
	assert_true(match("A.Example."));
	assert_true(match("x.wild.example"));
	assert_false(match("wild.example"));        /* '*' stands for one label */
	assert_false(match("a.b.wild.example"));    /* exactly one */
	assert_false(match("f.partial.example"));   /* f*: partial label */
	assert_false(match("foo.partial.example")); /* ... never matches */
	assert_false(match("x.y.inner.example"));   /* not the left-most label */
	assert_false(match("com.tld"));             /* "*.tld" refused */
	assert_false(match("b.example"));
}

static void test_openssl_srv_id_xmppaddr_and_cn_ignored(void **state)
{
	(void)state;
	assert_int_equal(read_ids(pki_cert("b")), 0);
	assert_int_equal(count_ids(), 3); /* SRV-ID, XmppAddr, DNS-ID; not the CN */
	assert_true(match("srv.example"));
	assert_true(match("addr.example"));
	assert_true(match("b.example"));
	assert_false(match("cn-ignored.example")); /* a SAN exists */
	assert_false(match("_xmpp-server.srv.example"));
	assert_false(match("example"));
}

static void test_openssl_cn_only_without_san(void **state)
{
	(void)state;
	enum x509_id_kind k;
	assert_int_equal(read_ids(pki_cert("cn")), 0);
	assert_string_equal(only_id(&k), "cn.example");
	assert_int_equal(k, X509_ID_CN);
	assert_true(match("cn.example"));
	assert_false(match("x.cn.example"));
}

static void test_openssl_idn_xmppaddr(void **state)
{
	(void)state;
	assert_int_equal(read_ids(pki_cert("idn")), 0);
	assert_int_equal(count_ids(), 2);
	assert_true(match("xn--bcher-kva.example"));
	assert_true(match("XN--BCHER-KVA.example"));
	assert_false(match("bcher.example"));
}

static void test_chain_leaf_length_and_key_pairing(void **state)
{
	(void)state;
	der a = pki_cert("a"), ca = pki_cert("ca"), chain = cat(2, a, ca);
	assert_int_equal(x509_der_len(chain.b, chain.n), (long)a.n);
	assert_int_equal(x509_der_len(chain.b, 1), -1);
	der ka = pki_key("a"), kb = pki_key("b");
	assert_int_equal(x509_key_matches_cert(a.b, a.n, ka.b, ka.n), 1);
	assert_int_equal(x509_key_matches_cert(a.b, a.n, kb.b, kb.n), 0);
	assert_int_equal(x509_key_matches_cert(a.b, 10, ka.b, ka.n), -1);
}

/* -------------------------------------------------- identity types, built */

static void test_each_identity_type(void **state)
{
	(void)state;
	enum x509_id_kind k;

	assert_int_equal(read_ids(cert(name_cn("x"), san(dns("d.example")))), 0);
	assert_string_equal(only_id(&k), "d.example");
	assert_int_equal(k, X509_ID_DNS);

	assert_int_equal(read_ids(cert(name_cn("x"), san(srv("_xmpp-server.s.example")))), 0);
	assert_string_equal(only_id(&k), "_xmpp-server.s.example");
	assert_int_equal(k, X509_ID_SRV);
	assert_true(match("s.example"));
	assert_true(match("S.EXAMPLE."));
	assert_false(match("_xmpp-server.s.example"));

	/* an SRV-ID for another service names no XMPP server */
	assert_int_equal(read_ids(cert(name_cn("x"), san(srv("_xmpp-client.s.example")))), 0);
	assert_false(match("s.example"));

	assert_int_equal(read_ids(cert(name_cn("x"), san(xmpp("x.example")))), 0);
	assert_string_equal(only_id(&k), "x.example");
	assert_int_equal(k, X509_ID_XMPP);
	assert_true(match("x.example"));
	assert_false(match("y.x.example"));

	/* an XmppAddr holding a full JID is not the server's domain */
	assert_int_equal(read_ids(cert(name_cn("x"), san(cat(2, xmpp("u@j.example"), xmpp("j.example/r"))))), 0);
	assert_int_equal(count_ids(), 2);
	assert_false(match("j.example"));

	assert_int_equal(read_ids(cert(name_cn("c.example"), none)), 0);
	assert_string_equal(only_id(&k), "c.example");
	assert_int_equal(k, X509_ID_CN);
}

static void test_cn_ignored_when_san_present_even_empty_or_foreign(void **state)
{
	(void)state;
	static const uint8_t ip[] = {127, 0, 0, 1};
	/* a SAN with only an iPAddress: no DNS identity, and still no CN */
	assert_int_equal(read_ids(cert(name_cn("c.example"), san(tlv(0x87, raw(ip, 4))))), 0);
	assert_int_equal(ids.len, 0);
	assert_false(match("c.example"));
	assert_int_equal(read_ids(cert(name_cn("c.example"), san(none))), 0);
	assert_false(match("c.example"));
	/* other extensions do not hide the CN */
	der bc = ext(OID_BC, sizeof(OID_BC), tlv(0x30, none));
	assert_int_equal(read_ids(cert(name_cn("c.example"), bc)), 0);
	assert_true(match("c.example"));
}

static void test_cn_string_types(void **state)
{
	(void)state;
	static const uint8_t bmp[] = {0, 'c', 0, '.', 0, 'e', 0, 'x'};
	assert_int_equal(read_ids(cert(name_cn_typed(0x13, str("p.example")), none)), 0); /* PrintableString */
	assert_true(match("p.example"));
	assert_int_equal(read_ids(cert(name_cn_typed(0x16, str("i.example")), none)), 0); /* IA5String */
	assert_true(match("i.example"));
	assert_int_equal(read_ids(cert(name_cn_typed(0x1e, raw(bmp, sizeof(bmp))), none)), 0); /* BMPString */
	assert_int_equal(ids.len, 0);
	assert_int_equal(read_ids(cert(name_cn_typed(0x04, str("o.example")), none)), 0); /* not a string */
	assert_int_equal(ids.len, 0);
	/* not the CN attribute */
	der org = tlv(0x30, tlv(0x31, tlv(0x30, cat(2, OID(OID_O), tlv(0x0c, str("o.example"))))));
	assert_int_equal(read_ids(cert(org, none)), 0);
	assert_int_equal(ids.len, 0);
	/* CNs of several RDNs are all kept */
	der two = tlv(0x30, cat(2, tlv(0x31, tlv(0x30, cat(2, OID(OID_CN), tlv(0x0c, str("one.example"))))),
				tlv(0x31, tlv(0x30, cat(2, OID(OID_CN), tlv(0x0c, str("two.example")))))));
	assert_int_equal(read_ids(cert(two, none)), 0);
	assert_true(match("one.example") && match("two.example"));
	/* a CN never matches as a wildcard */
	assert_int_equal(read_ids(cert(name_cn("*.w.example"), none)), 0);
	assert_false(match("a.w.example"));
}

static void test_dns_id_wildcard_rules(void **state)
{
	(void)state;
	assert_true(x509_dns_id_match("*.example.org", 13, "chat.example.org"));
	assert_true(x509_dns_id_match("*.Example.ORG.", 14, "chat.example.org"));
	assert_false(x509_dns_id_match("*.example.org", 13, "*.example.org"));
	assert_false(x509_dns_id_match("*.example.org", 13, ".example.org"));
	assert_false(x509_dns_id_match("*.example.org", 13, "example.org"));
	assert_false(x509_dns_id_match("*.example.org", 13, "a.b.example.org"));
	assert_false(x509_dns_id_match("*", 1, "example"));
	assert_false(x509_dns_id_match("*.", 2, "a."));
	assert_false(x509_dns_id_match("*.org", 5, "example.org"));
	assert_false(x509_dns_id_match("a*.example.org", 14, "ab.example.org"));
	assert_false(x509_dns_id_match("*a.example.org", 14, "ba.example.org"));
	assert_false(x509_dns_id_match("a.*.example.org", 15, "a.b.example.org"));
	assert_false(x509_dns_id_match("*.*.example.org", 15, "a.b.example.org"));
	assert_true(x509_dns_id_match("example.org", 11, "EXAMPLE.org."));
	assert_false(x509_dns_id_match("example.org", 11, "example.org.evil"));
	assert_false(x509_dns_id_match("example.org", 11, "xexample.org"));
	assert_false(x509_dns_id_match("", 0, "example.org"));
	assert_false(x509_dns_id_match(".", 1, "."));
	assert_false(x509_dns_id_match("example.org", 11, ""));
	/* the length is the pattern's: bytes past it are not part of it */
	assert_true(x509_dns_id_match("example.orgXYZ", 11, "example.org"));
}

static void test_idna_a_labels(void **state)
{
	(void)state;
	/* DNS-IDs are A-labels and compared as ASCII, case-insensitively */
	assert_int_equal(
		read_ids(cert(name_cn("x"), san(cat(2, dns("xn--bcher-kva.example"), dns("*.xn--caf-dma.example"))))),
		0);
	assert_true(match("xn--bcher-kva.example"));
	assert_true(match("XN--BCHER-KVA.EXAMPLE"));
	assert_true(match("a.xn--caf-dma.example"));
	assert_true(match("xn--bcher-kva.xn--caf-dma.example"));
	assert_false(match("bcher.example"));
	/* a wildcard inside an A-label is a partial label */
	assert_int_equal(read_ids(cert(name_cn("x"), san(dns("xn--*.example")))), 0);
	assert_false(match("xn--bcher-kva.example"));
	/* an XmppAddr may be a U-label name; it is compared in its A-label form */
	assert_int_equal(read_ids(cert(name_cn("x"), san(xmpp("b\xc3\xbc"
							      "cher.example")))),
			 0);
	assert_true(match("xn--bcher-kva.example"));
	assert_false(match("bucher.example"));
	/* a U-label DNS-ID is not IA5: dropped */
	assert_int_equal(read_ids(cert(name_cn("x"), san(dns("b\xc3\xbc"
							     "cher.example")))),
			 0);
	assert_int_equal(ids.len, 0);
}

/* ----------------------------------------------------- names that are dropped */

static void test_non_ia5_and_unprintable_names_dropped(void **state)
{
	(void)state;
	enum x509_id_kind k;
	der bad = cat(6, dns("sp ace.example"), dns("tab\t.example"), dns("del\x7f.example"), dns("hi\x80.example"),
		      srv("_xmpp-server.\xc3\xa9.example"), dns("ok.example"));
	assert_int_equal(read_ids(cert(name_cn("x"), san(bad))), 0);
	assert_string_equal(only_id(&k), "ok.example");
	/* SRV-ID must be IA5String, XmppAddr UTF8String: other types are ignored */
	der wrong = cat(2, other(OID_SRV, sizeof(OID_SRV), 0x0c, str("_xmpp-server.s.example")),
			other(OID_XMPP, sizeof(OID_XMPP), 0x16, str("x.example")));
	assert_int_equal(read_ids(cert(name_cn("x"), san(wrong))), 0);
	assert_int_equal(ids.len, 0);
	/* an unknown otherName is skipped */
	static const uint8_t oid_upn[] = {0x2b, 6, 1, 4, 1, 0x82, 0x37, 20, 2, 3};
	assert_int_equal(read_ids(cert(name_cn("x"), san(other(oid_upn, sizeof(oid_upn), 0x0c, str("u.example"))))), 0);
	assert_int_equal(ids.len, 0);
}

static void test_invalid_utf8_xmppaddr_dropped(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"\xc3.example",             /* truncated sequence */
		"\xc0\xaf.example",         /* overlong '/' */
		"\xe0\x80\xaf.example",     /* overlong */
		"\xed\xa0\x80.example",     /* surrogate */
		"\xf4\x90\x80\x80.example", /* past U+10FFFF */
		"\xff.example",
		"a\x01.example", /* control character */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(read_ids(cert(name_cn("x"), san(xmpp(bad[i])))), 0);
		assert_int_equal(ids.len, 0);
	}
	assert_int_equal(read_ids(cert(name_cn("x"), san(xmpp("\xf0\x9f\x98\x80.example")))), 0); /* U+1F600 */
	assert_int_equal(count_ids(), 1);
}

static void test_embedded_nul_names_dropped(void **state)
{
	(void)state;
	static const char dn[] = "a.example\0.evil.example";
	der gn = cat(3, tlv(0x82, raw(dn, sizeof(dn) - 1)),
		     other(OID_XMPP, sizeof(OID_XMPP), 0x0c, raw(dn, sizeof(dn) - 1)),
		     other(OID_SRV, sizeof(OID_SRV), 0x16, raw("_xmpp-server.a.example\0x", 24)));
	assert_int_equal(read_ids(cert(name_cn("x"), san(gn))), 0);
	assert_int_equal(ids.len, 0);
	assert_false(match("a.example"));
	assert_false(match("evil.example"));
	assert_int_equal(read_ids(cert(name_cn_typed(0x0c, raw(dn, sizeof(dn) - 1)), none)), 0);
	assert_int_equal(ids.len, 0);
}

static void test_overlong_names_dropped_and_blob_bounded(void **state)
{
	(void)state;
	char big[300];
	memset(big, 'a', sizeof(big));
	memcpy(big + sizeof(big) - 9, ".example", 9);
	assert_int_equal(read_ids(cert(name_cn("x"), san(dns(big)))), 0);
	assert_int_equal(ids.len, 0);

	/* 30 names of 200 bytes are more than X509_IDS_MAX: the first ones are kept */
	der many = {0};
	for (int i = 0; i < 30; i++) {
		char n[201];
		memset(n, 'b', 200);
		n[200] = 0;
		snprintf(n, sizeof(n), "%02d", i);
		n[2] = 'b';
		memcpy(n + 192, ".example", 9);
		many = cat(2, many, dns(n));
	}
	assert_int_equal(read_ids(cert(name_cn("x"), san(many))), 0);
	assert_true(ids.len <= X509_IDS_MAX);
	assert_int_equal(count_ids(), X509_IDS_MAX / 202);

	/* a blob cut anywhere is walked without reading past its end */
	size_t full = ids.len;
	for (size_t cut = 0; cut < 300; cut++) {
		struct x509_id id;
		size_t pos = 0;
		while (x509_ids_next(ids.b, cut, &pos, &id))
			assert_true(pos <= cut);
	}
	assert_false(x509_ids_match(NULL, 0, "a.example"));
	assert_true(full > 300);
}

/* ------------------------------------------------------------ malformed DER */

static der good(void)
{
	return cert(name_cn("c.example"),
		    san(cat(3, dns("a.example"), srv("_xmpp-server.a.example"), xmpp("a.example"))));
}

static void test_the_reference_certificate_reads(void **state)
{
	(void)state;
	assert_int_equal(read_ids(good()), 0);
	assert_int_equal(count_ids(), 3);
	assert_true(match("a.example"));
}

static void test_truncated_at_every_byte(void **state)
{
	(void)state;
	der g = good();
	for (size_t n = 0; n < g.n; n++) {
		der t = raw(g.b, n);
		expect_malformed(t);
	}
}

static void test_every_byte_changed_stays_in_bounds(void **state)
{
	(void)state;
	/* each byte of the certificate grown or shrunk by one (lengths, tags and
	 * values alike): the result is either a refusal with no identity or a
	 * walkable blob; under ASan, no read outside the input */
	der g = good();
	int refused = 0;
	for (size_t i = 0; i < g.n; i++) {
		for (int delta = -1; delta <= 1; delta += 2) {
			der t = g;
			t.b[i] = (uint8_t)(t.b[i] + delta);
			if (read_ids(t) < 0) {
				assert_int_equal(ids.len, 0);
				refused++;
				continue;
			}
			struct x509_id id;
			size_t pos = 0;
			while (x509_ids_next(ids.b, ids.len, &pos, &id))
				assert_true(id.n > 0 && pos <= ids.len);
			assert_int_equal(pos, ids.len);
		}
	}
	assert_true(refused > 0);
}

static void test_indefinite_length_refused(void **state)
{
	(void)state;
	der g = good();
	/* the outer SEQUENCE with BER's indefinite length and end-of-contents */
	der ber = cat(3, raw("\x30\x80", 2), raw(g.b + 4, g.n - 4), raw("\x00\x00", 2));
	assert_int_equal(g.b[1], 0x82); /* good() is longer than 255 bytes */
	expect_malformed(ber);
	/* indefinite length inside the SAN */
	der inner = cert(name_cn("x"),
			 ext(OID_SAN, sizeof(OID_SAN), cat(3, raw("\x30\x80", 2), dns("a.example"), raw("\0\0", 2))));
	expect_malformed(inner);
}

static void test_huge_and_non_minimal_lengths_refused(void **state)
{
	(void)state;
	der g = good();
	size_t body = g.n - 4;
	/* 5 length octets */
	expect_malformed(cat(2, raw("\x30\x85\x00\x00\x00\x01\x00", 7), raw(g.b + 4, body)));
	/* 4 octets claiming 4 GiB */
	expect_malformed(cat(2, raw("\x30\x84\xff\xff\xff\xff", 6), raw(g.b + 4, body)));
	/* a length past the end of the buffer */
	der t = g;
	t.b[2] = 0x7f;
	expect_malformed(t);
	/* the right length, but not in its shortest form */
	uint8_t h[] = {0x30, 0x83, 0x00, g.b[2], g.b[3]};
	expect_malformed(cat(2, raw(h, sizeof(h)), raw(g.b + 4, body)));
	uint8_t h2[] = {0x30, 0x84, 0x00, 0x00, g.b[2], g.b[3]};
	expect_malformed(cat(2, raw(h2, sizeof(h2)), raw(g.b + 4, body)));
	/* long form for a length below 128 */
	der small = cert(name_cn("x"), san(cat(2, raw("\x82\x81\x09", 3), str("a.example"))));
	expect_malformed(small);
}

static void test_nesting_depth_costs_nothing(void **state)
{
	(void)state;
	/* hundreds of nested SEQUENCEs as an unknown otherName's value, and as
	 * an unknown extension: skipped by length, not walked */
	der deep = str("x");
	int depth = 0;
	while (deep.n < 3000)
		deep = tlv(0x30, deep), depth++;
	assert_true(depth > 500);
	static const uint8_t oid_x[] = {0x2b, 6, 1, 4, 1, 99};
	der gn = cat(2, tlv(0xa0, cat(2, oid(oid_x, sizeof(oid_x)), tlv(0xa0, deep))), dns("a.example"));
	assert_int_equal(read_ids(cert(name_cn("x"), cat(2, ext(oid_x, sizeof(oid_x), deep), san(gn)))), 0);
	enum x509_id_kind k;
	assert_string_equal(only_id(&k), "a.example");
	/* a SAN that is itself nested SEQUENCEs is not GeneralNames */
	expect_malformed(cert(name_cn("x"), ext(OID_SAN, sizeof(OID_SAN), tlv(0x30, deep))));
}

static void test_wrong_tags_refused(void **state)
{
	(void)state;
	der g = good();
	der t = g;
	t.b[0] = 0x31; /* SET, not SEQUENCE */
	expect_malformed(t);
	t = g;
	t.b[0] = 0x1f; /* high tag number form */
	expect_malformed(t);
	/* tbsCertificate without serial */
	expect_malformed(cert_of_tbs(tlv(0x30, cat(2, tlv(0xa0, tlv(0x02, raw("\x02", 1))), tlv(0x30, none)))));
	/* a subject that is an OCTET STRING */
	expect_malformed(cert(tlv(0x04, str("c.example")), none));
	/* extensions not wrapped in a SEQUENCE */
	expect_malformed(cert_of_tbs(tbs_with(name_cn("x"), tlv(0xa3, san(dns("a.example"))))));
	/* an unexpected element after the extensions, or in their place */
	expect_malformed(cert_of_tbs(
		tbs_with(name_cn("x"), cat(2, tlv(0xa3, tlv(0x30, san(dns("a.example")))), tlv(0x81, raw("\0", 1))))));
	expect_malformed(cert_of_tbs(tbs_with(name_cn("x"), tlv(0xa4, tlv(0x30, san(dns("a.example")))))));
	/* extnValue not an OCTET STRING */
	expect_malformed(cert(name_cn("x"), tlv(0x30, cat(2, OID(OID_SAN), tlv(0x03, tlv(0x30, dns("a.example")))))));
	/* GeneralNames a SET */
	expect_malformed(cert(name_cn("x"), ext(OID_SAN, sizeof(OID_SAN), tlv(0x31, dns("a.example")))));
	/* otherName without its OID, or with the value not in [0] */
	expect_malformed(cert(name_cn("x"), san(tlv(0xa0, tlv(0xa0, tlv(0x0c, str("a.example")))))));
	expect_malformed(
		cert(name_cn("x"), san(tlv(0xa0, cat(2, OID(OID_XMPP), tlv(0xa1, tlv(0x0c, str("a.example"))))))));
	/* an RDN that is a SEQUENCE, not a SET */
	expect_malformed(cert(tlv(0x30, tlv(0x30, tlv(0x30, cat(2, OID(OID_CN), tlv(0x0c, str("c.example")))))), none));
}

static void test_trailing_and_duplicate_parts_refused(void **state)
{
	(void)state;
	der g = good();
	expect_malformed(cat(2, g, raw("\0", 1))); /* a byte after the certificate */
	/* two subjectAltName extensions */
	expect_malformed(cert(name_cn("x"), cat(2, san(dns("a.example")), san(dns("b.example")))));
	/* bytes after GeneralNames inside the extnValue */
	expect_malformed(cert(name_cn("x"),
			      ext(OID_SAN, sizeof(OID_SAN), cat(2, tlv(0x30, dns("a.example")), raw("\x05\x00", 2)))));
	/* an otherName with a second value */
	expect_malformed(cert(name_cn("x"), san(tlv(0xa0, cat(3, OID(OID_XMPP), tlv(0xa0, tlv(0x0c, str("a.example"))),
							      tlv(0xa0, tlv(0x0c, str("b.example"))))))));
	/* an otherName's [0] holding two values */
	expect_malformed(
		cert(name_cn("x"),
		     san(tlv(0xa0, cat(2, OID(OID_XMPP),
				       tlv(0xa0, cat(2, tlv(0x0c, str("a.example")), tlv(0x0c, str("b")))))))));
	/* an AttributeTypeAndValue with two values */
	expect_malformed(cert(
		tlv(0x30, tlv(0x31, tlv(0x30, cat(3, OID(OID_CN), tlv(0x0c, str("c.example")), tlv(0x0c, str("d")))))),
		none));
}

static void test_empty_and_tiny_inputs(void **state)
{
	(void)state;
	expect_malformed(none);
	expect_malformed(raw("\x30", 1));
	expect_malformed(raw("\x30\x00", 2));
	expect_malformed(raw("\x30\x02\x30\x00", 4));
	assert_int_equal(x509_der_len((const uint8_t *)"", 0), -1);
	assert_int_equal(x509_der_len((const uint8_t *)"\x30\x00", 2), 2);
	assert_int_equal(x509_key_matches_cert((const uint8_t *)"\x30\x00", 2, (const uint8_t *)"", 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openssl_dns_ids_and_wildcards),
		cmocka_unit_test(test_openssl_srv_id_xmppaddr_and_cn_ignored),
		cmocka_unit_test(test_openssl_cn_only_without_san),
		cmocka_unit_test(test_openssl_idn_xmppaddr),
		cmocka_unit_test(test_chain_leaf_length_and_key_pairing),
		cmocka_unit_test(test_each_identity_type),
		cmocka_unit_test(test_cn_ignored_when_san_present_even_empty_or_foreign),
		cmocka_unit_test(test_cn_string_types),
		cmocka_unit_test(test_dns_id_wildcard_rules),
		cmocka_unit_test(test_idna_a_labels),
		cmocka_unit_test(test_non_ia5_and_unprintable_names_dropped),
		cmocka_unit_test(test_invalid_utf8_xmppaddr_dropped),
		cmocka_unit_test(test_embedded_nul_names_dropped),
		cmocka_unit_test(test_overlong_names_dropped_and_blob_bounded),
		cmocka_unit_test(test_the_reference_certificate_reads),
		cmocka_unit_test(test_truncated_at_every_byte),
		cmocka_unit_test(test_every_byte_changed_stays_in_bounds),
		cmocka_unit_test(test_indefinite_length_refused),
		cmocka_unit_test(test_huge_and_non_minimal_lengths_refused),
		cmocka_unit_test(test_nesting_depth_costs_nothing),
		cmocka_unit_test(test_wrong_tags_refused),
		cmocka_unit_test(test_trailing_and_duplicate_parts_refused),
		cmocka_unit_test(test_empty_and_tiny_inputs),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
