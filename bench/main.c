/*
 * bench/main.c — fedhub-bench: command line, scenarios, reports.
 *
 * One run drives one target whose addresses are given (fedhub, Prosody,
 * ejabberd, or a TCP relay) and prints a progress line per second, a text
 * report, and optionally JSON. `compare` starts each named target itself with
 * the configs in bench/peers/ (through bench/peers/target.sh, so the same
 * script serves the suite and a person at a shell), runs the same scenario
 * against each in turn, stops it, and prints one table with ratios to fedhub
 * (bench/compare.c).
 * `transit` is the echo run under another name (see the usage text), not a
 * copy of it. --tls puts STARTTLS and SASL EXTERNAL on every s2s link
 * (stream.c); in compare mode target.sh makes the certificates.
 * Exit status: 0 clean, 1 if any stanza was lost or delivered out of order,
 * 2 if the run could not be done (usage, setup failure).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include "bench/bench.h"
#include "bench/main-int.h"

/* `transit` is echo under the name a reader of the scenario list looks for */
static bool bm_transit;

const char *bm_scenario_name(enum bench_scenario s)
{
	switch (s) {
	case BS_S2S_COMPONENT:
		return "s2s-component";
	case BS_COMPONENT_S2S:
		return "component-s2s";
	case BS_ECHO:
		return bm_transit ? "transit" : "echo";
	case BS_IDLE_LINKS:
		return "idle-links";
	case BS_BURST:
		return "burst";
	case BS_STALL:
		return "stall";
	case BS_REMOTE_UP:
		return "remote-domains";
	case BS_MANY_DOMAINS:
		return "many-domains";
	case BS_S2S_BACKEND:
		return "s2s-backend";
	}
	return "?";
}

static void bm_usage(FILE *f)
{
	fputs("usage: fedhub-bench SCENARIO [options]\n"
	      "       fedhub-bench compare SCENARIO --targets fedhub,prosody,ejabberd,haproxy [options]\n"
	      "\n"
	      "Scenarios:\n"
	      "  s2s-component  remote servers (s2s links, dialback) send to a component through the target\n"
	      "  component-s2s  components send to the bench's domains; the target dials the bench (dialback)\n"
	      "  echo           s2s -> target -> component, which echoes back -> target -> s2s (round trip)\n"
	      "  idle-links     many authenticated s2s links held idle: target memory and CPU per link,\n"
	      "                 then one stanza per link to show each is still alive\n"
	      "  burst          s2s links write --burst N stanzas at once to a component (slow with\n"
	      "                 --comp-read-rate / --comp-pause): delivered, bounced by condition, out of\n"
	      "                 order, target peak RSS, time to drain; exit 1 if delivered+bounced != sent\n"
	      "  s2s-backend    the bench is a backend server behind the target (--backend-domain,\n"
	      "                 back.fhb; target.sh configures it as a [backend]) and the remote servers\n"
	      "                 at once: remote -> target -> backend over --links s2s links, and backend\n"
	      "                 -> target -> remote over as many streams of the backend, one per remote\n"
	      "                 domain; the rate is split between the two directions\n"
	      "  stall          s2s links, open loop, to two component domains (--comp-domain a,b,\n"
	      "                 --components 2); the first stops reading for --stall-ms: every stanza\n"
	      "                 must be delivered or bounced, and the second's latency during the stall\n"
	      "  remote-domains components send one stanza to each of --domains N bench domains: the\n"
	      "                 target resolves, dials and authenticates N links (dialback); time until\n"
	      "                 each is up (--links 0: no inbound links needed)\n"
	      "  many-domains   a series against fedhub (started by target.sh): s2s-component with\n"
	      "                 --per-link 1,64,1000 domains per link, then remote-domains for\n"
	      "                 --remote 1000,10000,100000 domains, found by DNS (a dnsmasq on\n"
	      "                 127.0.0.1:22353) and again by static routes\n"
	      "  tokenizer      the XML tokenizer alone (bench/tok_bench.c)\n"
	      "  handshakes     TLS handshakes/s and bulk cost of the TLS engine (bench/tls_bench.c)\n"
	      "  certload       start-up cost of many per-domain certificates (bench/tls_bench.c)\n"
	      "  relay          the worker runtime alone: bytes through one worker vs direct (bench/net_relay.c)\n"
	      "  close          the worker runtime alone: time per connection close with 1k/10k/100k open\n"
	      "                 (bench/close_cost.c)\n"
	      "  transit        the same run as echo, named for what it shows: a hub carrying traffic from\n"
	      "                 remote servers to remote servers through an internal service (s2s in ->\n"
	      "                 target -> component -> target -> s2s out, end-to-end latency). A plain\n"
	      "                 s2s -> s2s relay is not a transit scenario: an XMPP server accepts inbound\n"
	      "                 s2s stanzas only for the domains it serves (RFC 6120 address checks)\n"
	      "\n"
	      "Target (defaults are fedhub's bench config, bench/peers/fedhub.conf.in):\n"
	      "  --target-s2s HOST:PORT    target's s2s listener            (127.0.0.1:22269)\n"
	      "  --target-comp HOST:PORT   target's component listener      (127.0.0.1:22347)\n"
	      "  --target-pid PID          measure its CPU (utime+stime over the measured window) and RSS\n"
	      "  --target-name NAME        label in reports and JSON        (target)\n"
	      "  --target-domain D         to= of the bench's s2s streams   (the first component domain)\n"
	      "  --comp-domain D[,D...]    component domain(s); component i uses the (i mod n)th (comp.fhb)\n"
	      "  --backend-domain D        s2s-backend: the domain the bench serves as a backend (back.fhb)\n"
	      "  --comp-secret S           XEP-0114 secret                  (s3cret)\n"
	      "  --relay HOST:PORT         relay mode (HAProxy): the bench listens here as the far end of a\n"
	      "                            plain TCP relay from --target-s2s; no XMPP peer, no dialback\n"
	      "TLS:\n"
	      "  --tls                     STARTTLS on every s2s link, both directions (RFC 6120 §5), then\n"
	      "                            SASL EXTERNAL (XEP-0178) where offered, dialback for the other\n"
	      "                            domains of a link; the TLS engine is fedhub's own (net/tls.h).\n"
	      "                            compare: target.sh sets the target up for it (fedhub only)\n"
	      "  --tls-dir DIR             ca.pem, bench.pem, bench.key (bench/peers/mkcerts.sh DIR makes\n"
	      "                            them); compare mode uses the ones target.sh made\n"
	      "Bench side:\n"
	      "  --listen HOST:PORT        the bench's dialback/s2s listener the target dials (127.0.0.1:22270)\n"
	      "  --domain-format FMT       names of the bench's domains, %d = 1..N (bench%d.fhb)\n"
	      "  --db-secret S             dialback secret of the bench's domains (fhb-dialback)\n"
	      "  --links M                 s2s links (4)\n"
	      "  --domains N               bench domains, piggybacked ceil(N/M) per link (= links)\n"
	      "  --components K            component connections (1)\n"
	      "  --connect-concurrency N   connections being set up at once (256)\n"
	      "  --setup-timeout S         seconds to bring every link up (60)\n"
	      "  --cpus LIST               pin the bench to these CPUs, e.g. 0 or 0,1 or 0-3\n"
	      "Load:\n"
	      "  --seconds T               measured window (10)\n"
	      "  --warmup W                warm-up before it, not measured (2)\n"
	      "  --drain D                 max seconds to wait for stanzas in flight at the end (10)\n"
	      "  --size BYTES              message stanza size (300)\n"
	      "  --window W                closed loop: stanzas in flight per sending connection (64)\n"
	      "  --rate R                  open loop: R stanzas/s in total, latency from the intended send\n"
	      "                            time (coordinated omission corrected)\n"
	      "  --burst N                 burst: stanzas written at once over the links (100000)\n"
	      "  --comp-read-rate R        components read at most R stanzas/s (default: as fast as they can)\n"
	      "  --comp-pause MS           components stop reading for MS after every --comp-pause-every\n"
	      "  --comp-pause-every K      stanzas (1000)\n"
	      "  --stall-ms MS             stall: how long the first component stops reading (3000)\n"
	      "  --stall-timeout S         fedhub's stall_timeout (default: its own, 30 s); stall fails\n"
	      "                            if a stanza is bounced before it\n"
	      "  --mix msg=90,presence=5,iq=5   stanza mix (relative weights)\n"
	      "Output:\n"
	      "  --json FILE               write the results as JSON\n"
	      "  --quiet                   no per-second progress lines\n"
	      "Compare mode:\n"
	      "  --targets LIST            targets to start in turn with bench/peers/target.sh\n"
	      "  --peers DIR               where target.sh and the configs live (auto-detected)\n"
	      "  --target-cpus LIST        CPUs for the targets (default: all but the bench's)\n"
	      "  --rates R1,R2,...,max     a sweep: each rate open loop, max closed loop, one row per\n"
	      "                            rate and target (each on a freshly started target)\n"
	      "  --dns                     fedhub resolves the bench's domains through a dnsmasq that\n"
	      "                            target.sh starts on 127.0.0.1:22353, not static [route]s\n"
	      "  target 'direct'           no process: the bench's links connect to its own relay\n"
	      "                            listener (the latency baseline of the bench and loopback)\n"
	      "many-domains:\n"
	      "  --per-link LIST           domains per link for the s2s-component runs (1,64,1000)\n"
	      "  --remote LIST             remote domain counts for remote-domains (1000,10000,100000)\n"
	      "\n"
	      "Exit status: 0 clean; 1 if any stanza was lost or out of order; 2 if the run failed.\n",
	      f);
}

int bm_parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[128];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)atoi(colon + 1));
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int bm_parse_cpus(const char *s, int *cpus, int max)
{
	int n = 0;
	char buf[256];
	snprintf(buf, sizeof buf, "%s", s);
	for (char *tok = strtok(buf, ","); tok && n < max; tok = strtok(NULL, ",")) {
		int a, b;
		if (sscanf(tok, "%d-%d", &a, &b) == 2) {
			for (int i = a; i <= b && n < max; i++)
				cpus[n++] = i;
		} else if (sscanf(tok, "%d", &a) == 1) {
			cpus[n++] = a;
		} else {
			return -1;
		}
	}
	return n;
}

static int bm_parse_mix(const char *s, struct bench_opts *o)
{
	o->mix_msg = o->mix_presence = o->mix_iq = 0;
	char buf[128];
	snprintf(buf, sizeof buf, "%s", s);
	for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
		int v;
		if (sscanf(tok, "msg=%d", &v) == 1)
			o->mix_msg = v;
		else if (sscanf(tok, "presence=%d", &v) == 1)
			o->mix_presence = v;
		else if (sscanf(tok, "iq=%d", &v) == 1)
			o->mix_iq = v;
		else
			return -1;
	}
	return 0;
}

static void bm_machine(int *nproc, char *cpu, size_t cpucap, char *kernel, size_t kcap)
{
	*nproc = (int)sysconf(_SC_NPROCESSORS_ONLN);
	snprintf(cpu, cpucap, "unknown");
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];
	while (f && fgets(line, sizeof line, f)) {
		char *c = strchr(line, ':');
		if (strncmp(line, "model name", 10) == 0 && c) {
			snprintf(cpu, cpucap, "%s", c + 2);
			cpu[strcspn(cpu, "\n")] = 0;
			break;
		}
	}
	if (f)
		fclose(f);
	struct utsname u;
	uname(&u);
	snprintf(kernel, kcap, "%s", u.release);
}

/* ---- figures ---------------------------------------------------------------- */

double bm_rate(const struct bench_result *r)
{
	return r->measured_s > 0 ? (double)r->measured_delivered / r->measured_s : 0;
}

double bm_cpu_us(const struct bench_result *r)
{
	return r->have_target && r->measured_delivered ? r->target_cpu_s * 1e6 / (double)r->measured_delivered : 0;
}

/* fedhub's own account of the time stanzas spent in it (bench/hubmet.c) */
static void report_hub_lat(FILE *f, const struct bench_result *r)
{
	if (!r->have_hub_lat)
		return;
	const struct bench_hublat *d = &r->hub_lat;
	fprintf(f,
		"in the hub     p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f us (at most; its /metrics histogram), mean %.1f us, "
		"%llu stanzas\n",
		bench_hublat_quantile(d, 0.5), bench_hublat_quantile(d, 0.9), bench_hublat_quantile(d, 0.99),
		bench_hublat_quantile(d, 0.999), d->count ? d->sum_s * 1e6 / (double)d->count : 0,
		(unsigned long long)d->count);
}

void bench_report(FILE *f, const struct bench_opts *o, const char *name, const struct bench_result *r)
{
	fprintf(f, "\n== %s against %s\n", bm_scenario_name(o->scenario), name);
	if (r->error[0])
		fprintf(f, "error          %s\n", r->error);
	fprintf(f, "setup          %d/%d links, %d components in %.2f s\n", r->links_up, r->links_wanted, r->comps_up,
		r->setup_s);
	if (o->tls)
		fprintf(f,
			"tls            %s; bench->target %d/%d links TLS, %d by SASL EXTERNAL; "
			"target->bench %d TLS, %d by SASL EXTERNAL\n",
			r->tls_info[0] ? r->tls_info : "no handshake done", r->tls_out, r->links_wanted,
			r->external_out, r->tls_in, r->external_in);
	if (o->tls && r->plain_verify_in)
		fprintf(f,
			"tls warning    the target sent %d dialback verification(s) in the clear, skipping the "
			"STARTTLS the bench requires\n",
			r->plain_verify_in);
	if (o->scenario == BS_IDLE_LINKS) {
		fprintf(f, "idle window    %.1f s\n", r->measured_s);
		if (r->have_target) {
			fprintf(f, "target RSS     %llu KiB before, %llu KiB with the links: %.1f KiB per link\n",
				(unsigned long long)r->target_rss_before_kib, (unsigned long long)r->target_rss_kib,
				r->links_up
					? ((double)r->target_rss_kib - (double)r->target_rss_before_kib) / r->links_up
					: 0);
			fprintf(f, "target CPU     %.3f s over the idle window (%.2f%% of a core)\n", r->target_cpu_s,
				r->measured_s > 0 ? 100 * r->target_cpu_s / r->measured_s : 0);
		}
	} else if (o->scenario == BS_BURST || o->scenario == BS_REMOTE_UP) {
		if (o->scenario == BS_BURST)
			fprintf(f, "mode           burst: %ld stanzas written at once over %d links\n", o->burst,
				o->links);
		else
			fprintf(f, "mode           one stanza to each of %d remote domains, written at once\n",
				o->domains);
		if (o->comp_read_rate > 0 || o->comp_pause_ms > 0)
			fprintf(f, "component      reads at most %.0f stanzas/s; pauses %d ms every %d stanzas\n",
				o->comp_read_rate, o->comp_pause_ms, o->comp_pause_every);
		fprintf(f, "throughput     %.0f stanzas/s delivered over the %.3f s until the last was accounted\n",
			bm_rate(r), r->measured_s);
		const struct bench_hist *h = &r->hist;
		fprintf(f, "latency        p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms (from the write)\n",
			bench_hist_quantile(h, 0.5) / 1e6, bench_hist_quantile(h, 0.9) / 1e6,
			bench_hist_quantile(h, 0.99) / 1e6, bench_hist_quantile(h, 0.999) / 1e6, (double)h->max / 1e6);
		report_hub_lat(f, r);
		if (r->have_target)
			fprintf(f, "target CPU     %.3f s, %.2f us per stanza delivered; RSS at the end %llu KiB\n",
				r->target_cpu_s, bm_cpu_us(r), (unsigned long long)r->target_rss_kib);
	} else {
		fprintf(f, "mode           %s\n", o->rate > 0 ? "open loop" : "closed loop");
		if (o->rate > 0)
			fprintf(f, "offered        %.0f stanzas/s\n", o->rate);
		else
			fprintf(f, "window         %d per sending connection\n", o->window);
		fprintf(f, "throughput     %.0f stanzas/s over %.1f s (after %.1f s warm-up)\n", bm_rate(r),
			r->measured_s, o->warmup);
		const struct bench_hist *h = &r->hist;
		fprintf(f, "latency        p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms\n",
			bench_hist_quantile(h, 0.5) / 1e6, bench_hist_quantile(h, 0.9) / 1e6,
			bench_hist_quantile(h, 0.99) / 1e6, bench_hist_quantile(h, 0.999) / 1e6, (double)h->max / 1e6);
		report_hub_lat(f, r);
		if (r->have_target)
			fprintf(f,
				"target CPU     %.1f%% of a core, %.2f us per stanza; RSS %llu KiB (VmHWM %llu KiB)\n",
				r->measured_s > 0 ? 100 * r->target_cpu_s / r->measured_s : 0, bm_cpu_us(r),
				(unsigned long long)r->target_rss_kib, (unsigned long long)r->target_hwm_kib);
	}
	fprintf(f, "stanzas        sent %llu  delivered %llu  bounced %llu  lost %llu  out-of-order %llu%s\n",
		(unsigned long long)r->sent, (unsigned long long)r->delivered, (unsigned long long)r->bounced,
		(unsigned long long)r->lost, (unsigned long long)r->out_of_order, r->dup ? "  (duplicates seen)" : "");
	if (r->ncond) {
		fprintf(f, "bounced by     ");
		for (int i = 0; i < r->ncond; i++)
			fprintf(f, "%s%s %llu", i ? ", " : "", r->cond[i].name, (unsigned long long)r->cond[i].n);
		fputc('\n', f);
	}
	if (o->scenario == BS_BURST || o->scenario == BS_REMOTE_UP)
		fprintf(f, "drain          %.3f s from the first write to the last stanza accounted\n", r->drain_s);
	if (r->have_target && r->target_peak_kib)
		fprintf(f, "target peak    %llu KiB VmRSS (sampled every 100 ms)\n",
			(unsigned long long)r->target_peak_kib);
	if (o->scenario == BS_STALL) {
		const struct bench_hist *h = &r->other_hist;
		fprintf(f,
			"stall          %s stopped reading for %.1f s; %s meanwhile: %llu delivered, "
			"p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms\n",
			o->comp_domains[0], r->stall_s, o->ncomp_domains > 1 ? o->comp_domains[1] : "(none)",
			(unsigned long long)h->count, bench_hist_quantile(h, 0.5) / 1e6,
			bench_hist_quantile(h, 0.99) / 1e6, bench_hist_quantile(h, 0.999) / 1e6, (double)h->max / 1e6);
		if (r->bounced && o->stall_timeout_s)
			fprintf(f, "bounces        from %.3f s to %.3f s after the stall began (stall_timeout %d s)\n",
				r->first_bounce_s, r->last_bounce_s, o->stall_timeout_s);
		else if (r->bounced)
			fprintf(f, "bounces        from %.3f s to %.3f s after the stall began\n", r->first_bounce_s,
				r->last_bounce_s);
	}
	if (r->udp_rcvbuf_drops > 0)
		fprintf(f,
			"udp drops      %lld datagrams dropped on this host for a full socket buffer during the run\n",
			(long long)r->udp_rcvbuf_drops);
	if (r->verify_streams)
		fprintf(f,
			"verification   %llu dialback verification streams from the target ended after their answer\n",
			(unsigned long long)r->verify_streams);
}

void bench_json_target(FILE *f, const char *name, const struct bench_result *r, const char *skipped)
{
	fprintf(f, "\"%s\":{", name);
	if (skipped && skipped[0]) {
		fprintf(f, "\"skipped\":\"");
		for (const char *p = skipped; *p; p++)
			if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
				fputc(*p, f);
		fprintf(f, "\"}");
		return;
	}
	const struct bench_hist *h = &r->hist;
	fprintf(f,
		"\"stanzas_per_s\":%.1f,\"cpu_us_per_stanza\":%.3f,\"p50_us\":%.1f,\"p90_us\":%.1f,"
		"\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"rss_kib\":%llu,\"hwm_kib\":%llu,"
		"\"sent\":%llu,\"delivered\":%llu,\"bounced\":%llu,\"lost\":%llu,\"out_of_order\":%llu,"
		"\"links_up\":%d,\"links\":%d,\"setup_s\":%.3f,\"measured_s\":%.3f,\"target_cpu_s\":%.3f,"
		"\"rss_before_kib\":%llu",
		bm_rate(r), bm_cpu_us(r), bench_hist_quantile(h, 0.5) / 1e3, bench_hist_quantile(h, 0.9) / 1e3,
		bench_hist_quantile(h, 0.99) / 1e3, bench_hist_quantile(h, 0.999) / 1e3, (double)h->max / 1e3,
		(unsigned long long)r->target_rss_kib, (unsigned long long)r->target_hwm_kib,
		(unsigned long long)r->sent, (unsigned long long)r->delivered, (unsigned long long)r->bounced,
		(unsigned long long)r->lost, (unsigned long long)r->out_of_order, r->links_up, r->links_wanted,
		r->setup_s, r->measured_s, r->target_cpu_s, (unsigned long long)r->target_rss_before_kib);
	if (r->tls_info[0])
		fprintf(f,
			",\"tls\":\"%s\",\"tls_links_out\":%d,\"external_out\":%d,\"tls_links_in\":%d,"
			"\"external_in\":%d,\"plain_verify_in\":%d",
			r->tls_info, r->tls_out, r->external_out, r->tls_in, r->external_in, r->plain_verify_in);
	fprintf(f,
		",\"peak_rss_kib\":%llu,\"drain_s\":%.3f,\"verify_streams\":%llu,\"udp_rcvbuf_drops\":%lld,"
		"\"bounced_by\":{",
		(unsigned long long)r->target_peak_kib, r->drain_s, (unsigned long long)r->verify_streams,
		(long long)r->udp_rcvbuf_drops);
	for (int i = 0; i < r->ncond; i++)
		fprintf(f, "%s\"%s\":%llu", i ? "," : "", r->cond[i].name, (unsigned long long)r->cond[i].n);
	fputc('}', f);
	if (r->stall_s > 0) {
		const struct bench_hist *oh = &r->other_hist;
		fprintf(f,
			",\"stall_s\":%.3f,\"other_delivered\":%llu,\"other_p50_us\":%.1f,\"other_p99_us\":%.1f,"
			"\"other_p999_us\":%.1f,\"other_max_us\":%.1f,\"first_bounce_s\":%.3f,\"last_bounce_s\":%.3f",
			r->stall_s, (unsigned long long)oh->count, bench_hist_quantile(oh, 0.5) / 1e3,
			bench_hist_quantile(oh, 0.99) / 1e3, bench_hist_quantile(oh, 0.999) / 1e3,
			(double)oh->max / 1e3, r->first_bounce_s, r->last_bounce_s);
	}
	if (r->have_hub_lat) {
		const struct bench_hublat *d = &r->hub_lat;
		fprintf(f,
			",\"hub_lat\":{\"stanzas\":%llu,\"mean_us\":%.1f,\"p50_us\":%.0f,\"p90_us\":%.0f,"
			"\"p99_us\":%.0f,\"p999_us\":%.0f}",
			(unsigned long long)d->count, d->count ? d->sum_s * 1e6 / (double)d->count : 0,
			bench_hublat_quantile(d, 0.5), bench_hublat_quantile(d, 0.9), bench_hublat_quantile(d, 0.99),
			bench_hublat_quantile(d, 0.999));
	}
	if (r->limit_note[0])
		fprintf(f, ",\"limit\":\"%s\"", r->limit_note);
	if (r->error[0]) {
		fprintf(f, ",\"error\":\"");
		for (const char *p = r->error; *p; p++)
			if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
				fputc(*p, f);
		fputc('"', f);
	}
	fputc('}', f);
}

/* "machine":{...}: what the figures were measured on */
void bench_json_machine(FILE *f)
{
	int nproc;
	char cpu[256], kernel[128];
	bm_machine(&nproc, cpu, sizeof cpu, kernel, sizeof kernel);
	fprintf(f, "\"machine\":{\"nproc\":%d,\"cpu_model\":\"%s\",\"kernel\":\"%s\"}", nproc, cpu, kernel);
}

int bm_write_json(const char *path, const struct bench_opts *o, struct bm_named *t, int nt, const char *cmdline)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "fedhub-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\"scenario\":\"%s\",\"command\":\"", bm_scenario_name(o->scenario));
	for (const char *p = cmdline; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', f);
		fputc(*p, f);
	}
	fprintf(f,
		"\",\"mode\":\"%s\",\"rate\":%.0f,\"window\":%d,\"links\":%d,\"domains\":%d,"
		"\"components\":%d,\"size\":%d,\"seconds\":%.1f,\"warmup\":%.1f,\"tls\":%s,",
		o->rate > 0 ? "open" : "closed", o->rate, o->window, o->links, o->domains, o->components, o->size,
		o->seconds, o->warmup, o->tls ? "true" : "false");
	fprintf(f,
		"\"burst\":%ld,\"comp_read_rate\":%.0f,\"comp_pause_ms\":%d,\"comp_pause_every\":%d,\"stall_ms\":%d,"
		"\"stall_timeout_s\":%d,\"rates\":\"%s\",",
		o->scenario == BS_BURST ? o->burst : 0, o->comp_read_rate, o->comp_pause_ms, o->comp_pause_every,
		o->scenario == BS_STALL ? o->stall_ms : 0, o->stall_timeout_s, o->rates);
	bench_json_machine(f);
	fprintf(f, ",\"targets\":{");
	for (int i = 0; i < nt; i++) {
		if (i)
			fputc(',', f);
		bench_json_target(f, t[i].name, &t[i].r, t[i].skipped);
	}
	fprintf(f, "}}\n");
	fclose(f);
	return 0;
}

/* Where --tls-dir points: the CA and the bench's certificate and key. */
void bm_tls_dir(struct bench_opts *o, const char *dir)
{
	snprintf(o->tls_ca, sizeof o->tls_ca, "%.480s/ca.pem", dir);
	snprintf(o->tls_cert, sizeof o->tls_cert, "%.480s/bench.pem", dir);
	snprintf(o->tls_key, sizeof o->tls_key, "%.480s/bench.key", dir);
}

/* ---- main -------------------------------------------------------------------- */

static int bm_scenario(const char *s, enum bench_scenario *out)
{
	if (!strcmp(s, "s2s-component"))
		*out = BS_S2S_COMPONENT;
	else if (!strcmp(s, "component-s2s"))
		*out = BS_COMPONENT_S2S;
	else if (!strcmp(s, "echo"))
		*out = BS_ECHO;
	else if (!strcmp(s, "transit")) {
		*out = BS_ECHO;
		bm_transit = true;
	} else if (!strcmp(s, "idle-links"))
		*out = BS_IDLE_LINKS;
	else if (!strcmp(s, "burst"))
		*out = BS_BURST;
	else if (!strcmp(s, "stall"))
		*out = BS_STALL;
	else if (!strcmp(s, "remote-domains"))
		*out = BS_REMOTE_UP;
	else if (!strcmp(s, "many-domains"))
		*out = BS_MANY_DOMAINS;
	else if (!strcmp(s, "s2s-backend"))
		*out = BS_S2S_BACKEND;
	else
		return -1;
	return 0;
}

static void bm_split_domains(struct bench_opts *o, const char *s)
{
	char buf[2048];
	snprintf(buf, sizeof buf, "%s", s);
	o->ncomp_domains = 0;
	for (char *tok = strtok(buf, ","); tok && o->ncomp_domains < 8; tok = strtok(NULL, ","))
		snprintf(o->comp_domains[o->ncomp_domains++], sizeof o->comp_domains[0], "%s", tok);
}

/* The command line as run, for the reports. */
static const char *cmdline_of(int argc, char **argv)
{
	static char cmdline[4096];
	snprintf(cmdline, sizeof cmdline, "fedhub-bench");
	for (int i = 1; i < argc; i++) {
		size_t l = strlen(cmdline);
		snprintf(cmdline + l, sizeof cmdline - l, " %s", argv[i]);
	}
	return cmdline;
}

/* Defaults of the engine's options; the command line overrides them. */
static void bm_defaults(struct bench_opts *o)
{
	bm_parse_addr("127.0.0.1:22269", &o->target_s2s);
	bm_parse_addr("127.0.0.1:22347", &o->target_comp);
	bm_parse_addr("127.0.0.1:22270", &o->listen_db);
	o->have_comp = true;
	bm_split_domains(o, "comp.fhb");
	snprintf(o->comp_secret, sizeof o->comp_secret, "s3cret");
	snprintf(o->domain_fmt, sizeof o->domain_fmt, "bench%%d.fhb");
	snprintf(o->db_secret, sizeof o->db_secret, "fhb-dialback");
	o->links = 4;
	o->components = 1;
	o->seconds = 10;
	o->warmup = 2;
	o->drain = 10;
	o->size = 300;
	o->window = 64;
	o->mix_msg = 90;
	o->mix_presence = 5;
	o->mix_iq = 5;
	o->connect_concurrency = 256;
	o->setup_timeout = 60;
	o->burst = 100000;
	o->comp_pause_every = 1000;
	o->stall_ms = 3000;
	snprintf(o->bounce_domain, sizeof o->bounce_domain, "absent.fhb");
	snprintf(o->backend_domain, sizeof o->backend_domain, "back.fhb");
	snprintf(o->per_link, sizeof o->per_link, "1,64,1000");
	snprintf(o->remote, sizeof o->remote, "1000,10000,100000");
}

enum {
	O_S2S = 256,
	O_COMP,
	O_PID,
	O_NAME,
	O_TDOM,
	O_CDOM,
	O_CSEC,
	O_RELAY,
	O_LISTEN,
	O_DFMT,
	O_DBSEC,
	O_LINKS,
	O_DOMS,
	O_COMPS,
	O_CC,
	O_SETUP,
	O_CPUS,
	O_SECS,
	O_WARM,
	O_DRAIN,
	O_SIZE,
	O_WIN,
	O_RATE,
	O_MIX,
	O_JSON,
	O_QUIET,
	O_TARGETS,
	O_PEERS,
	O_TCPUS,
	O_FAULT,
	O_TLS,
	O_TLSDIR,
	O_BURST,
	O_CRATE,
	O_CPAUSE,
	O_CPEVERY,
	O_STALL,
	O_STALLTO,
	O_DNS,
	O_RATES,
	O_PERLINK,
	O_REMOTE,
	O_BKDOM
};
static const struct option bm_longopts[] = {{"target-s2s", 1, 0, O_S2S},
					    {"target-comp", 1, 0, O_COMP},
					    {"target-pid", 1, 0, O_PID},
					    {"target-name", 1, 0, O_NAME},
					    {"target-domain", 1, 0, O_TDOM},
					    {"comp-domain", 1, 0, O_CDOM},
					    {"backend-domain", 1, 0, O_BKDOM},
					    {"comp-secret", 1, 0, O_CSEC},
					    {"relay", 1, 0, O_RELAY},
					    {"listen", 1, 0, O_LISTEN},
					    {"domain-format", 1, 0, O_DFMT},
					    {"db-secret", 1, 0, O_DBSEC},
					    {"links", 1, 0, O_LINKS},
					    {"domains", 1, 0, O_DOMS},
					    {"components", 1, 0, O_COMPS},
					    {"connect-concurrency", 1, 0, O_CC},
					    {"setup-timeout", 1, 0, O_SETUP},
					    {"cpus", 1, 0, O_CPUS},
					    {"seconds", 1, 0, O_SECS},
					    {"warmup", 1, 0, O_WARM},
					    {"drain", 1, 0, O_DRAIN},
					    {"size", 1, 0, O_SIZE},
					    {"window", 1, 0, O_WIN},
					    {"rate", 1, 0, O_RATE},
					    {"mix", 1, 0, O_MIX},
					    {"json", 1, 0, O_JSON},
					    {"quiet", 0, 0, O_QUIET},
					    {"targets", 1, 0, O_TARGETS},
					    {"peers", 1, 0, O_PEERS},
					    {"target-cpus", 1, 0, O_TCPUS},
					    {"fault", 1, 0, O_FAULT},
					    {"help", 0, 0, 'h'},
					    {"tls", 0, 0, O_TLS},
					    {"tls-dir", 1, 0, O_TLSDIR},
					    {"burst", 1, 0, O_BURST},
					    {"comp-read-rate", 1, 0, O_CRATE},
					    {"comp-pause", 1, 0, O_CPAUSE},
					    {"comp-pause-every", 1, 0, O_CPEVERY},
					    {"stall-ms", 1, 0, O_STALL},
					    {"stall-timeout", 1, 0, O_STALLTO},
					    {"dns", 0, 0, O_DNS},
					    {"rates", 1, 0, O_RATES},
					    {"per-link", 1, 0, O_PERLINK},
					    {"remote", 1, 0, O_REMOTE},
					    {0, 0, 0, 0}};

/* The options after the scenario name; -1 to go on, else the exit status. */
static int bm_parse_opts(struct bm_args *a, int argc, char **argv, int first)
{
	struct bench_opts *o = &a->o;
	optind = first + 1;
	int ch;
	while ((ch = getopt_long(argc, argv, "h", bm_longopts, NULL)) != -1) {
		switch (ch) {
		case O_S2S:
			if (bm_parse_addr(optarg, &o->target_s2s) < 0)
				goto bad;
			break;
		case O_COMP:
			if (bm_parse_addr(optarg, &o->target_comp) < 0)
				goto bad;
			break;
		case O_PID:
			o->target_pid = atoi(optarg);
			break;
		case O_NAME:
			snprintf(a->target_name, sizeof a->target_name, "%s", optarg);
			break;
		case O_TDOM:
			snprintf(o->target_domain, sizeof o->target_domain, "%s", optarg);
			break;
		case O_CDOM:
			bm_split_domains(o, optarg);
			break;
		case O_BKDOM:
			snprintf(o->backend_domain, sizeof o->backend_domain, "%s", optarg);
			break;
		case O_CSEC:
			snprintf(o->comp_secret, sizeof o->comp_secret, "%s", optarg);
			break;
		case O_RELAY:
			if (bm_parse_addr(optarg, &o->relay_listen) < 0)
				goto bad;
			o->relay = true;
			o->have_comp = false;
			break;
		case O_LISTEN:
			if (bm_parse_addr(optarg, &o->listen_db) < 0)
				goto bad;
			break;
		case O_DFMT:
			if (!strstr(optarg, "%d") || strchr(strstr(optarg, "%d") + 1, '%'))
				goto bad;
			snprintf(o->domain_fmt, sizeof o->domain_fmt, "%s", optarg);
			break;
		case O_DBSEC:
			snprintf(o->db_secret, sizeof o->db_secret, "%s", optarg);
			break;
		case O_LINKS:
			o->links = atoi(optarg);
			a->links_given = true;
			break;
		case O_DOMS:
			o->domains = atoi(optarg);
			break;
		case O_COMPS:
			o->components = atoi(optarg);
			break;
		case O_CC:
			o->connect_concurrency = atoi(optarg);
			break;
		case O_SETUP:
			o->setup_timeout = atof(optarg);
			break;
		case O_CPUS:
			if ((o->ncpus = bm_parse_cpus(optarg, o->cpus, 64)) <= 0)
				goto bad;
			break;
		case O_SECS:
			o->seconds = atof(optarg);
			break;
		case O_WARM:
			o->warmup = atof(optarg);
			break;
		case O_DRAIN:
			o->drain = atof(optarg);
			break;
		case O_SIZE:
			o->size = atoi(optarg);
			break;
		case O_WIN:
			o->window = atoi(optarg);
			break;
		case O_RATE:
			o->rate = atof(optarg);
			break;
		case O_MIX:
			if (bm_parse_mix(optarg, o) < 0)
				goto bad;
			break;
		case O_JSON:
			a->json = optarg;
			break;
		case O_QUIET:
			o->quiet = true;
			break;
		case O_TARGETS:
			a->targets = optarg;
			break;
		case O_PEERS:
			a->peers_arg = optarg;
			break;
		case O_TCPUS:
			a->target_cpus = optarg;
			break;
		case O_FAULT:
			/* testing the bench's own accounting: see tests/integration/t_bench_accounting.sh */
			if (!strcmp(optarg, "drop-one"))
				o->fault = BF_DROP_ONE;
			else if (!strcmp(optarg, "reorder"))
				o->fault = BF_REORDER;
			else if (!strcmp(optarg, "bounce-one"))
				o->fault = BF_BOUNCE_ONE;
			else
				goto bad;
			break;
		case O_TLS:
			o->tls = true;
			break;
		case O_TLSDIR:
			a->tls_dir = optarg;
			break;
		case O_BURST:
			o->burst = atol(optarg);
			break;
		case O_CRATE:
			o->comp_read_rate = atof(optarg);
			break;
		case O_CPAUSE:
			o->comp_pause_ms = atoi(optarg);
			break;
		case O_CPEVERY:
			o->comp_pause_every = atoi(optarg);
			break;
		case O_STALL:
			o->stall_ms = atoi(optarg);
			break;
		case O_STALLTO:
			o->stall_timeout_s = atoi(optarg);
			break;
		case O_DNS:
			o->dns = true;
			break;
		case O_RATES:
			snprintf(o->rates, sizeof o->rates, "%s", optarg);
			break;
		case O_PERLINK:
			snprintf(o->per_link, sizeof o->per_link, "%s", optarg);
			break;
		case O_REMOTE:
			snprintf(o->remote, sizeof o->remote, "%s", optarg);
			break;
		case 'h':
			bm_usage(stdout);
			return 0;
		default:
			goto bad;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fedhub-bench: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return -1;
bad:
	fprintf(stderr, "fedhub-bench: bad option value (see --help)\n");
	return 2;
}

/* Options that only make sense together, and what follows from them; -1 to
 * go on, else the exit status. */
static int bm_check_opts(struct bm_args *a)
{
	struct bench_opts *o = &a->o;
	/* remote-domains needs no inbound links: the target's links to the bench carry it */
	if (o->scenario == BS_REMOTE_UP && !a->links_given)
		o->links = 0;
	int min_links = o->scenario == BS_REMOTE_UP || o->scenario == BS_COMPONENT_S2S ? 0 : 1;
	if (o->links < min_links || o->components < 0 || o->window < 1 || o->seconds <= 0 || o->size < 64 ||
	    o->size > 4000 || o->connect_concurrency < 1 || o->burst < 1 || o->comp_read_rate < 0 ||
	    o->comp_pause_ms < 0 || o->comp_pause_every < 1 || o->stall_ms < 0 ||
	    o->stall_timeout_s < 0) {
		fprintf(stderr, "fedhub-bench: out-of-range option (links >= 1, window >= 1, 64 <= size <= 4000, "
				"burst >= 1, comp-pause-every >= 1)\n");
		return 2;
	}
	if (o->domains <= 0)
		o->domains = o->links > 0 ? o->links : 1;
	if (o->scenario == BS_STALL && (o->ncomp_domains < 2 || o->components < 2 || o->rate <= 0)) {
		fprintf(stderr, "fedhub-bench: stall needs two component domains (--comp-domain comp.fhb,comp2.fhb), "
				"--components 2 and an open-loop --rate\n");
		return 2;
	}
	if (o->scenario == BS_STALL && o->domains < 2 * o->links) {
		fprintf(stderr, "fedhub-bench: stall needs --domains >= 2 x --links, so that every link carries "
				"stanzas to both component domains\n");
		return 2;
	}
	if (o->scenario == BS_S2S_BACKEND) {
		/* no component: the remote links write to the backend's domain */
		if (o->tls) {
			fprintf(stderr, "fedhub-bench: s2s-backend runs plaintext dialback links only (no --tls)\n");
			return 2;
		}
		o->components = 0;
		o->ncomp_domains = 1;
		snprintf(o->comp_domains[0], sizeof o->comp_domains[0], "%s", o->backend_domain);
		snprintf(o->target_domain, sizeof o->target_domain, "%s", o->backend_domain);
	}
	if (o->components == 0)
		o->have_comp = false;
	if ((o->scenario == BS_COMPONENT_S2S || o->scenario == BS_ECHO) && (!o->have_comp || o->relay)) {
		fprintf(stderr, "fedhub-bench: %s needs components (and no --relay)\n", bm_scenario_name(o->scenario));
		return 2;
	}
	if (!o->target_domain[0])
		snprintf(o->target_domain, sizeof o->target_domain, "%s", o->comp_domains[0]);
	if (o->tls && o->relay) {
		fprintf(stderr, "fedhub-bench: --tls and --relay do not go together (a relay has no TLS peer)\n");
		return 2;
	}
	if (o->tls && !a->compare && !a->tls_dir) {
		fprintf(stderr, "fedhub-bench: --tls needs --tls-dir DIR (bench/peers/mkcerts.sh DIR makes one)\n");
		return 2;
	}
	if (a->tls_dir)
		bm_tls_dir(o, a->tls_dir);
	return -1;
}

/* One run against a target that is already running. */
static int bm_run_one(const struct bm_args *a, const char *cmdline)
{
	const struct bench_opts *o = &a->o;
	struct bm_named t;
	memset(&t, 0, sizeof t);
	snprintf(t.name, sizeof t.name, "%s", a->target_name);
	int rc = bench_run(o, &t.r);
	t.ran = true;
	bench_report(stdout, o, t.name, &t.r);
	if (a->json)
		bm_write_json(a->json, o, &t, 1, cmdline);
	if (rc < 0 && (t.r.links_up < t.r.links_wanted || t.r.sent == 0))
		return 2;
	return (t.r.lost || t.r.out_of_order || t.r.error[0]) ? 1 : 0;
}

int main(int argc, char **argv)
{
	/* a peer that closes is an error to report, not a reason to die */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		bm_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "tokenizer"))
		return bench_tokenizer(argc - 1, argv + 1);
	if (!strcmp(argv[1], "handshakes"))
		return bench_handshakes(argc - 1, argv + 1);
	if (!strcmp(argv[1], "certload"))
		return bench_tls_certload(argc - 1, argv + 1);
	if (!strcmp(argv[1], "relay"))
		return bench_relay(argc - 1, argv + 1);
	if (!strcmp(argv[1], "close"))
		return bench_close(argc - 1, argv + 1);
	bool compare = !strcmp(argv[1], "compare");
	int first = compare ? 2 : 1;
	if (argc <= first) {
		bm_usage(stderr);
		return 2;
	}
	struct bm_args a;
	memset(&a, 0, sizeof a);
	a.compare = compare;
	snprintf(a.target_name, sizeof a.target_name, "target");
	if (bm_scenario(argv[first], &a.o.scenario) < 0) {
		if (!strcmp(argv[first], "handshakes") || !strcmp(argv[first], "tokenizer") ||
		    !strcmp(argv[first], "certload") || !strcmp(argv[first], "relay") || !strcmp(argv[first], "close"))
			fprintf(stderr, "fedhub-bench: %s: not available in compare mode\n", argv[first]);
		else
			fprintf(stderr, "fedhub-bench: unknown scenario '%s' (see --help)\n", argv[first]);
		return 2;
	}
	bm_defaults(&a.o);
	int rc = bm_parse_opts(&a, argc, argv, first);
	if (rc >= 0)
		return rc;
	if ((rc = bm_check_opts(&a)) >= 0)
		return rc;
	const char *cmdline = cmdline_of(argc, argv);
	if (a.o.scenario == BS_MANY_DOMAINS)
		return bench_many_domains(&a.o, a.json, cmdline, a.target_cpus);
	return compare ? bm_compare(&a, cmdline) : bm_run_one(&a, cmdline);
}
