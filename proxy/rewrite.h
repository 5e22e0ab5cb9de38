/*
 * Gateway API path and URL computations for URLRewrite and RequestRedirect.
 * Pure; results written into caller buffers; any thread.
 *
 * pl_rewrite_path(): applies pm to path (the request path, no query) given the
 * matched entry's match m (needed for ReplacePrefixMatch). Writes the new path
 * to out (NUL-terminated), returns its length, or -1 if it does not fit.
 * ReplacePrefixMatch follows the spec: the matched prefix is replaced on path
 * element boundaries ("/foo" -> "/bar": "/foo/x" -> "/bar/x", "/foo" -> "/bar";
 * replacing with "/" never yields "//" and an empty result becomes "/").
 *
 * pl_redirect_location(): builds the Location value for a RequestRedirect:
 * scheme (filter's or the request's), hostname (filter's or the request's),
 * port per the spec (filter's; else the listener port unless the scheme changed;
 * omitted when it is the scheme's default 80/443), path (rewritten or kept) and
 * the original query. Returns length or -1 if it does not fit.
 */
#ifndef PL_REWRITE_H
#define PL_REWRITE_H

#include <stddef.h>
#include "table-t.h"

int pl_rewrite_path(const struct pl_path_mod *pm, const struct pl_match *m, const char *path, size_t path_len,
		    char *out, size_t out_size);
int pl_redirect_location(const struct pl_redirect *rd, const struct pl_match *m,
			 const char *req_scheme, const char *host, size_t host_len, int listener_port,
			 const char *path, size_t path_len, const char *query, size_t query_len,
			 char *out, size_t out_size);

#endif
