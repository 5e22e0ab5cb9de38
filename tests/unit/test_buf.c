/*
 * Unit tests for proxy/buf.c: the buffer invariants, growth, the budget,
 * and the socket helpers over a socketpair.
 */
#include "common/pl.h"

#include "proxy/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include "check.h"

static void check_invariants(const struct pl_buf *b)
{
	CHECK((b->data == NULL) == (b->cap == 0));
	CHECK(b->off <= b->len && b->len <= b->cap);
	CHECK(b->cap <= PL_BUF_MAX);
}

static void test_basic(void)
{
	struct pl_buf b;
	pl_buf_init(&b, NULL);
	check_invariants(&b);
	CHECK(pl_buf_empty(&b) && pl_buf_space(&b) == 0);
	CHECK(pl_buf_reserve(&b, 10) == 0);
	CHECK(b.cap == PL_BUF_STD);
	pl_buf_put(&b, "hello world", 11);
	CHECK(pl_buf_size(&b) == 11);
	pl_buf_consume(&b, 6);
	CHECK(pl_buf_size(&b) == 5 && memcmp(pl_buf_rptr(&b), "world", 5) == 0);
	check_invariants(&b);
	pl_buf_consume(&b, 5);
	CHECK(b.off == 0 && b.len == 0);   /* rewound when emptied */

	/* reserve compacts before it grows */
	b.off = b.len = PL_BUF_STD - 4;
	memcpy(b.data + b.off, "abcd", 4);
	b.len = PL_BUF_STD;
	CHECK(pl_buf_reserve(&b, 100) == 0);
	CHECK(b.cap == PL_BUF_STD && b.off == 0 && pl_buf_size(&b) == 4);
	CHECK(memcmp(pl_buf_rptr(&b), "abcd", 4) == 0);

	/* growth keeps content, doubles */
	CHECK(pl_buf_reserve(&b, PL_BUF_STD) == 0);
	CHECK(b.cap == 2 * PL_BUF_STD && memcmp(pl_buf_rptr(&b), "abcd", 4) == 0);
	check_invariants(&b);
	CHECK(pl_buf_reserve(&b, PL_BUF_MAX) == -ENOBUFS);
	pl_buf_free(&b);
	check_invariants(&b);
	CHECK(b.data == NULL);
}

static void test_budget(void)
{
	struct pl_budget bud = { 0, 2 * PL_BUF_STD };
	struct pl_buf a, b;
	pl_buf_init(&a, &bud);
	pl_buf_init(&b, &bud);
	CHECK(pl_buf_reserve(&a, 1) == 0 && bud.used == PL_BUF_STD);
	CHECK(pl_buf_reserve(&b, 1) == 0 && bud.used == 2 * PL_BUF_STD);
	pl_buf_put(&a, "x", 1);
	CHECK(pl_buf_reserve(&a, PL_BUF_STD) == -ENOBUFS);   /* would need 32 KiB more */
	CHECK(pl_buf_size(&a) == 1 && a.cap == PL_BUF_STD);  /* unchanged on failure */
	pl_buf_free(&b);
	CHECK(bud.used == PL_BUF_STD);
	CHECK(pl_buf_reserve(&a, PL_BUF_STD) == 0 && bud.used == 2 * PL_BUF_STD);
	pl_buf_consume(&a, 1);
	pl_buf_shrink_if_empty(&a);
	CHECK(a.data == NULL && bud.used == 0);
}

static void test_fd(void)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	struct pl_buf in, out;
	pl_buf_init(&in, NULL);
	pl_buf_init(&out, NULL);
	CHECK(pl_buf_read_fd(&in, sv[0], 0) == -EAGAIN);
	CHECK(pl_buf_reserve(&out, 5) == 0);
	pl_buf_put(&out, "12345", 5);
	CHECK(pl_buf_write_fd(&out, sv[1]) == 5 && pl_buf_empty(&out));
	CHECK(pl_buf_read_fd(&in, sv[0], 2) == 2);
	CHECK(pl_buf_read_fd(&in, sv[0], 0) == 3);
	CHECK(pl_buf_size(&in) == 5 && memcmp(pl_buf_rptr(&in), "12345", 5) == 0);
	/* a full buffer reports -ENOBUFS instead of reading */
	in.off = 0;
	in.len = in.cap;
	CHECK(pl_buf_read_fd(&in, sv[0], 0) == -ENOBUFS);
	close(sv[1]);
	pl_buf_consume(&in, pl_buf_size(&in));
	CHECK(pl_buf_read_fd(&in, sv[0], 0) == 0);   /* EOF */
	close(sv[0]);
	pl_buf_free(&in);
	pl_buf_free(&out);
	pl_buf_thread_cleanup();
}

int main(void)
{
	test_basic();
	test_budget();
	test_fd();
	if (fails) {
		fprintf(stderr, "test_buf: %d failure(s)\n", fails);
		return 1;
	}
	printf("test_buf: ok\n");
	return 0;
}
