/*
 * Route retries (HTTPRouteRetry, rule->retry in table-t.h): the decisions
 * HTTP/1.1 clients (http1.c) and HTTP/2 clients (h2.c) share. The callers
 * own the mechanics: they keep the backend request's bytes while rs->replay
 * is set, drop the failed attempt, wait out the backoff on their own timer
 * and send the request again to pl_retry_endpoint().
 *
 * A request is retried when the rule has a retry stanza, the request can be
 * replayed (no body, or a body of at most PL_RETRY_MAX_BODY bytes, kept as it
 * was sent), nothing of the response reached the client yet, and an attempt
 * failed: the backend answered with one of the stanza's codes, or the
 * attempt hit a connection error (connect failure or timeout, reset or close
 * before a complete response head, timeouts.backendRequest or the proxy's
 * backend timeout). Idempotency is the route author's call, as the Gateway
 * API says: any method is retried. Upgrades (WebSocket) are never retried.
 *
 * Timing: retry n (1-based) starts backoff * 2^(n-1) after the failure, at
 * most 10 * backoff (25 ms when the stanza gives none), and never past the
 * route's timeouts.request counted from the request's start; each attempt
 * gets its own timeouts.backendRequest. At most attempts retries (1 when the
 * stanza gives none).
 *
 * Threads: any worker thread; the only shared state touched is the
 * cluster's endpoint cursor and the route's counters (relaxed atomics).
 */
#ifndef PL_RETRY_H
#define PL_RETRY_H

#include <stddef.h>
#include <stdint.h>

#include "table-t.h"

#define PL_RETRY_MAX_BODY (64 * 1024)    /* body bytes kept for a replay (Envoy's per-request buffer) */
#define PL_RETRY_SLACK 1024              /* chunk framing kept with them */

struct pl_route_stats;

/* Per request: zeroed with the request. */
struct pl_retry_st {
	double req_deadline;     /* start + timeouts.request; 0: none */
	double at;               /* a retry waits for its backoff until then; 0: none waiting */
	size_t keep_max;         /* replay: the kept request bytes may not grow past this */
	uint32_t n;              /* retries so far */
	uint8_t replay;          /* the request's bytes are kept: it can be sent again */
};

/* 1 if status is one of rp's codes. */
static inline int pl_retry_code(const struct pl_retry *rp, int status)
{
	unsigned k = (unsigned)(status - PL_RETRY_CODE_MIN);
	return k <= PL_RETRY_CODE_MAX - PL_RETRY_CODE_MIN && (rp->codes[k / 64] >> (k % 64) & 1);
}

/*
 * At routing (now): zeroes rs and, when the rule has a retry stanza and the
 * request can be replayed, sets rs->replay. upgrade: the request asks for
 * a protocol switch (never replayed). has_len/len: the body's declared
 * length (0 with has_len for none); a body of unknown length (chunked,
 * HTTP/2 without content-length) is kept while it fits. head: bytes of the
 * backend request head kept with the body. Returns rs->replay.
 */
int pl_retry_start(struct pl_retry_st *rs, const struct pl_rule *rule, double now, int upgrade, int has_len,
		   uint64_t len, size_t head);

/* 1 while kept bytes (head and framed body) fit rs->keep_max; 0: stop keeping them, clear replay. */
static inline int pl_retry_fits(const struct pl_retry_st *rs, size_t kept)
{
	return kept <= rs->keep_max;
}

/*
 * After a failed attempt, at now: status is the backend's final status, or
 * 0 for a connection error. When the rule allows another attempt, counts it
 * (rs->n, the route's retries counter in stats for worker), sets rs->at and
 * returns the backoff in seconds; else -1 (the status is not one of the
 * codes, attempts are used up, the request is not replayable, or the retry
 * would start at or past rs->req_deadline).
 */
double pl_retry_next(struct pl_retry_st *rs, const struct pl_rule *rule, int status, double now,
		     struct pl_route_stats *stats, unsigned worker);

/* The deadline of an attempt starting at now: now + backendRequest, bounded by rs->req_deadline; 0: none. */
double pl_retry_attempt_deadline(const struct pl_retry_st *rs, const struct pl_rule *rule, double now);

/*
 * The endpoint for a retry: a ready endpoint of c other than prev when c
 * has one (Envoy's previous-hosts predicate, for the last host only), else
 * prev. Never NULL.
 */
const struct pl_endpoint *pl_retry_endpoint(struct pl_cluster *c, const struct pl_endpoint *prev);

#endif
