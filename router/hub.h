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
#include "router/pix.h"

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
	SERR_HOST_GONE, /* §4.9.3.5: a reload removed the local domain */
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
	uint32_t hash; /* pix_hash2(remote, local): the key of sess.pix */
	uint8_t state;
	uint8_t retries; /* inbound: verifications started again after a refusal */
};

/* Flow control (flow.c): stanzas waiting for a destination connection that
 * is at its high-water mark, and the sources each has paused. */
#define FLOW_NO_SRC 0xffffu /* net_ref.worker of "no source" (generated stanzas) */
struct flow_item {
	struct net_buf *b;
	const char *p;
	uint32_t n;
	struct net_ref src;
};
struct flow_src {
	struct net_ref ref;
	uint32_t bytes; /* its bytes waiting here */
	bool paused;    /* it holds one pause of that source */
};
struct flowq {
	struct flow_item *q; /* ring, cap a power of two */
	uint32_t head, len, cap;
	uint64_t bytes;
	struct flow_src *src;
	uint32_t nsrc, csrc;
	uint64_t progress_at; /* ms: the destination last took something */
	uint64_t last_oq;     /* its send queue's bytes then */
	bool stalled;         /* no progress for stall_timeout: bounce at once */
	bool busy;            /* on the worker's list */
};
struct flow_omsg {
	struct net_msg m;
	struct net_ref src; /* paused until the message is sent */
	uint16_t dst;
};

struct s2s_out;
struct sess {
	enum sess_kind kind;
	struct net_conn *c;
	struct xml_tok tok;
	uint8_t state;
	bool got_features;
	bool peer_v1;
	char stream_id[128]; /* ours: 32 hex chars; a peer's may be longer (UUIDs) */
	char *local;         /* component domain; s2s: our domain in the header */
	char *remote;        /* s2s: the peer's domain */
	struct pair *pairs;  /* in the order claimed; find them with pair_find() */
	uint16_t npairs, cpairs;
	struct pix pix;       /* index of pairs by (remote, local); none while few */
	struct s2s_out *link; /* SESS_S2S_OUT */
	char *key;            /* SESS_VERIFY: its struct vstream (dialback.c); cleared before sess_free() */
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
	struct met_link ml; /* what the labelled gauges counted for it */
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
	/* flow.c */
	uint64_t fq_bytes;     /* in all flow queues of this worker */
	struct net_ref *fbusy; /* destinations with a flow queue (or stalled) */
	uint32_t nfbusy, cfbusy;
	struct flow_omsg *obox; /* messages waiting for a full ring */
	uint32_t olen, ocap;
	uint64_t oblocked; /* workers with messages in obox */
};

/* The running configuration and TLS context: a reload (reload.c) swaps them
 * with rcu_xchg_pointer and frees the old after a grace period, so a reader
 * uses them within its loop turn only. The acquire load pairs with that
 * swap (on x86 it is the plain load it was). */
extern struct cfg *hub_cfg_live;
#define hub_cfg (__atomic_load_n(&hub_cfg_live, __ATOMIC_ACQUIRE))
struct tls_ctx;
extern struct tls_ctx *hub_tls_live; /* every hosted domain's certificate; NULL: no TLS */
#define hub_tls (__atomic_load_n(&hub_tls_live, __ATOMIC_ACQUIRE))
extern char hub_dialback_key[65]; /* hex SHA-256 of the dialback secret (XEP-0185) */

static inline struct hubw *hubw_of(struct net_worker *w)
{
	return net_worker_user(w);
}

/* Router-defined inter-thread messages. */
enum {
	HUB_MSG_STANZA = NET_MSG_USER + 8, /* u.bytes: a struct xstz; deliver to a connection */
	HUB_MSG_TO_LINK,                   /* a stanza for a remote domain owned by this worker */
	HUB_MSG_PAUSE,                     /* u.bytes: a struct net_ref of ours: stop reading it */
	HUB_MSG_RESUME,                    /* ... read it again */
};

/* flow.c: see its header comment. */
/* Hand a stanza to destination c (this worker's): its send queue, or its
 * flow queue when that is full (src is paused past its allowance). Returns
 * 0 (the reference is consumed), -EPIPE (c is closing: route it elsewhere)
 * or another negative code with *why the error to bounce it with; on
 * failure the caller still holds the reference. */
int flow_send(struct hubw *h, struct net_conn *c, struct net_buf *b, const char *p, size_t n, struct net_ref src,
	      enum hub_sterr *why);
/* The destination's send queue has room: move what waits into it. */
void flow_drain(struct hubw *h, struct sess *d);
/* The destination is going away: route what waits for it again. */
void flow_close(struct hubw *h, struct sess *d);
/* A source session is freed (its pause count no longer counts). */
void flow_sess_gone(struct hubw *h, struct sess *s);
/* Send m to worker dst, or keep it (in order) until its ring has room;
 * src (FLOW_NO_SRC for none) is paused meanwhile. Consumes m->buf. */
void flow_msg_send(struct hubw *h, int dst, const struct net_msg *m, struct net_ref src);
void flow_on_msg(struct hubw *h, struct net_msg *m); /* HUB_MSG_PAUSE / RESUME */
/* Pause / resume a source (any worker's) for a reason of the caller's own. */
void flow_src_hold(struct hubw *h, struct net_ref src);
void flow_src_release(struct hubw *h, struct net_ref src);
/* Bytes one worker's flow queues may hold (queue_memory_max / workers). */
uint64_t flow_mem_share(void);
void flow_turn(struct hubw *h);               /* every loop turn: the outbox */
void flow_tick(struct hubw *h, uint64_t now); /* every tick: drains, stalls */
void flow_publish(struct hubw *h);
static inline struct net_ref flow_src_of(const struct sess *s)
{
	return s && s->c ? s->c->ref : (struct net_ref){.worker = FLOW_NO_SRC};
}

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
/* Before the workers start: connection limits and trusted balancers from hub_cfg. */
void s2s_in_init(void);
void s2s_link_enqueue(struct hubw *h, const char *remote, const char *local, struct net_buf *b, const char *p, size_t n,
		      struct net_ref src);
void s2s_on_dns(struct hubw *h, struct dns_req *r);
void s2s_tick(struct hubw *h, uint64_t now);
void s2s_shutdown(struct hubw *h);
bool hub_serves(const char *domain, size_t n); /* a domain we are the server for */
/* Outbound: is `local` authenticated on this link (XEP-0288 reverse traffic)? */
bool s2s_out_pair_valid(struct sess *s, const char *local);

/* pairs.c: the (remote, local) pairs of a session, hashed (router/pix.h) */
struct pair *pair_find(const struct sess *s, const char *remote, const char *local);
/* Find or append (control plane: aborts when out of memory). The pointer
 * stays good until the next pair_add() on s. */
struct pair *pair_add(struct sess *s, const char *remote, const char *local);
void pairs_free(struct sess *s);

/* comp.c */
extern const struct net_conn_ops comp_ops;
void comp_accept(struct net_conn *c);

/* local.c: stanzas addressed to the hub's own domain */
void local_handle(struct hubw *h, const struct xml_stanza *st);

#endif
