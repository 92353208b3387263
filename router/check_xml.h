/*
 * router/check_xml.h — `fedhub --check-xml FILE`: run a recorded stream
 * through the tokenizer, as a link would, and say where it fails.
 */
#ifndef FEDHUB_CHECK_XML_H
#define FEDHUB_CHECK_XML_H

#include "xml/xml.h"

/* Tokenize the stream in FILE ("-" = stdin) with the authenticated limits.
 * Prints "ok N stanzas" or "error CONDITION at byte N"; returns 0 or 1. */
int check_xml_file(const char *path, const struct xml_limits *lim);

#endif
