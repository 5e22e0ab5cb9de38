/*
 * Downstream HTTP/1.x connections: the proxy's request/response engine.
 *
 * Each accepted socket becomes a struct pl_h1conn driven by an explicit state
 * machine (enum h1_state in http1.c, state_str() for logs; only set_state()
 * changes it). A request head is checked byte by byte by the
 * strict scanner (h1scan.h), then parsed by llhttp 8.1.0 (no lenient flags),
 * routed (router.h), filtered, and forwarded to a pooled backend connection
 * (upstream.h) with regenerated framing. Bodies stream both ways through
 * fixed-size buffers with backpressure; nothing buffers a whole body.
 *
 * Framing choices (see docs/proxy.md):
 *   - Content-Length bodies are forwarded with the same Content-Length.
 *   - Chunked bodies are validated by llhttp and re-chunked: one output chunk
 *     per contiguous run of body bytes; chunk extensions are dropped, a
 *     request's trailer fields forwarded (filtered), a response's dropped.
 *   - "Upgrade: h2c" (RFC 7540 3.2) on a plaintext HTTP/1.1 request without
 *     a body hands the connection to h2.c (pl_h2_upgrade); otherwise it is
 *     ignored, never forwarded.
 *   - A response without length (read until EOF) is re-chunked to HTTP/1.1
 *     clients and sent close-delimited to HTTP/1.0 clients.
 *   - Expect: 100-continue is forwarded; the backend's interim 1xx responses
 *     are relayed to HTTP/1.1 clients.
 *
 * Threads: everything here runs on the owning worker's loop.
 */
#ifndef PL_HTTP1_H
#define PL_HTTP1_H

#include <sys/socket.h>

struct pl_worker;
struct pl_lsock;

/* Takes ownership of the accepted non-blocking socket fd (closes it on failure). */
void pl_h1_accept(struct pl_worker *w, struct pl_lsock *ls, int fd, const struct sockaddr *sa, socklen_t salen);
/*
 * The same over an established TLS connection (tls.h): takes fd and t. The
 * connection reads and writes through t, answers 421 to requests whose Host
 * belongs to another listener than the SNI's, and sends X-Forwarded-Proto: https.
 */
struct pl_tlsconn;
void pl_h1_accept_tls(struct pl_worker *w, struct pl_lsock *ls, int fd, const struct sockaddr *sa, socklen_t salen,
		      struct pl_tlsconn *t);
/* Frees connections closed during the last loop iteration. */
void pl_h1_reap(struct pl_worker *w);
/* Shutdown: closes idle connections, asks the others to close after their response. */
void pl_h1_drain(struct pl_worker *w);
/* Drain deadline passed: closes every connection now. */
void pl_h1_close_all(struct pl_worker *w);

#endif
