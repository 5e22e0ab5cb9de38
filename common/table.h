/*
 * Publishing and pinning compiled tables (types in table-t.h).
 *
 * Contract
 * - pl_table_new() makes an empty table owning a fresh arena (refcnt 1, owned
 *   by the caller). The controller fills it, then pl_table_publish() takes that
 *   reference: the table becomes "current", the previous current table loses
 *   the reference publish held, and every registered hook is called (from the
 *   publishing thread) so workers can pick the new table up (ev_async_send).
 * - pl_table_acquire() returns the current table with a new reference, or NULL
 *   before the first publish. Any thread may call it; it takes a mutex, so
 *   workers call it once per swap notification, not per request.
 * - pl_table_ref()/pl_table_unref() pin and release; the last unref frees the
 *   arena (and so the table) on whatever thread dropped it.
 * - pl_table_generation() and pl_table_last_swap_ns() are for metrics.
 */
#ifndef PL_TABLE_H
#define PL_TABLE_H

#include "table-t.h"

struct pl_table *pl_table_new(void);
void pl_table_publish(struct pl_table *t);
struct pl_table *pl_table_acquire(void);
void pl_table_ref(struct pl_table *t);
void pl_table_unref(struct pl_table *t);

/* Hooks run after each publish (on the publishing thread); at most 64. A hook
 * registered after a publish is not called for it: read pl_table_acquire() too. */
void pl_table_on_publish(void (*fn)(void *data), void *data);

uint64_t pl_table_generation(void);     /* 0 before the first publish */
int64_t pl_table_last_swap_ns(void);    /* duration of the last publish (compile end -> hooks done) */
unsigned pl_table_live_count(void);     /* tables not yet freed, for metrics and tests */

/* Host name helpers shared by compiler and router. */
/* Parses a Gateway API hostname ("", "*", "*.a.b", "a.b") into h using arena a. */
void pl_hostname_init(struct pl_hostname *h, struct pl_arena *a, const char *name);
/* 1 if host (lower-case, no port, length n) is matched by h. */
int pl_hostname_matches(const struct pl_hostname *h, const char *host, size_t n);

#endif
