/*
 * tests/unit/test_xml.c — the streaming tokenizer (xml/); its value and
 * stanza helpers are tested in tests/unit/test_xml_util.c.
 *
 * Every document is run through a feeder (tests/unit/xml_feeder.h) that
 * behaves like a connection: it keeps the unconsumed bytes, moves them to a
 * freshly allocated buffer before every call (so a pointer kept across calls
 * would be caught by ASan and by the span checks) and appends the next
 * chunk. Most tests run
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

#include <cmocka.h>
#include "xml/xml.h"

#include "tests/unit/xml_feeder.h"

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
		cmocka_unit_test(test_tokenizer_state_fits_in_1k),
		cmocka_unit_test(test_runs_stop_at_every_byte_and_offset),
		cmocka_unit_test(test_name_bytes_every_byte_and_length),
		cmocka_unit_test(test_stream_level_declarations),
		cmocka_unit_test(test_namespace_scopes_inside_stanzas),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
