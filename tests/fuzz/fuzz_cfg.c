/*
 * tests/fuzz/fuzz_cfg.c — the router.conf parser (router/cfg.c) on
 * arbitrary text (libFuzzer).
 *
 * The input is the file's text (cut at its first NUL, as cfg_parse takes a
 * string). Errors are fine; crashes, leaks, reads past the text and loops
 * are not (libFuzzer's -timeout catches the last). Each error must be one
 * line "fuzz.conf:LINE: message" or "fuzz.conf: message" and their number
 * the return value. A configuration that parses must hold what the parser
 * promises the daemon: a listener, normalised names, consistent limits, a
 * dialback secret.
 *
 * The parser opens the files a configuration names. The seeds name files
 * in FIXTURES, made at start-up (a certificate and key placeholder, a good
 * and a short dialback secret), so the paths that accept files are reached
 * too; other paths simply do not exist or are system files read, not written.
 *
 * Seeds: tests/fuzz/corpus/cfg/ (the shipped router.conf, the built-in
 * default, and small files for each section and directive). Run: make fuzz
 * && build/fuzz/fuzz_cfg -max_len=4096 -max_total_time=300 <a copy of that directory>
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "router/cfg.h"
#include "xml/xml.h"

#define FIXTURES "/tmp/fedhub-fuzz-cfg"

static void must(bool ok)
{
	if (!ok)
		abort();
}

static void fixture(const char *name, const char *text)
{
	char path[128], tmp[160];
	snprintf(path, sizeof(path), FIXTURES "/%s", name);
	snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "w");
	must(f && fputs(text, f) >= 0 && fclose(f) == 0);
	must(rename(tmp, path) == 0); /* parallel runs share the directory */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	mkdir(FIXTURES, 0700);
	fixture("cert.pem", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
	fixture("key.pem", "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n");
	fixture("dialback.key", "0123456789abcdef0123456789abcdef\n");
	fixture("short.key", "short\n");
	return 0;
}

static bool normalised(const char *name)
{
	char out[CFG_NAME_MAX];
	return cfg_domain_normalise(name, strlen(name), out, sizeof(out)) >= 0 && strcmp(out, name) == 0;
}

static void check_ok(const struct cfg *c)
{
	must(c->nlisten >= 1 && c->nlisten <= 16);
	must(normalised(c->hub_domain));
	for (int i = 0; i < c->ndomains; i++)
		must(normalised(c->domains[i].name));
	for (int i = 0; i < c->ncomponents; i++)
		must(normalised(c->components[i].name) && c->components[i].secret[0]);
	for (int i = 0; i < c->nroutes; i++)
		must(c->routes[i].nconnect >= 1 && c->routes[i].nconnect <= 8);
	must(c->max_stanza_size_preauth <= c->max_stanza_size);
	must(c->dns_ttl_min <= c->dns_ttl_max);
	must(c->max_depth >= 1 && c->max_depth <= XML_MAX_DEPTH);
	must(c->dialback_secret[0] != 0);
	must(c->log_level >= 0 && c->log_level <= 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), *errs = NULL;
	size_t errn = 0;
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	FILE *err = open_memstream(&errs, &errn);
	must(err != NULL);

	struct cfg c;
	int r = cfg_parse(&c, text, "fuzz.conf", err);
	must(fclose(err) == 0);
	must(r >= 0);
	if (r == 0)
		check_ok(&c);
	cfg_free(&c);

	int lines = 0;
	for (char *p = errs; p && *p; lines++) {
		must(strncmp(p, "fuzz.conf:", 10) == 0);
		char *nl = strchr(p, '\n');
		must(nl != NULL);
		p = nl + 1;
	}
	must(lines == r);
	free(errs);
	free(text);
	return 0;
}
