/*
 * A heap of its own for long-lived JSON values.
 *
 * The Kubernetes controller parses every watch event into a JSON tree, keeps
 * a few values of it (the slim object, new interned values) for as long as
 * the object lives, and frees the rest at once; status passes make and free
 * more trees. With one malloc heap the survivors end up scattered among the
 * freed garbage, and malloc_trim() can give back only whole free pages: at
 * 5000 routes about a third of the controller thread's heap was free but
 * resident, in tens of thousands of small holes. Values made while a thread
 * has pl_jalloc_longlived() on go to size-class slabs instead, where they
 * sit next to other long-lived values and a freed slot is reused by the next
 * value of its size.
 *
 * Contract
 * - pl_jalloc_init() installs the allocator in jansson (json_set_alloc_funcs)
 *   and must run before any JSON value exists (main(), tests). Without it
 *   nothing changes: every value comes from malloc().
 * - pl_jalloc_longlived(on) sets, for the calling thread only, where values
 *   made from now on go; it returns the previous setting, for nesting:
 *       int was = pl_jalloc_longlived(1); ... pl_jalloc_longlived(was);
 *   Blocks larger than PL_JALLOC_MAX always come from malloc(). Never call
 *   json_dumps() with it on: its result is released with free(), which a
 *   slab slot must not reach.
 * - A value may be freed on any thread, whichever heap it came from (a
 *   mutex guards the slabs; only the owning thread allocates in practice).
 * - Slabs are PL_JALLOC_SLAB bytes in one reserved address range
 *   (PL_JALLOC_RESERVE); a slab whose every slot is free goes back to the
 *   system (madvise). When the range is used up, values come from malloc().
 * - pl_jalloc_stats(): bytes of slabs in use and bytes handed out in them.
 */
#ifndef PL_JALLOC_H
#define PL_JALLOC_H

#include <stddef.h>

#define PL_JALLOC_MAX 1024
#define PL_JALLOC_SLAB (64 * 1024)
#define PL_JALLOC_RESERVE ((size_t)1 << 30)

void pl_jalloc_init(void);
int pl_jalloc_longlived(int on);
void pl_jalloc_stats(size_t *slab_bytes, size_t *used_bytes);

/* The allocator itself, for tests. */
void *pl_jalloc_malloc(size_t n);
void pl_jalloc_free(void *p);

#endif
