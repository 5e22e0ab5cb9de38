/*
 * Unit tests for the pure helpers of proxy/h2.c: the client preface check
 * and the base64url decoder of an h2c upgrade's HTTP2-Settings. The
 * connection engine itself is exercised by tests/blackbox (test_h2*.py).
 */
#include "common/pl.h"
#include "proxy/h2.h"

#include <stdio.h>
#include "check.h"

#define STR(s) s, sizeof(s) - 1

static void test_preface(void)
{
	CHECK(pl_h2_preface(STR(PL_H2_PREFACE)) == 2);
	CHECK(pl_h2_preface(STR(PL_H2_PREFACE "\x00\x00")) == 2);
	CHECK(pl_h2_preface(STR("PRI * HTTP/2")) == 1);
	CHECK(pl_h2_preface(STR("GET / HTTP/1.1\r\n")) == 0);
	CHECK(pl_h2_preface(STR("PRI * HTTP/1.1")) == 0);
}

static void test_b64url(void)
{
	unsigned char out[32];
	/* what curl sends: MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 32 MiB, ENABLE_PUSH 0 */
	static const unsigned char curl[] = { 0, 3, 0, 0, 0, 100, 0, 4, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0 };
	CHECK(pl_h2_b64url_decode(STR("AAMAAABkAAQCAAAAAAIAAAAA"), out, sizeof(out)) == 18);
	CHECK(memcmp(out, curl, sizeof(curl)) == 0);
	/* the url-safe alphabet, with and without padding */
	CHECK(pl_h2_b64url_decode(STR("-_8"), out, sizeof(out)) == 2 && out[0] == 0xfb && out[1] == 0xff);
	CHECK(pl_h2_b64url_decode(STR("-_8="), out, sizeof(out)) == 2);
	CHECK(pl_h2_b64url_decode(STR("YQ"), out, sizeof(out)) == 1 && out[0] == 'a');
	CHECK(pl_h2_b64url_decode(STR("YQ=="), out, sizeof(out)) == 1 && out[0] == 'a');
	CHECK(pl_h2_b64url_decode(STR(""), out, sizeof(out)) == 0);
	/* the standard alphabet's '+' and '/' are not base64url; nor are spaces or a lone sixth of a byte */
	CHECK(pl_h2_b64url_decode(STR("+/8"), out, sizeof(out)) == -1);
	CHECK(pl_h2_b64url_decode(STR("YQ =="), out, sizeof(out)) == -1);
	CHECK(pl_h2_b64url_decode(STR("YWJjZ"), out, sizeof(out)) == -1);
	/* non-zero leftover bits: not a canonical encoding */
	CHECK(pl_h2_b64url_decode(STR("YR"), out, sizeof(out)) == -1);
	/* bounded by the output size */
	CHECK(pl_h2_b64url_decode(STR("YWJj"), out, 3) == 3 && memcmp(out, "abc", 3) == 0);
	CHECK(pl_h2_b64url_decode(STR("YWJjZA"), out, 3) == -1);
}

int main(void)
{
	test_preface();
	test_b64url();
	if (fails) {
		fprintf(stderr, "test_h2: %d failure(s)\n", fails);
		return 1;
	}
	printf("test_h2: ok\n");
	return 0;
}
