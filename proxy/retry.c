#include "pl.h"
#include "stats.h"
#include "retry.h"
#include "router.h"

#include <stdatomic.h>

#define BACKOFF_CAP 10           /* the backoff grows to at most this many times the configured one */

int pl_retry_start(struct pl_retry_st *rs, const struct pl_rule *rule, double now, int upgrade, int has_len,
		   uint64_t len, size_t head)
{
	memset(rs, 0, sizeof(*rs));
	if (!rule || !rule->retry)
		return 0;
	if (rule->timeout_request_ms)
		rs->req_deadline = now + (double)rule->timeout_request_ms / 1000.0;
	/* a declared length over the bound is refused now rather than after its first 64 KiB went out */
	if (upgrade || (has_len && len > PL_RETRY_MAX_BODY))
		return 0;
	rs->keep_max = head + PL_RETRY_MAX_BODY + PL_RETRY_SLACK;
	rs->replay = 1;
	return 1;
}

double pl_retry_next(struct pl_retry_st *rs, const struct pl_rule *rule, int status, double now,
		     struct pl_route_stats *stats, unsigned worker)
{
	const struct pl_retry *rp = rule ? rule->retry : NULL;
	if (!rp || !rs->replay || rs->n >= rp->attempts)
		return -1;
	if (status && !pl_retry_code(rp, status))
		return -1;
	/* backoff << n, capped: the shift is bounded before it can overflow */
	uint64_t ms = rp->backoff_ms;
	for (unsigned i = 0; i < rs->n && ms < rp->backoff_ms * BACKOFF_CAP; i++)
		ms *= 2;
	ms = PL_MIN(ms, rp->backoff_ms * BACKOFF_CAP);
	double delay = (double)ms / 1000.0;
	/* an attempt that would start when the request must already be answered is not made */
	if (rs->req_deadline && now + delay + 0.001 >= rs->req_deadline)
		return -1;
	rs->n++;
	rs->at = now + delay;
	if (stats)
		atomic_fetch_add_explicit(&stats->w[worker].retries, 1, memory_order_relaxed);
	return delay;
}

double pl_retry_attempt_deadline(const struct pl_retry_st *rs, const struct pl_rule *rule, double now)
{
	double d = rs->req_deadline;
	if (rule->timeout_backend_ms) {
		double b = now + (double)rule->timeout_backend_ms / 1000.0;
		if (!d || b < d)
			d = b;
	}
	return d;
}

const struct pl_endpoint *pl_retry_endpoint(struct pl_cluster *c, const struct pl_endpoint *prev)
{
	/* the round-robin cursor moves on at each call: n calls see every ready endpoint */
	for (uint32_t k = 0; k < c->n_eps; k++) {
		const struct pl_endpoint *ep = pl_router_endpoint(c);
		if (!ep)
			break;
		if (ep != prev)
			return ep;
	}
	return prev;
}
