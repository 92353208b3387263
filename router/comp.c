/*
 * router/comp.c — XEP-0114 components (jabber:component:accept).
 *
 * A component opens a stream to its domain, proves it knows the shared
 * secret with <handshake>hex(SHA-1(stream id + secret))</handshake>, and is
 * then one connection in its domain's pool in the routing table. Stanzas to
 * the domain are spread over the pool by (from, to) bare JIDs (route.c);
 * stanzas from it are routed like any other, with `from` checked against the
 * domain.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "net/alloc.h"
#include "router/hub.h"
#include "router/flow.h"
#include "router/sess.h"
#include "router/route.h"
#include "router/comp.h"
#include "router/clu.h"
#include "net/log.h"

static const struct cfg_component *find_component(const char *d)
{
	return cfg_component_find(hub_cfg, d); /* hashed (router/cfg.c) */
}

static void comp_open(struct hubw *h, struct sess *s)
{
	const struct xml_stream_hdr *hd = &s->tok.hdr;
	char to[CFG_NAME_MAX];
	sess_new_stream_id(h, s);
	if (hd->default_ns != XML_NS_COMPONENT) {
		sess_stream_error(s, SERR_INVALID_NAMESPACE, NULL);
		return;
	}
	int tl = hd->to.n ? jid_domain(hd->to, memchr(hd->to.p, '&', hd->to.n) != NULL, to, sizeof(to)) : -1;
	if (tl <= 0 || !find_component(to)) {
		sess_stream_error(s, SERR_HOST_UNKNOWN, NULL);
		return;
	}
	s->local = xstrdup(to);
	sess_sendf(s,
		   "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
		   "xmlns:stream='http://etherx.jabber.org/streams' id='%s' from='%s'>",
		   s->stream_id, s->local);
	s->state = SESS_COMP_HANDSHAKE;
}

static void comp_handshake(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	/* XEP-0114 §3: hex(SHA-1(stream id + secret)), hashed in two parts so
	 * no secret length can overflow a buffer */
	const struct cfg_component *cc = find_component(s->local);
	const char *secret = cc ? cc->secret : "";
	unsigned char dig[WC_SHA_DIGEST_SIZE];
	char want[2 * WC_SHA_DIGEST_SIZE + 1];
	wc_Sha sha;
	wc_InitSha(&sha);
	wc_ShaUpdate(&sha, (const byte *)s->stream_id, (word32)strlen(s->stream_id));
	wc_ShaUpdate(&sha, (const byte *)secret, (word32)strlen(secret));
	wc_ShaFinal(&sha, dig);
	wc_ShaFree(&sha);
	hex_encode(dig, sizeof(dig), want);
	struct xml_span got = elem_text(st);
	bool ok = got.n == 40;
	if (ok) {
		unsigned char d = 0; /* compare in constant time, case-insensitively */
		for (int i = 0; i < 40; i++) {
			char ch = got.p[i];
			if (ch >= 'A' && ch <= 'F')
				ch = (char)(ch - 'A' + 'a');
			d |= (unsigned char)(ch ^ want[i]);
		}
		ok = d == 0;
	}
	if (!ok) {
		sess_stream_error(s, SERR_NOT_AUTHORIZED, NULL);
		return;
	}
	int pool = rt_comp_add(s->local, s->c->ref);
	if (pool < 0) {
		sess_stream_error(s, SERR_RESOURCE_CONSTRAINT, "component pool full");
		return;
	}
	if (pool == 1) /* the domain's first connection on this node: the cluster forwards here */
		clu_comp_up(h->w, s->local);
	s->state = SESS_COMP_READY;
	s->tok.authenticated = true;
	MET_INC(h->m, comp_links);
	sess_met_up(h, s, MET_AUTH_HANDSHAKE, s->local);
	sess_sendf(s, "<handshake/>");
	log_info(s->c->id, "component %s connected (%d in pool)", s->local, pool);
	net_conn_set_deadline(s->c, 0);
}

static enum drive comp_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	if (ev == XML_EV_STREAM_OPEN) {
		comp_open(h, s);
		return DRIVE_ON;
	}
	const struct xml_stanza *st = &s->tok.st;
	if (s->state == SESS_COMP_HANDSHAKE) {
		if (span_eq(st->name, "handshake"))
			comp_handshake(h, s, st);
		else
			sess_stream_error(s, SERR_NOT_AUTHORIZED, NULL);
	} else if (st->nsid == XML_NS_COMPONENT && st_routable(st)) {
		net_buf_ref(b); /* ours: b is what this worker received */
		route_stanza(h, s, b, st);
	} else {
		sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
	}
	return DRIVE_ON;
}

static size_t comp_on_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	return sess_drive(c->user, b, p, n, comp_event);
}

static void comp_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	MET_INC(hubw_of(c->w)->m, conn_closed); /* the pair of main.c's conn_accepted */
	sess_log_enter(s);
	log_info(c->id, "component closed: %s", err ? strerror(-err) : "by us or the peer");
	if (s->state == SESS_COMP_READY || s->was_ready) {
		int left = s->state == SESS_COMP_READY ? rt_comp_del(s->local, c->ref) : -1;
		log_info(c->id, "component %s disconnected%s", s->local, left == 0 ? " (pool empty)" : "");
		if (left == 0)
			clu_comp_down(c->w, s->local);
	}
	flow_close(hubw_of(c->w), s); /* out of the pool: what waited goes to the others */
	sess_free(s);
}

/* Stanzas queued to this connection that never left: its share of the pool
 * moves to the others, so route them again (after on_close took it out). */
static void comp_on_unsent(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (s->state == SESS_COMP_READY) {
		if (rt_comp_del(s->local, c->ref) == 0)
			clu_comp_down(c->w, s->local);
		s->state = SESS_WAIT_HDR; /* on_close must not remove it twice */
		s->was_ready = true;
	}
	route_raw(h, b, p, n);
}

/* The send queue went below half of send_queue_max: what waits goes in. */
static void comp_on_drain(struct net_conn *c)
{
	flow_drain(hubw_of(c->w), c->user);
}

static void comp_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	if (s->state != SESS_COMP_READY)
		sess_stream_error(s, SERR_CONNECTION_TIMEOUT, "no handshake in time");
}

const struct net_conn_ops comp_ops = {
	.on_data = comp_on_data,
	.on_close = comp_on_close,
	.on_timer = comp_on_timer,
	.on_unsent = comp_on_unsent,
	.on_drain = comp_on_drain,
};

void comp_accept(struct net_conn *c)
{
	struct sess *s = sess_new(SESS_COMP);
	s->c = c;
	met_conn_open(hubw_of(c->w)->m, &s->ml, MET_DIR_COMPONENT);
	c->ops = &comp_ops;
	c->user = s;
	net_conn_set_deadline(c, net_now_ms() + hub_cfg->connect_timeout * 1000);
}
