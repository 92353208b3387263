/* tests/unit/test_clu.c — one remote domain's lease as a node sees it
 * (router/clu_lease.c): acquisition, renewal, self-fencing, loss,
 * takeover. The clock is passed in: every case is a sequence of times, so
 * nothing here waits or depends on the machine's speed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "router/clu-int.h"

#define LEASE 5000 /* ms: margin 1000 */

static struct clu_lease fresh(void)
{
	struct clu_lease l;
	memset(&l, 0, sizeof(l));
	l.worker = 0;
	l.owner = -1;
	return l;
}

static void test_margin_is_a_fifth_of_the_lease_at_least_500ms(void **st)
{
	(void)st;
	assert_int_equal(clu_margin_ms(5000), 1000);
	assert_int_equal(clu_margin_ms(60000), 12000);
	assert_int_equal(clu_margin_ms(2000), 500);
	assert_int_equal(clu_margin_ms(1000), 500);
}

static void test_a_new_lease_is_due_at_once_and_waits_meanwhile(void **st)
{
	(void)st;
	struct clu_lease l = fresh();
	int owner;
	uint64_t token;
	assert_true(clu_ls_due(&l, 0));
	assert_int_equal(clu_ls_view(&l, 0, &owner, &token), CLU_LEASE_WAIT);
	l.inflight = true;
	assert_false(clu_ls_due(&l, 0)); /* one acquire at a time */
	l.inflight = false;
	l.worker = -1;
	assert_false(clu_ls_due(&l, 0)); /* nobody wants it */
}

/* The deadline counts from when the command was SENT, not answered: Redis
 * set the expiry after that moment, so we stop before it can expire. */
static void test_acquired_lease_usable_until_lease_minus_margin_from_the_send(void **st)
{
	(void)st;
	struct clu_lease l = fresh();
	int owner;
	uint64_t token;
	clu_ls_acquired(&l, 10000, 7, LEASE); /* answered much later: same deadline */
	assert_true(clu_ls_usable(&l, 10000));
	assert_true(clu_ls_usable(&l, 13999));
	assert_false(clu_ls_usable(&l, 14000));
	assert_int_equal(clu_ls_view(&l, 13999, &owner, &token), CLU_LEASE_OURS);
	assert_int_equal(token, 7);
	assert_int_equal(clu_ls_view(&l, 14000, &owner, &token), CLU_LEASE_WAIT);
	assert_false(clu_ls_due(&l, 20000)); /* fenced, still ours: renewals decide */
}

static void test_renewal_extends_from_its_own_send_time(void **st)
{
	(void)st;
	struct clu_lease l = fresh();
	clu_ls_acquired(&l, 0, 1, LEASE);
	/* sent at 1666, answered at 3900 (slow Redis): deadline 1666 + 4000 */
	assert_false(clu_ls_renewed(&l, 1666, true, 3900, LEASE));
	assert_true(clu_ls_usable(&l, 5665));
	assert_false(clu_ls_usable(&l, 5666));
	/* an older renewal answered late never shortens it */
	assert_false(clu_ls_renewed(&l, 500, true, 5000, LEASE));
	assert_true(clu_ls_usable(&l, 5665));
}

/* Redis unreachable: renewals time out (no answer, no call); the lease is
 * given up at the deadline of the last renewal that succeeded. */
static void test_unanswered_renewals_self_fence_at_the_last_success(void **st)
{
	(void)st;
	struct clu_lease l = fresh();
	clu_ls_acquired(&l, 0, 3, LEASE);
	clu_ls_renewed(&l, 1666, true, 1667, LEASE); /* the last answer */
	/* renewals sent at 3333, 5000, 6666 are never answered */
	for (uint64_t t = 1667; t < 5666; t += 100)
		assert_true(clu_ls_usable(&l, t));
	assert_false(clu_ls_usable(&l, 5666));
	assert_false(clu_ls_usable(&l, 7000));
	/* Redis answers again: the lease is still ours there, usable again */
	clu_ls_renewed(&l, 7500, true, 7501, LEASE);
	assert_true(clu_ls_usable(&l, 7501));
	assert_false(clu_ls_usable(&l, 11500));
}

/* The key is gone (expired, or Redis restarted empty) or holds another
 * value: lost, and due for a new acquisition at once. */
static void test_refused_renewal_loses_the_lease(void **st)
{
	(void)st;
	struct clu_lease l = fresh();
	clu_ls_acquired(&l, 0, 4, LEASE);
	assert_true(clu_ls_renewed(&l, 1666, false, 1667, LEASE));
	assert_false(clu_ls_usable(&l, 1667));
	assert_int_equal(l.st, LS_NONE);
	assert_true(clu_ls_due(&l, 1667));
	/* a second refusal of a lease no longer ours changes nothing */
	assert_false(clu_ls_renewed(&l, 1700, false, 1701, LEASE));
}

static void test_held_by_a_live_owner_forwards_there(void **st)
{
	(void)st;
	struct clu_lease l = fresh();
	int owner;
	uint64_t token;
	clu_ls_held(&l, 2, true, 9, 4000, 1000, LEASE);
	assert_int_equal(clu_ls_view(&l, 1000, &owner, &token), CLU_LEASE_OTHER);
	assert_int_equal(owner, 2);
	assert_int_equal(token, 9);
	/* a live owner renews: no polling of its lease meanwhile */
	assert_false(clu_ls_due(&l, 1000 + LEASE));
}

/* The owner's node key is gone: wait (nobody to forward to) and try again
 * when its lease would lapse unrenewed. */
static void test_held_by_a_dead_owner_is_tried_when_it_lapses(void **st)
{
	(void)st;
	struct clu_lease l = fresh();
	int owner;
	uint64_t token;
	clu_ls_held(&l, 2, false, 9, 1200, 1000, LEASE);
	assert_int_equal(clu_ls_view(&l, 1000, &owner, &token), CLU_LEASE_WAIT);
	assert_false(clu_ls_due(&l, 2200));
	assert_true(clu_ls_due(&l, 2220));
	/* then we get it, with a newer token */
	clu_ls_acquired(&l, 2220, 10, LEASE);
	assert_int_equal(clu_ls_view(&l, 2221, &owner, &token), CLU_LEASE_OURS);
	assert_int_equal(token, 10);
	assert_int_equal(l.max_token, 10);
}

static void test_announcements_follow_the_newest_token(void **st)
{
	(void)st;
	struct clu_lease l = fresh();
	int owner;
	uint64_t token;
	clu_ls_acquired(&l, 0, 5, LEASE);
	/* an announcement older than ours (it crossed our acquisition) */
	assert_false(clu_ls_announced(&l, 1, 4, 10));
	assert_int_equal(clu_ls_view(&l, 10, &owner, &token), CLU_LEASE_OURS);
	/* a newer one: someone acquired it after ours lapsed */
	assert_true(clu_ls_announced(&l, 1, 6, 20));
	assert_int_equal(clu_ls_view(&l, 20, &owner, &token), CLU_LEASE_OTHER);
	assert_int_equal(owner, 1);
	assert_int_equal(token, 6);
	/* repeated, or late: nothing changes */
	assert_false(clu_ls_announced(&l, 1, 6, 30));
	assert_false(clu_ls_announced(&l, 3, 5, 30));
	assert_int_equal(l.max_token, 6);
}

static void test_vacated_is_due_now_unless_ours(void **st)
{
	(void)st;
	struct clu_lease l = fresh();
	clu_ls_held(&l, 1, true, 3, 4000, 0, LEASE);
	assert_false(clu_ls_due(&l, 100));
	clu_ls_vacated(&l, 100);
	assert_true(clu_ls_due(&l, 100));
	struct clu_lease m = fresh();
	clu_ls_acquired(&m, 0, 1, LEASE);
	clu_ls_vacated(&m, 100); /* a release event of someone else's: ours stays */
	assert_true(clu_ls_usable(&m, 100));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_margin_is_a_fifth_of_the_lease_at_least_500ms),
		cmocka_unit_test(test_a_new_lease_is_due_at_once_and_waits_meanwhile),
		cmocka_unit_test(test_acquired_lease_usable_until_lease_minus_margin_from_the_send),
		cmocka_unit_test(test_renewal_extends_from_its_own_send_time),
		cmocka_unit_test(test_unanswered_renewals_self_fence_at_the_last_success),
		cmocka_unit_test(test_refused_renewal_loses_the_lease),
		cmocka_unit_test(test_held_by_a_live_owner_forwards_there),
		cmocka_unit_test(test_held_by_a_dead_owner_is_tried_when_it_lapses),
		cmocka_unit_test(test_announcements_follow_the_newest_token),
		cmocka_unit_test(test_vacated_is_due_now_unless_ours),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
