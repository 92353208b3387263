/*
 * xml/text.c — values: error names, default limits, attribute-value
 * decoding (references, normalisation), escaping for output, namespace
 * names as the tokenizer compares them.
 */
#include "xml/xml-int.h"

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

void xml_limits_widest(struct xml_limits *l, uint32_t max_stanza)
{
	l->max_stanza = l->max_stanza_preauth = max_stanza;
	l->max_depth = XML_MAX_DEPTH;
	l->max_attrs = XML_MAX_ATTRS;
	l->max_name = 0xFFFF;
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
					if (hex ? !(xml_cls[d] & C_HEX) : !(xml_cls[d] & C_DIG))
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

struct ns_view xml_ns_norm(const uint8_t *p, size_t n, bool amp, char *buf, size_t cap)
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
