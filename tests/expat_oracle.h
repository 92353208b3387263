/*
 * tests/expat_oracle.h — expat as the reference for the tokenizer, shared by
 * the differential unit test (tests/unit/test_xml_expat.c) and the
 * differential fuzzer (tests/fuzz/fuzz_diff.c).
 *
 * expat parses a whole document with namespace processing on and decides
 * well-formedness. Its callbacks also flag what fedhub refuses on purpose
 * although XML allows it (comments, processing instructions, a DTD, text or
 * CDATA at the top level of the stream: RFC 6120 §4.3.5, §11.1): such a
 * document must be rejected by fedhub whatever expat says. The byte span
 * of every top-level element inside the stream (depth 2) is recorded, for
 * comparison with the stanzas fedhub reports.
 *
 * Header-only (static functions): each test program includes it once.
 */
#ifndef FEDHUB_TESTS_EXPAT_ORACLE_H
#define FEDHUB_TESTS_EXPAT_ORACLE_H

#include <expat.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ORACLE_MAXSP 256

struct oracle_span {
	uint64_t s, e;
};

struct oracle {
	XML_Parser p;
	int depth;
	bool must_reject; /* expat saw something fedhub refuses on purpose */
	struct oracle_span sp[ORACLE_MAXSP];
	int nsp;
};

static void XMLCALL oracle_start(void *u, const XML_Char *name, const XML_Char **atts)
{
	struct oracle *c = u;
	(void)name, (void)atts;
	if (++c->depth == 2 && c->nsp < ORACLE_MAXSP)
		c->sp[c->nsp].s = (uint64_t)XML_GetCurrentByteIndex(c->p);
}

static void XMLCALL oracle_end(void *u, const XML_Char *name)
{
	struct oracle *c = u;
	(void)name;
	if (c->depth-- == 2 && c->nsp < ORACLE_MAXSP) {
		c->sp[c->nsp].e = (uint64_t)XML_GetCurrentByteIndex(c->p) + (uint64_t)XML_GetCurrentByteCount(c->p);
		c->nsp++;
	}
}

static void XMLCALL oracle_text(void *u, const XML_Char *s, int n)
{
	struct oracle *c = u;
	if (c->depth != 1)
		return;
	for (int k = 0; k < n; k++)
		if (!strchr(" \t\r\n", s[k]))
			c->must_reject = true; /* text at stream level */
}

static void XMLCALL oracle_comment(void *u, const XML_Char *s)
{
	(void)s;
	((struct oracle *)u)->must_reject = true;
}

static void XMLCALL oracle_pi(void *u, const XML_Char *a, const XML_Char *d)
{
	(void)a, (void)d;
	((struct oracle *)u)->must_reject = true;
}

static void XMLCALL oracle_cdata(void *u)
{
	struct oracle *c = u;
	if (c->depth == 1)
		c->must_reject = true;
}

static void XMLCALL oracle_doctype(void *u, const XML_Char *n, const XML_Char *s, const XML_Char *pu, int has)
{
	(void)n, (void)s, (void)pu, (void)has;
	((struct oracle *)u)->must_reject = true;
}

/* Parse doc whole; true when expat accepts it. c gets the spans and flags. */
static bool oracle_run(const char *doc, size_t n, struct oracle *c)
{
	memset(c, 0, sizeof *c);
	c->p = XML_ParserCreateNS(NULL, '\x01');
	if (!c->p)
		return false;
	XML_SetUserData(c->p, c);
	XML_SetElementHandler(c->p, oracle_start, oracle_end);
	XML_SetCharacterDataHandler(c->p, oracle_text);
	XML_SetCommentHandler(c->p, oracle_comment);
	XML_SetProcessingInstructionHandler(c->p, oracle_pi);
	XML_SetStartCdataSectionHandler(c->p, oracle_cdata);
	XML_SetStartDoctypeDeclHandler(c->p, oracle_doctype);
	bool ok = XML_Parse(c->p, doc, (int)n, 1) == XML_STATUS_OK;
	XML_ParserFree(c->p);
	c->p = NULL;
	return ok;
}

/* The two parsers differ by definition on non-ASCII characters that XML 1.0
 * fifth edition (which fedhub follows) makes name characters and expat's
 * fourth-edition tables do not. True when every well-formed UTF-8 sequence
 * in p (after a BOM) is one of `known` (characters both treat alike where
 * the caller puts them); malformed sequences do not count. */
static bool oracle_only_known_chars(const uint8_t *p, size_t n, const uint32_t *known, size_t nknown)
{
	size_t i0 = n >= 3 && !memcmp(p, "\xef\xbb\xbf", 3) ? 3 : 0;
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
		for (size_t k = 0; k < nknown; k++)
			found |= cp == known[k];
		if (!found)
			return false;
		i += len - 1;
	}
	return true;
}

#endif
