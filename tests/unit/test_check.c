/*
 * tests/unit/test_check.c — router/check.c on parsed configurations: which
 * listener layouts overlap, which do not, and the message naming both.
 * (Certificates, keys and CA files are covered with real files made by
 * openssl in tests/integration/t_config_check.sh.) The addresses are on
 * loopback: check_config probe-binds them, and a port in use is not an
 * error there.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "router/cfg.h"
#include "router/check.h"

/* Parse `text` (it must be valid), run check_config; returns the error
 * count and what was printed in *out (free it). */
static int check(const char *text, char **out)
{
	struct cfg c;
	size_t n;
	FILE *f = open_memstream(out, &n);

	assert_non_null(f);
	assert_int_equal(cfg_parse(&c, text, "t.conf", stderr), 0);
	int r = check_config(&c, NULL, f);
	fclose(f);
	cfg_free(&c);
	return r;
}

static void expect_overlap(const char *listeners, const char *want)
{
	char text[512], *out = NULL;

	snprintf(text, sizeof(text), "[hub]\n%s", listeners);
	int r = check(text, &out);
	if (r != 1 || !strstr(out, want))
		fail_msg("want one error with \"%s\", got %d: %s", want, r, out);
	free(out);
}

static void expect_clean(const char *listeners)
{
	char text[512], *out = NULL;

	snprintf(text, sizeof(text), "[hub]\n%s", listeners);
	int r = check(text, &out);
	if (r != 0)
		fail_msg("want no error, got %d: %s", r, out);
	free(out);
}

static void test_v6_wildcard_beside_v6_specific(void **state)
{
	expect_overlap("listen s2s [::1]:26901 tls optional\nlisten component [::]:26901\n",
		       "listen component [::]:26901 overlaps listen s2s [::1]:26901 (line 2)");
}

static void test_v4_wildcard_beside_specific(void **state)
{
	expect_overlap("listen s2s 127.0.0.1:26902 tls optional\nlisten component 0.0.0.0:26902\n",
		       "listen component 0.0.0.0:26902 overlaps listen s2s 127.0.0.1:26902 (line 2)");
}

static void test_http_on_a_listener_port(void **state)
{
	expect_overlap("listen component 127.0.0.1:26903\nhttp 127.0.0.1:26903\n",
		       "http 127.0.0.1:26903 overlaps listen component 127.0.0.1:26903 (line 2)");
}

static void test_v6_wildcard_beside_other_kind_on_v4(void **state)
{
	expect_overlap("listen component 127.0.0.1:26904\nlisten s2s [::]:26904 tls optional\n",
		       "listen s2s [::]:26904 overlaps listen component 127.0.0.1:26904 (line 2)");
}

static void test_v6_wildcard_beside_v4_with_other_options(void **state)
{
	expect_overlap("listen s2s 0.0.0.0:26905 tls optional\nlisten s2s [::]:26905 tls optional proxy_protocol\n",
		       "overlaps listen s2s 0.0.0.0:26905");
}

static void test_v4_mapped_counts_as_v4(void **state)
{
	expect_overlap("listen s2s 127.0.0.1:26906 tls optional\nlisten component [::ffff:127.0.0.1]:26906\n",
		       "overlaps listen s2s 127.0.0.1:26906 (line 2)");
}

static void test_dual_stack_pair_is_clean(void **state)
{
	expect_clean("listen s2s 0.0.0.0:26907 tls optional\nlisten s2s [::]:26907 tls optional\n");
}

static void test_distinct_ports_and_addresses_are_clean(void **state)
{
	expect_clean("listen s2s 127.0.0.1:26908 tls optional\nlisten component 127.0.0.1:26909\n"
		     "listen component 127.0.0.2:26908\nhttp 127.0.0.1:26910\nlisten s2s [::1]:26909 tls optional\n");
}

static void test_embedded_default_is_clean(void **state)
{
	struct cfg c;
	char *out = NULL;
	size_t n;
	FILE *f = open_memstream(&out, &n);

	assert_int_equal(cfg_load_default(&c, stderr), 0);
	int r = check_config(&c, NULL, f);
	fclose(f);
	if (r != 0)
		fail_msg("the embedded default: %s", out);
	free(out);
	cfg_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v6_wildcard_beside_v6_specific),
		cmocka_unit_test(test_v4_wildcard_beside_specific),
		cmocka_unit_test(test_http_on_a_listener_port),
		cmocka_unit_test(test_v6_wildcard_beside_other_kind_on_v4),
		cmocka_unit_test(test_v6_wildcard_beside_v4_with_other_options),
		cmocka_unit_test(test_v4_mapped_counts_as_v4),
		cmocka_unit_test(test_dual_stack_pair_is_clean),
		cmocka_unit_test(test_distinct_ports_and_addresses_are_clean),
		cmocka_unit_test(test_embedded_default_is_clean),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
