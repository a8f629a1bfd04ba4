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

#include "image/src_internal.h"
#include "util/macro.h"
#include "util/openfile.h"
#include "util/message.h"

struct blksrc *blksrc_free(struct blksrc *s)
{
	if (s)
		s->ops->free(s);
	return NULL;
}

int src_fail(struct blksrc *s, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	str_vset(&s->error, fmt, ap);
	va_end(ap);
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

/* dirfd AT_FDCWD: path is any path (the command line's); else path is opened beneath dirfd. */
static int open_in(int dirfd, const char *path, struct stat *ret_st)
{
	return dirfd == AT_FDCWD ? open_regular(path, ret_st) : open_beneath(dirfd, path, ret_st);
}

/* Open the bmap beside path: PATH.bmap, or for a compressed image NAME.bmap where NAME is PATH
 * without its last suffix (bmaptool's naming: disk.img.zst → disk.img.bmap). Returns a
 * descriptor (its name in *ret_name), -ENOENT when there is none, or another -errno when one
 * exists but cannot be used (a symlink or a FIFO is refused, not skipped). */
static int open_bmap(int dirfd, const char *path, bool compressed, char **ret_name, char **ret_error)
{
	char *p = NULL;

	for (int pass = 0; pass < 2; pass++) {
		if (pass == 0) {
			if (asprintf(&p, "%s.bmap", path) < 0)
				return -ENOMEM;
		} else {
			const char *dot = strrchr(path, '.');
			const char *slash = strrchr(path, '/');
			if (!compressed || !dot || (slash && dot < slash))
				return -ENOENT;
			if (asprintf(&p, "%.*s.bmap", (int)(dot - path), path) < 0)
				return -ENOMEM;
		}
		int fd = open_in(dirfd, p, NULL);
		if (fd >= 0) {
			*ret_name = p;
			return fd;
		}
		if (fd != -ENOENT) {
			error_set(ret_error, 0, "%s: %s", p, open_strerror(dirfd, p, fd));
			free(p);
			return fd;
		}
		free(p);
		p = NULL;
	}
	return -ENOENT;
}

int blksrc_open_image(const char *path, struct blksrc **ret, char **ret_error)
{
	return blksrc_open_image_at(AT_FDCWD, path, ret, ret_error);
}

int blksrc_open_image_at(int dirfd, const char *path, struct blksrc **ret, char **ret_error)
{
	unsigned char magic[6] = { 0 };
	struct stream_src *s = NULL;
	struct stat st;
	int r;

	int fd = open_in(dirfd, path, &st);
	if (fd < 0) {
		error_set(ret_error, 0, "%s: %s", path, open_strerror(dirfd, path, fd));
		return fd;
	}
	if (st.st_size == 0) {
		close(fd);
		error_set(ret_error, 0, "%s is empty (0 bytes)", path);
		return -EINVAL;
	}
	ssize_t n = pread(fd, magic, sizeof(magic), 0);
	if (n < 0) {
		r = -errno;
		close(fd);
		error_set(ret_error, 0, "%s: %s", path, strerror(-r));
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
	if (s->base.size == 0) {
		blksrc_free(&s->base);
		error_set(ret_error, 0, "%s decodes to 0 bytes", path);
		return -EINVAL;
	}

	_cleanup_free_ char *bmap = NULL;
	int bfd = open_bmap(dirfd, path, compressed, &bmap, ret_error);
	if (bfd >= 0)
		return src_bmap_new(s, bfd, bmap, ret, ret_error);
	if (bfd != -ENOENT) {
		blksrc_free(&s->base);
		return bfd;
	}
	*ret = &s->base;
	return 0;
}
