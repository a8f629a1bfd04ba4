/* The verifier: reads a device back with O_DIRECT in large aligned reads (one device thread
 * reading ahead while the caller hashes or compares, so reading and checking overlap) and
 * proves it holds what was written. Never the page cache: every read is O_DIRECT through the
 * device table, and the stage calls dev_reset() first (drops the kernel's buffers and, in
 * udev mode, resets the stick so its own cache is gone too).
 *
 * Two modes: against a writer's chunk hashes (verify_chunks, or writer_verify() of writer.h: only the
 * written extents are read, or the whole span with `full`), and against a source decoded
 * again (verify_source: byte by byte, for `usbforge verify DEVICE SOURCE`). Both name the
 * first bad byte: the source mode directly; the hash mode names the bad chunk and, when
 * opts->reopen can open the source again, compares that chunk byte by byte. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "image/blksrc.h"
#include "blkio/chunkmap.h"
#include "blkio/dev.h"

typedef void (*verify_progress_fn)(void *userdata, uint64_t done, uint64_t total);

struct verify_opts {
	size_t buffer_size;   /* bytes per read (multiple of 4096 and of the block size) */
	unsigned queue_depth; /* reads in flight (>= 2) */
	double stall_timeout; /* seconds a read may take; <= 0: no watchdog */
	bool full;	      /* hash mode: read the whole device, [0, its size), not only the
	                        * written extents: every block must read back (a failing or
	                        * missing block is -EIO at its offset), the written bytes are
	                        * compared; the rest is read for readability, not compared */
	/* Optional: open the source again to name the exact bad byte of a bad chunk. */
	int (*reopen)(void *userdata, struct blksrc **ret);
	void *reopen_userdata;
	verify_progress_fn progress; /* bytes checked of total; may be NULL */
	void *progress_userdata;
};

struct verify_result {
	uint64_t bad_offset; /* first bad byte (or start of the bad chunk when !exact) */
	bool exact;	     /* bad_offset names the exact byte/block */
	uint64_t bytes_read; /* bytes read from the device */
};

/* Check the device against chunk hashes: ext/n_ext the written extents (sorted), chunks the
 * expected windows (sorted), cs the chunk size. Returns 0 when every chunk matches.
 * Errors: -EBADMSG (a chunk differs), -EIO (a read failed; bad_offset = the failing block),
 * gone (dev_errno_is_gone), -ETIMEDOUT (a read stalled), -ECANCELED, -ENOMEM, -EINVAL (bad
 * opts). ret is filled on success and on -EBADMSG/-EIO/-ETIMEDOUT. */
int verify_chunks(struct dev *d, const struct wextent *ext, size_t n_ext, const struct wchunk *chunks, size_t n_chunks,
		  uint64_t cs, const struct verify_opts *o, atomic_bool *cancel, struct verify_result *ret);
/* Compare the device with src, decoded again, byte for byte (mapped extents only). Same
 * errors as verify_chunks; -EBADMSG names the exact byte; source errors are returned as
 * they come from blksrc_read with ret->bad_offset = UINT64_MAX. */
int verify_source(struct dev *d, struct blksrc *src, const struct verify_opts *o, atomic_bool *cancel,
		  struct verify_result *ret);
/* Find the first byte in [ws, we) where the device differs from src (a fresh source, read
 * from its start). Errors: -ENOENT (no difference found: the chunk reads good now), source or
 * device errors. */
int verify_locate(struct dev *d, struct blksrc *src, uint64_t ws, uint64_t we, uint64_t *ret_off);
