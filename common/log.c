#include "pl.h"
#include "log.h"

#include <stdarg.h>
#include <time.h>
#include <unistd.h>

enum pl_log_level pl_log_level = PL_LOG_INFO;

static const char *const names[] = { "error", "warn", "info", "debug" };

void pl_log_set_level(enum pl_log_level l)
{
	pl_log_level = l;
}

int pl_log_parse_level(const char *s)
{
	for (unsigned i = 0; i < PL_ARRAY_LEN(names); i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

void pl_log_(enum pl_log_level l, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, names[l]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : PL_MIN((size_t)m, sizeof(line) - (size_t)n - 2));
	/* one write(2) per line keeps lines whole across threads */
	for (size_t i = (size_t)n; i < len; i++)
		if ((unsigned char)line[i] < 0x20)
			line[i] = ' ';
	line[len++] = '\n';
	ssize_t w = write(2, line, len);
	(void)w;
}
