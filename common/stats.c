#include "pl.h"
#include "stats.h"

#include <pthread.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pl_route_stats *_Atomic head;
/* lookups come from the compiler, once per route per compile: hash them so
 * thousands of routes stay linear */
static struct pl_route_stats *buckets[4096];

static unsigned hash2(const char *a, const char *b)
{
	uint32_t h = 2166136261u;
	for (; *a; a++)
		h = (h ^ (unsigned char)*a) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (; *b; b++)
		h = (h ^ (unsigned char)*b) * 16777619u;
	return h % PL_ARRAY_LEN(buckets);
}

struct pl_route_stats *pl_stats_route(const char *name, const char *listener)
{
	pthread_mutex_lock(&lock);
	if (!listener)
		listener = "";
	unsigned b = hash2(name, listener);
	struct pl_route_stats *s;
	for (s = buckets[b]; s; s = s->hnext)
		if (strcmp(s->name, name) == 0 && strcmp(s->listener, listener) == 0)
			break;
	if (!s) {
		s = aligned_alloc(64, (sizeof(*s) + 63) & ~(size_t)63);
		if (!s)
			PL_PANIC("out of memory");
		memset(s, 0, sizeof(*s));
		s->name = pl_xstrdup(name);
		s->listener = pl_xstrdup(listener);
		s->hnext = buckets[b];
		buckets[b] = s;
		s->next = atomic_load(&head);
		atomic_store_explicit(&head, s, memory_order_release);
	}
	pthread_mutex_unlock(&lock);
	return s;
}

void pl_stats_foreach(void (*fn)(const struct pl_route_stats *, void *), void *data)
{
	for (struct pl_route_stats *s = atomic_load_explicit(&head, memory_order_acquire); s; s = s->next)
		fn(s, data);
}
