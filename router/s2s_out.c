/*
 * router/s2s_out.c — outbound server-to-server links (RFC 6120 s2s streams
 * we open) and their queues.
 *
 * One link (struct s2s_out) per remote domain, on the worker that owns that
 * domain in the routing table (rt_s2s_claim()), found in the worker's own
 * hash table: nothing on the send path is shared between threads. Every
 * local domain that sends to that remote is one pair (struct lpair) on the
 * link; a pair authenticates with SASL EXTERNAL (XEP-0178) or dialback
 * (XEP-0220, piggybacking several pairs on one stream). Its stanzas queue
 * until the pair is valid; the queue is bounded (link_queue_max), holds
 * copies rather than receive buffers (a link may take seconds to come up),
 * and is bounced with the RFC 6120 §8.3.3 stanza error if the link cannot
 * be made. Each queued stanza waits at most connect_timeout.
 *
 * No sticky failure: a failed attempt bounces what waited for it, and the
 * link is in back-off for retry_min. A stanza that comes during back-off
 * waits in the queue; the next attempt starts when the back-off ends, so
 * a remote that recovers is reached by the first stanza sent retry_min
 * after it came back. Nothing is attempted while nothing waits.
 *
 * What a link demands of the peer is the remote's policy (policy.h): a
 * refused remote gets no connection (its stanzas bounce with
 * policy-violation); `auth certificate` closes a link whose certificate does
 * not name the remote before anything is sent on it; TLS required refuses a
 * pre-1.0 stream header (which cannot offer STARTTLS) on a cleartext stream.
 * Stanzas the peer sends back over a bidirectional link (XEP-0288) are
 * taken only when its certificate names the remote: dialback authenticates
 * us to the peer, never the peer to us. Stream features are parsed as XML
 * (children and their namespaces), not searched as bytes, and a peer's
 * XEP-0478 stanza size limit is honoured by bouncing what would exceed it.
 * DNS answers pointing at loopback or private addresses are dropped unless
 * dns_allow_private says otherwise.
 *
 * A peer that takes SASL EXTERNAL but no dialback authenticates one local
 * domain per stream: every other local domain then gets a link of its own
 * (an `alt` hanging off its pair, outside the table).
 *
 * Targets come from a [route] or from DNS (SRV, XEP-0368 direct TLS);
 * dialback verification streams (dialback.c) share that resolution.
 *
 * This file holds the links: their table entries, pairs, queues,
 * connection attempts, close and tick. The stream negotiation on a
 * link's connection (features, STARTTLS, SASL, dialback answers) is in
 * router/s2s_out_stream.c; targets, resolution and the outbound TLS policy
 * in router/s2s_target.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/s2s-t.h"
#include "router/flow.h"
#include "router/policy.h"
#include "net/alloc.h"
#include "net/log.h"
#include "net/tls.h"

static void link_try_next(struct hubw *h, struct s2s_out *L);
static void out_start_pair(struct hubw *h, struct s2s_out *L, struct lpair *p);

/* ---- outbound links ------------------------------------------------ */

static struct s2s_out *link_find(struct hubw *h, const char *remote)
{
	return s2s_links_find(h, remote);
}

static struct s2s_out *link_new(struct hubw *h, const char *remote)
{
	struct s2s_out *L = xcalloc(1, sizeof(*L));
	L->remote = xstrdup(remote);
	L->last_activity = net_now_ms();
	s2s_links_add(h, L);
	return L;
}

/* Take L out of everything, drop what it holds, and free it, or leave the
 * memory to s2s_on_dns() when a lookup for it is still out. */
static void link_free(struct hubw *h, struct s2s_out *L)
{
	if (!L->unlinked) {
		L->unlinked = true;
		if (!L->parent) {
			s2s_links_del(h, L);
			rt_s2s_release(L->remote, (uint16_t)net_worker_id(h->w));
			s2s_clu_link_free(h, L);
		}
		if (L->sess) { /* e.g. an alt still connected while its parent goes */
			struct sess *s = L->sess;
			L->sess = NULL;
			s->link = NULL;
			sess_sendf(s, "</stream:stream>");
			net_close(s->c, true);
		}
		for (int i = 0; i < L->nlp; i++) {
			if (L->lp[i].alt)
				link_free(h, L->lp[i].alt);
			L->lp[i].alt = NULL;
			for (uint32_t k = 0; k < L->lp[i].q.len; k++)
				net_buf_unref(h->w, L->lp[i].q.v[k].b);
			L->lp[i].q.len = 0;
		}
		L->nalt = 0;
		L->queued = 0;
		s2s_out_release_held(h, L, true);
	}
	if (L->dns_pending) {
		L->dead = true;
		return;
	}
	for (int i = 0; i < L->nlp; i++) {
		free(L->lp[i].q.v);
		free(L->lp[i].local);
	}
	free(L->lp);
	pix_free(&L->lpix);
	free(L->t);
	free(L->held.v);
	free(L->remote);
	free(L);
}

static bool lpair_eq(const void *ctx, uint32_t i, uint32_t h)
{
	const struct s2s_out *L = ((const void *const *)ctx)[0];
	const char *local = ((const void *const *)ctx)[1];
	return L->lp[i].hash == h && strcmp(L->lp[i].local, local) == 0;
}

static uint32_t lpair_hash_at(const void *ctx, uint32_t i)
{
	const struct s2s_out *L = ((const void *const *)ctx)[0];
	return L->lp[i].hash;
}

/* The pair of local domain `local` on L, or NULL: a hash probe (pix.h),
 * since a link may carry thousands of local domains and every stanza to
 * the remote looks its pair up. */
struct lpair *s2s_out_pair_find(const struct s2s_out *L, const char *local)
{
	const void *ctx[2] = {L, local};
	int64_t i = pix_find(&L->lpix, (uint32_t)L->nlp, pix_hash1(local, strlen(local)), lpair_eq, ctx);
	return i < 0 ? NULL : &L->lp[i];
}

/* Find or add (control plane: aborts when out of memory). */
static struct lpair *link_pair(struct s2s_out *L, const char *local)
{
	uint32_t h = pix_hash1(local, strlen(local));
	const void *ctx[2] = {L, local};
	int64_t i = pix_find(&L->lpix, (uint32_t)L->nlp, h, lpair_eq, ctx);
	if (i >= 0)
		return &L->lp[i];
	if (L->nlp == L->clp) {
		L->clp = L->clp ? L->clp * 2 : 1;
		L->lp = xrealloc(L->lp, (size_t)L->clp * sizeof(*L->lp));
	}
	struct lpair *p = &L->lp[L->nlp];
	memset(p, 0, sizeof(*p));
	p->local = xstrdup(local);
	p->hash = h;
	L->npst[PAIR_NONE]++;
	pix_added(&L->lpix, (uint32_t)L->nlp, h, lpair_hash_at, ctx);
	L->nlp++;
	return p;
}

/* Sources paused for this link's queue are read again once it is below
 * half of link_queue_max (all of them when `all`: the link goes away). */
void s2s_out_release_held(struct hubw *h, struct s2s_out *L, bool all)
{
	pairq_release(h, &L->held, L->queued, all);
}

void s2s_out_pair_bounce(struct hubw *h, struct s2s_out *L, struct lpair *p, enum hub_sterr err)
{
	pairq_bounce_items(h, p->q.v, p->q.len, err);
	L->queued -= p->q.len;
	p->q.len = 0;
	s2s_out_release_held(h, L, false);
}

/* XEP-0478: more than the peer said it takes would cost the whole link. */
static bool too_big_for_peer(const struct s2s_out *L, size_t n)
{
	return L->peer_max && n > L->peer_max;
}

/* A stanza of n bytes is queued on the link's connection. */
static void out_sent(struct hubw *h, struct s2s_out *L, size_t n)
{
	const struct met_link *ml = &L->sess->ml;
	MET_INC(h->m, stanzas_dir[1][ml->dir]);
	MET_ADD(h->m, bytes_dir[1][ml->dir], n);
	if (ml->dom >= 0) {
		MET_INC(h->m, dom[ml->dom].stanzas[1]);
		MET_ADD(h->m, dom[ml->dom].bytes[1], n);
	}
}

void s2s_out_pair_flush(struct hubw *h, struct s2s_out *L, struct lpair *p)
{
	if (!s2s_clu_may_send(L))
		return; /* the lease is not ours now: the queue waits (s2s_clu.c) */
	for (uint32_t k = 0; k < p->q.len; k++) {
		if (too_big_for_peer(L, p->q.v[k].n)) {
			MET_INC(h->m, stanzas_over_peer_limit);
			route_bounce_raw(h, p->q.v[k].p, p->q.v[k].n, STERR_POLICY_VIOLATION);
			net_buf_unref(h->w, p->q.v[k].b);
			continue;
		}
		/* the queue's reference moves to the connection's queue, or
		 * waits in its flow queue when that is full */
		enum hub_sterr why;
		if (flow_send(h, L->sess->c, p->q.v[k].b, p->q.v[k].p, p->q.v[k].n, (struct net_ref){.worker = FLOW_NO_SRC},
			      &why) < 0) {
			route_bounce_raw(h, p->q.v[k].p, p->q.v[k].n, why);
			net_buf_unref(h->w, p->q.v[k].b);
		} else {
			MET_INC(h->m, stanzas_routed);
			out_sent(h, L, p->q.v[k].n);
		}
	}
	L->queued -= p->q.len;
	p->q.len = 0;
	/* a valid pair sends straight to the stream: its queue is only for
	 * the next time the link comes up, so do not keep it per idle link */
	free(pairq_take(&p->q).v);
	s2s_out_release_held(h, L, false);
}

static void send_db_result(struct hubw *h, struct s2s_out *L, struct lpair *p)
{
	char key[65];
	dialback_key(L->remote, p->local, L->sess->stream_id, key);
	sess_sendf(L->sess, "<db:result from='%s' to='%s'>%s</db:result>", p->local, L->remote, key);
	lp_set(L, p, PAIR_PENDING);
	p->since = net_now_ms();
}

/* The attempt failed: bounce what waited for it; the next attempt comes
 * retry_min from now, if a stanza waits by then. */
static void link_fail(struct hubw *h, struct s2s_out *L, enum hub_sterr err, const char *why)
{
	log_info(0, "s2s out %s: failed: %s", L->remote, why);
	MET_INC(h->m, s2s_out_failed);
	met_dom_error(MET_DOM_REMOTE, L->remote, "remote-connection-failed");
	for (int i = 0; i < L->nlp; i++) {
		s2s_out_pair_bounce(h, L, &L->lp[i], err);
		lp_set(L, &L->lp[i], PAIR_NONE);
	}
	L->state = L_BACKOFF;
	L->failed_at = net_now_ms();
}

/* L's targets: an array sized to them (a link mostly has one or two, a
 * lookup may give DNS_MAX_TARGETS). */
static void link_set_targets(struct s2s_out *L, const struct dns_target *t, int nt)
{
	if (nt != L->nt || !L->t)
		L->t = xrealloc(L->t, (size_t)(nt ? nt : 1) * sizeof(*L->t));
	memcpy(L->t, t, (size_t)nt * sizeof(*t));
	L->nt = nt;
	L->next_t = 0;
}

static void link_start(struct hubw *h, struct s2s_out *L)
{
	if (!s2s_clu_may_send(L))
		return; /* no DNS, no connection before the lease is ours */
	struct dns_target t[DNS_MAX_TARGETS] = {0};
	int nt = 0;
	L->next_t = 0;
	if (s2s_route_targets(L->remote, t, &nt)) {
		link_set_targets(L, t, nt);
		link_try_next(h, L);
		return;
	}
	L->state = L_RESOLVING;
	L->dns_pending = true;
	s2s_resolve(h, L->remote, L, NULL);
}

static void link_try_next(struct hubw *h, struct s2s_out *L)
{
	while (L->next_t < L->nt) {
		struct dns_target *t = &L->t[L->next_t++];
		struct sess *s = sess_new(SESS_S2S_OUT);
		s->tls_policy = (uint8_t)s2s_out_tls_policy(L->remote);
		const struct cfg_route *sr = cfg_route_find(hub_cfg, L->remote);
		s->direct_tls = (sr && sr->direct_tls) || t->tls;
		s->link = L;
		s->remote = xstrdup(L->remote);
		s->local = xstrdup(L->nlp ? L->lp[0].local : hub_cfg->hub_domain);
		s->tok.authenticated = true; /* we chose to talk to it */
		struct net_conn *c = net_connect(h->w, (struct sockaddr *)&t->ss, t->len, &s2s_out_ops, s);
		if (!c) {
			sess_free(s);
			continue;
		}
		s->c = c;
		met_conn_open(hubw_of(c->w)->m, &s->ml, MET_DIR_OUT);
		net_conn_set_deadline(c, net_now_ms() + hub_cfg->connect_timeout * 1000);
		L->sess = s;
		L->state = L_CONNECTING;
		L->peer_dialback = true; /* until its features say otherwise */
		L->peer_cert_ok = false;
		L->peer_max = 0;
		return;
	}
	link_fail(h, L, STERR_REMOTE_SERVER_NOT_FOUND, L->nt ? "no address could be reached" : "no address");
}

/* A stanza for `remote` from our domain `local`, read from src (flow.c
 * pauses it when the link does not keep up). Consumes the reference on b. */
void s2s_link_enqueue(struct hubw *h, const char *remote, const char *local, struct net_buf *b, const char *p, size_t n,
		      struct net_ref src)
{
	struct s2s_out *L = link_find(h, remote);
	enum hub_sterr bounce;
	if (!L && !policy_for(remote).allowed) {
		/* remote_deny / remote_allow: no connection at all */
		MET_INC(h->m, s2s_policy_refused);
		bounce = STERR_POLICY_VIOLATION;
		goto bounce;
	}
	if (!L) {
		/* make sure the table names us as the owner (it may have been
		 * released while the message was on its way) */
		int owner = rt_s2s_claim(remote, strlen(remote), (uint16_t)net_worker_id(h->w));
		if (owner >= 0 && owner != net_worker_id(h->w)) {
			bounce = STERR_RESOURCE_CONSTRAINT;
			goto bounce;
		}
		L = link_new(h, remote);
		s2s_clu_link_new(h, L);
	}
	L->last_activity = net_now_ms();
	if (L->cl == CL_FORWARD && s2s_clu_forward(h, L, b, p, n, src))
		return;
	struct lpair *pr = link_pair(L, local);
	if (pr->alt) {
		L = pr->alt;
		pr = &L->lp[0];
		L->last_activity = net_now_ms();
	}
	if (L->state == L_OPEN && L->sess && too_big_for_peer(L, n)) {
		MET_INC(h->m, stanzas_over_peer_limit);
		bounce = STERR_POLICY_VIOLATION;
		goto bounce;
	}
	if (L->state == L_OPEN && pr->state == PAIR_VALID && !pr->q.len && L->sess && s2s_clu_may_send(L)) {
		enum hub_sterr why;
		int rc = flow_send(h, L->sess->c, b, p, n, src, &why);
		if (rc == 0) {
			MET_INC(h->m, stanzas_routed);
			out_sent(h, L, n);
			return;
		}
		if (rc != -EPIPE) {
			bounce = why;
			goto bounce;
		}
		/* the stream is closing: queue for the next one */
	}
	if (L->state == L_BACKOFF && net_now_ms() - L->failed_at >= (uint64_t)hub_cfg->retry_min * 1000)
		L->state = L_IDLE; /* back-off over: this stanza makes the next attempt */
	if (pr->state == PAIR_INVALID) {
		if (net_now_ms() - pr->since < (uint64_t)hub_cfg->retry_min * 1000) {
			bounce = STERR_REMOTE_SERVER_NOT_FOUND;
			goto bounce;
		}
		lp_set(L, pr, PAIR_NONE); /* try again */
	}
	/* a link may take seconds to come up: do not hold a receive buffer
	 * (the worker's, or another's) for that long, keep a copy; most pairs
	 * queue a stanza or two while their link comes up */
	if (!pairq_admit(h, &L->held, L->queued, src) || pairq_push(h->w, &pr->q, 2, b, p, n, net_now_ms()) < 0) {
		bounce = STERR_RESOURCE_CONSTRAINT;
		goto bounce;
	}
	L->queued++;
	if (L->state == L_IDLE)
		link_start(h, L);
	else if (L->state == L_OPEN && pr->state == PAIR_NONE && L->sess && L->sess->got_features &&
		 s2s_clu_may_send(L))
		out_start_pair(h, L, pr); /* the others are on their way already */
	return;
bounce:
	route_bounce_raw(h, p, n, bounce);
	net_buf_unref(h->w, b);
}

static void out_on_connect(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	sess_log_enter(s);
	if (err) {
		log_info(c->id, "s2s out %s: connect failed: %s", s->remote, strerror(-err));
		return; /* on_close follows and tries the next address */
	}
	(void)h;
	log_debug(c->id, "s2s out %s: connected%s", s->remote, s->direct_tls ? " (direct TLS)" : "");
	if (s->direct_tls && hub_tls) {
		struct tls_conn *t = tls_conn_new(hub_tls, false, s->remote, s->local);
		if (!t) {
			net_close(c, false);
			return;
		}
		net_start_tls(c, t, true); /* the stream opens once the handshake is done */
		return;
	}
	s2s_out_open_stream(s);
}

/* The outbound handshake finished: check the certificate, open the stream. */
static void out_on_tls(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (err) {
		MET_INC(h->m, tls_failures);
		log_warn(c->id, "s2s out %s: TLS failed: %s", s->remote,
			 c->tls ? tls_error(c->tls) : tls_strerror(err));
		return; /* the connection closes; on_close tries the next address or fails */
	}
	MET_INC(h->m, tls_handshakes);
	if (tls_resumed(c->tls))
		MET_INC(h->m, tls_resumptions);
	s->tls_on = true;
	int v = tls_peer_verify_domain(c->tls, s->remote);
	log_info(c->id, "s2s out %s: %s %s%s, certificate %s", s->remote, tls_version(c->tls), tls_cipher(c->tls),
		 tls_resumed(c->tls) ? " (resumed)" : "", v == 0 ? "valid" : tls_strerror(v));
	if (s->link)
		s->link->peer_cert_ok = v == 0;
	xml_tok_reset(&s->tok);
	s->got_features = false;
	s2s_out_open_stream(s);
}

static void link_start(struct hubw *h, struct s2s_out *L);

/* A link of its own for pair p of L, which carries its queue along. */
static void pair_to_alt(struct hubw *h, struct s2s_out *L, struct lpair *p)
{
	struct s2s_out *A = xcalloc(1, sizeof(*A));
	if (!A)
		return;
	A->remote = xstrdup(L->remote);
	A->parent = L;
	A->last_activity = net_now_ms();
	A->lp = xcalloc(1, sizeof(*A->lp));
	A->nlp = A->clp = 1;
	A->lp[0] = *p; /* the queue moves */
	A->lp[0].local = xstrdup(p->local);
	A->lp[0].alt = NULL;
	A->lp[0].state = PAIR_NONE;
	A->npst[PAIR_NONE] = 1;
	A->queued = p->q.len;
	L->queued -= p->q.len;
	s2s_out_release_held(h, L, false);
	p->q = (struct pairq){0};
	p->alt = A;
	L->nalt++;
	log_info(L->sess ? L->sess->c->id : 0, "s2s out %s: no dialback offered; %s gets a link of its own", L->remote,
		 p->local);
	link_start(h, A);
}

static void out_start_pair(struct hubw *h, struct s2s_out *L, struct lpair *p)
{
	if (p->state != PAIR_NONE || p->alt)
		return;
	if (L->peer_dialback) {
		send_db_result(h, L, p);
	} else if (!L->parent) {
		pair_to_alt(h, L, p);
	} else {
		/* a link of its own already, and neither SASL nor dialback */
		log_warn(L->sess ? L->sess->c->id : 0, "s2s out %s -> %s: peer offers no way to authenticate", p->local,
			 L->remote);
		lp_set(L, p, PAIR_INVALID);
		p->since = net_now_ms();
		s2s_out_pair_bounce(h, L, p, STERR_REMOTE_SERVER_NOT_FOUND);
	}
}

void s2s_out_start_dialback(struct hubw *h, struct s2s_out *L)
{
	for (int i = 0; i < L->nlp; i++)
		out_start_pair(h, L, &L->lp[i]);
}

void s2s_out_give_up(struct hubw *h, struct sess *s, const char *why)
{
	struct s2s_out *L = s->link;
	if (L) {
		L->sess = NULL;
		link_fail(h, L, STERR_REMOTE_SERVER_NOT_FOUND, why);
	}
	s->link = NULL;
	sess_sendf(s, "</stream:stream>");
	net_close(s->c, true);
}

static size_t out_on_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	return sess_drive(c->user, b, p, n, s2s_out_event);
}

static void out_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct s2s_out *L = s->link;
	sess_log_enter(s);
	if (!(c->flags & NET_F_CONNECTING))
		log_info(c->id, "s2s out closed: %s", err ? strerror(-err) : "by us or the peer");
	if (L && L->sess == s) {
		L->sess = NULL;
		bool any_valid = L->npst[PAIR_VALID] > 0;
		if (!any_valid && L->state != L_OPEN) {
			/* never got through: next address, or fail */
			L->state = L_CONNECTING;
			link_try_next(h, L);
		} else if (!any_valid && L->queued) {
			L->state = L_IDLE;
			link_fail(h, L, STERR_REMOTE_SERVER_NOT_FOUND, "stream closed before authentication");
		} else {
			/* an established link went away: start again if work is queued */
			for (int i = 0; i < L->nlp; i++)
				lp_set(L, &L->lp[i], PAIR_NONE);
			L->state = L_IDLE;
			if (L->queued)
				link_start(h, L);
		}
	}
	log_debug(c->id, "s2s out %s closed (%d)", s->remote, err);
	flow_close(h, s); /* what waited for it is queued for the next stream */
	sess_free(s);
}

/* Stanzas queued on a link that died before sending them: detach the link
 * so it starts again, and queue them there anew (route.c parses them). */
static void out_on_unsent(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct s2s_out *L = s->link;
	if (L && L->sess == s) {
		L->sess = NULL;
		for (int i = 0; i < L->nlp; i++)
			if (L->lp[i].state != PAIR_INVALID)
				lp_set(L, &L->lp[i], PAIR_NONE);
		L->state = L_IDLE;
		s->link = NULL;
	}
	route_raw(h, b, p, n);
}

static void out_on_drain(struct net_conn *c)
{
	flow_drain(hubw_of(c->w), c->user);
}

static void out_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct s2s_out *L = s->link;
	if (L && L->sess == s) {
		bool any_valid = L->npst[PAIR_VALID] > 0;
		if (!any_valid) {
			L->sess = NULL;
			s->link = NULL;
			link_fail(h, L, STERR_REMOTE_SERVER_TIMEOUT, "timed out connecting or authenticating");
			net_close(c, false);
			return;
		}
	}
}

const struct net_conn_ops s2s_out_ops = {
	.on_data = out_on_data,
	.on_connect = out_on_connect,
	.on_tls = out_on_tls,
	.on_unsent = out_on_unsent,
	.on_close = out_on_close,
	.on_timer = out_on_timer,
	.on_drain = out_on_drain,
};

bool s2s_out_pair_valid(struct sess *s, const char *local)
{
	struct s2s_out *L = s->link;
	if (!L)
		return false;
	const struct lpair *p = s2s_out_pair_find(L, local);
	return p && p->state == PAIR_VALID;
}

void s2s_on_dns(struct hubw *h, struct dns_req *r)
{
	struct dns_wait *dw = r->cookie;
	if (r->status)
		MET_INC(h->m, dns_failures);
	if (dw->link) {
		struct s2s_out *L = dw->link;
		L->dns_pending = false;
		if (L->dead) {
			link_free(h, L);
		} else if (r->status) {
			link_fail(h, L, STERR_REMOTE_SERVER_NOT_FOUND, "DNS lookup failed");
		} else {
			int nt = r->ntargets;
			s2s_drop_private_targets(r->t, &nt, L->remote);
			link_set_targets(L, r->t, nt);
			link_try_next(h, L);
		}
	} else if (dw->vs) {
		db_verify_on_dns(h, dw->vs, r);
	}
	free(dw);
}

/* Once a second for each link: back-off ended, dialback answers that never
 * came, whitespace keepalives, idle links closed. Returns true if L was freed. */
static bool link_tick(struct hubw *h, struct s2s_out *L, uint64_t now)
{
	if (!L->parent)
		s2s_clu_tick(h, L);
	uint64_t idle = (uint64_t)hub_cfg->idle_timeout * 1000;
	uint64_t ka = (uint64_t)hub_cfg->keepalive_interval * 1000;
	uint64_t wait_max = (uint64_t)hub_cfg->connect_timeout * 1000;
	/* nothing queued, no dialback answer awaited, no alt: nothing to look
	 * at in the pairs (an idle link costs the same with 1 or 1,000) */
	bool pairs = L->queued || L->npst[PAIR_PENDING] || L->nalt;
	for (int i = 0; pairs && i < L->nlp; i++) {
		struct lpair *p = &L->lp[i];
		if (p->alt && link_tick(h, p->alt, now)) {
			p->alt = NULL;
			L->nalt--;
		}
		/* a stanza waits at most connect_timeout for its link (FIFO:
		 * the oldest are first) */
		uint32_t old = 0;
		while (old < p->q.len && now - p->q.v[old].at > wait_max)
			old++;
		if (old) {
			pairq_bounce_items(h, p->q.v, old, STERR_REMOTE_SERVER_TIMEOUT);
			memmove(p->q.v, p->q.v + old, (p->q.len - old) * sizeof(*p->q.v));
			p->q.len -= old;
			L->queued -= old;
			s2s_out_release_held(h, L, false);
		}
		if (p->state == PAIR_PENDING && now - p->since > (uint64_t)hub_cfg->connect_timeout * 1000) {
			/* XEP-0220 has no deadline of its own: a peer that ignores
			 * our db:result must not hold the queue forever */
			log_warn(L->sess ? L->sess->c->id : 0, "s2s out %s -> %s: no dialback answer in %us", p->local,
				 L->remote, hub_cfg->connect_timeout);
			lp_set(L, p, PAIR_INVALID);
			p->since = now;
			s2s_out_pair_bounce(h, L, p, STERR_REMOTE_SERVER_TIMEOUT);
		}
	}
	if (L->state == L_BACKOFF && now - L->failed_at >= (uint64_t)hub_cfg->retry_min * 1000) {
		if (L->queued == 0 && now - L->last_activity > idle) {
			link_free(h, L);
			return true;
		}
		L->state = L_IDLE;
		if (L->queued) /* stanzas waited out the back-off: try again */
			link_start(h, L);
	}
	if (L->state == L_OPEN && L->sess && !L->queued) {
		if (now - L->last_activity >= idle) {
			link_free(h, L); /* closes the stream */
			return true;
		}
		if (ka && now - L->last_keepalive >= ka && now - L->last_activity >= ka) {
			/* RFC 6120 §4.6.1 whitespace keepalive */
			L->last_keepalive = now;
			sess_send(L->sess, " ", 1);
		}
	}
	if (L->state == L_IDLE && !L->queued && !L->sess && !L->dns_pending && now - L->last_activity > idle) {
		link_free(h, L);
		return true;
	}
	return false;
}

void s2s_tick(struct hubw *h, uint64_t now)
{
	for (uint32_t i = 0; i < h->nlinks_cap; i++) {
		struct s2s_out *L = h->links[i], *next;
		for (; L; L = next) {
			next = L->hnext;
			link_tick(h, L, now);
		}
	}
	db_tick(h, now);
}

static void link_shutdown(struct hubw *h, struct s2s_out *L)
{
	for (int k = 0; k < L->nlp; k++) {
		s2s_out_pair_bounce(h, L, &L->lp[k], STERR_REMOTE_SERVER_TIMEOUT);
		if (L->lp[k].alt)
			link_shutdown(h, L->lp[k].alt);
	}
	if (L->sess) {
		sess_sendf(L->sess, "</stream:stream>");
		net_close(L->sess->c, true);
	}
}

void s2s_shutdown(struct hubw *h)
{
	for (uint32_t i = 0; i < h->nlinks_cap; i++)
		for (struct s2s_out *L = h->links[i]; L; L = L->hnext)
			link_shutdown(h, L);
}

void s2s_out_link_kick(struct hubw *h, struct s2s_out *L)
{
	if (!s2s_clu_may_send(L))
		return;
	if (L->state == L_BACKOFF && net_now_ms() - L->failed_at >= (uint64_t)hub_cfg->retry_min * 1000)
		L->state = L_IDLE;
	if (L->state == L_IDLE && L->queued) {
		link_start(h, L);
		return;
	}
	if (L->state != L_OPEN || !L->sess)
		return;
	for (int i = 0; i < L->nlp; i++) {
		struct lpair *p = &L->lp[i];
		if (p->alt)
			s2s_out_link_kick(h, p->alt);
		else if (p->state == PAIR_VALID && p->q.len)
			s2s_out_pair_flush(h, L, p);
		else if (p->state == PAIR_NONE && p->q.len && L->sess->got_features)
			out_start_pair(h, L, p);
	}
}
