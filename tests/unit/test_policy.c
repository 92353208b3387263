/*
 * tests/unit/test_policy.c — router/policy.c: [remote] sections and the
 * remote_allow / remote_deny lists, as parsed from router.conf text.
 * Exact and suffix matching, precedence, defaults, configuration errors,
 * and tables with many thousands of entries.
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
#include "router/policy.h"

#define HUB "[hub]\nlisten s2s 127.0.0.1:5269\n"

static void load(struct cfg *c, const char *text)
{
	char *errs = NULL;
	size_t n;
	FILE *f = open_memstream(&errs, &n);
	int r = cfg_parse(c, text, "router.conf", f);
	fclose(f);
	if (r)
		fprintf(stderr, "unexpected errors:\n%.2000s\n", errs);
	free(errs);
	assert_int_equal(r, 0);
}

static int errors(const char *text, const char *want)
{
	struct cfg c;
	char *errs = NULL;
	size_t n;
	FILE *f = open_memstream(&errs, &n);
	int r = cfg_parse(&c, text, "router.conf", f);
	fclose(f);
	if (want && !strstr(errs, want)) {
		print_error("wanted an error containing \"%s\", got:\n%s", want, errs);
		r = -1;
	}
	free(errs);
	cfg_free(&c);
	return r;
}

static struct policy pol(const struct cfg *c, const char *d)
{
	return policy_lookup(c, d, strlen(d));
}

static void test_defaults_apply_without_entries(void **state)
{
	struct cfg c;
	load(&c, HUB);
	struct policy p = pol(&c, "anything.example");
	assert_true(p.allowed);
	assert_int_equal(p.auth, CFG_AUTH_DIALBACK);
	assert_int_equal(p.tls, c.s2s_tls);
	assert_false(p.tls_set);
	assert_int_equal(p.remote_line, 0);
	cfg_free(&c);
}

static void test_exact_and_suffix_matching(void **state)
{
	assert_true(policy_name_match("a.example", "a.example", 9));
	assert_false(policy_name_match("a.example", "b.a.example", 11));
	assert_true(policy_name_match("*.example", "a.example", 9));
	assert_true(policy_name_match("*.example", "b.a.example", 11));
	assert_false(policy_name_match("*.example", "example", 7));
	assert_false(policy_name_match("*.example", "badexample", 10));

	struct cfg c;
	load(&c, HUB "[remote *.partner.example]\nauth certificate\n");
	assert_int_equal(pol(&c, "xmpp.partner.example").auth, CFG_AUTH_CERTIFICATE);
	assert_int_equal(pol(&c, "a.b.partner.example").auth, CFG_AUTH_CERTIFICATE);
	/* the suffix itself, and names that merely end in the same letters */
	assert_int_equal(pol(&c, "partner.example").auth, CFG_AUTH_DIALBACK);
	assert_int_equal(pol(&c, "evilpartner.example").auth, CFG_AUTH_DIALBACK);
	assert_int_equal(pol(&c, "partner.example.evil").auth, CFG_AUTH_DIALBACK);
	cfg_free(&c);
}

static void test_auth_certificate_implies_tls_required(void **state)
{
	struct cfg c;
	load(&c, HUB "s2s_tls optional\n[remote secure.example]\nauth certificate\n");
	struct policy p = pol(&c, "secure.example");
	assert_int_equal(p.auth, CFG_AUTH_CERTIFICATE);
	assert_int_equal(p.tls, CFG_TLS_REQUIRED);
	assert_int_equal(pol(&c, "other.example").tls, CFG_TLS_OPTIONAL);
	cfg_free(&c);
}

static void test_exact_beats_suffix_and_longer_suffix_beats_shorter(void **state)
{
	struct cfg c;
	load(&c, HUB "s2s_tls optional\n"
		     "[remote *.example]\ntls off\n"
		     "[remote *.corp.example]\ntls required\n"
		     "[remote legacy.corp.example]\ntls optional\n");
	assert_int_equal(pol(&c, "a.example").tls, CFG_TLS_OFF);
	assert_int_equal(pol(&c, "a.corp.example").tls, CFG_TLS_REQUIRED);
	assert_int_equal(pol(&c, "x.y.corp.example").tls, CFG_TLS_REQUIRED);
	assert_int_equal(pol(&c, "legacy.corp.example").tls, CFG_TLS_OPTIONAL);
	assert_int_equal(pol(&c, "legacy.corp.example").remote_line, 8);
	assert_int_equal(pol(&c, "corp.example").tls, CFG_TLS_OFF); /* under *.example */
	assert_int_equal(pol(&c, "example").tls, CFG_TLS_OPTIONAL);
	cfg_free(&c);
}

static void test_section_settings_fall_back_to_the_hub(void **state)
{
	struct cfg c;
	load(&c, HUB "s2s_auth certificate\n[remote old.example]\ntls required\n");
	struct policy p = pol(&c, "old.example");
	assert_int_equal(p.auth, CFG_AUTH_CERTIFICATE); /* not given: the hub's */
	assert_true(p.tls_set);
	cfg_free(&c);
	load(&c, HUB "s2s_auth certificate\n[remote old.example]\nauth dialback\ntls optional\n");
	p = pol(&c, "old.example");
	assert_int_equal(p.auth, CFG_AUTH_DIALBACK);
	assert_int_equal(p.tls, CFG_TLS_OPTIONAL);
	assert_int_equal(pol(&c, "new.example").auth, CFG_AUTH_CERTIFICATE);
	assert_int_equal(pol(&c, "new.example").tls, CFG_TLS_REQUIRED);
	cfg_free(&c);
}

static void test_deny_list(void **state)
{
	struct cfg c;
	load(&c, HUB "remote_deny spam.example *.bad.example\n");
	assert_false(pol(&c, "spam.example").allowed);
	assert_false(pol(&c, "x.bad.example").allowed);
	assert_true(pol(&c, "bad.example").allowed);
	assert_true(pol(&c, "good.example").allowed);
	assert_true(pol(&c, "sub.spam.example").allowed);
	assert_int_equal(pol(&c, "spam.example").acl_line, 3);
	cfg_free(&c);
}

static void test_allow_list_refuses_everything_else(void **state)
{
	struct cfg c;
	load(&c, HUB "remote_allow partner.example\nremote_allow *.friends.example\n");
	assert_true(pol(&c, "partner.example").allowed);
	assert_true(pol(&c, "a.friends.example").allowed);
	assert_false(pol(&c, "friends.example").allowed);
	assert_false(pol(&c, "stranger.example").allowed);
	cfg_free(&c);
}

static void test_most_specific_list_entry_decides(void **state)
{
	struct cfg c;
	load(&c, HUB "remote_deny *.example\nremote_allow *.ok.example good.example\nremote_deny bad.ok.example\n");
	assert_false(pol(&c, "x.example").allowed);
	assert_true(pol(&c, "good.example").allowed);
	assert_true(pol(&c, "x.ok.example").allowed);
	assert_false(pol(&c, "bad.ok.example").allowed);
	assert_true(pol(&c, "sub.bad.ok.example").allowed); /* *.ok.example */
	/* an allow list exists: a name no entry matches is refused */
	assert_false(pol(&c, "elsewhere.org").allowed);
	cfg_free(&c);
}

static void test_names_are_normalised(void **state)
{
	struct cfg c;
	load(&c, HUB "remote_deny *.BÜCHER.example Spam.Example.\n[remote *.Corp.Example]\nauth certificate\n");
	assert_false(pol(&c, "shop.xn--bcher-kva.example").allowed);
	assert_false(pol(&c, "spam.example").allowed);
	assert_int_equal(pol(&c, "a.corp.example").auth, CFG_AUTH_CERTIFICATE);
	cfg_free(&c);
}

static void test_configuration_errors(void **state)
{
	assert_int_equal(errors(HUB "remote_deny x.example\nremote_allow x.example\n", "already listed at line 3"), 1);
	assert_int_equal(errors(HUB "remote_deny *.\n", "remote_deny: '*.' is not a domain name"), 1);
	assert_int_equal(errors(HUB "remote_allow a*.example\n", "not a domain name"), 1);
	assert_int_equal(errors(HUB "[remote *.x.example]\nauth maybe\n", "auth: 'maybe'"), 1);
	assert_int_equal(errors(HUB "[remote x.example]\nauth certificate\ntls optional\n", "contradicts"), 1);
	assert_int_equal(errors(HUB "s2s_auth certificate\ns2s_tls off\n", "contradicts"), 1);
	assert_int_equal(errors(HUB "[remote x.example]\n[remote X.example]\n", "duplicate section"), 1);
	assert_int_equal(errors(HUB "[domain x.example]\n[remote x.example]\n", "is served here"), 1);
	assert_int_equal(errors(HUB "[remote x.example]\nconnect 127.0.0.1:1\n", "not allowed in [remote]"), 1);
	assert_int_equal(errors(HUB "[remote *.x.example]\nauth certificate\n[route a.x.example]\nconnect 127.0.0.1:1\n"
				    "tls optional\n",
				"auth is certificate"),
			 1);
	assert_int_equal(errors(HUB "dns_allow_private maybe\n", "dns_allow_private"), 1);
	assert_int_equal(errors(HUB "s2s_auth certificate\n[remote old.example]\nauth dialback\ntls off\n", NULL), 0);
}

static void test_dns_allow_private_default_and_value(void **state)
{
	struct cfg c;
	load(&c, HUB);
	assert_false(c.dns_allow_private);
	cfg_free(&c);
	load(&c, HUB "dns_allow_private yes\n");
	assert_true(c.dns_allow_private);
	cfg_free(&c);
}

/* The hub's s2s_tls stays as written when [hub] is not the last section. */
static void test_s2s_tls_survives_later_sections(void **state)
{
	struct cfg c;
	load(&c, HUB "s2s_tls off\n[remote a.example]\ntls required\n[component c.example]\nsecret x\n");
	assert_int_equal(c.s2s_tls, CFG_TLS_OFF);
	assert_int_equal(pol(&c, "b.example").tls, CFG_TLS_OFF);
	assert_int_equal(pol(&c, "a.example").tls, CFG_TLS_REQUIRED);
	cfg_free(&c);
}

static void test_many_entries(void **state)
{
	enum { N = 20000 };
	size_t cap = (size_t)N * 128 + 256, n = 0;
	char *text = malloc(cap);
	assert_non_null(text);
	n += (size_t)snprintf(text + n, cap - n, HUB);
	for (int i = 0; i < N; i++)
		n += (size_t)snprintf(text + n, cap - n, "remote_deny d%d.example *.s%d.example\n", i, i);
	for (int i = 0; i < N; i++)
		n += (size_t)snprintf(text + n, cap - n, "[remote r%d.example]\nauth certificate\n", i);
	struct cfg c;
	load(&c, text);
	free(text);
	char d[64];
	for (int i = 0; i < N; i += 97) {
		snprintf(d, sizeof(d), "d%d.example", i);
		assert_false(pol(&c, d).allowed);
		snprintf(d, sizeof(d), "x.y.s%d.example", i);
		assert_false(pol(&c, d).allowed);
		snprintf(d, sizeof(d), "s%d.example", i);
		assert_true(pol(&c, d).allowed);
		snprintf(d, sizeof(d), "r%d.example", i);
		assert_int_equal(pol(&c, d).auth, CFG_AUTH_CERTIFICATE);
		snprintf(d, sizeof(d), "q%d.example", i);
		struct policy p = pol(&c, d);
		assert_true(p.allowed);
		assert_int_equal(p.auth, CFG_AUTH_DIALBACK);
	}
	cfg_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_apply_without_entries),
		cmocka_unit_test(test_exact_and_suffix_matching),
		cmocka_unit_test(test_auth_certificate_implies_tls_required),
		cmocka_unit_test(test_exact_beats_suffix_and_longer_suffix_beats_shorter),
		cmocka_unit_test(test_section_settings_fall_back_to_the_hub),
		cmocka_unit_test(test_deny_list),
		cmocka_unit_test(test_allow_list_refuses_everything_else),
		cmocka_unit_test(test_most_specific_list_entry_decides),
		cmocka_unit_test(test_names_are_normalised),
		cmocka_unit_test(test_configuration_errors),
		cmocka_unit_test(test_dns_allow_private_default_and_value),
		cmocka_unit_test(test_s2s_tls_survives_later_sections),
		cmocka_unit_test(test_many_entries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
