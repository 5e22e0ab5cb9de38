#include "pl.h"
#include "jalloc.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

/*
 * Size classes of 16 bytes (16 .. PL_JALLOC_MAX); a slab holds slots of one
 * class, carved front to back (bump) and then reused through a free list
 * threaded through the free slots. A slab with room is on its class's list;
 * a slab whose last slot is freed is given back to the system and its index
 * goes on the list of empty slabs, unless it is the only slab with room of
 * its class (so one value made and freed over and over does not cost a
 * madvise() each time).
 */
#define STEP 16
#define N_CLS (PL_JALLOC_MAX / STEP)
#define N_SLABS (PL_JALLOC_RESERVE / PL_JALLOC_SLAB)

struct slab {
	void *free;                  /* freed slots, linked through their first word */
	struct slab *next, *prev;    /* class list (slabs with room), or the empty list (next only) */
	uint32_t bump;               /* bytes carved so far */
	uint32_t used;               /* slots handed out */
	uint16_t cls;                /* 1..N_CLS; 0: empty */
	uint8_t listed;              /* on its class list */
};

static struct {
	pthread_mutex_t mu;
	char *base;                  /* NULL: no slabs (not initialised, or the reservation failed) */
	struct slab *meta;           /* N_SLABS entries */
	uint32_t top;                /* slabs carved out of the range so far */
	struct slab *empty;          /* slabs given back, to be reused first */
	struct slab *room[N_CLS + 1];
	size_t slab_bytes, used_bytes;
} J = { .mu = PTHREAD_MUTEX_INITIALIZER };

static _Thread_local int longlived;

static size_t cls_size(unsigned cls)
{
	return (size_t)cls * STEP;
}

static void list_add(struct slab *s)
{
	struct slab **h = &J.room[s->cls];
	s->prev = NULL;
	s->next = *h;
	if (*h)
		(*h)->prev = s;
	*h = s;
	s->listed = 1;
}

static void list_del(struct slab *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		J.room[s->cls] = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	s->listed = 0;
}

static char *slab_mem(const struct slab *s)
{
	return J.base + (size_t)(s - J.meta) * PL_JALLOC_SLAB;
}

/* A slab for class cls, on its list; NULL when the range is used up. */
static struct slab *slab_new(unsigned cls)
{
	struct slab *s = J.empty;
	if (s)
		J.empty = s->next;
	else {
		if (J.top >= N_SLABS)
			return NULL;
		s = &J.meta[J.top];
		if (mprotect(J.base + (size_t)J.top * PL_JALLOC_SLAB, PL_JALLOC_SLAB, PROT_READ | PROT_WRITE) != 0)
			return NULL;
		J.top++;
	}
	s->free = NULL;
	s->bump = 0;
	s->used = 0;
	s->cls = (uint16_t)cls;
	list_add(s);
	J.slab_bytes += PL_JALLOC_SLAB;
	return s;
}

static void *slab_alloc(size_t n)
{
	unsigned cls = n ? (unsigned)((n + STEP - 1) / STEP) : 1;
	size_t sz = cls_size(cls);
	pthread_mutex_lock(&J.mu);
	struct slab *s = J.room[cls];
	if (!s && !(s = slab_new(cls))) {
		pthread_mutex_unlock(&J.mu);
		return malloc(n);
	}
	void *p;
	if (s->free) {
		p = s->free;
		s->free = *(void **)p;
	} else {
		p = slab_mem(s) + s->bump;
		s->bump += (uint32_t)sz;
	}
	s->used++;
	J.used_bytes += sz;
	if (!s->free && s->bump + sz > PL_JALLOC_SLAB)
		list_del(s);   /* full */
	pthread_mutex_unlock(&J.mu);
	return p;
}

static int in_slabs(const void *p)
{
	return J.base && (uintptr_t)p - (uintptr_t)J.base < PL_JALLOC_RESERVE;
}

static void slab_free(void *p)
{
	pthread_mutex_lock(&J.mu);
	struct slab *s = &J.meta[((uintptr_t)p - (uintptr_t)J.base) / PL_JALLOC_SLAB];
	PL_BUG_ON(s->cls == 0 || s->used == 0);
	*(void **)p = s->free;
	s->free = p;
	s->used--;
	J.used_bytes -= cls_size(s->cls);
	if (!s->listed)
		list_add(s);
	if (s->used == 0 && (J.room[s->cls] != s || s->next)) {
		list_del(s);
		madvise(slab_mem(s), PL_JALLOC_SLAB, MADV_DONTNEED);
		s->cls = 0;
		s->free = NULL;
		s->next = J.empty;
		J.empty = s;
		J.slab_bytes -= PL_JALLOC_SLAB;
	}
	pthread_mutex_unlock(&J.mu);
}

void *pl_jalloc_malloc(size_t n)
{
	if (longlived && J.base && n <= PL_JALLOC_MAX)
		return slab_alloc(n);
	return malloc(n);
}

void pl_jalloc_free(void *p)
{
	if (in_slabs(p))
		slab_free(p);
	else
		free(p);
}

void pl_jalloc_init(void)
{
	if (J.base)
		return;
	void *b = mmap(NULL, PL_JALLOC_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	void *m = mmap(NULL, N_SLABS * sizeof(struct slab), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (b == MAP_FAILED || m == MAP_FAILED) {
		if (b != MAP_FAILED)
			munmap(b, PL_JALLOC_RESERVE);
		if (m != MAP_FAILED)
			munmap(m, N_SLABS * sizeof(struct slab));
		return;   /* everything from malloc(), as without pl_jalloc_init() */
	}
	J.meta = m;
	J.base = b;
	json_set_alloc_funcs(pl_jalloc_malloc, pl_jalloc_free);
}

int pl_jalloc_longlived(int on)
{
	int was = longlived;
	longlived = on;
	return was;
}

void pl_jalloc_stats(size_t *slab_bytes, size_t *used_bytes)
{
	pthread_mutex_lock(&J.mu);
	if (slab_bytes)
		*slab_bytes = J.slab_bytes;
	if (used_bytes)
		*used_bytes = J.used_bytes;
	pthread_mutex_unlock(&J.mu);
}
