/*
 * bench/net_relay.c — `fedhub-bench relay`: the worker runtime alone.
 *
 * Moves bytes from a sender to a sink over loopback twice: once directly
 * (sender -> sink) and once through one fedhub worker (sender -> worker ->
 * sink), where the worker forwards each received buffer as slices without
 * copying, exactly as the router forwards stanzas. Reports both rates, the
 * worker's CPU per GB, and the ratio relay/direct.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/net.h"

#define RELAY_PORT_IN   22990
#define RELAY_PORT_SINK 22991

static uint64_t total_bytes = 4ull << 30;
static struct net_conn *out_conn;
static struct net_conn *pending_in;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int listen_on(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = {
		.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
		perror("relay: listen");
		exit(1);
	}
	return fd;
}

static int dial(int port)
{
	struct sockaddr_in a = {
		.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int i = 0; i < 200; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		close(fd);
		usleep(10000);
	}
	perror("relay: connect");
	exit(1);
}

struct sink_arg {
	int lfd;
	uint64_t got;
};

static void *sink_main(void *p)
{
	struct sink_arg *s = p;
	int fd = accept(s->lfd, NULL, NULL);
	static char buf[1 << 18];
	ssize_t n;
	while (s->got < total_bytes && (n = read(fd, buf, sizeof(buf))) > 0)
		s->got += (uint64_t)n;
	close(fd);
	return NULL;
}

/* A short run would report a rate for bytes never moved: say so. */
static void send_all(int fd)
{
	static char buf[1 << 16];
	memset(buf, 'x', sizeof(buf));
	for (uint64_t sent = 0; sent < total_bytes;) {
		size_t k = sizeof(buf);
		if (total_bytes - sent < k)
			k = total_bytes - sent;
		ssize_t n = write(fd, buf, k);
		if (n <= 0) {
			fprintf(stderr, "relay: write after %llu of %llu bytes: %s\n", (unsigned long long)sent,
				(unsigned long long)total_bytes, n < 0 ? strerror(errno) : "closed");
			exit(1);
		}
		sent += (uint64_t)n;
	}
}

/* ---- the relay worker ---- */

static size_t relay_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	(void)c;
	if (out_conn && net_send_slice(out_conn, b, p, n) < 0)
		return 0; /* queue full: keep the bytes, they come again with more */
	return out_conn ? n : 0;
}
static void relay_close(struct net_conn *c, int err)
{
	(void)c;
	(void)err;
}
static void out_connect(struct net_conn *c, int err)
{
	if (err) {
		fprintf(stderr, "relay: connect to sink: %s\n", strerror(-err));
		exit(1);
	}
	__atomic_store_n(&out_conn, c, __ATOMIC_RELEASE);
}
static const struct net_conn_ops in_ops = {.on_data = relay_data, .on_close = relay_close};
static const struct net_conn_ops out_ops = {.on_data = relay_data, .on_connect = out_connect, .on_close = relay_close};

static void relay_accept(struct net_conn *c, int kind)
{
	(void)kind;
	c->ops = &in_ops;
	pending_in = c;
	struct sockaddr_in a = {
		.sin_family = AF_INET, .sin_port = htons(RELAY_PORT_SINK), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	net_connect(c->w, (struct sockaddr *)&a, sizeof(a), &out_ops, NULL);
}
static void relay_msg(struct net_worker *w, struct net_msg *m)
{
	(void)w;
	(void)m;
}

static double thread_cpu_of_process(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int bench_relay(int argc, char **argv)
{
	const char *json = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--gb") && i + 1 < argc)
			total_bytes = (uint64_t)(atof(argv[++i]) * (1ull << 30));
		else if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else {
			fprintf(stderr, "usage: fedhub-bench relay [--gb N] [--json FILE]\n");
			return 2;
		}
	}
	/* direct: sender -> sink */
	struct sink_arg s1 = {.lfd = listen_on(RELAY_PORT_SINK)};
	pthread_t th;
	pthread_create(&th, NULL, sink_main, &s1);
	int fd = dial(RELAY_PORT_SINK);
	double c0 = thread_cpu_of_process(), t0 = now_s();
	send_all(fd);
	pthread_join(th, NULL);
	double t_direct = now_s() - t0, cpu_direct = thread_cpu_of_process() - c0;
	close(fd);

	/* relay: sender -> worker -> sink */
	struct sink_arg s2 = {.lfd = s1.lfd};
	pthread_create(&th, NULL, sink_main, &s2);
	struct net_config nc = {.workers = 1, .on_accept = relay_accept, .on_msg = relay_msg};
	net_init(&nc);
	struct sockaddr_in a = {
		.sin_family = AF_INET, .sin_port = htons(RELAY_PORT_IN), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	net_set_queue_limit(1u << 30);
	if (net_listen(0, (struct sockaddr *)&a, sizeof(a)) < 0 || net_start() < 0) {
		fprintf(stderr, "relay: cannot start the worker\n");
		return 1;
	}
	fd = dial(RELAY_PORT_IN);
	/* Bytes that arrive before the worker's own connection to the sink is
	 * up cannot be forwarded: the worker holds them, and past its bound on
	 * unconsumed input it closes the link (as the router would). Start
	 * sending once the path is whole. */
	for (int i = 0; i < 500 && !__atomic_load_n(&out_conn, __ATOMIC_ACQUIRE); i++)
		usleep(10000);
	if (!__atomic_load_n(&out_conn, __ATOMIC_ACQUIRE)) {
		fprintf(stderr, "relay: the worker did not connect to the sink\n");
		return 1;
	}
	c0 = thread_cpu_of_process();
	t0 = now_s();
	send_all(fd);
	pthread_join(th, NULL);
	double t_relay = now_s() - t0, cpu_relay = thread_cpu_of_process() - c0;
	close(fd);
	net_stop();

	double gb = total_bytes / (double)(1ull << 30);
	printf("relay benchmark: %.1f GiB over loopback\n", gb);
	printf("  direct  sender->sink          %7.2f GiB/s  (process CPU %.2f s)\n", gb / t_direct, cpu_direct);
	printf("  relay   sender->worker->sink  %7.2f GiB/s  (process CPU %.2f s)\n", gb / t_relay, cpu_relay);
	printf("  ratio relay/direct            %7.2f\n", t_direct / t_relay);
	if (json) {
		FILE *f = fopen(json, "w");
		if (f) {
			fprintf(f,
				"{\"scenario\":\"relay\",\"gib\":%.2f,\"direct_gibps\":%.3f,\"relay_gibps\":%.3f,"
				"\"ratio\":%.3f,\"direct_cpu_s\":%.3f,\"relay_cpu_s\":%.3f}\n",
				gb, gb / t_direct, gb / t_relay, t_direct / t_relay, cpu_direct, cpu_relay);
			fclose(f);
		}
	}
	return 0;
}
