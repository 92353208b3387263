/*
 * net/log.c — one write(2) per line so lines from several threads do not
 * interleave. Text: "2026-11-25T19:30:00.123Z LEVEL [c42 PEER A->B] message";
 * JSON: {"ts":...,"level":...,"conn":...,"peer":...,"local":...,"remote":...,
 * "msg":...}; under the systemd journal: "<6>LEVEL [c42 ...] message".
 *
 * The rate limit keys on the format string's address: the same statement
 * logging for many peers is "the same line". A small table under a mutex
 * counts lines per statement per second (logging is never on the stanza
 * path at the default level; debug lines are not limited). When a statement
 * was silenced, its next line after the second is over first says how many
 * lines were suppressed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "net/log.h"

int log_level = LOG_INFO;

static const char *const level_name[] = {"error", "warn", "info", "debug"};
static const int syslog_prio[] = {3, 4, 6, 7}; /* err, warning, info, debug */

static bool log_json, log_journal;
static unsigned rate_max = 10;

static __thread struct log_ctx cur;

#define RL_SLOTS 256
static struct {
	pthread_mutex_t lock;
	struct rl {
		const char *fmt;
		int64_t sec;
		unsigned n, suppressed;
	} s[RL_SLOTS];
} rl = {.lock = PTHREAD_MUTEX_INITIALIZER};

void log_ctx_enter(const struct log_ctx *x)
{
	cur = *x;
}

void log_ctx_leave(uint64_t conn)
{
	if (cur.conn == conn)
		memset(&cur, 0, sizeof(cur));
}

void log_set_json(bool json)
{
	log_json = json;
}

void log_set_rate_limit(unsigned n)
{
	rate_max = n;
}

void log_init_env(void)
{
	/* systemd.exec(5): JOURNAL_STREAM is "DEV:INODE" of the stream it
	 * connected; it counts only while stderr is still that stream (not
	 * when a wrapper redirected it and the variable was inherited). */
	const char *j = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	log_journal = j && sscanf(j, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
		      (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* May a line from `fmt` be written now? *suppressed: lines dropped before
 * it (to report), 0 mostly. */
static bool rate_ok(const char *fmt, unsigned *suppressed)
{
	struct timespec ts;
	uint32_t h = (uint32_t)(((uintptr_t)fmt >> 3) * 2654435761u) % RL_SLOTS;
	bool ok = true;

	*suppressed = 0;
	if (!rate_max)
		return true;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	pthread_mutex_lock(&rl.lock);
	struct rl *e = NULL;
	for (int i = 0; i < 8; i++) {
		struct rl *c = &rl.s[(h + (uint32_t)i) % RL_SLOTS];
		if (c->fmt == fmt || !c->fmt) {
			e = c;
			break;
		}
	}
	if (!e) /* the neighbourhood is full: reuse the slot */
		e = &rl.s[h];
	if (e->fmt != fmt) {
		e->fmt = fmt;
		e->sec = ts.tv_sec;
		e->n = e->suppressed = 0;
	}
	if (e->sec != ts.tv_sec) {
		*suppressed = e->suppressed;
		e->sec = ts.tv_sec;
		e->n = e->suppressed = 0;
	}
	if (e->n >= rate_max) {
		e->suppressed++;
		ok = false;
	} else {
		e->n++;
	}
	pthread_mutex_unlock(&rl.lock);
	return ok;
}

/* Append s JSON-escaped; bytes that are not UTF-8 become '?'. */
static size_t json_str(char *o, size_t cap, size_t n, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	if (n + 1 < cap)
		o[n++] = '"';
	while (*p && n + 8 < cap) {
		unsigned c = *p;
		if (c == '"' || c == '\\') {
			o[n++] = '\\';
			o[n++] = (char)c;
			p++;
		} else if (c < 0x20) {
			n += (size_t)snprintf(o + n, cap - n, "\\u%04x", c);
			p++;
		} else if (c < 0x80) {
			o[n++] = (char)c;
			p++;
		} else {
			int len = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
			bool ok = len > 0;
			for (int i = 1; ok && i < len; i++)
				ok = (p[i] & 0xc0) == 0x80;
			if (!ok) {
				o[n++] = '?';
				p++;
				continue;
			}
			memcpy(o + n, p, (size_t)len);
			n += (size_t)len;
			p += len;
		}
	}
	if (n + 1 < cap)
		o[n++] = '"';
	return n;
}

static void peer_text(const void *sa, char *out, size_t cap)
{
	const struct sockaddr *s = sa;
	out[0] = 0;
	if (!s)
		return;
	if (s->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
	} else if (s->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)cap);
		else
			inet_ntop(AF_INET6, a, out, (socklen_t)cap);
	}
}

/* Printable, bounded copy of a domain (they are normalised, but a peer's
 * unauthenticated claim may be logged too). */
static const char *dom(char *const *p)
{
	return p && *p ? *p : "";
}

static void emit(int level, uint64_t conn_id, const char *msg)
{
	char line[2048], peer[64] = "";
	const char *local = "", *remote = "";
	struct timespec ts;
	struct tm tm;
	size_t n = 0;

	level = level < 0 ? 0 : level > 3 ? 3 : level;
	if (conn_id && cur.conn == conn_id) {
		peer_text(cur.peer, peer, sizeof(peer));
		local = dom(cur.local);
		remote = dom(cur.remote);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (log_json) {
		char t[40];
		size_t k = strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(t + k, sizeof(t) - k, ".%03ldZ", ts.tv_nsec / 1000000);
		n += (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"conn\":", t,
				      level_name[level]);
		if (conn_id)
			n += (size_t)snprintf(line + n, sizeof(line) - n, "\"c%llu\"", (unsigned long long)conn_id);
		else
			n += (size_t)snprintf(line + n, sizeof(line) - n, "null");
		n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"peer\":");
		n = json_str(line, sizeof(line), n, peer);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"local\":");
		n = json_str(line, sizeof(line), n, local);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"remote\":");
		n = json_str(line, sizeof(line), n, remote);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"msg\":");
		n = json_str(line, sizeof(line) - 2, n, msg);
		line[n++] = '}';
	} else {
		if (log_journal) {
			n += (size_t)snprintf(line, sizeof(line), "<%d>%-5s ", syslog_prio[level], level_name[level]);
		} else {
			n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
			n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ", ts.tv_nsec / 1000000,
					      level_name[level]);
		}
		if (conn_id) {
			n += (size_t)snprintf(line + n, sizeof(line) - n, "[c%llu", (unsigned long long)conn_id);
			if (peer[0])
				n += (size_t)snprintf(line + n, sizeof(line) - n, " %s", peer);
			/* both: in the stream's direction; one (a component, a
			 * stream not yet authenticated): that one */
			const char *a = cur.outbound ? local : remote, *b = cur.outbound ? remote : local;
			if (a[0] && b[0])
				n += (size_t)snprintf(line + n, sizeof(line) - n, " %s->%s", a, b);
			else if (a[0] || b[0])
				n += (size_t)snprintf(line + n, sizeof(line) - n, " %s", a[0] ? a : b);
			n += (size_t)snprintf(line + n, sizeof(line) - n, "] ");
		}
		if (n < sizeof(line))
			n += (size_t)snprintf(line + n, sizeof(line) - n, "%s", msg);
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(2, line, n) < 0) {
		/* nowhere left to report it */
	}
}

void log_msg(int level, uint64_t conn_id, const char *fmt, ...)
{
	char msg[1024];
	unsigned suppressed = 0;
	va_list ap;

	if (level < LOG_DEBUG && !rate_ok(fmt, &suppressed))
		return;
	if (suppressed) {
		snprintf(msg, sizeof(msg), "%u similar lines suppressed (\"%.60s\")", suppressed, fmt);
		emit(level, 0, msg);
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emit(level, conn_id, msg);
}
