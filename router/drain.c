/*
 * router/drain.c — graceful stop: SIGTERM, SIGINT or `fedhubctl drain`.
 *
 * A node leaving a cluster should lose nothing: the load balancer must stop
 * sending it new links before it goes, and what it accepted must reach its
 * destination. So a drain, in this order:
 *   1. /health answers 503 {"status":"draining","reason":...}, the load
 *      balancer's health check takes the node out;
 *   2. every worker closes its listeners (net_stop_accepting);
 *   3. for up to drain_timeout, queues flush; each worker, every tick, closes
 *      the links that are idle politely with </stream:stream> (RFC 6120 §4.4):
 *      an inbound stream or component that sent nothing for a second and has
 *      nothing queued to it, an outbound link with nothing queued; the peer
 *      then reconnects to another node;
 *   4. when every link is gone, or the time is up, net_stop(): the streams
 *      still open get <system-shutdown/>, the stanzas still queued are
 *      bounced with an error (remote-server-timeout) and counted in
 *      fedhub_bounced_total; the process exits 0.
 * A second SIGTERM or SIGINT during the drain skips to step 4 at once.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include "net/log.h"
#include "router/hub.h"
#include "router/flow.h"
#include "router/reload.h"
#include "router/s2s-t.h"
#include "router/backend.h"

static _Atomic bool active;
static _Atomic uint64_t ends_at; /* CLOCK_MONOTONIC ms */
static char requested[64];       /* reason given by drain_request */
static _Atomic bool has_request;

#define IDLE_MS 1000 /* an inbound stream this quiet is closed during a drain */

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool drain_active(void)
{
	return atomic_load_explicit(&active, memory_order_relaxed);
}

uint32_t drain_left_s(void)
{
	if (!drain_active())
		return 0;
	uint64_t now = mono_ms(), end = atomic_load(&ends_at);
	return end > now ? (uint32_t)((end - now + 999) / 1000) : 0;
}

void drain_request(const char *reason)
{
	if (!atomic_exchange(&has_request, true))
		snprintf(requested, sizeof(requested), "%s", reason);
	kill(getpid(), SIGTERM); /* main's sigwait runs the drain */
}

void drain_run(const char *reason, uint32_t timeout_s, const sigset_t *sigs, bool *at_once)
{
	if (atomic_load(&has_request))
		reason = requested;
	*at_once = false;
	atomic_store(&ends_at, mono_ms() + (uint64_t)timeout_s * 1000);
	atomic_store(&active, true);
	met_set_state("draining", reason);
	net_stop_accepting();
	uint64_t open = met_conns_open();
	log_info(0, "drain (%s): listeners closed, %llu connection%s open; up to %us for queues to flush", reason,
		 (unsigned long long)open, open == 1 ? "" : "s", timeout_s);
	for (;;) {
		if ((open = met_conns_open()) == 0) {
			log_info(0, "drain: every link closed");
			return;
		}
		uint64_t now = mono_ms();
		if (now >= atomic_load(&ends_at)) {
			log_warn(0, "drain: drain_timeout is up with %llu connection%s open: closing them",
				 (unsigned long long)open, open == 1 ? "" : "s");
			return;
		}
		struct timespec ts = {0, 100 * 1000 * 1000};
		int sig = sigtimedwait(sigs, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			log_warn(0, "drain: second %s: stopping at once with %llu connection%s open",
				 sig == SIGTERM ? "SIGTERM" : "SIGINT", (unsigned long long)open, open == 1 ? "" : "s");
			*at_once = true;
			return;
		}
		if (sig > 0)
			log_info(0, "drain: signal %d ignored while draining", sig);
	}
}

static void drain_conn(struct net_conn *c, void *arg)
{
	struct sess *s = c->user;
	uint64_t now = *(uint64_t *)arg;
	/* paused or short of buffers: bytes it sent wait unread, it is not idle */
	if (!s || (c->flags & (NET_F_CLOSING | NET_F_CLOSED | NET_F_CONNECTING | NET_F_RECV_PAUSED | NET_F_NOBUFS)) ||
	    c->oq_len || c->held || c->held_plain)
		return;
	switch (s->kind) {
	case SESS_S2S_IN:
	case SESS_COMP:
		if (now - c->last_rx < IDLE_MS)
			return;
		break;
	case SESS_S2S_OUT:
		if (!s->link || s->link->queued)
			return;
		break;
	case SESS_BACKEND:
		if (backend_sess_queued(s))
			return;
		break;
	case SESS_NODE: /* a node link: nothing waits for it and nothing came lately */
		if (now - c->last_rx < IDLE_MS || (s->fq && s->fq->len))
			return;
		break;
	default:
		return; /* dialback verification: short-lived, it ends by itself */
	}
	/* what the peer sent and we have not read yet (a syscall, but only
	 * for idle links during a drain) */
	int unread = 0;
	if (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0)
		return;
	log_debug(c->id, "drain: closing an idle link");
	sess_sendf(s, "</stream:stream>");
	net_close(c, true);
}

void drain_worker_tick(struct hubw *h)
{
	uint64_t now = net_now_ms();
	net_worker_foreach(h->w, drain_conn, &now);
}
