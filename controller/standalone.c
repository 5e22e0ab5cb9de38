/*
 * Standalone mode (controller.h): manifests from files, polled for changes.
 *
 * The poller compares a signature of the file list and every file's
 * inode/size/mtime (manifests.h) every poll_ms; on a change it reloads into a
 * fresh store, recompiles and publishes. Any failure keeps the table being
 * served: a half-written file must never take routes down.
 */
#include "pl.h"
#include "compile.h"
#include "controller.h"
#include "log.h"
#include "manifests.h"
#include "status.h"
#include "store.h"
#include "table.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static struct {
	char *manifests;
	char *controller_name;
	unsigned poll_ms;
	pthread_t thread;
	int running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop;
	uint64_t sig;
	int sig_error_logged;
} ctl = { .lock = PTHREAD_MUTEX_INITIALIZER };

static atomic_int ready;

static void now_rfc3339(char *buf, size_t n)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Loads every manifest and compiles. 0, or -1 with err set (nothing in r). */
static int load_compile(const char *path, const char *controller_name, struct pl_compile_result *r,
			char *err, size_t errlen)
{
	struct pl_store *s = pl_store_new();
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (pl_manifests_load(path, s, err, errlen) < 0) {
		pl_store_free(s);
		return -1;
	}
	char now[32];
	now_rfc3339(now, sizeof(now));
	struct pl_compile_opts o = { .controller_name = controller_name, .now = now };
	pl_compile(s, &o, r);
	pl_store_free(s);
	return 0;
}

int pl_ctl_check(const struct pl_ctl_config *cfg, FILE *out)
{
	char err[1024];
	struct pl_compile_result r;
	if (load_compile(cfg->manifests, cfg->controller_name, &r, err, sizeof(err)) != 0) {
		fprintf(stderr, "pylon check: %s\n", err);
		return 2;
	}
	pl_status_print(out, r.statuses);
	fflush(out);
	size_t n = json_array_size(r.statuses);
	if (n == 0)
		fprintf(stderr, "pylon check: no GatewayClass %s%s%s in %s\n", cfg->controller_name ? "with controllerName " : "",
			cfg->controller_name ? cfg->controller_name : "found", cfg->controller_name ? " found" : "",
			cfg->manifests);
	fprintf(stderr, "pylon check: %zu object%s, %u with problems; %u bind%s\n", n, n == 1 ? "" : "s",
		r.problems, r.table->n_binds, r.table->n_binds == 1 ? "" : "s");
	int rc = r.problems ? 1 : 0;
	pl_compile_result_clear(&r);
	return rc;
}

static uint32_t count_routes(const struct pl_table *t)
{
	uint32_t n = 0;
	for (uint32_t b = 0; b < t->n_binds; b++)
		for (uint32_t l = 0; l < t->binds[b].n_listeners; l++)
			for (uint32_t v = 0; v < t->binds[b].listeners[l].n_vhosts; v++)
				n += t->binds[b].listeners[l].vhosts[v].n_entries;
	return n;
}

/* Compiles and publishes; logs why not. */
static int reload(void)
{
	char err[1024];
	struct pl_compile_result r;
	int64_t t0 = pl_now_ns();
	if (load_compile(ctl.manifests, ctl.controller_name, &r, err, sizeof(err)) != 0) {
		pl_err("manifests: %s; keeping generation %llu", err, (unsigned long long)pl_table_generation());
		return -1;
	}
	pl_status_log_problems(r.statuses, 20);
	struct pl_table *t = r.table;
	r.table = NULL;
	unsigned nb = t->n_binds, nc = t->n_clusters, ne = count_routes(t);
	double ms = (double)(t->compiled_at_ns - t0) / 1e6;
	pl_table_publish(t);
	pl_info("manifests: generation %llu compiled in %.1f ms: %u binds, %u route entries, %u clusters, "
		"%u objects with problems", (unsigned long long)pl_table_generation(), ms, nb, ne, nc, r.problems);
	pl_compile_result_clear(&r);
	return 0;
}

static void *poll_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&ctl.lock);
	while (!ctl.stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)ctl.poll_ms * 1000000u;
		ts.tv_sec += (time_t)(ns / 1000000000u);
		ts.tv_nsec = (long)(ns % 1000000000u);
		while (!ctl.stop && pthread_cond_timedwait(&ctl.cond, &ctl.lock, &ts) != ETIMEDOUT)
			;
		if (ctl.stop)
			break;
		pthread_mutex_unlock(&ctl.lock);

		char err[1024];
		uint64_t sig;
		if (pl_manifests_signature(ctl.manifests, &sig, err, sizeof(err)) != 0) {
			if (!ctl.sig_error_logged)
				pl_err("manifests: %s; keeping generation %llu", err,
				       (unsigned long long)pl_table_generation());
			ctl.sig_error_logged = 1;
		} else {
			ctl.sig_error_logged = 0;
			if (sig != ctl.sig) {
				ctl.sig = sig;
				reload();
			}
		}
		pthread_mutex_lock(&ctl.lock);
	}
	pthread_mutex_unlock(&ctl.lock);
	return NULL;
}

int pl_ctl_start(const struct pl_ctl_config *cfg)
{
	PL_BUG_ON(ctl.running);
	ctl.manifests = pl_xstrdup(cfg->manifests);
	ctl.controller_name = cfg->controller_name ? pl_xstrdup(cfg->controller_name) : NULL;
	ctl.poll_ms = cfg->poll_ms ? cfg->poll_ms : 200;
	ctl.stop = 0;

	/* signature first: a change while we load is seen by the next poll */
	char err[1024];
	if (pl_manifests_signature(ctl.manifests, &ctl.sig, err, sizeof(err)) != 0) {
		pl_err("manifests: %s", err);
		goto fail;
	}
	if (reload() != 0)
		goto fail;
	atomic_store(&ready, 1);

	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ctl.cond, &ca);
	pthread_condattr_destroy(&ca);
	int e = pthread_create(&ctl.thread, NULL, poll_main, NULL);
	if (e != 0) {
		pl_err("controller: pthread_create: %s", strerror(e));
		pthread_cond_destroy(&ctl.cond);
		goto fail;
	}
	ctl.running = 1;
	return 0;
fail:
	free(ctl.manifests);
	free(ctl.controller_name);
	ctl.manifests = ctl.controller_name = NULL;
	return -1;
}

void pl_ctl_stop(void)
{
	if (!ctl.running)
		return;
	pthread_mutex_lock(&ctl.lock);
	ctl.stop = 1;
	pthread_cond_signal(&ctl.cond);
	pthread_mutex_unlock(&ctl.lock);
	pthread_join(ctl.thread, NULL);
	pthread_cond_destroy(&ctl.cond);
	ctl.running = 0;
	free(ctl.manifests);
	free(ctl.controller_name);
	ctl.manifests = ctl.controller_name = NULL;
}

int pl_ctl_ready(void)
{
	return atomic_load(&ready);
}
