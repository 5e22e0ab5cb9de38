/*
 * The table as JSON (contract in tabledump.h). Written straight into one
 * growing buffer: a tree of the whole table would be many times its size,
 * and this runs on worker 0's loop when /config is asked for.
 */
#include "pl.h"
#include "table-t.h"
#include "tabledump.h"

#include <inttypes.h>

struct out {
	char *p;
	size_t len, cap;
	int oom;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 65536;
		while (cap < o->len + n + 1)
			cap *= 2;
		char *p = realloc(o->p, cap);
		if (!p) {
			o->oom = 1;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void lit(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_u64(struct out *o, unsigned long long v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%llu", v);
	put(o, num, (size_t)n);
}

static void put_int(struct out *o, long long v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%lld", v);
	put(o, num, (size_t)n);
}

/* Length of the UTF-8 sequence at s (at most n bytes), 0 if invalid: RFC 3629, no surrogates, no overlongs. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char u = s[0];
	size_t len;
	uint32_t v;
	if (u < 0x80)
		return 1;
	if (u >= 0xc2 && u <= 0xdf)
		len = 2, v = u & 0x1f;
	else if (u >= 0xe0 && u <= 0xef)
		len = 3, v = u & 0x0f;
	else if (u >= 0xf0 && u <= 0xf4)
		len = 4, v = u & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) || (len == 3 && v < 0x800) || (len == 4 && v < 0x10000))
		return 0;
	return len;
}

static int utf8_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq((const unsigned char *)s + i, n - i);
		if (!k)
			return 0;
		i += k;
	}
	return 1;
}

/* A JSON string: '"' and '\\' escaped, control characters as \b \f \n \r \t or \u00XX. */
static void str_raw(struct out *o, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t run = 0;
	put(o, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\') {
			run++;
			continue;
		}
		put(o, s + i - run, run);
		run = 0;
		char esc[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
		size_t el = 2;
		switch (ch) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default: el = 6; break;
		}
		put(o, esc, el);
	}
	put(o, s + len - run, run);
	put(o, "\"", 1);
}

/*
 * Any bytes as a JSON string: valid UTF-8 as it is, anything else with '?'
 * for every byte >= 0x80 and cut at 1023 bytes (what the compiler's status
 * messages do with invalid input).
 */
static void str(struct out *o, const char *s)
{
	if (!s)
		s = "";
	size_t n = strlen(s);
	if (utf8_valid(s, n)) {
		str_raw(o, s, n);
		return;
	}
	char buf[1024];
	size_t i;
	for (i = 0; i < n && i < sizeof(buf) - 1; i++)
		buf[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
	str_raw(o, buf, i);
}

static void str_or_null(struct out *o, const char *s)
{
	if (s)
		str(o, s);
	else
		lit(o, "null");
}

static void str_array(struct out *o, char *const *v, uint32_t n)
{
	lit(o, "[");
	for (uint32_t i = 0; i < n; i++) {
		if (i)
			lit(o, ",");
		str(o, v[i]);
	}
	lit(o, "]");
}

static void host(struct out *o, const struct pl_hostname *h)
{
	if (h->kind == PL_HOST_ANY) {
		lit(o, "\"*\"");
	} else if (h->kind == PL_HOST_WILDCARD) {
		char buf[300];
		snprintf(buf, sizeof(buf), "*%s", h->name);
		str(o, buf);
	} else {
		str(o, h->name);
	}
}

static const char *proto_str(enum pl_proto p)
{
	static const char *const s[] = { "HTTP", "HTTPS", "TLS", "TCP", "UDP" };
	return (unsigned)p < PL_ARRAY_LEN(s) ? s[p] : "?";
}

/* {"type": type, "name": name, "value": value}, without "type" when type is NULL; a ',' first unless first. */
static void name_value(struct out *o, int first, const char *type, const char *name, const char *value)
{
	lit(o, first ? "{" : ",{");
	if (type) {
		lit(o, "\"type\":\"");
		lit(o, type);
		lit(o, "\",");
	}
	lit(o, "\"name\":");
	str(o, name);
	lit(o, ",\"value\":");
	str(o, value);
	lit(o, "}");
}

static void kvs(struct out *o, const struct pl_kv *kv, uint32_t n)
{
	lit(o, "[");
	for (uint32_t i = 0; i < n; i++)
		name_value(o, i == 0, NULL, kv[i].name, kv[i].value);
	lit(o, "]");
}

static void pathmod(struct out *o, const struct pl_path_mod *pm)
{
	if (pm->type == PL_PATHMOD_NONE) {
		lit(o, "null");
		return;
	}
	lit(o, pm->type == PL_PATHMOD_FULL ? "{\"type\":\"ReplaceFullPath\",\"value\":"
					   : "{\"type\":\"ReplacePrefixMatch\",\"value\":");
	str(o, pm->value);
	lit(o, "}");
}

static void cors(struct out *o, const struct pl_cors *c)
{
	lit(o, "\"type\":\"CORS\",\"allowOrigins\":[");
	if (c->any_origin)
		lit(o, "\"*\"");
	for (uint32_t k = 0; k < c->n_origins; k++) {
		if (k)
			lit(o, ",");
		str(o, c->origins[k].text);
	}
	lit(o, "],\"allowCredentials\":");
	lit(o, c->credentials ? "true" : "false");
	lit(o, ",\"allowMethods\":");
	str_or_null(o, c->any_method ? "*" : c->allow_methods);
	lit(o, ",\"allowHeaders\":");
	str_or_null(o, c->any_header ? "*" : c->allow_headers);
	lit(o, ",\"exposeHeaders\":");
	str_or_null(o, c->expose_headers);
	lit(o, ",\"exposeAny\":");
	lit(o, c->any_expose ? "true" : "false");
	lit(o, ",\"maxAge\":");
	put_u64(o, c->max_age);
}

static void filters(struct out *o, const struct pl_filter *f, uint32_t n)
{
	lit(o, "[");
	for (uint32_t i = 0; i < n; i++) {
		lit(o, i ? ",{" : "{");
		switch (f[i].type) {
		case PL_FILTER_REQUEST_HEADER:
		case PL_FILTER_RESPONSE_HEADER: {
			const struct pl_header_mod *h = &f[i].u.hdr;
			lit(o, f[i].type == PL_FILTER_REQUEST_HEADER ? "\"type\":\"RequestHeaderModifier\""
								     : "\"type\":\"ResponseHeaderModifier\"");
			lit(o, ",\"set\":");
			kvs(o, h->set, h->n_set);
			lit(o, ",\"add\":");
			kvs(o, h->add, h->n_add);
			lit(o, ",\"remove\":");
			str_array(o, h->remove, h->n_remove);
			break;
		}
		case PL_FILTER_REDIRECT: {
			const struct pl_redirect *rd = &f[i].u.redirect;
			lit(o, "\"type\":\"RequestRedirect\",\"scheme\":");
			str_or_null(o, rd->scheme);
			lit(o, ",\"hostname\":");
			str_or_null(o, rd->hostname);
			lit(o, ",\"port\":");
			put_int(o, rd->port);
			lit(o, ",\"path\":");
			pathmod(o, &rd->path);
			lit(o, ",\"statusCode\":");
			put_int(o, rd->status_code);
			break;
		}
		case PL_FILTER_REWRITE:
			lit(o, "\"type\":\"URLRewrite\",\"hostname\":");
			str_or_null(o, f[i].u.rewrite.hostname);
			lit(o, ",\"path\":");
			pathmod(o, &f[i].u.rewrite.path);
			break;
		case PL_FILTER_MIRROR:
			lit(o, "\"type\":\"RequestMirror\",\"cluster\":");
			str_or_null(o, f[i].u.mirror.cluster ? f[i].u.mirror.cluster->name : NULL);
			lit(o, ",\"numerator\":");
			put_u64(o, f[i].u.mirror.percent_num);
			lit(o, ",\"denominator\":");
			put_u64(o, f[i].u.mirror.percent_den);
			break;
		case PL_FILTER_CORS:
			cors(o, &f[i].u.cors);
			break;
		}
		lit(o, "}");
	}
	lit(o, "]");
}

static void kv_matches(struct out *o, const struct pl_kv_match *m, uint32_t n)
{
	lit(o, "[");
	for (uint32_t i = 0; i < n; i++)
		name_value(o, i == 0, m[i].type == PL_MATCH_EXACT ? "Exact" : "RegularExpression", m[i].name, m[i].value);
	lit(o, "]");
}

static void match(struct out *o, const struct pl_match *m)
{
	static const char *const pt[] = { "PathPrefix", "Exact", "RegularExpression" };
	lit(o, "{\"path\":{\"type\":\"");
	lit(o, (unsigned)m->path_type < PL_ARRAY_LEN(pt) ? pt[m->path_type] : "?");
	lit(o, "\",\"value\":");
	str(o, m->path);
	lit(o, "}");
	if (m->method) {
		lit(o, ",\"method\":");
		str(o, m->method);
	}
	if (m->n_headers) {
		lit(o, ",\"headers\":");
		kv_matches(o, m->headers, m->n_headers);
	}
	if (m->n_queries) {
		lit(o, ",\"queryParams\":");
		kv_matches(o, m->queries, m->n_queries);
	}
	lit(o, "}");
}

static void rule(struct out *o, const struct pl_rule *r, size_t id)
{
	lit(o, "{\"id\":");
	put_u64(o, id);
	lit(o, ",\"route\":");
	str(o, r->route);
	lit(o, ",\"rule\":");
	put_u64(o, r->rule_index);
	lit(o, ",\"matches\":[");
	for (uint32_t i = 0; i < r->n_matches; i++) {
		if (i)
			lit(o, ",");
		match(o, &r->matches[i]);
	}
	lit(o, "]");
	if (r->n_filters) {
		lit(o, ",\"filters\":");
		filters(o, r->filters, r->n_filters);
	}
	lit(o, ",\"backends\":[");
	for (uint32_t i = 0; i < r->n_backends; i++) {
		lit(o, i ? ",{\"cluster\":" : "{\"cluster\":");
		str_or_null(o, r->backends[i].cluster ? r->backends[i].cluster->name : NULL);
		lit(o, ",\"weight\":");
		put_u64(o, r->backends[i].weight);
		if (r->backends[i].n_filters) {
			lit(o, ",\"filters\":");
			filters(o, r->backends[i].filters, r->backends[i].n_filters);
		}
		lit(o, "}");
	}
	lit(o, "]");
	if (r->timeout_request_ms || r->timeout_backend_ms) {
		lit(o, ",\"timeouts\":{\"requestMs\":");
		put_u64(o, r->timeout_request_ms);
		lit(o, ",\"backendRequestMs\":");
		put_u64(o, r->timeout_backend_ms);
		lit(o, "}");
	}
	if (r->retry) {
		/* added (retry) */
		const struct pl_retry *rp = r->retry;
		lit(o, ",\"retry\":{\"codes\":[");
		int first = 1;
		for (unsigned k = 0; k <= PL_RETRY_CODE_MAX - PL_RETRY_CODE_MIN; k++) {
			if (!(rp->codes[k / 64] >> (k % 64) & 1))
				continue;
			if (!first)
				lit(o, ",");
			first = 0;
			put_u64(o, PL_RETRY_CODE_MIN + k);
		}
		lit(o, "],\"attempts\":");
		put_u64(o, rp->attempts);
		lit(o, ",\"backoffMs\":");
		put_u64(o, rp->backoff_ms);
		lit(o, "}");
	}
	lit(o, "}");
}

static void backend_tls(struct out *o, const struct pl_backend_tls *bt)
{
	lit(o, ",\"tls\":{\"policy\":");
	str(o, bt->policy);
	lit(o, ",\"hostname\":");
	str_or_null(o, bt->sni);
	lit(o, bt->ca_pem ? ",\"ca\":\"caCertificateRefs\"" : ",\"ca\":\"System\"");
	lit(o, ",\"subjectAltNames\":");
	str_array(o, bt->sans, bt->n_sans);
	if (bt->error) {
		lit(o, ",\"error\":");
		str(o, bt->error);
	}
	lit(o, "}");
}

/* Rule ids: table->rules indexes, looked up by pointer in a sorted copy. */
struct rule_id {
	const struct pl_rule *r;
	uint32_t id;
};

static int cmp_rule_id(const void *pa, const void *pb)
{
	uintptr_t a = (uintptr_t)((const struct rule_id *)pa)->r, b = (uintptr_t)((const struct rule_id *)pb)->r;
	return a < b ? -1 : a > b;
}

/* [rule id, match index] of an entry: the entry holds a copy of one of its rule's matches. */
static void entry(struct out *o, const struct rule_id *ids, size_t n_ids, const struct pl_route_entry *en)
{
	const struct pl_rule *r = en->rule;
	struct rule_id want = { .r = r };
	const struct rule_id *id = n_ids ? bsearch(&want, ids, n_ids, sizeof(*ids), cmp_rule_id) : NULL;
	long long idv = id ? (long long)id->id : -1, mi = -1;
	for (uint32_t m = 0; id && m < r->n_matches && mi < 0; m++)
		if (r->matches[m].path == en->match.path)
			mi = m;
	char num[64];
	int n = snprintf(num, sizeof(num), "[%lld, %lld]", idv, mi);
	put(o, num, (size_t)n);
}

char *pl_table_json(const struct pl_table *t, size_t *len)
{
	static const char *const ap[] = { "http", "h2c", "ws", "tls" };
	struct out o = { 0 };
	struct rule_id *ids = malloc((t->n_rules ? t->n_rules : 1) * sizeof(*ids));
	if (!ids)
		return NULL;
	for (uint32_t i = 0; i < t->n_rules; i++)
		ids[i] = (struct rule_id){ t->rules[i], i };
	qsort(ids, t->n_rules, sizeof(*ids), cmp_rule_id);
	lit(&o, "{\n\"binds\": [");
	for (uint32_t b = 0; b < t->n_binds; b++) {
		const struct pl_bind *pb = &t->binds[b];
		lit(&o, b ? ",\n {\"address\": " : "\n {\"address\": ");
		str(&o, pb->address);
		lit(&o, ", \"port\": ");
		put_u64(&o, pb->port);
		lit(&o, ", \"protocol\": \"");
		lit(&o, proto_str(pb->proto));
		lit(&o, "\", \"listeners\": [");
		for (uint32_t i = 0; i < pb->n_listeners; i++) {
			const struct pl_listener *l = &pb->listeners[i];
			lit(&o, i ? ",\n  {\"name\": " : "\n  {\"name\": ");
			str(&o, l->name);
			lit(&o, ", \"hostname\": ");
			host(&o, &l->host);
			lit(&o, ", \"vhosts\": [");
			for (uint32_t v = 0; v < l->n_vhosts; v++) {
				const struct pl_vhost *vh = &l->vhosts[v];
				lit(&o, v ? ",\n   {\"hostname\": " : "\n   {\"hostname\": ");
				host(&o, &vh->host);
				lit(&o, ", \"entries\": [");
				for (uint32_t e = 0; e < vh->n_entries; e++) {
					if (e)
						lit(&o, ", ");
					entry(&o, ids, t->n_rules, &vh->entries[e]);
				}
				lit(&o, "]}");
			}
			lit(&o, "]}");
		}
		lit(&o, "]}");
	}
	lit(&o, "\n],\n\"rules\": [");
	for (uint32_t i = 0; i < t->n_rules; i++) {
		lit(&o, i ? ",\n " : "\n ");
		rule(&o, t->rules[i], i);
	}
	lit(&o, "\n],\n\"clusters\": [");
	for (uint32_t i = 0; i < t->n_clusters; i++) {
		const struct pl_cluster *cl = t->clusters[i];
		lit(&o, i ? ",\n {\"id\":" : "\n {\"id\":");
		put_u64(&o, cl->id);
		lit(&o, ",\"name\":");
		str(&o, cl->name);
		lit(&o, ",\"appProtocol\":");
		str(&o, (unsigned)cl->app_proto < PL_ARRAY_LEN(ap) ? ap[cl->app_proto] : "?");
		if (cl->tls)
			backend_tls(&o, cl->tls);
		lit(&o, ",\"endpoints\":[");
		for (uint32_t k = 0; k < cl->n_eps; k++) {
			lit(&o, k ? ",{\"address\":" : "{\"address\":");
			str(&o, cl->eps[k].text);
			lit(&o, cl->eps[k].ready ? ",\"ready\":true}" : ",\"ready\":false}");
		}
		lit(&o, "]}");
	}
	lit(&o, "\n]\n}\n");
	free(ids);
	if (o.oom) {
		free(o.p);
		return NULL;
	}
	o.p[o.len] = '\0';
	if (len)
		*len = o.len;
	return o.p;
}
