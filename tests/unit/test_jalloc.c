/*
 * The long-lived JSON heap (common/jalloc.h): values made with the flag on
 * come from slabs and those made without from malloc(); either frees on
 * any thread; freed slots are reused by their size class; a slab whose
 * last slot is freed goes back (unless it is its class's only slab).
 */
#include "common/pl.h"
#include "common/jalloc.h"

#include <jansson.h>
#include <pthread.h>
#include "check.h"

static size_t used(void)
{
	size_t u;
	pl_jalloc_stats(NULL, &u);
	return u;
}

static size_t slabs(void)
{
	size_t s;
	pl_jalloc_stats(&s, NULL);
	return s;
}

static void test_classes(void)
{
	CHECK(pl_jalloc_longlived(1) == 0);
	void *a = pl_jalloc_malloc(1), *b = pl_jalloc_malloc(16), *c = pl_jalloc_malloc(17);
	CHECK(used() == 16 + 16 + 32);
	CHECK(a && b && c && a != b);
	CHECK(((uintptr_t)a & 15) == 0 && ((uintptr_t)c & 15) == 0);
	memset(c, 0xab, 17);
	pl_jalloc_free(b);
	void *d = pl_jalloc_malloc(9);   /* same class: the freed slot again */
	CHECK(d == b);
	void *big = pl_jalloc_malloc(PL_JALLOC_MAX + 1);   /* too large: malloc() */
	CHECK(big && used() == 16 + 16 + 32);
	pl_jalloc_free(big);
	pl_jalloc_free(a);
	pl_jalloc_free(c);
	pl_jalloc_free(d);
	CHECK(used() == 0);
	CHECK(pl_jalloc_longlived(0) == 1);
	void *m = pl_jalloc_malloc(32);  /* flag off: malloc() */
	CHECK(m && used() == 0);
	pl_jalloc_free(m);
}

static void test_release(void)
{
	pl_jalloc_longlived(1);
	size_t per = PL_JALLOC_SLAB / 512, n = 3 * per;
	void **v = calloc(n, sizeof(*v));
	size_t s0 = slabs();
	for (size_t i = 0; i < n; i++)
		v[i] = pl_jalloc_malloc(500);
	CHECK(slabs() == s0 + 3 * PL_JALLOC_SLAB);
	for (size_t i = 0; i < n; i++)
		pl_jalloc_free(v[i]);
	/* two of the three go back; the last is kept for its class */
	CHECK(slabs() == s0 + PL_JALLOC_SLAB);
	for (size_t i = 0; i < n; i++)
		v[i] = pl_jalloc_malloc(500);   /* reused ranges come back zero-filled or reused: writable */
	for (size_t i = 0; i < n; i++)
		memset(v[i], 0x5a, 500);
	for (size_t i = 0; i < n; i++)
		pl_jalloc_free(v[i]);
	free(v);
	pl_jalloc_longlived(0);
	CHECK(used() == 0);
}

static void *free_them(void *arg)
{
	json_t *v = arg;
	json_decref(v);
	return NULL;
}

static void test_json(void)
{
	json_t *parsed = json_loads("{\"spec\":{\"hostnames\":[\"a.example\",\"b.example\"],\"n\":1}}", 0, NULL);
	CHECK(parsed && used() == 0);             /* made with the flag off */
	int was = pl_jalloc_longlived(1);
	json_t *copy = json_deep_copy(parsed);
	pl_jalloc_longlived(was);
	CHECK(copy && used() > 0);
	CHECK(json_equal(copy, parsed));
	json_decref(parsed);
	char *txt = json_dumps(copy, JSON_COMPACT); /* flag off: free() is right for it */
	CHECK(txt && strcmp(txt, "{\"spec\":{\"hostnames\":[\"a.example\",\"b.example\"],\"n\":1}}") == 0);
	free(txt);
	/* freed on another thread */
	pthread_t th;
	CHECK(pthread_create(&th, NULL, free_them, copy) == 0);
	pthread_join(th, NULL);
	CHECK(used() == 0);
}

int main(void)
{
	pl_jalloc_init();
	pl_jalloc_init();   /* twice: no effect */
	test_classes();
	test_release();
	test_json();
	if (fails) {
		fprintf(stderr, "test_jalloc: %d fails\n", fails);
		return 1;
	}
	printf("test_jalloc: ok\n");
	return 0;
}
