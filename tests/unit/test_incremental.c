/*
 * Incremental compilation (controller/compile.h, struct pl_compiler): a
 * differential test. Random sequences of changes to a store (routes added,
 * changed, deleted, rewritten with only a new status; EndpointSlices,
 * Services, Gateways, Namespaces, ReferenceGrants, BackendTLSPolicies,
 * Secrets and ConfigMaps changed; a Gateway rewritten in place the way the
 * Kubernetes controller assigns pool addresses) and after each one the
 * persistent compiler's result must be byte for byte what a fresh
 * pl_compile() of the same store gives: the table as JSON, the statuses, the
 * problem count. Tables from earlier runs are kept and dumped again later:
 * what they share with the cache must outlive it (run under ASan to see).
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/table.h"
#include "common/tabledump.h"
#include "controller/compile.h"
#include "controller/store.h"
#include "check.h"

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	/* xorshift64*: reproducible across libcs */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ull) >> 33) % (n ? n : 1);
}

static const char *const namespaces[] = { "default", "team-a", "team-b" };
static const char *const hostpool[] = { "a.example.com", "b.example.com", "*.example.com", "x.w.example.com",
					"*.w.example.com", "other.org", "A.Example.com" };

#define CA_PEM \
	"-----BEGIN CERTIFICATE-----\n" \
	"MIIBejCCAR+gAwIBAgIUFsal0pSmtFHlfAgHKhdJI1+fzZ0wCgYIKoZIzj0EAwIw\n" \
	"EjEQMA4GA1UEAwwHdW5pdC1jYTAeFw0yNjExMjIwMTE1MTFaFw0zNjExMTkwMTE1\n" \
	"MTFaMBIxEDAOBgNVBAMMB3VuaXQtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n" \
	"AAT/SSq6MmOSQVQB1zk7N1B2QZqzdDKS8EQYnO5B0J0DT+ubaMrt13RIkqaEuzU9\n" \
	"RlSl9hVpnEbVm7c0+RDEiiOQo1MwUTAdBgNVHQ4EFgQUm32lfUrxCqk3nFpO0cvT\n" \
	"W8z11IcwHwYDVR0jBBgwFoAUm32lfUrxCqk3nFpO0cvTW8z11IcwDwYDVR0TAQH/\n" \
	"BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAgVu/eRgjWtUG8QZ7T0SzvLkjiUN7\n" \
	"AAMusYMeweQCXd0CIQDogYMuJIu3PvMDKSIv+DHvuFwns6NE0iSDESR4pS62Mg==\n" \
	"-----END CERTIFICATE-----\n"

/* A client certificate and its key (EC P-256, made for this test), base64 as in a Secret. */
#define CLIENT_CRT \
	"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJnekNDQVNtZ0F3SUJBZ0lVTjA1MmoxR1ZXZ3JiVmxsQUFrSVkwazY1WEFjd0NnWUlLb1pJ" \
	"emowRUF3SXcKRmpFVU1CSUdBMVVFQXd3TGRXNXBkQzFqYkdsbGJuUXdJQmNOTWpZeE1USXlNREkxT1RNMldoZ1BNakV5TmpFdwpNamt3TWpVNU16" \
	"WmFNQll4RkRBU0JnTlZCQU1NQzNWdWFYUXRZMnhwWlc1ME1Ga3dFd1lIS29aSXpqMENBUVlJCktvWkl6ajBEQVFjRFFnQUVabFNzMXJucUJqcUhp" \
	"SFFudkVCNjZTeWhkYlcrZXdJdlJ5Qk9hT3k0cUtZNnhJVWcKd0l0QlNZV05VZXVpYnJtQlgxdzE5STNNM0NmaEpOYi9XYlgvRWFOVE1GRXdIUVlE" \
	"VlIwT0JCWUVGSmZrZzhwaAp2SXUrWnZrZ1NVd1huQ01nWmIwek1COEdBMVVkSXdRWU1CYUFGSmZrZzhwaHZJdStadmtnU1V3WG5DTWdaYjB6Ck1B" \
	"OEdBMVVkRXdFQi93UUZNQU1CQWY4d0NnWUlLb1pJemowRUF3SURTQUF3UlFJZ0lvdG9DU0JaYnBNRlRqOVIKbUEwa3ZZTVp3d3BVTStqRE5KQzIy" \
	"QS9NejRjQ0lRRElBWDR3ZFlxNVJvamtzc2JQTmNPSzVHQTJHMnhRZEF2RApTdnhjdk54SzZRPT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
#define CLIENT_KEY \
	"LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JR0hBZ0VBTUJNR0J5cUdTTTQ5QWdFR0NDcUdTTTQ5QXdFSEJHMHdhd0lCQVFRZ2xnVExhNE5F" \
	"R3NiUjNWNDQKd0xmU3VRd3M3R0hJb3QzbHBocGNLVDNrTTVxaFJBTkNBQVJtVkt6V3Vlb0dPb2VJZENlOFFIcnBMS0YxdGI1NwpBaTlISUU1bzdM" \
	"aW9wanJFaFNEQWkwRkpoWTFSNjZKdXVZRmZYRFgwamN6Y0orRWsxdjladGY4UgotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg=="

static void put(struct pl_store *s, json_t *o)
{
	char err[256];
	if (!o) {
		fprintf(stderr, "bad test object\n");
		fails++;
		return;
	}
	if (pl_store_put(s, o, "test", err, sizeof(err)) < 0) {
		fprintf(stderr, "put: %s\n", err);
		fails++;
	}
	json_decref(o);
}

static json_t *obj(const char *api, const char *kind, const char *ns, const char *name)
{
	json_t *o = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", api, "kind", kind, "metadata", "name", name);
	if (ns)
		json_object_set_new(json_object_get(o, "metadata"), "namespace", json_string(ns));
	return o;
}

#define GWAPI "gateway.networking.k8s.io/v1"

/* ---------------------------------------------------------------- objects */

static json_t *gen_route(const char *ns, const char *name, int grpc)
{
	json_t *o = obj(GWAPI, grpc ? "GRPCRoute" : "HTTPRoute", ns, name);
	json_t *spec = json_object();
	json_object_set_new(o, "spec", spec);
	json_t *prs = json_array();
	unsigned npr = 1 + rnd(2);
	for (unsigned i = 0; i < npr; i++) {
		static const char *const sections[] = { NULL, "http", "wild", "sel", "https", "extra", "nope" };
		const char *sec = sections[rnd(PL_ARRAY_LEN(sections))];
		const char *gw = rnd(8) == 0 ? "gw-missing" : rnd(6) == 0 ? "gw2" : "gw";
		json_t *pr = json_pack("{s:s, s:s}", "name", gw, "namespace", "default");
		if (sec)
			json_object_set_new(pr, "sectionName", json_string(sec));
		if (rnd(10) == 0)
			json_object_set_new(pr, "port", json_integer(rnd(2) ? 80 : 8080));
		json_array_append_new(prs, pr);
	}
	if (rnd(20))
		json_object_set_new(spec, "parentRefs", prs);
	else
		json_decref(prs);
	if (rnd(4)) {
		json_t *hs = json_array();
		unsigned nh = 1 + rnd(2);
		for (unsigned i = 0; i < nh; i++)
			json_array_append_new(hs, json_string(rnd(30) ? hostpool[rnd(PL_ARRAY_LEN(hostpool))] : "bad_host"));
		json_object_set_new(spec, "hostnames", hs);
	}
	json_t *rules = json_array();
	unsigned nr = rnd(3) + (rnd(10) != 0);
	for (unsigned r = 0; r < nr; r++) {
		json_t *rule = json_object();
		json_t *ms = json_array();
		unsigned nm = rnd(3);
		for (unsigned m = 0; m < nm; m++) {
			json_t *mj = json_object();
			if (grpc) {
				json_object_set_new(mj, "method", rnd(2) ? json_pack("{s:s, s:s}", "service", "pkg.Svc", "method", rnd(2) ? "Get" : "List")
									 : json_pack("{s:s}", "service", rnd(2) ? "pkg.Svc" : "other.Svc"));
			} else {
				char path[64];
				static const char *const types[] = { "PathPrefix", "Exact", "RegularExpression" };
				const char *t = types[rnd(3)];
				if (t[0] == 'R')
					snprintf(path, sizeof(path), "/re%u/[0-9]+", rnd(4));
				else
					snprintf(path, sizeof(path), rnd(25) ? "/p%u" : "//bad%u", rnd(6));
				json_object_set_new(mj, "path", json_pack("{s:s, s:s}", "type", t, "value", path));
				if (rnd(4) == 0)
					json_object_set_new(mj, "method", json_string(rnd(2) ? "GET" : "POST"));
				if (rnd(4) == 0)
					json_object_set_new(mj, "queryParams", json_pack("[{s:s, s:s}]", "name", "q", "value", "1"));
			}
			if (rnd(4) == 0)
				json_object_set_new(mj, "headers", json_pack("[{s:s, s:s}]", "name", "X-Canary", "value", "yes"));
			json_array_append_new(ms, mj);
		}
		json_object_set_new(rule, "matches", ms);
		json_t *fs = json_array();
		if (rnd(3) == 0)
			json_array_append_new(fs, json_pack("{s:s, s:{s:[{s:s, s:s}]}}", "type", "RequestHeaderModifier",
							    "requestHeaderModifier", "set", "name", "x-route", "value", name));
		if (rnd(5) == 0)
			json_array_append_new(fs, json_pack("{s:s, s:{s:{s:s, s:i}}}", "type", "RequestMirror", "requestMirror",
							    "backendRef", "name", rnd(2) ? "svc1" : "svc4", "port", 80));
		if (!grpc && rnd(8) == 0)
			json_array_append_new(fs, json_pack("{s:s, s:{s:s}}", "type", "URLRewrite", "urlRewrite", "hostname",
							    "up.example.com"));
		if (!grpc && rnd(10) == 0)
			json_array_append_new(fs, json_pack("{s:s, s:{s:[s], s:[s]}}", "type", "CORS", "cors", "allowOrigins",
							    rnd(2) ? "https://a.example.com" : "*", "allowMethods", "GET"));
		if (json_array_size(fs))
			json_object_set_new(rule, "filters", fs);
		else
			json_decref(fs);
		json_t *bs = json_array();
		unsigned nb = rnd(3);
		for (unsigned b = 0; b < nb; b++) {
			char svc[16];
			snprintf(svc, sizeof(svc), "svc%u", rnd(6));
			json_t *br = json_pack("{s:s, s:i}", "name", svc, "port", rnd(6) ? 80 : rnd(2) ? 8080 : 81);
			if (rnd(4) == 0)
				json_object_set_new(br, "namespace", json_string(namespaces[rnd(3)]));
			if (rnd(3) == 0)
				json_object_set_new(br, "weight", json_integer(rnd(4)));
			json_array_append_new(bs, br);
		}
		json_object_set_new(rule, "backendRefs", bs);
		if (!grpc && rnd(8) == 0)
			json_object_set_new(rule, "retry", json_pack("{s:i, s:[i]}", "attempts", 1 + (int)rnd(3), "codes",
								     rnd(2) ? 503 : 502));
		json_array_append_new(rules, rule);
	}
	json_object_set_new(spec, "rules", rules);
	if (rnd(3) == 0) {
		char ts[40];
		snprintf(ts, sizeof(ts), "2024-01-01T00:00:%02uZ", rnd(3));
		json_object_set_new(json_object_get(o, "metadata"), "creationTimestamp", json_string(ts));
	}
	return o;
}

static json_t *gen_service(const char *ns, const char *name)
{
	json_t *o = obj("v1", "Service", ns, name);
	json_t *ports = json_pack("[{s:s, s:i}]", "name", "http", "port", 80);
	if (rnd(2))
		json_array_append_new(ports, json_pack("{s:s, s:i, s:s}", "name", "alt", "port", 8080, "appProtocol",
						       rnd(2) ? "kubernetes.io/h2c" : "HTTPS"));
	json_object_set_new(o, "spec", json_pack("{s:o}", "ports", ports));
	return o;
}

static json_t *gen_slice(const char *ns, const char *svc, const char *name)
{
	json_t *o = obj("discovery.k8s.io/v1", "EndpointSlice", ns, name);
	json_object_set_new(json_object_get(o, "metadata"), "labels", json_pack("{s:s}", "kubernetes.io/service-name", svc));
	json_object_set_new(o, "addressType", json_string("IPv4"));
	json_t *eps = json_array();
	unsigned n = rnd(4);
	for (unsigned i = 0; i < n; i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "10.0.%u.%u", rnd(3), rnd(4));
		json_array_append_new(eps, json_pack("{s:[s], s:{s:b}}", "addresses", ip, "conditions", "ready", rnd(4) != 0));
	}
	json_object_set_new(o, "endpoints", eps);
	json_object_set_new(o, "ports", json_pack("[{s:s, s:i}, {s:s, s:i}]", "name", "http", "port", 8000 + (int)rnd(3),
						  "name", "alt", "port", 9000));
	return o;
}

static json_t *gen_gateway(int extra, int https)
{
	json_t *o = obj(GWAPI, "Gateway", "default", "gw");
	json_t *ls = json_pack("[{s:s, s:i, s:s, s:{s:{s:s}}},"
			       " {s:s, s:i, s:s, s:s, s:{s:{s:s}}},"
			       " {s:s, s:i, s:s, s:{s:{s:s, s:{s:{s:s}}}}}]",
			       "name", "http", "port", 80, "protocol", "HTTP", "allowedRoutes", "namespaces", "from", "All",
			       "name", "wild", "port", 8080, "protocol", "HTTP", "hostname", "*.example.com",
			       "allowedRoutes", "namespaces", "from", "All",
			       "name", "sel", "port", 9090, "protocol", "HTTP", "allowedRoutes", "namespaces", "from", "Selector",
			       "selector", "matchLabels", "env", "prod");
	if (extra)
		json_array_append_new(ls, json_pack("{s:s, s:i, s:s, s:s}", "name", "extra", "port", 7070, "protocol", "HTTP",
						    "hostname", "b.example.com"));
	if (https)
		json_array_append_new(ls, json_pack("{s:s, s:i, s:s, s:{s:[{s:s}]}, s:{s:{s:s}}}", "name", "https", "port",
						    443, "protocol", "HTTPS", "tls", "certificateRefs", "name", "cert",
						    "allowedRoutes", "namespaces", "from", "All"));
	json_object_set_new(o, "spec", json_pack("{s:s, s:o}", "gatewayClassName", "pylon", "listeners", ls));
	/* the client certificate changes cluster names; an unusable frontend CA rejects the HTTPS listener */
	json_t *tls = json_pack("{s:{s:{s:s}}}", "backend", "clientCertificateRef", "name", "client");
	if (https)
		json_object_set_new(tls, "frontend", json_pack("{s:{s:{s:[{s:s, s:s}]}}}", "default", "validation",
							       "caCertificateRefs", "kind", "ConfigMap", "name", "ca"));
	json_object_set_new(json_object_get(o, "spec"), "tls", tls);
	return o;
}

static void base_store(struct pl_store *s)
{
	json_t *o = obj(GWAPI, "GatewayClass", NULL, "pylon");
	json_object_set_new(o, "spec", json_pack("{s:s}", "controllerName", PL_DEFAULT_CONTROLLER_NAME));
	put(s, o);
	o = obj(GWAPI, "GatewayClass", NULL, "theirs");
	json_object_set_new(o, "spec", json_pack("{s:s}", "controllerName", "example.com/other"));
	put(s, o);
	put(s, gen_gateway(0, 1));
	o = obj(GWAPI, "Gateway", "default", "gw2");
	json_object_set_new(o, "spec", json_pack("{s:s, s:[{s:s, s:i, s:s}]}", "gatewayClassName", "theirs", "listeners",
						 "name", "http", "port", 80, "protocol", "HTTP"));
	put(s, o);
	for (size_t i = 0; i < PL_ARRAY_LEN(namespaces); i++) {
		o = obj("v1", "Namespace", NULL, namespaces[i]);
		if (i == 1)
			json_object_set_new(json_object_get(o, "metadata"), "labels", json_pack("{s:s}", "env", "prod"));
		put(s, o);
	}
	for (size_t n = 0; n < PL_ARRAY_LEN(namespaces); n++) {
		for (unsigned i = 0; i < 5; i++) {
			char svc[16], sl[24];
			snprintf(svc, sizeof(svc), "svc%u", i);
			snprintf(sl, sizeof(sl), "svc%u-a", i);
			put(s, gen_service(namespaces[n], svc));
			put(s, gen_slice(namespaces[n], svc, sl));
		}
	}
	o = obj("v1", "ConfigMap", "default", "ca");
	json_object_set_new(o, "data", json_pack("{s:s}", "ca.crt", CA_PEM));
	put(s, o);
}

/* ---------------------------------------------------------------- changes */

enum change {
	CH_ROUTE_ADD, CH_ROUTE_MODIFY, CH_ROUTE_DELETE, CH_ROUTE_STATUS, CH_SLICE, CH_SLICE_ADD_DEL, CH_SERVICE,
	CH_GATEWAY, CH_GATEWAY_INPLACE, CH_GATEWAY_STATUS, CH_NAMESPACE, CH_GRANT, CH_POLICY, CH_SECRET, CH_CONFIGMAP,
	CH_N
};

static const char *const change_names[] = { "route add", "route modify", "route delete", "route status", "slice",
					    "slice add/delete", "service", "gateway", "gateway in place",
					    "gateway status", "namespace", "grant", "policy", "secret", "configmap" };

static unsigned next_route;
static int gw_extra, gw_https = 1;

/* A route of the store, by position; NULL when there is none. */
static const struct pl_obj *some_route(struct pl_store *s, enum pl_kind *kind)
{
	const struct pl_obj *const *v;
	*kind = rnd(5) ? PL_K_HTTPROUTE : PL_K_GRPCROUTE;
	size_t n = pl_store_list(s, *kind, &v);
	if (!n) {
		*kind = *kind == PL_K_HTTPROUTE ? PL_K_GRPCROUTE : PL_K_HTTPROUTE;
		n = pl_store_list(s, *kind, &v);
	}
	return n ? v[rnd((uint32_t)n)] : NULL;
}

static void apply_change(struct pl_store *s, enum change ch)
{
	char name[64];
	enum pl_kind k;
	const struct pl_obj *r;
	json_t *o;
	switch (ch) {
	case CH_ROUTE_ADD:
		snprintf(name, sizeof(name), "r%u", next_route++);
		put(s, gen_route(namespaces[rnd(3)], name, rnd(5) == 0));
		break;
	case CH_ROUTE_MODIFY:
		if ((r = some_route(s, &k))) {
			snprintf(name, sizeof(name), "%s", r->name);
			put(s, gen_route(r->ns, name, k == PL_K_GRPCROUTE));
		}
		break;
	case CH_ROUTE_DELETE:
		if ((r = some_route(s, &k)))
			pl_store_delete(s, k, r->ns, r->name);
		break;
	case CH_ROUTE_STATUS:
		if ((r = some_route(s, &k))) {
			o = json_deep_copy(r->json);
			json_object_set_new(o, "status", json_pack("{s:[]}", "parents"));
			json_object_set_new(json_object_get(o, "metadata"), "resourceVersion", json_string("42"));
			put(s, o);
		}
		break;
	case CH_SLICE: {
		char svc[16], sl[24];
		const char *ns = namespaces[rnd(3)];
		snprintf(svc, sizeof(svc), "svc%u", rnd(6));
		snprintf(sl, sizeof(sl), "%s-a", svc);
		put(s, gen_slice(ns, svc, sl));
		break;
	}
	case CH_SLICE_ADD_DEL: {
		char svc[16], sl[24];
		const char *ns = namespaces[rnd(3)];
		snprintf(svc, sizeof(svc), "svc%u", rnd(6));
		snprintf(sl, sizeof(sl), "%s-%c", svc, rnd(2) ? 'b' : 'a');
		if (pl_store_get(s, PL_K_ENDPOINTSLICE, ns, sl) && rnd(2))
			pl_store_delete(s, PL_K_ENDPOINTSLICE, ns, sl);
		else
			put(s, gen_slice(ns, svc, sl));
		break;
	}
	case CH_SERVICE: {
		char svc[16];
		const char *ns = namespaces[rnd(3)];
		snprintf(svc, sizeof(svc), "svc%u", rnd(6));
		if (rnd(4) == 0)
			pl_store_delete(s, PL_K_SERVICE, ns, svc);
		else
			put(s, gen_service(ns, svc));
		break;
	}
	case CH_GATEWAY:
		if (rnd(2))
			gw_extra = !gw_extra;
		else
			gw_https = !gw_https;
		put(s, gen_gateway(gw_extra, gw_https));
		break;
	case CH_GATEWAY_INPLACE: {
		/* what the Kubernetes controller does with pool addresses: no put */
		const struct pl_obj *g = pl_store_get(s, PL_K_GATEWAY, "default", "gw");
		if (g) {
			json_t *spec = json_object_get(g->json, "spec");
			if (json_object_get(spec, "addresses"))
				json_object_del(spec, "addresses");
			else
				json_object_set_new(spec, "addresses", json_pack("[{s:s, s:s}]", "type", "IPAddress", "value",
										  rnd(2) ? "127.0.0.2" : "127.0.0.3"));
		}
		break;
	}
	case CH_GATEWAY_STATUS: {
		const struct pl_obj *g = pl_store_get(s, PL_K_GATEWAY, "default", "gw");
		if (g) {
			/* a status write comes back: status (or the controller's text of it) and resourceVersion */
			o = json_deep_copy(g->json);
			if (rnd(2))
				json_object_set_new(o, "status", json_pack("{s:i}", "n", rnd(100)));
			else
				json_object_set_new(o, "_pylonStatus", json_sprintf("{\"n\":%u}", rnd(100)));
			json_object_set_new(json_object_get(o, "metadata"), "resourceVersion", json_sprintf("%u", rnd(1000)));
			put(s, o);
		}
		break;
	}
	case CH_NAMESPACE:
		o = obj("v1", "Namespace", NULL, namespaces[rnd(3)]);
		if (rnd(2))
			json_object_set_new(json_object_get(o, "metadata"), "labels", json_pack("{s:s}", "env", "prod"));
		put(s, o);
		break;
	case CH_GRANT:
		if (pl_store_get(s, PL_K_REFERENCEGRANT, "team-b", "g") && rnd(2)) {
			pl_store_delete(s, PL_K_REFERENCEGRANT, "team-b", "g");
		} else {
			o = obj("gateway.networking.k8s.io/v1beta1", "ReferenceGrant", "team-b", "g");
			json_object_set_new(o, "spec", json_pack("{s:[{s:s, s:s, s:s}], s:[{s:s, s:s}]}", "from", "group",
								 "gateway.networking.k8s.io", "kind", "HTTPRoute",
								 "namespace", namespaces[rnd(2)], "to", "group", "", "kind",
								 "Service"));
			put(s, o);
		}
		break;
	case CH_POLICY:
		if (pl_store_get(s, PL_K_BACKENDTLSPOLICY, "default", "p") && rnd(2)) {
			pl_store_delete(s, PL_K_BACKENDTLSPOLICY, "default", "p");
		} else {
			o = obj("gateway.networking.k8s.io/v1alpha3", "BackendTLSPolicy", "default", "p");
			json_t *val = rnd(2) ? json_pack("{s:s, s:s}", "hostname", "svc.example.com", "wellKnownCACertificates", "System")
					     : json_pack("{s:s, s:[{s:s, s:s, s:s}]}", "hostname", "svc.example.com",
							 "caCertificateRefs", "group", "", "kind", "ConfigMap", "name", "ca");
			json_object_set_new(o, "spec", json_pack("{s:[{s:s, s:s, s:s}], s:o}", "targetRefs", "group", "", "kind",
								 "Service", "name", rnd(2) ? "svc1" : "svc2", "validation", val));
			put(s, o);
		}
		break;
	case CH_SECRET: {
		static const char *const secrets[] = { "cert", "client", "client", "unrelated" };
		const char *sn = secrets[rnd(PL_ARRAY_LEN(secrets))];
		if (pl_store_get(s, PL_K_SECRET, "default", sn) && rnd(2)) {
			pl_store_delete(s, PL_K_SECRET, "default", sn);
		} else {
			o = obj("v1", "Secret", "default", sn);
			json_object_set_new(o, "type", json_string(rnd(4) ? "kubernetes.io/tls" : "Opaque"));
			if (rnd(3))
				json_object_set_new(o, "data", json_pack("{s:s, s:s}", "tls.crt", CLIENT_CRT, "tls.key", CLIENT_KEY));
			else
				json_object_set_new(o, "data", json_pack("{s:s, s:s}", "tls.crt", "bm9wZQ==", "tls.key", "bm9wZQ=="));
			put(s, o);
		}
		break;
	}
	case CH_CONFIGMAP:
		o = obj("v1", "ConfigMap", "default", rnd(2) ? "ca" : "other");
		json_object_set_new(o, "data", json_pack("{s:s}", "ca.crt", rnd(2) ? CA_PEM : "junk"));
		put(s, o);
		break;
	case CH_N:
		break;
	}
}

/* ---------------------------------------------------------------- the comparison */

struct kept {
	struct pl_table *t;
	char *json;
};

/* compile.h's rule for problems, from the JSON: some condition in its unhealthy state. */
static int unhealthy(const json_t *j)
{
	size_t i;
	const char *k;
	json_t *v;
	if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			if (unhealthy(v))
				return 1;
		return 0;
	}
	if (!json_is_object(j))
		return 0;
	const char *type = json_string_value(json_object_get(j, "type"));
	const char *st = json_string_value(json_object_get(j, "status"));
	if (type && st && json_object_get(j, "reason"))
		return (!strcmp(type, "Conflicted") || !strcmp(type, "PartiallyInvalid")) ? !strcmp(st, "True")
											  : strcmp(st, "True") != 0;
	json_object_foreach((json_t *)j, k, v)
		if (unhealthy(v))
			return 1;
	return 0;
}

static unsigned count_problems(const json_t *statuses)
{
	unsigned n = 0;
	size_t i;
	json_t *e;
	const char *k;
	if (json_is_object(statuses))   /* opts.status_map */
		json_object_foreach((json_t *)statuses, k, e)
			n += (unsigned)unhealthy(e);
	json_array_foreach(statuses, i, e)
		n += (unsigned)unhealthy(json_object_get(e, "status"));
	return n;
}

static char *statuses_text(const struct pl_compile_result *r)
{
	return json_dumps(r->statuses, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* opts.status_delta: the map the deltas of the sequence's runs add up to */
static json_t *applied;

/* The statuses text of a run: with status_delta, its delta applied to the previous runs' map. */
static char *run_statuses_text(const struct pl_compile_opts *o, const struct pl_compile_result *r)
{
	if (!o->status_delta)
		return statuses_text(r);
	if (r->status_all || !applied) {
		CHECK(r->status_all && !r->status_gone);
		json_decref(applied);
		applied = json_deep_copy(r->statuses);
	} else {
		size_t i;
		json_t *k, *v;
		const char *key;
		json_array_foreach(r->status_gone, i, k)
			json_object_del(applied, json_string_value(k));
		json_object_foreach(r->statuses, key, v)
			json_object_set(applied, key, v);
	}
	return json_dumps(applied, JSON_COMPACT | JSON_SORT_KEYS);
}

/* Runs inc and a fresh compile on s; 0 when they agree. */
static int compare(struct pl_compiler *inc, struct pl_store *s, const struct pl_compile_opts *o, struct kept *keep,
		   const char *what, unsigned step)
{
	struct pl_compile_result a, b;
	pl_compiler_run(inc, s, &a);
	pl_compile(s, o, &b);
	char *ta = pl_table_json(a.table, NULL), *tb = pl_table_json(b.table, NULL);
	char *sa = run_statuses_text(o, &a);
	char *sb = o->status_delta ? json_dumps(b.statuses, JSON_COMPACT | JSON_SORT_KEYS) : statuses_text(&b);
	int bad = 0;
	if (!ta || !tb || strcmp(ta, tb) != 0) {
		fprintf(stderr, "step %u (%s): tables differ\n--- incremental\n%s\n--- full\n%s\n", step, what, ta, tb);
		bad = 1;
	} else if (!sa || !sb || strcmp(sa, sb) != 0) {
		fprintf(stderr, "step %u (%s): statuses differ\n--- incremental\n%s\n--- full\n%s\n", step, what, sa, sb);
		bad = 1;
	} else if (a.problems != b.problems || b.problems != count_problems(b.statuses)) {
		fprintf(stderr, "step %u (%s): problems %u, %u, counted %u\n", step, what, a.problems, b.problems,
			count_problems(b.statuses));
		bad = 1;
	}
	free(tb);
	free(sa);
	free(sb);
	/* keep this table a while: later compiles must not free what it points into */
	if (keep->t) {
		char *again = pl_table_json(keep->t, NULL);
		if (!again || strcmp(again, keep->json) != 0) {
			fprintf(stderr, "step %u: an older table changed after later compiles\n", step);
			bad = 1;
		}
		free(again);
		pl_table_unref(keep->t);
		free(keep->json);
	}
	keep->t = a.table;
	keep->json = ta;
	a.table = NULL;
	pl_compile_result_clear(&a);
	pl_compile_result_clear(&b);
	return bad;
}

static void run_sequence(uint64_t seed, unsigned steps, int ephemeral, const char *ctl, int status_map)
{
	rng_state = seed;
	next_route = 0;
	gw_extra = 0;
	gw_https = 1;
	struct pl_store *s = pl_store_new();
	base_store(s);
	for (unsigned i = 0; i < 12; i++)
		apply_change(s, CH_ROUTE_ADD);
	struct pl_compile_opts o = { .controller_name = ctl, .now = "2024-01-01T00:00:00Z", .ephemeral = ephemeral,
				     .status_map = status_map != 0, .status_delta = status_map == 2 };
	json_decref(applied);
	applied = NULL;
	struct pl_compiler *inc = pl_compiler_new(&o);
	struct kept keep[3] = { 0 };
	unsigned full_runs = 0, route_steps = 0, reused_steps = 0, slice_steps = 0, slice_fast = 0;
	for (unsigned step = 0; step < steps && !fails; step++) {
		/* mostly route and endpoint changes, as in a live cluster */
		uint32_t x = rnd(100);
		enum change ch = x < 22 ? CH_ROUTE_ADD : x < 40 ? CH_ROUTE_MODIFY : x < 50 ? CH_ROUTE_DELETE
			       : x < 56 ? CH_ROUTE_STATUS : x < 68 ? CH_SLICE : x < 72 ? CH_SLICE_ADD_DEL
			       : (enum change)(CH_SERVICE + rnd(CH_N - CH_SERVICE));
		/* sometimes several changes in one burst */
		unsigned burst = rnd(5) == 0 ? 2 + rnd(3) : 1;
		for (unsigned b = 0; b < burst; b++)
			apply_change(s, b ? (enum change)rnd(CH_N) : ch);
		if (compare(inc, s, &o, &keep[step % 3], change_names[ch], step))
			fails++;
		struct pl_compiler_stats st;
		pl_compiler_get_stats(inc, &st);
		full_runs += st.full;
		if (burst == 1 && ch <= CH_ROUTE_STATUS && step > 0) {
			route_steps++;
			/* a route change recompiles at most that route */
			reused_steps += !st.full && st.routes_compiled <= 1;
		}
		/* status writes coming back do not make the next compile a full one */
		if (burst == 1 && ch == CH_GATEWAY_STATUS && step > 0)
			CHECK(!st.full);
		if (burst == 1 && (ch == CH_SLICE || ch == CH_SLICE_ADD_DEL) && step > 0) {
			slice_steps++;
			/* only the clusters of that Service's ports (svc:80, svc:8080, svc:80/h2c) are rebuilt;
			 * all of them when ephemeral (cluster ids number the table's clusters) */
			slice_fast += !st.full && st.routes_compiled == 0 && (ephemeral || st.clusters_built <= 3);
		}
	}
	CHECK(route_steps == reused_steps);
	CHECK(slice_steps == slice_fast);
	printf("test_incremental: seed %llu%s%s%s: %u steps, %u full compiles, %u route-only steps incremental, "
	       "%u slice-only steps without route recompiles\n", (unsigned long long)seed, ephemeral ? " ephemeral" : "",
	       ctl ? " controller-name" : "", status_map == 2 ? " status-delta" : status_map ? " status-map" : "", steps, full_runs, reused_steps, slice_fast);
	/* the compiler goes first: tables it made stay valid without it */
	pl_compiler_free(inc);
	for (int i = 0; i < 3; i++) {
		if (!keep[i].t)
			continue;
		char *again = pl_table_json(keep[i].t, NULL);
		CHECK(again && strcmp(again, keep[i].json) == 0);
		free(again);
		pl_table_unref(keep[i].t);
		free(keep[i].json);
	}
	pl_store_free(s);
}

/* The cache notices a different store, even one at the address of a freed one. */
static void test_store_switch(void)
{
	struct pl_compile_opts o = { .now = "2024-01-01T00:00:00Z" };
	struct pl_compiler *inc = pl_compiler_new(&o);
	for (int i = 0; i < 3; i++) {
		rng_state = 7 + (uint64_t)i;
		struct pl_store *s = pl_store_new();
		base_store(s);
		for (unsigned k = 0; k < 5 + (unsigned)i; k++)
			apply_change(s, CH_ROUTE_ADD);
		struct kept keep = { 0 };
		CHECK(compare(inc, s, &o, &keep, "new store", (unsigned)i) == 0);
		struct pl_compiler_stats st;
		pl_compiler_get_stats(inc, &st);
		CHECK(st.full);
		CHECK(compare(inc, s, &o, &keep, "same store", (unsigned)i) == 0);
		pl_compiler_get_stats(inc, &st);
		CHECK(!st.full && st.routes_compiled == 0 && st.clusters_built == 0);
		pl_table_unref(keep.t);
		free(keep.json);
		pl_store_free(s);
	}
	pl_compiler_free(inc);
}

int main(int argc, char **argv)
{
	pl_log_set_level(PL_LOG_ERROR);
	/* test_incremental [STEPS [SEED]]: longer runs and other sequences by hand */
	unsigned steps = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 200;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
	test_store_switch();
	run_sequence(seed, steps, 1, NULL, 0);
	run_sequence(seed + 1, steps, 0, NULL, 0);
	run_sequence(seed + 2, steps, 1, PL_DEFAULT_CONTROLLER_NAME, 0);
	run_sequence(seed + 3, steps, 0, PL_DEFAULT_CONTROLLER_NAME, 0);
	run_sequence(seed + 4, steps, 0, PL_DEFAULT_CONTROLLER_NAME, 1);
	run_sequence(seed + 5, steps, 0, PL_DEFAULT_CONTROLLER_NAME, 2);   /* as the Kubernetes controller runs it */
	if (fails)
		fprintf(stderr, "test_incremental: %d check(s) failed\n", fails);
	else
		printf("test_incremental: ok\n");
	return fails != 0;
}
