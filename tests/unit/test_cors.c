/*
 * The CORS filter: origin parsing (common/origin.h), the compiler's
 * parse of HTTPCORSFilter (controller/compile.c), the decisions of
 * proxy/cors.h on the compiled filter, and the reqhead.h hooks
 * (PL_RH_CORS is covered by the black-box tests).
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/origin.h"
#include "common/table.h"
#include "common/tabledump.h"
#include "controller/compile.h"
#include "controller/store.h"
#include "proxy/cors.h"
#include "proxy/reqhead.h"

#include <stdio.h>
#include "check.h"

/* ---------------------------------------------------------------- origins */

static int parse(const char *s, int flags, struct pl_origin *o)
{
	return pl_origin_parse(s, strlen(s), flags, o);
}

static int host_is(const struct pl_origin *o, const char *h)
{
	return o->host_len == strlen(h) && memcmp(o->host, h, o->host_len) == 0;
}

static void test_origin_parse(void)
{
	struct pl_origin o;
	CHECK(parse("https://www.foo.com", 0, &o) == 0 && o.scheme_len == 5 && host_is(&o, "www.foo.com") &&
	      o.port == 443);
	CHECK(parse("http://a.b", 0, &o) == 0 && o.port == 80);
	CHECK(parse("HTTP://A.B:8080", 0, &o) == 0 && o.port == 8080 && host_is(&o, "A.B"));
	CHECK(parse("https://foobar.com:12345", 0, &o) == 0 && o.port == 12345);
	CHECK(parse("http://127.0.0.1:3000", 0, &o) == 0 && host_is(&o, "127.0.0.1") && o.port == 3000);
	CHECK(parse("http://[::1]:8080", 0, &o) == 0 && host_is(&o, "[::1]") && o.port == 8080);
	CHECK(parse("wss://x.y", 0, &o) == 0 && o.port == 443);
	CHECK(parse("chrome-extension://abcdef", 0, &o) == 0 && o.port == 0);
	CHECK(parse("http://under_score.example", 0, &o) == 0);
	/* not origins */
	const char *bad[] = {
		"", "null", "*", "https://", "https:/x.com", "https//x.com", "https://x.com/", "https://x.com/path",
		"https://x.com:", "https://x.com:0", "https://x.com:65536", "https://x.com:123456", "https://x.com:8a",
		"https://x..com", "https://.x.com", "https://x.com.", "https://x com", "https://x.com?q",
		"https://user@x.com", "https://[::1", "https://[zz]", "1http://x.com", "https://x.com#f",
		"https://*.x.com", "https://*",
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++)
		if (parse(bad[i], 0, &o) == 0) {
			fprintf(stderr, "  parsed \"%s\"\n", bad[i]);
			fails++;
		}
	/* allowOrigins entries: wildcards on the left only, whole labels */
	CHECK(parse("https://*.bar.com", PL_ORIGIN_WILD, &o) == 0 && host_is(&o, "*.bar.com") && o.port == 443);
	CHECK(parse("https://*", PL_ORIGIN_WILD, &o) == 0 && host_is(&o, "*"));
	CHECK(parse("http://*:8080", PL_ORIGIN_WILD, &o) == 0 && host_is(&o, "*") && o.port == 8080);
	CHECK(parse("https://*.", PL_ORIGIN_WILD, &o) != 0);
	CHECK(parse("https://*..a", PL_ORIGIN_WILD, &o) != 0);
	CHECK(parse("https://*a.com", PL_ORIGIN_WILD, &o) != 0);
	CHECK(parse("https://a.*.com", PL_ORIGIN_WILD, &o) != 0);
	CHECK(parse("https://**", PL_ORIGIN_WILD, &o) != 0);
}

/* ---------------------------------------------------------------- compiler */

#define BASE \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pylon}\n" \
	"spec: {controllerName: pylon.dev/gateway-controller}\n---\n" \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n" \
	"spec:\n  gatewayClassName: pylon\n  listeners:\n" \
	"  - {name: http, port: 80, protocol: HTTP}\n---\n" \
	"apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec: {ports: [{name: http, port: 80}]}\n---\n"

#define ROUTE(name, path, cors) \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: " name "}\n" \
	"spec: {parentRefs: [{name: gw}], rules: [{matches: [{path: {value: " path "}}]," \
	" backendRefs: [{name: svc, port: 80}], filters: [{type: CORS, cors: " cors "}]}]}\n---\n"

static const char *const yaml = BASE
	ROUTE("c1", "/cors-1", "{allowOrigins: ['https://www.foo.com', 'https://*.bar.com'], allowMethods: [GET, OPTIONS],"
			       " allowHeaders: [x-header-1, x-header-2], exposeHeaders: [x-header-3, x-header-4],"
			       " allowCredentials: true, maxAge: 3600}")
	ROUTE("c2", "/cors-2", "{allowOrigins: ['https://www.foo.com'], allowMethods: ['*']}")
	ROUTE("c3", "/cors-3", "{allowOrigins: ['*'], allowMethods: [PUT], allowCredentials: false}")
	ROUTE("c4", "/cors-4", "{allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'], allowCredentials: true,"
			       " exposeHeaders: ['*', X-Total]}")
	ROUTE("c5", "/cors-5", "{allowOrigins: ['http://localhost:3000', 'HTTP://127.0.0.1', 'https://*'],"
			       " exposeHeaders: ['*']}")
	ROUTE("c6", "/cors-6", "{}")
	ROUTE("bad1", "/b1", "{allowOrigins: ['ftp://x.com']}")
	ROUTE("bad2", "/b2", "{allowOrigins: ['https://x.com/']}")
	ROUTE("bad3", "/b3", "{allowOrigins: ['*', 'https://x.com']}")
	ROUTE("bad4", "/b4", "{allowOrigins: ['https://a.*.com']}")
	ROUTE("bad5", "/b5", "{allowMethods: [get]}")
	ROUTE("bad6", "/b6", "{allowMethods: ['*', GET]}")
	ROUTE("bad7", "/b7", "{allowHeaders: ['x y']}")
	ROUTE("bad8", "/b8", "{maxAge: 0}")
	ROUTE("bad9", "/b9", "{allowCredentials: 'yes'}")
	ROUTE("bad10", "/b10", "{allowOrigins: ['https://[::1]']}")
	ROUTE("bad11", "/b11", "{allowHeaders: [x-a, X-A]}")
	ROUTE("bad12", "/b12", "{allowOrigins: ['https://x.com:0']}")
	"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad13}\n"
	"spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: svc, port: 80, filters: [{type: CORS, cors: {}}]}]}]}\n---\n"
	"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad14}\n"
	"spec: {parentRefs: [{name: gw}], rules: [{filters: [{type: CORS}]}]}\n---\n"
	"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad15}\n"
	"spec: {parentRefs: [{name: gw}], rules: [{filters: [{type: CORS, cors: {}}, {type: CORS, cors: {}}]}]}\n---\n";

static struct pl_compile_result compiled;

static const struct pl_cors *cors_of(const char *route)
{
	const struct pl_table *t = compiled.table;
	if (!t || t->n_binds != 1 || t->binds[0].n_listeners != 1)
		return NULL;
	const struct pl_listener *l = &t->binds[0].listeners[0];
	for (uint32_t v = 0; v < l->n_vhosts; v++)
		for (uint32_t i = 0; i < l->vhosts[v].n_entries; i++) {
			const struct pl_rule *r = l->vhosts[v].entries[i].rule;
			if (strcmp(r->route, route) == 0 && r->n_filters == 1 && r->filters[0].type == PL_FILTER_CORS)
				return &r->filters[0].u.cors;
		}
	return NULL;
}

/* The reason of the route's Accepted condition, "" when absent. */
static const char *accepted(const char *name)
{
	size_t i, k;
	json_t *o, *c;
	json_array_foreach(compiled.statuses, i, o) {
		json_t *md = json_object_get(o, "metadata");
		if (strcmp(json_string_value(json_object_get(o, "kind")), "HTTPRoute") != 0 ||
		    strcmp(json_string_value(json_object_get(md, "name")), name) != 0)
			continue;
		json_t *p = json_array_get(json_object_get(json_object_get(o, "status"), "parents"), 0);
		json_array_foreach(json_object_get(p, "conditions"), k, c)
			if (!strcmp(json_string_value(json_object_get(c, "type")), "Accepted"))
				return json_string_value(json_object_get(c, "reason"));
	}
	return "";
}

static void test_compile(void)
{
	char err[512];
	struct pl_store *s = pl_store_new();
	if (pl_store_load_yaml(s, yaml, strlen(yaml), "cors.yaml", err, sizeof(err)) < 0) {
		fprintf(stderr, "load: %s\n", err);
		fails++;
	}
	struct pl_compile_opts o = { .now = "2024-01-01T00:00:00Z", .ephemeral = 1 };
	pl_compile(s, &o, &compiled);
	pl_store_free(s);

	const struct pl_cors *c = cors_of("HTTPRoute/default/c1");
	CHECK(c && c->n_origins == 2 && !c->any_origin && c->credentials && c->max_age == 3600);
	if (c && c->n_origins == 2) {
		CHECK(c->origins[0].https && c->origins[0].port == 443 && c->origins[0].host.kind == PL_HOST_EXACT &&
		      !strcmp(c->origins[0].host.name, "www.foo.com") && !strcmp(c->origins[0].text, "https://www.foo.com"));
		CHECK(c->origins[1].host.kind == PL_HOST_WILDCARD && !strcmp(c->origins[1].host.name, ".bar.com"));
		CHECK(!strcmp(c->allow_methods, "GET, OPTIONS") && !strcmp(c->allow_headers, "x-header-1, x-header-2") &&
		      !strcmp(c->expose_headers, "x-header-3, x-header-4"));
	}
	c = cors_of("HTTPRoute/default/c2");
	CHECK(c && c->any_method && !c->allow_methods && !c->credentials && c->max_age == 5 && !c->allow_headers &&
	      !c->expose_headers);
	c = cors_of("HTTPRoute/default/c4");
	CHECK(c && c->any_origin && c->n_origins == 0 && c->any_header && c->any_expose &&
	      !strcmp(c->expose_headers, "X-Total"));
	c = cors_of("HTTPRoute/default/c5");
	CHECK(c && c->n_origins == 3 && c->any_expose && !c->expose_headers);
	if (c && c->n_origins == 3) {
		CHECK(!c->origins[0].https && c->origins[0].port == 3000 && !strcmp(c->origins[0].host.name, "localhost"));
		CHECK(!c->origins[1].https && c->origins[1].port == 80 && !strcmp(c->origins[1].host.name, "127.0.0.1"));
		CHECK(c->origins[2].https && c->origins[2].host.kind == PL_HOST_ANY);
	}
	c = cors_of("HTTPRoute/default/c6");
	CHECK(c && !c->n_origins && !c->any_origin && c->max_age == 5);
	CHECK(!strcmp(accepted("c1"), "Accepted"));
	for (int i = 1; i <= 15; i++) {
		char n[16];
		snprintf(n, sizeof(n), "bad%d", i);
		if (strcmp(accepted(n), "UnsupportedValue") != 0) {
			fprintf(stderr, "  %s: Accepted reason \"%s\"\n", n, accepted(n));
			fails++;
		}
	}
	/* GET /config shows the filter */
	char *js = pl_table_json(compiled.table, NULL);
	CHECK(js && strstr(js, "\"type\":\"CORS\",\"allowOrigins\":[\"https://www.foo.com\",\"https://*.bar.com\"]"));
	CHECK(js && strstr(js, "\"allowMethods\":\"GET, OPTIONS\""));
	json_error_t je;
	json_t *j = js ? json_loads(js, 0, &je) : NULL;
	CHECK(j != NULL);
	json_decref(j);
	free(js);
}

/* ---------------------------------------------------------------- decisions */

static struct pl_req_view view_of(const char *method, struct pl_hdr *h, uint32_t n)
{
	struct pl_req_view v = { .method = method, .method_len = (uint32_t)strlen(method), .path = "/", .path_len = 1,
				 .host = "x", .host_len = 1, .hdrs = h, .n_hdrs = n };
	return v;
}

#define H(n, v) { n, v, sizeof(n) - 1, sizeof(v) - 1 }

/* The value of name in m's set or add list (a copy: values are not NUL-terminated), or NULL. */
static const char *field(const struct pl_header_mod *m, const char *name)
{
	static char buf[512];
	const struct pl_kv *lists[2] = { m->set, m->add };
	uint32_t counts[2] = { m->n_set, m->n_add };
	for (int l = 0; l < 2; l++)
		for (uint32_t i = 0; i < counts[l]; i++)
			if (!strcmp(lists[l][i].name, name)) {
				snprintf(buf, sizeof(buf), "%.*s", (int)lists[l][i].value_len, lists[l][i].value);
				return buf;
			}
	return NULL;
}

static int field_is(const struct pl_header_mod *m, const char *name, const char *want)
{
	const char *v = field(m, name);
	if (v && !strcmp(v, want))
		return 1;
	fprintf(stderr, "  %s: \"%s\", wanted \"%s\"\n", name, v ? v : "(absent)", want ? want : "(absent)");
	return 0;
}

static void test_allowed(void)
{
	const struct pl_cors *c1 = cors_of("HTTPRoute/default/c1"), *c3 = cors_of("HTTPRoute/default/c3"),
			     *c5 = cors_of("HTTPRoute/default/c5"), *c6 = cors_of("HTTPRoute/default/c6");
	if (!c1 || !c3 || !c5 || !c6)
		return;
#define ALLOWED(c, s) pl_cors_origin_allowed(c, s, strlen(s))
	CHECK(ALLOWED(c1, "https://www.foo.com"));
	CHECK(ALLOWED(c1, "https://WWW.FOO.COM"));
	CHECK(ALLOWED(c1, "https://www.foo.com:443"));
	CHECK(!ALLOWED(c1, "https://www.foo.com:8443"));
	CHECK(!ALLOWED(c1, "http://www.foo.com"));
	CHECK(!ALLOWED(c1, "https://foo.com"));
	CHECK(ALLOWED(c1, "https://www.bar.com"));
	CHECK(ALLOWED(c1, "https://xpto.www.bar.com"));
	CHECK(!ALLOWED(c1, "https://bar.com"));
	CHECK(!ALLOWED(c1, "https://foobar.com"));
	CHECK(!ALLOWED(c1, "https://evilbar.com"));
	CHECK(!ALLOWED(c1, "https://www.bar.com.evil.com"));
	CHECK(!ALLOWED(c1, "null"));
	CHECK(!ALLOWED(c1, ""));
	CHECK(ALLOWED(c3, "https://foobar.com:12345"));
	CHECK(ALLOWED(c3, "null"));
	CHECK(!ALLOWED(c3, "https://a b"));
	CHECK(!ALLOWED(c3, "https://caf\xc3\xa9.com"));
	char big[PL_CORS_ORIGIN_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "https://", 8);
	CHECK(!ALLOWED(c3, big));
	big[PL_CORS_ORIGIN_MAX] = '\0';
	CHECK(ALLOWED(c3, big));
	CHECK(ALLOWED(c5, "http://localhost:3000"));
	CHECK(!ALLOWED(c5, "http://localhost"));
	CHECK(ALLOWED(c5, "http://127.0.0.1"));
	CHECK(ALLOWED(c5, "http://127.0.0.1:80"));
	CHECK(ALLOWED(c5, "https://anything.example"));
	CHECK(!ALLOWED(c5, "https://anything.example:444"));
	CHECK(!ALLOWED(c6, "https://www.foo.com"));
#undef ALLOWED
}

static void test_preflight(void)
{
	const struct pl_cors *c1 = cors_of("HTTPRoute/default/c1"), *c2 = cors_of("HTTPRoute/default/c2"),
			     *c3 = cors_of("HTTPRoute/default/c3"), *c4 = cors_of("HTTPRoute/default/c4");
	if (!c1 || !c2 || !c3 || !c4)
		return;
	struct pl_cors_fields f;
	struct pl_hdr h1[] = { H("Origin", "https://xpto.www.bar.com"), H("Access-Control-Request-Method", "GET"),
			       H("access-control-request-headers", "x-header-1, x-header-2") };
	struct pl_req_view v = view_of("OPTIONS", h1, 3);
	CHECK(pl_cors_is_preflight(&v));
	CHECK(pl_cors_preflight(&f, c1, &v) == 200);
	CHECK(field_is(&f.mod, "access-control-allow-origin", "https://xpto.www.bar.com"));
	CHECK(field_is(&f.mod, "access-control-allow-credentials", "true"));
	CHECK(field_is(&f.mod, "access-control-allow-methods", "GET, OPTIONS"));
	CHECK(field_is(&f.mod, "access-control-allow-headers", "x-header-1, x-header-2"));
	CHECK(field_is(&f.mod, "access-control-expose-headers", "x-header-3, x-header-4"));
	CHECK(field_is(&f.mod, "access-control-max-age", "3600"));
	CHECK(field_is(&f.mod, "vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"));
	CHECK(f.mod.n_set == 6 && f.mod.n_add == 1 && f.mod.n_remove == 0);
	/* origin not allowed: 403, only Vary */
	h1[0] = (struct pl_hdr)H("origin", "https://foobar.com");
	CHECK(pl_cors_preflight(&f, c1, &v) == 403 && f.mod.n_set == 0 && f.mod.n_add == 1);
	/* two Origin fields: refused */
	struct pl_hdr h2[] = { H("Origin", "https://www.foo.com"), H("Origin", "https://www.foo.com"),
			       H("Access-Control-Request-Method", "GET") };
	v = view_of("OPTIONS", h2, 3);
	CHECK(pl_cors_is_preflight(&v) && pl_cors_preflight(&f, c1, &v) == 403);
	/* not preflights */
	v = view_of("OPTIONS", h2, 2);
	CHECK(!pl_cors_is_preflight(&v));
	v = view_of("GET", h2 + 1, 2);
	CHECK(!pl_cors_is_preflight(&v));
	v = view_of("options", h2 + 1, 2);
	CHECK(!pl_cors_is_preflight(&v));
	struct pl_hdr h3[] = { H("Origin", ""), H("Access-Control-Request-Method", "GET") };
	v = view_of("OPTIONS", h3, 2);
	CHECK(!pl_cors_is_preflight(&v));

	/* allowMethods "*": the requested method; no credentials, no headers listed */
	struct pl_hdr h4[] = { H("Origin", "https://www.foo.com"), H("Access-Control-Request-Method", "POST") };
	v = view_of("OPTIONS", h4, 2);
	CHECK(pl_cors_preflight(&f, c2, &v) == 200);
	CHECK(field_is(&f.mod, "access-control-allow-methods", "POST"));
	CHECK(field_is(&f.mod, "access-control-allow-origin", "https://www.foo.com"));
	CHECK(field_is(&f.mod, "access-control-max-age", "5"));
	CHECK(!field(&f.mod, "access-control-allow-credentials") && !field(&f.mod, "access-control-allow-headers") &&
	      !field(&f.mod, "access-control-expose-headers"));
	/* any origin without credentials: "*" */
	struct pl_hdr h5[] = { H("Origin", "https://foobar.com:12345"), H("Access-Control-Request-Method", "PUT") };
	v = view_of("OPTIONS", h5, 2);
	CHECK(pl_cors_preflight(&f, c3, &v) == 200);
	CHECK(field_is(&f.mod, "access-control-allow-origin", "*"));
	CHECK(field_is(&f.mod, "access-control-allow-methods", "PUT"));
	/* any origin, method, header with credentials: echoes, never "*" */
	struct pl_hdr h6[] = { H("Origin", "https://other.foo.com"), H("Access-Control-Request-Method", "PUT"),
			       H("Access-Control-Request-Headers", "x-header-1, x-header-2") };
	v = view_of("OPTIONS", h6, 3);
	CHECK(pl_cors_preflight(&f, c4, &v) == 200);
	CHECK(field_is(&f.mod, "access-control-allow-origin", "https://other.foo.com"));
	CHECK(field_is(&f.mod, "access-control-allow-methods", "PUT"));
	CHECK(field_is(&f.mod, "access-control-allow-headers", "x-header-1, x-header-2"));
	CHECK(field_is(&f.mod, "access-control-allow-credentials", "true"));
	CHECK(field_is(&f.mod, "access-control-expose-headers", "X-Total"));
	/* "*" headers and no Access-Control-Request-Headers: none */
	v = view_of("OPTIONS", h6, 2);
	CHECK(pl_cors_preflight(&f, c4, &v) == 200 && !field(&f.mod, "access-control-allow-headers"));
}

static void test_actual(void)
{
	const struct pl_cors *c1 = cors_of("HTTPRoute/default/c1"), *c3 = cors_of("HTTPRoute/default/c3"),
			     *c5 = cors_of("HTTPRoute/default/c5");
	if (!c1 || !c3 || !c5)
		return;
	struct pl_cors_fields f;
	struct pl_hdr h1[] = { H("Origin", "https://www.foo.com") };
	struct pl_req_view v = view_of("GET", h1, 1);
	const struct pl_header_mod *m = pl_cors_actual(&f, c1, &v);
	CHECK(m == &f.mod && m->n_set == 3 && m->n_add == 1 && m->n_remove == 3);
	CHECK(field_is(m, "access-control-allow-origin", "https://www.foo.com"));
	CHECK(field_is(m, "access-control-allow-credentials", "true"));
	CHECK(field_is(m, "access-control-expose-headers", "x-header-3, x-header-4"));
	CHECK(field_is(m, "vary", "Origin"));
	/* the origin is a copy: the request may go away */
	CHECK(m->set[0].value == f.origin);
	/* the backend's own CORS fields are dropped, others kept */
	CHECK(pl_rh_mods_hit(&m, 1, "Access-Control-Allow-Origin", 27) &&
	      pl_rh_mods_hit(&m, 1, "access-control-allow-credentials", 32) &&
	      pl_rh_mods_hit(&m, 1, "access-control-expose-headers", 29) && !pl_rh_mods_hit(&m, 1, "vary", 4) &&
	      !pl_rh_mods_hit(&m, 1, "content-type", 12));
	/* not allowed, or no Origin: Vary only, the backend's fields untouched */
	h1[0] = (struct pl_hdr)H("Origin", "https://evil.com");
	m = pl_cors_actual(&f, c1, &v);
	CHECK(m->n_set == 0 && m->n_add == 1 && m->n_remove == 0);
	v = view_of("GET", h1, 0);
	m = pl_cors_actual(&f, c1, &v);
	CHECK(m->n_set == 0 && m->n_add == 1 && m->n_remove == 0);
	/* "*" without credentials */
	v = view_of("PUT", h1, 1);
	m = pl_cors_actual(&f, c3, &v);
	CHECK(field_is(m, "access-control-allow-origin", "*") && !field(m, "access-control-allow-credentials"));
	/* exposeHeaders "*" without credentials */
	h1[0] = (struct pl_hdr)H("Origin", "https://a.example");
	m = pl_cors_actual(&f, c5, &v);
	CHECK(field_is(m, "access-control-expose-headers", "*"));

	/* reqhead: collected from the rule's filters, appended after the response modifiers */
	const struct pl_table *t = compiled.table;
	const struct pl_rule *rule = NULL;
	const struct pl_listener *l = &t->binds[0].listeners[0];
	for (uint32_t i = 0; i < l->vhosts[0].n_entries; i++)
		if (!strcmp(l->vhosts[0].entries[i].rule->route, "HTTPRoute/default/c1"))
			rule = l->vhosts[0].entries[i].rule;
	CHECK(rule != NULL);
	if (!rule)
		return;
	struct pl_rh_filters rf;
	memset(&rf, 0, sizeof(rf));
	pl_rh_collect_filters(&rf, rule->filters, rule->n_filters);
	CHECK(rf.cors == c1);
	struct pl_header_mod user = { 0 };
	rf.resp_mods[rf.n_resp_mods++] = &user;
	h1[0] = (struct pl_hdr)H("Origin", "https://www.foo.com");
	v = view_of("GET", h1, 1);
	pl_rh_cors_actual(&rf, &v, &f);
	CHECK(rf.n_resp_mods == 2 && rf.resp_mods[0] == &user && rf.resp_mods[1] == &f.mod);
	CHECK(pl_rh_mods_size(rf.resp_mods, rf.n_resp_mods) ==
	      strlen("access-control-allow-origin: https://www.foo.com\r\naccess-control-allow-credentials: true\r\n"
		     "access-control-expose-headers: x-header-3, x-header-4\r\nvary: Origin\r\n"));
	memset(&rf, 0, sizeof(rf));
	pl_rh_cors_actual(&rf, &v, &f);
	CHECK(rf.n_resp_mods == 0);
}

/*
 * pl_rh_cors_actual(): nothing without a CORS filter; with one, the change
 * pl_cors_actual() makes, appended to the response modifiers (what the
 * proxy's own replies after routing carry too).
 */
static void test_rh_cors_actual(void)
{
	const struct pl_cors *c1 = cors_of("HTTPRoute/default/c1");
	if (!c1)
		return;
	struct pl_hdr h[] = { H("Origin", "https://www.foo.com") };
	struct pl_req_view v = view_of("GET", h, 1);
	struct pl_cors_fields store;
	struct pl_rh_filters f = { 0 };
	CHECK(pl_rh_cors_actual(&f, &v, &store) == NULL);
	CHECK(f.n_resp_mods == 0);
	f.cors = c1;
	f.n_resp_mods = 1;   /* a ResponseHeaderModifier of the rule comes first */
	const struct pl_header_mod *m = pl_rh_cors_actual(&f, &v, &store);
	CHECK(m != NULL && f.n_resp_mods == 2 && f.resp_mods[1] == m);
	if (!m)
		return;
	CHECK(field_is(m, "access-control-allow-origin", "https://www.foo.com"));
	CHECK(field_is(m, "vary", "Origin"));
	/* an origin the filter does not allow: no allow-origin */
	struct pl_hdr h2[] = { H("Origin", "https://evil.example") };
	v = view_of("GET", h2, 1);
	f.n_resp_mods = 0;
	m = pl_rh_cors_actual(&f, &v, &store);
	CHECK(m != NULL && f.n_resp_mods == 1 && field(m, "access-control-allow-origin") == NULL);
}

int main(void)
{
	pl_log_set_level(PL_LOG_ERROR);
	test_origin_parse();
	test_compile();
	test_allowed();
	test_preflight();
	test_actual();
	test_rh_cors_actual();
	pl_compile_result_clear(&compiled);
	if (fails)
		fprintf(stderr, "test_cors: %d check(s) failed\n", fails);
	else
		printf("test_cors: ok\n");
	return fails != 0;
}
