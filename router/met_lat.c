/*
 * router/met_lat.c — the router-added latency histogram in /metrics:
 * fedhub_router_latency_seconds, per stanza forwarded, from the loop turn
 * that handed its bytes to the router to the turn that handed them to the
 * kernel for sending (net.h, net_lat_get()). Read at scrape, on the HTTP
 * thread, with met.lock held; the workers' counts are summed as they are.
 */
#include <stdint.h>
#include "net/net.h"
#include "router/met-int.h"

void met_render_latency(struct met_out *o)
{
	uint64_t c[NET_LAT_BUCKETS], sum_us, n, cum = 0;
	if (net_nworkers() <= 0)
		return;
	net_lat_get(c, &sum_us, &n);
	met_put(o, "# HELP fedhub_router_latency_seconds time a forwarded stanza spent in the hub: from the loop "
		   "turn that received it to the one that sent it\n"
		   "# TYPE fedhub_router_latency_seconds histogram\n");
	for (int i = 0; i < NET_LAT_BUCKETS - 1; i++) {
		cum += c[i];
		met_put(o, "fedhub_router_latency_seconds_bucket{le=\"%g\"} %llu\n",
			(double)net_lat_bound_us(i) / 1e6, (unsigned long long)cum);
	}
	/* the total is summed separately: a scrape while a worker counts may
	 * see it a little ahead or behind the buckets; +Inf stays >= them */
	cum += c[NET_LAT_BUCKETS - 1];
	met_put(o, "fedhub_router_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
		(unsigned long long)(n > cum ? n : cum));
	met_put(o, "fedhub_router_latency_seconds_sum %.6f\nfedhub_router_latency_seconds_count %llu\n",
		(double)sum_us / 1e6, (unsigned long long)(n > cum ? n : cum));
}
