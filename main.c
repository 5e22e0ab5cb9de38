/*
 * pylon: command line entry. Glues the controller (which publishes tables)
 * to the proxy (which serves them); the two only meet in common/table.h.
 */
#include "common/pl.h"
#include "common/jalloc.h"
#include "common/log.h"
#include "common/stats.h"
#include "controller/controller.h"
#include "controller/kube.h"
#include "proxy/proxy.h"

#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>

static void usage(FILE *f)
{
	fputs("usage: pylon <command> [options]\n"
	      "\n"
	      "commands:\n"
	      "  run    --manifests PATH   serve Gateway API manifests from a file or directory\n"
	      "  run    --kubeconfig PATH | --in-cluster   serve the Gateway API objects of a cluster\n"
	      "  check  --manifests PATH   compile manifests, print status conditions, exit 1 on errors\n"
	      "  echo   --listen ADDR      run the echo backend used by demos, tests and benchmarks\n"
	      "\n"
	      "  pylon <command> --help    options of one command\n"
	      "  pylon --version\n", f);
}

static void usage_run(FILE *f)
{
	fputs("usage: pylon run --manifests PATH [options]\n"
	      "       pylon run --kubeconfig PATH | --in-cluster [options]\n"
	      "  --manifests PATH         YAML file or directory (recursive, *.yaml/*.yml/*.json)\n"
	      "  --kubeconfig PATH        watch a Kubernetes API server (client cert, token, CA from PATH)\n"
	      "  --in-cluster             watch the API server of the pod's cluster (service-account token)\n"
	      "  --gateway-class-name N   Kubernetes: serve only this GatewayClass (default: every class of the\n"
	      "                           controller name)\n"
	      "  --gateway-address-pool P Kubernetes: give each Gateway without spec.addresses its own address\n"
	      "                           from P (IPv4 CIDR or a.b.c.d-e.f.g.h); its listeners bind there\n"
	      "  --publish-service NS/N   Kubernetes: report the load-balancer addresses of this Service\n"
	      "  --lease-namespace NS     Kubernetes: namespace of the leader-election Lease (default: the pod's)\n"
	      "  --no-leader-election     Kubernetes: write status without holding the Lease (one replica)\n"
	      "  --debounce-ms MS         Kubernetes: coalesce bursts of events for MS before compiling (default 10, 0: none)\n"
	      "  --controller-name NAME   serve only GatewayClasses with this controllerName (default: all;\n"
	      "                           with Kubernetes: pylon.dev/gateway-controller)\n"
	      "  --workers N              worker threads (default: number of CPUs)\n"
	      "  --admin ADDR             admin listener, host:port (default 127.0.0.1:9901; \"off\" disables)\n"
	      "  --max-conns N            connections per worker (default 10000)\n"
	      "  --header-timeout MS      deadline for a whole request head (default 10000)\n"
	      "  --idle-timeout MS        idle connection timeout (default 60000)\n"
	      "  --connect-timeout MS     backend connect timeout (default 5000)\n"
	      "  --backend-timeout MS     backend response timeout when a route sets none (default 60000)\n"
	      "  --max-header-bytes N     request head limit, beyond it 431 (default 65536)\n"
	      "  --poll-ms MS             how often manifests are checked for changes (default 200)\n"
	      "  --log-level LEVEL        error|warn|info|debug (default info; env PYLON_LOG)\n", f);
}

static void usage_check(FILE *f)
{
	fputs("usage: pylon check --manifests PATH [--controller-name NAME]\n"
	      "  prints every object's status as Kubernetes would show it;\n"
	      "  exit 0: all accepted, 1: some object rejected, 2: manifests unreadable\n", f);
}

static void usage_echo(FILE *f)
{
	fputs("usage: pylon echo --listen ADDR\n"
	      "  ADDR is host:port, e.g. 127.0.0.1:8081. Answers every request with JSON\n"
	      "  describing it (method, path, host, headers, body size, POD_NAME, NAMESPACE).\n", f);
}

static int parse_num(const char *opt, const char *s, uint64_t *out)
{
	if (pl_parse_u64(s, strlen(s), out) != 0) {
		fprintf(stderr, "pylon: %s: not a number: %s\n", opt, s);
		return -1;
	}
	return 0;
}

/* A number in [lo, hi]; anything else is refused with the range in the message. */
static int parse_range(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	if (parse_num(opt, s, out))
		return -1;
	if (*out < lo || *out > hi) {
		fprintf(stderr, "pylon: %s must be %llu..%llu\n", opt, (unsigned long long)lo, (unsigned long long)hi);
		return -1;
	}
	return 0;
}

#define MAX_TIMEOUT_MS 86400000ull   /* one day */

enum { O_MANIFESTS = 1, O_CTLNAME, O_WORKERS, O_ADMIN, O_MAXCONNS, O_HDRTO, O_IDLETO, O_CONNTO,
       O_BACKTO, O_MAXHDR, O_POLL, O_LOGLEVEL, O_LISTEN, O_HELP, O_KUBECONFIG, O_INCLUSTER, O_CLASSNAME,
       O_POOL, O_PUBSVC, O_LEASENS, O_NOLEADER, O_DEBOUNCE };

static const struct option opts[] = {
	{ "manifests", required_argument, NULL, O_MANIFESTS },
	{ "controller-name", required_argument, NULL, O_CTLNAME },
	{ "workers", required_argument, NULL, O_WORKERS },
	{ "admin", required_argument, NULL, O_ADMIN },
	{ "max-conns", required_argument, NULL, O_MAXCONNS },
	{ "header-timeout", required_argument, NULL, O_HDRTO },
	{ "idle-timeout", required_argument, NULL, O_IDLETO },
	{ "connect-timeout", required_argument, NULL, O_CONNTO },
	{ "backend-timeout", required_argument, NULL, O_BACKTO },
	{ "max-header-bytes", required_argument, NULL, O_MAXHDR },
	{ "poll-ms", required_argument, NULL, O_POLL },
	{ "log-level", required_argument, NULL, O_LOGLEVEL },
	{ "listen", required_argument, NULL, O_LISTEN },
	{ "help", no_argument, NULL, O_HELP },
	{ "kubeconfig", required_argument, NULL, O_KUBECONFIG },
	{ "in-cluster", no_argument, NULL, O_INCLUSTER },
	{ "gateway-class-name", required_argument, NULL, O_CLASSNAME },
	{ "gateway-address-pool", required_argument, NULL, O_POOL },
	{ "publish-service", required_argument, NULL, O_PUBSVC },
	{ "lease-namespace", required_argument, NULL, O_LEASENS },
	{ "no-leader-election", no_argument, NULL, O_NOLEADER },
	{ "debounce-ms", required_argument, NULL, O_DEBOUNCE },
	{ NULL, 0, NULL, 0 },
};

/*
 * glibc raises its mmap threshold to the size of the largest mmap'd block
 * freed so far (up to 32 MB): after the first large list page or table arena
 * is freed, later ones come from the heap, where their pages stay after
 * free() until a malloc_trim(). Fixed thresholds keep every large transient
 * buffer mmap'd (returned at once when freed) and the heap top trimmed
 * beyond 1 MB (docs/kubernetes.md, "Memory").
 *
 * Kubernetes mode: the controller's idle trim returns freed memory (and its
 * warm-up compile faults the compile's working set back in). There, trimming
 * a heap top beyond 1 MB would hand back, between two compiles, the pages the
 * next compile reuses, and every block from 256 kB up (a compile's larger
 * arrays at thousands of routes) would be mmap'd afresh, and faulted in, by
 * every compile: page faults in the compile a route change waits for. So
 * only heap tops beyond 32 MB go back at once, and blocks from 4 MB up are
 * mmap'd.
 */
static void memory_settings(int kube)
{
	mallopt(M_MMAP_THRESHOLD, kube ? 4 * 1024 * 1024 : 256 * 1024);
	mallopt(M_TRIM_THRESHOLD, kube ? 32 * 1024 * 1024 : 1024 * 1024);
}

/*
 * Blocks the stop signals; called before any thread exists so every thread
 * inherits the mask; pl_proxy_run takes them with sigwaitinfo.
 */
static void block_stop_signals(void)
{
	sigset_t stopset;
	sigemptyset(&stopset);
	sigaddset(&stopset, SIGINT);
	sigaddset(&stopset, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stopset, NULL);
}

int main(int argc, char **argv)
{
	memory_settings(0);
	pl_jalloc_init();   /* before any JSON value: the controller's long-lived values (common/jalloc.h) */
	const char *env = getenv("PYLON_LOG");
	if (env && pl_log_parse_level(env) >= 0)
		pl_log_set_level((enum pl_log_level)pl_log_parse_level(env));

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("pylon %s\n", PL_VERSION);
		return 0;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	void (*cmd_usage)(FILE *);
	if (strcmp(cmd, "run") == 0)
		cmd_usage = usage_run;
	else if (strcmp(cmd, "check") == 0)
		cmd_usage = usage_check;
	else if (strcmp(cmd, "echo") == 0)
		cmd_usage = usage_echo;
	else {
		fprintf(stderr, "pylon: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}

	struct pl_ctl_config ctl = { .poll_ms = 200 };
	struct pl_kube_config kube = { .debounce_ms = 10 };   /* --debounce-ms 0: none */
	struct pl_proxy_config px;
	pl_proxy_config_defaults(&px);
	const char *listen = NULL;
	uint64_t v;

	optind = 2;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_MANIFESTS: ctl.manifests = optarg; break;
		case O_CTLNAME: ctl.controller_name = optarg; break;
		case O_WORKERS:
			if (parse_num("--workers", optarg, &v) || v < 1 || v > 64) {
				fprintf(stderr, "pylon: --workers must be 1..64\n");
				return 2;
			}
			px.workers = (unsigned)v;
			break;
		case O_ADMIN: px.admin_addr = strcmp(optarg, "off") == 0 ? NULL : optarg; break;
		case O_MAXCONNS: if (parse_range("--max-conns", optarg, 1, 1000000, &v)) return 2; px.max_conns = (uint32_t)v; break;
		case O_HDRTO: if (parse_range("--header-timeout", optarg, 1, MAX_TIMEOUT_MS, &v)) return 2; px.header_timeout_ms = v; break;
		case O_IDLETO: if (parse_range("--idle-timeout", optarg, 1, MAX_TIMEOUT_MS, &v)) return 2; px.idle_timeout_ms = v; break;
		case O_CONNTO: if (parse_range("--connect-timeout", optarg, 1, MAX_TIMEOUT_MS, &v)) return 2; px.connect_timeout_ms = v; break;
		case O_BACKTO: if (parse_range("--backend-timeout", optarg, 1, MAX_TIMEOUT_MS, &v)) return 2; px.backend_timeout_ms = v; break;
		case O_MAXHDR: if (parse_range("--max-header-bytes", optarg, 1024, 16777216, &v)) return 2; px.max_header_bytes = v; break;
		case O_POLL: if (parse_range("--poll-ms", optarg, 10, 3600000, &v)) return 2; ctl.poll_ms = (unsigned)v; break;
		case O_LOGLEVEL:
			if (pl_log_parse_level(optarg) < 0) {
				fprintf(stderr, "pylon: unknown log level '%s'\n", optarg);
				return 2;
			}
			pl_log_set_level((enum pl_log_level)pl_log_parse_level(optarg));
			break;
		case O_LISTEN: listen = optarg; break;
		case O_KUBECONFIG: kube.kubeconfig = optarg; break;
		case O_INCLUSTER: kube.in_cluster = 1; break;
		case O_CLASSNAME: kube.gateway_class_name = optarg; break;
		case O_POOL: kube.address_pool = optarg; break;
		case O_PUBSVC: kube.publish_service = optarg; break;
		case O_LEASENS: kube.lease_namespace = optarg; break;
		case O_NOLEADER: kube.no_leader_election = 1; break;
		case O_DEBOUNCE:
			if (parse_num("--debounce-ms", optarg, &v) || v > 10000) {
				fprintf(stderr, "pylon: --debounce-ms must be 0..10000\n");
				return 2;
			}
			kube.debounce_ms = (unsigned)v;
			break;
		case O_HELP: case 'h': cmd_usage(stdout); return 0;
		default: cmd_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pylon: unexpected argument '%s'\n", argv[optind]);
		cmd_usage(stderr);
		return 2;
	}

	pl_stats_set_slots(px.workers);   /* route counters: a slot per worker that exists */
	if (strcmp(cmd, "echo") == 0) {
		if (!listen) {
			usage_echo(stderr);
			return 2;
		}
		return pl_echo_run(listen);
	}
	if (kube.kubeconfig || kube.in_cluster) {
		if (strcmp(cmd, "run") != 0 || ctl.manifests || (kube.kubeconfig && kube.in_cluster)) {
			fprintf(stderr, "pylon: --kubeconfig/--in-cluster go with 'run', alone (not with --manifests)\n");
			return 2;
		}
		kube.controller_name = ctl.controller_name;
		px.ready = pl_kube_ready;
		memory_settings(1);
		block_stop_signals();
		if (pl_kube_start(&kube) != 0)
			return 1;
		int krc = pl_proxy_run(&px);
		pl_kube_stop();
		return krc;
	}
	if (!ctl.manifests) {
		fprintf(stderr, "pylon %s: --manifests is required\n", cmd);
		cmd_usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "check") == 0)
		return pl_ctl_check(&ctl, stdout);

	block_stop_signals();
	px.ready = pl_ctl_ready;
	if (pl_ctl_start(&ctl) != 0)
		return 1;
	int rc = pl_proxy_run(&px);
	pl_ctl_stop();
	return rc;
}
