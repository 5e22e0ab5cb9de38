#include "pl.h"

#include "h1scan.h"

/*
 * The scanner is a state machine (a switch over a local enum, as nginx's
 * request-line parser) so that it gives the same answer whatever the chunk
 * boundaries are: all state is stored back into struct pl_h1scan before
 * feed returns, never carried in locals between chunks. Within a chunk,
 * runs of ordinary bytes are skipped by table lookups (run()).
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
const uint8_t pl_h1_tchar[256] = {
	['0' ... '9'] = 1, ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1,
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
	['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
};

/* start line: VCHAR, SP, obs-text (obs-text for reason phrases) */
static const uint8_t start_tab[256] = { [0x20 ... 0x7e] = 1, [0x80 ... 0xff] = 1 };
/* field value: VCHAR, SP, HTAB, obs-text */
static const uint8_t value_tab[256] = { ['\t'] = 1, [0x20 ... 0x7e] = 1, [0x80 ... 0xff] = 1 };

/*
 * Length of the run of bytes in tab[] starting at p[i], stopping at len or
 * after room bytes (room >= 1: the caller counted p[i] toward max_head already).
 */
static inline size_t run(const uint8_t *tab, const char *p, size_t i, size_t len, size_t room)
{
	size_t end = len - i < room ? len : i + room, j = i;
	while (j < end && tab[(unsigned char)p[j]])
		j++;
	return j - i;
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

/*
 * The state and counters are copied into locals for the loop and stored back
 * on every exit: p is a char pointer, so the compiler must otherwise assume
 * each store through s may change *p and reload everything per byte. Runs of
 * ordinary bytes (start line, field name, field value) are skipped in inner
 * loops bounded by max_head, so the per-byte switch runs only at delimiters.
 */
#define FAIL(e, r) do { rc = (e); why = (r); goto out; } while (0)

int pl_h1scan_feed(struct pl_h1scan *s, const char *p, size_t len, size_t *consumed)
{
	*consumed = 0;
	if (s->state < 0)
		return s->state;   /* sticky: the same error again */
	if (s->state == ST_DONE)
		return PL_H1SCAN_DONE;

	int st = s->state, rc = PL_H1SCAN_MORE;
	const char *why = NULL;
	uint32_t head_len = s->head_len, line_len = s->line_len;
	const uint32_t max_head = s->max_head, max_line = s->max_line;
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (++head_len > max_head)
			FAIL(PL_H1SCAN_E_HEAD_TOO_LONG, "header section too long");

		switch (st) {
		case ST_LEAD_CR:
			if (c != '\n')
				FAIL(PL_H1SCAN_E_BAD, "bare CR in start line");
			/* only CRLFs were consumed so far: head_len / 2 of them */
			if (head_len / 2 > MAX_LEADING_CRLF)
				FAIL(PL_H1SCAN_E_BAD, "too many empty lines before start line");
			st = ST_LEAD;
			break;
		case ST_LEAD:
			if (c == '\r') {
				st = ST_LEAD_CR;
				break;
			}
			if (c == '\n')
				FAIL(PL_H1SCAN_E_BAD, "bare LF line ending");
			st = ST_START;
			line_len = 0;
			__attribute__((fallthrough));   /* c is the start line's first byte */
		case ST_START: {
			size_t j = i + run(start_tab, p, i, len, max_head - head_len + 1);
			if (j > i) {
				if (line_len + (j - i) > max_line) {
					/* counters as if scanned up to the first byte over the limit */
					head_len += max_line - line_len;
					line_len = max_line + 1;
					FAIL(PL_H1SCAN_E_LINE_TOO_LONG, "start line too long");
				}
				head_len += (uint32_t)(j - i - 1);
				line_len += (uint32_t)(j - i);
				i = j - 1;
				break;
			}
			if (c == '\r') {
				st = ST_START_CR;
				break;
			}
			if (c == '\n')
				FAIL(PL_H1SCAN_E_BAD, "bare LF line ending");
			FAIL(PL_H1SCAN_E_BAD, ctl_reason(c, 1));
		}
		case ST_START_CR:
			if (c != '\n')
				FAIL(PL_H1SCAN_E_BAD, "bare CR in start line");
			s->lines++;
			line_len = 0;
			st = ST_LINE;
			break;
		case ST_LINE:
			if (c == '\r') {
				st = ST_END_CR;
				break;
			}
			if (c == '\n')
				FAIL(PL_H1SCAN_E_BAD, "bare LF line ending");
			if (c == ' ' || c == '\t')
				FAIL(PL_H1SCAN_E_BAD, s->lines == 1 ? "whitespace before first header" : "obs-fold");
			if (c == ':')
				FAIL(PL_H1SCAN_E_BAD, "empty header name");
			if (!pl_h1_tchar[c])
				FAIL(PL_H1SCAN_E_BAD, "invalid character in header name");
			line_len = 1;
			st = ST_NAME;
			break;
		case ST_NAME: {
			size_t j = i + run(pl_h1_tchar, p, i, len, max_head - head_len + 1);
			if (j > i) {
				head_len += (uint32_t)(j - i - 1);
				line_len += (uint32_t)(j - i);
				i = j - 1;
				break;
			}
			line_len++;
			if (c == ':') {
				st = ST_VALUE;
				break;
			}
			if (c == ' ' || c == '\t')
				FAIL(PL_H1SCAN_E_BAD, "whitespace before colon");
			if (c == '\r' || c == '\n')
				FAIL(PL_H1SCAN_E_BAD, "header line without colon");
			FAIL(PL_H1SCAN_E_BAD, "invalid character in header name");
		}
		case ST_VALUE: {
			size_t j = i + run(value_tab, p, i, len, max_head - head_len + 1);
			if (j > i) {
				head_len += (uint32_t)(j - i - 1);
				line_len += (uint32_t)(j - i);
				i = j - 1;
				break;
			}
			if (c == '\r') {
				st = ST_VALUE_CR;
				break;
			}
			if (c == '\n')
				FAIL(PL_H1SCAN_E_BAD, "bare LF line ending");
			FAIL(PL_H1SCAN_E_BAD, ctl_reason(c, 0));
		}
		case ST_VALUE_CR:
			if (c != '\n')
				FAIL(PL_H1SCAN_E_BAD, "bare CR in header");
			s->lines++;
			line_len = 0;
			st = ST_LINE;
			break;
		case ST_END_CR:
			if (c != '\n')
				FAIL(PL_H1SCAN_E_BAD, "bare CR in header");
			st = ST_DONE;
			rc = PL_H1SCAN_DONE;
			*consumed = i + 1;
			goto out;
		default:
			PL_PANIC("h1scan: bad state %d", st);
		}
	}
	*consumed = len;
out:
	s->head_len = head_len;
	s->line_len = line_len;
	if (rc < 0)
		return fail(s, rc, why);
	s->state = st;
	return rc;
}
