/*
 * router/hub.h — what every file of the router shares: the RFC 6120 error
 * conditions, the per-worker state, the global configuration and keys, the
 * router's message types. Each part has its own header: sess.h (a stream
 * and its helpers), route.h (the stanza path), flow.h, s2s.h, comp.h, local.h.
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
	struct nl_worker *nl; /* nodelink.c: this worker's links to other nodes */
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
	HUB_MSG_TO_BACKEND,                /* a stanza for a backend's internal link owned by this worker */
};

/* hub.c: the router's callbacks for net_init() (workers, max_pending from c). */
void hub_net_config(struct net_config *nc, const struct cfg *c);
/* The routing table's static entries: the hub's domain, [domain]s, [component]s. */
int hub_fill_table(const struct cfg *c);

#endif
