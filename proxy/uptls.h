/*
 * TLS client side toward backends (BackendTLSPolicy, table-t.h struct
 * pl_backend_tls). Used by upstream.c and h2up.c (HTTP/2 over TLS).
 *
 * Contexts: one client SSL_CTX per distinct trust material (the CA PEM, or
 * the system store), cached process-wide behind a mutex and shared by all
 * workers (an SSL_CTX is thread-safe). Every SSL holds its own reference, so
 * evicting a context never breaks a live connection. Verification fails
 * closed: SSL_VERIFY_PEER aborts the handshake on a chain error, and the
 * names are checked after the handshake (pl_uptls_check_names).
 *
 * Threads: any; the cache takes a mutex when an SSL is created.
 */
#ifndef PL_UPTLS_H
#define PL_UPTLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

struct pl_backend_tls;
struct pl_cluster;

/* A client SSL on fd with SNI set and verification armed; NULL on error (err filled). */
SSL *pl_uptls_new(const struct pl_backend_tls *bt, int fd, char *err, size_t errlen);
/*
 * After a completed handshake: 0 when the peer's certificate chain verified
 * and it carries one of bt->sans (DNS names matched as hostnames, entries
 * holding ':' as exact URI SANs), or, without sans, the name bt->sni.
 * -1 with err filled otherwise.
 */
int pl_uptls_check_names(SSL *ssl, const struct pl_backend_tls *bt, char *err, size_t errlen);
/*
 * Logs (warn) that cl's BackendTLSPolicy is unusable (cl->tls->error set) and
 * its connections are refused, once per (generation, cl->id) however many
 * requests and workers come by: generation is that of the table the caller
 * serves (the worker's current one). Lock-free; any thread. The caller still
 * refuses every request itself.
 */
void pl_uptls_warn_unusable(const struct pl_cluster *cl, uint64_t generation);
/* Describes why a handshake failed (verify result, or the OpenSSL error queue, which it clears). */
void pl_uptls_error(SSL *ssl, int ssl_err, char *err, size_t errlen);

#endif
