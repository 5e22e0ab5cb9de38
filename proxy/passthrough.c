/*
 * TLS listeners: route by the SNI of a peeked ClientHello (contract in
 * passthrough.h).
 *
 * Peeking leaves the bytes in the socket, so the backend (or the TLS
 * engine) sees the stream from its first byte. A ClientHello split over
 * several segments makes the socket readable while the peeked prefix is
 * incomplete: level-triggered readiness would spin, so the read watcher is
 * stopped and the socket re-peeked on a short timer instead.
 */
#include "pl.h"
#include "log.h"
#include "table.h"
#include "clienthello.h"
#include "l4.h"
#include "passthrough.h"
#include "router.h"
#include "tls.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define REPEEK_S 0.005

struct pl_ptconn {
	struct pl_worker *w;
	struct pl_lsock *ls;
	int fd;
	int closed;
	size_t last_peek;                /* bytes seen by the previous peek */
	ev_io io;
	ev_timer repeek, deadline;
	struct sockaddr_storage sa;
	socklen_t salen;
	char peer[INET6_ADDRSTRLEN];
	struct pl_ptconn *next, *prev;
};

static __thread uint8_t peekbuf[PL_CH_MAX_INPUT];

static void pt_close(struct pl_ptconn *c, int keep_fd)
{
	if (c->closed)
		return;
	struct pl_worker *w = c->w;
	c->closed = 1;
	ev_io_stop(w->loop, &c->io);
	ev_timer_stop(w->loop, &c->repeek);
	ev_timer_stop(w->loop, &c->deadline);
	if (!keep_fd)
		close(c->fd);
	c->fd = -1;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->pt = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = w->pt_dead;
	w->pt_dead = c;
	atomic_fetch_sub_explicit(&w->n_conns, 1, memory_order_relaxed);
}

static void refuse(struct pl_ptconn *c, const char *sni, const char *why)
{
	pl_info("%s: TLS %s:%u: refused (sni \"%s\"): %s", c->peer, c->ls->address, c->ls->port, sni, why);
	pt_close(c, 0);
}

struct pl_rule *pl_pt_rule(const struct pl_listener *l, const char *sni)
{
	size_t n = strlen(sni);
	for (uint32_t v = 0; v < l->n_vhosts; v++) {
		const struct pl_vhost *vh = &l->vhosts[v];
		if (!vh->n_entries)
			continue;
		if (n ? pl_hostname_matches(&vh->host, sni, n) : vh->host.kind == PL_HOST_ANY)
			return vh->entries[0].rule;
	}
	return NULL;
}

/* The listener for sni on bind b (as the router picks one for a Host); no SNI: one without hostname. */
static const struct pl_listener *pick(const struct pl_bind *b, const char *sni)
{
	size_t n = strlen(sni);
	if (n)
		return pl_router_listener(b, sni, (uint32_t)n);
	for (uint32_t i = 0; i < b->n_listeners; i++)
		if (b->listeners[i].host.kind == PL_HOST_ANY)
			return &b->listeners[i];
	return NULL;
}

static int terminates(const struct pl_listener *l)
{
	return l->proto == PL_PROTO_HTTPS || (l->tls && l->tls->mode == PL_TLS_TERMINATE);
}

static void pt_try(struct pl_ptconn *c)
{
	struct pl_worker *w = c->w;
	ssize_t n;
	do
		n = recv(c->fd, peekbuf, sizeof(peekbuf), MSG_PEEK);
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		pt_close(c, 0);   /* closed before a ClientHello: nothing to say */
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			ev_io_start(w->loop, &c->io);
			return;
		}
		pt_close(c, 0);
		return;
	}
	struct pl_clienthello ch;
	int rc = pl_clienthello_parse(peekbuf, (size_t)n, &ch);
	if (rc == PL_CH_MORE) {
		if ((size_t)n >= sizeof(peekbuf)) {
			refuse(c, "", pl_clienthello_strerror(PL_CH_E_TOO_BIG));
			return;
		}
		/* wait for more without spinning on the bytes already there */
		c->last_peek = (size_t)n;
		ev_io_stop(w->loop, &c->io);
		ev_timer_set(&c->repeek, REPEEK_S, 0.);
		ev_timer_start(w->loop, &c->repeek);
		return;
	}
	if (rc < 0) {
		refuse(c, "", pl_clienthello_strerror(rc));
		return;
	}
	const struct pl_bind *b = c->ls->bind;
	if (!w->wt || !b) {
		refuse(c, ch.sni, "listener removed from the configuration");
		return;
	}
	const struct pl_listener *l = pick(b, ch.sni);
	int any_term = 0;
	for (uint32_t i = 0; i < b->n_listeners; i++)
		any_term |= terminates(&b->listeners[i]);
	if ((l && terminates(l)) || (!l && any_term)) {
		/*
		 * HTTPS or TLSRoute Terminate listener (or, on a mixed port, a name no
		 * passthrough listener owns: the TLS engine serves its default
		 * certificate, as on a pure HTTPS port). The ClientHello is still in
		 * the socket for OpenSSL to read.
		 */
		int fd = c->fd;
		struct pl_lsock *ls = c->ls;
		struct sockaddr_storage sa = c->sa;
		socklen_t salen = c->salen;
		pl_lsock_get(ls);
		pt_close(c, 1);
		pl_tls_accept(w, ls, fd, (struct sockaddr *)&sa, salen);
		pl_lsock_put(ls);
		return;
	}
	if (!l) {
		refuse(c, ch.sni, ch.sni_len ? "no listener for this server name" : "no server name (SNI)");
		return;
	}
	struct pl_rule *rule = pl_pt_rule(l, ch.sni);
	if (!rule) {
		refuse(c, ch.sni, ch.sni_len ? "no TLSRoute for this server name" : "no server name (SNI)");
		return;
	}
	int fd = c->fd;
	struct pl_lsock *ls = c->ls;
	char peer[INET6_ADDRSTRLEN];
	memcpy(peer, c->peer, sizeof(peer));
	pt_close(c, 1);
	pl_l4_stream(w, ls, fd, peer, w->wt, rule);
}

static void on_pt_io(struct ev_loop *loop, ev_io *io, int revents)
{
	pt_try(io->data);
}

static void on_repeek(struct ev_loop *loop, ev_timer *t, int revents)
{
	pt_try(t->data);
}

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
	refuse(t->data, "", "no complete ClientHello in time");
}

void pl_pt_accept(struct pl_worker *w, struct pl_lsock *ls, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct pl_ptconn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->w = w;
	c->ls = ls;
	pl_lsock_get(ls);
	c->fd = fd;
	if (salen > sizeof(c->sa))
		salen = sizeof(c->sa);
	memcpy(&c->sa, sa, salen);
	c->salen = salen;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof(c->peer));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof(c->peer));
	else
		snprintf(c->peer, sizeof(c->peer), "unknown");
	ev_io_init(&c->io, on_pt_io, fd, EV_READ);
	ev_init(&c->repeek, on_repeek);
	ev_timer_init(&c->deadline, on_deadline, (double)w->cfg->header_timeout_ms / 1000.0, 0.);
	c->io.data = c->repeek.data = c->deadline.data = c;
	ev_timer_start(w->loop, &c->deadline);
	c->next = w->pt;
	if (w->pt)
		w->pt->prev = c;
	w->pt = c;
	atomic_fetch_add_explicit(&w->n_conns, 1, memory_order_relaxed);
	ev_io_start(w->loop, &c->io);
}

void pl_pt_reap(struct pl_worker *w)
{
	while (w->pt_dead) {
		struct pl_ptconn *c = w->pt_dead;
		w->pt_dead = c->next;
		pl_lsock_put(c->ls);
		free(c);
	}
}

void pl_pt_close_all(struct pl_worker *w)
{
	while (w->pt)
		pt_close(w->pt, 0);
}
