/* tests/unit/test_pairq.c — a pair's queue while its link comes up
 * (router/pairq.c): growth from the first capacity by doubling, order kept
 * through pushes, partial takes and moves, the whole queue taken off at
 * once (flush and bounce-all), and the per-link admission thresholds.
 * Stanzas are heap buffers (not receive buffers): a push keeps the very
 * buffer and its reference, so nothing here needs a worker. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/cfg.h"
#include "router/flow.h"
#include "router/hub.h"
#include "router/met.h"
#include "router/pairq.h"

enum { NB = 300 };
static struct net_buf bufs[NB];
static char text[NB][32];

static void make_bufs(void)
{
	for (int i = 0; i < NB; i++) {
		int n = snprintf(text[i], sizeof(text[i]), "<message id='%d'/>", i);
		bufs[i] = (struct net_buf){.ref = 1, .bid = -1, .cap = (uint32_t)n, .len = (uint32_t)n, .data = text[i]};
	}
}

static void push(struct pairq *q, uint32_t first, int i)
{
	assert_int_equal(pairq_push(NULL, q, first, &bufs[i], bufs[i].data, bufs[i].len, 1000 + (uint64_t)i), 0);
}

static void check_item(const struct pq_item *it, int i)
{
	assert_ptr_equal(it->b, &bufs[i]);
	assert_ptr_equal(it->p, text[i]);
	assert_int_equal(it->n, strlen(text[i]));
	assert_int_equal(it->at, 1000 + (uint64_t)i);
}

static void test_growth_from_first_capacity(void **st)
{
	(void)st;
	make_bufs();
	for (uint32_t first = 2; first <= 16; first *= 8) {
		struct pairq q = {0};
		uint32_t want = first;
		for (int i = 0; i < 100; i++) {
			push(&q, first, i);
			while (want < q.len)
				want *= 2;
			assert_int_equal(q.len, (uint32_t)i + 1);
			assert_int_equal(q.cap, want);
		}
		for (int i = 0; i < 100; i++)
			check_item(&q.v[i], i);
		assert_int_equal(bufs[0].ref, 1); /* the caller's reference, now the queue's */
		free(q.v);
	}
}

static void test_take_first_keeps_order(void **st)
{
	(void)st;
	make_bufs();
	struct pairq q = {0};
	for (int i = 0; i < 10; i++)
		push(&q, 2, i);
	struct pq_item out[64];
	assert_int_equal(pairq_take_first(&q, 3, out), 3);
	for (int i = 0; i < 3; i++)
		check_item(&out[i], i);
	assert_int_equal(q.len, 7);
	for (int i = 0; i < 7; i++)
		check_item(&q.v[i], i + 3);
	/* pushes after a take go behind what is left */
	push(&q, 2, 10);
	assert_int_equal(pairq_take_first(&q, 64, out), 8);
	for (int i = 0; i < 8; i++)
		check_item(&out[i], i + 3);
	assert_int_equal(q.len, 0);
	assert_int_equal(pairq_take_first(&q, 64, out), 0);
	free(q.v);
}

/* Bounce-all takes the queue in chunks of 64 (router/backend.c) or whole
 * (flush): every item comes out once, in order, and the queue is empty. */
static void test_bounce_all_in_chunks_and_whole(void **st)
{
	(void)st;
	make_bufs();
	struct pairq q = {0};
	for (int i = 0; i < NB; i++)
		push(&q, 16, i);
	struct pq_item out[64];
	int seen = 0;
	uint32_t m;
	while ((m = pairq_take_first(&q, 64, out)) > 0) {
		assert_true(m == 64 || seen + (int)m == NB);
		for (uint32_t k = 0; k < m; k++)
			check_item(&out[k], seen++);
	}
	assert_int_equal(seen, NB);
	assert_int_equal(q.len, 0);

	for (int i = 0; i < 5; i++)
		push(&q, 16, i);
	struct pairq t = pairq_take(&q);
	assert_null(q.v);
	assert_int_equal(q.len, 0);
	assert_int_equal(q.cap, 0);
	assert_int_equal(t.len, 5);
	for (int i = 0; i < 5; i++)
		check_item(&t.v[i], i);
	free(t.v);
}

/* A pair moving to a link of its own keeps its stanzas' order behind what
 * that link's pair already held. */
static void test_move_appends_in_order(void **st)
{
	(void)st;
	make_bufs();
	struct pairq a = {0}, b = {0};
	for (int i = 0; i < 3; i++)
		push(&a, 16, i);
	for (int i = 3; i < 40; i++)
		push(&b, 2, i);
	pairq_move(&a, 16, &b);
	assert_null(b.v);
	assert_int_equal(b.len, 0);
	assert_int_equal(a.len, 40);
	assert_int_equal(a.cap, 64);
	for (int i = 0; i < 40; i++)
		check_item(&a.v[i], i);
	struct pairq e = {0};
	pairq_move(&e, 16, &a); /* into an empty queue */
	assert_int_equal(e.len, 40);
	assert_int_equal(e.cap, 64);
	for (int i = 0; i < 40; i++)
		check_item(&e.v[i], i);
	free(e.v);
}

/* Below link_queue_max a stanza is taken; from there up to 16 times that
 * it is taken too (its source paused: none here); past it, refused. */
static void test_admission_thresholds(void **st)
{
	(void)st;
	static struct cfg c;
	static struct met_worker m;
	memset(&c, 0, sizeof(c));
	memset(&m, 0, sizeof(m));
	c.link_queue_max = 10;
	hub_cfg_live = &c;
	struct hubw h = {.m = &m};
	struct pq_held held = {0};
	struct net_ref none = {.worker = FLOW_NO_SRC};
	assert_true(pairq_admit(&h, &held, 0, none));
	assert_true(pairq_admit(&h, &held, 9, none));
	assert_int_equal(m.flow_waited, 0);
	assert_true(pairq_admit(&h, &held, 10, none));
	assert_true(pairq_admit(&h, &held, 159, none));
	assert_int_equal(m.flow_waited, 2);
	assert_int_equal(m.send_queue_full, 0);
	assert_false(pairq_admit(&h, &held, 160, none));
	assert_int_equal(m.send_queue_full, 1);
	assert_int_equal(held.n, 0);
	pairq_release(&h, &held, 0, true); /* nothing held: nothing to do */
	hub_cfg_live = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_growth_from_first_capacity),
		cmocka_unit_test(test_take_first_keeps_order),
		cmocka_unit_test(test_bounce_all_in_chunks_and_whole),
		cmocka_unit_test(test_move_appends_in_order),
		cmocka_unit_test(test_admission_thresholds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
