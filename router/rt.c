/*
 * router/rt.c — see rt.h. Knot DNS style: readers never lock, writers copy,
 * swap with cds_lfht_replace / cds_lfht_add_unique, and free after a grace
 * period with call_rcu.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#define _LGPL_SOURCE
#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>

#include "router/rt.h"

struct rt_entry {
	struct cds_lfht_node node;
	struct rcu_head rcu;
	struct rt_route r;
	uint32_t len;
	char name[];
};

static struct cds_lfht *table;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* FNV-1a: names are short and already normalised. */
uint32_t rt_hash(const char *d, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)d[i]) * 16777619u;
	return h;
}

struct key {
	const char *d;
	size_t n;
};

static int match(struct cds_lfht_node *node, const void *k)
{
	const struct rt_entry *e = caa_container_of(node, struct rt_entry, node);
	const struct key *key = k;
	return e->len == key->n && memcmp(e->name, key->d, key->n) == 0;
}

int rt_init(void)
{
	table = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	return table ? 0 : -ENOMEM;
}

static struct rt_entry *find(const char *d, size_t n)
{
	struct key k = {d, n};
	struct cds_lfht_iter it;
	cds_lfht_lookup(table, rt_hash(d, n), match, &k, &it);
	struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
	return node ? caa_container_of(node, struct rt_entry, node) : NULL;
}

const struct rt_route *rt_lookup(const char *d, size_t n)
{
	struct rt_entry *e = find(d, n);
	return e ? &e->r : NULL;
}

static struct rt_entry *entry_new(const char *d, size_t n, const struct rt_route *r)
{
	struct rt_entry *e = calloc(1, sizeof(*e) + n + 1);
	if (!e)
		return NULL;
	cds_lfht_node_init(&e->node);
	e->r = *r;
	e->len = (uint32_t)n;
	memcpy(e->name, d, n);
	return e;
}

static void entry_free_rcu(struct rcu_head *h)
{
	free(caa_container_of(h, struct rt_entry, rcu));
}

/* Install r for d: add, or replace the current entry. Caller holds write_lock. */
static int install(const char *d, size_t n, const struct rt_route *r)
{
	struct rt_entry *e = entry_new(d, n, r);
	if (!e)
		return -ENOMEM;
	struct key k = {d, n};
	rcu_read_lock();
	struct cds_lfht_node *old = cds_lfht_add_replace(table, rt_hash(d, n), match, &k, &e->node);
	rcu_read_unlock();
	if (old)
		call_rcu(&caa_container_of(old, struct rt_entry, node)->rcu, entry_free_rcu);
	return 0;
}

static int remove_entry(struct rt_entry *e)
{
	rcu_read_lock();
	int rc = cds_lfht_del(table, &e->node);
	rcu_read_unlock();
	if (rc == 0)
		call_rcu(&e->rcu, entry_free_rcu);
	return rc;
}

int rt_set_static(const char *d, enum rt_kind kind)
{
	struct rt_route r = {.kind = kind};
	pthread_mutex_lock(&write_lock);
	int rc = install(d, strlen(d), &r);
	pthread_mutex_unlock(&write_lock);
	return rc;
}

int rt_del_static(const char *d)
{
	size_t n = strlen(d);
	pthread_mutex_lock(&write_lock);
	struct rt_entry *e = find(d, n);
	int rc = -ENOENT;
	if (e && e->r.kind != RT_S2S_OUT)
		rc = remove_entry(e);
	pthread_mutex_unlock(&write_lock);
	return rc;
}

static int pool_add(struct rt_route *r, struct net_ref ref)
{
	if (r->nconns == RT_POOL_MAX)
		return -ENOSPC;
	r->conns[r->nconns++] = ref;
	return 0;
}

static int pool_del(struct rt_route *r, struct net_ref ref)
{
	for (int i = 0; i < r->nconns; i++) {
		struct net_ref *x = &r->conns[i];
		if (x->worker == ref.worker && x->slot == ref.slot && x->gen == ref.gen) {
			/* keep the order of the others: each keeps its share */
			memmove(x, x + 1, (size_t)(r->nconns - i - 1) * sizeof(*x));
			r->nconns--;
			return 0;
		}
	}
	return -ENOENT;
}

/* A changed copy of d's component pool replaces the entry; the pool's new
 * size, or -errno. */
static int comp_pool_change(const char *d, struct net_ref ref, int (*change)(struct rt_route *, struct net_ref))
{
	size_t n = strlen(d);
	pthread_mutex_lock(&write_lock);
	struct rt_entry *e = find(d, n);
	int rc = -ENOENT;
	if (e && e->r.kind == RT_COMPONENT) {
		struct rt_route r = e->r;
		rc = change(&r, ref);
		if (rc == 0)
			rc = install(d, n, &r);
		if (rc == 0)
			rc = r.nconns;
	}
	pthread_mutex_unlock(&write_lock);
	return rc;
}

int rt_comp_add(const char *d, struct net_ref ref)
{
	return comp_pool_change(d, ref, pool_add);
}

int rt_comp_del(const char *d, struct net_ref ref)
{
	return comp_pool_change(d, ref, pool_del);
}

int rt_s2s_claim(const char *d, size_t n, uint16_t owner)
{
	/* The common case, an entry that is already there, takes no lock: the
	 * mutex is for the rare writer that installs one. */
	struct rt_entry *e = find(d, n);
	if (e)
		return e->r.kind == RT_S2S_OUT ? e->r.owner : -EEXIST;
	pthread_mutex_lock(&write_lock);
	e = find(d, n);
	int rc;
	if (e) {
		rc = e->r.kind == RT_S2S_OUT ? e->r.owner : -EEXIST;
	} else {
		struct rt_route r = {.kind = RT_S2S_OUT, .owner = owner};
		rc = install(d, n, &r);
		if (rc == 0)
			rc = owner;
	}
	pthread_mutex_unlock(&write_lock);
	return rc;
}

void rt_s2s_release(const char *d, uint16_t owner)
{
	size_t n = strlen(d);
	pthread_mutex_lock(&write_lock);
	struct rt_entry *e = find(d, n);
	if (e && e->r.kind == RT_S2S_OUT && e->r.owner == owner)
		remove_entry(e);
	pthread_mutex_unlock(&write_lock);
}
