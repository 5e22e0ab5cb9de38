#include "pl.h"
#include "stats.h"

#include <pthread.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pl_route_stats *_Atomic head;
/* lookups come from the compiler, once per route per compile: hash them so
 * thousands of routes stay linear */
static struct pl_route_stats *buckets[4096];
static unsigned nslots = PL_MAX_WORKERS;
static int made;                   /* a block exists: the slot count is fixed */

void pl_stats_set_slots(unsigned n)
{
	pthread_mutex_lock(&lock);
	PL_BUG_ON(made || n < 1 || n > PL_MAX_WORKERS);
	nslots = n;
	pthread_mutex_unlock(&lock);
}

unsigned pl_stats_slots(void)
{
	return nslots;
}

#define CHUNK (64 * 1024)
static char *chunk;
static size_t chunk_used = CHUNK;

/* Zeroed, 64-byte aligned, never freed. */
static void *carve(size_t sz)
{
	if (sz > CHUNK / 4) {
		void *p = aligned_alloc(64, sz);
		if (!p)
			PL_PANIC("out of memory");
		memset(p, 0, sz);
		return p;
	}
	if (chunk_used + sz > CHUNK) {
		chunk = aligned_alloc(4096, CHUNK);
		if (!chunk)
			PL_PANIC("out of memory");
		memset(chunk, 0, CHUNK);
		chunk_used = 0;
	}
	void *p = chunk + chunk_used;
	chunk_used += sz;
	return p;
}

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
		size_t nl = strlen(name) + 1, ll = strlen(listener) + 1;
		size_t hdr = sizeof(*s) + nslots * sizeof(s->w[0]);
		size_t sz = (hdr + nl + ll + 63) & ~(size_t)63;
		s = carve(sz);
		made = 1;
		s->name = (char *)s + hdr;
		memcpy(s->name, name, nl);
		s->listener = s->name + nl;
		memcpy(s->listener, listener, ll);
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
