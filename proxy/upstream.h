/*
 * Upstream (backend) connections and the per-worker keep-alive pool.
 *
 * A pool is keyed by (cluster id, endpoint address): cluster ids are stable
 * across table swaps, so idle connections survive a swap. Idle connections
 * keep a read watcher: a backend that closes (or sends stray bytes on) an idle
 * connection is noticed and the connection dropped at once. Idle connections
 * expire after pl_up_idle_ms, and at most PL_UP_MAX_IDLE are kept per key.
 *
 * Ownership: a connection handed out by pl_up_connect() belongs to its caller
 * until pl_up_release() (back to the pool, or closed) or pl_up_close().
 * Closed connections are freed by pl_up_reap() from the worker's prepare
 * watcher, never inside a callback.
 *
 * Events: the owner's cb(u, ev) is called with PL_UP_EV_CONNECTED (connect
 * finished; u->err == 0), PL_UP_EV_ERROR (connect failed; u->err = errno),
 * PL_UP_EV_READ, PL_UP_EV_WRITE (socket ready; only while the owner wants it,
 * see pl_up_want()). Reading and writing the socket is the owner's business.
 *
 * Threads: a worker's connections and pool are used by that worker only.
 */
#ifndef PL_UPSTREAM_H
#define PL_UPSTREAM_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "buf.h"

#define PL_UP_MAX_IDLE 64

struct pl_worker;
struct pl_endpoint;
struct pl_upent;
struct pl_cluster;
struct pl_backend_tls;
struct ssl_st;

enum pl_up_state { PL_UP_CONNECTING = 0, PL_UP_READY, PL_UP_IDLE, PL_UP_CLOSED };
enum { PL_UP_EV_CONNECTED = 1, PL_UP_EV_ERROR, PL_UP_EV_READ, PL_UP_EV_WRITE };

struct pl_upkey {
	uint32_t cluster_id;
	uint64_t tls_fp;         /* pl_backend_tls fingerprint, 0: plaintext (a policy change never reuses) */
	socklen_t addrlen;
	struct sockaddr_storage addr;
};

struct pl_upconn {
	struct pl_worker *w;
	int fd;
	enum pl_up_state st;
	int err;                 /* errno of a failed connect */
	unsigned reused;         /* requests completed on this connection before */
	ev_io rio, wio;
	struct pl_upkey key;
	char peer[64];           /* endpoint text for logs */
	struct pl_buf in;        /* bytes read from the backend (owner's use) */
	void (*cb)(struct pl_upconn *u, int ev);
	void *data;
	ev_tstamp idle_since;
	struct pl_upent *ent;            /* pool entry while IDLE */
	struct pl_upconn *next, *prev;   /* pool idle list, or the reap list */
	/* TLS to the backend (BackendTLSPolicy): NULL for plaintext */
	struct ssl_st *ssl;
	const struct pl_backend_tls *hs_tls;  /* during the handshake only (the owner pins the table) */
	uint8_t rd_wants_write;  /* the last pl_up_read needs writability (TLS) */
	char cluster[96];        /* cluster name for logs */
	char errmsg[192];        /* PL_UP_EV_ERROR: why, when more than strerror(err) (TLS verification) */
};

void pl_up_init(struct pl_worker *w);
void pl_up_fini(struct pl_worker *w);      /* closes and frees everything (worker exit) */

/*
 * A connection to ep of cluster cl: an idle pooled one (st READY, reused > 0)
 * unless fresh is set, else a new one (st CONNECTING, or READY when connect()
 * finished at once on a plaintext cluster). NULL on immediate failure with
 * *err set (-errno convention: e.g. -EMFILE, -ECONNREFUSED, -EPROTO).
 * With cl->tls the connection is TLS (SNI, chain and name verification; see
 * uptls.h), and CONNECTED comes after a verified handshake (st stays
 * CONNECTING meanwhile, so connect timeouts cover it). A handshake or
 * verification failure is PL_UP_EV_ERROR with err EPROTO and errmsg set, and
 * is logged (warn) with the cluster and policy names: the connection fails
 * closed, nothing of the request is sent. TLS connections are pooled like
 * plain ones, keyed also by the policy fingerprint. Owners must do I/O with
 * pl_up_read/pl_up_send. A cluster whose policy is unusable (cl->tls->error)
 * is refused with -EPROTO.
 */
struct pl_upconn *pl_up_connect(struct pl_worker *w, const struct pl_cluster *cl, const struct pl_endpoint *ep,
				int fresh, void (*cb)(struct pl_upconn *, int), void *data, int *err);
/* Reads into u->in: pl_buf_read_fd() conventions (bytes, 0 EOF, -EAGAIN, -ENOBUFS, -errno). */
ssize_t pl_up_read(struct pl_upconn *u);
/* Sends p[0, n): bytes sent (maybe fewer), -EAGAIN or -errno (-EPIPE on a TLS close). */
ssize_t pl_up_send(struct pl_upconn *u, const void *p, size_t n);
/* Starts/stops the read and write watchers of a READY connection. */
void pl_up_want(struct pl_upconn *u, int read, int write);
/* Gives u back: pooled if reusable, empty-buffered and there is room; else closed. */
void pl_up_release(struct pl_upconn *u, int reusable);
void pl_up_close(struct pl_upconn *u);
/* Frees closed connections; called from the worker's prepare watcher. */
void pl_up_reap(struct pl_worker *w);
/* Closes idle connections older than the idle limit; called every second. */
void pl_up_sweep(struct pl_worker *w);
/* Closes every idle connection (shutdown). */
void pl_up_close_idle(struct pl_worker *w);

#endif
