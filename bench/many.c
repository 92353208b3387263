/*
 * bench/many.c — the many-domains series: what a hub carrying thousands of
 * domains costs.
 *
 * Two kinds of run, each against a fedhub started afresh by target.sh:
 *   per-link K   s2s-component, closed loop, --links M links each
 *                piggybacking K bench domains (XEP-0220 §2.1: one dialback
 *                exchange per domain on the same stream): fedhub's CPU per
 *                stanza and throughput as the domains per link grow. The
 *                target knows the bench's domains by static [route]s.
 *   remote N     remote-domains: one component sends one stanza to each of
 *                N bench domains; fedhub resolves each through DNS (a
 *                dnsmasq target.sh starts on 127.0.0.1:22353, named by the
 *                `dns_server` directive), dials a link per domain to the
 *                bench's listener and authenticates it by dialback, then
 *                delivers. Reported: time until all N are up (the last first
 *                stanza delivered), the distribution of per-domain come-up
 *                times, failures (bounces by condition, and stanzas never
 *                delivered). Each link costs one fd on each side: a count
 *                above the hard RLIMIT_NOFILE is skipped and says so.
 *                The same again with static [route]s instead of DNS, which
 *                separates the resolver's share from link setup's.
 * The bench itself does not check the key of the target's <db:result/> (see
 * stream.c): the target's side of dialback is what is measured.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "bench/bench.h"

struct mrow {
	char key[48];
	const char *kind; /* "per-link" or "remote" */
	bool dns;         /* remote: by DNS (else static [route]s) */
	int per_link, links, domains;
	struct bench_opts o;
	struct bench_result r;
	char skipped[256];
};

static long md_proc_long(const char *path)
{
	long v = -1;
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static long md_hard_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	return rl.rlim_max == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_max;
}

static int md_list(const char *s, long *out, int max)
{
	char buf[128];
	int n = 0;
	snprintf(buf, sizeof buf, "%s", s);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		long v = strtol(tok, &end, 10);
		if (*end || v < 1)
			return -1;
		out[n++] = v;
	}
	return n;
}

static void md_run(struct mrow *m, const char *peers, const char *cpus)
{
	char dir[] = "/tmp/fhb-target-XXXXXX", err[256];
	if (!mkdtemp(dir)) {
		snprintf(m->skipped, sizeof m->skipped, "mkdtemp: %s", strerror(errno));
		return;
	}
	fprintf(stderr, "fedhub-bench: many-domains %s: starting fedhub (CPUs %s) in %s\n", m->key, cpus, dir);
	if (bench_target_start(peers, "fedhub", dir, cpus, &m->o, err, sizeof err) < 0) {
		snprintf(m->skipped, sizeof m->skipped, "%s", err);
		bench_target_stop(peers, "fedhub", dir);
		return;
	}
	int rc = bench_run(&m->o, &m->r);
	bench_target_stop(peers, "fedhub", dir);
	bench_report(stdout, &m->o, m->key, &m->r);
	if (rc < 0 && m->r.delivered == 0)
		snprintf(m->skipped, sizeof m->skipped, "failed: %.240s",
			 m->r.error[0] ? m->r.error : "nothing delivered");
}

static void md_conds(FILE *f, const struct bench_result *r)
{
	if (!r->ncond) {
		fprintf(f, "-");
		return;
	}
	for (int i = 0; i < r->ncond; i++)
		fprintf(f, "%s%s %llu", i ? ", " : "", r->cond[i].name, (unsigned long long)r->cond[i].n);
}

int bench_many_domains(const struct bench_opts *base, const char *json, const char *cmdline, const char *target_cpus)
{
	long per[8], rem[8];
	int nper = md_list(base->per_link, per, 8), nrem = md_list(base->remote, rem, 8);
	if (nper < 0 || nrem < 0) {
		fprintf(stderr, "fedhub-bench: --per-link and --remote take lists of counts, e.g. 1,64,1000\n");
		return 2;
	}
	char peers[PATH_MAX];
	if (bench_find_peers(peers, sizeof peers) < 0) {
		fprintf(stderr, "fedhub-bench: cannot find bench/peers/target.sh\n");
		return 2;
	}
	char cpus[128] = "";
	if (target_cpus) {
		snprintf(cpus, sizeof cpus, "%s", target_cpus);
	} else {
		int n = (int)sysconf(_SC_NPROCESSORS_ONLN);
		for (int i = 0; i < n; i++) {
			bool mine = false;
			for (int j = 0; j < base->ncpus; j++)
				mine |= base->cpus[j] == i;
			if (!mine) {
				size_t l = strlen(cpus);
				snprintf(cpus + l, sizeof cpus - l, "%s%d", l ? "," : "", i);
			}
		}
		if (!cpus[0])
			snprintf(cpus, sizeof cpus, "0-%d", n - 1);
	}
	/* the bench's and fedhub's limits: target.sh raises fedhub's to the same
	 * hard limit. As root the hard limit itself is raised (up to
	 * fs.nr_open) to what the largest --remote needs: a link per domain in
	 * fedhub, that link's other end and a verification stream in the bench */
	long maxrem = 0;
	for (int i = 0; i < nrem; i++)
		maxrem = rem[i] > maxrem ? rem[i] : maxrem;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rlim_t want = (rlim_t)(2 * maxrem + 1000), nr_open = (rlim_t)md_proc_long("/proc/sys/fs/nr_open");
		if (nr_open > 0 && want > nr_open)
			want = nr_open;
		if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max) {
			struct rlimit up = {want, want};
			if (setrlimit(RLIMIT_NOFILE, &up) == 0)
				rl = up;
		}
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	long hard = md_hard_nofile();
	fprintf(stderr, "fedhub-bench: many-domains: RLIMIT_NOFILE raised to the hard limit, %ld\n", hard);
	/* every link goes to the bench's one listener address: one loopback
	 * source address has the ephemeral port range for it */
	long plo = 0, phi = 0;
	FILE *pr = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (pr) {
		if (fscanf(pr, "%ld %ld", &plo, &phi) != 2)
			plo = phi = 0;
		fclose(pr);
	}
	long ports = phi > plo ? phi - plo + 1 : 0;

	struct mrow *rows = calloc((size_t)(nper + 2 * nrem), sizeof *rows);
	if (!rows) {
		fprintf(stderr, "fedhub-bench: out of memory\n");
		return 2;
	}
	int nr = 0, worst = 0;
	int links = base->links > 0 ? base->links : 2;
	for (int i = 0; i < nper; i++) {
		struct mrow *m = &rows[nr++];
		snprintf(m->key, sizeof m->key, "per-link-%ld", per[i]);
		m->kind = "per-link";
		m->per_link = (int)per[i];
		m->links = links;
		m->domains = links * (int)per[i];
		m->o = *base;
		m->o.scenario = BS_S2S_COMPONENT;
		m->o.links = links;
		m->o.domains = m->domains;
		m->o.rate = 0;
		m->o.dns = false;
		md_run(m, peers, cpus);
	}
	for (int i = 0; i < 2 * nrem; i++) {
		struct mrow *m = &rows[nr++];
		bool dns = i % 2 == 0;
		snprintf(m->key, sizeof m->key, "remote-%ld%s", rem[i / 2], dns ? "" : "-routes");
		m->kind = "remote";
		m->dns = dns;
		m->domains = (int)rem[i / 2];
		long need = m->domains + 500;
		/* both limits, as far as they stop it (skipped holds 256 bytes) */
		int sk = 0;
		if (hard > 0 && need > hard)
			sk = snprintf(m->skipped, sizeof m->skipped,
				      "%d remote domains need about %ld fds in the bench and in fedhub (one link "
				      "each); the hard RLIMIT_NOFILE is %ld",
				      m->domains, need, hard);
		if (ports > 0 && need > ports && sk > 0 && (size_t)sk < sizeof m->skipped)
			snprintf(m->skipped + sk, sizeof m->skipped - (size_t)sk,
				 "; and as many connections from fedhub to the bench's one listener address: the "
				 "ephemeral ports %ld-%ld give %ld",
				 plo, phi, ports);
		else if (ports > 0 && need > ports)
			snprintf(m->skipped, sizeof m->skipped,
				 "%d remote domains need about %ld connections from fedhub to the bench's one listener "
				 "address: the ephemeral ports %ld-%ld give %ld",
				 m->domains, need, plo, phi, ports);
		if (m->skipped[0]) {
			fprintf(stderr, "fedhub-bench: many-domains %s skipped: %s\n", m->key, m->skipped);
			continue;
		}
		m->o = *base;
		m->o.scenario = BS_REMOTE_UP;
		m->o.links = 0;
		m->o.components = 1;
		m->o.have_comp = true;
		m->o.domains = m->domains;
		m->o.dns = dns;
		/* the run lasts until every domain is up or this bound passes */
		m->o.drain = base->setup_timeout;
		md_run(m, peers, cpus);
	}

	printf("\nmany-domains against fedhub: s2s -> component with K domains per link (%d links, closed loop)\n",
	       links);
	printf("| domains per link | domains | setup s | stanzas/s | CPU us/stanza | p99 ms | lost | result |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|---|\n");
	for (int i = 0; i < nr; i++) {
		struct mrow *m = &rows[i];
		if (strcmp(m->kind, "per-link"))
			continue;
		const struct bench_result *r = &m->r;
		double rate = r->measured_s > 0 ? (double)r->measured_delivered / r->measured_s : 0;
		double cpu = r->measured_delivered ? r->target_cpu_s * 1e6 / (double)r->measured_delivered : 0;
		printf("| %d | %d | %.2f | %.0f | %.2f | %.3f | %llu | %s |\n", m->per_link, m->domains, r->setup_s,
		       rate, cpu, bench_hist_quantile(&r->hist, 0.99) / 1e6, (unsigned long long)r->lost,
		       m->skipped[0] ? m->skipped
		       : r->error[0] ? r->error
				     : "clean");
	}
	printf("\nmany-domains against fedhub: N new remote domains (an outbound link and dialback each; found by DNS "
	       "or by static routes)\n");
	printf("| remote domains | found by | all up s | come-up p50 ms | p99 ms | delivered | bounced (by condition) "
	       "| "
	       "lost | peak RSS MiB | KiB per domain | UDP drops | result |\n");
	printf("|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|\n");
	for (int i = 0; i < nr; i++) {
		struct mrow *m = &rows[i];
		if (strcmp(m->kind, "remote"))
			continue;
		const struct bench_result *r = &m->r;
		printf("| %d | %s | %.2f | %.3f | %.3f | %llu | %llu (", m->domains, m->dns ? "DNS" : "routes",
		       r->drain_s, bench_hist_quantile(&r->hist, 0.5) / 1e6, bench_hist_quantile(&r->hist, 0.99) / 1e6,
		       (unsigned long long)r->delivered, (unsigned long long)r->bounced);
		md_conds(stdout, r);
		char res[64];
		snprintf(res, sizeof res, r->bounced + r->lost ? "%llu of %d failed" : "all up",
			 (unsigned long long)(r->bounced + r->lost), m->domains);
		/* what the domains added: the peak over fedhub's RSS before the run */
		double kib = r->target_peak_kib > r->target_rss_before_kib && m->domains
				     ? (double)(r->target_peak_kib - r->target_rss_before_kib) / m->domains
				     : 0;
		printf(") | %llu | %.1f | %.2f | %lld | %s |\n", (unsigned long long)r->lost,
		       r->target_peak_kib / 1024.0, kib, (long long)r->udp_rcvbuf_drops,
		       m->skipped[0] ? m->skipped
		       : r->error[0] ? r->error
				     : res);
	}
	for (int i = 0; i < nr; i++) {
		const struct mrow *m = &rows[i];
		if (m->skipped[0] && strncmp(m->skipped, "failed", 6) == 0)
			worst = 2;
		else if (!m->skipped[0] && (m->r.lost || m->r.out_of_order || m->r.bounced) && worst < 1)
			worst = 1;
	}

	if (json) {
		FILE *f = fopen(json, "w");
		if (!f) {
			fprintf(stderr, "fedhub-bench: %s: %s\n", json, strerror(errno));
			free(rows);
			return 2;
		}
		fprintf(f, "{\"scenario\":\"many-domains\",\"command\":\"");
		for (const char *p = cmdline; *p; p++) {
			if (*p == '"' || *p == '\\')
				fputc('\\', f);
			fputc(*p, f);
		}
		fprintf(f,
			"\",\"links\":%d,\"seconds\":%.1f,\"warmup\":%.1f,\"nofile_hard\":%ld,\"dns\":\"dnsmasq on "
			"127.0.0.1:22353 (fedhub's dns_server)\",",
			links, base->seconds, base->warmup, hard);
		bench_json_machine(f);
		fprintf(f, ",\"rows\":[");
		for (int i = 0; i < nr; i++)
			fprintf(f,
				"%s{\"key\":\"%s\",\"kind\":\"%s\",\"per_link\":%d,\"links\":%d,\"domains\":%d,"
				"\"dns\":%s}",
				i ? "," : "", rows[i].key, rows[i].kind, rows[i].per_link, rows[i].links,
				rows[i].domains, rows[i].dns ? "true" : "false");
		fprintf(f, "],\"targets\":{");
		for (int i = 0; i < nr; i++) {
			if (i)
				fputc(',', f);
			bench_json_target(f, rows[i].key, &rows[i].r, rows[i].skipped);
		}
		fprintf(f, "}}\n");
		fclose(f);
	}
	free(rows);
	return worst;
}
