/*
 * Admin HTTP listener: GET /healthz, /readyz, /metrics (Prometheus text),
 * /config (the current table's JSON). One request per connection, answered
 * with Connection: close. Runs on worker 0's loop.
 *
 * Threads: pl_admin_open() on the main thread before the workers start (so a
 * bad address fails start-up); pl_admin_start()/pl_admin_close() on worker
 * 0's thread (or on the main thread when no worker ever started).
 */
#ifndef PL_ADMIN_H
#define PL_ADMIN_H

struct pl_worker;

/* Binds and listens on addr ("host:port", "[v6]:port"). 0, or -1 (logged). */
int pl_admin_open(struct pl_worker *w, const char *addr);
void pl_admin_start(struct pl_worker *w);
void pl_admin_close(struct pl_worker *w);

#endif
