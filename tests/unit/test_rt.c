/*
 * tests/unit/test_rt.c — outbound-link claims in the routing table
 * (router/rt.c): the first worker to claim a remote domain owns it, every
 * later claim (the lock-free path: the entry is there) names that owner, and
 * a domain with a route of another kind is never claimed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <urcu-qsbr.h>

#include "router/rt.h"

static int claim(const char *d, uint16_t owner)
{
	return rt_s2s_claim(d, strlen(d), owner);
}

static int setup(void **state)
{
	(void)state;
	rcu_register_thread();
	assert_int_equal(rt_init(), 0);
	assert_int_equal(rt_set_static("comp.example", RT_COMPONENT), 0);
	return 0;
}

static void test_first_claim_owns_the_remote(void **state)
{
	(void)state;
	assert_int_equal(claim("a.remote", 1), 1);
	const struct rt_route *r = rt_lookup("a.remote", 8);
	assert_non_null(r);
	assert_int_equal(r->kind, RT_S2S_OUT);
	assert_int_equal(r->owner, 1);
}

static void test_later_claims_name_the_owner(void **state)
{
	(void)state;
	assert_int_equal(claim("b.remote", 0), 0);
	assert_int_equal(claim("b.remote", 1), 0);
	assert_int_equal(claim("b.remote", 0), 0);
	assert_int_equal(rt_lookup("b.remote", 8)->owner, 0);
}

static void test_other_kinds_are_not_claimed(void **state)
{
	(void)state;
	assert_int_equal(claim("comp.example", 0), -EEXIST);
	assert_int_equal(rt_lookup("comp.example", 12)->kind, RT_COMPONENT);
}

static void test_released_remote_can_be_claimed_again(void **state)
{
	(void)state;
	assert_int_equal(claim("c.remote", 0), 0);
	rt_s2s_release("c.remote", 1); /* not the owner: nothing happens */
	assert_int_equal(claim("c.remote", 1), 0);
	rt_s2s_release("c.remote", 0);
	assert_null(rt_lookup("c.remote", 8));
	assert_int_equal(claim("c.remote", 1), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_claim_owns_the_remote),
		cmocka_unit_test(test_later_claims_name_the_owner),
		cmocka_unit_test(test_other_kinds_are_not_claimed),
		cmocka_unit_test(test_released_remote_can_be_claimed_again),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
