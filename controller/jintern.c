/*
 * Hash-consing (jintern.h). Bottom-up: a container's members are made
 * canonical first, so two containers are equal exactly when their keys match
 * and their members are the same pointers; neither hashing nor comparing a
 * container looks further down than one level.
 *
 * The table is open addressing with linear probing (load at most 3/4),
 * holding one reference per value. Collection needs no bookkeeping: a value
 * whose only reference is the table's is garbage. Dropping a container
 * releases its members, which may then be garbage in turn, so a collection
 * repeats until a pass frees nothing (passes are bounded by the depth of
 * the trees).
 */
#include "pl.h"
#include "jintern.h"
#include "jalloc.h"

#define MIN_CAP 1024
#define GC_MIN_ADDED 4096

struct ent {
	uint64_t h;
	json_t *v;                   /* NULL: empty */
};

struct pl_jintern {
	struct ent *slot;
	size_t cap;                  /* power of two */
	size_t n;                    /* values held */
	size_t added;                /* since the last collection */
};

static uint64_t mix(uint64_t h, uint64_t x)
{
	h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdull;
}

/* v's members are canonical already. */
static uint64_t hash(const json_t *v)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)json_typeof(v);
	switch (json_typeof(v)) {
	case JSON_STRING:
		return mix(pl_fnv1a(h, json_string_value(v), json_string_length(v)), json_string_length(v));
	case JSON_INTEGER:
		return mix(h, (uint64_t)json_integer_value(v));
	case JSON_REAL: {
		double d = json_real_value(v);
		uint64_t bits;
		memcpy(&bits, &d, sizeof(bits));
		return mix(h, bits);
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *m;
		json_array_foreach((json_t *)v, i, m)
			h = mix(h, (uint64_t)(uintptr_t)m);
		return mix(h, json_array_size(v));
	}
	case JSON_OBJECT:
		for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
			h = pl_fnv1a(h, json_object_iter_key(it), json_object_iter_key_len(it));
			h = mix(h, (uint64_t)(uintptr_t)json_object_iter_value(it));
		}
		return mix(h, json_object_size(v));
	default:
		return h;
	}
}

static int equal(const json_t *a, const json_t *b)
{
	if (a == b)
		return 1;
	if (json_typeof(a) != json_typeof(b))
		return 0;
	switch (json_typeof(a)) {
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		       memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
	case JSON_INTEGER:
		return json_integer_value(a) == json_integer_value(b);
	case JSON_REAL: {
		double x = json_real_value(a), y = json_real_value(b);
		return memcmp(&x, &y, sizeof(x)) == 0;
	}
	case JSON_ARRAY: {
		size_t n = json_array_size(a);
		if (n != json_array_size(b))
			return 0;
		for (size_t i = 0; i < n; i++)
			if (json_array_get(a, i) != json_array_get(b, i))
				return 0;
		return 1;
	}
	case JSON_OBJECT: {
		if (json_object_size(a) != json_object_size(b))
			return 0;
		void *i = json_object_iter((json_t *)a), *j = json_object_iter((json_t *)b);
		for (; i && j; i = json_object_iter_next((json_t *)a, i), j = json_object_iter_next((json_t *)b, j)) {
			size_t kl = json_object_iter_key_len(i);
			if (kl != json_object_iter_key_len(j) || memcmp(json_object_iter_key(i), json_object_iter_key(j), kl) != 0 ||
			    json_object_iter_value(i) != json_object_iter_value(j))
				return 0;
		}
		return !i && !j;
	}
	default:
		return 0;
	}
}

static void place(struct ent *slot, size_t cap, uint64_t h, json_t *v)
{
	size_t i = (size_t)h & (cap - 1);
	while (slot[i].v)
		i = (i + 1) & (cap - 1);
	slot[i].h = h;
	slot[i].v = v;
}

static void resize(struct pl_jintern *t, size_t cap)
{
	struct ent *ns = pl_xcalloc(cap, sizeof(*ns));
	for (size_t i = 0; i < t->cap; i++)
		if (t->slot[i].v)
			place(ns, cap, t->slot[i].h, t->slot[i].v);
	free(t->slot);
	t->slot = ns;
	t->cap = cap;
}

struct pl_jintern *pl_jintern_new(void)
{
	struct pl_jintern *t = pl_xcalloc(1, sizeof(*t));
	t->cap = MIN_CAP;
	t->slot = pl_xcalloc(t->cap, sizeof(*t->slot));
	return t;
}

void pl_jintern_free(struct pl_jintern *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->cap; i++)
		json_decref(t->slot[i].v);
	free(t->slot);
	free(t);
}

size_t pl_jintern_size(const struct pl_jintern *t)
{
	return t->n;
}

size_t pl_jintern_gc(struct pl_jintern *t)
{
	size_t freed;
	do {
		freed = 0;
		for (size_t i = 0; i < t->cap; i++) {
			json_t *v = t->slot[i].v;
			if (v && v->refcount == 1) {
				t->slot[i].v = NULL;
				json_decref(v);   /* members lose a holder: the next pass may free them */
				freed++;
			}
		}
		t->n -= freed;
		if (freed) {
			size_t cap = t->cap;
			while (cap > MIN_CAP && t->n * 8 < cap)
				cap /= 2;
			resize(t, cap);   /* also closes the holes linear probing cannot skip */
		}
	} while (freed);
	t->added = 0;
	return t->n;
}

static json_t *intern(struct pl_jintern *t, json_t *v);

static void members(struct pl_jintern *t, json_t *v)
{
	if (json_is_object(v)) {
		for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it))
			json_object_iter_set_new(v, it, intern(t, json_incref(json_object_iter_value(it))));
	} else if (json_is_array(v)) {
		size_t n = json_array_size(v);
		for (size_t i = 0; i < n; i++)
			json_array_set_new(v, i, intern(t, json_incref(json_array_get(v, i))));
	}
}

static json_t *intern(struct pl_jintern *t, json_t *v)
{
	if (!v || json_is_true(v) || json_is_false(v) || json_is_null(v))
		return v;
	members(t, v);
	uint64_t h = hash(v);
	size_t i = (size_t)h & (t->cap - 1);
	for (; t->slot[i].v; i = (i + 1) & (t->cap - 1)) {
		if (t->slot[i].h == h && equal(t->slot[i].v, v)) {
			json_t *c = json_incref(t->slot[i].v);
			json_decref(v);
			return c;
		}
	}
	/*
	 * A value seen for the first time is kept as a copy on the long-lived
	 * heap (jalloc.h): v is usually part of a freshly parsed tree, most of
	 * which is freed at once. Its members are interned already, so a
	 * shallow copy is enough.
	 */
	int was = pl_jalloc_longlived(1);
	json_t *c = json_copy(v);
	pl_jalloc_longlived(was);
	if (!c)
		PL_PANIC("out of memory");
	json_decref(v);
	v = c;
	t->slot[i].h = h;
	t->slot[i].v = json_incref(v);
	t->n++;
	t->added++;
	if ((t->n + 1) * 4 > t->cap * 3)
		resize(t, t->cap * 2);
	return v;
}

/* Collect once enough was added since the last collection: amortised over those additions. */
static void maybe_gc(struct pl_jintern *t)
{
	if (t->added >= GC_MIN_ADDED && t->added * 2 >= t->n)
		pl_jintern_gc(t);
}

json_t *pl_jintern(struct pl_jintern *t, json_t *v)
{
	json_t *c = intern(t, v);
	maybe_gc(t);
	return c;
}

void pl_jintern_members(struct pl_jintern *t, json_t *v)
{
	members(t, v);
	maybe_gc(t);
}
