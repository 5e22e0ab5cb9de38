/*
 * libFuzzer target: manifest bytes -> YAML loader -> object store ->
 * compiler -> status printer. Must never crash, hang or leak, whatever the
 * bytes. A fixed base (a GatewayClass, a Gateway, a Service with endpoints)
 * is loaded first so short inputs reach the route compiler.
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/table.h"
#include "common/tabledump.h"
#include "controller/compile.h"
#include "controller/status.h"
#include "controller/store.h"

static const char base[] =
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pylon}\n"
	"spec: {controllerName: pylon.dev/gateway-controller}\n---\n"
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
	"spec: {gatewayClassName: pylon, listeners: [{name: http, port: 80, protocol: HTTP,\n"
	"       allowedRoutes: {namespaces: {from: All}}}]}\n---\n"
	"apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec: {ports: [{name: http, port: 80}]}\n---\n"
	"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	"metadata: {name: svc-1, labels: {kubernetes.io/service-name: svc}}\n"
	"addressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints: [{addresses: [127.0.0.1]}]\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	if (!init) {
		pl_log_set_level(PL_LOG_ERROR);
		init = 1;
	}
	char err[512];
	struct pl_store *s = pl_store_new();
	if (!s)
		return 0;
	if (pl_store_load_yaml(s, base, sizeof(base) - 1, "base", err, sizeof(err)) < 0)
		abort();
	/* objects read before an error stay in the store: compile them too */
	(void)pl_store_load_yaml(s, (const char *)data, size, "fuzz", err, sizeof(err));

	struct pl_compile_opts o = { .now = "2024-01-01T00:00:00Z", .ephemeral = 1 };
	struct pl_compile_result r;
	pl_compile(s, &o, &r);
	FILE *devnull = fopen("/dev/null", "w");
	if (devnull) {
		pl_status_print(devnull, r.statuses);
		fclose(devnull);
	}
	char *js = pl_table_json(r.table, NULL);
	PL_BUG_ON(!js);
	free(js);
	pl_compile_result_clear(&r);
	pl_store_free(s);
	return 0;
}
