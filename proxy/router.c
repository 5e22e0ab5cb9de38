#include "pl.h"

#include "router.h"
#include "table.h"

/*
 * Matching semantics (Gateway API HTTPRouteMatch), with the choices the spec
 * leaves to implementations:
 * - Paths are compared as received: no percent-decoding and no dot-segment
 *   or slash normalisation happen here, so "/a%2Fb" never matches prefix
 *   "/a". Matching is case-sensitive.
 * - A header that appears several times is matched against its first
 *   occurrence only (we do not join the values with ",").
 * - A query parameter given several times is matched against its first
 *   value; "a" without "=" has the empty value. Names and values are
 *   compared undecoded and case-sensitively.
 * - Regexes (POSIX ERE, anchored by the compiler) run on a NUL-terminated
 *   copy in a stack buffer of REGEX_BUF bytes; longer subjects, or subjects
 *   containing a NUL byte, never match.
 */
#define REGEX_BUF 8192

static int regex_match(const regex_t *re, const char *s, size_t n)
{
	char buf[REGEX_BUF];

	if (!re || n >= sizeof(buf) || memchr(s, '\0', n))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return regexec(re, buf, 0, NULL, 0) == 0;
}

static int str_match(const struct pl_kv_match *km, const char *v, size_t n)
{
	if (km->type == PL_MATCH_REGEX)
		return regex_match(km->re, v, n);
	size_t vl = strlen(km->value);
	return vl == n && memcmp(km->value, v, n) == 0;
}

static int path_match(const struct pl_match *m, const char *path, size_t n)
{
	size_t pl;

	switch (m->path_type) {
	case PL_PATH_EXACT:
		return n == m->path_len && memcmp(path, m->path, n) == 0;
	case PL_PATH_PREFIX:
		/* The compiler strips the trailing '/'; tolerate it anyway. */
		pl = m->path_len;
		while (pl > 0 && m->path[pl - 1] == '/')
			pl--;
		if (pl == 0)
			return 1;   /* "/" matches every path */
		return n >= pl && memcmp(path, m->path, pl) == 0 && (n == pl || path[pl] == '/');
	case PL_PATH_REGEX:
		return regex_match(m->path_re, path, n);
	}
	return 0;
}

static int header_match(const struct pl_kv_match *km, const struct pl_req_view *r)
{
	size_t nl = strlen(km->name);

	for (uint32_t i = 0; i < r->n_hdrs; i++) {
		const struct pl_hdr *h = &r->hdrs[i];
		if (h->name_len == nl && pl_strncaseeq(h->name, km->name, nl))
			return str_match(km, h->value, h->value_len);   /* first occurrence decides */
	}
	return 0;
}

/* Finds the first value of parameter name in query q[0..qn), without allocating. */
static int query_find(const char *q, size_t qn, const char *name, size_t nl, const char **v, size_t *vn)
{
	size_t i = 0;

	while (i <= qn) {
		const char *amp = memchr(q + i, '&', qn - i);
		size_t end = amp ? (size_t)(amp - q) : qn;
		const char *eq = memchr(q + i, '=', end - i);
		size_t kend = eq ? (size_t)(eq - q) : end;

		if (kend - i == nl && memcmp(q + i, name, nl) == 0) {
			*v = eq ? eq + 1 : q + end;
			*vn = eq ? end - kend - 1 : 0;
			return 1;
		}
		if (!amp)
			break;
		i = end + 1;
	}
	return 0;
}

static int query_match(const struct pl_kv_match *km, const struct pl_req_view *r)
{
	const char *v;
	size_t vn;
	size_t nl = strlen(km->name);

	if (!r->query || nl == 0)
		return 0;
	if (!query_find(r->query, r->query_len, km->name, nl, &v, &vn))
		return 0;
	return str_match(km, v, vn);
}

int pl_router_match(const struct pl_match *m, const struct pl_req_view *r)
{
	if (!path_match(m, r->path, r->path_len))
		return 0;
	if (m->method) {
		size_t ml = strlen(m->method);
		if (ml != r->method_len || memcmp(m->method, r->method, ml) != 0)
			return 0;
	}
	for (uint32_t i = 0; i < m->n_headers; i++)
		if (!header_match(&m->headers[i], r))
			return 0;
	for (uint32_t i = 0; i < m->n_queries; i++)
		if (!query_match(&m->queries[i], r))
			return 0;
	return 1;
}

const struct pl_listener *pl_router_listener(const struct pl_bind *b, const char *host, uint32_t host_len)
{
	for (uint32_t i = 0; i < b->n_listeners; i++)
		if (pl_hostname_matches(&b->listeners[i].host, host, host_len))
			return &b->listeners[i];
	return NULL;
}

const struct pl_route_entry *pl_router_find(const struct pl_listener *l, const struct pl_req_view *r)
{
	const struct pl_vhost *vh = NULL;

	for (uint32_t i = 0; i < l->n_vhosts; i++) {
		if (pl_hostname_matches(&l->vhosts[i].host, r->host, r->host_len)) {
			vh = &l->vhosts[i];
			break;
		}
	}
	if (!vh)
		return NULL;
	/* Only the most specific vhost is searched: no fallback to a wider one. */
	for (uint32_t i = 0; i < vh->n_entries; i++)
		if (pl_router_match(&vh->entries[i].match, r))
			return &vh->entries[i];
	return NULL;
}

const struct pl_backend *pl_router_pick(struct pl_rule *r)
{
	if (r->n_schedule == 0)
		return NULL;
	unsigned pos = atomic_fetch_add_explicit(&r->sched_pos, 1, memory_order_relaxed);
	uint16_t idx = r->schedule[pos % r->n_schedule];
	PL_BUG_ON(idx >= r->n_backends);
	const struct pl_backend *b = &r->backends[idx];
	return b->cluster ? b : NULL;
}

const struct pl_endpoint *pl_router_endpoint(struct pl_cluster *c)
{
	uint32_t n = c->n_eps;

	if (n == 0)
		return NULL;
	unsigned start = atomic_fetch_add_explicit(&c->rr, 1, memory_order_relaxed);
	for (uint32_t k = 0; k < n; k++) {
		const struct pl_endpoint *ep = &c->eps[(start + k) % n];
		if (ep->ready) {
			/* Move the cursor past the skipped endpoints, so the ready one
			 * after a not-ready one does not get twice its share. */
			if (k)
				atomic_fetch_add_explicit(&c->rr, k, memory_order_relaxed);
			return ep;
		}
	}
	return NULL;
}
