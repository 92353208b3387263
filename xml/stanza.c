/*
 * xml/stanza.c — helpers over the bytes of one stanza the tokenizer has
 * validated (so they need no error paths for malformed input): a
 * self-contained copy for forwarding into another stream, and a look at
 * the first child element for the few stanzas the hub answers itself.
 */
#include "xml/xml-int.h"

#include <stdio.h>

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
	unsigned na = xml_tag_attrs(b, 0, n, at);
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

/* Where the start tag whose '<' is at b[lt] ends: the offset of its '>'. */
static size_t tag_end(const uint8_t *b, size_t lt, size_t n)
{
	size_t i = lt + 1;
	while (i < n && b[i] != '>') {
		if (b[i] == '"' || b[i] == '\'') {
			const uint8_t *q = memchr(b + i + 1, b[i], n - i - 1);
			i = q ? (size_t)(q - b) : n;
		}
		i++;
	}
	return i;
}

bool xml_attr_get(struct xml_span attrs, const char *name, struct xml_span *val)
{
	const uint8_t *b = (const uint8_t *)attrs.p;
	size_t n = attrs.n, want = strlen(name), i = 0;
	for (;;) {
		while (i < n && (xml_cls[b[i]] & C_WS))
			i++;
		if (i >= n || b[i] == '/' || b[i] == '>')
			return false;
		size_t s = i;
		while (i < n && b[i] != '=' && !(xml_cls[b[i]] & C_WS))
			i++;
		size_t nl = i - s;
		while (i < n && b[i] != '"' && b[i] != '\'')
			i++;
		if (i >= n)
			return false;
		const uint8_t *q = memchr(b + i + 1, b[i], n - i - 1);
		if (!q)
			return false;
		if (nl == want && !memcmp(b + s, name, nl)) {
			*val = (struct xml_span){(const char *)b + i + 1, (uint32_t)(q - (b + i + 1))};
			return true;
		}
		i = (size_t)(q - b) + 1;
	}
}

int xml_stanza_child(struct xml_span raw, struct xml_child *c)
{
	const uint8_t *b = (const uint8_t *)raw.p;
	size_t n = raw.n;
	size_t rgt = tag_end(b, 0, n);
	if (rgt >= n || b[rgt - 1] == '/')
		return -1; /* an empty root */
	size_t rname = 1;
	while (!(xml_cls[b[rname]] & C_WS) && b[rname] != '>' && b[rname] != '/')
		rname++;
	struct xml_span rattrs = {(const char *)b + rname, (uint32_t)(rgt - rname)};
	for (size_t i = rgt + 1; i < n; i++) {
		if (b[i] != '<')
			continue;
		if (b[i + 1] == '/')
			return -1;     /* the root's end tag: no child */
		if (b[i + 1] == '!') { /* CDATA: the only '!' a stanza may hold */
			const uint8_t *e = memmem(b + i, n - i, "]]>", 3);
			if (!e)
				return -1;
			i = (size_t)(e - b) + 2;
			continue;
		}
		size_t s = i + 1, k = s, colon = 0;
		while (!(xml_cls[b[k]] & C_WS) && b[k] != '>' && b[k] != '/') {
			if (b[k] == ':')
				colon = k - s + 1;
			k++;
		}
		size_t gt = tag_end(b, i, n);
		c->name = (struct xml_span){(const char *)b + s + colon, (uint32_t)(k - s - colon)};
		c->attrs = (struct xml_span){(const char *)b + k, (uint32_t)(gt - k)};
		char an[80];
		if (colon && colon - 1 > sizeof an - 7)
			colon = 0, c->ns = (struct xml_span){"", 0}; /* too long to be one we know */
		if (colon)
			snprintf(an, sizeof an, "xmlns:%.*s", (int)(colon - 1), (const char *)b + s);
		else
			memcpy(an, "xmlns", 6);
		if (!xml_attr_get(c->attrs, an, &c->ns) && !xml_attr_get(rattrs, an, &c->ns))
			c->ns = (struct xml_span){"", 0};
		return 0;
	}
	return -1;
}
