/* xz image source (liblzma, concatenated streams allowed). The size comes from the xz index
 * (lzma_file_info_decoder reads the stream footers and indexes, seeking as it asks), so no
 * decoding pass is needed up front. */
#include <errno.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image/src_internal.h"
#include "util/message.h"

#define XZ_IN (1u << 20)
/* What liblzma may allocate for a hostile or odd file, instead of anything it asks for: the
 * decoder's dictionary (xz -9 uses 64 MiB; the format allows 1.5 GiB) and the index of the
 * blocks (tens of bytes per block: millions of blocks fit). A file that needs more is refused,
 * naming the limit, rather than taking the kiosk's memory. */
#define XZ_DECODER_MEMLIMIT (UINT64_C(256) << 20)
#define XZ_INDEX_MEMLIMIT   (UINT64_C(64) << 20)

struct xz_src {
	struct stream_src s;
	lzma_stream strm;
	uint8_t *in;
	uint64_t in_off;
	bool in_eof;
	bool ended;
};

static int xz_refill(struct xz_src *x)
{
	ssize_t n;

	do
		n = pread(x->s.fd, x->in, XZ_IN, (off_t)x->in_off);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int r = -errno;
		return src_fail(&x->s.base, r, "%s: read: %s", x->s.path, strerror(-r));
	}
	x->in_off += (uint64_t)n;
	x->strm.next_in = x->in;
	x->strm.avail_in = (size_t)n;
	if (n == 0)
		x->in_eof = true;
	return 0;
}

static const char *xz_strerror(lzma_ret r)
{
	switch (r) {
	case LZMA_MEM_ERROR:
		return "out of memory";
	case LZMA_FORMAT_ERROR:
		return "not xz data";
	case LZMA_OPTIONS_ERROR:
		return "unsupported options";
	case LZMA_DATA_ERROR:
		return "corrupt data";
	case LZMA_BUF_ERROR:
		return "truncated data";
	case LZMA_MEMLIMIT_ERROR:
		return "needs more than 256 MiB of memory to decode (recompress with a smaller dictionary)";
	default:
		return "decoder error";
	}
}

static ssize_t xz_fill(struct stream_src *s, void *buf, size_t len)
{
	struct xz_src *x = (struct xz_src *)s;

	x->strm.next_out = buf;
	x->strm.avail_out = len;
	while (x->strm.avail_out > 0 && !x->ended) {
		if (x->strm.avail_in == 0 && !x->in_eof) {
			int r = xz_refill(x);
			if (r < 0)
				return r;
		}
		lzma_ret lr = lzma_code(&x->strm, x->in_eof ? LZMA_FINISH : LZMA_RUN);
		if (lr == LZMA_STREAM_END) {
			x->ended = true;
			break;
		}
		if (lr != LZMA_OK)
			return src_fail(&s->base, -EINVAL, "%s: xz: %s near input byte %llu", s->path, xz_strerror(lr),
					(unsigned long long)(x->in_off - x->strm.avail_in));
	}
	return (ssize_t)(len - x->strm.avail_out);
}

static void xz_done(struct stream_src *s)
{
	struct xz_src *x = (struct xz_src *)s;
	lzma_end(&x->strm);
	free(x->in);
}

static int xz_index_size(int fd, uint64_t file_size, uint8_t *in, uint64_t *ret)
{
	lzma_stream st = LZMA_STREAM_INIT;
	lzma_index *idx = NULL;
	uint64_t off = 0;
	int r = -EINVAL;

	if (lzma_file_info_decoder(&st, &idx, XZ_INDEX_MEMLIMIT, file_size) != LZMA_OK)
		return -ENOMEM;
	for (;;) {
		if (st.avail_in == 0) {
			ssize_t n = pread(fd, in, XZ_IN, (off_t)off);
			if (n < 0) {
				r = -errno;
				break;
			}
			off += (uint64_t)n;
			st.next_in = in;
			st.avail_in = (size_t)n;
		}
		lzma_ret lr = lzma_code(&st, LZMA_RUN);
		if (lr == LZMA_SEEK_NEEDED) {
			off = st.seek_pos;
			st.avail_in = 0;
			continue;
		}
		if (lr == LZMA_STREAM_END) {
			*ret = lzma_index_uncompressed_size(idx);
			r = 0;
			break;
		}
		if (lr == LZMA_MEMLIMIT_ERROR)
			r = -E2BIG;
		if (lr != LZMA_OK)
			break;
	}
	if (idx)
		lzma_index_end(idx, NULL);
	lzma_end(&st);
	return r;
}

int src_xz_new(const char *path, int fd, uint64_t file_size, struct stream_src **ret, char **ret_error)
{
	struct xz_src *x = (struct xz_src *)stream_alloc(sizeof(*x), path, fd);
	uint64_t size = 0;

	if (!x)
		return -ENOMEM;
	x->s.fill = xz_fill;
	x->s.done = xz_done;
	x->strm = (lzma_stream)LZMA_STREAM_INIT;
	x->in = malloc(XZ_IN);
	if (!x->in || lzma_stream_decoder(&x->strm, XZ_DECODER_MEMLIMIT, LZMA_CONCATENATED) != LZMA_OK) {
		stream_free(&x->s.base);
		return -ENOMEM;
	}
	int r = xz_index_size(fd, file_size, x->in, &size);
	if (r < 0) {
		error_set(ret_error, 0,
			  r == -E2BIG ? "%s: not a usable xz file (its index needs more than 64 MiB of memory)"
				      : "%s: not a valid xz file (index unreadable)",
			  path);
		stream_free(&x->s.base);
		return -EINVAL;
	}
	x->s.base.size = size;
	x->s.base.mapped = size;
	*ret = &x->s;
	return 0;
}
