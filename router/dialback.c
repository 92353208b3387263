/*
 * router/dialback.c — Server Dialback (XEP-0220): the keys and the
 * verification streams.
 *
 * Keys (XEP-0185) are HMAC-SHA256(secret, receiving ' ' originating ' '
 * stream-id), so answering a <db:verify/> for a key we handed out on one of
 * our outbound links needs no state: the inbound side recomputes it. Any
 * node of a cluster with the same secret gives the same answer.
 *
 * A verify stream (SESS_VERIFY) is the receiving server's half: when an
 * inbound stream claims a (remote, local) pair with <db:result/>, we open a
 * short stream to the remote's authoritative server on the inbound session's
 * worker, carry one <db:verify/>, and tell the inbound session the verdict.
 * The verification holds only a reference (net_ref) to the inbound session:
 * that session may be gone by the time the answer comes, and then the answer
 * is dropped. A struct verify lives until it has answered and neither a DNS
 * lookup nor a connection still points at it.
 *
 * The key travels under the same TLS policy as an outbound link to that
 * domain would (s2s_out_tls_policy()): where TLS is required, a pre-1.0
 * answer (which cannot offer STARTTLS) or features without STARTTLS end the
 * verification before the key is sent, and the pair gets a dialback error.
 * The features are parsed as XML (s2s_features_parse()), and DNS answers
 * pointing at private addresses are dropped as for outbound links.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include "net/alloc.h"
#include "router/s2s-t.h"
#include "router/guard.h"
#include "net/log.h"
#include "net/tls.h"

/* ---- dialback keys (XEP-0185) -------------------------------------- */

void dialback_key(const char *receiving, const char *originating, const char *id, char out[65])
{
	Hmac hmac;
	unsigned char mac[WC_SHA256_DIGEST_SIZE];
	wc_HmacInit(&hmac, NULL, INVALID_DEVID);
	wc_HmacSetKey(&hmac, WC_SHA256, (const byte *)hub_dialback_key, 64);
	wc_HmacUpdate(&hmac, (const byte *)receiving, (word32)strlen(receiving));
	wc_HmacUpdate(&hmac, (const byte *)" ", 1);
	wc_HmacUpdate(&hmac, (const byte *)originating, (word32)strlen(originating));
	wc_HmacUpdate(&hmac, (const byte *)" ", 1);
	wc_HmacUpdate(&hmac, (const byte *)id, (word32)strlen(id));
	wc_HmacFinal(&hmac, mac);
	wc_HmacFree(&hmac);
	hex_encode(mac, WC_SHA256_DIGEST_SIZE, out);
}

bool db_key_ok(struct xml_span got, const char *want)
{
	size_t n = strlen(want);
	if (got.n != n)
		return false;
	unsigned char d = 0;
	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(got.p[i] ^ want[i]);
	return d == 0;
}

int db_norm_attr(struct xml_span v, bool esc, char *out, size_t cap)
{
	if (!v.n)
		return -1;
	return jid_domain(v, esc, out, cap);
}

/* ---- verify connections (we are the receiving server) -------------- */

static void verify_answer(struct hubw *h, struct verify *v, int result);

static void verify_try_next(struct hubw *h, struct verify *v)
{
	while (v->next_t < v->nt) {
		struct dns_target *t = &v->t[v->next_t++];
		struct sess *s = sess_new(SESS_VERIFY);
		s->remote = xstrdup(v->remote);
		s->local = xstrdup(v->local);
		s->tls_policy = (uint8_t)s2s_out_tls_policy(v->remote);
		s->tok.authenticated = true;
		struct net_conn *c = net_connect(h->w, (struct sockaddr *)&t->ss, t->len, &s2s_verify_ops, s);
		if (!c) {
			sess_free(s);
			continue;
		}
		s->c = c;
		met_conn_open(hubw_of(c->w)->m, &s->ml, MET_DIR_VERIFY);
		s->verify = v; /* back-pointer; sess_free leaves it */
		c->deadline = net_now_ms() + hub_cfg->connect_timeout * 1000;
		v->sess = s;
		return;
	}
	verify_answer(h, v, -1);
}

static void verify_free(struct verify *v)
{
	guard_verify_release(); /* taken by s2s_in.c before db_verify_start() */
	free(v->remote);
	free(v->local);
	free(v->key);
	free(v->id);
	free(v);
}

/* result: 1 valid, 0 invalid, -1 could not ask */
static void verify_answer(struct hubw *h, struct verify *v, int result)
{
	if (v->done)
		return;
	v->done = true;
	struct net_conn *ic = net_conn_get(h->w, v->in);
	struct sess *in = ic ? ic->user : NULL;
	if (in) {
		struct pair *p = NULL;
		for (int i = 0; i < in->npairs; i++)
			if (strcmp(in->pairs[i].remote, v->remote) == 0 && strcmp(in->pairs[i].local, v->local) == 0)
				p = &in->pairs[i];
		/* a key made for an earlier stream id (before STARTTLS or a
		 * SASL restart) proves nothing about this stream */
		if (p && p->state == PAIR_PENDING && strcmp(v->id, in->stream_id) == 0) {
			if (result == 1) {
				p->state = PAIR_VALID;
				MET_INC(h->m, dialback_ok);
				MET_INC(h->m, s2s_in_links);
				sess_met_up(h, in, MET_AUTH_DIALBACK, v->remote);
				in->tok.authenticated = true;
				log_info(ic->id, "s2s in %s -> %s: authenticated (dialback)", v->remote, v->local);
				sess_sendf(in, "<db:result from='%s' to='%s' type='valid'/>", v->local, v->remote);
			} else if (result == 0) {
				p->state = PAIR_INVALID;
				MET_INC(h->m, dialback_fail);
				log_warn(ic->id, "s2s in %s -> %s: dialback key invalid", v->remote, v->local);
				sess_sendf(in, "<db:result from='%s' to='%s' type='invalid'/>", v->local, v->remote);
			} else {
				p->state = PAIR_NONE;
				MET_INC(h->m, dialback_fail);
				log_warn(ic->id, "s2s in %s -> %s: authoritative server unreachable", v->remote,
					 v->local);
				/* XEP-0220 §2.4: dialback errors */
				sess_sendf(in,
					   "<db:result from='%s' to='%s' type='error'><error type='cancel'>"
					   "<remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
					   "</error></db:result>",
					   v->local, v->remote);
			}
		}
	}
	if (!v->dns_pending && !v->sess)
		verify_free(v);
}

void db_verify_start(struct hubw *h, struct sess *in, const char *remote, const char *local, struct xml_span key)
{
	struct verify *v = xcalloc(1, sizeof(*v));
	v->in = in->c->ref;
	v->remote = xstrdup(remote);
	v->local = xstrdup(local);
	v->key = span_dup(key, false);
	v->id = xstrdup(in->stream_id);
	if (s2s_route_targets(remote, v->t, &v->nt)) {
		verify_try_next(h, v);
		return;
	}
	v->dns_pending = true;
	s2s_resolve(h, remote, NULL, v);
}

static enum drive verify_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	struct verify *v = s->verify;
	struct net_conn *c = s->c;
	bool ask = false;
	if (ev == XML_EV_STREAM_OPEN) {
		s->state = SESS_OPEN;
		if (!span_eq(s->tok.hdr.version, "1.0")) {
			if (!s->tls_on && s->tls_policy == CFG_TLS_REQUIRED) {
				/* RFC 6120 §4.7.5, §5.3.1: no STARTTLS on a pre-1.0
				 * stream, and the key must not go out in the clear */
				log_warn(c->id, "s2s verify %s: pre-1.0 stream and TLS is required", s->remote);
				if (v)
					verify_answer(h, v, -1);
				sess_stream_error(s, SERR_UNSUPPORTED_VERSION, "TLS is required");
				return DRIVE_ALL;
			}
			ask = true;
		}
	} else {
		const struct xml_stanza *st = &s->tok.st;
		if (st->nsid == XML_NS_STREAMS && span_eq(st->name, "features") && !s->got_features) {
			s->got_features = true;
			struct feats f;
			if (s2s_features_parse(st->raw, &f) < 0) {
				if (v)
					verify_answer(h, v, -1);
				sess_stream_error(s, SERR_BAD_FORMAT, "stream features could not be read");
				return DRIVE_ALL;
			}
			if (!s->tls_on && f.starttls && s->tls_policy != CFG_TLS_OFF) {
				/* the key travels under the same TLS policy as the link */
				sess_sendf(s, "<starttls xmlns='" NS_TLS "'/>");
				s->starttls_sent = true;
			} else if (!s->tls_on && s->tls_policy == CFG_TLS_REQUIRED) {
				log_warn(c->id, "s2s verify %s: no STARTTLS offered and TLS is required", s->remote);
				if (v)
					verify_answer(h, v, -1);
				sess_sendf(s, "</stream:stream>");
				net_close(c, true);
				return DRIVE_ALL;
			} else {
				ask = true;
			}
		} else if (st->nsid == XML_NS_TLS && s->starttls_sent) {
			s->starttls_sent = false;
			struct tls_conn *t =
				span_eq(st->name, "proceed") ? tls_conn_new(hub_tls, false, s->remote, s->local) : NULL;
			if (!t) {
				if (v)
					verify_answer(h, v, -1);
				net_close(c, false);
				return DRIVE_ALL;
			}
			net_start_tls(c, t, true);
			return DRIVE_STOP; /* nothing may follow <proceed/> in the clear: net drops it */
		} else if (st->nsid == XML_NS_DIALBACK && span_eq(st->name, "verify")) {
			int res = span_eq(st->type, "valid") ? 1 : span_eq(st->type, "invalid") ? 0 : -1;
			if (v)
				verify_answer(h, v, res);
			sess_sendf(s, "</stream:stream>");
			net_close(c, true);
			return DRIVE_ALL;
		}
	}
	if (ask && v)
		sess_sendf(s, "<db:verify from='%s' to='%s' id='%s'>%s</db:verify>", v->local, v->remote, v->id,
			   v->key);
	(void)b;
	return DRIVE_ON;
}

static size_t verify_on_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	return sess_drive(c->user, b, p, n, verify_event);
}

static void verify_on_connect(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	if (err)
		return;
	sess_sendf(s,
		   "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " STREAM_NS
		   " xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>",
		   s->local, s->remote);
}

static void verify_on_tls(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (err) {
		MET_INC(h->m, tls_failures);
		log_warn(c->id, "s2s verify %s: TLS failed: %s", s->remote,
			 c->tls ? tls_error(c->tls) : tls_strerror(err));
		return; /* on_close tries the next address */
	}
	MET_INC(h->m, tls_handshakes);
	s->tls_on = true;
	xml_tok_reset(&s->tok);
	s->got_features = false;
	verify_on_connect(c, 0); /* a new stream over TLS */
}

static void verify_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct verify *v = s->verify;
	s->verify = NULL;
	if (v) {
		v->sess = NULL;
		if (!v->done) {
			if (c->flags & NET_F_CONNECTING || err)
				verify_try_next(h, v);
			else
				verify_answer(h, v, -1);
		} else if (!v->dns_pending) {
			verify_free(v);
		}
	}
	sess_free(s);
}

static void verify_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct verify *v = s->verify;
	if (v)
		verify_answer(h, v, -1);
	net_close(c, false);
}

const struct net_conn_ops s2s_verify_ops = {
	.on_data = verify_on_data,
	.on_connect = verify_on_connect,
	.on_tls = verify_on_tls,
	.on_close = verify_on_close,
	.on_timer = verify_on_timer,
};

void db_verify_on_dns(struct hubw *h, struct verify *v, const struct dns_req *r)
{
	v->dns_pending = false;
	if (r->status) {
		/* verify_answer() frees v itself when it answers (no DNS
		 * wait, no session left); one answered before only waited
		 * for this lookup */
		if (v->done)
			verify_free(v);
		else
			verify_answer(h, v, -1);
	} else {
		memcpy(v->t, r->t, sizeof(v->t));
		v->nt = r->ntargets;
		v->next_t = 0;
		s2s_drop_private_targets(v->t, &v->nt, v->remote);
		verify_try_next(h, v);
	}
}
