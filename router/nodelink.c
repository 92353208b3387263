/*
 * router/nodelink.c — node-to-node links of a cluster (nodelink.h; the wire
 * protocol is described in nodelink-int.h).
 *
 * Topology. Each worker keeps its own outbound link to each peer node it
 * forwards to (struct nl_out, in hubw.nl), opened on first use and kept.
 * One link per (worker, peer) rather than one per peer: the worker routing a
 * stanza is the one that sends it, so the sending side needs no cross-worker
 * handoff, no lock and no copy (net_send_slice of the source buffer), and
 * every stanza of one source connection — hence of one (from, to) pair —
 * goes down one ordered TCP stream. The cost is workers x nodes connections
 * per node, a few hundred for tens of nodes: nothing next to the s2s links.
 * Each link carries stanzas one way (connector to acceptor); the acceptor
 * sends back only control elements and refused stanzas. The acceptor routes
 * what arrives on the worker that accepted the link, in arrival order, so
 * per-pair order holds end to end.
 *
 * Forwarding, the rings, acknowledgements and the connect queue are in
 * nl_fwd.c; this file sets links up, authenticates them and receives.
 *
 * Leases. The receiver checks each stanza that travels under a lease
 * against its own: none, or an older token than the one named, means the
 * sender's knowledge is newer than ours (we lost the lease) or simply wrong,
 * and the stanza goes back to the sender after a <refused/>; the sender
 * re-asks the owner and routes it again. An older token than ours is
 * accepted: we are the owner, the sender just has not heard of our newer
 * acquisition.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/alloc.h"
#include "net/log.h"
#include "net/tls.h"
#include "router/hub.h"
#include "router/sess.h"
#include "router/route.h"
#include "router/flow.h"
#include "router/clu.h"
#include "router/nodelink.h"
#include "router/nodelink-int.h"


static nl_refused_fn *refused_hook;
static const struct net_conn_ops nl_ops;
/* node_tls: links are TLS from the first byte (as XEP-0368 for s2s), both
 * sides present the node certificate and require the peer's to chain to the
 * cluster CA; the cluster-secret proof still follows on the stream. NULL:
 * node links in the clear. Set once by nl_init, read-only afterwards. */
static struct tls_ctx *nl_tls;

void nl_set_refused_hook(nl_refused_fn *fn)
{
	refused_hook = fn;
}

struct nl_worker *nl_worker_of(struct hubw *h)
{
	if (!h->nl)
		h->nl = xcalloc(1, sizeof(*h->nl));
	return h->nl;
}

/* Node ids and stream ids on the wire: short, and nothing to escape. */
static bool id_ok(struct xml_span v, size_t cap)
{
	if (!v.n || v.n >= cap)
		return false;
	for (uint32_t i = 0; i < v.n; i++) {
		char ch = v.p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		      ch == '_' || ch == '.' || ch == ':'))
			return false;
	}
	return true;
}

static void span_copy(struct xml_span v, char *out, size_t cap)
{
	size_t n = v.n < cap - 1 ? v.n : cap - 1;
	memcpy(out, v.p, n);
	out[n] = 0;
}

static void send_header(struct sess *s, const char *to)
{
	sess_sendf(s,
		   "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
		   "xmlns:stream='http://etherx.jabber.org/streams' from='%s' to='%s' id='%s' version='1.0'>",
		   clu_self_id(), to, s->stream_id);
	s->state = SESS_OPEN;
}

static void send_proof(struct sess *s, const char *role)
{
	struct nl_conn *nc = s->nl;
	size_t slen;
	const unsigned char *secret = clu_secret(&slen);
	char mac[NL_MAC_HEX + 1], buf[160];
	if (nc->outbound)
		nl_mac(secret, slen, role, s->stream_id, nc->peer_sid, clu_self_id(), nc->peer, mac);
	else
		nl_mac(secret, slen, role, nc->peer_sid, s->stream_id, nc->peer, clu_self_id(), mac);
	int k = nl_ctrl_auth(buf, sizeof(buf), mac);
	sess_send(s, buf, (size_t)k);
}

/* The peer's proof of `role`. */
static bool proof_ok(struct sess *s, const char *role, struct xml_span got)
{
	struct nl_conn *nc = s->nl;
	size_t slen;
	const unsigned char *secret = clu_secret(&slen);
	char want[NL_MAC_HEX + 1];
	if (!secret || !slen)
		return false;
	if (nc->outbound)
		nl_mac(secret, slen, role, s->stream_id, nc->peer_sid, clu_self_id(), nc->peer, want);
	else
		nl_mac(secret, slen, role, nc->peer_sid, s->stream_id, nc->peer, clu_self_id(), want);
	return nl_mac_ok(got, want);
}

static void auth_failed(struct hubw *h, struct sess *s)
{
	MET_INC(h->m, cluster_node_auth_failures);
	log_warn(s->c->id, "node link %s %s: the cluster secret was not proved", s->nl->outbound ? "to" : "from",
		 s->nl->peer[0] ? s->nl->peer : "?");
	sess_stream_error(s, SERR_NOT_AUTHORIZED, NULL);
}

static void link_up(struct hubw *h, struct sess *s)
{
	struct nl_conn *nc = s->nl;
	nc->st = NLS_READY;
	s->tok.authenticated = true;
	net_conn_set_deadline(s->c, 0);
	const char *v = s->c->tls ? tls_version(s->c->tls) : NULL;
	met_link_up(h->m, &s->ml, MET_AUTH_CLUSTER_SECRET, met_tls_of(v), MET_DOM_REMOTE, NULL);
	log_info(s->c->id, "node link %s %s up%s%s", nc->outbound ? "to" : "from", nc->peer, v ? ", " : "",
		 v ? v : "");
}

/* ---- outbound links ------------------------------------------------------- */

bool nl_out_node(struct nl_out *o, int idx)
{
	uint64_t g = clu_nodes_gen();
	if (!o->known || o->gen != g) {
		o->known = clu_node_get(idx, &o->node);
		o->gen = g;
	}
	return o->known && o->node.alive;
}

void nl_out_connect(struct hubw *h, struct nl_out *o, int idx)
{
	if (o->old)
		return; /* a former link still holds stanzas that go first */
	struct sess *s = sess_new(SESS_NODE);
	struct nl_conn *nc = xcalloc(1, sizeof(*nc));
	nc->outbound = true;
	nc->idx = idx;
	snprintf(nc->peer, sizeof(nc->peer), "%s", o->node.id);
	s->nl = nc;
	char label[CLU_ID_MAX + 8];
	snprintf(label, sizeof(label), "node:%s", o->node.id);
	s->remote = xstrdup(label); /* what flow.c and the logs name */
	struct net_conn *c = net_connect(h->w, (struct sockaddr *)&o->node.addr, o->node.alen, &nl_ops, s);
	if (!c) {
		free(nc);
		s->nl = NULL;
		sess_free(s);
		o->retry_at = net_now_ms() + 1000;
		return;
	}
	s->c = c;
	met_conn_open(h->m, &s->ml, MET_DIR_NODE);
	net_conn_set_deadline(c, net_now_ms() + (uint64_t)hub_cfg->connect_timeout * 1000);
	o->s = s;
	log_debug(c->id, "node link to %s: connecting", nc->peer);
}

static struct nl_out *out_of(struct hubw *h, struct sess *s)
{
	if (!h->nl || !s->nl || !s->nl->outbound)
		return NULL;
	struct nl_out *o = &h->nl->out[s->nl->idx];
	return o->s == s ? o : NULL;
}

/* ---- receiving ------------------------------------------------------------ */

/* A stanza under a lease we do not hold (or an older one than named): back
 * to the sender, after a <refused/> naming the lease. */
static void in_refuse(struct hubw *h, struct sess *s, struct net_buf *b, const struct xml_stanza *st,
		      const struct nl_ctx_ent *e)
{
	struct nl_conn *nc = s->nl;
	MET_INC(h->m, cluster_refused);
	if (nc->ref_t != e->token || strcmp(nc->ref_r, e->name) != 0) {
		char buf[CFG_NAME_MAX + 96];
		int k = nl_ctrl_refused(buf, sizeof(buf), e->name, e->len, e->token);
		if (k < 0 || net_send_copy(s->c, buf, (size_t)k) < 0)
			goto bounce;
		snprintf(nc->ref_r, sizeof(nc->ref_r), "%s", e->name);
		nc->ref_t = e->token;
		log_info(s->c->id, "node link from %s: lease %s token %llu is not ours: stanzas sent back", nc->peer,
			 e->name, (unsigned long long)e->token);
	}
	net_buf_ref(b);
	if (net_send_slice(s->c, b, st->raw.p, st->raw.n) == 0)
		return;
	net_buf_unref(h->w, b);
bounce:
	route_bounce(h, st, STERR_REMOTE_SERVER_TIMEOUT, NULL);
}

static void in_stanza(struct hubw *h, struct sess *s, struct net_buf *b, const struct xml_stanza *st)
{
	struct nl_conn *nc = s->nl;
	MET_INC(h->m, cluster_fwd[1]);
	if (st->flags & (XML_ST_HDR_PREFIX | XML_ST_PREFIXED)) {
		/* the sending node forwards self-contained stanzas only */
		route_bounce(h, st, STERR_BAD_REQUEST, "stanza not namespace-self-contained");
		return;
	}
	struct stanza_addrs a;
	stanza_addrs_decode(st, &a);
	if (a.tl > 0 && nc->ctx.n) {
		struct nl_ctx_ent *e = nl_ctx_find(&nc->ctx, a.to, (size_t)a.tl, rt_hash(a.to, (size_t)a.tl));
		if (e) {
			uint64_t mine = clu_lease_token(a.to, (size_t)a.tl);
			if (!mine || e->token > mine) {
				in_refuse(h, s, b, st, e);
				return;
			}
			net_buf_ref(b);
			route_decoded(h, s, b, st, &a);
			return;
		}
	}
	/* no lease: only a component connected here may take it (a stanza is
	 * forwarded once, never on to a third node) */
	if (!a.route || a.route->kind != RT_COMPONENT || !a.route->nconns) {
		route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
		return;
	}
	net_buf_ref(b); /* ours: b is what this worker received */
	route_decoded(h, s, b, st, &a);
}

/* Outbound link: the acceptor refused forwards under a lease. */
static void out_refused(struct hubw *h, struct sess *s, const struct nl_ctrl *k)
{
	struct nl_conn *nc = s->nl;
	uint32_t hv = rt_hash(k->remote, (size_t)k->rn);
	nc->refused_seen = true;
	if (nl_ctx_put(&nc->ctx, k->remote, (size_t)k->rn, hv, k->token | NL_TOKEN_REFUSED) < 0)
		log_warn(s->c->id, "node link to %s: refusal of %s not kept", nc->peer, k->remote);
	log_info(s->c->id, "node link to %s: lease %s token %llu refused: asking again", nc->peer, k->remote,
		 (unsigned long long)k->token);
	if (refused_hook)
		refused_hook(h, k->remote, (size_t)k->rn, k->token, nc->idx);
	else
		clu_lease_ask(h->w, k->remote, (size_t)k->rn);
}

static void on_header(struct hubw *h, struct sess *s)
{
	struct nl_conn *nc = s->nl;
	const struct xml_stream_hdr *hd = &s->tok.hdr;
	if (hd->default_ns != XML_NS_SERVER) {
		sess_stream_error(s, SERR_INVALID_NAMESPACE, NULL);
		return;
	}
	if (!id_ok(hd->id, sizeof(nc->peer_sid)) || !id_ok(hd->from, sizeof(nc->peer))) {
		sess_stream_error(s, SERR_BAD_FORMAT, "node stream without a usable id or from");
		return;
	}
	span_copy(hd->id, nc->peer_sid, sizeof(nc->peer_sid));
	if (nc->outbound) {
		/* the address in the directory answers as another node: not ours */
		if (!span_eq(hd->from, nc->peer)) {
			sess_stream_error(s, SERR_HOST_UNKNOWN, "not the node expected at this address");
			return;
		}
	} else {
		if (hd->to.n && !span_eq(hd->to, clu_self_id())) {
			sess_stream_error(s, SERR_HOST_UNKNOWN, "not this node");
			return;
		}
		span_copy(hd->from, nc->peer, sizeof(nc->peer));
		sess_new_stream_id(h, s);
		send_header(s, nc->peer);
		send_proof(s, "acceptor");
	}
	nc->st = NLS_AUTH;
}

static enum drive nl_event(struct hubw *h, struct sess *s, struct net_buf *b, int ev)
{
	struct nl_conn *nc = s->nl;
	if (ev == XML_EV_STREAM_OPEN) {
		if (nc->st != NLS_HDR)
			sess_stream_error(s, SERR_BAD_FORMAT, NULL);
		else
			on_header(h, s);
		return DRIVE_ON;
	}
	const struct xml_stanza *st = &s->tok.st;
	struct nl_ctrl k;
	nl_ctrl_parse(st, &k);
	if (nc->st != NLS_READY) {
		if (nc->st == NLS_AUTH && k.kind == NL_C_AUTH) {
			if (!proof_ok(s, nc->outbound ? "acceptor" : "connector", k.text)) {
				auth_failed(h, s);
			} else if (nc->outbound) {
				send_proof(s, "connector");
				nc->st = NLS_OK;
			} else {
				sess_send(s, nl_ctrl_ok, strlen(nl_ctrl_ok));
				link_up(h, s);
			}
		} else if (nc->st == NLS_OK && k.kind == NL_C_OK) {
			link_up(h, s);
			struct nl_out *o = out_of(h, s);
			if (o)
				nl_out_ready(h, o);
		} else {
			auth_failed(h, s);
		}
		return DRIVE_ON;
	}
	switch (k.kind) {
	case NL_C_STANZA:
		if (st->nsid != XML_NS_SERVER || !st_routable(st)) {
			sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		} else if (!nc->outbound) {
			in_stanza(h, s, b, st);
			nc->rx_n++; /* routed, bounced or sent back: ours now */
		} else if (nc->refused_seen) {
			/* sent back: route it again as the hub's own */
			MET_INC(h->m, cluster_returned);
			net_buf_ref(b);
			route_stanza(h, NULL, b, st);
		} else {
			sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		}
		break;
	case NL_C_LEASE:
		if (nc->outbound) {
			sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		} else if (nl_ctx_put(&nc->ctx, k.remote, (size_t)k.rn, rt_hash(k.remote, (size_t)k.rn), k.token) <
			   0) {
			sess_stream_error(s, SERR_RESOURCE_CONSTRAINT, "too many lease contexts");
		}
		break;
	case NL_C_REFUSED:
		if (nc->outbound)
			out_refused(h, s, &k);
		else
			sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		break;
	case NL_C_ACK:
		if (nc->outbound)
			nl_out_acked(h, s, k.token);
		else
			sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		break;
	default:
		sess_stream_error(s, SERR_UNSUPPORTED_STANZA_TYPE, NULL);
		break;
	}
	return DRIVE_ON;
}

/* ---- connection callbacks ------------------------------------------------- */

static size_t nl_on_data(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	struct sess *s = c->user;
	size_t used = sess_drive(s, b, p, n, nl_event);
	struct nl_conn *nc = s->nl;
	if (nc && !nc->outbound && nc->rx_n != nc->rx_acked && !(c->flags & NET_F_CLOSING)) {
		/* one acknowledgement per read batch, queued behind what routing
		 * the batch wrote: the sender may forget these stanzas */
		char buf[64];
		int k = nl_ctrl_ack(buf, sizeof(buf), nc->rx_n);
		if (k > 0 && net_send_copy(c, buf, (size_t)k) == 0)
			nc->rx_acked = nc->rx_n;
	}
	return used;
}

static void nl_on_connect(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	if (err) {
		log_info(c->id, "node link to %s: connect failed: %s", s->nl->peer, strerror(-err));
		return; /* on_close follows */
	}
	if (nl_tls) {
		/* no SNI, no resumption: the acceptor's chain must reach the CA */
		struct tls_conn *t = tls_conn_new(nl_tls, false, NULL, NULL);
		if (!t) {
			net_close(c, false);
			return;
		}
		net_start_tls(c, t, true); /* the stream opens once the handshake is done (nl_on_tls) */
		return;
	}
	sess_new_stream_id(h, s);
	send_header(s, s->nl->peer);
}

static void nl_on_tls(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct nl_conn *nc = s->nl;
	const char *dir = nc->outbound ? "to" : "from";
	const char *peer = nc->peer[0] ? nc->peer : "?";
	if (err) {
		MET_INC(h->m, tls_failures);
		MET_INC(h->m, cluster_node_auth_failures);
		log_warn(c->id, "node link %s %s: TLS failed: %s", dir, peer, c->tls ? tls_error(c->tls) : tls_strerror(err));
		return; /* the connection closes */
	}
	if (tls_resumed(c->tls)) {
		/* a connector never resumes: a ticket (issued on an s2s link, say)
		 * would carry no node certificate */
		MET_INC(h->m, tls_failures);
		MET_INC(h->m, cluster_node_auth_failures);
		log_warn(c->id, "node link %s %s: resumed TLS session refused", dir, peer);
		net_close(c, false);
		return;
	}
	MET_INC(h->m, tls_handshakes);
	log_debug(c->id, "node link %s %s: %s %s", dir, peer, tls_version(c->tls), tls_cipher(c->tls));
	if (nc->outbound) {
		sess_new_stream_id(h, s);
		send_header(s, nc->peer);
	}
}

static void nl_on_close(struct net_conn *c, int err)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct nl_conn *nc = s->nl;
	sess_log_enter(s);
	if (!nc->outbound)
		MET_INC(h->m, conn_closed); /* the pair of hub.c's conn_accepted */
	log_info(c->id, "node link %s %s closed: %s", nc->outbound ? "to" : "from", nc->peer[0] ? nc->peer : "?",
		 err ? strerror(-err) : "by us or the peer");
	if (nc->outbound && h->nl) {
		struct nl_out *o = &h->nl->out[nc->idx];
		if (o->s == s)
			nl_out_detach(o, nc->st == NLS_READY);
		if (nc->detached && o->old)
			o->old--;
		nl_out_requeue(h, o, s);
	}
	nl_release_srcs(h, nc);
	free(nc->hsrc);
	nl_ring_free(&nc->ring);
	nl_ctx_clear(&nc->ctx);
	s->nl = NULL;
	free(nc);
	sess_free(s);
}

/* Bytes queued to the link that never left. Outbound: the stanzas among
 * them are borrowed from the ring, which on_close queues again; our control
 * elements are made anew on the next link. Inbound: what we sent back
 * (refused stanzas) and acknowledgements: the sender, not acknowledged for
 * those stanzas, sends them again. So nothing here is routed. */
static void nl_on_unsent(struct net_conn *c, struct net_buf *b, const char *p, size_t n)
{
	struct sess *s = c->user;
	struct hubw *h = hubw_of(c->w);
	struct nl_out *o = s->nl ? out_of(h, s) : NULL;
	(void)p;
	(void)n;
	if (o)
		nl_out_detach(o, s->nl->st == NLS_READY);
	net_buf_unref(h->w, b);
}

static void nl_on_drain(struct net_conn *c)
{
	struct sess *s = c->user;
	if (s->nl && s->nl->outbound && s->nl->st == NLS_READY)
		nl_out_pump(hubw_of(c->w), s);
	else
		flow_drain(hubw_of(c->w), s);
}

static void nl_on_timer(struct net_conn *c)
{
	struct sess *s = c->user;
	if (c->flags & NET_F_TLS_HS) {
		log_info(c->id, "node link %s %s: no TLS handshake in time", s->nl && s->nl->outbound ? "to" : "from",
			 s->nl && s->nl->peer[0] ? s->nl->peer : "?");
		net_close(c, false); /* no TLS yet: nothing can be said */
	} else if (s->nl && s->nl->st != NLS_READY) {
		sess_stream_error(s, SERR_CONNECTION_TIMEOUT, "node link not authenticated in time");
	}
}

static const struct net_conn_ops nl_ops = {
	.on_data = nl_on_data,
	.on_connect = nl_on_connect,
	.on_tls = nl_on_tls,
	.on_close = nl_on_close,
	.on_timer = nl_on_timer,
	.on_unsent = nl_on_unsent,
	.on_drain = nl_on_drain,
};

void nl_accept(struct net_conn *c)
{
	struct sess *s = sess_new(SESS_NODE);
	s->nl = xcalloc(1, sizeof(*s->nl));
	s->c = c;
	met_conn_open(hubw_of(c->w)->m, &s->ml, MET_DIR_NODE);
	c->ops = &nl_ops;
	c->user = s;
	net_conn_set_deadline(c, net_now_ms() + (uint64_t)hub_cfg->connect_timeout * 1000);
	if (!clu_enabled()) {
		sess_stream_error(s, SERR_NOT_AUTHORIZED, "not clustered");
		return;
	}
	if (nl_tls) {
		struct tls_conn *t = tls_conn_new(nl_tls, true, NULL, NULL);
		if (t)
			net_start_tls(c, t, false);
		else
			net_close(c, false);
	}
}

struct tls_ctx *nl_tls_make(const struct cfg_cluster *k, char *err, size_t cap)
{
	struct tls_opts o = {
		.ca_file = k->node_tls_ca,
		.min_version = 13,
		.max_version = 13,
		.verify_required = true,
		.client_default_cert = true,
	};
	struct tls_ctx *t = tls_ctx_new(&o);
	if (!t) {
		snprintf(err, cap, "cannot set up TLS with the CA %s", k->node_tls_ca);
		return NULL;
	}
	int rc = tls_ctx_add_cert(t, k->node_tls_cert, k->node_tls_key);
	if (rc < 0) {
		snprintf(err, cap, "cannot load the certificate %s with the key %s: %s", k->node_tls_cert,
			 k->node_tls_key, tls_strerror(rc));
		tls_ctx_free(t);
		return NULL;
	}
	return t;
}

int nl_listen(const struct sockaddr *sa, socklen_t len)
{
	return net_listen(NL_LISTEN_KIND, sa, len);
}

int nl_init(const struct cfg *c)
{
	if (!c->cluster.on)
		return 0;
	if (c->cluster.node_tls_cert[0]) {
		char err[1200];
		if (!(nl_tls = nl_tls_make(&c->cluster, err, sizeof(err)))) {
			log_error(0, "node_tls: %s", err);
			return -EINVAL;
		}
	}
	const struct cfg_addr *a = &c->cluster.node_listen;
	int rc = nl_listen((const struct sockaddr *)&a->ss, a->len);
	if (rc < 0) {
		log_error(0, "cannot listen for node links on %s: %s", a->text, strerror(-rc));
		return rc;
	}
	log_info(0, "listening: node links %s (node %s)%s", a->text, clu_self_id(), nl_tls ? ", TLS" : "");
	return 0;
}

/* ---- ticks ------------------------------------------------------------------ */

void nl_tick(struct hubw *h, uint64_t now)
{
	struct nl_worker *nw = h->nl;
	if (!nw)
		return;
	uint64_t stall = (uint64_t)hub_cfg->stall_timeout * 1000;
	uint64_t keep = (uint64_t)hub_cfg->keepalive_interval * 1000;
	uint64_t qbytes = 0, qstanzas = 0, unacked = 0;
	for (int i = 0; i < nw->nout; i++) {
		struct nl_out *o = &nw->out[i];
		struct sess *s = o->s;
		if (s && s->nl->st == NLS_READY) {
			struct nl_conn *nc = s->nl;
			if (!nl_out_node(o, i)) {
				/* gone from the directory: its ring goes again (on_close) */
				log_warn(s->c->id, "node link to %s: the node is gone: link closed, %u stanzas unacknowledged",
					 nc->peer, nc->ring.len);
				nl_out_detach(o, true);
				net_close(s->c, false);
				s = NULL;
			} else if (nc->ring.len && now - nc->ack_at >= stall) {
				log_warn(s->c->id, "node link to %s: no acknowledgement for %us: link closed, %u stanzas unacknowledged",
					 nc->peer, hub_cfg->stall_timeout, nc->ring.len);
				nl_out_detach(o, true);
				net_close(s->c, false); /* no flush: the peer does not take it */
				s = NULL;
			} else if (nl_ring_pending(&nc->ring)) {
				nl_out_pump(h, s);
			}
		}
		if (o->old)
			continue; /* a former link's ring joins the connect queue first */
		if (o->wlen && now - o->wsince >= stall) {
			log_warn(0, "node link to %s: not up for %us: %u waiting stanzas bounced", o->node.id,
				 hub_cfg->stall_timeout, o->wlen);
			nl_wq_bounce_all(h, o, STERR_REMOTE_SERVER_TIMEOUT);
		}
		if (o->wlen && !nl_out_node(o, i)) {
			/* the node left the directory: what waited for it is routed
			 * again (another node, or a bounce), not held for a dead one */
			log_info(0, "node link to %s: the node is gone: %u waiting stanzas routed again", o->node.id,
				 o->wlen);
			nl_wq_reroute_all(h, o);
		}
		if (o->wlen && !o->s && now >= o->retry_at && nl_out_node(o, i))
			nl_out_connect(h, o, i);
		qbytes += o->wbytes;
		qstanzas += o->wlen;
		if (!s || s != o->s)
			continue;
		struct net_conn *c = s->c;
		unacked += s->nl->ring.len;
		qbytes += c->oq_bytes + s->nl->ring.pend_bytes;
		if (s->nl->st == NLS_READY && keep && !c->oq_len && !nl_ring_pending(&s->nl->ring) &&
		    now - o->last_tx >= keep) {
			net_send_copy(c, " ", 1); /* whitespace keepalive: a dead peer shows */
			o->last_tx = now;
		}
	}
	MET_SET(h->m, nl_queue_bytes, qbytes);
	MET_SET(h->m, nl_queue_stanzas, qstanzas);
	MET_SET(h->m, nl_unacked, unacked);
}

void nl_worker_stop(struct hubw *h)
{
	struct nl_worker *nw = h->nl;
	if (!nw)
		return;
	nw->stopping = true; /* rings of links closing from here on are bounced */
	for (int i = 0; i < nw->nout; i++) {
		nl_wq_bounce_all(h, &nw->out[i], STERR_REMOTE_SERVER_TIMEOUT);
		free(nw->out[i].wq);
		nw->out[i].wq = NULL;
		nw->out[i].wcap = 0;
	}
}
