/* libFuzzer target: a compressed image source (image/src_gzip.c, src_xz.c, src_zstd.c) on a
 * mutated image. Built once per format (UF_FUZZ_FORMAT: 1 gzip, 2 xz, 3 zstd): the input's
 * first bytes are replaced by that format's magic, the bytes are written as an image file in
 * a private folder, opened with blksrc_open_image() and read to the end through the blksrc
 * API (fuzz_drain's properties). A refusal must come with a message. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_blksrc.h"
#include "fuzz/fuzz_util.h"

#if UF_FUZZ_FORMAT == 1
static const uint8_t magic[] = { 0x1f, 0x8b };
#define IMAGE "image.img.gz"
#elif UF_FUZZ_FORMAT == 2
static const uint8_t magic[] = { 0xfd, '7', 'z', 'X', 'Z', 0x00 };
#define IMAGE "image.img.xz"
#elif UF_FUZZ_FORMAT == 3
static const uint8_t magic[] = { 0x28, 0xb5, 0x2f, 0xfd };
#define IMAGE "image.img.zst"
#else
#error "UF_FUZZ_FORMAT must be 1 (gzip), 2 (xz) or 3 (zstd)"
#endif

static char *path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	path = fuzz_path(IMAGE);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len = MAX(size, sizeof(magic));
	_cleanup_free_ uint8_t *img = calloc(1, len);
	_cleanup_free_ char *err = NULL;
	struct blksrc *src = NULL;

	FUZZ_CHECK(img, "out of memory");
	memcpy(img, data, size);
	memcpy(img, magic, sizeof(magic));
	fuzz_write_file(path, img, len);
	int r = blksrc_open_image(path, &src, &err);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM || r == -EIO, "blksrc_open_image returned %d", r);
		FUZZ_CHECK(r == -ENOMEM || (err && *err), "refused (%d) without a message", r);
		return 0;
	}
	FUZZ_CHECK(!err, "opened with an error message: %s", err);
	fuzz_drain(src, NULL);
	blksrc_free(src);
	return 0;
}
