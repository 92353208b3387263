/*
 * router/clu_reg.c — the registry's side in Redis: keys, scripts, rounds
 * and events, on the control thread.
 *
 * Keys (prefix "fh:"):
 *   fh:node:<id>     "HOST:PORT MAC" (MAC: HMAC-SHA256 of id and address
 *                    under the cluster secret, 32 hex), PX lease_time,
 *                    set every lease_time/3 (the heartbeat);
 *   fh:nodes         SET of node ids (a dead node's id is pruned by the
 *                    others once its node key is gone);
 *   fh:lease:<remote> "<id> <token>", SET NX PX lease_time by the acquire
 *                    script, renewed every lease_time/3 by a script that
 *                    extends only the values that are still ours, in
 *                    batches of RENEW_BATCH keys per command;
 *   fh:token:<remote> the fencing-token counter (INCR per acquisition);
 *   fh:comp:<domain> SET of node ids with a connection for the component;
 *   fh:secret:dialback, fh:secret:tickets  random values, SET NX by the
 *                    first node; the secrets are HMACs of them under the
 *                    cluster secret, so Redis holds nothing usable alone.
 * Channel fh:events: "lease <remote> <id> <token>", "release <remote> <id>",
 * "comp <domain>", "node <id> up|down". Every RESYNC_MS the records we do
 * not own are read back in batches (MGET), which repairs missed events.
 *
 * Redis operations per node at rest: per lease_time/3, one heartbeat
 * script, one SADD, one SADD per local component domain, and one renewal
 * script per RENEW_BATCH leases held; per DIR_MS two directory reads; per
 * COMP_MS one SMEMBERS per component domain; per RESYNC_MS one MGET per
 * RENEW_BATCH remotes forwarded. None of it depends on the stanza rate.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/sha256.h>
#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "router/clu-int.h"
#include "router/hub.h"
#include "router/sess.h"
#include "net/alloc.h"
#include "net/dns.h"
#include "net/log.h"

#define RENEW_BATCH 128
#define SWEEP_MS    50
#define DIR_MS      500
#define COMP_MS     2000
#define RESYNC_MS   3000

#define STAT_INC(f) __atomic_store_n(&clu_g.f, clu_g.f + 1, __ATOMIC_RELAXED)

/* ---- scripts ---------------------------------------------------------------- */

/* KEYS lease, token; ARGV id, px, the highest token we know */
static const char acquire_lua[] =
	"local v = redis.call('GET', KEYS[1]) "
	"if v then return {0, v, redis.call('PTTL', KEYS[1])} end "
	"local t = redis.call('INCR', KEYS[2]) "
	"local m = tonumber(ARGV[3]) "
	"if t <= m then t = m + 1 redis.call('SET', KEYS[2], t) end "
	"redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. t, 'PX', ARGV[2]) "
	"return {1, tostring(t)}";
/* KEYS leases; ARGV px, then the value each must still hold */
static const char renew_lua[] = "local r = {} "
				"for i, k in ipairs(KEYS) do "
				"if redis.call('GET', k) == ARGV[i + 1] then "
				"redis.call('PEXPIRE', k, ARGV[1]) r[i] = 1 else r[i] = 0 end end "
				"return r";
/* KEYS key; ARGV value: DEL only if it is still ours */
static const char release_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
				  "return redis.call('DEL', KEYS[1]) end return 0";
/* KEYS node key; ARGV value, px: ours or free, never another node's */
static const char heartbeat_lua[] = "local v = redis.call('GET', KEYS[1]) "
				    "if v and v ~= ARGV[1] then return 0 end "
				    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";

/* ---- helpers ------------------------------------------------------------------ */

static char node_value[160]; /* "HOST:PORT MAC" */
static uint64_t next_hb, next_dir, next_comp, next_resync, next_sweep;
static bool joined;     /* our node key is set (since the last connect) */
static bool hb_conflict; /* another live node has our id */

char *clu_key(char *buf, size_t cap, const char *kind, const char *name)
{
	snprintf(buf, cap, "%s%s%s", clu_g.prefix, kind, name);
	return buf;
}

void clu_hmac_hex(const char *label, const char *a, const char *b, char *out, size_t nhex)
{
	Hmac h;
	unsigned char mac[WC_SHA256_DIGEST_SIZE];
	char hex[2 * WC_SHA256_DIGEST_SIZE + 1];
	wc_HmacInit(&h, NULL, INVALID_DEVID);
	wc_HmacSetKey(&h, WC_SHA256, clu_g.secret, clu_g.secret_len);
	wc_HmacUpdate(&h, (const byte *)label, (word32)strlen(label));
	wc_HmacUpdate(&h, (const byte *)a, (word32)strlen(a));
	wc_HmacUpdate(&h, (const byte *)" ", 1);
	wc_HmacUpdate(&h, (const byte *)b, (word32)strlen(b));
	wc_HmacFinal(&h, mac);
	wc_HmacFree(&h);
	hex_encode(mac, sizeof(mac), hex);
	snprintf(out, nhex + 1, "%s", hex);
}

static int cmd(clu_reply_fn *fn, void *arg, int argc, const char **argv)
{
	size_t lens[argc];
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return clu_redis_cmd(fn, arg, argc, argv, lens);
}

/* The arguments, up to a NULL, as one command. */
int clu_cmdv(clu_reply_fn *fn, void *arg, ...)
{
	const char *argv[16];
	int argc = 0;
	va_list ap;
	va_start(ap, arg);
	for (const char *a; argc < 16 && (a = va_arg(ap, const char *));)
		argv[argc++] = a;
	va_end(ap);
	return cmd(fn, arg, argc, argv);
}

void clu_ignore_reply(struct redisReply *r, void *arg)
{
	(void)r;
	free(arg);
}

void clu_publish(const char *fmt, ...)
{
	char msg[400], ch[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clu_cmdv(clu_ignore_reply, NULL, "PUBLISH", clu_key(ch, sizeof(ch), "events", ""), msg, NULL);
}

static uint64_t now_ms(void)
{
	return net_now_ms();
}

/* "<id> <token>" of a lease value into its node index and token; false if
 * it is not that shape. */
static bool parse_lease(const char *v, char *id, size_t idcap, uint64_t *token)
{
	const char *sp = v ? strchr(v, ' ') : NULL;
	if (!sp || (size_t)(sp - v) >= idcap)
		return false;
	memcpy(id, v, (size_t)(sp - v));
	id[sp - v] = 0;
	char *end;
	*token = strtoull(sp + 1, &end, 10);
	return *end == 0 && *token > 0;
}

/* ---- acquire, renew, release ----------------------------------------------- */

struct acq_ctx {
	uint64_t sent_at;
	char remote[256];
};

static void release_value(const char *remote, uint64_t token);

static void acquire_done(redisReply *r, void *arg)
{
	struct acq_ctx *c = arg;
	uint64_t now = now_ms();
	struct clu_lease *l = clu_lease_find(c->remote);
	bool got = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && r->element[0]->type == REDIS_REPLY_INTEGER &&
		   r->element[0]->integer == 1 && r->element[1]->str;
	if (l)
		l->inflight = false;
	if (got && (!l || l->worker < 0)) {
		/* the link went away meanwhile: give it back at once */
		release_value(c->remote, strtoull(r->element[1]->str, NULL, 10));
		if (l)
			clu_lease_drop(l);
		free(c);
		return;
	}
	if (!l) {
		free(c);
		return;
	}
	if (got) {
		uint64_t token = strtoull(r->element[1]->str, NULL, 10);
		clu_ls_acquired(l, c->sent_at, token, clu_g.lease_ms);
		STAT_INC(gained);
		log_info(0, "cluster: lease on %s gained (token %llu)", l->remote, (unsigned long long)token);
		clu_publish("lease %s %s %llu", l->remote, clu_g.id, (unsigned long long)token);
	} else if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 3 && r->element[1]->str) {
		char id[CLU_ID_MAX];
		uint64_t token = 0;
		int owner = -1;
		if (parse_lease(r->element[1]->str, id, sizeof(id), &token) && strcmp(id, clu_g.id))
			owner = clu_node_index(id);
		if (owner < 0 && strcmp(id, clu_g.id))
			next_dir = 0; /* a node we have not seen yet: read the directory */
		clu_ls_held(l, owner, clu_node_alive(owner), token, r->element[2]->integer, now, clu_g.lease_ms);
		if (owner < 0 && l->next_try > now + 300)
			l->next_try = now + 300; /* until the directory knows it */
	} else {
		l->next_try = now + 200; /* no answer: try again soon */
	}
	clu_pub_update(l);
	clu_lease_tell(l, now);
	free(c);
}

static void acquire(struct clu_lease *l, uint64_t now)
{
	char k1[300], k2[300], px[16], mt[24];
	struct acq_ctx *c = xcalloc(1, sizeof(*c));
	c->sent_at = now;
	snprintf(c->remote, sizeof(c->remote), "%s", l->remote);
	snprintf(px, sizeof(px), "%u", clu_g.lease_ms);
	snprintf(mt, sizeof(mt), "%llu", (unsigned long long)l->max_token);
	const char *argv[] = {"EVAL", acquire_lua, "2", clu_key(k1, sizeof(k1), "lease:", l->remote),
			      clu_key(k2, sizeof(k2), "token:", l->remote), clu_g.id, px, mt};
	if (cmd(acquire_done, c, 8, argv) < 0) {
		free(c);
		return;
	}
	l->inflight = true;
}

void clu_reg_kick(struct clu_lease *l, uint64_t now)
{
	if (clu_ls_due(l, now) && clu_redis_up() && !hb_conflict)
		acquire(l, now);
	clu_lease_tell(l, now);
}

struct renew_ctx {
	uint64_t sent_at;
	int n;
	struct {
		char remote[256];
		uint64_t token;
	} e[RENEW_BATCH];
};

static void renew_done(redisReply *r, void *arg)
{
	struct renew_ctx *c = arg;
	uint64_t now = now_ms();
	if (!r || r->type != REDIS_REPLY_ARRAY || (int)r->elements != c->n) {
		free(c); /* no answer: the deadlines stand; self-fencing does the rest */
		return;
	}
	for (int i = 0; i < c->n; i++) {
		struct clu_lease *l = clu_lease_find(c->e[i].remote);
		if (!l || l->st != LS_OURS || l->token != c->e[i].token)
			continue;
		bool was_usable = clu_ls_usable(l, now);
		bool ok = r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer == 1;
		if (clu_ls_renewed(l, c->sent_at, ok, now, clu_g.lease_ms)) {
			STAT_INC(lost);
			log_warn(0, "cluster: lease on %s lost (token %llu is no longer ours in Redis)", l->remote,
				 (unsigned long long)c->e[i].token);
		} else if (!was_usable && clu_ls_usable(l, now)) {
			log_info(0, "cluster: lease on %s renewed after self-fencing (token %llu)", l->remote,
				 (unsigned long long)l->token);
		}
		clu_pub_update(l);
		clu_reg_kick(l, now);
	}
	free(c);
}

struct renew_walk {
	struct renew_ctx *c;
	uint64_t now;
};

static void renew_flush(struct renew_walk *w)
{
	struct renew_ctx *c = w->c;
	if (!c || !c->n)
		return;
	const char *argv[3 + 2 * RENEW_BATCH + 1];
	char keys[RENEW_BATCH][300], vals[RENEW_BATCH][100], nk[8], px[16];
	int a = 0;
	snprintf(nk, sizeof(nk), "%d", c->n);
	snprintf(px, sizeof(px), "%u", clu_g.lease_ms);
	argv[a++] = "EVAL";
	argv[a++] = renew_lua;
	argv[a++] = nk;
	for (int i = 0; i < c->n; i++)
		argv[a++] = clu_key(keys[i], sizeof(keys[i]), "lease:", c->e[i].remote);
	argv[a++] = px;
	for (int i = 0; i < c->n; i++) {
		snprintf(vals[i], sizeof(vals[i]), "%s %llu", clu_g.id, (unsigned long long)c->e[i].token);
		argv[a++] = vals[i];
	}
	if (cmd(renew_done, c, a, argv) < 0)
		free(c);
	w->c = NULL;
}

static void renew_one(struct clu_lease *l, void *arg)
{
	struct renew_walk *w = arg;
	if (l->st != LS_OURS)
		return;
	if (!w->c) {
		w->c = xcalloc(1, sizeof(*w->c));
		w->c->sent_at = w->now;
	}
	snprintf(w->c->e[w->c->n].remote, sizeof(w->c->e[0].remote), "%s", l->remote);
	w->c->e[w->c->n++].token = l->token;
	if (w->c->n == RENEW_BATCH)
		renew_flush(w);
}

static void renew_round(uint64_t now)
{
	struct renew_walk w = {NULL, now};
	clu_lease_foreach(renew_one, &w);
	renew_flush(&w);
}

static void release_value(const char *remote, uint64_t token)
{
	char k[300], v[100];
	snprintf(v, sizeof(v), "%s %llu", clu_g.id, (unsigned long long)token);
	clu_cmdv(clu_ignore_reply, NULL, "EVAL", release_lua, "1", clu_key(k, sizeof(k), "lease:", remote), v, NULL);
	clu_publish("release %s %s", remote, clu_g.id);
}

void clu_reg_release(struct clu_lease *l, uint64_t now)
{
	l->worker = -1;
	if (l->st == LS_OURS) {
		log_info(0, "cluster: lease on %s released (idle link closed)", l->remote);
		release_value(l->remote, l->token);
		l->st = LS_NONE;
		clu_pub_update(l);
	}
	if (!l->inflight) /* else acquire_done sees worker -1 and drops it */
		clu_lease_drop(l);
}

/* ---- the heartbeat and the directory --------------------------------------- */

static void heartbeat_done(redisReply *r, void *arg)
{
	(void)arg;
	if (!r || r->type != REDIS_REPLY_INTEGER)
		return;
	if (r->integer == 0) {
		if (!hb_conflict)
			log_error(0, "cluster: node id %s is registered by another live node; not claiming any lease "
				     "until its key expires (give each node its own node_id)",
				  clu_g.id);
		hb_conflict = true;
		return;
	}
	if (hb_conflict)
		log_info(0, "cluster: node id %s is ours again", clu_g.id);
	hb_conflict = false;
	if (!joined) {
		joined = true;
		log_info(0, "cluster: node %s joined (%s)", clu_g.id, clu_g.addr.text);
		clu_publish("node %s up", clu_g.id);
	}
}

static void heartbeat(uint64_t now)
{
	char k[300], px[16];
	snprintf(px, sizeof(px), "%u", clu_g.lease_ms);
	clu_cmdv(heartbeat_done, NULL, "EVAL", heartbeat_lua, "1", clu_key(k, sizeof(k), "node:", clu_g.id), node_value, px, NULL);
	clu_cmdv(clu_ignore_reply, NULL, "SADD", clu_key(k, sizeof(k), "nodes", ""), clu_g.id, NULL);
	int n;
	clu_comp_at(0, &n);
	for (int i = 0; i < n; i++) {
		struct clu_comp *c = clu_comp_at(i, NULL);
		if (c->local)
			clu_cmdv(clu_ignore_reply, NULL, "SADD", clu_key(k, sizeof(k), "comp:", c->name), clu_g.id, NULL);
	}
	renew_round(now);
}

struct dir_ctx {
	int n;
	char ids[][CLU_ID_MAX];
};

struct vacate {
	int idx;
	uint64_t now;
};

static void vacate_one(struct clu_lease *l, void *arg)
{
	struct vacate *v = arg;
	if (l->st == LS_OTHER && l->owner == v->idx) {
		clu_ls_vacated(l, v->now);
		clu_reg_kick(l, v->now);
	}
}

static void node_down(int idx, const char *id, uint64_t now)
{
	log_warn(0, "cluster: node %s is gone (its key expired); taking over what it owned once its leases lapse", id);
	clu_node_set(id, NULL, 0, false);
	struct vacate v = {idx, now};
	clu_lease_foreach(vacate_one, &v);
	char k[300];
	clu_cmdv(clu_ignore_reply, NULL, "SREM", clu_key(k, sizeof(k), "nodes", ""), id, NULL);
	int n;
	clu_comp_at(0, &n);
	for (int i = 0; i < n; i++)
		clu_cmdv(clu_ignore_reply, NULL, "SREM", clu_key(k, sizeof(k), "comp:", clu_comp_at(i, NULL)->name), id, NULL);
	next_comp = 0;
}

static bool node_parse(const char *id, const char *v, struct cfg_addr *a)
{
	char addr[96], mac[40], want[33];
	if (!v || sscanf(v, "%95s %39s", addr, mac) != 2)
		return false;
	clu_hmac_hex("fedhub node ", id, addr, want, 32);
	if (strcmp(mac, want))
		return false;
	return cfg_parse_addr(addr, a, 0) == 0;
}

static void dir_mget_done(redisReply *r, void *arg)
{
	struct dir_ctx *c = arg;
	uint64_t now = now_ms();
	if (!r || r->type != REDIS_REPLY_ARRAY || (int)r->elements != c->n) {
		free(c);
		return;
	}
	for (int i = 0; i < c->n; i++) {
		const char *id = c->ids[i];
		if (!strcmp(id, clu_g.id))
			continue;
		int idx = clu_node_index(id);
		struct cfg_addr a;
		if (r->element[i]->type == REDIS_REPLY_STRING) {
			if (!node_parse(id, r->element[i]->str, &a)) {
				static uint64_t warned;
				if (now - warned > 10000)
					log_warn(0, "cluster: node %s's entry in Redis is not signed with our cluster "
						    "secret: ignored",
						 id);
				warned = now;
				continue;
			}
			bool was = clu_node_alive(idx);
			int ni = clu_node_set(id, &a.ss, a.len, true);
			if (!was && ni >= 0)
				log_info(0, "cluster: node %s is up at %s", id, a.text);
		} else if (idx >= 0 && clu_node_alive(idx)) {
			node_down(idx, id, now);
		} else if (idx < 0) {
			/* never seen alive: just prune it */
			char k[300];
			clu_cmdv(clu_ignore_reply, NULL, "SREM", clu_key(k, sizeof(k), "nodes", ""), id, NULL);
		}
	}
	free(c);
}

/* A node we hold alive that the set of nodes no longer names: another node
 * saw its key expire first and removed it (node_down's SREM). It is gone
 * for us too, or what waits for it would wait for nothing. */
static void dir_prune_missing(redisReply *r, uint64_t now)
{
	for (int idx = 0; idx < CLU_MAX_NODES; idx++) {
		struct clu_node nd;
		if (idx == clu_g.self || !clu_node_alive(idx) || !clu_node_get(idx, &nd))
			continue;
		bool named = false;
		for (size_t i = 0; i < r->elements && !named; i++)
			named = r->element[i]->str && !strcmp(r->element[i]->str, nd.id);
		if (!named)
			node_down(idx, nd.id, now);
	}
}

static void dir_members_done(redisReply *r, void *arg)
{
	(void)arg;
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return;
	dir_prune_missing(r, now_ms());
	if (!r->elements)
		return;
	size_t n = r->elements > 256 ? 256 : r->elements;
	struct dir_ctx *c = xcalloc(1, sizeof(*c) + n * sizeof(c->ids[0]));
	const char *argv[1 + 256];
	char keys[256][300];
	argv[0] = "MGET";
	for (size_t i = 0; i < n; i++) {
		if (!r->element[i]->str)
			continue;
		snprintf(c->ids[c->n], sizeof(c->ids[0]), "%s", r->element[i]->str);
		argv[1 + c->n] = clu_key(keys[c->n], sizeof(keys[0]), "node:", c->ids[c->n]);
		c->n++;
	}
	if (!c->n || cmd(dir_mget_done, c, 1 + c->n, argv) < 0)
		free(c);
}

static void dir_refresh(void)
{
	char k[300];
	clu_cmdv(dir_members_done, NULL, "SMEMBERS", clu_key(k, sizeof(k), "nodes", ""), NULL);
}

/* ---- components ------------------------------------------------------------ */

static void comp_members_done(redisReply *r, void *arg)
{
	struct clu_comp *c = arg; /* the table lives for the process */
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return;
	uint64_t mask = 0;
	for (size_t i = 0; i < r->elements; i++) {
		if (!r->element[i]->str || !strcmp(r->element[i]->str, clu_g.id))
			continue;
		int idx = clu_node_index(r->element[i]->str);
		if (idx < 0)
			next_dir = 0;
		else
			mask |= 1ull << idx;
	}
	__atomic_store_n(&c->nodes, mask, __ATOMIC_RELEASE);
}

static void comp_refresh(struct clu_comp *c)
{
	char k[300];
	clu_cmdv(comp_members_done, c, "SMEMBERS", clu_key(k, sizeof(k), "comp:", c->name), NULL);
}

void clu_reg_comp(struct clu_comp *c, bool up)
{
	char k[300];
	c->local = up;
	log_info(0, "cluster: component %s %s on this node", c->name, up ? "attached" : "gone");
	clu_cmdv(clu_ignore_reply, NULL, up ? "SADD" : "SREM", clu_key(k, sizeof(k), "comp:", c->name), clu_g.id, NULL);
	clu_publish("comp %s", c->name);
}

/* ---- resync ------------------------------------------------------------------ */

struct resync_ctx {
	int n;
	char remote[RENEW_BATCH][256];
};

static void resync_done(redisReply *r, void *arg)
{
	struct resync_ctx *c = arg;
	uint64_t now = now_ms();
	if (!r || r->type != REDIS_REPLY_ARRAY || (int)r->elements != c->n) {
		free(c);
		return;
	}
	for (int i = 0; i < c->n; i++) {
		struct clu_lease *l = clu_lease_find(c->remote[i]);
		if (!l || l->st == LS_OURS || l->inflight)
			continue;
		char id[CLU_ID_MAX];
		uint64_t token;
		if (r->element[i]->type != REDIS_REPLY_STRING) {
			clu_ls_vacated(l, now); /* nobody holds it */
		} else if (parse_lease(r->element[i]->str, id, sizeof(id), &token) && strcmp(id, clu_g.id)) {
			int idx = clu_node_index(id);
			if (idx >= 0 && clu_node_alive(idx))
				clu_ls_announced(l, idx, token, now);
		}
		clu_reg_kick(l, now);
	}
	free(c);
}

struct resync_walk {
	struct resync_ctx *c;
};

static void resync_flush(struct resync_walk *w)
{
	struct resync_ctx *c = w->c;
	if (!c || !c->n)
		return;
	const char *argv[1 + RENEW_BATCH];
	char keys[RENEW_BATCH][300];
	argv[0] = "MGET";
	for (int i = 0; i < c->n; i++)
		argv[1 + i] = clu_key(keys[i], sizeof(keys[0]), "lease:", c->remote[i]);
	if (cmd(resync_done, c, 1 + c->n, argv) < 0)
		free(c);
	w->c = NULL;
}

static void resync_one(struct clu_lease *l, void *arg)
{
	struct resync_walk *w = arg;
	if (l->st == LS_OURS || l->worker < 0)
		return;
	if (!w->c)
		w->c = xcalloc(1, sizeof(*w->c));
	snprintf(w->c->remote[w->c->n++], sizeof(w->c->remote[0]), "%s", l->remote);
	if (w->c->n == RENEW_BATCH)
		resync_flush(w);
}

static void resync(void)
{
	struct resync_walk w = {NULL};
	clu_lease_foreach(resync_one, &w);
	resync_flush(&w);
}

/* ---- events ------------------------------------------------------------------ */


static void on_event(const char *msg, size_t n)
{
	char kind[16], a[256], b[CLU_ID_MAX];
	unsigned long long t = 0;
	uint64_t now = now_ms();
	int k = sscanf(msg, "%15s %255s %63s %llu", kind, a, b, &t);
	if (k < 2)
		return;
	if (!strcmp(kind, "lease") && k == 4 && strcmp(b, clu_g.id)) {
		struct clu_lease *l = clu_lease_find(a);
		int idx = clu_node_index(b);
		if (idx < 0)
			next_dir = 0;
		if (!l || idx < 0)
			return;
		bool was_ours = l->st == LS_OURS;
		if (clu_ls_announced(l, idx, t, now)) {
			if (was_ours) {
				STAT_INC(lost);
				log_warn(0, "cluster: lease on %s lost: node %s holds it now (token %llu)", l->remote, b, t);
			}
			clu_pub_update(l);
			clu_lease_tell(l, now);
		}
	} else if (!strcmp(kind, "release") && k >= 3 && strcmp(b, clu_g.id)) {
		struct clu_lease *l = clu_lease_find(a);
		if (l && l->st != LS_OURS) {
			clu_ls_vacated(l, now);
			clu_reg_kick(l, now);
		}
	} else if (!strcmp(kind, "comp")) {
		struct clu_comp *c = clu_comp_find(a);
		if (c)
			comp_refresh(c);
	} else if (!strcmp(kind, "node")) {
		next_dir = 0;
	} else if (!strcmp(kind, "secret")) {
		clu_secrets_reread();
	}
}

/* ---- the loop ------------------------------------------------------------------ */

static void on_up(void)
{
	uint64_t now = now_ms();
	__atomic_store_n(&clu_g.redis_up, true, __ATOMIC_RELEASE);
	log_info(0, "cluster: redis up (%s): reconciling", clu_redis_master());
	joined = false;
	clu_secrets_sync();
	heartbeat(now); /* our node key, components and every lease we hold */
	next_hb = now + clu_g.lease_ms / 3;
	next_dir = next_comp = 0;
	next_resync = now + 200; /* after the directory answered */
}

static void on_down(void)
{
	__atomic_store_n(&clu_g.redis_up, false, __ATOMIC_RELEASE);
	log_warn(0, "cluster: redis down: routing on what is known; no new leases; held leases self-fence "
		    "%ums after their last renewal",
		 clu_g.lease_ms - clu_margin_ms(clu_g.lease_ms));
	joined = false;
}

static void on_sub_up(void)
{
	next_resync = 0; /* events may have been missed meanwhile */
	next_dir = 0;
}

struct sweep {
	uint64_t now;
	uint32_t held;
};

static void sweep_one(struct clu_lease *l, void *arg)
{
	struct sweep *s = arg;
	if (l->st == LS_OURS) {
		if (clu_ls_usable(l, s->now))
			s->held++;
		else if (l->told_st == CLU_LEASE_OURS) {
			STAT_INC(fenced);
			log_warn(0, "cluster: lease on %s self-fenced: no renewal answered for %ums; holding its "
				    "queue",
				 l->remote, clu_g.lease_ms - clu_margin_ms(clu_g.lease_ms));
		}
	}
	clu_reg_kick(l, s->now);
}

static int hook_prepare(struct pollfd *pfd, int max, int *timeout_ms)
{
	if (*timeout_ms > SWEEP_MS)
		*timeout_ms = SWEEP_MS;
	return clu_redis_prepare(pfd, max, timeout_ms);
}

static void hook_process(const struct pollfd *pfd, int n)
{
	uint64_t now = now_ms();
	clu_redis_process(pfd, n, now);
	bool up = clu_redis_up();
	if (up && now >= next_hb) {
		next_hb = now + clu_g.lease_ms / 3;
		heartbeat(now);
	}
	if (up && now >= next_dir) {
		next_dir = now + DIR_MS;
		dir_refresh();
	}
	if (up && now >= next_comp) {
		next_comp = now + COMP_MS;
		int nc;
		clu_comp_at(0, &nc);
		for (int i = 0; i < nc; i++)
			comp_refresh(clu_comp_at(i, NULL));
	}
	if (up && now >= next_resync) {
		next_resync = now + RESYNC_MS;
		resync();
		static uint64_t next_secrets;
		if (now >= next_secrets) { /* a missed rotation event is repaired within a minute */
			next_secrets = now + 60000;
			clu_secrets_reread();
			clu_tickets_rotate_check();
		}
	}
	if (now >= next_sweep) {
		next_sweep = now + SWEEP_MS;
		struct sweep s = {now, 0};
		clu_lease_foreach(sweep_one, &s);
		__atomic_store_n(&clu_g.held, s.held, __ATOMIC_RELAXED);
	}
}

static const struct dns_ctrl_hook hook = {hook_prepare, hook_process};

int clu_reg_init(const struct cfg *c)
{
	const struct cfg_cluster *k = &c->cluster;
	char mac[33];
	clu_hmac_hex("fedhub node ", clu_g.id, k->node_address.text, mac, 32);
	snprintf(node_value, sizeof(node_value), "%s %s", k->node_address.text, mac);
	struct clu_redis_cfg rc = {.timeout_ms = k->redis_timeout_ms,
				   .on_up = on_up,
				   .on_down = on_down,
				   .on_event = on_event,
				   .on_sub_up = on_sub_up};
	if (k->redis.len) {
		cfg_addr_host(&k->redis, rc.host, sizeof(rc.host));
		rc.port = cfg_addr_port(&k->redis);
	}
	char ch[64];
	clu_redis_init(&rc, clu_key(ch, sizeof(ch), "events", ""));
	for (int i = 0; i < k->nsentinel; i++) {
		char host[64];
		cfg_addr_host(&k->sentinel[i], host, sizeof(host));
		clu_redis_add_sentinel(host, cfg_addr_port(&k->sentinel[i]), k->master);
	}
	return 0;
}

void clu_ctrl_start(void)
{
	if (!clu_g.on)
		return;
	rcu_register_thread();
	rcu_thread_offline();
	dns_ctrl_set_hook(&hook);
	log_info(0, "cluster: node %s, registry %s, lease_time %ums (self-fencing after %ums)", clu_g.id,
		 clu_redis_master(), clu_g.lease_ms, clu_g.lease_ms - clu_margin_ms(clu_g.lease_ms));
}

static void stop_one(struct clu_lease *l, void *arg)
{
	(void)arg;
	if (l->st == LS_OURS)
		release_value(l->remote, l->token);
	l->st = LS_NONE;
	clu_pub_update(l);
}

void clu_ctrl_stop(void)
{
	if (!clu_g.on)
		return;
	if (clu_redis_up()) {
		/* leave cleanly: others take over at once instead of after lease_time */
		char k[300];
		clu_lease_foreach(stop_one, NULL);
		clu_cmdv(clu_ignore_reply, NULL, "EVAL", release_lua, "1", clu_key(k, sizeof(k), "node:", clu_g.id), node_value, NULL);
		clu_cmdv(clu_ignore_reply, NULL, "SREM", clu_key(k, sizeof(k), "nodes", ""), clu_g.id, NULL);
		int n;
		clu_comp_at(0, &n);
		for (int i = 0; i < n; i++)
			if (clu_comp_at(i, NULL)->local)
				clu_cmdv(clu_ignore_reply, NULL, "SREM", clu_key(k, sizeof(k), "comp:", clu_comp_at(i, NULL)->name),
						     clu_g.id, NULL);
		clu_publish("node %s down", clu_g.id);
		clu_cmdv(clu_ignore_reply, NULL, "PING", NULL);
		uint64_t end = now_ms() + clu_g.timeout_ms;
		while (now_ms() < end && clu_redis_up()) {
			struct pollfd pfd[4];
			int ms = (int)(end - now_ms());
			int np = clu_redis_prepare(pfd, 4, &ms);
			poll(pfd, (nfds_t)np, ms > 50 ? 50 : ms);
			clu_redis_process(pfd, np, now_ms());
			if (!clu_redis_pending())
				break;
		}
		log_info(0, "cluster: node %s left (leases released)", clu_g.id);
	}
	clu_redis_shutdown();
	rcu_unregister_thread();
}
