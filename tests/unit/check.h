/*
 * The unit tests' assertion: CHECK(cond) prints where a condition failed and
 * counts it in `fails`; the test goes on, and main() returns non-zero when
 * fails is not 0. One test program per file includes this once.
 */
#ifndef PL_TEST_CHECK_H
#define PL_TEST_CHECK_H

#include <stdio.h>

static int fails;

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
		fails++; \
	} } while (0)

#endif
