/* Implementation of util/secretfile.h. */
#include "util/secretfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/macro.h"
#include "util/message.h"
#include "util/openfile.h"

#define SECRETFILE_MAX 4096

char *secretfile_free(char *secret)
{
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	return NULL;
}

/* The mode and owner rules of the file (see secretfile.h), on the open descriptor's fstat. */
static int check_owner_mode(const char *key, const char *path, const struct stat *st, char **ret_error)
{
	mode_t m = st->st_mode & 07777;

	if (!S_ISREG(st->st_mode))
		return error_set(ret_error, -EINVAL, "%s %s: %s, not a regular file", key, path,
				 file_kind(st->st_mode));
	bool group_reads = (m & 0070) == 0040 && st->st_gid == getegid();
	/* the daemon's own file, or root's that the daemon's group may read (as the package makes it) */
	if (st->st_uid != geteuid() && !(st->st_uid == 0 && group_reads))
		return error_set(ret_error, -EINVAL,
				 "%s %s: owned by uid %u, neither the daemon's user (uid %u) nor root with the daemon's "
				 "group (gid %u) reading it: chown it",
				 key, path, (unsigned)st->st_uid, (unsigned)geteuid(), (unsigned)getegid());
	if ((m & ~(mode_t)0600 & ~(mode_t)(group_reads ? 0040 : 0)) != 0)
		return error_set(ret_error, -EINVAL,
				 "%s %s: mode %04o is too open: chmod 600 (or 640 with the daemon's group, gid %u)",
				 key, path, (unsigned)m, (unsigned)getegid());
	return 0;
}

int secretfile_read(const char *key, const char *what, const char *path, size_t min_len, size_t max_len,
		    char **ret_secret, char **ret_error)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	char buf[SECRETFILE_MAX + 2];
	size_t len = 0;

	if (max_len > SECRETFILE_MAX || min_len > max_len)
		return error_set(ret_error, -EINVAL, "%s %s: bad bounds", key, path);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	if (fd < 0) {
		int r = -errno;
		if (r == -ELOOP)
			return error_set(ret_error, r, "%s %s: a symbolic link (not followed): name the file itself",
					 key, path);
		return error_set(ret_error, r, "%s %s: %s", key, path, strerror(-r));
	}
	if (fstat(fd, &st) < 0) {
		int e = errno;
		return error_set(ret_error, -e, "%s %s: %s", key, path, strerror(e));
	}
	int r = check_owner_mode(key, path, &st, ret_error);
	if (r < 0)
		return r;
	/* one byte past the longest line and its newline tells a too-long line */
	size_t want = max_len + 2;
	while (len < want) {
		ssize_t n = read(fd, buf + len, want - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			explicit_bzero(buf, sizeof(buf));
			return error_set(ret_error, r, "%s %s: %s", key, path, strerror(-r));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	size_t tlen = 0;
	while (tlen < len && buf[tlen] != '\n')
		tlen++;
	bool ok = tlen >= min_len && tlen <= max_len && (tlen == len || buf[tlen] == '\n');
	for (size_t i = 0; ok && i < tlen; i++)
		ok = buf[i] > 0x20 && buf[i] < 0x7f;
	if (!ok) {
		explicit_bzero(buf, sizeof(buf));
		if (tlen == 0)
			return error_set(ret_error, -EINVAL,
					 "%s %s: empty: the first line must be the %s, %zu to %zu visible ASCII "
					 "characters without spaces",
					 key, path, what, min_len, max_len);
		return error_set(ret_error, -EINVAL,
				 "%s %s: the first line must be the %s, %zu to %zu visible ASCII characters without "
				 "spaces (the %s is not shown)",
				 key, path, what, min_len, max_len, what);
	}
	char *t = strndup(buf, tlen);
	explicit_bzero(buf, sizeof(buf));
	if (!t)
		return error_set(ret_error, -ENOMEM, "%s %s: out of memory", key, path);
	*ret_secret = t;
	return 0;
}
