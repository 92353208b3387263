/*
 * router/clu_secret.c — the secrets a cluster shares through Redis: the
 * dialback secret (so a key issued by one node verifies on any other) and
 * the TLS session-ticket keys (so a link resumes against any node).
 *
 * Redis holds only random values ("<unix time> <48 hex>"), SET NX by the
 * first node; the secrets are HMAC-SHA256 of those values under the
 * cluster secret, so whoever reads Redis without cluster_secret_file learns
 * nothing usable. A node that comes back to a Redis that lost its data puts
 * the value it uses back (SET NX), so the cluster keeps its secrets. The
 * ticket value is replaced every TICKET_ROTATE_S by whichever node notices
 * first (a compare-and-set script), announced on fh:events; every node also
 * rereads both once a minute.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "router/clu-int.h"
#include "router/hub.h"
#include "router/sess.h"
#include "net/alloc.h"
#include "net/log.h"

/* ---- shared secrets ------------------------------------------------------------ */

static char *dialback_key_live; /* atomic pointer; older ones are kept (a change is rare) */
static char secret_val[2][80];  /* the values in Redis we use: dialback, tickets */
static pthread_mutex_t tk_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char tk_blob[96];
static size_t tk_len;
static uint64_t tk_gen;

const char *clu_dialback_key(void)
{
	const char *k = __atomic_load_n(&dialback_key_live, __ATOMIC_ACQUIRE);
	return k ? k : hub_dialback_key;
}

size_t clu_ticket_keys(unsigned char *out, size_t cap, uint64_t *gen)
{
	pthread_mutex_lock(&tk_lock);
	size_t n = tk_len < cap ? tk_len : cap;
	memcpy(out, tk_blob, n);
	if (gen)
		*gen = tk_gen;
	size_t len = tk_len;
	pthread_mutex_unlock(&tk_lock);
	return len;
}

static void secret_apply(int which, const char *v)
{
	if (!strcmp(secret_val[which], v))
		return;
	snprintf(secret_val[which], sizeof(secret_val[which]), "%s", v);
	if (which == 0) {
		/* the dialback secret is an HMAC of the value; the key, as
		 * make_dialback_key() makes it: hex SHA-256 of the secret */
		char secret[65], *k = xmalloc(65);
		unsigned char d[WC_SHA256_DIGEST_SIZE];
		clu_hmac_hex("fedhub dialback ", v, "", secret, 64);
		wc_Sha256Hash((const byte *)secret, 64, d);
		hex_encode(d, sizeof(d), k);
		explicit_bzero(secret, sizeof(secret));
		__atomic_store_n(&dialback_key_live, k, __ATOMIC_RELEASE);
		log_info(0, "cluster: dialback secret shared through Redis in use");
	} else {
		char h[3][65];
		clu_hmac_hex("fedhub tickets 1 ", v, "", h[0], 64);
		clu_hmac_hex("fedhub tickets 2 ", v, "", h[1], 64);
		clu_hmac_hex("fedhub tickets 3 ", v, "", h[2], 64);
		pthread_mutex_lock(&tk_lock);
		for (int i = 0; i < 96; i++) {
			unsigned x;
			sscanf(h[i / 32] + 2 * (i % 32), "%2x", &x);
			tk_blob[i] = (unsigned char)x;
		}
		tk_len = 96;
		tk_gen++;
		pthread_mutex_unlock(&tk_lock);
		explicit_bzero(h, sizeof(h));
		log_info(0, "cluster: TLS session-ticket keys shared through Redis in use (generation %llu)",
			 (unsigned long long)tk_gen);
	}
}

static void secret_get_done(redisReply *r, void *arg)
{
	int which = (int)(intptr_t)arg;
	if (r && r->type == REDIS_REPLY_STRING && r->len > 0 && r->len < sizeof(secret_val[0]))
		secret_apply(which, r->str);
}

static const char *const secret_names[2] = {"secret:dialback", "secret:tickets"};

/* "<unix time> <48 hex>": a new random value stamped now. */
static int fresh_value(char *out, size_t cap)
{
	unsigned char raw[24];
	char hex[49];
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -1;
	hex_encode(raw, sizeof(raw), hex);
	explicit_bzero(raw, sizeof(raw));
	snprintf(out, cap, "%lld %s", (long long)time(NULL), hex);
	explicit_bzero(hex, sizeof(hex));
	return 0;
}

/* SET NX the value we use (or a new one), then use whatever Redis holds:
 * after a Redis restart the first node back puts the cluster's value back. */
void clu_secrets_sync(void)
{
	for (int i = 0; i < 2; i++) {
		char k[300], fresh[80];
		const char *v = secret_val[i];
		if (!v[0]) { /* none yet: offer a new one; the value used is what Redis answers */
			if (fresh_value(fresh, sizeof(fresh)) < 0)
				continue;
			v = fresh;
		}
		clu_cmdv(clu_ignore_reply, NULL, "SET", clu_key(k, sizeof(k), secret_names[i], ""), v, "NX", NULL);
		clu_cmdv(secret_get_done, (void *)(intptr_t)i, "GET", k, NULL);
	}
}

void clu_secrets_reread(void)
{
	char k[300];
	for (int i = 0; i < 2; i++)
		clu_cmdv(secret_get_done, (void *)(intptr_t)i, "GET", clu_key(k, sizeof(k), secret_names[i], ""), NULL);
}

/* KEYS key; ARGV old, new: replace only what we saw (one node rotates) */
static const char swap_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
			       "redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0";

static void rotated(redisReply *r, void *arg)
{
	(void)arg;
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
		log_info(0, "cluster: TLS session-ticket keys rotated");
		clu_publish("secret tickets");
	}
	clu_secrets_reread();
}

/* Ticket keys older than TICKET_ROTATE_S are replaced by whichever node
 * notices first; the others follow the event (or the next reread). */
#define TICKET_ROTATE_S (12 * 3600)
void clu_tickets_rotate_check(void)
{
	long long born = atoll(secret_val[1]);
	if (!secret_val[1][0] || time(NULL) - born < TICKET_ROTATE_S)
		return;
	char k[300], fresh[80];
	if (fresh_value(fresh, sizeof(fresh)) < 0)
		return;
	clu_cmdv(rotated, NULL, "EVAL", swap_lua, "1", clu_key(k, sizeof(k), secret_names[1], ""), secret_val[1], fresh, NULL);
}

