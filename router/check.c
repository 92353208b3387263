/*
 * router/check.c — prove that a loaded configuration can start.
 *
 * Design. `fedhub -t` and start-up call the same check_config(), so a file
 * that passes -t is one the daemon starts with, and the daemon refuses what
 * -t refuses, with the same words. cfg_load() has already checked syntax and
 * that every named file opens; here each file is read as what it claims to
 * be, with wolfSSL (the library that will use it):
 *
 *   cert      every PEM block parses; every certificate in the chain is
 *             inside its validity period (an error), and none expires
 *             within CHECK_EXPIRY_WARN_DAYS (a warning); the leaf names its
 *             [domain] as a DNS-ID (SAN dNSName, one-label wildcard; the CN
 *             only without SAN dNSNames: RFC 6125 §6.4), via the same
 *             x509_dns_id_match() the TLS layer uses
 *   key       a PEM private key, and the leaf's: a signature made with it
 *             verifies with the certificate's public key
 *   ca_file   a PEM bundle with at least one certificate that parses
 *   loading   finally the chain and key go through tls_ctx_add_cert(), the
 *             loader start-up uses, so nothing it refuses passes here
 *   listen,   no two endpoints overlap: the same address and port twice, a
 *   http      wildcard and a specific address of one family on one port
 *             (SO_REUSEPORT would let both bind and split the connections),
 *             or [::]:P beside a v4 listener on P that is not its dual-stack
 *             twin (same kind and options; sockets are IPV6_V6ONLY, so that
 *             pair is the way to listen on both families); and each address
 *             can be bound here (a probe without SO_REUSEPORT: EACCES or
 *             EADDRNOTAVAIL are errors; EADDRINUSE is left to
 *             check_ports_free() because -t may run beside the live hub)
 *
 * Messages carry the line of the directive: cfg keeps section lines, and the
 * directive's own line is found by reading the file again (a small scan; the
 * embedded default configuration has no file and gives the section line).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/openssl/x509v3.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include "net/alloc.h"
#include "net/tls.h"
#include "net/x509.h"
#include "router/check.h"
#include "router/nodelink.h"

struct chk {
	const char *file; /* the configuration's name in messages */
	FILE *err;
	int nerr;
	char *text; /* the configuration file, for directive lines; NULL if none */
};

static void say(struct chk *k, int line, const char *kind, const char *fmt, va_list ap)
{
	if (!k->err)
		return;
	if (line > 0)
		fprintf(k->err, "%s:%d: %s", k->file, line, kind);
	else
		fprintf(k->err, "%s: %s", k->file, kind);
	vfprintf(k->err, fmt, ap);
	fputc('\n', k->err);
}

__attribute__((format(printf, 3, 4))) static void error(struct chk *k, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	say(k, line, "", fmt, ap);
	va_end(ap);
	k->nerr++;
}

__attribute__((format(printf, 3, 4))) static void warning(struct chk *k, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	say(k, line, "warning: ", fmt, ap);
	va_end(ap);
}

/* Certificates, keys and CA bundles are small; a path to something endless
 * (a device, a FIFO fed forever) must not hang -t or start-up. */
#define CHECK_FILE_MAX (64u << 20)

/* The whole file, NUL-terminated; NULL with errno set (EFBIG beyond
 * CHECK_FILE_MAX). */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 8192, n = 0, r;
	char *buf;

	if (!f)
		return NULL;
	buf = xmalloc(cap);
	while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (n > CHECK_FILE_MAX) {
			fclose(f);
			free(buf);
			errno = EFBIG;
			return NULL;
		}
		if (cap - n - 1 == 0)
			buf = xrealloc(buf, cap *= 2);
	}
	fclose(f);
	buf[n] = 0;
	*len = n;
	return buf;
}

/* The line of the first `name` directive from line `from` on, within the
 * section that starts there (or from the top for [hub] directives, from = 1).
 * Falls back to `from` when the file cannot be scanned. */
static int directive_line(const struct chk *k, int from, const char *name)
{
	const char *p = k->text;
	size_t n = strlen(name);
	int line = 1;

	if (!p || from <= 0)
		return from;
	for (; *p; line++) {
		const char *eol = strchrnul(p, '\n');
		const char *s = p;
		while (s < eol && (*s == ' ' || *s == '\t'))
			s++;
		if (line > from && *s == '[')
			break; /* the next section */
		if (line >= from && (size_t)(eol - s) > n && !memcmp(s, name, n) && (s[n] == ' ' || s[n] == '\t'))
			return line;
		p = *eol ? eol + 1 : eol;
	}
	return from;
}

/* ---- certificates ------------------------------------------------------ */

#define PEM_BEGIN_CERT "-----BEGIN CERTIFICATE-----"
#define PEM_END_CERT   "-----END CERTIFICATE-----"

/* Each PEM certificate block of a file, as DER; returns the count of blocks
 * and of those that parsed (*good). The caller frees ders[i] and ders. */
static int pem_certs(const char *pem, size_t len, uint8_t ***ders, int **der_lens, int *good)
{
	const char *p = pem, *pe = pem + len;
	int n = 0, cap = 0;

	*ders = NULL;
	*der_lens = NULL;
	*good = 0;
	while ((p = memmem(p, (size_t)(pe - p), PEM_BEGIN_CERT, sizeof(PEM_BEGIN_CERT) - 1))) {
		const char *e = memmem(p, (size_t)(pe - p), PEM_END_CERT, sizeof(PEM_END_CERT) - 1);
		if (!e)
			e = pe;
		else
			e += sizeof(PEM_END_CERT) - 1;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			*ders = xrealloc(*ders, (size_t)cap * sizeof(**ders));
			*der_lens = xrealloc(*der_lens, (size_t)cap * sizeof(**der_lens));
		}
		uint8_t *der = xmalloc((size_t)(e - p));
		int r = wc_CertPemToDer((const unsigned char *)p, (int)(e - p), der, (int)(e - p), CERT_TYPE);
		if (r > 0) {
			/* the DER must also be a certificate wolfSSL can read */
			const unsigned char *q = der;
			WOLFSSL_X509 *x = wolfSSL_d2i_X509(NULL, &q, r);
			if (x)
				wolfSSL_X509_free(x);
			else
				r = -1;
		}
		if (r > 0) {
			(*good)++;
		} else {
			free(der);
			der = NULL;
			r = 0;
		}
		(*ders)[n] = der;
		(*der_lens)[n] = r;
		n++;
		p = e;
	}
	return n;
}

static void fmt_time(const WOLFSSL_ASN1_TIME *t, char *buf, size_t cap)
{
	struct tm tm;
	if (!t || wolfSSL_ASN1_TIME_to_tm(t, &tm) != WOLFSSL_SUCCESS || !strftime(buf, cap, "%Y-%m-%d %H:%M UTC", &tm))
		snprintf(buf, cap, "?");
}

/* Validity period of one certificate of a chain (index i, 0 = the leaf). */
static void check_dates(struct chk *k, int line, const struct cfg_domain *d, int i, WOLFSSL_X509 *x)
{
	const WOLFSSL_ASN1_TIME *nb = wolfSSL_X509_get_notBefore(x), *na = wolfSSL_X509_get_notAfter(x);
	time_t now = time(NULL), soon = now + (time_t)CHECK_EXPIRY_WARN_DAYS * 86400;
	char which[48] = "certificate", when[40];

	if (i > 0)
		snprintf(which, sizeof(which), "certificate %d of the chain", i + 1);
	if (!nb || !na) {
		error(k, line, "[domain %s]: cert %s: %s has no validity period", d->name, d->cert, which);
		return;
	}
	if (wolfSSL_X509_cmp_time(nb, &now) > 0) {
		fmt_time(nb, when, sizeof(when));
		error(k, line, "[domain %s]: cert %s: %s is not valid yet (not before %s)", d->name, d->cert, which,
		      when);
	}
	if (wolfSSL_X509_cmp_time(na, &now) < 0) {
		fmt_time(na, when, sizeof(when));
		error(k, line, "[domain %s]: cert %s: %s has expired (not after %s)", d->name, d->cert, which, when);
	} else if (wolfSSL_X509_cmp_time(na, &soon) < 0) {
		fmt_time(na, when, sizeof(when));
		warning(k, line, "[domain %s]: cert %s: %s expires within %d days (not after %s)", d->name, d->cert,
			which, CHECK_EXPIRY_WARN_DAYS, when);
	}
}

/* Does the leaf name `domain` as a DNS-ID? Lists what it names in `names`. */
static bool leaf_covers(WOLFSSL_X509 *x, const char *domain, char *names, size_t cap)
{
	WOLFSSL_STACK *sk = wolfSSL_X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	bool found = false;
	int ndns = 0;
	size_t used = 0;

	names[0] = 0;
	for (int i = 0; sk && i < wolfSSL_sk_GENERAL_NAME_num(sk); i++) {
		WOLFSSL_GENERAL_NAME *gn = wolfSSL_sk_GENERAL_NAME_value(sk, i);
		if (!gn || gn->type != GEN_DNS || !gn->d.dNSName)
			continue;
		const char *s = (const char *)wolfSSL_ASN1_STRING_data(gn->d.dNSName);
		int n = wolfSSL_ASN1_STRING_length(gn->d.dNSName);
		if (!s || n <= 0)
			continue;
		ndns++;
		found |= x509_dns_id_match(s, (size_t)n, domain) == 1;
		if (used + (size_t)n + 3 < cap)
			used += (size_t)snprintf(names + used, cap - used, "%s%.*s", used ? ", " : "", n, s);
	}
	if (sk)
		wolfSSL_sk_GENERAL_NAME_pop_free(sk, wolfSSL_GENERAL_NAME_free);
	if (ndns == 0) { /* RFC 6125 §6.4.4: the CN only without a DNS-ID */
		char cn[256];
		int n = wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(x), NID_commonName, cn,
							  sizeof(cn));
		if (n > 0) {
			found = x509_dns_id_match(cn, (size_t)n, domain) == 1;
			snprintf(names, cap, "CN %s", cn);
		}
	}
	if (!names[0])
		snprintf(names, cap, "no DNS name");
	return found;
}

/* Is `key` (DER) the private half of the leaf's public key? A signature
 * made with it must verify with the certificate. 1 yes, 0 no, -1 the key
 * type cannot be tested this way. */
static int key_matches(WOLFSSL_X509 *leaf, const uint8_t *key, int keylen)
{
	static const unsigned char msg[] = "fedhub key check";
	const unsigned char *p = key;
	WOLFSSL_EVP_PKEY *pub = wolfSSL_X509_get_pubkey(leaf);
	WOLFSSL_EVP_PKEY *priv = pub ? wolfSSL_d2i_PrivateKey(wolfSSL_EVP_PKEY_base_id(pub), NULL, &p, keylen) : NULL;
	WOLFSSL_EVP_MD_CTX *sc = wolfSSL_EVP_MD_CTX_new(), *vc = wolfSSL_EVP_MD_CTX_new();
	unsigned char sig[1024];
	size_t siglen = sizeof(sig);
	int rc = -1;

	if (pub && !priv) { /* a key of another type cannot be this certificate's */
		static const int types[] = {EVP_PKEY_RSA, EVP_PKEY_EC};
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]) && rc < 0; i++) {
			p = key;
			WOLFSSL_EVP_PKEY *other = wolfSSL_d2i_PrivateKey(types[i], NULL, &p, keylen);
			if (other) {
				wolfSSL_EVP_PKEY_free(other);
				rc = 0;
			}
		}
	}
	if (!priv || !pub || !sc || !vc)
		goto out;
	if (wolfSSL_EVP_DigestSignInit(sc, NULL, wolfSSL_EVP_sha256(), NULL, priv) != WOLFSSL_SUCCESS ||
	    wolfSSL_EVP_DigestSignUpdate(sc, msg, sizeof(msg)) != WOLFSSL_SUCCESS ||
	    wolfSSL_EVP_DigestSignFinal(sc, sig, &siglen) != WOLFSSL_SUCCESS)
		goto out;
	if (wolfSSL_EVP_DigestVerifyInit(vc, NULL, wolfSSL_EVP_sha256(), NULL, pub) != WOLFSSL_SUCCESS ||
	    wolfSSL_EVP_DigestVerifyUpdate(vc, msg, sizeof(msg)) != WOLFSSL_SUCCESS)
		goto out;
	rc = wolfSSL_EVP_DigestVerifyFinal(vc, sig, siglen) == WOLFSSL_SUCCESS;
out:
	if (sc)
		wolfSSL_EVP_MD_CTX_free(sc);
	if (vc)
		wolfSSL_EVP_MD_CTX_free(vc);
	if (priv)
		wolfSSL_EVP_PKEY_free(priv);
	if (pub)
		wolfSSL_EVP_PKEY_free(pub);
	return rc;
}

/* One [domain]'s cert and key; tls (may be NULL) is a scratch context for
 * the start-up loader. */
static void check_domain(struct chk *k, const struct cfg_domain *d, struct tls_ctx *tls)
{
	const char *key_path = d->key[0] ? d->key : d->cert;
	bool key_in_cert = !strcmp(key_path, d->cert);
	int cline = directive_line(k, d->line, "cert");
	int kline = key_in_cert ? cline : directive_line(k, d->line, "key");
	int before = k->nerr, good, ncerts, keylen = 0;
	uint8_t **ders = NULL, *keyder = NULL;
	int *der_lens = NULL;
	WOLFSSL_X509 *leaf = NULL;
	size_t clen = 0, klen = 0;
	char *cpem = read_file(d->cert, &clen), *kpem = NULL;

	if (!cpem) {
		error(k, cline, "[domain %s]: cert %s: cannot read: %s", d->name, d->cert, strerror(errno));
		return;
	}
	ncerts = pem_certs(cpem, clen, &ders, &der_lens, &good);
	if (ncerts == 0) {
		error(k, cline, "[domain %s]: cert %s: no PEM certificate in it", d->name, d->cert);
		goto out;
	}
	for (int i = 0; i < ncerts; i++) {
		if (!ders[i]) {
			error(k, cline, "[domain %s]: cert %s: certificate %d does not parse", d->name, d->cert, i + 1);
			continue;
		}
		const unsigned char *q = ders[i];
		WOLFSSL_X509 *x = wolfSSL_d2i_X509(NULL, &q, der_lens[i]);
		if (!x)
			continue;
		check_dates(k, cline, d, i, x);
		if (i == 0)
			leaf = x;
		else
			wolfSSL_X509_free(x);
	}
	if (leaf) {
		char names[400];
		if (!leaf_covers(leaf, d->name, names, sizeof(names)))
			error(k, cline, "[domain %s]: cert %s does not cover %s (it names: %s)", d->name, d->cert,
			      d->name, names);
	}

	kpem = key_in_cert ? cpem : read_file(key_path, &klen);
	if (key_in_cert)
		klen = clen;
	if (!kpem) {
		error(k, kline, "[domain %s]: key %s: cannot read: %s", d->name, key_path, strerror(errno));
		goto out;
	}
	keyder = xmalloc(klen + 1);
	keylen = wc_KeyPemToDer((const unsigned char *)kpem, (int)klen, keyder, (int)klen + 1, NULL);
	if (keylen <= 0) {
		if (key_in_cert)
			error(k, kline, "[domain %s]: cert %s holds no private key (add a `key FILE` line)", d->name,
			      d->cert);
		else
			error(k, kline, "[domain %s]: key %s: no PEM private key in it (or it is encrypted)", d->name,
			      key_path);
		goto out;
	}
	if (leaf && key_matches(leaf, keyder, keylen) == 0)
		error(k, kline, "[domain %s]: key %s does not match the certificate in %s", d->name, key_path, d->cert);

	/* The start-up loader itself: anything else it refuses is refused here. */
	if (tls && k->nerr == before) {
		int rc = tls_ctx_add_cert(tls, d->cert, key_path);
		if (rc < 0)
			error(k, cline, "[domain %s]: cannot load cert %s with key %s: %s", d->name, d->cert, key_path,
			      tls_strerror(rc));
	}
out:
	if (leaf)
		wolfSSL_X509_free(leaf);
	for (int i = 0; i < ncerts; i++)
		free(ders[i]);
	free(ders);
	free(der_lens);
	if (keyder)
		explicit_bzero(keyder, klen + 1);
	free(keyder);
	if (kpem && kpem != cpem) {
		explicit_bzero(kpem, klen);
		free(kpem);
	}
	if (cpem) {
		explicit_bzero(cpem, clen);
		free(cpem);
	}
}

static void check_ca_file(struct chk *k, const char *path)
{
	int line = directive_line(k, 1, "ca_file"), good = 0, n;
	uint8_t **ders;
	int *der_lens;
	size_t len;
	char *pem = read_file(path, &len);

	if (!pem) {
		error(k, line, "ca_file %s: cannot read: %s", path, strerror(errno));
		return;
	}
	n = pem_certs(pem, len, &ders, &der_lens, &good);
	if (good == 0)
		error(k, line, "ca_file %s: no PEM certificate in it that parses", path);
	else if (good < n)
		warning(k, line, "ca_file %s: %d of %d certificates do not parse and are ignored", path, n - good, n);
	for (int i = 0; i < n; i++)
		free(ders[i]);
	free(ders);
	free(der_lens);
	free(pem);
}

/* ---- listeners ----------------------------------------------------------- */

struct endpoint {
	char what[80]; /* "listen s2s 0.0.0.0:5269", "http 127.0.0.1:5280" */
	const struct cfg_addr *addr;
	int kind; /* enum cfg_listen_kind, or -1 for http */
	int tls;  /* s2s STARTTLS policy, -1 otherwise */
	bool proxy;
	int line;
	int family; /* v4-mapped v6 addresses count as v4 */
	uint8_t ip[16];
	bool any;
	int port;
};

static void endpoint_fill(struct endpoint *e)
{
	const struct sockaddr_storage *ss = &e->addr->ss;

	memset(e->ip, 0, sizeof(e->ip));
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		e->port = ntohs(s6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			e->family = AF_INET;
			memcpy(e->ip, &s6->sin6_addr.s6_addr[12], 4);
		} else {
			e->family = AF_INET6;
			memcpy(e->ip, &s6->sin6_addr, 16);
		}
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		e->port = ntohs(s4->sin_port);
		e->family = AF_INET;
		memcpy(e->ip, &s4->sin_addr, 4);
	}
	static const uint8_t zero[16];
	e->any = !memcmp(e->ip, zero, e->family == AF_INET ? 4 : 16);
}

static int endpoints(struct chk *k, const struct cfg *c, struct endpoint *out)
{
	int n = 0;

	for (int i = 0; i < c->nlisten; i++, n++) {
		const struct cfg_listen *l = &c->listen[i];
		out[n] = (struct endpoint){.addr = &l->addr,
					   .kind = (int)l->kind,
					   .tls = l->kind == CFG_LISTEN_COMPONENT ? -1 : (int)l->tls,
					   .proxy = l->proxy_protocol,
					   .line = l->line};
		snprintf(out[n].what, sizeof(out[n].what), "listen %s %s", cfg_listen_kind_name(l->kind), l->addr.text);
		endpoint_fill(&out[n]);
	}
	if (c->http.len) {
		out[n] = (struct endpoint){
			.addr = &c->http, .kind = -1, .tls = -1, .line = directive_line(k, 1, "http")};
		snprintf(out[n].what, sizeof(out[n].what), "http %s", c->http.text);
		endpoint_fill(&out[n]);
		n++;
	}
	return n;
}

/* Would a and b take connections meant for each other? */
static bool overlap(const struct endpoint *a, const struct endpoint *b)
{
	if (a->port != b->port)
		return false;
	if (a->family == b->family)
		return a->any || b->any || !memcmp(a->ip, b->ip, a->family == AF_INET ? 4 : 16);
	/* [::]:P and a v4 address on P: both families of one service is the
	 * dual-stack pair (the v6 socket is IPV6_V6ONLY); anything else means
	 * port P is two things depending on how a peer reaches the host. */
	const struct endpoint *v6 = a->family == AF_INET6 ? a : b;
	if (!v6->any)
		return false;
	return a->kind != b->kind || a->tls != b->tls || a->proxy != b->proxy;
}

/* Bind the address as the hub's listeners will, but without SO_REUSEPORT.
 * Returns 0 or -errno. */
static int probe_bind(const struct cfg_addr *a)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = 0;

	if (fd < 0)
		return -errno;
	/* SO_REUSEADDR: connections of a previous run in TIME_WAIT do not count */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static void check_listeners(struct chk *k, const struct cfg *c)
{
	struct endpoint ep[17];
	int n = endpoints(k, c, ep);

	for (int i = 0; i < n; i++) {
		bool dup = false;
		for (int j = 0; j < i; j++) {
			if (!overlap(&ep[i], &ep[j]))
				continue;
			error(k, ep[i].line, "%s overlaps %s (line %d): both would take connections on port %d",
			      ep[i].what, ep[j].what, ep[j].line, ep[i].port);
			dup = true;
		}
		if (dup)
			continue;
		int rc = probe_bind(ep[i].addr);
		if (rc < 0 && rc != -EADDRINUSE)
			error(k, ep[i].line, "%s: cannot bind: %s", ep[i].what, strerror(-rc));
	}
}

/* ---- public -------------------------------------------------------------- */

int check_config(const struct cfg *c, const char *file, FILE *err)
{
	struct chk k = {.file = file ? file : "router.conf (embedded default)", .err = err};
	size_t len;

	if (file)
		k.text = read_file(file, &len);
	if (c->ca_file[0])
		check_ca_file(&k, c->ca_file);
	struct tls_opts o = {.ca_file = c->ca_file[0] ? c->ca_file : NULL};
	struct tls_ctx *tls = k.nerr ? NULL : tls_ctx_new(&o);
	if (!tls && !k.nerr)
		error(&k, directive_line(&k, 1, "ca_file"), "cannot set up TLS with the CA bundle %s",
		      c->ca_file[0] ? c->ca_file : "of the system");
	for (int i = 0; i < c->ndomains; i++)
		if (c->domains[i].cert[0])
			check_domain(&k, &c->domains[i], tls);
	tls_ctx_free(tls);
	if (c->cluster.on && c->cluster.node_tls_cert[0]) {
		char why[1200];
		struct tls_ctx *nt = nl_tls_make(&c->cluster, why, sizeof(why));
		if (!nt)
			error(&k, directive_line(&k, 1, "node_tls"), "node_tls: %s", why);
		tls_ctx_free(nt);
	}
	check_listeners(&k, c);
	free(k.text);
	return k.nerr;
}

int check_ports_free(const struct cfg *c, FILE *err)
{
	struct chk k = {.file = "", .err = err};
	struct endpoint ep[17];
	int n = endpoints(&k, c, ep), held = 0;

	for (int i = 0; i < n; i++) {
		if (probe_bind(ep[i].addr) != -EADDRINUSE)
			continue;
		if (err)
			fprintf(err,
				"%s: address already in use: another fedhub (or another server) listens there; "
				"stop it, or start this one with --takeover to share the port while the old one "
				"stops\n",
				ep[i].what);
		held++;
	}
	return held;
}
