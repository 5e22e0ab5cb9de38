#define _GNU_SOURCE /* accept4, pipe2 */
#include "pl.h"
#include "bindreg.h"
#include "log.h"
#include "stats.h"
#include "table.h"
#include "admin.h"
#include "buf.h"
#include "http1.h"
#include "l4.h"
#include "passthrough.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

struct pl_worker *pl_workers;
unsigned pl_n_workers;

/*
 * The publish hook runs on the controller thread and may race with
 * pl_proxy_run tearing the workers down: the lock and the flag make it a
 * no-op once the workers are gone.
 */
static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;
static int hook_live;

/* Self-pipe: the signal handler's only way to wake the main thread. */

void pl_proxy_config_defaults(struct pl_proxy_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cfg->workers = n < 1 ? 1 : n > PL_MAX_WORKERS ? PL_MAX_WORKERS : (unsigned)n;
	cfg->admin_addr = "127.0.0.1:9901";
	cfg->max_conns = 10000;
	cfg->header_timeout_ms = 10000;
	cfg->idle_timeout_ms = 60000;
	cfg->connect_timeout_ms = 5000;
	cfg->backend_timeout_ms = 60000;
	cfg->drain_timeout_ms = 10000;
	cfg->max_request_line = 8192;
	cfg->max_header_bytes = 65536;
	cfg->ready = NULL;
}

void pl_wtable_put(struct pl_wtable *wt)
{
	PL_BUG_ON(wt->refs == 0);
	if (--wt->refs == 0) {
		pl_tls_set_free(wt->tls);
		pl_table_unref(wt->t);
		free(wt);
	}
}

void pl_lsock_put(struct pl_lsock *ls)
{
	PL_BUG_ON(ls->refs == 0);
	if (--ls->refs == 0)
		free(ls);
}

int pl_worker_sockaddr(const char *address, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	const char *a = address && *address ? address : "0.0.0.0";
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, a, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		*len = sizeof(*s4);
		return 0;
	}
	char tmp[64];
	size_t n = strlen(a);
	if (n >= 2 && a[0] == '[' && a[n - 1] == ']' && n - 2 < sizeof(tmp)) {
		memcpy(tmp, a + 1, n - 2);
		tmp[n - 2] = '\0';
		a = tmp;
	}
	if (inet_pton(AF_INET6, a, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*len = sizeof(*s6);
		return 0;
	}
	return -1;
}

struct pl_route_stats *pl_worker_nrstats(struct pl_worker *w, const char *listener)
{
	for (struct pl_nrstat *n = w->nrstats; n; n = n->next)
		if (strcmp(n->listener, listener) == 0)
			return n->s;
	struct pl_route_stats *s = pl_stats_route("", listener);
	size_t len = strlen(listener);
	struct pl_nrstat *n = malloc(sizeof(*n) + len + 1);
	if (n) {
		memcpy(n->listener, listener, len + 1);
		n->s = s;
		n->next = w->nrstats;
		w->nrstats = n;
	}
	return s;
}

/* ------------------------------------------------------------ listeners */

static void accept_pause(struct pl_worker *w)
{
	for (struct pl_lsock *ls = w->lsocks; ls; ls = ls->next)
		ev_io_stop(w->loop, &ls->io);
	ev_timer_set(&w->accept_pause, 0.1, 0.);
	ev_timer_start(w->loop, &w->accept_pause);
}

static void on_accept_resume(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct pl_worker *w = t->data;
	if (w->draining)
		return;
	for (struct pl_lsock *ls = w->lsocks; ls; ls = ls->next)
		if (ls->fd >= 0)
			ev_io_start(loop, &ls->io);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_lsock *ls = io->data;
	struct pl_worker *w = ls->w;
	/* bounded batch: other listeners and connections get their turn */
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(ls->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				pl_warn("worker %u: accept on %s:%u: %s; pausing accepts for 100 ms", w->id, ls->address,
					ls->port, strerror(errno));
				accept_pause(w);
				return;
			}
			pl_warn("worker %u: accept on %s:%u: %s", w->id, ls->address, ls->port, strerror(errno));
			return;
		}
		if (w->draining || atomic_load_explicit(&w->n_conns, memory_order_relaxed) >= w->cfg->max_conns) {
			close(fd);
			atomic_fetch_add_explicit(&w->rejected, 1, memory_order_relaxed);
			continue;
		}
		switch (ls->bind ? ls->bind->proto : PL_PROTO_HTTP) {
		case PL_PROTO_HTTPS:
			pl_tls_accept(w, ls, fd, (struct sockaddr *)&ss, sl);
			break;
		case PL_PROTO_TLS:
			pl_pt_accept(w, ls, fd, (struct sockaddr *)&ss, sl);
			break;
		case PL_PROTO_TCP:
			pl_l4_tcp_accept(w, ls, fd, (struct sockaddr *)&ss, sl);
			break;
		default:
			pl_h1_accept(w, ls, fd, (struct sockaddr *)&ss, sl);
			break;
		}
	}
}

static void on_udp(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_lsock *ls = io->data;
	pl_l4_udp_read(ls->w, ls);
}

static struct pl_lsock *lsock_open(struct pl_worker *w, const struct pl_bind *b)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (pl_worker_sockaddr(b->address, b->port, &ss, &sl) != 0) {
		if (w->id == 0)
			pl_err("listener %s:%u: not a numeric address", b->address, b->port);
		return NULL;
	}
	int udp = b->proto == PL_PROTO_UDP;
	int fd = socket(ss.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		pl_err("listener %s:%u: socket: %s", b->address, b->port, strerror(errno));
		return NULL;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || (!udp && listen(fd, 4096) < 0)) {
		int e = errno;
		pl_err("worker %u: listener %s:%u: %s", w->id, b->address, b->port, strerror(e));
		close(fd);
		if (w->id == 0)
			pl_bindreg_set(b->address, b->port, 0, e);
		return NULL;
	}
	struct pl_lsock *ls = calloc(1, sizeof(*ls));
	if (!ls) {
		close(fd);
		return NULL;
	}
	ls->w = w;
	ls->fd = fd;
	snprintf(ls->address, sizeof(ls->address), "%s", b->address ? b->address : "0.0.0.0");
	ls->port = b->port;
	ls->bind = b;
	ls->refs = 1;
	ls->udp = udp;
	ev_io_init(&ls->io, udp ? on_udp : on_accept, fd, EV_READ);
	ls->io.data = ls;
	if (!ev_is_active(&w->accept_pause))
		ev_io_start(w->loop, &ls->io);
	if (w->id == 0) {
		pl_info("listening on %s:%u%s", ls->address, ls->port, udp ? "/udp" : "");
		pl_bindreg_set(ls->address, ls->port, 1, 0);
	}
	return ls;
}

static void lsock_close(struct pl_worker *w, struct pl_lsock *ls)
{
	if (w->id == 0 && ls->fd >= 0)
		pl_bindreg_clear(ls->address, ls->port);
	ev_io_stop(w->loop, &ls->io);
	if (ls->fd >= 0)
		close(ls->fd);
	ls->fd = -1;
	ls->bind = NULL;
	pl_lsock_put(ls);
}

static int same_bind(const struct pl_lsock *ls, const struct pl_bind *b)
{
	return ls->port == b->port && ls->udp == (b->proto == PL_PROTO_UDP) &&
	       strcmp(ls->address, b->address ? b->address : "0.0.0.0") == 0;
}

/* Opens listeners for new binds, closes those of vanished binds. */
static void reconcile_listeners(struct pl_worker *w, const struct pl_table *t)
{
	struct pl_lsock *keep = NULL, *ls, *next;
	for (uint32_t i = 0; i < t->n_binds; i++) {
		const struct pl_bind *b = &t->binds[i];
		struct pl_lsock **pp = &w->lsocks;
		for (ls = w->lsocks; ls; pp = &ls->next, ls = ls->next)
			if (same_bind(ls, b))
				break;
		if (ls) {
			*pp = ls->next;   /* move to the kept list */
			ls->bind = b;
		} else {
			for (ls = keep; ls; ls = ls->next)
				if (same_bind(ls, b))
					break;
			if (ls)
				continue;   /* duplicate bind in the table */
			ls = lsock_open(w, b);
			if (!ls)
				continue;
		}
		ls->next = keep;
		keep = ls;
	}
	for (ls = w->lsocks; ls; ls = next) {
		next = ls->next;
		if (w->id == 0)
			pl_info("listener %s:%u removed; its connections finish their requests", ls->address, ls->port);
		lsock_close(w, ls);
	}
	w->lsocks = keep;
}

/* Picks up the current table if it is newer than the worker's. */
static void pickup_table(struct pl_worker *w)
{
	struct pl_table *t = pl_table_acquire();
	if (!t)
		return;
	if (w->wt && w->wt->t->generation >= t->generation) {
		pl_table_unref(t);
		return;
	}
	struct pl_wtable *wt = calloc(1, sizeof(*wt));
	if (!wt) {
		pl_table_unref(t);
		return;
	}
	wt->t = t;   /* takes acquire's reference */
	wt->refs = 1;
	wt->tls = pl_tls_set_new(t);
	struct pl_wtable *old = w->wt;
	w->wt = wt;
	reconcile_listeners(w, t);
	if (old)
		pl_wtable_put(old);
	if (w->id == 0)
		pl_info("serving configuration generation %llu (%u binds)", (unsigned long long)t->generation,
			t->n_binds);
}

/* ----------------------------------------------------------- lifecycle */

static void maybe_finish(struct pl_worker *w)
{
	if (w->draining && !w->conns && !w->h2 && !w->tls_hs && !w->pt && !w->l4)
		ev_break(w->loop, EVBREAK_ALL);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
	struct pl_worker *w = p->data;
	pl_h1_reap(w);
	pl_tls_reap(w);
	pl_pt_reap(w);
	pl_l4_reap(w);
	pl_up_reap(w);
	maybe_finish(w);
}

static void on_sweep(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct pl_worker *w = t->data;
	pl_up_sweep(w);
	pl_l4_sweep(w);
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct pl_worker *w = t->data;
	pl_warn("worker %u: drain timeout; closing remaining connections", w->id);
	pl_h1_close_all(w);
	pl_tls_close_all(w);
	pl_pt_close_all(w);
	pl_l4_close_all(w);
	ev_break(loop, EVBREAK_ALL);
}

static void start_drain(struct pl_worker *w)
{
	w->draining = 1;
	struct pl_lsock *ls, *next;
	for (ls = w->lsocks; ls; ls = next) {
		next = ls->next;
		lsock_close(w, ls);
	}
	w->lsocks = NULL;
	ev_timer_stop(w->loop, &w->accept_pause);
	if (w->admin)
		pl_admin_close(w);
	pl_up_close_idle(w);
	pl_h1_drain(w);
	pl_tls_close_all(w);
	pl_pt_close_all(w);
	pl_l4_drain(w);
	ev_timer_set(&w->drain_timer, (double)w->cfg->drain_timeout_ms / 1000.0, 0.);
	ev_timer_start(w->loop, &w->drain_timer);
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
	struct pl_worker *w = a->data;
	if (atomic_load(&w->stop)) {
		if (!w->draining)
			start_drain(w);
		return;
	}
	pickup_table(w);
}

static void on_publish(void *data)
{
	pthread_mutex_lock(&hook_lock);
	if (hook_live)
		for (unsigned i = 0; i < pl_n_workers; i++)
			ev_async_send(pl_workers[i].loop, &pl_workers[i].wake);
	pthread_mutex_unlock(&hook_lock);
}

static void *worker_main(void *arg)
{
	struct pl_worker *w = arg;
	char name[16];   /* what top -H, ps -L and perf show */
	snprintf(name, sizeof(name), "pl-worker-%u", w->id);
	pthread_setname_np(pthread_self(), name);
	pickup_table(w);
	if (w->admin)
		pl_admin_start(w);
	ev_run(w->loop, 0);

	/* teardown: everything this thread owns */
	pl_h1_close_all(w);
	pl_tls_close_all(w);
	pl_pt_close_all(w);
	pl_l4_close_all(w);
	if (w->admin)
		pl_admin_close(w);
	struct pl_lsock *ls, *next;
	for (ls = w->lsocks; ls; ls = next) {
		next = ls->next;
		lsock_close(w, ls);
	}
	w->lsocks = NULL;
	pl_h1_reap(w);
	pl_tls_reap(w);
	pl_pt_reap(w);
	pl_l4_reap(w);
	pl_up_fini(w);
	if (w->wt)
		pl_wtable_put(w->wt);
	w->wt = NULL;
	while (w->nrstats) {
		struct pl_nrstat *n = w->nrstats;
		w->nrstats = n->next;
		free(n);
	}
	pl_buf_thread_cleanup();
	return NULL;
}

static int worker_init(struct pl_worker *w, unsigned id, const struct pl_proxy_config *cfg)
{
	w->id = id;
	w->cfg = cfg;
	w->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOSIGMASK);
	if (!w->loop)
		w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!w->loop)
		return -1;
	ev_async_init(&w->wake, on_wake);
	w->wake.data = w;
	ev_async_start(w->loop, &w->wake);
	ev_prepare_init(&w->reaper, on_prepare);
	w->reaper.data = w;
	ev_prepare_start(w->loop, &w->reaper);
	ev_timer_init(&w->sweep, on_sweep, 1., 1.);
	w->sweep.data = w;
	ev_timer_start(w->loop, &w->sweep);
	ev_init(&w->drain_timer, on_drain_timeout);
	w->drain_timer.data = w;
	ev_init(&w->accept_pause, on_accept_resume);
	w->accept_pause.data = w;
	atomic_init(&w->stop, 0);
	atomic_init(&w->n_conns, 0);
	atomic_init(&w->rejected, 0);
	atomic_init(&w->upstream_errors, 0);
	pl_up_init(w);
	return 0;
}

int pl_proxy_run(const struct pl_proxy_config *cfg)
{
	unsigned n = cfg->workers < 1 ? 1 : cfg->workers > PL_MAX_WORKERS ? PL_MAX_WORKERS : cfg->workers;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	pl_tls_alpn_h2 = 1;   /* h2.c serves connections that negotiate h2 */
	/*
	 * SIGINT/SIGTERM stay blocked in every thread (main.c blocks them before
	 * any thread starts; we make sure for this one) and this thread takes
	 * them with sigtimedwait: no handler runs on some random thread.
	 */
	sigset_t stopset;
	sigemptyset(&stopset);
	sigaddset(&stopset, SIGINT);
	sigaddset(&stopset, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stopset, NULL);

	pl_workers = pl_xcalloc(n, sizeof(*pl_workers));
	pl_n_workers = n;
	for (unsigned i = 0; i < n; i++)
		if (worker_init(&pl_workers[i], i, cfg) != 0) {
			pl_err("cannot create event loop");
			return 1;
		}
	int rc = 0;
	if (cfg->admin_addr && *cfg->admin_addr && pl_admin_open(&pl_workers[0], cfg->admin_addr) != 0)
		rc = 1;

	pthread_mutex_lock(&hook_lock);
	hook_live = 1;
	pthread_mutex_unlock(&hook_lock);
	pl_table_on_publish(on_publish, NULL);

	unsigned started = 0;
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		if (pthread_create(&pl_workers[i].thread, NULL, worker_main, &pl_workers[i]) != 0) {
			pl_err("cannot start worker thread: %s", strerror(errno));
			rc = 1;
			break;
		}
		started++;
	}

	if (rc == 0) {
		pl_info("pylon proxy running: %u workers, admin %s", n,
			cfg->admin_addr && *cfg->admin_addr ? cfg->admin_addr : "off");
		int sig;
		do
			sig = sigwaitinfo(&stopset, NULL);
		while (sig < 0 && errno == EINTR);
		pl_info("received %s: draining (up to %llu ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
			(unsigned long long)cfg->drain_timeout_ms);
	}
	for (unsigned i = 0; i < started; i++) {
		atomic_store(&pl_workers[i].stop, 1);
		ev_async_send(pl_workers[i].loop, &pl_workers[i].wake);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(pl_workers[i].thread, NULL);

	pthread_mutex_lock(&hook_lock);
	hook_live = 0;
	pthread_mutex_unlock(&hook_lock);
	if (started == 0 && pl_workers[0].admin)
		pl_admin_close(&pl_workers[0]);
	for (unsigned i = 0; i < n; i++) {
		if (started == 0)
			pl_up_fini(&pl_workers[i]);
		ev_loop_destroy(pl_workers[i].loop);
	}
	free(pl_workers);
	pl_workers = NULL;
	pl_n_workers = 0;
	if (rc == 0)
		pl_info("pylon proxy stopped");
	return rc;
}
