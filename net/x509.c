/*
 * net/x509.c — certificate identities for s2s authentication.
 *
 * Why our own reader: wolfSSL verifies the chain (signatures, dates, key
 * usage, extended key usage) but does not expose the otherName entries of a
 * subjectAltName, and XMPP names servers with two of them (XmppAddr, SRV-ID).
 * So the leaf's identities are read here from its DER bytes, after wolfSSL
 * has verified it (or, with verification optional, before the s2s layer
 * falls back to dialback and ignores them).
 *
 * The reader. DER only, strictly: definite lengths in their shortest form,
 * low tag numbers, at most 4 length octets, every element inside its parent,
 * nothing trailing where the grammar ends. It walks the fixed path
 * Certificate > TBSCertificate > extensions > subjectAltName > GeneralName >
 * otherName (and Name > RDN > AttributeTypeAndValue for the CN) with one loop
 * per level, no recursion, so nesting depth costs nothing, and never reads
 * past [der, der+n). Anything else in the certificate (keys, signatures,
 * other extensions) is skipped over by length, not interpreted. A
 * certificate that is not well-formed yields no identity at all; a single
 * name that could never match a domain (not printable, an embedded NUL,
 * longer than a DNS name) is dropped and the others are kept.
 *
 * Matching follows RFC 6125 (DNS-ID, with its wildcard rules; CN-ID only
 * when there is no subjectAltName) and RFC 6120 §13.7.1 (SRV-ID
 * "_xmpp-server.DOMAIN", XmppAddr holding the bare domain in UTF-8).
 */
#include <idn2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/x509.h"

/* ------------------------------------------------------------ DER reader */

/*
 * One TLV at *p. Returns 0 and advances *p past it, or -1 if it is not DER or
 * does not fit in [*p, end).
 */
static int der_tlv(const uint8_t **p, const uint8_t *end, uint8_t *tag, const uint8_t **val, size_t *len)
{
	const uint8_t *q = *p;
	if (end - q < 2)
		return -1;
	*tag = *q++;
	if ((*tag & 0x1f) == 0x1f)
		return -1; /* high tag numbers: nothing in a certificate uses them */
	size_t l = *q++;
	if (l & 0x80) {
		unsigned nb = l & 0x7f;
		/* 0x80 is BER's indefinite length; 4 octets exceed any certificate */
		if (nb == 0 || nb > 4 || (size_t)(end - q) < nb || *q == 0)
			return -1;
		l = 0;
		while (nb--)
			l = (l << 8) | *q++;
		if (l < 0x80)
			return -1; /* DER: the short form where it fits */
	}
	if (l > (size_t)(end - q))
		return -1;
	*val = q;
	*len = l;
	*p = q + l;
	return 0;
}

/* Expect a TLV with the given tag; same contract as der_tlv, *p unmoved on failure. */
static int der_expect(const uint8_t **p, const uint8_t *end, uint8_t want, const uint8_t **val, size_t *len)
{
	uint8_t tag;
	const uint8_t *save = *p;
	if (der_tlv(p, end, &tag, val, len) < 0 || tag != want) {
		*p = save;
		return -1;
	}
	return 0;
}

/* An optional element: present (0), absent (1: another tag follows or the end), malformed (-1). */
static int der_optional(const uint8_t **p, const uint8_t *end, uint8_t want, const uint8_t **val, size_t *len)
{
	if (*p == end || **p != want)
		return 1;
	return der_expect(p, end, want, val, len);
}

enum {
	T_BOOLEAN = 0x01,
	T_INTEGER = 0x02,
	T_BITSTRING = 0x03,
	T_OCTETSTRING = 0x04,
	T_OID = 0x06,
	T_UTF8 = 0x0c,
	T_PRINTABLE = 0x13,
	T_TELETEX = 0x14,
	T_IA5 = 0x16,
	T_SEQ = 0x30,
	T_SET = 0x31,
	T_CTX0 = 0xa0,       /* [0] constructed: version, otherName, its value */
	T_CTX3 = 0xa3,       /* [3] constructed: extensions */
	T_ISSUER_UID = 0x81, /* [1] IMPLICIT BIT STRING */
	T_SUBJECT_UID = 0x82,
	T_GN_DNS = 0x82, /* GeneralName dNSName [2] IMPLICIT IA5String */
};

static const uint8_t OID_SAN[] = {0x55, 0x1d, 0x11};               /* 2.5.29.17 */
static const uint8_t OID_CN[] = {0x55, 0x04, 0x03};                /* 2.5.4.3 */
static const uint8_t OID_XMPPADDR[] = {0x2b, 6, 1, 5, 5, 7, 8, 5}; /* 1.3.6.1.5.5.7.8.5 id-on-xmppAddr */
static const uint8_t OID_SRVNAME[] = {0x2b, 6, 1, 5, 5, 7, 8, 7};  /* 1.3.6.1.5.5.7.8.7 id-on-dnsSRV */

#define OID_IS(v, n, oid) ((n) == sizeof(oid) && memcmp((v), (oid), sizeof(oid)) == 0)

/* ------------------------------------------------------------ identities */

/* Printable ASCII, no space: what a DNS name, SRV name or CN-ID may hold. */
static bool name_ascii(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return false;
	return true;
}

/* Well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF) without control characters or spaces. */
static bool name_utf8(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint8_t c = s[i];
		if (c < 0x80) {
			if (c <= 0x20 || c == 0x7f)
				return false;
			i++;
			continue;
		}
		size_t k = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : 0;
		if (k == 0 || c > 0xf4 || n - i <= k)
			return false;
		uint32_t cp = c & (0x3f >> k);
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += k + 1;
	}
	return true;
}

static void ids_add(struct x509_ids *ids, enum x509_id_kind kind, const uint8_t *s, size_t n)
{
	/* names longer than a DNS name identify nothing we would match */
	if (n == 0 || n > 255 || ids->len + 2 + n > sizeof(ids->b))
		return;
	if (!(kind == X509_ID_XMPP ? name_utf8(s, n) : name_ascii(s, n)))
		return; /* also refuses embedded NULs: "a.example\0.evil" */
	ids->b[ids->len++] = (uint8_t)kind;
	ids->b[ids->len++] = (uint8_t)n;
	memcpy(ids->b + ids->len, s, n);
	ids->len += n;
}

/* otherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY } (IMPLICIT [0] tag) */
static int other_name(const uint8_t *v, size_t n, struct x509_ids *ids)
{
	const uint8_t *p = v, *end = v + n, *oid, *ex, *s;
	size_t oidn, exn, sn;
	uint8_t st;
	if (der_expect(&p, end, T_OID, &oid, &oidn) < 0 || der_expect(&p, end, T_CTX0, &ex, &exn) < 0 || p != end)
		return -1;
	const uint8_t *r = ex;
	if (der_tlv(&r, ex + exn, &st, &s, &sn) < 0 || r != ex + exn)
		return -1;
	if (OID_IS(oid, oidn, OID_XMPPADDR) && st == T_UTF8)
		ids_add(ids, X509_ID_XMPP, s, sn);
	else if (OID_IS(oid, oidn, OID_SRVNAME) && st == T_IA5)
		ids_add(ids, X509_ID_SRV, s, sn);
	return 0;
}

/* The extnValue of subjectAltName: GeneralNames ::= SEQUENCE OF GeneralName. */
static int san(const uint8_t *v, size_t n, struct x509_ids *ids)
{
	const uint8_t *p = v, *end = v + n, *seq, *gn;
	size_t seqn, gnl;
	uint8_t tag;
	if (der_expect(&p, end, T_SEQ, &seq, &seqn) < 0 || p != end)
		return -1;
	for (p = seq, end = seq + seqn; p < end;) {
		if (der_tlv(&p, end, &tag, &gn, &gnl) < 0 || (tag & 0xc0) != 0x80)
			return -1; /* every GeneralName is context-specific, [0]..[8] */
		if (tag == T_GN_DNS)
			ids_add(ids, X509_ID_DNS, gn, gnl);
		else if (tag == T_CTX0 && other_name(gn, gnl, ids) < 0)
			return -1;
		/* other forms (rfc822Name, URI, iPAddress, ...) name no XMPP domain */
	}
	return 0;
}

/* Extensions ::= SEQUENCE OF Extension; *have_san set when subjectAltName is there. */
static int extensions(const uint8_t *v, size_t n, struct x509_ids *ids, bool *have_san)
{
	const uint8_t *p = v, *exts, *ext;
	size_t extsn, extn;
	if (der_expect(&p, v + n, T_SEQ, &exts, &extsn) < 0 || p != v + n)
		return -1;
	for (p = exts; p < exts + extsn;) {
		const uint8_t *r, *oid, *val;
		size_t oidn, valn;
		if (der_expect(&p, exts + extsn, T_SEQ, &ext, &extn) < 0)
			return -1;
		r = ext;
		if (der_expect(&r, ext + extn, T_OID, &oid, &oidn) < 0 ||
		    der_optional(&r, ext + extn, T_BOOLEAN, &val, &valn) < 0 || /* critical */
		    der_expect(&r, ext + extn, T_OCTETSTRING, &val, &valn) < 0 || r != ext + extn)
			return -1;
		if (!OID_IS(oid, oidn, OID_SAN))
			continue;
		if (*have_san)
			return -1; /* RFC 5280 §4.2: an extension appears at most once */
		*have_san = true;
		if (san(val, valn, ids) < 0)
			return -1;
	}
	return 0;
}

/* Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue) */
static int subject_cn(const uint8_t *v, size_t n, struct x509_ids *ids)
{
	const uint8_t *p = v, *end = v + n;
	while (p < end) {
		const uint8_t *set, *atv, *oid, *s;
		size_t setn, atvn, oidn, sn;
		uint8_t tag;
		if (der_expect(&p, end, T_SET, &set, &setn) < 0)
			return -1;
		for (const uint8_t *q = set; q < set + setn;) {
			if (der_expect(&q, set + setn, T_SEQ, &atv, &atvn) < 0)
				return -1;
			const uint8_t *r = atv;
			if (der_expect(&r, atv + atvn, T_OID, &oid, &oidn) < 0 ||
			    der_tlv(&r, atv + atvn, &tag, &s, &sn) < 0 || r != atv + atvn)
				return -1;
			/* a DirectoryString a host name can be written in; BMP and
			 * Universal strings are UTF-16/32 and hold NULs for ASCII */
			if (OID_IS(oid, oidn, OID_CN) &&
			    (tag == T_UTF8 || tag == T_PRINTABLE || tag == T_IA5 || tag == T_TELETEX))
				ids_add(ids, X509_ID_CN, s, sn);
		}
	}
	return 0;
}

static int cert_ids(const uint8_t *der, size_t len, struct x509_ids *ids)
{
	const uint8_t *p = der, *end = der + len, *cert, *tbs, *v, *subj;
	size_t certn, tbsn, vn, subjn;
	bool have_san = false, have_ext = false;
	uint8_t tag;

	/* Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature } */
	if (der_expect(&p, end, T_SEQ, &cert, &certn) < 0 || p != end)
		return -1;
	p = cert;
	if (der_expect(&p, cert + certn, T_SEQ, &tbs, &tbsn) < 0)
		return -1;
	p = tbs;
	end = tbs + tbsn;
	if (der_optional(&p, end, T_CTX0, &v, &vn) < 0 ||    /* version */
	    der_expect(&p, end, T_INTEGER, &v, &vn) < 0 ||   /* serialNumber */
	    der_expect(&p, end, T_SEQ, &v, &vn) < 0 ||       /* signature */
	    der_expect(&p, end, T_SEQ, &v, &vn) < 0 ||       /* issuer */
	    der_expect(&p, end, T_SEQ, &v, &vn) < 0 ||       /* validity */
	    der_expect(&p, end, T_SEQ, &subj, &subjn) < 0 || /* subject */
	    der_expect(&p, end, T_SEQ, &v, &vn) < 0)         /* subjectPublicKeyInfo */
		return -1;
	while (p < end) {
		if (der_tlv(&p, end, &tag, &v, &vn) < 0)
			return -1;
		if (have_ext)
			return -1; /* extensions [3] come last */
		if (tag == T_CTX3) {
			have_ext = true;
			if (extensions(v, vn, ids, &have_san) < 0)
				return -1;
		} else if (tag != T_ISSUER_UID && tag != T_SUBJECT_UID) {
			return -1;
		}
	}
	/* RFC 6125 §6.4.4: the CN counts only when there is no subjectAltName */
	return have_san ? 0 : subject_cn(subj, subjn, ids);
}

int x509_cert_ids(const uint8_t *der, size_t n, struct x509_ids *ids)
{
	ids->len = 0;
	if (cert_ids(der, n, ids) < 0) {
		ids->len = 0; /* fail closed: nothing from a malformed certificate */
		return -1;
	}
	return 0;
}

bool x509_ids_next(const uint8_t *ids, size_t len, size_t *pos, struct x509_id *id)
{
	size_t i = *pos;
	if (!ids || i + 2 > len || i + 2 + ids[i + 1] > len)
		return false;
	id->kind = (enum x509_id_kind)ids[i];
	id->n = ids[i + 1];
	id->s = (const char *)ids + i + 2;
	*pos = i + 2 + id->n;
	return true;
}

/* --------------------------------------------------------------- matching */

static bool ieq(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && strncasecmp(a, b, an) == 0;
}

int x509_dns_id_match(const char *pat, size_t plen, const char *domain)
{
	size_t dlen = strlen(domain);
	if (dlen && domain[dlen - 1] == '.')
		dlen--;
	if (plen && pat[plen - 1] == '.')
		plen--;
	if (plen == 0 || dlen == 0 || memchr(domain, '*', dlen))
		return 0;
	if (plen > 2 && pat[0] == '*' && pat[1] == '.') {
		/* RFC 6125 §6.4.3: '*' only as the complete left-most label, standing
		 * for exactly one label; "*.com"-like two-label patterns are refused. */
		const char *rest = pat + 2;
		size_t rn = plen - 2;
		if (memchr(rest, '*', rn) || !memchr(rest, '.', rn))
			return 0;
		const char *dot = memchr(domain, '.', dlen);
		if (!dot || dot == domain)
			return 0;
		return ieq(rest, rn, dot + 1, dlen - (size_t)(dot + 1 - domain));
	}
	if (memchr(pat, '*', plen))
		return 0; /* partial-label or inner wildcards never match */
	return ieq(pat, plen, domain, dlen);
}

/* An XmppAddr is internationalized (U-labels); the domain we check is an A-label name. */
static bool xmppaddr_idn_match(const char *s, size_t n, const char *domain, size_t dlen)
{
	char u[256], *a = NULL;
	size_t i;
	for (i = 0; i < n && !((unsigned char)s[i] & 0x80); i++)
		;
	if (i == n || n >= sizeof(u))
		return false; /* plain ASCII was compared already */
	memcpy(u, s, n);
	u[n] = 0;
	if (idn2_to_ascii_8z(u, &a, IDN2_NONTRANSITIONAL) != IDN2_OK)
		return false;
	bool ok = ieq(a, strlen(a), domain, dlen);
	idn2_free(a);
	return ok;
}

bool x509_ids_match(const uint8_t *ids, size_t len, const char *domain)
{
	static const char srv[] = "_xmpp-server.";
	const size_t sn = sizeof(srv) - 1;
	size_t dlen = strlen(domain), pos = 0;
	struct x509_id id;
	if (dlen && domain[dlen - 1] == '.')
		dlen--;
	if (dlen == 0)
		return false;
	while (x509_ids_next(ids, len, &pos, &id)) {
		switch (id.kind) {
		case X509_ID_DNS:
			if (x509_dns_id_match(id.s, id.n, domain))
				return true;
			break;
		case X509_ID_SRV: /* RFC 6120 §13.7.1.2.1, RFC 4985: "_xmpp-server.DOMAIN" */
			if (id.n > sn && strncasecmp(id.s, srv, sn) == 0 && ieq(id.s + sn, id.n - sn, domain, dlen))
				return true;
			break;
		case X509_ID_XMPP: /* the bare domain, UTF-8 (RFC 6120 §13.7.1.4) */
			if (ieq(id.s, id.n, domain, dlen) || xmppaddr_idn_match(id.s, id.n, domain, dlen))
				return true;
			break;
		case X509_ID_CN: /* present only when the cert has no SAN; no wildcards */
			if (ieq(id.s, id.n, domain, dlen))
				return true;
			break;
		}
	}
	return false;
}

/* ------------------------------------------------------------- keys, chains */

long x509_der_len(const uint8_t *der, size_t n)
{
	const uint8_t *p = der, *v;
	size_t vn;
	uint8_t tag;
	if (der_tlv(&p, der + n, &tag, &v, &vn) < 0)
		return -1;
	return (long)(p - der);
}

/*
 * A byte search for the public key in the private key is enough to catch a
 * key file paired with the wrong certificate, which wolfSSL's own check
 * misses in some builds.
 */
int x509_key_matches_cert(const uint8_t *cert, size_t certn, const uint8_t *key, size_t keyn)
{
	const uint8_t *p = cert, *end = cert + certn, *c, *tbs, *v, *spki;
	size_t cn, tbsn, vn, spkin;
	uint8_t tag;
	if (der_expect(&p, end, T_SEQ, &c, &cn) < 0)
		return -1;
	p = c;
	if (der_expect(&p, c + cn, T_SEQ, &tbs, &tbsn) < 0)
		return -1;
	p = tbs;
	end = tbs + tbsn;
	if (der_optional(&p, end, T_CTX0, &v, &vn) < 0)
		return -1;
	for (int i = 0; i < 5; i++) /* serial, sigalg, issuer, validity, subject */
		if (der_tlv(&p, end, &tag, &v, &vn) < 0)
			return -1;
	if (der_expect(&p, end, T_SEQ, &spki, &spkin) < 0)
		return -1;
	p = spki;
	const uint8_t *bits;
	size_t bitsn;
	if (der_expect(&p, spki + spkin, T_SEQ, &v, &vn) < 0 ||
	    der_expect(&p, spki + spkin, T_BITSTRING, &bits, &bitsn) < 0 || bitsn < 2)
		return -1;
	bits++, bitsn--;        /* unused-bits octet */
	if (bits[0] == T_SEQ) { /* RSAPublicKey: look for the modulus */
		const uint8_t *q = bits, *rsa, *mod;
		size_t rsan, modn;
		if (der_expect(&q, bits + bitsn, T_SEQ, &rsa, &rsan) < 0)
			return -1;
		q = rsa;
		if (der_expect(&q, rsa + rsan, T_INTEGER, &mod, &modn) < 0)
			return -1;
		bits = mod, bitsn = modn;
	}
	if (bitsn < 32)
		return -1;
	if (memmem(key, keyn, bits, bitsn))
		return 1;
	if (bits[0] != 0x04)
		return 0; /* RSA: the modulus is always in the private key */
	/* EC: a key that carries some other public point is the wrong key; one
	 * written without its public point proves nothing. */
	if (bitsn + 1 >= 0x80)
		return -1;
	uint8_t hdr[4] = {T_BITSTRING, (uint8_t)(bitsn + 1), 0x00, 0x04};
	return memmem(key, keyn, hdr, sizeof(hdr)) ? 0 : -1;
}
