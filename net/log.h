/*
 * net/log.h — logging to stderr with a level and a connection id.
 * One line per event, never per stanza at the default level.
 */
#ifndef FEDHUB_LOG_H
#define FEDHUB_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
extern int log_level;

void log_msg(int level, uint64_t conn_id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

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
