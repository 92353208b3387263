/*
 * bench/tls_bench.c — what the TLS engine (net/tls.c) costs, in memory, one thread.
 *
 * bench_handshakes: client and server endpoints in one thread, bytes pumped
 * between their buffers (no sockets, so only TLS is measured). CPU time is
 * taken per side with CLOCK_THREAD_CPUTIME_ID around each side's calls, so
 * the report gives a pair rate (client + server work) and a server-only
 * rate per core (what an inbound-heavy hub sees), for full TLS 1.3
 * handshakes with mutual certificate verification and for resumed ones.
 * Then the bulk cost of 300-byte stanzas written many to a record (write on
 * one side + read on the other, per stanza), and the memory an idle link
 * holds after its handshake (1,000 links; jemalloc's stats.allocated when
 * the binary uses jemalloc, else glibc mallinfo2).
 *
 * bench_tls_certload: start-up with many domains — generates N EC P-256
 * certificates (wolfSSL certgen, one key each) in a temp dir, then times
 * tls_ctx_add_cert for all of them and reports time and bytes per cert.
 *
 * Certificates come from tests/certs/mkcerts.sh (run from the repository
 * root, or FEDHUB_SRCDIR) into a temp dir removed at the end.
 * Build alone: cc -DTLS_BENCH_MAIN ... bench/tls_bench.c net/tls.c -lwolfssl
 */
#include <wolfssl/options.h>

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/tls.h"
#include "tests/certs/certgen.h"

int bench_handshakes(int argc, char **argv);
int bench_tls_certload(int argc, char **argv);

/* jemalloc, when linked in (fedhub-bench links it); weak so glibc builds work */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) __attribute__((weak));

static size_t tb_allocated(void)
{
	if (mallctl) {
		uint64_t epoch = 1;
		size_t sz = sizeof(epoch), v = 0, vl = sizeof(v);
		mallctl("epoch", &epoch, &sz, &epoch, sz);
		if (mallctl("stats.allocated", &v, &vl, NULL, 0) == 0)
			return v;
	}
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static double tb_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double tb_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct tb_pki {
	char dir[64];
};

static int tb_pki_make(struct tb_pki *k)
{
	char cmd[512];
	const char *src = getenv("FEDHUB_SRCDIR");
	snprintf(k->dir, sizeof(k->dir), "/tmp/fedhub-tlsbench-XXXXXX");
	if (!mkdtemp(k->dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "sh %s/tests/certs/mkcerts.sh %s", src ? src : ".", k->dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void tb_pki_rm(struct tb_pki *k)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", k->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "tls_bench: could not remove %s\n", k->dir);
}

static struct tls_ctx *tb_ctx(struct tb_pki *k, const char *cert, unsigned cache)
{
	char ca[128], c[128], key[128];
	snprintf(ca, sizeof(ca), "%s/ca.pem", k->dir);
	snprintf(c, sizeof(c), "%s/%s.pem", k->dir, cert);
	snprintf(key, sizeof(key), "%s/%s.key", k->dir, cert);
	struct tls_opts o = {.ca_file = ca, .verify_required = true, .session_cache = cache};
	struct tls_ctx *x = tls_ctx_new(&o);
	if (!x || tls_ctx_add_cert(x, c, key) < 1) {
		tls_ctx_free(x);
		return NULL;
	}
	return x;
}

/* One side's state plus the CPU it used. */
struct tb_end {
	struct tls_conn *c;
	int hs;
	double cpu;
	size_t rx;
};

static unsigned char tb_sink[64 * 1024];

static void tb_step(struct tb_end *e)
{
	double t = tb_cpu();
	if (e->hs == 0)
		e->hs = tls_handshake(e->c);
	if (e->hs == 1) {
		ssize_t n;
		while ((n = tls_read(e->c, tb_sink, sizeof(tb_sink))) > 0)
			e->rx += (size_t)n;
	}
	e->cpu += tb_cpu() - t;
}

static size_t tb_xfer(struct tb_end *a, struct tb_end *b)
{
	const void *p;
	size_t n, moved = 0;
	while ((n = tls_pending_out(a->c, &p)) > 0) {
		double t = tb_cpu();
		int r = tls_feed(b->c, p, n);
		tls_consume_out(a->c, n);
		b->cpu += tb_cpu() - t; /* the copy is the receiver's cost */
		if (r < 0)
			return 0;
		moved += n;
		tb_step(b);
	}
	return moved;
}

static int tb_pair(struct tb_end *cl, struct tb_end *sv)
{
	tb_step(cl);
	for (int i = 0; i < 100; i++)
		if (tb_xfer(cl, sv) + tb_xfer(sv, cl) == 0)
			break;
	return cl->hs == 1 && sv->hs == 1 ? 0 : -1;
}

struct tb_hs {
	double pair_rate, server_rate, client_rate;
	int resumed;
};

/* n handshakes; each pair is freed right away. */
static int tb_handshakes(struct tls_ctx *sx, struct tls_ctx *cx, int n, bool alternate, struct tb_hs *out)
{
	double csum = 0, ssum = 0;
	out->resumed = 0;
	for (int i = 0; i < n; i++) {
		struct tb_end sv = {.c = tls_conn_new(sx, true, NULL, NULL)};
		double t = tb_cpu();
		const char *remote = alternate && (i & 1) ? "x.wild.example" : "a.example";
		struct tb_end cl = {.c = tls_conn_new(cx, false, remote, "c.example")};
		cl.cpu += tb_cpu() - t;
		if (!sv.c || !cl.c || tb_pair(&cl, &sv) < 0) {
			fprintf(stderr, "tls_bench: handshake failed: %s / %s\n", cl.c ? tls_error(cl.c) : "-",
				sv.c ? tls_error(sv.c) : "-");
			return -1;
		}
		out->resumed += tls_resumed(cl.c);
		t = tb_cpu();
		tls_conn_free(cl.c);
		cl.cpu += tb_cpu() - t;
		t = tb_cpu();
		tls_conn_free(sv.c);
		sv.cpu += tb_cpu() - t;
		csum += cl.cpu;
		ssum += sv.cpu;
	}
	out->pair_rate = n / (csum + ssum);
	out->server_rate = n / ssum;
	out->client_rate = n / csum;
	return 0;
}

int bench_handshakes(int argc, char **argv)
{
	const char *json = NULL;
	int n = 2000, links = 1000, stanzas = 200000;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--links") && i + 1 < argc)
			links = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: handshakes [--count N] [--links N] [--json FILE]\n");
			return 2;
		}
	}
	struct tb_pki k;
	if (tb_pki_make(&k) < 0) {
		fprintf(stderr, "tls_bench: mkcerts.sh failed (run from the repository root or set FEDHUB_SRCDIR)\n");
		return 1;
	}
	int rc = 1;
	struct tls_ctx *sx = tb_ctx(&k, "a", 0), *cx = tb_ctx(&k, "c", 1), *cx2 = tb_ctx(&k, "c", 0);
	struct tb_end *sv = NULL, *cl = NULL;
	if (!sx || !cx || !cx2)
		goto out;
	/* mkcerts' names are short; the paths below fit */
	printf("%s\n", tls_library_info());

	/* full handshakes: cx has a one-slot session cache and the remote name
	 * alternates between two names of the server's certificate, so every
	 * lookup misses; cx2 keeps resuming "a.example". */
	struct tb_hs full, res;
	if (tb_handshakes(sx, cx, n, true, &full) < 0 || full.resumed != 0)
		goto out;
	if (tb_handshakes(sx, cx2, 1, false, &res) < 0 || tb_handshakes(sx, cx2, n, false, &res) < 0)
		goto out;
	printf("full TLS 1.3 handshake, mutual verification: %.0f pairs/s (client+server on one core), "
	       "server side %.0f/s per core, client side %.0f/s per core\n",
	       full.pair_rate, full.server_rate, full.client_rate);
	printf("resumed TLS 1.3 handshake (ticket): %.0f pairs/s, server side %.0f/s per core, "
	       "client side %.0f/s per core (%d of %d resumed)\n",
	       res.pair_rate, res.server_rate, res.client_rate, res.resumed, n);

	/* bulk: 300-byte stanzas, 50 per tls_write (one ~15 KB record), written and read */
	double us_stanza = 0;
	const char *cipher = "";
	{
		struct tb_end s = {.c = tls_conn_new(sx, true, NULL, NULL)};
		struct tb_end c = {.c = tls_conn_new(cx2, false, "a.example", "c.example")};
		if (!s.c || !c.c || tb_pair(&c, &s) < 0)
			goto out;
		cipher = tls_cipher(c.c);
		enum { PER = 50, SZ = 300 };
		static unsigned char batch[PER * SZ];
		memset(batch, 'x', sizeof(batch));
		s.cpu = c.cpu = 0;
		s.rx = 0;
		int batches = stanzas / PER;
		for (int i = 0; i < batches; i++) {
			double t = tb_cpu();
			if (tls_write(c.c, batch, sizeof(batch)) < 0)
				goto out;
			c.cpu += tb_cpu() - t;
			tb_xfer(&c, &s);
		}
		if (s.rx != (size_t)batches * sizeof(batch)) {
			fprintf(stderr, "tls_bench: bulk lost bytes\n");
			goto out;
		}
		us_stanza = (c.cpu + s.cpu) * 1e6 / (batches * PER);
		printf("bulk: %.3f us per 300-byte stanza (write + read, %d per record, %s)\n", us_stanza, PER, cipher);
		tls_conn_free(c.c);
		tls_conn_free(s.c);
	}

	/* memory per idle link after the handshake, tickets read */
	sv = calloc((size_t)links, sizeof(*sv));
	cl = calloc((size_t)links, sizeof(*cl));
	if (!sv || !cl)
		goto out;
	size_t m0 = tb_allocated();
	for (int i = 0; i < links; i++) {
		sv[i].c = tls_conn_new(sx, true, NULL, NULL);
		/* cx: every link a full handshake, so each holds its peer's certificate */
		cl[i].c = tls_conn_new(cx, false, i & 1 ? "x.wild.example" : "a.example", "c.example");
		if (!sv[i].c || !cl[i].c || tb_pair(&cl[i], &sv[i]) < 0)
			goto out;
	}
	size_t m1 = tb_allocated();
	/* then one full record each way: wolfSSL grows its buffers for a 16 KB
	 * record; an idle link must give that back */
	static unsigned char rec[16000];
	memset(rec, 'z', sizeof(rec));
	for (int i = 0; i < links; i++) {
		if (tls_write(cl[i].c, rec, sizeof(rec)) < 0 || tls_write(sv[i].c, rec, sizeof(rec)) < 0)
			goto out;
		tb_xfer(&cl[i], &sv[i]);
		tb_xfer(&sv[i], &cl[i]);
	}
	size_t m1t = tb_allocated();
	printf("idle links after a 16 KB record each way: %+.0f B per pair vs. right after the handshake\n",
	       ((double)m1t - (double)m1) / links);
	for (int i = 0; i < links; i++) {
		tls_conn_free(cl[i].c);
		cl[i].c = NULL;
	}
	size_t m2 = tb_allocated();
	double per_server = ((double)m2 - (double)m0) / links, per_client = ((double)m1t - (double)m2) / links;
	printf("idle link memory after handshake and traffic (%d links, %s): server side %.0f B, client side %.0f B\n",
	       links, mallctl ? "jemalloc stats.allocated" : "glibc mallinfo2", per_server, per_client);

	if (json) {
		FILE *f = fopen(json, "w");
		if (!f)
			goto out;
		fprintf(f,
			"{\"library\": \"%s\", \"cipher\": \"%s\",\n"
			" \"full_handshake_pairs_per_s\": %.0f, \"full_handshake_server_per_core_s\": %.0f,"
			" \"full_handshake_client_per_core_s\": %.0f,\n"
			" \"resumed_handshake_pairs_per_s\": %.0f, \"resumed_handshake_server_per_core_s\": %.0f,"
			" \"resumed_handshake_client_per_core_s\": %.0f,\n"
			" \"us_per_stanza_300B\": %.4f,\n"
			" \"idle_link_bytes_server\": %.0f, \"idle_link_bytes_client\": %.0f}\n",
			tls_library_info(), cipher, full.pair_rate, full.server_rate, full.client_rate, res.pair_rate,
			res.server_rate, res.client_rate, us_stanza, per_server, per_client);
		fclose(f);
	}
	rc = 0;
out:
	if (sv) {
		for (int i = 0; i < links; i++)
			tls_conn_free(sv[i].c);
		free(sv);
	}
	if (cl) {
		for (int i = 0; i < links; i++)
			tls_conn_free(cl[i].c);
		free(cl);
	}
	tls_ctx_free(sx);
	tls_ctx_free(cx);
	tls_ctx_free(cx2);
	tb_pki_rm(&k);
	return rc;
}

int bench_tls_certload(int argc, char **argv)
{
	int n = 10000;
	const char *json = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--count") && i + 1 < argc)
			n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else {
			fprintf(stderr, "usage: certload [--count N] [--json FILE]\n");
			return 2;
		}
	}
	struct tb_pki k;
	char sub[96], c[160], key[160], d[32], ca[96];
	struct certgen g;
	int rc = 1;
	if (tb_pki_make(&k) < 0)
		return 1;
	snprintf(sub, sizeof(sub), "%s/many", k.dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", k.dir);
	snprintf(c, sizeof(c), "%s/ca.key", k.dir);
	double t0 = tb_wall();
	if (mkdir(sub, 0700) < 0 || certgen_init(&g, ca, c, false) < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		snprintf(d, sizeof(d), "host%05d.example", i);
		if (certgen_domain(&g, sub, d) < 0)
			goto out;
	}
	certgen_free(&g);
	double gen = tb_wall() - t0;

	struct tls_opts o = {.ca_file = ca};
	struct tls_ctx *x = tls_ctx_new(&o);
	if (!x)
		goto out;
	size_t m0 = tb_allocated();
	t0 = tb_wall();
	for (int i = 0; i < n; i++) {
		snprintf(d, sizeof(d), "host%05d.example", i);
		snprintf(c, sizeof(c), "%s/%s.pem", sub, d);
		snprintf(key, sizeof(key), "%s/%s.key", sub, d);
		if (tls_ctx_add_cert(x, c, key) != 1) {
			fprintf(stderr, "tls_bench: loading %s failed\n", c);
			tls_ctx_free(x);
			goto out;
		}
	}
	double load = tb_wall() - t0;
	size_t m1 = tb_allocated();
	printf("%d certificates (EC P-256, one key each): generated in %.2f s; loaded in %.3f s "
	       "(%.1f us/cert), %.0f bytes/cert (%s)\n",
	       n, gen, load, load * 1e6 / n, (double)(m1 - m0) / n, mallctl ? "jemalloc" : "mallinfo2");
	if (json) {
		FILE *f = fopen(json, "w");
		if (f) {
			fprintf(f,
				"{\"certs\": %d, \"load_s\": %.4f, \"us_per_cert\": %.2f, \"bytes_per_cert\": %.0f}\n",
				n, load, load * 1e6 / n, (double)(m1 - m0) / n);
			fclose(f);
		}
	}
	tls_ctx_free(x);
	rc = 0;
out:
	tb_pki_rm(&k);
	return rc;
}

#ifdef TLS_BENCH_MAIN
int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "certload"))
		return bench_tls_certload(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "handshakes"))
		return bench_handshakes(argc - 1, argv + 1);
	fprintf(stderr, "usage: %s handshakes|certload [options]\n", argv[0]);
	return 2;
}
#endif
