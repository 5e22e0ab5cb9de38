/*
 * TLS listener modes in the compiler (controller/compile.c): a TLS listener in
 * mode Terminate is Accepted with TLSRoute as its supported kind and goes into
 * the table as a TERMINATE listener (TLSRouteModeTerminate is supported, so the
 * conformance test TLSRouteListenerTerminateNotSupported does not apply; the
 * listener must look like TLSRouteListenerTerminateSupportedKinds expects);
 * mixed ports: HTTPS and TLS (Terminate or Passthrough) listeners may share a
 * port (the bind becomes TLS so the proxy peeks the SNI), HTTP and TLS may not.
 * The certificate is made at run time so nothing expires.
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/table.h"
#include "controller/compile.h"
#include "controller/store.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include "check.h"

/* A self-signed P-256 certificate and its key as PEM; 0 or -1. */
static int make_cert(char *crt, size_t crtsz, char *key, size_t keysz)
{
	int ok = -1;
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	BIO *bc = BIO_new(BIO_s_mem()), *bk = BIO_new(BIO_s_mem());
	if (!k || !x || !bc || !bk)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"terminate.example.com", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	if (X509_set_pubkey(x, k) != 1 || X509_sign(x, k, EVP_sha256()) <= 0)
		goto out;
	if (PEM_write_bio_X509(bc, x) != 1 || PEM_write_bio_PrivateKey(bk, k, NULL, NULL, 0, NULL, NULL) != 1)
		goto out;
	char *p;
	long n = BIO_get_mem_data(bc, &p);
	if (n <= 0 || (size_t)n >= crtsz)
		goto out;
	memcpy(crt, p, (size_t)n);
	crt[n] = '\0';
	n = BIO_get_mem_data(bk, &p);
	if (n <= 0 || (size_t)n >= keysz)
		goto out;
	memcpy(key, p, (size_t)n);
	key[n] = '\0';
	ok = 0;
out:
	BIO_free(bc);
	BIO_free(bk);
	X509_free(x);
	EVP_PKEY_free(k);
	return ok;
}

static char yaml_secret[8192];

static struct pl_compile_result run(const char *gateway)
{
	char err[512];
	char *y = malloc(strlen(gateway) + strlen(yaml_secret) + 512);
	if (!y) {
		fails++;
		exit(1);
	}
	snprintf(y, strlen(gateway) + strlen(yaml_secret) + 512, "%s%s%s",
		 "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pylon}\n"
		 "spec: {controllerName: pylon.dev/gateway-controller}\n---\n",
		 yaml_secret, gateway);
	struct pl_store *s = pl_store_new();
	if (pl_store_load_yaml(s, y, strlen(y), "test.yaml", err, sizeof(err)) < 0) {
		fprintf(stderr, "load: %s\n", err);
		fails++;
	}
	free(y);
	struct pl_compile_opts o = { .now = "2024-01-01T00:00:00Z", .ephemeral = 1 };
	struct pl_compile_result r;
	pl_compile(s, &o, &r);
	pl_store_free(s);
	return r;
}

static json_t *listener_status(struct pl_compile_result *r, const char *gw, const char *lname)
{
	size_t i, j;
	json_t *o, *l;
	json_array_foreach(r->statuses, i, o) {
		json_t *md = json_object_get(o, "metadata");
		if (strcmp(json_string_value(json_object_get(o, "kind")), "Gateway") != 0 ||
		    strcmp(json_string_value(json_object_get(md, "name")), gw) != 0)
			continue;
		json_array_foreach(json_object_get(json_object_get(o, "status"), "listeners"), j, l)
			if (strcmp(json_string_value(json_object_get(l, "name")), lname) == 0)
				return l;
	}
	return NULL;
}

static int has_cond(json_t *l, const char *type, const char *status, const char *reason)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(l, "conditions"), i, c) {
		if (strcmp(json_string_value(json_object_get(c, "type")), type) != 0)
			continue;
		if (!strcmp(json_string_value(json_object_get(c, "status")), status) &&
		    !strcmp(json_string_value(json_object_get(c, "reason")), reason))
			return 1;
		fprintf(stderr, "  %s is %s/%s (%s), wanted %s/%s\n", type,
			json_string_value(json_object_get(c, "status")), json_string_value(json_object_get(c, "reason")),
			json_string_value(json_object_get(c, "message")), status, reason);
		return 0;
	}
	fprintf(stderr, "  no condition %s\n", type);
	return 0;
}

static int kinds_are_tlsroute(json_t *l)
{
	json_t *k = json_object_get(l, "supportedKinds");
	return json_array_size(k) == 1 &&
	       !strcmp(json_string_value(json_object_get(json_array_get(k, 0), "kind")) ?: "", "TLSRoute") &&
	       !strcmp(json_string_value(json_object_get(json_array_get(k, 0), "group")) ?: "",
		       "gateway.networking.k8s.io");
}

#define GW(listeners) \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n" \
	"metadata: {name: gw, namespace: gateway-conformance-infra}\n" \
	"spec:\n  gatewayClassName: pylon\n  listeners:\n" listeners "---\n"

#define TERM(name, port, host) \
	"  - name: " name "\n    port: " port "\n    protocol: TLS\n    hostname: " host "\n" \
	"    allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TLSRoute}]}\n" \
	"    tls: {mode: Terminate, certificateRefs: [{name: tls-terminate-checks-certificate}]}\n"

#define PASS(name, port, host) \
	"  - name: " name "\n    port: " port "\n    protocol: TLS\n    hostname: " host "\n" \
	"    allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TLSRoute}]}\n" \
	"    tls: {mode: Passthrough}\n"

/* conformance tlsroute-listener-terminate-{not-,}supported*.yaml */
static void test_terminate_listener(void)
{
	struct pl_compile_result r = run(GW(TERM("tls-terminate", "8443", "terminate.example.com")));
	json_t *l = listener_status(&r, "gw", "tls-terminate");
	CHECK(l);
	CHECK(has_cond(l, "Accepted", "True", "Accepted"));
	CHECK(has_cond(l, "ResolvedRefs", "True", "ResolvedRefs"));
	CHECK(has_cond(l, "Programmed", "True", "Programmed"));
	CHECK(kinds_are_tlsroute(l));
	CHECK(json_integer_value(json_object_get(l, "attachedRoutes")) == 0);
	CHECK(r.table && r.table->n_binds == 1);
	if (r.table && r.table->n_binds == 1) {
		const struct pl_bind *b = &r.table->binds[0];
		CHECK(b->proto == PL_PROTO_TLS && b->n_listeners == 1);
		CHECK(b->listeners[0].tls && b->listeners[0].tls->mode == PL_TLS_TERMINATE &&
		      b->listeners[0].tls->n_certs == 1);
	}
	pl_compile_result_clear(&r);

	/* a missing certificate: ResolvedRefs=False, not programmed, still Accepted */
	r = run(GW("  - name: t\n    port: 8443\n    protocol: TLS\n"
		   "    tls: {mode: Terminate, certificateRefs: [{name: nope}]}\n"));
	l = listener_status(&r, "gw", "t");
	CHECK(has_cond(l, "ResolvedRefs", "False", "InvalidCertificateRef"));
	CHECK(has_cond(l, "Programmed", "False", "Invalid"));
	pl_compile_result_clear(&r);
}

/* conformance tlsroute-mixed-termination-same-namespace.yaml, plus HTTPS on the same port */
static void test_mixed_port(void)
{
	struct pl_compile_result r = run(GW(TERM("tls-terminate", "8883", "tls.example.com")
					    PASS("tls-passthrough", "8883", "abc.example.com")
					    "  - name: https\n    port: 8883\n    protocol: HTTPS\n    hostname: '*.example.com'\n"
					    "    tls: {certificateRefs: [{name: tls-terminate-checks-certificate}]}\n"));
	const char *names[] = { "tls-terminate", "tls-passthrough", "https" };
	for (size_t i = 0; i < 3; i++) {
		json_t *l = listener_status(&r, "gw", names[i]);
		CHECK(has_cond(l, "Accepted", "True", "Accepted"));
		CHECK(has_cond(l, "Conflicted", "False", "NoConflicts"));
		CHECK(has_cond(l, "Programmed", "True", "Programmed"));
	}
	CHECK(kinds_are_tlsroute(listener_status(&r, "gw", "tls-passthrough")));
	CHECK(r.table && r.table->n_binds == 1 && r.table->binds[0].proto == PL_PROTO_TLS &&
	      r.table->binds[0].n_listeners == 3);
	pl_compile_result_clear(&r);

	/* HTTP and TLS cannot share a port; neither can two TLS listeners with one hostname */
	r = run(GW("  - {name: http, port: 9000, protocol: HTTP}\n" PASS("pt", "9000", "x.example.com")
		   PASS("pt2", "9001", "x.example.com") TERM("term2", "9001", "x.example.com")));
	CHECK(has_cond(listener_status(&r, "gw", "http"), "Conflicted", "True", "ProtocolConflict"));
	CHECK(has_cond(listener_status(&r, "gw", "pt"), "Conflicted", "True", "ProtocolConflict"));
	CHECK(has_cond(listener_status(&r, "gw", "pt2"), "Conflicted", "True", "HostnameConflict"));
	CHECK(has_cond(listener_status(&r, "gw", "term2"), "Conflicted", "True", "HostnameConflict"));
	pl_compile_result_clear(&r);
}

int main(void)
{
	pl_log_set_level(PL_LOG_ERROR);
	static char crt[4096], key[2048];
	if (make_cert(crt, sizeof(crt), key, sizeof(key)) != 0) {
		fprintf(stderr, "test_tlsmodes: cannot make a certificate\n");
		return 1;
	}
	/* stringData with YAML block scalars: the PEM text as is */
	size_t off = (size_t)snprintf(yaml_secret, sizeof(yaml_secret),
				      "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\n"
				      "metadata: {name: tls-terminate-checks-certificate, namespace: gateway-conformance-infra}\n"
				      "stringData:\n  tls.crt: |\n");
	for (int pass = 0; pass < 2; pass++) {
		const char *p = pass ? key : crt;
		if (pass)
			off += (size_t)snprintf(yaml_secret + off, sizeof(yaml_secret) - off, "  tls.key: |\n");
		while (*p && off < sizeof(yaml_secret) - 8) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);
			off += (size_t)snprintf(yaml_secret + off, sizeof(yaml_secret) - off, "    %.*s\n", (int)n, p);
			p += n + (nl != NULL);
		}
	}
	snprintf(yaml_secret + off, sizeof(yaml_secret) - off, "---\n");
	test_terminate_listener();
	test_mixed_port();
	if (fails)
		fprintf(stderr, "test_tlsmodes: %d check(s) failed\n", fails);
	else
		printf("test_tlsmodes: ok\n");
	return fails != 0;
}
