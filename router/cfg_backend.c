/*
 * router/cfg_backend.c — router.conf's [backend NAME] sections: unmodified
 * XMPP servers (Prosody, ejabberd, ...) behind the hub, each serving some of
 * the hosted domains (router/backend.c does the relaying).
 *
 *   [backend NAME]
 *   domain D ...        (repeatable; `domains D1 D2 ...` is the same)
 *   connect ADDR        (repeatable, up to 8: failover in order)
 *   allow_from A|CIDR   (repeatable: the sources whose streams are this
 *                        backend's; default: the connect addresses)
 *   tls required|optional|off   the internal links (default optional)
 *
 * A backend's domains are hosted domains of the hub: they answer as hosted
 * to remote servers, and take their certificate from a [domain D] section
 * when there is one. Refused: a domain in two backends, a backend domain
 * that is also a [component], a [route] or a [remote], or the hub's own
 * domain; a backend without connect or without a domain.
 *
 * The domains of every backend sit in one array (cfg.bdoms) with a hash
 * index (pix.h), so finding the backend of a domain is one probe whatever
 * the number of domains: it is done for every stanza to a hosted domain.
 */
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "router/cfg.h"
#include "router/cfg-int.h"
#include "net/alloc.h"

static bool backend_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n >= sizeof(((struct cfg_backend *)0)->name))
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		      ch == '_' || ch == '.'))
			return false;
	}
	return true;
}

void cfg_backend_open(struct parser *p, const char *name)
{
	struct cfg *c = p->c;
	if (!backend_name_ok(name)) {
		ERR(p, "[backend %s]: a name is 1 to 63 letters, digits, '-', '_' or '.'", name);
		return;
	}
	for (int i = 0; i < c->nbackends; i++) {
		if (!strcmp(c->backends[i].name, name)) {
			ERR(p, "duplicate section [backend %s] (first at line %d)", name, c->backends[i].line);
			return;
		}
	}
	int idx = cfg_grow(p, (void **)&c->backends, &c->nbackends, &p->cap_backends, sizeof(*c->backends));
	if (idx < 0)
		return;
	struct cfg_backend *b = &c->backends[idx];
	strcpy(b->name, name);
	b->line = p->line;
	b->tls = CFG_TLS_OPTIONAL;
	p->cur = idx;
}

void cfg_backend_close(struct parser *p)
{
	struct cfg_backend *b = cur_backend(p);
	if (p->cur < 0)
		return;
	if (!b->nconnect)
		perr(p, p->sect_line, "[backend %s]: missing required 'connect'", b->name);
	if (!b->ndomains)
		perr(p, p->sect_line, "[backend %s]: no 'domain': it would serve nothing", b->name);
	if (!b->nallow) {
		/* default: the streams of the connect addresses' hosts */
		for (int i = 0; i < b->nconnect && b->nallow < CFG_BACKEND_ALLOW_MAX; i++) {
			struct proxy_cidr *a = &b->allow[b->nallow++];
			char host[64];
			if (cfg_addr_host(&b->connect[i], host, sizeof(host)) < 0 || proxy_cidr_parse(host, a) < 0)
				b->nallow--;
		}
	}
}

void cfg_backend_domain(struct parser *p, int argc, char **argv)
{
	struct cfg *c = p->c;
	struct cfg_backend *b = cur_backend(p);
	for (int i = 0; i < argc; i++) {
		char name[CFG_NAME_MAX];
		if (cfg_domain_normalise(argv[i], strlen(argv[i]), name, sizeof(name)) < 0) {
			ERR(p, "domain: '%s' is not a valid domain name", argv[i]);
			continue;
		}
		if (p->cur < 0)
			continue; /* checked, kept nowhere */
		struct name_ent *e = cfg_names_find(&p->names, name, true);
		if (!e) {
			p->oom = true;
			return;
		}
		if (e->line[K_BACKEND]) {
			ERR(p, "domain %s: already served by a backend (line %d); a domain has one backend", name,
			    e->line[K_BACKEND]);
			continue;
		}
		e->line[K_BACKEND] = p->line;
		int k = cfg_grow(p, (void **)&c->bdoms, &c->nbdoms, &p->cap_bdoms, sizeof(*c->bdoms));
		if (k < 0)
			return;
		strcpy(c->bdoms[k].name, name);
		c->bdoms[k].backend = p->cur;
		c->bdoms[k].line = p->line;
		b->ndomains++;
	}
}

void cfg_d_domains(struct parser *p, int argc, char **argv)
{
	cfg_backend_domain(p, argc, argv);
}

void cfg_backend_connect(struct parser *p, const char *arg)
{
	struct cfg_backend *b = cur_backend(p);
	struct cfg_addr a;
	if (cfg_parse_addr(arg, &a, 5269) < 0) {
		ERR(p, "connect: bad address '%s' (expected IPV4[:PORT] or [IPV6][:PORT])", arg);
		return;
	}
	if (b->nconnect == CFG_BACKEND_CONNECT_MAX) {
		ERR(p, "connect: at most %d addresses per backend", CFG_BACKEND_CONNECT_MAX);
		return;
	}
	b->connect[b->nconnect++] = a;
}

void cfg_backend_tls(struct parser *p, const char *arg)
{
	if (cfg_parse_tls_mode(arg, &cur_backend(p)->tls) < 0)
		ERR(p, "tls: '%s' is not one of required, optional, off", arg);
}

void cfg_d_allow_from(struct parser *p, int argc, char **argv)
{
	struct cfg_backend *b = cur_backend(p);
	for (int i = 0; i < argc; i++) {
		struct proxy_cidr a;
		if (proxy_cidr_parse(argv[i], &a) < 0) {
			ERR(p,
			    "allow_from: '%s' is not an address or a block like 10.0.0.0/8 or 2001:db8::/32 "
			    "(host bits must be zero)",
			    argv[i]);
			continue;
		}
		if (b->nallow == CFG_BACKEND_ALLOW_MAX) {
			ERR(p, "allow_from: at most %d addresses or blocks per backend", CFG_BACKEND_ALLOW_MAX);
			return;
		}
		b->allow[b->nallow++] = a;
	}
}

static bool bdom_eq(const void *ctx, uint32_t i, uint32_t h)
{
	const struct cfg *c = ((const void *const *)ctx)[0];
	const char *name = ((const void *const *)ctx)[1];
	(void)h;
	return strcmp(c->bdoms[i].name, name) == 0;
}

static uint32_t bdom_hash_at(const void *ctx, uint32_t i)
{
	const struct cfg *c = ((const void *const *)ctx)[0];
	return pix_hash1(c->bdoms[i].name, strlen(c->bdoms[i].name));
}

void cfg_backend_final(struct parser *p)
{
	struct cfg *c = p->c;
	for (int i = 0; i < c->nbdoms; i++) {
		const struct cfg_bdom *d = &c->bdoms[i];
		const char *bn = c->backends[d->backend].name;
		struct name_ent *e = cfg_names_find(&p->names, d->name, false);
		if (!strcmp(d->name, c->hub_domain))
			perr(p, d->line, "[backend %s]: %s is the hub's own domain", bn, d->name);
		if (!e)
			continue;
		if (e->line[K_COMPONENT])
			perr(p, d->line,
			     "[backend %s]: %s is a [component] (line %d); a domain is served by one of them", bn,
			     d->name, e->line[K_COMPONENT]);
		if (e->line[K_ROUTE])
			perr(p, d->line, "[backend %s]: %s has a [route] (line %d), which is for remote domains", bn,
			     d->name, e->line[K_ROUTE]);
		if (e->line[K_REMOTE])
			perr(p, d->line, "[backend %s]: %s has a [remote] (line %d), which is for remote domains", bn,
			     d->name, e->line[K_REMOTE]);
	}
	const void *ctx[2] = {c, NULL};
	pix_rebuild(&c->bdom_ix, (uint32_t)c->nbdoms, bdom_hash_at, ctx);
}

const struct cfg_backend *cfg_backend_of(const struct cfg *c, const char *domain)
{
	if (!c->nbdoms)
		return NULL;
	const void *ctx[2] = {c, domain};
	int64_t i = pix_find(&c->bdom_ix, (uint32_t)c->nbdoms, pix_hash1(domain, strlen(domain)), bdom_eq, ctx);
	return i < 0 ? NULL : &c->backends[c->bdoms[i].backend];
}

bool cfg_backend_allows(const struct cfg_backend *b, const struct sockaddr *sa)
{
	for (int i = 0; i < b->nallow; i++)
		if (proxy_cidr_match(&b->allow[i], sa))
			return true;
	return false;
}

void cfg_backend_free(struct cfg *c)
{
	free(c->backends);
	free(c->bdoms);
	pix_free(&c->bdom_ix);
	c->backends = NULL;
	c->bdoms = NULL;
	c->nbackends = c->nbdoms = 0;
}

static bool backend_eq(const struct cfg_backend *x, const struct cfg_backend *y)
{
	if (strcmp(x->name, y->name) || x->nconnect != y->nconnect || x->nallow != y->nallow || x->tls != y->tls ||
	    x->ndomains != y->ndomains)
		return false;
	for (int i = 0; i < x->nconnect; i++)
		if (!cfg_addr_equal(&x->connect[i], &y->connect[i]))
			return false;
	return memcmp(x->allow, y->allow, (size_t)x->nallow * sizeof(x->allow[0])) == 0;
}

bool cfg_backend_same(const struct cfg *a, const struct cfg *b)
{
	if (a->nbackends != b->nbackends || a->nbdoms != b->nbdoms)
		return false;
	for (int i = 0; i < a->nbackends; i++)
		if (!backend_eq(&a->backends[i], &b->backends[i]))
			return false;
	for (int i = 0; i < a->nbdoms; i++)
		if (strcmp(a->bdoms[i].name, b->bdoms[i].name) || a->bdoms[i].backend != b->bdoms[i].backend)
			return false;
	return true;
}

void cfg_backend_copy(struct cfg *dst, const struct cfg *src)
{
	cfg_backend_free(dst);
	if (src->nbackends) {
		dst->backends = xcalloc((size_t)src->nbackends, sizeof(*dst->backends));
		memcpy(dst->backends, src->backends, (size_t)src->nbackends * sizeof(*dst->backends));
	}
	if (src->nbdoms) {
		dst->bdoms = xcalloc((size_t)src->nbdoms, sizeof(*dst->bdoms));
		memcpy(dst->bdoms, src->bdoms, (size_t)src->nbdoms * sizeof(*dst->bdoms));
	}
	dst->nbackends = src->nbackends;
	dst->nbdoms = src->nbdoms;
	const void *ctx[2] = {dst, NULL};
	pix_rebuild(&dst->bdom_ix, (uint32_t)dst->nbdoms, bdom_hash_at, ctx);
}
