/* tests/unit/test_cfg_inbound.c — router.conf's inbound limits: defaults,
 * ranges, and the checks that tie them to other directives. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include "router/cfg.h"

#include "tests/unit/cfg_parse.h"

static void test_defaults(void **state)
{
	struct cfg c;
	char *errs = NULL;
	assert_int_equal(parse(&c, HUB, &errs), 0);
	assert_int_equal(c.max_connections, 50000);
	assert_int_equal(c.max_connections_per_ip, 256);
	assert_int_equal(c.connection_rate_per_ip, 64);
	assert_int_equal(c.preauth_timeout, 30); /* 3 x connect_timeout */
	assert_int_equal(c.max_preauth_bytes, 128 * 1024);
	assert_int_equal(c.max_pairs_per_stream, 1000);
	assert_int_equal(c.max_verify_per_stream, 64);
	assert_int_equal(c.max_verify_total, 4096);
	assert_int_equal(c.nproxy_from, 0);
	free(errs);
	cfg_free(&c);
}

static void test_values(void **state)
{
	struct cfg c;
	char *errs = NULL;
	int r = parse(&c,
		      "[hub]\nlisten s2s 127.0.0.1:5269 proxy_protocol\nconnect_timeout 5\n"
		      "max_connections 0\nmax_connections_per_ip 8\nconnection_rate_per_ip 0\n"
		      "preauth_timeout 1m\nmax_preauth_bytes 64k\nmax_pairs_per_stream 20\n"
		      "max_verify_per_stream 50\nmax_verify_total 100\n"
		      "proxy_from 10.0.0.0/8 192.0.2.7\nproxy_from 2001:db8::/32\n",
		      &errs);
	if (r)
		print_error("%s", errs);
	assert_int_equal(r, 0);
	assert_int_equal(c.max_connections, 0);
	assert_int_equal(c.max_connections_per_ip, 8);
	assert_int_equal(c.connection_rate_per_ip, 0);
	assert_int_equal(c.preauth_timeout, 60);
	assert_int_equal(c.max_preauth_bytes, 64 * 1024);
	assert_int_equal(c.max_pairs_per_stream, 20);
	assert_int_equal(c.max_verify_per_stream, 20); /* no more than the pairs */
	assert_int_equal(c.max_verify_total, 100);
	assert_int_equal(c.nproxy_from, 3);
	assert_int_equal(c.proxy_from[0].bits, 8);
	assert_int_equal(c.proxy_from[1].bits, 32);
	assert_int_equal(c.proxy_from[2].bits, 32);
	assert_int_equal(c.proxy_from[2].family, AF_INET6);
	free(errs);
	cfg_free(&c);
}

static void test_preauth_timeout_follows_connect_timeout(void **state)
{
	struct cfg c;
	char *errs = NULL;
	assert_int_equal(parse(&c, HUB "connect_timeout 7\n", &errs), 0);
	assert_int_equal(c.preauth_timeout, 21);
	free(errs);
	cfg_free(&c);
}

static void test_errors(void **state)
{
	expect_one_error(HUB "preauth_timeout 5\n", "preauth_timeout (5s) is shorter than connect_timeout (10s)");
	expect_one_error(HUB "preauth_timeout 0\n", "preauth_timeout: 0 is out of range");
	expect_one_error(HUB "max_preauth_bytes 8k\n", "max_preauth_bytes (8192) is less than max_stanza_size_preauth");
	expect_one_error(HUB "max_pairs_per_stream 0\n", "max_pairs_per_stream: 0 is out of range");
	expect_one_error(HUB "max_pairs_per_stream 70000\n", "out of range");
	expect_one_error(HUB "max_verify_total 0\n", "out of range");
	expect_one_error(HUB "connection_rate_per_ip fast\n", "is not a whole number");
	expect_one_error(HUB "proxy_from 10.0.0.0/8\n", "no listener has proxy_protocol");
	expect_one_error("[hub]\nlisten s2s 127.0.0.1:5269 proxy_protocol\nproxy_from 10.0.0.1/8\n",
			 "router.conf:3: proxy_from: '10.0.0.1/8' is not an address or a block");
	expect_one_error("[hub]\nlisten s2s 127.0.0.1:5269 proxy_protocol\nproxy_from lb.example\n",
			 "proxy_from: 'lb.example'");
}

/* Whole-file checks see what [hub] said even when other sections follow. */
static void test_hub_directives_survive_later_sections(void **state)
{
	struct cfg c;
	char *errs = NULL;
	char path[] = "/tmp/fedhub-cert-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	char *text;
	assert_true(asprintf(&text,
			     "[hub]\nlisten s2s 127.0.0.1:5269 tls optional\ns2s_tls optional\n"
			     "[domain a.example]\ncert %s\n",
			     path) > 0);
	assert_int_equal(parse(&c, text, &errs), 0);
	assert_int_equal(c.s2s_tls, CFG_TLS_OPTIONAL);
	free(errs);
	cfg_free(&c);
	free(text);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_preauth_timeout_follows_connect_timeout),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_hub_directives_survive_later_sections),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
