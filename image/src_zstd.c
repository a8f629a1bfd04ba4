/* Zstandard image source (libzstd streaming decompression). The size is the sum of the
 * frames' content sizes, read from the frame headers (zstd(1) records them); when a frame
 * does not record its size, one decoding pass finds it. Decoding happens in read(), i.e. in
 * the writer's reader thread, overlapped with the device writes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader, ZSTD_frameHeader */
#include <zstd.h>

#include "image/src_internal.h"
#include "util/message.h"
#include "util/unaligned.h"

struct zstd_src {
	struct stream_src s;
	ZSTD_DStream *ds;
	void *in;
	ZSTD_inBuffer ib;
	size_t in_cap;
	uint64_t in_off; /* file offset of the next input read */
	bool in_eof;
	size_t last_ret; /* last ZSTD_decompressStream result: 0 = at a frame end */
};

static int zstd_refill(struct zstd_src *z)
{
	ssize_t n;

	do
		n = pread(z->s.fd, z->in, z->in_cap, (off_t)z->in_off);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int r = -errno;
		return src_fail(&z->s.base, r, "%s: read: %s", z->s.path, strerror(-r));
	}
	z->in_off += (uint64_t)n;
	z->ib.src = z->in;
	z->ib.size = (size_t)n;
	z->ib.pos = 0;
	if (n == 0)
		z->in_eof = true;
	return 0;
}

static ssize_t zstd_fill(struct stream_src *s, void *buf, size_t len)
{
	struct zstd_src *z = (struct zstd_src *)s;
	ZSTD_outBuffer ob = { .dst = buf, .size = len, .pos = 0 };

	while (ob.pos < ob.size) {
		if (z->ib.pos >= z->ib.size) {
			if (z->in_eof)
				break;
			int r = zstd_refill(z);
			if (r < 0)
				return r;
			if (z->in_eof)
				break;
		}
		size_t ret = ZSTD_decompressStream(z->ds, &ob, &z->ib);
		if (ZSTD_isError(ret))
			return src_fail(&s->base, -EINVAL, "%s: corrupt zstd data near input byte %llu: %s", s->path,
					(unsigned long long)z->in_off - z->ib.size + z->ib.pos, ZSTD_getErrorName(ret));
		z->last_ret = ret;
	}
	if (ob.pos < ob.size && z->in_eof && z->last_ret != 0)
		return src_fail(&s->base, -EINVAL, "%s: truncated zstd frame", s->path);
	return (ssize_t)ob.pos;
}

static void zstd_done(struct stream_src *s)
{
	struct zstd_src *z = (struct zstd_src *)s;
	ZSTD_freeDStream(z->ds);
	free(z->in);
}

/* Sum the content sizes of every frame; -ENODATA when a frame does not record it. Walks the
 * frame and block headers with small preads (a few bytes per 128 KiB block), so sizing a large
 * image neither maps nor reads it. */
static int zstd_frames_size(int fd, uint64_t file_size, uint64_t *ret)
{
	uint64_t total = 0, off = 0;
	uint8_t hdr[ZSTD_FRAMEHEADERSIZE_MAX];

	if (file_size == 0)
		return -EINVAL;
	while (off < file_size) {
		ssize_t n = pread(fd, hdr, sizeof(hdr), (off_t)off);
		if (n < 0)
			return -errno;
		if (n < 8)
			return -EINVAL;
		uint32_t magic = unaligned_read_le32(hdr);
		if ((magic & 0xFFFFFFF0u) == ZSTD_MAGIC_SKIPPABLE_START) {
			uint32_t len = unaligned_read_le32(hdr + 4);
			off += 8 + (uint64_t)len;
			continue;
		}
		ZSTD_frameHeader fh;
		size_t hr = ZSTD_getFrameHeader(&fh, hdr, (size_t)n);
		if (ZSTD_isError(hr) || hr != 0)
			return -EINVAL;
		if (fh.frameContentSize == ZSTD_CONTENTSIZE_UNKNOWN)
			return -ENODATA;
		total += fh.frameContentSize;
		off += fh.headerSize;
		for (;;) { /* block headers: 3 bytes, little endian: last(1) type(2) size(21) */
			uint8_t b[3];
			if (pread(fd, b, 3, (off_t)off) != 3)
				return -EINVAL;
			uint32_t bh = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16;
			unsigned type = (bh >> 1) & 3;
			if (type == 3)
				return -EINVAL;				  /* reserved */
			off += 3 + (type == 1 ? 1 : (uint64_t)(bh >> 3)); /* RLE blocks store one byte */
			if (off > file_size)
				return -EINVAL;
			if (bh & 1)
				break;
		}
		if (fh.checksumFlag)
			off += 4;
		if (off > file_size)
			return -EINVAL;
	}
	*ret = total;
	return 0;
}

int src_zstd_new(const char *path, int fd, uint64_t file_size, struct stream_src **ret, char **ret_error)
{
	struct zstd_src *z = (struct zstd_src *)stream_alloc(sizeof(*z), path, fd);
	int r;

	if (!z)
		return -ENOMEM;
	z->s.fill = zstd_fill;
	z->s.done = zstd_done;
	z->in_cap = ZSTD_DStreamInSize() * 8;
	z->in = malloc(z->in_cap);
	z->ds = ZSTD_createDStream();
	if (!z->in || !z->ds) {
		stream_free(&z->s.base);
		return -ENOMEM;
	}
	ZSTD_initDStream(z->ds);

	uint64_t size = 0;
	r = zstd_frames_size(fd, file_size, &size);
	if (r == -ENODATA) {
		/* No recorded size: one decoding pass. */
		_cleanup_free_ void *scratch = malloc(1u << 20);
		if (!scratch) {
			stream_free(&z->s.base);
			return -ENOMEM;
		}
		for (;;) {
			ssize_t n = zstd_fill(&z->s, scratch, 1u << 20);
			if (n < 0) {
				r = (int)n;
				break;
			}
			if (n == 0) {
				r = 0;
				break;
			}
			size += (uint64_t)n;
		}
		ZSTD_DCtx_reset(z->ds, ZSTD_reset_session_only);
		z->in_off = 0;
		z->ib = (ZSTD_inBuffer){ 0 };
		z->in_eof = false;
		z->last_ret = 0;
	}
	if (r < 0) {
		error_set(ret_error, 0, "%s: %s", path, z->s.base.error ? z->s.base.error : "not a valid zstd file");
		stream_free(&z->s.base);
		return -EINVAL;
	}
	z->s.base.size = size;
	z->s.base.mapped = size;
	*ret = &z->s;
	return 0;
}
