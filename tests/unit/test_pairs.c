/*
 * tests/unit/test_pairs.c — the tables that keep a per-stanza or per-link
 * lookup constant as domains and links grow: the hash index of router/pix.h
 * (forced collisions, growth past the linear threshold, deletion with
 * backward shift), a session's (remote, local) pairs (router/pairs.c), a
 * worker's outbound link table (router/s2s_links.c) and the [route],
 * [component] and [domain] indexes built at configuration load
 * (router/cfg.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "router/s2s-t.h"
#include "router/pix.h"

/* ---- pix over a plain array of keys, with a hash the test chooses ---- */

struct arr {
	uint32_t key[4096];
	uint32_t hash[4096];
	uint32_t n;
	struct pix x;
};

struct probe {
	const struct arr *a;
	uint32_t key;
};

static bool arr_eq(const void *ctx, uint32_t i, uint32_t h)
{
	const struct probe *p = ctx;
	return p->a->hash[i] == h && p->a->key[i] == p->key;
}

static uint32_t arr_hash_at(const void *ctx, uint32_t i)
{
	const struct probe *p = ctx;
	return p->a->hash[i];
}

static int64_t arr_find(const struct arr *a, uint32_t key, uint32_t h)
{
	struct probe p = {a, key};
	return pix_find(&a->x, a->n, h, arr_eq, &p);
}

static void arr_add(struct arr *a, uint32_t key, uint32_t h)
{
	struct probe p = {a, key};
	a->key[a->n] = key;
	a->hash[a->n] = h;
	pix_added(&a->x, a->n, h, arr_hash_at, &p);
	a->n++;
}

static void arr_del(struct arr *a, uint32_t i)
{
	struct probe p = {a, 0};
	pix_removing(&a->x, a->n, i, a->hash[i], arr_hash_at, &p);
	a->key[i] = a->key[a->n - 1];
	a->hash[i] = a->hash[a->n - 1];
	a->n--;
}

static uint32_t hash_const(uint32_t k)
{
	(void)k;
	return 7; /* every key collides */
}

static uint32_t hash_few(uint32_t k)
{
	return k % 5; /* long runs that overlap */
}

static uint32_t hash_real(uint32_t k)
{
	char s[16];
	int n = snprintf(s, sizeof(s), "d%u.example", k);
	return pix_hash1(s, (size_t)n);
}

static uint32_t hash_wrap(uint32_t k)
{
	return 31 - (k % 2);
}

static void check_all(const struct arr *a, uint32_t (*hf)(uint32_t))
{
	for (uint32_t i = 0; i < a->n; i++)
		assert_int_equal(arr_find(a, a->key[i], hf(a->key[i])), i);
}

static void test_pix_small_has_no_table(void **state)
{
	(void)state;
	static struct arr a;
	memset(&a, 0, sizeof(a));
	for (uint32_t k = 0; k < PIX_LINEAR; k++)
		arr_add(&a, k, hash_real(k));
	assert_int_equal(a.x.cap, 0);
	assert_null(a.x.slot);
	check_all(&a, hash_real);
	assert_int_equal(arr_find(&a, 999, hash_real(999)), -1);
	arr_add(&a, PIX_LINEAR, hash_real(PIX_LINEAR));
	assert_true(a.x.cap >= 2 * a.n);
	check_all(&a, hash_real);
	pix_free(&a.x);
}

static void run_grow_and_delete(uint32_t (*hf)(uint32_t), uint32_t n)
{
	static struct arr a;
	memset(&a, 0, sizeof(a));
	for (uint32_t k = 0; k < n; k++) {
		assert_int_equal(arr_find(&a, k, hf(k)), -1);
		arr_add(&a, k, hf(k));
		assert_true(a.x.cap == 0 || a.x.cap >= 2 * a.n);
	}
	check_all(&a, hf);
	assert_int_equal(arr_find(&a, n + 1, hf(n + 1)), -1);
	/* delete every third entry, from the middle of runs and from their ends */
	for (uint32_t i = 0; i < a.n; i += 2) {
		uint32_t gone = a.key[i];
		arr_del(&a, i);
		assert_int_equal(arr_find(&a, gone, hf(gone)), -1);
		check_all(&a, hf);
	}
	/* and add them back: the holes left no tombstones to trip over */
	uint32_t before = a.n;
	for (uint32_t k = n; k < n + 50; k++)
		arr_add(&a, k, hf(k));
	assert_int_equal(a.n, before + 50);
	check_all(&a, hf);
	while (a.n)
		arr_del(&a, a.n / 2);
	for (uint32_t k = 0; k < n + 50; k++)
		assert_int_equal(arr_find(&a, k, hf(k)), -1);
	pix_free(&a.x);
}

static void test_pix_all_collide(void **state)
{
	(void)state;
	run_grow_and_delete(hash_const, 200);
}

static void test_pix_overlapping_runs(void **state)
{
	(void)state;
	run_grow_and_delete(hash_few, 300);
}

static void test_pix_grows_to_thousands(void **state)
{
	(void)state;
	run_grow_and_delete(hash_real, 3000);
}

static void test_pix_wraps_around_the_table_end(void **state)
{
	(void)state;
	static struct arr a;
	memset(&a, 0, sizeof(a));
	/* hashes at the last slots of a 32-slot table: runs wrap to slot 0 */
	for (uint32_t k = 0; k < 12; k++)
		arr_add(&a, k, hash_wrap(k));
	assert_int_equal(a.x.cap, 32);
	check_all(&a, hash_wrap);
	for (uint32_t i = 0; i < 12; i += 3) {
		arr_del(&a, 0);
		check_all(&a, hash_wrap);
	}
	pix_free(&a.x);
}

/* ---- a session's pairs ---- */

static void test_pairs_find_after_growth(void **state)
{
	(void)state;
	struct sess *s = calloc(1, sizeof(*s));
	char r[64], l[64];
	for (int i = 0; i < 1000; i++) {
		snprintf(r, sizeof(r), "remote%d.example", i % 10);
		snprintf(l, sizeof(l), "local%d.example", i);
		struct pair *p = pair_add(s, r, l);
		assert_non_null(p);
		p->state = (uint8_t)(i % 3 == 0 ? PAIR_VALID : PAIR_PENDING);
	}
	assert_int_equal(s->npairs, 1000);
	assert_true(s->pix.cap >= 2000);
	for (int i = 0; i < 1000; i++) {
		snprintf(r, sizeof(r), "remote%d.example", i % 10);
		snprintf(l, sizeof(l), "local%d.example", i);
		struct pair *p = pair_find(s, r, l);
		assert_non_null(p);
		assert_string_equal(p->remote, r);
		assert_string_equal(p->local, l);
		assert_int_equal(p->state, i % 3 == 0 ? PAIR_VALID : PAIR_PENDING);
		/* the same local domain from another remote is another pair */
		snprintf(r, sizeof(r), "remote%d.example", (i + 1) % 10);
		assert_null(pair_find(s, r, l));
	}
	/* adding an existing pair finds it */
	assert_ptr_equal(pair_add(s, "remote3.example", "local3.example"),
			 pair_find(s, "remote3.example", "local3.example"));
	assert_int_equal(s->npairs, 1000);
	/* the key is the pair, not the concatenation */
	pair_add(s, "a.b", "c");
	assert_null(pair_find(s, "a", "b.c"));
	pairs_free(s);
	assert_int_equal(s->npairs, 0);
	assert_null(pair_find(s, "a.b", "c"));
	free(s);
}

/* A stream restarted by STARTTLS forgets its pairs (RFC 6120 §5.4.3.3):
 * with more than a handful the index has a table, whose slots must go with
 * them, or a pair claimed again would be looked for among freed ones. */
static void test_pairs_clear_drops_the_index(void **state)
{
	(void)state;
	struct sess *s = calloc(1, sizeof(*s));
	char r[64], l[64];
	for (int i = 0; i < 100; i++) {
		snprintf(l, sizeof(l), "local%d.example", i);
		pair_add(s, "remote.example", l)->state = PAIR_VALID;
	}
	assert_true(s->pix.cap > 0);
	pairs_clear(s);
	assert_int_equal(s->npairs, 0);
	assert_int_equal(s->pix.cap, 0);
	assert_null(pair_find(s, "remote.example", "local7.example"));
	/* claimed again in another order: each found as itself, fresh */
	for (int i = 99; i >= 50; i--) {
		snprintf(l, sizeof(l), "local%d.example", i);
		assert_int_equal(pair_add(s, "remote.example", l)->state, PAIR_NONE);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(r, sizeof(r), "remote.example"); /* as a buffer, like a stanza's */
		snprintf(l, sizeof(l), "local%d.example", i);
		struct pair *p = pair_find(s, r, l);
		if (i < 50) {
			assert_null(p);
			continue;
		}
		assert_non_null(p);
		assert_string_equal(p->remote, r);
		assert_string_equal(p->local, l);
		assert_ptr_equal(p, &s->pairs[99 - i]);
	}
	pairs_free(s);
	free(s);
}

/* The stream's counts of pending and valid pairs follow every pair_set(),
 * and go with the pairs. */
static void test_pairs_counts_follow_pair_set(void **state)
{
	(void)state;
	struct sess *s = calloc(1, sizeof(*s));
	char l[64];
	for (int i = 0; i < 300; i++) {
		snprintf(l, sizeof(l), "local%d.example", i);
		pair_set(s, pair_add(s, "remote.example", l), i % 2 ? PAIR_PENDING : PAIR_NONE);
	}
	assert_int_equal(s->npend, 150);
	assert_int_equal(s->nvalid, 0);
	for (int i = 0; i < 300; i++) {
		snprintf(l, sizeof(l), "local%d.example", i);
		struct pair *p = pair_find(s, "remote.example", l);
		pair_set(s, p, i % 3 == 0 ? PAIR_VALID : i % 3 == 1 ? PAIR_INVALID : p->state);
	}
	int pend = 0, valid = 0;
	for (int i = 0; i < s->npairs; i++) {
		pend += s->pairs[i].state == PAIR_PENDING;
		valid += s->pairs[i].state == PAIR_VALID;
	}
	assert_int_equal(valid, 100);
	assert_int_equal(s->npend, pend);
	assert_int_equal(s->nvalid, valid);
	pair_set(s, &s->pairs[0], PAIR_VALID); /* the same state again counts once */
	assert_int_equal(s->nvalid, valid);
	pairs_clear(s);
	assert_int_equal(s->npend, 0);
	assert_int_equal(s->nvalid, 0);
	pairs_free(s);
	free(s);
}

static void test_pairs_one_pair_stays_small(void **state)
{
	(void)state;
	struct sess *s = calloc(1, sizeof(*s));
	pair_add(s, "remote.example", "local.example");
	assert_int_equal(s->pix.cap, 0);
	assert_non_null(pair_find(s, "remote.example", "local.example"));
	assert_null(pair_find(s, "local.example", "remote.example"));
	pairs_free(s);
	free(s);
}

/* ---- a worker's outbound links ---- */

static struct s2s_out *mk_link(const char *name)
{
	struct s2s_out *L = calloc(1, sizeof(*L));
	L->remote = strdup(name);
	return L;
}

static void free_link(struct s2s_out *L)
{
	free(L->remote);
	free(L);
}

static void test_links_grow_and_delete(void **state)
{
	(void)state;
	struct hubw h;
	memset(&h, 0, sizeof(h));
	enum { N = 20000 };
	static struct s2s_out *all[N];
	char name[64];
	assert_null(s2s_links_find(&h, "nothing.example"));
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "r%d.example", i);
		all[i] = mk_link(name);
		s2s_links_add(&h, all[i]);
		assert_true(h.nlinks <= h.nlinks_cap); /* at most one link per bucket on average */
	}
	assert_int_equal(h.nlinks, N);
	assert_true(h.nlinks_cap >= N);
	assert_int_equal(h.nlinks_cap & (h.nlinks_cap - 1), 0);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "r%d.example", i);
		assert_ptr_equal(s2s_links_find(&h, name), all[i]);
	}
	/* every link is in exactly one chain after the growths */
	uint32_t seen = 0;
	for (uint32_t b = 0; b < h.nlinks_cap; b++)
		for (struct s2s_out *L = h.links[b]; L; L = L->hnext) {
			assert_int_equal(L->hash & (h.nlinks_cap - 1), b);
			seen++;
		}
	assert_int_equal(seen, N);
	/* delete the odd ones, from heads, middles and tails of chains */
	for (int i = 1; i < N; i += 2) {
		assert_true(s2s_links_del(&h, all[i]));
		assert_false(s2s_links_del(&h, all[i]));
	}
	assert_int_equal(h.nlinks, N / 2);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "r%d.example", i);
		assert_ptr_equal(s2s_links_find(&h, name), i % 2 ? NULL : all[i]);
	}
	for (int i = 0; i < N; i++) {
		if (i % 2 == 0)
			assert_true(s2s_links_del(&h, all[i]));
		free_link(all[i]);
	}
	assert_int_equal(h.nlinks, 0);
	s2s_links_free(&h);
}

/* ---- [route] index ---- */

static void test_routes_indexed_at_load(void **state)
{
	(void)state;
	size_t cap = 1 << 20, n = 0;
	char *text = malloc(cap);
	n += (size_t)snprintf(text + n, cap - n, "[hub]\ndomain hub.example\nlisten s2s 127.0.0.1:15269\n");
	for (int i = 0; i < 500; i++)
		n += (size_t)snprintf(text + n, cap - n, "[route r%d.example]\nconnect 127.0.0.%d:%d\n", i, 1 + i % 200,
				      5000 + i);
	struct cfg c;
	int r = cfg_parse(&c, text, "routes.conf", stderr);
	assert_int_equal(r, 0);
	assert_int_equal(c.nroutes, 500);
	assert_true(c.route_ix.cap >= 1000);
	char name[64];
	for (int i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "r%d.example", i);
		const struct cfg_route *rt = cfg_route_find(&c, name);
		assert_non_null(rt);
		assert_string_equal(rt->name, name);
		assert_int_equal(cfg_addr_port(&rt->connect[0]), 5000 + i);
	}
	assert_null(cfg_route_find(&c, "r500.example"));
	assert_null(cfg_route_find(&c, "hub.example"));
	cfg_free(&c);
	free(text);
}

static void test_components_and_domains_indexed_at_load(void **state)
{
	(void)state;
	size_t cap = 1 << 20, n = 0;
	char *text = malloc(cap);
	n += (size_t)snprintf(text + n, cap - n, "[hub]\ndomain hub.example\nlisten s2s 127.0.0.1:15269\n");
	for (int i = 0; i < 300; i++)
		n += (size_t)snprintf(text + n, cap - n, "[component c%d.example]\nsecret s%d\n", i, i);
	for (int i = 0; i < 400; i++)
		n += (size_t)snprintf(text + n, cap - n, "[domain d%d.example]\n", i);
	struct cfg c;
	assert_int_equal(cfg_parse(&c, text, "names.conf", stderr), 0);
	assert_int_equal(c.ncomponents, 300);
	assert_true(c.comp_ix.cap >= 600);
	assert_true(c.dom_ix.cap >= 800);
	char name[64], sec[16];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "c%d.example", i);
		snprintf(sec, sizeof(sec), "s%d", i);
		const struct cfg_component *cc = cfg_component_find(&c, name);
		assert_non_null(cc);
		assert_string_equal(cc->name, name);
		assert_string_equal(cc->secret, sec);
		assert_null(cfg_domain_find(&c, name));
	}
	for (int i = 0; i < 400; i++) {
		snprintf(name, sizeof(name), "d%d.example", i);
		const struct cfg_domain *d = cfg_domain_find(&c, name);
		assert_non_null(d);
		assert_string_equal(d->name, name);
		assert_null(cfg_component_find(&c, name));
	}
	assert_null(cfg_component_find(&c, "c300.example"));
	assert_null(cfg_domain_find(&c, "d400.example"));
	assert_null(cfg_component_find(&c, ""));
	cfg_free(&c);
	/* a handful: scanned, no table */
	assert_int_equal(cfg_parse(&c, "[hub]\ndomain hub.example\nlisten s2s 127.0.0.1:15269\n[component one.example]\nsecret x\n", "one.conf", stderr), 0);
	assert_int_equal(c.comp_ix.cap, 0);
	assert_non_null(cfg_component_find(&c, "one.example"));
	assert_null(cfg_component_find(&c, "two.example"));
	cfg_free(&c);
	free(text);
}

static void test_few_routes_scan(void **state)
{
	(void)state;
	struct cfg c;
	assert_int_equal(cfg_parse(&c,
				   "[hub]\ndomain hub.example\nlisten s2s 127.0.0.1:15269\n[route a.example]\nconnect "
				   "127.0.0.1:1\n",
				   "one.conf", stderr),
			 0);
	assert_int_equal(c.route_ix.cap, 0);
	assert_non_null(cfg_route_find(&c, "a.example"));
	assert_null(cfg_route_find(&c, "b.example"));
	cfg_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pix_small_has_no_table),
		cmocka_unit_test(test_pix_all_collide),
		cmocka_unit_test(test_pix_overlapping_runs),
		cmocka_unit_test(test_pix_grows_to_thousands),
		cmocka_unit_test(test_pix_wraps_around_the_table_end),
		cmocka_unit_test(test_pairs_find_after_growth),
		cmocka_unit_test(test_pairs_clear_drops_the_index),
		cmocka_unit_test(test_pairs_counts_follow_pair_set),
		cmocka_unit_test(test_pairs_one_pair_stays_small),
		cmocka_unit_test(test_links_grow_and_delete),
		cmocka_unit_test(test_routes_indexed_at_load),
		cmocka_unit_test(test_few_routes_scan),
		cmocka_unit_test(test_components_and_domains_indexed_at_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
