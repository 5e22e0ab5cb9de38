/*
 * TLS termination in the data plane (OpenSSL 3).
 *
 * SSL_CTX objects: the compiler stores only PEM text in the table
 * (table-t.h struct pl_listener_tls). The proxy turns each distinct material
 * (keyed by SHA-256 of certificates, keys, client CA and flags) into one
 * SSL_CTX, cached process-wide and shared by all workers (an SSL_CTX is safe
 * to use from many threads). Each worker, on table pickup, builds a
 * struct pl_tls_set: one SSL_CTX pointer per TERMINATE listener of the table
 * (cache hits after the first worker). The set lives in the worker's
 * pl_wtable and dies with it; a cache entry dies with its last set. Every SSL
 * holds its own reference to its SSL_CTX, so connections established on an
 * old certificate keep it after a rotation (new table, new material, new
 * SSL_CTX) and new connections get the new one.
 *
 * Handshakes: every SSL starts on one process-wide base SSL_CTX (settings,
 * session-ticket keys, callbacks, no certificate). The ClientHello callback
 * reads the SNI, picks the bind's listener as the router does (exact, then
 * wildcard, then any: pl_router_listener), and switches the SSL to that
 * listener's SSL_CTX; without SNI, or with one no listener owns, the bind's
 * least specific TERMINATE listener serves the handshake (HTTP then answers
 * 404/421 by Host). Because the ticket keys belong to the base context,
 * resumption works across workers and across certificate rotations; the
 * session id context is per listener material, so a session is never resumed
 * under a listener with other client-certificate requirements.
 *
 * Threads: pl_tls_init() once from the main thread; everything else on the
 * owning worker's loop, except the cache (mutex, taken at table pickup only).
 */
#ifndef PL_TLS_H
#define PL_TLS_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct pl_worker;
struct pl_lsock;
struct pl_table;
struct pl_listener;
struct pl_bind;
struct pl_buf;

/* Library and base context set-up. 0, or -1 (logged). Idempotent. */
int pl_tls_init(void);

/*
 * ALPN hook: 0 = offer http/1.1 only. Set to 1 once the HTTP/2 engine exists
 * (then "h2" is preferred and pl_tls_alpn_is_h2() tells http1/h2 apart).
 */
extern int pl_tls_alpn_h2;

/* SSL_CTXs for the TERMINATE listeners of t; NULL when t has none or on error (logged). */
struct pl_tls_set *pl_tls_set_new(const struct pl_table *t);
void pl_tls_set_free(struct pl_tls_set *s);   /* NULL ok */

/* An accepted socket on an HTTPS (or TLS-terminate) bind: handshake, then HTTP/1.1. Takes fd. */
void pl_tls_accept(struct pl_worker *w, struct pl_lsock *ls, int fd, const struct sockaddr *sa, socklen_t salen);
/* Worker hooks: free finished handshakes; drain/close those in progress. */
void pl_tls_reap(struct pl_worker *w);
void pl_tls_close_all(struct pl_worker *w);

/*
 * An established TLS connection, owned by its HTTP connection. Return
 * conventions follow pl_buf_read_fd()/pl_buf_write_fd(): bytes, 0 on EOF
 * (close_notify or TCP EOF), -EAGAIN, -ENOBUFS, -ENOMEM, or -EPROTO/-errno.
 */
struct pl_tlsconn;
ssize_t pl_tls_read(struct pl_tlsconn *t, struct pl_buf *b);
ssize_t pl_tls_write(struct pl_tlsconn *t, struct pl_buf *b);
/* Decrypted bytes buffered inside OpenSSL (the socket may not be readable again). */
int pl_tls_pending(const struct pl_tlsconn *t);
/* The last read returned -EAGAIN because TLS needs to write first (wait for writability). */
int pl_tls_read_wants_write(const struct pl_tlsconn *t);
/* Sends close_notify (best effort, never blocks). */
void pl_tls_close_notify(struct pl_tlsconn *t);
/* Frees; sends close_notify first unless the connection failed. */
void pl_tls_conn_free(struct pl_tlsconn *t);
/* SNI the client sent (lower-case), "" if none. */
const char *pl_tls_sni(const struct pl_tlsconn *t);
int pl_tls_alpn_is_h2(const struct pl_tlsconn *t);

#endif
