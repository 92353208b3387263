/*
 * router/hub.h — what the router's files share: sessions, routing, bounces.
 * Not a public API: everything outside router/ uses net/, xml/ and cfg.h.
 */
#ifndef FEDHUB_HUB_H
#define FEDHUB_HUB_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "net/net.h"
#include "net/dns.h"
#include "xml/xml.h"
#include "router/cfg.h"
#include "router/met.h"
#include "router/rt.h"

/* RFC 6120 §4.9.3 stream errors the router sends (besides xml_err ones). */
enum hub_serr {
	SERR_BAD_FORMAT,
	SERR_HOST_UNKNOWN,
	SERR_IMPROPER_ADDRESSING,
	SERR_INVALID_FROM,
	SERR_INVALID_NAMESPACE,
	SERR_NOT_AUTHORIZED,
	SERR_POLICY_VIOLATION,
	SERR_CONNECTION_TIMEOUT,
	SERR_SYSTEM_SHUTDOWN,
	SERR_UNSUPPORTED_STANZA_TYPE,
	SERR_UNSUPPORTED_VERSION,
	SERR_RESOURCE_CONSTRAINT,
	SERR_REMOTE_CONNECTION_FAILED,
	SERR_INTERNAL_SERVER_ERROR,
	SERR_UNDEFINED_CONDITION,
};
const char *hub_serr_name(enum hub_serr e);

/* RFC 6120 §8.3.3 stanza errors used in bounces. */
enum hub_sterr {
	STERR_REMOTE_SERVER_NOT_FOUND,
	STERR_REMOTE_SERVER_TIMEOUT,
	STERR_SERVICE_UNAVAILABLE,
	STERR_RESOURCE_CONSTRAINT,
	STERR_FEATURE_NOT_IMPLEMENTED,
	STERR_ITEM_NOT_FOUND,
	STERR_BAD_REQUEST,
	STERR_POLICY_VIOLATION,
};

enum sess_kind { SESS_S2S_IN = 1, SESS_S2S_OUT, SESS_VERIFY, SESS_COMP };

/* A (remote, local) domain pair on an s2s link and its dialback state. */
enum pair_state { PAIR_NONE, PAIR_PENDING, PAIR_VALID, PAIR_INVALID };
struct pair {
	char *remote, *local;
	uint8_t state;
};

/* sess.state. What a stream has reached; one field for every kind. */
enum sess_state {
	SESS_WAIT_HDR,                   /* we sent no stream header yet: an error opens one first */
	SESS_OPEN,                       /* s2s: our stream header is sent */
	SESS_COMP_HANDSHAKE = SESS_OPEN, /* component: header sent, waiting for <handshake/> */
	SESS_COMP_READY,                 /* component: authenticated, in its domain's pool */
};

struct s2s_out;
struct verify;
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
	struct pair *pairs;
	uint16_t npairs, cpairs;
	struct s2s_out *link;  /* SESS_S2S_OUT */
	struct verify *verify; /* SESS_VERIFY: its verification record (dialback.c owns it) */
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
};

/* Per-worker router state. */
struct hubw {
	struct net_worker *w;
	struct met_worker *m;
	struct s2s_out **links; /* open hash by remote domain */
	uint32_t nlinks_cap;
	uint32_t nlinks;
	unsigned char rnd[256]; /* CSPRNG bytes for stream ids */
	uint32_t rnd_used;
};

extern struct cfg *hub_cfg;
struct tls_ctx;
extern struct tls_ctx *hub_tls;   /* every hosted domain's certificate; NULL: no TLS */
extern char hub_dialback_key[65]; /* hex SHA-256 of the dialback secret (XEP-0185) */

static inline struct hubw *hubw_of(struct net_worker *w)
{
	return net_worker_user(w);
}

/* Router-defined inter-thread messages. */
enum {
	HUB_MSG_STANZA = NET_MSG_USER + 8, /* u.bytes: a struct xstz; deliver to a connection */
	HUB_MSG_TO_LINK,                   /* a stanza for a remote domain owned by this worker */
};

/* Route one stanza whose bytes are [raw] in buffer b (a reference is taken
 * when it is kept). st describes it. */
void route_stanza(struct hubw *h, struct sess *from, struct net_buf *b, const struct xml_stanza *st);
/* May a component for `base` send from domain d (both normalised)? */
bool comp_from_allowed(const char *d, size_t dn, const char *base, size_t bn);
/* Bounce a stanza to its sender with a stanza error (never for type=error). */
void route_bounce(struct hubw *h, const struct xml_stanza *st, enum hub_sterr err, const char *text);
/* Bounce from raw bytes (parses them again: slow path). */
void route_bounce_raw(struct hubw *h, const char *p, size_t n, enum hub_sterr err);
/* Route stanza bytes again (slow path: parses them). */
void route_raw(struct hubw *h, struct net_buf *b, const char *p, size_t n);
/* Route bytes the hub generated (answers, bounces). */
void route_generated(struct hubw *h, const char *p, size_t n);
/* Route a stanza with parsed to/from domains to a remote domain's link (on this worker). */
void route_on_msg(struct hubw *h, struct net_msg *m);

/* Address checks (route.c), one per kind of source, so route_stanza only
 * routes. A stanza's addresses are decoded once (stanza_addrs_decode):
 * domains normalised, length <= 0 when absent or bad, and the `to` domain's
 * routing-table entry. A verdict says what to do when it may not pass. */
struct stanza_addrs {
	char to[CFG_NAME_MAX], fr[CFG_NAME_MAX];
	int tl, fl;
	const struct rt_route *route; /* of `to`; NULL: none */
};
enum addr_action { ADDR_ROUTE, ADDR_STREAM_ERROR, ADDR_BOUNCE, ADDR_DROP };
struct addr_verdict {
	enum addr_action verdict;
	enum hub_serr serr;   /* ADDR_STREAM_ERROR */
	enum hub_sterr sterr; /* ADDR_BOUNCE */
};
void stanza_addrs_decode(const struct xml_stanza *st, struct stanza_addrs *a);
struct addr_verdict s2s_in_accepts(struct sess *s, const struct stanza_addrs *a);
struct addr_verdict s2s_out_accepts(struct sess *s, const struct stanza_addrs *a);
struct addr_verdict comp_accepts(struct sess *s, const struct stanza_addrs *a);
/* The check for src's kind; src NULL: a stanza the hub generated. */
struct addr_verdict route_accepts(struct sess *src, const struct stanza_addrs *a);

/* JID helpers: the domain part, normalised into out. Returns length or -1. */
int jid_domain(struct xml_span jid, bool escaped, char *out, size_t cap);
/* The bare JID (local@domain) span of a raw JID. */
struct xml_span jid_bare(struct xml_span jid);

/* Driving a session's stream: see sess_drive() in sess.c. A handler gets
 * each XML_EV_STREAM_OPEN and XML_EV_STANZA; DRIVE_ALL consumes the rest of
 * the bytes (TLS follows, or the stream is over). */
enum drive { DRIVE_ON, DRIVE_ALL };
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
struct sess *sess_new(enum sess_kind kind);
void sess_free(struct sess *s);
/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* The trimmed text of a simple element like <db:result ...>KEY</db:result>. */
struct xml_span elem_text(const struct xml_stanza *st);
/* ` NAME='VALUE'` for building a reply from a stanza's raw values. */
int put_attr(char *out, size_t cap, const char *name, struct xml_span v);
/* Copy a span into a fresh string (decoding references when esc). */
char *span_dup(struct xml_span v, bool esc);
bool span_eq(struct xml_span v, const char *s);

/* s2s_in.c, s2s_out.c, dialback.c (their shared types: s2s-t.h) */
extern const struct net_conn_ops s2s_in_ops, s2s_out_ops, s2s_verify_ops;
void s2s_accept(struct net_conn *c, const struct cfg_listen *l);
void s2s_link_enqueue(struct hubw *h, const char *remote, const char *local, struct net_buf *b, const char *p,
		      size_t n);
void s2s_on_dns(struct hubw *h, struct dns_req *r);
void s2s_tick(struct hubw *h, uint64_t now);
void s2s_shutdown(struct hubw *h);
bool hub_serves(const char *domain, size_t n); /* a domain we are the server for */
/* Outbound: is `local` authenticated on this link (XEP-0288 reverse traffic)? */
bool s2s_out_pair_valid(struct sess *s, const char *local);

/* comp.c */
extern const struct net_conn_ops comp_ops;
void comp_accept(struct net_conn *c);

/* local.c: stanzas addressed to the hub's own domain */
void local_handle(struct hubw *h, const struct xml_stanza *st);

#endif
