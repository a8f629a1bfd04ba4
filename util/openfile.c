#include "util/openfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/macro.h"

const char *file_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return "a regular file";
	case S_IFDIR:
		return "a directory";
	case S_IFIFO:
		return "a FIFO";
	case S_IFCHR:
		return "a character device";
	case S_IFBLK:
		return "a block device";
	case S_IFSOCK:
		return "a socket";
	case S_IFLNK:
		return "a symbolic link";
	default:
		return "not a regular file";
	}
}

const char *open_strerror(int dirfd, const char *path, int r)
{
	struct stat st;

	switch (r) {
	case -EXDEV:
		return "outside its folder (an absolute path, \"..\" or an empty name)";
	case -ELOOP:
		return "a symbolic link on the way (not followed)";
	case -EISDIR:
		return "a directory, not a regular file";
	case -EINVAL:
	case -ENXIO:
		if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			switch (st.st_mode & S_IFMT) {
			case S_IFIFO:
				return "a FIFO, not a regular file";
			case S_IFCHR:
				return "a character device, not a regular file";
			case S_IFBLK:
				return "a block device, not a regular file";
			case S_IFSOCK:
				return "a socket, not a regular file";
			default:
				break;
			}
		}
		return "not a regular file";
	default:
		return strerror(-r);
	}
}

char *path_tidy(const char *path)
{
	size_t n = strlen(path);
	char *out = malloc(n + 2), *o = out;
	if (!out)
		return NULL;
	bool abs = path[0] == '/';
	if (abs)
		*o++ = '/';
	for (const char *c = path; *c;) {
		size_t len = strcspn(c, "/");
		if (len > 0 && !(len == 1 && c[0] == '.')) {
			if (o > out && o[-1] != '/')
				*o++ = '/';
			memcpy(o, c, len);
			o += len;
		}
		c += len;
		while (*c == '/')
			c++;
	}
	if (o == out)
		*o++ = abs ? '/' : '.';
	*o = 0;
	return out;
}

const char *path_beneath(const char *root, const char *path)
{
	size_t n = strlen(root);

	while (n > 1 && root[n - 1] == '/')
		n--;
	if (n == 1 && root[0] == '/')
		n = 0; /* the root "/" itself: every absolute path is beneath it */
	if (strncmp(path, root, n) != 0 || path[n] != '/')
		return NULL;
	path += n;
	while (*path == '/')
		path++;
	return *path ? path : NULL;
}

/* The descriptor came from an O_NONBLOCK open: keep it only when it is a regular file, and
 * make its reads blocking again (O_NONBLOCK means nothing for regular files, but the flag
 * would be inherited by anyone the descriptor is handed to). */
static int finish_regular(int fd, struct stat *ret_st)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	if (ret_st)
		*ret_st = st;
	return fd;
}

int open_regular(const char *path, struct stat *ret_st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	return finish_regular(fd, ret_st);
}

int open_root_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
	return fd < 0 ? -errno : fd;
}

bool path_is_safe_relative(const char *rel)
{
	size_t n = rel ? strlen(rel) : 0;

	if (n == 0 || n >= PATH_MAX || rel[0] == '/')
		return false;
	for (const char *p = rel; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	for (const char *c = rel; *c;) {
		size_t len = strcspn(c, "/");
		if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += len;
		if (*c == '/')
			c++;
		if (!*c && c[-1] == '/')
			return false; /* trailing slash */
	}
	return true;
}

/* openat2 without the kernel's help: walk the components with O_NOFOLLOW, refusing ".." and
 * anything that is not a directory on the way. Used only where openat2 is missing (ENOSYS). */
static int walk_beneath(int rootfd, const char *rel, int last_flags)
{
	char name[NAME_MAX + 1];
	int dfd = rootfd;

	/* rel passed path_is_safe_relative: components are non-empty and not "." or ".." */
	for (const char *c = rel; *c;) {
		size_t len = strcspn(c, "/");
		bool last = c[len] == '\0';
		if (len > NAME_MAX) {
			if (dfd != rootfd)
				close(dfd);
			return -ENAMETOOLONG;
		}
		memcpy(name, c, len);
		name[len] = '\0';
		int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | (last ? last_flags : O_DIRECTORY);
		int fd = openat(dfd, name, flags);
		int r = fd < 0 ? -errno : 0;
		struct stat st;
		/* O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR: say ELOOP as openat2 does */
		if (r == -ENOTDIR && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
			r = -ELOOP;
		if (dfd != rootfd)
			close(dfd);
		if (r < 0)
			return r;
		dfd = fd;
		c += len + !last;
	}
	return dfd == rootfd ? -EINVAL : dfd;
}

int open_beneath_walk(int rootfd, const char *rel, struct stat *ret_st)
{
	if (!path_is_safe_relative(rel))
		return -EXDEV;
	int fd = walk_beneath(rootfd, rel, O_NONBLOCK);
	if (fd < 0)
		return fd;
	return finish_regular(fd, ret_st);
}

static int openat2_beneath(int rootfd, const char *rel, int flags)
{
	static bool no_openat2;

	if (!__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
		struct open_how how = {
			.flags = (uint64_t)(O_RDONLY | O_CLOEXEC | O_NOCTTY | flags),
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
		};
		int fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
		if (fd >= 0)
			return fd;
		if (errno != ENOSYS)
			return -errno;
		__atomic_store_n(&no_openat2, true, __ATOMIC_RELAXED);
	}
	return walk_beneath(rootfd, rel, flags);
}

int open_beneath(int rootfd, const char *rel, struct stat *ret_st)
{
	if (!path_is_safe_relative(rel))
		return -EXDEV;
	int fd = openat2_beneath(rootfd, rel, O_NONBLOCK);
	if (fd < 0)
		return fd;
	return finish_regular(fd, ret_st);
}

int open_beneath_dir(int rootfd, const char *rel)
{
	if (!rel || !*rel) {
		int fd = openat(rootfd, ".", O_RDONLY | O_CLOEXEC | O_DIRECTORY);
		return fd < 0 ? -errno : fd;
	}
	if (!path_is_safe_relative(rel))
		return -EXDEV;
	return openat2_beneath(rootfd, rel, O_DIRECTORY);
}
