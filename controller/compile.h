/*
 * The Gateway API compiler: a store of objects in, a routing table (table-t.h)
 * and the status every object would carry out. Pure: no I/O besides logging,
 * no clock except table->compiled_at_ns; the same store gives the same table
 * and statuses (byte for byte, as pl_table_json() and json_dumps() write
 * them; table->clusters in the order table->rules first name them).
 *
 * Contract
 * - pl_compile() reads s (store.h) and fills r. r->table is a fresh table
 *   (pl_table_new(), refcount 1, everything in table->arena, regex_t freed by
 *   an arena cleanup) that the caller publishes or unrefs. r->statuses is a
 *   JSON array of {apiVersion, kind, metadata: {name, namespace}, status}, one
 *   per object we are responsible for (GatewayClasses we serve, their
 *   Gateways, HTTPRoutes with at least one parentRef to them), in the order
 *   GatewayClass, Gateway, HTTPRoute, each by namespace/name. With
 *   opts->status_map, r->statuses is instead a JSON object from
 *   "Kind/namespace/name" ("Kind//name" for cluster-scoped objects) to the
 *   status alone, in the same order: what the Kubernetes controller reads,
 *   without a {apiVersion, kind, metadata} document per route (the
 *   persistent compiler would keep one per route: ~0.7 KB each).
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
 * - The table JSON for GET /config is made on demand: pl_table_json()
 *   (tabledump.h).
 *
 * Status deltas (opts->status_delta, with status_map)
 * - A run that reuses cached routes gives in r->statuses the statuses that
 *   may have changed since the previous run of the same pl_compiler (the
 *   routes compiled in this run, every GatewayClass, Gateway, ListenerSet and
 *   BackendTLSPolicy) and in r->status_gone the keys that had a status then
 *   and have none now; applying both to the previous run's map (gone keys
 *   first) gives this run's map. A run that reuses nothing (pl_compile(),
 *   a first or full run) sets r->status_all and gives every status. What a
 *   cached route's status is never changes while it stays cached (a change
 *   of what routes depend on makes the run a full one). r->problems counts
 *   every object either way.
 *
 * Incremental compilation (issue 4)
 * - A struct pl_compiler keeps what one compile computed for the next:
 *   every route's parsed rules, attachments and status, every cluster's
 *   endpoints. pl_compiler_run() gives exactly what pl_compile() would for
 *   the same store and options (table, statuses and problems; the differential
 *   test in tests/unit/test_incremental.c holds it to that), but recompiles
 *   only the routes whose object changed (pl_obj.rev) and the endpoints of
 *   Services whose EndpointSlices changed. A change to anything else a route
 *   is compiled against (GatewayClasses and Gateways by content, so even a
 *   change made in place without a put counts; Services, ReferenceGrants,
 *   Namespaces, BackendTLSPolicies by store epoch; the Secrets and ConfigMaps
 *   the Gateways and policies read) recompiles everything: such changes are
 *   rare. The content compared leaves out status, metadata.resourceVersion
 *   and managedFields, and top-level keys starting with "_pylon" (the
 *   Kubernetes controller's bookkeeping: no compile may read those).
 * - Tables share the cached data (route rules, clusters, vhost entries) and
 *   keep it alive themselves: a table may outlive the compiler and later
 *   compiles, on any thread. So do statuses: r->statuses shares its values
 *   (identical conditions, parents, whole statuses are one JSON value, and an
 *   unchanged route's entry is the same json_t as in the previous result);
 *   change a deep copy, never them.
 * - One thread at a time per compiler; it may be used with any store, but it
 *   only reuses its cache with the store it last ran on. pl_compile() is a
 *   one-off compiler.
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
	int status_map;               /* r->statuses as {"Kind/ns/name": status} (see below) */
	int status_delta;             /* with status_map: a pl_compiler's runs give what changed (see below) */
	size_t max_entries;           /* route entries in the table counting hostname fallbacks (the
					 rules of less specific hostnames copied behind a vhost's own);
					 past it each vhost holds its own routes only. 0: 1000000 */
};

struct pl_compile_result {
	struct pl_table *table;
	json_t *statuses;
	unsigned problems;
	int status_all;               /* status_delta: statuses holds every status, not the changes */
	json_t *status_gone;          /* status_delta, not status_all: keys whose status is no more (array) */
};

int pl_compile(const struct pl_store *s, const struct pl_compile_opts *opts, struct pl_compile_result *r);
/* Drops the table reference (if still held) and the statuses; r is zeroed. */
void pl_compile_result_clear(struct pl_compile_result *r);

struct pl_compiler;

/* A persistent compiler with a copy of opts (NULL: defaults). Allocation failure is fatal. */
struct pl_compiler *pl_compiler_new(const struct pl_compile_opts *opts);
void pl_compiler_free(struct pl_compiler *pc);              /* NULL ok; tables made by it stay valid */
/* As pl_compile(s, opts, r), reusing what earlier runs computed. Returns 0. */
int pl_compiler_run(struct pl_compiler *pc, const struct pl_store *s, struct pl_compile_result *r);

/* What the last pl_compiler_run() did, for tests, benchmarks and logs. */
struct pl_compiler_stats {
	int full;                     /* nothing was reused (first run, or a change that needs it all) */
	const char *why;              /* what made it full: "first run", "Service", "Gateway", ... */
	size_t routes_compiled, routes_reused;
	size_t clusters_built, clusters_reused;   /* endpoint lists */
};
void pl_compiler_get_stats(const struct pl_compiler *pc, struct pl_compiler_stats *st);

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
