/*
 * router/nodelink.h — node-to-node links of a cluster (router/nodelink.c).
 *
 * A stanza that must leave from another node (that node owns the lease of
 * its remote domain, or holds the component connections of its `to`
 * domain) is forwarded over a persistent, authenticated node link: its
 * original bytes, zero-copy, after a small control element announcing the
 * (remote, fencing token) it travels under whenever that changes.
 *
 * One outbound node link per (worker, peer node): the worker that routes a
 * stanza sends it on its own link, so no stanza crosses workers on the
 * sending side and all stanzas of one source (hence of one (from, to) pair)
 * take one ordered TCP stream. The receiving node routes them on the worker
 * that accepted the link, in arrival order.
 *
 * Acknowledgements (at least once). The receiving node acknowledges, by a
 * cumulative count after each read batch, the stanzas it has taken
 * responsibility for: route_stanza() has handed each on — into its
 * destination connection's send queue (an s2s link, a component), that
 * destination's flow queue, an s2s link's connect or lease queue, or the
 * ring to the worker that owns the destination — or has bounced it, or it
 * went back after <refused/>. Not "written to the destination's socket":
 * the acknowledgement is queued behind those writes in the same loop turn,
 * so in practice it leaves after them. Until acknowledged, the sending node
 * keeps each stanza (a reference to its buffer, no copy) in the link's
 * ring; when the link fails (error, EOF, the peer gone from the directory,
 * no acknowledgement for stall_timeout) the ring's stanzas go to the front
 * of the connect queue, in order, ahead of anything that came meanwhile:
 * sent again on the next link to that node, or routed again once the node
 * has left the directory (they wait for the new lease owner), or bounced
 * remote-server-timeout after stall_timeout. A stanza the receiver took
 * but whose acknowledgement was lost with the link is sent twice: rare
 * duplicates, never a silent loss.
 *
 * Threads: every function here runs on a worker, about that worker's own
 * links (the same rule as net/), except nl_listen (main, before the
 * workers start).
 */
#ifndef FEDHUB_NODELINK_H
#define FEDHUB_NODELINK_H

#include <stdbool.h>
#include <stdint.h>
#include "router/hub.h"

/* The listener kind of node_listen: not an index of hub_cfg->listen. */
#define NL_LISTEN_KIND 0xfff0

/* main.c, before net_start: when clustered, open the node listener.
 * 0 or -errno (logged). */
struct cfg;
int nl_init(const struct cfg *c);
/* The TLS context of node_tls (its certificate, key and CA), or NULL with
 * why in err. check.c tries it for `fedhub -t`. */
struct tls_ctx;
struct tls_ctx *nl_tls_make(const struct cfg_cluster *k, char *err, size_t cap);
int nl_listen(const struct sockaddr *sa, socklen_t len);
/* hub.c's on_accept for NL_LISTEN_KIND. */
void nl_accept(struct net_conn *c);

/*
 * Forward one stanza, bytes [p, p+n) of buffer b, to node node_idx (an index
 * of the cluster directory, clu_node_get) under the lease (remote, token);
 * remote NULL / rn 0 and token 0 for a stanza that needs no lease (to a
 * component domain on that node). src is the connection the stanza was read
 * from (FLOW_NO_SRC: none), for back-pressure.
 *
 * Returns 0: the stanza is taken (the caller's reference on b is consumed,
 * any worker's buffer, and kept until the receiver acknowledges it): sent,
 * or waiting in the node link's ring while the link is above its high-water
 * mark (send_queue_max bytes queued, or NL_UNACKED_MAX stanzas or
 * send_queue_max bytes unacknowledged; src is paused while more than
 * source_allowance bytes wait, like for a slow component), or waiting
 * for the link to connect and authenticate (its source paused past
 * link_queue_max stanzas, refused past 16 times that; bounced
 * remote-server-timeout after stall_timeout).
 * Negative: not taken, the caller still holds the reference and bounces
 * the stanza with *why: -EHOSTUNREACH (no such node, or it is not alive),
 * -ENOBUFS / -ENOMEM (queues full: resource-constraint), -ETIMEDOUT (the
 * link made no progress for stall_timeout: remote-server-timeout).
 * One exception: -ESTALE, that node refused (remote, token) already (see
 * nl_set_refused_hook): keep the stanza queued and forward it once the
 * lease was asked again; bounce it only when stall_timeout passes.
 * No allocation, lock or syscall per stanza on a live link.
 */
int nl_forward(struct hubw *h, int node_idx, struct net_buf *b, const char *p, size_t n, const char *remote,
	       size_t rn, uint64_t token, struct net_ref src, enum hub_sterr *why);

/*
 * The owner refused forwards under (remote, token): it does not hold that
 * lease, or holds an older one. The refused stanzas come back and are routed
 * again on this worker (route_stanza, as the hub's own), after this hook
 * ran once for the refusal: the cluster code re-asks the lease
 * (clu_lease_ask) and queues them meanwhile. Without a hook nodelink calls
 * clu_lease_ask itself. Set before the workers start.
 */
typedef void nl_refused_fn(struct hubw *h, const char *remote, size_t rn, uint64_t token, int node_idx);
void nl_set_refused_hook(nl_refused_fn *fn);

/*
 * Component placement (route.c): a component domain with no local
 * connection. When another node holds one (clu_comp_nodes), forward the
 * stanza to one of them, chosen by the (from, to) bare JIDs so a
 * conversation keeps one node and its order; consumes the reference and
 * returns true. false: no node to forward to (the caller bounces, still
 * holding the reference).
 */
bool nl_comp_forward(struct hubw *h, const char *domain, size_t dn, struct net_buf *b, const struct xml_stanza *st,
		     struct net_ref src);

/*
 * What waits in this worker's connect queue for node node_idx (its link is
 * not up) is routed again now, in order: that node lost a lease, or is gone.
 * Stanzas that still belong to it come back to the queue, in order. The
 * s2s links call it when the owner of their remote changes from that node,
 * before routing anything newer, so the older stanzas go first.
 */
void nl_reroute_waiting(struct hubw *h, int node_idx);

/* hub.c: every tick (~100 ms) on each worker (connect retries, stall
 * bounces, idle keepalive), and at worker stop. */
void nl_tick(struct hubw *h, uint64_t now);
void nl_worker_stop(struct hubw *h);

#endif
