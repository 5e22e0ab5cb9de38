/*
 * Compile benchmark: builds a store with N HTTPRoutes (each with its own
 * Service and EndpointSlice, a hostname, a few matches and a filter) behind
 * one Gateway, and times pl_compile() in production mode (not ephemeral:
 * stats and cluster-id registries in use, as in the controller).
 *
 * Not a test (CMake does not glob bench/). Build against an existing build
 * directory, e.g.
 *   B=/tmp/build; cmake --build $B --target pylon
 *   cc -O2 -g -std=gnu11 -I. -Icommon -Icontroller bench/compile_bench.c \
 *      $B/libpylon_controller.a $B/libpylon_common.a \
 *      $(pkg-config --libs openssl jansson yaml-0.1) -lpthread -lm -o $B/compile_bench
 * Usage: compile_bench [-r REPS] [-e EPS] [-d FILE] [-n] [N ...] (default 1000
 * 3000 5000 routes, 5 reps, 3 endpoints per Service). -d writes the last
 * table's JSON (pl_table_json) and statuses to FILE (to check that a faster
 * compiler still produces the same bytes).
 * Prints, per N: best and median full compile time (pl_compile), µs per
 * route, entries, and the process peak RSS (VmHWM) after those compiles;
 * then, unless -n, the incremental case (a persistent pl_compiler, 50 runs
 * after each of: adding a route, modifying one, changing one EndpointSlice,
 * deleting a route): p50/p99 per compile, and with the previous table freed;
 * last, the heap the compiler's cache holds between compiles (glibc's
 * mallinfo2(), tables and results freed).
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/table.h"
#include "common/tabledump.h"
#include "controller/compile.h"
#include "controller/store.h"

#include <malloc.h>
#include <time.h>

#define NS_COUNT 10

static int eps_per_slice = 3;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long peak_rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

/* Heap bytes in use (glibc), to tell what one structure holds: the difference of two calls. */
static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static void put(struct pl_store *s, json_t *o)
{
	char err[256];
	if (pl_store_put(s, o, "bench", err, sizeof(err)) < 0) {
		fprintf(stderr, "put: %s\n", err);
		exit(1);
	}
	json_decref(o);
}

/* Route i's EndpointSlice; gen varies the endpoint addresses (an endpoint change). */
static json_t *slice_obj(int i, int gen)
{
	char ns[32], svc[32], slice[48], ip[32];
	snprintf(ns, sizeof(ns), "team-%d", i % NS_COUNT);
	snprintf(svc, sizeof(svc), "svc-%d", i);
	snprintf(slice, sizeof(slice), "svc-%d-abcde", i);
	json_t *eps = json_array();
	for (int k = 0; k < eps_per_slice; k++) {
		snprintf(ip, sizeof(ip), "10.%d.%d.%d", i & 255, ((k >> 8) + gen) & 255, k & 255);
		json_array_append_new(eps, json_pack("{s:[s], s:{s:b}}", "addresses", ip, "conditions", "ready", 1));
	}
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:o, s:[{s:s, s:i, s:s}]}",
			 "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice",
			 "metadata", "name", slice, "namespace", ns, "labels", "kubernetes.io/service-name", svc,
			 "addressType", "IPv4", "endpoints", eps,
			 "ports", "name", "http", "port", 8080, "protocol", "TCP");
}

/* Route i (Service svc-i); gen varies its first path (a route change). */
static json_t *route_obj(int i, int gen)
{
	char ns[32], name[32], svc[32], host[64], path[64];
	snprintf(ns, sizeof(ns), "team-%d", i % NS_COUNT);
	snprintf(name, sizeof(name), "route-%d", i);
	snprintf(svc, sizeof(svc), "svc-%d", i);
	/* Every 4th route shares a hostname with its neighbours; a few are wildcards. */
	if (i % 10 == 9)
		snprintf(host, sizeof(host), "*.w%d.example.com", i / 10);
	else
		snprintf(host, sizeof(host), "app%d.example.com", i / 4);
	if (gen)
		snprintf(path, sizeof(path), "/api/v%d/r%d/g%d", i % 3, i, gen);
	else
		snprintf(path, sizeof(path), "/api/v%d/r%d", i % 3, i);
	return json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:[{s:s, s:s}], s:[s], s:["
			 "{s:[{s:{s:s, s:s}, s:[{s:s, s:s}]}, {s:{s:s, s:s}}],"
			 " s:[{s:s, s:{s:[{s:s, s:s}]}}],"
			 " s:[{s:s, s:i, s:i}]},"
			 "{s:[{s:s, s:i}]}]}}",
			 "apiVersion", "gateway.networking.k8s.io/v1", "kind", "HTTPRoute",
			 "metadata", "name", name, "namespace", ns,
			 "spec", "parentRefs", "name", "gw", "namespace", "default",
			 "hostnames", host,
			 "rules", "matches",
			 "path", "type", "PathPrefix", "value", path,
			 "headers", "name", "x-canary", "value", "yes",
			 "path", "type", "Exact", "value", "/healthz",
			 "filters", "type", "RequestHeaderModifier", "requestHeaderModifier", "set",
			 "name", "x-route", "value", name,
			 "backendRefs", "name", svc, "port", 80, "weight", 1,
			 "backendRefs", "name", svc, "port", 80);
}

/* Route i with its Service and EndpointSlice. */
static void put_route(struct pl_store *s, int i)
{
	char ns[32], svc[32];
	snprintf(ns, sizeof(ns), "team-%d", i % NS_COUNT);
	snprintf(svc, sizeof(svc), "svc-%d", i);
	put(s, json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:[{s:i, s:s, s:s}]}}",
			 "apiVersion", "v1", "kind", "Service", "metadata", "name", svc, "namespace", ns,
			 "spec", "ports", "port", 80, "name", "http", "protocol", "TCP"));
	put(s, slice_obj(i, 0));
	put(s, route_obj(i, 0));
}

static struct pl_store *build_store(int n)
{
	struct pl_store *s = pl_store_new();
	int i;

	if (!s)
		exit(1);
	put(s, json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "apiVersion", "gateway.networking.k8s.io/v1",
			 "kind", "GatewayClass", "metadata", "name", "pylon",
			 "spec", "controllerName", PL_DEFAULT_CONTROLLER_NAME));
	put(s, json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:[{s:s, s:i, s:s, s:{s:{s:s}}},"
			 " {s:s, s:i, s:s, s:s, s:{s:{s:s}}}]}}",
			 "apiVersion", "gateway.networking.k8s.io/v1", "kind", "Gateway",
			 "metadata", "name", "gw", "namespace", "default",
			 "spec", "gatewayClassName", "pylon", "listeners",
			 "name", "http", "port", 80, "protocol", "HTTP", "allowedRoutes", "namespaces", "from", "All",
			 "name", "wild", "port", 8080, "protocol", "HTTP", "hostname", "*.example.com",
			 "allowedRoutes", "namespaces", "from", "All"));
	for (i = 0; i < NS_COUNT; i++) {
		char ns[32];
		snprintf(ns, sizeof(ns), "team-%d", i);
		put(s, json_pack("{s:s, s:s, s:{s:s, s:{s:s}}}", "apiVersion", "v1", "kind", "Namespace",
				 "metadata", "name", ns, "labels", "kubernetes.io/metadata.name", ns));
	}
	for (i = 0; i < n; i++)
		put_route(s, i);
	return s;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* p-th percentile (0..100) of n sorted samples, nearest rank. */
static double pct_ms(const uint64_t *t, int n, int p)
{
	int k = (p * n + 99) / 100;
	return t[k > 0 ? k - 1 : 0] / 1e6;
}

enum scenario { SC_ADD, SC_MODIFY, SC_SLICE, SC_DELETE, SC_N };
static const char *const sc_names[] = { "add a route", "modify a route", "change an EndpointSlice",
					"delete a route" };

#define INC_RUNS 50

/*
 * The controller's case: a persistent compiler over a store of n routes,
 * then INC_RUNS changes of one object each, one compile after each. Times
 * the compile, and the compile plus dropping the previous table (what
 * pl_table_publish() does on the controller thread when no worker holds it).
 */
static void bench_incremental(int n)
{
	struct pl_store *s = build_store(n);
	char ns[32], svc[32], name[32];
	/* the added routes' Services exist already: a new route names an existing backend */
	for (int j = 0; j < INC_RUNS; j++) {
		snprintf(ns, sizeof(ns), "team-%d", (n + j) % NS_COUNT);
		snprintf(svc, sizeof(svc), "svc-%d", n + j);
		put(s, json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:[{s:i, s:s, s:s}]}}",
				 "apiVersion", "v1", "kind", "Service", "metadata", "name", svc, "namespace", ns,
				 "spec", "ports", "port", 80, "name", "http", "protocol", "TCP"));
		put(s, slice_obj(n + j, 0));
	}
	struct pl_compile_opts o = { .controller_name = NULL, .now = "2024-01-01T00:00:00Z" };
	struct pl_compiler *pc = pl_compiler_new(&o);
	struct pl_compile_result prev;
	uint64_t t0 = now_ns();
	pl_compiler_run(pc, s, &prev);
	printf("routes %5d: incremental compiler, first (full) run %.2f ms\n", n, (now_ns() - t0) / 1e6);
	for (int sc = 0; sc < SC_N; sc++) {
		uint64_t tc[INC_RUNS], tf[INC_RUNS];
		struct pl_compiler_stats st = { 0 };
		size_t compiled = 0, built = 0, full = 0;
		for (int j = 0; j < INC_RUNS; j++) {
			switch (sc) {
			case SC_ADD:
				put(s, route_obj(n + j, 0));
				break;
			case SC_MODIFY:
				put(s, route_obj(j * 37 % n, j + 1));
				break;
			case SC_SLICE:
				put(s, slice_obj(j * 53 % n, j + 1));
				break;
			case SC_DELETE:
				snprintf(ns, sizeof(ns), "team-%d", (n + j) % NS_COUNT);
				snprintf(name, sizeof(name), "route-%d", n + j);
				pl_store_delete(s, PL_K_HTTPROUTE, ns, name);
				break;
			}
			struct pl_compile_result r;
			uint64_t a = now_ns();
			pl_compiler_run(pc, s, &r);
			uint64_t b = now_ns();
			pl_compile_result_clear(&prev);
			uint64_t c = now_ns();
			prev = r;
			tc[j] = b - a;
			tf[j] = c - a;
			pl_compiler_get_stats(pc, &st);
			compiled += st.routes_compiled;
			built += st.clusters_built;
			full += (size_t)st.full;
		}
		qsort(tc, INC_RUNS, sizeof(tc[0]), cmp_u64);
		qsort(tf, INC_RUNS, sizeof(tf[0]), cmp_u64);
		printf("routes %5d: %-24s compile p50 %6.2f ms  p99 %6.2f ms | + free old table p50 %6.2f ms  p99 %6.2f ms"
		       " | per run: %.1f routes, %.1f endpoint lists rebuilt, %zu full\n",
		       n, sc_names[sc], pct_ms(tc, INC_RUNS, 50), pct_ms(tc, INC_RUNS, 99), pct_ms(tf, INC_RUNS, 50),
		       pct_ms(tf, INC_RUNS, 99), (double)compiled / INC_RUNS, (double)built / INC_RUNS, full);
	}
	printf("routes %5d: incremental compiler: peak RSS %ld kB\n", n, peak_rss_kb());
	pl_compile_result_clear(&prev);
	size_t held = heap_used();
	pl_compiler_free(pc);
	/* what a controller keeps between compiles besides the store and the table */
	printf("routes %5d: incremental compiler: cache heap %zu kB\n", n, (held - heap_used()) / 1024);
	pl_store_free(s);
}

int main(int argc, char **argv)
{
	int ns[16], nn = 0, reps = 5, i, inc = 1;
	const char *dump = NULL;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
			reps = (int)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "-e") == 0 && i + 1 < argc)
			eps_per_slice = (int)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
			dump = argv[++i];
		else if (strcmp(argv[i], "-n") == 0)
			inc = 0;
		else if (nn < 16)
			ns[nn++] = (int)strtol(argv[i], NULL, 10);
	}
	if (nn == 0) {
		ns[0] = 1000;
		ns[1] = 3000;
		ns[2] = 5000;
		nn = 3;
	}
	if (reps < 1 || reps > 100)
		reps = 5;
	pl_log_set_level(PL_LOG_WARN);
	for (i = 0; i < nn; i++) {
		struct pl_store *s = build_store(ns[i]);
		struct pl_compile_opts o = { .controller_name = NULL, .now = "2024-01-01T00:00:00Z" };
		uint64_t t[100];
		size_t entries = 0;
		unsigned problems = 0;

		for (int r = 0; r < reps; r++) {
			struct pl_compile_result res;
			uint64_t t0 = now_ns();
			pl_compile(s, &o, &res);
			t[r] = now_ns() - t0;
			problems = res.problems;
			entries = 0;
			for (size_t b = 0; b < res.table->n_binds; b++) {
				const struct pl_bind *bd = &res.table->binds[b];
				for (size_t l = 0; l < bd->n_listeners; l++)
					for (size_t v = 0; v < bd->listeners[l].n_vhosts; v++)
						entries += bd->listeners[l].vhosts[v].n_entries;
			}
			if (dump && r == reps - 1) {
				FILE *f = fopen(dump, i ? "a" : "w");
				if (!f) {
					perror(dump);
					exit(1);
				}
				char *js = pl_table_json(res.table, NULL);
				fputs(js, f);
				free(js);
				json_dumpf(res.statuses, f, JSON_INDENT(1));
				fputc('\n', f);
				fclose(f);
			}
			pl_compile_result_clear(&res);
		}
		qsort(t, (size_t)reps, sizeof(t[0]), cmp_u64);
		printf("routes %5d: best %8.2f ms  median %8.2f ms  %6.2f us/route  entries %zu  problems %u  peak RSS %ld kB\n",
		       ns[i], t[0] / 1e6, t[reps / 2] / 1e6, t[reps / 2] / 1e3 / ns[i], entries, problems,
		       peak_rss_kb());
		pl_store_free(s);
		if (inc)
			bench_incremental(ns[i]);
	}
	return 0;
}
