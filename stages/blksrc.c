/* Block sources: opening an image by its content (magic bytes pick raw, zstd, xz or gzip),
 * finding a bmap beside it, and the machinery shared by the dense "stream" sources
 * (src_internal.h). Each format lives in its own src_<fmt>.c; this file owns the dispatch
 * and the length checks that make a truncated or over-long image an error, not silent data. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stages/src_internal.h"

struct blksrc *blksrc_free(struct blksrc *s)
{
	if (s)
		s->ops->free(s);
	return NULL;
}

int src_fail(struct blksrc *s, int err, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	free(s->error);
	s->error = m;
	return err;
}

ssize_t stream_read(struct stream_src *s, void *buf, size_t len, uint64_t *ret_off)
{
	uint64_t off = s->pos;
	ssize_t n;

	if (s->pos >= s->base.size) {
		/* At the declared end: the image must end here too. */
		char probe;
		n = s->fill(s, &probe, 1);
		if (n < 0)
			return n;
		if (n > 0)
			return src_fail(&s->base, -EINVAL, "%s: image is longer than its declared size %llu", s->path,
					(unsigned long long)s->base.size);
		return 0;
	}
	len = (size_t)MIN((uint64_t)len, s->base.size - s->pos);
	n = s->fill(s, buf, len);
	if (n < 0)
		return n;
	if (n == 0)
		return src_fail(&s->base, -EINVAL, "%s: image truncated at byte %llu of %llu", s->path,
				(unsigned long long)s->pos, (unsigned long long)s->base.size);
	s->pos += (uint64_t)n;
	*ret_off = off;
	return n;
}

int stream_skip_to(struct stream_src *s, uint64_t to)
{
	if (to < s->pos)
		return src_fail(&s->base, -EINVAL, "%s: cannot seek backwards", s->path);
	if (to > s->base.size)
		return src_fail(&s->base, -EINVAL, "%s: range beyond the image end", s->path);
	if (to == s->pos)
		return 0;
	if (s->skip) {
		int r = s->skip(s, to - s->pos);
		if (r < 0)
			return r;
		s->pos = to;
		return 0;
	}
	size_t scratch_len = 1u << 20;
	_cleanup_free_ void *scratch = malloc(scratch_len);
	if (!scratch)
		return -ENOMEM;
	while (s->pos < to) {
		size_t want = (size_t)MIN((uint64_t)scratch_len, to - s->pos);
		ssize_t n = s->fill(s, scratch, want);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return src_fail(&s->base, -EINVAL, "%s: image truncated at byte %llu", s->path,
					(unsigned long long)s->pos);
		s->pos += (uint64_t)n;
	}
	return 0;
}

void stream_free(struct blksrc *b)
{
	struct stream_src *s = (struct stream_src *)b;

	if (s->done)
		s->done(s);
	if (s->fd >= 0)
		close(s->fd);
	free(s->path);
	free(s->base.error);
	free(s);
}

static ssize_t stream_op_read(struct blksrc *b, void *buf, size_t len, uint64_t *ret_off)
{
	return stream_read((struct stream_src *)b, buf, len, ret_off);
}

const struct blksrc_ops stream_ops = {
	.read = stream_op_read,
	.free = stream_free,
};

struct stream_src *stream_alloc(size_t size, const char *path, int fd)
{
	struct stream_src *s = calloc(1, size);
	if (!s) {
		close(fd);
		return NULL;
	}
	s->path = strdup(path);
	if (!s->path) {
		free(s);
		close(fd);
		return NULL;
	}
	s->base.ops = &stream_ops;
	s->fd = fd;
	return s;
}

static bool file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The bmap beside path: PATH.bmap, or for a compressed image NAME.bmap where NAME is PATH
 * without its last suffix (bmaptool's naming: disk.img.zst → disk.img.bmap). NULL: none. */
static char *find_bmap(const char *path, bool compressed)
{
	char *p = NULL;

	if (asprintf(&p, "%s.bmap", path) < 0)
		return NULL;
	if (file_exists(p))
		return p;
	free(p);
	p = NULL;
	if (!compressed)
		return NULL;
	const char *dot = strrchr(path, '.');
	const char *slash = strrchr(path, '/');
	if (!dot || (slash && dot < slash))
		return NULL;
	if (asprintf(&p, "%.*s.bmap", (int)(dot - path), path) < 0)
		return NULL;
	if (file_exists(p))
		return p;
	free(p);
	return NULL;
}

int blksrc_open_image(const char *path, struct blksrc **ret, char **ret_error)
{
	unsigned char magic[6] = { 0 };
	struct stream_src *s = NULL;
	struct stat st;
	int r;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (ret_error && asprintf(ret_error, "%s: %s", path, strerror(-r)) < 0)
			*ret_error = NULL;
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		if (ret_error && asprintf(ret_error, "%s: not a regular file", path) < 0)
			*ret_error = NULL;
		return -EINVAL;
	}
	ssize_t n = pread(fd, magic, sizeof(magic), 0);
	if (n < 0) {
		r = -errno;
		close(fd);
		if (ret_error && asprintf(ret_error, "%s: %s", path, strerror(-r)) < 0)
			*ret_error = NULL;
		return r;
	}

	bool compressed = true;
	if (n >= 4 && !memcmp(magic, "\x28\xb5\x2f\xfd", 4))
		r = src_zstd_new(path, fd, (uint64_t)st.st_size, &s, ret_error);
	else if (n >= 6 && !memcmp(magic,
				   "\xfd"
				   "7zXZ\0",
				   6))
		r = src_xz_new(path, fd, (uint64_t)st.st_size, &s, ret_error);
	else if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b)
		r = src_gzip_new(path, fd, (uint64_t)st.st_size, &s, ret_error);
	else {
		compressed = false;
		r = src_raw_new(path, fd, (uint64_t)st.st_size, &s, ret_error);
	}
	if (r < 0)
		return r;

	_cleanup_free_ char *bmap = find_bmap(path, compressed);
	if (bmap)
		return src_bmap_new(s, bmap, ret, ret_error);
	*ret = &s->base;
	return 0;
}
