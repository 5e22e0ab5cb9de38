/*
 * The Gateway API compiler: a store of objects in, a routing table (table-t.h)
 * and the status every object would carry out. Pure: no I/O besides logging,
 * no clock except table->compiled_at_ns; the same store gives the same table
 * and statuses (byte for byte, config_json included).
 *
 * Contract
 * - pl_compile() reads s (store.h) and fills r. r->table is a fresh table
 *   (pl_table_new(), refcount 1, everything in table->arena, regex_t freed by
 *   an arena cleanup) that the caller publishes or unrefs. r->statuses is a
 *   JSON array of {apiVersion, kind, metadata: {name, namespace}, status}, one
 *   per object we are responsible for (GatewayClasses we serve, their
 *   Gateways, HTTPRoutes with at least one parentRef to them), in the order
 *   GatewayClass, Gateway, HTTPRoute, each by namespace/name.
 *   r->problems counts those objects with some condition in its unhealthy
 *   state (Accepted, ResolvedRefs, Programmed, SupportedVersion not "True";
 *   Conflicted, PartiallyInvalid "True").
 * - Follows Gateway API v1.x (see docs/ and compile.c for what is served):
 *   HTTP, HTTPS, TLS, TCP and UDP listeners produce binds; TLS material is
 *   validated (PEM parses, key matches) and stored as PEM in the table.
 * - Cluster ids are stable across compiles for the same "ns/svc:port" via a
 *   process-wide registry (mutex; any thread), unless opts->ephemeral.
 * - Returns 0. Allocation failure is fatal (control plane).
 * - One compile at a time per store; different stores may compile in parallel.
 */
#ifndef PL_COMPILE_H
#define PL_COMPILE_H

#include <stdint.h>
#include <jansson.h>

#define PL_DEFAULT_CONTROLLER_NAME "pylon.dev/gateway-controller"

struct pl_store;
struct pl_table;

struct pl_compile_opts {
	const char *controller_name;  /* serve only classes with this controllerName; NULL: all */
	const char *now;              /* lastTransitionTime (RFC 3339); NULL: "1970-01-01T00:00:00Z" */
	int ephemeral;                /* fuzzing/tests: no process-wide registries (rule->stats NULL,
					 cluster ids numbered per table) */
	size_t max_entries;           /* route entries in the table counting hostname fallbacks (the
					 rules of less specific hostnames copied behind a vhost's own);
					 past it each vhost holds its own routes only. 0: 1000000 */
};

struct pl_compile_result {
	struct pl_table *table;
	json_t *statuses;
	unsigned problems;
};

int pl_compile(const struct pl_store *s, const struct pl_compile_opts *opts, struct pl_compile_result *r);
/* Drops the table reference (if still held) and the statuses; r is zeroed. */
void pl_compile_result_clear(struct pl_compile_result *r);

/* Helpers exposed for unit tests. */
/* Gateway API Duration ("1h30m", "500ms", "0s"): 0 and *ms, or -1. */
int pl_gw_parse_duration(const char *s, uint64_t *ms);
/*
 * Intersection of a listener hostname and a route hostname ("" or NULL = any):
 * writes the more specific of the two to out when they intersect and returns
 * 1, else 0.
 */
int pl_gw_host_intersect(const char *listener, const char *route, char *out, size_t out_size);

#endif
