/*
 * router/reload.c — re-read router.conf while the hub runs (SIGHUP, or
 * `fedhubctl reload`).
 *
 * Design (Knot DNS's way, see STYLE.md). Workers read the configuration
 * through the hub_cfg pointer without any lock: they are QSBR readers and
 * never keep a pointer into it past their loop turn. A reload builds a whole
 * new struct cfg (and, when certificates changed, a new TLS context), runs
 * the very checks of `fedhub -t` on it (cfg_load + check_config), and only a
 * configuration that passes is published, with an atomic exchange (what
 * rcu_xchg_pointer does); after
 * synchronize_rcu() no worker can still see the old one and it is freed.
 * The old TLS context is released the same way but lives on, reference
 * counted, until the last link that handshook with it is gone (net/tls.c).
 *
 * What changes: hosted domains, components, static routes, certificates,
 * the CA bundle, limits, timers, policy. What cannot change without a
 * restart (listeners, workers, the HTTP endpoint, the control socket, DNS
 * resolver settings, the dialback secret, the hub's domain, the [backend]
 * sections) is
 * reported as "needs a restart" and the running value is kept, so the
 * published configuration always describes the process as it runs.
 *
 * Links for domains that were removed are closed by their own workers: the
 * reload bumps a generation counter, and each worker, on its next tick,
 * walks its connections once and closes an inbound stream to a removed
 * local domain or component with <host-gone/> (RFC 6120 §4.9.3.5) and an
 * outbound stream from one with </stream:stream>. Links that remain valid
 * are not touched.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "net/alloc.h"
#include "net/log.h"
#include "net/tls.h"
#include "router/check.h"
#include "router/hub.h"
#include "router/sess.h"
#include "router/route.h"
#include "router/reload.h"

static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *conf_path;    /* NULL: the embedded configuration */
static struct cfg *first_cfg;    /* main()'s, not heap-allocated */
static _Atomic uint32_t cfg_gen; /* bumped after a reload removed something */
static _Atomic uint64_t reloads_ok, reloads_refused;

/* What a certificate file was when it was loaded: a renewal replaces the
 * file (new inode, size or mtime) under the same path. */
struct stamp {
	char name[CFG_NAME_MAX];
	char cert[512], key[512];
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};
static struct stamp *stamps;
static int nstamps;

static void stamp_of(const struct cfg_domain *d, struct stamp *s)
{
	struct stat st;
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", d->name);
	snprintf(s->cert, sizeof(s->cert), "%s", d->cert);
	snprintf(s->key, sizeof(s->key), "%s", d->key);
	if (d->cert[0] && stat(d->cert, &st) == 0) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
		s->size = st.st_size;
		s->mtime = st.st_mtim;
	}
}

static bool stamp_same(const struct stamp *a, const struct stamp *b)
{
	return !strcmp(a->cert, b->cert) && !strcmp(a->key, b->key) && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static struct stamp *stamps_make(const struct cfg *c, int *n)
{
	struct stamp *s = xcalloc((size_t)c->ndomains + 1, sizeof(*s));
	for (int i = 0; i < c->ndomains; i++)
		stamp_of(&c->domains[i], &s[i]);
	*n = c->ndomains;
	return s;
}

struct tls_ctx *reload_make_tls(const struct cfg *c, FILE *out)
{
	struct tls_opts o = {.ca_file = c->ca_file[0] ? c->ca_file : NULL};
	struct tls_ctx *t = tls_ctx_new(&o);
	if (!t) {
		log_error(0, "cannot load the CA bundle %s", c->ca_file[0] ? c->ca_file : "of the system");
		if (out)
			fprintf(out, "cannot load the CA bundle %s\n", c->ca_file[0] ? c->ca_file : "of the system");
		return NULL;
	}
	int n = 0;
	for (int i = 0; i < c->ndomains; i++) {
		const struct cfg_domain *d = &c->domains[i];
		if (!d->cert[0])
			continue;
		int rc = tls_ctx_add_cert(t, d->cert, d->key[0] ? d->key : d->cert);
		if (rc < 0) {
			log_error(0, "[domain %s]: cannot load %s: %s", d->name, d->cert, tls_strerror(rc));
			if (out)
				fprintf(out, "[domain %s]: cannot load %s: %s\n", d->name, d->cert, tls_strerror(rc));
			tls_ctx_free(t);
			return NULL;
		}
		if (met_cert_expiry_file(d->name, d->cert) < 0)
			log_warn(0, "[domain %s]: cannot read the expiry date of %s", d->name, d->cert);
		n++;
	}
	log_info(0, "tls: %d certificate%s, %zu names", n, n == 1 ? "" : "s", tls_ctx_name_count(t));
	return t;
}

void reload_init(const char *path, struct cfg *running)
{
	conf_path = path;
	first_cfg = running;
	stamps = stamps_make(running, &nstamps);
}

const char *reload_conf_path(void)
{
	return conf_path;
}

uint32_t reload_drain_timeout(void)
{
	pthread_mutex_lock(&reload_lock); /* hub_cfg is freed only under it */
	uint32_t t = hub_cfg->drain_timeout;
	pthread_mutex_unlock(&reload_lock);
	return t;
}

uint64_t reload_count(bool ok)
{
	return ok ? atomic_load(&reloads_ok) : atomic_load(&reloads_refused);
}

/* A line for the log and for the caller (fedhubctl). */
static void say(FILE *out, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(FILE *out, int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (level == 0)
		log_error(0, "reload: %s", line);
	else if (level == 1)
		log_warn(0, "reload: %s", line);
	else
		log_info(0, "reload: %s", line);
	if (out)
		fprintf(out, "%s\n", line);
}

/* hashed lookups (router/cfg.c): comparing two configurations of N
 * sections costs O(N), not O(N^2) */
static const struct cfg_domain *find_domain(const struct cfg *c, const char *name)
{
	return cfg_domain_find(c, name);
}

static const struct cfg_component *find_component(const struct cfg *c, const char *name)
{
	return cfg_component_find(c, name);
}

static const struct cfg_route *find_route(const struct cfg *c, const char *name)
{
	return cfg_route_find(c, name);
}

static bool route_same(const struct cfg_route *a, const struct cfg_route *b)
{
	if (a->nconnect != b->nconnect || a->tls != b->tls || a->direct_tls != b->direct_tls)
		return false;
	for (int i = 0; i < a->nconnect; i++)
		if (a->connect[i].len != b->connect[i].len ||
		    memcmp(&a->connect[i].ss, &b->connect[i].ss, a->connect[i].len))
			return false;
	return true;
}

static bool addr_same(const struct cfg_addr *a, const struct cfg_addr *b)
{
	return a->len == b->len && !memcmp(&a->ss, &b->ss, a->len);
}

/* [cluster]: Redis, the node's identity and its leases are set up once. */
static bool cluster_same(const struct cfg_cluster *a, const struct cfg_cluster *b)
{
	if (a->on != b->on || !addr_same(&a->redis, &b->redis) || a->nsentinel != b->nsentinel ||
	    strcmp(a->master, b->master) || strcmp(a->node_id, b->node_id) ||
	    !addr_same(&a->node_listen, &b->node_listen) || !addr_same(&a->node_address, &b->node_address) ||
	    a->secret_len != b->secret_len || memcmp(a->secret, b->secret, a->secret_len) ||
	    a->lease_time_ms != b->lease_time_ms || a->redis_timeout_ms != b->redis_timeout_ms ||
	    strcmp(a->node_tls_cert, b->node_tls_cert) || strcmp(a->node_tls_key, b->node_tls_key) ||
	    strcmp(a->node_tls_ca, b->node_tls_ca))
		return false;
	for (int i = 0; i < a->nsentinel; i++)
		if (!addr_same(&a->sentinel[i], &b->sentinel[i]))
			return false;
	return true;
}

static bool listen_same(const struct cfg *a, const struct cfg *b)
{
	if (a->nlisten != b->nlisten)
		return false;
	for (int i = 0; i < a->nlisten; i++) {
		const struct cfg_listen *x = &a->listen[i], *y = &b->listen[i];
		if (x->kind != y->kind || !addr_same(&x->addr, &y->addr) || x->tls != y->tls ||
		    x->proxy_protocol != y->proxy_protocol)
			return false;
	}
	return true;
}

/* Settings a running hub cannot take: report each change, keep the old value. */
static int keep_restart_only(const struct cfg *old, struct cfg *nc, FILE *out)
{
	int n = 0;
#define KEEP(what, changed, copy)                                                                    \
	do {                                                                                         \
		if (changed) {                                                                       \
			say(out, 1, "%s changed: needs a restart; the running value is kept", what); \
			copy;                                                                        \
			n++;                                                                         \
		}                                                                                    \
	} while (0)
	KEEP("workers", old->workers != nc->workers, nc->workers = old->workers);
	KEEP("listen", !listen_same(old, nc),
	     (memcpy(nc->listen, old->listen, sizeof(nc->listen)), nc->nlisten = old->nlisten));
	KEEP("http", !addr_same(&old->http, &nc->http), nc->http = old->http);
	KEEP("control_socket", strcmp(old->control_socket, nc->control_socket),
	     strcpy(nc->control_socket, old->control_socket));
	KEEP("domain (the hub's own)", strcmp(old->hub_domain, nc->hub_domain),
	     strcpy(nc->hub_domain, old->hub_domain));
	KEEP("dialback_secret_file",
	     strcmp(old->dialback_secret_file, nc->dialback_secret_file) ||
		     (old->dialback_secret_file[0] && strcmp(old->dialback_secret, nc->dialback_secret)),
	     (strcpy(nc->dialback_secret_file, old->dialback_secret_file),
	      strcpy(nc->dialback_secret, old->dialback_secret)));
	/* a random secret (no file) is made per load: the running one stays */
	strcpy(nc->dialback_secret, old->dialback_secret);
	KEEP("[backend] sections", !cfg_backend_same(old, nc), cfg_backend_copy(nc, old));
	KEEP("send_queue_max", old->send_queue_max != nc->send_queue_max, nc->send_queue_max = old->send_queue_max);
	KEEP("dns_server", !addr_same(&old->dns_server, &nc->dns_server), nc->dns_server = old->dns_server);
	KEEP("dns_cache_max / dns_ttl_min / dns_ttl_max / dns_max_inflight",
	     old->dns_cache_max != nc->dns_cache_max || old->dns_ttl_min != nc->dns_ttl_min ||
		     old->dns_ttl_max != nc->dns_ttl_max || old->dns_max_inflight != nc->dns_max_inflight,
	     (nc->dns_cache_max = old->dns_cache_max, nc->dns_ttl_min = old->dns_ttl_min,
	      nc->dns_ttl_max = old->dns_ttl_max, nc->dns_max_inflight = old->dns_max_inflight));
	KEEP("[cluster]", !cluster_same(&old->cluster, &nc->cluster), nc->cluster = old->cluster);
#undef KEEP
	return n;
}

/* Append "a, b, c" of names to buf. */
static void list_add(char *buf, size_t cap, const char *name)
{
	size_t n = strlen(buf);
	if (n + strlen(name) + 3 >= cap) {
		if (n + 4 < cap && strcmp(buf + (n > 3 ? n - 3 : 0), "..."))
			strcat(buf, "...");
		return;
	}
	if (n)
		strcat(buf, ", ");
	strcat(buf, name);
}

int reload_run(const char *why, FILE *out)
{
	pthread_mutex_lock(&reload_lock);
	struct cfg *old = hub_cfg, *nc = xcalloc(1, sizeof(*nc));
	const char *file = conf_path ? conf_path : "(embedded configuration)";
	log_info(0, "reload (%s): reading %s", why, file);

	char *errtext = NULL;
	size_t errlen = 0;
	FILE *mem = open_memstream(&errtext, &errlen);
	if (!mem) {
		say(out, 0, "cannot allocate for the error report; running configuration unchanged");
		free(nc);
		pthread_mutex_unlock(&reload_lock);
		return -ENOMEM;
	}
	int errs = conf_path ? cfg_load(nc, conf_path, mem) : cfg_load_default(nc, mem);
	errs += check_config(nc, conf_path, mem);
	fclose(mem);
	for (char *line = errtext, *nl; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = 0;
		say(out, errs ? 0 : 1, "%s", line);
		if (!nl)
			break;
	}
	free(errtext);
	if (errs) {
		say(out, 0, "refused: %d error%s in %s; running configuration unchanged", errs, errs == 1 ? "" : "s",
		    file);
		cfg_free(nc);
		free(nc);
		atomic_fetch_add(&reloads_refused, 1);
		pthread_mutex_unlock(&reload_lock);
		return -EINVAL;
	}
	keep_restart_only(old, nc, out);

	/* Certificates: a new TLS context when any changed (renewed files too). */
	int nnew;
	struct stamp *nst = stamps_make(nc, &nnew);
	char renewed[512] = "";
	bool tls_change = strcmp(old->ca_file, nc->ca_file) != 0;
	for (int i = 0; i < nnew; i++) {
		const struct stamp *o = NULL;
		for (int k = 0; k < nstamps; k++)
			if (!strcmp(stamps[k].name, nst[i].name))
				o = &stamps[k];
		if (nst[i].cert[0] && (!o || !stamp_same(o, &nst[i]))) {
			list_add(renewed, sizeof(renewed), nst[i].name);
			tls_change = true;
		} else if (!nst[i].cert[0] && o && o->cert[0]) {
			tls_change = true; /* a certificate dropped */
		}
	}
	for (int k = 0; k < nstamps; k++)
		if (stamps[k].cert[0] && !find_domain(nc, stamps[k].name))
			tls_change = true;
	struct tls_ctx *ntls = NULL;
	if (tls_change && !(ntls = reload_make_tls(nc, out))) {
		say(out, 0, "refused: the certificates do not load; running configuration unchanged");
		free(nst);
		cfg_free(nc);
		free(nc);
		atomic_fetch_add(&reloads_refused, 1);
		pthread_mutex_unlock(&reload_lock);
		return -EINVAL;
	}

	/* What changed, for the log. */
	char dadd[512] = "", ddel[512] = "", cadd[512] = "", cdel[512] = "", radd[512] = "", rdel[512] = "",
	     rchg[512] = "";
	for (int i = 0; i < nc->ndomains; i++)
		if (!find_domain(old, nc->domains[i].name))
			list_add(dadd, sizeof(dadd), nc->domains[i].name);
	for (int i = 0; i < old->ndomains; i++)
		if (!find_domain(nc, old->domains[i].name))
			list_add(ddel, sizeof(ddel), old->domains[i].name);
	for (int i = 0; i < nc->ncomponents; i++)
		if (!find_component(old, nc->components[i].name))
			list_add(cadd, sizeof(cadd), nc->components[i].name);
	for (int i = 0; i < old->ncomponents; i++)
		if (!find_component(nc, old->components[i].name))
			list_add(cdel, sizeof(cdel), old->components[i].name);
	for (int i = 0; i < nc->nroutes; i++) {
		const struct cfg_route *o = find_route(old, nc->routes[i].name);
		if (!o)
			list_add(radd, sizeof(radd), nc->routes[i].name);
		else if (!route_same(o, &nc->routes[i]))
			list_add(rchg, sizeof(rchg), nc->routes[i].name);
	}
	for (int i = 0; i < old->nroutes; i++)
		if (!find_route(nc, old->routes[i].name))
			list_add(rdel, sizeof(rdel), old->routes[i].name);

	/* New names route from the moment the configuration is published. A
	 * component already in the table keeps its connection pool. */
	rcu_thread_online();
	for (int i = 0; i < nc->ndomains; i++)
		if (!find_domain(old, nc->domains[i].name) && !find_component(old, nc->domains[i].name))
			rt_set_static(nc->domains[i].name, RT_HOSTED);
	for (int i = 0; i < nc->ncomponents; i++)
		if (!find_component(old, nc->components[i].name))
			rt_set_static(nc->components[i].name, RT_COMPONENT);
	rcu_thread_offline();

	/* rcu_xchg_pointer, spelled with the compiler's builtin so that
	 * ThreadSanitizer sees the release the readers' acquire pairs with */
	struct tls_ctx *otls = ntls ? __atomic_exchange_n(&hub_tls_live, ntls, __ATOMIC_SEQ_CST) : NULL;
	(void)__atomic_exchange_n(&hub_cfg_live, nc, __ATOMIC_SEQ_CST);
	__atomic_store_n(&log_level, nc->log_level, __ATOMIC_RELAXED);
	synchronize_rcu(); /* no worker sees the old configuration any more */

	bool removed = false;
	rcu_thread_online();
	for (int i = 0; i < old->ndomains; i++) {
		const char *d = old->domains[i].name;
		if (!find_domain(nc, d) && !find_component(nc, d) && strcmp(d, nc->hub_domain) &&
		    !cfg_backend_of(nc, d)) {
			rt_del_static(d);
			removed = true;
		}
	}
	for (int i = 0; i < old->ncomponents; i++) {
		const char *d = old->components[i].name;
		if (!find_component(nc, d)) {
			rt_del_static(d);
			if (find_domain(nc, d))
				rt_set_static(d, RT_HOSTED);
			removed = true;
		}
	}
	rcu_thread_offline();
	if (removed)
		atomic_fetch_add(&cfg_gen, 1); /* workers close what lost its domain */

	cfg_free(old);
	if (old != first_cfg)
		free(old);
	tls_ctx_free(otls); /* freed for good with its last link */
	free(stamps);
	stamps = nst;
	nstamps = nnew;

	int nchanges = 0;
#define REPORT(buf, what)                                 \
	do {                                              \
		if (buf[0]) {                             \
			say(out, 2, "%s: %s", what, buf); \
			nchanges++;                       \
		}                                         \
	} while (0)
	REPORT(dadd, "domains added");
	REPORT(ddel, "domains removed");
	REPORT(cadd, "components added");
	REPORT(cdel, "components removed");
	REPORT(radd, "routes added");
	REPORT(rdel, "routes removed");
	REPORT(rchg, "routes changed");
	REPORT(renewed, "certificates renewed");
#undef REPORT
	if (ntls && !renewed[0])
		say(out, 2, "TLS context rebuilt (certificates or CA bundle changed)");
	say(out, 2, "done: %d domain%s, %d component%s, %d route%s%s", nc->ndomains, nc->ndomains == 1 ? "" : "s",
	    nc->ncomponents, nc->ncomponents == 1 ? "" : "s", nc->nroutes, nc->nroutes == 1 ? "" : "s",
	    nchanges ? "" : " (nothing changed)");
	atomic_fetch_add(&reloads_ok, 1);
	pthread_mutex_unlock(&reload_lock);
	return 0;
}

/* ---- workers -------------------------------------------------------------- */

static void sweep_conn(struct net_conn *c, void *arg)
{
	struct sess *s = c->user;
	(void)arg;
	if (!s || (c->flags & (NET_F_CLOSING | NET_F_CLOSED)) || !s->local)
		return;
	const struct rt_route *r = rt_lookup(s->local, strlen(s->local));
	switch (s->kind) {
	case SESS_S2S_IN:
		if (s->bk_src && (!r || r->kind == RT_S2S_OUT))
			break; /* a backend's transit stream: to a remote domain */
		if (!r || (r->kind != RT_HUB && r->kind != RT_HOSTED && r->kind != RT_COMPONENT))
			sess_stream_error(s, SERR_HOST_GONE, "this domain is no longer served here");
		break;
	case SESS_COMP:
		if (!r || r->kind != RT_COMPONENT)
			sess_stream_error(s, SERR_HOST_GONE, "this component was removed from the configuration");
		break;
	case SESS_S2S_OUT:
		if (!r || (r->kind != RT_HUB && r->kind != RT_HOSTED && r->kind != RT_COMPONENT)) {
			sess_sendf(s, "</stream:stream>");
			net_close(c, true);
		}
		break;
	default:
		break;
	}
}

void reload_worker_tick(struct hubw *h)
{
	static __thread uint32_t seen;
	uint32_t g = atomic_load_explicit(&cfg_gen, memory_order_acquire);
	if (g == seen)
		return;
	seen = g;
	net_worker_foreach(h->w, sweep_conn, NULL);
}
