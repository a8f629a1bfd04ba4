/* Implementation of http/token.h. */
#include "http/token.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/macro.h"
#include "util/message.h"
#include "util/openfile.h"

char *token_free(char *token)
{
	if (token) {
		explicit_bzero(token, strlen(token));
		free(token);
	}
	return NULL;
}

/* The mode and owner rules of the file (see token.h), on the open descriptor's fstat. */
static int check_owner_mode(const char *path, const struct stat *st, char **ret_error)
{
	mode_t m = st->st_mode & 07777;

	if (!S_ISREG(st->st_mode))
		return error_set(ret_error, -EINVAL, "http.token_file %s: %s, not a regular file", path,
				 file_kind(st->st_mode));
	bool group_reads = (m & 0070) == 0040 && st->st_gid == getegid();
	/* the daemon's own file, or root's that the daemon's group may read (as the package makes it) */
	if (st->st_uid != geteuid() && !(st->st_uid == 0 && group_reads))
		return error_set(ret_error, -EINVAL,
				 "http.token_file %s: owned by uid %u, neither the daemon's user (uid %u) nor root "
				 "with the daemon's group (gid %u) reading it: chown it",
				 path, (unsigned)st->st_uid, (unsigned)geteuid(), (unsigned)getegid());
	if ((m & ~(mode_t)0600 & ~(mode_t)(group_reads ? 0040 : 0)) != 0)
		return error_set(ret_error, -EINVAL,
				 "http.token_file %s: mode %04o is too open: chmod 600 (or 640 with the daemon's "
				 "group, gid %u)",
				 path, (unsigned)m, (unsigned)getegid());
	return 0;
}

int token_load(const char *path, char **ret_token, char **ret_error)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	char buf[TOKEN_MAX_LEN + 2];
	size_t len = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	if (fd < 0) {
		int r = -errno;
		if (r == -ELOOP)
			return error_set(ret_error, r,
					 "http.token_file %s: a symbolic link (not followed): name the "
					 "file itself",
					 path);
		return error_set(ret_error, r, "http.token_file %s: %s", path, strerror(-r));
	}
	if (fstat(fd, &st) < 0) {
		int e = errno;
		return error_set(ret_error, -e, "http.token_file %s: %s", path, strerror(e));
	}
	int r = check_owner_mode(path, &st, ret_error);
	if (r < 0)
		return r;
	while (len < sizeof(buf)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			explicit_bzero(buf, sizeof(buf));
			return error_set(ret_error, r, "http.token_file %s: %s", path, strerror(-r));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	size_t tlen = 0;
	while (tlen < len && buf[tlen] != '\n')
		tlen++;
	bool ok = tlen >= TOKEN_MIN_LEN && tlen <= TOKEN_MAX_LEN && (tlen == len || buf[tlen] == '\n');
	for (size_t i = 0; ok && i < tlen; i++)
		ok = buf[i] > 0x20 && buf[i] < 0x7f;
	if (!ok) {
		explicit_bzero(buf, sizeof(buf));
		return error_set(ret_error, -EINVAL,
				 "http.token_file %s: the first line must be the token, %d to %d visible ASCII "
				 "characters without spaces (the token is not shown)",
				 path, TOKEN_MIN_LEN, TOKEN_MAX_LEN);
	}
	char *t = strndup(buf, tlen);
	explicit_bzero(buf, sizeof(buf));
	if (!t)
		return error_set(ret_error, -ENOMEM, "http.token_file %s: out of memory", path);
	*ret_token = t;
	return 0;
}

bool token_matches(const char *token, const char *authorization)
{
	static const char prefix[] = "Bearer ";
	unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];

	if (!token || !authorization || strncasecmp(authorization, prefix, sizeof(prefix) - 1) != 0)
		return false;
	const char *given = authorization + sizeof(prefix) - 1;
	size_t n = strnlen(given, TOKEN_MAX_LEN + 1);
	SHA256((const unsigned char *)given, n, a);
	SHA256((const unsigned char *)token, strlen(token), b);
	return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}
