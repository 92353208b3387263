/*
 * router/backend.h — fronting unmodified XMPP servers ([backend NAME] in
 * router.conf): the internal links from the hub to a backend
 * (router/backend.c) and the rules for streams a backend opens to the hub
 * (router/backend_in.c). See backend.c's header comment for the design.
 */
#ifndef FEDHUB_BACKEND_H
#define FEDHUB_BACKEND_H

#include <stdbool.h>
#include <sys/socket.h>
#include "router/hub.h"
#include "router/sess.h"

/* ---- internal links: hub -> backend (backend.c) ---- */

extern const struct net_conn_ops backend_ops;
/* The worker that relays what `remote` sends to the backend: its link to
 * the backend carries every stanza from `remote` to any domain of it, in
 * order. */
int backend_owner(const char *remote, const struct cfg_backend *b);
/* A stanza from `remote` for the backend domain `local`, on the owner
 * worker; bk is local's backend when the caller looked it up (in this
 * configuration), else NULL. Consumes the reference on b. */
void backend_enqueue(struct hubw *h, const struct cfg_backend *bk, const char *remote, const char *local,
		     struct net_buf *b, const char *p, size_t n, struct net_ref src);
/* Once a second: stalled queues bounced, dialback answers overdue, idle
 * links closed, back-off over. */
void backend_tick(struct hubw *h, uint64_t now);
void backend_shutdown(struct hubw *h);
/* Stanzas waiting for the link of internal link session s (0 when it has
 * none left): a drain closes it when nothing waits. */
uint32_t backend_sess_queued(const struct sess *s);
/* The pairs authenticated on it: their backend domains and their remote
 * domains, each comma-separated (once each, cut to fit cap); returns how
 * many pairs. */
int backend_sess_domains(const struct sess *s, char *doms, char *remotes, size_t cap);

/* ---- streams from a backend to the hub (backend_in.c) ---- */

/* Is sa the source of some backend (its allow_from)? Then a stream from it
 * may be addressed to a domain the hub does not serve (transit). */
bool backend_source(const struct sockaddr *sa);
/* May a stream from sa speak for domain d, a backend domain? true when d is
 * a domain of a backend whose allow_from holds sa. */
bool backend_claim_ok(const char *d, const struct sockaddr *sa);
/* Fill targets with the connect addresses of the backend serving domain
 * (a dialback verification of one of its domains goes to it); false when
 * the domain is no backend's. */
bool backend_targets(const char *domain, struct dns_target *t, int *nt);
/* The TLS policy toward the backend serving domain; -1 when none does. */
int backend_tls_policy(const char *domain);

#endif
