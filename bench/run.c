/*
 * bench/run.c — one run of the engine: the setup phase, then either
 * a one-shot burst or a timed run (warm-up, measurement, drain), sampling the
 * target's CPU and memory from /proc; bench_run() is the entry point.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <liburing.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/sha.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include "bench/engine-int.h"

/* ---- /proc ----------------------------------------------------------------- */

int bench_proc_sample(int pid, double *cpu_s, uint64_t *rss_kib, uint64_t *hwm_kib)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	/* the command name may hold spaces and parentheses: fields count from the last ')' */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long ut = 0, st = 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	if (cpu_s)
		*cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		unsigned long v;
		if (rss_kib && sscanf(line, "VmRSS: %lu", &v) == 1)
			*rss_kib = v;
		if (hwm_kib && sscanf(line, "VmHWM: %lu", &v) == 1)
			*hwm_kib = v;
	}
	fclose(f);
	return 0;
}

static void be_pin(const struct bench_opts *o)
{
	if (o->ncpus <= 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	for (int i = 0; i < o->ncpus; i++)
		CPU_SET(o->cpus[i], &set);
	if (sched_setaffinity(0, sizeof set, &set) < 0)
		fprintf(stderr, "fedhub-bench: cannot pin to the given CPUs: %s\n", strerror(errno));
}

/* /proc/net/snmp Udp RcvbufErrors, host-wide; -1 if unreadable. */
static int64_t be_udp_rcvbuf_errors(void)
{
	FILE *f = fopen("/proc/net/snmp", "r");
	char head[1024], vals[1024];
	int64_t v = -1;
	if (!f)
		return -1;
	while (fgets(head, sizeof head, f) && fgets(vals, sizeof vals, f)) {
		if (strncmp(head, "Udp:", 4) || strncmp(vals, "Udp:", 4))
			continue;
		/* the column named RcvbufErrors in the header line */
		int col = -1, i = 0;
		for (char *s1 = NULL, *t = strtok_r(head, " \n", &s1); t; t = strtok_r(NULL, " \n", &s1), i++)
			if (!strcmp(t, "RcvbufErrors"))
				col = i;
		i = 0;
		for (char *s2 = NULL, *t = strtok_r(vals, " \n", &s2); t; t = strtok_r(NULL, " \n", &s2), i++)
			if (i == col)
				v = strtoll(t, NULL, 10);
		break;
	}
	fclose(f);
	return v;
}

/* The fd limit raised to the hard limit; returns the limit now in force. */
static long be_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
}

/* Connections a run holds at once, about: one fd each on the bench's side. */
static long be_fds_needed(const struct bench_opts *o)
{
	long n = o->links + o->components + 64;
	if (o->scenario == BS_REMOTE_UP || o->scenario == BS_COMPONENT_S2S || o->scenario == BS_ECHO)
		n += o->domains; /* a link from the target per remote domain */
	if (o->scenario == BS_S2S_BACKEND)
		n += o->links + 2 * o->domains; /* the backend's links; internal and outbound ones */
	return n;
}

static void be_sample_peak(struct eng *e)
{
	uint64_t rss = 0;
	if (e->r->have_target && bench_proc_sample(e->o->target_pid, NULL, &rss, NULL) == 0 &&
	    rss > e->r->target_peak_kib)
		e->r->target_peak_kib = rss;
}

/* burst and remote-up: everything is written at once (burst: --burst
 * stanzas over the sending links; remote-up: one per flow), then the run
 * lasts until each is accounted or --drain seconds have passed. The
 * measured window is that time; latency counts from the write. */
static void be_oneshot(struct eng *e)
{
	const struct bench_opts *o = e->o;
	struct bench_result *r = e->r;
	double cpu0 = 0, cpu1 = 0;
	e->generating = e->measuring = true;
	if (r->have_target)
		bench_proc_sample(o->target_pid, &cpu0, NULL, NULL);
	uint64_t t0 = e->now = be_now();
	int nsenders = 0;
	for (int i = 0; i < e->nc; i++)
		nsenders += e->c[i].state == BC_READY && e->c[i].nflows > 0;
	long left = o->burst;
	for (int i = 0, k = 0; i < e->nc; i++) {
		struct bconn *c = &e->c[i];
		if (c->state != BC_READY || !c->nflows)
			continue;
		long n = o->scenario == BS_BURST ? left / (nsenders - k) : c->nflows;
		left -= n;
		k++;
		for (long j = 0; j < n; j++)
			be_send_one(e, c, t0);
	}
	uint64_t next_tick = t0 + 1000000000ull, next_sample = t0;
	while (be_inflight(e) > 0 && (double)(e->now - t0) / 1e9 < o->drain) {
		if (be_ring_turn(e, 10000000ull) < 0)
			break;
		if (e->now >= next_sample) {
			be_sample_peak(e);
			next_sample = e->now + 100000000ull;
		}
		if (e->now >= next_tick) {
			be_progress(e, (double)(e->now - t0) / 1e9, o->scenario == BS_BURST ? "burst" : "come-up");
			next_tick += 1000000000ull;
		}
		if (r->error[0] && o->fault == BF_NONE)
			break;
	}
	e->measuring = false;
	uint64_t t1 = e->last_acct > t0 ? e->last_acct : e->now;
	r->drain_s = r->measured_s = (double)(t1 - t0) / 1e9;
	e->t_measure0 = t0;
	e->t_measure1 = t1;
	if (r->have_target && bench_proc_sample(o->target_pid, &cpu1, &r->target_rss_kib, &r->target_hwm_kib) == 0)
		r->target_cpu_s = cpu1 - cpu0;
	else if (r->have_target)
		be_error(e, "target process %d exited during the run", o->target_pid);
	if (r->target_peak_kib > r->target_rss_kib)
		r->target_rss_kib = r->target_peak_kib;
	e->generating = false;
}

/* The other scenarios: warm-up, measured window (closed or open loop), drain. */
static void be_timed(struct eng *e)
{
	const struct bench_opts *o = e->o;
	struct bench_result *r = e->r;
	/* traffic: warm-up, measured window, drain */
	uint64_t t0 = e->now;
	e->t_measure0 = t0 + (uint64_t)(o->warmup * 1e9);
	e->t_measure1 = e->t_measure0 + (uint64_t)(o->seconds * 1e9);
	e->generating = true;
	int nsenders = 0;
	for (int i = 0; i < e->nc; i++)
		if (e->c[i].nflows)
			nsenders++;
	for (int i = 0; i < e->nc && o->rate > 0; i++) {
		struct bconn *c = &e->c[i];
		if (!c->nflows)
			continue;
		c->interval_ns = 1e9 * nsenders / o->rate;
		/* spread the senders' phases over one interval */
		c->next_ns = c->base_ns = t0 + (uint64_t)(c->interval_ns * i / (nsenders ? nsenders : 1));
	}
	uint64_t next_tick = t0 + 1000000000ull;
	uint64_t next_sample = t0;
	double cpu0 = 0, cpu1 = 0;
	bool measuring_started = false;
	struct bench_hublat hub0;
	bool hub0_ok = false;
	for (;;) {
		e->now = be_now();
		if (!measuring_started && e->now >= e->t_measure0) {
			measuring_started = e->measuring = true;
			if (o->have_http)
				hub0_ok = bench_hublat_read(&o->target_http, &hub0) == 0;
			if (r->have_target)
				bench_proc_sample(o->target_pid, &cpu0, &r->target_rss_kib, NULL);
			if (o->scenario == BS_STALL) {
				/* the first component (the first component domain) stops reading */
				e->stall_t0 = e->now;
				e->stall_t1 = e->now + (uint64_t)o->stall_ms * 1000000ull;
				r->stall_s = o->stall_ms / 1e3;
				for (int i = 0; i < e->nc; i++)
					if (e->c[i].role == BC_COMP && e->c[i].comp_dom == 0)
						e->c[i].hold_ns = e->stall_t1;
			}
		}
		if (e->now >= next_sample) {
			be_sample_peak(e);
			next_sample = e->now + 100000000ull;
		}
		/* a broken link ends the measurement early (except when faults are
		 * injected on purpose): the window is then what was measured */
		bool stop = r->error[0] && o->fault == BF_NONE;
		if (e->now >= e->t_measure1 || stop) {
			if (e->now < e->t_measure1)
				e->t_measure1 = e->now > e->t_measure0 ? e->now : e->t_measure0;
			e->measuring = false;
			if (measuring_started && r->have_target &&
			    bench_proc_sample(o->target_pid, &cpu1, NULL, &r->target_hwm_kib) < 0) {
				be_error(e, "target process %d exited during the run", o->target_pid);
				cpu1 = cpu0;
			}
			if (!measuring_started)
				cpu1 = cpu0 = 0;
			/* after the CPU sample: the scrape's own cost is not counted */
			struct bench_hublat hub1;
			if (measuring_started && hub0_ok && bench_hublat_read(&o->target_http, &hub1) == 0)
				r->have_hub_lat = bench_hublat_diff(&hub0, &hub1, &r->hub_lat) == 0;
			break;
		}
		be_generate(e);
		uint64_t wait = o->rate > 0 ? 200000ull : 50000000ull;
		if (be_ring_turn(e, wait) < 0)
			return;
		if (e->now >= next_tick) {
			if (e->measuring && r->have_target) {
				uint64_t rss = 0;
				if (bench_proc_sample(o->target_pid, NULL, &rss, NULL) == 0 && rss > r->target_rss_kib)
					r->target_rss_kib = rss;
			}
			be_progress(e, (double)(e->now - t0) / 1e9, e->measuring ? "measure" : "warmup");
			next_tick += 1000000000ull;
		}
	}
	r->measured_s = (double)(e->t_measure1 - e->t_measure0) / 1e9;
	r->target_cpu_s = cpu1 - cpu0;

	if (o->scenario == BS_IDLE_LINKS) {
		/* prove the links are alive: one stanza per flow after the idle window */
		for (int i = 0; i < e->nc; i++) {
			struct bconn *c = &e->c[i];
			if (c->state == BC_READY && c->nflows)
				for (int j = 0; j < c->nflows; j++)
					be_send_one(e, c, e->now);
		}
	}
	/* drain: wait for what is in flight, bounded */
	e->generating = false;
	uint64_t t_drain = be_now();
	while (be_inflight(e) > 0 && (double)(be_now() - t_drain) / 1e9 < o->drain) {
		if (be_ring_turn(e, 10000000ull) < 0)
			break;
		if (o->fault == BF_REORDER && e->fault_done == false)
			break;
	}
	if (measuring_started && e->last_acct > e->t_measure1)
		r->drain_s = (double)(e->last_acct - e->t_measure1) / 1e9;
}

int bench_run(const struct bench_opts *o, struct bench_result *r)
{
	struct eng E, *e = &E;
	int64_t udp0 = -1;
	memset(e, 0, sizeof E);
	memset(r, 0, sizeof *r);
	e->o = o;
	e->r = r;
	e->rng = 0x9e3779b97f4a7c15ull;
	e->lfd_db = e->lfd_relay = -1;
	for (int i = 0; i < (int)sizeof e->body; i++)
		e->body[i] = (char)('a' + i % 26);
	e->body_len = (int)sizeof e->body;
	be_pin(o);
	long nofile = be_raise_nofile(), need = be_fds_needed(o);
	if (nofile > 0 && need > nofile) {
		snprintf(r->limit_note, sizeof r->limit_note,
			 "the fd limit (hard limit %ld) is below the %ld this run needs", nofile, need);
		be_error(e, "%s", r->limit_note);
		return -1;
	}

	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	p.cq_entries = 65536;
	int rc = io_uring_queue_init_params(4096, &e->ring, &p);
	if (rc < 0) {
		memset(&p, 0, sizeof p);
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = 65536;
		rc = io_uring_queue_init_params(4096, &e->ring, &p);
	}
	if (rc < 0) {
		be_error(e, "io_uring_queue_init: %s", strerror(-rc));
		return -1;
	}

	if (o->target_pid > 0) {
		r->have_target = bench_proc_sample(o->target_pid, NULL, &r->target_rss_before_kib, NULL) == 0;
		if (!r->have_target)
			fprintf(stderr, "fedhub-bench: target pid %d not readable; no CPU/RSS figures\n",
				o->target_pid);
	}
	if (o->tls) {
		struct tls_opts to = {.ca_file = o->tls_ca, .verify_required = false};
		e->tls = tls_ctx_new(&to);
		int k = e->tls ? tls_ctx_add_cert(e->tls, o->tls_cert, o->tls_key) : TLS_ERR_NOMEM;
		if (k < 1) {
			be_error(e, "TLS: cannot load CA %s / certificate %s / key %s: %s", o->tls_ca, o->tls_cert,
				 o->tls_key, tls_strerror(k));
			goto out;
		}
		if (be_tls_more_certs(e) < 0)
			goto out;
	}
	if (o->relay) {
		e->lfd_relay = be_listen(e, &o->relay_listen);
		if (e->lfd_relay < 0)
			goto out;
		be_arm_accept(e, e->lfd_relay, 1);
	} else {
		e->lfd_db = be_listen(e, &o->listen_db);
		if (e->lfd_db < 0)
			goto out;
		be_arm_accept(e, e->lfd_db, 0);
	}
	be_plan(e);
	/* s2s-backend: the backend's links too */
	r->links_wanted = o->scenario == BS_S2S_BACKEND ? 2 * o->links : o->links;
	udp0 = be_udp_rcvbuf_errors();

	/* setup: components, then links, a bounded number at a time */
	uint64_t t_start = be_now(), next_tick = t_start + 1000000000ull;
	e->now = t_start;
	while (r->links_up < r->links_wanted || (o->have_comp && r->comps_up < o->components)) {
		be_start_setups(e);
		if (be_ring_turn(e, 10000000ull) < 0)
			goto out;
		if (e->now >= next_tick) {
			be_progress(e, (double)(e->now - t_start) / 1e9, "setup");
			next_tick += 1000000000ull;
		}
		bool stuck = true;
		for (int i = 0; i < e->nc; i++)
			if ((e->c[i].role == BC_S2S_OUT || e->c[i].role == BC_COMP) && e->c[i].state != BC_CLOSED)
				stuck = false;
		if (stuck || r->error[0] || (double)(e->now - t_start) / 1e9 > o->setup_timeout) {
			if (!r->error[0]) {
				int st[BC_CLOSED + 1] = {0}, nin = 0;
				for (int i = 0; i < e->nc; i++) {
					if (e->c[i].role == BC_S2S_OUT)
						st[e->c[i].state]++;
					nin += e->c[i].role == BC_S2S_IN;
				}
				be_error(e,
					 "setup incomplete after %.0f s: %d/%d links (%d connecting, %d awaiting "
					 "the stream, %d awaiting dialback results, %d closed; %d connections from "
					 "the target), %d/%d components",
					 o->setup_timeout, r->links_up, r->links_wanted, st[BC_CONNECTING], st[BC_STREAM],
					 st[BC_AUTH], st[BC_CLOSED], nin, r->comps_up,
					 o->have_comp ? o->components : 0);
			}
			goto out;
		}
	}
	r->setup_s = (double)(e->now - t_start) / 1e9;
	if (o->scenario == BS_BURST || o->scenario == BS_REMOTE_UP)
		be_oneshot(e);
	else
		be_timed(e);
out:
	r->lost = r->sent > r->delivered + r->bounced ? r->sent - r->delivered - r->bounced : 0;
	r->first_bounce_s = r->last_bounce_s = -1;
	if (e->stall_t0 && e->first_bounce) {
		r->first_bounce_s = ((double)e->first_bounce - (double)e->stall_t0) / 1e9;
		r->last_bounce_s = ((double)e->last_bounce - (double)e->stall_t0) / 1e9;
	}
	int64_t udp1 = be_udp_rcvbuf_errors();
	r->udp_rcvbuf_drops = udp0 >= 0 && udp1 >= udp0 ? udp1 - udp0 : -1;
	for (int i = 0; i < e->nc; i++) {
		struct bconn *c = &e->c[i];
		if (c->fd >= 0)
			close(c->fd);
		free(c->rbuf);
		free(c->ob[0].p);
		free(c->ob[1].p);
		tls_conn_free(c->tls);
		free(c->cbuf);
		free(c->cob.p);
	}
	/* shutdown() fails the pending accept, so the ring drops its reference
	 * to the listener now and the port is free for the next run */
	if (e->lfd_db >= 0)
		shutdown(e->lfd_db, SHUT_RDWR);
	if (e->lfd_relay >= 0)
		shutdown(e->lfd_relay, SHUT_RDWR);
	struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 50000000};
	struct io_uring_cqe *cqe;
	while (io_uring_wait_cqe_timeout(&e->ring, &cqe, &ts) == 0)
		io_uring_cqe_seen(&e->ring, cqe);
	if (e->lfd_db >= 0)
		close(e->lfd_db);
	if (e->lfd_relay >= 0)
		close(e->lfd_relay);
	io_uring_queue_exit(&e->ring);
	tls_ctx_free(e->tls);
	free(e->c);
	free(e->f);
	free(e->dirty);
	return r->error[0] ? -1 : 0;
}
