/*
 * router/nodelink-int.h — what router/nodelink.c, router/nl_fwd.c and
 * router/nl_proto.c share: the link state, the node stream's control
 * elements, the authentication MAC and the per-link table of lease contexts. Not for the rest of the router.
 *
 * The node stream (both directions are XML streams in jabber:server, so a
 * forwarded stanza's bytes mean on it what they meant where they came from):
 *
 *   connector                                acceptor
 *   <stream:stream from=A to=B id=IA> --->
 *                                     <--- <stream:stream from=B to=A id=IB>
 *                                          <auth xmlns=NS>MAC(acceptor)</auth>
 *   <auth xmlns=NS>MAC(connector)</auth> --->
 *                                     <--- <ok xmlns=NS/>
 *   <lease xmlns=NS r=REMOTE t=TOKEN/>        (when REMOTE is new on the link
 *   stanza, stanza, ...                        or its token changed)
 *                                     <--- <refused xmlns=NS r=REMOTE t=TOKEN/>
 *                                          refused stanzas, as they came
 *                                     <--- <a xmlns=NS h=COUNT/>
 *
 * Acknowledgements. <a h=COUNT/> tells the connector that the acceptor has
 * taken responsibility for the first COUNT stanzas of this stream (counted
 * from 1 after <ok/>, modulo 2^32; cumulative, so a later one covers every
 * earlier one). The acceptor sends one after each read batch that carried
 * stanzas, behind what routing them wrote. The connector keeps every stanza
 * it put on the link (a reference to its buffer, no copy) in the link's
 * ring (struct nl_ring) until an <a/> covers it; when the link fails, what
 * the ring still holds is sent again: at least once, never lost silently.
 *
 * MAC(role) = hex HMAC-SHA256(cluster secret, "fedhub-node " role NUL IA NUL
 * IB NUL A NUL B): both stream ids are fresh randoms of the two sides, so
 * neither proof can be replayed on another stream, and the role keeps one
 * side's proof from being reflected as the other's. The connector sends
 * nothing but its proof before <ok/>.
 *
 * A stanza whose `to` domain has a lease context on the link travels under
 * that lease; one without travels under none (a component domain).
 */
#ifndef FEDHUB_NODELINK_INT_H
#define FEDHUB_NODELINK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "xml/xml.h"
#include "net/net.h"
#include "router/cfg.h"
#include "router/clu.h"
#include "router/hub.h"

#define NL_NS "urn:fedhub:node"
#define NL_MAC_HEX 64 /* hex HMAC-SHA256 */

enum nl_ctrl_kind {
	NL_C_STANZA,  /* not a control element: a forwarded stanza */
	NL_C_AUTH,    /* text: the peer's MAC */
	NL_C_OK,      /* the acceptor accepted our proof */
	NL_C_LEASE,   /* remote, token: stanzas to remote travel under token */
	NL_C_REFUSED, /* remote, token: the stanzas that follow come back */
	NL_C_ACK,     /* token: the count of stanzas the acceptor took (h, mod 2^32) */
	NL_C_BAD,     /* in our namespace but not understood: a stream error */
};
struct nl_ctrl {
	enum nl_ctrl_kind kind;
	struct xml_span text;    /* NL_C_AUTH */
	char remote[256];        /* NL_C_LEASE / NL_C_REFUSED: normalised */
	int rn;
	uint64_t token;
};
/* Classify a top-level element of a node stream. */
void nl_ctrl_parse(const struct xml_stanza *st, struct nl_ctrl *out);

/* Write a control element into out; returns its length, or -1 when it does
 * not fit. remote is a normalised domain (no character needs escaping). */
int nl_ctrl_lease(char *out, size_t cap, const char *remote, size_t rn, uint64_t token);
int nl_ctrl_refused(char *out, size_t cap, const char *remote, size_t rn, uint64_t token);
int nl_ctrl_auth(char *out, size_t cap, const char *mac);
int nl_ctrl_ack(char *out, size_t cap, uint32_t h);
extern const char nl_ctrl_ok[];

/* The proof of `role` ("connector" or "acceptor") into out (NL_MAC_HEX + 1). */
void nl_mac(const unsigned char *secret, size_t slen, const char *role, const char *id_conn, const char *id_acc,
	    const char *from_conn, const char *from_acc, char *out);
/* A received proof against the expected one, in constant time. */
bool nl_mac_ok(struct xml_span got, const char *want);

/* Lease contexts of one link: remote domain -> token, open addressing. The
 * sender keeps what it announced, the receiver what it was told. */
struct nl_ctx_ent {
	uint32_t hash;
	uint16_t len; /* 0: empty slot */
	uint64_t token;
	char *name;
};
struct nl_ctx {
	struct nl_ctx_ent *v;
	uint32_t cap, n; /* cap a power of two */
};
#define NL_CTX_MAX (1u << 20) /* remote domains one link may announce */
struct nl_ctx_ent *nl_ctx_find(const struct nl_ctx *t, const char *d, size_t n, uint32_t hv);
/* Set d's token (adding d). 0, -ENOMEM or -ENOSPC (NL_CTX_MAX reached). */
int nl_ctx_put(struct nl_ctx *t, const char *d, size_t n, uint32_t hv, uint64_t token);
void nl_ctx_clear(struct nl_ctx *t);

/*
 * The connector's ring of one link: every stanza it accepted for the link,
 * in stream order. The first nsent were put on the stream and wait for an
 * acknowledgement; the rest wait for room (the send queue's high-water mark,
 * or too many unacknowledged: back-pressure, see nodelink.c). An entry holds
 * the caller's reference on b; the send queue only borrows the bytes (a
 * slice without a buffer), so an entry leaves the ring only when
 * acknowledged or when its link is closed and no write refers to it.
 */
struct nl_ua {
	struct net_buf *b;
	const char *p;
	uint32_t n;
	uint16_t rn;        /* remote's length; 0: no lease */
	uint32_t hv;        /* rt_hash of remote */
	const char *remote; /* the link's lease-context name (lives as long as the link) */
	uint64_t token;
	struct net_ref src; /* the connection it was read from (back-pressure) */
};
struct nl_ring {
	struct nl_ua *v;
	uint32_t cap, head, len; /* cap a power of two */
	uint32_t nsent;          /* the first nsent entries are on the stream */
	uint32_t acked;          /* stanzas acknowledged on this stream, mod 2^32 */
	uint64_t sent_bytes, pend_bytes;
};
/* Append an entry (not sent yet). 0, -ENOBUFS (len is max already), -ENOMEM. */
int nl_ring_push(struct nl_ring *r, const struct nl_ua *e, uint32_t max);
/* The first entry not on the stream yet, or NULL. */
struct nl_ua *nl_ring_pending(struct nl_ring *r);
/* That entry went on the stream. */
void nl_ring_mark_sent(struct nl_ring *r);
/* How many entries an <a h=h/> acknowledges anew (0 .. nsent), or -EPROTO
 * when h counts more than were sent (or goes back). The caller pops them. */
int nl_ring_ack(const struct nl_ring *r, uint32_t h);
/* Take the head entry (len > 0): an acknowledged one, or any on close. */
struct nl_ua nl_ring_pop(struct nl_ring *r);
void nl_ring_free(struct nl_ring *r);

/* ---- link state, shared by nodelink.c (setup, receive) and nl_fwd.c (send) ---- */

#define NL_TOKEN_REFUSED (1ull << 63) /* in a sender's context table: that token was refused */
#define NL_TOKEN_NONE UINT64_MAX       /* in a sender's context table: named, not announced yet */
/* Unacknowledged stanzas one link may have on its stream (the bytes are
 * bounded by send_queue_max too), and entries its ring may hold in all. */
#define NL_UNACKED_MAX 65536
#define NL_RING_MAX (1u << 18)
/* Unacknowledged entries past which a slice of a receive buffer that runs
 * short is moved into a buffer of its own before it goes on the stream
 * (net/'s rule for slow send queues: the ring must not pin the pool). */
#define NL_PIN_MAX 64

enum nl_st {
	NLS_HDR,   /* waiting for the peer's stream header */
	NLS_AUTH,  /* waiting for the peer's proof */
	NLS_OK,    /* connector: proof sent, waiting for <ok/> */
	NLS_READY, /* stanzas flow */
};

struct nl_conn {
	bool outbound;
	uint8_t st; /* enum nl_st */
	bool counted_up;
	int idx;                /* outbound: the peer's directory index */
	char peer[CLU_ID_MAX];  /* the peer's node id */
	char peer_sid[128];     /* the peer's stream id */
	struct nl_ctx ctx;      /* lease contexts announced (out) or received (in) */
	bool refused_seen;      /* outbound: a <refused/> came: stanzas may follow */
	bool detached;          /* outbound: no longer its nl_out's link (closing) */
	char ref_r[CFG_NAME_MAX]; /* inbound: the last <refused/> sent */
	uint64_t ref_t;
	struct nl_ring ring;    /* outbound: stanzas not acknowledged yet */
	uint64_t ack_at;        /* outbound: ms: the ring last moved (or became non-empty) */
	uint32_t rx_n, rx_acked; /* inbound: stanzas taken / acknowledged so far */
	bool window_full;       /* outbound: too much unacknowledged: wait for half of it */
	struct net_ref *hsrc;   /* outbound: sources paused for what waits in the ring */
	uint32_t nhsrc, chsrc;
};

/* A stanza waiting for its link to authenticate: our copy, the stanza's
 * bytes then the remote's name. */
struct nl_wait {
	struct net_buf *b;
	uint32_t n;
	uint16_t rn;
	bool held; /* it holds a pause of src */
	uint64_t token;
	struct net_ref src;
};

struct nl_out {
	struct sess *s; /* the link's session; NULL: none */
	struct clu_node node;
	uint64_t gen; /* clu_nodes_gen() when node was read */
	bool known;
	uint32_t fails;    /* connection attempts in a row that did not authenticate */
	uint64_t retry_at; /* ms: no new attempt before */
	uint64_t last_tx;  /* ms: last bytes queued (keepalive) */
	struct nl_wait *wq;
	uint32_t whead, wlen, wcap;
	uint64_t wbytes, wsince;
	uint32_t old; /* its former links not closed yet: no new one before */
	bool rerouting;
};

struct nl_worker {
	struct nl_out out[CLU_MAX_NODES];
	int nout; /* indexes used: 0..nout-1 */
	bool stopping;
};

struct nl_worker *nl_worker_of(struct hubw *h);
/* setup (nodelink.c) */
bool nl_out_node(struct nl_out *o, int idx);
void nl_out_connect(struct hubw *h, struct nl_out *o, int idx);
/* sending (nl_fwd.c) */
void nl_wq_bounce_all(struct hubw *h, struct nl_out *o, enum hub_sterr err);
void nl_wq_reroute_all(struct hubw *h, struct nl_out *o);
void nl_out_detach(struct nl_out *o, bool was_ready);
void nl_release_srcs(struct hubw *h, struct nl_conn *nc);
void nl_out_pump(struct hubw *h, struct sess *s);
void nl_out_acked(struct hubw *h, struct sess *s, uint64_t hv);
void nl_out_requeue(struct hubw *h, struct nl_out *o, struct sess *s);
void nl_out_ready(struct hubw *h, struct nl_out *o);

#endif
