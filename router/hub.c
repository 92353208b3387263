/*
 * router/hub.c — the router plugged into the runtime: what each worker does
 * when it starts and stops, which stream handler takes an accepted
 * connection (by its listener's kind), where inter-thread messages go, the
 * per-worker tick and loop turn (reload, control socket, drain, flow
 * control), and the routing table's entries from the configuration.
 * router/main.c (the daemon) and the tests' in-process hub
 * (tests/unit/hub_harness.h) start the router through these, so both run
 * the same wiring.
 */
#include <string.h>

#include "net/alloc.h"
#include "net/dns.h"
#include "router/hub.h"
#include "router/sess.h"
#include "router/route.h"
#include "router/s2s.h"
#include "router/comp.h"
#include "router/flow.h"
#include "router/ctl.h"
#include "router/reload.h"
#include "router/shape.h"
#include "router/backend.h"
#include "router/nodelink.h"
#include "router/clu.h"

static void on_worker_start(struct net_worker *w)
{
	struct hubw *h = xcalloc(1, sizeof(*h));
	h->w = w;
	h->m = met_of(net_worker_id(w));
	h->rnd_used = sizeof(h->rnd);
	net_worker_set_user(w, h);
}

static void on_accept(struct net_conn *c, int kind)
{
	struct hubw *h = hubw_of(c->w);
	MET_INC(h->m, conn_accepted);
	if (kind == NL_LISTEN_KIND) { /* node_listen: another node of the cluster */
		nl_accept(c);
		return;
	}
	const struct cfg_listen *l = &hub_cfg->listen[kind]; /* kind: the listener's index */
	if (l->proxy_protocol) /* behind a load balancer: HAProxy's send-proxy(-v2) */
		net_conn_expect_proxy(c);
	if (l->kind == CFG_LISTEN_COMPONENT)
		comp_accept(c);
	else
		s2s_accept(c, l);
}

static void on_msg(struct net_worker *w, struct net_msg *m)
{
	struct hubw *h = hubw_of(w);
	if (m->type == DNS_MSG_RESULT) {
		struct dns_req *r;
		memcpy(&r, m->u.bytes, sizeof(r));
		if (!ctl_on_dns(h, r))
			s2s_on_dns(h, r);
	} else if (m->type == NET_MSG_CLU_LEASE) {
		struct clu_lease_msg lm;
		memcpy(&lm, m->u.bytes, sizeof(lm));
		s2s_on_lease(h, lm.a);
		clu_lease_msg_free(lm.a);
	} else {
		route_on_msg(h, m);
	}
}

/* The control thread's messages: the cluster's, else DNS queries. */
static void on_ctrl_msg(struct net_msg *m)
{
	if (!clu_on_ctrl_msg(m))
		dns_on_ctrl_msg(m);
}

static void on_tick(struct net_worker *w, uint64_t now)
{
	static __thread uint64_t last;
	reload_worker_tick(hubw_of(w));
	ctl_worker_tick(hubw_of(w));
	if (drain_active())
		drain_worker_tick(hubw_of(w));
	flow_tick(hubw_of(w), now);
	nl_tick(hubw_of(w), now);
	shape_tick(now); /* every loop turn: a paused link waits at most one turn past its refill */
	if (now - last < 1000)
		return;
	last = now;
	s2s_tick(hubw_of(w), now);
	backend_tick(hubw_of(w), now);
}

static void on_turn(struct net_worker *w)
{
	flow_turn(hubw_of(w));
}

static void shutdown_conn(struct net_conn *c, void *arg)
{
	struct sess *s = c->user;
	(void)arg;
	if (!s || s->kind == SESS_S2S_OUT || s->kind == SESS_VERIFY || s->kind == SESS_BACKEND)
		return;
	sess_stream_error(s, SERR_SYSTEM_SHUTDOWN, NULL);
}

static void on_worker_stop(struct net_worker *w)
{
	struct hubw *h = hubw_of(w);
	s2s_shutdown(h);
	backend_shutdown(h);
	nl_worker_stop(h);
	net_worker_foreach(w, shutdown_conn, NULL);
}

void hub_net_config(struct net_config *nc, const struct cfg *c)
{
	*nc = (struct net_config){
		.workers = c->workers,
		.max_pending = c->max_stanza_size + 4096,
		.on_worker_start = on_worker_start,
		.on_worker_stop = on_worker_stop,
		.on_msg = on_msg,
		.on_accept = on_accept,
		.on_tick = on_tick,
		.on_turn = on_turn,
		.on_ctrl_msg = on_ctrl_msg,
	};
}

int hub_fill_table(const struct cfg *c)
{
	int rc = 0;
	for (int i = 0; i < c->ndomains; i++)
		rc |= rt_set_static(c->domains[i].name, RT_HOSTED);
	for (int i = 0; i < c->ncomponents; i++)
		rc |= rt_set_static(c->components[i].name, RT_COMPONENT);
	if (c->hub_domain[0])
		rc |= rt_set_static(c->hub_domain, RT_HUB);
	/* a backend's domains are hosted here; route.c relays their stanzas */
	for (int i = 0; i < c->nbdoms; i++)
		rc |= rt_set_static(c->bdoms[i].name, RT_HOSTED);
	met_set_backends(c);
	return rc;
}
