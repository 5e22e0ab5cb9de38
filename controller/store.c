#include "pl.h"
#include "log.h"
#include "store.h"
#include "yamlload.h"

#include <stdarg.h>

struct kindset {
	const struct pl_obj **v;   /* sorted by (ns, name) */
	size_t n, cap;
};

struct pl_store {
	struct kindset k[PL_K_N];
	uint64_t next_seq;
	uint64_t rev;              /* puts and deletes so far */
	uint64_t epoch[PL_K_N];    /* rev of the last put/delete of each kind */
	uint64_t id;
	uint64_t log_lost;         /* the log misses changes up to this rev */
	struct change {            /* ring of the last PL_STORE_LOG changes: change rev is at rev % PL_STORE_LOG */
		enum pl_kind kind;
		char *ns, *name;
	} *log;
	size_t total;
	json_t *ignored_logged;    /* "group/kind" seen and logged once */
};

static const struct {
	const char *group;   /* "" = core */
	const char *kind;
	int namespaced;
} kinds[PL_K_N] = {
	[PL_K_GATEWAYCLASS] = { "gateway.networking.k8s.io", "GatewayClass", 0 },
	[PL_K_GATEWAY] = { "gateway.networking.k8s.io", "Gateway", 1 },
	[PL_K_HTTPROUTE] = { "gateway.networking.k8s.io", "HTTPRoute", 1 },
	[PL_K_REFERENCEGRANT] = { "gateway.networking.k8s.io", "ReferenceGrant", 1 },
	[PL_K_NAMESPACE] = { "", "Namespace", 0 },
	[PL_K_SERVICE] = { "", "Service", 1 },
	[PL_K_SECRET] = { "", "Secret", 1 },
	[PL_K_CONFIGMAP] = { "", "ConfigMap", 1 },
	[PL_K_ENDPOINTSLICE] = { "discovery.k8s.io", "EndpointSlice", 1 },
	[PL_K_TLSROUTE] = { "gateway.networking.k8s.io", "TLSRoute", 1 },
	[PL_K_TCPROUTE] = { "gateway.networking.k8s.io", "TCPRoute", 1 },
	[PL_K_UDPROUTE] = { "gateway.networking.k8s.io", "UDPRoute", 1 },
	[PL_K_BACKENDTLSPOLICY] = { "gateway.networking.k8s.io", "BackendTLSPolicy", 1 },
	[PL_K_GRPCROUTE] = { "gateway.networking.k8s.io", "GRPCRoute", 1 },
	[PL_K_LISTENERSET] = { "gateway.networking.k8s.io", "ListenerSet", 1 },
};

/*
 * Versions we read; the Gateway API versions share one schema for our
 * purposes. v1alpha1 is read in that schema too (articles write v1 objects
 * under it); what only the 2021 v1alpha1 schema had is refused by
 * old_alpha_field().
 */
static int version_ok(const char *group, const char *version)
{
	if (strcmp(group, "gateway.networking.k8s.io") == 0)
		return !strcmp(version, "v1") || !strcmp(version, "v1beta1") || !strcmp(version, "v1alpha2") ||
		       !strcmp(version, "v1alpha3") || !strcmp(version, "v1alpha1");
	if (strcmp(group, "discovery.k8s.io") == 0)
		return !strcmp(version, "v1") || !strcmp(version, "v1beta1");
	return strcmp(version, "v1") == 0;
}

/* The first field only the first v1alpha1 schema had (spec.gateways, rules[].forwardTo, listeners[].routes), or NULL. */
static const char *old_alpha_field(const json_t *obj)
{
	const json_t *spec = json_object_get(obj, "spec"), *v;
	size_t i;
	if (json_object_get(spec, "gateways"))
		return "spec.gateways";
	json_array_foreach(json_object_get(spec, "rules"), i, v)
		if (json_object_get(v, "forwardTo"))
			return "spec.rules[].forwardTo";
	json_array_foreach(json_object_get(spec, "listeners"), i, v)
		if (json_object_get(v, "routes"))
			return "spec.listeners[].routes";
	return NULL;
}

const char *pl_kind_str(enum pl_kind k)
{
	return (unsigned)k < PL_K_N ? kinds[k].kind : "?";
}

int pl_kind_namespaced(enum pl_kind k)
{
	return (unsigned)k < PL_K_N && kinds[k].namespaced;
}

struct pl_store *pl_store_new(void)
{
	static _Atomic uint64_t ids;
	struct pl_store *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->id = ++ids;
	s->ignored_logged = json_object();
	if (!s->ignored_logged) {
		free(s);
		return NULL;
	}
	return s;
}

static void obj_free(const struct pl_obj *co)
{
	struct pl_obj *o = (struct pl_obj *)co;
	json_decref(o->json);
	free(o->ns);
	free(o->name);
	free(o->origin);
	free(o);
}

void pl_store_free(struct pl_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->log && i < PL_STORE_LOG; i++) {
		free(s->log[i].ns);
		free(s->log[i].name);
	}
	free(s->log);
	for (int k = 0; k < PL_K_N; k++) {
		for (size_t i = 0; i < s->k[k].n; i++)
			obj_free(s->k[k].v[i]);
		free(s->k[k].v);
	}
	json_decref(s->ignored_logged);
	free(s);
}

static int keycmp(const struct pl_obj *o, const char *ns, const char *name)
{
	int c = strcmp(o->ns, ns);
	return c ? c : strcmp(o->name, name);
}

/* Index of the first element >= (ns, name). */
static size_t lower_bound(const struct kindset *ks, const char *ns, const char *name)
{
	size_t lo = 0, hi = ks->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (keycmp(ks->v[mid], ns, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct pl_obj *pl_store_get(const struct pl_store *s, enum pl_kind k, const char *ns, const char *name)
{
	if ((unsigned)k >= PL_K_N || !ns || !name)
		return NULL;
	const struct kindset *ks = &s->k[k];
	size_t i = lower_bound(ks, ns, name);
	if (i < ks->n && keycmp(ks->v[i], ns, name) == 0)
		return ks->v[i];
	return NULL;
}

size_t pl_store_list(const struct pl_store *s, enum pl_kind k, const struct pl_obj *const **out)
{
	if ((unsigned)k >= PL_K_N) {
		*out = NULL;
		return 0;
	}
	*out = s->k[k].v;
	return s->k[k].n;
}

size_t pl_store_count(const struct pl_store *s)
{
	return s->total;
}

uint64_t pl_store_epoch(const struct pl_store *s, enum pl_kind k)
{
	return (unsigned)k < PL_K_N ? s->epoch[k] : 0;
}

uint64_t pl_store_id(const struct pl_store *s)
{
	return s->id;
}

uint64_t pl_store_rev(const struct pl_store *s)
{
	return s->rev;
}

/*
 * Counts a change of kind k to (ns, name) and logs it. The log is best
 * effort: without memory for it, readers are told it does not reach back
 * (log_lost) and fall back to looking at everything.
 */
static void changed(struct pl_store *s, enum pl_kind k, const char *ns, const char *name)
{
	s->epoch[k] = ++s->rev;
	if (!s->log)
		s->log = calloc(PL_STORE_LOG, sizeof(*s->log));
	if (!s->log) {
		s->log_lost = s->rev;
		return;
	}
	struct change *c = &s->log[s->rev % PL_STORE_LOG];
	free(c->ns);
	free(c->name);
	c->kind = k;
	c->ns = strdup(ns);
	c->name = strdup(name);
	if (!c->ns || !c->name)
		s->log_lost = s->rev;
}

int pl_store_changes(const struct pl_store *s, uint64_t since,
		     void (*fn)(enum pl_kind k, const char *ns, const char *name, void *arg), void *arg)
{
	if (since > s->rev || s->rev - since > PL_STORE_LOG || since < s->log_lost)
		return -1;
	for (uint64_t r = since + 1; r <= s->rev; r++) {
		const struct change *c = &s->log[r % PL_STORE_LOG];
		fn(c->kind, c->ns, c->name, arg);
	}
	return 0;
}

int pl_store_delete(struct pl_store *s, enum pl_kind k, const char *ns, const char *name)
{
	if ((unsigned)k >= PL_K_N)
		return -1;
	struct kindset *ks = &s->k[k];
	size_t i = lower_bound(ks, ns, name);
	if (i >= ks->n || keycmp(ks->v[i], ns, name) != 0)
		return -1;
	changed(s, k, ns, name);   /* first: ns and name may be the object's own */
	obj_free(ks->v[i]);
	memmove(&ks->v[i], &ks->v[i + 1], (ks->n - i - 1) * sizeof(ks->v[0]));
	ks->n--;
	s->total--;
	return 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	/* Howard Hinnant's algorithm: days since 1970-01-01 */
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int pl_parse_rfc3339(const char *s, int64_t *out_ns)
{
	int Y, M, D, h, m, sec;
	if (strlen(s) < 20 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) || s[7] != '-' ||
	    digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || digits(s + 11, 2, &h) ||
	    s[13] != ':' || digits(s + 14, 2, &m) || s[16] != ':' || digits(s + 17, 2, &sec))
		return -1;
	if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
		return -1;
	const char *p = s + 19;
	int64_t frac = 0;
	if (*p == '.') {
		int nd = 0;
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++, nd++)
			if (nd < 9)
				frac = frac * 10 + (*p - '0');
		for (; nd < 9; nd++)
			frac *= 10;
	}
	int off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
			return -1;
		off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return -1;
	}
	if (*p)
		return -1;
	int64_t days = days_from_civil(Y, (unsigned)M, (unsigned)D);
	int64_t secs = days * 86400 + h * 3600 + m * 60 + sec - off;
	if (secs < -9000000000LL || secs > 9000000000LL)
		return -1;   /* outside 1684..2255: not representable in int64 ns */
	*out_ns = secs * 1000000000 + frac;
	return 0;
}

static int fail(char *err, size_t errlen, const char *origin, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, const char *origin, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s%s%s", origin && *origin ? origin : "", origin && *origin ? ": " : "", why);
	return -1;
}

static int valid_name(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '/' || (unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return 0;
	return 1;
}

int pl_store_put(struct pl_store *s, json_t *obj, const char *origin, char *err, size_t errlen)
{
	if (!json_is_object(obj))
		return fail(err, errlen, origin, "object is not a mapping");
	const char *api = json_string_value(json_object_get(obj, "apiVersion"));
	const char *kind = json_string_value(json_object_get(obj, "kind"));
	if (!api || !*api)
		return fail(err, errlen, origin, "apiVersion missing or not a string");
	if (!kind || !*kind)
		return fail(err, errlen, origin, "kind missing or not a string");
	json_t *md = json_object_get(obj, "metadata");
	if (!json_is_object(md))
		return fail(err, errlen, origin, "%s: metadata missing or not a mapping", kind);
	const char *name = json_string_value(json_object_get(md, "name"));
	if (!name)
		return fail(err, errlen, origin, "%s: metadata.name missing or not a string%s", kind,
			    json_is_boolean(json_object_get(md, "name")) || json_is_number(json_object_get(md, "name"))
			    ? " (YAML reads unquoted y/n/yes/no/on/off and numbers as non-strings: quote it)" : "");
	if (!valid_name(name, 253))
		return fail(err, errlen, origin, "%s: invalid metadata.name \"%.64s\"", kind, name);
	json_t *jns = json_object_get(md, "namespace");
	const char *ns = "default";
	if (jns && !json_is_null(jns)) {
		ns = json_string_value(jns);
		if (!ns || !valid_name(ns, 63))
			return fail(err, errlen, origin, "%s %s: invalid metadata.namespace", kind, name);
	}

	char group[128];
	const char *version = strrchr(api, '/');
	if (version) {
		size_t gl = (size_t)(version - api);
		if (gl >= sizeof(group))
			gl = sizeof(group) - 1;
		memcpy(group, api, gl);
		group[gl] = 0;
		version++;
	} else {
		group[0] = 0;
		version = api;
	}
	int k;
	for (k = 0; k < PL_K_N; k++)
		if (strcmp(kinds[k].kind, kind) == 0 && strcmp(kinds[k].group, group) == 0)
			break;
	if (k == PL_K_N || !version_ok(group, version)) {
		char key[300];
		snprintf(key, sizeof(key), "%s/%s", api, kind);
		if (!json_object_get(s->ignored_logged, key)) {
			json_object_set_new(s->ignored_logged, key, json_true());
			pl_info("manifests: %s%signoring %.64s %.64s (kind not handled)", origin ? origin : "",
				origin && *origin ? ": " : "", api, kind);
		}
		return PL_STORE_IGNORED;
	}
	if (!kinds[k].namespaced)
		ns = "";
	const char *alpha = !strcmp(version, "v1alpha1") ? old_alpha_field(obj) : NULL;
	if (alpha)
		return fail(err, errlen, origin, "%s %s: %s is of the v1alpha1 schema of 2021, which pylon does not read; "
			    "write it as v1 (parentRefs, backendRefs, allowedRoutes)", kind, name, alpha);

	struct kindset *ks = &s->k[k];
	size_t i = lower_bound(ks, ns, name);
	if (i < ks->n && keycmp(ks->v[i], ns, name) == 0) {
		struct pl_obj *o = (struct pl_obj *)ks->v[i];
		json_incref(obj);
		json_decref(o->json);
		o->json = obj;
		const char *ts = json_string_value(json_object_get(md, "creationTimestamp"));
		if (!ts || pl_parse_rfc3339(ts, &o->created_ns) != 0)
			o->created_ns = INT64_MAX;
		changed(s, (enum pl_kind)k, ns, name);
		o->rev = s->rev;
		return PL_STORE_REPLACED;
	}

	struct pl_obj *o = calloc(1, sizeof(*o));
	if (!o)
		return fail(err, errlen, origin, "out of memory");
	o->kind = (enum pl_kind)k;
	o->ns = strdup(ns);
	o->name = strdup(name);
	o->origin = strdup(origin ? origin : "");
	if (!o->ns || !o->name || !o->origin) {
		obj_free(o);
		return fail(err, errlen, origin, "out of memory");
	}
	if (ks->n == ks->cap) {
		size_t cap = ks->cap ? ks->cap * 2 : 16;
		const struct pl_obj **v = realloc(ks->v, cap * sizeof(*v));
		if (!v) {
			obj_free(o);
			return fail(err, errlen, origin, "out of memory");
		}
		ks->v = v;
		ks->cap = cap;
	}
	json_incref(obj);
	o->json = obj;
	o->seq = s->next_seq++;
	const char *ts = json_string_value(json_object_get(md, "creationTimestamp"));
	if (!ts || pl_parse_rfc3339(ts, &o->created_ns) != 0)
		o->created_ns = INT64_MAX;
	memmove(&ks->v[i + 1], &ks->v[i], (ks->n - i) * sizeof(ks->v[0]));
	ks->v[i] = o;
	ks->n++;
	s->total++;
	changed(s, (enum pl_kind)k, ns, name);
	o->rev = s->rev;
	return PL_STORE_ADDED;
}

struct load_ctx {
	struct pl_store *s;
	const char *fname;
	int count;
};

static int put_logged(struct load_ctx *c, json_t *obj, const char *origin, char *err, size_t errlen)
{
	int r = pl_store_put(c->s, obj, origin, err, errlen);
	if (r < 0)
		return -1;
	if (r == PL_STORE_REPLACED) {
		const char *kind = json_string_value(json_object_get(obj, "kind"));
		json_t *md = json_object_get(obj, "metadata");
		pl_warn("manifests: %s: %s %s defined again; the later definition wins", origin,
			kind, json_string_value(json_object_get(md, "name")));
	}
	if (r != PL_STORE_IGNORED)
		c->count++;
	return 0;
}

static int on_doc(json_t *doc, unsigned line, void *data, char *err, size_t errlen)
{
	struct load_ctx *c = data;
	char origin[512];
	snprintf(origin, sizeof(origin), "%s:%u", c->fname, line);
	int rc = 0;
	const char *kind = json_string_value(json_object_get(doc, "kind"));
	json_t *items = json_object_get(doc, "items");
	if (kind && strcmp(kind, "List") == 0 && (!items || json_is_array(items) || json_is_null(items))) {
		size_t i;
		json_t *it;
		json_array_foreach(items, i, it) {
			const char *ik = json_string_value(json_object_get(it, "kind"));
			if (ik && strcmp(ik, "List") == 0) {
				rc = fail(err, errlen, origin, "items[%zu]: nested List", i);
				break;
			}
			if (put_logged(c, it, origin, err, errlen) != 0) {
				rc = -1;
				break;
			}
		}
	} else {
		rc = put_logged(c, doc, origin, err, errlen);
	}
	json_decref(doc);
	return rc;
}

int pl_store_load_yaml(struct pl_store *s, const char *buf, size_t len, const char *fname,
		       char *err, size_t errlen)
{
	struct load_ctx c = { .s = s, .fname = fname ? fname : "<input>" };
	if (pl_yaml_load(buf, len, c.fname, on_doc, &c, err, errlen) != 0)
		return -1;
	return c.count;
}
