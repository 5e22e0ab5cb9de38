/*
 * Worker threads: one libev loop each, its own SO_REUSEPORT listening socket
 * per HTTP bind of the current table, its own upstream pool. Internal to
 * proxy/ (main.c sees only proxy.h).
 *
 * Threads: everything in struct pl_worker belongs to the worker's thread,
 * except the fields marked "any thread" (atomics read by the admin endpoint
 * and written by the signal/publish paths).
 *
 * Table pinning: the worker holds one reference (pl_table_ref) to its current
 * table through a struct pl_wtable. Requests pin the pl_wtable with a plain
 * counter (no atomics on the hot path); when the worker picks up a newer table
 * the old pl_wtable lives on until its last request finishes, and then drops
 * the worker's pl_table reference. So an in-flight request always finishes on
 * the table it was routed with.
 */
#ifndef PL_WORKER_H
#define PL_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>

#include "proxy.h"
#include "table-t.h"

struct pl_h1conn;
struct pl_upconn;
struct pl_uppool;
struct pl_admin;
struct pl_route_stats;
struct pl_tlshs;
struct pl_ptconn;
struct pl_l4conn;
struct pl_udpsess;
struct pl_h2conn;

struct pl_tls_set;

struct pl_wtable {
	struct pl_table *t;
	unsigned refs;       /* the worker's own (while current) + one per pinning request */
	struct pl_tls_set *tls;  /* SSL_CTXs of t's TLS-terminating listeners (tls.h); NULL: none */
};

static inline void pl_wtable_get(struct pl_wtable *wt) { wt->refs++; }
void pl_wtable_put(struct pl_wtable *wt);

/* A listening socket of one worker; connections accepted on it keep it alive. */
struct pl_lsock {
	struct pl_worker *w;
	ev_io io;
	int fd;                  /* -1 once closed (bind removed, or shutdown) */
	char address[64];
	uint16_t port;
	const struct pl_bind *bind;  /* in w->wt->t; NULL when the current table has no such bind */
	unsigned refs;           /* 1 while open + one per connection */
	int udp;                 /* SOCK_DGRAM (UDP bind) */
	struct pl_lsock *next;
};

static inline void pl_lsock_get(struct pl_lsock *ls) { ls->refs++; }
void pl_lsock_put(struct pl_lsock *ls);

/* Route-less request counters, cached per worker (pl_stats_route takes a mutex). */
struct pl_nrstat {
	struct pl_nrstat *next;
	struct pl_route_stats *s;
	char listener[];
};

struct pl_worker {
	unsigned id;
	const struct pl_proxy_config *cfg;
	struct ev_loop *loop;
	pthread_t thread;
	ev_async wake;           /* table published, or stop requested */
	ev_prepare reaper;       /* frees closed connections outside their callbacks */
	ev_timer sweep;          /* 1 s housekeeping: upstream pool expiry */
	ev_timer drain_timer;    /* shutdown deadline */
	ev_timer accept_pause;   /* EMFILE back-off */
	atomic_int stop;         /* any thread: set by pl_proxy_run on SIGINT/SIGTERM */
	int draining;
	int exit_code;

	struct pl_wtable *wt;    /* current table, NULL before the first publish */
	struct pl_lsock *lsocks;

	/* http1.c */
	struct pl_h1conn *conns;     /* live client connections (doubly linked) */
	struct pl_h1conn *dead;      /* closed, freed by the reaper */
	struct pl_nrstat *nrstats;
	unsigned n_mirrors;
	uint64_t mirror_seq;
	void *mirrors;           /* live mirrors (struct mirror, http1.c) */
	void *mirror_dead;       /* finished mirrors, freed by the reaper */

	/* h2.c (issue 6): live and closed HTTP/2 client connections */
	struct pl_h2conn *h2, *h2_dead;

	/* upstream.c */
	struct pl_uppool *pool;
	struct pl_upconn *up_dead;

	/* tls.c, passthrough.c, l4.c (issue 5): live and closed connections of each kind */
	struct pl_tlshs *tls_hs, *tls_hs_dead;
	struct pl_ptconn *pt, *pt_dead;
	struct pl_l4conn *l4, *l4_dead;
	struct pl_udpsess *udp, *udp_dead;
	unsigned n_udp;

	/* admin.c (worker 0 only) */
	struct pl_admin *admin;

	/* any thread: gauges and counters for /metrics */
	atomic_uint n_conns;
	atomic_uint_fast64_t rejected;
	atomic_uint_fast64_t upstream_errors;
};

extern struct pl_worker *pl_workers;
extern unsigned pl_n_workers;

/* Resolves a bind's "address" + port into a sockaddr; 0 or -1. */
int pl_worker_sockaddr(const char *address, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);
/* Stats block for requests without a route on listener (may be ""). Never NULL. */
struct pl_route_stats *pl_worker_nrstats(struct pl_worker *w, const char *listener);

#endif
