/*
 * router/met_http.c — the /health and /metrics HTTP endpoint.
 *
 * libmicrohttpd with its own polling thread, bound to the one configured
 * address (loopback by default): it is for the operator's scraper and the
 * load balancer's health check, not for the Internet. A response is
 * rendered (met_render(), met_render_health()) into a fresh buffer per
 * request; nothing is cached, so what it shows is as fresh as the last
 * store of each worker.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <microhttpd.h>
#include "net/log.h"
#include "router/met.h"

static struct {
	struct MHD_Daemon *httpd;
	int port;
} http;

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

	if (http.httpd)
		return -EALREADY;
	if (!addr || addr->len == 0)
		return -EINVAL;
	v6 = addr->ss.ss_family == AF_INET6;
	if (v6)
		flags |= MHD_USE_IPv6;
	http.httpd = MHD_start_daemon(
		flags, (uint16_t)cfg_addr_port(addr), NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER,
		on_mhd_error, NULL, MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&addr->ss,
		/* SO_REUSEPORT, like the listeners: a --takeover hand-over shares the port */
		MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
		/* a scraper and a health checker, not a crowd */
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	if (!http.httpd) {
		log_error(0, "http: cannot listen on %s", addr->text);
		return -EADDRNOTAVAIL;
	}
	info = MHD_get_daemon_info(http.httpd, MHD_DAEMON_INFO_BIND_PORT);
	http.port = info ? info->port : cfg_addr_port(addr);
	if (cfg_addr_host(addr, host, sizeof(host)) < 0)
		strcpy(host, "?");
	log_info(0, "http: /health and /metrics on %s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", http.port);
	return 0;
}

int met_http_port(void)
{
	return http.httpd ? http.port : 0;
}

void met_http_stop(void)
{
	if (!http.httpd)
		return;
	MHD_stop_daemon(http.httpd);
	http.httpd = NULL;
	http.port = 0;
}
