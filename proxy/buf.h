/*
 * The one byte buffer of the data plane, and the per-connection byte budget.
 *
 * Layout and invariants (checked by pl_buf_check() in debug paths):
 *   - data == NULL  <=>  cap == 0 (no memory held);
 *   - 0 <= off <= len <= cap;
 *   - unread bytes are data[off, len), free space is data[len, cap);
 *   - an empty buffer (off == len) is rewound to off == len == 0 by
 *     pl_buf_consume(), so steady-state traffic never moves memory;
 *   - cap never exceeds PL_BUF_MAX, and every byte of cap is charged to the
 *     buffer's budget (if it has one) for as long as it is held.
 *
 * Growth: pl_buf_reserve() first compacts (moves unread bytes to the front,
 * which invalidates pointers into the buffer: callers holding spans must not
 * reserve on the same buffer), then grows by doubling. It fails with -ENOBUFS
 * when the budget (or PL_BUF_MAX) would be exceeded and -ENOMEM when malloc
 * fails; the buffer is unchanged on failure.
 *
 * Memory: blocks of exactly PL_BUF_STD bytes are recycled through a small
 * per-thread cache so that connections coming and going do not hit malloc.
 * pl_buf_thread_cleanup() frees the calling thread's cache (worker exit).
 *
 * Threads: a buffer and its budget belong to one worker thread.
 */
#ifndef PL_BUF_H
#define PL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define PL_BUF_STD (16u * 1024)         /* the size almost every buffer has */
#define PL_BUF_MAX (1u * 1024 * 1024)   /* no single buffer is larger */

struct pl_budget {
	size_t used;     /* bytes of buffer capacity currently held */
	size_t limit;    /* hard cap for used; 0 = unlimited */
};

struct pl_buf {
	char *data;
	uint32_t off, len, cap;
	struct pl_budget *budget;   /* may be NULL */
};

static inline void pl_buf_init(struct pl_buf *b, struct pl_budget *budget)
{
	b->data = NULL;
	b->off = b->len = b->cap = 0;
	b->budget = budget;
}

static inline char *pl_buf_rptr(const struct pl_buf *b) { return b->data + b->off; }
static inline size_t pl_buf_size(const struct pl_buf *b) { return b->len - b->off; }
static inline char *pl_buf_wptr(const struct pl_buf *b) { return b->data + b->len; }
static inline size_t pl_buf_space(const struct pl_buf *b) { return b->cap - b->len; }
static inline int pl_buf_empty(const struct pl_buf *b) { return b->off == b->len; }

/* Marks n written bytes (n <= pl_buf_space()). */
static inline void pl_buf_commit(struct pl_buf *b, size_t n)
{
	b->len += (uint32_t)n;
}

/* Drops n unread bytes from the front (n <= pl_buf_size()). */
static inline void pl_buf_consume(struct pl_buf *b, size_t n)
{
	b->off += (uint32_t)n;
	if (b->off == b->len)
		b->off = b->len = 0;
}

/* Appends n bytes; space must have been reserved. */
static inline void pl_buf_put(struct pl_buf *b, const void *p, size_t n)
{
	memcpy(b->data + b->len, p, n);
	b->len += (uint32_t)n;
}

/* Ensures pl_buf_space() >= n. 0, -ENOBUFS (budget/PL_BUF_MAX) or -ENOMEM. */
int pl_buf_reserve(struct pl_buf *b, size_t n);
/* Moves unread bytes to the front. */
void pl_buf_compact(struct pl_buf *b);
/* Releases the memory (unread bytes are lost). The buffer stays usable. */
void pl_buf_free(struct pl_buf *b);
/* Releases the memory if nothing is unread: idle connections hold no buffers. */
static inline void pl_buf_shrink_if_empty(struct pl_buf *b)
{
	if (b->data && b->off == b->len)
		pl_buf_free(b);
}

/*
 * Socket helpers. pl_buf_read_fd() reads at most max bytes (0 = as many as
 * fit) into the free space, reserving PL_BUF_STD first when the buffer holds
 * no memory; returns bytes read, 0 on EOF, -EAGAIN, -ENOBUFS when there is no
 * free space, or -errno. pl_buf_write_fd() writes unread bytes and consumes
 * what was written; returns bytes written (possibly fewer than available),
 * -EAGAIN or -errno.
 */
ssize_t pl_buf_read_fd(struct pl_buf *b, int fd, size_t max);
ssize_t pl_buf_write_fd(struct pl_buf *b, int fd);

/*
 * Makes room to read into (reserving PL_BUF_STD when the buffer holds no
 * memory, compacting when full) for readers other than read(2) (TLS).
 * Returns the free space (> 0), -ENOBUFS or -ENOMEM.
 */
ssize_t pl_buf_read_room(struct pl_buf *b);

/* Appends an HTTP/1.1 chunk header for n bytes ("1f\r\n"); 18 bytes of space must be reserved. */
void pl_buf_put_chunk_head(struct pl_buf *b, size_t n);

void pl_buf_thread_cleanup(void);

#endif
