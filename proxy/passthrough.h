/*
 * TLS listeners: the ClientHello is peeked (MSG_PEEK, never consumed) and
 * parsed (clienthello.h); the SNI picks the listener (most specific hostname
 * first) and, inside it, the TLSRoute hostname (exact before wildcard). A
 * Passthrough listener then splices the untouched bytes to the route's
 * backend (l4.h); an HTTPS or TLS Terminate listener (mixed ports: the
 * compiler makes a bind holding any TLS listener a TLS bind) hands the socket
 * to the TLS engine (tls.h), ClientHello unread. On a port with a terminating
 * listener, no SNI or an SNI no listener owns is terminated too (default
 * certificate, as on a pure HTTPS port).
 *
 * Refusals are prompt and silent-but-logged: bytes that are not TLS, a
 * malformed or oversized ClientHello, no SNI, or an SNI no route owns close
 * the connection (no TLS alert: we never speak TLS on a passthrough port);
 * a ClientHello that does not complete within header_timeout_ms too.
 *
 * Threads: the owning worker's loop only.
 */
#ifndef PL_PASSTHROUGH_H
#define PL_PASSTHROUGH_H

#include <sys/socket.h>

struct pl_worker;
struct pl_lsock;

struct pl_listener;
struct pl_rule;

/*
 * The TLSRoute rule of listener l for sni ("" = none): the vhost whose
 * hostname matches (exact before wildcard; no SNI only matches a vhost
 * without hostnames), or NULL.
 */
struct pl_rule *pl_pt_rule(const struct pl_listener *l, const char *sni);

void pl_pt_accept(struct pl_worker *w, struct pl_lsock *ls, int fd, const struct sockaddr *sa, socklen_t salen);
void pl_pt_reap(struct pl_worker *w);
void pl_pt_close_all(struct pl_worker *w);

#endif
