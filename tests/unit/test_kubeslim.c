/*
 * What the Kubernetes store keeps of an object (kube.c slim()), which
 * Secrets and ConfigMaps count as referenced (refs_walk()), and the
 * status-only comparison, without an API server. Includes kube.c to reach
 * its static functions.
 */
#include "controller/kube.c"
#include "check.h"

static json_t *parse(const char *s)
{
	json_error_t e;
	json_t *v = json_loads(s, 0, &e);
	if (!v)
		PL_PANIC("bad test JSON: %s", e.text);
	return v;
}

static const char *route_json =
	"{\"apiVersion\":\"gateway.networking.k8s.io/v1\",\"kind\":\"HTTPRoute\","
	"\"metadata\":{\"name\":\"r\",\"namespace\":\"ns\",\"uid\":\"u-1\",\"generation\":3,\"resourceVersion\":\"17\","
	"\"creationTimestamp\":\"2026-01-02T03:04:05Z\",\"labels\":{\"a\":\"b\"},"
	"\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":\"{...}\"},"
	"\"managedFields\":[{\"manager\":\"kubectl\"}]},"
	"\"spec\":{\"parentRefs\":[{\"name\":\"gw\"}],\"rules\":[{\"backendRefs\":[{\"name\":\"svc\",\"port\":80}]}]},"
	"\"status\":{\"parents\":[{\"controllerName\":\"x/y\",\"parentRef\":{\"name\":\"gw\"},\"conditions\":[]}]}}";

static void test_slim_route(void)
{
	json_t *o = parse(route_json);
	json_t *s = slim(PL_K_HTTPROUTE, o, 0, 1);
	json_t *md = json_object_get(s, "metadata");
	CHECK(json_object_size(s) == 5);   /* apiVersion kind metadata spec _pylonStatus */
	CHECK(!strcmp(sget(s, "kind"), "HTTPRoute") && sget(s, "apiVersion"));
	CHECK(json_object_size(md) == 5);
	CHECK(!strcmp(sget(md, "name"), "r") && !strcmp(sget(md, "namespace"), "ns") &&
	      !strcmp(sget(md, "resourceVersion"), "17") && sget(md, "creationTimestamp") &&
	      json_integer_value(json_object_get(md, "generation")) == 3);
	CHECK(!json_object_get(md, "uid") && !json_object_get(md, "annotations") && !json_object_get(md, "labels") &&
	      !json_object_get(md, "managedFields"));
	CHECK(json_equal(json_object_get(s, "spec"), json_object_get(o, "spec")));
	CHECK(!json_object_get(s, "status"));
	/* the status comes back as it was */
	struct pl_obj po = { .kind = PL_K_HTTPROUTE, .json = s };
	json_t *st = api_status(&po);
	CHECK(json_equal(st, json_object_get(o, "status")));
	json_decref(st);
	/* the original is not changed */
	CHECK(json_object_get(json_object_get(o, "metadata"), "uid") && json_object_get(o, "status"));
	json_decref(s);
	s = slim(PL_K_HTTPROUTE, o, 0, 0);
	po.json = s;
	CHECK(!json_object_get(s, "_pylonStatus") && api_status(&po) == NULL);
	json_decref(s);
	json_decref(o);
}

static void test_slim_core(void)
{
	json_t *ns = parse("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\",\"labels\":{\"team\":\"x\"},"
			   "\"uid\":\"u\"},\"spec\":{\"finalizers\":[\"kubernetes\"]},\"status\":{\"phase\":\"Active\"}}");
	json_t *s = slim(PL_K_NAMESPACE, ns, 0, kind_has_status(PL_K_NAMESPACE));
	CHECK(json_object_size(s) == 3 && !strcmp(sget(json_object_get(json_object_get(s, "metadata"), "labels"), "team"), "x"));
	json_decref(s);
	json_decref(ns);

	json_t *es = parse("{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"e\","
			   "\"namespace\":\"n\",\"labels\":{\"kubernetes.io/service-name\":\"svc\"}},\"addressType\":\"IPv4\","
			   "\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"conditions\":{\"ready\":true,\"serving\":true},"
			   "\"nodeName\":\"n1\",\"zone\":\"z\",\"targetRef\":{\"kind\":\"Pod\",\"name\":\"p\"}},7],"
			   "\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}]}");
	s = slim(PL_K_ENDPOINTSLICE, es, 0, kind_has_status(PL_K_ENDPOINTSLICE));
	json_t *e0 = json_array_get(json_object_get(s, "endpoints"), 0);
	CHECK(json_object_size(e0) == 2 && json_object_get(e0, "addresses") && json_object_get(e0, "conditions"));
	CHECK(json_integer_value(json_array_get(json_object_get(s, "endpoints"), 1)) == 7);   /* odd entries kept as they are */
	CHECK(!strcmp(sget(s, "addressType"), "IPv4") && json_array_size(json_object_get(s, "ports")) == 1);
	CHECK(sget(json_object_get(json_object_get(s, "metadata"), "labels"), "kubernetes.io/service-name"));
	json_decref(s);
	json_decref(es);

	json_t *sec = parse("{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"c\",\"namespace\":\"n\","
			    "\"resourceVersion\":\"5\"},\"type\":\"kubernetes.io/tls\",\"data\":{\"tls.crt\":\"QQ==\"}}");
	s = slim(PL_K_SECRET, sec, 0, 0);
	CHECK(!strcmp(sget(s, "type"), "kubernetes.io/tls") && json_object_get(s, "data"));
	json_decref(s);
	s = slim(PL_K_SECRET, sec, 1, 0);
	struct pl_obj po = { .kind = PL_K_SECRET, .json = s };
	CHECK(is_stub(&po) && !json_object_get(s, "data") && !json_object_get(s, "type") &&
	      !strcmp(sget(json_object_get(s, "metadata"), "resourceVersion"), "5"));
	json_decref(s);
	json_decref(sec);
}

static int has(json_t *set, const char *key)
{
	return json_object_get(set, key) != NULL;
}

static void test_refs(void)
{
	json_t *gw = parse("{\"gatewayClassName\":\"c\",\"listeners\":[{\"name\":\"https\",\"tls\":{\"certificateRefs\":["
			   "{\"name\":\"a\"},{\"kind\":\"Secret\",\"group\":\"\",\"name\":\"b\",\"namespace\":\"other\"},"
			   "{\"kind\":\"Secret\",\"group\":\"example.com\",\"name\":\"x\"}]}}],"
			   "\"tls\":{\"backend\":{\"clientCertificateRef\":{\"name\":\"client\"}},"
			   "\"frontend\":{\"default\":{\"validation\":{\"caCertificateRefs\":[{\"name\":\"ca\"},"
			   "{\"kind\":\"Secret\",\"name\":\"ca2\"}]}},\"perPort\":[{\"port\":443,\"tls\":{\"validation\":"
			   "{\"caCertificateRefs\":[{\"kind\":\"ConfigMap\",\"name\":\"ca3\",\"group\":\"\"}]}}}]},"
			   "\"futureCertificateRef\":{\"name\":\"f\"}},"
			   "\"infrastructure\":{\"parametersRef\":{\"kind\":\"ConfigMap\",\"group\":\"\",\"name\":\"params\"}},"
			   "\"addresses\":[{\"type\":\"IPAddress\",\"value\":\"1.2.3.4\"}]}");
	json_t *set = json_object();
	refs_walk(set, gw, "gwns", NULL, 0);
	CHECK(has(set, "Secret/gwns/a"));
	CHECK(has(set, "Secret/other/b"));
	CHECK(!has(set, "Secret/gwns/x"));          /* another group: not a core Secret */
	CHECK(has(set, "Secret/gwns/client"));
	CHECK(has(set, "ConfigMap/gwns/ca"));
	CHECK(has(set, "Secret/gwns/ca2"));
	CHECK(has(set, "ConfigMap/gwns/ca3"));
	CHECK(has(set, "Secret/gwns/f") && has(set, "ConfigMap/gwns/f"));   /* unknown default: both */
	CHECK(has(set, "ConfigMap/gwns/params"));   /* any {kind, name} naming one */
	CHECK(json_object_size(set) == 9);
	json_decref(gw);

	json_t *pol = parse("{\"targetRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"svc\"}],"
			    "\"validation\":{\"caCertificateRefs\":[{\"group\":\"\",\"kind\":\"ConfigMap\",\"name\":\"bca\"}],"
			    "\"hostname\":\"h\"}}");
	json_object_clear(set);
	refs_walk(set, pol, "pns", NULL, 0);
	CHECK(json_object_size(set) == 1 && has(set, "ConfigMap/pns/bca"));
	json_decref(pol);

	/* hostile depth: bounded */
	char deep[4096];
	size_t n = 0;
	for (int i = 0; i < 600; i++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "[");
	for (int i = 0; i < 600; i++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "]");
	json_t *d = json_loads(deep, 0, NULL);
	json_object_clear(set);
	refs_walk(set, d, "n", NULL, 0);
	CHECK(json_object_size(set) == 0);
	json_decref(d);
	json_decref(set);
}

static void test_keys(void)
{
	enum pl_kind k;
	char ns[64], name[64];
	CHECK(split_key("HTTPRoute/default/r1", &k, ns, sizeof(ns), name, sizeof(name)) == 0 && k == PL_K_HTTPROUTE &&
	      !strcmp(ns, "default") && !strcmp(name, "r1"));
	CHECK(split_key("GatewayClass//c", &k, ns, sizeof(ns), name, sizeof(name)) == 0 && k == PL_K_GATEWAYCLASS &&
	      !*ns && !strcmp(name, "c"));
	CHECK(split_key("Gateway/ns", &k, ns, sizeof(ns), name, sizeof(name)) != 0);
	CHECK(split_key("Nope/a/b", &k, ns, sizeof(ns), name, sizeof(name)) != 0);
	CHECK(split_key("HTTPRouteX/a/b", &k, ns, sizeof(ns), name, sizeof(name)) != 0);
	CHECK(split_key("Secret/a/b", &k, ns, 1, name, sizeof(name)) != 0);
}

static void test_status_only(void)
{
	K.jt = pl_jintern_new();
	json_t *o = parse(route_json);
	json_t *a = slim(PL_K_HTTPROUTE, o, 0, 1);
	json_decref(o);
	intern_slim(a);
	/* our status write coming back: new resourceVersion and status */
	o = parse(route_json);
	json_object_set_new(json_object_get(o, "metadata"), "resourceVersion", json_string("18"));
	json_object_set_new(o, "status", json_pack("{s:[]}", "parents"));
	json_t *b = slim(PL_K_HTTPROUTE, o, 0, 1);
	json_decref(o);
	intern_slim(b);
	CHECK(same_but_status(a, b));
	CHECK(json_object_get(a, "spec") == json_object_get(b, "spec"));   /* shared */
	json_decref(b);
	/* an annotation: dropped, so no recompile either */
	o = parse(route_json);
	json_object_set_new(json_object_get(json_object_get(o, "metadata"), "annotations"), "x", json_string("y"));
	b = slim(PL_K_HTTPROUTE, o, 0, 1);
	json_decref(o);
	CHECK(same_but_status(a, b));
	json_decref(b);
	/* a spec change or a generation change is not status-only */
	o = parse(route_json);
	json_object_set_new(json_object_get(o, "metadata"), "generation", json_integer(4));
	b = slim(PL_K_HTTPROUTE, o, 0, 1);
	json_decref(o);
	CHECK(!same_but_status(a, b));
	json_decref(b);
	o = parse(route_json);
	json_object_set_new(json_object_get(o, "spec"), "hostnames", json_pack("[s]", "h"));
	b = slim(PL_K_HTTPROUTE, o, 0, 1);
	json_decref(o);
	CHECK(!same_but_status(a, b) && !same_but_status(b, a));
	json_decref(b);
	json_decref(a);
	pl_jintern_gc(K.jt);
	pl_jintern_free(K.jt);
	K.jt = NULL;
}

int main(void)
{
	test_slim_route();
	test_slim_core();
	test_refs();
	test_keys();
	test_status_only();
	if (fails) {
		fprintf(stderr, "test_kubeslim: %d fails\n", fails);
		return 1;
	}
	printf("test_kubeslim: ok\n");
	return 0;
}
