/*
 * router/shape.h — rate and bandwidth shaping of inbound s2s links by token
 * buckets (router/shape.c). Excess is delayed, never dropped: a link whose
 * bucket is empty stops being read (net_conn_pause_recv), the kernel's
 * receive buffer fills and TCP slows the sender; the worker tick resumes it
 * once the bucket has refilled.
 */
#ifndef FEDHUB_SHAPE_H
#define FEDHUB_SHAPE_H

#include <stdbool.h>
#include <stdint.h>

struct net_conn;

/* A token bucket: `rate` tokens per second, at most `burst` saved up. The
 * balance may go negative: a charge larger than what is left (one stanza
 * bigger than the burst) is taken whole, and the debt is paid by waiting.
 * Kept in thousandths of a token so that a refill every millisecond at a
 * rate under 1000/s still counts. rate 0: no limit. */
struct shape_tb {
	int64_t milli; /* balance, 1/1000 token */
	uint32_t rate, burst;
	uint64_t last_ms;
};

/* A full bucket at now_ms. burst 0 means one second's worth (rate). */
void shape_tb_init(struct shape_tb *b, uint32_t rate, uint32_t burst, uint64_t now_ms);
/* Add what accrued since the last call, up to the burst. */
void shape_tb_refill(struct shape_tb *b, uint64_t now_ms);
/* Take n tokens (after a refill). Returns true while the balance stays
 * above zero, false when the bucket is now empty or in debt. */
bool shape_tb_charge(struct shape_tb *b, uint64_t n, uint64_t now_ms);
/* After a refill: may the owner go on (balance above zero)? */
bool shape_tb_ready(struct shape_tb *b, uint64_t now_ms);
/* After a refill: does the balance hold at least n tokens (n <= burst)? */
bool shape_tb_has(struct shape_tb *b, uint64_t n, uint64_t now_ms);

/* One inbound s2s link's shaping state; NULL when no limit is configured. */
struct shape_link;
/* For connection c (control plane: aborts when out of memory). NULL when
 * link_rate, link_stanza_rate and remote_rate are all 0. */
struct shape_link *shape_link_new(struct net_conn *c);
/* Unlinks it from the paused list and its domain's bucket, frees it. */
void shape_link_free(struct shape_link *l);
/* The link's stanzas now count against remote domain `remote`'s bucket on
 * this worker (remote_rate); the first call wins, later ones do nothing. */
void shape_link_bind(struct shape_link *l, const char *remote);
/* Whether shape_link_bind() would still do something: it is called only
 * then, so the pairs are not searched for every stanza. */
bool shape_link_unbound(const struct shape_link *l);
/* How many of this worker's links share l's remote-domain bucket (0 if unbound). */
uint32_t shape_dom_links(const struct shape_link *l);
/* Charge one stanza of n bytes. When a bucket is empty, the connection is
 * paused (what on_data has not consumed is kept) and false is returned. */
bool shape_charge(struct shape_link *l, uint64_t n);
/* Whether the link is paused by shaping (not to be closed as idle). */
bool shape_paused(const struct shape_link *l);
/* Worker tick: resume the paused links whose buckets have refilled. */
void shape_tick(uint64_t now_ms);

#endif
