/* The pipelined block writer. It pulls extents from a block source in the calling thread
 * (decoding happens there) and hands aligned buffers to one device thread that hashes them
 * per chunk (XXH3-128) and writes them with O_DIRECT (dev_pwrite). The first 1 MiB
 * of the device is held back and written last, after a sync, so an interrupted stick never
 * carries a valid partition table or boot sector; dirty data is bounded by a sync every
 * WRITER_SYNC_EVERY bytes. A stall watchdog fails the run with -ETIMEDOUT when one device
 * call runs longer than opts->stall_timeout; the stuck thread is abandoned safely (see
 * writer_dev_free()).
 *
 * Chunks: the device is cut into windows of opts->buffer_size bytes (with an extra boundary
 * at 1 MiB so the held-back head is its own window); each window that receives data gets
 * one hash over the bytes written into it, in offset order (the last partial block padded
 * with zeros). The verifier (verify.h) compares the device against these hashes.
 *
 * Resume: writer_state_json() serializes what is durably on the device (chunk size, the
 * written extents and chunk hashes below the last sync, the high-water mark) as compact JSON.
 * A writer created with that JSON first re-reads those chunks from the device, keeps the good
 * prefix, and writes from the first bad (or missing) chunk on; the source is still decoded
 * and hashed from the start, and a chunk whose source hash differs from the recorded one
 * fails the run with -ESTALE (the image changed; start over without resume_json). */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "image/blksrc.h"
#include "blkio/chunkmap.h"
#include "blkio/dev.h"
#include "blkio/verify.h"

#define WRITER_HEAD	  (UINT64_C(1) << 20)
#define WRITER_SYNC_EVERY (UINT64_C(256) << 20)

/* How a target is written and read back (write.* and worker.capacity_tolerance of the config;
 * write_opts_from_config() in stages/stage.h fills it). */
struct write_opts {
	size_t buffer_size;   /* bytes per I/O buffer (multiple of 4096) */
	unsigned queue_depth; /* buffers in flight between reader and writer */
	bool verify;
	bool verify_full; /* verification reads the whole device (every block must read back;
	                              * the written ranges are compared), not only what was written */
	bool reset_before_verify;
	uint64_t sync_interval;	   /* fdatasync after this many bytes (0: WRITER_SYNC_EVERY); it also
	                              * paces the resume checkpoints */
	double stall_timeout;	   /* seconds a write/sync may take before WRITE_IO */
	double capacity_tolerance; /* 0.10: a stick may be 10% under its nominal size */
	bool probe;		   /* fake-capacity probe in validation */
};

struct writer;

struct writer_cbs {
	void *userdata;
	/* After each buffer: bytes of source data done (written or found good on resume) of
	 * `total` (= src->mapped). Called in writer_run's thread. May be NULL. */
	void (*progress)(void *userdata, uint64_t done, uint64_t total);
	/* After each periodic sync: the resume state (writer_state_json) to store. May be NULL. */
	void (*checkpoint)(void *userdata, const char *state_json);
};

struct writer_stats {
	uint64_t bytes_written;	 /* bytes sent to the device in this run (padding included) */
	uint64_t bytes_reused;	 /* bytes found good on the device by the resume check */
	uint64_t resume_from;	 /* device offset the resumed run wrote from (0: not resumed) */
	bool resumed;		 /* a usable resume state was given */
	const char *resume_note; /* why a given resume state was not used, or NULL */
	uint64_t bad_offset;	 /* the failing offset (device I/O error, stall, resume check) */
	const char *error;	 /* human-readable failure, or NULL */
	bool stalled;		 /* the run ended by the watchdog */
	bool image_error;	 /* the failure came from the source, not the device */
};

/* Prepare a write of src onto d. Borrowed: d, src (must outlive the writer); opts is copied. resume_json
 * may be NULL; an unusable one (different chunk size, malformed) is ignored, with the reason
 * in writer_stats()->resume_note. Errors: -EINVAL (buffer_size not a positive multiple of
 * 4096 and of the device block size, queue_depth < 2), -EFBIG (src->size > dev_size(d)),
 * -ENOMEM. */
int writer_new(struct dev *d, struct blksrc *src, const struct write_opts *opts, const char *resume_json,
	       struct writer **ret);
/* Run the write; once per writer. cancel may be NULL; it is checked at each buffer. Returns 0
 * when every byte is written and synced (head last). Errors: -ECANCELED; -ETIMEDOUT (stall;
 * bad_offset = the stuck call's offset); device errors from dev_pwrite/dev_sync (-EIO,
 * -ENOSPC, -EROFS, gone: dev_errno_is_gone()) with bad_offset = the first failing block
 * (a failed buffer is retried block by block to find it); -ESTALE (resume: the source
 * differs from the interrupted run, bad_offset = the chunk); source errors (negative errno
 * from blksrc_read, stats->image_error set, error = blksrc_error text); -ENOMEM. */
int writer_run(struct writer *w, atomic_bool *cancel, const struct writer_cbs *cbs);
const struct writer_stats *writer_stats(const struct writer *w);
/* The resume state of what is durable on the device now (after a failed run too): malloc'd
 * JSON. Errors: -ENOMEM. */
int writer_state_json(const struct writer *w, char **ret);
/* A resume state (writer_state_json's JSON) as the writer reads it back: the chunks recorded
 * durable, the extents written below them, the high-water mark. */
struct writer_resume {
	struct wchunk *chunks; /* increasing offsets, each >= CHUNK_HEAD */
	size_t n_chunks;
	struct wextent *ext; /* increasing, not overlapping */
	size_t n_ext;
	uint64_t hwm;
};
/* Parse TEXT (untrusted: it comes back from the database) for a writer with chunk size cs on
 * a device of dev_size bytes into *ret (release with writer_resume_done()). Errors: -EINVAL
 * (malformed or inconsistent), -ERANGE (recorded with another chunk size), -ENOMEM. *ret is
 * written only on success. */
int writer_resume_parse(const char *text, uint64_t cs, uint64_t dev_size, struct writer_resume *ret);
/* Free the arrays and zero *rs. NULL is accepted. */
void writer_resume_done(struct writer_resume *rs);
/* Accepts NULL; returns NULL. Does not free d or src. */
struct writer *writer_free(struct writer *w);

/* --- what the verifier needs: the written extents and chunk hashes (chunkmap.h) --------- */
/* Borrowed views of the writer's chunk list and extent list (valid until writer_free). */
const struct wchunk *writer_chunks(const struct writer *w, size_t *ret_n);
const struct wextent *writer_extents(const struct writer *w, size_t *ret_n);
uint64_t writer_chunk_size(const struct writer *w);
/* Read the device back against this writer's extents and chunk hashes (verify_chunks() of
 * verify.h, whose errors it returns). */
int writer_verify(const struct writer *w, struct dev *d, const struct verify_opts *o, atomic_bool *cancel,
		  struct verify_result *ret);

/* Free a device after a run, safely: when a stalled device thread was abandoned inside d, d
 * is handed to it and freed when its call returns; otherwise dev_free(d). Use this instead
 * of dev_free() for any device a writer or verifier ran on. Returns NULL. */
struct dev *writer_dev_free(struct dev *d);
