/*
 * net/dns.c — see dns.h. Everything here runs on the control thread, which
 * owns the c-ares channel; the only thing workers do is send a message.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <ares.h>

#include "net/dns.h"
#include "net/log.h"

static ares_channel chan;

struct cache_ent {
	struct cache_ent *next;
	char domain[256];
	uint64_t expires;
	int status;
	int ntargets;
	struct dns_target t[DNS_MAX_TARGETS];
};
static struct cache_ent *cache;

struct query {
	struct dns_req *req;
	int pending; /* address lookups outstanding */
	int nsrv;
	struct {
		char host[256];
		uint16_t port;
		bool tls;
		struct dns_target t[4];
		int nt;
	} srv[DNS_MAX_TARGETS];
	/* both SRV answers (_xmpp-server, _xmpps-server) are gathered first */
	int srv_pending;
	int srv_err;
	struct {
		char host[256];
		uint16_t port, prio, weight;
		bool tls;
	} rec[32];
	int nrec;
	uint32_t ttl;
	bool fallback;
};

static uint64_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

int dns_init(const char *server)
{
	int rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS)
		return -EIO;
	struct ares_options o;
	memset(&o, 0, sizeof(o));
	o.timeout = 2000;
	o.tries = 2;
	rc = ares_init_options(&chan, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
	if (rc != ARES_SUCCESS)
		return -EIO;
	if (server && *server) {
		rc = ares_set_servers_ports_csv(chan, server);
		if (rc != ARES_SUCCESS) {
			log_error(0, "dns: bad server %s: %s", server, ares_strerror(rc));
			return -EINVAL;
		}
	}
	return 0;
}

static void finish(struct dns_req *r)
{
	struct net_msg m = {.type = DNS_MSG_RESULT};
	memcpy(m.u.bytes, &r, sizeof(r));
	while (net_msg_send(NULL, r->worker, &m) < 0) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL); /* the worker's ring is full: control may wait */
	}
}

static struct cache_ent *cache_get(const char *d)
{
	uint64_t now = now_s();
	struct cache_ent **pp = &cache;
	while (*pp) {
		struct cache_ent *e = *pp;
		if (e->expires <= now) {
			*pp = e->next;
			free(e);
			continue;
		}
		if (strcmp(e->domain, d) == 0)
			return e;
		pp = &e->next;
	}
	return NULL;
}

static void cache_put(const struct dns_req *r, uint32_t ttl)
{
	struct cache_ent *e = calloc(1, sizeof(*e));
	if (!e)
		return;
	snprintf(e->domain, sizeof(e->domain), "%s", r->domain);
	if (ttl < 5)
		ttl = 5;
	if (ttl > 3600)
		ttl = 3600;
	e->expires = now_s() + ttl;
	e->status = r->status;
	e->ntargets = r->ntargets;
	memcpy(e->t, r->t, sizeof(e->t));
	e->next = cache;
	cache = e;
}

static void complete(struct query *q)
{
	struct dns_req *r = q->req;
	r->ntargets = 0;
	for (int i = 0; i < q->nsrv; i++)
		for (int j = 0; j < q->srv[i].nt && r->ntargets < DNS_MAX_TARGETS; j++)
			r->t[r->ntargets++] = q->srv[i].t[j];
	if (r->ntargets == 0 && r->status == 0)
		r->status = -ENOENT;
	else if (r->ntargets)
		r->status = 0;
	cache_put(r, r->status == 0 ? q->ttl : 30);
	if (r->status)
		log_info(0, "dns: %s: %s", r->domain,
			 r->status == -ENOENT ? "no such domain or service" : "lookup failed");
	finish(r);
	free(q);
}

static int ares_to_errno(int st)
{
	switch (st) {
	case ARES_ENOTFOUND:
	case ARES_ENODATA:
	case ARES_ENONAME:
		return -ENOENT;
	case ARES_ETIMEOUT:
		return -ETIMEDOUT;
	default:
		return -EIO;
	}
}

struct addr_ctx {
	struct query *q;
	int idx;
};

static void on_addr(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct addr_ctx *ac = arg;
	struct query *q = ac->q;
	int idx = ac->idx;
	free(ac);
	(void)timeouts;
	if (status == ARES_SUCCESS && ai) {
		for (struct ares_addrinfo_node *n = ai->nodes; n && q->srv[idx].nt < 4; n = n->ai_next) {
			struct dns_target *t = &q->srv[idx].t[q->srv[idx].nt++];
			memcpy(&t->ss, n->ai_addr, n->ai_addrlen);
			t->len = n->ai_addrlen;
			t->tls = q->srv[idx].tls;
			if (n->ai_family == AF_INET)
				((struct sockaddr_in *)&t->ss)->sin_port = htons(q->srv[idx].port);
			else
				((struct sockaddr_in6 *)&t->ss)->sin6_port = htons(q->srv[idx].port);
			if ((uint32_t)n->ai_ttl < q->ttl)
				q->ttl = (uint32_t)n->ai_ttl;
		}
	} else if (q->fallback) {
		q->req->status = ares_to_errno(status);
	}
	if (ai)
		ares_freeaddrinfo(ai);
	if (--q->pending == 0)
		complete(q);
}

static void lookup_addrs(struct query *q)
{
	struct ares_addrinfo_hints h;
	memset(&h, 0, sizeof(h));
	h.ai_family = AF_UNSPEC;
	h.ai_socktype = SOCK_STREAM;
	q->pending = q->nsrv;
	for (int i = 0; i < q->nsrv; i++) {
		struct addr_ctx *ac = malloc(sizeof(*ac));
		ac->q = q;
		ac->idx = i;
		ares_getaddrinfo(chan, q->srv[i].host, NULL, &h, on_addr, ac);
	}
}

/* RFC 2782: lowest priority first; within one priority, weighted random.
 * XEP-0368 §3: _xmpps-server and _xmpp-server records are merged, and at
 * equal priority direct TLS goes first. */
static void order_srv(struct query *q)
{
	int idx[32], n = q->nrec;
	for (int i = 0; i < n; i++)
		idx[i] = i;
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0; j--) {
			int a = idx[j - 1], b = idx[j];
			if (q->rec[a].prio < q->rec[b].prio ||
			    (q->rec[a].prio == q->rec[b].prio && (q->rec[a].tls || !q->rec[b].tls)))
				break;
			idx[j - 1] = b;
			idx[j] = a;
		}
	for (int i = 0; i < n && q->nsrv < DNS_MAX_TARGETS;) {
		int j = i;
		while (j < n && q->rec[idx[j]].prio == q->rec[idx[i]].prio && q->rec[idx[j]].tls == q->rec[idx[i]].tls)
			j++;
		while (i < j && q->nsrv < DNS_MAX_TARGETS) {
			uint32_t total = 0, pick, rnd = 0;
			for (int k = i; k < j; k++)
				total += q->rec[idx[k]].weight + 1u;
			if (getrandom(&rnd, sizeof(rnd), 0) < 0)
				rnd = (uint32_t)now_s();
			pick = rnd % total;
			int k = i;
			for (; k < j - 1; k++) {
				if (pick < q->rec[idx[k]].weight + 1u)
					break;
				pick -= q->rec[idx[k]].weight + 1u;
			}
			int t = idx[k];
			idx[k] = idx[i];
			idx[i] = t;
			memcpy(q->srv[q->nsrv].host, q->rec[idx[i]].host, sizeof(q->srv[0].host));
			q->srv[q->nsrv].port = q->rec[idx[i]].port;
			q->srv[q->nsrv].tls = q->rec[idx[i]].tls;
			q->nsrv++;
			i++;
		}
		i = j;
	}
}

static void srv_done(struct query *q)
{
	if (q->nrec) {
		/* RFC 6120 §3.2.1: a single "." target means the service is not offered */
		if (q->nrec == 1 && strcmp(q->rec[0].host, ".") == 0) {
			q->req->status = -ENOENT;
			complete(q);
			return;
		}
		order_srv(q);
		lookup_addrs(q);
		return;
	}
	if (q->srv_err == ARES_ETIMEOUT || q->srv_err == ARES_ECONNREFUSED || q->srv_err == ARES_ESERVFAIL) {
		q->req->status = ares_to_errno(q->srv_err);
		complete(q);
		return;
	}
	/* No SRV record: A/AAAA of the domain itself, port 5269 (RFC 6120 §3.2.2). */
	q->fallback = true;
	q->nsrv = 1;
	snprintf(q->srv[0].host, sizeof(q->srv[0].host), "%s", q->req->domain);
	q->srv[0].port = 5269;
	lookup_addrs(q);
}

static void on_srv_common(struct query *q, bool tls, int status, unsigned char *abuf, int alen)
{
	struct ares_srv_reply *srv = NULL;
	if (status == ARES_SUCCESS && ares_parse_srv_reply(abuf, alen, &srv) == ARES_SUCCESS) {
		for (struct ares_srv_reply *r = srv; r && q->nrec < 32; r = r->next) {
			if (tls && strcmp(r->host, ".") == 0)
				continue; /* no direct TLS offered: not an error */
			snprintf(q->rec[q->nrec].host, sizeof(q->rec[0].host), "%s", r->host);
			q->rec[q->nrec].port = r->port;
			q->rec[q->nrec].prio = r->priority;
			q->rec[q->nrec].weight = r->weight;
			q->rec[q->nrec].tls = tls;
			q->nrec++;
		}
		if (srv)
			ares_free_data(srv);
	} else if (!tls) {
		q->srv_err = status;
	}
	if (--q->srv_pending == 0)
		srv_done(q);
}

static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	on_srv_common(arg, false, status, abuf, alen);
}

static void on_srvs(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	on_srv_common(arg, true, status, abuf, alen);
}

void dns_on_ctrl_msg(struct net_msg *m)
{
	if (m->type != DNS_MSG_QUERY)
		return;
	struct dns_req *r;
	memcpy(&r, m->u.bytes, sizeof(r));
	struct cache_ent *e = cache_get(r->domain);
	if (e) {
		r->status = e->status;
		r->ntargets = e->ntargets;
		memcpy(r->t, e->t, sizeof(r->t));
		finish(r);
		return;
	}
	struct query *q = calloc(1, sizeof(*q));
	q->req = r;
	q->ttl = 3600;
	r->status = 0;
	char name[300];
	q->srv_pending = 2;
	snprintf(name, sizeof(name), "_xmpps-server._tcp.%s", r->domain);
	ares_query(chan, name, ns_c_in, ns_t_srv, on_srvs, q);
	snprintf(name, sizeof(name), "_xmpp-server._tcp.%s", r->domain);
	ares_query(chan, name, ns_c_in, ns_t_srv, on_srv, q);
}

int dns_submit(struct net_worker *w, struct dns_req *r)
{
	struct net_msg m = {.type = DNS_MSG_QUERY};
	r->worker = net_worker_id(w);
	memcpy(m.u.bytes, &r, sizeof(r));
	return net_msg_send(w, NET_CTRL, &m);
}

void dns_ctrl_loop(void)
{
	while (!net_stopping()) {
		struct pollfd pfd[1 + ARES_GETSOCK_MAXNUM];
		ares_socket_t socks[ARES_GETSOCK_MAXNUM];
		int n = 0;
		pfd[n++] = (struct pollfd){.fd = net_ctrl_eventfd(), .events = POLLIN};
		/* unsigned: c-ares' ARES_GETSOCK_WRITABLE(bits, 15) shifts 1 into
		 * the sign bit of an int (undefined behaviour, UBSan reports it) */
		unsigned bits = (unsigned)ares_getsock(chan, socks, ARES_GETSOCK_MAXNUM);
		for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			short ev = 0;
			if (bits & (1u << i))
				ev |= POLLIN;
			if (bits & (1u << (i + ARES_GETSOCK_MAXNUM)))
				ev |= POLLOUT;
			if (ev)
				pfd[n++] = (struct pollfd){.fd = socks[i], .events = ev};
		}
		struct timeval tv = {1, 0}, *tvp = ares_timeout(chan, &tv, &tv);
		int ms = (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000);
		if (ms > 200)
			ms = 200; /* notice net_stopping() promptly */
		poll(pfd, (nfds_t)n, ms);
		net_ctrl_drain();
		for (int i = 1; i < n; i++) {
			ares_socket_t rs =
				(pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) ? pfd[i].fd : ARES_SOCKET_BAD;
			ares_socket_t ws = (pfd[i].revents & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD;
			if (rs != ARES_SOCKET_BAD || ws != ARES_SOCKET_BAD)
				ares_process_fd(chan, rs, ws);
		}
		ares_process_fd(chan, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
	}
}
