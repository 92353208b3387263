/*
 * net/msg.c — the SPSC rings between threads, messages between workers
 * (woken with MSG_RING, or an eventfd for the control thread), outgoing
 * connects and the multishot accept of each listener.
 *
 * Out of file descriptors, a listener stops accepting for ACCEPT_PAUSE_MS
 * (the connections wait in the kernel's backlog) instead of retrying at once
 * in a loop that would spin a core; the tick re-arms it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#include <liburing.h>
#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "net/alloc.h"
#include "net/log.h"
#include "net/tls.h"
#include "net/proxy.h"
#include "net/worker-int.h"

/* ---- SPSC rings ---------------------------------------------------- */

struct spsc *nw_spsc_new(uint32_t n)
{
	struct spsc *r = aligned_alloc(64, sizeof(*r));
	memset(r, 0, sizeof(*r));
	r->mask = n - 1;
	r->m = xcalloc(n, sizeof(struct net_msg));
	return r;
}

static int spsc_push(struct spsc *r, const struct net_msg *m)
{
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t h = atomic_load_explicit(&r->head, memory_order_acquire);
	if (t - h > r->mask)
		return -ENOBUFS;
	r->m[t & r->mask] = *m;
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return 0;
}

/* Drain up to max messages into fn; returns how many. */
uint32_t nw_spsc_drain(struct spsc *r, struct net_worker *w, uint32_t max,
		       void (*fn)(struct net_worker *, struct net_msg *))
{
	uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	uint32_t n = 0;
	while (h != t && n < max) {
		struct net_msg m = r->m[h & r->mask];
		h++;
		n++;
		atomic_store_explicit(&r->head, h, memory_order_release);
		fn(w, &m);
	}
	return n;
}

static void set_sock_opts(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct net_conn *net_connect(struct net_worker *w, const struct sockaddr *sa, socklen_t len,
			     const struct net_conn_ops *ops, void *user)
{
	if (len > sizeof(((struct net_conn *)0)->peer))
		return NULL; /* not IPv4 or IPv6 */
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	set_sock_opts(fd);
	struct net_conn *c = nw_conn_alloc(w);
	c->fd = fd;
	c->ops = ops;
	c->user = user;
	memcpy(&c->peer, sa, len);
	c->flags |= NET_F_CONNECTING;
	struct io_uring_sqe *sqe = nw_get_sqe(w);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&c->peer, len);
	io_uring_sqe_set_data64(sqe, UD(c, OP_CONNECT));
	c->inflight++;
	return c;
}

void nw_on_connect_done(struct net_worker *w, struct net_conn *c, int res)
{
	c->flags &= ~NET_F_CONNECTING;
	if (c->flags & NET_F_CLOSED)
		return;
	if (res < 0) {
		c->ops->on_connect(c, res);
		nw_conn_teardown(c, res);
		return;
	}
	nw_arm_recv(c);
	if (c->oq_len)
		nw_mark_dirty(c);
	c->ops->on_connect(c, 0);
}

void nw_arm_accept(struct net_worker *w, struct listener *l)
{
	struct io_uring_sqe *sqe = nw_get_sqe(w);
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, UD(l, OP_ACCEPT));
	l->armed = true;
}

/* accept(2) failed for lack of descriptors or memory: the connection stays
 * in the backlog, so accepting again at once fails again at once, forever.
 * Stop this listener for a while instead, and say so once a second. */
static void accept_pause(struct net_worker *w, struct listener *l, int err, bool more)
{
	w->accept_refused++;
	if (w->now >= w->accept_log_at) {
		log_warn(0, "worker %d: accept: %s (%llu time%s since the last report): accepting again in %d ms",
			 w->id, strerror(-err), (unsigned long long)w->accept_refused,
			 w->accept_refused == 1 ? "" : "s", ACCEPT_PAUSE_MS);
		w->accept_refused = 0;
		w->accept_log_at = w->now + 1000;
	}
	l->resume_at = w->now + ACCEPT_PAUSE_MS;
	if (more)
		nw_cancel_req(w, UD(l, OP_ACCEPT), NULL);
}

/* From the tick: listeners whose pause is over accept again. */
void nw_accept_resume(struct net_worker *w)
{
	for (int i = 0; i < w->nlis; i++) {
		struct listener *l = &w->lis[i];
		if (l->resume_at && w->now >= l->resume_at && !l->armed && !w->stopped && !net_stopping()) {
			l->resume_at = 0;
			nw_arm_accept(w, l);
		}
	}
}

/* A PROXY protocol header is believed only from the balancers named in
 * proxy_from: from anyone else it would let a peer choose the address that
 * logs and per-source limits see. Refused before a byte is read; logged the
 * first time and then at most every 10 s per worker, so a flood of such
 * connections cannot flood the log. */
static void proxy_refuse(struct net_worker *w, struct net_conn *c)
{
	static __thread uint64_t last_log, quiet;
	atomic_fetch_add_explicit(&nw_proxy_refused, 1, memory_order_relaxed);
	if (!last_log || w->now - last_log >= 10000) {
		char a[INET6_ADDRSTRLEN] = "?";
		const struct sockaddr_in6 *sa = &c->peer;
		const void *ip = sa->sin6_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
							    : (const void *)&sa->sin6_addr;
		inet_ntop(sa->sin6_family, ip, a, sizeof(a));
		log_warn(c->id,
			 "PROXY protocol from %s, which is not in proxy_from: closed (%llu more since the last "
			 "report)",
			 a, (unsigned long long)quiet);
		last_log = w->now ? w->now : 1;
		quiet = 0;
	} else {
		quiet++;
	}
	nw_conn_teardown(c, -EACCES);
}

uint64_t net_proxy_refused(void)
{
	return atomic_load_explicit(&nw_proxy_refused, memory_order_relaxed);
}

void nw_on_accept(struct net_worker *w, struct listener *l, struct io_uring_cqe *cqe)
{
	bool more = cqe->flags & IORING_CQE_F_MORE;
	if (!more)
		l->armed = false;
	if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOBUFS || cqe->res == -ENOMEM) {
		if (!l->resume_at)
			accept_pause(w, l, cqe->res, more);
		return;
	}
	bool refuse = net_stopping() || atomic_load_explicit(&nw_no_accept, memory_order_relaxed);
	if (!more && !w->stopped && !refuse && !l->resume_at)
		nw_arm_accept(w, l);
	if (cqe->res < 0)
		return;
	int fd = cqe->res;
	if (refuse) {
		close(fd);
		return;
	}
	set_sock_opts(fd);
	struct net_conn *c = nw_conn_alloc(w);
	c->fd = fd;
	c->listen_kind = (uint16_t)l->kind;
	socklen_t sl = sizeof(c->peer);
	getpeername(fd, (struct sockaddr *)&c->peer, &sl);
	nw_cfg.on_accept(c, l->kind);
	if (c->flags & NET_F_CLOSED)
		return;
	if ((c->flags & NET_F_PROXY) && !proxy_trusted((const struct sockaddr *)&c->peer)) {
		proxy_refuse(w, c);
		return;
	}
	nw_arm_recv(c);
}

/* ---- messages ------------------------------------------------------ */

int net_msg_send(struct net_worker *self, int dst, const struct net_msg *m)
{
	struct spsc *r;
	if (!self) { /* control thread */
		r = nw_ctrl_out[dst];
		int rc = spsc_push(r, m);
		if (rc == 0) {
			uint64_t one = 1;
			if (write(nw_workers[dst].wake_fd, &one, sizeof(one)) < 0) {
				/* the counter saturates only if the worker is gone */
			}
		}
		return rc;
	}
	if (dst == NET_CTRL) {
		int rc = spsc_push(nw_ctrl_in[self->id], m);
		if (rc == 0) {
			uint64_t one = 1;
			if (write(nw_ctrl_efd, &one, sizeof(one)) < 0) {
			}
		}
		return rc;
	}
	r = nw_workers[dst].in[self->id];
	int rc = spsc_push(r, m);
	if (rc == 0)
		self->woke[dst] = true;
	return rc;
}

static void handle_msg(struct net_worker *w, struct net_msg *m)
{
	if (m->type == NET_MSG_RELEASE) {
		net_buf_unref(w, m->buf);
		return;
	}
	if (m->type == NET_MSG_WAKE)
		return;
	nw_cfg.on_msg(w, m);
}

void nw_drain_msgs(struct net_worker *w)
{
	for (int s = 0; s < nw_nworkers; s++)
		if (s != w->id)
			nw_spsc_drain(w->in[s], w, 4096, handle_msg);
	nw_spsc_drain(w->in[NET_CTRL], w, 4096, handle_msg);
}

void nw_flush_wakes(struct net_worker *w)
{
	/* releases that did not fit earlier */
	if (w->nbacklog) {
		uint32_t k = 0;
		for (uint32_t i = 0; i < w->nbacklog; i++) {
			struct net_msg *m = &w->backlog[i];
			if (spsc_push(nw_workers[m->buf->owner].in[w->id], m) < 0)
				w->backlog[k++] = *m;
			else
				w->woke[m->buf->owner] = true;
		}
		w->nbacklog = k;
	}
	for (int d = 0; d < nw_nworkers; d++) {
		if (!w->woke[d])
			continue;
		w->woke[d] = false;
		struct io_uring_sqe *sqe = nw_get_sqe(w);
		io_uring_prep_msg_ring(sqe, nw_workers[d].ring_fd, 0, UD(&nw_workers[d], OP_WAKE) | 0, 0);
		io_uring_sqe_set_data64(sqe, UD(w, OP_MSGRING));
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	}
}

void nw_arm_wake(struct net_worker *w)
{
	struct io_uring_sqe *sqe = nw_get_sqe(w);
	io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, UD(w, OP_WAKE) | 0);
	/* distinguish our eventfd read from MSG_RING wakes by the buffer: a
	 * MSG_RING CQE carries res 0 and user_data UD(w, OP_WAKE) too, so the
	 * read is tagged by setting bit 0 of the worker pointer offset below */
	sqe->user_data = UD((char *)w + 8, OP_WAKE);
}
