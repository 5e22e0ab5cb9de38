/*
 * Unit tests for proxy/reqhead.c (the request-head helpers HTTP/1.1 and
 * HTTP/2 share) and the chunk header writer of proxy/buf.c: Host parsing,
 * dot-segments, the bounded writer, header modifiers, the backend authority
 * and target, redirect Location values, the HTTP/2 backend head and the
 * field check of HTTP/2 responses.
 */
#include "pl.h"
#include "buf.h"
#include "reqhead.h"

#include <stdio.h>
#include <stdlib.h>
#include "check.h"

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
	/* percent-encoded dots are dots (RFC 3986 6.2.2.2) */
	CHECK(pl_rh_has_dot_segment(STR("/a/%2e%2e/b")));
	CHECK(pl_rh_has_dot_segment(STR("/a/%2E%2e")));
	CHECK(pl_rh_has_dot_segment(STR("/a/.%2e/b")));
	CHECK(pl_rh_has_dot_segment(STR("/a/%2e./b")));
	CHECK(pl_rh_has_dot_segment(STR("/a/%2e?x")));
	CHECK(pl_rh_has_dot_segment(STR("/%2E")));
	CHECK(!pl_rh_has_dot_segment(STR("/a/%2e%2e%2e/b")));
	CHECK(!pl_rh_has_dot_segment(STR("/a/%2ex/b")));
	CHECK(!pl_rh_has_dot_segment(STR("/a/%2/b")));
	CHECK(!pl_rh_has_dot_segment(STR("/a/%2")));
	CHECK(!pl_rh_has_dot_segment(STR("/a/%25%32%65")));
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
	/* removed names: prefixes, extensions and embedded NULs never match */
	CHECK(!pl_rh_mods_hit(f.req_mods, 1, STR("x-gon")));
	CHECK(!pl_rh_mods_hit(f.req_mods, 1, STR("x-gones")));
	CHECK(!pl_rh_mods_hit(f.req_mods, 1, STR("x-gone\0")));
	CHECK(!pl_rh_mods_hit(f.req_mods, 1, "", 0));
	CHECK(pl_rh_mods_hit(f.req_mods, 1, "X-GONE-and-more", 6));
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

/* The value of field name in nv[0, n), or NULL; *count: how many carry that name. */
static const char *nv_get(const nghttp2_nv *nv, size_t n, const char *name, int *count)
{
	const char *v = NULL;
	static char buf[256];
	*count = 0;
	for (size_t i = 0; i < n; i++) {
		if (nv[i].namelen != strlen(name) || memcmp(nv[i].name, name, nv[i].namelen) != 0)
			continue;
		(*count)++;
		snprintf(buf, sizeof(buf), "%.*s", (int)nv[i].valuelen, (const char *)nv[i].value);
		v = buf;
	}
	return v;
}

#define NV_IS(name, want) do { \
	int cnt_; \
	const char *v_ = nv_get(nv, n, name, &cnt_); \
	CHECK(cnt_ == 1 && v_ && strcmp(v_, want) == 0); \
} while (0)

#define NV_NONE(name) do { \
	int cnt_; \
	nv_get(nv, n, name, &cnt_); \
	CHECK(cnt_ == 0); \
} while (0)

static void test_h2_head(void)
{
	struct pl_kv set[] = { { .name = "host", .name_len = 4, .value = "set.example", .value_len = 11 },
			       { .name = "x-set", .name_len = 5, .value = "s", .value_len = 1 } };
	struct pl_kv add[] = { { .name = "x-add", .name_len = 5, .value = "a", .value_len = 1 } };
	char *rm[] = { (char *)"x-gone" };
	struct pl_header_mod hm = { .set = set, .n_set = 2, .add = add, .n_add = 1, .remove = rm, .n_remove = 1 };
	struct pl_rh_filters f;
	memset(&f, 0, sizeof(f));
	struct pl_hdr h[] = {
		{ "Host", "client.example", 4, 14 }, { "X-Custom", "V", 8, 1 }, { "Connection", "close", 10, 5 },
		{ "Keep-Alive", "5", 10, 1 }, { "Transfer-Encoding", "chunked", 17, 7 },
		{ "TE", "deflate, trailers;q=1", 2, 21 },
		{ "Content-Length", "9", 14, 1 }, { "X-Forwarded-For", "10.0.0.1", 15, 8 }, { "X-Gone", "g", 6, 1 },
		{ "X-Set", "client", 5, 6 }, { "Upgrade", "h2c", 7, 3 }, { "X-Forwarded-Proto", "https", 17, 5 },
		{ "Trailer", "X-Sum", 7, 5 }, { "HTTP2-Settings", "AAMA", 14, 4 },
	};
	struct pl_rh_h2in in = {
		.method = "POST", .method_len = 4, .authority = "client.example", .authority_len = 14,
		.path = "/p", .path_len = 2, .query = "q=1", .query_len = 3, .hdrs = h, .n_hdrs = PL_ARRAY_LEN(h),
		.peer = "192.0.2.7", .tls = 1, .has_cl = 1, .cl = 12345,
	};
	size_t n = 0;
	const char *err = NULL;
	nghttp2_nv *nv = pl_rh_h2_head(&in, &f, &n, &err);
	CHECK(nv != NULL);
	if (!nv)
		return;
	CHECK(n >= 4 && nv[0].namelen == 7 && memcmp(nv[0].name, ":method", 7) == 0);
	CHECK(nv[1].namelen == 7 && memcmp(nv[1].name, ":scheme", 7) == 0);
	NV_IS(":method", "POST");
	NV_IS(":scheme", "http");
	NV_IS(":authority", "client.example");
	NV_IS(":path", "/p?q=1");
	NV_IS("x-custom", "V");          /* lower-cased */
	NV_IS("x-gone", "g");
	NV_IS("x-set", "client");
	NV_IS("te", "trailers");
	NV_IS("trailer", "X-Sum");       /* HTTP/2 has trailers too: the announcement stays */
	NV_NONE("http2-settings");
	NV_IS("content-length", "12345");
	NV_IS("x-forwarded-for", "10.0.0.1, 192.0.2.7");
	NV_IS("x-forwarded-proto", "https");
	NV_NONE("host");
	NV_NONE("connection");
	NV_NONE("keep-alive");
	NV_NONE("transfer-encoding");
	NV_NONE("upgrade");
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < nv[i].namelen; k++)
			CHECK(nv[i].name[k] < 'A' || nv[i].name[k] > 'Z');
	free(nv);

	/* modifiers: Host set becomes :authority, set replaces, remove drops, add appends */
	f.req_mods[0] = &hm;
	f.n_req_mods = 1;
	in.tls = 0;
	in.has_cl = 0;
	in.n_hdrs = 2;
	h[1] = (struct pl_hdr){ "x-gone", "g", 6, 1 };
	nv = pl_rh_h2_head(&in, &f, &n, &err);
	CHECK(nv != NULL);
	if (!nv)
		return;
	NV_IS(":authority", "set.example");
	NV_IS("x-set", "s");
	NV_IS("x-add", "a");
	NV_IS("x-forwarded-for", "192.0.2.7");
	NV_IS("x-forwarded-proto", "http");
	NV_NONE("x-gone");
	NV_NONE("content-length");
	NV_NONE("te");
	free(nv);

	/* no authority at all: no :authority */
	f.n_req_mods = 0;
	in.authority = NULL;
	in.authority_len = 0;
	nv = pl_rh_h2_head(&in, &f, &n, &err);
	CHECK(nv != NULL);
	if (nv) {
		NV_NONE(":authority");
		free(nv);
	}
}

static void test_field_ok(void)
{
	const uint8_t *u = (const uint8_t *)"";
	CHECK(pl_rh_field_ok((const uint8_t *)"x-a", 3, (const uint8_t *)"v a\tb\x80", 6));
	CHECK(pl_rh_field_ok((const uint8_t *)"x-a", 3, u, 0));
	CHECK(!pl_rh_field_ok(u, 0, (const uint8_t *)"v", 1));
	CHECK(!pl_rh_field_ok((const uint8_t *)"x a", 3, (const uint8_t *)"v", 1));
	CHECK(!pl_rh_field_ok((const uint8_t *)"x:a", 3, (const uint8_t *)"v", 1));
	CHECK(!pl_rh_field_ok((const uint8_t *)"x\0a", 3, (const uint8_t *)"v", 1));
	CHECK(!pl_rh_field_ok((const uint8_t *)"x-a", 3, (const uint8_t *)"a\r\nb", 4));
	CHECK(!pl_rh_field_ok((const uint8_t *)"x-a", 3, (const uint8_t *)"a\nb", 3));
	CHECK(!pl_rh_field_ok((const uint8_t *)"x-a", 3, (const uint8_t *)"a\0b", 3));
	CHECK(!pl_rh_field_ok((const uint8_t *)"x-a", 3, (const uint8_t *)"a\x01", 2));
	CHECK(!pl_rh_field_ok((const uint8_t *)"x-a", 3, (const uint8_t *)"a\x7f", 2));
}

int main(void)
{
	test_host();
	test_dots();
	test_chunk();
	test_mods();
	test_h2_head();
	test_field_ok();
	if (fails) {
		fprintf(stderr, "test_reqhead: %d failure(s)\n", fails);
		return 1;
	}
	printf("test_reqhead: ok\n");
	return 0;
}
