/*
 * router/route.h — the stanza path (router/route.c): the address checks per
 * kind of source, routing by the `to` domain, bounces.
 */
#ifndef FEDHUB_ROUTE_H
#define FEDHUB_ROUTE_H

#include <stdbool.h>
#include "router/hub.h"
#include "router/sess.h"

/* Route one stanza whose bytes are [raw] in buffer b (a reference is taken
 * when it is kept). st describes it. */
void route_stanza(struct hubw *h, struct sess *from, struct net_buf *b, const struct xml_stanza *st);
/* May a component for `base` send from domain d (both normalised)? */
bool comp_from_allowed(const char *d, size_t dn, const char *base, size_t bn);
/* Bounce a stanza to its sender with a stanza error (never for type=error). */
void route_bounce(struct hubw *h, const struct xml_stanza *st, enum hub_sterr err, const char *text);
/* Bounce from raw bytes (parses them again: slow path). */
void route_bounce_raw(struct hubw *h, const char *p, size_t n, enum hub_sterr err);
/* Route stanza bytes again (slow path: parses them). */
void route_raw(struct hubw *h, struct net_buf *b, const char *p, size_t n);
/* Route bytes the hub generated (answers, bounces). */
void route_generated(struct hubw *h, const char *p, size_t n);
/* Route a stanza with parsed to/from domains to a remote domain's link (on this worker). */
void route_on_msg(struct hubw *h, struct net_msg *m);

/* Address checks (route.c), one per kind of source, so route_stanza only
 * routes. A stanza's addresses are decoded once (stanza_addrs_decode):
 * domains normalised, length <= 0 when absent or bad, and the `to` domain's
 * routing-table entry. A verdict says what to do when it may not pass. */
struct stanza_addrs {
	char to[CFG_NAME_MAX], fr[CFG_NAME_MAX];
	int tl, fl;
	const struct rt_route *route; /* of `to`; NULL: none */
};
enum addr_action { ADDR_ROUTE, ADDR_STREAM_ERROR, ADDR_BOUNCE, ADDR_DROP };
struct addr_verdict {
	enum addr_action verdict;
	enum hub_serr serr;   /* ADDR_STREAM_ERROR */
	enum hub_sterr sterr; /* ADDR_BOUNCE */
};
void stanza_addrs_decode(const struct xml_stanza *st, struct stanza_addrs *a);
struct addr_verdict s2s_in_accepts(struct sess *s, const struct stanza_addrs *a);
struct addr_verdict s2s_out_accepts(struct sess *s, const struct stanza_addrs *a);
struct addr_verdict comp_accepts(struct sess *s, const struct stanza_addrs *a);
/* route_stanza once the addresses are decoded (a caller that needed them
 * first, like a node link, decodes once). Consumes the reference. */
void route_decoded(struct hubw *h, struct sess *src, struct net_buf *b, const struct xml_stanza *st,
		   const struct stanza_addrs *a);
/* The check for src's kind; src NULL: a stanza the hub generated. */
struct addr_verdict route_accepts(struct sess *src, const struct stanza_addrs *a);
/* A domain we are the server for (the hub's, a [domain], a [component]). */
bool hub_serves(const char *domain, size_t n);

#endif
