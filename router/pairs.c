/*
 * router/pairs.c — the (remote, local) domain pairs authenticated, or being
 * authenticated, on one s2s stream (struct sess), found in constant time.
 *
 * Every inbound stanza is checked against its stream's pairs (route.c), and
 * a stream may carry up to S2S_MAX_PAIRS of them (XEP-0220 piggybacking):
 * a scan would make each stanza cost more the more domains share its link.
 * The pairs stay in an array in the order they were claimed and a hash
 * index (router/pix.h) finds them; a stream with a handful of pairs has no
 * index, only the stored hashes to compare. A pair's two names are one
 * allocation ("remote\0local\0"): the comparison that confirms a probe
 * touches one more cache line, not two, when a link's thousand pairs do
 * not all stay in the cache.
 */
#include <string.h>

#include "router/hub.h"
#include "router/sess.h"
#include "net/alloc.h"

struct pkey {
	const struct sess *s;
	const char *remote, *local;
};

static bool pair_eq(const void *ctx, uint32_t i, uint32_t h)
{
	const struct pkey *k = ctx;
	const struct pair *p = &k->s->pairs[i];
	return p->hash == h && strcmp(p->remote, k->remote) == 0 && strcmp(p->local, k->local) == 0;
}

static uint32_t pair_hash_at(const void *ctx, uint32_t i)
{
	const struct pkey *k = ctx;
	return k->s->pairs[i].hash;
}

struct pair *pair_find(const struct sess *s, const char *remote, const char *local)
{
	uint32_t h = pix_hash2(remote, strlen(remote), local, strlen(local));
	struct pkey k = {s, remote, local};
	int64_t i = pix_find(&s->pix, s->npairs, h, pair_eq, &k);
	return i < 0 ? NULL : &s->pairs[i];
}

struct pair *pair_add(struct sess *s, const char *remote, const char *local)
{
	uint32_t h = pix_hash2(remote, strlen(remote), local, strlen(local));
	struct pkey k = {s, remote, local};
	int64_t i = pix_find(&s->pix, s->npairs, h, pair_eq, &k);
	if (i >= 0)
		return &s->pairs[i];
	if (s->npairs == s->cpairs) {
		/* the count is a uint16_t: max_pairs_per_stream is at most 65535 */
		uint32_t nc = s->cpairs ? (uint32_t)s->cpairs * 2 : 2;
		s->cpairs = (uint16_t)(nc > UINT16_MAX ? UINT16_MAX : nc);
		s->pairs = xrealloc(s->pairs, s->cpairs * sizeof(*s->pairs));
	}
	struct pair *p = &s->pairs[s->npairs];
	memset(p, 0, sizeof(*p));
	size_t rl = strlen(remote), ll = strlen(local);
	p->remote = xmalloc(rl + ll + 2);
	memcpy(p->remote, remote, rl + 1);
	p->local = p->remote + rl + 1;
	memcpy(p->local, local, ll + 1);
	p->hash = h;
	pix_added(&s->pix, s->npairs, h, pair_hash_at, &k);
	s->npairs++;
	return p;
}

void pairs_clear(struct sess *s)
{
	for (int i = 0; i < s->npairs; i++)
		free(s->pairs[i].remote); /* local is in the same allocation */
	s->npairs = 0;
	s->npend = s->nvalid = 0;
	pix_free(&s->pix); /* its slots name the entries just dropped */
}

void pairs_free(struct sess *s)
{
	pairs_clear(s);
	free(s->pairs);
	s->pairs = NULL;
	s->npairs = s->cpairs = 0;
}
