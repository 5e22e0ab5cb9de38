/*
 * The Gateway API compiler (controller/compile.h): table layout, statuses,
 * precedence. Manifests are YAML strings loaded into a store.
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/stats.h"
#include "common/table.h"
#include "common/tabledump.h"
#include "controller/compile.h"
#include "controller/status.h"
#include "controller/store.h"

#include <arpa/inet.h>
#include "check.h"

#define CLASS \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pylon}\n" \
	"spec: {controllerName: pylon.dev/gateway-controller}\n---\n"

#define GW_ALL \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n" \
	"spec:\n  gatewayClassName: pylon\n  listeners:\n" \
	"  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n---\n"

#define SVCS \
	"apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec: {ports: [{name: http, port: 80}]}\n---\n" \
	"apiVersion: v1\nkind: Service\nmetadata: {name: svc2}\n" \
	"spec: {ports: [{name: web, port: 8080, appProtocol: kubernetes.io/h2c}, {port: 9000, appProtocol: mysql}]}\n---\n"

#define BASE CLASS GW_ALL SVCS

static const char *ctl_name;
static size_t max_entries;

static struct pl_compile_result run_ex(const char *yaml, int ephemeral)
{
	char err[512];
	struct pl_store *s = pl_store_new();
	if (pl_store_load_yaml(s, yaml, strlen(yaml), "test.yaml", err, sizeof(err)) < 0) {
		fprintf(stderr, "load: %s\n", err);
		fails++;
	}
	struct pl_compile_opts o = { .controller_name = ctl_name, .now = "2024-01-01T00:00:00Z", .ephemeral = ephemeral,
				      .max_entries = max_entries };
	struct pl_compile_result r;
	pl_compile(s, &o, &r);
	pl_store_free(s);
	return r;
}

static struct pl_compile_result run(const char *yaml)
{
	return run_ex(yaml, 1);
}

static json_t *status_of(struct pl_compile_result *r, const char *kind, const char *ns, const char *name)
{
	size_t i;
	json_t *o;
	json_array_foreach(r->statuses, i, o) {
		json_t *md = json_object_get(o, "metadata");
		const char *ons = json_string_value(json_object_get(md, "namespace"));
		if (strcmp(json_string_value(json_object_get(o, "kind")), kind) == 0 &&
		    strcmp(json_string_value(json_object_get(md, "name")), name) == 0 &&
		    strcmp(ons ? ons : "", ns) == 0)
			return json_object_get(o, "status");
	}
	return NULL;
}

/* 1 if conds has a condition type with status and reason. */
static int has_cond(json_t *conds, const char *type, const char *status, const char *reason)
{
	size_t i;
	json_t *c;
	json_array_foreach(conds, i, c) {
		if (strcmp(json_string_value(json_object_get(c, "type")), type) != 0)
			continue;
		if (strcmp(json_string_value(json_object_get(c, "status")), status) == 0 &&
		    strcmp(json_string_value(json_object_get(c, "reason")), reason) == 0)
			return 1;
		fprintf(stderr, "  %s is %s/%s (%s), wanted %s/%s\n", type,
			json_string_value(json_object_get(c, "status")), json_string_value(json_object_get(c, "reason")),
			json_string_value(json_object_get(c, "message")), status, reason);
		return 0;
	}
	fprintf(stderr, "  no condition %s\n", type);
	return 0;
}

static json_t *route_conds(struct pl_compile_result *r, const char *ns, const char *name, size_t parent)
{
	json_t *st = status_of(r, "HTTPRoute", ns, name);
	return json_object_get(json_array_get(json_object_get(st, "parents"), parent), "conditions");
}

static json_t *listener_status(struct pl_compile_result *r, const char *gw, const char *lname)
{
	json_t *st = status_of(r, "Gateway", "default", gw);
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(st, "listeners"), i, l)
		if (strcmp(json_string_value(json_object_get(l, "name")), lname) == 0)
			return l;
	return NULL;
}

static json_t *listener_conds(struct pl_compile_result *r, const char *gw, const char *lname)
{
	return json_object_get(listener_status(r, gw, lname), "conditions");
}

static long long attached(struct pl_compile_result *r, const char *gw, const char *lname)
{
	return json_integer_value(json_object_get(listener_status(r, gw, lname), "attachedRoutes"));
}

static json_t *gw_conds(struct pl_compile_result *r, const char *gw)
{
	return json_object_get(status_of(r, "Gateway", "default", gw), "conditions");
}

static const struct pl_vhost *vhost(struct pl_compile_result *r, uint32_t b, uint32_t l, const char *host)
{
	if (b >= r->table->n_binds || l >= r->table->binds[b].n_listeners)
		return NULL;
	const struct pl_listener *pl = &r->table->binds[b].listeners[l];
	for (uint32_t i = 0; i < pl->n_vhosts; i++) {
		const struct pl_hostname *h = &pl->vhosts[i].host;
		char buf[300];
		snprintf(buf, sizeof(buf), "%s%s", h->kind == PL_HOST_EXACT ? "" : "*", h->name);
		if (strcmp(buf, host) == 0)
			return &pl->vhosts[i];
	}
	return NULL;
}

/* "route#rule" of entry i */
static int entry_is(const struct pl_vhost *v, uint32_t i, const char *route, uint32_t rule)
{
	if (!v || i >= v->n_entries) {
		fprintf(stderr, "  no entry %u\n", i);
		return 0;
	}
	const struct pl_rule *r = v->entries[i].rule;
	if (strcmp(r->route, route) == 0 && r->rule_index == rule)
		return 1;
	fprintf(stderr, "  entry %u is %s#%u, wanted %s#%u\n", i, r->route, r->rule_index, route, rule);
	return 0;
}

/* ---------------------------------------------------------------- helpers */

static void test_helpers(void)
{
	uint64_t ms;
	CHECK(pl_gw_parse_duration("10s", &ms) == 0 && ms == 10000);
	CHECK(pl_gw_parse_duration("500ms", &ms) == 0 && ms == 500);
	CHECK(pl_gw_parse_duration("1h30m", &ms) == 0 && ms == 5400000);
	CHECK(pl_gw_parse_duration("0s", &ms) == 0 && ms == 0);
	CHECK(pl_gw_parse_duration("1h1m1s1ms", &ms) == 0 && ms == 3661001);
	CHECK(pl_gw_parse_duration("1h1m1s1ms1h", &ms) == -1);
	CHECK(pl_gw_parse_duration("123456s", &ms) == -1);
	CHECK(pl_gw_parse_duration("10", &ms) == -1);
	CHECK(pl_gw_parse_duration("1.5s", &ms) == -1);
	CHECK(pl_gw_parse_duration("", &ms) == -1);
	CHECK(pl_gw_parse_duration("1d", &ms) == -1);

	char out[256];
	CHECK(pl_gw_host_intersect("", "a.com", out, sizeof(out)) && !strcmp(out, "a.com"));
	CHECK(pl_gw_host_intersect("a.com", "", out, sizeof(out)) && !strcmp(out, "a.com"));
	CHECK(pl_gw_host_intersect("", "", out, sizeof(out)) && !strcmp(out, ""));
	CHECK(pl_gw_host_intersect("*.a.com", "x.a.com", out, sizeof(out)) && !strcmp(out, "x.a.com"));
	CHECK(pl_gw_host_intersect("*.a.com", "y.x.a.com", out, sizeof(out)) && !strcmp(out, "y.x.a.com"));
	CHECK(!pl_gw_host_intersect("*.a.com", "a.com", out, sizeof(out)));
	CHECK(pl_gw_host_intersect("x.a.com", "*.a.com", out, sizeof(out)) && !strcmp(out, "x.a.com"));
	CHECK(pl_gw_host_intersect("*.a.com", "*.x.a.com", out, sizeof(out)) && !strcmp(out, "*.x.a.com"));
	CHECK(pl_gw_host_intersect("*.x.a.com", "*.a.com", out, sizeof(out)) && !strcmp(out, "*.x.a.com"));
	CHECK(!pl_gw_host_intersect("*.a.com", "*.b.com", out, sizeof(out)));
	CHECK(!pl_gw_host_intersect("a.com", "b.com", out, sizeof(out)));
	CHECK(!pl_gw_host_intersect("*.ba.com", "*.a.com", out, sizeof(out)));
}

/* ---------------------------------------------------------------- classes and gateways */

static void test_class_filter(void)
{
	const char *y = BASE
		"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: other}\n"
		"spec: {controllerName: example.com/other}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw2}\n"
		"spec: {gatewayClassName: other, listeners: [{name: http, port: 81, protocol: HTTP}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
		"spec: {parentRefs: [{name: gw}, {name: gw2}]}\n";
	/* all classes */
	struct pl_compile_result r = run(y);
	CHECK(has_cond(json_object_get(status_of(&r, "GatewayClass", "", "pylon"), "conditions"), "Accepted", "True", "Accepted"));
	CHECK(has_cond(json_object_get(status_of(&r, "GatewayClass", "", "other"), "conditions"), "SupportedVersion", "True",
		       "SupportedVersion"));
	CHECK(r.table->n_binds == 2);
	CHECK(json_array_size(json_object_get(status_of(&r, "HTTPRoute", "default", "r"), "parents")) == 2);
	CHECK(r.problems == 0);
	pl_compile_result_clear(&r);

	/* only ours: the other class, its Gateway and the route's second parent vanish */
	ctl_name = "pylon.dev/gateway-controller";
	r = run(y);
	CHECK(status_of(&r, "GatewayClass", "", "pylon"));
	CHECK(!status_of(&r, "GatewayClass", "", "other"));
	CHECK(!status_of(&r, "Gateway", "default", "gw2"));
	CHECK(r.table->n_binds == 1 && r.table->binds[0].port == 80);
	json_t *parents = json_object_get(status_of(&r, "HTTPRoute", "default", "r"), "parents");
	CHECK(json_array_size(parents) == 1);
	CHECK(!strcmp(json_string_value(json_object_get(json_array_get(parents, 0), "controllerName")),
		      "pylon.dev/gateway-controller"));
	pl_compile_result_clear(&r);
	ctl_name = NULL;
}

static void test_gateway_listeners(void)
{
	const char *y = CLASS
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
		"spec:\n  gatewayClassName: pylon\n"
		"  addresses: [{type: IPAddress, value: 127.0.0.2}, {value: 127.0.0.3}]\n"
		"  listeners:\n"
		"  - {name: a, port: 80, protocol: HTTP, hostname: a.example.com}\n"
		"  - {name: b, port: 80, protocol: HTTP, hostname: A.example.com}\n"
		"  - {name: c, port: 80, protocol: HTTP, hostname: '*.example.com'}\n"
		"  - {name: d, port: 80, protocol: HTTP}\n"
		"  - {name: e, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}\n"
		"  - {name: f, port: 8080, protocol: HTTP}\n"
		"  - {name: g, port: 8080, protocol: TCP}\n"
		"  - {name: h, port: 9000, protocol: HTTP, allowedRoutes: {kinds: [{kind: HTTPRoute}, {kind: TCPRoute}]}}\n"
		"  - {name: i, port: 9001, protocol: HTTP, allowedRoutes: {kinds: [{kind: TLSRoute}]}}\n"   /* GRPCRoute is allowed since issue 6 */
		"  - {name: j, port: 0, protocol: HTTP}\n"
		"  - {name: k, port: 9002, protocol: HTTPS, tls: {certificateRefs: [{name: tls, namespace: certs}]}}\n"
		"  - {name: l, port: 9003, protocol: HTTPS, tls: {certificateRefs: [{name: tls}]}}\n"
		"---\napiVersion: v1\nkind: Secret\nmetadata: {name: tls, namespace: certs}\ntype: kubernetes.io/tls\n"
		"data: {tls.crt: eA==, tls.key: eA==}\n"
		"---\napiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ntype: Opaque\n";
	struct pl_compile_result r = run(y);
	CHECK(has_cond(gw_conds(&r, "gw"), "Accepted", "True", "ListenersNotValid"));
	CHECK(has_cond(gw_conds(&r, "gw"), "Programmed", "True", "Programmed"));
	json_t *addrs = json_object_get(status_of(&r, "Gateway", "default", "gw"), "addresses");
	CHECK(json_array_size(addrs) == 1);
	CHECK(!strcmp(json_string_value(json_object_get(json_array_get(addrs, 0), "value")), "127.0.0.2"));

	CHECK(has_cond(listener_conds(&r, "gw", "a"), "Conflicted", "True", "HostnameConflict"));
	CHECK(has_cond(listener_conds(&r, "gw", "b"), "Conflicted", "True", "HostnameConflict"));
	CHECK(has_cond(listener_conds(&r, "gw", "a"), "Programmed", "False", "Invalid"));
	CHECK(has_cond(listener_conds(&r, "gw", "c"), "Conflicted", "False", "NoConflicts"));
	CHECK(has_cond(listener_conds(&r, "gw", "c"), "Accepted", "True", "Accepted"));
	CHECK(has_cond(listener_conds(&r, "gw", "c"), "Programmed", "True", "Programmed"));
	CHECK(has_cond(listener_conds(&r, "gw", "e"), "Programmed", "False", "Invalid"));   /* no usable certificate */
	CHECK(has_cond(listener_conds(&r, "gw", "e"), "ResolvedRefs", "False", "InvalidCertificateRef"));
	CHECK(has_cond(listener_conds(&r, "gw", "f"), "Conflicted", "True", "ProtocolConflict"));
	CHECK(has_cond(listener_conds(&r, "gw", "g"), "Conflicted", "True", "ProtocolConflict"));
	CHECK(has_cond(listener_conds(&r, "gw", "g"), "Programmed", "False", "Invalid"));
	CHECK(has_cond(listener_conds(&r, "gw", "h"), "ResolvedRefs", "False", "InvalidRouteKinds"));
	CHECK(has_cond(listener_conds(&r, "gw", "h"), "Programmed", "True", "Programmed"));
	CHECK(json_array_size(json_object_get(listener_status(&r, "gw", "h"), "supportedKinds")) == 1);
	CHECK(has_cond(listener_conds(&r, "gw", "i"), "ResolvedRefs", "False", "InvalidRouteKinds"));
	CHECK(json_array_size(json_object_get(listener_status(&r, "gw", "i"), "supportedKinds")) == 0);
	CHECK(has_cond(listener_conds(&r, "gw", "j"), "Accepted", "False", "PortUnavailable"));
	CHECK(has_cond(listener_conds(&r, "gw", "k"), "ResolvedRefs", "False", "RefNotPermitted"));
	CHECK(has_cond(listener_conds(&r, "gw", "l"), "ResolvedRefs", "False", "InvalidCertificateRef"));

	/* binds: 127.0.0.2:80 (c, d), 9000, 9001; listeners most specific first */
	CHECK(r.table->n_binds == 3);
	const struct pl_bind *b = &r.table->binds[0];
	CHECK(!strcmp(b->address, "127.0.0.2") && b->port == 80 && b->n_listeners == 2);
	CHECK(b->listeners[0].host.kind == PL_HOST_WILDCARD && !strcmp(b->listeners[0].host.name, ".example.com"));
	CHECK(b->listeners[1].host.kind == PL_HOST_ANY);
	CHECK(!strcmp(b->listeners[0].name, "default/gw/c"));
	CHECK(r.problems == 1);
	pl_compile_result_clear(&r);

	/* ReferenceGrant for the cross-namespace Secret */
	char *y2 = pl_xmalloc(strlen(y) + 1024);
	snprintf(y2, strlen(y) + 1024, "%s---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n"
		 "metadata: {name: g, namespace: certs}\nspec:\n"
		 "  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: default}]\n"
		 "  to: [{group: '', kind: Secret}]\n", y);
	r = run(y2);
	/* granted now; the Secret's bytes are not PEM (real certificates: tests/blackbox/test_tls.py) */
	CHECK(has_cond(listener_conds(&r, "gw", "k"), "ResolvedRefs", "False", "InvalidCertificateRef"));
	pl_compile_result_clear(&r);
	free(y2);

	/* unsupported address type; no address: 0.0.0.0 */
	r = run(CLASS "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
		"spec: {gatewayClassName: pylon, addresses: [{type: Hostname, value: x.com}],\n"
		"       listeners: [{name: http, port: 80, protocol: HTTP}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw2}\n"
		"spec: {gatewayClassName: pylon, listeners: [{name: http, port: 81, protocol: HTTP}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw3}\n"
		"spec: {gatewayClassName: pylon, listeners: [{name: tls, port: 82, protocol: TLS}]}\n");
	CHECK(has_cond(gw_conds(&r, "gw"), "Accepted", "False", "UnsupportedAddress"));
	CHECK(has_cond(gw_conds(&r, "gw"), "Programmed", "False", "AddressNotUsable"));
	/* a TLS listener without a tls block is a passthrough listener */
	CHECK(has_cond(gw_conds(&r, "gw3"), "Accepted", "True", "Accepted"));
	CHECK(has_cond(gw_conds(&r, "gw3"), "Programmed", "True", "Programmed"));
	CHECK(r.table->n_binds == 2 && !strcmp(r.table->binds[0].address, "0.0.0.0") && r.table->binds[0].port == 81);
	CHECK(r.table->binds[1].port == 82 && r.table->binds[1].proto == PL_PROTO_TLS &&
	      r.table->binds[1].listeners[0].tls && r.table->binds[1].listeners[0].tls->mode == PL_TLS_PASSTHROUGH);
	CHECK(r.problems == 1);
	pl_compile_result_clear(&r);
}

/* conformance GatewayListenerUnsupportedProtocol: no route kind on an unknown protocol */
static void test_unsupported_protocol(void)
{
	const char *y =
		"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pylon}\n"
		"spec: {controllerName: pylon.dev/gateway-controller}\n"
		"---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
		"spec:\n  gatewayClassName: pylon\n  listeners:\n"
		"  - {name: invalid, port: 1111, protocol: INVALID}\n"
		"  - {name: kinds, port: 1112, protocol: INVALID, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}\n";
	struct pl_compile_result r = run(y);
	CHECK(has_cond(gw_conds(&r, "gw"), "Accepted", "False", "ListenersNotValid"));
	CHECK(has_cond(listener_conds(&r, "gw", "invalid"), "Accepted", "False", "UnsupportedProtocol"));
	CHECK(json_array_size(json_object_get(listener_status(&r, "gw", "invalid"), "supportedKinds")) == 0);
	CHECK(json_array_size(json_object_get(listener_status(&r, "gw", "kinds"), "supportedKinds")) == 0);
	pl_compile_result_clear(&r);
}

static void test_cross_gateway(void)
{
	const char *y = CLASS
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
		"metadata: {name: young, creationTimestamp: '2024-05-01T00:00:00Z'}\n"
		"spec: {gatewayClassName: pylon, listeners: [{name: a, port: 80, protocol: HTTP, hostname: a.com},\n"
		"       {name: b, port: 80, protocol: HTTP, hostname: b.com}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
		"metadata: {name: old, creationTimestamp: '2024-01-01T00:00:00Z'}\n"
		"spec: {gatewayClassName: pylon, listeners: [{name: a, port: 80, protocol: HTTP, hostname: a.com},\n"
		"       {name: c, port: 80, protocol: HTTP}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: addr}\n"
		"spec: {gatewayClassName: pylon, addresses: [{value: 10.0.0.1}],\n"
		"       listeners: [{name: a, port: 80, protocol: HTTP, hostname: z.com}]}\n";
	struct pl_compile_result r = run(y);
	CHECK(has_cond(listener_conds(&r, "old", "a"), "Conflicted", "False", "NoConflicts"));
	CHECK(has_cond(listener_conds(&r, "young", "a"), "Conflicted", "True", "HostnameConflict"));
	CHECK(has_cond(listener_conds(&r, "young", "b"), "Programmed", "True", "Programmed"));
	CHECK(has_cond(listener_conds(&r, "addr", "a"), "Accepted", "False", "PortUnavailable"));
	/* one bind 0.0.0.0:80 with old/a, young/b, old/c */
	CHECK(r.table->n_binds == 1 && r.table->binds[0].n_listeners == 3);
	CHECK(!strcmp(r.table->binds[0].listeners[0].name, "default/old/a"));
	CHECK(!strcmp(r.table->binds[0].listeners[1].name, "default/young/b"));
	CHECK(!strcmp(r.table->binds[0].listeners[2].name, "default/old/c"));
	pl_compile_result_clear(&r);
}

/* ---------------------------------------------------------------- route attachment */

static void test_route_parents(void)
{
	const char *y = CLASS SVCS
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: team, labels: {env: prod, tier: web}}\n---\n"
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: dev, labels: {env: dev}}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
		"spec:\n  gatewayClassName: pylon\n  listeners:\n"
		"  - {name: same, port: 80, protocol: HTTP, hostname: same.com}\n"
		"  - {name: sel, port: 80, protocol: HTTP, hostname: sel.com, allowedRoutes: {namespaces: {from: Selector,\n"
		"     selector: {matchLabels: {env: prod}, matchExpressions: [{key: tier, operator: In, values: [web, api]}]}}}}\n"
		"  - {name: wild, port: 81, protocol: HTTP, hostname: '*.w.com', allowedRoutes: {namespaces: {from: All}}}\n"
		"  - {name: meta, port: 82, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector,\n"
		"     selector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [team]}]}}}}\n"
		"---\n"
		/* same namespace, attaches to "same" only (sel does not select default) */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r1}\n"
		"spec: {parentRefs: [{name: gw, port: 80}], rules: [{backendRefs: [{name: svc, port: 80}]}]}\n---\n"
		/* from team: selected by sel */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r2, namespace: team}\n"
		"spec: {parentRefs: [{name: gw, namespace: default, sectionName: sel}]}\n---\n"
		/* from dev: not allowed on sel */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r3, namespace: dev}\n"
		"spec: {parentRefs: [{name: gw, namespace: default, sectionName: sel},\n"
		"                    {name: gw, namespace: default, sectionName: meta}]}\n---\n"
		/* hostnames */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r4}\n"
		"spec: {parentRefs: [{name: gw, sectionName: wild}], hostnames: [x.com, a.w.com, '*.b.w.com']}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r5}\n"
		"spec: {parentRefs: [{name: gw, sectionName: wild}], hostnames: [w.com]}\n---\n"
		/* no matching parents */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r6}\n"
		"spec: {parentRefs: [{name: gw, sectionName: nope}, {name: gw, port: 9999}, {name: missing},\n"
		"                    {name: gw, sectionName: same, port: 80}, {group: example.com, kind: Mesh, name: m}]}\n---\n"
		/* all rules invalid */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r7}\n"
		"spec: {parentRefs: [{name: gw, sectionName: same}], rules: [{matches: [{path: {type: Exact, value: nope}}]}]}\n---\n"
		/* some rules invalid */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r8}\n"
		"spec: {parentRefs: [{name: gw, sectionName: same}], rules: [{matches: [{method: BREW}]}, {}]}\n";
	struct pl_compile_result r = run(y);
	CHECK(has_cond(route_conds(&r, "default", "r1", 0), "Accepted", "True", "Accepted"));
	CHECK(has_cond(route_conds(&r, "default", "r1", 0), "ResolvedRefs", "True", "ResolvedRefs"));
	CHECK(has_cond(route_conds(&r, "team", "r2", 0), "Accepted", "True", "Accepted"));
	CHECK(has_cond(route_conds(&r, "dev", "r3", 0), "Accepted", "False", "NotAllowedByListeners"));
	CHECK(has_cond(route_conds(&r, "dev", "r3", 1), "Accepted", "True", "Accepted"));
	CHECK(has_cond(route_conds(&r, "default", "r4", 0), "Accepted", "True", "Accepted"));
	CHECK(has_cond(route_conds(&r, "default", "r5", 0), "Accepted", "False", "NoMatchingListenerHostname"));
	for (size_t i = 0; i < 3; i++)
		CHECK(has_cond(route_conds(&r, "default", "r6", i), "Accepted", "False", "NoMatchingParent"));
	CHECK(has_cond(route_conds(&r, "default", "r6", 3), "Accepted", "True", "Accepted"));
	CHECK(json_array_size(json_object_get(status_of(&r, "HTTPRoute", "default", "r6"), "parents")) == 4);
	CHECK(has_cond(route_conds(&r, "default", "r7", 0), "Accepted", "False", "UnsupportedValue"));
	CHECK(has_cond(route_conds(&r, "default", "r8", 0), "Accepted", "True", "Accepted"));
	CHECK(has_cond(route_conds(&r, "default", "r8", 0), "PartiallyInvalid", "True", "UnsupportedValue"));

	/* parentRef echoed with defaults */
	json_t *pr = json_object_get(json_array_get(json_object_get(status_of(&r, "HTTPRoute", "team", "r2"), "parents"), 0),
				     "parentRef");
	CHECK(!strcmp(json_string_value(json_object_get(pr, "group")), "gateway.networking.k8s.io"));
	CHECK(!strcmp(json_string_value(json_object_get(pr, "kind")), "Gateway"));
	CHECK(!strcmp(json_string_value(json_object_get(pr, "namespace")), "default"));
	CHECK(!strcmp(json_string_value(json_object_get(pr, "sectionName")), "sel"));

	CHECK(attached(&r, "gw", "same") == 3);   /* r1, r6, r8 */
	CHECK(attached(&r, "gw", "sel") == 1);
	CHECK(attached(&r, "gw", "wild") == 1);
	CHECK(attached(&r, "gw", "meta") == 1);

	/* r4 on *.w.com: vhosts a.w.com then *.b.w.com; x.com dropped */
	const struct pl_bind *b81 = NULL;
	for (uint32_t i = 0; i < r.table->n_binds; i++)
		if (r.table->binds[i].port == 81)
			b81 = &r.table->binds[i];
	CHECK(b81 && b81->n_listeners == 1 && b81->listeners[0].n_vhosts == 2);
	if (b81 && b81->listeners[0].n_vhosts == 2) {
		CHECK(b81->listeners[0].vhosts[0].host.kind == PL_HOST_EXACT &&
		      !strcmp(b81->listeners[0].vhosts[0].host.name, "a.w.com"));
		CHECK(b81->listeners[0].vhosts[1].host.kind == PL_HOST_WILDCARD &&
		      !strcmp(b81->listeners[0].vhosts[1].host.name, ".b.w.com"));
	}
	/* a listener with a hostname and a route without: the vhost is the listener's */
	CHECK(vhost(&r, 0, 0, "same.com") || vhost(&r, 0, 1, "same.com"));
	pl_compile_result_clear(&r);
}

static void test_refs(void)
{
	const char *y = BASE
		"apiVersion: v1\nkind: Service\nmetadata: {name: far, namespace: other}\nspec: {ports: [{port: 80}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: missing}\n"
		"spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: nope, port: 80}]}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: noport}\n"
		"spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: svc, port: 81}]}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: kind}\n"
		"spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{group: example.com, kind: Bucket, name: b}]}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: cross}\n"
		"spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: far, namespace: other, port: 80}]}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: proto}\n"
		"spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: svc2, port: 9000}]}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: h2c}\n"
		"spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: svc2, port: 8080}]}]}\n---\n";
	struct pl_compile_result r = run(y);
	CHECK(has_cond(route_conds(&r, "default", "missing", 0), "ResolvedRefs", "False", "BackendNotFound"));
	CHECK(has_cond(route_conds(&r, "default", "missing", 0), "Accepted", "True", "Accepted"));
	CHECK(has_cond(route_conds(&r, "default", "noport", 0), "ResolvedRefs", "False", "BackendNotFound"));
	CHECK(has_cond(route_conds(&r, "default", "kind", 0), "ResolvedRefs", "False", "InvalidKind"));
	CHECK(has_cond(route_conds(&r, "default", "cross", 0), "ResolvedRefs", "False", "RefNotPermitted"));
	CHECK(has_cond(route_conds(&r, "default", "proto", 0), "ResolvedRefs", "False", "UnsupportedProtocol"));
	CHECK(has_cond(route_conds(&r, "default", "h2c", 0), "ResolvedRefs", "True", "ResolvedRefs"));
	/* invalid refs keep their weight with no cluster */
	const struct pl_vhost *v = vhost(&r, 0, 0, "*");
	CHECK(v && v->n_entries == 6);
	for (uint32_t i = 0; v && i < v->n_entries; i++) {
		const struct pl_rule *ru = v->entries[i].rule;
		CHECK(ru->n_backends == 1 && ru->backends[0].weight == 1 && ru->n_schedule == 1);
		CHECK(!strcmp(ru->route, "HTTPRoute/default/h2c") == (ru->backends[0].cluster != NULL));
		if (ru->backends[0].cluster)
			CHECK(ru->backends[0].cluster->app_proto == PL_APP_H2C);
	}
	CHECK(r.table->n_clusters == 1 && !strcmp(r.table->clusters[0]->name, "default/svc2:8080"));
	pl_compile_result_clear(&r);

	char *y2 = pl_xmalloc(strlen(y) + 1024);
	snprintf(y2, strlen(y) + 1024, "%sapiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n"
		 "metadata: {name: g, namespace: other}\nspec:\n"
		 "  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]\n"
		 "  to: [{group: '', kind: Service, name: far}]\n", y);
	r = run(y2);
	CHECK(has_cond(route_conds(&r, "default", "cross", 0), "ResolvedRefs", "True", "ResolvedRefs"));
	pl_compile_result_clear(&r);
	/* a grant for another name does not count */
	snprintf(y2, strlen(y) + 1024, "%sapiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n"
		 "metadata: {name: g, namespace: other}\nspec:\n"
		 "  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]\n"
		 "  to: [{group: '', kind: Service, name: near}]\n", y);
	r = run(y2);
	CHECK(has_cond(route_conds(&r, "default", "cross", 0), "ResolvedRefs", "False", "RefNotPermitted"));
	pl_compile_result_clear(&r);
	free(y2);
}

/* ---------------------------------------------------------------- precedence */

#define ROUTE(name, extra, rules) \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: " name extra "}\n" \
	"spec: {parentRefs: [{name: gw}], rules: " rules "}\n---\n"

static void test_precedence(void)
{
	const char *y = BASE
		ROUTE("a", "", "[{matches: [{path: {type: PathPrefix, value: /foo}}]}]")
		ROUTE("b", "", "[{matches: [{path: {type: Exact, value: /foo}}]}]")
		ROUTE("c", "", "[{matches: [{path: {type: PathPrefix, value: /foo/bar}}]}]")
		ROUTE("d", "", "[{matches: [{path: {type: RegularExpression, value: '/foo.*/bar/baz/qux'}}]}]")
		ROUTE("e", "", "[{matches: [{path: {value: /foo}, method: GET}]}]")
		ROUTE("f", "", "[{matches: [{path: {value: /foo}, headers: [{name: a, value: b}, {name: c, value: d}]}]}]")
		ROUTE("g", "", "[{matches: [{path: {value: /foo}, headers: [{name: a, value: b}]}]}]")
		ROUTE("h", "", "[{matches: [{path: {value: /foo}, headers: [{name: a, value: b}],"
			       " queryParams: [{name: q, value: v}]}]}]")
		ROUTE("i", "", "[{matches: [{path: {value: /}}]}]")
		ROUTE("j", "", "[{matches: [{path: {value: /foo}, method: GET, headers: [{name: a, value: b},"
			       " {name: c, value: d}, {name: e, value: f}]}]}]");
	struct pl_compile_result r = run(y);
	const struct pl_vhost *v = vhost(&r, 0, 0, "*");
	CHECK(v && v->n_entries == 10);
	const char *order[] = { "b", "c", "j", "e", "f", "h", "g", "a", "i", "d" };
	for (uint32_t i = 0; i < PL_ARRAY_LEN(order); i++) {
		char name[64];
		snprintf(name, sizeof(name), "HTTPRoute/default/%s", order[i]);
		CHECK(entry_is(v, i, name, 0));
	}
	/* trailing '/' of a prefix is ignored */
	pl_compile_result_clear(&r);

	/* ties: creationTimestamp, then namespace/name, then load order; rule and match index */
	y = BASE
		ROUTE("z-old", ", creationTimestamp: '2020-01-01T00:00:00Z'", "[{matches: [{path: {value: /x}}]}]")
		ROUTE("a-new", ", creationTimestamp: '2021-01-01T00:00:00Z'", "[{matches: [{path: {value: /x}}]}]")
		ROUTE("m-same", ", creationTimestamp: '2021-01-01T00:00:00Z'", "[{matches: [{path: {value: /x}}]}]")
		ROUTE("b-none", "", "[{matches: [{path: {value: /x}}]}]")
		ROUTE("a-none", "", "[{matches: [{path: {value: /x}}]}]")
		ROUTE("multi", ", creationTimestamp: '2022-01-01T00:00:00Z'",
		      "[{matches: [{path: {value: /x}, method: POST}, {path: {value: /x}, method: GET}]},"
		      " {matches: [{path: {value: /x}, method: GET}]}]");
	r = run(y);
	v = vhost(&r, 0, 0, "*");
	CHECK(v && v->n_entries == 8);
	CHECK(entry_is(v, 0, "HTTPRoute/default/multi", 0) && !strcmp(v->entries[0].match.method, "POST"));
	CHECK(entry_is(v, 1, "HTTPRoute/default/multi", 0) && !strcmp(v->entries[1].match.method, "GET"));
	CHECK(entry_is(v, 2, "HTTPRoute/default/multi", 1));
	CHECK(entry_is(v, 3, "HTTPRoute/default/z-old", 0));
	CHECK(entry_is(v, 4, "HTTPRoute/default/a-new", 0));
	CHECK(entry_is(v, 5, "HTTPRoute/default/m-same", 0));
	CHECK(entry_is(v, 6, "HTTPRoute/default/b-none", 0));   /* load order before name */
	CHECK(entry_is(v, 7, "HTTPRoute/default/a-none", 0));
	pl_compile_result_clear(&r);

	/* "namespace/name" order is the joined string's: "a-x/r" < "a/r" */
	y = BASE
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
		"metadata: {name: r, namespace: a, creationTimestamp: '2020-01-01T00:00:00Z'}\n"
		"spec: {parentRefs: [{name: gw, namespace: default}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
		"metadata: {name: r, namespace: a-x, creationTimestamp: '2020-01-01T00:00:00Z'}\n"
		"spec: {parentRefs: [{name: gw, namespace: default}]}\n---\n";
	r = run(y);
	v = vhost(&r, 0, 0, "*");
	CHECK(entry_is(v, 0, "HTTPRoute/a-x/r", 0));
	CHECK(entry_is(v, 1, "HTTPRoute/a/r", 0));
	/* a route without rules: one PathPrefix "/" rule and no backend */
	CHECK(v && v->n_entries == 2 && v->entries[0].match.path_type == PL_PATH_PREFIX &&
	      !strcmp(v->entries[0].match.path, "/") && v->entries[0].rule->n_schedule == 0);
	pl_compile_result_clear(&r);

	/* hostnames: the more specific hostname wins, less specific routes follow as fallback */
	y = BASE
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: x}\n"
		"spec: {parentRefs: [{name: gw}], hostnames: [foo.example.com], rules: [{matches: [{path: {value: /a}}]}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: y2}\n"
		"spec: {parentRefs: [{name: gw}], hostnames: ['*.example.com'], rules: [{matches: [{path: {type: Exact, value: /a}}]}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: w}\n"
		"spec: {parentRefs: [{name: gw}], hostnames: ['*.sub.example.com'], rules: [{matches: [{path: {value: /w}}]}]}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: z}\n"
		"spec: {parentRefs: [{name: gw}], rules: [{matches: [{path: {type: Exact, value: /a}}]}]}\n---\n";
	r = run(y);
	const struct pl_listener *l = &r.table->binds[0].listeners[0];
	CHECK(l->n_vhosts == 4);
	CHECK(l->vhosts[0].host.kind == PL_HOST_EXACT && !strcmp(l->vhosts[0].host.name, "foo.example.com"));
	CHECK(l->vhosts[1].host.kind == PL_HOST_WILDCARD && !strcmp(l->vhosts[1].host.name, ".sub.example.com"));
	CHECK(l->vhosts[2].host.kind == PL_HOST_WILDCARD && !strcmp(l->vhosts[2].host.name, ".example.com"));
	CHECK(l->vhosts[3].host.kind == PL_HOST_ANY);
	v = &l->vhosts[0];
	CHECK(v->n_entries == 3 && entry_is(v, 0, "HTTPRoute/default/x", 0) && entry_is(v, 1, "HTTPRoute/default/y2", 0) &&
	      entry_is(v, 2, "HTTPRoute/default/z", 0));
	v = &l->vhosts[1];
	CHECK(v->n_entries == 3 && entry_is(v, 0, "HTTPRoute/default/w", 0) && entry_is(v, 1, "HTTPRoute/default/y2", 0));
	v = &l->vhosts[3];
	CHECK(v->n_entries == 1 && entry_is(v, 0, "HTTPRoute/default/z", 0));
	pl_compile_result_clear(&r);

	/* past the entry budget, no fallbacks: each vhost has its own routes only */
	max_entries = 5;
	r = run(y);
	l = &r.table->binds[0].listeners[0];
	CHECK(l->n_vhosts == 4);
	CHECK(l->vhosts[0].n_entries == 1 && entry_is(&l->vhosts[0], 0, "HTTPRoute/default/x", 0));
	CHECK(l->vhosts[2].n_entries == 1 && entry_is(&l->vhosts[2], 0, "HTTPRoute/default/y2", 0));
	CHECK(l->vhosts[3].n_entries == 1 && entry_is(&l->vhosts[3], 0, "HTTPRoute/default/z", 0));
	pl_compile_result_clear(&r);
	max_entries = 0;
}

/* ---------------------------------------------------------------- matches, filters, timeouts */

static const struct pl_rule *only_rule(struct pl_compile_result *r, const char *route)
{
	const struct pl_vhost *v = vhost(r, 0, 0, "*");
	for (uint32_t i = 0; v && i < v->n_entries; i++)
		if (!strcmp(v->entries[i].rule->route, route))
			return v->entries[i].rule;
	return NULL;
}

static const struct pl_match *only_match(struct pl_compile_result *r, const char *route)
{
	const struct pl_vhost *v = vhost(r, 0, 0, "*");
	for (uint32_t i = 0; v && i < v->n_entries; i++)
		if (!strcmp(v->entries[i].rule->route, route))
			return &v->entries[i].match;
	return NULL;
}

static void test_matches_filters(void)
{
	const char *y = BASE
		ROUTE("m1", "", "[{matches: [{path: {value: /p/}, headers: [{name: X-A, value: v},"
				" {name: x-a, value: w}, {name: X-Re, type: RegularExpression, value: 'ab+'}],"
				" queryParams: [{name: Q, value: '1'}, {name: r, type: RegularExpression, value: '[0-9]+'}]}]}]")
		ROUTE("m2", "", "[{matches: [{path: {type: RegularExpression, value: '/api/v[0-9]+'}}]}]")
		ROUTE("bad1", "", "[{matches: [{path: {type: RegularExpression, value: '(unclosed'}}]}]")
		ROUTE("bad2", "", "[{matches: [{path: {type: Exact, value: /x}}], filters: [{type: URLRewrite,"
				  " urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /y}}}]}]")
		ROUTE("bad3", "", "[{filters: [{type: URLRewrite, urlRewrite: {hostname: a.com}},"
				  " {type: RequestRedirect, requestRedirect: {scheme: https}}]}]")
		ROUTE("bad4", "", "[{timeouts: {request: 1s, backendRequest: 2s}}]")
		ROUTE("bad5", "", "[{timeouts: {request: 1x}}]")
		ROUTE("bad6", "", "[{filters: [{type: RequestRedirect, requestRedirect: {statusCode: 305}}]}]")
		ROUTE("bad7", "", "[{filters: [{type: ExtensionRef, extensionRef: {group: x, kind: y, name: z}}]}]")
		ROUTE("bad8", "", "[{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: 'a b', value: x}]}}]}]")
		ROUTE("bad9", "", "[{matches: [{path: {type: PathPrefix, value: '/a//b'}}]}]")
		ROUTE("bad10", "", "[{matches: [{path: {type: RegularExpression, value: '(a{1,100}){1,100}'}}]}]")
		ROUTE("f1", "", "[{matches: [{path: {value: /f1}}], filters: ["
				"{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Set, value: s}],"
				" add: [{name: X-Add, value: a}], remove: [X-Rm]}},"
				"{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: X-R, value: r}]}},"
				"{type: URLRewrite, urlRewrite: {hostname: Up.Example.com, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}},"
				"{type: RequestMirror, requestMirror: {backendRef: {name: svc, port: 80}, percent: 25}},"
				"{type: RequestMirror, requestMirror: {backendRef: {name: svc2, port: 8080}, fraction: {numerator: 1, denominator: 3}}},"
				"{type: RequestMirror, requestMirror: {backendRef: {name: gone, port: 80}}}],"
				" backendRefs: [{name: svc, port: 80, filters: [{type: RequestHeaderModifier,"
				" requestHeaderModifier: {set: [{name: X-B, value: b}]}}]}],"
				" timeouts: {request: 10s, backendRequest: 500ms}}]")
		ROUTE("bad11", "", "[{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: svc, port: 80},"
				   " fraction: {numerator: 3, denominator: 2}}}]}]")
		ROUTE("bad12", "", "[{filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {}},"
				   " {type: ResponseHeaderModifier, responseHeaderModifier: {}}]}]")
		ROUTE("bad13", "", "[{matches: [{headers: [{name: a, value: yes}]}]}]")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad14}\n"
		"spec: {parentRefs: [{name: gw}], hostnames: ['*.*.com']}\n---\n"
		ROUTE("ok1", "", "[{matches: [{path: {type: Exact, value: /exact/}}]}, {filters: [{type: URLRewrite,"
				 " urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]}]")
		ROUTE("f2", "", "[{matches: [{path: {value: /f2}}], filters: [{type: RequestRedirect, requestRedirect:"
				" {scheme: https, hostname: x.com, port: 8443, statusCode: 301,"
				" path: {type: ReplaceFullPath, replaceFullPath: /full}}}]}]");
	struct pl_compile_result r = run(y);
	const struct pl_match *m = only_match(&r, "HTTPRoute/default/m1");
	CHECK(m && m->path_type == PL_PATH_PREFIX && !strcmp(m->path, "/p") && m->path_len == 2);
	CHECK(m && m->n_headers == 2 && !strcmp(m->headers[0].name, "x-a") && !strcmp(m->headers[0].value, "v"));
	CHECK(m && m->headers[1].type == PL_MATCH_REGEX && m->headers[1].re &&
	      regexec(m->headers[1].re, "abbb", 0, NULL, 0) == 0 && regexec(m->headers[1].re, "xabb", 0, NULL, 0) != 0);
	CHECK(m && m->n_queries == 2 && !strcmp(m->queries[0].name, "Q") && m->queries[1].re &&
	      regexec(m->queries[1].re, "123", 0, NULL, 0) == 0 && regexec(m->queries[1].re, "12a", 0, NULL, 0) != 0);
	m = only_match(&r, "HTTPRoute/default/m2");
	CHECK(m && m->path_type == PL_PATH_REGEX && m->path_re);
	CHECK(m && regexec(m->path_re, "/api/v12", 0, NULL, 0) == 0);
	CHECK(m && regexec(m->path_re, "/api/v12/x", 0, NULL, 0) != 0);
	CHECK(m && regexec(m->path_re, "/x/api/v1", 0, NULL, 0) != 0);
	for (int i = 1; i <= 14; i++) {
		char n[16];
		snprintf(n, sizeof(n), "bad%d", i);
		CHECK(has_cond(route_conds(&r, "default", n, 0), "Accepted", "False", "UnsupportedValue"));
	}
	/* the message says why, with a hint for YAML 1.1 booleans */
	json_t *c13 = json_array_get(route_conds(&r, "default", "bad13", 0), 0);
	CHECK(strstr(json_string_value(json_object_get(c13, "message")), "quote it"));
	CHECK(has_cond(route_conds(&r, "default", "ok1", 0), "Accepted", "True", "Accepted"));
	m = only_match(&r, "HTTPRoute/default/ok1");
	CHECK(m && m->path_type == PL_PATH_EXACT && !strcmp(m->path, "/exact/"));

	const struct pl_rule *ru = only_rule(&r, "HTTPRoute/default/f1");
	CHECK(ru && ru->n_filters == 6);
	if (ru && ru->n_filters == 6) {
		const struct pl_filter *f = ru->filters;
		CHECK(f[0].type == PL_FILTER_REQUEST_HEADER && f[0].u.hdr.n_set == 1 && !strcmp(f[0].u.hdr.set[0].name, "x-set") &&
		      f[0].u.hdr.set[0].name_len == 5 && f[0].u.hdr.n_add == 1 && f[0].u.hdr.n_remove == 1 &&
		      !strcmp(f[0].u.hdr.remove[0], "x-rm"));
		CHECK(f[1].type == PL_FILTER_RESPONSE_HEADER && f[1].u.hdr.n_add == 1);
		CHECK(f[2].type == PL_FILTER_REWRITE && !strcmp(f[2].u.rewrite.hostname, "up.example.com") &&
		      f[2].u.rewrite.path.type == PL_PATHMOD_PREFIX && !strcmp(f[2].u.rewrite.path.value, "/new"));
		CHECK(f[3].type == PL_FILTER_MIRROR && f[3].u.mirror.cluster && f[3].u.mirror.percent_num == 25 &&
		      f[3].u.mirror.percent_den == 100);
		CHECK(f[4].type == PL_FILTER_MIRROR && f[4].u.mirror.cluster && f[4].u.mirror.percent_num == 1 &&
		      f[4].u.mirror.percent_den == 3);
		CHECK(f[5].type == PL_FILTER_MIRROR && !f[5].u.mirror.cluster && f[5].u.mirror.percent_num == 1 &&
		      f[5].u.mirror.percent_den == 1);
	}
	CHECK(ru && ru->n_backends == 1 && ru->backends[0].n_filters == 1 &&
	      !strcmp(ru->backends[0].filters[0].u.hdr.set[0].name, "x-b"));
	CHECK(ru && ru->timeout_request_ms == 10000 && ru->timeout_backend_ms == 500);
	CHECK(has_cond(route_conds(&r, "default", "f1", 0), "ResolvedRefs", "False", "BackendNotFound"));
	ru = only_rule(&r, "HTTPRoute/default/f2");
	CHECK(ru && ru->n_filters == 1 && ru->n_schedule == 0);
	if (ru) {
		const struct pl_redirect *rd = &ru->filters[0].u.redirect;
		CHECK(!strcmp(rd->scheme, "https") && !strcmp(rd->hostname, "x.com") && rd->port == 8443 &&
		      rd->status_code == 301 && rd->path.type == PL_PATHMOD_FULL && !strcmp(rd->path.value, "/full"));
	}
	/* the table as JSON is valid and mentions the clusters */
	json_error_t je;
	char *js = pl_table_json(r.table, NULL);
	json_t *cj = json_loads(js, 0, &je);
	free(js);
	CHECK(cj && json_array_size(json_object_get(cj, "binds")) == 1);
	CHECK(cj && json_array_size(json_object_get(cj, "clusters")) == 2);
	json_decref(cj);
	pl_compile_result_clear(&r);
}

/* ---------------------------------------------------------------- weights, endpoints, ids */

static void sched_of(const char *weights, uint16_t *out, uint32_t *n, uint32_t max)
{
	char y[4096];
	snprintf(y, sizeof(y), BASE ROUTE("w", "", "[{backendRefs: %s}]"), weights);
	struct pl_compile_result r = run(y);
	const struct pl_rule *ru = only_rule(&r, "HTTPRoute/default/w");
	*n = 0;
	if (ru) {
		*n = ru->n_schedule;
		for (uint32_t i = 0; i < ru->n_schedule && i < max; i++)
			out[i] = ru->schedule[i];
	}
	pl_compile_result_clear(&r);
}

static void test_weights(void)
{
	uint16_t s[2048];
	uint32_t n;
	sched_of("[{name: svc, port: 80, weight: 5}, {name: svc2, port: 8080, weight: 1}, {name: x, port: 1, weight: 1}]",
		 s, &n, 2048);
	/* nginx smooth WRR for 5,1,1: a a b a c a a */
	uint16_t want[] = { 0, 0, 1, 0, 2, 0, 0 };
	CHECK(n == 7 && !memcmp(s, want, sizeof(want)));

	sched_of("[{name: svc, port: 80, weight: 20}, {name: svc2, port: 8080, weight: 20}]", s, &n, 2048);
	CHECK(n == 2 && s[0] == 0 && s[1] == 1);

	sched_of("[{name: svc, port: 80, weight: 0}, {name: svc2, port: 8080, weight: 2}]", s, &n, 2048);
	CHECK(n == 1 && s[0] == 1);

	sched_of("[{name: svc, port: 80, weight: 0}, {name: svc2, port: 8080, weight: 0}]", s, &n, 2048);
	CHECK(n == 0);

	sched_of("[{name: svc, port: 80}]", s, &n, 2048);
	CHECK(n == 1 && s[0] == 0);

	/* capped: every non-zero weight still appears */
	sched_of("[{name: svc, port: 80, weight: 1000000}, {name: svc2, port: 8080, weight: 1}, {name: svc, port: 80, weight: 999}]",
		 s, &n, 2048);
	CHECK(n > 0 && n <= 1024 + 3);
	int seen[3] = { 0 };
	for (uint32_t i = 0; i < n && i < 2048; i++)
		seen[s[i] < 3 ? s[i] : 0]++;
	CHECK(seen[0] > seen[2] && seen[2] >= 1 && seen[1] >= 1);
}

static void test_endpoints(void)
{
	const char *y = BASE
		"apiVersion: v1\nkind: Service\nmetadata: {name: multi}\n"
		"spec: {ports: [{name: http, port: 80}, {name: admin, port: 9000}]}\n---\n"
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: multi-a, labels: {kubernetes.io/service-name: multi}}\n"
		"addressType: IPv4\nports: [{name: http, port: 8080}, {name: admin, port: 9090}]\n"
		"endpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2], conditions: {ready: false}}, {addresses: [bogus]}]\n---\n"
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: multi-b, labels: {kubernetes.io/service-name: multi}}\n"
		"addressType: IPv6\nports: [{name: http, port: 8081}]\nendpoints: [{addresses: ['::1'], conditions: {ready: true}},\n"
		"  {addresses: ['::1']}]\n---\n"
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: other-ns, namespace: x, labels: {kubernetes.io/service-name: multi}}\n"
		"addressType: IPv4\nports: [{name: http, port: 1}]\nendpoints: [{addresses: [10.9.9.9]}]\n---\n"
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: fqdn, labels: {kubernetes.io/service-name: multi}}\n"
		"addressType: FQDN\nports: [{name: http, port: 1}]\nendpoints: [{addresses: [a.com]}]\n---\n"
		ROUTE("e", "", "[{backendRefs: [{name: multi, port: 80}, {name: multi, port: 9000}, {name: svc, port: 80}]}]");
	struct pl_compile_result r = run_ex(y, 0);
	CHECK(r.table->n_clusters == 3);
	const struct pl_cluster *http = NULL, *admin = NULL, *empty = NULL;
	for (uint32_t i = 0; i < r.table->n_clusters; i++) {
		const struct pl_cluster *c = r.table->clusters[i];
		if (!strcmp(c->name, "default/multi:80"))
			http = c;
		else if (!strcmp(c->name, "default/multi:9000"))
			admin = c;
		else if (!strcmp(c->name, "default/svc:80"))
			empty = c;
	}
	CHECK(http && http->n_eps == 3);
	if (http && http->n_eps == 3) {
		CHECK(!strcmp(http->eps[0].text, "10.0.0.1:8080") && http->eps[0].ready);
		CHECK(!strcmp(http->eps[1].text, "10.0.0.2:8080") && !http->eps[1].ready);
		CHECK(!strcmp(http->eps[2].text, "[::1]:8081") && http->eps[2].ready);
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&http->eps[0].addr;
		CHECK(sin->sin_family == AF_INET && ntohs(sin->sin_port) == 8080 && http->eps[0].addrlen == sizeof(*sin));
	}
	CHECK(admin && admin->n_eps == 2 && !strcmp(admin->eps[0].text, "10.0.0.1:9090"));
	CHECK(empty && empty->n_eps == 0);
	uint32_t ids[3] = { http ? http->id : 0, admin ? admin->id : 0, empty ? empty->id : 0 };
	CHECK(ids[0] && ids[1] && ids[2] && ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
	pl_compile_result_clear(&r);

	/* ids are stable across compiles, even when cluster order changes */
	r = run_ex(BASE ROUTE("e", "", "[{backendRefs: [{name: svc, port: 80}, {name: svc2, port: 8080}]}]"), 0);
	uint32_t svc_id = 0, svc2_id = 0;
	for (uint32_t i = 0; i < r.table->n_clusters; i++) {
		if (!strcmp(r.table->clusters[i]->name, "default/svc:80"))
			svc_id = r.table->clusters[i]->id;
		if (!strcmp(r.table->clusters[i]->name, "default/svc2:8080"))
			svc2_id = r.table->clusters[i]->id;
	}
	CHECK(svc_id == ids[2] && svc2_id && svc2_id != svc_id);
	/* stats registered under the route and its first listener */
	const struct pl_rule *ru = only_rule(&r, "HTTPRoute/default/e");
	CHECK(ru && ru->stats && !strcmp(ru->stats->name, "HTTPRoute/default/e") &&
	      !strcmp(ru->stats->listener, "default/gw/http"));
	pl_compile_result_clear(&r);
}

static void test_status_print(void)
{
	struct pl_compile_result r = run(BASE ROUTE("p", "", "[{backendRefs: [{name: svc, port: 80}]}]"));
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	pl_status_print(f, r.statuses);
	fclose(f);
	CHECK(strstr(buf, "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: pylon\nstatus:\n"
			  "  conditions:\n  - lastTransitionTime: \"2024-01-01T00:00:00Z\"\n"));
	CHECK(strstr(buf, "    status: \"True\"\n    type: Accepted\n"));
	CHECK(strstr(buf, "  parents:\n  - conditions:\n"));
	/* the printed YAML reads back to the same statuses */
	struct pl_store *s = pl_store_new();
	char err[256];
	CHECK(pl_store_load_yaml(s, buf, len, "status", err, sizeof(err)) == 3);
	pl_store_free(s);
	free(buf);
	CHECK(r.problems == 0);
	pl_compile_result_clear(&r);
}

/* ---------------------------------------------------------------- retry (added) */

static int retry_has(const struct pl_retry *rp, int code)
{
	unsigned k = (unsigned)(code - PL_RETRY_CODE_MIN);
	return rp->codes[k / 64] >> (k % 64) & 1;
}

static void test_retry(void)
{
	const char *y = BASE
		ROUTE("r1", "", "[{retry: {codes: [500, 502, 503, 504], attempts: 3, backoff: 100ms}}]")
		ROUTE("r2", "", "[{matches: [{path: {value: /r2}}], retry: {}}]")
		ROUTE("r3", "", "[{matches: [{path: {value: /r3}}], retry: {codes: [400, 599]}}]")
		ROUTE("bad1", "", "[{retry: {codes: [600]}}]")
		ROUTE("bad2", "", "[{retry: {codes: [399]}}]")
		ROUTE("bad3", "", "[{retry: {attempts: 0}}]")
		ROUTE("bad4", "", "[{retry: {backoff: 1x}}]")
		ROUTE("bad5", "", "[{retry: {codes: [500, 500]}}]")
		ROUTE("bad6", "", "[{retry: {codes: '500'}}]")
		ROUTE("bad7", "", "[{retry: [500]}]")
		ROUTE("bad8", "", "[{retry: {attempts: 101}}]");
	struct pl_compile_result r = run(y);
	const struct pl_rule *ru = only_rule(&r, "HTTPRoute/default/r1");
	CHECK(ru && ru->retry && ru->retry->attempts == 3 && ru->retry->backoff_ms == 100);
	CHECK(ru && ru->retry && retry_has(ru->retry, 500) && retry_has(ru->retry, 504) && !retry_has(ru->retry, 501) &&
	      !retry_has(ru->retry, 400));
	ru = only_rule(&r, "HTTPRoute/default/r2");
	CHECK(ru && ru->retry && ru->retry->attempts == 1 && ru->retry->backoff_ms == 25);
	CHECK(ru && ru->retry && !ru->retry->codes[0] && !ru->retry->codes[1] && !ru->retry->codes[2] &&
	      !ru->retry->codes[3]);
	ru = only_rule(&r, "HTTPRoute/default/r3");
	CHECK(ru && ru->retry && retry_has(ru->retry, 400) && retry_has(ru->retry, 599) && !retry_has(ru->retry, 500));
	for (int i = 1; i <= 8; i++) {
		char n[16];
		snprintf(n, sizeof(n), "bad%d", i);
		CHECK(has_cond(route_conds(&r, "default", n, 0), "Accepted", "False", "UnsupportedValue"));
	}
	/* GET /config shows the policy */
	char *js = pl_table_json(r.table, NULL);
	CHECK(js && strstr(js, "\"retry\":{\"codes\":[500,502,503,504],\"attempts\":3,\"backoffMs\":100}"));
	CHECK(js && strstr(js, "\"retry\":{\"codes\":[],\"attempts\":1,\"backoffMs\":25}"));
	free(js);
	pl_compile_result_clear(&r);
}

int main(void)
{
	pl_log_set_level(PL_LOG_ERROR);
	test_helpers();
	test_class_filter();
	test_gateway_listeners();
	test_unsupported_protocol();
	test_cross_gateway();
	test_route_parents();
	test_refs();
	test_precedence();
	test_matches_filters();
	test_weights();
	test_endpoints();
	test_status_print();
	test_retry();
	if (fails)
		fprintf(stderr, "test_compiler: %d check(s) failed\n", fails);
	else
		printf("test_compiler: ok\n");
	return fails != 0;
}
