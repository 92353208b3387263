/*
 * xml/prolog.c — what may come before the stream header: a byte order
 * mark, an XML declaration (version, encoding UTF-8 only: RFC 6120 §11.6,
 * standalone) and whitespace. Nothing else: no DTD, comment or processing
 * instruction (RFC 6120 §11.1). Resumable like the rest of the tokenizer.
 */
#include "xml/xml-int.h"

#include <strings.h>

/* The XML declaration, whole, from '<' to '>' (RFC 6120 §11.6: UTF-8). */
static int xmldecl_parse(struct xml_tok *t, const uint8_t *b, size_t s, size_t e)
{
	size_t i = s + 5; /* after "<?xml" */
	int seen = 0;     /* 1 version, 2 encoding, 3 standalone */
	static const char *const names[] = {"version", "encoding", "standalone"};
	for (;;) {
		size_t ws = i;
		while (i < e && (xml_cls[b[i]] & C_WS))
			i++;
		if (b[i] == '?')
			break;
		if (i == ws || seen == 3)
			return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		int which = -1;
		for (int k = seen; k < 3 && which < 0; k++) {
			size_t ln = strlen(names[k]);
			if (i + ln <= e && !memcmp(b + i, names[k], ln) && !(xml_cls[b[i + ln]] & C_NC))
				which = k;
		}
		if (which < 0 || (seen == 0 && which != 0))
			return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		i += strlen(names[which]);
		while (xml_cls[b[i]] & C_WS)
			i++;
		if (b[i++] != '=')
			return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		while (xml_cls[b[i]] & C_WS)
			i++;
		uint8_t q = b[i++];
		if (q != '"' && q != '\'')
			return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		size_t v = i;
		while (i < e && b[i] != q)
			i++;
		if (i >= e)
			return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		size_t vn = i - v;
		const char *val = (const char *)b + v;
		i++;
		if (which == 0) {
			/* [a-zA-Z0-9_.-]+ as expat reads VersionNum; the content
			 * is parsed as XML 1.0 whatever it says */
			bool ok = vn > 0;
			for (size_t k = 0; ok && k < vn; k++)
				ok = xml_cls[(uint8_t)val[k]] & C_NC;
			if (!ok)
				return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		} else if (which == 1) {
			bool ok = vn > 0 && ((val[0] | 0x20) >= 'a' && (val[0] | 0x20) <= 'z');
			for (size_t k = 1; ok && k < vn; k++)
				ok = (xml_cls[(uint8_t)val[k]] & C_NC) || val[k] == '_';
			if (!ok)
				return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
			if (!(vn == 5 && !strncasecmp(val, "utf-8", 5)))
				return xml_tok_fail(t, XML_ERR_UNSUPPORTED_ENCODING, s);
		} else {
			if (!((vn == 3 && !memcmp(val, "yes", 3)) || (vn == 2 && !memcmp(val, "no", 2))))
				return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
		}
		seen = which + 1;
	}
	if (seen == 0 || i + 2 != e)
		return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, s);
	return 0;
}

/* The prolog: an optional byte order mark and XML declaration, then
 * whitespace up to the '<' of the stream header; no DTD, comment or PI
 * (RFC 6120 §11). Returns 0 with b[*pi] that '<', 1 for more bytes (*pst
 * and *pi say where to resume), -1 on error. */
int xml_prolog(struct xml_tok *t, const uint8_t *b, size_t *pi, size_t end, int *pst)
{
	size_t i = *pi;
	int st = *pst;
#define NEED(k)                    \
	do {                       \
		if (i + (k) > end) \
			goto more; \
	} while (0)
	switch (st) {
	case S_INIT:
		NEED(1);
		if (b[0] == 0xEF) { /* UTF-8 byte order mark */
			NEED(3);
			if (b[1] != 0xBB || b[2] != 0xBF)
				return xml_tok_fail(t, XML_ERR_INVALID_XML, 0);
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
				if (memcmp(b + i, "<?xml", 5) || !(xml_cls[b[i + 5]] & C_WS))
					return xml_tok_fail(t, XML_ERR_RESTRICTED_XML, i);
				t->sub[K_TOK] = (uint32_t)i;
				i += 6;
				st = S_XMLDECL;
				goto xmldecl;
			}
		}
		st = S_PRE_HDR;
		goto pre_hdr;
	case S_XMLDECL:
	xmldecl:
		while (i + 1 < end && !(b[i] == '?' && b[i + 1] == '>'))
			i++;
		if (i - t->sub[K_TOK] > 256)
			return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, t->sub[K_TOK]);
		if (i + 1 >= end)
			goto more;
		if (xmldecl_parse(t, b, t->sub[K_TOK], i + 2) < 0)
			return XML_EV_ERROR;
		i += 2;
		st = S_PRE_HDR;
		/* fallthrough */
	case S_PRE_HDR:
	pre_hdr:
		while (i < end && (xml_cls[b[i]] & C_WS))
			i++;
		NEED(1);
		if (b[i] != '<')
			return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
		NEED(2);
		if (b[i + 1] == '?')
			return xml_tok_fail(t, XML_ERR_RESTRICTED_XML, i);
		if (b[i + 1] == '!') {
			NEED(3);
			return xml_tok_fail(t,
					    b[i + 2] == '-' || b[i + 2] == 'D' ? XML_ERR_RESTRICTED_XML
									       : XML_ERR_NOT_WELL_FORMED,
					    i);
		}
		*pi = i;
		return 0;
	}
	return xml_tok_fail(t, XML_ERR_NOT_WELL_FORMED, i);
more:
	*pi = i;
	*pst = st;
	return 1;
#undef NEED
}
