/*
 * Arena: many allocations, freed in one call, with cleanup hooks for
 * non-memory resources (nginx ngx_pool_t).
 *
 * Contract: one thread at a time. pl_arena_new/alloc abort on allocation
 * failure when the arena was made with PL_ARENA_FATAL (start-up, compiler);
 * otherwise they return NULL. Memory is 16-byte aligned and zeroed.
 */
#ifndef PL_ARENA_H
#define PL_ARENA_H

#include <stddef.h>

#define PL_ARENA_FATAL 1

struct pl_arena;

struct pl_arena *pl_arena_new(size_t block_size, int flags);
/*
 * Like pl_arena_new(), but the first block (first bytes, made with the
 * arena in one allocation) is sized apart from later ones: for the many
 * small arenas a cache keeps (the compiler's per-route data), where a
 * default-sized block would be mostly slack. first 0: no first block.
 */
struct pl_arena *pl_arena_new_sized(size_t first, size_t block_size, int flags);
void pl_arena_free(struct pl_arena *a);            /* runs cleanups (LIFO), frees blocks; NULL ok */
void *pl_arena_alloc(struct pl_arena *a, size_t n); /* zeroed */
char *pl_arena_strdup(struct pl_arena *a, const char *s);      /* NULL -> NULL */
char *pl_arena_strndup(struct pl_arena *a, const char *s, size_t n);
char *pl_arena_printf(struct pl_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Registers fn(data) to run when the arena is freed. Returns 0 or -ENOMEM. */
int pl_arena_cleanup_add(struct pl_arena *a, void (*fn)(void *), void *data);
size_t pl_arena_used(const struct pl_arena *a);    /* bytes handed out, for metrics */

#endif
