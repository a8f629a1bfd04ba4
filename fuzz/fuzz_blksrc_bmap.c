/* libFuzzer target: the bmap-filtered block source (image/src_bmap.c over the raw, gzip, xz
 * and zstd sources). At start a fixed image (IMAGE_SIZE bytes: data with zero holes, not a
 * whole number of blocks) is written raw and compressed with zlib, liblzma and libzstd into a
 * private folder. The input's first byte picks the image (raw, .gz, .xz, .zst), the rest is
 * the .bmap written beside it; the image is opened with blksrc_open_image() and read to the
 * end. Properties: fuzz_drain's, and every byte produced is the image's byte at that offset. */
#include <errno.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "fuzz/fuzz_blksrc.h"
#include "fuzz/fuzz_util.h"

#define IMAGE_SIZE 300000

static uint8_t image[IMAGE_SIZE];
static const char *const names[4] = { "disk.img", "disk.img.gz", "disk.img.xz", "disk.img.zst" };
static char *paths[4], *bmaps[4];

static size_t gzip_image(uint8_t *out, size_t cap)
{
	z_stream z = { 0 };
	FUZZ_CHECK(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
	z.next_in = image;
	z.avail_in = IMAGE_SIZE;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
	size_t n = cap - z.avail_out;
	deflateEnd(&z);
	return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t cap = IMAGE_SIZE * 2 + 65536, n;
	_cleanup_free_ uint8_t *out = malloc(cap);

	FUZZ_CHECK(out, "out of memory");
	/* Data in 4 KiB blocks 0-9, 20-21, 40-60 and the partial tail, zeros elsewhere. */
	for (size_t i = 0; i < IMAGE_SIZE; i++) {
		size_t b = i / 4096;
		bool has_data = b < 10 || (b >= 20 && b < 22) || (b >= 40 && b <= 60) || b >= 73;
		image[i] = has_data ? (uint8_t)((i * 2654435761u) >> 13) : 0;
	}
	for (int k = 0; k < 4; k++) {
		paths[k] = fuzz_path(names[k]);
		if (asprintf(&bmaps[k], "%s.bmap", paths[k]) < 0)
			fuzz_fail("out of memory");
	}
	fuzz_write_file(paths[0], image, IMAGE_SIZE);
	fuzz_write_file(paths[1], out, gzip_image(out, cap));
	n = 0;
	FUZZ_CHECK(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, NULL, image, IMAGE_SIZE, out, &n, cap) == LZMA_OK,
		   "lzma_easy_buffer_encode");
	fuzz_write_file(paths[2], out, n);
	n = ZSTD_compress(out, cap, image, IMAGE_SIZE, 3);
	FUZZ_CHECK(!ZSTD_isError(n), "ZSTD_compress");
	fuzz_write_file(paths[3], out, n);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int k = size ? data[0] % 4 : 0;
	_cleanup_free_ char *err = NULL;
	struct blksrc *src = NULL;

	fuzz_write_file(bmaps[k], size ? data + 1 : data, size ? size - 1 : 0);
	int r = blksrc_open_image(paths[k], &src, &err);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM, "blksrc_open_image returned %d", r);
		FUZZ_CHECK(r == -ENOMEM || (err && *err), "refused (%d) without a message", r);
		return 0;
	}
	FUZZ_CHECK(!err, "opened with an error message: %s", err);
	FUZZ_CHECK(src->size == IMAGE_SIZE, "size %llu", (unsigned long long)src->size);
	r = fuzz_drain(src, image);
	FUZZ_CHECK(r == 0, "reading the image through its bmap failed: %s", blksrc_error(src));
	blksrc_free(src);
	return 0;
}
