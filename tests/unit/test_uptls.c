/*
 * Unit tests for proxy/uptls.c internals (the file is included to reach its
 * statics): the process-wide SSL_CTX cache (a hit returns the cached
 * context and refreshes its LRU position; eviction drops the least recently
 * used; contexts built concurrently for one key end up as one entry), and
 * the warned-once set behind pl_uptls_warn_unusable().
 */
#include "../../proxy/uptls.c"

#include <stdio.h>
#include <stdlib.h>
#include "check.h"

/* a self-signed EC CA (the same as test_backendtls.c's ConfigMap) */
static const char CA_PEM[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBejCCAR+gAwIBAgIUFsal0pSmtFHlfAgHKhdJI1+fzZ0wCgYIKoZIzj0EAwIw\n"
	"EjEQMA4GA1UEAwwHdW5pdC1jYTAeFw0yNjExMjIwMTE1MTFaFw0zNjExMTkwMTE1\n"
	"MTFaMBIxEDAOBgNVBAMMB3VuaXQtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n"
	"AAT/SSq6MmOSQVQB1zk7N1B2QZqzdDKS8EQYnO5B0J0DT+ubaMrt13RIkqaEuzU9\n"
	"RlSl9hVpnEbVm7c0+RDEiiOQo1MwUTAdBgNVHQ4EFgQUm32lfUrxCqk3nFpO0cvT\n"
	"W8z11IcwHwYDVR0jBBgwFoAUm32lfUrxCqk3nFpO0cvTW8z11IcwDwYDVR0TAQH/\n"
	"BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAgVu/eRgjWtUG8QZ7T0SzvLkjiUN7\n"
	"AAMusYMeweQCXd0CIQDogYMuJIu3PvMDKSIv+DHvuFwns6NE0iSDESR4pS62Mg==\n"
	"-----END CERTIFICATE-----\n";

/* Distinct cache keys with the same trust: text after the PEM block is ignored by the parser. */
static char keys[MAX_CTX + 2][sizeof(CA_PEM) + 32];

static const char *key_text(unsigned i)
{
	snprintf(keys[i], sizeof(keys[i]), "%skey %u\n", CA_PEM, i);
	return keys[i];
}

static SSL_CTX *get(unsigned i)
{
	char err[200] = "";
	SSL_CTX *c = ctx_get(key_text(i), NULL, NULL, err, sizeof(err));
	if (!c)
		fprintf(stderr, "ctx_get(%u): %s\n", i, err);
	return c;
}

static void test_lru(void)
{
	SSL_CTX *held[MAX_CTX + 2] = { 0 };
	for (unsigned i = 0; i < MAX_CTX; i++)
		held[i] = get(i);
	CHECK(n_cache == MAX_CTX);
	/* a hit: the very context, and key 0 becomes the most recently used */
	SSL_CTX *again = get(0);
	CHECK(again && again == held[0]);
	SSL_CTX_free(again);
	/* one more key evicts the least recently used: key 1, not key 0 */
	held[MAX_CTX] = get(MAX_CTX);
	CHECK(n_cache == MAX_CTX);
	again = get(0);
	CHECK(again && again == held[0]);
	SSL_CTX_free(again);
	again = get(1);     /* rebuilt: a new context (the old one lives on in held[1]) */
	CHECK(again && again != held[1]);
	held[MAX_CTX + 1] = again;
	CHECK(n_cache == MAX_CTX);
	/* an unusable CA is an error and caches nothing */
	char err[200] = "";
	CHECK(!ctx_get("garbage", NULL, NULL, err, sizeof(err)) && strstr(err, "no usable CA"));
	CHECK(n_cache == MAX_CTX);
	for (unsigned i = 0; i < MAX_CTX + 2; i++)
		SSL_CTX_free(held[i]);
}

#define NTHREADS 4
static SSL_CTX *got[NTHREADS];
static pthread_barrier_t bar;

static void *racer(void *arg)
{
	unsigned i = (unsigned)(uintptr_t)arg;
	char err[200];
	pthread_barrier_wait(&bar);
	got[i] = ctx_get(CA_PEM, NULL, NULL, err, sizeof(err));
	return NULL;
}

static void test_race(void)
{
	/* threads missing on one key at once: every one gets the context that was cached */
	pthread_t t[NTHREADS];
	pthread_barrier_init(&bar, NULL, NTHREADS);
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_create(&t[i], NULL, racer, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&bar);
	char err[200];
	SSL_CTX *cached = ctx_get(CA_PEM, NULL, NULL, err, sizeof(err));
	unsigned entries = 0;
	for (struct uctx *e = cache; e; e = e->next)
		entries += e->ca && !strcmp(e->ca, CA_PEM);
	CHECK(entries == 1);
	for (unsigned i = 0; i < NTHREADS; i++) {
		CHECK(got[i] && got[i] == cached);
		SSL_CTX_free(got[i]);
	}
	SSL_CTX_free(cached);
}

static void test_warn_once(void)
{
	CHECK(warn_first(5, 1) == 1);
	CHECK(warn_first(5, 1) == 0);
	CHECK(warn_first(5, 2) == 1);
	CHECK(warn_first(5, 2) == 0);
	CHECK(warn_first(6, 1) == 1);   /* a new generation warns again */
	CHECK(warn_first(6, 1) == 0);
	/* many clusters in one generation: each warns first; the set never fills up for good */
	for (uint32_t id = 100; id < 100 + 2 * WARN_SLOTS; id++)
		CHECK(warn_first(7, id) == 1);
	for (uint32_t id = 1000; id < 1000 + WARN_SLOTS / 4; id++) {
		CHECK(warn_first(8, id) == 1);
		CHECK(warn_first(8, id) == 0);
	}
	/* an older generation never takes over a newer one's slots */
	CHECK(warn_first(8, 1000) == 0);
	CHECK(warn_first(7, 1000) == 1);
	CHECK(warn_first(8, 1000) == 0);
}

int main(void)
{
	test_lru();
	test_race();
	test_warn_once();
	if (fails) {
		fprintf(stderr, "test_uptls: %d failure(s)\n", fails);
		return 1;
	}
	printf("test_uptls: ok\n");
	return 0;
}
