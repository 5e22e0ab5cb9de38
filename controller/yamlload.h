/*
 * YAML manifests to jansson values, typed the way Kubernetes reads them.
 *
 * Contract
 * - pl_yaml_load() parses buf[0..len) (UTF-8/16, one or more "---" separated
 *   documents) with libyaml's event API. Every document that is not empty or
 *   null is handed to fn(doc, line, data, err, errlen) in file order; fn owns
 *   the reference it gets. line is the 1-based line where the document starts.
 * - Plain scalars are typed as YAML 1.1 (go-yaml v2, which Kubernetes uses):
 *   null/Null/NULL/~/empty -> null; true/yes/on/y (any of their usual cases) and
 *   the false forms -> bool; decimal/0x/0b/leading-0 octal integers (with '_')
 *   -> integer; floats -> real. .inf/.nan have no JSON form and stay strings.
 *   Quoted, literal and folded scalars, and the !!str tag, are strings.
 *   Mapping keys are always strings (their source text).
 * - Hostile input: at most PL_YAML_MAX_BYTES of input, PL_YAML_MAX_DEPTH nested
 *   collections, PL_YAML_MAX_NODES nodes per call; aliases are rejected (no
 *   "billion laughs"), as are duplicate keys, non-scalar keys and NUL inside
 *   strings.
 * - Returns 0, or -1 with a message "fname:line:column: why" in err (when fn
 *   fails, its own message is kept). Documents passed to fn before an error
 *   stay with fn's owner. Thread-safe (no shared state).
 */
#ifndef PL_YAMLLOAD_H
#define PL_YAMLLOAD_H

#include <stddef.h>
#include <jansson.h>

#define PL_YAML_MAX_BYTES (16u << 20)
#define PL_YAML_MAX_DEPTH 64
#define PL_YAML_MAX_NODES 1000000u

typedef int (*pl_yaml_doc_fn)(json_t *doc, unsigned line, void *data, char *err, size_t errlen);

int pl_yaml_load(const char *buf, size_t len, const char *fname, pl_yaml_doc_fn fn, void *data,
		 char *err, size_t errlen);

/* Types one plain scalar as pl_yaml_load() does; new reference, NULL on OOM. Exposed for tests. */
json_t *pl_yaml_plain_scalar(const char *s, size_t n);

#endif
