/*
 * tests/unit/test_xml_util.c — xml/'s helpers around the tokenizer: value
 * decoding and escaping, error and namespace names, a stanza's children,
 * its prefix flags and its self-contained copy, and `fedhub --check-xml`
 * (router/check_xml.c) on recorded streams. The tokenizer itself is
 * tested in tests/unit/test_xml.c.
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
#include "tests/unit/xml_feeder.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attr_decode),        cmocka_unit_test(test_escape),
		cmocka_unit_test(test_err_names),          cmocka_unit_test(test_check_file),
		cmocka_unit_test(test_stanza_child),       cmocka_unit_test(test_stanza_prefix_flags),
		cmocka_unit_test(test_stanza_selfcontain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
