/*
 * router/cfg.c — the router.conf parser.
 *
 * Design. The whole file is parsed in one pass, line by line, into a plain
 * struct cfg that the daemon reads but never writes. A reload parses into a
 * fresh struct and swaps it in, so nothing here needs to be incremental.
 *
 * Every directive is one line of the CFG_DIRECTIVES table below: its name, the
 * sections it may appear in, whether it may repeat, how many values it takes
 * and the function that checks and stores them. That table is the single
 * source of truth: the dispatcher, the "did you mean" hint, the
 * duplicate-directive check and cfg_directive_names[] (which the tests hold
 * against the shipped router.conf) are all derived from it.
 *
 * Errors are collected, not fatal: each one is printed as "NAME:LINE: message"
 * (like `nginx -t`) and counted, and parsing goes on so one run shows them all.
 * Nothing is silently ignored: an unknown directive, a directive in the wrong
 * section, a repeated single-valued directive, a duplicate section, a bad value
 * or a missing required value is an error. The one deliberate silence: the
 * directives inside an unknown section are skipped once the section header has
 * been reported, because guessing what they meant would only add noise.
 *
 * "Load" means more than syntax: files the config names (certificates, keys,
 * CA bundle, dialback secret) are opened here, so a config that parses is one
 * the daemon can start with. No DNS is done: addresses are IP literals, with
 * "localhost" as the one name, mapped to 127.0.0.1.
 *
 * Domain names are normalised once, here (lower-case, IDNA2008 A-labels via
 * libidn2), so the rest of the hub compares names with memcmp. Duplicate
 * sections are detected on the normalised names.
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

/* ---- sections ---------------------------------------------------------- */

enum cfg_sect { S_NONE, S_HUB, S_DOMAIN, S_COMPONENT, S_ROUTE, S_REMOTE, S_UNKNOWN };

#define SB(s)     (1u << (s))
#define HUB       SB(S_HUB)
#define DOMAIN    SB(S_DOMAIN)
#define COMPONENT SB(S_COMPONENT)
#define ROUTE     SB(S_ROUTE)
#define REMOTE    SB(S_REMOTE)

/* Indexed by enum cfg_sect; NULL for the pseudo sections. */
static const char *const sect_names[] = {
	NULL, "hub", "domain", "component", "route", "remote", NULL,
};
/* Sections that take a NAME. */
static const unsigned sect_named = DOMAIN | COMPONENT | ROUTE | REMOTE;

const char *const cfg_section_names[] = {"hub", "domain", "component", "route", "remote", NULL};

/* ---- the directive table ------------------------------------------------ */

struct parser;
typedef void cfg_handler(struct parser *p, int argc, char **argv);

/* name, sections, repeatable, min values, max values */
#define CFG_DIRECTIVES(X)                        \
	X(workers, HUB, 0, 1, 1)                 \
	X(domain, HUB, 0, 1, 1)                  \
	X(listen, HUB, 1, 2, 5)                  \
	X(http, HUB, 0, 1, 1)                    \
	X(dialback_secret_file, HUB, 0, 1, 1)    \
	X(log_level, HUB, 0, 1, 1)               \
	X(log_format, HUB, 0, 1, 1)              \
	X(log_rate_limit, HUB, 0, 1, 1)          \
	X(metrics_domains_max, HUB, 0, 1, 1)     \
	X(max_stanza_size, HUB, 0, 1, 1)         \
	X(max_stanza_size_preauth, HUB, 0, 1, 1) \
	X(max_depth, HUB, 0, 1, 1)               \
	X(max_attrs, HUB, 0, 1, 1)               \
	X(max_name, HUB, 0, 1, 1)                \
	X(link_queue_max, HUB, 0, 1, 1)          \
	X(send_queue_max, HUB, 0, 1, 1)          \
	X(stall_timeout, HUB, 0, 1, 1)           \
	X(queue_memory_max, HUB, 0, 1, 1)        \
	X(source_allowance, HUB, 0, 1, 1)        \
	X(idle_timeout, HUB, 0, 1, 1)            \
	X(keepalive_interval, HUB, 0, 1, 1)      \
	X(connect_timeout, HUB, 0, 1, 1)         \
	X(retry_min, HUB, 0, 1, 1)               \
	X(dns_server, HUB, 0, 1, 1)              \
	X(dns_cache_max, HUB, 0, 1, 1)           \
	X(dns_ttl_min, HUB, 0, 1, 1)             \
	X(dns_ttl_max, HUB, 0, 1, 1)             \
	X(dns_max_inflight, HUB, 0, 1, 1)        \
	X(ca_file, HUB, 0, 1, 1)                 \
	X(s2s_tls, HUB, 0, 1, 1)                 \
	X(s2s_auth, HUB, 0, 1, 1)                \
	X(remote_allow, HUB, 1, 1, 15)           \
	X(remote_deny, HUB, 1, 1, 15)            \
	X(dns_allow_private, HUB, 0, 1, 1)       \
	X(max_connections, HUB, 0, 1, 1)         \
	X(max_connections_per_ip, HUB, 0, 1, 1)  \
	X(connection_rate_per_ip, HUB, 0, 1, 1)  \
	X(preauth_timeout, HUB, 0, 1, 1)         \
	X(max_preauth_bytes, HUB, 0, 1, 1)       \
	X(max_pairs_per_stream, HUB, 0, 1, 1)    \
	X(max_verify_per_stream, HUB, 0, 1, 1)   \
	X(max_verify_total, HUB, 0, 1, 1)        \
	X(proxy_from, HUB, 1, 1, 15)             \
	X(drain_timeout, HUB, 0, 1, 1)           \
	X(control_socket, HUB, 0, 1, 1)          \
	X(cert, DOMAIN, 0, 1, 1)                 \
	X(key, DOMAIN, 0, 1, 1)                  \
	X(secret, COMPONENT, 0, 1, 1)            \
	X(connect, ROUTE, 1, 1, 1)               \
	X(tls, ROUTE | REMOTE, 0, 1, 1)          \
	X(direct_tls, ROUTE, 0, 1, 1)            \
	X(auth, REMOTE, 0, 1, 1)

enum cfg_dir_id {
#define X(n, s, r, lo, hi) D_##n,
	CFG_DIRECTIVES(X)
#undef X
		D__COUNT
};

#define X(n, s, r, lo, hi) static cfg_handler d_##n;
CFG_DIRECTIVES(X)
#undef X

struct cfg_directive {
	const char *name;
	unsigned sections;
	bool repeatable;
	int min, max;
	cfg_handler *fn;
};

static const struct cfg_directive directives[D__COUNT] = {
#define X(n, s, r, lo, hi) [D_##n] = {#n, s, r, lo, hi, d_##n},
	CFG_DIRECTIVES(X)
#undef X
};

const char *const cfg_directive_names[] = {
#define X(n, s, r, lo, hi) #n,
	CFG_DIRECTIVES(X)
#undef X
		NULL,
};

/* ---- section-name set ---------------------------------------------------- */

/*
 * Normalised section names -> the line each kind was declared on. A hosted
 * [domain X] and a [component X] may share a name (the domain carries the
 * certificate, the component receives the stanzas); a [route X] may not
 * share one with either, since a static route is for a domain we do not serve.
 * Open addressing: a deployment can hold thousands of domains.
 */
enum { K_DOMAIN, K_COMPONENT, K_ROUTE, K_REMOTE, K_ACL, K__COUNT };

struct name_ent {
	char *name;
	int line[K__COUNT];
};

struct name_set {
	struct name_ent *v;
	size_t cap, n;
};

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct name_ent *name_find(struct name_set *ns, const char *name, bool create)
{
	if (create && (ns->n + 1) * 2 > ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 64;
		struct name_ent *v = calloc(cap, sizeof(*v));
		if (!v)
			return NULL;
		for (size_t i = 0; i < ns->cap; i++) {
			if (!ns->v[i].name)
				continue;
			size_t j = name_hash(ns->v[i].name) & (cap - 1);
			while (v[j].name)
				j = (j + 1) & (cap - 1);
			v[j] = ns->v[i];
		}
		free(ns->v);
		ns->v = v;
		ns->cap = cap;
	}
	if (!ns->cap)
		return NULL;
	size_t i = name_hash(name) & (ns->cap - 1);
	while (ns->v[i].name) {
		if (!strcmp(ns->v[i].name, name))
			return &ns->v[i];
		i = (i + 1) & (ns->cap - 1);
	}
	if (!create)
		return NULL;
	ns->v[i].name = strdup(name);
	if (!ns->v[i].name)
		return NULL;
	ns->n++;
	return &ns->v[i];
}

static void name_set_free(struct name_set *ns)
{
	for (size_t i = 0; i < ns->cap; i++)
		free(ns->v[i].name);
	free(ns->v);
	memset(ns, 0, sizeof(*ns));
}

/* ---- parser state -------------------------------------------------------- */

struct parser {
	struct cfg *c;
	const char *file;
	FILE *err;
	int line;
	int nerr;
	bool oom;

	enum cfg_sect sect;
	int sect_line;
	bool sect_dup;             /* a second [hub]: reported, not re-checked */
	int seen[D__COUNT];        /* line of each directive in the current section */
	int hub_seen[D__COUNT];    /* ... in [hub], kept for the whole-file checks */
	int sect_first[S_UNKNOWN]; /* line of the first [hub] */
	/* The entry the current named section fills: an element of the cfg
	 * arrays, or `scratch` when the name was invalid or a duplicate, so its
	 * directives are still checked but go nowhere. */
	int cur; /* index into the cfg array, -1 = scratch */
	union {
		struct cfg_domain d;
		struct cfg_component k;
		struct cfg_route r;
		struct cfg_remote m;
	} scratch;
	bool *route_tls_set; /* per route: `tls` given, else s2s_tls applies */
	int cap_domains, cap_components, cap_routes, cap_remotes, cap_acl;
	struct name_set names;
};

static void perr(struct parser *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void perr(struct parser *p, int line, const char *fmt, ...)
{
	va_list ap;

	p->nerr++;
	if (!p->err)
		return;
	if (line > 0)
		fprintf(p->err, "%s:%d: ", p->file, line);
	else
		fprintf(p->err, "%s: ", p->file);
	va_start(ap, fmt);
	vfprintf(p->err, fmt, ap);
	va_end(ap);
	fputc('\n', p->err);
}

#define ERR(p, ...) perr((p), (p)->line, __VA_ARGS__)

static struct cfg_domain *cur_domain(struct parser *p)
{
	return p->cur < 0 ? &p->scratch.d : &p->c->domains[p->cur];
}

static struct cfg_component *cur_component(struct parser *p)
{
	return p->cur < 0 ? &p->scratch.k : &p->c->components[p->cur];
}

static struct cfg_route *cur_route(struct parser *p)
{
	return p->cur < 0 ? &p->scratch.r : &p->c->routes[p->cur];
}

static struct cfg_remote *cur_remote(struct parser *p)
{
	return p->cur < 0 ? &p->scratch.m : &p->c->remotes[p->cur];
}

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

enum unit { U_NUM, U_BYTES, U_SECONDS };

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
};

static void set_u32(struct parser *p, const char *name, const char *s, enum unit u, uint64_t lo, uint64_t hi,
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

static int parse_tls_mode(const char *s, enum cfg_tls_mode *m)
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

static int parse_auth_mode(const char *s, enum cfg_auth_mode *m)
{
	if (!strcmp(s, "dialback"))
		*m = CFG_AUTH_DIALBACK;
	else if (!strcmp(s, "certificate"))
		*m = CFG_AUTH_CERTIFICATE;
	else
		return -1;
	return 0;
}

static int parse_yes_no(const char *s, bool *v)
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
static void set_path(struct parser *p, const char *what, const char *s, char *field, size_t cap)
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

static bool addr_equal(const struct cfg_addr *x, const struct cfg_addr *y)
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
static int route_name_normalise(const char *in, char *out, size_t cap)
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

/* ---- directive handlers: [hub] ------------------------------------------- */

static void d_workers(struct parser *p, int argc, char **argv)
{
	uint32_t v = 0;

	if (!strcmp(argv[0], "auto")) {
		p->c->workers = 0;
		return;
	}
	set_u32(p, "workers", argv[0], U_NUM, 1, 1024, &v);
	if (v)
		p->c->workers = (int)v;
}

static void d_domain(struct parser *p, int argc, char **argv)
{
	char name[CFG_NAME_MAX];

	if (cfg_domain_normalise(argv[0], strlen(argv[0]), name, sizeof(name)) < 0)
		ERR(p, "domain: '%s' is not a valid domain name", argv[0]);
	else
		strcpy(p->c->hub_domain, name);
}

static void d_listen(struct parser *p, int argc, char **argv)
{
	struct cfg *c = p->c;
	struct cfg_listen l = {.line = p->line};
	int default_port;
	bool tls_given = false;

	if (!strcmp(argv[0], "s2s")) {
		l.kind = CFG_LISTEN_S2S;
		l.tls = CFG_TLS_OPTIONAL;
		default_port = 5269;
	} else if (!strcmp(argv[0], "s2s-tls")) {
		l.kind = CFG_LISTEN_S2S_TLS;
		l.tls = CFG_TLS_REQUIRED; /* XEP-0368: TLS from the first byte */
		default_port = 5270;
	} else if (!strcmp(argv[0], "component")) {
		l.kind = CFG_LISTEN_COMPONENT;
		l.tls = CFG_TLS_OFF; /* XEP-0114 has no STARTTLS */
		default_port = 5347;
	} else {
		ERR(p, "listen: unknown kind '%s' (expected s2s, s2s-tls or component)", argv[0]);
		return;
	}
	if (cfg_parse_addr(argv[1], &l.addr, default_port) < 0) {
		ERR(p, "listen: bad address '%s' (expected IPV4:PORT, [IPV6]:PORT or localhost:PORT)", argv[1]);
		return;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "proxy_protocol") && !l.proxy_protocol) {
			l.proxy_protocol = true;
		} else if (!strcmp(argv[i], "tls") && !tls_given && i + 1 < argc) {
			tls_given = true;
			l.tls_set = true;
			if (parse_tls_mode(argv[++i], &l.tls) < 0) {
				ERR(p, "listen: bad tls mode '%s' (expected required, optional or off)", argv[i]);
				return;
			}
		} else {
			ERR(p, "listen: unexpected '%s' (options: tls required|optional|off, proxy_protocol)", argv[i]);
			return;
		}
	}
	if (tls_given && l.kind == CFG_LISTEN_S2S_TLS && l.tls != CFG_TLS_REQUIRED) {
		ERR(p, "listen: an s2s-tls listener is direct TLS; its tls mode can only be required");
		return;
	}
	if (tls_given && l.kind == CFG_LISTEN_COMPONENT) {
		ERR(p, "listen: component listeners take no tls option (XEP-0114 has no STARTTLS)");
		return;
	}
	for (int i = 0; i < c->nlisten; i++) {
		if (addr_equal(&c->listen[i].addr, &l.addr)) {
			ERR(p, "listen: %s is already used by another listen line", l.addr.text);
			return;
		}
	}
	if (c->nlisten == (int)(sizeof(c->listen) / sizeof(c->listen[0]))) {
		ERR(p, "listen: at most %d listeners", c->nlisten);
		return;
	}
	c->listen[c->nlisten++] = l;
}

static void d_http(struct parser *p, int argc, char **argv)
{
	if (!strcmp(argv[0], "off")) {
		memset(&p->c->http, 0, sizeof(p->c->http));
		return;
	}
	if (cfg_parse_addr(argv[0], &p->c->http, 5280) < 0)
		ERR(p, "http: bad address '%s' (expected IPV4:PORT, [IPV6]:PORT, localhost:PORT or off)", argv[0]);
}

static void d_dialback_secret_file(struct parser *p, int argc, char **argv)
{
	struct cfg *c = p->c;
	char buf[256];
	ssize_t n;
	int fd;

	if (strlen(argv[0]) >= sizeof(c->dialback_secret_file)) {
		ERR(p, "dialback_secret_file: path is too long");
		return;
	}
	fd = open(argv[0], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ERR(p, "dialback_secret_file: cannot read '%s': %s", argv[0], strerror(errno));
		return;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		ERR(p, "dialback_secret_file: cannot read '%s': %s", argv[0], strerror(errno));
		return;
	}
	/* A trailing newline is what editors and `echo` leave; not part of it. */
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] <= ' ' || buf[i] > '~') {
			ERR(p, "dialback_secret_file: '%s' must hold one line of printable ASCII", argv[0]);
			explicit_bzero(buf, sizeof(buf));
			return;
		}
	}
	if (n < 16 || (size_t)n >= sizeof(c->dialback_secret)) {
		ERR(p, "dialback_secret_file: the secret in '%s' must be 16 to %zu characters", argv[0],
		    sizeof(c->dialback_secret) - 1);
		explicit_bzero(buf, sizeof(buf));
		return;
	}
	memcpy(c->dialback_secret, buf, (size_t)n);
	c->dialback_secret[n] = 0;
	explicit_bzero(buf, sizeof(buf));
	strcpy(c->dialback_secret_file, argv[0]);
}

static void d_log_level(struct parser *p, int argc, char **argv)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	for (int i = 0; i < 4; i++) {
		if (!strcmp(argv[0], names[i])) {
			p->c->log_level = i;
			return;
		}
	}
	ERR(p, "log_level: '%s' is not one of error, warn, info, debug", argv[0]);
}

static void d_log_format(struct parser *p, int argc, char **argv)
{
	if (!strcmp(argv[0], "text") || !strcmp(argv[0], "json"))
		p->c->log_json = !strcmp(argv[0], "json");
	else
		ERR(p, "log_format: '%s' is not one of text, json", argv[0]);
}

static void d_log_rate_limit(struct parser *p, int argc, char **argv)
{
	set_u32(p, "log_rate_limit", argv[0], U_NUM, 0, 1000000, &p->c->log_rate_limit);
}

static void d_metrics_domains_max(struct parser *p, int argc, char **argv)
{
	set_u32(p, "metrics_domains_max", argv[0], U_NUM, 0, 100000, &p->c->metrics_domains_max);
}

#define KB 1024ull
#define MB (1024ull * 1024)

static void d_max_stanza_size(struct parser *p, int argc, char **argv)
{
	set_u32(p, "max_stanza_size", argv[0], U_BYTES, 1 * KB, 64 * MB, &p->c->max_stanza_size);
}

static void d_max_stanza_size_preauth(struct parser *p, int argc, char **argv)
{
	set_u32(p, "max_stanza_size_preauth", argv[0], U_BYTES, 1 * KB, 64 * MB, &p->c->max_stanza_size_preauth);
}

static void d_max_depth(struct parser *p, int argc, char **argv)
{
	/* 2: the stream element and a stanza, nothing inside it. */
	set_u32(p, "max_depth", argv[0], U_NUM, 2, XML_MAX_DEPTH, &p->c->max_depth);
}

static void d_max_attrs(struct parser *p, int argc, char **argv)
{
	set_u32(p, "max_attrs", argv[0], U_NUM, 1, 4096, &p->c->max_attrs);
}

static void d_max_name(struct parser *p, int argc, char **argv)
{
	set_u32(p, "max_name", argv[0], U_BYTES, 16, 64 * KB, &p->c->max_name);
}

static void d_link_queue_max(struct parser *p, int argc, char **argv)
{
	set_u32(p, "link_queue_max", argv[0], U_NUM, 1, 10000000, &p->c->link_queue_max);
}

static void d_send_queue_max(struct parser *p, int argc, char **argv)
{
	set_u32(p, "send_queue_max", argv[0], U_BYTES, 4 * KB, 1024 * MB, &p->c->send_queue_max);
}

static void d_queue_memory_max(struct parser *p, int argc, char **argv)
{
	set_u32(p, "queue_memory_max", argv[0], U_BYTES, 1 * MB, 4095 * MB, &p->c->queue_memory_max);
}

static void d_source_allowance(struct parser *p, int argc, char **argv)
{
	set_u32(p, "source_allowance", argv[0], U_BYTES, 4 * KB, 1024 * MB, &p->c->source_allowance);
}

#define DAY (24 * 3600)

static void d_stall_timeout(struct parser *p, int argc, char **argv)
{
	set_u32(p, "stall_timeout", argv[0], U_SECONDS, 1, DAY, &p->c->stall_timeout);
}

static void d_idle_timeout(struct parser *p, int argc, char **argv)
{
	set_u32(p, "idle_timeout", argv[0], U_SECONDS, 0, 7 * DAY, &p->c->idle_timeout);
}

static void d_keepalive_interval(struct parser *p, int argc, char **argv)
{
	set_u32(p, "keepalive_interval", argv[0], U_SECONDS, 0, DAY, &p->c->keepalive_interval);
}

static void d_connect_timeout(struct parser *p, int argc, char **argv)
{
	set_u32(p, "connect_timeout", argv[0], U_SECONDS, 1, 3600, &p->c->connect_timeout);
}

static void d_retry_min(struct parser *p, int argc, char **argv)
{
	set_u32(p, "retry_min", argv[0], U_SECONDS, 1, DAY, &p->c->retry_min);
}

static void d_drain_timeout(struct parser *p, int argc, char **argv)
{
	set_u32(p, "drain_timeout", argv[0], U_SECONDS, 0, 3600, &p->c->drain_timeout);
}

/* A Unix socket path (sun_path holds 107 bytes), or off. */
static void d_control_socket(struct parser *p, int argc, char **argv)
{
	if (!strcmp(argv[0], "off")) {
		p->c->control_socket[0] = 0;
		return;
	}
	if (argv[0][0] != '/') {
		ERR(p, "control_socket: '%s' is not an absolute path (or off)", argv[0]);
		return;
	}
	if (strlen(argv[0]) >= sizeof(p->c->control_socket)) {
		ERR(p, "control_socket: path is longer than %zu bytes", sizeof(p->c->control_socket) - 1);
		return;
	}
	strcpy(p->c->control_socket, argv[0]);
}

static void d_dns_server(struct parser *p, int argc, char **argv)
{
	if (cfg_parse_addr(argv[0], &p->c->dns_server, 53) < 0)
		ERR(p, "dns_server: bad address '%s' (expected IPV4[:PORT] or [IPV6][:PORT])", argv[0]);
}

static void d_dns_cache_max(struct parser *p, int argc, char **argv)
{
	set_u32(p, "dns_cache_max", argv[0], U_NUM, 16, 10000000, &p->c->dns_cache_max);
}

static void d_dns_ttl_min(struct parser *p, int argc, char **argv)
{
	set_u32(p, "dns_ttl_min", argv[0], U_SECONDS, 1, DAY, &p->c->dns_ttl_min);
}

static void d_dns_ttl_max(struct parser *p, int argc, char **argv)
{
	set_u32(p, "dns_ttl_max", argv[0], U_SECONDS, 1, 7 * DAY, &p->c->dns_ttl_max);
}

static void d_dns_max_inflight(struct parser *p, int argc, char **argv)
{
	set_u32(p, "dns_max_inflight", argv[0], U_NUM, 1, 10000, &p->c->dns_max_inflight);
}

static void d_ca_file(struct parser *p, int argc, char **argv)
{
	set_path(p, "ca_file", argv[0], p->c->ca_file, sizeof(p->c->ca_file));
}

static void d_s2s_tls(struct parser *p, int argc, char **argv)
{
	if (parse_tls_mode(argv[0], &p->c->s2s_tls) < 0)
		ERR(p, "s2s_tls: '%s' is not one of required, optional, off", argv[0]);
}

/* ---- [hub]: inbound limits ---------------------------------------------- */

static void d_max_connections(struct parser *p, int argc, char **argv)
{
	set_u32(p, "max_connections", argv[0], U_NUM, 0, 10000000, &p->c->max_connections);
}

static void d_max_connections_per_ip(struct parser *p, int argc, char **argv)
{
	set_u32(p, "max_connections_per_ip", argv[0], U_NUM, 0, 10000000, &p->c->max_connections_per_ip);
}

static void d_connection_rate_per_ip(struct parser *p, int argc, char **argv)
{
	set_u32(p, "connection_rate_per_ip", argv[0], U_NUM, 0, 1000000, &p->c->connection_rate_per_ip);
}

static void d_preauth_timeout(struct parser *p, int argc, char **argv)
{
	set_u32(p, "preauth_timeout", argv[0], U_SECONDS, 1, 3600, &p->c->preauth_timeout);
}

static void d_max_preauth_bytes(struct parser *p, int argc, char **argv)
{
	set_u32(p, "max_preauth_bytes", argv[0], U_BYTES, 1 * KB, 64 * MB, &p->c->max_preauth_bytes);
}

static void d_max_pairs_per_stream(struct parser *p, int argc, char **argv)
{
	/* the session counts pairs in 16 bits */
	set_u32(p, "max_pairs_per_stream", argv[0], U_NUM, 1, 65535, &p->c->max_pairs_per_stream);
}

static void d_max_verify_per_stream(struct parser *p, int argc, char **argv)
{
	set_u32(p, "max_verify_per_stream", argv[0], U_NUM, 1, 65535, &p->c->max_verify_per_stream);
}

static void d_max_verify_total(struct parser *p, int argc, char **argv)
{
	set_u32(p, "max_verify_total", argv[0], U_NUM, 1, 10000000, &p->c->max_verify_total);
}

static void d_proxy_from(struct parser *p, int argc, char **argv)
{
	struct cfg *c = p->c;

	for (int i = 0; i < argc; i++) {
		struct proxy_cidr b;
		if (proxy_cidr_parse(argv[i], &b) < 0) {
			ERR(p,
			    "proxy_from: '%s' is not an address or a block like 10.0.0.0/8 or 2001:db8::/32 "
			    "(host bits must be zero)",
			    argv[i]);
			continue;
		}
		if (c->nproxy_from == PROXY_MAX_TRUSTED) {
			ERR(p, "proxy_from: at most %d addresses or blocks", PROXY_MAX_TRUSTED);
			return;
		}
		c->proxy_from[c->nproxy_from++] = b;
	}
}

static void d_s2s_auth(struct parser *p, int argc, char **argv)
{
	if (parse_auth_mode(argv[0], &p->c->s2s_auth) < 0)
		ERR(p, "s2s_auth: '%s' is not one of dialback, certificate", argv[0]);
}

static void d_dns_allow_private(struct parser *p, int argc, char **argv)
{
	if (parse_yes_no(argv[0], &p->c->dns_allow_private) < 0)
		ERR(p, "dns_allow_private: '%s' is not yes or no", argv[0]);
}

static int grow(struct parser *p, void **arr, int *n, int *cap, size_t size);

static void acl_add(struct parser *p, const char *what, bool allow, int argc, char **argv)
{
	struct cfg *c = p->c;
	char name[CFG_NAME_MAX];

	for (int i = 0; i < argc; i++) {
		if (cfg_pattern_normalise(argv[i], name, sizeof(name)) < 0) {
			ERR(p, "%s: '%s' is not a domain name or *.domain", what, argv[i]);
			continue;
		}
		struct name_ent *e = name_find(&p->names, name, true);
		if (!e) {
			p->oom = true;
			return;
		}
		if (e->line[K_ACL]) {
			ERR(p, "%s: %s is already listed at line %d", what, name, e->line[K_ACL]);
			continue;
		}
		e->line[K_ACL] = p->line;
		int idx = grow(p, (void **)&c->acl, &c->nacl, &p->cap_acl, sizeof(*c->acl));
		if (idx < 0)
			return;
		strcpy(c->acl[idx].name, name);
		c->acl[idx].allow = allow;
		c->acl[idx].line = p->line;
		if (allow)
			c->have_allow = true;
	}
}

static void d_remote_allow(struct parser *p, int argc, char **argv)
{
	acl_add(p, "remote_allow", true, argc, argv);
}

static void d_remote_deny(struct parser *p, int argc, char **argv)
{
	acl_add(p, "remote_deny", false, argc, argv);
}

/* ---- [domain] [component] [route] ---------------------------------------- */

static void d_cert(struct parser *p, int argc, char **argv)
{
	struct cfg_domain *d = cur_domain(p);
	set_path(p, "cert", argv[0], d->cert, sizeof(d->cert));
}

static void d_key(struct parser *p, int argc, char **argv)
{
	struct cfg_domain *d = cur_domain(p);
	set_path(p, "key", argv[0], d->key, sizeof(d->key));
}

static void d_secret(struct parser *p, int argc, char **argv)
{
	struct cfg_component *k = cur_component(p);

	if (strlen(argv[0]) >= sizeof(k->secret))
		ERR(p, "secret: longer than %zu characters", sizeof(k->secret) - 1);
	else
		strcpy(k->secret, argv[0]);
}

static void d_connect(struct parser *p, int argc, char **argv)
{
	struct cfg_route *r = cur_route(p);
	struct cfg_addr a;

	if (cfg_parse_addr(argv[0], &a, 5269) < 0) {
		ERR(p, "connect: bad address '%s' (expected IPV4[:PORT] or [IPV6][:PORT])", argv[0]);
		return;
	}
	if (r->nconnect == (int)(sizeof(r->connect) / sizeof(r->connect[0]))) {
		ERR(p, "connect: at most %d addresses per route", r->nconnect);
		return;
	}
	r->connect[r->nconnect++] = a;
}

static void d_tls(struct parser *p, int argc, char **argv)
{
	if (p->sect == S_REMOTE) {
		if (parse_tls_mode(argv[0], &cur_remote(p)->tls) < 0)
			ERR(p, "tls: '%s' is not one of required, optional, off", argv[0]);
		else
			cur_remote(p)->tls_set = true;
		return;
	}
	if (parse_tls_mode(argv[0], &cur_route(p)->tls) < 0)
		ERR(p, "tls: '%s' is not one of required, optional, off", argv[0]);
	else if (p->cur >= 0) {
		p->route_tls_set[p->cur] = true;
		cur_route(p)->tls_set = true;
	}
}

/* ---- [remote NAME] ------------------------------------------------------- */

static void d_auth(struct parser *p, int argc, char **argv)
{
	if (parse_auth_mode(argv[0], &cur_remote(p)->auth) < 0)
		ERR(p, "auth: '%s' is not one of dialback, certificate", argv[0]);
	else
		cur_remote(p)->auth_set = true;
}

static void d_direct_tls(struct parser *p, int argc, char **argv)
{
	if (!strcmp(argv[0], "yes"))
		cur_route(p)->direct_tls = true;
	else if (!strcmp(argv[0], "no"))
		cur_route(p)->direct_tls = false;
	else
		ERR(p, "direct_tls: '%s' is not yes or no", argv[0]);
}

/* ---- sections ------------------------------------------------------------ */

/* Grow one of the section arrays by one zeroed element; returns its index. */
static int grow(struct parser *p, void **arr, int *n, int *cap, size_t size)
{
	if (*n == *cap) {
		int ncap = *cap ? *cap * 2 : 16;
		void *v = realloc(*arr, (size_t)ncap * size);
		if (!v) {
			p->oom = true;
			return -1;
		}
		*arr = v;
		*cap = ncap;
	}
	memset((char *)*arr + (size_t)*n * size, 0, size);
	return (*n)++;
}

/* Checks that need the whole section: run when the next one opens or at EOF. */
static void section_close(struct parser *p)
{
	switch (p->sect_dup ? S_NONE : p->sect) {
	case S_DOMAIN: {
		struct cfg_domain *d = cur_domain(p);
		if (d->key[0] && !d->cert[0] && !p->seen[D_cert])
			perr(p, p->sect_line, "[domain %s]: key without cert", d->name);
		else if (d->cert[0] && !d->key[0] && !p->seen[D_key])
			strcpy(d->key, d->cert); /* one PEM holding both */
		break;
	}
	case S_COMPONENT:
		if (!p->seen[D_secret])
			perr(p, p->sect_line, "[component %s]: missing required 'secret'", cur_component(p)->name);
		break;
	case S_ROUTE: {
		struct cfg_route *r = cur_route(p);
		if (!p->seen[D_connect])
			perr(p, p->sect_line, "[route %s]: missing required 'connect'", r->name);
		if (r->direct_tls && r->tls == CFG_TLS_OFF && p->seen[D_tls])
			perr(p, p->sect_line, "[route %s]: direct_tls yes contradicts tls off", r->name);
		break;
	}
	case S_REMOTE: {
		struct cfg_remote *m = cur_remote(p);
		if (m->auth_set && m->auth == CFG_AUTH_CERTIFICATE && m->tls_set && m->tls != CFG_TLS_REQUIRED)
			perr(p, p->sect_line, "[remote %s]: auth certificate needs TLS; tls %s contradicts it", m->name,
			     cfg_tls_mode_name(m->tls));
		break;
	}
	default:
		break;
	}
	p->sect = S_NONE;
}

static unsigned edit_distance(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	unsigned row[64];

	if (na >= 63 || nb >= 63)
		return 99;
	for (size_t j = 0; j <= nb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= na; i++) {
		unsigned diag = row[0];
		row[0] = (unsigned)i;
		for (size_t j = 1; j <= nb; j++) {
			unsigned up = row[j];
			unsigned best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[nb];
}

/* The closest known name within two edits, for "did you mean". */
static const char *closest(const char *word, const char *const *names)
{
	const char *best = NULL;
	unsigned bd = 3;

	for (; *names; names++) {
		unsigned d = edit_distance(word, *names);
		if (d < bd) {
			bd = d;
			best = *names;
		}
	}
	return best;
}

static void section_open(struct parser *p, int argc, char **argv)
{
	struct cfg *c = p->c;
	enum cfg_sect s = S_UNKNOWN;
	char name[CFG_NAME_MAX];
	int kind, idx = -1;

	section_close(p);
	memset(p->seen, 0, sizeof(p->seen));
	p->sect_line = p->line;
	p->sect_dup = false;
	p->cur = -1;
	memset(&p->scratch, 0, sizeof(p->scratch));

	for (int i = S_HUB; i < S_UNKNOWN; i++)
		if (argc > 0 && !strcmp(argv[0], sect_names[i]))
			s = (enum cfg_sect)i;
	if (argc > 0 && !strcmp(argv[0], "cluster")) {
		/* The Redis-backed cluster of the design is not written yet. A
		 * node that parsed [cluster] and then ran alone would look
		 * clustered and not be: refuse the file instead. */
		ERR(p, "[cluster]: not supported by this build (fedhub has no cluster implementation yet); "
		       "remove the section to run a single node");
		p->sect = S_UNKNOWN; /* its directives are not reported again */
		return;
	}
	if (s == S_UNKNOWN) {
		const char *hint = argc > 0 ? closest(argv[0], cfg_section_names) : NULL;
		ERR(p, "unknown section [%s]%s%s%s", argc > 0 ? argv[0] : "", hint ? " (did you mean [" : "",
		    hint ? hint : "", hint ? "]?)" : "");
		p->sect = S_UNKNOWN;
		return;
	}
	p->sect = s;
	if (!(sect_named & SB(s))) {
		if (argc != 1)
			ERR(p, "[%s] takes no name", argv[0]);
		if (p->sect_first[s]) {
			ERR(p, "duplicate section [%s] (first at line %d)", argv[0], p->sect_first[s]);
			p->sect_dup = true;
		} else
			p->sect_first[s] = p->line;
		return;
	}
	if (argc != 2) {
		ERR(p, "[%s NAME] needs exactly one name", argv[0]);
		return;
	}
	if ((s == S_ROUTE    ? route_name_normalise(argv[1], name, sizeof(name))
	     : s == S_REMOTE ? cfg_pattern_normalise(argv[1], name, sizeof(name))
			     : cfg_domain_normalise(argv[1], strlen(argv[1]), name, sizeof(name))) < 0) {
		ERR(p, "[%s %s]: not a valid %s", argv[0], argv[1],
		    s == S_ROUTE    ? "domain name or IP literal"
		    : s == S_REMOTE ? "domain name or *.domain"
				    : "domain name");
		return;
	}
	kind = s == S_DOMAIN ? K_DOMAIN : s == S_COMPONENT ? K_COMPONENT : s == S_ROUTE ? K_ROUTE : K_REMOTE;
	struct name_ent *e = name_find(&p->names, name, true);
	if (!e) {
		p->oom = true;
		return;
	}
	if (e->line[kind]) {
		ERR(p, "duplicate section [%s %s] (first at line %d)", argv[0], name, e->line[kind]);
		return;
	}
	if (kind == K_REMOTE && (e->line[K_DOMAIN] || e->line[K_COMPONENT])) {
		ERR(p, "[remote %s]: %s is served here ([%s] at line %d); [remote] is for remote domains", name, name,
		    e->line[K_DOMAIN] ? "domain" : "component",
		    e->line[K_DOMAIN] ? e->line[K_DOMAIN] : e->line[K_COMPONENT]);
		return;
	}
	if (kind == K_ROUTE && (e->line[K_DOMAIN] || e->line[K_COMPONENT])) {
		ERR(p, "[route %s]: %s is served here ([%s] at line %d); a route is for remote domains", name, name,
		    e->line[K_DOMAIN] ? "domain" : "component",
		    e->line[K_DOMAIN] ? e->line[K_DOMAIN] : e->line[K_COMPONENT]);
		return;
	}
	if ((kind == K_DOMAIN || kind == K_COMPONENT) && e->line[K_ROUTE]) {
		ERR(p, "[%s %s]: %s already has a [route] at line %d; a route is for remote domains", argv[0], name,
		    name, e->line[K_ROUTE]);
		return;
	}
	e->line[kind] = p->line;

	switch (s) {
	case S_DOMAIN:
		idx = grow(p, (void **)&c->domains, &c->ndomains, &p->cap_domains, sizeof(*c->domains));
		if (idx >= 0) {
			strcpy(c->domains[idx].name, name);
			c->domains[idx].line = p->line;
		}
		break;
	case S_COMPONENT:
		idx = grow(p, (void **)&c->components, &c->ncomponents, &p->cap_components, sizeof(*c->components));
		if (idx >= 0) {
			strcpy(c->components[idx].name, name);
			c->components[idx].line = p->line;
		}
		break;
	case S_ROUTE: {
		int old_cap = p->cap_routes;
		idx = grow(p, (void **)&c->routes, &c->nroutes, &p->cap_routes, sizeof(*c->routes));
		if (idx < 0)
			break;
		if (p->cap_routes != old_cap) {
			bool *v = realloc(p->route_tls_set, (size_t)p->cap_routes * sizeof(bool));
			if (!v) {
				p->oom = true;
				c->nroutes--;
				idx = -1;
				break;
			}
			p->route_tls_set = v;
		}
		p->route_tls_set[idx] = false;
		strcpy(c->routes[idx].name, name);
		c->routes[idx].line = p->line;
		break;
	}
	case S_REMOTE:
		idx = grow(p, (void **)&c->remotes, &c->nremotes, &p->cap_remotes, sizeof(*c->remotes));
		if (idx >= 0) {
			strcpy(c->remotes[idx].name, name);
			c->remotes[idx].line = p->line;
		}
		break;
	default:
		break;
	}
	p->cur = idx;
}

/* ---- lines --------------------------------------------------------------- */

#define MAX_ARGS 16

/* Split a line in place into words. `#` starts a comment at the start of the
 * line or after whitespace, so a secret like "a#b" stays whole. Returns the
 * number of words, or -1 (error reported) on a control character. */
static int split(struct parser *p, char *s, char **argv, int max)
{
	int argc = 0;

	for (char *q = s; *q; q++) {
		if ((unsigned char)*q < ' ' && *q != '\t') {
			ERR(p, "control character 0x%02x in line", (unsigned char)*q);
			return -1;
		}
	}
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s || *s == '#')
			return argc;
		if (argc == max) {
			ERR(p, "too many words on one line");
			return -1;
		}
		argv[argc++] = s;
		while (*s && *s != ' ' && *s != '\t')
			s++;
		if (*s)
			*s++ = 0;
	}
}

static void parse_header(struct parser *p, char **argv, int argc)
{
	/* Re-split "[route [::1]]" or "[domain x] " into its words: drop the
	 * outer brackets, which may be their own words ("[ hub ]"). */
	char *last = argv[argc - 1];
	size_t ln = strlen(last);
	char *words[MAX_ARGS];
	int n = 0;

	if (last[ln - 1] != ']') {
		ERR(p, "section header without closing ']'");
		p->sect = S_UNKNOWN; /* do not pin its directives on the last section */
		return;
	}
	last[ln - 1] = 0;
	argv[0]++;
	for (int i = 0; i < argc; i++)
		if (argv[i][0])
			words[n++] = argv[i];
	section_open(p, n, words);
}

static void parse_directive(struct parser *p, int argc, char **argv)
{
	const struct cfg_directive *d = NULL;
	int id;

	for (id = 0; id < D__COUNT; id++) {
		if (!strcmp(argv[0], directives[id].name)) {
			d = &directives[id];
			break;
		}
	}
	if (p->sect == S_UNKNOWN)
		return; /* reported with its header */
	if (!d) {
		const char *hint = closest(argv[0], cfg_directive_names);
		ERR(p, "unknown directive '%s'%s%s%s", argv[0], hint ? " (did you mean '" : "", hint ? hint : "",
		    hint ? "'?)" : "");
		return;
	}
	if (p->sect == S_NONE) {
		ERR(p, "'%s' before any section (start the file with [hub])", d->name);
		return;
	}
	if (!(d->sections & SB(p->sect))) {
		const char *home = "";
		for (int s = S_HUB; s < S_UNKNOWN; s++)
			if (d->sections & SB(s))
				home = sect_names[s];
		ERR(p, "'%s' is not allowed in [%s] (it belongs in [%s%s])", d->name, sect_names[p->sect], home,
		    (sect_named & d->sections) ? " NAME" : "");
		return;
	}
	if (argc - 1 < d->min || argc - 1 > d->max) {
		if (d->min == d->max)
			ERR(p, "'%s' takes %d value%s, got %d", d->name, d->min, d->min == 1 ? "" : "s", argc - 1);
		else
			ERR(p, "'%s' takes %d to %d values, got %d", d->name, d->min, d->max, argc - 1);
		return;
	}
	if (!d->repeatable && p->seen[id]) {
		ERR(p, "duplicate '%s' (first at line %d)", d->name, p->seen[id]);
		return;
	}
	if (!p->seen[id])
		p->seen[id] = p->line;
	if (p->sect == S_HUB && !p->sect_dup && !p->hub_seen[id])
		p->hub_seen[id] = p->line;
	d->fn(p, argc - 1, argv + 1);
}

/* ---- whole-file checks --------------------------------------------------- */

static void set_defaults(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->workers = 0;
	strcpy(c->hub_domain, "localhost");
	c->log_level = 2;
	c->log_rate_limit = 10;
	c->metrics_domains_max = 100;
	c->max_stanza_size = 256 * 1024;
	c->max_stanza_size_preauth = 16 * 1024;
	c->max_depth = 32;
	c->max_attrs = 64;
	c->max_name = 256;
	c->link_queue_max = 1000;
	c->send_queue_max = 4 * 1024 * 1024;
	c->stall_timeout = 30;
	c->queue_memory_max = 256 * 1024 * 1024;
	c->source_allowance = 256 * 1024;
	c->idle_timeout = 600;
	c->keepalive_interval = 60;
	c->connect_timeout = 10;
	c->retry_min = 2;
	c->dns_cache_max = 100000;
	c->dns_ttl_min = 30;
	c->dns_ttl_max = 3600;
	c->dns_max_inflight = 64;
	c->s2s_tls = CFG_TLS_OPTIONAL;
	c->max_connections = 50000;
	c->max_connections_per_ip = 256;
	c->connection_rate_per_ip = 64;
	c->preauth_timeout = 0; /* final_checks: 3 x connect_timeout */
	c->max_preauth_bytes = 128 * 1024;
	c->max_pairs_per_stream = 1000;
	c->max_verify_per_stream = 64;
	c->max_verify_total = 4096;
	c->drain_timeout = 10;
}

static void final_checks(struct parser *p)
{
	struct cfg *c = p->c;
	bool have_cert = false;

	if (!p->sect_first[S_HUB]) {
		perr(p, 0, "no [hub] section");
		return;
	}
	if (c->nlisten == 0)
		perr(p, p->sect_first[S_HUB], "[hub]: no 'listen' line; the hub would accept nothing");
	if (c->max_stanza_size_preauth > c->max_stanza_size)
		perr(p,
		     p->hub_seen[D_max_stanza_size_preauth] ? p->hub_seen[D_max_stanza_size_preauth]
							    : p->sect_first[S_HUB],
		     "max_stanza_size_preauth (%u) exceeds max_stanza_size (%u)", c->max_stanza_size_preauth,
		     c->max_stanza_size);
	if (c->dns_ttl_min > c->dns_ttl_max)
		perr(p, p->seen[D_dns_ttl_min] ? p->seen[D_dns_ttl_min] : p->sect_first[S_HUB],
		     "dns_ttl_min (%us) exceeds dns_ttl_max (%us)", c->dns_ttl_min, c->dns_ttl_max);
	/* A verification may take connect_timeout: the deadline must leave
	 * room for one, or no dialback peer could ever authenticate. */
	if (!c->preauth_timeout) /* not given (the directive takes 1 and more) */
		c->preauth_timeout = c->connect_timeout * 3 > 3600 ? 3600 : c->connect_timeout * 3;
	else if (c->preauth_timeout < c->connect_timeout)
		perr(p, p->sect_first[S_HUB], "preauth_timeout (%us) is shorter than connect_timeout (%us)",
		     c->preauth_timeout, c->connect_timeout);
	if (c->max_preauth_bytes < c->max_stanza_size_preauth)
		perr(p, p->sect_first[S_HUB], "max_preauth_bytes (%u) is less than max_stanza_size_preauth (%u)",
		     c->max_preauth_bytes, c->max_stanza_size_preauth);
	if (c->max_verify_per_stream > c->max_pairs_per_stream)
		c->max_verify_per_stream = c->max_pairs_per_stream; /* cannot be reached anyway */
	if (c->nproxy_from) {
		bool any = false;
		for (int i = 0; i < c->nlisten; i++)
			any |= c->listen[i].proxy_protocol;
		if (!any)
			perr(p, p->sect_first[S_HUB],
			     "proxy_from: no listener has proxy_protocol, so no PROXY header is ever read");
	}

	for (int i = 0; i < c->ndomains; i++)
		have_cert |= c->domains[i].cert[0] != 0;
	/* Secure by default: with certificates to offer, STARTTLS is required
	 * on s2s listeners and outbound links unless the file says otherwise;
	 * without any, TLS cannot be offered and stays optional outbound. */
	for (int i = 0; i < c->nlisten; i++)
		if (c->listen[i].kind == CFG_LISTEN_S2S && !c->listen[i].tls_set)
			c->listen[i].tls = have_cert ? CFG_TLS_REQUIRED : CFG_TLS_OPTIONAL;
	if (!p->hub_seen[D_s2s_tls]) /* `seen` is the last section's by now */
		c->s2s_tls = have_cert || c->s2s_auth == CFG_AUTH_CERTIFICATE ? CFG_TLS_REQUIRED : CFG_TLS_OPTIONAL;
	for (int i = 0; i < c->nlisten && !have_cert; i++)
		if (c->listen[i].kind != CFG_LISTEN_COMPONENT && c->listen[i].tls == CFG_TLS_REQUIRED)
			perr(p, c->listen[i].line, "listen %s %s requires TLS but no [domain] has a cert",
			     cfg_listen_kind_name(c->listen[i].kind), c->listen[i].addr.text);

	/* The hub's own domain is answered by the hub: no component or
	 * route may claim it. */
	struct name_ent *e = name_find(&p->names, c->hub_domain, false);
	if (e && e->line[K_COMPONENT])
		perr(p, e->line[K_COMPONENT], "[component %s]: that is the hub's own domain", c->hub_domain);
	if (e && e->line[K_ROUTE])
		perr(p, e->line[K_ROUTE], "[route %s]: that is the hub's own domain", c->hub_domain);

	for (int i = 0; i < c->nroutes; i++)
		if (!p->route_tls_set[i])
			c->routes[i].tls = c->s2s_tls;

	/* Certificates are only seen over TLS. */
	if (c->s2s_auth == CFG_AUTH_CERTIFICATE && p->hub_seen[D_s2s_tls] && c->s2s_tls != CFG_TLS_REQUIRED)
		perr(p, p->hub_seen[D_s2s_tls], "s2s_auth certificate needs TLS; s2s_tls %s contradicts it",
		     cfg_tls_mode_name(c->s2s_tls));
	for (int i = 0; i < c->nroutes; i++) {
		struct policy pol = policy_lookup(c, c->routes[i].name, strlen(c->routes[i].name));
		if (pol.auth == CFG_AUTH_CERTIFICATE && c->routes[i].tls_set && c->routes[i].tls != CFG_TLS_REQUIRED)
			perr(p, c->routes[i].line, "[route %s]: tls %s, but the domain's auth is certificate",
			     c->routes[i].name, cfg_tls_mode_name(c->routes[i].tls));
	}
}

/* Without a shared secret file each node makes its own: dialback keys
 * (XEP-0185) then verify only on the node that issued them; nodes serving
 * the same domains share a dialback_secret_file. */
static int random_secret(char *out, size_t cap)
{
	unsigned char raw[32];
	ssize_t n = getrandom(raw, sizeof(raw), 0);

	if (n != (ssize_t)sizeof(raw) || cap < 2 * sizeof(raw) + 1)
		return -1;
	for (size_t i = 0; i < sizeof(raw); i++)
		sprintf(out + 2 * i, "%02x", raw[i]);
	explicit_bzero(raw, sizeof(raw));
	return 0;
}

/* ---- public -------------------------------------------------------------- */

/* [route] lookups happen on every verification and outbound link attempt:
 * a hash index over c->routes, built once the file is read, then only read
 * (by every worker, without locks). */
static bool route_eq(const void *ctx, uint32_t i, uint32_t h)
{
	const struct cfg *c = ((const void *const *)ctx)[0];
	const char *name = ((const void *const *)ctx)[1];
	(void)h;
	return strcmp(c->routes[i].name, name) == 0;
}

static uint32_t route_hash_at(const void *ctx, uint32_t i)
{
	const struct cfg *c = ((const void *const *)ctx)[0];
	return pix_hash1(c->routes[i].name, strlen(c->routes[i].name));
}

static void route_index_build(struct cfg *c)
{
	const void *ctx[2] = {c, NULL};
	pix_rebuild(&c->route_ix, (uint32_t)c->nroutes, route_hash_at, ctx);
}

const struct cfg_route *cfg_route_find(const struct cfg *c, const char *domain)
{
	const void *ctx[2] = {c, domain};
	int64_t i = pix_find(&c->route_ix, (uint32_t)c->nroutes, pix_hash1(domain, strlen(domain)), route_eq, ctx);
	return i < 0 ? NULL : &c->routes[i];
}

int cfg_parse(struct cfg *c, const char *text, const char *name, FILE *err)
{
	struct parser p = {.c = c, .file = name ? name : "router.conf", .err = err, .cur = -1};
	char *buf, *line, *next;
	char *argv[MAX_ARGS];
	int argc;

	set_defaults(c);
	buf = strdup(text);
	if (!buf) {
		perr(&p, 0, "out of memory");
		return p.nerr;
	}
	for (line = buf; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		p.line++;
		size_t ln = strlen(line);
		if (ln && line[ln - 1] == '\r')
			line[--ln] = 0; /* CRLF files */
		argc = split(&p, line, argv, MAX_ARGS);
		if (argc <= 0)
			continue;
		if (argv[0][0] == '[')
			parse_header(&p, argv, argc);
		else
			parse_directive(&p, argc, argv);
		if (p.oom)
			break;
	}
	free(buf);
	if (!p.oom) {
		section_close(&p);
		route_index_build(c);
		c->policy = policy_tab_new(c); /* final_checks looks routes up in it */
		final_checks(&p);
		if (!c->dialback_secret[0] && random_secret(c->dialback_secret, sizeof(c->dialback_secret)) < 0)
			perr(&p, 0, "cannot generate a dialback secret: %s", strerror(errno));
	}
	if (p.oom)
		perr(&p, p.line, "out of memory");
	free(p.route_tls_set);
	name_set_free(&p.names);
	explicit_bzero(&p.scratch, sizeof(p.scratch));
	return p.nerr;
}

int cfg_load(struct cfg *c, const char *path, FILE *err)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t len = 0, cap = 0;
	int r;

	set_defaults(c);
	if (!f) {
		if (err)
			fprintf(err, "%s: cannot open: %s\n", path, strerror(errno));
		return 1;
	}
	for (;;) {
		if (cap - len < 65536) {
			/* 64 MiB is tens of thousands of domains: far beyond
			 * any real file, and a guard against reading a device. */
			if (cap >= 64u << 20) {
				if (err)
					fprintf(err, "%s: larger than 64 MiB\n", path);
				goto fail;
			}
			cap = cap ? cap * 2 : 65536 * 2;
			char *t = realloc(text, cap + 1);
			if (!t) {
				if (err)
					fprintf(err, "%s: out of memory\n", path);
				goto fail;
			}
			text = t;
		}
		size_t n = fread(text + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		if (err)
			fprintf(err, "%s: read error: %s\n", path, strerror(errno));
		goto fail;
	}
	fclose(f);
	text[len] = 0;
	if (memchr(text, 0, len)) {
		if (err)
			fprintf(err, "%s: contains a NUL byte (not a text file?)\n", path);
		free(text);
		return 1;
	}
	r = cfg_parse(c, text, path, err);
	free(text);
	return r;
fail:
	fclose(f);
	free(text);
	return 1;
}

const char cfg_default_text[] = "# fedhub's built-in configuration, used when it runs without -c:\n"
				"# everything on loopback, no certificates.\n"
				"[hub]\n"
				"workers auto\n"
				"domain localhost\n"
				"listen s2s 127.0.0.1:5269\n"
				"listen component 127.0.0.1:5347\n"
				"http 127.0.0.1:5280\n"
				"\n"
				"[domain localhost]\n"
				"\n"
				"[component echo.localhost]\n"
				"secret secret\n";

int cfg_load_default(struct cfg *c, FILE *err)
{
	return cfg_parse(c, cfg_default_text, "(built-in config)", err);
}

void cfg_free(struct cfg *c)
{
	if (c->components)
		explicit_bzero(c->components, (size_t)c->ncomponents * sizeof(*c->components));
	free(c->domains);
	free(c->components);
	free(c->routes);
	free(c->remotes);
	free(c->acl);
	policy_tab_free(c->policy);
	pix_free(&c->route_ix);
	explicit_bzero(c, sizeof(*c));
}
