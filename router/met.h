/*
 * router/met.h — counters and the HTTP endpoint (/health, /metrics).
 *
 * Each worker owns one struct met_worker and increments its fields with plain
 * stores (no atomics: one writer per struct). The HTTP thread sums them when
 * /metrics is read; a torn read of a 64-bit counter cannot happen on x86-64.
 * Use MET_INC / MET_ADD / MET_DEC: they compile to a plain load, add and store
 * (no lock prefix) but tell the compiler — and ThreadSanitizer — that another
 * thread reads the field, so the store is neither torn nor optimised away.
 */
#ifndef FEDHUB_MET_H
#define FEDHUB_MET_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "router/cfg.h"

#define MET_COUNTERS(X)                                                                       \
	X(conn_accepted, "connections accepted")                                              \
	X(conn_closed, "connections closed")                                                  \
	X(s2s_in_links, "(remote, local) domain pairs authenticated on inbound s2s streams")  \
	X(s2s_out_links, "(local, remote) domain pairs authenticated on outbound s2s links")  \
	X(s2s_out_failed, "outbound s2s link attempts that failed")                           \
	X(comp_links, "component connections authenticated")                                  \
	X(stanzas_in, "stanzas received")                                                     \
	X(stanzas_routed, "stanzas routed to a destination")                                  \
	X(stanzas_cross_worker, "stanzas handed to another worker")                           \
	X(stanzas_bounced, "stanzas bounced with an error")                                   \
	X(stanzas_dropped_error, "error stanzas that could not be delivered (never bounced)") \
	X(stanzas_local, "stanzas answered by the hub itself")                                \
	X(bytes_in, "bytes received")                                                         \
	X(stream_errors_sent, "stream errors sent")                                           \
	X(dialback_ok, "dialback verifications that succeeded")                               \
	X(dialback_fail, "dialback verifications that failed")                                \
	X(dns_queries, "DNS queries made")                                                    \
	X(dns_failures, "DNS queries that failed")                                            \
	X(tls_handshakes, "TLS handshakes completed")                                         \
	X(tls_failures, "TLS handshakes that failed")                                         \
	X(tls_resumptions, "TLS handshakes that resumed a session from a ticket")             \
	X(send_queue_full, "stanzas refused because a queue was full")                        \
	X(s2s_policy_refused, "s2s links, pairs or stanzas refused by remote policy")         \
	X(stanzas_over_peer_limit, "stanzas bounced for exceeding a peer's XEP-0478 limit")   \
	X(flow_waited, "stanzas that waited for a full destination")                          \
	X(flow_pauses, "times a source was paused for a full destination")                    \
	X(flow_ring_waits, "messages that waited for a full worker ring")                     \
	X(flow_stall_bounced, "stanzas bounced: destination stalled for stall_timeout")       \
	X(shaping_pauses, "inbound s2s links paused by link_rate, link_stanza_rate, remote_rate")                   \
	X(cluster_refused, "forwarded stanzas sent back: their lease is not ours or newer than ours")              \
	X(cluster_returned, "stanzas another node sent back (a stale lease), routed again")                        \
	X(cluster_node_auth_failures, "node links closed: cluster secret or node_tls not proved")                    \
	X(node_link_resent, "stanzas a failed node link had not had acknowledged, queued to go again")

/* Refusals at the inbound s2s edge, one counter per reason. */
#define MET_COUNTERS_IN(X)                                                                                \
	X(s2s_in_refused_max_connections, "inbound s2s connections refused: max_connections reached")     \
	X(s2s_in_refused_per_ip, "inbound s2s connections refused: max_connections_per_ip reached")       \
	X(s2s_in_refused_rate, "inbound s2s connections refused: connection_rate_per_ip exceeded")        \
	X(s2s_in_refused_preauth_timeout, "inbound s2s streams closed: no valid pair by preauth_timeout") \
	X(s2s_in_refused_preauth_bytes, "inbound s2s streams closed: max_preauth_bytes exceeded")         \
	X(s2s_in_refused_version, "inbound s2s streams refused: not version 1.0 where TLS is required")   \
	X(s2s_in_refused_pairs, "inbound s2s streams closed: max_pairs_per_stream exceeded")              \
	X(s2s_in_refused_verify_stream, "dialback requests refused: max_verify_per_stream pending")       \
	X(s2s_in_refused_verify_total, "dialback requests refused: max_verify_total in flight")           \
	X(s2s_in_refused_bad_key, "dialback requests refused: key not of the XEP-0185 form")              \
	X(s2s_in_refused_retry, "dialback requests refused: pair refused before on the same stream")      \
	X(s2s_in_db_duplicate, "dialback requests for a pair already pending or valid, not verified again")

/* Labels. Each labelled counter is an array in struct met_worker indexed by
 * these enums; met.c names the values. Add a value before the _N member and
 * its name to the matching table in met.c. */
enum met_dir { MET_DIR_IN, MET_DIR_OUT, MET_DIR_VERIFY, MET_DIR_COMPONENT, MET_DIR_NODE, MET_DIR_N };
enum met_auth {
	MET_AUTH_SASL_EXTERNAL,
	MET_AUTH_DIALBACK,
	MET_AUTH_XEP0344,
	MET_AUTH_HANDSHAKE,
	MET_AUTH_CLUSTER_SECRET, /* node links: both sides proved the cluster secret */
	MET_AUTH_N
};
enum met_tls { MET_TLS_NONE, MET_TLS_12, MET_TLS_13, MET_TLS_OTHER, MET_TLS_N };
enum met_gen { MET_GEN_BOUNCE, MET_GEN_ANSWER, MET_GEN_N }; /* stanzas the hub generates */
enum met_dom_kind { MET_DOM_REMOTE, MET_DOM_COMPONENT, MET_DOM_KIND_N };
/* RFC 6120 §4.9.3 stream error and §8.3.3 stanza error conditions, indexed
 * by met_cond(); the last index is "other" (a name not in the RFC). */
#define MET_COND_N 32

/* Per-domain counters of one worker (see met_dom_index). */
struct met_dom {
	uint64_t stanzas[2]; /* [0] in from the domain, [1] out to it */
	uint64_t bytes[2];
	uint64_t links; /* gauge: authenticated links */
};

/* Who a connection is in the labelled gauges; embedded in a session so that
 * its close undoes what met_conn_open / met_link_up counted. */
struct met_link {
	int32_t dom;  /* met_dom_index, or -1 */
	uint8_t dir;  /* enum met_dir */
	uint8_t auth; /* enum met_auth, valid when up */
	uint8_t tls;  /* enum met_tls, valid when up */
	bool open, up;
};

/* Per-backend counters of one worker ([backend NAME], router/backend.c),
 * indexed by the backend's position in the configuration; backends past
 * MET_BACKENDS_MAX share the last slot (backend="_other"). */
#define MET_BACKENDS_MAX 64
struct met_backend {
	uint64_t links_up;    /* gauge: internal links with a pair authenticated */
	uint64_t stanzas_in;  /* relayed to the backend */
	uint64_t stanzas_out; /* received from it (transit or to hosted domains) */
	uint64_t queued;      /* gauge: stanzas waiting for its links */
	uint64_t bounced;     /* stanzas for it bounced */
	uint64_t link_failed; /* attempts at a link that failed */
};

struct met_worker {
#define MET_FIELD(name, help) uint64_t name;
	MET_COUNTERS(MET_FIELD)
	MET_COUNTERS_IN(MET_FIELD)
#undef MET_FIELD
	uint64_t conns_open;                                 /* gauge, all directions (fedhub_conns_open) */
	uint64_t conns_dir[MET_DIR_N];                       /* gauge */
	uint64_t links_up[MET_DIR_N][MET_AUTH_N][MET_TLS_N]; /* gauge */
	uint64_t links_auth[MET_DIR_N][MET_AUTH_N];          /* counter */
	uint64_t stanzas_dir[2][MET_DIR_N];                  /* [0] received, [1] sent */
	uint64_t bytes_dir[2][MET_DIR_N];                    /* [0] received, [1] queued to send */
	uint64_t generated[MET_GEN_N];                       /* stanzas the hub made */
	uint64_t bounces[MET_COND_N];                        /* by stanza error condition */
	uint64_t stream_errors[2][MET_COND_N];               /* [0] received, [1] sent */
	struct met_backend bk[MET_BACKENDS_MAX];
	struct met_dom *dom;          /* met_domains_max + MET_DOM_KIND_N: then one "_other" per kind */
	uint64_t flow_paused_sources; /* gauge: connections of this worker not read now */
	uint64_t flow_queue_bytes;    /* gauge: bytes waiting in this worker's flow queues */
	uint64_t flow_queue_stanzas;  /* gauge: stanzas waiting there */
	uint64_t cluster_fwd[2];      /* stanzas forwarded [0] to another node, [1] from one */
	uint64_t nl_queue_bytes;      /* gauge, set each tick: bytes waiting for node links */
	uint64_t nl_queue_stanzas;    /* gauge: stanzas waiting for a node link to authenticate */
	uint64_t nl_unacked;          /* gauge: stanzas in node links' rings (not acknowledged yet) */
	/* the deepest flow queues, published by the worker once a tick
	 * (met_flow_publish) under flow_seq: odd while it writes */
	uint64_t flow_seq;
	uint32_t flow_n;
	struct met_flow {
		char dest[64]; /* destination domain (truncated) */
		uint64_t stanzas, bytes;
		uint32_t paused; /* sources paused for it */
	} flow[8];
	char pad[64];
} __attribute__((aligned(64))); /* blocks never share a cache line */

/* Only the worker that owns `w` may call these on it. */
#define MET_ADD(w, field, n) __atomic_store_n(&(w)->field, (w)->field + (uint64_t)(n), __ATOMIC_RELAXED)
#define MET_INC(w, field)    MET_ADD(w, field, 1)
#define MET_DEC(w, field)    MET_ADD(w, field, -1) /* gauges only (conns_open) */
#define MET_SET(w, field, v) __atomic_store_n(&(w)->field, (uint64_t)(v), __ATOMIC_RELAXED)

#define MET_FLOW_TOP 8
/* Publish the worker's deepest flow queues (at most MET_FLOW_TOP). */
void met_flow_publish(struct met_worker *w, const struct met_flow *f, int n);

/* Allocate n per-worker blocks, zeroed, and start the uptime clock. Call
 * before any thread uses met_of; calling it again resets every counter and
 * the ready flag, and is safe while the HTTP endpoint runs but not while
 * workers hold blocks. Returns 0 or -ENOMEM. */
int met_init(int nworkers);
/* The block of worker 0..n-1; NULL otherwise. The pointer stays valid until
 * met_free. */
struct met_worker *met_of(int worker);
/* Connections open in the whole hub (every worker's gauge summed). */
uint64_t met_conns_open(void);
/* The state /health reports: "ok" is ready (200, the initial state);
 * anything else, e.g. met_set_state("draining", "SIGTERM"), answers 503
 * {"status":"draining","reason":"SIGTERM",...} so a load balancer stops
 * sending new links (the daemon says "starting" until its workers run and
 * "draining" from the start of a shutdown). reason may be NULL. Also
 * exported as the gauge fedhub_ready. Thread-safe. */
void met_set_state(const char *status, const char *reason);

/* Start the HTTP endpoint (libmicrohttpd, its own thread), bound to addr only.
 * GET /health: JSON {"status":"ok","workers":N,"uptime_s":S,...}; GET /metrics:
 * Prometheus text format 0.0.4; anything else 404 (405 for other methods on
 * those two paths). Returns 0, -EALREADY or -EADDRNOTAVAIL (bind failed, logged). */
int met_http_start(const struct cfg_addr *addr);
/* The port bound (useful when addr's port was 0); 0 when not running. */
int met_http_port(void);
void met_http_stop(void);
/* Render the Prometheus text into buf (NUL-terminated when cap > 0); returns
 * the full length like snprintf, so a result >= cap means "retry bigger". */
size_t met_render(char *buf, size_t cap);
/* Render the /health JSON body the same way; *ok is false when not ready. */
size_t met_render_health(char *buf, size_t cap, bool *ok);
/* ---- labels -------------------------------------------------------------
 * The index of an RFC 6120 condition name (stream or stanza error) for
 * bounces[] and stream_errors[]; MET_COND_N - 1 for any other name. */
int met_cond(const char *name);
/* Set the cap on labelled domains (metrics_domains_max); call before
 * met_init. Domains past the cap are counted under domain="_other". */
void met_set_domains_max(uint32_t n);
/* The per-domain slot of (kind, domain): found without a lock (call it on
 * the stanza path), -1 when the domain was never registered. */
int met_dom_find(enum met_dom_kind kind, const char *domain);
/* Find or register (kind, domain); takes a mutex when it registers, so call
 * it when a link authenticates, not per stanza. Returns the slot, or the
 * "_other" slot once the cap is reached. */
int met_dom_index(enum met_dom_kind kind, const char *domain);
/* met_dom_find, falling back to the "_other" slot. */
int met_dom_slot(enum met_dom_kind kind, const char *domain);
/* The last stream error (sent or received) on a link of the domain's, shown
 * as fedhub_domain_last_error_info. Any thread. */
void met_dom_error(enum met_dom_kind kind, const char *domain, const char *cond);
/* A connection of direction dir exists (accepted or connecting). */
void met_conn_open(struct met_worker *w, struct met_link *l, enum met_dir dir);
/* It authenticated (again: a further domain pair counts only in
 * links_auth); dom_domain names its remote or component domain. */
void met_link_up(struct met_worker *w, struct met_link *l, enum met_auth auth, enum met_tls tls, enum met_dom_kind kind,
		 const char *dom_domain);
/* It is gone: undo the gauges. Safe on a link never opened. */
void met_conn_close(struct met_worker *w, struct met_link *l);
/* "TLSv1.2" -> MET_TLS_12 ...; NULL -> MET_TLS_NONE. */
enum met_tls met_tls_of(const char *version);

/* ---- static information --------------------------------------------------- */
/* fedhub_build_info{version,wolfssl,aesni} 1. Strings are copied. */
void met_set_build_info(const char *version, const char *wolfssl, bool aesni);
/* fedhub_cert_expiry_seconds{domain}: the notAfter of the first certificate
 * in a PEM file, as Unix time. Returns 0 or -1 (unreadable, not a
 * certificate). Control plane only. */
int met_cert_expiry_file(const char *domain, const char *pem_path);
/* The notAfter of a DER certificate as Unix time, or -1. */
int64_t met_der_not_after(const uint8_t *der, size_t n);
/* Render helper, exposed for the tests: a Prometheus label value escaped
 * (backslash, double quote, newline) into out; returns the length like
 * snprintf. */
size_t met_escape_label(const char *in, char *out, size_t cap);

/* A JSON string (RFC 8259 §7): s quoted and escaped, written as pieces
 * through put(o, bytes, length). /health and the control socket use it. */
void met_json_str(void (*put)(void *o, const char *p, size_t n), void *o, const char *s);

/* The backends' names for the labels (met_backend.c); the slot of backend
 * index i is met_backend_slot(i). Call before the workers start. */
void met_set_backends(const struct cfg *c);
static inline int met_backend_slot(int i)
{
	return i < MET_BACKENDS_MAX - 1 ? i : MET_BACKENDS_MAX - 1;
}
/* One backend slot's counters summed over the workers (any thread). */
void met_backend_totals(int slot, struct met_backend *out);

/* Stop the endpoint and free the blocks. */
void met_free(void);

#endif
