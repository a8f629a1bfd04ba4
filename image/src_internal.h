/* Private to the block sources (blksrc.c, stream.c, src_*.c): the "stream" source every image format
 * implements (a dense byte stream from device offset 0, decoded as it is read), the bmap
 * filter that turns a stream into sparse extents, and the error-text helper. Not for use
 * outside image/. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "image/blksrc.h"
#include "util/macro.h"

/* A dense stream: produces bytes 0..size-1 in order. The format modules fill in the three
 * callbacks; blksrc's read() for a stream is stream_read() below. */
struct stream_src {
	struct blksrc base;
	char *path;   /* owned; for messages */
	int fd;	      /* owned; the image file */
	uint64_t pos; /* next offset produced */
	/* Fill up to len bytes; fewer only at the end of the data, 0 at the end, or -errno with
	 * base.error set. */
	ssize_t (*fill)(struct stream_src *s, void *buf, size_t len);
	/* Advance by n bytes without producing them (raw: no I/O). NULL: decode into scratch. */
	int (*skip)(struct stream_src *s, uint64_t n);
	/* Release the format's private state (not the struct itself). May be NULL. */
	void (*done)(struct stream_src *s);
};

/* Set s->error (replacing any previous) from a printf format; returns err (a -errno). */
int src_fail(struct blksrc *s, int err, const char *fmt, ...) _printf_(3, 4);

/* blksrc read() of a stream: fills buf from pos, checks the length against base.size. */
ssize_t stream_read(struct stream_src *s, void *buf, size_t len, uint64_t *ret_off);
/* Advance a stream to absolute offset `to` (>= pos), by skip() or by decoding. */
int stream_skip_to(struct stream_src *s, uint64_t to);
/* Common tail of every stream's free(): done(), close fd, free path/error, free s. */
void stream_free(struct blksrc *b);
/* The blksrc_ops every stream uses. */
extern const struct blksrc_ops stream_ops;

/* Format constructors: take fd (ownership, also on failure) already positioned anywhere;
 * size of the file in file_size. Return 0 and a stream with base.size/mapped set, or -errno
 * with *ret_error (malloc'd) when not NULL. */
int src_raw_new(const char *path, int fd, uint64_t file_size, struct stream_src **ret, char **ret_error);
int src_zstd_new(const char *path, int fd, uint64_t file_size, struct stream_src **ret, char **ret_error);
int src_xz_new(const char *path, int fd, uint64_t file_size, struct stream_src **ret, char **ret_error);
int src_gzip_new(const char *path, int fd, uint64_t file_size, struct stream_src **ret, char **ret_error);

/* Allocate a zeroed stream of `size` bytes (>= sizeof(struct stream_src)) for path, taking fd.
 * NULL on OOM (fd closed). */
struct stream_src *stream_alloc(size_t size, const char *path, int fd);

/* Wrap a stream with the bmap read from bmap_fd (a regular file, named bmap_path in messages):
 * only the mapped ranges are produced. Takes ownership of inner and bmap_fd (also on failure).
 * Errors: -EINVAL for a malformed bmap or an ImageSize that differs from the image, with
 * *ret_error; -EIO, -ENOMEM. */
int src_bmap_new(struct stream_src *inner, int bmap_fd, const char *bmap_path, struct blksrc **ret, char **ret_error);

/* Parse bmap XML text into sorted, merged, 4096-aligned byte ranges clipped to the image size.
 * ret_ranges: malloc'd array of 2*n uint64 (start, end). Exposed for tests. */
int bmap_parse(const char *xml, size_t len, uint64_t *ret_image_size, uint64_t **ret_ranges, size_t *ret_n,
	       char **ret_error);
