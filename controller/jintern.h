/*
 * Hash-consing of JSON values: equal strings, numbers, arrays and objects
 * become one shared, reference-counted json_t. Kubernetes objects repeat
 * most of their values (group and kind names, namespaces, parentRefs,
 * matches, backendRefs, conditions): the Kubernetes store keeps its objects
 * interned, and the compiler's statuses are interned between compiles, so a
 * value held by thousands of objects is held once (docs/kubernetes.md,
 * "Memory").
 *
 * Contract
 * - An interned value is immutable: neither it nor anything below it may be
 *   modified (json_object_set, json_array_append, json_string_set, ...) by
 *   anyone, since other objects may hold the same value. Copy first
 *   (json_copy for a shallow, json_deep_copy for a deep copy) to change one.
 *   Code that only reads, compares (json_equal: pointer-equal values compare
 *   at once) or dumps an interned value needs nothing special.
 * - pl_jintern() takes v (the reference is consumed) and returns a new
 *   reference to the canonical value equal to it: a shallow copy of v made
 *   on the long-lived heap (jalloc.h; now interned) when nothing equal was
 *   interned yet, else the older value. Members of a
 *   container are interned first, in place; v must therefore not be shared
 *   with code that expects it unchanged (a freshly parsed tree is fine).
 *   Objects are equal when they have the same keys in the same order with
 *   equal values (jansson keeps insertion order). true, false and null are
 *   jansson singletons and come back as they are. NULL in, NULL out.
 * - pl_jintern_members() interns the members of object or array v in place,
 *   leaving v itself unshared (and its own members replaceable).
 * - The table holds a reference to every value it knows; pl_jintern_gc()
 *   drops those nobody else holds any more and returns how many remain. It
 *   runs by itself as the table grows (amortised O(1) per value interned);
 *   call it when idle to give memory back sooner.
 * - One thread at a time per table. Allocation failure is fatal.
 */
#ifndef PL_JINTERN_H
#define PL_JINTERN_H

#include <stddef.h>
#include <jansson.h>

struct pl_jintern;

struct pl_jintern *pl_jintern_new(void);
void pl_jintern_free(struct pl_jintern *t);          /* NULL ok; values stay valid while referenced */
json_t *pl_jintern(struct pl_jintern *t, json_t *v);
void pl_jintern_members(struct pl_jintern *t, json_t *v);
size_t pl_jintern_gc(struct pl_jintern *t);
size_t pl_jintern_size(const struct pl_jintern *t);   /* values in the table */

#endif
