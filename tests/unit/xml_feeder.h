/*
 * tests/unit/xml_feeder.h — the feeder the tokenizer tests run documents
 * through (tests/unit/test_xml.c, test_xml_util.c).
 *
 * It behaves like a connection: it keeps the unconsumed bytes, moves them to
 * a freshly allocated buffer before every call (so a pointer kept across
 * calls would be caught by ASan and by the span checks) and appends the
 * next chunk. run_doc() runs a document whole, one byte at a time and split
 * in two at every offset, and requires the same events, spans and errors
 * from all of them.
 */
#ifndef FEDHUB_XML_FEEDER_H
#define FEDHUB_XML_FEEDER_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include "xml/xml.h"
#include "tests/xml_chunks.h"

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

static inline void cpy(char *dst, size_t cap, struct xml_span s)
{
	size_t n = s.n < cap - 1 ? s.n : cap - 1;
	if (n)
		memcpy(dst, s.p, n);
	dst[n] = 0;
}

/* chunk(k) gives the size of the k-th chunk; 0 means "the rest" */
typedef size_t (*chunk_fn)(size_t k, size_t arg);
static inline size_t chunk_whole(size_t k, size_t arg)
{
	(void)k, (void)arg;
	return 0;
}
static inline size_t chunk_one(size_t k, size_t arg)
{
	(void)k, (void)arg;
	return 1;
}
static inline size_t chunk_split(size_t k, size_t arg)
{
	return k == 0 ? arg : 0;
}

static inline void feed(const char *doc, size_t n, const struct xml_limits *lim, bool auth, chunk_fn fn, size_t arg,
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
		buf = xc_append(buf, have, doc + fed, c);
		assert_non_null(buf);
		have += c;
		fed += c;
	}
	r->left = have;
	free(buf);
}

static inline void assert_same_run(const struct run *a, const struct run *b)
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
static inline void strip_ws(struct run *r)
{
	int o = 0;
	for (int k = 0; k < r->nev; k++)
		if (r->ev[k].ev != XML_EV_WHITESPACE)
			r->ev[o++] = r->ev[k];
	r->nev = o;
}

/* Whole, byte by byte, split at every offset: the same result. */
static inline void run_all_ways(const char *doc, size_t n, const struct xml_limits *lim, bool auth, struct run *whole)
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

static inline void run_doc(const char *doc, struct run *r)
{
	run_all_ways(doc, strlen(doc), NULL, true, r);
}

static inline void expect_error(const char *doc, enum xml_err e, long off)
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
static inline void expect_stanza_error(const char *stanza, enum xml_err e, long off)
{
	char doc[4096];
	snprintf(doc, sizeof doc, "%s%s", HDR, stanza);
	expect_error(doc, e, off < 0 ? -1 : (long)strlen(HDR) + off);
}

static inline void expect_stanza_ok(const char *stanza)
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

#endif
