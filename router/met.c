/*
 * router/met.c — counters, gauges, and the /health + /metrics HTTP endpoint.
 *
 * Design. The stanza path must not pay for observability: each worker owns a
 * cache-line-aligned block of 64-bit counters and bumps them with plain
 * relaxed stores (MET_INC in met.h: no lock prefix, no shared line). Nobody
 * else writes a block. Readers (the HTTP thread) load each field relaxed and
 * sum across blocks when /metrics is fetched, so a scrape costs
 * O(workers x counters) once, and the workers never notice it.
 *
 * The one other state, the ready flag that /health reports (cleared when
 * shutdown begins), changes once and sits behind a mutex that only the main
 * thread and the HTTP thread take (a render holds it throughout; workers
 * never take it).
 *
 * The endpoint is libmicrohttpd with its own polling thread, bound to the one
 * configured address (loopback by default): it is for the operator's scraper
 * and the load balancer's health check, not for the Internet. A response is
 * rendered into a fresh buffer per request; nothing is cached, so what it
 * shows is as fresh as the last store of each worker.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <microhttpd.h>
#include "net/dns.h"
#include "net/log.h"
#include "net/net.h"
#include "router/met.h"

static struct {
	struct met_worker *blocks; /* one per worker */
	int nworkers;
	struct timespec start;
	bool ready;

	pthread_mutex_t lock; /* ready, and blocks against met_init/met_free */

	struct MHD_Daemon *httpd;
	int port;
} met = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = true};

/* ---- counters ------------------------------------------------------------ */

int met_init(int nworkers)
{
	struct met_worker *b;
	size_t n;

	if (nworkers < 0)
		return -EINVAL;
	n = (size_t)nworkers;
	if (n == 0)
		n = 1; /* aligned_alloc(64, 0) may return NULL */
	/* sizeof is a multiple of 64 thanks to the aligned attribute, as
	 * aligned_alloc wants. */
	b = aligned_alloc(64, n * sizeof(*b));
	if (!b)
		return -ENOMEM;
	memset(b, 0, n * sizeof(*b));
	/* Under the lock because the HTTP thread may be rendering (a test
	 * re-initialising between requests); workers must not be running. */
	pthread_mutex_lock(&met.lock);
	free(met.blocks);
	met.blocks = b;
	met.nworkers = nworkers;
	clock_gettime(CLOCK_MONOTONIC, &met.start);
	met.ready = true;
	pthread_mutex_unlock(&met.lock);
	return 0;
}

struct met_worker *met_of(int worker)
{
	if (!met.blocks || worker < 0 || worker >= met.nworkers)
		return NULL;
	return &met.blocks[worker];
}

void met_set_ready(bool ready)
{
	pthread_mutex_lock(&met.lock);
	met.ready = ready;
	pthread_mutex_unlock(&met.lock);
}

static uint64_t uptime_s(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - met.start.tv_sec);
}

/* ---- rendering ----------------------------------------------------------- */

/* An appender that counts what it could not write, like snprintf. */
struct out {
	char *p;
	size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	size_t room = o->len < o->cap ? o->cap - o->len : 0;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(room ? o->p + o->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n;
}

static void metric(struct out *o, const char *name, const char *suffix, const char *type, const char *help, uint64_t v)
{
	put(o, "# HELP fedhub_%s%s %s\n# TYPE fedhub_%s%s %s\nfedhub_%s%s %llu\n", name, suffix, help, name, suffix,
	    type, name, suffix, (unsigned long long)v);
}

/* One metric with a label taking n values. */
static void metric_by(struct out *o, const char *name, const char *type, const char *help, const char *label,
		      const char *const *vals, const uint64_t *v, int n)
{
	put(o, "# HELP fedhub_%s %s\n# TYPE fedhub_%s %s\n", name, help, name, type);
	for (int i = 0; i < n; i++)
		put(o, "fedhub_%s{%s=\"%s\"} %llu\n", name, label, vals[i], (unsigned long long)v[i]);
}

/* The resolver's counters (net/dns.c, on the control thread). */
static void render_dns(struct out *o)
{
	struct dns_stats d;
	dns_stats_get(&d);
	metric(o, "dns_lookups", "_total", "counter", "name lookups asked for by workers", d.lookups);
	metric_by(o, "dns_cache_hits_total", "counter", "lookups answered from the DNS cache", "kind",
		  (const char *const[]){"answer", "failure"}, (const uint64_t[]){d.hits, d.hits_negative}, 2);
	metric(o, "dns_cache_misses", "_total", "counter", "lookups not answered from the DNS cache", d.misses);
	metric(o, "dns_merged", "_total", "counter", "lookups that joined one already under way for the same domain",
	       d.merged);
	metric_by(o, "dns_queries_sent_total", "counter", "queries sent to the DNS server (addr: one A + AAAA lookup)",
		  "kind", (const char *const[]){"srv", "addr"}, (const uint64_t[]){d.queries_srv, d.queries_addr}, 2);
	metric(o, "dns_retries", "_total", "counter", "lookups tried again after a timeout", d.retries);
	metric_by(o, "dns_lookup_failures_total", "counter", "lookups that failed, by reason", "kind",
		  (const char *const[]){"nxdomain", "timeout", "error"},
		  (const uint64_t[]){d.fail_nxdomain, d.fail_timeout, d.fail_error}, 3);
	metric(o, "dns_cache_evictions", "_total", "counter", "DNS cache entries reused for another domain",
	       d.evictions);
	metric(o, "dns_inflight", "", "gauge", "domains being resolved", d.inflight);
	metric(o, "dns_inflight_peak", "", "gauge",
	       "the most domains ever resolved at once (dns_max_inflight bounds it)", d.inflight_peak);
	metric(o, "dns_queued", "", "gauge", "domains waiting to be resolved (for a slot or a retry)", d.queued);
	metric(o, "dns_cache_entries", "", "gauge", "entries in the DNS cache (answers and failures)", d.cache_entries);
}

static uint64_t sum_field(size_t off)
{
	uint64_t s = 0;

	for (int w = 0; met.blocks && w < met.nworkers; w++)
		s += __atomic_load_n((uint64_t *)((char *)&met.blocks[w] + off), __ATOMIC_RELAXED);
	return s;
}

size_t met_render(char *buf, size_t cap)
{
	struct out o = {buf, cap, 0};

	pthread_mutex_lock(&met.lock);
#define MET_LINE(name, help) metric(&o, #name, "_total", "counter", help, sum_field(offsetof(struct met_worker, name)));
	MET_COUNTERS(MET_LINE)
	MET_COUNTERS_IN(MET_LINE)
#undef MET_LINE
	metric(&o, "proxy_untrusted", "_total", "counter",
	       "connections refused: PROXY protocol header expected from a source not in proxy_from",
	       net_proxy_refused());
	metric(&o, "starttls_discarded_bytes", "_total", "counter",
	       "bytes received in the clear after <starttls/> or <proceed/> and discarded", net_starttls_dropped());
	metric(&o, "conns_open", "", "gauge", "connections open", sum_field(offsetof(struct met_worker, conns_open)));
	metric(&o, "workers", "", "gauge", "worker threads", (uint64_t)met.nworkers);
	metric(&o, "uptime_seconds", "", "gauge", "seconds since start", uptime_s());
	metric(&o, "ready", "", "gauge", "1 while /health answers 200", met.ready);
	render_dns(&o);
	pthread_mutex_unlock(&met.lock);
	if (cap)
		buf[o.len < cap ? o.len : cap - 1] = 0;
	return o.len;
}

size_t met_render_health(char *buf, size_t cap, bool *ok)
{
	struct out o = {buf, cap, 0};

	pthread_mutex_lock(&met.lock);
	*ok = met.ready;
	put(&o, "{\"status\":\"%s\",\"workers\":%d,\"uptime_s\":%llu", met.ready ? "ok" : "unavailable", met.nworkers,
	    (unsigned long long)uptime_s());
	pthread_mutex_unlock(&met.lock);
	put(&o, "}");
	if (cap)
		buf[o.len < cap ? o.len : cap - 1] = 0;
	return o.len;
}

/* ---- HTTP ---------------------------------------------------------------- */

/* Render with `fn` into a malloc'd buffer sized to fit. */
static char *render_alloc(size_t (*fn)(char *, size_t, bool *), bool *ok, size_t *len)
{
	size_t cap = 8192;

	for (;;) {
		char *b = malloc(cap);
		if (!b)
			return NULL;
		*len = fn(b, cap, ok);
		if (*len < cap)
			return b;
		free(b);
		cap = *len + 1024; /* counters may have grown meanwhile */
	}
}

static size_t render_metrics(char *buf, size_t cap, bool *ok)
{
	*ok = true;
	return met_render(buf, cap);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
	char *b = strdup(text);

	if (!b)
		return MHD_NO;
	return reply(conn, status, "text/plain; charset=utf-8", b, strlen(b));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	bool is_health = !strcmp(url, "/health"), is_metrics = !strcmp(url, "/metrics");
	bool ok;
	size_t len;
	char *body;

	if (!is_health && !is_metrics)
		return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD)) {
		struct MHD_Response *r;
		enum MHD_Result ret;
		/* Answer at once, without reading a request body. */
		r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
		ret = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, r);
		MHD_destroy_response(r);
		return ret;
	}
	if (is_health) {
		body = render_alloc(met_render_health, &ok, &len);
		if (!body)
			return MHD_NO;
		return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body, len);
	}
	body = render_alloc(render_metrics, &ok, &len);
	if (!body)
		return MHD_NO;
	/* The content type Prometheus expects for its text exposition format. */
	return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len);
}

static void on_mhd_error(void *cls, const char *fmt, va_list ap)
{
	char msg[256];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = 0;
	log_warn(0, "http: %s", msg);
}

int met_http_start(const struct cfg_addr *addr)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
	const union MHD_DaemonInfo *info;
	char host[64];
	bool v6;

	if (met.httpd)
		return -EALREADY;
	if (!addr || addr->len == 0)
		return -EINVAL;
	v6 = addr->ss.ss_family == AF_INET6;
	if (v6)
		flags |= MHD_USE_IPv6;
	met.httpd = MHD_start_daemon(
		flags, (uint16_t)cfg_addr_port(addr), NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER,
		on_mhd_error, NULL, MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&addr->ss,
		/* SO_REUSEPORT, like the listeners: a --takeover hand-over shares the port */
		MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
		/* a scraper and a health checker, not a crowd */
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	if (!met.httpd) {
		log_error(0, "http: cannot listen on %s", addr->text);
		return -EADDRNOTAVAIL;
	}
	info = MHD_get_daemon_info(met.httpd, MHD_DAEMON_INFO_BIND_PORT);
	met.port = info ? info->port : cfg_addr_port(addr);
	if (cfg_addr_host(addr, host, sizeof(host)) < 0)
		strcpy(host, "?");
	log_info(0, "http: /health and /metrics on %s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", met.port);
	return 0;
}

int met_http_port(void)
{
	return met.httpd ? met.port : 0;
}

void met_http_stop(void)
{
	if (!met.httpd)
		return;
	MHD_stop_daemon(met.httpd);
	met.httpd = NULL;
	met.port = 0;
}

void met_free(void)
{
	met_http_stop();
	pthread_mutex_lock(&met.lock);
	free(met.blocks);
	met.blocks = NULL;
	met.nworkers = 0;
	pthread_mutex_unlock(&met.lock);
}
