/*
 * libFuzzer target: an HTTP/1 request head through pl_h1scan, then llhttp
 * configured as the proxy does (HTTP_REQUEST, no lenient flags).
 *
 * Input: two bytes choosing a split point, then the request bytes; both
 * parsers get the bytes in two chunks cut there. Besides "no crash" (ASan,
 * UBSan), it asserts:
 * - pl_h1scan gives the same answer for the split feed as for one chunk;
 * - llhttp callback spans lie inside the chunk being parsed;
 * - when llhttp completes the first head and pl_h1scan accepted it, both
 *   agree where the head ends (a disagreement is a smuggling vector).
 */
#include "common/pl.h"

#include <llhttp.h>

#include "proxy/h1scan.h"

#define MAX_LINE 512
#define MAX_HEAD 2048

struct ctx {
	const char *base;        /* start of the whole input */
	const char *chunk;       /* chunk being executed */
	size_t chunk_len;
	int heads;               /* on_headers_complete calls */
	int first_done;          /* head_end/first_major valid */
	size_t head_end;         /* offset just after the first head, per llhttp */
	int first_major;
};

static void check_span(llhttp_t *p, const char *at, size_t len)
{
	struct ctx *c = p->data;
	if (at < c->chunk || at + len > c->chunk + c->chunk_len)
		__builtin_trap();
}

static int on_data(llhttp_t *p, const char *at, size_t len)
{
	check_span(p, at, len);
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	struct ctx *c = p->data;
	c->heads++;
	return HPE_PAUSED;   /* stop so the caller can read the position */
}

static int scan(const char *b, size_t len, size_t cut, size_t *end)
{
	struct pl_h1scan s;
	size_t consumed;
	int rc;

	pl_h1scan_init(&s, MAX_LINE, MAX_HEAD);
	rc = pl_h1scan_feed(&s, b, cut, &consumed);
	if (rc == PL_H1SCAN_DONE) {
		*end = consumed;
		return rc;
	}
	if (rc < 0) {
		if (!pl_h1scan_reason(&s))
			__builtin_trap();
		return rc;
	}
	if (consumed != cut)
		__builtin_trap();
	rc = pl_h1scan_feed(&s, b + cut, len - cut, &consumed);
	if (rc == PL_H1SCAN_DONE)
		*end = cut + consumed;
	if (rc < 0 && !pl_h1scan_reason(&s))
		__builtin_trap();
	return rc;
}

/* Executes one chunk, resuming after each pause at a head's end. */
static llhttp_errno_t exec_chunk(llhttp_t *parser, struct ctx *c, const char *p, size_t n)
{
	for (;;) {
		c->chunk = p;
		c->chunk_len = n;
		llhttp_errno_t err = llhttp_execute(parser, p, n);
		if (err != HPE_PAUSED)
			return err;
		const char *pos = llhttp_get_error_pos(parser);
		if (pos < p || pos > p + n)
			__builtin_trap();
		if (!c->first_done) {
			c->first_done = 1;
			c->head_end = (size_t)(pos - c->base);
			c->first_major = llhttp_get_http_major(parser);
		}
		llhttp_resume(parser);
		n -= (size_t)(pos - p);
		p = pos;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static llhttp_settings_t settings;
	static int settings_ready;

	if (size < 2)
		return 0;
	size_t len = size - 2;
	size_t cut = ((size_t)data[0] | (size_t)data[1] << 8) % (len + 1);
	const char *b = (const char *)data + 2;

	/* 1. the scanner, split and whole */
	size_t end_split = 0, end_whole = 0;
	int rc_split = scan(b, len, cut, &end_split);
	int rc_whole = scan(b, len, len, &end_whole);
	if (rc_split != rc_whole || end_split != end_whole)
		__builtin_trap();

	/* 2. llhttp, split the same way; parse on past the first head */
	if (!settings_ready) {
		llhttp_settings_init(&settings);
		settings.on_url = on_data;
		settings.on_status = on_data;
		settings.on_method = on_data;
		settings.on_version = on_data;
		settings.on_header_field = on_data;
		settings.on_header_value = on_data;
		settings.on_body = on_data;
		settings.on_chunk_extension_name = on_data;
		settings.on_chunk_extension_value = on_data;
		settings.on_headers_complete = on_headers_complete;
		settings_ready = 1;
	}
	llhttp_t parser;
	struct ctx c = { .base = b };
	llhttp_init(&parser, HTTP_REQUEST, &settings);
	parser.data = &c;
	if (exec_chunk(&parser, &c, b, cut) == HPE_OK && exec_chunk(&parser, &c, b + cut, len - cut) == HPE_OK)
		(void)llhttp_finish(&parser);

	/*
	 * 3. agreement. llhttp completing a head the scanner rejected is fine:
	 * the proxy acts on the scanner's verdict first. But a head both
	 * accept must end at the same byte, and an HTTP/1.x head llhttp
	 * completed must not leave the scanner waiting for more.
	 */
	if (c.first_done) {
		if (rc_whole == PL_H1SCAN_DONE && c.head_end != end_whole)
			__builtin_trap();
		if (rc_whole == PL_H1SCAN_MORE && c.first_major == 1)
			__builtin_trap();
	}
	return 0;
}
