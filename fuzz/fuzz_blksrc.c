/* Implementation of fuzz_blksrc.h. */
#include "fuzz/fuzz_blksrc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "fuzz/fuzz_util.h"

#define DRAIN_BUF (256u << 10)
#define DRAIN_MAX (UINT64_C(1) << 30)

int fuzz_drain(struct blksrc *src, const uint8_t *expect)
{
	static uint8_t *buf;
	uint64_t produced = 0, prev_end = 0;
	bool unaligned_end = false;

	if (!buf && !(buf = aligned_alloc(4096, DRAIN_BUF)))
		fuzz_fail("out of memory");
	FUZZ_CHECK(src->mapped <= src->size, "mapped %llu > size %llu", (unsigned long long)src->mapped,
		   (unsigned long long)src->size);
	for (;;) {
		uint64_t off = UINT64_MAX;
		ssize_t n = blksrc_read(src, buf, DRAIN_BUF, &off);
		if (n < 0) {
			const char *e = blksrc_error(src);
			FUZZ_CHECK(e && *e, "read error %zd without a message", n);
			return (int)n;
		}
		if (n == 0) {
			FUZZ_CHECK(produced == src->mapped, "the source produced %llu bytes, it announced %llu",
				   (unsigned long long)produced, (unsigned long long)src->mapped);
			return 0;
		}
		FUZZ_CHECK((size_t)n <= DRAIN_BUF, "read %zd bytes into %u", n, DRAIN_BUF);
		FUZZ_CHECK(!unaligned_end, "an extent follows one that ended off a block boundary");
		FUZZ_CHECK(off % 4096 == 0, "extent at %llu", (unsigned long long)off);
		FUZZ_CHECK(off >= prev_end, "extent at %llu before the previous end %llu", (unsigned long long)off,
			   (unsigned long long)prev_end);
		FUZZ_CHECK(off + (uint64_t)n <= src->size, "extent [%llu, +%zd) beyond the size %llu",
			   (unsigned long long)off, n, (unsigned long long)src->size);
		if (expect)
			FUZZ_CHECK(memcmp(buf, expect + off, (size_t)n) == 0, "wrong bytes in the extent at %llu",
				   (unsigned long long)off);
		prev_end = off + (uint64_t)n;
		unaligned_end = prev_end % 4096 != 0;
		produced += (uint64_t)n;
		if (produced >= DRAIN_MAX)
			return 0;
	}
}
