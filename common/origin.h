/*
 * Web origins as the CORS filter sees them: "scheme://host[:port]" (the
 * RFC 6454 serialisation browsers send in Origin). The controller parses
 * allowOrigins entries with it (host wildcards allowed), the proxy a
 * request's Origin field, so both read one grammar. Pure, any thread.
 */
#ifndef PL_ORIGIN_H
#define PL_ORIGIN_H

#include <stddef.h>
#include <stdint.h>

struct pl_origin {
	const char *scheme;          /* views into the parsed text */
	const char *host;            /* an IPv6 literal keeps its brackets: "[::1]" */
	uint32_t scheme_len, host_len;
	uint32_t port;               /* explicit, else the scheme's default (http/ws 80,
					https/wss 443), else 0 */
};

#define PL_ORIGIN_WILD 1     /* host may be "*" or start with "*." (allowOrigins entries) */

/*
 * Parses s[0..n) into o. scheme: RFC 3986 (ALPHA *(ALPHA / DIGIT / "+" /
 * "-" / ".")); host: a bracketed IPv6 literal or letters, digits, '-',
 * '.', '_' (with PL_ORIGIN_WILD also "*" alone or as a "*." prefix); an
 * optional port 1..65535; nothing after (no path, no trailing '/').
 * Returns 0, or -1 when s is not such an origin ("null" included).
 */
int pl_origin_parse(const char *s, size_t n, int flags, struct pl_origin *o);

#endif
