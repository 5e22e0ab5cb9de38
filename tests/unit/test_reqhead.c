/*
 * Unit tests for proxy/reqhead.c (the request-head helpers HTTP/1.1 and
 * HTTP/2 share) and the chunk header writer of proxy/buf.c: Host parsing,
 * dot-segments, the bounded writer, header modifiers, the backend authority
 * and target, redirect Location values.
 */
#include "pl.h"
#include "buf.h"
#include "reqhead.h"

#include <stdio.h>
#include <stdlib.h>

static int failures;

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
		failures++; \
	} } while (0)

#define STR(s) s, sizeof(s) - 1

static char host[256];

static int parse_host(const char *v, size_t n)
{
	return pl_rh_parse_host(v, n, host, sizeof(host));
}

static void test_host(void)
{
	CHECK(parse_host(STR("Example.COM")) == 11 && strcmp(host, "example.com") == 0);
	CHECK(parse_host(STR("a.b:8080")) == 3 && strcmp(host, "a.b") == 0);
	CHECK(parse_host(STR("a.b:")) == 3 && strcmp(host, "a.b") == 0);
	CHECK(parse_host(STR("[::1]:80")) == 5 && strcmp(host, "[::1]") == 0);
	CHECK(parse_host(STR("[::1]")) == 5 && strcmp(host, "[::1]") == 0);
	CHECK(parse_host("", 0) == 0 && host[0] == '\0');
	CHECK(parse_host(STR("a b")) < 0);
	CHECK(parse_host(STR("a/b")) < 0);
	CHECK(parse_host(STR("a@b")) < 0);
	CHECK(parse_host(STR("a:b:c")) < 0);
	CHECK(parse_host(STR("a:8x")) < 0);
	CHECK(parse_host(STR("[::1")) < 0);
	CHECK(parse_host(STR("[::1]x")) < 0);
	char big[300];
	memset(big, 'a', sizeof(big));
	CHECK(parse_host(big, sizeof(big)) < 0);
}

static void test_dots(void)
{
	CHECK(pl_rh_has_dot_segment(STR("/a/../b")));
	CHECK(pl_rh_has_dot_segment(STR("/a/./b")));
	CHECK(pl_rh_has_dot_segment(STR("/..")));
	CHECK(pl_rh_has_dot_segment(STR("/a/.")));
	CHECK(!pl_rh_has_dot_segment(STR("/a/.b")));
	CHECK(!pl_rh_has_dot_segment(STR("/a/..b/c")));
	CHECK(!pl_rh_has_dot_segment(STR("/.well-known/x")));
	CHECK(!pl_rh_has_dot_segment(STR("/a/b...")));
}

static void test_chunk(void)
{
	struct pl_buf b;
	pl_buf_init(&b, NULL);
	CHECK(pl_buf_reserve(&b, 64) == 0);
	pl_buf_put_chunk_head(&b, 0x1f);
	pl_buf_put_chunk_head(&b, 1);
	pl_buf_put_chunk_head(&b, 0x10000);
	CHECK(pl_buf_size(&b) == 4 + 3 + 7 && memcmp(pl_buf_rptr(&b), "1f\r\n1\r\n10000\r\n", 14) == 0);
	pl_buf_free(&b);
	pl_buf_thread_cleanup();

	char tmp[32];
	struct pl_wr w = { tmp, tmp + sizeof(tmp), 0 };
	pl_wr_u64(&w, 0);
	pl_wr_u64(&w, 18446744073709551615ull);
	CHECK(!w.over && w.p - tmp == 21 && memcmp(tmp, "018446744073709551615", 21) == 0);
	pl_wr_put(&w, "0123456789abcdef", 16);
	CHECK(w.over);
}

static void test_mods(void)
{
	struct pl_kv set[] = { { .name = "Host", .name_len = 4, .value = "new.example", .value_len = 11 },
			       { .name = "X-A", .name_len = 3, .value = "1", .value_len = 1 } };
	struct pl_kv add[] = { { .name = "X-B", .name_len = 3, .value = "2", .value_len = 1 } };
	char *rm[] = { (char *)"x-gone" };
	struct pl_header_mod hm = { .set = set, .n_set = 2, .add = add, .n_add = 1, .remove = rm, .n_remove = 1 };
	struct pl_rh_filters f;
	memset(&f, 0, sizeof(f));
	f.req_mods[0] = &hm;
	f.n_req_mods = 1;
	CHECK(pl_rh_mods_hit(f.req_mods, 1, STR("x-a")));
	CHECK(pl_rh_mods_hit(f.req_mods, 1, STR("X-Gone")));
	CHECK(!pl_rh_mods_hit(f.req_mods, 1, STR("x-b")));
	CHECK(pl_rh_mods_size(f.req_mods, 1) == (4 + 11 + 4) + (3 + 1 + 4) + (3 + 1 + 4));
	char out[128];
	struct pl_wr w = { out, out + sizeof(out), 0 };
	pl_rh_mods_emit(&w, f.req_mods, 1, 1);
	CHECK(!w.over && (size_t)(w.p - out) == 16 && memcmp(out, "X-A: 1\r\nX-B: 2\r\n", 16) == 0);
	const char *v;
	size_t vl;
	pl_rh_authority(&f, STR("client.example"), &v, &vl);
	CHECK(vl == 11 && memcmp(v, "new.example", 11) == 0);
	f.n_req_mods = 0;
	pl_rh_authority(&f, STR("client.example"), &v, &vl);
	CHECK(vl == 14 && memcmp(v, "client.example", 14) == 0);
	pl_rh_authority(&f, NULL, 0, &v, &vl);
	CHECK(vl == 0);
	CHECK(pl_rh_write_target(&f, NULL, STR("/a/b"), STR("q=1"), out, sizeof(out)) == 8 &&
	      memcmp(out, "/a/b?q=1", 8) == 0);
	CHECK(pl_rh_write_target(&f, NULL, STR("/a/b"), NULL, 0, out, sizeof(out)) == 4);
	CHECK(pl_rh_write_target(&f, NULL, STR("/a/b"), STR("q=1"), out, 6) < 0);
}

int main(void)
{
	test_host();
	test_dots();
	test_chunk();
	test_mods();
	if (failures) {
		fprintf(stderr, "test_reqhead: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_reqhead: ok\n");
	return 0;
}
