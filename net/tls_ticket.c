/*
 * net/tls_ticket.c — the keys of the session tickets the hub issues on
 * inbound TLS links, so a remote server that reconnects (to this node or,
 * in a cluster, to any node behind the balancer) resumes instead of paying
 * for a full handshake.
 *
 * A ticket is the session state wolfSSL serialises, encrypted and
 * authenticated with ChaCha20-Poly1305 (the additional data binds the key
 * name, the nonce and the length) under a key that rotates every
 * TLS_TICKET_PERIOD seconds of wall-clock time. Each period's key and its
 * 16-byte name are HMAC-SHA256 of a master secret and the period number, so
 * nodes that share the master derive the same keys without talking to each
 * other: the master comes from tls_ticket_source() (the cluster's secret
 * shared in Redis, router/clu.h clu_ticket_keys), and without one it is 32
 * random bytes drawn at start (tickets then resume on this process only).
 *
 * New tickets use the current period's key; a ticket under the previous
 * period's key (or the next one's, for a node whose clock runs ahead
 * at a boundary) still decrypts and is replaced by a new one; anything else
 * (an older key, another cluster, a forged or damaged ticket) is rejected
 * and the client falls back to a full handshake. wolfSSL's own session
 * timeout still bounds a ticket's age.
 *
 * Called by wolfSSL on the worker that runs the handshake: nothing here is
 * shared but the source pointer and the local master (set once).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "net/tls.h"

#define MASTER_MAX 128
#define NONCE_SZ   CHACHA20_POLY1305_AEAD_IV_SIZE /* 12 of wolfSSL's 16 iv bytes */

struct tkey {
	unsigned char name[WOLFSSL_TICKET_NAME_SZ];
	unsigned char key[CHACHA20_POLY1305_AEAD_KEYSIZE];
};

static _Atomic(tls_ticket_source_fn) source;
static _Atomic int64_t skew; /* tests: seconds added to the clock */
static _Atomic uint64_t rejected;
static unsigned char local_master[32];
static pthread_once_t local_once = PTHREAD_ONCE_INIT;
static bool local_ok;

void tls_ticket_source(tls_ticket_source_fn fn)
{
	atomic_store(&source, fn);
}

void tls_ticket_clock_skew(int64_t seconds)
{
	atomic_store(&skew, seconds);
}

uint64_t tls_ticket_rejected(void)
{
	return atomic_load_explicit(&rejected, memory_order_relaxed);
}

static void local_init(void)
{
	local_ok = getrandom(local_master, sizeof(local_master), 0) == (ssize_t)sizeof(local_master);
}

/* The master secret: the source's, else the local one. Returns its length (0: none). */
static size_t master(unsigned char out[MASTER_MAX])
{
	tls_ticket_source_fn fn = atomic_load(&source);
	if (fn) {
		uint64_t gen;
		size_t n = fn(out, MASTER_MAX, &gen);
		if (n > 0)
			return n < MASTER_MAX ? n : MASTER_MAX;
	}
	pthread_once(&local_once, local_init);
	if (!local_ok)
		return 0;
	memcpy(out, local_master, sizeof(local_master));
	return sizeof(local_master);
}

static int hmac(const unsigned char *k, size_t kn, const char *label, uint64_t period,
		unsigned char out[WC_SHA256_DIGEST_SIZE])
{
	unsigned char p[8];
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(period >> (56 - 8 * i));
	Hmac h;
	int rc = wc_HmacInit(&h, NULL, INVALID_DEVID);
	if (rc == 0)
		rc = wc_HmacSetKey(&h, WC_SHA256, k, (word32)kn);
	if (rc == 0)
		rc = wc_HmacUpdate(&h, (const byte *)label, (word32)strlen(label));
	if (rc == 0)
		rc = wc_HmacUpdate(&h, p, sizeof(p));
	if (rc == 0)
		rc = wc_HmacFinal(&h, out);
	wc_HmacFree(&h);
	return rc;
}

static int derive(const unsigned char *m, size_t mn, uint64_t period, struct tkey *k)
{
	unsigned char d[WC_SHA256_DIGEST_SIZE];
	if (hmac(m, mn, "fedhub ticket name ", period, d) != 0)
		return -1;
	memcpy(k->name, d, sizeof(k->name));
	if (hmac(m, mn, "fedhub ticket key ", period, d) != 0)
		return -1;
	memcpy(k->key, d, sizeof(k->key));
	memset(d, 0, sizeof(d));
	return 0;
}

static uint64_t period_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t t = (int64_t)ts.tv_sec + atomic_load(&skew);
	return t > 0 ? (uint64_t)t / TLS_TICKET_PERIOD : 0;
}

/* What the ciphertext is bound to: key name, nonce, length. */
static void aad_of(unsigned char aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ + 2],
		   const unsigned char *name, const unsigned char *iv, int len)
{
	memcpy(aad, name, WOLFSSL_TICKET_NAME_SZ);
	memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
	aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ] = (unsigned char)(len >> 8);
	aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ + 1] = (unsigned char)len;
}

/* wolfSSL's SessionTicketEncCb. The tag goes in the first 16 bytes of mac. */
static int ticket_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
		     unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc,
		     unsigned char *ticket, int len, int *out_len, void *arg)
{
	(void)ssl, (void)arg;
	unsigned char m[MASTER_MAX], aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ + 2];
	size_t mn = master(m);
	uint64_t now = period_now();
	struct tkey k;
	int ret = WOLFSSL_TICKET_RET_REJECT;
	if (!mn || len < 0 || len > 0xffff)
		goto out;
	if (enc) {
		if (derive(m, mn, now, &k) < 0 || getrandom(iv, WOLFSSL_TICKET_IV_SZ, 0) != WOLFSSL_TICKET_IV_SZ) {
			ret = WOLFSSL_TICKET_RET_FATAL; /* no ticket this time */
			goto out;
		}
		memcpy(key_name, k.name, sizeof(k.name));
		aad_of(aad, key_name, iv, len);
		if (wc_ChaCha20Poly1305_Encrypt(k.key, iv, aad, sizeof(aad), ticket, (word32)len, ticket, mac) != 0) {
			ret = WOLFSSL_TICKET_RET_FATAL;
			goto out;
		}
		*out_len = len;
		ret = WOLFSSL_TICKET_RET_OK;
		goto out;
	}
	/* current, previous, next */
	static const int64_t tries[3] = {0, -1, 1};
	for (int i = 0; i < 3; i++) {
		if (now == 0 && tries[i] < 0)
			continue;
		if (derive(m, mn, now + (uint64_t)tries[i], &k) < 0)
			break;
		if (memcmp(k.name, key_name, sizeof(k.name)))
			continue;
		aad_of(aad, key_name, iv, len);
		if (wc_ChaCha20Poly1305_Decrypt(k.key, iv, aad, sizeof(aad), ticket, (word32)len, mac, ticket) != 0)
			break; /* the right name, a wrong tag: forged or damaged */
		*out_len = len;
		ret = tries[i] == 0 ? WOLFSSL_TICKET_RET_OK : WOLFSSL_TICKET_RET_CREATE;
		goto out;
	}
	/* wolfSSL may ask about the same ticket several times in one
	 * handshake (TLS 1.3: once per cipher suite it tries): count it once */
	static __thread unsigned char last[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ];
	if (memcmp(last, key_name, WOLFSSL_TICKET_NAME_SZ) ||
	    memcmp(last + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ)) {
		memcpy(last, key_name, WOLFSSL_TICKET_NAME_SZ);
		memcpy(last + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
		atomic_fetch_add_explicit(&rejected, 1, memory_order_relaxed);
	}
out:
	memset(m, 0, sizeof(m));
	memset(&k, 0, sizeof(k));
	return ret;
}

int tls_ticket_setup(WOLFSSL_CTX *w)
{
	return wolfSSL_CTX_set_TicketEncCb(w, ticket_cb) == WOLFSSL_SUCCESS ? 0 : -1;
}
