/*
 * router/rt.h — the routing table: normalised domain -> route.
 *
 * Read on every stanza by every worker, written rarely (a component
 * authenticates or leaves, an outbound link is created or dropped). A
 * userspace-rcu lock-free hash table (cds_lfht, QSBR flavour): a lookup is a
 * few loads, no lock, no atomic read-modify-write. An entry is never changed
 * in place: a writer builds a new one and replaces the old, which is freed
 * after a grace period. Writers are serialised among themselves by a mutex
 * that readers never see.
 *
 * A pointer returned by rt_lookup() is valid until the calling thread's next
 * quiescent state (the end of its loop turn).
 */
#ifndef FEDHUB_RT_H
#define FEDHUB_RT_H

#include <stddef.h>
#include <stdint.h>
#include "net/net.h"

#define RT_POOL_MAX 32

enum rt_kind {
	RT_HUB = 1,   /* the hub's own domain: answered locally */
	RT_HOSTED,    /* a [domain] with no component attached */
	RT_COMPONENT, /* a [component] domain: its connections */
	RT_S2S_OUT,   /* a remote domain with an outbound link on `owner` */
};

struct rt_entry;
struct rt_route {
	enum rt_kind kind;
	uint16_t owner;                    /* RT_S2S_OUT: worker holding the link */
	uint16_t nconns;                   /* RT_COMPONENT */
	struct net_ref conns[RT_POOL_MAX]; /* RT_COMPONENT: the pool */
};

int rt_init(void);
uint32_t rt_hash(const char *d, size_t n);
/* The route for a normalised domain, or NULL. */
const struct rt_route *rt_lookup(const char *d, size_t n);
/* Static entries made at start-up (kind HUB, HOSTED, COMPONENT with no conns). */
int rt_set_static(const char *d, enum rt_kind kind);
/* A reload removed a [domain] or [component]: drop its entry (any kind but
 * RT_S2S_OUT). Returns 0 or -ENOENT. */
int rt_del_static(const char *d);
/* Component pool changes; return the new pool size or -errno. */
int rt_comp_add(const char *d, struct net_ref r);
int rt_comp_del(const char *d, struct net_ref r);
/* Outbound links: claim the remote for worker `owner`. Returns the owner
 * that holds it now (ours, or another worker's that got there first), or
 * -EEXIST when the domain has a route of another kind. Only a domain with no
 * entry yet takes the writers' mutex; the stanza path calls it only then
 * (it reuses what rt_lookup() returned). */
int rt_s2s_claim(const char *d, size_t n, uint16_t owner);
void rt_s2s_release(const char *d, uint16_t owner);

#endif
