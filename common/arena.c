#include "arena.h"
#include "pl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct block {
	struct block *next;
	size_t size, used;
	_Alignas(16) unsigned char data[];
};

struct cleanup {
	struct cleanup *next;
	void (*fn)(void *);
	void *data;
};

struct pl_arena {
	struct block *head;
	struct cleanup *cleanups;
	size_t block_size, total;
	int flags;
	struct block *inl;           /* first block, in the arena's own allocation; not freed alone */
};

struct pl_arena *pl_arena_new(size_t block_size, int flags)
{
	struct pl_arena *a = calloc(1, sizeof(*a));
	if (!a) {
		if (flags & PL_ARENA_FATAL)
			PL_PANIC("out of memory");
		return NULL;
	}
	a->block_size = block_size ? block_size : 4096;
	a->flags = flags;
	return a;
}

struct pl_arena *pl_arena_new_sized(size_t first, size_t block_size, int flags)
{
	if (!first)
		return pl_arena_new(block_size, flags);
	first = (first + 15) & ~(size_t)15;
	size_t hdr = (sizeof(struct pl_arena) + 15) & ~(size_t)15;
	struct pl_arena *a = NULL;
	if (first <= SIZE_MAX - hdr - sizeof(struct block))
		a = malloc(hdr + sizeof(struct block) + first);
	if (!a) {
		if (flags & PL_ARENA_FATAL)
			PL_PANIC("out of memory");
		return NULL;
	}
	memset(a, 0, sizeof(*a));
	a->block_size = block_size ? block_size : 4096;
	a->flags = flags;
	struct block *b = (struct block *)((unsigned char *)a + hdr);
	b->next = NULL;
	b->size = first;
	b->used = 0;
	a->head = a->inl = b;
	return a;
}

void pl_arena_free(struct pl_arena *a)
{
	if (!a)
		return;
	for (struct cleanup *c = a->cleanups, *n; c; c = n) {
		n = c->next;
		c->fn(c->data);
	}
	for (struct block *b = a->head, *n; b; b = n) {
		n = b->next;
		if (b != a->inl)
			free(b);
	}
	free(a);
}

void *pl_arena_alloc(struct pl_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct block *b = a->head;
	if (!b || b->size - b->used < n) {
		size_t sz = n > a->block_size / 2 ? n : a->block_size;
		b = malloc(sizeof(*b) + sz);
		if (!b) {
			if (a->flags & PL_ARENA_FATAL)
				PL_PANIC("out of memory");
			return NULL;
		}
		b->size = sz;
		b->used = 0;
		/* a big one-off allocation goes behind the current block so the
		 * current block's free space is not wasted */
		if (a->head && sz != a->block_size) {
			b->next = a->head->next;
			a->head->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
	}
	void *p = b->data + b->used;
	b->used += n;
	a->total += n;
	memset(p, 0, n);
	return p;
}

char *pl_arena_strndup(struct pl_arena *a, const char *s, size_t n)
{
	if (!s)
		return NULL;
	char *d = pl_arena_alloc(a, n + 1);
	if (d)
		memcpy(d, s, n);
	return d;
}

char *pl_arena_strdup(struct pl_arena *a, const char *s)
{
	return s ? pl_arena_strndup(a, s, strlen(s)) : NULL;
}

char *pl_arena_printf(struct pl_arena *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *d = pl_arena_alloc(a, (size_t)n + 1);
	if (!d)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(d, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return d;
}

int pl_arena_cleanup_add(struct pl_arena *a, void (*fn)(void *), void *data)
{
	struct cleanup *c = pl_arena_alloc(a, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fn = fn;
	c->data = data;
	c->next = a->cleanups;
	a->cleanups = c;
	return 0;
}

size_t pl_arena_used(const struct pl_arena *a)
{
	return a->total;
}
