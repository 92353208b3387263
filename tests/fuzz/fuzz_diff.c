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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml/xml.h"
#include "tests/expat_oracle.h"
#include "tests/xml_chunks.h"

#define HDR                                                                                     \
	"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' " \
	"xmlns:db='jabber:server:dialback' to='a.example' from='b.example' version='1.0'>"

#define MAXSP ORACLE_MAXSP

/* name characters in both editions, or in neither */
static const uint32_t known_chars[] = {0x80, 0xB7, 0xE9, 0x4E2D, 0x6587};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1 << 16)
		return 0;
	uint8_t flags = data[0];
	data++, size--;
	static char doc[(1 << 16) + sizeof HDR];
	size_t n = xc_document(doc, flags & 1, HDR, data, size);
	if (!oracle_only_known_chars((const uint8_t *)doc, n, known_chars, sizeof known_chars / sizeof known_chars[0]))
		return 0;

	static struct oracle ex;
	bool eok = oracle_run(doc, n, &ex);

	static struct xml_tok t;
	struct xml_limits lim;
	xml_limits_widest(&lim, 1u << 20);
	xml_tok_init(&t, &lim);
	t.authenticated = true;
	size_t off = 0;
	bool opened = false, closed = false, err = false;
	struct oracle_span sp[MAXSP];
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
			sp[nsp++] = (struct oracle_span){off, off + used};
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
