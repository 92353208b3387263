/*
 * router/s2s-t.h — the types the s2s files share: router/s2s_in.c (inbound
 * streams), router/s2s_out.c (outbound links), router/s2s_out_stream.c (the
 * stream on an outbound link), router/s2s_target.c (where outbound streams
 * connect) and router/dialback.c (dialback keys and verification streams),
 * and the few functions they call in each other. Types and prototypes only; the rest of the router sees hub.h.
 */
#ifndef FEDHUB_S2S_T_H
#define FEDHUB_S2S_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router/hub.h"
#include "router/sess.h"
#include "router/route.h"
#include "router/s2s.h"
#include "router/pairq.h"

#define STREAM_NS "xmlns:stream='http://etherx.jabber.org/streams'"
#define NS_TLS    "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL   "urn:ietf:params:xml:ns:xmpp-sasl"

enum link_state { L_IDLE, L_RESOLVING, L_CONNECTING, L_OPEN, L_BACKOFF };

struct lpair {
	char *local;
	uint32_t hash; /* pix_hash1(local): the key of s2s_out.lpix */
	uint8_t state; /* enum pair_state */
	struct pairq q;      /* each stanza waits at most connect_timeout */
	uint64_t since;      /* PENDING: db:result sent; INVALID: refused */
	struct s2s_out *alt; /* a link of its own for this local domain */
};

struct s2s_out {
	char *remote;
	/* A peer that takes SASL EXTERNAL but no dialback can authenticate one
	 * local domain per stream: every other local domain then gets a link of
	 * its own, an `alt` hanging off its pair, outside the table. */
	struct s2s_out *parent;
	bool peer_dialback;
	bool unlinked;         /* out of the table: only its memory is left */
	struct s2s_out *hnext; /* the bucket's chain (s2s_links.c) */
	uint32_t hash;         /* s2s_links_hash(remote) */
	struct sess *sess;
	uint8_t state;
	bool dns_pending;
	bool dead;        /* remove once DNS comes back */
	struct lpair *lp; /* in the order the local domains came; see link_pair() */
	int nlp, clp;
	/* how many pairs are in each enum pair_state, and how many have an alt:
	 * what the tick and the close path ask about a link, answered without
	 * a scan of its pairs (a link may carry thousands). Kept by lp_set(). */
	uint32_t npst[4];
	uint32_t nalt;
	struct pix lpix; /* index of lp by local domain; none while few */
	uint32_t queued;
	/* sources paused because queued passed link_queue_max while the link
	 * comes up (flow.c); read again once it is below half of that */
	struct pq_held held;
	struct dns_target *t; /* the last lookup's or [route]'s targets, nt of them */
	int nt, next_t;
	uint64_t failed_at; /* L_BACKOFF: when the last attempt failed */
	bool peer_cert_ok;  /* this stream's TLS certificate names the remote (RFC 6125) */
	uint32_t peer_max;  /* XEP-0478 max-bytes the peer announced; 0 = none */
	uint64_t last_activity;
	uint64_t last_keepalive;
	/* cluster (router/s2s_clu.c): may this node send to the remote? An
	 * alt link follows its parent's. */
	uint8_t cl;                     /* enum s2s_cl */
	int cl_node;                    /* CL_FORWARD: the owner's directory index */
	uint64_t cl_token;              /* CL_OURS / CL_FORWARD: the lease's fencing token */
	const uint64_t *cl_valid_until; /* CL_OURS: the self-fencing deadline (atomic) */
};

/* Every change of a pair's state goes through here (the link's counts). */
static inline void lp_set(struct s2s_out *L, struct lpair *p, enum pair_state st)
{
	L->npst[p->state]--;
	L->npst[st]++;
	p->state = (uint8_t)st;
}

enum s2s_cl {
	CL_OFF,     /* not clustered: always ours */
	CL_ASK,     /* clustered, the ask could not be sent yet (tick retries) */
	CL_ASKING,  /* asked; the queue waits, nothing is resolved or connected */
	CL_OURS,    /* our lease: send while not self-fenced */
	CL_FORWARD, /* node cl_node owns it: the queue drains into nl_forward() */
	CL_WAIT,    /* lost, fenced or unknown owner: hold the queue */
};

/* May L's stanzas leave from this node now? (Cheap: one atomic load.) */
static inline bool s2s_clu_may_send(const struct s2s_out *L)
{
	const struct s2s_out *R = L->parent ? L->parent : L;
	if (R->cl == CL_OFF)
		return true;
	return R->cl == CL_OURS && net_now_ms() < __atomic_load_n(R->cl_valid_until, __ATOMIC_ACQUIRE);
}

/* A verification stream to one remote domain's authoritative server,
 * shared by every key we ask it about (dialback.c). */
struct vstream;

/* DNS requests carry one of these as their cookie. */
struct dns_wait {
	struct dns_req req;
	struct s2s_out *link;
	struct vstream *vs;
};

/* s2s_links.c: the worker's outbound links by remote domain (hubw.links),
 * a chained hash table that doubles when it holds more links than buckets */
uint32_t s2s_links_hash(const char *remote);
struct s2s_out *s2s_links_find(const struct hubw *h, const char *remote);
/* L->remote set; sets L->hash */
void s2s_links_add(struct hubw *h, struct s2s_out *L);
/* false if L was not in the table */
bool s2s_links_del(struct hubw *h, struct s2s_out *L);
void s2s_links_free(struct hubw *h);

/* s2s_clu.c: the link's side of the cluster's leases */
/* A new link (not an alt): in cluster mode, ask for the lease. */
void s2s_clu_link_new(struct hubw *h, struct s2s_out *L);
/* L goes away: give its lease back. */
void s2s_clu_link_free(struct hubw *h, struct s2s_out *L);
/* A stanza for a forward link: true when it was handled (forwarded or
 * bounced); false: the owner is gone, the lease is asked again and the
 * stanza is the caller's to queue. */
bool s2s_clu_forward(struct hubw *h, struct s2s_out *L, struct net_buf *b, const char *p, size_t n,
		     struct net_ref src);
/* Once a second: an ask that could not be sent is sent again. */
void s2s_clu_tick(struct hubw *h, struct s2s_out *L);
/* s2s_out.c, for s2s_clu.c: start L if stanzas wait and it may send;
 * flush what valid pairs queued while it could not. */
void s2s_out_link_kick(struct hubw *h, struct s2s_out *L);
/* Sources paused for L's queue read again once it is below half of
 * link_queue_max (all of them when `all`). */
void s2s_out_release_held(struct hubw *h, struct s2s_out *L, bool all);

/* s2s_target.c: static routes, resolution, outbound TLS policy */
/* Fill targets from a [backend] (its domains) or a [route]; returns true if the domain has one. */
bool s2s_route_targets(const char *domain, struct dns_target *t, int *nt);
/* Look `domain` up for link L or verification stream vs; s2s_on_dns() gets the answer. */
void s2s_resolve(struct hubw *h, const char *domain, struct s2s_out *L, struct vstream *vs);
/* Outbound TLS policy: the [route]'s, else the remote's policy (policy.h). */
enum cfg_tls_mode s2s_out_tls_policy(const char *remote);
/* Drop targets on loopback, private, link-local... addresses unless
 * dns_allow_private (DNS answers only, never [route] addresses). */
void s2s_drop_private_targets(struct dns_target *t, int *nt, const char *domain);

/* What a peer's <stream:features/> offers (RFC 6120 §4.3.2), read from the
 * element's children and their namespaces, never from its bytes: a value
 * like from='EXTERNAL' or an element in another namespace offers nothing. */
struct feats {
	bool starttls, starttls_required;
	bool sasl_external;
	bool dialback;
	bool bidi;
	uint32_t max_bytes; /* XEP-0478 max-bytes; 0 = not announced */
};
int s2s_features_parse(struct xml_span raw, struct feats *f);

/* s2s_out_stream.c: the stream on an outbound link's connection */
/* Our stream header on s (at connect, after TLS, after SASL success). */
void s2s_out_open_stream(struct sess *s);
/* sess_drive() callback of an outbound stream. */
enum drive s2s_out_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev);

/* s2s_out.c: what the stream negotiation does to the link */
/* The pair of local domain `local` on L, or NULL (a hash probe). */
struct lpair *s2s_out_pair_find(const struct s2s_out *L, const char *local);
/* p is valid: send its queue to the stream. */
void s2s_out_pair_flush(struct hubw *h, struct s2s_out *L, struct lpair *p);
/* Bounce p's queue with err. */
void s2s_out_pair_bounce(struct hubw *h, struct s2s_out *L, struct lpair *p, enum hub_sterr err);
/* Start dialback for every pair of L not yet under way. */
void s2s_out_start_dialback(struct hubw *h, struct s2s_out *L);
/* The stream cannot authenticate: fail the link, close the stream. */
void s2s_out_give_up(struct hubw *h, struct sess *s, const char *why);

/* dialback.c */
/* The XEP-0185 key for a stream id between two domains, as 64 hex chars. */
void dialback_key(const char *receiving, const char *originating, const char *id, char out[65]);
/* Constant-time comparison of a received key with the one we computed. */
bool db_key_ok(struct xml_span got, const char *want);
/* The normalised domain of a dialback element's from/to; -1 if absent or bad. */
int db_norm_attr(struct xml_span v, bool esc, char *out, size_t cap);
/* The normalised from and to of a <db:result/>; -1 (and a stream error
 * on s) when either is absent or bad. */
int db_result_addrs(struct sess *s, const struct xml_stanza *st, char from[CFG_NAME_MAX], char to[CFG_NAME_MAX]);
/* Ask remote's authoritative server whether `key` is good for inbound
 * session `in` (XEP-0220 §2.3); the answer goes to `in` as a <db:result/>. */
void db_verify_start(struct hubw *h, struct sess *in, const char *remote, const char *local, struct xml_span key);
/* The DNS answer for a verification stream's lookup. */
void db_verify_on_dns(struct hubw *h, struct vstream *vs, const struct dns_req *r);
/* Once a second (from s2s_tick()): forget verification streams long unused. */
void db_tick(struct hubw *h, uint64_t now);

#endif
