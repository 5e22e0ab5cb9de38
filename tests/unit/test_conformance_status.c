/*
 * Status conditions the upstream Gateway API conformance suite checks and the
 * compiler (controller/compile.c) writes:
 *  - GatewayInvalidParametersRef: spec.infrastructure.parametersRef makes the
 *    Gateway Accepted=False InvalidParameters (pylon has no parameters kind);
 *  - Gateway{Invalid,FrontendInvalidDefault}ClientCertificateValidation: a
 *    listener with no usable client CA is Accepted=False NoValidCACertificate,
 *    ResolvedRefs=False with the precise reason, and not programmed;
 *  - BackendTLSPolicy*: a Service port with appProtocol HTTPS resolves when a
 *    BackendTLSPolicy covers it (even an unusable one, which fails closed), so
 *    the policy gets its ancestor status; without a policy it stays
 *    UnsupportedProtocol.
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/table.h"
#include "controller/compile.h"
#include "controller/store.h"
#include "check.h"

#define CLASS \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pylon}\n" \
	"spec: {controllerName: pylon.dev/gateway-controller}\n---\n"

/* self-signed EC certificate (CN=unit, SAN *), valid until 2036 */
#define CRT_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJnVENDQVNlZ0F3SUJBZ0lVVmVFOVhJMnlicXR3MTh3YVZianNEYWV0TVlZd0NnWUlLb1pJemowRUF3SXcKRHpFTk1Bc0dBMVVFQXd3RWRXNXBkREFlRncweU5qRXhNakl3TVRVNE16QmFGdzB6TmpFeE1Ua3dNVFU0TXpCYQpNQTh4RFRBTEJnTlZCQU1NQkhWdWFYUXdXVEFUQmdjcWhrak9QUUlCQmdncWhrak9QUU1CQndOQ0FBUVNSVTYyCklPN3ZNZGxKc1lCaXdrOEhsL0FBTldnWXdXNkM4RjU0dC9LZjFHcS9TQ1JGSU9BVnN4bSt2Q1lyMEptS2doaloKV3VVWmNDckp3WDZuVWI0d28yRXdYekFkQmdOVkhRNEVGZ1FVOVZzNE11RG8rbnN5M01BUEFXbG1MR3FudDZVdwpId1lEVlIwakJCZ3dGb0FVOVZzNE11RG8rbnN5M01BUEFXbG1MR3FudDZVd0R3WURWUjBUQVFIL0JBVXdBd0VCCi96QU1CZ05WSFJFRUJUQURnZ0VxTUFvR0NDcUdTTTQ5QkFNQ0EwZ0FNRVVDSVFELzVwU2lXOHdDdTZQU0pZbUYKeXAxa1Q3aExjVnRCOHhkRlFtV3FmbytMalFJZ1o1N3NDazlkcXI4czNYN3krRTdwYkFvRzZSTnN1elMvdXhJagpVblp1SXBRPQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg=="
#define KEY_B64 "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JR0hBZ0VBTUJNR0J5cUdTTTQ5QWdFR0NDcUdTTTQ5QXdFSEJHMHdhd0lCQVFRZ2FMZXJJVWxmVU1GSmxBc0kKdXlJMy8yTmhjdVMxZlJjbHdtdlBzMXVJb1IyaFJBTkNBQVFTUlU2MklPN3ZNZGxKc1lCaXdrOEhsL0FBTldnWQp3VzZDOEY1NHQvS2YxR3EvU0NSRklPQVZzeG0rdkNZcjBKbUtnaGpaV3VVWmNDckp3WDZuVWI0dwotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg=="
#define CA_PEM \
"    -----BEGIN CERTIFICATE-----\n" \
"    MIIBgTCCASegAwIBAgIUVeE9XI2ybqtw18waVbjsDaetMYYwCgYIKoZIzj0EAwIw\n" \
"    DzENMAsGA1UEAwwEdW5pdDAeFw0yNjExMjIwMTU4MzBaFw0zNjExMTkwMTU4MzBa\n" \
"    MA8xDTALBgNVBAMMBHVuaXQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQSRU62\n" \
"    IO7vMdlJsYBiwk8Hl/AANWgYwW6C8F54t/Kf1Gq/SCRFIOAVsxm+vCYr0JmKghjZ\n" \
"    WuUZcCrJwX6nUb4wo2EwXzAdBgNVHQ4EFgQU9Vs4MuDo+nsy3MAPAWlmLGqnt6Uw\n" \
"    HwYDVR0jBBgwFoAU9Vs4MuDo+nsy3MAPAWlmLGqnt6UwDwYDVR0TAQH/BAUwAwEB\n" \
"    /zAMBgNVHREEBTADggEqMAoGCCqGSM49BAMCA0gAMEUCIQD/5pSiW8wCu6PSJYmF\n" \
"    yp1kT7hLcVtB8xdFQmWqfo+LjQIgZ57sCk9dqr8s3X7y+E7pbAoG6RNsuzS/uxIj\n" \
"    UnZuIpQ=\n" \
"    -----END CERTIFICATE-----\n" \
	""

#define TLS_SECRET(ns, name) \
	"apiVersion: v1\nkind: Secret\nmetadata: {name: " name ", namespace: " ns "}\ntype: kubernetes.io/tls\n" \
	"data: {tls.crt: " CRT_B64 ", tls.key: " KEY_B64 "}\n---\n"

#define CA_CM(ns, name) \
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " name ", namespace: " ns "}\ndata:\n  ca.crt: |\n" CA_PEM "---\n"

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
		if (!strcmp(json_string_value(json_object_get(o, "kind")), kind) &&
		    !strcmp(json_string_value(json_object_get(json_object_get(o, "metadata"), "name")), name))
			return json_object_get(o, "status");
	}
	return NULL;
}

/* conditions of the status list entry (listeners / parents / ancestors) at index i, or by name */
static json_t *entry_conds(json_t *st, const char *list, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(st, list), i, e) {
		if (!name || !strcmp(json_string_value(json_object_get(e, "name")), name))
			return json_object_get(e, "conditions");
	}
	return NULL;
}

static int has(json_t *conds, const char *type, const char *status, const char *reason)
{
	size_t i;
	json_t *c;
	json_array_foreach(conds, i, c)
		if (!strcmp(json_string_value(json_object_get(c, "type")), type))
			return !strcmp(json_string_value(json_object_get(c, "status")), status) &&
			       (!reason || !strcmp(json_string_value(json_object_get(c, "reason")), reason));
	return 0;
}

static void test_parameters_ref(void)
{
	struct pl_compile_result r = run(CLASS
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: bad, namespace: default}\n"
		"spec:\n  gatewayClassName: pylon\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n"
		"  infrastructure:\n    parametersRef: {group: invalid.io, kind: InvalidParameters, name: invalid}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: good, namespace: other}\n"
		"spec:\n  gatewayClassName: pylon\n  listeners: [{name: http, port: 8080, protocol: HTTP}]\n"
		"  infrastructure: {labels: {a: b}}\n");
	json_t *bad = status_of(&r, "Gateway", "bad"), *good = status_of(&r, "Gateway", "good");
	CHECK(has(json_object_get(bad, "conditions"), "Accepted", "False", "InvalidParameters"));
	CHECK(has(json_object_get(bad, "conditions"), "Programmed", "False", NULL));
	CHECK(has(json_object_get(good, "conditions"), "Accepted", "True", "Accepted"));
	CHECK(has(json_object_get(good, "conditions"), "Programmed", "True", NULL));
	pl_compile_result_clear(&r);
}

#define FE_REF(kind, ns, name) "[{group: \"\", kind: " kind ", namespace: " ns ", name: " name "}]"
#define HTTPS_L(name, port) \
	"  - name: " name "\n    port: " port "\n    protocol: HTTPS\n    hostname: " name ".example.org\n" \
	"    tls: {certificateRefs: [{kind: Secret, name: cert}]}\n"
#define PER_PORT(port, refs) "      - port: " port "\n        tls: {validation: {caCertificateRefs: " refs "}}\n"

static void test_frontend_validation(void)
{
	struct pl_compile_result r = run(CLASS TLS_SECRET("infra", "cert") CA_CM("infra", "ca") CA_CM("web", "webca")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
		"spec:\n  gatewayClassName: pylon\n  listeners:\n"
		"  - {name: http, port: 80, protocol: HTTP}\n"
		HTTPS_L("https", "443") HTTPS_L("unresolved", "8443") HTTPS_L("kind", "9443") HTTPS_L("grant", "10443")
		"  tls:\n    frontend:\n      default:\n        validation: {caCertificateRefs: " FE_REF("ConfigMap", "infra", "ca") "}\n"
		"      perPort:\n"
		PER_PORT("8443", FE_REF("ConfigMap", "infra", "nosuch"))
		PER_PORT("9443", FE_REF("Service", "infra", "ca"))
		PER_PORT("10443", FE_REF("ConfigMap", "web", "webca")));
	json_t *st = status_of(&r, "Gateway", "gw");
	CHECK(st != NULL);
	json_t *c = entry_conds(st, "listeners", "https");
	CHECK(has(c, "Accepted", "True", NULL) && has(c, "ResolvedRefs", "True", NULL) && has(c, "Programmed", "True", NULL));
	c = entry_conds(st, "listeners", "http");
	CHECK(has(c, "Accepted", "True", NULL) && has(c, "Programmed", "True", NULL));
	static const char *const bad[][2] = {
		{ "unresolved", "InvalidCACertificateRef" },
		{ "kind", "InvalidCACertificateKind" },
		{ "grant", "RefNotPermitted" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = entry_conds(st, "listeners", bad[i][0]);
		CHECK(has(c, "Accepted", "False", "NoValidCACertificate"));
		CHECK(has(c, "ResolvedRefs", "False", bad[i][1]));
		CHECK(has(c, "Programmed", "False", NULL));
	}
	/* the Gateway itself stays accepted: some listeners are fine */
	CHECK(has(json_object_get(st, "conditions"), "Accepted", "True", NULL));
	/* strict validation: no insecure-mode warning on the Gateway */
	CHECK(!has(json_object_get(st, "conditions"), "InsecureFrontendValidationMode", "True", NULL));
	pl_compile_result_clear(&r);

	/* AllowInsecureFallback: the Gateway says so (GatewayFrontendClientCertificateValidationInsecureFallback) */
	r = run(CLASS TLS_SECRET("infra", "cert") CA_CM("infra", "ca")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
		"spec:\n  gatewayClassName: pylon\n  listeners:\n" HTTPS_L("https", "443")
		"  tls:\n    frontend:\n      default:\n        validation: {mode: AllowInsecureFallback, caCertificateRefs: "
		FE_REF("ConfigMap", "infra", "ca") "}\n");
	st = status_of(&r, "Gateway", "gw");
	CHECK(has(json_object_get(st, "conditions"), "InsecureFrontendValidationMode", "True", "ConfigurationChanged"));
	CHECK(has(entry_conds(st, "listeners", "https"), "Accepted", "True", NULL));
	pl_compile_result_clear(&r);

	/* an invalid default hits the HTTPS listener only */
	r = run(CLASS TLS_SECRET("infra", "cert")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
		"spec:\n  gatewayClassName: pylon\n  listeners:\n"
		"  - {name: http, port: 80, protocol: HTTP}\n" HTTPS_L("https", "443")
		"  tls:\n    frontend:\n      default:\n        validation: {caCertificateRefs: "
		FE_REF("ConfigMap", "infra", "does-not-exist") "}\n");
	st = status_of(&r, "Gateway", "gw");
	c = entry_conds(st, "listeners", "https");
	CHECK(has(c, "Accepted", "False", "NoValidCACertificate") && has(c, "ResolvedRefs", "False", "InvalidCACertificateRef"));
	c = entry_conds(st, "listeners", "http");
	CHECK(has(c, "Accepted", "True", NULL) && has(c, "ResolvedRefs", "True", NULL) && has(c, "Programmed", "True", NULL));
	pl_compile_result_clear(&r);
}

#define HTTPS_SVC(name) \
	"apiVersion: v1\nkind: Service\nmetadata: {name: " name ", namespace: default}\n" \
	"spec: {ports: [{name: btls, protocol: TCP, appProtocol: HTTPS, port: 443, targetPort: 8443}]}\n---\n"
#define BTLS(name, svc, refs) \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: " name ", namespace: default}\n" \
	"spec:\n  targetRefs: [{group: \"\", kind: Service, name: " svc ", sectionName: btls}]\n" \
	"  validation: {hostname: abc.example.com, caCertificateRefs: " refs "}\n---\n"

static const struct pl_cluster *cluster(const struct pl_compile_result *r, const char *name)
{
	for (uint32_t i = 0; r->table && i < r->table->n_clusters; i++)
		if (!strcmp(r->table->clusters[i]->name, name))
			return r->table->clusters[i];
	return NULL;
}

static void test_https_app_protocol(void)
{
	struct pl_compile_result r = run(CLASS CA_CM("default", "ca")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: default}\n"
		"spec:\n  gatewayClassName: pylon\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n---\n"
		HTTPS_SVC("good") HTTPS_SVC("badkind") HTTPS_SVC("none")
		BTLS("p-good", "good", "[{group: \"\", kind: ConfigMap, name: ca}]")
		BTLS("p-badkind", "badkind", "[{group: \"\", kind: Secret, name: ca}]")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: ok, namespace: default}\n"
		"spec:\n  parentRefs: [{name: gw}]\n  rules:\n"
		"  - matches: [{path: {type: Exact, value: /good}}]\n    backendRefs: [{name: good, port: 443}]\n"
		"  - matches: [{path: {type: Exact, value: /badkind}}]\n    backendRefs: [{name: badkind, port: 443}]\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: nopolicy, namespace: default}\n"
		"spec:\n  parentRefs: [{name: gw}]\n  rules:\n"
		"  - matches: [{path: {type: Exact, value: /none}}]\n    backendRefs: [{name: none, port: 443}]\n");
	CHECK(has(entry_conds(status_of(&r, "HTTPRoute", "ok"), "parents", NULL), "ResolvedRefs", "True", NULL));
	CHECK(has(entry_conds(status_of(&r, "HTTPRoute", "nopolicy"), "parents", NULL), "ResolvedRefs", "False",
		  "UnsupportedProtocol"));
	json_t *c = entry_conds(status_of(&r, "BackendTLSPolicy", "p-good"), "ancestors", NULL);
	CHECK(has(c, "Accepted", "True", NULL) && has(c, "ResolvedRefs", "True", NULL));
	c = entry_conds(status_of(&r, "BackendTLSPolicy", "p-badkind"), "ancestors", NULL);
	CHECK(has(c, "Accepted", "False", "NoValidCACertificate") && has(c, "ResolvedRefs", "False", "InvalidKind"));
	const struct pl_cluster *cl = cluster(&r, "default/good:443");
	CHECK(cl && cl->tls && !cl->tls->error && cl->tls->ca_pem);
	cl = cluster(&r, "default/badkind:443");
	CHECK(cl && cl->tls && cl->tls->error);   /* fails closed, never plaintext */
	CHECK(cluster(&r, "default/none:443") == NULL);
	pl_compile_result_clear(&r);
}

int main(void)
{
	pl_log_set_level(PL_LOG_ERROR);
	test_parameters_ref();
	test_frontend_validation();
	test_https_app_protocol();
	if (fails) {
		fprintf(stderr, "%d check(s) failed\n", fails);
		return 1;
	}
	printf("ok\n");
	return 0;
}
