#include "pl.h"

#include "h1scan.h"

/*
 * The scanner is a byte-at-a-time state machine (a switch over a local enum,
 * as nginx's request-line parser) so that it gives the same answer whatever
 * the chunk boundaries are: all state lives in struct pl_h1scan, never in
 * locals carried between bytes of different chunks.
 *
 * It checks only the lexical shape of the head (line endings, characters,
 * field-name syntax). The start line's structure (method, target, version,
 * status code) is left to llhttp, which is strict about it.
 *
 * Leading empty lines: RFC 9112 section 2.2 says a server SHOULD ignore at
 * least one CRLF before the request line (clients sometimes send one after a
 * POST body). We ignore up to MAX_LEADING_CRLF of them and reject more, so an
 * idle peer cannot keep a connection busy with an endless stream of CRLFs
 * (they also count toward max_head). Bare LF there is rejected like anywhere.
 */
#define MAX_LEADING_CRLF 4

enum {
	ST_LEAD = 0,    /* before the start line (leading CRLFs allowed) */
	ST_LEAD_CR,     /* leading CR seen, LF must follow */
	ST_START,       /* inside the start line */
	ST_START_CR,    /* CR ending the start line seen */
	ST_LINE,        /* at the beginning of a field line or of the final CRLF */
	ST_NAME,        /* inside a field name */
	ST_VALUE,       /* after the colon, inside the field value */
	ST_VALUE_CR,    /* CR ending a field line seen */
	ST_END_CR,      /* CR of the final empty line seen */
	ST_DONE,
	/* errors are stored as the negative PL_H1SCAN_E_* code */
};

/* token characters (RFC 9110 5.6.2); a constant table, so no init race */
static const uint8_t tchar[256] = {
	['0' ... '9'] = 1, ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1,
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
	['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
};

/* field value: VCHAR, SP, HTAB, obs-text */
static inline int value_char(unsigned char c)
{
	return (c >= 0x20 && c != 0x7f) || c == '\t';
}

/* start line: VCHAR, SP, obs-text (obs-text for reason phrases) */
static inline int start_char(unsigned char c)
{
	return c >= 0x20 && c != 0x7f;
}

void pl_h1scan_init(struct pl_h1scan *s, uint32_t max_line, uint32_t max_head)
{
	memset(s, 0, sizeof(*s));
	s->state = ST_LEAD;
	s->max_line = max_line;
	s->max_head = max_head;
}

static int fail(struct pl_h1scan *s, int err, const char *reason)
{
	s->state = err;
	s->reason = reason;
	return err;
}

/* Reason for a control byte where a printable one was expected. */
static const char *ctl_reason(unsigned char c, int in_start)
{
	if (c == 0)
		return in_start ? "NUL in start line" : "NUL in header";
	if (c == 0x7f)
		return in_start ? "DEL in start line" : "DEL in header";
	return in_start ? "control character in start line" : "control character in header";
}

int pl_h1scan_feed(struct pl_h1scan *s, const char *p, size_t len, size_t *consumed)
{
	*consumed = 0;
	if (s->state < 0)
		return s->state;   /* sticky: the same error again */
	if (s->state == ST_DONE)
		return PL_H1SCAN_DONE;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (++s->head_len > s->max_head)
			return fail(s, PL_H1SCAN_E_HEAD_TOO_LONG, "header section too long");

		switch (s->state) {
		case ST_LEAD_CR:
			if (c != '\n')
				return fail(s, PL_H1SCAN_E_BAD, "bare CR in start line");
			/* only CRLFs were consumed so far: head_len / 2 of them */
			if (s->head_len / 2 > MAX_LEADING_CRLF)
				return fail(s, PL_H1SCAN_E_BAD, "too many empty lines before start line");
			s->state = ST_LEAD;
			break;
		case ST_LEAD:
			if (c == '\r') {
				s->state = ST_LEAD_CR;
				break;
			}
			if (c == '\n')
				return fail(s, PL_H1SCAN_E_BAD, "bare LF line ending");
			s->state = ST_START;
			s->line_len = 0;
			__attribute__((fallthrough));   /* c is the start line's first byte */
		case ST_START:
			if (c == '\r') {
				s->state = ST_START_CR;
				break;
			}
			if (c == '\n')
				return fail(s, PL_H1SCAN_E_BAD, "bare LF line ending");
			if (!start_char(c))
				return fail(s, PL_H1SCAN_E_BAD, ctl_reason(c, 1));
			if (++s->line_len > s->max_line)
				return fail(s, PL_H1SCAN_E_LINE_TOO_LONG, "start line too long");
			break;
		case ST_START_CR:
			if (c != '\n')
				return fail(s, PL_H1SCAN_E_BAD, "bare CR in start line");
			s->lines++;
			s->line_len = 0;
			s->state = ST_LINE;
			break;
		case ST_LINE:
			if (c == '\r') {
				s->state = ST_END_CR;
				break;
			}
			if (c == '\n')
				return fail(s, PL_H1SCAN_E_BAD, "bare LF line ending");
			if (c == ' ' || c == '\t')
				return fail(s, PL_H1SCAN_E_BAD,
					    s->lines == 1 ? "whitespace before first header" : "obs-fold");
			if (c == ':')
				return fail(s, PL_H1SCAN_E_BAD, "empty header name");
			if (!tchar[c])
				return fail(s, PL_H1SCAN_E_BAD, "invalid character in header name");
			s->line_len = 1;
			s->state = ST_NAME;
			break;
		case ST_NAME:
			s->line_len++;
			if (c == ':') {
				s->state = ST_VALUE;
				break;
			}
			if (tchar[c])
				break;
			if (c == ' ' || c == '\t')
				return fail(s, PL_H1SCAN_E_BAD, "whitespace before colon");
			if (c == '\r' || c == '\n')
				return fail(s, PL_H1SCAN_E_BAD, "header line without colon");
			return fail(s, PL_H1SCAN_E_BAD, "invalid character in header name");
		case ST_VALUE: {
			/* Fast path: run over the ordinary value bytes of this chunk. */
			size_t room = s->max_head - s->head_len + 1;   /* bytes allowed incl. c */
			size_t j = i;
			while (j < len && j - i < room && value_char((unsigned char)p[j]))
				j++;
			if (j > i) {
				/* p[i..j) are value bytes; c itself was already counted */
				s->head_len += (uint32_t)(j - i - 1);
				s->line_len += (uint32_t)(j - i);
				i = j - 1;
				break;
			}
			if (c == '\r') {
				s->state = ST_VALUE_CR;
				break;
			}
			if (c == '\n')
				return fail(s, PL_H1SCAN_E_BAD, "bare LF line ending");
			return fail(s, PL_H1SCAN_E_BAD, ctl_reason(c, 0));
		}
		case ST_VALUE_CR:
			if (c != '\n')
				return fail(s, PL_H1SCAN_E_BAD, "bare CR in header");
			s->lines++;
			s->line_len = 0;
			s->state = ST_LINE;
			break;
		case ST_END_CR:
			if (c != '\n')
				return fail(s, PL_H1SCAN_E_BAD, "bare CR in header");
			s->state = ST_DONE;
			*consumed = i + 1;
			return PL_H1SCAN_DONE;
		default:
			PL_PANIC("h1scan: bad state %d", s->state);
		}
	}
	*consumed = len;
	return PL_H1SCAN_MORE;
}
