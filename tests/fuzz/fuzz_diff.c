/*
 * tests/fuzz/fuzz_diff.c — differential fuzzing of the tokenizer against
 * expat (libFuzzer).
 *
 * Byte 0 of the input: bit 0 puts a standard stream header in front. The
 * document is parsed by expat (namespace processing on) and by fedhub, fed
 * whole. fedhub must accept it iff expat does and expat's callbacks saw
 * nothing that fedhub refuses on purpose (comments, processing
 * instructions, a DTD, text or CDATA at stream level), and every stanza
 * fedhub reports must have the byte span of the matching element in expat.
 *
 * Left out by definition: documents holding non-ASCII characters outside a
 * small set (XML 1.0 fifth edition names, which we follow, and expat's
 * fourth-edition tables differ), rejections for our limits, and rejections
 * of a stream header for XMPP reasons (namespace, version, encoding, name)
 * which expat has no notion of.
 *
 * Seeds: tests/fuzz/corpus/diff/ (hand-written stanzas and streams, and the
 * inputs of past findings). Run: make fuzz && build/fuzz/fuzz_diff
 * -max_len=4096 -max_total_time=300 <a copy of that directory>
 */
#include <expat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml/xml.h"

#define HDR                                                                                     \
	"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' " \
	"xmlns:db='jabber:server:dialback' to='a.example' from='b.example' version='1.0'>"

#define MAXSP 256
struct span {
	uint64_t s, e;
};

struct ex_ctx {
	XML_Parser p;
	int depth;
	bool must_reject;
	struct span sp[MAXSP];
	int nsp;
};

static void XMLCALL ex_start(void *u, const XML_Char *name, const XML_Char **atts)
{
	struct ex_ctx *c = u;
	(void)name, (void)atts;
	if (++c->depth == 2 && c->nsp < MAXSP)
		c->sp[c->nsp].s = (uint64_t)XML_GetCurrentByteIndex(c->p);
}
static void XMLCALL ex_end(void *u, const XML_Char *name)
{
	struct ex_ctx *c = u;
	(void)name;
	if (c->depth-- == 2 && c->nsp < MAXSP) {
		c->sp[c->nsp].e = (uint64_t)XML_GetCurrentByteIndex(c->p) + (uint64_t)XML_GetCurrentByteCount(c->p);
		c->nsp++;
	}
}
static void XMLCALL ex_text(void *u, const XML_Char *s, int n)
{
	struct ex_ctx *c = u;
	if (c->depth != 1)
		return;
	for (int k = 0; k < n; k++)
		if (!strchr(" \t\r\n", s[k]))
			c->must_reject = true;
}
static void XMLCALL ex_comment(void *u, const XML_Char *s)
{
	(void)s;
	((struct ex_ctx *)u)->must_reject = true;
}
static void XMLCALL ex_pi(void *u, const XML_Char *a, const XML_Char *d)
{
	(void)a, (void)d;
	((struct ex_ctx *)u)->must_reject = true;
}
static void XMLCALL ex_cdata(void *u)
{
	struct ex_ctx *c = u;
	if (c->depth == 1)
		c->must_reject = true;
}
static void XMLCALL ex_doctype(void *u, const XML_Char *n, const XML_Char *s, const XML_Char *pu, int has)
{
	(void)n, (void)s, (void)pu, (void)has;
	((struct ex_ctx *)u)->must_reject = true;
}

static bool only_known_chars(const uint8_t *p, size_t n)
{
	/* name characters in both editions, or in neither */
	static const uint32_t known[] = {0x80, 0xB7, 0xE9, 0x4E2D, 0x6587};
	size_t i0 = n >= 3 && !memcmp(p, "\xef\xbb\xbf", 3) ? 3 : 0; /* a BOM */
	for (size_t i = i0; i < n; i++) {
		if (p[i] < 0xC2 || p[i] > 0xF4)
			continue;
		size_t len = p[i] < 0xE0 ? 2 : p[i] < 0xF0 ? 3 : 4;
		if (i + len > n)
			continue;
		uint32_t cp = p[i] & (0x7F >> len);
		bool ok = true;
		for (size_t k = 1; k < len; k++) {
			ok &= (p[i + k] & 0xC0) == 0x80;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		if (!ok)
			continue;
		bool found = false;
		for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
			found |= cp == known[k];
		if (!found)
			return false;
		i += len - 1;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1 << 16)
		return 0;
	uint8_t flags = data[0];
	data++, size--;
	static char doc[(1 << 16) + sizeof HDR];
	size_t n = 0;
	if (flags & 1) {
		memcpy(doc, HDR, sizeof HDR - 1);
		n = sizeof HDR - 1;
	}
	memcpy(doc + n, data, size);
	n += size;
	if (!only_known_chars((const uint8_t *)doc, n))
		return 0;

	static struct ex_ctx ex;
	memset(&ex, 0, sizeof ex);
	ex.p = XML_ParserCreateNS(NULL, '\x01');
	XML_SetUserData(ex.p, &ex);
	XML_SetElementHandler(ex.p, ex_start, ex_end);
	XML_SetCharacterDataHandler(ex.p, ex_text);
	XML_SetCommentHandler(ex.p, ex_comment);
	XML_SetProcessingInstructionHandler(ex.p, ex_pi);
	XML_SetStartCdataSectionHandler(ex.p, ex_cdata);
	XML_SetStartDoctypeDeclHandler(ex.p, ex_doctype);
	bool eok = XML_Parse(ex.p, doc, (int)n, 1) == XML_STATUS_OK;
	XML_ParserFree(ex.p);

	static struct xml_tok t;
	struct xml_limits lim;
	xml_limits_default(&lim);
	lim.max_stanza = lim.max_stanza_preauth = 1u << 20;
	lim.max_depth = XML_MAX_DEPTH;
	lim.max_attrs = XML_MAX_ATTRS;
	lim.max_name = 0xFFFF;
	xml_tok_init(&t, &lim);
	t.authenticated = true;
	size_t off = 0;
	bool opened = false, closed = false, err = false;
	struct span sp[MAXSP];
	int nsp = 0;
	for (;;) {
		size_t used;
		int ev = xml_tok_next(&t, doc + off, n - off, &used);
		if (ev == XML_EV_ERROR) {
			err = true;
			break;
		}
		if (ev == XML_EV_MORE)
			break;
		if (ev == XML_EV_STREAM_OPEN)
			opened = true;
		if (ev == XML_EV_STREAM_CLOSE)
			closed = true;
		if (ev == XML_EV_STANZA && nsp < MAXSP)
			sp[nsp++] = (struct span){off, off + used};
		off += used;
	}
	bool accepted = !err && closed && off == n;
	if (err && (t.err == XML_ERR_POLICY_VIOLATION ||
		    (!opened && (t.err == XML_ERR_BAD_FORMAT || t.err == XML_ERR_INVALID_NAMESPACE ||
				 t.err == XML_ERR_UNSUPPORTED_VERSION || t.err == XML_ERR_UNSUPPORTED_ENCODING))))
		return 0;
	bool expect = eok && !ex.must_reject;
	if (accepted != expect) {
		fprintf(stderr, "expat %s%s, fedhub %s (%s at %llu)\n", eok ? "accepts" : "rejects",
			ex.must_reject ? " (must reject)" : "", accepted ? "accepts" : "rejects",
			err ? xml_err_name(t.err) : "-", (unsigned long long)t.err_offset);
		abort();
	}
	if (nsp > ex.nsp) {
		fprintf(stderr, "fedhub saw %d stanzas, expat %d\n", nsp, ex.nsp);
		abort();
	}
	for (int k = 0; k < nsp; k++)
		if (sp[k].s != ex.sp[k].s || sp[k].e != ex.sp[k].e) {
			fprintf(stderr, "stanza %d: fedhub %llu-%llu, expat %llu-%llu\n", k,
				(unsigned long long)sp[k].s, (unsigned long long)sp[k].e,
				(unsigned long long)ex.sp[k].s, (unsigned long long)ex.sp[k].e);
			abort();
		}
	return 0;
}
