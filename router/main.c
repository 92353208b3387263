/*
 * router/main.c — fedhub: command line, start-up, shutdown.
 *
 *   fedhub [-c FILE]          run (without -c: the embedded default config)
 *   fedhub -t [-c FILE]       check the configuration and exit
 *   fedhub --takeover ...     share the listeners of a running fedhub
 *   fedhub --version          version, TLS library, AES-NI
 *   fedhub --check-xml FILE   tokenize a recorded stream ("-" = stdin)
 *
 * Start-up: load the config, fill the routing table with the static routes
 * (the hub's domain, hosted domains, component domains), start the workers
 * (one per core), the control thread (DNS), the HTTP endpoint (503
 * "starting" until the workers run) and the control socket, then wait for
 * signals in this thread. SIGHUP reloads the configuration (reload.c).
 * SIGTERM or SIGINT drains (drain.c): /health 503, listeners closed, up to
 * drain_timeout for queues to flush, then the streams still open get
 * system-shutdown, what is still queued is bounced, and the process exits 0;
 * a second SIGTERM or SIGINT cuts the drain short.
 *
 * Start-up runs the same check_config() as -t, so the two never disagree,
 * then refuses ports another process holds (check_ports_free) unless
 * --takeover asks to share them with the fedhub being replaced. Under
 * systemd (Type=notify) READY=1 is sent once the listeners are bound and
 * the workers run, RELOADING=1 / READY=1 around a reload, STOPPING=1 when a
 * drain begins. SIGUSR1 and SIGUSR2 are logged and otherwise ignored: they
 * may not kill a hub that carries links.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wolfssl/options.h>
#include <wolfssl/version.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <systemd/sd-daemon.h>
#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "net/alloc.h"
#include "router/hub.h"
#include "router/sess.h"
#include "router/s2s.h"
#include "router/check.h"
#include "router/check_xml.h"
#include "router/ctl.h"
#include "router/reload.h"
#include "router/clu.h"
#include "router/nodelink.h"
#include "net/log.h"
#include "net/tls.h"

/* jemalloc: give freed pages back within a second (a burst of dialback
 * verification connections should not stay resident), from a background
 * thread rather than on the stanza path. */
const char *malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";

static void usage(void)
{
	fprintf(stderr, "usage: fedhub [-c FILE] [-t] [--takeover]\n"
			"       fedhub --check-xml FILE\n"
			"       fedhub --version\n"
			"  -c FILE     configuration (default: the embedded one, see router.conf)\n"
			"  -t          check the configuration and exit\n"
			"  --takeover  share the listening ports of a running fedhub (a hand-over:\n"
			"              then SIGTERM the old one)\n"
			"  --version   version, TLS library and AES-NI, then exit\n");
}

#ifndef FEDHUB_VERSION
#define FEDHUB_VERSION "unknown"
#endif
#ifdef FEDHUB_WOLFSSL_LOCAL
static const char wolf_build[] = "accelerated build";
#else
static const char wolf_build[] = "system library";
#endif

static int print_version(void)
{
	printf("fedhub %s\n%s (%s)\n", FEDHUB_VERSION, tls_library_info(), wolf_build);
	return 0;
}

static void *ctrl_main(void *arg)
{
	(void)arg;
	clu_ctrl_start(); /* the cluster's Redis connections join the loop */
	dns_ctrl_loop();
	clu_ctrl_stop();
	return NULL;
}

static int make_dialback_key(void)
{
	unsigned char d[WC_SHA256_DIGEST_SIZE];
	const char *secret = hub_cfg->dialback_secret;
	if (wc_Sha256Hash((const byte *)secret, (word32)strlen(secret), d) != 0)
		return -1;
	hex_encode(d, sizeof(d), hub_dialback_key);
	return 0;
}

int main(int argc, char **argv)
{
	const char *conf = NULL;
	bool test_only = false, takeover = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			conf = argv[++i];
		} else if (strcmp(argv[i], "-t") == 0) {
			test_only = true;
		} else if (strcmp(argv[i], "--takeover") == 0) {
			takeover = true;
		} else if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
			return print_version();
		} else if (strcmp(argv[i], "--check-xml") == 0 && i + 1 < argc) {
			struct xml_limits lim;
			xml_limits_default(&lim);
			return check_xml_file(argv[i + 1], &lim);
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage();
			return 0;
		} else {
			usage();
			return 2;
		}
	}

	static struct cfg cfg;
	int errs = conf ? cfg_load(&cfg, conf, stderr) : cfg_load_default(&cfg, stderr);
	/* What start-up would trip over: certificates, keys, CAs, listeners.
	 * On what did parse, so one run shows every error. */
	errs += check_config(&cfg, conf, stderr);
	if (errs) {
		fprintf(stderr, "configuration has %d error%s\n", errs, errs == 1 ? "" : "s");
		return 1;
	}
	if (test_only) {
		printf("configuration ok\n");
		return 0;
	}
	hub_cfg_live = &cfg;
	reload_init(conf, &cfg);
	log_level = cfg.log_level;
	log_init_env();
	log_set_json(cfg.log_json);
	log_set_rate_limit(cfg.log_rate_limit);

	log_info(0, "fedhub %s starting (%s), %s (%s)", FEDHUB_VERSION, conf ? conf : "embedded default configuration",
		 tls_library_info(), wolf_build);
	if (strstr(tls_library_info(), "AES-NI: no"))
		log_warn(0, "TLS runs without AES-NI: expect encryption to cost far more CPU");

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGPIPE);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* threads inherit it */

	if (!(hub_tls_live = reload_make_tls(&cfg, NULL))) {
		log_error(0, "cannot set up TLS");
		return 1;
	}
	if (make_dialback_key() < 0 || rt_init() < 0 || clu_init(&cfg) < 0) {
		log_error(0, "cannot initialise");
		return 1;
	}
	if (clu_enabled())
		nl_set_refused_hook(s2s_lease_refused);
	rcu_register_thread();
	if (hub_fill_table(&cfg) != 0) {
		log_error(0, "cannot fill the routing table");
		return 1;
	}
	rcu_thread_offline();
	net_set_queue_limit(cfg.send_queue_max);
	struct net_config nc;
	hub_net_config(&nc, &cfg);
	net_init(&nc);
	s2s_in_init();
	met_set_domains_max(cfg.metrics_domains_max);
	met_init(net_nworkers());
	met_set_build_info(FEDHUB_VERSION, tls_library_info(), !strstr(tls_library_info(), "AES-NI: no"));
	met_set_state("starting", "workers not running yet");
	char dns_server[80] = "";
	if (cfg.dns_server.len) {
		char host[64];
		cfg_addr_host(&cfg.dns_server, host, sizeof(host));
		snprintf(dns_server, sizeof(dns_server), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
			 cfg_addr_port(&cfg.dns_server));
	}
	if (dns_init(dns_server[0] ? dns_server : NULL) < 0) {
		log_error(0, "cannot initialise DNS (%s)", dns_server[0] ? dns_server : "servers of /etc/resolv.conf");
		return 1;
	}
	dns_set_limits(&(struct dns_limits){cfg.dns_cache_max, cfg.dns_ttl_min, cfg.dns_ttl_max, cfg.dns_max_inflight});
	/* SO_REUSEPORT would let this process silently take a share of another
	 * fedhub's connections: only a deliberate hand-over may do that. */
	if (!takeover && check_ports_free(&cfg, stderr) > 0) {
		log_error(0, "not starting: the addresses above are in use (--takeover shares them)");
		return 1;
	}
	if (takeover)
		log_warn(0, "--takeover: sharing the listening ports with any fedhub already on them");
	for (int i = 0; i < cfg.nlisten; i++) {
		struct cfg_listen *l = &cfg.listen[i];
		int rc = net_listen(i, (struct sockaddr *)&l->addr.ss, l->addr.len);
		if (rc < 0) {
			log_error(0, "cannot listen on %s: %s", l->addr.text, strerror(-rc));
			return 1;
		}
		log_info(0, "listening: %s %s",
			 l->kind == CFG_LISTEN_COMPONENT ? "component"
			 : l->kind == CFG_LISTEN_S2S_TLS ? "s2s-tls"
							 : "s2s",
			 l->addr.text);
	}
	if (nl_init(&cfg) < 0)
		return 1;
	bool cfg_http_on = cfg.http.len > 0; /* restart-only: a reload keeps it */
	if (cfg.http.len && met_http_start(&cfg.http) < 0) {
		log_error(0, "cannot start the HTTP endpoint on %s", cfg.http.text);
		return 1;
	}
	if (net_start() < 0) {
		log_error(0, "cannot start workers");
		return 1;
	}
	pthread_t ctrl;
	pthread_create(&ctrl, NULL, ctrl_main, NULL);
	if (cfg.control_socket[0] && ctl_start(cfg.control_socket) < 0) {
		log_error(0, "cannot open the control socket %s", cfg.control_socket);
		net_stop();
		pthread_join(ctrl, NULL);
		return 1;
	}
	met_set_state("ok", NULL);
	log_info(0, "fedhub running: %d workers, hub domain %s", net_nworkers(), cfg.hub_domain);
	sd_notifyf(0, "READY=1\nSTATUS=running: %d workers, hub domain %s", net_nworkers(), cfg.hub_domain);

	int sig = 0;
	while (sigwait(&sigs, &sig) == 0) {
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (sig == SIGHUP) {
			sd_notify(0, "RELOADING=1");
			int rc = reload_run("SIGHUP", NULL);
			sd_notifyf(0, "READY=1\nSTATUS=running: %d workers; last reload %s", net_nworkers(),
				   rc == 0 ? "applied" : "refused (see the log)");
		} else if (sig == SIGUSR1 || sig == SIGUSR2) {
			log_info(0, "%s: ignored", sig == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
		}
	}
	sd_notify(0, "STOPPING=1\nSTATUS=draining");
	log_info(0, "%s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	bool at_once;
	drain_run(sig == SIGTERM ? "SIGTERM" : "SIGINT", reload_drain_timeout(), &sigs, &at_once);
	/* what is still open gets <system-shutdown/>, what is queued a bounce */
	net_set_stop_flush_ms(at_once ? 0 : 1000);
	ctl_stop();
	net_stop();
	pthread_join(ctrl, NULL);
	if (cfg_http_on)
		met_http_stop();
	log_info(0, "stopped");
	return 0;
}
