/*
 * net/dns.h — asynchronous s2s name resolution on the control thread (c-ares).
 *
 * A worker fills a struct dns_req and submits it; the control thread resolves
 * _xmpp-server._tcp.DOMAIN (RFC 6120 §3.2: SRV by priority, weighted random
 * within a priority), falls back to A/AAAA of DOMAIN on 5269, caches answers
 * for their TTL, and hands the request back to the same worker as a message
 * of type DNS_MSG_RESULT. Workers never block on DNS.
 *
 * At scale: answers and failures are cached in a bounded hash table
 * (net/dns_cache.h) with TTLs clamped to [ttl_min, ttl_max]; requests for a
 * domain already being resolved wait for that one lookup; at most
 * max_inflight domains are resolved at once and the others wait in FIFO
 * order, so a burst of new domains does not flood the resolver; a lookup
 * that times out is tried again after a back-off; a failure is logged once
 * per domain with its reason.
 */
#ifndef FEDHUB_DNS_H
#define FEDHUB_DNS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include "net/net.h"

#define DNS_MAX_TARGETS 8
enum { DNS_MSG_QUERY = NET_MSG_USER, DNS_MSG_RESULT };

/* An IPv4 or IPv6 socket address in 28 bytes, not a sockaddr_storage's 128:
 * a link, a cache entry and every request hold up to DNS_MAX_TARGETS. */
union dns_addr {
	sa_family_t ss_family;
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
};

struct dns_target {
	union dns_addr ss;
	socklen_t len;
	bool tls; /* from _xmpps-server: direct TLS (XEP-0368) */
};

struct dns_req {
	struct dns_req *next; /* control thread: other requests waiting for the same lookup */
	char domain[256];
	int worker;
	void *cookie; /* the worker's, untouched */
	int status;   /* 0, or -ENOENT (no such domain/service), -ETIMEDOUT, -EIO */
	int ntargets;
	struct dns_target t[DNS_MAX_TARGETS];
};

/* Control thread: set up c-ares; server "host:port" or NULL for resolv.conf. */
int dns_init(const char *server);

struct dns_limits {
	uint32_t cache_max;        /* cached domains (answers and failures) */
	uint32_t ttl_min, ttl_max; /* s: bounds on the TTL of a cached answer */
	uint32_t max_inflight;     /* domains resolved at once; the rest wait in FIFO order */
};
#define DNS_DEFAULT_CACHE_MAX    100000
#define DNS_DEFAULT_TTL_MIN      30
#define DNS_DEFAULT_TTL_MAX      3600
#define DNS_DEFAULT_MAX_INFLIGHT 64
#define DNS_MAX_QUEUED           100000 /* domains waiting for a slot; more fail at once (-EAGAIN) */
/* Before dns_ctrl_loop (after dns_init); zero fields keep their default. */
void dns_set_limits(const struct dns_limits *l);

/* Counters and gauges for /metrics; any thread may read them. */
struct dns_stats {
	uint64_t lookups;       /* requests from workers */
	uint64_t hits;          /* answered from the cache (positive) */
	uint64_t hits_negative; /* answered from the cache (a cached failure) */
	uint64_t misses;        /* not in the cache: a lookup made or joined */
	uint64_t merged;        /* joined a lookup already under way */
	uint64_t queries_srv;   /* SRV queries sent */
	uint64_t queries_addr;  /* address (A + AAAA) lookups sent */
	uint64_t retries;       /* lookups tried again after a timeout */
	uint64_t fail_nxdomain; /* lookups that found no such domain or service */
	uint64_t fail_timeout;  /* ... that timed out (after the retries) */
	uint64_t fail_error;    /* ... that failed otherwise (SERVFAIL, refused, overload) */
	uint64_t evictions;     /* cache entries reused for another domain */
	uint64_t inflight;      /* gauge: domains being resolved */
	uint64_t inflight_peak; /* gauge: the most ever resolved at once (<= max_inflight) */
	uint64_t queued;        /* gauge: domains waiting for a slot (and for a retry) */
	uint64_t cache_entries; /* gauge */
};
void dns_stats_get(struct dns_stats *out);
/* Control thread: run the loop (net messages + c-ares) until net_stopping(). */
void dns_ctrl_loop(void);
/* Another source of events for that loop (the cluster's Redis connections):
 * prepare() fills up to max pollfds and may lower *timeout_ms; process()
 * gets them back after every poll, after the messages were delivered. Set
 * before dns_ctrl_loop; one hook. */
struct pollfd;
struct dns_ctrl_hook {
	int (*prepare)(struct pollfd *pfd, int max, int *timeout_ms);
	void (*process)(const struct pollfd *pfd, int n);
};
void dns_ctrl_set_hook(const struct dns_ctrl_hook *h);
/* Worker: submit (the request is owned by the control thread until it comes back). */
int dns_submit(struct net_worker *w, struct dns_req *r);
/* Control thread: handle a DNS_MSG_QUERY message. */
void dns_on_ctrl_msg(struct net_msg *m);

#endif
