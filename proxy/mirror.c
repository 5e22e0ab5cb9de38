#define _GNU_SOURCE
#include "pl.h"
#include "log.h"
#include "buf.h"
#include "mirror.h"
#include "router.h"
#include "upstream.h"
#include "worker.h"

#include <errno.h>
#include <sys/socket.h>

struct mirror {
	struct pl_worker *w;
	struct pl_upconn *u;
	struct pl_buf out;
	ev_timer timer;
	struct mirror *next, *prev;   /* worker's live list, then its dead list */
};

static void mirror_done(struct mirror *m)
{
	struct pl_worker *w = m->w;
	if (m->u)
		pl_up_close(m->u);
	m->u = NULL;
	ev_timer_stop(w->loop, &m->timer);
	pl_buf_free(&m->out);
	w->n_mirrors--;
	if (m->prev)
		m->prev->next = m->next;
	else
		w->mirrors = m->next;
	if (m->next)
		m->next->prev = m->prev;
	m->prev = NULL;
	m->next = w->mirror_dead;
	w->mirror_dead = m;
}

static void mirror_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct mirror *m = t->data;
	pl_debug("mirror to %s: timed out", m->u ? m->u->peer : "?");
	mirror_done(m);
}

/* Fire and forget: send, read and discard the answer until the backend closes. */
static void mirror_cb(struct pl_upconn *u, int ev)
{
	struct mirror *m = u->data;
	switch (ev) {
	case PL_UP_EV_ERROR:
		pl_debug("mirror to %s: connect failed: %s", u->peer, strerror(u->err));
		mirror_done(m);
		return;
	case PL_UP_EV_CONNECTED:
	case PL_UP_EV_WRITE: {
		/* pl_up_send: the mirror cluster may be TLS (BackendTLSPolicy) */
		ssize_t n = 0;
		while (!pl_buf_empty(&m->out)) {
			n = pl_up_send(u, pl_buf_rptr(&m->out), pl_buf_size(&m->out));
			if (n <= 0)
				break;
			pl_buf_consume(&m->out, (size_t)n);
		}
		if (n < 0 && n != -EAGAIN) {
			mirror_done(m);
			return;
		}
		pl_up_want(u, 1, !pl_buf_empty(&m->out));
		return;
	}
	case PL_UP_EV_READ: {
		/* the response is discarded: read it and drop it */
		ssize_t n;
		while ((n = pl_up_read(u)) > 0)
			pl_buf_consume(&u->in, pl_buf_size(&u->in));
		if (n != -EAGAIN)
			mirror_done(m);
		return;
	}
	}
}

/*
 * Starts a mirror of the request whose upstream head is head[0, len) (ending
 * in CRLFCRLF) and whose body, if any, is body[0, blen).
 */
void pl_mirror_start(struct pl_worker *w, const struct pl_mirror *mi, const char *head, size_t len,
		     const char *body, size_t blen)
{
	if (!mi->cluster || w->n_mirrors >= PL_MIRRORS_INFLIGHT)
		return;
	if (mi->percent_den && mi->percent_num < mi->percent_den) {
		uint64_t seq = w->mirror_seq++;
		if ((seq * mi->percent_num) % mi->percent_den >= mi->percent_num)
			return;
	}
	const struct pl_endpoint *ep = pl_router_endpoint(mi->cluster);
	if (!ep) {
		pl_debug("mirror %s: no ready endpoint", mi->cluster->name);
		return;
	}
	struct mirror *m = calloc(1, sizeof(*m));
	if (!m)
		return;
	m->w = w;
	pl_buf_init(&m->out, NULL);
	static const char conn_close_hdr[] = "Connection: close\r\n\r\n";
	if (pl_buf_reserve(&m->out, len + sizeof(conn_close_hdr) + blen) != 0) {
		free(m);
		return;
	}
	pl_buf_put(&m->out, head, len - 2);
	pl_buf_put(&m->out, conn_close_hdr, sizeof(conn_close_hdr) - 1);
	if (blen)
		pl_buf_put(&m->out, body, blen);
	int err = 0;
	m->u = pl_up_connect(w, mi->cluster, ep, 1, mirror_cb, m, &err);
	if (!m->u) {
		pl_debug("mirror to %s: %s", ep->text, strerror(-err));
		pl_buf_free(&m->out);
		free(m);
		return;
	}
	w->n_mirrors++;
	m->next = w->mirrors;
	if (m->next)
		((struct mirror *)m->next)->prev = m;
	w->mirrors = m;
	uint64_t ms = w->cfg->backend_timeout_ms ? PL_MIN(w->cfg->backend_timeout_ms, 30000) : 30000;
	ev_timer_init(&m->timer, mirror_timeout, (double)ms / 1000.0, 0.);
	m->timer.data = m;
	ev_timer_start(w->loop, &m->timer);
	if (m->u->st == PL_UP_READY)
		pl_up_want(m->u, 1, 1);
}

void pl_mirror_reap(struct pl_worker *w)
{
	while (w->mirror_dead) {
		struct mirror *m = w->mirror_dead;
		w->mirror_dead = m->next;
		free(m);
	}
}

void pl_mirror_close_all(struct pl_worker *w)
{
	while (w->mirrors)
		mirror_done(w->mirrors);
}
