/*
 * net/timer.c — per-worker timers: a connection's deadline (ops->on_timer,
 * or the end of a lingering close) and the release of an idle
 * connection's buffers (its send ring, its plaintext buffer) once nothing
 * was received for IDLE_FREE_MS.
 *
 * A tick (TICK_MS) visits only the connections due in it, whatever the
 * number open: a hashed timer wheel of TW_SLOTS ticks, each slot a doubly
 * linked list (a close unlinks in O(1)). A connection is filed at most
 * once, for its earliest wake (tw_at); filing is lazy: a deadline moved
 * later, or cleared, leaves the entry where it is, and the visit files the
 * connection again for what is then its next wake. A wake beyond the
 * wheel's span lands in the slot of its tick modulo TW_SLOTS and is filed
 * again each time that slot comes round before it is due: a link idle
 * for idle_timeout is visited once per 51.2 s instead of every tick.
 *
 * Every deadline write goes through net_conn_set_deadline, and the first
 * allocation of a send ring or of a plaintext buffer files the connection
 * for its idle release (nw_timer_rearm), so nothing due is missed.
 */
#include <errno.h>
#include <stdlib.h>

#include "net/worker-int.h"

static void tw_link(struct net_worker *w, struct net_conn *c, uint32_t slot)
{
	c->tw_slot = slot;
	c->tw_prev = NULL;
	c->tw_next = w->tw[slot];
	if (c->tw_next)
		c->tw_next->tw_prev = c;
	w->tw[slot] = c;
}

void nw_timer_unlink(struct net_conn *c)
{
	if (!c->tw_at)
		return;
	struct net_worker *w = c->w;
	if (c->tw_prev)
		c->tw_prev->tw_next = c->tw_next;
	else
		w->tw[c->tw_slot] = c->tw_next;
	if (c->tw_next)
		c->tw_next->tw_prev = c->tw_prev;
	c->tw_next = c->tw_prev = NULL;
	c->tw_at = 0;
}

/* Wake c at the first tick at or after `at` (unless filed earlier). */
static void timer_file(struct net_conn *c, uint64_t at)
{
	if (!at || (c->tw_at && c->tw_at <= at) || (c->flags & NET_F_CLOSED))
		return;
	struct net_worker *w = c->w;
	nw_timer_unlink(c);
	uint64_t tick = (at + TICK_MS - 1) / TICK_MS; /* visited once now >= tick * TICK_MS >= at */
	if (tick <= w->tw_done)
		tick = w->tw_done + 1;
	c->tw_at = at;
	tw_link(w, c, (uint32_t)(tick & (TW_SLOTS - 1)));
}

void net_conn_set_deadline(struct net_conn *c, uint64_t at)
{
	c->deadline = at;
	timer_file(c, at);
}

/* File c for whatever it waits for next: its deadline, and the release
 * of the buffers it holds once it has been idle for IDLE_FREE_MS. */
void nw_timer_rearm(struct net_conn *c)
{
	timer_file(c, c->deadline);
	if (c->oq || c->plain) {
		uint64_t now = c->w->now, at = c->last_rx + IDLE_FREE_MS + 1;
		timer_file(c, at > now ? at : now + 10 * TICK_MS); /* still sending: look again */
	}
}

static void timer_visit(struct net_worker *w, struct net_conn *c)
{
	if (c->flags & NET_F_CLOSED)
		return;
	/* an idle connection keeps no buffers: what it had is given back */
	if (w->now - c->last_rx > IDLE_FREE_MS && !(c->flags & NET_F_SENDING)) {
		if (!c->oq_len && c->oq) {
			free(c->oq);
			c->oq = NULL;
			c->oq_cap = 0;
			c->oq_head = 0;
		}
		if (c->plain && c->plain->ref == 1) {
			net_buf_unref(w, c->plain);
			c->plain = NULL;
		}
	}
	if (c->deadline && c->deadline <= w->now) {
		c->deadline = 0;
		if (c->flags & NET_F_CLOSING)
			nw_conn_teardown(c, -ETIMEDOUT);
		else if (c->ops && c->ops->on_timer)
			c->ops->on_timer(c);
	}
	nw_timer_rearm(c); /* nothing when it was closed meanwhile */
}

void nw_timers_run(struct net_worker *w)
{
	uint64_t now_tick = w->now / TICK_MS;
	if (now_tick - w->tw_done > TW_SLOTS) /* late (or the first run): every slot once */
		w->tw_done = now_tick - TW_SLOTS;
	while (w->tw_done < now_tick) {
		uint32_t slot = (uint32_t)(++w->tw_done & (TW_SLOTS - 1));
		/* move the slot to the visiting list: what is filed meanwhile,
		 * even in this slot, waits for its own tick */
		struct net_conn *c = w->tw[slot];
		w->tw[slot] = NULL;
		for (struct net_conn *p = c; p; p = p->tw_next)
			p->tw_slot = TW_SLOTS;
		w->tw[TW_SLOTS] = c;
		while ((c = w->tw[TW_SLOTS])) {
			uint64_t at = c->tw_at;
			nw_timer_unlink(c);
			if (at > w->now) {
				timer_file(c, at); /* due in a later round of the wheel */
				continue;
			}
			timer_visit(w, c);
		}
	}
}
