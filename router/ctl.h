/*
 * router/ctl.h — the control socket fedhubctl talks to (ctl.c).
 */
#ifndef FEDHUB_CTL_H
#define FEDHUB_CTL_H

#include <stdbool.h>

struct hubw;
struct dns_req;

/* Listen on the Unix socket `path` (mode 0660) and serve it from a thread of
 * its own. A stale socket left by a dead hub is replaced. Returns 0 or -errno. */
int ctl_start(const char *path);
/* Stop serving and remove the socket (no-op when not started). */
void ctl_stop(void);
/* Each worker, every tick: answer the control socket's question, if any. */
void ctl_worker_tick(struct hubw *h);
/* A DNS answer that came back to a worker: true when it was a `resolve`
 * lookup (then it is consumed). */
bool ctl_on_dns(struct hubw *h, struct dns_req *r);

#endif
