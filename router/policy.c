/*
 * router/policy.c — per-remote-domain policy: [remote] sections and the
 * remote_allow / remote_deny lists of router.conf (see policy.h).
 *
 * Design. Two open-addressing hash tables, built once and then only read:
 * one keyed by exact names, one by the SUFFIX of "*.SUFFIX" entries. Each
 * slot says which [remote] section and which allow/deny entry the key
 * names. A lookup probes the exact table with the whole name, then the
 * suffix table with every proper suffix that starts after a dot, longest
 * first; the first hit of each kind is the most specific one. So the cost is
 * one probe per label, the same with ten entries or a hundred thousand, and
 * readers on every worker share the table without locks because nobody
 * writes it once cfg_parse has returned.
 */
#include <stdlib.h>
#include <string.h>

#include "router/policy.h"
#include "net/alloc.h"

struct pslot {
	const char *key; /* into the cfg entry's name (after "*." for suffixes) */
	uint32_t klen;
	int remote; /* index into cfg->remotes, -1 = none */
	int acl;    /* index into cfg->acl, -1 = none */
};

struct ptab {
	struct pslot *v;
	uint32_t cap; /* power of two, at most half full */
	uint32_t n;
};

struct policy_tab {
	struct ptab exact, suffix;
};

static uint64_t phash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h ^ (h >> 29);
}

static struct pslot *ptab_find(const struct ptab *t, const char *k, size_t n)
{
	if (!t->cap)
		return NULL;
	uint32_t i = (uint32_t)phash(k, n) & (t->cap - 1);
	while (t->v[i].key) {
		if (t->v[i].klen == n && !memcmp(t->v[i].key, k, n))
			return &t->v[i];
		i = (i + 1) & (t->cap - 1);
	}
	return NULL;
}

static struct pslot *ptab_add(struct ptab *t, const char *k)
{
	size_t n = strlen(k);
	struct pslot *s = ptab_find(t, k, n);
	if (s)
		return s;
	uint32_t i = (uint32_t)phash(k, n) & (t->cap - 1);
	while (t->v[i].key)
		i = (i + 1) & (t->cap - 1);
	t->v[i] = (struct pslot){k, (uint32_t)n, -1, -1};
	t->n++;
	return &t->v[i];
}

static void ptab_size(struct ptab *t, uint32_t entries)
{
	uint32_t cap = 16;
	while (cap < entries * 2 + 2)
		cap *= 2;
	t->cap = cap;
	t->v = xcalloc(cap, sizeof(*t->v));
}

/* The table and the key inside it for an entry name. */
static struct pslot *entry_slot(struct policy_tab *pt, const char *name)
{
	if (name[0] == '*' && name[1] == '.')
		return ptab_add(&pt->suffix, name + 2);
	return ptab_add(&pt->exact, name);
}

struct policy_tab *policy_tab_new(const struct cfg *c)
{
	if (!c->nremotes && !c->nacl)
		return NULL;
	struct policy_tab *pt = xcalloc(1, sizeof(*pt));
	uint32_t total = (uint32_t)(c->nremotes + c->nacl);
	ptab_size(&pt->exact, total);
	ptab_size(&pt->suffix, total);
	for (int i = 0; i < c->nremotes; i++)
		entry_slot(pt, c->remotes[i].name)->remote = i;
	for (int i = 0; i < c->nacl; i++) {
		struct pslot *s = entry_slot(pt, c->acl[i].name);
		if (s->acl < 0)
			s->acl = i; /* cfg_parse refuses an entry listed twice */
	}
	return pt;
}

void policy_tab_free(struct policy_tab *t)
{
	if (!t)
		return;
	free(t->exact.v);
	free(t->suffix.v);
	free(t);
}

bool policy_name_match(const char *pattern, const char *d, size_t n)
{
	if (pattern[0] == '*' && pattern[1] == '.') {
		size_t sn = strlen(pattern + 2);
		return n > sn + 1 && d[n - sn - 1] == '.' && !memcmp(d + n - sn, pattern + 2, sn);
	}
	return strlen(pattern) == n && !memcmp(pattern, d, n);
}

struct policy policy_lookup(const struct cfg *c, const char *remote, size_t n)
{
	struct policy p = {.tls = (uint8_t)c->s2s_tls, .auth = (uint8_t)c->s2s_auth, .allowed = !c->have_allow};
	int ri = -1, ai = -1;
	const struct policy_tab *pt = c->policy;
	if (pt) {
		const struct pslot *s = ptab_find(&pt->exact, remote, n);
		if (s) {
			ri = s->remote;
			ai = s->acl;
		}
		/* proper suffixes after each dot, longest (most specific) first */
		for (size_t i = 0; i < n && (ri < 0 || ai < 0); i++) {
			if (remote[i] != '.' || i + 1 == n)
				continue;
			s = ptab_find(&pt->suffix, remote + i + 1, n - i - 1);
			if (!s)
				continue;
			if (ri < 0)
				ri = s->remote;
			if (ai < 0)
				ai = s->acl;
		}
	}
	if (ri >= 0) {
		const struct cfg_remote *r = &c->remotes[ri];
		if (r->tls_set) {
			p.tls = (uint8_t)r->tls;
			p.tls_set = true;
		}
		if (r->auth_set)
			p.auth = (uint8_t)r->auth;
		p.remote_line = r->line;
	}
	if (ai >= 0) {
		p.allowed = c->acl[ai].allow;
		p.acl_line = c->acl[ai].line;
	}
	if (p.auth == CFG_AUTH_CERTIFICATE)
		p.tls = CFG_TLS_REQUIRED; /* a certificate is only seen over TLS */
	return p;
}

extern struct cfg *hub_cfg_live; /* hub.h: swapped by a reload */

struct policy policy_for(const char *remote)
{
	return policy_lookup(__atomic_load_n(&hub_cfg_live, __ATOMIC_ACQUIRE), remote, strlen(remote));
}

enum policy_in policy_inbound(const char *remote, bool tls_on, bool cert_proves)
{
	struct policy p = policy_for(remote);
	if (!p.allowed || (p.tls_set && p.tls == CFG_TLS_REQUIRED && !tls_on))
		return POLICY_IN_REFUSED;
	if (p.auth == CFG_AUTH_CERTIFICATE && !cert_proves)
		return POLICY_IN_NEED_CERT;
	return POLICY_IN_OK;
}
