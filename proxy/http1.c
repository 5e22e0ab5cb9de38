#define _GNU_SOURCE /* accept4, pipe2 */
#include "pl.h"
#include "log.h"
#include "stats.h"
#include "table.h"
#include "buf.h"
#include "cors.h"
#include "h1scan.h"
#include "h2.h"
#include "h2up.h"
#include "http1.h"
#include "mirror.h"
#include "reqhead.h"
#include "reqview.h"
#include "retry.h"
#include "rewrite.h"
#include "router.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HDRS 100            /* header fields per head; beyond: 431 / 502 */
#define MAX_CTOK 16             /* Connection header tokens remembered */
#define MAX_RESP_HEAD (64 * 1024)
#define LINGER_S 2.0
#define LINGER_MAX (256 * 1024)
/*
 * Room kept free in an output buffer when feeding body bytes to llhttp: the
 * re-chunked output of n input bytes is at most n + 2 split chunk headers +
 * the last-chunk line, so feeding (space - BODY_MARGIN) bytes always fits.
 */
#define BODY_MARGIN 64
/*
 * Budget added for an exchange with an h2c backend: its response DATA cannot
 * be refused, so out must hold a whole stream window (64 KiB, h2up.c) plus
 * a response head and chunk framing; doubling growth needs up to 256 KiB.
 */
#define H2_OUT_ROOM (256 * 1024)
#define MAX_TRAILERS 32          /* request trailer fields kept; beyond, or beyond the bytes, all are dropped */
#define MAX_TRAILER_BYTES 8192

enum h1_state {
	H1_IDLE = 0,    /* keep-alive: nothing of the next request received yet */
	H1_HEAD,        /* receiving a request head (header deadline running) */
	H1_PROXY,       /* routed: connect, send, stream the response back */
	H1_LOCAL,       /* writing a response made here (error, redirect) */
	H1_TUNNEL,      /* after 101: raw bytes both ways */
	H1_LINGER,      /* last response sent, write side shut, discarding input */
	H1_CLOSED,      /* fd closed, waiting for the reaper */
};

static const char *state_str(enum h1_state s)
{
	static const char *const names[] = { "idle", "head", "proxy", "local", "tunnel", "linger", "closed" };
	return (unsigned)s < PL_ARRAY_LEN(names) ? names[s] : "?";
}

enum { RP_HEAD = 0, RP_BODY };
enum tmo { T_NONE = 0, T_IDLE, T_HEAD, T_CONNECT, T_BACKEND, T_RULE, T_INACTIVE, T_LINGER, T_RETRY };

/*
 * A chunked request's trailer fields (RFC 9112 7.1.2), copied as llhttp
 * parses them (a field may come in pieces over several reads), forwarded
 * after the body: in the trailer section toward HTTP/1.1 backends, as a
 * trailing HEADERS frame toward h2c backends.
 */
struct h1_trailers {
	nghttp2_nv nv[MAX_TRAILERS];     /* into b; names lower-cased once the message ends */
	uint32_t n, len;
	uint8_t in_value, over, done;
	char b[MAX_TRAILER_BYTES];
};

/* Per-request state, zeroed up to the cors member when a request ends. */
struct h1_req {
	struct pl_wtable *wt;                   /* pinned table, NULL before routing */
	const struct pl_listener *listener;
	const struct pl_route_entry *entry;
	struct pl_rule *rule;
	struct pl_cluster *cluster;
	const struct pl_endpoint *ep;
	struct pl_route_stats *stats;
	const struct pl_header_mod *resp_mods[PL_RH_MAX_MODS];
	unsigned n_resp_mods;
	const struct pl_header_mod *cors_local; /* CORS fields of replies made here (pl_rh_cors_actual); NULL: none */
	const char *method;
	char target[96];                        /* for logs */
	int status;                             /* final status sent; 0 until then */
	uint8_t minor;                          /* client's HTTP/1.x minor version */
	uint8_t keepalive;                      /* client allows another request */
	uint8_t is_head, upgrade, chunked;
	uint8_t req_done;                       /* request body completely read */
	uint8_t retry_ok, retried, ep_retried;
	uint8_t resp_any;                       /* a byte of the response arrived */
	uint8_t resp_started;                   /* final head sent to the client */
	uint8_t resp_done, resp_chunk, resp_phase, counted;
	uint8_t h2_dispatch;                    /* open the stream at the next run (after a failed connect too) */
	uint8_t h2_nobody;                      /* the final response has no body: DATA is dropped */
	uint8_t h2_trailed;                     /* the last chunk and trailer section are written */
	ev_tstamp start, conn_start, req_done_at, rule_deadline;
	struct pl_retry_st rt;                  /* route retries (retry.h): bytes kept in up_out while rt.replay */
	/*
	 * Not zeroed between requests (request_end): 576 bytes that only a rule
	 * with a CORS filter uses, and pl_cors_actual()/pl_cors_preflight()
	 * initialise before anything points at them. Keep it last.
	 */
	struct pl_cors_fields cors;             /* the CORS filter's resp_mods entry (pl_rh_cors_actual) */
};

struct pl_h1conn {
	struct pl_worker *w;
	struct pl_lsock *ls;
	struct pl_h1conn *next, *prev;
	int fd;
	enum h1_state st;
	ev_io rio, wio;
	ev_timer timer;
	ev_tstamp timer_at;
	ev_tstamp last_io, head_start, linger_until;
	struct pl_budget budget;
	struct pl_buf in;       /* client bytes */
	struct pl_buf out;      /* bytes for the client */
	struct pl_buf up_out;   /* bytes for the backend */
	size_t up_sent;         /* bytes of up_out sent but kept for a retry */
	size_t linger_bytes;
	struct pl_h1scan scan, rscan;
	size_t scanned, rscanned;
	llhttp_t rp, sp;        /* request parser, response parser */
	struct pl_upconn *up;
	struct pl_tlsconn *tls;  /* NULL: plaintext; else all client I/O goes through it (tls.h) */
	struct pl_h2up_stream *h2u;  /* an h2c cluster's stream instead of up, until its on_close or a detach */
	nghttp2_nv *h2nv;        /* its request head, kept while a failed connect may send it elsewhere */
	size_t h2n;
	size_t h2_owed;          /* response DATA bytes taken from h2u, not yet credited back */
	size_t budget_base;      /* budget.limit outside h2c exchanges */
	struct h1_trailers *rtr; /* the request's trailer fields; NULL: none */
	struct h1_req req;
	unsigned requests;
	uint8_t cl_wblocked, up_wblocked, client_eof, up_eof, close_after;
	uint8_t rp_hdone, rp_done, sp_hdone, sp_done;
	char peer[INET6_ADDRSTRLEN];
};

/*
 * Scratch for the head being processed. Heads are handled synchronously
 * inside one callback, so one copy per thread serves every connection and
 * connections do not carry 2 KiB of header slots each.
 */
struct scratch {
	struct pl_hdr hdrs[MAX_HDRS];
	uint8_t kind[MAX_HDRS];
	uint32_t n;
	int last_value;
	const char *url, *reason;
	size_t url_len, reason_len;
	struct { const char *p; size_t n; } ctok[MAX_CTOK];
	unsigned n_ctok;
	char host[256];         /* routing host: lower-case, no port */
	uint32_t host_len;
};
static __thread struct scratch S;

static llhttp_settings_t req_settings, resp_settings;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static void conn_run(struct pl_h1conn *c);
static void conn_close(struct pl_h1conn *c);
static void respond_local(struct pl_h1conn *c, int status, const char *why);
static void upstream_fail(struct pl_h1conn *c, int status, const char *why);
static void backend_drop(struct pl_h1conn *c);
static void h2nv_free(struct pl_h1conn *c);
static void h2_dispatch(struct pl_h1conn *c);
static int retry_later(struct pl_h1conn *c, int status, const char *why);
static void conn_error(struct pl_h1conn *c, int status, const char *why);
static void replay_release(struct pl_h1conn *c);

/* ---------------------------------------------------------------- utils */

/* Header kinds the proxy treats specially (hop-by-hop, framing, forwarding). */
enum { H_OTHER = 0, H_HOST, H_CL, H_TE, H_CONNECTION, H_HOP, H_UPGRADE, H_XFF, H_XFP };

/*
 * n[0..len) equals lit, a lower-case field name, ignoring ASCII case: an
 * inline pl_strncaseeq() for hdr_kind(), which runs for every field of every
 * head (the calls were ~4% of a proxied request's instructions). A byte
 * equal as it is skips the case folding.
 */
static inline int is_lc(const char *n, const char *lit, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (n[i] != lit[i] && pl_lower(n[i]) != lit[i])
			return 0;
	return 1;
}

static int hdr_kind(const char *n, size_t len)
{
	switch (len) {
	case 2:
		return is_lc(n, "te", 2) ? H_HOP : H_OTHER;
	case 4:
		return is_lc(n, "host", 4) ? H_HOST : H_OTHER;
	case 7:
		if (is_lc(n, "upgrade", 7))
			return H_UPGRADE;
		return is_lc(n, "trailer", 7) ? H_HOP : H_OTHER;
	case 10:
		if (is_lc(n, "connection", 10))
			return H_CONNECTION;
		return is_lc(n, "keep-alive", 10) ? H_HOP : H_OTHER;
	case 14:
		if (is_lc(n, "content-length", 14))
			return H_CL;
		return is_lc(n, "http2-settings", 14) ? H_HOP : H_OTHER;
	case 15:
		return is_lc(n, "x-forwarded-for", 15) ? H_XFF : H_OTHER;
	case 16:
		return is_lc(n, "proxy-connection", 16) ? H_HOP : H_OTHER;
	case 17:
		if (is_lc(n, "transfer-encoding", 17))
			return H_TE;
		return is_lc(n, "x-forwarded-proto", 17) ? H_XFP : H_OTHER;
	}
	return H_OTHER;
}

static int is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * The next token of a comma-separated field value [*p, end): its start in
 * *t, its length returned (0 at the end); *p moves past it.
 */
static size_t next_token(const char **p, const char *end, const char **t)
{
	const char *q = *p;
	size_t n = 0;
	while (n == 0 && q < end) {
		while (q < end && (is_ows(*q) || *q == ','))
			q++;
		*t = q;
		while (q < end && *q != ',' && !is_ows(*q))
			q++;
		n = (size_t)(q - *t);
	}
	*p = q;
	return n;
}

/* Classifies S.hdrs and collects the Connection tokens. */
static void classify_headers(void)
{
	S.n_ctok = 0;
	for (uint32_t i = 0; i < S.n; i++) {
		struct pl_hdr *h = &S.hdrs[i];
		S.kind[i] = (uint8_t)hdr_kind(h->name, h->name_len);
		if (S.kind[i] != H_CONNECTION)
			continue;
		const char *p = h->value, *end = h->value + h->value_len, *t;
		size_t n;
		while ((n = next_token(&p, end, &t)) != 0) {
			if (S.n_ctok < MAX_CTOK) {
				S.ctok[S.n_ctok].p = t;
				S.ctok[S.n_ctok].n = n;
				S.n_ctok++;
			}
		}
	}
}

static int in_ctok(const char *name, size_t len)
{
	for (unsigned i = 0; i < S.n_ctok; i++)
		if (S.ctok[i].n == len && pl_strncaseeq(S.ctok[i].p, name, len))
			return 1;
	return 0;
}

/* Transfer-Encoding values must be exactly "chunked": other codings are not supported. */
static int te_is_chunked_only(void)
{
	for (uint32_t i = 0; i < S.n; i++) {
		if (S.kind[i] != H_TE)
			continue;
		const struct pl_hdr *h = &S.hdrs[i];
		if (h->value_len != 7 || !pl_strncaseeq(h->value, "chunked", 7))
			return 0;
	}
	return 1;
}

/* ------------------------------------------------------- llhttp callbacks */

static int cb_begin(llhttp_t *p)
{
	S.n = 0;
	S.last_value = 0;
	S.url = S.reason = NULL;
	S.url_len = S.reason_len = 0;
	return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t n)
{
	if (!S.url)
		S.url = at;
	S.url_len = (size_t)(at + n - S.url);
	return 0;
}

static int cb_status(llhttp_t *p, const char *at, size_t n)
{
	if (!S.reason)
		S.reason = at;
	S.reason_len = (size_t)(at + n - S.reason);
	return 0;
}

static int hdrs_done(llhttp_t *p)
{
	struct pl_h1conn *c = p->data;
	return p == &c->rp ? c->rp_hdone : c->sp_hdone;
}

/*
 * A piece of a request trailer field's name (value 0) or value (1). What
 * does not fit MAX_TRAILERS / MAX_TRAILER_BYTES marks the set over: it is
 * dropped whole. Kept out of line: inlined, it made cb_hfield/cb_hvalue save
 * and restore four registers on every field of every head.
 */
static __attribute__((cold, noinline)) void trailer_part(struct pl_h1conn *c, const char *at, size_t n, int value)
{
	struct h1_trailers *t = c->rtr;
	if (c->st != H1_PROXY || (value && (!t || !t->n)))
		return;
	if (!t && !(t = c->rtr = calloc(1, sizeof(*t))))
		return;   /* no memory: the trailers are dropped */
	if (t->over)
		return;
	if (!value && (t->n == 0 || t->in_value)) {
		if (t->n == MAX_TRAILERS) {
			t->over = 1;
			return;
		}
		t->nv[t->n++] = (nghttp2_nv){ (uint8_t *)t->b + t->len, (uint8_t *)t->b + t->len, 0, 0,
					      NGHTTP2_NV_FLAG_NONE };
		t->in_value = 0;
	} else if (value && !t->in_value) {
		t->nv[t->n - 1].value = (uint8_t *)t->b + t->len;
		t->in_value = 1;
	}
	if (n > sizeof(t->b) - t->len) {
		t->over = 1;
		return;
	}
	memcpy(t->b + t->len, at, n);
	t->len += (uint32_t)n;
	if (value)
		t->nv[t->n - 1].valuelen += n;
	else
		t->nv[t->n - 1].namelen += n;
}

/*
 * The request ended: its trailer fields are final. Kept: valid fields a
 * trailer may carry (no framing, routing or connection fields), names
 * lower-cased (HTTP/2 wants them so; HTTP/1.1 does not mind). NULL: none.
 */
static struct h1_trailers *trailers_final(struct pl_h1conn *c)
{
	struct h1_trailers *t = c->rtr;
	if (!t || t->done)
		return t && t->n ? t : NULL;
	t->done = 1;
	if (t->over) {
		pl_info("%s \"%s %s\": request trailers beyond %u fields / %u bytes dropped", c->peer, c->req.method,
			c->req.target, MAX_TRAILERS, MAX_TRAILER_BYTES);
		t->n = 0;
		return NULL;
	}
	uint32_t k = 0;
	for (uint32_t i = 0; i < t->n; i++) {
		nghttp2_nv *f = &t->nv[i];
		while (f->valuelen && is_ows((char)f->value[f->valuelen - 1]))
			f->valuelen--;
		const char *nm = (const char *)f->name;
		if (!pl_rh_field_ok(f->name, f->namelen, f->value, f->valuelen) || hdr_kind(nm, f->namelen) != H_OTHER) {
			pl_debug("%s \"%s %s\": request trailer %.*s dropped", c->peer, c->req.method, c->req.target,
				 (int)f->namelen, nm);
			continue;
		}
		for (size_t j = 0; j < f->namelen; j++)
			f->name[j] = (uint8_t)pl_lower((char)f->name[j]);
		t->nv[k++] = *f;
	}
	t->n = k;
	return k ? t : NULL;
}

/*
 * Field and value spans: a head is always fed to llhttp in one contiguous
 * piece, so a span split over several callbacks is extended in place.
 * Trailer fields (after the body) are a request's trailers (trailer_part);
 * a response's are dropped.
 */
static int cb_hfield(llhttp_t *p, const char *at, size_t n)
{
	if (hdrs_done(p)) {
		struct pl_h1conn *c = p->data;
		if (p == &c->rp)
			trailer_part(c, at, n, 0);
		return 0;
	}
	if (S.n == 0 || S.last_value) {
		if (S.n == MAX_HDRS) {
			llhttp_set_error_reason(p, "too many header fields");
			return HPE_USER;
		}
		struct pl_hdr *h = &S.hdrs[S.n++];
		h->name = at;
		h->name_len = (uint32_t)n;
		h->value = at + n;
		h->value_len = 0;
		S.last_value = 0;
	} else {
		struct pl_hdr *h = &S.hdrs[S.n - 1];
		h->name_len = (uint32_t)(at + n - h->name);
	}
	return 0;
}

static int cb_hvalue(llhttp_t *p, const char *at, size_t n)
{
	if (hdrs_done(p)) {
		struct pl_h1conn *c = p->data;
		if (p == &c->rp)
			trailer_part(c, at, n, 1);
		return 0;
	}
	if (S.n == 0)
		return 0;
	struct pl_hdr *h = &S.hdrs[S.n - 1];
	if (!S.last_value) {
		h->value = at;
		h->value_len = (uint32_t)n;
		S.last_value = 1;
	} else {
		h->value_len = (uint32_t)(at + n - h->value);
	}
	return 0;
}

static void trim_values(void)
{
	for (uint32_t i = 0; i < S.n; i++) {
		struct pl_hdr *h = &S.hdrs[i];
		while (h->value_len && is_ows(h->value[h->value_len - 1]))
			h->value_len--;
	}
}

static int cb_req_headers_done(llhttp_t *p)
{
	struct pl_h1conn *c = p->data;
	c->rp_hdone = 1;
	trim_values();
	return 0;
}

static int cb_resp_headers_done(llhttp_t *p)
{
	struct pl_h1conn *c = p->data;
	c->sp_hdone = 1;
	trim_values();
	/* a response to HEAD has no body whatever its framing headers say */
	return c->req.is_head ? 1 : 0;
}

/* Appends body bytes to b, as one chunk when chunk is set; -1 when b cannot grow. */
static int body_put(struct pl_buf *b, int chunk, const void *at, size_t n)
{
	if (n == 0)
		return 0;
	if (pl_buf_reserve(b, n + 24) != 0)
		return -1;
	if (chunk)
		pl_buf_put_chunk_head(b, n);
	pl_buf_put(b, at, n);
	if (chunk)
		pl_buf_put(b, "\r\n", 2);
	return 0;
}

/* Body bytes from the parser into b, re-chunked when chunk is set. */
static int body_out(llhttp_t *p, struct pl_buf *b, int chunk, const char *at, size_t n, const char *what)
{
	if (body_put(b, chunk, at, n) != 0) {
		llhttp_set_error_reason(p, what);
		return HPE_USER;
	}
	return 0;
}

static int cb_req_body(llhttp_t *p, const char *at, size_t n)
{
	struct pl_h1conn *c = p->data;
	return body_out(p, &c->up_out, c->req.chunked, at, n, "request body buffer exhausted");
}

static int cb_req_done(llhttp_t *p)
{
	struct pl_h1conn *c = p->data;
	c->rp_done = 1;
	struct h1_trailers *t = c->rp_hdone && c->st == H1_PROXY ? trailers_final(c) : NULL;
	if (c->rp_hdone && c->req.chunked && c->st == H1_PROXY) {
		/* the last chunk, then the trailer section (the fields, or just its CRLF) */
		if (pl_buf_reserve(&c->up_out, 5 + (t ? t->len + 4 * t->n : 0)) != 0) {
			llhttp_set_error_reason(p, "request body buffer exhausted");
			return HPE_USER;
		}
		pl_buf_put(&c->up_out, "0\r\n", 3);
		for (uint32_t i = 0; t && i < t->n; i++) {
			pl_buf_put(&c->up_out, t->nv[i].name, t->nv[i].namelen);
			pl_buf_put(&c->up_out, ": ", 2);
			pl_buf_put(&c->up_out, t->nv[i].value, t->nv[i].valuelen);
			pl_buf_put(&c->up_out, "\r\n", 2);
		}
		pl_buf_put(&c->up_out, "\r\n", 2);
	}
	/* stop at the message boundary: the next pipelined request is scanned first */
	return HPE_PAUSED;
}

static int cb_resp_body(llhttp_t *p, const char *at, size_t n)
{
	struct pl_h1conn *c = p->data;
	return body_out(p, &c->out, c->req.resp_chunk, at, n, "response body buffer exhausted");
}

static int cb_resp_done(llhttp_t *p)
{
	struct pl_h1conn *c = p->data;
	c->sp_done = 1;
	return HPE_PAUSED;
}

static void settings_init(void)
{
	llhttp_settings_init(&req_settings);
	req_settings.on_message_begin = cb_begin;
	req_settings.on_url = cb_url;
	req_settings.on_header_field = cb_hfield;
	req_settings.on_header_value = cb_hvalue;
	req_settings.on_headers_complete = cb_req_headers_done;
	req_settings.on_body = cb_req_body;
	req_settings.on_message_complete = cb_req_done;

	llhttp_settings_init(&resp_settings);
	resp_settings.on_message_begin = cb_begin;
	resp_settings.on_status = cb_status;
	resp_settings.on_header_field = cb_hfield;
	resp_settings.on_header_value = cb_hvalue;
	resp_settings.on_headers_complete = cb_resp_headers_done;
	resp_settings.on_body = cb_resp_body;
	resp_settings.on_message_complete = cb_resp_done;
}

/* ------------------------------------------------------------ state, stats */

static void set_state(struct pl_h1conn *c, enum h1_state st)
{
	if (PL_UNLIKELY(pl_log_level >= PL_LOG_DEBUG))
		pl_debug("conn %s fd %d: %s -> %s", c->peer, c->fd, state_str(c->st), state_str(st));
	c->st = st;
}

static struct pl_route_stats *req_stats(struct pl_h1conn *c)
{
	if (c->req.stats)
		return c->req.stats;
	c->req.stats = pl_worker_nrstats(c->w, c->req.listener ? c->req.listener->name : "");
	return c->req.stats;
}

static void count_status(struct pl_h1conn *c, int status)
{
	struct h1_req *r = &c->req;
	r->status = status;
	if (r->counted)
		return;
	r->counted = 1;
	pl_stats_inc(req_stats(c), c->w->id, status);
}

static void count_upstream_error(struct pl_h1conn *c)
{
	atomic_fetch_add_explicit(&c->w->upstream_errors, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&req_stats(c)->w[c->w->id].upstream_errors, 1, memory_order_relaxed);
}

/* ------------------------------------------------------- local responses */

static void wr_status_line(struct pl_wr *w, int status, const char *reason, size_t reason_len)
{
	PL_WR_LIT(w, "HTTP/1.1 ");
	pl_wr_u64(w, (uint64_t)status);
	PL_WR_LIT(w, " ");
	if (reason_len)
		pl_wr_put(w, reason, reason_len);
	else
		pl_wr_str(w, pl_rh_reason(status));
	PL_WR_LIT(w, "\r\n");
}

/* The Connection field of a final response: close, or keep-alive for an HTTP/1.0 client. */
static void wr_conn_field(struct pl_h1conn *c, struct pl_wr *w)
{
	if (c->close_after || !c->req.keepalive || c->w->draining)
		PL_WR_LIT(w, "Connection: close\r\n");
	else if (c->req.minor == 0)
		PL_WR_LIT(w, "Connection: keep-alive\r\n");
}

/*
 * Writes a complete response made here into out and moves to H1_LOCAL.
 * extra: preformatted header lines ("Name: value\r\n"...), may be NULL.
 * The request's CORS fields (r->cors_local) follow them.
 */
static void local_reply(struct pl_h1conn *c, int status, const char *extra, size_t extra_len, int with_body)
{
	struct h1_req *r = &c->req;
	const struct pl_header_mod *const *cm = &r->cors_local;
	unsigned n_cm = r->cors_local != NULL;
	char body[64];
	int blen = 0;
	if (with_body)
		blen = snprintf(body, sizeof(body), "%d %s\n", status, pl_rh_reason(status));
	/* after a malformed or refused request the stream cannot be trusted: close */
	int fatal = status == 400 || status == 405 || status == 408 || status == 413 || status == 414 ||
		    status == 431 || status == 501 || status == 505;
	if (!r->req_done || !r->keepalive || c->w->draining || fatal)
		c->close_after = 1;
	if (pl_buf_reserve(&c->out, 256 + extra_len + pl_rh_mods_size(cm, n_cm) + (size_t)blen) != 0) {
		conn_close(c);
		return;
	}
	struct pl_wr w = { pl_buf_wptr(&c->out), pl_buf_wptr(&c->out) + pl_buf_space(&c->out), 0 };
	wr_status_line(&w, status, NULL, 0);
	if (extra)
		pl_wr_put(&w, extra, extra_len);
	pl_rh_mods_emit(&w, cm, n_cm, 0);
	if (blen > 0)
		PL_WR_LIT(&w, "Content-Type: text/plain\r\n");
	PL_WR_LIT(&w, "Content-Length: ");
	pl_wr_u64(&w, (uint64_t)(blen > 0 ? blen : 0));
	PL_WR_LIT(&w, "\r\n");
	wr_conn_field(c, &w);
	PL_WR_LIT(&w, "\r\n");
	if (blen > 0 && !r->is_head)
		pl_wr_put(&w, body, (size_t)blen);
	PL_BUG_ON(w.over);
	pl_buf_commit(&c->out, (size_t)(w.p - pl_buf_wptr(&c->out)));
	count_status(c, status);
	set_state(c, H1_LOCAL);
}

/* An error answer: one log line saying why, then the response. */
static void respond_local(struct pl_h1conn *c, int status, const char *why)
{
	struct h1_req *r = &c->req;
	if (status >= 500)
		pl_warn("%s \"%s %s\" %d: %s", c->peer, r->method ? r->method : "-", r->target, status, why);
	else
		pl_info("%s \"%s %s\" %d: %s", c->peer, r->method ? r->method : "-", r->target, status, why);
	local_reply(c, status, NULL, 0, 1);
}

/* ---------------------------------------------------------- request head */

struct target {
	const char *path, *query, *authority;
	size_t path_len, query_len, authority_len;
};

static int parse_target(const char *u, size_t n, struct target *t)
{
	memset(t, 0, sizeof(*t));
	if (n == 0)
		return -1;
	if (memchr(u, '#', n))
		return -1;
	const char *p = u, *end = u + n;
	if (u[0] != '/') {
		size_t skip;
		if (n > 7 && pl_strncaseeq(u, "http://", 7))
			skip = 7;
		else if (n > 8 && pl_strncaseeq(u, "https://", 8))
			skip = 8;
		else
			return -1;
		const char *a = u + skip;
		const char *q = a;
		while (q < end && *q != '/' && *q != '?')
			q++;
		t->authority = a;
		t->authority_len = (size_t)(q - a);
		if (t->authority_len == 0 || memchr(a, '@', t->authority_len))
			return -1;
		p = q;
	}
	const char *qm = memchr(p, '?', (size_t)(end - p));
	if (p == end || *p == '?') {
		t->path = "/";
		t->path_len = 1;
	} else {
		t->path = p;
		t->path_len = (size_t)((qm ? qm : end) - p);
	}
	if (qm) {
		t->query = qm + 1;
		t->query_len = (size_t)(end - qm - 1);
	}
	return 0;
}

static void send_redirect(struct pl_h1conn *c, const struct pl_redirect *rd, const struct target *t)
{
	struct h1_req *r = &c->req;
	const char *err = NULL;
	size_t len;
	char *loc = pl_rh_location(rd, &r->entry->match, c->tls != NULL, S.host, S.host_len, c->ls->port, t->path,
				   t->path_len, t->query, t->query_len, "Location: ", "\r\n", &len, &err);
	if (!loc) {
		respond_local(c, 500, err);
		return;
	}
	int status = rd->status_code ? rd->status_code : 302;
	pl_debug("%s \"%s %s\" %d redirect", c->peer, r->method, r->target, status);
	local_reply(c, status, loc, len, 0);
	free(loc);
}

/* A CORS preflight on a rule with the CORS filter: answered here, never forwarded. */
static void send_preflight(struct pl_h1conn *c, const struct pl_cors *cors, const struct pl_req_view *view)
{
	struct h1_req *r = &c->req;
	int status = pl_cors_preflight(&r->cors, cors, view);
	/* the preflight's fields overwrite the actual ones in r->cors: local_reply writes them */
	r->cors_local = &r->cors.mod;
	if (status == 200)
		pl_debug("%s \"%s %s\" 200 CORS preflight", c->peer, r->method, r->target);
	else
		pl_info("%s \"%s %s\" %d: CORS preflight from an origin the rule does not allow", c->peer, r->method,
			r->target, status);
	local_reply(c, status, NULL, 0, status != 200);
}

/*
 * Writes the request head for the backend into up_out. Returns its length,
 * or -1 (the reason is logged by the caller's 500).
 */
static ssize_t emit_req_head(struct pl_h1conn *c, const struct target *t, const struct pl_rh_filters *f,
			     const struct pl_hdr *host_hdr, size_t head_len, const char **err)
{
	struct h1_req *r = &c->req;
	const struct pl_rewrite *rw = f->rewrite;
	size_t need = head_len + 256 + INET6_ADDRSTRLEN + pl_rh_mods_size(f->req_mods, f->n_req_mods) + t->query_len;
	need += t->path_len + pl_rh_path_extra(f);
	if (rw && rw->hostname)
		need += strlen(rw->hostname);
	if (t->authority)
		need += t->authority_len;
	if (pl_buf_reserve(&c->up_out, need) != 0) {
		*err = "request head too large for the connection budget";
		return -1;
	}
	char *start = pl_buf_wptr(&c->up_out);
	struct pl_wr w = { start, start + pl_buf_space(&c->up_out), 0 };

	pl_wr_str(&w, r->method);
	PL_WR_LIT(&w, " ");
	int n = pl_rh_write_target(f, &r->entry->match, t->path, t->path_len, t->query, t->query_len, w.p,
				   (size_t)(w.end - w.p));
	if (n < 0) {
		*err = "rewritten path too long";
		return -1;
	}
	w.p += n;
	PL_WR_LIT(&w, " HTTP/1.1\r\nHost: ");
	const char *av;
	size_t al;
	if (t->authority)
		pl_rh_authority(f, t->authority, t->authority_len, &av, &al);
	else
		pl_rh_authority(f, host_hdr ? host_hdr->value : NULL, host_hdr ? host_hdr->value_len : 0, &av, &al);
	if (al)
		pl_wr_put(&w, av, al);
	PL_WR_LIT(&w, "\r\n");

	unsigned n_xff = 0;
	for (uint32_t i = 0; i < S.n; i++) {
		const struct pl_hdr *h = &S.hdrs[i];
		switch (S.kind[i]) {
		case H_OTHER:
			break;
		case H_UPGRADE:
			if (r->upgrade) {
				pl_wr_hdr(&w, h->name, h->name_len, h->value, h->value_len);
				continue;
			}
			continue;
		case H_XFF:
			n_xff++;
			continue;
		default:
			continue;
		}
		if (S.n_ctok && in_ctok(h->name, h->name_len))
			continue;
		if (f->n_req_mods && pl_rh_mods_hit(f->req_mods, f->n_req_mods, h->name, h->name_len))
			continue;
		pl_wr_hdr(&w, h->name, h->name_len, h->value, h->value_len);
	}
	if (f->n_req_mods)
		pl_rh_mods_emit(&w, f->req_mods, f->n_req_mods, 1);
	PL_WR_LIT(&w, "X-Forwarded-For: ");
	for (uint32_t i = 0; n_xff && i < S.n; i++) {
		if (S.kind[i] != H_XFF)
			continue;
		pl_wr_put(&w, S.hdrs[i].value, S.hdrs[i].value_len);
		PL_WR_LIT(&w, ", ");
	}
	pl_rh_xff_tail(&w, c->peer, c->tls != NULL);
	if (c->rp.flags & F_CONTENT_LENGTH) {
		PL_WR_LIT(&w, "Content-Length: ");
		pl_wr_u64(&w, c->rp.content_length);
		PL_WR_LIT(&w, "\r\n");
	} else if (r->chunked) {
		PL_WR_LIT(&w, "Transfer-Encoding: chunked\r\n");
	}
	if (r->upgrade)
		PL_WR_LIT(&w, "Connection: upgrade\r\n");
	PL_WR_LIT(&w, "\r\n");
	if (w.over) {
		*err = "request head does not fit";
		return -1;
	}
	size_t len = (size_t)(w.p - start);
	pl_buf_commit(&c->up_out, len);
	return (ssize_t)len;
}

static void up_cb(struct pl_upconn *u, int ev);

static void connect_failed(struct pl_h1conn *c, const char *why);

/* Attaches a backend connection for the routed request (fresh: no pooled one). */
static void dispatch(struct pl_h1conn *c, int fresh)
{
	struct h1_req *r = &c->req;
	int err = 0;
	struct pl_upconn *u = pl_up_connect(c->w, r->cluster, r->ep, fresh, up_cb, c, &err);
	if (!u) {
		char why[160];
		snprintf(why, sizeof(why), "connect to %s (%s) failed: %s", r->ep->text, r->cluster->name,
			 strerror(-err));
		connect_failed(c, why);
		return;
	}
	PL_BUG_ON(u->in.data != NULL);
	u->in.budget = &c->budget;
	c->up = u;
	c->up_wblocked = 0;
	c->up_eof = 0;
	c->up_sent = 0;
	r->resp_phase = RP_HEAD;
	r->resp_any = 0;
	c->rscanned = 0;
	pl_h1scan_init(&c->rscan, (uint32_t)c->w->cfg->max_request_line, MAX_RESP_HEAD);
	r->conn_start = ev_now(c->w->loop);
}

/*
 * After a failed connect (nothing of the request reached a backend): moves
 * the request to one other endpoint of the cluster, once (an endpoint list
 * is often a little stale). 1 if it did; the caller sends the request again.
 */
static int retry_endpoint(struct pl_h1conn *c, const char *why)
{
	struct h1_req *r = &c->req;
	if (r->ep_retried || r->cluster->n_eps < 2)
		return 0;
	const struct pl_endpoint *ep = pl_retry_endpoint(r->cluster, r->ep);
	if (ep == r->ep)
		return 0;
	pl_info("%s \"%s %s\": %s; trying %s", c->peer, r->method, r->target, why, ep->text);
	count_upstream_error(c);
	r->ep_retried = 1;
	r->ep = ep;
	return 1;
}

/* Connecting failed: another endpoint, else 502. */
static void connect_failed(struct pl_h1conn *c, const char *why)
{
	struct h1_req *r = &c->req;
	if (c->up) {
		pl_up_close(c->up);
		c->up = NULL;
	}
	if (!r->rt.replay && retry_endpoint(c, why)) {
		c->up_sent = 0;
		dispatch(c, 0);
		return;
	}
	r->retry_ok = 0;
	conn_error(c, 502, why);
}

/*
 * Starts the route's mirrors with the backend head just written to up_out
 * (hl bytes) and the request body when it is already here whole (head_len:
 * the client's head at the front of in).
 */
static void start_mirrors(struct pl_h1conn *c, const struct pl_rh_filters *f, size_t hl, size_t head_len)
{
	struct h1_req *r = &c->req;
	const char *body = NULL;
	size_t blen = 0;
	int ok = 1;
	if (!r->req_done) {
		ok = 0;
		uint64_t cl = c->rp.content_length;
		if ((c->rp.flags & F_CONTENT_LENGTH) && cl <= PL_MIRROR_MAX_BODY &&
		    pl_buf_size(&c->in) - head_len >= cl) {
			body = pl_buf_rptr(&c->in) + head_len;
			blen = (size_t)cl;
			ok = 1;
		}
	}
	for (unsigned i = 0; ok && i < f->n_mirrors; i++)
		pl_mirror_start(c->w, f->mirrors[i], pl_buf_rptr(&c->up_out), hl, body, blen);
	if (!ok)
		pl_debug("%s \"%s %s\": body not mirrored (too large or streaming): mirror skipped", c->peer, r->method,
			 r->target);
}

static void h2_start(struct pl_h1conn *c, const struct target *t, const struct pl_rh_filters *f,
		     const struct pl_hdr *host_hdr, size_t head_len);
static int upgrade_h2c_only(void);

/*
 * "Upgrade: h2c" (RFC 7540 3.2) on a plaintext connection: a request without
 * a body whose Connection field names HTTP2-Settings and that carries exactly
 * one HTTP2-Settings field hands the connection to h2.c, which answers 101
 * and serves the request as stream 1. 1 if it did (c is closed); 0: the
 * request goes on as HTTP/1.1 and the upgrade is ignored (RFC 9110 7.8), as
 * it is over TLS and for requests with a body (their body would have to be
 * read before the switch, as nghttp2-based servers also refuse to do).
 */
static int h2c_upgrade(struct pl_h1conn *c, const struct target *t, const struct pl_hdr *host_hdr, size_t head_len)
{
	struct h1_req *r = &c->req;
	if (c->tls || r->minor < 1 || !r->req_done || c->w->draining || !in_ctok("http2-settings", 14))
		return 0;
	const struct pl_hdr *set = NULL;
	for (uint32_t i = 0; i < S.n; i++) {
		const struct pl_hdr *h = &S.hdrs[i];
		if (h->name_len != 14 || !pl_strncaseeq(h->name, "http2-settings", 14))
			continue;
		if (set)
			return 0;
		set = h;
	}
	if (!set)
		return 0;
	struct pl_h2_upreq rq = {
		.method = r->method,
		.path = t->path, .path_len = t->path_len, .query = t->query, .query_len = t->query_len,
		.authority = t->authority ? t->authority : host_hdr ? host_hdr->value : "",
		.authority_len = t->authority ? t->authority_len : host_hdr ? host_hdr->value_len : 0,
		.hdrs = S.hdrs, .n_hdrs = S.n,
		.settings = set->value, .settings_len = set->value_len,
	};
	if (!rq.authority_len)
		return 0;   /* an empty Host: HTTP/2 has no empty :authority */
	int rc = pl_h2_upgrade(c->w, c->ls, c->fd, c->peer, &rq, pl_buf_rptr(&c->in) + head_len,
			       pl_buf_size(&c->in) - head_len);
	if (rc != 0) {
		pl_debug("%s \"%s %s\": Upgrade: h2c ignored: %s", c->peer, r->method, r->target,
			 rc == -EINVAL ? "invalid HTTP2-Settings" : strerror(-rc));
		return 0;
	}
	c->fd = -1;   /* now h2's */
	ev_io_stop(c->w->loop, &c->rio);
	ev_io_stop(c->w->loop, &c->wio);
	conn_close(c);
	return 1;
}

/* ---------------------------------------------------------- route retries */

/*
 * Route retries (retry.h): while r->rt.replay holds, up_out keeps every byte
 * of the backend request (c->up_sent of them sent) until the final response
 * head says whether the request goes out again.
 */
static void retry_setup(struct pl_h1conn *c, size_t head)
{
	struct h1_req *r = &c->req;
	int has_len = r->req_done || (c->rp.flags & F_CONTENT_LENGTH);
	pl_retry_start(&r->rt, r->rule, r->start, r->upgrade, has_len, r->req_done ? 0 : c->rp.content_length, head);
}

/* The request will not be sent again: the bytes kept of it (those already sent) are let go. */
static void replay_release(struct pl_h1conn *c)
{
	c->req.rt.replay = 0;
	if (!c->req.retry_ok && c->up_sent) {
		pl_buf_consume(&c->up_out, c->up_sent);
		c->up_sent = 0;
	}
}

/*
 * Room for more body in up_out while the request is kept: it grows (within
 * the connection's budget) instead of draining. 0 when the kept bytes
 * outgrow the bound or the budget: the caller stops keeping them.
 */
static int replay_room(struct pl_h1conn *c)
{
	struct h1_req *r = &c->req;
	if (!pl_retry_fits(&r->rt, pl_buf_size(&c->up_out)))
		return 0;
	if (pl_buf_space(&c->up_out) >= 2 * BODY_MARGIN)
		return 1;
	return pl_buf_reserve(&c->up_out, PL_BUF_STD) == 0;
}

/*
 * The attempt failed (status: the backend's, or 0 for a connection error)
 * before anything of its response went to the client: when the route's
 * retry policy allows another, the backend is let go and the request waits
 * out the backoff (T_RETRY). 1 if so.
 */
static int retry_later(struct pl_h1conn *c, int status, const char *why)
{
	struct h1_req *r = &c->req;
	if (c->st != H1_PROXY || r->resp_started || !r->rt.replay)
		return 0;
	double delay = pl_retry_next(&r->rt, r->rule, status, ev_now(c->w->loop), req_stats(c), c->w->id);
	if (delay < 0)
		return 0;
	backend_drop(c);
	c->up_sent = 0;
	r->rule_deadline = r->rt.req_deadline;   /* no attempt runs: only the request timeout */
	pl_debug("%s \"%s %s\": %s; retry %u/%u in %.0f ms", c->peer, r->method, r->target, why, r->rt.n,
		 r->rule->retry->attempts, delay * 1000.0);
	return 1;
}

/*
 * A final response head with status from the backend (h1) or h2c backend:
 * 1 if the route retries it (the caller drops the response), else the kept
 * request is let go and the response goes on to the client.
 */
static int retry_status(struct pl_h1conn *c, int status, const char *backend)
{
	char why[64];
	if (status < 200 || !c->req.rt.replay || c->req.resp_started)
		return 0;
	snprintf(why, sizeof(why), "%s answered %d", backend, status);
	if (retry_later(c, status, why))
		return 1;
	replay_release(c);
	return 0;
}

/* The backoff is over: the kept request goes out again, to another endpoint where there is one. */
static void retry_fire(struct pl_h1conn *c)
{
	struct h1_req *r = &c->req;
	ev_tstamp now = ev_now(c->w->loop);
	r->rt.at = 0;
	r->ep = pl_retry_endpoint(r->cluster, r->ep);
	r->rule_deadline = pl_retry_attempt_deadline(&r->rt, r->rule, now);
	if (r->req_done)
		r->req_done_at = now;   /* the proxy's backend timeout counts per attempt too */
	r->resp_any = 0;
	c->up_sent = 0;
	if (r->cluster->app_proto == PL_APP_H2C)
		r->h2_dispatch = 1;
	else
		dispatch(c, 0);
}

/*
 * A complete request head of head_len bytes is at the front of c->in: parse,
 * validate, route, filter, and either answer locally or start proxying. The
 * caller consumes the head bytes afterwards.
 */
static void handle_head(struct pl_h1conn *c, size_t head_len)
{
	struct pl_worker *w = c->w;
	struct h1_req *r = &c->req;
	const char *p = pl_buf_rptr(&c->in);
	ev_tstamp now = ev_now(w->loop);

	r->start = now;
	r->keepalive = 1;
	r->minor = 1;
	llhttp_init(&c->rp, HTTP_REQUEST, &req_settings);
	c->rp.data = c;
	c->rp_hdone = c->rp_done = 0;
	S.n = 0;
	S.url = NULL;
	llhttp_errno_t e = llhttp_execute(&c->rp, p, head_len);
	size_t used = head_len;
	if (e == HPE_PAUSED) {
		used = (size_t)(llhttp_get_error_pos(&c->rp) - p);
		llhttp_resume(&c->rp);
	} else if (e != HPE_OK) {
		char why[160];
		snprintf(why, sizeof(why), "invalid request: %s (%s)", llhttp_get_error_reason(&c->rp),
			 llhttp_errno_name(e));
		r->keepalive = 0;
		const char *eol = memchr(p, '\n', head_len);
		if (c->requests == 0 && !memmem(p, eol ? (size_t)(eol - p) : head_len, " HTTP/", 6)) {
			/* not an HTTP/1 request line at all (e.g. a broken HTTP/2
			 * preface): such a peer gets no HTTP/1 answer, just a close */
			pl_info("%s: not an HTTP request (%s); closing", c->peer, why);
			conn_close(c);
			return;
		}
		respond_local(c, e == HPE_USER ? 431 : 400, why);
		return;
	}
	if (S.url) {
		size_t tl = PL_MIN(S.url_len, sizeof(r->target) - 1);
		memcpy(r->target, S.url, tl);
		r->target[tl] = '\0';
	}
	r->method = llhttp_method_name((llhttp_method_t)c->rp.method);
	r->minor = c->rp.http_minor;
	if (!c->rp_hdone || used != head_len) {
		r->keepalive = 0;
		respond_local(c, 400, "malformed request head");
		return;
	}
	r->req_done = c->rp_done;
	r->keepalive = (uint8_t)llhttp_should_keep_alive(&c->rp);
	if (c->rp.http_major != 1) {
		r->keepalive = 0;
		respond_local(c, 505, "HTTP version not supported");
		return;
	}
	r->is_head = c->rp.method == HTTP_HEAD;
	r->chunked = (c->rp.flags & F_CHUNKED) != 0;
	if (c->rp.method == HTTP_CONNECT) {
		r->keepalive = 0;
		respond_local(c, 405, "CONNECT is not supported");
		return;
	}
	classify_headers();
	/* Upgrade: h2c concerns this hop only (RFC 7540 3.2): taken below or ignored, never forwarded */
	int h2c_up = c->rp.upgrade && upgrade_h2c_only();
	r->upgrade = c->rp.upgrade && !h2c_up && r->minor >= 1;
	if (c->rp.upgrade && !h2c_up && !r->upgrade) {
		r->keepalive = 0;
		respond_local(c, 400, "upgrade from HTTP/1.0");
		return;
	}
	if (!r->req_done && r->upgrade) {
		respond_local(c, 400, "upgrade request with a body");
		return;
	}
	if ((c->rp.flags & F_TRANSFER_ENCODING) && !te_is_chunked_only()) {
		r->keepalive = 0;
		respond_local(c, 501, "unsupported transfer-coding");
		return;
	}

	struct target t;
	if (parse_target(S.url, S.url_len, &t) != 0) {
		respond_local(c, 400, "unsupported request target");
		return;
	}
	if (pl_rh_has_dot_segment(t.path, t.path_len)) {
		respond_local(c, 400, "dot-segment in path");
		return;
	}
	const struct pl_hdr *host_hdr = NULL;
	for (uint32_t i = 0; i < S.n; i++) {
		if (S.kind[i] != H_HOST)
			continue;
		if (host_hdr) {
			respond_local(c, 400, "multiple Host headers");
			return;
		}
		host_hdr = &S.hdrs[i];
	}
	int hrc = 0;
	if (t.authority)
		hrc = pl_rh_parse_host(t.authority, t.authority_len, S.host, sizeof(S.host));
	else if (host_hdr)
		hrc = pl_rh_parse_host(host_hdr->value, host_hdr->value_len, S.host, sizeof(S.host));
	else if (r->minor >= 1)
		hrc = -2;
	else
		S.host[0] = '\0';
	if (hrc == -2) {
		respond_local(c, 400, "missing Host header");
		return;
	}
	if (hrc < 0) {
		respond_local(c, 400, "invalid Host header");
		return;
	}
	S.host_len = (uint32_t)hrc;
	if (h2c_up && h2c_upgrade(c, &t, host_hdr, head_len))
		return;

	struct pl_req_view view = {
		.method = r->method, .method_len = (uint32_t)strlen(r->method),
		.path = t.path, .path_len = (uint32_t)t.path_len,
		.query = t.query, .query_len = (uint32_t)t.query_len,
		.host = S.host, .host_len = S.host_len,
		.hdrs = S.hdrs, .n_hdrs = S.n,
	};
	struct pl_rh_route rt;
	int how = pl_rh_route(w, c->ls->bind, c->tls ? pl_tls_sni(c->tls) : NULL, &view, now, &rt);
	r->wt = rt.wt;
	r->listener = rt.listener;
	r->entry = rt.entry;
	r->rule = rt.rule;
	if (r->rule)
		r->stats = r->rule->stats;
	r->cors_local = pl_rh_cors_actual(&rt.f, &view, &r->cors);
	memcpy(r->resp_mods, rt.f.resp_mods, sizeof(r->resp_mods));
	r->n_resp_mods = rt.f.n_resp_mods;
	if (how == PL_RH_LOCAL) {
		if (rt.close)
			r->keepalive = 0;
		respond_local(c, rt.status, rt.why);
		return;
	}
	if (how == PL_RH_CORS) {
		send_preflight(c, rt.f.cors, &view);
		return;
	}
	const struct pl_rh_filters *f = &rt.f;
	if (how == PL_RH_REDIRECT) {
		send_redirect(c, f->redirect, &t);
		return;
	}
	r->cluster = rt.cluster;
	r->ep = rt.ep;
	r->rule_deadline = rt.rule_deadline;
	if (r->cluster->app_proto == PL_APP_H2C) {
		h2_start(c, &t, f, host_hdr, head_len);
		return;
	}

	/* the backend's request head */
	PL_BUG_ON(!pl_buf_empty(&c->up_out));
	const char *err = NULL;
	ssize_t hl = emit_req_head(c, &t, f, host_hdr, head_len, &err);
	if (hl < 0) {
		respond_local(c, 500, err);
		return;
	}
	if (f->n_mirrors && !r->upgrade)
		start_mirrors(c, f, (size_t)hl, head_len);
	/* a request without a body that fails on a reused connection can be replayed */
	r->retry_ok = r->req_done && !r->upgrade && c->rp.method != HTTP_POST && c->rp.method != HTTP_PATCH;
	retry_setup(c, (size_t)hl);
	if (r->req_done)
		r->req_done_at = now;
	set_state(c, H1_PROXY);
	dispatch(c, 0);
}

/* ----------------------------------------------------- response handling */

static void tunnel_start(struct pl_h1conn *c);

/* Writes the client's response head for the backend head in S / c->sp. */
static int emit_resp_head(struct pl_h1conn *c, int status, int interim, size_t head_len)
{
	struct h1_req *r = &c->req;
	size_t need = head_len + 192 + pl_rh_mods_size(r->resp_mods, r->n_resp_mods);
	if (pl_buf_reserve(&c->out, need) != 0)
		return -1;
	char *start = pl_buf_wptr(&c->out);
	struct pl_wr w = { start, start + pl_buf_space(&c->out), 0 };
	wr_status_line(&w, status, S.reason, S.reason_len);
	int upgrade = status == 101;
	for (uint32_t i = 0; i < S.n; i++) {
		const struct pl_hdr *h = &S.hdrs[i];
		switch (S.kind[i]) {
		case H_OTHER: case H_HOST: case H_XFF: case H_XFP:
			break;
		case H_UPGRADE:
			if (upgrade)
				pl_wr_hdr(&w, h->name, h->name_len, h->value, h->value_len);
			continue;
		default:
			continue;
		}
		if (S.n_ctok && in_ctok(h->name, h->name_len))
			continue;
		if (r->n_resp_mods && pl_rh_mods_hit(r->resp_mods, r->n_resp_mods, h->name, h->name_len))
			continue;
		pl_wr_hdr(&w, h->name, h->name_len, h->value, h->value_len);
	}
	if (!interim && r->n_resp_mods)
		pl_rh_mods_emit(&w, r->resp_mods, r->n_resp_mods, 0);
	if (!interim && !upgrade) {
		if ((c->sp.flags & F_CONTENT_LENGTH) && status != 204) {
			PL_WR_LIT(&w, "Content-Length: ");
			pl_wr_u64(&w, c->sp.content_length);
			PL_WR_LIT(&w, "\r\n");
		} else if (r->resp_chunk) {
			PL_WR_LIT(&w, "Transfer-Encoding: chunked\r\n");
		}
		wr_conn_field(c, &w);
	}
	if (upgrade)
		PL_WR_LIT(&w, "Connection: upgrade\r\n");
	PL_WR_LIT(&w, "\r\n");
	if (w.over)
		return -1;
	pl_buf_commit(&c->out, (size_t)(w.p - start));
	return 0;
}

static void resp_complete(struct pl_h1conn *c)
{
	struct h1_req *r = &c->req;
	struct pl_upconn *u = c->up;
	if (r->resp_chunk) {
		if (pl_buf_reserve(&c->out, 5) != 0) {
			conn_close(c);
			return;
		}
		pl_buf_put(&c->out, "0\r\n\r\n", 5);
	}
	r->resp_done = 1;
	int reusable = llhttp_should_keep_alive(&c->sp) && r->req_done && pl_buf_empty(&c->up_out) &&
		       !c->up_eof && !r->upgrade;
	c->up = NULL;
	pl_up_release(u, reusable);
	if (!r->req_done)
		c->close_after = 1;   /* the rest of the request body will not be read */
}

/* Processes a complete response head of head_len bytes at the front of u->in. */
static void resp_head(struct pl_h1conn *c, size_t head_len)
{
	struct h1_req *r = &c->req;
	struct pl_upconn *u = c->up;
	const char *p = pl_buf_rptr(&u->in);
	llhttp_init(&c->sp, HTTP_RESPONSE, &resp_settings);
	c->sp.data = c;
	c->sp_hdone = c->sp_done = 0;
	S.n = 0;
	S.reason = NULL;
	S.reason_len = 0;
	llhttp_errno_t e = llhttp_execute(&c->sp, p, head_len);
	size_t used = head_len;
	if (e == HPE_PAUSED) {
		used = (size_t)(llhttp_get_error_pos(&c->sp) - p);
		llhttp_resume(&c->sp);
	} else if (e != HPE_OK) {
		char why[200];
		snprintf(why, sizeof(why), "invalid response from %s: %s", u->peer, llhttp_get_error_reason(&c->sp));
		upstream_fail(c, 502, why);
		return;
	}
	if (!c->sp_hdone || used != head_len || c->sp.http_major != 1) {
		upstream_fail(c, 502, "malformed response head from backend");
		return;
	}
	classify_headers();
	int status = c->sp.status_code;
	if ((c->sp.flags & F_TRANSFER_ENCODING) && !te_is_chunked_only()) {
		upstream_fail(c, 502, "unsupported transfer-coding from backend");
		return;
	}
	if (retry_status(c, status, "backend"))
		return;
	if (status == 101) {
		if (!r->upgrade) {
			upstream_fail(c, 502, "unexpected 101 from backend");
			return;
		}
		if (emit_resp_head(c, status, 0, head_len) != 0) {
			upstream_fail(c, 502, "response head too large");
			return;
		}
		pl_buf_consume(&u->in, head_len);
		count_status(c, status);
		r->resp_started = 1;
		tunnel_start(c);
		return;
	}
	if (status < 200) {
		/* interim response: relayed to HTTP/1.1 clients, then wait for the final one */
		if (r->minor >= 1 && emit_resp_head(c, status, 1, head_len) != 0) {
			upstream_fail(c, 502, "response head too large");
			return;
		}
		pl_buf_consume(&u->in, head_len);
		c->rscanned = 0;
		pl_h1scan_init(&c->rscan, (uint32_t)c->w->cfg->max_request_line, MAX_RESP_HEAD);
		return;
	}
	int bodyless = c->sp_done;
	if (!bodyless && !(c->sp.flags & F_CONTENT_LENGTH)) {
		/* chunked or until EOF: re-chunk for HTTP/1.1, close-delimit for 1.0 */
		if (r->minor >= 1)
			r->resp_chunk = 1;
		else
			c->close_after = 1;
	}
	if (r->upgrade)
		c->close_after = 1;   /* the request parser is past an upgrade: no next request */
	if (emit_resp_head(c, status, 0, head_len) != 0) {
		upstream_fail(c, 502, "response head too large");
		return;
	}
	pl_buf_consume(&u->in, head_len);
	count_status(c, status);
	r->resp_started = 1;
	r->resp_phase = RP_BODY;
	if (c->sp_done)
		resp_complete(c);
}

/* Parses what the backend sent; returns 1 if anything changed. */
static int step_resp(struct pl_h1conn *c)
{
	struct h1_req *r = &c->req;
	int progress = 0;
	while (c->st == H1_PROXY && c->up && !r->resp_done) {
		struct pl_upconn *u = c->up;
		if (r->resp_phase == RP_HEAD) {
			size_t avail = pl_buf_size(&u->in);
			if (avail > c->rscanned) {
				size_t used = 0;
				const char *p = pl_buf_rptr(&u->in);
				int rc = pl_h1scan_feed(&c->rscan, p + c->rscanned, avail - c->rscanned, &used);
				if (rc == PL_H1SCAN_MORE) {
					c->rscanned = avail;
				} else if (rc < 0) {
					char why[200];
					snprintf(why, sizeof(why), "invalid response head from %s: %s", u->peer,
						 pl_h1scan_reason(&c->rscan));
					upstream_fail(c, 502, why);
					return 1;
				} else {
					resp_head(c, c->rscanned + used);
					progress = 1;
					continue;
				}
			}
			if (c->up_eof) {
				conn_error(c, 502, "backend closed the connection in the response head");
				return 1;
			}
			return progress;
		}
		if (!pl_buf_empty(&u->in)) {
			if (!c->out.data && pl_buf_reserve(&c->out, PL_BUF_STD) != 0) {
				conn_close(c);
				return 1;
			}
			if (pl_buf_space(&c->out) < 2 * BODY_MARGIN)
				pl_buf_compact(&c->out);
			size_t space = pl_buf_space(&c->out);
			if (space < 2 * BODY_MARGIN)
				return progress;   /* client is slow: backpressure */
			const char *p = pl_buf_rptr(&u->in);
			size_t n = PL_MIN(pl_buf_size(&u->in), space - BODY_MARGIN);
			llhttp_errno_t e = llhttp_execute(&c->sp, p, n);
			size_t used = n;
			if (e == HPE_PAUSED) {
				used = (size_t)(llhttp_get_error_pos(&c->sp) - p);
				llhttp_resume(&c->sp);
			} else if (e != HPE_OK) {
				pl_warn("%s \"%s %s\": invalid response body from %s: %s; aborting", c->peer, r->method,
					r->target, u->peer, llhttp_get_error_reason(&c->sp));
				count_upstream_error(c);
				conn_close(c);
				return 1;
			}
			pl_buf_consume(&u->in, used);
			progress = 1;
			if (c->sp_done) {
				if (!pl_buf_empty(&u->in))
					c->up_eof = 1;    /* bytes after the response: do not reuse */
				resp_complete(c);
				return 1;
			}
			continue;
		}
		if (c->up_eof) {
			if (llhttp_message_needs_eof(&c->sp)) {
				llhttp_finish(&c->sp);
				if (c->sp_done) {
					resp_complete(c);
					return 1;
				}
			}
			pl_warn("%s \"%s %s\": backend %s closed the connection mid-response; aborting", c->peer,
				r->method, r->target, u->peer);
			count_upstream_error(c);
			conn_close(c);
			return 1;
		}
		return progress;
	}
	return progress;
}

/* Feeds request body bytes from in to up_out; returns 1 if anything changed. */
static int step_req_body(struct pl_h1conn *c)
{
	struct h1_req *r = &c->req;
	int progress = 0;
	while (c->st == H1_PROXY && !r->req_done && (c->up || c->h2u) && !pl_buf_empty(&c->in)) {
		if (!c->up_out.data && pl_buf_reserve(&c->up_out, PL_BUF_STD) != 0) {
			conn_close(c);
			return 1;
		}
		if (r->rt.replay && !replay_room(c)) {
			pl_debug("%s \"%s %s\": request body over %u bytes: not kept for retries", c->peer, r->method,
				 r->target, (unsigned)PL_RETRY_MAX_BODY);
			replay_release(c);
		}
		if (pl_buf_space(&c->up_out) < 2 * BODY_MARGIN)
			pl_buf_compact(&c->up_out);
		size_t space = pl_buf_space(&c->up_out);
		if (space < 2 * BODY_MARGIN)
			break;   /* backend is slow: backpressure */
		const char *p = pl_buf_rptr(&c->in);
		size_t n = PL_MIN(pl_buf_size(&c->in), space - BODY_MARGIN);
		llhttp_errno_t e = llhttp_execute(&c->rp, p, n);
		size_t used = n;
		if (e == HPE_PAUSED) {
			used = (size_t)(llhttp_get_error_pos(&c->rp) - p);
			llhttp_resume(&c->rp);
		} else if (e != HPE_OK) {
			char why[160];
			snprintf(why, sizeof(why), "invalid request body: %s", llhttp_get_error_reason(&c->rp));
			r->keepalive = 0;
			backend_drop(c);
			if (r->resp_started) {
				pl_info("%s \"%s %s\": %s; aborting", c->peer, r->method, r->target, why);
				conn_close(c);
			} else {
				respond_local(c, 400, why);
			}
			return 1;
		}
		pl_buf_consume(&c->in, used);
		progress = 1;
		if (c->rp_done) {
			r->req_done = 1;
			r->req_done_at = ev_now(c->w->loop);
		}
	}
	if (progress && c->st == H1_PROXY && c->h2u)
		pl_h2up_resume(c->h2u);   /* more body, or its end, for the stream */
	return progress;
}

/* ------------------------------------------------------- h2c backends */

/*
 * A request routed to a cluster whose port says appProtocol
 * kubernetes.io/h2c travels as a stream of the worker's h2c session pool
 * (h2up.h): its head becomes HTTP/2 fields (pl_rh_h2_head), its decoded body
 * is pulled from up_out by h2up (read_body), and the response comes back
 * through the callbacks below into out as HTTP/1.1. The callbacks run inside
 * h2up's watchers: they fill buffers and set flags, and kick() runs the
 * connection once they are over.
 */

static void kick(struct pl_h1conn *c)
{
	if (c->st != H1_CLOSED)
		ev_feed_event(c->w->loop, &c->wio, EV_WRITE);
}

static void h2nv_free(struct pl_h1conn *c)
{
	free(c->h2nv);
	c->h2nv = NULL;
	c->h2n = 0;
}

/* Gives up the backend, whichever kind it is: no callback of it follows. */
static void backend_drop(struct pl_h1conn *c)
{
	if (c->up) {
		pl_up_close(c->up);
		c->up = NULL;
	}
	if (c->h2u) {
		pl_h2up_detach(c->h2u);
		c->h2u = NULL;
	}
	c->h2_owed = 0;
}

/* Nothing of the request reached the h2c backend: another endpoint (at the next run), else 502. */
static void h2_unsent(struct pl_h1conn *c, const char *why)
{
	if (c->h2nv && c->req.rt.replay) {
		if (retry_later(c, 0, why)) {
			kick(c);
			return;
		}
	} else if (c->h2nv && retry_endpoint(c, why)) {
		c->req.h2_dispatch = 1;
		kick(c);
		return;
	}
	h2nv_free(c);
	upstream_fail(c, 502, why);
}

/*
 * The h2c backend's connect timeout expired: answered as on_timer() answers
 * T_CONNECT for an HTTP/1.1 backend: no other endpoint, the route's retry
 * if it has one, else 504.
 */
static void h2_timed_out(struct pl_h1conn *c, const char *why)
{
	c->req.retry_ok = 0;
	if (c->h2nv && c->req.rt.replay && retry_later(c, 0, why))
		return;
	h2nv_free(c);
	upstream_fail(c, 504, why);
}

/* Response fields written to the client: not framing, connection-specific or Host. */
static int resp_field_kept(const char *n, size_t nl)
{
	int k = hdr_kind(n, nl);
	return k == H_OTHER || k == H_XFF || k == H_XFP;
}

/*
 * Writes the HTTP/1.1 head of an h2c backend's response head into out
 * (interim ones only for HTTP/1.1 clients) and sets the framing toward the
 * client: the backend's Content-Length, else chunked (HTTP/1.1) or
 * close-delimited (HTTP/1.0). Every field is checked before it is copied:
 * HTTP/2 can carry bytes (CR, LF, NUL) that would split an HTTP/1.1 head.
 * Returns NULL, or why the response is refused (nothing of it was written).
 */
static const char *h2_resp_head(struct pl_h1conn *c, int status, const nghttp2_nv *nv, size_t n, int end_stream)
{
	struct h1_req *r = &c->req;
	int interim = status < 200;
	if (interim && r->minor == 0)
		return NULL;
	size_t need = 192 + pl_rh_mods_size(r->resp_mods, r->n_resp_mods);
	int has_cl = 0;
	uint64_t cl = 0;
	for (size_t i = 0; i < n; i++) {
		const char *hn = (const char *)nv[i].name, *hv = (const char *)nv[i].value;
		if (!pl_rh_field_ok(nv[i].name, nv[i].namelen, nv[i].value, nv[i].valuelen))
			return "invalid response field from the h2c backend";
		need += nv[i].namelen + nv[i].valuelen + 4;
		if (hdr_kind(hn, nv[i].namelen) == H_CL) {
			uint64_t v;
			if (pl_parse_u64(hv, nv[i].valuelen, &v) != 0 || (has_cl && v != cl))
				return "invalid content-length from the h2c backend";
			has_cl = 1;
			cl = v;
		}
	}
	int bodyless = end_stream || r->is_head || status == 204 || status == 304;
	if (!interim && !bodyless && !has_cl) {
		if (r->minor >= 1)
			r->resp_chunk = 1;
		else
			c->close_after = 1;
	}
	if (pl_buf_reserve(&c->out, need) != 0)
		return "response head too large";
	char *start = pl_buf_wptr(&c->out);
	struct pl_wr w = { start, start + pl_buf_space(&c->out), 0 };
	wr_status_line(&w, status, NULL, 0);
	for (size_t i = 0; i < n; i++) {
		const char *hn = (const char *)nv[i].name;
		size_t nl = nv[i].namelen;
		if (!resp_field_kept(hn, nl))
			continue;
		if (r->n_resp_mods && pl_rh_mods_hit(r->resp_mods, r->n_resp_mods, hn, nl))
			continue;
		pl_wr_hdr(&w, hn, nl, (const char *)nv[i].value, nv[i].valuelen);
	}
	if (!interim) {
		pl_rh_mods_emit(&w, r->resp_mods, r->n_resp_mods, 0);
		if (has_cl && status != 204) {
			PL_WR_LIT(&w, "Content-Length: ");
			pl_wr_u64(&w, cl);
			PL_WR_LIT(&w, "\r\n");
		} else if (r->resp_chunk) {
			PL_WR_LIT(&w, "Transfer-Encoding: chunked\r\n");
		} else if (bodyless && !r->is_head && status != 204 && status != 304) {
			PL_WR_LIT(&w, "Content-Length: 0\r\n");
		}
		wr_conn_field(c, &w);
	}
	PL_WR_LIT(&w, "\r\n");
	if (w.over)
		return "response head too large";
	pl_buf_commit(&c->out, (size_t)(w.p - start));
	if (!interim) {
		r->h2_nobody = (uint8_t)bodyless;
		r->resp_started = 1;
		r->resp_phase = RP_BODY;
		count_status(c, status);
	}
	return NULL;
}

static void h2_on_head(void *data, int status, const nghttp2_nv *nv, size_t n, int end_stream)
{
	struct pl_h1conn *c = data;
	struct h1_req *r = &c->req;
	c->last_io = ev_now(c->w->loop);
	r->resp_any = 1;
	if (c->st == H1_PROXY && retry_status(c, status, "h2c backend")) {
		kick(c);
		return;
	}
	if (!r->rt.replay)
		h2nv_free(c);   /* the session is connected: no retry elsewhere */
	if (c->st == H1_PROXY && !r->resp_started) {
		const char *why = h2_resp_head(c, status, nv, n, end_stream);
		if (why)
			upstream_fail(c, 502, why);
	}
	kick(c);
}

static void h2_on_data(void *data, const uint8_t *p, size_t n)
{
	struct pl_h1conn *c = data;
	struct h1_req *r = &c->req;
	c->last_io = ev_now(c->w->loop);
	if (c->st != H1_PROXY || !r->resp_started || r->h2_nobody) {
		pl_h2up_consume(c->h2u, n);   /* a body where none may be: dropped */
		return;
	}
	if (body_put(&c->out, r->resp_chunk, p, n) != 0) {
		pl_warn("%s \"%s %s\": response body buffer exhausted (h2c backend); aborting", c->peer, r->method,
			r->target);
		count_upstream_error(c);
		conn_close(c);
		return;
	}
	c->h2_owed += n;
	kick(c);
}

/* Trailer fields become the chunked body's trailer section; without chunked framing they are dropped. */
static void h2_on_trailers(void *data, const nghttp2_nv *nv, size_t n)
{
	struct pl_h1conn *c = data;
	struct h1_req *r = &c->req;
	if (c->st != H1_PROXY || !r->resp_chunk || r->h2_trailed) {
		pl_debug("%s \"%s %s\": trailers from the h2c backend dropped (no chunked response)", c->peer,
			 r->method, r->target);
		return;
	}
	size_t need = 8;
	for (size_t i = 0; i < n; i++) {
		if (!pl_rh_field_ok(nv[i].name, nv[i].namelen, nv[i].value, nv[i].valuelen)) {
			pl_warn("%s \"%s %s\": invalid trailer field from the h2c backend; trailers dropped", c->peer,
				r->method, r->target);
			return;
		}
		need += nv[i].namelen + nv[i].valuelen + 4;
	}
	if (pl_buf_reserve(&c->out, need) != 0) {
		pl_warn("%s \"%s %s\": trailers from the h2c backend too large; dropped", c->peer, r->method,
			r->target);
		return;
	}
	char *start = pl_buf_wptr(&c->out);
	struct pl_wr w = { start, start + pl_buf_space(&c->out), 0 };
	PL_WR_LIT(&w, "0\r\n");
	for (size_t i = 0; i < n; i++)
		if (resp_field_kept((const char *)nv[i].name, nv[i].namelen))
			pl_wr_hdr(&w, (const char *)nv[i].name, nv[i].namelen, (const char *)nv[i].value,
				  nv[i].valuelen);
	PL_WR_LIT(&w, "\r\n");
	PL_BUG_ON(w.over);
	pl_buf_commit(&c->out, (size_t)(w.p - start));
	r->h2_trailed = 1;
}

static void h2_on_close(void *data, int failed, const char *why)
{
	struct pl_h1conn *c = data;
	struct h1_req *r = &c->req;
	c->h2u = NULL;
	c->h2_owed = 0;   /* h2up credits the connection window with what was left */
	if (c->st != H1_PROXY) {
		kick(c);
		return;
	}
	if (failed) {
		if (failed == PL_H2UP_TIMEOUT && !r->resp_any)
			h2_timed_out(c, why);
		else if (failed == PL_H2UP_UNSENT && !r->resp_any)
			h2_unsent(c, why);
		else if (!retry_later(c, 0, why))
			upstream_fail(c, 502, why);
		kick(c);
		return;
	}
	h2nv_free(c);
	if (r->resp_chunk && !r->h2_trailed) {
		if (pl_buf_reserve(&c->out, 5) != 0) {
			conn_close(c);
			return;
		}
		pl_buf_put(&c->out, "0\r\n\r\n", 5);
	}
	r->resp_done = 1;
	if (!r->req_done)
		c->close_after = 1;   /* the rest of the request body will not be read */
	kick(c);
}

/* The request body for h2up: what step_req_body decoded into up_out. */
static size_t h2_read_body(void *data, uint8_t *buf, size_t len, int *eof)
{
	struct pl_h1conn *c = data;
	size_t kept = c->req.rt.replay ? c->up_sent : 0;   /* a kept request is read, not consumed */
	size_t n = PL_MIN(len, pl_buf_size(&c->up_out) - kept);
	if (n) {
		memcpy(buf, pl_buf_rptr(&c->up_out) + kept, n);
		if (c->req.rt.replay)
			c->up_sent += n;
		else
			pl_buf_consume(&c->up_out, n);
		c->last_io = ev_now(c->w->loop);
		kick(c);   /* room in up_out: read the client again */
	}
	*eof = c->req.req_done && pl_buf_size(&c->up_out) == (c->req.rt.replay ? c->up_sent : 0);
	return n;
}

/* The chunked request's trailers, after the body (h2up copies them). */
static size_t h2_read_trailers(void *data, nghttp2_nv *nv, size_t cap)
{
	struct pl_h1conn *c = data;
	struct h1_trailers *t = c->req.req_done ? trailers_final(c) : NULL;
	size_t n = t ? PL_MIN((size_t)t->n, cap) : 0;
	if (n)
		memcpy(nv, t->nv, n * sizeof(*nv));
	return n;
}

static const struct pl_h2up_ops h2_ops = {
	.on_head = h2_on_head,
	.on_data = h2_on_data,
	.on_trailers = h2_on_trailers,
	.on_close = h2_on_close,
	.read_body = h2_read_body,
	.read_trailers = h2_read_trailers,
};

/* Opens the stream (never from inside h2up's callbacks). */
static void h2_dispatch(struct pl_h1conn *c)
{
	struct h1_req *r = &c->req;
	const char *why = "no request head";
	r->h2_dispatch = 0;
	r->conn_start = ev_now(c->w->loop);
	int has_body = !r->req_done || !pl_buf_empty(&c->up_out) || (c->rtr && c->rtr->n);
	if (c->h2nv)
		c->h2u = pl_h2up_open(c->w, r->cluster, r->ep, c->h2nv, c->h2n, has_body, &h2_ops, c, &why);
	if (!c->h2u) {
		char msg[200];
		snprintf(msg, sizeof(msg), "h2c backend %s (%s): %s", r->ep->text, r->cluster->name, why);
		h2_unsent(c, msg);
		return;
	}
	/* the head is kept only while a failed connect (or a route retry) could still send it again */
	if ((r->ep_retried || r->cluster->n_eps < 2) && !r->rt.replay)
		h2nv_free(c);
}

/* 1 if every Upgrade token is "h2c": an upgrade a server may ignore (RFC 9110 7.8). */
static int upgrade_h2c_only(void)
{
	int seen = 0;
	for (uint32_t i = 0; i < S.n; i++) {
		if (S.kind[i] != H_UPGRADE)
			continue;
		const char *p = S.hdrs[i].value, *end = p + S.hdrs[i].value_len, *t;
		size_t n;
		while ((n = next_token(&p, end, &t)) != 0) {
			if (n != 3 || !pl_strncaseeq(t, "h2c", 3))
				return 0;
			seen = 1;
		}
	}
	return seen;
}

/*
 * The routed request goes to an h2c cluster: builds its HTTP/2 head (and,
 * for mirrors, the HTTP/1.1 head the other path would send); conn_run opens
 * the stream.
 */
static void h2_start(struct pl_h1conn *c, const struct target *t, const struct pl_rh_filters *f,
		     const struct pl_hdr *host_hdr, size_t head_len)
{
	struct h1_req *r = &c->req;
	if (r->upgrade && !upgrade_h2c_only()) {
		respond_local(c, 501, "Upgrade to an h2c backend is not supported (no RFC 8441 toward backends)");
		return;
	}
	r->upgrade = 0;   /* Upgrade: h2c is ignored: the request is answered as it is */
	static __thread struct pl_hdr fh[MAX_HDRS];
	uint32_t nf = 0;
	for (uint32_t i = 0; i < S.n; i++)
		if (!S.n_ctok || !in_ctok(S.hdrs[i].name, S.hdrs[i].name_len))
			fh[nf++] = S.hdrs[i];
	struct pl_rh_h2in in = {
		.method = r->method, .method_len = strlen(r->method),
		.path = t->path, .path_len = t->path_len, .query = t->query, .query_len = t->query_len,
		.match = &r->entry->match, .hdrs = fh, .n_hdrs = nf,
		.peer = c->peer, .tls = c->tls != NULL,
		.has_cl = (c->rp.flags & F_CONTENT_LENGTH) != 0, .cl = c->rp.content_length,
	};
	if (t->authority) {
		in.authority = t->authority;
		in.authority_len = t->authority_len;
	} else if (host_hdr) {
		in.authority = host_hdr->value;
		in.authority_len = host_hdr->value_len;
	}
	const char *err = NULL;
	c->h2nv = pl_rh_h2_head(&in, f, &c->h2n, &err);
	if (!c->h2nv) {
		respond_local(c, 500, err);
		return;
	}
	if (f->n_mirrors) {
		ssize_t hl = emit_req_head(c, t, f, host_hdr, head_len, &err);
		if (hl >= 0)
			start_mirrors(c, f, (size_t)hl, head_len);
		pl_buf_consume(&c->up_out, pl_buf_size(&c->up_out));
	}
	r->chunked = 0;   /* HTTP/2 frames the body itself */
	c->budget.limit = c->budget_base + H2_OUT_ROOM;
	retry_setup(c, 0);
	if (r->req_done)
		r->req_done_at = ev_now(c->w->loop);
	set_state(c, H1_PROXY);
	r->h2_dispatch = 1;
}

/* -------------------------------------------------------------- tunnel */

static void tunnel_start(struct pl_h1conn *c)
{
	struct pl_upconn *u = c->up;
	(void)u;
	set_state(c, H1_TUNNEL);
}

/* Space to copy into b without growing it past its standard size: backpressure. */
static size_t tunnel_room(struct pl_buf *b)
{
	if (!b->data && pl_buf_reserve(b, PL_BUF_STD) != 0)
		return 0;
	if (pl_buf_space(b) == 0)
		pl_buf_compact(b);
	return pl_buf_space(b);
}

/* Moves bytes between the two sides; returns 1 if anything moved. */
static int step_tunnel(struct pl_h1conn *c)
{
	struct pl_upconn *u = c->up;
	int progress = 0;
	if (!u)
		return 0;
	if (!pl_buf_empty(&c->in)) {
		size_t n = PL_MIN(pl_buf_size(&c->in), tunnel_room(&c->up_out));
		if (n) {
			pl_buf_put(&c->up_out, pl_buf_rptr(&c->in), n);
			pl_buf_consume(&c->in, n);
			progress = 1;
		}
	}
	if (!pl_buf_empty(&u->in)) {
		size_t n = PL_MIN(pl_buf_size(&u->in), tunnel_room(&c->out));
		if (n) {
			pl_buf_put(&c->out, pl_buf_rptr(&u->in), n);
			pl_buf_consume(&u->in, n);
			progress = 1;
		}
	}
	return progress;
}

/* ------------------------------------------------------------ failures */

/*
 * The backend connection failed (connect error, reset, EOF or garbage before
 * a complete response head). A request without a body on a reused
 * connection that has not seen a response byte is replayed once on a fresh
 * connection: the backend probably closed the idle connection as we used it.
 */
static int stale_replay_ok(const struct pl_h1conn *c)
{
	const struct h1_req *r = &c->req;
	return c->up && c->up->reused && r->retry_ok && !r->retried && !r->resp_any;
}

/*
 * A connection error before a complete response head (connect failure or
 * timeout, reset, close, per-attempt timeout): the route's retry policy
 * first, unless the free replay of a stale pooled connection applies.
 */
static void conn_error(struct pl_h1conn *c, int status, const char *why)
{
	if (!stale_replay_ok(c) && retry_later(c, 0, why))
		return;
	upstream_fail(c, status, why);
}

static void upstream_fail(struct pl_h1conn *c, int status, const char *why)
{
	struct h1_req *r = &c->req;
	struct pl_upconn *u = c->up;
	if (stale_replay_ok(c)) {
		pl_debug("%s \"%s %s\": %s on a reused connection; retrying", c->peer, r->method, r->target, why);
		pl_up_close(u);
		c->up = NULL;
		r->retried = 1;
		c->up_sent = 0;
		dispatch(c, 1);
		return;
	}
	backend_drop(c);
	h2nv_free(c);
	count_upstream_error(c);
	if (r->resp_started) {
		pl_warn("%s \"%s %s\": %s after the response started; aborting", c->peer, r->method, r->target, why);
		conn_close(c);
		return;
	}
	pl_buf_consume(&c->up_out, pl_buf_size(&c->up_out));
	c->up_sent = 0;
	respond_local(c, status, why);
}

/* ------------------------------------------------------------------- I/O */

static size_t buf_room(const struct pl_buf *b)
{
	return b->cap - (b->len - b->off);
}

static void client_read(struct pl_h1conn *c)
{
	struct pl_worker *w = c->w;
	if (c->st == H1_IDLE || c->st == H1_HEAD) {
		/* a head must fit whole in the buffer: grow up to the head limit */
		size_t lim = w->cfg->max_header_bytes + 1024;
		if (c->in.cap && buf_room(&c->in) == 0 && c->in.cap < lim && pl_buf_reserve(&c->in, PL_BUF_STD) != 0) {
			conn_close(c);
			return;
		}
	}
	ssize_t n = c->tls ? pl_tls_read(c->tls, &c->in) : pl_buf_read_fd(&c->in, c->fd, 0);
	if (n > 0) {
		c->last_io = ev_now(w->loop);
		if (c->st == H1_LINGER) {
			c->linger_bytes += (size_t)n;
			pl_buf_consume(&c->in, pl_buf_size(&c->in));
			if (c->linger_bytes > LINGER_MAX)
				conn_close(c);
		}
		return;
	}
	if (n == -EAGAIN || n == -ENOBUFS)
		return;
	if (n == -ENOMEM) {
		conn_close(c);
		return;
	}
	/* EOF or error */
	c->client_eof = 1;
	struct h1_req *r = &c->req;
	switch (c->st) {
	case H1_PROXY:
		if (n == 0 && r->req_done)
			return;   /* half-close after a complete request: still answer it */
		if (r->status == 0 && r->method)
			pl_info("%s \"%s %s\": client closed the connection before the response", c->peer, r->method,
				r->target);
		conn_close(c);
		return;
	case H1_LOCAL:
		if (n == 0)
			return;
		conn_close(c);
		return;
	case H1_TUNNEL:
		return;
	default:
		conn_close(c);
		return;
	}
}

static void up_read(struct pl_h1conn *c)
{
	struct pl_upconn *u = c->up;
	struct h1_req *r = &c->req;
	if (r->resp_phase == RP_HEAD && c->st == H1_PROXY && u->in.cap && buf_room(&u->in) == 0 &&
	    u->in.cap < MAX_RESP_HEAD + PL_BUF_STD && pl_buf_reserve(&u->in, PL_BUF_STD) != 0) {
		upstream_fail(c, 502, "response head exceeds the connection budget");
		return;
	}
	ssize_t n = pl_up_read(u);
	if (n > 0) {
		c->last_io = ev_now(c->w->loop);
		if (!r->resp_any) {
			r->resp_any = 1;
			r->retry_ok = 0;
			if (c->up_sent && !r->rt.replay) {
				pl_buf_consume(&c->up_out, c->up_sent);
				c->up_sent = 0;
			}
		}
		return;
	}
	if (n == -EAGAIN || n == -ENOBUFS)
		return;
	if (c->st == H1_TUNNEL) {
		c->up_eof = 1;
		return;
	}
	if (!r->resp_any) {
		char why[160];
		if (n == 0)
			snprintf(why, sizeof(why), "backend %s closed the connection without responding", u->peer);
		else
			snprintf(why, sizeof(why), "backend %s: read error: %s", u->peer, strerror((int)-n));
		conn_error(c, 502, why);
		return;
	}
	if (n < 0 && !r->resp_started) {
		conn_error(c, 502, "read error from backend");
		return;
	}
	c->up_eof = 1;   /* step_resp decides: end of an EOF-delimited body, or truncation */
}

/* Writes out to the client; 1 if bytes were written. */
static int flush_client(struct pl_h1conn *c)
{
	if (pl_buf_empty(&c->out) || c->cl_wblocked)
		return 0;
	size_t want = pl_buf_size(&c->out);
	ssize_t n = c->tls ? pl_tls_write(c->tls, &c->out) : pl_buf_write_fd(&c->out, c->fd);
	if (n > 0) {
		c->last_io = ev_now(c->w->loop);
		if ((size_t)n < want)
			c->cl_wblocked = 1;
		/*
		 * h2c response DATA is credited back once written: what stays
		 * uncredited is at least the body still in out (out holds body
		 * and framing), so out never holds more body than the window.
		 */
		if (c->h2u && c->h2_owed > pl_buf_size(&c->out)) {
			size_t k = c->h2_owed - pl_buf_size(&c->out);
			c->h2_owed -= k;
			pl_h2up_consume(c->h2u, k);
		}
		return 1;
	}
	if (n == -EAGAIN) {
		c->cl_wblocked = 1;
		return 0;
	}
	pl_debug("%s: write error: %s", c->peer, strerror((int)-n));
	conn_close(c);
	return 0;
}

/* Writes up_out to the backend; 1 if bytes were written. */
static int flush_up(struct pl_h1conn *c)
{
	struct pl_upconn *u = c->up;
	if (!u || u->st != PL_UP_READY || c->up_wblocked)
		return 0;
	size_t avail = pl_buf_size(&c->up_out) - c->up_sent;
	if (avail == 0)
		return 0;
	ssize_t n = pl_up_send(u, pl_buf_rptr(&c->up_out) + c->up_sent, avail);
	if (n > 0) {
		c->last_io = ev_now(c->w->loop);
		if ((c->req.retry_ok || c->req.rt.replay) && c->st == H1_PROXY)
			c->up_sent += (size_t)n;
		else
			pl_buf_consume(&c->up_out, (size_t)n);
		if ((size_t)n < avail)
			c->up_wblocked = 1;
		return 1;
	}
	if (n == -EAGAIN) {
		c->up_wblocked = 1;
		return 0;
	}
	if (c->st == H1_TUNNEL) {
		c->up_eof = 1;
		pl_buf_consume(&c->up_out, pl_buf_size(&c->up_out));
		return 1;
	}
	char why[160];
	snprintf(why, sizeof(why), "send to backend %s failed: %s", u->peer, strerror(n < 0 ? (int)-n : EPIPE));
	conn_error(c, 502, why);
	return 1;
}

static void update_watchers(struct pl_h1conn *c)
{
	struct ev_loop *loop = c->w->loop;
	int rd = 0;
	switch (c->st) {
	case H1_IDLE: case H1_HEAD: case H1_LINGER:
		rd = 1;
		break;
	case H1_PROXY: case H1_TUNNEL:
		rd = !c->client_eof && (c->in.cap == 0 || buf_room(&c->in) > 0);
		break;
	default:
		break;
	}
	if (c->client_eof)
		rd = 0;
	if (rd)
		ev_io_start(loop, &c->rio);
	else
		ev_io_stop(loop, &c->rio);
	/* TLS may hold decrypted bytes the socket will not signal again */
	if (rd && c->tls && pl_tls_pending(c->tls))
		ev_feed_event(loop, &c->rio, EV_READ);
	if ((c->cl_wblocked && !pl_buf_empty(&c->out)) || (rd && c->tls && pl_tls_read_wants_write(c->tls)))
		ev_io_start(loop, &c->wio);
	else
		ev_io_stop(loop, &c->wio);

	struct pl_upconn *u = c->up;
	if (u && u->st == PL_UP_READY) {
		int urd = !c->up_eof && !c->req.resp_done &&
			  (u->in.cap == 0 || buf_room(&u->in) > 0 ||
			   (c->req.resp_phase == RP_HEAD && c->st == H1_PROXY && u->in.cap < MAX_RESP_HEAD + PL_BUF_STD));
		int uwr = c->up_wblocked && pl_buf_size(&c->up_out) > c->up_sent;
		pl_up_want(u, urd, uwr);
	}
}

/* --------------------------------------------------------------- timers */

static ev_tstamp deadline(struct pl_h1conn *c, enum tmo *why)
{
	const struct pl_proxy_config *cfg = c->w->cfg;
	struct h1_req *r = &c->req;
	double idle = (double)cfg->idle_timeout_ms / 1000.0;
	ev_tstamp d = 0;
	*why = T_NONE;
#define CONSIDER(val, reason) do { ev_tstamp v_ = (val); if (*why == T_NONE || v_ < d) { d = v_; *why = (reason); } } while (0)
	switch (c->st) {
	case H1_IDLE:
		if (idle > 0)
			CONSIDER(c->last_io + idle, T_IDLE);
		break;
	case H1_HEAD:
		if (cfg->header_timeout_ms)
			CONSIDER(c->head_start + (double)cfg->header_timeout_ms / 1000.0, T_HEAD);
		break;
	case H1_PROXY:
		if (r->rt.at) {
			/* a retry waits out its backoff: only the route's request timeout runs besides */
			CONSIDER(r->rt.at, T_RETRY);
			if (r->rule_deadline)
				CONSIDER(r->rule_deadline, T_RULE);
			break;
		}
		if (c->up && c->up->st == PL_UP_CONNECTING && cfg->connect_timeout_ms)
			CONSIDER(r->conn_start + (double)cfg->connect_timeout_ms / 1000.0, T_CONNECT);
		if (r->rule_deadline && !r->resp_done)
			CONSIDER(r->rule_deadline, T_RULE);
		if (!r->resp_started && r->req_done && !r->rule_deadline && cfg->backend_timeout_ms)
			CONSIDER(r->req_done_at + (double)cfg->backend_timeout_ms / 1000.0, T_BACKEND);
		if ((r->resp_started || !r->req_done) && idle > 0)
			CONSIDER(c->last_io + idle, T_INACTIVE);
		break;
	case H1_LOCAL: case H1_TUNNEL:
		if (idle > 0)
			CONSIDER(c->last_io + idle, T_INACTIVE);
		break;
	case H1_LINGER:
		CONSIDER(c->linger_until, T_LINGER);
		break;
	case H1_CLOSED:
		break;
	}
#undef CONSIDER
	return d;
}

static void arm_timer(struct pl_h1conn *c)
{
	enum tmo why;
	ev_tstamp d = deadline(c, &why);
	if (why == T_NONE) {
		ev_timer_stop(c->w->loop, &c->timer);
		return;
	}
	/* a later deadline leaves the armed timer alone: it fires early and re-arms */
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
	struct pl_h1conn *c = t->data;
	struct h1_req *r = &c->req;
	enum tmo why;
	ev_tstamp d = deadline(c, &why);
	if (why == T_NONE)
		return;
	if (d > ev_now(loop) + 0.001) {
		arm_timer(c);
		return;
	}
	switch (why) {
	case T_IDLE:
	case T_LINGER:
		conn_close(c);
		return;
	case T_HEAD:
		if (pl_buf_empty(&c->in) && c->requests > 0) {
			conn_close(c);
			return;
		}
		if (pl_buf_empty(&c->in)) {
			pl_debug("%s: no request within the header timeout", c->peer);
			conn_close(c);
			return;
		}
		r->keepalive = 0;
		c->close_after = 1;
		respond_local(c, 408, "request head not received within the header timeout");
		break;
	case T_CONNECT: {
		char why_s[160];
		snprintf(why_s, sizeof(why_s), "connect to %s timed out", c->up ? c->up->peer : "?");
		r->retry_ok = 0;
		conn_error(c, 504, why_s);
		break;
	}
	case T_BACKEND:
	case T_RULE: {
		char why_s[160];
		snprintf(why_s, sizeof(why_s), "%s timeout waiting for %s", why == T_RULE ? "route" : "backend",
			 c->up ? c->up->peer : r->ep ? r->ep->text : "backend");
		r->retry_ok = 0;
		/* timeouts.request is final; a per-attempt one (backendRequest, the proxy's) may be retried */
		conn_error(c, 504, why_s);
		break;
	}
	case T_RETRY:
		retry_fire(c);
		break;
	case T_INACTIVE:
		if (c->st == H1_PROXY && !r->req_done && !r->resp_started) {
			/* who stalled: the backend (our bytes wait for it) or the client */
			int backend_stalled = pl_buf_size(&c->up_out) > c->up_sent;
			r->keepalive = 0;
			if (backend_stalled) {
				r->retry_ok = 0;
				upstream_fail(c, 504, "backend stopped reading the request body (idle timeout)");
				break;
			}
			backend_drop(c);
			respond_local(c, 408, "request body stalled (idle timeout)");
			break;
		}
		pl_info("%s \"%s %s\": idle timeout in state %s; closing", c->peer, r->method ? r->method : "-",
			r->target, state_str(c->st));
		conn_close(c);
		return;
	case T_NONE:
		return;
	}
	if (c->st != H1_CLOSED)
		conn_run(c);
}

/* ------------------------------------------------------------- lifecycle */

static void conn_close(struct pl_h1conn *c)
{
	if (c->st == H1_CLOSED)
		return;
	struct pl_worker *w = c->w;
	backend_drop(c);
	h2nv_free(c);
	free(c->rtr);
	c->rtr = NULL;
	if (c->req.wt) {
		pl_wtable_put(c->req.wt);
		c->req.wt = NULL;
	}
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
	pl_buf_free(&c->in);
	pl_buf_free(&c->out);
	pl_buf_free(&c->up_out);
	set_state(c, H1_CLOSED);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = w->dead;
	c->prev = NULL;
	w->dead = c;
	atomic_fetch_sub_explicit(&w->n_conns, 1, memory_order_relaxed);
}

static void begin_head(struct pl_h1conn *c)
{
	pl_h1scan_init(&c->scan, (uint32_t)c->w->cfg->max_request_line, (uint32_t)c->w->cfg->max_header_bytes);
	c->scanned = 0;
	c->head_start = ev_now(c->w->loop);
	set_state(c, H1_HEAD);
}

/* The response is out: next request, or close. */
static void request_end(struct pl_h1conn *c)
{
	struct h1_req *r = &c->req;
	int unread = !r->req_done;
	int close_now = c->close_after || !r->keepalive || c->w->draining || c->client_eof;
	backend_drop(c);   /* nothing left normally: the response is complete */
	h2nv_free(c);
	free(c->rtr);
	c->rtr = NULL;
	c->budget.limit = c->budget_base;
	if (r->wt)
		pl_wtable_put(r->wt);
	memset(r, 0, offsetof(struct h1_req, cors));
	pl_buf_consume(&c->up_out, pl_buf_size(&c->up_out));
	c->up_sent = 0;
	c->requests++;
	if (close_now) {
		if (c->client_eof || (!unread && pl_buf_empty(&c->in))) {
			conn_close(c);
			return;
		}
		/* unread input: shut our side and drain, so the kernel sends the
		 * response before a FIN instead of resetting it away */
		if (c->tls)
			pl_tls_close_notify(c->tls);
		shutdown(c->fd, SHUT_WR);
		pl_buf_consume(&c->in, pl_buf_size(&c->in));
		c->linger_until = ev_now(c->w->loop) + LINGER_S;
		set_state(c, H1_LINGER);
		return;
	}
	set_state(c, H1_IDLE);
	c->last_io = ev_now(c->w->loop);
	/* idle keep-alive connections hold no buffers */
	pl_buf_shrink_if_empty(&c->out);
	pl_buf_shrink_if_empty(&c->up_out);
	pl_buf_shrink_if_empty(&c->in);
}

/* Scans for a complete request head; returns 1 if the state changed. */
static int step_head(struct pl_h1conn *c)
{
	if (pl_buf_empty(&c->in))
		return 0;
	if (c->requests == 0 && !c->tls) {
		/* h2c with prior knowledge: the connection preface on the HTTP port */
		int pre = pl_h2_preface(pl_buf_rptr(&c->in), pl_buf_size(&c->in));
		if (pre == 1) {
			if (c->st == H1_IDLE)
				begin_head(c);
			return 0;
		}
		if (pre == 2) {
			pl_h2_accept(c->w, c->ls, c->fd, c->peer, NULL, pl_buf_rptr(&c->in), pl_buf_size(&c->in));
			c->fd = -1;   /* now h2's */
			ev_io_stop(c->w->loop, &c->rio);
			ev_io_stop(c->w->loop, &c->wio);
			conn_close(c);
			return 1;
		}
	}
	if (c->st == H1_IDLE)
		begin_head(c);
	size_t avail = pl_buf_size(&c->in);
	if (avail <= c->scanned)
		return 0;
	size_t used = 0;
	int rc = pl_h1scan_feed(&c->scan, pl_buf_rptr(&c->in) + c->scanned, avail - c->scanned, &used);
	if (rc == PL_H1SCAN_MORE) {
		c->scanned = avail;
		return 0;
	}
	if (rc < 0) {
		int status = rc == PL_H1SCAN_E_LINE_TOO_LONG ? 414 : rc == PL_H1SCAN_E_HEAD_TOO_LONG ? 431 : 400;
		char why[160];
		snprintf(why, sizeof(why), "rejected request head: %s", pl_h1scan_reason(&c->scan));
		c->req.keepalive = 0;
		c->req.req_done = 1;
		respond_local(c, status, why);
		return 1;
	}
	size_t head_len = c->scanned + used;
	handle_head(c, head_len);
	if (c->st != H1_CLOSED)
		pl_buf_consume(&c->in, head_len);
	return 1;
}

static void conn_run(struct pl_h1conn *c)
{
	for (;;) {
		int progress = 0;
		switch (c->st) {
		case H1_IDLE:
		case H1_HEAD:
			progress = step_head(c);
			break;
		case H1_PROXY:
			if (c->req.h2_dispatch) {
				h2_dispatch(c);
				progress = 1;
				if (c->st != H1_PROXY)
					break;
			}
			progress |= step_req_body(c);
			if (c->st == H1_PROXY)
				progress |= step_resp(c);
			break;
		case H1_TUNNEL:
			progress = step_tunnel(c);
			break;
		default:
			break;
		}
		if (c->st == H1_CLOSED)
			return;
		progress |= flush_client(c);
		if (c->st == H1_CLOSED)
			return;
		progress |= flush_up(c);
		if (c->st == H1_CLOSED)
			return;
		if (((c->st == H1_PROXY && c->req.resp_done) || c->st == H1_LOCAL) && pl_buf_empty(&c->out)) {
			request_end(c);
			if (c->st == H1_CLOSED)
				return;
			progress = 1;
		}
		if (c->st == H1_TUNNEL && (c->client_eof || c->up_eof)) {
			/* one side is gone: deliver what is buffered toward the other, then close */
			int pending = c->client_eof ? !pl_buf_empty(&c->up_out) || !pl_buf_empty(&c->in)
						    : !pl_buf_empty(&c->out) || (c->up && !pl_buf_empty(&c->up->in));
			if (!pending || (c->client_eof && !c->up)) {
				conn_close(c);
				return;
			}
		}
		if (!progress)
			break;
	}
	update_watchers(c);
	arm_timer(c);
}

static void on_client_read(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_h1conn *c = io->data;
	client_read(c);
	if (c->st != H1_CLOSED)
		conn_run(c);
}

static void on_client_write(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pl_h1conn *c = io->data;
	c->cl_wblocked = 0;
	if (c->tls && pl_tls_read_wants_write(c->tls)) {
		client_read(c);
		if (c->st == H1_CLOSED)
			return;
	}
	conn_run(c);
}

static void up_cb(struct pl_upconn *u, int ev)
{
	struct pl_h1conn *c = u->data;
	switch (ev) {
	case PL_UP_EV_ERROR: {
		char why[200];
		if (u->errmsg[0])
			snprintf(why, sizeof(why), "%s", u->errmsg);
		else
			snprintf(why, sizeof(why), "connect to %s failed: %s", u->peer, strerror(u->err));
		connect_failed(c, why);
		break;
	}
	case PL_UP_EV_CONNECTED:
		c->last_io = ev_now(c->w->loop);
		break;
	case PL_UP_EV_READ:
		up_read(c);
		break;
	case PL_UP_EV_WRITE:
		c->up_wblocked = 0;
		break;
	}
	if (c->st != H1_CLOSED)
		conn_run(c);
}

void pl_h1_accept(struct pl_worker *w, struct pl_lsock *ls, int fd, const struct sockaddr *sa, socklen_t salen)
{
	pl_h1_accept_tls(w, ls, fd, sa, salen, NULL);
}

void pl_h1_accept_tls(struct pl_worker *w, struct pl_lsock *ls, int fd, const struct sockaddr *sa, socklen_t salen,
		      struct pl_tlsconn *tls)
{
	pthread_once(&settings_once, settings_init);
	struct pl_h1conn *c = calloc(1, sizeof(*c));
	if (!c) {
		pl_tls_conn_free(tls);
		close(fd);
		return;
	}
	c->tls = tls;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->w = w;
	c->ls = ls;
	pl_lsock_get(ls);
	c->fd = fd;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof(c->peer));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof(c->peer));
	else
		snprintf(c->peer, sizeof(c->peer), "unknown");
	if (tls && pl_tls_alpn_is_h2(tls)) {
		/* ALPN chose h2: the connection is h2.c's */
		pl_h2_accept(w, ls, fd, c->peer, tls, NULL, 0);
		pl_lsock_put(ls);
		free(c);
		return;
	}
	/* budget: a head at its limit in each of in, up_out and out, plus body buffers */
	size_t hb = PL_BUF_STD;
	while (hb < w->cfg->max_header_bytes + PL_BUF_STD)
		hb *= 2;
	c->budget_base = 3 * hb + 4 * (size_t)PL_BUF_STD;
	c->budget.limit = c->budget_base;
	pl_buf_init(&c->in, &c->budget);
	pl_buf_init(&c->out, &c->budget);
	pl_buf_init(&c->up_out, &c->budget);
	ev_io_init(&c->rio, on_client_read, fd, EV_READ);
	ev_io_init(&c->wio, on_client_write, fd, EV_WRITE);
	ev_init(&c->timer, on_timer);
	c->rio.data = c->wio.data = c->timer.data = c;
	c->last_io = ev_now(w->loop);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	atomic_fetch_add_explicit(&w->n_conns, 1, memory_order_relaxed);
	begin_head(c);
	ev_io_start(w->loop, &c->rio);
	arm_timer(c);
}

void pl_h1_reap(struct pl_worker *w)
{
	while (w->dead) {
		struct pl_h1conn *c = w->dead;
		w->dead = c->next;
		pl_lsock_put(c->ls);
		free(c);
	}
	pl_mirror_reap(w);
	pl_h2_reap(w);
}

void pl_h1_drain(struct pl_worker *w)
{
	struct pl_h1conn *c, *next;
	for (c = w->conns; c; c = next) {
		next = c->next;
		if (c->st == H1_IDLE || (c->st == H1_HEAD && pl_buf_empty(&c->in)) || c->st == H1_LINGER)
			conn_close(c);
		else
			c->close_after = 1;
	}
	pl_h2_drain(w);
}

void pl_h1_close_all(struct pl_worker *w)
{
	while (w->conns)
		conn_close(w->conns);
	pl_h2_close_all(w);
	pl_mirror_close_all(w);
}
