/*
 * BackendTLSPolicy in the compiler (controller/compile.c): which policy a
 * Service port gets (sectionName beats the whole Service, oldest beats newer),
 * the TLS material put in the table (pl_cluster.tls), fail-closed markers for
 * unusable policies, and the policy statuses (ancestors, Accepted, ResolvedRefs).
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/table.h"
#include "controller/compile.h"
#include "controller/store.h"
#include "check.h"

#define BASE \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pylon}\n" \
	"spec: {controllerName: pylon.dev/gateway-controller}\n---\n" \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: default}\n" \
	"spec:\n  gatewayClassName: pylon\n  listeners:\n  - {name: http, port: 80, protocol: HTTP}\n---\n" \
	"apiVersion: v1\nkind: Service\nmetadata: {name: svc, namespace: default}\n" \
	"spec: {ports: [{name: http, port: 80}, {name: other, port: 81}]}\n---\n" \
	"apiVersion: v1\nkind: Service\nmetadata: {name: plain, namespace: default}\nspec: {ports: [{name: http, port: 80}]}\n---\n" \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: default}\n" \
	"spec:\n  parentRefs: [{name: gw}]\n  rules:\n" \
	"  - matches: [{path: {type: PathPrefix, value: /a}}]\n    backendRefs: [{name: svc, port: 80}]\n" \
	"  - matches: [{path: {type: PathPrefix, value: /b}}]\n    backendRefs: [{name: svc, port: 81}]\n" \
	"  - matches: [{path: {type: PathPrefix, value: /c}}]\n    backendRefs: [{name: plain, port: 80}]\n---\n" \
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ca, namespace: default}\ndata:\n  ca.crt: |\n" \
"    -----BEGIN CERTIFICATE-----\n" \
"    MIIBejCCAR+gAwIBAgIUFsal0pSmtFHlfAgHKhdJI1+fzZ0wCgYIKoZIzj0EAwIw\n" \
"    EjEQMA4GA1UEAwwHdW5pdC1jYTAeFw0yNjExMjIwMTE1MTFaFw0zNjExMTkwMTE1\n" \
"    MTFaMBIxEDAOBgNVBAMMB3VuaXQtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n" \
"    AAT/SSq6MmOSQVQB1zk7N1B2QZqzdDKS8EQYnO5B0J0DT+ubaMrt13RIkqaEuzU9\n" \
"    RlSl9hVpnEbVm7c0+RDEiiOQo1MwUTAdBgNVHQ4EFgQUm32lfUrxCqk3nFpO0cvT\n" \
"    W8z11IcwHwYDVR0jBBgwFoAUm32lfUrxCqk3nFpO0cvTW8z11IcwDwYDVR0TAQH/\n" \
"    BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAgVu/eRgjWtUG8QZ7T0SzvLkjiUN7\n" \
"    AAMusYMeweQCXd0CIQDogYMuJIu3PvMDKSIv+DHvuFwns6NE0iSDESR4pS62Mg==\n" \
"    -----END CERTIFICATE-----\n" \
	"---\n" \
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: junk, namespace: default}\ndata: {ca.crt: nope}\n---\n"

#define POLICY(name, created, target, validation) \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\n" \
	"metadata: {name: " name ", namespace: default, creationTimestamp: \"" created "\"}\n" \
	"spec:\n  targetRefs: [" target "]\n  validation: " validation "\n---\n"

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

static const struct pl_cluster *cluster(const struct pl_compile_result *r, const char *name)
{
	for (uint32_t i = 0; r->table && i < r->table->n_clusters; i++)
		if (!strcmp(r->table->clusters[i]->name, name))
			return r->table->clusters[i];
	return NULL;
}

/* The conditions of policy name's first ancestor (NULL: no status). */
static json_t *pconds(struct pl_compile_result *r, const char *name, const char **gw)
{
	size_t i;
	json_t *o;
	json_array_foreach(r->statuses, i, o) {
		if (strcmp(json_string_value(json_object_get(o, "kind")), "BackendTLSPolicy") != 0 ||
		    strcmp(json_string_value(json_object_get(json_object_get(o, "metadata"), "name")), name) != 0)
			continue;
		json_t *a = json_array_get(json_object_get(json_object_get(o, "status"), "ancestors"), 0);
		if (gw)
			*gw = json_string_value(json_object_get(json_object_get(a, "ancestorRef"), "name"));
		return json_object_get(a, "conditions");
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
			       !strcmp(json_string_value(json_object_get(c, "reason")), reason);
	return 0;
}

#define T_SVC "{group: \"\", kind: Service, name: svc}"
#define T_HTTP "{group: \"\", kind: Service, name: svc, sectionName: http}"
#define V_CA(host) "{hostname: " host ", caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}]}"

static void test_selection(void)
{
	struct pl_compile_result r = run(BASE
		POLICY("whole", "2024-01-01T00:00:00Z", T_SVC, V_CA("whole.example.com"))
		POLICY("port", "2025-01-01T00:00:00Z", T_HTTP,
		       "{hostname: port.example.com, wellKnownCACertificates: System,"
		       " subjectAltNames: [{type: Hostname, hostname: Alt.Example.com}, {type: URI, uri: \"spiffe://td/x\"}]}"));
	const struct pl_cluster *a = cluster(&r, "default/svc:80"), *b = cluster(&r, "default/svc:81"),
				*c = cluster(&r, "default/plain:80");
	CHECK(a && b && c);
	if (a && b && c) {
		CHECK(a->tls && !strcmp(a->tls->policy, "default/port"));
		CHECK(a->tls && !strcmp(a->tls->sni, "port.example.com") && !a->tls->ca_pem && !a->tls->error);
		CHECK(a->tls && a->tls->n_sans == 2 && !strcmp(a->tls->sans[0], "alt.example.com") &&
		      !strcmp(a->tls->sans[1], "spiffe://td/x"));
		CHECK(b->tls && !strcmp(b->tls->policy, "default/whole") && !strcmp(b->tls->sni, "whole.example.com"));
		CHECK(b->tls && b->tls->ca_pem && strstr(b->tls->ca_pem, "BEGIN CERTIFICATE") && !b->tls->error);
		CHECK(a->tls && b->tls && a->tls->fingerprint != b->tls->fingerprint);
		CHECK(!c->tls);
	}
	const char *gw = NULL;
	json_t *pc = pconds(&r, "whole", &gw);
	CHECK(has(pc, "Accepted", "True", "Accepted") && has(pc, "ResolvedRefs", "True", "ResolvedRefs"));
	CHECK(gw && !strcmp(gw, "gw"));
	CHECK(has(pconds(&r, "port", NULL), "Accepted", "True", "Accepted"));
	pl_compile_result_clear(&r);
}

static void test_conflict(void)
{
	/* listed newest first: age decides, not order */
	struct pl_compile_result r = run(BASE
		POLICY("young", "2025-06-01T00:00:00Z", T_SVC, V_CA("young.example.com"))
		POLICY("elder", "2023-06-01T00:00:00Z", T_SVC, V_CA("elder.example.com")));
	const struct pl_cluster *a = cluster(&r, "default/svc:80");
	CHECK(a && a->tls && !strcmp(a->tls->policy, "default/elder"));
	CHECK(has(pconds(&r, "elder", NULL), "Accepted", "True", "Accepted"));
	CHECK(has(pconds(&r, "young", NULL), "Accepted", "False", "Conflicted"));
	pl_compile_result_clear(&r);
}

static void test_invalid(void)
{
	struct pl_compile_result r = run(BASE
		POLICY("bad", "2024-01-01T00:00:00Z", T_SVC,
		       "{hostname: svc.example.com, caCertificateRefs: [{group: \"\", kind: ConfigMap, name: junk},"
		       " {group: \"\", kind: ConfigMap, name: missing}]}"));
	const struct pl_cluster *a = cluster(&r, "default/svc:80");
	CHECK(a && a->tls && a->tls->error);   /* fails closed, never plaintext */
	json_t *pc = pconds(&r, "bad", NULL);
	CHECK(has(pc, "Accepted", "False", "NoValidCACertificate"));
	CHECK(has(pc, "ResolvedRefs", "False", "InvalidCACertificateRef"));
	CHECK(r.problems > 0);
	pl_compile_result_clear(&r);

	r = run(BASE POLICY("kind", "2024-01-01T00:00:00Z", T_SVC,
			    "{hostname: svc.example.com, caCertificateRefs: [{group: \"\", kind: Secret, name: ca},"
			    " {group: \"\", kind: ConfigMap, name: ca}]}"));
	pc = pconds(&r, "kind", NULL);
	CHECK(has(pc, "Accepted", "True", "Accepted"));   /* one valid ref remains */
	CHECK(has(pc, "ResolvedRefs", "False", "InvalidKind"));
	a = cluster(&r, "default/svc:80");
	CHECK(a && a->tls && !a->tls->error && a->tls->ca_pem);
	pl_compile_result_clear(&r);

	static const char *const bad_validations[] = {
		"{hostname: \"*.example.com\", wellKnownCACertificates: System}",
		"{hostname: \"10.0.0.1:443\", wellKnownCACertificates: System}",
		"{hostname: 10.0.0.1, wellKnownCACertificates: System}",
		"{wellKnownCACertificates: System}",
		"{hostname: a.example.com}",
		"{hostname: a.example.com, wellKnownCACertificates: Other}",
		"{hostname: a.example.com, wellKnownCACertificates: System, caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}]}",
		"{hostname: a.example.com, wellKnownCACertificates: System, subjectAltNames: [{type: URI, uri: nocolon}]}",
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(bad_validations); i++) {
		char y[8192];
		snprintf(y, sizeof(y), "%s%s%s%s", BASE,
			 "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\n"
			 "metadata: {name: v, namespace: default}\nspec:\n  targetRefs: [" T_SVC "]\n  validation: ",
			 bad_validations[i], "\n");
		r = run(y);
		a = cluster(&r, "default/svc:80");
		CHECK(a && a->tls && a->tls->error);
		if (!has(pconds(&r, "v", NULL), "Accepted", "False", "Invalid"))
			fprintf(stderr, "validation %zu: not Invalid\n", i), fails++;
		pl_compile_result_clear(&r);
	}
}

static void test_no_route_no_status(void)
{
	struct pl_compile_result r = run(BASE
		POLICY("lonely", "2024-01-01T00:00:00Z", "{group: \"\", kind: Service, name: nosuch}",
		       V_CA("x.example.com")));
	CHECK(pconds(&r, "lonely", NULL) == NULL);
	pl_compile_result_clear(&r);
}

int main(void)
{
	pl_log_set_level(PL_LOG_ERROR);
	test_selection();
	test_conflict();
	test_invalid();
	test_no_route_no_status();
	if (fails) {
		fprintf(stderr, "%d check(s) failed\n", fails);
		return 1;
	}
	printf("ok\n");
	return 0;
}
