#define _GNU_SOURCE /* accept4, pipe2 */
#include "pl.h"
#include "log.h"
#include "stats.h"
#include "table.h"
#include "tabledump.h"
#include "admin.h"
#include "worker.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_MAX_CONNS 64
#define ADMIN_REQ_MAX 4096
#define ADMIN_TIMEOUT_S 10.0

struct adm_conn {
	struct pl_admin *a;
	int fd;
	ev_io io;
	ev_timer timer;
	char in[ADMIN_REQ_MAX];
	size_t in_len;
	char *out;
	size_t out_len, out_off;
	struct adm_conn *next, *prev;
};

struct pl_admin {
	struct pl_worker *w;
	int fd;
	ev_io io;
	ev_prepare reaper;
	struct adm_conn *conns, *dead;
	unsigned n_conns;
};

/* A growable string; on allocation failure it sets oom and stops growing. */
struct sb {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_add(struct sb *s, const char *d, size_t n)
{
	if (s->oom)
		return;
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 1024;
		while (cap < s->len + n + 1)
			cap *= 2;
		char *p = realloc(s->p, cap);
		if (!p) {
			s->oom = 1;
			return;
		}
		s->p = p;
		s->cap = cap;
	}
	memcpy(s->p + s->len, d, n);
	s->len += n;
	s->p[s->len] = '\0';
}

static void sb_printf(struct sb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *s, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		sb_add(s, tmp, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		s->oom = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb_add(s, big, (size_t)n);
	free(big);
}

/* Prometheus label value escaping: backslash, double quote, newline. */
static void sb_label(struct sb *s, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			sb_add(s, "\\\\", 2);
		else if (*v == '"')
			sb_add(s, "\\\"", 2);
		else if (*v == '\n')
			sb_add(s, "\\n", 2);
		else
			sb_add(s, v, 1);
	}
}

static void metrics_route(const struct pl_route_stats *rs, void *data)
{
	static const char *const classes[PL_SC_N] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
	struct sb *s = data;
	for (int c = 0; c < PL_SC_N; c++) {
		uint64_t sum = 0;
		for (unsigned i = 0, n = pl_stats_slots(); i < n; i++)
			sum += atomic_load_explicit(&rs->w[i].req[c], memory_order_relaxed);
		if (sum == 0 && c != PL_SC_2XX)
			continue;
		sb_add(s, "pylon_requests_total{listener=\"", 31);
		sb_label(s, rs->listener);
		sb_add(s, "\",route=\"", 9);
		sb_label(s, rs->name);
		sb_printf(s, "\",code=\"%s\"} %llu\n", classes[c], (unsigned long long)sum);
	}
}

/* Added (retry): route retries started (proxy/retry.h), routes that made any. */
static void metrics_retries(const struct pl_route_stats *rs, void *data)
{
	struct sb *s = data;
	uint64_t sum = 0;
	for (unsigned i = 0, n = pl_stats_slots(); i < n; i++)
		sum += atomic_load_explicit(&rs->w[i].retries, memory_order_relaxed);
	if (sum == 0)
		return;
	sb_add(s, "pylon_retries_total{listener=\"", 30);
	sb_label(s, rs->listener);
	sb_add(s, "\",route=\"", 9);
	sb_label(s, rs->name);
	sb_printf(s, "\"} %llu\n", (unsigned long long)sum);
}

static void metrics(struct sb *s)
{
	uint64_t up_err = 0, rejected = 0;
	unsigned active = 0;
	for (unsigned i = 0; i < pl_n_workers; i++) {
		up_err += atomic_load_explicit(&pl_workers[i].upstream_errors, memory_order_relaxed);
		rejected += atomic_load_explicit(&pl_workers[i].rejected, memory_order_relaxed);
		active += atomic_load_explicit(&pl_workers[i].n_conns, memory_order_relaxed);
	}
	sb_printf(s, "# HELP pylon_requests_total Responses sent, by listener, route and status class.\n"
		     "# TYPE pylon_requests_total counter\n");
	pl_stats_foreach(metrics_route, s);
	sb_printf(s, "# HELP pylon_retries_total Backend requests sent again by a route's retry policy.\n"
		     "# TYPE pylon_retries_total counter\n");
	pl_stats_foreach(metrics_retries, s);
	sb_printf(s, "# HELP pylon_upstream_errors_total Backend connect, I/O, protocol and timeout errors.\n"
		     "# TYPE pylon_upstream_errors_total counter\n"
		     "pylon_upstream_errors_total %llu\n", (unsigned long long)up_err);
	sb_printf(s, "# HELP pylon_active_connections Open client connections.\n"
		     "# TYPE pylon_active_connections gauge\n"
		     "pylon_active_connections %u\n", active);
	sb_printf(s, "# HELP pylon_connections_rejected_total Connections closed at accept (limit or shutdown).\n"
		     "# TYPE pylon_connections_rejected_total counter\n"
		     "pylon_connections_rejected_total %llu\n", (unsigned long long)rejected);
	sb_printf(s, "# HELP pylon_config_generation Generation of the current routing table.\n"
		     "# TYPE pylon_config_generation gauge\n"
		     "pylon_config_generation %llu\n", (unsigned long long)pl_table_generation());
	sb_printf(s, "# HELP pylon_config_swap_seconds Time from the end of compilation to all workers notified.\n"
		     "# TYPE pylon_config_swap_seconds gauge\n"
		     "pylon_config_swap_seconds %.9f\n", (double)pl_table_last_swap_ns() / 1e9);
	sb_printf(s, "# HELP pylon_tables_live Routing tables not yet freed.\n"
		     "# TYPE pylon_tables_live gauge\n"
		     "pylon_tables_live %u\n", pl_table_live_count());
}

static void conn_free_later(struct adm_conn *c)
{
	struct pl_admin *a = c->a;
	ev_io_stop(a->w->loop, &c->io);
	ev_timer_stop(a->w->loop, &c->timer);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = a->dead;
	a->dead = c;
	a->n_conns--;
}

static void on_reap(struct ev_loop *loop, ev_prepare *p, int revents)
{
	struct pl_admin *a = p->data;
	while (a->dead) {
		struct adm_conn *c = a->dead;
		a->dead = c->next;
		free(c->out);
		free(c);
	}
}

static void respond(struct adm_conn *c, int status, const char *reason, const char *ctype, const char *body,
		    size_t blen, int head_only)
{
	struct sb s = { 0 };
	sb_printf(&s, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		  status, reason, ctype, blen);
	if (!head_only)
		sb_add(&s, body, blen);
	if (s.oom) {
		free(s.p);
		conn_free_later(c);
		return;
	}
	c->out = s.p;
	c->out_len = s.len;
	c->out_off = 0;
}

static void handle(struct adm_conn *c)
{
	struct pl_worker *w = c->a->w;
	char *sp1 = memchr(c->in, ' ', c->in_len);
	char *sp2 = sp1 ? memchr(sp1 + 1, ' ', c->in_len - (size_t)(sp1 + 1 - c->in)) : NULL;
	if (!sp1 || !sp2) {
		respond(c, 400, "Bad Request", "text/plain", "bad request\n", 12, 0);
		return;
	}
	size_t ml = (size_t)(sp1 - c->in);
	int head_only = ml == 4 && memcmp(c->in, "HEAD", 4) == 0;
	if (!(ml == 3 && memcmp(c->in, "GET", 3) == 0) && !head_only) {
		respond(c, 405, "Method Not Allowed", "text/plain", "method not allowed\n", 19, 0);
		return;
	}
	const char *path = sp1 + 1;
	size_t pl = (size_t)(sp2 - path);
	const char *q = memchr(path, '?', pl);
	if (q)
		pl = (size_t)(q - path);
#define IS(p) (pl == sizeof(p) - 1 && memcmp(path, p, pl) == 0)
	if (IS("/healthz")) {
		respond(c, 200, "OK", "text/plain", "ok\n", 3, head_only);
	} else if (IS("/readyz")) {
		int ready = pl_table_generation() > 0 && (!w->cfg->ready || w->cfg->ready());
		if (ready)
			respond(c, 200, "OK", "text/plain", "ready\n", 6, head_only);
		else
			respond(c, 503, "Service Unavailable", "text/plain", "not ready\n", 10, head_only);
	} else if (IS("/metrics")) {
		struct sb s = { 0 };
		metrics(&s);
		if (s.oom)
			respond(c, 500, "Internal Server Error", "text/plain", "out of memory\n", 14, head_only);
		else
			respond(c, 200, "OK", "text/plain; version=0.0.4", s.p, s.len, head_only);
		free(s.p);
	} else if (IS("/config")) {
		struct pl_table *t = pl_table_acquire();
		size_t len = 0;
		char *js = t ? pl_table_json(t, &len) : NULL;
		if (!t)
			respond(c, 503, "Service Unavailable", "text/plain", "no configuration yet\n", 21, head_only);
		else if (!js)
			respond(c, 500, "Internal Server Error", "text/plain", "out of memory\n", 14, head_only);
		else
			respond(c, 200, "OK", "application/json", js, len, head_only);
		free(js);
		pl_table_unref(t);
	} else {
		respond(c, 404, "Not Found", "text/plain", "not found\n", 10, head_only);
	}
#undef IS
}

static void on_conn_io(struct ev_loop *loop, ev_io *io, int revents)
{
	struct adm_conn *c = io->data;
	if (!c->out) {
		ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len);
		if (n <= 0) {
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			conn_free_later(c);
			return;
		}
		c->in_len += (size_t)n;
		c->in[c->in_len] = '\0';
		if (!strstr(c->in, "\r\n\r\n") && !strstr(c->in, "\n\n")) {
			if (c->in_len >= sizeof(c->in) - 1)
				respond(c, 431, "Request Header Fields Too Large", "text/plain", "too large\n", 10, 0);
			else
				return;
		} else {
			handle(c);
		}
		if (c->fd < 0)
			return;
		ev_io_stop(loop, &c->io);
		ev_io_set(&c->io, c->fd, EV_WRITE);
		ev_io_start(loop, &c->io);
	}
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			break;
		}
		c->out_off += (size_t)n;
	}
	conn_free_later(c);
}

static void on_conn_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	conn_free_later(t->data);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_admin *a = io->data;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct adm_conn *c = a->n_conns < ADMIN_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			close(fd);
			continue;
		}
		c->a = a;
		c->fd = fd;
		ev_io_init(&c->io, on_conn_io, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->timer, on_conn_timeout, ADMIN_TIMEOUT_S, 0.);
		c->timer.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_start(loop, &c->timer);
		c->next = a->conns;
		if (a->conns)
			a->conns->prev = c;
		a->conns = c;
		a->n_conns++;
	}
}

int pl_admin_open(struct pl_worker *w, const char *addr)
{
	char host[128];
	const char *colon = strrchr(addr, ':');
	uint64_t port;
	if (!colon || (size_t)(colon - addr) >= sizeof(host) ||
	    pl_parse_u64(colon + 1, strlen(colon + 1), &port) != 0 || port > 65535) {
		pl_err("admin: bad address '%s' (want host:port)", addr);
		return -1;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	struct sockaddr_storage ss;
	socklen_t sl;
	if (pl_worker_sockaddr(host[0] ? host : "0.0.0.0", (uint16_t)port, &ss, &sl) != 0) {
		pl_err("admin: bad address '%s' (numeric IP expected)", addr);
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		pl_err("admin: socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0) {
		pl_err("admin: cannot listen on %s: %s", addr, strerror(errno));
		close(fd);
		return -1;
	}
	struct pl_admin *a = pl_xcalloc(1, sizeof(*a));
	a->w = w;
	a->fd = fd;
	ev_io_init(&a->io, on_accept, fd, EV_READ);
	a->io.data = a;
	ev_prepare_init(&a->reaper, on_reap);
	a->reaper.data = a;
	w->admin = a;
	pl_info("admin listening on %s", addr);
	return 0;
}

void pl_admin_start(struct pl_worker *w)
{
	struct pl_admin *a = w->admin;
	ev_io_start(w->loop, &a->io);
	ev_prepare_start(w->loop, &a->reaper);
}

void pl_admin_close(struct pl_worker *w)
{
	struct pl_admin *a = w->admin;
	if (!a)
		return;
	ev_io_stop(w->loop, &a->io);
	ev_prepare_stop(w->loop, &a->reaper);
	close(a->fd);
	while (a->conns)
		conn_free_later(a->conns);
	on_reap(w->loop, &a->reaper, 0);
	free(a);
	w->admin = NULL;
}
