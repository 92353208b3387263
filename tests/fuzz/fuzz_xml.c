/*
 * tests/fuzz/fuzz_xml.c — the tokenizer on arbitrary bytes in arbitrary
 * chunks (libFuzzer).
 *
 * Input layout: byte 0 = flags (bit 0: put a standard stream header in
 * front so the fuzzer spends its time inside stanzas; bit 1: not yet
 * authenticated; bit 2: tight limits), byte 1 = seed of the chunk sizes,
 * the rest = the stream. The stream is tokenized once whole and once fed
 * in chunks the way a connection would (unconsumed bytes moved to a new
 * buffer, more appended); both must give the same events, spans, error and
 * error offset. Reported spans must lie inside the event's bytes, and
 * every attribute value reported is decoded (which must not fail for a
 * value the tokenizer accepted). Every stanza must be namespace-well-formed
 * on its own once the router has done its part: as it is when the tokenizer
 * flags neither a stream-header prefix nor a prefixed root, else as
 * xml_stanza_selfcontain() writes it. Both are checked by tokenizing the
 * bytes again in a stream whose header binds no prefix the stanza could
 * borrow; the copy must carry neither flag any more.
 *
 * Seeds: tests/fuzz/corpus/xml/ (hand-written stanzas and streams, and the
 * inputs of past findings). Run: make fuzz && build/fuzz/fuzz_xml
 * -max_len=4096 -max_total_time=300 <a copy of that directory>
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xml/xml.h"
#include "tests/xml_chunks.h"

#define HDR                                                                                     \
	"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' " \
	"xmlns:db='jabber:server:dialback' to='a.example' from='b.example' version='1.0'>"

struct fx_ev {
	int ev;
	uint64_t off, n;
	uint32_t name_off, name_n, to_off, to_n, flags, nsid;
};

struct fx_run {
	struct fx_ev ev[256];
	int nev;
	int err;
	uint64_t err_off;
	bool dead;
};

static void span_in(struct xml_span s, const char *buf, size_t n)
{
	if (s.n && (s.p < buf || s.p + s.n > buf + n))
		abort();
}

static void check_value(struct xml_span v)
{
	static char out[1 << 16];
	if (v.n && xml_attr_decode(v, out, sizeof out) < 0 && v.n < sizeof out / 4)
		abort(); /* the tokenizer accepted it, so it must decode */
}

/* The stanza t just returned, alone in a stream that binds nothing it
 * could borrow (only "fz", for the stream itself): one stanza, all bytes. */
static void reparse_alone(const char *p, size_t n, uint32_t must_clear)
{
	static const char bare[] = "<fz:stream xmlns='jabber:component:accept' "
				   "xmlns:fz='http://etherx.jabber.org/streams'>";
	static struct xml_tok u;
	struct xml_limits lim;
	xml_limits_widest(&lim, 1u << 20);
	xml_tok_init(&u, &lim);
	u.authenticated = true;
	size_t used;
	if (xml_tok_next(&u, bare, sizeof bare - 1, &used) != XML_EV_STREAM_OPEN)
		abort();
	if (xml_tok_next(&u, p, n, &used) != XML_EV_STANZA || used != n)
		abort();
	if (u.st.flags & must_clear)
		abort();
}

static void check_standalone(const struct xml_tok *t)
{
	const struct xml_stanza *s = &t->st;
	const uint32_t fl = XML_ST_HDR_PREFIX | XML_ST_PREFIXED;
	if (!(s->flags & XML_ST_HDR_PREFIX)) {
		/* a prefixed root may be kept (it declares its prefix itself) */
		reparse_alone(s->raw.p, s->raw.n, XML_ST_HDR_PREFIX);
		if (!(s->flags & XML_ST_PREFIXED))
			return;
	}
	size_t cap = s->raw.n + xml_stanza_selfcontain_extra(t);
	char *out = malloc(cap);
	int r = xml_stanza_selfcontain(t, s, out, cap);
	if (r == -2 && (s->flags & XML_ST_PREFIXED) && (s->flags & XML_ST_ROOT_XMLNS)) {
		free(out);
		return; /* refused by design */
	}
	if (r < 0)
		abort();
	reparse_alone(out, (size_t)r, fl);
	free(out);
}

static void fx_run(const uint8_t *doc, size_t n, const struct xml_limits *lim, bool auth, uint8_t seed, bool chunked,
		   struct fx_run *r)
{
	static struct xml_tok t;
	xml_tok_init(&t, lim);
	t.authenticated = auth;
	memset(r, 0, sizeof *r);
	char *buf = NULL;
	size_t have = 0, fed = 0;
	uint32_t cs = seed * 2654435761u + 1;
	for (;;) {
		size_t used;
		int ev = xml_tok_next(&t, buf ? buf : "", have, &used);
		if (ev == XML_EV_ERROR) {
			r->dead = true;
			r->err = t.err;
			r->err_off = t.err_offset;
			break;
		}
		if (ev > 0) {
			if (used == 0 || used > have)
				abort();
			if (ev == XML_EV_WHITESPACE) {
				/* may come in pieces when fed in pieces */
				memmove(buf, buf + used, have - used);
				have -= used;
				continue;
			}
			if (r->nev < 256) {
				struct fx_ev *e = &r->ev[r->nev++];
				memset(e, 0, sizeof *e);
				e->ev = ev;
				e->off = t.stream_off - used;
				e->n = used;
				if (ev == XML_EV_STANZA) {
					const struct xml_stanza *s = &t.st;
					if (s->raw.p != buf || s->raw.n != used)
						abort();
					span_in(s->name, buf, used);
					span_in(s->to, buf, used);
					span_in(s->from, buf, used);
					span_in(s->type, buf, used);
					span_in(s->id, buf, used);
					check_value(s->to);
					check_value(s->from);
					check_value(s->type);
					check_value(s->id);
					e->name_off = (uint32_t)(s->name.p - buf);
					e->name_n = s->name.n;
					e->to_off = s->to.n ? (uint32_t)(s->to.p - buf) : 0;
					e->to_n = s->to.n;
					e->flags = s->flags;
					e->nsid = s->nsid;
					if (!chunked)
						check_standalone(&t);
				}
				if (ev == XML_EV_STREAM_OPEN) {
					span_in(t.hdr.raw, buf, used);
					span_in(t.hdr.to, buf, used);
					span_in(t.hdr.from, buf, used);
					e->nsid = t.hdr.default_ns;
				}
			}
			memmove(buf, buf + used, have - used);
			have -= used;
			continue;
		}
		if (used != 0)
			abort();
		if (fed == n)
			break;
		size_t c = n - fed;
		if (chunked) {
			cs = cs * 1103515245u + 12345u;
			size_t k = 1 + ((cs >> 16) % 17);
			if (k < c)
				c = k;
		}
		if (!(buf = xc_append(buf, have, (const char *)doc + fed, c)))
			abort();
		have += c;
		fed += c;
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > 1 << 16)
		return 0;
	uint8_t flags = data[0], seed = data[1];
	data += 2;
	size -= 2;
	uint8_t *doc = malloc(size + sizeof HDR);
	size_t n = xc_document((char *)doc, flags & 1, HDR, data, size);

	struct xml_limits lim;
	xml_limits_default(&lim);
	if (flags & 4) {
		lim.max_stanza = 300;
		lim.max_stanza_preauth = 200;
		lim.max_depth = 4;
		lim.max_attrs = 7;
		lim.max_name = 16;
	}
	static struct fx_run a, b;
	fx_run(doc, n, &lim, !(flags & 2), seed, false, &a);
	fx_run(doc, n, &lim, !(flags & 2), seed, true, &b);
	if (a.nev != b.nev || a.dead != b.dead || a.err != b.err || a.err_off != b.err_off)
		abort();
	if (memcmp(a.ev, b.ev, sizeof a.ev[0] * (size_t)a.nev))
		abort();
	free(doc);
	return 0;
}
