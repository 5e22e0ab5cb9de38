/*
 * Hash-consing of JSON values (controller/jintern.h): equal values become one,
 * structure and contents are kept, collection frees exactly what nobody holds.
 */
#include "common/pl.h"
#include "controller/jintern.h"
#include "check.h"

static json_t *parse(const char *s)
{
	json_t *v = json_loads(s, JSON_DECODE_ANY, NULL);
	if (!v)
		PL_PANIC("bad test JSON %s", s);
	return v;
}

static void test_sharing(void)
{
	struct pl_jintern *t = pl_jintern_new();
	const char *route = "{\"spec\":{\"parentRefs\":[{\"group\":\"g\",\"kind\":\"Gateway\",\"name\":\"gw\"}],"
			    "\"rules\":[{\"matches\":[{\"path\":{\"type\":\"PathPrefix\",\"value\":\"/\"}}],"
			    "\"weight\":1,\"ratio\":0.5,\"ok\":true,\"none\":null}]},\"name\":\"a\"}";
	json_t *a = pl_jintern(t, parse(route));
	json_t *b = pl_jintern(t, parse(route));
	CHECK(a == b);                                /* the whole tree is one value */
	json_t *orig = parse(route);
	CHECK(json_equal(a, orig));                   /* contents unchanged */
	json_decref(orig);
	char *d = json_dumps(a, JSON_COMPACT);
	CHECK(d && strstr(d, "\"parentRefs\":[{\"group\":\"g\",\"kind\":\"Gateway\",\"name\":\"gw\"}]") != NULL);
	free(d);

	/* different names, shared specs */
	json_t *c = pl_jintern(t, parse("{\"spec\":{\"parentRefs\":[{\"group\":\"g\",\"kind\":\"Gateway\",\"name\":\"gw\"}]},"
					"\"name\":\"c\"}"));
	CHECK(c != a);
	CHECK(json_array_get(json_object_get(json_object_get(c, "spec"), "parentRefs"), 0) ==
	      json_array_get(json_object_get(json_object_get(a, "spec"), "parentRefs"), 0));

	/* key order matters for identity (jansson keeps it), not for json_equal */
	json_t *x = pl_jintern(t, parse("{\"a\":1,\"b\":2}"));
	json_t *y = pl_jintern(t, parse("{\"b\":2,\"a\":1}"));
	CHECK(x != y && json_equal(x, y));
	CHECK(json_object_get(x, "a") == json_object_get(y, "a"));

	/* same text, different types */
	json_t *s1 = pl_jintern(t, parse("\"1\""));
	json_t *i1 = pl_jintern(t, parse("1"));
	json_t *r1 = pl_jintern(t, parse("1.0"));
	CHECK(s1 != i1 && i1 != r1 && json_is_string(s1) && json_is_integer(i1) && json_is_real(r1));
	CHECK(i1 == json_object_get(x, "a"));
	/* strings with NUL bytes and empty containers */
	json_t *n1 = pl_jintern(t, json_stringn("a\0b", 3)), *n2 = pl_jintern(t, json_stringn("a\0c", 3));
	CHECK(n1 != n2 && json_string_length(n1) == 3);
	json_t *e1 = pl_jintern(t, parse("[]")), *e2 = pl_jintern(t, parse("{}"));
	CHECK(e1 != e2 && json_is_array(e1) && json_is_object(e2));
	CHECK(pl_jintern(t, NULL) == NULL);
	CHECK(pl_jintern(t, json_true()) == json_true());

	/* members only: the container stays unshared */
	json_t *m = parse("{\"spec\":{\"parentRefs\":[{\"group\":\"g\",\"kind\":\"Gateway\",\"name\":\"gw\"}]},\"name\":\"c\"}");
	pl_jintern_members(t, m);
	CHECK(m != c && json_object_get(m, "spec") == json_object_get(c, "spec") && m->refcount == 1);
	json_decref(m);

	size_t before = pl_jintern_size(t);
	CHECK(pl_jintern_gc(t) == before);            /* everything still held */
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(x);
	json_decref(y);
	json_decref(s1);
	json_decref(i1);
	json_decref(r1);
	json_decref(n1);
	json_decref(n2);
	json_decref(e1);
	json_decref(e2);
	CHECK(pl_jintern_gc(t) == 0);                 /* and now nothing */
	pl_jintern_free(t);
}

static void test_gc_partial(void)
{
	struct pl_jintern *t = pl_jintern_new();
	json_t *keep = pl_jintern(t, parse("{\"m\":[{\"path\":\"/\"}],\"n\":\"keep\"}"));
	json_t *drop = pl_jintern(t, parse("{\"m\":[{\"path\":\"/\"}],\"n\":\"drop\"}"));
	json_decref(drop);
	/* keep, its "m" subtree (shared with drop), "/" and "keep", path object: "drop" and drop's object go */
	size_t n = pl_jintern_gc(t);
	CHECK(n == 5);
	json_t *again = pl_jintern(t, parse("[{\"path\":\"/\"}]"));
	CHECK(again == json_object_get(keep, "m"));
	json_decref(again);
	json_decref(keep);
	CHECK(pl_jintern_gc(t) == 0);
	pl_jintern_free(t);
}

static void test_many(void)
{
	/* growth, automatic collection and values outliving the table */
	struct pl_jintern *t = pl_jintern_new();
	json_t *held[100];
	char buf[128];
	for (int i = 0; i < 50000; i++) {
		snprintf(buf, sizeof(buf), "{\"name\":\"r%d\",\"spec\":{\"port\":%d,\"kind\":\"Service\"}}", i, i % 7);
		json_t *v = pl_jintern(t, parse(buf));
		if (i < 100)
			held[i] = v;
		else
			json_decref(v);
	}
	CHECK(pl_jintern_size(t) < 50000);            /* collected along the way */
	pl_jintern_gc(t);
	for (int i = 0; i < 100; i++) {
		snprintf(buf, sizeof(buf), "r%d", i);
		CHECK(!strcmp(json_string_value(json_object_get(held[i], "name")), buf));
	}
	/* 100 roots + 100 names + 7 specs + 7 ports + "Service" */
	CHECK(pl_jintern_gc(t) == 215);
	pl_jintern_free(t);
	for (int i = 0; i < 100; i++) {
		CHECK(json_integer_value(json_object_get(json_object_get(held[i], "spec"), "port")) == i % 7);
		json_decref(held[i]);
	}
}

int main(void)
{
	test_sharing();
	test_gc_partial();
	test_many();
	if (fails) {
		fprintf(stderr, "test_jintern: %d fails\n", fails);
		return 1;
	}
	printf("test_jintern: ok\n");
	return 0;
}
