#include "pl.h"
#include "stats.h"

#include <pthread.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pl_route_stats *_Atomic head;

struct pl_route_stats *pl_stats_route(const char *name, const char *listener)
{
	pthread_mutex_lock(&lock);
	struct pl_route_stats *s;
	for (s = atomic_load(&head); s; s = s->next)
		if (strcmp(s->name, name) == 0 && strcmp(s->listener, listener ? listener : "") == 0)
			break;
	if (!s) {
		s = aligned_alloc(64, (sizeof(*s) + 63) & ~(size_t)63);
		if (!s)
			PL_PANIC("out of memory");
		memset(s, 0, sizeof(*s));
		s->name = pl_xstrdup(name);
		s->listener = pl_xstrdup(listener ? listener : "");
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
