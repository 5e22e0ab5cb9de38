/*
 * Manifest files on disk (standalone mode): which files, whether they changed,
 * and loading them into a store.
 *
 * Contract
 * - A manifest path is a regular file (read whatever its name), or a directory
 *   walked recursively (at most PL_MANIFESTS_MAX_DEPTH levels) for *.yaml,
 *   *.yml and *.json files, in byte order of their paths. Entries whose name
 *   starts with '.' are skipped: that is how a ConfigMap volume's "..data"
 *   symlink farm is read once, and editors' swap files are never read.
 * - At most PL_MANIFESTS_MAX_FILES files and PL_MANIFESTS_MAX_BYTES in total.
 * - pl_manifests_signature(): a 64-bit digest of the file list and each
 *   file's inode, size and mtime (ns). Changes when anything we would read
 *   changes. 0 and *sig, or -1 with a reason in err.
 * - pl_manifests_load(): loads every file into s (store.h). Returns the number
 *   of files read, or -1 with "file:line:column: why" (or "path: why") in err.
 * - pl_manifests_read_file(): a whole file (any file: kubeconf.c reads
 *   credentials with it) into a NUL-terminated malloc'd *out of *len bytes,
 *   at most max bytes. 0, or -errno: -EFBIG when the file is larger than max,
 *   -ENOMEM. The caller frees *out.
 * - No shared state; any thread.
 */
#ifndef PL_MANIFESTS_H
#define PL_MANIFESTS_H

#include <stddef.h>
#include <stdint.h>

#define PL_MANIFESTS_MAX_DEPTH 16
#define PL_MANIFESTS_MAX_FILES 10000
#define PL_MANIFESTS_MAX_BYTES (64u << 20)

struct pl_store;

int pl_manifests_signature(const char *path, uint64_t *sig, char *err, size_t errlen);
int pl_manifests_load(const char *path, struct pl_store *s, char *err, size_t errlen);
int pl_manifests_read_file(const char *path, size_t max, char **out, size_t *len);

#endif
