/*
 * router/s2s.h — what the rest of the router calls in the s2s files
 * (router/s2s_in.c, s2s_out.c, s2s_out_stream.c, s2s_target.c, dialback.c;
 * their shared types: s2s-t.h).
 */
#ifndef FEDHUB_S2S_H
#define FEDHUB_S2S_H

#include <stdbool.h>
#include "router/hub.h"
#include "router/sess.h"

extern const struct net_conn_ops s2s_in_ops, s2s_out_ops, s2s_verify_ops;
void s2s_accept(struct net_conn *c, const struct cfg_listen *l);
/* Before the workers start: connection limits and trusted balancers from hub_cfg. */
void s2s_in_init(void);
void s2s_link_enqueue(struct hubw *h, const char *remote, const char *local, struct net_buf *b, const char *p, size_t n,
		      struct net_ref src);
void s2s_on_dns(struct hubw *h, struct dns_req *r);
struct clu_lease_ans;
void s2s_on_lease(struct hubw *h, const struct clu_lease_ans *a);
/* nodelink's refused hook (nl_set_refused_hook): the owner refused our forwards. */
void s2s_lease_refused(struct hubw *h, const char *remote, size_t rn, uint64_t token, int node_idx);
void s2s_tick(struct hubw *h, uint64_t now);
void s2s_shutdown(struct hubw *h);
/* Outbound: is `local` authenticated on this link (XEP-0288 reverse traffic)? */
bool s2s_out_pair_valid(struct sess *s, const char *local);

#endif
