/*
 * tests/fuzz/fuzz_s2s.c — the stream negotiation state machines on arbitrary
 * bytes (libFuzzer), through the harness of the unit tests
 * (tests/unit/hub_harness.h): the router runs in this process on the real
 * runtime with one worker, and each input is one loopback connection.
 *
 * The first byte picks the stream, the rest is what the remote side sends:
 *   0  inbound s2s: the bytes go to the hub's s2s listener;
 *   1  component: the bytes go to the component listener;
 *   2  outbound s2s: a component stanza for a remote domain makes the hub
 *      dial that domain's [route], this process; the bytes are the remote
 *      server's answer to the hub's stream header.
 * The input ends with a half-close; the hub must close the stream (a stream
 * error, or the end of the stream) and stay up: a crash, a sanitizer report,
 * a leak or a stream left open after the input fails. A dialback
 * verification the inbound bytes ask for goes to the [route] of its domain,
 * this process, which answers nothing, so it ends with the input.
 *
 * Seeds: tests/fuzz/corpus/s2s/ (one per stream kind and step). Run:
 * make fuzz && build/fuzz/fuzz_s2s -max_len=4096 -max_total_time=600 <a copy of that directory>
 */
#include <fcntl.h>
#include <stdint.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha.h>

#include "tests/unit/hub_harness.h"

#define NREMOTE 32 /* remote domains in turn: each failed link backs off retry_min */
#define WAIT_MS 2000

static int s2s_port, comp_port, auth_lfd, remote_lfd, comp_fd = -1;
static unsigned next_remote;

static void must(bool ok)
{
	if (!ok)
		abort();
}

/* Read what is there without waiting: the component gets bounces. */
static void drain(int fd)
{
	char buf[4096];
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

static int component_up(void)
{
	struct harness_rx rx = {0};
	int fd = harness_connect(comp_port, WAIT_MS);
	must(fd >= 0);
	must(harness_send(fd, "<stream:stream xmlns='jabber:component:accept' "
			      "xmlns:stream='http://etherx.jabber.org/streams' to='comp.ours.example'>") == 0);
	must(harness_expect(fd, &rx, "from='comp.ours.example'>"));
	char id[128], in[256], hex[2 * WC_SHA_DIGEST_SIZE + 1], hs[128];
	unsigned char d[WC_SHA_DIGEST_SIZE];
	must(harness_attr(rx.buf, "id", id, sizeof(id)));
	snprintf(in, sizeof(in), "%ss3cret", id);
	must(wc_ShaHash((const byte *)in, (word32)strlen(in), d) == 0);
	hex_encode(d, sizeof(d), hex);
	snprintf(hs, sizeof(hs), "<handshake>%s</handshake>", hex);
	must(harness_send(fd, hs) == 0);
	must(harness_expect(fd, &rx, "<handshake/>"));
	return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	int auth_port = harness_free_port();
	int remote_port = harness_free_port();
	s2s_port = harness_free_port();
	comp_port = harness_free_port();
	auth_lfd = harness_listen(auth_port);
	remote_lfd = harness_listen(remote_port);
	must(auth_lfd >= 0 && remote_lfd >= 0);
	char conf[8192];
	int n = snprintf(conf, sizeof(conf),
			 "[hub]\n"
			 "domain hub.example\n"
			 "listen s2s 127.0.0.1:%d tls off\n"
			 "listen component 127.0.0.1:%d\n"
			 "s2s_tls off\n"
			 "retry_min 1s\n"
			 "connect_timeout 1s\n"
			 "[domain ours.example]\n"
			 "[component comp.ours.example]\n"
			 "secret s3cret\n"
			 "[route peer.example]\n"
			 "connect 127.0.0.1:%d\n",
			 s2s_port, comp_port, auth_port);
	for (int i = 0; i < NREMOTE; i++)
		n += snprintf(conf + n, sizeof(conf) - (size_t)n, "[route far%d.example]\nconnect 127.0.0.1:%d\n", i,
			      remote_port);
	must(n < (int)sizeof(conf));
	must(harness_start(conf) == 0);
	log_level = -1; /* every input draws stream errors: keep the output for findings */
	comp_fd = component_up();
	return 0;
}

/* After a hang: does the worker still answer a new stream? */
static void probe(void)
{
	struct harness_rx prx = {0};
	int fd = harness_connect(s2s_port, WAIT_MS);
	bool alive =
		fd >= 0 &&
		harness_send(fd,
			     "<stream:stream xmlns='jabber:server' "
			     "xmlns:stream='http://etherx.jabber.org/streams' to='ours.example' version='1.0'>") == 0 &&
		harness_expect(fd, &prx, "</stream:features>");
	fprintf(stderr, "fuzz_s2s: a new inbound stream %s\n", alive ? "is answered" : "gets no answer");
	if (fd >= 0)
		close(fd);
}

/* Send the input, half-close, and wait for the hub to close the stream.
 * seen: what the hub sent before the input (outbound: its header). */
static void feed(int fd, const uint8_t *p, size_t n, const char *seen)
{
	size_t off = 0;
	while (off < n) {
		ssize_t k = send(fd, p + off, n - off, MSG_NOSIGNAL);
		if (k <= 0)
			break; /* the hub closed first: fine */
		off += (size_t)k;
	}
	shutdown(fd, SHUT_WR);
	static struct harness_rx rx;
	rx.n = 0;
	rx.closed = false;
	while (!harness_wait_close(fd, &rx)) {
		if (rx.n + 1 < sizeof(rx.buf) && !rx.closed) {
			/* WAIT_MS without a byte or a close: the stream hangs */
			fprintf(stderr, "fuzz_s2s: the hub left the stream open; before: %s\nafter: %.*s\n", seen,
				(int)rx.n, rx.buf);
			probe();
			abort();
		}
		rx.n = 0; /* a full buffer: only closing matters */
	}
	close(fd);
}

/* A verification the input asked for: take the connection and drop it. */
static void drop_verifications(void)
{
	struct pollfd p = {.fd = auth_lfd, .events = POLLIN};
	while (poll(&p, 1, 0) == 1) {
		int fd = accept4(auth_lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			break;
		close(fd);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	drain(comp_fd);
	drop_verifications();
	int fd = -1;
	static struct harness_rx rx;
	rx.n = 0;
	rx.closed = false;
	rx.buf[0] = 0;
	switch (data[0] % 3) {
	case 0:
		fd = harness_connect(s2s_port, WAIT_MS);
		break;
	case 1:
		fd = harness_connect(comp_port, WAIT_MS);
		break;
	case 2: {
		char m[160];
		snprintf(m, sizeof(m), "<message from='bot@comp.ours.example' to='u@far%u.example'/>",
			 next_remote++ % NREMOTE);
		must(harness_send(comp_fd, m) == 0);
		fd = harness_accept_one(remote_lfd, 200);
		if (fd < 0)
			return 0; /* that domain is backing off: its stanza bounces */
		must(harness_expect(fd, &rx, "<stream:stream"));
		must(harness_expect(fd, &rx, ">"));
		break;
	}
	}
	must(fd >= 0);
	feed(fd, data + 1, size - 1, rx.buf);
	drop_verifications();
	return 0;
}
