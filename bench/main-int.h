/*
 * bench/main-int.h — what bench/main.c (the command line, reports) and
 * bench/compare.c (compare mode) share. Not an API: the rest of the bench
 * uses bench/bench.h.
 */
#ifndef FEDHUB_BENCH_MAIN_INT_H
#define FEDHUB_BENCH_MAIN_INT_H

#include <stdbool.h>
#include <netinet/in.h>
#include "bench/bench.h"

/* One row of a report: a target (at one rate) and its result. */
struct bm_named {
	char name[32];
	struct bench_result r;
	bool ran;
	char skipped[256];
};

/* The command line: the engine's options and what only main.c and
 * compare.c look at. */
struct bm_args {
	struct bench_opts o;
	bool compare;
	bool links_given;
	const char *json, *targets, *peers_arg, *target_cpus, *tls_dir;
	char target_name[32];
};

const char *bm_scenario_name(enum bench_scenario s);
int bm_parse_addr(const char *s, struct sockaddr_in *sa);
void bm_tls_dir(struct bench_opts *o, const char *dir);
double bm_rate(const struct bench_result *r);
double bm_cpu_us(const struct bench_result *r);
int bm_write_json(const char *path, const struct bench_opts *o, struct bm_named *t, int nt, const char *cmdline);
/* compare.c: the whole of compare mode; the exit status. */
int bm_compare(const struct bm_args *a, const char *cmdline);

#endif
