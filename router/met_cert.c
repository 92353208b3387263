/*
 * router/met_cert.c — the notAfter of a PEM certificate, for
 * fedhub_cert_expiry_seconds (met_cert_expiry_file() in met.c records it).
 *
 * A few lines of DER walking rather than a TLS library call: it runs at
 * start and reload on the control thread, reads only the validity field
 * (RFC 5280 §4.1), and must not depend on how the TLS context loaded (or
 * failed to load) the same file. Anything it does not understand is -1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net/alloc.h"
#include "router/met.h"
#include "router/met-int.h"

/* One DER element at *p (bounded by end): its tag, and its contents in
 * [*c, *c + *cn). Returns 0, or -1 when it does not fit. */
static int der_elem(const uint8_t **p, const uint8_t *end, uint8_t *tag, const uint8_t **c, size_t *cn)
{
	const uint8_t *q = *p;
	size_t len;

	if (end - q < 2)
		return -1;
	*tag = *q++;
	len = *q++;
	if (len & 0x80) {
		int k = (int)(len & 0x7f);
		if (k < 1 || k > 4 || end - q < k)
			return -1;
		len = 0;
		while (k--)
			len = (len << 8) | *q++;
	}
	if ((size_t)(end - q) < len)
		return -1;
	*c = q;
	*cn = len;
	*p = q + len;
	return 0;
}

static int two(const uint8_t *s)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int64_t met_der_not_after(const uint8_t *der, size_t n)
{
	const uint8_t *p = der, *end = der + n, *c, *t;
	size_t cn, tn;
	uint8_t tag;

	/* Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
	 * OPTIONAL, serial, signature, issuer, validity SEQUENCE { notBefore,
	 * notAfter }, ... } ... } (RFC 5280 §4.1) */
	if (der_elem(&p, end, &tag, &c, &cn) < 0 || tag != 0x30)
		return -1;
	p = c;
	end = c + cn;
	if (der_elem(&p, end, &tag, &c, &cn) < 0 || tag != 0x30)
		return -1;
	p = c;
	end = c + cn;
	if (der_elem(&p, end, &tag, &c, &cn) < 0)
		return -1;
	if (tag == 0xa0 && der_elem(&p, end, &tag, &c, &cn) < 0) /* version, then serial */
		return -1;
	if (der_elem(&p, end, &tag, &c, &cn) < 0 || der_elem(&p, end, &tag, &c, &cn) < 0) /* signature, issuer */
		return -1;
	if (der_elem(&p, end, &tag, &c, &cn) < 0 || tag != 0x30) /* validity */
		return -1;
	p = c;
	end = c + cn;
	if (der_elem(&p, end, &tag, &c, &cn) < 0 || der_elem(&p, end, &tag, &t, &tn) < 0)
		return -1;
	/* UTCTime YYMMDDHHMMSSZ (RFC 5280 §4.1.2.5.1) or GeneralizedTime YYYYMMDDHHMMSSZ */
	int64_t year;
	if (tag == 0x17 && tn == 13 && t[12] == 'Z') {
		int yy = two(t);
		if (yy < 0)
			return -1;
		year = yy >= 50 ? 1900 + yy : 2000 + yy;
		t += 2;
	} else if (tag == 0x18 && tn == 15 && t[14] == 'Z') {
		int hi = two(t), lo = two(t + 2);
		if (hi < 0 || lo < 0)
			return -1;
		year = hi * 100 + lo;
		t += 4;
	} else {
		return -1;
	}
	int mo = two(t), d = two(t + 2), hh = two(t + 4), mm = two(t + 6), ss = two(t + 8);
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60)
		return -1;
	return days_from_civil(year, mo, d) * 86400 + hh * 3600 + mm * 60 + ss;
}

static int b64val(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

int64_t met_pem_not_after(const char *path)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----", fin[] = "-----END CERTIFICATE-----";
	FILE *f = fopen(path, "re");
	char *pem, *a, *z;
	uint8_t *der;
	size_t n = 0, dn = 0;
	uint32_t acc = 0;
	int bits = 0;
	int64_t t;

	if (!f)
		return -1;
	pem = xmalloc(1 << 20);
	n = fread(pem, 1, (1 << 20) - 1, f);
	fclose(f);
	pem[n] = 0;
	a = strstr(pem, begin);
	z = a ? strstr(a, fin) : NULL;
	if (!z) {
		free(pem);
		return -1;
	}
	der = xmalloc(n);
	for (a += sizeof(begin) - 1; a < z; a++) {
		int v = b64val((unsigned char)*a);
		if (v < 0)
			continue; /* line breaks, padding */
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			der[dn++] = (uint8_t)(acc >> bits);
		}
	}
	t = met_der_not_after(der, dn);
	free(der);
	free(pem);
	return t;
}
