/*
 * router/met_sys.c — metrics read from outside the workers' counter blocks
 * at scrape time, on the HTTP thread: the resolver's counters (net/dns.c)
 * and the process's CPU, memory and descriptors (/proc). met_render()
 * calls these with met.lock held; they take no lock of their own.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "net/dns.h"
#include "router/met.h"
#include "router/met-int.h"
#include "router/clu.h"

/* The resolver's counters (net/dns.c, on the control thread). */
void met_render_dns(struct met_out *o)
{
	struct dns_stats d;
	dns_stats_get(&d);
	met_metric(o, "dns_lookups", "_total", "counter", "name lookups asked for by workers", d.lookups);
	met_metric_by(o, "dns_cache_hits_total", "counter", "lookups answered from the DNS cache", "kind",
		      (const char *const[]){"answer", "failure"}, (const uint64_t[]){d.hits, d.hits_negative}, 2);
	met_metric(o, "dns_cache_misses", "_total", "counter", "lookups not answered from the DNS cache", d.misses);
	met_metric(o, "dns_merged", "_total", "counter",
		   "lookups that joined one already under way for the same domain", d.merged);
	met_metric_by(o, "dns_queries_sent_total", "counter",
		      "queries sent to the DNS server (addr: one A + AAAA lookup)", "kind",
		      (const char *const[]){"srv", "addr"}, (const uint64_t[]){d.queries_srv, d.queries_addr}, 2);
	met_metric(o, "dns_retries", "_total", "counter", "lookups tried again after a timeout", d.retries);
	met_metric_by(o, "dns_lookup_failures_total", "counter", "lookups that failed, by reason", "kind",
		      (const char *const[]){"nxdomain", "timeout", "error"},
		      (const uint64_t[]){d.fail_nxdomain, d.fail_timeout, d.fail_error}, 3);
	met_metric(o, "dns_cache_evictions", "_total", "counter", "DNS cache entries reused for another domain",
		   d.evictions);
	met_metric(o, "dns_inflight", "", "gauge", "domains being resolved", d.inflight);
	met_metric(o, "dns_inflight_peak", "", "gauge",
		   "the most domains ever resolved at once (dns_max_inflight bounds it)", d.inflight_peak);
	met_metric(o, "dns_queued", "", "gauge", "domains waiting to be resolved (for a slot or a retry)", d.queued);
	met_metric(o, "dns_cache_entries", "", "gauge", "entries in the DNS cache (answers and failures)",
		   d.cache_entries);
}

/* Process metrics from /proc (read at scrape, on the HTTP thread). */
void met_render_process(struct met_out *o)
{
	char buf[1024], *p;
	unsigned long long ut, st, start, rss;
	long tck = sysconf(_SC_CLK_TCK), pg = sysconf(_SC_PAGESIZE);
	FILE *f;
	size_t n;

	f = fopen("/proc/self/stat", "re");
	n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	/* fields after "(comm)": state is 3rd; utime 14, stime 15, starttime 22 */
	p = strrchr(buf, ')');
	if (p && tck > 0 &&
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu", &ut,
		   &st, &start) == 3) {
		met_put(o,
			"# HELP fedhub_process_cpu_seconds_total user and system CPU time\n"
			"# TYPE fedhub_process_cpu_seconds_total counter\nfedhub_process_cpu_seconds_total %.2f\n",
			(double)(ut + st) / (double)tck);
		unsigned long long btime = 0;
		char line[256];
		if ((f = fopen("/proc/stat", "re"))) {
			while (fgets(line, sizeof(line), f))
				if (sscanf(line, "btime %llu", &btime) == 1)
					break;
			fclose(f);
		}
		if (btime)
			met_put(o,
				"# HELP fedhub_process_start_time_seconds start time of the process (Unix time)\n"
				"# TYPE fedhub_process_start_time_seconds gauge\nfedhub_process_start_time_seconds "
				"%.2f\n",
				(double)btime + (double)start / (double)tck);
	}
	if ((f = fopen("/proc/self/statm", "re"))) {
		if (fscanf(f, "%*u %llu", &rss) == 1)
			met_metric(o, "process_resident_memory", "_bytes", "gauge", "resident set size",
				   (uint64_t)rss * (uint64_t)pg);
		fclose(f);
	}
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		uint64_t fds = 0;
		struct dirent *de;
		while ((de = readdir(d)))
			if (de->d_name[0] != '.')
				fds++;
		closedir(d);
		met_metric(o, "process_open_fds", "", "gauge", "open file descriptors",
			   fds ? fds - 1 : 0); /* not ours: the dir */
	}
}

/* The cluster registry (router/clu.h): only on a clustered node. */
void met_render_cluster(struct met_out *o)
{
	struct clu_stats c;
	if (!clu_enabled())
		return;
	clu_stats_get(&c);
	met_metric(o, "cluster_nodes", "", "gauge", "cluster nodes alive (their key in Redis), this one included",
		   c.nodes);
	met_metric(o, "cluster_leases_held", "", "gauge",
		   "remote domains whose lease this node holds and may send under (not self-fenced)", c.leases_held);
	met_metric(o, "cluster_lease_gained", "_total", "counter", "leases on remote domains acquired", c.gained);
	met_metric(o, "cluster_lease_lost", "_total", "counter",
		   "leases lost: another node holds them, or Redis no longer had them", c.lost);
	met_metric(o, "cluster_lease_fenced", "_total", "counter",
		   "held leases that reached lease_time - margin without a renewal (sending stopped)", c.fenced);
	met_metric(o, "redis_up", "", "gauge", "1 while the Redis command connection is up", c.redis_up);
	met_metric(o, "redis_commands", "_total", "counter", "commands sent to Redis (any connection)", c.commands);
	met_metric(o, "redis_command_failures", "_total", "counter",
		   "Redis commands answered with an error or not answered", c.failures);
	met_metric(o, "redis_timeouts", "_total", "counter",
		   "Redis connects or commands past redis_timeout (the connection was made again)", c.timeouts);
	met_metric(o, "redis_reconnects", "_total", "counter", "Redis command connections made again", c.reconnects);
	met_metric(o, "redis_master_changes", "_total", "counter",
		   "Redis master addresses learnt from Sentinel (the first one included)", c.master_changes);
	met_put(o, "# HELP fedhub_redis_latency_seconds time from sending a Redis command to its reply\n"
		   "# TYPE fedhub_redis_latency_seconds histogram\n");
	for (int i = 0; i < CLU_LAT_BUCKETS; i++)
		met_put(o, "fedhub_redis_latency_seconds_bucket{le=\"%g\"} %llu\n", c.lat_bounds[i],
			(unsigned long long)c.lat_le[i]);
	met_put(o, "fedhub_redis_latency_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)c.lat_count);
	met_put(o, "fedhub_redis_latency_seconds_sum %.6f\nfedhub_redis_latency_seconds_count %llu\n", c.lat_sum,
		(unsigned long long)c.lat_count);
}
