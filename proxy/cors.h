/*
 * The HTTPRoute CORS filter's decisions: pure functions over the compiled
 * filter (struct pl_cors, table-t.h) and the request's fields. No I/O, no
 * allocation, any worker thread.
 *
 * A preflight (OPTIONS with Origin and Access-Control-Request-Method) on a
 * rule with the filter is answered by the proxy: pl_cors_preflight() gives
 * the status and fields. Any other request goes to the backend;
 * pl_cors_actual() gives what is added to (and dropped from) the backend's
 * response, and to any response the proxy makes itself for the request
 * once the rule matched (redirect, 5xx). Both describe fields as a struct pl_header_mod (set, add and
 * remove lists), so the callers write them with the response-modifier
 * helpers of reqhead.h. See docs/proxy.md "CORS" for the choices made where
 * the Gateway API leaves room.
 */
#ifndef PL_CORS_H
#define PL_CORS_H

#include <stddef.h>
#include "table-t.h"
#include "reqview.h"

/* Longer Origin values are never allowed (an http(s) origin is at most ~270 bytes). */
#define PL_CORS_ORIGIN_MAX 320
#define PL_CORS_MAX_FIELDS 7   /* set and add entries of one answer */

/* Fields of one answer; the pointers inside point into this struct, the filter and the request view. */
struct pl_cors_fields {
	struct pl_header_mod mod;
	struct pl_kv set[PL_CORS_MAX_FIELDS - 1];
	struct pl_kv add[1];
	char *remove[3];
	char origin[PL_CORS_ORIGIN_MAX + 1];
	char max_age[12];
};

/* 1 if v is a CORS preflight: OPTIONS with a non-empty Origin and Access-Control-Request-Method. */
int pl_cors_is_preflight(const struct pl_req_view *v);

/*
 * 1 if the Origin value o[0..n) is allowed by c: "*" allows any value of
 * visible ASCII characters ("null" included); other entries need an origin
 * (origin.h) of the same scheme and port whose host the entry's matches.
 */
int pl_cors_origin_allowed(const struct pl_cors *c, const char *o, size_t n);

/*
 * A preflight's answer. Returns 200 with out->mod's set list holding
 * Access-Control-Allow-Origin (the origin, or "*" for allowOrigins ["*"]
 * without credentials), -Allow-Credentials, -Allow-Methods (the list, or
 * the requested method for "*"), -Allow-Headers (the list, or the
 * requested headers for "*"), -Expose-Headers, -Max-Age, and Vary; or 403
 * with only Vary when the origin is not allowed (also when the request
 * holds more than one Origin). Values point into out, c and v's fields:
 * use them before any of those goes away.
 */
int pl_cors_preflight(struct pl_cors_fields *out, const struct pl_cors *c, const struct pl_req_view *v);

/*
 * The change to the backend's response for any other request: always
 * "Vary: Origin" (the answer depends on Origin, also for requests without
 * one); when the Origin is allowed, also sets Access-Control-Allow-Origin,
 * -Allow-Credentials and -Expose-Headers as configured and removes the
 * backend's own copies of those three. Returns &out->mod. Values point
 * into out (the origin is copied) and c only, so out may outlive v.
 */
const struct pl_header_mod *pl_cors_actual(struct pl_cors_fields *out, const struct pl_cors *c,
					   const struct pl_req_view *v);

#endif
