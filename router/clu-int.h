/*
 * router/clu-int.h — what the cluster files share: router/clu.c (the
 * registry on the control thread), router/clu_lease.c (the lease state
 * machine: pure, its clock injected, unit-tested without Redis or time) and
 * router/clu_redis.c (hiredis connections on the control loop). Not for the
 * rest of the router, which sees clu.h.
 */
#ifndef FEDHUB_CLU_INT_H
#define FEDHUB_CLU_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include "router/clu.h"
#include "router/cfg.h"

/* ---- the lease state machine (clu_lease.c) ------------------------------ */

enum clu_ls {
	LS_NONE,  /* nobody we know of: try to acquire when wanted */
	LS_OURS,  /* we acquired it; usable until valid_until */
	LS_OTHER, /* node `owner` holds it with `token` */
};

struct clu_pub; /* the lock-free view workers read (clu.c) */

struct clu_lease {
	struct clu_lease *hnext; /* clu.c's table */
	uint32_t hash;
	char remote[256];
	int worker;         /* the worker whose link wants it; -1: none (releasing) */
	uint8_t st;         /* enum clu_ls */
	bool inflight;      /* an acquire (or release) command is out */
	uint64_t token;     /* OURS: ours; OTHER: the owner's */
	uint64_t max_token; /* the highest token ever seen for it (survives a Redis reset) */
	int owner;          /* OTHER: node index */
	uint64_t valid_until; /* OURS: the self-fencing deadline (ms, monotonic) */
	uint64_t next_try;    /* not OURS: no acquire attempt before this */
	/* what the worker was last told (told_st 0: nothing yet) */
	uint8_t told_st;
	int told_owner;
	uint64_t told_token;
	struct clu_pub *pub;
};

/* The clock-drift allowance: a fifth of the lease, at least 500 ms. */
uint32_t clu_margin_ms(uint32_t lease_ms);
/* Our acquisition (sent at sent_at) succeeded with token. */
void clu_ls_acquired(struct clu_lease *l, uint64_t sent_at, uint64_t token, uint32_t lease_ms);
/* The acquire found node `owner` (-1: a node we cannot use, e.g. an older
 * instance of our own id) holding it with token for pttl ms more. */
void clu_ls_held(struct clu_lease *l, int owner, bool owner_alive, uint64_t token, int64_t pttl, uint64_t now,
		 uint32_t lease_ms);
/* A renewal sent at sent_at answered: ok (still ours: extended) or not
 * (gone or someone else's: lost; true is returned when that loses it). */
bool clu_ls_renewed(struct clu_lease *l, uint64_t sent_at, bool ok, uint64_t now, uint32_t lease_ms);
/* Another node announced it acquired the lease with token. True when that
 * changes what we believe. */
bool clu_ls_announced(struct clu_lease *l, int owner, uint64_t token, uint64_t now);
/* The owner released it or died: try again from now on. */
void clu_ls_vacated(struct clu_lease *l, uint64_t now);
/* Ours and not self-fenced at `now`. */
bool clu_ls_usable(const struct clu_lease *l, uint64_t now);
/* Should an acquire be sent now? */
bool clu_ls_due(const struct clu_lease *l, uint64_t now);
/* What a worker should do at `now`: OURS, OTHER (owner, token) or WAIT. */
enum clu_lease_st clu_ls_view(const struct clu_lease *l, uint64_t now, int *owner, uint64_t *token);

/* ---- the registry's shared state (clu.c) --------------------------------- */

struct clu_comp {
	char name[256];
	uint64_t nodes; /* atomic: mask of node indexes in fh:comp:<name> */
	bool local;     /* we hold a connection for it */
};

struct clu_g {
	bool on;
	char id[CLU_ID_MAX];
	char prefix[32]; /* "fh:" */
	unsigned char secret[256];
	uint32_t secret_len;
	uint32_t lease_ms, timeout_ms;
	struct cfg_addr addr; /* node_address */
	int self;             /* our directory index */
	bool redis_up;        /* atomic */
	/* counters, atomic (one writer) */
	uint64_t gained, lost, fenced, held;
};
extern struct clu_g clu_g;

void clu_pub_update(struct clu_lease *l);
struct clu_lease *clu_lease_find(const char *remote);
void clu_lease_drop(struct clu_lease *l);
void clu_lease_foreach(void (*fn)(struct clu_lease *l, void *arg), void *arg);
uint32_t clu_lease_count(void);
void clu_lease_tell(struct clu_lease *l, uint64_t now);
bool clu_node_alive(int idx);
const char *clu_node_id(int idx); /* control thread */
int clu_node_set(const char *id, const struct sockaddr_storage *ss, socklen_t len, bool alive);
int clu_nodes_alive(void);
struct clu_comp *clu_comp_at(int i, int *n);
struct clu_comp *clu_comp_find(const char *domain);

/* ---- the Redis side of the registry (clu_reg.c) -------------------------- */

int clu_reg_init(const struct cfg *c);
/* l was asked for (or changed): answer, or acquire now if due. */
void clu_reg_kick(struct clu_lease *l, uint64_t now);
/* l's worker released it: give it up in Redis if ours, forget it. */
void clu_reg_release(struct clu_lease *l, uint64_t now);
void clu_reg_comp(struct clu_comp *c, bool up);
/* helpers of the registry's files */
char *clu_key(char *buf, size_t cap, const char *kind, const char *name); /* prefix + kind + name */
/* nhex hex digits of HMAC-SHA256(cluster secret, label || a || " " || b) */
void clu_hmac_hex(const char *label, const char *a, const char *b, char *out, size_t nhex);
struct redisReply;
/* The arguments, up to a NULL, as one command on the command connection. */
int clu_cmdv(void (*fn)(struct redisReply *r, void *arg), void *arg, ...) __attribute__((sentinel));
void clu_ignore_reply(struct redisReply *r, void *arg); /* frees arg */
void clu_publish(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* on fh:events */

/* ---- shared secrets (clu_secret.c) --------------------------------------- */

void clu_secrets_sync(void);   /* (re)connected: put ours back, read Redis's */
void clu_secrets_reread(void); /* an event or the minute's check */
void clu_tickets_rotate_check(void);

/* ---- Redis connections (clu_redis.c) ------------------------------------ */

struct redisAsyncContext;
struct redisReply;

/* A reply (NULL: the connection failed or the command timed out). */
typedef void clu_reply_fn(struct redisReply *r, void *arg);

enum clu_rc_kind { RC_CMD, RC_SUB, RC_SENTINEL };

struct clu_redis_cfg {
	char host[64];
	int port;
	uint32_t timeout_ms;
	/* called on the control thread */
	void (*on_up)(void);       /* the command connection is up */
	void (*on_down)(void);     /* ... lost */
	void (*on_event)(const char *msg, size_t n); /* a message on the events channel */
	void (*on_sub_up)(void);   /* subscribed (again): resync now */
};

void clu_redis_init(const struct clu_redis_cfg *c, const char *channel);
/* Sentinels instead of one server: ask them for the master, follow +switch-master. */
void clu_redis_add_sentinel(const char *host, int port, const char *master);
/* Command on the command connection; -ENOTCONN when it is down (fn not called). */
int clu_redis_cmd(clu_reply_fn *fn, void *arg, int argc, const char **argv, const size_t *lens);
bool clu_redis_up(void);
bool clu_redis_pending(void); /* replies still expected */
/* Control loop hooks (net/dns.c's dns_ctrl_set_hook). */
int clu_redis_prepare(struct pollfd *pfd, int max, int *timeout_ms);
void clu_redis_process(const struct pollfd *pfd, int n, uint64_t now);
void clu_redis_shutdown(void);
/* statistics for /metrics */
struct clu_redis_stats {
	uint64_t commands, failures, timeouts, reconnects, failovers;
	uint64_t lat_le[8]; /* replies by latency bucket (cumulative le) */
	uint64_t lat_sum_us;
	uint64_t lat_count;
};
extern const double clu_redis_lat_bounds[8];
void clu_redis_stats_get(struct clu_redis_stats *out);
const char *clu_redis_master(void); /* "host:port" of the server in use */

#endif
