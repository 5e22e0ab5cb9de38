#define _GNU_SOURCE /* accept4, pipe2 */
#include "pl.h"
#include "log.h"
#include "table-t.h"
#include "upstream.h"
#include "uptls.h"
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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

static void key_init(struct pl_upkey *k, uint32_t cluster_id, uint64_t tls_fp, const struct pl_endpoint *ep)
{
	memset(k, 0, sizeof(*k));
	k->cluster_id = cluster_id;
	k->tls_fp = tls_fp;
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
	return a->cluster_id == b->cluster_id && a->tls_fp == b->tls_fp && a->addrlen == b->addrlen &&
	       memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

static unsigned key_hash(const struct pl_upkey *k)
{
	uint32_t h = (2166136261u ^ k->cluster_id) * 16777619u ^ (uint32_t)(k->tls_fp ^ (k->tls_fp >> 32));
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
	if (u->ssl) {
		/* close_notify is best effort on a non-blocking socket; a failed handshake sends none */
		if (!u->hs_tls && !(SSL_get_shutdown(u->ssl) & SSL_SENT_SHUTDOWN))
			SSL_shutdown(u->ssl);
		ERR_clear_error();
		SSL_free(u->ssl);
		u->ssl = NULL;
	}
	u->hs_tls = NULL;
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

static void hs_fail(struct pl_upconn *u, const char *why)
{
	const struct pl_backend_tls *bt = u->hs_tls;
	snprintf(u->errmsg, sizeof(u->errmsg), "TLS to backend %s: %s", u->peer, why);
	pl_warn("cluster %s: TLS to backend %s (BackendTLSPolicy %s, hostname %s): %s", u->cluster, u->peer,
		bt && bt->policy ? bt->policy : "?", bt && bt->sni ? bt->sni : "-", why);
	ev_io_stop(u->w->loop, &u->rio);
	ev_io_stop(u->w->loop, &u->wio);
	u->err = EPROTO;
	u->cb(u, PL_UP_EV_ERROR);
}

/* Drives the client handshake; CONNECTED only once the peer is verified. */
static void hs_step(struct pl_upconn *u)
{
	struct ev_loop *loop = u->w->loop;
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(u->ssl);
	if (r == 1) {
		char why[160];
		if (pl_uptls_check_names(u->ssl, u->hs_tls, why, sizeof(why)) != 0) {
			hs_fail(u, why);
			return;
		}
		u->hs_tls = NULL;
		ev_io_stop(loop, &u->rio);
		ev_io_stop(loop, &u->wio);
		u->st = PL_UP_READY;
		u->cb(u, PL_UP_EV_CONNECTED);
		return;
	}
	int e = SSL_get_error(u->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		ev_io_stop(loop, &u->wio);
		ev_io_start(loop, &u->rio);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		ev_io_stop(loop, &u->rio);
		ev_io_start(loop, &u->wio);
		return;
	}
	char why[160];
	pl_uptls_error(u->ssl, e, why, sizeof(why));
	hs_fail(u, why);
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
	if (u->hs_tls) {
		hs_step(u);
		return;
	}
	u->st = PL_UP_READY;
	u->cb(u, PL_UP_EV_CONNECTED);
}

/*
 * An idle TLS connection may still receive records that carry no data (TLS
 * 1.3 session tickets arrive after the handshake): those keep it pooled,
 * anything else (data, alert, EOF) ends it. 1 if it stays.
 */
static int idle_tls_ok(struct pl_upconn *u)
{
	char tmp[64];
	ERR_clear_error();
	int r = SSL_read(u->ssl, tmp, sizeof(tmp));
	int ok = r <= 0 && SSL_get_error(u->ssl, r) == SSL_ERROR_WANT_READ;
	ERR_clear_error();
	return ok;
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_upconn *u = io->data;
	if (u->st == PL_UP_IDLE && u->ssl && idle_tls_ok(u))
		return;
	if (u->st == PL_UP_CONNECTING && u->hs_tls) {
		hs_step(u);
		return;
	}
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
		if (u->hs_tls && SSL_in_init(u->ssl) && SSL_get_state(u->ssl) != TLS_ST_BEFORE)
			hs_step(u);
		else
			connect_done(u);
		return;
	}
	if (u->rd_wants_write) {
		u->rd_wants_write = 0;
		if (u->cb)
			u->cb(u, PL_UP_EV_READ);
		return;
	}
	if (u->cb)
		u->cb(u, PL_UP_EV_WRITE);
}

static struct pl_upconn *up_new(struct pl_worker *w, const struct pl_upkey *k, const struct pl_endpoint *ep,
				const struct pl_backend_tls *bt, int *err)
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
	if (bt) {
		char why[160];
		u->ssl = pl_uptls_new(bt, fd, why, sizeof(why));
		if (!u->ssl) {
			pl_warn("upstream %s: TLS set-up failed: %s", u->peer, why);
			close(fd);
			free(u);
			*err = -EPROTO;
			return NULL;
		}
		u->hs_tls = bt;
	}
	int rc;
	do
		rc = connect(fd, (const struct sockaddr *)&k->addr, k->addrlen);
	while (rc < 0 && errno == EINTR);
	if (rc == 0 && !bt) {
		u->st = PL_UP_READY;
	} else if (rc == 0 || errno == EINPROGRESS) {
		/* TLS: the handshake starts from the write watcher, never inside pl_up_connect() */
		u->st = PL_UP_CONNECTING;
		ev_io_start(w->loop, &u->wio);
	} else {
		*err = -errno;
		if (u->ssl)
			SSL_free(u->ssl);
		close(fd);
		free(u);
		return NULL;
	}
	return u;
}

static struct pl_upconn *get(struct pl_worker *w, uint32_t cluster_id, const struct pl_backend_tls *bt,
			     const char *cname, const struct pl_endpoint *ep, int fresh,
			     void (*cb)(struct pl_upconn *, int), void *data, int *err)
{
	struct pl_upkey k;
	key_init(&k, cluster_id, bt ? (bt->fingerprint ? bt->fingerprint : 1) : 0, ep);
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
		u = up_new(w, &k, ep, bt, err);
		if (!u)
			return NULL;
	}
	u->cb = cb;
	u->data = data;
	u->err = 0;
	u->errmsg[0] = '\0';
	/* per request: a bounded copy, not snprintf (which cost ~4% of a proxied request's CPU) */
	if (!cname)
		cname = "?";
	size_t cl = strnlen(cname, sizeof(u->cluster) - 1);
	memcpy(u->cluster, cname, cl);
	u->cluster[cl] = '\0';
	return u;
}

struct pl_upconn *pl_up_connect(struct pl_worker *w, const struct pl_cluster *cl, const struct pl_endpoint *ep,
				int fresh, void (*cb)(struct pl_upconn *, int), void *data, int *err)
{
	if (cl->tls && cl->tls->error) {
		pl_uptls_warn_unusable(cl, w->wt ? w->wt->t->generation : 0);
		*err = -EPROTO;
		return NULL;
	}
	return get(w, cl->id, cl->tls, cl->name, ep, fresh, cb, data, err);
}

ssize_t pl_up_read(struct pl_upconn *u)
{
	if (!u->ssl)
		return pl_buf_read_fd(&u->in, u->fd, 0);
	struct pl_buf *b = &u->in;
	ssize_t rr = pl_buf_read_room(b);
	if (rr < 0)
		return rr;
	size_t room = (size_t)rr;
	u->rd_wants_write = 0;
	ERR_clear_error();
	errno = 0;
	int r = SSL_read(u->ssl, b->data + b->len, room > INT32_MAX ? INT32_MAX : (int)room);
	if (r > 0) {
		b->len += (uint32_t)r;
		return r;
	}
	int e = SSL_get_error(u->ssl, r);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		u->rd_wants_write = 1;
		ev_io_start(u->w->loop, &u->wio);
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0)
			return errno ? -errno : 0;   /* TCP EOF without close_notify: EOF, framing decides */
		/* fall through */
	default:
		ERR_clear_error();
		return -EPROTO;
	}
}

ssize_t pl_up_send(struct pl_upconn *u, const void *p, size_t n)
{
	if (!u->ssl) {
		ssize_t r;
		do
			r = send(u->fd, p, n, MSG_NOSIGNAL);
		while (r < 0 && errno == EINTR);
		if (r >= 0)
			return r;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
	if (n == 0)
		return 0;
	ERR_clear_error();
	errno = 0;
	int r = SSL_write(u->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
	if (r > 0)
		return r;
	int e = SSL_get_error(u->ssl, r);
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
		return -EAGAIN;   /* renegotiation is off: WANT_READ is not expected after the handshake */
	if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno)
		return -errno;
	ERR_clear_error();
	return -EPIPE;
}

void pl_up_want(struct pl_upconn *u, int read, int write)
{
	if (u->st != PL_UP_READY)
		return;
	if (read)
		ev_io_start(u->w->loop, &u->rio);
	else
		ev_io_stop(u->w->loop, &u->rio);
	if (write || (read && u->rd_wants_write))
		ev_io_start(u->w->loop, &u->wio);
	else
		ev_io_stop(u->w->loop, &u->wio);
	/* decrypted bytes inside OpenSSL: the socket will not signal them */
	if (read && u->ssl && SSL_pending(u->ssl) > 0)
		ev_feed_event(u->w->loop, &u->rio, EV_READ);
}

void pl_up_release(struct pl_upconn *u, int reusable)
{
	struct pl_worker *w = u->w;
	if (!reusable || u->st != PL_UP_READY || !pl_buf_empty(&u->in) || w->draining ||
	    (u->ssl && (SSL_pending(u->ssl) > 0 || SSL_get_shutdown(u->ssl)))) {
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
	u->rd_wants_write = 0;
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
