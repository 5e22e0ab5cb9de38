/*
 * CORS filter decisions (contract in cors.h). Where the Gateway API leaves a
 * choice this follows Envoy's CORS filter (echo the origin, echo the
 * requested method and headers for "*", no check of the requested method
 * or headers: the browser enforces them), except that "*" origins without
 * credentials answer "*" as the Fetch standard intends and a refused
 * preflight gets 403 rather than reaching the backend.
 */
#include "pl.h"
#include "cors.h"
#include "origin.h"
#include "table.h"

#include <stdio.h>

static const char ACAO[] = "access-control-allow-origin";
static const char ACAC[] = "access-control-allow-credentials";
static const char ACAM[] = "access-control-allow-methods";
static const char ACAH[] = "access-control-allow-headers";
static const char ACEH[] = "access-control-expose-headers";
static const char ACMA[] = "access-control-max-age";
static const char VARY_ACTUAL[] = "Origin";
static const char VARY_PREFLIGHT[] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/*
 * The value of the one field named name (len bytes) in v: 1 and the value
 * when there is exactly one, 0 when there is none, -1 when there are more.
 */
static int one_field(const struct pl_req_view *v, const char *name, size_t len, const char **val, size_t *vl)
{
	int found = 0;
	for (uint32_t i = 0; i < v->n_hdrs; i++) {
		const struct pl_hdr *h = &v->hdrs[i];
		if (h->name_len != len || !pl_strncaseeq(h->name, name, len))
			continue;
		if (found)
			return -1;
		found = 1;
		*val = h->value;
		*vl = h->value_len;
	}
	return found;
}

/* The first non-empty field named name, or NULL. */
static const char *first_field(const struct pl_req_view *v, const char *name, size_t len, size_t *vl)
{
	for (uint32_t i = 0; i < v->n_hdrs; i++) {
		const struct pl_hdr *h = &v->hdrs[i];
		if (h->name_len == len && pl_strncaseeq(h->name, name, len) && h->value_len) {
			*vl = h->value_len;
			return h->value;
		}
	}
	return NULL;
}

#define FIELD(v, lit, vl) first_field(v, lit, sizeof(lit) - 1, vl)

int pl_cors_is_preflight(const struct pl_req_view *v)
{
	size_t n;
	return v->method_len == 7 && memcmp(v->method, "OPTIONS", 7) == 0 && FIELD(v, "origin", &n) &&
	       FIELD(v, "access-control-request-method", &n);
}

static int entry_matches(const struct pl_cors_origin *e, const struct pl_origin *o)
{
	const char *scheme = e->https ? "https" : "http";
	size_t sl = e->https ? 5 : 4;
	return o->scheme_len == sl && pl_strncaseeq(o->scheme, scheme, sl) && o->port == e->port &&
	       pl_hostname_matches(&e->host, o->host, o->host_len);
}

int pl_cors_origin_allowed(const struct pl_cors *c, const char *s, size_t n)
{
	if (n == 0 || n > PL_CORS_ORIGIN_MAX)
		return 0;
	/* the value may be echoed: visible ASCII only */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	if (c->any_origin)
		return 1;
	struct pl_origin o;
	if (pl_origin_parse(s, n, 0, &o) != 0)
		return 0;
	for (uint32_t i = 0; i < c->n_origins; i++)
		if (entry_matches(&c->origins[i], &o))
			return 1;
	return 0;
}

static void put(struct pl_kv *kv, const char *name, size_t nl, const char *val, size_t vl)
{
	kv->name = (char *)name;
	kv->name_len = (uint32_t)nl;
	kv->value = (char *)val;
	kv->value_len = (uint32_t)vl;
}

#define SET(out, lit, val, vl) put(&(out)->set[(out)->mod.n_set++], lit, sizeof(lit) - 1, val, vl)

static void init(struct pl_cors_fields *out, const char *vary, size_t vary_len)
{
	memset(&out->mod, 0, sizeof(out->mod));
	out->mod.set = out->set;
	out->mod.add = out->add;
	out->mod.remove = out->remove;
	put(&out->add[0], "vary", 4, vary, vary_len);
	out->mod.n_add = 1;
}

/*
 * Access-Control-Allow-Origin and -Credentials for an allowed origin o;
 * the origin is copied into out (it fits: pl_cors_origin_allowed()).
 */
static void allow_origin(struct pl_cors_fields *out, const struct pl_cors *c, const char *o, size_t n)
{
	if (c->any_origin && !c->credentials) {
		SET(out, ACAO, "*", 1);
	} else {
		memcpy(out->origin, o, n);
		out->origin[n] = '\0';
		SET(out, ACAO, out->origin, n);
	}
	if (c->credentials)
		SET(out, ACAC, "true", 4);
}

static void expose(struct pl_cors_fields *out, const struct pl_cors *c)
{
	/* with credentials "*" is a literal name to browsers: only the listed ones are sent */
	if (c->any_expose && !c->credentials)
		SET(out, ACEH, "*", 1);
	else if (c->expose_headers)
		SET(out, ACEH, c->expose_headers, strlen(c->expose_headers));
}

int pl_cors_preflight(struct pl_cors_fields *out, const struct pl_cors *c, const struct pl_req_view *v)
{
	init(out, VARY_PREFLIGHT, sizeof(VARY_PREFLIGHT) - 1);
	const char *o = NULL;
	size_t n = 0;
	if (one_field(v, "origin", 6, &o, &n) != 1 || !pl_cors_origin_allowed(c, o, n))
		return 403;
	allow_origin(out, c, o, n);
	size_t ml = 0, hl = 0;
	const char *m = FIELD(v, "access-control-request-method", &ml);
	const char *h = FIELD(v, "access-control-request-headers", &hl);
	if (c->any_method && m)
		SET(out, ACAM, m, ml);
	else if (c->allow_methods)
		SET(out, ACAM, c->allow_methods, strlen(c->allow_methods));
	if (c->any_header && h)
		SET(out, ACAH, h, hl);
	else if (c->allow_headers)
		SET(out, ACAH, c->allow_headers, strlen(c->allow_headers));
	expose(out, c);
	int k = snprintf(out->max_age, sizeof(out->max_age), "%u", (unsigned)c->max_age);
	SET(out, ACMA, out->max_age, (size_t)k);
	return 200;
}

const struct pl_header_mod *pl_cors_actual(struct pl_cors_fields *out, const struct pl_cors *c,
					   const struct pl_req_view *v)
{
	init(out, VARY_ACTUAL, sizeof(VARY_ACTUAL) - 1);
	const char *o = NULL;
	size_t n = 0;
	if (one_field(v, "origin", 6, &o, &n) != 1 || !pl_cors_origin_allowed(c, o, n))
		return &out->mod;
	allow_origin(out, c, o, n);
	expose(out, c);
	/* the filter owns these for an allowed origin: the backend's own copies would contradict it */
	out->remove[0] = (char *)ACAO;
	out->remove[1] = (char *)ACAC;
	out->remove[2] = (char *)ACEH;
	out->mod.n_remove = 3;
	return &out->mod;
}
