/*
 * TCP streams and UDP flows (contract in l4.h).
 */
#define _GNU_SOURCE
#include "pl.h"
#include "log.h"
#include "table.h"
#include "buf.h"
#include "l4.h"
#include "router.h"
#include "tls.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define UDP_MAX_DGRAM 65535
#define UDP_BATCH 64

/* ------------------------------------------------------------------ streams */

enum l4_state { L4_CONNECTING = 0, L4_SPLICE, L4_CLOSED };

struct pl_l4conn {
	struct pl_worker *w;
	struct pl_lsock *ls;
	struct pl_wtable *wt;
	struct pl_rule *rule;
	struct pl_cluster *cluster;
	const struct pl_endpoint *ep;
	enum l4_state st;
	int cfd, bfd;
	struct pl_tlsconn *tc;           /* TLSRoute Terminate: the client side is TLS */
	ev_io crio, cwio, brio, bwio;
	ev_timer timer;
	ev_tstamp last_io, connect_start;
	struct pl_budget budget;
	struct pl_buf c2b, b2c;
	uint8_t c_eof, b_eof;            /* read side saw EOF */
	uint8_t c_shut, b_shut;          /* we shut the write side toward client/backend */
	uint8_t cw_blocked, bw_blocked, retried;
	char peer[INET6_ADDRSTRLEN];
	struct pl_l4conn *next, *prev;
};

static void l4_run(struct pl_l4conn *s);

static void l4_close(struct pl_l4conn *s)
{
	if (s->st == L4_CLOSED)
		return;
	struct pl_worker *w = s->w;
	ev_io_stop(w->loop, &s->crio);
	ev_io_stop(w->loop, &s->cwio);
	ev_io_stop(w->loop, &s->brio);
	ev_io_stop(w->loop, &s->bwio);
	ev_timer_stop(w->loop, &s->timer);
	pl_tls_conn_free(s->tc);   /* close_notify unless the connection failed */
	s->tc = NULL;
	close(s->cfd);
	if (s->bfd >= 0)
		close(s->bfd);
	s->cfd = s->bfd = -1;
	pl_buf_free(&s->c2b);
	pl_buf_free(&s->b2c);
	s->st = L4_CLOSED;
	if (s->prev)
		s->prev->next = s->next;
	else
		w->l4 = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = NULL;
	s->next = w->l4_dead;
	w->l4_dead = s;
	atomic_fetch_sub_explicit(&w->n_conns, 1, memory_order_relaxed);
}

static int l4_connect(struct pl_l4conn *s)
{
	const struct pl_endpoint *ep = s->ep;
	int fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&ep->addr, ep->addrlen) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (s->bfd >= 0) {
		ev_io_stop(s->w->loop, &s->brio);
		ev_io_stop(s->w->loop, &s->bwio);
		close(s->bfd);
	}
	s->bfd = fd;
	ev_io_set(&s->brio, fd, EV_READ);
	ev_io_set(&s->bwio, fd, EV_WRITE);
	s->st = L4_CONNECTING;
	s->connect_start = ev_now(s->w->loop);
	ev_io_start(s->w->loop, &s->bwio);
	return 0;
}

/* Connecting failed: one more endpoint, else give up. */
static void l4_connect_failed(struct pl_l4conn *s, int err)
{
	pl_warn("%s: %s: connect to %s (%s) failed: %s", s->peer, s->rule->route, s->ep->text, s->cluster->name,
		strerror(err));
	atomic_fetch_add_explicit(&s->w->upstream_errors, 1, memory_order_relaxed);
	if (!s->retried && s->cluster->n_eps > 1) {
		const struct pl_endpoint *ep = pl_router_endpoint(s->cluster);
		if (ep && ep != s->ep) {
			s->retried = 1;
			s->ep = ep;
			int rc = l4_connect(s);
			if (rc == 0)
				return;
			err = -rc;
		}
	}
	l4_close(s);
}

/* Reads fd into b; 1 on progress. Sets *eof on EOF, returns -1 on a hard error. */
static int pump_read(int fd, struct pl_buf *b, uint8_t *eof)
{
	if (*eof || (b->data && pl_buf_space(b) == 0 && b->off == 0))
		return 0;
	ssize_t n = pl_buf_read_fd(b, fd, 0);
	if (n > 0)
		return 1;
	if (n == 0) {
		*eof = 1;
		return 1;
	}
	if (n == -EAGAIN || n == -ENOBUFS)
		return 0;
	return -1;
}

/* Writes b to fd; 1 on progress, -1 on error. */
static int pump_write(int fd, struct pl_buf *b, uint8_t *blocked)
{
	if (pl_buf_empty(b) || *blocked)
		return 0;
	size_t want = pl_buf_size(b);
	ssize_t n = pl_buf_write_fd(b, fd);
	if (n > 0) {
		if ((size_t)n < want)
			*blocked = 1;
		return 1;
	}
	if (n == -EAGAIN) {
		*blocked = 1;
		return 0;
	}
	return -1;
}

/* Client side: the socket, or the TLS connection on it. */
static int c_read(struct pl_l4conn *s)
{
	if (!s->tc)
		return pump_read(s->cfd, &s->c2b, &s->c_eof);
	if (s->c_eof || (s->c2b.data && pl_buf_space(&s->c2b) == 0 && s->c2b.off == 0))
		return 0;
	ssize_t n = pl_tls_read(s->tc, &s->c2b);
	if (n > 0)
		return 1;
	if (n == 0) {
		s->c_eof = 1;
		return 1;
	}
	if (n == -EAGAIN || n == -ENOBUFS) {
		if (pl_tls_read_wants_write(s->tc))
			s->cw_blocked = 1;   /* the writability event resumes reading too */
		return 0;
	}
	return -1;
}

static int c_write(struct pl_l4conn *s)
{
	if (!s->tc)
		return pump_write(s->cfd, &s->b2c, &s->cw_blocked);
	if (pl_buf_empty(&s->b2c) || s->cw_blocked)
		return 0;
	size_t want = pl_buf_size(&s->b2c);
	ssize_t n = pl_tls_write(s->tc, &s->b2c);
	if (n > 0) {
		if ((size_t)n < want)
			s->cw_blocked = 1;
		return 1;
	}
	if (n == -EAGAIN) {
		s->cw_blocked = 1;
		return 0;
	}
	return -1;
}

/* The backend's EOF toward the client: close_notify first on TLS, then the TCP half-close. */
static void c_shutdown(struct pl_l4conn *s)
{
	if (s->tc)
		pl_tls_close_notify(s->tc);
	shutdown(s->cfd, SHUT_WR);
}

static void l4_watch(struct pl_l4conn *s)
{
	struct ev_loop *loop = s->w->loop;
	int crd = !s->c_eof && (!s->c2b.data || pl_buf_space(&s->c2b) > 0 || s->c2b.off > 0);
	int brd = s->st == L4_SPLICE && !s->b_eof && (!s->b2c.data || pl_buf_space(&s->b2c) > 0 || s->b2c.off > 0);
	if (crd)
		ev_io_start(loop, &s->crio);
	else
		ev_io_stop(loop, &s->crio);
	if (brd)
		ev_io_start(loop, &s->brio);
	else
		ev_io_stop(loop, &s->brio);
	if (s->cw_blocked)
		ev_io_start(loop, &s->cwio);
	else
		ev_io_stop(loop, &s->cwio);
	if (s->st == L4_CONNECTING || s->bw_blocked)
		ev_io_start(loop, &s->bwio);
	else
		ev_io_stop(loop, &s->bwio);
}

static void l4_run(struct pl_l4conn *s)
{
	if (s->st == L4_CONNECTING) {
		/* client bytes are buffered meanwhile (up to one buffer) */
		if (c_read(s) < 0) {
			l4_close(s);
			return;
		}
		if (s->c_eof && pl_buf_empty(&s->c2b)) {
			l4_close(s);   /* client gave up before we reached the backend */
			return;
		}
		l4_watch(s);
		return;
	}
	for (int i = 0; i < 16; i++) {
		int p = 0, r;
		if ((r = c_read(s)) < 0)
			goto fail;
		p |= r;
		if ((r = pump_write(s->bfd, &s->c2b, &s->bw_blocked)) < 0)
			goto fail;
		p |= r;
		if ((r = pump_read(s->bfd, &s->b2c, &s->b_eof)) < 0)
			goto fail;
		p |= r;
		if ((r = c_write(s)) < 0)
			goto fail;
		p |= r;
		if (p)
			s->last_io = ev_now(s->w->loop);
		/* half-close: an EOF travels once everything before it has */
		if (s->c_eof && pl_buf_empty(&s->c2b) && !s->b_shut) {
			shutdown(s->bfd, SHUT_WR);
			s->b_shut = 1;
		}
		if (s->b_eof && pl_buf_empty(&s->b2c) && !s->c_shut) {
			c_shutdown(s);
			s->c_shut = 1;
		}
		if (s->b_shut && s->c_shut) {
			l4_close(s);
			return;
		}
		if (!p)
			break;
	}
	pl_buf_shrink_if_empty(&s->c2b);
	pl_buf_shrink_if_empty(&s->b2c);
	l4_watch(s);
	/* decrypted bytes held by OpenSSL never make the socket readable again */
	if (s->tc && !s->c_eof && pl_tls_pending(s->tc) && ev_is_active(&s->crio))
		ev_feed_event(s->w->loop, &s->crio, EV_READ);
	return;
fail:
	pl_debug("%s: %s: stream ended by an error", s->peer, s->rule->route);
	l4_close(s);
}

static void on_c_read(struct ev_loop *loop, ev_io *io, int revents)
{
	l4_run(io->data);
}

static void on_c_write(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_l4conn *s = io->data;
	s->cw_blocked = 0;
	l4_run(s);
}

static void on_b_read(struct ev_loop *loop, ev_io *io, int revents)
{
	l4_run(io->data);
}

static void on_b_write(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_l4conn *s = io->data;
	if (s->st == L4_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(s->bfd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err) {
			l4_connect_failed(s, err);
			return;
		}
		s->st = L4_SPLICE;
		s->last_io = ev_now(loop);
	}
	s->bw_blocked = 0;
	l4_run(s);
}

static double idle_s(const struct pl_l4conn *s)
{
	return (double)s->w->cfg->idle_timeout_ms / 1000.0;
}

static void on_l4_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct pl_l4conn *s = t->data;
	ev_tstamp now = ev_now(loop);
	if (s->st == L4_CONNECTING) {
		double ct = (double)s->w->cfg->connect_timeout_ms / 1000.0;
		if (now - s->connect_start >= ct) {
			l4_connect_failed(s, ETIMEDOUT);
			if (s->st == L4_CLOSED)
				return;
		}
	} else if (now - s->last_io >= idle_s(s)) {
		pl_info("%s: %s: idle for %.0f s; closing the stream", s->peer, s->rule->route, idle_s(s));
		l4_close(s);
		return;
	}
	ev_timer_set(t, 1.0, 0.);
	ev_timer_start(loop, t);
}

void pl_l4_stream(struct pl_worker *w, struct pl_lsock *ls, int fd, const char *peer, struct pl_wtable *wt,
		  struct pl_rule *rule)
{
	pl_l4_stream_tls(w, ls, fd, peer, wt, rule, NULL);
}

void pl_l4_stream_tls(struct pl_worker *w, struct pl_lsock *ls, int fd, const char *peer, struct pl_wtable *wt,
		      struct pl_rule *rule, struct pl_tlsconn *tc)
{
	const struct pl_backend *be = pl_router_pick(rule);
	const struct pl_endpoint *ep = be && be->cluster ? pl_router_endpoint(be->cluster) : NULL;
	if (!ep) {
		pl_warn("%s: %s: %s; closing", peer, rule->route,
			!be || !be->cluster ? "no valid backend" : "no ready endpoint");
		pl_tls_conn_free(tc);
		close(fd);
		return;
	}
	struct pl_l4conn *s = calloc(1, sizeof(*s));
	if (!s) {
		pl_tls_conn_free(tc);
		close(fd);
		return;
	}
	s->tc = tc;
	s->w = w;
	s->ls = ls;
	pl_lsock_get(ls);
	s->wt = wt;
	pl_wtable_get(wt);
	s->rule = rule;
	s->cluster = be->cluster;
	s->ep = ep;
	s->cfd = fd;
	s->bfd = -1;
	snprintf(s->peer, sizeof(s->peer), "%s", peer);
	s->budget.limit = 4 * (size_t)PL_BUF_STD;
	pl_buf_init(&s->c2b, &s->budget);
	pl_buf_init(&s->b2c, &s->budget);
	ev_io_init(&s->crio, on_c_read, fd, EV_READ);
	ev_io_init(&s->cwio, on_c_write, fd, EV_WRITE);
	ev_init(&s->brio, on_b_read);
	ev_init(&s->bwio, on_b_write);
	ev_init(&s->timer, on_l4_timer);
	s->crio.data = s->cwio.data = s->brio.data = s->bwio.data = s->timer.data = s;
	s->last_io = ev_now(w->loop);
	s->next = w->l4;
	if (w->l4)
		w->l4->prev = s;
	w->l4 = s;
	atomic_fetch_add_explicit(&w->n_conns, 1, memory_order_relaxed);
	ev_timer_set(&s->timer, 1.0, 0.);
	ev_timer_start(w->loop, &s->timer);
	int rc = l4_connect(s);
	if (rc != 0) {
		l4_connect_failed(s, -rc);
		return;
	}
	l4_run(s);
}

static void peer_text(const struct sockaddr *sa, char *buf, size_t n)
{
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)n);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)n);
	else
		snprintf(buf, n, "unknown");
}

struct pl_rule *pl_l4_bind_rule(const struct pl_lsock *ls)
{
	const struct pl_bind *b = ls->bind;
	if (!b)
		return NULL;
	/* TCP/UDP listeners carry no hostnames that traffic could select by: the first vhost's first entry */
	for (uint32_t i = 0; i < b->n_listeners; i++)
		for (uint32_t v = 0; v < b->listeners[i].n_vhosts; v++)
			if (b->listeners[i].vhosts[v].n_entries)
				return b->listeners[i].vhosts[v].entries[0].rule;
	return NULL;
}

void pl_l4_tcp_accept(struct pl_worker *w, struct pl_lsock *ls, int fd, const struct sockaddr *sa, socklen_t salen)
{
	char peer[INET6_ADDRSTRLEN];
	peer_text(sa, peer, sizeof(peer));
	struct pl_rule *r = w->wt ? pl_l4_bind_rule(ls) : NULL;
	if (!r) {
		pl_info("%s: TCP %s:%u: no TCPRoute attached; closing", peer, ls->address, ls->port);
		close(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pl_l4_stream(w, ls, fd, peer, w->wt, r);
}

/* --------------------------------------------------------------------- UDP */

struct pl_udpsess {
	struct pl_worker *w;
	struct pl_lsock *ls;
	struct pl_wtable *wt;
	int fd;                          /* connected to the endpoint */
	int closed;
	ev_io io;
	ev_tstamp last_io;
	struct sockaddr_storage client;
	socklen_t client_len;
	char route[128];
	struct pl_udpsess *next, *prev;
};

static __thread char dgram[UDP_MAX_DGRAM];

static void udp_close(struct pl_udpsess *u)
{
	if (u->closed)
		return;
	struct pl_worker *w = u->w;
	u->closed = 1;
	ev_io_stop(w->loop, &u->io);
	close(u->fd);
	u->fd = -1;
	if (u->prev)
		u->prev->next = u->next;
	else
		w->udp = u->next;
	if (u->next)
		u->next->prev = u->prev;
	u->prev = NULL;
	u->next = w->udp_dead;
	w->udp_dead = u;
	w->n_udp--;
}

static void on_udp_reply(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_udpsess *u = io->data;
	for (int i = 0; i < UDP_BATCH; i++) {
		ssize_t n = recv(u->fd, dgram, sizeof(dgram), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				pl_debug("UDP flow %s: %s", u->route, strerror(errno));   /* e.g. ICMP refused: keep the flow */
			return;
		}
		u->last_io = ev_now(loop);
		if (u->ls->fd >= 0)
			sendto(u->ls->fd, dgram, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&u->client, u->client_len);
	}
}

static int same_addr(const struct sockaddr_storage *a, socklen_t al, const struct sockaddr_storage *b, socklen_t bl)
{
	return al == bl && memcmp(a, b, al) == 0;
}

static struct pl_udpsess *udp_flow(struct pl_worker *w, struct pl_lsock *ls, const struct sockaddr_storage *ss,
				   socklen_t sl)
{
	for (struct pl_udpsess *u = w->udp; u; u = u->next)
		if (u->ls == ls && same_addr(&u->client, u->client_len, ss, sl))
			return u;
	if (w->n_udp >= w->cfg->max_conns || w->draining)
		return NULL;
	struct pl_rule *r = w->wt ? pl_l4_bind_rule(ls) : NULL;
	const struct pl_backend *be = r ? pl_router_pick(r) : NULL;
	const struct pl_endpoint *ep = be && be->cluster ? pl_router_endpoint(be->cluster) : NULL;
	if (!ep)
		return NULL;
	int fd = socket(ep->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	if (connect(fd, (const struct sockaddr *)&ep->addr, ep->addrlen) < 0) {
		close(fd);
		return NULL;
	}
	struct pl_udpsess *u = calloc(1, sizeof(*u));
	if (!u) {
		close(fd);
		return NULL;
	}
	u->w = w;
	u->ls = ls;
	pl_lsock_get(ls);
	u->wt = w->wt;
	pl_wtable_get(u->wt);
	u->fd = fd;
	memcpy(&u->client, ss, sl);
	u->client_len = sl;
	snprintf(u->route, sizeof(u->route), "%s -> %s", r->route, ep->text);
	ev_io_init(&u->io, on_udp_reply, fd, EV_READ);
	u->io.data = u;
	ev_io_start(w->loop, &u->io);
	u->last_io = ev_now(w->loop);
	u->next = w->udp;
	if (w->udp)
		w->udp->prev = u;
	w->udp = u;
	w->n_udp++;
	return u;
}

void pl_l4_udp_read(struct pl_worker *w, struct pl_lsock *ls)
{
	for (int i = 0; i < UDP_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		ssize_t n = recvfrom(ls->fd, dgram, sizeof(dgram), 0, (struct sockaddr *)&ss, &sl);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		struct pl_udpsess *u = udp_flow(w, ls, &ss, sl);
		if (!u)
			continue;   /* no route, no endpoint or too many flows: dropped */
		u->last_io = ev_now(w->loop);
		send(u->fd, dgram, (size_t)n, MSG_DONTWAIT);
	}
}

/* ------------------------------------------------------------------ worker hooks */

void pl_l4_reap(struct pl_worker *w)
{
	while (w->l4_dead) {
		struct pl_l4conn *s = w->l4_dead;
		w->l4_dead = s->next;
		pl_wtable_put(s->wt);
		pl_lsock_put(s->ls);
		free(s);
	}
	while (w->udp_dead) {
		struct pl_udpsess *u = w->udp_dead;
		w->udp_dead = u->next;
		pl_wtable_put(u->wt);
		pl_lsock_put(u->ls);
		free(u);
	}
}

void pl_l4_sweep(struct pl_worker *w)
{
	ev_tstamp now = ev_now(w->loop);
	double idle = (double)w->cfg->idle_timeout_ms / 1000.0;
	struct pl_udpsess *u, *next;
	for (u = w->udp; u; u = next) {
		next = u->next;
		if (now - u->last_io >= idle || u->ls->fd < 0)
			udp_close(u);
	}
}

void pl_l4_drain(struct pl_worker *w)
{
	while (w->udp)
		udp_close(w->udp);
}

void pl_l4_close_all(struct pl_worker *w)
{
	while (w->l4)
		l4_close(w->l4);
	while (w->udp)
		udp_close(w->udp);
}
