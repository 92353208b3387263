/*
 * xml/tok.c — the streaming tokenizer behind every XMPP stream of the hub.
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
 *    (xml_tag_attrs()): one pass over a tag whose bytes are already validated,
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
#include "xml/xml-int.h"

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

static inline __attribute__((always_inline)) int elem_start(struct xml_tok *t, const uint8_t *b, bool empty,
							    size_t endpos, struct xml_attr_slot *at, bool fresh)
{
	/* most elements inside a stanza have no attributes and no prefix */
	if (t->nattr == 0 && !t->sub[K_NCOLON] && t->depth > 0 && !empty && t->depth < t->lim.max_depth) {
		t->open[t->depth] = t->sub[K_NAME];
		t->depth++;
		return 0;
	}
	return xml_elem_start_full(t, b, empty, endpos, at, fresh);
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
	while (i < end && (xml_cls[b[i]] & C_NC))
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
	while (!(xml_cls[b[k]] & C_WS) && b[k] != '>' && b[k] != '/')
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
				return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
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
			return xml_tok_fail(t, XML_ERR_INVALID_XML, i);
		if (!xml_name_char_hi(cp))
			return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
		i += (size_t)r;
	}
	*pi = i;
	if (i >= end || b[i] >= 0x80) {
		/* at the limit, or a character that crosses it */
		if (clip)
			return xml_tok_fail(t, XML_ERR_POLICY_VIOLATION, tok);
		return 1;
	}
	uint32_t colon = t->sub[K_COLON];
	if (colon) {
		size_t after = t->sub[K_TOK] + colon;
		uint32_t cp;
		if (after >= i)
			return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
		if (b[after] < 0x80 ? !(xml_cls[b[after]] & C_NS)
				    : (utf8_dec(b, after, i, &cp) <= 0 || !xml_name_start_hi(cp)))
			return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, after);
	}
	return 0;
}

/* First character of a name at b[i]: its length, 0 for more, -1 error. */
static inline __attribute__((always_inline)) int name_start(struct xml_tok *t, const uint8_t *b, size_t i, size_t end)
{
	uint8_t c = b[i];
	if (c < 0x80) {
		if (xml_cls[c] & C_NS)
			return 1;
		return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
	}
	uint32_t cp;
	int r = utf8_dec(b, i, end, &cp);
	if (r < 0)
		return xml_tok_fail(t, XML_ERR_INVALID_XML, i);
	if (r > 0 && !xml_name_start_hi(cp))
		return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
	return r;
}

/* A qualified name in two states: `first` reads its first character
 * (recording where the name starts) and moves *pst to `rest`, which scans
 * the rest. 0 when the name ended at b[*pi], 1 for more bytes, -1 on error
 * (recorded). Inline, so st and i stay in registers in the machine. */
static inline __attribute__((always_inline)) int read_qname(struct xml_tok *t, const uint8_t *b, size_t *pi, size_t end,
							    int *pst, int first, int rest)
{
	if (*pst == first) {
		int r = name_start(t, b, *pi, end);
		if (r <= 0)
			return r < 0 ? -1 : 1;
		t->sub[K_TOK] = (uint32_t)*pi;
		t->sub[K_COLON] = 0;
		*pi += (size_t)r;
		*pst = rest;
	}
	return scan_qname(t, b, pi, end);
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
			xml_tok_fail(t, XML_ERR_INVALID_XML, i);
			return (size_t)-1;
		}
		ascii = 0;
		i += (size_t)r;
	}
	return i;
}

/* The stream's default namespace, one of the two hdr_finish accepts. */
static struct xml_span ns_known_uri(enum xml_ns id)
{
	if (id == XML_NS_SERVER)
		return (struct xml_span){"jabber:server", 13};
	return (struct xml_span){"jabber:component:accept", 23};
}

/* The stanza event from the root record: spans into the caller's bytes. */
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

/* Skip a run of character data, attribute value or CDATA from b[*pi]:
 * the wide scanner finds the next byte this kind of run stops at, and
 * non-ASCII is validated on the way. Returns 1 with b[*pi] an ASCII stop
 * byte, 0 when the buffer ends first (a UTF-8 sequence cut at the end is
 * left for the next call), -1 on bad UTF-8 (recorded). */
static inline __attribute__((always_inline)) int run_to_stop(struct xml_tok *t, const uint8_t *b, size_t *pi,
							     size_t end, uint8_t c1, uint8_t c2, uint8_t c3,
							     const uint8_t *stop, const uint8_t *nib)
{
	size_t i = *pi;
	for (;;) {
		i = scan_run(b, i, end, c1, c2, c3, stop, nib);
		if (i >= end)
			break;
		if (b[i] < 0x80) {
			*pi = i;
			return 1;
		}
		size_t j = hi_run(t, b, i, end, stop);
		if (j == (size_t)-1)
			return -1;
		if (j == i)
			break;
		i = j;
	}
	*pi = i;
	return 0;
}

/* A reference, from after its '&' (K_REFTOK) to its ';': only the five
 * predefined entities (RFC 6120 §11.1) and character references to XML
 * Chars. Resumable: the sub-state is in K_REFST, a character reference's
 * value so far in K_REFVAL. Returns 0 past the ';', 1 for more bytes, -1
 * on error. */
static int ref_step(struct xml_tok *t, const uint8_t *b, size_t *pi, size_t end)
{
	size_t i = *pi;
	for (;;) {
		if (i >= end)
			goto more;
		{
			uint8_t c = b[i];
			size_t rt = t->sub[K_REFTOK];
			switch (t->sub[K_REFST]) {
			case 0: /* after '&' */
				if (c == '#') {
					t->sub[K_REFST] = 2;
					i++;
				} else if (xml_cls[c] & C_NS) {
					t->sub[K_REFST] = 1;
					i++;
				} else if (c >= 0x80) {
					return xml_tok_fail(t, XML_ERR_RESTRICTED_XML, rt);
				} else {
					return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, rt);
				}
				continue;
			case 1: /* entity name */
				while (i < end && ((xml_cls[b[i]] & C_NC) || b[i] == ':'))
					i++;
				if (i - rt > 16)
					return xml_tok_fail(t, XML_ERR_RESTRICTED_XML, rt);
				if (i >= end)
					goto more;
				if (b[i] == ';') {
					const char *e = (const char *)b + rt + 1;
					size_t en = i - rt - 1;
					if (!((en == 2 && (!memcmp(e, "lt", 2) || !memcmp(e, "gt", 2))) ||
					      (en == 3 && !memcmp(e, "amp", 3)) ||
					      (en == 4 && (!memcmp(e, "quot", 4) || !memcmp(e, "apos", 4)))))
						return xml_tok_fail(t, XML_ERR_RESTRICTED_XML, rt); /* §11.1 */
					i++;
					*pi = i;
					return 0;
				}
				if (b[i] >= 0x80)
					return xml_tok_fail(t, XML_ERR_RESTRICTED_XML, rt);
				return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, rt);
			case 2: /* after "&#" */
				if (c == 'x') {
					t->sub[K_REFST] = 4;
					i++;
					continue;
				}
				if (!(xml_cls[c] & C_DIG))
					return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, rt);
				t->sub[K_REFST] = 3;
				t->sub[K_REFVAL] = 0;
				continue;
			case 4: /* after "&#x" */
				if (!(xml_cls[c] & C_HEX))
					return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, rt);
				t->sub[K_REFST] = 5;
				t->sub[K_REFVAL] = 0;
				continue;
			case 3:
			case 5: {
				bool hex = t->sub[K_REFST] == 5;
				uint32_t v = t->sub[K_REFVAL];
				while (i < end && (xml_cls[b[i]] & (hex ? C_HEX : C_DIG))) {
					uint8_t d = b[i++];
					uint32_t dv = d <= '9' ? d - (uint32_t)'0' : (d | 0x20u) - 'a' + 10;
					v = v * (hex ? 16 : 10) + dv;
					if (v > 0x110000)
						v = 0x110000; /* saturate: invalid anyway */
				}
				t->sub[K_REFVAL] = v;
				if (i >= end)
					goto more;
				if (b[i] != ';')
					return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, rt);
				if (!xml_is_char(v))
					return xml_tok_fail(t, XML_ERR_INVALID_XML, rt);
				i++;
				*pi = i;
				return 0;
			}
			}
		}
		return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, i); /* each sub-state continues or ends */
	}
more:
	*pi = i;
	return 1;
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
#define FAIL(e, at) return xml_tok_fail(t, (e), (at))
	/* a transition to a state known here jumps straight to its code */
#define GO(s)               \
	do {                \
		st = (s);   \
		goto L_##s; \
	} while (0)
#define SKIP_WS()                                         \
	do {                                              \
		while (i < end && (xml_cls[b[i]] & C_WS)) \
			i++;                              \
	} while (0)

	for (;;) {
		switch (st) {
		case S_INIT:
		case S_INIT2:
		case S_XMLDECL:
		case S_PRE_HDR: {
			/* through copies: taking the address of i or st would keep
			 * them out of registers in the whole machine */
			size_t pi = i;
			int pst = st;
			r = xml_prolog(t, b, &pi, end, &pst);
			i = pi;
			st = pst;
		}
			if (r < 0)
				return XML_EV_ERROR;
			if (r > 0)
				goto more;
			t->sub[K_HDR] = (uint32_t)i;
			t->sub[K_MODE] = MODE_HDR;
			i++;
			GO(S_STAG_NAME0);

		case S_TOP:
		case S_CLOSED:
			NEED(1);
			if (xml_cls[b[0]] & C_WS) {
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
			while (i < end && ((xml_cls[b[i]] & (C_NS | C_NC)) || b[i] == ':' || b[i] >= 0x80))
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
			if (likely(i + 17 <= end && (xml_cls[b[i]] & C_NS))) {
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
			/* fallthrough */
		case S_STAG_NAME:
			if ((r = read_qname(t, b, &i, end, &st, S_STAG_NAME0, S_STAG_NAME)) < 0)
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
			if (i < end && (xml_cls[b[i]] & C_WS)) {
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
			if (likely(xml_cls[b[i]] & C_NS)) {
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
				if (unlikely(j + 1 < end && b[j] == ':' && (xml_cls[b[j + 1]] & C_NS))) {
					colon = j - i + 1;
					j = skip_namechars(b, j + 2, end);
				}
				nend = j;
				/* name='value' without spaces around '=' is the rule */
				if (likely(j + 2 < end && b[j] == '=' && (b[j + 1] == '\'' || b[j + 1] == '"'))) {
					q = b[j + 1];
					j += 2;
				} else {
					while (j < end && (xml_cls[b[j]] & C_WS))
						j++;
					if (j + 1 < end && b[j] == '=') {
						j++;
						while (j < end && (xml_cls[b[j]] & C_WS))
							j++;
						if (j < end && (b[j] == '"' || b[j] == '\''))
							q = b[j++];
					}
				}
				if (likely(q && nend - i <= t->lim.max_name)) {
				attr_value:; /* from the one-vector check: name, '=', quote read */
					size_t e =
						scan_run(b, j, end, q, '<', '&', q == '"' ? xml_stop_dq : xml_stop_sq,
							 q == '"' ? XML_NIB(dq) : XML_NIB(sq));
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
						if (likely(i + 1 < end && b[i] == ' ' && (xml_cls[b[i + 1]] & C_NS) &&
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
		case S_ATTR_NAME:
			if ((r = read_qname(t, b, &i, end, &st, S_ATTR_NAME0, S_ATTR_NAME)) < 0)
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
			const uint8_t *stop = q == '"' ? xml_stop_dq : xml_stop_sq;
			const uint8_t *nib = q == '"' ? XML_NIB(dq) : XML_NIB(sq);
			if ((r = run_to_stop(t, b, &i, end, q, '<', '&', stop, nib)) < 0)
				return XML_EV_ERROR;
			if (r == 0)
				goto more;
			if (b[i] != q) {
				if (b[i] == '<')
					FAIL(XML_ERR_NOT_WELL_FORMED, i);
				if (b[i] != '&')
					FAIL(XML_ERR_INVALID_XML, i);
				at[t->nattr].amp = 1;
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
			if ((r = run_to_stop(t, b, &i, end, '<', '&', ']', xml_stop_text, XML_NIB(text))) < 0)
				return XML_EV_ERROR;
			if (r == 0)
				goto more;
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
				if (likely(nl < 16 && (eq & low) == low && (c == '>' || (xml_cls[c] & C_WS)))) {
					i += nl;
					st = S_ETAG_WS;
					goto etag_ws;
				}
			}
#endif
			if (i == t->sub[K_TOK]) {
				/* usually the whole name is there: compare it at once */
				uint32_t d = t->depth - 1, nl = (uint32_t)open_name_len(b, t->open[d]);
				if (i + nl < end && bytes_eq(b + i, b + t->open[d], nl) &&
				    !(xml_cls[b[i + nl]] & C_NC) && b[i + nl] != ':' && b[i + nl] < 0x80) {
					i += nl;
					st = S_ETAG_WS;
					goto etag_ws;
				}
			}
			while (i < end && ((xml_cls[b[i]] & C_NC) || b[i] == ':' || b[i] >= 0x80))
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
			if ((r = run_to_stop(t, b, &i, end, ']', ']', ']', xml_stop_cdata, XML_NIB(cdata))) < 0)
				return XML_EV_ERROR;
			if (r == 0)
				goto more;
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
			if ((r = ref_step(t, b, &i, end)) < 0)
				return XML_EV_ERROR;
			if (r > 0)
				goto more;
			st = (int)t->sub[K_RET];
			continue;
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
		return xml_tok_fail(t, XML_ERR_POLICY_VIOLATION, lim);
	t->state = (uint8_t)st;
	t->scan = (uint32_t)i;
	return XML_EV_MORE;
#undef NEED
#undef FAIL
#undef GO
#undef SKIP_WS
}
