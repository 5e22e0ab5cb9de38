/*
 * Kubernetes credentials (kubeconf.h). The kubeconfig is YAML: it goes
 * through the same strict loader as manifests, then we read the few fields
 * client-go would use for a static credential.
 */
#include "pl.h"
#include "kubeconf.h"
#include "log.h"
#include "manifests.h"
#include "yamlload.h"

#include <errno.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define MAX_CRED_BYTES (1u << 20)

int pl_base64_decode(const char *in, size_t n, char **out, size_t *out_len)
{
	char *d = malloc(n / 4 * 3 + 4);
	if (!d)
		return -1;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		int v;
		if (ch >= 'A' && ch <= 'Z')
			v = ch - 'A';
		else if (ch >= 'a' && ch <= 'z')
			v = ch - 'a' + 26;
		else if (ch >= '0' && ch <= '9')
			v = ch - '0' + 52;
		else if (ch == '+' || ch == '-')
			v = 62;
		else if (ch == '/' || ch == '_')
			v = 63;
		else if (ch == '=')
			break;
		else if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
			continue;
		else {
			free(d);
			return -1;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			d[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	d[o] = '\0';
	*out = d;
	*out_len = o;
	return 0;
}

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* Finds the entry named name in a kubeconfig list ("clusters", "users", "contexts"), returns its body. */
static json_t *named(json_t *root, const char *list, const char *name, const char *body)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(root, list), i, e) {
		const char *n = jstr(e, "name");
		if (n && name && strcmp(n, name) == 0)
			return json_object_get(e, body);
	}
	return NULL;
}

static char *resolve_path(const char *dir, const char *p)
{
	if (p[0] == '/' || !dir)
		return pl_xstrdup(p);
	size_t n = strlen(dir) + strlen(p) + 2;
	char *r = pl_xmalloc(n);
	snprintf(r, n, "%s/%s", dir, p);
	return r;
}

static int take_data(const json_t *o, const char *key, char **pem, size_t *len, char *err, size_t errlen)
{
	const char *d = jstr(o, key);
	if (!d)
		return 0;
	if (pl_base64_decode(d, strlen(d), pem, len) != 0) {
		snprintf(err, errlen, "%s: not base64", key);
		return -1;
	}
	return 0;
}

static int first_doc(json_t *doc, unsigned line, void *data, char *err, size_t errlen)
{
	(void)line;
	json_t **out = data;
	if (*out) {
		json_decref(doc);
		snprintf(err, errlen, "more than one YAML document");
		return -1;
	}
	*out = doc;
	return 0;
}

int pl_kconf_load_kubeconfig(struct pl_kconf *c, const char *path, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	char *buf;
	size_t len;
	int e = pl_manifests_read_file(path, MAX_CRED_BYTES, &buf, &len);
	if (e < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-e));
		return -1;
	}
	json_t *root = NULL;
	int rc = pl_yaml_load(buf, len, path, first_doc, &root, err, errlen);
	free(buf);
	if (rc != 0 || !json_is_object(root)) {
		if (rc == 0)
			snprintf(err, errlen, "%s: not a kubeconfig", path);
		json_decref(root);
		return -1;
	}
	char *dir = NULL;
	const char *slash = strrchr(path, '/');
	if (slash) {
		dir = strndup(path, (size_t)(slash - path) ? (size_t)(slash - path) : 1);
		if (!dir) {   /* without it relative file names would silently resolve against the cwd */
			snprintf(err, errlen, "%s: out of memory", path);
			json_decref(root);
			return -1;
		}
	}

	const char *ctxname = jstr(root, "current-context");
	json_t *ctx = ctxname && *ctxname ? named(root, "contexts", ctxname, "context")
					  : json_object_get(json_array_get(json_object_get(root, "contexts"), 0), "context");
	json_t *cl = named(root, "clusters", jstr(ctx, "cluster"), "cluster");
	json_t *us = named(root, "users", jstr(ctx, "user"), "user");
	rc = -1;
	if (!ctx || !cl) {
		snprintf(err, errlen, "%s: no context/cluster (current-context %s)", path, ctxname ? ctxname : "unset");
		goto out;
	}
	const char *server = jstr(cl, "server");
	if (!server || (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)) {
		snprintf(err, errlen, "%s: cluster server must be an http(s) URL", path);
		goto out;
	}
	c->server = pl_xstrdup(server);
	size_t sl = strlen(c->server);
	while (sl > 0 && c->server[sl - 1] == '/')
		c->server[--sl] = '\0';
	c->insecure = json_is_true(json_object_get(cl, "insecure-skip-tls-verify"));
	if (take_data(cl, "certificate-authority-data", &c->ca_pem, &c->ca_len, err, errlen))
		goto out;
	if (jstr(cl, "certificate-authority"))
		c->ca_file = resolve_path(dir, jstr(cl, "certificate-authority"));
	if (us) {
		if (json_object_get(us, "exec") || json_object_get(us, "auth-provider")) {
			snprintf(err, errlen, "%s: exec and auth-provider credentials are not supported; use a token or client certificate", path);
			goto out;
		}
		if (take_data(us, "client-certificate-data", &c->cert_pem, &c->cert_len, err, errlen) ||
		    take_data(us, "client-key-data", &c->key_pem, &c->key_len, err, errlen))
			goto out;
		if (jstr(us, "client-certificate"))
			c->cert_file = resolve_path(dir, jstr(us, "client-certificate"));
		if (jstr(us, "client-key"))
			c->key_file = resolve_path(dir, jstr(us, "client-key"));
		if (jstr(us, "token"))
			c->token = pl_xstrdup(jstr(us, "token"));
		if (jstr(us, "tokenFile"))
			c->token_file = resolve_path(dir, jstr(us, "tokenFile"));
	}
	rc = 0;
out:
	free(dir);
	json_decref(root);
	if (rc != 0)
		pl_kconf_free(c);
	return rc;
}

int pl_kconf_load_incluster(struct pl_kconf *c, char **namespace_out, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
	if (!host || !*host || !port || !*port) {
		snprintf(err, errlen, "--in-cluster: KUBERNETES_SERVICE_HOST/PORT are not set (not running in a pod?)");
		return -1;
	}
	if (access(SA_DIR "/token", R_OK) != 0) {
		snprintf(err, errlen, "--in-cluster: %s/token: %s", SA_DIR, strerror(errno));
		return -1;
	}
	size_t n = strlen(host) + strlen(port) + 16;
	c->server = pl_xmalloc(n);
	if (strchr(host, ':'))
		snprintf(c->server, n, "https://[%s]:%s", host, port);
	else
		snprintf(c->server, n, "https://%s:%s", host, port);
	c->ca_file = pl_xstrdup(SA_DIR "/ca.crt");
	c->token_file = pl_xstrdup(SA_DIR "/token");
	if (namespace_out) {
		char *ns;
		size_t len;
		*namespace_out = NULL;
		if (pl_manifests_read_file(SA_DIR "/namespace", 256, &ns, &len) == 0) {
			while (len && (ns[len - 1] == '\n' || ns[len - 1] == ' '))
				ns[--len] = '\0';
			*namespace_out = ns;
		}
	}
	return 0;
}

void pl_kconf_free(struct pl_kconf *c)
{
	free(c->server);
	free(c->ca_pem);
	free(c->cert_pem);
	free(c->key_pem);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	free(c->token);
	free(c->token_file);
	memset(c, 0, sizeof(*c));
}

/* Re-reads the token file when it changed (kubelet rotates projected tokens). */
static void refresh_token(struct pl_kconf *c)
{
	if (!c->token_file)
		return;
	struct stat st;
	if (stat(c->token_file, &st) != 0) {
		pl_warn("kubernetes: token file %s: %s; keeping the last token", c->token_file, strerror(errno));
		return;
	}
	int64_t m = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (c->token && m == c->token_mtime_ns && (long long)st.st_size == c->token_size)
		return;
	char *b;
	size_t len;
	int e = pl_manifests_read_file(c->token_file, 64 * 1024, &b, &len);
	if (e < 0) {
		pl_warn("kubernetes: token file %s: %s; keeping the last token", c->token_file, strerror(-e));
		return;
	}
	while (len && (b[len - 1] == '\n' || b[len - 1] == '\r' || b[len - 1] == ' '))
		b[--len] = '\0';
	if (c->token)
		pl_info("kubernetes: token re-read from %s", c->token_file);
	free(c->token);
	c->token = b;
	c->token_mtime_ns = m;
	c->token_size = (long long)st.st_size;
}

struct curl_slist *pl_kconf_setup(struct pl_kconf *c, CURL *h, const char *path, struct curl_slist *extra)
{
	size_t n = strlen(c->server) + strlen(path) + 1;
	char *url = malloc(n);
	if (!url) {
		curl_slist_free_all(extra);
		return NULL;
	}
	snprintf(url, n, "%s%s", c->server, path);
	curl_easy_setopt(h, CURLOPT_URL, url);   /* curl copies it */
	free(url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 10L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	if (c->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (c->ca_pem) {
		struct curl_blob b = { .data = c->ca_pem, .len = c->ca_len, .flags = CURL_BLOB_NOCOPY };
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
	} else if (c->ca_file) {
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	}
	if (c->cert_pem) {
		struct curl_blob b = { .data = c->cert_pem, .len = c->cert_len, .flags = CURL_BLOB_NOCOPY };
		curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &b);
		curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
	} else if (c->cert_file) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
	}
	if (c->key_pem) {
		struct curl_blob b = { .data = c->key_pem, .len = c->key_len, .flags = CURL_BLOB_NOCOPY };
		curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &b);
		curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	} else if (c->key_file) {
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
	}
	refresh_token(c);
	struct curl_slist *hl = extra, *t;
	int have_accept = 0;
	for (t = extra; t; t = t->next)
		have_accept |= strncasecmp(t->data, "Accept:", 7) == 0;
	if (!have_accept) {
		t = curl_slist_append(hl, "Accept: application/json");
		if (!t)
			goto oom;
		hl = t;
	}
	if (c->token) {
		size_t tn = strlen(c->token) + 32;
		char *hv = malloc(tn);
		if (!hv)
			goto oom;
		snprintf(hv, tn, "Authorization: Bearer %s", c->token);
		t = curl_slist_append(hl, hv);
		free(hv);
		if (!t)
			goto oom;
		hl = t;
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "pylon/" PL_VERSION);
	return hl;
oom:
	curl_slist_free_all(hl);
	return NULL;
}
