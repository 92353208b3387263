/*
 * bench/close_cost.c — `fedhub-bench close`: what closing one connection
 * costs the worker runtime, with 1k, 10k, 100k... connections open.
 *
 * One worker accepts connections that a child process opens to it over
 * loopback and keeps open (idle, each with its multishot receive armed, as
 * an idle s2s link). At each size the worker closes K of them in a row
 * (net_close without flush: cancel the armed requests, shutdown, close) and
 * the time per close is reported; then the child tops the count up to the
 * next size. A close whose cost grows with the number of connections open
 * shows up as a growing figure.
 *
 * Each size needs two descriptors per connection (one in each process): the
 * limits are raised as far as the hard limit allows (as root, beyond it up
 * to fs.nr_open); a size that does not fit is skipped and says so. The
 * client side binds to several 127.0.1.x source addresses so 100k
 * connections do not run out of ephemeral ports.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "bench/bench.h"
#include "net/net.h"

#define CLOSE_PORT 22992
#define MSG_CLOSE  (NET_MSG_USER + 1)
#define PER_SRC    20000 /* connections per client source address */

static struct net_conn **conns; /* worker only */
static uint32_t nconns, conns_cap;
static _Atomic uint32_t accepted, closed_total; /* open: accepted - closed_total */
static _Atomic int measured;
static _Atomic uint64_t close_ns; /* of the last round */
static uint32_t to_close;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t cc_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	(void)c, (void)b, (void)p;
	return n;
}
static void cc_close(struct net_conn *c, int err)
{
	(void)c, (void)err;
}
static const struct net_conn_ops cc_ops = {.on_data = cc_data, .on_close = cc_close};

static void cc_accept(struct net_conn *c, int kind)
{
	(void)kind;
	c->ops = &cc_ops;
	if (nconns == conns_cap) {
		conns_cap = conns_cap ? conns_cap * 2 : 4096;
		conns = realloc(conns, conns_cap * sizeof(*conns));
		if (!conns) {
			fprintf(stderr, "close: out of memory\n");
			exit(2);
		}
	}
	conns[nconns++] = c;
	atomic_fetch_add(&accepted, 1);
}

static uint32_t open_count(void)
{
	return atomic_load(&accepted) - atomic_load(&closed_total);
}

/* On the worker: close the most recent to_close connections, timed. */
static void cc_msg(struct net_worker *w, struct net_msg *m)
{
	(void)w;
	if (m->type != MSG_CLOSE)
		return;
	uint32_t k = to_close < nconns ? to_close : nconns;
	uint64_t t0 = now_ns();
	for (uint32_t i = 0; i < k; i++)
		net_close(conns[--nconns], false);
	atomic_store(&close_ns, now_ns() - t0);
	atomic_fetch_add(&closed_total, k);
	atomic_store(&measured, 1);
}

/* The child: open connections as told through the pipe, keep them. */
static void client_main(int cmd_fd, int ack_fd)
{
	uint32_t n, opened = 0;
	while (read(cmd_fd, &n, sizeof(n)) == sizeof(n)) {
		uint32_t ok = 0;
		for (uint32_t i = 0; i < n; i++, opened++) {
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			if (fd < 0)
				break;
			struct sockaddr_in src = {.sin_family = AF_INET};
			src.sin_addr.s_addr = htonl(0x7f000100u + 1 + opened / PER_SRC); /* 127.0.1.x */
			struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(CLOSE_PORT)};
			dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
			    connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
				close(fd);
				break;
			}
			ok++;
		}
		if (write(ack_fd, &ok, sizeof(ok)) != sizeof(ok))
			break;
	}
	_exit(0);
}

/* Room for `want` descriptors in this process (and in a child forked after). */
static bool fd_room(uint64_t want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return false;
	if (rl.rlim_cur >= want)
		return true;
	struct rlimit nl = {want, rl.rlim_max > want ? rl.rlim_max : want};
	return setrlimit(RLIMIT_NOFILE, &nl) == 0;
}

int bench_close(int argc, char **argv)
{
	uint32_t sizes[8] = {1000, 10000, 100000}, nsizes = 3;
	to_close = 1000;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--conns") && i + 1 < argc) {
			nsizes = 0;
			for (char *s = strtok(argv[++i], ","); s && nsizes < 8; s = strtok(NULL, ","))
				sizes[nsizes++] = (uint32_t)strtoul(s, NULL, 10);
		} else if (!strcmp(argv[i], "--closes") && i + 1 < argc) {
			to_close = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else {
			fprintf(stderr, "usage: fedhub-bench close [--conns N,N,...] [--closes K]\n"
					"  time per net_close with N connections open (default 1000,10000,100000;\n"
					"  K = 1000 closes per size)\n");
			return 2;
		}
	}
	if (!to_close)
		to_close = 1;
	uint32_t biggest = 0;
	for (uint32_t i = 0; i < nsizes; i++)
		if (sizes[i] > biggest)
			biggest = sizes[i];
	/* raise now, before the fork, as far as it goes */
	/* the child keeps the closed ones too (it never reads) */
	uint64_t room = (uint64_t)biggest + (uint64_t)to_close * nsizes + 256;
	while (room > 2048 && !fd_room(room))
		room /= 2;

	int cmd[2], ack[2];
	if (pipe(cmd) < 0 || pipe(ack) < 0)
		return 2;
	pid_t child = fork();
	if (child == 0) {
		close(cmd[1]);
		close(ack[0]);
		client_main(cmd[0], ack[1]);
	}
	close(cmd[0]);
	close(ack[1]);

	struct net_config nc = {.workers = 1, .on_accept = cc_accept, .on_msg = cc_msg};
	net_init(&nc);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(CLOSE_PORT)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (net_listen(0, (struct sockaddr *)&a, sizeof(a)) < 0 || net_start() < 0) {
		fprintf(stderr, "close: cannot start the worker on port %d\n", CLOSE_PORT);
		kill(child, SIGKILL);
		return 2;
	}
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	printf("close benchmark: one worker, idle loopback connections, %u closes per size "
	       "(descriptor limit %llu)\n",
	       to_close, (unsigned long long)rl.rlim_cur);
	printf("  %10s  %12s\n", "open", "us/close");
	int rc = 0;
	for (uint32_t s = 0; s < nsizes; s++) {
		uint32_t n = sizes[s];
		if ((uint64_t)n + (uint64_t)to_close * (s + 1) + 128 > rl.rlim_cur) {
			printf("  %10u  skipped: needs %llu descriptors per process, the limit is %llu\n", n,
			       (unsigned long long)n + (uint64_t)to_close * (s + 1) + 128,
			       (unsigned long long)rl.rlim_cur);
			continue;
		}
		/* top up to n + to_close, so n stay open while the last ones close;
		 * in steps the worker accepts before the next, so the listen
		 * backlog never overflows (an overflowed handshake is lost) */
		uint32_t want = n + to_close;
		bool ok_all = true;
		while (ok_all && open_count() < want) {
			uint32_t have = open_count(), more = want - have, ok = 0;
			if (more > 1000)
				more = 1000;
			if (write(cmd[1], &more, sizeof(more)) != sizeof(more) ||
			    read(ack[0], &ok, sizeof(ok)) != sizeof(ok) || ok != more) {
				printf("  %10u  skipped: the client opened %u of %u connections\n", n, ok, more);
				ok_all = false;
				break;
			}
			uint64_t end = now_ns() + 30ull * 1000000000ull;
			while (open_count() < have + more && now_ns() < end)
				usleep(1000);
			if (open_count() < have + more) {
				printf("  %10u  skipped: %u accepted of %u\n", n, open_count(), have + more);
				ok_all = false;
			}
		}
		if (!ok_all) {
			rc = 1;
			break;
		}
		atomic_store(&measured, 0);
		struct net_msg m = {.type = MSG_CLOSE};
		if (net_msg_send(NULL, 0, &m) < 0) {
			rc = 1;
			break;
		}
		while (!atomic_load(&measured))
			usleep(1000);
		printf("  %10u  %12.2f\n", n, atomic_load(&close_ns) / 1e3 / to_close);
		fflush(stdout);
	}
	close(cmd[1]); /* the child exits and its connections close */
	waitpid(child, NULL, 0);
	net_stop();
	return rc;
}
