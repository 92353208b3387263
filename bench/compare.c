/*
 * bench/compare.c — compare mode: each named target started in turn with the
 * configs in bench/peers/ (through bench/peers/target.sh, so the same script
 * serves the suite and a person at a shell), the same scenario run against
 * each at every --rates rate, the target stopped, and one table printed with
 * ratios to fedhub. `direct` is no target at all: the links reach the bench's
 * own far end.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bench/bench.h"
#include "bench/main-int.h"

/* ---- compare: start/stop targets with bench/peers/target.sh --------------------- */

int bench_find_peers(char *out, size_t cap)
{
	const char *env = getenv("FHB_PEERS");
	char exe[PATH_MAX], cand[PATH_MAX + 64];
	if (env) {
		snprintf(out, cap, "%s", env);
		return 0;
	}
	if (access("bench/peers/target.sh", X_OK) == 0) {
		snprintf(out, cap, "%.4000s/bench/peers", getcwd(exe, sizeof exe) ? exe : ".");
		return 0;
	}
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		/* build/release/fedhub-bench -> ../../bench/peers */
		for (int up = 1; up <= 3; up++) {
			char *s = strrchr(exe, '/');
			if (!s)
				break;
			*s = 0;
			snprintf(cand, sizeof cand, "%s/bench/peers/target.sh", exe);
			if (access(cand, X_OK) == 0) {
				snprintf(out, cap, "%.4000s/bench/peers", exe);
				return 0;
			}
		}
	}
	return -1;
}

/* Runs `target.sh start NAME DIR CPUS NDOMAINS [tls]`; reads key=value lines it prints. */
int bench_target_start(const char *peers, const char *name, const char *dir, const char *cpus, struct bench_opts *o,
		       char *err, size_t errcap)
{
	char cmd[PATH_MAX + 1024], opts[96];
	/* the target must know the bench's domains (static routes, DNS records) */
	snprintf(opts, sizeof opts, "%s%s%s%s%s", o->tls ? "tls" : "", o->tls && o->dns ? "," : "", o->dns ? "dns" : "",
		 o->scenario == BS_S2S_BACKEND && (o->tls || o->dns) ? "," : "",
		 o->scenario == BS_S2S_BACKEND ? "backend" : "");
	if (o->stall_timeout_s) {
		size_t l = strlen(opts);
		snprintf(opts + l, sizeof opts - l, "%sstall=%d", l ? "," : "", o->stall_timeout_s);
	}
	snprintf(cmd, sizeof cmd, "'%s/target.sh' start '%s' '%s' '%s' %d %s", peers, name, dir, cpus, o->domains,
		 opts);
	FILE *p = popen(cmd, "r");
	if (!p) {
		snprintf(err, errcap, "cannot run target.sh: %s", strerror(errno));
		return -1;
	}
	char line[512];
	bool have_pid = false, have_tls = false;
	err[0] = 0;
	while (fgets(line, sizeof line, p)) {
		line[strcspn(line, "\n")] = 0;
		char v[480];
		if (sscanf(line, "pid=%d", &o->target_pid) == 1)
			have_pid = true;
		else if (sscanf(line, "s2s=%479s", v) == 1)
			bm_parse_addr(v, &o->target_s2s);
		else if (sscanf(line, "comp=%479s", v) == 1) {
			bm_parse_addr(v, &o->target_comp);
			o->have_comp = true;
		} else if (sscanf(line, "http=%479s", v) == 1) {
			o->have_http = bm_parse_addr(v, &o->target_http) == 0;
		} else if (sscanf(line, "relay=%479s", v) == 1) {
			bm_parse_addr(v, &o->relay_listen);
			o->relay = true;
			o->have_comp = false;
		} else if (sscanf(line, "tls_dir=%479s", v) == 1) {
			bm_tls_dir(o, v);
			have_tls = true;
		} else if (strncmp(line, "error=", 6) == 0)
			snprintf(err, errcap, "%.200s", line + 6);
	}
	int st = pclose(p);
	if (st != 0 || !have_pid) {
		if (!err[0])
			snprintf(err, errcap, "target.sh start %s failed (status %d)", name, st);
		return -1;
	}
	if (o->tls && !have_tls) {
		snprintf(err, errcap, "target.sh set %s up without TLS certificates", name);
		return -1;
	}
	return 0;
}

void bench_target_stop(const char *peers, const char *name, const char *dir)
{
	char cmd[PATH_MAX + 1024];
	snprintf(cmd, sizeof cmd, "'%s/target.sh' stop '%s' '%s' >/dev/null", peers, name, dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fedhub-bench: stopping %s reported an error\n", name);
}

static void bm_print_table(FILE *f, const struct bench_opts *o, struct bm_named *t, int nt)
{
	const struct bench_result *ref = NULL;
	for (int i = 0; i < nt; i++)
		if (strcmp(t[i].name, "fedhub") == 0 && t[i].ran && !t[i].skipped[0])
			ref = &t[i].r;
	fprintf(f, "\n%s, %s, %d links x %d domains, %d component(s), %d-byte messages\n",
		bm_scenario_name(o->scenario),
		o->rates[0]               ? "rate sweep (open loop, max = closed loop)"
		: o->scenario == BS_BURST ? "burst"
		: o->rate > 0             ? "open loop"
					  : "closed loop",
		o->links, o->domains, o->components, o->size);
	if (o->scenario == BS_IDLE_LINKS) {
		fprintf(f, "| target | links up | setup s | RSS before MiB | RSS with links MiB | KiB per link | idle "
			   "CPU %% | alive (delivered/sent) |\n");
		fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---|\n");
		for (int i = 0; i < nt; i++) {
			const struct bench_result *r = &t[i].r;
			if (t[i].skipped[0]) {
				fprintf(f, "| %s | skipped: %s |||||||\n", t[i].name, t[i].skipped);
				continue;
			}
			fprintf(f, "| %s | %d/%d | %.2f | %.1f | %.1f | %.1f | %.2f | %llu/%llu |\n", t[i].name,
				r->links_up, r->links_wanted, r->setup_s, r->target_rss_before_kib / 1024.0,
				r->target_rss_kib / 1024.0,
				r->links_up
					? ((double)r->target_rss_kib - (double)r->target_rss_before_kib) / r->links_up
					: 0,
				r->measured_s > 0 ? 100 * r->target_cpu_s / r->measured_s : 0,
				(unsigned long long)r->delivered, (unsigned long long)r->sent);
		}
		return;
	}
	fprintf(f, "| target | stanzas/s | CPU us/stanza | p50 ms | p99 ms | p99.9 ms | RSS MiB | lost | out of order "
		   "| vs fedhub (rate, CPU) |\n");
	fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
	for (int i = 0; i < nt; i++) {
		const struct bench_result *r = &t[i].r;
		if (t[i].skipped[0]) {
			fprintf(f, "| %s | skipped: %s |||||||||\n", t[i].name, t[i].skipped);
			continue;
		}
		char ratio[64] = "n/a";
		if (ref && bm_rate(ref) > 0 && bm_cpu_us(r) > 0)
			snprintf(ratio, sizeof ratio, "%.2fx, %.2fx", bm_rate(r) / bm_rate(ref),
				 bm_cpu_us(r) / (bm_cpu_us(ref) > 0 ? bm_cpu_us(ref) : 1));
		else if (ref == r)
			snprintf(ratio, sizeof ratio, "1.00x, 1.00x");
		fprintf(f, "| %s | %.0f | %.2f | %.3f | %.3f | %.3f | %.1f | %llu | %llu | %s |\n", t[i].name,
			bm_rate(r), bm_cpu_us(r), bench_hist_quantile(&r->hist, 0.5) / 1e6,
			bench_hist_quantile(&r->hist, 0.99) / 1e6, bench_hist_quantile(&r->hist, 0.999) / 1e6,
			(double)r->target_rss_kib / 1024.0, (unsigned long long)r->lost,
			(unsigned long long)r->out_of_order, ratio);
	}
}

/* The CPUs the targets run on: --target-cpus, else every online CPU the bench
 * is not pinned to, all of them if none is left. */
static void bm_target_cpus(const struct bm_args *a, char *tcpus, size_t cap)
{
	const struct bench_opts *o = &a->o;
	tcpus[0] = 0;
	if (a->target_cpus) {
		snprintf(tcpus, cap, "%s", a->target_cpus);
		return;
	}
	int n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	for (int i = 0; i < n; i++) {
		bool mine = false;
		for (int j = 0; j < o->ncpus; j++)
			mine |= o->cpus[j] == i;
		if (!mine) {
			size_t l = strlen(tcpus);
			snprintf(tcpus + l, cap - l, "%s%d", l ? "," : "", i);
		}
	}
	if (!tcpus[0])
		snprintf(tcpus, cap, "0-%d", n - 1);
}

/* --rates: each target runs every rate (0 = max, closed loop); without it,
 * the one --rate. The number of rates, -1 if one is not a rate. */
static int bm_parse_rates(const struct bench_opts *o, double *rates, int max)
{
	int nrates = 0;
	char rl[256];
	snprintf(rl, sizeof rl, "%s", o->rates);
	char *rsave = NULL;
	for (char *tok = strtok_r(rl, ",", &rsave); tok && nrates < max; tok = strtok_r(NULL, ",", &rsave)) {
		rates[nrates] = !strcmp(tok, "max") ? 0 : atof(tok);
		if (rates[nrates] < 0 || (rates[nrates] == 0 && strcmp(tok, "max")))
			return -1;
		nrates++;
	}
	if (!nrates)
		rates[nrates++] = o->rate;
	return nrates;
}

/* One row: target `name` started afresh, run at `rate`, stopped. Returns 2 if
 * the run failed, 1 if it lost, reordered or delivered nothing, else 0. */
static int bm_compare_row(const struct bm_args *a, const char *peers, const char *tcpus, const char *name, double rate,
			  struct bm_named *x)
{
	const struct bench_opts *o = &a->o;
	int worst = 0;
	struct bench_opts oo = *o;
	oo.relay = false;
	oo.have_http = false;
	oo.have_comp = o->components > 0;
	oo.rate = rate;
	bool direct = !strcmp(name, "direct");
	char dir[] = "/tmp/fhb-target-XXXXXX", err[256] = "";
	if (direct) {
		/* no process in between: the links reach the bench's own far end */
		bm_parse_addr("127.0.0.1:22670", &oo.relay_listen);
		oo.target_s2s = oo.relay_listen;
		oo.relay = true;
		oo.have_comp = false;
		oo.target_pid = 0;
	} else if (!mkdtemp(dir)) {
		snprintf(err, sizeof err, "mkdtemp: %s", strerror(errno));
	} else {
		fprintf(stderr, "fedhub-bench: starting %s (CPUs %s) in %s\n", name, tcpus, dir);
		if (bench_target_start(peers, name, dir, tcpus, &oo, err, sizeof err) < 0) {
			fprintf(stderr, "fedhub-bench: %s skipped: %s\n", name, err);
			bench_target_stop(peers, name, dir);
		} else if (oo.relay && oo.scenario != BS_S2S_COMPONENT && oo.scenario != BS_IDLE_LINKS &&
			   oo.scenario != BS_BURST) {
			snprintf(err, sizeof err, "a relay does no %s", bm_scenario_name(oo.scenario));
			bench_target_stop(peers, name, dir);
		}
	}
	if (err[0]) {
		snprintf(x->skipped, sizeof x->skipped, "%s", err);
		return 0;
	}
	int rc = bench_run(&oo, &x->r);
	x->ran = true;
	if (!direct)
		bench_target_stop(peers, name, dir);
	bench_report(stdout, &oo, x->name, &x->r);
	if (rc < 0 && x->r.measured_delivered == 0) {
		snprintf(x->skipped, sizeof x->skipped, "failed: %.247s",
			 x->r.error[0] ? x->r.error : "nothing delivered");
		worst = 2;
	}
	/* idle-links delivers its stanzas after the (idle) measured window */
	bool none = x->r.measured_delivered == 0 && oo.scenario != BS_IDLE_LINKS;
	if ((x->r.lost || x->r.out_of_order || none || x->r.sent == 0) && worst < 1)
		worst = 1;
	/* stall: a stanza bounced before stall_timeout was bounced needlessly */
	if (oo.scenario == BS_STALL && oo.stall_timeout_s && x->r.bounced &&
	    x->r.first_bounce_s < oo.stall_timeout_s) {
		fprintf(stderr, "fedhub-bench: %s bounced a stanza %.3f s into the stall, before its stall_timeout (%d s)\n",
			x->name, x->r.first_bounce_s, oo.stall_timeout_s);
		if (worst < 1)
			worst = 1;
	}
	return worst;
}

int bm_compare(const struct bm_args *a, const char *cmdline)
{
	const struct bench_opts *o = &a->o;
	if (!a->targets) {
		fprintf(stderr, "fedhub-bench: compare needs --targets\n");
		return 2;
	}
	char peers[PATH_MAX];
	if (a->peers_arg)
		snprintf(peers, sizeof peers, "%s", a->peers_arg);
	else if (bench_find_peers(peers, sizeof peers) < 0) {
		fprintf(stderr, "fedhub-bench: cannot find bench/peers/target.sh (use --peers DIR)\n");
		return 2;
	}
	char tcpus[128];
	bm_target_cpus(a, tcpus, sizeof tcpus);
	double rates[16];
	int nrates = bm_parse_rates(o, rates, 16);
	if (nrates < 0) {
		fprintf(stderr, "fedhub-bench: bad option value (see --help)\n");
		return 2;
	}
	enum { BM_MAX_ROWS = 64 };
	struct bm_named *t = calloc(BM_MAX_ROWS, sizeof *t);
	if (!t) {
		fprintf(stderr, "fedhub-bench: out of memory\n");
		return 2;
	}
	int nt = 0, worst = 0;
	char tl[256];
	snprintf(tl, sizeof tl, "%s", a->targets);
	char *save = NULL;
	for (char *name = strtok_r(tl, ",", &save); name && nt + nrates <= BM_MAX_ROWS;
	     name = strtok_r(NULL, ",", &save)) {
		struct bm_named *first_row = &t[nt];
		for (int k = 0; k < nrates; k++) {
			struct bm_named *x = &t[nt + k];
			if (o->rates[0] && rates[k] > 0)
				snprintf(x->name, sizeof x->name, "%s@%.0f", name, rates[k]);
			else if (o->rates[0])
				snprintf(x->name, sizeof x->name, "%s@max", name);
			else
				snprintf(x->name, sizeof x->name, "%s", name);
		}
		nt += nrates;
		/* a target starts afresh for every rate: the backlog an overloaded
		 * rate leaves behind must not delay the next one */
		for (int k = 0; k < nrates; k++) {
			int w = bm_compare_row(a, peers, tcpus, name, rates[k], &first_row[k]);
			if (w > worst)
				worst = w;
		}
	}
	bm_print_table(stdout, o, t, nt);
	if (a->json)
		bm_write_json(a->json, o, t, nt, cmdline);
	free(t);
	return worst;
}
