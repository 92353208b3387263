/*
 * tests/unit/cfg_parse.h — router.conf text through cfg_parse() with its
 * messages captured, for tests/unit/test_cfg.c and test_cfg_inbound.c.
 */
#ifndef FEDHUB_CFG_PARSE_H
#define FEDHUB_CFG_PARSE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "router/cfg.h"

#define HUB "[hub]\nlisten s2s 127.0.0.1:5269\n" /* the smallest valid file: 2 lines */

/* Parse text; *errs receives what was printed (free it). */
static inline int parse(struct cfg *c, const char *text, char **errs)
{
	size_t n;
	FILE *f = open_memstream(errs, &n);
	int r;

	assert_non_null(f);
	r = cfg_parse(c, text, "router.conf", f);
	fclose(f);
	return r;
}

/* Expect exactly one error containing `want` (e.g. "router.conf:3: ..."). */
static inline void expect_one_error(const char *text, const char *want)
{
	struct cfg c;
	char *errs = NULL;
	int r = parse(&c, text, &errs);

	if (r != 1 || !strstr(errs, want))
		print_error("config:\n%s\nwanted 1 error containing \"%s\", got %d:\n%s", text, want, r, errs);
	assert_int_equal(r, 1);
	assert_non_null(strstr(errs, want));
	free(errs);
	cfg_free(&c);
}

static inline void expect_ok(struct cfg *c, const char *text)
{
	char *errs = NULL;
	int r = parse(c, text, &errs);

	if (r != 0)
		print_error("config:\n%s\nunexpected errors:\n%s", text, errs);
	assert_int_equal(r, 0);
	free(errs);
}

#endif
