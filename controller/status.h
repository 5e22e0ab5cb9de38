/*
 * Printing statuses for `pylon check` and logs.
 *
 * Contract
 * - pl_status_print() writes the compiler's statuses array (compile.h) to out
 *   as YAML documents separated by "---", one per object, the way
 *   `kubectl get -o yaml` shows them (apiVersion, kind, metadata, status; keys
 *   sorted, lists as "- " items at their key's indentation). Deterministic:
 *   same input, same bytes.
 * - pl_yaml_emit() writes any JSON value as block YAML at the given indent
 *   (strings quoted whenever a YAML 1.1 reader would not read them back as
 *   the same string).
 * - pl_status_log_problems() logs (warn) one line per unhealthy condition,
 *   "Kind ns/name[ parent|listener]: Type=Status Reason: message", at most
 *   max lines. Returns the number of unhealthy conditions.
 * - No shared state; any thread.
 */
#ifndef PL_STATUS_H
#define PL_STATUS_H

#include <stdio.h>
#include <jansson.h>

void pl_status_print(FILE *out, const json_t *statuses);
void pl_yaml_emit(FILE *out, const json_t *v, int indent);
unsigned pl_status_log_problems(const json_t *statuses, unsigned max);

#endif
