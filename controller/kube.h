/*
 * Kubernetes mode: the same object store and compiler as standalone mode,
 * fed by list+watch from the API server instead of files (docs/kubernetes.md).
 *
 * Contract
 * - pl_kube_start() loads the credentials (kubeconfig or in-cluster), publishes
 *   an empty table at once (so the proxy starts), then starts the controller
 *   thread, which lists and watches every kind the store knows, compiles after
 *   a short debounce, publishes, and (as Lease holder) writes status. Returns 0,
 *   or -1 with the reason logged (bad flags, unreadable credentials).
 * - pl_kube_ready() is 1 once every watched kind was listed once and that
 *   state was compiled and published (/readyz). Any thread.
 * - pl_kube_stop() stops the thread and releases the Lease if held.
 * - API server outages never touch the published table: the last good table
 *   keeps serving while watches back off and retry.
 */
#ifndef PL_KUBE_H
#define PL_KUBE_H

#include <stdint.h>

struct pl_kube_config {
	const char *kubeconfig;           /* path; NULL with in_cluster */
	int in_cluster;                   /* service-account token + CA from the pod */
	const char *controller_name;      /* GatewayClass controllerName (default PL_DEFAULT_CONTROLLER_NAME) */
	const char *gateway_class_name;   /* serve only this GatewayClass; NULL: every class of controller_name */
	const char *address_pool;         /* "127.0.10.0/24" or "127.0.10.1-127.0.10.200"; NULL: none */
	const char *publish_service;      /* "ns/name" of the LoadBalancer Service fronting pylon; NULL: none */
	const char *lease_namespace;      /* NULL: POD_NAMESPACE, the pod's namespace, else "default" */
	int no_leader_election;           /* 1: always write status (single replica, tests) */
	unsigned debounce_ms;             /* coalescing window for bursts of events (0: none; main.c defaults it to 10) */
};

int pl_kube_start(const struct pl_kube_config *cfg);
void pl_kube_stop(void);
int pl_kube_ready(void);

/*
 * Helpers exposed for unit tests (kubeconf.c).
 * Parses an address pool: "a.b.c.d/nn" (IPv4, hosts only: network and
 * broadcast addresses excluded for /0../30) or "a.b.c.d-e.f.g.h". Host-order
 * first/last into *lo, *hi; 0 or -1.
 */
int pl_kube_parse_pool(const char *s, uint32_t *lo, uint32_t *hi);

#endif
