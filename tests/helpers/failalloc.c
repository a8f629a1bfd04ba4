/* The wrappers of helpers/failalloc.h. The linker sends the suite's calls of malloc & co. here
 * (-Wl,--wrap=NAME makes NAME mean __wrap_NAME and __real_NAME the real one). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/failalloc.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_reallocarray(void *p, size_t n, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **ret, const char *fmt, va_list ap);
char *__real_realpath(const char *path, char *resolved);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_reallocarray(void *p, size_t n, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_asprintf(char **ret, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int __wrap_vasprintf(char **ret, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
char *__wrap_realpath(const char *path, char *resolved);

/* Tests run one at a time in their own process (criterion --jobs 1): no locking needed. */
static unsigned countdown; /* 0: disarmed */
static bool fired;

void failalloc_arm(unsigned n)
{
	countdown = n;
	fired = false;
}

bool failalloc_disarm(void)
{
	countdown = 0;
	return fired;
}

/* Count one allocation; true when this one is to fail. */
static bool fail_now(void)
{
	if (countdown == 0 || --countdown > 0)
		return false;
	fired = true;
	errno = ENOMEM;
	return true;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return fail_now() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
void *__wrap_reallocarray(void *p, size_t n, size_t size)
{
	return fail_now() ? NULL : __real_reallocarray(p, n, size);
}
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return fail_now() ? NULL : __real_strndup(s, n); }

int __wrap_vasprintf(char **ret, const char *fmt, va_list ap)
{
	return fail_now() ? -1 : __real_vasprintf(ret, fmt, ap);
}

int __wrap_asprintf(char **ret, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (fail_now())
		return -1;
	va_start(ap, fmt);
	r = __real_vasprintf(ret, fmt, ap);
	va_end(ap);
	return r;
}

char *__wrap_realpath(const char *path, char *resolved)
{
	/* realpath(p, NULL) allocates; with a caller's buffer it does not. */
	return !resolved && fail_now() ? NULL : __real_realpath(path, resolved);
}
