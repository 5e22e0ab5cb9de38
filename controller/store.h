/*
 * The object store: the Kubernetes objects the compiler reads, keyed by
 * kind/namespace/name. Fed from manifest files in standalone mode (and by the
 * Kubernetes API later); the compiler only ever sees a store.
 *
 * Contract
 * - One thread at a time (the controller thread, or check). Objects are
 *   jansson values owned by the store; pointers returned by get/list stay
 *   valid until the next put/delete/free.
 * - pl_store_put() takes a reference to obj (the caller keeps its own). It
 *   accepts the kinds of enum pl_kind in the apiVersions listed in store.c
 *   (Gateway API v1/v1beta1/v1alpha3/v1alpha2/v1alpha1, core v1, discovery.k8s.io/v1). Namespaced
 *   objects without metadata.namespace go to "default"; cluster-scoped objects
 *   get namespace "". Returns PL_STORE_ADDED, PL_STORE_REPLACED (same key seen
 *   before: the new object wins, load order and the first origin are kept),
 *   PL_STORE_IGNORED (a kind or apiVersion we do not handle; logged once at
 *   info), or -1 with a reason in err for an object that is not one
 *   (no kind/apiVersion/metadata.name, bad types).
 * - Load order: every added object gets the next seq; creationTimestamp, when
 *   present and RFC 3339, is kept as created_ns for precedence tie-breaks.
 * - Change tracking (for the incremental compiler): the store counts every
 *   put (added or replaced, even by an identical object) and delete. An
 *   object's rev is the count at its last put: unique across the store's
 *   objects and versions, never 0. pl_store_epoch(k) is the count at the
 *   last put or delete of kind k (0: none yet), pl_store_rev() the count
 *   itself. pl_store_id() is unique per store in the process, so state kept
 *   for one store is never used with another that reuses its address.
 * - pl_store_changes() replays the keys put or deleted after count since,
 *   oldest first (a key may come more than once), from a log of the last
 *   PL_STORE_LOG changes: 0, or -1 (fn not called) when the log no longer
 *   reaches back to since.
 * - A caller may change members no compiler reads (the Kubernetes
 *   controller's status text and metadata.resourceVersion) of a stored
 *   object in place: that is no change (rev, epochs and log stay), so the
 *   incremental compiler's cache of the object stays valid.
 */
#ifndef PL_STORE_H
#define PL_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

enum pl_kind {
	PL_K_GATEWAYCLASS = 0,
	PL_K_GATEWAY,
	PL_K_HTTPROUTE,
	PL_K_REFERENCEGRANT,
	PL_K_NAMESPACE,
	PL_K_SERVICE,
	PL_K_SECRET,
	PL_K_CONFIGMAP,
	PL_K_ENDPOINTSLICE,
	PL_K_TLSROUTE,          /* added (issue 5): TLS/L4 routes and backend TLS */
	PL_K_TCPROUTE,
	PL_K_UDPROUTE,
	PL_K_BACKENDTLSPOLICY,
	PL_K_GRPCROUTE,         /* added (issue 6) */
	PL_K_LISTENERSET,       /* added: Gateway API v1 ListenerSet */
	PL_K_N
};

struct pl_obj {
	enum pl_kind kind;
	char *ns;             /* "" for cluster-scoped kinds */
	char *name;
	json_t *json;         /* the whole object */
	uint64_t seq;         /* load order */
	int64_t created_ns;   /* metadata.creationTimestamp (Unix ns), INT64_MAX when absent */
	char *origin;         /* "file:line" of the definition, "" if unknown */
	uint64_t rev;         /* the store's change count at the last put of this object */
};

enum { PL_STORE_IGNORED = 0, PL_STORE_ADDED = 1, PL_STORE_REPLACED = 2 };

struct pl_store;

struct pl_store *pl_store_new(void);          /* NULL on OOM */
void pl_store_free(struct pl_store *s);       /* NULL ok */
int pl_store_put(struct pl_store *s, json_t *obj, const char *origin, char *err, size_t errlen);
/* 0 if removed, -1 if absent. */
int pl_store_delete(struct pl_store *s, enum pl_kind k, const char *ns, const char *name);
const struct pl_obj *pl_store_get(const struct pl_store *s, enum pl_kind k, const char *ns, const char *name);
/* Objects of kind k in (namespace, name) order. */
size_t pl_store_list(const struct pl_store *s, enum pl_kind k, const struct pl_obj *const **out);
size_t pl_store_count(const struct pl_store *s);
uint64_t pl_store_epoch(const struct pl_store *s, enum pl_kind k);
uint64_t pl_store_rev(const struct pl_store *s);
uint64_t pl_store_id(const struct pl_store *s);
#define PL_STORE_LOG 4096
int pl_store_changes(const struct pl_store *s, uint64_t since,
		     void (*fn)(enum pl_kind k, const char *ns, const char *name, void *arg), void *arg);

/* "HTTPRoute", ... */
const char *pl_kind_str(enum pl_kind k);
/* 1 for kinds that live in a namespace. */
int pl_kind_namespaced(enum pl_kind k);

/*
 * Parses YAML manifests buf[0..len) (see yamlload.h) into s; "kind: List"
 * documents are expanded. Returns the number of objects added or replaced,
 * or -1 with "fname:line[:col]: why" in err (s may hold the objects read
 * before the error).
 */
int pl_store_load_yaml(struct pl_store *s, const char *buf, size_t len, const char *fname,
		       char *err, size_t errlen);

/* Parses an RFC 3339 time ("2024-01-02T03:04:05.5Z", "+01:00" offsets) to Unix ns. 0 or -1. */
int pl_parse_rfc3339(const char *s, int64_t *out_ns);

#endif
