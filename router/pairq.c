/*
 * router/pairq.c — a pair's queue while its link comes up, and the sources
 * its link paused (see pairq.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "router/pairq.h"
#include "router/flow.h"
#include "router/met.h"
#include "router/route.h"
#include "net/alloc.h"

int pairq_push(struct net_worker *w, struct pairq *q, uint32_t first_cap, struct net_buf *b, const char *p,
	       size_t n, uint64_t now)
{
	if (q->len == q->cap) {
		/* data path: out of memory refuses this stanza, the queue stays */
		uint32_t ncap = q->cap ? q->cap * 2 : first_cap;
		struct pq_item *nv = realloc(q->v, ncap * sizeof(*q->v));
		if (!nv)
			return -ENOMEM;
		q->v = nv;
		q->cap = ncap;
	}
	if (net_buf_own(w, &b, &p, n) < 0)
		return -ENOMEM;
	q->v[q->len++] = (struct pq_item){b, p, (uint32_t)n, now};
	return 0;
}

uint32_t pairq_take_first(struct pairq *q, uint32_t k, struct pq_item *out)
{
	uint32_t m = k < q->len ? k : q->len;
	memcpy(out, q->v, m * sizeof(*out));
	memmove(q->v, q->v + m, (q->len - m) * sizeof(*q->v));
	q->len -= m;
	return m;
}

struct pairq pairq_take(struct pairq *q)
{
	struct pairq t = *q;
	*q = (struct pairq){0};
	return t;
}

void pairq_move(struct pairq *dst, uint32_t first_cap, struct pairq *src)
{
	if (dst->len + src->len > dst->cap) {
		uint32_t ncap = dst->cap ? dst->cap : first_cap;
		while (ncap < dst->len + src->len)
			ncap *= 2;
		dst->v = xrealloc(dst->v, ncap * sizeof(*dst->v));
		dst->cap = ncap;
	}
	memcpy(dst->v + dst->len, src->v, src->len * sizeof(*src->v));
	dst->len += src->len;
	free(src->v);
	*src = (struct pairq){0};
}

void pairq_bounce_items(struct hubw *h, const struct pq_item *it, uint32_t m, enum hub_sterr err)
{
	for (uint32_t k = 0; k < m; k++) {
		route_bounce_raw(h, it[k].p, it[k].n, err);
		net_buf_unref(h->w, it[k].b);
	}
}

static void hold_src(struct hubw *h, struct pq_held *held, struct net_ref src)
{
	if (src.worker == FLOW_NO_SRC)
		return;
	for (uint32_t i = 0; i < held->n; i++)
		if (held->v[i].worker == src.worker && held->v[i].slot == src.slot && held->v[i].gen == src.gen)
			return;
	if (held->n == held->cap) {
		uint32_t ncap = held->cap ? held->cap * 2 : 8;
		struct net_ref *a = realloc(held->v, ncap * sizeof(*a));
		if (!a)
			return; /* not paused: its stanzas still wait in the queue */
		held->v = a;
		held->cap = ncap;
	}
	held->v[held->n++] = src;
	flow_src_hold(h, src);
}

bool pairq_admit(struct hubw *h, struct pq_held *held, uint32_t queued, struct net_ref src)
{
	uint32_t max = hub_cfg->link_queue_max;
	if (queued < max)
		return true;
	/* The link is still coming up: past link_queue_max the stanza still
	 * waits (a bounce too: it must not be lost) and its source is paused;
	 * only 16 times link_queue_max is refused. */
	if (queued >= 16 * max) {
		MET_INC(h->m, send_queue_full);
		return false;
	}
	MET_INC(h->m, flow_waited);
	hold_src(h, held, src);
	return true;
}

void pairq_release(struct hubw *h, struct pq_held *held, uint32_t queued, bool all)
{
	if (!held->n || (!all && queued >= hub_cfg->link_queue_max / 2))
		return;
	for (uint32_t i = 0; i < held->n; i++)
		flow_src_release(h, held->v[i]);
	held->n = 0;
}
