/* Implementation of fuzz_util.h. */
#include "fuzz/fuzz_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *tmpdir;

static void rm_tmpdir(void)
{
	/* Only the files the targets make live here (flat): remove them, then the folder. */
	DIR *d = tmpdir ? opendir(tmpdir) : NULL;
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			(void)unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	(void)rmdir(tmpdir);
}

const char *fuzz_tmpdir(void)
{
	if (tmpdir)
		return tmpdir;
	const char *base = getenv("TMPDIR");
	if (asprintf(&tmpdir, "%s/uf-fuzz-XXXXXX", base && *base ? base : "/tmp") < 0)
		fuzz_fail("out of memory");
	if (!mkdtemp(tmpdir))
		fuzz_fail("cannot make a scratch folder %s: %m", tmpdir);
	atexit(rm_tmpdir);
	return tmpdir;
}

char *fuzz_path(const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", fuzz_tmpdir(), name) < 0)
		fuzz_fail("out of memory");
	return p;
}

void fuzz_write_file(const char *path, const void *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		fuzz_fail("cannot write %s: %m", path);
	for (size_t done = 0; done < size;) {
		ssize_t n = write(fd, (const char *)data + done, size - done);
		if (n <= 0)
			fuzz_fail("cannot write %s: %m", path);
		done += (size_t)n;
	}
	if (close(fd) < 0)
		fuzz_fail("cannot write %s: %m", path);
}

char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		fuzz_fail("out of memory");
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

void fuzz_fail(const char *fmt, ...)
{
	va_list ap;
	fputs("fuzz: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}
