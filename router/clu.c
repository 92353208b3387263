/*
 * router/clu.c — the cluster registry (see clu.h). This first version only
 * publishes the interface: no [cluster] section is accepted yet (cfg.c
 * refuses it), so clu_enabled() is false and every lease is "ours".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "router/clu.h"
#include "router/hub.h"

int clu_init(const struct cfg *c)
{
	(void)c;
	return 0;
}
void clu_ctrl_start(void) {}
void clu_ctrl_stop(void) {}
bool clu_on_ctrl_msg(struct net_msg *m)
{
	(void)m;
	return false;
}
bool clu_enabled(void) { return false; }
const char *clu_self_id(void) { return ""; }
int clu_self(void) { return -1; }
int clu_node_count(void) { return 0; }
bool clu_node_get(int idx, struct clu_node *out)
{
	(void)idx;
	(void)out;
	return false;
}
int clu_node_index(const char *id)
{
	(void)id;
	return -1;
}
void clu_lease_msg_free(struct clu_lease_ans *a) { free(a); }
int clu_lease_ask(struct net_worker *self, const char *remote, size_t n) { return -ENOTSUP; }
int clu_lease_release(struct net_worker *self, const char *remote, size_t n) { return 0; }
uint64_t clu_lease_token(const char *remote, size_t n) { return 0; }
bool clu_lease_valid(const char *remote, size_t n) { return true; }
void clu_comp_up(struct net_worker *self, const char *domain) {}
void clu_comp_down(struct net_worker *self, const char *domain) {}
int clu_comp_nodes(const char *domain, int *idx, int max) { return 0; }
enum clu_redis_state clu_redis_state(void) { return CLU_REDIS_OFF; }
const char *clu_dialback_key(void) { return hub_dialback_key; }
size_t clu_ticket_keys(unsigned char *out, size_t cap, uint64_t *gen)
{
	if (gen)
		*gen = 0;
	return 0;
}
const unsigned char *clu_secret(size_t *len)
{
	if (len)
		*len = 0;
	return NULL;
}
uint64_t clu_nodes_gen(void) { return 0; }
