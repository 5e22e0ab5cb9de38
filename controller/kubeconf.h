/*
 * Credentials and endpoint of the Kubernetes API server, and the libcurl
 * setup every request shares.
 *
 * Contract
 * - pl_kconf_load_kubeconfig() reads a kubeconfig (current-context, or the
 *   first context): server, certificate-authority(-data),
 *   insecure-skip-tls-verify, client-certificate(-data), client-key(-data),
 *   token, tokenFile. Relative file names are taken from the kubeconfig's
 *   directory. exec/auth-provider plugins are not supported (clear error).
 * - pl_kconf_load_incluster() uses KUBERNETES_SERVICE_HOST/PORT, the
 *   service-account token file (re-read when it changes: kubelet rotates it)
 *   and ca.crt; *namespace gets the pod's namespace (malloc'd) when readable.
 * - Both return 0, or -1 with a reason in err. pl_kconf_free() releases.
 * - pl_kconf_setup() prepares an easy handle for server + path (path begins
 *   with '/', query included): URL, TLS material, auth and Accept headers,
 *   plus the extra headers given (the list is taken over; an Accept among
 *   them replaces the default application/json). Returns the
 *   header list the caller frees with curl_slist_free_all() after the
 *   transfer, or NULL on allocation failure. Controller thread only.
 */
#ifndef PL_KUBECONF_H
#define PL_KUBECONF_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>

struct pl_kconf {
	char *server;            /* "https://host:port", no trailing '/' */
	char *ca_pem, *cert_pem, *key_pem;   /* inline PEM (from *-data) */
	size_t ca_len, cert_len, key_len;
	char *ca_file, *cert_file, *key_file;
	char *token;             /* current bearer token or NULL */
	char *token_file;        /* re-read when its mtime/size change */
	int64_t token_mtime_ns;
	long long token_size;
	int insecure;
};

int pl_kconf_load_kubeconfig(struct pl_kconf *c, const char *path, char *err, size_t errlen);
int pl_kconf_load_incluster(struct pl_kconf *c, char **namespace_out, char *err, size_t errlen);
void pl_kconf_free(struct pl_kconf *c);
struct curl_slist *pl_kconf_setup(struct pl_kconf *c, CURL *h, const char *path, struct curl_slist *extra);

/* Base64 (standard alphabet, padding optional, whitespace skipped) to a malloc'd buffer. 0 or -1. */
int pl_base64_decode(const char *in, size_t n, char **out, size_t *out_len);

#endif
