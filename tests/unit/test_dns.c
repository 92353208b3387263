/*
 * tests/unit/test_dns.c — the resolver: its cache (net/dns_cache.c) with an
 * injected clock, then the whole of net/dns.c against a real dnsmasq that
 * the test starts on a free loopback port (no root, nothing beyond
 * 127.0.0.1) and stops by PID: merging of identical lookups, the in-flight
 * bound, negative answers, and retries when the server stops answering.
 *
 * The resolver runs as in the daemon: the real worker runtime with one
 * worker, which submits requests and receives the results, and
 * dns_ctrl_loop on a control thread. Every wait is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "net/dns.h"
#include "net/dns_cache.h"
#include "net/net.h"

/* ---- the cache, with a clock the test moves ---- */

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
	return fake_now;
}

static struct dns_cache *mkcache(uint32_t max)
{
	struct dns_cache_opts o = {.max = max, .ttl_min = 60, .ttl_max = 3600, .now_ms = fake_clock};
	return dns_cache_new(&o);
}

static struct dns_target one_target(int port)
{
	struct dns_target t;
	memset(&t, 0, sizeof(t));
	struct sockaddr_in *a = (struct sockaddr_in *)&t.ss;
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t.len = sizeof(*a);
	return t;
}

static int port_of(const struct dns_target *t)
{
	return ntohs(((const struct sockaddr_in *)&t->ss)->sin_port);
}

static void test_cache_grows_and_finds_every_entry(void **state)
{
	(void)state;
	fake_now = 1000000;
	struct dns_cache *c = mkcache(5000);
	char d[64];
	for (int i = 0; i < 5000; i++) {
		snprintf(d, sizeof(d), "d%d.example", i);
		struct dns_target t = one_target(1000 + i);
		assert_false(dns_cache_put(c, d, 0, 1, &t, 600));
	}
	assert_int_equal(dns_cache_count(c), 5000);
	for (int i = 0; i < 5000; i++) {
		snprintf(d, sizeof(d), "D%d.Example", i); /* names compare case-insensitively */
		int st = 1, nt = 0;
		struct dns_target t[DNS_MAX_TARGETS];
		assert_true(dns_cache_get(c, d, &st, &nt, t));
		assert_int_equal(st, 0);
		assert_int_equal(nt, 1);
		assert_int_equal(port_of(&t[0]), 1000 + i);
	}
	int st, nt;
	struct dns_target t[DNS_MAX_TARGETS];
	assert_false(dns_cache_get(c, "absent.example", &st, &nt, t));
	assert_int_equal(dns_cache_evictions(c), 0);
	dns_cache_free(c);
}

static void test_cache_full_evicts_least_recently_used(void **state)
{
	(void)state;
	fake_now = 1000000;
	struct dns_cache *c = mkcache(3);
	struct dns_target t = one_target(5269), out[DNS_MAX_TARGETS];
	int st, nt;
	dns_cache_put(c, "a.example", 0, 1, &t, 600);
	dns_cache_put(c, "b.example", 0, 1, &t, 600);
	dns_cache_put(c, "c.example", 0, 1, &t, 600);
	assert_true(dns_cache_get(c, "a.example", &st, &nt, out)); /* a is now the most recent */
	dns_cache_put(c, "d.example", 0, 1, &t, 600);              /* evicts b */
	assert_int_equal(dns_cache_count(c), 3);
	assert_int_equal(dns_cache_evictions(c), 1);
	assert_false(dns_cache_get(c, "b.example", &st, &nt, out));
	assert_true(dns_cache_get(c, "a.example", &st, &nt, out));
	assert_true(dns_cache_get(c, "c.example", &st, &nt, out));
	assert_true(dns_cache_get(c, "d.example", &st, &nt, out));
	/* many more: the size stays at the bound */
	char d[64];
	for (int i = 0; i < 1000; i++) {
		snprintf(d, sizeof(d), "x%d.example", i);
		dns_cache_put(c, d, 0, 1, &t, 600);
	}
	assert_int_equal(dns_cache_count(c), 3);
	assert_true(dns_cache_get(c, "x999.example", &st, &nt, out));
	assert_false(dns_cache_get(c, "a.example", &st, &nt, out));
	dns_cache_free(c);
}

static void test_cache_ttl_floor_and_ceiling(void **state)
{
	(void)state;
	fake_now = 1000000;
	struct dns_cache *c = mkcache(16);
	struct dns_target t = one_target(5269), out[DNS_MAX_TARGETS];
	int st, nt;
	dns_cache_put(c, "short.example", 0, 1, &t, 1);     /* floor: 60 s */
	dns_cache_put(c, "long.example", 0, 1, &t, 864000); /* ceiling: 3600 s */
	dns_cache_put(c, "mid.example", 0, 1, &t, 600);
	assert_int_equal(dns_cache_ttl(c, 0, 1), 60);
	assert_int_equal(dns_cache_ttl(c, 0, 864000), 3600);
	assert_int_equal(dns_cache_ttl(c, 0, 600), 600);
	fake_now += 59 * 1000;
	assert_true(dns_cache_get(c, "short.example", &st, &nt, out));
	fake_now += 2 * 1000; /* 61 s */
	assert_false(dns_cache_get(c, "short.example", &st, &nt, out));
	assert_true(dns_cache_get(c, "mid.example", &st, &nt, out));
	fake_now = 1000000 + 601 * 1000;
	assert_false(dns_cache_get(c, "mid.example", &st, &nt, out));
	fake_now = 1000000 + 3599 * 1000;
	assert_true(dns_cache_get(c, "long.example", &st, &nt, out));
	fake_now = 1000000 + 3601 * 1000;
	assert_false(dns_cache_get(c, "long.example", &st, &nt, out));
	dns_cache_free(c);
}

static void test_cache_negative_entries_are_short_and_logged_once(void **state)
{
	(void)state;
	fake_now = 1000000;
	struct dns_cache *c = mkcache(16);
	struct dns_target t = one_target(5269), out[DNS_MAX_TARGETS];
	int st = 0, nt = 5;
	assert_true(dns_cache_put(c, "nx.example", -ENOENT, 0, NULL, 86400)); /* the first failure: log */
	assert_true(dns_cache_put(c, "slow.example", -ETIMEDOUT, 0, NULL, 0));
	assert_int_equal(dns_cache_ttl(c, -ENOENT, 86400), DNS_NEG_TTL);
	assert_int_equal(dns_cache_ttl(c, -ETIMEDOUT, 0), DNS_FAIL_TTL);
	assert_true(dns_cache_get(c, "nx.example", &st, &nt, out));
	assert_int_equal(st, -ENOENT);
	assert_int_equal(nt, 0);
	fake_now += (DNS_FAIL_TTL + 1) * 1000;
	assert_false(dns_cache_get(c, "slow.example", &st, &nt, out));
	assert_true(dns_cache_get(c, "nx.example", &st, &nt, out));
	fake_now += DNS_NEG_TTL * 1000;
	assert_false(dns_cache_get(c, "nx.example", &st, &nt, out));
	/* failing again: cached again, not logged again */
	assert_false(dns_cache_put(c, "nx.example", -ENOENT, 0, NULL, 0));
	assert_true(dns_cache_get(c, "nx.example", &st, &nt, out));
	/* a success in between makes the next failure worth a line */
	dns_cache_put(c, "nx.example", 0, 1, &t, 600);
	assert_true(dns_cache_put(c, "nx.example", -EIO, 0, NULL, 0));
	/* an answer without targets is a negative one */
	dns_cache_put(c, "empty.example", 0, 0, NULL, 600);
	assert_true(dns_cache_get(c, "empty.example", &st, &nt, out));
	assert_int_equal(st, -ENOENT);
	dns_cache_free(c);
}

/* ---- the resolver against dnsmasq ---- */

#define NDOM      3000 /* more than the pending table's first 1024 buckets: it grows twice */
#define NSAME     50
#define NWEIGHT   200 /* domains per weighted-pick sample */
#define INFLIGHT  8
#define WAIT_MS   20000
#define MSG_START (NET_MSG_USER + 40)

static char dir[64];
static pid_t dnsmasq = -1;
static pthread_t ctrl;
static bool ctrl_started;

static struct dns_req reqs[NDOM + NSAME + 8];
static int nreqs;        /* requests of the current round (worker reads it on MSG_START) */
static _Atomic int done; /* results back on the worker */

static uint64_t ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void w_msg(struct net_worker *w, struct net_msg *m)
{
	if (m->type == MSG_START) {
		for (int i = 0; i < nreqs; i++)
			if (dns_submit(w, &reqs[i]) < 0)
				abort(); /* the ring holds 16384: cannot happen here */
	} else if (m->type == DNS_MSG_RESULT) {
		atomic_fetch_add(&done, 1);
	}
}

static void w_accept(struct net_conn *c, int kind)
{
	(void)kind;
	net_close(c, false);
}

static void *ctrl_main(void *arg)
{
	(void)arg;
	dns_ctrl_loop();
	return NULL;
}

/* Submit the first n of reqs from the worker and wait for every result. */
static void round_trip(int n)
{
	atomic_store(&done, 0);
	nreqs = n;
	struct net_msg m = {.type = MSG_START};
	assert_int_equal(net_msg_send(NULL, 0, &m), 0);
	uint64_t end = ms() + WAIT_MS;
	while (atomic_load(&done) < n && ms() < end)
		usleep(2000);
	assert_int_equal(atomic_load(&done), n);
}

static void req(int i, const char *fmt, int k)
{
	memset(&reqs[i], 0, sizeof(reqs[i]));
	snprintf(reqs[i].domain, sizeof(reqs[i].domain), fmt, k);
}

static void test_resolver_bounds_inflight_and_answers_all(void **state)
{
	(void)state;
	struct dns_stats a, b;
	dns_stats_get(&a);
	for (int i = 0; i < NDOM; i++)
		req(i, "d%d.fhdns", i);
	round_trip(NDOM);
	dns_stats_get(&b);
	for (int i = 0; i < NDOM; i++) {
		assert_int_equal(reqs[i].status, 0);
		assert_int_equal(reqs[i].ntargets, 1);
		assert_int_equal(port_of(&reqs[i].t[0]), 10000 + i);
		assert_int_equal(((struct sockaddr_in *)&reqs[i].t[0].ss)->sin_addr.s_addr, htonl(0x7f000009));
	}
	assert_int_equal(b.lookups - a.lookups, NDOM);
	assert_int_equal(b.misses - a.misses, NDOM);
	assert_int_equal(b.queries_srv - a.queries_srv, 2 * NDOM);
	/* the burst was held to the bound, and reached it */
	assert_int_equal(b.inflight_peak, INFLIGHT);
	assert_int_equal(b.inflight, 0);
	assert_int_equal(b.queued, 0);
	assert_true(b.cache_entries >= NDOM);

	/* the same again: all from the cache, no query */
	round_trip(NDOM);
	struct dns_stats c;
	dns_stats_get(&c);
	assert_int_equal(c.hits - b.hits, NDOM);
	assert_int_equal(c.queries_srv, b.queries_srv);
	assert_int_equal(reqs[NDOM - 1].status, 0);
}

static void test_resolver_merges_identical_lookups(void **state)
{
	(void)state;
	struct dns_stats a, b;
	dns_stats_get(&a);
	for (int i = 0; i < NSAME; i++)
		req(i, "same%d.fhdns", 0);
	round_trip(NSAME);
	dns_stats_get(&b);
	assert_int_equal(b.queries_srv - a.queries_srv, 2); /* one lookup */
	assert_int_equal(b.merged - a.merged, NSAME - 1);
	for (int i = 0; i < NSAME; i++) {
		assert_int_equal(reqs[i].status, 0);
		assert_int_equal(reqs[i].ntargets, 1);
		assert_int_equal(port_of(&reqs[i].t[0]), 5299);
	}
}

/* RFC 2782: every target of the lowest priority before any of the next;
 * XEP-0368 §3: at equal priority direct TLS (_xmpps-server) first. */
static void test_srv_priority_order_and_direct_tls_first(void **state)
{
	(void)state;
	req(0, "prio%d.fhdns", 0);
	round_trip(1);
	assert_int_equal(reqs[0].status, 0);
	assert_int_equal(reqs[0].ntargets, 4);
	assert_int_equal(port_of(&reqs[0].t[0]), 5003);
	assert_true(reqs[0].t[0].tls);
	int a = port_of(&reqs[0].t[1]), b = port_of(&reqs[0].t[2]);
	assert_true((a == 5002 && b == 5004) || (a == 5004 && b == 5002)); /* both priority 10 */
	assert_false(reqs[0].t[1].tls || reqs[0].t[2].tls);
	assert_int_equal(port_of(&reqs[0].t[3]), 5001); /* priority 20 */
}

/* Within one priority the pick is weighted random: a weight of 99 against
 * 1 comes first nearly always, two equal weights about as often each. The
 * bounds are far enough out that chance alone fails them less than once in
 * 10^6 runs. */
static void test_srv_weighted_random_within_a_priority(void **state)
{
	(void)state;
	int heavy = 0, first_a = 0;
	for (int i = 0; i < NWEIGHT; i++)
		req(i, "w%d.fhdns", i);
	round_trip(NWEIGHT);
	for (int i = 0; i < NWEIGHT; i++) {
		assert_int_equal(reqs[i].status, 0);
		assert_int_equal(reqs[i].ntargets, 2);
		heavy += port_of(&reqs[i].t[0]) == 6002;
		assert_int_equal(port_of(&reqs[i].t[0]) + port_of(&reqs[i].t[1]), 6001 + 6002);
	}
	assert_true(heavy > NWEIGHT * 3 / 4);
	for (int i = 0; i < NWEIGHT; i++)
		req(i, "e%d.fhdns", i);
	round_trip(NWEIGHT);
	for (int i = 0; i < NWEIGHT; i++) {
		assert_int_equal(reqs[i].ntargets, 2);
		first_a += port_of(&reqs[i].t[0]) == 7001;
	}
	assert_true(first_a > NWEIGHT / 4 && first_a < NWEIGHT * 3 / 4);
}

/* RFC 2782, RFC 6120 §3.2.1: a lone "." target says the service is not
 * offered: no fallback to the domain's own address. */
static void test_srv_dot_target_means_no_service(void **state)
{
	(void)state;
	struct dns_stats a, b;
	dns_stats_get(&a);
	req(0, "nosvc%d.fhdns", 0);
	req(1, "tlsdot%d.fhdns", 0);
	round_trip(2);
	dns_stats_get(&b);
	assert_int_equal(reqs[0].status, -ENOENT);
	assert_int_equal(reqs[0].ntargets, 0);
	/* a "." for direct TLS only drops that service */
	assert_int_equal(reqs[1].status, 0);
	assert_int_equal(reqs[1].ntargets, 1);
	assert_false(reqs[1].t[0].tls);
	/* and nobody looks the root up as an address */
	assert_int_equal(b.queries_addr - a.queries_addr, 1);
}

static void test_resolver_caches_failures(void **state)
{
	(void)state;
	struct dns_stats a, b;
	dns_stats_get(&a);
	req(0, "nx%d.fhdns", 1);
	round_trip(1);
	assert_int_equal(reqs[0].status, -ENOENT);
	req(0, "nx%d.fhdns", 1);
	round_trip(1);
	assert_int_equal(reqs[0].status, -ENOENT);
	dns_stats_get(&b);
	assert_int_equal(b.fail_nxdomain - a.fail_nxdomain, 1);
	assert_int_equal(b.hits_negative - a.hits_negative, 1);
}

static void test_resolver_retries_a_server_that_stopped(void **state)
{
	(void)state;
	struct dns_stats a, b;
	dns_stats_get(&a);
	assert_int_equal(kill(dnsmasq, SIGSTOP), 0);
	req(0, "d%d.fhdns", 9999);
	req(1, "d%d.fhdns", 9998);
	round_trip(2);
	assert_int_equal(kill(dnsmasq, SIGCONT), 0);
	dns_stats_get(&b);
	assert_int_equal(reqs[0].status, -ETIMEDOUT);
	assert_int_equal(reqs[1].status, -ETIMEDOUT);
	assert_int_equal(b.retries - a.retries, 4); /* two lookups, two retries each */
	assert_int_equal(b.fail_timeout - a.fail_timeout, 2);
}

/* A loopback port free for UDP and TCP (dnsmasq binds both). Another
 * process may take it before dnsmasq does: the caller tries again. */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;
	if (u >= 0 && t >= 0 && bind(u, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(u, (struct sockaddr *)&a, &len) == 0 && bind(t, (struct sockaddr *)&a, sizeof(a)) == 0)
		port = ntohs(a.sin_port);
	if (u >= 0)
		close(u);
	if (t >= 0)
		close(t);
	return port;
}

/* dnsmasq on a free port, in the foreground of a child; its port or -1. */
static int start_dnsmasq(const char *conf)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		int port = free_port();
		if (port <= 0)
			continue;
		dnsmasq = fork();
		if (dnsmasq == 0) {
			char p[32], cf[160];
			snprintf(p, sizeof(p), "--port=%d", port);
			snprintf(cf, sizeof(cf), "--conf-file=%s", conf);
			execlp("dnsmasq", "dnsmasq", "-k", p, "--listen-address=127.0.0.1", "--bind-interfaces",
			       "--no-resolv", "--no-hosts", "--user=", "--pid-file=", cf, (char *)NULL);
			_exit(127);
		}
		if (dnsmasq < 0)
			return -1;
		usleep(300000);
		if (waitpid(dnsmasq, NULL, WNOHANG) == 0)
			return port;
	}
	fprintf(stderr, "dnsmasq did not start\n");
	dnsmasq = -1;
	return -1;
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/fedhub-dns-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	char conf[128];
	snprintf(conf, sizeof(conf), "%s/dnsmasq.conf", dir);
	FILE *f = fopen(conf, "w");
	if (!f)
		return -1;
	fprintf(f, "local=/fhdns/\naddress=/target.fhdns/127.0.0.9\n");
	for (int i = 0; i < NDOM; i++)
		fprintf(f, "srv-host=_xmpp-server._tcp.d%d.fhdns,target.fhdns,%d\n", i, 10000 + i);
	fprintf(f, "srv-host=_xmpp-server._tcp.same0.fhdns,target.fhdns,5299\n");
	/* SRV ordering: priority 20 and 10, direct TLS at 10; weights 1 and 99, 0 and 0 */
	fprintf(f, "srv-host=_xmpp-server._tcp.prio0.fhdns,target.fhdns,5001,20,0\n"
		   "srv-host=_xmpp-server._tcp.prio0.fhdns,target.fhdns,5002,10,0\n"
		   "srv-host=_xmpp-server._tcp.prio0.fhdns,target.fhdns,5004,10,0\n"
		   "srv-host=_xmpps-server._tcp.prio0.fhdns,target.fhdns,5003,10,0\n"
		   "srv-host=_xmpp-server._tcp.nosvc0.fhdns\n"
		   "srv-host=_xmpps-server._tcp.tlsdot0.fhdns\n"
		   "srv-host=_xmpp-server._tcp.tlsdot0.fhdns,target.fhdns,5005,10,0\n"
		   "address=/nosvc0.fhdns/127.0.0.9\n");
	for (int i = 0; i < NWEIGHT; i++)
		fprintf(f,
			"srv-host=_xmpp-server._tcp.w%d.fhdns,target.fhdns,6001,10,1\n"
			"srv-host=_xmpp-server._tcp.w%d.fhdns,target.fhdns,6002,10,99\n"
			"srv-host=_xmpp-server._tcp.e%d.fhdns,target.fhdns,7001,10,0\n"
			"srv-host=_xmpp-server._tcp.e%d.fhdns,target.fhdns,7002,10,0\n",
			i, i, i, i);
	fclose(f);
	int port = start_dnsmasq(conf);
	if (port < 0)
		return -1;

	struct net_config nc = {.workers = 1, .on_msg = w_msg, .on_accept = w_accept, .on_ctrl_msg = dns_on_ctrl_msg};
	if (net_init(&nc) < 0)
		return -1;
	char server[64];
	snprintf(server, sizeof(server), "127.0.0.1:%d", port);
	if (dns_init(server) < 0)
		return -1;
	dns_set_limits(
		&(struct dns_limits){.cache_max = 4000, .ttl_min = 30, .ttl_max = 3600, .max_inflight = INFLIGHT});
	if (net_start() < 0)
		return -1;
	if (pthread_create(&ctrl, NULL, ctrl_main, NULL) != 0)
		return -1;
	ctrl_started = true;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	net_stop();
	if (ctrl_started)
		pthread_join(ctrl, NULL);
	if (dnsmasq > 0) {
		kill(dnsmasq, SIGCONT);
		kill(dnsmasq, SIGTERM);
		waitpid(dnsmasq, NULL, 0);
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest cache_tests[] = {
		cmocka_unit_test(test_cache_grows_and_finds_every_entry),
		cmocka_unit_test(test_cache_full_evicts_least_recently_used),
		cmocka_unit_test(test_cache_ttl_floor_and_ceiling),
		cmocka_unit_test(test_cache_negative_entries_are_short_and_logged_once),
	};
	const struct CMUnitTest resolver_tests[] = {
		cmocka_unit_test(test_resolver_bounds_inflight_and_answers_all),
		cmocka_unit_test(test_resolver_merges_identical_lookups),
		cmocka_unit_test(test_srv_priority_order_and_direct_tls_first),
		cmocka_unit_test(test_srv_weighted_random_within_a_priority),
		cmocka_unit_test(test_srv_dot_target_means_no_service),
		cmocka_unit_test(test_resolver_caches_failures),
		cmocka_unit_test(test_resolver_retries_a_server_that_stopped),
	};
	int rc = cmocka_run_group_tests_name("dns_cache", cache_tests, NULL, NULL);
	rc |= cmocka_run_group_tests_name("dns_resolver", resolver_tests, group_setup, group_teardown);
	return rc;
}
