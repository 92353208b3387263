/*
 * router/cfg-int.h — what the three files of the router.conf parser share:
 * router/cfg.c (the directive table, the parser core, whole-file checks),
 * router/cfg_value.c (value parsers: numbers, units, addresses, names) and
 * router/cfg_dir.c (one handler per directive). Not for the rest of the
 * router, which sees cfg.h.
 */
#ifndef FEDHUB_CFG_INT_H
#define FEDHUB_CFG_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "router/cfg.h"

/* ---- sections ---------------------------------------------------------- */

enum cfg_sect { S_NONE, S_HUB, S_DOMAIN, S_COMPONENT, S_ROUTE, S_REMOTE, S_BACKEND, S_CLUSTER, S_UNKNOWN };

#define SB(s)     (1u << (s))
#define HUB       SB(S_HUB)
#define DOMAIN    SB(S_DOMAIN)
#define COMPONENT SB(S_COMPONENT)
#define ROUTE     SB(S_ROUTE)
#define REMOTE    SB(S_REMOTE)
#define BACKEND   SB(S_BACKEND)
#define CLUSTER   SB(S_CLUSTER)

/* Indexed by enum cfg_sect; NULL for the pseudo sections. */
extern const char *const cfg_sect_names[];

/* ---- the directive table ------------------------------------------------ */

struct parser;
typedef void cfg_handler(struct parser *p, int argc, char **argv);

/* name, sections, repeatable, min values, max values */
#define CFG_DIRECTIVES(X)                         \
	X(workers, HUB, 0, 1, 1)                  \
	X(domain, HUB | BACKEND, 1, 1, 15)        \
	X(listen, HUB, 1, 2, 5)                   \
	X(http, HUB, 0, 1, 1)                     \
	X(dialback_secret_file, HUB, 0, 1, 1)     \
	X(log_level, HUB, 0, 1, 1)                \
	X(log_format, HUB, 0, 1, 1)               \
	X(log_rate_limit, HUB, 0, 1, 1)           \
	X(metrics_domains_max, HUB, 0, 1, 1)      \
	X(max_stanza_size, HUB, 0, 1, 1)          \
	X(max_stanza_size_preauth, HUB, 0, 1, 1)  \
	X(max_depth, HUB, 0, 1, 1)                \
	X(max_attrs, HUB, 0, 1, 1)                \
	X(max_name, HUB, 0, 1, 1)                 \
	X(link_queue_max, HUB, 0, 1, 1)           \
	X(send_queue_max, HUB, 0, 1, 1)           \
	X(stall_timeout, HUB, 0, 1, 1)            \
	X(queue_memory_max, HUB, 0, 1, 1)         \
	X(source_allowance, HUB, 0, 1, 1)         \
	X(idle_timeout, HUB, 0, 1, 1)             \
	X(keepalive_interval, HUB, 0, 1, 1)       \
	X(connect_timeout, HUB, 0, 1, 1)          \
	X(retry_min, HUB, 0, 1, 1)                \
	X(dns_server, HUB, 0, 1, 1)               \
	X(dns_cache_max, HUB, 0, 1, 1)            \
	X(dns_ttl_min, HUB, 0, 1, 1)              \
	X(dns_ttl_max, HUB, 0, 1, 1)              \
	X(dns_max_inflight, HUB, 0, 1, 1)         \
	X(ca_file, HUB, 0, 1, 1)                  \
	X(s2s_tls, HUB, 0, 1, 1)                  \
	X(s2s_auth, HUB, 0, 1, 1)                 \
	X(remote_allow, HUB, 1, 1, 15)            \
	X(remote_deny, HUB, 1, 1, 15)             \
	X(dns_allow_private, HUB, 0, 1, 1)        \
	X(max_connections, HUB, 0, 1, 1)          \
	X(max_connections_per_ip, HUB, 0, 1, 1)   \
	X(connection_rate_per_ip, HUB, 0, 1, 1)   \
	X(preauth_timeout, HUB, 0, 1, 1)          \
	X(max_preauth_bytes, HUB, 0, 1, 1)        \
	X(max_pairs_per_stream, HUB, 0, 1, 1)     \
	X(max_verify_per_stream, HUB, 0, 1, 1)    \
	X(max_verify_total, HUB, 0, 1, 1)         \
	X(proxy_from, HUB, 1, 1, 15)              \
	X(drain_timeout, HUB, 0, 1, 1)            \
	X(control_socket, HUB, 0, 1, 1)           \
	X(link_rate, HUB, 0, 1, 1)                \
	X(link_stanza_rate, HUB, 0, 1, 1)         \
	X(remote_rate, HUB, 0, 1, 1)              \
	X(cert, DOMAIN, 0, 1, 1)                  \
	X(key, DOMAIN, 0, 1, 1)                   \
	X(secret, COMPONENT, 0, 1, 1)             \
	X(connect, ROUTE | BACKEND, 1, 1, 1)      \
	X(tls, ROUTE | REMOTE | BACKEND, 0, 1, 1) \
	X(direct_tls, ROUTE, 0, 1, 1)             \
	X(auth, REMOTE, 0, 1, 1)                  \
	X(domains, BACKEND, 1, 1, 15)             \
	X(allow_from, BACKEND, 1, 1, 15)          \
	X(redis, CLUSTER, 0, 1, 1)                \
	X(sentinel, CLUSTER, 1, 2, 2)             \
	X(node_id, CLUSTER, 0, 1, 1)              \
	X(node_listen, CLUSTER, 0, 1, 1)          \
	X(node_address, CLUSTER, 0, 1, 1)         \
	X(node_tls, CLUSTER, 0, 3, 3)             \
	X(cluster_secret_file, CLUSTER, 0, 1, 1)  \
	X(lease_time, CLUSTER, 0, 1, 1)           \
	X(redis_timeout, CLUSTER, 0, 1, 1)

enum cfg_dir_id {
#define X(n, s, r, lo, hi) D_##n,
	CFG_DIRECTIVES(X)
#undef X
		D__COUNT
};

#define X(n, s, r, lo, hi) cfg_handler cfg_d_##n;
CFG_DIRECTIVES(X)
#undef X
/* ---- section-name set ---------------------------------------------------- */

/*
 * Normalised section names -> the line each kind was declared on. A hosted
 * [domain X] and a [component X] may share a name (the domain carries the
 * certificate, the component receives the stanzas); a [route X] may not
 * share one with either, since a static route is for a domain we do not serve.
 * Open addressing: a deployment can hold thousands of domains.
 */
enum { K_DOMAIN, K_COMPONENT, K_ROUTE, K_REMOTE, K_ACL, K_BACKEND, K__COUNT };

struct name_ent {
	char *name;
	int line[K__COUNT];
};

struct name_set {
	struct name_ent *v;
	size_t cap, n;
};

struct name_ent *cfg_names_find(struct name_set *ns, const char *name, bool create);

struct parser {
	struct cfg *c;
	const char *file;
	FILE *err;
	int line;
	int nerr;
	bool oom;

	enum cfg_sect sect;
	int sect_line;
	bool sect_dup;             /* a second [hub]: reported, not re-checked */
	int seen[D__COUNT];        /* line of each directive in the current section */
	int hub_seen[D__COUNT];    /* ... in [hub], kept for the whole-file checks */
	int sect_first[S_UNKNOWN]; /* line of the first [hub] */
	/* The entry the current named section fills: an element of the cfg
	 * arrays, or `scratch` when the name was invalid or a duplicate, so its
	 * directives are still checked but go nowhere. */
	int cur; /* index into the cfg array, -1 = scratch */
	union {
		struct cfg_domain d;
		struct cfg_component k;
		struct cfg_route r;
		struct cfg_remote m;
		struct cfg_backend b;
	} scratch;
	bool *route_tls_set; /* per route: `tls` given, else s2s_tls applies */
	int cap_domains, cap_components, cap_routes, cap_remotes, cap_acl, cap_backends, cap_bdoms;
	struct name_set names;
};

/* One error, as "FILE:LINE: message" on p->err (no LINE when line <= 0); counted. */
void perr(struct parser *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define ERR(p, ...) perr((p), (p)->line, __VA_ARGS__)

static inline struct cfg_domain *cur_domain(struct parser *p)
{
	return p->cur < 0 ? &p->scratch.d : &p->c->domains[p->cur];
}

static inline struct cfg_component *cur_component(struct parser *p)
{
	return p->cur < 0 ? &p->scratch.k : &p->c->components[p->cur];
}

static inline struct cfg_route *cur_route(struct parser *p)
{
	return p->cur < 0 ? &p->scratch.r : &p->c->routes[p->cur];
}

static inline struct cfg_remote *cur_remote(struct parser *p)
{
	return p->cur < 0 ? &p->scratch.m : &p->c->remotes[p->cur];
}

static inline struct cfg_backend *cur_backend(struct parser *p)
{
	return p->cur < 0 ? &p->scratch.b : &p->c->backends[p->cur];
}

/* cfg_backend.c: [backend NAME] */
/* Open [backend NAME] (name as written); sets p->cur. */
void cfg_backend_open(struct parser *p, const char *name);
void cfg_backend_close(struct parser *p);
/* The whole-file checks and the domain index, after the last section. */
void cfg_backend_final(struct parser *p);
void cfg_backend_free(struct cfg *c);
/* [backend]'s `domain`, `connect` and `tls` (the handlers of cfg_dir.c pass them on). */
void cfg_backend_domain(struct parser *p, int argc, char **argv);
void cfg_backend_connect(struct parser *p, const char *arg);
void cfg_backend_tls(struct parser *p, const char *arg);

/* cfg_value.c */
enum unit { U_NUM, U_BYTES, U_SECONDS, U_MS /* stored in ms: 500ms, 5s, 1m */ };
/* Parse s as u (with its suffixes) into *field, in [lo, hi]; else an error. */
void cfg_set_u32(struct parser *p, const char *name, const char *s, enum unit u, uint64_t lo, uint64_t hi,
		 uint32_t *field);
int cfg_parse_tls_mode(const char *s, enum cfg_tls_mode *m);
int cfg_parse_auth_mode(const char *s, enum cfg_auth_mode *m);
int cfg_parse_yes_no(const char *s, bool *v);
/* A path the daemon will open later: checked now, copied into field. */
void cfg_set_path(struct parser *p, const char *what, const char *s, char *field, size_t cap);
bool cfg_addr_equal(const struct cfg_addr *x, const struct cfg_addr *y);
/* A [route] name: a domain or an IP literal (canonical text), into out. */
int cfg_route_name_normalise(const char *in, char *out, size_t cap);

/* cfg_dir.c */
/* Grow *arr (of *n elements of size, *cap allocated) by one zeroed element;
 * returns its index, or -1 (p->oom set). */
int cfg_grow(struct parser *p, void **arr, int *n, int *cap, size_t size);
/* [cluster] as a whole: what is missing or contradicts (from final_checks). */
void cfg_cluster_checks(struct parser *p);

#endif
