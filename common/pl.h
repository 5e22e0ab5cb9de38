/*
 * Project-wide basics: included first by every pylon .c file.
 * Bans unsafe libc calls, defines invariant checks and small helpers.
 */
#ifndef PL_H
#define PL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PL_VERSION "0.1.0"

/* Broken invariants abort; hostile input never reaches these. */
#define PL_PANIC(...) do { \
	fprintf(stderr, "pylon: PANIC %s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)
#define PL_BUG_ON(cond) do { if (__builtin_expect(!!(cond), 0)) PL_PANIC("BUG_ON(%s)", #cond); } while (0)

#define PL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PL_LIKELY(x) __builtin_expect(!!(x), 1)
#define PL_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Allocation that must not fail (start-up, control plane). */
void *pl_xmalloc(size_t n);
void *pl_xcalloc(size_t n, size_t sz);
void *pl_xrealloc(void *p, size_t n);
char *pl_xstrdup(const char *s);

/* ASCII helpers: locale-free. */
static inline char pl_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }
int pl_strncaseeq(const char *a, const char *b, size_t n);   /* 1 if equal ignoring ASCII case */
/* Parses a decimal unsigned integer of s[0..n); returns 0 or -1 (empty, junk, overflow). */
int pl_parse_u64(const char *s, size_t n, uint64_t *out);
/* Monotonic clock in nanoseconds. */
int64_t pl_now_ns(void);
/* 64-bit FNV-1a of p[0..n) continued from h (start with PL_FNV_INIT): hash keys and fingerprints, not security. */
#define PL_FNV_INIT 14695981039346656037ull
uint64_t pl_fnv1a(uint64_t h, const void *p, size_t n);

#ifndef PL_NO_POISON
#pragma GCC poison strcpy strcat sprintf strtok atoi gets vsprintf
#endif

#endif
