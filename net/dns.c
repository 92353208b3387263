/*
 * net/dns.c — see dns.h. Everything here runs on the control thread, which
 * owns the c-ares channel; the only thing workers do is send a message.
 *
 * A request first looks in the cache (net/dns_cache.c). On a miss it joins
 * the lookup already under way for that domain, if any (one lookup, many
 * waiters: a pending table hashed by name), or makes a new one, which starts
 * at once when fewer than max_inflight lookups are out, else waits in a FIFO
 * queue. A lookup sends both SRV queries (_xmpps-server, _xmpp-server), then
 * the address lookups of the chosen targets (or of the domain itself on
 * 5269), and answers every waiter. A lookup that timed out is queued again
 * after a back-off (RETRY_BASE_MS, doubled each time, DNS_RETRIES times)
 * before its failure is final. Failures are cached briefly and logged once
 * per domain, with the reason.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <ares.h>

#include "net/alloc.h"
#include "net/dns.h"
#include "net/dns_cache.h"
#include "net/log.h"

#define DNS_RETRIES     2   /* further tries of a lookup that timed out */
#define RETRY_BASE_MS   250 /* back-off before the first retry; doubled for the next */
#define PENDING_MIN     1024 /* buckets of the pending table at first; it doubles */

static ares_channel chan;
static struct dns_limits lim = {DNS_DEFAULT_CACHE_MAX, DNS_DEFAULT_TTL_MIN, DNS_DEFAULT_TTL_MAX,
				DNS_DEFAULT_MAX_INFLIGHT};
static struct dns_cache *cache;
static struct dns_stats st; /* written by the control thread with relaxed stores */

#define ST_ADD(f, n) __atomic_store_n(&st.f, st.f + (uint64_t)(n), __ATOMIC_RELAXED)
#define ST_SET(f, v) __atomic_store_n(&st.f, (uint64_t)(v), __ATOMIC_RELAXED)

struct query {
	struct query *hnext; /* pending table */
	struct query *qnext; /* FIFO queue or retry list */
	uint64_t hash;
	uint64_t retry_at; /* ms */
	int tries;         /* retries made */
	struct dns_req *waiters;
	char domain[256];
	int status;
	int ares_status;    /* the last c-ares failure, for the log */
	struct qwork *work; /* while in flight (or being answered); NULL while it waits */
};

/* The answer being built: a lookup waiting for a slot does not hold it, so
 * 100,000 queued domains cost their names, not their answers. */
struct qwork {
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

/* lookups under way or queued, by name: a chained table that doubles when
 * it holds more lookups than buckets (up to DNS_MAX_QUEUED wait) */
static struct query **pending;
static uint32_t pcap;
static uint32_t npending;
static struct query *q_head, *q_tail; /* waiting for an in-flight slot */
static uint32_t nqueued;
static struct {
	struct query *head, *tail;
} retry_list[DNS_RETRIES]; /* by retry number: each is in due order */
static uint32_t nretry;
static uint32_t inflight;

static void publish_gauges(void)
{
	ST_SET(inflight, inflight);
	ST_SET(queued, nqueued + nretry);
	ST_SET(cache_entries, cache ? dns_cache_count(cache) : 0);
	ST_SET(evictions, cache ? dns_cache_evictions(cache) : 0);
}

void dns_stats_get(struct dns_stats *o)
{
	const uint64_t *src = (const uint64_t *)&st;
	uint64_t *dst = (uint64_t *)o;
	for (size_t i = 0; i < sizeof(st) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

void dns_set_limits(const struct dns_limits *l)
{
	if (l->cache_max)
		lim.cache_max = l->cache_max;
	if (l->ttl_min)
		lim.ttl_min = l->ttl_min;
	if (l->ttl_max)
		lim.ttl_max = l->ttl_max;
	if (l->max_inflight)
		lim.max_inflight = l->max_inflight;
	if (cache) {
		dns_cache_free(cache);
		cache = NULL;
	}
}

static struct dns_cache *the_cache(void)
{
	if (!cache) {
		struct dns_cache_opts o = {.max = lim.cache_max, .ttl_min = lim.ttl_min, .ttl_max = lim.ttl_max};
		cache = dns_cache_new(&o);
	}
	return cache;
}

int dns_init(const char *server)
{
	int rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS)
		return -EIO;
	struct ares_options o;
	memset(&o, 0, sizeof(o));
	/* one try per query: a lookup that times out is retried here, with a
	 * back-off, rather than resent at once by c-ares */
	o.timeout = 1500;
	o.tries = 1;
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

/* ---- pending lookups and the queue ---- */

static struct query *pending_find(const char *d, uint64_t h)
{
	if (!pcap)
		return NULL;
	for (struct query *q = pending[h & (pcap - 1)]; q; q = q->hnext)
		if (q->hash == h && strcasecmp(q->domain, d) == 0)
			return q;
	return NULL;
}

static void pending_grow(void)
{
	uint32_t ncap = pcap ? pcap * 2 : PENDING_MIN;
	struct query **nt = xcalloc(ncap, sizeof(*nt));
	for (uint32_t i = 0; i < pcap; i++)
		for (struct query *q = pending[i], *next; q; q = next) {
			next = q->hnext;
			q->hnext = nt[q->hash & (ncap - 1)];
			nt[q->hash & (ncap - 1)] = q;
		}
	free(pending);
	pending = nt;
	pcap = ncap;
}

static void pending_remove(struct query *q)
{
	struct query **pp = &pending[q->hash & (pcap - 1)];
	while (*pp && *pp != q)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = q->hnext;
		npending--;
	}
}

static void start(struct query *q);

/* Start queued lookups while there is room. c-ares may answer inside
 * ares_query (a name it refuses at once), and that answer pumps again:
 * the outer call carries on instead of recursing once per queued lookup. */
static void pump(void)
{
	static bool pumping;
	if (pumping)
		return;
	pumping = true;
	while (inflight < lim.max_inflight && q_head) {
		struct query *q = q_head;
		q_head = q->qnext;
		if (!q_head)
			q_tail = NULL;
		q->qnext = NULL;
		nqueued--;
		start(q);
	}
	pumping = false;
	publish_gauges();
}

static void enqueue(struct query *q)
{
	q->qnext = NULL;
	if (q_tail)
		q_tail->qnext = q;
	else
		q_head = q;
	q_tail = q;
	nqueued++;
}

static const char *failure_reason(const struct query *q)
{
	static char buf[128];
	switch (q->status) {
	case -ENOENT:
		if (q->work && q->work->nrec == 1 &&
		    (!q->work->rec[0].host[0] || strcmp(q->work->rec[0].host, ".") == 0))
			return "the domain offers no XMPP service (SRV target \".\")";
		if (q->work && q->work->nrec)
			return "no address for any SRV target";
		if (q->ares_status == ARES_ENOTFOUND || q->ares_status == ARES_ENONAME)
			return "no such domain (NXDOMAIN)";
		return "no _xmpp-server/_xmpps-server SRV record and no A/AAAA record";
	case -ETIMEDOUT:
		snprintf(buf, sizeof(buf), "timed out (%d tries)", q->tries + 1);
		return buf;
	case -EAGAIN:
		return "too many lookups waiting";
	default:
		snprintf(buf, sizeof(buf), "lookup failed: %s",
			 q->ares_status ? ares_strerror(q->ares_status) : "no usable answer");
		return buf;
	}
}

/* The answer is known: cache it, hand it to every waiter, free the lookup. */
static void answer(struct query *q, bool was_inflight)
{
	struct dns_target t[DNS_MAX_TARGETS];
	int nt = 0;
	memset(t, 0, sizeof(t));
	for (int i = 0; q->work && i < q->work->nsrv; i++)
		for (int j = 0; j < q->work->srv[i].nt && nt < DNS_MAX_TARGETS; j++)
			t[nt++] = q->work->srv[i].t[j];
	if (nt == 0 && q->status == 0)
		q->status = -ENOENT;
	else if (nt)
		q->status = 0;
	if (q->status == -ENOENT)
		ST_ADD(fail_nxdomain, 1);
	else if (q->status == -ETIMEDOUT)
		ST_ADD(fail_timeout, 1);
	else if (q->status)
		ST_ADD(fail_error, 1);
	if (q->status != -EAGAIN && dns_cache_put(the_cache(), q->domain, q->status, nt, t,
						  !q->work || q->work->ttl == UINT32_MAX ? 0 : q->work->ttl))
		log_info(0, "dns: %s: %s", q->domain, failure_reason(q));
	pending_remove(q);
	if (was_inflight)
		inflight--;
	for (struct dns_req *r = q->waiters, *next; r; r = next) {
		next = r->next;
		r->next = NULL;
		r->status = q->status;
		r->ntargets = nt;
		memcpy(r->t, t, sizeof(r->t));
		finish(r);
	}
	free(q->work);
	free(q);
	pump();
}

/* Timed out: try again after a back-off, or give up. */
static bool retry_later(struct query *q)
{
	if (q->tries >= DNS_RETRIES)
		return false;
	int k = q->tries++;
	q->retry_at = dns_mono_ms() + ((uint64_t)RETRY_BASE_MS << k);
	q->qnext = NULL;
	if (retry_list[k].tail)
		retry_list[k].tail->qnext = q;
	else
		retry_list[k].head = q;
	retry_list[k].tail = q;
	nretry++;
	free(q->work); /* a retry starts over */
	q->work = NULL;
	inflight--;
	ST_ADD(retries, 1);
	pump();
	return true;
}

/* Retries whose back-off is over go back to the queue; returns ms until the next one. */
static int run_retries(void)
{
	uint64_t now = dns_mono_ms();
	int next = 1000;
	for (int k = 0; k < DNS_RETRIES; k++) {
		struct query *q;
		while ((q = retry_list[k].head) && q->retry_at <= now) {
			retry_list[k].head = q->qnext;
			if (!retry_list[k].head)
				retry_list[k].tail = NULL;
			nretry--;
			enqueue(q);
		}
		if (q && (int)(q->retry_at - now) < next)
			next = (int)(q->retry_at - now);
	}
	pump();
	return next;
}

static void complete(struct query *q)
{
	if (q->status == -ETIMEDOUT && retry_later(q))
		return;
	answer(q, true);
}

static int ares_to_errno(int st_)
{
	switch (st_) {
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
		for (struct ares_addrinfo_node *n = ai->nodes; n && q->work->srv[idx].nt < 4; n = n->ai_next) {
			if (n->ai_addrlen > sizeof(union dns_addr))
				continue;
			struct dns_target *t = &q->work->srv[idx].t[q->work->srv[idx].nt++];
			memcpy(&t->ss, n->ai_addr, n->ai_addrlen);
			t->len = n->ai_addrlen;
			t->tls = q->work->srv[idx].tls;
			if (n->ai_family == AF_INET)
				((struct sockaddr_in *)&t->ss)->sin_port = htons(q->work->srv[idx].port);
			else
				((struct sockaddr_in6 *)&t->ss)->sin6_port = htons(q->work->srv[idx].port);
			if ((uint32_t)n->ai_ttl < q->work->ttl)
				q->work->ttl = (uint32_t)n->ai_ttl;
		}
	} else {
		if (status != ARES_SUCCESS)
			q->ares_status = status;
		if (q->work->fallback)
			q->status = ares_to_errno(status);
		else if (status == ARES_ETIMEOUT && q->status == 0)
			q->status = -ETIMEDOUT; /* stands unless another target answers */
	}
	if (ai)
		ares_freeaddrinfo(ai);
	if (--q->work->pending == 0)
		complete(q);
}

static void lookup_addrs(struct query *q)
{
	struct ares_addrinfo_hints h;
	memset(&h, 0, sizeof(h));
	h.ai_family = AF_UNSPEC;
	h.ai_socktype = SOCK_STREAM;
	int n = q->work->nsrv; /* q may be gone after the last call: c-ares can answer inside it */
	q->work->pending = n;
	ST_ADD(queries_addr, n);
	for (int i = 0; i < n; i++) {
		struct addr_ctx *ac = xmalloc(sizeof(*ac));
		ac->q = q;
		ac->idx = i;
		ares_getaddrinfo(chan, q->work->srv[i].host, NULL, &h, on_addr, ac);
	}
}

/* RFC 2782: lowest priority first; within one priority, weighted random.
 * XEP-0368 §3: _xmpps-server and _xmpp-server records are merged, and at
 * equal priority direct TLS goes first. */
static void order_srv(struct query *q)
{
	int idx[32], n = q->work->nrec;
	for (int i = 0; i < n; i++)
		idx[i] = i;
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0; j--) {
			int a = idx[j - 1], b = idx[j];
			if (q->work->rec[a].prio < q->work->rec[b].prio ||
			    (q->work->rec[a].prio == q->work->rec[b].prio &&
			     (q->work->rec[a].tls || !q->work->rec[b].tls)))
				break;
			idx[j - 1] = b;
			idx[j] = a;
		}
	for (int i = 0; i < n && q->work->nsrv < DNS_MAX_TARGETS;) {
		int j = i;
		while (j < n && q->work->rec[idx[j]].prio == q->work->rec[idx[i]].prio &&
		       q->work->rec[idx[j]].tls == q->work->rec[idx[i]].tls)
			j++;
		while (i < j && q->work->nsrv < DNS_MAX_TARGETS) {
			uint32_t total = 0, pick, rnd = 0;
			for (int k = i; k < j; k++)
				total += q->work->rec[idx[k]].weight + 1u;
			if (getrandom(&rnd, sizeof(rnd), 0) < 0)
				rnd = (uint32_t)dns_mono_ms();
			pick = rnd % total;
			int k = i;
			for (; k < j - 1; k++) {
				if (pick < q->work->rec[idx[k]].weight + 1u)
					break;
				pick -= q->work->rec[idx[k]].weight + 1u;
			}
			int t = idx[k];
			idx[k] = idx[i];
			idx[i] = t;
			memcpy(q->work->srv[q->work->nsrv].host, q->work->rec[idx[i]].host,
			       sizeof(q->work->srv[0].host));
			q->work->srv[q->work->nsrv].port = q->work->rec[idx[i]].port;
			q->work->srv[q->work->nsrv].tls = q->work->rec[idx[i]].tls;
			q->work->nsrv++;
			i++;
		}
		i = j;
	}
}

static void srv_done(struct query *q)
{
	if (q->work->nrec) {
		/* RFC 6120 §3.2.1: a single "." target means the service is not offered */
		if (q->work->nrec == 1 &&
		    (!q->work->rec[0].host[0] || strcmp(q->work->rec[0].host, ".") == 0)) { /* c-ares: "" */
			q->status = -ENOENT;
			complete(q);
			return;
		}
		order_srv(q);
		lookup_addrs(q);
		return;
	}
	if (q->work->srv_err == ARES_ETIMEOUT || q->work->srv_err == ARES_ECONNREFUSED ||
	    q->work->srv_err == ARES_ESERVFAIL) {
		q->ares_status = q->work->srv_err;
		q->status = ares_to_errno(q->work->srv_err);
		complete(q);
		return;
	}
	/* No SRV record: A/AAAA of the domain itself, port 5269 (RFC 6120 §3.2.2). */
	q->work->fallback = true;
	q->work->nsrv = 1;
	snprintf(q->work->srv[0].host, sizeof(q->work->srv[0].host), "%s", q->domain);
	q->work->srv[0].port = 5269;
	lookup_addrs(q);
}

static void on_srv_common(struct query *q, bool tls, int status, unsigned char *abuf, int alen)
{
	struct ares_srv_reply *srv = NULL;
	if (status == ARES_SUCCESS && ares_parse_srv_reply(abuf, alen, &srv) == ARES_SUCCESS) {
		for (struct ares_srv_reply *r = srv; r && q->work->nrec < 32; r = r->next) {
			if (tls && (!r->host[0] || strcmp(r->host, ".") == 0)) /* c-ares spells the root "" */
				continue;                                      /* no direct TLS offered: not an error */
			snprintf(q->work->rec[q->work->nrec].host, sizeof(q->work->rec[0].host), "%s", r->host);
			q->work->rec[q->work->nrec].port = r->port;
			q->work->rec[q->work->nrec].prio = r->priority;
			q->work->rec[q->work->nrec].weight = r->weight;
			q->work->rec[q->work->nrec].tls = tls;
			q->work->nrec++;
		}
		if (srv)
			ares_free_data(srv);
	} else if (!tls) {
		q->work->srv_err = status;
		q->ares_status = status;
	}
	if (--q->work->srv_pending == 0)
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

static void start(struct query *q)
{
	/* a retry starts over */
	q->status = 0;
	q->ares_status = 0;
	free(q->work);
	q->work = xcalloc(1, sizeof(*q->work));
	q->work->ttl = UINT32_MAX;
	inflight++;
	if (inflight > st.inflight_peak)
		ST_SET(inflight_peak, inflight);
	char name[300];
	q->work->srv_pending = 2;
	ST_ADD(queries_srv, 2);
	snprintf(name, sizeof(name), "_xmpps-server._tcp.%s", q->domain);
	ares_query(chan, name, ns_c_in, ns_t_srv, on_srvs, q);
	snprintf(name, sizeof(name), "_xmpp-server._tcp.%s", q->domain);
	ares_query(chan, name, ns_c_in, ns_t_srv, on_srv, q);
}

void dns_on_ctrl_msg(struct net_msg *m)
{
	if (m->type != DNS_MSG_QUERY)
		return;
	struct dns_req *r;
	memcpy(&r, m->u.bytes, sizeof(r));
	r->next = NULL;
	ST_ADD(lookups, 1);
	if (dns_cache_get(the_cache(), r->domain, &r->status, &r->ntargets, r->t)) {
		if (r->status)
			ST_ADD(hits_negative, 1);
		else
			ST_ADD(hits, 1);
		finish(r);
		return;
	}
	ST_ADD(misses, 1);
	uint64_t h = dns_name_hash(r->domain);
	struct query *q = pending_find(r->domain, h);
	if (q) { /* the same name is being resolved: wait for that answer */
		r->next = q->waiters;
		q->waiters = r;
		ST_ADD(merged, 1);
		return;
	}
	q = xcalloc(1, sizeof(*q));
	snprintf(q->domain, sizeof(q->domain), "%s", r->domain);
	q->hash = h;
	q->waiters = r;
	if (npending >= pcap)
		pending_grow();
	q->hnext = pending[h & (pcap - 1)];
	pending[h & (pcap - 1)] = q;
	npending++;
	if (nqueued >= DNS_MAX_QUEUED) {
		static uint64_t said_at;
		if (dns_mono_ms() - said_at >= 1000) { /* at most once a second */
			said_at = dns_mono_ms();
			log_warn(0, "dns: %u lookups waiting already: %s fails at once", nqueued, q->domain);
		}
		q->status = -EAGAIN;
		answer(q, false);
		return;
	}
	enqueue(q);
	pump();
}

int dns_submit(struct net_worker *w, struct dns_req *r)
{
	struct net_msg m = {.type = DNS_MSG_QUERY};
	r->worker = net_worker_id(w);
	memcpy(m.u.bytes, &r, sizeof(r));
	return net_msg_send(w, NET_CTRL, &m);
}

static const struct dns_ctrl_hook *ctrl_hook;

void dns_ctrl_set_hook(const struct dns_ctrl_hook *h)
{
	ctrl_hook = h;
}

#define HOOK_FDS 4

void dns_ctrl_loop(void)
{
	while (!net_stopping()) {
		struct pollfd pfd[1 + ARES_GETSOCK_MAXNUM + HOOK_FDS];
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
		int ms = run_retries();
		struct timeval tv = {1, 0}, *tvp = ares_timeout(chan, &tv, &tv);
		int ams = (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000);
		if (ams < ms)
			ms = ams;
		if (ms > 200)
			ms = 200; /* notice net_stopping() promptly */
		int hook_at = n, nhook = ctrl_hook ? ctrl_hook->prepare(pfd + n, HOOK_FDS, &ms) : 0;
		n += nhook;
		poll(pfd, (nfds_t)n, ms);
		net_ctrl_drain();
		if (ctrl_hook)
			ctrl_hook->process(pfd + hook_at, nhook);
		n = hook_at;
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
