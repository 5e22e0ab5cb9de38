/*
 * HTTP/2 client sessions to backends, h2c or over TLS (contract in h2up.h).
 *
 * I/O happens only in this file's watchers: the owner's calls (open,
 * resume, consume, detach) queue frames in nghttp2 and arm the write
 * watcher, so no owner callback ever runs inside an owner's call, and
 * nghttp2 is never re-entered from its own callbacks. A session is a small
 * state machine (enum sst): the TLS handshake runs from the watchers too,
 * and nghttp2 is asked for bytes only once the session is open, so a
 * session that fails before that has sent nothing of any stream.
 */
#define _GNU_SOURCE
#include "pl.h"
#include "log.h"
#include "table-t.h"
#include "h2up.h"
#include "uptls.h"
#include "worker.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#define STREAM_WINDOW (64 * 1024)
#define CONN_WINDOW (1024 * 1024)
#define MAX_RESP_FIELDS 100
#define MAX_RESP_HEADER_BYTES (64 * 1024)
#define OUT_CAP (64 * 1024)          /* frames copied out of nghttp2 before a send() */
#define IDLE_S 60.0                  /* a session without streams closes after this */
#define DEFAULT_CONNECT_S 5.0
#define MAX_REQ_FIELDS 512           /* a head the owners build stays far below (nghttp2 caps its bytes) */

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

/* A session's life; the one place that changes it is sess_set(). */
enum sst {
	SS_CONNECT,      /* TCP connect in progress */
	SS_HANDSHAKE,    /* TLS handshake (TLS sessions only) */
	SS_OPEN,         /* nghttp2 frames flow */
};

struct sess {
	struct sess *next, *prev;
	struct pl_worker *w;
	uint32_t cluster_id;
	uint64_t tls_fp;                 /* pool key: 0 cleartext, else the policy's fingerprint (or 1) */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char peer[64];
	char cluster[96];
	int fd;
	SSL *ssl;                        /* NULL: h2c */
	struct pl_backend_tls *hs;       /* own copy of the policy's names, during the handshake only */
	nghttp2_session *s;
	ev_io rio, wio;
	ev_timer timer;
	enum sst st;
	uint8_t dead, in_recv;
	uint8_t rd_wants_write;          /* SSL_read asked for the socket to be writable */
	uint8_t wr_wants_read;           /* SSL_write asked for it to be readable: no write watcher till then */
	uint8_t tls_broken;              /* a fatal TLS error: no close_notify */
	uint8_t warned;                  /* the failure was logged as a warning already */
	uint8_t timed_out;               /* the connect timeout expired: streams fail PL_H2UP_TIMEOUT */
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

static const char *sst_str(enum sst st)
{
	switch (st) {
	case SS_CONNECT: return "connect";
	case SS_HANDSHAKE: return "handshake";
	case SS_OPEN: return "open";
	}
	return "?";
}

static const char *proto_str(const struct sess *ss)
{
	return ss->ssl ? "h2 (TLS)" : "h2c";
}

static void sess_set(struct sess *ss, enum sst st)
{
	pl_debug("%s backend %s (%s): %s -> %s", proto_str(ss), ss->peer, ss->cluster, sst_str(ss->st), sst_str(st));
	ss->st = st;
}

static void arm(struct sess *ss)
{
	if (ss->dead)
		return;
	struct ev_loop *loop = ss->w->loop;
	if (ss->st != SS_OPEN || ss->rd_wants_write ||
	    (!ss->wr_wants_read && (ss->ob_off < ss->ob_len || nghttp2_session_want_write(ss->s))))
		ev_io_start(loop, &ss->wio);
	else
		ev_io_stop(loop, &ss->wio);
	if (ss->st == SS_OPEN)
		ev_io_start(loop, &ss->rio);
}

/* The TLS error queue (or errno) as text, for a failed SSL_read/SSL_write; clears the queue. */
static void tls_err_text(struct sess *ss, const char *what, int e, char *why, size_t len)
{
	unsigned long q = ERR_get_error();
	char ebuf[160] = "";
	if (q)
		ERR_error_string_n(q, ebuf, sizeof(ebuf));
	else if (e == SSL_ERROR_SYSCALL && errno)
		snprintf(ebuf, sizeof(ebuf), "%s", strerror(errno));
	else
		snprintf(ebuf, sizeof(ebuf), "TLS error %d", e);
	ERR_clear_error();
	snprintf(why, len, "TLS %s with %s failed: %s", what, ss->peer, ebuf);
}

/*
 * Reads from the connection: > 0 bytes, 0 at EOF (TCP FIN, close_notify),
 * -EAGAIN when nothing is there yet, else -1 with why filled.
 */
static ssize_t sess_recv(struct sess *ss, uint8_t *buf, size_t len, char *why, size_t wlen)
{
	if (!ss->ssl) {
		ssize_t n;
		do
			n = recv(ss->fd, buf, len, 0);
		while (n < 0 && errno == EINTR);
		if (n >= 0)
			return n;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		snprintf(why, wlen, "backend %s closed the connection: %s", ss->peer, strerror(errno));
		return -1;
	}
	ERR_clear_error();
	errno = 0;
	int r = SSL_read(ss->ssl, buf, (int)PL_MIN(len, (size_t)INT32_MAX));
	if (r > 0)
		return r;
	int e = SSL_get_error(ss->ssl, r);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		ss->rd_wants_write = 1;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0 && errno == 0) {
			ss->tls_broken = 1;   /* EOF without close_notify */
			return 0;
		}
		/* fall through */
	default:
		ss->tls_broken = 1;
		tls_err_text(ss, "read", e, why, wlen);
		return -1;
	}
}

/* Writes: > 0 bytes taken, -EAGAIN when the connection cannot take more now, else -1 with why filled. */
static ssize_t sess_send(struct sess *ss, const uint8_t *buf, size_t len, char *why, size_t wlen)
{
	if (!ss->ssl) {
		ssize_t k;
		do
			k = send(ss->fd, buf, len, MSG_NOSIGNAL);
		while (k < 0 && errno == EINTR);
		if (k >= 0)
			return k;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		snprintf(why, wlen, "send to %s failed: %s", ss->peer, strerror(errno));
		return -1;
	}
	/*
	 * After a WANT_* the same bytes are offered again: ob only changes once
	 * ob_off reached ob_len (the context allows a moving buffer and
	 * partial writes).
	 */
	ERR_clear_error();
	errno = 0;
	int r = SSL_write(ss->ssl, buf, (int)PL_MIN(len, (size_t)INT32_MAX));
	if (r > 0)
		return r;
	int e = SSL_get_error(ss->ssl, r);
	if (e == SSL_ERROR_WANT_WRITE)
		return -EAGAIN;
	if (e == SSL_ERROR_WANT_READ) {
		ss->wr_wants_read = 1;   /* the read watcher is always on, and on_read flushes */
		return -EAGAIN;
	}
	ss->tls_broken = 1;
	tls_err_text(ss, "write", e, why, wlen);
	return -1;
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
		char why[256];
		ssize_t k = sess_send(ss, ss->ob + ss->ob_off, ss->ob_len - ss->ob_off, why, sizeof(why));
		if (k == -EAGAIN)
			return 0;
		if (k < 0) {
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

/* Reads a bounded batch into nghttp2; the caller then flushes. */
static void read_batch(struct sess *ss)
{
	uint8_t buf[16384];
	int i;
	for (i = 0; i < 8 && !ss->dead; i++) {
		char why[256];
		ssize_t n = sess_recv(ss, buf, sizeof(buf), why, sizeof(why));
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			sess_fail(ss, why);
			return;
		}
		if (n == 0) {
			snprintf(why, sizeof(why), "backend %s closed the connection", ss->peer);
			sess_fail(ss, why);
			return;
		}
		ss->in_recv = 1;
		ssize_t r = nghttp2_session_mem_recv(ss->s, buf, (size_t)n);
		ss->in_recv = 0;
		if (r < 0) {
			snprintf(why, sizeof(why), "HTTP/2 error from backend %s: %s", ss->peer, nghttp2_strerror((int)r));
			sess_fail(ss, why);
			return;
		}
		/* TLS hands out one record per read: only the socket (or SSL_pending) says whether more is there */
		if (!ss->ssl && (size_t)n < sizeof(buf))
			return;
	}
	/* the batch bound was hit: bytes already in the SSL would not wake the socket again */
	if (!ss->dead && ss->ssl && SSL_has_pending(ss->ssl))
		ev_feed_event(ss->w->loop, &ss->rio, EV_READ);
}

static void tls_fail(struct sess *ss, const char *why)
{
	const struct pl_backend_tls *bt = ss->hs;
	pl_warn("cluster %s: TLS to backend %s (BackendTLSPolicy %s, hostname %s, HTTP/2): %s", ss->cluster, ss->peer,
		bt && bt->policy ? bt->policy : "?", bt && bt->sni ? bt->sni : "-", why);
	char msg[256];
	snprintf(msg, sizeof(msg), "TLS to backend %s: %.170s", ss->peer, why);
	ss->tls_broken = 1;   /* no close_notify on a connection that never became ours */
	ss->warned = 1;
	sess_fail(ss, msg);
}

/* The session's connection is usable: the idle clock starts if nothing waits, and frames flow. */
static void sess_open(struct sess *ss)
{
	struct ev_loop *loop = ss->w->loop;
	sess_set(ss, SS_OPEN);
	ev_timer_stop(loop, &ss->timer);
	if (ss->n_streams == 0) {
		ev_timer_set(&ss->timer, IDLE_S, 0.);
		ev_timer_start(loop, &ss->timer);
	}
	finish_io(ss);
}

/* Drives the TLS handshake; the session opens only once the peer is verified and chose h2. */
static void hs_step(struct sess *ss)
{
	struct ev_loop *loop = ss->w->loop;
	char why[256];
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(ss->ssl);
	if (r == 1) {
		if (pl_uptls_check_names(ss->ssl, ss->hs, why, sizeof(why)) != 0) {
			tls_fail(ss, why);
			return;
		}
		const unsigned char *alpn = NULL;
		unsigned alen = 0;
		SSL_get0_alpn_selected(ss->ssl, &alpn, &alen);
		if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
			char sel[40] = "";
			for (unsigned i = 0; i < alen && i + 1 < sizeof(sel); i++)
				sel[i] = alpn[i] >= 0x20 && alpn[i] < 0x7f ? (char)alpn[i] : '?';
			if (alen)
				snprintf(why, sizeof(why), "ALPN: the backend selected \"%s\", not h2 (HTTP/2 over TLS)", sel);
			else
				snprintf(why, sizeof(why), "ALPN: the backend selected no protocol, not h2 (HTTP/2 over TLS)");
			tls_fail(ss, why);
			return;
		}
		free(ss->hs);
		ss->hs = NULL;
		ev_io_stop(loop, &ss->wio);
		sess_open(ss);
		/* records that came with the handshake's last flight wait in the SSL, not the socket */
		if (!ss->dead && SSL_has_pending(ss->ssl))
			ev_feed_event(loop, &ss->rio, EV_READ);
		return;
	}
	int e = SSL_get_error(ss->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		ev_io_stop(loop, &ss->wio);
		ev_io_start(loop, &ss->rio);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		ev_io_stop(loop, &ss->rio);
		ev_io_start(loop, &ss->wio);
		return;
	}
	/* a server that knows ALPN but not h2 ends the handshake with alert no_application_protocol */
	int no_alpn = e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL;
	pl_uptls_error(ss->ssl, e, why, sizeof(why));
	if (no_alpn) {
		char msg[320];
		snprintf(msg, sizeof(msg), "ALPN: the backend accepts no protocol pylon offers (h2 only): %.200s", why);
		tls_fail(ss, msg);
		return;
	}
	tls_fail(ss, why);
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
	struct sess *ss = io->data;
	if (ss->st == SS_HANDSHAKE) {
		hs_step(ss);
		return;
	}
	if (ss->st != SS_OPEN)
		return;
	ss->wr_wants_read = 0;
	read_batch(ss);
	finish_io(ss);
}

static void on_write(struct ev_loop *loop, ev_io *io, int revents)
{
	struct sess *ss = io->data;
	switch (ss->st) {
	case SS_CONNECT: {
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
		if (ss->ssl) {
			sess_set(ss, SS_HANDSHAKE);   /* the connect timer runs on: it covers the handshake */
			hs_step(ss);
		} else {
			sess_open(ss);
		}
		return;
	}
	case SS_HANDSHAKE:
		hs_step(ss);
		return;
	case SS_OPEN:
		if (ss->rd_wants_write) {
			ss->rd_wants_write = 0;
			read_batch(ss);
		}
		finish_io(ss);
		return;
	}
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct sess *ss = t->data;
	if (ss->st == SS_CONNECT) {
		char why[128];
		snprintf(why, sizeof(why), "connect to %s timed out", ss->peer);
		ss->timed_out = 1;
		sess_fail(ss, why);
	} else if (ss->st == SS_HANDSHAKE) {
		ss->timed_out = 1;   /* the connect timeout covers the handshake, as in upstream.c */
		tls_fail(ss, "handshake timed out");
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
		free(ss->hs);
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

/* Ends the connection: close_notify (best effort, never after a fatal TLS error), then the socket. */
static void conn_close(struct sess *ss)
{
	if (ss->ssl) {
		if (ss->st == SS_OPEN && !ss->tls_broken && !(SSL_get_shutdown(ss->ssl) & SSL_SENT_SHUTDOWN))
			SSL_shutdown(ss->ssl);
		ERR_clear_error();
		SSL_free(ss->ssl);
		ss->ssl = NULL;
	}
	if (ss->fd >= 0)
		close(ss->fd);
	ss->fd = -1;
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
	if (ss->n_streams && !ss->warned && strcmp(why, "idle") != 0)
		pl_info("%s backend %s (%s): %s", proto_str(ss), ss->peer, ss->cluster, why);
	else
		pl_debug("%s backend %s (%s): %s", proto_str(ss), ss->peer, ss->cluster, why);
	struct ev_loop *loop = ss->w->loop;
	ev_io_stop(loop, &ss->rio);
	ev_io_stop(loop, &ss->wio);
	ev_timer_stop(loop, &ss->timer);
	/* before the session opened nghttp2 was never asked for bytes: no stream's head or body left */
	int failed = ss->st == SS_OPEN ? 1 : ss->timed_out ? PL_H2UP_TIMEOUT : PL_H2UP_UNSENT;
	conn_close(ss);
	if (ss->prev)
		ss->prev->next = ss->next;
	else
		P.live = ss->next;
	if (ss->next)
		ss->next->prev = ss->prev;
	ss->prev = NULL;
	ss->next = P.dead;
	P.dead = ss;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", why);
	for (struct pl_h2up_stream *st = ss->streams; st; st = st->next)
		report_close(st, failed, msg);
}

/*
 * What the handshake needs of the policy once the table that holds it may
 * be gone (the owner that opened the session can leave first): the names,
 * in one allocation. NULL when out of memory.
 */
static struct pl_backend_tls *names_copy(const struct pl_backend_tls *bt)
{
	size_t sz = sizeof(*bt) + (size_t)bt->n_sans * sizeof(char *);
	size_t nsni = bt->sni ? strlen(bt->sni) + 1 : 0, npol = bt->policy ? strlen(bt->policy) + 1 : 0;
	sz += nsni + npol;
	for (uint32_t i = 0; i < bt->n_sans; i++)
		sz += strlen(bt->sans[i]) + 1;
	struct pl_backend_tls *c = calloc(1, sz);
	if (!c)
		return NULL;
	char **sans = (char **)(c + 1);
	char *p = (char *)(sans + bt->n_sans);
	if (nsni) {
		memcpy(p, bt->sni, nsni);
		c->sni = p;
		p += nsni;
	}
	if (npol) {
		memcpy(p, bt->policy, npol);
		c->policy = p;
		p += npol;
	}
	for (uint32_t i = 0; i < bt->n_sans; i++) {
		size_t k = strlen(bt->sans[i]) + 1;
		memcpy(p, bt->sans[i], k);
		sans[i] = p;
		p += k;
	}
	c->sans = bt->n_sans ? sans : NULL;
	c->n_sans = bt->n_sans;
	c->fingerprint = bt->fingerprint;
	return c;
}

static uint64_t tls_key(const struct pl_cluster *cl)
{
	return cl->tls ? (cl->tls->fingerprint ? cl->tls->fingerprint : 1) : 0;
}

/* Frees a session that never joined the pool. */
static void sess_discard(struct sess *ss)
{
	if (ss->ssl)
		SSL_free(ss->ssl);
	if (ss->fd >= 0)
		close(ss->fd);
	if (ss->s)
		nghttp2_session_del(ss->s);
	free(ss->hs);
	free(ss->ob);
	free(ss);
}

static struct sess *sess_new(struct pl_worker *w, const struct pl_cluster *cl, const struct pl_endpoint *ep,
			     const char **why)
{
	static __thread char buf[256];
	struct sess *ss = calloc(1, sizeof(*ss));
	if (!ss) {
		*why = "out of memory";
		return NULL;
	}
	ss->fd = -1;
	ss->w = w;
	ss->cluster_id = cl->id;
	ss->tls_fp = tls_key(cl);
	memcpy(&ss->addr, &ep->addr, ep->addrlen);
	ss->addrlen = ep->addrlen;
	snprintf(ss->peer, sizeof(ss->peer), "%s", ep->text ? ep->text : "?");
	snprintf(ss->cluster, sizeof(ss->cluster), "%s", cl->name ? cl->name : "?");
	ss->ob = malloc(OUT_CAP);
	if (!ss->ob || nghttp2_session_client_new2(&ss->s, cbs, ss, opts) != 0) {
		ss->s = NULL;
		sess_discard(ss);
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
		sess_discard(ss);
		*why = "out of memory";
		return NULL;
	}
	ss->fd = socket(ss->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ss->fd < 0) {
		snprintf(buf, sizeof(buf), "connect to %s failed: %s", ss->peer, strerror(errno));
		*why = buf;
		sess_discard(ss);
		return NULL;
	}
	int one = 1;
	setsockopt(ss->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (cl->tls) {
		char err[200];
		ss->hs = names_copy(cl->tls);
		ss->ssl = ss->hs ? pl_uptls_new(cl->tls, ss->fd, err, sizeof(err)) : NULL;
		/* h2 only: a backend that would answer HTTP/1.1 on this connection is refused at the handshake */
		if (ss->ssl && SSL_set_alpn_protos(ss->ssl, (const unsigned char *)"\x02h2", 3) != 0) {
			SSL_free(ss->ssl);
			ss->ssl = NULL;
			snprintf(err, sizeof(err), "ALPN set-up failed");
		}
		if (!ss->ssl) {
			if (!ss->hs)
				snprintf(err, sizeof(err), "out of memory");
			ERR_clear_error();
			pl_warn("cluster %s: TLS set-up for backend %s failed: %s", ss->cluster, ss->peer, err);
			snprintf(buf, sizeof(buf), "TLS set-up for backend %s failed: %.150s", ss->peer, err);
			*why = buf;
			sess_discard(ss);
			return NULL;
		}
	}
	int rc;
	do
		rc = connect(ss->fd, (struct sockaddr *)&ss->addr, ss->addrlen);
	while (rc < 0 && errno == EINTR);
	if (rc < 0 && errno != EINPROGRESS) {
		snprintf(buf, sizeof(buf), "connect to %s failed: %s", ss->peer, strerror(errno));
		*why = buf;
		sess_discard(ss);
		return NULL;
	}
	/* the handshake starts from the write watcher, never inside the owner's call */
	ss->st = rc < 0 ? SS_CONNECT : ss->ssl ? SS_HANDSHAKE : SS_OPEN;
	ev_io_init(&ss->rio, on_read, ss->fd, EV_READ);
	ev_io_init(&ss->wio, on_write, ss->fd, EV_WRITE);
	ss->rio.data = ss->wio.data = ss->timer.data = ss;
	double ct = w->cfg && w->cfg->connect_timeout_ms ? (double)w->cfg->connect_timeout_ms / 1000.0
							  : DEFAULT_CONNECT_S;
	ev_timer_init(&ss->timer, on_timer, ss->st != SS_OPEN ? ct : IDLE_S, 0.);
	ev_timer_start(w->loop, &ss->timer);
	ss->next = P.live;
	if (P.live)
		P.live->prev = ss;
	P.live = ss;
	return ss;
}

/* A live session for the key with room for one more stream, or NULL (*count: sessions of the key). */
static struct sess *sess_pick(uint32_t cluster_id, uint64_t tls_fp, const struct pl_endpoint *ep, unsigned *count)
{
	*count = 0;
	for (struct sess *ss = P.live; ss; ss = ss->next) {
		if (ss->cluster_id != cluster_id || ss->tls_fp != tls_fp || ss->addrlen != ep->addrlen ||
		    memcmp(&ss->addr, &ep->addr, ep->addrlen))
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

struct pl_h2up_stream *pl_h2up_open(struct pl_worker *w, const struct pl_cluster *cl, const struct pl_endpoint *ep,
				    const nghttp2_nv *nv, size_t n, int has_body, const struct pl_h2up_ops *ops,
				    void *data, const char **why)
{
	if (cl->tls && cl->tls->error) {
		pl_uptls_warn_unusable(cl, w->wt ? w->wt->t->generation : 0);
		*why = "BackendTLSPolicy unusable";
		return NULL;
	}
	if (n > MAX_REQ_FIELDS) {
		*why = "too many request fields";
		return NULL;
	}
	pool_init(w);
	unsigned count;
	uint64_t fp = tls_key(cl);
	struct sess *ss = sess_pick(cl->id, fp, ep, &count);
	if (!ss) {
		if (count >= PL_H2UP_MAX_SESSIONS) {
			*why = "too many streams to the backend";
			return NULL;
		}
		ss = sess_new(w, cl, ep, why);
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
	/* the URI's scheme toward a TLS backend is https (nghttp2 copies the fields) */
	static __thread nghttp2_nv tnv[MAX_REQ_FIELDS];
	if (ss->tls_fp) {
		for (size_t i = 0; i < n; i++) {
			tnv[i] = nv[i];
			if (nv[i].namelen == 7 && !memcmp(nv[i].name, ":scheme", 7) && nv[i].valuelen == 4 &&
			    !memcmp(nv[i].value, "http", 4)) {
				tnv[i].value = (uint8_t *)"https";
				tnv[i].valuelen = 5;
			}
		}
		nv = tnv;
	}
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
	if (ss->st == SS_OPEN)
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
