/*
 * tests/fuzz/fuzz_proxy.c — the PROXY protocol v1/v2 parser (net/proxy.c)
 * on arbitrary bytes, fed the way a connection receives them (libFuzzer).
 *
 * Input layout: bytes 0-1 = where the first receive ends (little-endian,
 * modulo the stream's length + 1), the rest = the stream. The parser sees
 * the first part alone, then the whole stream, each in a buffer of exactly
 * its size (ASan catches a read past it). A resumable parser must agree with
 * itself: "need more" (0) on a part promises nothing, but a refusal (-1) of
 * the part is a refusal of the whole, and a header found in the part is the
 * same header, with the same address, in the whole. A header of r bytes is
 * found in any prefix of at least r bytes and is "need more" one byte short.
 * An accepted v1 line must also be what the specification allows: printable
 * US-ASCII, and for TCP4/TCP6 six words with decimal ports up to 65535.
 *
 * Seeds: tests/fuzz/corpus/proxy/ (v1 TCP4/TCP6/UNKNOWN, v2 LOCAL/TCP4/
 * TCP6/UNSPEC with TLVs, each followed by a stream header). Run: make fuzz
 * && build/fuzz/fuzz_proxy -max_len=4096 -max_total_time=300 <a copy of that directory>
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net/proxy.h"

static void must(bool ok)
{
	if (!ok)
		abort();
}

/* Parse a copy of p[0..n) in a buffer of exactly n bytes. */
static int parse_copy(const uint8_t *p, size_t n, struct sockaddr_in6 *src)
{
	char *b = malloc(n ? n : 1);
	if (!b)
		abort();
	memcpy(b, p, n);
	memset(src, 0xa5, sizeof(*src));
	int r = proxy_parse(b, n, src);
	free(b);
	return r;
}

/* A decimal port, 0..65535, as the v1 grammar has it. */
static bool port_ok(const char *s, size_t n)
{
	unsigned long v = 0;
	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	return v <= 65535;
}

/* HAProxy's doc/proxy-protocol.txt §2.1: an accepted v1 line is US-ASCII
 * text, and TCP4/TCP6 ports are decimal numbers up to 65535. */
static void check_v1_line(const uint8_t *p, size_t r)
{
	const char *w[8];
	size_t wn[8], nw = 0;
	must(r >= 8 && p[r - 2] == '\r' && p[r - 1] == '\n');
	for (size_t i = 0; i < r - 2; i++)
		must(p[i] >= 0x20 && p[i] < 0x7f);
	for (size_t i = 0; i < r - 2;) { /* words between runs of spaces */
		while (i < r - 2 && p[i] == ' ')
			i++;
		size_t start = i;
		while (i < r - 2 && p[i] != ' ')
			i++;
		if (i > start && nw < 8)
			w[nw] = (const char *)p + start, wn[nw++] = i - start;
	}
	must(nw >= 2);
	if (wn[1] == 4 && (!memcmp(w[1], "TCP4", 4) || !memcmp(w[1], "TCP6", 4)))
		must(nw == 6 && port_ok(w[4], wn[4]) && port_ok(w[5], wn[5]));
}

static void check_found(int r, const uint8_t *p, size_t n, const struct sockaddr_in6 *src)
{
	must(r >= -1 && (r <= 0 || (size_t)r <= n));
	if (r <= 0)
		return;
	must(src->sin6_family == AF_INET || src->sin6_family == AF_INET6 || src->sin6_family == AF_UNSPEC);
	if (p[0] == 'P')
		check_v1_line(p, (size_t)r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	const uint8_t *s = data + 2;
	size_t n = size - 2, split = ((size_t)data[0] | (size_t)data[1] << 8) % (n + 1);
	struct sockaddr_in6 a, b, c;

	int whole = parse_copy(s, n, &a);
	check_found(whole, s, n, &a);
	int part = parse_copy(s, split, &b);
	check_found(part, s, split, &b);
	if (part < 0)
		must(whole < 0);
	if (part > 0)
		must(whole == part && memcmp(&a, &b, sizeof(a)) == 0);
	if (whole > 0) {
		must(parse_copy(s, (size_t)whole, &c) == whole && memcmp(&a, &c, sizeof(a)) == 0);
		must(parse_copy(s, (size_t)whole - 1, &c) == 0);
	}
	return 0;
}
