/*
 * RequestMirror: fire-and-forget copies of requests to a mirror cluster.
 *
 * A mirror gets its own fresh backend connection, sends the request head
 * (with "Connection: close" added) and, when small enough and already
 * received whole, the body; it then reads and discards whatever the backend
 * answers until the backend closes or a timeout passes. Nothing it does can
 * affect the client's request: every failure just ends the mirror. Requests
 * whose body is larger than PL_MIRROR_MAX_BODY or still streaming are not
 * mirrored at all (decided by the caller). At most PL_MIRRORS_INFLIGHT
 * mirrors run per worker; beyond that, mirrors are skipped.
 *
 * Threads: the worker's loop only.
 */
#ifndef PL_MIRROR_H
#define PL_MIRROR_H

#include <stddef.h>

#define PL_MIRROR_MAX_BODY (16 * 1024)
#define PL_MIRRORS_INFLIGHT 256

struct pl_worker;
struct pl_mirror;

/*
 * Mirrors the request whose backend head is head[0, len) (ending in CRLFCRLF,
 * copied) and whose body is body[0, blen) (copied; blen may be 0), subject
 * to mi's percentage.
 */
void pl_mirror_start(struct pl_worker *w, const struct pl_mirror *mi, const char *head, size_t len,
		     const char *body, size_t blen);
/* Frees finished mirrors; from the worker's prepare watcher. */
void pl_mirror_reap(struct pl_worker *w);
/* Ends every running mirror (worker shutdown). */
void pl_mirror_close_all(struct pl_worker *w);

#endif
