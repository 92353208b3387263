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
	X(send_queue_full, "stanzas refused because a queue was full")                        \
	X(s2s_policy_refused, "s2s links, pairs or stanzas refused by remote policy")         \
	X(stanzas_over_peer_limit, "stanzas bounced for exceeding a peer's XEP-0478 limit")

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

struct met_worker {
#define MET_FIELD(name, help) uint64_t name;
	MET_COUNTERS(MET_FIELD)
	MET_COUNTERS_IN(MET_FIELD)
#undef MET_FIELD
	uint64_t conns_open; /* gauge */
	char pad[64];
} __attribute__((aligned(64))); /* blocks never share a cache line */

/* Only the worker that owns `w` may call these on it. */
#define MET_ADD(w, field, n) __atomic_store_n(&(w)->field, (w)->field + (uint64_t)(n), __ATOMIC_RELAXED)
#define MET_INC(w, field)    MET_ADD(w, field, 1)
#define MET_DEC(w, field)    MET_ADD(w, field, -1) /* gauges only (conns_open) */

/* Allocate n per-worker blocks, zeroed, and start the uptime clock. Call
 * before any thread uses met_of; calling it again resets every counter and
 * the ready flag, and is safe while the HTTP endpoint runs but not while
 * workers hold blocks. Returns 0 or -ENOMEM. */
int met_init(int nworkers);
/* The block of worker 0..n-1; NULL otherwise. The pointer stays valid until
 * met_free. */
struct met_worker *met_of(int worker);
/* false: /health answers 503 {"status":"unavailable",...} so a load
 * balancer stops sending new links; the daemon clears it when shutdown
 * begins, while it drains. Initially true. Also exported as the gauge
 * fedhub_ready. Thread-safe. */
void met_set_ready(bool ready);

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
/* Stop the endpoint and free the blocks. */
void met_free(void);

#endif
