#include "pl.h"
#include "yamlload.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <yaml.h>

struct frame {
	json_t *v;           /* object or array being filled */
	char *key;           /* object: key waiting for its value (malloc'd) */
};

struct loader {
	const char *fname;
	struct frame stack[PL_YAML_MAX_DEPTH];
	unsigned depth;
	json_t *root;
	unsigned doc_line;
	size_t nodes;
	char *err;
	size_t errlen;
};

static void seterr(struct loader *l, const yaml_mark_t *m, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(struct loader *l, const yaml_mark_t *m, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(l->err, l->errlen, "%s:%zu:%zu: %s", l->fname, m ? m->line + 1 : 0,
		 m ? m->column + 1 : 0, why);
}

static int eq_any(const char *s, size_t n, const char *const *list)
{
	for (; *list; list++)
		if (strlen(*list) == n && memcmp(*list, s, n) == 0)
			return 1;
	return 0;
}

static const char *const nulls[] = { "~", "null", "Null", "NULL", NULL };
static const char *const trues[] = { "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE",
				     "on", "On", "ON", NULL };
static const char *const falses[] = { "n", "N", "no", "No", "NO", "false", "False", "FALSE",
				      "off", "Off", "OFF", NULL };

/* Integer in go's strconv.ParseInt(s, 0, 64) syntax after '_' removal. 0 ok, -1 not an int, 1 overflow. */
static int parse_int(const char *s, size_t n, long long *out)
{
	char buf[80];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '_')
			continue;
		if (k + 1 >= sizeof(buf))
			return -1;
		buf[k++] = s[i];
	}
	buf[k] = 0;
	const char *p = buf;
	int neg = 0;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (!*p)
		return -1;
	unsigned base = 10;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	} else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B')) {
		base = 2;
		p += 2;
	} else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O')) {
		base = 8;
		p += 2;
	} else if (p[0] == '0' && p[1]) {
		base = 8;
		p++;
	}
	if (!*p)
		return -1;
	unsigned long long v = 0;
	int over = 0;
	for (; *p; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (*p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (*p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			return -1;
		if (d >= base)
			return -1;
		if (v > (ULLONG_MAX - d) / base)
			over = 1;
		else
			v = v * base + d;
	}
	if (over || v > (unsigned long long)LLONG_MAX + (neg ? 1u : 0u))
		return 1;
	*out = neg ? (long long)(0 - v) : (long long)v;
	return 0;
}

/* go-yaml v2's float syntax: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_float(const char *s, size_t n)
{
	size_t i = 0, digits = 0;
	if (i < n && (s[i] == '+' || s[i] == '-'))
		i++;
	if (i < n && s[i] == '.') {
		i++;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++, digits++;
		if (!digits)
			return 0;
	} else {
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++, digits++;
		if (!digits)
			return 0;
		if (i < n && s[i] == '.') {
			i++;
			while (i < n && s[i] >= '0' && s[i] <= '9')
				i++;
		}
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		digits = 0;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++, digits++;
		if (!digits)
			return 0;
	}
	return i == n;
}

json_t *pl_yaml_plain_scalar(const char *s, size_t n)
{
	if (n == 0 || eq_any(s, n, nulls))
		return json_null();
	if (eq_any(s, n, trues))
		return json_true();
	if (eq_any(s, n, falses))
		return json_false();
	if ((s[0] >= '0' && s[0] <= '9') || s[0] == '-' || s[0] == '+' || s[0] == '.') {
		long long iv;
		int r = parse_int(s, n, &iv);
		if (r == 0)
			return json_integer(iv);
		if (r == 1 || is_float(s, n)) {
			char buf[80];
			if (n < sizeof(buf)) {
				memcpy(buf, s, n);
				buf[n] = 0;
				double d = strtod(buf, NULL);
				if (isfinite(d))
					return json_real(d);
			}
		}
	}
	return json_stringn(s, n);
}

static int put_value(struct loader *l, json_t *v, const yaml_mark_t *m)
{
	if (l->depth == 0) {
		if (l->root) {
			json_decref(v);
			seterr(l, m, "more than one root node");
			return -1;
		}
		l->root = v;
		return 0;
	}
	struct frame *f = &l->stack[l->depth - 1];
	if (json_is_array(f->v)) {
		if (json_array_append_new(f->v, v) != 0) {
			seterr(l, m, "out of memory");
			return -1;
		}
		return 0;
	}
	PL_BUG_ON(!f->key);
	int rc = json_object_set_new(f->v, f->key, v);
	free(f->key);
	f->key = NULL;
	if (rc != 0) {
		seterr(l, m, "out of memory");
		return -1;
	}
	return 0;
}

static int on_scalar(struct loader *l, const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t n = ev->data.scalar.length;
	const yaml_mark_t *m = &ev->start_mark;

	if (memchr(s, 0, n)) {
		seterr(l, m, "NUL character in a string");
		return -1;
	}
	if (l->depth > 0) {
		struct frame *f = &l->stack[l->depth - 1];
		if (json_is_object(f->v) && !f->key) {
			/* a mapping key: JSON keys are strings, keep the source text */
			if (json_object_getn(f->v, s, n)) {
				seterr(l, m, "duplicate key \"%.*s\"", (int)PL_MIN(n, 64), s);
				return -1;
			}
			f->key = malloc(n + 1);
			if (!f->key) {
				seterr(l, m, "out of memory");
				return -1;
			}
			memcpy(f->key, s, n);
			f->key[n] = 0;
			return 0;
		}
	}
	json_t *v;
	const char *tag = (const char *)ev->data.scalar.tag;
	int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE || ev->data.scalar.style == YAML_ANY_SCALAR_STYLE;
	if (tag && (strcmp(tag, YAML_STR_TAG) == 0 || strcmp(tag, "!") == 0))
		plain = 0;
	v = plain ? pl_yaml_plain_scalar(s, n) : json_stringn(s, n);
	if (!v) {
		seterr(l, m, "invalid UTF-8 or out of memory");
		return -1;
	}
	return put_value(l, v, m);
}

static int on_start(struct loader *l, const yaml_event_t *ev, int is_map)
{
	const yaml_mark_t *m = &ev->start_mark;
	if (l->depth > 0) {
		struct frame *f = &l->stack[l->depth - 1];
		if (json_is_object(f->v) && !f->key) {
			seterr(l, m, "mapping keys must be scalars");
			return -1;
		}
	}
	if (l->depth >= PL_YAML_MAX_DEPTH) {
		seterr(l, m, "nesting deeper than %d", PL_YAML_MAX_DEPTH);
		return -1;
	}
	json_t *v = is_map ? json_object() : json_array();
	if (!v) {
		seterr(l, m, "out of memory");
		return -1;
	}
	json_incref(v);
	if (put_value(l, v, m) != 0) {
		json_decref(v);
		return -1;
	}
	l->stack[l->depth].v = v;
	l->stack[l->depth].key = NULL;
	l->depth++;
	return 0;
}

static void on_end(struct loader *l)
{
	PL_BUG_ON(l->depth == 0);
	struct frame *f = &l->stack[--l->depth];
	free(f->key);
	f->key = NULL;
	json_decref(f->v);
	f->v = NULL;
}

static void reset(struct loader *l)
{
	while (l->depth)
		on_end(l);
	json_decref(l->root);
	l->root = NULL;
}

int pl_yaml_load(const char *buf, size_t len, const char *fname, pl_yaml_doc_fn fn, void *data,
		 char *err, size_t errlen)
{
	struct loader l = { .fname = fname ? fname : "<input>", .err = err, .errlen = errlen };
	if (len > PL_YAML_MAX_BYTES) {
		seterr(&l, NULL, "larger than %u bytes", PL_YAML_MAX_BYTES);
		return -1;
	}
	yaml_parser_t p;
	if (!yaml_parser_initialize(&p)) {
		seterr(&l, NULL, "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);

	int rc = -1, done = 0;
	while (!done) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev)) {
			if (p.error == YAML_MEMORY_ERROR)
				seterr(&l, NULL, "out of memory");
			else if (p.context)
				seterr(&l, &p.problem_mark, "%s %s", p.problem ? p.problem : "syntax error", p.context);
			else
				seterr(&l, &p.problem_mark, "%s", p.problem ? p.problem : "syntax error");
			break;
		}
		int r = 0;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = 1;
			rc = 0;
			break;
		case YAML_DOCUMENT_START_EVENT:
			reset(&l);
			l.doc_line = (unsigned)ev.start_mark.line + 1;
			break;
		case YAML_DOCUMENT_END_EVENT:
			if (l.root && !json_is_null(l.root)) {
				json_t *doc = l.root;
				l.root = NULL;
				if (fn(doc, l.doc_line, data, err, errlen) != 0)
					r = -1;
			}
			reset(&l);
			break;
		case YAML_ALIAS_EVENT:
			seterr(&l, &ev.start_mark, "YAML aliases are not supported");
			r = -1;
			break;
		case YAML_SCALAR_EVENT:
		case YAML_MAPPING_START_EVENT:
		case YAML_SEQUENCE_START_EVENT:
			if (++l.nodes > PL_YAML_MAX_NODES) {
				seterr(&l, &ev.start_mark, "more than %u nodes", PL_YAML_MAX_NODES);
				r = -1;
			} else if (ev.type == YAML_SCALAR_EVENT) {
				r = on_scalar(&l, &ev);
			} else {
				r = on_start(&l, &ev, ev.type == YAML_MAPPING_START_EVENT);
			}
			break;
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT:
			on_end(&l);
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
		if (r != 0)
			break;
	}
	reset(&l);
	yaml_parser_delete(&p);
	return rc;
}
