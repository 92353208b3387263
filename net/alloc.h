/*
 * net/alloc.h — one out-of-memory policy for the whole tree.
 *
 * Control-plane memory (configuration, sessions, outbound links, tables,
 * DNS state) comes from the x*() helpers below. When the allocator fails
 * there, nothing sensible can be done one level up, so they log what was
 * asked for and abort, as Redis's zmalloc does: a half-built session or a
 * link table with a hole in it is worse than a restart.
 *
 * The data path is different: a stanza that cannot be queued, a receive
 * that cannot be buffered or a copy that cannot be made has a meaningful
 * recovery (bounce the stanza, close that one link), so it uses plain
 * malloc() and handles NULL as -ENOMEM. Each such place says so.
 */
#ifndef FEDHUB_ALLOC_H
#define FEDHUB_ALLOC_H

#include <stddef.h>

void *xmalloc(size_t n) __attribute__((malloc, returns_nonnull));
void *xcalloc(size_t nmemb, size_t size) __attribute__((malloc, returns_nonnull));
void *xrealloc(void *p, size_t n) __attribute__((returns_nonnull));
char *xstrdup(const char *s) __attribute__((malloc, returns_nonnull));
char *xstrndup(const char *s, size_t n) __attribute__((malloc, returns_nonnull));

#endif
