#include "pl.h"

#include "rewrite.h"

/*
 * Bounded output: every append checks room; on overflow the writer is marked
 * bad and the caller returns -1 instead of truncating a URL.
 */
struct out {
	char *p;
	size_t size, len;
	int bad;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->bad || n >= o->size - o->len) {   /* keep room for the NUL */
		o->bad = 1;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static int finish(struct out *o)
{
	if (o->bad || o->len > INT32_MAX)
		return -1;
	return (int)o->len;
}

static size_t strip_slashes(const char *s, size_t n)
{
	while (n > 0 && s[n - 1] == '/')
		n--;
	return n;
}

/*
 * ReplacePrefixMatch, following the table in the Gateway API's
 * HTTPPathModifier documentation: the matched prefix and the replacement are
 * both taken without trailing '/', the remainder of the path (empty or
 * starting with '/') is appended to the replacement, and an empty result is
 * "/". So "/foo/bar" with prefix "/foo/" and replacement "/xyz/" is "/xyz/bar",
 * and "/foo" with replacement "/" is "/".
 * If the path does not match the prefix on an element boundary (the router
 * would not have chosen this entry) it is left unchanged.
 */
static void replace_prefix(struct out *o, const struct pl_match *m, const char *repl,
			   const char *path, size_t path_len)
{
	size_t pl = strip_slashes(m->path, m->path_len);
	size_t rl = strip_slashes(repl, strlen(repl));

	if (path_len < pl || memcmp(path, m->path, pl) != 0 || (path_len > pl && path[pl] != '/')) {
		put(o, path, path_len);
		return;
	}
	size_t start = o->len;
	put(o, repl, rl);
	put(o, path + pl, path_len - pl);
	if (o->len == start)
		put(o, "/", 1);
}

static void rewrite_path(struct out *o, const struct pl_path_mod *pm, const struct pl_match *m,
			 const char *path, size_t path_len)
{
	switch (pm->type) {
	case PL_PATHMOD_FULL:
		if (pm->value && pm->value[0])
			puts_(o, pm->value);
		else
			put(o, "/", 1);
		return;
	case PL_PATHMOD_PREFIX:
		/* The compiler only allows it with a PathPrefix match (the spec sets
		 * Accepted=False otherwise); anything else keeps the path. */
		if (m && m->path_type == PL_PATH_PREFIX && m->path) {
			replace_prefix(o, m, pm->value ? pm->value : "", path, path_len);
			return;
		}
		break;
	case PL_PATHMOD_NONE:
		break;
	}
	put(o, path, path_len);
}

int pl_rewrite_path(const struct pl_path_mod *pm, const struct pl_match *m, const char *path, size_t path_len,
		    char *out, size_t out_size)
{
	struct out o = { out, out_size, 0, out_size == 0 };

	if (out_size)
		out[0] = '\0';
	rewrite_path(&o, pm, m, path, path_len);
	return finish(&o);
}

static int scheme_is(const char *scheme, const char *name)
{
	size_t n = strlen(name);
	return strlen(scheme) == n && pl_strncaseeq(scheme, name, n);
}

static int default_port(const char *scheme)
{
	if (scheme_is(scheme, "http"))
		return 80;
	if (scheme_is(scheme, "https"))
		return 443;
	return 0;
}

int pl_redirect_location(const struct pl_redirect *rd, const struct pl_match *m,
			 const char *req_scheme, const char *host, size_t host_len, int listener_port,
			 const char *path, size_t path_len, const char *query, size_t query_len,
			 char *out, size_t out_size)
{
	struct out o = { out, out_size, 0, out_size == 0 };
	const char *scheme = rd->scheme ? rd->scheme : (req_scheme ? req_scheme : "http");
	int port;

	if (out_size)
		out[0] = '\0';

	/*
	 * Port, per HTTPRequestRedirectFilter.port: the filter's; else, when the
	 * filter sets a scheme, that scheme's well-known port (the listener's if
	 * it has none); else the listener's port. It is left out of Location
	 * when it is the default port of the scheme actually used.
	 */
	if (rd->port > 0)
		port = rd->port;
	else if (rd->scheme && default_port(rd->scheme))
		port = default_port(rd->scheme);
	else
		port = listener_port;

	if (rd->hostname) {
		host = rd->hostname;
		host_len = strlen(rd->hostname);
	}

	puts_(&o, scheme);
	put(&o, "://", 3);
	/* An IPv6 literal needs brackets once a port may follow. */
	int v6 = host_len && host[0] != '[' && memchr(host, ':', host_len);
	if (v6)
		put(&o, "[", 1);
	put(&o, host, host_len);
	if (v6)
		put(&o, "]", 1);
	if (port > 0 && port <= 65535 && port != default_port(scheme)) {
		char pbuf[8];
		int n = snprintf(pbuf, sizeof(pbuf), ":%d", port);
		put(&o, pbuf, (size_t)n);
	}
	rewrite_path(&o, &rd->path, m, path, path_len);
	if (query) {
		put(&o, "?", 1);
		put(&o, query, query_len);
	}
	if (o.bad)
		return -1;
	/* Never emit a header value that could split the response. */
	for (size_t i = 0; i < o.len; i++) {
		unsigned char c = (unsigned char)out[i];
		if (c < 0x20 || c == 0x7f)
			return -1;
	}
	return finish(&o);
}
