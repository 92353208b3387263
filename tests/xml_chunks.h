/*
 * tests/xml_chunks.h — what the tokenizer's chunked-feeding harnesses share
 * (tests/unit/xml_feeder.h, tests/fuzz/fuzz_xml.c, tests/fuzz/fuzz_diff.c):
 * the input document, with or without a stream header before the bytes
 * under test, and the receive buffer that grows by one chunk at a time.
 *
 * Header-only (static functions): each test program includes it once.
 */
#ifndef FEDHUB_TESTS_XML_CHUNKS_H
#define FEDHUB_TESTS_XML_CHUNKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* doc = the header hdr (when with_hdr) then the n bytes of data; doc holds
 * strlen(hdr) + n bytes. Returns the document's length. */
static inline size_t xc_document(char *doc, bool with_hdr, const char *hdr, const uint8_t *data, size_t n)
{
	size_t h = with_hdr ? strlen(hdr) : 0;
	memcpy(doc, hdr, h);
	memcpy(doc + h, data, n);
	return h + n;
}

/* The have bytes kept from buf, then the next c bytes of src, in a new
 * buffer (buf is freed): the kept bytes move, as a connection's may. NULL
 * when out of memory (buf is freed all the same). */
static inline char *xc_append(char *buf, size_t have, const char *src, size_t c)
{
	char *nb = malloc(have + c + 1);
	if (nb) {
		if (have)
			memcpy(nb, buf, have);
		memcpy(nb + have, src, c);
	}
	free(buf);
	return nb;
}

#endif
