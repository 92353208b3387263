/*
 * router/clu.h — the cluster registry: nodes sharing link ownership,
 * component placement and secrets through Redis.
 *
 * Everything Redis-facing runs on the control thread (router/clu.c,
 * router/clu_redis.c); workers never wait on Redis. What workers read —
 * the node directory, our leases and their fencing state, component
 * placement — is published by the control thread in tables any thread reads
 * without a lock (atomics / RCU), so the stanza path costs a few loads.
 *
 * Ownership is per REMOTE domain: one node owns every outbound link to
 * remote.example (a lease `fh:lease:<remote>` = "<node_id> <token>", SET NX
 * PX lease_time, renewed every lease_time/3). A worker whose link to an
 * unowned remote is about to resolve asks clu_lease_ask(); the answer comes
 * back to that worker as a NET_MSG_CLU_LEASE message: ours (with our
 * token), or owned by node N (its token: the link forwards to N). The same
 * message arrives unasked when the state changes (lost, fenced, new owner).
 *
 * Without a [cluster] section clu_enabled() is false and nothing here does
 * anything: every lease question is "ours" without asking.
 */
#ifndef FEDHUB_CLU_H
#define FEDHUB_CLU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "net/net.h"

#define CLU_MAX_NODES 64 /* node indexes fit a uint64_t mask */
#define CLU_ID_MAX    64

struct cfg;

/* Start-up (main thread, before the workers): copy what the cluster needs
 * from the configuration, read the cluster secret. 0 or -errno. With no
 * [cluster] section it does nothing and returns 0. */
int clu_init(const struct cfg *c);
/* Control thread: connect to Redis and run the registry from the control
 * loop (called from router/main.c's ctrl_main before the loop). */
void clu_ctrl_start(void);
/* Control thread, at stop: release our leases and node key (best effort,
 * bounded by redis_timeout). */
void clu_ctrl_stop(void);
/* Control thread: a message of a CLU_MSG_* type; false if not ours. */
bool clu_on_ctrl_msg(struct net_msg *m);

bool clu_enabled(void);
const char *clu_self_id(void); /* this node's node_id ("" when not clustered) */
int clu_self(void);            /* this node's index in the directory (-1 when not clustered) */

/* Node directory, readable from any thread. An index is this process's
 * own (nodes number their directories in the order they learn of nodes:
 * on the wire, between nodes, use the node id). It is stable for the
 * process's life: a node that dies and comes back keeps its index. */
struct clu_node {
	char id[CLU_ID_MAX];
	struct sockaddr_storage addr; /* node-to-node address (node_address) */
	socklen_t alen;
	bool alive; /* its fh:node key exists */
};
int clu_node_count(void); /* indexes in use: 0..count-1 */
bool clu_node_get(int idx, struct clu_node *out);
int clu_node_index(const char *id); /* -1 if unknown */
/* Changes whenever an entry is added, changes address or liveness: a
 * reader polling the directory (node links) rereads it only then. */
uint64_t clu_nodes_gen(void);

/* Messages between workers and the control thread. */
enum {
	CLU_MSG_ASK = NET_MSG_USER + 32, /* worker -> control (internal payload) */
	CLU_MSG_RELEASE,                 /* worker -> control: an idle link closed */
	CLU_MSG_COMP_UP,                 /* worker -> control: first local component connection */
	CLU_MSG_COMP_DOWN,               /* worker -> control: last one gone */
	NET_MSG_CLU_LEASE,               /* control -> worker: u.bytes: struct clu_lease_msg */
};

enum clu_lease_st {
	CLU_LEASE_OURS = 1, /* we own it: send; token = our fencing token */
	CLU_LEASE_OTHER,    /* node `owner` owns it with `token`: forward there */
	CLU_LEASE_WAIT,     /* nobody we can use (Redis down, fenced, owner unreachable):
			       hold the queue (stall_timeout bounds it) and wait for the next message */
};

/* What NET_MSG_CLU_LEASE carries: m->buf is NULL; the remote name lives in
 * a control-plane allocation the worker frees with clu_lease_msg_free()
 * after handling it (a domain does not fit a message). */
struct clu_lease_ans {
	char remote[256];
	enum clu_lease_st st;
	int owner; /* node index (OURS: clu_self()) */
	uint64_t token;
	/* OURS: the self-fencing deadline (ms, net_now_ms() clock; read it with
	 * __atomic_load_n, the control thread moves it at each renewal). The
	 * pointer stays valid until the worker's clu_lease_release(). A link
	 * sends as owner only while net_now_ms() is below it. */
	const uint64_t *valid_until;
};
struct clu_lease_msg {
	struct clu_lease_ans *a;
};
void clu_lease_msg_free(struct clu_lease_ans *a);

/* Worker: ask for the lease of `remote` (normalised). The answer comes as a
 * NET_MSG_CLU_LEASE message to this worker; after that, every change of the
 * lease's state for this node comes the same way until clu_lease_release().
 * 0, or -ENOBUFS (the control ring is full: ask again next tick). */
int clu_lease_ask(struct net_worker *self, const char *remote, size_t n);
/* Worker: the link to `remote` closed idle; if the lease is ours it is
 * given up (DEL if still ours) and no more messages come for it. */
int clu_lease_release(struct net_worker *self, const char *remote, size_t n);
/* Any thread, lock-free. Our fencing token for remote, 0 if not ours. */
uint64_t clu_lease_token(const char *remote, size_t n);
/* Any thread, lock-free: ours and not self-fenced at this moment. */
bool clu_lease_valid(const char *remote, size_t n);

/* Components: called by the worker when a component domain gains its first /
 * loses its last local connection on this node. */
void clu_comp_up(struct net_worker *self, const char *domain);
void clu_comp_down(struct net_worker *self, const char *domain);
/* Any thread: nodes (other than us) holding a connection for domain; fills
 * up to max indexes, returns how many there are. */
int clu_comp_nodes(const char *domain, int *idx, int max);

enum clu_redis_state { CLU_REDIS_OFF, CLU_REDIS_UP, CLU_REDIS_DOWN };
enum clu_redis_state clu_redis_state(void);

/* For /metrics (any thread). */
#define CLU_LAT_BUCKETS 8
struct clu_stats {
	uint64_t nodes;        /* alive, us included */
	uint64_t leases_held;  /* ours and not self-fenced */
	uint64_t gained, lost; /* leases acquired / lost (taken over, or gone from Redis) */
	uint64_t fenced;       /* leases that reached their self-fencing deadline */
	bool redis_up;
	uint64_t commands, failures, timeouts, reconnects, master_changes;
	const double *lat_bounds; /* CLU_LAT_BUCKETS upper bounds, seconds */
	uint64_t lat_le[CLU_LAT_BUCKETS], lat_count;
	double lat_sum; /* seconds */
};
void clu_stats_get(struct clu_stats *out);

/* Shared secrets, any thread. The dialback key (hex SHA-256 of the
 * cluster's dialback secret, XEP-0185) every node uses once Redis answered;
 * before that (or when not clustered) the local one, hub_dialback_key. The
 * pointer stays valid for the process's life. */
const char *clu_dialback_key(void);
/* The cluster's TLS session-ticket key material: copies up to cap bytes into
 * out and returns the blob's length (0: none yet, use local keys); *gen
 * changes whenever the blob does (rotation), so the caller reloads only
 * then. */
size_t clu_ticket_keys(unsigned char *out, size_t cap, uint64_t *gen);

/* The cluster secret (cluster_secret_file), for node-link authentication;
 * NULL when not clustered. */
const unsigned char *clu_secret(size_t *len);

#endif
