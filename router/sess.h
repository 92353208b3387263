/*
 * router/sess.h — one XMPP stream of any kind (struct sess): its state, the
 * loop that drives its bytes through the tokenizer, stream errors, sending,
 * and the JID and span helpers every handler uses (router/sess.c).
 */
#ifndef FEDHUB_SESS_H
#define FEDHUB_SESS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "router/hub.h"
#include "router/pix.h"

/* SESS_BACKEND: the hub's internal link to a backend server (backend.c). */
enum sess_kind {
	SESS_S2S_IN = 1,
	SESS_S2S_OUT,
	SESS_VERIFY,
	SESS_COMP,
	SESS_BACKEND,
	SESS_NODE /* node link (nodelink.c) */
};

/* A (remote, local) domain pair on an s2s link and its dialback state. */
enum pair_state { PAIR_NONE, PAIR_PENDING, PAIR_VALID, PAIR_INVALID };
struct pair {
	char *remote, *local;
	uint32_t hash; /* pix_hash2(remote, local): the key of sess.pix */
	uint8_t state;
	uint8_t retries; /* inbound: verifications started again after a refusal */
};

/* sess.state. What a stream has reached; one field for every kind. */
enum sess_state {
	SESS_WAIT_HDR,                   /* we sent no stream header yet: an error opens one first */
	SESS_OPEN,                       /* s2s: our stream header is sent */
	SESS_COMP_HANDSHAKE = SESS_OPEN, /* component: header sent, waiting for <handshake/> */
	SESS_COMP_READY,                 /* component: authenticated, in its domain's pool */
};

struct s2s_out;
struct bk_link;
struct vstream;
struct flowq;
struct nl_conn;
struct sess {
	enum sess_kind kind;
	struct net_conn *c;
	struct xml_tok tok;
	uint8_t state; /* enum sess_state */
	bool got_features;
	bool peer_v1;
	char stream_id[128]; /* ours: 32 hex chars; a peer's may be longer (UUIDs) */
	char *local;         /* component domain; s2s: our domain in the header */
	char *remote;        /* s2s: the peer's domain */
	struct pair *pairs;  /* in the order claimed; find them with pair_find() */
	uint16_t npairs, cpairs;
	uint16_t npend, nvalid;  /* pairs PAIR_PENDING, PAIR_VALID: kept by pair_set() */
	struct pix pix;          /* index of pairs by (remote, local); none while few */
	struct s2s_out *link;    /* SESS_S2S_OUT */
	struct vstream *vstream; /* SESS_VERIFY: its verification stream (dialback.c owns it) */
	struct bk_link *bk;      /* SESS_BACKEND: its link (backend.c owns it) */
	bool bk_src;             /* inbound: from a backend's allow_from (backend.h) */
	struct nl_conn *nl;      /* SESS_NODE: the node link's state (nodelink.c owns it) */
	/* TLS and SASL (RFC 6120 §5, §6; XEP-0178) */
	uint8_t tls_policy; /* enum cfg_tls_mode for this stream */
	bool tls_offered;   /* inbound: we advertised STARTTLS */
	bool tls_on;        /* the stream runs over TLS */
	bool direct_tls;    /* XEP-0368: TLS from the first byte */
	bool starttls_sent; /* outbound: waiting for <proceed/> */
	bool sasl_sent;     /* outbound: waiting for <success/> */
	bool sasl_offered;  /* inbound: EXTERNAL advertised */
	bool was_ready;     /* component: was in the pool */
	bool bidi;          /* outbound: XEP-0288 bidirectional */
	char *sasl_domain;  /* outbound: the local domain SASL authenticated */
	struct flowq *fq;   /* as a destination: what waits for it (flow.c) */
	uint32_t paused_by; /* as a source: destinations holding it paused */
	/* inbound limits (s2s_in.c, guard.h) */
	uint32_t preauth_bytes; /* received before any pair was valid */
	uint32_t guard_slot;    /* counted in guard.h's table; UINT32_MAX: not counted */
	bool admitted;          /* passed the connection limits */
	struct met_link ml;     /* what the labelled gauges counted for it */

	/* inbound: rate shaping (shape.h); NULL = none configured */
	struct shape_link *shape;
};

/* JID helpers: the domain part, normalised into out. Returns length or -1. */
int jid_domain(struct xml_span jid, bool escaped, char *out, size_t cap);
/* The bare JID (local@domain) span of a raw JID. */
struct xml_span jid_bare(struct xml_span jid);

/* Driving a session's stream: see sess_drive() in sess.c. A handler gets
 * each XML_EV_STREAM_OPEN and XML_EV_STANZA; DRIVE_ALL consumes the rest of
 * the bytes (the stream is over). */
enum drive { DRIVE_ON, DRIVE_ALL, DRIVE_STOP };
/* DRIVE_STOP: TLS was put under the connection (after <starttls/> or
 * <proceed/>): the bytes up to this event are consumed, net drops and
 * counts the rest (net_start_tls()). */
typedef enum drive (*sess_event_fn)(struct hubw *h, struct sess *s, struct net_buf *b, int ev);
size_t sess_drive(struct sess *s, struct net_buf *b, const char *p, size_t n, sess_event_fn fn);
static inline bool st_routable(const struct xml_stanza *st)
{
	return (st->name.n == 7 && !memcmp(st->name.p, "message", 7)) ||
	       (st->name.n == 8 && !memcmp(st->name.p, "presence", 8)) ||
	       (st->name.n == 2 && !memcmp(st->name.p, "iq", 2));
}

/* Stream errors: send the error and the stream close, then close the link. */
void sess_stream_error(struct sess *s, enum hub_serr e, const char *text);
void sess_stream_error_xml(struct sess *s, enum xml_err e);
void sess_send(struct sess *s, const char *p, size_t n);
void sess_sendf(struct sess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sess_new_stream_id(struct hubw *h, struct sess *s);
/* The stream authenticated (auth: enum met_auth) for `domain` (its remote or
 * component domain): the labelled link gauges and counters. */
void sess_met_up(struct hubw *h, struct sess *s, int auth, const char *domain);
/* Log lines about s->c now name its peer address and domains (net/log.h). */
void sess_log_enter(struct sess *s);
/* A fresh session (control plane: aborts when out of memory, never NULL). */
struct sess *sess_new(enum sess_kind kind);
void sess_free(struct sess *s);
/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* The trimmed text of a simple element like <db:result ...>KEY</db:result>. */
struct xml_span elem_text(const struct xml_stanza *st);
/* ` NAME='VALUE'` for building a reply from a stanza's raw values. */
int put_attr(char *out, size_t cap, const char *name, struct xml_span v);
/* Copy a span into a fresh string (decoding references when esc); NULL only
 * for a bad reference (out of memory aborts: control plane). */
char *span_dup(struct xml_span v, bool esc);
bool span_eq(struct xml_span v, const char *s);

/* pairs.c: the (remote, local) pairs of a session, hashed (router/pix.h) */
struct pair *pair_find(const struct sess *s, const char *remote, const char *local);
/* Find or append (control plane: aborts when out of memory). The pointer
 * stays good until the next pair_add() on s. */
struct pair *pair_add(struct sess *s, const char *remote, const char *local);
/* Every change of a pair's state goes through here: the stream's counts
 * answer "any valid?" and "how many pending?" without a scan of its pairs. */
static inline void pair_set(struct sess *s, struct pair *p, enum pair_state st)
{
	s->npend -= p->state == PAIR_PENDING;
	s->nvalid -= p->state == PAIR_VALID;
	s->npend += st == PAIR_PENDING;
	s->nvalid += st == PAIR_VALID;
	p->state = (uint8_t)st;
}
/* Drop every pair (and the index); the array is kept for the next ones. */
void pairs_clear(struct sess *s);
void pairs_free(struct sess *s);

#endif
