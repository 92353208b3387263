/*
 * tests/unit/test_cfg.c — router.conf parsing: the shipped example, every
 * kind of error (with its line), addresses, domain normalisation, defaults.
 * Runs from the repository root (tests/run.sh does), where router.conf is.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include "router/cfg.h"

#include "tests/unit/cfg_parse.h"

/* A temporary file with `content`; returns its path (free + unlink it). */
static char *tmpfile_with(const char *content)
{
	char *path = strdup("/tmp/fedhub-test-cfg-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
	return path;
}

static void rmtmp(char *path)
{
	unlink(path);
	free(path);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s = NULL;
	size_t cap = 0;

	assert_non_null(f);
	assert_true(getdelim(&s, &cap, 0, f) > 0);
	fclose(f);
	return s;
}

/* ---- the shipped files ------------------------------------------------- */

static void test_shipped_router_conf_has_no_errors(void **state)
{
	struct cfg c;
	int r = cfg_load(&c, "router.conf", stderr);

	assert_int_equal(r, 0);
	/* It must run out of the box: loopback only. */
	assert_true(c.nlisten >= 1);
	for (int i = 0; i < c.nlisten; i++) {
		char host[64];
		assert_int_equal(cfg_addr_host(&c.listen[i].addr, host, sizeof(host)), 0);
		assert_true(!strcmp(host, "127.0.0.1") || !strcmp(host, "::1"));
	}
	assert_int_equal(cfg_addr_port(&c.http), 5280);
	cfg_free(&c);
}

/* A directive name appears as the first word of a line, commented out or not. */
static bool documented(const char *text, const char *word, bool section)
{
	size_t n = strlen(word);

	for (const char *l = text; l; l = strchr(l, '\n')) {
		if (*l == '\n')
			l++;
		if (*l == '#')
			l++;
		if (section) {
			if (*l == '[' && !strncmp(l + 1, word, n) && (l[n + 1] == ']' || l[n + 1] == ' '))
				return true;
		} else if (!strncmp(l, word, n) && l[n] == ' ') {
			return true;
		}
	}
	return false;
}

static void test_router_conf_documents_every_directive(void **state)
{
	char *text = slurp("router.conf");
	int n = 0;

	for (const char *const *d = cfg_directive_names; *d; d++, n++) {
		if (!documented(text, *d, false))
			print_error("directive '%s' is not in router.conf\n", *d);
		assert_true(documented(text, *d, false));
	}
	assert_true(n >= 25);
	for (const char *const *s = cfg_section_names; *s; s++) {
		if (!documented(text, *s, true))
			print_error("section [%s] is not in router.conf\n", *s);
		assert_true(documented(text, *s, true));
	}
	free(text);
}

/*
 * Each commented-out example ("#name value") in router.conf must be valid:
 * it is put, uncommented, into a minimal file under the section it is
 * documented in, with what that section requires, and parsed.
 */
static void test_router_conf_examples_are_valid(void **state)
{
	char *text = slurp("router.conf");
	char *pem = tmpfile_with("not really PEM; only readability is checked at load\n");
	char *secret = tmpfile_with("0123456789abcdef0123456789abcdef\n");
	char sect[128] = "";
	int checked = 0;

	for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
		char *body = l[0] == '#' ? l + 1 : l;
		char name[64], value[256] = "", line[512], *conf;
		if (body[0] == '[') {
			snprintf(sect, sizeof(sect), "%s", body);
			continue;
		}
		if (l[0] != '#' || sscanf(body, "%63[a-z_] %255[^\n]", name, value) != 2)
			continue;
		/* Files must exist when the config is loaded. */
		if (!strcmp(name, "cert") || !strcmp(name, "key") || !strcmp(name, "ca_file"))
			snprintf(line, sizeof(line), "%s %s\n", name, pem);
		else if (!strcmp(name, "node_tls"))
			snprintf(line, sizeof(line), "%s %s %s %s\n", name, pem, pem, pem);
		else if (!strcmp(name, "dialback_secret_file") || !strcmp(name, "cluster_secret_file"))
			snprintf(line, sizeof(line), "%s %s\n", name, secret);
		else if (!strcmp(name, "proxy_from")) /* only with a listener that reads the header */
			snprintf(line, sizeof(line), "%s\nlisten s2s 127.0.0.1:5270 proxy_protocol\n", body);
		else
			snprintf(line, sizeof(line), "%s\n", body);
		char extra[256] = "";
		if (!strcmp(name, "key")) /* a key needs its cert */
			snprintf(extra, sizeof(extra), "cert %s\n", pem);
		else if (!strncmp(sect, "[component", 10) && strcmp(name, "secret"))
			strcpy(extra, "secret s\n");
		else if (!strncmp(sect, "[route", 6) && strcmp(name, "connect"))
			strcpy(extra, "connect 127.0.0.1:15269\n");
		else if (!strncmp(sect, "[backend", 8)) /* a backend needs a domain and a connect */
			snprintf(extra, sizeof(extra), "%s%s",
				 strcmp(name, "connect") ? "connect 127.0.0.1:15269\n" : "",
				 strncmp(name, "domain", 6) ? "domain backend.example\n" : "");
		else if (!strcmp(sect, "[cluster]")) /* what the section needs besides the line */
			snprintf(extra, sizeof(extra), "%s%s%s",
				 strcmp(name, "redis") && strcmp(name, "sentinel") ? "redis 127.0.0.1:6379\n" : "",
				 strcmp(name, "node_listen") ? "node_listen 127.0.0.1:27010\n" : "",
				 strcmp(name, "cluster_secret_file") ? "" : "");
		if (!strcmp(sect, "[cluster]") && strcmp(name, "cluster_secret_file"))
			snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), "cluster_secret_file %s\n", secret);
		bool hub = !strcmp(sect, "[hub]");
		assert_true(asprintf(&conf,
				     "[hub]\nlisten s2s 127.0.0.1:5269\n%s"
				     "[domain base.example]\ncert %s\n"
				     "%s\n%s%s",
				     hub ? line : "", pem, hub ? "" : sect, extra, hub ? "" : line) > 0);
		struct cfg c;
		expect_ok(&c, conf);
		cfg_free(&c);
		free(conf);
		checked++;
	}
	assert_true(checked >= 20);
	rmtmp(pem);
	rmtmp(secret);
	free(text);
}

/* ---- defaults ---------------------------------------------------------- */

static void test_builtin_default_config(void **state)
{
	struct cfg c;

	assert_int_equal(cfg_load_default(&c, stderr), 0);
	assert_int_equal(c.workers, 0);
	assert_string_equal(c.hub_domain, "localhost");
	assert_int_equal(c.nlisten, 2);
	assert_int_equal(c.listen[0].kind, CFG_LISTEN_S2S);
	assert_int_equal(cfg_addr_port(&c.listen[0].addr), 5269);
	assert_int_equal(c.listen[1].kind, CFG_LISTEN_COMPONENT);
	assert_int_equal(cfg_addr_port(&c.listen[1].addr), 5347);
	assert_int_equal(cfg_addr_port(&c.http), 5280);
	assert_int_equal(c.ndomains, 1);
	assert_string_equal(c.domains[0].name, "localhost");
	assert_string_equal(c.domains[0].cert, "");
	assert_int_equal(c.ncomponents, 1);
	assert_string_equal(c.components[0].name, "echo.localhost");
	assert_string_equal(c.components[0].secret, "secret");
	cfg_free(&c);
}

static void test_defaults_for_absent_directives(void **state)
{
	struct cfg c;

	expect_ok(&c, HUB);
	assert_int_equal(c.workers, 0);
	assert_string_equal(c.hub_domain, "localhost");
	assert_int_equal(c.log_level, 2);
	assert_int_equal(c.max_stanza_size, 256 * 1024);
	assert_int_equal(c.max_stanza_size_preauth, 16 * 1024);
	assert_int_equal(c.max_depth, 32);
	assert_int_equal(c.max_attrs, 64);
	assert_int_equal(c.max_name, 256);
	assert_int_equal(c.link_queue_max, 1000);
	assert_int_equal(c.send_queue_max, 4 * 1024 * 1024);
	assert_int_equal(c.idle_timeout, 600);
	assert_int_equal(c.keepalive_interval, 60);
	assert_int_equal(c.connect_timeout, 10);
	assert_int_equal(c.retry_min, 2);
	assert_int_equal(c.s2s_tls, CFG_TLS_OPTIONAL);
	assert_int_equal(c.listen[0].tls, CFG_TLS_OPTIONAL);
	assert_false(c.listen[0].proxy_protocol);
	assert_int_equal(c.http.len, 0);
	assert_int_equal(c.dns_server.len, 0);
	assert_string_equal(c.ca_file, "");
	cfg_free(&c);
}

static void test_every_hub_value_is_stored(void **state)
{
	struct cfg c;
	char *ca = tmpfile_with("x\n");
	char *conf;

	assert_true(asprintf(&conf,
			     HUB "workers 3\n"
				 "domain Hub.Example\n"
				 "http [::1]:8080\n"
				 "log_level debug\n"
				 "max_stanza_size 1m\n"
				 "max_stanza_size_preauth 8k\n"
				 "max_depth 10\n"
				 "max_attrs 20\n"
				 "max_name 100\n"
				 "link_queue_max 5\n"
				 "send_queue_max 64k\n"
				 "idle_timeout 2h\n"
				 "keepalive_interval 10m\n"
				 "connect_timeout 30s\n"
				 "retry_min 1\n"
				 "dns_server 127.0.0.53\n"
				 "ca_file %s\n"
				 "s2s_tls required\n",
			     ca) > 0);
	expect_ok(&c, conf);
	assert_int_equal(c.workers, 3);
	assert_string_equal(c.hub_domain, "hub.example");
	assert_int_equal(c.http.ss.ss_family, AF_INET6);
	assert_int_equal(cfg_addr_port(&c.http), 8080);
	assert_int_equal(c.log_level, 3);
	assert_int_equal(c.max_stanza_size, 1024 * 1024);
	assert_int_equal(c.max_stanza_size_preauth, 8 * 1024);
	assert_int_equal(c.max_depth, 10);
	assert_int_equal(c.max_attrs, 20);
	assert_int_equal(c.max_name, 100);
	assert_int_equal(c.link_queue_max, 5);
	assert_int_equal(c.send_queue_max, 64 * 1024);
	assert_int_equal(c.idle_timeout, 7200);
	assert_int_equal(c.keepalive_interval, 600);
	assert_int_equal(c.connect_timeout, 30);
	assert_int_equal(c.retry_min, 1);
	assert_int_equal(cfg_addr_port(&c.dns_server), 53);
	assert_string_equal(c.ca_file, ca);
	assert_int_equal(c.s2s_tls, CFG_TLS_REQUIRED);
	cfg_free(&c);
	free(conf);
	rmtmp(ca);
}

/* ---- errors ------------------------------------------------------------ */

static void test_typo_directive_rejected_with_its_line(void **state)
{
	expect_one_error(HUB "wrokers 4\n", "router.conf:3: unknown directive 'wrokers'");
	expect_one_error(HUB "wrokers 4\n", "did you mean 'workers'?");
}

static void test_all_errors_are_reported_not_just_the_first(void **state)
{
	struct cfg c;
	char *errs = NULL;
	int r = parse(&c, HUB "workers many\n\n# fine\nbogus 1\n[component a.example]\n", &errs);

	assert_int_equal(r, 3);
	assert_non_null(strstr(errs, "router.conf:3: workers"));
	assert_non_null(strstr(errs, "router.conf:6: unknown directive 'bogus'"));
	assert_non_null(strstr(errs, "router.conf:7: [component a.example]: missing required 'secret'"));
	free(errs);
	cfg_free(&c);
}

static void test_bad_values_rejected(void **state)
{
	static const struct {
		const char *line, *want;
	} cases[] = {
		{"workers 0", "out of range"},
		{"workers -1", "not a whole number"},
		{"workers 2x", "not a whole number"},
		{"max_stanza_size 10x", "not a size"},
		{"max_stanza_size 100", "out of range"},
		{"max_stanza_size 99999999999999999999", "not a size"},
		{"idle_timeout 5d", "not a duration"},
		{"idle_timeout 200h", "out of range"},
		{"connect_timeout 0", "out of range"},
		{"max_depth 0", "out of range"},
		{"log_level loud", "log_level"},
		{"s2s_tls maybe", "s2s_tls"},
		{"listen udp 127.0.0.1:1", "unknown kind 'udp'"},
		{"listen s2s example.com:5269", "bad address"},
		{"listen s2s 127.0.0.1:0", "bad address"},
		{"listen s2s 127.0.0.1:65536", "bad address"},
		{"listen s2s 127.0.0.1:52x", "bad address"},
		{"listen s2s 300.1.1.1:5269", "bad address"},
		{"listen s2s ::1:5269", "bad address"},
		{"listen s2s [::1:5269", "bad address"},
		{"listen s2s 127.0.0.2 tls sometimes", "bad tls mode"},
		{"listen s2s 127.0.0.2 compress", "unexpected 'compress'"},
		{"listen s2s 127.0.0.2 proxy_protocol proxy_protocol", "unexpected 'proxy_protocol'"},
		{"listen s2s-tls 127.0.0.2 tls optional", "can only be required"},
		{"listen component 127.0.0.2 tls off", "no tls option"},
		{"listen s2s 127.0.0.1:5269", "already used"},
		{"listen s2s", "takes 2 to 5 values, got 1"},
		{"http somewhere", "bad address"},
		{"dns_server [::1", "bad address"},
		{"domain bad_name.example", "not a valid domain"},
		{"domain 10.0.0.1", "not a valid domain"},
		{"ca_file /nonexistent/ca.pem", "cannot read '/nonexistent/ca.pem'"},
		{"dialback_secret_file /nonexistent/key", "cannot read"},
		{"workers", "takes 1 value, got 0"},
		{"workers 1 2", "takes 1 value, got 2"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *conf, *want;
		assert_true(asprintf(&conf, HUB "%s\n", cases[i].line) > 0);
		assert_true(asprintf(&want, "router.conf:3: %s", "") > 0);
		expect_one_error(conf, want);
		expect_one_error(conf, cases[i].want);
		free(conf);
		free(want);
	}
}

static void test_component_without_secret_rejected(void **state)
{
	expect_one_error(HUB "[component chat.example]\n\n",
			 "router.conf:3: [component chat.example]: missing required 'secret'");
	/* ... also when another section follows */
	expect_one_error(HUB "[component chat.example]\n[domain a.example]\n",
			 "router.conf:3: [component chat.example]: missing required 'secret'");
}

static void test_duplicate_directive_rejected(void **state)
{
	expect_one_error(HUB "workers 2\nworkers 3\n", "router.conf:4: duplicate 'workers' (first at line 3)");
	expect_one_error(HUB "[component c.example]\nsecret a\nsecret b\n",
			 "router.conf:5: duplicate 'secret' (first at line 4)");
	/* per section: the same directive in two [domain] blocks is fine */
	struct cfg c;
	expect_ok(&c, HUB "[component a.example]\nsecret a\n[component b.example]\nsecret b\n");
	assert_int_equal(c.ncomponents, 2);
	assert_string_equal(c.components[1].secret, "b");
	cfg_free(&c);
}

static void test_duplicate_sections_rejected(void **state)
{
	expect_one_error(HUB "[hub]\n", "router.conf:3: duplicate section [hub] (first at line 1)");
	expect_one_error(HUB "[domain a.example]\n[domain a.example]\n",
			 "router.conf:4: duplicate section [domain a.example] (first at line 3)");
	/* detected after normalisation */
	expect_one_error(HUB "[domain xn--bcher-kva.example]\n[domain BÜCHER.Example.]\n",
			 "router.conf:4: duplicate section [domain xn--bcher-kva.example]");
	/* a route for a served domain is a contradiction */
	expect_one_error(HUB "[domain a.example]\n[route A.example]\nconnect 127.0.0.1\n",
			 "router.conf:4: [route a.example]: a.example is served here");
	expect_one_error(HUB "[route a.example]\nconnect 127.0.0.1\n[component a.example]\nsecret s\n",
			 "router.conf:5: [component a.example]: a.example already has a [route]");
	/* a hosted domain's certificate and its component may share a name */
	struct cfg c;
	expect_ok(&c, HUB "[domain chat.example]\n[component chat.example]\nsecret s\n");
	cfg_free(&c);
}

static void test_directive_in_wrong_section_rejected(void **state)
{
	expect_one_error(HUB "cert /etc/x.pem\n",
			 "router.conf:3: 'cert' is not allowed in [hub] (it belongs in [domain NAME])");
	expect_one_error(HUB "[domain a.example]\nworkers 2\n",
			 "router.conf:4: 'workers' is not allowed in [domain] (it belongs in [hub])");
	expect_one_error(HUB "[component c.example]\nsecret s\nconnect 127.0.0.1\n",
			 "'connect' is not allowed in [component] (it belongs in [route NAME])");
	expect_one_error("workers 2\n" HUB, "router.conf:1: 'workers' before any section");
}

static void test_bad_section_headers_rejected(void **state)
{
	/* the directives of an unknown section are not reported again */
	expect_one_error(HUB "[compnent x.example]\nsecret s\n",
			 "router.conf:3: unknown section [compnent] (did you mean [component]?)");
	expect_one_error(HUB "[domain]\n", "router.conf:3: [domain NAME] needs exactly one name");
	expect_one_error(HUB "[domain a b]\n", "needs exactly one name");
	expect_one_error("[hub x]\nlisten s2s 127.0.0.1:5269\n", "router.conf:1: [hub] takes no name");
	expect_one_error(HUB "[domain a.example\n", "router.conf:3: section header without closing ']'");
	expect_one_error(HUB "[domain -bad-.example]\n", "not a valid domain name");
	expect_one_error(HUB "[component 10.1.2.3]\nsecret s\n", "not a valid domain name");
	expect_one_error("", "no [hub] section");
	expect_one_error("[hub]\n", "router.conf:1: [hub]: no 'listen' line");
}

static void test_whole_file_consistency_checks(void **state)
{
	expect_one_error(HUB "max_stanza_size 8k\nmax_stanza_size_preauth 16k\n",
			 "router.conf:4: max_stanza_size_preauth (16384) exceeds max_stanza_size (8192)");
	expect_one_error(HUB "retry_max 1m\n", "unknown directive 'retry_max' (did you mean 'retry_min'?)");
	expect_one_error(HUB "listen s2s-tls 127.0.0.1:5270\n",
			 "router.conf:3: listen s2s-tls 127.0.0.1:5270 requires TLS but no [domain] has a cert");
	expect_one_error(HUB "listen s2s 127.0.0.2 tls required\n", "requires TLS");
	expect_one_error(HUB "domain x.example\n[component x.example]\nsecret s\n",
			 "router.conf:4: [component x.example]: that is the hub's own domain");
}

static void test_comments_whitespace_and_crlf(void **state)
{
	struct cfg c;

	expect_ok(&c, "# leading comment\r\n"
		      "  [hub]   # trailing\r\n"
		      "\tlisten s2s 127.0.0.1:5269\t# tabs\r\n"
		      "[component a.example]\r\n"
		      "secret a#b   # the first # is part of the secret\r\n"
		      "#secret commented-out\r\n");
	assert_string_equal(c.components[0].secret, "a#b");
	cfg_free(&c);
	expect_one_error(HUB "workers\x01 2\n", "router.conf:3: control character 0x01");
}

/* ---- addresses --------------------------------------------------------- */

static void test_parse_addr_forms(void **state)
{
	struct cfg_addr a;
	char host[64];

	assert_int_equal(cfg_parse_addr("192.0.2.1:5269", &a, 0), 0);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	assert_int_equal(cfg_addr_port(&a), 5269);
	assert_string_equal(a.text, "192.0.2.1:5269");

	assert_int_equal(cfg_parse_addr("[2001:DB8::1]:5270", &a, 0), 0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(a.len, sizeof(struct sockaddr_in6));
	assert_int_equal(cfg_addr_port(&a), 5270);
	assert_int_equal(cfg_addr_host(&a, host, sizeof(host)), 0);
	assert_string_equal(host, "2001:db8::1");

	assert_int_equal(cfg_parse_addr("[::1]", &a, 5269), 0);
	assert_int_equal(cfg_addr_port(&a), 5269);

	assert_int_equal(cfg_parse_addr("localhost:80", &a, 0), 0);
	assert_int_equal(cfg_addr_host(&a, host, sizeof(host)), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(cfg_parse_addr("LOCALHOST", &a, 6379), 0);
	assert_int_equal(cfg_addr_port(&a), 6379);

	/* no port and no default */
	assert_int_equal(cfg_parse_addr("192.0.2.1", &a, 0), -EINVAL);
	assert_int_equal(cfg_parse_addr("[::1]", &a, 0), -EINVAL);
	/* names are not looked up */
	assert_int_equal(cfg_parse_addr("example.org:5269", &a, 5269), -EINVAL);
	assert_int_equal(cfg_parse_addr("[localhost]:5269", &a, 0), -EINVAL);
	/* malformed */
	assert_int_equal(cfg_parse_addr("", &a, 1), -EINVAL);
	assert_int_equal(cfg_parse_addr(":5269", &a, 0), -EINVAL);
	assert_int_equal(cfg_parse_addr("192.0.2.1:", &a, 5269), -EINVAL);
	assert_int_equal(cfg_parse_addr("192.0.2.1:+80", &a, 0), -EINVAL);
	assert_int_equal(cfg_parse_addr("[::1]5269", &a, 0), -EINVAL);
	assert_int_equal(cfg_parse_addr("[fe80::1%eth0]:5269", &a, 0), -EINVAL);
	assert_int_equal(cfg_parse_addr("1.2.3:5269", &a, 0), -EINVAL);
	assert_int_equal(a.len, 0);
}

static void test_ipv6_in_config(void **state)
{
	struct cfg c;
	char host[64];

	expect_ok(&c, "[hub]\nlisten s2s [::1]:5269 proxy_protocol\nlisten component [::1]\n"
		      "[route [2001:DB8:0::7]]\nconnect [2001:db8::7]\nconnect 192.0.2.7:5270\n"
		      "[route 192.0.2.8]\nconnect 192.0.2.8\n");
	assert_int_equal(c.listen[0].addr.ss.ss_family, AF_INET6);
	assert_true(c.listen[0].proxy_protocol);
	assert_int_equal(cfg_addr_port(&c.listen[1].addr), 5347);
	assert_int_equal(c.nroutes, 2);
	assert_string_equal(c.routes[0].name, "[2001:db8::7]");
	assert_int_equal(c.routes[0].nconnect, 2);
	assert_int_equal(cfg_addr_port(&c.routes[0].connect[0]), 5269);
	assert_int_equal(cfg_addr_host(&c.routes[0].connect[0], host, sizeof(host)), 0);
	assert_string_equal(host, "2001:db8::7");
	assert_int_equal(cfg_addr_port(&c.routes[0].connect[1]), 5270);
	assert_string_equal(c.routes[1].name, "192.0.2.8");
	cfg_free(&c);
}

/* ---- domain names ------------------------------------------------------ */

static void expect_norm(const char *in, const char *want)
{
	char out[CFG_NAME_MAX];
	int n = cfg_domain_normalise(in, strlen(in), out, sizeof(out));

	if (!want) {
		if (n >= 0)
			print_error("'%s' was accepted as '%s'\n", in, out);
		assert_int_equal(n, -1);
		return;
	}
	if (n < 0)
		print_error("'%s' was rejected\n", in);
	assert_int_equal(n, (int)strlen(want));
	assert_string_equal(out, want);
}

static void test_domain_normalise(void **state)
{
	char l63[64], l64[65], long253[300], long254[300];

	expect_norm("BÜCHER.example", "xn--bcher-kva.example");
	expect_norm("bücher.example.", "xn--bcher-kva.example");
	expect_norm("XN--BCHER-KVA.example", "xn--bcher-kva.example");
	expect_norm("faß.de", "xn--fa-hia.de"); /* non-transitional: not "fass.de" */
	expect_norm("Example.ORG.", "example.org");
	expect_norm("a-b.c0", "a-b.c0");
	expect_norm("localhost", "localhost");

	expect_norm("", NULL);
	expect_norm(".", NULL);
	expect_norm("a..b", NULL);
	expect_norm(".a", NULL);
	expect_norm("a.example..", NULL); /* only one trailing dot */
	expect_norm("-a.example", NULL);
	expect_norm("a-.example", NULL);
	expect_norm("a_b.example", NULL);
	expect_norm("a b.example", NULL);
	expect_norm("a@b.example", NULL);
	expect_norm("€.example", NULL);      /* disallowed in IDNA2008 */
	expect_norm("xn--zz.example", NULL); /* not valid punycode */
	expect_norm("192.0.2.1", NULL);      /* IP literals are not domains */
	expect_norm("[::1]", NULL);
	expect_norm("\xff\xfe.example", NULL); /* not UTF-8 */

	memset(l63, 'a', 63);
	l63[63] = 0;
	memset(l64, 'a', 64);
	l64[64] = 0;
	expect_norm(l63, l63);
	expect_norm(l64, NULL);
	/* 63+1+63+1+63+1+61 = 253 */
	snprintf(long253, sizeof(long253), "%s.%s.%s.%.61s", l63, l63, l63, l63);
	assert_int_equal(strlen(long253), 253);
	expect_norm(long253, long253);
	snprintf(long254, sizeof(long254), "%s.%s.%s.%.62s", l63, l63, l63, l63);
	expect_norm(long254, NULL);

	/* the output buffer is respected */
	char small[8];
	assert_int_equal(cfg_domain_normalise("example.org", 11, small, sizeof(small)), -1);
	assert_int_equal(cfg_domain_normalise("example.org", 7, small, sizeof(small)), 7);
	assert_string_equal(small, "example");
}

static void test_section_names_are_normalised(void **state)
{
	struct cfg c;

	expect_ok(&c, HUB "domain Hub.Example.\n[domain BÜCHER.example]\n[component Chat.Example.]\nsecret s\n");
	assert_string_equal(c.hub_domain, "hub.example");
	assert_string_equal(c.domains[0].name, "xn--bcher-kva.example");
	assert_int_equal(c.domains[0].line, 4);
	assert_string_equal(c.components[0].name, "chat.example");
	assert_int_equal(c.components[0].line, 5);
	cfg_free(&c);
}

/* ---- sections ---------------------------------------------------------- */

static void test_domain_cert_and_key(void **state)
{
	char *cert = tmpfile_with("cert\n"), *key = tmpfile_with("key\n");
	char *conf;
	struct cfg c;

	assert_true(asprintf(&conf,
			     HUB "listen s2s-tls 127.0.0.1:5270\n"
				 "[domain a.example]\ncert %s\nkey %s\n"
				 "[domain b.example]\ncert %s\n"
				 "[domain c.example]\n",
			     cert, key, cert) > 0);
	expect_ok(&c, conf);
	assert_int_equal(c.ndomains, 3);
	assert_string_equal(c.domains[0].cert, cert);
	assert_string_equal(c.domains[0].key, key);
	assert_string_equal(c.domains[1].key, cert); /* one PEM with both */
	assert_string_equal(c.domains[2].cert, "");
	assert_int_equal(c.listen[1].tls, CFG_TLS_REQUIRED);
	cfg_free(&c);
	free(conf);

	assert_true(asprintf(&conf, HUB "[domain a.example]\nkey %s\n", key) > 0);
	expect_one_error(conf, "router.conf:3: [domain a.example]: key without cert");
	free(conf);
	expect_one_error(HUB "[domain a.example]\ncert /nonexistent/a.pem\n",
			 "router.conf:4: cert: cannot read '/nonexistent/a.pem': No such file");
	rmtmp(cert);
	rmtmp(key);
}

/* Secure by default: certificates make STARTTLS required unless the file
 * says otherwise; without any it cannot be offered and stays optional. */
static void test_tls_default_follows_certificates(void **state)
{
	char *cert = tmpfile_with("cert\n");
	char *conf;
	struct cfg c;

	expect_ok(&c, HUB "[route r.example]\nconnect 127.0.0.1:5269\n");
	assert_int_equal(c.listen[0].tls, CFG_TLS_OPTIONAL);
	assert_int_equal(c.s2s_tls, CFG_TLS_OPTIONAL);
	assert_int_equal(c.routes[0].tls, CFG_TLS_OPTIONAL);
	cfg_free(&c);

	assert_true(asprintf(&conf,
			     HUB "listen s2s 127.0.0.1:5271 tls optional\n"
				 "[domain a.example]\ncert %s\n[route r.example]\nconnect 127.0.0.1:5269\n",
			     cert) > 0);
	expect_ok(&c, conf);
	assert_int_equal(c.listen[0].tls, CFG_TLS_REQUIRED);
	assert_int_equal(c.listen[1].tls, CFG_TLS_OPTIONAL); /* as written */
	assert_int_equal(c.s2s_tls, CFG_TLS_REQUIRED);
	assert_int_equal(c.routes[0].tls, CFG_TLS_REQUIRED);
	cfg_free(&c);
	free(conf);
	rmtmp(cert);
}

static void test_routes(void **state)
{
	struct cfg c;
	char conf[1024];

	/* tls defaults to s2s_tls, even when s2s_tls comes later */
	expect_ok(&c, "[route r1.example]\nconnect 192.0.2.1\ndirect_tls yes\n"
		      "[route r2.example]\nconnect 192.0.2.2\ntls off\n" HUB "s2s_tls required\n");
	assert_int_equal(c.nroutes, 2);
	assert_int_equal(c.routes[0].tls, CFG_TLS_REQUIRED);
	assert_true(c.routes[0].direct_tls);
	assert_int_equal(c.routes[1].tls, CFG_TLS_OFF);
	assert_false(c.routes[1].direct_tls);
	cfg_free(&c);

	expect_one_error(HUB "[route r.example]\ntls required\n",
			 "router.conf:3: [route r.example]: missing required 'connect'");
	expect_one_error(HUB "[route r.example]\nconnect 192.0.2.1\ntls off\ndirect_tls yes\n",
			 "direct_tls yes contradicts tls off");
	expect_one_error(HUB "[route r.example]\nconnect 192.0.2.1\ndirect_tls maybe\n",
			 "router.conf:5: direct_tls: 'maybe' is not yes or no");
	expect_one_error(HUB "[route r.example]\nconnect r.example:5269\n", "router.conf:4: connect: bad address");

	strcpy(conf, HUB "[route r.example]\n");
	for (int i = 1; i <= 9; i++)
		sprintf(conf + strlen(conf), "connect 192.0.2.%d\n", i);
	expect_one_error(conf, "router.conf:12: connect: at most 8 addresses per route");
}

static void test_many_sections(void **state)
{
	/* thousands of domains: the arrays and the name set grow */
	size_t cap = 5000 * 64 + 64, len;
	char *conf = malloc(cap);
	struct cfg c;

	len = (size_t)sprintf(conf, HUB);
	for (int i = 0; i < 5000; i++)
		len += (size_t)sprintf(conf + len, "[domain d%d.example]\n", i);
	len += (size_t)sprintf(conf + len, "[domain D4999.example]\n");
	expect_one_error(conf, "router.conf:5003: duplicate section [domain d4999.example] (first at line 5002)");
	conf[len - strlen("[domain D4999.example]\n")] = 0;
	expect_ok(&c, conf);
	assert_int_equal(c.ndomains, 5000);
	assert_string_equal(c.domains[4321].name, "d4321.example");
	cfg_free(&c);
	free(conf);
}

/* [cluster]: every directive parsed, everything missing refused. */
#define SECRET32 "0123456789abcdef0123456789abcdef\n"
static char *cluster_conf(const char *secret_path, const char *extra)
{
	char *t = NULL;
	assert_true(asprintf(&t,
			     HUB "[cluster]\nredis 127.0.0.1:27079\nnode_listen 127.0.0.1:27010\n"
				 "cluster_secret_file %s\n%s",
			     secret_path, extra) > 0);
	return t;
}

static void test_cluster_section_parsed(void **state)
{
	char *sec = tmpfile_with(SECRET32);
	chmod(sec, 0600);
	struct cfg c;
	char *t = cluster_conf(sec, "node_id n1\nlease_time 2500ms\nredis_timeout 300ms\n");
	expect_ok(&c, t);
	assert_true(c.cluster.on);
	assert_string_equal(c.cluster.node_id, "n1");
	assert_int_equal(c.cluster.lease_time_ms, 2500);
	assert_int_equal(c.cluster.redis_timeout_ms, 300);
	assert_int_equal(c.cluster.secret_len, 32);
	assert_int_equal(cfg_addr_port(&c.cluster.redis), 27079);
	/* node_address defaults to node_listen */
	assert_int_equal(cfg_addr_port(&c.cluster.node_address), 27010);
	cfg_free(&c);
	free(t);
	/* auto: hostname-port */
	t = cluster_conf(sec, "node_id auto\nlease_time 5s\n");
	expect_ok(&c, t);
	size_t n = strlen(c.cluster.node_id);
	assert_true(n > 6 && !strcmp(c.cluster.node_id + n - 6, "-27010"));
	assert_int_equal(c.cluster.lease_time_ms, 5000);
	cfg_free(&c);
	free(t);
	/* no section: off */
	expect_ok(&c, HUB);
	assert_false(c.cluster.on);
	cfg_free(&c);
	rmtmp(sec);
}

static void test_cluster_refuses_what_it_cannot_honour(void **state)
{
	char *sec = tmpfile_with(SECRET32);
	char *weak = tmpfile_with("short\n");
	char *open_ = tmpfile_with(SECRET32);
	chmod(sec, 0600);
	chmod(weak, 0600);
	chmod(open_, 0644);
	expect_one_error(HUB "[cluster]\nredis 127.0.0.1\nnode_listen 127.0.0.1:27010\n", "missing required 'cluster_secret_file'");
	char *t;
	struct cfg c;
	char *errs = NULL;
	/* no registry at all, no node_listen: both reported */
	assert_true(asprintf(&t, HUB "[cluster]\ncluster_secret_file %s\n", sec) > 0);
	assert_int_equal(parse(&c, t, &errs), 2);
	assert_non_null(strstr(errs, "neither 'redis' nor 'sentinel'"));
	assert_non_null(strstr(errs, "missing required 'node_listen'"));
	free(errs);
	cfg_free(&c);
	free(t);
#define ONE(extra, want)                              \
	do {                                          \
		t = cluster_conf(sec, extra);         \
		expect_one_error(t, want);            \
		free(t);                              \
	} while (0)
	ONE("sentinel 127.0.0.1:26379 m\n", "'redis' and 'sentinel' both given");
	ONE("lease_time 500ms\n", "lease_time: 500 is out of range");
	ONE("lease_time 5x\n", "lease_time: '5x' is not a duration in milliseconds");
	ONE("redis_timeout 2s\n", "redis_timeout (2000ms) is more than a third of lease_time");
	ONE("node_id bad/name\n", "node_id: 'bad/name' must be");
	ONE("node_address 0.0.0.0:27010\n", "node_address 0.0.0.0:27010 is not an address");
	ONE("redis 127.0.0.1:1\n", "duplicate 'redis'");
	ONE("node_tls /nonexistent/node.crt /nonexistent/node.key /nonexistent/ca.pem\n",
	    "node_tls: cannot read the certificate '/nonexistent/node.crt'");
	ONE("node_tls a b\n", "node_tls");
#undef ONE
	/* node_tls: the three paths kept; absent, links in the clear */
	{
		char *x;
		assert_true(asprintf(&x, "node_tls %s %s %s\n", sec, open_, weak) > 0);
		t = cluster_conf(sec, x);
		expect_ok(&c, t);
		assert_string_equal(c.cluster.node_tls_cert, sec);
		assert_string_equal(c.cluster.node_tls_key, open_);
		assert_string_equal(c.cluster.node_tls_ca, weak);
		cfg_free(&c);
		free(t);
		free(x);
		t = cluster_conf(sec, "");
		expect_ok(&c, t);
		assert_string_equal(c.cluster.node_tls_cert, "");
		cfg_free(&c);
		free(t);
	}
	assert_true(asprintf(&t,
			     HUB "[cluster]\nredis 127.0.0.1\nnode_listen 0.0.0.0:27010\ncluster_secret_file %s\n",
			     sec) > 0);
	expect_one_error(t, "node_listen 0.0.0.0:27010 is a wildcard");
	free(t);
	t = cluster_conf(weak, "");
	expect_one_error(t, "must be 32 to 256 bytes");
	free(t);
	t = cluster_conf(open_, "");
	expect_one_error(t, "readable or writable by everyone");
	free(t);
	/* sentinels: all name one master */
	assert_true(asprintf(&t,
			     HUB "[cluster]\nsentinel 127.0.0.1:26379 a\nsentinel 127.0.0.1:26380 b\n"
				 "node_listen 127.0.0.1:27010\ncluster_secret_file %s\n",
			     sec) > 0);
	expect_one_error(t, "every sentinel line names the same master");
	free(t);
	/* the directives belong in [cluster] only */
	expect_one_error(HUB "redis 127.0.0.1:6379\n", "router.conf:3: 'redis' is not allowed in [hub]");
	assert_true(parse(&c, HUB "[cluster node1]\n", &errs) > 0);
	assert_non_null(strstr(errs, "router.conf:3: [cluster] takes no name"));
	free(errs);
	cfg_free(&c);
	rmtmp(sec);
	rmtmp(weak);
	rmtmp(open_);
}

static void test_dialback_secret(void **state)
{
	char *good = tmpfile_with("0123456789abcdef0123\n\n");
	char *shrt = tmpfile_with("short\n");
	char *spaced = tmpfile_with("0123456789 abcdef0123\n");
	char *conf;
	struct cfg c, d;

	assert_true(asprintf(&conf, HUB "dialback_secret_file %s\n", good) > 0);
	expect_ok(&c, conf);
	assert_string_equal(c.dialback_secret, "0123456789abcdef0123");
	assert_string_equal(c.dialback_secret_file, good);
	cfg_free(&c);
	free(conf);

	assert_true(asprintf(&conf, HUB "dialback_secret_file %s\n", shrt) > 0);
	expect_one_error(conf, "router.conf:3: dialback_secret_file: the secret in");
	free(conf);
	assert_true(asprintf(&conf, HUB "dialback_secret_file %s\n", spaced) > 0);
	expect_one_error(conf, "printable");
	free(conf);

	/* without a file: 32 random bytes in hex, different each time */
	expect_ok(&c, HUB);
	expect_ok(&d, HUB);
	assert_int_equal(strlen(c.dialback_secret), 64);
	assert_int_equal(strspn(c.dialback_secret, "0123456789abcdef"), 64);
	assert_string_not_equal(c.dialback_secret, d.dialback_secret);
	cfg_free(&c);
	cfg_free(&d);
	rmtmp(good);
	rmtmp(shrt);
	rmtmp(spaced);
}

static void test_load_missing_file(void **state)
{
	struct cfg c;
	char *errs = NULL;
	size_t n;
	FILE *f = open_memstream(&errs, &n);

	assert_int_equal(cfg_load(&c, "/nonexistent/router.conf", f), 1);
	fclose(f);
	assert_non_null(strstr(errs, "/nonexistent/router.conf: cannot open"));
	free(errs);
	cfg_free(&c);
}

static void test_load_reports_file_name(void **state)
{
	char *path = tmpfile_with(HUB "oops\n");
	struct cfg c;
	char *errs = NULL, *want;
	size_t n;
	FILE *f = open_memstream(&errs, &n);

	assert_int_equal(cfg_load(&c, path, f), 1);
	fclose(f);
	assert_true(asprintf(&want, "%s:3: unknown directive 'oops'", path) > 0);
	assert_non_null(strstr(errs, want));
	free(want);
	free(errs);
	cfg_free(&c);
	rmtmp(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped_router_conf_has_no_errors),
		cmocka_unit_test(test_router_conf_documents_every_directive),
		cmocka_unit_test(test_router_conf_examples_are_valid),
		cmocka_unit_test(test_builtin_default_config),
		cmocka_unit_test(test_defaults_for_absent_directives),
		cmocka_unit_test(test_every_hub_value_is_stored),
		cmocka_unit_test(test_typo_directive_rejected_with_its_line),
		cmocka_unit_test(test_all_errors_are_reported_not_just_the_first),
		cmocka_unit_test(test_bad_values_rejected),
		cmocka_unit_test(test_component_without_secret_rejected),
		cmocka_unit_test(test_duplicate_directive_rejected),
		cmocka_unit_test(test_duplicate_sections_rejected),
		cmocka_unit_test(test_directive_in_wrong_section_rejected),
		cmocka_unit_test(test_bad_section_headers_rejected),
		cmocka_unit_test(test_whole_file_consistency_checks),
		cmocka_unit_test(test_comments_whitespace_and_crlf),
		cmocka_unit_test(test_parse_addr_forms),
		cmocka_unit_test(test_ipv6_in_config),
		cmocka_unit_test(test_domain_normalise),
		cmocka_unit_test(test_section_names_are_normalised),
		cmocka_unit_test(test_domain_cert_and_key),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_many_sections),
		cmocka_unit_test(test_cluster_section_parsed),
		cmocka_unit_test(test_cluster_refuses_what_it_cannot_honour),
		cmocka_unit_test(test_dialback_secret),
		cmocka_unit_test(test_tls_default_follows_certificates),
		cmocka_unit_test(test_load_missing_file),
		cmocka_unit_test(test_load_reports_file_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
