/*
 * Unit tests for the pure helpers of proxy/http1.c (included, h2o style, to
 * reach its static functions): request-target parsing, header
 * classification, Connection tokens, Upgrade: h2c. Host parsing, dot-segments and the
 * writer are proxy/reqhead.c's (test_reqhead.c).
 * The connection engine itself is exercised by tests/blackbox.
 */
#include "proxy/http1.c"
#include "check.h"

#define STR(s) s, sizeof(s) - 1

static void test_target(void)
{
	struct target t;
	CHECK(parse_target(STR("/a/b?x=1&y"), &t) == 0);
	CHECK(t.path_len == 4 && memcmp(t.path, "/a/b", 4) == 0);
	CHECK(t.query_len == 5 && memcmp(t.query, "x=1&y", 5) == 0 && !t.authority);
	CHECK(parse_target(STR("/"), &t) == 0 && t.path_len == 1 && !t.query);
	CHECK(parse_target(STR("/p?"), &t) == 0 && t.query && t.query_len == 0);
	CHECK(parse_target(STR("http://Example.com:8080/x?q"), &t) == 0);
	CHECK(t.authority_len == 16 && memcmp(t.authority, "Example.com:8080", 16) == 0);
	CHECK(t.path_len == 2 && t.query_len == 1);
	CHECK(parse_target(STR("HTTPS://h"), &t) == 0 && t.path_len == 1 && t.path[0] == '/');
	CHECK(parse_target(STR("http://h?q=1"), &t) == 0 && t.path_len == 1 && t.query_len == 3);
	CHECK(parse_target(STR("*"), &t) != 0);
	CHECK(parse_target(STR("a/b"), &t) != 0);
	CHECK(parse_target(STR("/a#frag"), &t) != 0);
	CHECK(parse_target(STR("http:///x"), &t) != 0);
	CHECK(parse_target(STR("http://user@h/x"), &t) != 0);
	CHECK(parse_target(STR("ftp://h/x"), &t) != 0);
	CHECK(parse_target("", 0, &t) != 0);
}

static void test_kinds(void)
{
	CHECK(hdr_kind(STR("Host")) == H_HOST);
	CHECK(hdr_kind(STR("CONTENT-LENGTH")) == H_CL);
	CHECK(hdr_kind(STR("transfer-encoding")) == H_TE);
	CHECK(hdr_kind(STR("Connection")) == H_CONNECTION);
	CHECK(hdr_kind(STR("keep-alive")) == H_HOP);
	CHECK(hdr_kind(STR("Proxy-Connection")) == H_HOP);
	CHECK(hdr_kind(STR("TE")) == H_HOP);
	CHECK(hdr_kind(STR("Trailer")) == H_HOP);
	CHECK(hdr_kind(STR("HTTP2-Settings")) == H_HOP);
	CHECK(hdr_kind(STR("Upgrade")) == H_UPGRADE);
	CHECK(hdr_kind(STR("x-forwarded-for")) == H_XFF);
	CHECK(hdr_kind(STR("X-Forwarded-Proto")) == H_XFP);
	CHECK(hdr_kind(STR("X-Forwarded-Host")) == H_OTHER);
	CHECK(hdr_kind(STR("Hosts")) == H_OTHER);
	CHECK(hdr_kind(STR("Te-x")) == H_OTHER);

	S.n = 3;
	S.hdrs[0] = (struct pl_hdr){ "Connection", " close ,X-Foo,,\tkeep-alive", 10, 26 };
	S.hdrs[1] = (struct pl_hdr){ "X-Foo", "1", 5, 1 };
	S.hdrs[2] = (struct pl_hdr){ "connection", "Upgrade", 10, 7 };
	classify_headers();
	CHECK(S.kind[0] == H_CONNECTION && S.kind[1] == H_OTHER && S.kind[2] == H_CONNECTION);
	CHECK(S.n_ctok == 4);
	CHECK(in_ctok(STR("x-foo")) && in_ctok(STR("CLOSE")) && in_ctok(STR("upgrade")));
	CHECK(!in_ctok(STR("X-Fo")));
}

/* Upgrade: h2c alone is what a request to an h2c backend may ignore; anything else is refused. */
static void test_upgrade_h2c(void)
{
	S.n = 1;
	S.hdrs[0] = (struct pl_hdr){ "Upgrade", " H2C ,, ", 7, 8 };
	classify_headers();
	CHECK(upgrade_h2c_only());
	S.hdrs[0] = (struct pl_hdr){ "Upgrade", "h2c, websocket", 7, 14 };
	classify_headers();
	CHECK(!upgrade_h2c_only());
	S.hdrs[0] = (struct pl_hdr){ "Upgrade", "websocket", 7, 9 };
	classify_headers();
	CHECK(!upgrade_h2c_only());
	S.hdrs[0] = (struct pl_hdr){ "Upgrade", " ", 7, 1 };
	classify_headers();
	CHECK(!upgrade_h2c_only());
	S.n = 0;
	CHECK(!upgrade_h2c_only());
}

int main(void)
{
	test_target();
	test_kinds();
	test_upgrade_h2c();
	if (fails) {
		fprintf(stderr, "test_http1: %d failure(s)\n", fails);
		return 1;
	}
	printf("test_http1: ok\n");
	return 0;
}
