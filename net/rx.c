/*
 * net/rx.c — the receive path.
 *
 * A completed receive is offered to the connection's on_data, through the
 * PROXY protocol header first where one is expected and through wolfSSL on a
 * TLS link. Bytes that arrive while reads are paused are held and replayed
 * on resume; the bytes a peer sent after <starttls/> or <proceed/> in clear
 * are dropped and counted. TLS output is staged here and queued as one slice.
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

/* Keep n bytes at the end of *hp while reads are paused. A heap copy: what
 * arrives after the pause is only what the kernel had already received when
 * the receive was cancelled, at most the provided-buffer pool. Data path:
 * -ENOMEM closes this one connection. */
static int hold(struct net_worker *w, struct net_buf **hp, const char *p, size_t n)
{
	struct net_buf *h = *hp;
	if (!n)
		return 0;
	if (!h) {
		h = net_buf_new(w, n < 4096 ? 4096 : n);
		if (!h)
			return -ENOMEM;
		*hp = h;
	} else if (h->len + n > h->cap) {
		size_t ncap = (size_t)h->cap * 2;
		while (ncap < h->len + n)
			ncap *= 2;
		if (ncap > UINT32_MAX)
			return -ENOMEM;
		char *d = realloc(h->data, ncap);
		if (!d)
			return -ENOMEM;
		h->data = d;
		h->cap = (uint32_t)ncap;
	}
	memcpy(h->data + h->len, p, n);
	h->len += (uint32_t)n;
	return 0;
}

/* Bytes on_data was not offered because reads were paused: plaintext on a
 * TLS link (decrypted already), else bytes as received. */
static void hold_rest(struct net_worker *w, struct net_conn *c, const char *p, size_t n)
{
	if (hold(w, c->tls ? &c->held_plain : &c->held, p, n) < 0)
		nw_conn_teardown(c, -ENOMEM);
}

/* Paused from inside on_data: a pending unit and the rest of the input are
 * held, in that order. Left as c->pend they would wait for bytes from the
 * socket, and none may come: the peer may have sent everything already. */
static void hold_paused(struct net_worker *w, struct net_conn *c, const char *p, size_t n)
{
	struct net_buf *pb = c->pend;
	if (pb) {
		c->pend = NULL;
		hold_rest(w, c, pb->data, pb->len);
		net_buf_unref(w, pb);
		if (c->flags & NET_F_CLOSED)
			return;
	}
	if (n)
		hold_rest(w, c, p, n);
}

/* The owner put TLS under a plaintext connection from inside on_data (it
 * read <starttls/> or <proceed/>): every byte that came in the clear after
 * that element, and any unit pending, is dropped. RFC 6120 §5.4.3.3: nothing
 * received before the handshake counts; the stream restarts from nothing,
 * and bytes injected by a man in the middle behind the element (the STARTTLS
 * injection of CVE-2011-0411) are never parsed as if TLS had carried them.
 * Returns true when that happened. */
static bool tls_began(struct net_worker *w, struct net_conn *c, bool was_clear, size_t dropped)
{
	if (!was_clear || !c->tls)
		return false;
	if (c->pend) {
		net_buf_unref(w, c->pend);
		c->pend = NULL;
	}
	if (dropped) {
		atomic_fetch_add_explicit(&nw_starttls_dropped, dropped, memory_order_relaxed);
		log_info(c->id, "%zu byte%s received in the clear after STARTTLS: discarded", dropped,
			 dropped == 1 ? "" : "s");
	}
	return true;
}

uint64_t net_starttls_dropped(void)
{
	return atomic_load_explicit(&nw_starttls_dropped, memory_order_relaxed);
}

/* Hand bytes to the owner. When an incomplete unit is pending, new bytes are
 * appended to it in growing chunks only until the owner completes it; the
 * rest of the receive buffer is then handed over in place. */
static void deliver(struct net_worker *w, struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	size_t off = 0;
	const bool clear = c->tls == NULL;
	while (c->pend && off < n && !(c->flags & (NET_F_CLOSED | NET_F_CLOSING | NET_F_RECV_PAUSED))) {
		struct net_buf *pb = c->pend;
		size_t old = pb->len;
		size_t chunk = old < 1024 ? 1024 : old;
		if (chunk > n - off)
			chunk = n - off;
		if (old + chunk > nw_cfg.max_pending) {
			chunk = nw_cfg.max_pending > old ? nw_cfg.max_pending - old : 0;
			if (!chunk) { /* the owner's limits should have caught this */
				nw_conn_teardown(c, -EMSGSIZE);
				return;
			}
		}
		if (old + chunk > pb->cap) {
			size_t ncap = pb->cap * 2;
			while (ncap < old + chunk)
				ncap *= 2;
			char *d = realloc(pb->data, ncap);
			if (!d) {
				nw_conn_teardown(c, -ENOMEM);
				return;
			}
			pb->data = d;
			pb->cap = (uint32_t)ncap;
		}
		memcpy(pb->data + old, p + off, chunk);
		pb->len = (uint32_t)(old + chunk);
		pb->rx_us = w->turn_in_us; /* the unit is complete now, if at all */
		size_t used = c->ops->on_data(c, pb, pb->data, pb->len);
		if (c->flags & NET_F_CLOSED)
			return;
		if (tls_began(w, c, clear, (pb->len > used ? pb->len - used : 0) + (n - off - chunk)))
			return; /* pb was c->pend: released */
		if (used >= old) {
			/* the pending unit is complete; continue in place */
			off += used - old;
			c->pend = NULL;
			net_buf_unref(w, pb);
			break;
		}
		off += chunk;
		size_t rest = pb->len - used;
		if (pb->ref > 1) { /* the owner kept slices of it: start a new one */
			struct net_buf *nb = net_buf_new(w, rest * 2 > 4096 ? rest * 2 : 4096);
			memcpy(nb->data, pb->data + used, rest);
			nb->len = (uint32_t)rest;
			net_buf_unref(w, pb);
			c->pend = nb;
		} else if (used) {
			memmove(pb->data, pb->data + used, rest);
			pb->len = (uint32_t)rest;
		}
	}
	if ((c->flags & NET_F_RECV_PAUSED) && !(c->flags & (NET_F_CLOSED | NET_F_CLOSING))) {
		hold_paused(w, c, p + off, n - off); /* offered again first on resume */
		return;
	}
	if (c->pend || off >= n || (c->flags & (NET_F_CLOSED | NET_F_CLOSING)))
		return;
	b->rx_us = w->turn_in_us;
	size_t used = c->ops->on_data(c, b, p + off, n - off);
	if (c->flags & NET_F_CLOSED)
		return;
	if (tls_began(w, c, clear, used < n - off ? n - off - used : 0))
		return;
	if (used < n - off && (c->flags & NET_F_RECV_PAUSED) && !(c->flags & NET_F_CLOSING)) {
		hold_rest(w, c, p + off + used, n - off - used);
		return;
	}
	if (used < n - off && !(c->flags & NET_F_CLOSING)) {
		size_t rest = n - off - used;
		struct net_buf *nb = net_buf_new(w, rest * 2 > 4096 ? rest * 2 : 4096);
		if (!nb) {
			nw_conn_teardown(c, -ENOMEM);
			return;
		}
		memcpy(nb->data, p + off + used, rest);
		nb->len = (uint32_t)rest;
		c->pend = nb;
	}
}

/* ---- TLS ----------------------------------------------------------- */

void net_start_tls(struct net_conn *c, struct tls_conn *t, bool client)
{
	c->tls = t;
	c->raw_slices = c->oq_len;
	c->flags |= NET_F_TLS_HS;
	if (client)
		tls_handshake(t); /* writes the ClientHello */
	nw_mark_dirty(c);
}

void nw_tls_fail(struct net_worker *w, struct net_conn *c, int err)
{
	if (c->ops->on_tls && (c->flags & NET_F_TLS_HS))
		c->ops->on_tls(c, err);
	c->flags &= ~NET_F_TLS_HS;
	if (c->flags & NET_F_CLOSED)
		return;
	/* let an alert go out, then close */
	c->flags |= NET_F_RECV_STOPPED;
	const void *p;
	if (tls_pending_out(c->tls, &p)) {
		c->flags |= NET_F_CLOSING;
		net_conn_set_deadline(c, w->now + 1000);
		nw_mark_dirty(c);
	} else {
		nw_conn_teardown(c, err);
	}
}

/* Ciphertext arrived: feed it, drive the handshake, hand plaintext on. */
static void tls_in(struct net_worker *w, struct net_conn *c, const char *p, size_t n)
{
	size_t off = 0;
	while (off < n || (c->flags & NET_F_TLS_HS) == 0) {
		if (off < n) {
			/* in pieces the engine takes: bytes held while paused can be
			 * more than its whole input bound, and offered at once they
			 * would never fit */
			size_t k = n - off, room = tls_in_room(c->tls);
			if (k > room)
				k = room;
			int rc = k ? tls_feed(c->tls, p + off, k) : TLS_ERR_AGAIN;
			if (rc == TLS_ERR_AGAIN)
				k = 0; /* read what is buffered first */
			else if (rc < 0) {
				nw_tls_fail(w, c, rc);
				return;
			}
			off += k;
		}
		if (c->flags & NET_F_TLS_HS) {
			int rc = tls_handshake(c->tls);
			nw_mark_dirty(c);
			if (rc < 0) {
				nw_tls_fail(w, c, rc);
				return;
			}
			if (rc == 0) {
				if (off >= n)
					return;
				continue;
			}
			c->flags &= ~NET_F_TLS_HS;
			if (c->ops->on_tls)
				c->ops->on_tls(c, 0);
			if (c->flags & (NET_F_CLOSED | NET_F_CLOSING))
				return;
		}
		/* plaintext */
		for (;;) {
			if (c->flags & NET_F_RECV_PAUSED) {
				/* the records fed stay in the engine; the rest waits here */
				if (hold(w, &c->held, p + off, n - off) < 0)
					nw_conn_teardown(c, -ENOMEM);
				return;
			}
			struct net_buf *pb = c->plain;
			if (!pb || pb->ref > 1) {
				if (pb)
					net_buf_unref(w, pb);
				pb = c->plain = net_buf_new(w, 16384 + 512);
				if (!pb) {
					nw_conn_teardown(c, -ENOMEM);
					return;
				}
				nw_timer_rearm(c); /* for its release once idle */
			}
			ssize_t r = tls_read(c->tls, pb->data, pb->cap);
			if (r == 0)
				break;
			if (r < 0) {
				if (r == TLS_ERR_CLOSED)
					nw_conn_teardown(c, 0);
				else
					nw_tls_fail(w, c, (int)r);
				return;
			}
			pb->len = (uint32_t)r;
			deliver(w, c, pb, pb->data, (size_t)r);
			if (c->flags & (NET_F_CLOSED | NET_F_CLOSING))
				return;
		}
		const void *q;
		if (tls_pending_out(c->tls, &q))
			nw_mark_dirty(c);
		if (c->plain && c->plain->ref == 1) { /* nothing kept it: an idle link holds none */
			net_buf_unref(w, c->plain);
			c->plain = NULL;
		}
		if (off >= n)
			return;
	}
}

/* Encrypt everything queued (many stanzas per record) and send the records. */
void nw_tls_prep_send(struct net_worker *w, struct net_conn *c)
{
	static __thread char stage[16384];
	if (!(c->flags & NET_F_TLS_HS)) {
		while (c->oq_len) {
			size_t k = 0;
			uint32_t taken = 0, head = c->oq_head, skip = c->oq_sent_in_head;
			while (taken < c->oq_len) {
				struct net_slice *s = &c->oq[(head + taken) & (c->oq_cap - 1)];
				size_t rem = s->n - skip;
				if (k + rem > sizeof(stage)) {
					if (k == 0) { /* one big slice: a part of it */
						memcpy(stage, s->p + skip, sizeof(stage));
						k = sizeof(stage);
						skip += (uint32_t)sizeof(stage);
					}
					break;
				}
				memcpy(stage + k, s->p + skip, rem);
				k += rem;
				skip = 0;
				taken++;
			}
			if (tls_write(c->tls, stage, k) < 0)
				break; /* output full: the records already made go first */
			c->oq_bytes -= k;
			for (uint32_t i = 0; i < taken; i++) {
				nw_lat_add(w, c->oq[c->oq_head].b);
				net_buf_unref(w, c->oq[c->oq_head].b);
				c->oq_head = (c->oq_head + 1) & (c->oq_cap - 1);
				c->oq_len--;
			}
			c->oq_sent_in_head = skip;
			c->oq_lat_n = 0;
		}
		if (nw_bye_due(c) && !c->oq_len) {
			c->flags |= NET_F_TLS_BYE_SENT;
			if (tls_close_notify(c->tls) < 0)
				log_debug(c->id, "TLS: close_notify: %s", tls_error(c->tls));
		}
	}
	const void *p;
	size_t n = tls_pending_out(c->tls, &p);
	if (!n) {
		if ((c->flags & NET_F_TLS_BYE_SENT) && !c->oq_len && (c->flags & NET_F_CLOSING))
			nw_conn_teardown(c, 0); /* nothing left to say */
		return;
	}
	struct io_uring_sqe *sqe = nw_get_sqe(w);
	io_uring_prep_send(sqe, c->fd, p, n, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, UD(c, OP_SEND));
	c->flags |= NET_F_SENDING;
	c->tls_inflight = (uint32_t)n;
	c->inflight++;
}

void net_conn_expect_proxy(struct net_conn *c)
{
	c->flags |= NET_F_PROXY;
}

/* The PROXY header in front of a balanced connection. A balancer writes it
 * whole, first, so it must be whole in the first segment: anything else
 * closes the connection. Returns where the stream's own bytes start. */
static const char *proxy_strip(struct net_conn *c, const char *p, size_t *n)
{
	struct sockaddr_in6 src;
	int k = proxy_parse(p, *n, &src);
	if (k <= 0) {
		log_info(c->id, "PROXY protocol header missing, split or invalid: closing");
		nw_conn_teardown(c, -EPROTO);
		return NULL;
	}
	c->flags &= ~NET_F_PROXY;
	if (src.sin6_family != AF_UNSPEC) {
		char a[INET6_ADDRSTRLEN] = "";
		const void *ip = src.sin6_family == AF_INET ? (const void *)&((struct sockaddr_in *)&src)->sin_addr
							    : (const void *)&src.sin6_addr;
		inet_ntop(src.sin6_family, ip, a, sizeof(a));
		log_debug(c->id, "PROXY: connection for %s", a);
		c->peer = src;
	}
	*n -= (size_t)k;
	if (c->ops && c->ops->on_peer) {
		c->ops->on_peer(c);
		if (c->flags & (NET_F_CLOSED | NET_F_CLOSING))
			return NULL; /* refused: nothing after the header is read */
	}
	return p + k;
}

/* Received bytes, in order: the PROXY header, then TLS records or the
 * stream itself. */
static void rx_dispatch(struct net_worker *w, struct net_conn *c, struct net_buf *b, const char *data, size_t len)
{
	if (c->flags & NET_F_PROXY)
		data = proxy_strip(c, data, &len);
	if (data && len && c->tls)
		tls_in(w, c, data, len);
	else if (data && len)
		deliver(w, c, b, data, len);
}

/* After a resume: what was kept while paused goes first, in order. */
static void replay_held(struct net_worker *w, struct net_conn *c)
{
	struct net_buf *b = c->held_plain;
	if (b) {
		c->held_plain = NULL;
		deliver(w, c, b, b->data, b->len);
		net_buf_unref(w, b);
		if (c->flags & (NET_F_CLOSED | NET_F_CLOSING | NET_F_RECV_PAUSED))
			return;
	}
	b = c->held;
	if (b) {
		c->held = NULL;
		rx_dispatch(w, c, b, b->data, b->len);
		net_buf_unref(w, b);
	} else if (c->tls && !(c->flags & NET_F_TLS_HS)) {
		tls_in(w, c, NULL, 0); /* records the engine holds decrypted */
	}
}

/* Connections whose reads were resumed since the last turn. */
void nw_run_resumed(struct net_worker *w)
{
	uint32_t n = w->nresumed; /* resumes made while replaying wait for the next turn */
	for (uint32_t i = 0; i < n; i++) {
		struct net_conn *c = net_conn_get(w, w->resumed[i]);
		if (!c || !(c->flags & NET_F_RESUME_Q))
			continue;
		c->flags &= ~NET_F_RESUME_Q;
		if (c->flags & NET_F_RECV_PAUSED)
			continue; /* paused again: everything stays held */
		replay_held(w, c);
		if (!(c->flags & (NET_F_CLOSED | NET_F_CLOSING | NET_F_RECV_PAUSED | NET_F_RECV_ARMED | NET_F_NOBUFS |
				  NET_F_RECV_STOPPED | NET_F_CONNECTING)))
			nw_arm_recv(c);
	}
	memmove(w->resumed, w->resumed + n, (w->nresumed - n) * sizeof(*w->resumed));
	w->nresumed -= n;
}

void nw_on_recv(struct net_worker *w, struct net_conn *c, struct io_uring_cqe *cqe)
{
	int res = cqe->res;
	bool more = cqe->flags & IORING_CQE_F_MORE;
	if (!more) {
		c->flags &= ~(NET_F_RECV_ARMED | NET_F_RECV_CANCEL);
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		struct net_buf *b = &w->bufs[bid];
		b->ref = 1;
		b->len = res > 0 ? (uint32_t)res : 0;
		w->turn_rx += b->len;
		__atomic_store_n(&w->bufs_out, w->bufs_out + 1, __ATOMIC_RELAXED);
		if (res > 0 && !(c->flags & (NET_F_CLOSED | NET_F_RECV_STOPPED))) {
			c->last_rx = w->now;
			/* paused, or resumed with kept bytes not handed over yet */
			if (c->held || c->held_plain || (c->flags & NET_F_RECV_PAUSED)) {
				if (hold(w, &c->held, b->data, (size_t)res) < 0)
					nw_conn_teardown(c, -ENOMEM);
			} else {
				rx_dispatch(w, c, b, b->data, (size_t)res);
			}
		}
		net_buf_unref(w, b);
	}
	if (c->flags & NET_F_CLOSED)
		return;
	if (res == 0) {
		nw_conn_teardown(c, 0);
		return;
	}
	if (res < 0) {
		if (res == -ENOBUFS) {
			/* out of receive buffers: retry as soon as some come back */
			if (!(c->flags & NET_F_NOBUFS)) {
				c->flags |= NET_F_NOBUFS;
				c->nobufs_prev = NULL;
				c->nobufs_next = w->nobufs_wait;
				if (w->nobufs_wait)
					w->nobufs_wait->nobufs_prev = c;
				w->nobufs_wait = c;
			}
			return;
		}
		if (res != -ECANCELED)
			nw_conn_teardown(c, res);
		else if (!more && !(c->flags & (NET_F_RECV_STOPPED | NET_F_CLOSING)))
			nw_arm_recv(c); /* cancelled by a pause since resumed: receive again */
		return;
	}
	if (!more && !(c->flags & (NET_F_RECV_STOPPED | NET_F_CLOSING)))
		nw_arm_recv(c);
}
