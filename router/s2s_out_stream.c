/*
 * router/s2s_out_stream.c — the stream on an outbound link's connection
 * (router/s2s_out.c holds the links): the header we open, the peer's
 * features, STARTTLS, SASL EXTERNAL (XEP-0178), the answers to our
 * dialback requests (XEP-0220) and the stanzas a bidirectional peer
 * (XEP-0288) sends back.
 *
 * Stream features are parsed as XML (children and their namespaces), not
 * searched as bytes: a value like from='EXTERNAL' or an element in another
 * namespace offers nothing. The tree is built once per stream, never on the
 * stanza path. What the peer is allowed is the remote's policy (policy.h):
 * `auth certificate` refuses a stream whose certificate does not name the
 * remote before anything is sent on it, and TLS required refuses a pre-1.0
 * stream header (which cannot offer STARTTLS) on a cleartext stream.
 * Reverse stanzas are taken only when the peer's certificate names the
 * remote: dialback authenticates us to the peer, never the peer to us.
 */
#include <stdlib.h>
#include <string.h>
#include <mxml.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>

#include "router/s2s-t.h"
#include "router/policy.h"
#include "net/alloc.h"
#include "net/log.h"
#include "net/tls.h"

#define NS_BIDI_FEAT "urn:xmpp:features:bidi"
#define NS_DB_FEAT   "urn:xmpp:features:dialback"
#define NS_LIMITS    "urn:xmpp:stream-limits:0"
#define NS_STANZAS   "urn:ietf:params:xml:ns:xmpp-stanzas"

void s2s_out_open_stream(struct sess *s)
{
	sess_sendf(s,
		   "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " STREAM_NS
		   " xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>",
		   s->local, s->remote);
}

/* The namespace of element n: its prefix's (or the default) declaration on
 * it or an ancestor inside the features element; above that, the stream
 * header's: jabber:server by default, `stream` and `db` as declared there. */
static const char *node_ns(mxml_node_t *n, const char **local)
{
	const char *name = mxmlGetElement(n);
	const char *colon = strchr(name, ':');
	char attr[96];
	if (colon && (size_t)(colon - name) < sizeof(attr) - 7)
		snprintf(attr, sizeof(attr), "xmlns:%.*s", (int)(colon - name), name);
	else
		snprintf(attr, sizeof(attr), "xmlns");
	*local = colon ? colon + 1 : name;
	for (mxml_node_t *a = n; a && mxmlGetType(a) == MXML_ELEMENT; a = mxmlGetParent(a)) {
		const char *v = mxmlElementGetAttr(a, attr);
		if (v)
			return v;
	}
	if (!colon)
		return "jabber:server";
	if (!strncmp(name, "stream:", 7))
		return "http://etherx.jabber.org/streams";
	if (!strncmp(name, "db:", 3))
		return "jabber:server:dialback";
	return "";
}

static bool is_elem(mxml_node_t *n, const char *ns, const char *name)
{
	const char *local;
	if (mxmlGetType(n) != MXML_ELEMENT)
		return false;
	const char *nns = node_ns(n, &local);
	return !strcmp(nns, ns) && !strcmp(local, name);
}

/* The character data of a simple element, trimmed, into out. */
static void node_text(mxml_node_t *n, char *out, size_t cap)
{
	size_t k = 0;
	for (mxml_node_t *t = mxmlGetFirstChild(n); t; t = mxmlGetNextSibling(t)) {
		const char *o = mxmlGetType(t) == MXML_OPAQUE ? mxmlGetOpaque(t) : NULL;
		for (; o && *o && k + 1 < cap; o++)
			if (*o != ' ' && *o != '\t' && *o != '\r' && *o != '\n')
				out[k++] = *o;
	}
	out[k] = 0;
}

/* A tree of the features element (validated bytes; once per stream, never
 * on the stanza path), with character data kept as it is. */
static mxml_node_t *features_tree(struct xml_span raw)
{
	char *s = xstrndup(raw.p, raw.n);
	mxml_node_t *n = mxmlLoadString(NULL, s, MXML_OPAQUE_CALLBACK);
	free(s);
	return n;
}

int s2s_features_parse(struct xml_span raw, struct feats *f)
{
	memset(f, 0, sizeof(*f));
	mxml_node_t *tree = features_tree(raw);
	if (!tree)
		return -1;
	mxml_node_t *top = mxmlGetType(tree) == MXML_ELEMENT ? tree : mxmlGetFirstChild(tree);
	while (top && mxmlGetType(top) != MXML_ELEMENT)
		top = mxmlGetNextSibling(top);
	for (mxml_node_t *c = top ? mxmlGetFirstChild(top) : NULL; c; c = mxmlGetNextSibling(c)) {
		if (is_elem(c, NS_TLS, "starttls")) {
			f->starttls = true;
			for (mxml_node_t *g = mxmlGetFirstChild(c); g; g = mxmlGetNextSibling(g))
				if (is_elem(g, NS_TLS, "required"))
					f->starttls_required = true;
		} else if (is_elem(c, NS_SASL, "mechanisms")) {
			for (mxml_node_t *g = mxmlGetFirstChild(c); g; g = mxmlGetNextSibling(g)) {
				char mech[32];
				if (!is_elem(g, NS_SASL, "mechanism"))
					continue;
				node_text(g, mech, sizeof(mech));
				if (!strcmp(mech, "EXTERNAL"))
					f->sasl_external = true;
			}
		} else if (is_elem(c, NS_DB_FEAT, "dialback")) {
			f->dialback = true;
		} else if (is_elem(c, NS_BIDI_FEAT, "bidi")) {
			f->bidi = true;
		} else if (is_elem(c, NS_LIMITS, "limits")) {
			for (mxml_node_t *g = mxmlGetFirstChild(c); g; g = mxmlGetNextSibling(g)) {
				char num[16];
				if (!is_elem(g, NS_LIMITS, "max-bytes"))
					continue;
				node_text(g, num, sizeof(num));
				char *end;
				unsigned long v = strtoul(num, &end, 10);
				if (num[0] >= '0' && num[0] <= '9' && !*end && v > 0 && v <= UINT32_MAX)
					f->max_bytes = (uint32_t)v;
			}
		}
	}
	mxmlDelete(tree);
	return 0;
}

static void out_features(struct hubw *h, struct sess *s, const struct feats *f)
{
	s->got_features = true;
	struct s2s_out *L = s->link;
	if (!s->tls_on) {
		if (f->starttls && s->tls_policy != CFG_TLS_OFF) {
			/* RFC 6120 §5.4.2.1 */
			sess_sendf(s, "<starttls xmlns='" NS_TLS "'/>");
			s->starttls_sent = true;
			return;
		}
		if (s->tls_policy == CFG_TLS_REQUIRED) {
			log_warn(s->c->id, "s2s out %s: peer offers no STARTTLS and TLS is required", s->remote);
			s2s_out_give_up(h, s, "TLS required, not offered");
			return;
		}
		/* RFC 6120 §5.3.1: STARTTLS marked <required/> cannot be skipped. */
		if (f->starttls_required) {
			log_warn(s->c->id, "s2s out %s: peer requires STARTTLS and TLS is off here", s->remote);
			s2s_out_give_up(h, s, "peer requires TLS");
			return;
		}
	}
	if (!L)
		return;
	L->state = L_OPEN;
	if (f->max_bytes) {
		/* XEP-0478: the peer closes a stream that sends it more */
		L->peer_max = f->max_bytes;
		log_debug(s->c->id, "s2s out %s: peer takes stanzas of up to %u bytes", s->remote, f->max_bytes);
	}
	/* XEP-0288: ask for a bidirectional stream before authenticating, so
	 * the peer sends its stanzas for us over this link too; only of a peer
	 * whose certificate proves its domain, since nothing else on this
	 * stream authenticates the peer to us */
	if (!s->bidi && f->bidi && L->peer_cert_ok) {
		sess_sendf(s, "<bidi xmlns='urn:xmpp:bidi'/>");
		s->bidi = true;
		log_debug(s->c->id, "s2s out %s: bidirectional (XEP-0288)", s->remote);
	}
	/* servers that predate the dialback feature still do dialback; one
	 * that offers SASL EXTERNAL and not dialback does not (and after SASL
	 * the restarted stream's features name neither) */
	if (f->dialback)
		L->peer_dialback = true;
	else if (s->tls_on && f->sasl_external)
		L->peer_dialback = false;
	/* XEP-0178: SASL EXTERNAL for the first local domain our certificate covers,
	 * when the peer's certificate is good too (it will check ours). */
	if (s->tls_on && !s->sasl_domain && !s->sasl_sent && f->sasl_external) {
		for (int i = 0; i < L->nlp; i++) {
			if (L->lp[i].state != PAIR_NONE || !tls_ctx_has_name(hub_tls, L->lp[i].local))
				continue;
			byte b64[CFG_NAME_MAX * 2];
			word32 bl = sizeof(b64);
			const char *d = L->lp[i].local;
			if (Base64_Encode_NoNl((const byte *)d, (word32)strlen(d), b64, &bl) != 0)
				break;
			sess_sendf(s, "<auth xmlns='" NS_SASL "' mechanism='EXTERNAL'>%.*s</auth>", (int)bl, b64);
			s->sasl_sent = true;
			s->sasl_domain = xstrdup(d);
			lp_set(L, &L->lp[i], PAIR_PENDING);
			return; /* dialback for the others once SASL is done */
		}
	}
	s2s_out_start_dialback(h, L);
}

static void out_sasl_result(struct hubw *h, struct sess *s, bool ok)
{
	struct s2s_out *L = s->link;
	s->sasl_sent = false;
	struct lpair *p = L && s->sasl_domain ? s2s_out_pair_find(L, s->sasl_domain) : NULL;
	if (ok) {
		/* RFC 6120 §6.4.6: the stream restarts */
		log_info(s->c->id, "s2s out %s -> %s: authenticated (SASL EXTERNAL)", s->sasl_domain, s->remote);
		MET_INC(h->m, s2s_out_links);
		sess_met_up(h, s, MET_AUTH_SASL_EXTERNAL, s->remote);
		xml_tok_reset(&s->tok);
		s->got_features = false;
		free(s->local);
		s->local = xstrdup(s->sasl_domain);
		s2s_out_open_stream(s);
		if (p) {
			lp_set(L, p, PAIR_VALID);
			s2s_out_pair_flush(h, L, p);
		}
	} else {
		log_info(s->c->id, "s2s out %s: SASL EXTERNAL refused, using dialback", s->remote);
		free(s->sasl_domain);
		s->sasl_domain = xstrdup(""); /* do not try again on this stream */
		if (p)
			lp_set(L, p, PAIR_NONE);
		if (L)
			s2s_out_start_dialback(h, L);
	}
}

/* A <db:result/> on our outbound stream: the answer to one we sent
 * (XEP-0220 §2.1.3), from the remote to one of our pending local domains.
 * Without a type it is the peer asking us to verify it (reverse dialback
 * over a bidirectional link), which this hub does not do: it gets a
 * dialback error and changes nothing. */
static void out_db_result(struct hubw *h, struct sess *s, const struct xml_stanza *st)
{
	struct s2s_out *L = s->link;
	char local[CFG_NAME_MAX], from[CFG_NAME_MAX];
	if (!L)
		return;
	if (db_result_addrs(s, st, from, local) < 0)
		return;
	if (strcmp(from, L->remote) != 0) {
		/* only the domain we connected to answers for itself here */
		log_warn(s->c->id, "s2s out %s: db:result from %s refused", L->remote, from);
		sess_stream_error(s, SERR_INVALID_FROM, NULL);
		return;
	}
	if (!st->type.n) {
		sess_sendf(s,
			   "<db:result from='%s' to='%s' type='error'><error type='cancel'>"
			   "<feature-not-implemented xmlns='" NS_STANZAS "'/>"
			   "<text xmlns='" NS_STANZAS "'>no dialback toward the initiator on this stream</text>"
			   "</error></db:result>",
			   local, from);
		return;
	}
	bool valid = span_eq(st->type, "valid");
	if (!valid && !span_eq(st->type, "invalid") && !span_eq(st->type, "error")) {
		sess_stream_error(s, SERR_BAD_FORMAT, "db:result type is valid, invalid or error");
		return;
	}
	struct lpair *p = s2s_out_pair_find(L, local);
	if (!p || p->state != PAIR_PENDING)
		return; /* nothing asked: an answer to no question changes nothing */
	if (valid) {
		lp_set(L, p, PAIR_VALID);
		MET_INC(h->m, s2s_out_links);
		sess_met_up(h, s, MET_AUTH_DIALBACK, L->remote);
		log_info(s->c->id, "s2s out %s -> %s: authenticated (dialback)", p->local, L->remote);
		s2s_out_pair_flush(h, L, p);
	} else {
		log_warn(s->c->id, "s2s out %s -> %s: dialback refused (%.*s)", p->local, L->remote, (int)st->type.n,
			 st->type.p);
		lp_set(L, p, PAIR_INVALID);
		p->since = net_now_ms();
		s2s_out_pair_bounce(h, L, p, STERR_REMOTE_SERVER_NOT_FOUND);
	}
}

enum drive s2s_out_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	if (ev == XML_EV_STREAM_OPEN) {
		const struct xml_stream_hdr *hd = &s->tok.hdr;
		int k = hd->id.n ? xml_attr_decode(hd->id, s->stream_id, sizeof(s->stream_id) - 1) : -1;
		if (k <= 0) {
			/* the id is part of the dialback key: it must be whole */
			sess_stream_error(s, SERR_BAD_FORMAT, "missing or oversized stream id");
			return DRIVE_ALL;
		}
		s->stream_id[k] = 0;
		s->state = SESS_OPEN;
		s->peer_v1 = span_eq(hd->version, "1.0");
		if (s->tls_on && s->link && !s->link->peer_cert_ok &&
		    policy_for(s->remote).auth == CFG_AUTH_CERTIFICATE) {
			/* RFC 6125 §6.6.4, RFC 6120 §13.7.2: not the server we meant
			 * to reach; nothing goes to it (on_close tries the next
			 * address, then bounces) */
			MET_INC(h->m, s2s_policy_refused);
			log_warn(s->c->id, "s2s out %s: certificate does not authenticate the domain; auth certificate",
				 s->remote);
			sess_stream_error(s, SERR_POLICY_VIOLATION, "certificate does not authenticate the domain");
			return DRIVE_ALL;
		}
		if (!s->peer_v1 && !s->tls_on && s->tls_policy == CFG_TLS_REQUIRED) {
			/* RFC 6120 §4.7.5, §5.3.1: a pre-1.0 stream cannot offer
			 * STARTTLS; nothing (no dialback key) goes out in the clear */
			log_warn(s->c->id, "s2s out %s: pre-1.0 stream and TLS is required", s->remote);
			sess_stream_error(s, SERR_UNSUPPORTED_VERSION, "TLS is required");
			return DRIVE_ALL;
		}
		if (!s->peer_v1) { /* no features will come (RFC 3920 peers) */
			struct feats none = {0};
			out_features(h, s, &none);
		}
		return DRIVE_ON;
	}
	const struct xml_stanza *st = &s->tok.st;
	if (st->nsid == XML_NS_STREAMS && span_eq(st->name, "features")) {
		struct feats f;
		if (s->got_features) {
			/* one features element per stream (RFC 6120 §4.3.2) */
		} else if (s2s_features_parse(st->raw, &f) < 0) {
			sess_stream_error(s, SERR_BAD_FORMAT, "stream features could not be read");
			return DRIVE_ALL;
		} else {
			out_features(h, s, &f);
		}
	} else if (st->nsid == XML_NS_DIALBACK && span_eq(st->name, "result")) {
		out_db_result(h, s, st);
	} else if (st->nsid == XML_NS_TLS && s->starttls_sent) {
		s->starttls_sent = false;
		struct tls_conn *t =
			span_eq(st->name, "proceed") ? tls_conn_new(hub_tls, false, s->remote, s->local) : NULL;
		if (!t) {
			s2s_out_give_up(h, s, "STARTTLS refused or failed");
			return DRIVE_ALL;
		}
		net_start_tls(s->c, t, true);
		return DRIVE_STOP; /* nothing may follow <proceed/> in the clear: net drops it */
	} else if (st->nsid == XML_NS_SASL && s->sasl_sent) {
		/* on success the tokenizer starts over: the peer's new header follows */
		out_sasl_result(h, s, span_eq(st->name, "success"));
	} else if (st->nsid == XML_NS_SERVER && st_routable(st)) {
		if (!s->bidi || !s->link || !s->link->peer_cert_ok) {
			/* XEP-0288: reverse stanzas only on a link we asked to be
			 * bidirectional, from a peer whose certificate names it */
			MET_INC(h->m, s2s_policy_refused);
			sess_stream_error(s, SERR_NOT_AUTHORIZED, "the peer is not authenticated on this stream");
			return DRIVE_ALL;
		}
		net_buf_ref(b);
		route_stanza(h, s, b, st);
	}
	/* anything else on our outbound stream is ignored */
	return DRIVE_ON;
}
