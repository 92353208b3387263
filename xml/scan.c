/*
 * xml/scan.c — the byte-level scanners of the tokenizer: the byte class
 * and stop tables, the run scanners (scalar, SSE2, and AVX2 with UTF-8
 * validation in the vector unit) and the XML name classes above ASCII.
 * Nothing here knows about tokenizer state: each function takes bytes and
 * a position and returns a position.
 */
#include "xml/xml-int.h"

#include <stdlib.h>

const uint8_t xml_cls[256] = {
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
const uint8_t xml_stop_text[256] = {STOP_COMMON, ['<'] = 1, ['&'] = 1, [']'] = 1};
const uint8_t xml_stop_dq[256] = {STOP_COMMON, ['"'] = 1, ['<'] = 1, ['&'] = 1};
const uint8_t xml_stop_sq[256] = {STOP_COMMON, ['\''] = 1, ['<'] = 1, ['&'] = 1};
const uint8_t xml_stop_cdata[256] = {STOP_COMMON, [']'] = 1};

/* ------------------------------------------------------------------ */
/* run scanners */

size_t xml_scan_scalar(const uint8_t *b, size_t i, size_t end, const uint8_t *stop)
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
size_t xml_scan_sse2(const uint8_t *b, size_t i, size_t end, uint8_t c1, uint8_t c2, uint8_t c3, const uint8_t *stop)
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
	return xml_scan_scalar(b, i, end, stop);
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

/* Nibble tables of the run kinds for xml_scan_avx2: byte x stops a run when
 * lo[x & 15] & hi[x >> 4] is not zero. Bits 0 and 1 flag the C0 controls
 * other than TAB, LF and CR (high nibble 0 and 1), bits 2-4 the kind's
 * special bytes, one bit each so that no other byte can match. High
 * nibbles 8-F have no bit: non-ASCII is validated as UTF-8 instead. One
 * pair of shuffles thus replaces eight compares per 32 bytes. Built at
 * start-up from the stop tables' special bytes. */
uint8_t xml_nib_text[32], xml_nib_dq[32], xml_nib_sq[32], xml_nib_cdata[32];

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

__attribute__((target("avx2"))) size_t xml_scan_avx2(const uint8_t *b, size_t i, size_t end, const uint8_t *nib)
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

bool xml_have_avx2;
__attribute__((constructor)) static void xml_cpu_init(void)
{
	__builtin_cpu_init();
	xml_have_avx2 = __builtin_cpu_supports("avx2") && !getenv("FEDHUB_XML_NO_AVX2");
	nib_build(xml_nib_text, "<&]");
	nib_build(xml_nib_dq, "\"<&");
	nib_build(xml_nib_sq, "'<&");
	nib_build(xml_nib_cdata, "]");
}
#endif

/* XML 1.0 fifth edition NameStartChar / NameChar above ASCII. */
bool xml_name_start_hi(uint32_t v)
{
	return (v >= 0xC0 && v <= 0xD6) || (v >= 0xD8 && v <= 0xF6) || (v >= 0xF8 && v <= 0x2FF) ||
	       (v >= 0x370 && v <= 0x37D) || (v >= 0x37F && v <= 0x1FFF) || (v >= 0x200C && v <= 0x200D) ||
	       (v >= 0x2070 && v <= 0x218F) || (v >= 0x2C00 && v <= 0x2FEF) || (v >= 0x3001 && v <= 0xD7FF) ||
	       (v >= 0xF900 && v <= 0xFDCF) || (v >= 0xFDF0 && v <= 0xFFFD) || (v >= 0x10000 && v <= 0xEFFFF);
}

bool xml_name_char_hi(uint32_t v)
{
	return xml_name_start_hi(v) || v == 0xB7 || (v >= 0x300 && v <= 0x36F) || (v >= 0x203F && v <= 0x2040);
}
