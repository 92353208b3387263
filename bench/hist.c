/*
 * bench/hist.c — log-linear latency histogram.
 *
 * A value v falls in the bucket of its power of two (its top bit) and, within
 * it, in one of BH_SUB linear sub-buckets taken from the next BH_SUB_BITS
 * bits: recording is a clz and a shift, constant memory whatever the range,
 * and the relative error of a reported percentile is at most 1/BH_SUB. The
 * same idea as HdrHistogram, cut to what the bench needs.
 */
#include <string.h>
#include "bench/bench.h"

static unsigned bh_index(uint64_t v)
{
	if (v < BH_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= BH_SUB_BITS */
	unsigned sub = (unsigned)(v >> (e - BH_SUB_BITS)) & (BH_SUB - 1);
	return (e - BH_SUB_BITS + 1) * BH_SUB + sub;
}

/* Lowest value of bucket i and its width. */
static void bh_bounds(unsigned i, uint64_t *lo, uint64_t *width)
{
	if (i < BH_SUB) {
		*lo = i;
		*width = 1;
		return;
	}
	unsigned e = i / BH_SUB + BH_SUB_BITS - 1, sub = i % BH_SUB;
	*width = 1ull << (e - BH_SUB_BITS);
	*lo = ((uint64_t)(BH_SUB + sub)) << (e - BH_SUB_BITS);
}

void bench_hist_reset(struct bench_hist *h)
{
	memset(h, 0, sizeof(*h));
}

void bench_hist_add(struct bench_hist *h, uint64_t ns)
{
	h->b[bh_index(ns)]++;
	h->count++;
	h->sum += ns;
	if (ns > h->max)
		h->max = ns;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
	for (unsigned i = 0; i < BH_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t bench_hist_quantile(const struct bench_hist *h, double q)
{
	if (h->count == 0)
		return 0;
	if (q >= 1.0)
		return h->max;
	/* rank of the wanted sample, 1-based, rounded up */
	uint64_t rank = (uint64_t)(q * (double)h->count);
	if ((double)rank < q * (double)h->count)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < BH_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t lo, w;
			bh_bounds(i, &lo, &w);
			uint64_t mid = lo + w / 2;
			return mid > h->max ? h->max : mid;
		}
	}
	return h->max;
}
