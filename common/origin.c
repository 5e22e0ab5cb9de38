/*
 * Origin parsing (contract in origin.h). Deliberately narrower than RFC 3986
 * host syntax (no percent-encoding, no sub-delims): browsers serialise
 * origins from parsed URLs, so anything else is not an origin a page can
 * have, and what this accepts is safe to echo back in a response field.
 */
#include "pl.h"
#include "origin.h"

static int is_alpha(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static int host_char(char ch)
{
	return is_alpha(ch) || is_digit(ch) || ch == '-' || ch == '.' || ch == '_';
}

/* End of the dot-separated non-empty labels starting at s[i], or 0 when there are none or one is empty. */
static size_t name_end(const char *s, size_t i, size_t n)
{
	size_t start = i;
	while (i < n && host_char(s[i])) {
		if (s[i] == '.' && (i == start || s[i - 1] == '.'))
			return 0;
		i++;
	}
	if (i == start || s[i - 1] == '.')
		return 0;
	return i;
}

static int v6_char(char ch)
{
	return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') || ch == ':' || ch == '.';
}

static uint32_t default_port(const char *s, size_t n)
{
	if ((n == 4 && pl_strncaseeq(s, "http", 4)) || (n == 2 && pl_strncaseeq(s, "ws", 2)))
		return 80;
	if ((n == 5 && pl_strncaseeq(s, "https", 5)) || (n == 3 && pl_strncaseeq(s, "wss", 3)))
		return 443;
	return 0;
}

int pl_origin_parse(const char *s, size_t n, int flags, struct pl_origin *o)
{
	size_t i = 0;
	if (n == 0 || !is_alpha(s[0]))
		return -1;
	while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (n - i < 3 || memcmp(s + i, "://", 3) != 0)
		return -1;
	o->scheme = s;
	o->scheme_len = (uint32_t)i;
	i += 3;
	size_t h = i;
	if (i < n && s[i] == '[') {
		while (++i < n && v6_char(s[i]))
			;
		if (i == n || s[i] != ']' || i - h < 3)
			return -1;
		i++;
	} else if ((flags & PL_ORIGIN_WILD) && i < n && s[i] == '*') {
		i++;
		/* "*." then a name: a wildcard only ever stands for whole labels on the left */
		if (i < n && s[i] == '.' && (i = name_end(s, i + 1, n)) == 0)
			return -1;
	} else if ((i = name_end(s, i, n)) == 0) {
		return -1;
	}
	o->host = s + h;
	o->host_len = (uint32_t)(i - h);
	o->port = default_port(o->scheme, o->scheme_len);
	if (i < n && s[i] == ':') {
		size_t p = ++i;
		uint32_t port = 0;
		while (i < n && is_digit(s[i]) && i - p < 5)
			port = port * 10 + (uint32_t)(s[i++] - '0');
		if (i == p || port == 0 || port > 65535)
			return -1;
		o->port = port;
	}
	return i == n ? 0 : -1;
}
