/*
 * tests/unit/test_route.c — the component `from` rule (router/route.c):
 * a component sends from its own domain and from subdomains of it that
 * nothing else is configured for, looked up in the real routing table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <urcu-qsbr.h>

#include "router/hub.h"
#include "router/route.h"

static bool allowed(const char *from, const char *base)
{
	return comp_from_allowed(from, strlen(from), base, strlen(base));
}

static int setup(void **state)
{
	(void)state;
	rcu_register_thread();
	assert_int_equal(rt_init(), 0);
	assert_int_equal(rt_set_static("comp.example", RT_COMPONENT), 0);
	assert_int_equal(rt_set_static("sub.comp.example", RT_COMPONENT), 0);
	assert_int_equal(rt_set_static("hosted.comp.example", RT_HOSTED), 0);
	assert_int_equal(rt_set_static("hub.comp.example", RT_HUB), 0);
	assert_int_equal(rt_set_static("other.example", RT_COMPONENT), 0);
	return 0;
}

static void test_component_sends_from_its_domain(void **state)
{
	(void)state;
	assert_true(allowed("comp.example", "comp.example"));
}

static void test_component_sends_from_unconfigured_subdomains(void **state)
{
	(void)state;
	assert_true(allowed("free.comp.example", "comp.example"));
	assert_true(allowed("a.b.free.comp.example", "comp.example"));
}

static void test_component_refused_configured_subdomains(void **state)
{
	(void)state;
	/* a sibling [component], below it, a [domain], the hub's domain */
	assert_false(allowed("sub.comp.example", "comp.example"));
	assert_false(allowed("x.sub.comp.example", "comp.example"));
	assert_false(allowed("a.b.sub.comp.example", "comp.example"));
	assert_false(allowed("hosted.comp.example", "comp.example"));
	assert_false(allowed("x.hosted.comp.example", "comp.example"));
	assert_false(allowed("hub.comp.example", "comp.example"));
	/* the sibling itself may send from below it */
	assert_true(allowed("x.sub.comp.example", "sub.comp.example"));
}

static void test_component_refused_foreign_domains(void **state)
{
	(void)state;
	assert_false(allowed("other.example", "comp.example"));
	assert_false(allowed("xcomp.example", "comp.example"));     /* not a label boundary */
	assert_false(allowed("comp.example.evil", "comp.example")); /* a suffix, not a subdomain */
	assert_false(allowed("example", "comp.example"));
	assert_false(allowed(".comp.example", "comp.example"));    /* an empty label */
	assert_false(allowed("comp.example", "sub.comp.example")); /* the parent of a component */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_component_sends_from_its_domain),
		cmocka_unit_test(test_component_sends_from_unconfigured_subdomains),
		cmocka_unit_test(test_component_refused_configured_subdomains),
		cmocka_unit_test(test_component_refused_foreign_domains),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
