/* tests/unit/test_shape.c — the token bucket behind link_rate,
 * link_stanza_rate and remote_rate (router/shape.c): a fresh bucket holds
 * one second's worth, refills at its rate up to the burst, and a charge
 * larger than what is left is taken whole and paid back by waiting. Time
 * is passed in, so nothing here depends on the clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include "router/shape.h"

static void test_fresh_bucket_holds_one_second(void **st)
{
	struct shape_tb b;
	(void)st;
	shape_tb_init(&b, 1000, 0, 5000);
	assert_int_equal(b.burst, 1000);
	assert_true(shape_tb_charge(&b, 999, 5000));
	assert_true(shape_tb_ready(&b, 5000));
	/* the last token: empty, not ready until time passes */
	assert_false(shape_tb_charge(&b, 1, 5000));
	assert_false(shape_tb_ready(&b, 5000));
}

static void test_refill_at_rate(void **st)
{
	struct shape_tb b;
	(void)st;
	shape_tb_init(&b, 1000, 0, 0);
	assert_false(shape_tb_charge(&b, 1000, 0));
	/* 1000/s is one token per ms */
	assert_false(shape_tb_ready(&b, 0));
	assert_true(shape_tb_ready(&b, 1));
	assert_true(shape_tb_charge(&b, 99, 100)); /* 100 accrued, 1 left */
	assert_false(shape_tb_charge(&b, 1, 100));
}

static void test_slow_rate_accrues_fractions(void **st)
{
	struct shape_tb b;
	(void)st;
	/* 3 per second: a token every 333.3 ms, polled every ms */
	shape_tb_init(&b, 3, 0, 0);
	assert_false(shape_tb_charge(&b, 3, 0));
	uint64_t t = 0;
	while (!shape_tb_ready(&b, t))
		t++;
	assert_int_equal(t, 1); /* any fraction of a token lets one stanza go */
	assert_false(shape_tb_charge(&b, 1, t));
	while (!shape_tb_ready(&b, t))
		t++;
	assert_in_range(t, 333, 335);
}

static void test_refill_stops_at_burst(void **st)
{
	struct shape_tb b;
	(void)st;
	shape_tb_init(&b, 100, 300, 0);
	assert_false(shape_tb_charge(&b, 300, 0));
	/* an hour later: still only the burst */
	assert_true(shape_tb_ready(&b, 3600 * 1000));
	assert_true(shape_tb_charge(&b, 299, 3600 * 1000));
	assert_false(shape_tb_charge(&b, 1, 3600 * 1000));
	/* a clock that does not move, or moves back, adds nothing */
	assert_false(shape_tb_ready(&b, 1000));
}

static void test_charge_beyond_burst_is_debt(void **st)
{
	struct shape_tb b;
	(void)st;
	shape_tb_init(&b, 1000, 0, 0);
	/* one stanza of three seconds' worth goes through whole ... */
	assert_false(shape_tb_charge(&b, 3000, 0));
	/* ... and the next waits until the 2000 of debt are paid */
	assert_false(shape_tb_ready(&b, 1000));
	assert_false(shape_tb_ready(&b, 2000));
	assert_true(shape_tb_ready(&b, 2001));
}

static void test_has_counts_whole_tokens(void **st)
{
	struct shape_tb b;
	(void)st;
	shape_tb_init(&b, 800, 0, 0);
	assert_false(shape_tb_charge(&b, 800, 0));
	/* an eighth of the burst (100 tokens) takes 125 ms at 800/s */
	assert_true(shape_tb_ready(&b, 2));
	assert_false(shape_tb_has(&b, 100, 124));
	assert_true(shape_tb_has(&b, 100, 125));
	assert_true(shape_tb_has(&b, 800, 10000));
	assert_false(shape_tb_has(&b, 801, 10000));
}

static void test_rate_zero_is_no_limit(void **st)
{
	struct shape_tb b;
	(void)st;
	shape_tb_init(&b, 0, 0, 0);
	for (int i = 0; i < 1000; i++)
		assert_true(shape_tb_charge(&b, 1u << 26, 0));
	assert_true(shape_tb_ready(&b, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_bucket_holds_one_second), cmocka_unit_test(test_refill_at_rate),
		cmocka_unit_test(test_slow_rate_accrues_fractions),   cmocka_unit_test(test_refill_stops_at_burst),
		cmocka_unit_test(test_charge_beyond_burst_is_debt),   cmocka_unit_test(test_has_counts_whole_tokens),
		cmocka_unit_test(test_rate_zero_is_no_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
