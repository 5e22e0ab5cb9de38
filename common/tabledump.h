/*
 * The compiled table as JSON, for GET /config and tests (issue 4: made on
 * demand instead of by every compile).
 *
 * Contract
 * - pl_table_json() writes t (table-t.h) as a JSON document: binds with their
 *   listeners and vhosts, each vhost's entries as [rule id, match index]
 *   pairs in precedence order; every rule once under "rules" (ids index
 *   table->rules); clusters with their endpoints and backend TLS. Strings that
 *   are not valid UTF-8 are written with '?' for every byte >= 0x80.
 *   Deterministic: the same table, the same bytes.
 * - Returns a malloc'd NUL-terminated string (its length in *len when len is
 *   not NULL), or NULL when memory runs out. Reads t only: any thread that
 *   holds a reference.
 */
#ifndef PL_TABLEDUMP_H
#define PL_TABLEDUMP_H

#include <stddef.h>

struct pl_table;

char *pl_table_json(const struct pl_table *t, size_t *len);

#endif
