#define _GNU_SOURCE /* RUSAGE_THREAD */
/*
 * Kubernetes mode (kube.h): list+watch into the object store, compile,
 * publish, write status.
 *
 * One thread, one libcurl multi handle. Every watched kind is a small state
 * machine: LIST (paged, limit=LIST_PAGE) -> WATCH from the list's resourceVersion
 * (bookmarks on) -> when the stream ends, WATCH again from the last
 * resourceVersion seen; 410 Gone (HTTP status or ERROR event) -> LIST again;
 * transport errors and 5xx -> exponential backoff with jitter, then resume
 * the WATCH. A kind whose CRD is absent (404 for every version we read) is
 * rechecked every 30 s and does not hold readiness back.
 *
 * Events are applied to the store as they arrive (in libcurl's write
 * callback, on this thread); a compile runs debounce_ms after the first event
 * of a burst, so a burst costs one compile, and the latency from event to
 * swap is bounded by debounce_ms plus the compile. The published table is
 * only ever replaced by a newer complete compile: an API outage leaves it
 * serving.
 *
 * Status goes out on the same multi handle (merge patches of the status
 * subresource carrying metadata.resourceVersion, so a concurrent writer makes
 * us retry instead of being overwritten), only by the Lease holder, only when
 * the desired status differs from what the API holds (lastTransitionTime kept
 * when a condition's status did not change), and for routes only our own
 * entries of status.parents. The Lease rounds and the reads of referenced
 * Secrets run there too: nothing but the Lease release at shutdown blocks.
 *
 * Memory: objects are slimmed on arrival to what the compiler and status
 * code read (slim()), hash-consed (jintern.h: equal values are held once),
 * and Secrets and ConfigMaps are watched as metadata, the ones Gateways and
 * BackendTLSPolicies name read with a GET (docs/kubernetes.md, "Memory").
 */
#include "pl.h"
#include "bindreg.h"
#include "compile.h"
#include "kube.h"
#include "jintern.h"
#include "jalloc.h"
#include "kubeconf.h"
#include "log.h"
#include "status.h"
#include "store.h"
#include "table.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define LIST_PAGE 100                /* a page is parsed whole: this bounds that transient */
#define MAX_BODY (128u << 20)        /* one list page or one error body */
#define MAX_LINE (16u << 20)         /* one watch event */
#define WATCH_TIMEOUT_S 300
#define ABSENT_RECHECK_NS (30ll * 1000000000)
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 30000
#define PENDING_BIND_NS (1000ll * 1000000)
#define LEASE_DURATION_S 15
#define LEASE_RENEW_NS (2ll * 1000000000)
#define LEASE_RETRY_NS (2ll * 1000000000)
#define SYNC_TIMEOUT_MS 5000L
#define FETCH_HOLD_NS (2000ll * 1000000)   /* a compile waits this long at most for referenced Secrets */
#define MS 1000000ll
#define WATCH_EARLY_NS (1000 * MS)   /* a clean watch end sooner than this backs off */
/*
 * A 410 within this long of the previous one backs off (a server that answers
 * every watch with 410 must not make us relist in a loop). Longer than the
 * largest backoff (BACKOFF_MAX_MS plus jitter), so a retry that meets 410
 * again keeps backing off instead of starting over at once.
 */
#define GONE_REPEAT_NS (60ll * 1000000000)
/*
 * A watch that delivers no byte for this long is dropped and resumed
 * (CURLOPT_LOW_SPEED_TIME): a stalled connection would otherwise only be
 * noticed by CURLOPT_TIMEOUT (WATCH_TIMEOUT_S + 90). With allowWatchBookmarks
 * and a timeoutSeconds (240..360 s here) the API server sends a BOOKMARK
 * about every minute and one just before the timeout, so a healthy but quiet
 * watch never stays silent this long; 90 s leaves half a bookmark interval
 * of slack for a busy server.
 */
#define WATCH_SILENT_S 90

/* Features pylon passes (GatewayClass status.supportedFeatures), sorted:
 * each one's conformance tests pass (conformance/reports/). */
static const char *const default_features[] = {
	"BackendTLSPolicy",
	"BackendTLSPolicySANValidation",
	"GRPCRoute",
	"GRPCRouteNamedRouteRule",
	"Gateway",
	"GatewayAddressEmpty",
	"GatewayBackendClientCertificate",
	"GatewayFrontendClientCertificateValidation",
	"GatewayFrontendClientCertificateValidationInsecureFallback",
	"GatewayHTTPListenerIsolation",
	"GatewayHTTPSListenerDetectMisdirectedRequests",
	"GatewayPort8080",
	"GatewayStaticAddresses",
	"HTTPRoute",
	"HTTPRoute303RedirectStatusCode",
	"HTTPRoute307RedirectStatusCode",
	"HTTPRoute308RedirectStatusCode",
	"HTTPRouteBackendProtocolH2C",
	"HTTPRouteBackendProtocolWebSocket",
	"HTTPRouteBackendRequestHeaderModification",
	"HTTPRouteBackendTimeout",
	"HTTPRouteCORS",
	"HTTPRouteDestinationPortMatching",
	"HTTPRouteHostRewrite",
	"HTTPRouteMethodMatching",
	"HTTPRouteNamedRouteRule",
	"HTTPRouteParentRefPort",
	"HTTPRoutePathRedirect",
	"HTTPRoutePathRewrite",
	"HTTPRoutePortRedirect",
	"HTTPRouteQueryParamMatching",
	"HTTPRouteRequestMirror",
	"HTTPRouteRequestMultipleMirrors",
	"HTTPRouteRequestPercentageMirror",
	"HTTPRouteRequestTimeout",
	"HTTPRouteResponseHeaderModification",
	"HTTPRouteRetry",
	"HTTPRouteRetryBackendTimeout",
	"HTTPRouteRetryConnectionError",
	"HTTPRouteSchemeRedirect",
	"ListenerSet",
	"ReferenceGrant",
	"TCPRoute",
	"TLSRoute",
	"TLSRouteModeMixed",
	"TLSRouteModeTerminate",
	"UDPRoute",
};

struct res {
	const char *kind;
	const char *group;            /* "" = core */
	const char *versions[3];      /* tried in order; NULL-terminated */
	const char *plural;
	int namespaced;
	int meta_only;                /* watched as metadata; the objects Gateways reference are fetched */
};

static const struct res resources[] = {
	{ "GatewayClass", "gateway.networking.k8s.io", { "v1", "v1beta1" }, "gatewayclasses", 0, 0 },
	{ "Gateway", "gateway.networking.k8s.io", { "v1", "v1beta1" }, "gateways", 1, 0 },
	{ "HTTPRoute", "gateway.networking.k8s.io", { "v1", "v1beta1" }, "httproutes", 1, 0 },
	{ "GRPCRoute", "gateway.networking.k8s.io", { "v1", "v1alpha2" }, "grpcroutes", 1, 0 },
	{ "TLSRoute", "gateway.networking.k8s.io", { "v1", "v1alpha3", "v1alpha2" }, "tlsroutes", 1, 0 },
	{ "TCPRoute", "gateway.networking.k8s.io", { "v1", "v1alpha2" }, "tcproutes", 1, 0 },
	{ "UDPRoute", "gateway.networking.k8s.io", { "v1", "v1alpha2" }, "udproutes", 1, 0 },
	{ "BackendTLSPolicy", "gateway.networking.k8s.io", { "v1", "v1alpha3" }, "backendtlspolicies", 1, 0 },
	{ "ReferenceGrant", "gateway.networking.k8s.io", { "v1", "v1beta1" }, "referencegrants", 1, 0 },
	{ "ListenerSet", "gateway.networking.k8s.io", { "v1" }, "listenersets", 1, 0 },
	{ "Namespace", "", { "v1" }, "namespaces", 0, 0 },
	{ "Service", "", { "v1" }, "services", 1, 0 },
	{ "EndpointSlice", "discovery.k8s.io", { "v1" }, "endpointslices", 1, 0 },
	{ "Secret", "", { "v1" }, "secrets", 1, 1 },
	{ "ConfigMap", "", { "v1" }, "configmaps", 1, 1 },
};

enum wstate { W_WAIT = 0, W_LIST, W_WATCH, W_ABSENT };

enum { TAG_WATCH = 1, TAG_STATUS, TAG_AREQ };

struct watch {
	int tag;                     /* TAG_WATCH: CURLOPT_PRIVATE of the multi's handles is a tag first */
	const struct res *r;
	enum pl_kind kind;
	unsigned ver;                /* index into r->versions */
	enum wstate st;
	int need_list;               /* next start is a LIST (first time, or after 410) */
	CURL *h;
	struct curl_slist *hdrs;
	char *buf;                   /* list page, or the watch stream's unfinished line */
	size_t len, cap, scan;
	int overflow;
	int abort_reason;            /* set by the write callback: 1 = 410 in stream, 2 = bad event */
	char rv[64];
	char *cont;                  /* list continue token */
	json_t *seen;                /* "ns/name" listed during the current LIST */
	int synced;                  /* listed at least once (or absent) */
	int absent_logged;
	unsigned fails;
	unsigned gones;              /* 410s in a row, each within GONE_REPEAT_NS of the last */
	unsigned stalls;             /* silent watches dropped since the last clean end */
	int64_t gone_ns;             /* when the last 410 came */
	int64_t due_ns;
	int64_t start_ns;            /* when the current request was started */
	uint64_t events;
};

#define STATUS_INFLIGHT 8

struct sbuf {
	char *p;
	size_t n, cap;
};

/*
 * One status PATCH, queued or in flight on the multi handle. Thousands may
 * be queued after a burst of route changes, so a queued one is small (its
 * strings sized to fit) and its body is written only when it is sent.
 */
struct sreq {
	int tag;                     /* TAG_STATUS */
	int prio;                    /* a GatewayClass or Gateway: queued ahead of routes */
	struct sreq *next;
	char *key;                   /* "Kind/ns/name"; also the key in K.sq_index while queued */
	char *path;
	char rv[64];
	char *txt;                   /* the status, compact JSON */
	char *body;                  /* made by status_pump() */
	struct curl_slist *hdrs;
	CURL *h;
	struct sbuf resp;
};

struct wr {                      /* a status we wrote, until the watch shows it */
	char rv[64];
	uint64_t hash;                   /* of its compact JSON text */
	int deferred;                    /* a newer status waits for the watch to show this one */
};

struct areq;
typedef void areq_done_fn(struct areq *q, long code);

struct areq {                    /* an asynchronous request on the multi handle (Lease, fetches) */
	int tag;                     /* TAG_AREQ */
	struct areq *next;           /* K.areqs: in flight */
	CURL *h;
	struct curl_slist *hdrs;
	char *body;
	struct sbuf resp;
	areq_done_fn *done;          /* code 0: transport error; resp holds the body */
	void *ctx;
};

/*
 * A referenced Secret or ConfigMap whose data we need: the watch shows
 * metadata only, the object itself is read with a GET. Compiles wait for
 * pending fetches (at most FETCH_HOLD_NS), so a Gateway never compiles
 * against a Secret we have not read yet.
 */
struct fetch {
	struct fetch *next;
	enum pl_kind kind;
	char *ns, *name;
	struct areq *q;              /* in flight */
	int again;                   /* the watch showed a change while in flight */
	unsigned fails;
	int64_t due_ns, since_ns;
};

static struct {
	struct pl_kube_config cfg;
	char *controller_name, *class_name, *lease_ns, *lease_name, *identity;
	char *publish_ns, *publish_name;
	uint32_t pool_lo, pool_hi, pool_next;
	int have_pool;
	struct pl_kconf kc;

	pthread_t thread;
	int running;
	atomic_int stop;
	CURLM *multi;
	CURL *sync;                  /* the Lease release at shutdown */
	struct watch *w;
	size_t nw;
	struct pl_store *store;
	struct pl_jintern *jt;       /* store objects and desired statuses are hash-consed */
	struct areq *areqs;          /* in flight */
	struct fetch *fetches;
	json_t *refs;                /* "Kind/ns/name" of the Secrets and ConfigMaps Gateways and policies name */
	int refs_dirty;

	int dirty;
	int64_t first_event_ns, compile_at_ns, last_compile_ns, last_trim_ns;
	int trim_pending;
	int lease_denied_logged;
	json_t *desired;             /* "Kind/ns/name" -> status (interned), from the last compile */
	json_t *desired_src;         /* "Kind/ns/name" -> the compiler's own status value behind desired */
	int status_due;
	int64_t status_at_ns, compiled_ns;
	json_t *written;             /* "Kind/ns/name" -> struct wr (as integer pointer) */
	json_t *status_keys;         /* "Kind/ns/name" whose status changed, for a partial pass; empty: all */
	int status_full;             /* next pass covers every object (leadership, failures) */
	json_t *desired_changed;     /* "Kind/ns/name" whose desired status changed or left since the last pass */
	char now_str[40];            /* lastTransitionTime for conditions that change in this pass */
	json_t *assigned;            /* "ns/name" -> pool address */
	json_t *used_addrs;          /* address -> true */

	struct sreq *sq_head, *sq_tail;   /* queued status writes */
	json_t *sq_index;                 /* their keys -> struct sreq * (json_integer) */
	struct sreq *inflight[STATUS_INFLIGHT];
	unsigned n_inflight;
	int waiting_binds;
	int leader;
	int64_t lease_due_ns, lease_seen_ns, lease_ok_ns, lease_tick_ns;
	struct areq *lease_req;      /* the Lease GET, PUT or POST in flight */
	char lease_seen_rv[64];
	uint64_t compiles, status_writes;
} K;

static json_t *api_status(const struct pl_obj *o);
static struct areq *areq_start(const char *method, const char *path, const json_t *body, areq_done_fn *done, void *ctx);

static atomic_int kube_ready;
static atomic_int bind_changed;      /* set by the proxy's bind reports (bindreg.h) */

static int64_t backoff_ns(unsigned fails)
{
	uint64_t ms = BACKOFF_MIN_MS;
	for (unsigned i = 1; i < fails && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	/* jitter: 50%..150%, so replicas and kinds do not retry in lockstep */
	uint64_t j = ms / 2 + (uint64_t)random() % (ms + 1);
	return (int64_t)j * MS;
}

static void now_rfc3339(char *buf, size_t n, int micro)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	if (!micro) {
		strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
		return;
	}
	char b[24];
	strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, n, "%.19s.%06dZ", b, (int)(ts.tv_nsec / 1000) % 1000000);
}

static const char *sget(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* "/apis/group/version" or "/api/v1" */
static void base_path(const struct res *r, unsigned ver, char *out, size_t n)
{
	if (!*r->group)
		snprintf(out, n, "/api/%s", r->versions[ver]);
	else
		snprintf(out, n, "/apis/%s/%s", r->group, r->versions[ver]);
}

static const struct res *res_of_kind(const char *kind)
{
	for (size_t i = 0; i < PL_ARRAY_LEN(resources); i++)
		if (strcmp(resources[i].kind, kind) == 0)
			return &resources[i];
	return NULL;
}

static struct watch *watch_of_kind(enum pl_kind k)
{
	for (size_t i = 0; i < K.nw; i++)
		if (K.w[i].kind == k)
			return &K.w[i];
	return NULL;
}

/* ---------------------------------------------------------------- pool */

int pl_kube_parse_pool(const char *s, uint32_t *lo, uint32_t *hi)
{
	char a[64], b[64];
	const char *dash = strchr(s, '-'), *slash = strchr(s, '/');
	struct in_addr x, y;
	if (dash && !slash) {
		size_t n = (size_t)(dash - s);
		if (n == 0 || n >= sizeof(a) || strlen(dash + 1) >= sizeof(b))
			return -1;
		memcpy(a, s, n);
		a[n] = '\0';
		snprintf(b, sizeof(b), "%s", dash + 1);
		if (inet_pton(AF_INET, a, &x) != 1 || inet_pton(AF_INET, b, &y) != 1)
			return -1;
		*lo = ntohl(x.s_addr);
		*hi = ntohl(y.s_addr);
		return *lo <= *hi ? 0 : -1;
	}
	if (slash && !dash) {
		size_t n = (size_t)(slash - s);
		uint64_t bits;
		if (n == 0 || n >= sizeof(a) || pl_parse_u64(slash + 1, strlen(slash + 1), &bits) != 0 || bits > 32)
			return -1;
		memcpy(a, s, n);
		a[n] = '\0';
		if (inet_pton(AF_INET, a, &x) != 1)
			return -1;
		uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
		uint32_t net = ntohl(x.s_addr) & mask;
		uint32_t last = net | ~mask;
		if (bits <= 30) {
			net++;
			last--;
		}
		*lo = net;
		*hi = last;
		return 0;
	}
	if (!dash && !slash && inet_pton(AF_INET, s, &x) == 1) {
		*lo = *hi = ntohl(x.s_addr);
		return 0;
	}
	return -1;
}

static int class_is_ours(const char *cls)
{
	if (!cls)
		return 0;
	if (K.class_name && strcmp(cls, K.class_name) != 0)
		return 0;
	const struct pl_obj *co = pl_store_get(K.store, PL_K_GATEWAYCLASS, "", cls);
	const char *ctl = co ? sget(json_object_get(co->json, "spec"), "controllerName") : NULL;
	return ctl && strcmp(ctl, K.controller_name) == 0;
}

static const char *pool_take(const char *key, const char *txt)
{
	json_object_set_new(K.used_addrs, txt, json_true());
	json_object_set_new(K.assigned, key, json_string(txt));
	pl_info("Gateway %s: address %s from the pool", key, txt);
	return sget(K.assigned, key);
}

/*
 * The address for Gateway key: the one it has, else the one its status shows
 * (kept across restarts and shared by replicas) when free, else the next free.
 * A replica that does not write status moves to the address the status
 * shows when it holds another (replicas pick without talking to each
 * other), so they all end up binding the address the leader publishes.
 */
static const char *pool_alloc(const char *key, const json_t *status, int claim_only)
{
	const char *have = sget(K.assigned, key);
	const char *prev = sget(json_array_get(json_object_get(status, "addresses"), 0), "value");
	if (have && !K.leader && prev && strcmp(prev, have) != 0) {
		pl_info("Gateway %s: address %s back to the pool: the Gateway's status shows %s", key, have, prev);
		json_object_del(K.used_addrs, have);
		json_object_del(K.assigned, key);
		have = NULL;
	}
	if (have)
		return have;
	struct in_addr pa;
	if (prev && inet_pton(AF_INET, prev, &pa) == 1 && ntohl(pa.s_addr) >= K.pool_lo &&
	    ntohl(pa.s_addr) <= K.pool_hi && !json_object_get(K.used_addrs, prev)) {
		char txt[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &pa, txt, sizeof(txt));
		return pool_take(key, txt);
	}
	if (claim_only)
		return NULL;
	uint64_t size = (uint64_t)K.pool_hi - K.pool_lo + 1;
	for (uint64_t i = 0; i < size; i++) {
		uint32_t a = K.pool_lo + (uint32_t)((K.pool_next - K.pool_lo + i) % size);
		struct in_addr ia = { .s_addr = htonl(a) };
		char txt[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &ia, txt, sizeof(txt));
		if (json_object_get(K.used_addrs, txt))
			continue;
		K.pool_next = a == K.pool_hi ? K.pool_lo : a + 1;
		return pool_take(key, txt);
	}
	return NULL;
}

/*
 * Gives every Gateway of ours without spec.addresses an address from the pool,
 * by writing it into our copy's spec.addresses (the compiler then binds there
 * and reports it). "_pylonPool" marks the copies we changed; the API object is
 * never touched. Addresses of Gateways that went away return to the pool.
 */
static void assign_pool_addresses(void)
{
	if (!K.have_pool)
		return;
	const struct pl_obj *const *v;
	size_t n = pl_store_list(K.store, PL_K_GATEWAY, &v);
	json_t *live = json_object();   /* "ns/name" -> 1 needs an address, 2 has its copy marked */
	if (!live)
		PL_PANIC("out of memory");
	char key[512];
	for (size_t i = 0; i < n; i++) {
		json_t *spec = json_object_get(v[i]->json, "spec");
		if (!json_is_object(spec) || !class_is_ours(sget(spec, "gatewayClassName")))
			continue;
		json_t *mark = json_object_get(v[i]->json, "_pylonPool");
		if (!mark && json_array_size(json_object_get(spec, "addresses")) > 0)
			continue;   /* the user's own addresses */
		snprintf(key, sizeof(key), "%s/%s", v[i]->ns, v[i]->name);
		json_object_set_new(live, key, json_integer(mark ? 2 : 1));
	}
	/* first free the addresses of Gateways that went away */
	const char *k;
	json_t *val, *tmp;
	json_object_foreach_safe(K.assigned, tmp, k, val) {
		if (json_object_get(live, k))
			continue;
		pl_info("Gateway %s: address %s back to the pool", k, json_string_value(val));
		json_object_del(K.used_addrs, json_string_value(val));
		json_object_del(K.assigned, k);
	}
	/* then: Gateways keep the address their status shows (pass 0), the rest take the next free one */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			snprintf(key, sizeof(key), "%s/%s", v[i]->ns, v[i]->name);
			if (json_integer_value(json_object_get(live, key)) != 1)
				continue;
			json_t *st = api_status(v[i]);
			const char *a = pool_alloc(key, st, pass == 0);
			json_decref(st);
			if (!a) {
				if (pass == 1)
					pl_warn("Gateway %s: the address pool is exhausted; it binds on 0.0.0.0", key);
				continue;
			}
			/* spec is interned (shared, immutable): our copy gets a spec of its own */
			json_t *addrs = json_pack("[{s:s, s:s}]", "type", "IPAddress", "value", a);
			json_t *spec = json_copy(json_object_get(v[i]->json, "spec"));
			if (!addrs || !spec)
				PL_PANIC("out of memory");
			json_object_set_new(spec, "addresses", addrs);
			json_object_set_new(v[i]->json, "spec", spec);
			json_object_set_new(v[i]->json, "_pylonPool", json_true());
			json_object_set_new(live, key, json_integer(2));
		}
	}
	json_decref(live);
}

/* ---------------------------------------------------------------- store updates */

/*
 * Leading and trailing edge: an event after a quiet spell compiles at once (no
 * added latency), events within debounce_ms of the last compile wait for the
 * window to end and share one compile, so a burst costs at most two.
 */
static void mark_dirty(void)
{
	if (K.dirty)
		return;
	K.dirty = 1;
	K.first_event_ns = pl_now_ns();
	int64_t next = K.last_compile_ns + (int64_t)K.cfg.debounce_ms * MS;
	K.compile_at_ns = next > K.first_event_ns ? next : K.first_event_ns;
}

/*
 * 1 if store objects a and b differ at most in status and resourceVersion
 * (slim() has dropped the rest of the bookkeeping already). Interned
 * members make most of it pointer comparisons.
 */
static int same_but_status(const json_t *a, const json_t *b)
{
	const char *k;
	json_t *v;
	for (int pass = 0; pass < 2; pass++) {
		const json_t *x = pass ? b : a, *y = pass ? a : b;
		json_object_foreach((json_t *)x, k, v) {
			if (!strcmp(k, "_pylonStatus"))
				continue;
			if (!strcmp(k, "metadata")) {
				const char *mk;
				json_t *mv;
				const json_t *ym = json_object_get(y, "metadata");
				json_object_foreach(v, mk, mv)
					if (strcmp(mk, "resourceVersion") != 0 && !json_equal(mv, json_object_get(ym, mk)))
						return 0;
				continue;
			}
			if (!json_equal(v, json_object_get(y, k)))
				return 0;
		}
	}
	return 1;
}

/* ---------------------------------------------------------------- what the store keeps */

/*
 * The store keeps what the compiler and this file read, nothing else: at
 * thousands of objects the rest (managedFields, annotations such as
 * kubectl's last-applied-configuration, uids, Namespace and Service status,
 * EndpointSlice topology, the data of Secrets no Gateway names) would be
 * most of the memory. What is kept, by kind:
 * - metadata: name, namespace, generation, resourceVersion,
 *   creationTimestamp; labels of Namespaces (selectors) and EndpointSlices
 *   (kubernetes.io/service-name);
 * - Gateway API kinds and Services: spec;
 * - EndpointSlices: addressType, ports, endpoints (addresses, conditions);
 * - referenced Secrets: type, data, stringData; referenced ConfigMaps: data;
 *   other Secrets and ConfigMaps: metadata only, with "_pylonStub";
 * - status, as its compact JSON text in "_pylonStatus" (read only when a
 *   status is compared or written), for Gateway API kinds and the published
 *   Service. Everything else is dropped on arrival.
 * The compiler reads the kept fields only (compile.c); a new read there of
 * a field not listed here needs it added.
 */
static void keep(json_t *dst, const json_t *src, const char *key)
{
	json_t *v = json_object_get(src, key);
	if (v)
		json_object_set(dst, key, v);
}

static int kind_has_status(enum pl_kind k)
{
	return k != PL_K_NAMESPACE && k != PL_K_SERVICE && k != PL_K_SECRET && k != PL_K_CONFIGMAP &&
	       k != PL_K_ENDPOINTSLICE;
}

static int is_publish_service(enum pl_kind k, const char *ns, const char *name)
{
	return k == PL_K_SERVICE && K.publish_name && !strcmp(ns, K.publish_ns) && !strcmp(name, K.publish_name);
}

/*
 * The slim copy of obj (a new object sharing obj's values; obj is not
 * changed). What it makes lives as long as the stored object: on the
 * long-lived heap (jalloc.h), like the values intern_slim() then puts in.
 */
static json_t *slim(enum pl_kind k, const json_t *obj, int stub, int with_status)
{
	int was = pl_jalloc_longlived(1);
	json_t *o = json_object(), *md = json_object();
	if (!o || !md)
		PL_PANIC("out of memory");
	keep(o, obj, "apiVersion");
	keep(o, obj, "kind");
	const json_t *omd = json_object_get(obj, "metadata");
	keep(md, omd, "name");
	keep(md, omd, "namespace");
	keep(md, omd, "generation");
	keep(md, omd, "resourceVersion");
	keep(md, omd, "creationTimestamp");
	if (k == PL_K_NAMESPACE || k == PL_K_ENDPOINTSLICE)
		keep(md, omd, "labels");
	json_object_set_new(o, "metadata", md);
	if (stub) {
		json_object_set_new(o, "_pylonStub", json_true());
		pl_jalloc_longlived(was);
		return o;
	}
	switch (k) {
	case PL_K_NAMESPACE:
		break;
	case PL_K_ENDPOINTSLICE: {
		keep(o, obj, "addressType");
		keep(o, obj, "ports");
		json_t *eps = json_object_get(obj, "endpoints");
		if (!json_is_array(eps)) {
			keep(o, obj, "endpoints");
			break;
		}
		json_t *ne = json_array(), *e;
		size_t i;
		json_array_foreach(eps, i, e) {
			if (!json_is_object(e)) {
				json_array_append(ne, e);
				continue;
			}
			json_t *x = json_object();
			keep(x, e, "addresses");
			keep(x, e, "conditions");
			json_array_append_new(ne, x);
		}
		json_object_set_new(o, "endpoints", ne);
		break;
	}
	case PL_K_SECRET:
		keep(o, obj, "type");
		keep(o, obj, "data");
		keep(o, obj, "stringData");
		break;
	case PL_K_CONFIGMAP:
		keep(o, obj, "data");
		break;
	default:
		keep(o, obj, "spec");
		break;
	}
	json_t *st = json_object_get(obj, "status");
	if (with_status && st) {
		pl_jalloc_longlived(0);   /* json_dumps()' result is for free() */
		char *txt = json_dumps(st, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!txt)
			PL_PANIC("out of memory");
		pl_jalloc_longlived(1);
		json_object_set_new(o, "_pylonStatus", json_string(txt));
		free(txt);
	}
	pl_jalloc_longlived(was);
	return o;
}

/*
 * Interns the members of slim object o, except what is unique to this
 * version of this object anyway (metadata itself, its resourceVersion):
 * interning those would cost table space and save nothing.
 */
static void intern_slim(json_t *o)
{
	int was = pl_jalloc_longlived(1);
	for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
		json_t *v = json_object_iter_value(it);
		if (strcmp(json_object_iter_key(it), "metadata") != 0) {
			json_object_iter_set_new(o, it, pl_jintern(K.jt, json_incref(v)));
			continue;
		}
		for (void *mi = json_object_iter(v); mi; mi = json_object_iter_next(v, mi)) {
			json_t *mv = json_object_iter_value(mi);
			if (strcmp(json_object_iter_key(mi), "resourceVersion") != 0)
				mv = pl_jintern(K.jt, json_incref(mv));
			else if (!(mv = json_copy(mv)))   /* out of the parsed tree */
				PL_PANIC("out of memory");
			json_object_iter_set_new(v, mi, mv);
		}
	}
	pl_jalloc_longlived(was);
}

/* The status the API server holds for o (a new reference), or NULL. */
static json_t *api_status(const struct pl_obj *o)
{
	json_t *t = json_object_get(o->json, "_pylonStatus");
	return t ? json_loadb(json_string_value(t), json_string_length(t), 0, NULL) : NULL;
}

static int is_stub(const struct pl_obj *o)
{
	return o && json_object_get(o->json, "_pylonStub") != NULL;
}

/* ---------------------------------------------------------------- referenced Secrets and ConfigMaps */

static void refs_add(json_t *set, const json_t *ref, const char *defkind, const char *ns)
{
	const char *g = sget(ref, "group"), *k = sget(ref, "kind"), *n = sget(ref, "namespace"), *nm = sget(ref, "name");
	if (!nm || (g && *g))
		return;
	const char *kinds[2] = { k ? k : defkind, NULL };
	if (!k && !strcmp(defkind, "?")) {   /* a reference whose default kind we do not know: both */
		kinds[0] = "Secret";
		kinds[1] = "ConfigMap";
	}
	char key[600];
	for (int i = 0; i < 2 && kinds[i]; i++) {
		if (strcmp(kinds[i], "Secret") != 0 && strcmp(kinds[i], "ConfigMap") != 0)
			continue;
		snprintf(key, sizeof(key), "%s/%s/%s", kinds[i], n ? n : ns, nm);
		json_object_set_new(set, key, json_true());
	}
}

/*
 * Every object reference below v: the certificateRefs (Secret by default),
 * caCertificateRefs (ConfigMap) and clientCertificateRef (Secret) the
 * compiler follows, and any other {kind: Secret|ConfigMap, name} for good
 * measure. A superset of what the compiler reads: a Secret kept whole for
 * nothing costs memory, one kept as a stub that the compiler reads would
 * cost correctness. defkind: v is (in) a certificate reference list whose
 * references default to that kind ("?": unknown).
 */
static void refs_walk(json_t *set, const json_t *v, const char *ns, const char *defkind, int depth)
{
	if (depth > 32)
		return;
	if (json_is_array(v)) {
		size_t i;
		json_t *e;
		json_array_foreach((json_t *)v, i, e)
			refs_walk(set, e, ns, defkind, depth + 1);
		return;
	}
	if (!json_is_object(v))
		return;
	if (defkind || sget(v, "kind"))
		refs_add(set, v, defkind, ns);
	const char *k;
	json_t *m;
	json_object_foreach((json_t *)v, k, m) {
		const char *dk = NULL;
		if (!strcmp(k, "certificateRefs") || !strcmp(k, "clientCertificateRef"))
			dk = "Secret";
		else if (!strcmp(k, "caCertificateRefs"))
			dk = "ConfigMap";
		else if (strstr(k, "ertificateRef"))
			dk = "?";
		refs_walk(set, m, ns, dk, depth + 1);
	}
}

static void fetch_want(enum pl_kind kind, const char *ns, const char *name);
static void fetch_cancel(enum pl_kind kind, const char *ns, const char *name);

/* Splits "Kind/ns/name" (ns may be empty). 0 or -1. */
static int split_key(const char *key, enum pl_kind *k, char *ns, size_t nsz, char *name, size_t nmz)
{
	const char *a = strchr(key, '/'), *b = a ? strchr(a + 1, '/') : NULL;
	if (!a || !b || (size_t)(b - a - 1) >= nsz || strlen(b + 1) >= nmz)
		return -1;
	*k = PL_K_N;
	for (int i = 0; i < PL_K_N; i++)
		if (strlen(pl_kind_str((enum pl_kind)i)) == (size_t)(a - key) &&
		    !strncmp(pl_kind_str((enum pl_kind)i), key, (size_t)(a - key)))
			*k = (enum pl_kind)i;
	memcpy(ns, a + 1, (size_t)(b - a - 1));
	ns[b - a - 1] = '\0';
	snprintf(name, nmz, "%s", b + 1);
	return *k == PL_K_N ? -1 : 0;
}

/* Stores the stub of obj (a Secret or ConfigMap: metadata only). */
static void put_stub(enum pl_kind k, const json_t *obj)
{
	json_t *st = slim(k, obj, 1, 0);
	intern_slim(st);
	char err[256];
	if (pl_store_put(K.store, st, "", err, sizeof(err)) < 0)
		pl_warn("kubernetes: %s ignored: %s", pl_kind_str(k), err);
	json_decref(st);
}

/*
 * Recomputes the referenced set from every Gateway and BackendTLSPolicy
 * (few objects; only after one of them changed). Newly named stubs are
 * fetched; objects no longer named go back to stubs (their data is freed;
 * the compiler did not read them in the compile that dropped the name).
 */
static void refs_update(void)
{
	if (!K.refs_dirty)
		return;
	K.refs_dirty = 0;
	json_t *set = json_object();
	if (!set)
		PL_PANIC("out of memory");
	static const enum pl_kind from[] = { PL_K_GATEWAY, PL_K_BACKENDTLSPOLICY, PL_K_LISTENERSET };
	for (size_t f = 0; f < PL_ARRAY_LEN(from); f++) {
		const struct pl_obj *const *v;
		size_t n = pl_store_list(K.store, from[f], &v);
		for (size_t i = 0; i < n; i++)
			refs_walk(set, json_object_get(v[i]->json, "spec"), v[i]->ns, NULL, 0);
	}
	const char *key;
	json_t *val;
	char ns[256], name[256];
	enum pl_kind k;
	json_object_foreach(set, key, val) {
		if (json_object_get(K.refs, key) || split_key(key, &k, ns, sizeof(ns), name, sizeof(name)) != 0)
			continue;
		const struct pl_obj *o = pl_store_get(K.store, k, ns, name);
		if (is_stub(o))
			fetch_want(k, ns, name);
	}
	json_object_foreach(K.refs, key, val) {
		if (json_object_get(set, key) || split_key(key, &k, ns, sizeof(ns), name, sizeof(name)) != 0)
			continue;
		fetch_cancel(k, ns, name);
		const struct pl_obj *o = pl_store_get(K.store, k, ns, name);
		if (o && !is_stub(o))
			put_stub(k, o->json);
	}
	json_decref(K.refs);
	K.refs = set;
}

static int referenced(enum pl_kind k, const char *ns, const char *name)
{
	refs_update();
	char key[600];
	snprintf(key, sizeof(key), "%s/%s/%s", pl_kind_str(k), ns, name);
	return json_object_get(K.refs, key) != NULL;
}

/* key ("Kind/ns/name") is examined again by a pass in delay_ns at the latest. */
static void status_retry(const char *key, int64_t delay_ns)
{
	json_object_set_new(K.status_keys, key, json_true());
	int64_t at = pl_now_ns() + delay_ns;
	if (!K.status_due || K.status_at_ns > at) {
		K.status_due = 1;
		K.status_at_ns = at;
	}
}

/* A status-only change: no recompile, but check that status against what we want. */
static void status_touch(enum pl_kind k, const char *ns, const char *name)
{
	char key[600];
	snprintf(key, sizeof(key), "%s/%s/%s", pl_kind_str(k), ns, name);
	status_retry(key, (int64_t)K.cfg.debounce_ms * MS);
}

static void written_free(json_t *v);

/* The watch shows a newer version than the one we wrote against: the entry is done. */
static void written_prune(enum pl_kind k, const char *ns, const char *name, const char *rv)
{
	char key[600];
	snprintf(key, sizeof(key), "%s/%s/%s", pl_kind_str(k), ns, name);
	json_t *wv = json_object_get(K.written, key);
	if (!wv)
		return;
	struct wr *w = (struct wr *)(uintptr_t)json_integer_value(wv);
	if (rv && w && strcmp(w->rv, rv) == 0)
		return;
	int deferred = w && w->deferred;
	written_free(wv);
	json_object_del(K.written, key);
	if (deferred)
		status_retry(key, 0);
}

/*
 * A Secret or ConfigMap as the metadata watch shows it: unreferenced ones
 * are kept as stubs (names, so a Gateway naming one later fetches it);
 * referenced ones are fetched when the watch shows a resourceVersion other
 * than the one we hold. The stored object changes only when the fetch
 * returns.
 */
static void apply_meta(struct watch *w, json_t *obj, const char *ns, const char *name)
{
	if (!referenced(w->kind, ns, name)) {   /* (may change the store: look up afterwards) */
		put_stub(w->kind, obj);
		return;
	}
	const struct pl_obj *old = pl_store_get(K.store, w->kind, ns, name);
	const char *rv = sget(json_object_get(obj, "metadata"), "resourceVersion");
	const char *have = old ? sget(json_object_get(old->json, "metadata"), "resourceVersion") : NULL;
	if (old && !is_stub(old) && rv && have && !strcmp(rv, have))
		return;
	if (!old)
		put_stub(w->kind, obj);
	fetch_want(w->kind, ns, name);
}

/* 1 if this replica, not writing status, holds a pool address for Gateway ns/name other than its status shows. */
static int pool_moved(const char *ns, const char *name)
{
	char key[512];
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	const char *have = K.have_pool && !K.leader ? sget(K.assigned, key) : NULL;
	const struct pl_obj *o = have ? pl_store_get(K.store, PL_K_GATEWAY, ns, name) : NULL;
	if (!o)
		return 0;
	json_t *st = api_status(o);
	const char *shown = sget(json_array_get(json_object_get(st, "addresses"), 0), "value");
	int moved = shown && strcmp(shown, have) != 0;
	json_decref(st);
	return moved;
}

/*
 * Stored object dst takes the status text and metadata.resourceVersion of
 * slim object src, which differs from it in nothing else (same_but_status()).
 * Both are long-lived: the members move on the long-lived heap.
 */
static void status_in_place(json_t *dst, json_t *src)
{
	int was = pl_jalloc_longlived(1);
	json_t *st = json_object_get(src, "_pylonStatus");
	if (st)
		json_object_set(dst, "_pylonStatus", st);
	else
		json_object_del(dst, "_pylonStatus");
	json_t *rv = json_object_get(json_object_get(src, "metadata"), "resourceVersion");
	if (rv)
		json_object_set(json_object_get(dst, "metadata"), "resourceVersion", rv);
	pl_jalloc_longlived(was);
}

/* obj: a reference we own (consumed). */
static void apply(struct watch *w, json_t *obj, int deleted)
{
	json_t *md = json_object_get(obj, "metadata");
	const char *name = sget(md, "name"), *ns = sget(md, "namespace");
	if (!name) {
		json_decref(obj);
		return;
	}
	if (!w->r->namespaced)
		ns = "";
	else if (!ns)
		ns = "default";
	if (w->seen) {
		char key[512];
		snprintf(key, sizeof(key), "%s/%s", ns, name);
		json_object_set_new(w->seen, key, json_true());
	}
	/* a GatewayClass other than --gateway-class-name is invisible to the compiler */
	if (!deleted && w->kind == PL_K_GATEWAYCLASS && K.class_name && strcmp(name, K.class_name) != 0)
		deleted = 1;
	written_prune(w->kind, ns, name, deleted ? NULL : sget(md, "resourceVersion"));
	/* the compiler does not read load-balancer addresses: the next status pass must look at every Gateway */
	if (is_publish_service(w->kind, ns, name))
		K.status_full = 1;
	if (w->kind == PL_K_GATEWAY || w->kind == PL_K_BACKENDTLSPOLICY || w->kind == PL_K_LISTENERSET)
		K.refs_dirty = 1;
	if (deleted) {
		const struct pl_obj *old = pl_store_get(K.store, w->kind, ns, name);
		int stub = is_stub(old);
		if (w->r->meta_only)
			fetch_cancel(w->kind, ns, name);
		if (pl_store_delete(K.store, w->kind, ns, name) == 0 && !stub)
			mark_dirty();
		json_decref(obj);
		return;
	}
	/* list items come without kind/apiVersion; metadata-only ones say PartialObjectMetadata */
	char av[128];
	if (!sget(obj, "kind") || w->r->meta_only)
		json_object_set_new(obj, "kind", json_string(w->r->kind));
	if (!sget(obj, "apiVersion") || w->r->meta_only) {
		if (*w->r->group)
			snprintf(av, sizeof(av), "%s/%s", w->r->group, w->r->versions[w->ver]);
		else
			snprintf(av, sizeof(av), "%s", w->r->versions[w->ver]);
		json_object_set_new(obj, "apiVersion", json_string(av));
	}
	if (w->r->meta_only) {
		apply_meta(w, obj, ns, name);
		json_decref(obj);
		return;
	}
	json_t *sl = slim(w->kind, obj, 0, kind_has_status(w->kind) || is_publish_service(w->kind, ns, name));
	json_decref(obj);
	intern_slim(sl);
	const struct pl_obj *old = pl_store_get(K.store, w->kind, ns, name);
	int status_only = 0;
	if (old) {
		/* our pool address lives in our copy only: compare against the API's view */
		json_t *oj = old->json;
		if (json_object_get(oj, "_pylonPool") && !json_object_get(json_object_get(sl, "spec"), "addresses")) {
			json_t *cp = json_copy(oj), *spec = json_copy(json_object_get(oj, "spec"));
			if (!cp || !spec)
				PL_PANIC("out of memory");
			json_object_del(cp, "_pylonPool");
			json_object_del(spec, "addresses");
			json_object_set_new(cp, "spec", spec);
			status_only = same_but_status(cp, sl);
			json_decref(cp);
		} else {
			status_only = same_but_status(oj, sl);
		}
	}
	if (status_only) {
		/*
		 * The API server's echo of a status write, mostly. Put, it would
		 * count as a change: the next compile would build the route again
		 * (thousands of them after a burst of writes). Nothing the
		 * compiler reads changed, so the stored object takes the new
		 * status and resourceVersion in place (store.h).
		 */
		status_in_place(old->json, sl);
		if (!K.desired)
			mark_dirty();
		else {
			status_touch(w->kind, ns, name);
			if (w->kind == PL_K_GATEWAY && pool_moved(ns, name))
				mark_dirty();   /* pool_alloc() moves this replica to the leader's address */
		}
		json_decref(sl);
		return;
	}
	char err[512];
	int r = pl_store_put(K.store, sl, "", err, sizeof(err));
	if (r < 0)
		pl_warn("kubernetes: %s %s/%s ignored: %s", w->r->kind, ns, name, err);
	else if (r != PL_STORE_IGNORED)
		mark_dirty();
	json_decref(sl);
}

static void set_rv(struct watch *w, const json_t *obj)
{
	const char *rv = sget(json_object_get(obj, "metadata"), "resourceVersion");
	if (rv && strlen(rv) < sizeof(w->rv))
		snprintf(w->rv, sizeof(w->rv), "%s", rv);
}

/* One watch event line. 0, or the abort reason. */
static int handle_event(struct watch *w, const char *line, size_t n)
{
	json_error_t je;
	json_t *ev = json_loadb(line, n, JSON_REJECT_DUPLICATES, &je);
	if (!ev) {
		pl_warn("kubernetes: %s watch: bad event: %s", w->r->kind, je.text);
		return 2;
	}
	const char *type = sget(ev, "type");
	json_t *obj = json_object_get(ev, "object");
	int rc = 0;
	if (!type || !json_is_object(obj)) {
		rc = 2;
	} else if (strcmp(type, "ERROR") == 0) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		if (code == 410) {
			rc = 1;   /* logged by watch_done(), which knows whether 410s repeat */
		} else {
			pl_warn("kubernetes: %s watch: error %lld: %s", w->r->kind, (long long)code,
				sget(obj, "message") ? sget(obj, "message") : "?");
			rc = 2;
		}
	} else if (strcmp(type, "BOOKMARK") == 0) {
		set_rv(w, obj);
	} else if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED") || !strcmp(type, "DELETED")) {
		set_rv(w, obj);
		w->events++;
		pl_debug("kubernetes: %s %s %s/%s (resourceVersion %s)", type, w->r->kind,
			 sget(json_object_get(obj, "metadata"), "namespace") ? sget(json_object_get(obj, "metadata"), "namespace") : "",
			 sget(json_object_get(obj, "metadata"), "name") ? sget(json_object_get(obj, "metadata"), "name") : "?", w->rv);
		apply(w, json_incref(obj), type[0] == 'D');
	}
	json_decref(ev);
	return rc;
}

static size_t on_data(char *p, size_t sz, size_t nm, void *data)
{
	struct watch *w = data;
	size_t n = sz * nm;
	long code = 0;
	curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &code);
	size_t limit = (w->st == W_WATCH && code == 200) ? MAX_LINE : MAX_BODY;
	if (w->len + n + 1 > w->cap) {
		size_t nc = w->cap ? w->cap : 4096;   /* most events are small; 14 streams */
		while (nc < w->len + n + 1)
			nc *= 2;
		if (nc > limit + 1 || w->len + n > limit) {
			w->overflow = 1;
			return 0;
		}
		char *nb = realloc(w->buf, nc);
		if (!nb) {
			w->overflow = 1;
			return 0;
		}
		w->buf = nb;
		w->cap = nc;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
	w->buf[w->len] = '\0';
	if (w->st != W_WATCH || code != 200)
		return n;
	/* complete lines are events */
	size_t start = 0;
	for (size_t i = w->scan; i < w->len; i++) {
		if (w->buf[i] != '\n')
			continue;
		if (i > start) {
			int rc = handle_event(w, w->buf + start, i - start);
			if (rc) {
				w->abort_reason = rc;
				return 0;
			}
		}
		start = i + 1;
	}
	memmove(w->buf, w->buf + start, w->len - start);
	w->len -= start;
	w->buf[w->len] = '\0';
	w->scan = w->len;
	return n;
}

static void watch_start(struct watch *w)
{
	char path[2048], base[256];
	base_path(w->r, w->ver, base, sizeof(base));
	if (w->need_list || !w->rv[0]) {
		w->st = W_LIST;
		if (!w->cont) {
			json_decref(w->seen);
			w->seen = json_object();
			if (!w->seen)
				PL_PANIC("out of memory");
		}
		char *esc = w->cont ? curl_easy_escape(w->h, w->cont, 0) : NULL;
		snprintf(path, sizeof(path), "%s/%s?limit=%d%s%s", base, w->r->plural, LIST_PAGE, esc ? "&continue=" : "",
			 esc ? esc : "");
		curl_free(esc);
	} else {
		w->st = W_WATCH;
		snprintf(path, sizeof(path), "%s/%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d",
			 base, w->r->plural, w->rv, WATCH_TIMEOUT_S - 60 + (int)(random() % 120));
	}
	curl_easy_reset(w->h);
	struct curl_slist *accept = NULL;
	if (w->r->meta_only) {
		/* names and resourceVersions only (what a Secret holds is read when a Gateway names it) */
		accept = curl_slist_append(NULL, w->st == W_LIST
			? "Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
			: "Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json");
		if (!accept) {
			w->st = W_WAIT;
			w->due_ns = pl_now_ns() + backoff_ns(++w->fails);
			return;
		}
	}
	w->hdrs = pl_kconf_setup(&K.kc, w->h, path, accept);
	if (w->cap > 65536) {   /* the last stream's largest event: do not keep it */
		free(w->buf);
		w->buf = NULL;
		w->cap = 0;
	}
	if (!w->hdrs) {
		w->st = W_WAIT;
		w->due_ns = pl_now_ns() + backoff_ns(++w->fails);
		return;
	}
	w->len = w->scan = 0;
	w->overflow = w->abort_reason = 0;
	curl_easy_setopt(w->h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(w->h, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(w->h, CURLOPT_PRIVATE, w);
	curl_easy_setopt(w->h, CURLOPT_TIMEOUT_MS, w->st == W_LIST ? 60000L : (long)(WATCH_TIMEOUT_S + 90) * 1000L);
	if (w->st == W_WATCH) {
		/* less than 1 byte/s for WATCH_SILENT_S: the stream stalled (bookmarks would have come) */
		curl_easy_setopt(w->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(w->h, CURLOPT_LOW_SPEED_TIME, (long)WATCH_SILENT_S);
	}
	w->start_ns = pl_now_ns();
	CURLMcode mc = curl_multi_add_handle(K.multi, w->h);
	if (mc != CURLM_OK) {
		pl_err("kubernetes: curl_multi_add_handle: %s", curl_multi_strerror(mc));
		curl_slist_free_all(w->hdrs);
		w->hdrs = NULL;
		w->st = W_WAIT;
		w->due_ns = pl_now_ns() + backoff_ns(++w->fails);
	}
}

static void watch_retry(struct watch *w, const char *why)
{
	w->fails++;
	int64_t d = backoff_ns(w->fails);
	if (w->fails == 1)
		pl_warn("kubernetes: %s %s: %s; retrying in %lld ms", w->r->kind, w->need_list ? "list" : "watch", why,
			(long long)(d / MS));
	else
		pl_debug("kubernetes: %s: %s (%u failures); retrying in %lld ms", w->r->kind, why, w->fails,
			 (long long)(d / MS));
	w->st = W_WAIT;
	w->due_ns = pl_now_ns() + d;
}

static void list_page_done(struct watch *w)
{
	json_error_t je;
	/* as strict as watch events: a duplicate key is hostile input, not "last one wins" */
	json_t *list = json_loadb(w->buf, w->len, JSON_REJECT_DUPLICATES, &je);
	free(w->buf);   /* a page is up to MAX_BODY: not kept between pages */
	w->buf = NULL;
	w->len = w->cap = 0;
	if (!json_is_object(list)) {
		char why[256];
		snprintf(why, sizeof(why), "list: bad JSON: %s", list ? "not an object" : je.text);
		json_decref(list);
		free(w->cont);
		w->cont = NULL;
		watch_retry(w, why);
		return;
	}
	json_t *items = json_object_get(list, "items"), *it;
	size_t i;
	json_array_foreach(items, i, it) {
		apply(w, json_incref(it), 0);
		json_array_set_new(items, i, json_null());   /* what the store did not keep goes now */
	}
	json_t *md = json_object_get(list, "metadata");
	const char *cont = sget(md, "continue");
	free(w->cont);
	w->cont = cont && *cont ? pl_xstrdup(cont) : NULL;
	if (!w->cont && !sget(md, "resourceVersion")) {
		/* nothing to watch from: listing again at once would spin */
		json_decref(list);
		json_decref(w->seen);
		w->seen = NULL;
		watch_retry(w, "list: no resourceVersion");
		return;
	}
	if (!w->cont) {
		set_rv(w, list);
		/* objects the list no longer has were deleted while we were not watching */
		const struct pl_obj *const *v;
		size_t n = pl_store_list(K.store, w->kind, &v);
		char **gone = NULL;
		size_t ng = 0;
		for (size_t k = 0; k < n; k++) {
			char key[512];
			snprintf(key, sizeof(key), "%s/%s", v[k]->ns, v[k]->name);
			if (!json_object_get(w->seen, key)) {
				gone = pl_xrealloc(gone, (ng + 1) * sizeof(*gone));
				gone[ng++] = pl_xstrdup(key);
			}
		}
		for (size_t k = 0; k < ng; k++) {
			char *slash = strchr(gone[k], '/');
			*slash = '\0';
			if (pl_store_delete(K.store, w->kind, gone[k], slash + 1) == 0)
				mark_dirty();
			free(gone[k]);
		}
		free(gone);
		json_decref(w->seen);
		w->seen = NULL;
		if (!w->synced)
			pl_info("kubernetes: %s: listed %zu (resourceVersion %s)", w->r->kind, pl_store_list(K.store, w->kind, &v), w->rv);
		w->synced = 1;
		w->need_list = 0;
		mark_dirty();
	}
	json_decref(list);
	w->fails = 0;
	w->st = W_WAIT;
	w->due_ns = 0;   /* next page, or the watch, at once */
}

static void watch_done(struct watch *w, CURLcode res)
{
	long code = 0;
	curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(K.multi, w->h);
	curl_slist_free_all(w->hdrs);
	w->hdrs = NULL;
	enum wstate was = w->st;
	w->st = W_WAIT;
	char why[256];

	if (w->abort_reason == 1 || code == 410) {
		/*
		 * resourceVersion too old: list again, at once the first time. 410s
		 * that keep coming (a broken server or proxy) back off like errors.
		 */
		int64_t now = pl_now_ns();
		if (w->gones && now - w->gone_ns < GONE_REPEAT_NS)
			w->gones++;
		else
			w->gones = 1;
		w->gone_ns = now;
		w->due_ns = w->gones > 1 ? now + backoff_ns(w->gones - 1) : 0;
		if (w->gones == 1)
			pl_info("kubernetes: %s %s: resourceVersion %s is gone; listing again", w->r->kind,
				was == W_LIST ? "list" : "watch", w->rv[0] ? w->rv : "(continue token)");
		else if (w->gones == 2)
			pl_warn("kubernetes: %s %s: resourceVersion %s is gone again; listing again in %lld ms",
				w->r->kind, was == W_LIST ? "list" : "watch", w->rv[0] ? w->rv : "(continue token)",
				(long long)((w->due_ns - now) / MS));
		else
			pl_debug("kubernetes: %s: 410 Gone (%u in a row); listing again in %lld ms", w->r->kind,
				 w->gones, (long long)((w->due_ns - now) / MS));
		free(w->cont);
		w->cont = NULL;
		w->need_list = 1;
		w->rv[0] = '\0';
		return;
	}
	if (code == 404 && was == W_LIST && !w->synced) {
		if (w->r->versions[w->ver + 1] && w->ver + 1 < PL_ARRAY_LEN(w->r->versions)) {
			w->ver++;
			w->due_ns = 0;
			return;
		}
		w->ver = 0;
		if (!w->absent_logged)
			pl_info("kubernetes: %s: no such resource (CRD not installed); checking again every 30 s", w->r->kind);
		w->absent_logged = 1;
		w->st = W_ABSENT;
		w->due_ns = pl_now_ns() + ABSENT_RECHECK_NS;
		return;
	}
	if (res == CURLE_OK && code == 200) {
		if (was == W_LIST) {
			if (w->absent_logged) {
				pl_info("kubernetes: %s: resource appeared", w->r->kind);
				w->absent_logged = 0;
			}
			list_page_done(w);
			return;
		}
		/* the watch ended normally (timeoutSeconds): resume from the last resourceVersion */
		if (pl_now_ns() - w->start_ns < WATCH_EARLY_NS) {
			/* a server (or proxy) that ends every watch at once must not make us spin */
			watch_retry(w, "watch ended at once");
			return;
		}
		if (w->fails)
			pl_info("kubernetes: %s watch: reconnected", w->r->kind);
		w->fails = w->gones = w->stalls = 0;
		w->due_ns = 0;
		return;
	}
	if (was == W_WATCH && res == CURLE_OPERATION_TIMEDOUT && pl_now_ns() - w->start_ns >= WATCH_SILENT_S * 1000 * MS) {
		/*
		 * Silent for WATCH_SILENT_S (or past CURLOPT_TIMEOUT): resume from the
		 * last resourceVersion at once; that bound already keeps this from
		 * spinning, and a dead server shows up as errors on the new request.
		 */
		if (!w->stalls++ && pl_now_ns() - w->start_ns >= (int64_t)(WATCH_TIMEOUT_S + 90) * 1000 * MS)
			pl_warn("kubernetes: %s watch: did not end by its timeoutSeconds; resuming from resourceVersion %s",
				w->r->kind, w->rv);
		else if (w->stalls == 1)
			pl_warn("kubernetes: %s watch: no data for %d s; resuming from resourceVersion %s", w->r->kind,
				WATCH_SILENT_S, w->rv);
		else
			pl_debug("kubernetes: %s watch: silent again (%u); resuming from resourceVersion %s", w->r->kind,
				 w->stalls, w->rv);
		w->due_ns = 0;
		return;
	}
	if (w->abort_reason == 2 || w->overflow)
		snprintf(why, sizeof(why), "%s", w->overflow ? "response too large" : "bad event");
	else if (res != CURLE_OK)
		snprintf(why, sizeof(why), "%s", curl_easy_strerror(res));
	else {
		json_t *st = json_loadb(w->buf, w->len, 0, NULL);
		snprintf(why, sizeof(why), "HTTP %ld%s%.200s", code, sget(st, "message") ? ": " : "",
			 sget(st, "message") ? sget(st, "message") : "");
		json_decref(st);
	}
	if (was == W_WATCH && w->fails == 0 && res == CURLE_OK) {
		/* a clean end with an odd status: resume at once, once */
		w->fails = 1;
	}
	if (was == W_LIST) {
		free(w->cont);
		w->cont = NULL;
	}
	watch_retry(w, why);
	if (was == W_WATCH && w->fails >= 2)
		pl_debug("kubernetes: %s watch: will resume from resourceVersion %s", w->r->kind, w->rv);
}

/* ---------------------------------------------------------------- synchronous requests */

static size_t on_sync_data(char *p, size_t sz, size_t nm, void *data)
{
	struct sbuf *b = (struct sbuf *)data;
	size_t n = sz * nm;
	if (b->n + n + 1 > MAX_BODY)
		return 0;
	if (b->n + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 8192;
		while (nc < b->n + n + 1)
			nc *= 2;
		char *np = realloc(b->p, nc);
		if (!np)
			return 0;
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

/* method path [body as JSON of content type ct]. Returns the HTTP status (0: transport error); *resp when asked. */
static long request(const char *method, const char *path, const json_t *body, const char *ct, json_t **resp)
{
	if (resp)
		*resp = NULL;
	if (!K.sync) {
		K.sync = curl_easy_init();
		if (!K.sync)
			return 0;
	}
	curl_easy_reset(K.sync);
	struct curl_slist *extra = NULL;
	if (body) {
		char h[128];
		snprintf(h, sizeof(h), "Content-Type: %s", ct);
		extra = curl_slist_append(NULL, h);
		if (!extra)
			return 0;
	}
	struct curl_slist *hl = pl_kconf_setup(&K.kc, K.sync, path, extra);
	if (!hl)
		return 0;
	char *data = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (body && !data) {
		curl_slist_free_all(hl);
		return 0;
	}
	struct sbuf b = { 0 };
	curl_easy_setopt(K.sync, CURLOPT_CUSTOMREQUEST, method);
	if (data)
		curl_easy_setopt(K.sync, CURLOPT_POSTFIELDS, data);
	curl_easy_setopt(K.sync, CURLOPT_WRITEFUNCTION, on_sync_data);
	curl_easy_setopt(K.sync, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(K.sync, CURLOPT_TIMEOUT_MS, SYNC_TIMEOUT_MS);
	CURLcode res = curl_easy_perform(K.sync);
	long code = 0;
	if (res == CURLE_OK)
		curl_easy_getinfo(K.sync, CURLINFO_RESPONSE_CODE, &code);
	else
		pl_debug("kubernetes: %s %s: %s", method, path, curl_easy_strerror(res));
	if (resp && b.p)
		*resp = json_loadb(b.p, b.n, 0, NULL);
	if (code >= 400 && code != 404 && code != 409)
		pl_debug("kubernetes: %s %s: HTTP %ld %.300s", method, path, code, b.p ? b.p : "");
	free(b.p);
	free(data);
	curl_slist_free_all(hl);
	return code;
}

/* ---------------------------------------------------------------- asynchronous requests */

static void areq_free(struct areq *q)
{
	if (q->h)
		curl_easy_cleanup(q->h);
	curl_slist_free_all(q->hdrs);
	free(q->body);
	free(q->resp.p);
	free(q);
}

/*
 * Starts method path [JSON body] on the multi handle; done(q, code) runs when
 * it completes, then q is freed. NULL when it could not start (done is not
 * called).
 */
static struct areq *areq_start(const char *method, const char *path, const json_t *body, areq_done_fn *done, void *ctx)
{
	struct areq *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->tag = TAG_AREQ;
	q->done = done;
	q->ctx = ctx;
	q->h = curl_easy_init();
	struct curl_slist *ct = body ? curl_slist_append(NULL, "Content-Type: application/json") : NULL;
	if (!q->h || (body && !ct)) {
		curl_slist_free_all(ct);
		areq_free(q);
		return NULL;
	}
	q->hdrs = pl_kconf_setup(&K.kc, q->h, path, ct);
	if (!q->hdrs || (body && !(q->body = json_dumps(body, JSON_COMPACT)))) {
		areq_free(q);
		return NULL;
	}
	if (q->body)
		curl_easy_setopt(q->h, CURLOPT_POSTFIELDS, q->body);
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(q->h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(q->h, CURLOPT_WRITEFUNCTION, on_sync_data);
	curl_easy_setopt(q->h, CURLOPT_WRITEDATA, &q->resp);
	curl_easy_setopt(q->h, CURLOPT_PRIVATE, q);
	curl_easy_setopt(q->h, CURLOPT_TIMEOUT_MS, SYNC_TIMEOUT_MS);
	if (curl_multi_add_handle(K.multi, q->h) != CURLM_OK) {
		areq_free(q);
		return NULL;
	}
	q->next = K.areqs;
	K.areqs = q;
	return q;
}

static void areq_unlink(struct areq *q)
{
	for (struct areq **pp = &K.areqs; *pp; pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
			return;
		}
	}
}

static void areq_finish(struct areq *q, CURLcode res)
{
	long code = 0;
	if (res == CURLE_OK)
		curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &code);
	else
		pl_debug("kubernetes: request: %s", curl_easy_strerror(res));
	curl_multi_remove_handle(K.multi, q->h);
	areq_unlink(q);
	q->done(q, code);
	areq_free(q);
}

/* Stops q without calling its done. */
static void areq_cancel(struct areq *q)
{
	curl_multi_remove_handle(K.multi, q->h);
	areq_unlink(q);
	areq_free(q);
}

/* ---------------------------------------------------------------- fetching referenced objects */

static struct fetch *fetch_find(enum pl_kind kind, const char *ns, const char *name)
{
	for (struct fetch *f = K.fetches; f; f = f->next)
		if (f->kind == kind && !strcmp(f->ns, ns) && !strcmp(f->name, name))
			return f;
	return NULL;
}

static void fetch_unlink(struct fetch *f)
{
	for (struct fetch **pp = &K.fetches; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			return;
		}
	}
}

static void fetch_free(struct fetch *f)
{
	if (f->q)
		areq_cancel(f->q);
	free(f->ns);
	free(f->name);
	free(f);
}

/* The object is (still) needed: read it now, or again once the read in flight ends. */
static void fetch_want(enum pl_kind kind, const char *ns, const char *name)
{
	struct fetch *f = fetch_find(kind, ns, name);
	if (f) {
		if (f->q)
			f->again = 1;
		return;
	}
	f = pl_xcalloc(1, sizeof(*f));
	f->kind = kind;
	f->ns = pl_xstrdup(ns);
	f->name = pl_xstrdup(name);
	f->since_ns = pl_now_ns();
	f->next = K.fetches;
	K.fetches = f;
	curl_multi_wakeup(K.multi);
}

static void fetch_cancel(enum pl_kind kind, const char *ns, const char *name)
{
	struct fetch *f = fetch_find(kind, ns, name);
	if (f) {
		fetch_unlink(f);
		fetch_free(f);
	}
}

/* 1 while a compile should wait for fetches (each one holds it FETCH_HOLD_NS at most). */
static int fetch_holding(int64_t now, int64_t *until)
{
	int hold = 0;
	for (struct fetch *f = K.fetches; f; f = f->next) {
		if (now - f->since_ns < FETCH_HOLD_NS) {
			hold = 1;
			if (until && f->since_ns + FETCH_HOLD_NS < *until)
				*until = f->since_ns + FETCH_HOLD_NS;
		}
	}
	return hold;
}

static void fetch_got(struct areq *q, long code)
{
	struct fetch *f = q->ctx;
	f->q = NULL;
	fetch_unlink(f);   /* ours while we decide: the store changes below may recompute the references */
	const struct watch *w = watch_of_kind(f->kind);
	if (code == 200 && w) {
		json_t *obj = json_loadb(q->resp.p, q->resp.n, 0, NULL);
		const char *name = sget(json_object_get(obj, "metadata"), "name");
		const char *ns = sget(json_object_get(obj, "metadata"), "namespace");
		if (json_is_object(obj) && name && ns && !strcmp(name, f->name) && !strcmp(ns, f->ns) &&
		    referenced(f->kind, f->ns, f->name)) {
			json_t *sl = slim(f->kind, obj, 0, 0);
			intern_slim(sl);
			char err[512];
			if (pl_store_put(K.store, sl, "", err, sizeof(err)) < 0)
				pl_warn("kubernetes: %s %s/%s ignored: %s", w->r->kind, f->ns, f->name, err);
			else
				mark_dirty();
			json_decref(sl);
			pl_debug("kubernetes: read %s %s/%s", w->r->kind, f->ns, f->name);
		}
		json_decref(obj);
		if (!f->again || !referenced(f->kind, f->ns, f->name)) {
			fetch_free(f);
			return;
		}
		f->again = 0;
		f->due_ns = 0;
	} else if (code == 404 || !w) {
		/* gone: the watch will say so too */
		const struct pl_obj *o = pl_store_get(K.store, f->kind, f->ns, f->name);
		if (o && pl_store_delete(K.store, f->kind, f->ns, f->name) == 0)
			mark_dirty();
		fetch_free(f);
		return;
	} else {
		f->fails++;
		int64_t d = backoff_ns(f->fails);
		if (f->fails == 1)
			pl_warn("kubernetes: %s %s/%s: cannot read it (HTTP %ld); retrying in %lld ms", w->r->kind, f->ns,
				f->name, code, (long long)(d / MS));
		f->due_ns = pl_now_ns() + d;
		f->again = 0;
	}
	f->next = K.fetches;
	K.fetches = f;
}

/* Starts the fetches that are due; returns when the next one is (INT64_MAX: none waiting). */
static int64_t fetch_pump(void)
{
	int64_t now = pl_now_ns(), next = INT64_MAX;
	char path[1024], base[256];
	for (struct fetch *f = K.fetches; f; f = f->next) {
		if (f->q)
			continue;
		if (f->due_ns > now) {
			if (f->due_ns < next)
				next = f->due_ns;
			continue;
		}
		const struct watch *w = watch_of_kind(f->kind);
		if (!w)
			continue;
		base_path(w->r, w->ver, base, sizeof(base));
		char *en = curl_easy_escape(NULL, f->ns, 0), *em = curl_easy_escape(NULL, f->name, 0);
		if (en && em)
			snprintf(path, sizeof(path), "%s/namespaces/%s/%s/%s", base, en, w->r->plural, em);
		curl_free(en);
		curl_free(em);
		f->q = en && em ? areq_start("GET", path, NULL, fetch_got, f) : NULL;
		if (!f->q) {
			f->due_ns = now + backoff_ns(++f->fails);
			if (f->due_ns < next)
				next = f->due_ns;
		}
	}
	return next;
}

/* ---------------------------------------------------------------- leader election */

static void lease_path(char *out, size_t n, int item)
{
	if (item)
		snprintf(out, n, "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", K.lease_ns, K.lease_name);
	else
		snprintf(out, n, "/apis/coordination.k8s.io/v1/namespaces/%s/leases", K.lease_ns);
}

static void written_clear(void);

static void become(int leader, const char *why)
{
	if (leader == K.leader)
		return;
	K.leader = leader;
	if (leader) {
		pl_info("kubernetes: leader (Lease %s/%s): writing status", K.lease_ns, K.lease_name);
		/* forget what we wrote before: reconcile everything against the API */
		written_clear();
		K.status_full = 1;
		K.status_due = 1;
		K.status_at_ns = 0;
	} else {
		pl_info("kubernetes: not leader (%s): status is written by %s", why, "the Lease holder");
	}
}

/* The next Lease round: every 2 s while we hold it (renewal), as often while we wait for it. */
static void lease_next(void)
{
	K.lease_due_ns = K.lease_tick_ns + (K.leader ? LEASE_RENEW_NS : LEASE_RETRY_NS);
}

/* The Lease could not be read or renewed: the holder steps down before it could expire. */
static void lease_failed(long code)
{
	if ((code == 401 || code == 403) && !K.lease_denied_logged) {
		pl_err("kubernetes: Lease %s/%s: HTTP %ld; status is written only by the Lease holder: grant get/create/"
		       "update on coordination.k8s.io leases, or run one replica with --no-leader-election",
		       K.lease_ns, K.lease_name, code);
		K.lease_denied_logged = 1;
	}
	if (K.leader && pl_now_ns() - K.lease_ok_ns > (int64_t)(LEASE_DURATION_S - 5) * 1000 * MS)
		become(0, "cannot renew the Lease");
}

static void lease_written(struct areq *q, long code)
{
	(void)q;
	K.lease_req = NULL;
	if (code == 200 || code == 201) {
		K.lease_ok_ns = K.lease_tick_ns;
		become(1, "");
	} else if (code == 409) {
		become(0, "the Lease changed hands");
	} else {
		lease_failed(code);
	}
	lease_next();
}

static void lease_got(struct areq *q, long code)
{
	K.lease_req = NULL;
	int64_t now = pl_now_ns();
	char path[512], t[40];
	now_rfc3339(t, sizeof(t), 1);
	if (code == 404) {
		json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:i, s:s, s:s, s:i}}", "apiVersion",
				      "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", K.lease_name,
				      "namespace", K.lease_ns, "spec", "holderIdentity", K.identity, "leaseDurationSeconds",
				      LEASE_DURATION_S, "acquireTime", t, "renewTime", t, "leaseTransitions", 0);
		lease_path(path, sizeof(path), 0);
		K.lease_req = o ? areq_start("POST", path, o, lease_written, NULL) : NULL;
		json_decref(o);
		if (!K.lease_req)
			lease_next();
		return;
	}
	json_t *cur = code == 200 ? json_loadb(q->resp.p, q->resp.n, 0, NULL) : NULL;
	if (!json_is_object(cur)) {
		json_decref(cur);
		lease_failed(code);
		lease_next();
		return;
	}
	json_t *spec = json_object_get(cur, "spec");
	if (!json_is_object(spec)) {
		spec = json_object();
		json_object_set_new(cur, "spec", spec);
	}
	const char *holder = sget(spec, "holderIdentity");
	const char *rv = sget(json_object_get(cur, "metadata"), "resourceVersion");
	long long dur = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
	if (dur <= 0)
		dur = LEASE_DURATION_S;
	else if (dur > INT32_MAX)   /* dur * 1000 * MS below must not overflow */
		dur = INT32_MAX;
	/* expiry by our own clock: when did we last see the record change? (client-go does the same) */
	if (!rv || strcmp(rv, K.lease_seen_rv) != 0) {
		snprintf(K.lease_seen_rv, sizeof(K.lease_seen_rv), "%s", rv ? rv : "");
		K.lease_seen_ns = now;
	}
	int mine = holder && strcmp(holder, K.identity) == 0;
	int free_ = !holder || !*holder || now - K.lease_seen_ns > dur * 1000 * MS;
	if (mine || free_) {
		if (!mine) {
			json_object_set_new(spec, "acquireTime", json_string(t));
			json_object_set_new(spec, "leaseTransitions",
					    json_integer(json_integer_value(json_object_get(spec, "leaseTransitions")) + 1));
		}
		json_object_set_new(spec, "holderIdentity", json_string(K.identity));
		json_object_set_new(spec, "renewTime", json_string(t));
		json_object_set_new(spec, "leaseDurationSeconds", json_integer(LEASE_DURATION_S));
		lease_path(path, sizeof(path), 1);
		K.lease_req = areq_start("PUT", path, cur, lease_written, NULL);
		if (!K.lease_req) {
			lease_failed(0);
			lease_next();
		}
	} else {
		become(0, "another replica holds the Lease");
		lease_next();
	}
	json_decref(cur);
}

/*
 * One Lease round: GET, then PUT (renew or take over) or POST (create), on
 * the multi handle like everything else, so a slow API server delays the
 * Lease and nothing else. One round at a time; each request times out after
 * 5 s, and the holder steps down when it could not renew for 10 s.
 */
static void lease_tick(void)
{
	if (K.lease_req)
		return;
	K.lease_tick_ns = pl_now_ns();
	K.lease_due_ns = INT64_MAX;   /* set again when the round ends */
	char path[512];
	lease_path(path, sizeof(path), 1);
	K.lease_req = areq_start("GET", path, NULL, lease_got, NULL);
	if (!K.lease_req) {
		lease_failed(0);
		lease_next();
	}
}

static void lease_release(void)
{
	if (!K.leader || K.cfg.no_leader_election)
		return;
	char path[512];
	json_t *cur = NULL;
	lease_path(path, sizeof(path), 1);
	if (request("GET", path, NULL, NULL, &cur) == 200 && json_is_object(cur)) {
		json_t *spec = json_object_get(cur, "spec");
		if (json_is_object(spec) && sget(spec, "holderIdentity") && !strcmp(sget(spec, "holderIdentity"), K.identity)) {
			/* an empty holder lets the next replica (or our restart) take over at once */
			json_object_set_new(spec, "holderIdentity", json_string(""));
			json_object_set_new(spec, "leaseDurationSeconds", json_integer(1));
			if (request("PUT", path, cur, "application/json", NULL) == 200)
				pl_info("kubernetes: Lease %s/%s released", K.lease_ns, K.lease_name);
		}
	}
	json_decref(cur);
	K.leader = 0;
}

/* ---------------------------------------------------------------- status */

static void obj_path(const struct res *r, unsigned ver, const char *ns, const char *name, char *out, size_t n)
{
	char base[256];
	base_path(r, ver, base, sizeof(base));
	if (r->namespaced)
		snprintf(out, n, "%s/namespaces/%s/%s/%s/status", base, ns, r->plural, name);
	else
		snprintf(out, n, "%s/%s/%s/status", base, r->plural, name);
}

/* lastTransitionTime stays what it was while a condition's status does not change. */
static void keep_ltt(json_t *want, const json_t *have)
{
	size_t i, j;
	json_t *d, *c;
	json_array_foreach(want, i, d) {
		int kept = 0;
		json_array_foreach((json_t *)have, j, c) {
			if (json_equal(json_object_get(d, "type"), json_object_get(c, "type")) &&
			    json_equal(json_object_get(d, "status"), json_object_get(c, "status")) &&
			    json_is_string(json_object_get(c, "lastTransitionTime"))) {
				json_object_set(d, "lastTransitionTime", json_object_get(c, "lastTransitionTime"));
				kept = 1;
				break;
			}
		}
		/* the compiler runs with a fixed time (so its statuses compare equal across compiles) */
		if (!kept)
			json_object_set_new(d, "lastTransitionTime", json_string(K.now_str));
	}
}

static json_t *find_named(const json_t *arr, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach((json_t *)arr, i, e)
		if (name && sget(e, "name") && strcmp(sget(e, "name"), name) == 0)
			return e;
	return NULL;
}

static void set_cond(json_t *conds, const char *type, const char *status, const char *reason, const char *msg)
{
	size_t i;
	json_t *c;
	json_array_foreach(conds, i, c) {
		if (sget(c, "type") && strcmp(sget(c, "type"), type) == 0) {
			json_object_set_new(c, "status", json_string(status));
			json_object_set_new(c, "reason", json_string(reason));
			json_object_set_new(c, "message", json_string(msg));
		}
	}
}

static int cond_true(const json_t *conds, const char *type)
{
	size_t i;
	json_t *c;
	json_array_foreach((json_t *)conds, i, c)
		if (sget(c, "type") && !strcmp(sget(c, "type"), type))
			return sget(c, "status") && !strcmp(sget(c, "status"), "True");
	return 0;
}

static int table_has_bind(const struct pl_table *t, const char *addr, long long port)
{
	for (uint32_t i = 0; t && i < t->n_binds; i++)
		if (t->binds[i].port == port && strcmp(t->binds[i].address, addr) == 0)
			return 1;
	return 0;
}

/*
 * Programmed means bound: a listener the table serves stays Programmed=False
 * (Pending) until the proxy reports its socket open. Returns 1 when some
 * listener is still pending (and the write should wait a little). unusable
 * is the reason when no listener could be bound (the kind's own word for it).
 */
static int listener_binds(json_t *st, const char *addr, const json_t *specls, const struct pl_table *t,
			  const char *unusable)
{
	json_t *ls = json_object_get(st, "listeners"), *l;
	size_t i;
	int pending = 0, programmed = 0, failed = 0;
	char msg[256];
	json_array_foreach(ls, i, l) {
		json_t *conds = json_object_get(l, "conditions");
		if (!cond_true(conds, "Programmed"))
			continue;
		json_t *sl = find_named(specls, sget(l, "name"));
		long long port = json_integer_value(json_object_get(sl, "port"));
		if (!addr || !table_has_bind(t, addr, port)) {
			programmed++;
			continue;
		}
		int err = 0;
		enum pl_bind_state bs = pl_bindreg_get(addr, (uint16_t)port, &err);
		if (bs == PL_BIND_OK) {
			programmed++;
		} else if (bs == PL_BIND_FAILED) {
			failed++;
			snprintf(msg, sizeof(msg), "cannot listen on %s:%lld: %s", addr, port, strerror(err));
			set_cond(conds, "Programmed", "False", "Invalid", msg);
		} else {
			pending++;
			snprintf(msg, sizeof(msg), "waiting for the proxy to listen on %s:%lld", addr, port);
			set_cond(conds, "Programmed", "False", "Pending", msg);
		}
	}
	json_t *gc = json_object_get(st, "conditions");
	if (cond_true(gc, "Programmed") && !programmed) {
		if (pending)
			set_cond(gc, "Programmed", "False", "Pending", "waiting for the proxy to listen");
		else if (failed)
			set_cond(gc, "Programmed", "False", unusable, "no listener could be bound");
	}
	return pending > 0;
}

static int gateway_binds(json_t *st, const struct pl_obj *o, const struct pl_table *t)
{
	return listener_binds(st, sget(json_array_get(json_object_get(st, "addresses"), 0), "value"),
			      json_object_get(json_object_get(o->json, "spec"), "listeners"), t, "AddressNotUsable");
}

/*
 * The same for a ListenerSet: its listeners bind on its parent Gateway's
 * address (as the Gateway's wanted status gives it).
 */
static int listenerset_binds(json_t *st, const struct pl_obj *o, const struct pl_table *t)
{
	const json_t *spec = json_object_get(o->json, "spec"), *pr = json_object_get(spec, "parentRef");
	const char *gns = sget(pr, "namespace"), *gname = sget(pr, "name");
	char key[600];
	snprintf(key, sizeof(key), "Gateway/%s/%s", gns ? gns : o->ns, gname ? gname : "");
	const json_t *gst = json_object_get(K.desired, key);
	return listener_binds(st, sget(json_array_get(json_object_get(gst, "addresses"), 0), "value"),
			      json_object_get(spec, "listeners"), t, "Invalid");
}

/* Addresses from the LoadBalancer Service fronting pylon (--publish-service). */
static void published_addresses(json_t *st, const struct pl_obj *o)
{
	if (!K.publish_name || K.have_pool)
		return;
	if (json_array_size(json_object_get(json_object_get(o->json, "spec"), "addresses")) > 0)
		return;
	const struct pl_obj *svc = pl_store_get(K.store, PL_K_SERVICE, K.publish_ns, K.publish_name);
	json_t *sst = svc ? api_status(svc) : NULL;
	json_t *ing = json_object_get(json_object_get(sst, "loadBalancer"), "ingress");
	json_t *addrs = json_array(), *e;
	size_t i;
	json_array_foreach(ing, i, e) {
		if (sget(e, "ip"))
			json_array_append_new(addrs, json_pack("{s:s, s:s}", "type", "IPAddress", "value", sget(e, "ip")));
		else if (sget(e, "hostname"))
			json_array_append_new(addrs, json_pack("{s:s, s:s}", "type", "Hostname", "value", sget(e, "hostname")));
	}
	json_decref(sst);
	json_object_set_new(st, "addresses", addrs);
	if (json_array_size(addrs) == 0)
		set_cond(json_object_get(st, "conditions"), "Programmed", "False", "AddressNotAssigned",
			 "the published Service has no load-balancer address yet");
}

static json_t *features_json(void)
{
	json_t *a = json_array();
	for (size_t i = 0; i < PL_ARRAY_LEN(default_features); i++)
		json_array_append_new(a, json_pack("{s:s}", "name", default_features[i]));
	return a;
}

static int ours(const json_t *parent)
{
	const char *c = sget(parent, "controllerName");
	return c && strcmp(c, K.controller_name) == 0;
}

/* Route status: other controllers' entries as they are, then ours. New reference. */
static json_t *merge_parents(const json_t *cur_parents, const json_t *want_parents)
{
	json_t *out = json_array(), *e;
	size_t i, j;
	json_array_foreach((json_t *)cur_parents, i, e)
		if (!ours(e))
			json_array_append(out, e);
	json_array_foreach((json_t *)want_parents, i, e) {
		json_t *c = json_deep_copy(e), *old, *match = NULL;
		json_array_foreach((json_t *)cur_parents, j, old) {
			if (ours(old) && json_equal(json_object_get(old, "parentRef"), json_object_get(e, "parentRef"))) {
				match = old;
				break;
			}
		}
		keep_ltt(json_object_get(c, "conditions"), json_object_get(match, "conditions"));
		json_array_append_new(out, c);
	}
	return out;
}

static void written_free(json_t *v)
{
	free((struct wr *)(uintptr_t)json_integer_value(v));
}

static void written_set(const char *key, const char *rv, uint64_t hash)
{
	json_t *old = json_object_get(K.written, key);
	if (old)
		written_free(old);
	struct wr *w = pl_xcalloc(1, sizeof(*w));
	snprintf(w->rv, sizeof(w->rv), "%s", rv ? rv : "");
	w->hash = hash;
	json_object_set_new(K.written, key, json_integer((json_int_t)(uintptr_t)w));
}


static void written_clear(void)
{
	const char *k;
	json_t *v;
	json_object_foreach(K.written, k, v)
		written_free(v);
	json_object_clear(K.written);
}

/*
 * Queues q. Classes and Gateways go ahead of every route: after a burst of
 * route changes a thousand route PATCHes may be queued, and a Gateway's
 * attachedRoutes (what users and the conformance suite wait on) should not
 * wait behind them. Among themselves, first come first served.
 */
static void sq_insert(struct sreq *q, int prio)
{
	q->prio = prio;
	struct sreq **pp = &K.sq_head;
	if (prio)
		while (*pp && (*pp)->prio)
			pp = &(*pp)->next;
	else if (K.sq_tail)
		pp = &K.sq_tail->next;
	q->next = *pp;
	*pp = q;
	if (!q->next)
		K.sq_tail = q;
}

/*
 * Patches one object's status to want (a full status for classes and
 * Gateways: only the keys we own are compared with cur, the status the API
 * holds; a full parents list for routes). 1 written, 0 nothing to do, -1
 * failed (retry later).
 */
static int status_write(const struct pl_obj *o, const json_t *cur, json_t *want)
{
	int same = 1;
	const char *k;
	json_t *v;
	json_object_foreach(want, k, v)
		if (!json_equal(v, json_object_get(cur, k)))
			same = 0;
	if (same)
		return 0;
	const char *rv = sget(json_object_get(o->json, "metadata"), "resourceVersion");
	char key[600];
	snprintf(key, sizeof(key), "%s/%s/%s", pl_kind_str(o->kind), o->ns, o->name);
	/*
	 * Kept as compact text, not as a tree: after a burst of route changes
	 * thousands of writes wait here (a route's parents as a tree take
	 * several times the text's size).
	 */
	char *txt = json_dumps(want, JSON_COMPACT);
	if (!txt)
		return -1;
	uint64_t h = pl_fnv1a(PL_FNV_INIT, txt, strlen(txt));   /* a collision: one write skipped until the next pass */
	json_t *wv = json_object_get(K.written, key);
	struct wr *w = wv ? (struct wr *)(uintptr_t)json_integer_value(wv) : NULL;
	const struct res *r = res_of_kind(pl_kind_str(o->kind));
	struct watch *wt = watch_of_kind(o->kind);
	if (!r || !wt) {
		free(txt);
		return 0;   /* not a kind we write */
	}
	if (w && rv && strcmp(w->rv, rv) == 0 && (w->hash == h || !json_object_get(K.sq_index, key))) {
		/*
		 * Our last write of this object was based on the version we hold
		 * and the watch has not shown its result: that one is written
		 * already, or, sent with other content, makes a newer write fail
		 * with 409 for sure (it moved the resourceVersion on). The watch's
		 * next version of the object brings it back here (written_prune()).
		 * A write still queued is superseded below instead.
		 */
		if (w->hash != h)
			w->deferred = 1;
		free(txt);
		return 0;
	}
	char path[1024];
	obj_path(r, wt->ver, o->ns, o->name, path, sizeof(path));
	/* a queued write of the same object is superseded */
	json_t *qv = json_object_get(K.sq_index, key);
	struct sreq *q = qv ? (struct sreq *)(uintptr_t)json_integer_value(qv) : NULL;
	if (!q) {
		q = pl_xcalloc(1, sizeof(*q));
		q->tag = TAG_STATUS;
		q->key = pl_xstrdup(key);
		q->path = pl_xstrdup(path);
		if (json_object_set_new(K.sq_index, key, json_integer((json_int_t)(uintptr_t)q)) != 0)
			PL_PANIC("out of memory");
		sq_insert(q, o->kind == PL_K_GATEWAYCLASS || o->kind == PL_K_GATEWAY);
	}
	free(q->txt);
	q->txt = txt;
	snprintf(q->rv, sizeof(q->rv), "%s", rv ? rv : "");
	written_set(key, rv, h);   /* optimistic; dropped again if the write fails */
	return 1;
}

static void sreq_free(struct sreq *q)
{
	if (q->h)
		curl_easy_cleanup(q->h);
	curl_slist_free_all(q->hdrs);
	free(q->txt);
	free(q->body);
	free(q->resp.p);
	free(q->key);
	free(q->path);
	free(q);
}

/* Takes the first queued write off the queue (NULL: none). */
static struct sreq *sq_pop(void)
{
	struct sreq *q = K.sq_head;
	if (!q)
		return NULL;
	K.sq_head = q->next;
	if (!K.sq_head)
		K.sq_tail = NULL;
	q->next = NULL;
	json_object_del(K.sq_index, q->key);
	return q;
}

static size_t on_sync_data(char *p, size_t sz, size_t nm, void *data);

/* {"metadata":{"resourceVersion":rv},"status":txt} (no resourceVersion when rv is ""), or NULL. */
static char *patch_body(const char *rv, const char *txt)
{
	json_t *jrv = rv[0] ? json_string(rv) : NULL;
	char *qrv = jrv ? json_dumps(jrv, JSON_ENCODE_ANY) : NULL;
	json_decref(jrv);
	if (rv[0] && !qrv)
		return NULL;
	size_t n = strlen(txt) + (qrv ? strlen(qrv) : 0) + 64;
	char *b = malloc(n);
	if (b) {
		if (qrv)
			snprintf(b, n, "{\"metadata\":{\"resourceVersion\":%s},\"status\":%s}", qrv, txt);
		else
			snprintf(b, n, "{\"status\":%s}", txt);
	}
	free(qrv);
	return b;
}

/* Starts queued status writes while fewer than STATUS_INFLIGHT are running. */
static void status_pump(void)
{
	while (K.sq_head && K.n_inflight < STATUS_INFLIGHT) {
		struct sreq *q = sq_pop();
		q->body = patch_body(q->rv, q->txt);
		q->h = q->body ? curl_easy_init() : NULL;
		struct curl_slist *ct = curl_slist_append(NULL, "Content-Type: application/merge-patch+json");
		q->hdrs = q->h && ct ? pl_kconf_setup(&K.kc, q->h, q->path, ct) : NULL;
		if (!q->hdrs) {
			if (!q->h || !ct)
				curl_slist_free_all(ct);
			json_t *wv = json_object_get(K.written, q->key);
			if (wv) {
				written_free(wv);
				json_object_del(K.written, q->key);
			}
			sreq_free(q);
			K.status_full = K.status_due = 1;
			K.status_at_ns = pl_now_ns() + 500 * MS;
			continue;
		}
		curl_easy_setopt(q->h, CURLOPT_CUSTOMREQUEST, "PATCH");
		curl_easy_setopt(q->h, CURLOPT_POSTFIELDS, q->body);
		curl_easy_setopt(q->h, CURLOPT_WRITEFUNCTION, on_sync_data);
		curl_easy_setopt(q->h, CURLOPT_WRITEDATA, &q->resp);
		curl_easy_setopt(q->h, CURLOPT_PRIVATE, q);
		curl_easy_setopt(q->h, CURLOPT_TIMEOUT_MS, SYNC_TIMEOUT_MS);
		if (curl_multi_add_handle(K.multi, q->h) != CURLM_OK) {
			sreq_free(q);
			K.status_full = K.status_due = 1;
			K.status_at_ns = pl_now_ns() + 500 * MS;
			continue;
		}
		for (unsigned i = 0; i < STATUS_INFLIGHT; i++)
			if (!K.inflight[i]) {
				K.inflight[i] = q;
				break;
			}
		K.n_inflight++;
	}
}

static void status_done(struct sreq *q, CURLcode res)
{
	long code = 0;
	if (res == CURLE_OK)
		curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(K.multi, q->h);
	for (unsigned i = 0; i < STATUS_INFLIGHT; i++)
		if (K.inflight[i] == q)
			K.inflight[i] = NULL;
	K.n_inflight--;
	if (code == 200 || code == 201) {
		K.status_writes++;
		pl_debug("kubernetes: status of %s written", q->key);
	} else if (code != 404) {   /* 404: deleted meanwhile */
		if (code == 409)
			pl_debug("kubernetes: status of %s: conflict; writing again from the newer object", q->key);
		else if (res != CURLE_OK)
			pl_warn("kubernetes: status of %s: %s", q->key, curl_easy_strerror(res));
		else
			pl_warn("kubernetes: status of %s: HTTP %ld %.200s", q->key, code, q->resp.p ? q->resp.p : "");
		/* forget the optimistic entry, so the next pass writes again */
		json_t *wv = json_object_get(K.written, q->key);
		struct wr *w = wv ? (struct wr *)(uintptr_t)json_integer_value(wv) : NULL;
		if (w && strcmp(w->rv, q->rv) == 0) {
			written_free(wv);
			json_object_del(K.written, q->key);
		}
		/*
		 * That object again, not every object: a full pass at thousands of
		 * routes keeps this thread from the watches for 100 ms and more,
		 * and a Gateway's write meets a 409 whenever its last write's echo
		 * is still on the way.
		 */
		status_retry(q->key, (code == 409 ? 50 : 1000) * MS);
	}
	sreq_free(q);
}

/* A kind whose status is a parents list (the route kinds). */
static int route_kind_with_status(enum pl_kind k)
{
	return k != PL_K_GATEWAYCLASS && k != PL_K_GATEWAY && k != PL_K_LISTENERSET && kind_has_status(k);
}

/* Takes our entries out of o's status.parents, if it has any. -1: the write failed. */
static int drop_our_parents(const struct pl_obj *o)
{
	/* without our controller name in its text the status has no entry of ours */
	const char *txt = sget(o->json, "_pylonStatus");
	if (!txt || !strstr(txt, K.controller_name))
		return 0;
	json_t *cur = api_status(o);
	json_t *parents = json_object_get(cur, "parents");
	int mine = 0, rc = 0;
	size_t q;
	json_t *p;
	json_array_foreach(parents, q, p) mine |= ours(p);
	if (mine) {
		json_t *empty = json_array();
		json_t *w2 = json_pack("{s:o}", "parents", merge_parents(parents, empty));
		json_decref(empty);
		rc = status_write(o, cur, w2) < 0 ? -1 : 0;
		json_decref(w2);
	}
	json_decref(cur);
	return rc;
}

/*
 * Writes the status we want for key ("Kind/ns/name"), st, if the API holds
 * another. 1: skipped, the Gateway's or ListenerSet's listeners are still
 * binding; 0: done; -1: the write could not be queued.
 */
static int status_examine(const char *key, const json_t *st, struct pl_table *t, int64_t now)
{
	enum pl_kind pk;
	char ns[256], name[256];
	if (split_key(key, &pk, ns, sizeof(ns), name, sizeof(name)) != 0)
		return 0;
	const struct pl_obj *o = pl_store_get(K.store, pk, ns, name);
	if (!o)
		return 0;
	json_t *want = json_deep_copy(st);
	json_t *cur = api_status(o);
	int rc;
	if (json_object_get(want, "parents")) {
		json_t *p = merge_parents(json_object_get(cur, "parents"), json_object_get(want, "parents"));
		json_t *w2 = json_pack("{s:o}", "parents", p);
		rc = status_write(o, cur, w2);
		json_decref(w2);
	} else {
		if (pk == PL_K_GATEWAYCLASS)
			json_object_set_new(want, "supportedFeatures", features_json());
		if (pk == PL_K_GATEWAY || pk == PL_K_LISTENERSET) {   /* listeners, bound or not */
			if (pk == PL_K_GATEWAY)
				published_addresses(want, o);
			int pending = pk == PL_K_GATEWAY ? gateway_binds(want, o, t) : listenerset_binds(want, o, t);
			if (pending && now - K.compiled_ns < PENDING_BIND_NS) {
				json_decref(want);
				json_decref(cur);
				return 1;
			}
			json_t *ls = json_object_get(want, "listeners"), *l;
			size_t j;
			json_array_foreach(ls, j, l) {
				json_t *old = find_named(json_object_get(cur, "listeners"), sget(l, "name"));
				keep_ltt(json_object_get(l, "conditions"), json_object_get(old, "conditions"));
			}
		}
		keep_ltt(json_object_get(want, "conditions"), json_object_get(cur, "conditions"));
		rc = status_write(o, cur, want);
	}
	json_decref(want);
	json_decref(cur);
	return rc < 0 ? -1 : 0;
}

/* A route kind's key no longer in the desired map: our entries leave its status.parents. -1: failed. */
static int status_gone(const char *key)
{
	enum pl_kind pk;
	char ns[256], name[256];
	if (json_object_get(K.desired, key) || split_key(key, &pk, ns, sizeof(ns), name, sizeof(name)) != 0 ||
	    !route_kind_with_status(pk))
		return 0;
	const struct pl_obj *o = pl_store_get(K.store, pk, ns, name);
	return o ? drop_our_parents(o) : 0;
}

/* Counts status_examine()'s answer rc; a Gateway or ListenerSet still binding is looked at again in 100 ms. */
static void examined(const char *key, int rc, int *waiting, int *failed)
{
	if (rc > 0) {
		++*waiting;
		status_retry(key, 100 * MS);
	} else if (rc < 0) {
		++*failed;
	}
}

/*
 * One pass over the statuses we want. Three scopes: everything (leadership
 * gained, a write failed, listeners pending), what the compiles since the
 * last pass changed (K.desired_changed: desired status differs from the
 * previous compile's, or vanished), and the objects whose status someone
 * else changed (status_keys). The partial passes look at those keys only,
 * so a compile at 10,000 routes does not walk 10,000 statuses.
 */
static void status_pass(void)
{
	int64_t now = pl_now_ns();
	K.status_due = 0;
	int full = K.status_full;
	json_t *only = K.status_keys;   /* handed over: events during the pass start new sets */
	json_t *changed = K.desired_changed;
	K.status_keys = json_object();
	K.desired_changed = json_object();
	if (!K.status_keys || !K.desired_changed)
		PL_PANIC("out of memory");
	K.status_full = 0;
	if (!K.leader || !K.desired) {
		json_decref(only);
		json_decref(changed);
		return;
	}
	now_rfc3339(K.now_str, sizeof(K.now_str), 0);
	if (full)
		K.trim_pending = 1;
	pl_debug("kubernetes: status pass (%s)", full ? "all objects" : json_object_size(changed) ? "changed by the compile"
											       : "changed objects");
	struct pl_table *t = pl_table_acquire();
	int failed = 0, waiting = 0, rc;
	const char *key;
	json_t *st, *unused;
	if (full) {
		json_object_foreach(K.desired, key, st) {
			examined(key, status_examine(key, st, t, now), &waiting, &failed);
		}
		/* routes that no longer name a Gateway of ours: take our entries out of status.parents */
		for (int k = 0; k < PL_K_N; k++) {
			if (!route_kind_with_status((enum pl_kind)k))
				continue;
			const struct pl_obj *const *v;
			size_t n = pl_store_list(K.store, (enum pl_kind)k, &v);
			char k2[600];
			for (size_t j = 0; j < n; j++) {
				snprintf(k2, sizeof(k2), "%s/%s/%s", pl_kind_str(v[j]->kind), v[j]->ns, v[j]->name);
				if (!json_object_get(K.desired, k2) && drop_our_parents(v[j]) < 0)
					failed++;
			}
		}
	} else {
		const json_t *sets[2] = { only, changed };
		for (int si = 0; si < 2; si++) {
			json_object_foreach((json_t *)sets[si], key, unused) {
				if (si == 1 && json_object_get(only, key))
					continue;   /* done with the first set */
				if ((st = json_object_get(K.desired, key)))
					rc = status_examine(key, st, t, now);
				else
					rc = status_gone(key) < 0 ? -1 : 0;
				examined(key, rc, &waiting, &failed);
			}
		}
	}
	json_decref(only);
	json_decref(changed);
	if (t)
		pl_table_unref(t);
	K.waiting_binds = waiting != 0;
	if (failed) {   /* out of memory queueing a write: everything again, later */
		K.status_full = 1;
		K.status_due = 1;
		K.status_at_ns = now + 500 * MS;
	}
}

/* ---------------------------------------------------------------- compile */

static int all_synced(void)
{
	for (size_t i = 0; i < K.nw; i++)
		if (!K.w[i].synced && K.w[i].st != W_ABSENT)
			return 0;
	return 1;
}

/*
 * K.desired brought to the compile's statuses ("Kind/ns/name" -> status), in
 * place, interned: a status equal to the previous one stays the same value,
 * and the statuses of thousands of routes attached the same way are one
 * value between them. A status that changed is interned as a copy made here,
 * so what is kept lives in this thread's arena, not among the compile's
 * garbage. The compiler hands over what changed (compile.h, status deltas),
 * or everything after a full compile; the keys that changed or left go to
 * K.desired_changed, which is all the next status pass needs to look at.
 */
static void desired_set(const char *key, json_t *st, int same_as_before)
{
	json_t *p = json_object_get(K.desired, key);
	if (p && (same_as_before || json_equal(p, st)))
		return;
	json_object_set_new(K.desired, key, pl_jintern(K.jt, json_deep_copy(st)));
	json_object_set_new(K.desired_changed, key, json_true());
}

static void desired_update(const struct pl_compile_result *r)
{
	if (!K.desired && !(K.desired = json_object()))
		PL_PANIC("out of memory");
	const char *key;
	json_t *st;
	if (!r->status_all) {
		size_t i;
		json_t *k;
		json_array_foreach(r->status_gone, i, k) {
			key = json_string_value(k);
			if (key && json_object_get(K.desired, key)) {
				json_object_del(K.desired, key);
				json_object_set_new(K.desired_changed, key, json_true());
			}
		}
		json_object_foreach(r->statuses, key, st)
			desired_set(key, st, 0);
		/* K.desired_src no longer stands for K.desired */
		json_decref(K.desired_src);
		K.desired_src = NULL;
		return;
	}
	/*
	 * Everything: an unchanged route's status is the very json_t the
	 * previous full result held (compile.h), one pointer comparison instead
	 * of a deep one.
	 */
	json_object_foreach(r->statuses, key, st)
		desired_set(key, st, K.desired_src && json_object_get(K.desired_src, key) == st);
	/* every key of statuses is in K.desired now: a larger map holds keys that left */
	if (json_object_size(K.desired) > json_object_size(r->statuses)) {
		void *tmp;
		json_object_foreach_safe(K.desired, tmp, key, st) {
			if (json_object_get(r->statuses, key))
				continue;
			json_object_set_new(K.desired_changed, key, json_true());
			json_object_del(K.desired, key);
		}
	}
	json_decref(K.desired_src);
	K.desired_src = json_incref(r->statuses);
}

/*
 * The compile runs on a thread of its own while this one waits for it.
 * glibc gives each thread its own malloc arena: the compile's transient
 * garbage (every status as a JSON tree, scratch indexes: several times the
 * store at thousands of routes) is freed into that arena, where the idle
 * malloc_trim() can give its pages back, instead of being interleaved with
 * the store's small long-lived values, which would keep most of those pages
 * resident.
 */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	int running, busy, quit;
	struct pl_compile_result *r;
	int publish;                         /* publish r->table right after the compile (compile_publish()) */
	struct pl_table *prev;               /* then: a reference to the table it replaced, for the caller */
	unsigned nb, nc;                     /* then: the new table's binds and clusters */
	int64_t start_ns, end_ns, swap_ns;   /* the last compile, for the latency breakdown */
	long minflt;                         /* page faults it took (RUSAGE_THREAD) */
} CT = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/*
 * The store compiled incrementally (compile.h): only the routes that changed
 * are compiled again, an EndpointSlice change rebuilds only its clusters.
 * One compile at a time (compile_store() waits for it), with one set of
 * options (compile_run()): status map, status deltas, a fixed time.
 */
static struct pl_compiler *compiler;

static long thread_minflt(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_minflt : 0;
}

/*
 * With publish, the table is swapped in here, on the thread that compiled it:
 * the data plane does not wait for the controller thread to wake up again.
 */
static void compile_run(struct pl_compile_result *r, int publish)
{
	long f0 = thread_minflt();
	CT.start_ns = pl_now_ns();
	if (!compiler) {
		/* a fixed time: lastTransitionTime is filled in when status is written (keep_ltt) */
		const struct pl_compile_opts o = { .controller_name = K.controller_name, .now = "1970-01-01T00:00:00Z",
						   .status_map = 1, .status_delta = 1 };
		compiler = pl_compiler_new(&o);
	}
	pl_compiler_run(compiler, K.store, r);
	CT.end_ns = pl_now_ns();
	CT.minflt = thread_minflt() - f0;
	if (!publish)
		return;
	struct pl_table *t = r->table;
	r->table = NULL;
	CT.nb = t->n_binds;
	CT.nc = t->n_clusters;
	/*
	 * A reference to the table being replaced: when no worker holds it,
	 * freeing it (its arena, its regexes) happens on the controller thread
	 * after the swap is timed and logged, not between the event and the swap.
	 */
	CT.prev = pl_table_acquire();
	pl_table_publish(t);
	CT.swap_ns = pl_now_ns();
}

static void *compile_thread(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "pl-compile");
	pthread_mutex_lock(&CT.mu);
	for (;;) {
		while (!CT.busy && !CT.quit)
			pthread_cond_wait(&CT.cv, &CT.mu);
		if (CT.quit)
			break;
		pthread_mutex_unlock(&CT.mu);
		compile_run(CT.r, CT.publish);
		pthread_mutex_lock(&CT.mu);
		CT.busy = 0;
		pthread_cond_broadcast(&CT.cv);
	}
	pthread_mutex_unlock(&CT.mu);
	return NULL;
}

/*
 * compile_run(r, publish) on the compile thread (here when it could not be started).
 * Measured at 3000 routes with both cores busy, the hand-over (two wake-ups)
 * costs ~2 ms on average, but a small compile run on this thread instead took
 * twice as long (p50 5 ms against 2.5 ms): this thread is busy all the time
 * and the scheduler preempts it, while the compile thread wakes as a sleeper.
 */
static void compile_store(struct pl_compile_result *r, int publish)
{
	if (!CT.running) {
		compile_run(r, publish);
		return;
	}
	pthread_mutex_lock(&CT.mu);
	CT.r = r;
	CT.publish = publish;
	CT.busy = 1;
	pthread_cond_broadcast(&CT.cv);
	while (CT.busy)
		pthread_cond_wait(&CT.cv, &CT.mu);
	pthread_mutex_unlock(&CT.mu);
}

static void compile_thread_start(void)
{
	CT.quit = CT.busy = 0;
	int e = pthread_create(&CT.th, NULL, compile_thread, NULL);
	if (e != 0)
		pl_warn("kubernetes: compile thread: %s; compiling on the controller thread", strerror(e));
	CT.running = e == 0;
}

static void compile_thread_stop(void)
{
	if (!CT.running)
		return;
	pthread_mutex_lock(&CT.mu);
	CT.quit = 1;
	pthread_cond_broadcast(&CT.cv);
	pthread_mutex_unlock(&CT.mu);
	pthread_join(CT.th, NULL);
	CT.running = 0;
}

static void compile_publish(void)
{
	int64_t t0 = pl_now_ns();
	K.dirty = 0;
	K.last_compile_ns = t0;
	K.trim_pending = 1;   /* and compile_warm() after the trim */
	assign_pool_addresses();
	struct pl_compile_result r;
	int64_t t_req = pl_now_ns();
	compile_store(&r, 1);
	int64_t t_back = pl_now_ns();
	unsigned nb = CT.nb, nc = CT.nc;
	struct pl_table *prev = CT.prev;
	int64_t t1 = CT.swap_ns;
	K.compiles++;
	K.compiled_ns = t1;
	K.status_due = 1;
	K.status_at_ns = 0;
	/*
	 * bench_test.go reads "compile+swap" (t0..t1) and "first event to swap"
	 * (event applied to the store..t1); the breakdown after them: waiting for
	 * the compile slot (debounce, Secret reads), addresses, the hand-over to
	 * the compile thread, the compile and its page faults, the swap itself;
	 * last, outside the latency, the way back to this thread.
	 */
	struct pl_compiler_stats cs = { 0 };
	if (compiler)
		pl_compiler_get_stats(compiler, &cs);
	pl_info("kubernetes: generation %llu: %zu objects, %u binds, %u clusters, %u with problems; compile+swap %.2f ms, "
	       "first event to swap %.2f ms (wait %.2f, prep %.2f, wake %.2f, compile %.2f [%ld faults], swap %.2f; "
	       "then back %.2f); routes %zu built, %zu reused%s%s", (unsigned long long)pl_table_generation(),
	       pl_store_count(K.store), nb, nc, r.problems, (double)(t1 - t0) / 1e6, (double)(t1 - K.first_event_ns) / 1e6,
	       (double)(t0 - K.first_event_ns) / 1e6, (double)(t_req - t0) / 1e6, (double)(CT.start_ns - t_req) / 1e6,
	       (double)(CT.end_ns - CT.start_ns) / 1e6, CT.minflt, (double)(t1 - CT.end_ns) / 1e6,
	       (double)(t_back - t1) / 1e6, cs.routes_compiled, cs.routes_reused, cs.full ? ", full: " : "",
	       cs.full && cs.why ? cs.why : "");
	/* after the log line, whose timestamp the benchmark takes for the swap's */
	desired_update(&r);
	if (prev)
		pl_table_unref(prev);
	pl_compile_result_clear(&r);
	if (!atomic_load(&kube_ready)) {
		atomic_store(&kube_ready, 1);
		pl_info("kubernetes: first full sync compiled and published: ready");
	}
}

/*
 * malloc_trim() gives back every free page, the compile's working set among
 * them (the pages its tables, indexes and statuses reuse each run: ~1,700 at
 * 3000 routes). The next compile would fault them in again, 25-70 ms on this
 * 2-core VM against ~2 ms warm, and that compile is the one a route change
 * waits for. So a compile whose table is thrown away runs right after the
 * trim, while nothing waits: the working set is resident again and the
 * burst's garbage stays returned.
 */
static void compile_warm(void)
{
	if (!compiler || K.dirty)
		return;
	/*
	 * As compile_publish() does: a status write coming back replaces the
	 * Gateway's copy, pool address and all; compiled without it, the
	 * Gateway would look changed (a full compile, twice).
	 */
	assign_pool_addresses();
	struct pl_compile_result r;
	compile_store(&r, 0);
	pl_debug("kubernetes: warm-up compile after trim: %.2f ms, %ld faults",
		 (double)(CT.end_ns - CT.start_ns) / 1e6, CT.minflt);
	/* its statuses are a run's like any other (compile.h, status deltas); normally nothing changed */
	desired_update(&r);
	if (json_object_size(K.desired_changed)) {
		K.status_due = 1;
		K.status_at_ns = 0;
	}
	pl_compile_result_clear(&r);
}

/* ---------------------------------------------------------------- thread */

static void wake(void *data)
{
	(void)data;
	if (K.multi)
		curl_multi_wakeup(K.multi);
}

static void on_bind_change(void *data)
{
	atomic_store(&bind_changed, 1);
	wake(data);
}

#define TRIM_QUIET_NS (250 * MS)
#define TRIM_EVERY_NS (5000 * MS)

static int64_t trim_at(void)
{
	int64_t a = K.last_compile_ns + TRIM_QUIET_NS, b = K.last_trim_ns + TRIM_EVERY_NS;
	return a > b ? a : b;
}

static void *kube_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "pl-kube");
	while (!atomic_load(&K.stop)) {
		int64_t now = pl_now_ns();
		for (size_t i = 0; i < K.nw; i++) {
			struct watch *w = &K.w[i];
			if ((w->st == W_WAIT || w->st == W_ABSENT) && w->due_ns <= now)
				watch_start(w);
		}
		if (!K.cfg.no_leader_election && K.lease_due_ns <= now)
			lease_tick();
		refs_update();
		int64_t fetch_next = fetch_pump(), hold_until = INT64_MAX;
		now = pl_now_ns();
		int holding = fetch_holding(now, &hold_until);
		if (K.dirty && all_synced() && !holding && now >= K.compile_at_ns)
			compile_publish();
		if (K.status_due && pl_now_ns() >= K.status_at_ns)
			status_pass();
		status_pump();
		/*
		 * Compiles and full status passes free large JSON trees; glibc keeps
		 * the pages. Give them back once things are quiet, at most every 5 s
		 * (the next compile faults them in again).
		 */
		if (!K.dirty && !K.status_due && K.trim_pending && pl_now_ns() >= trim_at()) {
			pl_jintern_gc(K.jt);
			malloc_trim(0);
			compile_warm();
			if (pl_log_level >= PL_LOG_INFO) {
				struct mallinfo2 mi = mallinfo2();
				size_t sb, su;
				pl_jalloc_stats(&sb, &su);
				pl_info("kubernetes: idle trim: malloc heap %.1f MB in use, %.1f MB free; long-lived "
					 "JSON %.1f MB in %.1f MB of slabs; status writes: %llu done, %zu queued, %u in flight, "
					 "%zu awaiting the watch", (double)mi.uordblks / 1e6,
					 (double)mi.fordblks / 1e6, (double)su / 1e6, (double)sb / 1e6,
					 (unsigned long long)K.status_writes, json_object_size(K.sq_index), K.n_inflight,
					 json_object_size(K.written));
			}
			K.trim_pending = 0;
			K.last_trim_ns = pl_now_ns();
		}

		now = pl_now_ns();
		int64_t next = now + 1000 * MS;
		for (size_t i = 0; i < K.nw; i++)
			if ((K.w[i].st == W_WAIT || K.w[i].st == W_ABSENT) && K.w[i].due_ns < next)
				next = K.w[i].due_ns;
		if (K.dirty && all_synced()) {
			int64_t at = holding && hold_until > K.compile_at_ns ? hold_until : K.compile_at_ns;
			if (at < next)
				next = at;
		}
		if (fetch_next < next)
			next = fetch_next;
		if (K.trim_pending && !K.dirty && !K.status_due && trim_at() < next)
			next = trim_at();
		if (K.status_due && K.status_at_ns < next)
			next = K.status_at_ns;
		if (!K.cfg.no_leader_election && K.lease_due_ns < next)
			next = K.lease_due_ns;
		int ms = next <= now ? 0 : (int)((next - now + MS - 1) / MS);
		int running;
		curl_multi_poll(K.multi, NULL, 0, ms, NULL);
		curl_multi_perform(K.multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(K.multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			void *priv = NULL;
			CURL *eh = m->easy_handle;
			CURLcode res = m->data.result;
			curl_easy_getinfo(eh, CURLINFO_PRIVATE, (char **)&priv);
			if (priv && *(int *)priv == TAG_WATCH)
				watch_done(priv, res);
			else if (priv && *(int *)priv == TAG_STATUS)
				status_done(priv, res);
			else if (priv && *(int *)priv == TAG_AREQ)
				areq_finish(priv, res);
		}
		status_pump();
		/* a status write waiting for binds: the bind hook woke us, decide now */
		if (atomic_exchange(&bind_changed, 0)) {
			/* a listener opened or failed: Programmed may change for any Gateway */
			int64_t at = pl_now_ns() + (K.waiting_binds ? 0 : (int64_t)K.cfg.debounce_ms * MS);
			if (!K.status_due || at < K.status_at_ns)
				K.status_at_ns = at;
			K.status_due = K.status_full = 1;
		}
	}
	return NULL;
}

int pl_kube_ready(void)
{
	return atomic_load(&kube_ready);
}

static int split_ns_name(const char *s, char **ns, char **name)
{
	const char *slash = strchr(s, '/');
	if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/'))
		return -1;
	*ns = strndup(s, (size_t)(slash - s));
	*name = pl_xstrdup(slash + 1);
	return *ns ? 0 : -1;
}

int pl_kube_start(const struct pl_kube_config *cfg)
{
	PL_BUG_ON(K.running);
	char err[1024];
	memset(&K, 0, sizeof(K));
	K.cfg = *cfg;   /* debounce_ms 0: compile as soon as the store changed (main.c defaults it to 10) */
	K.controller_name = pl_xstrdup(cfg->controller_name ? cfg->controller_name : PL_DEFAULT_CONTROLLER_NAME);
	K.class_name = cfg->gateway_class_name ? pl_xstrdup(cfg->gateway_class_name) : NULL;
	if (cfg->address_pool) {
		if (pl_kube_parse_pool(cfg->address_pool, &K.pool_lo, &K.pool_hi) != 0) {
			pl_err("--gateway-address-pool %s: expected an IPv4 CIDR (127.0.10.0/24) or range (a.b.c.d-e.f.g.h)",
			       cfg->address_pool);
			return -1;
		}
		K.have_pool = 1;
		K.pool_next = K.pool_lo;
	}
	if (cfg->publish_service && split_ns_name(cfg->publish_service, &K.publish_ns, &K.publish_name) != 0) {
		pl_err("--publish-service %s: expected NAMESPACE/NAME", cfg->publish_service);
		return -1;
	}
	char *pod_ns = NULL;
	int rc = cfg->in_cluster ? pl_kconf_load_incluster(&K.kc, &pod_ns, err, sizeof(err))
				 : pl_kconf_load_kubeconfig(&K.kc, cfg->kubeconfig, err, sizeof(err));
	if (rc != 0) {
		pl_err("kubernetes: %s", err);
		free(pod_ns);
		return -1;
	}
	const char *env_ns = getenv("POD_NAMESPACE");
	K.lease_ns = pl_xstrdup(cfg->lease_namespace ? cfg->lease_namespace
				: env_ns && *env_ns ? env_ns : pod_ns ? pod_ns : "default");
	free(pod_ns);
	/* Lease name from the controller name: "pylon.dev/gateway-controller" -> "pylon.dev-gateway-controller" */
	K.lease_name = pl_xstrdup(K.controller_name);
	for (char *p = K.lease_name; *p; p++) {
		*p = pl_lower(*p);
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
			*p = '-';
	}
	char host[256] = "pylon";
	gethostname(host, sizeof(host) - 1);
	char id[320];
	snprintf(id, sizeof(id), "%s_%ld", host, (long)getpid());
	K.identity = pl_xstrdup(id);
	srandom((unsigned)(pl_now_ns() ^ getpid()));

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		pl_err("kubernetes: curl_global_init failed");
		return -1;
	}
	K.store = pl_store_new();
	K.jt = pl_jintern_new();
	K.refs = json_object();
	K.multi = curl_multi_init();
	K.written = json_object();
	K.status_keys = json_object();
	K.desired_changed = json_object();
	K.sq_index = json_object();
	K.assigned = json_object();
	K.used_addrs = json_object();
	if (!K.store || !K.multi || !K.written || !K.status_keys || !K.desired_changed || !K.sq_index || !K.assigned ||
	    !K.used_addrs || !K.refs)
		PL_PANIC("out of memory");
	curl_multi_setopt(K.multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
	K.w = pl_xcalloc(PL_ARRAY_LEN(resources), sizeof(*K.w));
	for (size_t i = 0; i < PL_ARRAY_LEN(resources); i++) {
		enum pl_kind k = PL_K_N;
		for (int j = 0; j < PL_K_N; j++)
			if (strcmp(pl_kind_str((enum pl_kind)j), resources[i].kind) == 0)
				k = (enum pl_kind)j;
		if (k == PL_K_N) {
			pl_debug("kubernetes: %s is not compiled yet; not watched", resources[i].kind);
			continue;
		}
		struct watch *w = &K.w[K.nw++];
		w->r = &resources[i];
		w->kind = k;
		w->need_list = 1;
		w->tag = TAG_WATCH;
		w->h = curl_easy_init();
		if (!w->h)
			PL_PANIC("out of memory");
	}
	K.leader = cfg->no_leader_election ? 1 : 0;

	/* the proxy starts with an empty table; /readyz stays 503 until the first sync is compiled */
	char now[40];
	now_rfc3339(now, sizeof(now), 0);
	struct pl_compile_opts o = { .controller_name = K.controller_name, .now = now };
	struct pl_compile_result r;
	pl_compile(K.store, &o, &r);
	pl_table_publish(r.table);
	r.table = NULL;
	pl_compile_result_clear(&r);

	compile_thread_start();
	pl_bindreg_on_change(on_bind_change, NULL);
	pl_info("kubernetes: API server %s; controllerName %s%s%s; %s", K.kc.server, K.controller_name,
		K.class_name ? ", GatewayClass " : "", K.class_name ? K.class_name : "",
		cfg->no_leader_election ? "leader election off" : "leader election on");
	atomic_store(&K.stop, 0);
	int e = pthread_create(&K.thread, NULL, kube_main, NULL);
	if (e != 0) {
		pl_err("kubernetes: pthread_create: %s", strerror(e));
		return -1;
	}
	K.running = 1;
	return 0;
}

void pl_kube_stop(void)
{
	if (!K.running)
		return;
	atomic_store(&K.stop, 1);
	curl_multi_wakeup(K.multi);
	pthread_join(K.thread, NULL);
	compile_thread_stop();
	pl_bindreg_on_change(NULL, NULL);
	while (K.fetches) {
		struct fetch *f = K.fetches;
		K.fetches = f->next;
		fetch_free(f);
	}
	while (K.areqs)
		areq_cancel(K.areqs);   /* the Lease round in flight */
	K.lease_req = NULL;
	lease_release();
	for (size_t i = 0; i < K.nw; i++) {
		struct watch *w = &K.w[i];
		if (w->st == W_LIST || w->st == W_WATCH)
			curl_multi_remove_handle(K.multi, w->h);
		curl_slist_free_all(w->hdrs);
		curl_easy_cleanup(w->h);
		free(w->buf);
		free(w->cont);
		json_decref(w->seen);
	}
	free(K.w);
	for (unsigned i = 0; i < STATUS_INFLIGHT; i++) {
		if (K.inflight[i]) {
			curl_multi_remove_handle(K.multi, K.inflight[i]->h);
			sreq_free(K.inflight[i]);
		}
	}
	for (struct sreq *q; (q = sq_pop());)
		sreq_free(q);
	json_decref(K.sq_index);
	if (K.sync)
		curl_easy_cleanup(K.sync);
	curl_multi_cleanup(K.multi);
	written_clear();
	json_decref(K.written);
	json_decref(K.status_keys);
	json_decref(K.assigned);
	json_decref(K.used_addrs);
	json_decref(K.desired);
	json_decref(K.desired_src);
	json_decref(K.desired_changed);
	json_decref(K.refs);
	pl_compiler_free(compiler);
	compiler = NULL;
	pl_store_free(K.store);
	pl_jintern_free(K.jt);
	pl_kconf_free(&K.kc);
	free(K.controller_name);
	free(K.class_name);
	free(K.lease_ns);
	free(K.lease_name);
	free(K.identity);
	free(K.publish_ns);
	free(K.publish_name);
	K.running = 0;
	curl_global_cleanup();
}
