/* The machinery shared by the dense "stream" sources (src_internal.h): reading a stream with
 * the length checks that make a truncated or over-long image an error, not silent data;
 * skipping ahead; freeing; and blksrc_free() for every source. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image/src_internal.h"
#include "util/macro.h"
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
