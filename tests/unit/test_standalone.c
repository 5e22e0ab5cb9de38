/*
 * Standalone mode (controller/controller.h, controller/manifests.h): files in a
 * scratch directory, check exit codes, reload on change, last good table kept.
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/table.h"
#include "controller/controller.h"
#include "controller/manifests.h"
#include "controller/store.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "check.h"

static char dir[256];

static void put(const char *rel, const char *content)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s.tmp~", path);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		perror(tmp);
		exit(2);
	}
	fputs(content, f);
	fclose(f);
	rename(tmp, path);   /* atomic, as editors and kubectl cp do */
}

static const char *gw =
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pylon}\n"
	"spec: {controllerName: pylon.dev/gateway-controller}\n---\n"
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
	"spec: {gatewayClassName: pylon, addresses: [{value: 127.0.0.1}],\n"
	"       listeners: [{name: http, port: 18080, protocol: HTTP}]}\n";

static const char *route_ok =
	"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
	"spec: {parentRefs: [{name: gw}], rules: [{matches: [{path: {value: /a}}]}]}\n";

static const char *route_two =
	"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
	"spec: {parentRefs: [{name: gw}], rules: [{matches: [{path: {value: /a}}]}, {matches: [{path: {value: /b}}]}]}\n";

static const char *route_bad_ref =
	"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad}\n"
	"spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: nope, port: 80}]}]}\n";

static int check_rc(const char *path)
{
	struct pl_ctl_config cfg = { .manifests = path };
	FILE *f = fopen("/dev/null", "w");
	int rc = pl_ctl_check(&cfg, f);
	fclose(f);
	return rc;
}

static uint32_t entries(void)
{
	struct pl_table *t = pl_table_acquire();
	uint32_t n = 0;
	if (t && t->n_binds == 1 && t->binds[0].n_listeners == 1 && t->binds[0].listeners[0].n_vhosts == 1)
		n = t->binds[0].listeners[0].vhosts[0].n_entries;
	pl_table_unref(t);
	return n;
}

static int wait_generation(uint64_t g, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (pl_table_generation() >= g)
			return 1;
		usleep(10000);
	}
	return 0;
}

int main(void)
{
	pl_log_set_level(PL_LOG_ERROR);
	snprintf(dir, sizeof(dir), "%s/pylon-ctl-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	char sub[300];
	snprintf(sub, sizeof(sub), "%s/routes", dir);
	mkdir(sub, 0700);
	snprintf(sub, sizeof(sub), "%s/..data", dir);
	mkdir(sub, 0700);

	/* files: nested directory, hidden entries and other extensions skipped */
	put("00-gateway.yaml", gw);
	put("routes/r.yml", route_ok);
	put("..data/dup.yaml", route_two);
	put(".hidden.yaml", "this: [is not: valid");
	put("notes.txt", "not yaml: [");

	struct pl_store *s = pl_store_new();
	char err[512];
	CHECK(pl_manifests_load(dir, s, err, sizeof(err)) == 2);
	CHECK(pl_store_count(s) == 3);
	pl_store_free(s);

	CHECK(check_rc(dir) == 0);
	char missing[300];
	snprintf(missing, sizeof(missing), "%s/nope", dir);
	CHECK(check_rc(missing) == 2);

	uint64_t sig0, sig1, sig2;
	CHECK(pl_manifests_signature(dir, &sig0, err, sizeof(err)) == 0);
	CHECK(pl_manifests_signature(dir, &sig1, err, sizeof(err)) == 0 && sig0 == sig1);

	/* start: generation 1 */
	struct pl_ctl_config cfg = { .manifests = dir, .poll_ms = 20 };
	CHECK(!pl_ctl_ready());
	CHECK(pl_ctl_start(&cfg) == 0);
	CHECK(pl_ctl_ready());
	CHECK(pl_table_generation() == 1);
	CHECK(entries() == 1);

	/* a change is picked up */
	put("routes/r.yml", route_two);
	CHECK(pl_manifests_signature(dir, &sig2, err, sizeof(err)) == 0 && sig2 != sig0);
	CHECK(wait_generation(2, 3000));
	CHECK(entries() == 2);

	/* a broken file keeps the last good table */
	put("routes/broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: [\n");
	usleep(300000);
	CHECK(pl_table_generation() == 2);
	CHECK(entries() == 2);
	CHECK(check_rc(dir) == 2);

	/* fixed: compiles again; an unresolved ref is a problem for check, not for run */
	put("routes/broken.yaml", route_bad_ref);
	CHECK(wait_generation(3, 3000));
	CHECK(entries() == 3);
	CHECK(check_rc(dir) == 1);

	/* a removed file is a change too */
	char p[400];
	snprintf(p, sizeof(p), "%s/routes/broken.yaml", dir);
	unlink(p);
	CHECK(wait_generation(4, 3000));
	CHECK(entries() == 2);
	pl_ctl_stop();

	/* clean up */
	snprintf(p, sizeof(p), "%s/routes/r.yml", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/..data/dup.yaml", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/00-gateway.yaml", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/.hidden.yaml", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/notes.txt", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/routes", dir);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/..data", dir);
	rmdir(p);
	rmdir(dir);

	if (fails)
		fprintf(stderr, "test_standalone: %d check(s) failed\n", fails);
	else
		printf("test_standalone: ok\n");
	return fails != 0;
}
