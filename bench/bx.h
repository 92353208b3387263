/*
 * bench/bx.h — the load generator's minimal XML framing: complete elements
 * by tag counting, names, attributes and text as spans into the receive
 * buffer. Enough for the bench's own traffic and the target's replies; not
 * a parser (the system under test has one).
 */
#ifndef FEDHUB_BENCH_BX_H
#define FEDHUB_BENCH_BX_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* Length of the tag starting at p[0] == '<' up to and including '>', quotes
 * respected; 0 if the buffer ends first. */
static inline size_t bx_tag_len(const char *p, size_t n)
{
	char q = 0;
	for (size_t i = 1; i < n; i++) {
		char ch = p[i];
		if (q) {
			if (ch == q)
				q = 0;
		} else if (ch == '\'' || ch == '"') {
			q = ch;
		} else if (ch == '>') {
			return i + 1;
		}
	}
	return 0;
}

/* Length of the complete element starting at p[0] == '<'; 0 if incomplete. */
static inline size_t bx_elem_len(const char *p, size_t n)
{
	size_t i = 0;
	int d = 0;
	while (i < n) {
		if (p[i] != '<') {
			const char *lt = memchr(p + i, '<', n - i);
			if (!lt)
				return 0;
			i = (size_t)(lt - p);
			continue;
		}
		size_t t = bx_tag_len(p + i, n - i);
		if (!t)
			return 0;
		if (p[i + 1] == '/')
			d--;
		else if (p[i + t - 2] != '/')
			d++;
		i += t;
		if (d <= 0)
			return i;
	}
	return 0;
}

struct bx_span {
	const char *p;
	size_t n;
};

static inline bool bx_eq(struct bx_span s, const char *lit)
{
	size_t l = strlen(lit);
	return s.n == l && memcmp(s.p, lit, l) == 0;
}

static inline struct bx_span bx_name(const char *tag, size_t tl)
{
	size_t i = 1;
	while (i < tl && tag[i] != ' ' && tag[i] != '\t' && tag[i] != '\n' && tag[i] != '\r' && tag[i] != '/' &&
	       tag[i] != '>')
		i++;
	return (struct bx_span){tag + 1, i - 1};
}

/* Attribute value (raw, unescaped: the bench's own values need no escaping). */
static inline bool bx_attr(const char *tag, size_t tl, const char *name, struct bx_span *v)
{
	size_t nl = strlen(name), i = 1 + bx_name(tag, tl).n;
	while (i < tl) {
		while (i < tl && (tag[i] == ' ' || tag[i] == '\t' || tag[i] == '\n' || tag[i] == '\r'))
			i++;
		if (i >= tl || tag[i] == '>' || tag[i] == '/')
			return false;
		size_t a = i;
		while (i < tl && tag[i] != '=' && tag[i] != ' ')
			i++;
		size_t an = i - a;
		while (i < tl && tag[i] != '\'' && tag[i] != '"')
			i++;
		if (i >= tl)
			return false;
		char q = tag[i++];
		size_t vs = i;
		while (i < tl && tag[i] != q)
			i++;
		if (an == nl && memcmp(tag + a, name, nl) == 0) {
			v->p = tag + vs;
			v->n = i - vs;
			return true;
		}
		i++;
	}
	return false;
}

static inline void bx_cstr(struct bx_span s, char *out, size_t cap)
{
	size_t n = s.n < cap - 1 ? s.n : cap - 1;
	memcpy(out, s.p, n);
	out[n] = 0;
}

/* Text between the start tag and the first child or end tag. */
static inline struct bx_span bx_text(const char *el, size_t n, size_t tl)
{
	const char *lt = memchr(el + tl, '<', n - tl);
	return (struct bx_span){el + tl, lt ? (size_t)(lt - (el + tl)) : 0};
}

#endif
