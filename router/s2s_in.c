/*
 * router/s2s_in.c — inbound server-to-server streams (RFC 6120): a remote
 * server's stream to us (SESS_S2S_IN).
 *
 * The stream is offered STARTTLS first (alone when it is required), then
 * SASL EXTERNAL when the peer's certificate proves its domain (XEP-0178),
 * and dialback (XEP-0220) for the rest. Each (remote, local) pair the peer
 * claims with <db:result/> is checked by a verify stream (dialback.c), or
 * trusted at once when the certificate proves the domain (XEP-0344); several
 * pairs may share the stream (piggybacking), up to max_pairs_per_stream,
 * kept in a hash index (pairs.c) so a stanza's check costs the same with
 * one pair or a thousand. Once a pair is valid the stream carries stanzas,
 * handed to route.c, which checks every stanza's addresses against the
 * stream's valid pairs.
 *
 * The stream also answers <db:verify/> for keys we gave out on our outbound
 * links: XEP-0185 keys need no state.
 *
 * Until a peer has a valid pair it is a stranger, and what it may cost us is
 * bounded (router.conf "Inbound limits"): connections per source and in
 * total, and their rate (guard.h), checked at accept or, behind a balancer,
 * once the PROXY header named the real source (before TLS); the time
 * (preauth_timeout, from accept: neither whitespace nor pending pairs extend
 * it) and the bytes (max_preauth_bytes) it gets to authenticate; the pairs
 * it may claim; the verifications it may have pending, on the stream and in
 * the whole hub. A pair pending or valid is never verified again, a refused
 * one at most DB_RETRY_MAX more times, and only keys of the XEP-0185 form
 * are ever sent on to a third server. Every refusal is counted by reason in
 * /metrics (met.h, MET_COUNTERS_IN).
 *
 * TLS: bytes after <starttls/> are dropped by net/ (net_start_tls), and
 * when the handshake is done everything learnt in the clear is forgotten
 * (RFC 6120 §5.4.3.3): the parser, the pairs, the peer's name, SASL. Where
 * TLS is required, and on any stream restarted after STARTTLS, a stream
 * that is not version 1.0 is refused with unsupported-version: it would
 * get no features, so no STARTTLS (RFC 6120 §4.7.5, §5.3.1).
 *
 * A stream that stays silent for idle_timeout gets connection-timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>

#include "net/alloc.h"
#include "router/s2s-t.h"
#include "router/clu.h"
#include "router/guard.h"
#include "router/policy.h"
#include "router/shape.h"
#include "router/backend.h"
#include "net/log.h"
#include "net/proxy.h"
#include "net/tls.h"

/* Domain pairs one inbound stream may claim (XEP-0220 piggybacking) are
 * max_pairs_per_stream: each costs a verification (a DNS lookup and a
 * connection) and memory; without a bound one unauthenticated stream could
 * claim millions, and the uint16_t count would wrap. */
#define S2S_MAX_PAIRS hub_cfg->max_pairs_per_stream

/* How many more times a pair the authoritative server refused may be
 * verified on the same stream: a real server whose key was refused has
 * little reason to insist, an attacker every reason. */
#define DB_RETRY_MAX 1

/* XEP-0478: the limits the hub holds a stream to, in its features. */
#define NS_LIMITS "urn:xmpp:stream-limits:0"

static bool in_has_valid(struct sess *s)
{
	return s->nvalid > 0;
}

static void in_stream_open(struct hubw *h, struct sess *s)
{
	const struct xml_stream_hdr *hd = &s->tok.hdr;
	char to[CFG_NAME_MAX];
	sess_new_stream_id(h, s);
	if (hd->default_ns != XML_NS_SERVER) {
		sess_stream_error(s, SERR_INVALID_NAMESPACE, NULL);
		return;
	}
	int tl = hd->to.n ? jid_domain(hd->to, memchr(hd->to.p, '&', hd->to.n) != NULL, to, sizeof(to)) : -1;
	/* a backend's stream may be to any domain: transit (backend_in.c) */
	s->bk_src = backend_source((const struct sockaddr *)&s->c->peer);
	bool transit = tl > 0 && !hub_serves(to, (size_t)tl);
	if (transit && !s->bk_src) {
		sess_stream_error(s, SERR_HOST_UNKNOWN, NULL);
		return;
	}
	free(s->local);
	s->local = xstrdup(tl > 0 ? to : hub_cfg->hub_domain);
	s->peer_v1 = span_eq(hd->version, "1.0");
	/* RFC 6120 §4.7.5: a stream without version='1.0' gets no features,
	 * so it could never be offered STARTTLS: where TLS is required it would
	 * go round the requirement, and after STARTTLS it cannot be (TLS is a
	 * 1.0 feature). */
	if (!s->peer_v1 && (s->tls_policy == CFG_TLS_REQUIRED || (s->tls_on && !s->direct_tls))) {
		MET_INC(h->m, s2s_in_refused_version);
		sess_stream_error(s, SERR_UNSUPPORTED_VERSION,
				  s->tls_on ? "a stream restarted after STARTTLS is version 1.0"
					    : "TLS is required here: version 1.0 streams only");
		return;
	}
	char from_attr[CFG_NAME_MAX + 16] = "";
	char fr[CFG_NAME_MAX] = "";
	if (hd->from.n && jid_domain(hd->from, false, fr, sizeof(fr)) > 0) {
		snprintf(from_attr, sizeof(from_attr), " to='%s'", fr);
		free(s->remote);
		s->remote = xstrdup(fr);
	} else {
		fr[0] = 0;
	}
	bool bdom = fr[0] && cfg_backend_of(hub_cfg, fr);
	if (fr[0] && (bdom ? !backend_claim_ok(fr, (const struct sockaddr *)&s->c->peer) : transit)) {
		/* RFC 6120 §4.9.3.10: a backend's domain from elsewhere, or a
		 * transit stream from a domain of no backend at this source */
		sess_stream_error(s, SERR_INVALID_FROM, "not a domain of a backend at this address");
		return;
	}
	if (fr[0] && !bdom && !policy_for(fr).allowed) { /* remote_deny / remote_allow */
		MET_INC(h->m, s2s_policy_refused);
		sess_stream_error(s, SERR_POLICY_VIOLATION, "remote domain refused by policy");
		return;
	}
	sess_sendf(s,
		   "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " STREAM_NS
		   " xmlns:db='jabber:server:dialback' id='%s' from='%s'%s%s>",
		   s->stream_id, s->local, from_attr, s->peer_v1 ? " version='1.0'" : "");
	s->state = SESS_OPEN;
	if (!s->peer_v1)
		return;
	/* RFC 6120 §4.3.2: STARTTLS first (alone when it is required); after
	 * TLS, SASL EXTERNAL when the peer's certificate proves its domain
	 * (XEP-0178), and dialback (XEP-0220) for the rest. */
	char feat[768];
	int n = snprintf(feat, sizeof(feat), "<stream:features>");
	/* XEP-0478: stanzas may be max_stanza_size (they come after a pair is
	 * valid); a quiet stream is closed after idle_timeout */
	n += snprintf(feat + n, sizeof(feat) - (size_t)n, "<limits xmlns='" NS_LIMITS "'><max-bytes>%u</max-bytes>",
		      hub_cfg->max_stanza_size);
	if (hub_cfg->idle_timeout)
		n += snprintf(feat + n, sizeof(feat) - (size_t)n, "<idle-seconds>%u</idle-seconds>",
			      hub_cfg->idle_timeout);
	n += snprintf(feat + n, sizeof(feat) - (size_t)n, "</limits>");
	bool can_tls = !s->tls_on && hub_tls && s->tls_policy != CFG_TLS_OFF && tls_ctx_cert_count(hub_tls) > 0;
	if (can_tls) {
		s->tls_offered = true;
		n += snprintf(feat + n, sizeof(feat) - (size_t)n, "<starttls xmlns='" NS_TLS "'>%s</starttls>",
			      s->tls_policy == CFG_TLS_REQUIRED ? "<required/>" : "");
	}
	if (!(can_tls && s->tls_policy == CFG_TLS_REQUIRED)) {
		if (s->tls_on && fr[0] && !in_has_valid(s) && tls_peer_verify_domain(s->c->tls, fr) == 0) {
			s->sasl_offered = true;
			n += snprintf(feat + n, sizeof(feat) - (size_t)n,
				      "<mechanisms xmlns='" NS_SASL "'><mechanism>EXTERNAL</mechanism></mechanisms>");
		}
		n += snprintf(feat + n, sizeof(feat) - (size_t)n,
			      "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>");
	}
	snprintf(feat + n, sizeof(feat) - (size_t)n, "</stream:features>");
	sess_sendf(s, "%s", feat);
}

/* <starttls/> from the peer (RFC 6120 §5.4.2.3). */
static void in_starttls(struct hubw *h, struct sess *s)
{
	if (!s->tls_offered || s->tls_on) {
		sess_sendf(s, "<failure xmlns='" NS_TLS "'/></stream:stream>");
		net_close(s->c, true);
		return;
	}
	/* without SNI, the certificate of the domain the stream is for */
	struct tls_conn *t = tls_conn_new(hub_tls, true, NULL, s->local);
	if (!t) {
		sess_sendf(s, "<failure xmlns='" NS_TLS "'/></stream:stream>");
		net_close(s->c, true);
		return;
	}
	sess_sendf(s, "<proceed xmlns='" NS_TLS "'/>");
	/* net drops whatever follows <starttls/> in the clear; in_on_tls
	 * forgets the rest */
	net_start_tls(s->c, t, false);
	(void)h;
}

/* <auth mechanism='EXTERNAL'/> (XEP-0178 §2): the authorization identity is
 * the peer's domain, base64, or "=" for the stream's `from`. */
static void in_sasl_auth(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	char domain[CFG_NAME_MAX] = "";
	struct xml_span txt = elem_text(st);
	const char *mech = memmem(st->raw.p, st->raw.n, "EXTERNAL", 8);
	if (!s->sasl_offered || !mech) {
		sess_sendf(s, "<failure xmlns='" NS_SASL "'><invalid-mechanism/></failure>");
		return;
	}
	if (txt.n && !(txt.n == 1 && txt.p[0] == '=')) {
		byte dec[CFG_NAME_MAX];
		word32 dl = sizeof(dec) - 1;
		if (Base64_Decode((const byte *)txt.p, txt.n, dec, &dl) != 0 || dl == 0) {
			sess_sendf(s, "<failure xmlns='" NS_SASL "'><incorrect-encoding/></failure>");
			return;
		}
		struct xml_span d = {(const char *)dec, dl};
		if (jid_domain(d, false, domain, sizeof(domain)) < 0) {
			sess_sendf(s, "<failure xmlns='" NS_SASL "'><invalid-authzid/></failure>");
			return;
		}
	} else if (s->remote) {
		snprintf(domain, sizeof(domain), "%s", s->remote);
	}
	if (!domain[0] || tls_peer_verify_domain(s->c->tls, domain) != 0) {
		MET_INC(h->m, dialback_fail);
		log_warn(s->c->id, "s2s in: SASL EXTERNAL for %s refused: %s", domain[0] ? domain : "(none)",
			 tls_error(s->c->tls));
		sess_sendf(s, "<failure xmlns='" NS_SASL "'><not-authorized/></failure></stream:stream>");
		net_close(s->c, true);
		return;
	}
	bool bdom = cfg_backend_of(hub_cfg, domain) != NULL;
	if ((bdom || !hub_serves(s->local, strlen(s->local))) &&
	    !backend_claim_ok(domain, (const struct sockaddr *)&s->c->peer)) {
		/* backend_in.c: only a backend speaks for its domains, and a
		 * transit stream only for them */
		sess_stream_error(s, SERR_INVALID_FROM, "not a domain of a backend at this address");
		return;
	}
	if (!bdom && policy_inbound(domain, true, true) != POLICY_IN_OK) { /* router/policy.h */
		MET_INC(h->m, s2s_policy_refused);
		sess_stream_error(s, SERR_POLICY_VIOLATION, "remote domain refused by policy");
		return;
	}
	if (s->npairs >= S2S_MAX_PAIRS && !pair_find(s, domain, s->local)) {
		MET_INC(h->m, s2s_in_refused_pairs);
		sess_stream_error(s, SERR_POLICY_VIOLATION, "too many domain pairs on one stream");
		return;
	}
	struct pair *p = pair_add(s, domain, s->local);
	pair_set(s, p, PAIR_VALID);
	MET_INC(h->m, s2s_in_links);
	sess_met_up(h, s, MET_AUTH_SASL_EXTERNAL, domain);
	s->tok.authenticated = true;
	s->sasl_offered = false;
	log_info(s->c->id, "s2s in %s -> %s: authenticated (SASL EXTERNAL)", domain, s->local);
	sess_sendf(s, "<success xmlns='" NS_SASL "'/>");
	/* the restarted stream has a new id: a verification of a key made for
	 * the old one is not applied (dialback.c), so its pair starts over */
	for (int i = 0; s->npend && i < s->npairs; i++)
		if (s->pairs[i].state == PAIR_PENDING)
			pair_set(s, &s->pairs[i], PAIR_NONE);
	xml_tok_reset(&s->tok); /* RFC 6120 §6.4.6: the peer restarts the stream */
	s->tok.authenticated = true;
	s->state = SESS_WAIT_HDR;
}

static void in_db_result(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	char from[CFG_NAME_MAX], to[CFG_NAME_MAX];
	if (db_norm_attr(st->from, st->flags & XML_ST_FROM_ESC, from, sizeof(from)) < 0 ||
	    db_norm_attr(st->to, st->flags & XML_ST_TO_ESC, to, sizeof(to)) < 0) {
		sess_stream_error(s, SERR_IMPROPER_ADDRESSING, NULL);
		return;
	}
	bool bdom = cfg_backend_of(hub_cfg, from) != NULL;
	bool served = hub_serves(to, strlen(to));
	if ((bdom || (!served && s->bk_src)) && !backend_claim_ok(from, (const struct sockaddr *)&s->c->peer)) {
		/* RFC 6120 §4.9.3.10 (backend_in.c): a backend's domain claimed
		 * from elsewhere, or transit for a domain of no backend here */
		sess_stream_error(s, SERR_INVALID_FROM, "not a domain of a backend at this address");
		return;
	}
	if (!served && !bdom) {
		/* XEP-0220 §2.4.1: item-not-found for a domain we do not host */
		sess_sendf(s,
			   "<db:result from='%s' to='%s' type='error'><error type='cancel'>"
			   "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
			   to, from);
		return;
	}
	struct xml_span key = elem_text(st);
	if (!key.n) {
		sess_stream_error(s, SERR_BAD_FORMAT, "db:result without a key");
		return;
	}
	enum policy_in pin =
		bdom ? POLICY_IN_OK
		     : policy_inbound(from, s->tls_on, s->tls_on && tls_peer_verify_domain(s->c->tls, from) == 0);
	if (pin != POLICY_IN_OK) { /* router/policy.h */
		MET_INC(h->m, s2s_policy_refused);
		if (pin == POLICY_IN_REFUSED)
			sess_stream_error(s, SERR_POLICY_VIOLATION, "remote domain refused by policy");
		else /* XEP-0220 §2.4: a dialback error; the stream stays */
			sess_sendf(s,
				   "<db:result from='%s' to='%s' type='error'><error type='auth'><not-authorized "
				   "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
				   to, from);
		return;
	}
	struct pair *p = pair_find(s, from, to);
	if (p && p->state == PAIR_VALID) {
		MET_INC(h->m, s2s_in_db_duplicate);
		sess_sendf(s, "<db:result from='%s' to='%s' type='valid'/>", to, from);
		return;
	}
	if (p && p->state == PAIR_PENDING) {
		/* one verification per pair: its answer, when it comes, is the
		 * answer to every copy of the request */
		MET_INC(h->m, s2s_in_db_duplicate);
		return;
	}
	if (!guard_key_form_ok(key.p, key.n)) {
		/* The key goes verbatim into our <db:verify/> at a third server:
		 * only XEP-0185's form (hex, GUARD_KEY_MIN..MAX digits) is sent
		 * on. XEP-0220 §2.4 has no error condition for a malformed
		 * request, and such a key cannot verify: it gets the answer of a
		 * key that failed, type='invalid', which every peer understands
		 * (RFC 3920 ones too), without asking anyone. */
		MET_INC(h->m, s2s_in_refused_bad_key);
		log_info(s->c->id, "s2s in %s -> %s: dialback key not of the XEP-0185 form: refused", from, to);
		sess_sendf(s, "<db:result from='%s' to='%s' type='invalid'/>", to, from);
		return;
	}
	if (!p) {
		if (s->npairs >= S2S_MAX_PAIRS) {
			MET_INC(h->m, s2s_in_refused_pairs);
			sess_stream_error(s, SERR_POLICY_VIOLATION, "too many domain pairs on one stream");
			return;
		}
		p = pair_add(s, from, to);
	}
	if (p->state == PAIR_INVALID && p->retries++ >= DB_RETRY_MAX) {
		/* XEP-0220 §2.4: forbidden, the authoritative server said invalid */
		MET_INC(h->m, s2s_in_refused_retry);
		sess_sendf(s,
			   "<db:result from='%s' to='%s' type='error'><error type='cancel'>"
			   "<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
			   to, from);
		return;
	}
	if (s->tls_on && tls_peer_verify_domain(s->c->tls, from) == 0) {
		/* XEP-0344 §2.3: the certificate already proves the domain */
		pair_set(s, p, PAIR_VALID);
		MET_INC(h->m, dialback_ok);
		MET_INC(h->m, s2s_in_links);
		sess_met_up(h, s, MET_AUTH_XEP0344, from);
		s->tok.authenticated = true;
		log_info(s->c->id, "s2s in %s -> %s: authenticated (dialback, certificate trusted)", from, to);
		sess_sendf(s, "<db:result from='%s' to='%s' type='valid'/>", to, from);
		return;
	}
	bool stream_full = s->npend >= hub_cfg->max_verify_per_stream;
	if (stream_full || !guard_verify_acquire(hub_cfg->max_verify_total)) {
		/* a stanza error (RFC 6120 §8.3.3.18) in a dialback error: the
		 * peer may ask again once earlier verifications are done */
		if (stream_full)
			MET_INC(h->m, s2s_in_refused_verify_stream);
		else
			MET_INC(h->m, s2s_in_refused_verify_total);
		pair_set(s, p, PAIR_NONE);
		sess_sendf(s,
			   "<db:result from='%s' to='%s' type='error'><error type='wait'>"
			   "<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
			   to, from);
		return;
	}
	pair_set(s, p, PAIR_PENDING);
	db_verify_start(h, s, from, to, key); /* guard_verify_release() when it ends */
}

static void in_db_verify(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	char from[CFG_NAME_MAX], to[CFG_NAME_MAX], key[65];
	if (db_norm_attr(st->from, st->flags & XML_ST_FROM_ESC, from, sizeof(from)) < 0 ||
	    db_norm_attr(st->to, st->flags & XML_ST_TO_ESC, to, sizeof(to)) < 0 || !st->id.n) {
		sess_stream_error(s, SERR_IMPROPER_ADDRESSING, NULL);
		return;
	}
	char raw_id[128], id[128 * 6];
	int il = xml_attr_decode(st->id, raw_id, sizeof(raw_id) - 1);
	if (il < 0) {
		sess_stream_error(s, SERR_BAD_FORMAT, NULL);
		return;
	}
	raw_id[il] = 0;
	/* the key is computed over the decoded id; the answer echoes it
	 * escaped, or an id like "x' type='valid" would add attributes */
	int el = xml_escape(id, sizeof(id) - 1, raw_id, (size_t)il, true);
	if (el < 0) {
		sess_stream_error(s, SERR_BAD_FORMAT, NULL);
		return;
	}
	id[el] = 0;
	/* a backend asks about a key we gave it on an internal link for
	 * remote `to` (backend.c): we answer as `to`'s authoritative server */
	bool bk_ask = s->bk_src && backend_claim_ok(from, (const struct sockaddr *)&s->c->peer);
	if (!bk_ask && !hub_serves(to, strlen(to))) {
		sess_sendf(s,
			   "<db:verify from='%s' to='%s' id='%s' type='error'><error type='cancel'>"
			   "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>",
			   to, from, id);
		return;
	}
	/* we are the authoritative server: `from` received our key for `to` */
	dialback_key(from, to, raw_id, key);
	bool ok = db_key_ok(elem_text(st), key);
	sess_sendf(s, "<db:verify from='%s' to='%s' id='%s' type='%s'/>", to, from, id, ok ? "valid" : "invalid");
	(void)h;
}

static enum drive in_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	if (ev == XML_EV_STREAM_OPEN) {
		in_stream_open(h, s);
		return DRIVE_ON;
	}
	const struct xml_stanza *st = &s->tok.st;
	if (st->nsid == XML_NS_TLS && span_eq(st->name, "starttls")) {
		in_starttls(h, s);
		return DRIVE_STOP; /* what follows is TLS: net drops the clear bytes */
	}
	if (st->nsid == XML_NS_SASL && span_eq(st->name, "auth")) {
		in_sasl_auth(h, s, st);
		return DRIVE_ON;
	}
	if (!s->tls_on && s->tls_policy == CFG_TLS_REQUIRED && s->tls_offered) {
		/* RFC 6120 §5.3.1: STARTTLS is mandatory-to-negotiate here */
		sess_stream_error(s, SERR_POLICY_VIOLATION, "STARTTLS required");
		return DRIVE_ALL;
	}
	if (st->nsid == XML_NS_SERVER && st_routable(st)) {
		net_buf_ref(b); /* ours: b is what this worker received */
		route_stanza(h, s, b, st);
		if (s->shape) {
			if (shape_link_unbound(s->shape)) {
				for (int i = 0; i < s->npairs; i++) {
					if (s->pairs[i].state == PAIR_VALID) {
						shape_link_bind(s->shape, s->pairs[i].remote);
						break;
					}
				}
			}
			/* an empty bucket pauses reading: sess_drive stops here */
			shape_charge(s->shape, st->raw.n);
		}
	} else if (st->nsid == XML_NS_DIALBACK && span_eq(st->name, "result")) {
		in_db_result(h, s, st);
	} else if (st->nsid == XML_NS_DIALBACK && span_eq(st->name, "verify")) {
		in_db_verify(h, s, st);
	} else {
		sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
	}
	return DRIVE_ON;
}

/* The connection limits of guard.h, for c's source. Returns false (and has
 * refused the stream) when one is reached. */
static bool in_admit(struct hubw *h, struct sess *s)
{
	struct net_conn *c = s->c;
	s->admitted = true;
	if (backend_source((const struct sockaddr *)&c->peer)) {
		/* a backend opens a stream per remote domain it talks to, all
		 * from one address: the per-source limits are for strangers */
		s->guard_slot = UINT32_MAX;
		return true;
	}
	enum guard_verdict v = guard_conn_acquire((const struct sockaddr *)&c->peer, net_now_ms(), &s->guard_slot);
	if (v == GUARD_OK)
		return true;
	s->guard_slot = UINT32_MAX;
	static const char *const why[] = {
		[GUARD_TOTAL] = "max_connections",
		[GUARD_PER_IP] = "max_connections_per_ip",
		[GUARD_RATE] = "connection_rate_per_ip",
	};
	if (v == GUARD_TOTAL)
		MET_INC(h->m, s2s_in_refused_max_connections);
	else if (v == GUARD_PER_IP)
		MET_INC(h->m, s2s_in_refused_per_ip);
	else
		MET_INC(h->m, s2s_in_refused_rate);
	log_debug(c->id, "s2s in: refused (%s)", why[v]);
	if (s->direct_tls && !s->tls_on) {
		net_close(c, false); /* no TLS yet: nothing can be said */
		return false;
	}
	/* RFC 6120 §4.9.3.18 resource-constraint for the hub's own bound,
	 * §4.9.3.15 policy-violation for what this source did */
	sess_stream_error(s, v == GUARD_TOTAL ? SERR_RESOURCE_CONSTRAINT : SERR_POLICY_VIOLATION,
			  v == GUARD_TOTAL ? "too many connections" : "too many connections from your address");
	return false;
}

/* Behind a balancer the real source is known once the PROXY header is read:
 * the limits are checked then, before a TLS handshake on s2s-tls. */
static void in_on_peer(struct net_conn *c)
{
	struct sess *s = c->user;
	if (!s->admitted)
		in_admit(hubw_of(c->w), s);
}

static size_t in_on_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (!s->admitted && !in_admit(h, s)) /* in_on_peer() did not run */
		return n;
	size_t used = sess_drive(s, b, p, n, in_event);
	if (!s->tok.authenticated && !(c->flags & (NET_F_CLOSED | NET_F_CLOSING))) {
		s->preauth_bytes += (uint32_t)used;
		if (s->preauth_bytes > hub_cfg->max_preauth_bytes) {
			MET_INC(h->m, s2s_in_refused_preauth_bytes);
			sess_stream_error(s, SERR_POLICY_VIOLATION, "too many bytes before authentication");
			return n;
		}
	}
	return used;
}

static void in_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	guard_conn_release(s->guard_slot);
	shape_link_free(s->shape);
	s->shape = NULL;
	MET_INC(hubw_of(c->w)->m, conn_closed); /* the pair of main.c's conn_accepted */
	sess_log_enter(s);
	log_info(c->id, "s2s in closed: %s", err ? strerror(-err) : "by us or the peer");
	sess_free(s);
}

static void in_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	sess_log_enter(s);
	uint64_t now = net_now_ms();
	bool authed = s->nvalid > 0;
	if (!authed) {
		/* preauth_timeout counts from accept: pending pairs and
		 * whitespace do not extend it */
		MET_INC(hubw_of(c->w)->m, s2s_in_refused_preauth_timeout);
		sess_stream_error(s, SERR_CONNECTION_TIMEOUT, "no authentication in time");
		return;
	}
	/* quiet because flow control stopped reading it: not idle */
	if (s->paused_by)
		c->last_rx = now;
	if (now - c->last_rx >= (uint64_t)hub_cfg->idle_timeout * 1000 && !shape_paused(s->shape)) {
		sess_stream_error(s, SERR_CONNECTION_TIMEOUT, NULL);
		return;
	}
	uint64_t at = c->last_rx + (uint64_t)hub_cfg->idle_timeout * 1000;
	net_conn_set_deadline(c, at > now ? at : now + 1000);
}

static void in_on_tls(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	sess_log_enter(s);
	struct hubw *h = hubw_of(c->w);
	if (err) {
		MET_INC(h->m, tls_failures);
		log_warn(c->id, "s2s in: TLS failed: %s", c->tls ? tls_error(c->tls) : tls_strerror(err));
		return;
	}
	MET_INC(h->m, tls_handshakes);
	if (tls_resumed(c->tls))
		MET_INC(h->m, tls_resumptions);
	s->tls_on = true;
	s->tls_offered = false;
	log_info(c->id, "s2s in: %s %s%s, SNI %s", tls_version(c->tls), tls_cipher(c->tls),
		 tls_resumed(c->tls) ? " (resumed)" : "", tls_sni(c->tls) ? tls_sni(c->tls) : "(none)");
	/* RFC 6120 §5.4.3.3: forget everything learnt before TLS: the parser
	 * (net dropped the bytes), the pairs (a verification still out for one
	 * was for the old stream id and is not applied), the peer's name, SASL */
	xml_tok_reset(&s->tok);
	if (s->tok.authenticated) /* the pre-auth deadline had given way to the idle one */
		net_conn_set_deadline(c, net_now_ms() + (uint64_t)hub_cfg->preauth_timeout * 1000);
	s->tok.authenticated = false;
	pairs_clear(s);
	free(s->remote);
	s->remote = NULL;
	s->sasl_offered = false;
	s->state = SESS_WAIT_HDR;
}

const struct net_conn_ops s2s_in_ops = {
	.on_data = in_on_data,
	.on_tls = in_on_tls,
	.on_close = in_on_close,
	.on_timer = in_on_timer,
	.on_peer = in_on_peer,
};

void s2s_accept(struct net_conn *c, const struct cfg_listen *l)
{
	struct sess *s = sess_new(SESS_S2S_IN);
	s->c = c;
	met_conn_open(hubw_of(c->w)->m, &s->ml, MET_DIR_IN);
	c->ops = &s2s_in_ops;
	c->user = s;
	s->guard_slot = UINT32_MAX;
	s->shape = shape_link_new(c);
	s->tls_policy = (uint8_t)(hub_tls ? l->tls : CFG_TLS_OFF);
	s->direct_tls = l->kind == CFG_LISTEN_S2S_TLS && hub_tls;
	net_conn_set_deadline(c, net_now_ms() + (uint64_t)hub_cfg->preauth_timeout * 1000);
	/* behind a balancer: once the PROXY header names the source (in_on_peer) */
	if (!(c->flags & NET_F_PROXY) && !in_admit(hubw_of(c->w), s))
		return;
	if (l->kind == CFG_LISTEN_S2S_TLS && hub_tls) {
		/* XEP-0368: TLS from the first byte */
		s->direct_tls = true;
		struct tls_conn *t = tls_conn_new(hub_tls, true, NULL, NULL);
		if (t)
			net_start_tls(c, t, false);
		else
			net_close(c, false);
	}
}

void s2s_in_init(void)
{
	struct guard_limits l = {
		.max_conns = hub_cfg->max_connections,
		.max_conns_per_ip = hub_cfg->max_connections_per_ip,
		.rate_per_ip = hub_cfg->connection_rate_per_ip,
	};
	guard_init(&l);
	if (hub_cfg->nproxy_from)
		proxy_set_trusted(hub_cfg->proxy_from, hub_cfg->nproxy_from);
	/* the tickets we issue: under the cluster's shared keys once Redis has
	 * given them (any node resumes them), local ones before and without */
	tls_ticket_source(clu_ticket_keys);
}
