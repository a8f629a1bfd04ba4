/* gzip image source (zlib; multi-member files are decoded member after member). The size:
 * gzip records only the length modulo 2^32 (ISIZE, last member), so it is trusted when one
 * value fits both ISIZE and deflate's ratio limits (at most 1032:1, at least ~1:1) for this
 * compressed length; otherwise one decoding pass measures it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "image/src_internal.h"
#include "util/message.h"
#include "util/unaligned.h"

#define GZ_IN (1u << 20)

struct gz_src {
	struct stream_src s;
	z_stream z;
	unsigned char *in;
	uint64_t in_off;
	bool in_eof;
	bool member_end; /* the last inflate() ended a member */
	bool inited;
};

static int gz_refill(struct gz_src *g)
{
	ssize_t n;

	do
		n = pread(g->s.fd, g->in, GZ_IN, (off_t)g->in_off);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int r = -errno;
		return src_fail(&g->s.base, r, "%s: read: %s", g->s.path, strerror(-r));
	}
	g->in_off += (uint64_t)n;
	g->z.next_in = g->in;
	g->z.avail_in = (uInt)n;
	if (n == 0)
		g->in_eof = true;
	return 0;
}

static ssize_t gz_fill(struct stream_src *s, void *buf, size_t len)
{
	struct gz_src *g = (struct gz_src *)s;
	size_t done = 0;

	while (done < len) {
		if (g->z.avail_in == 0 && !g->in_eof) {
			int r = gz_refill(g);
			if (r < 0)
				return r;
		}
		if (g->z.avail_in == 0 && g->in_eof) {
			if (!g->member_end)
				return src_fail(&s->base, -EINVAL, "%s: truncated gzip data", s->path);
			break;
		}
		if (g->member_end) {
			/* Another member follows. */
			if (inflateReset(&g->z) != Z_OK)
				return src_fail(&s->base, -EINVAL, "%s: gzip reset failed", s->path);
			g->member_end = false;
		}
		uInt chunk = (uInt)MIN((size_t)(1u << 30), len - done);
		g->z.next_out = (unsigned char *)buf + done;
		g->z.avail_out = chunk;
		int zr = inflate(&g->z, Z_NO_FLUSH);
		done += chunk - g->z.avail_out;
		if (zr == Z_STREAM_END)
			g->member_end = true;
		else if (zr != Z_OK && zr != Z_BUF_ERROR)
			return src_fail(&s->base, -EINVAL, "%s: corrupt gzip data near input byte %llu: %s", s->path,
					(unsigned long long)(g->in_off - g->z.avail_in),
					g->z.msg ? g->z.msg : "inflate error");
	}
	return (ssize_t)done;
}

static void gz_done(struct stream_src *s)
{
	struct gz_src *g = (struct gz_src *)s;
	if (g->inited)
		inflateEnd(&g->z);
	free(g->in);
}

static int gz_reset(struct gz_src *g)
{
	if (g->inited)
		inflateEnd(&g->z);
	g->z = (z_stream){ 0 };
	g->inited = false;
	if (inflateInit2(&g->z, 16 + MAX_WBITS) != Z_OK)
		return -ENOMEM;
	g->inited = true;
	g->in_off = 0;
	g->in_eof = false;
	g->member_end = false;
	return 0;
}

int src_gzip_new(const char *path, int fd, uint64_t file_size, struct stream_src **ret, char **ret_error)
{
	struct gz_src *g = (struct gz_src *)stream_alloc(sizeof(*g), path, fd);
	unsigned char tail[4];
	uint64_t size = 0;
	int r;

	if (!g)
		return -ENOMEM;
	g->s.fill = gz_fill;
	g->s.done = gz_done;
	g->in = malloc(GZ_IN);
	if (!g->in || gz_reset(g) < 0) {
		stream_free(&g->s.base);
		return -ENOMEM;
	}
	if (file_size < 18 || pread(fd, tail, 4, (off_t)(file_size - 4)) != 4) {
		error_set(ret_error, 0, "%s: not a valid gzip file", path);
		stream_free(&g->s.base);
		return -EINVAL;
	}
	uint64_t isize = unaligned_read_le32(tail);
	/* Candidates isize + k*2^32 within [file_size - overhead, 1032 * file_size]. */
	uint64_t lo = file_size > 1024 ? file_size - file_size / 64 - 1024 : 0;
	uint64_t hi = file_size * 1032;
	unsigned fits = 0;
	for (uint64_t c = isize; c <= hi; c += (1ull << 32)) {
		if (c >= lo) {
			fits++;
			size = c;
		}
		if (fits > 1)
			break;
	}
	if (fits != 1) {
		_cleanup_free_ void *scratch = malloc(1u << 20);
		if (!scratch) {
			stream_free(&g->s.base);
			return -ENOMEM;
		}
		size = 0;
		for (;;) {
			ssize_t n = gz_fill(&g->s, scratch, 1u << 20);
			if (n < 0) {
				error_set(ret_error, 0, "%s", g->s.base.error);
				stream_free(&g->s.base);
				return -EINVAL;
			}
			if (n == 0)
				break;
			size += (uint64_t)n;
		}
		r = gz_reset(g);
		if (r < 0) {
			stream_free(&g->s.base);
			return r;
		}
	}
	g->s.base.size = size;
	g->s.base.mapped = size;
	*ret = &g->s;
	return 0;
}
