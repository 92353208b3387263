/*
 * tests/unit/test_flow.c — a flow queue's source entries (router/flow.c):
 * found by net_ref in one probe run whatever their number, with removal
 * (the last entry moving into the hole), refs differing only in worker or
 * generation, clearing and reuse of the index, and pix_reserve
 * (router/pix.h) leaving the index unchanged until the entry is added.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "router/flow.h"

static struct net_ref ref(uint16_t w, uint32_t slot, uint32_t gen)
{
	return (struct net_ref){.worker = w, .slot = slot, .gen = gen};
}

static void q_free(struct flowq *q)
{
	free(q->src);
	pix_free(&q->six);
}

static void test_few_sources_scan(void **st)
{
	(void)st;
	struct flowq q = {0};
	for (uint32_t i = 0; i < PIX_LINEAR; i++)
		assert_non_null(flow_src_add(&q, ref(0, i, 1)));
	assert_int_equal(q.six.cap, 0); /* no table for a handful */
	for (uint32_t i = 0; i < PIX_LINEAR; i++) {
		struct flow_src *e = flow_src_find(&q, ref(0, i, 1));
		assert_non_null(e);
		assert_int_equal(e->ref.slot, i);
	}
	assert_null(flow_src_find(&q, ref(0, PIX_LINEAR, 1)));
	assert_non_null(flow_src_add(&q, ref(0, PIX_LINEAR, 1)));
	assert_true(q.six.cap >= 2 * (PIX_LINEAR + 1)); /* past it: indexed */
	q_free(&q);
}

/* same slot, other generation or worker: other connections */
static void test_refs_that_differ_in_one_field(void **st)
{
	(void)st;
	struct flowq q = {0};
	for (uint32_t g = 0; g < 40; g++)
		for (uint16_t w = 0; w < 3; w++)
			assert_non_null(flow_src_add(&q, ref(w, 5, g)));
	assert_int_equal(q.nsrc, 120);
	for (uint32_t g = 0; g < 40; g++)
		for (uint16_t w = 0; w < 3; w++) {
			struct flow_src *e = flow_src_find(&q, ref(w, 5, g));
			assert_non_null(e);
			assert_int_equal(e->ref.gen, g);
			assert_int_equal(e->ref.worker, w);
		}
	assert_null(flow_src_find(&q, ref(3, 5, 0)));
	assert_null(flow_src_find(&q, ref(0, 5, 40)));
	assert_null(flow_src_find(&q, ref(0, 6, 0)));
	q_free(&q);
}

/* many sources added and removed in a pseudo-random order, checked
 * against a plain membership array after every step */
static void test_many_sources_add_remove(void **st)
{
	(void)st;
	enum { N = 6000 };
	static bool in[N];
	memset(in, 0, sizeof(in));
	struct flowq q = {0};
	uint32_t x = 12345, live = 0, peak = 0;
	for (int step = 0; step < 60000; step++) {
		x = x * 1103515245u + 12345u;
		uint32_t k = (x >> 8) % N;
		struct net_ref r = ref((uint16_t)(k % 7), k, k * 3 + 1);
		struct flow_src *e = flow_src_find(&q, r);
		assert_int_equal(e != NULL, in[k]);
		if (e) {
			flow_src_del(&q, e);
			in[k] = false;
			live--;
		} else {
			e = flow_src_add(&q, r);
			assert_non_null(e);
			e->bytes = k;
			in[k] = true;
			live++;
		}
		if (live > peak)
			peak = live;
		assert_int_equal(q.nsrc, live);
		if (step % 5000 == 0)
			for (uint32_t j = 0; j < N; j++) {
				struct flow_src *f = flow_src_find(&q, ref((uint16_t)(j % 7), j, j * 3 + 1));
				assert_int_equal(f != NULL, in[j]);
				if (f)
					assert_int_equal(f->bytes, j); /* moved entries keep their data */
			}
	}
	assert_true(peak > 1000);
	assert_true(q.six.cap <= 4 * peak + 16); /* bounded by the peak */
	q_free(&q);
}

static void test_clear_then_reuse(void **st)
{
	(void)st;
	struct flowq q = {0};
	for (uint32_t i = 0; i < 500; i++)
		assert_non_null(flow_src_add(&q, ref(1, i, 9)));
	uint32_t cap = q.six.cap;
	q.npaused = 3;
	flow_src_clear(&q);
	assert_int_equal(q.nsrc, 0);
	assert_int_equal(q.npaused, 0);
	assert_int_equal(q.six.cap, cap); /* kept: no allocation next time */
	for (uint32_t i = 0; i < cap; i++)
		assert_int_equal(q.six.slot[i], 0);
	for (uint32_t i = 0; i < 500; i++)
		assert_null(flow_src_find(&q, ref(1, i, 9)));
	for (uint32_t i = 0; i < 500; i++)
		assert_non_null(flow_src_add(&q, ref(1, i, 10)));
	assert_int_equal(q.six.cap, cap);
	for (uint32_t i = 0; i < 500; i++) {
		assert_non_null(flow_src_find(&q, ref(1, i, 10)));
		assert_null(flow_src_find(&q, ref(1, i, 9)));
	}
	q_free(&q);
}

/* the hash spreads refs that differ only in slot over the low bits */
static void test_hash_spreads_slots(void **st)
{
	(void)st;
	static uint32_t bucket[256];
	memset(bucket, 0, sizeof(bucket));
	for (uint32_t i = 0; i < 256 * 64; i++)
		bucket[flow_ref_hash(ref(0, i, 1)) & 255]++;
	for (int b = 0; b < 256; b++)
		assert_true(bucket[b] > 16 && bucket[b] < 160);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_few_sources_scan),
		cmocka_unit_test(test_refs_that_differ_in_one_field),
		cmocka_unit_test(test_many_sources_add_remove),
		cmocka_unit_test(test_clear_then_reuse),
		cmocka_unit_test(test_hash_spreads_slots),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
