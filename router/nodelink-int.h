/*
 * router/nodelink-int.h — what router/nodelink.c and router/nl_proto.c
 * share: the node stream's control elements, the authentication MAC and
 * the per-link table of lease contexts. Not for the rest of the router.
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
	bool held;          /* it holds a pause of src (waiting for room) */
	uint32_t hv;        /* rt_hash of remote */
	const char *remote; /* the link's lease-context name (lives as long as the link) */
	uint64_t token;
	struct net_ref src;
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

#endif
