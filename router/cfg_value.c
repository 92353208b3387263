/*
 * router/cfg_value.c — router.conf value parsers: numbers with units, TLS and auth
 * modes, yes/no, paths, addresses, domain names and patterns.
 * The parser's design is described at the top of router/cfg.c.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/random.h>
#include <idn2.h>
#include "router/cfg.h"
#include "xml/xml.h" /* XML_MAX_DEPTH bounds max_depth */
#include "router/policy.h"
#include "router/cfg-int.h"

/* ---- value parsers ------------------------------------------------------- */

/* Decimal digits only: no sign, no spaces, no hex, no overflow. */
static int parse_u64(const char *s, const char **end, uint64_t *v)
{
	uint64_t x = 0;
	const char *q = s;

	if (!isdigit((unsigned char)*q))
		return -1;
	for (; isdigit((unsigned char)*q); q++) {
		if (x > (UINT64_MAX - 9) / 10)
			return -1;
		x = x * 10 + (uint64_t)(*q - '0');
	}
	*end = q;
	*v = x;
	return 0;
}

/* "123", bytes "256k" / "4m", durations "30s" / "10m" / "1h". */
static int parse_unit(const char *s, enum unit u, uint64_t *v)
{
	const char *e;
	uint64_t mul = 1;

	if (parse_u64(s, &e, v) < 0)
		return -1;
	if (*e && u == U_BYTES) {
		switch (*e++) {
		case 'k':
		case 'K':
			mul = 1024;
			break;
		case 'm':
		case 'M':
			mul = 1024 * 1024;
			break;
		default:
			return -1;
		}
	} else if (*e && u == U_MS) {
		if (!strcmp(e, "ms"))
			e += 2;
		else if (!strcmp(e, "s"))
			mul = 1000, e++;
		else if (!strcmp(e, "m"))
			mul = 60000, e++;
		else
			return -1;
	} else if (*e && u == U_SECONDS) {
		switch (*e++) {
		case 's':
			mul = 1;
			break;
		case 'm':
			mul = 60;
			break;
		case 'h':
			mul = 3600;
			break;
		default:
			return -1;
		}
	}
	if (*e)
		return -1;
	if (*v > UINT64_MAX / mul)
		return -1;
	*v *= mul;
	return 0;
}

static const char *const unit_hint[] = {
	[U_NUM] = "a whole number",
	[U_BYTES] = "a size in bytes, with an optional k or m suffix",
	[U_SECONDS] = "a duration in seconds, with an optional s, m or h suffix",
	[U_MS] = "a duration in milliseconds, with an optional ms, s or m suffix",
};

void cfg_set_u32(struct parser *p, const char *name, const char *s, enum unit u, uint64_t lo, uint64_t hi,
		 uint32_t *field)
{
	uint64_t v;

	if (parse_unit(s, u, &v) < 0) {
		ERR(p, "%s: '%s' is not %s", name, s, unit_hint[u]);
		return;
	}
	if (v < lo || v > hi) {
		ERR(p, "%s: %llu is out of range (%llu..%llu)", name, (unsigned long long)v, (unsigned long long)lo,
		    (unsigned long long)hi);
		return;
	}
	*field = (uint32_t)v;
}

int cfg_parse_tls_mode(const char *s, enum cfg_tls_mode *m)
{
	if (!strcmp(s, "required"))
		*m = CFG_TLS_REQUIRED;
	else if (!strcmp(s, "optional"))
		*m = CFG_TLS_OPTIONAL;
	else if (!strcmp(s, "off"))
		*m = CFG_TLS_OFF;
	else
		return -1;
	return 0;
}

const char *cfg_tls_mode_name(enum cfg_tls_mode m)
{
	switch (m) {
	case CFG_TLS_REQUIRED:
		return "required";
	case CFG_TLS_OPTIONAL:
		return "optional";
	case CFG_TLS_OFF:
		return "off";
	}
	return "?";
}

const char *cfg_auth_mode_name(enum cfg_auth_mode m)
{
	return m == CFG_AUTH_CERTIFICATE ? "certificate" : "dialback";
}

int cfg_parse_auth_mode(const char *s, enum cfg_auth_mode *m)
{
	if (!strcmp(s, "dialback"))
		*m = CFG_AUTH_DIALBACK;
	else if (!strcmp(s, "certificate"))
		*m = CFG_AUTH_CERTIFICATE;
	else
		return -1;
	return 0;
}

int cfg_parse_yes_no(const char *s, bool *v)
{
	if (!strcmp(s, "yes"))
		*v = true;
	else if (!strcmp(s, "no"))
		*v = false;
	else
		return -1;
	return 0;
}

const char *cfg_listen_kind_name(enum cfg_listen_kind k)
{
	switch (k) {
	case CFG_LISTEN_S2S:
		return "s2s";
	case CFG_LISTEN_S2S_TLS:
		return "s2s-tls";
	case CFG_LISTEN_COMPONENT:
		return "component";
	}
	return "?";
}

/* A path the daemon will open later: check now that it can. */
void cfg_set_path(struct parser *p, const char *what, const char *s, char *field, size_t cap)
{
	int fd;

	if (strlen(s) >= cap) {
		ERR(p, "%s: path is longer than %zu bytes", what, cap - 1);
		return;
	}
	fd = open(s, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ERR(p, "%s: cannot read '%s': %s", what, s, strerror(errno));
		return;
	}
	close(fd);
	strcpy(field, s);
}

/* ---- addresses ----------------------------------------------------------- */

static int parse_port(const char *s, int *port)
{
	uint64_t v;
	const char *e;

	if (parse_u64(s, &e, &v) < 0 || *e || v == 0 || v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

int cfg_parse_addr(const char *s, struct cfg_addr *a, int default_port)
{
	char host[64];
	const char *hs, *ps = NULL;
	size_t hn;
	int port = default_port;

	memset(a, 0, sizeof(*a));
	if (strlen(s) >= sizeof(a->text))
		return -EINVAL;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb)
			return -EINVAL;
		hs = s + 1;
		hn = (size_t)(rb - hs);
		if (rb[1] == ':')
			ps = rb + 2;
		else if (rb[1])
			return -EINVAL;
	} else {
		const char *colon = strchr(s, ':');
		/* An IPv6 literal needs its brackets, or its last group and
		 * the port could not be told apart. */
		if (colon && strchr(colon + 1, ':'))
			return -EINVAL;
		hs = s;
		hn = colon ? (size_t)(colon - s) : strlen(s);
		if (colon)
			ps = colon + 1;
	}
	if (hn == 0 || hn >= sizeof(host))
		return -EINVAL;
	memcpy(host, hs, hn);
	host[hn] = 0;
	if (ps && parse_port(ps, &port) < 0)
		return -EINVAL;
	if (port <= 0 || port > 65535)
		return -EINVAL;

	if (s[0] == '[') {
		struct sockaddr_in6 *sa6 = (struct sockaddr_in6 *)&a->ss;
		if (inet_pton(AF_INET6, host, &sa6->sin6_addr) != 1)
			return -EINVAL;
		sa6->sin6_family = AF_INET6;
		sa6->sin6_port = htons((uint16_t)port);
		a->len = sizeof(*sa6);
	} else {
		struct sockaddr_in *sa4 = (struct sockaddr_in *)&a->ss;
		if (!strcasecmp(host, "localhost"))
			sa4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else if (inet_pton(AF_INET, host, &sa4->sin_addr) != 1)
			return -EINVAL;
		sa4->sin_family = AF_INET;
		sa4->sin_port = htons((uint16_t)port);
		a->len = sizeof(*sa4);
	}
	strcpy(a->text, s);
	return 0;
}

int cfg_addr_host(const struct cfg_addr *a, char *buf, size_t cap)
{
	const void *src;

	if (a->len == 0 || cap == 0)
		return -EINVAL;
	if (a->ss.ss_family == AF_INET6)
		src = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
	else
		src = &((const struct sockaddr_in *)&a->ss)->sin_addr;
	return inet_ntop(a->ss.ss_family, src, buf, (socklen_t)cap) ? 0 : -errno;
}

int cfg_addr_port(const struct cfg_addr *a)
{
	if (a->len == 0)
		return 0;
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

bool cfg_addr_equal(const struct cfg_addr *x, const struct cfg_addr *y)
{
	return x->len == y->len && x->ss.ss_family == y->ss.ss_family && cfg_addr_port(x) == cfg_addr_port(y) &&
	       (x->ss.ss_family == AF_INET6 ? !memcmp(&((const struct sockaddr_in6 *)&x->ss)->sin6_addr,
						      &((const struct sockaddr_in6 *)&y->ss)->sin6_addr, 16)
					    : ((const struct sockaddr_in *)&x->ss)->sin_addr.s_addr ==
						      ((const struct sockaddr_in *)&y->ss)->sin_addr.s_addr);
}

/* ---- domain names -------------------------------------------------------- */

/* RFC 1035 §2.3.1 LDH labels (RFC 5890 for A-labels); RFC 3696 §2: a
 * top-level label is never all-numeric, which is what rules out IPv4
 * literals where a domain is expected. */
static bool ldh_valid(const char *s, size_t n)
{
	size_t i = 0;
	bool numeric = true;

	if (n == 0 || n > 253)
		return false;
	while (i < n) {
		size_t start = i;
		numeric = true;
		for (; i < n && s[i] != '.'; i++) {
			char ch = s[i];
			if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
				return false;
			if (!(ch >= '0' && ch <= '9'))
				numeric = false;
		}
		size_t len = i - start;
		if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-')
			return false;
		if (i < n)
			i++; /* the dot */
		if (i == n && s[n - 1] == '.')
			return false; /* an empty last label */
	}
	return !numeric;
}

int cfg_domain_normalise(const char *in, size_t n, char *out, size_t cap)
{
	char tmp[1024];
	bool ascii = true, ace = false;
	size_t len;

	if (n > 0 && in[n - 1] == '.')
		n--; /* the root label: "example.org." is "example.org" */
	if (n == 0 || n >= sizeof(tmp) || memchr(in, 0, n))
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		if (ch >= 0x80)
			ascii = false;
		tmp[i] = (char)(ch < 0x80 ? tolower(ch) : ch);
	}
	tmp[n] = 0;
	/* An A-label written as such ("xn--...") must still be valid punycode,
	 * so it goes through libidn2 too. */
	ace = !strncmp(tmp, "xn--", 4) || strstr(tmp, ".xn--");
	if (!ascii || ace) {
		char *res = NULL;
		/* IDNA2008 with UTS #46 non-transitional mapping: "ß" stays
		 * "ß" (xn--zca), case is folded. STD3 rules are not asked for
		 * because they drop bad characters silently; ldh_valid rejects. */
		if (idn2_to_ascii_8z(tmp, &res, IDN2_NONTRANSITIONAL) != IDN2_OK) {
			idn2_free(res);
			return -1;
		}
		len = strlen(res);
		if (len >= sizeof(tmp)) {
			idn2_free(res);
			return -1;
		}
		memcpy(tmp, res, len + 1);
		idn2_free(res);
	} else {
		len = n;
	}
	if (!ldh_valid(tmp, len) || len + 1 > cap)
		return -1;
	memcpy(out, tmp, len + 1);
	return (int)len;
}

/* A [route NAME] may also name an IP literal ("1.2.3.4", "[2001:db8::1]"),
 * kept in its canonical text form so it matches a `to` written either way. */
int cfg_route_name_normalise(const char *in, char *out, size_t cap)
{
	unsigned char buf[16];
	char txt[INET6_ADDRSTRLEN];
	size_t n = strlen(in);

	if (n > 2 && in[0] == '[' && in[n - 1] == ']') {
		char h[INET6_ADDRSTRLEN + 1];
		if (n - 2 >= sizeof(h))
			return -1;
		memcpy(h, in + 1, n - 2);
		h[n - 2] = 0;
		if (inet_pton(AF_INET6, h, buf) != 1 || !inet_ntop(AF_INET6, buf, txt, sizeof(txt)))
			return -1;
		if ((size_t)snprintf(out, cap, "[%s]", txt) >= cap)
			return -1;
		return (int)strlen(out);
	}
	if (inet_pton(AF_INET, in, buf) == 1) {
		if (!inet_ntop(AF_INET, buf, txt, sizeof(txt)) || strlen(txt) >= cap)
			return -1;
		strcpy(out, txt);
		return (int)strlen(out);
	}
	return cfg_domain_normalise(in, n, out, cap);
}

/* A remote-domain entry: "example.org" or "*.example.org" (every name below
 * example.org, not example.org itself). */
int cfg_pattern_normalise(const char *in, char *out, size_t cap)
{
	bool wild = in[0] == '*' && in[1] == '.';
	if (cap < 3)
		return -1;
	int n = cfg_domain_normalise(wild ? in + 2 : in, strlen(wild ? in + 2 : in), wild ? out + 2 : out,
				     wild ? cap - 2 : cap);
	if (n < 0)
		return -1;
	if (wild) {
		out[0] = '*';
		out[1] = '.';
		n += 2;
	}
	return n;
}
