/*
 * router/shape.c — token-bucket shaping of inbound s2s links.
 *
 * Three limits, each off at 0: link_rate (bytes of stanzas per second per
 * link), link_stanza_rate (stanzas per second per link) and remote_rate
 * (bytes per second per remote domain, summed over that domain's inbound
 * links on one worker: workers share nothing on the stanza path, so a
 * domain whose links land on N workers gets up to N times remote_rate).
 * Each bucket holds one second's worth.
 *
 * The stream handler charges every routable stanza it has tokenized
 * (shape_charge). When a bucket runs dry the connection is paused from
 * inside on_data: net/ keeps the bytes not yet consumed, in order, stops
 * receiving, and the kernel's buffer and the peer's TCP window do the
 * rest. Nothing is dropped or bounced. The worker's tick (every loop turn)
 * walks this worker's paused links and resumes each whose buckets are
 * ready again. A link's remote domain is the first one authenticated on
 * it; the per-domain entry lives while a link holds it.
 *
 * All state is the worker's own (thread-local): no lock, no atomic, and no
 * allocation or syscall per stanza (a link's state is allocated when the
 * stream is accepted, a domain's when its first link is bound).
 */
#include <stdlib.h>
#include <string.h>

#include "net/alloc.h"
#include "net/log.h"
#include "net/net.h"
#include "router/hub.h"
#include "router/pix.h"
#include "router/shape.h"

void shape_tb_init(struct shape_tb *b, uint32_t rate, uint32_t burst, uint64_t now_ms)
{
	b->rate = rate;
	b->burst = burst ? burst : rate;
	b->milli = (int64_t)b->burst * 1000;
	b->last_ms = now_ms;
}

void shape_tb_refill(struct shape_tb *b, uint64_t now_ms)
{
	if (!b->rate || now_ms <= b->last_ms) {
		b->last_ms = now_ms > b->last_ms ? now_ms : b->last_ms;
		return;
	}
	uint64_t dt = now_ms - b->last_ms;
	int64_t cap = (int64_t)b->burst * 1000;
	b->last_ms = now_ms;
	/* rate * dt milli-tokens: a long pause cannot overflow past the cap */
	if (dt > 1000ull * 1000 * 1000 || (int64_t)(b->rate * dt) > cap - b->milli)
		b->milli = cap;
	else
		b->milli += (int64_t)(b->rate * dt);
}

bool shape_tb_charge(struct shape_tb *b, uint64_t n, uint64_t now_ms)
{
	if (!b->rate)
		return true;
	shape_tb_refill(b, now_ms);
	/* a stanza is at most max_stanza_size (64 MiB): no overflow */
	b->milli -= (int64_t)n * 1000;
	return b->milli > 0;
}

bool shape_tb_ready(struct shape_tb *b, uint64_t now_ms)
{
	if (!b->rate)
		return true;
	shape_tb_refill(b, now_ms);
	return b->milli > 0;
}

bool shape_tb_has(struct shape_tb *b, uint64_t n, uint64_t now_ms)
{
	if (!b->rate)
		return true;
	shape_tb_refill(b, now_ms);
	return b->milli >= (int64_t)n * 1000;
}

struct shape_dom {
	char *name;
	uint32_t hash; /* pix_hash1(name) */
	uint32_t links;
	struct shape_tb tb;
	struct shape_dom *next; /* the bucket's chain */
};

struct shape_link {
	struct net_conn *c;
	struct shape_tb bytes, stanzas;
	struct shape_dom *dom;
	bool paused;
	struct shape_link *pnext, *pprev; /* this worker's paused links */
};

static __thread struct shape_link *paused;
/* This worker's remote domains with an inbound link, by name: a chained
 * table that doubles when it holds more entries than buckets, so binding a
 * link costs the same with 10 or 100,000 remote domains. */
static __thread struct shape_dom **dtab;
static __thread uint32_t dcap, dn;

static struct shape_dom **dom_slot(const char *name, uint32_t h)
{
	struct shape_dom **pp = &dtab[h & (dcap - 1)];
	while (*pp && ((*pp)->hash != h || strcmp((*pp)->name, name) != 0))
		pp = &(*pp)->next;
	return pp;
}

static void dom_grow(void)
{
	uint32_t ncap = dcap ? dcap * 2 : 64;
	struct shape_dom **nt = xcalloc(ncap, sizeof(*nt));
	for (uint32_t i = 0; i < dcap; i++)
		for (struct shape_dom *d = dtab[i], *next; d; d = next) {
			next = d->next;
			d->next = nt[d->hash & (ncap - 1)];
			nt[d->hash & (ncap - 1)] = d;
		}
	free(dtab);
	dtab = nt;
	dcap = ncap;
}

struct shape_link *shape_link_new(struct net_conn *c)
{
	if (!hub_cfg->link_rate && !hub_cfg->link_stanza_rate && !hub_cfg->remote_rate)
		return NULL;
	struct shape_link *l = xcalloc(1, sizeof(*l));
	uint64_t now = net_now_ms();
	l->c = c;
	shape_tb_init(&l->bytes, hub_cfg->link_rate, 0, now);
	shape_tb_init(&l->stanzas, hub_cfg->link_stanza_rate, 0, now);
	return l;
}

static void unpause(struct shape_link *l)
{
	if (!l->paused)
		return;
	if (l->pprev)
		l->pprev->pnext = l->pnext;
	else
		paused = l->pnext;
	if (l->pnext)
		l->pnext->pprev = l->pprev;
	l->pnext = l->pprev = NULL;
	l->paused = false;
}

void shape_link_free(struct shape_link *l)
{
	if (!l)
		return;
	unpause(l);
	struct shape_dom *d = l->dom;
	if (d && --d->links == 0) {
		struct shape_dom **pp = &dtab[d->hash & (dcap - 1)];
		while (*pp != d)
			pp = &(*pp)->next;
		*pp = d->next;
		dn--;
		free(d->name);
		free(d);
	}
	free(l);
}

void shape_link_bind(struct shape_link *l, const char *remote)
{
	if (!l || l->dom || !hub_cfg->remote_rate || !remote)
		return;
	uint32_t h = pix_hash1(remote, strlen(remote));
	if (dn >= dcap)
		dom_grow();
	struct shape_dom **pp = dom_slot(remote, h), *d = *pp;
	if (!d) {
		d = xcalloc(1, sizeof(*d));
		d->name = xstrdup(remote);
		d->hash = h;
		shape_tb_init(&d->tb, hub_cfg->remote_rate, 0, net_now_ms());
		*pp = d;
		dn++;
	}
	d->links++;
	l->dom = d;
}

uint32_t shape_dom_links(const struct shape_link *l)
{
	return l && l->dom ? l->dom->links : 0;
}

bool shape_link_unbound(const struct shape_link *l)
{
	return l && !l->dom && hub_cfg->remote_rate;
}

/* A paused link resumes once every bucket holds an eighth of its burst
 * again (an eighth of a second's worth): it then runs for a while rather
 * than being paused and resumed for every stanza. */
static bool refilled(struct shape_tb *b, uint64_t now)
{
	return shape_tb_has(b, b->burst / 8 ? b->burst / 8 : 1, now);
}

static bool ready(struct shape_link *l, uint64_t now)
{
	bool ok = refilled(&l->bytes, now);
	ok = refilled(&l->stanzas, now) && ok;
	if (l->dom)
		ok = refilled(&l->dom->tb, now) && ok;
	return ok;
}

bool shape_charge(struct shape_link *l, uint64_t n)
{
	if (!l)
		return true;
	uint64_t now = net_now_ms();
	/* every bucket is charged: a stanza that empties one is still paid
	 * for in the others */
	bool ok = shape_tb_charge(&l->bytes, n, now);
	ok = shape_tb_charge(&l->stanzas, 1, now) && ok;
	if (l->dom)
		ok = shape_tb_charge(&l->dom->tb, n, now) && ok;
	if (ok || l->paused)
		return ok;
	net_conn_pause_recv(l->c);
	l->paused = true;
	l->pprev = NULL;
	l->pnext = paused;
	if (paused)
		paused->pprev = l;
	paused = l;
	MET_INC(hubw_of(l->c->w)->m, shaping_pauses);
	log_debug(l->c->id, "s2s in: shaped, reading paused");
	return false;
}

bool shape_paused(const struct shape_link *l)
{
	return l && l->paused;
}

void shape_tick(uint64_t now_ms)
{
	struct shape_link *l, *next;
	for (l = paused; l; l = next) {
		next = l->pnext;
		if (!ready(l, now_ms))
			continue;
		unpause(l);
		log_debug(l->c->id, "s2s in: shaping refilled, reading resumed");
		net_conn_resume_recv(l->c);
	}
}
