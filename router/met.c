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
 *
 * This file holds the counter blocks, the registry of labelled domains and
 * the rendering of /metrics and /health. The HTTP endpoint is in
 * router/met_http.c, the resolver and /proc collectors in router/met_sys.c,
 * the certificate expiry parser in router/met_cert.c (their shared
 * internals: router/met-int.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "net/alloc.h"
#include "net/log.h"
#include "net/net.h"
#include "net/tls.h"
#include "router/met.h"
#include "router/met-int.h"
#include "router/clu.h"

static struct {
	struct met_worker *blocks; /* one per worker */
	int nworkers;
	struct timespec start;
	bool ready;
	char state[16];   /* /health "status" when not ready: starting, draining */
	char reason[128]; /* /health "reason"; empty: none */

	pthread_mutex_t lock; /* ready, and blocks against met_init/met_free */

	char build_version[64], build_wolfssl[128];
	bool build_set, build_aesni;
} met = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = true};

/* The registry of labelled domains. A name gets a slot once (under reg.lock,
 * when a link authenticates) and keeps it until met_init/met_free; the hash
 * of slots is published with release stores, so met_dom_find reads it
 * without a lock. Counters live in each worker's dom[] array, indexed by
 * the slot, and are summed at scrape like the plain counters. */
struct dom_name {
	char name[CFG_NAME_MAX];
	uint8_t kind;
	int8_t last_err; /* met_cond index + 1; 0: none */
};
static struct {
	pthread_mutex_t lock;
	uint32_t max;   /* metrics_domains_max */
	uint32_t n;     /* slots used (release-stored) */
	uint32_t hcap;  /* power of two > 2 * max */
	uint32_t *hash; /* slot + 1; 0 = empty */
	struct dom_name *names;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER, .max = 100};

/* Certificates of the hosted domains (fedhub_cert_expiry_seconds). */
static struct {
	char (*domain)[CFG_NAME_MAX];
	int64_t *not_after;
	size_t n, cap;
} certs;

/* ---- counters ------------------------------------------------------------ */

static uint32_t dom_slots(void)
{
	return reg.max + MET_DOM_KIND_N;
}

static void blocks_free(struct met_worker *b, int n)
{
	for (int i = 0; b && i < n; i++)
		free(b[i].dom);
	free(b);
}

int met_init(int nworkers)
{
	struct met_worker *b;
	uint32_t *hash;
	struct dom_name *names;
	uint32_t hcap = 16;
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
	for (size_t i = 0; i < n; i++) {
		b[i].dom = calloc(dom_slots(), sizeof(*b[i].dom));
		if (!b[i].dom) {
			blocks_free(b, (int)n);
			return -ENOMEM;
		}
	}
	while (hcap <= 2 * reg.max)
		hcap *= 2;
	hash = calloc(hcap, sizeof(*hash));
	names = calloc(dom_slots(), sizeof(*names));
	if (!hash || !names) {
		free(hash);
		free(names);
		blocks_free(b, (int)n);
		return -ENOMEM;
	}
	for (int k = 0; k < MET_DOM_KIND_N; k++) {
		strcpy(names[reg.max + (uint32_t)k].name, "_other");
		names[reg.max + (uint32_t)k].kind = (uint8_t)k;
	}
	/* Under the lock because the HTTP thread may be rendering (a test
	 * re-initialising between requests); workers must not be running. */
	pthread_mutex_lock(&met.lock);
	pthread_mutex_lock(&reg.lock);
	blocks_free(met.blocks, met.nworkers ? met.nworkers : 1);
	met.blocks = b;
	met.nworkers = nworkers;
	free(reg.hash);
	free(reg.names);
	reg.hash = hash;
	reg.names = names;
	reg.hcap = hcap;
	reg.n = 0;
	pthread_mutex_unlock(&reg.lock);
	clock_gettime(CLOCK_MONOTONIC, &met.start);
	met.ready = true;
	met.state[0] = met.reason[0] = 0;
	pthread_mutex_unlock(&met.lock);
	return 0;
}

struct met_worker *met_of(int worker)
{
	if (!met.blocks || worker < 0 || worker >= met.nworkers)
		return NULL;
	return &met.blocks[worker];
}

void met_set_state(const char *status, const char *reason)
{
	pthread_mutex_lock(&met.lock);
	met.ready = !strcmp(status, "ok");
	snprintf(met.state, sizeof(met.state), "%s", met.ready ? "" : status);
	snprintf(met.reason, sizeof(met.reason), "%s", reason ? reason : "");
	pthread_mutex_unlock(&met.lock);
}

/* ---- labels -------------------------------------------------------------- */

static const char *const dir_names[MET_DIR_N] = {"in", "out", "verify", "component", "node"};
static const char *const auth_names[MET_AUTH_N] = {"sasl_external", "dialback", "xep0344", "handshake",
						   "cluster_secret"};
/* The auth methods each direction uses: their series exist from the start. */
static const unsigned auth_used[MET_DIR_N] = {
	[MET_DIR_IN] = 1u << MET_AUTH_SASL_EXTERNAL | 1u << MET_AUTH_DIALBACK | 1u << MET_AUTH_XEP0344,
	[MET_DIR_OUT] = 1u << MET_AUTH_SASL_EXTERNAL | 1u << MET_AUTH_DIALBACK,
	[MET_DIR_COMPONENT] = 1u << MET_AUTH_HANDSHAKE,
	[MET_DIR_NODE] = 1u << MET_AUTH_CLUSTER_SECRET,
};
static const char *const tls_names[MET_TLS_N] = {"none", "TLSv1.2", "TLSv1.3", "other"};
static const char *const gen_names[MET_GEN_N] = {"bounce", "answer"};
static const char *const kind_names[MET_DOM_KIND_N] = {"remote", "component"};

/* RFC 6120 §4.9.3 (stream) and §8.3.3 (stanza) conditions, one list: the
 * names that are in both mean the same in both. */
static const char *const cond_names[MET_COND_N] = {
	"bad-format",
	"bad-namespace-prefix",
	"conflict",
	"connection-timeout",
	"host-gone",
	"host-unknown",
	"improper-addressing",
	"internal-server-error",
	"invalid-from",
	"invalid-namespace",
	"invalid-xml",
	"not-authorized",
	"not-well-formed",
	"policy-violation",
	"remote-connection-failed",
	"reset",
	"resource-constraint",
	"restricted-xml",
	"see-other-host",
	"system-shutdown",
	"undefined-condition",
	"unsupported-encoding",
	"unsupported-feature",
	"unsupported-stanza-type",
	"unsupported-version",
	"remote-server-not-found",
	"remote-server-timeout",
	"service-unavailable",
	"feature-not-implemented",
	"item-not-found",
	"bad-request",
	"other",
};

int met_cond(const char *name)
{
	for (int i = 0; name && i < MET_COND_N - 1; i++)
		if (!strcmp(name, cond_names[i]))
			return i;
	return MET_COND_N - 1;
}

enum met_tls met_tls_of(const char *v)
{
	if (!v)
		return MET_TLS_NONE;
	if (!strcmp(v, "TLSv1.2"))
		return MET_TLS_12;
	if (!strcmp(v, "TLSv1.3"))
		return MET_TLS_13;
	return MET_TLS_OTHER;
}

void met_set_domains_max(uint32_t n)
{
	pthread_mutex_lock(&reg.lock);
	reg.max = n;
	pthread_mutex_unlock(&reg.lock);
}

static uint32_t name_hash(enum met_dom_kind kind, const char *d)
{
	uint32_t h = 2166136261u ^ (uint32_t)kind;

	for (; *d; d++)
		h = (h ^ (unsigned char)*d) * 16777619u;
	return h;
}

int met_dom_find(enum met_dom_kind kind, const char *d)
{
	uint32_t *hash = __atomic_load_n(&reg.hash, __ATOMIC_ACQUIRE);
	uint32_t mask = reg.hcap - 1;

	if (!hash || !d)
		return -1;
	for (uint32_t i = name_hash(kind, d) & mask;; i = (i + 1) & mask) {
		uint32_t v = __atomic_load_n(&hash[i], __ATOMIC_ACQUIRE);
		if (!v)
			return -1;
		const struct dom_name *e = &reg.names[v - 1];
		if (e->kind == kind && !strcmp(e->name, d))
			return (int)(v - 1);
	}
}

int met_dom_index(enum met_dom_kind kind, const char *d)
{
	int i = met_dom_find(kind, d);

	if (i >= 0 || !reg.hash)
		return i >= 0 ? i : -1;
	pthread_mutex_lock(&reg.lock);
	i = met_dom_find(kind, d); /* another worker may have just added it */
	if (i < 0 && reg.n < reg.max && strlen(d) < CFG_NAME_MAX) {
		uint32_t mask = reg.hcap - 1, h = name_hash(kind, d) & mask;
		struct dom_name *e = &reg.names[reg.n];
		strcpy(e->name, d);
		e->kind = (uint8_t)kind;
		while (reg.hash[h])
			h = (h + 1) & mask;
		i = (int)reg.n;
		__atomic_store_n(&reg.n, reg.n + 1, __ATOMIC_RELEASE);
		__atomic_store_n(&reg.hash[h], (uint32_t)i + 1, __ATOMIC_RELEASE);
	}
	if (i < 0)
		i = (int)(reg.max + (uint32_t)kind);
	pthread_mutex_unlock(&reg.lock);
	return i;
}

int met_dom_slot(enum met_dom_kind kind, const char *d)
{
	int i = met_dom_find(kind, d);

	return i >= 0 ? i : (int)(reg.max + (uint32_t)kind);
}

void met_dom_error(enum met_dom_kind kind, const char *d, const char *cond)
{
	int i = d ? met_dom_slot(kind, d) : -1;

	if (i >= 0 && reg.names)
		__atomic_store_n(&reg.names[i].last_err, (int8_t)(met_cond(cond) + 1), __ATOMIC_RELAXED);
}

void met_conn_open(struct met_worker *w, struct met_link *l, enum met_dir dir)
{
	if (!w || l->open)
		return;
	l->open = true;
	l->dir = (uint8_t)dir;
	l->dom = -1;
	MET_INC(w, conns_open);
	MET_INC(w, conns_dir[dir]);
}

void met_link_up(struct met_worker *w, struct met_link *l, enum met_auth auth, enum met_tls tls, enum met_dom_kind kind,
		 const char *d)
{
	if (!w || !l->open)
		return;
	MET_INC(w, links_auth[l->dir][auth]);
	if (l->up)
		return;
	l->up = true;
	l->auth = (uint8_t)auth;
	l->tls = (uint8_t)tls;
	MET_INC(w, links_up[l->dir][auth][tls]);
	l->dom = d ? met_dom_index(kind, d) : -1;
	if (l->dom >= 0)
		MET_INC(w, dom[l->dom].links);
}

void met_conn_close(struct met_worker *w, struct met_link *l)
{
	if (!w || !l->open)
		return;
	MET_DEC(w, conns_open);
	MET_DEC(w, conns_dir[l->dir]);
	if (l->up) {
		MET_DEC(w, links_up[l->dir][l->auth][l->tls]);
		if (l->dom >= 0)
			MET_DEC(w, dom[l->dom].links);
	}
	l->open = l->up = false;
}

/* ---- static information ---------------------------------------------------- */

void met_set_build_info(const char *version, const char *wolfssl, bool aesni)
{
	pthread_mutex_lock(&met.lock);
	snprintf(met.build_version, sizeof(met.build_version), "%s", version ? version : "");
	snprintf(met.build_wolfssl, sizeof(met.build_wolfssl), "%s", wolfssl ? wolfssl : "");
	met.build_aesni = aesni;
	met.build_set = true;
	pthread_mutex_unlock(&met.lock);
}

int met_cert_expiry_file(const char *domain, const char *path)
{
	int64_t t = met_pem_not_after(path);

	if (t < 0)
		return -1;
	pthread_mutex_lock(&met.lock);
	size_t i;
	for (i = 0; i < certs.n && strcmp(certs.domain[i], domain); i++)
		;
	if (i == certs.n) {
		if (certs.n == certs.cap) {
			certs.cap = certs.cap ? certs.cap * 2 : 16;
			certs.domain = xrealloc(certs.domain, certs.cap * sizeof(*certs.domain));
			certs.not_after = xrealloc(certs.not_after, certs.cap * sizeof(*certs.not_after));
		}
		snprintf(certs.domain[certs.n], CFG_NAME_MAX, "%s", domain);
		certs.n++;
	}
	certs.not_after[i] = t;
	pthread_mutex_unlock(&met.lock);
	return 0;
}

static uint64_t uptime_s(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - met.start.tv_sec);
}

/* ---- rendering ----------------------------------------------------------- */

/* The appender (met-int.h). */
void met_put(struct met_out *o, const char *fmt, ...)
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

void met_metric(struct met_out *o, const char *name, const char *suffix, const char *type, const char *help, uint64_t v)
{
	met_put(o, "# HELP fedhub_%s%s %s\n# TYPE fedhub_%s%s %s\nfedhub_%s%s %llu\n", name, suffix, help, name, suffix,
		type, name, suffix, (unsigned long long)v);
}

/* One metric with a label taking n values. */
void met_metric_by(struct met_out *o, const char *name, const char *type, const char *help, const char *label,
		   const char *const *vals, const uint64_t *v, int n)
{
	met_put(o, "# HELP fedhub_%s %s\n# TYPE fedhub_%s %s\n", name, help, name, type);
	for (int i = 0; i < n; i++)
		met_put(o, "fedhub_%s{%s=\"%s\"} %llu\n", name, label, vals[i], (unsigned long long)v[i]);
}

static uint64_t sum_field(size_t off)
{
	uint64_t s = 0;

	for (int w = 0; met.blocks && w < met.nworkers; w++)
		s += __atomic_load_n((uint64_t *)((char *)&met.blocks[w] + off), __ATOMIC_RELAXED);
	return s;
}

size_t met_escape_label(const char *in, char *out, size_t cap)
{
	size_t n = 0;

	for (; *in; in++) {
		const char *rep = NULL;
		char one[2] = {*in, 0};
		if (*in == '\\')
			rep = "\\\\";
		else if (*in == '"')
			rep = "\\\"";
		else if (*in == '\n')
			rep = "\\n";
		else
			rep = one;
		for (; *rep; rep++, n++)
			if (n + 1 < cap)
				out[n] = *rep;
	}
	if (cap)
		out[n < cap ? n : cap - 1] = 0;
	return n;
}

/* A label value, escaped, into the output (values here are short: domain
 * names, conditions, versions). */
static const char *esc(const char *in, char *tmp, size_t cap)
{
	met_escape_label(in, tmp, cap);
	return tmp;
}

static void head(struct met_out *o, const char *name, const char *type, const char *help)
{
	met_put(o, "# HELP fedhub_%s %s\n# TYPE fedhub_%s %s\n", name, help, name, type);
}

/* Sum of a uint64 at byte offset off of every worker block. */
#define SUM(expr) sum_field(offsetof(struct met_worker, expr))

/* A counter labelled by link direction, from a uint64 [MET_DIR_N] array
 * at byte offset off of each worker block. */
static void by_direction_at(struct met_out *o, const char *name, const char *help, size_t off)
{
	head(o, name, "counter", help);
	for (int d = 0; d < MET_DIR_N; d++)
		met_put(o, "fedhub_%s{direction=\"%s\"} %llu\n", name, dir_names[d],
			(unsigned long long)sum_field(off + (size_t)d * sizeof(uint64_t)));
}
#define by_direction(o, name, help, field) by_direction_at(o, name, help, offsetof(struct met_worker, field))

static void render_labelled(struct met_out *o)
{
	head(o, "connections_open", "gauge",
	     "connections open by direction, from accept or connect to close (a stream need not be open)");
	for (int d = 0; d < MET_DIR_N; d++)
		met_put(o, "fedhub_connections_open{direction=\"%s\"} %llu\n", dir_names[d],
			(unsigned long long)SUM(conns_dir[d]));
	head(o, "links_authenticated", "gauge",
	     "connections whose stream is authenticated, by direction, auth and TLS version");
	for (int d = 0; d < MET_DIR_N; d++)
		for (int a = 0; a < MET_AUTH_N; a++)
			for (int t = 0; t < MET_TLS_N; t++) {
				uint64_t v = SUM(links_up[d][a][t]);
				if (v)
					met_put(o,
						"fedhub_links_authenticated{direction=\"%s\",auth=\"%s\",tls=\"%s\"} "
						"%llu\n",
						dir_names[d], auth_names[a], tls_names[t], (unsigned long long)v);
			}
	head(o, "link_authentications_total", "counter",
	     "domain pairs or components authenticated, by direction and auth method");
	for (int d = 0; d < MET_DIR_N; d++)
		for (int a = 0; a < MET_AUTH_N; a++) {
			uint64_t v = SUM(links_auth[d][a]);
			if (v || auth_used[d] & (1u << a))
				met_put(o, "fedhub_link_authentications_total{direction=\"%s\",auth=\"%s\"} %llu\n",
					dir_names[d], auth_names[a], (unsigned long long)v);
		}
	by_direction(o, "stanzas_received_total", "stanzas received from peers and components, by link direction",
		     stanzas_dir[0]);
	by_direction(o, "stanzas_sent_total", "stanzas queued to peers and components, by link direction",
		     stanzas_dir[1]);
	head(o, "stanzas_generated_total", "counter",
	     "stanzas the hub generated (bounces, answers to stanzas for its own domain)");
	for (int g = 0; g < MET_GEN_N; g++)
		met_put(o, "fedhub_stanzas_generated_total{kind=\"%s\"} %llu\n", gen_names[g],
			(unsigned long long)SUM(generated[g]));
	by_direction(o, "received_bytes_total", "XML bytes received (after TLS), by link direction", bytes_dir[0]);
	by_direction(o, "sent_bytes_total", "XML bytes queued to send (before TLS), by link direction", bytes_dir[1]);
	head(o, "bounces_total", "counter", "stanzas bounced to their sender, by stanza error condition");
	for (int c = 0; c < MET_COND_N; c++) {
		uint64_t v = SUM(bounces[c]);
		if (v)
			met_put(o, "fedhub_bounces_total{condition=\"%s\"} %llu\n", cond_names[c],
				(unsigned long long)v);
	}
	head(o, "stream_errors_by_condition_total", "counter", "stream errors sent and received, by condition");
	for (int s = 0; s < 2; s++)
		for (int c = 0; c < MET_COND_N; c++) {
			uint64_t v = SUM(stream_errors[s][c]);
			if (v)
				met_put(o,
					"fedhub_stream_errors_by_condition_total{side=\"%s\",condition=\"%s\"} %llu\n",
					s ? "sent" : "received", cond_names[c], (unsigned long long)v);
		}
}

static uint64_t sum_dom(uint32_t i, size_t off)
{
	uint64_t s = 0;

	for (int w = 0; met.blocks && w < met.nworkers; w++)
		s += __atomic_load_n((uint64_t *)((char *)&met.blocks[w].dom[i] + off), __ATOMIC_RELAXED);
	return s;
}

/* Per-domain series: the registered domains, then "_other" per kind. */
static void render_domains(struct met_out *o)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
		int dir; /* -1: no direction label */
	} fam[] = {
		{"domain_stanzas_total", "counter", "stanzas from (in) and to (out) a remote or component domain",
		 offsetof(struct met_dom, stanzas[0]), 0},
		{NULL, NULL, NULL, offsetof(struct met_dom, stanzas[1]), 1},
		{"domain_bytes_total", "counter", "stanza bytes from (in) and to (out) a remote or component domain",
		 offsetof(struct met_dom, bytes[0]), 0},
		{NULL, NULL, NULL, offsetof(struct met_dom, bytes[1]), 1},
		{"domain_links", "gauge", "authenticated links of a remote or component domain",
		 offsetof(struct met_dom, links), -1},
	};
	uint32_t n = __atomic_load_n(&reg.n, __ATOMIC_ACQUIRE);
	char e[2 * CFG_NAME_MAX];

	met_metric(o, "metrics_domains_max", "", "gauge", "the cap on labelled domains (metrics_domains_max)", reg.max);
	met_metric(o, "metrics_domains", "", "gauge", "domains with labelled series (the rest: domain=\"_other\")", n);
	if (!reg.names || !met.blocks)
		return;
	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		if (fam[f].name)
			head(o, fam[f].name, fam[f].type, fam[f].help);
		const char *name = fam[f].name ? fam[f].name : fam[f - 1].name;
		for (uint32_t j = 0; j < n + MET_DOM_KIND_N; j++) {
			uint32_t i = j < n ? j : reg.max + (j - n);
			const struct dom_name *d = &reg.names[i];
			if (fam[f].dir >= 0)
				met_put(o, "fedhub_%s{kind=\"%s\",domain=\"%s\",direction=\"%s\"} %llu\n", name,
					kind_names[d->kind], esc(d->name, e, sizeof(e)), fam[f].dir ? "out" : "in",
					(unsigned long long)sum_dom(i, fam[f].off));
			else
				met_put(o, "fedhub_%s{kind=\"%s\",domain=\"%s\"} %llu\n", name, kind_names[d->kind],
					esc(d->name, e, sizeof(e)), (unsigned long long)sum_dom(i, fam[f].off));
		}
	}
	head(o, "domain_last_error_info", "gauge",
	     "the last stream error on a link of the domain, or remote-connection-failed (always 1)");
	for (uint32_t j = 0; j < n + MET_DOM_KIND_N; j++) {
		uint32_t i = j < n ? j : reg.max + (j - n);
		int le = __atomic_load_n(&reg.names[i].last_err, __ATOMIC_RELAXED);
		if (le > 0)
			met_put(o, "fedhub_domain_last_error_info{kind=\"%s\",domain=\"%s\",condition=\"%s\"} 1\n",
				kind_names[reg.names[i].kind], esc(reg.names[i].name, e, sizeof(e)),
				cond_names[le - 1]);
	}
}

static void render_static(struct met_out *o)
{
	char a[256], b[256];

	if (met.build_set) {
		head(o, "build_info", "gauge", "the build (always 1)");
		met_put(o, "fedhub_build_info{version=\"%s\",wolfssl=\"%s\",aesni=\"%s\"} 1\n",
			esc(met.build_version, a, sizeof(a)), esc(met.build_wolfssl, b, sizeof(b)),
			met.build_aesni ? "yes" : "no");
	}
	if (certs.n) {
		head(o, "cert_expiry_seconds", "gauge", "notAfter of each hosted domain's certificate (Unix time)");
		for (size_t i = 0; i < certs.n; i++)
			met_put(o, "fedhub_cert_expiry_seconds{domain=\"%s\"} %lld\n",
				esc(certs.domain[i], a, sizeof(a)), (long long)certs.not_after[i]);
	}
}

uint64_t met_conns_open(void)
{
	return sum_field(offsetof(struct met_worker, conns_open));
}

void met_flow_publish(struct met_worker *w, const struct met_flow *f, int n)
{
	if (!n && !w->flow_n)
		return;
	__atomic_store_n(&w->flow_seq, w->flow_seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (int i = 0; i < n; i++) {
		for (size_t k = 0; k < sizeof(f[i].dest); k++)
			__atomic_store_n(&w->flow[i].dest[k], f[i].dest[k], __ATOMIC_RELAXED);
		__atomic_store_n(&w->flow[i].stanzas, f[i].stanzas, __ATOMIC_RELAXED);
		__atomic_store_n(&w->flow[i].bytes, f[i].bytes, __ATOMIC_RELAXED);
		__atomic_store_n(&w->flow[i].paused, f[i].paused, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&w->flow_n, (uint32_t)n, __ATOMIC_RELAXED);
	__atomic_store_n(&w->flow_seq, w->flow_seq + 1, __ATOMIC_RELEASE);
}

/* Per-destination flow queue depth: a consistent copy of each worker's list
 * (retried while the worker writes it). */
#define NET_FLOW_WORKERS_MAX 64
static void render_flow(struct met_out *o)
{
	static const char *const names[] = {"flow_dest_queue_stanzas", "flow_dest_queue_bytes",
					    "flow_dest_paused_sources"};
	static const char *const helps[] = {"stanzas waiting for this destination (the deepest queues of each worker)",
					    "bytes waiting for this destination (the deepest queues of each worker)",
					    "source connections paused for this destination"};
	static struct met_flow f[NET_FLOW_WORKERS_MAX][MET_FLOW_TOP]; /* under met.lock */
	uint32_t nf[NET_FLOW_WORKERS_MAX] = {0};
	int nw = met.nworkers < NET_FLOW_WORKERS_MAX ? met.nworkers : NET_FLOW_WORKERS_MAX;
	for (int w = 0; met.blocks && w < nw; w++) {
		struct met_worker *b = &met.blocks[w];
		for (int tries = 0; tries < 100; tries++) {
			uint64_t s1 = __atomic_load_n(&b->flow_seq, __ATOMIC_ACQUIRE);
			if (s1 & 1)
				continue;
			uint32_t n = __atomic_load_n(&b->flow_n, __ATOMIC_RELAXED);
			if (n > MET_FLOW_TOP)
				n = MET_FLOW_TOP;
			for (uint32_t i = 0; i < n; i++) {
				for (size_t k = 0; k < sizeof(f[w][i].dest); k++)
					f[w][i].dest[k] = __atomic_load_n(&b->flow[i].dest[k], __ATOMIC_RELAXED);
				f[w][i].dest[sizeof(f[w][i].dest) - 1] = 0;
				f[w][i].stanzas = __atomic_load_n(&b->flow[i].stanzas, __ATOMIC_RELAXED);
				f[w][i].bytes = __atomic_load_n(&b->flow[i].bytes, __ATOMIC_RELAXED);
				f[w][i].paused = __atomic_load_n(&b->flow[i].paused, __ATOMIC_RELAXED);
			}
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&b->flow_seq, __ATOMIC_RELAXED) == s1) {
				nf[w] = n;
				break;
			}
		}
	}
	for (int m = 0; m < 3; m++) {
		met_put(o, "# HELP fedhub_%s %s\n# TYPE fedhub_%s gauge\n", names[m], helps[m], names[m]);
		for (int w = 0; w < nw; w++)
			for (uint32_t i = 0; i < nf[w]; i++) {
				uint64_t v = m == 0 ? f[w][i].stanzas : m == 1 ? f[w][i].bytes : f[w][i].paused;
				met_put(o, "fedhub_%s{dest=\"", names[m]);
				/* a domain is [a-z0-9.-]; anything else would break the label */
				for (const char *c = f[w][i].dest; *c; c++)
					met_put(o, "%c",
						(*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) ? '_' : *c);
				met_put(o, "\",worker=\"%d\"} %llu\n", w, (unsigned long long)v);
			}
	}
}

size_t met_render(char *buf, size_t cap)
{
	struct met_out o = {buf, cap, 0};

	pthread_mutex_lock(&met.lock);
#define MET_LINE(name, help) \
	met_metric(&o, #name, "_total", "counter", help, sum_field(offsetof(struct met_worker, name)));
	MET_COUNTERS(MET_LINE)
	MET_COUNTERS_IN(MET_LINE)
#undef MET_LINE
	met_metric(&o, "proxy_untrusted", "_total", "counter",
		   "connections refused: PROXY protocol header expected from a source not in proxy_from",
		   net_proxy_refused());
	met_metric(&o, "tls_tickets_rejected", "_total", "counter",
		   "session tickets presented that no ticket key held opens (a full handshake instead)",
		   tls_ticket_rejected());
	met_metric(&o, "starttls_discarded_bytes", "_total", "counter",
		   "bytes received in the clear after <starttls/> or <proceed/> and discarded", net_starttls_dropped());
	met_metric(&o, "conns_open", "", "gauge", "connections open",
		   sum_field(offsetof(struct met_worker, conns_open)));
	met_metric(&o, "flow_paused_sources", "", "gauge",
		   "source connections not read now (their destination is full)",
		   sum_field(offsetof(struct met_worker, flow_paused_sources)));
	met_metric(&o, "flow_queue_bytes", "", "gauge",
		   "bytes of stanzas waiting in flow queues (queue_memory_max bounds it)",
		   sum_field(offsetof(struct met_worker, flow_queue_bytes)));
	met_metric(&o, "flow_queue_stanzas", "", "gauge", "stanzas waiting in flow queues",
		   sum_field(offsetof(struct met_worker, flow_queue_stanzas)));
	render_flow(&o);
	met_metric_by(&o, "cluster_forwarded_total", "counter",
		      "stanzas forwarded between cluster nodes: out to another node, in from one", "direction",
		      (const char *const[]){"out", "in"}, (const uint64_t[]){SUM(cluster_fwd[0]), SUM(cluster_fwd[1])},
		      2);
	met_metric(&o, "cluster_node_queue_bytes", "", "gauge",
		   "bytes waiting for node links (send queues, flow queues, links still authenticating)",
		   SUM(nl_queue_bytes));
	met_metric(&o, "cluster_node_queue_stanzas", "", "gauge", "stanzas waiting for a node link to authenticate",
		   SUM(nl_queue_stanzas));
	met_metric(&o, "node_link_unacked", "", "gauge",
		   "stanzas sent or about to be sent on node links and not acknowledged by the receiving node yet",
		   SUM(nl_unacked));
	met_metric(&o, "workers", "", "gauge", "worker threads", (uint64_t)met.nworkers);
	met_metric(&o, "uptime_seconds", "", "gauge", "seconds since start", uptime_s());
	met_metric(&o, "ready", "", "gauge", "1 while /health answers 200", met.ready);
	render_labelled(&o);
	render_domains(&o);
	render_static(&o);
	met_render_process(&o);
	met_render_dns(&o);
	met_render_latency(&o);
	met_render_backends(&o);
	met_render_cluster(&o);
	pthread_mutex_unlock(&met.lock);
	if (cap)
		buf[o.len < cap ? o.len : cap - 1] = 0;
	return o.len;
}

void met_json_str(void (*put)(void *o, const char *p, size_t n), void *o, const char *s)
{
	put(o, "\"", 1);
	while (s && *s) {
		size_t run = 0; /* bytes that stand for themselves */
		while (s[run] && s[run] != '"' && s[run] != '\\' && (unsigned char)s[run] >= 0x20)
			run++;
		if (run) {
			put(o, s, run);
			s += run;
			continue;
		}
		char esc[8];
		unsigned char ch = (unsigned char)*s++;
		int k = ch < 0x20 ? snprintf(esc, sizeof(esc), "\\u%04x", ch) : snprintf(esc, sizeof(esc), "\\%c", ch);
		put(o, esc, (size_t)k);
	}
	put(o, "\"", 1);
}

static void met_out_put(void *o, const char *p, size_t n)
{
	met_put(o, "%.*s", (int)n, p);
}

static void put_json_str(struct met_out *o, const char *s)
{
	met_json_str(met_out_put, o, s);
}

size_t met_render_health(char *buf, size_t cap, bool *ok)
{
	struct met_out o = {buf, cap, 0};

	pthread_mutex_lock(&met.lock);
	*ok = met.ready;
	met_put(&o, "{\"status\":");
	put_json_str(&o, met.ready ? "ok" : met.state[0] ? met.state : "unavailable");
	if (met.reason[0]) {
		met_put(&o, ",\"reason\":");
		put_json_str(&o, met.reason);
	}
	met_put(&o, ",\"workers\":%d,\"uptime_s\":%llu", met.nworkers, (unsigned long long)uptime_s());
	/* a node without Redis still routes (cached owners, its leases
	 * self-fence): not a reason for the balancer to drop it, so no 503 */
	if (clu_redis_state() != CLU_REDIS_OFF)
		met_put(&o, ",\"redis\":\"%s\"", clu_redis_state() == CLU_REDIS_UP ? "up" : "down");
	pthread_mutex_unlock(&met.lock);
	met_put(&o, "}");
	if (cap)
		buf[o.len < cap ? o.len : cap - 1] = 0;
	return o.len;
}

void met_free(void)
{
	met_http_stop();
	pthread_mutex_lock(&met.lock);
	blocks_free(met.blocks, met.nworkers ? met.nworkers : 1);
	met.blocks = NULL;
	met.nworkers = 0;
	pthread_mutex_lock(&reg.lock);
	free(reg.hash);
	free(reg.names);
	reg.hash = NULL;
	reg.names = NULL;
	reg.n = 0;
	pthread_mutex_unlock(&reg.lock);
	free(certs.domain);
	free(certs.not_after);
	memset(&certs, 0, sizeof(certs));
	pthread_mutex_unlock(&met.lock);
}
