#define _GNU_SOURCE /* accept4, pipe2 */
#include "pl.h"
#include "log.h"
#include "upstream.h"
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

/*
 * The pool is a fixed hash of entries, one per (cluster id, endpoint). An
 * entry holds its idle connections most-recently-used first: reusing the
 * warmest connection leaves the cold ones to expire, so the pool shrinks to
 * what the load needs. Entries without idle connections are dropped by the
 * sweep, so endpoints that churn away do not accumulate.
 */
#define N_BUCKETS 256

struct pl_upent {
	struct pl_upent *next;
	struct pl_upkey key;
	struct pl_upconn *idle;
	unsigned n_idle;
};

struct pl_uppool {
	struct pl_upent *bucket[N_BUCKETS];
	double idle_s;
};

static void key_init(struct pl_upkey *k, uint32_t cluster_id, const struct pl_endpoint *ep)
{
	memset(k, 0, sizeof(*k));
	k->cluster_id = cluster_id;
	k->addrlen = ep->addrlen;
	/* copy field by field: padding in the table's sockaddr need not be zero */
	if (ep->addr.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)&ep->addr;
		struct sockaddr_in *d = (struct sockaddr_in *)&k->addr;
		d->sin_family = AF_INET;
		d->sin_port = s->sin_port;
		d->sin_addr = s->sin_addr;
		k->addrlen = sizeof(*d);
	} else if (ep->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&ep->addr;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&k->addr;
		d->sin6_family = AF_INET6;
		d->sin6_port = s->sin6_port;
		d->sin6_addr = s->sin6_addr;
		d->sin6_scope_id = s->sin6_scope_id;
		k->addrlen = sizeof(*d);
	} else {
		memcpy(&k->addr, &ep->addr, PL_MIN((size_t)ep->addrlen, sizeof(k->addr)));
	}
}

static int key_eq(const struct pl_upkey *a, const struct pl_upkey *b)
{
	return a->cluster_id == b->cluster_id && a->addrlen == b->addrlen &&
	       memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

static unsigned key_hash(const struct pl_upkey *k)
{
	uint32_t h = 2166136261u ^ k->cluster_id;
	const unsigned char *p = (const unsigned char *)&k->addr;
	for (socklen_t i = 0; i < k->addrlen; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % N_BUCKETS;
}

static struct pl_upent *ent_find(struct pl_uppool *p, const struct pl_upkey *k, int create)
{
	unsigned h = key_hash(k);
	for (struct pl_upent *e = p->bucket[h]; e; e = e->next)
		if (key_eq(&e->key, k))
			return e;
	if (!create)
		return NULL;
	struct pl_upent *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->key = *k;
	e->next = p->bucket[h];
	p->bucket[h] = e;
	return e;
}

static void idle_unlink(struct pl_upconn *u)
{
	struct pl_upent *e = u->ent;
	if (u->prev)
		u->prev->next = u->next;
	else
		e->idle = u->next;
	if (u->next)
		u->next->prev = u->prev;
	u->next = u->prev = NULL;
	u->ent = NULL;
	e->n_idle--;
}

void pl_up_close(struct pl_upconn *u)
{
	if (u->st == PL_UP_CLOSED)
		return;
	if (u->st == PL_UP_IDLE)
		idle_unlink(u);
	ev_io_stop(u->w->loop, &u->rio);
	ev_io_stop(u->w->loop, &u->wio);
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
	u->st = PL_UP_CLOSED;
	u->cb = NULL;
	u->data = NULL;
	pl_buf_free(&u->in);
	u->prev = NULL;
	u->next = u->w->up_dead;
	u->w->up_dead = u;
}

void pl_up_reap(struct pl_worker *w)
{
	while (w->up_dead) {
		struct pl_upconn *u = w->up_dead;
		w->up_dead = u->next;
		free(u);
	}
}

static void connect_done(struct pl_upconn *u)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	ev_io_stop(u->w->loop, &u->wio);
	if (err) {
		u->err = err;
		u->cb(u, PL_UP_EV_ERROR);
		return;
	}
	u->st = PL_UP_READY;
	u->cb(u, PL_UP_EV_CONNECTED);
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_upconn *u = io->data;
	if (u->st == PL_UP_IDLE) {
		/* an idle backend connection must stay silent: EOF, an error or
		 * stray bytes all mean it cannot carry another request */
		pl_debug("upstream %s: idle connection closed by backend", u->peer);
		pl_up_close(u);
		return;
	}
	if (u->cb)
		u->cb(u, PL_UP_EV_READ);
}

static void on_write(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_upconn *u = io->data;
	if (u->st == PL_UP_CONNECTING) {
		connect_done(u);
		return;
	}
	if (u->cb)
		u->cb(u, PL_UP_EV_WRITE);
}

static struct pl_upconn *up_new(struct pl_worker *w, const struct pl_upkey *k, const struct pl_endpoint *ep,
				int *err)
{
	int fd = socket(k->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = -errno;
		return NULL;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct pl_upconn *u = calloc(1, sizeof(*u));
	if (!u) {
		close(fd);
		*err = -ENOMEM;
		return NULL;
	}
	u->w = w;
	u->fd = fd;
	u->key = *k;
	snprintf(u->peer, sizeof(u->peer), "%s", ep->text ? ep->text : "?");
	pl_buf_init(&u->in, NULL);
	ev_io_init(&u->rio, on_read, fd, EV_READ);
	ev_io_init(&u->wio, on_write, fd, EV_WRITE);
	u->rio.data = u->wio.data = u;
	int rc;
	do
		rc = connect(fd, (const struct sockaddr *)&k->addr, k->addrlen);
	while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		u->st = PL_UP_READY;
	} else if (errno == EINPROGRESS) {
		u->st = PL_UP_CONNECTING;
		ev_io_start(w->loop, &u->wio);
	} else {
		*err = -errno;
		close(fd);
		free(u);
		return NULL;
	}
	return u;
}

struct pl_upconn *pl_up_get(struct pl_worker *w, uint32_t cluster_id, const struct pl_endpoint *ep,
			    int fresh, void (*cb)(struct pl_upconn *, int), void *data, int *err)
{
	struct pl_upkey k;
	key_init(&k, cluster_id, ep);
	struct pl_upconn *u = NULL;
	if (!fresh) {
		struct pl_upent *e = ent_find(w->pool, &k, 0);
		if (e && e->idle) {
			u = e->idle;
			idle_unlink(u);
			ev_io_stop(w->loop, &u->rio);
			u->st = PL_UP_READY;
		}
	}
	if (!u) {
		u = up_new(w, &k, ep, err);
		if (!u)
			return NULL;
	}
	u->cb = cb;
	u->data = data;
	u->err = 0;
	return u;
}

void pl_up_want(struct pl_upconn *u, int read, int write)
{
	if (u->st != PL_UP_READY)
		return;
	if (read)
		ev_io_start(u->w->loop, &u->rio);
	else
		ev_io_stop(u->w->loop, &u->rio);
	if (write)
		ev_io_start(u->w->loop, &u->wio);
	else
		ev_io_stop(u->w->loop, &u->wio);
}

void pl_up_release(struct pl_upconn *u, int reusable)
{
	struct pl_worker *w = u->w;
	if (!reusable || u->st != PL_UP_READY || !pl_buf_empty(&u->in) || w->draining) {
		pl_up_close(u);
		return;
	}
	struct pl_upent *e = ent_find(w->pool, &u->key, 1);
	if (!e || e->n_idle >= PL_UP_MAX_IDLE) {
		pl_up_close(u);
		return;
	}
	ev_io_stop(w->loop, &u->wio);
	pl_buf_free(&u->in);
	u->in.budget = NULL;   /* it was the previous owner's */
	u->cb = NULL;
	u->data = NULL;
	u->reused++;
	u->st = PL_UP_IDLE;
	u->ent = e;
	u->idle_since = ev_now(w->loop);
	u->prev = NULL;
	u->next = e->idle;
	if (e->idle)
		e->idle->prev = u;
	e->idle = u;
	e->n_idle++;
	ev_io_start(w->loop, &u->rio);
}

static void sweep(struct pl_worker *w, int all)
{
	struct pl_uppool *p = w->pool;
	ev_tstamp now = ev_now(w->loop);
	for (unsigned i = 0; i < N_BUCKETS; i++) {
		struct pl_upent **pe = &p->bucket[i];
		while (*pe) {
			struct pl_upent *e = *pe;
			struct pl_upconn *u = e->idle, *next;
			for (; u; u = next) {
				next = u->next;
				if (all || now - u->idle_since >= p->idle_s)
					pl_up_close(u);
			}
			if (e->n_idle == 0) {
				*pe = e->next;
				free(e);
			} else {
				pe = &e->next;
			}
		}
	}
}

void pl_up_sweep(struct pl_worker *w)
{
	sweep(w, 0);
}

void pl_up_close_idle(struct pl_worker *w)
{
	sweep(w, 1);
}

void pl_up_init(struct pl_worker *w)
{
	w->pool = pl_xcalloc(1, sizeof(*w->pool));
	uint64_t ms = w->cfg->idle_timeout_ms ? PL_MIN(w->cfg->idle_timeout_ms, 30000) : 30000;
	w->pool->idle_s = (double)ms / 1000.0;
}

void pl_up_fini(struct pl_worker *w)
{
	if (!w->pool)
		return;
	sweep(w, 1);
	pl_up_reap(w);
	free(w->pool);
	w->pool = NULL;
}
