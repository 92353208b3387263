/*
 * tests/unit/test_xml.c — the streaming tokenizer (xml/) and the stanza helpers.
 *
 * Every document is run through a feeder that behaves like a connection:
 * it keeps the unconsumed bytes, moves them to a freshly allocated buffer
 * before every call (so a pointer kept across calls would be caught by
 * ASan and by the span checks) and appends the next chunk. Most tests run
 * each document whole, one byte at a time and split in two at every offset,
 * and require the same events, spans and errors from all of them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include "xml/xml.h"
#include "router/check_xml.h"

#define HDR                                                                                     \
	"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' " \
	"xmlns:db='jabber:server:dialback' to='a.example' from='b.example' version='1.0'>"

/* ------------------------------------------------------------------ */
/* the feeder */

struct rec_ev {
	int ev;
	uint64_t off, n;
	char name[64], ns[128], prefix[32], to[64], from[64], type[32], id[64];
	uint32_t flags;
	int nsid;
};

struct run {
	struct rec_ev ev[64];
	int nev;
	int stanzas;
	enum xml_err err;
	uint64_t err_off;
	bool error, closed;
	size_t left; /* bytes left unconsumed at the end */
};

static void cpy(char *dst, size_t cap, struct xml_span s)
{
	size_t n = s.n < cap - 1 ? s.n : cap - 1;
	if (n)
		memcpy(dst, s.p, n);
	dst[n] = 0;
}

/* chunk(k) gives the size of the k-th chunk; 0 means "the rest" */
typedef size_t (*chunk_fn)(size_t k, size_t arg);
static size_t chunk_whole(size_t k, size_t arg)
{
	(void)k, (void)arg;
	return 0;
}
static size_t chunk_one(size_t k, size_t arg)
{
	(void)k, (void)arg;
	return 1;
}
static size_t chunk_split(size_t k, size_t arg)
{
	return k == 0 ? arg : 0;
}

static void feed(const char *doc, size_t n, const struct xml_limits *lim, bool auth, chunk_fn fn, size_t arg,
		 struct run *r)
{
	struct xml_tok t;
	xml_tok_init(&t, lim);
	t.authenticated = auth;
	memset(r, 0, sizeof *r);
	char *buf = NULL;
	size_t have = 0, fed = 0, k = 0;
	for (;;) {
		size_t used = 99;
		int ev = xml_tok_next(&t, buf ? buf : "", have, &used);
		if (ev == XML_EV_ERROR) {
			r->error = true;
			r->err = t.err;
			r->err_off = t.err_offset;
			/* the stream stays dead */
			assert_int_equal(xml_tok_next(&t, buf ? buf : "", have, &used), XML_EV_ERROR);
			break;
		}
		if (ev > 0) {
			assert_true(used > 0 && used <= have);
			assert_true(r->nev < 64);
			struct rec_ev *e = &r->ev[r->nev++];
			memset(e, 0, sizeof *e);
			e->ev = ev;
			e->off = t.stream_off - used;
			e->n = used;
			if (ev == XML_EV_STANZA) {
				r->stanzas++;
				assert_ptr_equal(t.st.raw.p, buf);
				assert_int_equal(t.st.raw.n, used);
				cpy(e->name, sizeof e->name, t.st.name);
				cpy(e->ns, sizeof e->ns, t.st.ns);
				cpy(e->prefix, sizeof e->prefix, t.st.prefix);
				cpy(e->to, sizeof e->to, t.st.to);
				cpy(e->from, sizeof e->from, t.st.from);
				cpy(e->type, sizeof e->type, t.st.type);
				cpy(e->id, sizeof e->id, t.st.id);
				e->flags = t.st.flags;
				e->nsid = t.st.nsid;
				/* the spans lie inside the stanza */
				struct xml_span sp[] = {t.st.name, t.st.to, t.st.from, t.st.type, t.st.id};
				for (size_t m = 0; m < sizeof sp / sizeof sp[0]; m++)
					if (sp[m].n)
						assert_true(sp[m].p >= buf && sp[m].p + sp[m].n <= buf + used);
			}
			if (ev == XML_EV_STREAM_OPEN) {
				cpy(e->to, sizeof e->to, t.hdr.to);
				cpy(e->from, sizeof e->from, t.hdr.from);
				cpy(e->id, sizeof e->id, t.hdr.id);
				cpy(e->type, sizeof e->type, t.hdr.version);
				cpy(e->name, sizeof e->name, t.hdr.lang);
				cpy(e->ns, sizeof e->ns, t.hdr.ns);
				e->nsid = t.hdr.default_ns;
				e->flags = t.hdr.has_dialback_ns;
				assert_true(t.hdr.raw.p >= buf && t.hdr.raw.p + t.hdr.raw.n == buf + used);
			}
			if (ev == XML_EV_STREAM_CLOSE)
				r->closed = true;
			memmove(buf, buf + used, have - used);
			have -= used;
			continue;
		}
		assert_int_equal(used, 0);
		/* resumable: everything handed over so far has been scanned,
		 * except at most a UTF-8 sequence cut by the chunk boundary
		 * or a short token seen whole ("<?xml ", "?>", "<!-") */
		assert_true(t.scan + 6 >= have);
		if (fed == n)
			break;
		size_t c = fn(k++, arg);
		if (c == 0 || c > n - fed)
			c = n - fed;
		/* move the kept bytes somewhere else, as a connection may */
		char *nb = malloc(have + c + 1);
		assert_non_null(nb);
		if (have)
			memcpy(nb, buf, have);
		memcpy(nb + have, doc + fed, c);
		free(buf);
		buf = nb;
		have += c;
		fed += c;
	}
	r->left = have;
	free(buf);
}

static void assert_same_run(const struct run *a, const struct run *b)
{
	assert_int_equal(a->nev, b->nev);
	assert_int_equal(a->error, b->error);
	assert_int_equal(a->err, b->err);
	assert_int_equal(a->err_off, b->err_off);
	assert_int_equal(a->closed, b->closed);
	for (int k = 0; k < a->nev; k++) {
		const struct rec_ev *x = &a->ev[k], *y = &b->ev[k];
		/* whitespace runs may be reported in pieces when fed in pieces */
		if (x->ev == XML_EV_WHITESPACE && y->ev == XML_EV_WHITESPACE)
			continue;
		assert_int_equal(x->ev, y->ev);
		assert_int_equal(x->off, y->off);
		assert_int_equal(x->n, y->n);
		assert_string_equal(x->name, y->name);
		assert_string_equal(x->ns, y->ns);
		assert_string_equal(x->prefix, y->prefix);
		assert_string_equal(x->to, y->to);
		assert_string_equal(x->from, y->from);
		assert_string_equal(x->type, y->type);
		assert_string_equal(x->id, y->id);
		assert_int_equal(x->flags, y->flags);
		assert_int_equal(x->nsid, y->nsid);
	}
}

/* Drop whitespace events, which depend on chunking, before comparing. */
static void strip_ws(struct run *r)
{
	int o = 0;
	for (int k = 0; k < r->nev; k++)
		if (r->ev[k].ev != XML_EV_WHITESPACE)
			r->ev[o++] = r->ev[k];
	r->nev = o;
}

/* Whole, byte by byte, split at every offset: the same result. */
static void run_all_ways(const char *doc, size_t n, const struct xml_limits *lim, bool auth, struct run *whole)
{
	struct run r;
	feed(doc, n, lim, auth, chunk_whole, 0, whole);
	strip_ws(whole);
	feed(doc, n, lim, auth, chunk_one, 0, &r);
	strip_ws(&r);
	assert_same_run(whole, &r);
	for (size_t s = 1; s < n; s++) {
		feed(doc, n, lim, auth, chunk_split, s, &r);
		strip_ws(&r);
		assert_same_run(whole, &r);
	}
}

static void run_doc(const char *doc, struct run *r)
{
	run_all_ways(doc, strlen(doc), NULL, true, r);
}

static void expect_error(const char *doc, enum xml_err e, long off)
{
	struct run r;
	run_doc(doc, &r);
	if (!r.error || r.err != e || (off >= 0 && r.err_off != (uint64_t)off))
		fprintf(stderr, "doc: %s\n  got %s at %llu, want %s at %ld\n", doc,
			r.error ? xml_err_name(r.err) : "no error", (unsigned long long)r.err_off, xml_err_name(e),
			off);
	assert_true(r.error);
	assert_int_equal(r.err, e);
	if (off >= 0)
		assert_int_equal(r.err_off, off);
}

/* A stanza inside the standard header: the error offset is counted from
 * the start of the stream, so `off` is relative to the stanza here. */
static void expect_stanza_error(const char *stanza, enum xml_err e, long off)
{
	char doc[4096];
	snprintf(doc, sizeof doc, "%s%s", HDR, stanza);
	expect_error(doc, e, off < 0 ? -1 : (long)strlen(HDR) + off);
}

static void expect_stanza_ok(const char *stanza)
{
	char doc[8192];
	struct run r;
	snprintf(doc, sizeof doc, "%s%s</stream:stream>", HDR, stanza);
	run_doc(doc, &r);
	if (r.error)
		fprintf(stderr, "stanza: %s\n  got %s at %llu\n", stanza, xml_err_name(r.err),
			(unsigned long long)r.err_off - strlen(HDR));
	assert_false(r.error);
	assert_true(r.closed);
	assert_int_equal(r.stanzas, 1);
	assert_int_equal(r.ev[1].n, strlen(stanza));
}

/* ------------------------------------------------------------------ */
/* stream level */

static void test_stream_header_fields(void **state)
{
	(void)state;
	struct run r;
	run_doc("<?xml version='1.0' encoding='UTF-8'?>\n"
		"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
		"xmlns:db='jabber:server:dialback' to='a.example' from='b.example' id='s1d' "
		"version='1.0' xml:lang='en'>",
		&r);
	assert_false(r.error);
	assert_int_equal(r.nev, 1);
	assert_int_equal(r.ev[0].ev, XML_EV_STREAM_OPEN);
	assert_int_equal(r.ev[0].off, 0);
	assert_string_equal(r.ev[0].to, "a.example");
	assert_string_equal(r.ev[0].from, "b.example");
	assert_string_equal(r.ev[0].id, "s1d");
	assert_string_equal(r.ev[0].type, "1.0"); /* version */
	assert_string_equal(r.ev[0].name, "en");  /* xml:lang */
	assert_string_equal(r.ev[0].ns, "jabber:server");
	assert_int_equal(r.ev[0].nsid, XML_NS_SERVER);
	assert_int_equal(r.ev[0].flags, 1); /* has_dialback_ns */
}

static void test_stream_any_prefix_and_component_ns(void **state)
{
	(void)state;
	struct run r;
	run_doc("<x:stream xmlns:x='http://etherx.jabber.org/streams' "
		"xmlns='jabber:component:accept' to='c.example'>"
		"<x:features/><message to='u@c.example'/></x:stream>",
		&r);
	assert_false(r.error);
	assert_true(r.closed);
	assert_int_equal(r.ev[0].nsid, XML_NS_COMPONENT);
	assert_int_equal(r.ev[0].flags, 0);
	assert_string_equal(r.ev[1].name, "features");
	assert_string_equal(r.ev[1].prefix, "x");
	assert_int_equal(r.ev[1].nsid, XML_NS_STREAMS);
	assert_string_equal(r.ev[2].ns, "jabber:component:accept");
	/* the close tag must use the header's own prefix */
	expect_error("<x:stream xmlns:x='http://etherx.jabber.org/streams' "
		     "xmlns='jabber:component:accept'></stream:stream>",
		     XML_ERR_NOT_WELL_FORMED, 85);
}

static void test_stream_bad_namespaces(void **state)
{
	(void)state;
	expect_error("<stream:stream xmlns='jabber:client' "
		     "xmlns:stream='http://etherx.jabber.org/streams'>",
		     XML_ERR_INVALID_NAMESPACE, 0);
	expect_error("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>", XML_ERR_INVALID_NAMESPACE, 0);
	expect_error("<stream:stream xmlns='jabber:server' xmlns:stream='urn:wrong'>", XML_ERR_INVALID_NAMESPACE, 0);
	expect_error("<stream:stream xmlns='jabber:server'>", XML_ERR_BAD_NAMESPACE_PREFIX, 0);
	expect_error("<stream:strim xmlns='jabber:server' "
		     "xmlns:stream='http://etherx.jabber.org/streams'>",
		     XML_ERR_BAD_FORMAT, 0);
}

static void test_xml_declaration(void **state)
{
	(void)state;
	struct run r;
	run_doc("\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"utf-8\" standalone='yes' ?>" HDR, &r);
	assert_false(r.error);
	assert_int_equal(r.ev[0].ev, XML_EV_STREAM_OPEN);
	expect_error("<?xml version='1.0' encoding='ISO-8859-1'?>" HDR, XML_ERR_UNSUPPORTED_ENCODING, 0);
	expect_error("<?xml version='1.0' encoding='UTF-16'?>" HDR, XML_ERR_UNSUPPORTED_ENCODING, 0);
	expect_error("<?xml encoding='UTF-8'?>" HDR, XML_ERR_NOT_WELL_FORMED, 0);
	expect_error("<?xml version='1.0'?><?xml version='1.0'?>" HDR, XML_ERR_RESTRICTED_XML, 21);
	expect_error(" <?xml version='1.0'?>" HDR, XML_ERR_RESTRICTED_XML, 1);
	expect_error("<?php x?>" HDR, XML_ERR_RESTRICTED_XML, 0);
	expect_error("<!DOCTYPE stream>" HDR, XML_ERR_RESTRICTED_XML, 0);
	expect_error("<!-- hi -->" HDR, XML_ERR_RESTRICTED_XML, 0);
	expect_error("\xef\xbb\xbe" HDR, XML_ERR_INVALID_XML, 0);
}

static void test_stream_version(void **state)
{
	(void)state;
	struct run r;
	expect_error("<stream:stream xmlns='jabber:server' "
		     "xmlns:stream='http://etherx.jabber.org/streams' version='2.0'>",
		     XML_ERR_UNSUPPORTED_VERSION, 0);
	/* no version: a pre-RFC 3920 peer, dialback only */
	run_doc("<stream:stream xmlns='jabber:server' "
		"xmlns:stream='http://etherx.jabber.org/streams'>",
		&r);
	assert_false(r.error);
	assert_int_equal(r.ev[0].ev, XML_EV_STREAM_OPEN);
}

static void test_whitespace_keepalives(void **state)
{
	(void)state;
	const char *doc = HDR " \n <presence/>\n\n\t</stream:stream>\n";
	struct run r;
	feed(doc, strlen(doc), NULL, true, chunk_whole, 0, &r);
	assert_false(r.error);
	assert_int_equal(r.nev, 6);
	int evs[] = {XML_EV_STREAM_OPEN, XML_EV_WHITESPACE,   XML_EV_STANZA,
		     XML_EV_WHITESPACE,  XML_EV_STREAM_CLOSE, XML_EV_WHITESPACE};
	for (int k = 0; k < 6; k++)
		assert_int_equal(r.ev[k].ev, evs[k]);
	assert_int_equal(r.ev[1].n, 3);
	assert_int_equal(r.ev[3].n, 3);
	/* byte by byte: one whitespace event per byte, nothing else differs */
	feed(doc, strlen(doc), NULL, true, chunk_one, 0, &r);
	int ws = 0;
	for (int k = 0; k < r.nev; k++)
		ws += r.ev[k].ev == XML_EV_WHITESPACE;
	assert_int_equal(ws, 7);
}

static void test_top_level_text_rejected(void **state)
{
	(void)state;
	long h = (long)strlen(HDR);
	expect_error(HDR "hello", XML_ERR_BAD_FORMAT, h);
	expect_error(HDR " &amp;", XML_ERR_BAD_FORMAT, h + 1);
	expect_error(HDR "<![CDATA[x]]>", XML_ERR_BAD_FORMAT, h);
	expect_error(HDR "<!-- c -->", XML_ERR_RESTRICTED_XML, h);
	expect_error(HDR "<?pi?>", XML_ERR_RESTRICTED_XML, h);
	expect_error(HDR "</stream:stream>x", XML_ERR_NOT_WELL_FORMED, h + 16);
	expect_error(HDR "</stream:stream><presence/>", XML_ERR_NOT_WELL_FORMED, h + 16);
	expect_error(HDR "</stream:streams>", XML_ERR_NOT_WELL_FORMED, h);
	expect_error(HDR "<>", XML_ERR_NOT_WELL_FORMED, h + 1);
}

static void test_second_stream_header_rejected(void **state)
{
	(void)state;
	long h = (long)strlen(HDR);
	expect_error(HDR "<stream:stream to='b' version='1.0'>", XML_ERR_BAD_FORMAT, h);
	expect_error(HDR "<x:stream xmlns:x='http://etherx.jabber.org/streams'>", XML_ERR_BAD_FORMAT, h);
	/* the same local name in another namespace is an ordinary element */
	struct run r;
	run_doc(HDR "<stream xmlns='urn:example'/>", &r);
	assert_false(r.error);
}

static void test_stream_close(void **state)
{
	(void)state;
	struct run r;
	run_doc(HDR "</stream:stream >", &r);
	assert_false(r.error);
	assert_true(r.closed);
	assert_int_equal(r.ev[1].ev, XML_EV_STREAM_CLOSE);
	assert_int_equal(r.ev[1].n, 17);
	assert_int_equal(r.left, 0);
}

static void test_reset_for_new_stream(void **state)
{
	(void)state;
	struct xml_tok t;
	size_t used;
	const char *h = HDR;
	xml_tok_init(&t, NULL);
	assert_int_equal(xml_tok_next(&t, h, strlen(h), &used), XML_EV_STREAM_OPEN);
	/* after STARTTLS the peer sends a new header (and may re-declare) */
	t.authenticated = true;
	xml_tok_reset(&t);
	assert_true(t.authenticated);
	assert_int_equal(t.stream_off, 0);
	assert_int_equal(xml_tok_next(&t, h, strlen(h), &used), XML_EV_STREAM_OPEN);
	assert_int_equal(used, strlen(h));
}

/* ------------------------------------------------------------------ */
/* stanzas */

/* What Prosody and ejabberd actually send on s2s links. */
static const char *const real_stanzas[] = {
	/* Prosody stream features before and after TLS */
	"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
	"</starttls></stream:features>",
	"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>"
	"EXTERNAL</mechanism></mechanisms><dialback xmlns='urn:xmpp:features:dialback'><errors/>"
	"</dialback></stream:features>",
	/* ejabberd stream features */
	"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>"
	"EXTERNAL</mechanism></mechanisms><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
	"node='https://www.process-one.net/en/ejabberd/' ver='Bv3nGwGw7XgOQYIy3ifhDS5Ioow='/>"
	"<sm xmlns='urn:xmpp:sm:3'/></stream:features>",
	"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
	"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
	"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>Yi5leGFtcGxl</auth>",
	"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
	/* XEP-0220 dialback */
	"<db:result from='b.example' to='a.example'>b4835385f37fe2895af6c196b8e6b8c31a1f8a7c"
	"</db:result>",
	"<db:verify from='a.example' to='b.example' id='417GAF25'>"
	"b4835385f37fe2895af6c196b8e6b8c31a1f8a7c</db:verify>",
	"<db:result from='a.example' to='b.example' type='valid'/>",
	/* traffic */
	"<message from='juliet@b.example/balcony' to='romeo@a.example' type='chat' "
	"id='ktx72v49' xml:lang='en'><body>Art thou not Romeo, and a Montague? &lt;3 "
	"&amp; \xe2\x9d\xa4\xef\xb8\x8f caf\xc3\xa9</body><active "
	"xmlns='http://jabber.org/protocol/chatstates'/><origin-id xmlns='urn:xmpp:sid:0' "
	"id='de305d54-75b4-431b-adb2-eb6b9e546014'/></message>",
	"<presence from='juliet@b.example/balcony' to='romeo@a.example'><show>away</show>"
	"<status>\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82</status><priority>1</priority>"
	"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://psi-im.org' "
	"ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/></presence>",
	"<iq type='get' from='a.example' to='b.example' id='ping-1'><ping xmlns='urn:xmpp:ping'/>"
	"</iq>",
	"<iq type='result' id='disco1' from='b.example' to='a.example'><query "
	"xmlns='http://jabber.org/protocol/disco#info'><identity category='server' type='im' "
	"name='Prosody'/><feature var='urn:xmpp:ping'/><feature var='jabber:iq:version'/>"
	"</query></iq>",
	"<message to='a@a.example' from='b@b.example' type='error' id='x&amp;y'><error "
	"type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
	"</error></message>",
};

static void test_real_stanzas_split_at_every_offset(void **state)
{
	(void)state;
	struct {
		const char *name, *prefix, *to, *type;
		int nsid;
	} want[] = {
		{"features", "stream", "", "", XML_NS_STREAMS},
		{"features", "stream", "", "", XML_NS_STREAMS},
		{"features", "stream", "", "", XML_NS_STREAMS},
		{"starttls", "", "", "", XML_NS_TLS},
		{"proceed", "", "", "", XML_NS_TLS},
		{"auth", "", "", "", XML_NS_SASL},
		{"success", "", "", "", XML_NS_SASL},
		{"result", "db", "a.example", "", XML_NS_DIALBACK},
		{"verify", "db", "b.example", "", XML_NS_DIALBACK},
		{"result", "db", "b.example", "valid", XML_NS_DIALBACK},
		{"message", "", "romeo@a.example", "chat", XML_NS_SERVER},
		{"presence", "", "romeo@a.example", "", XML_NS_SERVER},
		{"iq", "", "b.example", "get", XML_NS_SERVER},
		{"iq", "", "a.example", "result", XML_NS_SERVER},
		{"message", "", "a@a.example", "error", XML_NS_SERVER},
	};
	size_t ns = sizeof real_stanzas / sizeof real_stanzas[0];
	assert_int_equal(ns, sizeof want / sizeof want[0]);
	/* each on its own, split everywhere */
	for (size_t k = 0; k < ns; k++) {
		char doc[2048];
		struct run r;
		snprintf(doc, sizeof doc, "%s%s", HDR, real_stanzas[k]);
		run_doc(doc, &r);
		assert_false(r.error);
		assert_int_equal(r.nev, 2);
		const struct rec_ev *e = &r.ev[1];
		assert_int_equal(e->ev, XML_EV_STANZA);
		assert_int_equal(e->off, strlen(HDR));
		assert_int_equal(e->n, strlen(real_stanzas[k]));
		assert_string_equal(e->name, want[k].name);
		assert_string_equal(e->prefix, want[k].prefix);
		assert_string_equal(e->to, want[k].to);
		assert_string_equal(e->type, want[k].type);
		assert_int_equal(e->nsid, want[k].nsid);
	}
	/* all in one stream, byte by byte */
	char all[8192];
	size_t n = strlen(HDR);
	memcpy(all, HDR, n);
	for (size_t k = 0; k < ns; k++) {
		size_t m = strlen(real_stanzas[k]);
		memcpy(all + n, real_stanzas[k], m);
		n += m;
		all[n++] = '\n';
	}
	memcpy(all + n, "</stream:stream>", 16);
	n += 16;
	struct run r1, r2;
	feed(all, n, NULL, true, chunk_whole, 0, &r1);
	feed(all, n, NULL, true, chunk_one, 0, &r2);
	strip_ws(&r1);
	strip_ws(&r2);
	assert_same_run(&r1, &r2);
	assert_int_equal(r1.stanzas, (int)ns);
	assert_true(r1.closed);
}

static void test_stanza_fields_and_escape_flags(void **state)
{
	(void)state;
	struct run r;
	run_doc(HDR "<message to=\"a&amp;b@x\" from='c&#64;d' type='chat' id='&lt;1&gt;'>"
		    "<body/></message>"
		    "<presence/>"
		    "<p:iq xmlns:p='jabber:server' to='x'/>"
		    "<message xmlns='jabber:client' id='7'/>",
		&r);
	assert_false(r.error);
	assert_int_equal(r.stanzas, 4);
	const struct rec_ev *m = &r.ev[1];
	assert_string_equal(m->to, "a&amp;b@x");
	assert_string_equal(m->from, "c&#64;d");
	assert_string_equal(m->id, "&lt;1&gt;");
	assert_int_equal(m->flags, XML_ST_TO_ESC | XML_ST_FROM_ESC | XML_ST_ID_ESC);
	assert_int_equal(r.ev[2].flags, XML_ST_EMPTY);
	assert_string_equal(r.ev[2].to, "");
	assert_string_equal(r.ev[3].prefix, "p");
	assert_string_equal(r.ev[3].name, "iq");
	assert_int_equal(r.ev[3].nsid, XML_NS_SERVER);
	assert_string_equal(r.ev[4].ns, "jabber:client");
	assert_int_equal(r.ev[4].nsid, XML_NS_OTHER);
}

static void test_constructs_inside_stanzas(void **state)
{
	(void)state;
	expect_stanza_ok("<message><body><![CDATA[<not a tag> & ]] ]]></body></message>");
	expect_stanza_ok("<message><body>a > b ]] ] &#x1F600; &#128512; &#9; &quot;</body></message>");
	expect_stanza_ok("<message><a><b><c><d/></c></b></a></message>");
	expect_stanza_ok("<message a = \"1\"\n\tb='2' ></message >");
	expect_stanza_ok("<message x='&lt;&gt;&amp;&quot;&apos;' y='>'/>");
	expect_stanza_ok("<message><p:x xmlns:p='urn:p'><p:y p:a='1'/></p:x><x xml:lang='de'/></message>");
	/* prefix redeclared deeper, the inner binding wins and then ends */
	expect_stanza_ok("<m xmlns:p='urn:1'><x xmlns:p='urn:2'><p:y/></x><p:y/></m>");
	/* same local name, prefixes bound to different URIs: not duplicates */
	expect_stanza_ok("<m xmlns:p='urn:1' xmlns:q='urn:2' p:a='1' q:a='2'/>");
	expect_stanza_ok("<m xmlns='' xmlns:xml='http://www.w3.org/XML/1998/namespace'/>");
	/* non-ASCII text and names (XML 1.0 fifth edition) */
	expect_stanza_ok("<message><body>\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\xc2\x80</body>"
			 "<caf\xc3\xa9 \xe4\xb8\xad='\xf0\x9f\x98\x80'/><\xf0\x90\x80\x80/></message>");
	expect_stanza_ok("<message>\r\n</message>");
}

static void test_wellformedness_errors(void **state)
{
	(void)state;
	const enum xml_err NWF = XML_ERR_NOT_WELL_FORMED, INV = XML_ERR_INVALID_XML;
	/* end tags at every depth */
	expect_stanza_error("<message></mesage>", NWF, 9);
	expect_stanza_error("<message><a><b></a></b></message>", NWF, 15);
	expect_stanza_error("<message><a><b><c></c></b></c></message>", NWF, 26);
	expect_stanza_error("<message><a></a ></message<presence/>", NWF, 26);
	expect_stanza_error("<message></ message>", NWF, 9);
	/* attributes */
	expect_stanza_error("<message to='x/><presence/>", NWF, 16);
	expect_stanza_error("<message to='a' to='b'/>", NWF, 0);
	expect_stanza_error("<message><x xmlns:p='u' xmlns:q='u' p:a='1' q:a='2'/></message>", NWF, 9);
	expect_stanza_error("<message to='a'from='b'/>", NWF, 15);
	expect_stanza_error("<message to='a<b'/>", NWF, 14);
	expect_stanza_error("<message to=a/>", NWF, 12);
	expect_stanza_error("<message to/>", NWF, 11);
	expect_stanza_error("<message =''/>", NWF, 9);
	expect_stanza_error("<message a:b:c='1'/>", NWF, 12);
	/* names */
	expect_stanza_error("<1message/>", NWF, 1);
	expect_stanza_error("<message><:x/></message>", NWF, 10);
	expect_stanza_error("<message><a:/></message>", NWF, 12);
	expect_stanza_error("<message><a:1/></message>", NWF, 12);
	expect_stanza_error("<message>< x/></message>", NWF, 10);
	/* references */
	expect_stanza_error("<message>&#0;</message>", INV, 9);
	expect_stanza_error("<message>&#xD800;</message>", INV, 9);
	expect_stanza_error("<message>&#x110000;</message>", INV, 9);
	expect_stanza_error("<message>&#xFFFE;</message>", INV, 9);
	expect_stanza_error("<message a='&#1;'/>", INV, 12);
	expect_stanza_error("<message>&#;</message>", NWF, 9);
	expect_stanza_error("<message>&#x;</message>", NWF, 9);
	expect_stanza_error("<message>&#12a;</message>", NWF, 9);
	expect_stanza_error("<message>& </message>", NWF, 9);
	expect_stanza_error("<message>&amp</message>", NWF, 9);
	expect_stanza_error("<message a='&'/>", NWF, 12);
	/* "]]>" outside CDATA */
	expect_stanza_error("<message>a]]>b</message>", NWF, 10);
	expect_stanza_error("<message>a]]]>b</message>", NWF, 11);
	/* an unterminated CDATA section swallows the end tags: still pending */
	struct run r;
	run_doc(HDR "<message><![CDATA[x]]</message></stream:stream>", &r);
	assert_false(r.error);
	assert_false(r.closed);
	assert_int_equal(r.stanzas, 0);
	expect_stanza_error("<message><![CDAT[x]]></message>", NWF, 9);
	/* characters and UTF-8 */
	expect_stanza_error("<message>\x01</message>", INV, 9);
	expect_stanza_error("<message a='\x1f'/>", INV, 12);
	expect_stanza_error("<message>\xc0\xaf</message>", INV, 9);         /* overlong */
	expect_stanza_error("<message>\xe0\x80\xaf</message>", INV, 9);     /* overlong */
	expect_stanza_error("<message>\xf0\x80\x80\xaf</message>", INV, 9); /* overlong */
	expect_stanza_error("<message>\xed\xa0\x80</message>", INV, 9);     /* surrogate */
	expect_stanza_error("<message>\xf4\x90\x80\x80</message>", INV, 9); /* > U+10FFFF */
	expect_stanza_error("<message>\xef\xbf\xbf</message>", INV, 9);     /* U+FFFF */
	expect_stanza_error("<message>\x80</message>", INV, 9);
	expect_stanza_error("<message>\xc3\x28</message>", INV, 9);
	expect_stanza_error("<message>\xff</message>", INV, 9);
	expect_stanza_error("<message a='\xe4\xb8'/>", INV, 12);
	expect_stanza_error("<m\xc3\xa9\xc3/>", INV, 4);
	expect_stanza_error("<message><![CDATA[\x02]]></message>", INV, 18);
	/* a stanza with an error after many good bytes: offset counts them */
	expect_stanza_error("<message><body>0123456789012345678901234567890123456789\x7f\x01"
			    "</body></message>",
			    INV, 56);
}

static void test_namespace_errors(void **state)
{
	(void)state;
	const enum xml_err BNP = XML_ERR_BAD_NAMESPACE_PREFIX, NWF = XML_ERR_NOT_WELL_FORMED;
	expect_stanza_error("<foo:message/>", BNP, 0);
	expect_stanza_error("<message><x:a/></message>", BNP, 9);
	expect_stanza_error("<message foo:a='1'/>", BNP, 0);
	expect_stanza_error("<message><p:a xmlns:p='u'/><p:b/></message>", BNP, 27);
	expect_stanza_error("<message><xmlns:a/></message>", BNP, 9);
	expect_stanza_error("<message xmlns:p=''/>", NWF, 0);
	expect_stanza_error("<message xmlns:xml='urn:x'/>", NWF, 0);
	expect_stanza_error("<message xmlns:x='http://www.w3.org/XML/1998/namespace'/>", NWF, 0);
	expect_stanza_error("<message xmlns:xmlns='urn:x'/>", NWF, 0);
	expect_stanza_error("<message xmlns='http://www.w3.org/2000/xmlns/'/>", NWF, 0);
	expect_stanza_error("<message xmlns:p='urn:p' xmlns:p='urn:q'/>", NWF, 0);
}

static void test_restricted_xml(void **state)
{
	(void)state;
	const enum xml_err RX = XML_ERR_RESTRICTED_XML;
	expect_stanza_error("<message><!-- c --></message>", RX, 9);
	expect_stanza_error("<message><?php echo 1?></message>", RX, 9);
	expect_stanza_error("<message><!DOCTYPE x></message>", RX, 9);
	expect_stanza_error("<message>&nbsp;</message>", RX, 9);
	expect_stanza_error("<message a='&foo;'/>", RX, 12);
	expect_stanza_error("<message>&averyveryverylongentityname;</message>", RX, 9);
}

static void test_limits(void **state)
{
	(void)state;
	struct xml_limits lim;
	xml_limits_default(&lim);
	lim.max_stanza = 100;
	lim.max_stanza_preauth = 60;
	lim.max_depth = 3;
	lim.max_attrs = 6; /* the header has 6 */
	lim.max_name = 13; /* "stream:stream" */
	size_t h = strlen(HDR);
	char doc[1024];
	struct run r;
	/* a 100-byte stanza passes once authenticated, not before */
	char st[101];
	memset(st, 'x', 100);
	memcpy(st, "<message>", 9);
	memcpy(st + 90, "</message>", 10);
	st[100] = 0;
	lim.max_stanza_preauth = 200; /* the header itself is 170 bytes */
	snprintf(doc, sizeof doc, "%s%s", HDR, st);
	run_all_ways(doc, strlen(doc), &lim, true, &r);
	if (r.error)
		fprintf(stderr, "%s at %llu\n", xml_err_name(r.err), (unsigned long long)r.err_off);
	assert_false(r.error);
	assert_int_equal(r.stanzas, 1);
	lim.max_stanza_preauth = 99;
	run_all_ways(doc, strlen(doc), &lim, false, &r);
	assert_true(r.error);
	assert_int_equal(r.err, XML_ERR_POLICY_VIOLATION);
	lim.max_stanza_preauth = 200;
	lim.max_stanza = 99;
	run_all_ways(doc, strlen(doc), &lim, true, &r);
	assert_true(r.error);
	assert_int_equal(r.err, XML_ERR_POLICY_VIOLATION);
	assert_int_equal(r.err_off, h + 99);
	/* header over the pre-authentication limit */
	lim.max_stanza_preauth = 100;
	run_all_ways(HDR, h, &lim, false, &r);
	assert_true(r.error);
	assert_int_equal(r.err, XML_ERR_POLICY_VIOLATION);
	lim.max_stanza = lim.max_stanza_preauth = 1000;
	/* depth */
	snprintf(doc, sizeof doc, "%s<a><b><c/></b></a>", HDR);
	run_all_ways(doc, strlen(doc), &lim, true, &r);
	assert_false(r.error);
	snprintf(doc, sizeof doc, "%s<a><b><c><d/></c></b></a>", HDR);
	run_all_ways(doc, strlen(doc), &lim, true, &r);
	assert_true(r.error);
	assert_int_equal(r.err, XML_ERR_POLICY_VIOLATION);
	assert_int_equal(r.err_off, h + 9);
	/* attributes */
	snprintf(doc, sizeof doc, "%s<a a='' b='' c='' d='' e='' f=''/><a a='' b='' c='' d='' e='' f='' g=''/>", HDR);
	run_all_ways(doc, strlen(doc), &lim, true, &r);
	assert_true(r.error);
	assert_int_equal(r.stanzas, 1);
	assert_int_equal(r.err, XML_ERR_POLICY_VIOLATION);
	/* names */
	snprintf(doc, sizeof doc, "%s<abcdefghijklm/><abcdefghijklmn/>", HDR);
	run_all_ways(doc, strlen(doc), &lim, true, &r);
	assert_true(r.error);
	assert_int_equal(r.stanzas, 1);
	assert_int_equal(r.err, XML_ERR_POLICY_VIOLATION);
	/* too long is too long, whatever error would have come after it and
	 * however the bytes are split (run_all_ways compares them) */
	snprintf(doc, sizeof doc, "%s<abcdefghijklmn:x:y/>", HDR);
	run_all_ways(doc, strlen(doc), &lim, true, &r);
	assert_true(r.error);
	assert_int_equal(r.err, XML_ERR_POLICY_VIOLATION);
	assert_int_equal(r.err_off, h + 1);
	snprintf(doc, sizeof doc, "%s<abcdefghijkl\xc3\xa9/>", HDR); /* 2-byte char crosses it */
	run_all_ways(doc, strlen(doc), &lim, true, &r);
	assert_true(r.error);
	assert_int_equal(r.err, XML_ERR_POLICY_VIOLATION);
}

static void test_big_stanza_fed_byte_by_byte(void **state)
{
	(void)state;
	/* 64 KB of text and attributes fed one byte at a time: feed()
	 * checks after every call that the tokenizer resumes where it
	 * stopped (t->scan) instead of starting the stanza over */
	size_t n = 64 * 1024, o = 0;
	char *doc = malloc(n + 4096);
	assert_non_null(doc);
	o += (size_t)sprintf(doc, "%s<message to='a@b' id='big'>", HDR);
	while (o < n) {
		o += (size_t)sprintf(doc + o,
				     "<x a='v&amp;%zu' b='\xc3\xa9\xc3\xa9'>text \xe4\xb8\xad"
				     " &lt; <![CDATA[c]]></x>",
				     o);
	}
	o += (size_t)sprintf(doc + o, "</message>");
	struct run r;
	feed(doc, o, NULL, true, chunk_one, 0, &r);
	assert_false(r.error);
	assert_int_equal(r.stanzas, 1);
	assert_int_equal(r.ev[1].n, o - strlen(HDR));
	free(doc);
}

static void test_attr_decode(void **state)
{
	(void)state;
	char out[64];
	struct {
		const char *in, *out;
	} ok[] = {
		{"plain", "plain"},
		{"a&amp;b", "a&b"},
		{"&lt;&gt;&quot;&apos;", "<>\"'"},
		{"&#65;&#x42;&#x00043;", "ABC"},
		{"&#xe9;&#x1F600;", "\xc3\xa9\xf0\x9f\x98\x80"},
		{"a\tb\nc\r\nd\re", "a b c d e"},
		{"&#10;", "\n"},
		{"", ""},
	};
	for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
		struct xml_span v = {ok[k].in, (uint32_t)strlen(ok[k].in)};
		int n = xml_attr_decode(v, out, sizeof out);
		assert_int_equal(n, strlen(ok[k].out));
		assert_memory_equal(out, ok[k].out, (size_t)n);
	}
	const char *bad[] = {"&", "&amp", "&foo;", "&#;", "&#x;", "&#0;", "&#xD800;", "&#x110000;", "&#12a;"};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		struct xml_span v = {bad[k], (uint32_t)strlen(bad[k])};
		assert_int_equal(xml_attr_decode(v, out, sizeof out), -1);
	}
	/* does not fit */
	struct xml_span v = {"abcd&amp;", 9};
	assert_int_equal(xml_attr_decode(v, out, 4), -1);
	assert_int_equal(xml_attr_decode(v, out, 5), 5);
}

static void test_escape(void **state)
{
	(void)state;
	char out[64];
	const char *s = "a<b>&\"c'\td\n\r";
	int n = xml_escape(out, sizeof out, s, strlen(s), true);
	assert_int_equal(n, strlen("a&lt;b&gt;&amp;&quot;c&apos;&#9;d&#10;&#13;"));
	assert_memory_equal(out, "a&lt;b&gt;&amp;&quot;c&apos;&#9;d&#10;&#13;", (size_t)n);
	n = xml_escape(out, sizeof out, s, strlen(s), false);
	assert_memory_equal(out, "a&lt;b&gt;&amp;\"c'\td\n&#13;", (size_t)n);
	assert_int_equal(xml_escape(out, 4, "&", 1, false), -1);
	assert_int_equal(xml_escape(out, 5, "&", 1, false), 5);
	/* what xml_escape writes decodes back to the original */
	char dec[64];
	n = xml_escape(out, sizeof out, s, strlen(s), true);
	int m = xml_attr_decode((struct xml_span){out, (uint32_t)n}, dec, sizeof dec);
	assert_int_equal(m, strlen(s));
	assert_memory_equal(dec, s, (size_t)m);
}

static void test_err_names(void **state)
{
	(void)state;
	assert_string_equal(xml_err_name(XML_ERR_NOT_WELL_FORMED), "not-well-formed");
	assert_string_equal(xml_err_name(XML_ERR_RESTRICTED_XML), "restricted-xml");
	assert_string_equal(xml_err_name(XML_ERR_BAD_NAMESPACE_PREFIX), "bad-namespace-prefix");
	assert_string_equal(xml_err_name(XML_ERR_POLICY_VIOLATION), "policy-violation");
	assert_string_equal(xml_err_name(XML_ERR_UNSUPPORTED_ENCODING), "unsupported-encoding");
	for (int e = 0; e < XML_ERR__COUNT; e++)
		assert_non_null(xml_err_name((enum xml_err)e));
	assert_int_equal(xml_ns_id("jabber:server:dialback", 22), XML_NS_DIALBACK);
	assert_int_equal(xml_ns_id("jabber:server", 12), XML_NS_OTHER);
}

/* Run check_xml_file on a document, return its exit code and output. */
static int check_file(const char *doc, char *out, size_t cap)
{
	char path[] = "/tmp/fedhub-xml-XXXXXX", opath[] = "/tmp/fedhub-xmlo-XXXXXX";
	int fd = mkstemp(path), ofd = mkstemp(opath);
	assert_true(fd >= 0 && ofd >= 0);
	assert_int_equal(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
	close(fd);
	fflush(stdout);
	int saved = dup(1);
	dup2(ofd, 1);
	int rc = check_xml_file(path, NULL);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	ssize_t n = pread(ofd, out, cap - 1, 0);
	out[n > 0 ? n : 0] = 0;
	close(ofd);
	unlink(path);
	unlink(opath);
	return rc;
}

static void test_check_file(void **state)
{
	(void)state;
	char out[256];
	assert_int_equal(check_file(HDR "<presence/> <message><body>x</body></message>"
					"</stream:stream>\n",
				    out, sizeof out),
			 0);
	assert_string_equal(out, "ok 2 stanzas\n");
	/* a capture may stop between stanzas */
	assert_int_equal(check_file(HDR "<presence/>", out, sizeof out), 0);
	assert_string_equal(out, "ok 1 stanzas\n");
	assert_int_equal(check_file(HDR "<presence><x></presence>", out, sizeof out), 1);
	char want[128];
	snprintf(want, sizeof want, "error not-well-formed at byte %zu\n", strlen(HDR) + 13);
	assert_string_equal(out, want);
	/* cut inside a stanza */
	assert_int_equal(check_file(HDR "<presence>", out, sizeof out), 1);
	snprintf(want, sizeof want, "error not-well-formed at byte %zu\n", strlen(HDR) + 10);
	assert_string_equal(out, want);
	assert_int_equal(check_file(HDR "<!-- x -->", out, sizeof out), 1);
	snprintf(want, sizeof want, "error restricted-xml at byte %zu\n", strlen(HDR));
	assert_string_equal(out, want);
	assert_int_equal(check_file("", out, sizeof out), 1);
}

static void test_stanza_child(void **state)
{
	(void)state;
	struct xml_child c;
	struct xml_span v;
	const char *s = "<iq type='get' id='a&gt;'><![CDATA[<x/>]]> <ping xmlns='urn:xmpp:ping' a='/>'/></iq>";
	assert_int_equal(xml_stanza_child((struct xml_span){s, (uint32_t)strlen(s)}, &c), 0);
	assert_int_equal(c.name.n, 4);
	assert_memory_equal(c.name.p, "ping", 4);
	assert_int_equal(c.ns.n, 13);
	assert_memory_equal(c.ns.p, "urn:xmpp:ping", 13);
	assert_true(xml_attr_get(c.attrs, "a", &v));
	assert_int_equal(v.n, 2);
	assert_false(xml_attr_get(c.attrs, "xmlns:a", &v));
	/* a prefix bound on the root */
	s = "<iq xmlns:d='http://jabber.org/protocol/disco#info'><d:query node='n'/></iq>";
	assert_int_equal(xml_stanza_child((struct xml_span){s, (uint32_t)strlen(s)}, &c), 0);
	assert_int_equal(c.name.n, 5);
	assert_int_equal(c.ns.n, 37);
	assert_true(xml_attr_get(c.attrs, "node", &v));
	/* inherited namespace */
	s = "<iq><query/></iq>";
	assert_int_equal(xml_stanza_child((struct xml_span){s, (uint32_t)strlen(s)}, &c), 0);
	assert_int_equal(c.ns.n, 0);
	/* none */
	s = "<iq type='get'/>";
	assert_int_equal(xml_stanza_child((struct xml_span){s, (uint32_t)strlen(s)}, &c), -1);
	s = "<iq type='get'>text &amp; <![CDATA[<no/>]]></iq>";
	assert_int_equal(xml_stanza_child((struct xml_span){s, (uint32_t)strlen(s)}, &c), -1);
}

/* Per-stanza namespace flags, checked whole, byte by byte and split at
 * every offset (run_doc compares the flags of every way). */
static void test_stanza_prefix_flags(void **state)
{
	(void)state;
	const uint32_t M = XML_ST_HDR_PREFIX | XML_ST_PREFIXED | XML_ST_ROOT_XMLNS;
	static const struct {
		const char *st;
		uint32_t want;
	} cases[] = {
		{"<message to='a' from='b'><body>x</body></message>", 0},
		{"<message xmlns='jabber:server'/>", XML_ST_ROOT_XMLNS},
		{"<message><db:junk/></message>", XML_ST_HDR_PREFIX},
		{"<message><x db:a='1'/></message>", XML_ST_HDR_PREFIX},
		{"<message db:a='1'/>", XML_ST_HDR_PREFIX},
		{"<message><stream:error/></message>", XML_ST_HDR_PREFIX},
		{"<db:result to='a' from='b'>k</db:result>", XML_ST_HDR_PREFIX | XML_ST_PREFIXED},
		/* declared inside the stanza: self-contained */
		{"<message xmlns:db='urn:x'><db:junk/></message>", 0},
		{"<message><a xmlns:p='u'><p:b p:c='1'/></a></message>", 0},
		{"<x:message xmlns:x='jabber:server'/>", XML_ST_PREFIXED},
		{"<x:message xmlns:x='jabber:server' xmlns='u'><b/></x:message>", XML_ST_PREFIXED | XML_ST_ROOT_XMLNS},
		/* xml: is bound everywhere */
		{"<message xml:lang='en'><body xml:lang='de'/></message>", 0},
		/* once the inner declaration is out of scope the header's counts */
		{"<message><a xmlns:db='u'><db:b/></a><db:c/></message>", XML_ST_HDR_PREFIX},
		{"<message><a><b><c><db:deep/></c></b></a></message>", XML_ST_HDR_PREFIX},
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		char doc[1024];
		struct run r;
		snprintf(doc, sizeof doc, "%s%s</stream:stream>", HDR, cases[k].st);
		run_doc(doc, &r);
		if (r.error || r.stanzas != 1 || (r.ev[1].flags & M) != cases[k].want)
			fprintf(stderr, "%s: flags %#x, want %#x\n", cases[k].st, r.ev[1].flags & M, cases[k].want);
		assert_false(r.error);
		assert_int_equal(r.ev[1].flags & M, cases[k].want);
	}
}

/* One stanza through a tokenizer that has read hdr; t keeps its state. */
static void tok_stanza(struct xml_tok *t, const char *hdr, const char *st)
{
	size_t used;
	xml_tok_init(t, NULL);
	t->authenticated = true;
	assert_int_equal(xml_tok_next(t, hdr, strlen(hdr), &used), XML_EV_STREAM_OPEN);
	assert_int_equal(xml_tok_next(t, st, strlen(st), &used), XML_EV_STANZA);
	assert_int_equal(used, strlen(st));
}

static void expect_selfcontained(const char *hdr, const char *st, const char *want)
{
	struct xml_tok t, u;
	char out[1024];
	tok_stanza(&t, hdr, st);
	size_t cap = t.st.raw.n + xml_stanza_selfcontain_extra(&t);
	assert_true(cap <= sizeof out);
	int n = xml_stanza_selfcontain(&t, &t.st, out, cap);
	if (n < 0 || (size_t)n != strlen(want) || memcmp(out, want, (size_t)n))
		fprintf(stderr, "%s\n  got  %.*s\n  want %s\n", st, n < 0 ? 0 : n, out, want);
	assert_int_equal(n, (int)strlen(want));
	assert_memory_equal(out, want, (size_t)n);
	/* it parses on a stream that binds nothing but its own prefix */
	out[n] = 0;
	tok_stanza(&u,
		   "<s:stream xmlns='jabber:component:accept' xmlns:s='http://etherx.jabber.org/streams' "
		   "to='c.example'>",
		   out);
	assert_int_equal(u.st.flags & (XML_ST_HDR_PREFIX | XML_ST_PREFIXED), 0);
	/* one byte less of room is refused, not overrun */
	assert_int_equal(xml_stanza_selfcontain(&t, &t.st, out, (size_t)n - 1), -1);
}

static void test_stanza_selfcontain(void **state)
{
	(void)state;
	expect_selfcontained(HDR, "<message to='a'><db:junk/></message>",
			     "<message xmlns:stream='http://etherx.jabber.org/streams' "
			     "xmlns:db='jabber:server:dialback' to='a'><db:junk/></message>");
	/* a prefix the root binds itself is not declared twice */
	expect_selfcontained(HDR, "<message xmlns:db='u' a='1'><db:x/><stream:y/></message>",
			     "<message xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='u' a='1'>"
			     "<db:x/><stream:y/></message>");
	/* a prefixed root loses its prefix, at both ends */
	expect_selfcontained(HDR, "<x:message xmlns:x='jabber:server' to='a'><b/></x:message >",
			     "<message xmlns:x='jabber:server' to='a'><b/></message>");
	expect_selfcontained(HDR, "<x:iq xmlns:x='jabber:server'/>", "<iq xmlns:x='jabber:server'/>");
	/* a header binding whose URI needs escaping in an attribute */
	expect_selfcontained("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
			     "xmlns:p='a&amp;b&apos;c'>",
			     "<message><p:x/></message>",
			     "<message xmlns:stream='http://etherx.jabber.org/streams' xmlns:p='a&amp;b&apos;c'>"
			     "<p:x/></message>");
	/* a prefixed root that also sets a default namespace has no copy */
	struct xml_tok t;
	char out[256];
	tok_stanza(&t, HDR, "<x:message xmlns:x='jabber:server' xmlns='u'><b/></x:message>");
	assert_int_equal(xml_stanza_selfcontain(&t, &t.st, out, sizeof out), -2);
}

/* One lives in every connection: the router's per-link budget holds it to
 * a kilobyte. */
static void test_tokenizer_state_fits_in_1k(void **state)
{
	(void)state;
	assert_true(sizeof(struct xml_tok) <= 1024);
}

/* The run scanners (inline 16-byte check, AVX2 nibble tables, SSE2 and
 * scalar tails) must stop at exactly the same bytes: every ASCII byte at
 * every offset of a text run, an attribute value of each quote and a CDATA
 * section, long enough for the wide loops to be used when fed whole. */
static void test_runs_stop_at_every_byte_and_offset(void **state)
{
	(void)state;
	size_t h = strlen(HDR);
	static const struct {
		const char *open, *close;
		const char *stops; /* bytes that end or break the run */
	} kinds[] = {
		{"<message>", "</message>", "<&"},
		{"<message a='", "'/>", "<&'"},
		{"<message a=\"", "\"/>", "<&\""},
		{"<message><![CDATA[", "]]></message>", ""},
	};
	for (size_t kd = 0; kd < sizeof kinds / sizeof kinds[0]; kd++) {
		size_t on = strlen(kinds[kd].open);
		for (unsigned c = 1; c < 0x80; c++) {
			if (c == ']' && kd == 3)
				continue; /* "]]>" ends the section early */
			for (size_t p = 0; p < 70; p += (p < 40 ? 1 : 7)) {
				char doc[512];
				size_t n = 0;
				memcpy(doc, HDR, h);
				n = h;
				memcpy(doc + n, kinds[kd].open, on);
				n += on;
				memset(doc + n, 'a', p);
				n += p;
				doc[n++] = (char)c;
				memset(doc + n, 'b', 40);
				n += 40;
				n += (size_t)sprintf(doc + n, "%s", kinds[kd].close);
				struct run r1, r2;
				feed(doc, n, NULL, true, chunk_whole, 0, &r1);
				feed(doc, n, NULL, true, chunk_one, 0, &r2);
				strip_ws(&r1);
				strip_ws(&r2);
				assert_same_run(&r1, &r2);
				bool ctl = c < 0x20 && c != '\t' && c != '\n' && c != '\r';
				if (ctl) {
					assert_true(r1.error);
					assert_int_equal(r1.err, XML_ERR_INVALID_XML);
					assert_int_equal(r1.err_off, h + on + p);
				} else if (!strchr(kinds[kd].stops, (int)c)) {
					assert_false(r1.error);
					assert_int_equal(r1.stanzas, 1);
				} else {
					assert_true(r1.error);
				}
			}
		}
	}
}

/* Every ASCII byte inside an element name and an attribute name, names
 * of every length around the 16-byte vectors. */
static void test_name_bytes_every_byte_and_length(void **state)
{
	(void)state;
	for (unsigned c = 1; c < 0x80; c++) {
		bool namechar = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
				c == '-' || c == '.' || c == '_';
		for (size_t len = 1; len < 40; len += (len < 20 ? 1 : 9)) {
			char name[64], doc[1024];
			memset(name, 'n', len);
			name[len] = 0;
			/* the byte in the middle of the name, or last */
			size_t at = len / 2;
			name[at] = (char)c;
			struct run r;
			snprintf(doc, sizeof doc, "%s<%s/><m %s='v'/></stream:stream>", HDR, name, name);
			feed(doc, strlen(doc), NULL, true, chunk_whole, 0, &r);
			bool ws = c == ' ' || c == '\t' || c == '\n' || c == '\r';
			if (c == ':' && at > 0 && at + 1 < len) {
				/* a prefix nobody declared */
				assert_true(r.error);
				assert_int_equal(r.err, XML_ERR_BAD_NAMESPACE_PREFIX);
			} else if (ws && at > 0 && at + 1 == len) {
				/* "<nn />", "<m nn ='v'/>" */
				assert_false(r.error);
				assert_int_equal(strlen(r.ev[1].name), len - 1);
			} else if (namechar) {
				if (at == 0 && (c == '-' || c == '.' || (c >= '0' && c <= '9'))) {
					assert_true(r.error); /* not a NameStartChar */
					continue;
				}
				assert_false(r.error);
				assert_int_equal(r.stanzas, 2);
				assert_int_equal(strlen(r.ev[1].name), len);
				assert_memory_equal(r.ev[1].name, name, len);
			} else if (at > 0 && ws) {
				/* "<nn nn/>": an attribute without a value */
				assert_true(r.error);
				assert_int_equal(r.err, XML_ERR_NOT_WELL_FORMED);
			} else {
				assert_true(r.error);
			}
		}
	}
}

static void test_stream_level_declarations(void **state)
{
	(void)state;
	struct run r;
	/* bindings of the header hold for the whole stream, the last one of a
	 * prefix wins, and the header's prefix closes the stream */
	run_doc("<s:stream xmlns='jabber:server' xmlns:s='http://etherx.jabber.org/streams' "
		"xmlns:db='jabber:server:dialback' xmlns:x='urn:example:extra'>"
		"<x:thing/><db:result to='a'/><s:error/><message/></s:stream>",
		&r);
	assert_false(r.error);
	assert_true(r.closed);
	assert_int_equal(r.ev[0].flags, 1); /* has_dialback_ns */
	assert_string_equal(r.ev[1].ns, "urn:example:extra");
	assert_string_equal(r.ev[1].prefix, "x");
	assert_int_equal(r.ev[2].nsid, XML_NS_DIALBACK);
	assert_string_equal(r.ev[2].ns, "jabber:server:dialback");
	assert_int_equal(r.ev[3].nsid, XML_NS_STREAMS);
	assert_string_equal(r.ev[4].ns, "jabber:server");
	assert_int_equal(r.ev[4].nsid, XML_NS_SERVER);
	/* more bindings than the tokenizer keeps: refused, not truncated */
	char doc[2048];
	size_t n = (size_t)sprintf(doc, "<stream:stream xmlns='jabber:server' "
					"xmlns:stream='http://etherx.jabber.org/streams'");
	for (int k = 0; k < 6; k++)
		n += (size_t)sprintf(doc + n, " xmlns:p%d='urn:example:a-rather-long-namespace-name:%d'", k, k);
	sprintf(doc + n, ">");
	expect_error(doc, XML_ERR_POLICY_VIOLATION, 0);
}

static void test_namespace_scopes_inside_stanzas(void **state)
{
	(void)state;
	struct run r;
	/* the root's own prefix, bound on the root */
	run_doc(HDR "<q:iq xmlns:q='jabber:server' to='x'><q:a/></q:iq>", &r);
	assert_false(r.error);
	assert_int_equal(r.ev[1].nsid, XML_NS_SERVER);
	assert_string_equal(r.ev[1].ns, "jabber:server");
	/* escaped, so normalised before it is compared */
	run_doc(HDR "<q:iq xmlns:q='jabber&#58;server'/>", &r);
	assert_false(r.error);
	assert_int_equal(r.ev[1].nsid, XML_NS_SERVER);
	/* a binding ends with the element that made it, at any depth */
	expect_stanza_error("<m><a xmlns:p='u'><b><p:c/></b></a><p:d/></m>", XML_ERR_BAD_NAMESPACE_PREFIX, 35);
	expect_stanza_ok("<m xmlns:p='u'><a xmlns:q='v'><q:b p:x='1' q:x='2'/></a><p:d/></m>");
	/* the same URI under two prefixes bound at different depths */
	expect_stanza_error("<m xmlns:p='u'><a xmlns:q='u'><b p:x='1' q:x='2'/></a></m>", XML_ERR_NOT_WELL_FORMED, 30);
	/* names that share length, first and last byte are still distinct */
	expect_stanza_ok("<m axb='1' ayb='2' azb='3' to='a' id='b'/>");
	expect_stanza_error("<m axb='1' ayb='2' azb='3' ayb='4'/>", XML_ERR_NOT_WELL_FORMED, 0);
	/* declarations in scope are bounded */
	char st[1024];
	size_t n = 0;
	for (int k = 0; k <= XML_MAX_NSDECL; k++)
		n += (size_t)sprintf(st + n, "<e xmlns:p%d='u%d'>", k, k);
	expect_stanza_error(st, XML_ERR_POLICY_VIOLATION, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_header_fields),
		cmocka_unit_test(test_stream_any_prefix_and_component_ns),
		cmocka_unit_test(test_stream_bad_namespaces),
		cmocka_unit_test(test_xml_declaration),
		cmocka_unit_test(test_stream_version),
		cmocka_unit_test(test_whitespace_keepalives),
		cmocka_unit_test(test_top_level_text_rejected),
		cmocka_unit_test(test_second_stream_header_rejected),
		cmocka_unit_test(test_stream_close),
		cmocka_unit_test(test_reset_for_new_stream),
		cmocka_unit_test(test_real_stanzas_split_at_every_offset),
		cmocka_unit_test(test_stanza_fields_and_escape_flags),
		cmocka_unit_test(test_constructs_inside_stanzas),
		cmocka_unit_test(test_wellformedness_errors),
		cmocka_unit_test(test_namespace_errors),
		cmocka_unit_test(test_restricted_xml),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_big_stanza_fed_byte_by_byte),
		cmocka_unit_test(test_attr_decode),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_err_names),
		cmocka_unit_test(test_check_file),
		cmocka_unit_test(test_stanza_child),
		cmocka_unit_test(test_stanza_prefix_flags),
		cmocka_unit_test(test_stanza_selfcontain),
		cmocka_unit_test(test_tokenizer_state_fits_in_1k),
		cmocka_unit_test(test_runs_stop_at_every_byte_and_offset),
		cmocka_unit_test(test_name_bytes_every_byte_and_length),
		cmocka_unit_test(test_stream_level_declarations),
		cmocka_unit_test(test_namespace_scopes_inside_stanzas),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
