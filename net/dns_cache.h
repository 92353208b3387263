/*
 * net/dns_cache.h — the resolver's answer cache (internal to net/: used by
 * net/dns.c on the control thread, and by its unit test).
 *
 * A hash table of domains with an LRU list: a lookup costs the same with ten
 * entries or a million, and the table never holds more than `max` entries
 * (inserting into a full one reuses the least recently used). TTLs are the
 * remote's choice, so they are clamped to [ttl_min, ttl_max]; failures are
 * cached too (negative entries), briefly: DNS_NEG_TTL for "no such domain or
 * service", DNS_FAIL_TTL for timeouts and server failures, never longer than
 * ttl_max. An expired entry is a miss but keeps its place until reused, so a
 * domain that keeps failing is reported once, not on every retry.
 * Not thread-safe: one owner.
 */
#ifndef FEDHUB_DNS_CACHE_H
#define FEDHUB_DNS_CACHE_H

#include <stdbool.h>
#include <stdint.h>
#include "net/dns.h"

#define DNS_NEG_TTL  30 /* s: NXDOMAIN, no SRV and no address */
#define DNS_FAIL_TTL 5  /* s: timeouts, SERVFAIL, refused */

struct dns_cache;

struct dns_cache_opts {
	uint32_t max;              /* entries, >= 1 */
	uint32_t ttl_min, ttl_max; /* s, for positive answers */
	uint64_t (*now_ms)(void);  /* NULL: CLOCK_MONOTONIC */
};

struct dns_cache *dns_cache_new(const struct dns_cache_opts *o);
void dns_cache_free(struct dns_cache *c);
/* A fresh entry for domain: true, and its answer copied out (status 0 with
 * targets, or the negative status). Marks it recently used. */
bool dns_cache_get(struct dns_cache *c, const char *domain, int *status, int *ntargets, struct dns_target *t);
/* Store an answer: status 0 with ntargets > 0 and ttl in seconds from the
 * records, or a negative status (ttl ignored). Returns true when this is a
 * failure and the domain's previous entry, if any, was not: the one time to
 * log it. */
bool dns_cache_put(struct dns_cache *c, const char *domain, int status, int ntargets, const struct dns_target *t,
		   uint32_t ttl);
/* The TTL (s) an answer gets. */
uint32_t dns_cache_ttl(const struct dns_cache *c, int status, uint32_t ttl);
uint32_t dns_cache_count(const struct dns_cache *c);
uint64_t dns_cache_evictions(const struct dns_cache *c);

/* Shared with the resolver: the monotonic clock in ms, and the FNV-1a hash of
 * a lower-cased name (DNS names compare case-insensitively). */
uint64_t dns_mono_ms(void);
uint64_t dns_name_hash(const char *s);

#endif
