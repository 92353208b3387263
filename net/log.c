/*
 * net/log.c — one write(2) per line so lines from several threads do not
 * interleave. Format: "2026-11-25T19:30:00.123Z LEVEL [c42] message".
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "net/log.h"

int log_level = LOG_INFO;

static const char *const level_name[] = {"error", "warn", "info", "debug"};

void log_msg(int level, uint64_t conn_id, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	size_t n;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ", ts.tv_nsec / 1000000,
		      level_name[level < 0   ? 0
				 : level > 3 ? 3
					     : level]);
	if (conn_id)
		n += snprintf(line + n, sizeof(line) - n, "[c%llu] ", (unsigned long long)conn_id);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(2, line, n) < 0) {
		/* nowhere left to report it */
	}
}
