/* Small language helpers shared by every module: cleanup attributes, ownership hand-off,
 * array sizes. Header only; no state. */
#pragma once

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdio.h>

#define ARRAY_SIZE(a)  (sizeof(a) / sizeof((a)[0]))
#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _unused_       __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_     __attribute__((noreturn))

/* Take ownership out of a cleanup-managed variable. */
#define TAKE_PTR(p)                                                                                                    \
	({                                                                                                             \
		__typeof__(p) _p_ = (p);                                                                               \
		(p) = NULL;                                                                                            \
		_p_;                                                                                                   \
	})
#define TAKE_FD(fd)                                                                                                    \
	({                                                                                                             \
		int _fd_ = (fd);                                                                                       \
		(fd) = -1;                                                                                             \
		_fd_;                                                                                                  \
	})

static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

#define MIN(a, b)	 ((a) < (b) ? (a) : (b))
#define MAX(a, b)	 ((a) > (b) ? (a) : (b))
#define ALIGN_UP(x, a)	 ((((x) + (a)-1) / (a)) * (a))
#define ALIGN_DOWN(x, a) (((x) / (a)) * (a))

/* strdup(s), or NULL for NULL (and on ENOMEM). */
static inline char *strdup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* free(p) and return NULL: p = mfree(p); */
static inline void *mfree(void *p)
{
	free(p);
	return NULL;
}
