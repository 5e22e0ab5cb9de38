/*
 * The protocol-neutral half of turning a client request into a backend
 * request, shared by HTTP/1.1 (http1.c) and HTTP/2 (h2.c): authority and
 * path checks, routing and filter collection, the values the backend head
 * is built from (Host/:authority, rewritten path, header modifiers,
 * X-Forwarded-*), and redirect Location values. Nothing here knows about a
 * connection or a wire format; callers own all storage and the result of
 * every call is a plain value or bytes in a caller buffer. Any worker thread;
 * the only mutable state touched is the rule's WRR cursor (pl_router_pick)
 * and the endpoint cursor (pl_router_endpoint).
 *
 * struct pl_wr: a bounded writer over [p, end). Writes past end set over and
 * write nothing more; callers size the buffer first and treat over as a bug
 * or a "does not fit" error. Include after "pl.h" (PL_UNLIKELY).
 */
#ifndef PL_REQHEAD_H
#define PL_REQHEAD_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <nghttp2/nghttp2.h>
#include "table-t.h"
#include "reqview.h"

#define PL_RH_MAX_MODS 4       /* header modifier filters per request (rule + backendRef) */
#define PL_RH_MAX_MIRRORS 4

struct pl_wr {
	char *p, *end;
	int over;
};

static inline void pl_wr_put(struct pl_wr *w, const void *s, size_t n)
{
	if (PL_UNLIKELY((size_t)(w->end - w->p) < n)) {
		w->over = 1;
		return;
	}
	memcpy(w->p, s, n);
	w->p += n;
}

#define PL_WR_LIT(w, s) pl_wr_put(w, s, sizeof(s) - 1)

static inline void pl_wr_str(struct pl_wr *w, const char *s)
{
	pl_wr_put(w, s, strlen(s));
}

void pl_wr_u64(struct pl_wr *w, uint64_t v);
/* "name: value\r\n" */
void pl_wr_hdr(struct pl_wr *w, const char *n, size_t nl, const char *v, size_t vl);

/* Reason phrase for a status ("Unknown" for codes the proxy never makes). */
const char *pl_rh_reason(int status);

/*
 * Host header or :authority value -> lower-case host without the port into
 * out (cap bytes, NUL-terminated). Returns the host length, or -1 when the
 * value has characters outside RFC 3986 reg-name/IP-literal/port, a bad
 * bracket or port, or the host does not fit. An empty value gives 0.
 */
int pl_rh_parse_host(const char *v, size_t n, char *out, size_t cap);

/* 1 if path has a "." or ".." segment, dots written as is or as "%2e" (it could escape a prefix match). */
int pl_rh_has_dot_segment(const char *p, size_t n);

/* The filters that apply to one request, collected rule first, then backendRef. */
struct pl_rh_filters {
	const struct pl_header_mod *req_mods[PL_RH_MAX_MODS];
	const struct pl_header_mod *resp_mods[PL_RH_MAX_MODS];
	unsigned n_req_mods, n_resp_mods;
	const struct pl_redirect *redirect;    /* first one wins */
	const struct pl_rewrite *rewrite;      /* first one wins */
	const struct pl_mirror *mirrors[PL_RH_MAX_MIRRORS];
	unsigned n_mirrors;
	const struct pl_cors *cors;            /* added (CORS): first one wins */
};

void pl_rh_collect_filters(struct pl_rh_filters *f, const struct pl_filter *fl, uint32_t n);

/*
 * Routing of a validated request. In: the worker, the listening socket's
 * bind (NULL when the listener left the table), the TLS server name ("" or
 * NULL without TLS), the request view (host already parsed) and now.
 * Out: a struct whose pointers stay valid while wt is held. pl_rh_route()
 * takes a reference on w->wt into r->wt whenever a table exists; the caller
 * keeps it and releases it with pl_wtable_put() when the request ends,
 * whatever the result.
 */
struct pl_wtable;
struct pl_worker;
struct pl_rh_route {
	struct pl_wtable *wt;
	const struct pl_listener *listener;
	const struct pl_route_entry *entry;
	struct pl_rule *rule;
	struct pl_cluster *cluster;
	const struct pl_endpoint *ep;
	struct pl_rh_filters f;
	double rule_deadline;        /* 0: none */
	int status;                  /* PL_RH_LOCAL: the status to answer */
	uint8_t close;               /* PL_RH_LOCAL: the connection should not be reused */
	const char *why;             /* PL_RH_LOCAL: for the log line */
	char whybuf[160];
};

/*
 * PL_RH_CORS (added): a CORS preflight on a rule with a CORS filter
 * (r->f.cors), answered by the caller with pl_cors_preflight() (cors.h)
 * before redirects and whether or not the rule has a usable backend.
 */
enum { PL_RH_PROXY = 0, PL_RH_REDIRECT, PL_RH_LOCAL, PL_RH_CORS };

int pl_rh_route(struct pl_worker *w, const struct pl_bind *b, const char *sni, const struct pl_req_view *view,
		double now, struct pl_rh_route *r);

/*
 * Added (CORS): when f->cors is set, fills store with the CORS filter's
 * change to the backend's response for this request (pl_cors_actual()) and
 * appends it to f->resp_mods, after the rule's and backendRef's modifiers.
 * store must live as long as the copy of resp_mods the caller keeps.
 *
 * Returns that change, or NULL without a CORS filter. Every response the
 * caller makes itself for the request after routing (redirect, 5xx for a
 * missing or failing backend, timeouts, ...) carries its set and add
 * fields too (pl_rh_mods_emit() / pl_rh_mods_each() over just this one),
 * so a browser shows the page the status rather than a CORS error: keep
 * it with the request. A preflight (PL_RH_CORS) replaces store's contents
 * with pl_cors_preflight()'s answer, which its reply carries instead.
 * Answers made before a rule matched (400, 404, 421, 431...) get nothing:
 * f->cors is NULL then.
 */
struct pl_cors_fields;
const struct pl_header_mod *pl_rh_cors_actual(struct pl_rh_filters *f, const struct pl_req_view *view,
					      struct pl_cors_fields *store);

/*
 * Header modifiers (RequestHeaderModifier / ResponseHeaderModifier lists).
 * pl_rh_mods_hit(): 1 if one of them removes or sets this name (the
 * message's own field is dropped). pl_rh_mods_size(): bytes their set and
 * add entries take as "name: value\r\n" lines. pl_rh_mods_each(): calls fn
 * for every set entry (skip_host: except "host", which the caller turns into
 * the authority) then every add entry, in filter order. pl_rh_mods_emit():
 * the same as HTTP/1.1 lines.
 */
int pl_rh_mods_hit(const struct pl_header_mod *const *mods, unsigned n, const char *name, size_t len);
size_t pl_rh_mods_size(const struct pl_header_mod *const *mods, unsigned n);
void pl_rh_mods_each(const struct pl_header_mod *const *mods, unsigned n, int skip_host,
		     void (*fn)(void *arg, const struct pl_kv *kv), void *arg);
void pl_rh_mods_emit(struct pl_wr *w, const struct pl_header_mod *const *mods, unsigned n, int skip_host);

/*
 * The backend's authority (Host / :authority): URLRewrite hostname, else a
 * RequestHeaderModifier set of Host, else dflt (what the client sent).
 */
void pl_rh_authority(const struct pl_rh_filters *f, const char *dflt, size_t dflt_len, const char **v, size_t *vl);

/* Bytes the rewritten path may need beyond the original path ("" rewrite: 0). */
size_t pl_rh_path_extra(const struct pl_rh_filters *f);

/*
 * Writes the backend's path (URLRewrite applied against match m) and
 * "?query" when query is not NULL into out (cap bytes). Returns the length
 * or -1 when it does not fit.
 */
int pl_rh_write_target(const struct pl_rh_filters *f, const struct pl_match *m, const char *path, size_t path_len,
		       const char *query, size_t query_len, char *out, size_t cap);

/*
 * The tail of X-Forwarded-For after the client's own values, and
 * X-Forwarded-Proto, as HTTP/1.1: "<peer>\r\nX-Forwarded-Proto: http[s]\r\n".
 */
void pl_rh_xff_tail(struct pl_wr *w, const char *peer, int tls);

/*
 * The request head for an HTTP/2 backend (h2c cluster) as an nghttp2_nv
 * array, pseudo-headers first: :method, :scheme "http", :authority
 * (pl_rh_authority() of the client's; omitted when empty), :path
 * (pl_rh_write_target()); then the client's fields with lower-cased names,
 * minus Host, Content-Length, X-Forwarded-For/-Proto and the fields that
 * describe one HTTP/1.1 connection (Connection, Keep-Alive,
 * Proxy-Connection, Transfer-Encoding, Upgrade, TE, HTTP2-Settings; Trailer
 * stays: the trailers follow) and those a request modifier removes or sets; then the
 * modifiers' set (but Host) and add entries; x-forwarded-for (the client's
 * values, then peer) and x-forwarded-proto; content-length when has_cl;
 * "te: trailers" when a TE field lists the trailers token. Fields the
 * caller must drop for reasons of its own (named by Connection) are left
 * out of hdrs beforehand.
 *
 * Returns one malloc'd block (free()) holding the array and copies of the
 * strings, except the modifiers' which point into the table (valid while
 * the caller pins it); *n is the number of fields. NULL with *err when out
 * of memory or the rewritten path does not fit.
 */
struct pl_rh_h2in {
	const char *method, *authority, *path, *query;   /* query: NULL when absent */
	size_t method_len, authority_len, path_len, query_len;
	const struct pl_match *match;                     /* the matched entry's, for URLRewrite */
	const struct pl_hdr *hdrs;
	uint32_t n_hdrs;
	const char *peer;
	int tls;                                          /* the client came over TLS */
	int has_cl;
	uint64_t cl;
};

nghttp2_nv *pl_rh_h2_head(const struct pl_rh_h2in *in, const struct pl_rh_filters *f, size_t *n, const char **err);

/*
 * 1 if name is a non-empty RFC 9110 token and value holds no NUL, CR, LF,
 * other control character (HTAB aside) or DEL: a field from an HTTP/2 peer
 * that can be written into an HTTP/1.1 head as it is.
 */
int pl_rh_field_ok(const uint8_t *name, size_t nl, const uint8_t *value, size_t vl);

/*
 * A RequestRedirect's Location as pre + value + post in a malloc'd string
 * (*len without NUL). NULL with *err set when out of memory or too long.
 */
char *pl_rh_location(const struct pl_redirect *rd, const struct pl_match *m, int tls, const char *host,
		     size_t host_len, int port, const char *path, size_t path_len, const char *query,
		     size_t query_len, const char *pre, const char *post, size_t *len, const char **err);
#endif
