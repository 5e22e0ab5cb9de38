/*
 * Request routing over a compiled table (common/table-t.h). Pure: reads the
 * table, touches no mutable state; any worker thread.
 *
 * pl_router_listener(): the listener of bind b that owns host (most specific
 * listener hostname wins; NULL when none matches: respond 404).
 * pl_router_find(): within listener l, the vhost for the request host (most
 * specific), then the first entry whose match holds (path, method, headers,
 * query params), entries being in precedence order already. NULL: 404.
 * pl_router_pick(): chooses the backend of rule r by its smooth-WRR schedule
 * (bumps r->sched_pos); NULL when the rule has no valid backend (500), or the
 * chosen backendRef is invalid (cluster == NULL: 500).
 * pl_router_endpoint(): round-robin over ready endpoints of c; NULL if none (503).
 */
#ifndef PL_ROUTER_H
#define PL_ROUTER_H

#include "table-t.h"
#include "reqview.h"

const struct pl_listener *pl_router_listener(const struct pl_bind *b, const char *host, uint32_t host_len);
const struct pl_route_entry *pl_router_find(const struct pl_listener *l, const struct pl_req_view *r);
const struct pl_backend *pl_router_pick(struct pl_rule *r);
const struct pl_endpoint *pl_router_endpoint(struct pl_cluster *c);
/* 1 if m holds for r. Exposed for unit tests. */
int pl_router_match(const struct pl_match *m, const struct pl_req_view *r);

#endif
