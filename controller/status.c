#include "pl.h"
#include "log.h"
#include "status.h"
#include "yamlload.h"

#include <ctype.h>

static int needs_quotes(const char *s, size_t n)
{
	if (n == 0)
		return 1;
	/* would a YAML 1.1 reader type it as something else? */
	json_t *v = pl_yaml_plain_scalar(s, n);
	int typed = !json_is_string(v);
	json_decref(v);
	if (typed)
		return 1;
	/* YAML 1.1 timestamps ("2024-01-02...") read back as times: kubectl quotes them too */
	if (n >= 10 && isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]) &&
	    isdigit((unsigned char)s[3]) && s[4] == '-')
		return 1;
	if (strchr("-?:,[]{}#&*!|>'\"%@` \t", s[0]))
		return 1;
	if (s[n - 1] == ' ' || s[n - 1] == ':')
		return 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			return 1;
		if (ch == ':' && i + 1 < n && s[i + 1] == ' ')
			return 1;
		if (ch == '#' && i > 0 && s[i - 1] == ' ')
			return 1;
	}
	return 0;
}

static void emit_string(FILE *out, const char *s, size_t n)
{
	if (!needs_quotes(s, n)) {
		fwrite(s, 1, n, out);
		return;
	}
	fputc('"', out);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		switch (ch) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\t': fputs("\\t", out); break;
		case '\r': fputs("\\r", out); break;
		default:
			if (ch < 0x20 || ch == 0x7f)
				fprintf(out, "\\x%02x", ch);
			else
				fputc(ch, out);
		}
	}
	fputc('"', out);
}

static void emit_scalar(FILE *out, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		emit_string(out, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		fprintf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		fprintf(out, "%.17g", json_real_value(v));
		break;
	case JSON_TRUE:
		fputs("true", out);
		break;
	case JSON_FALSE:
		fputs("false", out);
		break;
	case JSON_NULL:
		fputs("null", out);
		break;
	case JSON_OBJECT:
		fputs("{}", out);
		break;
	case JSON_ARRAY:
		fputs("[]", out);
		break;
	}
}

static int is_block(const json_t *v)
{
	return (json_is_object(v) && json_object_size(v)) || (json_is_array(v) && json_array_size(v));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void indent_to(FILE *out, int n)
{
	for (int i = 0; i < n; i++)
		fputc(' ', out);
}

/* first_inline: the first line's indentation was already written (after "- "). */
static void emit(FILE *out, const json_t *v, int indent, int first_inline)
{
	if (json_is_object(v) && json_object_size(v)) {
		size_t n = json_object_size(v), k = 0;
		const char **keys = pl_xmalloc(n * sizeof(*keys));
		const char *key;
		json_t *x;
		json_object_foreach((json_t *)v, key, x) keys[k++] = key;
		qsort(keys, n, sizeof(*keys), cmp_str);
		for (size_t i = 0; i < n; i++) {
			if (i || !first_inline)
				indent_to(out, indent);
			emit_string(out, keys[i], strlen(keys[i]));
			fputc(':', out);
			x = json_object_get(v, keys[i]);
			if (is_block(x)) {
				fputc('\n', out);
				emit(out, x, json_is_array(x) ? indent : indent + 2, 0);
			} else {
				fputc(' ', out);
				emit_scalar(out, x);
				fputc('\n', out);
			}
		}
		free(keys);
	} else if (json_is_array(v) && json_array_size(v)) {
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) {
			if (i || !first_inline)
				indent_to(out, indent);
			fputs("- ", out);
			if (is_block(x)) {
				emit(out, x, indent + 2, 1);
			} else {
				emit_scalar(out, x);
				fputc('\n', out);
			}
		}
	} else {
		if (!first_inline)
			indent_to(out, indent);
		emit_scalar(out, v);
		fputc('\n', out);
	}
}

void pl_yaml_emit(FILE *out, const json_t *v, int indent)
{
	emit(out, v, indent, 0);
}

void pl_status_print(FILE *out, const json_t *statuses)
{
	size_t i;
	json_t *o;
	json_array_foreach(statuses, i, o) {
		fputs("---\n", out);
		emit(out, o, 0, 0);
	}
}

struct logctx {
	unsigned n, max;
};

static const char *str_or(const json_t *v, const char *dflt)
{
	const char *s = json_string_value(v);
	return s ? s : dflt;
}

static void log_conds(struct logctx *lc, const char *who, const char *sub, const json_t *conds)
{
	size_t i;
	json_t *c;
	json_array_foreach(conds, i, c) {
		const char *type = json_string_value(json_object_get(c, "type"));
		const char *st = json_string_value(json_object_get(c, "status"));
		const char *reason = json_string_value(json_object_get(c, "reason"));
		const char *msg = json_string_value(json_object_get(c, "message"));
		if (!type || !st)
			continue;
		int bad_when_true = !strcmp(type, "Conflicted") || !strcmp(type, "PartiallyInvalid");
		if (bad_when_true != !strcmp(st, "True"))
			continue;
		if (lc->n++ < lc->max)
			pl_warn("%s%s: %s=%s %s: %s", who, sub, type, st, reason ? reason : "", msg ? msg : "");
	}
}

unsigned pl_status_log_problems(const json_t *statuses, unsigned max)
{
	struct logctx lc = { 0, max };
	size_t i;
	json_t *o;
	json_array_foreach(statuses, i, o) {
		json_t *md = json_object_get(o, "metadata"), *st = json_object_get(o, "status");
		const char *ns = json_string_value(json_object_get(md, "namespace"));
		char who[600], sub[300];
		snprintf(who, sizeof(who), "%s %s%s%s", str_or(json_object_get(o, "kind"), "?"),
			 ns ? ns : "", ns ? "/" : "", str_or(json_object_get(md, "name"), "?"));
		log_conds(&lc, who, "", json_object_get(st, "conditions"));
		size_t k;
		json_t *x;
		json_array_foreach(json_object_get(st, "listeners"), k, x) {
			snprintf(sub, sizeof(sub), " listener %s", str_or(json_object_get(x, "name"), "?"));
			log_conds(&lc, who, sub, json_object_get(x, "conditions"));
		}
		json_array_foreach(json_object_get(st, "parents"), k, x) {
			json_t *pr = json_object_get(x, "parentRef");
			const char *pns = json_string_value(json_object_get(pr, "namespace"));
			const char *sec = json_string_value(json_object_get(pr, "sectionName"));
			snprintf(sub, sizeof(sub), " parent %s%s%s%s%s", pns ? pns : "", pns ? "/" : "",
				 str_or(json_object_get(pr, "name"), "?"), sec ? "/" : "", sec ? sec : "");
			log_conds(&lc, who, sub, json_object_get(x, "conditions"));
		}
	}
	if (lc.n > lc.max)
		pl_warn("... and %u more unhealthy conditions", lc.n - lc.max);
	return lc.n;
}
