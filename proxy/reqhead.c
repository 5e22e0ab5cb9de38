#include "pl.h"
#include "table.h"
#include "reqhead.h"
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

int pl_rh_has_dot_segment(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '/' || i + 1 >= n || p[i + 1] != '.')
			continue;
		size_t j = i + 2;
		if (j < n && p[j] == '.')
			j++;
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

int pl_rh_mods_hit(const struct pl_header_mod *const *mods, unsigned n, const char *name, size_t len)
{
	for (unsigned m = 0; m < n; m++) {
		const struct pl_header_mod *hm = mods[m];
		for (uint32_t i = 0; i < hm->n_remove; i++)
			if (strlen(hm->remove[i]) == len && pl_strncaseeq(hm->remove[i], name, len))
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
