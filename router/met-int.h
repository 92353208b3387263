/*
 * router/met-int.h — what router/met.c, met_sys.c and met_cert.c share
 * and nobody else calls: the text appender /metrics is rendered with, the
 * collectors met_render() calls, and the PEM reader behind
 * met_cert_expiry_file(). The rest of the router sees met.h.
 */
#ifndef FEDHUB_MET_INT_H
#define FEDHUB_MET_INT_H

#include <stddef.h>
#include <stdint.h>

/* An appender that counts what it could not write, like snprintf. */
struct met_out {
	char *p;
	size_t cap, len;
};

void met_put(struct met_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One metric with its HELP and TYPE lines: fedhub_<name><suffix> v. */
void met_metric(struct met_out *o, const char *name, const char *suffix, const char *type, const char *help,
		uint64_t v);
/* One metric with a label taking n values. */
void met_metric_by(struct met_out *o, const char *name, const char *type, const char *help, const char *label,
		   const char *const *vals, const uint64_t *v, int n);

/* met_sys.c: read at scrape, with met.lock held */
void met_render_dns(struct met_out *o);
void met_render_process(struct met_out *o);
void met_render_backends(struct met_out *o);
void met_render_cluster(struct met_out *o);
/* met_lat.c: the router-added latency histogram (net_lat_get) */
void met_render_latency(struct met_out *o);

/* met_cert.c: the notAfter (Unix time) of the first certificate in a PEM
 * file, or -1. */
int64_t met_pem_not_after(const char *path);

#endif
