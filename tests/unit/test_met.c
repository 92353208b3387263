/*
 * tests/unit/test_met.c — counters and the real HTTP endpoint: libmicrohttpd
 * is started on 127.0.0.1 (an ephemeral port) and fetched with a plain socket
 * client, so what is checked is what a Prometheus scraper or a load
 * balancer's health check would see.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <cmocka.h>
#include "router/met.h"

#define NWORKERS 2

struct http_reply {
	int status;
	char *head; /* status line and headers */
	char *body;
};

/* One request over a fresh connection; the server closes it after. */
static struct http_reply http_fetch(const char *ip, int port, const char *method, const char *path)
{
	struct http_reply r = {0};
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sa6 = (struct sockaddr_in6 *)&ss;
	bool v6 = strchr(ip, ':') != NULL;
	/* bounds the test if the server never answers; not a timing check */
	struct timeval tv = {.tv_sec = 20};
	char req[256], *resp = NULL, *sep;
	size_t len = 0, cap = 0;
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	if (v6) {
		sa6->sin6_family = AF_INET6;
		sa6->sin6_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET6, ip, &sa6->sin6_addr), 1);
	} else {
		sa->sin_family = AF_INET;
		sa->sin_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET, ip, &sa->sin_addr), 1);
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, v6 ? sizeof(*sa6) : sizeof(*sa)) < 0) {
		r.status = -errno;
		close(fd);
		return r;
	}
	int n = snprintf(req, sizeof(req),
			 "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", method, path,
			 v6 ? "localhost" : ip);
	assert_int_equal(write(fd, req, (size_t)n), n);
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 16384;
			resp = realloc(resp, cap + 1);
			assert_non_null(resp);
		}
		ssize_t k = read(fd, resp + len, cap - len);
		assert_true(k >= 0);
		if (k == 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	resp[len] = 0;
	assert_int_equal(sscanf(resp, "HTTP/1.%*d %d", &r.status), 1);
	sep = strstr(resp, "\r\n\r\n");
	assert_non_null(sep);
	*sep = 0;
	r.head = resp;
	r.body = sep + 4;
	return r;
}

static struct http_reply get(const char *path)
{
	return http_fetch("127.0.0.1", met_http_port(), "GET", path);
}

static void reply_free(struct http_reply *r)
{
	free(r->head);
}

/* The value of the sample line "NAME VALUE" in a Prometheus text body. */
static long long sample(const char *body, const char *name)
{
	size_t n = strlen(name);

	for (const char *l = body; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (!strncmp(l, name, n) && l[n] == ' ')
			return strtoll(l + n + 1, NULL, 10);
	print_error("no sample '%s' in:\n%s\n", name, body);
	fail();
	return -1;
}

static int setup(void **state)
{
	struct cfg_addr a;

	if (met_init(NWORKERS) < 0)
		return -1;
	/* port 0: the kernel picks a free one, so parallel runs cannot clash */
	if (cfg_parse_addr("127.0.0.1:1", &a, 0) < 0)
		return -1;
	((struct sockaddr_in *)&a.ss)->sin_port = 0;
	if (met_http_start(&a) < 0)
		return -1;
	return met_http_port() > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	met_free();
	return 0;
}

/* Each test starts from zeroed counters, ready. */
static int reset(void **state)
{
	return met_init(NWORKERS);
}

/* ---- /health ----------------------------------------------------------- */

static void test_health_is_ok_json(void **state)
{
	struct http_reply r = get("/health");
	unsigned long long up;
	int workers, end = 0;

	assert_int_equal(r.status, 200);
	assert_non_null(strcasestr(r.head, "\r\nContent-Type: application/json"));
	assert_int_equal(sscanf(r.body, "{\"status\":\"ok\",\"workers\":%d,\"uptime_s\":%llu}%n", &workers, &up, &end),
			 2);
	assert_int_equal(workers, NWORKERS);
	assert_int_equal((size_t)end, strlen(r.body)); /* nothing else */
	reply_free(&r);
}

static void test_health_503_when_not_ready(void **state)
{
	struct http_reply r;

	met_set_state("starting", "workers not running yet");
	r = get("/health");
	assert_int_equal(r.status, 503);
	assert_non_null(strstr(r.body, "{\"status\":\"starting\",\"reason\":\"workers not running yet\",\"workers\":2,"));
	reply_free(&r);
	r = get("/metrics");
	assert_int_equal(r.status, 200);
	assert_int_equal(sample(r.body, "fedhub_ready"), 0);
	reply_free(&r);

	met_set_state("ok", NULL);
	r = get("/health");
	assert_int_equal(r.status, 200);
	reply_free(&r);
}

/* ---- /metrics ---------------------------------------------------------- */

static void test_metrics_sum_the_workers(void **state)
{
	struct http_reply r;

	for (int i = 0; i < 3; i++)
		MET_INC(met_of(0), stanzas_in);
	MET_ADD(met_of(1), stanzas_in, 4);
	MET_ADD(met_of(1), bytes_in, 1000);
	MET_INC(met_of(0), conns_open);
	MET_INC(met_of(1), conns_open);
	MET_INC(met_of(1), conns_open);
	MET_DEC(met_of(1), conns_open);

	r = get("/metrics");
	assert_int_equal(r.status, 200);
	assert_non_null(strcasestr(r.head, "\r\nContent-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(r.body, "# HELP fedhub_stanzas_in_total stanzas received\n"
				       "# TYPE fedhub_stanzas_in_total counter\n"
				       "fedhub_stanzas_in_total 7\n"));
	assert_int_equal(sample(r.body, "fedhub_bytes_in_total"), 1000);
	assert_int_equal(sample(r.body, "fedhub_stanzas_routed_total"), 0);
	assert_non_null(strstr(r.body, "# TYPE fedhub_conns_open gauge\n"));
	assert_int_equal(sample(r.body, "fedhub_conns_open"), 2);
	assert_int_equal(sample(r.body, "fedhub_workers"), NWORKERS);
	assert_true(sample(r.body, "fedhub_uptime_seconds") >= 0);
	assert_int_equal(sample(r.body, "fedhub_ready"), 1);
	reply_free(&r);

	/* the next scrape sees later increments */
	MET_INC(met_of(0), stanzas_in);
	r = get("/metrics");
	assert_int_equal(sample(r.body, "fedhub_stanzas_in_total"), 8);
	reply_free(&r);
}

/* Every counter of MET_COUNTERS is exported, summed from its own field. */
static void test_every_counter_is_exported(void **state)
{
	struct http_reply r;
	long long want = 1;
	char name[96], type[256];

#define SET(field, help)                                   \
	MET_ADD(met_of(0), field, want);                   \
	MET_ADD(met_of(NWORKERS - 1), field, want * 1000); \
	want++;
	MET_COUNTERS(SET)
#undef SET
	r = get("/metrics");
	assert_int_equal(r.status, 200);
	want = 1;
#define CHECK(field, help)                                                    \
	snprintf(name, sizeof(name), "fedhub_%s_total", #field);              \
	snprintf(type, sizeof(type), "\n# TYPE %s counter\n%s ", name, name); \
	assert_non_null(strstr(r.body, type));                                \
	assert_int_equal(sample(r.body, name), want * 1001);                  \
	want++;
	MET_COUNTERS(CHECK)
#undef CHECK
	reply_free(&r);
}

/* Each worker bumps only its own block, from its own thread, while the
 * endpoint is scraped: no increment is lost (that is what plain stores on
 * separate blocks promise) and the last scrape shows them all. */
static void *bump(void *arg)
{
	struct met_worker *w = met_of((int)(intptr_t)arg);

	for (int i = 0; i < 200000; i++)
		MET_INC(w, stanzas_routed);
	return NULL;
}

static void test_worker_threads_count_independently(void **state)
{
	pthread_t t[NWORKERS];
	struct http_reply r;

	for (intptr_t i = 0; i < NWORKERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, bump, (void *)i), 0);
	r = get("/metrics"); /* concurrently: any value, but a well-formed reply */
	assert_int_equal(r.status, 200);
	assert_true(sample(r.body, "fedhub_stanzas_routed_total") <= NWORKERS * 200000);
	reply_free(&r);
	for (int i = 0; i < NWORKERS; i++)
		pthread_join(t[i], NULL);
	r = get("/metrics");
	assert_int_equal(sample(r.body, "fedhub_stanzas_routed_total"), NWORKERS * 200000);
	reply_free(&r);
}

static void test_blocks_do_not_share_cache_lines(void **state)
{
	assert_null(met_of(-1));
	assert_null(met_of(NWORKERS));
	for (int i = 0; i < NWORKERS; i++) {
		assert_non_null(met_of(i));
		assert_int_equal((uintptr_t)met_of(i) % 64, 0);
	}
	assert_int_equal(sizeof(struct met_worker) % 64, 0);
	/* the last counter of one block and the first of the next are apart */
	assert_true((uintptr_t)&met_of(1)->conn_accepted / 64 > (uintptr_t)&met_of(0)->conns_open / 64);
}

static void test_render_reports_full_length(void **state)
{
	char small[16], *big;
	size_t need = met_render(NULL, 0);

	assert_true(need > 1000);
	assert_int_equal(met_render(small, sizeof(small)), need);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_memory_equal(small, "# HELP fedhub_c", 15);
	big = malloc(need + 1);
	assert_int_equal(met_render(big, need + 1), need);
	assert_int_equal(strlen(big), need);
	assert_int_equal(big[need - 1], '\n');
	free(big);
}

/* ---- labels ------------------------------------------------------------ */

struct jbuf {
	char b[128];
	size_t n;
	int pieces;
};

static void jbuf_put(void *o, const char *p, size_t n)
{
	struct jbuf *j = o;
	assert_true(j->n + n < sizeof(j->b));
	memcpy(j->b + j->n, p, n);
	j->n += n;
	j->b[j->n] = 0;
	j->pieces++;
}

static void test_json_strings_are_escaped(void **state)
{
	(void)state;
	struct jbuf j = {0};
	met_json_str(jbuf_put, &j, "plain text");
	assert_string_equal(j.b, "\"plain text\"");
	assert_int_equal(j.pieces, 3); /* a run that needs no escape is one piece */

	j = (struct jbuf){0};
	met_json_str(jbuf_put, &j, "a\"b\\c\nd\x01");
	assert_string_equal(j.b, "\"a\\\"b\\\\c\\u000ad\\u0001\"");

	j = (struct jbuf){0};
	met_json_str(jbuf_put, &j, NULL);
	assert_string_equal(j.b, "\"\"");
}

static void test_label_values_are_escaped(void **state)
{
	char out[64];
	struct http_reply r;

	assert_int_equal(met_escape_label("a\"b\\c\nd", out, sizeof(out)), 10);
	assert_string_equal(out, "a\\\"b\\\\c\\nd");
	/* truncated like snprintf, the full length returned */
	assert_int_equal(met_escape_label("\"\"\"", out, 4), 6);
	assert_string_equal(out, "\\\"\\");

	met_set_build_info("1.0\"beta", "wolfSSL 5\\x\nAES-NI: yes", true);
	r = get("/metrics");
	assert_non_null(strstr(r.body,
			       "# TYPE fedhub_build_info gauge\n"
			       "fedhub_build_info{version=\"1.0\\\"beta\",wolfssl=\"wolfSSL 5\\\\x\\nAES-NI: yes\","
			       "aesni=\"yes\"} 1\n"));
	reply_free(&r);
}

static void test_domains_past_the_cap_count_as_other(void **state)
{
	struct http_reply r;
	int a, b, c, d, other_r, other_c;

	met_set_domains_max(2);
	assert_int_equal(met_init(NWORKERS), 0);
	a = met_dom_index(MET_DOM_REMOTE, "a.example");
	b = met_dom_index(MET_DOM_COMPONENT, "b.example");
	c = met_dom_index(MET_DOM_REMOTE, "c.example");
	d = met_dom_index(MET_DOM_COMPONENT, "d.example");
	other_r = met_dom_slot(MET_DOM_REMOTE, "never.example");
	other_c = met_dom_slot(MET_DOM_COMPONENT, "never.example");
	assert_true(a >= 0 && b >= 0 && a != b);
	assert_int_equal(c, other_r);
	assert_int_equal(d, other_c);
	assert_true(other_r != other_c);
	/* registered once; the same name of the other kind is another domain */
	assert_int_equal(met_dom_index(MET_DOM_REMOTE, "a.example"), a);
	assert_int_equal(met_dom_find(MET_DOM_REMOTE, "a.example"), a);
	assert_int_equal(met_dom_find(MET_DOM_COMPONENT, "a.example"), -1);
	assert_int_equal(met_dom_find(MET_DOM_REMOTE, "c.example"), -1);

	MET_ADD(met_of(0), dom[a].stanzas[0], 3);
	MET_ADD(met_of(1), dom[a].stanzas[0], 4);
	MET_ADD(met_of(1), dom[b].bytes[1], 100);
	MET_INC(met_of(0), dom[c].stanzas[1]);
	MET_INC(met_of(1), dom[met_dom_slot(MET_DOM_REMOTE, "e.example")].stanzas[1]);
	met_dom_error(MET_DOM_REMOTE, "a.example", "host-unknown");
	met_dom_error(MET_DOM_REMOTE, "a.example", "no-such-condition");
	r = get("/metrics");
	assert_int_equal(sample(r.body, "fedhub_metrics_domains_max"), 2);
	assert_int_equal(sample(r.body, "fedhub_metrics_domains"), 2);
	assert_int_equal(
		sample(r.body, "fedhub_domain_stanzas_total{kind=\"remote\",domain=\"a.example\",direction=\"in\"}"),
		7);
	assert_int_equal(
		sample(r.body, "fedhub_domain_bytes_total{kind=\"component\",domain=\"b.example\",direction=\"out\"}"),
		100);
	assert_int_equal(
		sample(r.body, "fedhub_domain_stanzas_total{kind=\"remote\",domain=\"_other\",direction=\"out\"}"), 2);
	assert_int_equal(
		sample(r.body, "fedhub_domain_stanzas_total{kind=\"component\",domain=\"_other\",direction=\"out\"}"),
		0);
	assert_null(strstr(r.body, "c.example"));
	assert_null(strstr(r.body, "d.example"));
	assert_int_equal(sample(r.body, "fedhub_domain_last_error_info{kind=\"remote\",domain=\"a.example\","
					"condition=\"other\"}"),
			 1);
	assert_null(strstr(r.body, "condition=\"host-unknown\""));
	reply_free(&r);
	met_set_domains_max(100);
}

static void test_no_labelled_domains_at_cap_zero(void **state)
{
	struct http_reply r;

	met_set_domains_max(0);
	assert_int_equal(met_init(NWORKERS), 0);
	int i = met_dom_index(MET_DOM_REMOTE, "a.example");
	assert_int_equal(i, met_dom_slot(MET_DOM_REMOTE, "a.example"));
	MET_INC(met_of(0), dom[i].stanzas[0]);
	r = get("/metrics");
	assert_int_equal(
		sample(r.body, "fedhub_domain_stanzas_total{kind=\"remote\",domain=\"_other\",direction=\"in\"}"), 1);
	assert_null(strstr(r.body, "a.example"));
	reply_free(&r);
	met_set_domains_max(100);
}

static void test_link_gauges_follow_open_auth_close(void **state)
{
	struct met_link l = {0}, v = {0};
	struct http_reply r;

	met_conn_open(met_of(0), &l, MET_DIR_IN);
	met_conn_open(met_of(0), &v, MET_DIR_VERIFY);
	r = get("/metrics");
	assert_int_equal(sample(r.body, "fedhub_connections_open{direction=\"in\"}"), 1);
	assert_int_equal(sample(r.body, "fedhub_connections_open{direction=\"verify\"}"), 1);
	assert_int_equal(sample(r.body, "fedhub_conns_open"), 2);
	assert_null(strstr(r.body, "fedhub_links_authenticated{"));
	reply_free(&r);

	met_link_up(met_of(0), &l, MET_AUTH_SASL_EXTERNAL, met_tls_of("TLSv1.3"), MET_DOM_REMOTE, "a.example");
	met_link_up(met_of(0), &l, MET_AUTH_DIALBACK, MET_TLS_NONE, MET_DOM_REMOTE, "b.example"); /* a second pair */
	r = get("/metrics");
	assert_int_equal(sample(r.body, "fedhub_links_authenticated{direction=\"in\",auth=\"sasl_external\","
					"tls=\"TLSv1.3\"}"),
			 1);
	assert_int_equal(sample(r.body, "fedhub_link_authentications_total{direction=\"in\",auth=\"sasl_external\"}"),
			 1);
	assert_int_equal(sample(r.body, "fedhub_link_authentications_total{direction=\"in\",auth=\"dialback\"}"), 1);
	assert_int_equal(sample(r.body, "fedhub_domain_links{kind=\"remote\",domain=\"a.example\"}"), 1);
	reply_free(&r);

	met_conn_close(met_of(0), &l);
	met_conn_close(met_of(0), &l); /* twice: no effect */
	r = get("/metrics");
	assert_int_equal(sample(r.body, "fedhub_connections_open{direction=\"in\"}"), 0);
	assert_int_equal(sample(r.body, "fedhub_conns_open"), 1);
	assert_null(strstr(r.body, "fedhub_links_authenticated{"));
	assert_int_equal(sample(r.body, "fedhub_domain_links{kind=\"remote\",domain=\"a.example\"}"), 0);
	/* counters keep counting */
	assert_int_equal(sample(r.body, "fedhub_link_authentications_total{direction=\"in\",auth=\"dialback\"}"), 1);
	reply_free(&r);
}

static void test_conditions_are_named(void **state)
{
	struct http_reply r;

	assert_int_equal(met_cond("bogus"), MET_COND_N - 1);
	assert_int_equal(met_cond(NULL), MET_COND_N - 1);
	assert_true(met_cond("invalid-from") != met_cond("host-unknown"));
	MET_INC(met_of(0), stream_errors[1][met_cond("invalid-from")]);
	MET_INC(met_of(1), stream_errors[0][met_cond("system-shutdown")]);
	MET_ADD(met_of(1), bounces[met_cond("remote-server-not-found")], 2);
	r = get("/metrics");
	assert_int_equal(sample(r.body, "fedhub_stream_errors_by_condition_total{side=\"sent\","
					"condition=\"invalid-from\"}"),
			 1);
	assert_int_equal(sample(r.body, "fedhub_stream_errors_by_condition_total{side=\"received\","
					"condition=\"system-shutdown\"}"),
			 1);
	assert_int_equal(sample(r.body, "fedhub_bounces_total{condition=\"remote-server-not-found\"}"), 2);
	assert_non_null(strstr(r.body, "# TYPE fedhub_bounces_total counter\n"));
	reply_free(&r);
}

/* A DER certificate cut down to what the reader walks: SEQUENCE {
 * SEQUENCE { [0] version, serial, signature, issuer, validity } }. */
static size_t mini_cert(uint8_t *out, uint8_t tag, const char *not_after)
{
	uint8_t v[64], tbs[128];
	size_t vn = 0, tn = 0, n = 0, na = strlen(not_after);

	v[vn++] = 0x17, v[vn++] = 13;
	memcpy(v + vn, "200101000000Z", 13), vn += 13;
	v[vn++] = tag, v[vn++] = (uint8_t)na;
	memcpy(v + vn, not_after, na), vn += na;
	static const uint8_t pre[] = {0xa0, 3, 2, 1, 2, 2, 1, 1, 0x30, 0, 0x30, 0};
	memcpy(tbs, pre, sizeof(pre)), tn = sizeof(pre);
	tbs[tn++] = 0x30, tbs[tn++] = (uint8_t)vn;
	memcpy(tbs + tn, v, vn), tn += vn;
	out[n++] = 0x30, out[n++] = (uint8_t)(tn + 2);
	out[n++] = 0x30, out[n++] = (uint8_t)tn;
	memcpy(out + n, tbs, tn);
	return n + tn;
}

static void test_certificate_not_after(void **state)
{
	uint8_t der[256];
	struct tm tm = {.tm_year = 2049 - 1900, .tm_mon = 11, .tm_mday = 31, .tm_hour = 23, .tm_min = 59, .tm_sec = 58};
	size_t n;

	n = mini_cert(der, 0x18, "20491231235958Z");
	assert_int_equal(met_der_not_after(der, n), (int64_t)timegm(&tm));
	tm = (struct tm){.tm_year = 2030 - 1900, .tm_mon = 1, .tm_mday = 28, .tm_hour = 12};
	n = mini_cert(der, 0x17, "300228120000Z");
	assert_int_equal(met_der_not_after(der, n), (int64_t)timegm(&tm));
	/* every truncation fails, none reads past the end */
	for (size_t k = 0; k < n; k++)
		assert_int_equal(met_der_not_after(der, k), -1);
	n = mini_cert(der, 0x17, "301328120000Z"); /* month 13 */
	assert_int_equal(met_der_not_after(der, n), -1);
	n = mini_cert(der, 0x04, "300228120000Z"); /* not a time */
	assert_int_equal(met_der_not_after(der, n), -1);
}

/* ---- HTTP -------------------------------------------------------------- */

static void test_other_paths_404_other_methods_405(void **state)
{
	struct http_reply r = get("/");
	assert_int_equal(r.status, 404);
	reply_free(&r);
	r = get("/metrics/extra");
	assert_int_equal(r.status, 404);
	reply_free(&r);
	r = get("/healthz");
	assert_int_equal(r.status, 404);
	reply_free(&r);
	r = http_fetch("127.0.0.1", met_http_port(), "POST", "/metrics");
	assert_int_equal(r.status, 405);
	assert_non_null(strcasestr(r.head, "\r\nAllow: GET, HEAD"));
	reply_free(&r);
	r = http_fetch("127.0.0.1", met_http_port(), "HEAD", "/health");
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "");
	reply_free(&r);
}

static void test_listens_on_the_configured_address_only(void **state)
{
	/* 127.0.0.2 is loopback too: a wildcard bind would answer there */
	struct http_reply r = http_fetch("127.0.0.2", met_http_port(), "GET", "/health");
	assert_int_equal(r.status, -ECONNREFUSED);
}

static void test_start_twice_or_on_foreign_address_fails(void **state)
{
	struct cfg_addr a;
	int port = met_http_port();

	assert_int_equal(cfg_parse_addr("127.0.0.1:21999", &a, 0), 0);
	assert_int_equal(met_http_start(&a), -EALREADY);
	/* still serving on the first port */
	assert_int_equal(met_http_port(), port);

	met_http_stop();
	assert_int_equal(met_http_port(), 0);
	/* TEST-NET-1 is on no local interface: bind fails, nothing is sent */
	assert_int_equal(cfg_parse_addr("192.0.2.1:21999", &a, 0), 0);
	assert_int_equal(met_http_start(&a), -EADDRNOTAVAIL);
	assert_int_equal(met_http_port(), 0);
	/* restart for the tests that follow */
	assert_int_equal(setup(NULL), 0);
}

static void test_ipv6_endpoint(void **state)
{
	struct cfg_addr a;
	struct http_reply r;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 probe = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	bool have_v6 = fd >= 0 && bind(fd, (struct sockaddr *)&probe, sizeof(probe)) == 0;

	if (fd >= 0)
		close(fd);
	if (!have_v6)
		skip(); /* no ::1 on this machine */
	met_http_stop();
	assert_int_equal(cfg_parse_addr("[::1]:1", &a, 0), 0);
	((struct sockaddr_in6 *)&a.ss)->sin6_port = 0;
	assert_int_equal(met_http_start(&a), 0);
	r = http_fetch("::1", met_http_port(), "GET", "/health");
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"status\":\"ok\""));
	reply_free(&r);
	/* bound to ::1 only, not to IPv4 as a dual-stack wildcard would be */
	r = http_fetch("127.0.0.1", met_http_port(), "GET", "/health");
	assert_int_equal(r.status, -ECONNREFUSED);
	met_http_stop();
	assert_int_equal(setup(NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_strings_are_escaped),
		cmocka_unit_test_setup(test_health_is_ok_json, reset),
		cmocka_unit_test_setup(test_health_503_when_not_ready, reset),
		cmocka_unit_test_setup(test_metrics_sum_the_workers, reset),
		cmocka_unit_test_setup(test_every_counter_is_exported, reset),
		cmocka_unit_test_setup(test_worker_threads_count_independently, reset),
		cmocka_unit_test_setup(test_blocks_do_not_share_cache_lines, reset),
		cmocka_unit_test_setup(test_render_reports_full_length, reset),
		cmocka_unit_test_setup(test_label_values_are_escaped, reset),
		cmocka_unit_test_setup(test_domains_past_the_cap_count_as_other, reset),
		cmocka_unit_test_setup(test_no_labelled_domains_at_cap_zero, reset),
		cmocka_unit_test_setup(test_link_gauges_follow_open_auth_close, reset),
		cmocka_unit_test_setup(test_conditions_are_named, reset),
		cmocka_unit_test_setup(test_certificate_not_after, reset),
		cmocka_unit_test_setup(test_other_paths_404_other_methods_405, reset),
		cmocka_unit_test_setup(test_listens_on_the_configured_address_only, reset),
		cmocka_unit_test_setup(test_start_twice_or_on_foreign_address_fails, reset),
		cmocka_unit_test_setup(test_ipv6_endpoint, reset),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
