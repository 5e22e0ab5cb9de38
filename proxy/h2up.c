/*
 * h2c client sessions to backends (contract in h2up.h).
 *
 * I/O happens only in this file's watchers: the owner's calls (open,
 * resume, consume, detach) queue frames in nghttp2 and arm the write
 * watcher, so no owner callback ever runs inside an owner's call, and
 * nghttp2 is never re-entered from its own callbacks.
 */
#define _GNU_SOURCE
#include "pl.h"
#include "log.h"
#include "table-t.h"
#include "h2up.h"
#include "worker.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define STREAM_WINDOW (64 * 1024)
#define CONN_WINDOW (1024 * 1024)
#define MAX_RESP_FIELDS 100
#define MAX_RESP_HEADER_BYTES (64 * 1024)
#define OUT_CAP (64 * 1024)          /* frames copied out of nghttp2 before a send() */
#define IDLE_S 60.0                  /* a session without streams closes after this */
#define DEFAULT_CONNECT_S 5.0

struct sess;

struct pl_h2up_stream {
	struct sess *ss;
	struct pl_h2up_stream *next, *prev;
	int32_t id;
	const struct pl_h2up_ops *ops;   /* NULL once detached or reported closed */
	void *data;
	size_t unconsumed;               /* DATA bytes delivered, not yet credited back */
	uint8_t head_seen;               /* final (non-1xx) response head delivered */
	/* the header block being received */
	nghttp2_nv nv[MAX_RESP_FIELDS];
	size_t n_nv;
	char *hb;                        /* names and values; nv holds offsets until the block ends */
	size_t hb_len, hb_cap;
	int status;
	uint8_t h_over;
};

struct sess {
	struct sess *next, *prev;
	struct pl_worker *w;
	uint32_t cluster_id;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char peer[64];
	char cluster[96];
	int fd;
	nghttp2_session *s;
	ev_io rio, wio;
	ev_timer timer;
	uint8_t connecting, dead, in_recv;
	unsigned n_streams;
	struct pl_h2up_stream *streams;
	uint8_t *ob;                     /* frames not yet written: ob[ob_off, ob_len) */
	size_t ob_len, ob_off;
};

static __thread struct {
	struct pl_worker *w;
	struct sess *live, *dead;
	ev_prepare reaper;
	int init;
} P;

static nghttp2_session_callbacks *cbs;
static nghttp2_option *opts;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void sess_fail(struct sess *ss, const char *why);

/* ------------------------------------------------------------ streams */

static void stream_unlink(struct pl_h2up_stream *st)
{
	struct sess *ss = st->ss;
	if (st->prev)
		st->prev->next = st->next;
	else
		ss->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	ss->n_streams--;
	free(st->hb);
	free(st);
	if (ss->n_streams == 0 && !ss->dead) {
		ev_timer_stop(ss->w->loop, &ss->timer);
		ev_timer_set(&ss->timer, IDLE_S, 0.);
		ev_timer_start(ss->w->loop, &ss->timer);
	}
}

static void report_close(struct pl_h2up_stream *st, int failed, const char *why)
{
	const struct pl_h2up_ops *ops = st->ops;
	if (!ops)
		return;
	st->ops = NULL;
	ops->on_close(st->data, failed, why);
}

/* --------------------------------------------------- nghttp2 callbacks */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
	struct pl_h2up_stream *st = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
	if (st) {
		st->n_nv = 0;
		st->hb_len = 0;
		st->status = 0;
		st->h_over = 0;
	}
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct pl_h2up_stream *st = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
	if (!st || !st->ops)
		return 0;
	if (nl == 7 && !memcmp(name, ":status", 7)) {
		int v = 0;
		for (size_t i = 0; i < vl && i < 3; i++)
			v = v * 10 + (value[i] - '0');
		st->status = v;
		return 0;
	}
	if (nl && name[0] == ':')
		return 0;
	if (st->n_nv == MAX_RESP_FIELDS || st->hb_len + nl + vl > MAX_RESP_HEADER_BYTES) {
		st->h_over = 1;
		return 0;
	}
	if (st->hb_len + nl + vl > st->hb_cap) {
		size_t cap = PL_MAX(st->hb_cap ? st->hb_cap * 2 : 1024, st->hb_len + nl + vl);
		cap = PL_MIN(cap, (size_t)MAX_RESP_HEADER_BYTES);
		char *nb = realloc(st->hb, cap);
		if (!nb) {
			st->h_over = 1;
			return 0;
		}
		st->hb = nb;
		st->hb_cap = cap;
	}
	/* offsets while hb may still move; pointers once the block is complete */
	memcpy(st->hb + st->hb_len, name, nl);
	memcpy(st->hb + st->hb_len + nl, value, vl);
	st->nv[st->n_nv++] = (nghttp2_nv){ (uint8_t *)(uintptr_t)st->hb_len, (uint8_t *)(uintptr_t)(st->hb_len + nl),
					   nl, vl, NGHTTP2_NV_FLAG_NONE };
	st->hb_len += nl + vl;
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
	if (fr->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct pl_h2up_stream *st = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
	if (!st || !st->ops)
		return 0;
	if (st->h_over) {
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
		report_close(st, 1, "response header block from backend too large");
		return 0;
	}
	for (size_t i = 0; i < st->n_nv; i++) {
		st->nv[i].name = (uint8_t *)st->hb + (uintptr_t)st->nv[i].name;
		st->nv[i].value = (uint8_t *)st->hb + (uintptr_t)st->nv[i].value;
	}
	if (!st->head_seen) {
		if (st->status < 100 || st->status > 999 || st->status == 101) {
			nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
			report_close(st, 1, "invalid :status from backend");
			return 0;
		}
		if (st->status >= 200)
			st->head_seen = 1;
		st->ops->on_head(st->data, st->status, st->nv, st->n_nv, !!(fr->hd.flags & NGHTTP2_FLAG_END_STREAM));
	} else if (st->ops->on_trailers) {
		st->ops->on_trailers(st->data, st->nv, st->n_nv);
	}
	st->n_nv = 0;
	st->hb_len = 0;
	return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
	struct pl_h2up_stream *st = nghttp2_session_get_stream_user_data(s, id);
	if (!st || !st->ops) {
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	st->unconsumed += len;
	st->ops->on_data(st->data, data, len);
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct pl_h2up_stream *st = nghttp2_session_get_stream_user_data(s, id);
	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(s, id, NULL);
	if (st->unconsumed)
		nghttp2_session_consume_connection(s, st->unconsumed);
	if (st->ops) {
		char why[96];
		if (code == NGHTTP2_NO_ERROR && st->head_seen) {
			report_close(st, 0, NULL);
		} else {
			snprintf(why, sizeof(why), "backend stream closed: %s", nghttp2_http2_strerror(code));
			if (code == NGHTTP2_NO_ERROR)
				snprintf(why, sizeof(why), "backend ended the stream without a response");
			report_close(st, 1, why);
		}
	}
	stream_unlink(st);
	return 0;
}

static ssize_t req_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
			nghttp2_data_source *src, void *ud)
{
	struct pl_h2up_stream *st = src->ptr;
	if (!st->ops) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	int eof = 0;
	size_t n = st->ops->read_body(st->data, buf, length, &eof);
	if (eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->ops && st->ops->read_trailers) {
			/* trailers end the stream instead of this DATA frame (submitted from here, as nghttp2 asks) */
			nghttp2_nv nv[PL_H2UP_MAX_TRAILERS];
			size_t nt = st->ops->read_trailers(st->data, nv, PL_ARRAY_LEN(nv));
			if (nt && nghttp2_submit_trailer(s, id, nv, PL_MIN(nt, PL_ARRAY_LEN(nv))) == 0)
				*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		}
	} else if (n == 0) {
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

static void cbs_init(void)
{
	if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opts) != 0)
		PL_PANIC("out of memory (nghttp2 callbacks)");
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_option_set_no_auto_window_update(opts, 1);
	nghttp2_option_set_peer_max_concurrent_streams(opts, 100);
	nghttp2_option_set_max_send_header_block_length(opts, 64 * 1024);
}

/* ------------------------------------------------------------ I/O */

static void arm(struct sess *ss)
{
	if (ss->dead)
		return;
	struct ev_loop *loop = ss->w->loop;
	if (ss->connecting || ss->ob_off < ss->ob_len || nghttp2_session_want_write(ss->s))
		ev_io_start(loop, &ss->wio);
	else
		ev_io_stop(loop, &ss->wio);
	if (!ss->connecting)
		ev_io_start(loop, &ss->rio);
}

/* Writes what nghttp2 has queued; -1 after sess_fail. */
static int flush(struct sess *ss)
{
	for (;;) {
		if (ss->ob_off == ss->ob_len) {
			ss->ob_off = ss->ob_len = 0;
			while (ss->ob_len < OUT_CAP / 2) {
				const uint8_t *d;
				ssize_t n = nghttp2_session_mem_send(ss->s, &d);
				if (n < 0) {
					sess_fail(ss, nghttp2_strerror((int)n));
					return -1;
				}
				if (n == 0)
					break;
				if (ss->ob_len + (size_t)n > OUT_CAP) {
					/* a frame never exceeds 16 KiB + header here, so this only grows once */
					uint8_t *nb = realloc(ss->ob, ss->ob_len + (size_t)n);
					if (!nb) {
						sess_fail(ss, "out of memory");
						return -1;
					}
					ss->ob = nb;
				}
				memcpy(ss->ob + ss->ob_len, d, (size_t)n);
				ss->ob_len += (size_t)n;
			}
			if (ss->ob_len == 0)
				return 0;
		}
		ssize_t k;
		do
			k = send(ss->fd, ss->ob + ss->ob_off, ss->ob_len - ss->ob_off, MSG_NOSIGNAL);
		while (k < 0 && errno == EINTR);
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (k < 0) {
			char why[128];
			snprintf(why, sizeof(why), "send to %s failed: %s", ss->peer, strerror(errno));
			sess_fail(ss, why);
			return -1;
		}
		ss->ob_off += (size_t)k;
	}
}

static void finish_io(struct sess *ss)
{
	if (ss->dead)
		return;
	if (flush(ss) < 0)
		return;
	if (!nghttp2_session_want_read(ss->s) && !nghttp2_session_want_write(ss->s) && ss->ob_off == ss->ob_len) {
		sess_fail(ss, "backend session ended");
		return;
	}
	arm(ss);
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
	struct sess *ss = io->data;
	uint8_t buf[16384];
	for (int i = 0; i < 8 && !ss->dead; i++) {
		ssize_t n;
		do
			n = recv(ss->fd, buf, sizeof(buf), 0);
		while (n < 0 && errno == EINTR);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			char why[128];
			snprintf(why, sizeof(why), "backend %s closed the connection%s%s", ss->peer, n ? ": " : "",
				 n ? strerror(errno) : "");
			sess_fail(ss, why);
			return;
		}
		ss->in_recv = 1;
		ssize_t r = nghttp2_session_mem_recv(ss->s, buf, (size_t)n);
		ss->in_recv = 0;
		if (r < 0) {
			char why[128];
			snprintf(why, sizeof(why), "HTTP/2 error from backend %s: %s", ss->peer, nghttp2_strerror((int)r));
			sess_fail(ss, why);
			return;
		}
		if ((size_t)n < sizeof(buf))
			break;
	}
	finish_io(ss);
}

static void on_write(struct ev_loop *loop, ev_io *io, int revents)
{
	struct sess *ss = io->data;
	if (ss->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(ss->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err) {
			char why[128];
			snprintf(why, sizeof(why), "connect to %s failed: %s", ss->peer, strerror(err));
			sess_fail(ss, why);
			return;
		}
		ss->connecting = 0;
		ev_timer_stop(loop, &ss->timer);
		if (ss->n_streams == 0) {
			ev_timer_set(&ss->timer, IDLE_S, 0.);
			ev_timer_start(loop, &ss->timer);
		}
	}
	finish_io(ss);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct sess *ss = t->data;
	if (ss->connecting) {
		char why[128];
		snprintf(why, sizeof(why), "connect to %s timed out", ss->peer);
		sess_fail(ss, why);
	} else if (ss->n_streams == 0) {
		sess_fail(ss, "idle");
	}
}

/* ------------------------------------------------------------ sessions */

static void reap(struct ev_loop *loop, ev_prepare *p, int revents)
{
	while (P.dead) {
		struct sess *ss = P.dead;
		P.dead = ss->next;
		/* streams still linked were reported closed by sess_fail */
		while (ss->streams) {
			struct pl_h2up_stream *st = ss->streams;
			ss->streams = st->next;
			free(st->hb);
			free(st);
		}
		if (ss->s)
			nghttp2_session_del(ss->s);
		free(ss->ob);
		free(ss);
	}
}

static void pool_init(struct pl_worker *w)
{
	if (P.init)
		return;
	pthread_once(&once, cbs_init);
	P.w = w;
	P.init = 1;
	ev_prepare_init(&P.reaper, reap);
	ev_prepare_start(w->loop, &P.reaper);
	ev_unref(w->loop);   /* the reaper alone keeps no loop alive */
}

/*
 * The session is unusable: every stream's owner hears why, the socket is
 * closed, the memory freed by the reaper (never inside a callback).
 */
static void sess_fail(struct sess *ss, const char *why)
{
	if (ss->dead)
		return;
	ss->dead = 1;
	if (ss->n_streams && strcmp(why, "idle") != 0)
		pl_info("h2c backend %s (%s): %s", ss->peer, ss->cluster, why);
	else
		pl_debug("h2c backend %s (%s): %s", ss->peer, ss->cluster, why);
	struct ev_loop *loop = ss->w->loop;
	ev_io_stop(loop, &ss->rio);
	ev_io_stop(loop, &ss->wio);
	ev_timer_stop(loop, &ss->timer);
	if (ss->fd >= 0)
		close(ss->fd);
	ss->fd = -1;
	if (ss->prev)
		ss->prev->next = ss->next;
	else
		P.live = ss->next;
	if (ss->next)
		ss->next->prev = ss->prev;
	ss->prev = NULL;
	ss->next = P.dead;
	P.dead = ss;
	char msg[200];
	snprintf(msg, sizeof(msg), "%s", why);
	/* while connecting nghttp2 was never asked for bytes: no stream's head or body left */
	int failed = ss->connecting ? PL_H2UP_UNSENT : 1;
	for (struct pl_h2up_stream *st = ss->streams; st; st = st->next)
		report_close(st, failed, msg);
}

static struct sess *sess_new(struct pl_worker *w, uint32_t cluster_id, const struct pl_endpoint *ep,
			     const char *cluster_name, const char **why)
{
	struct sess *ss = calloc(1, sizeof(*ss));
	if (!ss) {
		*why = "out of memory";
		return NULL;
	}
	ss->w = w;
	ss->cluster_id = cluster_id;
	memcpy(&ss->addr, &ep->addr, ep->addrlen);
	ss->addrlen = ep->addrlen;
	snprintf(ss->peer, sizeof(ss->peer), "%s", ep->text ? ep->text : "?");
	snprintf(ss->cluster, sizeof(ss->cluster), "%s", cluster_name ? cluster_name : "?");
	ss->ob = malloc(OUT_CAP);
	if (!ss->ob || nghttp2_session_client_new2(&ss->s, cbs, ss, opts) != 0) {
		free(ss->ob);
		free(ss);
		*why = "out of memory";
		return NULL;
	}
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_RESP_HEADER_BYTES },
	};
	if (nghttp2_submit_settings(ss->s, NGHTTP2_FLAG_NONE, iv, PL_ARRAY_LEN(iv)) != 0 ||
	    nghttp2_session_set_local_window_size(ss->s, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0) {
		nghttp2_session_del(ss->s);
		free(ss->ob);
		free(ss);
		*why = "out of memory";
		return NULL;
	}
	ss->fd = socket(ss->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int rc = -1;
	if (ss->fd >= 0) {
		int one = 1;
		setsockopt(ss->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		do
			rc = connect(ss->fd, (struct sockaddr *)&ss->addr, ss->addrlen);
		while (rc < 0 && errno == EINTR);
	}
	if (rc < 0 && errno != EINPROGRESS) {
		static __thread char buf[128];
		snprintf(buf, sizeof(buf), "connect to %s failed: %s", ss->peer, strerror(errno));
		*why = buf;
		if (ss->fd >= 0)
			close(ss->fd);
		nghttp2_session_del(ss->s);
		free(ss->ob);
		free(ss);
		return NULL;
	}
	ss->connecting = rc < 0;
	ev_io_init(&ss->rio, on_read, ss->fd, EV_READ);
	ev_io_init(&ss->wio, on_write, ss->fd, EV_WRITE);
	ss->rio.data = ss->wio.data = ss->timer.data = ss;
	double ct = w->cfg && w->cfg->connect_timeout_ms ? (double)w->cfg->connect_timeout_ms / 1000.0
							  : DEFAULT_CONNECT_S;
	ev_timer_init(&ss->timer, on_timer, ss->connecting ? ct : IDLE_S, 0.);
	ev_timer_start(w->loop, &ss->timer);
	ss->next = P.live;
	if (P.live)
		P.live->prev = ss;
	P.live = ss;
	return ss;
}

/* A live session for the key with room for one more stream, or NULL (*count: sessions of the key). */
static struct sess *sess_pick(uint32_t cluster_id, const struct pl_endpoint *ep, unsigned *count)
{
	*count = 0;
	for (struct sess *ss = P.live; ss; ss = ss->next) {
		if (ss->cluster_id != cluster_id || ss->addrlen != ep->addrlen || memcmp(&ss->addr, &ep->addr, ep->addrlen))
			continue;
		(*count)++;
		if (!nghttp2_session_check_request_allowed(ss->s))
			continue;
		uint32_t max = nghttp2_session_get_remote_settings(ss->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
		if (ss->n_streams < PL_MIN(max, 100u))
			return ss;
	}
	return NULL;
}

/* ------------------------------------------------------------ API */

struct pl_h2up_stream *pl_h2up_open(struct pl_worker *w, uint32_t cluster_id, const struct pl_endpoint *ep,
				    const char *cluster_name, const nghttp2_nv *nv, size_t n, int has_body,
				    const struct pl_h2up_ops *ops, void *data, const char **why)
{
	pool_init(w);
	unsigned count;
	struct sess *ss = sess_pick(cluster_id, ep, &count);
	if (!ss) {
		if (count >= PL_H2UP_MAX_SESSIONS) {
			*why = "too many streams to the backend";
			return NULL;
		}
		ss = sess_new(w, cluster_id, ep, cluster_name, why);
		if (!ss)
			return NULL;
	}
	struct pl_h2up_stream *st = calloc(1, sizeof(*st));
	if (!st) {
		*why = "out of memory";
		return NULL;
	}
	st->ss = ss;
	st->ops = ops;
	st->data = data;
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = req_read };
	int32_t id = nghttp2_submit_request(ss->s, NULL, nv, n, has_body ? &prd : NULL, st);
	if (id < 0) {
		free(st);
		*why = nghttp2_strerror(id);
		return NULL;
	}
	st->id = id;
	st->next = ss->streams;
	if (ss->streams)
		ss->streams->prev = st;
	ss->streams = st;
	ss->n_streams++;
	if (!ss->connecting)
		ev_timer_stop(w->loop, &ss->timer);
	ev_io_start(w->loop, &ss->wio);   /* written from the watcher, never from inside the caller */
	return st;
}

void pl_h2up_resume(struct pl_h2up_stream *st)
{
	struct sess *ss = st->ss;
	if (ss->dead || !st->ops)
		return;
	nghttp2_session_resume_data(ss->s, st->id);
	ev_io_start(ss->w->loop, &ss->wio);
}

void pl_h2up_consume(struct pl_h2up_stream *st, size_t n)
{
	struct sess *ss = st->ss;
	if (ss->dead || !st->ops)
		return;
	n = PL_MIN(n, st->unconsumed);
	if (!n)
		return;
	st->unconsumed -= n;
	nghttp2_session_consume(ss->s, st->id, n);
	ev_io_start(ss->w->loop, &ss->wio);
}

void pl_h2up_detach(struct pl_h2up_stream *st)
{
	struct sess *ss = st->ss;
	if (!st->ops)
		return;
	st->ops = NULL;
	if (ss->dead)
		return;
	/* the stream's unconsumed bytes go back to the connection window when it closes */
	nghttp2_submit_rst_stream(ss->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
	ev_io_start(ss->w->loop, &ss->wio);
}

void pl_h2up_close_all(struct pl_worker *w)
{
	if (!P.init)
		return;
	while (P.live)
		sess_fail(P.live, "idle");
	reap(w->loop, &P.reaper, 0);
	ev_ref(w->loop);
	ev_prepare_stop(w->loop, &P.reaper);
	P.init = 0;
}
