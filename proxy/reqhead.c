#include "pl.h"
#include "table.h"
#include "reqhead.h"
#include "cors.h"
#include "h1scan.h"
#include "rewrite.h"
#include "router.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>

void pl_wr_u64(struct pl_wr *w, uint64_t v)
{
	char t[24];
	int i = 24;
	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	pl_wr_put(w, t + i, (size_t)(24 - i));
}

void pl_wr_hdr(struct pl_wr *w, const char *n, size_t nl, const char *v, size_t vl)
{
	pl_wr_put(w, n, nl);
	PL_WR_LIT(w, ": ");
	pl_wr_put(w, v, vl);
	PL_WR_LIT(w, "\r\n");
}

const char *pl_rh_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 421: return "Misdirected Request";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	}
	return "Unknown";
}

/* RFC 3986 reg-name / IP-literal / port characters (unreserved, sub-delims, pct, ':', '[', ']') */
static const uint8_t host_char[256] = {
	['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['0' ... '9'] = 1,
	['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, ['%'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1,
	['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1, [':'] = 1, ['['] = 1, [']'] = 1,
};

int pl_rh_parse_host(const char *v, size_t n, char *out, size_t cap)
{
	for (size_t i = 0; i < n; i++)
		if (!host_char[(unsigned char)v[i]])
			return -1;
	size_t hl = n;
	if (n && v[0] == '[') {
		const char *rb = memchr(v, ']', n);
		if (!rb)
			return -1;
		hl = (size_t)(rb - v) + 1;
		if (hl < n && v[hl] != ':')
			return -1;
	} else {
		const char *colon = n ? memchr(v, ':', n) : NULL;
		if (colon) {
			hl = (size_t)(colon - v);
			if (memchr(colon + 1, ':', n - hl - 1))
				return -1;
		}
	}
	/* a port: digits only (may be empty per RFC 3986) */
	for (size_t i = hl + 1; i < n; i++)
		if (v[i] < '0' || v[i] > '9')
			return -1;
	if (hl >= cap)
		return -1;
	for (size_t i = 0; i < hl; i++)
		out[i] = pl_lower(v[i]);
	out[hl] = '\0';
	return (int)hl;
}

/* Length of a '.' at p[i], written as is or percent-encoded ("%2e", "%2E"); 0 if none. */
static size_t dot_at(const char *p, size_t i, size_t n)
{
	if (i < n && p[i] == '.')
		return 1;
	if (i + 2 < n && p[i] == '%' && p[i + 1] == '2' && (p[i + 2] == 'e' || p[i + 2] == 'E'))
		return 3;
	return 0;
}

/*
 * A segment of one or two dots, each '.' or "%2e" (RFC 3986 6.2.2.2: the
 * encoded form is the same character, and a backend that decodes before
 * resolving would climb out of the prefix the route matched).
 */
int pl_rh_has_dot_segment(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '/')
			continue;
		size_t j = i + 1, d = dot_at(p, j, n);
		if (!d)
			continue;
		j += d;
		j += dot_at(p, j, n);
		if (j == n || p[j] == '/' || p[j] == '?')
			return 1;
	}
	return 0;
}

void pl_rh_collect_filters(struct pl_rh_filters *f, const struct pl_filter *fl, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct pl_filter *x = &fl[i];
		switch (x->type) {
		case PL_FILTER_REQUEST_HEADER:
			if (f->n_req_mods < PL_RH_MAX_MODS)
				f->req_mods[f->n_req_mods++] = &x->u.hdr;
			break;
		case PL_FILTER_RESPONSE_HEADER:
			if (f->n_resp_mods < PL_RH_MAX_MODS)
				f->resp_mods[f->n_resp_mods++] = &x->u.hdr;
			break;
		case PL_FILTER_REDIRECT:
			if (!f->redirect)
				f->redirect = &x->u.redirect;
			break;
		case PL_FILTER_REWRITE:
			if (!f->rewrite)
				f->rewrite = &x->u.rewrite;
			break;
		case PL_FILTER_MIRROR:
			if (f->n_mirrors < PL_RH_MAX_MIRRORS)
				f->mirrors[f->n_mirrors++] = &x->u.mirror;
			break;
		case PL_FILTER_CORS:
			if (!f->cors)
				f->cors = &x->u.cors;
			break;
		}
	}
}

static int local(struct pl_rh_route *r, int status, const char *why)
{
	r->status = status;
	r->why = why;
	return PL_RH_LOCAL;
}

int pl_rh_route(struct pl_worker *w, const struct pl_bind *b, const char *sni, const struct pl_req_view *view,
		double now, struct pl_rh_route *r)
{
	memset(r, 0, offsetof(struct pl_rh_route, whybuf));
	if (!w->wt)
		return local(r, 503, "no configuration published yet");
	r->wt = w->wt;
	pl_wtable_get(r->wt);
	if (!b) {
		r->close = 1;
		return local(r, 404, "listener removed from the configuration");
	}
	r->listener = pl_router_listener(b, view->host, view->host_len);
	if (!r->listener)
		return local(r, 404, "no listener for host");
	/* a connection set up for one listener's name must not reach another's routes */
	if (sni && *sni && pl_router_listener(b, sni, (uint32_t)strlen(sni)) != r->listener)
		return local(r, 421, "Host does not belong to the listener of the TLS server name");
	r->entry = pl_router_find(r->listener, view);
	if (!r->entry)
		return local(r, 404, "no route matches");
	r->rule = r->entry->rule;
	pl_rh_collect_filters(&r->f, r->rule->filters, r->rule->n_filters);
	if (r->f.cors && pl_cors_is_preflight(view))
		return PL_RH_CORS;
	if (r->f.redirect)
		return PL_RH_REDIRECT;
	const struct pl_backend *be = pl_router_pick(r->rule);
	if (!be || !be->cluster)
		return local(r, 500, "no valid backend for the rule");
	pl_rh_collect_filters(&r->f, be->filters, be->n_filters);
	if (r->f.redirect)
		return PL_RH_REDIRECT;
	r->cluster = be->cluster;
	r->ep = pl_router_endpoint(r->cluster);
	if (!r->ep) {
		snprintf(r->whybuf, sizeof(r->whybuf), "no ready endpoint for %s", r->cluster->name);
		return local(r, 503, r->whybuf);
	}
	if (r->rule->timeout_request_ms)
		r->rule_deadline = now + (double)r->rule->timeout_request_ms / 1000.0;
	if (r->rule->timeout_backend_ms) {
		double d = now + (double)r->rule->timeout_backend_ms / 1000.0;
		if (!r->rule_deadline || d < r->rule_deadline)
			r->rule_deadline = d;
	}
	return PL_RH_PROXY;
}

const struct pl_header_mod *pl_rh_cors_actual(struct pl_rh_filters *f, const struct pl_req_view *view,
					      struct pl_cors_fields *store)
{
	if (!f->cors)
		return NULL;
	const struct pl_header_mod *m = pl_cors_actual(store, f->cors, view);
	/* the compiler allows one ResponseHeaderModifier per list: rule + backendRef leave room */
	PL_BUG_ON(f->n_resp_mods >= PL_RH_MAX_MODS);
	f->resp_mods[f->n_resp_mods++] = m;
	return m;
}

/*
 * 1 if the lower-case, NUL-terminated lc is name[0, len) ignoring case. One
 * pass that stops at the first difference, usually the first byte: no strlen
 * of lc for every header of every request. A NUL inside name never matches.
 */
static int lc_name_eq(const char *lc, const char *name, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!lc[i] || lc[i] != pl_lower(name[i]))
			return 0;
	return lc[len] == '\0';
}

int pl_rh_mods_hit(const struct pl_header_mod *const *mods, unsigned n, const char *name, size_t len)
{
	for (unsigned m = 0; m < n; m++) {
		const struct pl_header_mod *hm = mods[m];
		for (uint32_t i = 0; i < hm->n_remove; i++)
			if (lc_name_eq(hm->remove[i], name, len))
				return 1;
		for (uint32_t i = 0; i < hm->n_set; i++)
			if (hm->set[i].name_len == len && pl_strncaseeq(hm->set[i].name, name, len))
				return 1;
	}
	return 0;
}

size_t pl_rh_mods_size(const struct pl_header_mod *const *mods, unsigned n)
{
	size_t sz = 0;
	for (unsigned m = 0; m < n; m++) {
		const struct pl_header_mod *hm = mods[m];
		for (uint32_t i = 0; i < hm->n_set; i++)
			sz += hm->set[i].name_len + hm->set[i].value_len + 4;
		for (uint32_t i = 0; i < hm->n_add; i++)
			sz += hm->add[i].name_len + hm->add[i].value_len + 4;
	}
	return sz;
}

static int is_host(const struct pl_kv *kv)
{
	return kv->name_len == 4 && pl_strncaseeq(kv->name, "host", 4);
}

void pl_rh_mods_each(const struct pl_header_mod *const *mods, unsigned n, int skip_host,
		     void (*fn)(void *arg, const struct pl_kv *kv), void *arg)
{
	for (unsigned m = 0; m < n; m++)
		for (uint32_t i = 0; i < mods[m]->n_set; i++)
			if (!skip_host || !is_host(&mods[m]->set[i]))
				fn(arg, &mods[m]->set[i]);
	for (unsigned m = 0; m < n; m++)
		for (uint32_t i = 0; i < mods[m]->n_add; i++)
			fn(arg, &mods[m]->add[i]);
}

static void emit_line(void *arg, const struct pl_kv *kv)
{
	pl_wr_hdr(arg, kv->name, kv->name_len, kv->value, kv->value_len);
}

void pl_rh_mods_emit(struct pl_wr *w, const struct pl_header_mod *const *mods, unsigned n, int skip_host)
{
	pl_rh_mods_each(mods, n, skip_host, emit_line, w);
}

void pl_rh_authority(const struct pl_rh_filters *f, const char *dflt, size_t dflt_len, const char **v, size_t *vl)
{
	const struct pl_kv *host_set = NULL;
	for (unsigned m = 0; m < f->n_req_mods; m++)
		for (uint32_t i = 0; i < f->req_mods[m]->n_set; i++)
			if (is_host(&f->req_mods[m]->set[i]))
				host_set = &f->req_mods[m]->set[i];
	const struct pl_rewrite *rw = f->rewrite;
	if (rw && rw->hostname) {
		*v = rw->hostname;
		*vl = strlen(rw->hostname);
	} else if (host_set) {
		*v = host_set->value;
		*vl = host_set->value_len;
	} else {
		*v = dflt;
		*vl = dflt ? dflt_len : 0;
	}
}

size_t pl_rh_path_extra(const struct pl_rh_filters *f)
{
	const struct pl_rewrite *rw = f->rewrite;
	if (!rw || rw->path.type == PL_PATHMOD_NONE)
		return 0;
	return (rw->path.value ? strlen(rw->path.value) : 0) + 2;
}

int pl_rh_write_target(const struct pl_rh_filters *f, const struct pl_match *m, const char *path, size_t path_len,
		       const char *query, size_t query_len, char *out, size_t cap)
{
	const struct pl_rewrite *rw = f->rewrite;
	size_t n;
	if (rw && rw->path.type != PL_PATHMOD_NONE) {
		int k = pl_rewrite_path(&rw->path, m, path, path_len, out, cap);
		if (k < 0)
			return -1;
		n = (size_t)k;
	} else {
		if (path_len > cap)
			return -1;
		memcpy(out, path, path_len);
		n = path_len;
	}
	if (query) {
		if (cap - n < query_len + 1)
			return -1;
		out[n++] = '?';
		memcpy(out + n, query, query_len);
		n += query_len;
	}
	return n > INT32_MAX ? -1 : (int)n;
}

void pl_rh_xff_tail(struct pl_wr *w, const char *peer, int tls)
{
	pl_wr_str(w, peer);
	if (tls)
		PL_WR_LIT(w, "\r\nX-Forwarded-Proto: https\r\n");
	else
		PL_WR_LIT(w, "\r\nX-Forwarded-Proto: http\r\n");
}

char *pl_rh_location(const struct pl_redirect *rd, const struct pl_match *m, int tls, const char *host,
		     size_t host_len, int port, const char *path, size_t path_len, const char *query,
		     size_t query_len, const char *pre, const char *post, size_t *len, const char **err)
{
	size_t prel = strlen(pre), postl = strlen(post);
	size_t cap = 64 + path_len + query_len + host_len + (rd->hostname ? strlen(rd->hostname) : 0) +
		     (rd->path.value ? strlen(rd->path.value) : 0) + (rd->scheme ? strlen(rd->scheme) : 0);
	char *loc = malloc(prel + cap + postl + 1);
	if (!loc) {
		*err = "out of memory building redirect";
		return NULL;
	}
	memcpy(loc, pre, prel);
	int n = pl_redirect_location(rd, m, tls ? "https" : "http", host, host_len, port, path, path_len, query,
				     query_len, loc + prel, cap);
	if (n < 0) {
		free(loc);
		*err = "redirect location too long";
		return NULL;
	}
	memcpy(loc + prel + (size_t)n, post, postl + 1);
	*len = prel + (size_t)n + postl;
	return loc;
}

static int name_in(const char *n, size_t nl, const char *const *names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (strlen(names[i]) == nl && pl_strncaseeq(names[i], n, nl))
			return 1;
	return 0;
}

/* Never forwarded to an HTTP/2 backend: regenerated, or connection-specific (RFC 9113 8.2.2). */
static int h2_dropped(const char *n, size_t nl)
{
	static const char *const names[] = {
		"host", "content-length", "x-forwarded-for", "x-forwarded-proto", "connection", "keep-alive",
		"proxy-connection", "transfer-encoding", "upgrade", "te", "http2-settings",
	};
	return name_in(n, nl, names, PL_ARRAY_LEN(names));
}

/* 1 if a TE value ("trailers, deflate;q=0.5") lists the trailers token. */
static int te_lists_trailers(const char *v, size_t n)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t t = i;
		while (i < n && v[i] != ',' && v[i] != ';' && v[i] != ' ' && v[i] != '\t')
			i++;
		if (i - t == 8 && pl_strncaseeq(v + t, "trailers", 8))
			return 1;
		while (i < n && v[i] != ',')
			i++;
	}
	return 0;
}

/* The array being filled and the string space behind it. */
struct nvb {
	nghttp2_nv *nv;
	size_t n, cap;
	char *p, *end;
};

static char *nvb_copy(struct nvb *b, const char *s, size_t len, int lower)
{
	char *d = b->p;
	PL_BUG_ON((size_t)(b->end - b->p) < len);
	for (size_t i = 0; i < len; i++)
		d[i] = lower ? pl_lower(s[i]) : s[i];
	b->p += len;
	return d;
}

static void nvb_add(struct nvb *b, const char *n, size_t nl, const char *v, size_t vl)
{
	PL_BUG_ON(b->n == b->cap);
	b->nv[b->n++] = (nghttp2_nv){ (uint8_t *)n, (uint8_t *)v, nl, vl, NGHTTP2_NV_FLAG_NONE };
}

static void nvb_kv(void *arg, const struct pl_kv *kv)
{
	nvb_add(arg, kv->name, kv->name_len, kv->value, kv->value_len);
}

nghttp2_nv *pl_rh_h2_head(const struct pl_rh_h2in *in, const struct pl_rh_filters *f, size_t *n, const char **err)
{
	const char *av;
	size_t al;
	pl_rh_authority(f, in->authority, in->authority_len, &av, &al);
	size_t cap = (size_t)in->n_hdrs + 8, bytes = in->method_len + al + strlen(in->peer) + 64;
	for (unsigned m = 0; m < f->n_req_mods; m++)
		cap += f->req_mods[m]->n_set + f->req_mods[m]->n_add;
	for (uint32_t i = 0; i < in->n_hdrs; i++)
		bytes += (size_t)in->hdrs[i].name_len + in->hdrs[i].value_len + 2;   /* + ", " when joined */
	size_t path_cap = in->path_len + pl_rh_path_extra(f) + (in->query ? in->query_len + 1 : 0);
	bytes += path_cap;
	nghttp2_nv *nv = malloc(cap * sizeof(*nv) + bytes);
	if (!nv) {
		*err = "out of memory building the backend request";
		return NULL;
	}
	struct nvb b = { nv, 0, cap, (char *)(nv + cap), (char *)(nv + cap) + bytes };

	nvb_add(&b, ":method", 7, nvb_copy(&b, in->method, in->method_len, 0), in->method_len);
	nvb_add(&b, ":scheme", 7, "http", 4);
	if (al)
		nvb_add(&b, ":authority", 10, nvb_copy(&b, av, al, 0), al);
	int k = pl_rh_write_target(f, in->match, in->path, in->path_len, in->query, in->query_len, b.p, path_cap);
	if (k < 0) {
		free(nv);
		*err = "rewritten path too long";
		return NULL;
	}
	nvb_add(&b, ":path", 5, b.p, (size_t)k);
	b.p += k;

	int te_trailers = 0;
	for (uint32_t i = 0; i < in->n_hdrs; i++) {
		const struct pl_hdr *h = &in->hdrs[i];
		if (h2_dropped(h->name, h->name_len)) {
			if (h->name_len == 2 && te_lists_trailers(h->value, h->value_len))
				te_trailers = 1;
			continue;
		}
		if (f->n_req_mods && pl_rh_mods_hit(f->req_mods, f->n_req_mods, h->name, h->name_len))
			continue;
		const char *dn = nvb_copy(&b, h->name, h->name_len, 1);
		nvb_add(&b, dn, h->name_len, nvb_copy(&b, h->value, h->value_len, 0), h->value_len);
	}
	pl_rh_mods_each(f->req_mods, f->n_req_mods, 1, nvb_kv, &b);
	char *xff = b.p;
	for (uint32_t i = 0; i < in->n_hdrs; i++) {
		const struct pl_hdr *h = &in->hdrs[i];
		if (h->name_len != 15 || !pl_strncaseeq(h->name, "x-forwarded-for", 15))
			continue;
		nvb_copy(&b, h->value, h->value_len, 0);
		nvb_copy(&b, ", ", 2, 0);
	}
	nvb_copy(&b, in->peer, strlen(in->peer), 0);
	nvb_add(&b, "x-forwarded-for", 15, xff, (size_t)(b.p - xff));
	if (in->tls)
		nvb_add(&b, "x-forwarded-proto", 17, "https", 5);
	else
		nvb_add(&b, "x-forwarded-proto", 17, "http", 4);
	if (in->has_cl) {
		char *d = b.p;
		struct pl_wr w = { b.p, b.end, 0 };
		pl_wr_u64(&w, in->cl);
		PL_BUG_ON(w.over);
		b.p = w.p;
		nvb_add(&b, "content-length", 14, d, (size_t)(b.p - d));
	}
	if (te_trailers)
		nvb_add(&b, "te", 2, "trailers", 8);
	*n = b.n;
	return nv;
}

int pl_rh_field_ok(const uint8_t *name, size_t nl, const uint8_t *value, size_t vl)
{
	if (nl == 0)
		return 0;
	for (size_t i = 0; i < nl; i++)
		if (!pl_h1_tchar[name[i]])
			return 0;
	for (size_t i = 0; i < vl; i++)
		if ((value[i] < 0x20 && value[i] != '\t') || value[i] == 0x7f)
			return 0;
	return 1;
}
