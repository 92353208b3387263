/*
 * net/proxy.c — PROXY protocol v1 (text) and v2 (binary) headers, as
 * specified in HAProxy's doc/proxy-protocol.txt. Only TCP over IPv4/IPv6
 * and LOCAL/UNKNOWN are accepted; TLVs in v2 are skipped.
 *
 * A header is believed only from a trusted source (proxy_from in
 * router.conf): the accept path in net/worker.c closes a connection whose
 * listener expects a header when its source is not in that list.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/proxy.h"

static const char v2_sig[12] = "\r\n\r\n\0\r\nQUIT\n";

static int parse_v2(const unsigned char *p, size_t n, struct sockaddr_in6 *src)
{
	if (n < 16)
		return 0;
	unsigned ver_cmd = p[12], fam = p[13];
	size_t len = (size_t)p[14] << 8 | p[15];
	if ((ver_cmd & 0xf0) != 0x20 || len > 2048)
		return -1;
	if (n < 16 + len)
		return 0;
	memset(src, 0, sizeof(*src));
	if ((ver_cmd & 0x0f) == 0x0) /* LOCAL: the balancer's own check */
		return (int)(16 + len);
	if ((ver_cmd & 0x0f) != 0x1)
		return -1;
	if (fam == 0x11) { /* TCP over IPv4 */
		if (len < 12)
			return -1;
		struct sockaddr_in *s4 = (struct sockaddr_in *)src;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, p + 16, 4);
		memcpy(&s4->sin_port, p + 24, 2);
	} else if (fam == 0x21) { /* TCP over IPv6 */
		if (len < 36)
			return -1;
		src->sin6_family = AF_INET6;
		memcpy(&src->sin6_addr, p + 16, 16);
		memcpy(&src->sin6_port, p + 48, 2);
	} else if (fam != 0x00) { /* UNSPEC is allowed, the rest is not TCP */
		return -1;
	}
	return (int)(16 + len);
}

/* A v1 port: decimal, 0..65535 (strtol would also take "+1" or " 1"). */
static int v1_port(const char *s)
{
	size_t n = strlen(s);
	int v = 0;
	if (n == 0 || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= 65535 ? v : -1;
}

static int parse_v1(const char *p, size_t n, struct sockaddr_in6 *src)
{
	const char *end = memchr(p, '\n', n < 108 ? n : 108);
	if (!end)
		return n < 108 ? 0 : -1;
	if (end == p || end[-1] != '\r')
		return -1;
	char line[108];
	size_t len = (size_t)(end - 1 - p);
	memcpy(line, p, len);
	line[len] = 0;
	for (size_t i = 0; i < len; i++)
		if (line[i] < 0x20 || line[i] > 0x7e)
			return -1; /* the v1 header is US-ASCII text; a NUL would cut it short */
	memset(src, 0, sizeof(*src));
	char *save = NULL, *tok = strtok_r(line, " ", &save);
	if (!tok || strcmp(tok, "PROXY"))
		return -1;
	char *proto = strtok_r(NULL, " ", &save);
	if (!proto)
		return -1;
	if (!strcmp(proto, "UNKNOWN"))
		return (int)(end - p + 1);
	char *sa = strtok_r(NULL, " ", &save), *da = strtok_r(NULL, " ", &save);
	char *sp = strtok_r(NULL, " ", &save), *dp = strtok_r(NULL, " ", &save);
	if (!sa || !da || !sp || !dp || strtok_r(NULL, " ", &save))
		return -1;
	int port = v1_port(sp);
	if (port < 0 || v1_port(dp) < 0)
		return -1;
	if (!strcmp(proto, "TCP4")) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)src;
		struct in_addr dummy;
		if (inet_pton(AF_INET, sa, &s4->sin_addr) != 1 || inet_pton(AF_INET, da, &dummy) != 1)
			return -1;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
	} else if (!strcmp(proto, "TCP6")) {
		struct in6_addr dummy;
		if (inet_pton(AF_INET6, sa, &src->sin6_addr) != 1 || inet_pton(AF_INET6, da, &dummy) != 1)
			return -1;
		src->sin6_family = AF_INET6;
		src->sin6_port = htons((uint16_t)port);
	} else {
		return -1;
	}
	return (int)(end - p + 1);
}

int proxy_parse(const char *p, size_t n, struct sockaddr_in6 *src)
{
	size_t k = n < sizeof(v2_sig) ? n : sizeof(v2_sig);
	if (memcmp(p, v2_sig, k) == 0)
		return n < sizeof(v2_sig) ? 0 : parse_v2((const unsigned char *)p, n, src);
	k = n < 6 ? n : 6;
	if (memcmp(p, "PROXY ", k) == 0)
		return n < 6 ? 0 : parse_v1(p, n, src);
	return -1;
}

/* ---- trusted balancers --------------------------------------------- */

int proxy_cidr_parse(const char *s, struct proxy_cidr *out)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *slash = strchr(s, '/');
	size_t hn = slash ? (size_t)(slash - s) : strlen(s);
	if (hn == 0 || hn >= sizeof(host))
		return -1;
	memcpy(host, s, hn);
	host[hn] = 0;
	memset(out, 0, sizeof(*out));
	unsigned max;
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	unsigned bits = max;
	if (slash) {
		const char *d = slash + 1;
		if (!*d || strlen(d) > 3)
			return -1;
		bits = 0;
		for (; *d; d++) {
			if (*d < '0' || *d > '9')
				return -1;
			bits = bits * 10 + (unsigned)(*d - '0');
		}
		if (bits > max)
			return -1;
	}
	out->bits = (unsigned char)bits;
	for (unsigned i = bits; i < max; i++) /* host bits set: a typo, not a block */
		if (out->addr[i / 8] & (0x80 >> (i % 8)))
			return -1;
	return 0;
}

bool proxy_cidr_match(const struct proxy_cidr *c, const struct sockaddr *sa)
{
	const unsigned char *a;
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	int fam = sa->sa_family;
	if (fam == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (fam == AF_INET6) {
		a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (c->family == AF_INET && !memcmp(a, mapped, sizeof(mapped))) {
			a += 12;
			fam = AF_INET;
		}
	} else {
		return false;
	}
	if (fam != c->family)
		return false;
	unsigned full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(a, c->addr, full))
		return false;
	if (rest) {
		unsigned char m = (unsigned char)(0xff << (8 - rest));
		if ((a[full] & m) != (c->addr[full] & m))
			return false;
	}
	return true;
}

static struct proxy_cidr trusted[PROXY_MAX_TRUSTED] = {
	{.addr = {127}, .family = AF_INET, .bits = 8},
	{.addr = {[15] = 1}, .family = AF_INET6, .bits = 128},
};
static int ntrusted = 2;

void proxy_set_trusted(const struct proxy_cidr *list, int n)
{
	if (n > PROXY_MAX_TRUSTED)
		n = PROXY_MAX_TRUSTED;
	memcpy(trusted, list, (size_t)n * sizeof(*list));
	ntrusted = n;
}

bool proxy_trusted(const struct sockaddr *sa)
{
	for (int i = 0; i < ntrusted; i++)
		if (proxy_cidr_match(&trusted[i], sa))
			return true;
	return false;
}
