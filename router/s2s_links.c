/*
 * router/s2s_links.c — a worker's table of outbound links by remote domain
 * (struct hubw.links), which grows with them.
 *
 * Design. Separate chaining through s2s_out.hnext, a power-of-two number of
 * buckets, each link keeping its hash so that growing never touches the
 * names. The table starts small (a worker that talks to a few remotes keeps
 * a few hundred bytes) and doubles, all at once, when it holds more links
 * than buckets, so chains stay about one link long and the cost of a growth
 * is paid back by the insertions that led to it. It never shrinks: a worker
 * that once had that many remotes may have them again. Only its worker
 * reads or writes it, so it needs neither locks nor RCU.
 */
#include <string.h>

#include "router/s2s-t.h"
#include "net/alloc.h"

#define LINKS_MIN_CAP 64

uint32_t s2s_links_hash(const char *remote)
{
	return pix_hash1(remote, strlen(remote));
}

struct s2s_out *s2s_links_find(const struct hubw *h, const char *remote)
{
	if (!h->nlinks_cap)
		return NULL;
	uint32_t hv = s2s_links_hash(remote);
	for (struct s2s_out *L = h->links[hv & (h->nlinks_cap - 1)]; L; L = L->hnext)
		if (L->hash == hv && strcmp(L->remote, remote) == 0)
			return L;
	return NULL;
}

static void links_resize(struct hubw *h, uint32_t cap)
{
	struct s2s_out **nb = xcalloc(cap, sizeof(*nb));
	for (uint32_t i = 0; i < h->nlinks_cap; i++) {
		struct s2s_out *L = h->links[i], *next;
		for (; L; L = next) {
			next = L->hnext;
			L->hnext = nb[L->hash & (cap - 1)];
			nb[L->hash & (cap - 1)] = L;
		}
	}
	free(h->links);
	h->links = nb;
	h->nlinks_cap = cap;
}

void s2s_links_add(struct hubw *h, struct s2s_out *L)
{
	L->hash = s2s_links_hash(L->remote);
	if (!h->nlinks_cap)
		links_resize(h, LINKS_MIN_CAP);
	else if (h->nlinks + 1 > h->nlinks_cap)
		links_resize(h, h->nlinks_cap * 2);
	struct s2s_out **b = &h->links[L->hash & (h->nlinks_cap - 1)];
	L->hnext = *b;
	*b = L;
	h->nlinks++;
}

bool s2s_links_del(struct hubw *h, struct s2s_out *L)
{
	if (!h->nlinks_cap)
		return false;
	struct s2s_out **pp = &h->links[L->hash & (h->nlinks_cap - 1)];
	while (*pp && *pp != L)
		pp = &(*pp)->hnext;
	if (!*pp)
		return false;
	*pp = L->hnext;
	L->hnext = NULL;
	h->nlinks--;
	return true;
}

void s2s_links_free(struct hubw *h)
{
	free(h->links);
	h->links = NULL;
	h->nlinks_cap = h->nlinks = 0;
}
