/*
 * router/nl_static.c — TEMPORARY: a fixed cluster directory for node links
 * while the Redis registry (router/clu.c) is not there yet. Read once at
 * start from the environment variable FEDHUB_NODELINK_STATIC, words
 * separated by spaces:
 *   self=ID secret=TEXT listen=HOST:PORT node=ID,HOST:PORT comp=DOMAIN,ID
 * (node and comp repeatable). Not a configuration directive: it goes away
 * once clu.c publishes the directory, component placement and the secret.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/nl_static.h"
#include "router/cfg.h"
#include "net/log.h"

#define NLS_MAX_COMP 16
static struct {
	bool on;
	char self[CLU_ID_MAX];
	char secret[256];
	struct cfg_addr listen;
	struct clu_node nodes[CLU_MAX_NODES];
	int nnodes;
	struct {
		char domain[CFG_NAME_MAX];
		int idx;
	} comp[NLS_MAX_COMP];
	int ncomp;
} nls;

int nls_init(void)
{
	const char *env = getenv("FEDHUB_NODELINK_STATIC");
	if (!env || !*env)
		return 0;
	char *dup = strdup(env), *save = NULL;
	if (!dup)
		return -1;
	int bad = 0;
	for (char *w = strtok_r(dup, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '='), *comma;
		if (!eq) {
			bad++;
			continue;
		}
		*eq++ = 0;
		if (!strcmp(w, "self")) {
			snprintf(nls.self, sizeof(nls.self), "%s", eq);
		} else if (!strcmp(w, "secret")) {
			snprintf(nls.secret, sizeof(nls.secret), "%s", eq);
		} else if (!strcmp(w, "listen")) {
			bad += cfg_parse_addr(eq, &nls.listen, 0) < 0;
		} else if (!strcmp(w, "node") && (comma = strchr(eq, ',')) && nls.nnodes < CLU_MAX_NODES) {
			*comma++ = 0;
			struct cfg_addr a;
			if (cfg_parse_addr(comma, &a, 0) < 0) {
				bad++;
				continue;
			}
			struct clu_node *n = &nls.nodes[nls.nnodes++];
			snprintf(n->id, sizeof(n->id), "%s", eq);
			memcpy(&n->addr, &a.ss, a.len);
			n->alen = a.len;
			n->alive = true;
		} else if (!strcmp(w, "comp") && (comma = strchr(eq, ',')) && nls.ncomp < NLS_MAX_COMP) {
			*comma++ = 0;
			snprintf(nls.comp[nls.ncomp].domain, CFG_NAME_MAX, "%s", eq);
			nls.comp[nls.ncomp++].idx = -1;
			for (int i = 0; i < nls.nnodes; i++)
				if (!strcmp(nls.nodes[i].id, comma))
					nls.comp[nls.ncomp - 1].idx = i;
			bad += nls.comp[nls.ncomp - 1].idx < 0;
		} else {
			bad++;
		}
	}
	free(dup);
	if (bad || !nls.self[0] || !nls.secret[0]) {
		log_error(0, "FEDHUB_NODELINK_STATIC: %d bad words, self and secret required", bad);
		return -1;
	}
	nls.on = true;
	log_warn(0, "node links: static directory from FEDHUB_NODELINK_STATIC (%d nodes), not Redis", nls.nnodes);
	return 0;
}

bool nls_on(void)
{
	return nls.on;
}

const char *nls_self_id(void)
{
	return nls.self;
}

const unsigned char *nls_secret(size_t *len)
{
	*len = strlen(nls.secret);
	return (const unsigned char *)nls.secret;
}

const struct cfg_addr *nls_listen(void)
{
	return nls.listen.len ? &nls.listen : NULL;
}

bool nls_node_get(int idx, struct clu_node *out)
{
	if (idx < 0 || idx >= nls.nnodes)
		return false;
	*out = nls.nodes[idx];
	return true;
}

int nls_comp_nodes(const char *domain, int *idx, int max)
{
	int k = 0;
	for (int i = 0; i < nls.ncomp; i++)
		if (!strcmp(nls.comp[i].domain, domain)) {
			if (k < max)
				idx[k] = nls.comp[i].idx;
			k++;
		}
	return k;
}
