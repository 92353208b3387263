/*
 * router/pix.h — a hash index over an array the caller owns: domain pairs
 * of an inbound stream (struct sess), local domains of an outbound link
 * (struct s2s_out), static routes (struct cfg).
 *
 * Design. The entries stay in the caller's array, in insertion order, each
 * with its 32-bit hash; the index is an open-addressing table (linear
 * probing, at most half full) of entry positions + 1, 0 meaning empty. A
 * small array has no table at all: up to PIX_LINEAR entries a lookup scans
 * the stored hashes, which costs less than a probe and no memory, so a
 * 1-pair link stays as small as it was. Past that the table is built, and
 * doubled whenever it would be more than half full, so a lookup is one
 * probe sequence whatever the number of entries. Deletion moves the last
 * entry into the hole (the caller does the move, the index follows it) and
 * closes the probe gap by backward shifting, so no tombstones pile up.
 *
 * The caller says how to compare an entry with the key and what an
 * entry's stored hash is through two callbacks; the functions are static
 * inline so the callbacks are inlined where they are constants. Nothing
 * here is shared between threads: each array belongs to one worker (or is
 * built once with the configuration and then only read).
 */
#ifndef FEDHUB_PIX_H
#define FEDHUB_PIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "net/alloc.h"

#define PIX_LINEAR 8 /* entries scanned without a table */

struct pix {
	uint32_t *slot; /* entry index + 1; 0 = empty */
	uint32_t cap;   /* 0 (no table) or a power of two */
};

/* Does entry i match the key (whose hash is h)? */
typedef bool (*pix_eq_fn)(const void *ctx, uint32_t i, uint32_t h);
/* The stored hash of entry i. */
typedef uint32_t (*pix_hash_fn)(const void *ctx, uint32_t i);

/* FNV-1a over one or two strings (a space between them, which no domain
 * contains), folded. */
static inline uint32_t pix_hash_mix(uint32_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}
static inline uint32_t pix_hash_fin(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x7feb352du;
	return h ^ (h >> 15);
}
static inline uint32_t pix_hash1(const char *a, size_t an)
{
	return pix_hash_fin(pix_hash_mix(2166136261u, a, an));
}
static inline uint32_t pix_hash2(const char *a, size_t an, const char *b, size_t bn)
{
	uint32_t h = pix_hash_mix(2166136261u, a, an);
	h = pix_hash_mix(h, " ", 1);
	return pix_hash_fin(pix_hash_mix(h, b, bn));
}

/* The position of the entry matching the key among n entries, or -1. */
static inline int64_t pix_find(const struct pix *x, uint32_t n, uint32_t h, pix_eq_fn eq, const void *ctx)
{
	if (!x->cap) {
		for (uint32_t i = 0; i < n; i++)
			if (eq(ctx, i, h))
				return i;
		return -1;
	}
	for (uint32_t k = h & (x->cap - 1);; k = (k + 1) & (x->cap - 1)) {
		uint32_t s = x->slot[k];
		if (!s)
			return -1;
		if (eq(ctx, s - 1, h))
			return s - 1;
	}
}

static inline void pix_put(struct pix *x, uint32_t i, uint32_t h)
{
	uint32_t k = h & (x->cap - 1);
	while (x->slot[k])
		k = (k + 1) & (x->cap - 1);
	x->slot[k] = i + 1;
}

/* Rebuild the table for n entries (none when n is small). Control plane:
 * aborts when out of memory (net/alloc.h). */
static inline void pix_rebuild(struct pix *x, uint32_t n, pix_hash_fn hf, const void *ctx)
{
	free(x->slot);
	x->slot = NULL;
	x->cap = 0;
	if (n <= PIX_LINEAR)
		return;
	uint32_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	x->slot = xcalloc(cap, sizeof(*x->slot));
	x->cap = cap;
	for (uint32_t i = 0; i < n; i++)
		pix_put(x, i, hf(ctx, i));
}

/* Entry i (the last one, i == n - 1) with hash h was appended: index it. */
static inline void pix_added(struct pix *x, uint32_t i, uint32_t h, pix_hash_fn hf, const void *ctx)
{
	uint32_t n = i + 1;
	if (n <= PIX_LINEAR && !x->cap)
		return;
	if (2 * n > x->cap) {
		pix_rebuild(x, n, hf, ctx);
		return;
	}
	pix_put(x, i, h);
}

/* Make room for entry n - 1 (the n - 1 before it are indexed) so that
 * pix_added then neither allocates nor aborts: for the data path, where
 * running out of memory is an error to report. -1 when out of memory (the
 * index is as it was). */
static inline int pix_reserve(struct pix *x, uint32_t n, pix_hash_fn hf, const void *ctx)
{
	if ((n <= PIX_LINEAR && !x->cap) || 2 * n <= x->cap)
		return 0;
	uint32_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	uint32_t *s = calloc(cap, sizeof(*s));
	if (!s)
		return -1;
	free(x->slot);
	x->slot = s;
	x->cap = cap;
	for (uint32_t i = 0; i + 1 < n; i++)
		pix_put(x, i, hf(ctx, i));
	return 0;
}

static inline uint32_t *pix_slot_of(struct pix *x, uint32_t i, uint32_t h)
{
	for (uint32_t k = h & (x->cap - 1);; k = (k + 1) & (x->cap - 1))
		if (x->slot[k] == i + 1)
			return &x->slot[k];
}

/* Entry i (hash h) of n is about to go, and the caller will then move
 * entry n - 1 into its place: unindex one, re-point the other. Call it
 * while both are still where they were. */
static inline void pix_removing(struct pix *x, uint32_t n, uint32_t i, uint32_t h, pix_hash_fn hf, const void *ctx)
{
	if (!x->cap)
		return;
	uint32_t m = x->cap - 1;
	uint32_t hole = (uint32_t)(pix_slot_of(x, i, h) - x->slot);
	x->slot[hole] = 0;
	/* backward shift: an entry later in the run moves into the hole when
	 * the hole lies on its probe path (between its home slot and it) */
	for (uint32_t k = (hole + 1) & m; x->slot[k]; k = (k + 1) & m) {
		uint32_t home = hf(ctx, x->slot[k] - 1) & m;
		if (((k - home) & m) >= ((k - hole) & m)) {
			x->slot[hole] = x->slot[k];
			x->slot[k] = 0;
			hole = k;
		}
	}
	if (i != n - 1)
		*pix_slot_of(x, n - 1, hf(ctx, n - 1)) = i + 1;
}

static inline void pix_free(struct pix *x)
{
	free(x->slot);
	x->slot = NULL;
	x->cap = 0;
}

#endif
