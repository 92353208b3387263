/*
 * router/cfg.c — the router.conf parser.
 *
 * Design. The whole file is parsed in one pass, line by line, into a plain
 * struct cfg that the daemon reads but never writes. A reload parses into a
 * fresh struct and swaps it in, so nothing here needs to be incremental.
 *
 * Every directive is one line of the CFG_DIRECTIVES table (cfg-int.h): its name, the
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
 *
 * Files. This one holds the table, the line parser, section open/close and
 * the whole-file checks; router/cfg_value.c the value parsers (numbers,
 * units, addresses, domain names); router/cfg_dir.c one handler per
 * directive. router/cfg-int.h is what the three share.
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

/* ---- sections ---------------------------------------------------------- */

/* Indexed by enum cfg_sect; NULL for the pseudo sections. */
const char *const cfg_sect_names[] = {
	NULL, "hub", "domain", "component", "route", "remote", "backend", "cluster", NULL,
};
/* Sections that take a NAME. */
static const unsigned sect_named = DOMAIN | COMPONENT | ROUTE | REMOTE | BACKEND;

const char *const cfg_section_names[] = {"hub", "domain", "component", "route", "remote", "backend", "cluster", NULL};

/* ---- the directive table ------------------------------------------------ */

struct cfg_directive {
	const char *name;
	unsigned sections;
	bool repeatable;
	int min, max;
	cfg_handler *fn;
};

static const struct cfg_directive directives[D__COUNT] = {
#define X(n, s, r, lo, hi) [D_##n] = {#n, s, r, lo, hi, cfg_d_##n},
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

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

struct name_ent *cfg_names_find(struct name_set *ns, const char *name, bool create)
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

/* ---- errors ------------------------------------------------------------- */

void perr(struct parser *p, int line, const char *fmt, ...)
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
	case S_BACKEND:
		cfg_backend_close(p);
		break;
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
		if (argc > 0 && !strcmp(argv[0], cfg_sect_names[i]))
			s = (enum cfg_sect)i;
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
		} else {
			p->sect_first[s] = p->line;
			if (s == S_CLUSTER) {
				c->cluster.on = true;
				c->cluster.line = p->line;
			}
		}
		return;
	}
	if (argc != 2) {
		ERR(p, "[%s NAME] needs exactly one name", argv[0]);
		return;
	}
	if (s == S_BACKEND) { /* a name of the operator's, not a domain */
		cfg_backend_open(p, argv[1]);
		return;
	}
	if ((s == S_ROUTE    ? cfg_route_name_normalise(argv[1], name, sizeof(name))
	     : s == S_REMOTE ? cfg_pattern_normalise(argv[1], name, sizeof(name))
			     : cfg_domain_normalise(argv[1], strlen(argv[1]), name, sizeof(name))) < 0) {
		ERR(p, "[%s %s]: not a valid %s", argv[0], argv[1],
		    s == S_ROUTE    ? "domain name or IP literal"
		    : s == S_REMOTE ? "domain name or *.domain"
				    : "domain name");
		return;
	}
	kind = s == S_DOMAIN ? K_DOMAIN : s == S_COMPONENT ? K_COMPONENT : s == S_ROUTE ? K_ROUTE : K_REMOTE;
	struct name_ent *e = cfg_names_find(&p->names, name, true);
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
		idx = cfg_grow(p, (void **)&c->domains, &c->ndomains, &p->cap_domains, sizeof(*c->domains));
		if (idx >= 0) {
			strcpy(c->domains[idx].name, name);
			c->domains[idx].line = p->line;
		}
		break;
	case S_COMPONENT:
		idx = cfg_grow(p, (void **)&c->components, &c->ncomponents, &p->cap_components, sizeof(*c->components));
		if (idx >= 0) {
			strcpy(c->components[idx].name, name);
			c->components[idx].line = p->line;
		}
		break;
	case S_ROUTE: {
		int old_cap = p->cap_routes;
		idx = cfg_grow(p, (void **)&c->routes, &c->nroutes, &p->cap_routes, sizeof(*c->routes));
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
		idx = cfg_grow(p, (void **)&c->remotes, &c->nremotes, &p->cap_remotes, sizeof(*c->remotes));
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
		for (int s = S_UNKNOWN - 1; s >= S_HUB; s--) /* the first section it belongs in */
			if (d->sections & SB(s))
				home = cfg_sect_names[s];
		ERR(p, "'%s' is not allowed in [%s] (it belongs in [%s%s])", d->name, cfg_sect_names[p->sect], home,
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
	c->cluster.lease_time_ms = 5000;
	c->cluster.redis_timeout_ms = 1000;
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

	cfg_cluster_checks(p);

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
	struct name_ent *e = cfg_names_find(&p->names, c->hub_domain, false);
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

/* Components (looked up on every component stream and handshake) and
 * domains (by reload's comparison of two configurations): the same kind
 * of index, over the name at the start of each section. */
struct name_ix_ctx {
	const char *base; /* the section array */
	size_t size;      /* one section's size; its name is its first member */
	const char *name; /* the key, when looking up */
};

static const char *name_at(const struct name_ix_ctx *x, uint32_t i)
{
	return x->base + (size_t)i * x->size;
}

static bool name_eq(const void *ctx, uint32_t i, uint32_t h)
{
	(void)h;
	const struct name_ix_ctx *x = ctx;
	return strcmp(name_at(x, i), x->name) == 0;
}

static uint32_t name_hash_at(const void *ctx, uint32_t i)
{
	const char *n = name_at(ctx, i);
	return pix_hash1(n, strlen(n));
}

static void name_indexes_build(struct cfg *c)
{
	_Static_assert(offsetof(struct cfg_component, name) == 0, "the name leads the section");
	_Static_assert(offsetof(struct cfg_domain, name) == 0, "the name leads the section");
	struct name_ix_ctx cx = {(const char *)c->components, sizeof(*c->components), NULL};
	pix_rebuild(&c->comp_ix, (uint32_t)c->ncomponents, name_hash_at, &cx);
	struct name_ix_ctx dx = {(const char *)c->domains, sizeof(*c->domains), NULL};
	pix_rebuild(&c->dom_ix, (uint32_t)c->ndomains, name_hash_at, &dx);
}

const struct cfg_component *cfg_component_find(const struct cfg *c, const char *name)
{
	struct name_ix_ctx x = {(const char *)c->components, sizeof(*c->components), name};
	int64_t i = pix_find(&c->comp_ix, (uint32_t)c->ncomponents, pix_hash1(name, strlen(name)), name_eq, &x);
	return i < 0 ? NULL : &c->components[i];
}

const struct cfg_domain *cfg_domain_find(const struct cfg *c, const char *name)
{
	struct name_ix_ctx x = {(const char *)c->domains, sizeof(*c->domains), name};
	int64_t i = pix_find(&c->dom_ix, (uint32_t)c->ndomains, pix_hash1(name, strlen(name)), name_eq, &x);
	return i < 0 ? NULL : &c->domains[i];
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
		name_indexes_build(c);
		c->policy = policy_tab_new(c); /* final_checks looks routes up in it */
		final_checks(&p);
		cfg_backend_final(&p);
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
	pix_free(&c->comp_ix);
	pix_free(&c->dom_ix);
	cfg_backend_free(c);
	explicit_bzero(c, sizeof(*c));
}
