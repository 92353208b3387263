/*
 * tests/unit/test_net_lat.c — the router-added latency histogram of the
 * worker runtime (net.h: net_lat_get, net_lat_bound_us).
 *
 * The buckets: every value falls in exactly one, below its bound and not
 * below the one before. Then one real worker: the accepted connection
 * echoes what it receives as slices of the receive buffer (net_send_slice,
 * as the router forwards a stanza) or as a copy (net_send_copy, as the hub
 * sends bytes it generated). Each slice echoed is counted once, copies not
 * at all, and the buckets add up to the count. Every wait is bounded;
 * nothing asserts on timing (the values themselves are not checked).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "net/net.h"
#include "net/worker-int.h"

#define WAIT_MS 10000

static _Atomic int echo_copy;        /* 0: echo as slices, 1: as copies */
static _Atomic uint64_t slices_sent; /* net_send_slice calls that queued */
static _Atomic int worker_err;
static int port;

static uint64_t ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t lat_count(uint64_t *buckets_sum)
{
	uint64_t c[NET_LAT_BUCKETS], sum, n, t = 0;
	net_lat_get(c, &sum, &n);
	for (int i = 0; i < NET_LAT_BUCKETS; i++)
		t += c[i];
	if (buckets_sum)
		*buckets_sum = t;
	return n;
}

static size_t e_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	int rc = atomic_load(&echo_copy) ? net_send_copy(c, p, n) : net_send_slice(c, b, p, n);
	if (rc < 0)
		atomic_store(&worker_err, 1);
	else if (!atomic_load(&echo_copy))
		atomic_fetch_add(&slices_sent, 1);
	return n;
}

static void e_close(struct net_conn *c, int err)
{
	(void)c, (void)err;
}

static const struct net_conn_ops e_ops = {.on_data = e_data, .on_close = e_close};

static void e_accept(struct net_conn *c, int kind)
{
	(void)kind;
	c->ops = &e_ops;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = {.tv_sec = WAIT_MS / 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Write one chunk and read its echo back whole: one receive, one slice. */
static void round_trip(int fd, size_t n)
{
	char out[512], in[512];
	for (size_t i = 0; i < n; i++)
		out[i] = (char)('a' + i % 26);
	assert_int_equal(write(fd, out, n), (ssize_t)n);
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, in + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
	assert_memory_equal(in, out, n);
}

static void test_buckets_cover_every_value_once(void **state)
{
	(void)state;
	for (int i = 1; i < NET_LAT_BUCKETS; i++)
		assert_true(net_lat_bound_us(i) > net_lat_bound_us(i - 1));
	for (uint64_t v = 0; v < (1ull << 26); v = v < 4096 ? v + 1 : v + v / 97) {
		int b = nw_lat_bucket(v);
		assert_true(b >= 0 && b < NET_LAT_BUCKETS);
		assert_true(v < net_lat_bound_us(b));
		if (b > 0)
			assert_true(v >= net_lat_bound_us(b - 1));
	}
	/* past the last bound: the overflow bucket, counted only in the total */
	assert_int_equal(nw_lat_bucket(net_lat_bound_us(NET_LAT_BUCKETS - 2)), NET_LAT_BUCKETS - 1);
	assert_int_equal(nw_lat_bucket(UINT64_MAX / 2), NET_LAT_BUCKETS - 1);
}

static void test_each_forwarded_slice_counted_once_copies_not(void **state)
{
	(void)state;
	uint64_t base = lat_count(NULL);
	int fd = dial();
	atomic_store(&echo_copy, 0);
	for (int i = 0; i < 200; i++)
		round_trip(fd, 1 + (size_t)i % 300);
	uint64_t want = base + atomic_load(&slices_sent), bsum = 0;
	assert_true(atomic_load(&slices_sent) >= 200);
	uint64_t end = ms() + WAIT_MS;
	while (lat_count(NULL) < want && ms() < end)
		usleep(1000);
	assert_int_equal(lat_count(&bsum), want);
	assert_int_equal(bsum, want);

	/* bytes the hub generated (copies) are not stanzas forwarded */
	atomic_store(&echo_copy, 1);
	for (int i = 0; i < 50; i++)
		round_trip(fd, 100);
	assert_int_equal(lat_count(NULL), want);
	assert_int_equal(atomic_load(&worker_err), 0);
	close(fd);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

static int group_setup(void **state)
{
	(void)state;
	struct net_config nc = {.workers = 1, .on_accept = e_accept};
	if (net_init(&nc) < 0)
		return -1;
	port = free_port();
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (port <= 0 || net_listen(0, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	return net_start();
}

static int group_teardown(void **state)
{
	(void)state;
	net_stop();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets_cover_every_value_once),
		cmocka_unit_test(test_each_forwarded_slice_counted_once_copies_not),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
