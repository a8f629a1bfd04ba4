/* Block sources: opening an image by its content (magic bytes pick raw, zstd, xz or gzip) and
 * finding a bmap beside it. Each format lives in its own src_<fmt>.c, on the stream machinery
 * of stream.c; this file only dispatches. */
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
