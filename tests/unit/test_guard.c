/* tests/unit/test_guard.c — the inbound edge's limits (router/guard.c):
 * dialback key form, the GCRA token bucket, connection counting per source
 * and in total, the verification bound. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "router/guard.h"

static struct sockaddr_in v4(const char *a)
{
	struct sockaddr_in s = {.sin_family = AF_INET};
	inet_pton(AF_INET, a, &s.sin_addr);
	return s;
}

static struct sockaddr_in6 v6(const char *a)
{
	struct sockaddr_in6 s = {.sin6_family = AF_INET6};
	inet_pton(AF_INET6, a, &s.sin6_addr);
	return s;
}

/* guard_init() with a hash key under which the n sources have slots of
 * their own (two sources may share a slot by design; the tests want none). */
static void init_apart(const struct guard_limits *l, const struct sockaddr **sa, int n)
{
	struct guard_limits open = {0};
	for (;;) {
		guard_init(&open);
		uint32_t s[8];
		bool apart = true;
		for (int i = 0; i < n; i++) {
			assert_int_equal(guard_conn_acquire(sa[i], 1, &s[i]), GUARD_OK);
			for (int j = 0; j < i; j++)
				apart &= s[i] != s[j];
		}
		for (int i = 0; i < n; i++)
			guard_conn_release(s[i]);
		if (apart)
			break;
	}
	struct guard_limits keep = *l;
	/* same key, the real limits: guard_init would draw a new key */
	guard_set_limits(&keep);
}

static void test_key_form_accepts_hex_digests_only(void **state)
{
	const char *sha256 = "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d";
	assert_true(guard_key_form_ok(sha256, strlen(sha256)));
	assert_true(guard_key_form_ok("0123456789ABCDEF", 16)); /* upper case, the shortest */
	char k[GUARD_KEY_MAX + 2];
	memset(k, 'a', sizeof(k));
	assert_true(guard_key_form_ok(k, GUARD_KEY_MAX));
	assert_false(guard_key_form_ok(k, GUARD_KEY_MAX + 1)); /* too long */
	assert_false(guard_key_form_ok(k, GUARD_KEY_MIN - 1)); /* too short */
	assert_false(guard_key_form_ok("", 0));
	assert_false(guard_key_form_ok("0123456789abcdeg", 16));           /* not hex */
	assert_false(guard_key_form_ok("<x/>0123456789abcdef", 20));       /* markup */
	assert_false(guard_key_form_ok("&lt;x/&gt;0123456789abcdef", 26)); /* escaped markup */
	assert_false(guard_key_form_ok("0123456789abcdef 0123", 21));      /* space */
	assert_false(guard_key_form_ok("0123456789abcdef\0abc", 20));      /* NUL */
}

static void test_rate_allows_a_burst_then_one_per_interval(void **state)
{
	_Atomic uint64_t tat = 0;
	uint64_t t0 = 1000000;
	for (int i = 0; i < 5; i++)
		assert_true(guard_rate_take(&tat, t0, 5, 5)); /* the burst */
	assert_false(guard_rate_take(&tat, t0, 5, 5));
	assert_false(guard_rate_take(&tat, t0 + 199999, 5, 5)); /* 5/s: one per 200 ms */
	assert_true(guard_rate_take(&tat, t0 + 200000, 5, 5));
	assert_false(guard_rate_take(&tat, t0 + 200000, 5, 5));
	/* idle for long: the burst is back, not more */
	uint64_t t1 = t0 + 10000000;
	for (int i = 0; i < 5; i++)
		assert_true(guard_rate_take(&tat, t1, 5, 5));
	assert_false(guard_rate_take(&tat, t1, 5, 5));
}

static void test_rate_zero_is_no_limit(void **state)
{
	_Atomic uint64_t tat = 0;
	for (int i = 0; i < 10000; i++)
		assert_true(guard_rate_take(&tat, 1, 0, 0));
}

static void test_connections_per_source_and_total(void **state)
{
	struct guard_limits l = {.max_conns = 5, .max_conns_per_ip = 2, .rate_per_ip = 0};
	struct sockaddr_in a = v4("192.0.2.1"), b = v4("192.0.2.2"), c = v4("192.0.2.3");
	init_apart(&l, (const struct sockaddr *[]){(void *)&a, (void *)&b, (void *)&c}, 3);
	uint32_t sa[2], sb[2], sc[2];
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&a, 1, &sa[0]), GUARD_OK);
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&a, 1, &sa[1]), GUARD_OK);
	uint32_t x;
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&a, 1, &x), GUARD_PER_IP);
	assert_int_equal(guard_conns_of((struct sockaddr *)&a), 2); /* a refusal holds nothing */
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&b, 1, &sb[0]), GUARD_OK);
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&b, 1, &sb[1]), GUARD_OK);
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&c, 1, &sc[0]), GUARD_OK);
	assert_int_equal(guard_conns(), 5);
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&c, 1, &sc[1]), GUARD_TOTAL);
	assert_int_equal(guard_conns(), 5);
	guard_conn_release(sa[0]);
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&c, 1, &sc[1]), GUARD_OK);
	guard_conn_release(sa[1]);
	guard_conn_release(sb[0]);
	guard_conn_release(sb[1]);
	guard_conn_release(sc[0]);
	guard_conn_release(sc[1]);
	guard_conn_release(UINT32_MAX); /* "not counted": nothing to give back */
	assert_int_equal(guard_conns(), 0);
}

static void test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4(void **state)
{
	struct guard_limits l = {.max_conns = 0, .max_conns_per_ip = 1, .rate_per_ip = 0};
	struct sockaddr_in6 a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::7");
	struct sockaddr_in6 m = v6("::ffff:192.0.2.9");
	struct sockaddr_in p = v4("192.0.2.9");
	init_apart(&l, (const struct sockaddr *[]){(void *)&a, (void *)&p}, 2);
	uint32_t s1, s2, x;
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&a, 1, &s1), GUARD_OK);
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&b, 1, &x), GUARD_PER_IP); /* same /64 */
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&p, 1, &s2), GUARD_OK);
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&m, 1, &x), GUARD_PER_IP); /* same host */
	guard_conn_release(s1);
	guard_conn_release(s2);
}

static void test_rate_per_source(void **state)
{
	struct guard_limits l = {.max_conns = 0, .max_conns_per_ip = 0, .rate_per_ip = 2};
	struct sockaddr_in a = v4("198.51.100.1"), b = v4("198.51.100.2");
	init_apart(&l, (const struct sockaddr *[]){(void *)&a, (void *)&b}, 2);
	uint32_t s[4];
	uint64_t now = 5000;
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&a, now, &s[0]), GUARD_OK);
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&a, now, &s[1]), GUARD_OK);
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&a, now, &s[2]), GUARD_RATE);
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&b, now, &s[2]), GUARD_OK); /* its own bucket */
	assert_int_equal(guard_conn_acquire((struct sockaddr *)&a, now + 500, &s[3]), GUARD_OK);
	for (int i = 0; i < 4; i++)
		guard_conn_release(s[i]);
	assert_int_equal(guard_conns(), 0);
}

static void test_verifications_in_flight_are_bounded(void **state)
{
	assert_true(guard_verify_acquire(2));
	assert_true(guard_verify_acquire(2));
	assert_false(guard_verify_acquire(2));
	assert_int_equal(guard_verify_inflight(), 2);
	guard_verify_release();
	assert_true(guard_verify_acquire(2));
	guard_verify_release();
	guard_verify_release();
	assert_int_equal(guard_verify_inflight(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_form_accepts_hex_digests_only),
		cmocka_unit_test(test_rate_allows_a_burst_then_one_per_interval),
		cmocka_unit_test(test_rate_zero_is_no_limit),
		cmocka_unit_test(test_connections_per_source_and_total),
		cmocka_unit_test(test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4),
		cmocka_unit_test(test_rate_per_source),
		cmocka_unit_test(test_verifications_in_flight_are_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
