/*
 * Counters that outlive tables: one pl_route_stats per route name, kept in a
 * process-wide registry so a swap does not reset /metrics.
 *
 * Contract
 * - pl_stats_route() is called by the compiler (controller thread): it returns
 *   the existing block for name or makes one. Blocks are never freed.
 * - Each block has pl_stats_slots() per-worker slots (w[0..slots-1]): set once
 *   with pl_stats_set_slots(number of workers) before the first block is made
 *   (default PL_MAX_WORKERS). A 64-byte slot per worker and route: sized to
 *   the workers that exist, 5000 routes cost 0.6 MB instead of 21 MB.
 * - Workers bump counters with pl_stats_inc(): per-worker slots, relaxed atomics,
 *   no sharing of cache lines between workers.
 * - pl_stats_foreach() walks the registry (any thread) for /metrics.
 */
#ifndef PL_STATS_H
#define PL_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define PL_MAX_WORKERS 64

enum pl_status_class { PL_SC_1XX = 0, PL_SC_2XX, PL_SC_3XX, PL_SC_4XX, PL_SC_5XX, PL_SC_N };

struct pl_stats_slot {
	_Alignas(64) atomic_uint_fast64_t req[PL_SC_N];
	atomic_uint_fast64_t upstream_errors;
	atomic_uint_fast64_t retries;     /* added (retry): route retries started (proxy/retry.h) */
};

struct pl_route_stats {
	char *name;          /* e.g. "HTTPRoute/default/left" */
	char *listener;      /* listener name of the route's first parent, may be "" */
	struct pl_route_stats *next;   /* registry list, newest first */
	struct pl_route_stats *hnext;  /* hash chain */
	struct pl_stats_slot w[];      /* pl_stats_slots() of them */
};

void pl_stats_set_slots(unsigned n);   /* 1..PL_MAX_WORKERS; before the first pl_stats_route() */
unsigned pl_stats_slots(void);

struct pl_route_stats *pl_stats_route(const char *name, const char *listener);
static inline void pl_stats_inc(struct pl_route_stats *s, unsigned worker, int status)
{
	int c = status / 100 - 1;
	if (c < 0 || c >= PL_SC_N)
		c = PL_SC_5XX;
	atomic_fetch_add_explicit(&s->w[worker].req[c], 1, memory_order_relaxed);
}
void pl_stats_foreach(void (*fn)(const struct pl_route_stats *s, void *data), void *data);

#endif
