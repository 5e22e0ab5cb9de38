/*
 * Logging to stderr, one line per call, safe from any thread.
 * Level from PYLON_LOG (error|warn|info|debug) or pl_log_set_level().
 */
#ifndef PL_LOG_H
#define PL_LOG_H

enum pl_log_level { PL_LOG_ERROR = 0, PL_LOG_WARN, PL_LOG_INFO, PL_LOG_DEBUG };

extern enum pl_log_level pl_log_level;
void pl_log_set_level(enum pl_log_level l);
int pl_log_parse_level(const char *s);  /* -1 if unknown */
void pl_log_(enum pl_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pl_log(l, ...) do { if ((l) <= pl_log_level) pl_log_(l, __VA_ARGS__); } while (0)
#define pl_err(...)   pl_log(PL_LOG_ERROR, __VA_ARGS__)
#define pl_warn(...)  pl_log(PL_LOG_WARN, __VA_ARGS__)
#define pl_info(...)  pl_log(PL_LOG_INFO, __VA_ARGS__)
#define pl_debug(...) pl_log(PL_LOG_DEBUG, __VA_ARGS__)

#endif
