/* Raw image source (.img, .iso, anything that is not compressed): the file's bytes as they
 * are, read sequentially with pread. Skipping (for bmap holes) costs no I/O. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "image/src_internal.h"

static ssize_t raw_fill(struct stream_src *s, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(s->fd, (char *)buf + done, len - done, (off_t)(s->pos + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int r = -errno;
			return src_fail(&s->base, r, "%s: read at byte %llu: %s", s->path,
					(unsigned long long)s->pos + done, strerror(-r));
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int raw_skip(struct stream_src *s, uint64_t n)
{
	(void)s;
	(void)n;
	return 0;
}

int src_raw_new(const char *path, int fd, uint64_t file_size, struct stream_src **ret, char **ret_error)
{
	struct stream_src *s = stream_alloc(sizeof(*s), path, fd);
	if (!s)
		return -ENOMEM;
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	s->fill = raw_fill;
	s->skip = raw_skip;
	s->base.size = file_size;
	s->base.mapped = file_size;
	(void)ret_error;
	*ret = s;
	return 0;
}
