/*
 * router/cfg_dir.c — one handler per router.conf directive: each checks its
 * values and stores them in the struct cfg being built.
 * The parser's design is described at the top of router/cfg.c.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <idn2.h>
#include "router/cfg.h"
#include "xml/xml.h" /* XML_MAX_DEPTH bounds max_depth */
#include "router/policy.h"
#include "router/cfg-int.h"

/* ---- directive handlers: [hub] ------------------------------------------- */

void cfg_d_workers(struct parser *p, int argc, char **argv)
{
	uint32_t v = 0;

	if (!strcmp(argv[0], "auto")) {
		p->c->workers = 0;
		return;
	}
	cfg_set_u32(p, "workers", argv[0], U_NUM, 1, 1024, &v);
	if (v)
		p->c->workers = (int)v;
}

void cfg_d_domain(struct parser *p, int argc, char **argv)
{
	char name[CFG_NAME_MAX];

	if (p->sect == S_BACKEND) {
		cfg_backend_domain(p, argc, argv);
		return;
	}
	/* the table lets it repeat for [backend]; in [hub] it is one name once */
	if (p->seen[D_domain] != p->line) {
		ERR(p, "duplicate 'domain' (first at line %d)", p->seen[D_domain]);
		return;
	}
	if (argc != 1) {
		ERR(p, "'domain' takes 1 value in [hub], got %d", argc);
		return;
	}
	if (cfg_domain_normalise(argv[0], strlen(argv[0]), name, sizeof(name)) < 0)
		ERR(p, "domain: '%s' is not a valid domain name", argv[0]);
	else
		strcpy(p->c->hub_domain, name);
}

void cfg_d_listen(struct parser *p, int argc, char **argv)
{
	struct cfg *c = p->c;
	struct cfg_listen l = {.line = p->line};
	int default_port;
	bool tls_given = false;

	if (!strcmp(argv[0], "s2s")) {
		l.kind = CFG_LISTEN_S2S;
		l.tls = CFG_TLS_OPTIONAL;
		default_port = 5269;
	} else if (!strcmp(argv[0], "s2s-tls")) {
		l.kind = CFG_LISTEN_S2S_TLS;
		l.tls = CFG_TLS_REQUIRED; /* XEP-0368: TLS from the first byte */
		default_port = 5270;
	} else if (!strcmp(argv[0], "component")) {
		l.kind = CFG_LISTEN_COMPONENT;
		l.tls = CFG_TLS_OFF; /* XEP-0114 has no STARTTLS */
		default_port = 5347;
	} else {
		ERR(p, "listen: unknown kind '%s' (expected s2s, s2s-tls or component)", argv[0]);
		return;
	}
	if (cfg_parse_addr(argv[1], &l.addr, default_port) < 0) {
		ERR(p, "listen: bad address '%s' (expected IPV4:PORT, [IPV6]:PORT or localhost:PORT)", argv[1]);
		return;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "proxy_protocol") && !l.proxy_protocol) {
			l.proxy_protocol = true;
		} else if (!strcmp(argv[i], "tls") && !tls_given && i + 1 < argc) {
			tls_given = true;
			l.tls_set = true;
			if (cfg_parse_tls_mode(argv[++i], &l.tls) < 0) {
				ERR(p, "listen: bad tls mode '%s' (expected required, optional or off)", argv[i]);
				return;
			}
		} else {
			ERR(p, "listen: unexpected '%s' (options: tls required|optional|off, proxy_protocol)", argv[i]);
			return;
		}
	}
	if (tls_given && l.kind == CFG_LISTEN_S2S_TLS && l.tls != CFG_TLS_REQUIRED) {
		ERR(p, "listen: an s2s-tls listener is direct TLS; its tls mode can only be required");
		return;
	}
	if (tls_given && l.kind == CFG_LISTEN_COMPONENT) {
		ERR(p, "listen: component listeners take no tls option (XEP-0114 has no STARTTLS)");
		return;
	}
	for (int i = 0; i < c->nlisten; i++) {
		if (cfg_addr_equal(&c->listen[i].addr, &l.addr)) {
			ERR(p, "listen: %s is already used by another listen line", l.addr.text);
			return;
		}
	}
	if (c->nlisten == (int)(sizeof(c->listen) / sizeof(c->listen[0]))) {
		ERR(p, "listen: at most %d listeners", c->nlisten);
		return;
	}
	c->listen[c->nlisten++] = l;
}

void cfg_d_http(struct parser *p, int argc, char **argv)
{
	if (!strcmp(argv[0], "off")) {
		memset(&p->c->http, 0, sizeof(p->c->http));
		return;
	}
	if (cfg_parse_addr(argv[0], &p->c->http, 5280) < 0)
		ERR(p, "http: bad address '%s' (expected IPV4:PORT, [IPV6]:PORT, localhost:PORT or off)", argv[0]);
}

void cfg_d_dialback_secret_file(struct parser *p, int argc, char **argv)
{
	struct cfg *c = p->c;
	char buf[256];
	ssize_t n;
	int fd;

	if (strlen(argv[0]) >= sizeof(c->dialback_secret_file)) {
		ERR(p, "dialback_secret_file: path is too long");
		return;
	}
	fd = open(argv[0], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ERR(p, "dialback_secret_file: cannot read '%s': %s", argv[0], strerror(errno));
		return;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		ERR(p, "dialback_secret_file: cannot read '%s': %s", argv[0], strerror(errno));
		return;
	}
	/* A trailing newline is what editors and `echo` leave; not part of it. */
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] <= ' ' || buf[i] > '~') {
			ERR(p, "dialback_secret_file: '%s' must hold one line of printable ASCII", argv[0]);
			explicit_bzero(buf, sizeof(buf));
			return;
		}
	}
	if (n < 16 || (size_t)n >= sizeof(c->dialback_secret)) {
		ERR(p, "dialback_secret_file: the secret in '%s' must be 16 to %zu characters", argv[0],
		    sizeof(c->dialback_secret) - 1);
		explicit_bzero(buf, sizeof(buf));
		return;
	}
	memcpy(c->dialback_secret, buf, (size_t)n);
	c->dialback_secret[n] = 0;
	explicit_bzero(buf, sizeof(buf));
	strcpy(c->dialback_secret_file, argv[0]);
}

void cfg_d_log_level(struct parser *p, int argc, char **argv)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	for (int i = 0; i < 4; i++) {
		if (!strcmp(argv[0], names[i])) {
			p->c->log_level = i;
			return;
		}
	}
	ERR(p, "log_level: '%s' is not one of error, warn, info, debug", argv[0]);
}

#define KB 1024ull
#define MB (1024ull * 1024)

void cfg_d_log_format(struct parser *p, int argc, char **argv)
{
	if (!strcmp(argv[0], "text") || !strcmp(argv[0], "json"))
		p->c->log_json = !strcmp(argv[0], "json");
	else
		ERR(p, "log_format: '%s' is not one of text, json", argv[0]);
}

void cfg_d_log_rate_limit(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "log_rate_limit", argv[0], U_NUM, 0, 1000000, &p->c->log_rate_limit);
}

void cfg_d_metrics_domains_max(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "metrics_domains_max", argv[0], U_NUM, 0, 100000, &p->c->metrics_domains_max);
}

void cfg_d_max_stanza_size(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "max_stanza_size", argv[0], U_BYTES, 1 * KB, 64 * MB, &p->c->max_stanza_size);
}

void cfg_d_max_stanza_size_preauth(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "max_stanza_size_preauth", argv[0], U_BYTES, 1 * KB, 64 * MB, &p->c->max_stanza_size_preauth);
}

void cfg_d_max_depth(struct parser *p, int argc, char **argv)
{
	/* 2: the stream element and a stanza, nothing inside it. */
	cfg_set_u32(p, "max_depth", argv[0], U_NUM, 2, XML_MAX_DEPTH, &p->c->max_depth);
}

void cfg_d_max_attrs(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "max_attrs", argv[0], U_NUM, 1, 4096, &p->c->max_attrs);
}

void cfg_d_max_name(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "max_name", argv[0], U_BYTES, 16, 64 * KB, &p->c->max_name);
}

void cfg_d_link_queue_max(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "link_queue_max", argv[0], U_NUM, 1, 10000000, &p->c->link_queue_max);
}

void cfg_d_send_queue_max(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "send_queue_max", argv[0], U_BYTES, 4 * KB, 1024 * MB, &p->c->send_queue_max);
}

void cfg_d_queue_memory_max(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "queue_memory_max", argv[0], U_BYTES, 1 * MB, 4095 * MB, &p->c->queue_memory_max);
}

void cfg_d_source_allowance(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "source_allowance", argv[0], U_BYTES, 4 * KB, 1024 * MB, &p->c->source_allowance);
}

#define DAY (24 * 3600)

void cfg_d_stall_timeout(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "stall_timeout", argv[0], U_SECONDS, 1, DAY, &p->c->stall_timeout);
}

void cfg_d_idle_timeout(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "idle_timeout", argv[0], U_SECONDS, 0, 7 * DAY, &p->c->idle_timeout);
}

void cfg_d_keepalive_interval(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "keepalive_interval", argv[0], U_SECONDS, 0, DAY, &p->c->keepalive_interval);
}

void cfg_d_connect_timeout(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "connect_timeout", argv[0], U_SECONDS, 1, 3600, &p->c->connect_timeout);
}

void cfg_d_retry_min(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "retry_min", argv[0], U_SECONDS, 1, DAY, &p->c->retry_min);
}

void cfg_d_drain_timeout(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "drain_timeout", argv[0], U_SECONDS, 0, 3600, &p->c->drain_timeout);
}

/* A Unix socket path (sun_path holds 107 bytes), or off. */
void cfg_d_control_socket(struct parser *p, int argc, char **argv)
{
	if (!strcmp(argv[0], "off")) {
		p->c->control_socket[0] = 0;
		return;
	}
	if (argv[0][0] != '/') {
		ERR(p, "control_socket: '%s' is not an absolute path (or off)", argv[0]);
		return;
	}
	if (strlen(argv[0]) >= sizeof(p->c->control_socket)) {
		ERR(p, "control_socket: path is longer than %zu bytes", sizeof(p->c->control_socket) - 1);
		return;
	}
	strcpy(p->c->control_socket, argv[0]);
}

void cfg_d_dns_server(struct parser *p, int argc, char **argv)
{
	if (cfg_parse_addr(argv[0], &p->c->dns_server, 53) < 0)
		ERR(p, "dns_server: bad address '%s' (expected IPV4[:PORT] or [IPV6][:PORT])", argv[0]);
}

void cfg_d_dns_cache_max(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "dns_cache_max", argv[0], U_NUM, 16, 10000000, &p->c->dns_cache_max);
}

void cfg_d_dns_ttl_min(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "dns_ttl_min", argv[0], U_SECONDS, 1, DAY, &p->c->dns_ttl_min);
}

void cfg_d_dns_ttl_max(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "dns_ttl_max", argv[0], U_SECONDS, 1, 7 * DAY, &p->c->dns_ttl_max);
}

void cfg_d_dns_max_inflight(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "dns_max_inflight", argv[0], U_NUM, 1, 10000, &p->c->dns_max_inflight);
}

void cfg_d_ca_file(struct parser *p, int argc, char **argv)
{
	cfg_set_path(p, "ca_file", argv[0], p->c->ca_file, sizeof(p->c->ca_file));
}

void cfg_d_s2s_tls(struct parser *p, int argc, char **argv)
{
	if (cfg_parse_tls_mode(argv[0], &p->c->s2s_tls) < 0)
		ERR(p, "s2s_tls: '%s' is not one of required, optional, off", argv[0]);
}

void cfg_d_s2s_auth(struct parser *p, int argc, char **argv)
{
	if (cfg_parse_auth_mode(argv[0], &p->c->s2s_auth) < 0)
		ERR(p, "s2s_auth: '%s' is not one of dialback, certificate", argv[0]);
}

void cfg_d_dns_allow_private(struct parser *p, int argc, char **argv)
{
	if (cfg_parse_yes_no(argv[0], &p->c->dns_allow_private) < 0)
		ERR(p, "dns_allow_private: '%s' is not yes or no", argv[0]);
}

/* ---- [hub]: inbound limits ---------------------------------------------- */

void cfg_d_max_connections(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "max_connections", argv[0], U_NUM, 0, 10000000, &p->c->max_connections);
}

void cfg_d_max_connections_per_ip(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "max_connections_per_ip", argv[0], U_NUM, 0, 10000000, &p->c->max_connections_per_ip);
}

void cfg_d_connection_rate_per_ip(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "connection_rate_per_ip", argv[0], U_NUM, 0, 1000000, &p->c->connection_rate_per_ip);
}

void cfg_d_preauth_timeout(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "preauth_timeout", argv[0], U_SECONDS, 1, 3600, &p->c->preauth_timeout);
}

void cfg_d_max_preauth_bytes(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "max_preauth_bytes", argv[0], U_BYTES, 1 * KB, 64 * MB, &p->c->max_preauth_bytes);
}

void cfg_d_max_pairs_per_stream(struct parser *p, int argc, char **argv)
{
	/* the session counts pairs in 16 bits */
	cfg_set_u32(p, "max_pairs_per_stream", argv[0], U_NUM, 1, 65535, &p->c->max_pairs_per_stream);
}

void cfg_d_max_verify_per_stream(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "max_verify_per_stream", argv[0], U_NUM, 1, 65535, &p->c->max_verify_per_stream);
}

void cfg_d_max_verify_total(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "max_verify_total", argv[0], U_NUM, 1, 10000000, &p->c->max_verify_total);
}

void cfg_d_proxy_from(struct parser *p, int argc, char **argv)
{
	struct cfg *c = p->c;

	for (int i = 0; i < argc; i++) {
		struct proxy_cidr b;
		if (proxy_cidr_parse(argv[i], &b) < 0) {
			ERR(p,
			    "proxy_from: '%s' is not an address or a block like 10.0.0.0/8 or 2001:db8::/32 "
			    "(host bits must be zero)",
			    argv[i]);
			continue;
		}
		if (c->nproxy_from == PROXY_MAX_TRUSTED) {
			ERR(p, "proxy_from: at most %d addresses or blocks", PROXY_MAX_TRUSTED);
			return;
		}
		c->proxy_from[c->nproxy_from++] = b;
	}
}

/* Shaping (router/shape.c): 0 = off; a bucket holds one second's worth. */
void cfg_d_link_rate(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "link_rate", argv[0], U_BYTES, 0, 1024 * MB, &p->c->link_rate);
}

void cfg_d_link_stanza_rate(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "link_stanza_rate", argv[0], U_NUM, 0, 10000000, &p->c->link_stanza_rate);
}

void cfg_d_remote_rate(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "remote_rate", argv[0], U_BYTES, 0, 1024 * MB, &p->c->remote_rate);
}

static void acl_add(struct parser *p, const char *what, bool allow, int argc, char **argv)
{
	struct cfg *c = p->c;
	char name[CFG_NAME_MAX];

	for (int i = 0; i < argc; i++) {
		if (cfg_pattern_normalise(argv[i], name, sizeof(name)) < 0) {
			ERR(p, "%s: '%s' is not a domain name or *.domain", what, argv[i]);
			continue;
		}
		struct name_ent *e = cfg_names_find(&p->names, name, true);
		if (!e) {
			p->oom = true;
			return;
		}
		if (e->line[K_ACL]) {
			ERR(p, "%s: %s is already listed at line %d", what, name, e->line[K_ACL]);
			continue;
		}
		e->line[K_ACL] = p->line;
		int idx = cfg_grow(p, (void **)&c->acl, &c->nacl, &p->cap_acl, sizeof(*c->acl));
		if (idx < 0)
			return;
		strcpy(c->acl[idx].name, name);
		c->acl[idx].allow = allow;
		c->acl[idx].line = p->line;
		if (allow)
			c->have_allow = true;
	}
}

void cfg_d_remote_allow(struct parser *p, int argc, char **argv)
{
	acl_add(p, "remote_allow", true, argc, argv);
}

void cfg_d_remote_deny(struct parser *p, int argc, char **argv)
{
	acl_add(p, "remote_deny", false, argc, argv);
}

/* ---- [domain] [component] [route] ---------------------------------------- */

void cfg_d_cert(struct parser *p, int argc, char **argv)
{
	struct cfg_domain *d = cur_domain(p);
	cfg_set_path(p, "cert", argv[0], d->cert, sizeof(d->cert));
}

void cfg_d_key(struct parser *p, int argc, char **argv)
{
	struct cfg_domain *d = cur_domain(p);
	cfg_set_path(p, "key", argv[0], d->key, sizeof(d->key));
}

void cfg_d_secret(struct parser *p, int argc, char **argv)
{
	struct cfg_component *k = cur_component(p);

	if (strlen(argv[0]) >= sizeof(k->secret))
		ERR(p, "secret: longer than %zu characters", sizeof(k->secret) - 1);
	else
		strcpy(k->secret, argv[0]);
}

void cfg_d_connect(struct parser *p, int argc, char **argv)
{
	struct cfg_route *r = cur_route(p);
	struct cfg_addr a;

	if (p->sect == S_BACKEND) {
		cfg_backend_connect(p, argv[0]);
		return;
	}
	if (cfg_parse_addr(argv[0], &a, 5269) < 0) {
		ERR(p, "connect: bad address '%s' (expected IPV4[:PORT] or [IPV6][:PORT])", argv[0]);
		return;
	}
	if (r->nconnect == (int)(sizeof(r->connect) / sizeof(r->connect[0]))) {
		ERR(p, "connect: at most %d addresses per route", r->nconnect);
		return;
	}
	r->connect[r->nconnect++] = a;
}

void cfg_d_tls(struct parser *p, int argc, char **argv)
{
	if (p->sect == S_BACKEND) {
		cfg_backend_tls(p, argv[0]);
		return;
	}
	if (p->sect == S_REMOTE) {
		if (cfg_parse_tls_mode(argv[0], &cur_remote(p)->tls) < 0)
			ERR(p, "tls: '%s' is not one of required, optional, off", argv[0]);
		else
			cur_remote(p)->tls_set = true;
		return;
	}
	if (cfg_parse_tls_mode(argv[0], &cur_route(p)->tls) < 0)
		ERR(p, "tls: '%s' is not one of required, optional, off", argv[0]);
	else if (p->cur >= 0) {
		p->route_tls_set[p->cur] = true;
		cur_route(p)->tls_set = true;
	}
}

/* ---- [remote NAME] ------------------------------------------------------- */

void cfg_d_auth(struct parser *p, int argc, char **argv)
{
	if (cfg_parse_auth_mode(argv[0], &cur_remote(p)->auth) < 0)
		ERR(p, "auth: '%s' is not one of dialback, certificate", argv[0]);
	else
		cur_remote(p)->auth_set = true;
}

void cfg_d_direct_tls(struct parser *p, int argc, char **argv)
{
	if (!strcmp(argv[0], "yes"))
		cur_route(p)->direct_tls = true;
	else if (!strcmp(argv[0], "no"))
		cur_route(p)->direct_tls = false;
	else
		ERR(p, "direct_tls: '%s' is not yes or no", argv[0]);
}

/* ---- sections ------------------------------------------------------------ */

/* Grow one of the section arrays by one zeroed element; returns its index. */
int cfg_grow(struct parser *p, void **arr, int *n, int *cap, size_t size)
{
	if (*n == *cap) {
		int ncap = *cap ? *cap * 2 : 16;
		void *v = realloc(*arr, (size_t)ncap * size);
		if (!v) {
			p->oom = true;
			return -1;
		}
		*arr = v;
		*cap = ncap;
	}
	memset((char *)*arr + (size_t)*n * size, 0, size);
	return (*n)++;
}

/* ---- directive handlers: [cluster] ----------------------------------------- */

void cfg_d_redis(struct parser *p, int argc, char **argv)
{
	if (cfg_parse_addr(argv[0], &p->c->cluster.redis, 6379) < 0)
		ERR(p, "redis: bad address '%s' (expected IPV4[:PORT], [IPV6][:PORT] or localhost[:PORT]; no DNS names)",
		    argv[0]);
}

void cfg_d_sentinel(struct parser *p, int argc, char **argv)
{
	struct cfg_cluster *k = &p->c->cluster;
	struct cfg_addr a;

	if (cfg_parse_addr(argv[0], &a, 26379) < 0) {
		ERR(p, "sentinel: bad address '%s' (expected IPV4[:PORT], [IPV6][:PORT] or localhost[:PORT])", argv[0]);
		return;
	}
	if (strlen(argv[1]) >= sizeof(k->master) || strspn(argv[1], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
							      "0123456789._-") != strlen(argv[1])) {
		ERR(p, "sentinel: master name '%s' must be 1 to %zu letters, digits, '.', '_' or '-'", argv[1],
		    sizeof(k->master) - 1);
		return;
	}
	if (k->nsentinel && strcmp(k->master, argv[1])) {
		ERR(p, "sentinel: every sentinel line names the same master ('%s' before, '%s' here)", k->master,
		    argv[1]);
		return;
	}
	if (k->nsentinel == CFG_MAX_SENTINELS) {
		ERR(p, "sentinel: at most %d sentinels", CFG_MAX_SENTINELS);
		return;
	}
	strcpy(k->master, argv[1]);
	k->sentinel[k->nsentinel++] = a;
}

static bool node_id_ok(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n < 64 &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

void cfg_d_node_id(struct parser *p, int argc, char **argv)
{
	if (!strcmp(argv[0], "auto")) {
		p->c->cluster.node_id[0] = 0; /* cfg_cluster_checks: hostname-port */
		return;
	}
	if (!node_id_ok(argv[0])) {
		ERR(p, "node_id: '%s' must be 1 to 63 letters, digits, '.', '_' or '-' (or auto)", argv[0]);
		return;
	}
	strcpy(p->c->cluster.node_id, argv[0]);
}

void cfg_d_node_listen(struct parser *p, int argc, char **argv)
{
	if (cfg_parse_addr(argv[0], &p->c->cluster.node_listen, 0) < 0)
		ERR(p, "node_listen: bad address '%s' (expected IPV4:PORT or [IPV6]:PORT)", argv[0]);
}

void cfg_d_node_address(struct parser *p, int argc, char **argv)
{
	if (cfg_parse_addr(argv[0], &p->c->cluster.node_address, 0) < 0)
		ERR(p, "node_address: bad address '%s' (expected IPV4:PORT or [IPV6]:PORT)", argv[0]);
}

void cfg_d_node_tls(struct parser *p, int argc, char **argv)
{
	struct cfg_cluster *k = &p->c->cluster;
	char *dst[3] = {k->node_tls_cert, k->node_tls_key, k->node_tls_ca};
	static const char *const what[3] = {"certificate", "key", "CA"};

	for (int i = 0; i < 3; i++) {
		if (strlen(argv[i]) >= sizeof(k->node_tls_cert)) {
			ERR(p, "node_tls: %s path is too long", what[i]);
			return;
		}
		if (access(argv[i], R_OK) < 0) {
			ERR(p, "node_tls: cannot read the %s '%s': %s", what[i], argv[i], strerror(errno));
			return;
		}
	}
	for (int i = 0; i < 3; i++)
		strcpy(dst[i], argv[i]);
}

void cfg_d_cluster_secret_file(struct parser *p, int argc, char **argv)
{
	struct cfg_cluster *k = &p->c->cluster;
	unsigned char buf[sizeof(k->secret) + 1];
	struct stat st;
	ssize_t n;
	int fd;

	if (strlen(argv[0]) >= sizeof(k->secret_file)) {
		ERR(p, "cluster_secret_file: path is too long");
		return;
	}
	strcpy(k->secret_file, argv[0]); /* given: an error below is the only one */
	fd = open(argv[0], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ERR(p, "cluster_secret_file: cannot read '%s': %s", argv[0], strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		/* whoever reads it can join the cluster and forge its values */
		ERR(p, "cluster_secret_file: '%s' is readable or writable by everyone (chmod o-rw)", argv[0]);
		close(fd);
		return;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		ERR(p, "cluster_secret_file: cannot read '%s': %s", argv[0], strerror(errno));
		return;
	}
	while (n > 0 && isspace(buf[n - 1])) /* the newline editors leave */
		n--;
	if (n < 32 || (size_t)n > sizeof(k->secret)) {
		ERR(p, "cluster_secret_file: the secret in '%s' must be 32 to %zu bytes", argv[0], sizeof(k->secret));
		explicit_bzero(buf, sizeof(buf));
		return;
	}
	memcpy(k->secret, buf, (size_t)n);
	k->secret_len = (uint32_t)n;
	explicit_bzero(buf, sizeof(buf));
}

void cfg_d_lease_time(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "lease_time", argv[0], U_MS, 1000, 3600 * 1000, &p->c->cluster.lease_time_ms);
}

void cfg_d_redis_timeout(struct parser *p, int argc, char **argv)
{
	cfg_set_u32(p, "redis_timeout", argv[0], U_MS, 50, 60 * 1000, &p->c->cluster.redis_timeout_ms);
}

static bool addr_unspecified(const struct cfg_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

void cfg_cluster_checks(struct parser *p)
{
	struct cfg_cluster *k = &p->c->cluster;
	int line = k->line;

	if (!k->on)
		return;
	if (!k->redis.len && !k->nsentinel)
		perr(p, line, "[cluster]: neither 'redis' nor 'sentinel': the cluster has no registry");
	if (k->redis.len && k->nsentinel)
		perr(p, line, "[cluster]: 'redis' and 'sentinel' both given: one Redis, or the sentinels that name it");
	if (!k->secret_file[0])
		perr(p, line, "[cluster]: missing required 'cluster_secret_file' (node links and Redis values are "
			      "authenticated with it)");
	if (!k->node_listen.len) {
		perr(p, line, "[cluster]: missing required 'node_listen' (the address other nodes forward to)");
		return;
	}
	if (!k->node_address.len) {
		if (addr_unspecified(&k->node_listen))
			perr(p, line, "[cluster]: node_listen %s is a wildcard: give 'node_address', the address "
				      "other nodes reach",
			     k->node_listen.text);
		k->node_address = k->node_listen;
	} else if (addr_unspecified(&k->node_address)) {
		perr(p, line, "[cluster]: node_address %s is not an address other nodes can reach",
		     k->node_address.text);
	}
	if (!k->node_id[0]) {
		char host[64] = "";
		if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
			strcpy(host, "node");
		host[strcspn(host, ".")] = 0; /* the short name */
		snprintf(k->node_id, sizeof(k->node_id), "%.50s-%d", host, cfg_addr_port(&k->node_listen));
		for (char *q = k->node_id; *q; q++)
			if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-", *q))
				*q = '_';
	}
	if (k->redis_timeout_ms * 3 > k->lease_time_ms)
		perr(p, line,
		     "[cluster]: redis_timeout (%ums) is more than a third of lease_time (%ums): a renewal could "
		     "not be retried before the lease is given up",
		     k->redis_timeout_ms, k->lease_time_ms);
}
