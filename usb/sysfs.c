/* Implementation of sysfs.h: small readers of sysfs attribute files and the walk over
 * <sysfs>/class/block that discovery and the reset's wait share. */
#include "usb/sysfs.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util/macro.h"

int sysfs_read(const char *dir, const char *name, char **ret)
{
	_cleanup_free_ char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return -ENOMEM;
	_cleanup_fclose_ FILE *f = fopen(p, "re");
	if (!f)
		return negative_errno();
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	if (n < 0) {
		free(line);
		if (ferror(f))
			return -EIO;
		line = strdup("");
		if (!line)
			return -ENOMEM;
		n = 0;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' ' || line[n - 1] == '\t'))
		line[--n] = '\0';
	*ret = line;
	return 0;
}

int sysfs_read_u64(const char *dir, const char *name, uint64_t *ret)
{
	_cleanup_free_ char *s = NULL;
	int r = sysfs_read(dir, name, &s);
	if (r < 0)
		return r;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end)
		return -EINVAL;
	*ret = v;
	return 0;
}

int sysfs_uevent_get(const char *dir, const char *key, char **ret)
{
	_cleanup_free_ char *p = NULL;
	if (asprintf(&p, "%s/uevent", dir) < 0)
		return -ENOMEM;
	_cleanup_fclose_ FILE *f = fopen(p, "re");
	if (!f)
		return negative_errno();
	size_t klen = strlen(key);
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, f)) >= 0) {
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
			char *v = strdup(line + klen + 1);
			if (!v)
				return -ENOMEM;
			*ret = v;
			return 0;
		}
	}
	return -ENOENT;
}

int sysfs_exists(const char *dir, const char *name)
{
	_cleanup_free_ char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return -ENOMEM;
	return access(p, F_OK) == 0;
}

int sysfs_parse_devnum(const char *s, dev_t *ret)
{
	unsigned ma, mi;
	char extra;
	if (sscanf(s, "%u:%u%c", &ma, &mi, &extra) != 2)
		return -EINVAL;
	*ret = makedev(ma, mi);
	return 0;
}

int sysfs_for_each_block(const char *sysfs, int (*fn)(const char *syspath, void *userdata), void *userdata)
{
	_cleanup_free_ char *dir = NULL;
	if (asprintf(&dir, "%s/class/block", sysfs) < 0)
		return -ENOMEM;
	DIR *d = opendir(dir);
	if (!d)
		return negative_errno();
	struct dirent *de;
	int r = 0;
	while (r == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *p = NULL;
		if (asprintf(&p, "%s/%s", dir, de->d_name) < 0) {
			r = -ENOMEM;
			break;
		}
		r = fn(p, userdata);
	}
	closedir(d);
	return r;
}
