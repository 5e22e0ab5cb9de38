/*
 * L4 data paths: spliced TCP streams (TCPRoute, and TLSRoute passthrough
 * once passthrough.c has chosen the route) and UDP flows (UDPRoute).
 *
 * Streams: one connection to a backend endpoint chosen like HTTP does (the
 * rule's smooth-WRR schedule, then round-robin over ready endpoints; one
 * retry on another endpoint if connecting fails). Bytes are copied both ways
 * through two fixed PL_BUF_STD buffers with backpressure. Half-close is
 * propagated: EOF from one side, once its buffered bytes are delivered,
 * becomes shutdown(SHUT_WR) toward the other, and the stream ends when both
 * directions are done (or on an error, or after the idle timeout without a
 * byte either way).
 *
 * UDP: each client address (per listening socket) is a flow with its own
 * connected socket to one backend endpoint, chosen at the flow's first
 * datagram; replies go back from the listening socket. Flows expire after
 * the idle timeout; at most max_conns flows per worker (datagrams of new
 * flows beyond it are dropped).
 *
 * Threads: everything on the owning worker's loop. Streams and flows pin the
 * table they were routed with (pl_wtable) for their lifetime.
 */
#ifndef PL_L4_H
#define PL_L4_H

#include <sys/socket.h>

struct pl_worker;
struct pl_lsock;
struct pl_wtable;
struct pl_rule;

/* An accepted socket on a TCP bind. Takes fd. */
void pl_l4_tcp_accept(struct pl_worker *w, struct pl_lsock *ls, int fd, const struct sockaddr *sa, socklen_t salen);
/*
 * Splices client fd to a backend of rule (routed on wt, which the stream pins).
 * Bytes already peeked are still in the socket. Takes fd; what names the route for logs.
 */
void pl_l4_stream(struct pl_worker *w, struct pl_lsock *ls, int fd, const char *peer, struct pl_wtable *wt,
		  struct pl_rule *rule);
/*
 * Same, for a client whose TLS was terminated by tls.c (TLSRoute mode
 * Terminate): plaintext goes to the backend, the client side reads and writes
 * through tc, which the stream takes over (close_notify is the client's EOF
 * and is sent for the backend's).
 */
struct pl_tlsconn;
void pl_l4_stream_tls(struct pl_worker *w, struct pl_lsock *ls, int fd, const char *peer, struct pl_wtable *wt,
		      struct pl_rule *rule, struct pl_tlsconn *tc);
/* The UDP listening socket ls is readable. */
void pl_l4_udp_read(struct pl_worker *w, struct pl_lsock *ls);
/* The first UDP-capable listener's rule for a UDP/TCP bind (the "any" vhost's first entry), or NULL. */
struct pl_rule *pl_l4_bind_rule(const struct pl_lsock *ls);

void pl_l4_reap(struct pl_worker *w);
void pl_l4_sweep(struct pl_worker *w);      /* every second: UDP flow expiry */
void pl_l4_drain(struct pl_worker *w);      /* shutdown: UDP flows close; streams run until the drain deadline */
void pl_l4_close_all(struct pl_worker *w);

#endif
