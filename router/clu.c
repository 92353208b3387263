/*
 * router/clu.c — the cluster registry (see clu.h): what the workers read,
 * what they ask, and the tables behind it. The Redis side (keys, scripts,
 * rounds, events) is router/clu_reg.c; the lease state machine
 * router/clu_lease.c; the connections router/clu_redis.c.
 *
 * Threads. The control thread owns every table here and is their only
 * writer. Workers (and the node links) read three things without a lock:
 *   - our leases: a cds_lfht (RCU, QSBR) of struct clu_pub, one per remote
 *     this node has a lease record for, holding our token and the
 *     self-fencing deadline as atomics, so clu_lease_valid() is a hash probe
 *     and two loads;
 *   - component placement: a mask of node indexes per configured component
 *     domain (atomic);
 *   - the node directory's `alive` flags (atomic); the rest of an entry (id,
 *     address) is copied under a mutex by clu_node_get(), which node links
 *     call when they (re)connect, never per stanza.
 * Workers reach the control thread only by messages (CLU_MSG_*): an ask, a
 * release, a component up or down. The answers come back the same way
 * (NET_MSG_CLU_LEASE), whenever what the worker should do changes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define _LGPL_SOURCE
#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>

#include "router/clu-int.h"
#include "router/hub.h"
#include "router/pix.h"
#include "net/alloc.h"
#include "net/log.h"

struct clu_g clu_g;

/* ---- the published view: our leases ------------------------------------- */

struct clu_pub {
	struct cds_lfht_node node;
	struct rcu_head rcu;
	uint64_t token;       /* atomic: ours, 0 if not ours */
	uint64_t valid_until; /* atomic: ms, monotonic */
	uint32_t len;
	char name[];
};

static struct cds_lfht *pubs;

struct pkey {
	const char *d;
	size_t n;
};

static int pub_match(struct cds_lfht_node *node, const void *k)
{
	const struct clu_pub *e = caa_container_of(node, struct clu_pub, node);
	const struct pkey *key = k;
	return e->len == key->n && memcmp(e->name, key->d, key->n) == 0;
}

static struct clu_pub *pub_find(const char *d, size_t n)
{
	struct pkey k = {d, n};
	struct cds_lfht_iter it;
	cds_lfht_lookup(pubs, rt_hash(d, n), pub_match, &k, &it);
	struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
	return node ? caa_container_of(node, struct clu_pub, node) : NULL;
}

uint64_t clu_lease_token(const char *remote, size_t n)
{
	if (!clu_g.on)
		return 0;
	struct clu_pub *p = pub_find(remote, n);
	return p ? __atomic_load_n(&p->token, __ATOMIC_ACQUIRE) : 0;
}

bool clu_lease_valid(const char *remote, size_t n)
{
	if (!clu_g.on)
		return true;
	struct clu_pub *p = pub_find(remote, n);
	return p && __atomic_load_n(&p->token, __ATOMIC_ACQUIRE) &&
	       net_now_ms() < __atomic_load_n(&p->valid_until, __ATOMIC_ACQUIRE);
}

/* Control thread: make what workers read match l. */
void clu_pub_update(struct clu_lease *l)
{
	struct clu_pub *p = l->pub;
	if (!p)
		return;
	bool ours = l->st == LS_OURS;
	/* the deadline first, so a reader that sees the token sees it */
	__atomic_store_n(&p->valid_until, ours ? l->valid_until : 0, __ATOMIC_RELEASE);
	__atomic_store_n(&p->token, ours ? l->token : 0, __ATOMIC_RELEASE);
}

static void pub_free_rcu(struct rcu_head *h)
{
	free(caa_container_of(h, struct clu_pub, rcu));
}

/* ---- the lease records (control thread) ---------------------------------- */

static struct clu_lease **ltab;
static uint32_t lcap, lcount;

static void ltab_grow(void)
{
	uint32_t ncap = lcap ? lcap * 2 : 256;
	struct clu_lease **nt = xcalloc(ncap, sizeof(*nt));
	for (uint32_t i = 0; i < lcap; i++) {
		for (struct clu_lease *l = ltab[i], *next; l; l = next) {
			next = l->hnext;
			l->hnext = nt[l->hash & (ncap - 1)];
			nt[l->hash & (ncap - 1)] = l;
		}
	}
	free(ltab);
	ltab = nt;
	lcap = ncap;
}

struct clu_lease *clu_lease_find(const char *remote)
{
	if (!lcap)
		return NULL;
	uint32_t h = rt_hash(remote, strlen(remote));
	for (struct clu_lease *l = ltab[h & (lcap - 1)]; l; l = l->hnext)
		if (l->hash == h && !strcmp(l->remote, remote))
			return l;
	return NULL;
}

static struct clu_lease *lease_get(const char *remote)
{
	struct clu_lease *l = clu_lease_find(remote);
	if (l)
		return l;
	if (lcount + 1 > lcap)
		ltab_grow();
	size_t n = strlen(remote);
	l = xcalloc(1, sizeof(*l));
	snprintf(l->remote, sizeof(l->remote), "%s", remote);
	l->hash = rt_hash(remote, n);
	l->worker = -1;
	l->owner = -1;
	l->told_owner = -1;
	struct clu_pub *p = xcalloc(1, sizeof(*p) + n + 1);
	cds_lfht_node_init(&p->node);
	p->len = (uint32_t)n;
	memcpy(p->name, remote, n);
	struct pkey k = {remote, n};
	rcu_thread_online();
	cds_lfht_add_unique(pubs, l->hash, pub_match, &k, &p->node);
	rcu_thread_offline();
	l->pub = p;
	l->hnext = ltab[l->hash & (lcap - 1)];
	ltab[l->hash & (lcap - 1)] = l;
	lcount++;
	return l;
}

void clu_lease_drop(struct clu_lease *l)
{
	struct clu_lease **pp = &ltab[l->hash & (lcap - 1)];
	while (*pp && *pp != l)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = l->hnext;
	lcount--;
	if (l->pub) {
		rcu_thread_online();
		cds_lfht_del(pubs, &l->pub->node);
		call_rcu(&l->pub->rcu, pub_free_rcu);
		rcu_thread_offline();
	}
	free(l);
}

void clu_lease_foreach(void (*fn)(struct clu_lease *l, void *arg), void *arg)
{
	for (uint32_t i = 0; i < lcap; i++)
		for (struct clu_lease *l = ltab[i], *next; l; l = next) {
			next = l->hnext; /* fn may drop l */
			fn(l, arg);
		}
}

uint32_t clu_lease_count(void)
{
	return lcount;
}

/* Tell l's worker what to do now, if that changed since it was last told.
 * A full ring: told again at the next sweep. */
void clu_lease_tell(struct clu_lease *l, uint64_t now)
{
	if (l->worker < 0)
		return;
	int owner;
	uint64_t token;
	enum clu_lease_st v = clu_ls_view(l, now, &owner, &token);
	if (l->told_st == v && l->told_owner == owner && l->told_token == token)
		return;
	struct clu_lease_ans *a = xcalloc(1, sizeof(*a));
	snprintf(a->remote, sizeof(a->remote), "%s", l->remote);
	a->st = v;
	a->owner = v == CLU_LEASE_OURS ? clu_g.self : owner;
	a->token = token;
	a->valid_until = l->pub ? &l->pub->valid_until : NULL;
	struct net_msg m = {.type = NET_MSG_CLU_LEASE};
	memcpy(m.u.bytes, &(struct clu_lease_msg){a}, sizeof(struct clu_lease_msg));
	if (net_msg_send(NULL, l->worker, &m) < 0) {
		free(a);
		return;
	}
	l->told_st = (uint8_t)v;
	l->told_owner = owner;
	l->told_token = token;
}

void clu_lease_msg_free(struct clu_lease_ans *a)
{
	free(a);
}

/* ---- the node directory --------------------------------------------------- */

static pthread_mutex_t dir_lock = PTHREAD_MUTEX_INITIALIZER;
static struct clu_node dir[CLU_MAX_NODES];
static bool dir_alive[CLU_MAX_NODES]; /* atomic */
static int ndir;                      /* atomic */
static uint64_t dir_gen;              /* atomic */

int clu_node_count(void)
{
	return __atomic_load_n(&ndir, __ATOMIC_ACQUIRE);
}

bool clu_node_get(int idx, struct clu_node *out)
{
	if (idx < 0 || idx >= clu_node_count())
		return false;
	pthread_mutex_lock(&dir_lock);
	*out = dir[idx];
	out->alive = __atomic_load_n(&dir_alive[idx], __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&dir_lock);
	return true;
}

int clu_node_index(const char *id)
{
	int n = clu_node_count(), r = -1;
	pthread_mutex_lock(&dir_lock);
	for (int i = 0; i < n && r < 0; i++)
		if (!strcmp(dir[i].id, id))
			r = i;
	pthread_mutex_unlock(&dir_lock);
	return r;
}

uint64_t clu_nodes_gen(void)
{
	return __atomic_load_n(&dir_gen, __ATOMIC_ACQUIRE);
}

bool clu_node_alive(int idx)
{
	return idx >= 0 && idx < CLU_MAX_NODES && __atomic_load_n(&dir_alive[idx], __ATOMIC_ACQUIRE);
}

const char *clu_node_id(int idx)
{
	/* control thread: the only writer, so its reads need no lock */
	return idx >= 0 && idx < ndir ? dir[idx].id : "?";
}

/* Control thread: add or update a node; its index, or -1 when the
 * directory is full. */
int clu_node_set(const char *id, const struct sockaddr_storage *ss, socklen_t len, bool alive)
{
	int i;
	for (i = 0; i < ndir; i++)
		if (!strcmp(dir[i].id, id))
			break;
	if (i == ndir && ndir == CLU_MAX_NODES) {
		log_warn(0, "cluster: more than %d nodes: %s is not used", CLU_MAX_NODES, id);
		return -1;
	}
	bool changed = i == ndir || dir_alive[i] != alive ||
		       (ss && (dir[i].alen != len || memcmp(&dir[i].addr, ss, len)));
	if (!changed)
		return i;
	pthread_mutex_lock(&dir_lock);
	if (i == ndir)
		snprintf(dir[i].id, sizeof(dir[i].id), "%s", id);
	if (ss) {
		memcpy(&dir[i].addr, ss, len);
		dir[i].alen = len;
	}
	pthread_mutex_unlock(&dir_lock);
	__atomic_store_n(&dir_alive[i], alive, __ATOMIC_RELEASE);
	if (i == ndir)
		__atomic_store_n(&ndir, ndir + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&dir_gen, dir_gen + 1, __ATOMIC_RELEASE);
	return i;
}

int clu_nodes_alive(void)
{
	int n = 0;
	for (int i = 0; i < ndir; i++)
		n += dir_alive[i];
	return n;
}

/* ---- components ------------------------------------------------------------ */

static struct clu_comp *comps;
static int ncomps;

struct clu_comp *clu_comp_at(int i, int *n)
{
	if (n)
		*n = ncomps;
	return i >= 0 && i < ncomps ? &comps[i] : NULL;
}

struct clu_comp *clu_comp_find(const char *domain)
{
	for (int i = 0; i < ncomps; i++)
		if (!strcmp(comps[i].name, domain))
			return &comps[i];
	return NULL;
}

int clu_comp_nodes(const char *domain, int *idx, int max)
{
	struct clu_comp *c = clu_g.on ? clu_comp_find(domain) : NULL;
	if (!c)
		return 0;
	uint64_t mask = __atomic_load_n(&c->nodes, __ATOMIC_ACQUIRE);
	int n = 0;
	for (int i = 0; i < CLU_MAX_NODES; i++) {
		if (!(mask & (1ull << i)) || !clu_node_alive(i))
			continue;
		if (n < max)
			idx[n] = i;
		n++;
	}
	return n;
}

/* A message to the control thread carrying a copy of the name (freed by
 * its receiver); -ENOBUFS when the control ring is full. */
static int send_name_msg(struct net_worker *self, int type, const char *name, size_t n)
{
	struct net_msg m = {.type = (uint16_t)type, .src = (uint16_t)net_worker_id(self)};
	char *d = xstrndup(name, n);
	memcpy(m.u.bytes, &d, sizeof(d));
	if (net_msg_send(self, NET_CTRL, &m) < 0) {
		free(d);
		return -ENOBUFS;
	}
	return 0;
}

static void send_domain_msg(struct net_worker *self, int type, const char *domain)
{
	if (send_name_msg(self, type, domain, strlen(domain)) < 0)
		log_warn(0, "cluster: control ring full: %s for %s not sent", type == CLU_MSG_ASK ? "ask" : "update",
			 domain);
}

void clu_comp_up(struct net_worker *self, const char *domain)
{
	if (clu_g.on)
		send_domain_msg(self, CLU_MSG_COMP_UP, domain);
}

void clu_comp_down(struct net_worker *self, const char *domain)
{
	if (clu_g.on)
		send_domain_msg(self, CLU_MSG_COMP_DOWN, domain);
}

/* ---- asks ---------------------------------------------------------------- */

int clu_lease_ask(struct net_worker *self, const char *remote, size_t n)
{
	if (!clu_g.on)
		return -ENOTSUP;
	return send_name_msg(self, CLU_MSG_ASK, remote, n);
}

int clu_lease_release(struct net_worker *self, const char *remote, size_t n)
{
	if (!clu_g.on)
		return 0;
	return send_name_msg(self, CLU_MSG_RELEASE, remote, n);
}

bool clu_on_ctrl_msg(struct net_msg *m)
{
	if (m->type < CLU_MSG_ASK || m->type > CLU_MSG_COMP_DOWN)
		return false;
	char *d;
	memcpy(&d, m->u.bytes, sizeof(d));
	uint64_t now = net_now_ms();
	switch (m->type) {
	case CLU_MSG_ASK: {
		struct clu_lease *l = lease_get(d);
		/* asked again by the link we told "forward": its owner refused
		 * the token; look again (shortly) rather than repeat the answer */
		bool refused = l->worker == m->src && l->told_st == CLU_LEASE_OTHER;
		l->worker = m->src;
		l->told_st = 0; /* a new link: tell it even what it would know */
		if (refused && l->st == LS_OTHER)
			clu_ls_vacated(l, now + 100);
		else if (l->st != LS_OURS && !l->inflight && l->st != LS_OTHER)
			l->next_try = now;
		clu_reg_kick(l, now);
		break;
	}
	case CLU_MSG_RELEASE: {
		struct clu_lease *l = clu_lease_find(d);
		if (l && l->worker == m->src)
			clu_reg_release(l, now);
		break;
	}
	case CLU_MSG_COMP_UP:
	case CLU_MSG_COMP_DOWN: {
		struct clu_comp *c = clu_comp_find(d);
		if (c)
			clu_reg_comp(c, m->type == CLU_MSG_COMP_UP);
		break;
	}
	}
	free(d);
	return true;
}

/* ---- the rest of the interface ---------------------------------------------- */

bool clu_enabled(void)
{
	return clu_g.on;
}

const char *clu_self_id(void)
{
	return clu_g.on ? clu_g.id : "";
}

int clu_self(void)
{
	return clu_g.on ? clu_g.self : -1;
}

enum clu_redis_state clu_redis_state(void)
{
	if (!clu_g.on)
		return CLU_REDIS_OFF;
	return __atomic_load_n(&clu_g.redis_up, __ATOMIC_ACQUIRE) ? CLU_REDIS_UP : CLU_REDIS_DOWN;
}

const unsigned char *clu_secret(size_t *len)
{
	if (len)
		*len = clu_g.on ? clu_g.secret_len : 0;
	return clu_g.on ? clu_g.secret : NULL;
}

int clu_init(const struct cfg *c)
{
	const struct cfg_cluster *k = &c->cluster;
	if (!k->on)
		return 0;
	clu_g.on = true;
	snprintf(clu_g.id, sizeof(clu_g.id), "%s", k->node_id);
	snprintf(clu_g.prefix, sizeof(clu_g.prefix), "fh:");
	memcpy(clu_g.secret, k->secret, k->secret_len);
	clu_g.secret_len = k->secret_len;
	clu_g.lease_ms = k->lease_time_ms;
	clu_g.timeout_ms = k->redis_timeout_ms;
	clu_g.addr = k->node_address;
	pubs = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	if (!pubs)
		return -ENOMEM;
	clu_g.self = clu_node_set(clu_g.id, &k->node_address.ss, k->node_address.len, true);
	ncomps = c->ncomponents;
	comps = xcalloc(ncomps ? (size_t)ncomps : 1, sizeof(*comps));
	for (int i = 0; i < ncomps; i++)
		snprintf(comps[i].name, sizeof(comps[i].name), "%s", c->components[i].name);
	return clu_reg_init(c);
}

void clu_stats_get(struct clu_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!clu_g.on)
		return;
	int n = clu_node_count(), alive = 0;
	for (int i = 0; i < n; i++)
		alive += clu_node_alive(i);
	out->nodes = (uint64_t)alive;
	out->leases_held = __atomic_load_n(&clu_g.held, __ATOMIC_RELAXED);
	out->gained = __atomic_load_n(&clu_g.gained, __ATOMIC_RELAXED);
	out->lost = __atomic_load_n(&clu_g.lost, __ATOMIC_RELAXED);
	out->fenced = __atomic_load_n(&clu_g.fenced, __ATOMIC_RELAXED);
	out->redis_up = __atomic_load_n(&clu_g.redis_up, __ATOMIC_ACQUIRE);
	struct clu_redis_stats r;
	clu_redis_stats_get(&r);
	out->commands = r.commands;
	out->failures = r.failures;
	out->timeouts = r.timeouts;
	out->reconnects = r.reconnects;
	out->master_changes = r.failovers;
	out->lat_bounds = clu_redis_lat_bounds;
	memcpy(out->lat_le, r.lat_le, sizeof(out->lat_le));
	out->lat_count = r.lat_count;
	out->lat_sum = (double)r.lat_sum_us / 1e6;
}
