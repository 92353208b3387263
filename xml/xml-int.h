/*
 * xml/xml-int.h — what the files of xml/ share and nobody else sees: the
 * byte tables and run scanners (scan.c), value helpers (text.c), the
 * tokenizer's states and sub-state slots, attribute slots and the start-tag
 * bookkeeping (elem.c) that the state machine (tok.c) and the stanza
 * helpers (stanza.c) both use. The public API is xml/xml.h.
 */
#ifndef FEDHUB_XML_INT_H
#define FEDHUB_XML_INT_H

#include "xml/xml.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define XML_HAVE_SSE2 1
#endif

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------------ */
/* constants and tables */

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_XML     "http://www.w3.org/XML/1998/namespace"
#define NS_XMLNS   "http://www.w3.org/2000/xmlns/"

/* Byte classes of the ASCII range; bytes >= 0x80 have none. */
enum {
	C_NS = 1,  /* NameStartChar except ':' */
	C_NC = 2,  /* NameChar except ':' */
	C_WS = 4,  /* S */
	C_DIG = 8, /* 0-9 */
	C_HEX = 16 /* 0-9a-fA-F */
};
extern const uint8_t xml_cls[256];

/* Stop tables for the run scanners: non-zero where a run must stop. Every
 * table stops at C0 controls other than TAB/LF/CR and at non-ASCII. */
extern const uint8_t xml_stop_text[256], xml_stop_dq[256], xml_stop_sq[256], xml_stop_cdata[256];

/* run scanners (scan.c): the first stop byte in [i, end), or end */
size_t xml_scan_scalar(const uint8_t *b, size_t i, size_t end, const uint8_t *stop);
#ifdef XML_HAVE_SSE2
size_t xml_scan_sse2(const uint8_t *b, size_t i, size_t end, uint8_t c1, uint8_t c2, uint8_t c3, const uint8_t *stop);
size_t xml_scan_avx2(const uint8_t *b, size_t i, size_t end, const uint8_t *nib);
extern bool xml_have_avx2;
/* The AVX2 loop's nibble tables, one per stop table (built at start). */
extern uint8_t xml_nib_text[32], xml_nib_dq[32], xml_nib_sq[32], xml_nib_cdata[32];
#define XML_NIB(kind) xml_nib_##kind
#else
#define XML_NIB(kind) NULL
#endif

/* First byte in [i, end) that the run of this kind must stop at, or end.
 * With AVX2, non-ASCII is validated in the vector loop and is not a stop;
 * otherwise it stops there and hi_run() validates it. */
static inline __attribute__((always_inline)) size_t scan_run(const uint8_t *b, size_t i, size_t end, uint8_t c1,
							     uint8_t c2, uint8_t c3, const uint8_t *stop,
							     const uint8_t *nib)
{
#ifdef XML_HAVE_SSE2
	/* Most runs in XMPP are short and ASCII (attribute values, a word of
	 * status text): the first 16 bytes are looked at here, inline, and
	 * the call to a wide loop is made only when the run goes on or holds
	 * anything below 0x20 or above 0x7f before its end. Those are all
	 * left to the wide loop (TAB, LF, CR included), which keeps this
	 * check to six vector operations. */
	if (i + 16 <= end) {
		__m128i x = _mm_loadu_si128((const __m128i *)(b + i));
		__m128i m = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8((char)c1)),
					 _mm_cmpeq_epi8(x, _mm_set1_epi8((char)c2)));
		m = _mm_or_si128(m, _mm_cmpeq_epi8(x, _mm_set1_epi8((char)c3)));
		unsigned sp = (unsigned)_mm_movemask_epi8(m) | 0x10000;
		unsigned lo = (unsigned)_mm_movemask_epi8(_mm_cmplt_epi8(x, _mm_set1_epi8(0x20))) | 0x10000;
		unsigned ks = (unsigned)__builtin_ctz(sp), kl = (unsigned)__builtin_ctz(lo);
		if (ks < kl)
			return i + ks;
		if (kl == 16)
			i += 16;
	}
	if (xml_have_avx2) {
		i = xml_scan_avx2(b, i, end, nib);
		if (i + 32 <= end)
			return i;
	}
	return xml_scan_sse2(b, i, end, c1, c2, c3, stop);
#else
	(void)c1, (void)c2, (void)c3, (void)nib;
	return xml_scan_scalar(b, i, end, stop);
#endif
}

/* ------------------------------------------------------------------ */
/* UTF-8 and characters */

/* Decode one sequence at b[i] (b[i] >= 0x80). Returns its length, 0 when
 * the bytes so far are a valid prefix but the buffer ends, -1 when it is
 * not UTF-8 or not an XML 1.0 Char (surrogates, U+FFFE, U+FFFF). */
static inline __attribute__((always_inline)) int utf8_dec(const uint8_t *b, size_t i, size_t end, uint32_t *cp)
{
	uint8_t c = b[i];
	size_t avail = end - i;
	if (c < 0xC2)
		return -1; /* continuation byte or overlong 2-byte lead */
	if (c < 0xE0) {
		if (avail < 2)
			return 0;
		if ((b[i + 1] & 0xC0) != 0x80)
			return -1;
		*cp = ((uint32_t)(c & 0x1F) << 6) | (b[i + 1] & 0x3F);
		return 2;
	}
	if (c < 0xF0) {
		if (avail < 2)
			return 0;
		uint8_t c1 = b[i + 1];
		if ((c1 & 0xC0) != 0x80 || (c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0))
			return -1; /* overlong or surrogate */
		if (avail < 3)
			return 0;
		if ((b[i + 2] & 0xC0) != 0x80)
			return -1;
		uint32_t v = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(c1 & 0x3F) << 6) | (b[i + 2] & 0x3F);
		if (v >= 0xFFFE)
			return -1;
		*cp = v;
		return 3;
	}
	if (c < 0xF5) {
		if (avail < 2)
			return 0;
		uint8_t c1 = b[i + 1];
		if ((c1 & 0xC0) != 0x80 || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90))
			return -1; /* overlong or above U+10FFFF */
		if (avail < 3)
			return 0;
		if ((b[i + 2] & 0xC0) != 0x80)
			return -1;
		if (avail < 4)
			return 0;
		if ((b[i + 3] & 0xC0) != 0x80)
			return -1;
		*cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(c1 & 0x3F) << 12) |
		      ((uint32_t)(b[i + 2] & 0x3F) << 6) | (b[i + 3] & 0x3F);
		return 4;
	}
	return -1;
}

static inline bool xml_is_char(uint32_t v)
{
	return v == 0x9 || v == 0xA || v == 0xD || (v >= 0x20 && v <= 0xD7FF) || (v >= 0xE000 && v <= 0xFFFD) ||
	       (v >= 0x10000 && v <= 0x10FFFF);
}

/* XML 1.0 fifth edition NameStartChar / NameChar above ASCII (scan.c). */
bool xml_name_start_hi(uint32_t v);
bool xml_name_char_hi(uint32_t v);

/* A namespace name as expat compares it: decoded and normalised. Values
 * without '&' or TAB/LF/CR are used in place; others are decoded into buf.
 * Values too long for buf are compared raw (they cannot equal any name we
 * treat specially, and two of them differing only in escapes is absurd). */
struct ns_view {
	const char *p;
	size_t n;
};

struct ns_view xml_ns_norm(const uint8_t *p, size_t n, bool amp, char *buf, size_t cap);

static inline bool view_eq(struct ns_view a, const char *s)
{
	return a.n == strlen(s) && !memcmp(a.p, s, a.n);
}

/* ------------------------------------------------------------------ */
/* tokenizer states */

enum {
	S_INIT = 0, /* stream start: optional BOM */
	S_INIT2,    /* optional <?xml ...?> */
	S_XMLDECL,  /* inside the XML declaration, looking for "?>" */
	S_PRE_HDR,  /* whitespace before <stream:stream */
	S_TOP,      /* between stanzas */
	S_TOP_LT,   /* '<' at top level */
	S_CLOSE_NAME,
	S_CLOSE_WS, /* </stream:stream> */
	S_CLOSED,   /* after </stream:stream> */
	S_DEAD,
	/* inside the header or a stanza */
	S_STAG_NAME0,
	S_STAG_NAME,
	S_STAG_IN,
	S_ATTR_NAME0,
	S_ATTR_NAME,
	S_ATTR_EQ,
	S_ATTR_Q,
	S_ATTR_VAL,
	S_EMPTY_GT,
	S_TEXT,
	S_TEXT_RBR,
	S_LT,
	S_ETAG_NAME,
	S_ETAG_WS,
	S_BANG,
	S_CDATA,
	S_CDATA_RBR,
	S_REF,
};

/* t->sub[] slots */
enum {
	K_MODE,  /* MODE_HDR or MODE_STANZA */
	K_TOK,   /* start of the name being read */
	K_COLON, /* its colon position + 1 */
	K_NAME,  /* element name of the open tag: offset, length, colon */
	K_NLEN,
	K_NCOLON,
	K_WS, /* whitespace seen since the last name/value in a tag */
	K_QUOTE,
	K_CNT,    /* ']' run length / "[CDATA[" match progress */
	K_REFTOK, /* '&' of the reference being read */
	K_REFST,  /* reference sub-state */
	K_REFVAL, /* character reference value so far */
	K_RET,    /* state to return to after the reference */
	K_HDR,    /* offset of '<' of the stream header */
	K__N
};
_Static_assert(K__N <= sizeof((struct xml_tok *)0)->sub / sizeof(uint32_t), "sub[] too small");

/* One attribute of the start tag being read. These live on the stack of
 * xml_tok_next(), not in struct xml_tok: a start tag read in one call has
 * its slots filled as it is scanned; one that spans calls is re-read from
 * its '<' when its '>' arrives (xml_tag_attrs()), which costs one pass over a
 * tag whose bytes are already validated, never a pass over the stanza. */
struct xml_attr_slot {
	uint32_t name, val, vlen; /* offsets of the name and value, value length */
	uint16_t nlen, colon;     /* name length; colon position + 1, 0 if none */
	uint8_t amp;              /* value contains '&' */
};

/* Where the namespace of a stanza's root comes from (xml_root_rec.ns_src). */
enum {
	NSRC_PENDING, /* ns is a span of the pending bytes */
	NSRC_DEFAULT, /* the stream's default namespace */
	NSRC_NONE,    /* no namespace */
	NSRC_XML,     /* the xml prefix */
	NSRC_DECL,    /* a stream-level binding: ns.off is an offset in decls[] */
};
enum { MODE_HDR = 1, MODE_STANZA = 2 };

static inline int xml_tok_fail(struct xml_tok *t, enum xml_err e, size_t at)
{
	t->err = e;
	t->err_offset = t->stream_off + at;
	t->state = S_DEAD;
	return XML_EV_ERROR;
}

/* Stream-level bindings are packed in t->decls as [plen][ulen][prefix][uri]. */
static inline const char *decl_pfx(const struct xml_tok *t, unsigned e)
{
	return t->decls + e + 2;
}
static inline const char *decl_uri(const struct xml_tok *t, unsigned e)
{
	return t->decls + e + 2 + (uint8_t)t->decls[e];
}
static inline unsigned decl_next(const struct xml_tok *t, unsigned e)
{
	return e + 2 + (uint8_t)t->decls[e] + (uint8_t)t->decls[e + 1];
}

static inline bool is_xmlns_attr(const uint8_t *b, const struct xml_attr_slot *a)
{
	if (b[a->name] != 'x')
		return false;
	if (a->colon == 0)
		return a->nlen == 5 && !memcmp(b + a->name, "xmlns", 5);
	return a->colon == 6 && !memcmp(b + a->name, "xmlns", 5);
}

/* Before the stream header (prolog.c): 0 with b[*pi] the header's '<',
 * 1 for more bytes (*pst, *pi say where to resume), -1 on error. */
int xml_prolog(struct xml_tok *t, const uint8_t *b, size_t *pi, size_t end, int *pst);

/* Start tags (elem.c). */
unsigned xml_tag_attrs(const uint8_t *b, size_t lt, size_t end, struct xml_attr_slot *a);
int xml_elem_start_full(struct xml_tok *t, const uint8_t *b, bool empty, size_t endpos, struct xml_attr_slot *at,
			bool fresh);

#endif
