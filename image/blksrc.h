/* Block sources: what the writing stage writes. A source is a stream of data extents in
 * increasing device-offset order, with holes allowed between them (a bmap'd sparse image, or
 * the free space of a composed FAT32 filesystem). Implementations: raw images, compressed
 * images (.zst, .xz, .gz; decoded as they are read), bmap-filtered images, and the FAT32
 * composer. The writer pulls from a source in its own thread.
 *
 * Errors: 0 or negative errno; a source sets a human-readable reason retrievable with
 * blksrc_error() (e.g. "image.zst: corrupt zstd frame at input byte 1234"). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct blksrc;

struct blksrc_ops {
	/* Fill buf (len bytes; len a multiple of 4096) with the next data. *ret_off is the device
	 * offset of buf[0], always a multiple of 4096. Returns the number of bytes filled (> 0),
	 * 0 at the end of the source, or -errno. A result shorter than len means the extent ended
	 * (a hole or the end follows); only the very last extent of a source may end at an offset
	 * that is not a multiple of 4096 (the writer pads it with zeros to the block size). */
	ssize_t (*read)(struct blksrc *s, void *buf, size_t len, uint64_t *ret_off);
	void (*free)(struct blksrc *s);
};

/* Embed first in every implementation. */
struct blksrc {
	const struct blksrc_ops *ops;
	uint64_t size;	 /* end offset: the device must hold at least this many bytes */
	uint64_t mapped; /* bytes of data the source will produce (== size when not sparse) */
	char *error;	 /* owned; last error text, NULL when none */
};

static inline ssize_t blksrc_read(struct blksrc *s, void *buf, size_t len, uint64_t *ret_off)
{
	return s->ops->read(s, buf, len, ret_off);
}
static inline const char *blksrc_error(const struct blksrc *s) { return s->error; }
/* Accepts NULL; returns NULL. */
struct blksrc *blksrc_free(struct blksrc *s);

/* Open an image file: raw (.img, .iso, anything else), .zst, .xz, .gz (by magic bytes, not
 * only the suffix). When PATH.bmap exists beside a raw image (or NAME.bmap beside the
 * compressed NAME.zst, …), only its mapped ranges are produced and `mapped` says how many
 * bytes. The size of a compressed image is known up front when the format records it (zstd
 * frame content size, xz index, gzip ISIZE for < 4 GiB); otherwise it is found by a decoding
 * pass. Only a regular file is opened, and never blocks (a FIFO or a device is refused); an
 * empty file, or one that decodes to nothing, is refused.
 *   blksrc_open_image(path)            path as given (the command line's SOURCE);
 *   blksrc_open_image_at(dirfd, rel)   rel beneath the directory dirfd (an order's image under
 *                                      content.images): open_beneath() confinement, the bmap
 *                                      too. dirfd AT_FDCWD means blksrc_open_image().
 * Errors: -errno from the open (-ENOENT, -EACCES, -EXDEV/-ELOOP for a path leaving dirfd,
 * -EINVAL for a special file or an empty image), -EINVAL (corrupt header / bad bmap); the
 * reason, naming the file, in *ret_error when not NULL (malloc'd). */
int blksrc_open_image(const char *path, struct blksrc **ret, char **ret_error);
int blksrc_open_image_at(int dirfd, const char *path, struct blksrc **ret, char **ret_error);
