/*
 * router/backend.c — internal links from the hub to its backends: the
 * unmodified XMPP servers ([backend NAME] in router.conf) that serve some
 * of the hosted domains.
 *
 * Inbound relay. A remote server authenticates (R, D) at the hub as for any
 * hosted domain D (TLS, SASL EXTERNAL or dialback, every limit of
 * s2s_in.c). When D is a backend B's, route.c hands the stanza here, and it
 * goes to B over an internal s2s link whose stream is from R to D: to the
 * backend the hub *is* R. The hub authenticates R to B with dialback
 * (XEP-0220): <db:result from=R to=D> with a key from its own secret
 * (XEP-0185, receiving D, originating R, the backend's stream id). B checks
 * it by connecting to "R", which its resolver or static route points at
 * the hub, and asking <db:verify from=D to=R/>; the hub, seeing that stream
 * come from B's allow_from, answers for the keys it issued (backend_in.c
 * and s2s_in.c). The backend never needs to reach the internet, and the
 * remote never learns where the backend is.
 *
 * The stanzas from R to B are relayed by one worker, chosen by hashing
 * (R, B) (backend_owner()), and each worker has one link (struct bk_link)
 * to B: it carries every (R, D) pair the worker relays to B, each pair
 * authenticated by its own db:result on the same stream (XEP-0220
 * piggybacking: the stream's header names one pair, the others vary
 * `from`, `to` or both, as the hub's own outbound links vary their local
 * domain). So every stanza from R to B goes through one queue and one
 * stream (order per (from, to) is kept), and a backend that hears from many
 * remote domains gets a few links, not one per remote domain: each stream
 * the hub writes costs a send per loop turn. A backend that answers a
 * db:result for another pair than the header's with a dialback error takes
 * no piggybacking: that pair moves, queue and all, to a link of its own
 * (bk_link.remote, bk_link.only).
 *
 * Loss. While the link is down or a pair not yet valid, stanzas wait in the
 * pair's queue (copies: a receive buffer is not held for seconds); the link
 * is tried again every retry_min over B's connect addresses in order
 * (failover). A stanza that waited stall_timeout is bounced to its sender
 * with remote-server-timeout; one the backend refused (dialback invalid) is
 * bounced with service-unavailable. Past link_queue_max waiting stanzas the
 * sources that feed the link are paused (flow.h) until it is down to half;
 * past 16 times that they are bounced with resource-constraint. Once the
 * link is up, stanzas go straight to its send queue (a slice of the
 * receive buffer, no copy), and flow control applies as for any
 * destination: a slow backend pauses its sources.
 *
 * TLS on the internal link follows the [backend]'s tls: off, optional (use
 * STARTTLS when offered) or required. The backend's certificate is not
 * checked: the hub knows the backend by its configured address, and has no
 * certificate for R to show it either.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/backend.h"
#include "router/s2s-t.h"
#include "router/flow.h"
#include "router/route.h"
#include "net/alloc.h"
#include "net/log.h"
#include "net/tls.h"

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

enum bk_state { BK_IDLE, BK_CONNECTING, BK_OPEN, BK_BACKOFF };

struct bk_pair {
	char *remote; /* R: the db:result's `from` */
	char *local;  /* D, the backend's domain: its `to` */
	uint32_t hash;
	uint8_t state; /* enum pair_state */
	struct pairq q; /* each stanza waits at most stall_timeout */
	uint64_t since; /* PENDING: db:result sent; INVALID: refused */
	bool solo;      /* the backend took no piggybacking: on a link of its own */
};

struct bk_link {
	char *backend; /* the [backend]'s name: found again after a reload */
	char *remote;  /* NULL, or the R of the one pair of a link of its own */
	char *only;    /* NULL, or the D of that pair */
	uint32_t hash;
	struct bk_link *hnext;
	struct sess *sess;
	uint8_t state;
	int next_t; /* the next connect address to try */
	struct bk_pair *lp;
	int nlp, clp;
	struct pix lpix;
	uint32_t queued;
	int slot;             /* its backend's metrics (met.h) */
	bool up;              /* counted in links_up: a pair is valid on the stream */
	struct pq_held held; /* sources paused while queued >= link_queue_max */
	uint64_t failed_at, last_activity, last_keepalive;
};

/* ---- the worker's links by backend (and pair, for one of its own) ---- */

static __thread struct bk_link **btab;
static __thread uint32_t btab_cap, btab_n;
static pthread_key_t btab_key;
static pthread_once_t btab_once = PTHREAD_ONCE_INIT;

static void link_free(struct hubw *h, struct bk_link *L);

/* Freed with its worker thread (every connection is gone by then). */
static void btab_free_all(void *unused)
{
	(void)unused;
	for (uint32_t i = 0; i < btab_cap; i++) {
		for (struct bk_link *L = btab[i], *next; L; L = next) {
			next = L->hnext;
			L->sess = NULL;
			link_free(NULL, L);
		}
	}
	free(btab);
	btab = NULL;
	btab_cap = btab_n = 0;
}

static void btab_key_make(void)
{
	pthread_key_create(&btab_key, btab_free_all);
}

static uint32_t link_hash(const char *remote, const char *backend)
{
	return pix_hash2(remote, strlen(remote), backend, strlen(backend));
}

static uint32_t link_key(const char *backend, const char *only_r, const char *only_l)
{
	uint32_t h = pix_hash1(backend, strlen(backend));
	return only_l ? h ^ pix_hash2(only_r, strlen(only_r), only_l, strlen(only_l)) : h;
}

static bool same_only(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static void btab_grow(void)
{
	if (!btab_cap) {
		pthread_once(&btab_once, btab_key_make);
		pthread_setspecific(btab_key, (void *)1);
	}
	uint32_t cap = btab_cap ? btab_cap * 2 : 16;
	struct bk_link **nb = xcalloc(cap, sizeof(*nb));
	for (uint32_t i = 0; i < btab_cap; i++) {
		for (struct bk_link *L = btab[i], *next; L; L = next) {
			next = L->hnext;
			L->hnext = nb[L->hash & (cap - 1)];
			nb[L->hash & (cap - 1)] = L;
		}
	}
	free(btab);
	btab = nb;
	btab_cap = cap;
}

/* The worker's link to backend, or with only_r and only_l the link of its
 * own of the pair (only_r, only_l). */
static struct bk_link *link_get(const char *backend, const char *only_r, const char *only_l, int slot, bool create)
{
	uint32_t hv = link_key(backend, only_r, only_l);
	if (btab_cap)
		for (struct bk_link *L = btab[hv & (btab_cap - 1)]; L; L = L->hnext)
			if (L->hash == hv && !strcmp(L->backend, backend) && same_only(L->remote, only_r) &&
			    same_only(L->only, only_l))
				return L;
	if (!create)
		return NULL;
	if (btab_n + 1 > btab_cap)
		btab_grow();
	struct bk_link *L = xcalloc(1, sizeof(*L));
	L->backend = xstrdup(backend);
	L->remote = only_r ? xstrdup(only_r) : NULL;
	L->only = only_l ? xstrdup(only_l) : NULL;
	L->slot = slot;
	L->hash = hv;
	L->last_activity = net_now_ms();
	L->hnext = btab[hv & (btab_cap - 1)];
	btab[hv & (btab_cap - 1)] = L;
	btab_n++;
	return L;
}

static void link_unlink(struct bk_link *L)
{
	for (struct bk_link **pp = &btab[L->hash & (btab_cap - 1)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == L) {
			*pp = L->hnext;
			btab_n--;
			return;
		}
	}
}

static const struct cfg_backend *backend_named(const char *name)
{
	const struct cfg *c = hub_cfg;
	for (int i = 0; i < c->nbackends; i++)
		if (!strcmp(c->backends[i].name, name))
			return &c->backends[i];
	return NULL;
}

int backend_owner(const char *remote, const struct cfg_backend *b)
{
	int n = net_nworkers();
	return n > 1 ? (int)(link_hash(remote, b->name) % (uint32_t)n) : 0;
}

/* ---- pairs ------------------------------------------------------------- */

static bool pair_eq(const void *ctx, uint32_t i, uint32_t h)
{
	const struct bk_link *L = ((const void *const *)ctx)[0];
	const char *remote = ((const void *const *)ctx)[1], *local = ((const void *const *)ctx)[2];
	return L->lp[i].hash == h && strcmp(L->lp[i].local, local) == 0 && strcmp(L->lp[i].remote, remote) == 0;
}

static uint32_t pair_hash_at(const void *ctx, uint32_t i)
{
	const struct bk_link *L = ((const void *const *)ctx)[0];
	return L->lp[i].hash;
}

static struct bk_pair *pair_get(struct bk_link *L, const char *remote, const char *local, bool create)
{
	uint32_t h = pix_hash2(remote, strlen(remote), local, strlen(local));
	const void *ctx[3] = {L, remote, local};
	int64_t i = pix_find(&L->lpix, (uint32_t)L->nlp, h, pair_eq, ctx);
	if (i >= 0)
		return &L->lp[i];
	if (!create)
		return NULL;
	if (L->nlp == L->clp) {
		L->clp = L->clp ? L->clp * 2 : 2;
		L->lp = xrealloc(L->lp, (size_t)L->clp * sizeof(*L->lp));
	}
	struct bk_pair *p = &L->lp[L->nlp];
	memset(p, 0, sizeof(*p));
	p->remote = xstrdup(remote);
	p->local = xstrdup(local);
	p->hash = h;
	pix_added(&L->lpix, (uint32_t)L->nlp, h, pair_hash_at, ctx);
	L->nlp++;
	return p;
}

/* ---- queues ------------------------------------------------------------ */

#define BK_ADD(h, L, field, n) MET_ADD((h)->m, bk[(L)->slot].field, n)

static void queued_add(struct hubw *h, struct bk_link *L, int64_t d)
{
	L->queued = (uint32_t)((int64_t)L->queued + d);
	BK_ADD(h, L, queued, d);
}

/* The stream went (or is going): the link no longer counts as up. */
static void link_set_down(struct hubw *h, struct bk_link *L)
{
	if (L->up)
		BK_ADD(h, L, links_up, -1);
	L->up = false;
}

static void release_held(struct hubw *h, struct bk_link *L, bool all)
{
	pairq_release(h, &L->held, L->queued, all);
}

/* Bounce the first k stanzas of p's queue with err. They leave the queue
 * before any is bounced: a bounce is routed at once and may come back to
 * this very link (a backend writing to itself through the hub), which may
 * add to the queue or grow L->lp; p is not used once a bounce went. */
static void pair_bounce(struct hubw *h, struct bk_link *L, struct bk_pair *p, uint32_t k, enum hub_sterr err)
{
	ptrdiff_t i = p - L->lp;
	while (k) {
		struct pq_item tmp[64];
		p = &L->lp[i];
		uint32_t m = pairq_take_first(&p->q, k < 64 ? k : 64, tmp);
		queued_add(h, L, -(int64_t)m);
		BK_ADD(h, L, bounced, m);
		k -= m;
		pairq_bounce_items(h, tmp, m, err);
	}
	release_held(h, L, false);
}

/* The pair is valid: what waited goes to the stream, in order. The queue is
 * taken off the pair first (see pair_bounce). */
static void pair_flush(struct hubw *h, struct bk_link *L, struct bk_pair *p)
{
	struct pairq t = pairq_take(&p->q);
	struct pq_item *q = t.v;
	uint32_t n = t.len;
	queued_add(h, L, -(int64_t)n);
	for (uint32_t k = 0; k < n; k++) {
		enum hub_sterr why;
		if (!L->sess || flow_send(h, L->sess->c, q[k].b, q[k].p, q[k].n, (struct net_ref){.worker = FLOW_NO_SRC},
					  &why) < 0) {
			route_bounce_raw(h, q[k].p, q[k].n, L->sess ? why : STERR_REMOTE_SERVER_TIMEOUT);
			net_buf_unref(h->w, q[k].b);
			BK_ADD(h, L, bounced, 1);
		} else {
			MET_INC(h->m, stanzas_routed);
			BK_ADD(h, L, stanzas_in, 1);
		}
	}
	free(q);
	release_held(h, L, false);
}

/* ---- the link's stream ---------------------------------------------------- */

static void link_try_next(struct hubw *h, struct bk_link *L);

static void link_free(struct hubw *h, struct bk_link *L)
{
	if (L->sess) {
		struct sess *s = L->sess;
		L->sess = NULL;
		s->bk = NULL;
		sess_sendf(s, "</stream:stream>");
		net_close(s->c, true);
	}
	if (h) {
		link_set_down(h, L);
		queued_add(h, L, -(int64_t)L->queued);
	}
	for (int i = 0; i < L->nlp; i++) {
		for (uint32_t k = 0; k < L->lp[i].q.len; k++)
			if (h)
				net_buf_unref(h->w, L->lp[i].q.v[k].b);
		free(L->lp[i].q.v);
		free(L->lp[i].remote);
		free(L->lp[i].local);
	}
	if (h)
		release_held(h, L, true);
	free(L->lp);
	pix_free(&L->lpix);
	free(L->held.v);
	free(L->remote);
	free(L->backend);
	free(L->only);
	free(L);
}

/* Every address failed (or the stream died before a pair was valid): try
 * again retry_min from now while stanzas wait; they are bounced only once
 * they waited stall_timeout (backend_tick). */
static void link_down(struct hubw *h, struct bk_link *L, const char *why)
{
	log_info(0, "backend %s%s%s: %s; retrying in %us", L->backend, L->remote ? ", link of its own for " : "",
		 L->remote ? L->remote : "", why, hub_cfg->retry_min);
	BK_ADD(h, L, link_failed, 1);
	for (int i = 0; i < L->nlp; i++)
		if (L->lp[i].state == PAIR_PENDING || L->lp[i].state == PAIR_VALID)
			L->lp[i].state = PAIR_NONE;
	L->state = BK_BACKOFF;
	L->failed_at = net_now_ms();
}

static void link_start(struct hubw *h, struct bk_link *L)
{
	L->next_t = 0;
	link_try_next(h, L);
}

static void link_try_next(struct hubw *h, struct bk_link *L)
{
	const struct cfg_backend *bk = backend_named(L->backend);
	while (bk && L->next_t < bk->nconnect) {
		const struct cfg_addr *a = &bk->connect[L->next_t++];
		struct sess *s = sess_new(SESS_BACKEND);
		s->tls_policy = (uint8_t)(hub_tls ? bk->tls : CFG_TLS_OFF);
		if (bk->tls == CFG_TLS_REQUIRED)
			s->tls_policy = CFG_TLS_REQUIRED; /* without certificates it fails, as it should */
		s->bk = L;
		/* the header names one pair (a link of its own: its pair);
		 * the others are piggybacked on the stream */
		const struct bk_pair *hp = NULL;
		for (int i = 0; i < L->nlp && (!hp || !hp->q.len); i++)
			if (!L->lp[i].solo && (!hp || L->lp[i].q.len))
				hp = &L->lp[i];
		if (!hp)
			hp = &L->lp[0];
		s->remote = xstrdup(hp->local); /* the backend: the header's `to` */
		s->local = xstrdup(hp->remote); /* we speak as R */
		s->tok.authenticated = true;
		struct net_conn *c = net_connect(h->w, (const struct sockaddr *)&a->ss, a->len, &backend_ops, s);
		if (!c) {
			sess_free(s);
			continue;
		}
		s->c = c;
		met_conn_open(h->m, &s->ml, MET_DIR_OUT);
		net_conn_set_deadline(c, net_now_ms() + (uint64_t)hub_cfg->connect_timeout * 1000);
		L->sess = s;
		L->state = BK_CONNECTING;
		return;
	}
	link_down(h, L, bk ? "no connect address could be reached" : "backend no longer configured");
}

static void send_db_result(struct bk_link *L, struct bk_pair *p)
{
	char key[65];
	/* XEP-0185: receiving D, originating R, the backend's stream id */
	dialback_key(p->local, p->remote, L->sess->stream_id, key);
	sess_sendf(L->sess, "<db:result from='%s' to='%s'>%s</db:result>", p->remote, p->local, key);
	p->state = PAIR_PENDING;
	p->since = net_now_ms();
}

static void link_ready(struct hubw *h, struct bk_link *L)
{
	(void)h;
	L->state = BK_OPEN;
	for (int i = 0; i < L->nlp; i++)
		if (L->lp[i].state == PAIR_NONE && !L->lp[i].solo)
			send_db_result(L, &L->lp[i]);
}

static void open_stream(struct sess *s)
{
	sess_sendf(s,
		   "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " STREAM_NS
		   " xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>",
		   s->local, s->remote);
}

static void bk_on_connect(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	sess_log_enter(s);
	if (err) {
		log_info(c->id, "backend link to %s: connect failed: %s", s->remote, strerror(-err));
		return; /* on_close tries the next address */
	}
	open_stream(s);
}

static void bk_on_tls(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (err) {
		MET_INC(h->m, tls_failures);
		log_warn(c->id, "backend link to %s: TLS failed: %s", s->remote,
			 c->tls ? tls_error(c->tls) : tls_strerror(err));
		return;
	}
	MET_INC(h->m, tls_handshakes);
	s->tls_on = true;
	xml_tok_reset(&s->tok);
	s->got_features = false;
	open_stream(s);
}

static void link_start(struct hubw *h, struct bk_link *L);

/* Pair p of link L moves to a link of its own, with its queue (the order
 * of its stanzas is kept: the new link starts with what waited). */
static void pair_to_solo(struct hubw *h, struct bk_link *L, struct bk_pair *p)
{
	struct bk_link *A = link_get(L->backend, p->remote, p->local, L->slot, true);
	struct bk_pair *ap = pair_get(A, p->remote, p->local, true);
	uint32_t n = p->q.len;
	pairq_move(&ap->q, 16, &p->q);
	queued_add(h, A, n);
	queued_add(h, L, -(int64_t)n);
	p->state = PAIR_NONE;
	p->solo = true;
	release_held(h, L, false);
	A->last_activity = net_now_ms();
	if (A->state == BK_IDLE && A->queued)
		link_start(h, A);
}

/* <db:result type=.../> from the backend: its answer for one pair. */
static void bk_db_result(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	struct bk_link *L = s->bk;
	char local[CFG_NAME_MAX], to[CFG_NAME_MAX];
	if (!L)
		return;
	if (db_result_addrs(s, st, local, to) < 0)
		return;
	struct bk_pair *p = pair_get(L, to, local, false);
	if (!p || p->state != PAIR_PENDING)
		return; /* an answer to no question changes nothing */
	if (span_eq(st->type, "valid")) {
		p->state = PAIR_VALID;
		if (!L->up) {
			L->up = true;
			BK_ADD(h, L, links_up, 1);
		}
		log_info(s->c->id, "backend %s: %s -> %s authenticated (dialback)", L->backend, p->remote, local);
		pair_flush(h, L, p);
		return;
	}
	if (span_eq(st->type, "error") && !L->only && (strcmp(local, s->remote) != 0 || strcmp(to, s->local) != 0)) {
		/* an error for a pair that is not the stream header's: the
		 * backend takes no piggybacking (XEP-0220 §2.4); the pair gets
		 * a link of its own, which carries its queue along */
		log_info(s->c->id, "backend %s: no piggybacking for %s -> %s; it gets a link of its own", L->backend,
			 to, local);
		pair_to_solo(h, L, p);
		return;
	}
	log_warn(s->c->id, "backend %s refused %s -> %s (dialback %.*s)", L->backend, to, local, (int)st->type.n,
		 st->type.p);
	p->state = PAIR_INVALID;
	p->since = net_now_ms();
	pair_bounce(h, L, p, p->q.len, STERR_SERVICE_UNAVAILABLE);
}

static enum drive bk_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	struct bk_link *L = s->bk;
	(void)b;
	if (ev == XML_EV_STREAM_OPEN) {
		const struct xml_stream_hdr *hd = &s->tok.hdr;
		int k = hd->id.n ? xml_attr_decode(hd->id, s->stream_id, sizeof(s->stream_id) - 1) : -1;
		if (k <= 0) {
			sess_stream_error(s, SERR_BAD_FORMAT, "missing or oversized stream id");
			return DRIVE_ALL;
		}
		s->stream_id[k] = 0;
		s->state = SESS_OPEN;
		s->peer_v1 = span_eq(hd->version, "1.0");
		if (!s->peer_v1) {
			if (!s->tls_on && s->tls_policy == CFG_TLS_REQUIRED) {
				sess_stream_error(s, SERR_UNSUPPORTED_VERSION, "TLS is required");
				return DRIVE_ALL;
			}
			if (L)
				link_ready(h, L); /* no features will come */
		}
		return DRIVE_ON;
	}
	const struct xml_stanza *st = &s->tok.st;
	if (st->nsid == XML_NS_STREAMS && span_eq(st->name, "features")) {
		struct feats f;
		if (s->got_features)
			return DRIVE_ON;
		s->got_features = true;
		if (s2s_features_parse(st->raw, &f) < 0) {
			sess_stream_error(s, SERR_BAD_FORMAT, "stream features could not be read");
			return DRIVE_ALL;
		}
		if (!s->tls_on && f.starttls && s->tls_policy != CFG_TLS_OFF && hub_tls) {
			sess_sendf(s, "<starttls xmlns='" NS_TLS "'/>");
			s->starttls_sent = true;
			return DRIVE_ON;
		}
		if (!s->tls_on && s->tls_policy == CFG_TLS_REQUIRED) {
			log_warn(s->c->id, "backend link to %s: no STARTTLS offered and tls is required", s->remote);
			sess_sendf(s, "</stream:stream>");
			net_close(s->c, true);
			return DRIVE_ALL;
		}
		if (L)
			link_ready(h, L);
	} else if (st->nsid == XML_NS_TLS && s->starttls_sent) {
		s->starttls_sent = false;
		struct tls_conn *t =
			span_eq(st->name, "proceed") ? tls_conn_new(hub_tls, false, s->remote, NULL) : NULL;
		if (!t) {
			log_warn(s->c->id, "backend link to %s: STARTTLS refused or failed", s->remote);
			net_close(s->c, false);
			return DRIVE_ALL;
		}
		net_start_tls(s->c, t, true);
		return DRIVE_STOP;
	} else if (st->nsid == XML_NS_DIALBACK && span_eq(st->name, "result")) {
		bk_db_result(h, s, st);
	} else if (st->nsid == XML_NS_SERVER && st_routable(st)) {
		/* the backend's own stanzas come on its streams to the hub */
		sess_stream_error(s, SERR_NOT_AUTHORIZED, "stanzas from the backend go on its own stream");
		return DRIVE_ALL;
	}
	return DRIVE_ON;
}

static size_t bk_on_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	return sess_drive(c->user, b, p, n, bk_event);
}

static bool any_valid(const struct bk_link *L)
{
	for (int i = 0; i < L->nlp; i++)
		if (L->lp[i].state == PAIR_VALID)
			return true;
	return false;
}

static void bk_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct bk_link *L = s->bk;
	sess_log_enter(s);
	if (!(c->flags & NET_F_CONNECTING))
		log_info(c->id, "backend link closed: %s", err ? strerror(-err) : "by us or the peer");
	if (L && L->sess == s) {
		L->sess = NULL;
		bool was_up = any_valid(L);
		link_set_down(h, L);
		for (int i = 0; i < L->nlp; i++)
			if (L->lp[i].state != PAIR_INVALID)
				L->lp[i].state = PAIR_NONE;
		if (!was_up && L->state == BK_CONNECTING) {
			link_try_next(h, L); /* never got through: the next address */
		} else if (!was_up) {
			link_down(h, L, "stream closed before authentication");
		} else {
			L->state = BK_IDLE;
			if (L->queued)
				link_start(h, L);
		}
	}
	flow_close(h, s); /* what waited for it is routed again: into the link's queue */
	sess_free(s);
}

/* Slices the stream did not send: the link starts again and takes them first. */
static void bk_on_unsent(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct bk_link *L = s->bk;
	if (L && L->sess == s) {
		L->sess = NULL;
		link_set_down(h, L);
		for (int i = 0; i < L->nlp; i++)
			if (L->lp[i].state != PAIR_INVALID)
				L->lp[i].state = PAIR_NONE;
		L->state = BK_IDLE;
		s->bk = NULL;
	}
	route_raw(h, b, p, n);
}

static void bk_on_drain(struct net_conn *c)
{
	flow_drain(hubw_of(c->w), c->user);
}

static void bk_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	struct bk_link *L = s->bk;
	if (L && L->sess == s && !any_valid(L)) {
		log_info(c->id, "backend %s: no stream authenticated in %us", L->backend, hub_cfg->connect_timeout);
		net_close(c, false); /* on_close tries the next address */
		return;
	}
	net_conn_set_deadline(c, 0);
}

const struct net_conn_ops backend_ops = {
	.on_data = bk_on_data,
	.on_connect = bk_on_connect,
	.on_tls = bk_on_tls,
	.on_unsent = bk_on_unsent,
	.on_close = bk_on_close,
	.on_timer = bk_on_timer,
	.on_drain = bk_on_drain,
};

/* ---- the stanza path ----------------------------------------------------- */

void backend_enqueue(struct hubw *h, const struct cfg_backend *bk, const char *remote, const char *local,
		     struct net_buf *b, const char *p, size_t n, struct net_ref src)
{
	if (!bk)
		bk = cfg_backend_of(hub_cfg, local);
	enum hub_sterr bounce = STERR_SERVICE_UNAVAILABLE;
	if (!bk)
		goto bounce; /* a reload took the domain away meanwhile */
	int slot = met_backend_slot((int)(bk - hub_cfg->backends));
	struct bk_link *L = link_get(bk->name, NULL, NULL, slot, true);
	L->last_activity = net_now_ms();
	struct bk_pair *pr = pair_get(L, remote, local, true);
	if (pr->solo) { /* the backend took no piggybacking for it */
		L = link_get(bk->name, remote, local, slot, true);
		L->last_activity = net_now_ms();
		pr = pair_get(L, remote, local, true);
	}
	if (L->state == BK_OPEN && pr->state == PAIR_VALID && !pr->q.len && L->sess) {
		enum hub_sterr why;
		int rc = flow_send(h, L->sess->c, b, p, n, src, &why);
		if (rc == 0) {
			MET_INC(h->m, stanzas_routed);
			BK_ADD(h, L, stanzas_in, 1);
			return;
		}
		if (rc != -EPIPE) {
			bounce = why;
			goto bounce;
		}
		/* the stream is closing: queue for the next one */
	}
	if (pr->state == PAIR_INVALID) {
		if (net_now_ms() - pr->since < (uint64_t)hub_cfg->retry_min * 1000)
			goto bounce; /* refused a moment ago */
		pr->state = PAIR_NONE;
	}
	/* the backend may be down for a while: keep a copy, not a receive buffer */
	if (!pairq_admit(h, &L->held, L->queued, src) || pairq_push(h->w, &pr->q, 16, b, p, n, net_now_ms()) < 0) {
		bounce = STERR_RESOURCE_CONSTRAINT;
		goto bounce;
	}
	queued_add(h, L, 1);
	if (L->state == BK_BACKOFF && net_now_ms() - L->failed_at >= (uint64_t)hub_cfg->retry_min * 1000)
		L->state = BK_IDLE;
	if (L->state == BK_IDLE)
		link_start(h, L);
	else if (L->state == BK_OPEN && pr->state == PAIR_NONE && L->sess)
		send_db_result(L, pr); /* piggybacked on the open stream */
	return;
bounce:
	if (bk)
		MET_INC(h->m, bk[met_backend_slot((int)(bk - hub_cfg->backends))].bounced);
	route_bounce_raw(h, p, n, bounce);
	net_buf_unref(h->w, b);
}

/* ---- timers ---------------------------------------------------------------- */

/* Returns true when L was freed. */
static bool link_tick(struct hubw *h, struct bk_link *L, uint64_t now)
{
	uint64_t stall = (uint64_t)hub_cfg->stall_timeout * 1000;
	uint64_t idle = (uint64_t)hub_cfg->idle_timeout * 1000;
	uint64_t ka = (uint64_t)hub_cfg->keepalive_interval * 1000;
	for (int i = 0; i < L->nlp; i++) {
		struct bk_pair *p = &L->lp[i];
		uint32_t old = 0;
		while (old < p->q.len && now - p->q.v[old].at >= stall)
			old++;
		if (old) {
			log_info(L->sess ? L->sess->c->id : 0, "backend %s: %u stanza%s for %s waited %us: bounced",
				 L->backend, old, old == 1 ? "" : "s", p->local, hub_cfg->stall_timeout);
			pair_bounce(h, L, p, old, STERR_REMOTE_SERVER_TIMEOUT);
			p = &L->lp[i]; /* a bounce may have grown L->lp */
		}
		if (p->state == PAIR_PENDING && now - p->since > (uint64_t)hub_cfg->connect_timeout * 1000 && L->sess) {
			/* no answer to our db:result: start the stream again */
			log_warn(L->sess->c->id, "backend %s: no dialback answer for %s -> %s in %us", L->backend,
				 p->remote, p->local, hub_cfg->connect_timeout);
			p->state = PAIR_NONE;
			net_close(L->sess->c, false);
		}
	}
	if (L->state == BK_BACKOFF && now - L->failed_at >= (uint64_t)hub_cfg->retry_min * 1000) {
		L->state = BK_IDLE;
		if (L->queued)
			link_start(h, L);
	}
	if (L->state == BK_OPEN && L->sess && !L->queued) {
		if (idle && now - L->last_activity >= idle) {
			link_unlink(L);
			link_free(h, L);
			return true;
		}
		if (ka && now - L->last_keepalive >= ka && now - L->last_activity >= ka) {
			L->last_keepalive = now;
			sess_send(L->sess, " ", 1);
		}
	}
	if ((L->state == BK_IDLE || L->state == BK_BACKOFF) && !L->queued && !L->sess &&
	    now - L->last_activity > (idle ? idle : stall)) {
		link_unlink(L);
		link_free(h, L);
		return true;
	}
	return false;
}

void backend_tick(struct hubw *h, uint64_t now)
{
	for (uint32_t i = 0; i < btab_cap; i++) {
		for (struct bk_link *L = btab[i], *next; L; L = next) {
			next = L->hnext;
			link_tick(h, L, now);
		}
	}
}

uint32_t backend_sess_queued(const struct sess *s)
{
	return s->bk ? s->bk->queued : 0;
}

/* Append d to the comma-separated list buf unless it is there or does not fit. */
static void list_put(char *buf, size_t cap, const char *d)
{
	size_t len = strlen(buf), dl = strlen(d);
	for (const char *q = buf; (q = strstr(q, d)) != NULL; q += dl)
		if ((q == buf || q[-1] == ',') && (q[dl] == ',' || !q[dl]))
			return;
	if (len + dl + 2 < cap)
		snprintf(buf + len, cap - len, "%s%s", len ? "," : "", d);
}

int backend_sess_domains(const struct sess *s, char *doms, char *remotes, size_t cap)
{
	const struct bk_link *L = s->bk;
	int n = 0;
	if (cap)
		doms[0] = remotes[0] = 0;
	for (int i = 0; L && i < L->nlp; i++) {
		if (L->lp[i].state != PAIR_VALID)
			continue;
		n++;
		list_put(doms, cap, L->lp[i].local);
		list_put(remotes, cap, L->lp[i].remote);
	}
	return n;
}

void backend_shutdown(struct hubw *h)
{
	for (uint32_t i = 0; i < btab_cap; i++) {
		for (struct bk_link *L = btab[i]; L; L = L->hnext) {
			for (int k = 0; k < L->nlp; k++)
				pair_bounce(h, L, &L->lp[k], L->lp[k].q.len, STERR_REMOTE_SERVER_TIMEOUT);
			if (L->sess) {
				sess_sendf(L->sess, "</stream:stream>");
				net_close(L->sess->c, true);
			}
		}
	}
}
