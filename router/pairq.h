/*
 * router/pairq.h — the queue of one pair (a local and a remote domain)
 * whose link is not ready yet, and the sources a link paused for its queues
 * (router/pairq.c). Used by outbound s2s links (router/s2s_out.c) and the
 * internal links to [backend] servers (router/backend.c).
 *
 * A queue holds a reference per stanza, on a copy rather than a receive
 * buffer (a link may take seconds to come up), in the order they came.
 * Admission is per link: past link_queue_max queued stanzas a stanza still
 * waits and its source is paused; past 16 times that it is refused.
 */
#ifndef FEDHUB_PAIRQ_H
#define FEDHUB_PAIRQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router/hub.h"

struct pq_item {
	struct net_buf *b;
	const char *p;
	uint32_t n;
	uint64_t at; /* when it was queued: its wait is bounded by the caller */
};

struct pairq {
	struct pq_item *v;
	uint32_t len, cap;
};

/* Sources paused for a link's queues (each once). */
struct pq_held {
	struct net_ref *v;
	uint32_t n, cap;
};

/* The stanza at (p, n) in b goes to the back of q (first_cap: the capacity
 * the first growth gives). 0: the queue holds b's reference (moved to a
 * copy of its own when b is a receive buffer). -ENOMEM: nothing changed, b
 * is still the caller's (data path: the caller bounces the stanza). */
int pairq_push(struct net_worker *w, struct pairq *q, uint32_t first_cap, struct net_buf *b, const char *p,
	       size_t n, uint64_t now);
/* Move the first min(k, q->len) items of q to out, in order; returns how
 * many. What is left moves to the front. */
uint32_t pairq_take_first(struct pairq *q, uint32_t k, struct pq_item *out);
/* The whole queue, taken off q (q is empty and owns no memory after):
 * the caller sends or bounces its items, then frees .v. */
struct pairq pairq_take(struct pairq *q);
/* Append src's items to dst (control plane: aborts when out of memory);
 * src is left empty, its memory freed. */
void pairq_move(struct pairq *dst, uint32_t first_cap, struct pairq *src);
/* Bounce m items with err and drop their references. */
void pairq_bounce_items(struct hubw *h, const struct pq_item *it, uint32_t m, enum hub_sterr err);

/* A link with `queued` stanzas waiting takes one more from src? false:
 * refused (16 times link_queue_max, counted in send_queue_full); past
 * link_queue_max it is taken and src is paused (counted in flow_waited). */
bool pairq_admit(struct hubw *h, struct pq_held *held, uint32_t queued, struct net_ref src);
/* The link's queues are below half of link_queue_max (or `all`: the link
 * goes away): its paused sources are read again. */
void pairq_release(struct hubw *h, struct pq_held *held, uint32_t queued, bool all);

#endif
