/*
 * Bind results: which listening sockets the proxy really holds.
 *
 * The controller reports a Gateway Programmed only once the proxy has bound
 * its listeners; proxy/ and controller/ never include each other, so they
 * meet here (additive to table.h's publication).
 *
 * Contract
 * - pl_bindreg_set() is called by the proxy (worker 0) after trying to open
 *   the socket of a bind (address as in struct pl_bind, port): ok = 1 with
 *   err = 0, or ok = 0 with the errno. pl_bindreg_clear() when it closes it.
 *   Both call the change hook (if any) when the recorded state changed.
 * - pl_bindreg_get() returns PL_BIND_UNKNOWN (never reported or cleared),
 *   PL_BIND_OK or PL_BIND_FAILED (with *err set when err is not NULL).
 * - pl_bindreg_on_change() registers the one hook (NULL removes it); it runs
 *   on the reporting thread without the registry lock held and must only wake
 *   its owner (e.g. curl_multi_wakeup).
 * - Any thread; a mutex guards the registry. At most PL_BINDREG_MAX binds are
 *   remembered (more are reported as UNKNOWN).
 */
#ifndef PL_BINDREG_H
#define PL_BINDREG_H

#include <stdint.h>

#define PL_BINDREG_MAX 4096

enum pl_bind_state { PL_BIND_UNKNOWN = 0, PL_BIND_OK, PL_BIND_FAILED };

void pl_bindreg_set(const char *address, uint16_t port, int ok, int err);
void pl_bindreg_clear(const char *address, uint16_t port);
enum pl_bind_state pl_bindreg_get(const char *address, uint16_t port, int *err);
void pl_bindreg_on_change(void (*fn)(void *data), void *data);

#endif
