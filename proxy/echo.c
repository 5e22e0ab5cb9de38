/*
 * pylon echo: the backend used by the quickstart, the black-box tests and the
 * benchmark. One thread, one libev loop, llhttp for parsing.
 *
 * Every request is answered with JSON describing it, shaped like the Gateway
 * API conformance echo server (path, host, method, proto, headers with Go's
 * canonical names, namespace, pod) plus body_bytes. The body is counted as it
 * streams by, never kept. Test knobs in the query string:
 *   status=NNN     answer with that status (200..599)
 *   delay_ms=N     wait N ms (at most 60 s) before answering
 *   size=N         answer with N bytes of 'x' instead of JSON (streamed)
 *   close=1        answer with Connection: close
 * and a request header "X-Echo-Set-Header: Name: value" adds a response header.
 * GET /__echo/stats answers counters and the last request paths (the tests
 * use it to see whether a mirrored request arrived); it is not counted itself.
 * "Upgrade: websocket" gets a 101 and the connection then echoes raw bytes.
 *
 * Bounds: request target + header bytes 64 KiB and 256 header lines (431
 * beyond), pending output 1 MiB in the tunnel (reading pauses beyond),
 * 4096 connections, 300 s idle.
 */
#define _GNU_SOURCE 1   /* accept4 */
#include "pl.h"
#include "log.h"
#include "proxy.h"
#include "h1scan.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <llhttp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define ECHO_READ_CHUNK   16384
#define ECHO_MAX_HEAD     65536
#define ECHO_MAX_HEADERS  256
#define ECHO_MAX_TUNNEL   (1u << 20)
#define ECHO_STREAM_CHUNK 65536
#define ECHO_MAX_DELAY_MS 60000
#define ECHO_IDLE_S       300.0
#define ECHO_MAX_CONNS    4096
#define ECHO_RECENT       64
#define ECHO_RECENT_LEN   256

enum conn_state { CS_READING = 0, CS_DELAYING, CS_WRITING, CS_TUNNEL, CS_CLOSED };

static const char *conn_state_str(enum conn_state s)
{
	switch (s) {
	case CS_READING: return "reading";
	case CS_DELAYING: return "delaying";
	case CS_WRITING: return "writing";
	case CS_TUNNEL: return "tunnel";
	case CS_CLOSED: return "closed";
	}
	return "?";
}

/*
 * A byte buffer. Invariant: off <= len <= cap; bytes [off, len) are pending
 * (for output: not yet sent; for input: not yet parsed).
 */
struct buf {
	char *p;
	size_t off, len, cap;
};

struct echo_hdr {
	uint32_t name_off, name_len, val_off, val_len;
};

struct conn {
	int fd;
	enum conn_state st;
	ev_io rio, wio;
	ev_timer idle, delay;
	llhttp_t parser;

	/* The current request: target then header bytes, in head. */
	struct buf head;
	uint32_t url_len;
	struct echo_hdr hdrs[ECHO_MAX_HEADERS];
	uint32_t n_hdrs;
	uint32_t cur_name_off, cur_val_off;
	int too_large;          /* head over the limits: answer 431 */
	int keep_alive;
	int upgrade;
	uint64_t body_bytes;

	struct buf in;          /* read, not yet parsed */
	struct buf out;         /* to send */
	uint64_t stream_left;   /* ?size= bytes still to send after out */
	int close_after;
	int reading;            /* rio started */
	struct conn *next_dead;
};

static struct ev_loop *loop;
static llhttp_settings_t settings;
static const char *pod_name = "";
static const char *namespace_name = "";
static unsigned n_conns;
static uint64_t total_requests, total_conns;
static char recent[ECHO_RECENT][ECHO_RECENT_LEN];
static unsigned recent_pos, recent_n;
static struct conn *dead;
static ev_check reaper;
static char pattern[ECHO_STREAM_CHUNK];

/* ---- buffers ---- */

static int buf_reserve(struct buf *b, size_t more)
{
	if (b->off == b->len)
		b->off = b->len = 0;
	if (b->cap - b->len >= more)
		return 0;
	if (b->off > 0) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->cap - b->len >= more)
			return 0;
	}
	size_t ncap = b->cap ? b->cap : 1024;
	while (ncap - b->len < more) {
		if (ncap > SIZE_MAX / 2)
			return -1;
		ncap *= 2;
	}
	char *np = realloc(b->p, ncap);
	if (!np)
		return -1;
	b->p = np;
	b->cap = ncap;
	return 0;
}

static int buf_put(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) != 0)
		return -1;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int buf_puts(struct buf *b, const char *s)
{
	return buf_put(b, s, strlen(s));
}

static int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	return buf_put(b, tmp, (size_t)n);
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- JSON ---- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not valid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;     /* no UTF-16 surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;     /* nothing above U+10FFFF */
	} else
		return 0;
	if (n < len)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

/*
 * A JSON string literal for arbitrary bytes: control characters and DEL are
 * \u-escaped, invalid UTF-8 becomes U+FFFD (as Go's encoder does), so hostile
 * header bytes can never break the document.
 */
static int json_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (buf_reserve(b, n * 6 + 2) != 0)
		return -1;
	char *o = b->p + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
			i++;
		} else if (c == '\n') {
			*o++ = '\\'; *o++ = 'n'; i++;
		} else if (c == '\r') {
			*o++ = '\\'; *o++ = 'r'; i++;
		} else if (c == '\t') {
			*o++ = '\\'; *o++ = 't'; i++;
		} else if (c < 0x20 || c == 0x7f) {
			*o++ = '\\'; *o++ = 'u'; *o++ = '0'; *o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
			i++;
		} else if (c < 0x80) {
			*o++ = (char)c;
			i++;
		} else {
			size_t l = utf8_len((const unsigned char *)s + i, n - i);
			if (l == 0) {
				memcpy(o, "\\ufffd", 6);
				o += 6;
				i++;
			} else {
				memcpy(o, s + i, l);
				o += l;
				i += l;
			}
		}
	}
	*o++ = '"';
	b->len = (size_t)(o - b->p);
	return 0;
}

/* Go's textproto.CanonicalMIMEHeaderKey: "x-foo-bar" -> "X-Foo-Bar"; names with non-token bytes stay as they are. */
static void canonical_name(char *d, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!pl_h1_is_tchar((unsigned char)s[i])) {
			memcpy(d, s, n);
			return;
		}
	}
	int upper = 1;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (upper && c >= 'a' && c <= 'z')
			c = (char)(c - 32);
		else if (!upper && c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		d[i] = c;
		upper = c == '-';
	}
}

/* ---- request helpers ---- */

static const char *hname(const struct conn *c, uint32_t i) { return c->head.p + c->hdrs[i].name_off; }
static const char *hval(const struct conn *c, uint32_t i) { return c->head.p + c->hdrs[i].val_off; }

static int name_is(const struct conn *c, uint32_t i, const char *name)
{
	size_t n = strlen(name);
	return c->hdrs[i].name_len == n && pl_strncaseeq(hname(c, i), name, n);
}

/* First header called name, or -1. */
static int find_hdr(const struct conn *c, const char *name)
{
	for (uint32_t i = 0; i < c->n_hdrs; i++)
		if (name_is(c, i, name))
			return (int)i;
	return -1;
}

/* 1 if the value of header i contains token tok (comma-separated list, any case). */
static int hdr_has_token(const struct conn *c, int i, const char *tok)
{
	if (i < 0)
		return 0;
	const char *v = hval(c, (uint32_t)i), *end = v + c->hdrs[i].val_len;
	size_t tl = strlen(tok);
	while (v < end) {
		while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
			v++;
		const char *s = v;
		while (v < end && *v != ',')
			v++;
		const char *e = v;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - s) == tl && pl_strncaseeq(s, tok, tl))
			return 1;
	}
	return 0;
}

/* The value of query parameter key in the request target as a number; -1 when absent or not a number. */
static int64_t query_num(const struct conn *c, const char *key)
{
	const char *u = c->head.p, *end = u + c->url_len;
	const char *q = memchr(u, '?', c->url_len);
	size_t kl = strlen(key);
	if (!q)
		return -1;
	q++;
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *pe = amp ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(pe - q));
		if (eq && (size_t)(eq - q) == kl && memcmp(q, key, kl) == 0) {
			uint64_t v;
			if (pl_parse_u64(eq + 1, (size_t)(pe - eq - 1), &v) != 0 || v > INT64_MAX)
				return -1;
			return (int64_t)v;
		}
		q = amp ? amp + 1 : end;
	}
	return -1;
}

static size_t path_len(const struct conn *c)
{
	const char *q = memchr(c->head.p, '?', c->url_len);
	return q ? (size_t)(q - c->head.p) : c->url_len;
}

static const char *reason(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	}
	return "Status";
}

/* ---- llhttp callbacks ---- */

static int head_put(struct conn *c, const char *at, size_t len)
{
	if (c->too_large || c->head.len + len > ECHO_MAX_HEAD) {
		c->too_large = 1;
		return -1;
	}
	return buf_put(&c->head, at, len);
}

static int cb_message_begin(llhttp_t *p)
{
	struct conn *c = p->data;
	c->head.off = c->head.len = 0;
	c->url_len = 0;
	c->n_hdrs = 0;
	c->body_bytes = 0;
	c->keep_alive = 0;
	c->upgrade = 0;
	return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	if (head_put(c, at, len))
		return -1;
	c->url_len += (uint32_t)len;
	return 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	if (c->n_hdrs >= ECHO_MAX_HEADERS) {
		c->too_large = 1;
		return -1;
	}
	return head_put(c, at, len);
}

/*
 * Field bytes may arrive in several pieces, so the name's start is noted
 * when the previous header (or the target) completed, in cb_header_start.
 */
static void header_start(struct conn *c)
{
	c->cur_name_off = (uint32_t)c->head.len;
}

static int cb_url_complete(llhttp_t *p)
{
	header_start(p->data);
	return 0;
}

static int cb_header_field_complete(llhttp_t *p)
{
	struct conn *c = p->data;
	c->cur_val_off = (uint32_t)c->head.len;
	return 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
	return head_put(p->data, at, len);
}

static int cb_header_value_complete(llhttp_t *p)
{
	struct conn *c = p->data;
	if (c->n_hdrs >= ECHO_MAX_HEADERS) {
		c->too_large = 1;
		return -1;
	}
	struct echo_hdr *h = &c->hdrs[c->n_hdrs++];
	h->name_off = c->cur_name_off;
	h->name_len = c->cur_val_off - c->cur_name_off;
	h->val_off = c->cur_val_off;
	h->val_len = (uint32_t)c->head.len - c->cur_val_off;
	header_start(c);
	return 0;
}

static void want_write(struct conn *c);

static int cb_headers_complete(llhttp_t *p)
{
	struct conn *c = p->data;
	if (hdr_has_token(c, find_hdr(c, "expect"), "100-continue")) {
		if (buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n"))
			return -1;
		want_write(c);
	}
	return 0;
}

static int cb_body(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	c->body_bytes += len;
	return 0;
}

static int cb_message_complete(llhttp_t *p)
{
	struct conn *c = p->data;
	c->keep_alive = llhttp_should_keep_alive(p);
	c->upgrade = llhttp_get_upgrade(p);
	/* One request at a time: stop here, answer, then resume on what follows. */
	return c->upgrade ? 0 : HPE_PAUSED;
}

/* ---- connections ---- */

static void conn_close(struct conn *c)
{
	if (c->st == CS_CLOSED)
		return;
	pl_debug("echo: close fd %d in state %s", c->fd, conn_state_str(c->st));
	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
	ev_timer_stop(loop, &c->idle);
	ev_timer_stop(loop, &c->delay);
	close(c->fd);
	c->st = CS_CLOSED;
	n_conns--;
	/* freed by the reaper after this loop iteration, never inside its own callback */
	c->next_dead = dead;
	dead = c;
}

static void reap_cb(struct ev_loop *l, ev_check *w, int revents)
{
	while (dead) {
		struct conn *c = dead;
		dead = c->next_dead;
		buf_free(&c->head);
		buf_free(&c->in);
		buf_free(&c->out);
		free(c);
	}
}

static void want_write(struct conn *c)
{
	if (!ev_is_active(&c->wio))
		ev_io_start(loop, &c->wio);
}

static void set_reading(struct conn *c, int on)
{
	if (on && !c->reading)
		ev_io_start(loop, &c->rio);
	else if (!on && c->reading)
		ev_io_stop(loop, &c->rio);
	c->reading = on;
}

enum { FLUSH_DONE = 0, FLUSH_AGAIN = 1, FLUSH_ERR = -1 };

/* Sends out, then stream_left bytes of pattern. */
static int flush(struct conn *c)
{
	for (;;) {
		const char *p;
		size_t n;
		int from_out = c->out.off < c->out.len;
		if (from_out) {
			p = c->out.p + c->out.off;
			n = c->out.len - c->out.off;
		} else if (c->stream_left > 0) {
			p = pattern;
			n = (size_t)PL_MIN(c->stream_left, (uint64_t)sizeof(pattern));
		} else
			break;
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				want_write(c);
				return FLUSH_AGAIN;
			}
			return FLUSH_ERR;
		}
		ev_timer_again(loop, &c->idle);
		if (from_out)
			c->out.off += (size_t)w;
		else
			c->stream_left -= (uint64_t)w;
	}
	c->out.off = c->out.len = 0;
	ev_io_stop(loop, &c->wio);
	return FLUSH_DONE;
}

static void record_path(const struct conn *c)
{
	size_t n = PL_MIN((size_t)c->url_len, (size_t)ECHO_RECENT_LEN - 1);
	memcpy(recent[recent_pos], c->head.p, n);
	recent[recent_pos][n] = 0;
	recent_pos = (recent_pos + 1) % ECHO_RECENT;
	if (recent_n < ECHO_RECENT)
		recent_n++;
}

static int build_stats(struct buf *body)
{
	int rc = buf_printf(body, "{\"requests\": %llu, \"connections\": %llu, \"active\": %u, \"recent\": [",
			    (unsigned long long)total_requests, (unsigned long long)total_conns, n_conns);
	for (unsigned i = 0; i < recent_n && rc == 0; i++) {
		unsigned k = (recent_pos + ECHO_RECENT - recent_n + i) % ECHO_RECENT;
		if (i)
			rc |= buf_puts(body, ", ");
		rc |= json_str(body, recent[k], strlen(recent[k]));
	}
	rc |= buf_puts(body, "]}\n");
	return rc;
}

static int build_json(struct conn *c, struct buf *body)
{
	int rc = 0;
	int host = find_hdr(c, "host");
	char proto[16];
	snprintf(proto, sizeof(proto), "HTTP/%u.%u", c->parser.http_major, c->parser.http_minor);
	const char *method = llhttp_method_name((llhttp_method_t)c->parser.method);

	rc |= buf_puts(body, "{\"path\": ");
	rc |= json_str(body, c->head.p, c->url_len);
	rc |= buf_puts(body, ", \"host\": ");
	rc |= host >= 0 ? json_str(body, hval(c, (uint32_t)host), c->hdrs[host].val_len) : buf_puts(body, "\"\"");
	rc |= buf_puts(body, ", \"method\": ");
	rc |= json_str(body, method, strlen(method));
	rc |= buf_puts(body, ", \"proto\": ");
	rc |= json_str(body, proto, strlen(proto));
	rc |= buf_puts(body, ", \"headers\": {");
	/* Go's net/http keeps Host out of Header and merges names case-insensitively. */
	int first = 1;
	for (uint32_t i = 0; i < c->n_hdrs && rc == 0; i++) {
		if (name_is(c, i, "host"))
			continue;
		uint32_t j;
		for (j = 0; j < i; j++)
			if (c->hdrs[j].name_len == c->hdrs[i].name_len &&
			    pl_strncaseeq(hname(c, j), hname(c, i), c->hdrs[i].name_len))
				break;
		if (j < i)
			continue;
		char name[ECHO_MAX_HEAD];
		canonical_name(name, hname(c, i), c->hdrs[i].name_len);
		rc |= buf_puts(body, first ? "" : ", ");
		first = 0;
		rc |= json_str(body, name, c->hdrs[i].name_len);
		rc |= buf_puts(body, ": [");
		for (j = i; j < c->n_hdrs; j++) {
			if (c->hdrs[j].name_len != c->hdrs[i].name_len ||
			    !pl_strncaseeq(hname(c, j), hname(c, i), c->hdrs[i].name_len))
				continue;
			rc |= buf_puts(body, j == i ? "" : ", ");
			rc |= json_str(body, hval(c, j), c->hdrs[j].val_len);
		}
		rc |= buf_puts(body, "]");
	}
	rc |= buf_puts(body, "}, \"namespace\": ");
	rc |= json_str(body, namespace_name, strlen(namespace_name));
	rc |= buf_puts(body, ", \"ingress\": \"\", \"service\": \"\", \"pod\": ");
	rc |= json_str(body, pod_name, strlen(pod_name));
	rc |= buf_printf(body, ", \"body_bytes\": %llu}\n", (unsigned long long)c->body_bytes);
	return rc;
}

/*
 * Response headers asked for with "X-Echo-Set-Header: Name: value" (several
 * allowed, comma-separated). Only token names and values without CTLs pass:
 * the echo must never be the one splitting a response.
 */
static int extra_headers(struct conn *c)
{
	int rc = 0;
	for (uint32_t i = 0; i < c->n_hdrs; i++) {
		if (!name_is(c, i, "x-echo-set-header"))
			continue;
		const char *v = hval(c, i), *end = v + c->hdrs[i].val_len;
		while (v < end) {
			const char *comma = memchr(v, ',', (size_t)(end - v));
			const char *ie = comma ? comma : end;
			const char *colon = memchr(v, ':', (size_t)(ie - v));
			const char *ns = v;
			while (ns < ie && *ns == ' ')
				ns++;
			if (colon && colon > ns) {
				int ok = 1;
				for (const char *q = ns; q < colon; q++)
					ok &= pl_h1_is_tchar((unsigned char)*q);
				const char *vs = colon + 1;
				while (vs < ie && *vs == ' ')
					vs++;
				for (const char *q = vs; q < ie; q++)
					ok &= (unsigned char)*q >= 0x20 && *q != 0x7f;
				if (ok) {
					rc |= buf_put(&c->out, ns, (size_t)(colon - ns));
					rc |= buf_puts(&c->out, ": ");
					rc |= buf_put(&c->out, vs, (size_t)(ie - vs));
					rc |= buf_puts(&c->out, "\r\n");
				}
			}
			v = comma ? comma + 1 : end;
		}
	}
	return rc;
}

static int build_ws(struct conn *c)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	int k = find_hdr(c, "sec-websocket-key");
	if (k < 0 || c->hdrs[k].val_len == 0 || c->hdrs[k].val_len > 64)
		return -1;
	char in[64 + sizeof(guid)];
	unsigned char md[SHA_DIGEST_LENGTH];
	char acc[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
	size_t kl = c->hdrs[k].val_len;
	memcpy(in, hval(c, (uint32_t)k), kl);
	memcpy(in + kl, guid, sizeof(guid) - 1);
	SHA1((const unsigned char *)in, kl + sizeof(guid) - 1, md);
	EVP_EncodeBlock((unsigned char *)acc, md, SHA_DIGEST_LENGTH);
	int rc = buf_printf(&c->out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", acc);
	rc |= buf_puts(&c->out, "X-Echo-Pod: ");
	rc |= buf_put(&c->out, pod_name, strlen(pod_name));
	rc |= buf_puts(&c->out, "\r\n\r\n");
	return rc;
}

/* Builds the whole answer to the parsed request into out (+ stream_left). */
static int build_response(struct conn *c)
{
	size_t pl = path_len(c);
	if (pl == 13 && memcmp(c->head.p, "/__echo/stats", 13) == 0) {
		struct buf body = { 0 };
		int rc = build_stats(&body);
		rc |= buf_printf(&c->out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				 "Content-Length: %zu\r\n%s\r\n", body.len,
				 c->keep_alive ? "" : "Connection: close\r\n");
		rc |= buf_put(&c->out, body.p, body.len);
		buf_free(&body);
		c->close_after = !c->keep_alive;
		return rc;
	}
	total_requests++;
	record_path(c);

	int status = 200;
	int64_t v = query_num(c, "status");
	if (v >= 200 && v <= 599)
		status = (int)v;
	if (query_num(c, "close") == 1)
		c->keep_alive = 0;
	c->close_after = !c->keep_alive;
	int head_only = c->parser.method == HTTP_HEAD;
	int no_body = status == 204 || status == 304;

	int rc = buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, reason(status));
	rc |= buf_puts(&c->out, "X-Echo-Pod: ");
	rc |= buf_put(&c->out, pod_name, strlen(pod_name));
	rc |= buf_puts(&c->out, "\r\n");
	if (c->close_after)
		rc |= buf_puts(&c->out, "Connection: close\r\n");
	rc |= extra_headers(c);
	int64_t size = query_num(c, "size");
	if (no_body) {
		rc |= buf_puts(&c->out, "\r\n");
	} else if (size >= 0) {
		rc |= buf_printf(&c->out, "Content-Type: application/octet-stream\r\nContent-Length: %llu\r\n\r\n",
				 (unsigned long long)size);
		if (!head_only)
			c->stream_left = (uint64_t)size;
	} else {
		struct buf body = { 0 };
		rc |= build_json(c, &body);
		rc |= buf_printf(&c->out, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body.len);
		if (!head_only)
			rc |= buf_put(&c->out, body.p, body.len);
		buf_free(&body);
	}
	return rc;
}

static void error_response(struct conn *c, int status)
{
	static const char fmt[] = "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
				  "Connection: close\r\n\r\n%s\n";
	const char *r = reason(status);
	c->out.off = c->out.len = 0;
	c->stream_left = 0;
	if (buf_printf(&c->out, fmt, status, r, strlen(r) + 1, r) != 0) {
		conn_close(c);
		return;
	}
	c->close_after = 1;
	c->st = CS_WRITING;
}

static void drive(struct conn *c);

static void delay_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	c->st = CS_WRITING;
	if (build_response(c) != 0) {
		conn_close(c);
		return;
	}
	drive(c);
}

/* A whole request head (and body) was parsed: decide the answer. */
static void answer(struct conn *c)
{
	set_reading(c, 0);
	if (c->upgrade) {
		int u = find_hdr(c, "upgrade");
		if (hdr_has_token(c, u, "websocket")) {
			total_requests++;
			record_path(c);
			if (build_ws(c) != 0) {
				error_response(c, 400);
				return;
			}
			/* bytes that followed the head are already tunnel data */
			if (buf_put(&c->out, c->in.p + c->in.off, c->in.len - c->in.off) != 0) {
				conn_close(c);
				return;
			}
			c->in.off = c->in.len = 0;
			c->st = CS_TUNNEL;
			return;
		}
		/* Any other protocol: answer plainly and close, the parser cannot go on. */
		c->keep_alive = 0;
	}
	int64_t d = query_num(c, "delay_ms");
	if (d > 0) {
		c->st = CS_DELAYING;
		ev_timer_set(&c->delay, (double)PL_MIN(d, (int64_t)ECHO_MAX_DELAY_MS) / 1000.0, 0.);
		ev_timer_start(loop, &c->delay);
		return;
	}
	c->st = CS_WRITING;
	if (build_response(c) != 0)
		conn_close(c);
}

/* Parses pending input until a request completes or input runs out. */
static void parse(struct conn *c)
{
	const char *p = c->in.p + c->in.off;
	size_t n = c->in.len - c->in.off;
	llhttp_errno_t err = llhttp_execute(&c->parser, p, n);
	if (err == HPE_OK) {
		c->in.off = c->in.len = 0;
		return;
	}
	if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
		const char *pos = llhttp_get_error_pos(&c->parser);
		if (pos >= p && pos <= p + n)
			c->in.off += (size_t)(pos - p);
		else
			c->in.off = c->in.len;
		if (err == HPE_PAUSED_UPGRADE)
			c->upgrade = 1;
		answer(c);
		return;
	}
	pl_debug("echo: bad request: %s (%s)", llhttp_errno_name(err), llhttp_get_error_reason(&c->parser));
	set_reading(c, 0);
	error_response(c, c->too_large ? 431 : 400);
}

/*
 * The connection's one driver: moves it through its states as far as it
 * can go without waiting. Pipelined requests loop here instead of recursing.
 */
static void drive(struct conn *c)
{
	for (;;) {
		switch (c->st) {
		case CS_READING:
			if (c->in.off == c->in.len) {
				if (c->out.off < c->out.len && flush(c) == FLUSH_ERR) {
					conn_close(c);
					return;
				}
				set_reading(c, 1);
				return;
			}
			parse(c);
			break;
		case CS_DELAYING:
			return;
		case CS_WRITING: {
			int r = flush(c);
			if (r == FLUSH_AGAIN)
				return;
			if (r == FLUSH_ERR || c->close_after) {
				if (r == FLUSH_DONE)
					shutdown(c->fd, SHUT_WR);
				conn_close(c);
				return;
			}
			c->st = CS_READING;
			llhttp_resume(&c->parser);
			break;
		}
		case CS_TUNNEL: {
			int r = flush(c);
			if (r == FLUSH_ERR || (r == FLUSH_DONE && c->close_after)) {
				conn_close(c);
				return;
			}
			set_reading(c, !c->close_after && c->out.len - c->out.off < ECHO_MAX_TUNNEL);
			return;
		}
		case CS_CLOSED:
			return;
		}
	}
}

static void read_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct conn *c = w->data;
	struct buf *b = c->st == CS_TUNNEL ? &c->out : &c->in;
	if (buf_reserve(b, ECHO_READ_CHUNK) != 0) {
		conn_close(c);
		return;
	}
	ssize_t n = recv(c->fd, b->p + b->len, b->cap - b->len, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		conn_close(c);
		return;
	}
	ev_timer_again(loop, &c->idle);
	if (n == 0) {
		if (c->st == CS_TUNNEL && c->out.off < c->out.len) {
			c->close_after = 1;
			set_reading(c, 0);
			drive(c);
			return;
		}
		conn_close(c);
		return;
	}
	b->len += (size_t)n;
	drive(c);
}

static void write_cb(struct ev_loop *l, ev_io *w, int revents)
{
	drive(w->data);
}

static void idle_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	conn_close(w->data);
}

static void accept_cb(struct ev_loop *l, ev_io *w, int revents)
{
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				pl_warn("echo: accept: %s", strerror(errno));
			return;
		}
		struct conn *c = n_conns < ECHO_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->st = CS_READING;
		llhttp_init(&c->parser, HTTP_REQUEST, &settings);
		c->parser.data = c;
		ev_io_init(&c->rio, read_cb, fd, EV_READ);
		ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
		ev_init(&c->idle, idle_cb);
		c->idle.repeat = ECHO_IDLE_S;
		ev_init(&c->delay, delay_cb);
		c->rio.data = c->wio.data = c->idle.data = c->delay.data = c;
		ev_timer_again(loop, &c->idle);
		set_reading(c, 1);
		n_conns++;
		total_conns++;
	}
}

/* "host:port", "[v6]:port" or ":port" (any address). */
static int listen_on(const char *addr)
{
	const char *colon = strrchr(addr, ':');
	if (!colon || colon[1] == 0) {
		fprintf(stderr, "pylon echo: --listen wants host:port, got '%s'\n", addr);
		return -1;
	}
	char host[256];
	size_t hl = (size_t)(colon - addr);
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		addr++;
		hl -= 2;
	}
	if (hl >= sizeof(host)) {
		fprintf(stderr, "pylon echo: address too long\n");
		return -1;
	}
	memcpy(host, addr, hl);
	host[hl] = 0;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai;
	int e = getaddrinfo(hl ? host : NULL, colon + 1, &hints, &ai);
	if (e != 0) {
		fprintf(stderr, "pylon echo: %s: %s\n", addr, gai_strerror(e));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
		fprintf(stderr, "pylon echo: cannot listen on %s: %s\n", colon == addr ? "*" : host, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char h[NI_MAXHOST], s[NI_MAXSERV];
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), s, sizeof(s), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
		/* stdout, flushed: scripts and tests read the real port from it when they asked for :0 */
		printf("pylon echo: listening on %s:%s pod=%s\n", h, s, pod_name);
		fflush(stdout);
	}
	return fd;
}

int pl_echo_run(const char *listen_addr)
{
	const char *e;
	if ((e = getenv("POD_NAME")))
		pod_name = e;
	if ((e = getenv("NAMESPACE")))
		namespace_name = e;
	/* the pod name goes into a response header: keep only bytes that are safe there */
	for (const char *q = pod_name; *q; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f) {
			fprintf(stderr, "pylon echo: POD_NAME contains control characters\n");
			return 2;
		}
	memset(pattern, 'x', sizeof(pattern));
	signal(SIGPIPE, SIG_IGN);

	llhttp_settings_init(&settings);
	settings.on_message_begin = cb_message_begin;
	settings.on_url = cb_url;
	settings.on_url_complete = cb_url_complete;
	settings.on_header_field = cb_header_field;
	settings.on_header_field_complete = cb_header_field_complete;
	settings.on_header_value = cb_header_value;
	settings.on_header_value_complete = cb_header_value_complete;
	settings.on_headers_complete = cb_headers_complete;
	settings.on_body = cb_body;
	settings.on_message_complete = cb_message_complete;

	int fd = listen_on(listen_addr);
	if (fd < 0)
		return 1;
	loop = ev_default_loop(EVFLAG_AUTO);
	if (!loop) {
		fprintf(stderr, "pylon echo: cannot initialise libev\n");
		close(fd);
		return 1;
	}
	ev_io lw;
	ev_io_init(&lw, accept_cb, fd, EV_READ);
	ev_io_start(loop, &lw);
	ev_check_init(&reaper, reap_cb);
	ev_check_start(loop, &reaper);
	ev_run(loop, 0);
	close(fd);
	return 0;
}
