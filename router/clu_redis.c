/*
 * router/clu_redis.c — the node's Redis connections, driven by the control
 * thread's poll loop (net/dns.c runs it; dns_ctrl_set_hook adds our fds).
 *
 * hiredis async with a tiny adapter of our own: hiredis says which events
 * it wants (addRead/addWrite...), prepare() turns that into pollfds, and
 * process() hands readiness back (redisAsyncHandleRead/Write). Three
 * connections at most:
 *   - the command connection (every GET/SET/EVAL of the registry);
 *   - the subscriber connection (SUBSCRIBE to the events channel: a
 *     subscribed connection can send nothing else);
 *   - with Sentinel, one connection to a sentinel: SENTINEL
 *     get-master-addr-by-name and SUBSCRIBE +switch-master, sent together;
 *     a failover moves the other two to the new master. A sentinel that
 *     does not know the master is left for the next one.
 *
 * Every command has a deadline (redis_timeout): replies come back in
 * order, so the oldest unanswered command is the only one to watch; when it
 * is late, or a connect takes too long, the connection is dropped (its
 * callbacks get NULL) and made again after a back-off that doubles from
 * 100 ms to 2 s. A READONLY error means we talk to a replica (a failover
 * we missed): drop it, ask the sentinels again; so does a master that keeps
 * refusing connections (at most once a second).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "router/clu-int.h"
#include "net/alloc.h"
#include "net/log.h"

#define BACKOFF_MIN 100
#define BACKOFF_MAX 2000
#define REASK_MS 1000 /* at most one new question to the sentinels per this */

struct cmdw {
	clu_reply_fn *fn;
	void *arg;
	uint64_t at_us;
	struct cmdw *next;
};

struct rconn {
	enum clu_rc_kind kind;
	const char *name;
	redisAsyncContext *ac;
	bool want_r, want_w;
	bool up;          /* connect callback said ok */
	bool subscribed;  /* RC_SUB / RC_SENTINEL: SUBSCRIBE confirmed */
	bool announced;   /* RC_CMD: on_up was called for this connection */
	int slot;         /* index in the pollfds of this turn, -1 none */
	uint64_t started; /* ms: connect began */
	uint64_t retry_at;
	uint32_t backoff;
	int fails; /* connects in a row that failed */
	struct cmdw *head, *tail; /* commands waiting for replies, in order */
};

static struct clu_redis_cfg rcfg;
static char channel[128];
static struct rconn conns[3] = {
	{.kind = RC_CMD, .name = "redis", .slot = -1},
	{.kind = RC_SUB, .name = "redis subscriber", .slot = -1},
	{.kind = RC_SENTINEL, .name = "sentinel", .slot = -1},
};
static struct {
	char host[64];
	int port;
} sentinels[8];
static int nsentinels, cur_sentinel;
static char master_name[64];
static bool have_master; /* with Sentinel: an address is known */
static char master_text[96];
static struct clu_redis_stats st;

const double clu_redis_lat_bounds[8] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0};

#define STAT_ADD(f, v) __atomic_store_n(&st.f, st.f + (v), __ATOMIC_RELAXED)

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void)
{
	return now_us() / 1000u;
}

void clu_redis_stats_get(struct clu_redis_stats *out)
{
#define LD(f) out->f = __atomic_load_n(&st.f, __ATOMIC_RELAXED)
	LD(commands);
	LD(failures);
	LD(timeouts);
	LD(reconnects);
	LD(failovers);
	LD(lat_count);
	LD(lat_sum_us);
	for (int i = 0; i < 8; i++)
		LD(lat_le[i]);
#undef LD
}

const char *clu_redis_master(void)
{
	return master_text;
}

bool clu_redis_pending(void)
{
	return conns[RC_CMD].head != NULL;
}

bool clu_redis_up(void)
{
	return conns[RC_CMD].up;
}

/* ---- the adapter --------------------------------------------------------- */

static void ev_add_read(void *p) { ((struct rconn *)p)->want_r = true; }
static void ev_del_read(void *p) { ((struct rconn *)p)->want_r = false; }
static void ev_add_write(void *p) { ((struct rconn *)p)->want_w = true; }
static void ev_del_write(void *p) { ((struct rconn *)p)->want_w = false; }
static void ev_cleanup(void *p)
{
	struct rconn *rc = p;
	rc->want_r = rc->want_w = false;
}

/* The address rc talks to, for the log: HOST:PORT. */
static const char *conn_peer(const struct rconn *rc)
{
	static char buf[96];
	if (rc->kind != RC_SENTINEL)
		return master_text;
	snprintf(buf, sizeof(buf), "%s:%d", sentinels[cur_sentinel].host, sentinels[cur_sentinel].port);
	return buf;
}

/* The connection ac of rc is gone (or going): forget it, plan the next
 * attempt. Called once per connection: later calls for the same ac (hiredis'
 * disconnect callback after we freed it) find rc->ac changed. */
static void sentinel_reask(const char *why);

static void conn_gone(struct rconn *rc, const redisAsyncContext *ac, const char *why)
{
	if (rc->ac != ac)
		return;
	bool was_up = rc->up, announced = rc->announced;
	rc->announced = false;
	rc->ac = NULL;
	rc->up = false;
	rc->subscribed = false;
	rc->want_r = rc->want_w = false;
	rc->fails++;
	rc->retry_at = now_ms() + rc->backoff;
	rc->backoff = rc->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : rc->backoff * 2;
	if (was_up)
		log_warn(0, "cluster: %s connection lost: %s", rc->name, why);
	else if (rc->fails == 1 || rc->fails % 30 == 0)
		log_warn(0, "cluster: cannot connect to %s (%s): %s", rc->name, conn_peer(rc), why);
	if (rc->kind == RC_SENTINEL && nsentinels)
		cur_sentinel = (cur_sentinel + 1) % nsentinels; /* try the next one */
	if (rc->kind == RC_CMD && announced && rcfg.on_down)
		rcfg.on_down();
	/* with Sentinel, a master that keeps refusing may be gone: ask again,
	 * but not more than once a second: a sentinel connection that just
	 * answered is subscribed to +switch-master and will say when it moves
	 * (dropping it each time would open windows where that is missed) */
	if (rc->kind == RC_CMD && rc->fails >= 2 && now_ms() >= conns[RC_SENTINEL].started + REASK_MS)
		sentinel_reask("asking the sentinels again");
}

/* With Sentinel: drop the sentinel connection (if any) so that the next one
 * asks for the master again. Used when what we were told looks wrong: the
 * master refuses connections, or answers as a read-only replica (a
 * +switch-master we did not hear). */
static void sentinel_reask(const char *why)
{
	redisAsyncContext *sac = conns[RC_SENTINEL].ac;
	if (!nsentinels || !sac)
		return;
	conn_gone(&conns[RC_SENTINEL], sac, why);
	redisAsyncFree(sac);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn *rc = ac->data;
	if (status != REDIS_OK) {
		conn_gone(rc, ac, ac->errstr[0] ? ac->errstr : "connect failed");
		return; /* hiredis frees it */
	}
	rc->up = true;
	rc->fails = 0;
	rc->backoff = BACKOFF_MIN;
	log_info(0, "cluster: %s connected (%s)", rc->name, conn_peer(rc));
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rconn *rc = ac->data;
	conn_gone(rc, ac, status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "error"));
}

static void sub_start(struct rconn *rc);
static void sentinel_start(struct rconn *rc);

static void conn_open(struct rconn *rc, uint64_t now)
{
	const char *host;
	int port;
	if (rc->kind == RC_SENTINEL) {
		host = sentinels[cur_sentinel].host;
		port = sentinels[cur_sentinel].port;
	} else {
		if (nsentinels && !have_master)
			return; /* wait for a sentinel to name the master */
		host = rcfg.host;
		port = rcfg.port;
	}
	if (rc->kind == RC_CMD && rc->fails)
		STAT_ADD(reconnects, 1);
	redisAsyncContext *ac = redisAsyncConnect(host, port);
	if (!ac)
		abort(); /* hiredis could not allocate: the control plane's policy */
	if (ac->err) {
		char why[128];
		snprintf(why, sizeof(why), "%s", ac->errstr);
		redisAsyncFree(ac);
		rc->ac = NULL;
		conn_gone(rc, NULL, why);
		return;
	}
	rc->ac = ac;
	rc->started = now;
	ac->data = rc;
	ac->ev.data = rc;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	/* hiredis waits for the connect to finish by asking for writability */
	rc->want_w = true;
	if (rc->kind == RC_SUB)
		sub_start(rc);
	else if (rc->kind == RC_SENTINEL)
		sentinel_start(rc);
}

static void conn_drop(struct rconn *rc, const char *why)
{
	redisAsyncContext *ac = rc->ac;
	if (!ac)
		return;
	conn_gone(rc, ac, why);
	redisAsyncFree(ac); /* pending callbacks get NULL; inside one, hiredis frees it after */
}

/* ---- commands ------------------------------------------------------------ */

static void cmd_done(redisAsyncContext *ac, void *r, void *priv)
{
	struct cmdw *w = priv;
	struct rconn *rc = &conns[RC_CMD];
	redisReply *reply = r;
	/* replies come in order: w is the head */
	if (rc->head == w) {
		rc->head = w->next;
		if (!rc->head)
			rc->tail = NULL;
	}
	if (reply) {
		double lat = (double)(now_us() - w->at_us) / 1e6;
		for (int i = 0; i < 8; i++)
			if (lat <= clu_redis_lat_bounds[i])
				STAT_ADD(lat_le[i], 1);
		STAT_ADD(lat_count, 1);
		STAT_ADD(lat_sum_us, now_us() - w->at_us);
		if (reply->type == REDIS_REPLY_ERROR) {
			STAT_ADD(failures, 1);
			if (!strncmp(reply->str, "READONLY", 8) && ac && rc->ac == ac) {
				/* a replica: the master moved while we looked away */
				w->fn(NULL, w->arg);
				free(w);
				conn_drop(rc, "the server is a read-only replica");
				sentinel_reask("the master it named is a replica now: asking again");
				return;
			}
			log_warn(0, "cluster: redis error: %s", reply->str);
		}
	} else {
		STAT_ADD(failures, 1);
	}
	w->fn(reply, w->arg);
	free(w);
}

int clu_redis_cmd(clu_reply_fn *fn, void *arg, int argc, const char **argv, const size_t *lens)
{
	struct rconn *rc = &conns[RC_CMD];
	if (!rc->ac || !rc->up)
		return -ENOTCONN;
	struct cmdw *w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	w->at_us = now_us();
	if (redisAsyncCommandArgv(rc->ac, cmd_done, w, argc, argv, lens) != REDIS_OK) {
		free(w);
		return -ENOTCONN;
	}
	if (rc->tail)
		rc->tail->next = w;
	else
		rc->head = w;
	rc->tail = w;
	STAT_ADD(commands, 1);
	return 0;
}

/* ---- pub/sub ------------------------------------------------------------- */

static void sub_msg(redisAsyncContext *ac, void *r, void *priv)
{
	struct rconn *rc = &conns[RC_SUB];
	redisReply *reply = r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return;
	const char *kind = reply->element[0]->str;
	if (!kind)
		return;
	if (!strcmp(kind, "subscribe")) {
		rc->subscribed = true;
		if (rcfg.on_sub_up)
			rcfg.on_sub_up();
	} else if (!strcmp(kind, "message") && reply->element[2]->type == REDIS_REPLY_STRING) {
		if (rcfg.on_event)
			rcfg.on_event(reply->element[2]->str, reply->element[2]->len);
	}
}

static void sub_start(struct rconn *rc)
{
	redisAsyncCommand(rc->ac, sub_msg, NULL, "SUBSCRIBE %s", channel);
	STAT_ADD(commands, 1);
}

/* ---- Sentinel ------------------------------------------------------------ */

static void master_set(const char *host, int port, const char *why)
{
	bool same = have_master && !strcmp(host, rcfg.host) && port == rcfg.port;
	snprintf(rcfg.host, sizeof(rcfg.host), "%s", host);
	rcfg.port = port;
	have_master = true;
	snprintf(master_text, sizeof(master_text), "%s:%d", host, port);
	if (same)
		return;
	log_info(0, "cluster: redis master %s is %s (%s)", master_name, master_text, why);
	STAT_ADD(failovers, 1);
	for (int k = RC_CMD; k <= RC_SUB; k++) {
		conns[k].retry_at = 0;
		conns[k].backoff = BACKOFF_MIN;
		if (conns[k].ac)
			conn_drop(&conns[k], "the master moved");
		conns[k].retry_at = 0;
	}
}

static void sentinel_msg(redisAsyncContext *ac, void *r, void *priv)
{
	struct rconn *rc = &conns[RC_SENTINEL];
	redisReply *reply = r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return;
	const char *kind = reply->element[0]->str;
	if (kind && !strcmp(kind, "subscribe")) {
		rc->subscribed = true;
	} else if (kind && !strcmp(kind, "message") && reply->element[2]->type == REDIS_REPLY_STRING) {
		/* "<master> <old-ip> <old-port> <new-ip> <new-port>" */
		char name[64], oip[64], nip[64];
		int oport, nport;
		if (sscanf(reply->element[2]->str, "%63s %63s %d %63s %d", name, oip, &oport, nip, &nport) == 5 &&
		    !strcmp(name, master_name))
			master_set(nip, nport, "+switch-master");
	}
}

static void sentinel_master(redisAsyncContext *ac, void *r, void *priv)
{
	struct rconn *rc = &conns[RC_SENTINEL];
	redisReply *reply = r;
	if (!reply || rc->ac != ac)
		return;
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && reply->element[0]->str &&
	    reply->element[1]->str) {
		master_set(reply->element[0]->str, atoi(reply->element[1]->str), "asked the sentinel");
		return;
	}
	/* nil (a sentinel that does not monitor this name) or an error: this
	 * sentinel is of no use, the next one may be */
	log_warn(0, "cluster: sentinel %s does not know master '%s'%s%s", conn_peer(rc), master_name,
		 reply->type == REDIS_REPLY_ERROR ? ": " : "", reply->type == REDIS_REPLY_ERROR ? reply->str : "");
	conn_drop(rc, "no master address");
}

/* The question and the subscription go out together, in one write: the
 * sentinel handles both in one turn of its loop, so no +switch-master can be
 * published between the answer and the subscription (asked first, then
 * subscribed, a failover in between would go unheard). hiredis hands the
 * first reply to sentinel_master, the rest to sentinel_msg. */
static void sentinel_start(struct rconn *rc)
{
	redisAsyncCommand(rc->ac, sentinel_master, NULL, "SENTINEL get-master-addr-by-name %s", master_name);
	redisAsyncCommand(rc->ac, sentinel_msg, NULL, "SUBSCRIBE +switch-master");
	STAT_ADD(commands, 2);
}

/* ---- set-up and the loop -------------------------------------------------- */

void clu_redis_init(const struct clu_redis_cfg *c, const char *chan)
{
	rcfg = *c;
	snprintf(channel, sizeof(channel), "%s", chan);
	snprintf(master_text, sizeof(master_text), "%s:%d", rcfg.host, rcfg.port);
	for (int k = 0; k < 3; k++)
		conns[k].backoff = BACKOFF_MIN;
}

void clu_redis_add_sentinel(const char *host, int port, const char *master)
{
	if (nsentinels == 8)
		return;
	snprintf(sentinels[nsentinels].host, sizeof(sentinels[0].host), "%s", host);
	sentinels[nsentinels].port = port;
	nsentinels++;
	snprintf(master_name, sizeof(master_name), "%s", master);
	snprintf(master_text, sizeof(master_text), "(master %s not known yet)", master);
}

int clu_redis_prepare(struct pollfd *pfd, int max, int *timeout_ms)
{
	uint64_t now = now_ms();
	int n = 0;
	for (int k = 0; k < 3; k++) {
		struct rconn *rc = &conns[k];
		rc->slot = -1;
		if (k == RC_SENTINEL && !nsentinels)
			continue;
		if (!rc->ac) {
			if (now >= rc->retry_at)
				conn_open(rc, now);
			if (!rc->ac) {
				int64_t d = (int64_t)(rc->retry_at - now);
				if (d >= 0 && d < *timeout_ms)
					*timeout_ms = (int)d;
				continue;
			}
		}
		if (n < max && (rc->want_r || rc->want_w)) {
			pfd[n] = (struct pollfd){.fd = rc->ac->c.fd,
						 .events = (short)((rc->want_r ? POLLIN : 0) | (rc->want_w ? POLLOUT : 0))};
			rc->slot = n++;
		}
		/* the deadline of a connect or of the oldest command */
		uint64_t dl = !rc->up ? rc->started + rcfg.timeout_ms
			      : rc->head ? rc->head->at_us / 1000 + rcfg.timeout_ms
					 : 0;
		if (dl) {
			int64_t d = (int64_t)(dl - now);
			if (d < 0)
				d = 0;
			if (d < *timeout_ms)
				*timeout_ms = (int)d + 1;
		}
	}
	return n;
}

void clu_redis_process(const struct pollfd *pfd, int n, uint64_t now)
{
	for (int k = 0; k < 3; k++) {
		struct rconn *rc = &conns[k];
		if (rc->slot >= 0 && rc->slot < n && rc->ac) {
			short re = pfd[rc->slot].revents;
			if (re & (POLLIN | POLLERR | POLLHUP))
				redisAsyncHandleRead(rc->ac);
			if (rc->ac && (re & (POLLOUT | POLLERR)))
				redisAsyncHandleWrite(rc->ac);
		}
		rc->slot = -1;
		if (!rc->ac)
			continue;
		if (!rc->up && now >= rc->started + rcfg.timeout_ms) {
			STAT_ADD(timeouts, 1);
			conn_drop(rc, "connect timed out");
		} else if (rc->up && rc->head && now_us() >= rc->head->at_us + (uint64_t)rcfg.timeout_ms * 1000) {
			STAT_ADD(timeouts, 1);
			conn_drop(rc, "a command timed out");
		} else if (rc->up && k == RC_CMD && !rc->announced) {
			rc->announced = true;
			if (rcfg.on_up)
				rcfg.on_up();
		}
	}
}

void clu_redis_shutdown(void)
{
	for (int k = 0; k < 3; k++) {
		redisAsyncContext *ac = conns[k].ac;
		if (ac) {
			conns[k].ac = NULL; /* no callback of ours acts on it any more */
			conns[k].announced = false;
			redisAsyncFree(ac);
		}
	}
}
