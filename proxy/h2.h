/*
 * Downstream HTTP/2 (RFC 9113) with nghttp2: h2c with prior knowledge on
 * HTTP listeners (http1.c hands a connection over when its first bytes are
 * the connection preface), h2c by "Upgrade: h2c" from an HTTP/1.1 request on
 * them (RFC 7540 3.2; http1.c hands the connection and the request over),
 * and h2 over TLS when ALPN chose "h2" (http1.c hands the established
 * pl_tlsconn over).
 *
 * Each stream is routed like an HTTP/1 request (router.h, rewrite.h) and
 * bridged to an HTTP/1.1 backend connection from the worker's pool
 * (upstream.h): the request head is regenerated as HTTP/1.1 (Host from
 * :authority, cookies merged, hop-by-hop fields dropped, framing
 * regenerated: Content-Length when the client gave one, else chunked), the
 * response head is checked by the strict scanner and llhttp and turned into
 * HEADERS (lower-case names, connection-specific fields dropped), a chunked
 * response's trailer fields become a trailing HEADERS frame; request trailers
 * go into a chunked request body's trailer section.
 *
 * WebSocket (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL is advertised; an
 * extended CONNECT with :protocol websocket is routed like a GET and sent
 * to an HTTP/1.1 backend as an Upgrade request with a key of our own. After
 * a verified 101 the client gets 200 and the stream tunnels bytes both
 * ways under the same flow-control bounds, until either side ends it.
 *
 * Flow control and memory: automatic WINDOW_UPDATEs are off; request DATA is
 * acknowledged (nghttp2_session_consume) only once written to the backend,
 * so a stream buffers at most its window (64 KiB) and a connection at most
 * its window (1 MiB) of request body. Response bodies are read from the
 * backend only while the stream's 32 KiB output buffer has room. Every buffer
 * of a connection and its streams is charged to one per-connection budget.
 *
 * Hardening (Envoy edge defaults where it has one): 100 concurrent streams,
 * 64 KiB initial stream window, 1 MiB connection window, header list limited
 * to the proxy's max_header_bytes, nghttp2's rapid-reset rate limit and
 * CONTINUATION limit, bounded outbound ACK queue and SETTINGS entries. A
 * stream reset before its header block completes costs no backend work.
 * Drain sends GOAWAY and closes once the streams in flight are done.
 *
 * Threads: everything runs on the owning worker's loop.
 */
#ifndef PL_H2_H
#define PL_H2_H

#include <stddef.h>
#include <sys/types.h>

struct pl_worker;
struct pl_lsock;
struct pl_tlsconn;

#define PL_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PL_H2_PREFACE_LEN 24

/* 0: p[0, n) cannot begin the client preface; 1: a proper prefix of it; 2: begins with all of it. */
int pl_h2_preface(const char *p, size_t n);

/*
 * Takes over an accepted connection: fd (and tls when not NULL, all I/O then
 * goes through it). data[0, len) are bytes already read from the client
 * (the preface for h2c), copied. peer is the client address text for logs.
 * On failure fd and tls are closed.
 */
void pl_h2_accept(struct pl_worker *w, struct pl_lsock *ls, int fd, const char *peer, struct pl_tlsconn *tls,
		  const char *data, size_t len);
/*
 * The HTTP/1.1 request of an h2c upgrade (RFC 7540 3.2), for pl_h2_upgrade().
 * Everything points into the caller's buffers and is copied.
 */
struct pl_hdr;
struct pl_h2_upreq {
	const char *method;                     /* NUL-terminated */
	const char *path, *query, *authority;   /* origin-form path; query without '?', NULL: none */
	size_t path_len, query_len, authority_len;
	const struct pl_hdr *hdrs;              /* all the request's fields (connection-specific ones are dropped) */
	uint32_t n_hdrs;
	const char *settings;                   /* the HTTP2-Settings value: base64url, padding optional */
	size_t settings_len;
};

/*
 * h2c upgrade: takes over the plaintext connection fd whose bodyless
 * request rq asked for "Upgrade: h2c". Writes "101 Switching Protocols" and
 * serves HTTP/2 on the connection: rq becomes stream 1 (half-closed remote),
 * routed and answered like any stream. data[0, len) are bytes read after the
 * request (the client preface may be among them), copied. Returns 0 when it
 * took fd; -EINVAL when the settings are not a valid SETTINGS payload, or
 * -ENOMEM: then nothing was taken or written and the caller goes on with
 * HTTP/1.1.
 */
int pl_h2_upgrade(struct pl_worker *w, struct pl_lsock *ls, int fd, const char *peer, const struct pl_h2_upreq *rq,
		  const char *data, size_t len);

/* base64url (RFC 4648 5, trailing '=' optional) src[0, n) into dst[0, cap): the decoded length, or -1. */
ssize_t pl_h2_b64url_decode(const char *src, size_t n, unsigned char *dst, size_t cap);

/* Frees connections closed during the last loop iteration. */
void pl_h2_reap(struct pl_worker *w);
/* Shutdown: GOAWAY to every connection; each closes when its streams are done. */
void pl_h2_drain(struct pl_worker *w);
/* Closes every connection now. */
void pl_h2_close_all(struct pl_worker *w);

#endif
