/*
 * Unit tests for proxy/rewrite.c: the Gateway API HTTPPathModifier table
 * (all rows) and HTTPRequestRedirectFilter Location construction.
 */
#include "common/pl.h"

#include "proxy/rewrite.h"
#include "check.h"

static struct pl_match prefix(const char *p)
{
	struct pl_match m = { .path_type = PL_PATH_PREFIX, .path = (char *)p, .path_len = strlen(p) };
	return m;
}

/* Rewrites and checks the result, plus that every too-small buffer gives -1. */
static void check_rw(const struct pl_path_mod *pm, const struct pl_match *m, const char *path, const char *want)
{
	char out[256];
	int n = pl_rewrite_path(pm, m, path, strlen(path), out, sizeof(out));

	if (n < 0 || strcmp(out, want) != 0 || (size_t)n != strlen(want)) {
		fprintf(stderr, "%s:%d: rewrite(%s) = %d \"%s\", want \"%s\"\n", __FILE__, __LINE__, path, n,
			n < 0 ? "" : out, want);
		fails++;
		return;
	}
	for (size_t sz = 0; sz <= strlen(want); sz++) {
		char small[256];
		memset(small, 'Z', sizeof(small));
		CHECK(pl_rewrite_path(pm, m, path, strlen(path), small, sz) == -1);
		CHECK(small[sz] == 'Z');     /* nothing written past the buffer */
	}
	CHECK(pl_rewrite_path(pm, m, path, strlen(path), out, strlen(want) + 1) == n);
}

/* HTTPPathModifier.ReplacePrefixMatch documentation table, every row. */
static const struct { const char *path, *prefix, *repl, *want; } spec_table[] = {
	{ "/foo/bar", "/foo", "/xyz", "/xyz/bar" },
	{ "/foo/bar", "/foo", "/xyz/", "/xyz/bar" },
	{ "/foo/bar", "/foo/", "/xyz", "/xyz/bar" },
	{ "/foo/bar", "/foo/", "/xyz/", "/xyz/bar" },
	{ "/foo", "/foo", "/xyz", "/xyz" },
	{ "/foo/", "/foo", "/xyz", "/xyz/" },
	{ "/foo/bar", "/foo", "", "/bar" },
	{ "/foo/", "/foo", "", "/" },
	{ "/foo", "/foo", "", "/" },
	{ "/foo/", "/foo", "/", "/" },
	{ "/foo", "/foo", "/", "/" },
};

static void test_prefix(void)
{
	for (size_t i = 0; i < PL_ARRAY_LEN(spec_table); i++) {
		struct pl_path_mod pm = { PL_PATHMOD_PREFIX, (char *)spec_table[i].repl };
		struct pl_match m = prefix(spec_table[i].prefix);
		check_rw(&pm, &m, spec_table[i].path, spec_table[i].want);
		/* the compiler normalises "/foo/" to "/foo": same answer */
		char norm[64];
		size_t n = strlen(spec_table[i].prefix);
		memcpy(norm, spec_table[i].prefix, n + 1);
		if (n > 1 && norm[n - 1] == '/')
			norm[n - 1] = '\0';
		m = prefix(norm);
		check_rw(&pm, &m, spec_table[i].path, spec_table[i].want);
	}

	struct pl_path_mod pm = { PL_PATHMOD_PREFIX, "/xyz" };
	struct pl_match m = prefix("/");
	check_rw(&pm, &m, "/", "/xyz/");
	check_rw(&pm, &m, "/a/b", "/xyz/a/b");
	pm.value = "/";
	check_rw(&pm, &m, "/a/b", "/a/b");
	check_rw(&pm, &m, "/", "/");

	m = prefix("/foo/bar");
	pm.value = "/x";
	check_rw(&pm, &m, "/foo/bar/baz", "/x/baz");
	check_rw(&pm, &m, "/foo/bar//baz", "/x//baz");
	/* not a match on an element boundary: unchanged */
	check_rw(&pm, &m, "/foo/barbaz", "/foo/barbaz");
	check_rw(&pm, &m, "/other", "/other");

	/* ReplacePrefixMatch with a non-prefix match keeps the path */
	struct pl_match ex = { .path_type = PL_PATH_EXACT, .path = "/foo", .path_len = 4 };
	check_rw(&pm, &ex, "/foo", "/foo");
	check_rw(&pm, NULL, "/foo", "/foo");
}

static void test_full(void)
{
	struct pl_path_mod pm = { PL_PATHMOD_FULL, "/new" };
	struct pl_match m = prefix("/foo");
	check_rw(&pm, &m, "/foo/bar", "/new");
	check_rw(&pm, &m, "/foo", "/new");
	check_rw(&pm, NULL, "/anything", "/new");
	pm.value = "/";
	check_rw(&pm, &m, "/foo/bar", "/");
	pm.value = "";
	check_rw(&pm, &m, "/foo/bar", "/");

	pm = (struct pl_path_mod){ PL_PATHMOD_NONE, NULL };
	check_rw(&pm, &m, "/foo/bar", "/foo/bar");
}

static void check_loc(const struct pl_redirect *rd, const struct pl_match *m, const char *scheme, const char *host,
		      int lport, const char *path, const char *query, const char *want, int line)
{
	char out[512];
	int n = pl_redirect_location(rd, m, scheme, host, strlen(host), lport, path, strlen(path), query,
				     query ? strlen(query) : 0, out, sizeof(out));
	if (!want) {
		if (n != -1) {
			fprintf(stderr, "%s:%d: location = \"%s\", want -1\n", __FILE__, line, out);
			fails++;
		}
		return;
	}
	if (n < 0 || strcmp(out, want) != 0 || (size_t)n != strlen(want)) {
		fprintf(stderr, "%s:%d: location = %d \"%s\", want \"%s\"\n", __FILE__, line, n, n < 0 ? "" : out, want);
		fails++;
		return;
	}
	for (size_t sz = 0; sz <= strlen(want); sz++) {
		char small[512];
		memset(small, 'Z', sizeof(small));
		CHECK(pl_redirect_location(rd, m, scheme, host, strlen(host), lport, path, strlen(path), query,
					   query ? strlen(query) : 0, small, sz) == -1);
		CHECK(small[sz] == 'Z');
	}
}

#define LOC(rd, m, scheme, host, lport, path, query, want) \
	check_loc(rd, m, scheme, host, lport, path, query, want, __LINE__)

static void test_redirect(void)
{
	struct pl_match m = prefix("/foo");
	struct pl_redirect rd = { .status_code = 302 };

	/* nothing set: request scheme and host, listener port */
	LOC(&rd, &m, "http", "a.com", 80, "/foo/x", NULL, "http://a.com/foo/x");
	LOC(&rd, &m, "http", "a.com", 8080, "/foo/x", NULL, "http://a.com:8080/foo/x");
	LOC(&rd, &m, "https", "a.com", 443, "/foo/x", NULL, "https://a.com/foo/x");
	LOC(&rd, &m, "https", "a.com", 8443, "/foo/x", NULL, "https://a.com:8443/foo/x");
	LOC(&rd, &m, "http", "a.com", 443, "/", NULL, "http://a.com:443/");
	LOC(&rd, &m, NULL, "a.com", 80, "/", NULL, "http://a.com/");

	/* scheme set, port unset: the scheme's well-known port, not the listener's */
	rd.scheme = "https";
	LOC(&rd, &m, "http", "a.com", 8080, "/foo", NULL, "https://a.com/foo");
	LOC(&rd, &m, "http", "a.com", 80, "/foo", "q=1", "https://a.com/foo?q=1");
	rd.scheme = "http";
	LOC(&rd, &m, "https", "a.com", 8443, "/foo", NULL, "http://a.com/foo");
	LOC(&rd, &m, "http", "a.com", 8080, "/foo", NULL, "http://a.com/foo");

	/* port set */
	rd.port = 8443;
	rd.scheme = "https";
	LOC(&rd, &m, "http", "a.com", 80, "/foo", NULL, "https://a.com:8443/foo");
	rd.port = 443;
	LOC(&rd, &m, "http", "a.com", 80, "/foo", NULL, "https://a.com/foo");
	rd.port = 80;
	LOC(&rd, &m, "http", "a.com", 80, "/foo", NULL, "https://a.com:80/foo");
	rd.scheme = NULL;
	LOC(&rd, &m, "http", "a.com", 8080, "/foo", NULL, "http://a.com/foo");
	rd.port = 9000;
	LOC(&rd, &m, "http", "a.com", 8080, "/foo", NULL, "http://a.com:9000/foo");
	rd.port = 0;

	/* hostname */
	rd.hostname = "b.org";
	LOC(&rd, &m, "http", "a.com", 80, "/foo", NULL, "http://b.org/foo");
	LOC(&rd, &m, "http", "a.com", 81, "/foo", NULL, "http://b.org:81/foo");
	rd.hostname = NULL;

	/* path modifiers, query kept */
	rd.path = (struct pl_path_mod){ PL_PATHMOD_PREFIX, "/bar" };
	LOC(&rd, &m, "http", "a.com", 80, "/foo/x/y", "a=1&b=2", "http://a.com/bar/x/y?a=1&b=2");
	LOC(&rd, &m, "http", "a.com", 80, "/foo", NULL, "http://a.com/bar");
	LOC(&rd, &m, "http", "a.com", 80, "/foo", "", "http://a.com/bar?");
	rd.path = (struct pl_path_mod){ PL_PATHMOD_PREFIX, "" };
	LOC(&rd, &m, "http", "a.com", 80, "/foo", NULL, "http://a.com/");
	rd.path = (struct pl_path_mod){ PL_PATHMOD_FULL, "/full" };
	LOC(&rd, &m, "http", "a.com", 80, "/foo/x", "z", "http://a.com/full?z");
	rd.path = (struct pl_path_mod){ PL_PATHMOD_NONE, NULL };

	/* everything at once */
	rd = (struct pl_redirect){ .scheme = "https", .hostname = "new.example.com", .port = 8443,
				   .path = { PL_PATHMOD_PREFIX, "/v2" }, .status_code = 301 };
	LOC(&rd, &m, "http", "old.example.com", 80, "/foo/users", "id=7",
	    "https://new.example.com:8443/v2/users?id=7");

	/* IPv6 literal hosts get brackets; already bracketed ones are kept */
	rd = (struct pl_redirect){ .status_code = 302 };
	LOC(&rd, &m, "http", "::1", 8080, "/", NULL, "http://[::1]:8080/");
	LOC(&rd, &m, "http", "[::1]", 8080, "/", NULL, "http://[::1]:8080/");

	/* no response splitting */
	LOC(&rd, &m, "http", "a.com\r\nSet-Cookie: x", 80, "/", NULL, NULL);
	LOC(&rd, &m, "http", "a.com", 80, "/\n", NULL, NULL);
	LOC(&rd, &m, "http", "a.com", 80, "/", "a=\r", NULL);
}

int main(void)
{
	test_prefix();
	test_full();
	test_redirect();
	if (fails) {
		fprintf(stderr, "test_rewrite: %d failure(s)\n", fails);
		return 1;
	}
	printf("test_rewrite: ok\n");
	return 0;
}
