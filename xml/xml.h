/*
 * xml/xml.h — zero-copy streaming tokenizer for XMPP streams (RFC 6120).
 *
 * The caller owns the bytes. It feeds the tokenizer the unconsumed part of its
 * receive buffer; the tokenizer returns one event at a time whose strings are
 * spans (pointer + length) into that buffer. Nothing is allocated and nothing
 * is copied. A stanza that is not complete yet returns XML_EV_MORE: the caller
 * keeps every byte from `buf` on (moving them to the front of a bigger buffer
 * if it likes, since the tokenizer's saved state uses offsets, not pointers)
 * and calls again with the same bytes plus more. The tokenizer remembers how
 * far it had scanned, so bytes are not re-scanned (but for one extra read
 * of a start tag cut by a chunk boundary, to list its attributes again).
 *
 * Contract of xml_tok_next(), in the picohttpparser style:
 *   returns an event (> 0) and sets *consumed to the number of bytes of `buf`
 *   that event covers (the caller advances by that much);
 *   returns XML_EV_MORE (0): incomplete, keep all `len` bytes, call again with
 *   more appended; *consumed is 0;
 *   returns XML_EV_ERROR (< 0): t->err and t->err_offset say why and where
 *   (offset counted from the start of the stream). The stream is dead.
 *
 * Only the stream header and the top level of each stanza are reported; the
 * content of a stanza is checked for well-formedness and skipped.
 */
#ifndef FEDHUB_XML_H
#define FEDHUB_XML_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

struct xml_span {
	const char *p;
	uint32_t n;
};

/* RFC 6120 §4.9.3 stream error conditions the tokenizer can raise. */
enum xml_err {
	XML_OK = 0,
	XML_ERR_NOT_WELL_FORMED,      /* not-well-formed */
	XML_ERR_RESTRICTED_XML,       /* restricted-xml: DTD, comment, PI, entity */
	XML_ERR_INVALID_NAMESPACE,    /* invalid-namespace: stream ns wrong */
	XML_ERR_BAD_NAMESPACE_PREFIX, /* bad-namespace-prefix: undeclared prefix */
	XML_ERR_BAD_FORMAT,           /* bad-format: e.g. text at top level */
	XML_ERR_POLICY_VIOLATION,     /* policy-violation: a limit was exceeded */
	XML_ERR_UNSUPPORTED_ENCODING, /* unsupported-encoding: not UTF-8 */
	XML_ERR_INVALID_XML,          /* invalid-xml: bad UTF-8 / forbidden char */
	XML_ERR_UNSUPPORTED_VERSION,  /* unsupported-version */
	XML_ERR__COUNT
};
const char *xml_err_name(enum xml_err e); /* wire name, e.g. "not-well-formed" */

enum xml_ev {
	XML_EV_ERROR = -1,
	XML_EV_MORE = 0,
	XML_EV_STREAM_OPEN = 1, /* <stream:stream ...> (t->hdr filled); the bytes
				   consumed include a BOM / XML declaration
				   before it, hdr.raw is the start tag alone */
	XML_EV_STANZA,          /* one complete top-level element (t->st filled) */
	XML_EV_STREAM_CLOSE,    /* </stream:stream> */
	XML_EV_WHITESPACE,      /* whitespace between stanzas (keepalive); a run
				   split across reads comes as several events */
};

struct xml_limits {
	uint32_t max_stanza;         /* bytes of one stanza once authenticated */
	uint32_t max_stanza_preauth; /* bytes of one stanza before that */
	uint32_t max_depth;          /* element nesting inside a stanza (<= XML_MAX_DEPTH) */
	uint32_t max_attrs;          /* attributes per element */
	uint32_t max_name;           /* bytes of one qualified name */
};
#define XML_MAX_DEPTH  48 /* upper bound for max_depth */
#define XML_MAX_ATTRS  64 /* upper bound for max_attrs */
#define XML_MAX_NSDECL 32 /* xmlns declarations in scope inside one stanza */
void xml_limits_default(struct xml_limits *l);
/* Every bound at the most the tokenizer supports, and stanzas of up to
 * max_stanza bytes before and after authentication: for re-parsing bytes
 * a link has accepted already (and for fuzzing). */
void xml_limits_widest(struct xml_limits *l, uint32_t max_stanza);

/* Well-known namespaces, resolved once so the router compares integers. */
enum xml_ns {
	XML_NS_OTHER = 0,
	XML_NS_SERVER,    /* jabber:server */
	XML_NS_COMPONENT, /* jabber:component:accept */
	XML_NS_STREAMS,   /* http://etherx.jabber.org/streams */
	XML_NS_DIALBACK,  /* jabber:server:dialback */
	XML_NS_TLS,       /* urn:ietf:params:xml:ns:xmpp-tls */
	XML_NS_SASL,      /* urn:ietf:params:xml:ns:xmpp-sasl */
};

struct xml_stream_hdr {
	struct xml_span raw; /* the whole start tag */
	struct xml_span ns;  /* default namespace (jabber:server, ...) */
	struct xml_span to, from, id, version, lang;
	enum xml_ns default_ns;
	bool has_dialback_ns; /* xmlns:db='jabber:server:dialback' declared */
};

enum xml_stanza_flags {
	XML_ST_TO_ESC = 1 << 0, /* `to` value contains '&': decode before use */
	XML_ST_FROM_ESC = 1 << 1,
	XML_ST_TYPE_ESC = 1 << 2,
	XML_ST_ID_ESC = 1 << 3,
	XML_ST_EMPTY = 1 << 4, /* <x/> */
	/* The stanza uses a prefix (element or attribute, other than xml:)
	 * bound only on the stream header: its bytes are not
	 * namespace-well-formed on their own, so they cannot be forwarded
	 * into another stream as they are (xml_stanza_selfcontain()). */
	XML_ST_HDR_PREFIX = 1 << 5,
	XML_ST_PREFIXED = 1 << 6,   /* the top-level element's name has a prefix */
	XML_ST_ROOT_XMLNS = 1 << 7, /* the top-level element has an xmlns='...' */
};

struct xml_stanza {
	struct xml_span raw;    /* the whole element, '<' to the final '>' */
	struct xml_span ns;     /* resolved namespace URI */
	struct xml_span name;   /* local name */
	struct xml_span prefix; /* prefix as written (may be empty) */
	enum xml_ns nsid;
	struct xml_span to, from, type, id; /* raw values, n == 0 when absent */
	uint32_t flags;
};

/* Internal records of struct xml_tok: offsets into the pending bytes, so
 * they stay valid when the caller moves them (see xml/tok.c). */
struct xml_span_off {
	uint32_t off, n;
};
struct xml_root_rec {
	struct xml_span_off to, from, type, id, ns;
	uint32_t name;        /* offset of the qualified name */
	uint16_t nlen, colon; /* its length; colon position + 1, 0 if none */
	uint8_t ns_src;       /* where ns points: enum in xml/xml-int.h */
	uint8_t nsid;         /* enum xml_ns */
	uint16_t flags;       /* enum xml_stanza_flags */
};
#define XML_DECL_BYTES 192 /* stream-level xmlns:prefix bindings, packed */

/* Tokenizer state: under 1 KiB (one lives in every connection), and no
 * pointer into caller memory survives an XML_EV_MORE return. The scratch
 * of the start tag being read (its attributes) is not kept here: it lives
 * on the stack of xml_tok_next() and is rebuilt from the tag's bytes when
 * the tag spans several calls. Fields after `st` are internal to xml/. */
struct xml_tok {
	struct xml_limits lim;
	bool authenticated; /* selects max_stanza over max_stanza_preauth */
	uint8_t state;      /* internal */
	uint8_t default_ns; /* internal: the stream default namespace (enum xml_ns) */
	uint8_t stream_pfx; /* internal: decls[] offset of the stream prefix */
	enum xml_err err;
	uint64_t err_offset;
	uint64_t stream_off;       /* bytes consumed so far (for error offsets) */
	uint32_t scan;             /* bytes of the pending stanza already scanned */
	struct xml_stream_hdr hdr; /* valid right after XML_EV_STREAM_OPEN */
	struct xml_stanza st;      /* valid right after XML_EV_STANZA */
	/* internal */
	uint32_t depth;
	uint16_t nattr, nnsd;         /* attributes read in the open tag; nsd[] used */
	uint8_t ndecl, dlen;          /* stream-level bindings: count, bytes used */
	uint32_t sub[14];             /* resumable sub-state */
	uint32_t open[XML_MAX_DEPTH]; /* offsets of the open elements' names */
	uint32_t nsd[XML_MAX_NSDECL]; /* offsets of the xmlns:p attributes in scope */
	struct xml_root_rec root;
	char decls[XML_DECL_BYTES];
};

void xml_tok_init(struct xml_tok *t, const struct xml_limits *lim);
/* Start over for a new stream on the same connection (after STARTTLS/SASL).
 * Keeps the limits and t->authenticated. */
void xml_tok_reset(struct xml_tok *t);
int xml_tok_next(struct xml_tok *t, const char *buf, size_t len, size_t *consumed);

/* Copy the stanza just returned by t into out so that it is
 * namespace-well-formed on its own: each binding of t's stream header the
 * root element does not make itself is declared on the root (when
 * XML_ST_HDR_PREFIX), and a prefixed root is written without its prefix
 * (when XML_ST_PREFIXED: the caller has checked that its namespace is the
 * stream's content namespace). Needs at most st->raw.n +
 * xml_stanza_selfcontain_extra(t) bytes. Returns the length written, -1 if
 * it does not fit, -2 if no such copy exists (a prefixed root that also
 * sets a default namespace). */
int xml_stanza_selfcontain(const struct xml_tok *t, const struct xml_stanza *st, char *out, size_t cap);
size_t xml_stanza_selfcontain_extra(const struct xml_tok *t);

/* The first child element of a stanza the tokenizer returned (validated
 * bytes; for the few stanzas the hub answers itself, never on forwarding):
 * its local name, its attribute list, and the namespace it or the root
 * declares for it (raw attribute value; n == 0 when it inherits the
 * stream's). Returns 0, or -1 when the stanza has no child element. */
struct xml_child {
	struct xml_span name, ns, attrs;
};
int xml_stanza_child(struct xml_span stanza, struct xml_child *c);
/* The raw value of attribute `name` in such an attribute list. */
bool xml_attr_get(struct xml_span attrs, const char *name, struct xml_span *val);

/* Map a namespace URI to its enum xml_ns (XML_NS_OTHER when unknown). */
enum xml_ns xml_ns_id(const char *uri, size_t n);

/* Decode an attribute value (entity and character references) into out.
 * Returns its length, or -1 if it does not fit or is malformed. */
int xml_attr_decode(struct xml_span v, char *out, size_t cap);

/* Escape text for an attribute value (attr=true) or character data.
 * Returns the length written, or -1 if it does not fit. */
int xml_escape(char *out, size_t cap, const char *s, size_t n, bool attr);

#endif
