/* The fake-capacity probe: in seconds, proves that every address a stick reports is backed
 * by its own flash. It writes self-describing tagged 4 KiB blocks (a random per-run nonce,
 * the block's offset, a checksum) at a set of offsets chosen so that any address aliasing
 * (off mod R for any real size R) makes two probed blocks collide: a contiguous run of
 * m = ceil(sqrt(N)) blocks at the start and every m-th block up to the end (plus the last),
 * written high to low; then syncs, resets the device (caches dropped, stick reset in udev
 * mode) and reads them back with O_DIRECT. A block showing another block's tag is
 * wrap-around; a block showing no valid tag (zeros, 0xff, stale data) or failing I/O is
 * limbo/short; the boundary of a limbo region is refined in one more round. What it
 * overwrote is read first and written back (below the usable size, i.e. everything on a
 * genuine stick). */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blkio/dev.h"

enum probe_verdict {
	PROBE_GENUINE,
	PROBE_WRAPAROUND, /* high addresses alias low ones */
	PROBE_LIMBO,	  /* writes beyond the real size are lost */
	PROBE_SHORT,	  /* I/O beyond the real size fails */
	_PROBE_MAX,
};
/* "genuine", "wraparound", "limbo", "short"; NULL out of range. */
const char *probe_verdict_name(enum probe_verdict v);

struct probe_result {
	enum probe_verdict verdict;
	uint64_t reported_size;	       /* dev_size() */
	uint64_t usable_size;	       /* bytes proven real (== reported_size when genuine) */
	uint64_t blocks_probed;	       /* tagged blocks written */
	uint64_t alias_from, alias_to; /* wraparound: a block at alias_from read alias_to's tag */
	bool restored;		       /* the overwritten blocks were written back */
};

/* Probe d (opened for writing). cancel may be NULL. Returns 0 with the verdict in *ret (a fake
 * is a result, not an error). Errors: -EROFS (read-only), gone (dev_errno_is_gone), -EIO when
 * the very first block cannot be written or read, -ECANCELED, -ENOMEM. */
int probe_run(struct dev *d, atomic_bool *cancel, struct probe_result *ret);
