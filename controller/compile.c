/*
 * Gateway API compiler (contract in compile.h).
 *
 * Passes, in order, because each needs the previous one's verdicts:
 *  1. GatewayClasses we serve.
 *  2. Gateways of those classes: addresses, listeners, conflicts inside a
 *     Gateway, then across Gateways sharing an address:port.
 *  3. HTTPRoutes: rules validated once per route (independent of parents),
 *     then each parentRef attached to the listeners it selects and allows.
 *  4. The table: clusters for attached routes only, binds, listeners, vhosts
 *     and entries sorted by the spec's precedence.
 *  5. Statuses, and the table as JSON.
 * Temporaries live in a scratch arena freed at the end; what the proxy reads
 * lives in table->arena.
 */
#include "pl.h"
#include "arena.h"
#include "compile.h"
#include "log.h"
#include "stats.h"
#include "store.h"
#include "table.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio_ext.h>

#define GW_GROUP "gateway.networking.k8s.io"

/* CRD limits, enforced here because standalone manifests skip the API server. */
#define MAX_LISTENERS 64
#define MAX_ADDRESSES 16
#define MAX_PARENTREFS 32
#define MAX_HOSTNAMES 16
#define MAX_RULES 16
#define MAX_MATCHES 64
#define MAX_BACKENDS 16
#define MAX_FILTERS 16
#define MAX_KV 16          /* header/query matches, header modifier entries */
#define MAX_REGEX_LEN 1024
#define SCHED_CAP 1024

/* ---------------------------------------------------------------- JSON helpers */

static json_t *J(json_t *v)
{
	if (!v)
		PL_PANIC("out of memory (json)");
	return v;
}

static void jset(json_t *o, const char *k, json_t *v)
{
	if (json_object_set_new(o, k, J(v)) != 0)
		PL_PANIC("json_object_set_new(%s) failed", k);
}

static void jpush(json_t *a, json_t *v)
{
	if (json_array_append_new(a, J(v)) != 0)
		PL_PANIC("json_array_append_new failed");
}

/* A JSON string from any bytes: messages may carry truncated input. */
static json_t *jstr(const char *s)
{
	if (!s)
		s = "";
	json_t *v = json_string(s);
	if (v)
		return v;
	char buf[1024];
	size_t i;
	for (i = 0; s[i] && i < sizeof(buf) - 1; i++)
		buf[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
	buf[i] = 0;
	return J(json_string(buf));
}

/* String member, or NULL if absent or not a string. */
static const char *sget(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* 1 and *out when k holds an integer (or an integral real), 0 when absent/null, -1 otherwise. */
static int iget(const json_t *o, const char *k, long long *out)
{
	json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 1;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d >= -9e15 && d <= 9e15 && d == (double)(long long)d) {
			*out = (long long)d;
			return 1;
		}
	}
	return -1;
}

/* Array member: NULL when absent or null; *bad set when present but not an array. */
static json_t *aget(const json_t *o, const char *k, int *bad)
{
	json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_array(v)) {
		*bad = 1;
		return NULL;
	}
	return v;
}

/* Optional string member: 0 absent, 1 present (*out), -1 wrong type. */
static int sopt(const json_t *o, const char *k, const char **out)
{
	json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = json_string_value(v);
	return 1;
}

/* Why a string field holds something else: YAML 1.1 types unquoted y/n/yes/no/on/off and numbers. */
static const char *str_hint(const json_t *v)
{
	if (json_is_boolean(v))
		return " (unquoted y/n/yes/no/on/off/true/false read as a boolean: quote it)";
	if (json_is_number(v))
		return " (unquoted number: quote it)";
	return "";
}

/* ---------------------------------------------------------------- small parsers */

int pl_gw_parse_duration(const char *s, uint64_t *ms)
{
	/* ^([0-9]{1,5}(h|m|s|ms)){1,4}$ */
	uint64_t total = 0;
	int parts = 0;
	if (!s || !*s)
		return -1;
	while (*s) {
		uint64_t v = 0;
		int nd = 0;
		while (*s >= '0' && *s <= '9') {
			if (++nd > 5)
				return -1;
			v = v * 10 + (uint64_t)(*s++ - '0');
		}
		if (!nd)
			return -1;
		if (s[0] == 'm' && s[1] == 's') {
			s += 2;
		} else if (*s == 'h') {
			v *= 3600000;
			s++;
		} else if (*s == 'm') {
			v *= 60000;
			s++;
		} else if (*s == 's') {
			v *= 1000;
			s++;
		} else {
			return -1;
		}
		if (++parts > 4)
			return -1;
		total += v;
	}
	*ms = total;
	return 0;
}

enum hkind { H_EXACT = 0, H_WILD = 1, H_ANY = 2 };

static enum hkind hkind(const char *h)
{
	if (!h || !*h || (h[0] == '*' && !h[1]))
		return H_ANY;
	return (h[0] == '*' && h[1] == '.') ? H_WILD : H_EXACT;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* 1 if wildcard w ("*.a.b") matches exact host h: a non-empty label before ".a.b". */
static int wild_matches(const char *w, const char *h)
{
	return strlen(h) > strlen(w + 1) && ends_with(h, w + 1);
}

int pl_gw_host_intersect(const char *l, const char *r, char *out, size_t out_size)
{
	enum hkind lk = hkind(l), rk = hkind(r);
	const char *res = NULL;
	if (lk == H_ANY)
		res = rk == H_ANY ? "" : r;
	else if (rk == H_ANY)
		res = l;
	else if (lk == H_EXACT && rk == H_EXACT)
		res = strcmp(l, r) == 0 ? l : NULL;
	else if (lk == H_WILD && rk == H_EXACT)
		res = wild_matches(l, r) ? r : NULL;
	else if (lk == H_EXACT && rk == H_WILD)
		res = wild_matches(r, l) ? l : NULL;
	else if (ends_with(r + 1, l + 1))
		res = r;          /* both wildcards: the longer suffix is the intersection */
	else if (ends_with(l + 1, r + 1))
		res = l;
	if (!res)
		return 0;
	snprintf(out, out_size, "%s", res);
	return 1;
}

/* 1 if route hostname h covers vhost hostname v (all requests for v are for h). */
static int host_covers(const char *h, const char *v)
{
	enum hkind hk = hkind(h), vk = hkind(v);
	if (hk == H_ANY)
		return 1;
	if (vk == H_ANY)
		return 0;
	if (hk == H_EXACT)
		return vk == H_EXACT && strcmp(h, v) == 0;
	if (vk == H_EXACT)
		return wild_matches(h, v);
	return ends_with(v + 1, h + 1);
}

/*
 * RFC 1123 host name, optionally "*." prefixed, no IP literals; lower-cases
 * into out. 0 ok, -1 invalid.
 */
static int norm_hostname(const char *in, char *out, size_t out_size, int allow_wild)
{
	size_t n = strlen(in);
	if (n == 0 || n > 253 || n >= out_size)
		return -1;
	size_t i = 0;
	if (in[0] == '*') {
		if (!allow_wild || in[1] != '.')
			return -1;
		out[0] = '*';
		out[1] = '.';
		i = 2;
	}
	size_t label = 0;
	for (; i < n; i++) {
		char ch = pl_lower(in[i]);
		if (ch == '.') {
			if (label == 0 || out[i - 1] == '-')
				return -1;
			label = 0;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) {
			label++;
		} else if (ch == '-') {
			if (label == 0)
				return -1;
			label++;
		} else {
			return -1;
		}
		if (label > 63)
			return -1;
		out[i] = ch;
	}
	if (label == 0 || out[n - 1] == '-')
		return -1;
	out[n] = 0;
	struct in_addr a4;
	if (inet_pton(AF_INET, out, &a4) == 1)
		return -1;
	return 0;
}

static int valid_token(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
			continue;
		if (!strchr("!#$%&'*+-.^_`|~", ch))
			return 0;
	}
	return 1;
}

static int valid_header_value(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '\r' || ch == '\n' || ch == 0x7f || (ch < 0x20 && ch != '\t'))
			return 0;
	}
	return 1;
}

/* Gateway API HTTP path: starts with '/', URL path characters, no "//", no dot segments. */
static int valid_path(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 1024 || s[0] != '/')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
			continue;
		if (ch == '%') {
			if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]))
				return 0;
			continue;
		}
		if (!strchr("-/._~!$&'()*+,;=:@", ch))
			return 0;
	}
	if (strstr(s, "//") || strstr(s, "/./") || strstr(s, "/../"))
		return 0;
	if (ends_with(s, "/.") || ends_with(s, "/.."))
		return 0;
	return 1;
}

/* ---------------------------------------------------------------- cluster ids */

static pthread_mutex_t ids_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *ids;             /* "ns/svc:port" -> id */
static uint32_t ids_next = 1;

static uint32_t cluster_id(const char *name)
{
	pthread_mutex_lock(&ids_lock);
	if (!ids)
		ids = J(json_object());
	json_t *v = json_object_get(ids, name);
	uint32_t id;
	if (v) {
		id = (uint32_t)json_integer_value(v);
	} else {
		/* bounded: a registry that outgrows any sane config is reset; ids stay unique */
		if (json_object_size(ids) >= (1u << 20))
			json_object_clear(ids);
		id = ids_next++;
		jset(ids, name, json_integer(id));
	}
	pthread_mutex_unlock(&ids_lock);
	return id;
}

/* ---------------------------------------------------------------- compiler state */

struct vec {
	void **v;
	size_t n, cap;
};

struct ctx;

static void vpush(struct pl_arena *a, struct vec *v, void *p)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 8;
		void **nv = pl_arena_alloc(a, cap * sizeof(void *));
		if (v->n)
			memcpy(nv, v->v, v->n * sizeof(void *));
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = p;
}

enum from { FROM_SAME = 0, FROM_ALL, FROM_SELECTOR, FROM_NONE };

struct gw;

struct lst {
	struct gw *gw;
	const char *name;
	char *fullname;              /* "ns/gw/listener" */
	json_t *spec;
	char host[256];              /* "" = any */
	long long port;
	const char *protocol;
	enum pl_proto proto;
	/* conditions */
	int accepted;
	const char *acc_reason;
	char acc_msg[256];
	const char *conf_reason;     /* NULL: no conflict */
	char conf_msg[256];
	const char *refs_reason;     /* NULL: resolved */
	char refs_msg[256];
	json_t *supported_kinds;
	int http_route_ok;           /* the route kind of this protocol (route_kind) is allowed */
	int grpc_route_ok;           /* HTTP/HTTPS listeners: GRPCRoute is allowed too */
	const char *route_kind;      /* "HTTPRoute", "TLSRoute", "TCPRoute", "UDPRoute" */
	int no_certs;                /* Terminate without one usable certificate: not programmed */
	struct pl_listener_tls *tls; /* in the table arena; NULL for plaintext listeners */
	enum from from;
	json_t *selector;
	unsigned attached;
	struct vec att;              /* struct attach * */
	int dup;                     /* duplicate listener name: not reported */
};

struct gw {
	const struct pl_obj *o;
	const char *controller;
	char addr[INET6_ADDRSTRLEN];
	int acc_bad;                 /* Accepted=False for the whole Gateway */
	const char *acc_reason;
	char acc_msg[256];
	int prog_bad;
	const char *prog_reason;
	char prog_msg[256];
	struct lst *l;
	size_t n;
	/* spec.tls.backend.clientCertificateRef (GatewayBackendClientCertificate) */
	int bk_ref;                  /* the Gateway names one: it gets a ResolvedRefs condition */
	const char *bk_reason;       /* NULL: resolved (or none) */
	char bk_msg[256];
	char *bk_crt, *bk_key;       /* table arena, NUL-terminated PEM; NULL: none usable */
	uint64_t bk_fp;
};

struct bref {
	const struct pl_obj *svc;    /* NULL: unresolved */
	const json_t *port;          /* Service port */
	int grpc;                    /* referenced by a GRPCRoute: no appProtocol means h2c */
};

struct crule {
	uint32_t index;
	struct pl_rule *r;
	struct pl_match *m;
	uint32_t nm;
	struct bref *bk;             /* per backend */
	struct bref *fm;             /* per rule filter (mirrors) */
	uint32_t *grank;             /* GRPCRoute: per match, service chars << 16 | method chars */
};

struct croute {
	const struct pl_obj *o;
	const char *kind;            /* "HTTPRoute", "TLSRoute", "TCPRoute", "UDPRoute" */
	const char *svc_proto;       /* Service port protocol backends must have: "TCP" or "UDP" */
	int grpc;                    /* GRPCRoute: method matches, gRPC precedence */
	char *key;                   /* "ns/name" for precedence */
	char *full;                  /* "HTTPRoute/ns/name" */
	char **hosts;                /* validated, lower-case; n_hosts == 0: none given */
	size_t n_hosts;
	int invalid;                 /* whole route unusable (bad hostnames, too many rules...) */
	char invalid_msg[256];
	struct crule *rules;
	size_t n_rules, n_dropped;
	char drop_msg[256];
	const char *refs_reason;     /* NULL: resolved */
	char refs_msg[256];
	json_t *parents;             /* status.parents */
	struct gw *gw;               /* Gateway of the first listener it attached to (backend client certificate) */
	int materialized;
	const char *stats_listener;
};

struct attach {
	struct croute *r;
	struct vec hosts;            /* char *, "" = any */
	unsigned long mark;          /* visit marker of for_covering() */
};

struct ctx {
	const struct pl_store *s;
	const struct pl_compile_opts *o;
	const char *now;
	struct pl_table *t;
	struct pl_arena *a;          /* table arena */
	struct pl_arena *tmp;        /* scratch */
	struct gw *gws;
	size_t n_gws;
	json_t *gw_index;            /* "ns/name" -> index into gws */
	json_t *cls_status;          /* served class name -> status json */
	json_t *slices;              /* "ns/svc" -> [store index] */
	json_t *cluster_index;       /* name -> index into clusters */
	struct vec clusters;
	struct croute *routes;
	size_t n_routes;
	unsigned long mark;
	struct btls *btls;           /* BackendTLSPolicies, oldest first */
	size_t n_btls;
};

static char *tprintf(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *tprintf(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	PL_BUG_ON(n < 0);
	char *d = pl_arena_alloc(c->tmp, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(d, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return d;
}

static void *aarr(struct pl_arena *a, size_t n, size_t sz)
{
	if (n && sz > SIZE_MAX / n)
		PL_PANIC("array too large");
	return pl_arena_alloc(a, n * sz != 0 ? n * sz : 1);
}

static char *adup_lower(struct pl_arena *a, const char *s)
{
	size_t n = strlen(s);
	char *d = pl_arena_alloc(a, n + 1);
	for (size_t i = 0; i < n; i++)
		d[i] = pl_lower(s[i]);
	return d;
}

static int64_t generation_of(const struct pl_obj *o)
{
	long long g;
	if (iget(json_object_get(o->json, "metadata"), "generation", &g) == 1)
		return g;
	return 1;
}

static json_t *cond(struct ctx *c, const struct pl_obj *o, const char *type, int status,
		    const char *reason, const char *msg)
{
	json_t *j = J(json_object());
	jset(j, "lastTransitionTime", json_string(c->now));
	jset(j, "message", jstr(msg));
	jset(j, "observedGeneration", json_integer(generation_of(o)));
	jset(j, "reason", json_string(reason));
	jset(j, "status", json_string(status ? "True" : "False"));
	jset(j, "type", json_string(type));
	return j;
}

/* ---------------------------------------------------------------- ReferenceGrant, selectors */

/* 1 if a ReferenceGrant in to_ns lets from_kind objects in from_ns refer to to_kind/to_name. */
static int ref_granted(struct ctx *c, const char *from_group, const char *from_kind, const char *from_ns,
		       const char *to_group, const char *to_kind, const char *to_ns, const char *to_name)
{
	const struct pl_obj *const *v;
	size_t n = pl_store_list(c->s, PL_K_REFERENCEGRANT, &v);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i]->ns, to_ns) != 0)
			continue;
		json_t *spec = json_object_get(v[i]->json, "spec");
		int bad = 0, from_ok = 0, to_ok = 0;
		json_t *from = aget(spec, "from", &bad), *to = aget(spec, "to", &bad), *e;
		size_t k;
		json_array_foreach(from, k, e) {
			const char *g = sget(e, "group"), *kd = sget(e, "kind"), *ns = sget(e, "namespace");
			if (g && kd && ns && !strcmp(g, from_group) && !strcmp(kd, from_kind) && !strcmp(ns, from_ns))
				from_ok = 1;
		}
		json_array_foreach(to, k, e) {
			const char *g = sget(e, "group"), *kd = sget(e, "kind"), *nm = sget(e, "name");
			if (!g)
				g = "";
			if (kd && !strcmp(g, to_group) && !strcmp(kd, to_kind) && (!nm || !*nm || !strcmp(nm, to_name)))
				to_ok = 1;
		}
		if (from_ok && to_ok)
			return 1;
	}
	return 0;
}

static const char *ns_label(struct ctx *c, const char *ns, const char *key)
{
	if (strcmp(key, "kubernetes.io/metadata.name") == 0)
		return ns;   /* set on every Namespace by the API server */
	const struct pl_obj *o = pl_store_get(c->s, PL_K_NAMESPACE, "", ns);
	if (!o)
		return NULL;
	return sget(json_object_get(json_object_get(o->json, "metadata"), "labels"), key);
}

/* LabelSelector over the labels of Namespace ns. 1 match, 0 no, -1 invalid selector. */
static int selector_matches(struct ctx *c, const json_t *sel, const char *ns)
{
	if (!json_is_object(sel))
		return -1;
	json_t *ml = json_object_get(sel, "matchLabels");
	const char *k;
	json_t *v;
	if (ml && !json_is_null(ml)) {
		if (!json_is_object(ml))
			return -1;
		json_object_foreach(ml, k, v) {
			const char *want = json_string_value(v);
			if (!want)
				return -1;
			const char *have = ns_label(c, ns, k);
			if (!have || strcmp(have, want) != 0)
				return 0;
		}
	}
	int bad = 0;
	json_t *me = aget(sel, "matchExpressions", &bad), *e;
	if (bad)
		return -1;
	size_t i;
	json_array_foreach(me, i, e) {
		const char *key = sget(e, "key"), *op = sget(e, "operator");
		json_t *vals = aget(e, "values", &bad);
		if (!key || !op || bad)
			return -1;
		const char *have = ns_label(c, ns, key);
		int in = 0;
		size_t j;
		json_t *x;
		json_array_foreach(vals, j, x) {
			if (!json_is_string(x))
				return -1;
			if (have && strcmp(have, json_string_value(x)) == 0)
				in = 1;
		}
		if (strcmp(op, "In") == 0) {
			if (!json_array_size(vals))
				return -1;
			if (!in)
				return 0;
		} else if (strcmp(op, "NotIn") == 0) {
			if (!json_array_size(vals))
				return -1;
			if (in)
				return 0;
		} else if (strcmp(op, "Exists") == 0) {
			if (json_array_size(vals))
				return -1;
			if (!have)
				return 0;
		} else if (strcmp(op, "DoesNotExist") == 0) {
			if (json_array_size(vals))
				return -1;
			if (have)
				return 0;
		} else {
			return -1;
		}
	}
	return 1;
}

/* ---------------------------------------------------------------- pass 1: GatewayClasses */

static void pass_classes(struct ctx *c)
{
	const struct pl_obj *const *v;
	size_t n = pl_store_list(c->s, PL_K_GATEWAYCLASS, &v);
	for (size_t i = 0; i < n; i++) {
		const char *ctl = sget(json_object_get(v[i]->json, "spec"), "controllerName");
		if (!ctl || (c->o->controller_name && strcmp(ctl, c->o->controller_name) != 0))
			continue;
		json_t *st = J(json_object());
		json_t *conds = J(json_array());
		jpush(conds, cond(c, v[i], "Accepted", 1, "Accepted", "Handled by pylon"));
		jpush(conds, cond(c, v[i], "SupportedVersion", 1, "SupportedVersion",
				  "Gateway API v1 is supported"));
		jset(st, "conditions", conds);
		jset(c->cls_status, v[i]->name, st);
		if (json_object_get(json_object_get(v[i]->json, "spec"), "parametersRef"))
			pl_debug("GatewayClass %s: parametersRef ignored", v[i]->name);
	}
}

/* ---------------------------------------------------------------- pass 2: Gateways */

static int cmp_created(const struct pl_obj *a, const struct pl_obj *b)
{
	if (a->created_ns != b->created_ns)
		return a->created_ns < b->created_ns ? -1 : 1;
	if (a->created_ns == INT64_MAX && a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	int r = strcmp(a->ns, b->ns);
	return r ? r : strcmp(a->name, b->name);
}

static int cmp_gw_ptr(const void *pa, const void *pb)
{
	const struct gw *a = *(struct gw *const *)pa, *b = *(struct gw *const *)pb;
	return cmp_created(a->o, b->o);
}

static void lst_reject(struct lst *l, const char *reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records the first reason (and its message) of one listener condition; later ones are dropped. */
static void first_reason(const char **slot, char *msg, size_t msg_size, const char *reason, const char *fmt,
			 va_list ap) __attribute__((format(printf, 5, 0)));

static void first_reason(const char **slot, char *msg, size_t msg_size, const char *reason, const char *fmt,
			 va_list ap)
{
	if (*slot)
		return;
	*slot = reason;
	vsnprintf(msg, msg_size, fmt, ap);
}

static void lst_reject(struct lst *l, const char *reason, const char *fmt, ...)
{
	l->accepted = 0;
	va_list ap;
	va_start(ap, fmt);
	first_reason(&l->acc_reason, l->acc_msg, sizeof(l->acc_msg), reason, fmt, ap);
	va_end(ap);
}

static void lst_refs(struct lst *l, const char *reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void lst_refs(struct lst *l, const char *reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	first_reason(&l->refs_reason, l->refs_msg, sizeof(l->refs_msg), reason, fmt, ap);
	va_end(ap);
}

static void lst_conflict(struct lst *l, const char *reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void lst_conflict(struct lst *l, const char *reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	first_reason(&l->conf_reason, l->conf_msg, sizeof(l->conf_msg), reason, fmt, ap);
	va_end(ap);
}

static int lst_programmed(const struct lst *l)
{
	return !l->dup && l->accepted && !l->conf_reason && !l->gw->acc_bad && !l->no_certs;
}

/*
 * Routes attach to an accepted listener even while its own references do not
 * resolve (no usable certificate): attachedRoutes counts them (conformance
 * GatewayWithAttachedRoutes), the listener just serves nothing until fixed.
 */
static int lst_attachable(const struct lst *l)
{
	return !l->dup && l->accepted && !l->conf_reason && !l->gw->acc_bad;
}

/* ---- TLS material: Secrets and ConfigMaps hold PEM text (Secrets base64-encoded under data) */

static int b64val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+' || ch == '-')
		return 62;
	if (ch == '/' || ch == '_')
		return 63;
	return -1;
}

/* Standard (or URL-safe) base64, whitespace ignored; the result is NUL-terminated. NULL if invalid. */
static char *b64_decode(struct pl_arena *a, const char *in, uint32_t *out_len)
{
	size_t n = strlen(in);
	char *out = pl_arena_alloc(a, n / 4 * 3 + 4);
	uint32_t acc = 0, bits = 0, o = 0;
	int pad = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
			continue;
		if (ch == '=') {
			pad = 1;
			continue;
		}
		int v = b64val(ch);
		if (v < 0 || pad)
			return NULL;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	*out_len = o;
	return out;
}

/* data[key] of a Secret (base64), or stringData[key]; NULL when absent or not base64. */
static char *secret_bytes(struct ctx *c, const struct pl_obj *o, const char *key, uint32_t *len)
{
	const char *v = sget(json_object_get(o->json, "data"), key);
	if (v)
		return b64_decode(c->a, v, len);
	v = sget(json_object_get(o->json, "stringData"), key);
	if (!v)
		return NULL;
	*len = (uint32_t)strlen(v);
	return pl_arena_strdup(c->a, v);
}

static int no_passphrase(char *buf, int size, int rw, void *u)
{
	return 0;   /* encrypted keys are not supported: fail instead of prompting on a tty */
}

/* 1 if crt holds at least one certificate and key the private key of the first. */
static int pem_pair_ok(const char *crt, uint32_t cl, const char *key, uint32_t kl)
{
	BIO *b = BIO_new_mem_buf(crt, (int)cl);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
	BIO_free(b);
	b = BIO_new_mem_buf(key, (int)kl);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
	BIO_free(b);
	int ok = x && k && X509_check_private_key(x, k) == 1;
	X509_free(x);
	EVP_PKEY_free(k);
	ERR_clear_error();
	return ok;
}

/* 1 if pem holds at least one certificate and nothing unparsable before it. */
static int pem_certs_ok(const char *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
	BIO_free(b);
	int ok = x != NULL;
	X509_free(x);
	ERR_clear_error();
	return ok;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}
#define FNV_INIT 14695981039346656037ull

static char *arena_strndup0(struct pl_arena *a, const char *p, uint32_t n)
{
	char *d = pl_arena_alloc(a, (size_t)n + 1);
	memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

/*
 * Gateway spec.tls.backend.clientCertificateRef: the certificate the proxy
 * presents on TLS connections to backends (those with a BackendTLSPolicy).
 * A kubernetes.io/tls Secret, cross-namespace only with a ReferenceGrant.
 * Unusable: Gateway ResolvedRefs=False (InvalidClientCertificateRef or
 * RefNotPermitted), the Gateway stays Accepted and connects without one.
 */
static void gateway_backend_tls(struct ctx *c, struct gw *g)
{
	json_t *r = json_object_get(json_object_get(json_object_get(json_object_get(g->o->json, "spec"), "tls"),
						    "backend"), "clientCertificateRef");
	if (!json_is_object(r))
		return;
	g->bk_ref = 1;
	const char *gr = sget(r, "group"), *k = sget(r, "kind"), *ns = sget(r, "namespace"), *nm = sget(r, "name");
	if (!gr)
		gr = "";
	if (!k)
		k = "Secret";
	if (!ns)
		ns = g->o->ns;
	if (*gr || strcmp(k, "Secret") != 0 || !nm) {
		g->bk_reason = "InvalidClientCertificateRef";
		snprintf(g->bk_msg, sizeof(g->bk_msg), "tls.backend.clientCertificateRef: unsupported %s%s%s",
			 *gr ? gr : "", *gr ? "/" : "", k);
		return;
	}
	if (strcmp(ns, g->o->ns) != 0 && !ref_granted(c, GW_GROUP, "Gateway", g->o->ns, "", "Secret", ns, nm)) {
		g->bk_reason = "RefNotPermitted";
		snprintf(g->bk_msg, sizeof(g->bk_msg),
			 "tls.backend.clientCertificateRef: Secret %s/%s not permitted by any ReferenceGrant", ns, nm);
		return;
	}
	const struct pl_obj *sec = pl_store_get(c->s, PL_K_SECRET, ns, nm);
	const char *type = sec ? sget(sec->json, "type") : NULL;
	uint32_t cl = 0, kl = 0;
	char *crt = sec ? secret_bytes(c, sec, "tls.crt", &cl) : NULL;
	char *key = sec ? secret_bytes(c, sec, "tls.key", &kl) : NULL;
	if (!sec || !type || strcmp(type, "kubernetes.io/tls") != 0 || !crt || !key || !pem_pair_ok(crt, cl, key, kl)) {
		g->bk_reason = "InvalidClientCertificateRef";
		snprintf(g->bk_msg, sizeof(g->bk_msg),
			 "tls.backend.clientCertificateRef: Secret %s/%s %s", ns, nm,
			 !sec ? "not found" : "is not a kubernetes.io/tls Secret with a matching tls.crt and tls.key");
		return;
	}
	g->bk_crt = arena_strndup0(c->a, crt, cl);
	g->bk_key = arena_strndup0(c->a, key, kl);
	g->bk_fp = fnv1a(fnv1a(FNV_INIT, crt, cl), key, kl);
}

static void listener_tls(struct ctx *c, struct lst *l)
{
	json_t *tls = json_object_get(l->spec, "tls");
	const char *mode = sget(tls, "mode");
	if (mode && strcmp(mode, "Terminate") != 0 && strcmp(mode, "Passthrough") != 0) {
		lst_reject(l, "UnsupportedValue", "tls.mode %s is not supported", mode);
		return;
	}
	if (mode && !strcmp(mode, "Passthrough")) {
		if (l->proto == PL_PROTO_HTTPS) {
			lst_reject(l, "UnsupportedValue", "tls.mode Passthrough is not allowed on an HTTPS listener");
			return;
		}
		l->tls = pl_arena_alloc(c->a, sizeof(*l->tls));
		l->tls->mode = PL_TLS_PASSTHROUGH;
		return;
	}
	if (!tls && l->proto == PL_PROTO_TLS) {
		/* TLS without a tls block: passthrough is the only thing it can mean */
		l->tls = pl_arena_alloc(c->a, sizeof(*l->tls));
		l->tls->mode = PL_TLS_PASSTHROUGH;
		return;
	}
	l->tls = pl_arena_alloc(c->a, sizeof(*l->tls));
	l->tls->mode = PL_TLS_TERMINATE;
	l->no_certs = 1;
	if (!tls) {
		lst_refs(l, "InvalidCertificateRef", "an %s listener needs tls.certificateRefs", l->protocol);
		return;
	}
	int bad = 0;
	json_t *refs = aget(tls, "certificateRefs", &bad), *r;
	size_t i;
	if (bad)
		lst_refs(l, "InvalidCertificateRef", "tls.certificateRefs must be a list");
	if (!json_array_size(refs) && !bad)
		lst_refs(l, "InvalidCertificateRef", "tls.certificateRefs is empty");
	json_array_foreach(refs, i, r) {
		const char *g = sget(r, "group"), *k = sget(r, "kind"), *ns = sget(r, "namespace"), *nm = sget(r, "name");
		if (!g)
			g = "";
		if (!k)
			k = "Secret";
		if (!ns)
			ns = l->gw->o->ns;
		if (*g || strcmp(k, "Secret") != 0 || !nm) {
			lst_refs(l, "InvalidCertificateRef", "certificateRefs[%zu]: unsupported kind %s", i, k);
			continue;
		}
		if (strcmp(ns, l->gw->o->ns) != 0 &&
		    !ref_granted(c, GW_GROUP, "Gateway", l->gw->o->ns, "", "Secret", ns, nm)) {
			lst_refs(l, "RefNotPermitted", "certificateRefs[%zu]: Secret %s/%s not permitted by any ReferenceGrant",
				 i, ns, nm);
			continue;
		}
		const struct pl_obj *sec = pl_store_get(c->s, PL_K_SECRET, ns, nm);
		const char *type = sec ? sget(sec->json, "type") : NULL;
		json_t *data = sec ? json_object_get(sec->json, "data") : NULL;
		if (!sec) {
			lst_refs(l, "InvalidCertificateRef", "certificateRefs[%zu]: Secret %s/%s not found", i, ns, nm);
		} else if (!type || strcmp(type, "kubernetes.io/tls") != 0 ||
			   (!sget(data, "tls.crt") && !sget(json_object_get(sec->json, "stringData"), "tls.crt"))) {
			lst_refs(l, "InvalidCertificateRef",
				 "certificateRefs[%zu]: Secret %s/%s is not a kubernetes.io/tls Secret with tls.crt and tls.key",
				 i, ns, nm);
		} else {
			uint32_t cl = 0, kl = 0;
			char *crt = secret_bytes(c, sec, "tls.crt", &cl), *key = secret_bytes(c, sec, "tls.key", &kl);
			if (!crt || !key || !pem_pair_ok(crt, cl, key, kl)) {
				lst_refs(l, "InvalidCertificateRef",
					 "certificateRefs[%zu]: Secret %s/%s: tls.crt/tls.key are not a PEM certificate and its key",
					 i, ns, nm);
				continue;
			}
			struct pl_listener_tls *t = l->tls;
			if (t->n_certs % 4 == 0) {
				struct pl_tls_cert *nc = aarr(c->a, t->n_certs + 4, sizeof(*nc));
				if (t->n_certs)
					memcpy(nc, t->certs, t->n_certs * sizeof(*nc));
				t->certs = nc;
			}
			t->certs[t->n_certs++] = (struct pl_tls_cert){ crt, key, cl, kl };
			l->no_certs = 0;
		}
	}
}

/*
 * Gateway spec.tls.frontend: client-certificate validation for HTTPS/TLS
 * Terminate listeners (default, overridden per port). CA bundles come from
 * ConfigMaps (ca.crt) or Secrets (ca.crt); an unusable one makes the listener
 * ResolvedRefs=False (InvalidCACertificateRef) and it is not programmed
 * rather than served without the validation it asked for; with no usable CA
 * at all it is also Accepted=False (NoValidCACertificate).
 */
static void listener_frontend(struct ctx *c, struct lst *l)
{
	json_t *fe = json_object_get(json_object_get(json_object_get(l->gw->o->json, "spec"), "tls"), "frontend");
	if (!fe || !l->tls || l->tls->mode != PL_TLS_TERMINATE)
		return;
	json_t *val = json_object_get(json_object_get(fe, "default"), "validation");
	int bad = 0;
	json_t *pp = aget(fe, "perPort", &bad), *e;
	size_t i;
	json_array_foreach(pp, i, e) {
		long long port;
		if (iget(e, "port", &port) == 1 && port == l->port)
			val = json_object_get(json_object_get(e, "tls"), "validation");
	}
	if (!val)
		return;
	const char *mode = sget(val, "mode");
	json_t *refs = aget(val, "caCertificateRefs", &bad), *r;
	char *all = NULL;
	size_t all_len = 0;
	json_array_foreach(refs, i, r) {
		const char *g = sget(r, "group"), *k = sget(r, "kind"), *ns = sget(r, "namespace"), *nm = sget(r, "name");
		if (!g)
			g = "";
		if (!k)
			k = "ConfigMap";
		if (!ns)
			ns = l->gw->o->ns;
		enum pl_kind kind = !strcmp(k, "Secret") ? PL_K_SECRET : PL_K_CONFIGMAP;
		if (*g || (strcmp(k, "ConfigMap") != 0 && strcmp(k, "Secret") != 0) || !nm) {
			lst_refs(l, "InvalidCACertificateKind", "caCertificateRefs[%zu]: unsupported kind %s", i, k);
			l->no_certs = 1;
			continue;
		}
		if (strcmp(ns, l->gw->o->ns) != 0 &&
		    !ref_granted(c, GW_GROUP, "Gateway", l->gw->o->ns, "", k, ns, nm)) {
			lst_refs(l, "RefNotPermitted", "caCertificateRefs[%zu]: %s %s/%s not permitted by any ReferenceGrant",
				 i, k, ns, nm);
			l->no_certs = 1;
			continue;
		}
		const struct pl_obj *o = pl_store_get(c->s, kind, ns, nm);
		uint32_t len = 0;
		char *pem = NULL;
		if (o && kind == PL_K_SECRET)
			pem = secret_bytes(c, o, "ca.crt", &len);
		else if (o && (pem = (char *)sget(json_object_get(o->json, "data"), "ca.crt")))
			len = (uint32_t)strlen(pem);
		if (!pem || !pem_certs_ok(pem, len)) {
			lst_refs(l, "InvalidCACertificateRef", "caCertificateRefs[%zu]: %s %s/%s has no valid ca.crt", i, k,
				 ns, nm);
			l->no_certs = 1;
			continue;
		}
		char *n = pl_arena_alloc(c->a, all_len + len + 2);
		if (all_len)
			memcpy(n, all, all_len);
		memcpy(n + all_len, pem, len);
		n[all_len + len] = '\n';
		n[all_len + len + 1] = '\0';
		all = n;
		all_len += len + 1;
	}
	if (all) {
		l->tls->client_ca_pem = all;
		l->tls->client_optional = mode && !strcmp(mode, "AllowInsecureFallback");
	} else if (json_array_size(refs)) {
		/* not one usable CA: the listener cannot validate clients at all */
		lst_reject(l, "NoValidCACertificate", "no valid CA certificate in caCertificateRefs");
	}
}

static void tls_fingerprint(struct pl_listener_tls *t)
{
	uint64_t h = fnv1a(FNV_INIT, &t->mode, sizeof(t->mode));
	for (uint32_t i = 0; i < t->n_certs; i++) {
		h = fnv1a(h, t->certs[i].cert_pem, t->certs[i].cert_len);
		h = fnv1a(h, "\0", 1);
		h = fnv1a(h, t->certs[i].key_pem, t->certs[i].key_len);
		h = fnv1a(h, "\0", 1);
	}
	if (t->client_ca_pem)
		h = fnv1a(h, t->client_ca_pem, strlen(t->client_ca_pem));
	h = fnv1a(h, &t->client_optional, sizeof(t->client_optional));
	t->fingerprint = h;
}

static void listener_parse(struct ctx *c, struct lst *l)
{
	json_t *js = l->spec;
	l->accepted = 1;
	l->supported_kinds = J(json_array());
	long long port = 0;
	if (iget(js, "port", &port) != 1 || port < 1 || port > 65535) {
		lst_reject(l, "PortUnavailable", "port must be 1..65535");
		port = 0;
	}
	l->port = port;
	const char *proto = sget(js, "protocol");
	l->protocol = proto ? proto : "";
	int unsupported = 0;  /* no route kind can attach: supportedKinds stays empty */
	if (!proto)
		unsupported = 1, lst_reject(l, "UnsupportedProtocol", "protocol is required");
	else if (strcmp(proto, "HTTP") == 0)
		l->proto = PL_PROTO_HTTP;
	else if (strcmp(proto, "HTTPS") == 0)
		l->proto = PL_PROTO_HTTPS;
	else if (strcmp(proto, "TLS") == 0)
		l->proto = PL_PROTO_TLS;
	else if (strcmp(proto, "TCP") == 0)
		l->proto = PL_PROTO_TCP;
	else if (strcmp(proto, "UDP") == 0)
		l->proto = PL_PROTO_UDP;
	else
		unsupported = 1, lst_reject(l, "UnsupportedProtocol", "protocol %s is not supported", proto);
	l->route_kind = l->proto == PL_PROTO_TLS ? "TLSRoute" : l->proto == PL_PROTO_TCP ? "TCPRoute"
		      : l->proto == PL_PROTO_UDP ? "UDPRoute" : "HTTPRoute";

	const char *host = NULL;
	int r = sopt(js, "hostname", &host);
	if (r < 0 || (r == 1 && *host && norm_hostname(host, l->host, sizeof(l->host), 1) != 0)) {
		lst_reject(l, "UnsupportedValue", "invalid hostname");
		l->host[0] = 0;
	}

	/* allowedRoutes.kinds: what we can attach to this listener's protocol */
	json_t *ar = json_object_get(js, "allowedRoutes");
	int bad = 0;
	json_t *kinds = unsupported ? NULL : aget(ar, "kinds", &bad), *k;
	size_t i;
	/* HTTP and HTTPS listeners take GRPCRoutes too (h2c by prior knowledge, h2 by ALPN) */
	int http_like = l->proto == PL_PROTO_HTTP || l->proto == PL_PROTO_HTTPS;
	if (!json_array_size(kinds) && !unsupported) {
		json_t *sk = J(json_object());
		jset(sk, "group", json_string(GW_GROUP));
		jset(sk, "kind", json_string(l->route_kind));
		jpush(l->supported_kinds, sk);
		l->http_route_ok = 1;
		if (http_like) {
			sk = J(json_object());
			jset(sk, "group", json_string(GW_GROUP));
			jset(sk, "kind", json_string("GRPCRoute"));
			jpush(l->supported_kinds, sk);
			l->grpc_route_ok = 1;
		}
	}
	json_array_foreach(kinds, i, k) {
		const char *g = sget(k, "group"), *kd = sget(k, "kind");
		if (!g)
			g = GW_GROUP;
		if (http_like && kd && !strcmp(g, GW_GROUP) && !strcmp(kd, "GRPCRoute")) {
			if (!l->grpc_route_ok) {
				json_t *sk = J(json_object());
				jset(sk, "group", json_string(GW_GROUP));
				jset(sk, "kind", json_string("GRPCRoute"));
				jpush(l->supported_kinds, sk);
			}
			l->grpc_route_ok = 1;
		} else if (kd && !strcmp(g, GW_GROUP) && !strcmp(kd, l->route_kind)) {
			if (!l->http_route_ok) {
				json_t *sk = J(json_object());
				jset(sk, "group", json_string(GW_GROUP));
				jset(sk, "kind", json_string(l->route_kind));
				jpush(l->supported_kinds, sk);
			}
			l->http_route_ok = 1;
		} else {
			lst_refs(l, "InvalidRouteKinds", "route kind %s/%s is not supported on a %s listener",
				 g, kd ? kd : "?", l->protocol);
		}
	}
	if (bad)
		lst_refs(l, "InvalidRouteKinds", "allowedRoutes.kinds must be a list");

	json_t *nsj = json_object_get(ar, "namespaces");
	const char *from = sget(nsj, "from");
	l->from = FROM_SAME;
	if (!from || !strcmp(from, "Same")) {
		l->from = FROM_SAME;
	} else if (!strcmp(from, "All")) {
		l->from = FROM_ALL;
	} else if (!strcmp(from, "Selector")) {
		l->from = FROM_SELECTOR;
		l->selector = json_object_get(nsj, "selector");
		if (!l->selector || selector_matches(c, l->selector, l->gw->o->ns) < 0) {
			lst_reject(l, "UnsupportedValue", "allowedRoutes.namespaces.selector is missing or invalid");
			l->from = FROM_NONE;
		}
	} else {
		lst_reject(l, "UnsupportedValue", "allowedRoutes.namespaces.from %s is not supported", from);
		l->from = FROM_NONE;
	}
	if (l->proto == PL_PROTO_HTTPS || l->proto == PL_PROTO_TLS) {
		listener_tls(c, l);
		listener_frontend(c, l);
		if (l->tls)
			tls_fingerprint(l->tls);
	}
}

/*
 * Protocols that may share a port: the same one, or HTTPS with TLS (mixed
 * mode: the proxy peeks the ClientHello and the SNI picks the listener, so
 * HTTPS/TLS-Terminate listeners terminate and TLS Passthrough ones splice).
 * Listeners sharing a port still need distinct hostnames (HostnameConflict).
 */
static int protos_share_port(const char *a, const char *b)
{
	if (!strcmp(a, b))
		return 1;
	return (!strcmp(a, "HTTPS") && !strcmp(b, "TLS")) || (!strcmp(a, "TLS") && !strcmp(b, "HTTPS"));
}

static int addr_is_any(const char *a)
{
	return strcmp(a, "0.0.0.0") == 0 || strcmp(a, "::") == 0;
}

static void gateway_addresses(struct gw *g)
{
	json_t *spec = json_object_get(g->o->json, "spec");
	int bad = 0;
	json_t *addrs = aget(spec, "addresses", &bad), *a;
	size_t i;
	snprintf(g->addr, sizeof(g->addr), "0.0.0.0");
	if (bad || json_array_size(addrs) > MAX_ADDRESSES) {
		g->acc_bad = 1;
		g->acc_reason = "UnsupportedAddress";
		snprintf(g->acc_msg, sizeof(g->acc_msg), "spec.addresses must be a list of at most %d", MAX_ADDRESSES);
		return;
	}
	int have = 0;
	json_array_foreach(addrs, i, a) {
		const char *type = sget(a, "type"), *val = sget(a, "value");
		if (!type)
			type = "IPAddress";
		unsigned char buf[16];
		if (strcmp(type, "IPAddress") != 0) {
			g->acc_bad = 1;
			g->acc_reason = "UnsupportedAddress";
			snprintf(g->acc_msg, sizeof(g->acc_msg), "address type %.64s is not supported", type);
			return;
		}
		if (!val || (inet_pton(AF_INET, val, buf) != 1 && inet_pton(AF_INET6, val, buf) != 1)) {
			g->acc_bad = 1;
			g->acc_reason = "UnsupportedAddress";
			snprintf(g->acc_msg, sizeof(g->acc_msg), "spec.addresses[%zu]: not an IP address", i);
			return;
		}
		if (!have) {
			snprintf(g->addr, sizeof(g->addr), "%s", val);
			have = 1;
		} else {
			pl_info("Gateway %s/%s: only the first address (%s) is used", g->o->ns, g->o->name, g->addr);
		}
	}
}

struct bindkey {
	char addr[INET6_ADDRSTRLEN];
	long long port;
	struct vec l;                /* struct lst * */
};

/*
 * spec.infrastructure.parametersRef: pylon defines no parameters kind, so any
 * reference is one it cannot honour. The spec says such a Gateway is not
 * accepted (InvalidParameters) rather than run without what it asked for.
 * The listener checks that follow may replace the reason; it stays rejected.
 */
static void gateway_parameters(struct gw *g)
{
	json_t *pr = json_object_get(json_object_get(json_object_get(g->o->json, "spec"), "infrastructure"),
				     "parametersRef");
	if (!pr || json_is_null(pr))
		return;
	const char *grp = sget(pr, "group"), *kind = sget(pr, "kind"), *name = sget(pr, "name");
	g->acc_bad = 1;
	g->acc_reason = "InvalidParameters";
	snprintf(g->acc_msg, sizeof(g->acc_msg), "infrastructure.parametersRef %s/%s %s: no parameters kind is supported",
		 grp && *grp ? grp : "core", kind ? kind : "?", name ? name : "?");
}

static void pass_gateways(struct ctx *c)
{
	const struct pl_obj *const *v;
	size_t n = pl_store_list(c->s, PL_K_GATEWAY, &v);
	c->gws = aarr(c->tmp, n, sizeof(struct gw));
	for (size_t i = 0; i < n; i++) {
		json_t *spec = json_object_get(v[i]->json, "spec");
		const char *cls = sget(spec, "gatewayClassName");
		if (!cls || !json_object_get(c->cls_status, cls))
			continue;   /* not ours */
		const struct pl_obj *co = pl_store_get(c->s, PL_K_GATEWAYCLASS, "", cls);
		struct gw *g = &c->gws[c->n_gws];
		g->o = v[i];
		g->controller = sget(json_object_get(co->json, "spec"), "controllerName");
		jset(c->gw_index, tprintf(c, "%s/%s", v[i]->ns, v[i]->name), json_integer((json_int_t)c->n_gws));
		c->n_gws++;
		gateway_addresses(g);
		gateway_backend_tls(c, g);
		gateway_parameters(g);

		int bad = 0;
		json_t *ls = aget(spec, "listeners", &bad), *lj;
		size_t nl = json_array_size(ls);
		if (bad || nl == 0 || nl > MAX_LISTENERS) {
			g->acc_bad = 1;
			g->acc_reason = "ListenersNotValid";
			snprintf(g->acc_msg, sizeof(g->acc_msg), "spec.listeners must hold 1..%d listeners", MAX_LISTENERS);
			continue;
		}
		g->l = aarr(c->tmp, nl, sizeof(struct lst));
		size_t k;
		json_array_foreach(ls, k, lj) {
			const char *name = sget(lj, "name");
			if (!json_is_object(lj) || !name || !*name) {
				g->acc_bad = 1;
				g->acc_reason = "ListenersNotValid";
				snprintf(g->acc_msg, sizeof(g->acc_msg), "spec.listeners[%zu]: name is required", k);
				continue;
			}
			struct lst *l = &g->l[g->n++];
			l->gw = g;
			l->name = name;
			l->spec = lj;
			l->fullname = pl_arena_printf(c->a, "%s/%s/%s", v[i]->ns, v[i]->name, name);
			for (size_t p = 0; p + 1 < g->n; p++)
				if (!g->l[p].dup && strcmp(g->l[p].name, name) == 0)
					l->dup = 1;
			listener_parse(c, l);
		}
		/* conflicts inside the Gateway: both listeners of a pair are Conflicted */
		for (size_t a = 0; a < g->n; a++) {
			for (size_t b = 0; b < g->n; b++) {
				struct lst *la = &g->l[a], *lb = &g->l[b];
				if (a == b || la->dup || lb->dup || !la->port || la->port != lb->port)
					continue;
				if (!protos_share_port(la->protocol, lb->protocol))
					lst_conflict(la, "ProtocolConflict", "port %lld is also used with protocol %s by listener %s",
						     la->port, lb->protocol, lb->name);
				else if (strcmp(la->host, lb->host) == 0)
					lst_conflict(la, "HostnameConflict", "listener %s uses the same port, protocol and hostname",
						     lb->name);
			}
		}
	}

	/* across Gateways sharing a port: the older Gateway keeps it */
	struct gw **order = aarr(c->tmp, c->n_gws, sizeof(*order));
	for (size_t i = 0; i < c->n_gws; i++)
		order[i] = &c->gws[i];
	qsort(order, c->n_gws, sizeof(*order), cmp_gw_ptr);
	struct vec binds = { 0 };
	for (size_t i = 0; i < c->n_gws; i++) {
		struct gw *g = order[i];
		if (g->acc_bad)
			continue;
		for (size_t k = 0; k < g->n; k++) {
			struct lst *l = &g->l[k];
			if (!lst_programmed(l))
				continue;
			struct bindkey *same = NULL;
			for (size_t b = 0; b < binds.n; b++) {
				struct bindkey *bk = binds.v[b];
				if (bk->port != l->port)
					continue;
				if (strcmp(bk->addr, g->addr) == 0) {
					same = bk;
					continue;
				}
				if (addr_is_any(bk->addr) || addr_is_any(g->addr)) {
					struct lst *o0 = bk->l.v[0];
					lst_reject(l, "PortUnavailable", "port %lld on %s is used by Gateway %s/%s on %s",
						   l->port, g->addr, o0->gw->o->ns, o0->gw->o->name, bk->addr);
				}
			}
			if (!l->accepted)
				continue;
			if (same) {
				for (size_t j = 0; j < same->l.n; j++) {
					struct lst *o0 = same->l.v[j];
					if (o0->gw == g)
						continue;
					if (!protos_share_port(o0->protocol, l->protocol))
						lst_conflict(l, "ProtocolConflict", "port %lld is used with protocol %s by Gateway %s/%s",
							     l->port, o0->protocol, o0->gw->o->ns, o0->gw->o->name);
					else if (strcmp(o0->host, l->host) == 0)
						lst_conflict(l, "HostnameConflict",
							     "hostname \"%s\" on port %lld is used by Gateway %s/%s", l->host,
							     l->port, o0->gw->o->ns, o0->gw->o->name);
				}
				if (!l->conf_reason)
					vpush(c->tmp, &same->l, l);
			} else {
				struct bindkey *bk = pl_arena_alloc(c->tmp, sizeof(*bk));
				snprintf(bk->addr, sizeof(bk->addr), "%s", g->addr);
				bk->port = l->port;
				vpush(c->tmp, &bk->l, l);
				vpush(c->tmp, &binds, bk);
			}
		}
	}
}

static struct gw *find_gw(struct ctx *c, const char *ns, const char *name)
{
	char key[512];
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	json_t *v = json_object_get(c->gw_index, key);
	return v ? &c->gws[json_integer_value(v)] : NULL;
}

/* ---------------------------------------------------------------- pass 3: HTTPRoutes */

struct rctx {
	struct ctx *c;
	struct croute *cr;
	char why[256];
};

static int bad(struct rctx *rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(struct rctx *rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rc->why, sizeof(rc->why), fmt, ap);
	va_end(ap);
	return -1;
}

static void route_refs(struct croute *cr, const char *reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void route_refs(struct croute *cr, const char *reason, const char *fmt, ...)
{
	if (cr->refs_reason)
		return;
	cr->refs_reason = reason;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cr->refs_msg, sizeof(cr->refs_msg), fmt, ap);
	va_end(ap);
}

static void regex_cleanup(void *p)
{
	regfree(p);
}

/* Bounded repetition counts multiply the automaton glibc builds: cap their product. */
static int regex_too_costly(const char *s)
{
	double product = 1;
	for (const char *p = s; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p != '{')
			continue;
		unsigned long a = 0, b = 0;
		const char *q = p + 1;
		while (*q >= '0' && *q <= '9' && a < 100000)
			a = a * 10 + (unsigned long)(*q++ - '0');
		b = a;
		if (*q == ',') {
			q++;
			b = 0;
			while (*q >= '0' && *q <= '9' && b < 100000)
				b = b * 10 + (unsigned long)(*q++ - '0');
			if (b < a)
				b = a;
		}
		product *= (double)(b ? b : 1);
		if (product > 1000)
			return 1;
	}
	return 0;
}

/* Compiles an anchored POSIX ERE into the table arena. */
static regex_t *compile_regex(struct rctx *rc, const char *what, const char *pat)
{
	if (strlen(pat) > MAX_REGEX_LEN || regex_too_costly(pat)) {
		bad(rc, "%s: regular expression too long or too costly", what);
		return NULL;
	}
	regex_t probe;
	/* the pattern alone first: balanced groups, so wrapping it cannot change its meaning */
	int e = regcomp(&probe, pat, REG_EXTENDED | REG_NOSUB);
	if (e != 0) {
		char eb[128];
		regerror(e, &probe, eb, sizeof(eb));
		bad(rc, "%s: invalid regular expression: %s", what, eb);
		return NULL;
	}
	regfree(&probe);
	struct pl_arena *a = rc->c->a;
	char *anch = pl_arena_printf(a, "^(%s)$", pat);
	regex_t *re = pl_arena_alloc(a, sizeof(*re));
	if (regcomp(re, anch, REG_EXTENDED | REG_NOSUB) != 0) {
		bad(rc, "%s: invalid regular expression", what);
		return NULL;
	}
	if (pl_arena_cleanup_add(a, regex_cleanup, re) != 0)
		PL_PANIC("out of memory");
	return re;
}

static const char *const methods[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
				       "TRACE", "PATCH", NULL };

static int parse_kv_matches(struct rctx *rc, json_t *arr, const char *what, int header,
			    struct pl_kv_match **out, uint32_t *n_out)
{
	size_t n = json_array_size(arr);
	if (n > MAX_KV)
		return bad(rc, "%s: more than %d entries", what, MAX_KV);
	struct pl_kv_match *v = aarr(rc->c->a, n, sizeof(*v));
	uint32_t k = 0;
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e) {
		const char *name = sget(e, "name"), *val = sget(e, "value"), *type = "Exact";
		if (!name || !val || sopt(e, "type", &type) < 0)
			return bad(rc, "%s[%zu]: name and value are required strings%s", what, i,
				   str_hint(json_object_get(e, name ? "value" : "name")));
		if (header ? !valid_token(name, 256) : (!*name || strlen(name) > 256))
			return bad(rc, "%s[%zu]: invalid name", what, i);
		if (strlen(val) > 4096)
			return bad(rc, "%s[%zu]: value too long", what, i);
		/* equivalent names: only the first counts (spec) */
		int dup = 0;
		for (uint32_t j = 0; j < k; j++)
			if (header ? (strlen(v[j].name) == strlen(name) && pl_strncaseeq(v[j].name, name, strlen(name)))
				   : strcmp(v[j].name, name) == 0)
				dup = 1;
		if (dup)
			continue;
		struct pl_kv_match *m = &v[k];
		m->name = header ? adup_lower(rc->c->a, name) : pl_arena_strdup(rc->c->a, name);
		m->value = pl_arena_strdup(rc->c->a, val);
		if (strcmp(type, "Exact") == 0) {
			m->type = PL_MATCH_EXACT;
		} else if (strcmp(type, "RegularExpression") == 0) {
			m->type = PL_MATCH_REGEX;
			char w[256];
			snprintf(w, sizeof(w), "%.128s[%zu]", what, i);
			m->re = compile_regex(rc, w, val);
			if (!m->re)
				return -1;
		} else {
			return bad(rc, "%s[%zu]: unsupported type %.32s", what, i, type);
		}
		k++;
	}
	*out = v;
	*n_out = k;
	return 0;
}

static int parse_match(struct rctx *rc, json_t *jm, struct pl_match *m, const char *what)
{
	struct pl_arena *a = rc->c->a;
	if (!json_is_object(jm))
		return bad(rc, "%s: not a mapping", what);
	const char *type = "PathPrefix", *val = "/";
	json_t *p = json_object_get(jm, "path");
	if (p && !json_is_null(p)) {
		if (!json_is_object(p) || sopt(p, "type", &type) < 0 || sopt(p, "value", &val) < 0)
			return bad(rc, "%s.path: invalid", what);
	}
	if (strcmp(type, "PathPrefix") == 0 || strcmp(type, "Exact") == 0) {
		if (!valid_path(val))
			return bad(rc, "%s.path: invalid path \"%.64s\"", what, val);
		size_t n = strlen(val);
		m->path_type = type[0] == 'E' ? PL_PATH_EXACT : PL_PATH_PREFIX;
		if (m->path_type == PL_PATH_PREFIX)
			while (n > 1 && val[n - 1] == '/')
				n--;   /* a trailing '/' is ignored for prefixes */
		m->path = pl_arena_strndup(a, val, n);
		m->path_len = (uint32_t)n;
	} else if (strcmp(type, "RegularExpression") == 0) {
		m->path_type = PL_PATH_REGEX;
		m->path = pl_arena_strdup(a, val);
		m->path_len = (uint32_t)strlen(val);
		char w[256];
		snprintf(w, sizeof(w), "%.128s.path", what);
		m->path_re = compile_regex(rc, w, val);
		if (!m->path_re)
			return -1;
	} else {
		return bad(rc, "%s.path: unsupported type %.32s", what, type);
	}
	const char *meth = NULL;
	if (sopt(jm, "method", &meth) < 0)
		return bad(rc, "%s.method: not a string", what);
	if (meth) {
		size_t i;
		for (i = 0; methods[i]; i++)
			if (strcmp(methods[i], meth) == 0)
				break;
		if (!methods[i])
			return bad(rc, "%s.method: unsupported method %.32s", what, meth);
		m->method = pl_arena_strdup(a, meth);
	}
	int b = 0;
	json_t *hs = aget(jm, "headers", &b), *qs = aget(jm, "queryParams", &b);
	if (b)
		return bad(rc, "%s: headers and queryParams must be lists", what);
	char w[256];
	snprintf(w, sizeof(w), "%.128s.headers", what);
	if (parse_kv_matches(rc, hs, w, 1, &m->headers, &m->n_headers) != 0)
		return -1;
	snprintf(w, sizeof(w), "%.128s.queryParams", what);
	if (parse_kv_matches(rc, qs, w, 0, &m->queries, &m->n_queries) != 0)
		return -1;
	return 0;
}

/* gRPC names as the GRPCRoute CRD validates them: service "pkg.Svc" (optional leading dot), method "Name". */
static int valid_grpc_name(const char *s, int service)
{
	size_t n = strlen(s);
	if (!n || n > 1024)
		return 0;
	if (service && *s == '.')
		s++;
	int start = 1;
	for (; *s; s++) {
		char ch = *s;
		if (service && ch == '.' && !start) {
			start = 1;
			continue;
		}
		if (!(isalpha((unsigned char)ch) || ch == '_' || (!start && isdigit((unsigned char)ch))))
			return 0;
		start = 0;
	}
	return !start;
}

/*
 * A GRPCRoute match becomes a path match on "/service/method": Exact with
 * both names, a "/service" prefix with the service only, a regular
 * expression otherwise. *grank gets the precedence keys (the spec ranks by
 * characters of the matching service, then method).
 */
static int parse_grpc_match(struct rctx *rc, json_t *jm, struct pl_match *m, uint32_t *grank, const char *what)
{
	struct pl_arena *a = rc->c->a;
	if (!json_is_object(jm))
		return bad(rc, "%s: not a mapping", what);
	json_t *mm = json_object_get(jm, "method");
	const char *type = "Exact", *svc = NULL, *meth = NULL;
	*grank = 0;
	m->path_type = PL_PATH_PREFIX;
	m->path = pl_arena_strdup(a, "/");
	m->path_len = 1;
	if (mm && !json_is_null(mm)) {
		if (!json_is_object(mm) || sopt(mm, "type", &type) < 0 || sopt(mm, "service", &svc) < 0 ||
		    sopt(mm, "method", &meth) < 0)
			return bad(rc, "%s.method: invalid", what);
		if (svc && !*svc)
			svc = NULL;
		if (meth && !*meth)
			meth = NULL;
		if (!svc && !meth)
			return bad(rc, "%s.method: one of service and method is required", what);
		size_t ls = svc ? strlen(svc) : 0, lm = meth ? strlen(meth) : 0;
		if (ls > 1024 || lm > 1024)
			return bad(rc, "%s.method: service or method too long", what);
		*grank = (uint32_t)(ls > 0xffff ? 0xffff : ls) << 16 | (uint32_t)(lm > 0xffff ? 0xffff : lm);
		if (strcmp(type, "Exact") == 0) {
			if ((svc && !valid_grpc_name(svc, 1)) || (meth && !valid_grpc_name(meth, 0)))
				return bad(rc, "%s.method: invalid service or method name", what);
			if (svc && meth) {
				m->path_type = PL_PATH_EXACT;
				m->path = pl_arena_printf(a, "/%s/%s", svc, meth);
			} else if (svc) {
				m->path = pl_arena_printf(a, "/%s", svc);
			} else {
				char w[256];
				snprintf(w, sizeof(w), "%.128s.method", what);
				m->path_type = PL_PATH_REGEX;
				m->path = pl_arena_printf(a, "/[^/]+/%s", meth);
				m->path_re = compile_regex(rc, w, m->path);
				if (!m->path_re)
					return -1;
			}
		} else if (strcmp(type, "RegularExpression") == 0) {
			char w[256];
			snprintf(w, sizeof(w), "%.128s.method", what);
			/* each part alone first, so a bad one is named and cannot leak into the other */
			if ((svc && !compile_regex(rc, w, svc)) || (meth && !compile_regex(rc, w, meth)))
				return -1;
			m->path_type = PL_PATH_REGEX;
			m->path = pl_arena_printf(a, "/(%s)/(%s)", svc ? svc : "[^/]+", meth ? meth : "[^/]+");
			m->path_re = compile_regex(rc, w, m->path);
			if (!m->path_re)
				return -1;
		} else {
			return bad(rc, "%s.method: unsupported type %.32s", what, type);
		}
		m->path_len = (uint32_t)strlen(m->path);
	}
	int b = 0;
	json_t *hs = aget(jm, "headers", &b);
	if (b)
		return bad(rc, "%s: headers must be a list", what);
	char w[256];
	snprintf(w, sizeof(w), "%.128s.headers", what);
	return parse_kv_matches(rc, hs, w, 1, &m->headers, &m->n_headers);
}

static int parse_kv_list(struct rctx *rc, json_t *arr, const char *what, struct pl_kv **out, uint32_t *n_out)
{
	size_t n = json_array_size(arr);
	if (n > MAX_KV)
		return bad(rc, "%s: more than %d entries", what, MAX_KV);
	struct pl_kv *v = aarr(rc->c->a, n, sizeof(*v));
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e) {
		const char *name = sget(e, "name"), *val = sget(e, "value");
		if (!name || !val)
			return bad(rc, "%s[%zu]: name and value are required strings%s", what, i,
				   str_hint(json_object_get(e, name ? "value" : "name")));
		if (!valid_token(name, 256) || !valid_header_value(val, 4096))
			return bad(rc, "%s[%zu]: invalid header name or value", what, i);
		for (size_t j = 0; j < i; j++)
			if (strcmp(v[j].name, name) == 0 || (strlen(v[j].name) == strlen(name) &&
							     pl_strncaseeq(v[j].name, name, strlen(name))))
				return bad(rc, "%s[%zu]: header %.64s given twice", what, i, name);
		v[i].name = adup_lower(rc->c->a, name);
		v[i].value = pl_arena_strdup(rc->c->a, val);
		v[i].name_len = (uint32_t)strlen(name);
		v[i].value_len = (uint32_t)strlen(val);
	}
	*out = v;
	*n_out = (uint32_t)n;
	return 0;
}

static int parse_header_mod(struct rctx *rc, json_t *j, const char *what, struct pl_header_mod *h)
{
	if (!json_is_object(j))
		return bad(rc, "%s: missing", what);
	int b = 0;
	json_t *set = aget(j, "set", &b), *add = aget(j, "add", &b), *rm = aget(j, "remove", &b);
	if (b)
		return bad(rc, "%s: set, add and remove must be lists", what);
	char w[256];
	snprintf(w, sizeof(w), "%.128s.set", what);
	if (parse_kv_list(rc, set, w, &h->set, &h->n_set) != 0)
		return -1;
	snprintf(w, sizeof(w), "%.128s.add", what);
	if (parse_kv_list(rc, add, w, &h->add, &h->n_add) != 0)
		return -1;
	size_t n = json_array_size(rm), i;
	if (n > MAX_KV)
		return bad(rc, "%s.remove: more than %d entries", what, MAX_KV);
	h->remove = aarr(rc->c->a, n, sizeof(char *));
	json_t *e;
	json_array_foreach(rm, i, e) {
		const char *name = json_string_value(e);
		if (!name || !valid_token(name, 256))
			return bad(rc, "%s.remove[%zu]: invalid header name", what, i);
		h->remove[i] = adup_lower(rc->c->a, name);
	}
	h->n_remove = (uint32_t)n;
	return 0;
}

static int parse_path_mod(struct rctx *rc, json_t *j, const char *what, struct pl_path_mod *pm)
{
	if (!j || json_is_null(j))
		return 0;
	const char *type = sget(j, "type");
	const char *v = NULL;
	if (!type)
		return bad(rc, "%s.type is required", what);
	if (strcmp(type, "ReplaceFullPath") == 0) {
		if (sopt(j, "replaceFullPath", &v) != 1)
			return bad(rc, "%s.replaceFullPath is required", what);
		pm->type = PL_PATHMOD_FULL;
	} else if (strcmp(type, "ReplacePrefixMatch") == 0) {
		if (sopt(j, "replacePrefixMatch", &v) != 1)
			return bad(rc, "%s.replacePrefixMatch is required", what);
		pm->type = PL_PATHMOD_PREFIX;
	} else {
		return bad(rc, "%s.type %.32s is not supported", what, type);
	}
	if (!valid_path(v))
		return bad(rc, "%s: invalid path \"%.64s\"", what, v);
	pm->value = pl_arena_strdup(rc->c->a, v);
	return 0;
}

static enum pl_app_proto app_proto(const char *ap, int *ok)
{
	*ok = 1;
	if (!ap || !*ap || !strcmp(ap, "http") || !strcmp(ap, "HTTP") || !strcmp(ap, "kubernetes.io/http"))
		return PL_APP_HTTP1;
	if (!strcmp(ap, "kubernetes.io/h2c"))
		return PL_APP_H2C;
	if (!strcmp(ap, "kubernetes.io/ws"))
		return PL_APP_WS;
	*ok = 0;
	return PL_APP_HTTP1;
}

static struct btls *btls_for(struct ctx *c, const struct bref *b);

/*
 * Resolves one backendRef (or a mirror's) of route cr. Unresolved refs set
 * the route's ResolvedRefs reason and leave b->svc NULL; returns -1 only for
 * malformed input (the rule is dropped).
 */
static int resolve_ref(struct rctx *rc, json_t *ref, const char *what, struct bref *b)
{
	struct croute *cr = rc->cr;
	if (!json_is_object(ref))
		return bad(rc, "%s: not a mapping", what);
	const char *g = "", *k = "Service", *ns = cr->o->ns, *name = NULL;
	if (sopt(ref, "group", &g) < 0 || sopt(ref, "kind", &k) < 0 || sopt(ref, "namespace", &ns) < 0 ||
	    sopt(ref, "name", &name) != 1 || !*name)
		return bad(rc, "%s: name is required; group, kind, namespace must be strings", what);
	long long port = 0;
	int hp = iget(ref, "port", &port);
	if (hp < 0 || (hp == 1 && (port < 1 || port > 65535)))
		return bad(rc, "%s: invalid port", what);
	if (*g || strcmp(k, "Service") != 0) {
		route_refs(cr, "InvalidKind", "%s: kind %s%s%s is not supported", what, g, *g ? "/" : "", k);
		return 0;
	}
	if (strcmp(ns, cr->o->ns) != 0 &&
	    !ref_granted(rc->c, GW_GROUP, cr->kind, cr->o->ns, "", "Service", ns, name)) {
		route_refs(cr, "RefNotPermitted", "%s: Service %s/%s is in another namespace and no ReferenceGrant allows it",
			   what, ns, name);
		return 0;
	}
	const struct pl_obj *svc = pl_store_get(rc->c->s, PL_K_SERVICE, ns, name);
	if (!svc) {
		route_refs(cr, "BackendNotFound", "%s: Service %s/%s not found", what, ns, name);
		return 0;
	}
	if (hp != 1) {
		route_refs(cr, "BackendNotFound", "%s: port is required for a Service", what);
		return 0;
	}
	int bd = 0;
	json_t *ports = aget(json_object_get(svc->json, "spec"), "ports", &bd), *sp;
	size_t i;
	const json_t *found = NULL;
	json_array_foreach(ports, i, sp) {
		long long p;
		if (iget(sp, "port", &p) == 1 && p == port) {
			found = sp;
			break;
		}
	}
	if (!found) {
		route_refs(cr, "BackendNotFound", "%s: Service %s/%s has no port %lld", what, ns, name, port);
		return 0;
	}
	const char *proto = sget(found, "protocol");
	int ok;
	const char *ap = sget(found, "appProtocol");
	app_proto(ap, &ok);
	if (!ok && ap && (!strcmp(ap, "HTTPS") || !strcmp(ap, "https"))) {
		/*
		 * HTTP over TLS: servable only when a BackendTLSPolicy says how to
		 * verify the backend (an unusable policy still applies and fails
		 * closed); never dialled as plaintext or unverified TLS.
		 */
		struct bref tb = { .svc = svc, .port = found };
		if (btls_for(rc->c, &tb))
			ok = 1;
	}
	if ((!ok && !strcmp(cr->svc_proto, "TCP") && (!strcmp(cr->kind, "HTTPRoute") || cr->grpc)) ||
	    strcmp(proto ? proto : "TCP", cr->svc_proto) != 0) {
		route_refs(cr, "UnsupportedProtocol", "%s: Service %s/%s port %lld: protocol %s/%s is not supported",
			   what, ns, name, port, proto ? proto : "TCP", sget(found, "appProtocol") ? sget(found, "appProtocol") : "-");
		return 0;
	}
	b->svc = svc;
	b->port = found;
	b->grpc = cr->grpc;
	return 0;
}

enum { F_REQHDR = 1, F_RESPHDR = 2, F_REDIRECT = 4, F_REWRITE = 8 };

static int parse_filter(struct rctx *rc, json_t *jf, const char *what, struct pl_filter *f, struct bref *fm,
			int backend_level, unsigned *seen)
{
	if (!json_is_object(jf))
		return bad(rc, "%s: not a mapping", what);
	const char *type = sget(jf, "type");
	if (!type)
		return bad(rc, "%s.type is required", what);
	char w[256];
	unsigned bit = 0;
	if (rc->cr->grpc && strcmp(type, "RequestHeaderModifier") && strcmp(type, "ResponseHeaderModifier") &&
	    strcmp(type, "RequestMirror"))
		return bad(rc, "%s: filter type %.32s is not supported on a GRPCRoute", what, type);
	if (strcmp(type, "RequestHeaderModifier") == 0) {
		f->type = PL_FILTER_REQUEST_HEADER;
		bit = F_REQHDR;
		snprintf(w, sizeof(w), "%.128s.requestHeaderModifier", what);
		if (parse_header_mod(rc, json_object_get(jf, "requestHeaderModifier"), w, &f->u.hdr) != 0)
			return -1;
	} else if (strcmp(type, "ResponseHeaderModifier") == 0) {
		f->type = PL_FILTER_RESPONSE_HEADER;
		bit = F_RESPHDR;
		snprintf(w, sizeof(w), "%.128s.responseHeaderModifier", what);
		if (parse_header_mod(rc, json_object_get(jf, "responseHeaderModifier"), w, &f->u.hdr) != 0)
			return -1;
	} else if (backend_level) {
		return bad(rc, "%s: filter %.32s is not supported on a backendRef", what, type);
	} else if (strcmp(type, "RequestRedirect") == 0) {
		json_t *j = json_object_get(jf, "requestRedirect");
		struct pl_redirect *rd = &f->u.redirect;
		f->type = PL_FILTER_REDIRECT;
		bit = F_REDIRECT;
		if (!json_is_object(j))
			return bad(rc, "%s.requestRedirect is required", what);
		const char *scheme = NULL, *host = NULL;
		if (sopt(j, "scheme", &scheme) < 0 || (scheme && strcmp(scheme, "http") && strcmp(scheme, "https")))
			return bad(rc, "%s.requestRedirect.scheme must be http or https", what);
		rd->scheme = pl_arena_strdup(rc->c->a, scheme);
		if (sopt(j, "hostname", &host) < 0)
			return bad(rc, "%s.requestRedirect.hostname: not a string", what);
		if (host) {
			char hb[256];
			if (norm_hostname(host, hb, sizeof(hb), 0) != 0)
				return bad(rc, "%s.requestRedirect.hostname: invalid", what);
			rd->hostname = pl_arena_strdup(rc->c->a, hb);
		}
		long long v = 0;
		int r = iget(j, "port", &v);
		if (r < 0 || (r == 1 && (v < 1 || v > 65535)))
			return bad(rc, "%s.requestRedirect.port: must be 1..65535", what);
		rd->port = (int)v;
		v = 302;
		r = iget(j, "statusCode", &v);
		if (r < 0 || (v != 301 && v != 302))
			return bad(rc, "%s.requestRedirect.statusCode: must be 301 or 302", what);
		rd->status_code = (int)v;
		snprintf(w, sizeof(w), "%.128s.requestRedirect.path", what);
		if (parse_path_mod(rc, json_object_get(j, "path"), w, &rd->path) != 0)
			return -1;
	} else if (strcmp(type, "URLRewrite") == 0) {
		json_t *j = json_object_get(jf, "urlRewrite");
		struct pl_rewrite *rw = &f->u.rewrite;
		f->type = PL_FILTER_REWRITE;
		bit = F_REWRITE;
		if (!json_is_object(j))
			return bad(rc, "%s.urlRewrite is required", what);
		const char *host = NULL;
		if (sopt(j, "hostname", &host) < 0)
			return bad(rc, "%s.urlRewrite.hostname: not a string", what);
		if (host) {
			char hb[256];
			if (norm_hostname(host, hb, sizeof(hb), 0) != 0)
				return bad(rc, "%s.urlRewrite.hostname: invalid", what);
			rw->hostname = pl_arena_strdup(rc->c->a, hb);
		}
		snprintf(w, sizeof(w), "%.128s.urlRewrite.path", what);
		if (parse_path_mod(rc, json_object_get(j, "path"), w, &rw->path) != 0)
			return -1;
	} else if (strcmp(type, "RequestMirror") == 0) {
		json_t *j = json_object_get(jf, "requestMirror");
		struct pl_mirror *mi = &f->u.mirror;
		f->type = PL_FILTER_MIRROR;
		if (!json_is_object(j))
			return bad(rc, "%s.requestMirror is required", what);
		snprintf(w, sizeof(w), "%.128s.requestMirror.backendRef", what);
		if (resolve_ref(rc, json_object_get(j, "backendRef"), w, fm) != 0)
			return -1;
		long long pct = 0;
		int hp = iget(j, "percent", &pct);
		json_t *fr = json_object_get(j, "fraction");
		mi->percent_num = mi->percent_den = 1;
		if (hp < 0 || (hp == 1 && (pct < 0 || pct > 100)))
			return bad(rc, "%s.requestMirror.percent: must be 0..100", what);
		if (hp == 1 && fr && !json_is_null(fr))
			return bad(rc, "%s.requestMirror: percent and fraction are exclusive", what);
		if (hp == 1) {
			mi->percent_num = (uint32_t)pct;
			mi->percent_den = 100;
		} else if (fr && !json_is_null(fr)) {
			long long num = 0, den = 100;
			if (iget(fr, "numerator", &num) != 1 || iget(fr, "denominator", &den) < 0 || num < 0 ||
			    den < 1 || num > den || den > 1000000)
				return bad(rc, "%s.requestMirror.fraction: need 0 <= numerator <= denominator, denominator >= 1",
					   what);
			mi->percent_num = (uint32_t)num;
			mi->percent_den = (uint32_t)den;
		}
	} else {
		return bad(rc, "%s: filter type %.32s is not supported", what, type);
	}
	if (bit) {
		if (*seen & bit)
			return bad(rc, "%s: filter %s given more than once", what, type);
		*seen |= bit;
	}
	return 0;
}

static int has_prefix_mod(const struct pl_filter *f, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		if (f[i].type == PL_FILTER_REDIRECT && f[i].u.redirect.path.type == PL_PATHMOD_PREFIX)
			return 1;
		if (f[i].type == PL_FILTER_REWRITE && f[i].u.rewrite.path.type == PL_PATHMOD_PREFIX)
			return 1;
	}
	return 0;
}

static uint32_t gcd32(uint32_t a, uint32_t b)
{
	while (b) {
		uint32_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* nginx's smooth weighted round-robin, unrolled into a schedule of backend indices. */
static void build_schedule(struct pl_arena *a, struct pl_rule *r)
{
	uint32_t n = r->n_backends;
	uint64_t w[MAX_BACKENDS], sum = 0;
	uint32_t g = 0;
	for (uint32_t i = 0; i < n; i++) {
		w[i] = r->backends[i].weight;
		g = gcd32(g, (uint32_t)w[i]);
	}
	if (g == 0) {
		r->n_schedule = 0;
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		w[i] /= g;
		sum += w[i];
	}
	if (sum > SCHED_CAP) {
		uint64_t ns = 0;
		g = 0;
		for (uint32_t i = 0; i < n; i++) {
			if (w[i]) {
				w[i] = PL_MAX(1, w[i] * SCHED_CAP / sum);
				g = gcd32(g, (uint32_t)w[i]);
			}
		}
		for (uint32_t i = 0; i < n; i++) {
			w[i] /= g;
			ns += w[i];
		}
		sum = ns;
	}
	r->schedule = aarr(a, sum, sizeof(uint16_t));
	r->n_schedule = (uint32_t)sum;
	int64_t cur[MAX_BACKENDS] = { 0 };
	for (uint64_t k = 0; k < sum; k++) {
		int best = -1;
		for (uint32_t i = 0; i < n; i++) {
			if (!w[i])
				continue;
			cur[i] += (int64_t)w[i];
			if (best < 0 || cur[i] > cur[best])
				best = (int)i;
		}
		cur[best] -= (int64_t)sum;
		r->schedule[k] = (uint16_t)best;
	}
}

static int parse_rule(struct rctx *rc, json_t *jr, uint32_t index, struct crule *out)
{
	struct ctx *c = rc->c;
	struct pl_arena *a = c->a;
	char w[256];
	if (!json_is_object(jr))
		return bad(rc, "spec.rules[%u]: not a mapping", index);
	struct pl_rule *r = pl_arena_alloc(a, sizeof(*r));
	r->route = pl_arena_strdup(a, rc->cr->full);
	r->rule_index = index;
	out->index = index;
	out->r = r;

	int b = 0;
	json_t *ms = aget(jr, "matches", &b), *fs = aget(jr, "filters", &b), *bs = aget(jr, "backendRefs", &b);
	if (b)
		return bad(rc, "spec.rules[%u]: matches, filters and backendRefs must be lists", index);
	size_t nm = json_array_size(ms), nf = json_array_size(fs), nb = json_array_size(bs), i;
	if (nm > MAX_MATCHES || nf > MAX_FILTERS || nb > MAX_BACKENDS)
		return bad(rc, "spec.rules[%u]: at most %d matches, %d filters, %d backendRefs", index, MAX_MATCHES,
			   MAX_FILTERS, MAX_BACKENDS);

	/* no matches: one PathPrefix "/" match (the CRD default) */
	out->nm = nm ? (uint32_t)nm : 1;
	out->m = aarr(a, out->nm, sizeof(struct pl_match));
	out->grank = aarr(c->tmp, out->nm, sizeof(uint32_t));   /* precedence keys: compile time only */
	if (!nm) {
		out->m[0].path_type = PL_PATH_PREFIX;
		out->m[0].path = pl_arena_strdup(a, "/");
		out->m[0].path_len = 1;
	}
	json_t *e;
	json_array_foreach(ms, i, e) {
		snprintf(w, sizeof(w), "spec.rules[%u].matches[%zu]", index, i);
		if (rc->cr->grpc ? parse_grpc_match(rc, e, &out->m[i], &out->grank[i], w) != 0
				 : parse_match(rc, e, &out->m[i], w) != 0)
			return -1;
	}

	unsigned seen = 0;
	r->filters = aarr(a, nf, sizeof(struct pl_filter));
	out->fm = aarr(a, nf, sizeof(struct bref));
	json_array_foreach(fs, i, e) {
		snprintf(w, sizeof(w), "spec.rules[%u].filters[%zu]", index, i);
		if (parse_filter(rc, e, w, &r->filters[i], &out->fm[i], 0, &seen) != 0)
			return -1;
	}
	r->n_filters = (uint32_t)nf;
	if ((seen & F_REDIRECT) && (seen & F_REWRITE))
		return bad(rc, "spec.rules[%u]: RequestRedirect and URLRewrite cannot be used together", index);
	if (has_prefix_mod(r->filters, r->n_filters)) {
		for (uint32_t k = 0; k < out->nm; k++)
			if (out->m[k].path_type != PL_PATH_PREFIX)
				return bad(rc, "spec.rules[%u]: ReplacePrefixMatch needs PathPrefix matches only", index);
	}

	json_t *to = rc->cr->grpc ? NULL : json_object_get(jr, "timeouts");
	if (to && !json_is_null(to)) {
		const char *req = NULL, *be = NULL;
		if (!json_is_object(to) || sopt(to, "request", &req) < 0 || sopt(to, "backendRequest", &be) < 0)
			return bad(rc, "spec.rules[%u].timeouts: invalid", index);
		if (req && pl_gw_parse_duration(req, &r->timeout_request_ms) != 0)
			return bad(rc, "spec.rules[%u].timeouts.request: invalid duration \"%.32s\"", index, req);
		if (be && pl_gw_parse_duration(be, &r->timeout_backend_ms) != 0)
			return bad(rc, "spec.rules[%u].timeouts.backendRequest: invalid duration \"%.32s\"", index, be);
		if (r->timeout_request_ms && r->timeout_backend_ms > r->timeout_request_ms)
			return bad(rc, "spec.rules[%u].timeouts: backendRequest must not exceed request", index);
	}

	r->backends = aarr(a, nb, sizeof(struct pl_backend));
	out->bk = aarr(a, nb, sizeof(struct bref));
	json_array_foreach(bs, i, e) {
		struct pl_backend *be = &r->backends[i];
		snprintf(w, sizeof(w), "spec.rules[%u].backendRefs[%zu]", index, i);
		if (resolve_ref(rc, e, w, &out->bk[i]) != 0)
			return -1;
		long long wt = 1;
		int rw = iget(e, "weight", &wt);
		if (rw < 0 || wt < 0 || wt > 1000000)
			return bad(rc, "%s.weight: must be 0..1000000", w);
		be->weight = (uint32_t)wt;
		int fb = 0;
		json_t *bfs = aget(e, "filters", &fb), *bf;
		size_t nbf = json_array_size(bfs), j;
		if (fb || nbf > MAX_FILTERS)
			return bad(rc, "%s.filters: must be a list of at most %d", w, MAX_FILTERS);
		be->filters = aarr(a, nbf, sizeof(struct pl_filter));
		unsigned bseen = 0;
		json_array_foreach(bfs, j, bf) {
			char w2[256];
			snprintf(w2, sizeof(w2), "%.128s.filters[%zu]", w, j);
			if (parse_filter(rc, bf, w2, &be->filters[j], NULL, 1, &bseen) != 0)
				return -1;
		}
		be->n_filters = (uint32_t)nbf;
	}
	r->n_backends = (uint32_t)nb;
	build_schedule(a, r);
	return 0;
}

static void parse_route(struct ctx *c, struct croute *cr)
{
	json_t *spec = json_object_get(cr->o->json, "spec");
	struct rctx rc = { .c = c, .cr = cr };
	cr->key = tprintf(c, "%s/%s", cr->o->ns, cr->o->name);
	cr->full = tprintf(c, "%s/%s/%s", cr->kind, cr->o->ns, cr->o->name);

	int b = 0;
	json_t *hs = aget(spec, "hostnames", &b), *h;
	size_t n = json_array_size(hs), i;
	if (b || n > MAX_HOSTNAMES) {
		cr->invalid = 1;
		snprintf(cr->invalid_msg, sizeof(cr->invalid_msg), "spec.hostnames must be a list of at most %d",
			 MAX_HOSTNAMES);
		return;
	}
	cr->hosts = aarr(c->tmp, n, sizeof(char *));
	json_array_foreach(hs, i, h) {
		char buf[256];
		const char *s = json_string_value(h);
		if (!s || norm_hostname(s, buf, sizeof(buf), 1) != 0) {
			cr->invalid = 1;
			snprintf(cr->invalid_msg, sizeof(cr->invalid_msg), "spec.hostnames[%zu]: invalid hostname", i);
			return;
		}
		cr->hosts[cr->n_hosts++] = pl_arena_strdup(c->tmp, buf);
	}

	json_t *rules = aget(spec, "rules", &b), *jr;
	if (b || json_array_size(rules) > MAX_RULES) {
		cr->invalid = 1;
		snprintf(cr->invalid_msg, sizeof(cr->invalid_msg), "spec.rules must be a list of at most %d", MAX_RULES);
		return;
	}
	size_t nr = json_array_size(rules);
	cr->rules = aarr(c->tmp, nr ? nr : 1, sizeof(struct crule));
	if (!nr) {
		/* the CRD default: one rule matching everything, no backends (500) */
		json_t *def = J(json_object());
		if (parse_rule(&rc, def, 0, &cr->rules[0]) == 0)
			cr->n_rules = 1;
		json_decref(def);
		return;
	}
	json_array_foreach(rules, i, jr) {
		struct crule tmp = { 0 };
		if (parse_rule(&rc, jr, (uint32_t)i, &tmp) == 0) {
			cr->rules[cr->n_rules++] = tmp;
		} else {
			if (!cr->n_dropped)
				snprintf(cr->drop_msg, sizeof(cr->drop_msg), "%s", rc.why);
			cr->n_dropped++;
		}
	}
}

/* Listener l allows routes from namespace ns? */
static int ns_allowed(struct ctx *c, const struct lst *l, const char *ns)
{
	switch (l->from) {
	case FROM_SAME:
		return strcmp(ns, l->gw->o->ns) == 0;
	case FROM_ALL:
		return 1;
	case FROM_SELECTOR:
		return selector_matches(c, l->selector, ns) == 1;
	default:
		return 0;
	}
}

static void attach(struct ctx *c, struct lst *l, struct croute *cr, char **hosts, size_t n)
{
	/*
	 * Routes attach one after the other (all parentRefs of one route, then
	 * the next): cr's attachment to l, if any, is the last one.
	 */
	struct attach *at = NULL;
	if (l->att.n && ((struct attach *)l->att.v[l->att.n - 1])->r == cr)
		at = l->att.v[l->att.n - 1];
	if (!at) {
		at = pl_arena_alloc(c->tmp, sizeof(*at));
		at->r = cr;
		vpush(c->tmp, &l->att, at);
		l->attached++;
		if (!cr->stats_listener)
			cr->stats_listener = l->fullname;
		if (!cr->gw)
			cr->gw = l->gw;
	}
	for (size_t i = 0; i < n; i++) {
		int dup = 0;
		for (size_t j = 0; j < at->hosts.n; j++)
			if (strcmp(at->hosts.v[j], hosts[i]) == 0)
				dup = 1;
		if (!dup)
			vpush(c->tmp, &at->hosts, hosts[i]);
	}
}

static json_t *parent_ref_echo(json_t *pr, const char *group, const char *kind)
{
	json_t *e = J(json_object());
	jset(e, "group", json_string(group));
	jset(e, "kind", jstr(kind));
	const char *s;
	if (sopt(pr, "namespace", &s) == 1)
		jset(e, "namespace", jstr(s));
	jset(e, "name", jstr(sget(pr, "name")));
	if (sopt(pr, "sectionName", &s) == 1)
		jset(e, "sectionName", jstr(s));
	long long port;
	if (iget(pr, "port", &port) == 1)
		jset(e, "port", json_integer(port));
	return e;
}

static void route_parent(struct ctx *c, struct croute *cr, json_t *pr)
{
	const char *group = GW_GROUP, *kind = "Gateway", *ns = cr->o->ns, *name = NULL, *section = NULL;
	long long port = 0;
	if (!json_is_object(pr) || sopt(pr, "group", &group) < 0 || sopt(pr, "kind", &kind) < 0 ||
	    sopt(pr, "namespace", &ns) < 0 || sopt(pr, "name", &name) != 1 || sopt(pr, "sectionName", &section) < 0 ||
	    iget(pr, "port", &port) < 0)
		return;   /* malformed: no controller could claim it */
	if (strcmp(group, GW_GROUP) != 0 || strcmp(kind, "Gateway") != 0)
		return;
	struct gw *g = find_gw(c, ns, name);
	const char *reason = NULL;
	char msg[300] = "";
	const char *ctl;
	if (!g) {
		/* serving every class: a Gateway that does not exist is ours to report */
		if (c->o->controller_name || pl_store_get(c->s, PL_K_GATEWAY, ns, name))
			return;
		ctl = PL_DEFAULT_CONTROLLER_NAME;
		reason = "NoMatchingParent";
		snprintf(msg, sizeof(msg), "Gateway %s/%s not found", ns, name);
	} else {
		ctl = g->controller;
	}

	if (!reason && cr->invalid) {
		reason = "UnsupportedValue";
		snprintf(msg, sizeof(msg), "%s", cr->invalid_msg);
	}
	if (!reason && g->acc_bad) {
		reason = "NoMatchingParent";
		snprintf(msg, sizeof(msg), "Gateway %s/%s is not accepted", ns, name);
	}
	struct lst *cand[MAX_LISTENERS];
	size_t nc = 0;
	if (!reason) {
		size_t sel = 0, prog = 0;
		for (size_t i = 0; i < g->n; i++) {
			struct lst *l = &g->l[i];
			if (l->dup || (section && strcmp(l->name, section) != 0) || (port && l->port != port))
				continue;
			sel++;
			if (!lst_attachable(l))
				continue;
			prog++;
			if ((cr->grpc ? l->grpc_route_ok : l->http_route_ok && !strcmp(l->route_kind, cr->kind)) &&
			    ns_allowed(c, l, cr->o->ns))
				cand[nc++] = l;
		}
		if (!sel) {
			reason = "NoMatchingParent";
			snprintf(msg, sizeof(msg), "Gateway %s/%s has no listener%s%s%s", ns, name,
				 section ? " named " : "", section ? section : "", port ? " on that port" : "");
		} else if (!prog) {
			reason = "NoMatchingParent";
			snprintf(msg, sizeof(msg), "no selected listener of Gateway %s/%s is programmed", ns, name);
		} else if (!nc) {
			reason = "NotAllowedByListeners";
			snprintf(msg, sizeof(msg), "no listener of Gateway %s/%s allows %ss from namespace %s", ns,
				 name, cr->kind, cr->o->ns);
		}
	}
	/* hostnames: route x listener intersections */
	char **hosts[MAX_LISTENERS];
	size_t nh[MAX_LISTENERS];
	size_t attachable = 0;
	if (!reason) {
		for (size_t i = 0; i < nc; i++) {
			struct lst *l = cand[i];
			hosts[i] = aarr(c->tmp, cr->n_hosts ? cr->n_hosts : 1, sizeof(char *));
			nh[i] = 0;
			if (!cr->n_hosts) {
				hosts[i][nh[i]++] = l->host;
			} else {
				for (size_t k = 0; k < cr->n_hosts; k++) {
					char buf[256];
					if (pl_gw_host_intersect(l->host, cr->hosts[k], buf, sizeof(buf)))
						hosts[i][nh[i]++] = pl_arena_strdup(c->tmp, buf);
				}
			}
			if (nh[i])
				attachable++;
		}
		if (!attachable) {
			reason = "NoMatchingListenerHostname";
			snprintf(msg, sizeof(msg), "no hostname of the route matches a listener of Gateway %s/%s", ns, name);
		}
	}
	if (!reason && cr->n_rules == 0) {
		reason = "UnsupportedValue";
		snprintf(msg, sizeof(msg), "all rules are invalid: %s", cr->drop_msg);
	}
	if (!reason) {
		for (size_t i = 0; i < nc; i++)
			if (nh[i])
				attach(c, cand[i], cr, hosts[i], nh[i]);
	}

	json_t *p = J(json_object());
	jset(p, "parentRef", parent_ref_echo(pr, group, kind));
	jset(p, "controllerName", jstr(ctl));
	json_t *conds = J(json_array());
	if (reason)
		jpush(conds, cond(c, cr->o, "Accepted", 0, reason, msg));
	else
		jpush(conds, cond(c, cr->o, "Accepted", 1, "Accepted", "Route is accepted"));
	if (cr->refs_reason)
		jpush(conds, cond(c, cr->o, "ResolvedRefs", 0, cr->refs_reason, cr->refs_msg));
	else
		jpush(conds, cond(c, cr->o, "ResolvedRefs", 1, "ResolvedRefs", "All references are resolved"));
	if (cr->n_dropped && cr->n_rules) {
		snprintf(msg, sizeof(msg), "%zu rule(s) dropped: %s", cr->n_dropped, cr->drop_msg);
		jpush(conds, cond(c, cr->o, "PartiallyInvalid", 1, "UnsupportedValue", msg));
	}
	jset(p, "conditions", conds);
	jpush(cr->parents, p);
}

static void pass_routes(struct ctx *c)
{
	static const enum pl_kind rkinds[] = { PL_K_HTTPROUTE, PL_K_GRPCROUTE, PL_K_TLSROUTE, PL_K_TCPROUTE,
					       PL_K_UDPROUTE };
	const struct pl_obj *const *v;
	size_t total = 0;
	for (size_t k = 0; k < PL_ARRAY_LEN(rkinds); k++)
		total += pl_store_list(c->s, rkinds[k], &v);
	c->routes = aarr(c->tmp, total, sizeof(struct croute));
	c->n_routes = total;
	size_t at = 0;
	for (size_t k = 0; k < PL_ARRAY_LEN(rkinds); k++) {
		size_t n = pl_store_list(c->s, rkinds[k], &v);
		for (size_t i = 0; i < n; i++) {
			c->routes[at].o = v[i];
			c->routes[at].kind = pl_kind_str(rkinds[k]);
			c->routes[at].svc_proto = rkinds[k] == PL_K_UDPROUTE ? "UDP" : "TCP";
			c->routes[at].grpc = rkinds[k] == PL_K_GRPCROUTE;
			at++;
		}
	}
	for (size_t i = 0; i < total; i++) {
		struct croute *cr = &c->routes[i];
		cr->parents = J(json_array());
		json_t *spec = json_object_get(cr->o->json, "spec");
		int b = 0;
		json_t *prs = aget(spec, "parentRefs", &b), *pr;
		if (!json_array_size(prs))
			continue;
		parse_route(c, cr);
		size_t k;
		json_array_foreach(prs, k, pr) {
			if (k >= MAX_PARENTREFS)
				break;
			route_parent(c, cr, pr);
		}
	}
}

/* ---------------------------------------------------------------- pass 4: the table */

static void index_slices(struct ctx *c)
{
	const struct pl_obj *const *v;
	size_t n = pl_store_list(c->s, PL_K_ENDPOINTSLICE, &v);
	for (size_t i = 0; i < n; i++) {
		const char *svc = sget(json_object_get(json_object_get(v[i]->json, "metadata"), "labels"),
				       "kubernetes.io/service-name");
		if (!svc)
			continue;
		char *key = tprintf(c, "%s/%s", v[i]->ns, svc);
		json_t *arr = json_object_get(c->slices, key);
		if (!arr) {
			arr = J(json_array());
			jset(c->slices, key, arr);
		}
		jpush(arr, json_integer((json_int_t)i));
	}
}

/*
 * Endpoints already in a cluster, by text: slices of one Service may repeat
 * an address, and a scan per endpoint was quadratic in a large Service. Open
 * addressing over indexes into eps, in the scratch arena.
 */
struct epset {
	uint32_t *slot;              /* index into eps + 1; 0: empty */
	size_t cap;                  /* power of two */
};

static uint64_t ep_hash(const char *s)
{
	return fnv1a(1469598103934665603ull, s, strlen(s));
}

static void ep_insert(struct epset *set, struct vec *eps, size_t idx)
{
	size_t mask = set->cap - 1, h = (size_t)ep_hash(((struct pl_endpoint *)eps->v[idx])->text) & mask;
	while (set->slot[h])
		h = (h + 1) & mask;
	set->slot[h] = (uint32_t)idx + 1;
}

/* 1 if text is in eps already; else 0, and text is recorded at index eps->n: push it next. */
static int ep_seen(struct ctx *c, struct epset *set, struct vec *eps, const char *text)
{
	if ((eps->n + 1) * 2 > set->cap) {
		set->cap = set->cap ? set->cap * 2 : 16;
		set->slot = aarr(c->tmp, set->cap, sizeof(*set->slot));
		memset(set->slot, 0, set->cap * sizeof(*set->slot));
		for (size_t q = 0; q < eps->n; q++)
			ep_insert(set, eps, q);
	}
	size_t mask = set->cap - 1, h;
	for (h = (size_t)ep_hash(text) & mask; set->slot[h]; h = (h + 1) & mask)
		if (strcmp(((struct pl_endpoint *)eps->v[set->slot[h] - 1])->text, text) == 0)
			return 1;
	set->slot[h] = (uint32_t)eps->n + 1;   /* the caller pushes it next */
	return 0;
}

static void add_endpoints(struct ctx *c, struct pl_cluster *cl, const struct bref *b, struct vec *eps)
{
	struct epset seen = { 0 };
	const char *pname = sget(b->port, "name");
	if (!pname)
		pname = "";
	const char *want_proto = sget(b->port, "protocol");
	if (!want_proto)
		want_proto = "TCP";
	char key[600];
	snprintf(key, sizeof(key), "%s/%s", b->svc->ns, b->svc->name);
	json_t *arr = json_object_get(c->slices, key), *ix;
	const struct pl_obj *const *v;
	pl_store_list(c->s, PL_K_ENDPOINTSLICE, &v);
	size_t i;
	json_array_foreach(arr, i, ix) {
		json_t *sl = v[json_integer_value(ix)]->json;
		const char *at = sget(sl, "addressType");
		int fam = at && !strcmp(at, "IPv4") ? AF_INET : at && !strcmp(at, "IPv6") ? AF_INET6 : 0;
		if (!fam)
			continue;
		int bd = 0;
		json_t *ports = aget(sl, "ports", &bd), *p, *eps_j = aget(sl, "endpoints", &bd), *e;
		long long port = -1;
		size_t k;
		json_array_foreach(ports, k, p) {
			const char *n = sget(p, "name"), *proto = sget(p, "protocol");
			long long pv;
			if (strcmp(n ? n : "", pname) == 0 && !strcmp(proto ? proto : "TCP", want_proto) &&
			    iget(p, "port", &pv) == 1 && pv >= 1 && pv <= 65535)
				port = pv;
		}
		if (port < 0)
			continue;
		json_array_foreach(eps_j, k, e) {
			int ab = 0;
			json_t *addrs = aget(e, "addresses", &ab);
			const char *ip = json_string_value(json_array_get(addrs, 0));
			if (!ip)
				continue;
			struct sockaddr_storage ss;
			memset(&ss, 0, sizeof(ss));
			socklen_t len;
			if (fam == AF_INET) {
				struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
				if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
					continue;
				sin->sin_family = AF_INET;
				sin->sin_port = htons((uint16_t)port);
				len = sizeof(*sin);
			} else {
				struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
				if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) != 1)
					continue;
				sin6->sin6_family = AF_INET6;
				sin6->sin6_port = htons((uint16_t)port);
				len = sizeof(*sin6);
			}
			char *text = fam == AF_INET ? pl_arena_printf(c->a, "%s:%lld", ip, port)
						    : pl_arena_printf(c->a, "[%s]:%lld", ip, port);
			if (ep_seen(c, &seen, eps, text))
				continue;
			json_t *rd = json_object_get(json_object_get(e, "conditions"), "ready");
			struct pl_endpoint *ep = pl_arena_alloc(c->tmp, sizeof(*ep));
			ep->addr = ss;
			ep->addrlen = len;
			ep->text = text;
			ep->ready = !json_is_false(rd);
			vpush(c->tmp, eps, ep);
		}
	}
	cl->eps = aarr(c->a, eps->n, sizeof(struct pl_endpoint));
	for (size_t q = 0; q < eps->n; q++)
		cl->eps[q] = *(struct pl_endpoint *)eps->v[q];
	cl->n_eps = (uint32_t)eps->n;
}

/* ---------------------------------------------------------------- BackendTLSPolicy */

/*
 * BackendTLSPolicy: parsed once per compilation, oldest first. A policy
 * targets Services (optionally one port, by sectionName); for a given
 * Service port the policy naming that port wins over one naming the whole
 * Service, and among equals the oldest wins: the others are Accepted=False
 * Conflicted. An applied policy that is unusable (no valid CA certificate,
 * bad hostname) still goes into the table with bt->error set, so the proxy
 * fails closed instead of talking plaintext.
 */
struct btarget {
	const char *svc;
	const char *section;         /* NULL: every port */
};

struct btls {
	const struct pl_obj *o;
	struct btarget *t;
	size_t n_t;
	const char *acc_reason;      /* NULL: accepted */
	char acc_msg[200];
	const char *refs_reason;     /* NULL: resolved */
	char refs_msg[200];
	struct pl_backend_tls *bt;   /* table arena */
	json_t *ancestors;           /* "ns/gw" -> controllerName */
	int conflicted;
};

static void btls_parse(struct ctx *c, struct btls *p)
{
	const struct pl_obj *o = p->o;
	json_t *spec = json_object_get(o->json, "spec");
	int bad = 0;
	json_t *trs = aget(spec, "targetRefs", &bad), *e;
	size_t i;
	p->t = aarr(c->tmp, json_array_size(trs), sizeof(*p->t));
	json_array_foreach(trs, i, e) {
		const char *g = sget(e, "group"), *k = sget(e, "kind"), *nm = sget(e, "name");
		if ((g && *g) || !k || strcmp(k, "Service") != 0 || !nm || !*nm)
			continue;   /* only core Services are supported targets */
		p->t[p->n_t].svc = nm;
		p->t[p->n_t].section = sget(e, "sectionName");
		p->n_t++;
	}
	json_t *val = json_object_get(spec, "validation");
	struct pl_backend_tls *bt = pl_arena_alloc(c->a, sizeof(*bt));
	memset(bt, 0, sizeof(*bt));
	p->bt = bt;
	bt->policy = pl_arena_printf(c->a, "%s/%s", o->ns, o->name);
	char host[256];
	const char *hn = sget(val, "hostname");
	if (!hn || norm_hostname(hn, host, sizeof(host), 0) != 0) {
		p->acc_reason = "Invalid";
		snprintf(p->acc_msg, sizeof(p->acc_msg), "validation.hostname %.100s is not a valid DNS name",
			 hn ? hn : "(missing)");
	} else {
		bt->sni = pl_arena_strdup(c->a, host);
	}
	json_t *sans = aget(val, "subjectAltNames", &bad);
	bt->sans = aarr(c->a, json_array_size(sans), sizeof(char *));
	json_array_foreach(sans, i, e) {
		const char *ty = sget(e, "type");
		const char *v = ty && !strcmp(ty, "Hostname") ? sget(e, "hostname") : ty && !strcmp(ty, "URI") ? sget(e, "uri")
													      : NULL;
		int ok = v && *v && strlen(v) < 1024;
		if (ok && !strcmp(ty, "Hostname"))
			ok = norm_hostname(v, host, sizeof(host), 1) == 0 && (v = host);
		else if (ok)
			ok = strchr(v, ':') != NULL;
		if (!ok) {
			p->acc_reason = "Invalid";
			snprintf(p->acc_msg, sizeof(p->acc_msg), "validation.subjectAltNames[%zu] is invalid", i);
			continue;
		}
		bt->sans[bt->n_sans++] = pl_arena_strdup(c->a, v);
	}
	const char *wk = sget(val, "wellKnownCACertificates");
	json_t *refs = aget(val, "caCertificateRefs", &bad);
	size_t nrefs = json_array_size(refs);
	if ((wk && nrefs) || (!wk && !nrefs) || (wk && strcmp(wk, "System") != 0)) {
		p->acc_reason = "Invalid";
		snprintf(p->acc_msg, sizeof(p->acc_msg),
			 "validation needs exactly one of caCertificateRefs and wellKnownCACertificates: System");
	}
	char *all = NULL;
	size_t all_len = 0;
	json_array_foreach(refs, i, e) {
		const char *g = sget(e, "group"), *k = sget(e, "kind"), *nm = sget(e, "name");
		if ((g && *g) || !k || strcmp(k, "ConfigMap") != 0) {
			p->refs_reason = "InvalidKind";
			snprintf(p->refs_msg, sizeof(p->refs_msg), "caCertificateRefs[%zu]: kind %.64s is not supported", i,
				 k ? k : "(missing)");
			continue;
		}
		const struct pl_obj *cm = nm ? pl_store_get(c->s, PL_K_CONFIGMAP, o->ns, nm) : NULL;
		const char *pem = cm ? sget(json_object_get(cm->json, "data"), "ca.crt") : NULL;
		size_t len = pem ? strlen(pem) : 0;
		if (!pem || len > 1024 * 1024 || !pem_certs_ok(pem, len)) {
			p->refs_reason = "InvalidCACertificateRef";
			snprintf(p->refs_msg, sizeof(p->refs_msg), "caCertificateRefs[%zu]: ConfigMap %s/%.100s %s", i, o->ns,
				 nm ? nm : "", cm ? "has no valid ca.crt" : "not found");
			continue;
		}
		char *n = pl_arena_alloc(c->a, all_len + len + 2);
		if (all_len)
			memcpy(n, all, all_len);
		memcpy(n + all_len, pem, len);
		n[all_len + len] = '\n';
		n[all_len + len + 1] = '\0';
		all = n;
		all_len += len + 1;
	}
	bt->ca_pem = all;
	if (nrefs && !all && !p->acc_reason) {
		p->acc_reason = "NoValidCACertificate";
		snprintf(p->acc_msg, sizeof(p->acc_msg), "no caCertificateRef resolves to a valid CA certificate");
	}
	if (p->acc_reason)
		bt->error = pl_arena_strdup(c->a, p->acc_msg);
	uint64_t h = FNV_INIT;
	if (bt->sni)
		h = fnv1a(h, bt->sni, strlen(bt->sni) + 1);
	if (all)
		h = fnv1a(h, all, all_len + 1);
	for (uint32_t k = 0; k < bt->n_sans; k++)
		h = fnv1a(h, bt->sans[k], strlen(bt->sans[k]) + 1);
	bt->fingerprint = h ? h : 1;
	p->ancestors = J(json_object());
}

static int btarget_same(const struct btarget *a, const struct btarget *b)
{
	if (strcmp(a->svc, b->svc) != 0)
		return 0;
	return (!a->section && !b->section) || (a->section && b->section && !strcmp(a->section, b->section));
}

static int cmp_btls(const void *pa, const void *pb)
{
	return cmp_created(((const struct btls *)pa)->o, ((const struct btls *)pb)->o);
}

static void pass_btls(struct ctx *c)
{
	const struct pl_obj *const *v;
	size_t n = pl_store_list(c->s, PL_K_BACKENDTLSPOLICY, &v);
	c->btls = aarr(c->tmp, n, sizeof(struct btls));
	c->n_btls = n;
	for (size_t i = 0; i < n; i++) {
		memset(&c->btls[i], 0, sizeof(c->btls[i]));
		c->btls[i].o = v[i];
	}
	qsort(c->btls, n, sizeof(struct btls), cmp_btls);
	for (size_t i = 0; i < n; i++) {
		struct btls *p = &c->btls[i];
		btls_parse(c, p);
		for (size_t j = 0; j < i && !p->conflicted; j++) {
			const struct btls *q = &c->btls[j];
			if (strcmp(q->o->ns, p->o->ns) != 0 || q->conflicted)
				continue;
			for (size_t a = 0; a < p->n_t; a++)
				for (size_t b = 0; b < q->n_t; b++)
					if (btarget_same(&p->t[a], &q->t[b]) && !p->conflicted) {
						p->conflicted = 1;
						p->acc_reason = "Conflicted";
						snprintf(p->acc_msg, sizeof(p->acc_msg),
							 "Service %s%s%s is already targeted by the older BackendTLSPolicy %s/%s",
							 p->t[a].svc, p->t[a].section ? " port " : "",
							 p->t[a].section ? p->t[a].section : "", q->o->ns, q->o->name);
					}
		}
	}
}

/* 2: targets exactly this port, 1: the whole Service, 0: not this port. */
static int btls_covers(const struct btls *p, const char *ns, const char *svc, const char *port_name)
{
	int best = 0;
	if (strcmp(p->o->ns, ns) != 0)
		return 0;
	for (size_t a = 0; a < p->n_t; a++) {
		if (strcmp(p->t[a].svc, svc) != 0)
			continue;
		if (!p->t[a].section)
			best = best > 1 ? best : 1;
		else if (port_name && !strcmp(p->t[a].section, port_name))
			best = 2;
	}
	return best;
}

/* The policy applying to a Service port: the most specific not-Conflicted one, oldest first. */
static struct btls *btls_for(struct ctx *c, const struct bref *b)
{
	struct btls *win = NULL;
	int win_score = 0;
	const char *pn = sget(b->port, "name");
	for (size_t i = 0; i < c->n_btls; i++) {
		struct btls *p = &c->btls[i];
		if (p->conflicted)
			continue;
		int s = btls_covers(p, b->svc->ns, b->svc->name, pn);
		if (s > win_score) {
			win = p;
			win_score = s;
		}
	}
	return win;
}

/* Records gw as an ancestor of every policy that targets the Service port of b. */
static void btls_note(struct ctx *c, const struct gw *g, const struct bref *b)
{
	if (!b->svc)
		return;
	const char *pn = sget(b->port, "name");
	for (size_t i = 0; i < c->n_btls; i++) {
		struct btls *p = &c->btls[i];
		if (btls_covers(p, b->svc->ns, b->svc->name, pn))
			jset(p->ancestors, tprintf(c, "%s/%s", g->o->ns, g->o->name), jstr(g->controller));
	}
}

static void pass_btls_ancestors(struct ctx *c)
{
	if (!c->n_btls)
		return;
	for (size_t g = 0; g < c->n_gws; g++) {
		struct gw *gw = &c->gws[g];
		for (size_t k = 0; k < gw->n; k++) {
			struct lst *l = &gw->l[k];
			for (size_t a = 0; a < l->att.n; a++) {
				const struct croute *cr = ((struct attach *)l->att.v[a])->r;
				for (size_t r = 0; r < cr->n_rules; r++) {
					const struct crule *ru = &cr->rules[r];
					for (uint32_t b = 0; b < ru->r->n_backends; b++)
						btls_note(c, gw, &ru->bk[b]);
					for (uint32_t f = 0; f < ru->r->n_filters; f++)
						if (ru->r->filters[f].type == PL_FILTER_MIRROR)
							btls_note(c, gw, &ru->fm[f]);
				}
			}
		}
	}
}

static json_t *btls_status(struct ctx *c, const struct btls *p)
{
	json_t *anc = J(json_array());
	const char *key;
	json_t *ctl;
	json_object_foreach(p->ancestors, key, ctl) {
		const char *slash = strchr(key, '/');
		json_t *a = J(json_object());
		json_t *ref = J(json_object());
		jset(ref, "group", json_string(GW_GROUP));
		jset(ref, "kind", json_string("Gateway"));
		jset(ref, "name", jstr(slash + 1));
		jset(ref, "namespace", J(json_stringn(key, (size_t)(slash - key))));
		jset(a, "ancestorRef", ref);
		jset(a, "controllerName", json_incref(ctl));
		json_t *conds = J(json_array());
		if (p->acc_reason)
			jpush(conds, cond(c, p->o, "Accepted", 0, p->acc_reason, p->acc_msg));
		else
			jpush(conds, cond(c, p->o, "Accepted", 1, "Accepted", "Policy is accepted"));
		if (p->refs_reason)
			jpush(conds, cond(c, p->o, "ResolvedRefs", 0, p->refs_reason, p->refs_msg));
		else
			jpush(conds, cond(c, p->o, "ResolvedRefs", 1, "ResolvedRefs", "All references are resolved"));
		jset(a, "conditions", conds);
		jpush(anc, a);
	}
	json_t *st = J(json_object());
	jset(st, "ancestors", anc);
	return st;
}

static struct pl_cluster *cluster_get(struct ctx *c, const struct bref *b, const struct gw *g)
{
	if (!b || !b->svc)
		return NULL;
	const struct btls *bp = btls_for(c, b);
	/* TLS with the Gateway's client certificate: a cluster of its own, so its pool never mixes identities */
	const struct gw *cg = bp && bp->bt && g && g->bk_crt ? g : NULL;
	long long port = 0;
	iget(b->port, "port", &port);
	const char *sp = sget(b->port, "protocol"), *ap = sget(b->port, "appProtocol");
	/* gRPC needs HTTP/2: a GRPCRoute's backend without appProtocol is spoken to as h2c (its own cluster) */
	int infer_h2c = b->grpc && (!ap || !*ap);
	char *name = sp && !strcmp(sp, "UDP") ? tprintf(c, "%s/%s:%lld/UDP", b->svc->ns, b->svc->name, port)
		     : infer_h2c	      ? tprintf(c, "%s/%s:%lld/h2c", b->svc->ns, b->svc->name, port)
					      : tprintf(c, "%s/%s:%lld", b->svc->ns, b->svc->name, port);
	if (cg)
		name = tprintf(c, "%s/gw=%s/%s", name, cg->o->ns, cg->o->name);
	json_t *ix = json_object_get(c->cluster_index, name);
	if (ix)
		return c->clusters.v[json_integer_value(ix)];
	struct pl_cluster *cl = pl_arena_alloc(c->a, sizeof(*cl));
	cl->name = pl_arena_strdup(c->a, name);
	cl->id = c->o->ephemeral ? (uint32_t)c->clusters.n + 1 : cluster_id(name);
	int ok;
	cl->app_proto = infer_h2c ? PL_APP_H2C : app_proto(ap, &ok);
	cl->tls = bp ? bp->bt : NULL;
	if (cg) {
		struct pl_backend_tls *bt = pl_arena_alloc(c->a, sizeof(*bt));
		*bt = *bp->bt;
		bt->client_cert_pem = cg->bk_crt;
		bt->client_key_pem = cg->bk_key;
		bt->fingerprint = fnv1a(bt->fingerprint, &cg->bk_fp, sizeof(cg->bk_fp));
		cl->tls = bt;
	}
	atomic_init(&cl->rr, 0);
	struct vec eps = { 0 };
	add_endpoints(c, cl, b, &eps);
	jset(c->cluster_index, name, json_integer((json_int_t)c->clusters.n));
	vpush(c->tmp, &c->clusters, cl);
	return cl;
}

static void materialize(struct ctx *c, struct croute *cr)
{
	if (cr->materialized)
		return;
	cr->materialized = 1;
	struct pl_route_stats *stats = NULL;
	if (!c->o->ephemeral && cr->n_rules)
		stats = pl_stats_route(cr->rules[0].r->route, cr->stats_listener);
	for (size_t i = 0; i < cr->n_rules; i++) {
		struct crule *ru = &cr->rules[i];
		struct pl_rule *r = ru->r;
		for (uint32_t b = 0; b < r->n_backends; b++)
			r->backends[b].cluster = cluster_get(c, &ru->bk[b], cr->gw);
		for (uint32_t f = 0; f < r->n_filters; f++)
			if (r->filters[f].type == PL_FILTER_MIRROR)
				r->filters[f].u.mirror.cluster = cluster_get(c, &ru->fm[f], cr->gw);
		atomic_init(&r->sched_pos, 0);
		r->stats = stats;
	}
}

/* Most specific host first: exact (by name), wildcards by longer suffix, then any. */
static int cmp_host(const char *a, const char *b)
{
	enum hkind ka = hkind(a), kb = hkind(b);
	if (ka != kb)
		return ka < kb ? -1 : 1;
	size_t la = strlen(a), lb = strlen(b);
	if (ka == H_WILD && la != lb)
		return la > lb ? -1 : 1;
	return strcmp(a, b);
}

static int cmp_lst_ptr(const void *pa, const void *pb)
{
	const struct lst *a = *(struct lst *const *)pa, *b = *(struct lst *const *)pb;
	int r = cmp_host(a->host, b->host);
	return r ? r : strcmp(a->fullname, b->fullname);
}

static int cmp_str_host(const void *pa, const void *pb)
{
	return cmp_host(*(const char *const *)pa, *(const char *const *)pb);
}

struct ent {
	struct pl_match *m;
	struct pl_rule *rule;
	const struct croute *cr;
	const char *host;            /* the route hostname that put it in this vhost */
	uint32_t match_idx;
	uint32_t grank;              /* GRPCRoute: service chars << 16 | method chars */
};

static int path_rank(enum pl_path_match t)
{
	return t == PL_PATH_EXACT ? 0 : t == PL_PATH_PREFIX ? 1 : 2;
}

/* The spec's precedence, most important key first. */
static int cmp_ent(const void *pa, const void *pb)
{
	const struct ent *a = pa, *b = pb;
	enum hkind ha = hkind(a->host), hb = hkind(b->host);
	if (ha != hb)
		return ha < hb ? -1 : 1;
	size_t la = strlen(a->host), lb = strlen(b->host);
	if (la != lb)
		return la > lb ? -1 : 1;
	/*
	 * The spec forbids merging GRPCRoutes and HTTPRoutes but leaves their
	 * order on a shared hostname open: gRPC entries go first, they only
	 * match "/service/method" paths, an HTTPRoute's "/" would swallow them.
	 */
	if (a->cr->grpc != b->cr->grpc)
		return a->cr->grpc ? -1 : 1;
	if (a->cr->grpc) {
		if ((a->grank >> 16) != (b->grank >> 16))
			return (a->grank >> 16) > (b->grank >> 16) ? -1 : 1;
		if ((a->grank & 0xffff) != (b->grank & 0xffff))
			return (a->grank & 0xffff) > (b->grank & 0xffff) ? -1 : 1;
		if (a->m->n_headers != b->m->n_headers)
			return a->m->n_headers > b->m->n_headers ? -1 : 1;
		goto age;
	}
	int ra = path_rank(a->m->path_type), rb = path_rank(b->m->path_type);
	if (ra != rb)
		return ra < rb ? -1 : 1;
	if (a->m->path_len != b->m->path_len)
		return a->m->path_len > b->m->path_len ? -1 : 1;
	if (!a->m->method != !b->m->method)
		return a->m->method ? -1 : 1;
	if (a->m->n_headers != b->m->n_headers)
		return a->m->n_headers > b->m->n_headers ? -1 : 1;
	if (a->m->n_queries != b->m->n_queries)
		return a->m->n_queries > b->m->n_queries ? -1 : 1;
age:
	if (a->cr != b->cr) {
		const struct pl_obj *oa = a->cr->o, *ob = b->cr->o;
		if (oa->created_ns != ob->created_ns)
			return oa->created_ns < ob->created_ns ? -1 : 1;
		if (oa->created_ns == INT64_MAX && oa->seq != ob->seq)
			return oa->seq < ob->seq ? -1 : 1;
		int r = strcmp(a->cr->key, b->cr->key);
		if (r)
			return r;
	}
	if (a->rule->rule_index != b->rule->rule_index)
		return a->rule->rule_index < b->rule->rule_index ? -1 : 1;
	if (a->match_idx != b->match_idx)
		return a->match_idx < b->match_idx ? -1 : 1;
	/* equal so far: keep a total order (deterministic across qsort implementations) */
	int r = strcmp(a->m->path, b->m->path);
	return r ? r : (a->m < b->m ? -1 : a->m > b->m);
}

/*
 * A listener's attachments indexed by hostname, so a vhost finds the routes
 * covering it with a few lookups: exact and wildcard hosts by their text
 * (a vhost "a.b.c" looks up "a.b.c", "*.b.c" and "*.c"), "any" in a list.
 */
struct hostindex {
	json_t *byhost;              /* host -> [attachment index] */
	struct vec any;              /* struct attach * with an "any" host */
};

static void index_attachments(struct ctx *c, struct lst *l, struct hostindex *hi)
{
	hi->byhost = J(json_object());
	for (size_t i = 0; i < l->att.n; i++) {
		struct attach *at = l->att.v[i];
		int any = 0;
		for (size_t k = 0; k < at->hosts.n; k++) {
			const char *h = at->hosts.v[k];
			if (hkind(h) == H_ANY) {
				any = 1;
				continue;
			}
			json_t *arr = json_object_get(hi->byhost, h);
			if (!arr) {
				arr = J(json_array());
				jset(hi->byhost, h, arr);
			}
			jpush(arr, json_integer((json_int_t)i));
		}
		if (any)
			vpush(c->tmp, &hi->any, at);
	}
}

/* The most specific hostname of at covering vhost, or NULL. exact_only: only vhost itself. */
static const char *best_host(const struct attach *at, const char *vhost, int exact_only)
{
	const char *best = NULL;
	for (size_t k = 0; k < at->hosts.n; k++) {
		const char *h = at->hosts.v[k];
		if (exact_only ? strcmp(h, vhost) == 0 : host_covers(h, vhost))
			if (!best || cmp_host(h, best) < 0)
				best = h;
	}
	return best;
}

static void visit(struct lst *l, json_t *arr, unsigned long mark, const char *vhost, int exact_only,
		  void (*fn)(void *arg, struct attach *at, const char *host), void *arg)
{
	size_t i;
	json_t *ix;
	json_array_foreach(arr, i, ix) {
		struct attach *at = l->att.v[json_integer_value(ix)];
		if (at->mark == mark)
			continue;
		const char *h = best_host(at, vhost, exact_only);
		if (!h)
			continue;
		at->mark = mark;
		fn(arg, at, h);
	}
}

/* Calls fn once for each attachment with a hostname covering vhost, with its best such hostname. */
static void for_covering(struct ctx *c, struct lst *l, const struct hostindex *hi, const char *vhost, int exact_only,
			 void (*fn)(void *arg, struct attach *at, const char *host), void *arg)
{
	unsigned long mark = ++c->mark;
	enum hkind vk = hkind(vhost);
	if (vk != H_ANY) {
		visit(l, json_object_get(hi->byhost, vhost), mark, vhost, exact_only, fn, arg);
		if (!exact_only) {
			/* wildcards covering vhost: "*" + each suffix starting at a '.' after the first label */
			char key[300];
			for (const char *p = strchr(vk == H_WILD ? vhost + 2 : vhost, '.'); p; p = strchr(p + 1, '.')) {
				snprintf(key, sizeof(key), "*%s", p);
				visit(l, json_object_get(hi->byhost, key), mark, vhost, 0, fn, arg);
			}
		}
	}
	for (size_t k = 0; k < hi->any.n; k++) {
		struct attach *at = hi->any.v[k];
		if (at->mark == mark || (exact_only && vk != H_ANY))
			continue;
		at->mark = mark;
		fn(arg, at, best_host(at, vhost, exact_only));
	}
}

struct entvec {
	struct ctx *c;
	struct ent *v;
	size_t n, cap;
	size_t count;                /* counting pass: entries only */
	int counting;
};

static void add_route_entries(void *arg, struct attach *at, const char *host)
{
	struct entvec *ev = arg;
	struct croute *cr = at->r;
	for (size_t r = 0; r < cr->n_rules; r++) {
		if (ev->counting) {
			ev->count += cr->rules[r].nm;
			continue;
		}
		for (uint32_t m = 0; m < cr->rules[r].nm; m++) {
			if (ev->n == ev->cap) {
				size_t ncap = ev->cap ? ev->cap * 2 : 16;
				struct ent *ne = aarr(ev->c->tmp, ncap, sizeof(*ne));
				if (ev->n)
					memcpy(ne, ev->v, ev->n * sizeof(*ne));
				ev->v = ne;
				ev->cap = ncap;
			}
			ev->v[ev->n++] = (struct ent){ .m = &cr->rules[r].m[m], .rule = cr->rules[r].r, .cr = cr,
						       .host = host, .match_idx = m,
						       .grank = cr->rules[r].grank ? cr->rules[r].grank[m] : 0 };
		}
	}
	if (!ev->counting)
		materialize(ev->c, cr);
}

static void build_vhost(struct ctx *c, struct lst *l, const struct hostindex *hi, struct pl_vhost *vh,
			const char *vhost, int exact_only)
{
	pl_hostname_init(&vh->host, c->a, *vhost ? vhost : NULL);
	struct entvec ev = { .c = c };
	for_covering(c, l, hi, vhost, exact_only, add_route_entries, &ev);
	if (ev.n)
		qsort(ev.v, ev.n, sizeof(*ev.v), cmp_ent);
	vh->entries = aarr(c->a, ev.n, sizeof(struct pl_route_entry));
	for (size_t i = 0; i < ev.n; i++) {
		vh->entries[i].match = *ev.v[i].m;
		vh->entries[i].rule = ev.v[i].rule;
	}
	vh->n_entries = (uint32_t)ev.n;
}

/* Entries copied into less specific vhosts as fallbacks are bounded table-wide. */
#define MAX_TABLE_ENTRIES 1000000u

static void build_listener(struct ctx *c, struct lst *l, struct pl_listener *pl, size_t *budget)
{
	pl->name = l->fullname;
	pl->proto = l->proto;
	pl->tls = l->tls;
	pl_hostname_init(&pl->host, c->a, *l->host ? l->host : NULL);
	struct hostindex hi = { 0 };
	index_attachments(c, l, &hi);
	json_t *seen = J(json_object());
	struct vec hosts = { 0 };
	for (size_t i = 0; i < l->att.n; i++) {
		struct attach *at = l->att.v[i];
		for (size_t k = 0; k < at->hosts.n; k++) {
			if (json_object_get(seen, at->hosts.v[k]))
				continue;
			jset(seen, at->hosts.v[k], json_true());
			vpush(c->tmp, &hosts, at->hosts.v[k]);
		}
	}
	json_decref(seen);
	if (hosts.n)
		qsort(hosts.v, hosts.n, sizeof(void *), cmp_str_host);

	/*
	 * Rules of less specific hostnames follow a vhost's own rules (the spec
	 * ranks by hostname first, it does not hide them). Unless that would
	 * copy too much: then each vhost holds only its own routes.
	 */
	struct entvec count = { .c = c, .counting = 1 };
	for (size_t i = 0; i < hosts.n; i++)
		for_covering(c, l, &hi, hosts.v[i], 0, add_route_entries, &count);
	int exact_only = 0;
	if (count.count > *budget) {
		exact_only = 1;
		pl_warn("listener %s: %zu route entries with hostname fallbacks; serving each hostname's own routes only",
			l->fullname, count.count);
	} else {
		*budget -= count.count;
	}
	pl->vhosts = aarr(c->a, hosts.n, sizeof(struct pl_vhost));
	pl->n_vhosts = (uint32_t)hosts.n;
	for (size_t i = 0; i < hosts.n; i++)
		build_vhost(c, l, &hi, &pl->vhosts[i], hosts.v[i], exact_only);
	json_decref(hi.byhost);
}

static void build_table(struct ctx *c)
{
	struct vec binds = { 0 };   /* struct bindkey * */
	size_t budget = c->o->max_entries ? c->o->max_entries : MAX_TABLE_ENTRIES;
	for (size_t g = 0; g < c->n_gws; g++) {
		struct gw *gw = &c->gws[g];
		for (size_t k = 0; k < gw->n; k++) {
			struct lst *l = &gw->l[k];
			if (!lst_programmed(l))
				continue;
			struct bindkey *bk = NULL;
			for (size_t b = 0; b < binds.n && !bk; b++) {
				struct bindkey *x = binds.v[b];
				if (x->port == l->port && strcmp(x->addr, gw->addr) == 0)
					bk = x;
			}
			if (!bk) {
				bk = pl_arena_alloc(c->tmp, sizeof(*bk));
				snprintf(bk->addr, sizeof(bk->addr), "%s", gw->addr);
				bk->port = l->port;
				vpush(c->tmp, &binds, bk);
			}
			vpush(c->tmp, &bk->l, l);
		}
	}
	struct pl_table *t = c->t;
	t->binds = aarr(c->a, binds.n, sizeof(struct pl_bind));
	t->n_binds = (uint32_t)binds.n;
	for (size_t b = 0; b < binds.n; b++) {
		struct bindkey *bk = binds.v[b];
		struct pl_bind *pb = &t->binds[b];
		pb->address = pl_arena_strdup(c->a, bk->addr);
		pb->port = (uint16_t)bk->port;
		/* ProtocolConflict keeps a bind to one protocol, except HTTPS+TLS (mixed): then the
		 * bind is TLS, so the proxy peeks the SNI before it decides to terminate or splice */
		pb->proto = ((struct lst *)bk->l.v[0])->proto;
		for (size_t i = 0; i < bk->l.n; i++)
			if (((struct lst *)bk->l.v[i])->proto == PL_PROTO_TLS)
				pb->proto = PL_PROTO_TLS;
		qsort(bk->l.v, bk->l.n, sizeof(void *), cmp_lst_ptr);
		pb->listeners = aarr(c->a, bk->l.n, sizeof(struct pl_listener));
		pb->n_listeners = (uint32_t)bk->l.n;
		for (size_t i = 0; i < bk->l.n; i++)
			build_listener(c, bk->l.v[i], &pb->listeners[i], &budget);
	}
	t->clusters = aarr(c->a, c->clusters.n, sizeof(struct pl_cluster *));
	for (size_t i = 0; i < c->clusters.n; i++)
		t->clusters[i] = c->clusters.v[i];
	t->n_clusters = (uint32_t)c->clusters.n;
}

/* ---------------------------------------------------------------- pass 5: statuses and JSON */

static json_t *obj_header(const struct pl_obj *o, json_t *status)
{
	json_t *j = J(json_object());
	jset(j, "apiVersion", jstr(sget(o->json, "apiVersion")));
	jset(j, "kind", json_string(pl_kind_str(o->kind)));
	json_t *md = J(json_object());
	jset(md, "name", jstr(o->name));
	if (*o->ns)
		jset(md, "namespace", jstr(o->ns));
	jset(j, "metadata", md);
	jset(j, "status", status);
	return j;
}

static json_t *gateway_status(struct ctx *c, struct gw *g)
{
	json_t *st = J(json_object());
	json_t *addrs = J(json_array());
	json_t *ad = J(json_object());
	jset(ad, "type", json_string("IPAddress"));
	jset(ad, "value", jstr(g->addr));
	jpush(addrs, ad);
	jset(st, "addresses", addrs);

	size_t bad_l = 0, prog_l = 0;
	json_t *ls = J(json_array());
	for (size_t i = 0; i < g->n; i++) {
		struct lst *l = &g->l[i];
		if (l->dup)
			continue;
		int prog = lst_programmed(l);
		prog_l += prog;
		bad_l += !prog || l->refs_reason;
		json_t *lj = J(json_object());
		jset(lj, "name", jstr(l->name));
		jset(lj, "supportedKinds", json_incref(l->supported_kinds));
		jset(lj, "attachedRoutes", json_integer(lst_attachable(l) ? l->attached : 0));
		json_t *conds = J(json_array());
		if (l->accepted)
			jpush(conds, cond(c, g->o, "Accepted", 1, "Accepted", "Listener is accepted"));
		else
			jpush(conds, cond(c, g->o, "Accepted", 0, l->acc_reason, l->acc_msg));
		if (l->conf_reason)
			jpush(conds, cond(c, g->o, "Conflicted", 1, l->conf_reason, l->conf_msg));
		else
			jpush(conds, cond(c, g->o, "Conflicted", 0, "NoConflicts", "No conflicts"));
		if (l->refs_reason)
			jpush(conds, cond(c, g->o, "ResolvedRefs", 0, l->refs_reason, l->refs_msg));
		else
			jpush(conds, cond(c, g->o, "ResolvedRefs", 1, "ResolvedRefs", "All references are resolved"));
		if (prog)
			jpush(conds, cond(c, g->o, "Programmed", 1, "Programmed", "Listener is programmed"));
		else
			jpush(conds, cond(c, g->o, "Programmed", 0, "Invalid", "Listener is not programmed"));
		jset(lj, "conditions", conds);
		jpush(ls, lj);
	}
	json_t *conds = J(json_array());
	if (g->acc_bad) {
		jpush(conds, cond(c, g->o, "Accepted", 0, g->acc_reason, g->acc_msg));
		jpush(conds, cond(c, g->o, "Programmed", 0, g->acc_reason && !strcmp(g->acc_reason, "UnsupportedAddress")
						? "AddressNotUsable" : "Invalid", "Gateway is not accepted"));
	} else {
		if (bad_l && prog_l == 0)
			jpush(conds, cond(c, g->o, "Accepted", 0, "ListenersNotValid", "No listener is valid"));
		else if (bad_l)
			jpush(conds, cond(c, g->o, "Accepted", 1, "ListenersNotValid", "Some listeners are not valid"));
		else
			jpush(conds, cond(c, g->o, "Accepted", 1, "Accepted", "Gateway is accepted"));
		if (prog_l)
			jpush(conds, cond(c, g->o, "Programmed", 1, "Programmed", "Gateway is programmed"));
		else
			jpush(conds, cond(c, g->o, "Programmed", 0, "Invalid", "No listener is programmed"));
	}
	if (g->bk_ref && g->bk_reason)
		jpush(conds, cond(c, g->o, "ResolvedRefs", 0, g->bk_reason, g->bk_msg));
	else if (g->bk_ref)
		jpush(conds, cond(c, g->o, "ResolvedRefs", 1, "ResolvedRefs", "All references are resolved"));
	/* the spec asks for a visible warning while any listener lets clients in
	 * without a valid certificate (AllowInsecureFallback) */
	for (size_t i = 0; i < g->n; i++)
		if (!g->l[i].dup && g->l[i].tls && g->l[i].tls->client_optional) {
			jpush(conds, cond(c, g->o, "InsecureFrontendValidationMode", 1, "ConfigurationChanged",
					  "client certificate validation allows insecure fallback"));
			break;
		}
	jset(st, "conditions", conds);
	jset(st, "listeners", ls);
	return st;
}

/* Any condition (at any depth) in its unhealthy state? */
static int unhealthy(const json_t *j)
{
	if (json_is_array(j)) {
		size_t i;
		json_t *e;
		json_array_foreach(j, i, e) if (unhealthy(e)) return 1;
		return 0;
	}
	if (!json_is_object(j))
		return 0;
	const char *type = sget(j, "type"), *st = sget(j, "status");
	if (type && st && json_object_get(j, "reason")) {
		if (!strcmp(type, "Conflicted") || !strcmp(type, "PartiallyInvalid"))
			return strcmp(st, "True") == 0;
		return strcmp(st, "True") != 0;
	}
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)j, k, v) if (unhealthy(v)) return 1;
	return 0;
}

static void add_status(struct pl_compile_result *r, const struct pl_obj *o, json_t *st)
{
	if (unhealthy(st))
		r->problems++;
	jpush(r->statuses, obj_header(o, st));
}

static const char *proto_str(enum pl_proto p)
{
	static const char *const s[] = { "HTTP", "HTTPS", "TLS", "TCP", "UDP" };
	return (unsigned)p < PL_ARRAY_LEN(s) ? s[p] : "?";
}

static json_t *host_json(const struct pl_hostname *h)
{
	if (h->kind == PL_HOST_ANY)
		return json_string("*");
	if (h->kind == PL_HOST_WILDCARD) {
		char buf[300];
		snprintf(buf, sizeof(buf), "*%s", h->name);
		return jstr(buf);
	}
	return jstr(h->name);
}


/*
 * json_dumpf() writes each token with its own fwrite(): on a memstream that
 * was a third of a compile. Tokens are gathered here and written in blocks.
 */
struct dumpbuf {
	FILE *f;
	size_t n;
	char b[8192];
};

static void dump_flush(struct dumpbuf *d)
{
	if (d->n && fwrite(d->b, 1, d->n, d->f) != d->n)
		PL_PANIC("out of memory (config json)");
	d->n = 0;
}

static int dump_cb(const char *p, size_t len, void *data)
{
	struct dumpbuf *d = data;
	if (len > sizeof(d->b) - d->n) {
		dump_flush(d);
		if (len > sizeof(d->b)) {
			if (fwrite(p, 1, len, d->f) != len)
				PL_PANIC("out of memory (config json)");
			return 0;
		}
	}
	memcpy(d->b + d->n, p, len);
	d->n += len;
	return 0;
}

static void dump_str(struct dumpbuf *d, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t run = 0;
	dump_cb("\"", 1, d);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\') {
			run++;
			continue;
		}
		dump_cb(s + i - run, run, d);
		run = 0;
		char esc[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
		size_t el = 2;
		switch (ch) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default: el = 6; break;
		}
		dump_cb(esc, el, d);
	}
	dump_cb(s + len - run, run, d);
	dump_cb("\"", 1, d);
}

/*
 * The same bytes as json_dumpf(JSON_COMPACT | JSON_ENCODE_ANY) for the values
 * the table JSON holds (jansson also keeps object keys in insertion order),
 * without jansson's per-container bookkeeping (a "%p" key in a hash table for
 * loop detection: our trees are fresh and acyclic). Anything else (reals) is
 * left to jansson.
 */
static void dump_value(struct dumpbuf *d, json_t *v)
{
	char num[32];
	int n;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *x;
		int first = 1;
		dump_cb("{", 1, d);
		json_object_foreach(v, k, x) {
			if (!first)
				dump_cb(",", 1, d);
			first = 0;
			dump_str(d, k, strlen(k));
			dump_cb(":", 1, d);
			dump_value(d, x);
		}
		dump_cb("}", 1, d);
		break;
	}
	case JSON_ARRAY:
		dump_cb("[", 1, d);
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (i)
				dump_cb(",", 1, d);
			dump_value(d, json_array_get(v, i));
		}
		dump_cb("]", 1, d);
		break;
	case JSON_STRING:
		dump_str(d, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		dump_cb(num, (size_t)n, d);
		break;
	case JSON_TRUE:
		dump_cb("true", 4, d);
		break;
	case JSON_FALSE:
		dump_cb("false", 5, d);
		break;
	case JSON_NULL:
		dump_cb("null", 4, d);
		break;
	default:
		if (json_dump_callback(v, dump_cb, d, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
			PL_PANIC("json_dump_callback failed");
		break;
	}
}

/* Dumps v and drops the reference. */
static void put_value(struct dumpbuf *d, json_t *v)
{
	dump_value(d, J(v));
	json_decref(v);
}

static void put_json(FILE *f, json_t *v)
{
	struct dumpbuf d;
	d.f = f;
	d.n = 0;
	dump_value(&d, J(v));
	dump_flush(&d);
	json_decref(v);
}

/*
 * The rules of the table JSON, written straight to the stream in the order
 * and bytes a tree of them used to dump as (keys in insertion order): a tree
 * per rule, match and filter was most of table_json().
 */
static void w_lit(struct dumpbuf *d, const char *s)
{
	dump_cb(s, strlen(s), d);
}

/* Any bytes, through jstr() (invalid UTF-8 becomes '?'). */
static void w_str(struct dumpbuf *d, const char *s)
{
	put_value(d, jstr(s));
}

static void w_str_or_null(struct dumpbuf *d, const char *s)
{
	if (s)
		w_str(d, s);
	else
		w_lit(d, "null");
}

static void w_int(struct dumpbuf *d, long long v)
{
	char num[32];
	int n = snprintf(num, sizeof(num), "%lld", v);
	dump_cb(num, (size_t)n, d);
}

static void w_kv(struct dumpbuf *d, const struct pl_kv *kv, uint32_t n)
{
	w_lit(d, "[");
	for (uint32_t i = 0; i < n; i++) {
		w_lit(d, i ? ",{\"name\":" : "{\"name\":");
		w_str(d, kv[i].name);
		w_lit(d, ",\"value\":");
		w_str(d, kv[i].value);
		w_lit(d, "}");
	}
	w_lit(d, "]");
}

static void w_pathmod(struct dumpbuf *d, const struct pl_path_mod *pm)
{
	if (pm->type == PL_PATHMOD_NONE) {
		w_lit(d, "null");
		return;
	}
	w_lit(d, pm->type == PL_PATHMOD_FULL ? "{\"type\":\"ReplaceFullPath\",\"value\":"
					     : "{\"type\":\"ReplacePrefixMatch\",\"value\":");
	w_str(d, pm->value);
	w_lit(d, "}");
}

static void w_filters(struct dumpbuf *d, const struct pl_filter *f, uint32_t n)
{
	w_lit(d, "[");
	for (uint32_t i = 0; i < n; i++) {
		w_lit(d, i ? ",{" : "{");
		switch (f[i].type) {
		case PL_FILTER_REQUEST_HEADER:
		case PL_FILTER_RESPONSE_HEADER: {
			const struct pl_header_mod *h = &f[i].u.hdr;
			w_lit(d, f[i].type == PL_FILTER_REQUEST_HEADER ? "\"type\":\"RequestHeaderModifier\""
								       : "\"type\":\"ResponseHeaderModifier\"");
			w_lit(d, ",\"set\":");
			w_kv(d, h->set, h->n_set);
			w_lit(d, ",\"add\":");
			w_kv(d, h->add, h->n_add);
			w_lit(d, ",\"remove\":[");
			for (uint32_t k = 0; k < h->n_remove; k++) {
				if (k)
					w_lit(d, ",");
				w_str(d, h->remove[k]);
			}
			w_lit(d, "]");
			break;
		}
		case PL_FILTER_REDIRECT: {
			const struct pl_redirect *rd = &f[i].u.redirect;
			w_lit(d, "\"type\":\"RequestRedirect\",\"scheme\":");
			w_str_or_null(d, rd->scheme);
			w_lit(d, ",\"hostname\":");
			w_str_or_null(d, rd->hostname);
			w_lit(d, ",\"port\":");
			w_int(d, (long long)rd->port);
			w_lit(d, ",\"path\":");
			w_pathmod(d, &rd->path);
			w_lit(d, ",\"statusCode\":");
			w_int(d, (long long)rd->status_code);
			break;
		}
		case PL_FILTER_REWRITE:
			w_lit(d, "\"type\":\"URLRewrite\",\"hostname\":");
			w_str_or_null(d, f[i].u.rewrite.hostname);
			w_lit(d, ",\"path\":");
			w_pathmod(d, &f[i].u.rewrite.path);
			break;
		case PL_FILTER_MIRROR:
			w_lit(d, "\"type\":\"RequestMirror\",\"cluster\":");
			w_str_or_null(d, f[i].u.mirror.cluster ? f[i].u.mirror.cluster->name : NULL);
			w_lit(d, ",\"numerator\":");
			w_int(d, (long long)f[i].u.mirror.percent_num);
			w_lit(d, ",\"denominator\":");
			w_int(d, (long long)f[i].u.mirror.percent_den);
			break;
		}
		w_lit(d, "}");
	}
	w_lit(d, "]");
}

static void w_kvm(struct dumpbuf *d, const struct pl_kv_match *m, uint32_t n)
{
	w_lit(d, "[");
	for (uint32_t i = 0; i < n; i++) {
		w_lit(d, i ? ",{" : "{");
		w_lit(d, m[i].type == PL_MATCH_EXACT ? "\"type\":\"Exact\",\"name\":"
						     : "\"type\":\"RegularExpression\",\"name\":");
		w_str(d, m[i].name);
		w_lit(d, ",\"value\":");
		w_str(d, m[i].value);
		w_lit(d, "}");
	}
	w_lit(d, "]");
}

static void w_match(struct dumpbuf *d, const struct pl_match *m)
{
	static const char *const pt[] = { "PathPrefix", "Exact", "RegularExpression" };
	w_lit(d, "{\"path\":{\"type\":\"");
	w_lit(d, pt[m->path_type]);
	w_lit(d, "\",\"value\":");
	w_str(d, m->path);
	w_lit(d, "}");
	if (m->method) {
		w_lit(d, ",\"method\":");
		w_str(d, m->method);
	}
	if (m->n_headers) {
		w_lit(d, ",\"headers\":");
		w_kvm(d, m->headers, m->n_headers);
	}
	if (m->n_queries) {
		w_lit(d, ",\"queryParams\":");
		w_kvm(d, m->queries, m->n_queries);
	}
	w_lit(d, "}");
}

static void w_rule(struct dumpbuf *d, const struct crule *cr, size_t id)
{
	const struct pl_rule *r = cr->r;
	w_lit(d, "{\"id\":");
	w_int(d, (long long)id);
	w_lit(d, ",\"route\":");
	w_str(d, r->route);
	w_lit(d, ",\"rule\":");
	w_int(d, (long long)r->rule_index);
	w_lit(d, ",\"matches\":[");
	for (uint32_t i = 0; i < cr->nm; i++) {
		if (i)
			w_lit(d, ",");
		w_match(d, &cr->m[i]);
	}
	w_lit(d, "]");
	if (r->n_filters) {
		w_lit(d, ",\"filters\":");
		w_filters(d, r->filters, r->n_filters);
	}
	w_lit(d, ",\"backends\":[");
	for (uint32_t i = 0; i < r->n_backends; i++) {
		w_lit(d, i ? ",{\"cluster\":" : "{\"cluster\":");
		w_str_or_null(d, r->backends[i].cluster ? r->backends[i].cluster->name : NULL);
		w_lit(d, ",\"weight\":");
		w_int(d, (long long)r->backends[i].weight);
		if (r->backends[i].n_filters) {
			w_lit(d, ",\"filters\":");
			w_filters(d, r->backends[i].filters, r->backends[i].n_filters);
		}
		w_lit(d, "}");
	}
	w_lit(d, "]");
	if (r->timeout_request_ms || r->timeout_backend_ms) {
		w_lit(d, ",\"timeouts\":{\"requestMs\":");
		w_int(d, (long long)r->timeout_request_ms);
		w_lit(d, ",\"backendRequestMs\":");
		w_int(d, (long long)r->timeout_backend_ms);
		w_lit(d, "}");
	}
	w_lit(d, "}");
}

/* table_json(): rule id by rule pointer, sorted by pointer for bsearch. */
struct rule_id {
	const struct pl_rule *r;
	long long id;
};

static int cmp_rule_id(const void *pa, const void *pb)
{
	uintptr_t a = (uintptr_t)((const struct rule_id *)pa)->r, b = (uintptr_t)((const struct rule_id *)pb)->r;
	return a < b ? -1 : a > b;
}

/*
 * The table as JSON for GET /config. Each rule is written once under "rules";
 * a vhost's entries are [rule id, match index] pairs in precedence order, so
 * rules copied into several vhosts (hostname fallbacks) cost a few bytes each.
 * Written straight to a stream: a tree of the whole table would be many times
 * its size.
 */
static char *table_json(struct ctx *c)
{
	static const char *const ap[] = { "http", "h2c", "ws", "tls" };
	const struct pl_table *t = c->t;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		PL_PANIC("out of memory (open_memstream)");

	/* no other thread sees this stream: skip stdio locking on every write */
	__fsetlocking(f, FSETLOCKING_BYCALLER);

	/* rule ids: attached routes' rules in route order */
	size_t nid = 0;
	for (size_t i = 0; i < c->n_routes; i++)
		if (c->routes[i].materialized)
			nid += c->routes[i].n_rules;
	struct crule **by_id = aarr(c->tmp, nid, sizeof(*by_id));
	struct rule_id *rule_ids = aarr(c->tmp, nid, sizeof(*rule_ids));
	nid = 0;
	for (size_t i = 0; i < c->n_routes; i++) {
		struct croute *cr = &c->routes[i];
		if (!cr->materialized)
			continue;
		for (size_t k = 0; k < cr->n_rules; k++) {
			by_id[nid] = &cr->rules[k];
			rule_ids[nid] = (struct rule_id){ .r = cr->rules[k].r, .id = (long long)nid };
			nid++;
		}
	}
	if (nid)
		qsort(rule_ids, nid, sizeof(*rule_ids), cmp_rule_id);

	fputs("{\n\"binds\": [", f);
	for (uint32_t b = 0; b < t->n_binds; b++) {
		const struct pl_bind *pb = &t->binds[b];
		fprintf(f, "%s\n {\"address\": ", b ? "," : "");
		put_json(f, jstr(pb->address));
		fprintf(f, ", \"port\": %u, \"protocol\": \"%s\", \"listeners\": [", pb->port, proto_str(pb->proto));
		for (uint32_t i = 0; i < pb->n_listeners; i++) {
			const struct pl_listener *l = &pb->listeners[i];
			fprintf(f, "%s\n  {\"name\": ", i ? "," : "");
			put_json(f, jstr(l->name));
			fputs(", \"hostname\": ", f);
			put_json(f, host_json(&l->host));
			fputs(", \"vhosts\": [", f);
			for (uint32_t v = 0; v < l->n_vhosts; v++) {
				const struct pl_vhost *vh = &l->vhosts[v];
				fprintf(f, "%s\n   {\"hostname\": ", v ? "," : "");
				put_json(f, host_json(&vh->host));
				fputs(", \"entries\": [", f);
				for (uint32_t e = 0; e < vh->n_entries; e++) {
					const struct pl_route_entry *en = &vh->entries[e];
					struct rule_id want = { .r = en->rule };
					const struct rule_id *id = nid ? bsearch(&want, rule_ids, nid, sizeof(*rule_ids),
										 cmp_rule_id) : NULL;
					long long idv = id ? id->id : -1, mi = -1;
					/* the match index: the entry holds a copy of one of the rule's matches */
					for (uint32_t m = 0; id && m < by_id[idv]->nm && mi < 0; m++)
						if (by_id[idv]->m[m].path == en->match.path)
							mi = m;
					fprintf(f, "%s[%lld, %lld]", e ? ", " : "", idv, mi);
				}
				fputs("]}", f);
			}
			fputs("]}", f);
		}
		fputs("]}", f);
	}
	fputs("\n],\n\"rules\": [", f);
	nid = 0;
	for (size_t i = 0; i < c->n_routes; i++) {
		struct croute *cr = &c->routes[i];
		if (!cr->materialized)
			continue;
		for (size_t k = 0; k < cr->n_rules; k++) {
			struct dumpbuf d;
			d.f = f;
			d.n = 0;
			w_lit(&d, nid ? ",\n " : "\n ");
			w_rule(&d, &cr->rules[k], nid);
			dump_flush(&d);
			nid++;
		}
	}
	fputs("\n],\n\"clusters\": [", f);
	/*
	 * Clusters written field by field (same bytes as a dumped tree): a JSON
	 * object per endpoint was most of this loop. Only TLS settings, rare,
	 * still go through a tree.
	 */
	for (uint32_t i = 0; i < t->n_clusters; i++) {
		const struct pl_cluster *cl = t->clusters[i];
		struct dumpbuf d;
		char num[32];
		int nl;
		d.f = f;
		d.n = 0;
		dump_cb(i ? ",\n " : "\n ", i ? 3 : 2, &d);
		nl = snprintf(num, sizeof(num), "{\"id\":%u,\"name\":", (unsigned)cl->id);
		dump_cb(num, (size_t)nl, &d);
		put_value(&d, jstr(cl->name));
		dump_cb(",\"appProtocol\":", 15, &d);
		dump_str(&d, ap[cl->app_proto], strlen(ap[cl->app_proto]));
		if (cl->tls) {
			json_t *tj = J(json_object());
			jset(tj, "policy", jstr(cl->tls->policy));
			jset(tj, "hostname", cl->tls->sni ? jstr(cl->tls->sni) : json_null());
			jset(tj, "ca", json_string(cl->tls->ca_pem ? "caCertificateRefs" : "System"));
			json_t *sj = J(json_array());
			for (uint32_t k = 0; k < cl->tls->n_sans; k++)
				jpush(sj, jstr(cl->tls->sans[k]));
			jset(tj, "subjectAltNames", sj);
			if (cl->tls->error)
				jset(tj, "error", jstr(cl->tls->error));
			dump_cb(",\"tls\":", 7, &d);
			put_value(&d, tj);
		}
		dump_cb(",\"endpoints\":[", 14, &d);
		for (uint32_t k = 0; k < cl->n_eps; k++) {
			if (k)
				dump_cb(",", 1, &d);
			dump_cb("{\"address\":", 11, &d);
			put_value(&d, jstr(cl->eps[k].text));
			if (cl->eps[k].ready)
				dump_cb(",\"ready\":true}", 14, &d);
			else
				dump_cb(",\"ready\":false}", 15, &d);
		}
		dump_cb("]}", 2, &d);
		dump_flush(&d);
	}
	fputs("\n]\n}\n", f);
	if (fclose(f) != 0 || !buf)
		PL_PANIC("out of memory (config json)");
	char *d = pl_arena_strndup(c->a, buf, len);
	free(buf);
	return d;
}

int pl_compile(const struct pl_store *s, const struct pl_compile_opts *opts, struct pl_compile_result *r)
{
	static const struct pl_compile_opts defaults;
	struct ctx c = { .s = s, .o = opts ? opts : &defaults };
	c.now = c.o->now ? c.o->now : "1970-01-01T00:00:00Z";
	memset(r, 0, sizeof(*r));
	c.t = pl_table_new();
	c.a = c.t->arena;
	c.tmp = pl_arena_new(64 * 1024, PL_ARENA_FATAL);
	c.gw_index = J(json_object());
	c.cls_status = J(json_object());
	c.slices = J(json_object());
	c.cluster_index = J(json_object());
	r->statuses = J(json_array());

	pass_classes(&c);
	pass_gateways(&c);
	index_slices(&c);
	pass_btls(&c);
	pass_routes(&c);
	build_table(&c);
	pass_btls_ancestors(&c);

	const struct pl_obj *const *v;
	size_t n = pl_store_list(s, PL_K_GATEWAYCLASS, &v);
	for (size_t i = 0; i < n; i++) {
		json_t *st = json_object_get(c.cls_status, v[i]->name);
		if (st)
			add_status(r, v[i], json_incref(st));
	}
	for (size_t i = 0; i < c.n_gws; i++)
		add_status(r, c.gws[i].o, gateway_status(&c, &c.gws[i]));
	for (size_t i = 0; i < c.n_routes; i++) {
		struct croute *cr = &c.routes[i];
		if (json_array_size(cr->parents)) {
			json_t *st = J(json_object());
			jset(st, "parents", json_incref(cr->parents));
			add_status(r, cr->o, st);
		}
		json_decref(cr->parents);
	}
	for (size_t i = 0; i < c.n_btls; i++) {
		if (json_object_size(c.btls[i].ancestors))
			add_status(r, c.btls[i].o, btls_status(&c, &c.btls[i]));
		json_decref(c.btls[i].ancestors);
	}
	for (size_t i = 0; i < c.n_gws; i++)
		for (size_t k = 0; k < c.gws[i].n; k++)
			json_decref(c.gws[i].l[k].supported_kinds);

	c.t->config_json = table_json(&c);
	json_decref(c.gw_index);
	json_decref(c.cls_status);
	json_decref(c.slices);
	json_decref(c.cluster_index);
	pl_arena_free(c.tmp);
	r->table = c.t;
	c.t->compiled_at_ns = pl_now_ns();
	return 0;
}

void pl_compile_result_clear(struct pl_compile_result *r)
{
	if (r->table)
		pl_table_unref(r->table);
	json_decref(r->statuses);
	memset(r, 0, sizeof(*r));
}
