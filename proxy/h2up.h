/*
 * HTTP/2 to backends whose Service port says appProtocol kubernetes.io/h2c
 * (or that a GRPCRoute picks): a per-worker pool of nghttp2 client sessions,
 * one connection each, many streams per session. The connection is
 * cleartext h2c with prior knowledge, or, for a cluster with a
 * BackendTLSPolicy (cluster->tls), TLS made as uptls.h makes it (the
 * policy's CA, SNI and name checks, the Gateway's client certificate)
 * offering ALPN "h2" only: a backend that selects anything else fails the
 * session (a warning saying ALPN; the streams fail unsent).
 *
 * A session is keyed by (cluster id, endpoint address, TLS policy
 * fingerprint or none); a new stream goes to a live session of its key with
 * room under the backend's MAX_CONCURRENT_STREAMS (at most
 * PL_H2UP_MAX_SESSIONS per key), else to a new one. A session with no stream
 * closes after 60 seconds. The connect timeout covers the TCP connect and
 * the TLS handshake together.
 *
 * Flow control: automatic WINDOW_UPDATEs are off. Response DATA delivered to
 * the owner (ops->on_data) is credited back to the backend only when the
 * owner calls pl_h2up_consume(), so the owner's buffer bounds what a stream
 * holds (its window, 64 KiB). The request body is pulled from the owner
 * (ops->read_body) when the backend's window allows; the owner calls
 * pl_h2up_resume() when it has more. Request trailers, if the owner has
 * any, are pulled after the body's end (ops->read_trailers).
 *
 * Lifetime: a stream handle belongs to its owner from pl_h2up_open() until
 * ops->on_close() (the response ended, or failed), or until the owner calls
 * pl_h2up_detach() (the stream is then reset and no callback follows).
 * Sessions are freed outside their callbacks. A session keeps nothing of
 * the table: what it needs of the cluster is copied at pl_h2up_open().
 *
 * Threads: each worker thread has its own pool; everything runs on the
 * calling worker's loop.
 */
#ifndef PL_H2UP_H
#define PL_H2UP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <nghttp2/nghttp2.h>

#define PL_H2UP_MAX_SESSIONS 8
#define PL_H2UP_UNSENT 2          /* on_close failed: nothing of the stream reached the backend */
#define PL_H2UP_TIMEOUT 3         /* on_close failed: UNSENT because the connect timeout expired */

struct pl_worker;
struct pl_cluster;
struct pl_endpoint;
struct pl_h2up_stream;

struct pl_h2up_ops {
	/*
	 * Response head: status (1xx interim ones too) and fields (lower-case,
	 * pseudo-headers dropped). end_stream: no body or trailers follow (a
	 * gRPC "trailers-only" response).
	 */
	void (*on_head)(void *data, int status, const nghttp2_nv *nv, size_t n, int end_stream);
	/* Response body bytes; credit them with pl_h2up_consume() once passed on. */
	void (*on_data)(void *data, const uint8_t *p, size_t n);
	/* Trailer fields (after the body). */
	void (*on_trailers)(void *data, const nghttp2_nv *nv, size_t n);
	/*
	 * The stream ended: failed == 0 for a complete response, else why says
	 * what broke; failed == PL_H2UP_UNSENT when the session never connected,
	 * so nothing of the stream (head or body) left: the owner may send the
	 * request elsewhere. failed == PL_H2UP_TIMEOUT: the same, because the
	 * connect timeout (TCP connect and TLS handshake) expired; owners answer
	 * it as a connect timeout to an HTTP/1.1 backend (504). Last call.
	 */
	void (*on_close)(void *data, int failed, const char *why);
	/* Copies up to len request body bytes to buf; sets *eof at the end. 0 bytes and no eof: wait. */
	size_t (*read_body)(void *data, uint8_t *buf, size_t len, int *eof);
	/*
	 * Optional (NULL: no request trailers). Called when read_body has set
	 * *eof: fills at most cap request trailer fields into nv (lower-case
	 * names, valid field bytes; the strings need to live only during the
	 * call, they are copied) and returns how many; they follow the body in
	 * a HEADERS frame that ends the stream. 0: the body ends the stream. May
	 * be called again for the same request (a retry).
	 */
	size_t (*read_trailers)(void *data, nghttp2_nv *nv, size_t cap);
};

#define PL_H2UP_MAX_TRAILERS 32   /* cap passed to read_trailers */

/*
 * Opens a stream to ep of cluster cl carrying the request head nv[n]
 * (pseudo-headers first; toward a TLS session a ":scheme" of "http" is sent
 * as "https"). has_body: the request has a body or trailers (pulled through
 * ops->read_body, then ops->read_trailers); without it the HEADERS frame
 * ends the stream. Returns NULL with *why set when no session can be had
 * (also when cl->tls is an unusable policy: never plaintext instead).
 * Changed (issue 6): takes the cluster instead of its id and name.
 */
struct pl_h2up_stream *pl_h2up_open(struct pl_worker *w, const struct pl_cluster *cl, const struct pl_endpoint *ep,
				    const nghttp2_nv *nv, size_t n, int has_body, const struct pl_h2up_ops *ops,
				    void *data, const char **why);
/* More request body (or its end) is available. */
void pl_h2up_resume(struct pl_h2up_stream *s);
/* n response body bytes were passed on: credit the backend. */
void pl_h2up_consume(struct pl_h2up_stream *s, size_t n);
/* The owner gives the stream up: it is reset, its pending credit returned; no further callbacks. */
void pl_h2up_detach(struct pl_h2up_stream *s);
/* Closes every session of the calling worker (worker exit). */
void pl_h2up_close_all(struct pl_worker *w);

#endif
