#define _GNU_SOURCE /* accept4, pipe2 */
#include "pl.h"
#include "buf.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Per-thread cache of PL_BUF_STD blocks. A proxied request touches up to four
 * buffers; recycling them keeps malloc off the accept/close path.
 */
#define CACHE_MAX 256

struct cached { struct cached *next; };

static __thread struct cached *cache;
static __thread unsigned n_cached;

static char *block_get(size_t size)
{
	if (size == PL_BUF_STD && cache) {
		struct cached *c = cache;
		cache = c->next;
		n_cached--;
		return (char *)c;
	}
	return malloc(size);
}

static void block_put(char *p, size_t size)
{
	if (size == PL_BUF_STD && n_cached < CACHE_MAX) {
		struct cached *c = (struct cached *)(void *)p;
		c->next = cache;
		cache = c;
		n_cached++;
		return;
	}
	free(p);
}

void pl_buf_thread_cleanup(void)
{
	while (cache) {
		struct cached *c = cache;
		cache = c->next;
		free(c);
	}
	n_cached = 0;
}

void pl_buf_compact(struct pl_buf *b)
{
	if (b->off == 0)
		return;
	size_t n = b->len - b->off;
	if (n)
		memmove(b->data, b->data + b->off, n);
	b->off = 0;
	b->len = (uint32_t)n;
}

int pl_buf_reserve(struct pl_buf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return 0;
	size_t used = b->len - b->off;
	if (b->cap - used >= n) {
		pl_buf_compact(b);
		return 0;
	}
	size_t want = used + n;
	if (want > PL_BUF_MAX)
		return -ENOBUFS;
	size_t cap = b->cap ? b->cap : PL_BUF_STD;
	while (cap < want)
		cap *= 2;
	if (cap > PL_BUF_MAX)
		cap = PL_BUF_MAX;
	size_t extra = cap - b->cap;
	if (b->budget && b->budget->limit && b->budget->used + extra > b->budget->limit)
		return -ENOBUFS;
	char *p = block_get(cap);
	if (!p)
		return -ENOMEM;
	if (used)
		memcpy(p, b->data + b->off, used);
	if (b->data)
		block_put(b->data, b->cap);
	b->data = p;
	b->off = 0;
	b->len = (uint32_t)used;
	b->cap = (uint32_t)cap;
	if (b->budget)
		b->budget->used += extra;
	return 0;
}

void pl_buf_free(struct pl_buf *b)
{
	if (b->data) {
		block_put(b->data, b->cap);
		if (b->budget)
			b->budget->used -= b->cap;
	}
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

ssize_t pl_buf_read_room(struct pl_buf *b)
{
	if (!b->data) {
		int rc = pl_buf_reserve(b, PL_BUF_STD);
		if (rc)
			return rc;
	}
	if (b->len == b->cap)
		pl_buf_compact(b);
	size_t room = b->cap - b->len;
	return room ? (ssize_t)room : -ENOBUFS;
}

void pl_buf_put_chunk_head(struct pl_buf *b, size_t n)
{
	char t[20];
	int i = 18;
	t[18] = '\r';
	t[19] = '\n';
	do {
		t[--i] = "0123456789abcdef"[n & 15];
		n >>= 4;
	} while (n);
	pl_buf_put(b, t + i, (size_t)(20 - i));
}

ssize_t pl_buf_read_fd(struct pl_buf *b, int fd, size_t max)
{
	ssize_t rr = pl_buf_read_room(b);
	if (rr < 0)
		return rr;
	size_t room = (size_t)rr;
	if (max && room > max)
		room = max;
	for (;;) {
		ssize_t n = read(fd, b->data + b->len, room);
		if (n > 0) {
			b->len += (uint32_t)n;
			return n;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

ssize_t pl_buf_write_fd(struct pl_buf *b, int fd)
{
	size_t n = b->len - b->off;
	if (n == 0)
		return 0;
	for (;;) {
		/* send(MSG_NOSIGNAL): a peer that went away is an error, not a signal */
		ssize_t w = send(fd, b->data + b->off, n, MSG_NOSIGNAL);
		if (w >= 0) {
			pl_buf_consume(b, (size_t)w);
			return w;
		}
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}
