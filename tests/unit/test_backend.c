/*
 * tests/unit/test_backend.c — [backend NAME] sections (router/cfg_backend.c)
 * and the address rules for streams backends open to the hub
 * (router/backend_in.c): which sources are a backend's, which domains a
 * stream from them may speak for, where a verification of a backend's
 * domain goes, which TLS the internal links use.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include "router/cfg.h"
#include "router/hub.h"
#include "router/backend.h"

#define HUB "[hub]\nlisten s2s 127.0.0.1:5269\n"

static int parse(struct cfg *c, const char *text, char **errs)
{
	size_t n;
	FILE *f = open_memstream(errs, &n);
	assert_non_null(f);
	int r = cfg_parse(c, text, "router.conf", f);
	fclose(f);
	return r;
}

static void expect_error(const char *text, const char *want)
{
	struct cfg c;
	char *errs = NULL;
	int r = parse(&c, text, &errs);
	if (r < 1 || !strstr(errs, want))
		print_error("config:\n%s\nwanted an error containing \"%s\", got %d:\n%s", text, want, r, errs);
	assert_true(r >= 1);
	assert_non_null(strstr(errs, want));
	free(errs);
	cfg_free(&c);
}

static void expect_ok(struct cfg *c, const char *text)
{
	char *errs = NULL;
	int r = parse(c, text, &errs);
	if (r)
		print_error("config:\n%s\nunexpected errors:\n%s", text, errs);
	assert_int_equal(r, 0);
	free(errs);
}

static struct sockaddr_storage v4(const char *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *a = (struct sockaddr_in *)&ss;
	a->sin_family = AF_INET;
	a->sin_port = htons(40000);
	assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static const char two_backends[] = HUB "[backend pros]\n"
				       "domain a.example B.example\n"
				       "domains c.example\n"
				       "connect 10.0.0.5:5269\n"
				       "connect 10.0.0.6\n"
				       "tls off\n"
				       "[backend ej]\n"
				       "domain d.example\n"
				       "connect 10.1.0.7:15269\n"
				       "allow_from 10.2.0.0/16 192.0.2.1\n"
				       "tls required\n"
				       "[domain d.example]\n";

static void test_backend_section_is_stored(void **state)
{
	struct cfg c;
	expect_ok(&c, two_backends);
	assert_int_equal(c.nbackends, 2);
	assert_int_equal(c.nbdoms, 4);
	const struct cfg_backend *p = &c.backends[0], *e = &c.backends[1];
	assert_string_equal(p->name, "pros");
	assert_int_equal(p->ndomains, 3);
	assert_int_equal(p->nconnect, 2);
	assert_int_equal(cfg_addr_port(&p->connect[1]), 5269); /* the default port */
	assert_int_equal(p->tls, CFG_TLS_OFF);
	assert_int_equal(e->tls, CFG_TLS_REQUIRED);
	/* names are normalised; each domain finds its backend in one probe */
	assert_ptr_equal(cfg_backend_of(&c, "b.example"), p);
	assert_ptr_equal(cfg_backend_of(&c, "c.example"), p);
	assert_ptr_equal(cfg_backend_of(&c, "d.example"), e);
	assert_null(cfg_backend_of(&c, "B.example"));
	assert_null(cfg_backend_of(&c, "x.example"));
	cfg_free(&c);
}

static void test_backend_tls_defaults_to_optional(void **state)
{
	struct cfg c;
	expect_ok(&c, HUB "[backend x]\ndomain a.example\nconnect 10.0.0.5\n");
	assert_int_equal(c.backends[0].tls, CFG_TLS_OPTIONAL);
	cfg_free(&c);
}

static void test_allow_from_defaults_to_connect_addresses(void **state)
{
	struct cfg c;
	expect_ok(&c, two_backends);
	struct sockaddr_storage a5 = v4("10.0.0.5"), a6 = v4("10.0.0.6"), a7 = v4("10.0.0.7");
	assert_true(cfg_backend_allows(&c.backends[0], SA(a5)));
	assert_true(cfg_backend_allows(&c.backends[0], SA(a6)));
	assert_false(cfg_backend_allows(&c.backends[0], SA(a7)));
	/* given: only what it lists, not the connect address */
	struct sockaddr_storage in = v4("10.2.200.1"), gw = v4("192.0.2.1"), conn = v4("10.1.0.7");
	assert_true(cfg_backend_allows(&c.backends[1], SA(in)));
	assert_true(cfg_backend_allows(&c.backends[1], SA(gw)));
	assert_false(cfg_backend_allows(&c.backends[1], SA(conn)));
	cfg_free(&c);
}

static void test_backend_config_errors(void **state)
{
	expect_error(HUB "[backend a]\ndomain x.example\nconnect 10.0.0.1\n[backend b]\ndomain x.example\n"
			 "connect 10.0.0.2\n",
		     "router.conf:7: domain x.example: already served by a backend (line 4)");
	expect_error(HUB "[component x.example]\nsecret s\n[backend a]\ndomain x.example\nconnect 10.0.0.1\n",
		     "x.example is a [component]");
	expect_error(HUB "[backend a]\ndomain x.example\nconnect 10.0.0.1\n[component x.example]\nsecret s\n",
		     "x.example is a [component]");
	expect_error(HUB "[route x.example]\nconnect 10.0.0.9\n[backend a]\ndomain x.example\nconnect 10.0.0.1\n",
		     "x.example has a [route]");
	expect_error(HUB "[remote x.example]\ntls required\n[backend a]\ndomain x.example\nconnect 10.0.0.1\n",
		     "x.example has a [remote]");
	expect_error(HUB "[backend a]\ndomain localhost\nconnect 10.0.0.1\n", "localhost is the hub's own domain");
	expect_error(HUB "[backend a]\ndomain x.example\n", "[backend a]: missing required 'connect'");
	expect_error(HUB "[backend a]\nconnect 10.0.0.1\n", "[backend a]: no 'domain'");
	expect_error(HUB "[backend a]\ndomain x.example\nconnect 10.0.0.1\n[backend a]\ndomain y.example\n"
			 "connect 10.0.0.1\n",
		     "duplicate section [backend a]");
	expect_error(HUB "[backend a b]\n", "[backend NAME] needs exactly one name");
	expect_error(HUB "[backend a/b]\ndomain x.example\nconnect 10.0.0.1\n", "a name is 1 to 63 letters");
	expect_error(HUB "[backend a]\ndomain x.example\nconnect 10.0.0.1\ntls maybe\n", "tls: 'maybe'");
	expect_error(HUB "[backend a]\ndomain x.example\nconnect 10.0.0.1\nallow_from 10.0.0.1/8\n",
		     "allow_from: '10.0.0.1/8'");
	expect_error(HUB "[backend a]\ndomain x..example\nconnect 10.0.0.1\n", "not a valid domain name");
	expect_error(HUB "[backend a]\ndomain x.example\nconnect host.example\n", "connect: bad address");
	/* [hub] keeps its single `domain` */
	expect_error(HUB "domain a.example\ndomain b.example\n", "duplicate 'domain'");
	expect_error(HUB "domain a.example b.example\n", "'domain' takes 1 value in [hub]");
	expect_error(HUB "[route r.example]\nallow_from 10.0.0.1\n", "'allow_from' is not allowed in [route]");
}

static void test_backend_domain_may_have_a_domain_section(void **state)
{
	struct cfg c;
	expect_ok(&c, HUB "[domain a.example]\n[backend x]\ndomain a.example\nconnect 10.0.0.5\n");
	assert_non_null(cfg_backend_of(&c, "a.example"));
	cfg_free(&c);
}

static void test_many_domains_found(void **state)
{
	char *text = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&text, &n);
	fprintf(f, HUB);
	for (int b = 0; b < 4; b++) {
		fprintf(f, "[backend b%d]\nconnect 10.0.0.%d\n", b, b + 1);
		for (int i = 0; i < 500; i++)
			fprintf(f, "domain d%d-%d.example\n", b, i);
	}
	fclose(f);
	struct cfg c;
	expect_ok(&c, text);
	assert_int_equal(c.nbdoms, 2000);
	for (int b = 0; b < 4; b++)
		for (int i = 0; i < 500; i += 37) {
			char d[64];
			snprintf(d, sizeof(d), "d%d-%d.example", b, i);
			assert_ptr_equal(cfg_backend_of(&c, d), &c.backends[b]);
		}
	cfg_free(&c);
	free(text);
}

/* ---- the address rules (backend_in.c), on the live configuration ---- */

static struct cfg live;

static int live_setup(void **state)
{
	char *errs = NULL;
	int r = parse(&live, two_backends, &errs);
	free(errs);
	hub_cfg_live = &live;
	return r;
}

static int live_teardown(void **state)
{
	hub_cfg_live = NULL;
	cfg_free(&live);
	return 0;
}

static void test_backend_sources(void **state)
{
	struct sockaddr_storage a5 = v4("10.0.0.5"), in = v4("10.2.3.4"), out = v4("203.0.113.9");
	assert_true(backend_source(SA(a5)));
	assert_true(backend_source(SA(in)));
	assert_false(backend_source(SA(out)));
}

static void test_a_stream_speaks_only_for_its_backends_domains(void **state)
{
	struct sockaddr_storage a5 = v4("10.0.0.5"), in = v4("10.2.3.4"), out = v4("203.0.113.9");
	assert_true(backend_claim_ok("a.example", SA(a5)));
	assert_true(backend_claim_ok("c.example", SA(a5)));
	/* another backend's domain, from this backend's address */
	assert_false(backend_claim_ok("d.example", SA(a5)));
	assert_true(backend_claim_ok("d.example", SA(in)));
	assert_false(backend_claim_ok("a.example", SA(in)));
	/* a domain of no backend, and any domain from elsewhere */
	assert_false(backend_claim_ok("remote.example", SA(a5)));
	assert_false(backend_claim_ok("a.example", SA(out)));
	assert_false(backend_claim_ok("d.example", SA(out)));
}

static void test_verification_of_a_backend_domain_goes_to_the_backend(void **state)
{
	struct dns_target t[DNS_MAX_TARGETS];
	int nt = -1;
	assert_true(backend_targets("b.example", t, &nt));
	assert_int_equal(nt, 2);
	char ip[INET_ADDRSTRLEN];
	const struct sockaddr_in *a = (const struct sockaddr_in *)&t[0].ss;
	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
	assert_string_equal(ip, "10.0.0.5");
	assert_int_equal(ntohs(a->sin_port), 5269);
	assert_false(t[0].tls);
	assert_true(backend_targets("d.example", t, &nt));
	assert_int_equal(nt, 1);
	assert_int_equal(ntohs(((const struct sockaddr_in *)&t[0].ss)->sin_port), 15269);
	assert_false(backend_targets("remote.example", t, &nt));
}

static void test_internal_link_tls_policy(void **state)
{
	/* without any certificate (hub_tls NULL) TLS cannot be offered:
	 * optional and off are off, required stays required (and fails) */
	assert_null(hub_tls_live);
	assert_int_equal(backend_tls_policy("a.example"), CFG_TLS_OFF);
	assert_int_equal(backend_tls_policy("d.example"), CFG_TLS_REQUIRED);
	assert_int_equal(backend_tls_policy("remote.example"), -1);
}

int main(void)
{
	const struct CMUnitTest cfg_tests[] = {
		cmocka_unit_test(test_backend_section_is_stored),
		cmocka_unit_test(test_backend_tls_defaults_to_optional),
		cmocka_unit_test(test_allow_from_defaults_to_connect_addresses),
		cmocka_unit_test(test_backend_config_errors),
		cmocka_unit_test(test_backend_domain_may_have_a_domain_section),
		cmocka_unit_test(test_many_domains_found),
	};
	const struct CMUnitTest rule_tests[] = {
		cmocka_unit_test(test_backend_sources),
		cmocka_unit_test(test_a_stream_speaks_only_for_its_backends_domains),
		cmocka_unit_test(test_verification_of_a_backend_domain_goes_to_the_backend),
		cmocka_unit_test(test_internal_link_tls_policy),
	};
	int f = cmocka_run_group_tests_name("backend config", cfg_tests, NULL, NULL);
	return f + cmocka_run_group_tests_name("backend address rules", rule_tests, live_setup, live_teardown);
}
