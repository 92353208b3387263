/*
 * net/dns_cache.c — see dns_cache.h. Chained hash buckets (a power of two,
 * at least as many as entries) plus a doubly linked LRU list through the
 * same entries; entries are allocated once and reused on eviction.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "net/alloc.h"
#include "net/dns_cache.h"

struct ent {
	struct ent *hnext;               /* bucket chain */
	struct ent *lru_prev, *lru_next; /* head: most recently used */
	uint64_t hash;
	uint64_t expires; /* ms */
	bool failed;      /* the answer is negative */
	int status;
	int ntargets;
	struct dns_target t[DNS_MAX_TARGETS];
	char domain[]; /* as long as the name: most are far shorter than 255 */
};

struct dns_cache {
	struct dns_cache_opts o;
	struct ent **buckets;
	uint64_t mask;
	uint32_t count;
	uint64_t evictions;
	struct ent *lru_head, *lru_tail;
};

uint64_t dns_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* FNV-1a over the lower-cased name: DNS names compare case-insensitively. */
uint64_t dns_name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch - 'A' + 'a');
		h = (h ^ ch) * 1099511628211ull;
	}
	return h;
}

struct dns_cache *dns_cache_new(const struct dns_cache_opts *o)
{
	struct dns_cache *c = xcalloc(1, sizeof(*c));
	c->o = *o;
	if (c->o.max == 0)
		c->o.max = 1;
	if (c->o.ttl_max < c->o.ttl_min)
		c->o.ttl_max = c->o.ttl_min;
	if (!c->o.now_ms)
		c->o.now_ms = dns_mono_ms;
	uint64_t n = 16;
	while (n < c->o.max)
		n <<= 1;
	c->buckets = xcalloc(n, sizeof(*c->buckets));
	c->mask = n - 1;
	return c;
}

void dns_cache_free(struct dns_cache *c)
{
	if (!c)
		return;
	for (struct ent *e = c->lru_head, *next; e; e = next) {
		next = e->lru_next;
		free(e);
	}
	free(c->buckets);
	free(c);
}

static struct ent *find(const struct dns_cache *c, const char *d, uint64_t h)
{
	for (struct ent *e = c->buckets[h & c->mask]; e; e = e->hnext)
		if (e->hash == h && strcasecmp(e->domain, d) == 0)
			return e;
	return NULL;
}

static void lru_unlink(struct dns_cache *c, struct ent *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		c->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		c->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_head(struct dns_cache *c, struct ent *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head)
		c->lru_head->lru_prev = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

static void bucket_unlink(struct dns_cache *c, struct ent *e)
{
	struct ent **pp = &c->buckets[e->hash & c->mask];
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
}

bool dns_cache_get(struct dns_cache *c, const char *domain, int *status, int *ntargets, struct dns_target *t)
{
	struct ent *e = find(c, domain, dns_name_hash(domain));
	if (!e || e->expires <= c->o.now_ms())
		return false;
	lru_unlink(c, e);
	lru_push_head(c, e);
	*status = e->status;
	*ntargets = e->ntargets;
	memcpy(t, e->t, sizeof(e->t));
	return true;
}

uint32_t dns_cache_ttl(const struct dns_cache *c, int status, uint32_t ttl)
{
	if (status != 0) {
		ttl = status == -ENOENT ? DNS_NEG_TTL : DNS_FAIL_TTL;
		return ttl < c->o.ttl_max ? ttl : c->o.ttl_max;
	}
	if (ttl < c->o.ttl_min)
		return c->o.ttl_min;
	return ttl > c->o.ttl_max ? c->o.ttl_max : ttl;
}

bool dns_cache_put(struct dns_cache *c, const char *domain, int status, int ntargets, const struct dns_target *t,
		   uint32_t ttl)
{
	uint64_t h = dns_name_hash(domain);
	struct ent *e = find(c, domain, h);
	bool was_failed = e && e->failed;
	if (e) {
		lru_unlink(c, e);
	} else {
		if (c->count >= c->o.max) { /* full: the least recently used goes */
			e = c->lru_tail;
			lru_unlink(c, e);
			bucket_unlink(c, e);
			free(e);
			c->evictions++;
			c->count--;
		}
		size_t dl = strnlen(domain, 255);
		e = xcalloc(1, sizeof(*e) + dl + 1);
		c->count++;
		memcpy(e->domain, domain, dl);
		e->hash = h;
		e->hnext = c->buckets[h & c->mask];
		c->buckets[h & c->mask] = e;
	}
	if (status == 0 && ntargets <= 0)
		status = -ENOENT;
	e->status = status;
	e->failed = status != 0;
	e->ntargets = status == 0 ? (ntargets > DNS_MAX_TARGETS ? DNS_MAX_TARGETS : ntargets) : 0;
	memset(e->t, 0, sizeof(e->t));
	if (e->ntargets)
		memcpy(e->t, t, (size_t)e->ntargets * sizeof(*t));
	e->expires = c->o.now_ms() + (uint64_t)dns_cache_ttl(c, status, ttl) * 1000;
	lru_push_head(c, e);
	return e->failed && !was_failed;
}

uint32_t dns_cache_count(const struct dns_cache *c)
{
	return c->count;
}

uint64_t dns_cache_evictions(const struct dns_cache *c)
{
	return c->evictions;
}
