/*
 * router/s2s_clu.c — an outbound link's side of the cluster (router/clu.h).
 *
 * In cluster mode one node owns every outbound link to a remote domain (a
 * lease in Redis). A new link asks the control thread for the lease before
 * anything else (no DNS, no connection): its queue waits as it does while
 * DNS answers, bounded the same way (link_queue_max, connect_timeout), with
 * its sources paused past link_queue_max. The answer comes as a message:
 *   - ours: the link proceeds as on a lone node, as long as the lease's
 *     self-fencing deadline has not passed (s2s_clu_may_send, checked
 *     before every stanza handed to the stream, before connecting and
 *     before flushing a queue);
 *   - node N owns it: the link becomes a forward link; its queue, then each
 *     new stanza, goes to N through nl_forward() with the lease's token;
 *   - wait (lost, fenced, Redis down with no owner known): the link holds
 *     its queue and sends nothing; an open stream stays open, idle.
 * Later changes come the same way. A link that loses the lease to another
 * node closes its stream (the new owner has its own). An idle link that is
 * freed gives the lease back.
 */
#include <errno.h>
#include <string.h>

#include "router/s2s-t.h"
#include "router/clu.h"
#include "router/flow.h"
#include "router/nodelink.h"
#include "net/log.h"

/* Ask the control thread for L's lease; a full control ring leaves it for
 * the next tick (CL_ASK). */
static void ask(struct hubw *h, struct s2s_out *L)
{
	L->cl = CL_ASK;
	if (clu_lease_ask(h->w, L->remote, strlen(L->remote)) == 0)
		L->cl = CL_ASKING;
}

void s2s_clu_link_new(struct hubw *h, struct s2s_out *L)
{
	if (!clu_enabled())
		return;
	ask(h, L);
}

void s2s_clu_link_free(struct hubw *h, struct s2s_out *L)
{
	if (L->cl == CL_OFF)
		return;
	if (clu_lease_release(h->w, L->remote, strlen(L->remote)) < 0)
		log_warn(0, "cluster: control ring full: the lease on %s is left to expire", L->remote);
	L->cl = CL_OFF;
	L->cl_valid_until = NULL;
}

void s2s_clu_tick(struct hubw *h, struct s2s_out *L)
{
	if (L->cl == CL_ASK)
		ask(h, L);
}

/* may_wait: a stanza the link's queue can still take (false: it is being
 * drained). */
static bool forward(struct hubw *h, struct s2s_out *L, struct net_buf *b, const char *p, size_t n, struct net_ref src,
		    bool may_wait)
{
	enum hub_sterr why = STERR_SERVICE_UNAVAILABLE;
	int rc = nl_forward(h, L->cl_node, b, p, n, L->remote, strlen(L->remote), L->cl_token, src, &why);
	if (rc == 0)
		return true;
	if (rc == -EHOSTUNREACH && may_wait && L->cl == CL_FORWARD) {
		/* the owner we were told of has left the cluster (its node key
		 * expired) before the registry's news reached this link: ask
		 * again, and let the stanza wait in the link's queue for the
		 * new owner rather than bounce it */
		log_info(0, "s2s out %s: owner node %d is gone: asking for the lease again", L->remote, L->cl_node);
		ask(h, L);
		/* what waited for that node goes first, into our queue */
		nl_reroute_waiting(h, L->cl_node);
		return false;
	}
	if (rc == -ESTALE && may_wait && L->cl == CL_FORWARD) {
		/* that node refused this (remote, token) already: the token we
		 * hold is stale (the lease moved on before the registry's news
		 * reached this link). Ask again (the control thread then reads
		 * the registry rather than its cache) and let the stanza wait in
		 * the link's queue for the answer, as nodelink.h asks */
		log_info(0, "s2s out %s: node %d refused token %llu: asking for the lease again", L->remote, L->cl_node,
			 (unsigned long long)L->cl_token);
		ask(h, L);
		return false;
	}
	route_bounce_raw(h, p, n, why);
	net_buf_unref(h->w, b);
	return true;
}

bool s2s_clu_forward(struct hubw *h, struct s2s_out *L, struct net_buf *b, const char *p, size_t n,
		     struct net_ref src)
{
	return forward(h, L, b, p, n, src, true);
}

/* Everything L and its alts queued goes to the owner, in order per pair. */
static void drain_to_owner(struct hubw *h, struct s2s_out *L, struct s2s_out *root)
{
	for (int i = 0; i < L->nlp; i++) {
		struct lpair *p = &L->lp[i];
		if (p->alt)
			drain_to_owner(h, p->alt, root);
		for (uint32_t k = 0; k < p->q.len; k++)
			forward(h, root, p->q.v[k].b, p->q.v[k].p, p->q.v[k].n, (struct net_ref){.worker = FLOW_NO_SRC}, false);
		L->queued -= p->q.len;
		p->q.len = 0;
	}
	s2s_out_release_held(h, L, false);
}

/* Our stream(s) to the remote end: another node sends from now on. */
static void close_streams(struct s2s_out *L)
{
	for (int i = 0; i < L->nlp; i++)
		if (L->lp[i].alt)
			close_streams(L->lp[i].alt);
	if (L->sess) {
		sess_sendf(L->sess, "</stream:stream>");
		net_close(L->sess->c, true);
	}
}

void s2s_on_lease(struct hubw *h, const struct clu_lease_ans *a)
{
	struct s2s_out *L = s2s_links_find(h, a->remote);
	if (!L || L->cl == CL_OFF)
		return; /* gone meanwhile: its release is on its way */
	uint8_t was = L->cl;
	int was_node = L->cl_node;
	switch (a->st) {
	case CLU_LEASE_OURS:
		L->cl = CL_OURS;
		L->cl_token = a->token;
		L->cl_valid_until = a->valid_until;
		log_debug(0, "s2s out %s: lease ours (token %llu)", L->remote, (unsigned long long)a->token);
		s2s_out_link_kick(h, L);
		break;
	case CLU_LEASE_OTHER:
		L->cl = CL_FORWARD;
		L->cl_node = a->owner;
		L->cl_token = a->token;
		L->cl_valid_until = NULL;
		log_debug(0, "s2s out %s: owned by node %d (token %llu): forwarding", L->remote, a->owner,
			  (unsigned long long)a->token);
		if (was == CL_OURS || was == CL_WAIT)
			close_streams(L);
		drain_to_owner(h, L, L);
		break;
	case CLU_LEASE_WAIT:
		L->cl = CL_WAIT;
		L->cl_valid_until = NULL;
		break;
	}
	/* stanzas we forwarded to the former owner that still wait for its
	 * node link (it is down) are older than anything we route from now on:
	 * they go first, to the new owner or into our queue */
	if (was == CL_FORWARD && (L->cl != CL_FORWARD || L->cl_node != was_node))
		nl_reroute_waiting(h, was_node);
}

/* The owner refused what we forwarded under (remote, token): it no longer
 * holds that lease (or not yet). Hold what comes next and ask again; the
 * refused stanzas are routed again and wait in the queue. */
void s2s_lease_refused(struct hubw *h, const char *remote, size_t rn, uint64_t token, int node_idx)
{
	char name[256];
	if (rn >= sizeof(name))
		return;
	memcpy(name, remote, rn);
	name[rn] = 0;
	struct s2s_out *L = s2s_links_find(h, name);
	if (!L || L->cl != CL_FORWARD || L->cl_token != token || L->cl_node != node_idx)
		return;
	ask(h, L);
}
