/*
 * bench/stream.c — the XMPP side of the load generator: streams, dialback, TLS.
 *
 * Roles of a connection:
 *   S2S_OUT  the bench as a remote server dialling the target's s2s port:
 *            stream header, then one <db:result/> per bench domain piggybacked
 *            on the link (XEP-0220 §2.1, keys per XEP-0185), ready once the
 *            target says type='valid' for all of them. In s2s-backend the
 *            bench also plays the backend behind the target: as many links
 *            again, each a stream from --backend-domain to one remote bench
 *            domain, to the target's s2s port (which takes it from a
 *            backend's address and sends it on out); its one <db:result/>
 *            the target verifies by asking the bench's listener (S2S_IN).
 *   S2S_IN   the target dialling the bench, which is the authoritative server
 *            of its domains: it answers <db:verify/> by recomputing the key
 *            (valid only if it matches), accepts the target's own <db:result/>
 *            on that stream (both ends are on loopback and the bench is not
 *            the system under test), and receives stanzas: echo replies,
 *            component-to-s2s traffic, bounces. In s2s-backend the same
 *            listener is the backend: the target's internal links (stream
 *            from a remote domain to --backend-domain) and its outbound
 *            links to the remote domains both land here.
 *   COMP     an XEP-0114 component: handshake = hex(SHA-1(stream id + secret)).
 *   RELAY_IN HAProxy mode: the far end of a plain TCP relay; no XMPP peer
 *            answers, the bench only frames and accounts what arrives.
 *
 * TLS (--tls). Every s2s link, in both directions, runs STARTTLS (RFC 6120
 * §5) after the first stream features, through fedhub's own engine
 * (net/tls.h: memory buffers, no socket inside): received ciphertext goes
 * to tls_feed() and the plaintext from tls_read() into the same parser as a
 * plain link; plaintext written by the protocol code is encrypted with one
 * tls_write() per flush (many stanzas per record) and the ciphertext is
 * copied out of the engine before it is sent, since the engine may move its
 * buffer while a send is in flight. On its own links the bench then asks
 * for SASL EXTERNAL (XEP-0178) for its first domain when the target offers
 * it, and uses dialback for the domains piggybacked after it (which a
 * target implementing XEP-0344 validates from the certificate). On the
 * target's links to the bench, the bench offers STARTTLS (required), then
 * EXTERNAL when the target's certificate proves the stream's `from`.
 * Certificates: bench/peers/mkcerts.sh (one CA, a *.fhb leaf for the bench).
 *
 * What the bench sends and how it counts what arrives: bench/traffic.c.
 * The XML framing both use: bench/bx.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <liburing.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/sha.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include "bench/engine-int.h"
#include "bench/bx.h"

/* ---- crypto ---------------------------------------------------------------- */

static void be_hex(const unsigned char *b, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[b[i] >> 4];
		out[2 * i + 1] = hx[b[i] & 15];
	}
	out[2 * n] = 0;
}

void bench_db_key(const char *secret, const char *recv, const char *orig, const char *stream_id, char out[65])
{
	unsigned char d[WC_SHA256_DIGEST_SIZE];
	char khex[2 * WC_SHA256_DIGEST_SIZE + 1], text[1024];
	wc_Sha256Hash((const byte *)secret, (word32)strlen(secret), d);
	be_hex(d, sizeof d, khex);
	int n = snprintf(text, sizeof text, "%s %s %s", recv, orig, stream_id);
	Hmac h;
	wc_HmacInit(&h, NULL, INVALID_DEVID);
	wc_HmacSetKey(&h, WC_SHA256, (const byte *)khex, (word32)strlen(khex));
	wc_HmacUpdate(&h, (const byte *)text, (word32)n);
	wc_HmacFinal(&h, d);
	wc_HmacFree(&h);
	be_hex(d, sizeof d, out);
}

void bench_comp_handshake(const char *stream_id, const char *secret, char out[41])
{
	wc_Sha s;
	unsigned char d[WC_SHA_DIGEST_SIZE];
	wc_InitSha(&s);
	wc_ShaUpdate(&s, (const byte *)stream_id, (word32)strlen(stream_id));
	wc_ShaUpdate(&s, (const byte *)secret, (word32)strlen(secret));
	wc_ShaFinal(&s, d);
	wc_ShaFree(&s);
	be_hex(d, sizeof d, out);
}

/* ---- protocol ------------------------------------------------------------------ */

const char *be_stream_ns_db = "xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
			      "xmlns:db='jabber:server:dialback'";

void be_setup_done(struct eng *e, struct bconn *c)
{
	if (!c->counted_setup) {
		c->counted_setup = true;
		e->setups_pending--;
		if (c->role == BC_S2S_OUT)
			e->r->links_up++;
		else
			e->r->comps_up++;
	}
}

/* The component domain a bench domain's flow sends to when that is not
 * the stream's to (--comp-domain a,b,...): dialback pairs are per (remote,
 * local) domain (XEP-0220 §2), so the link authenticates that pair too. */
static const char *be_extra_local(const struct eng *e, int dom)
{
	const char *cd = e->o->comp_domains[dom % (e->o->ncomp_domains ? e->o->ncomp_domains : 1)];
	return strcmp(cd, e->o->target_domain) ? cd : NULL;
}

/* Pairs a link authenticates: one per domain, the extra ones above, and
 * --fault bounce-one's. */
static int be_auth_want(const struct eng *e, const struct bconn *c)
{
	if (c->backend)
		return 1;
	int n = c->ndom + (e->o->fault == BF_BOUNCE_ONE);
	for (int i = 0; i < c->ndom; i++)
		n += be_extra_local(e, c->dom_first + i) != NULL;
	return n;
}

/* Dialback for the link's domains from index `first` on (the ones before
 * it are authenticated already, by SASL EXTERNAL). */
static void be_s2s_out_results(struct eng *e, struct bconn *c, int first)
{
	if (c->backend) {
		/* the backend's one pair: its domain to the stream's remote domain */
		char d[256], key[65];
		be_domain(e, c->remote_dom, d, sizeof d);
		bench_db_key(e->o->db_secret, d, e->o->backend_domain, c->stream_id, key);
		be_writef(e, c, "<db:result from='%s' to='%s'>%s</db:result>", e->o->backend_domain, d, key);
		c->state = BC_AUTH;
		return;
	}
	for (int i = first; i < c->ndom; i++) {
		char d[256], key[65];
		be_domain(e, c->dom_first + i, d, sizeof d);
		bench_db_key(e->o->db_secret, e->o->target_domain, d, c->stream_id, key);
		be_writef(e, c, "<db:result from='%s' to='%s'>%s</db:result>", d, e->o->target_domain, key);
	}
	for (int i = 0; i < c->ndom; i++) {
		const char *local = be_extra_local(e, c->dom_first + i);
		char d[256], key[65];
		if (!local)
			continue;
		be_domain(e, c->dom_first + i, d, sizeof d);
		bench_db_key(e->o->db_secret, local, d, c->stream_id, key);
		be_writef(e, c, "<db:result from='%s' to='%s'>%s</db:result>", d, local, key);
	}
	if (e->o->fault == BF_BOUNCE_ONE) {
		/* the bounce-one stanza goes from the first domain to another local
		 * domain of the target: that pair must be authenticated too */
		char d[256], key[65];
		be_domain(e, c->dom_first, d, sizeof d);
		bench_db_key(e->o->db_secret, e->o->bounce_domain, d, c->stream_id, key);
		be_writef(e, c, "<db:result from='%s' to='%s'>%s</db:result>", d, e->o->bounce_domain, key);
	}
	c->state = BC_AUTH;
	if (c->ndom_valid >= be_auth_want(e, c)) {
		c->state = BC_READY;
		be_setup_done(e, c);
	}
}

void be_s2s_out_header(struct eng *e, struct bconn *c)
{
	char d[256];
	be_domain(e, c->dom_first, d, sizeof d);
	if (c->backend) /* the backend's stream to a remote domain, through the target */
		be_writef(e, c, "<?xml version='1.0'?><stream:stream %s from='%s' to='%s' version='1.0'>",
			  be_stream_ns_db, e->o->backend_domain, d);
	else
		be_writef(e, c, "<?xml version='1.0'?><stream:stream %s from='%s' to='%s' version='1.0'>",
			  be_stream_ns_db, d, e->o->target_domain);
}

/* The handshake finished: check the peer, restart the stream (RFC 6120 §5.4.3.3). */
static void be_on_tls_ready(struct eng *e, struct bconn *c)
{
	if (!e->r->tls_info[0])
		snprintf(e->r->tls_info, sizeof e->r->tls_info, "%s %s", tls_version(c->tls), tls_cipher(c->tls));
	c->depth = 0;
	if (c->role == BC_S2S_OUT) {
		int v = tls_peer_verify_domain(c->tls, e->o->target_domain);
		if (v != 0) {
			be_error(e, "connection %d: the target's certificate does not prove %s: %s (%s)", c->idx,
				 e->o->target_domain, tls_strerror(v), tls_error(c->tls));
			be_close(e, c, NULL);
			return;
		}
		e->r->tls_out++;
		c->want_features = false;
		be_s2s_out_header(e, c);
	} else {
		e->r->tls_in++;
	}
}

static void be_on_header(struct eng *e, struct bconn *c, const char *tag, size_t tl)
{
	struct bx_span v;
	if (bx_attr(tag, tl, "id", &v))
		bx_cstr(v, c->stream_id, sizeof c->stream_id);
	if (c->role == BC_S2S_OUT) {
		/* RFC 6120 streams announce features first; a pre-1.0 peer does not */
		c->want_features = bx_attr(tag, tl, "version", &v) && bx_eq(v, "1.0");
		if (!c->want_features && e->o->tls) {
			be_error(e, "connection %d: the target's stream is not version 1.0: no STARTTLS", c->idx);
			be_close(e, c, NULL);
		} else if (!c->want_features) {
			be_s2s_out_results(e, c, 0);
		}
	} else if (c->role == BC_S2S_IN) {
		struct bx_span from = {"", 0}, to = {"", 0};
		bx_attr(tag, tl, "from", &from);
		bx_attr(tag, tl, "to", &to);
		bool v1 = bx_attr(tag, tl, "version", &v) && bx_eq(v, "1.0");
		bx_cstr(from, c->peer, sizeof c->peer);
		snprintf(c->stream_id, sizeof c->stream_id, "fhb%lx%x", (unsigned long)be_rand(e), c->idx);
		be_writef(e, c, "<?xml version='1.0'?><stream:stream %s id='%s' from='%.*s'%s%.*s%s%s>",
			  be_stream_ns_db, c->stream_id, (int)to.n, to.p, from.n ? " to='" : "", (int)from.n, from.p,
			  from.n ? "'" : "", v1 ? " version='1.0'" : "");
		if (v1 && e->o->tls && !c->tls) {
			/* RFC 6120 §5.3.1: mandatory-to-negotiate, offered alone */
			be_writef(e, c,
				  "<stream:features><starttls xmlns='" NS_TLS "'><required/></starttls>"
				  "</stream:features>");
		} else if (v1) {
			/* XEP-0178: EXTERNAL once the certificate proves the stream's from */
			bool ext = c->tls_done && !c->sasl_ok && c->peer[0] &&
				   tls_peer_verify_domain(c->tls, c->peer) == 0;
			be_writef(e, c,
				  "<stream:features>%s<dialback xmlns='urn:xmpp:features:dialback'>"
				  "<errors/></dialback></stream:features>",
				  ext ? "<mechanisms xmlns='" NS_SASL "'><mechanism>EXTERNAL</mechanism></mechanisms>"
				      : "");
		}
		c->state = BC_READY;
	} else if (c->role == BC_COMP) {
		char hs[41];
		bench_comp_handshake(c->stream_id, e->o->comp_secret, hs);
		be_writef(e, c, "<handshake>%s</handshake>", hs);
		c->state = BC_AUTH;
	}
}

/* Component: send back what arrived, addresses swapped (echo scenario). */
static void be_echo(struct eng *e, struct bconn *c, const char *el, size_t n, size_t tl, struct bx_span name)
{
	struct bx_span from, to, id, type;
	if (!bx_attr(el, tl, "from", &from) || !bx_attr(el, tl, "to", &to) || !bx_attr(el, tl, "id", &id))
		return;
	bool has_type = bx_attr(el, tl, "type", &type);
	if (has_type && bx_eq(type, "error"))
		return; /* never answer an error */
	if (bx_eq(name, "iq")) {
		be_writef(e, c, "<iq type='result' from='%.*s' to='%.*s' id='%.*s'/>", (int)to.n, to.p, (int)from.n,
			  from.p, (int)id.n, id.p);
		return;
	}
	be_writef(e, c, "<%.*s from='%.*s' to='%.*s' id='%.*s'%s%.*s%s%s", (int)name.n, name.p, (int)to.n, to.p,
		  (int)from.n, from.p, (int)id.n, id.p, has_type ? " type='" : "", has_type ? (int)type.n : 0,
		  has_type ? type.p : "", has_type ? "'" : "", el[tl - 2] == '/' ? "/>" : ">");
	if (el[tl - 2] != '/')
		be_write(e, c, el + tl, n - tl); /* children and end tag as received */
}

/* S2S_OUT: the target's features. With --tls: STARTTLS first, then SASL
 * EXTERNAL for the link's first domain when offered, dialback for the rest. */
static void be_s2s_out_features(struct eng *e, struct bconn *c, const char *el, size_t n)
{
	if (e->o->tls && !c->tls) {
		if (!memmem(el, n, NS_TLS, strlen(NS_TLS))) {
			be_error(e, "connection %d: --tls, but the target offers no STARTTLS", c->idx);
			be_close(e, c, NULL);
			return;
		}
		be_writef(e, c, "<starttls xmlns='" NS_TLS "'/>");
		c->starttls_sent = true;
		return;
	}
	if (c->sasl_ok) { /* the stream restarted after SASL: the other domains */
		be_s2s_out_results(e, c, 1);
		return;
	}
	if (c->tls_done && memmem(el, n, NS_SASL, strlen(NS_SASL)) &&
	    memmem(el, n, "<mechanism>EXTERNAL</mechanism>", 31)) {
		char d[256];
		byte b64[512];
		word32 bl = sizeof b64;
		be_domain(e, c->dom_first, d, sizeof d);
		if (Base64_Encode_NoNl((const byte *)d, (word32)strlen(d), b64, &bl) == 0) {
			be_writef(e, c, "<auth xmlns='" NS_SASL "' mechanism='EXTERNAL'>%.*s</auth>", (int)bl, b64);
			c->sasl_sent = true;
			return;
		}
	}
	be_s2s_out_results(e, c, 0);
}

/* S2S_IN: <auth mechanism='EXTERNAL'> (XEP-0178 §2): the authorization
 * identity is the target's domain in base64, or "=" / nothing for the
 * stream's from; it must be proved by the certificate. */
static void be_sasl_external(struct eng *e, struct bconn *c, const char *el, size_t n, size_t tl)
{
	struct bx_span mech, txt = bx_text(el, n, tl);
	char domain[256];
	snprintf(domain, sizeof domain, "%s", c->peer);
	if (!c->tls_done || !bx_attr(el, tl, "mechanism", &mech) || !bx_eq(mech, "EXTERNAL")) {
		be_writef(e, c, "<failure xmlns='" NS_SASL "'><invalid-mechanism/></failure>");
		return;
	}
	if (txt.n && !(txt.n == 1 && txt.p[0] == '=')) {
		byte dec[256];
		word32 dl = sizeof dec - 1;
		if (Base64_Decode((const byte *)txt.p, (word32)txt.n, dec, &dl) != 0) {
			be_writef(e, c, "<failure xmlns='" NS_SASL "'><incorrect-encoding/></failure>");
			return;
		}
		dec[dl] = 0;
		snprintf(domain, sizeof domain, "%s", (const char *)dec);
	}
	int v = domain[0] ? tls_peer_verify_domain(c->tls, domain) : TLS_ERR_NAME;
	if (v != 0) {
		be_error(e, "connection %d (s2s in): SASL EXTERNAL for '%s' refused: %s", c->idx, domain,
			 tls_strerror(v));
		be_writef(e, c, "<failure xmlns='" NS_SASL "'><not-authorized/></failure>");
		return;
	}
	c->sasl_ok = true;
	e->r->external_in++;
	be_writef(e, c, "<success xmlns='" NS_SASL "'/>");
	c->depth = 0; /* RFC 6120 §6.4.6: a new stream header follows */
}

static void be_on_stanza(struct eng *e, struct bconn *c, const char *el, size_t n)
{
	size_t tl = bx_tag_len(el, n);
	struct bx_span name = bx_name(el, tl), v;
	bool is_traffic = bx_eq(name, "message") || bx_eq(name, "presence") || bx_eq(name, "iq");

	if (c->role == BC_RELAY_IN) {
		if (is_traffic)
			be_account(e, el, n, tl);
		return;
	}
	if (bx_eq(name, "stream:error")) {
		be_error(e, "stream error from target on connection %d (%s): %.*s", c->idx,
			 c->role == BC_COMP     ? "component"
			 : c->role == BC_S2S_IN ? "s2s in"
						: "s2s out",
			 (int)(n > 300 ? 300 : n), el);
		be_close(e, c, NULL);
		return;
	}
	if (c->role == BC_S2S_OUT) {
		if (bx_eq(name, "stream:features")) {
			if (c->state == BC_STREAM && c->want_features)
				be_s2s_out_features(e, c, el, n);
			return;
		}
		if (c->starttls_sent && bx_attr(el, tl, "xmlns", &v) && bx_eq(v, NS_TLS)) {
			c->starttls_sent = false;
			if (!bx_eq(name, "proceed")) {
				be_error(e, "connection %d: STARTTLS refused by the target: %.*s", c->idx,
					 (int)(n > 200 ? 200 : n), el);
				be_close(e, c, NULL);
				return;
			}
			char d[256];
			be_domain(e, c->dom_first, d, sizeof d);
			c->tls = tls_conn_new(e->tls, false, e->o->target_domain, d);
			if (!c->tls) {
				be_error(e, "connection %d: tls_conn_new failed", c->idx);
				be_close(e, c, NULL);
				return;
			}
			c->switch_tls = true;
			return;
		}
		if (c->sasl_sent && bx_attr(el, tl, "xmlns", &v) && bx_eq(v, NS_SASL)) {
			c->sasl_sent = false;
			if (bx_eq(name, "success")) {
				/* RFC 6120 §6.4.6: both ends restart the stream */
				c->sasl_ok = true;
				c->ndom_valid++;
				e->r->external_out++;
				c->depth = 0;
				c->want_features = false;
				be_s2s_out_header(e, c);
			} else {
				/* the features of this stream offered dialback too */
				be_s2s_out_results(e, c, 0);
			}
			return;
		}
		if (bx_eq(name, "db:result")) {
			if (bx_attr(el, tl, "type", &v) && bx_eq(v, "valid")) {
				if (++c->ndom_valid >= be_auth_want(e, c) && c->state != BC_READY) {
					c->state = BC_READY;
					be_setup_done(e, c);
				}
			} else {
				be_error(e, "dialback refused by target: %.*s", (int)(n > 400 ? 400 : n), el);
				be_close(e, c, NULL);
			}
			return;
		}
		if (is_traffic)
			be_account(e, el, n, tl);
		return;
	}
	if (c->role == BC_S2S_IN) {
		struct bx_span from = {"", 0}, to = {"", 0}, id = {"", 0};
		bx_attr(el, tl, "from", &from);
		bx_attr(el, tl, "to", &to);
		if (bx_eq(name, "starttls")) {
			if (!e->o->tls || c->tls || !(c->tls = tls_conn_new(e->tls, true, NULL, NULL))) {
				be_writef(e, c, "<failure xmlns='" NS_TLS "'/></stream:stream>");
				be_error(e, "connection %d (s2s in): unexpected <starttls/>", c->idx);
				be_close(e, c, NULL);
				return;
			}
			be_writef(e, c, "<proceed xmlns='" NS_TLS "'/>");
			c->switch_tls = true;
			return;
		}
		if (bx_eq(name, "auth")) {
			c->carried = true;
			be_sasl_external(e, c, el, n, tl);
			return;
		}
		if (e->o->tls && !c->tls_done && bx_eq(name, "db:verify")) {
			/* A verification stream that skipped the STARTTLS the bench
			 * requires: answered (the run is about load, and failing it
			 * would stall the link being set up), counted and reported,
			 * since the dialback key then crossed the wire in the clear. */
			if (!e->r->plain_verify_in++)
				fprintf(stderr,
					"fedhub-bench: connection %d (s2s in): the target sent <db:verify/> "
					"without the STARTTLS the bench requires\n",
					c->idx);
		} else if (e->o->tls && !c->tls_done) {
			/* RFC 6120 §5.3.1: nothing but STARTTLS before TLS */
			be_error(e, "connection %d (s2s in): the target sent <%.*s/> before STARTTLS", c->idx,
				 (int)name.n, name.p);
			be_writef(e, c,
				  "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
				  "</stream:error></stream:stream>");
			be_close(e, c, NULL);
			return;
		}
		if (bx_eq(name, "db:verify")) {
			char f[256], t[256], sid[256], want[65];
			bx_attr(el, tl, "id", &id);
			bx_cstr(from, f, sizeof f);
			bx_cstr(to, t, sizeof t);
			bx_cstr(id, sid, sizeof sid);
			struct bx_span key = bx_text(el, n, tl);
			bench_db_key(e->o->db_secret, f, t, sid, want);
			bool ok = key.n == 64 && memcmp(key.p, want, 64) == 0;
			be_writef(e, c, "<db:verify from='%s' to='%s' id='%s' type='%s'/>", t, f, sid,
				  ok ? "valid" : "invalid");
			c->verified = true;
			if (!ok)
				be_error(e, "target presented a wrong dialback key for %s -> %s", f, t);
			return;
		}
		if (bx_eq(name, "db:result")) {
			/* The target authenticating its own stream to us: accepted (see top). */
			c->carried = true;
			be_writef(e, c, "<db:result from='%.*s' to='%.*s' type='valid'/>", (int)to.n, to.p, (int)from.n,
				  from.p);
			return;
		}
		if (is_traffic) {
			c->carried = true;
			be_account(e, el, n, tl);
		}
		return;
	}
	if (c->role == BC_COMP) {
		if (bx_eq(name, "handshake")) {
			if (c->state != BC_READY) {
				c->state = BC_READY;
				be_setup_done(e, c);
			}
			return;
		}
		if (!is_traffic)
			return;
		c->nread++;
		if (e->o->comp_pause_ms > 0 && e->o->comp_pause_every > 0 &&
		    c->nread % (uint64_t)e->o->comp_pause_every == 0)
			c->hold_ns = e->now + (uint64_t)e->o->comp_pause_ms * 1000000ull;
		if (e->o->scenario == BS_ECHO)
			be_echo(e, c, el, n, tl, name);
		else
			be_account(e, el, n, tl);
	}
}

static void be_start_tls(struct eng *e, struct bconn *c);

/* Whether the peer ending this connection now breaks the run. Our own links
 * must stay up; the target's links to us may end once traffic has stopped;
 * a verification stream ends after its answer at any time (the target has
 * what it asked for), which is counted, not reported. */
bool be_close_is_error(struct eng *e, struct bconn *c)
{
	if (c->role == BC_S2S_OUT || c->role == BC_COMP)
		return true;
	if (c->role == BC_S2S_IN && c->verified && !c->carried) {
		if (!c->counted_verify) {
			c->counted_verify = true;
			e->r->verify_streams++;
		}
		return false;
	}
	return e->generating;
}

void be_process(struct eng *e, struct bconn *c)
{
	size_t pos = 0;
	while (pos < c->rlen && c->state != BC_CLOSED) {
		char *p = c->rbuf + pos;
		size_t n = c->rlen - pos;
		if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') {
			pos++;
			continue;
		}
		if (*p != '<') {
			size_t k = n < 120 ? n : 120;
			for (size_t j = 0; j < k; j++) /* keep the message on one line */
				if ((unsigned char)p[j] < 0x20)
					p[j] = '.';
			be_error(e,
				 "connection %d (%s): text outside any element at byte %zu of the buffer, "
				 "after %zu bytes of stanzas: \"%.*s\"",
				 c->idx,
				 c->role == BC_COMP     ? "component"
				 : c->role == BC_S2S_IN ? "s2s in"
							: "s2s out",
				 pos, pos, (int)k, p);
			be_close(e, c, NULL);
			return;
		}
		if (n < 2)
			break;
		if (p[1] == '?') {
			const char *q = memmem(p, n, "?>", 2);
			if (!q)
				break;
			pos += (size_t)(q + 2 - p);
			continue;
		}
		if (p[1] == '/') { /* </stream:stream> */
			size_t t = bx_tag_len(p, n);
			if (!t)
				break;
			pos += t;
			be_close(e, c, be_close_is_error(e, c) ? "stream closed by peer" : NULL);
			return;
		}
		if (c->depth == 0) {
			size_t t = bx_tag_len(p, n);
			if (!t)
				break;
			c->depth = 1;
			if (c->state == BC_CONNECTING || c->state == BC_IDLE)
				c->state = BC_STREAM;
			be_on_header(e, c, p, t);
			pos += t;
			continue;
		}
		size_t el = bx_elem_len(p, n);
		if (!el)
			break;
		be_on_stanza(e, c, p, el);
		pos += el;
		if (c->switch_tls)
			break;
	}
	if (pos > 0 && c->rbuf) {
		memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
		c->rlen -= pos;
	}
	if (c->switch_tls && c->state != BC_CLOSED)
		be_start_tls(e, c);
}

/* ---- TLS input ------------------------------------------------------------------ */

/* Drive the handshake, then move every plaintext byte into rbuf and parse it. */
static void be_tls_pump(struct eng *e, struct bconn *c)
{
	if (!c->tls_done) {
		int r = tls_handshake(c->tls);
		if (r < 0) {
			be_error(e, "connection %d (%s): TLS handshake failed: %s", c->idx,
				 c->role == BC_S2S_IN ? "s2s in" : "s2s out", tls_error(c->tls));
			be_close(e, c, NULL);
			return;
		}
		if (r == 1) {
			c->tls_done = true;
			be_on_tls_ready(e, c);
		}
	}
	while (c->tls_done && c->state != BC_CLOSED) {
		if (c->rcap - c->rlen < 16384) {
			c->rcap = c->rcap * 2 > c->rlen + 16384 ? c->rcap * 2 : c->rlen + 16384;
			c->rbuf = realloc(c->rbuf, c->rcap);
		}
		ssize_t k = tls_read(c->tls, c->rbuf + c->rlen, c->rcap - c->rlen);
		if (k == 0)
			break;
		if (k < 0) {
			be_close(e, c, be_close_is_error(e, c) ? tls_strerror((int)k) : NULL);
			return;
		}
		c->rlen += (size_t)k;
		be_process(e, c);
	}
	if (c->state != BC_CLOSED) {
		const void *p;
		if (tls_pending_out(c->tls, &p) > 0)
			be_mark_dirty(e, c);
	}
}

/* <proceed/> was received (S2S_OUT) or written (S2S_IN): the connection's
 * next bytes are TLS. Whatever followed it in the buffer is ciphertext. */
static void be_start_tls(struct eng *e, struct bconn *c)
{
	c->switch_tls = false;
	c->depth = 0;
	size_t left = c->rlen;
	c->rlen = 0;
	if (left && tls_feed(c->tls, c->rbuf, left) < 0) {
		be_close(e, c, "TLS input overflow");
		return;
	}
	if (c->role == BC_S2S_OUT || left)
		be_tls_pump(e, c); /* the client speaks first: ClientHello */
}

void be_tls_in(struct eng *e, struct bconn *c, size_t n)
{
	int rc = tls_feed(c->tls, c->cbuf, n);
	if (rc < 0) {
		be_close(e, c, tls_strerror(rc));
		return;
	}
	be_tls_pump(e, c);
}
