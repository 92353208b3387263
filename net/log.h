/*
 * net/log.h — logging to stderr with a level and a connection id.
 * One line per event, never per stanza at the default level.
 *
 * A line about a connection names it: "[c42 203.0.113.5 a.example->b.example]".
 * The id comes with each call; the peer address and the domains come from
 * the link context the owning code sets on its thread while it works on
 * that connection (log_ctx_enter), so call sites stay one-liners.
 */
#ifndef FEDHUB_LOG_H
#define FEDHUB_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
extern int log_level;

/* What a line says about its connection. peer points at a struct sockaddr
 * (IPv4 or IPv6) and local/remote at the owner's string pointers, so they
 * are read when a line is written and follow later changes. */
struct log_ctx {
	uint64_t conn;
	const void *peer;
	char *const *local, *const *remote;
	bool outbound; /* text shows local->remote; else remote->local */
};

void log_msg(int level, uint64_t conn_id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* This thread now works on x->conn (the struct is copied; what it points at
 * must live until log_ctx_leave). */
void log_ctx_enter(const struct log_ctx *x);
/* Forget the context if it is conn's (call before freeing what it points at). */
void log_ctx_leave(uint64_t conn);

/* text (default) or one JSON object per line: ts, level, conn, peer, local,
 * remote, msg. */
void log_set_json(bool json);
/* At most n lines per second from one log statement (its format string);
 * 0: no limit. Debug lines are never limited. */
void log_set_rate_limit(unsigned n);
/* Read the environment: when JOURNAL_STREAM names stderr (it is the systemd
 * journal), text lines get a "<N>" syslog priority prefix and no timestamp. */
void log_init_env(void);

#define log_error(id, ...) log_msg(LOG_ERROR, (id), __VA_ARGS__)
#define log_warn(id, ...)                                     \
	do {                                                  \
		if (log_level >= LOG_WARN)                    \
			log_msg(LOG_WARN, (id), __VA_ARGS__); \
	} while (0)
#define log_info(id, ...)                                     \
	do {                                                  \
		if (log_level >= LOG_INFO)                    \
			log_msg(LOG_INFO, (id), __VA_ARGS__); \
	} while (0)
#define log_debug(id, ...)                                     \
	do {                                                   \
		if (log_level >= LOG_DEBUG)                    \
			log_msg(LOG_DEBUG, (id), __VA_ARGS__); \
	} while (0)

#endif
