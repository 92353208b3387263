/*
 * router/reload.h — configuration reload (reload.c) and graceful drain
 * (drain.c): what main.c, the control socket (ctl.c) and the workers call.
 */
#ifndef FEDHUB_RELOAD_H
#define FEDHUB_RELOAD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "router/cfg.h"

struct hubw;
struct tls_ctx;

/* At start-up, once `running` is hub_cfg: where to read it again (NULL: the
 * embedded configuration) and the certificates it loaded. */
void reload_init(const char *path, struct cfg *running);
const char *reload_conf_path(void);
/* Re-read, check (as `fedhub -t`), and publish the configuration. Lines
 * describing the result (errors, changes, "needs a restart") are logged and
 * also written to `out` when not NULL. Any thread registered with RCU and
 * offline. Returns 0, or -EINVAL when refused (the running one is kept). */
int reload_run(const char *why, FILE *out);
/* drain_timeout of the running configuration (any thread). */
uint32_t reload_drain_timeout(void);
/* Reloads done (ok) or refused (!ok) since start. */
uint64_t reload_count(bool ok);
/* The TLS context for c's certificates and CA bundle, or NULL (logged, and
 * written to out when not NULL). */
struct tls_ctx *reload_make_tls(const struct cfg *c, FILE *out);
/* Each worker, every tick: closes links whose domain a reload removed. */
void reload_worker_tick(struct hubw *h);

/* drain.c */
/* Is a drain in progress? (workers read it every tick) */
bool drain_active(void);
/* Ask for a drain (from any thread, e.g. fedhubctl); main's loop runs it. */
void drain_request(const char *reason);
/* main(): run the drain: /health 503, listeners closed, idle links closed
 * politely, up to drain_timeout for queues to flush. Returns when every
 * link is gone, the time is up, or a second SIGTERM/SIGINT arrives in sigs
 * (then *at_once is set). */
void drain_run(const char *reason, uint32_t timeout_s, const sigset_t *sigs, bool *at_once);
/* Each worker, every tick during a drain. */
void drain_worker_tick(struct hubw *h);
/* Seconds left in the drain (0 when none). */
uint32_t drain_left_s(void);

#endif
