/*
 * Strict HTTP/1.x head scanner: a pure, incremental check run over the raw
 * bytes of a request or response head *before* llhttp sees them, because
 * llhttp 8.1.0 (even without lenient flags) accepts a bare CR inside a header
 * value, a head ending in "\r\n\rX", and obs-fold continuation lines.
 *
 * Rejects: any CR not followed by LF; bare LF line endings; obs-fold (a header
 * line starting with SP/HTAB); NUL and other CTLs (except HTAB in values);
 * DEL; empty or non-token header names; whitespace before the colon; a start
 * line longer than max_line; a head longer than max_head.
 *
 * Contract: pl_h1scan_init() then pl_h1scan_feed() with consecutive chunks.
 * feed returns PL_H1SCAN_MORE (all len bytes consumed, head not finished),
 * PL_H1SCAN_DONE (*consumed = bytes up to and including the final CRLFCRLF;
 * the rest of the chunk is body), or a negative error; pl_h1scan_reason()
 * tells why. Errors PL_H1SCAN_E_LINE_TOO_LONG / E_HEAD_TOO_LONG map to 414/431,
 * all others to 400. Pure: no I/O, no allocation; any thread.
 */
#ifndef PL_H1SCAN_H
#define PL_H1SCAN_H

#include <stddef.h>
#include <stdint.h>

enum {
	PL_H1SCAN_DONE = 1,
	PL_H1SCAN_MORE = 0,
	PL_H1SCAN_E_BAD = -1,
	PL_H1SCAN_E_LINE_TOO_LONG = -2,
	PL_H1SCAN_E_HEAD_TOO_LONG = -3,
};

struct pl_h1scan {
	int state;
	uint32_t line_len;   /* bytes in the current line */
	uint32_t head_len;   /* bytes in the head so far */
	uint32_t max_line, max_head;
	int lines;           /* lines completed, start line included */
	const char *reason;
};

/*
 * RFC 9110 5.6.2 token characters (tchar): 1 for a token byte, 0 otherwise.
 * Constant data, any thread; the one table for every module checking names.
 */
extern const uint8_t pl_h1_tchar[256];
static inline int pl_h1_is_tchar(unsigned char c) { return pl_h1_tchar[c]; }

void pl_h1scan_init(struct pl_h1scan *s, uint32_t max_line, uint32_t max_head);
int pl_h1scan_feed(struct pl_h1scan *s, const char *p, size_t len, size_t *consumed);
static inline const char *pl_h1scan_reason(const struct pl_h1scan *s) { return s->reason; }

#endif
