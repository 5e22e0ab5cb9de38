/*
 * libFuzzer target: HTTP/2 frames from a client into the proxy's server
 * session (proxy/h2.c), the real connection code on a socketpair.
 *
 * The input follows the client connection preface (prepended here, so every
 * input reaches frame parsing). The worker has a small hand-built table: one
 * HTTP listener for any host with a redirect rule ("/r": exercises redirect
 * computation and local responses) and a catch-all rule whose only backendRef
 * is invalid (500), so routing, header matching and the response paths run
 * but nothing ever connects anywhere. Besides "no crash" (ASan, UBSan), the
 * connection must be torn down cleanly: every stream and buffer freed (LSan).
 */
#include "common/pl.h"

#include <ev.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/table-t.h"
#include "proxy/h2.h"
#include "proxy/worker.h"

static struct pl_worker W;
static struct pl_proxy_config cfg;
static struct pl_table table;
static struct pl_bind bind_;
static struct pl_listener listener;
static struct pl_vhost vhost;
static struct pl_route_entry entries[2];
static struct pl_rule rules[2];
static struct pl_filter redirect;
static struct pl_kv_match hmatch;
static struct pl_wtable wt;

static void setup(void)
{
	pl_proxy_config_defaults(&cfg);
	cfg.max_header_bytes = 8192;
	pl_log_set_level(PL_LOG_ERROR);
	W.cfg = &cfg;
	W.loop = ev_loop_new(EVFLAG_AUTO);

	redirect.type = PL_FILTER_REDIRECT;
	redirect.u.redirect.scheme = "https";
	redirect.u.redirect.status_code = 301;
	redirect.u.redirect.path.type = PL_PATHMOD_PREFIX;
	redirect.u.redirect.path.value = "/new";
	rules[0].route = "HTTPRoute/default/r";
	rules[0].filters = &redirect;
	rules[0].n_filters = 1;
	rules[1].route = "HTTPRoute/default/all";
	hmatch.name = "x-fuzz";
	hmatch.value = "1";
	entries[0].match.path_type = PL_PATH_PREFIX;
	entries[0].match.path = "/r";
	entries[0].match.path_len = 2;
	entries[0].match.headers = &hmatch;
	entries[0].match.n_headers = 1;
	entries[0].rule = &rules[0];
	entries[1].match.path_type = PL_PATH_PREFIX;
	entries[1].match.path = "/";
	entries[1].match.path_len = 1;
	entries[1].rule = &rules[1];
	vhost.host.kind = PL_HOST_ANY;
	vhost.host.name = "";
	vhost.entries = entries;
	vhost.n_entries = 2;
	listener.name = "default/gw/http";
	listener.proto = PL_PROTO_HTTP;
	listener.host.kind = PL_HOST_ANY;
	listener.host.name = "";
	listener.vhosts = &vhost;
	listener.n_vhosts = 1;
	bind_.address = "127.0.0.1";
	bind_.port = 80;
	bind_.listeners = &listener;
	bind_.n_listeners = 1;
	table.binds = &bind_;
	table.n_binds = 1;
	atomic_init(&table.refcnt, 1 << 30);   /* never freed */
	wt.t = &table;
	wt.refs = 1;                           /* the worker's own: never dropped */
	W.wt = &wt;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int once;
	if (!once) {
		setup();
		once = 1;
	}
	if (size > 256 * 1024)
		return 0;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return 0;
	char *buf = malloc(PL_H2_PREFACE_LEN + size);
	if (!buf) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	memcpy(buf, PL_H2_PREFACE, PL_H2_PREFACE_LEN);
	memcpy(buf + PL_H2_PREFACE_LEN, data, size);

	struct pl_lsock *ls = calloc(1, sizeof(*ls));
	if (!ls) {
		free(buf);
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	ls->w = &W;
	ls->fd = -1;
	ls->bind = &bind_;
	ls->port = 80;
	ls->refs = 1;

	pl_h2_accept(&W, ls, sv[0], "fuzz", NULL, buf, PL_H2_PREFACE_LEN + size);
	free(buf);
	char sink[65536];
	for (int i = 0; i < 4; i++) {
		ev_run(W.loop, EVRUN_NOWAIT);
		while (read(sv[1], sink, sizeof(sink)) > 0)
			;
	}
	pl_h2_close_all(&W);
	pl_h2_reap(&W);
	pl_lsock_put(ls);
	close(sv[1]);
	return 0;
}
