/* Implementation of tests/helpers/testutil.h. */
#include "helpers/testutil.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

char *tu_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *p = NULL;
	cr_assert(asprintf(&p, "%s/uf-%s-XXXXXX", base && *base ? base : "/tmp", tag) > 0);
	cr_assert(mkdtemp(p), "mkdtemp %s: %s", p, strerror(errno));
	return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tu_rmrf(const char *path)
{
	if (path && strstr(path, "/uf-"))
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void tu_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		cr_assert(n > 0, "write %s: %s", path, strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	cr_assert(close(fd) == 0);
}

char *tu_path(const char *dir, const char *name)
{
	char *p = NULL;
	cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

void tu_fill_pattern(void *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
	unsigned char *p = buf;
	for (size_t i = 0; i < len; i++) {
		if ((i & 7) == 0) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		p[i] = (unsigned char)(x >> ((i & 7) * 8));
	}
}

const char *tu_source_dir(void)
{
	const char *s = getenv("UF_SOURCE_DIR");
	return s ? s : ".";
}

const char *tu_binary_dir(void)
{
	const char *s = getenv("UF_BINARY_DIR");
	return s ? s : ".";
}

bool tu_file_holds(const char *path, const void *needle, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	cr_assert(fd >= 0 && fstat(fd, &st) == 0, "%s: %s", path, strerror(errno));
	bool found = false;
	if ((size_t)st.st_size >= n) {
		const unsigned char *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		cr_assert(m != MAP_FAILED, "%s: %s", path, strerror(errno));
		for (size_t o = 0; o + n <= (size_t)st.st_size && !found; o += 512)
			found = memcmp(m + o, needle, n) == 0;
		munmap((void *)m, (size_t)st.st_size);
	}
	close(fd);
	return found;
}

int tu_set_immutable(const char *path, bool on)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	int flags = 0, r = 0;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
		r = -errno;
	flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
	if (r == 0 && ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)
		r = -errno;
	close(fd);
	return r;
}

char *tu_pattern_file(const char *dir, const char *name, size_t len, uint64_t seed)
{
	char *path = tu_path(dir, name);
	char *buf = malloc(len ? len : 1);
	cr_assert(buf);
	tu_fill_pattern(buf, len, seed);
	tu_write_file(path, buf, len);
	free(buf);
	return path;
}
