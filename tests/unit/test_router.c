/*
 * Unit tests for proxy/router.c over small tables built by hand.
 */
#include "common/pl.h"

#include "common/arena.h"
#include "common/table.h"
#include "proxy/router.h"
#include "check.h"

static struct pl_arena *A;

static void regfree_cb(void *re)
{
	regfree(re);
}

static regex_t *re(const char *pattern)
{
	regex_t *r = pl_arena_alloc(A, sizeof(*r));
	PL_BUG_ON(regcomp(r, pattern, REG_EXTENDED | REG_NOSUB) != 0);
	PL_BUG_ON(pl_arena_cleanup_add(A, regfree_cb, r) != 0);
	return r;
}

static struct pl_match prefix(const char *p)
{
	struct pl_match m = { .path_type = PL_PATH_PREFIX, .path = pl_arena_strdup(A, p), .path_len = strlen(p) };
	return m;
}

static struct pl_match exact(const char *p)
{
	struct pl_match m = { .path_type = PL_PATH_EXACT, .path = pl_arena_strdup(A, p), .path_len = strlen(p) };
	return m;
}

static struct pl_req_view req(const char *method, const char *path, const char *query, const char *host)
{
	struct pl_req_view r = {
		.method = method, .method_len = strlen(method),
		.path = path, .path_len = strlen(path),
		.query = query, .query_len = query ? strlen(query) : 0,
		.host = host, .host_len = host ? strlen(host) : 0,
	};
	return r;
}

static int path_ok(const struct pl_match *m, const char *path)
{
	struct pl_req_view r = req("GET", path, NULL, "h");
	return pl_router_match(m, &r);
}

static void test_paths(void)
{
	struct pl_match m = prefix("/foo");
	CHECK(path_ok(&m, "/foo"));
	CHECK(path_ok(&m, "/foo/"));
	CHECK(path_ok(&m, "/foo/bar"));
	CHECK(path_ok(&m, "/foo//bar"));
	CHECK(!path_ok(&m, "/foobar"));
	CHECK(!path_ok(&m, "/fo"));
	CHECK(!path_ok(&m, "/"));
	CHECK(!path_ok(&m, "/Foo"));
	CHECK(!path_ok(&m, "/bar/foo"));
	/* no percent-decoding */
	CHECK(!path_ok(&m, "/fo%6f"));
	CHECK(!path_ok(&m, "/foo%2Fbar"));

	m = prefix("/foo/");   /* not normalised by the compiler: same semantics */
	CHECK(path_ok(&m, "/foo"));
	CHECK(path_ok(&m, "/foo/bar"));
	CHECK(!path_ok(&m, "/foobar"));

	m = prefix("/");
	CHECK(path_ok(&m, "/"));
	CHECK(path_ok(&m, "/anything"));
	CHECK(path_ok(&m, "/a/b/c"));

	m = prefix("/a/b");
	CHECK(path_ok(&m, "/a/b/c"));
	CHECK(!path_ok(&m, "/a/bc"));
	CHECK(!path_ok(&m, "/a"));

	m = exact("/foo");
	CHECK(path_ok(&m, "/foo"));
	CHECK(!path_ok(&m, "/foo/"));
	CHECK(!path_ok(&m, "/foo/bar"));
	CHECK(!path_ok(&m, "/fo"));
	CHECK(!path_ok(&m, "/FOO"));

	m = (struct pl_match){ .path_type = PL_PATH_REGEX, .path = "^/api/v[0-9]+(/.*)?$", .path_re = re("^/api/v[0-9]+(/.*)?$") };
	CHECK(path_ok(&m, "/api/v1"));
	CHECK(path_ok(&m, "/api/v22/users"));
	CHECK(!path_ok(&m, "/api/vx"));
	CHECK(!path_ok(&m, "/x/api/v1"));

	/* paths longer than the regex buffer never match */
	m = (struct pl_match){ .path_type = PL_PATH_REGEX, .path = "^/.*$", .path_re = re("^/.*$") };
	static char longp[9000];
	longp[0] = '/';
	memset(longp + 1, 'a', sizeof(longp) - 2);
	CHECK(!path_ok(&m, longp));
	longp[8000] = '\0';
	CHECK(path_ok(&m, longp));
	/* an embedded NUL does not truncate the subject into a match */
	struct pl_match m2 = { .path_type = PL_PATH_REGEX, .path_re = re("^/ok$") };
	struct pl_req_view r = req("GET", "/ok", NULL, "h");
	r.path = "/ok\0evil";
	r.path_len = 8;
	CHECK(!pl_router_match(&m2, &r));
}

static void test_method(void)
{
	struct pl_match m = prefix("/");
	m.method = "POST";
	struct pl_req_view r = req("POST", "/", NULL, "h");
	CHECK(pl_router_match(&m, &r));
	r = req("post", "/", NULL, "h");
	CHECK(!pl_router_match(&m, &r));
	r = req("POS", "/", NULL, "h");
	CHECK(!pl_router_match(&m, &r));
	r = req("POSTX", "/", NULL, "h");
	CHECK(!pl_router_match(&m, &r));
	r = req("GET", "/", NULL, "h");
	CHECK(!pl_router_match(&m, &r));
}

static void test_headers(void)
{
	struct pl_kv_match hm[2] = {
		{ .type = PL_MATCH_EXACT, .name = "x-env", .value = "canary" },
		{ .type = PL_MATCH_REGEX, .name = "x-ver", .value = "^v[0-9]$", .re = re("^v[0-9]$") },
	};
	struct pl_match m = prefix("/");
	m.headers = hm;
	m.n_headers = 1;

	struct pl_hdr h[4] = {
		{ "Host", "h", 4, 1 },
		{ "X-Env", "canary", 5, 6 },
		{ "x-env", "stable", 5, 6 },
		{ "X-VER", "v7", 5, 2 },
	};
	struct pl_req_view r = req("GET", "/", NULL, "h");
	r.hdrs = h;
	r.n_hdrs = 4;
	CHECK(pl_router_match(&m, &r));          /* name case-insensitive */
	m.n_headers = 2;
	CHECK(pl_router_match(&m, &r));          /* both must hold */
	h[3].value = "v77";
	h[3].value_len = 3;
	CHECK(!pl_router_match(&m, &r));         /* regex anchored */
	h[3].value = "v7";
	h[3].value_len = 2;

	/* first occurrence decides */
	h[1].value = "stable";
	h[2].value = "canary";
	CHECK(!pl_router_match(&m, &r));
	h[1].value = "canary";

	/* value case-sensitive */
	h[1].value = "Canary";
	CHECK(!pl_router_match(&m, &r));
	h[1].value = "canary";

	/* value is compared whole */
	h[1].value_len = 5;
	CHECK(!pl_router_match(&m, &r));
	h[1].value_len = 6;

	/* absent header */
	r.n_hdrs = 1;
	CHECK(!pl_router_match(&m, &r));
	r.n_hdrs = 0;
	r.hdrs = NULL;
	CHECK(!pl_router_match(&m, &r));
}

static int q_ok(const struct pl_match *m, const char *query)
{
	struct pl_req_view r = req("GET", "/", query, "h");
	return pl_router_match(m, &r);
}

static void test_query(void)
{
	struct pl_kv_match qm[2] = {
		{ .type = PL_MATCH_EXACT, .name = "a", .value = "1" },
		{ .type = PL_MATCH_REGEX, .name = "b", .value = "^[0-9]+$", .re = re("^[0-9]+$") },
	};
	struct pl_match m = prefix("/");
	m.queries = qm;
	m.n_queries = 1;

	CHECK(q_ok(&m, "a=1"));
	CHECK(q_ok(&m, "a=1&b=2"));
	CHECK(q_ok(&m, "b=2&a=1"));
	CHECK(q_ok(&m, "&&a=1&"));
	CHECK(q_ok(&m, "a=1&a=2"));              /* first value */
	CHECK(!q_ok(&m, "a=2&a=1"));
	CHECK(!q_ok(&m, "A=1"));                 /* names case-sensitive */
	CHECK(!q_ok(&m, "aa=1"));
	CHECK(!q_ok(&m, "ba=1"));
	CHECK(!q_ok(&m, "a=11"));
	CHECK(!q_ok(&m, "a=%31"));               /* no decoding */
	CHECK(!q_ok(&m, "a"));
	CHECK(!q_ok(&m, ""));
	CHECK(!q_ok(&m, NULL));
	CHECK(!q_ok(&m, "x=a=1"));
	CHECK(q_ok(&m, "x=y&a=1=z") == 0);       /* value is "1=z" */

	m.n_queries = 2;
	CHECK(q_ok(&m, "a=1&b=42"));
	CHECK(!q_ok(&m, "a=1&b=4x"));
	CHECK(!q_ok(&m, "a=1&b="));
	CHECK(!q_ok(&m, "a=1"));

	/* empty expected value matches "k" and "k=" */
	struct pl_kv_match e = { .type = PL_MATCH_EXACT, .name = "k", .value = "" };
	m.queries = &e;
	m.n_queries = 1;
	CHECK(q_ok(&m, "k"));
	CHECK(q_ok(&m, "x=1&k="));
	CHECK(q_ok(&m, "x=1&k"));
	CHECK(!q_ok(&m, "k=v"));
}

/* A table: one bind, listeners (specific first), each with vhosts and entries. */
static void test_find(void)
{
	struct pl_table *t = pl_table_new();
	A = t->arena;

	struct pl_rule *rules = pl_arena_alloc(A, 4 * sizeof(*rules));
	for (int i = 0; i < 4; i++)
		rules[i].rule_index = (uint32_t)i;

	struct pl_bind *b = pl_arena_alloc(A, sizeof(*b));
	b->port = 80;
	b->n_listeners = 3;
	b->listeners = pl_arena_alloc(A, 3 * sizeof(*b->listeners));
	pl_hostname_init(&b->listeners[0].host, A, "api.example.com");
	pl_hostname_init(&b->listeners[1].host, A, "*.example.com");
	pl_hostname_init(&b->listeners[2].host, A, "");

	CHECK(pl_router_listener(b, "api.example.com", 15) == &b->listeners[0]);
	CHECK(pl_router_listener(b, "www.example.com", 15) == &b->listeners[1]);
	CHECK(pl_router_listener(b, "a.b.example.com", 15) == &b->listeners[1]);
	CHECK(pl_router_listener(b, "example.com", 11) == &b->listeners[2]);
	CHECK(pl_router_listener(b, "other.org", 9) == &b->listeners[2]);
	b->n_listeners = 2;
	CHECK(pl_router_listener(b, "other.org", 9) == NULL);
	CHECK(pl_router_listener(b, "example.com", 11) == NULL);

	/* listener[1] (*.example.com): vhosts foo.example.com, *.example.com */
	struct pl_listener *l = &b->listeners[1];
	l->n_vhosts = 2;
	l->vhosts = pl_arena_alloc(A, 2 * sizeof(*l->vhosts));
	pl_hostname_init(&l->vhosts[0].host, A, "foo.example.com");
	pl_hostname_init(&l->vhosts[1].host, A, "*.example.com");

	struct pl_vhost *v0 = &l->vhosts[0], *v1 = &l->vhosts[1];
	v0->n_entries = 2;
	v0->entries = pl_arena_alloc(A, 2 * sizeof(*v0->entries));
	v0->entries[0].match = exact("/exact");
	v0->entries[0].rule = &rules[0];
	v0->entries[1].match = prefix("/api");
	v0->entries[1].rule = &rules[1];
	v1->n_entries = 2;
	v1->entries = pl_arena_alloc(A, 2 * sizeof(*v1->entries));
	v1->entries[0].match = prefix("/api");
	v1->entries[0].match.method = "POST";
	v1->entries[0].rule = &rules[2];
	v1->entries[1].match = prefix("/");
	v1->entries[1].rule = &rules[3];

	struct pl_req_view r = req("GET", "/exact", NULL, "foo.example.com");
	CHECK(pl_router_find(l, &r) == &v0->entries[0]);
	r = req("GET", "/api/x", NULL, "foo.example.com");
	CHECK(pl_router_find(l, &r) == &v0->entries[1]);
	/* most specific vhost only: no fallback to *.example.com's "/" */
	r = req("GET", "/other", NULL, "foo.example.com");
	CHECK(pl_router_find(l, &r) == NULL);
	r = req("POST", "/api", NULL, "bar.example.com");
	CHECK(pl_router_find(l, &r) == &v1->entries[0]);
	r = req("GET", "/api", NULL, "bar.example.com");
	CHECK(pl_router_find(l, &r) == &v1->entries[1]);
	r = req("GET", "/", NULL, "example.com");
	CHECK(pl_router_find(l, &r) == NULL);
	l->n_vhosts = 0;
	r = req("GET", "/", NULL, "foo.example.com");
	CHECK(pl_router_find(l, &r) == NULL);

	pl_table_unref(t);
	A = NULL;
}

static void test_pick(void)
{
	struct pl_table *t = pl_table_new();
	A = t->arena;

	struct pl_cluster *ca = pl_arena_alloc(A, sizeof(*ca));
	struct pl_cluster *cb = pl_arena_alloc(A, sizeof(*cb));
	struct pl_rule *r = pl_arena_alloc(A, sizeof(*r));
	r->n_backends = 3;
	r->backends = pl_arena_alloc(A, 3 * sizeof(*r->backends));
	r->backends[0] = (struct pl_backend){ .cluster = ca, .weight = 2 };
	r->backends[1] = (struct pl_backend){ .cluster = cb, .weight = 1 };
	r->backends[2] = (struct pl_backend){ .cluster = NULL, .weight = 1 };

	CHECK(pl_router_pick(r) == NULL);        /* empty schedule */

	static uint16_t sched[] = { 0, 1, 0, 2 };
	r->schedule = sched;
	r->n_schedule = 4;
	int na = 0, nb = 0, nnull = 0;
	for (int i = 0; i < 400; i++) {
		const struct pl_backend *be = pl_router_pick(r);
		if (!be)
			nnull++;
		else if (be->cluster == ca)
			na++;
		else if (be->cluster == cb)
			nb++;
		if (i < 4)
			CHECK(be == (sched[i] == 2 ? NULL : &r->backends[sched[i]]));
	}
	CHECK(na == 200 && nb == 100 && nnull == 100);
	CHECK(atomic_load(&r->sched_pos) == 400);

	/* the cursor wraps around without leaving the schedule */
	atomic_store(&r->sched_pos, UINT32_MAX);
	CHECK(pl_router_pick(r) == NULL);        /* UINT32_MAX % 4 == 3: the invalid ref */
	CHECK(atomic_load(&r->sched_pos) == 0);
	CHECK(pl_router_pick(r) == &r->backends[0]);

	pl_table_unref(t);
	A = NULL;
}

static void test_endpoint(void)
{
	struct pl_table *t = pl_table_new();
	A = t->arena;

	struct pl_cluster *c = pl_arena_alloc(A, sizeof(*c));
	CHECK(pl_router_endpoint(c) == NULL);    /* no endpoints */

	c->n_eps = 4;
	c->eps = pl_arena_alloc(A, 4 * sizeof(*c->eps));
	CHECK(pl_router_endpoint(c) == NULL);    /* none ready */

	c->eps[0].ready = 1;
	c->eps[2].ready = 1;
	c->eps[3].ready = 1;
	int n[4] = { 0 };
	for (int i = 0; i < 300; i++) {
		const struct pl_endpoint *ep = pl_router_endpoint(c);
		CHECK(ep != NULL);
		if (ep)
			n[ep - c->eps]++;
	}
	CHECK(n[1] == 0);
	/* the not-ready one's turn does not all go to its successor */
	CHECK(n[0] == 100 && n[2] == 100 && n[3] == 100);

	for (int i = 0; i < 4; i++)
		c->eps[i].ready = i == 3;
	for (int i = 0; i < 5; i++)
		CHECK(pl_router_endpoint(c) == &c->eps[3]);

	pl_table_unref(t);
	A = NULL;
}

int main(void)
{
	struct pl_table *t = pl_table_new();
	A = t->arena;
	test_paths();
	test_method();
	test_headers();
	test_query();
	pl_table_unref(t);

	test_find();
	test_pick();
	test_endpoint();
	if (fails) {
		fprintf(stderr, "test_router: %d failure(s)\n", fails);
		return 1;
	}
	printf("test_router: ok\n");
	return 0;
}
