/* Small language helpers shared by every module: cleanup attributes, ownership hand-off,
 * array sizes. Header only; no state. */
#pragma once

#include <errno.h>
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

/* A cleanup function for a library's own destructor: DEFINE_CLEANUP(EVP_MD_CTX *, EVP_MD_CTX_free)
 * defines EVP_MD_CTX_freep(), for `_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = …;` (no call on
 * NULL). Prefer the library's own where it has one (jansson: json_auto_t). */
#define DEFINE_CLEANUP(type, func)                                                                                     \
	static inline void func##p(type *p) /* NOLINT(bugprone-macro-parentheses): type is a type */                   \
	{                                                                                                              \
		if (*p)                                                                                                \
			func(*p);                                                                                      \
	}

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

/* -errno right after a failed libc call, to return. Never 0: a failure that left errno at 0
 * (libc promises it does not) would read as a success whose output parameters were never
 * written. (systemd's negative_errno()) A macro, not a function, and under clang-tidy it tells
 * the analyzer the result is negative: clang-tidy 14 knows nothing of errno, cannot follow a
 * negation, and does not always inline a function. */
#ifdef __clang_analyzer__
#define NEGATIVE_ERRNO_ASSUME(r) __builtin_assume((r) < 0)
#else
#define NEGATIVE_ERRNO_ASSUME(r) ((void)0)
#endif
#define negative_errno()                                                                                               \
	({                                                                                                             \
		int _e_ = errno, _r_ = _e_ > 0 ? 0 - _e_ : -EIO;                                                       \
		NEGATIVE_ERRNO_ASSUME(_r_);                                                                            \
		_r_;                                                                                                   \
	})

/* free(p) and return NULL: p = mfree(p); */
static inline void *mfree(void *p)
{
	free(p);
	return NULL;
}
