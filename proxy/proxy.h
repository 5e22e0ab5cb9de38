/*
 * The data plane's public face, used only by main.c.
 *
 * Threads: pl_proxy_run() runs in the main thread; it starts cfg->workers
 * worker threads, each with its own libev loop and its own SO_REUSEPORT socket
 * per bind of the current table, plus the admin listener on worker 0's loop.
 * It picks up every table published with pl_table_publish() (common/table.h)
 * and returns when SIGINT/SIGTERM arrive and connections have drained (or the
 * drain timeout passed). Returns a process exit code. The caller blocks
 * SIGINT/SIGTERM before it starts any thread (so no other thread takes them);
 * pl_proxy_run waits for them with sigwaitinfo.
 */
#ifndef PL_PROXY_H
#define PL_PROXY_H

#include <stddef.h>
#include <stdint.h>

struct pl_proxy_config {
	unsigned workers;               /* >= 1 */
	const char *admin_addr;         /* "127.0.0.1:9901"; NULL or "" = no admin listener */
	uint32_t max_conns;             /* per worker; accept beyond it closes at once */
	uint64_t header_timeout_ms;     /* whole request head must arrive within this */
	uint64_t idle_timeout_ms;       /* keep-alive idle, and idle on an active connection */
	uint64_t connect_timeout_ms;    /* upstream connect */
	uint64_t backend_timeout_ms;    /* default upstream response-head timeout when the rule sets none */
	uint64_t drain_timeout_ms;      /* on shutdown */
	size_t max_request_line;        /* 414-like limit reported as 431/414 */
	size_t max_header_bytes;        /* whole header block; beyond: 431 */
	/* The callback the admin /readyz asks, besides "a table was published". May be NULL. */
	int (*ready)(void);
};

void pl_proxy_config_defaults(struct pl_proxy_config *cfg);
int pl_proxy_run(const struct pl_proxy_config *cfg);

/* The demo/test echo backend (pylon echo). Blocks; returns an exit code. */
int pl_echo_run(const char *listen_addr);

#endif
