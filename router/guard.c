/*
 * router/guard.c — connection limits, verification bound and key form for
 * the inbound edge (see guard.h for the design).
 */
#include <string.h>
#include <sys/random.h>
#include <netinet/in.h>

#include "router/guard.h"

struct guard_slot {
	_Atomic uint32_t conns;
	_Atomic uint64_t tat; /* GCRA: theoretical arrival time, µs */
};

static struct guard_slot slots[GUARD_SLOTS];
static _Atomic uint32_t total_conns;
static _Atomic uint32_t verify_inflight;
static struct guard_limits lim;
static uint64_t hash_key[2];

void guard_init(const struct guard_limits *l)
{
	lim = *l;
	if (getrandom(hash_key, sizeof(hash_key), 0) != (ssize_t)sizeof(hash_key)) {
		hash_key[0] = 0x9e3779b97f4a7c15ull; /* still spreads, just not secret */
		hash_key[1] = 0xbf58476d1ce4e5b9ull;
	}
}

void guard_set_limits(const struct guard_limits *l)
{
	lim = *l;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* The source an address counts as: IPv4 (also when mapped into IPv6), or
 * the /64 of an IPv6 address, since one host commonly holds a whole /64. */
static uint32_t slot_of(const struct sockaddr *sa)
{
	uint64_t k = 0;
	if (sa->sa_family == AF_INET) {
		uint32_t a;
		memcpy(&a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		k = (uint64_t)a | 4ull << 32;
	} else if (sa->sa_family == AF_INET6) {
		const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (!memcmp(a, mapped, 12)) {
			uint32_t v4;
			memcpy(&v4, a + 12, 4);
			k = (uint64_t)v4 | 4ull << 32;
		} else {
			memcpy(&k, a, 8);
			k = mix(k ^ 6);
		}
	}
	return (uint32_t)(mix(mix(k ^ hash_key[0]) + hash_key[1]) % GUARD_SLOTS);
}

bool guard_rate_take(_Atomic uint64_t *tat, uint64_t now_us, uint32_t rate, uint32_t burst)
{
	if (!rate)
		return true;
	uint64_t t = 1000000 / rate;
	if (!t)
		t = 1;
	uint64_t tau = (uint64_t)(burst ? burst - 1 : 0) * t;
	uint64_t old = atomic_load_explicit(tat, memory_order_relaxed);
	for (;;) {
		uint64_t base = old > now_us ? old : now_us;
		if (base - now_us > tau)
			return false;
		if (atomic_compare_exchange_weak_explicit(tat, &old, base + t, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	}
}

/* Take one unit of *ctr unless that makes it exceed max (0 = unbounded). */
static bool take(_Atomic uint32_t *ctr, uint32_t max)
{
	uint32_t n = atomic_fetch_add_explicit(ctr, 1, memory_order_relaxed);
	if (max && n >= max) {
		atomic_fetch_sub_explicit(ctr, 1, memory_order_relaxed);
		return false;
	}
	return true;
}

enum guard_verdict guard_conn_acquire(const struct sockaddr *sa, uint64_t now_ms, uint32_t *slot)
{
	uint32_t i = slot_of(sa);
	struct guard_slot *s = &slots[i];
	/* the rate first: a refused attempt still spends its token, so a
	 * source hammering at the limit stays refused */
	if (!guard_rate_take(&s->tat, now_ms * 1000 + 1, lim.rate_per_ip, lim.rate_per_ip))
		return GUARD_RATE;
	if (!take(&total_conns, lim.max_conns))
		return GUARD_TOTAL;
	if (!take(&s->conns, lim.max_conns_per_ip)) {
		atomic_fetch_sub_explicit(&total_conns, 1, memory_order_relaxed);
		return GUARD_PER_IP;
	}
	*slot = i;
	return GUARD_OK;
}

void guard_conn_release(uint32_t slot)
{
	if (slot >= GUARD_SLOTS)
		return;
	atomic_fetch_sub_explicit(&slots[slot].conns, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&total_conns, 1, memory_order_relaxed);
}

uint32_t guard_conns(void)
{
	return atomic_load_explicit(&total_conns, memory_order_relaxed);
}

uint32_t guard_conns_of(const struct sockaddr *sa)
{
	return atomic_load_explicit(&slots[slot_of(sa)].conns, memory_order_relaxed);
}

bool guard_verify_acquire(uint32_t max)
{
	return take(&verify_inflight, max);
}

void guard_verify_release(void)
{
	atomic_fetch_sub_explicit(&verify_inflight, 1, memory_order_relaxed);
}

uint32_t guard_verify_inflight(void)
{
	return atomic_load_explicit(&verify_inflight, memory_order_relaxed);
}

bool guard_key_form_ok(const char *p, size_t n)
{
	if (n < GUARD_KEY_MIN || n > GUARD_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return false;
	}
	return true;
}
