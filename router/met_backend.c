/*
 * router/met_backend.c — the per-backend series of /metrics
 * (fedhub_backend_*{backend="NAME"}), summed over the workers' blocks.
 *
 * The names are copied once at start (met_set_backends): the HTTP thread
 * never reads the live configuration, which a reload may free under it.
 * A reload that changes the [backend] sections is refused (reload.c), so a
 * slot keeps its name for the life of the process.
 */
#include <stdio.h>
#include <string.h>
#include <stddef.h>

#include "router/met.h"
#include "router/met-int.h"

static char bk_names[MET_BACKENDS_MAX][64];
static int bk_n; /* slots in use */

void met_set_backends(const struct cfg *c)
{
	bk_n = 0;
	for (int i = 0; i < c->nbackends; i++) {
		int k = met_backend_slot(i);
		snprintf(bk_names[k], sizeof(bk_names[k]), "%s", i == k ? c->backends[i].name : "_other");
		if (k + 1 > bk_n)
			bk_n = k + 1;
	}
}

static uint64_t sum_bk(int k, size_t off)
{
	uint64_t s = 0;
	struct met_worker *w;
	for (int i = 0; (w = met_of(i)) != NULL; i++)
		s += __atomic_load_n((uint64_t *)((char *)&w->bk[k] + off), __ATOMIC_RELAXED);
	return s;
}

void met_backend_totals(int slot, struct met_backend *out)
{
	out->links_up = sum_bk(slot, offsetof(struct met_backend, links_up));
	out->stanzas_in = sum_bk(slot, offsetof(struct met_backend, stanzas_in));
	out->stanzas_out = sum_bk(slot, offsetof(struct met_backend, stanzas_out));
	out->queued = sum_bk(slot, offsetof(struct met_backend, queued));
	out->bounced = sum_bk(slot, offsetof(struct met_backend, bounced));
	out->link_failed = sum_bk(slot, offsetof(struct met_backend, link_failed));
}

void met_render_backends(struct met_out *o)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} fam[] = {
		{"backend_links_up", "gauge", "internal links to the backend with a domain pair authenticated",
		 offsetof(struct met_backend, links_up)},
		{"backend_stanzas_in_total", "counter", "stanzas relayed to the backend",
		 offsetof(struct met_backend, stanzas_in)},
		{"backend_stanzas_out_total", "counter",
		 "stanzas the backend sent through the hub (to remote or hosted domains)",
		 offsetof(struct met_backend, stanzas_out)},
		{"backend_queued", "gauge", "stanzas waiting for an internal link to the backend",
		 offsetof(struct met_backend, queued)},
		{"backend_bounced_total", "counter", "stanzas for the backend bounced with an error",
		 offsetof(struct met_backend, bounced)},
		{"backend_link_failures_total", "counter", "attempts at an internal link to the backend that failed",
		 offsetof(struct met_backend, link_failed)},
	};
	if (!bk_n)
		return;
	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		met_put(o, "# HELP fedhub_%s %s\n# TYPE fedhub_%s %s\n", fam[f].name, fam[f].help, fam[f].name,
			fam[f].type);
		for (int k = 0; k < bk_n; k++) /* names: letters, digits, - _ . (cfg_backend.c) */
			met_put(o, "fedhub_%s{backend=\"%s\"} %llu\n", fam[f].name, bk_names[k],
				(unsigned long long)sum_bk(k, fam[f].off));
	}
}
