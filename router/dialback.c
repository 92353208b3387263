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
 * inbound stream claims a (remote, local) pair with <db:result/>, we ask the
 * remote's authoritative server over a stream of the inbound session's
 * worker and tell the inbound session the verdict. Each worker keeps one
 * such stream per remote domain (struct vstream) and sends it every key for
 * that domain (XEP-0220 §2.3 allows several <db:verify/> on one stream):
 * D domains piggybacked on one link cost one connection, not D. At most
 * VERIFY_INFLIGHT_MAX keys are unanswered on a stream, the others wait
 * (at most VERIFY_WAIT_MAX); answers are matched by from, to and id. The
 * stream closes once nothing is unanswered or waiting. A struct verify
 * holds only a reference (net_ref) to the inbound session: that session may
 * be gone by the time the answer comes, and then the answer is dropped.
 *
 * The key travels under the same TLS policy as an outbound link to that
 * domain would (s2s_out_tls_policy()): where TLS is required, a pre-1.0
 * answer (which cannot offer STARTTLS) or features without STARTTLS end the
 * verification before the key is sent, and the pair gets a dialback error.
 * The features are parsed as XML (s2s_features_parse()), and DNS answers
 * pointing at private addresses are dropped as for outbound links.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include "router/s2s-t.h"
#include "router/guard.h"
#include "net/alloc.h"
#include "router/clu.h"
#include "net/log.h"
#include "net/tls.h"

/* ---- dialback keys (XEP-0185) -------------------------------------- */

void dialback_key(const char *receiving, const char *originating, const char *id, char out[65])
{
	Hmac hmac;
	unsigned char mac[WC_SHA256_DIGEST_SIZE];
	wc_HmacInit(&hmac, NULL, INVALID_DEVID);
	wc_HmacSetKey(&hmac, WC_SHA256, (const byte *)clu_dialback_key(), 64); /* the cluster's, once Redis answered */
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

int db_result_addrs(struct sess *s, const struct xml_stanza *st, char from[CFG_NAME_MAX], char to[CFG_NAME_MAX])
{
	if (db_norm_attr(st->from, st->flags & XML_ST_FROM_ESC, from, CFG_NAME_MAX) < 0 ||
	    db_norm_attr(st->to, st->flags & XML_ST_TO_ESC, to, CFG_NAME_MAX) < 0) {
		sess_stream_error(s, SERR_IMPROPER_ADDRESSING, "db:result needs from and to");
		return -1;
	}
	return 0;
}

/* ---- verify streams (we are the receiving server) ----------------- */

/* db:verify sent and not yet answered on one stream: an authoritative
 * server that is slow to answer holds at most this many keys, the rest
 * wait their turn. */
#define VERIFY_INFLIGHT_MAX 32
/* keys waiting for one authoritative server (each inbound stream claims at
 * most S2S_MAX_PAIRS; many streams may claim the same remote) */
#define VERIFY_WAIT_MAX 4096
/* a send is tried again on a new stream once if the stream it was on closed */
#define VERIFY_TRIES 2
/* how long an unused vstream (and the time of its last failure warning) is
 * kept, and so how often a failing authoritative server is logged */
#define VERIFY_KEEP_MS 60000

/* One key to check for one inbound session. */
struct verify {
	struct net_ref in; /* the inbound session waiting for the answer */
	char *remote, *local, *key, *id;
	struct verify *next;
	uint64_t sent_at;
	uint8_t tries;
};

struct vstream {
	char *remote;
	uint32_t hash;
	struct vstream *hnext;
	struct dns_target t[DNS_MAX_TARGETS];
	int nt, next_t;
	struct sess *sess; /* the stream, while there is one */
	bool ready;        /* the stream takes db:verify (features done) */
	bool dns_pending;
	struct verify *wait, **wait_tail; /* not sent yet, in order */
	uint32_t nwait;
	struct verify *fly; /* sent, unanswered (newest first) */
	uint32_t nfly;
	uint64_t last_used, last_warn;
};

/* The worker's verification streams by remote domain; only that worker's
 * thread touches them. Chained, doubling when fuller than one per bucket. */
static __thread struct vstream **vtab;
static __thread uint32_t vtab_cap, vtab_n;

static struct vstream *vs_find(const char *remote, uint32_t hv)
{
	if (!vtab_cap)
		return NULL;
	for (struct vstream *vs = vtab[hv & (vtab_cap - 1)]; vs; vs = vs->hnext)
		if (vs->hash == hv && strcmp(vs->remote, remote) == 0)
			return vs;
	return NULL;
}

static void verify_free(struct verify *v);

/* The table dies with its worker thread: what is left in it then (every
 * session is gone by that time) is freed by the destructor of a thread key,
 * which glibc runs while the thread's __thread variables are still there. */
static pthread_key_t vtab_key;
static pthread_once_t vtab_once = PTHREAD_ONCE_INIT;

static void verify_list_free(struct verify *v)
{
	for (struct verify *next; v; v = next) {
		next = v->next;
		verify_free(v);
	}
}

static void vtab_free_all(void *unused)
{
	(void)unused;
	for (uint32_t i = 0; i < vtab_cap; i++) {
		for (struct vstream *vs = vtab[i], *next; vs; vs = next) {
			next = vs->hnext;
			verify_list_free(vs->wait);
			verify_list_free(vs->fly);
			free(vs->remote);
			free(vs);
		}
	}
	free(vtab);
	vtab = NULL;
	vtab_cap = vtab_n = 0;
}

static void vtab_key_make(void)
{
	pthread_key_create(&vtab_key, vtab_free_all);
}

static void vtab_grow(void)
{
	if (!vtab_cap) {
		pthread_once(&vtab_once, vtab_key_make);
		pthread_setspecific(vtab_key, (void *)1); /* a non-NULL value: the destructor runs */
	}
	uint32_t cap = vtab_cap ? vtab_cap * 2 : 16;
	struct vstream **nb = xcalloc(cap, sizeof(*nb));
	for (uint32_t i = 0; i < vtab_cap; i++) {
		struct vstream *vs = vtab[i], *next;
		for (; vs; vs = next) {
			next = vs->hnext;
			vs->hnext = nb[vs->hash & (cap - 1)];
			nb[vs->hash & (cap - 1)] = vs;
		}
	}
	free(vtab);
	vtab = nb;
	vtab_cap = cap;
}

static struct vstream *vs_get(const char *remote)
{
	uint32_t hv = pix_hash1(remote, strlen(remote));
	struct vstream *vs = vs_find(remote, hv);
	if (vs)
		return vs;
	if (vtab_n + 1 > vtab_cap)
		vtab_grow();
	vs = xcalloc(1, sizeof(*vs));
	vs->remote = xstrdup(remote);
	vs->hash = hv;
	vs->wait_tail = &vs->wait;
	vs->hnext = vtab[hv & (vtab_cap - 1)];
	vtab[hv & (vtab_cap - 1)] = vs;
	vtab_n++;
	return vs;
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

/* Tell the inbound session; result: 1 valid, 0 invalid, -1 could not ask.
 * Frees v. */
static void verify_answer(struct hubw *h, struct verify *v, int result)
{
	struct net_conn *ic = net_conn_get(h->w, v->in);
	struct sess *in = ic ? ic->user : NULL;
	struct pair *p = in ? pair_find(in, v->remote, v->local) : NULL;
	/* a key made for an earlier stream id (before STARTTLS or a SASL
	 * restart) proves nothing about this stream */
	if (p && p->state == PAIR_PENDING && strcmp(v->id, in->stream_id) == 0) {
		if (result == 1) {
			pair_set(in, p, PAIR_VALID);
			MET_INC(h->m, dialback_ok);
			MET_INC(h->m, s2s_in_links);
			sess_met_up(h, in, MET_AUTH_DIALBACK, v->remote);
			in->tok.authenticated = true;
			log_info(ic->id, "s2s in %s -> %s: authenticated (dialback)", v->remote, v->local);
			sess_sendf(in, "<db:result from='%s' to='%s' type='valid'/>", v->local, v->remote);
		} else if (result == 0) {
			pair_set(in, p, PAIR_INVALID);
			MET_INC(h->m, dialback_fail);
			log_warn(ic->id, "s2s in %s -> %s: dialback key invalid", v->remote, v->local);
			sess_sendf(in, "<db:result from='%s' to='%s' type='invalid'/>", v->local, v->remote);
		} else {
			pair_set(in, p, PAIR_NONE);
			MET_INC(h->m, dialback_fail);
			/* the stream's failure is logged once for all its keys */
			log_debug(ic->id, "s2s in %s -> %s: authoritative server unreachable", v->remote, v->local);
			/* XEP-0220 §2.4: dialback errors */
			sess_sendf(in,
				   "<db:result from='%s' to='%s' type='error'><error type='cancel'>"
				   "<remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
				   "</error></db:result>",
				   v->local, v->remote);
		}
	}
	verify_free(v);
}

/* Every key of vs, waiting or sent, gets "could not ask"; logged once per
 * VERIFY_KEEP_MS for the domain. */
static void vs_fail(struct hubw *h, struct vstream *vs, const char *why)
{
	uint64_t now = net_now_ms();
	uint32_t n = vs->nwait + vs->nfly;
	if (n && (!vs->last_warn || now - vs->last_warn >= VERIFY_KEEP_MS)) {
		vs->last_warn = now;
		log_warn(vs->sess ? vs->sess->c->id : 0, "s2s verify %s: %s; %u key%s not verified", vs->remote, why, n,
			 n == 1 ? "" : "s");
	}
	vs->ready = false;
	struct verify *v, *next;
	for (v = vs->fly; v; v = next) {
		next = v->next;
		verify_answer(h, v, -1);
	}
	for (v = vs->wait; v; v = next) {
		next = v->next;
		verify_answer(h, v, -1);
	}
	vs->fly = vs->wait = NULL;
	vs->wait_tail = &vs->wait;
	vs->nfly = vs->nwait = 0;
	vs->last_used = now;
}

/* The stream's deadline: the oldest unanswered key's, else the idle close. */
static void vs_set_deadline(struct vstream *vs)
{
	if (!vs->sess || !vs->ready)
		return;
	uint64_t oldest = 0;
	for (struct verify *v = vs->fly; v; v = v->next)
		oldest = v->sent_at;
	uint64_t now = net_now_ms(), to = (uint64_t)hub_cfg->connect_timeout * 1000;
	net_conn_set_deadline(vs->sess->c, (vs->fly ? oldest : now) + to);
}

/* Send what waits, up to VERIFY_INFLIGHT_MAX unanswered. */
static void vs_pump(struct vstream *vs)
{
	if (!vs->sess || !vs->ready)
		return;
	uint64_t now = net_now_ms();
	while (vs->wait && vs->nfly < VERIFY_INFLIGHT_MAX) {
		struct verify *v = vs->wait;
		vs->wait = v->next;
		if (!vs->wait)
			vs->wait_tail = &vs->wait;
		vs->nwait--;
		sess_sendf(vs->sess, "<db:verify from='%s' to='%s' id='%s'>%s</db:verify>", v->local, v->remote, v->id,
			   v->key);
		v->sent_at = now;
		v->tries++;
		v->next = vs->fly;
		vs->fly = v;
		vs->nfly++;
	}
	vs->last_used = now;
	vs_set_deadline(vs);
}

static void vs_try_next(struct hubw *h, struct vstream *vs)
{
	if (!vs->wait)
		return; /* nothing to ask */
	while (vs->next_t < vs->nt) {
		struct dns_target *t = &vs->t[vs->next_t++];
		struct sess *s = sess_new(SESS_VERIFY);
		s->remote = xstrdup(vs->remote);
		s->local = xstrdup(vs->wait->local); /* the header's from; each db:verify names its own */
		s->tls_policy = (uint8_t)s2s_out_tls_policy(vs->remote);
		s->tok.authenticated = true;
		struct net_conn *c = net_connect(h->w, (struct sockaddr *)&t->ss, t->len, &s2s_verify_ops, s);
		if (!c) {
			sess_free(s);
			continue;
		}
		s->c = c;
		met_conn_open(hubw_of(c->w)->m, &s->ml, MET_DIR_VERIFY);
		s->vstream = vs; /* back-pointer; sess_free leaves it */
		net_conn_set_deadline(c, net_now_ms() + hub_cfg->connect_timeout * 1000);
		vs->sess = s;
		vs->ready = false;
		return;
	}
	vs_fail(h, vs, vs->nt ? "no address of the authoritative server could be reached" : "no address");
}

/* Open a stream for what waits: the [route], else DNS. */
static void vs_start(struct hubw *h, struct vstream *vs)
{
	if (vs->sess || vs->dns_pending || !vs->wait)
		return;
	vs->next_t = 0;
	if (s2s_route_targets(vs->remote, vs->t, &vs->nt)) {
		vs_try_next(h, vs);
		return;
	}
	vs->dns_pending = true;
	s2s_resolve(h, vs->remote, NULL, vs);
}

void db_verify_start(struct hubw *h, struct sess *in, const char *remote, const char *local, struct xml_span key)
{
	struct vstream *vs = vs_get(remote);
	struct verify *v = xcalloc(1, sizeof(*v));
	v->in = in->c->ref;
	v->remote = xstrdup(remote);
	v->local = xstrdup(local);
	v->key = span_dup(key, false);
	v->id = xstrdup(in->stream_id);
	vs->last_used = net_now_ms();
	if (!v->key || vs->nwait >= VERIFY_WAIT_MAX) {
		if (v->key)
			log_warn(in->c->id, "s2s verify %s: %u keys wait already; %s not verified", remote, vs->nwait,
				 local);
		verify_answer(h, v, -1);
		return;
	}
	*vs->wait_tail = v;
	vs->wait_tail = &v->next;
	vs->nwait++;
	if (vs->sess)
		vs_pump(vs);
	else
		vs_start(h, vs);
}

/* The unanswered key an answer is for: XEP-0220 §2.3.4 names it by from,
 * to and id. */
static struct verify *vs_take(struct vstream *vs, const char *from, const char *to, const char *id)
{
	for (struct verify **pp = &vs->fly; *pp; pp = &(*pp)->next) {
		struct verify *v = *pp;
		if (strcmp(v->remote, from) == 0 && strcmp(v->local, to) == 0 && strcmp(v->id, id) == 0) {
			*pp = v->next;
			vs->nfly--;
			return v;
		}
	}
	return NULL;
}

static void vs_on_answer(struct hubw *h, struct vstream *vs, struct sess *s, const struct xml_stanza *st)
{
	char from[CFG_NAME_MAX], to[CFG_NAME_MAX], id[128];
	int il = st->id.n ? xml_attr_decode(st->id, id, sizeof(id) - 1) : -1;
	if (db_norm_attr(st->from, st->flags & XML_ST_FROM_ESC, from, sizeof(from)) < 0 ||
	    db_norm_attr(st->to, st->flags & XML_ST_TO_ESC, to, sizeof(to)) < 0 || il <= 0) {
		log_warn(s->c->id, "s2s verify %s: db:verify answer without from, to or id", vs->remote);
		vs_fail(h, vs, "an answer named no key");
		sess_stream_error(s, SERR_IMPROPER_ADDRESSING, NULL);
		return;
	}
	id[il] = 0;
	struct verify *v = vs_take(vs, from, to, id);
	if (!v) {
		log_debug(s->c->id, "s2s verify %s: answer for a key not asked (%s -> %s)", vs->remote, from, to);
		return;
	}
	int res = span_eq(st->type, "valid") ? 1 : span_eq(st->type, "invalid") ? 0 : -1;
	verify_answer(h, v, res);
	vs_pump(vs);
	if (!vs->fly && !vs->wait) {
		/* nothing more to ask: the stream is not kept open for keys
		 * that may never come (the next one opens a new stream) */
		vs->sess = NULL;
		vs->ready = false;
		s->vstream = NULL;
		sess_sendf(s, "</stream:stream>");
		net_close(s->c, true);
	}
}

static enum drive verify_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	struct vstream *vs = s->vstream;
	struct net_conn *c = s->c;
	bool ready = false;
	if (ev == XML_EV_STREAM_OPEN) {
		s->state = SESS_OPEN;
		if (!span_eq(s->tok.hdr.version, "1.0")) {
			if (!s->tls_on && s->tls_policy == CFG_TLS_REQUIRED) {
				/* RFC 6120 §4.7.5, §5.3.1: no STARTTLS on a pre-1.0
				 * stream, and the key must not go out in the clear */
				if (vs)
					vs_fail(h, vs, "pre-1.0 stream and TLS is required");
				sess_stream_error(s, SERR_UNSUPPORTED_VERSION, "TLS is required");
				return DRIVE_ALL;
			}
			ready = true;
		}
	} else {
		const struct xml_stanza *st = &s->tok.st;
		if (st->nsid == XML_NS_STREAMS && span_eq(st->name, "features") && !s->got_features) {
			s->got_features = true;
			struct feats f;
			if (s2s_features_parse(st->raw, &f) < 0) {
				if (vs)
					vs_fail(h, vs, "stream features could not be read");
				sess_stream_error(s, SERR_BAD_FORMAT, "stream features could not be read");
				return DRIVE_ALL;
			}
			if (!s->tls_on && f.starttls && s->tls_policy != CFG_TLS_OFF) {
				/* the key travels under the same TLS policy as the link */
				sess_sendf(s, "<starttls xmlns='" NS_TLS "'/>");
				s->starttls_sent = true;
			} else if (!s->tls_on && s->tls_policy == CFG_TLS_REQUIRED) {
				if (vs)
					vs_fail(h, vs, "no STARTTLS offered and TLS is required");
				sess_sendf(s, "</stream:stream>");
				net_close(c, true);
				return DRIVE_ALL;
			} else {
				ready = true;
			}
		} else if (st->nsid == XML_NS_TLS && s->starttls_sent) {
			s->starttls_sent = false;
			struct tls_conn *t =
				span_eq(st->name, "proceed") ? tls_conn_new(hub_tls, false, s->remote, s->local) : NULL;
			if (!t) {
				if (vs)
					vs_fail(h, vs, "STARTTLS refused or failed");
				net_close(c, false);
				return DRIVE_ALL;
			}
			net_start_tls(c, t, true);
			return DRIVE_STOP; /* nothing may follow <proceed/> in the clear: net drops it */
		} else if (st->nsid == XML_NS_DIALBACK && span_eq(st->name, "verify")) {
			if (vs)
				vs_on_answer(h, vs, s, st);
			return DRIVE_ON;
		}
	}
	if (ready && vs) {
		vs->ready = true;
		vs_pump(vs);
	}
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
	if (tls_resumed(c->tls))
		MET_INC(h->m, tls_resumptions);
	s->tls_on = true;
	xml_tok_reset(&s->tok);
	s->got_features = false;
	verify_on_connect(c, 0); /* a new stream over TLS */
}

static void verify_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct vstream *vs = s->vstream;
	s->vstream = NULL;
	if (vs && vs->sess == s) {
		bool was_ready = vs->ready;
		vs->sess = NULL;
		vs->ready = false;
		vs->last_used = net_now_ms();
		if (!was_ready && (c->flags & NET_F_CONNECTING || err)) {
			vs_try_next(h, vs); /* never got through: the next address */
		} else if (!was_ready) {
			vs_fail(h, vs, "stream closed before it took a key");
		} else {
			/* keys sent on it and not answered are asked again on a
			 * new stream, once; what still waits goes there too */
			struct verify *v, *next, *again = NULL;
			uint32_t nagain = 0;
			for (v = vs->fly; v; v = next) {
				next = v->next;
				if (v->tries < VERIFY_TRIES) {
					v->next = again;
					again = v;
					nagain++;
				} else {
					verify_answer(h, v, -1);
				}
			}
			vs->fly = NULL;
			vs->nfly = 0;
			if (again) {
				struct verify *last = again;
				while (last->next)
					last = last->next;
				last->next = vs->wait;
				if (!vs->wait)
					vs->wait_tail = &last->next;
				vs->wait = again;
				vs->nwait += nagain;
			}
			vs_start(h, vs);
		}
	}
	sess_free(s);
}

static void verify_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct vstream *vs = s->vstream;
	if (vs && vs->sess == s && vs->ready && !vs->fly && !vs->wait) {
		/* idle: close it; the next key opens a new one */
		vs->sess = NULL;
		vs->ready = false;
		s->vstream = NULL;
		sess_sendf(s, "</stream:stream>");
		net_close(c, true);
		return;
	}
	if (vs && vs->sess == s)
		vs_fail(h, vs, vs->ready ? "no answer in time" : "timed out connecting");
	net_close(c, false);
}

const struct net_conn_ops s2s_verify_ops = {
	.on_data = verify_on_data,
	.on_connect = verify_on_connect,
	.on_tls = verify_on_tls,
	.on_close = verify_on_close,
	.on_timer = verify_on_timer,
};

void db_verify_on_dns(struct hubw *h, struct vstream *vs, const struct dns_req *r)
{
	vs->dns_pending = false;
	if (r->status) {
		vs_fail(h, vs, "DNS lookup failed");
		return;
	}
	memcpy(vs->t, r->t, sizeof(vs->t));
	vs->nt = r->ntargets;
	vs->next_t = 0;
	s2s_drop_private_targets(vs->t, &vs->nt, vs->remote);
	vs_try_next(h, vs);
}

void db_tick(struct hubw *h, uint64_t now)
{
	(void)h;
	for (uint32_t i = 0; i < vtab_cap; i++) {
		for (struct vstream **pp = &vtab[i]; *pp;) {
			struct vstream *vs = *pp;
			if (vs->sess || vs->dns_pending || vs->wait || vs->fly ||
			    now - vs->last_used < VERIFY_KEEP_MS) {
				pp = &vs->hnext;
				continue;
			}
			*pp = vs->hnext;
			vtab_n--;
			free(vs->remote);
			free(vs);
		}
	}
}
