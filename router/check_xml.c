/*
 * router/check_xml.c — `fedhub --check-xml FILE`: the file reading and the
 * report around the tokenizer, which itself does no I/O. The stream is fed
 * as a link feeds it: what an event consumed is dropped from the front,
 * the rest waits for more bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/check_xml.h"
#include "net/alloc.h"

int check_xml_file(const char *path, const struct xml_limits *lim)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		printf("error io at byte 0\n");
		return 1;
	}
	struct xml_tok *t = xmalloc(sizeof *t);
	size_t cap = 1 << 16, have = 0;
	char *buf = xmalloc(cap);
	xml_tok_init(t, lim);
	/* a recorded stream is checked with the authenticated limits */
	t->authenticated = true;
	unsigned long long stanzas = 0;
	bool eof = false, opened = false;
	int rc = 0;
	for (;;) {
		size_t used;
		int ev = xml_tok_next(t, buf, have, &used);
		if (ev == XML_EV_ERROR) {
			printf("error %s at byte %llu\n", xml_err_name(t->err), (unsigned long long)t->err_offset);
			rc = 1;
			break;
		}
		if (ev > 0) {
			if (ev == XML_EV_STANZA)
				stanzas++;
			if (ev == XML_EV_STREAM_OPEN)
				opened = true;
			memmove(buf, buf + used, have - used);
			have -= used;
			continue;
		}
		if (eof) {
			/* ending between stanzas is fine (a capture may stop
			 * before </stream:stream>); inside a token it is not */
			if (have || !opened) {
				printf("error %s at byte %llu\n", xml_err_name(XML_ERR_NOT_WELL_FORMED),
				       (unsigned long long)(t->stream_off + have));
				rc = 1;
			} else {
				printf("ok %llu stanzas\n", stanzas);
			}
			break;
		}
		if (have == cap) {
			/* the tokenizer's limits bound what it keeps pending */
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		size_t n = fread(buf + have, 1, cap - have, f);
		if (n == 0 && ferror(f)) {
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
			printf("error io at byte %llu\n", (unsigned long long)(t->stream_off + have));
			rc = 1;
			break;
		}
		if (n == 0)
			eof = true;
		have += n;
	}
	free(buf);
	free(t);
	if (f != stdin)
		fclose(f);
	return rc;
}
