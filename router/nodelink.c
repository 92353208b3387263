/*
 * router/nodelink.c — node-to-node links (router/nodelink.h).
 *
 * First version of the interface only: no node link exists yet, so every
 * forward is refused with -EHOSTUNREACH (the caller bounces) and the node
 * listener cannot be opened.
 */
#include <errno.h>

#include "router/nodelink.h"

static nl_refused_fn *refused_hook;

int nl_listen(const struct sockaddr *sa, socklen_t len)
{
	(void)sa;
	(void)len;
	return -ENOTSUP;
}

void nl_accept(struct net_conn *c)
{
	net_close(c, false);
}

int nl_forward(struct hubw *h, int node_idx, struct net_buf *b, const char *p, size_t n, const char *remote,
	       size_t rn, uint64_t token, struct net_ref src, enum hub_sterr *why)
{
	*why = STERR_SERVICE_UNAVAILABLE;
	return -EHOSTUNREACH;
}

void nl_set_refused_hook(nl_refused_fn *fn)
{
	refused_hook = fn;
}

bool nl_comp_forward(struct hubw *h, const char *domain, size_t dn, struct net_buf *b, const struct xml_stanza *st,
		     struct net_ref src)
{
	return false;
}

void nl_tick(struct hubw *h, uint64_t now)
{
}

void nl_worker_stop(struct hubw *h)
{
}
