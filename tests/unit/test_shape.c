/* tests/unit/test_shape.c — the token bucket behind link_rate,
 * link_stanza_rate and remote_rate (router/shape.c): a fresh bucket holds
 * one second's worth, refills at its rate up to the burst, and a charge
 * larger than what is left is taken whole and paid back by waiting. Time
 * is passed in, so nothing here depends on the clock. Then the table of
 * remote domains that links bind to (remote_rate): growth, sharing,
 * deletion. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "router/cfg.h"
#include "router/hub.h"
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

/* 6000 links over 2500 remote domains: the table grows from 64 buckets
 * past 2048 (chains collide on the way), every link of a domain shares its
 * bucket, and a domain goes when its last link does: bound again it is new. */
static void test_remote_domains_table_grows_shares_and_deletes(void **st)
{
	(void)st;
	static struct cfg c;
	memset(&c, 0, sizeof(c));
	c.remote_rate = 1000;
	hub_cfg_live = &c;
	enum { NL = 6000, ND = 2500 };
	static struct shape_link *l[NL];
	char name[64];
	for (int i = 0; i < NL; i++) {
		l[i] = shape_link_new(NULL);
		assert_non_null(l[i]);
		assert_true(shape_link_unbound(l[i]));
		snprintf(name, sizeof(name), "r%d.example", i % ND);
		shape_link_bind(l[i], name);
		assert_false(shape_link_unbound(l[i]));
		shape_link_bind(l[i], "other.example"); /* the first bind wins */
	}
	for (int i = 0; i < NL; i++) /* domains i % ND < 1000 have 3 links, the others 2 */
		assert_int_equal(shape_dom_links(l[i]), i % ND < NL - 2 * ND ? 3 : 2);
	/* drop the first link of every domain */
	for (int i = 0; i < ND; i++) {
		shape_link_free(l[i]);
		l[i] = NULL;
	}
	for (int i = ND; i < NL; i++)
		assert_int_equal(shape_dom_links(l[i]), i % ND < NL - 2 * ND ? 2 : 1);
	/* the third links go: every domain is down to one link */
	for (int i = 2 * ND; i < NL; i++) {
		shape_link_free(l[i]);
		l[i] = NULL;
	}
	for (int i = ND; i < 2 * ND; i++)
		assert_int_equal(shape_dom_links(l[i]), 1);
	/* each last link goes (its domain with it) and a new one binds: a new entry */
	for (int i = ND; i < 2 * ND; i++) {
		shape_link_free(l[i]);
		l[i] = shape_link_new(NULL);
		snprintf(name, sizeof(name), "r%d.example", i % ND);
		shape_link_bind(l[i], name);
		assert_int_equal(shape_dom_links(l[i]), 1);
	}
	for (int i = ND; i < 2 * ND; i++)
		shape_link_free(l[i]);
	hub_cfg_live = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_bucket_holds_one_second),
		cmocka_unit_test(test_refill_at_rate),
		cmocka_unit_test(test_slow_rate_accrues_fractions),
		cmocka_unit_test(test_refill_stops_at_burst),
		cmocka_unit_test(test_charge_beyond_burst_is_debt),
		cmocka_unit_test(test_has_counts_whole_tokens),
		cmocka_unit_test(test_rate_zero_is_no_limit),
		cmocka_unit_test(test_remote_domains_table_grows_shares_and_deletes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
