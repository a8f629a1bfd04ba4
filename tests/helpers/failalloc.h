/* A failing allocator for the out-of-memory tests (libuv's test-loop-oom.c, sqlite's and curl's
 * OOM loops). A suite registered with uf_test(… FAILALLOC) links helpers/failalloc.c and
 * -Wl,--wrap for malloc, calloc, realloc, reallocarray, strdup, strndup, asprintf, vasprintf and
 * realpath: every call of those from the suite's own code and the project's libraries goes
 * through a wrapper that counts it and, when armed, fails the n-th one (NULL or -1, errno
 * ENOMEM). Allocations inside shared libraries (libc's own, criterion's) are not counted.
 *
 *   FAILALLOC_LOOP(k) {            // k = 1, 2, …: fail the k-th allocation of the body
 *           r = thing_under_test(…);
 *           …assert r == 0 (result as without failure) or r == -ENOMEM…
 *   }                              // ends after the first run that made fewer than k allocations
 */
#pragma once

#include <stdbool.h>

/* Fail the n-th counted allocation from now on (1: the next one); 0 disarms. */
void failalloc_arm(unsigned n);
/* Disarm; returns whether the armed failure happened. */
bool failalloc_disarm(void);

#define FAILALLOC_LOOP(k)                                                                                              \
	for (unsigned k = 1, k##_more = 1; k##_more; k##_more = failalloc_disarm(), k++)                               \
		for (int k##_once = (failalloc_arm(k), 1); k##_once; k##_once = 0)
