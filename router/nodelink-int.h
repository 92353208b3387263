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

#define NL_NS "urn:fedhub:node"
#define NL_MAC_HEX 64 /* hex HMAC-SHA256 */

enum nl_ctrl_kind {
	NL_C_STANZA,  /* not a control element: a forwarded stanza */
	NL_C_AUTH,    /* text: the peer's MAC */
	NL_C_OK,      /* the acceptor accepted our proof */
	NL_C_LEASE,   /* remote, token: stanzas to remote travel under token */
	NL_C_REFUSED, /* remote, token: the stanzas that follow come back */
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

#endif
