/*
 * xml/xml.c — the streaming tokenizer behind every XMPP stream of the hub.
 *
 * Design
 * ------
 * The tokenizer is one resumable state machine over the caller's bytes. The
 * pending token (stream header or one top-level stanza) always starts at
 * buf[0]: every event tells the caller how many bytes it covered, and the
 * caller keeps everything after that. So every position the machine needs to
 * remember is an offset from buf[0] and stays valid when the caller moves the
 * bytes or appends more. Each state can stop at any byte: the state number,
 * the scan position (t->scan) and a handful of counters in t->sub[] are all
 * that survives an XML_EV_MORE return, so a stanza fed one byte at a time is
 * still scanned once, not once per call. The re-reads on resumption are a
 * UTF-8 sequence cut by the chunk boundary (at most 3 bytes) and, once per
 * start tag cut by a boundary, that tag's attribute list (below).
 *
 * Memory. A struct xml_tok lives in every connection, so it is kept under
 * 1 KiB (a unit test holds it there); what it keeps, and what it does not:
 *  - the attributes of the start tag being read (for duplicate checks,
 *    xmlns declarations, the root's to/from/type/id) are slots on the stack
 *    of xml_tok_next(), filled while the tag is scanned. A tag that spans
 *    calls has its slots rebuilt from its '<' when its '>' arrives
 *    (tag_attrs()): one pass over a tag whose bytes are already validated,
 *    bounded by the tag, never by the stanza, and only for cut tags;
 *  - the open elements are the offsets of their names; a name's length is
 *    found again at its end tag (where it ends at whitespace, '/' or '>');
 *  - the xmlns:p declarations in scope inside a stanza are the offsets of
 *    those attributes; their prefix and value are read from the bytes when
 *    a prefix is resolved, and the declarations of an element are those
 *    after its name, which is how an end tag drops them;
 *  - the stream header's bindings, which outlive its bytes, are copied into
 *    one packed array (a header declares two or three); its default
 *    namespace is kept as its enum xml_ns, the only two accepted.
 *
 * Speed comes from the long runs and from the common shapes. Character data,
 * attribute values and CDATA are skipped 32 bytes (AVX2, chosen at
 * start-up; two nibble-table shuffles classify the bytes) or 16 bytes (SSE2)
 * at a time, stopping only at the bytes that matter there ('<', '&', ']',
 * the quote, control characters); AVX2 validates UTF-8 in the vector loop,
 * otherwise non-ASCII stops the run and a scalar loop validates it. Element
 * and attribute names of the usual shape (ASCII, no prefix, under 17 bytes,
 * then '>', '/', whitespace or ="...) are classified with what follows them
 * in one 16-byte vector; anything else goes through the states one byte
 * class at a time (a 256-entry table). Most end tags are matched against
 * their start tag in one vector compare.
 *
 * What is checked: full XML 1.0 well-formedness inside stanzas (matching end
 * tags at every depth, attribute syntax, duplicate attributes by qualified
 * and by expanded name, character and entity references, "]]>" in text,
 * UTF-8 and Char validity), XML namespaces (QName syntax, undeclared
 * prefixes, the reserved xml/xmlns bindings) and the restricted XML of
 * RFC 6120 §11.1: comments, processing instructions, DTDs and undeclared
 * entity references are refused. CDATA sections are allowed inside stanzas.
 * The rules follow the W3C specifications; where they leave a choice we do
 * what expat does, since the differential test holds us to it.
 *
 * Only the stream header and the top-level element of each stanza are
 * reported; deeper elements are checked and skipped.
 */
#include "xml/xml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mxml.h>

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

static const char *const err_names[XML_ERR__COUNT] = {
	[XML_OK] = "ok",
	[XML_ERR_NOT_WELL_FORMED] = "not-well-formed",
	[XML_ERR_RESTRICTED_XML] = "restricted-xml",
	[XML_ERR_INVALID_NAMESPACE] = "invalid-namespace",
	[XML_ERR_BAD_NAMESPACE_PREFIX] = "bad-namespace-prefix",
	[XML_ERR_BAD_FORMAT] = "bad-format",
	[XML_ERR_POLICY_VIOLATION] = "policy-violation",
	[XML_ERR_UNSUPPORTED_ENCODING] = "unsupported-encoding",
	[XML_ERR_INVALID_XML] = "invalid-xml",
	[XML_ERR_UNSUPPORTED_VERSION] = "unsupported-version",
};

const char *xml_err_name(enum xml_err e)
{
	if ((unsigned)e >= XML_ERR__COUNT)
		return "undefined-condition";
	return err_names[e];
}

void xml_limits_default(struct xml_limits *l)
{
	/* RFC 6120 §13.12: at least 10000 bytes must be accepted; real
	 * traffic (vCards, MAM pages, pubsub items) needs far more. */
	l->max_stanza = 256 * 1024;
	l->max_stanza_preauth = 64 * 1024;
	l->max_depth = 48;
	l->max_attrs = 32;
	l->max_name = 256;
}

/* Byte classes of the ASCII range; bytes >= 0x80 have none. */
enum {
	C_NS = 1,  /* NameStartChar except ':' */
	C_NC = 2,  /* NameChar except ':' */
	C_WS = 4,  /* S */
	C_DIG = 8, /* 0-9 */
	C_HEX = 16 /* 0-9a-fA-F */
};
static const uint8_t cls[256] = {
	['\t'] = C_WS,
	['\n'] = C_WS,
	['\r'] = C_WS,
	[' '] = C_WS,
	['A' ... 'F'] = C_NS | C_NC | C_HEX,
	['G' ... 'Z'] = C_NS | C_NC,
	['a' ... 'f'] = C_NS | C_NC | C_HEX,
	['g' ... 'z'] = C_NS | C_NC,
	['_'] = C_NS | C_NC,
	['0' ... '9'] = C_NC | C_DIG | C_HEX,
	['-'] = C_NC,
	['.'] = C_NC,
};

/* Stop tables for the run scanners: non-zero where a run must stop. Every
 * table stops at C0 controls other than TAB/LF/CR and at non-ASCII. */
#define STOP_COMMON [0 ... 8] = 1, [11 ... 12] = 1, [14 ... 31] = 1, [128 ... 255] = 1
static const uint8_t stop_text[256] = {STOP_COMMON, ['<'] = 1, ['&'] = 1, [']'] = 1};
static const uint8_t stop_dq[256] = {STOP_COMMON, ['"'] = 1, ['<'] = 1, ['&'] = 1};
static const uint8_t stop_sq[256] = {STOP_COMMON, ['\''] = 1, ['<'] = 1, ['&'] = 1};
static const uint8_t stop_cdata[256] = {STOP_COMMON, [']'] = 1};

/* ------------------------------------------------------------------ */
/* run scanners */

static size_t scan_scalar(const uint8_t *b, size_t i, size_t end, const uint8_t *stop)
{
	while (i < end && !stop[b[i]])
		i++;
	return i;
}

#ifdef XML_HAVE_SSE2
/* The wide loads flag candidates (the three special bytes, anything below
 * 0x20 and anything above 0x7f as signed < 0x20); TAB/LF/CR are candidates
 * too and are dismissed through the stop table, which keeps the vector part
 * at seven instructions per block. */
static size_t scan_sse2(const uint8_t *b, size_t i, size_t end, uint8_t c1, uint8_t c2, uint8_t c3, const uint8_t *stop)
{
	const __m128i v1 = _mm_set1_epi8((char)c1), v2 = _mm_set1_epi8((char)c2);
	const __m128i v3 = _mm_set1_epi8((char)c3), sp = _mm_set1_epi8(0x20);
	while (i + 16 <= end) {
		__m128i x = _mm_loadu_si128((const __m128i *)(b + i));
		__m128i m = _mm_or_si128(_mm_cmpeq_epi8(x, v1), _mm_cmpeq_epi8(x, v2));
		m = _mm_or_si128(m, _mm_cmpeq_epi8(x, v3));
		m = _mm_or_si128(m, _mm_cmplt_epi8(x, sp));
		unsigned mask = (unsigned)_mm_movemask_epi8(m);
		while (mask) {
			unsigned k = (unsigned)__builtin_ctz(mask);
			if (stop[b[i + k]])
				return i + k;
			mask &= mask - 1;
		}
		i += 16;
	}
	return scan_scalar(b, i, end, stop);
}

/*
 * AVX2 run scanner with UTF-8 validation in the vector unit, after Keiser &
 * Lemire, "Validating UTF-8 In Less Than One Instruction Per Byte" (2021):
 * three nibble lookups classify every (byte, previous byte) pair, and the
 * bytes that must be 3rd/4th of a sequence are found from the bytes two and
 * three back. On top of UTF-8, EF BF BE / EF BF BF (U+FFFE, U+FFFF, not XML
 * Chars) are refused. Non-ASCII is therefore not a stop here. Any error,
 * and a sequence cut by the end of the vector loop, hands back to the
 * scalar path at a character boundary: the scalar decoder is the one that
 * reports errors, so the error offset never depends on how bytes came in.
 */
#define U8_TOO_SHORT      (1 << 0)
#define U8_TOO_LONG       (1 << 1)
#define U8_OVERLONG_3     (1 << 2)
#define U8_TOO_LARGE      (1 << 3)
#define U8_SURROGATE      (1 << 4)
#define U8_OVERLONG_2     (1 << 5)
#define U8_TOO_LARGE_1000 (1 << 6)
#define U8_OVERLONG_4     (1 << 6)
#define U8_TWO_CONTS      (1 << 7)
#define U8_CARRY          (U8_TOO_SHORT | U8_TOO_LONG | U8_TWO_CONTS)

/* The three nibble tables, 16 entries each (broadcast to both lanes). */
static const uint8_t u8_t1[16] = {U8_TOO_LONG,
				  U8_TOO_LONG,
				  U8_TOO_LONG,
				  U8_TOO_LONG,
				  U8_TOO_LONG,
				  U8_TOO_LONG,
				  U8_TOO_LONG,
				  U8_TOO_LONG,
				  U8_TWO_CONTS,
				  U8_TWO_CONTS,
				  U8_TWO_CONTS,
				  U8_TWO_CONTS,
				  U8_TOO_SHORT | U8_OVERLONG_2,
				  U8_TOO_SHORT,
				  U8_TOO_SHORT | U8_OVERLONG_3 | U8_SURROGATE,
				  U8_TOO_SHORT | U8_TOO_LARGE | U8_TOO_LARGE_1000 | U8_OVERLONG_4};
static const uint8_t u8_t2[16] = {U8_CARRY | U8_OVERLONG_3 | U8_OVERLONG_2 | U8_OVERLONG_4,
				  U8_CARRY | U8_OVERLONG_2,
				  U8_CARRY,
				  U8_CARRY,
				  U8_CARRY | U8_TOO_LARGE,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000 | U8_SURROGATE,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
				  U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000};
static const uint8_t u8_t3[16] = {U8_TOO_SHORT,
				  U8_TOO_SHORT,
				  U8_TOO_SHORT,
				  U8_TOO_SHORT,
				  U8_TOO_SHORT,
				  U8_TOO_SHORT,
				  U8_TOO_SHORT,
				  U8_TOO_SHORT,
				  U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_OVERLONG_3 | U8_TOO_LARGE_1000 |
					  U8_OVERLONG_4,
				  U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_OVERLONG_3 | U8_TOO_LARGE,
				  U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_SURROGATE | U8_TOO_LARGE,
				  U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_SURROGATE | U8_TOO_LARGE,
				  U8_TOO_SHORT,
				  U8_TOO_SHORT,
				  U8_TOO_SHORT,
				  U8_TOO_SHORT};
/* "unfinished at the end of the vector": last byte >= C0, the one before
 * >= E0, the one before that >= F0 */
static const uint8_t u8_inc_max[32] = {255, 255, 255, 255, 255, 255, 255, 255,      255,      255,     255,
				       255, 255, 255, 255, 255, 255, 255, 255,      255,      255,     255,
				       255, 255, 255, 255, 255, 255, 255, 0xF0 - 1, 0xE0 - 1, 0xC0 - 1};

__attribute__((target("avx2"))) static inline __m256i u8_table(const uint8_t *t)
{
	return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
}

/* x shifted right by n bytes across the lane boundary, the n bytes coming
 * from the end of prev. */
__attribute__((target("avx2"))) static inline __m256i u8_prev(__m256i x, __m256i prev, int n)
{
	__m256i t = _mm256_permute2x128_si256(prev, x, 0x21);
	switch (n) {
	case 1:
		return _mm256_alignr_epi8(x, t, 15);
	case 2:
		return _mm256_alignr_epi8(x, t, 14);
	default:
		return _mm256_alignr_epi8(x, t, 13);
	}
}

/* Error bits for the 32 bytes of x given the 32 before them. */
__attribute__((target("avx2"))) static inline __m256i u8_errors(__m256i x, __m256i prev)
{
	const __m256i lo4 = _mm256_set1_epi8(0x0F);
	const __m256i t1 = u8_table(u8_t1), t2 = u8_table(u8_t2), t3 = u8_table(u8_t3);
	__m256i p1 = u8_prev(x, prev, 1), p2 = u8_prev(x, prev, 2), p3 = u8_prev(x, prev, 3);
	__m256i b1h = _mm256_shuffle_epi8(t1, _mm256_and_si256(_mm256_srli_epi16(p1, 4), lo4));
	__m256i b1l = _mm256_shuffle_epi8(t2, _mm256_and_si256(p1, lo4));
	__m256i b2h = _mm256_shuffle_epi8(t3, _mm256_and_si256(_mm256_srli_epi16(x, 4), lo4));
	__m256i sc = _mm256_and_si256(_mm256_and_si256(b1h, b1l), b2h);
	__m256i third = _mm256_subs_epu8(p2, _mm256_set1_epi8((char)(0xE0 - 0x80)));
	__m256i fourth = _mm256_subs_epu8(p3, _mm256_set1_epi8((char)(0xF0 - 0x80)));
	__m256i must23 = _mm256_and_si256(_mm256_or_si256(third, fourth), _mm256_set1_epi8((char)0x80));
	__m256i err = _mm256_xor_si256(must23, sc);
	/* U+FFFE and U+FFFF: valid UTF-8, not XML 1.0 Chars */
	__m256i nc = _mm256_and_si256(
		_mm256_and_si256(_mm256_cmpeq_epi8(p2, _mm256_set1_epi8((char)0xEF)),
				 _mm256_cmpeq_epi8(p1, _mm256_set1_epi8((char)0xBF))),
		_mm256_cmpeq_epi8(_mm256_or_si256(x, _mm256_set1_epi8(1)), _mm256_set1_epi8((char)0xBF)));
	return _mm256_or_si256(err, nc);
}

/* Back from position i (a vector boundary) to the lead byte of a sequence
 * that the previous vector left unfinished. */
static inline size_t u8_backoff(const uint8_t *b, size_t i, size_t floor)
{
	for (size_t k = 1; k <= 3 && i - k >= floor; k++)
		if (b[i - k] >= 0xC0)
			return i - k;
	return i;
}

/* Nibble tables of the run kinds for scan_avx2: byte x stops a run when
 * lo[x & 15] & hi[x >> 4] is not zero. Bits 0 and 1 flag the C0 controls
 * other than TAB, LF and CR (high nibble 0 and 1), bits 2-4 the kind's
 * special bytes, one bit each so that no other byte can match. High
 * nibbles 8-F have no bit: non-ASCII is validated as UTF-8 instead. One
 * pair of shuffles thus replaces eight compares per 32 bytes. Built at
 * start-up from the stop tables' special bytes. */
static uint8_t nib_text[32], nib_dq[32], nib_sq[32], nib_cdata[32];

static void nib_build(uint8_t *t, const char *special)
{
	for (unsigned n = 0; n < 16; n++) {
		t[n] = 2; /* 0x10-0x1F */
		if (n != '\t' && n != '\n' && n != '\r')
			t[n] |= 1; /* 0x00-0x0F */
	}
	t[16 + 0] = 1;
	t[16 + 1] = 2;
	for (unsigned k = 0; special[k]; k++) {
		uint8_t c = (uint8_t)special[k], bit = (uint8_t)(4u << k);
		t[c & 15] |= bit;
		t[16 + (c >> 4)] |= bit;
	}
}

static inline const uint8_t *nib_for(const uint8_t *stop)
{
	return stop == stop_text ? nib_text : stop == stop_dq ? nib_dq : stop == stop_sq ? nib_sq : nib_cdata;
}

__attribute__((target("avx2"))) static size_t scan_avx2(const uint8_t *b, size_t i, size_t end, const uint8_t *nib)
{
	const __m256i lo_t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nib));
	const __m256i hi_t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(nib + 16)));
	const __m256i lo4 = _mm256_set1_epi8(0x0F), zero = _mm256_setzero_si256();
	const __m256i inc_max = _mm256_loadu_si256((const __m256i *)u8_inc_max);
	const size_t start = i;
	__m256i prev = zero;
	bool carry = false; /* the previous vector ended inside a sequence */
	while (i + 32 <= end) {
		__m256i x = _mm256_loadu_si256((const __m256i *)(b + i));
		__m256i cl = _mm256_shuffle_epi8(lo_t, _mm256_and_si256(x, lo4));
		__m256i ch = _mm256_shuffle_epi8(hi_t, _mm256_and_si256(_mm256_srli_epi16(x, 4), lo4));
		__m256i none = _mm256_cmpeq_epi8(_mm256_and_si256(cl, ch), zero);
		unsigned mask = ~(unsigned)_mm256_movemask_epi8(none);
		unsigned k = mask ? (unsigned)__builtin_ctz(mask) : 32;
		unsigned hi = (unsigned)_mm256_movemask_epi8(x);
		if (hi || carry) {
			__m256i e = u8_errors(x, prev);
			unsigned em = ~(unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(e, zero));
			uint64_t upto = k < 32 ? (2ull << k) - 1 : 0xFFFFFFFFull;
			if (em & upto) /* let the scalar decoder say where and why */
				return carry ? u8_backoff(b, i, start) : i + (unsigned)__builtin_ctz(hi);
			carry = !_mm256_testz_si256(_mm256_subs_epu8(x, inc_max), _mm256_subs_epu8(x, inc_max));
		}
		if (k < 32)
			return i + k;
		prev = x;
		i += 32;
	}
	if (carry)
		return u8_backoff(b, i, start);
	return i; /* the caller finishes the last bytes */
}

static bool have_avx2;
__attribute__((constructor)) static void xml_cpu_init(void)
{
	__builtin_cpu_init();
	have_avx2 = __builtin_cpu_supports("avx2") && !getenv("FEDHUB_XML_NO_AVX2");
	nib_build(nib_text, "<&]");
	nib_build(nib_dq, "\"<&");
	nib_build(nib_sq, "'<&");
	nib_build(nib_cdata, "]");
}
#endif

/* First byte in [i, end) that the run of this kind must stop at, or end.
 * With AVX2, non-ASCII is validated in the vector loop and is not a stop;
 * otherwise it stops there and hi_run() validates it. */
static inline __attribute__((always_inline)) size_t scan_run(const uint8_t *b, size_t i, size_t end, uint8_t c1,
							     uint8_t c2, uint8_t c3, const uint8_t *stop)
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
	if (have_avx2) {
		i = scan_avx2(b, i, end, nib_for(stop));
		if (i + 32 <= end)
			return i;
	}
	return scan_sse2(b, i, end, c1, c2, c3, stop);
#else
	(void)c1, (void)c2, (void)c3;
	return scan_scalar(b, i, end, stop);
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

/* XML 1.0 fifth edition NameStartChar / NameChar above ASCII. */
static bool name_start_hi(uint32_t v)
{
	return (v >= 0xC0 && v <= 0xD6) || (v >= 0xD8 && v <= 0xF6) || (v >= 0xF8 && v <= 0x2FF) ||
	       (v >= 0x370 && v <= 0x37D) || (v >= 0x37F && v <= 0x1FFF) || (v >= 0x200C && v <= 0x200D) ||
	       (v >= 0x2070 && v <= 0x218F) || (v >= 0x2C00 && v <= 0x2FEF) || (v >= 0x3001 && v <= 0xD7FF) ||
	       (v >= 0xF900 && v <= 0xFDCF) || (v >= 0xFDF0 && v <= 0xFFFD) || (v >= 0x10000 && v <= 0xEFFFF);
}

static bool name_char_hi(uint32_t v)
{
	return name_start_hi(v) || v == 0xB7 || (v >= 0x300 && v <= 0x36F) || (v >= 0x203F && v <= 0x2040);
}

static size_t utf8_put(char *o, uint32_t v)
{
	if (v < 0x80) {
		o[0] = (char)v;
		return 1;
	}
	if (v < 0x800) {
		o[0] = (char)(0xC0 | (v >> 6));
		o[1] = (char)(0x80 | (v & 0x3F));
		return 2;
	}
	if (v < 0x10000) {
		o[0] = (char)(0xE0 | (v >> 12));
		o[1] = (char)(0x80 | ((v >> 6) & 0x3F));
		o[2] = (char)(0x80 | (v & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (v >> 18));
	o[1] = (char)(0x80 | ((v >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((v >> 6) & 0x3F));
	o[3] = (char)(0x80 | (v & 0x3F));
	return 4;
}

/* ------------------------------------------------------------------ */
/* values: decoding, escaping, namespace names */

int xml_attr_decode(struct xml_span v, char *out, size_t cap)
{
	const uint8_t *p = (const uint8_t *)v.p;
	size_t o = 0;
	for (size_t i = 0; i < v.n;) {
		uint8_t c = p[i];
		char tmp[4];
		size_t tn = 1;
		if (c == '&') {
			size_t j = i + 1;
			while (j < v.n && p[j] != ';' && j - i < 16)
				j++;
			if (j >= v.n || p[j] != ';')
				return -1;
			const char *e = (const char *)p + i + 1;
			size_t en = j - i - 1;
			if (en >= 2 && e[0] == '#') {
				uint32_t cp = 0;
				size_t k = 1;
				bool hex = e[1] == 'x';
				if (hex)
					k = 2;
				if (k >= en)
					return -1;
				for (; k < en; k++) {
					uint8_t d = (uint8_t)e[k];
					if (hex ? !(cls[d] & C_HEX) : !(cls[d] & C_DIG))
						return -1;
					uint32_t dv = d <= '9' ? d - '0' : (d | 0x20) - 'a' + 10;
					cp = cp * (hex ? 16 : 10) + dv;
					if (cp > 0x10FFFF)
						return -1;
				}
				if (!xml_is_char(cp))
					return -1;
				tn = utf8_put(tmp, cp);
			} else if (en == 2 && !memcmp(e, "lt", 2)) {
				tmp[0] = '<';
			} else if (en == 2 && !memcmp(e, "gt", 2)) {
				tmp[0] = '>';
			} else if (en == 3 && !memcmp(e, "amp", 3)) {
				tmp[0] = '&';
			} else if (en == 4 && !memcmp(e, "quot", 4)) {
				tmp[0] = '"';
			} else if (en == 4 && !memcmp(e, "apos", 4)) {
				tmp[0] = '\'';
			} else {
				return -1;
			}
			i = j + 1;
		} else if (c == '\r' || c == '\n' || c == '\t') {
			/* attribute value normalisation (XML 1.0 §3.3.3) */
			tmp[0] = ' ';
			i += (c == '\r' && i + 1 < v.n && p[i + 1] == '\n') ? 2 : 1;
		} else {
			tmp[0] = (char)c;
			i++;
		}
		if (o + tn > cap)
			return -1;
		memcpy(out + o, tmp, tn);
		o += tn;
	}
	return o > (size_t)INT32_MAX ? -1 : (int)o;
}

int xml_escape(char *out, size_t cap, const char *s, size_t n, bool attr)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		const char *r = NULL;
		switch (s[i]) {
		case '&':
			r = "&amp;";
			break;
		case '<':
			r = "&lt;";
			break;
		case '>':
			r = "&gt;";
			break;
		case '"':
			r = attr ? "&quot;" : NULL;
			break;
		case '\'':
			r = attr ? "&apos;" : NULL;
			break;
		/* keep them through attribute-value normalisation */
		case '\t':
			r = attr ? "&#9;" : NULL;
			break;
		case '\n':
			r = attr ? "&#10;" : NULL;
			break;
		case '\r':
			r = "&#13;";
			break; /* end-of-line handling eats bare CR */
		}
		size_t rn = r ? strlen(r) : 1;
		if (o + rn > cap)
			return -1;
		if (r)
			memcpy(out + o, r, rn);
		else
			out[o] = s[i];
		o += rn;
	}
	return o > (size_t)INT32_MAX ? -1 : (int)o;
}

enum xml_ns xml_ns_id(const char *uri, size_t n)
{
#define KNOWN(s, id)                \
	{                           \
		s, sizeof s - 1, id \
	}
	static const struct {
		const char *s;
		size_t n;
		enum xml_ns id;
	} known[] = {
		KNOWN("jabber:server", XML_NS_SERVER),
		KNOWN("jabber:component:accept", XML_NS_COMPONENT),
		KNOWN(NS_STREAMS, XML_NS_STREAMS),
		KNOWN("jabber:server:dialback", XML_NS_DIALBACK),
		KNOWN("urn:ietf:params:xml:ns:xmpp-tls", XML_NS_TLS),
		KNOWN("urn:ietf:params:xml:ns:xmpp-sasl", XML_NS_SASL),
	};
#undef KNOWN
	/* lengths differ but for two; look at the length first */
	for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
		if (known[k].n == n && !memcmp(known[k].s, uri, n))
			return known[k].id;
	return XML_NS_OTHER;
}

/* A namespace name as expat compares it: decoded and normalised. Values
 * without '&' or TAB/LF/CR are used in place; others are decoded into buf.
 * Values too long for buf are compared raw (they cannot equal any name we
 * treat specially, and two of them differing only in escapes is absurd). */
struct ns_view {
	const char *p;
	size_t n;
};

static struct ns_view ns_norm(const uint8_t *p, size_t n, bool amp, char *buf, size_t cap)
{
	struct ns_view v = {(const char *)p, n};
	bool plain = !amp;
	if (plain)
		for (size_t i = 0; i < n; i++)
			if (p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
				plain = false;
				break;
			}
	if (!plain) {
		int r = xml_attr_decode((struct xml_span){(const char *)p, (uint32_t)n}, buf, cap);
		if (r >= 0) {
			v.p = buf;
			v.n = (size_t)r;
		}
	}
	return v;
}

static bool view_eq(struct ns_view a, const char *s)
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
 * its '<' when its '>' arrives (tag_attrs()), which costs one pass over a
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

static int tok_fail(struct xml_tok *t, enum xml_err e, size_t at)
{
	t->err = e;
	t->err_offset = t->stream_off + at;
	t->state = S_DEAD;
	return XML_EV_ERROR;
}

void xml_tok_init(struct xml_tok *t, const struct xml_limits *lim)
{
	memset(t, 0, sizeof *t);
	if (lim)
		t->lim = *lim;
	else
		xml_limits_default(&t->lim);
	if (t->lim.max_depth > XML_MAX_DEPTH || t->lim.max_depth == 0)
		t->lim.max_depth = XML_MAX_DEPTH;
	if (t->lim.max_attrs > XML_MAX_ATTRS)
		t->lim.max_attrs = XML_MAX_ATTRS;
	if (t->lim.max_name == 0 || t->lim.max_name > 0xFFFF)
		t->lim.max_name = 0xFFFF;
	t->state = S_INIT;
}

void xml_tok_reset(struct xml_tok *t)
{
	struct xml_limits lim = t->lim;
	bool auth = t->authenticated;
	xml_tok_init(t, &lim);
	t->authenticated = auth;
}

/* ------------------------------------------------------------------ */
/* namespaces */

/* A resolved prefix. NSRC_PENDING: off is the offset of the xmlns:p
 * attribute declaring it (its value is found by decl_value() only when the
 * URI itself is needed, which is rare: the root element and expanded-name
 * duplicate checks); NSRC_DECL: lit/n are the URI in t->decls, off the
 * offset of that URI in decls[]; NSRC_XML: lit/n are the xml namespace. */
struct ns_ref {
	int src;
	uint32_t off, n;
	const char *lit;
};

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

/* The prefix length of the validated xmlns:p attribute at b[off]. */
static size_t decl_plen(const uint8_t *b, uint32_t off)
{
	size_t k = off + 6;
	while (b[k] != '=' && !(cls[b[k]] & C_WS))
		k++;
	return k - off - 6;
}

/* The value of the validated attribute whose name starts at b[off] (and
 * whose closing quote lies before b[end]): its offset, length and whether
 * it holds a reference. */
static uint32_t attr_value_at(const uint8_t *b, size_t off, size_t end, uint32_t *n, bool *amp)
{
	size_t k = off;
	while (b[k] != '=')
		k++;
	k++;
	while (cls[b[k]] & C_WS)
		k++;
	uint8_t q = b[k++];
	const uint8_t *e = memchr(b + k, q, end - k);
	*n = (uint32_t)(e - (b + k));
	*amp = memchr(b + k, '&', *n) != NULL;
	return (uint32_t)k;
}

/* Resolve a prefix; false when it is not declared. */
static bool ns_lookup(const struct xml_tok *t, const uint8_t *b, const uint8_t *pfx, size_t plen, struct ns_ref *r)
{
	if (plen == 3 && !memcmp(pfx, "xml", 3)) { /* can only be bound to itself */
		*r = (struct ns_ref){.src = NSRC_XML, .lit = NS_XML, .n = sizeof NS_XML - 1};
		return true;
	}
	for (int k = t->nnsd - 1; k >= 0; k--) {
		uint32_t off = t->nsd[k];
		if (decl_plen(b, off) == plen && !memcmp(b + off + 6, pfx, plen)) {
			*r = (struct ns_ref){.src = NSRC_PENDING, .off = off};
			return true;
		}
	}
	int found = -1;
	for (unsigned e = 0, k = 0; k < t->ndecl; k++, e = decl_next(t, e))
		if ((uint8_t)t->decls[e] == plen && !memcmp(decl_pfx(t, e), pfx, plen))
			found = (int)e; /* the last one wins */
	if (found < 0)
		return false;
	*r = (struct ns_ref){.src = NSRC_DECL,
			     .lit = decl_uri(t, (unsigned)found),
			     .off = (uint32_t)(decl_uri(t, (unsigned)found) - t->decls),
			     .n = (uint8_t)t->decls[found + 1]};
	return true;
}

static struct ns_view ns_ref_view(const uint8_t *b, size_t end, const struct ns_ref *r, char *buf, size_t cap)
{
	if (r->src == NSRC_PENDING) {
		uint32_t n;
		bool amp;
		uint32_t v = attr_value_at(b, r->off, end, &n, &amp);
		return ns_norm(b + v, n, amp, buf, cap);
	}
	return (struct ns_view){r->lit, r->n};
}

/* An xmlns or xmlns:p attribute, checked as expat's addBinding does. */
static int ns_declare(struct xml_tok *t, const uint8_t *b, const struct xml_attr_slot *a, bool hdr, size_t tag)
{
	char buf[256];
	bool deflt = a->colon == 0;
	const uint8_t *pfx = b + a->name + 6;
	size_t plen = deflt ? 0 : a->nlen - 6u;
	/* The reserved names contain no whitespace, so without '&' the raw
	 * value compares as the normalised one would; only the header's
	 * declarations, kept for the whole stream, are normalised. */
	struct ns_view v = {(const char *)b + a->val, a->vlen};
	if (a->amp || hdr)
		v = ns_norm(b + a->val, a->vlen, a->amp, buf, sizeof buf);
	bool is_xml = view_eq(v, NS_XML), is_xmlns = view_eq(v, NS_XMLNS);
	bool must_xml = plen == 3 && !memcmp(pfx, "xml", 3);

	if (!deflt && v.n == 0)
		return tok_fail(t, XML_ERR_NOT_WELL_FORMED, tag); /* NS 1.0 cannot undeclare */
	if (plen == 5 && !memcmp(pfx, "xmlns", 5))
		return tok_fail(t, XML_ERR_NOT_WELL_FORMED, tag);
	if (must_xml != is_xml || is_xmlns)
		return tok_fail(t, XML_ERR_NOT_WELL_FORMED, tag);
	if (must_xml)
		return 0; /* built in */
	if (hdr) {
		if (deflt) {
			/* only jabber:server and jabber:component:accept are
			 * accepted (hdr_finish), so the id is all we keep */
			if (v.n >= 64)
				return tok_fail(t, XML_ERR_INVALID_NAMESPACE, tag);
			t->default_ns = (uint8_t)xml_ns_id(v.p, v.n);
			return 0;
		}
		if (t->ndecl >= 8 || plen >= 16 || v.n >= 64 || t->dlen + 2 + plen + v.n > sizeof t->decls)
			return tok_fail(t, XML_ERR_POLICY_VIOLATION, tag);
		char *e = t->decls + t->dlen;
		e[0] = (char)plen;
		e[1] = (char)v.n;
		memcpy(e + 2, pfx, plen);
		memcpy(e + 2 + plen, v.p, v.n);
		t->dlen = (uint8_t)(t->dlen + 2 + plen + v.n);
		t->ndecl++;
		return 0;
	}
	if (deflt)
		return 0; /* only the root's default matters, read by root_record */
	if (t->nnsd >= XML_MAX_NSDECL)
		return tok_fail(t, XML_ERR_POLICY_VIOLATION, tag);
	/* in document order: the ones of an element lie after its name, which
	 * is how an end tag finds those going out of scope */
	t->nsd[t->nnsd++] = a->name;
	return 0;
}

static inline bool is_xmlns_attr(const uint8_t *b, const struct xml_attr_slot *a)
{
	if (b[a->name] != 'x')
		return false;
	if (a->colon == 0)
		return a->nlen == 5 && !memcmp(b + a->name, "xmlns", 5);
	return a->colon == 6 && !memcmp(b + a->name, "xmlns", 5);
}

static bool attr_is(const uint8_t *b, const struct xml_attr_slot *a, const char *s, size_t n)
{
	return a->nlen == n && !memcmp(b + a->name, s, n);
}

/* The attribute slots of the validated start tag whose '<' is at b[lt] and
 * whose '>' is at b[end - 1]; returns their number. */
static unsigned tag_attrs(const uint8_t *b, size_t lt, size_t end, struct xml_attr_slot *a)
{
	size_t i = lt + 1;
	unsigned n = 0;
	while (!(cls[b[i]] & C_WS) && b[i] != '>' && b[i] != '/')
		i++;
	for (;;) {
		while (cls[b[i]] & C_WS)
			i++;
		if (b[i] == '>' || b[i] == '/')
			return n;
		size_t s = i, colon = 0;
		while (b[i] != '=' && !(cls[b[i]] & C_WS)) {
			if (b[i] == ':')
				colon = i - s + 1;
			i++;
		}
		uint32_t vn;
		bool amp;
		uint32_t v = attr_value_at(b, i, end, &vn, &amp);
		a[n] = (struct xml_attr_slot){.name = (uint32_t)s,
					      .nlen = (uint16_t)(i - s),
					      .colon = (uint16_t)colon,
					      .val = v,
					      .vlen = vn,
					      .amp = amp};
		n++;
		i = (size_t)v + vn + 1;
	}
}

/* The root's to/from/type/id: told apart by length and first byte before
 * any compare, since most attributes are one of these four. */
static void root_attrs(struct xml_root_rec *r, const uint8_t *b, const struct xml_attr_slot *at, unsigned n)
{
	for (unsigned k = 0; k < n; k++) {
		const struct xml_attr_slot *a = &at[k];
		const uint8_t *nm = b + a->name;
		struct xml_span_off s = {a->val, a->vlen};
		uint16_t esc = a->amp ? 1 : 0;
		if (a->nlen == 2) {
			if (nm[0] == 't' && nm[1] == 'o') {
				r->to = s;
				r->flags |= esc * XML_ST_TO_ESC;
			} else if (nm[0] == 'i' && nm[1] == 'd') {
				r->id = s;
				r->flags |= esc * XML_ST_ID_ESC;
			}
		} else if (a->nlen == 4) {
			if (!memcmp(nm, "from", 4)) {
				r->from = s;
				r->flags |= esc * XML_ST_FROM_ESC;
			} else if (!memcmp(nm, "type", 4)) {
				r->type = s;
				r->flags |= esc * XML_ST_TYPE_ESC;
			}
		}
	}
}

static void root_record(struct xml_tok *t, const uint8_t *b, size_t end, const struct ns_ref *ens,
			const struct xml_attr_slot *at, int deflt_attr, bool empty)
{
	struct xml_root_rec *r = &t->root;
	uint32_t colon = t->sub[K_NCOLON];
	memset(r, 0, sizeof *r);
	r->name = t->sub[K_NAME];
	r->nlen = (uint16_t)t->sub[K_NLEN];
	r->colon = (uint16_t)colon;
	char buf[256];
	struct ns_view v = {"", 0};
	if (colon) {
		r->ns_src = (uint8_t)ens->src;
		if (ens->src == NSRC_PENDING) {
			uint32_t n;
			bool amp;
			uint32_t off = attr_value_at(b, ens->off, end, &n, &amp);
			r->ns = (struct xml_span_off){off, n};
			v = ns_norm(b + off, n, amp, buf, sizeof buf);
		} else {
			r->ns = (struct xml_span_off){ens->off, ens->n};
			v = (struct ns_view){ens->lit, ens->n};
		}
	} else if (deflt_attr >= 0) {
		const struct xml_attr_slot *a = &at[deflt_attr];
		r->ns_src = NSRC_PENDING;
		r->ns = (struct xml_span_off){a->val, a->vlen};
		/* known names have no whitespace: raw unless escaped */
		v = (struct ns_view){(const char *)b + a->val, a->vlen};
		if (a->amp)
			v = ns_norm(b + a->val, a->vlen, a->amp, buf, sizeof buf);
	} else if (t->default_ns) {
		r->ns_src = NSRC_DEFAULT;
	} else {
		r->ns_src = NSRC_NONE;
	}
	r->nsid = r->ns_src == NSRC_DEFAULT ? t->default_ns : (uint8_t)xml_ns_id(v.p, v.n);
	root_attrs(r, b, at, t->nattr);
	if (empty)
		r->flags |= XML_ST_EMPTY;
	if (colon)
		r->flags |= XML_ST_PREFIXED;
	if (deflt_attr >= 0)
		r->flags |= XML_ST_ROOT_XMLNS;
}

/* The stream's default namespace, one of the two hdr_finish accepts. */
static struct xml_span ns_known_uri(enum xml_ns id)
{
	if (id == XML_NS_SERVER)
		return (struct xml_span){"jabber:server", 13};
	return (struct xml_span){"jabber:component:accept", 23};
}

static int hdr_finish(struct xml_tok *t, const uint8_t *b, const struct ns_ref *ens, const struct xml_attr_slot *at,
		      size_t endpos)
{
	uint32_t name = t->sub[K_NAME], nlen = t->sub[K_NLEN], colon = t->sub[K_NCOLON];
	size_t tag = t->sub[K_HDR];
	if (nlen - colon != 6 || memcmp(b + name + colon, "stream", 6))
		return tok_fail(t, XML_ERR_BAD_FORMAT, tag);
	/* the header's prefix can only be bound in the header itself */
	if (!colon || ens->src != NSRC_DECL || !view_eq((struct ns_view){ens->lit, ens->n}, NS_STREAMS))
		return tok_fail(t, XML_ERR_INVALID_NAMESPACE, tag);
	t->stream_pfx = (uint8_t)(ens->off - 2 - (colon - 1));

	struct xml_stream_hdr *h = &t->hdr;
	memset(h, 0, sizeof *h);
	h->raw = (struct xml_span){(const char *)b + tag, (uint32_t)(endpos - tag)};
	h->default_ns = (enum xml_ns)t->default_ns;
	if (h->default_ns != XML_NS_SERVER && h->default_ns != XML_NS_COMPONENT)
		return tok_fail(t, XML_ERR_INVALID_NAMESPACE, tag);
	for (unsigned e = 0, k = 0; k < t->ndecl; k++, e = decl_next(t, e))
		if ((uint8_t)t->decls[e + 1] == 22 && !memcmp(decl_uri(t, e), "jabber:server:dialback", 22))
			h->has_dialback_ns = true;
	for (unsigned k = 0; k < t->nattr; k++) {
		const struct xml_attr_slot *a = &at[k];
		struct xml_span s = {(const char *)b + a->val, a->vlen};
		if (attr_is(b, a, "xmlns", 5))
			h->ns = s;
		else if (attr_is(b, a, "to", 2))
			h->to = s;
		else if (attr_is(b, a, "from", 4))
			h->from = s;
		else if (attr_is(b, a, "id", 2))
			h->id = s;
		else if (attr_is(b, a, "version", 7))
			h->version = s;
		else if (attr_is(b, a, "xml:lang", 8))
			h->lang = s;
	}
	if (h->version.n) {
		/* RFC 6120 §4.7.5: "1.0"; a higher major version is refused,
		 * a missing attribute means a pre-RFC peer (dialback only). */
		const char *v = h->version.p;
		uint32_t n = h->version.n, k = 0;
		while (k < n && v[k] >= '0' && v[k] <= '9')
			k++;
		bool ok = k > 0 && k < n && v[k] == '.' && k + 1 < n;
		for (uint32_t m = k + 1; ok && m < n; m++)
			ok = v[m] >= '0' && v[m] <= '9';
		if (!ok || !(k == 1 && (v[0] == '1' || v[0] == '0')))
			return tok_fail(t, XML_ERR_UNSUPPORTED_VERSION, tag);
	}
	return 0;
}

/* The '>' of a start tag has been read: check attributes and namespaces,
 * record the root of a stanza, push the element. `at` holds the tag's
 * attribute slots when `fresh` (the whole tag was read in this call);
 * otherwise they are rebuilt from the tag's bytes. Returns 0 or an error. */
static int elem_start_full(struct xml_tok *t, const uint8_t *b, bool empty, size_t endpos, struct xml_attr_slot *at,
			   bool fresh);
static inline __attribute__((always_inline)) int elem_start(struct xml_tok *t, const uint8_t *b, bool empty,
							    size_t endpos, struct xml_attr_slot *at, bool fresh)
{
	/* most elements inside a stanza have no attributes and no prefix */
	if (t->nattr == 0 && !t->sub[K_NCOLON] && t->depth > 0 && !empty && t->depth < t->lim.max_depth) {
		t->open[t->depth] = t->sub[K_NAME];
		t->depth++;
		return 0;
	}
	return elem_start_full(t, b, empty, endpos, at, fresh);
}

static int elem_start_full(struct xml_tok *t, const uint8_t *b, bool empty, size_t endpos, struct xml_attr_slot *at,
			   bool fresh)
{
	size_t tag = t->sub[K_NAME] - 1;
	unsigned n = t->nattr;
	bool hdr = t->sub[K_MODE] == MODE_HDR;
	uint32_t level = t->depth + 1;
	uint16_t nsd0 = t->nnsd;
	unsigned npfx = 0; /* prefixed attributes, xmlns:p included */
	int deflt = -1;
	bool hdr_pfx = false; /* a prefix resolved by a stream-level binding */

	if (!hdr && level > t->lim.max_depth)
		return tok_fail(t, XML_ERR_POLICY_VIOLATION, tag);
	if (!fresh && n)
		tag_attrs(b, tag, endpos, at);
	/* Duplicate names: each name sets one bit of a 64-bit filter (from
	 * its length and its first and last bytes); only a name whose bit is
	 * already set is compared with the ones before it. */
	uint64_t seen = 0;
	for (unsigned k = 0; k < n; k++) {
		const struct xml_attr_slot *a = &at[k];
		const uint8_t *nm = b + a->name;
		unsigned h = (a->nlen * 7u + nm[0] + nm[a->nlen - 1] * 3u) & 63;
		if (unlikely(seen >> h & 1)) {
			for (unsigned m = 0; m < k; m++) {
				const struct xml_attr_slot *o = &at[m];
				if (o->nlen == a->nlen && !memcmp(b + o->name, nm, a->nlen))
					return tok_fail(t, XML_ERR_NOT_WELL_FORMED, tag);
			}
		}
		seen |= 1ull << h;
		npfx += a->colon != 0;
		if (unlikely(nm[0] == 'x') && is_xmlns_attr(b, a)) {
			if (ns_declare(t, b, a, hdr, tag) < 0)
				return XML_EV_ERROR;
			if (!a->colon)
				deflt = (int)k;
		}
	}

	struct ns_ref ens = {.src = NSRC_NONE};
	if (npfx || t->sub[K_NCOLON]) {
		uint32_t name = t->sub[K_NAME], colon = t->sub[K_NCOLON];
		if (colon && !ns_lookup(t, b, b + name, colon - 1, &ens))
			return tok_fail(t, XML_ERR_BAD_NAMESPACE_PREFIX, tag);
		hdr_pfx = ens.src == NSRC_DECL;
		for (unsigned k = 0; k < n; k++) {
			const struct xml_attr_slot *a = &at[k];
			if (!a->colon || is_xmlns_attr(b, a))
				continue;
			struct ns_ref ra;
			if (!ns_lookup(t, b, b + a->name, a->colon - 1u, &ra))
				return tok_fail(t, XML_ERR_BAD_NAMESPACE_PREFIX, tag);
			hdr_pfx |= ra.src == NSRC_DECL;
			/* same local name under another prefix bound to the
			 * same URI is a duplicate (Namespaces in XML §6.3);
			 * that takes two prefixed attributes, since one
			 * without a prefix is in no namespace */
			for (unsigned m = 0; npfx > 1 && m < k; m++) {
				const struct xml_attr_slot *o = &at[m];
				struct ns_ref ro;
				if (!o->colon || is_xmlns_attr(b, o) || o->nlen - o->colon != a->nlen - a->colon ||
				    memcmp(b + o->name + o->colon, b + a->name + a->colon, a->nlen - a->colon))
					continue;
				if (!ns_lookup(t, b, b + o->name, o->colon - 1u, &ro))
					continue;
				char b1[256], b2[256];
				struct ns_view v1 = ns_ref_view(b, endpos, &ra, b1, sizeof b1);
				struct ns_view v2 = ns_ref_view(b, endpos, &ro, b2, sizeof b2);
				if (v1.n == v2.n && !memcmp(v1.p, v2.p, v1.n))
					return tok_fail(t, XML_ERR_NOT_WELL_FORMED, tag);
			}
		}
	}
	if (hdr)
		return hdr_finish(t, b, &ens, at, endpos);
	if (level == 1)
		root_record(t, b, endpos, &ens, at, deflt, empty);
	if (hdr_pfx)
		t->root.flags |= XML_ST_HDR_PREFIX;
	if (empty) {
		t->nnsd = nsd0; /* its declarations go out of scope with it */
	} else {
		t->open[t->depth] = t->sub[K_NAME];
		t->depth = level;
	}
	return 0;
}

static void emit_stanza(struct xml_tok *t, const uint8_t *b, size_t n)
{
	const struct xml_root_rec *r = &t->root;
	struct xml_stanza *s = &t->st;
	const char *c = (const char *)b;
#define SP(f) ((struct xml_span){r->f.n ? c + r->f.off : NULL, r->f.n})
	s->raw = (struct xml_span){c, (uint32_t)n};
	s->name = (struct xml_span){c + r->name + r->colon, (uint32_t)(r->nlen - r->colon)};
	s->prefix = (struct xml_span){r->colon ? c + r->name : NULL, (uint32_t)(r->colon ? r->colon - 1 : 0)};
	s->to = SP(to);
	s->from = SP(from);
	s->type = SP(type);
	s->id = SP(id);
#undef SP
	switch (r->ns_src) {
	case NSRC_PENDING:
		s->ns = (struct xml_span){c + r->ns.off, r->ns.n};
		break;
	case NSRC_DEFAULT:
		s->ns = ns_known_uri(t->default_ns);
		break;
	case NSRC_NONE:
		s->ns = (struct xml_span){"", 0};
		break;
	case NSRC_XML:
		s->ns = (struct xml_span){NS_XML, sizeof NS_XML - 1};
		break;
	default:
		s->ns = (struct xml_span){t->decls + r->ns.off, r->ns.n};
	}
	s->nsid = (enum xml_ns)r->nsid;
	s->flags = r->flags;
}

/* Bytes xml_stanza_selfcontain() may add: every stream-level binding as
 * " xmlns:P='URI'" with the URI escaped (6 bytes at most per byte). */
size_t xml_stanza_selfcontain_extra(const struct xml_tok *t)
{
	size_t n = 0;
	for (unsigned e = 0, k = 0; k < t->ndecl; k++, e = decl_next(t, e))
		n += 10 + (uint8_t)t->decls[e] + 6u * (uint8_t)t->decls[e + 1];
	return n;
}

int xml_stanza_selfcontain(const struct xml_tok *t, const struct xml_stanza *st, char *out, size_t cap)
{
	const uint8_t *b = (const uint8_t *)st->raw.p;
	size_t n = st->raw.n, o = 0;
	bool strip = st->flags & XML_ST_PREFIXED;
	if (strip && (st->flags & XML_ST_ROOT_XMLNS))
		return -2; /* unprefixed, it would change namespace */
	struct xml_attr_slot at[XML_MAX_ATTRS];
	unsigned na = tag_attrs(b, 0, n, at);
	size_t qend = (size_t)(st->name.p + st->name.n - st->raw.p); /* after the qualified name */
#define PUT(src, len)                          \
	do {                                   \
		if (o + (len) > cap)           \
			return -1;             \
		memcpy(out + o, (src), (len)); \
		o += (len);                    \
	} while (0)
	PUT("<", 1);
	PUT(st->name.p, st->name.n);
	if (st->flags & XML_ST_HDR_PREFIX) {
		for (unsigned e = 0, k = 0; k < t->ndecl; k++, e = decl_next(t, e)) {
			size_t pl = (uint8_t)t->decls[e];
			const char *pf = decl_pfx(t, e);
			bool own = false; /* the root binds it itself: that one rules inside */
			for (unsigned m = 0; m < na && !own; m++)
				own = at[m].colon == 6 && at[m].nlen == 6 + pl && is_xmlns_attr(b, &at[m]) &&
				      !memcmp(b + at[m].name + 6, pf, pl);
			if (own)
				continue;
			PUT(" xmlns:", 7);
			PUT(pf, pl);
			PUT("='", 2);
			int r = xml_escape(out + o, cap - o, decl_uri(t, e), (uint8_t)t->decls[e + 1], true);
			if (r < 0)
				return -1;
			o += (size_t)r;
			PUT("'", 1);
		}
	}
	if (!strip) {
		PUT(b + qend, n - qend);
		return (int)o;
	}
	if (st->flags & XML_ST_EMPTY) {
		PUT(b + qend, n - qend);
		return (int)o;
	}
	/* the end tag, "</P:name S? >", is the stanza's last '<' */
	size_t lt = n;
	while (lt > qend && b[lt - 1] != '<')
		lt--;
	lt--;
	PUT(b + qend, lt - qend);
	PUT("</", 2);
	PUT(st->name.p, st->name.n);
	PUT(">", 1);
#undef PUT
	return o > (size_t)INT32_MAX ? -1 : (int)o;
}

/* The XML declaration, whole, from '<' to '>' (RFC 6120 §11.6: UTF-8). */
static int xmldecl_parse(struct xml_tok *t, const uint8_t *b, size_t s, size_t e)
{
	size_t i = s + 5; /* after "<?xml" */
	int seen = 0;     /* 1 version, 2 encoding, 3 standalone */
	static const char *const names[] = {"version", "encoding", "standalone"};
	for (;;) {
		size_t ws = i;
		while (i < e && (cls[b[i]] & C_WS))
			i++;
		if (b[i] == '?')
			break;
		if (i == ws || seen == 3)
			return tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		int which = -1;
		for (int k = seen; k < 3 && which < 0; k++) {
			size_t ln = strlen(names[k]);
			if (i + ln <= e && !memcmp(b + i, names[k], ln) && !(cls[b[i + ln]] & C_NC))
				which = k;
		}
		if (which < 0 || (seen == 0 && which != 0))
			return tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		i += strlen(names[which]);
		while (cls[b[i]] & C_WS)
			i++;
		if (b[i++] != '=')
			return tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		while (cls[b[i]] & C_WS)
			i++;
		uint8_t q = b[i++];
		if (q != '"' && q != '\'')
			return tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		size_t v = i;
		while (i < e && b[i] != q)
			i++;
		if (i >= e)
			return tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		size_t vn = i - v;
		const char *val = (const char *)b + v;
		i++;
		if (which == 0) {
			/* [a-zA-Z0-9_.-]+ as expat reads VersionNum; the content
			 * is parsed as XML 1.0 whatever it says */
			bool ok = vn > 0;
			for (size_t k = 0; ok && k < vn; k++)
				ok = cls[(uint8_t)val[k]] & C_NC;
			if (!ok)
				return tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		} else if (which == 1) {
			bool ok = vn > 0 && ((val[0] | 0x20) >= 'a' && (val[0] | 0x20) <= 'z');
			for (size_t k = 1; ok && k < vn; k++)
				ok = (cls[(uint8_t)val[k]] & C_NC) || val[k] == '_';
			if (!ok)
				return tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
			if (!(vn == 5 && !strncasecmp(val, "utf-8", 5)))
				return tok_fail(t, XML_ERR_UNSUPPORTED_ENCODING, s);
		} else {
			if (!((vn == 3 && !memcmp(val, "yes", 3)) || (vn == 2 && !memcmp(val, "no", 2))))
				return tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		}
		seen = which + 1;
	}
	if (seen == 0 || i + 2 != e)
		return tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
	return 0;
}

/* ------------------------------------------------------------------ */
/* the machine */

#ifdef XML_HAVE_SSE2
/* Bit k set where x[k] is an ASCII NameChar other than ':'. Each class is
 * one wrapping subtract and one signed compare: (c - lo) is below n as an
 * unsigned byte iff (c - lo - 128) is below n - 128 as a signed one. */
static inline __m128i in_range16(__m128i x, char lo, char n)
{
	return _mm_cmplt_epi8(_mm_add_epi8(x, _mm_set1_epi8((char)(-lo - 128))), _mm_set1_epi8((char)(n - 128)));
}
static inline unsigned namechar_mask16(__m128i x)
{
	__m128i let = in_range16(_mm_or_si128(x, _mm_set1_epi8(0x20)), 'a', 26); /* A-Z too */
	__m128i dig = in_range16(x, '0', 10);
	__m128i pun = _mm_or_si128(in_range16(x, '-', 2), _mm_cmpeq_epi8(x, _mm_set1_epi8('_')));
	return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(let, dig), pun));
}
#endif

/* Skip NameChars other than ':' and non-ASCII: 16 at a time, so that the
 * end of a name costs no mispredicted loop exit. */
static inline size_t skip_namechars(const uint8_t *b, size_t i, size_t end)
{
#ifdef XML_HAVE_SSE2
	while (i + 16 <= end) {
		unsigned m = namechar_mask16(_mm_loadu_si128((const __m128i *)(b + i)));
		if (m != 0xFFFF)
			return i + (unsigned)__builtin_ctz(~m);
		i += 16;
	}
#endif
	while (i < end && (cls[b[i]] & C_NC))
		i++;
	return i;
}

static inline bool bytes_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
	while (n >= 8) {
		uint64_t x, y;
		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		if (x != y)
			return false;
		a += 8, b += 8, n -= 8;
	}
	while (n--)
		if (*a++ != *b++)
			return false;
	return true;
}

/* Length of the (validated) name of an open element at b[off]: it ends
 * at the whitespace, '/' or '>' that follows it. */
static inline size_t open_name_len(const uint8_t *b, size_t off)
{
	size_t k = off;
	while (!(cls[b[k]] & C_WS) && b[k] != '>' && b[k] != '/')
		k++;
	return k - off;
}

/* Continue a qualified name at b[*pi]: 0 when it ended (at the delimiter),
 * 1 when the buffer ended, -1 on error (already recorded). */
static inline __attribute__((always_inline)) int scan_qname(struct xml_tok *t, const uint8_t *b, size_t *pi, size_t end)
{
	size_t i = *pi;
	/* A name may take max_name bytes: scanning stops one byte past that,
	 * so a too long name is refused at the same point whatever follows
	 * it and however the bytes were chunked. */
	size_t tok = t->sub[K_TOK];
	bool clip = end - tok > t->lim.max_name;
	if (clip)
		end = tok + t->lim.max_name + 1;
	for (;;) {
		i = skip_namechars(b, i, end);
		if (i >= end)
			break;
		uint8_t c = b[i];
		if (c == ':') {
			/* QName: one colon, not first, followed by a NameStartChar */
			if (t->sub[K_COLON])
				return tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
			t->sub[K_COLON] = (uint32_t)(i - t->sub[K_TOK] + 1);
			i++;
			continue;
		}
		if (c < 0x80)
			break;
		uint32_t cp;
		int r = utf8_dec(b, i, end, &cp);
		if (r == 0)
			break;
		if (r < 0)
			return tok_fail(t, XML_ERR_INVALID_XML, i);
		if (!name_char_hi(cp))
			return tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
		i += (size_t)r;
	}
	*pi = i;
	if (i >= end || b[i] >= 0x80) {
		/* at the limit, or a character that crosses it */
		if (clip)
			return tok_fail(t, XML_ERR_POLICY_VIOLATION, tok);
		return 1;
	}
	uint32_t colon = t->sub[K_COLON];
	if (colon) {
		size_t after = t->sub[K_TOK] + colon;
		uint32_t cp;
		if (after >= i)
			return tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
		if (b[after] < 0x80 ? !(cls[b[after]] & C_NS) : (utf8_dec(b, after, i, &cp) <= 0 || !name_start_hi(cp)))
			return tok_fail(t, XML_ERR_NOT_WELL_FORMED, after);
	}
	return 0;
}

/* First character of a name at b[i]: its length, 0 for more, -1 error. */
static inline __attribute__((always_inline)) int name_start(struct xml_tok *t, const uint8_t *b, size_t i, size_t end)
{
	uint8_t c = b[i];
	if (c < 0x80) {
		if (cls[c] & C_NS)
			return 1;
		return tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
	}
	uint32_t cp;
	int r = utf8_dec(b, i, end, &cp);
	if (r < 0)
		return tok_fail(t, XML_ERR_INVALID_XML, i);
	if (r > 0 && !name_start_hi(cp))
		return tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
	return r;
}

/* Validate a run of non-ASCII text starting at b[i]: returns the new
 * position, or (size_t)-1 on error (recorded); stops short at a sequence
 * cut by the buffer end (the caller then waits for more). */
static inline size_t hi_run(struct xml_tok *t, const uint8_t *b, size_t i, size_t end, const uint8_t *stop)
{
	/* Text in most languages mixes short ASCII stretches (spaces,
	 * punctuation, digits) with non-ASCII letters: stay in this loop over
	 * short ASCII stretches instead of going back to the wide scanner for
	 * every word. */
	unsigned ascii = 0;
	while (i < end && ascii < 16) {
		uint8_t c = b[i];
		if (c < 0x80) {
			if (stop[c])
				break;
			ascii++;
			i++;
			continue;
		}
		uint32_t cp;
		int r = utf8_dec(b, i, end, &cp);
		if (r == 0)
			break;
		if (r < 0) {
			tok_fail(t, XML_ERR_INVALID_XML, i);
			return (size_t)-1;
		}
		ascii = 0;
		i += (size_t)r;
	}
	return i;
}

int xml_tok_next(struct xml_tok *t, const char *cbuf, size_t len, size_t *consumed)
{
	const uint8_t *b = (const uint8_t *)cbuf;
	int st = t->state;
	size_t i = t->scan;
	*consumed = 0;
	if (st == S_DEAD)
		return XML_EV_ERROR;

	/* A token may not grow beyond the limit: scanning stops there and an
	 * unfinished token is then a policy violation. */
	bool hdr_phase = st < S_TOP || (st > S_DEAD && t->sub[K_MODE] == MODE_HDR);
	size_t lim = hdr_phase || !t->authenticated ? t->lim.max_stanza_preauth : t->lim.max_stanza;
	size_t end = len < lim ? len : lim;
	bool clipped = len > lim;
	int r;
	/* attribute slots of the start tag being read; valid when `fresh`,
	 * i.e. when that tag's name was read in this call */
	struct xml_attr_slot at[XML_MAX_ATTRS];
	bool fresh = false;

#define NEED(k)                    \
	do {                       \
		if (i + (k) > end) \
			goto more; \
	} while (0)
#define FAIL(e, at) return tok_fail(t, (e), (at))
	/* a transition to a state known here jumps straight to its code */
#define GO(s)               \
	do {                \
		st = (s);   \
		goto L_##s; \
	} while (0)
#define SKIP_WS()                                     \
	do {                                          \
		while (i < end && (cls[b[i]] & C_WS)) \
			i++;                          \
	} while (0)

	for (;;) {
		switch (st) {
		case S_INIT:
			NEED(1);
			if (b[0] == 0xEF) { /* UTF-8 byte order mark */
				NEED(3);
				if (b[1] != 0xBB || b[2] != 0xBF)
					FAIL(XML_ERR_INVALID_XML, 0);
				i = 3;
			}
			st = S_INIT2;
			/* fallthrough */
		case S_INIT2:
			NEED(1);
			if (b[i] == '<') {
				NEED(2);
				if (b[i + 1] == '?') {
					NEED(6);
					if (memcmp(b + i, "<?xml", 5) || !(cls[b[i + 5]] & C_WS))
						FAIL(XML_ERR_RESTRICTED_XML, i);
					t->sub[K_TOK] = (uint32_t)i;
					i += 6;
					GO(S_XMLDECL);
				}
			}
			GO(S_PRE_HDR);
		case S_XMLDECL:
		L_S_XMLDECL:
			while (i + 1 < end && !(b[i] == '?' && b[i + 1] == '>'))
				i++;
			if (i - t->sub[K_TOK] > 256)
				FAIL(XML_ERR_NOT_WELL_FORMED, t->sub[K_TOK]);
			if (i + 1 >= end)
				goto more;
			if (xmldecl_parse(t, b, t->sub[K_TOK], i + 2) < 0)
				return XML_EV_ERROR;
			i += 2;
			st = S_PRE_HDR;
			/* fallthrough */
		case S_PRE_HDR:
		L_S_PRE_HDR:
			SKIP_WS();
			NEED(1);
			if (b[i] != '<')
				FAIL(XML_ERR_NOT_WELL_FORMED, i);
			NEED(2);
			if (b[i + 1] == '?')
				FAIL(XML_ERR_RESTRICTED_XML, i);
			if (b[i + 1] == '!') {
				NEED(3);
				FAIL(b[i + 2] == '-' || b[i + 2] == 'D' ? XML_ERR_RESTRICTED_XML
									: XML_ERR_NOT_WELL_FORMED,
				     i);
			}
			t->sub[K_HDR] = (uint32_t)i;
			t->sub[K_MODE] = MODE_HDR;
			i++;
			GO(S_STAG_NAME0);

		case S_TOP:
		case S_CLOSED:
			NEED(1);
			if (cls[b[0]] & C_WS) {
				i = 1;
				SKIP_WS();
				t->scan = 0;
				t->stream_off += i;
				*consumed = i;
				t->state = (uint8_t)st;
				return XML_EV_WHITESPACE;
			}
			if (st == S_CLOSED)
				FAIL(XML_ERR_NOT_WELL_FORMED, 0); /* junk after the stream */
			if (b[0] != '<')
				FAIL(XML_ERR_BAD_FORMAT, 0); /* RFC 6120 §4.3.5: only stanzas */
			i = 1;
			st = S_TOP_LT;
			/* fallthrough */
		case S_TOP_LT:
			NEED(1);
			if (b[i] == '/') {
				i++;
				t->sub[K_TOK] = (uint32_t)i;
				GO(S_CLOSE_NAME);
			}
			if (b[i] == '?')
				FAIL(XML_ERR_RESTRICTED_XML, 0);
			if (b[i] == '!') {
				NEED(2);
				if (b[i + 1] == '-' || b[i + 1] == 'D')
					FAIL(XML_ERR_RESTRICTED_XML, 0);
				FAIL(b[i + 1] == '[' ? XML_ERR_BAD_FORMAT : XML_ERR_NOT_WELL_FORMED, 0);
			}
			t->sub[K_MODE] = MODE_STANZA;
			t->depth = 0;
			t->nnsd = 0;
			GO(S_STAG_NAME0);
		case S_CLOSE_NAME:
		L_S_CLOSE_NAME:
			while (i < end && ((cls[b[i]] & (C_NS | C_NC)) || b[i] == ':' || b[i] >= 0x80))
				i++;
			if (i >= end)
				goto more;
			{
				size_t pl = (uint8_t)t->decls[t->stream_pfx], nl = i - t->sub[K_TOK];
				const uint8_t *nm = b + t->sub[K_TOK];
				if (nl != pl + 7 || memcmp(nm, decl_pfx(t, t->stream_pfx), pl) ||
				    memcmp(nm + pl, ":stream", 7))
					FAIL(XML_ERR_NOT_WELL_FORMED, 0);
			}
			st = S_CLOSE_WS;
			/* fallthrough */
		case S_CLOSE_WS:
			SKIP_WS();
			NEED(1);
			if (b[i] != '>')
				FAIL(XML_ERR_NOT_WELL_FORMED, i);
			i++;
			t->scan = 0;
			t->stream_off += i;
			*consumed = i;
			t->state = S_CLOSED;
			return XML_EV_STREAM_CLOSE;

		/* ---- tags ---- */
		case S_STAG_NAME0:
		L_S_STAG_NAME0:
			NEED(1);
			/* Fast path: an ASCII name without a prefix, shorter than
			 * 17 bytes, followed by whitespace, '>' or '/', all in
			 * the buffer: where it ends and what follows come out of
			 * one vector, with no load depending on the name length. */
#ifdef XML_HAVE_SSE2
			if (likely(i + 17 <= end && (cls[b[i]] & C_NS))) {
				__m128i x = _mm_loadu_si128((const __m128i *)(b + i + 1));
				unsigned n = (unsigned)__builtin_ctz(~namechar_mask16(x));
				__m128i term = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x20)), x);
				term = _mm_or_si128(term, _mm_cmpeq_epi8(x, _mm_set1_epi8('>')));
				term = _mm_or_si128(term, _mm_cmpeq_epi8(x, _mm_set1_epi8('/')));
				size_t j = i + 1 + n;
				if (likely(((unsigned)_mm_movemask_epi8(term) >> n & 1) && n < t->lim.max_name)) {
					t->sub[K_NAME] = (uint32_t)i;
					t->sub[K_NLEN] = (uint32_t)(j - i);
					t->sub[K_NCOLON] = 0;
					t->nattr = 0;
					fresh = true;
					t->sub[K_WS] = 0;
					i = j;
					st = S_STAG_IN;
					goto L_S_STAG_IN;
				}
			}
#endif
			if ((r = name_start(t, b, i, end)) < 0)
				return XML_EV_ERROR;
			if (r == 0)
				goto more;
			t->sub[K_TOK] = (uint32_t)i;
			t->sub[K_COLON] = 0;
			i += (size_t)r;
			st = S_STAG_NAME;
			/* fallthrough */
		case S_STAG_NAME:
			if ((r = scan_qname(t, b, &i, end)) < 0)
				return XML_EV_ERROR;
			if (r > 0)
				goto more;
			t->sub[K_NAME] = t->sub[K_TOK];
			t->sub[K_NLEN] = (uint32_t)(i - t->sub[K_TOK]);
			t->sub[K_NCOLON] = t->sub[K_COLON];
			t->nattr = 0;
			fresh = true;
			t->sub[K_WS] = 0;
			st = S_STAG_IN;
			/* fallthrough */
		case S_STAG_IN:
		L_S_STAG_IN:
			if (i < end && (cls[b[i]] & C_WS)) {
				t->sub[K_WS] = 1;
				SKIP_WS();
			}
			NEED(1);
			if (b[i] == '>') {
				i++;
				if (elem_start(t, b, false, i, at, fresh) < 0)
					return XML_EV_ERROR;
				if (t->sub[K_MODE] == MODE_HDR) {
					t->scan = 0;
					t->stream_off += i;
					*consumed = i;
					t->state = S_TOP;
					return XML_EV_STREAM_OPEN;
				}
				GO(S_TEXT);
			}
			if (b[i] == '/') {
				i++;
				GO(S_EMPTY_GT);
			}
			if (!t->sub[K_WS])
				FAIL(XML_ERR_NOT_WELL_FORMED, i);
			if (t->nattr >= t->lim.max_attrs)
				FAIL(XML_ERR_POLICY_VIOLATION, i);
			/* Fast path: a whole attribute with an ASCII name and a
			 * value free of references, all in the buffer, read
			 * without going through the states one by one. Anything
			 * else is read by the states below from its first byte. */
		attr_fast:
			if (likely(cls[b[i]] & C_NS)) {
				size_t j, nend, colon = 0;
				uint8_t q = 0;
#ifdef XML_HAVE_SSE2
				/* The rule: a short unprefixed name, '=' and a quote,
				 * all seen in one vector. */
				if (likely(i + 17 <= end)) {
					__m128i x = _mm_loadu_si128((const __m128i *)(b + i + 1));
					unsigned n = (unsigned)__builtin_ctz(~namechar_mask16(x));
					unsigned eq =
						(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('=')));
					unsigned qm = (unsigned)_mm_movemask_epi8(
						_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('\'')),
							     _mm_cmpeq_epi8(x, _mm_set1_epi8('"'))));
					if (likely((eq >> n & qm >> (n + 1) & 1) && n < t->lim.max_name)) {
						nend = i + 1 + n;
						q = b[nend + 1];
						j = nend + 2;
						goto attr_value;
					}
				}
#endif
				j = skip_namechars(b, i + 1, end);
				if (unlikely(j + 1 < end && b[j] == ':' && (cls[b[j + 1]] & C_NS))) {
					colon = j - i + 1;
					j = skip_namechars(b, j + 2, end);
				}
				nend = j;
				/* name='value' without spaces around '=' is the rule */
				if (likely(j + 2 < end && b[j] == '=' && (b[j + 1] == '\'' || b[j + 1] == '"'))) {
					q = b[j + 1];
					j += 2;
				} else {
					while (j < end && (cls[b[j]] & C_WS))
						j++;
					if (j + 1 < end && b[j] == '=') {
						j++;
						while (j < end && (cls[b[j]] & C_WS))
							j++;
						if (j < end && (b[j] == '"' || b[j] == '\''))
							q = b[j++];
					}
				}
				if (likely(q && nend - i <= t->lim.max_name)) {
				attr_value:; /* from the one-vector check: name, '=', quote read */
					size_t e = scan_run(b, j, end, q, '<', '&', q == '"' ? stop_dq : stop_sq);
					if (likely(e < end && b[e] == q)) {
						struct xml_attr_slot *a = &at[t->nattr++];
						a->name = (uint32_t)i;
						a->nlen = (uint16_t)(nend - i);
						a->colon = (uint16_t)colon;
						a->val = (uint32_t)j;
						a->vlen = (uint32_t)(e - j);
						a->amp = 0;
						i = e + 1;
						/* most often one space and the next name */
						if (likely(i + 1 < end && b[i] == ' ' && (cls[b[i + 1]] & C_NS) &&
							   t->nattr < t->lim.max_attrs)) {
							i++;
							goto attr_fast;
						}
						t->sub[K_WS] = 0;
						goto L_S_STAG_IN;
					}
				}
			}
			st = S_ATTR_NAME0;
			/* fallthrough */
		case S_ATTR_NAME0:
			if ((r = name_start(t, b, i, end)) < 0)
				return XML_EV_ERROR;
			if (r == 0)
				goto more;
			t->sub[K_TOK] = (uint32_t)i;
			t->sub[K_COLON] = 0;
			i += (size_t)r;
			st = S_ATTR_NAME;
			/* fallthrough */
		case S_ATTR_NAME:
			if ((r = scan_qname(t, b, &i, end)) < 0)
				return XML_EV_ERROR;
			if (r > 0)
				goto more;
			{
				struct xml_attr_slot *a = &at[t->nattr];
				a->name = t->sub[K_TOK];
				a->nlen = (uint16_t)(i - t->sub[K_TOK]);
				a->colon = (uint16_t)t->sub[K_COLON];
			}
			st = S_ATTR_EQ;
			/* fallthrough */
		case S_ATTR_EQ:
			SKIP_WS();
			NEED(1);
			if (b[i] != '=')
				FAIL(XML_ERR_NOT_WELL_FORMED, i);
			i++;
			st = S_ATTR_Q;
			/* fallthrough */
		case S_ATTR_Q:
			SKIP_WS();
			NEED(1);
			if (b[i] != '"' && b[i] != '\'')
				FAIL(XML_ERR_NOT_WELL_FORMED, i);
			t->sub[K_QUOTE] = b[i];
			at[t->nattr].val = (uint32_t)(i + 1);
			at[t->nattr].amp = 0;
			i++;
			st = S_ATTR_VAL;
			/* fallthrough */
		case S_ATTR_VAL: {
			uint8_t q = (uint8_t)t->sub[K_QUOTE];
			const uint8_t *stop = q == '"' ? stop_dq : stop_sq;
			for (;;) {
				i = scan_run(b, i, end, q, '<', '&', stop);
				if (i >= end)
					goto more;
				uint8_t c = b[i];
				if (c == q)
					break;
				if (c == '&') {
					at[t->nattr].amp = 1;
					break;
				}
				if (c == '<')
					FAIL(XML_ERR_NOT_WELL_FORMED, i);
				if (c < 0x80)
					FAIL(XML_ERR_INVALID_XML, i);
				size_t j = hi_run(t, b, i, end, stop);
				if (j == (size_t)-1)
					return XML_EV_ERROR;
				if (j == i)
					goto more;
				i = j;
			}
			if (b[i] == '&') {
				t->sub[K_REFTOK] = (uint32_t)i;
				t->sub[K_REFST] = 0;
				t->sub[K_RET] = S_ATTR_VAL;
				i++;
				GO(S_REF);
			}
			struct xml_attr_slot *a = &at[t->nattr];
			a->vlen = (uint32_t)(i - a->val);
			t->nattr++;
			t->sub[K_WS] = 0;
			i++;
			GO(S_STAG_IN);
		}
		case S_EMPTY_GT:
		L_S_EMPTY_GT:
			NEED(1);
			if (b[i] != '>')
				FAIL(XML_ERR_NOT_WELL_FORMED, i);
			i++;
			if (t->sub[K_MODE] == MODE_HDR)
				FAIL(XML_ERR_BAD_FORMAT, t->sub[K_HDR]); /* an empty stream */
			if (elem_start(t, b, true, i, at, fresh) < 0)
				return XML_EV_ERROR;
			if (t->depth == 0)
				goto stanza_done;
			st = S_TEXT;
			/* fallthrough */

		/* ---- content ---- */
		case S_TEXT:
		L_S_TEXT:
			for (;;) {
				i = scan_run(b, i, end, '<', '&', ']', stop_text);
				if (i >= end)
					goto more;
				if (b[i] < 0x80)
					break;
				size_t j = hi_run(t, b, i, end, stop_text);
				if (j == (size_t)-1)
					return XML_EV_ERROR;
				if (j == i)
					goto more;
				i = j;
			}
			switch (b[i]) {
			case '<':
				i++;
				st = S_LT;
				break;
			case '&':
				t->sub[K_REFTOK] = (uint32_t)i;
				t->sub[K_REFST] = 0;
				t->sub[K_RET] = S_TEXT;
				i++;
				GO(S_REF);
			case ']':
				t->sub[K_CNT] = 1;
				i++;
				GO(S_TEXT_RBR);
			default:
				FAIL(XML_ERR_INVALID_XML, i);
			}
			/* fallthrough */
		case S_LT:
			NEED(1);
			if (b[i] == '/') {
				i++;
				t->sub[K_TOK] = (uint32_t)i;
				st = S_ETAG_NAME;
				goto etag_name;
			}
			if (b[i] == '!') {
				i++;
				t->sub[K_CNT] = 0;
				GO(S_BANG);
			}
			if (b[i] == '?')
				FAIL(XML_ERR_RESTRICTED_XML, i - 1);
			GO(S_STAG_NAME0);
		case S_TEXT_RBR:
		L_S_TEXT_RBR:
			NEED(1);
			if (b[i] == ']') {
				t->sub[K_CNT] = 2;
				i++;
				continue;
			}
			if (b[i] == '>' && t->sub[K_CNT] >= 2)
				FAIL(XML_ERR_NOT_WELL_FORMED, i - 2); /* "]]>" in content */
			GO(S_TEXT);
		case S_ETAG_NAME:
		etag_name:
#ifdef XML_HAVE_SSE2
			if (i == t->sub[K_TOK] && i + 16 <= end) {
				/* Usually the whole name is there and shorter than 16
				 * bytes: find where the open element's name ends (its
				 * whitespace, '/' or '>') and compare both in one go. */
				const uint8_t *on = b + t->open[t->depth - 1];
				__m128i y = _mm_loadu_si128((const __m128i *)on);
				__m128i x = _mm_loadu_si128((const __m128i *)(b + i));
				__m128i term = _mm_cmpeq_epi8(_mm_min_epu8(y, _mm_set1_epi8(0x20)), y);
				term = _mm_or_si128(term, _mm_cmpeq_epi8(y, _mm_set1_epi8('>')));
				term = _mm_or_si128(term, _mm_cmpeq_epi8(y, _mm_set1_epi8('/')));
				unsigned tm = (unsigned)_mm_movemask_epi8(term);
				unsigned eq = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, y));
				unsigned nl = (unsigned)__builtin_ctz(tm | 0x10000), low = (1u << nl) - 1;
				uint8_t c = b[i + (nl & 15)];
				if (likely(nl < 16 && (eq & low) == low && (c == '>' || (cls[c] & C_WS)))) {
					i += nl;
					st = S_ETAG_WS;
					goto etag_ws;
				}
			}
#endif
			if (i == t->sub[K_TOK]) {
				/* usually the whole name is there: compare it at once */
				uint32_t d = t->depth - 1, nl = (uint32_t)open_name_len(b, t->open[d]);
				if (i + nl < end && bytes_eq(b + i, b + t->open[d], nl) && !(cls[b[i + nl]] & C_NC) &&
				    b[i + nl] != ':' && b[i + nl] < 0x80) {
					i += nl;
					st = S_ETAG_WS;
					goto etag_ws;
				}
			}
			while (i < end && ((cls[b[i]] & C_NC) || b[i] == ':' || b[i] >= 0x80))
				i++;
			if (i >= end)
				goto more;
			{
				uint32_t d = t->depth - 1, nl = (uint32_t)(i - t->sub[K_TOK]);
				if (nl != open_name_len(b, t->open[d]) || memcmp(b + t->sub[K_TOK], b + t->open[d], nl))
					FAIL(XML_ERR_NOT_WELL_FORMED, t->sub[K_TOK] - 2);
			}
			st = S_ETAG_WS;
			/* fallthrough */
		case S_ETAG_WS:
		etag_ws:
			SKIP_WS();
			NEED(1);
			if (b[i] != '>')
				FAIL(XML_ERR_NOT_WELL_FORMED, i);
			i++;
			while (t->nnsd && t->nsd[t->nnsd - 1] > t->open[t->depth - 1])
				t->nnsd--;
			if (--t->depth == 0)
				goto stanza_done;
			GO(S_TEXT);
		case S_BANG:
		L_S_BANG:
			NEED(1);
			if (t->sub[K_CNT] == 0 && (b[i] == '-' || b[i] == 'D'))
				FAIL(XML_ERR_RESTRICTED_XML, i - 2); /* comment or DTD */
			if (b[i] != (uint8_t) "[CDATA["[t->sub[K_CNT]])
				FAIL(XML_ERR_NOT_WELL_FORMED, i - 2 - t->sub[K_CNT]);
			i++;
			if (++t->sub[K_CNT] < 7)
				continue;
			st = S_CDATA;
			/* fallthrough */
		case S_CDATA:
		L_S_CDATA:
			for (;;) {
				i = scan_run(b, i, end, ']', ']', ']', stop_cdata);
				if (i >= end)
					goto more;
				if (b[i] < 0x80)
					break;
				size_t j = hi_run(t, b, i, end, stop_cdata);
				if (j == (size_t)-1)
					return XML_EV_ERROR;
				if (j == i)
					goto more;
				i = j;
			}
			if (b[i] != ']')
				FAIL(XML_ERR_INVALID_XML, i);
			i++;
			t->sub[K_CNT] = 1;
			st = S_CDATA_RBR;
			/* fallthrough */
		case S_CDATA_RBR:
			NEED(1);
			if (b[i] == ']') {
				t->sub[K_CNT] = 2;
				i++;
				continue;
			}
			if (b[i] == '>' && t->sub[K_CNT] >= 2) {
				i++;
				GO(S_TEXT);
			}
			GO(S_CDATA);

		/* ---- references: &name; &#n; &#xh; ---- */
		case S_REF:
		L_S_REF:
			NEED(1);
			{
				uint8_t c = b[i];
				size_t rt = t->sub[K_REFTOK];
				switch (t->sub[K_REFST]) {
				case 0: /* after '&' */
					if (c == '#') {
						t->sub[K_REFST] = 2;
						i++;
					} else if (cls[c] & C_NS) {
						t->sub[K_REFST] = 1;
						i++;
					} else if (c >= 0x80) {
						FAIL(XML_ERR_RESTRICTED_XML, rt);
					} else {
						FAIL(XML_ERR_NOT_WELL_FORMED, rt);
					}
					continue;
				case 1: /* entity name */
					while (i < end && ((cls[b[i]] & C_NC) || b[i] == ':'))
						i++;
					if (i - rt > 16)
						FAIL(XML_ERR_RESTRICTED_XML, rt);
					NEED(1);
					if (b[i] == ';') {
						const char *e = (const char *)b + rt + 1;
						size_t en = i - rt - 1;
						if (!((en == 2 && (!memcmp(e, "lt", 2) || !memcmp(e, "gt", 2))) ||
						      (en == 3 && !memcmp(e, "amp", 3)) ||
						      (en == 4 && (!memcmp(e, "quot", 4) || !memcmp(e, "apos", 4)))))
							FAIL(XML_ERR_RESTRICTED_XML, rt); /* §11.1 */
						i++;
						st = (int)t->sub[K_RET];
						continue;
					}
					if (b[i] >= 0x80)
						FAIL(XML_ERR_RESTRICTED_XML, rt);
					FAIL(XML_ERR_NOT_WELL_FORMED, rt);
				case 2: /* after "&#" */
					if (c == 'x') {
						t->sub[K_REFST] = 4;
						i++;
						continue;
					}
					if (!(cls[c] & C_DIG))
						FAIL(XML_ERR_NOT_WELL_FORMED, rt);
					t->sub[K_REFST] = 3;
					t->sub[K_REFVAL] = 0;
					continue;
				case 4: /* after "&#x" */
					if (!(cls[c] & C_HEX))
						FAIL(XML_ERR_NOT_WELL_FORMED, rt);
					t->sub[K_REFST] = 5;
					t->sub[K_REFVAL] = 0;
					continue;
				case 3:
				case 5: {
					bool hex = t->sub[K_REFST] == 5;
					uint32_t v = t->sub[K_REFVAL];
					while (i < end && (cls[b[i]] & (hex ? C_HEX : C_DIG))) {
						uint8_t d = b[i++];
						uint32_t dv = d <= '9' ? d - (uint32_t)'0' : (d | 0x20u) - 'a' + 10;
						v = v * (hex ? 16 : 10) + dv;
						if (v > 0x110000)
							v = 0x110000; /* saturate: invalid anyway */
					}
					t->sub[K_REFVAL] = v;
					NEED(1);
					if (b[i] != ';')
						FAIL(XML_ERR_NOT_WELL_FORMED, rt);
					if (!xml_is_char(v))
						FAIL(XML_ERR_INVALID_XML, rt);
					i++;
					st = (int)t->sub[K_RET];
					continue;
				}
				}
			}
			FAIL(XML_ERR_NOT_WELL_FORMED, i); /* each sub-state above continues or fails */
		default:
			FAIL(XML_ERR_NOT_WELL_FORMED, i);
		}
	}

stanza_done:
	emit_stanza(t, b, i);
	t->scan = 0;
	t->stream_off += i;
	*consumed = i;
	t->state = S_TOP;
	return XML_EV_STANZA;

more:
	if (clipped)
		return tok_fail(t, XML_ERR_POLICY_VIOLATION, lim);
	t->state = (uint8_t)st;
	t->scan = (uint32_t)i;
	return XML_EV_MORE;
#undef NEED
#undef FAIL
#undef GO
#undef SKIP_WS
}

/* ------------------------------------------------------------------ */
/* --check-xml */

int xml_check_file(const char *path, const struct xml_limits *lim)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		printf("error io at byte 0\n");
		return 1;
	}
	struct xml_tok *t = malloc(sizeof *t);
	size_t cap = 1 << 16, have = 0;
	char *buf = malloc(cap);
	if (!t || !buf) {
		free(t);
		free(buf);
		if (f != stdin)
			fclose(f);
		printf("error io at byte 0\n");
		return 1;
	}
	xml_tok_init(t, lim);
	/* a recorded stream is checked with the authenticated limits */
	t->authenticated = true;
	unsigned long long stanzas = 0;
	bool eof = false, opened = false;
	int rc = 0;
	for (;;) {
		size_t used;
		int ev = xml_tok_next(t, buf, have, &used);
		if (ev == XML_EV_ERROR) {
			printf("error %s at byte %llu\n", xml_err_name(t->err), (unsigned long long)t->err_offset);
			rc = 1;
			break;
		}
		if (ev > 0) {
			if (ev == XML_EV_STANZA)
				stanzas++;
			if (ev == XML_EV_STREAM_OPEN)
				opened = true;
			memmove(buf, buf + used, have - used);
			have -= used;
			continue;
		}
		if (eof) {
			/* ending between stanzas is fine (a capture may stop
			 * before </stream:stream>); inside a token it is not */
			if (have || !opened) {
				printf("error %s at byte %llu\n", xml_err_name(XML_ERR_NOT_WELL_FORMED),
				       (unsigned long long)(t->stream_off + have));
				rc = 1;
			} else {
				printf("ok %llu stanzas\n", stanzas);
			}
			break;
		}
		if (have == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				printf("error io at byte %llu\n", (unsigned long long)t->stream_off);
				rc = 1;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t n = fread(buf + have, 1, cap - have, f);
		if (n == 0)
			eof = true;
		have += n;
	}
	free(buf);
	free(t);
	if (f != stdin)
		fclose(f);
	return rc;
}

/* ------------------------------------------------------------------ */
/* mxml bridge (slow path: stanzas addressed to the hub itself) */

void *xml_to_mxml(struct xml_span raw)
{
	char *s = malloc((size_t)raw.n + 1);
	if (!s)
		return NULL;
	memcpy(s, raw.p, raw.n);
	s[raw.n] = 0;
	/* opaque text keeps character data as it is, whitespace included */
	mxml_node_t *n = mxmlLoadString(NULL, s, MXML_OPAQUE_CALLBACK);
	free(s);
	return n;
}
