#define _GNU_SOURCE
#include "pl.h"
#include "log.h"
#include "stats.h"
#include "table.h"
#include "buf.h"
#include "cors.h"
#include "h1scan.h"
#include "h2.h"
#include "h2up.h"
#include "mirror.h"
#include "reqhead.h"
#include "reqview.h"
#include "retry.h"
#include "rewrite.h"
#include "router.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

#include <errno.h>
#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_STREAMS 100
#define STREAM_WINDOW (64 * 1024)
#define CONN_WINDOW (1024 * 1024)
#define MAX_HDRS 100
#define MAX_TRAILERS 32
#define MAX_TRAILER_BYTES 8192
#define MAX_RESP_HEAD (64 * 1024)
#define RBODY_CAP (32 * 1024)             /* response bytes buffered per stream */
#define OUT_HIWAT (64 * 1024)             /* frames buffered for the client before we stop producing */
#define CONN_BUDGET (8u * 1024 * 1024)    /* every buffer of a connection and its streams */
#define BODY_MARGIN 64

enum h2c_state { C_OPEN = 0, C_CLOSED };
/*
 * S_TUNNEL: an extended CONNECT (RFC 8441) WebSocket stream after the
 * backend's 101: DATA and backend bytes are copied verbatim both ways.
 */
enum h2s_state { S_HEAD = 0, S_LOCAL, S_PROXY, S_TUNNEL, S_CLOSED };

static const char *sstate_str(enum h2s_state s)
{
	static const char *const names[] = { "head", "local", "proxy", "tunnel", "closed" };
	return (unsigned)s < PL_ARRAY_LEN(names) ? names[s] : "?";
}

struct span {
	uint32_t no, nl, vo, vl;
};

struct pl_h2conn;

/* One request/response exchange. Freed only from conn_run's tail (dead list). */
struct h2s {
	struct pl_h2conn *c;
	struct h2s *next, *prev;
	int32_t id;
	enum h2s_state st;

	/* request head, copied out of nghttp2's transient buffers */
	char *hb;
	uint32_t hb_len, hb_cap;
	uint32_t nh;                 /* fields in h[] */
	struct span method, path, authority, scheme, protocol;
	uint8_t has_method, has_path, has_authority, has_scheme, has_protocol, too_big, has_cl;
	uint64_t cl;

	/* routing */
	struct pl_wtable *wt;
	const struct pl_listener *listener;
	const struct pl_route_entry *entry;
	struct pl_rule *rule;
	struct pl_cluster *cluster;
	const struct pl_endpoint *ep;
	struct pl_route_stats *stats;
	const struct pl_header_mod *resp_mods[PL_RH_MAX_MODS];
	unsigned n_resp_mods;
	const struct pl_header_mod *cors_local;  /* CORS fields of replies made here (pl_rh_cors_actual); NULL: none */
	char mname[24];
	char target[96];
	int status;

	/* backend */
	struct pl_upconn *up;
	struct pl_h2up_stream *h2u;  /* h2c backend (cluster app_proto H2C) instead of up */
	nghttp2_nv *unv;             /* its request head: built when routed, submitted at dispatch */
	size_t n_unv;
	uint8_t h2c_up;
	struct pl_buf up_out;
	size_t up_sent;
	uint64_t unacked;        /* request DATA bytes received, not yet handed to the backend */
	struct pl_h1scan rscan;
	size_t rscanned;
	llhttp_t sp;
	struct pl_buf rbody;     /* response body for DATA frames */
	char *tb;                /* trailer fields */
	uint32_t tb_len;
	uint32_t nt;             /* fields in t[] */
	uint8_t t_value, t_over;

	uint8_t chunked, req_done, is_head, discard;
	/* RequestMirror of a request with a body: its HTTP/1.1 head, then the body as it comes, until END_STREAM */
	struct pl_buf mbuf;
	uint32_t mhead_len;
	uint8_t n_mirrors, mchunked;
	const struct pl_mirror *mirrors[PL_RH_MAX_MIRRORS];
	uint8_t n_req_trailers;  /* request trailer fields: written after the last chunk, or in rts (h2c) */
	uint32_t req_trailer_bytes;
	struct span *rts;        /* h2c backend: the request trailers' fields in hb, for h2up's read_trailers */
	uint8_t resp_any, resp_head_sent, resp_done, up_eof, up_wblocked;
	uint8_t retry_ok, retried, ep_retried, deferred, sp_hdone, sp_done, counted, has_provider;
	uint8_t want_dispatch;   /* routed; connect after the current read batch (a reset in it costs nothing) */
	/* WebSocket by extended CONNECT: the backend gets an HTTP/1.1 Upgrade */
	uint8_t ws, up_shut;
	uint32_t ws_head;        /* bytes of the upgrade request not yet written: client DATA waits behind them */
	char ws_accept[32];      /* the Sec-WebSocket-Accept the backend must answer with */
	ev_tstamp start, conn_start, req_done_at, rule_deadline, last_io;
	struct pl_retry_st rt;   /* route retries (retry.h): the request is kept in up_out while rt.replay */

	/*
	 * Not zeroed by stream_new (2.7 of the struct's 3.5 KiB): read only
	 * below nh / nt, and cors only once pl_cors_actual()/pl_cors_preflight()
	 * has initialised it. Keep these last, h first.
	 */
	struct span h[MAX_HDRS];
	struct span t[MAX_TRAILERS];
	struct pl_cors_fields cors;  /* the CORS filter's resp_mods entry (pl_rh_cors_actual) */
};

struct pl_h2conn {
	struct pl_worker *w;
	struct pl_lsock *ls;
	struct pl_h2conn *next, *prev;
	int fd;
	enum h2c_state st;
	nghttp2_session *s;
	ev_io rio, wio;
	ev_timer timer;
	ev_tstamp timer_at, last_io;
	struct pl_budget budget;
	struct pl_buf in, out;
	struct pl_tlsconn *tls;
	struct h2s *streams, *dead;
	unsigned n_streams;
	int32_t max_sid;         /* highest client stream id that opened a stream */
	int32_t resets[16];      /* streams we reset lately: their late trailers are not an error */
	unsigned n_resets;
	uint8_t wblocked, eof, fatal, werr, in_run, goaway, lingering;
	uint8_t bad_settings;    /* the client's SETTINGS were refused (an h2c upgrade's HTTP2-Settings) */
	ev_tstamp linger_until;
	size_t linger_bytes;
	char peer[64];
};

static void conn_close(struct pl_h2conn *c);
static void conn_run(struct pl_h2conn *c);
static void up_cb(struct pl_upconn *u, int ev);
static void upstream_fail(struct h2s *st, int status, const char *why);
static void conn_error(struct h2s *st, int status, const char *why);
static int retry_later(struct h2s *st, int status, const char *why);
static int retry_status(struct h2s *st, int status, const char *backend);
static void replay_release(struct h2s *st);
static int hb_add(struct h2s *st, const uint8_t *p, size_t n, uint32_t *off, size_t limit);

/* ---------------------------------------------------------------- utils */

int pl_h2_preface(const char *p, size_t n)
{
	size_t k = PL_MIN(n, (size_t)PL_H2_PREFACE_LEN);
	if (memcmp(p, PL_H2_PREFACE, k) != 0)
		return 0;
	return k == PL_H2_PREFACE_LEN ? 2 : 1;
}

/*
 * Always inlined: lit is a literal at every call, so strlen() folds to a
 * constant and a name of another length costs one compare, not two calls
 * (out of line, ~1% of a proxied HTTP/2 request's instructions).
 */
static inline __attribute__((always_inline)) int name_is(const char *n, size_t nl, const char *lit)
{
	size_t l = strlen(lit);
	return nl == l && pl_strncaseeq(n, lit, l);
}

/* Fields that describe one HTTP/1.1 connection, never forwarded across a protocol change. */
static int conn_specific(const char *n, size_t nl)
{
	return name_is(n, nl, "connection") || name_is(n, nl, "keep-alive") || name_is(n, nl, "proxy-connection") ||
	       name_is(n, nl, "transfer-encoding") || name_is(n, nl, "upgrade") || name_is(n, nl, "te") ||
	       name_is(n, nl, "http2-settings");
}

/* Fields a trailer section may carry across protocols: no framing, connection or routing fields. */
static int trailer_ok(const char *n, size_t nl)
{
	return nl && !conn_specific(n, nl) && !name_is(n, nl, "content-length") && !name_is(n, nl, "host") &&
	       !name_is(n, nl, "trailer");
}

struct nvfill {
	nghttp2_nv *nv;
	size_t n, cap;
};

static void nv_kv(void *arg, const struct pl_kv *kv)
{
	struct nvfill *f = arg;
	if (f->n < f->cap)
		f->nv[f->n++] = (nghttp2_nv){ (uint8_t *)kv->name, (uint8_t *)kv->value, kv->name_len, kv->value_len,
					      NGHTTP2_NV_FLAG_NONE };
}

/* Appends the response modifiers' set and add fields to nv (n used of cap); the new count. */
static size_t resp_mods_nv(const struct h2s *st, nghttp2_nv *nv, size_t n, size_t cap)
{
	struct nvfill f = { nv, n, cap };
	pl_rh_mods_each(st->resp_mods, st->n_resp_mods, 0, nv_kv, &f);
	return f.n;
}

/* ------------------------------------------------------------ streams */

static inline const char *hs(const struct h2s *st, uint32_t off)
{
	return st->hb + off;
}

static struct pl_route_stats *stream_stats(struct h2s *st)
{
	if (!st->stats)
		st->stats = pl_worker_nrstats(st->c->w, st->listener ? st->listener->name : "");
	return st->stats;
}

static void count_status(struct h2s *st, int status)
{
	st->status = status;
	if (st->counted)
		return;
	st->counted = 1;
	pl_stats_inc(stream_stats(st), st->c->w->id, status);
}

static void count_upstream_error(struct h2s *st)
{
	struct pl_worker *w = st->c->w;
	atomic_fetch_add_explicit(&w->upstream_errors, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&stream_stats(st)->w[w->id].upstream_errors, 1, memory_order_relaxed);
}

static struct h2s *stream_new(struct pl_h2conn *c, int32_t id)
{
	struct h2s *st = malloc(sizeof(*st));
	if (!st)
		return NULL;
	memset(st, 0, offsetof(struct h2s, h));
	st->c = c;
	st->id = id;
	st->start = st->last_io = ev_now(c->w->loop);
	pl_buf_init(&st->up_out, &c->budget);
	pl_buf_init(&st->rbody, &c->budget);
	pl_buf_init(&st->mbuf, &c->budget);
	snprintf(st->target, sizeof(st->target), "-");
	st->next = c->streams;
	if (c->streams)
		c->streams->prev = st;
	c->streams = st;
	c->n_streams++;
	return st;
}

/* The h2c backend stream is given up (reset); no callback follows. */
static void h2u_drop(struct h2s *st)
{
	if (st->h2u) {
		pl_h2up_detach(st->h2u);
		st->h2u = NULL;
	}
}

/* Gives the stream's credit back to the connection window. */
static void ack_body(struct h2s *st, uint64_t n)
{
	if (!n)
		return;
	if (st->st == S_CLOSED)
		nghttp2_session_consume_connection(st->c->s, (size_t)n);
	else
		nghttp2_session_consume(st->c->s, st->id, (size_t)n);
}

/*
 * The stream is over for nghttp2 (both ends closed, or reset): release the
 * backend, unpin the table, and park the stream for freeing at the end of
 * the current run.
 */
static void stream_finish(struct h2s *st)
{
	struct pl_h2conn *c = st->c;
	if (st->st == S_CLOSED)
		return;
	h2u_drop(st);
	if (st->up) {
		int reusable = st->resp_done && st->req_done && pl_buf_empty(&st->up_out) && !st->up_eof &&
			       !st->ws && llhttp_should_keep_alive(&st->sp);
		pl_up_release(st->up, reusable);
		st->up = NULL;
	}
	if (st->status == 0 && st->st == S_PROXY)
		pl_debug("%s \"%s %s\" (h2 stream %d): reset before the response", c->peer, st->mname, st->target, st->id);
	st->st = S_CLOSED;
	/* the budget is the connection's: give it back now, not at the end of the run */
	pl_buf_free(&st->up_out);
	pl_buf_free(&st->rbody);
	pl_buf_free(&st->mbuf);
	st->n_mirrors = 0;
	if (st->unacked && c->s) {
		nghttp2_session_consume_connection(c->s, (size_t)st->unacked);
		st->unacked = 0;
	}
	if (st->wt) {
		pl_wtable_put(st->wt);
		st->wt = NULL;
	}
	if (c->s)
		nghttp2_session_set_stream_user_data(c->s, st->id, NULL);
	if (st->prev)
		st->prev->next = st->next;
	else
		c->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	c->n_streams--;
	st->prev = NULL;
	st->next = c->dead;
	c->dead = st;
}

static void stream_free(struct h2s *st)
{
	pl_buf_free(&st->up_out);
	pl_buf_free(&st->rbody);
	pl_buf_free(&st->mbuf);
	free(st->rts);
	free(st->hb);
	free(st->tb);
	free(st->unv);
	free(st);
}

static void stream_reset(struct h2s *st, uint32_t code)
{
	if (st->st == S_CLOSED)
		return;
	nghttp2_submit_rst_stream(st->c->s, NGHTTP2_FLAG_NONE, st->id, code);
	st->c->resets[st->c->n_resets++ % PL_ARRAY_LEN(st->c->resets)] = st->id;
	h2u_drop(st);
	if (st->up) {
		pl_up_close(st->up);
		st->up = NULL;
	}
	st->discard = 1;
}

/* ------------------------------------------------------- data provider */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	struct h2s *st = src->ptr;
	size_t n = PL_MIN(length, pl_buf_size(&st->rbody));
	if (n) {
		memcpy(buf, pl_buf_rptr(&st->rbody), n);
		pl_buf_consume(&st->rbody, n);
		if (st->h2u)
			pl_h2up_consume(st->h2u, n);   /* passed on: the backend may send more */
	}
	if (pl_buf_empty(&st->rbody) && st->resp_done) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->nt) {
			nghttp2_nv nv[MAX_TRAILERS];
			for (uint32_t i = 0; i < st->nt; i++) {
				nv[i].name = (uint8_t *)st->tb + st->t[i].no;
				nv[i].namelen = st->t[i].nl;
				nv[i].value = (uint8_t *)st->tb + st->t[i].vo;
				nv[i].valuelen = st->t[i].vl;
				nv[i].flags = NGHTTP2_NV_FLAG_NONE;
			}
			if (nghttp2_submit_trailer(s, id, nv, st->nt) == 0)
				*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		}
		return (ssize_t)n;
	}
	if (n == 0) {
		st->deferred = 1;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

static void resume(struct h2s *st)
{
	if (st->deferred && st->st != S_CLOSED) {
		st->deferred = 0;
		nghttp2_session_resume_data(st->c->s, st->id);
	}
}

/* ------------------------------------------------------- local responses */

/*
 * The stream is answered here: any backend exchange is dropped, the rest of
 * the request body is acknowledged and discarded.
 */
static void go_local(struct h2s *st)
{
	st->resp_done = 1;
	st->resp_head_sent = 1;
	h2u_drop(st);
	if (st->up) {
		pl_up_close(st->up);
		st->up = NULL;
	}
	st->st = S_LOCAL;
	st->discard = 1;
	if (st->unacked) {
		ack_body(st, st->unacked);
		st->unacked = 0;
	}
	pl_buf_consume(&st->up_out, pl_buf_size(&st->up_out));
}

/* Appends the request's CORS fields for a reply made here (st->cors_local) to nv; the new count. */
static size_t cors_local_nv(const struct h2s *st, nghttp2_nv *nv, size_t n, size_t cap)
{
	struct nvfill f = { nv, n, cap };
	pl_rh_mods_each(&st->cors_local, st->cors_local != NULL, 0, nv_kv, &f);
	return f.n;
}

/*
 * A response made here: status, optional extra field, the request's CORS
 * fields, a short text body unless bodyless.
 */
static void local_reply(struct h2s *st, int status, const char *xname, const char *xval, size_t xlen, int with_body)
{
	struct pl_h2conn *c = st->c;
	char sbuf[4], lbuf[24];
	snprintf(sbuf, sizeof(sbuf), "%03d", status);
	nghttp2_nv nv[4 + PL_CORS_MAX_FIELDS];
	size_t n = 0;
	nv[n++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)sbuf, 7, 3, NGHTTP2_NV_FLAG_NONE };
	if (xname)
		nv[n++] = (nghttp2_nv){ (uint8_t *)xname, (uint8_t *)xval, strlen(xname), xlen, NGHTTP2_NV_FLAG_NONE };
	n = cors_local_nv(st, nv, n, PL_ARRAY_LEN(nv) - 2);
	pl_buf_consume(&st->rbody, pl_buf_size(&st->rbody));
	if (with_body) {
		char body[80];
		int bl = snprintf(body, sizeof(body), "%d %s\n", status, pl_rh_reason(status));
		if (bl > 0 && pl_buf_reserve(&st->rbody, (size_t)bl) == 0)
			pl_buf_put(&st->rbody, body, (size_t)bl);
		nv[n++] = (nghttp2_nv){ (uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10, NGHTTP2_NV_FLAG_NONE };
		int ll = snprintf(lbuf, sizeof(lbuf), "%zu", pl_buf_size(&st->rbody));
		nv[n++] = (nghttp2_nv){ (uint8_t *)"content-length", (uint8_t *)lbuf, 14, (size_t)ll, NGHTTP2_NV_FLAG_NONE };
	}
	go_local(st);
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = read_body };
	int rv = nghttp2_submit_response(c->s, st->id, nv, n,
					 (with_body && !pl_buf_empty(&st->rbody) && !st->is_head) ? &prd : NULL);
	if (rv != 0)
		stream_reset(st, NGHTTP2_INTERNAL_ERROR);
	count_status(st, status);
}

/* The request carries content-type application/grpc (or application/grpc+proto...). */
static int is_grpc(const struct h2s *st)
{
	for (uint32_t i = 0; i < st->nh; i++) {
		const struct span *h = &st->h[i];
		if (name_is(hs(st, h->no), h->nl, "content-type") && h->vl >= 16 &&
		    pl_strncaseeq(hs(st, h->vo), "application/grpc", 16) &&
		    (h->vl == 16 || hs(st, h->vo)[16] == '+' || hs(st, h->vo)[16] == ';'))
			return 1;
	}
	return 0;
}

/*
 * gRPC clients read errors from grpc-status, not the HTTP status (which
 * they map to UNKNOWN or worse): a trailers-only response (one HEADERS,
 * END_STREAM) with 200, grpc-status and a percent-encoded grpc-message.
 * No route (404) is UNIMPLEMENTED; a missing, invalid or failing backend
 * (500, 502, 503, 504) is UNAVAILABLE, as GRPCRoute asks for invalid refs.
 */
static int grpc_reply(struct h2s *st, int status, const char *why)
{
	const char *code = status == 404 ? "12" : (status >= 500 && status <= 504) ? "14" : NULL;
	if (!code || !is_grpc(st))
		return 0;
	char msg[160];
	size_t ml = 0;
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)why; *p && ml + 4 < sizeof(msg); p++) {
		if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
			msg[ml++] = (char)*p;
		} else {
			msg[ml++] = '%';
			msg[ml++] = hex[*p >> 4];
			msg[ml++] = hex[*p & 15];
		}
	}
	nghttp2_nv nv[4 + PL_CORS_MAX_FIELDS] = {
		{ (uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"grpc-status", (uint8_t *)code, 11, 2, NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"grpc-message", (uint8_t *)msg, 12, ml, NGHTTP2_NV_FLAG_NONE },
	};
	size_t n = cors_local_nv(st, nv, 4, PL_ARRAY_LEN(nv));
	go_local(st);
	pl_buf_consume(&st->rbody, pl_buf_size(&st->rbody));
	if (nghttp2_submit_response(st->c->s, st->id, nv, n, NULL) != 0)
		stream_reset(st, NGHTTP2_INTERNAL_ERROR);
	count_status(st, 200);
	return 1;
}

static void respond_local(struct h2s *st, int status, const char *why)
{
	struct pl_h2conn *c = st->c;
	if (status >= 500)
		pl_warn("%s \"%s %s\" (h2) %d: %s", c->peer, st->mname, st->target, status, why);
	else
		pl_info("%s \"%s %s\" (h2) %d: %s", c->peer, st->mname, st->target, status, why);
	if (grpc_reply(st, status, why))
		return;
	local_reply(st, status, NULL, NULL, 0, 1);
}

/* ---------------------------------------------------------- request head */

struct reqinfo {
	const char *path, *query;
	size_t path_len, query_len;
	char host[256];
	int host_len;
	const char *authority;   /* as sent, for the backend's Host */
	size_t authority_len;
};

static void send_redirect(struct h2s *st, const struct pl_redirect *rd, const struct reqinfo *ri)
{
	struct pl_h2conn *c = st->c;
	const char *err = NULL;
	size_t len;
	char *loc = pl_rh_location(rd, &st->entry->match, c->tls != NULL, ri->host, (size_t)ri->host_len, c->ls->port,
				   ri->path, ri->path_len, ri->query, ri->query_len, "", "", &len, &err);
	if (!loc) {
		respond_local(st, 500, err);
		return;
	}
	local_reply(st, rd->status_code ? rd->status_code : 302, "location", loc, len, 0);
	free(loc);
}

/* A CORS preflight on a rule with the CORS filter: answered here, never forwarded. */
static void send_preflight(struct h2s *st, const struct pl_cors *cors, const struct pl_req_view *view)
{
	struct pl_h2conn *c = st->c;
	int status = pl_cors_preflight(&st->cors, cors, view);
	/* the preflight's fields overwrite the actual ones in st->cors: local_reply writes them */
	st->cors_local = &st->cors.mod;
	if (status == 200)
		pl_debug("%s \"%s %s\" (h2) 200 CORS preflight", c->peer, st->mname, st->target);
	else
		pl_info("%s \"%s %s\" (h2) %d: CORS preflight from an origin the rule does not allow", c->peer,
			st->mname, st->target, status);
	local_reply(st, status, NULL, NULL, 0, status != 200);
}

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24            /* base64 of 16 bytes */

/*
 * A fresh Sec-WebSocket-Key (RFC 6455 4.1: 16 random bytes, base64) into
 * key (WS_KEY_LEN + 1 bytes), and the Sec-WebSocket-Accept the backend
 * must answer it with into st->ws_accept. 0, or -1 when OpenSSL fails.
 */
static int ws_new_key(struct h2s *st, char *key)
{
	unsigned char raw[16], md[SHA_DIGEST_LENGTH];
	char in[WS_KEY_LEN + sizeof(WS_GUID) - 1];
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
	memcpy(in, key, WS_KEY_LEN);
	memcpy(in + WS_KEY_LEN, WS_GUID, sizeof(WS_GUID) - 1);
	if (!EVP_Digest(in, sizeof(in), md, NULL, EVP_sha1(), NULL))
		return -1;
	PL_BUG_ON(sizeof(st->ws_accept) < 4 * ((sizeof(md) + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)st->ws_accept, md, sizeof(md));
	return 0;
}

/*
 * The backend's HTTP/1.1 request head into st->up_out; length or -1 with
 * *err. A WebSocket stream's head is a GET with Upgrade: websocket and a
 * key of our own (the client's HTTP/2 request has none).
 */
static ssize_t emit_req_head(struct h2s *st, const struct reqinfo *ri, const struct pl_rh_filters *f, const char **err)
{
	struct pl_h2conn *c = st->c;
	const struct pl_rewrite *rw = f->rewrite;
	char ws_key[WS_KEY_LEN + 1];
	if (st->ws && ws_new_key(st, ws_key) != 0) {
		*err = "no random bytes for Sec-WebSocket-Key";
		return -1;
	}
	size_t need = st->hb_len + 8 * st->nh + 640 + pl_rh_mods_size(f->req_mods, f->n_req_mods);
	need += ri->path_len + pl_rh_path_extra(f);
	if (rw && rw->hostname)
		need += strlen(rw->hostname);
	if (pl_buf_reserve(&st->up_out, need) != 0) {
		*err = "request head too large for the connection budget";
		return -1;
	}
	char *start = pl_buf_wptr(&st->up_out);
	struct pl_wr w = { start, start + pl_buf_space(&st->up_out), 0 };
	if (st->ws)
		PL_WR_LIT(&w, "GET");
	else
		pl_wr_put(&w, hs(st, st->method.vo), st->method.vl);
	PL_WR_LIT(&w, " ");
	int pn = pl_rh_write_target(f, &st->entry->match, ri->path, ri->path_len, ri->query, ri->query_len, w.p,
				    (size_t)(w.end - w.p));
	if (pn < 0) {
		*err = "rewritten path too long";
		return -1;
	}
	w.p += pn;
	PL_WR_LIT(&w, " HTTP/1.1\r\nHost: ");
	const char *av;
	size_t al;
	pl_rh_authority(f, ri->authority, ri->authority_len, &av, &al);
	pl_wr_put(&w, av, al);
	PL_WR_LIT(&w, "\r\n");

	int te_trailers = 0, n_cookie = 0;
	unsigned n_xff = 0;
	for (uint32_t i = 0; i < st->nh; i++) {
		const char *n = hs(st, st->h[i].no), *v = hs(st, st->h[i].vo);
		size_t nl = st->h[i].nl, vl = st->h[i].vl;
		if (name_is(n, nl, "host") || name_is(n, nl, "content-length") || name_is(n, nl, "x-forwarded-proto"))
			continue;
		if (name_is(n, nl, "te")) {
			te_trailers = 1;   /* nghttp2 lets only "trailers" through */
			continue;
		}
		if (conn_specific(n, nl))
			continue;
		if (st->ws && (name_is(n, nl, "sec-websocket-key") || name_is(n, nl, "sec-websocket-accept")))
			continue;
		if (name_is(n, nl, "x-forwarded-for")) {
			n_xff++;
			continue;
		}
		if (f->n_req_mods && pl_rh_mods_hit(f->req_mods, f->n_req_mods, n, nl))
			continue;
		if (name_is(n, nl, "cookie")) {
			n_cookie++;
			continue;
		}
		pl_wr_hdr(&w, n, nl, v, vl);
	}
	if (n_cookie) {
		/* RFC 9113 8.2.3: crumbs are joined with "; " for HTTP/1.1 */
		PL_WR_LIT(&w, "cookie: ");
		int first = 1;
		for (uint32_t i = 0; i < st->nh; i++) {
			if (!name_is(hs(st, st->h[i].no), st->h[i].nl, "cookie"))
				continue;
			if (!first)
				PL_WR_LIT(&w, "; ");
			first = 0;
			pl_wr_put(&w, hs(st, st->h[i].vo), st->h[i].vl);
		}
		PL_WR_LIT(&w, "\r\n");
	}
	pl_rh_mods_emit(&w, f->req_mods, f->n_req_mods, 1);
	PL_WR_LIT(&w, "X-Forwarded-For: ");
	for (uint32_t i = 0; n_xff && i < st->nh; i++) {
		if (!name_is(hs(st, st->h[i].no), st->h[i].nl, "x-forwarded-for"))
			continue;
		pl_wr_put(&w, hs(st, st->h[i].vo), st->h[i].vl);
		PL_WR_LIT(&w, ", ");
	}
	pl_rh_xff_tail(&w, c->peer, c->tls != NULL);
	if (st->ws) {
		PL_WR_LIT(&w, "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: ");
		pl_wr_put(&w, ws_key, WS_KEY_LEN);
		PL_WR_LIT(&w, "\r\n");
		te_trailers = 0;   /* no message body either way: TE means nothing here */
	} else if (st->has_cl) {
		PL_WR_LIT(&w, "Content-Length: ");
		pl_wr_u64(&w, st->cl);
		PL_WR_LIT(&w, "\r\n");
	} else if (st->chunked) {
		PL_WR_LIT(&w, "Transfer-Encoding: chunked\r\n");
	} else if (st->method.vl >= 3 && (name_is(hs(st, st->method.vo), st->method.vl, "POST") ||
					 name_is(hs(st, st->method.vo), st->method.vl, "PUT") ||
					 name_is(hs(st, st->method.vo), st->method.vl, "PATCH"))) {
		PL_WR_LIT(&w, "Content-Length: 0\r\n");
	}
	if (te_trailers)
		PL_WR_LIT(&w, "TE: trailers\r\nConnection: te\r\n");
	PL_WR_LIT(&w, "\r\n");
	if (w.over) {
		*err = "request head does not fit";
		return -1;
	}
	size_t len = (size_t)(w.p - start);
	pl_buf_commit(&st->up_out, len);
	return (ssize_t)len;
}

static void connect_failed(struct h2s *st, const char *why);

static void dispatch_h2(struct h2s *st);

static void dispatch(struct h2s *st, int fresh)
{
	struct pl_h2conn *c = st->c;
	int err = 0;
	if (st->h2c_up) {
		dispatch_h2(st);
		return;
	}
	/*
	 * pl_up_connect: the cluster may be TLS (BackendTLSPolicy); I/O goes through pl_up_read/pl_up_send.
	 * A WebSocket takes a new connection: it cannot be retried on another if a pooled one was stale.
	 */
	struct pl_upconn *u = pl_up_connect(c->w, st->cluster, st->ep, fresh || st->ws, up_cb, st, &err);
	if (!u) {
		char why[160];
		snprintf(why, sizeof(why), "connect to %s (%s) failed: %s", st->ep->text, st->cluster->name,
			 strerror(-err));
		connect_failed(st, why);
		return;
	}
	u->in.budget = &c->budget;
	st->up = u;
	st->up_wblocked = 0;
	st->up_eof = 0;
	st->up_sent = 0;
	st->resp_any = 0;
	st->sp_hdone = st->sp_done = 0;
	st->rscanned = 0;
	pl_h1scan_init(&st->rscan, (uint32_t)c->w->cfg->max_request_line, MAX_RESP_HEAD);
	st->conn_start = ev_now(c->w->loop);
}

static void connect_failed(struct h2s *st, const char *why)
{
	if (st->up) {
		pl_up_close(st->up);
		st->up = NULL;
	}
	if (!st->ep_retried && st->cluster->n_eps > 1 && !st->rt.replay) {
		const struct pl_endpoint *ep = pl_router_endpoint(st->cluster);
		if (ep && ep != st->ep) {
			pl_info("%s \"%s %s\" (h2): %s; trying %s", st->c->peer, st->mname, st->target, why, ep->text);
			count_upstream_error(st);
			st->ep_retried = 1;
			st->ep = ep;
			st->up_sent = 0;
			dispatch(st, 0);
			return;
		}
	}
	st->retry_ok = 0;
	conn_error(st, 502, why);
}

/* ------------------------------------------------------ h2c backends */

static void filter_trailers(struct h2s *st);

/* Runs the connection once the current callbacks are over (never inside the backend session's). */
static void kick(struct h2s *st)
{
	if (st->c->st != C_CLOSED)
		ev_feed_event(st->c->w->loop, &st->c->wio, EV_WRITE);
}

struct blk {
	char *p, *end;
};

static const char *blk_put(struct blk *b, const char *s, size_t n)
{
	char *d = b->p;
	PL_BUG_ON((size_t)(b->end - b->p) < n);
	memcpy(d, s, n);
	b->p += n;
	return d;
}

/*
 * The request head for an h2c backend, as an nghttp2_nv array with its
 * strings in one allocation (st->unv): pseudo-headers from the route's
 * view of the request (URLRewrite, Host set), the client's fields minus
 * connection-specific ones and those the filters replace, te: trailers
 * kept (gRPC needs it), X-Forwarded-For/-Proto regenerated.
 */
static int build_h2_head(struct h2s *st, const struct reqinfo *ri, const struct pl_rh_filters *f, const char **err)
{
	struct pl_h2conn *c = st->c;
	const struct pl_rewrite *rw = f->rewrite;
	size_t n_nv = st->nh + 8, bytes = st->hb_len + strlen(c->peer) + 64;
	for (unsigned m = 0; m < f->n_req_mods; m++)
		n_nv += f->req_mods[m]->n_set + f->req_mods[m]->n_add;
	size_t path_cap = ri->path_len + pl_rh_path_extra(f);
	bytes += path_cap + ri->query_len + 1 + ri->authority_len + (rw && rw->hostname ? strlen(rw->hostname) : 0);
	nghttp2_nv *nv = malloc(n_nv * sizeof(*nv) + bytes);
	if (!nv) {
		*err = "out of memory building the backend request";
		return -1;
	}
	struct blk b = { (char *)(nv + n_nv), (char *)(nv + n_nv) + bytes };
	size_t n = 0;
#define NV(np, nl, vp, vl) \
	(nv[n++] = (nghttp2_nv){ (uint8_t *)(np), (uint8_t *)(vp), (nl), (vl), NGHTTP2_NV_FLAG_NONE })
	NV(":method", 7, blk_put(&b, hs(st, st->method.vo), st->method.vl), st->method.vl);
	NV(":scheme", 7, "http", 4);
	const char *av;
	size_t al;
	pl_rh_authority(f, ri->authority, ri->authority_len, &av, &al);
	NV(":authority", 10, blk_put(&b, av, al), al);
	char *path = b.p;
	int k = pl_rh_write_target(f, &st->entry->match, ri->path, ri->path_len, ri->query, ri->query_len, path,
				   path_cap + ri->query_len + 1);
	if (k < 0) {
		free(nv);
		*err = "rewritten path too long";
		return -1;
	}
	size_t pl = (size_t)k;
	b.p += pl;
	NV(":path", 5, path, pl);

	int te_trailers = 0;
	for (uint32_t i = 0; i < st->nh; i++) {
		const char *hn = hs(st, st->h[i].no), *hv = hs(st, st->h[i].vo);
		size_t nl = st->h[i].nl, vl = st->h[i].vl;
		if (name_is(hn, nl, "host") || name_is(hn, nl, "x-forwarded-proto"))
			continue;
		if (name_is(hn, nl, "te")) {
			te_trailers = 1;   /* nghttp2 lets only "trailers" through */
			continue;
		}
		if (name_is(hn, nl, "x-forwarded-for"))
			continue;
		if (conn_specific(hn, nl) || (f->n_req_mods && pl_rh_mods_hit(f->req_mods, f->n_req_mods, hn, nl)))
			continue;
		const char *dn = blk_put(&b, hn, nl);
		NV(dn, nl, blk_put(&b, hv, vl), vl);
	}
	/* the modifiers' strings are the table's (pinned by st->wt); nghttp2 copies them */
	struct nvfill mf = { nv, n, n_nv };
	pl_rh_mods_each(f->req_mods, f->n_req_mods, 1, nv_kv, &mf);
	n = mf.n;
	/* X-Forwarded-For: the client's values (their bytes are in hb_len), then the peer */
	char *xff = b.p;
	for (uint32_t i = 0; i < st->nh; i++) {
		if (!name_is(hs(st, st->h[i].no), st->h[i].nl, "x-forwarded-for"))
			continue;
		blk_put(&b, hs(st, st->h[i].vo), st->h[i].vl);
		blk_put(&b, ", ", 2);
	}
	blk_put(&b, c->peer, strlen(c->peer));
	NV("x-forwarded-for", 15, xff, (size_t)(b.p - xff));
	if (c->tls)
		NV("x-forwarded-proto", 17, "https", 5);
	else
		NV("x-forwarded-proto", 17, "http", 4);
	if (te_trailers)
		NV("te", 2, "trailers", 8);
#undef NV
	PL_BUG_ON(n > n_nv);
	free(st->unv);
	st->unv = nv;
	st->n_unv = n;
	return 0;
}

static void unv_free(struct h2s *st)
{
	free(st->unv);
	st->unv = NULL;
	st->n_unv = 0;
}

/* Another endpoint can still be tried after a failed connect. */
static int h2c_can_retry(const struct h2s *st)
{
	return !st->ep_retried && st->cluster->n_eps > 1 && st->unv;
}

/*
 * Connecting to the h2c backend failed before anything of the stream left:
 * like connect_failed(), one other endpoint is tried (at the next run of the
 * connection, never from inside h2up's callbacks) before 502.
 */
static void h2c_connect_failed(struct h2s *st, const char *why)
{
	if (st->rt.replay && st->unv) {
		if (retry_later(st, 0, why)) {
			kick(st);
			return;
		}
	} else if (h2c_can_retry(st)) {
		const struct pl_endpoint *ep = pl_router_endpoint(st->cluster);
		if (ep && ep != st->ep) {
			pl_info("%s \"%s %s\" (h2): %s; trying %s", st->c->peer, st->mname, st->target, why, ep->text);
			count_upstream_error(st);
			st->ep_retried = 1;
			st->ep = ep;
			st->want_dispatch = 1;
			kick(st);
			return;
		}
	}
	unv_free(st);
	upstream_fail(st, 502, why);
}

static void h2u_on_head(void *data, int status, const nghttp2_nv *in, size_t n_in, int end_stream)
{
	struct h2s *st = data;
	struct pl_h2conn *c = st->c;
	st->last_io = ev_now(c->w->loop);
	st->resp_any = 1;
	if (st->st == S_PROXY && retry_status(st, status, "h2c backend")) {
		kick(st);
		return;
	}
	if (!st->rt.replay)
		unv_free(st);   /* the session is connected: no retry elsewhere */
	int interim = status < 200;
	static __thread nghttp2_nv nv[MAX_HDRS + 2 * PL_RH_MAX_MODS * 8 + PL_CORS_MAX_FIELDS + 1];
	size_t nn = 0;
	char sbuf[4];
	snprintf(sbuf, sizeof(sbuf), "%03d", status);
	nv[nn++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)sbuf, 7, 3, NGHTTP2_NV_FLAG_NONE };
	for (size_t i = 0; i < n_in && nn < MAX_HDRS; i++) {
		const char *hn = (const char *)in[i].name;
		size_t nl = in[i].namelen;
		if (conn_specific(hn, nl) || name_is(hn, nl, "host"))
			continue;
		if (name_is(hn, nl, "content-length") && (interim || status == 204))
			continue;
		if (!interim && st->n_resp_mods && pl_rh_mods_hit(st->resp_mods, st->n_resp_mods, hn, nl))
			continue;
		nv[nn++] = in[i];
	}
	if (!interim)
		nn = resp_mods_nv(st, nv, nn, PL_ARRAY_LEN(nv));
	if (interim) {
		if (nghttp2_submit_headers(c->s, NGHTTP2_FLAG_NONE, st->id, NULL, nv, nn, NULL) != 0)
			stream_reset(st, NGHTTP2_INTERNAL_ERROR);
		kick(st);
		return;
	}
	/* end_stream: a trailers-only response (gRPC errors) stays one HEADERS frame with END_STREAM */
	int bodyless = end_stream || st->is_head || status == 204 || status == 304;
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = read_body };
	st->has_provider = !bodyless;
	if (nghttp2_submit_response(c->s, st->id, nv, nn, bodyless ? NULL : &prd) != 0) {
		stream_reset(st, NGHTTP2_INTERNAL_ERROR);
		kick(st);
		return;
	}
	st->resp_head_sent = 1;
	count_status(st, status);
	kick(st);
}

static void h2u_on_data(void *data, const uint8_t *p, size_t n)
{
	struct h2s *st = data;
	st->last_io = ev_now(st->c->w->loop);
	if (st->st != S_PROXY || !st->has_provider) {
		pl_h2up_consume(st->h2u, n);   /* a body where none may be: dropped */
		return;
	}
	if (pl_buf_reserve(&st->rbody, n) != 0) {
		pl_warn("%s \"%s %s\" (h2): response body buffer exhausted; resetting", st->c->peer, st->mname,
			st->target);
		stream_reset(st, NGHTTP2_INTERNAL_ERROR);
		kick(st);
		return;
	}
	pl_buf_put(&st->rbody, p, n);
	resume(st);
	kick(st);
}

static void h2u_on_trailers(void *data, const nghttp2_nv *nv, size_t n)
{
	struct h2s *st = data;
	st->nt = 0;
	st->tb_len = 0;
	for (size_t i = 0; i < n && !st->t_over; i++) {
		size_t nl = nv[i].namelen, vl = nv[i].valuelen;
		if (!st->tb && !(st->tb = malloc(MAX_TRAILER_BYTES))) {
			st->t_over = 1;
			break;
		}
		if (st->nt == MAX_TRAILERS || st->tb_len + nl + vl > MAX_TRAILER_BYTES) {
			st->t_over = 1;
			break;
		}
		struct span *t = &st->t[st->nt++];
		t->no = st->tb_len;
		t->nl = (uint32_t)nl;
		memcpy(st->tb + st->tb_len, nv[i].name, nl);
		st->tb_len += (uint32_t)nl;
		t->vo = st->tb_len;
		t->vl = (uint32_t)vl;
		memcpy(st->tb + st->tb_len, nv[i].value, vl);
		st->tb_len += (uint32_t)vl;
	}
}

static void h2u_on_close(void *data, int failed, const char *why)
{
	struct h2s *st = data;
	st->h2u = NULL;
	if (st->st != S_PROXY) {
		kick(st);
		return;
	}
	if (failed) {
		if (failed == PL_H2UP_TIMEOUT && !st->resp_any) {
			/* as a connect timeout to an HTTP/1.1 backend (T_CONNECT): no other endpoint */
			st->retry_ok = 0;
			if (!(st->rt.replay && st->unv && retry_later(st, 0, why))) {
				unv_free(st);
				upstream_fail(st, 504, why);
			}
		} else if (failed == PL_H2UP_UNSENT && !st->resp_any) {
			h2c_connect_failed(st, why);
		} else if (retry_later(st, 0, why)) {
			/* the backoff runs: nothing more here */
		} else if (!st->resp_head_sent) {
			unv_free(st);
			upstream_fail(st, 502, why);
		} else {
			pl_warn("%s \"%s %s\" (h2): %s after the response started; resetting", st->c->peer, st->mname,
				st->target, why);
			count_upstream_error(st);
			stream_reset(st, NGHTTP2_INTERNAL_ERROR);
		}
		kick(st);
		return;
	}
	st->resp_done = 1;
	if (st->t_over) {
		pl_warn("%s \"%s %s\" (h2): backend trailers too large; dropped", st->c->peer, st->mname, st->target);
		st->nt = 0;
	}
	filter_trailers(st);
	if (!st->has_provider)
		st->nt = 0;
	if (!st->req_done) {
		/* answered before the request body ended: the rest is read and dropped */
		st->discard = 1;
		pl_buf_consume(&st->up_out, pl_buf_size(&st->up_out));
		if (st->unacked) {
			ack_body(st, st->unacked);
			st->unacked = 0;
		}
	}
	resume(st);
	kick(st);
}

/* Request body for the h2c backend: what the client sent, credited back to it as it leaves. */
static size_t h2u_read_body(void *data, uint8_t *buf, size_t len, int *eof)
{
	struct h2s *st = data;
	size_t kept = st->rt.replay ? st->up_sent : 0;   /* a kept request is read, not consumed */
	size_t n = PL_MIN(len, pl_buf_size(&st->up_out) - kept);
	if (n) {
		memcpy(buf, pl_buf_rptr(&st->up_out) + kept, n);
		if (st->rt.replay)
			st->up_sent += n;
		else
			pl_buf_consume(&st->up_out, n);
		uint64_t credit = PL_MIN(st->unacked, (uint64_t)n);
		if (credit) {
			ack_body(st, credit);
			st->unacked -= credit;
		}
		st->last_io = ev_now(st->c->w->loop);
		kick(st);
	}
	*eof = st->req_done && pl_buf_size(&st->up_out) == (st->rt.replay ? st->up_sent : 0);
	return n;
}

/* Request trailers for the h2c backend, after the body (req_trailer kept them). */
static size_t h2u_read_trailers(void *data, nghttp2_nv *nv, size_t cap)
{
	struct h2s *st = data;
	size_t n = 0;
	for (; n < st->n_req_trailers && n < cap && st->rts; n++) {
		const struct span *t = &st->rts[n];
		nv[n] = (nghttp2_nv){ (uint8_t *)st->hb + t->no, (uint8_t *)st->hb + t->vo, t->nl, t->vl,
				      NGHTTP2_NV_FLAG_NONE };
	}
	return n;
}

static const struct pl_h2up_ops h2u_ops = {
	.on_head = h2u_on_head,
	.on_data = h2u_on_data,
	.on_trailers = h2u_on_trailers,
	.on_close = h2u_on_close,
	.read_body = h2u_read_body,
	.read_trailers = h2u_read_trailers,
};

static void dispatch_h2(struct h2s *st)
{
	struct pl_h2conn *c = st->c;
	const char *why = "no request head";
	st->conn_start = ev_now(c->w->loop);
	int has_body = !st->req_done || !pl_buf_empty(&st->up_out) || st->n_req_trailers;
	if (st->unv)
		st->h2u = pl_h2up_open(c->w, st->cluster, st->ep, st->unv, st->n_unv, has_body, &h2u_ops, st, &why);
	/* the head is kept only while a failed connect (or a route retry) could still send it again */
	if (!h2c_can_retry(st) && !st->rt.replay)
		unv_free(st);
	if (!st->h2u) {
		char msg[200];
		snprintf(msg, sizeof(msg), "h2c backend %s (%s): %s", st->ep->text, st->cluster->name, why);
		h2c_connect_failed(st, msg);
	}
}

/* ------------------------------------------------------------ mirrors */

/*
 * RequestMirror (mirror.h), as for HTTP/1 requests: the mirror gets the
 * HTTP/1.1 head an HTTP/1.1 backend gets (hl bytes at the front of up_out;
 * also built for h2c clusters) and the whole body, which for an HTTP/2
 * request comes after its head: up to PL_MIRROR_MAX_BODY bytes of DATA are
 * copied to st->mbuf and the mirrors start at END_STREAM. A larger body (or
 * a content-length above the bound) skips the mirrors, as from HTTP/1.
 */
static void mirror_begin(struct h2s *st, const struct pl_rh_filters *f, size_t hl)
{
	struct pl_h2conn *c = st->c;
	if (st->req_done) {
		for (unsigned i = 0; i < f->n_mirrors; i++)
			pl_mirror_start(c->w, f->mirrors[i], pl_buf_rptr(&st->up_out), hl, NULL, 0);
		return;
	}
	if ((st->has_cl && st->cl > PL_MIRROR_MAX_BODY) || pl_buf_reserve(&st->mbuf, hl) != 0) {
		pl_debug("%s \"%s %s\" (h2): body over %u bytes: mirror skipped", c->peer, st->mname, st->target,
			 (unsigned)PL_MIRROR_MAX_BODY);
		return;
	}
	pl_buf_put(&st->mbuf, pl_buf_rptr(&st->up_out), hl);
	st->mhead_len = (uint32_t)hl;
	st->mchunked = st->chunked;   /* the head says Transfer-Encoding: chunked */
	st->n_mirrors = (uint8_t)f->n_mirrors;
	memcpy(st->mirrors, f->mirrors, f->n_mirrors * sizeof(f->mirrors[0]));
}

static void mirror_drop(struct h2s *st, const char *why)
{
	if (!st->n_mirrors)
		return;
	pl_debug("%s \"%s %s\" (h2): %s: mirror skipped", st->c->peer, st->mname, st->target, why);
	st->n_mirrors = 0;
	pl_buf_free(&st->mbuf);
}

/* Request DATA for the mirrors. */
static void mirror_body(struct h2s *st, const uint8_t *p, size_t n)
{
	if (!st->n_mirrors || !n)
		return;
	if (pl_buf_size(&st->mbuf) - st->mhead_len + n > PL_MIRROR_MAX_BODY) {
		mirror_drop(st, "body over the mirror bound");
		return;
	}
	if (pl_buf_reserve(&st->mbuf, n) != 0) {
		mirror_drop(st, "no memory for the body");
		return;
	}
	pl_buf_put(&st->mbuf, p, n);
}

/* END_STREAM: the body is whole; the mirrors start (trailers are not mirrored). */
static void mirror_end(struct h2s *st)
{
	if (!st->n_mirrors)
		return;
	const char *head = pl_buf_rptr(&st->mbuf);
	const char *body = head + st->mhead_len;
	size_t blen = pl_buf_size(&st->mbuf) - st->mhead_len;
	char *framed = NULL;
	if (st->mchunked) {
		/* the head promised chunked framing: one chunk and the last-chunk */
		framed = malloc(blen + 32);
		if (!framed) {
			mirror_drop(st, "no memory for the body");
			return;
		}
		int k = blen ? snprintf(framed, 32, "%zx\r\n", blen) : 0;
		memcpy(framed + k, body, blen);
		memcpy(framed + k + blen, blen ? "\r\n0\r\n\r\n" : "0\r\n\r\n", blen ? 7 : 5);
		body = framed;
		blen += (size_t)k + (blen ? 7 : 5);
	}
	for (unsigned i = 0; i < st->n_mirrors; i++)
		pl_mirror_start(st->c->w, st->mirrors[i], head, st->mhead_len, body, blen);
	free(framed);
	st->n_mirrors = 0;
	pl_buf_free(&st->mbuf);
}

/*
 * The request header block is complete (END_HEADERS): validate, route,
 * filter, and answer locally or start the backend exchange.
 */
static void head_done(struct h2s *st)
{
	struct pl_h2conn *c = st->c;
	struct pl_worker *w = c->w;
	ev_tstamp now = ev_now(w->loop);
	if (st->has_method) {
		size_t ml = PL_MIN((size_t)st->method.vl, sizeof(st->mname) - 1);
		memcpy(st->mname, hs(st, st->method.vo), ml);
		st->mname[ml] = '\0';
	}
	if (st->has_path) {
		size_t tl = PL_MIN((size_t)st->path.vl, sizeof(st->target) - 1);
		memcpy(st->target, hs(st, st->path.vo), tl);
		st->target[tl] = '\0';
	}
	st->st = S_LOCAL;   /* until routed */
	if (st->too_big) {
		respond_local(st, 431, "request header block too large");
		return;
	}
	/* methods are case-sensitive (RFC 9110 9.1), as nghttp2 and llhttp compare them */
	int is_connect = st->has_method && strcmp(st->mname, "CONNECT") == 0;
	if (is_connect && !st->has_protocol) {
		/* a plain CONNECT (no :path, no :scheme) asks for a TCP tunnel: not offered */
		respond_local(st, 405, "CONNECT is not supported");
		return;
	}
	if (!st->has_method || !st->has_path || !st->has_scheme) {
		respond_local(st, 400, "missing pseudo-header");   /* nghttp2 normally resets these first */
		return;
	}
	if (st->has_protocol) {
		/* RFC 8441 extended CONNECT: nghttp2 let :protocol through only with CONNECT and :authority */
		if (!is_connect) {
			respond_local(st, 400, ":protocol without CONNECT");
			return;
		}
		if (!name_is(hs(st, st->protocol.vo), st->protocol.vl, "websocket")) {
			respond_local(st, 501, "extended CONNECT: unsupported :protocol");
			return;
		}
		st->ws = 1;
	}
	struct reqinfo ri;
	memset(&ri, 0, sizeof(ri));
	const char *p = hs(st, st->path.vo);
	size_t pl = st->path.vl;
	if (pl == 0 || p[0] != '/' || memchr(p, '#', pl)) {
		respond_local(st, 400, "unsupported :path");
		return;
	}
	const char *qm = memchr(p, '?', pl);
	ri.path = p;
	ri.path_len = qm ? (size_t)(qm - p) : pl;
	if (qm) {
		ri.query = qm + 1;
		ri.query_len = pl - ri.path_len - 1;
	}
	if (pl_rh_has_dot_segment(ri.path, ri.path_len)) {
		respond_local(st, 400, "dot-segment in path");
		return;
	}
	const struct span *hosth = NULL;
	for (uint32_t i = 0; i < st->nh; i++)
		if (name_is(hs(st, st->h[i].no), st->h[i].nl, "host")) {
			if (hosth) {
				respond_local(st, 400, "multiple Host headers");
				return;
			}
			hosth = &st->h[i];
		}
	if (st->has_authority) {
		ri.authority = hs(st, st->authority.vo);
		ri.authority_len = st->authority.vl;
	} else if (hosth) {
		ri.authority = hs(st, hosth->vo);
		ri.authority_len = hosth->vl;
	} else {
		respond_local(st, 400, "missing :authority");
		return;
	}
	ri.host_len = ri.authority_len ? pl_rh_parse_host(ri.authority, ri.authority_len, ri.host, sizeof(ri.host)) : -1;
	if (ri.host_len < 0) {
		respond_local(st, 400, "invalid :authority");
		return;
	}
	for (uint32_t i = 0; i < st->nh; i++)
		if (name_is(hs(st, st->h[i].no), st->h[i].nl, "content-length")) {
			uint64_t v;
			if (pl_parse_u64(hs(st, st->h[i].vo), st->h[i].vl, &v) != 0 || (st->has_cl && v != st->cl)) {
				respond_local(st, 400, "invalid content-length");
				return;
			}
			st->has_cl = 1;
			st->cl = v;
		}
	if (st->ws && st->has_cl) {
		respond_local(st, 400, "content-length on a WebSocket extended CONNECT");
		return;
	}
	st->is_head = strcmp(st->mname, "HEAD") == 0;   /* "head" is another method: its response has a body */
	st->chunked = !st->req_done && !st->has_cl && !st->ws;

	static __thread struct pl_hdr rh[MAX_HDRS];
	for (uint32_t i = 0; i < st->nh; i++) {
		rh[i].name = hs(st, st->h[i].no);
		rh[i].name_len = st->h[i].nl;
		rh[i].value = hs(st, st->h[i].vo);
		rh[i].value_len = st->h[i].vl;
	}
	/* a WebSocket is routed as the GET its HTTP/1.1 form is (RFC 8441 5) */
	const char *rmethod = st->ws ? "GET" : st->mname;
	struct pl_req_view view = {
		.method = rmethod, .method_len = (uint32_t)strlen(rmethod),
		.path = ri.path, .path_len = (uint32_t)ri.path_len,
		.query = ri.query, .query_len = (uint32_t)ri.query_len,
		.host = ri.host, .host_len = (uint32_t)ri.host_len,
		.hdrs = rh, .n_hdrs = st->nh,
	};
	struct pl_rh_route rt;
	int how = pl_rh_route(w, c->ls->bind, c->tls ? pl_tls_sni(c->tls) : NULL, &view, now, &rt);
	st->wt = rt.wt;
	st->listener = rt.listener;
	st->entry = rt.entry;
	st->rule = rt.rule;
	if (st->rule)
		st->stats = st->rule->stats;
	st->cors_local = pl_rh_cors_actual(&rt.f, &view, &st->cors);
	memcpy(st->resp_mods, rt.f.resp_mods, sizeof(st->resp_mods));
	st->n_resp_mods = rt.f.n_resp_mods;
	if (how == PL_RH_LOCAL) {
		respond_local(st, rt.status, rt.why);
		return;
	}
	if (how == PL_RH_CORS) {
		send_preflight(st, rt.f.cors, &view);
		return;
	}
	const struct pl_rh_filters *f = &rt.f;
	if (how == PL_RH_REDIRECT) {
		send_redirect(st, f->redirect, &ri);
		return;
	}
	st->cluster = rt.cluster;
	st->ep = rt.ep;
	st->rule_deadline = rt.rule_deadline;
	if (st->ws && st->cluster->app_proto == PL_APP_H2C) {
		char why[200];
		snprintf(why, sizeof(why), "WebSocket over HTTP/2 to h2c cluster %s: extended CONNECT to backends "
			 "is not supported", st->cluster->name);
		respond_local(st, 501, why);
		return;
	}
	if (st->rule->timeout_request_ms)
		st->rule_deadline = now + (double)st->rule->timeout_request_ms / 1000.0;
	if (st->rule->timeout_backend_ms) {
		ev_tstamp d = now + (double)st->rule->timeout_backend_ms / 1000.0;
		if (!st->rule_deadline || d < st->rule_deadline)
			st->rule_deadline = d;
	}
	const char *err = NULL;
	if (st->cluster->app_proto == PL_APP_H2C) {
		if (build_h2_head(st, &ri, f, &err) != 0) {
			respond_local(st, 500, err);
			return;
		}
		if (f->n_mirrors) {
			/* mirrors get the HTTP/1.1 head the other path would send, as from the h1 bridge */
			ssize_t hl = emit_req_head(st, &ri, f, &err);
			if (hl >= 0)
				mirror_begin(st, f, (size_t)hl);
			pl_buf_consume(&st->up_out, pl_buf_size(&st->up_out));
		}
		st->h2c_up = 1;
		st->chunked = 0;   /* HTTP/2 frames the body itself */
		pl_retry_start(&st->rt, st->rule, now, 0, st->req_done || st->has_cl, st->req_done ? 0 : st->cl, 0);
		if (st->req_done)
			st->req_done_at = now;
		st->st = S_PROXY;
		st->discard = 0;
		st->want_dispatch = 1;
		return;
	}
	ssize_t hl = emit_req_head(st, &ri, f, &err);
	if (hl < 0) {
		respond_local(st, 500, err);
		return;
	}
	if (f->n_mirrors && !st->ws)
		mirror_begin(st, f, (size_t)hl);
	/* the header block is forwarded: its copy is no longer needed */
	st->retry_ok = st->req_done && !st->ws && !name_is(st->mname, strlen(st->mname), "POST") &&
		       !name_is(st->mname, strlen(st->mname), "PATCH");
	pl_retry_start(&st->rt, st->rule, now, st->ws, st->req_done || st->has_cl, st->req_done ? 0 : st->cl,
		       (size_t)hl);
	if (st->ws)
		st->ws_head = (uint32_t)hl;
	if (st->req_done || st->ws)
		st->req_done_at = now;   /* a WebSocket's request is its head: the backend timeout runs from here */
	st->st = S_PROXY;
	st->discard = 0;
	st->want_dispatch = 1;
}

/* END_STREAM from the client. */
static void req_end(struct h2s *st)
{
	if (st->req_done)
		return;
	st->req_done = 1;
	st->req_done_at = ev_now(st->c->w->loop);
	if (st->h2u)
		pl_h2up_resume(st->h2u);
	if (st->st == S_PROXY && st->chunked && !st->discard) {
		if (pl_buf_reserve(&st->up_out, 5) != 0) {
			upstream_fail(st, 502, "request body buffer exhausted");
			return;
		}
		/* trailer fields, if any, followed the last chunk already (req_trailer) */
		if (st->n_req_trailers)
			pl_buf_put(&st->up_out, "\r\n", 2);
		else
			pl_buf_put(&st->up_out, "0\r\n\r\n", 5);
	}
}

/*
 * A request trailer field (a HEADERS block after DATA, which nghttp2 made
 * sure ends the stream). An HTTP/1.1 backend gets it in the trailer section
 * of the chunked body, after the last chunk; an h2c backend in a trailing
 * HEADERS frame (h2u_read_trailers). Dropped: toward an HTTP/1.1 backend when
 * the body has a Content-Length (HTTP/1.1 has no place for them then), for
 * fields a trailer must not carry, and past MAX_TRAILERS / MAX_TRAILER_BYTES.
 */
static void req_trailer(struct h2s *st, const uint8_t *name, size_t nl, const uint8_t *value, size_t vl)
{
	if (st->st != S_PROXY || st->discard || st->req_done || !trailer_ok((const char *)name, nl))
		return;
	if (!st->chunked && !st->h2c_up) {
		pl_debug("%s \"%s %s\" (h2): request trailer %.*s dropped (body with a content-length)", st->c->peer,
			 st->mname, st->target, (int)nl, name);
		return;
	}
	if (st->n_req_trailers == MAX_TRAILERS || st->req_trailer_bytes + nl + vl > MAX_TRAILER_BYTES) {
		pl_info("%s \"%s %s\" (h2): request trailers beyond %u fields / %u bytes dropped", st->c->peer,
			st->mname, st->target, MAX_TRAILERS, MAX_TRAILER_BYTES);
		return;
	}
	if (st->h2c_up) {
		/* hb holds them after the head (spans are offsets: hb may move) */
		struct span *sp;
		if ((!st->rts && !(st->rts = malloc(MAX_TRAILERS * sizeof(*st->rts)))) ||
		    hb_add(st, name, nl, &st->rts[st->n_req_trailers].no, SIZE_MAX) != 0 ||
		    hb_add(st, value, vl, &st->rts[st->n_req_trailers].vo, SIZE_MAX) != 0) {
			stream_reset(st, NGHTTP2_INTERNAL_ERROR);
			return;
		}
		sp = &st->rts[st->n_req_trailers++];
		sp->nl = (uint32_t)nl;
		sp->vl = (uint32_t)vl;
		st->req_trailer_bytes += (uint32_t)(nl + vl);
		return;
	}
	if (pl_buf_reserve(&st->up_out, nl + vl + 7) != 0) {
		stream_reset(st, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	if (!st->n_req_trailers)
		pl_buf_put(&st->up_out, "0\r\n", 3);
	pl_buf_put(&st->up_out, name, nl);
	pl_buf_put(&st->up_out, ": ", 2);
	pl_buf_put(&st->up_out, value, vl);
	pl_buf_put(&st->up_out, "\r\n", 2);
	st->n_req_trailers++;
	st->req_trailer_bytes += (uint32_t)(nl + vl);
}

/* ------------------------------------------------------ nghttp2 callbacks */

/*
 * nghttp2 ignores a HEADERS frame opening a stream numerically below one the
 * client already opened (it cannot tell it from a late frame on a closed
 * stream); RFC 9113 5.1.1 makes it a connection error. Streams we reset
 * ourselves are exempt: the client may still send their trailers.
 */
static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *ud)
{
	struct pl_h2conn *c = ud;
	if (hd->type != NGHTTP2_HEADERS || !(hd->stream_id & 1))
		return 0;
	if (hd->stream_id > c->max_sid) {
		c->max_sid = hd->stream_id;
		return 0;
	}
	if (hd->stream_id == c->max_sid || nghttp2_session_find_stream(s, hd->stream_id))
		return 0;
	for (unsigned i = 0; i < PL_MIN(c->n_resets, (unsigned)PL_ARRAY_LEN(c->resets)); i++)
		if (c->resets[i] == hd->stream_id)
			return 0;
	pl_debug("%s: h2 HEADERS on stream %d below %d: protocol error", c->peer, hd->stream_id, c->max_sid);
	nghttp2_session_terminate_session(s, NGHTTP2_PROTOCOL_ERROR);
	return 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
	struct pl_h2conn *c = ud;
	if (fr->hd.type != NGHTTP2_HEADERS || fr->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct h2s *st = stream_new(c, fr->hd.stream_id);
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	nghttp2_session_set_stream_user_data(s, fr->hd.stream_id, st);
	return 0;
}

static int hb_add(struct h2s *st, const uint8_t *p, size_t n, uint32_t *off, size_t limit)
{
	if (st->hb_len + n > limit)
		return -1;
	if (st->hb_len + n > st->hb_cap) {
		uint32_t cap = st->hb_cap ? st->hb_cap : 512;
		while (cap < st->hb_len + n)
			cap *= 2;
		char *nb = realloc(st->hb, cap);
		if (!nb)
			return -1;
		st->hb = nb;
		st->hb_cap = cap;
	}
	*off = st->hb_len;
	memcpy(st->hb + st->hb_len, p, n);
	st->hb_len += (uint32_t)n;
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct pl_h2conn *c = ud;
	struct h2s *st = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
	if (!st || fr->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (fr->headers.cat != NGHTTP2_HCAT_REQUEST) {
		req_trailer(st, name, nl, value, vl);
		return 0;
	}
	if (st->too_big)
		return 0;
	size_t limit = c->w->cfg->max_header_bytes;
	struct span sp;
	if (hb_add(st, name, nl, &sp.no, limit) != 0 || hb_add(st, value, vl, &sp.vo, limit) != 0) {
		st->too_big = 1;
		return 0;
	}
	sp.nl = (uint32_t)nl;
	sp.vl = (uint32_t)vl;
	if (nl && name[0] == ':') {
		if (name_is((const char *)name, nl, ":method"))
			st->method = sp, st->has_method = 1;
		else if (name_is((const char *)name, nl, ":path"))
			st->path = sp, st->has_path = 1;
		else if (name_is((const char *)name, nl, ":authority"))
			st->authority = sp, st->has_authority = 1;
		else if (name_is((const char *)name, nl, ":scheme"))
			st->scheme = sp, st->has_scheme = 1;
		else if (name_is((const char *)name, nl, ":protocol"))
			st->protocol = sp, st->has_protocol = 1;
		return 0;
	}
	if (st->nh == MAX_HDRS) {
		st->too_big = 1;
		return 0;
	}
	st->h[st->nh++] = sp;
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
	struct pl_h2conn *c = ud;
	c->last_io = ev_now(c->w->loop);
	if (fr->hd.type != NGHTTP2_HEADERS && fr->hd.type != NGHTTP2_DATA)
		return 0;
	struct h2s *st = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
	if (!st)
		return 0;
	st->last_io = c->last_io;
	int end = (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
	if (fr->hd.type == NGHTTP2_HEADERS && fr->headers.cat == NGHTTP2_HCAT_REQUEST) {
		if (end)
			st->req_done = 1;
		if (c->goaway && fr->hd.stream_id > nghttp2_session_get_last_proc_stream_id(s)) {
			stream_reset(st, NGHTTP2_REFUSED_STREAM);
			return 0;
		}
		head_done(st);
		return 0;
	}
	if (end) {
		req_end(st);
		mirror_end(st);
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
	struct pl_h2conn *c = ud;
	struct h2s *st = nghttp2_session_get_stream_user_data(s, id);
	if (st && !st->req_done)
		mirror_body(st, data, len);   /* whatever becomes of the request: mirrors are independent */
	if (!st || (st->st != S_PROXY && st->st != S_TUNNEL) || st->discard || st->req_done) {
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	c->last_io = st->last_io = ev_now(c->w->loop);
	struct pl_buf *b = &st->up_out;
	if (pl_buf_reserve(b, len + 24) != 0) {
		nghttp2_session_consume(s, id, len);
		stream_reset(st, NGHTTP2_INTERNAL_ERROR);
		return 0;
	}
	if (st->chunked) {
		pl_buf_put_chunk_head(b, len);
		pl_buf_put(b, data, len);
		pl_buf_put(b, "\r\n", 2);
	} else {
		pl_buf_put(b, data, len);
	}
	st->unacked += len;
	if (st->rt.replay && !pl_retry_fits(&st->rt, pl_buf_size(b))) {
		pl_debug("%s \"%s %s\" (h2): request body over %u bytes: not kept for retries", c->peer, st->mname,
			 st->target, (unsigned)PL_RETRY_MAX_BODY);
		replay_release(st);
	}
	if (st->h2u)
		pl_h2up_resume(st->h2u);
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct h2s *st = nghttp2_session_get_stream_user_data(s, id);
	if (st)
		stream_finish(st);
	return 0;
}

static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *fr, int err, void *ud)
{
	struct pl_h2conn *c = ud;
	pl_debug("%s: h2 invalid frame type %u on stream %d: %s", c->peer, fr->hd.type, fr->hd.stream_id,
		 nghttp2_strerror(err));
	if (fr->hd.type == NGHTTP2_SETTINGS)
		c->bad_settings = 1;
	return 0;
}

static nghttp2_session_callbacks *cbs;
static nghttp2_option *opts;
static pthread_once_t cbs_once = PTHREAD_ONCE_INIT;
static llhttp_settings_t resp_settings;

static void resp_settings_init(void);

static void cbs_init(void)
{
	if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opts) != 0)
		PL_PANIC("nghttp2: out of memory");
	nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
	nghttp2_option_set_no_auto_window_update(opts, 1);
	nghttp2_option_set_max_outbound_ack(opts, 1000);
	nghttp2_option_set_max_settings(opts, 32);
	/* CVE-2023-44487 (rapid reset) and CVE-2024-28182 (CONTINUATION flood) */
	nghttp2_option_set_stream_reset_rate_limit(opts, 1000, 33);
	nghttp2_option_set_max_continuations(opts, 8);
	nghttp2_option_set_max_deflate_dynamic_table_size(opts, 4096);
	nghttp2_option_set_max_send_header_block_length(opts, MAX_RESP_HEAD * 2);
	resp_settings_init();
}

/* ------------------------------------------------- backend response (h1) */

/* Response head spans while a head is parsed (synchronously, one per thread). */
static __thread struct {
	struct pl_hdr h[MAX_HDRS];
	uint32_t n;
	int last_value;
} RS;

static int rcb_begin(llhttp_t *p)
{
	RS.n = 0;
	RS.last_value = 0;
	return 0;
}

static int trailer_field(struct h2s *st, const char *at, size_t n, int value)
{
	if (st->t_over)
		return 0;
	if (!st->tb) {
		st->tb = malloc(MAX_TRAILER_BYTES);
		if (!st->tb) {
			st->t_over = 1;
			return 0;
		}
	}
	if (st->tb_len + n > MAX_TRAILER_BYTES) {
		st->t_over = 1;
		return 0;
	}
	if (!value && (st->nt == 0 || st->t_value)) {
		if (st->nt == MAX_TRAILERS) {
			st->t_over = 1;
			return 0;
		}
		struct span *t = &st->t[st->nt++];
		t->no = st->tb_len;
		t->nl = 0;
		t->vo = st->tb_len;
		t->vl = 0;
		st->t_value = 0;
	} else if (value && !st->t_value) {
		st->t[st->nt - 1].vo = st->tb_len;
		st->t[st->nt - 1].vl = 0;
		st->t_value = 1;
	}
	struct span *t = &st->t[st->nt - 1];
	for (size_t i = 0; i < n; i++)
		st->tb[st->tb_len + i] = value ? at[i] : pl_lower(at[i]);
	st->tb_len += (uint32_t)n;
	if (value)
		t->vl += (uint32_t)n;
	else
		t->nl += (uint32_t)n;
	return 0;
}

static int rcb_hfield(llhttp_t *p, const char *at, size_t n)
{
	struct h2s *st = p->data;
	if (st->sp_hdone)
		return trailer_field(st, at, n, 0);
	if (RS.n == 0 || RS.last_value) {
		if (RS.n == MAX_HDRS) {
			llhttp_set_error_reason(p, "too many header fields");
			return HPE_USER;
		}
		struct pl_hdr *h = &RS.h[RS.n++];
		h->name = at;
		h->name_len = (uint32_t)n;
		h->value = at + n;
		h->value_len = 0;
		RS.last_value = 0;
	} else {
		struct pl_hdr *h = &RS.h[RS.n - 1];
		h->name_len = (uint32_t)(at + n - h->name);
	}
	return 0;
}

static int rcb_hvalue(llhttp_t *p, const char *at, size_t n)
{
	struct h2s *st = p->data;
	if (st->sp_hdone) {
		if (st->nt == 0 && !st->t_over)
			return 0;
		return trailer_field(st, at, n, 1);
	}
	if (RS.n == 0)
		return 0;
	struct pl_hdr *h = &RS.h[RS.n - 1];
	if (!RS.last_value) {
		h->value = at;
		h->value_len = (uint32_t)n;
		RS.last_value = 1;
	} else {
		h->value_len = (uint32_t)(at + n - h->value);
	}
	return 0;
}

static int rcb_headers_done(llhttp_t *p)
{
	struct h2s *st = p->data;
	st->sp_hdone = 1;
	for (uint32_t i = 0; i < RS.n; i++) {
		struct pl_hdr *h = &RS.h[i];
		while (h->value_len && (h->value[h->value_len - 1] == ' ' || h->value[h->value_len - 1] == '\t'))
			h->value_len--;
	}
	return st->is_head ? 1 : 0;
}

static int rcb_body(llhttp_t *p, const char *at, size_t n)
{
	struct h2s *st = p->data;
	if (!n)
		return 0;
	if (pl_buf_reserve(&st->rbody, n) != 0) {
		llhttp_set_error_reason(p, "response body buffer exhausted");
		return HPE_USER;
	}
	pl_buf_put(&st->rbody, at, n);
	return 0;
}

static int rcb_done(llhttp_t *p)
{
	struct h2s *st = p->data;
	st->sp_done = 1;
	return HPE_PAUSED;
}

static void resp_settings_init(void)
{
	llhttp_settings_init(&resp_settings);
	resp_settings.on_message_begin = rcb_begin;
	resp_settings.on_header_field = rcb_hfield;
	resp_settings.on_header_value = rcb_hvalue;
	resp_settings.on_headers_complete = rcb_headers_done;
	resp_settings.on_body = rcb_body;
	resp_settings.on_message_complete = rcb_done;
}

/* Trailer fields an HTTP/2 client may receive: no framing or connection fields. */
static void filter_trailers(struct h2s *st)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < st->nt; i++)
		if (trailer_ok(st->tb + st->t[i].no, st->t[i].nl))
			st->t[k++] = st->t[i];
	st->nt = k;
}

static void resp_complete(struct h2s *st)
{
	st->resp_done = 1;
	if (st->t_over) {
		pl_warn("%s \"%s %s\" (h2): backend trailers too large; dropped", st->c->peer, st->mname, st->target);
		st->nt = 0;
	}
	filter_trailers(st);
	if (st->up) {
		int reusable = llhttp_should_keep_alive(&st->sp) && st->req_done && pl_buf_empty(&st->up_out) &&
			       !st->up_eof;
		pl_up_release(st->up, reusable);
		st->up = NULL;
	}
	if (!st->req_done) {
		/* answered before the request body ended: the rest is read and dropped */
		st->discard = 1;
		pl_buf_consume(&st->up_out, pl_buf_size(&st->up_out));
		st->up_sent = 0;
		if (st->unacked) {
			ack_body(st, st->unacked);
			st->unacked = 0;
		}
	}
	if (!st->has_provider && st->nt) {
		/* bodyless response with trailers cannot happen: no provider means END_STREAM was sent */
		st->nt = 0;
	}
	resume(st);
}

struct ctok {
	const char *p;
	size_t n;
};

/* The next token of a comma-separated field value at *q (before end): 1 with *t, *tn set; 0 at the end. */
static int next_token(const char **q, const char *end, const char **t, size_t *tn)
{
	const char *p = *q;
	while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
		p++;
	*t = p;
	while (p < end && *p != ',' && *p != ' ' && *p != '\t')
		p++;
	*tn = (size_t)(p - *t);
	*q = p;
	return *tn > 0;
}

/* 1 if the comma-separated list v[0, vl) has token tok[0, tl) (case-insensitive). */
static int has_token_n(const char *v, size_t vl, const char *tok, size_t tl)
{
	const char *q = v, *t;
	size_t tn;
	while (next_token(&q, v + vl, &t, &tn))
		if (tn == tl && pl_strncaseeq(t, tok, tl))
			return 1;
	return 0;
}

static int has_token(const char *v, size_t vl, const char *tok)
{
	return has_token_n(v, vl, tok, strlen(tok));
}

/*
 * RFC 6455 4.1 (the client's checks of a 101, which we make for the HTTP/2
 * client that cannot see them): Upgrade: websocket, Connection: upgrade, and
 * the Sec-WebSocket-Accept of the key we sent. NULL when it holds, else why.
 */
static const char *ws_check_101(const struct h2s *st, const struct ctok *ctok, unsigned n_ctok)
{
	int up = 0, conn = 0, acc = 0;
	for (unsigned k = 0; k < n_ctok; k++)
		if (name_is(ctok[k].p, ctok[k].n, "upgrade"))
			conn = 1;
	for (uint32_t i = 0; i < RS.n; i++) {
		const struct pl_hdr *h = &RS.h[i];
		if (name_is(h->name, h->name_len, "upgrade") && has_token(h->value, h->value_len, "websocket"))
			up = 1;
		if (name_is(h->name, h->name_len, "sec-websocket-accept")) {
			if (acc)
				return "backend 101 with more than one Sec-WebSocket-Accept";
			size_t al = strlen(st->ws_accept);
			if (h->value_len != al || memcmp(h->value, st->ws_accept, al) != 0)
				return "backend 101 with a wrong Sec-WebSocket-Accept";
			acc = 1;
		}
	}
	if (!up || !conn)
		return "backend 101 without Upgrade: websocket and Connection: upgrade";
	if (!acc)
		return "backend 101 without Sec-WebSocket-Accept";
	return NULL;
}

/* A complete response head of head_len bytes at the front of u->in. */
static void resp_head(struct h2s *st, size_t head_len)
{
	struct pl_h2conn *c = st->c;
	struct pl_upconn *u = st->up;
	char *p = pl_buf_rptr(&u->in);
	llhttp_init(&st->sp, HTTP_RESPONSE, &resp_settings);
	st->sp.data = st;
	st->sp_hdone = st->sp_done = 0;
	RS.n = 0;
	llhttp_errno_t e = llhttp_execute(&st->sp, p, head_len);
	size_t used = head_len;
	if (e == HPE_PAUSED) {
		used = (size_t)(llhttp_get_error_pos(&st->sp) - p);
		llhttp_resume(&st->sp);
	} else if (e == HPE_PAUSED_UPGRADE && st->ws) {
		/* a 101: what follows the head is the WebSocket, not HTTP */
		used = (size_t)(llhttp_get_error_pos(&st->sp) - p);
	} else if (e != HPE_OK) {
		char why[200];
		snprintf(why, sizeof(why), "invalid response from %s: %s", u->peer, llhttp_get_error_reason(&st->sp));
		upstream_fail(st, 502, why);
		return;
	}
	if (!st->sp_hdone || used != head_len || st->sp.http_major != 1) {
		upstream_fail(st, 502, "malformed response head from backend");
		return;
	}
	int status = st->sp.status_code;
	if ((status == 101 && !st->ws) || status < 100 || status > 999) {
		upstream_fail(st, 502, "unexpected status from backend");
		return;
	}
	if (st->ws && status >= 200 && status < 300) {
		/* a 2xx to the client would say the WebSocket is open */
		char why[120];
		snprintf(why, sizeof(why), "backend answered the WebSocket upgrade with %d", status);
		upstream_fail(st, 502, why);
		return;
	}
	if (retry_status(st, status, "backend"))
		return;
	int tunnel = status == 101;
	/* connection tokens name more hop-by-hop fields */
	struct ctok ctok[16];
	unsigned n_ctok = 0;
	for (uint32_t i = 0; i < RS.n; i++) {
		struct pl_hdr *h = &RS.h[i];
		if (name_is(h->name, h->name_len, "transfer-encoding") &&
		    !(h->value_len == 7 && pl_strncaseeq(h->value, "chunked", 7))) {
			upstream_fail(st, 502, "unsupported transfer-coding from backend");
			return;
		}
		if (!name_is(h->name, h->name_len, "connection"))
			continue;
		const char *q = h->value, *t;
		size_t tn;
		while (next_token(&q, h->value + h->value_len, &t, &tn))
			if (n_ctok < PL_ARRAY_LEN(ctok))
				ctok[n_ctok++] = (struct ctok){ t, tn };
	}
	if (tunnel) {
		const char *bad = ws_check_101(st, ctok, n_ctok);
		if (bad) {
			upstream_fail(st, 502, bad);
			return;
		}
	}
	int interim = status < 200 && !tunnel;
	static __thread nghttp2_nv nv[MAX_HDRS + 2 * PL_RH_MAX_MODS * 8 + PL_CORS_MAX_FIELDS + 1];
	size_t nn = 0;
	char sbuf[4];
	snprintf(sbuf, sizeof(sbuf), "%03u", (unsigned)status % 1000u);   /* 100..999 here */
	if (tunnel)
		memcpy(sbuf, "200", 4);   /* RFC 8441 5: the HTTP/2 form of a 101 */
	nv[nn++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)sbuf, 7, 3, NGHTTP2_NV_FLAG_NONE };
	int no_body = interim || status == 204 || status == 304 || st->is_head;
	for (uint32_t i = 0; i < RS.n; i++) {
		struct pl_hdr *h = &RS.h[i];
		char *n = (char *)h->name;
		if (conn_specific(n, h->name_len) || name_is(n, h->name_len, "host"))
			continue;
		int tok = 0;
		for (unsigned k = 0; k < n_ctok; k++)
			if (ctok[k].n == h->name_len && pl_strncaseeq(ctok[k].p, n, h->name_len))
				tok = 1;
		if (tok)
			continue;
		if (name_is(n, h->name_len, "content-length") && (interim || status == 204 || tunnel))
			continue;
		if (tunnel && name_is(n, h->name_len, "sec-websocket-accept"))
			continue;
		if (!interim && st->n_resp_mods && pl_rh_mods_hit(st->resp_mods, st->n_resp_mods, n, h->name_len))
			continue;
		for (uint32_t k = 0; k < h->name_len; k++)   /* HTTP/2 field names are lower-case */
			n[k] = pl_lower(n[k]);
		nv[nn++] = (nghttp2_nv){ (uint8_t *)n, (uint8_t *)h->value, h->name_len, h->value_len,
					 NGHTTP2_NV_FLAG_NONE };
	}
	if (!interim)
		nn = resp_mods_nv(st, nv, nn, PL_ARRAY_LEN(nv));
	int rv;
	if (interim) {
		rv = nghttp2_submit_headers(c->s, NGHTTP2_FLAG_NONE, st->id, NULL, nv, nn, NULL);
		pl_buf_consume(&u->in, head_len);
		st->rscanned = 0;
		pl_h1scan_init(&st->rscan, (uint32_t)c->w->cfg->max_request_line, MAX_RESP_HEAD);
		if (rv != 0)
			stream_reset(st, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	int bodyless = !tunnel && (no_body || st->sp_done);
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = read_body };
	st->has_provider = !bodyless;
	rv = nghttp2_submit_response(c->s, st->id, nv, nn, bodyless ? NULL : &prd);
	pl_buf_consume(&u->in, head_len);
	if (rv != 0) {
		stream_reset(st, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	st->resp_head_sent = 1;
	if (tunnel) {
		/* the rest of u->in and everything after is WebSocket traffic */
		count_status(st, 200);
		pl_debug("%s \"%s %s\" (h2 stream %d): WebSocket to %s open", c->peer, st->mname, st->target, st->id,
			 u->peer);
		st->st = S_TUNNEL;
		return;
	}
	count_status(st, status);
	if (st->sp_done || no_body) {
		st->sp_done = 1;
		resp_complete(st);
	}
}

/* Moves backend bytes into the stream; 1 if anything changed. */
static int step_resp(struct h2s *st)
{
	int progress = 0;
	while (st->st == S_PROXY && st->up && !st->resp_done) {
		struct pl_upconn *u = st->up;
		if (!st->resp_head_sent) {
			size_t avail = pl_buf_size(&u->in);
			if (avail > st->rscanned) {
				size_t used = 0;
				int rc = pl_h1scan_feed(&st->rscan, pl_buf_rptr(&u->in) + st->rscanned, avail - st->rscanned,
							&used);
				if (rc == PL_H1SCAN_MORE) {
					st->rscanned = avail;
				} else if (rc < 0) {
					char why[200];
					snprintf(why, sizeof(why), "invalid response head from %s: %s", u->peer,
						 pl_h1scan_reason(&st->rscan));
					upstream_fail(st, 502, why);
					return 1;
				} else {
					resp_head(st, st->rscanned + used);
					progress = 1;
					continue;
				}
			}
			if (st->up_eof) {
				conn_error(st, 502, "backend closed the connection in the response head");
				return 1;
			}
			return progress;
		}
		if (!pl_buf_empty(&u->in)) {
			if (!st->rbody.data && pl_buf_reserve(&st->rbody, RBODY_CAP) != 0) {
				stream_reset(st, NGHTTP2_INTERNAL_ERROR);
				return 1;
			}
			if (pl_buf_space(&st->rbody) < BODY_MARGIN)
				pl_buf_compact(&st->rbody);
			size_t space = pl_buf_space(&st->rbody);
			if (space < BODY_MARGIN)
				return progress;   /* client is slow: backpressure */
			const char *p = pl_buf_rptr(&u->in);
			size_t n = PL_MIN(pl_buf_size(&u->in), space);
			llhttp_errno_t e = llhttp_execute(&st->sp, p, n);
			size_t used = n;
			if (e == HPE_PAUSED) {
				used = (size_t)(llhttp_get_error_pos(&st->sp) - p);
				llhttp_resume(&st->sp);
			} else if (e != HPE_OK) {
				pl_warn("%s \"%s %s\" (h2): invalid response body from %s: %s; resetting", st->c->peer,
					st->mname, st->target, u->peer, llhttp_get_error_reason(&st->sp));
				count_upstream_error(st);
				stream_reset(st, NGHTTP2_INTERNAL_ERROR);
				return 1;
			}
			pl_buf_consume(&u->in, used);
			progress = 1;
			resume(st);
			if (st->sp_done) {
				if (!pl_buf_empty(&u->in))
					st->up_eof = 1;
				resp_complete(st);
				return 1;
			}
			continue;
		}
		if (st->up_eof) {
			if (llhttp_message_needs_eof(&st->sp)) {
				llhttp_finish(&st->sp);
				if (st->sp_done) {
					resp_complete(st);
					return 1;
				}
			}
			pl_warn("%s \"%s %s\" (h2): backend %s closed the connection mid-response; resetting", st->c->peer,
				st->mname, st->target, u->peer);
			count_upstream_error(st);
			stream_reset(st, NGHTTP2_INTERNAL_ERROR);
			return 1;
		}
		return progress;
	}
	return progress;
}

/* ------------------------------------------------------- route retries */

/*
 * Route retries (retry.h): while st->rt.replay holds, up_out keeps every
 * byte of the backend request (st->up_sent of them sent or read by h2up)
 * until the final response head says whether the request goes out again.
 */

/* The request will not be sent again: the bytes kept of it (those already sent) are let go. */
static void replay_release(struct h2s *st)
{
	st->rt.replay = 0;
	if (!st->retry_ok && st->up_sent) {
		pl_buf_consume(&st->up_out, st->up_sent);
		st->up_sent = 0;
	}
}

/*
 * The attempt failed (status: the backend's, or 0 for a connection error)
 * before the response head went to the client: when the route's retry
 * policy allows another, the backend is let go and the stream waits out
 * the backoff (T_RETRY). 1 if so.
 */
static int retry_later(struct h2s *st, int status, const char *why)
{
	struct pl_h2conn *c = st->c;
	if (st->st != S_PROXY || st->resp_head_sent || !st->rt.replay)
		return 0;
	double delay = pl_retry_next(&st->rt, st->rule, status, ev_now(c->w->loop), stream_stats(st), c->w->id);
	if (delay < 0)
		return 0;
	h2u_drop(st);
	if (st->up) {
		pl_up_close(st->up);
		st->up = NULL;
	}
	st->up_sent = 0;
	st->rule_deadline = st->rt.req_deadline;   /* no attempt runs: only the request timeout */
	pl_debug("%s \"%s %s\" (h2 stream %d): %s; retry %u/%u in %.0f ms", c->peer, st->mname, st->target, st->id,
		 why, st->rt.n, st->rule->retry->attempts, delay * 1000.0);
	return 1;
}

/*
 * A final response head with status from the backend (h1) or h2c backend:
 * 1 if the route retries it (the caller drops the response), else the kept
 * request is let go and the response goes on to the client.
 */
static int retry_status(struct h2s *st, int status, const char *backend)
{
	char why[64];
	if (status < 200 || !st->rt.replay)
		return 0;
	snprintf(why, sizeof(why), "%s answered %d", backend, status);
	if (retry_later(st, status, why))
		return 1;
	replay_release(st);
	return 0;
}

/* The backoff is over: the kept request goes out again (conn_run), to another endpoint where there is one. */
static void retry_fire(struct h2s *st)
{
	ev_tstamp now = ev_now(st->c->w->loop);
	st->rt.at = 0;
	st->ep = pl_retry_endpoint(st->cluster, st->ep);
	st->rule_deadline = pl_retry_attempt_deadline(&st->rt, st->rule, now);
	if (st->req_done)
		st->req_done_at = now;   /* the proxy's backend timeout counts per attempt too */
	st->resp_any = 0;
	st->up_sent = 0;
	st->want_dispatch = 1;
}

static int stale_replay_ok(const struct h2s *st)
{
	return st->up && st->up->reused && st->retry_ok && !st->retried && !st->resp_any;
}

/*
 * A connection error before a complete response head (connect failure or
 * timeout, reset, close, per-attempt timeout): the route's retry policy
 * first, unless the free replay of a stale pooled connection applies.
 */
static void conn_error(struct h2s *st, int status, const char *why)
{
	if (!stale_replay_ok(st) && retry_later(st, 0, why))
		return;
	upstream_fail(st, status, why);
}

static void upstream_fail(struct h2s *st, int status, const char *why)
{
	struct pl_upconn *u = st->up;
	if (stale_replay_ok(st)) {
		pl_debug("%s \"%s %s\" (h2): %s on a reused connection; retrying", st->c->peer, st->mname, st->target,
			 why);
		pl_up_close(u);
		st->up = NULL;
		st->retried = 1;
		st->up_sent = 0;
		dispatch(st, 1);
		return;
	}
	if (u) {
		pl_up_close(u);
		st->up = NULL;
	}
	h2u_drop(st);
	count_upstream_error(st);
	if (st->resp_head_sent) {
		pl_warn("%s \"%s %s\" (h2): %s after the response started; resetting", st->c->peer, st->mname,
			st->target, why);
		stream_reset(st, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	respond_local(st, status, why);
}

/* ------------------------------------------------------------ tunnel */

/*
 * The backend connection of an open WebSocket failed (error, reset): RFC
 * 8441 5 says RST_STREAM(CONNECT_ERROR). Once the backend had ended its
 * side, a failed send only means it stopped reading: the client's further
 * bytes are dropped and the stream ends normally.
 */
static void tunnel_reset(struct h2s *st, const char *op, ssize_t err)
{
	if (st->up_eof) {
		pl_buf_consume(&st->up_out, pl_buf_size(&st->up_out));
		ack_body(st, st->unacked);
		st->unacked = 0;
		st->discard = 1;
		return;
	}
	pl_info("%s \"%s %s\" (h2 stream %d): WebSocket: %s on backend %s failed: %s; resetting", st->c->peer,
		st->mname, st->target, st->id, op, st->up ? st->up->peer : "?", strerror((int)-err));
	count_upstream_error(st);
	stream_reset(st, NGHTTP2_CONNECT_ERROR);
}

/*
 * The client's END_STREAM, once its bytes are written: half-close toward the
 * backend (close_notify first over TLS), which still sends until it is done.
 */
static void tunnel_half_close(struct h2s *st)
{
	struct pl_upconn *u = st->up;
	st->up_shut = 1;
	if (u->ssl) {
		ERR_clear_error();
		if (SSL_shutdown(u->ssl) < 0) {
			ERR_clear_error();
			return;   /* the alert did not fit: the backend sees no half-close */
		}
	}
	shutdown(u->fd, SHUT_WR);
}

/* Backend bytes into the stream's DATA buffer, as far as it has room; 1 if anything moved. */
static int step_tunnel(struct h2s *st)
{
	struct pl_upconn *u = st->up;
	int progress = 0;
	if (!pl_buf_empty(&u->in)) {
		if (!st->rbody.data && pl_buf_reserve(&st->rbody, RBODY_CAP) != 0) {
			tunnel_reset(st, "buffering", -ENOBUFS);
			return 1;
		}
		if (pl_buf_space(&st->rbody) == 0)
			pl_buf_compact(&st->rbody);
		size_t n = PL_MIN(pl_buf_size(&u->in), pl_buf_space(&st->rbody));
		if (n) {
			pl_buf_put(&st->rbody, pl_buf_rptr(&u->in), n);
			pl_buf_consume(&u->in, n);
			resume(st);
			progress = 1;
		}
	}
	if (st->up_eof && pl_buf_empty(&u->in) && !st->resp_done) {
		st->resp_done = 1;   /* read_body ends the stream after the last byte */
		resume(st);
		progress = 1;
	}
	return progress;
}

static void up_read(struct h2s *st)
{
	struct pl_upconn *u = st->up;
	if (!st->resp_head_sent && u->in.cap && pl_buf_space(&u->in) == 0 && u->in.cap < MAX_RESP_HEAD + PL_BUF_STD) {
		pl_buf_compact(&u->in);
		if (pl_buf_space(&u->in) == 0 && pl_buf_reserve(&u->in, PL_BUF_STD) != 0) {
			upstream_fail(st, 502, "response head exceeds the connection budget");
			return;
		}
	}
	if (u->in.cap && pl_buf_space(&u->in) == 0)
		pl_buf_compact(&u->in);
	ssize_t n = pl_up_read(u);
	if (n > 0) {
		st->last_io = ev_now(st->c->w->loop);
		if (!st->resp_any) {
			st->resp_any = 1;
			st->retry_ok = 0;
			if (st->up_sent && !st->rt.replay) {
				pl_buf_consume(&st->up_out, st->up_sent);
				st->up_sent = 0;
			}
		}
		return;
	}
	if (n == -EAGAIN || n == -ENOBUFS)
		return;
	if (st->st == S_TUNNEL) {
		/*
		 * EOF: END_STREAM once its bytes are passed on. A TLS backend that
		 * closes TCP without close_notify (EPROTO: many do) ends it the same
		 * way; the WebSocket's own close frames tell the client whether
		 * that was clean. A TCP reset or error is RST_STREAM.
		 */
		if (n == 0 || (n == -EPROTO && u->ssl))
			st->up_eof = 1;
		else
			tunnel_reset(st, "read", n);
		return;
	}
	if (!st->resp_any) {
		char why[160];
		if (n == 0)
			snprintf(why, sizeof(why), "backend %s closed the connection without responding", u->peer);
		else
			snprintf(why, sizeof(why), "backend %s: read error: %s", u->peer, strerror((int)-n));
		conn_error(st, 502, why);
		return;
	}
	if (n < 0 && !st->resp_head_sent) {
		conn_error(st, 502, "read error from backend");
		return;
	}
	st->up_eof = 1;
}

/*
 * Writes up_out to the backend, acknowledging the body bytes written. A
 * WebSocket's DATA waits behind its upgrade request until the 101: the
 * backend may refuse, and must not take them for a second request.
 */
static int flush_up(struct h2s *st)
{
	struct pl_upconn *u = st->up;
	if (!u || u->st != PL_UP_READY || st->up_wblocked)
		return 0;
	size_t avail = pl_buf_size(&st->up_out) - st->up_sent;
	if (st->ws && st->st == S_PROXY)
		avail = PL_MIN(avail, (size_t)st->ws_head);
	if (avail == 0)
		return 0;
	ssize_t n = pl_up_send(u, pl_buf_rptr(&st->up_out) + st->up_sent, avail);
	if (n > 0) {
		st->last_io = ev_now(st->c->w->loop);
		if (st->retry_ok || st->rt.replay)
			st->up_sent += (size_t)n;
		else
			pl_buf_consume(&st->up_out, (size_t)n);
		size_t head = PL_MIN((size_t)n, (size_t)st->ws_head);
		st->ws_head -= (uint32_t)head;
		/* credit the client with what left for the backend (framing bytes make this a slight overestimate
		 * only until the buffer drains, when the rest is credited) */
		uint64_t credit = PL_MIN(st->unacked, (uint64_t)((size_t)n - head));
		if (pl_buf_empty(&st->up_out))
			credit = st->unacked;
		if (credit) {
			ack_body(st, credit);
			st->unacked -= credit;
		}
		if ((size_t)n < avail)
			st->up_wblocked = 1;
		return 1;
	}
	if (n == -EAGAIN) {
		st->up_wblocked = 1;
		return 0;
	}
	if (st->st == S_TUNNEL) {
		tunnel_reset(st, "send", n < 0 ? n : -EPIPE);
		return 1;
	}
	char why[160];
	snprintf(why, sizeof(why), "send to backend %s failed: %s", u->peer, strerror(n < 0 ? (int)-n : EPIPE));
	conn_error(st, 502, why);
	return 1;
}

/* Moves bytes between a proxied or tunnelled stream and its backend, then sets the backend's watchers. */
static void stream_pump(struct h2s *st)
{
	for (int i = 0; i < 8 && (st->st == S_PROXY || st->st == S_TUNNEL) && st->up; i++) {
		int progress = flush_up(st);
		if (st->st == S_PROXY && st->up)
			progress |= step_resp(st);
		else if (st->st == S_TUNNEL && st->up)
			progress |= step_tunnel(st);   /* also right after the 101 step_resp saw */
		if (!progress)
			break;
	}
	struct pl_upconn *u = st->up;
	if (!u || u->st != PL_UP_READY)
		return;
	int rd = !st->up_eof && (u->in.cap == 0 || pl_buf_size(&u->in) < u->in.cap);
	if (st->st == S_PROXY) {
		rd = rd || (!st->up_eof && !st->resp_head_sent && u->in.cap < MAX_RESP_HEAD + PL_BUF_STD);
		rd = rd && !st->resp_done;
	} else if (st->st == S_TUNNEL) {
		if (st->req_done && !st->up_shut && pl_buf_empty(&st->up_out))
			tunnel_half_close(st);
	} else {
		return;
	}
	pl_up_want(u, rd, st->up_wblocked && pl_buf_size(&st->up_out) > st->up_sent);
}

static void up_cb(struct pl_upconn *u, int ev)
{
	struct h2s *st = u->data;
	struct pl_h2conn *c = st->c;
	switch (ev) {
	case PL_UP_EV_ERROR: {
		char why[200];
		if (u->errmsg[0])
			snprintf(why, sizeof(why), "%s", u->errmsg);
		else
			snprintf(why, sizeof(why), "connect to %s failed: %s", u->peer, strerror(u->err));
		connect_failed(st, why);
		break;
	}
	case PL_UP_EV_CONNECTED:
		st->last_io = ev_now(c->w->loop);
		break;
	case PL_UP_EV_READ:
		up_read(st);
		break;
	case PL_UP_EV_WRITE:
		st->up_wblocked = 0;
		break;
	}
	conn_run(c);
}

/* ------------------------------------------------------- connection I/O */

static void client_read(struct pl_h2conn *c)
{
	if (c->in.cap && pl_buf_space(&c->in) == 0)
		pl_buf_compact(&c->in);
	ssize_t n = c->tls ? pl_tls_read(c->tls, &c->in) : pl_buf_read_fd(&c->in, c->fd, 0);
	if (n > 0) {
		c->last_io = ev_now(c->w->loop);
		return;
	}
	if (n == -EAGAIN || n == -ENOBUFS)
		return;
	if (n == -ENOMEM) {
		c->fatal = 1;
		return;
	}
	c->eof = 1;
}

/* Hands buffered client bytes to nghttp2. */
static void feed(struct pl_h2conn *c)
{
	if (pl_buf_empty(&c->in) || c->fatal)
		return;
	ssize_t n = nghttp2_session_mem_recv(c->s, (const uint8_t *)pl_buf_rptr(&c->in), pl_buf_size(&c->in));
	if (n < 0) {
		pl_info("%s: h2 session error: %s; closing", c->peer, nghttp2_strerror((int)n));
		pl_buf_consume(&c->in, pl_buf_size(&c->in));
		c->fatal = 1;
		/* the session is dead: write the GOAWAY ourselves */
		uint32_t code = n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS || n == NGHTTP2_ERR_FLOODED ?
					NGHTTP2_ENHANCE_YOUR_CALM : n == NGHTTP2_ERR_NOMEM ? NGHTTP2_INTERNAL_ERROR
										     : NGHTTP2_PROTOCOL_ERROR;
		int32_t last = nghttp2_session_get_last_proc_stream_id(c->s);
		uint8_t f[17] = { 0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0,
				  (uint8_t)(last >> 24), (uint8_t)(last >> 16), (uint8_t)(last >> 8), (uint8_t)last,
				  (uint8_t)(code >> 24), (uint8_t)(code >> 16), (uint8_t)(code >> 8), (uint8_t)code };
		if (pl_buf_reserve(&c->out, sizeof(f)) == 0)
			pl_buf_put(&c->out, f, sizeof(f));
		return;
	}
	pl_buf_consume(&c->in, (size_t)n);
}

/* Frames from nghttp2 into out, while out is below its high-water mark. 1 if any. */
static int produce(struct pl_h2conn *c)
{
	int any = 0;
	while (!c->fatal && pl_buf_size(&c->out) < OUT_HIWAT) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(c->s, &data);
		if (n < 0) {
			pl_debug("%s: h2 send error: %s", c->peer, nghttp2_strerror((int)n));
			c->fatal = 1;
			return any;
		}
		if (n == 0)
			break;
		if (pl_buf_reserve(&c->out, (size_t)n) != 0) {
			c->fatal = 1;
			return any;
		}
		pl_buf_put(&c->out, data, (size_t)n);
		any = 1;
	}
	return any;
}

static int flush_client(struct pl_h2conn *c)
{
	if (pl_buf_empty(&c->out) || c->wblocked || c->werr)
		return 0;
	size_t want = pl_buf_size(&c->out);
	ssize_t n = c->tls ? pl_tls_write(c->tls, &c->out) : pl_buf_write_fd(&c->out, c->fd);
	if (n > 0) {
		c->last_io = ev_now(c->w->loop);
		if ((size_t)n < want)
			c->wblocked = 1;
		return 1;
	}
	if (n == -EAGAIN) {
		c->wblocked = 1;
		return 0;
	}
	pl_debug("%s: h2 write error: %s", c->peer, strerror((int)-n));
	c->fatal = 1;
	c->werr = 1;
	return 0;
}

/* ------------------------------------------------------------- timers */

enum tmo { T_NONE = 0, T_IDLE, T_CONNECT, T_BACKEND, T_RULE, T_INACTIVE, T_RETRY };

static ev_tstamp stream_deadline(const struct h2s *st, const struct pl_proxy_config *cfg, enum tmo *why)
{
	double idle = (double)cfg->idle_timeout_ms / 1000.0;
	ev_tstamp d = 0;
	*why = T_NONE;
#define CONSIDER(val, reason) do { ev_tstamp v_ = (val); if (*why == T_NONE || v_ < d) { d = v_; *why = (reason); } } while (0)
	/* a WebSocket's request is complete with its head; once open, only inactivity ends it (as in http1.c) */
	int req_complete = st->req_done || st->ws;
	if (st->st == S_PROXY && st->rt.at) {
		/* a retry waits out its backoff: only the route's request timeout runs besides */
		CONSIDER(st->rt.at, T_RETRY);
		if (st->rule_deadline)
			CONSIDER(st->rule_deadline, T_RULE);
		return d;
	}
	if (st->st == S_PROXY) {
		if (st->up && st->up->st == PL_UP_CONNECTING && cfg->connect_timeout_ms)
			CONSIDER(st->conn_start + (double)cfg->connect_timeout_ms / 1000.0, T_CONNECT);
		if (st->rule_deadline && !st->resp_done)
			CONSIDER(st->rule_deadline, T_RULE);
		if (!st->resp_head_sent && req_complete && !st->rule_deadline && cfg->backend_timeout_ms)
			CONSIDER(st->req_done_at + (double)cfg->backend_timeout_ms / 1000.0, T_BACKEND);
	}
	if ((st->resp_head_sent || !req_complete || st->st != S_PROXY) && idle > 0)
		CONSIDER(st->last_io + idle, T_INACTIVE);
#undef CONSIDER
	return d;
}

static ev_tstamp conn_deadline(struct pl_h2conn *c)
{
	const struct pl_proxy_config *cfg = c->w->cfg;
	ev_tstamp d = 0;
	if (cfg->idle_timeout_ms)
		d = c->last_io + (double)cfg->idle_timeout_ms / 1000.0;
	for (struct h2s *st = c->streams; st; st = st->next) {
		enum tmo why;
		ev_tstamp sd = stream_deadline(st, cfg, &why);
		if (why != T_NONE && (d == 0 || sd < d))
			d = sd;
	}
	return d;
}

static void arm_timer(struct pl_h2conn *c)
{
	ev_tstamp d = conn_deadline(c);
	if (d == 0) {
		ev_timer_stop(c->w->loop, &c->timer);
		return;
	}
	if (ev_is_active(&c->timer) && c->timer_at <= d)
		return;
	ev_timer_stop(c->w->loop, &c->timer);
	double after = d - ev_now(c->w->loop);
	ev_timer_set(&c->timer, after > 0 ? after : 0, 0.);
	ev_timer_start(c->w->loop, &c->timer);
	c->timer_at = d;
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct pl_h2conn *c = t->data;
	const struct pl_proxy_config *cfg = c->w->cfg;
	ev_tstamp now = ev_now(loop);
	if (c->lingering) {
		conn_close(c);
		return;
	}
	struct h2s *st, *next;
	for (st = c->streams; st; st = next) {
		next = st->next;
		enum tmo why;
		ev_tstamp d = stream_deadline(st, cfg, &why);
		if (why == T_NONE || d > now + 0.001)
			continue;
		char w_s[160];
		switch (why) {
		case T_CONNECT:
			snprintf(w_s, sizeof(w_s), "connect to %s timed out", st->up ? st->up->peer : "?");
			st->retry_ok = 0;
			conn_error(st, 504, w_s);
			break;
		case T_BACKEND:
		case T_RULE:
			snprintf(w_s, sizeof(w_s), "%s timeout waiting for %s", why == T_RULE ? "route" : "backend",
				 st->up ? st->up->peer : "backend");
			st->retry_ok = 0;
			/* timeouts.request is final; a per-attempt one (backendRequest, the proxy's) may be retried */
			conn_error(st, 504, w_s);
			break;
		case T_RETRY:
			retry_fire(st);
			break;
		default:
			pl_info("%s \"%s %s\" (h2 stream %d): idle timeout in state %s; resetting", c->peer, st->mname,
				st->target, st->id, sstate_str(st->st));
			stream_reset(st, NGHTTP2_CANCEL);
			st->last_io = now;   /* nghttp2 closes it once the reset is sent */
			break;
		}
	}
	if (c->n_streams == 0 && cfg->idle_timeout_ms && c->last_io + (double)cfg->idle_timeout_ms / 1000.0 <= now + 0.001) {
		if (!c->goaway) {
			c->goaway = 1;
			nghttp2_session_terminate_session(c->s, NGHTTP2_NO_ERROR);
		} else {
			c->eof = 1;
		}
		c->last_io = now;
	}
	conn_run(c);
}

/* ------------------------------------------------------------- lifecycle */

static void conn_close(struct pl_h2conn *c)
{
	if (c->st == C_CLOSED)
		return;
	struct pl_worker *w = c->w;
	while (c->streams)
		stream_finish(c->streams);
	ev_io_stop(w->loop, &c->rio);
	ev_io_stop(w->loop, &c->wio);
	ev_timer_stop(w->loop, &c->timer);
	if (c->tls) {
		pl_tls_conn_free(c->tls);
		c->tls = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->st = C_CLOSED;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->h2 = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = w->h2_dead;
	w->h2_dead = c;
	atomic_fetch_sub_explicit(&w->n_conns, 1, memory_order_relaxed);
}

static void free_dead_streams(struct pl_h2conn *c)
{
	while (c->dead) {
		struct h2s *st = c->dead;
		c->dead = st->next;
		stream_free(st);
	}
}

#define LINGER_S 2.0
#define LINGER_MAX (256 * 1024)

static void conn_linger(struct pl_h2conn *c)
{
	if (c->lingering)
		return;
	c->lingering = 1;
	while (c->streams)
		stream_finish(c->streams);
	if (c->tls)
		pl_tls_close_notify(c->tls);
	shutdown(c->fd, SHUT_WR);
	c->linger_until = ev_now(c->w->loop) + LINGER_S;
	ev_io_stop(c->w->loop, &c->wio);
	ev_io_start(c->w->loop, &c->rio);
	ev_timer_stop(c->w->loop, &c->timer);
	ev_timer_set(&c->timer, LINGER_S, 0.);
	ev_timer_start(c->w->loop, &c->timer);
}

static void linger_read(struct pl_h2conn *c)
{
	ssize_t n = c->tls ? pl_tls_read(c->tls, &c->in) : pl_buf_read_fd(&c->in, c->fd, 0);
	if (n > 0) {
		c->linger_bytes += (size_t)n;
		pl_buf_consume(&c->in, pl_buf_size(&c->in));
		if (c->linger_bytes <= LINGER_MAX)
			return;
	} else if (n == -EAGAIN) {
		return;
	}
	conn_close(c);
}

static void update_watchers(struct pl_h2conn *c)
{
	struct ev_loop *loop = c->w->loop;
	int rd = !c->eof && pl_buf_size(&c->out) < OUT_HIWAT && nghttp2_session_want_read(c->s);
	if (rd)
		ev_io_start(loop, &c->rio);
	else
		ev_io_stop(loop, &c->rio);
	if (rd && c->tls && pl_tls_pending(c->tls))
		ev_feed_event(loop, &c->rio, EV_READ);
	if ((c->wblocked && !pl_buf_empty(&c->out)) || (rd && c->tls && pl_tls_read_wants_write(c->tls)))
		ev_io_start(loop, &c->wio);
	else
		ev_io_stop(loop, &c->wio);
}

/*
 * The one place work happens: client bytes to nghttp2, streams to and from
 * their backends, frames to the client; until nothing moves.
 */
static void conn_run(struct pl_h2conn *c)
{
	if (c->st == C_CLOSED || c->in_run || c->lingering)
		return;
	c->in_run = 1;
	for (int iter = 0; iter < 64; iter++) {
		int progress = 0;
		size_t before = pl_buf_size(&c->in);
		feed(c);
		if (pl_buf_size(&c->in) != before)
			progress = 1;
		for (struct h2s *st = c->streams; st; st = st->next) {
			if (st->st == S_PROXY && st->want_dispatch) {
				st->want_dispatch = 0;
				dispatch(st, 0);
				progress = 1;
			}
			if ((st->st == S_PROXY || st->st == S_TUNNEL) && st->up)
				stream_pump(st);
		}
		progress |= produce(c);
		progress |= flush_client(c);
		if (c->fatal)
			break;
		if (!progress)
			break;
	}
	if (c->fatal)
		flush_client(c);   /* our own GOAWAY */
	c->in_run = 0;
	if (c->eof || c->werr) {
		/* the client is gone: what is left in out goes nowhere useful */
		conn_close(c);
		free_dead_streams(c);
		return;
	}
	if (c->fatal || (!nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s))) {
		/* the session is over: deliver the GOAWAY, then linger so that
		 * unread client bytes do not turn our close into a reset */
		if (pl_buf_empty(&c->out)) {
			conn_linger(c);
			free_dead_streams(c);
			return;
		}
		ev_io_stop(c->w->loop, &c->rio);
		ev_io_start(c->w->loop, &c->wio);
		arm_timer(c);
		free_dead_streams(c);
		return;
	}
	update_watchers(c);
	arm_timer(c);
	free_dead_streams(c);
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_h2conn *c = io->data;
	if (c->lingering) {
		linger_read(c);
		return;
	}
	client_read(c);
	conn_run(c);
}

static void on_write(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_h2conn *c = io->data;
	c->wblocked = 0;
	if (c->tls && pl_tls_read_wants_write(c->tls))
		client_read(c);
	conn_run(c);
}

/*
 * A connection's state and server session, SETTINGS queued, before it owns
 * a socket: data[0, len) are client bytes already read. NULL when out of
 * memory.
 */
static struct pl_h2conn *conn_new(struct pl_worker *w, const char *peer, const char *data, size_t len)
{
	pthread_once(&cbs_once, cbs_init);
	struct pl_h2conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->w = w;
	c->fd = -1;
	snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "unknown");
	c->budget.limit = CONN_BUDGET;
	pl_buf_init(&c->in, &c->budget);
	pl_buf_init(&c->out, &c->budget);
	if (len && (pl_buf_reserve(&c->in, PL_MAX(len, (size_t)PL_BUF_STD)) != 0))
		goto fail;
	if (len)
		pl_buf_put(&c->in, data, len);
	if (nghttp2_session_server_new2(&c->s, cbs, c, opts) != 0)
		goto fail;
	uint32_t max_hl = (uint32_t)PL_MIN(w->cfg->max_header_bytes + 4096, (size_t)UINT32_MAX);
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, max_hl },
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		/* RFC 8441: WebSocket by extended CONNECT (nghttp2 accepts :protocol only once this is sent) */
		{ NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },
	};
	if (nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, PL_ARRAY_LEN(iv)) != 0 ||
	    nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0) {
		nghttp2_session_del(c->s);
		goto fail;
	}
	return c;
fail:
	pl_buf_free(&c->in);
	free(c);
	return NULL;
}

/* Undoes conn_new() (and a stream made before conn_attach()). */
static void conn_discard(struct pl_h2conn *c)
{
	while (c->streams) {
		struct h2s *st = c->streams;
		c->streams = st->next;
		if (st->wt)
			pl_wtable_put(st->wt);
		stream_free(st);
	}
	nghttp2_session_del(c->s);
	pl_buf_free(&c->in);
	pl_buf_free(&c->out);
	free(c);
}

/* The connection takes fd (and tls) and joins the worker's list. */
static void conn_attach(struct pl_h2conn *c, struct pl_lsock *ls, int fd, struct pl_tlsconn *tls)
{
	struct pl_worker *w = c->w;
	c->tls = tls;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->ls = ls;
	pl_lsock_get(ls);
	c->fd = fd;
	ev_io_init(&c->rio, on_read, fd, EV_READ);
	ev_io_init(&c->wio, on_write, fd, EV_WRITE);
	ev_init(&c->timer, on_timer);
	c->rio.data = c->wio.data = c->timer.data = c;
	c->last_io = ev_now(w->loop);
	c->next = w->h2;
	if (w->h2)
		w->h2->prev = c;
	w->h2 = c;
	atomic_fetch_add_explicit(&w->n_conns, 1, memory_order_relaxed);
	if (w->draining) {
		c->goaway = 1;
		nghttp2_submit_goaway(c->s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
	}
}

void pl_h2_accept(struct pl_worker *w, struct pl_lsock *ls, int fd, const char *peer, struct pl_tlsconn *tls,
		  const char *data, size_t len)
{
	struct pl_h2conn *c = conn_new(w, peer, data, len);
	if (!c) {
		pl_warn("%s: out of memory setting up an HTTP/2 connection", peer ? peer : "?");
		if (tls)
			pl_tls_conn_free(tls);
		close(fd);
		return;
	}
	conn_attach(c, ls, fd, tls);
	conn_run(c);
}

/* ------------------------------------------------------------ h2c upgrade */

ssize_t pl_h2_b64url_decode(const char *src, size_t n, unsigned char *dst, size_t cap)
{
	while (n && src[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return -1;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t out = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = src[i];
		unsigned v;
		if (ch >= 'A' && ch <= 'Z')
			v = (unsigned)(ch - 'A');
		else if (ch >= 'a' && ch <= 'z')
			v = (unsigned)(ch - 'a') + 26;
		else if (ch >= '0' && ch <= '9')
			v = (unsigned)(ch - '0') + 52;
		else if (ch == '-')
			v = 62;
		else if (ch == '_')
			v = 63;
		else
			return -1;
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (out == cap)
				return -1;
			dst[out++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return -1;   /* non-zero leftover bits: not a canonical encoding */
	return (ssize_t)out;
}

/* Appends a span of bytes to the stream's header block: 0, or -1 (too large / no memory). */
static int up_field(struct h2s *st, struct span *sp, const char *n, size_t nl, const char *v, size_t vl, int lower)
{
	size_t limit = (size_t)st->c->w->cfg->max_header_bytes + 1024;
	if (hb_add(st, (const uint8_t *)n, nl, &sp->no, limit) != 0 ||
	    hb_add(st, (const uint8_t *)v, vl, &sp->vo, limit) != 0)
		return -1;
	sp->nl = (uint32_t)nl;
	sp->vl = (uint32_t)vl;
	for (size_t i = 0; lower && i < nl; i++)
		st->hb[sp->no + i] = pl_lower(st->hb[sp->no + i]);
	return 0;
}

/* 1 if a Connection field of rq names the field n[0, nl). */
static int up_conn_named(const struct pl_h2_upreq *rq, const char *n, size_t nl)
{
	for (uint32_t i = 0; i < rq->n_hdrs; i++) {
		const struct pl_hdr *h = &rq->hdrs[i];
		if (name_is(h->name, h->name_len, "connection") && has_token_n(h->value, h->value_len, n, nl))
			return 1;
	}
	return 0;
}

/*
 * Stream 1 of an upgraded connection: the HTTP/1.1 request as the header
 * block an HTTP/2 client would have sent (RFC 9113 8.2.2: no
 * connection-specific fields, Host as :authority, lower-case names).
 */
static struct h2s *upgrade_stream(struct pl_h2conn *c, const struct pl_h2_upreq *rq)
{
	struct h2s *st = stream_new(c, 1);
	if (!st)
		return NULL;
	size_t ml = strlen(rq->method);
	int bad = up_field(st, &st->method, ":method", 7, rq->method, ml, 0) != 0 ||
		  up_field(st, &st->scheme, ":scheme", 7, "http", 4, 0) != 0 ||
		  up_field(st, &st->authority, ":authority", 10, rq->authority, rq->authority_len, 0) != 0 ||
		  up_field(st, &st->path, ":path", 5, rq->path, rq->path_len, 0) != 0;
	if (!bad && rq->query) {
		/* the query continues the path's bytes in hb */
		uint32_t off;
		bad = hb_add(st, (const uint8_t *)"?", 1, &off, SIZE_MAX) != 0 ||
		      hb_add(st, (const uint8_t *)rq->query, rq->query_len, &off, SIZE_MAX) != 0;
		st->path.vl += (uint32_t)(1 + rq->query_len);
	}
	st->has_method = st->has_scheme = st->has_authority = st->has_path = 1;
	for (uint32_t i = 0; i < rq->n_hdrs && !bad; i++) {
		const struct pl_hdr *h = &rq->hdrs[i];
		const char *v = h->value;
		size_t vl = h->value_len;
		if (name_is(h->name, h->name_len, "te")) {
			if (!has_token(v, vl, "trailers"))
				continue;
			v = "trailers";   /* the only TE value HTTP/2 allows */
			vl = 8;
		} else if (conn_specific(h->name, h->name_len) || name_is(h->name, h->name_len, "host") ||
			   up_conn_named(rq, h->name, h->name_len)) {
			continue;
		}
		if (st->nh == MAX_HDRS) {
			bad = 1;
			break;
		}
		bad = up_field(st, &st->h[st->nh++], h->name, h->name_len, v, vl, 1) != 0;
	}
	st->too_big = (uint8_t)bad;   /* head_done answers 431 */
	st->req_done = 1;
	c->max_sid = 1;
	nghttp2_session_set_stream_user_data(c->s, 1, st);
	return st;
}

int pl_h2_upgrade(struct pl_worker *w, struct pl_lsock *ls, int fd, const char *peer, const struct pl_h2_upreq *rq,
		  const char *data, size_t len)
{
	static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
	unsigned char set[32 * 6];   /* SETTINGS entries: at most 32 (nghttp2_option_set_max_settings) */
	ssize_t sl = pl_h2_b64url_decode(rq->settings, rq->settings_len, set, sizeof(set));
	if (sl < 0 || sl % 6 != 0)
		return -EINVAL;
	struct pl_h2conn *c = conn_new(w, peer, data, len);
	if (!c)
		return -ENOMEM;
	/* nghttp2 answers invalid values (on_invalid_frame) with a GOAWAY: refused here instead */
	int head = strcmp(rq->method, "HEAD") == 0;
	if (nghttp2_session_upgrade2(c->s, set, (size_t)sl, head, NULL) != 0 || c->bad_settings) {
		conn_discard(c);
		return -EINVAL;
	}
	struct h2s *st;
	if (pl_buf_reserve(&c->out, sizeof(sw)) != 0 || !(st = upgrade_stream(c, rq))) {
		conn_discard(c);
		return -ENOMEM;
	}
	/* the 101 goes before the server preface (our SETTINGS), which the next produce() adds */
	pl_buf_put(&c->out, sw, sizeof(sw) - 1);
	conn_attach(c, ls, fd, NULL);
	pl_debug("%s: \"%s %s\" upgraded to h2c", c->peer, rq->method, rq->path);
	head_done(st);
	conn_run(c);
	return 0;
}

void pl_h2_reap(struct pl_worker *w)
{
	while (w->h2_dead) {
		struct pl_h2conn *c = w->h2_dead;
		w->h2_dead = c->next;
		free_dead_streams(c);
		nghttp2_session_del(c->s);
		pl_buf_free(&c->in);
		pl_buf_free(&c->out);
		pl_lsock_put(c->ls);
		free(c);
	}
}

void pl_h2_drain(struct pl_worker *w)
{
	struct pl_h2conn *c, *next;
	for (c = w->h2; c; c = next) {
		next = c->next;
		if (c->goaway)
			continue;
		c->goaway = 1;
		nghttp2_submit_goaway(c->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->s),
				      NGHTTP2_NO_ERROR, NULL, 0);
		conn_run(c);
	}
}

void pl_h2_close_all(struct pl_worker *w)
{
	while (w->h2)
		conn_close(w->h2);
	pl_h2up_close_all(w);
}
