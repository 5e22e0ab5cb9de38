/*
 * Gateway API compiler (contract in compile.h).
 *
 * Passes, in order, because each needs the previous one's verdicts:
 *  1. GatewayClasses we serve.
 *  2. Gateways of those classes: addresses, listeners, conflicts inside a
 *     Gateway, then across Gateways sharing an address:port.
 *  3. Routes: rules validated once per route (independent of parents), then
 *     each parentRef attached to the listeners it selects and allows.
 *  4. The table: clusters for attached routes only, binds, listeners, vhosts
 *     and entries sorted by the spec's precedence.
 *  5. Statuses.
 *
 * Incremental (struct pl_compiler): passes 1 and 2 run every time (a few
 * objects); while nothing they and the routes depend on changed
 * (cache_stale()), pass 3 reuses every route whose object is the same
 * (struct croute: parsed rules, attachments, status, in a refcounted blob)
 * and pass 4 keeps, from one compile to the next, each served listener's
 * vhosts (struct lcache/vcache), each cluster (struct cclu) and each route's
 * rules as tables hold them (struct rinst): a compile rebuilds only the
 * vhosts whose hostnames a changed route carries, the clusters of Services
 * whose EndpointSlices changed, and the rules naming those clusters. Tables
 * share all of that (blobs, released by a cleanup of the table's arena) and
 * copy only the top: binds, listeners, vhost arrays, rule and cluster lists.
 * A full compile is the same code with nothing cached.
 * Temporaries live in a scratch arena freed at the end.
 */
#include "pl.h"
#include "arena.h"
#include "compile.h"
#include "log.h"
#include "origin.h"
#include "stats.h"
#include "store.h"
#include "table.h"
#include "tabledump.h"

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
#define MAX_GW_LISTENERS 256   /* a Gateway's own listeners plus those of its ListenerSets */
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
static uint64_t ids_gen;        /* resets of the registry: ids cached before one are stale */

static uint32_t cluster_id(const char *name, uint64_t *gen)
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
		if (json_object_size(ids) >= (1u << 20)) {
			json_object_clear(ids);
			ids_gen++;
		}
		id = ids_next++;
		jset(ids, name, json_integer(id));
	}
	*gen = ids_gen;
	pthread_mutex_unlock(&ids_lock);
	return id;
}

static uint64_t cluster_ids_gen(void)
{
	pthread_mutex_lock(&ids_lock);
	uint64_t g = ids_gen;
	pthread_mutex_unlock(&ids_lock);
	return g;
}

/* ---------------------------------------------------------------- shared blocks */

/*
 * Immutable compiled data that outlives one compile: a route's parsed rules
 * (matches, filters, regexes, strings) and a cluster's endpoints. The
 * compiler's cache holds a reference while the data is current, each table
 * built from it holds one more (released by a cleanup of the table's arena),
 * so whoever drops the last one frees it: the controller, or a worker
 * letting go of an old table.
 */
struct blob {
	atomic_int ref;
	struct pl_arena *a;
};

/*
 * The blob lives in its own arena, whose first block (first bytes for the
 * data, made with the arena: one allocation) is sized by the caller: tens of
 * thousands of these stay cached, so slack and allocator overhead add up.
 */
#define BLOB_HDR ((sizeof(struct blob) + 15) & ~(size_t)15)  /* as the arena rounds it */

static struct blob *blob_new_sized(size_t first, size_t block)
{
	struct pl_arena *a = pl_arena_new_sized(first + BLOB_HDR, block, PL_ARENA_FATAL);
	struct blob *b = pl_arena_alloc(a, sizeof(*b));
	atomic_init(&b->ref, 1);
	b->a = a;
	return b;
}

/* A blob for size bytes, counted exactly by the caller (more still works). */
static struct blob *blob_new(size_t size)
{
	return blob_new_sized(size, size);
}

static void blob_ref(struct blob *b)
{
	atomic_fetch_add_explicit(&b->ref, 1, memory_order_relaxed);
}

static void blob_unref(struct blob *b)
{
	if (!b)
		return;
	int prev = atomic_fetch_sub_explicit(&b->ref, 1, memory_order_acq_rel);
	PL_BUG_ON(prev <= 0);
	if (prev == 1)
		pl_arena_free(b->a);     /* b is in it */
}

struct blobrefs {
	struct blob **v;
	size_t n;
};

static void blobrefs_release(void *p)
{
	struct blobrefs *br = p;
	for (size_t i = 0; i < br->n; i++)
		blob_unref(br->v[i]);
}

/* ---------------------------------------------------------------- containers */

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


/*
 * String -> pointer map, open addressing. Keys are not copied: they must
 * outlive the map. Slots come from arena a (scratch maps, dropped with it)
 * or from the heap when a is NULL (smap_free()).
 */
struct smap {
	struct sslot {
		const char *k;
		void *v;
		uint64_t h;
	} *s;
	size_t cap, n;
	struct pl_arena *a;
};

static struct sslot *smap_alloc(struct smap *m, size_t cap)
{
	struct sslot *s = m->a ? pl_arena_alloc(m->a, cap * sizeof(*s)) : pl_xcalloc(cap, sizeof(*s));
	return s;
}

static struct sslot *smap_find(const struct smap *m, const char *k, uint64_t h)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1;
	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		struct sslot *sl = &m->s[i];
		if (!sl->k || (sl->h == h && strcmp(sl->k, k) == 0))
			return sl;
	}
}

/* The slot holding k, or NULL. */
static struct sslot *smap_slot(const struct smap *m, const char *k)
{
	struct sslot *sl = smap_find(m, k, pl_fnv1a(PL_FNV_INIT, k, strlen(k)));
	return sl && sl->k ? sl : NULL;
}

static void *smap_get(const struct smap *m, const char *k)
{
	struct sslot *sl = smap_find(m, k, pl_fnv1a(PL_FNV_INIT, k, strlen(k)));
	return sl && sl->k ? sl->v : NULL;
}

/* The value slot of k, inserted (value NULL) when absent. */
static void **smap_put(struct smap *m, const char *k)
{
	if ((m->n + 1) * 2 > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct sslot *ns = smap_alloc(m, cap), *old = m->s;
		for (size_t i = 0; i < m->cap; i++) {
			if (!old[i].k)
				continue;
			size_t j = (size_t)old[i].h & (cap - 1);
			while (ns[j].k)
				j = (j + 1) & (cap - 1);
			ns[j] = old[i];
		}
		if (!m->a)
			free(old);
		m->s = ns;
		m->cap = cap;
	}
	uint64_t h = pl_fnv1a(PL_FNV_INIT, k, strlen(k));
	struct sslot *sl = smap_find(m, k, h);
	if (!sl->k) {
		sl->k = k;
		sl->h = h;
		sl->v = NULL;
		m->n++;
	}
	return &sl->v;
}

static void smap_free(struct smap *m)
{
	if (!m->a)
		free(m->s);
	m->s = NULL;
	m->cap = m->n = 0;
}

/* Frees a heap map whose keys it owns (heap strings), each value with vfree. */
static void smap_free_owned(struct smap *m, void (*vfree)(void *))
{
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->s[i].k)
			continue;
		free((char *)m->s[i].k);
		vfree(m->s[i].v);
	}
	smap_free(m);
}

/* Removes k (linear probing: the entries after it move back so lookups still find them). */
static void smap_del(struct smap *m, const char *k)
{
	struct sslot *sl = smap_find(m, k, pl_fnv1a(PL_FNV_INIT, k, strlen(k)));
	if (!sl || !sl->k)
		return;
	size_t mask = m->cap - 1, i = (size_t)(sl - m->s), j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!m->s[j].k)
			break;
		size_t home = (size_t)m->s[j].h & mask;
		/* s[j] may fill the hole at i unless its home lies cyclically in (i, j] */
		int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!stays) {
			m->s[i] = m->s[j];
			i = j;
		}
	}
	m->s[i] = (struct sslot){ 0 };
	m->n--;
}

/* Heap vectors, for what outlives a compile. */
static void hvpush(struct vec *v, void *p)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 4;
		v->v = pl_xrealloc(v->v, cap * sizeof(void *));
		v->cap = cap;
	}
	v->v[v->n++] = p;
}

/* Removes one p; order is not kept. */
static void hvdel(struct vec *v, const void *p)
{
	for (size_t i = 0; i < v->n; i++) {
		if (v->v[i] == p) {
			v->v[i] = v->v[--v->n];
			return;
		}
	}
}

static void hvfree(struct vec *v)
{
	free(v->v);
	*v = (struct vec){ 0 };
}

/* ---------------------------------------------------------------- compiler state */

enum from { FROM_SAME = 0, FROM_ALL, FROM_SELECTOR, FROM_NONE };

struct gw;
struct lset;

struct lst {
	struct gw *gw;
	const struct pl_obj *owner;  /* the Gateway or ListenerSet that declares it */
	struct lset *ls;             /* NULL: one of the Gateway's own listeners */
	const char *name;
	char *fullname;              /* "ns/gw/listener" ("ns/listenerset/listener") */
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
	struct vec att;              /* struct attach *, route order (only with BackendTLSPolicies) */
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
	size_t n;                    /* own listeners first (n_own), then those of its ListenerSets */
	size_t n_own;
	size_t cap;                  /* room in l */
	unsigned attached_ls;        /* accepted ListenerSets (status.attachedListenerSets) */
	/* spec.tls.backend.clientCertificateRef (GatewayBackendClientCertificate) */
	int bk_ref;                  /* the Gateway names one: it gets a ResolvedRefs condition */
	const char *bk_reason;       /* NULL: resolved (or none) */
	char bk_msg[256];
	char *bk_crt, *bk_key;       /* table arena, NUL-terminated PEM; NULL: none usable */
	uint64_t bk_fp;
};

/*
 * A ListenerSet naming a Gateway of ours: its listeners are appended to the
 * Gateway's (gw->l[first .. first + n)) when the Gateway's allowedListeners
 * lets it in, after the Gateway's own and those of older ListenerSets, which
 * win every conflict with them.
 */
struct lset {
	const struct pl_obj *o;
	const char *pns, *pname;     /* spec.parentRef */
	struct gw *gw;               /* NULL: the parent is not a Gateway of ours (no status) */
	const char *reason;          /* NULL: accepted */
	char msg[256];
	size_t first, n;
};

struct bref {
	const struct pl_obj *svc;    /* NULL: unresolved */
	const json_t *port;          /* Service port */
	int grpc;                    /* referenced by a GRPCRoute: no appProtocol means h2c */
	char *cluster;               /* name of its cluster (route blob); set once the route attached */
};

struct crule {
	uint32_t index;
	struct pl_rule *r;           /* template (route blob): each table gets a copy with its clusters */
	struct pl_match *m;
	uint32_t nm;
	struct bref *bk;             /* per backend */
	struct bref *fm;             /* per rule filter (mirrors) */
	uint32_t *grank;             /* GRPCRoute: per match, service chars << 16 | method chars */
	int mirrors;                 /* some filter is a RequestMirror: the table copies the filters */
};

/*
 * A compiled route, cached across compiles (struct pl_compiler) while the
 * route object (rev) and everything it was compiled against (cache_valid())
 * stay the same. It lives in its blob with its parsed rules; statuses and
 * attachments are computed once, the table build reads them every compile.
 */
struct croute {
	struct blob *blob;           /* owns this struct and everything it points to */
	size_t kidx;                 /* index into rkinds: the cache is in pass_routes order */
	const char *ns, *name;
	uint64_t rev;
	const struct pl_obj *o;      /* the store's object (refreshed every compile) */
	const char *kind;            /* "HTTPRoute", "TLSRoute", "TCPRoute", "UDPRoute" */
	const char *svc_proto;       /* Service port protocol backends must have: "TCP" or "UDP" */
	int grpc;                    /* GRPCRoute: method matches, gRPC precedence */
	char *key;                   /* "ns/name" for precedence */
	char *full;                  /* "HTTPRoute/ns/name" */
	struct crule *rules;
	size_t n_rules;
	struct vec atts;             /* struct attach *, in the order they were made */
	int gwi;                     /* index into ctx.gws: Gateway of the first listener attached (backend client certificate); -1 */
	const char *stats_listener;
	struct pl_route_stats *stats;
	int stats_done;
	json_t *status;              /* statuses entry; NULL: no parent of ours */
	int unhealthy;
	struct rinst *inst;          /* its rules as tables hold them; NULL while not in the table */
	uint64_t built;              /* pl_compiler.runs of the run that built it */
	int materialized;            /* attached to a listener the table serves (this compile) */
};

struct attach {
	struct croute *r;
	struct vec hosts;            /* char *, "" = any (route blob) */
	unsigned long mark;          /* visit marker of for_covering() */
	uint32_t gi, li;             /* the listener: ctx.gws[gi].l[li] */
};

/* A Secret or ConfigMap a compile read (rev 0: absent), to tell whether it changed since. */
struct dep {
	enum pl_kind kind;
	char *ns, *name;
	uint64_t rev;
};

/* An object of a kind compared by content (GatewayClass, Gateway), as the cache last saw it. */
struct snap {
	const struct pl_obj *o;      /* identity only: never dereferenced */
	uint64_t seq;
	json_t *copy;
};

/* The EndpointSlices of one Service ("ns/svc"): their names, sorted. */
struct svcslices {
	char *key;                   /* heap: the key in pl_compiler.slices */
	char *ns;
	struct vec names;            /* heap vector of heap strings */
};

/*
 * A cluster, shared by the tables built while its endpoints stay the same:
 * the pl_cluster lives in blob, rebuilt (gen + 1) when the Service's
 * EndpointSlices change.
 */
struct cclu {
	char *name;                  /* heap; the key in pl_compiler.clusters */
	char *svc;                   /* heap: "ns/svc", the key in pl_compiler.svc_clusters */
	const struct pl_obj *svc_obj;
	const json_t *port;          /* the Service port (valid while the Service is) */
	int grpc;
	int gwi;                     /* Gateway whose client certificate it presents; -1 */
	struct blob *blob;
	struct pl_cluster *cl;
	uint64_t gen;
	uint64_t *revs;              /* revs of the slices it was built from, name order */
	size_t n_revs;
	uint64_t id_gen;             /* ids_gen its registry id is from */
	uint64_t mark;               /* pl_compiler.runs of the last table that holds it */
};

/* The clusters of one Service. */
struct svcc {
	char *key;                   /* heap: "ns/svc" */
	struct vec v;                /* heap vector of struct cclu * */
};

/* A route's rules as tables hold them: with their clusters. Rebuilt when one of those is. */
struct rinst {
	struct blob *blob;           /* the pl_rules, their backends, mirror filters */
	struct pl_rule **rules;      /* per croute rule */
	struct cuse {
		struct cclu *cc;
		uint64_t gen;
	} *uses;                     /* clusters, in the order the rules name them */
	size_t n_uses;
};

/* One hostname of a listener: the attachments that carry it, and its vhost. */
struct vcache {
	char *host;                  /* heap; the key in lcache.vhosts; "" = any */
	struct vec att;              /* heap vector of struct attach *, any order */
	struct blob *blob;           /* vh's entries and name */
	struct pl_vhost vh;
	size_t full_count;           /* entries with hostname fallbacks (the budget counts those) */
	uint64_t dirty;              /* == pl_compiler.runs: rebuild in this compile */
};

/* A listener the table serves, kept from compile to compile: its vhosts. */
struct lcache {
	struct smap vhosts;          /* host -> struct vcache * (heap map) */
	struct vec sorted;           /* heap vector of struct vcache *, cmp_host order */
	size_t total;                /* sum of full_count */
	int exact_only;              /* over the budget: each vhost holds its own routes only */
	struct vec dirty;            /* per compile (scratch): hostnames whose routes changed */
};

struct pl_compiler {
	struct pl_compile_opts o;
	char *controller_name, *now;
	uint64_t runs;
	uint64_t store_id;           /* 0: nothing cached */
	uint64_t epoch[PL_K_N];      /* store epochs the cache stands on */
	uint64_t store_rev;          /* pl_store_rev() the cache stands on */
	struct snap *snaps;          /* every GatewayClass, then every Gateway, store order */
	size_t n_snaps;
	struct dep *deps;
	size_t n_deps;
	struct croute **routes;      /* pass_routes order */
	size_t n_routes;
	unsigned long mark;
	int have_slices;
	struct smap slices;          /* "ns/svc" -> struct svcslices * */
	struct smap slice_svc;       /* EndpointSlice "ns/name" (heap) -> its "ns/svc" (heap) */
	struct smap clusters;        /* name -> struct cclu * */
	struct smap svc_clusters;    /* "ns/svc" -> struct svcc */
	uint64_t ids_gen;            /* cluster_ids_gen() when the clusters were checked last */
	struct lcache **lc;          /* per listener (ctx.lc_base[gw] + index), NULL: not served */
	size_t n_lc;
	struct smap jint;            /* shared status values: key (heap) -> json_t (a reference) */
	size_t jint_live;            /* values after the last jint_gc() */
	json_t *other_keys;          /* status_delta: keys of the last run's statuses other than routes' */
	size_t route_hint;           /* first block of the next route's blob (bytes) */
	struct pl_compiler_stats st;
};

struct ctx {
	json_t *gone_keys;           /* status_delta: route keys that had a status (array); NULL: not asked */
	json_t *other_keys;          /* status_delta: this run's keys other than routes' */
	struct pl_compiler *pc;
	const struct pl_store *s;
	const struct pl_compile_opts *o;
	const char *now;
	int full;                    /* nothing cached is reused */
	struct pl_table *t;
	struct pl_arena *a;          /* table arena */
	struct pl_arena *tmp;        /* scratch */
	struct gw *gws;
	size_t n_gws;
	json_t *gw_index;            /* "ns/name" -> index into gws */
	struct lset *lsets;          /* ListenerSets, oldest first */
	size_t n_lsets;
	json_t *ls_index;            /* "ns/name" -> index into lsets */
	json_t *cls_status;          /* served class name -> status json */
	struct vec blobs;            /* struct blob * the table points into (in the table's arena) */
	struct vec deps;             /* struct dep * read by this compile */
	struct croute **routes;
	size_t n_routes;
	struct vec gone;             /* struct croute * replaced or deleted: dropped at the end */
	struct vec fresh;            /* struct croute * compiled in this compile */
	unsigned long mark;
	struct btls *btls;           /* BackendTLSPolicies, oldest first */
	size_t n_btls;
	size_t *lc_base;             /* per Gateway: index of its first listener in pc->lc */
	struct smap dirty_svcs;      /* "ns/svc" whose EndpointSlices changed */
	int all_svcs_dirty;
	uint64_t ids_gen;
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

/* pl_store_get() of a Secret or ConfigMap, remembered: the cache is valid while what it read is. */
static const struct pl_obj *dep_get(struct ctx *c, enum pl_kind k, const char *ns, const char *name)
{
	const struct pl_obj *o = pl_store_get(c->s, k, ns, name);
	struct dep *d = pl_arena_alloc(c->tmp, sizeof(*d));
	d->kind = k;
	d->ns = pl_arena_strdup(c->tmp, ns);
	d->name = pl_arena_strdup(c->tmp, name);
	d->rev = o ? o->rev : 0;
	vpush(c->tmp, &c->deps, d);
	return o;
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

/*
 * Shared status values. Thousands of routes carry the same conditions, the
 * same parentRef, often the same whole status: each distinct value is built
 * once and shared (JSON values are reference counted; nobody changes a
 * status after the compile, kube.c changes deep copies). The key spells out
 * what the value is made of: strings with their length, values already
 * shared by address. pl_compiler.jint holds one reference to each.
 */
struct kbuf {
	char b[1536];
	size_t n;
	int over;                    /* too long: built fresh, not shared */
};

/* Digits of v in base (10 or 16) ending just before buf + 24 (not terminated); returns where they start. */
static char *udigits(char *buf, uint64_t v, unsigned base)
{
	char *p = buf + 24;
	do {
		*--p = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	return p;
}

/* Appends len, ':' and the bytes of s (lengths make any concatenation unambiguous). */
static void kput(struct kbuf *k, const char *s, size_t len)
{
	char buf[24], *d = udigits(buf, len, 10);
	size_t nl = (size_t)(buf + 24 - d);
	if (k->over || k->n + nl + 1 + len + 1 >= sizeof(k->b)) {
		k->over = 1;
		return;
	}
	memcpy(k->b + k->n, d, nl);
	k->b[k->n + nl] = ':';
	memcpy(k->b + k->n + nl + 1, s, len);
	k->n += nl + 1 + len;
	k->b[k->n] = '\0';
}

static void kstr(struct kbuf *k, const char *s)
{
	kput(k, s ? s : "", s ? strlen(s) : 0);
}

static void knum(struct kbuf *k, long long v)
{
	char buf[24], *d = udigits(buf, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, 10);
	if (v < 0)
		*--d = '-';
	kput(k, d, (size_t)(buf + 24 - d));
}

static void kptr(struct kbuf *k, const void *p)
{
	char buf[24], *d = udigits(buf, (uintptr_t)p, 16);
	kput(k, d, (size_t)(buf + 24 - d));
}

/* A new reference to the value shared under k, or NULL. */
static json_t *jint_find(struct ctx *c, const struct kbuf *k)
{
	json_t *v = k->over ? NULL : smap_get(&c->pc->jint, k->b);
	return v ? json_incref(v) : NULL;
}

/* Shares v (just built) under k; returns v. */
static json_t *jint_keep(struct ctx *c, const struct kbuf *k, json_t *v)
{
	if (!k->over)
		*smap_put(&c->pc->jint, pl_xstrdup(k->b)) = json_incref(v);
	return v;
}

/* Drops the shared values only the table still holds (in rounds: values hold each other). */
static void jint_gc(struct pl_compiler *pc)
{
	for (;;) {
		struct vec gone = { 0 };
		for (size_t i = 0; i < pc->jint.cap; i++)
			if (pc->jint.s[i].k && ((json_t *)pc->jint.s[i].v)->refcount == 1)
				hvpush(&gone, (void *)pc->jint.s[i].k);
		for (size_t i = 0; i < gone.n; i++) {
			json_t *v = smap_get(&pc->jint, gone.v[i]);
			smap_del(&pc->jint, gone.v[i]);
			free(gone.v[i]);
			json_decref(v);
		}
		size_t n = gone.n;
		hvfree(&gone);
		if (!n)
			break;
	}
	pc->jint_live = pc->jint.n;
}

static void jdecref(void *v)
{
	json_decref(v);
}

static void jint_clear(struct pl_compiler *pc)
{
	smap_free_owned(&pc->jint, jdecref);
}

/* A string value, shared. */
static json_t *jstr_shared(struct ctx *c, const char *s)
{
	struct kbuf k = { .n = 0 };
	kstr(&k, "s");
	kstr(&k, s);
	json_t *v = jint_find(c, &k);
	return v ? v : jint_keep(c, &k, jstr(s));
}

static json_t *cond(struct ctx *c, const struct pl_obj *o, const char *type, int status,
		    const char *reason, const char *msg)
{
	struct kbuf k = { .n = 0 };
	int64_t gen = generation_of(o);
	kstr(&k, "c");
	kstr(&k, type);
	kstr(&k, status ? "T" : "F");
	kstr(&k, reason);
	knum(&k, gen);
	kstr(&k, msg);
	json_t *j = jint_find(c, &k);
	if (j)
		return j;
	j = J(json_object());
	jset(j, "lastTransitionTime", json_string(c->now));
	jset(j, "message", jstr(msg));
	jset(j, "observedGeneration", json_integer(gen));
	jset(j, "reason", json_string(reason));
	jset(j, "status", json_string(status ? "True" : "False"));
	jset(j, "type", json_string(type));
	return jint_keep(c, &k, j);
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

/*
 * all (all_len bytes, NUL-terminated, or NULL) with pem and a newline added,
 * in a new arena copy (a CA bundle is a few PEMs: re-copying keeps it
 * simple). *all_len is updated; the result is NUL-terminated.
 */
static char *pem_append(struct pl_arena *a, const char *all, size_t *all_len, const char *pem, size_t len)
{
	size_t n = *all_len;
	char *d = pl_arena_alloc(a, n + len + 2);
	if (n)
		memcpy(d, all, n);
	memcpy(d + n, pem, len);
	d[n + len] = '\n';
	d[n + len + 1] = '\0';
	*all_len = n + len + 1;
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
	const struct pl_obj *sec = dep_get(c, PL_K_SECRET, ns, nm);
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
	g->bk_crt = crt;   /* secret_bytes() made them in c->a, NUL-terminated */
	g->bk_key = key;
	g->bk_fp = pl_fnv1a(pl_fnv1a(PL_FNV_INIT, crt, cl), key, kl);
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
			ns = l->owner->ns;
		if (*g || strcmp(k, "Secret") != 0 || !nm) {
			lst_refs(l, "InvalidCertificateRef", "certificateRefs[%zu]: unsupported kind %s", i, k);
			continue;
		}
		/* a ListenerSet's references are its own: granted to ListenerSets in its namespace */
		if (strcmp(ns, l->owner->ns) != 0 &&
		    !ref_granted(c, GW_GROUP, pl_kind_str(l->owner->kind), l->owner->ns, "", "Secret", ns, nm)) {
			lst_refs(l, "RefNotPermitted", "certificateRefs[%zu]: Secret %s/%s not permitted by any ReferenceGrant",
				 i, ns, nm);
			continue;
		}
		const struct pl_obj *sec = dep_get(c, PL_K_SECRET, ns, nm);
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
		const struct pl_obj *o = dep_get(c, kind, ns, nm);
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
		all = pem_append(c->a, all, &all_len, pem, len);
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
	uint64_t h = pl_fnv1a(PL_FNV_INIT, &t->mode, sizeof(t->mode));
	for (uint32_t i = 0; i < t->n_certs; i++) {
		h = pl_fnv1a(h, t->certs[i].cert_pem, t->certs[i].cert_len);
		h = pl_fnv1a(h, "\0", 1);
		h = pl_fnv1a(h, t->certs[i].key_pem, t->certs[i].key_len);
		h = pl_fnv1a(h, "\0", 1);
	}
	if (t->client_ca_pem)
		h = pl_fnv1a(h, t->client_ca_pem, strlen(t->client_ca_pem));
	h = pl_fnv1a(h, &t->client_optional, sizeof(t->client_optional));
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

/* ---- ListenerSets: listeners added to a Gateway by other objects (GEP-1713) */

static struct gw *find_gw(struct ctx *c, const char *ns, const char *name);

static int cmp_lset(const void *pa, const void *pb)
{
	return cmp_created(((const struct lset *)pa)->o, ((const struct lset *)pb)->o);
}

/* Every ListenerSet, oldest first (creation time, then namespace and name): the conflict precedence. */
static void lsets_collect(struct ctx *c)
{
	const struct pl_obj *const *v;
	size_t n = pl_store_list(c->s, PL_K_LISTENERSET, &v);
	c->ls_index = J(json_object());
	if (!n)
		return;
	c->lsets = aarr(c->tmp, n, sizeof(struct lset));
	for (size_t i = 0; i < n; i++) {
		json_t *pr = json_object_get(json_object_get(v[i]->json, "spec"), "parentRef");
		const char *grp = GW_GROUP, *kind = "Gateway", *ns = v[i]->ns, *name = NULL;
		struct lset *s = &c->lsets[c->n_lsets++];
		s->o = v[i];
		/* a parentRef that names no Gateway leaves pname NULL: no controller can claim it */
		if (!json_is_object(pr) || sopt(pr, "group", &grp) < 0 || sopt(pr, "kind", &kind) < 0 ||
		    sopt(pr, "namespace", &ns) < 0 || sopt(pr, "name", &name) != 1 || strcmp(grp, GW_GROUP) != 0 ||
		    strcmp(kind, "Gateway") != 0)
			continue;
		s->pns = ns;
		s->pname = name;
	}
	qsort(c->lsets, c->n_lsets, sizeof(*c->lsets), cmp_lset);
	for (size_t i = 0; i < c->n_lsets; i++)
		jset(c->ls_index, tprintf(c, "%s/%s", c->lsets[i].o->ns, c->lsets[i].o->name),
		     json_integer((json_int_t)i));
}

/* How many listeners the ListenerSets naming Gateway ns/name declare (room to reserve). */
static size_t lsets_listeners_for(struct ctx *c, const char *ns, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n_lsets; i++) {
		const struct lset *s = &c->lsets[i];
		if (!s->pname || strcmp(s->pns, ns) != 0 || strcmp(s->pname, name) != 0)
			continue;
		size_t k = json_array_size(json_object_get(json_object_get(s->o->json, "spec"), "listeners"));
		n += k > MAX_LISTENERS ? 0 : k;
		if (n > MAX_GW_LISTENERS)
			return MAX_GW_LISTENERS;
	}
	return n;
}

/* Gateway spec.allowedListeners: may ListenerSets in namespace ns attach? Absent: none may. */
static int lset_allowed(struct ctx *c, const struct gw *g, const char *ns)
{
	json_t *nsj = json_object_get(json_object_get(json_object_get(g->o->json, "spec"), "allowedListeners"),
				      "namespaces");
	const char *from = sget(nsj, "from");
	if (!from || !strcmp(from, "None"))
		return 0;
	if (!strcmp(from, "Same"))
		return strcmp(ns, g->o->ns) == 0;
	if (!strcmp(from, "All"))
		return 1;
	if (!strcmp(from, "Selector"))
		return selector_matches(c, json_object_get(nsj, "selector"), ns) == 1;
	return 0;
}

static void lset_reject(struct lset *s, const char *reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void lset_reject(struct lset *s, const char *reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	first_reason(&s->reason, s->msg, sizeof(s->msg), reason, fmt, ap);
	va_end(ap);
}

/*
 * A listener of a ListenerSet against the listeners before it on its
 * Gateway: the Gateway's own, older ListenerSets' and earlier ones of its
 * own set keep their port and hostname, so only the newcomer is Conflicted
 * (the conformance tests want the rest of a set to stay valid). A listener
 * that is itself conflicted or rejected holds nothing.
 */
static void lset_conflicts(struct gw *g, size_t b)
{
	struct lst *lb = &g->l[b];
	if (lb->dup || !lb->port)
		return;
	for (size_t a = 0; a < b && !lb->conf_reason; a++) {
		struct lst *la = &g->l[a];
		if (la->dup || la->port != lb->port || la->conf_reason || !la->accepted)
			continue;
		const char *kind = pl_kind_str(la->owner->kind);
		if (!protos_share_port(la->protocol, lb->protocol))
			lst_conflict(lb, "ProtocolConflict", "port %lld is also used with protocol %s by %s %s/%s listener %s",
				     lb->port, la->protocol, kind, la->owner->ns, la->owner->name, la->name);
		else if (strcmp(la->host, lb->host) == 0)
			lst_conflict(lb, "HostnameConflict", "hostname \"%s\" on port %lld is used by %s %s/%s listener %s",
				     lb->host, lb->port, kind, la->owner->ns, la->owner->name, la->name);
	}
}

/* Appends the listeners of every ListenerSet its Gateway allows, oldest ListenerSet first. */
static void pass_listenersets(struct ctx *c)
{
	for (size_t i = 0; i < c->n_lsets; i++) {
		struct lset *s = &c->lsets[i];
		struct gw *g = s->pname ? find_gw(c, s->pns, s->pname) : NULL;
		if (!g)
			continue;   /* not a Gateway of ours: not ours to report */
		s->gw = g;
		if (!lset_allowed(c, g, s->o->ns)) {
			lset_reject(s, "NotAllowed", "Gateway %s/%s does not allow ListenerSets from namespace %s",
				    g->o->ns, g->o->name, s->o->ns);
			continue;
		}
		if (g->acc_bad) {
			lset_reject(s, "ParentNotAccepted", "Gateway %s/%s is not accepted", g->o->ns, g->o->name);
			continue;
		}
		int bad = 0;
		json_t *ls = aget(json_object_get(s->o->json, "spec"), "listeners", &bad), *lj;
		size_t nl = json_array_size(ls), k;
		if (bad || nl == 0 || nl > MAX_LISTENERS) {
			lset_reject(s, "ListenersNotValid", "spec.listeners must hold 1..%d listeners", MAX_LISTENERS);
			continue;
		}
		json_array_foreach(ls, k, lj) {
			const char *name = sget(lj, "name");
			if (!json_is_object(lj) || !name || !*name)
				lset_reject(s, "Invalid", "spec.listeners[%zu]: name is required", k);
		}
		if (s->reason)
			continue;
		if (g->n + nl > g->cap) {
			lset_reject(s, "ListenersNotValid", "Gateway %s/%s has room for no more than %d listeners",
				    g->o->ns, g->o->name, MAX_GW_LISTENERS);
			continue;
		}
		s->first = g->n;
		json_array_foreach(ls, k, lj) {
			const char *name = sget(lj, "name");
			struct lst *l = &g->l[g->n++];
			l->gw = g;
			l->owner = s->o;
			l->ls = s;
			l->name = name;
			l->spec = lj;
			l->fullname = pl_arena_printf(c->a, "%s/%s/%s", s->o->ns, s->o->name, name);
			for (size_t p = s->first; p + 1 < g->n; p++)
				if (!g->l[p].dup && strcmp(g->l[p].name, name) == 0)
					l->dup = 1;
			listener_parse(c, l);
		}
		s->n = g->n - s->first;
		for (size_t b = s->first; b < g->n; b++)
			lset_conflicts(g, b);
	}
}

/* A listener a ListenerSet counts as valid: served, every reference resolved. */
static int lset_listener_ok(const struct lst *l)
{
	return lst_programmed(l) && !l->refs_reason;
}

/* After the port checks across Gateways: a ListenerSet is accepted while one of its listeners is valid. */
static void lsets_finish(struct ctx *c)
{
	for (size_t i = 0; i < c->n_lsets; i++) {
		struct lset *s = &c->lsets[i];
		if (!s->gw || s->reason)
			continue;
		size_t ok = 0;
		for (size_t k = s->first; k < s->first + s->n; k++)
			ok += !s->gw->l[k].dup && lset_listener_ok(&s->gw->l[k]);
		if (!ok)
			lset_reject(s, "ListenersNotValid", "no listener of the ListenerSet is valid");
		else
			s->gw->attached_ls++;
	}
}

static void pass_gateways(struct ctx *c)
{
	const struct pl_obj *const *v;
	size_t n = pl_store_list(c->s, PL_K_GATEWAY, &v);
	c->gws = aarr(c->tmp, n, sizeof(struct gw));
	lsets_collect(c);
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
		size_t extra = lsets_listeners_for(c, v[i]->ns, v[i]->name);
		if (extra > MAX_GW_LISTENERS - nl)
			extra = MAX_GW_LISTENERS - nl;
		g->cap = nl + extra;
		g->l = aarr(c->tmp, g->cap, sizeof(struct lst));
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
			l->owner = v[i];
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
		g->n_own = g->n;
	}
	pass_listenersets(c);

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
	lsets_finish(c);
}

static struct gw *find_gw(struct ctx *c, const char *ns, const char *name)
{
	char key[512];
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	json_t *v = json_object_get(c->gw_index, key);
	return v ? &c->gws[json_integer_value(v)] : NULL;
}

/* ---------------------------------------------------------------- pass 3: HTTPRoutes */

/* What compiling one route needs besides the route itself; only its results outlive it. */
struct rctx {
	struct ctx *c;
	struct croute *cr;
	struct pl_arena *a;          /* the route's blob */
	char why[256];
	char **hosts;                /* validated, lower-case; n_hosts == 0: none given */
	size_t n_hosts;
	int invalid;                 /* whole route unusable (bad hostnames, too many rules...) */
	char invalid_msg[256];
	size_t n_dropped;
	char drop_msg[256];
	const char *refs_reason;     /* NULL: resolved */
	char refs_msg[256];
	json_t *parents;             /* status.parents */
	int unhealthy;               /* some condition in parents is */
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

static void route_refs(struct rctx *rc, const char *reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void route_refs(struct rctx *rc, const char *reason, const char *fmt, ...)
{
	if (rc->refs_reason)
		return;
	rc->refs_reason = reason;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rc->refs_msg, sizeof(rc->refs_msg), fmt, ap);
	va_end(ap);
}

/*
 * Where in a route a field is, for error messages ("%.128s%s" and
 * "%.128s%s[%zu]"): built for every field parsed, so without snprintf,
 * which was a tenth of a compile.
 */
/* The concatenation of the n strings in parts, in arena a (names built per route and endpoint). */
static char *acat(struct pl_arena *a, const char *const *parts, size_t n)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++)
		len += strlen(parts[i]);
	char *d = pl_arena_alloc(a, len + 1), *p = d;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(parts[i]);
		memcpy(p, parts[i], l);
		p += l;
	}
	return d;
}

/* Appends s[0..len) to w (n bytes, NUL-terminated) at *at, cutting what does not fit. */
static void wput(char *w, size_t n, size_t *at, const char *s, size_t len)
{
	size_t room = n - 1 - *at;
	if (len > room)
		len = room;
	memcpy(w + *at, s, len);
	*at += len;
	w[*at] = '\0';
}

static char *wcat(char *w, size_t n, const char *what, const char *suffix)
{
	size_t at = 0;
	w[0] = '\0';
	wput(w, n, &at, what, strnlen(what, 128));
	wput(w, n, &at, suffix, strlen(suffix));
	return w;
}

static char *widx(char *w, size_t n, const char *what, const char *suffix, size_t i)
{
	char buf[24], *d = udigits(buf, i, 10);
	wcat(w, n, what, suffix);
	size_t at = strlen(w);
	wput(w, n, &at, "[", 1);
	wput(w, n, &at, d, (size_t)(buf + 24 - d));
	wput(w, n, &at, "]", 1);
	return w;
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

/* Compiles an anchored POSIX ERE into the route's blob. */
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
	struct pl_arena *a = rc->a;
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
	struct pl_kv_match *v = aarr(rc->a, n, sizeof(*v));
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
		m->name = header ? adup_lower(rc->a, name) : pl_arena_strdup(rc->a, name);
		m->value = pl_arena_strdup(rc->a, val);
		if (strcmp(type, "Exact") == 0) {
			m->type = PL_MATCH_EXACT;
		} else if (strcmp(type, "RegularExpression") == 0) {
			m->type = PL_MATCH_REGEX;
			char w[256];
			widx(w, sizeof(w), what, "", i);
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
	struct pl_arena *a = rc->a;
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
		wcat(w, sizeof(w), what, ".path");
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
	wcat(w, sizeof(w), what, ".headers");
	if (parse_kv_matches(rc, hs, w, 1, &m->headers, &m->n_headers) != 0)
		return -1;
	wcat(w, sizeof(w), what, ".queryParams");
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
	struct pl_arena *a = rc->a;
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
				wcat(w, sizeof(w), what, ".method");
				m->path_type = PL_PATH_REGEX;
				m->path = pl_arena_printf(a, "/[^/]+/%s", meth);
				m->path_re = compile_regex(rc, w, m->path);
				if (!m->path_re)
					return -1;
			}
		} else if (strcmp(type, "RegularExpression") == 0) {
			char w[256];
			wcat(w, sizeof(w), what, ".method");
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
	wcat(w, sizeof(w), what, ".headers");
	return parse_kv_matches(rc, hs, w, 1, &m->headers, &m->n_headers);
}

static int parse_kv_list(struct rctx *rc, json_t *arr, const char *what, struct pl_kv **out, uint32_t *n_out)
{
	size_t n = json_array_size(arr);
	if (n > MAX_KV)
		return bad(rc, "%s: more than %d entries", what, MAX_KV);
	struct pl_kv *v = aarr(rc->a, n, sizeof(*v));
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
		v[i].name = adup_lower(rc->a, name);
		v[i].value = pl_arena_strdup(rc->a, val);
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
	wcat(w, sizeof(w), what, ".set");
	if (parse_kv_list(rc, set, w, &h->set, &h->n_set) != 0)
		return -1;
	wcat(w, sizeof(w), what, ".add");
	if (parse_kv_list(rc, add, w, &h->add, &h->n_add) != 0)
		return -1;
	size_t n = json_array_size(rm), i;
	if (n > MAX_KV)
		return bad(rc, "%s.remove: more than %d entries", what, MAX_KV);
	h->remove = aarr(rc->a, n, sizeof(char *));
	json_t *e;
	json_array_foreach(rm, i, e) {
		const char *name = json_string_value(e);
		if (!name || !valid_token(name, 256))
			return bad(rc, "%s.remove[%zu]: invalid header name", what, i);
		h->remove[i] = adup_lower(rc->a, name);
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
	pm->value = pl_arena_strdup(rc->a, v);
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
		route_refs(rc, "InvalidKind", "%s: kind %s%s%s is not supported", what, g, *g ? "/" : "", k);
		return 0;
	}
	if (strcmp(ns, cr->o->ns) != 0 &&
	    !ref_granted(rc->c, GW_GROUP, cr->kind, cr->o->ns, "", "Service", ns, name)) {
		route_refs(rc, "RefNotPermitted", "%s: Service %s/%s is in another namespace and no ReferenceGrant allows it",
			   what, ns, name);
		return 0;
	}
	const struct pl_obj *svc = pl_store_get(rc->c->s, PL_K_SERVICE, ns, name);
	if (!svc) {
		route_refs(rc, "BackendNotFound", "%s: Service %s/%s not found", what, ns, name);
		return 0;
	}
	if (hp != 1) {
		route_refs(rc, "BackendNotFound", "%s: port is required for a Service", what);
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
		route_refs(rc, "BackendNotFound", "%s: Service %s/%s has no port %lld", what, ns, name, port);
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
		route_refs(rc, "UnsupportedProtocol", "%s: Service %s/%s port %lld: protocol %s/%s is not supported",
			   what, ns, name, port, proto ? proto : "TCP", sget(found, "appProtocol") ? sget(found, "appProtocol") : "-");
		return 0;
	}
	b->svc = svc;
	b->port = found;
	b->grpc = cr->grpc;
	return 0;
}

enum { F_REQHDR = 1, F_RESPHDR = 2, F_REDIRECT = 4, F_REWRITE = 8, F_CORS = 16 };

/* ------------------------------------------------------------ CORS filter (added) */

#define MAX_CORS_LIST 64     /* allowOrigins, allowHeaders, exposeHeaders (the CRD's maxItems) */

static int cors_method(const char *v)
{
	for (size_t i = 0; methods[i]; i++)
		if (strcmp(v, methods[i]) == 0)
			return 1;
	return 0;
}

/* 1 if entry i of arr (strings) repeats an earlier one, ignoring case when nocase. */
static int cors_dup(json_t *arr, size_t i, int nocase)
{
	const char *v = json_string_value(json_array_get(arr, i));
	size_t n = strlen(v);
	for (size_t k = 0; k < i; k++) {
		const char *u = json_string_value(json_array_get(arr, k));
		if (nocase ? strlen(u) == n && pl_strncaseeq(u, v, n) : strcmp(u, v) == 0)
			return 1;
	}
	return 0;
}

/*
 * allowMethods (methods), allowHeaders or exposeHeaders (header names) of
 * jc: the entries but "*" joined by ", " into *out (NULL when none), *any
 * when "*" is one of them (alone when star_alone, as the CRD requires).
 */
static int cors_list(struct rctx *rc, json_t *jc, const char *key, const char *what, int is_methods, int star_alone,
		     char **out, uint8_t *any)
{
	int b = 0;
	json_t *arr = aget(jc, key, &b), *e;
	size_t n = json_array_size(arr), max = is_methods ? 9 : MAX_CORS_LIST, len = 0, i;
	if (b || n > max)
		return bad(rc, "%s.cors.%s: must be a list of at most %zu", what, key, max);
	json_array_foreach(arr, i, e) {
		const char *v = json_string_value(e);
		if (!v)
			return bad(rc, "%s.cors.%s[%zu]: not a string%s", what, key, i, str_hint(e));
		if (cors_dup(arr, i, !is_methods))
			return bad(rc, "%s.cors.%s[%zu]: \"%.64s\" given twice", what, key, i, v);
		if (strcmp(v, "*") == 0) {
			if (star_alone && n > 1)
				return bad(rc, "%s.cors.%s: \"*\" cannot be used alongside other values", what, key);
			*any = 1;
			continue;
		}
		if (is_methods ? !cors_method(v) : !valid_token(v, 256))
			return bad(rc, "%s.cors.%s[%zu]: invalid %s \"%.64s\"", what, key, i,
				   is_methods ? "method" : "header name", v);
		len += strlen(v) + 2;
	}
	*out = NULL;
	if (len == 0)
		return 0;
	char *d = pl_arena_alloc(rc->a, len + 1), *p = d;
	json_array_foreach(arr, i, e) {
		const char *v = json_string_value(e);
		size_t l = strlen(v);
		if (strcmp(v, "*") == 0)
			continue;
		if (p != d) {
			memcpy(p, ", ", 2);
			p += 2;
		}
		memcpy(p, v, l);
		p += l;
	}
	*p = '\0';
	*out = d;
	return 0;
}

static int cors_origins(struct rctx *rc, json_t *jc, const char *what, struct pl_cors *c)
{
	int b = 0;
	json_t *arr = aget(jc, "allowOrigins", &b), *e;
	size_t n = json_array_size(arr), i;
	if (b || n > MAX_CORS_LIST)
		return bad(rc, "%s.cors.allowOrigins: must be a list of at most %d", what, MAX_CORS_LIST);
	c->origins = aarr(rc->a, n, sizeof(*c->origins));
	json_array_foreach(arr, i, e) {
		const char *v = json_string_value(e);
		if (!v)
			return bad(rc, "%s.cors.allowOrigins[%zu]: not a string%s", what, i, str_hint(e));
		if (cors_dup(arr, i, 1))
			return bad(rc, "%s.cors.allowOrigins[%zu]: \"%.64s\" given twice", what, i, v);
		if (strcmp(v, "*") == 0) {
			if (n > 1)
				return bad(rc, "%s.cors.allowOrigins: \"*\" cannot be used alongside other origins", what);
			c->any_origin = 1;
			continue;
		}
		struct pl_origin o;
		size_t len = strlen(v);
		int scheme_ok = 0;
		if (len <= 253 && pl_origin_parse(v, len, PL_ORIGIN_WILD, &o) == 0)
			scheme_ok = (o.scheme_len == 4 && pl_strncaseeq(o.scheme, "http", 4)) ||
				    (o.scheme_len == 5 && pl_strncaseeq(o.scheme, "https", 5));
		/* the CRD's pattern: DNS labels or an IPv4 address, no IPv6 literal, no '_' */
		if (!scheme_ok || o.host[0] == '[' || memchr(o.host, '_', o.host_len))
			return bad(rc, "%s.cors.allowOrigins[%zu]: \"%.64s\" is not \"*\" or http(s)://host[:port] "
				   "(host may start with \"*.\" or be \"*\")", what, i, v);
		struct pl_cors_origin *co = &c->origins[c->n_origins++];
		char host[256];
		memcpy(host, o.host, o.host_len);
		host[o.host_len] = '\0';
		co->text = pl_arena_strdup(rc->a, v);
		co->https = o.scheme_len == 5;
		co->port = (uint16_t)o.port;
		pl_hostname_init(&co->host, rc->a, host);
	}
	return 0;
}

/* An HTTPCORSFilter: what the CRD's schema checks (standalone manifests skip it), then the compiled form. */
static int parse_cors(struct rctx *rc, json_t *jc, const char *what, struct pl_cors *c)
{
	if (!json_is_object(jc))
		return bad(rc, "%s.cors is required", what);
	if (cors_origins(rc, jc, what, c) != 0 ||
	    cors_list(rc, jc, "allowMethods", what, 1, 1, &c->allow_methods, &c->any_method) != 0 ||
	    cors_list(rc, jc, "allowHeaders", what, 0, 1, &c->allow_headers, &c->any_header) != 0 ||
	    cors_list(rc, jc, "exposeHeaders", what, 0, 0, &c->expose_headers, &c->any_expose) != 0)
		return -1;
	json_t *cr = json_object_get(jc, "allowCredentials");
	if (cr && !json_is_null(cr) && !json_is_boolean(cr))
		return bad(rc, "%s.cors.allowCredentials: must be true or false", what);
	c->credentials = json_is_true(cr);
	long long age = 5;
	if (iget(jc, "maxAge", &age) < 0 || age < 1 || age > INT32_MAX)
		return bad(rc, "%s.cors.maxAge: must be a whole number of seconds from 1 to %d", what, INT32_MAX);
	c->max_age = (uint32_t)age;
	return 0;
}

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
		wcat(w, sizeof(w), what, ".requestHeaderModifier");
		if (parse_header_mod(rc, json_object_get(jf, "requestHeaderModifier"), w, &f->u.hdr) != 0)
			return -1;
	} else if (strcmp(type, "ResponseHeaderModifier") == 0) {
		f->type = PL_FILTER_RESPONSE_HEADER;
		bit = F_RESPHDR;
		wcat(w, sizeof(w), what, ".responseHeaderModifier");
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
		rd->scheme = pl_arena_strdup(rc->a, scheme);
		if (sopt(j, "hostname", &host) < 0)
			return bad(rc, "%s.requestRedirect.hostname: not a string", what);
		if (host) {
			char hb[256];
			if (norm_hostname(host, hb, sizeof(hb), 0) != 0)
				return bad(rc, "%s.requestRedirect.hostname: invalid", what);
			rd->hostname = pl_arena_strdup(rc->a, hb);
		}
		long long v = 0;
		int r = iget(j, "port", &v);
		if (r < 0 || (r == 1 && (v < 1 || v > 65535)))
			return bad(rc, "%s.requestRedirect.port: must be 1..65535", what);
		rd->port = (int)v;
		v = 302;
		r = iget(j, "statusCode", &v);
		if (r < 0 || (v != 301 && v != 302 && v != 303 && v != 307 && v != 308))
			return bad(rc, "%s.requestRedirect.statusCode: must be 301, 302, 303, 307 or 308", what);
		rd->status_code = (int)v;
		wcat(w, sizeof(w), what, ".requestRedirect.path");
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
			rw->hostname = pl_arena_strdup(rc->a, hb);
		}
		wcat(w, sizeof(w), what, ".urlRewrite.path");
		if (parse_path_mod(rc, json_object_get(j, "path"), w, &rw->path) != 0)
			return -1;
	} else if (strcmp(type, "CORS") == 0) {
		f->type = PL_FILTER_CORS;
		bit = F_CORS;
		if (parse_cors(rc, json_object_get(jf, "cors"), what, &f->u.cors) != 0)
			return -1;
	} else if (strcmp(type, "RequestMirror") == 0) {
		json_t *j = json_object_get(jf, "requestMirror");
		struct pl_mirror *mi = &f->u.mirror;
		f->type = PL_FILTER_MIRROR;
		if (!json_is_object(j))
			return bad(rc, "%s.requestMirror is required", what);
		wcat(w, sizeof(w), what, ".requestMirror.backendRef");
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

#define MAX_RETRY_ATTEMPTS 100   /* added (retry): more is a retry storm, not a policy */

/*
 * Added (retry): rules[].retry (HTTPRouteRetry) into *out: codes from
 * PL_RETRY_CODE_MIN to MAX (a set: no repeats), attempts 1..MAX_RETRY_ATTEMPTS
 * (1 when absent), backoff a Gateway API Duration (25 ms when absent).
 */
static int parse_retry(struct rctx *rc, const json_t *jt, uint32_t index, const struct pl_retry **out)
{
	if (!json_is_object(jt))
		return bad(rc, "spec.rules[%u].retry: not a mapping", index);
	struct pl_retry *rp = pl_arena_alloc(rc->a, sizeof(*rp));
	rp->attempts = 1;
	rp->backoff_ms = 25;
	int b = 0;
	json_t *cs = aget(jt, "codes", &b), *e;
	if (b || json_array_size(cs) > PL_RETRY_CODE_MAX - PL_RETRY_CODE_MIN + 1)
		return bad(rc, "spec.rules[%u].retry.codes: must be a list of status codes", index);
	size_t i;
	json_array_foreach(cs, i, e) {
		double d = json_is_integer(e) ? (double)json_integer_value(e) : json_is_real(e) ? json_real_value(e) : 0;
		if (d < PL_RETRY_CODE_MIN || d > PL_RETRY_CODE_MAX || d != (double)(int)d)
			return bad(rc, "spec.rules[%u].retry.codes[%zu]: must be a status code from %d to %d", index, i,
				   PL_RETRY_CODE_MIN, PL_RETRY_CODE_MAX);
		unsigned k = (unsigned)((int)d - PL_RETRY_CODE_MIN);
		if (rp->codes[k / 64] >> (k % 64) & 1)
			return bad(rc, "spec.rules[%u].retry.codes: %d listed twice", index, (int)d);
		rp->codes[k / 64] |= 1ull << (k % 64);
	}
	long long at = 1;
	if (iget(jt, "attempts", &at) < 0 || at < 1 || at > MAX_RETRY_ATTEMPTS)
		return bad(rc, "spec.rules[%u].retry.attempts: must be an integer from 1 to %d", index,
			   MAX_RETRY_ATTEMPTS);
	rp->attempts = (uint32_t)at;
	const char *bo = NULL;
	int rb = sopt(jt, "backoff", &bo);
	if (rb < 0 || (bo && pl_gw_parse_duration(bo, &rp->backoff_ms) != 0))
		return bad(rc, "spec.rules[%u].retry.backoff: invalid duration \"%.32s\"", index, bo ? bo : "");
	*out = rp;
	return 0;
}

static int parse_rule(struct rctx *rc, json_t *jr, uint32_t index, struct crule *out)
{
	struct pl_arena *a = rc->a;
	char w[256], rp[32];
	widx(rp, sizeof(rp), "spec.rules", "", index);
	if (!json_is_object(jr))
		return bad(rc, "spec.rules[%u]: not a mapping", index);
	struct pl_rule *r = pl_arena_alloc(a, sizeof(*r));
	r->route = rc->cr->full;
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
	out->grank = aarr(a, out->nm, sizeof(uint32_t));
	if (!nm) {
		out->m[0].path_type = PL_PATH_PREFIX;
		out->m[0].path = pl_arena_strdup(a, "/");
		out->m[0].path_len = 1;
	}
	json_t *e;
	json_array_foreach(ms, i, e) {
		widx(w, sizeof(w), rp, ".matches", i);
		if (rc->cr->grpc ? parse_grpc_match(rc, e, &out->m[i], &out->grank[i], w) != 0
				 : parse_match(rc, e, &out->m[i], w) != 0)
			return -1;
	}

	unsigned seen = 0;
	r->filters = aarr(a, nf, sizeof(struct pl_filter));
	out->fm = aarr(a, nf, sizeof(struct bref));
	json_array_foreach(fs, i, e) {
		widx(w, sizeof(w), rp, ".filters", i);
		if (parse_filter(rc, e, w, &r->filters[i], &out->fm[i], 0, &seen) != 0)
			return -1;
		if (r->filters[i].type == PL_FILTER_MIRROR)
			out->mirrors = 1;
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
	/* added (retry): HTTPRoute only (GRPCRoute has no retry field) */
	json_t *jretry = rc->cr->grpc ? NULL : json_object_get(jr, "retry");
	if (jretry && !json_is_null(jretry) && parse_retry(rc, jretry, index, &r->retry) != 0)
		return -1;

	r->backends = aarr(a, nb, sizeof(struct pl_backend));
	out->bk = aarr(a, nb, sizeof(struct bref));
	json_array_foreach(bs, i, e) {
		struct pl_backend *be = &r->backends[i];
		widx(w, sizeof(w), rp, ".backendRefs", i);
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
			widx(w2, sizeof(w2), w, ".filters", j);
			if (parse_filter(rc, bf, w2, &be->filters[j], NULL, 1, &bseen) != 0)
				return -1;
		}
		be->n_filters = (uint32_t)nbf;
	}
	r->n_backends = (uint32_t)nb;
	build_schedule(a, r);
	r->matches = out->m;
	r->n_matches = out->nm;
	return 0;
}

static void parse_route(struct rctx *rc)
{
	struct croute *cr = rc->cr;
	json_t *spec = json_object_get(cr->o->json, "spec");

	int b = 0;
	json_t *hs = aget(spec, "hostnames", &b), *h;
	size_t n = json_array_size(hs), i;
	if (b || n > MAX_HOSTNAMES) {
		rc->invalid = 1;
		snprintf(rc->invalid_msg, sizeof(rc->invalid_msg), "spec.hostnames must be a list of at most %d",
			 MAX_HOSTNAMES);
		return;
	}
	rc->hosts = aarr(rc->c->tmp, n, sizeof(char *));
	json_array_foreach(hs, i, h) {
		char buf[256];
		const char *s = json_string_value(h);
		if (!s || norm_hostname(s, buf, sizeof(buf), 1) != 0) {
			rc->invalid = 1;
			snprintf(rc->invalid_msg, sizeof(rc->invalid_msg), "spec.hostnames[%zu]: invalid hostname", i);
			return;
		}
		rc->hosts[rc->n_hosts++] = pl_arena_strdup(rc->c->tmp, buf);
	}

	json_t *rules = aget(spec, "rules", &b), *jr;
	if (b || json_array_size(rules) > MAX_RULES) {
		rc->invalid = 1;
		snprintf(rc->invalid_msg, sizeof(rc->invalid_msg), "spec.rules must be a list of at most %d", MAX_RULES);
		return;
	}
	size_t nr = json_array_size(rules);
	cr->rules = aarr(rc->a, nr ? nr : 1, sizeof(struct crule));
	if (!nr) {
		/* the CRD default: one rule matching everything, no backends (500) */
		json_t *def = J(json_object());
		if (parse_rule(rc, def, 0, &cr->rules[0]) == 0)
			cr->n_rules = 1;
		json_decref(def);
		return;
	}
	json_array_foreach(rules, i, jr) {
		struct crule tmp = { 0 };
		if (parse_rule(rc, jr, (uint32_t)i, &tmp) == 0) {
			cr->rules[cr->n_rules++] = tmp;
		} else {
			if (!rc->n_dropped)
				snprintf(rc->drop_msg, sizeof(rc->drop_msg), "%s", rc->why);
			rc->n_dropped++;
		}
	}
}

/* Listener l allows routes from namespace ns? */
static int ns_allowed(struct ctx *c, const struct lst *l, const char *ns)
{
	switch (l->from) {
	case FROM_SAME:
		return strcmp(ns, l->owner->ns) == 0;
	case FROM_ALL:
		return 1;
	case FROM_SELECTOR:
		return selector_matches(c, l->selector, ns) == 1;
	default:
		return 0;
	}
}

/*
 * Records that the route attaches to l with these hostnames (one record per
 * listener, hostnames merged over parentRefs); pass_routes() hands the
 * records to the listeners, routes in order, every compile.
 */
static void attach(struct rctx *rc, struct lst *l, char **hosts, size_t n)
{
	struct croute *cr = rc->cr;
	struct ctx *c = rc->c;
	uint32_t gi = (uint32_t)(l->gw - c->gws), li = (uint32_t)(l - l->gw->l);
	struct attach *at = NULL;
	for (size_t i = 0; i < cr->atts.n && !at; i++) {
		struct attach *x = cr->atts.v[i];
		if (x->gi == gi && x->li == li)
			at = x;
	}
	if (!at) {
		at = pl_arena_alloc(rc->a, sizeof(*at));
		at->r = cr;
		at->gi = gi;
		at->li = li;
		vpush(rc->a, &cr->atts, at);
		if (!cr->stats_listener)
			cr->stats_listener = pl_arena_strdup(rc->a, l->fullname);
		if (cr->gwi < 0)
			cr->gwi = (int)gi;
	}
	for (size_t i = 0; i < n; i++) {
		int dup = 0;
		for (size_t j = 0; j < at->hosts.n; j++)
			if (strcmp(at->hosts.v[j], hosts[i]) == 0)
				dup = 1;
		if (!dup)
			vpush(rc->a, &at->hosts, pl_arena_strdup(rc->a, hosts[i]));
	}
}

static json_t *parent_ref_echo(struct ctx *c, json_t *pr, const char *group, const char *kind)
{
	struct kbuf k = { .n = 0 };
	const char *s;
	long long port;
	kstr(&k, "e");
	kstr(&k, group);
	kstr(&k, kind);
	kstr(&k, sopt(pr, "namespace", &s) == 1 ? "1" : "0");
	kstr(&k, sopt(pr, "namespace", &s) == 1 ? s : "");
	kstr(&k, sget(pr, "name"));
	kstr(&k, sopt(pr, "sectionName", &s) == 1 ? "1" : "0");
	kstr(&k, sopt(pr, "sectionName", &s) == 1 ? s : "");
	kstr(&k, iget(pr, "port", &port) == 1 ? "1" : "0");
	knum(&k, iget(pr, "port", &port) == 1 ? port : 0);
	json_t *v = jint_find(c, &k);
	if (v)
		return v;
	json_t *e = J(json_object());
	jset(e, "group", json_string(group));
	jset(e, "kind", jstr(kind));
	if (sopt(pr, "namespace", &s) == 1)
		jset(e, "namespace", jstr(s));
	jset(e, "name", jstr(sget(pr, "name")));
	if (sopt(pr, "sectionName", &s) == 1)
		jset(e, "sectionName", jstr(s));
	if (iget(pr, "port", &port) == 1)
		jset(e, "port", json_integer(port));
	return jint_keep(c, &k, e);
}

static void route_parent(struct rctx *rc, json_t *pr)
{
	struct ctx *c = rc->c;
	struct croute *cr = rc->cr;
	const char *group = GW_GROUP, *kind = "Gateway", *ns = cr->o->ns, *name = NULL, *section = NULL;
	long long port = 0;
	if (!json_is_object(pr) || sopt(pr, "group", &group) < 0 || sopt(pr, "kind", &kind) < 0 ||
	    sopt(pr, "namespace", &ns) < 0 || sopt(pr, "name", &name) != 1 || sopt(pr, "sectionName", &section) < 0 ||
	    iget(pr, "port", &port) < 0)
		return;   /* malformed: no controller could claim it */
	if (strcmp(group, GW_GROUP) != 0 || (strcmp(kind, "Gateway") != 0 && strcmp(kind, "ListenerSet") != 0))
		return;
	/* a Gateway parent selects its own listeners, a ListenerSet parent that set's only */
	struct lset *ls = NULL;
	struct gw *g;
	if (!strcmp(kind, "ListenerSet")) {
		json_t *li = json_object_get(c->ls_index, tprintf(c, "%s/%s", ns, name));
		ls = li ? &c->lsets[json_integer_value(li)] : NULL;
		g = ls ? ls->gw : NULL;
	} else {
		g = find_gw(c, ns, name);
	}
	const char *reason = NULL;
	char msg[300] = "";
	const char *ctl;
	if (!g) {
		/* serving every class: a parent that does not exist is ours to report */
		if (c->o->controller_name || ls || pl_store_get(c->s, PL_K_GATEWAY, ns, name) ||
		    pl_store_get(c->s, PL_K_LISTENERSET, ns, name))
			return;
		ctl = PL_DEFAULT_CONTROLLER_NAME;
		reason = "NoMatchingParent";
		snprintf(msg, sizeof(msg), "%s %s/%s not found", kind, ns, name);
	} else {
		ctl = g->controller;
	}

	if (!reason && rc->invalid) {
		reason = "UnsupportedValue";
		snprintf(msg, sizeof(msg), "%s", rc->invalid_msg);
	}
	if (!reason && g->acc_bad) {
		reason = "NoMatchingParent";
		snprintf(msg, sizeof(msg), "Gateway %s/%s is not accepted", g->o->ns, g->o->name);
	}
	if (!reason && ls && ls->reason) {
		reason = "NoMatchingParent";
		snprintf(msg, sizeof(msg), "ListenerSet %s/%s is not accepted", ns, name);
	}
	size_t lo = ls ? ls->first : 0, hi = ls ? ls->first + ls->n : g ? g->n_own : 0;
	struct lst *cand[MAX_GW_LISTENERS];
	size_t nc = 0;
	if (!reason) {
		size_t sel = 0, prog = 0;
		for (size_t i = lo; i < hi; i++) {
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
			snprintf(msg, sizeof(msg), "%s %s/%s has no listener%s%s%s", kind, ns, name,
				 section ? " named " : "", section ? section : "", port ? " on that port" : "");
		} else if (!prog) {
			reason = "NoMatchingParent";
			snprintf(msg, sizeof(msg), "no selected listener of %s %s/%s is programmed", kind, ns, name);
		} else if (!nc) {
			reason = "NotAllowedByListeners";
			snprintf(msg, sizeof(msg), "no listener of %s %s/%s allows %ss from namespace %s", kind, ns,
				 name, cr->kind, cr->o->ns);
		}
	}
	/* hostnames: route x listener intersections */
	char **hosts[MAX_GW_LISTENERS];
	size_t nh[MAX_GW_LISTENERS];
	size_t attachable = 0;
	if (!reason) {
		for (size_t i = 0; i < nc; i++) {
			struct lst *l = cand[i];
			hosts[i] = aarr(c->tmp, rc->n_hosts ? rc->n_hosts : 1, sizeof(char *));
			nh[i] = 0;
			if (!rc->n_hosts) {
				hosts[i][nh[i]++] = l->host;
			} else {
				for (size_t k = 0; k < rc->n_hosts; k++) {
					char buf[256];
					if (pl_gw_host_intersect(l->host, rc->hosts[k], buf, sizeof(buf)))
						hosts[i][nh[i]++] = pl_arena_strdup(c->tmp, buf);
				}
			}
			if (nh[i])
				attachable++;
		}
		if (!attachable) {
			reason = "NoMatchingListenerHostname";
			snprintf(msg, sizeof(msg), "no hostname of the route matches a listener of %s %s/%s", kind, ns, name);
		}
	}
	if (!reason && cr->n_rules == 0) {
		reason = "UnsupportedValue";
		snprintf(msg, sizeof(msg), "all rules are invalid: %s", rc->drop_msg);
	}
	if (!reason) {
		for (size_t i = 0; i < nc; i++)
			if (nh[i])
				attach(rc, cand[i], hosts[i], nh[i]);
	}

	json_t *cv[3];
	size_t ncv = 0;
	if (reason)
		cv[ncv++] = cond(c, cr->o, "Accepted", 0, reason, msg);
	else
		cv[ncv++] = cond(c, cr->o, "Accepted", 1, "Accepted", "Route is accepted");
	if (rc->refs_reason)
		cv[ncv++] = cond(c, cr->o, "ResolvedRefs", 0, rc->refs_reason, rc->refs_msg);
	else
		cv[ncv++] = cond(c, cr->o, "ResolvedRefs", 1, "ResolvedRefs", "All references are resolved");
	if (rc->n_dropped && cr->n_rules) {
		snprintf(msg, sizeof(msg), "%zu rule(s) dropped: %s", rc->n_dropped, rc->drop_msg);
		cv[ncv++] = cond(c, cr->o, "PartiallyInvalid", 1, "UnsupportedValue", msg);
	}
	/* the conditions just made, in their unhealthy state (what unhealthy() looks for) */
	if (reason || rc->refs_reason || (rc->n_dropped && cr->n_rules))
		rc->unhealthy = 1;
	json_t *echo = parent_ref_echo(c, pr, group, kind);
	struct kbuf k = { .n = 0 };
	kstr(&k, "p");
	kptr(&k, echo);
	kstr(&k, ctl);
	for (size_t i = 0; i < ncv; i++)
		kptr(&k, cv[i]);
	json_t *p = jint_find(c, &k);
	if (p) {
		json_decref(echo);
		for (size_t i = 0; i < ncv; i++)
			json_decref(cv[i]);
	} else {
		p = J(json_object());
		jset(p, "parentRef", echo);
		jset(p, "controllerName", jstr(ctl));
		json_t *conds = J(json_array());
		for (size_t i = 0; i < ncv; i++)
			jpush(conds, cv[i]);
		jset(p, "conditions", conds);
		jint_keep(c, &k, p);
	}
	jpush(rc->parents, p);
}

static const enum pl_kind rkinds[] = { PL_K_HTTPROUTE, PL_K_GRPCROUTE, PL_K_TLSROUTE, PL_K_TCPROUTE, PL_K_UDPROUTE };

/*
 * A route's blob: its first block is as large as the previous route's data
 * (pl_compiler.route_hint: routes of one cluster tend to look alike, so most
 * fit with little slack), later blocks ROUTE_BLOCK.
 */
#define ROUTE_BLOCK 512
#define ROUTE_HINT_MIN 256
#define ROUTE_HINT_MAX 16384

static json_t *obj_header(struct ctx *c, const struct pl_obj *o, json_t *status);
static int unhealthy(const json_t *j);
static char *cluster_name(struct ctx *c, struct pl_arena *a, const struct bref *b, const struct gw *g);

/* Compiles one route into a new blob: rules, attachments, status, cluster names. */
static struct croute *route_build(struct ctx *c, const struct pl_obj *o, size_t kidx)
{
	struct blob *b = blob_new_sized(c->pc->route_hint, ROUTE_BLOCK);
	struct croute *cr = pl_arena_alloc(b->a, sizeof(*cr));
	cr->blob = b;
	cr->kidx = kidx;
	cr->ns = pl_arena_strdup(b->a, o->ns);
	cr->name = pl_arena_strdup(b->a, o->name);
	cr->rev = o->rev;
	cr->o = o;
	cr->built = c->pc->runs;
	cr->kind = pl_kind_str(rkinds[kidx]);
	cr->svc_proto = rkinds[kidx] == PL_K_UDPROUTE ? "UDP" : "TCP";
	cr->grpc = rkinds[kidx] == PL_K_GRPCROUTE;
	cr->gwi = -1;
	int bd = 0;
	json_t *prs = aget(json_object_get(o->json, "spec"), "parentRefs", &bd), *pr;
	if (!json_array_size(prs))
		return cr;
	cr->key = acat(b->a, (const char *[]){ o->ns, "/", o->name }, 3);
	cr->full = acat(b->a, (const char *[]){ cr->kind, "/", o->ns, "/", o->name }, 5);
	struct rctx rc = { .c = c, .cr = cr, .a = b->a };
	rc.parents = J(json_array());
	parse_route(&rc);
	size_t k;
	json_array_foreach(prs, k, pr) {
		if (k >= MAX_PARENTREFS)
			break;
		route_parent(&rc, pr);
	}
	if (json_array_size(rc.parents)) {
		struct kbuf kb = { .n = 0 };
		kstr(&kb, "r");
		for (size_t i = 0; i < json_array_size(rc.parents); i++)
			kptr(&kb, json_array_get(rc.parents, i));
		json_t *st = jint_find(c, &kb);
		if (!st) {
			st = J(json_object());
			jset(st, "parents", json_incref(rc.parents));
			jint_keep(c, &kb, st);
		}
		cr->unhealthy = rc.unhealthy;
		cr->status = c->o->status_map ? st : obj_header(c, o, st);
	}
	json_decref(rc.parents);
	if (cr->atts.n) {
		const struct gw *g = &c->gws[cr->gwi];
		for (size_t i = 0; i < cr->n_rules; i++) {
			struct crule *ru = &cr->rules[i];
			for (uint32_t j = 0; j < ru->r->n_backends; j++)
				if (ru->bk[j].svc)
					ru->bk[j].cluster = cluster_name(c, b->a, &ru->bk[j], g);
			for (uint32_t j = 0; j < ru->r->n_filters; j++)
				if (ru->r->filters[j].type == PL_FILTER_MIRROR && ru->fm[j].svc)
					ru->fm[j].cluster = cluster_name(c, b->a, &ru->fm[j], g);
		}
	}
	size_t used = pl_arena_used(b->a) - BLOB_HDR;
	c->pc->route_hint = used < ROUTE_HINT_MIN ? ROUTE_HINT_MIN : used > ROUTE_HINT_MAX ? ROUTE_HINT_MAX : used;
	return cr;
}

static void rinst_free(struct rinst *in)
{
	if (!in)
		return;
	blob_unref(in->blob);
	free(in->uses);
	free(in);
}

static void route_drop(struct croute *cr)
{
	rinst_free(cr->inst);
	json_decref(cr->status);
	blob_unref(cr->blob);
}

/* The cache's order: route kind (rkinds), then the store's (namespace, name). */
static int route_cmp(const struct croute *cr, size_t kidx, const struct pl_obj *o)
{
	if (cr->kidx != kidx)
		return cr->kidx < kidx ? -1 : 1;
	int r = strcmp(cr->ns, o->ns);
	return r ? r : strcmp(cr->name, o->name);
}

/* A cached route dropped: deleted, or changed (built again). Its status key may be gone. */
static void route_gone(struct ctx *c, struct croute *o)
{
	vpush(c->tmp, &c->gone, o);
	if (c->gone_keys && o->status && json_array_append_new(c->gone_keys, json_string(o->full)) != 0)
		PL_PANIC("out of memory");
}

/*
 * Every route of the store, in kind then (namespace, name) order: the cached
 * compile of an unchanged one, a fresh compile of the others. Then their
 * attachments go to the listeners, route by route, as if all were new.
 */
static void pass_routes(struct ctx *c)
{
	struct pl_compiler *pc = c->pc;
	const struct pl_obj *const *v;
	size_t total = 0;
	for (size_t k = 0; k < PL_ARRAY_LEN(rkinds); k++)
		total += pl_store_list(c->s, rkinds[k], &v);
	struct croute **routes = pl_xcalloc(total ? total : 1, sizeof(*routes));
	size_t at = 0, old = 0;
	for (size_t k = 0; k < PL_ARRAY_LEN(rkinds); k++) {
		size_t n = pl_store_list(c->s, rkinds[k], &v);
		for (size_t i = 0; i < n; i++) {
			struct croute *cr = NULL;
			while (old < pc->n_routes) {
				struct croute *o = pc->routes[old];
				/*
				 * The store object it was compiled from, same version: same
				 * key (a rev is never reused, so a recycled address cannot
				 * pass), without comparing names.
				 */
				int r = o->o == v[i] && o->rev == v[i]->rev && o->kidx == k ? 0 : route_cmp(o, k, v[i]);
				if (r > 0)
					break;
				old++;
				if (r == 0 && !c->full && o->rev == v[i]->rev)
					cr = o;
				else
					route_gone(c, o);   /* deleted, or changed */
				if (r == 0)
					break;
			}
			if (cr) {
				cr->o = v[i];
				pc->st.routes_reused++;
			} else {
				cr = route_build(c, v[i], k);
				vpush(c->tmp, &c->fresh, cr);
				pc->st.routes_compiled++;
			}
			routes[at++] = cr;
		}
	}
	while (old < pc->n_routes)
		route_gone(c, pc->routes[old++]);
	free(pc->routes);
	pc->routes = routes;
	pc->n_routes = total;
	c->routes = routes;
	c->n_routes = total;
	for (size_t i = 0; i < total; i++) {
		struct croute *cr = routes[i];
		for (size_t j = 0; j < cr->atts.n; j++) {
			struct attach *a = cr->atts.v[j];
			struct lst *l = &c->gws[a->gi].l[a->li];
			if (c->n_btls)   /* pass_btls_ancestors() walks them */
				vpush(c->tmp, &l->att, a);
			l->attached++;
		}
	}
}

/* ---------------------------------------------------------------- pass 4: the table */

/* "a/b" into buf; NULL if it does not fit. */
static char *join2(char *buf, size_t size, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la + lb + 2 > size)
		return NULL;
	memcpy(buf, a, la);
	buf[la] = '/';
	memcpy(buf + la + 1, b, lb + 1);
	return buf;
}

/*
 * EndpointSlices by Service, kept across compiles: "ns/svc" -> the names of
 * its slices (struct svcslices), and each slice's Service so that a deleted
 * or relabelled slice is taken out of the right list. Updated from the
 * store's change log; rebuilt when the log does not reach back far enough.
 */
static void slices_clear(struct pl_compiler *pc)
{
	for (size_t i = 0; i < pc->slices.cap; i++) {
		struct svcslices *ss = pc->slices.s[i].v;
		if (!pc->slices.s[i].k)
			continue;
		for (size_t k = 0; k < ss->names.n; k++)
			free(ss->names.v[k]);
		hvfree(&ss->names);
		free(ss->key);
		free(ss->ns);
		free(ss);
	}
	smap_free(&pc->slices);
	smap_free_owned(&pc->slice_svc, free);
	pc->have_slices = 0;
}

static const char *slice_service(const struct pl_obj *o)
{
	return sget(json_object_get(json_object_get(o->json, "metadata"), "labels"), "kubernetes.io/service-name");
}

static void svc_dirty(struct ctx *c, const char *key)
{
	if (smap_get(&c->dirty_svcs, key))
		return;
	char *k = pl_arena_strdup(c->tmp, key);
	*smap_put(&c->dirty_svcs, k) = k;
}

/* Slice ns/name now belongs to Service svc (NULL: to none, or it is gone); both Services are dirty. */
static void slice_set(struct ctx *c, const char *ns, const char *name, const char *svc)
{
	struct pl_compiler *pc = c->pc;
	char key[600], skey[600];
	if (!join2(key, sizeof(key), ns, name))
		return;
	if (svc && !join2(skey, sizeof(skey), ns, svc))
		svc = NULL;
	struct sslot *sl = smap_slot(&pc->slice_svc, key);
	char *old = sl ? sl->v : NULL;
	if (old && svc && !strcmp(old, skey)) {
		svc_dirty(c, old);   /* the same Service, other endpoints */
		return;
	}
	if (old) {
		struct svcslices *ss = smap_get(&pc->slices, old);
		for (size_t i = 0; ss && i < ss->names.n; i++) {
			if (!strcmp(ss->names.v[i], name)) {
				free(ss->names.v[i]);
				memmove(&ss->names.v[i], &ss->names.v[i + 1], (ss->names.n - i - 1) * sizeof(void *));
				ss->names.n--;
				break;
			}
		}
		svc_dirty(c, old);
		free(old);
		sl->v = NULL;
		if (!svc) {
			char *k = (char *)sl->k;
			smap_del(&pc->slice_svc, key);
			free(k);
			return;
		}
	}
	if (!svc)
		return;
	struct svcslices *ss = smap_get(&pc->slices, skey);
	if (!ss) {
		ss = pl_xcalloc(1, sizeof(*ss));
		ss->key = pl_xstrdup(skey);
		ss->ns = pl_xstrdup(ns);
		*smap_put(&pc->slices, ss->key) = ss;
	}
	/* sorted: the slices of a Service in store (name) order */
	size_t lo = 0, hi = ss->names.n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(ss->names.v[mid], name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	hvpush(&ss->names, NULL);
	memmove(&ss->names.v[lo + 1], &ss->names.v[lo], (ss->names.n - 1 - lo) * sizeof(void *));
	ss->names.v[lo] = pl_xstrdup(name);
	svc_dirty(c, skey);
	if (sl)
		sl->v = pl_xstrdup(skey);
	else
		*smap_put(&pc->slice_svc, pl_xstrdup(key)) = pl_xstrdup(skey);
}

static void on_store_change(enum pl_kind k, const char *ns, const char *name, void *arg)
{
	struct ctx *c = arg;
	if (k != PL_K_ENDPOINTSLICE)
		return;
	const struct pl_obj *o = pl_store_get(c->s, k, ns, name);
	slice_set(c, ns, name, o ? slice_service(o) : NULL);
}

/*
 * Brings the slice index up to date with the store and notes the Services
 * whose slices changed (all of them when the index was rebuilt).
 */
static void index_slices(struct ctx *c)
{
	struct pl_compiler *pc = c->pc;
	if (pc->have_slices && !c->full) {
		if (pl_store_epoch(c->s, PL_K_ENDPOINTSLICE) == pc->epoch[PL_K_ENDPOINTSLICE])
			return;
		if (pl_store_changes(c->s, pc->store_rev, on_store_change, c) == 0)
			return;
	}
	slices_clear(pc);
	c->all_svcs_dirty = 1;
	const struct pl_obj *const *v;
	size_t n = pl_store_list(c->s, PL_K_ENDPOINTSLICE, &v);
	for (size_t i = 0; i < n; i++) {
		const char *svc = slice_service(v[i]);
		if (svc)
			slice_set(c, v[i]->ns, v[i]->name, svc);
	}
	pc->have_slices = 1;
}

/* The EndpointSlices of Service port b's Service, name order, into out (scratch). */
static void slices_of(struct ctx *c, const char *svckey, struct vec *out)
{
	struct svcslices *ss = smap_get(&c->pc->slices, svckey);
	for (size_t i = 0; ss && i < ss->names.n; i++) {
		const struct pl_obj *o = pl_store_get(c->s, PL_K_ENDPOINTSLICE, ss->ns, ss->names.v[i]);
		PL_BUG_ON(!o);
		vpush(c->tmp, out, (void *)o);
	}
}

/*
 * 1 if text is in set already; else 0, and text is recorded. Slices of one
 * Service may repeat an address, and a scan per endpoint was quadratic in a
 * large Service: set is a scratch-arena smap keyed by endpoint text.
 */
static int ep_seen(struct smap *set, const char *text)
{
	void **v = smap_put(set, text);
	if (*v)
		return 1;
	*v = (void *)text;
	return 0;
}

/* The endpoints of Service port sport from slices sl into eps (scratch struct pl_endpoint *), deduplicated. */
static void add_endpoints(struct ctx *c, const json_t *sport, const struct vec *sl, struct vec *out)
{
	struct smap seen = { .a = c->tmp };
	struct vec eps = { 0 };
	const char *pname = sget(sport, "name");
	if (!pname)
		pname = "";
	const char *want_proto = sget(sport, "protocol");
	if (!want_proto)
		want_proto = "TCP";
	for (size_t i = 0; i < sl->n; i++) {
		json_t *js = ((const struct pl_obj *)sl->v[i])->json;
		const char *at = sget(js, "addressType");
		int fam = at && !strcmp(at, "IPv4") ? AF_INET : at && !strcmp(at, "IPv6") ? AF_INET6 : 0;
		if (!fam)
			continue;
		int bd = 0;
		json_t *ports = aget(js, "ports", &bd), *p, *eps_j = aget(js, "endpoints", &bd), *ej;
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
		json_array_foreach(eps_j, k, ej) {
			int ab = 0;
			json_t *addrs = aget(ej, "addresses", &ab);
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
			char pbuf[25], *pd = udigits(pbuf, (uint64_t)port, 10);
			pbuf[24] = '\0';
			char *text = fam == AF_INET ? acat(c->tmp, (const char *[]){ ip, ":", pd }, 3)
						    : acat(c->tmp, (const char *[]){ "[", ip, "]:", pd }, 4);
			if (ep_seen(&seen, text))
				continue;
			json_t *rd = json_object_get(json_object_get(ej, "conditions"), "ready");
			struct pl_endpoint *ep = pl_arena_alloc(c->tmp, sizeof(*ep));
			ep->addr = ss;
			ep->addrlen = len;
			ep->text = text;
			ep->ready = !json_is_false(rd);
			vpush(c->tmp, &eps, ep);
		}
	}
	*out = eps;
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
		const struct pl_obj *cm = nm ? dep_get(c, PL_K_CONFIGMAP, o->ns, nm) : NULL;
		const char *pem = cm ? sget(json_object_get(cm->json, "data"), "ca.crt") : NULL;
		size_t len = pem ? strlen(pem) : 0;
		if (!pem || len > 1024 * 1024 || !pem_certs_ok(pem, len)) {
			p->refs_reason = "InvalidCACertificateRef";
			snprintf(p->refs_msg, sizeof(p->refs_msg), "caCertificateRefs[%zu]: ConfigMap %s/%.100s %s", i, o->ns,
				 nm ? nm : "", cm ? "has no valid ca.crt" : "not found");
			continue;
		}
		all = pem_append(c->a, all, &all_len, pem, len);
	}
	bt->ca_pem = all;
	if (nrefs && !all && !p->acc_reason) {
		p->acc_reason = "NoValidCACertificate";
		snprintf(p->acc_msg, sizeof(p->acc_msg), "no caCertificateRef resolves to a valid CA certificate");
	}
	if (p->acc_reason)
		bt->error = pl_arena_strdup(c->a, p->acc_msg);
	uint64_t h = PL_FNV_INIT;
	if (bt->sni)
		h = pl_fnv1a(h, bt->sni, strlen(bt->sni) + 1);
	if (all)
		h = pl_fnv1a(h, all, all_len + 1);
	for (uint32_t k = 0; k < bt->n_sans; k++)
		h = pl_fnv1a(h, bt->sans[k], strlen(bt->sans[k]) + 1);
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

/*
 * A backend's cluster name: "ns/svc:port", "/UDP" for UDP ports, "/h2c" for
 * a GRPCRoute's backend without appProtocol (gRPC needs HTTP/2), then
 * "/gw=ns/name" when TLS with the Gateway's client certificate (g) applies:
 * such a cluster's pool never mixes identities.
 */
static char *cluster_name(struct ctx *c, struct pl_arena *a, const struct bref *b, const struct gw *g)
{
	const struct btls *bp = btls_for(c, b);
	const struct gw *cg = bp && bp->bt && g && g->bk_crt ? g : NULL;
	long long port = 0;
	iget(b->port, "port", &port);
	const char *sp = sget(b->port, "protocol"), *ap = sget(b->port, "appProtocol");
	int infer_h2c = b->grpc && (!ap || !*ap);
	const char *sfx = sp && !strcmp(sp, "UDP") ? "/UDP" : infer_h2c ? "/h2c" : "";
	char pbuf[25], *pd = udigits(pbuf, port < 0 ? 0 : (uint64_t)port, 10);
	pbuf[24] = '\0';
	if (cg)
		return acat(a, (const char *[]){ b->svc->ns, "/", b->svc->name, ":", pd, sfx, "/gw=", cg->o->ns, "/",
					     cg->o->name }, 10);
	return acat(a, (const char *[]){ b->svc->ns, "/", b->svc->name, ":", pd, sfx }, 6);
}

/* A copy of a BackendTLSPolicy's settings in arena a: clusters outlive the compile that made them. */
static struct pl_backend_tls *btls_copy(struct pl_arena *a, const struct pl_backend_tls *s)
{
	struct pl_backend_tls *d = pl_arena_alloc(a, sizeof(*d));
	*d = *s;
	d->sni = pl_arena_strdup(a, s->sni);
	d->ca_pem = pl_arena_strdup(a, s->ca_pem);
	d->policy = pl_arena_strdup(a, s->policy);
	d->error = pl_arena_strdup(a, s->error);
	d->client_cert_pem = pl_arena_strdup(a, s->client_cert_pem);
	d->client_key_pem = pl_arena_strdup(a, s->client_key_pem);
	d->sans = aarr(a, s->n_sans, sizeof(char *));
	for (uint32_t i = 0; i < s->n_sans; i++)
		d->sans[i] = pl_arena_strdup(a, s->sans[i]);
	return d;
}

/* 1 if cc was built from exactly the slices sl as they are now. */
static int cclu_current(const struct cclu *cc, const struct vec *sl)
{
	if (cc->n_revs != sl->n)
		return 0;
	for (size_t i = 0; i < sl->n; i++)
		if (cc->revs[i] != ((const struct pl_obj *)sl->v[i])->rev)
			return 0;
	return 1;
}

/* Arena bytes of a string (pl_arena_alloc rounds to 16). */
static size_t astr(const char *s)
{
	return s ? (strlen(s) + 1 + 15) & ~(size_t)15 : 0;
}

/* (Re)builds cc's pl_cluster in a new blob (sized to fit); tables holding the old one keep it. */
static void cclu_build(struct ctx *c, struct cclu *cc, const struct vec *sl)
{
	struct pl_compiler *pc = c->pc;
	const struct bref br = { .svc = cc->svc_obj, .port = cc->port, .grpc = cc->grpc };
	const struct btls *bp = btls_for(c, &br);
	struct vec eps;
	add_endpoints(c, cc->port, sl, &eps);
	size_t size = sizeof(struct pl_cluster) + 16 + astr(cc->name) + eps.n * sizeof(struct pl_endpoint) + 16;
	for (size_t q = 0; q < eps.n; q++)
		size += astr(((struct pl_endpoint *)eps.v[q])->text);
	if (bp) {
		const struct pl_backend_tls *t = bp->bt;
		size += sizeof(*t) + 16 + astr(t->sni) + astr(t->ca_pem) + astr(t->policy) + astr(t->error) +
			t->n_sans * sizeof(char *) + 16;
		for (uint32_t i = 0; i < t->n_sans; i++)
			size += astr(t->sans[i]);
		if (cc->gwi >= 0 && c->gws[cc->gwi].bk_crt)
			size += astr(c->gws[cc->gwi].bk_crt) + astr(c->gws[cc->gwi].bk_key);
	}
	struct blob *b = blob_new(size);
	struct pl_cluster *cl = pl_arena_alloc(b->a, sizeof(*cl));
	cl->name = pl_arena_strdup(b->a, cc->name);
	const struct gw *g = cc->gwi >= 0 ? &c->gws[cc->gwi] : NULL;
	const struct gw *cg = bp && bp->bt && g && g->bk_crt ? g : NULL;
	const char *ap = sget(cc->port, "appProtocol");
	int ok;
	cl->app_proto = cc->grpc && (!ap || !*ap) ? PL_APP_H2C : app_proto(ap, &ok);
	if (bp) {
		cl->tls = btls_copy(b->a, bp->bt);
		if (cg) {
			/* TLS with the Gateway's client certificate: a cluster of its own (see cluster_name()) */
			cl->tls->client_cert_pem = pl_arena_strdup(b->a, cg->bk_crt);
			cl->tls->client_key_pem = pl_arena_strdup(b->a, cg->bk_key);
			cl->tls->fingerprint = pl_fnv1a(cl->tls->fingerprint, &cg->bk_fp, sizeof(cg->bk_fp));
		}
	}
	atomic_init(&cl->rr, 0);
	cl->eps = aarr(b->a, eps.n, sizeof(struct pl_endpoint));
	for (size_t q = 0; q < eps.n; q++) {
		cl->eps[q] = *(struct pl_endpoint *)eps.v[q];
		cl->eps[q].text = pl_arena_strdup(b->a, cl->eps[q].text);
	}
	cl->n_eps = (uint32_t)eps.n;
	if (!c->o->ephemeral)
		cl->id = cluster_id(cc->name, &cc->id_gen);
	free(cc->revs);
	cc->n_revs = sl->n;
	cc->revs = pl_xcalloc(sl->n ? sl->n : 1, sizeof(*cc->revs));
	for (size_t i = 0; i < sl->n; i++)
		cc->revs[i] = ((const struct pl_obj *)sl->v[i])->rev;
	blob_unref(cc->blob);
	cc->blob = b;
	cc->cl = cl;
	cc->gen++;
	pc->st.clusters_built++;
}

static void cclu_free(struct cclu *cc)
{
	blob_unref(cc->blob);
	free(cc->revs);
	free(cc->name);
	free(cc->svc);
	free(cc);
}

/* The cluster of backend b of a route whose first listener is on Gateway gwi. */
static struct cclu *cclu_get(struct ctx *c, const struct bref *b, int gwi)
{
	struct pl_compiler *pc = c->pc;
	struct cclu *cc = smap_get(&pc->clusters, b->cluster);
	if (cc)
		return cc;
	char key[600];
	cc = pl_xcalloc(1, sizeof(*cc));
	cc->name = pl_xstrdup(b->cluster);
	cc->svc = pl_xstrdup(join2(key, sizeof(key), b->svc->ns, b->svc->name) ? key : "");
	cc->svc_obj = b->svc;
	cc->port = b->port;
	cc->grpc = b->grpc;
	/* the client certificate only matters when the name says so */
	cc->gwi = strstr(b->cluster, "/gw=") ? gwi : -1;
	*smap_put(&pc->clusters, cc->name) = cc;
	struct svcc *sc = smap_get(&pc->svc_clusters, cc->svc);
	if (!sc) {
		sc = pl_xcalloc(1, sizeof(*sc));
		sc->key = pl_xstrdup(cc->svc);
		*smap_put(&pc->svc_clusters, sc->key) = sc;
	}
	hvpush(&sc->v, cc);
	struct vec sl = { 0 };
	slices_of(c, cc->svc, &sl);
	cclu_build(c, cc, &sl);
	return cc;
}

/* Rebuilds cc if its Service's slices changed (always when ephemeral: ids are per table). */
static void cclu_check(struct ctx *c, struct cclu *cc)
{
	struct vec sl = { 0 };
	slices_of(c, cc->svc, &sl);
	if (!c->o->ephemeral && cc->id_gen == c->ids_gen && cclu_current(cc, &sl)) {
		c->pc->st.clusters_reused++;
		return;
	}
	cclu_build(c, cc, &sl);
}

/* Clusters of Services whose EndpointSlices changed; all of them when the index was rebuilt. */
static void clusters_refresh(struct ctx *c)
{
	struct pl_compiler *pc = c->pc;
	if (c->o->ephemeral || c->all_svcs_dirty || c->ids_gen != pc->ids_gen) {
		for (size_t i = 0; i < pc->clusters.cap; i++)
			if (pc->clusters.s[i].k)
				cclu_check(c, pc->clusters.s[i].v);
	} else {
		for (size_t i = 0; i < c->dirty_svcs.cap; i++) {
			if (!c->dirty_svcs.s[i].k)
				continue;
			struct svcc *sc = smap_get(&pc->svc_clusters, c->dirty_svcs.s[i].k);
			for (size_t k = 0; sc && k < sc->v.n; k++)
				cclu_check(c, sc->v.v[k]);
		}
	}
	pc->ids_gen = c->ids_gen;
}

/* This table's form of a route's rules: the blob's templates with the current clusters. */
static void rinst_build(struct ctx *c, struct croute *cr)
{
	rinst_free(cr->inst);
	struct rinst *in = pl_xcalloc(1, sizeof(*in));
	cr->inst = in;
	size_t size = cr->n_rules * sizeof(struct pl_rule *) + 16;
	for (size_t i = 0; i < cr->n_rules; i++) {
		const struct pl_rule *t = cr->rules[i].r;
		size += ((sizeof(struct pl_rule) + 15) & ~(size_t)15) + t->n_backends * sizeof(struct pl_backend) + 16 +
			(cr->rules[i].mirrors ? t->n_filters * sizeof(struct pl_filter) + 16 : 0);
	}
	in->blob = blob_new(size);
	struct pl_arena *a = in->blob->a;
	if (!cr->stats_done) {
		/* once per route object: the registry's entry never changes for its name and listener */
		if (!c->o->ephemeral && cr->n_rules)
			cr->stats = pl_stats_route(cr->full, cr->stats_listener);
		cr->stats_done = 1;
	}
	size_t nuse = 0;
	for (size_t i = 0; i < cr->n_rules; i++)
		nuse += cr->rules[i].r->n_backends + cr->rules[i].r->n_filters;
	in->uses = pl_xcalloc(nuse ? nuse : 1, sizeof(*in->uses));
	in->rules = aarr(a, cr->n_rules, sizeof(struct pl_rule *));
	for (size_t i = 0; i < cr->n_rules; i++) {
		const struct crule *ru = &cr->rules[i];
		const struct pl_rule *t = ru->r;
		struct pl_rule *r = pl_arena_alloc(a, sizeof(*r));
		/* every field as parsed (templates never reach a table, their cursor is untouched) ... */
		memcpy(r, t, sizeof(*r));
		/* ... then what is this route's and this table's */
		atomic_init(&r->sched_pos, 0);
		r->stats = cr->stats;
		r->backends = aarr(a, t->n_backends, sizeof(struct pl_backend));
		r->n_backends = t->n_backends;
		for (uint32_t b = 0; b < t->n_backends; b++) {
			r->backends[b] = t->backends[b];
			if (!ru->bk[b].svc)
				continue;
			struct cclu *cc = cclu_get(c, &ru->bk[b], cr->gwi);
			r->backends[b].cluster = cc->cl;
			in->uses[in->n_uses++] = (struct cuse){ cc, cc->gen };
		}
		if (ru->mirrors) {
			r->filters = aarr(a, t->n_filters, sizeof(struct pl_filter));
			memcpy(r->filters, t->filters, t->n_filters * sizeof(struct pl_filter));
			for (uint32_t f = 0; f < t->n_filters; f++) {
				if (r->filters[f].type != PL_FILTER_MIRROR || !ru->fm[f].svc)
					continue;
				struct cclu *cc = cclu_get(c, &ru->fm[f], cr->gwi);
				r->filters[f].u.mirror.cluster = cc->cl;
				in->uses[in->n_uses++] = (struct cuse){ cc, cc->gen };
			}
		}
		in->rules[i] = r;
	}
}

static int rinst_current(const struct rinst *in)
{
	for (size_t i = 0; i < in->n_uses; i++)
		if (in->uses[i].cc->gen != in->uses[i].gen)
			return 0;
	return 1;
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
/* ---- the listeners the table serves, kept across compiles */

static struct lcache *lc_of(const struct ctx *c, uint32_t gi, uint32_t li)
{
	return c->pc->lc[c->lc_base[gi] + li];
}

static void vc_free(struct vcache *vc)
{
	blob_unref(vc->blob);
	hvfree(&vc->att);
	free(vc->host);
	free(vc);
}

static void lc_free(struct lcache *L)
{
	if (!L)
		return;
	for (size_t i = 0; i < L->sorted.n; i++)
		vc_free(L->sorted.v[i]);
	hvfree(&L->sorted);
	smap_free(&L->vhosts);
	free(L);
}

/* Index of the first vhost of L not before host (cmp_host order). */
static size_t vc_pos(const struct lcache *L, const char *host)
{
	size_t lo = 0, hi = L->sorted.n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (cmp_host(((struct vcache *)L->sorted.v[mid])->host, host) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct vcache *vc_add(struct ctx *c, struct lcache *L, const char *host)
{
	struct vcache *vc = pl_xcalloc(1, sizeof(*vc));
	vc->host = pl_xstrdup(host);
	vc->dirty = c->pc->runs;
	*smap_put(&L->vhosts, vc->host) = vc;
	size_t at = vc_pos(L, host);
	hvpush(&L->sorted, NULL);
	memmove(&L->sorted.v[at + 1], &L->sorted.v[at], (L->sorted.n - 1 - at) * sizeof(void *));
	L->sorted.v[at] = vc;
	return vc;
}

static void vc_remove(struct lcache *L, struct vcache *vc)
{
	size_t at = vc_pos(L, vc->host);
	PL_BUG_ON(at >= L->sorted.n || L->sorted.v[at] != vc);
	memmove(&L->sorted.v[at], &L->sorted.v[at + 1], (L->sorted.n - at - 1) * sizeof(void *));
	L->sorted.n--;
	smap_del(&L->vhosts, vc->host);
	L->total -= vc->full_count;
	vc_free(vc);
}

/* A route's attachment to L comes (or goes): its hostnames' vhosts must be looked at again. */
static void lc_attach(struct ctx *c, struct lcache *L, struct attach *at)
{
	for (size_t k = 0; k < at->hosts.n; k++) {
		const char *h = at->hosts.v[k];
		struct vcache *vc = smap_get(&L->vhosts, h);
		if (!vc)
			vc = vc_add(c, L, h);
		hvpush(&vc->att, at);
		vpush(c->tmp, &L->dirty, (void *)h);
	}
}

static void lc_detach(struct ctx *c, struct lcache *L, struct attach *at)
{
	for (size_t k = 0; k < at->hosts.n; k++) {
		const char *h = at->hosts.v[k];
		struct vcache *vc = smap_get(&L->vhosts, h);
		PL_BUG_ON(!vc);
		hvdel(&vc->att, at);
		if (!vc->att.n)
			vc_remove(L, vc);
		vpush(c->tmp, &L->dirty, (void *)h);
	}
}

/* Every attachment of cr to a served listener comes or goes. */
static void route_attachments(struct ctx *c, struct croute *cr, int add)
{
	for (size_t j = 0; j < cr->atts.n; j++) {
		struct attach *at = cr->atts.v[j];
		struct lcache *L = lc_of(c, at->gi, at->li);
		if (!L)
			continue;
		if (add)
			lc_attach(c, L, at);
		else
			lc_detach(c, L, at);
	}
}

/* cr's entries changed in place (new rule forms): its hostnames' vhosts are rebuilt. */
static void route_touch(struct ctx *c, struct croute *cr)
{
	for (size_t j = 0; j < cr->atts.n; j++) {
		struct attach *at = cr->atts.v[j];
		struct lcache *L = lc_of(c, at->gi, at->li);
		for (size_t k = 0; L && k < at->hosts.n; k++)
			vpush(c->tmp, &L->dirty, at->hosts.v[k]);
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

static void visit(const struct vcache *vc, unsigned long mark, const char *vhost, int exact_only,
		  void (*fn)(void *arg, struct attach *at, const char *host), void *arg)
{
	for (size_t i = 0; vc && i < vc->att.n; i++) {
		struct attach *at = vc->att.v[i];
		if (at->mark == mark)
			continue;
		const char *h = best_host(at, vhost, exact_only);
		if (!h)
			continue;
		at->mark = mark;
		fn(arg, at, h);
	}
}

/*
 * Calls fn once for each attachment to L with a hostname covering vhost,
 * with its best such hostname: those with vhost itself, with each wildcard
 * covering it ("*" + each suffix starting at a '.' after the first label),
 * and with "any". exact_only: vhost itself only.
 */
static void for_covering(struct ctx *c, const struct lcache *L, const char *vhost, int exact_only,
			 void (*fn)(void *arg, struct attach *at, const char *host), void *arg)
{
	unsigned long mark = ++c->mark;
	enum hkind vk = hkind(vhost);
	if (vk != H_ANY) {
		visit(smap_get(&L->vhosts, vhost), mark, vhost, exact_only, fn, arg);
		if (!exact_only) {
			char key[300];
			for (const char *p = strchr(vk == H_WILD ? vhost + 2 : vhost, '.'); p; p = strchr(p + 1, '.')) {
				size_t n = strlen(p);
				if (n + 2 > sizeof(key))
					continue;
				key[0] = '*';
				memcpy(key + 1, p, n + 1);
				visit(smap_get(&L->vhosts, key), mark, vhost, 0, fn, arg);
			}
		}
	}
	const struct vcache *any = smap_get(&L->vhosts, "");
	for (size_t k = 0; any && k < any->att.n; k++) {
		struct attach *at = any->att.v[k];
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
	if (ev->counting) {
		for (size_t r = 0; r < cr->n_rules; r++)
			ev->count += cr->rules[r].nm;
		return;
	}
	for (size_t r = 0; r < cr->n_rules; r++) {
		for (uint32_t m = 0; m < cr->rules[r].nm; m++) {
			if (ev->n == ev->cap) {
				size_t ncap = ev->cap ? ev->cap * 2 : 16;
				struct ent *ne = aarr(ev->c->tmp, ncap, sizeof(*ne));
				if (ev->n)
					memcpy(ne, ev->v, ev->n * sizeof(*ne));
				ev->v = ne;
				ev->cap = ncap;
			}
			ev->v[ev->n++] = (struct ent){ .m = &cr->rules[r].m[m], .rule = cr->inst->rules[r], .cr = cr,
						       .host = host, .match_idx = m,
						       .grank = cr->rules[r].grank ? cr->rules[r].grank[m] : 0 };
		}
	}
}

/* A vhost's entries, in precedence order, into a new blob (tables holding the old one keep it). */
static void vhost_build(struct ctx *c, const struct lcache *L, struct vcache *vc)
{
	struct entvec ev = { .c = c };
	for_covering(c, L, vc->host, L->exact_only, add_route_entries, &ev);
	if (ev.n)
		qsort(ev.v, ev.n, sizeof(*ev.v), cmp_ent);
	struct blob *b = blob_new(ev.n * sizeof(struct pl_route_entry) + strlen(vc->host) + 64);
	pl_hostname_init(&vc->vh.host, b->a, *vc->host ? vc->host : NULL);
	vc->vh.entries = aarr(b->a, ev.n, sizeof(struct pl_route_entry));
	for (size_t i = 0; i < ev.n; i++) {
		vc->vh.entries[i].match = *ev.v[i].m;
		vc->vh.entries[i].rule = ev.v[i].rule;
	}
	vc->vh.n_entries = (uint32_t)ev.n;
	blob_unref(vc->blob);
	vc->blob = b;
}

/*
 * The vhosts whose entries may have changed: those a changed hostname
 * covers (an exact name itself, a wildcard the names under it, "any" all).
 * Their counts with hostname fallbacks are redone for the budget.
 */
static void lc_resolve(struct ctx *c, struct lcache *L)
{
	uint64_t run = c->pc->runs;
	struct smap wild = { .a = c->tmp };
	/* each wildcard looks at every vhost: past a point, rebuilding them all is cheaper */
	int all = L->dirty.n * 4 >= L->sorted.n && L->dirty.n > 16;
	for (size_t i = 0; i < L->dirty.n && !all; i++) {
		const char *h = L->dirty.v[i];
		enum hkind k = hkind(h);
		if (k == H_EXACT) {
			struct vcache *vc = smap_get(&L->vhosts, h);
			if (vc)
				vc->dirty = run;
		} else if (k == H_WILD) {
			if (smap_get(&wild, h))
				continue;
			*smap_put(&wild, h) = (void *)h;
			for (size_t j = 0; j < L->sorted.n; j++) {
				struct vcache *vc = L->sorted.v[j];
				if (host_covers(h, vc->host))
					vc->dirty = run;
			}
		} else {
			all = 1;
		}
	}
	if (all)
		for (size_t j = 0; j < L->sorted.n; j++)
			((struct vcache *)L->sorted.v[j])->dirty = run;
	L->dirty = (struct vec){ 0 };
	for (size_t j = 0; j < L->sorted.n; j++) {
		struct vcache *vc = L->sorted.v[j];
		if (vc->dirty != run)
			continue;
		struct entvec count = { .c = c, .counting = 1 };
		for_covering(c, L, vc->host, 0, add_route_entries, &count);
		L->total = L->total - vc->full_count + count.count;
		vc->full_count = count.count;
	}
}

/* Entries copied into less specific vhosts as fallbacks are bounded table-wide. */
#define MAX_TABLE_ENTRIES 1000000u

/* The served listeners of the table, by bind: struct bindkey with struct lst *, most specific first. */
static void table_binds(struct ctx *c, struct vec *binds)
{
	for (size_t g = 0; g < c->n_gws; g++) {
		struct gw *gw = &c->gws[g];
		for (size_t k = 0; k < gw->n; k++) {
			struct lst *l = &gw->l[k];
			if (!lst_programmed(l))
				continue;
			struct bindkey *bk = NULL;
			for (size_t b = 0; b < binds->n && !bk; b++) {
				struct bindkey *x = binds->v[b];
				if (x->port == l->port && strcmp(x->addr, gw->addr) == 0)
					bk = x;
			}
			if (!bk) {
				bk = pl_arena_alloc(c->tmp, sizeof(*bk));
				snprintf(bk->addr, sizeof(bk->addr), "%s", gw->addr);
				bk->port = l->port;
				vpush(c->tmp, binds, bk);
			}
			vpush(c->tmp, &bk->l, l);
		}
	}
	for (size_t b = 0; b < binds->n; b++) {
		struct bindkey *bk = binds->v[b];
		qsort(bk->l.v, bk->l.n, sizeof(void *), cmp_lst_ptr);
	}
}

static struct lcache *lc_of_lst(const struct ctx *c, const struct lst *l)
{
	return lc_of(c, (uint32_t)(l->gw - c->gws), (uint32_t)(l - l->gw->l));
}

/*
 * Rules of less specific hostnames follow a vhost's own rules (the spec
 * ranks by hostname first, it does not hide them). Unless that would copy
 * too much: then each vhost of that listener holds only its own routes. The
 * budget goes to listeners in table order.
 */
static void vhosts_update(struct ctx *c, struct vec *binds)
{
	uint64_t run = c->pc->runs;
	for (size_t i = 0; i < c->pc->n_lc; i++)
		if (c->pc->lc[i])
			lc_resolve(c, c->pc->lc[i]);
	size_t budget = c->o->max_entries ? c->o->max_entries : MAX_TABLE_ENTRIES;
	for (size_t b = 0; b < binds->n; b++) {
		struct bindkey *bk = binds->v[b];
		for (size_t i = 0; i < bk->l.n; i++) {
			struct lst *l = bk->l.v[i];
			struct lcache *L = lc_of_lst(c, l);
			int exact_only = 0;
			if (L->total > budget) {
				exact_only = 1;
				pl_warn("listener %s: %zu route entries with hostname fallbacks; serving each hostname's own routes only",
					l->fullname, L->total);
			} else {
				budget -= L->total;
			}
			if (exact_only != L->exact_only) {
				L->exact_only = exact_only;
				for (size_t j = 0; j < L->sorted.n; j++)
					((struct vcache *)L->sorted.v[j])->dirty = run;
			}
			for (size_t j = 0; j < L->sorted.n; j++) {
				struct vcache *vc = L->sorted.v[j];
				if (vc->dirty == run)
					vhost_build(c, L, vc);
			}
		}
	}
}

static void build_table(struct ctx *c, struct vec *binds)
{
	struct pl_table *t = c->t;
	/* the blobs the table keeps, at most: its vhosts', and each attached route's, rules' and clusters' */
	size_t nb = 0;
	for (size_t i = 0; i < c->pc->n_lc; i++)
		if (c->pc->lc[i])
			nb += c->pc->lc[i]->sorted.n;
	for (size_t i = 0; i < c->n_routes; i++)
		if (c->routes[i]->materialized)
			nb += 2 + c->routes[i]->inst->n_uses;
	c->blobs.v = aarr(c->a, nb, sizeof(void *));
	c->blobs.cap = nb;
	t->binds = aarr(c->a, binds->n, sizeof(struct pl_bind));
	t->n_binds = (uint32_t)binds->n;
	for (size_t b = 0; b < binds->n; b++) {
		struct bindkey *bk = binds->v[b];
		struct pl_bind *pb = &t->binds[b];
		pb->address = pl_arena_strdup(c->a, bk->addr);
		pb->port = (uint16_t)bk->port;
		/* ProtocolConflict keeps a bind to one protocol, except HTTPS+TLS (mixed): then the
		 * bind is TLS, so the proxy peeks the SNI before it decides to terminate or splice */
		pb->proto = ((struct lst *)bk->l.v[0])->proto;
		for (size_t i = 0; i < bk->l.n; i++)
			if (((struct lst *)bk->l.v[i])->proto == PL_PROTO_TLS)
				pb->proto = PL_PROTO_TLS;
		pb->listeners = aarr(c->a, bk->l.n, sizeof(struct pl_listener));
		pb->n_listeners = (uint32_t)bk->l.n;
		for (size_t i = 0; i < bk->l.n; i++) {
			struct lst *l = bk->l.v[i];
			struct pl_listener *pl = &pb->listeners[i];
			const struct lcache *L = lc_of_lst(c, l);
			pl->name = l->fullname;
			pl->proto = l->proto;
			pl->tls = l->tls;
			pl_hostname_init(&pl->host, c->a, *l->host ? l->host : NULL);
			pl->vhosts = aarr(c->a, L->sorted.n, sizeof(struct pl_vhost));
			pl->n_vhosts = (uint32_t)L->sorted.n;
			for (size_t j = 0; j < L->sorted.n; j++) {
				const struct vcache *vc = L->sorted.v[j];
				pl->vhosts[j] = vc->vh;
				vpush(c->tmp, &c->blobs, vc->blob);
			}
		}
	}
}

/* ---------------------------------------------------------------- pass 5: statuses and JSON */

static json_t *obj_header(struct ctx *c, const struct pl_obj *o, json_t *status)
{
	json_t *j = J(json_object());
	jset(j, "apiVersion", jstr_shared(c, sget(o->json, "apiVersion")));
	jset(j, "kind", jstr_shared(c, pl_kind_str(o->kind)));
	json_t *md = J(json_object());
	jset(md, "name", jstr(o->name));
	if (*o->ns)
		jset(md, "namespace", jstr_shared(c, o->ns));  /* a few namespaces, thousands of routes */
	jset(j, "metadata", md);
	jset(j, "status", status);
	return j;
}

/* One entry of status.listeners of o (the Gateway or ListenerSet that declares l). */
static json_t *listener_status(struct ctx *c, const struct pl_obj *o, const struct lst *l)
{
	int prog = lst_programmed(l);
	json_t *lj = J(json_object());
	jset(lj, "name", jstr(l->name));
	jset(lj, "supportedKinds", json_incref(l->supported_kinds));
	jset(lj, "attachedRoutes", json_integer(lst_attachable(l) ? l->attached : 0));
	json_t *conds = J(json_array());
	/* a ListenerSet's conflicted listener is not accepted: its conflict is the reason everywhere */
	const char *lsconf = l->ls && l->accepted ? l->conf_reason : NULL;
	if (lsconf)
		jpush(conds, cond(c, o, "Accepted", 0, lsconf, l->conf_msg));
	else if (l->accepted)
		jpush(conds, cond(c, o, "Accepted", 1, "Accepted", "Listener is accepted"));
	else
		jpush(conds, cond(c, o, "Accepted", 0, l->acc_reason, l->acc_msg));
	if (l->conf_reason)
		jpush(conds, cond(c, o, "Conflicted", 1, l->conf_reason, l->conf_msg));
	else
		jpush(conds, cond(c, o, "Conflicted", 0, "NoConflicts", "No conflicts"));
	if (l->refs_reason)
		jpush(conds, cond(c, o, "ResolvedRefs", 0, l->refs_reason, l->refs_msg));
	else
		jpush(conds, cond(c, o, "ResolvedRefs", 1, "ResolvedRefs", "All references are resolved"));
	if (prog)
		jpush(conds, cond(c, o, "Programmed", 1, "Programmed", "Listener is programmed"));
	else
		jpush(conds, cond(c, o, "Programmed", 0, lsconf ? lsconf : "Invalid", "Listener is not programmed"));
	jset(lj, "conditions", conds);
	return lj;
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
	for (size_t i = 0; i < g->n_own; i++) {
		struct lst *l = &g->l[i];
		if (l->dup)
			continue;
		int prog = lst_programmed(l);
		prog_l += prog;
		bad_l += !prog || l->refs_reason;
		jpush(ls, listener_status(c, g->o, l));
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
	if (json_object_get(json_object_get(g->o->json, "spec"), "allowedListeners"))
		jset(st, "attachedListenerSets", json_integer(g->attached_ls));
	return st;
}

static json_t *listenerset_status(struct ctx *c, const struct lset *s)
{
	json_t *st = J(json_object());
	json_t *ls = J(json_array());
	size_t bad_l = 0;
	for (size_t k = s->first; k < s->first + s->n; k++) {
		const struct lst *l = &s->gw->l[k];
		if (l->dup)
			continue;
		bad_l += !lset_listener_ok(l);
		jpush(ls, listener_status(c, s->o, l));
	}
	json_t *conds = J(json_array());
	if (s->reason) {
		jpush(conds, cond(c, s->o, "Accepted", 0, s->reason, s->msg));
		jpush(conds, cond(c, s->o, "Programmed", 0, s->reason, "ListenerSet is not accepted"));
	} else {
		if (bad_l)
			jpush(conds, cond(c, s->o, "Accepted", 1, "ListenersNotValid", "Some listeners are not valid"));
		else
			jpush(conds, cond(c, s->o, "Accepted", 1, "Accepted", "ListenerSet is accepted"));
		jpush(conds, cond(c, s->o, "Programmed", 1, "Programmed", "ListenerSet is programmed"));
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

static void add_status(struct ctx *c, struct pl_compile_result *r, const struct pl_obj *o, json_t *st)
{
	if (unhealthy(st))
		r->problems++;
	if (!c->o->status_map) {
		jpush(r->statuses, obj_header(c, o, st));
		return;
	}
	/* no UTF-8 check of the key: the store's names come from parsed JSON or YAML (see the routes' below) */
	char *key = acat(c->tmp, (const char *[]){ pl_kind_str(o->kind), "/", o->ns, "/", o->name }, 5);
	if (json_object_set_new_nocheck(r->statuses, key, st) != 0 ||
	    (c->other_keys && json_object_set_new_nocheck(c->other_keys, key, json_true()) != 0))
		PL_PANIC("out of memory");
}

/* ---------------------------------------------------------------- the compiler */

/*
 * Keys no compile reads: status, and the Kubernetes controller's own
 * bookkeeping ("_pylon...": the status as text, pool and stub marks; a pool
 * address itself is in spec.addresses).
 */
static int bookkeeping(const char *k)
{
	return !strcmp(k, "status") || !strncmp(k, "_pylon", 6);
}

/* 1 if a and b are equal but for bookkeeping() and metadata.resourceVersion/managedFields. */
static int same_but_status(const json_t *a, const json_t *b)
{
	if (!json_is_object(a) || !json_is_object(b))
		return json_equal(a, b);
	const char *k;
	json_t *v;
	size_t na = 0, nb = 0;
	json_object_foreach((json_t *)a, k, v) {
		if (bookkeeping(k))
			continue;
		na++;
		json_t *w = json_object_get(b, k);
		if (!strcmp(k, "metadata") && json_is_object(v) && json_is_object(w)) {
			const char *mk;
			json_t *mv;
			size_t ma = 0, mb = 0;
			json_object_foreach(v, mk, mv) {
				if (!strcmp(mk, "resourceVersion") || !strcmp(mk, "managedFields"))
					continue;
				ma++;
				if (!json_equal(mv, json_object_get(w, mk)))
					return 0;
			}
			json_object_foreach(w, mk, mv)
				if (strcmp(mk, "resourceVersion") && strcmp(mk, "managedFields"))
					mb++;
			if (ma != mb)
				return 0;
			continue;
		}
		if (!json_equal(v, w))
			return 0;
	}
	json_object_foreach((json_t *)b, k, v)
		if (!bookkeeping(k))
			nb++;
	return na == nb;
}

static void snaps_free(struct pl_compiler *pc)
{
	for (size_t i = 0; i < pc->n_snaps; i++)
		json_decref(pc->snaps[i].copy);
	free(pc->snaps);
	pc->snaps = NULL;
	pc->n_snaps = 0;
}

/*
 * GatewayClasses, Gateways and ListenerSets are compared by content: the Kubernetes
 * controller rewrites a Gateway's copy in place (pool addresses) and
 * replaces it with every status write, neither of which changes what a route
 * compiles to.
 */
static const enum pl_kind snap_kinds[] = { PL_K_GATEWAYCLASS, PL_K_GATEWAY, PL_K_LISTENERSET };

static int snaps_same(const struct pl_compiler *pc, const struct pl_store *s)
{
	size_t at = 0;
	for (size_t k = 0; k < PL_ARRAY_LEN(snap_kinds); k++) {
		const struct pl_obj *const *v;
		size_t n = pl_store_list(s, snap_kinds[k], &v);
		for (size_t i = 0; i < n; i++, at++) {
			if (at >= pc->n_snaps)
				return 0;
			const struct snap *sn = &pc->snaps[at];
			if (sn->o != v[i] || sn->seq != v[i]->seq || !same_but_status(sn->copy, v[i]->json))
				return 0;
		}
	}
	return at == pc->n_snaps;
}

static void snaps_take(struct pl_compiler *pc, const struct pl_store *s)
{
	snaps_free(pc);
	size_t total = 0;
	const struct pl_obj *const *v;
	for (size_t k = 0; k < PL_ARRAY_LEN(snap_kinds); k++)
		total += pl_store_list(s, snap_kinds[k], &v);
	pc->snaps = pl_xcalloc(total ? total : 1, sizeof(*pc->snaps));
	for (size_t k = 0; k < PL_ARRAY_LEN(snap_kinds); k++) {
		size_t n = pl_store_list(s, snap_kinds[k], &v);
		for (size_t i = 0; i < n; i++) {
			struct snap *sn = &pc->snaps[pc->n_snaps++];
			sn->o = v[i];
			sn->seq = v[i]->seq;
			sn->copy = J(json_deep_copy(v[i]->json));
		}
	}
}

static void deps_free(struct pl_compiler *pc)
{
	for (size_t i = 0; i < pc->n_deps; i++) {
		free(pc->deps[i].ns);
		free(pc->deps[i].name);
	}
	free(pc->deps);
	pc->deps = NULL;
	pc->n_deps = 0;
}

/* Kinds whose every put or delete makes the cache stale. */
static const enum pl_kind epoch_kinds[] = { PL_K_SERVICE, PL_K_REFERENCEGRANT, PL_K_NAMESPACE, PL_K_BACKENDTLSPOLICY };

/* NULL if what the cache was compiled against is unchanged in s, else the first difference found. */
static const char *cache_stale(const struct pl_compiler *pc, const struct pl_store *s)
{
	if (!pc->store_id)
		return "first run";
	if (pc->store_id != pl_store_id(s))
		return "store";
	for (size_t i = 0; i < PL_ARRAY_LEN(epoch_kinds); i++)
		if (pl_store_epoch(s, epoch_kinds[i]) != pc->epoch[epoch_kinds[i]])
			return pl_kind_str(epoch_kinds[i]);
	if (pl_store_epoch(s, PL_K_SECRET) != pc->epoch[PL_K_SECRET] ||
	    pl_store_epoch(s, PL_K_CONFIGMAP) != pc->epoch[PL_K_CONFIGMAP]) {
		for (size_t i = 0; i < pc->n_deps; i++) {
			const struct dep *d = &pc->deps[i];
			const struct pl_obj *o = pl_store_get(s, d->kind, d->ns, d->name);
			if ((o ? o->rev : 0) != d->rev)
				return pl_kind_str(d->kind);
		}
	}
	if (!snaps_same(pc, s))
		return "Gateway";
	return NULL;
}

static void clusters_clear(struct pl_compiler *pc)
{
	for (size_t i = 0; i < pc->clusters.cap; i++)
		if (pc->clusters.s[i].k)
			cclu_free(pc->clusters.s[i].v);
	smap_free(&pc->clusters);
	for (size_t i = 0; i < pc->svc_clusters.cap; i++) {
		struct svcc *sc = pc->svc_clusters.s[i].v;
		if (!pc->svc_clusters.s[i].k)
			continue;
		hvfree(&sc->v);
		free(sc->key);
		free(sc);
	}
	smap_free(&pc->svc_clusters);
}

static void lcs_clear(struct pl_compiler *pc)
{
	for (size_t i = 0; i < pc->n_lc; i++)
		lc_free(pc->lc[i]);
	free(pc->lc);
	pc->lc = NULL;
	pc->n_lc = 0;
}

static void cache_drop(struct pl_compiler *pc)
{
	lcs_clear(pc);
	for (size_t i = 0; i < pc->n_routes; i++)
		route_drop(pc->routes[i]);
	free(pc->routes);
	pc->routes = NULL;
	pc->n_routes = 0;
	clusters_clear(pc);
	slices_clear(pc);
	snaps_free(pc);
	deps_free(pc);
	pc->store_id = 0;
}

/* What the next compile will stand on. */
static void cache_record(struct ctx *c, const char *stale)
{
	struct pl_compiler *pc = c->pc;
	if (stale)
		snaps_take(pc, c->s);
	deps_free(pc);
	pc->deps = pl_xcalloc(c->deps.n ? c->deps.n : 1, sizeof(*pc->deps));
	for (size_t i = 0; i < c->deps.n; i++) {
		const struct dep *d = c->deps.v[i];
		pc->deps[i] = (struct dep){ d->kind, pl_xstrdup(d->ns), pl_xstrdup(d->name), d->rev };
	}
	pc->n_deps = c->deps.n;
	for (int k = 0; k < PL_K_N; k++)
		pc->epoch[k] = pl_store_epoch(c->s, (enum pl_kind)k);
	pc->store_rev = pl_store_rev(c->s);
	pc->store_id = pl_store_id(c->s);
}

struct pl_compiler *pl_compiler_new(const struct pl_compile_opts *opts)
{
	struct pl_compiler *pc = pl_xcalloc(1, sizeof(*pc));
	if (opts)
		pc->o = *opts;
	pc->controller_name = pc->o.controller_name ? pl_xstrdup(pc->o.controller_name) : NULL;
	pc->now = pl_xstrdup(pc->o.now ? pc->o.now : "1970-01-01T00:00:00Z");
	pc->route_hint = 2048;
	pc->o.controller_name = pc->controller_name;
	pc->o.now = pc->now;
	return pc;
}

void pl_compiler_free(struct pl_compiler *pc)
{
	if (!pc)
		return;
	cache_drop(pc);
	jint_clear(pc);
	json_decref(pc->other_keys);
	free(pc->controller_name);
	free(pc->now);
	free(pc);
}

void pl_compiler_get_stats(const struct pl_compiler *pc, struct pl_compiler_stats *st)
{
	*st = pc->st;
}

/* The served listeners of this compile: one lcache each, kept while the Gateways are the same. */
static void lcs_setup(struct ctx *c)
{
	struct pl_compiler *pc = c->pc;
	c->lc_base = aarr(c->tmp, c->n_gws, sizeof(size_t));
	size_t n = 0;
	for (size_t g = 0; g < c->n_gws; g++) {
		c->lc_base[g] = n;
		n += c->gws[g].n;
	}
	if (pc->lc) {
		PL_BUG_ON(pc->n_lc != n);   /* only a change of Gateways changes listeners: a full compile */
		return;
	}
	pc->lc = pl_xcalloc(n ? n : 1, sizeof(*pc->lc));
	pc->n_lc = n;
	for (size_t g = 0; g < c->n_gws; g++)
		for (size_t k = 0; k < c->gws[g].n; k++)
			if (lst_programmed(&c->gws[g].l[k]))
				pc->lc[c->lc_base[g] + k] = pl_xcalloc(1, sizeof(struct lcache));
}

/*
 * Routes that went away or came leave or join their listeners; routes in
 * the table get their rules' table form, made again when a cluster of
 * theirs was rebuilt (their vhosts then too).
 */
static void routes_update(struct ctx *c)
{
	for (size_t i = 0; i < c->gone.n; i++)
		route_attachments(c, c->gone.v[i], 0);
	for (size_t i = 0; i < c->fresh.n; i++)
		route_attachments(c, c->fresh.v[i], 1);
	clusters_refresh(c);
	for (size_t i = 0; i < c->n_routes; i++) {
		struct croute *cr = c->routes[i];
		cr->materialized = 0;
		for (size_t j = 0; j < cr->atts.n && !cr->materialized; j++) {
			const struct attach *at = cr->atts.v[j];
			cr->materialized = lc_of(c, at->gi, at->li) != NULL;
		}
		if (!cr->materialized) {
			rinst_free(cr->inst);
			cr->inst = NULL;
			continue;
		}
		if (cr->inst && rinst_current(cr->inst))
			continue;
		int had = cr->inst != NULL;
		rinst_build(c, cr);
		if (had)
			route_touch(c, cr);
	}
}

/*
 * table->rules (attached routes' rules, routes in order), table->clusters
 * (in the order the rules first name them; ephemeral ids number them), and
 * the blobs the table keeps.
 */
static void table_finish(struct ctx *c)
{
	struct pl_compiler *pc = c->pc;
	struct pl_table *t = c->t;
	size_t nr = 0, nc = 0;
	for (size_t i = 0; i < c->n_routes; i++) {
		const struct croute *cr = c->routes[i];
		if (cr->materialized) {
			nr += cr->n_rules;
			nc += cr->inst->n_uses;
		}
	}
	t->rules = aarr(c->a, nr, sizeof(struct pl_rule *));
	t->clusters = aarr(c->a, nc, sizeof(struct pl_cluster *));
	for (size_t i = 0; i < c->n_routes; i++) {
		const struct croute *cr = c->routes[i];
		if (!cr->materialized)
			continue;
		vpush(c->tmp, &c->blobs, cr->blob);
		vpush(c->tmp, &c->blobs, cr->inst->blob);
		for (size_t k = 0; k < cr->n_rules; k++)
			t->rules[t->n_rules++] = cr->inst->rules[k];
		for (size_t k = 0; k < cr->inst->n_uses; k++) {
			struct cclu *cc = cr->inst->uses[k].cc;
			if (cc->mark == pc->runs)
				continue;
			cc->mark = pc->runs;
			if (c->o->ephemeral)
				cc->cl->id = t->n_clusters + 1;   /* built in this compile: no table holds it yet */
			t->clusters[t->n_clusters++] = cc->cl;
			vpush(c->tmp, &c->blobs, cc->blob);
		}
	}
	PL_BUG_ON(c->blobs.n > c->blobs.cap);   /* sized by build_table(): still in the table's arena */
	struct blobrefs *br = pl_arena_alloc(c->a, sizeof(*br));
	br->v = (struct blob **)c->blobs.v;
	br->n = c->blobs.n;
	for (size_t i = 0; i < br->n; i++)
		blob_ref(br->v[i]);
	if (pl_arena_cleanup_add(c->a, blobrefs_release, br) != 0)
		PL_PANIC("out of memory");
}

/* Clusters no route of this table names go; so do the routes replaced or deleted. */
static void cache_trim(struct ctx *c)
{
	struct pl_compiler *pc = c->pc;
	struct vec old = { 0 };
	for (size_t i = 0; i < pc->clusters.cap; i++)
		if (pc->clusters.s[i].k && ((struct cclu *)pc->clusters.s[i].v)->mark != pc->runs)
			vpush(c->tmp, &old, pc->clusters.s[i].v);
	for (size_t i = 0; i < old.n; i++) {
		struct cclu *cc = old.v[i];
		struct svcc *sc = smap_get(&pc->svc_clusters, cc->svc);
		hvdel(&sc->v, cc);
		if (!sc->v.n) {
			smap_del(&pc->svc_clusters, sc->key);
			hvfree(&sc->v);
			free(sc->key);
			free(sc);
		}
		smap_del(&pc->clusters, cc->name);
		cclu_free(cc);
	}
	for (size_t i = 0; i < c->gone.n; i++)
		route_drop(c->gone.v[i]);
}

int pl_compiler_run(struct pl_compiler *pc, const struct pl_store *s, struct pl_compile_result *r)
{
	struct ctx c = { .pc = pc, .s = s, .o = &pc->o, .now = pc->now };
	memset(r, 0, sizeof(*r));
	pc->runs++;
	memset(&pc->st, 0, sizeof(pc->st));
	const char *stale = cache_stale(pc, s);
	if (stale) {
		/* worth a line when it happens to a compiler in use: rare by design */
		if (pc->store_id)
			pl_info("compiler: full compile (%s changed)", stale);
		cache_drop(pc);
		c.full = 1;
		pc->st.full = 1;
		pc->st.why = stale;
	}
	c.mark = pc->mark;
	c.t = pl_table_new();
	c.a = c.t->arena;
	c.tmp = pl_arena_new(64 * 1024, PL_ARENA_FATAL);
	c.dirty_svcs.a = c.tmp;
	c.ids_gen = cluster_ids_gen();
	c.gw_index = J(json_object());
	c.cls_status = J(json_object());
	r->statuses = J(pc->o.status_map ? json_object() : json_array());
	int delta = pc->o.status_map && pc->o.status_delta;
	if (delta) {
		r->status_all = c.full;
		c.gone_keys = c.full ? NULL : J(json_array());
		c.other_keys = J(json_object());
	}

	pass_classes(&c);
	pass_gateways(&c);
	lcs_setup(&c);
	index_slices(&c);
	pass_btls(&c);
	pass_routes(&c);
	routes_update(&c);
	struct vec binds = { 0 };
	table_binds(&c, &binds);
	vhosts_update(&c, &binds);
	build_table(&c, &binds);
	table_finish(&c);
	pass_btls_ancestors(&c);

	const struct pl_obj *const *v;
	size_t n = pl_store_list(s, PL_K_GATEWAYCLASS, &v);
	for (size_t i = 0; i < n; i++) {
		json_t *st = json_object_get(c.cls_status, v[i]->name);
		if (st)
			add_status(&c, r, v[i], json_incref(st));
	}
	for (size_t i = 0; i < c.n_gws; i++)
		add_status(&c, r, c.gws[i].o, gateway_status(&c, &c.gws[i]));
	for (size_t i = 0; i < c.n_lsets; i++)
		if (c.lsets[i].gw)
			add_status(&c, r, c.lsets[i].o, listenerset_status(&c, &c.lsets[i]));
	for (size_t i = 0; i < c.n_routes; i++) {
		const struct croute *cr = c.routes[i];
		if (!cr->status)
			continue;
		if (cr->unhealthy)
			r->problems++;
		if (c.gone_keys && cr->built != pc->runs)
			continue;   /* cached: the same status as the previous run's */
		/*
		 * A key per route and compile: jansson's UTF-8 check of the key was
		 * half the cost of the map (thousands of routes); the names come
		 * from parsed JSON or YAML, valid UTF-8 already.
		 */
		if (!c.o->status_map)
			jpush(r->statuses, json_incref(cr->status));
		else if (json_object_set_nocheck(r->statuses, cr->full, cr->status) != 0)
			PL_PANIC("out of memory");
	}
	for (size_t i = 0; i < c.n_btls; i++) {
		if (json_object_size(c.btls[i].ancestors))
			add_status(&c, r, c.btls[i].o, btls_status(&c, &c.btls[i]));
		json_decref(c.btls[i].ancestors);
	}
	for (size_t i = 0; i < c.n_gws; i++)
		for (size_t k = 0; k < c.gws[i].n; k++)
			json_decref(c.gws[i].l[k].supported_kinds);

	if (delta) {
		/* the other kinds' keys of the previous run that this one has not */
		const char *k;
		json_t *unused;
		if (c.gone_keys)
			json_object_foreach(pc->other_keys, k, unused)
				if (!json_object_get(c.other_keys, k) && json_array_append_new(c.gone_keys, json_string(k)) != 0)
					PL_PANIC("out of memory");
		json_decref(pc->other_keys);
		pc->other_keys = c.other_keys;
		r->status_gone = c.gone_keys;
	}
	cache_trim(&c);
	cache_record(&c, stale);
	if (pc->jint.n > 2 * pc->jint_live + 256)
		jint_gc(pc);
	pc->mark = c.mark;
	json_decref(c.gw_index);
	json_decref(c.ls_index);
	json_decref(c.cls_status);
	pl_arena_free(c.tmp);
	r->table = c.t;
	c.t->compiled_at_ns = pl_now_ns();
	return 0;
}

int pl_compile(const struct pl_store *s, const struct pl_compile_opts *opts, struct pl_compile_result *r)
{
	struct pl_compiler *pc = pl_compiler_new(opts);
	pl_compiler_run(pc, s, r);
	pl_compiler_free(pc);
	return 0;
}

void pl_compile_result_clear(struct pl_compile_result *r)
{
	if (r->table)
		pl_table_unref(r->table);
	json_decref(r->statuses);
	json_decref(r->status_gone);
	memset(r, 0, sizeof(*r));
}
