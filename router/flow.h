/*
 * router/flow.h — flow control (router/flow.c): stanzas waiting for a
 * destination connection that is at its high-water mark, and the sources
 * each has paused. See flow.c's header comment.
 */
#ifndef FEDHUB_FLOW_H
#define FEDHUB_FLOW_H

#include <stdbool.h>
#include <stdint.h>
#include "router/hub.h"
#include "router/sess.h"
#include "router/pix.h"

#define FLOW_NO_SRC 0xffffu /* net_ref.worker of "no source" (generated stanzas) */
struct flow_item {
	struct net_buf *b;
	const char *p;
	uint32_t n;
	struct net_ref src;
};
struct flow_src {
	struct net_ref ref;
	uint32_t hash;  /* flow_ref_hash(ref), for the index */
	uint32_t bytes; /* its bytes waiting here */
	bool paused;    /* it holds one pause of that source */
};
struct flowq {
	struct flow_item *q; /* ring, cap a power of two */
	uint32_t head, len, cap;
	uint64_t bytes;
	struct flow_src *src; /* sources with bytes here, indexed by ref (six) */
	uint32_t nsrc, csrc, npaused;
	struct pix six;
	uint64_t progress_at; /* ms: the destination last took something */
	uint64_t last_oq;     /* its send queue's bytes then */
	bool stalled;         /* no progress for stall_timeout: bounce at once */
	bool busy;            /* on the worker's list */
};
struct flow_omsg {
	struct net_msg m;
	struct net_ref src; /* paused until the message is sent */
	uint16_t dst;
};

/* Hand a stanza to destination c (this worker's): its send queue, or its
 * flow queue when that is full (src is paused past its allowance). Returns
 * 0 (the reference is consumed), -EPIPE (c is closing: route it elsewhere)
 * or another negative code with *why the error to bounce it with; on
 * failure the caller still holds the reference. */
int flow_send(struct hubw *h, struct net_conn *c, struct net_buf *b, const char *p, size_t n, struct net_ref src,
	      enum hub_sterr *why);
/* The destination's send queue has room: move what waits into it. */
void flow_drain(struct hubw *h, struct sess *d);
/* The destination is going away: route what waits for it again. */
void flow_close(struct hubw *h, struct sess *d);
/* A source session is freed (its pause count no longer counts). */
void flow_sess_gone(struct hubw *h, struct sess *s);
/* Send m to worker dst, or keep it (in order) until its ring has room;
 * src (FLOW_NO_SRC for none) is paused meanwhile. Consumes m->buf. */
void flow_msg_send(struct hubw *h, int dst, const struct net_msg *m, struct net_ref src);
void flow_on_msg(struct hubw *h, struct net_msg *m); /* HUB_MSG_PAUSE / RESUME */
/* Pause / resume a source (any worker's) for a reason of the caller's own. */
void flow_src_hold(struct hubw *h, struct net_ref src);
void flow_src_release(struct hubw *h, struct net_ref src);
/* Bytes one worker's flow queues may hold (queue_memory_max / workers). */
uint64_t flow_mem_share(void);
void flow_turn(struct hubw *h);               /* every loop turn: the outbox */
void flow_tick(struct hubw *h, uint64_t now); /* every tick: drains, stalls */
void flow_publish(struct hubw *h);
/* A flow queue's source entries: O(1) lookup by the source's net_ref
 * whatever the number of sources (router/pix.h). find returns NULL when
 * absent; add (absent first) returns NULL only when out of memory; del
 * removes e (the last entry moves into its place); clear removes all. */
uint32_t flow_ref_hash(struct net_ref r);
struct flow_src *flow_src_find(struct flowq *q, struct net_ref r);
struct flow_src *flow_src_add(struct flowq *q, struct net_ref r);
void flow_src_del(struct flowq *q, struct flow_src *e);
void flow_src_clear(struct flowq *q);
static inline struct net_ref flow_src_of(const struct sess *s)
{
	return s && s->c ? s->c->ref : (struct net_ref){.worker = FLOW_NO_SRC};
}

#endif
