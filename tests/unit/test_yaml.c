/*
 * YAML loader (controller/yamlload.h) and object store (controller/store.h).
 */
#include "common/pl.h"
#include "common/log.h"
#include "controller/store.h"
#include "controller/yamlload.h"
#include "check.h"

static int typed(const char *s, json_type t)
{
	json_t *v = pl_yaml_plain_scalar(s, strlen(s));
	int ok = v && json_typeof(v) == t;
	json_decref(v);
	return ok;
}

static long long int_of(const char *s)
{
	json_t *v = pl_yaml_plain_scalar(s, strlen(s));
	long long r = json_is_integer(v) ? json_integer_value(v) : -12345;
	json_decref(v);
	return r;
}

static void test_scalars(void)
{
	CHECK(typed("true", JSON_TRUE));
	CHECK(typed("True", JSON_TRUE));
	CHECK(typed("yes", JSON_TRUE));
	CHECK(typed("on", JSON_TRUE));
	CHECK(typed("false", JSON_FALSE));
	CHECK(typed("Off", JSON_FALSE));
	CHECK(typed("~", JSON_NULL));
	CHECK(typed("null", JSON_NULL));
	CHECK(typed("", JSON_NULL));
	CHECK(int_of("80") == 80);
	CHECK(int_of("-3") == -3);
	CHECK(int_of("0x1F") == 31);
	CHECK(int_of("0755") == 493);
	CHECK(int_of("1_000") == 1000);
	CHECK(int_of("0b101") == 5);
	CHECK(typed("1.5", JSON_REAL));
	CHECK(typed("1e3", JSON_REAL));
	CHECK(typed("99999999999999999999", JSON_REAL));
	CHECK(typed(".inf", JSON_STRING));
	CHECK(typed(".nan", JSON_STRING));
	CHECK(typed("1.2.3", JSON_STRING));
	CHECK(typed("/foo", JSON_STRING));
	CHECK(typed("10s", JSON_STRING));
	CHECK(typed("truex", JSON_STRING));
	CHECK(typed("-", JSON_STRING));
}

struct docs {
	json_t *arr;
	unsigned lines[16];
};

static int collect(json_t *doc, unsigned line, void *data, char *err, size_t errlen)
{
	struct docs *d = data;
	if (json_array_size(d->arr) < 16)
		d->lines[json_array_size(d->arr)] = line;
	json_array_append_new(d->arr, doc);
	return 0;
}

static int load(const char *y, struct docs *d, char *err, size_t errlen)
{
	d->arr = json_array();
	return pl_yaml_load(y, strlen(y), "t.yaml", collect, d, err, errlen);
}

static void test_loader(void)
{
	char err[512];
	struct docs d;

	CHECK(load("a: 1\nb: '1'\nc: \"true\"\nd: true\ne: [x, 2]\nf: {g: ~}\n", &d, err, sizeof(err)) == 0);
	CHECK(json_array_size(d.arr) == 1);
	json_t *o = json_array_get(d.arr, 0);
	CHECK(json_integer_value(json_object_get(o, "a")) == 1);
	CHECK(json_is_string(json_object_get(o, "b")));
	CHECK(json_is_string(json_object_get(o, "c")));
	CHECK(json_is_true(json_object_get(o, "d")));
	CHECK(json_array_size(json_object_get(o, "e")) == 2);
	CHECK(json_is_null(json_object_get(json_object_get(o, "f"), "g")));
	json_decref(d.arr);

	/* multi-document, empty documents skipped, start lines reported */
	CHECK(load("---\n---\na: 1\n---\n# only a comment\n---\nb: 2\n...\n", &d, err, sizeof(err)) == 0);
	CHECK(json_array_size(d.arr) == 2);
	CHECK(d.lines[0] == 2 && d.lines[1] == 6);
	json_decref(d.arr);

	/* JSON is YAML */
	CHECK(load("{\"kind\":\"Service\",\"n\":[1,2,{\"x\":null}]}", &d, err, sizeof(err)) == 0);
	CHECK(json_array_size(d.arr) == 1);
	json_decref(d.arr);

	/* !!str tag */
	CHECK(load("a: !!str 80\n", &d, err, sizeof(err)) == 0);
	CHECK(json_is_string(json_object_get(json_array_get(d.arr, 0), "a")));
	json_decref(d.arr);

	/* aliases: rejected with a position */
	CHECK(load("a: &x [1, 2]\nb: *x\n", &d, err, sizeof(err)) == -1);
	CHECK(strstr(err, "t.yaml:2:4:") && strstr(err, "alias"));
	json_decref(d.arr);

	/* duplicate keys */
	CHECK(load("a: 1\na: 2\n", &d, err, sizeof(err)) == -1);
	CHECK(strstr(err, "t.yaml:2:1:") && strstr(err, "duplicate"));
	json_decref(d.arr);

	/* complex keys */
	CHECK(load("? [a]\n: 1\n", &d, err, sizeof(err)) == -1);
	json_decref(d.arr);

	/* syntax errors keep file:line:col */
	CHECK(load("a: 1\n b: 2\n", &d, err, sizeof(err)) == -1);
	CHECK(strncmp(err, "t.yaml:2:", 9) == 0);
	json_decref(d.arr);

	/* depth limit */
	char deep[400];
	size_t k = 0;
	for (int i = 0; i < 100; i++)
		deep[k++] = '[';
	for (int i = 0; i < 100; i++)
		deep[k++] = ']';
	deep[k] = 0;
	CHECK(load(deep, &d, err, sizeof(err)) == -1);
	CHECK(strstr(err, "nesting"));
	json_decref(d.arr);

	/* NUL inside a string */
	CHECK(load("a: \"x\\0y\"\n", &d, err, sizeof(err)) == -1);
	json_decref(d.arr);

	/* size limit */
	CHECK(pl_yaml_load("a", PL_YAML_MAX_BYTES + 1, "big", collect, &d, err, sizeof(err)) == -1);
}

static void test_store(void)
{
	char err[512];
	struct pl_store *s = pl_store_new();
	const char *y =
		"apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
		"---\napiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\n"
		"---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: GatewayClass\nmetadata: {name: c, namespace: zz}\n"
		"---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyProxy\nmetadata: {name: e}\n"
		"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: istio}\n"
		"---\napiVersion: gateway.networking.k8s.io/v2\nkind: Gateway\nmetadata: {name: future}\n"
		"---\napiVersion: v1\nkind: List\nitems:\n"
		"- {apiVersion: v1, kind: Namespace, metadata: {name: x, labels: {team: a}}}\n"
		"- {apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute,\n"
		"   metadata: {name: r, creationTimestamp: \"2024-01-02T03:04:05Z\"}}\n";
	CHECK(pl_store_load_yaml(s, y, strlen(y), "m.yaml", err, sizeof(err)) == 5);
	CHECK(pl_store_count(s) == 5);
	CHECK(pl_store_get(s, PL_K_SERVICE, "default", "a"));
	CHECK(pl_store_get(s, PL_K_SERVICE, "x", "a"));
	CHECK(pl_store_get(s, PL_K_GATEWAYCLASS, "", "c"));
	CHECK(pl_store_get(s, PL_K_NAMESPACE, "", "x"));
	CHECK(!pl_store_get(s, PL_K_GATEWAY, "default", "istio"));
	const struct pl_obj *r = pl_store_get(s, PL_K_HTTPROUTE, "default", "r");
	CHECK(r && r->created_ns == 1704164645LL * 1000000000LL);
	CHECK(r && strcmp(r->origin, "m.yaml:24") == 0);
	const struct pl_obj *a = pl_store_get(s, PL_K_SERVICE, "default", "a");
	CHECK(a && a->created_ns == INT64_MAX && a->seq == 0);

	const struct pl_obj *const *v;
	CHECK(pl_store_list(s, PL_K_SERVICE, &v) == 2);
	CHECK(strcmp(v[0]->ns, "default") == 0 && strcmp(v[1]->ns, "x") == 0);

	/* replacing keeps load order */
	const char *y2 = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {x: 1}\n";
	CHECK(pl_store_load_yaml(s, y2, strlen(y2), "n.yaml", err, sizeof(err)) == 1);
	a = pl_store_get(s, PL_K_SERVICE, "default", "a");
	CHECK(a && a->seq == 0 && json_object_get(a->json, "spec"));
	CHECK(pl_store_count(s) == 5);

	/* invalid objects */
	const char *bad[] = {
		"- 1\n- 2\n",
		"kind: Service\nmetadata: {name: a}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: 3}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: a/b}\n",
		"apiVersion: v1\nkind: List\nitems: [{kind: List}]\n",
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
		err[0] = 0;
		CHECK(pl_store_load_yaml(s, bad[i], strlen(bad[i]), "bad.yaml", err, sizeof(err)) == -1);
		CHECK(strncmp(err, "bad.yaml:1", 10) == 0);
	}
	CHECK(pl_store_delete(s, PL_K_SERVICE, "x", "a") == 0);
	CHECK(pl_store_delete(s, PL_K_SERVICE, "x", "a") == -1);
	CHECK(pl_store_count(s) == 4);
	pl_store_free(s);

	int64_t ns;
	CHECK(pl_parse_rfc3339("1970-01-01T00:00:00Z", &ns) == 0 && ns == 0);
	CHECK(pl_parse_rfc3339("1970-01-01T01:00:00.5+01:00", &ns) == 0 && ns == 500000000);
	CHECK(pl_parse_rfc3339("2024-02-29T00:00:00Z", &ns) == 0 && ns == 1709164800LL * 1000000000LL);
	CHECK(pl_parse_rfc3339("2024-13-01T00:00:00Z", &ns) == -1);
	CHECK(pl_parse_rfc3339("yesterday", &ns) == -1);
	CHECK(pl_parse_rfc3339("9999-12-31T23:59:59Z", &ns) == -1);
	CHECK(pl_parse_rfc3339("0001-01-01T00:00:00Z", &ns) == -1);
}

int main(void)
{
	pl_log_set_level(PL_LOG_ERROR);
	test_scalars();
	test_loader();
	test_store();
	if (fails)
		fprintf(stderr, "test_yaml: %d check(s) failed\n", fails);
	else
		printf("test_yaml: ok\n");
	return fails != 0;
}
