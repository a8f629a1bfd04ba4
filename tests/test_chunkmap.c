/* stages/chunkmap.c: the window arithmetic (multiples of the chunk size, split at CHUNK_HEAD so
 * the held-back first MiB is a window of its own), the streaming per-window hasher (one record
 * per window, in order, with the XXH3-128 of exactly the bytes fed and the end of the last one;
 * a callback's error stops the feed and is returned) and the extent list (contiguous ranges
 * merged, the array grown as needed). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/testutil.h"
#include "blkio/chunkmap.h"
#include "util/macro.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

Test(chunkmap, window_bounds)
{
	static const struct {
		uint64_t off, cs, start, end;
	} cases[] = {
		/* chunk size a divisor of 1 MiB: plain multiples */
		{ 0, 256 * KiB, 0, 256 * KiB },
		{ 256 * KiB - 1, 256 * KiB, 0, 256 * KiB },
		{ 256 * KiB, 256 * KiB, 256 * KiB, 512 * KiB },
		{ MiB - 1, 256 * KiB, 768 * KiB, MiB },
		{ MiB, 256 * KiB, MiB, MiB + 256 * KiB },
		/* chunk size 4 MiB: [0, 1M) is the head, then [1M, 4M), then multiples of 4M */
		{ 0, 4 * MiB, 0, MiB },
		{ MiB - 1, 4 * MiB, 0, MiB },
		{ MiB, 4 * MiB, MiB, 4 * MiB },
		{ 3 * MiB + 5, 4 * MiB, MiB, 4 * MiB },
		{ 4 * MiB - 1, 4 * MiB, MiB, 4 * MiB },
		{ 4 * MiB, 4 * MiB, 4 * MiB, 8 * MiB },
		{ 9 * MiB + 7, 4 * MiB, 8 * MiB, 12 * MiB },
		/* chunk size 1 MiB: the head is simply the first window */
		{ 0, MiB, 0, MiB },
		{ MiB, MiB, MiB, 2 * MiB },
		/* chunk size 3 MiB (not a power of two): [0,1M) [1M,3M) [3M,6M) */
		{ 512 * KiB, 3 * MiB, 0, MiB },
		{ 2 * MiB, 3 * MiB, MiB, 3 * MiB },
		{ 3 * MiB, 3 * MiB, 3 * MiB, 6 * MiB },
		/* far out on a large stick */
		{ UINT64_C(1) << 40, 8 * MiB, UINT64_C(1) << 40, (UINT64_C(1) << 40) + 8 * MiB },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		cr_assert_eq(chunk_window_start(cases[i].off, cases[i].cs), cases[i].start, "case %zu", i);
		cr_assert_eq(chunk_window_end(cases[i].off, cases[i].cs), cases[i].end, "case %zu", i);
	}
}

Test(chunkmap, windows_tile_the_device)
{
	/* consecutive windows touch, never overlap, and every offset lies in its window */
	const uint64_t sizes[] = { 64 * KiB, 512 * KiB, MiB, 3 * MiB, 4 * MiB };
	for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
		uint64_t cs = sizes[k], off = 0;
		while (off < 20 * MiB) {
			uint64_t s = chunk_window_start(off, cs), e = chunk_window_end(off, cs);
			cr_assert_eq(s, off, "cs %llu: window at %llu starts at %llu", (unsigned long long)cs,
				     (unsigned long long)off, (unsigned long long)s);
			cr_assert(e > s);
			cr_assert_eq(chunk_window_start(e - 1, cs), s);
			cr_assert_eq(chunk_window_end(e - 1, cs), e);
			cr_assert(!(s < MiB && e > MiB), "no window straddles the head boundary");
			off = e;
		}
	}
}

struct rec {
	struct wchunk c[64];
	size_t n;
	int fail_at; /* return -EIO for the record with this index; -1: never */
};

static int record(void *ud, const struct wchunk *c)
{
	struct rec *r = ud;
	if ((int)r->n == r->fail_at)
		return -EIO;
	cr_assert(r->n < ARRAY_SIZE(r->c));
	r->c[r->n++] = *c;
	return 0;
}

static void expect_hash(const struct wchunk *c, const void *p, size_t n)
{
	XXH128_canonical_t want;
	XXH128_canonicalFromHash(&want, XXH3_128bits(p, n));
	cr_assert(memcmp(c->hash, want.digest, 16) == 0, "window at %llu: hash differs", (unsigned long long)c->off);
}

Test(chunkmap, one_record_per_window_with_its_hash)
{
	const uint64_t cs = 2 * MiB;
	const size_t len = 5 * MiB + 1000; /* windows [0,1M) [1M,2M) [2M,4M) [4M,5M+1000) */
	uint8_t *d = malloc(len);
	cr_assert(d);
	tu_fill_pattern(d, len, 11);
	struct rec r = { .fail_at = -1 };
	struct chunk_hasher h;

	cr_assert_eq(chunk_hasher_init(&h, cs, record, &r), 0);
	/* fed in uneven pieces that straddle the window boundaries */
	const size_t pieces[] = { 4096, MiB - 4096 + 512, 3 * MiB, len - MiB - 512 - 3 * MiB };
	uint64_t off = 0;
	for (size_t i = 0; i < ARRAY_SIZE(pieces); i++) {
		cr_assert_eq(chunk_hasher_feed(&h, off, d + off, pieces[i]), 0);
		off += pieces[i];
	}
	cr_assert_eq(off, len);
	cr_assert_eq(r.n, 3, "the last window is completed only by the flush");
	cr_assert_eq(chunk_hasher_flush(&h), 0);
	cr_assert_eq(r.n, 4);
	const uint64_t starts[] = { 0, MiB, 2 * MiB, 4 * MiB };
	const uint64_t ends[] = { MiB, 2 * MiB, 4 * MiB, len };
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(r.c[i].off, starts[i], "window %zu", i);
		cr_assert_eq(r.c[i].data_end, ends[i], "window %zu", i);
		expect_hash(&r.c[i], d + starts[i], ends[i] - starts[i]);
	}
	/* a second flush has no window to complete */
	cr_assert_eq(chunk_hasher_flush(&h), 0);
	cr_assert_eq(r.n, 4);
	chunk_hasher_done(&h);
	chunk_hasher_done(&h); /* idempotent */
	free(d);
}

Test(chunkmap, gaps_skip_windows_and_hash_only_what_was_fed)
{
	/* a sparse image: data at [0, 8K), nothing until [5M, 5M+4K) */
	const uint64_t cs = MiB;
	uint8_t a[8192], b[4096];
	tu_fill_pattern(a, sizeof(a), 1);
	tu_fill_pattern(b, sizeof(b), 2);
	struct rec r = { .fail_at = -1 };
	struct chunk_hasher h;

	cr_assert_eq(chunk_hasher_init(&h, cs, record, &r), 0);
	cr_assert_eq(chunk_hasher_feed(&h, 0, a, sizeof(a)), 0);
	cr_assert_eq(chunk_hasher_feed(&h, 5 * MiB, b, sizeof(b)), 0);
	cr_assert_eq(chunk_hasher_flush(&h), 0);
	cr_assert_eq(r.n, 2, "windows with no data have no record");
	cr_assert_eq(r.c[0].off, 0);
	cr_assert_eq(r.c[0].data_end, sizeof(a));
	expect_hash(&r.c[0], a, sizeof(a));
	cr_assert_eq(r.c[1].off, 5 * MiB);
	cr_assert_eq(r.c[1].data_end, 5 * MiB + sizeof(b));
	expect_hash(&r.c[1], b, sizeof(b));
	chunk_hasher_done(&h);
}

Test(chunkmap, same_bytes_same_hash_one_bit_differs)
{
	uint8_t d[4096];
	tu_fill_pattern(d, sizeof(d), 5);
	struct rec r = { .fail_at = -1 };
	struct chunk_hasher h;

	cr_assert_eq(chunk_hasher_init(&h, MiB, record, &r), 0);
	cr_assert_eq(chunk_hasher_feed(&h, 2 * MiB, d, sizeof(d)), 0);
	cr_assert_eq(chunk_hasher_feed(&h, 3 * MiB, d, sizeof(d)), 0);
	d[100] ^= 1;
	cr_assert_eq(chunk_hasher_feed(&h, 4 * MiB, d, sizeof(d)), 0);
	cr_assert_eq(chunk_hasher_flush(&h), 0);
	cr_assert_eq(r.n, 3);
	cr_assert(memcmp(r.c[0].hash, r.c[1].hash, 16) == 0, "the hash is of the bytes, not the offset");
	cr_assert(memcmp(r.c[1].hash, r.c[2].hash, 16) != 0);
	chunk_hasher_done(&h);
}

Test(chunkmap, callback_error_stops_the_feed)
{
	const size_t len = 4 * MiB;
	uint8_t *d = malloc(len);
	cr_assert(d);
	tu_fill_pattern(d, len, 3);
	struct rec r = { .fail_at = 1 }; /* the second window's record fails */
	struct chunk_hasher h;

	cr_assert_eq(chunk_hasher_init(&h, MiB, record, &r), 0);
	cr_assert_eq(chunk_hasher_feed(&h, 0, d, len), -EIO);
	cr_assert_eq(r.n, 1, "only the first window was recorded");
	cr_assert_eq(r.c[0].off, 0);
	chunk_hasher_done(&h);

	/* the error of the flush itself */
	r = (struct rec){ .fail_at = 0 };
	cr_assert_eq(chunk_hasher_init(&h, MiB, record, &r), 0);
	cr_assert_eq(chunk_hasher_feed(&h, 0, d, 4096), 0);
	cr_assert_eq(chunk_hasher_flush(&h), -EIO);
	cr_assert_eq(r.n, 0);
	chunk_hasher_done(&h);
	free(d);
}

Test(chunkmap, no_callback_and_nothing_fed)
{
	uint8_t d[4096] = { 0 };
	struct chunk_hasher h;

	cr_assert_eq(chunk_hasher_init(&h, MiB, NULL, NULL), 0);
	cr_assert_eq(chunk_hasher_flush(&h), 0, "nothing fed: nothing to complete");
	cr_assert_eq(chunk_hasher_feed(&h, 0, d, sizeof(d)), 0);
	cr_assert_eq(chunk_hasher_feed(&h, 2 * MiB, d, sizeof(d)), 0);
	cr_assert_eq(chunk_hasher_feed(&h, 2 * MiB + sizeof(d), d, 0), 0, "an empty piece");
	cr_assert_eq(chunk_hasher_flush(&h), 0);
	chunk_hasher_done(&h);
}

Test(chunkmap, extents_merge_when_contiguous)
{
	struct wextent *e = NULL;
	size_t n = 0, cap = 0;

	cr_assert_eq(wextent_append(&e, &n, &cap, MiB, 4096), 0);
	cr_assert_eq(wextent_append(&e, &n, &cap, MiB + 4096, 8192), 0); /* touches: merged */
	cr_assert_eq(n, 1);
	cr_assert_eq(e[0].off, MiB);
	cr_assert_eq(e[0].len, 12288);
	cr_assert_eq(wextent_append(&e, &n, &cap, 2 * MiB, 4096), 0); /* a gap: a new extent */
	cr_assert_eq(wextent_append(&e, &n, &cap, MiB, 4096), 0);     /* before the last: a new one too */
	cr_assert_eq(n, 3);
	cr_assert_eq(e[1].off, 2 * MiB);
	cr_assert_eq(e[1].len, 4096);
	cr_assert_eq(e[2].off, MiB);
	cr_assert_eq(e[2].len, 4096);
	cr_assert_eq(cap, 16);
	free(e);
}

Test(chunkmap, extents_grow_past_the_first_allocation)
{
	struct wextent *e = NULL;
	size_t n = 0, cap = 0;

	for (uint64_t i = 0; i < 100; i++)
		cr_assert_eq(wextent_append(&e, &n, &cap, i * 2 * 4096, 4096), 0);
	cr_assert_eq(n, 100);
	cr_assert_eq(cap, 128, "16, 32, 64, 128");
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(e[i].off, i * 2 * 4096);
		cr_assert_eq(e[i].len, 4096);
	}
	free(e);
}
