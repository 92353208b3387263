/*
 * bench/hubmet.c — the target's own account of the time a stanza spends in
 * it: fedhub's /metrics histogram fedhub_router_latency_seconds (per stanza,
 * from the loop turn that received it to the one that handed it to the
 * kernel; net/net.h), read over HTTP at the start and at the end of the
 * measured window. The difference is the window's stanzas, the bench's own
 * time and loopback TCP excluded. A blocking GET with a 2 s timeout, twice a
 * run, outside the stanza path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "bench/bench.h"

#define PFX "fedhub_router_latency_seconds_bucket{le=\""

int bench_hublat_read(const struct sockaddr_in *a, struct bench_hublat *h)
{
	memset(h, 0, sizeof(*h));
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	static const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	if (connect(fd, (const struct sockaddr *)a, sizeof *a) < 0 || write(fd, req, sizeof req - 1) != sizeof req - 1) {
		close(fd);
		return -1;
	}
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (!buf)
			break;
		if (len + 4096 > cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (!buf)
		return -1;
	buf[len] = 0;
	for (char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (!strncmp(p, PFX, sizeof PFX - 1)) {
			char *q = p + sizeof PFX - 1;
			double le = strncmp(q, "+Inf", 4) ? strtod(q, NULL) : 1e300;
			char *e = strstr(q, "} ");
			if (!e || h->n >= BENCH_HUBLAT_MAX)
				continue;
			h->le[h->n] = le;
			h->cum[h->n] = strtoull(e + 2, NULL, 10);
			h->n++;
		} else if (!strncmp(p, "fedhub_router_latency_seconds_sum ", 34)) {
			h->sum_s = strtod(p + 34, NULL);
		} else if (!strncmp(p, "fedhub_router_latency_seconds_count ", 36)) {
			h->count = strtoull(p + 36, NULL, 10);
		}
	}
	free(buf);
	return h->n > 0 ? 0 : -1;
}

/* d = b - a (the same buckets: the same target process) */
int bench_hublat_diff(const struct bench_hublat *a, const struct bench_hublat *b, struct bench_hublat *d)
{
	if (a->n != b->n)
		return -1;
	*d = *b;
	for (int i = 0; i < b->n; i++)
		d->cum[i] = b->cum[i] >= a->cum[i] ? b->cum[i] - a->cum[i] : 0;
	d->count = b->count >= a->count ? b->count - a->count : 0;
	d->sum_s = b->sum_s - a->sum_s;
	return 0;
}

/* The upper bound (µs) of the bucket holding the q-quantile: the stanza at
 * that rank spent at most this long in the hub. */
double bench_hublat_quantile(const struct bench_hublat *d, double q)
{
	uint64_t total = d->n ? d->cum[d->n - 1] : 0;
	if (!total)
		return 0;
	double rank = q * (double)total;
	for (int i = 0; i < d->n; i++)
		if ((double)d->cum[i] >= rank)
			return d->le[i] >= 1e300 ? (i ? d->le[i - 1] * 1e6 : 0) : d->le[i] * 1e6;
	return d->le[d->n - 1] * 1e6;
}
