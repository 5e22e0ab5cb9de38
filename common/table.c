#include "pl.h"
#include "table.h"
#include "arena.h"

#include <pthread.h>

static pthread_mutex_t cur_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pl_table *current;
static uint64_t generation;
static _Atomic int64_t last_swap_ns;
static atomic_uint live_tables;

static struct {
	void (*fn)(void *);
	void *data;
} hooks[64];
static unsigned n_hooks;
static pthread_mutex_t hooks_lock = PTHREAD_MUTEX_INITIALIZER;

struct pl_table *pl_table_new(void)
{
	struct pl_arena *a = pl_arena_new(64 * 1024, PL_ARENA_FATAL);
	struct pl_table *t = pl_arena_alloc(a, sizeof(*t));
	t->arena = a;
	atomic_init(&t->refcnt, 1);
	atomic_fetch_add(&live_tables, 1);
	return t;
}

void pl_table_ref(struct pl_table *t)
{
	atomic_fetch_add_explicit(&t->refcnt, 1, memory_order_relaxed);
}

void pl_table_unref(struct pl_table *t)
{
	if (!t)
		return;
	int prev = atomic_fetch_sub_explicit(&t->refcnt, 1, memory_order_acq_rel);
	PL_BUG_ON(prev <= 0);
	if (prev == 1) {
		atomic_fetch_sub(&live_tables, 1);
		pl_arena_free(t->arena);
	}
}

void pl_table_publish(struct pl_table *t)
{
	pthread_mutex_lock(&cur_lock);
	struct pl_table *old = current;
	t->generation = ++generation;
	current = t;
	pthread_mutex_unlock(&cur_lock);
	pl_table_unref(old);
	/* hooks may be registered while the controller already publishes */
	pthread_mutex_lock(&hooks_lock);
	for (unsigned i = 0; i < n_hooks; i++)
		hooks[i].fn(hooks[i].data);
	pthread_mutex_unlock(&hooks_lock);
	if (t->compiled_at_ns)
		atomic_store(&last_swap_ns, pl_now_ns() - t->compiled_at_ns);
}

struct pl_table *pl_table_acquire(void)
{
	pthread_mutex_lock(&cur_lock);
	struct pl_table *t = current;
	if (t)
		pl_table_ref(t);
	pthread_mutex_unlock(&cur_lock);
	return t;
}

void pl_table_on_publish(void (*fn)(void *), void *data)
{
	pthread_mutex_lock(&hooks_lock);
	PL_BUG_ON(n_hooks >= PL_ARRAY_LEN(hooks));
	hooks[n_hooks].fn = fn;
	hooks[n_hooks].data = data;
	n_hooks++;
	pthread_mutex_unlock(&hooks_lock);
}

uint64_t pl_table_generation(void)
{
	pthread_mutex_lock(&cur_lock);
	uint64_t g = generation;
	pthread_mutex_unlock(&cur_lock);
	return g;
}

int64_t pl_table_last_swap_ns(void)
{
	return atomic_load(&last_swap_ns);
}

unsigned pl_table_live_count(void)
{
	return atomic_load(&live_tables);
}

void pl_hostname_init(struct pl_hostname *h, struct pl_arena *a, const char *name)
{
	if (!name || !*name || strcmp(name, "*") == 0) {
		h->kind = PL_HOST_ANY;
		h->name = pl_arena_strdup(a, "");
		h->name_len = 0;
		return;
	}
	const char *s = name;
	h->kind = PL_HOST_EXACT;
	if (s[0] == '*' && s[1] == '.') {
		h->kind = PL_HOST_WILDCARD;
		s++;
	}
	size_t n = strlen(s);
	h->name = pl_arena_alloc(a, n + 1);
	for (size_t i = 0; i < n; i++)
		h->name[i] = pl_lower(s[i]);
	h->name_len = (uint32_t)n;
}

int pl_hostname_matches(const struct pl_hostname *h, const char *host, size_t n)
{
	switch (h->kind) {
	case PL_HOST_ANY:
		return 1;
	case PL_HOST_EXACT:
		return n == h->name_len && pl_strncaseeq(host, h->name, n);
	case PL_HOST_WILDCARD:
		/* "*.example.com" matches "a.example.com" and "a.b.example.com",
		 * not "example.com" (the label before the suffix must be non-empty) */
		return n > h->name_len && pl_strncaseeq(host + n - h->name_len, h->name, h->name_len);
	}
	return 0;
}
