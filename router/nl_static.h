/*
 * router/nl_static.h — TEMPORARY fixed cluster directory for node links
 * (router/nl_static.c), until router/clu.c publishes the real one.
 */
#ifndef FEDHUB_NL_STATIC_H
#define FEDHUB_NL_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include "router/clu.h"

struct cfg_addr;
int nls_init(void); /* 0 (also when unset) or -1 */
bool nls_on(void);
const char *nls_self_id(void);
const unsigned char *nls_secret(size_t *len);
const struct cfg_addr *nls_listen(void);
bool nls_node_get(int idx, struct clu_node *out);
int nls_comp_nodes(const char *domain, int *idx, int max);

#endif
