/*
 * router/guard.h — what the inbound s2s edge checks before it spends
 * anything on a peer: connection limits per source address and in total
 * (with a token bucket for the rate of new connections), the global bound on
 * dialback verifications in flight, and the form of a dialback key.
 *
 * Counting is shared by every worker without a lock: a fixed table of atomic
 * counters indexed by a keyed hash of the source (IPv4 address, or the /64
 * of an IPv6 address). Two sources that share a slot share its limits; with
 * GUARD_SLOTS slots and a secret hash key that is rare and not steerable.
 * Accepting is not the stanza path, and nothing here is called per stanza.
 */
#ifndef FEDHUB_GUARD_H
#define FEDHUB_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define GUARD_SLOTS 16384

/* Why a connection was refused (or GUARD_OK). */
enum guard_verdict { GUARD_OK, GUARD_TOTAL, GUARD_PER_IP, GUARD_RATE };

struct guard_limits {
	uint32_t max_conns;        /* 0 = no limit */
	uint32_t max_conns_per_ip; /* 0 = no limit */
	uint32_t rate_per_ip;      /* new connections per second, burst as many; 0 = no limit */
};

/* Set the limits (before the workers start) and draw the hash key. */
void guard_init(const struct guard_limits *l);
/* New limits, same hash key (and counts). */
void guard_set_limits(const struct guard_limits *l);
/* Count a new connection from sa at now_ms; on GUARD_OK *slot names what
 * guard_conn_release() must give back when it closes. A refused connection
 * holds nothing. */
enum guard_verdict guard_conn_acquire(const struct sockaddr *sa, uint64_t now_ms, uint32_t *slot);
void guard_conn_release(uint32_t slot);
/* Connections counted now (total, and those of sa's slot). */
uint32_t guard_conns(void);
uint32_t guard_conns_of(const struct sockaddr *sa);

/* Dialback verifications in flight, across workers, bounded by max. */
bool guard_verify_acquire(uint32_t max);
void guard_verify_release(void);
uint32_t guard_verify_inflight(void);

/* GCRA (the token bucket as one timestamp): may one more event happen at
 * now_us, at `rate` per second with bursts of `burst`? Updates *tat. */
bool guard_rate_take(_Atomic uint64_t *tat, uint64_t now_us, uint32_t rate, uint32_t burst);

/* XEP-0185 keys are hex digests: 16..128 hex digits, nothing else. */
#define GUARD_KEY_MIN 16
#define GUARD_KEY_MAX 128
bool guard_key_form_ok(const char *p, size_t n);

#endif
