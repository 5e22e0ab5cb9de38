/*
 * A parsed request head as the router and filters see it: views into the
 * connection's buffers, nothing owned. Filled by proxy/http1.c (and later h2).
 */
#ifndef PL_REQVIEW_H
#define PL_REQVIEW_H

#include <stdint.h>

struct pl_hdr {
	const char *name;    /* as received; compare case-insensitively */
	const char *value;   /* leading/trailing OWS already trimmed */
	uint32_t name_len, value_len;
};

struct pl_req_view {
	const char *method;
	uint32_t method_len;
	const char *path;    /* path part of the request target, starts with '/' */
	uint32_t path_len;
	const char *query;   /* after '?', without it; NULL when absent */
	uint32_t query_len;
	const char *host;    /* Host (or :authority) without port, lower-cased by the caller */
	uint32_t host_len;
	const struct pl_hdr *hdrs;
	uint32_t n_hdrs;
};

#endif
