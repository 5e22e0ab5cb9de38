/*
 * Kubernetes client pieces that need no API server: address pools, base64,
 * kubeconfig parsing, the bind-result registry. (The watch/status logic is
 * tested against a real kube-apiserver in conformance/controllertest/.)
 */
#include "common/pl.h"
#include "common/bindreg.h"
#include "controller/kube.h"
#include "controller/kubeconf.h"

#include <errno.h>
#include <unistd.h>
#include "check.h"

static void test_pool(void)
{
	uint32_t lo, hi;
	CHECK(pl_kube_parse_pool("127.0.10.0/24", &lo, &hi) == 0 && lo == 0x7f000a01 && hi == 0x7f000afe);
	CHECK(pl_kube_parse_pool("127.0.10.7/32", &lo, &hi) == 0 && lo == 0x7f000a07 && hi == 0x7f000a07);
	CHECK(pl_kube_parse_pool("10.0.0.0/31", &lo, &hi) == 0 && lo == 0x0a000000 && hi == 0x0a000001);
	CHECK(pl_kube_parse_pool("127.0.10.1-127.0.10.5", &lo, &hi) == 0 && lo == 0x7f000a01 && hi == 0x7f000a05);
	CHECK(pl_kube_parse_pool("127.0.10.1", &lo, &hi) == 0 && lo == hi);
	CHECK(pl_kube_parse_pool("127.0.10.5-127.0.10.1", &lo, &hi) != 0);
	CHECK(pl_kube_parse_pool("127.0.10.0/33", &lo, &hi) != 0);
	CHECK(pl_kube_parse_pool("127.0.10.0/", &lo, &hi) != 0);
	CHECK(pl_kube_parse_pool("/24", &lo, &hi) != 0);
	CHECK(pl_kube_parse_pool("-", &lo, &hi) != 0);
	CHECK(pl_kube_parse_pool("fe80::/64", &lo, &hi) != 0);
	CHECK(pl_kube_parse_pool("", &lo, &hi) != 0);
	CHECK(pl_kube_parse_pool("1.2.3.4/24-5", &lo, &hi) != 0);
}

static void test_base64(void)
{
	char *o;
	size_t n;
	CHECK(pl_base64_decode("aGVsbG8=", 8, &o, &n) == 0 && n == 5 && memcmp(o, "hello", 5) == 0);
	free(o);
	CHECK(pl_base64_decode("aGVs\nbG8", 8, &o, &n) == 0 && n == 5 && memcmp(o, "hello", 5) == 0);
	free(o);
	CHECK(pl_base64_decode("", 0, &o, &n) == 0 && n == 0);
	free(o);
	CHECK(pl_base64_decode("aGV*", 4, &o, &n) != 0);
}

static char *write_tmp(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/pylon-kubeconf-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		close(fd);
		return NULL;
	}
	close(fd);
	return path;
}

static void test_kubeconfig(void)
{
	char err[512];
	struct pl_kconf c;
	const char *kc = "apiVersion: v1\nkind: Config\n"
			 "clusters:\n- name: a\n  cluster:\n    server: https://10.0.0.1:6443/\n"
			 "    certificate-authority-data: aGVsbG8=\n"
			 "- name: b\n  cluster:\n    server: https://b:1\n"
			 "users:\n- name: u\n  user:\n    token: abc\n    client-key: key.pem\n"
			 "contexts:\n- name: cx\n  context: {cluster: b, user: u}\n- name: cy\n  context: {cluster: a, user: u}\n"
			 "current-context: cy\n";
	char *p = write_tmp(kc);
	CHECK(p != NULL);
	CHECK(pl_kconf_load_kubeconfig(&c, p, err, sizeof(err)) == 0);
	CHECK(c.server && strcmp(c.server, "https://10.0.0.1:6443") == 0);
	CHECK(c.ca_pem && c.ca_len == 5);
	CHECK(c.token && strcmp(c.token, "abc") == 0);
	CHECK(c.key_file && strcmp(c.key_file, "/tmp/key.pem") == 0);
	pl_kconf_free(&c);
	unlink(p);

	p = write_tmp("users:\n- name: u\n  user:\n    exec: {command: aws}\n"
		      "clusters:\n- name: a\n  cluster: {server: 'https://x'}\n"
		      "contexts:\n- name: y\n  context: {cluster: a, user: u}\ncurrent-context: y\n");
	CHECK(pl_kconf_load_kubeconfig(&c, p, err, sizeof(err)) != 0 && strstr(err, "exec"));
	unlink(p);
	p = write_tmp("clusters:\n- name: a\n  cluster: {server: 'ftp://x'}\n"
		      "contexts:\n- name: y\n  context: {cluster: a}\ncurrent-context: y\n");
	CHECK(pl_kconf_load_kubeconfig(&c, p, err, sizeof(err)) != 0);
	unlink(p);
	p = write_tmp("- just\n- a list\n");
	CHECK(pl_kconf_load_kubeconfig(&c, p, err, sizeof(err)) != 0);
	unlink(p);
	CHECK(pl_kconf_load_kubeconfig(&c, "/nonexistent/kubeconfig", err, sizeof(err)) != 0);
}

static int woken;
static void on_change(void *d)
{
	(void)d;
	woken++;
}

static void test_bindreg(void)
{
	int err = 0;
	pl_bindreg_on_change(on_change, NULL);
	CHECK(pl_bindreg_get("127.0.0.9", 80, NULL) == PL_BIND_UNKNOWN);
	pl_bindreg_set("127.0.0.9", 80, 1, 0);
	CHECK(pl_bindreg_get("127.0.0.9", 80, NULL) == PL_BIND_OK && woken == 1);
	pl_bindreg_set("127.0.0.9", 80, 1, 0);
	CHECK(woken == 1);   /* no change, no wake-up */
	pl_bindreg_set("127.0.0.9", 81, 0, EADDRINUSE);
	CHECK(pl_bindreg_get("127.0.0.9", 81, &err) == PL_BIND_FAILED && err == EADDRINUSE && woken == 2);
	pl_bindreg_clear("127.0.0.9", 80);
	CHECK(pl_bindreg_get("127.0.0.9", 80, NULL) == PL_BIND_UNKNOWN && woken == 3);
	pl_bindreg_on_change(NULL, NULL);
}

int main(void)
{
	test_pool();
	test_base64();
	test_kubeconfig();
	test_bindreg();
	if (fails) {
		fprintf(stderr, "test_kube: %d check(s) failed\n", fails);
		return 1;
	}
	printf("test_kube: ok\n");
	return 0;
}
