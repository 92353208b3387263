/*
 * bench/bench.h — fedhub-bench: the load generator's internal API.
 *
 * fedhub-bench plays both sides of an XMPP router: remote servers that reach
 * it over s2s (authenticated by Server Dialback, the bench being the
 * authoritative server of its own domains) and XEP-0114 components behind it.
 * The pieces:
 *   main.c    command line, scenarios, reports (text and JSON)
 *   compare.c compare mode (main-int.h shared with main.c)
 *   engine.c  the io_uring loop: connections, sockets (engine-int.h shared)
 *   stream.c  XMPP streams, TLS, traffic, accounting
 *   run.c     a run of the engine: phases, sampling, bench_run()
 *   hist.c    log-linear latency histogram
 *   many.c    the many-domains series (runs of the engine against fedhub)
 *   tok_bench.c, tls_bench.c, net_relay.c  the other scenarios, through the
 *             entry points declared at the end
 */
#ifndef FEDHUB_BENCH_H
#define FEDHUB_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <netinet/in.h>

/* ---- histogram (hist.c) ------------------------------------------------ */

/* Log-linear: 32 linear sub-buckets per power of two, so any reported
 * percentile is within ~3% of the true value; values are nanoseconds. */
#define BH_SUB_BITS 5
#define BH_SUB      (1u << BH_SUB_BITS)
#define BH_BUCKETS  ((64 - BH_SUB_BITS + 1) * BH_SUB)

struct bench_hist {
	uint64_t count;
	uint64_t max;
	uint64_t sum;
	uint64_t b[BH_BUCKETS];
};

void bench_hist_reset(struct bench_hist *h);
void bench_hist_add(struct bench_hist *h, uint64_t ns);
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* Value at quantile q (0..1): the bucket's midpoint, exact max for q=1. */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);

/* ---- engine (engine.c) ------------------------------------------------- */

enum bench_scenario {
	BS_S2S_COMPONENT, /* s2s links -> target -> components */
	BS_COMPONENT_S2S, /* components -> target -> s2s (target dials the bench) */
	BS_ECHO,          /* s2s -> target -> component, echoed back -> s2s
			   * (the `transit` scenario: a hub carrying traffic
			   * between remote servers through a service) */
	BS_IDLE_LINKS,    /* many authenticated links, idle; memory and CPU per link */
	BS_BURST,         /* s2s links blast --burst stanzas at once to a (slow) component */
	BS_STALL,         /* s2s -> two component domains; the first stops reading */
	BS_REMOTE_UP,     /* components send one stanza to each of N remote (bench)
			   * domains: the target resolves, dials and authenticates
			   * a link per domain; time until each is up */
	BS_MANY_DOMAINS,  /* a series of the above (many.c), not an engine run */
	BS_S2S_BACKEND,   /* the bench is a backend server behind the target
			   * and the remote servers at once: remote -> target
			   * -> backend and backend -> target -> remote */
};

enum bench_fault { BF_NONE, BF_DROP_ONE, BF_REORDER, BF_BOUNCE_ONE };

struct bench_opts {
	enum bench_scenario scenario;
	struct sockaddr_in target_s2s, target_comp;
	bool have_comp;
	struct sockaddr_in listen_db; /* the bench's dialback / inbound s2s listener */
	bool relay;                   /* HAProxy mode: plain relay, no XMPP peer */
	struct sockaddr_in relay_listen;
	int target_pid;            /* 0: no CPU/RSS figures */
	struct sockaddr_in target_http; /* the target's /metrics (fedhub), if have_http */
	bool have_http;
	char target_domain[256];   /* s2s stream to=; defaults to the component domain */
	char comp_domains[8][256]; /* --comp-domain a,b,...: component i uses [i % n] */
	int ncomp_domains;
	char comp_secret[256];
	char domain_fmt[64]; /* printf format of bench domains, %d = 1..N */
	char db_secret[64];  /* dialback secret of the bench's domains */
	int links, domains, components;
	double seconds, warmup, drain;
	int size;                          /* target size of a message stanza, bytes */
	int window;                        /* closed loop: in-flight stanzas per sending connection */
	double rate;                       /* open loop: stanzas/s in total; 0 = closed loop */
	int mix_msg, mix_presence, mix_iq; /* relative weights */
	int connect_concurrency;           /* connections being set up at once */
	int cpus[64], ncpus;
	enum bench_fault fault;
	bool quiet;           /* no progress lines */
	double setup_timeout; /* s to establish every link */
	/* --tls: STARTTLS on every s2s link, both directions, then SASL
	 * EXTERNAL where offered (dialback otherwise), with net/tls.h */
	bool tls;
	char tls_ca[512], tls_cert[512], tls_key[512];
	/* burst: stanzas written at once, spread over the sending links */
	long burst;
	/* components that read slowly: stanzas/s (0: as fast as they can), and
	 * a pause of comp_pause_ms in reading after every comp_pause_every */
	double comp_read_rate;
	int comp_pause_ms, comp_pause_every;
	int stall_ms;            /* stall: the first component stops reading this long */
	int stall_timeout_s;     /* fedhub's stall_timeout (0: its default); stall: no bounce before it */
	char bounce_domain[256]; /* --fault bounce-one: the to= of that one stanza */
	bool dns;                /* compare: the target resolves the bench's domains by DNS */
	char rates[256];         /* compare --rates: a sweep, "max" = closed loop */
	char backend_domain[256]; /* s2s-backend: the domain the bench serves as a backend */
	char per_link[128];      /* many-domains: domains per link, e.g. 1,64,1000 */
	char remote[128];        /* many-domains: remote domain counts, e.g. 1000,10000 */
};

/* hubmet.c: fedhub's own router-added latency histogram from its /metrics
 * (cumulative buckets as exported), read at both ends of a window. */
#define BENCH_HUBLAT_MAX 128
struct bench_hublat {
	int n;
	double le[BENCH_HUBLAT_MAX]; /* s; the last is +Inf (1e300) */
	uint64_t cum[BENCH_HUBLAT_MAX];
	uint64_t count;
	double sum_s;
};

/* A bounce's stanza error condition and how many came back with it. */
#define BENCH_NCOND 8
struct bench_cond {
	char name[40];
	uint64_t n;
};

/* What a run measured; filled by bench_run(). */
struct bench_result {
	uint64_t sent, delivered, bounced, lost, out_of_order, dup;
	uint64_t measured_delivered; /* delivered inside the measured window */
	double measured_s;           /* length of the measured window */
	struct bench_hist hist;      /* latency of stanzas delivered in the window */
	/* target process over the measured window */
	bool have_target;
	double target_cpu_s;
	uint64_t target_rss_kib;        /* max sampled VmRSS in the window */
	uint64_t target_hwm_kib;        /* VmHWM at the end */
	uint64_t target_rss_before_kib; /* idle-links: VmRSS before the links */
	/* setup */
	int links_up, links_wanted, comps_up;
	double setup_s;
	/* --tls: links that ran TLS and how they authenticated */
	int tls_out, external_out;           /* the bench's links to the target */
	int tls_in, external_in;             /* the target's links to the bench */
	int plain_verify_in;                 /* <db:verify/> received without the required STARTTLS */
	char tls_info[96];                   /* "TLSv1.3 TLS13-AES128-GCM-SHA256" */
	char error[512];                     /* non-empty: the run could not be done */
	struct bench_cond cond[BENCH_NCOND]; /* bounces by condition */
	int ncond;
	uint64_t target_peak_kib; /* largest VmRSS sampled every 100 ms over the whole run */
	double drain_s;           /* burst, remote-up: first write to the last stanza accounted */
	uint64_t verify_streams;  /* target's streams that carried only <db:verify/> */
	/* stall: the other destination's latency while the first one stalls */
	struct bench_hist other_hist;
	double stall_s;
	/* stall: the first and last bounce, seconds after the stall began (-1: none) */
	double first_bounce_s, last_bounce_s;
	char limit_note[160]; /* why a run was cut short by a system limit */
	/* UDP datagrams this host dropped for a full socket receive buffer
	 * during the run (/proc/net/snmp RcvbufErrors; any process's, e.g.
	 * the DNS server of remote-domains); -1 if unknown */
	int64_t udp_rcvbuf_drops;
	/* fedhub's own histogram over the measured window (have_hub_lat) */
	bool have_hub_lat;
	struct bench_hublat hub_lat;
};

int bench_run(const struct bench_opts *o, struct bench_result *r);

int bench_hublat_read(const struct sockaddr_in *a, struct bench_hublat *h);
int bench_hublat_diff(const struct bench_hublat *a, const struct bench_hublat *b, struct bench_hublat *d);
double bench_hublat_quantile(const struct bench_hublat *d, double q);

/* compare.c: compare mode's pieces, shared with many.c. bench_target_start runs
 * `target.sh start` for name (o gets the target's addresses and pid); 0 or -1
 * with err set. bench_target_stop stops it and removes dir. */
int bench_find_peers(char *out, size_t cap);
int bench_target_start(const char *peers, const char *name, const char *dir, const char *cpus, struct bench_opts *o,
		       char *err, size_t errcap);
void bench_target_stop(const char *peers, const char *name, const char *dir);
/* main.c: the text report of one run. */
void bench_report(FILE *f, const struct bench_opts *o, const char *name, const struct bench_result *r);
void bench_json_target(FILE *f, const char *name, const struct bench_result *r, const char *skipped);
void bench_json_machine(FILE *f);

/* many.c: the many-domains series against fedhub. */
int bench_many_domains(const struct bench_opts *o, const char *json, const char *cmdline, const char *target_cpus);

/* /proc/PID figures. cpu in seconds (utime+stime), rss/hwm in KiB; -1 if gone. */
int bench_proc_sample(int pid, double *cpu_s, uint64_t *rss_kib, uint64_t *hwm_kib);

/* XEP-0185 dialback key: hex(HMAC-SHA256(hex(SHA256(secret)), "recv orig id")). */
void bench_db_key(const char *secret, const char *recv, const char *orig, const char *stream_id, char out[65]);
/* XEP-0114 handshake: hex(SHA1(stream_id + secret)). */
void bench_comp_handshake(const char *stream_id, const char *secret, char out[41]);

/* ---- other benchmarks ---------------------------------------------------- */

/* tok_bench.c: the `tokenizer` scenario. */
int bench_tokenizer(int argc, char **argv);
/* tls_bench.c: the `handshakes` and `certload` scenarios. */
int bench_handshakes(int argc, char **argv);
int bench_tls_certload(int argc, char **argv);
/* net_relay.c: the `relay` scenario (the worker runtime alone). */
int bench_relay(int argc, char **argv);
int bench_close(int argc, char **argv);

#endif
