/*
 * tests/unit/hub_harness.h — the router running inside a test process: the
 * real runtime (net/, one worker), the real routing table and the real
 * stream handlers (s2s_in.c, s2s_out.c, dialback.c, comp.c), listening on
 * loopback ports the harness picks; the test talks to it over plain TCP
 * sockets with byte strings. Used by tests/unit/test_streams.c and
 * tests/fuzz/fuzz_s2s.c.
 *
 * The wiring is the daemon's (router/hub.c: hub_net_config, hub_fill_table);
 * what main.c adds around it (TLS, the metrics endpoint, signals) is left
 * out. DNS goes to
 * a server that does not exist (127.0.0.1:9): configurations name the peers
 * they use in [route] sections, so nothing resolves.
 */
#ifndef FEDHUB_HUB_HARNESS_H
#define FEDHUB_HUB_HARNESS_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <urcu-qsbr.h>

#include "net/alloc.h"
#include "net/dns.h"
#include "net/log.h"
#include "router/hub.h"
#include "router/comp.h"
#include "router/route.h"
#include "router/s2s.h"
#include "router/sess.h"

static struct cfg harness_cfg;
static pthread_t harness_ctrl;

static void *harness_ctrl_main(void *arg)
{
	(void)arg;
	dns_ctrl_loop();
	return NULL;
}

/* A loopback port nothing listens on right now. */
static int harness_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* Start the hub on configuration text (router.conf syntax). 0 or -1. */
static int harness_start(const char *conf)
{
	if (cfg_parse(&harness_cfg, conf, "harness.conf", stderr) != 0)
		return -1;
	hub_cfg_live = &harness_cfg;
	log_level = 1; /* warnings and errors */
	/* any fixed key: XEP-0185 keys only need to be the same both ways */
	memset(hub_dialback_key, 'a', 64);
	hub_dialback_key[64] = 0;
	if (rt_init() < 0)
		return -1;
	rcu_register_thread();
	int rc = hub_fill_table(&harness_cfg);
	rcu_thread_offline();
	if (rc)
		return -1;
	s2s_in_init();
	net_set_queue_limit(harness_cfg.send_queue_max);
	struct net_config nc;
	hub_net_config(&nc, &harness_cfg);
	nc.workers = 1;
	if (net_init(&nc) < 0)
		return -1;
	met_init(net_nworkers());
	if (dns_init("127.0.0.1:9") < 0)
		return -1;
	for (int i = 0; i < harness_cfg.nlisten; i++) {
		struct cfg_listen *l = &harness_cfg.listen[i];
		if (net_listen(i, (struct sockaddr *)&l->addr.ss, l->addr.len) < 0)
			return -1;
	}
	if (net_start() < 0)
		return -1;
	return pthread_create(&harness_ctrl, NULL, harness_ctrl_main, NULL) == 0 ? 0 : -1;
}

__attribute__((unused)) static void harness_stop(void)
{
	net_stop();
	pthread_join(harness_ctrl, NULL);
}

/* A blocking loopback connection whose reads give up after ms. */
static int harness_connect(int port, int ms)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A listening loopback socket on port (a peer's server the hub dials). */
static int harness_listen(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 8) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Accept one connection within ms; its reads give up after ms too. */
static int harness_accept_one(int lfd, int ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return -1;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static int harness_send(int fd, const char *s)
{
	size_t n = strlen(s);
	return send(fd, s, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* What a connection has received so far: read more until `want` appears,
 * the peer closes or a read times out. Returns whether `want` is in it. */
struct harness_rx {
	char buf[16384];
	size_t n;
	bool closed;
};

static bool harness_expect(int fd, struct harness_rx *rx, const char *want)
{
	for (;;) {
		rx->buf[rx->n] = 0;
		if (want && strstr(rx->buf, want))
			return true;
		if (rx->closed || rx->n + 1 >= sizeof(rx->buf))
			return false;
		ssize_t k = recv(fd, rx->buf + rx->n, sizeof(rx->buf) - 1 - rx->n, 0);
		if (k == 0) {
			rx->closed = true;
		} else if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECONNRESET)
				rx->closed = true;
			else
				return false; /* timed out */
		} else {
			rx->n += (size_t)k;
		}
	}
}

/* Read until the peer closes (or a read times out): true if it closed. */
static bool harness_wait_close(int fd, struct harness_rx *rx)
{
	harness_expect(fd, rx, NULL);
	return rx->closed;
}

/* The value of attribute `name` in the first element of s that has one. */
static bool harness_attr(const char *s, const char *name, char *out, size_t cap)
{
	char pat[64];
	for (const char *q = "'\""; *q; q++) {
		snprintf(pat, sizeof(pat), " %s=%c", name, *q);
		const char *p = strstr(s, pat);
		if (!p)
			continue;
		p += strlen(pat);
		const char *e = strchr(p, *q);
		if (!e || (size_t)(e - p) >= cap)
			return false;
		memcpy(out, p, (size_t)(e - p));
		out[e - p] = 0;
		return true;
	}
	return false;
}

#endif
