/*
 * xml/elem.c — what happens at the '>' of a start tag: attributes checked
 * (duplicates by qualified and by expanded name), xmlns declarations
 * recorded (the stream header's are copied into the tokenizer, a stanza's
 * are offsets into its bytes), prefixes resolved, the stream header or the
 * root of a stanza recorded; and the stanza event built from that record.
 * The state machine (tok.c) calls in here only for tags that have
 * attributes or a prefix, or are the root: most inner elements do not.
 */
#include "xml/xml-int.h"

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

/* The prefix length of the validated xmlns:p attribute at b[off]. */
static size_t decl_plen(const uint8_t *b, uint32_t off)
{
	size_t k = off + 6;
	while (b[k] != '=' && !(xml_cls[b[k]] & C_WS))
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
	while (xml_cls[b[k]] & C_WS)
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
		return xml_ns_norm(b + v, n, amp, buf, cap);
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
		v = xml_ns_norm(b + a->val, a->vlen, a->amp, buf, sizeof buf);
	bool is_xml = view_eq(v, NS_XML), is_xmlns = view_eq(v, NS_XMLNS);
	bool must_xml = plen == 3 && !memcmp(pfx, "xml", 3);

	if (!deflt && v.n == 0)
		return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, tag); /* NS 1.0 cannot undeclare */
	if (plen == 5 && !memcmp(pfx, "xmlns", 5))
		return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, tag);
	if (must_xml != is_xml || is_xmlns)
		return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, tag);
	if (must_xml)
		return 0; /* built in */
	if (hdr) {
		if (deflt) {
			/* only jabber:server and jabber:component:accept are
			 * accepted (hdr_finish), so the id is all we keep */
			if (v.n >= 64)
				return xml_tok_fail(t, XML_ERR_INVALID_NAMESPACE, tag);
			t->default_ns = (uint8_t)xml_ns_id(v.p, v.n);
			return 0;
		}
		if (t->ndecl >= 8 || plen >= 16 || v.n >= 64 || t->dlen + 2 + plen + v.n > sizeof t->decls)
			return xml_tok_fail(t, XML_ERR_POLICY_VIOLATION, tag);
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
		return xml_tok_fail(t, XML_ERR_POLICY_VIOLATION, tag);
	/* in document order: the ones of an element lie after its name, which
	 * is how an end tag finds those going out of scope */
	t->nsd[t->nnsd++] = a->name;
	return 0;
}

static bool attr_is(const uint8_t *b, const struct xml_attr_slot *a, const char *s, size_t n)
{
	return a->nlen == n && !memcmp(b + a->name, s, n);
}

/* The attribute slots of the validated start tag whose '<' is at b[lt] and
 * whose '>' is at b[end - 1]; returns their number. */
unsigned xml_tag_attrs(const uint8_t *b, size_t lt, size_t end, struct xml_attr_slot *a)
{
	size_t i = lt + 1;
	unsigned n = 0;
	while (!(xml_cls[b[i]] & C_WS) && b[i] != '>' && b[i] != '/')
		i++;
	for (;;) {
		while (xml_cls[b[i]] & C_WS)
			i++;
		if (b[i] == '>' || b[i] == '/')
			return n;
		size_t s = i, colon = 0;
		while (b[i] != '=' && !(xml_cls[b[i]] & C_WS)) {
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
			v = xml_ns_norm(b + off, n, amp, buf, sizeof buf);
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
			v = xml_ns_norm(b + a->val, a->vlen, a->amp, buf, sizeof buf);
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

static int hdr_finish(struct xml_tok *t, const uint8_t *b, const struct ns_ref *ens, const struct xml_attr_slot *at,
		      size_t endpos)
{
	uint32_t name = t->sub[K_NAME], nlen = t->sub[K_NLEN], colon = t->sub[K_NCOLON];
	size_t tag = t->sub[K_HDR];
	if (nlen - colon != 6 || memcmp(b + name + colon, "stream", 6))
		return xml_tok_fail(t, XML_ERR_BAD_FORMAT, tag);
	/* the header's prefix can only be bound in the header itself */
	if (!colon || ens->src != NSRC_DECL || !view_eq((struct ns_view){ens->lit, ens->n}, NS_STREAMS))
		return xml_tok_fail(t, XML_ERR_INVALID_NAMESPACE, tag);
	t->stream_pfx = (uint8_t)(ens->off - 2 - (colon - 1));

	struct xml_stream_hdr *h = &t->hdr;
	memset(h, 0, sizeof *h);
	h->raw = (struct xml_span){(const char *)b + tag, (uint32_t)(endpos - tag)};
	h->default_ns = (enum xml_ns)t->default_ns;
	if (h->default_ns != XML_NS_SERVER && h->default_ns != XML_NS_COMPONENT)
		return xml_tok_fail(t, XML_ERR_INVALID_NAMESPACE, tag);
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
			return xml_tok_fail(t, XML_ERR_UNSUPPORTED_VERSION, tag);
	}
	return 0;
}

/* The '>' of a start tag has been read: check attributes and namespaces,
 * record the root of a stanza, push the element. `at` holds the tag's
 * attribute slots when `fresh` (the whole tag was read in this call);
 * otherwise they are rebuilt from the tag's bytes. Returns 0 or an error. */
int xml_elem_start_full(struct xml_tok *t, const uint8_t *b, bool empty, size_t endpos, struct xml_attr_slot *at,
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
		return xml_tok_fail(t, XML_ERR_POLICY_VIOLATION, tag);
	if (!fresh && n)
		xml_tag_attrs(b, tag, endpos, at);
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
					return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, tag);
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
			return xml_tok_fail(t, XML_ERR_BAD_NAMESPACE_PREFIX, tag);
		hdr_pfx = ens.src == NSRC_DECL;
		for (unsigned k = 0; k < n; k++) {
			const struct xml_attr_slot *a = &at[k];
			if (!a->colon || is_xmlns_attr(b, a))
				continue;
			struct ns_ref ra;
			if (!ns_lookup(t, b, b + a->name, a->colon - 1u, &ra))
				return xml_tok_fail(t, XML_ERR_BAD_NAMESPACE_PREFIX, tag);
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
					return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, tag);
			}
		}
	}
	if (hdr)
		return hdr_finish(t, b, &ens, at, endpos);
	if (level == 1) {
		root_record(t, b, endpos, &ens, at, deflt, empty);
		/* a second stream header inside the stream is no stanza: waiting
		 * for its end tag would hold the stream until a limit ran out */
		if (t->root.nsid == XML_NS_STREAMS && t->sub[K_NLEN] - t->sub[K_NCOLON] == 6 &&
		    !memcmp(b + t->sub[K_NAME] + t->sub[K_NCOLON], "stream", 6))
			return xml_tok_fail(t, XML_ERR_BAD_FORMAT, tag);
	}
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
