/*
 * Unit tests for proxy/h1scan.c. Every vector is run whole, split in two at
 * every possible point, and one byte at a time: the answer (result, consumed
 * offset) must not depend on the chunking.
 */
#include "common/pl.h"

#include "proxy/h1scan.h"
#include "check.h"

#define MAX_LINE 64
#define MAX_HEAD 256

struct vec {
	const char *name;
	const char *bytes;
	size_t len;          /* 0: strlen(bytes) */
	int want;            /* PL_H1SCAN_DONE / MORE / E_* */
	size_t want_consumed;/* for DONE: offset just after the final CRLF; 0: the whole input */
};

#define V(n, s, w) { n, s, sizeof(s) - 1, w, 0 }
#define VB(n, s, w, c) { n, s, sizeof(s) - 1, w, c }

static const struct vec vecs[] = {
	V("simple request", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", PL_H1SCAN_DONE),
	VB("request with body", "POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nBODY", PL_H1SCAN_DONE, 38),
	VB("body that looks bad", "POST / HTTP/1.1\r\nA: b\r\n\r\n\r\x00\n \r", PL_H1SCAN_DONE, 25),
	V("no headers", "GET / HTTP/1.1\r\n\r\n", PL_H1SCAN_DONE),
	V("response", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", PL_H1SCAN_DONE),
	V("response obs-text reason", "HTTP/1.1 200 \xc3\xa9t\xc3\xa9\r\n\r\n", PL_H1SCAN_DONE),
	V("one leading CRLF", "\r\nGET / HTTP/1.1\r\n\r\n", PL_H1SCAN_DONE),
	V("four leading CRLF", "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", PL_H1SCAN_DONE),
	V("five leading CRLF", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", PL_H1SCAN_E_BAD),
	V("HTAB and obs-text in value", "GET / HTTP/1.1\r\nX: a\tb \x80\xff\r\n\r\n", PL_H1SCAN_DONE),
	V("empty value", "GET / HTTP/1.1\r\nX:\r\n\r\n", PL_H1SCAN_DONE),
	V("OWS around value", "GET / HTTP/1.1\r\nX: \t a \t\r\n\r\n", PL_H1SCAN_DONE),
	V("all tchars in name", "GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", PL_H1SCAN_DONE),
	V("colon in value", "GET / HTTP/1.1\r\nHost: a:80\r\n\r\n", PL_H1SCAN_DONE),
	V("TE and CL pass the scanner", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
	  PL_H1SCAN_DONE),
	V("incomplete", "GET / HTTP/1.1\r\nHost: a\r\n", PL_H1SCAN_MORE),
	V("incomplete after CR", "GET / HTTP/1.1\r\nHost: a\r\n\r", PL_H1SCAN_MORE),
	V("empty input", "", PL_H1SCAN_MORE),

	V("bare CR in value", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", PL_H1SCAN_E_BAD),
	V("bare CR at end of value", "GET / HTTP/1.1\r\nX: a\r\r\n\r\n", PL_H1SCAN_E_BAD),
	V("CR LF CR X", "GET / HTTP/1.1\r\nHost: a\r\n\rX", PL_H1SCAN_E_BAD),
	V("CR LF CR X no headers", "GET / HTTP/1.1\r\n\rX\r\n\r\n", PL_H1SCAN_E_BAD),
	V("bare CR in start line", "GET /\r HTTP/1.1\r\n\r\n", PL_H1SCAN_E_BAD),
	V("bare CR before start line", "\rGET / HTTP/1.1\r\n\r\n", PL_H1SCAN_E_BAD),
	V("bare CR in name", "GET / HTTP/1.1\r\nX\r: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", PL_H1SCAN_E_BAD),
	V("obs-fold tab", "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", PL_H1SCAN_E_BAD),
	V("space before first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("NUL in value", "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", PL_H1SCAN_E_BAD),
	V("NUL in name", "GET / HTTP/1.1\r\nX\0: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("NUL in start line", "GET /\0 HTTP/1.1\r\n\r\n", PL_H1SCAN_E_BAD),
	V("CTL in value", "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", PL_H1SCAN_E_BAD),
	V("ESC in value", "GET / HTTP/1.1\r\nX: \x1b[0m\r\n\r\n", PL_H1SCAN_E_BAD),
	V("DEL in value", "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", PL_H1SCAN_E_BAD),
	V("DEL in name", "GET / HTTP/1.1\r\nX\x7f: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("DEL in start line", "GET /\x7f HTTP/1.1\r\n\r\n", PL_H1SCAN_E_BAD),
	V("HTAB in start line", "GET\t/ HTTP/1.1\r\n\r\n", PL_H1SCAN_E_BAD),
	V("CTL in start line", "GET /\x0b HTTP/1.1\r\n\r\n", PL_H1SCAN_E_BAD),
	V("empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("non-token name", "GET / HTTP/1.1\r\nX(y): a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("non-token name @", "GET / HTTP/1.1\r\nX@y: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("obs-text in name", "GET / HTTP/1.1\r\nX\xc3\xa9: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("space in name", "GET / HTTP/1.1\r\nX Y: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("line without colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", PL_H1SCAN_E_BAD),
	V("bare LF start line", "GET / HTTP/1.1\nHost: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("bare LF after value", "GET / HTTP/1.1\r\nHost: a\n\r\n", PL_H1SCAN_E_BAD),
	V("bare LF end of head", "GET / HTTP/1.1\r\nHost: a\r\n\n", PL_H1SCAN_E_BAD),
	V("bare LF leading", "\nGET / HTTP/1.1\r\n\r\n", PL_H1SCAN_E_BAD),
	V("bare LF in name", "GET / HTTP/1.1\r\nX\n: a\r\n\r\n", PL_H1SCAN_E_BAD),
	V("smuggling: TE with bare CR", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\rX: y\r\n\r\n",
	  PL_H1SCAN_E_BAD),
	V("smuggling: folded TE", "POST / HTTP/1.1\r\nContent-Length: 3\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n",
	  PL_H1SCAN_E_BAD),
	V("smuggling: TE space colon", "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", PL_H1SCAN_E_BAD),

	/* limits: MAX_LINE = 64 bytes of start line, MAX_HEAD = 256 bytes of head */
	V("start line at limit",
	  "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n", PL_H1SCAN_DONE),
	V("start line over limit",
	  "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n", PL_H1SCAN_E_LINE_TOO_LONG),
	V("unfinished start line over limit",
	  "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", PL_H1SCAN_E_LINE_TOO_LONG),
};

/* Builds "GET / HTTP/1.1\r\nX: vvv...\r\n\r\n" of exactly total bytes (+ optional body). */
static size_t make_head(char *buf, size_t total, const char *body)
{
	const char *pre = "GET / HTTP/1.1\r\nX: ";
	size_t pl = strlen(pre), n;
	memcpy(buf, pre, pl);
	n = total - pl - 4;
	memset(buf + pl, 'v', n);
	memcpy(buf + pl + n, "\r\n\r\n", 4);
	n = pl + n + 4;
	memcpy(buf + n, body, strlen(body));
	return n + strlen(body);
}

/* Runs bytes through the scanner in chunks starting at the given cut points. */
static int run(const char *b, size_t len, const size_t *cuts, size_t ncuts, size_t *off, const char **reason)
{
	struct pl_h1scan s;
	size_t pos = 0;
	int rc = PL_H1SCAN_MORE;

	pl_h1scan_init(&s, MAX_LINE, MAX_HEAD);
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : len, consumed = 12345;
		rc = pl_h1scan_feed(&s, b + pos, end - pos, &consumed);
		if (rc == PL_H1SCAN_MORE)
			CHECK(consumed == end - pos);
		if (rc == PL_H1SCAN_DONE) {
			CHECK(consumed <= end - pos);
			*off = pos + consumed;
			break;
		}
		if (rc < 0) {
			size_t c2;
			*reason = pl_h1scan_reason(&s);
			CHECK(*reason != NULL);
			/* errors are sticky */
			CHECK(pl_h1scan_feed(&s, "\r\n\r\n", 4, &c2) == rc);
			break;
		}
		pos = end;
	}
	return rc;
}

static void check_vec(const char *name, const char *b, size_t len, int want, size_t want_off)
{
	size_t off = 0;
	const char *reason = NULL;
	int rc;
	int bad = fails;

	if (want == PL_H1SCAN_DONE && want_off == 0)
		want_off = len;

	/* whole */
	rc = run(b, len, NULL, 0, &off, &reason);
	CHECK(rc == want);
	if (want == PL_H1SCAN_DONE)
		CHECK(off == want_off);

	/* every two-chunk split */
	for (size_t cut = 0; cut <= len; cut++) {
		off = 0;
		rc = run(b, len, &cut, 1, &off, &reason);
		CHECK(rc == want);
		if (want == PL_H1SCAN_DONE)
			CHECK(off == want_off);
	}

	/* one byte at a time */
	size_t cuts[1024];
	PL_BUG_ON(len > PL_ARRAY_LEN(cuts));
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	off = 0;
	rc = run(b, len, cuts, len ? len - 1 : 0, &off, &reason);
	CHECK(rc == want);
	if (want == PL_H1SCAN_DONE)
		CHECK(off == want_off);

	if (fails != bad)
		fprintf(stderr, "  in vector \"%s\" (got %d, reason %s)\n", name, rc, reason ? reason : "-");
}

static void test_vectors(void)
{
	for (size_t i = 0; i < PL_ARRAY_LEN(vecs); i++)
		check_vec(vecs[i].name, vecs[i].bytes, vecs[i].len, vecs[i].want, vecs[i].want_consumed);
}

static void test_head_limit(void)
{
	char buf[512];
	size_t n;

	n = make_head(buf, MAX_HEAD, "");
	check_vec("head at limit", buf, n, PL_H1SCAN_DONE, 0);
	n = make_head(buf, MAX_HEAD, "bodybodybody");
	check_vec("head at limit with body", buf, n, PL_H1SCAN_DONE, MAX_HEAD);
	n = make_head(buf, MAX_HEAD + 1, "");
	check_vec("head over limit", buf, n, PL_H1SCAN_E_HEAD_TOO_LONG, 0);
	n = make_head(buf, 400, "");
	check_vec("head far over limit", buf, n - 4, PL_H1SCAN_E_HEAD_TOO_LONG, 0);
	/* leading CRLFs count toward the head */
	buf[0] = '\r';
	buf[1] = '\n';
	n = make_head(buf + 2, MAX_HEAD - 1, "");
	check_vec("leading CRLF pushes head over limit", buf, n + 2, PL_H1SCAN_E_HEAD_TOO_LONG, 0);
}

static void test_reasons_and_counts(void)
{
	struct pl_h1scan s;
	size_t c;
	const char *req = "GET / HTTP/1.1\r\nA: b\r\nC: d\r\n\r\nxx";

	pl_h1scan_init(&s, MAX_LINE, MAX_HEAD);
	CHECK(pl_h1scan_feed(&s, req, strlen(req), &c) == PL_H1SCAN_DONE);
	CHECK(c == strlen(req) - 2);
	CHECK(s.lines == 3);
	CHECK(s.head_len == c);
	/* after DONE: DONE again, nothing consumed */
	CHECK(pl_h1scan_feed(&s, "yy", 2, &c) == PL_H1SCAN_DONE);
	CHECK(c == 0);

	pl_h1scan_init(&s, MAX_LINE, MAX_HEAD);
	CHECK(pl_h1scan_feed(&s, "GET / HTTP/1.1\r\nX: a\r\n b\r\n", 27, &c) == PL_H1SCAN_E_BAD);
	CHECK(strcmp(pl_h1scan_reason(&s), "obs-fold") == 0);

	pl_h1scan_init(&s, MAX_LINE, MAX_HEAD);
	CHECK(pl_h1scan_feed(&s, "GET / HTTP/1.1\r\nX: a\rb", 22, &c) == PL_H1SCAN_E_BAD);
	CHECK(strcmp(pl_h1scan_reason(&s), "bare CR in header") == 0);

	pl_h1scan_init(&s, MAX_LINE, MAX_HEAD);
	CHECK(pl_h1scan_feed(&s, "GET / HTTP/1.1\r\nX: a\0", 21, &c) == PL_H1SCAN_E_BAD);
	CHECK(strcmp(pl_h1scan_reason(&s), "NUL in header") == 0);

	pl_h1scan_init(&s, MAX_LINE, MAX_HEAD);
	CHECK(pl_h1scan_feed(&s, "GET / HTTP/1.1\r\nHost : a", 24, &c) == PL_H1SCAN_E_BAD);
	CHECK(strcmp(pl_h1scan_reason(&s), "whitespace before colon") == 0);

	/* init resets everything */
	pl_h1scan_init(&s, MAX_LINE, MAX_HEAD);
	CHECK(s.reason == NULL && s.lines == 0 && s.head_len == 0);
}

int main(void)
{
	test_vectors();
	test_head_limit();
	test_reasons_and_counts();
	if (fails) {
		fprintf(stderr, "test_h1scan: %d failure(s)\n", fails);
		return 1;
	}
	printf("test_h1scan: ok (%zu vectors)\n", PL_ARRAY_LEN(vecs));
	return 0;
}
