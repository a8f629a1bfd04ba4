/* libFuzzer target: the bmap XML parser (image/src_bmap.c bmap_parse), the input being the
 * .bmap text. Properties: accepted or refused with a reason, never a crash, hang or leak; an
 * accepted map is what the bmap source relies on: ranges sorted, disjoint, each non-empty,
 * starting on a 4096-byte boundary, ending on one or at ImageSize, and within ImageSize. */
#include <errno.h>
#include <stdlib.h>

#include "fuzz/fuzz_util.h"
#include "image/src_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_free_ char *why = NULL;
	_cleanup_free_ uint64_t *rg = NULL;
	uint64_t image_size = 0;
	size_t n = 0;

	int r = bmap_parse((const char *)data, size, &image_size, &rg, &n, &why);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM, "bmap_parse returned %d", r);
		FUZZ_CHECK(r == -ENOMEM || (why && *why), "refused without a reason");
		return 0;
	}
	FUZZ_CHECK(n == 0 || rg, "ranges missing");
	for (size_t i = 0; i < n; i++) {
		uint64_t s = rg[2 * i], e = rg[2 * i + 1];
		FUZZ_CHECK(s < e, "range %zu is empty or reversed: [%llu, %llu)", i, (unsigned long long)s,
			   (unsigned long long)e);
		FUZZ_CHECK(e <= image_size, "range %zu ends at %llu beyond ImageSize %llu", i, (unsigned long long)e,
			   (unsigned long long)image_size);
		FUZZ_CHECK(s % 4096 == 0, "range %zu starts at %llu", i, (unsigned long long)s);
		FUZZ_CHECK(e % 4096 == 0 || e == image_size, "range %zu ends at %llu", i, (unsigned long long)e);
		FUZZ_CHECK(i == 0 || s > rg[2 * i - 1], "range %zu overlaps or touches the one before", i);
	}
	return 0;
}
