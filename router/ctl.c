/*
 * router/ctl.c — the control socket behind fedhubctl.
 *
 * A Unix stream socket (control_socket in router.conf; mode 0660, so only
 * root and the hub's group may talk to it) served by one thread of its own,
 * one client at a time: an admin tool, not a crowd. A request is one line,
 * `COMMAND [ARG] [--json]`; the answer is a first line `OK` or `ERR`, then
 * a table (or one JSON document), then the connection is closed.
 *
 *   status                  state (ok / starting / draining), workers, links
 *   links                   every connection: direction, remote and local
 *                           domains, auth, TLS version, queued bytes, age,
 *                           peer address (behind a balancer: the client)
 *   components              each [component] and its connections
 *   close ID                close the link with that id politely
 *   resolve DOMAIN          what the hub would do for DOMAIN: served here, a
 *                           static route, or the SRV/A/AAAA targets from the
 *                           hub's own resolver (and its cache)
 *   reload                  as SIGHUP; answers with what changed
 *   drain                   as SIGTERM
 *   config check            the checks of `fedhub -t` on the file, applying nothing
 *
 * Workers are never blocked nor locked: a question for them is published as
 * a generation number and its arguments; each worker answers on its next
 * tick (~100 ms) into its own slot and publishes its answer with a release
 * store; this thread waits for every worker's answer (bounded) and puts the
 * answers together. A resolve is submitted by worker 0 to the hub's DNS code
 * like any link's lookup and its answer comes back to that worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "net/alloc.h"
#include "net/log.h"
#include "net/tls.h"
#include "router/check.h"
#include "router/ctl.h"
#include "router/hub.h"
#include "router/reload.h"
#include "router/s2s-t.h"
#include "router/backend.h"

enum q_kind { Q_LINKS = 1, Q_CLOSE, Q_RESOLVE };

static struct {
	int fd;
	char path[108];
	pthread_t th;
	_Atomic bool stop;
	bool running;
	/* the question */
	_Atomic uint32_t gen;
	int kind;
	uint64_t close_id;
	char domain[256];
	/* the answers, one slot per worker */
	struct {
		_Atomic uint32_t done;
		char *text;           /* malloc'd; NULL: out of memory */
		int found;            /* Q_CLOSE: 1 when this worker had the link */
		uint32_t pending_gen; /* Q_RESOLVE: the lookup under way */
	} ans[NET_MAX_WORKERS];
} ctl = {.fd = -1};

static char ctl_dns_cookie; /* marks the lookups made for `resolve` */

/* ---- a growing text buffer ------------------------------------------------- */

/* The control thread's answers grow with xrealloc (control plane: out of
 * memory aborts). A worker's text is built with `may_fail` set: plain
 * realloc, and `oom` records a failure, so the worker sends a NULL answer
 * ("out of memory") instead. */
struct sbuf {
	char *p;
	size_t n, cap;
	bool may_fail, oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0)
			return;
		if (b->p && b->n + (size_t)k < b->cap) {
			b->n += (size_t)k;
			return;
		}
		size_t cap = (b->cap + (size_t)k + 1) * 2;
		char *q = b->may_fail ? realloc(b->p, cap) : xrealloc(b->p, cap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
}

static void sb_put(void *b, const char *p, size_t n)
{
	sb_printf(b, "%.*s", (int)n, p);
}

static void sb_json_str(struct sbuf *b, const char *s)
{
	met_json_str(sb_put, b, s);
}

/* ---- worker side ------------------------------------------------------------ */

static const char *kind_name(enum sess_kind k)
{
	switch (k) {
	case SESS_S2S_IN:
		return "in";
	case SESS_S2S_OUT:
		return "out";
	case SESS_VERIFY:
		return "verify";
	case SESS_COMP:
		return "component";
	case SESS_BACKEND:
		return "backend";
	case SESS_NODE:
		return "node";
	}
	return "?";
}

/* Append name to a comma-separated list unless it is there or does not fit. */
static void list_add(char *list, size_t cap, const char *name)
{
	size_t n = strlen(list);
	if (name && !strstr(list, name) && n + strlen(name) + 2 < cap)
		snprintf(list + n, cap - n, "%s%s", n ? "," : "", name);
}

/* One record per connection: tab-separated fields, see ctl_links(). */
static void link_record(struct net_conn *c, void *arg)
{
	struct sbuf *b = arg;
	struct sess *s = c->user;
	if (!s)
		return;
	int valid = 0;
	char locals[512] = "", remotes[512] = "";
	for (int i = 0; i < s->npairs; i++) {
		struct pair *p = &s->pairs[i];
		if (p->state != PAIR_VALID)
			continue;
		valid++;
		list_add(locals, sizeof(locals), p->local);
		list_add(remotes, sizeof(remotes), p->remote);
	}
	if (s->kind == SESS_BACKEND) /* its pairs are the link's: the backend domains, "remote" here */
		valid = backend_sess_domains(s, remotes, locals, sizeof(remotes));
	if (!locals[0] && s->local)
		snprintf(locals, sizeof(locals), "%s", s->local);
	if (!remotes[0] && s->remote)
		snprintf(remotes, sizeof(remotes), "%s", s->remote);
	if (!remotes[0] && s->kind == SESS_S2S_OUT && s->link && s->link->remote)
		snprintf(remotes, sizeof(remotes), "%s", s->link->remote);
	const char *auth;
	if (s->kind == SESS_COMP)
		auth = s->tok.authenticated ? "handshake" : "pending";
	else if (s->kind == SESS_S2S_OUT && s->sasl_domain)
		auth = "sasl-external";
	else
		auth = valid ? "valid" : "pending";
	const char *tls = (s->tls_on && c->tls) ? tls_version(c->tls) : "none";
	uint32_t queued = (s->kind == SESS_S2S_OUT && s->link) ? s->link->queued
			  : s->kind == SESS_BACKEND            ? backend_sess_queued(s)
							       : 0;
	uint64_t age = (net_now_ms() - c->born) / 1000;
	/* the other end: behind a balancer, the client its PROXY header named */
	char peer[INET6_ADDRSTRLEN + 8] = "-";
	const struct sockaddr_in6 *sa = &c->peer;
	if (sa->sin6_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, peer, sizeof(peer));
		snprintf(peer + strlen(peer), sizeof(peer) - strlen(peer), ":%u", ntohs(s4->sin_port));
	} else if (sa->sin6_family == AF_INET6) {
		peer[0] = '[';
		inet_ntop(AF_INET6, &sa->sin6_addr, peer + 1, sizeof(peer) - 1);
		snprintf(peer + strlen(peer), sizeof(peer) - strlen(peer), "]:%u", ntohs(sa->sin6_port));
	}
	sb_printf(b, "%llu\t%d\t%s\t%s\t%s\t%s\t%s\t%llu\t%u\t%llu\t%s\n", (unsigned long long)c->id,
		  net_worker_id(c->w), kind_name(s->kind), remotes[0] ? remotes : "-", locals[0] ? locals : "-", auth,
		  tls ? tls : "?", (unsigned long long)c->oq_bytes, queued, (unsigned long long)age, peer);
}

struct close_arg {
	uint64_t id;
	int found;
};

static void close_one(struct net_conn *c, void *arg)
{
	struct close_arg *a = arg;
	struct sess *s = c->user;
	if (c->id != a->id || (c->flags & (NET_F_CLOSING | NET_F_CLOSED)))
		return;
	a->found = 1;
	log_info(c->id, "closed from the control socket");
	if (s)
		sess_sendf(s, "</stream:stream>"); /* RFC 6120 §4.4 */
	net_close(c, true);
}

static void answer(int id, uint32_t g, char *text, int found)
{
	ctl.ans[id].text = text;
	ctl.ans[id].found = found;
	atomic_store_explicit(&ctl.ans[id].done, g, memory_order_release);
}

void ctl_worker_tick(struct hubw *h)
{
	int id = net_worker_id(h->w);
	uint32_t g = atomic_load_explicit(&ctl.gen, memory_order_acquire);
	if (g == atomic_load_explicit(&ctl.ans[id].done, memory_order_relaxed) || g == ctl.ans[id].pending_gen)
		return;
	if (ctl.kind == Q_LINKS) {
		struct sbuf b = {.may_fail = true};
		sb_printf(&b, "%s", "");
		net_worker_foreach(h->w, link_record, &b);
		if (b.oom) {
			free(b.p);
			b.p = NULL;
		}
		answer(id, g, b.p, 0);
	} else if (ctl.kind == Q_CLOSE) {
		struct close_arg a = {ctl.close_id, 0};
		net_worker_foreach(h->w, close_one, &a);
		answer(id, g, NULL, a.found);
	} else if (ctl.kind == Q_RESOLVE) {
		if (id != 0) {
			answer(id, g, NULL, 0);
			return;
		}
		struct dns_req *r = calloc(1, sizeof(*r));
		if (!r) {
			answer(id, g, NULL, -ENOMEM);
			return;
		}
		snprintf(r->domain, sizeof(r->domain), "%s", ctl.domain);
		r->worker = id;
		r->cookie = &ctl_dns_cookie;
		ctl.ans[id].pending_gen = g;
		if (dns_submit(h->w, r) < 0) {
			free(r);
			ctl.ans[id].pending_gen = 0;
			answer(id, g, NULL, -EAGAIN);
		}
	} else {
		answer(id, g, NULL, 0);
	}
}

bool ctl_on_dns(struct hubw *h, struct dns_req *r)
{
	if (r->cookie != &ctl_dns_cookie)
		return false;
	int id = net_worker_id(h->w);
	struct sbuf b = {.may_fail = true};
	sb_printf(&b, "%d\n", r->status);
	for (int i = 0; i < r->ntargets; i++) {
		char host[INET6_ADDRSTRLEN] = "?";
		int port = 0;
		const union dns_addr *ss = &r->t[i].ss;
		if (ss->ss_family == AF_INET) {
			const struct sockaddr_in *a = (const void *)ss;
			inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
			port = ntohs(a->sin_port);
		} else if (ss->ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const void *)ss;
			inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
			port = ntohs(a->sin6_port);
		}
		sb_printf(&b, "%s\t%d\t%s\n", host, port, r->t[i].tls ? "direct-tls" : "starttls");
	}
	if (b.oom) {
		free(b.p);
		b.p = NULL;
	}
	uint32_t g = ctl.ans[id].pending_gen;
	ctl.ans[id].pending_gen = 0;
	free(r);
	/* a late answer to a question that timed out is dropped */
	if (g == atomic_load_explicit(&ctl.gen, memory_order_acquire))
		answer(id, g, b.p, 0);
	else
		free(b.p);
	return true;
}

/* ---- control-socket thread ---------------------------------------------------- */

/* Ask every worker; wait up to ms for all answers. Returns how many answered. */
static int ask_workers(int kind, int ms)
{
	int n = net_nworkers();
	for (int i = 0; i < n; i++) {
		free(ctl.ans[i].text);
		ctl.ans[i].text = NULL;
		ctl.ans[i].found = 0;
	}
	ctl.kind = kind;
	uint32_t g = atomic_fetch_add_explicit(&ctl.gen, 1, memory_order_release) + 1;
	int answered = 0;
	for (int waited = 0; waited <= ms; waited += 10) {
		answered = 0;
		for (int i = 0; i < n; i++)
			if (atomic_load_explicit(&ctl.ans[i].done, memory_order_acquire) == g)
				answered++;
		if (answered == n)
			break;
		usleep(10 * 1000);
	}
	if (answered < n) /* a late answer is for a question nobody asks any more */
		atomic_fetch_add_explicit(&ctl.gen, 1, memory_order_release);
	return answered;
}

/* ask_workers(kind) within the control socket's bound; -1 and a line in o
 * when a worker did not answer in time. */
static int ask_all(struct sbuf *o, int kind)
{
	if (ask_workers(kind, 3000) < net_nworkers()) {
		sb_printf(o, "a worker did not answer in time\n");
		return -1;
	}
	return 0;
}

static void cmd_status(struct sbuf *o, bool json)
{
	char health[512];
	bool ok;
	met_render_health(health, sizeof(health), &ok);
	rcu_thread_online();
	const struct cfg *c = hub_cfg;
	int nd = c->ndomains, nc = c->ncomponents, nr = c->nroutes;
	char hubd[CFG_NAME_MAX];
	snprintf(hubd, sizeof(hubd), "%s", c->hub_domain);
	rcu_thread_offline();
	const char *file = reload_conf_path();
	if (json) {
		sb_printf(o, "{\"health\":%s,\"hub_domain\":", health);
		sb_json_str(o, hubd);
		sb_printf(o, ",\"config\":");
		sb_json_str(o, file ? file : "(embedded)");
		sb_printf(o,
			  ",\"workers\":%d,\"connections\":%llu,\"domains\":%d,\"components\":%d,\"routes\":%d,"
			  "\"reloads\":%llu,\"reloads_refused\":%llu,\"draining\":%s,\"drain_left_s\":%u}\n",
			  net_nworkers(), (unsigned long long)met_conns_open(), nd, nc, nr,
			  (unsigned long long)reload_count(true), (unsigned long long)reload_count(false),
			  drain_active() ? "true" : "false", drain_left_s());
		return;
	}
	const char *st = strstr(health, "\"status\":\"");
	char state[32] = "?";
	if (st)
		sscanf(st + 10, "%31[^\"]", state);
	sb_printf(o, "state        %s%s\n", state, drain_active() ? "" : "");
	if (drain_active())
		sb_printf(o, "drain left   %us\n", drain_left_s());
	sb_printf(o, "hub domain   %s\nconfig       %s\nworkers      %d\nconnections  %llu\n", hubd,
		  file ? file : "(embedded)", net_nworkers(), (unsigned long long)met_conns_open());
	sb_printf(o, "domains      %d\ncomponents   %d\nroutes       %d\n", nd, nc, nr);
	sb_printf(o, "reloads      %llu applied, %llu refused\n", (unsigned long long)reload_count(true),
		  (unsigned long long)reload_count(false));
}

#define LINK_NFIELDS 11
struct linkrec {
	char *f[LINK_NFIELDS];
};

static int split_records(char *text, struct linkrec **out)
{
	int n = 0, cap = 0;
	struct linkrec *v = NULL;
	for (char *line = text, *nl; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = 0;
		struct linkrec r;
		int k = 0;
		for (char *f = line, *t; f && k < LINK_NFIELDS; f = t) {
			t = strchr(f, '\t');
			if (t)
				*t++ = 0;
			r.f[k++] = f;
		}
		if (k != LINK_NFIELDS)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = xrealloc(v, (size_t)cap * sizeof(*v));
		}
		v[n++] = r;
	}
	*out = v;
	return n;
}

static const char *const link_fields[LINK_NFIELDS] = {
	"id", "worker", "direction", "remote", "local", "auth", "tls", "queue_bytes", "queued_stanzas", "age_s", "peer"};

static void print_links(struct sbuf *o, bool json, const char *only_kind, int *count)
{
	int n = net_nworkers(), total = 0;
	if (json)
		sb_printf(o, "[");
	else
		sb_printf(o, "%-8s %-3s %-9s %-28s %-28s %-13s %-8s %10s %6s %7s %s\n", "ID", "W", "DIR", "REMOTE",
			  "LOCAL", "AUTH", "TLS", "QUEUE", "QSTZ", "AGE", "PEER");
	for (int i = 0; i < n; i++) {
		struct linkrec *v;
		int k = split_records(ctl.ans[i].text, &v);
		for (int j = 0; j < k; j++) {
			if (only_kind && strcmp(v[j].f[2], only_kind))
				continue;
			if (json) {
				sb_printf(o, "%s{", total ? "," : "");
				for (int f = 0; f < LINK_NFIELDS; f++) {
					sb_printf(o, "%s\"%s\":", f ? "," : "", link_fields[f]);
					if (f == 0 || f == 1 || (f >= 7 && f <= 9))
						sb_printf(o, "%s", v[j].f[f]);
					else if (f == 3 || f == 4) { /* lists of domains */
						sb_printf(o, "[");
						char *save = NULL, *d = strcmp(v[j].f[f], "-")
										? strtok_r(v[j].f[f], ",", &save)
										: NULL;
						for (int m = 0; d; d = strtok_r(NULL, ",", &save), m++) {
							sb_printf(o, "%s", m ? "," : "");
							sb_json_str(o, d);
						}
						sb_printf(o, "]");
					} else
						sb_json_str(o, v[j].f[f]);
				}
				sb_printf(o, "}");
			} else {
				sb_printf(o, "%-8s %-3s %-9s %-28s %-28s %-13s %-8s %10s %6s %6ss %s\n", v[j].f[0],
					  v[j].f[1], v[j].f[2], v[j].f[3], v[j].f[4], v[j].f[5], v[j].f[6], v[j].f[7],
					  v[j].f[8], v[j].f[9], v[j].f[10]);
			}
			total++;
		}
		free(v);
	}
	if (json)
		sb_printf(o, "]\n");
	*count = total;
}

static int cmd_links(struct sbuf *o, bool json)
{
	if (ask_all(o, Q_LINKS) < 0)
		return -1;
	int count;
	print_links(o, json, NULL, &count);
	if (!json)
		sb_printf(o, "%d connection%s\n", count, count == 1 ? "" : "s");
	return 0;
}

static int cmd_components(struct sbuf *o, bool json)
{
	if (ask_all(o, Q_LINKS) < 0)
		return -1;
	rcu_thread_online();
	const struct cfg *c = hub_cfg;
	int nc = c->ncomponents;
	char(*names)[CFG_NAME_MAX] = xcalloc((size_t)nc + 1, CFG_NAME_MAX);
	int *pool = xcalloc((size_t)nc + 1, sizeof(int));
	for (int i = 0; i < nc; i++) {
		snprintf(names[i], CFG_NAME_MAX, "%s", c->components[i].name);
		const struct rt_route *r = rt_lookup(names[i], strlen(names[i]));
		pool[i] = r && r->kind == RT_COMPONENT ? r->nconns : 0;
	}
	rcu_thread_offline();
	if (json) {
		sb_printf(o, "{\"components\":[");
		for (int i = 0; i < nc; i++) {
			sb_printf(o, "%s{\"name\":", i ? "," : "");
			sb_json_str(o, names[i]);
			sb_printf(o, ",\"connections\":%d}", pool[i]);
		}
		sb_printf(o, "],\"links\":");
		int count;
		print_links(o, true, "component", &count);
		/* print_links ends with "]\n": close the object */
		o->n--;
		sb_printf(o, "}\n");
	} else {
		sb_printf(o, "%-40s %s\n", "COMPONENT", "CONNECTIONS");
		for (int i = 0; i < nc; i++)
			sb_printf(o, "%-40s %d\n", names[i], pool[i]);
		sb_printf(o, "\n");
		int count;
		print_links(o, false, "component", &count);
	}
	free(names);
	free(pool);
	return 0;
}

/* Each [backend]: its domains, addresses and TLS, the links up and the
 * stanzas waiting for it (summed over the workers' metrics), then its
 * internal links. */
static int cmd_backends(struct sbuf *o, bool json)
{
	if (ask_all(o, Q_LINKS) < 0)
		return -1;
	rcu_thread_online();
	const struct cfg *c = hub_cfg;
	int nb = c->nbackends;
	struct bkrow {
		char name[64], connect[160];
		int ndomains;
		const char *tls;
		struct met_backend m;
	} *rows = xcalloc((size_t)nb + 1, sizeof(*rows));
	for (int i = 0; i < nb; i++) {
		const struct cfg_backend *b = &c->backends[i];
		snprintf(rows[i].name, sizeof(rows[i].name), "%s", b->name);
		for (int k = 0; k < b->nconnect; k++)
			snprintf(rows[i].connect + strlen(rows[i].connect), sizeof(rows[i].connect) - strlen(rows[i].connect),
				 "%s%s", k ? "," : "", b->connect[k].text);
		rows[i].ndomains = b->ndomains;
		rows[i].tls = cfg_tls_mode_name(b->tls);
		met_backend_totals(met_backend_slot(i), &rows[i].m);
	}
	rcu_thread_offline();
	int count;
	if (json) {
		sb_printf(o, "{\"backends\":[");
		for (int i = 0; i < nb; i++) {
			const struct met_backend *m = &rows[i].m;
			sb_printf(o, "%s{\"name\":", i ? "," : "");
			sb_json_str(o, rows[i].name);
			sb_printf(o, ",\"domains\":%d,\"connect\":", rows[i].ndomains);
			sb_json_str(o, rows[i].connect);
			sb_printf(o,
				  ",\"tls\":\"%s\",\"links_up\":%llu,\"queued\":%llu,\"stanzas_in\":%llu,"
				  "\"stanzas_out\":%llu,\"bounced\":%llu}",
				  rows[i].tls, (unsigned long long)m->links_up, (unsigned long long)m->queued,
				  (unsigned long long)m->stanzas_in, (unsigned long long)m->stanzas_out,
				  (unsigned long long)m->bounced);
		}
		sb_printf(o, "],\"links\":");
		print_links(o, true, "backend", &count);
		o->n--; /* print_links ends with "]\n": close the object */
		sb_printf(o, "}\n");
	} else {
		sb_printf(o, "%-20s %7s %-32s %-8s %5s %7s %10s %10s %8s\n", "BACKEND", "DOMAINS", "CONNECT", "TLS",
			  "LINKS", "QUEUED", "IN", "OUT", "BOUNCED");
		for (int i = 0; i < nb; i++) {
			const struct met_backend *m = &rows[i].m;
			sb_printf(o, "%-20s %7d %-32s %-8s %5llu %7llu %10llu %10llu %8llu\n", rows[i].name,
				  rows[i].ndomains, rows[i].connect, rows[i].tls, (unsigned long long)m->links_up,
				  (unsigned long long)m->queued, (unsigned long long)m->stanzas_in,
				  (unsigned long long)m->stanzas_out, (unsigned long long)m->bounced);
		}
		sb_printf(o, "\n");
		print_links(o, false, "backend", &count);
	}
	free(rows);
	return 0;
}

static int cmd_close(struct sbuf *o, bool json, const char *arg)
{
	char *end;
	unsigned long long id = arg ? strtoull(arg, &end, 10) : 0;
	if (!arg || !*arg || *end || !id) {
		sb_printf(o, "usage: close ID (the id column of `links`)\n");
		return -1;
	}
	ctl.close_id = id;
	if (ask_all(o, Q_CLOSE) < 0)
		return -1;
	int found = 0;
	for (int i = 0; i < net_nworkers(); i++)
		found |= ctl.ans[i].found;
	if (json)
		sb_printf(o, "{\"id\":%llu,\"closed\":%s}\n", id, found ? "true" : "false");
	else
		sb_printf(o, found ? "link %llu: closed\n" : "link %llu: no such link\n", id);
	return found ? 0 : -1;
}

static const char *kind_str(enum rt_kind k)
{
	switch (k) {
	case RT_HUB:
		return "the hub's own domain";
	case RT_HOSTED:
		return "a hosted domain";
	case RT_COMPONENT:
		return "a component";
	case RT_S2S_OUT:
		return "remote";
	}
	return "?";
}

/* The next "HOST\tPORT\tMODE" line of a worker's resolve answer, cut out of
 * *cur in place; lines that do not parse are skipped. */
static bool next_target(char **cur, char host[64], int *port, char mode[16])
{
	while (**cur) {
		char *line = *cur, *e = strchr(line, '\n');
		if (e)
			*e++ = 0;
		else
			e = line + strlen(line);
		*cur = e;
		if (sscanf(line, "%63[^\t]\t%d\t%15s", host, port, mode) == 3)
			return true;
	}
	return false;
}

static int cmd_resolve(struct sbuf *o, bool json, const char *arg)
{
	char d[CFG_NAME_MAX];
	if (!arg || cfg_domain_normalise(arg, strlen(arg), d, sizeof(d)) < 0) {
		sb_printf(o, "usage: resolve DOMAIN (a valid domain name)\n");
		return -1;
	}
	/* the hub's own table and static routes first, as a link would */
	rcu_thread_online();
	const struct rt_route *r = rt_lookup(d, strlen(d));
	int kind = r ? (int)r->kind : 0;
	int owner = r ? r->owner : -1;
	const struct cfg *c = hub_cfg;
	struct cfg_route route;
	bool has_route = false;
	for (int i = 0; i < c->nroutes; i++)
		if (!strcmp(c->routes[i].name, d)) {
			route = c->routes[i];
			has_route = true;
		}
	rcu_thread_offline();
	if (kind && kind != RT_S2S_OUT) {
		if (json) {
			sb_printf(o, "{\"domain\":");
			sb_json_str(o, d);
			sb_printf(o, ",\"local\":true,\"kind\":");
			sb_json_str(o, kind_str(kind));
			sb_printf(o, "}\n");
		} else {
			sb_printf(o, "%s: %s, served by this hub (no DNS)\n", d, kind_str(kind));
		}
		return 0;
	}
	if (has_route) {
		if (json) {
			sb_printf(o, "{\"domain\":");
			sb_json_str(o, d);
			sb_printf(o, ",\"local\":false,\"source\":\"static route\",\"tls\":");
			sb_json_str(o, cfg_tls_mode_name(route.tls));
			sb_printf(o, ",\"targets\":[");
			for (int i = 0; i < route.nconnect; i++) {
				sb_printf(o, "%s{\"address\":", i ? "," : "");
				sb_json_str(o, route.connect[i].text);
				sb_printf(o, ",\"mode\":\"%s\"}", route.direct_tls ? "direct-tls" : "starttls");
			}
			sb_printf(o, "]}\n");
		} else {
			sb_printf(o, "%s: static route ([route %s], overrides DNS), tls %s\n", d, d,
				  cfg_tls_mode_name(route.tls));
			for (int i = 0; i < route.nconnect; i++)
				sb_printf(o, "  %d. %s %s\n", i + 1, route.connect[i].text,
					  route.direct_tls ? "direct-tls" : "starttls");
		}
		return 0;
	}
	snprintf(ctl.domain, sizeof(ctl.domain), "%s", d);
	if (ask_workers(Q_RESOLVE, 15000) < net_nworkers() || !ctl.ans[0].text) {
		sb_printf(o, "%s: the lookup did not finish in time (or failed to start)\n", d);
		return -1;
	}
	char *text = ctl.ans[0].text, *nl = strchr(text, '\n');
	int status = atoi(text);
	char *rest = nl ? nl + 1 : text + strlen(text);
	if (json) {
		sb_printf(o, "{\"domain\":");
		sb_json_str(o, d);
		sb_printf(o, ",\"local\":false,\"source\":\"dns\",\"status\":");
		sb_json_str(o, status ? strerror(-status) : "ok");
		if (owner >= 0)
			sb_printf(o, ",\"link_worker\":%d", owner);
		sb_printf(o, ",\"targets\":[");
		int m = 0;
		char host[64], mode[16];
		int port;
		for (char *cur = rest; next_target(&cur, host, &port, mode);) {
			sb_printf(o, "%s{\"host\":", m++ ? "," : "");
			sb_json_str(o, host);
			sb_printf(o, ",\"port\":%d,\"mode\":\"%s\"}", port, mode);
		}
		sb_printf(o, "]}\n");
	} else {
		sb_printf(o, "%s: DNS (_xmpps-server/_xmpp-server SRV, else A/AAAA on 5269): %s\n", d,
			  status ? strerror(-status) : "ok");
		if (owner >= 0)
			sb_printf(o, "  an outbound link exists on worker %d\n", owner);
		int m = 0;
		char host[64], mode[16];
		int port;
		for (char *cur = rest; next_target(&cur, host, &port, mode);) {
			sb_printf(o, strchr(host, ':') ? "  %d. [%s]:%d %s\n" : "  %d. %s:%d %s\n", ++m, host, port,
				  mode);
		}
		if (!m)
			sb_printf(o, "  no targets: stanzas for it are bounced (remote-server-not-found)\n");
	}
	return status ? -1 : 0;
}

/* Lines produced by reload_run or the checks, as text or {"ok":..,"messages":[..]}. */
static void print_messages(struct sbuf *o, bool json, int rc, char *text, const char *what)
{
	if (!json) {
		sb_printf(o, "%s", text ? text : "");
		sb_printf(o, "%s: %s\n", what, rc == 0 ? "ok" : "refused");
		return;
	}
	sb_printf(o, "{\"ok\":%s,\"messages\":[", rc == 0 ? "true" : "false");
	int m = 0;
	for (char *line = text, *nl; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = 0;
		sb_printf(o, "%s", m++ ? "," : "");
		sb_json_str(o, line);
		if (!nl)
			break;
	}
	sb_printf(o, "]}\n");
}

static int cmd_reload(struct sbuf *o, bool json)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	if (!mem) {
		sb_printf(o, "out of memory\n");
		return -1;
	}
	int rc = reload_run("fedhubctl reload", mem);
	fclose(mem);
	print_messages(o, json, rc, text, "reload");
	free(text);
	return rc;
}

static int cmd_check(struct sbuf *o, bool json)
{
	const char *path = reload_conf_path();
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	if (!mem) {
		sb_printf(o, "out of memory\n");
		return -1;
	}
	struct cfg *c = xcalloc(1, sizeof(*c));
	int errs = path ? cfg_load(c, path, mem) : cfg_load_default(c, mem);
	errs += check_config(c, path, mem);
	cfg_free(c);
	free(c);
	if (errs)
		fprintf(mem, "configuration has %d error%s\n", errs, errs == 1 ? "" : "s");
	fclose(mem);
	print_messages(o, json, errs ? -1 : 0, text, path ? path : "(embedded configuration)");
	free(text);
	return errs ? -1 : 0;
}

static void usage_text(struct sbuf *o)
{
	sb_printf(o, "commands: status, links, components, close ID, resolve DOMAIN, reload, drain, config check"
		     " (add --json for JSON)\n");
}

static int handle(char *line, struct sbuf *o)
{
	char *argv[4] = {0};
	int argc = 0;
	bool json = false;
	for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save)) {
		if (!strcmp(t, "--json"))
			json = true;
		else if (argc < 4)
			argv[argc++] = t;
		else
			return usage_text(o), -1;
	}
	if (argc == 0)
		return usage_text(o), -1;
	const char *cmd = argv[0];
	if (!strcmp(cmd, "status") && argc == 1)
		return cmd_status(o, json), 0;
	if (!strcmp(cmd, "links") && argc == 1)
		return cmd_links(o, json);
	if (!strcmp(cmd, "components") && argc == 1)
		return cmd_components(o, json);
	if (!strcmp(cmd, "backends") && argc == 1)
		return cmd_backends(o, json);
	if (!strcmp(cmd, "close") && argc == 2)
		return cmd_close(o, json, argv[1]);
	if (!strcmp(cmd, "resolve") && argc == 2)
		return cmd_resolve(o, json, argv[1]);
	if (!strcmp(cmd, "reload") && argc == 1)
		return cmd_reload(o, json);
	if (!strcmp(cmd, "config") && argc == 2 && !strcmp(argv[1], "check"))
		return cmd_check(o, json);
	if (!strcmp(cmd, "drain") && argc == 1) {
		if (json)
			sb_printf(o, "{\"draining\":true}\n");
		else
			sb_printf(o, "draining: /health answers 503, listeners closed, queues flushing\n");
		drain_request("fedhubctl drain");
		return 0;
	}
	usage_text(o);
	return -1;
}

static void serve(int fd)
{
	struct timeval tv = {2, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char line[600];
	size_t n = 0;
	/* one line, bounded: anything longer is refused */
	while (n < sizeof(line) - 1) {
		ssize_t k = read(fd, line + n, sizeof(line) - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
		if (memchr(line, '\n', n))
			break;
	}
	line[n] = 0;
	struct sbuf body = {0}, out = {0};
	int rc;
	if (!memchr(line, '\n', n)) {
		sb_printf(&body, "a request is one line of at most %zu bytes\n", sizeof(line) - 2);
		rc = -1;
	} else {
		*(char *)memchr(line, '\n', n) = 0;
		rc = handle(line, &body);
	}
	sb_printf(&out, "%s\n%s", rc == 0 ? "OK" : "ERR", body.p ? body.p : "");
	for (size_t off = 0; off < out.n;) {
		ssize_t k = write(fd, out.p + off, out.n - off);
		if (k <= 0)
			break;
		off += (size_t)k;
	}
	free(body.p);
	free(out.p);
}

static void *ctl_main(void *arg)
{
	(void)arg;
	rcu_register_thread();
	rcu_thread_offline();
	while (!atomic_load(&ctl.stop)) {
		struct pollfd p = {.fd = ctl.fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		int c = accept4(ctl.fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		serve(c);
		close(c);
	}
	rcu_unregister_thread();
	return NULL;
}

int ctl_start(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	struct stat st;
	/* a socket left by a hub that died is replaced; any other file is not */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_error(0, "control socket: %s exists and is not a socket", path);
			close(fd);
			return -EEXIST;
		}
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EAGAIN) {
			log_error(0, "control socket: %s is in use by another process", path);
			close(fd);
			return -EADDRINUSE;
		}
		close(fd);
		unlink(path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return -errno;
	}
	mode_t old = umask(0117); /* created 0660 at once: no window where it is wider */
	int rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (rc < 0 || chmod(path, 0660) < 0 || listen(fd, 16) < 0) {
		rc = -errno;
		log_error(0, "control socket: cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	ctl.fd = fd;
	snprintf(ctl.path, sizeof(ctl.path), "%s", path);
	if (pthread_create(&ctl.th, NULL, ctl_main, NULL) != 0) {
		close(fd);
		unlink(path);
		ctl.fd = -1;
		return -EAGAIN;
	}
	ctl.running = true;
	log_info(0, "control socket: %s (fedhubctl)", path);
	return 0;
}

void ctl_stop(void)
{
	if (!ctl.running)
		return;
	atomic_store(&ctl.stop, true);
	pthread_join(ctl.th, NULL);
	close(ctl.fd);
	unlink(ctl.path);
	ctl.running = false;
	for (int i = 0; i < NET_MAX_WORKERS; i++) {
		free(ctl.ans[i].text);
		ctl.ans[i].text = NULL;
	}
}
