/*
 * tests/unit/test_timer.c — the worker's timer wheel (net/timer.c), on a
 * worker struct with a clock the test moves: each deadline fires once, in
 * the first tick at or after it, also beyond the wheel's span; a deadline
 * moved later, moved earlier or cleared; a timer that files itself again;
 * a connection freed while filed; the release of an idle send ring.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/worker-int.h"

enum { N = 1000 };
static struct net_worker *w;
static struct net_conn conns[N];
static uint64_t fired_at[N];
static int fired[N];
static uint64_t period; /* on_timer files the connection again this far on */

static void on_timer(struct net_conn *c)
{
	size_t i = (size_t)(c - conns);
	fired[i]++;
	fired_at[i] = w->now;
	if (period)
		net_conn_set_deadline(c, w->now + period);
}

static const struct net_conn_ops ops = {.on_timer = on_timer};

static int setup(void **st)
{
	(void)st;
	w = calloc(1, sizeof(*w));
	w->now = 1000000;
	memset(conns, 0, sizeof(conns));
	memset(fired, 0, sizeof(fired));
	period = 0;
	for (int i = 0; i < N; i++) {
		conns[i].w = w;
		conns[i].flags = NET_F_OPEN;
		conns[i].ops = &ops;
		conns[i].last_rx = w->now;
	}
	nw_timers_run(w);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	free(w);
	return 0;
}

static void run_until(uint64_t t)
{
	while (w->now < t) {
		w->now += TICK_MS;
		nw_timers_run(w);
	}
}

static void test_each_fires_once_in_its_tick(void **st)
{
	(void)st;
	uint64_t t0 = w->now;
	for (int i = 0; i < N; i++) /* 0 .. 150 s: up to three rounds of the wheel */
		net_conn_set_deadline(&conns[i], t0 + 1 + (uint64_t)i * 150 + (uint64_t)(i % 7));
	run_until(t0 + 160000);
	for (int i = 0; i < N; i++) {
		uint64_t d = t0 + 1 + (uint64_t)i * 150 + (uint64_t)(i % 7);
		assert_int_equal(fired[i], 1);
		assert_true(fired_at[i] >= d);
		assert_true(fired_at[i] < d + TICK_MS);
		assert_int_equal(conns[i].deadline, 0);
		assert_int_equal(conns[i].tw_at, 0); /* nothing left filed */
	}
}

static void test_moved_later_earlier_cleared(void **st)
{
	(void)st;
	uint64_t t0 = w->now;
	net_conn_set_deadline(&conns[0], t0 + 1000);
	net_conn_set_deadline(&conns[0], t0 + 70000); /* later, past the span */
	net_conn_set_deadline(&conns[1], t0 + 60000);
	net_conn_set_deadline(&conns[1], t0 + 500); /* earlier */
	net_conn_set_deadline(&conns[2], t0 + 800);
	net_conn_set_deadline(&conns[2], 0); /* cleared */
	run_until(t0 + 69900);
	assert_int_equal(fired[0], 0);
	assert_int_equal(fired[1], 1);
	assert_true(fired_at[1] >= t0 + 500 && fired_at[1] < t0 + 600);
	assert_int_equal(fired[2], 0);
	run_until(t0 + 80000);
	assert_int_equal(fired[0], 1);
	assert_true(fired_at[0] >= t0 + 70000 && fired_at[0] < t0 + 70100);
	assert_int_equal(fired[1], 1);
	assert_int_equal(fired[2], 0);
}

static void test_periodic_and_late_ticks(void **st)
{
	(void)st;
	period = 1000;
	uint64_t t0 = w->now;
	net_conn_set_deadline(&conns[5], t0 + 1000);
	run_until(t0 + 10050);
	assert_int_equal(fired[5], 10);
	/* the loop was away for 3 s: what was due fires at the next run, once */
	w->now += 3000;
	nw_timers_run(w);
	assert_int_equal(fired[5], 11);
	assert_int_equal(fired_at[5], w->now);
}

static void test_freed_while_filed(void **st)
{
	(void)st;
	uint64_t t0 = w->now;
	for (int i = 0; i < 10; i++) /* one slot's list */
		net_conn_set_deadline(&conns[i], t0 + 500);
	conns[4].flags |= NET_F_CLOSED;
	nw_timer_unlink(&conns[4]); /* as nw_conn_maybe_free does */
	conns[0].flags |= NET_F_CLOSED; /* closed, not freed yet: skipped */
	run_until(t0 + 1000);
	for (int i = 0; i < 10; i++)
		assert_int_equal(fired[i], i == 4 || i == 0 ? 0 : 1);
	assert_int_equal(conns[4].tw_at, 0);
	assert_int_equal(conns[0].tw_at, 0);
}

static void test_idle_send_ring_released(void **st)
{
	(void)st;
	struct net_conn *c = &conns[7];
	c->oq = malloc(4 * sizeof(*c->oq));
	c->oq_cap = 4;
	c->last_rx = w->now;
	nw_timer_rearm(c); /* as the first allocation does */
	run_until(w->now + IDLE_FREE_MS - TICK_MS);
	assert_non_null(c->oq);
	c->last_rx = w->now; /* input: idle again from here */
	run_until(w->now + IDLE_FREE_MS - TICK_MS);
	assert_non_null(c->oq);
	run_until(w->now + 2 * TICK_MS);
	assert_null(c->oq);
	assert_int_equal(c->oq_cap, 0);
	assert_int_equal(c->tw_at, 0); /* nothing to wait for: not filed */
	assert_int_equal(fired[7], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_each_fires_once_in_its_tick, setup, teardown),
		cmocka_unit_test_setup_teardown(test_moved_later_earlier_cleared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_periodic_and_late_ticks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_freed_while_filed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_send_ring_released, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
