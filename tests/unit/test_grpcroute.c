/*
 * GRPCRoute in the compiler (controller/compile.c): method matches turned
 * into path matches, precedence, filters allowed, listener kinds, statuses,
 * h2c inference for backends without appProtocol.
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/table.h"
#include "controller/compile.h"
#include "controller/store.h"

#include <regex.h>
#include "check.h"

#define BASE \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pylon}\n" \
	"spec: {controllerName: pylon.dev/gateway-controller}\n---\n" \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n" \
	"spec:\n  gatewayClassName: pylon\n  listeners:\n" \
	"  - {name: http, port: 80, protocol: HTTP}\n" \
	"  - {name: only-http, port: 81, protocol: HTTP, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}\n" \
	"  - {name: tcp, port: 82, protocol: TCP}\n---\n" \
	"apiVersion: v1\nkind: Service\nmetadata: {name: h2}\n" \
	"spec: {ports: [{port: 50051, appProtocol: kubernetes.io/h2c}]}\n---\n" \
	"apiVersion: v1\nkind: Service\nmetadata: {name: plain}\nspec: {ports: [{port: 50052}]}\n---\n"

static struct pl_compile_result run(const char *yaml)
{
	char err[512];
	struct pl_store *s = pl_store_new();
	if (pl_store_load_yaml(s, yaml, strlen(yaml), "test.yaml", err, sizeof(err)) < 0) {
		fprintf(stderr, "load: %s\n", err);
		fails++;
	}
	struct pl_compile_opts o = { .now = "2024-01-01T00:00:00Z", .ephemeral = 1 };
	struct pl_compile_result r;
	pl_compile(s, &o, &r);
	pl_store_free(s);
	return r;
}

static json_t *status_of(struct pl_compile_result *r, const char *kind, const char *name)
{
	size_t i;
	json_t *o;
	json_array_foreach(r->statuses, i, o) {
		json_t *md = json_object_get(o, "metadata");
		if (!strcmp(json_string_value(json_object_get(o, "kind")), kind) &&
		    !strcmp(json_string_value(json_object_get(md, "name")), name))
			return json_object_get(o, "status");
	}
	return NULL;
}

static const char *cond_reason(struct pl_compile_result *r, const char *route, const char *type)
{
	json_t *p = json_array_get(json_object_get(status_of(r, "GRPCRoute", route), "parents"), 0), *c;
	size_t i;
	json_array_foreach(json_object_get(p, "conditions"), i, c)
		if (!strcmp(json_string_value(json_object_get(c, "type")), type))
			return json_string_value(json_object_get(c, "reason"));
	return "";
}

/* The rule of the first entry of bind 0 / listener 0 / vhost 0 matching path with headers hv (name=value). */
static const struct pl_rule *lookup(struct pl_compile_result *r, const char *path, const char *hname, const char *hval)
{
	const struct pl_vhost *v = &r->table->binds[0].listeners[0].vhosts[0];
	for (uint32_t i = 0; i < v->n_entries; i++) {
		const struct pl_match *m = &v->entries[i].match;
		size_t n = strlen(path);
		int ok;
		if (m->path_type == PL_PATH_EXACT)
			ok = !strcmp(m->path, path);
		else if (m->path_type == PL_PATH_PREFIX)
			ok = (m->path_len == 1) || (!strncmp(m->path, path, m->path_len) &&
						    (n == m->path_len || path[m->path_len] == '/'));
		else
			ok = regexec(m->path_re, path, 0, NULL, 0) == 0;
		for (uint32_t h = 0; ok && h < m->n_headers; h++)
			ok = hname && !strcmp(m->headers[h].name, hname) &&
			     (m->headers[h].type == PL_MATCH_EXACT ? !strcmp(m->headers[h].value, hval)
								    : regexec(m->headers[h].re, hval, 0, NULL, 0) == 0);
		if (ok)
			return v->entries[i].rule;
	}
	return NULL;
}

static int rule_is(const struct pl_rule *r, const char *route, uint32_t idx)
{
	if (r && !strcmp(r->route, route) && r->rule_index == idx)
		return 1;
	fprintf(stderr, "  got %s#%u, wanted %s#%u\n", r ? r->route : "(none)", r ? r->rule_index : 0, route, idx);
	return 0;
}

static void test_matches_and_precedence(void)
{
	struct pl_compile_result r = run(BASE
		"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\n"
		"spec:\n  parentRefs: [{name: gw, sectionName: http}]\n  rules:\n"
		"  - backendRefs: [{name: h2, port: 50051}]\n"                                   /* 0: catch-all */
		"  - matches: [{method: {service: echo.Echo}}]\n    backendRefs: [{name: h2, port: 50051}]\n"
		"  - matches: [{method: {service: echo.Echo, method: Say}}]\n"
		"    backendRefs: [{name: plain, port: 50052}]\n"
		"  - matches: [{method: {method: Ping}}]\n    backendRefs: [{name: h2, port: 50051}]\n"
		"  - matches: [{method: {type: RegularExpression, service: 'echo\\..*', method: 'Say.*'},"
		" headers: [{name: X-Version, value: '2'}]}]\n"
		"    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: b}]}}]\n"
		"    backendRefs: [{name: h2, port: 50051, weight: 3}, {name: plain, port: 50052, weight: 1}]\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web}\n"
		"spec:\n  parentRefs: [{name: gw, sectionName: http}]\n  rules: [{backendRefs: [{name: plain, port: 50052}]}]\n");
	CHECK(r.table && r.table->n_binds >= 1);
	if (!r.table)
		return;
	CHECK(!strcmp(cond_reason(&r, "g", "Accepted"), "Accepted"));
	CHECK(!strcmp(cond_reason(&r, "g", "ResolvedRefs"), "ResolvedRefs"));
	/* longest service, then longest method, then header count */
	CHECK(rule_is(lookup(&r, "/echo.Echo/Say", NULL, NULL), "GRPCRoute/default/g", 2));
	CHECK(rule_is(lookup(&r, "/echo.Echo/Say", "x-version", "2"), "GRPCRoute/default/g", 2));
	CHECK(rule_is(lookup(&r, "/echo.Echo/SayMore", "x-version", "2"), "GRPCRoute/default/g", 1));
	CHECK(rule_is(lookup(&r, "/echo.EchoX/SayMore", "x-version", "2"), "GRPCRoute/default/g", 4));
	CHECK(rule_is(lookup(&r, "/echo.Echo/Other", NULL, NULL), "GRPCRoute/default/g", 1));
	CHECK(rule_is(lookup(&r, "/other.Svc/Ping", NULL, NULL), "GRPCRoute/default/g", 3));
	/* gRPC entries precede the HTTPRoute's "/" on the same host */
	CHECK(rule_is(lookup(&r, "/other.Svc/Nope", NULL, NULL), "GRPCRoute/default/g", 0));
	/* an h2c Service stays h2c; a GRPCRoute's backend without appProtocol is inferred h2c */
	const struct pl_rule *ru = lookup(&r, "/echo.Echo/Say", NULL, NULL);
	CHECK(ru && ru->n_backends == 1 && ru->backends[0].cluster &&
	      ru->backends[0].cluster->app_proto == PL_APP_H2C);
	ru = lookup(&r, "/echo.EchoX/SayMore", "x-version", "2");
	CHECK(ru && ru->n_backends == 2 && ru->n_schedule == 4 && ru->n_filters == 1);
	int plain_h1 = 0;
	for (uint32_t i = 0; i < r.table->n_clusters; i++)
		if (strstr(r.table->clusters[i]->name, "plain") && r.table->clusters[i]->app_proto == PL_APP_HTTP1)
			plain_h1 = 1;
	CHECK(plain_h1);   /* the HTTPRoute's use of the same port stays HTTP/1.1 */
	pl_compile_result_clear(&r);
}

static void test_invalid_and_kinds(void)
{
	struct pl_compile_result r = run(BASE
		"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: bad}\n"
		"spec:\n  parentRefs: [{name: gw, sectionName: http}]\n  rules:\n"
		"  - matches: [{method: {service: 'a/b'}}]\n"
		"  - matches: [{method: {}}]\n"
		"  - matches: [{method: {type: Prefix, service: a}}]\n"
		"  - filters: [{type: URLRewrite, urlRewrite: {hostname: x.example}}]\n"
		"  - matches: [{method: {type: RegularExpression, method: '('}}]\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: part}\n"
		"spec:\n  parentRefs: [{name: gw, sectionName: http}]\n  rules:\n"
		"  - matches: [{method: {service: 'a/b'}}]\n"
		"  - backendRefs: [{name: missing, port: 1}]\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: nokind}\n"
		"spec:\n  parentRefs: [{name: gw, sectionName: only-http}]\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: tcp}\n"
		"spec:\n  parentRefs: [{name: gw, sectionName: tcp}]\n");
	CHECK(!strcmp(cond_reason(&r, "bad", "Accepted"), "UnsupportedValue"));
	CHECK(!strcmp(cond_reason(&r, "part", "Accepted"), "Accepted"));
	CHECK(!strcmp(cond_reason(&r, "part", "PartiallyInvalid"), "UnsupportedValue"));
	CHECK(!strcmp(cond_reason(&r, "part", "ResolvedRefs"), "BackendNotFound"));
	CHECK(!strcmp(cond_reason(&r, "nokind", "Accepted"), "NotAllowedByListeners"));
	CHECK(!strcmp(cond_reason(&r, "tcp", "Accepted"), "NotAllowedByListeners"));
	/* supportedKinds: HTTP listeners list GRPCRoute unless allowedRoutes.kinds leaves it out */
	json_t *ls = json_object_get(status_of(&r, "Gateway", "gw"), "listeners"), *l;
	size_t i;
	json_array_foreach(ls, i, l) {
		const char *n = json_string_value(json_object_get(l, "name"));
		size_t nk = json_array_size(json_object_get(l, "supportedKinds"));
		if (!strcmp(n, "http"))
			CHECK(nk == 2 && !strcmp(json_string_value(json_object_get(json_array_get(
					json_object_get(l, "supportedKinds"), 1), "kind")), "GRPCRoute"));
		else
			CHECK(nk == 1);
	}
	pl_compile_result_clear(&r);
}

int main(void)
{
	pl_log_set_level(PL_LOG_ERROR);
	test_matches_and_precedence();
	test_invalid_and_kinds();
	if (fails)
		fprintf(stderr, "test_grpcroute: %d check(s) failed\n", fails);
	else
		printf("test_grpcroute: ok\n");
	return fails != 0;
}
