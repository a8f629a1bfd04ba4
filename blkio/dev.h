/* The device table: every byte usbforge writes to or reads from a target goes through one of
 * these. Implementations: block devices and regular files (dev.c, O_DIRECT + O_EXCL), and a
 * faulty wrapper for tests (dev_faulty.c). Stages and tests use only this header; it pulls in
 * no libudev, libusb or database headers.
 *
 * Alignment: buffers, offsets and lengths passed to pread/pwrite must be multiples of
 * dev_block_size() (the logical block size; 4096 is always safe). Use dev_alloc_buf() for
 * buffers.
 *
 * Errors: 0 or a negative errno. -ENODEV / -ENXIO / -ENOMEDIUM mean the device is gone;
 * -ETIMEDOUT means an operation stalled; -EIO an I/O error; -EROFS read-only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/ufcode.h"

struct dev;

struct dev_ops {
	/* Read exactly len bytes at off. A short read of a regular file past its end returns
	 * zeros for the missing part. */
	int (*pread)(struct dev *d, void *buf, size_t len, uint64_t off);
	/* Write exactly len bytes at off (retries short writes; a write that makes no progress
	 * is -EIO, a full target -ENOSPC). */
	int (*pwrite)(struct dev *d, const void *buf, size_t len, uint64_t off);
	/* fdatasync; -ENODEV for a regular file that was unlinked meanwhile (dev_unlinked). */
	int (*sync)(struct dev *d);
	/* Make the next reads come from the medium, not from any cache: drop the kernel's
	 * buffers for the device (BLKFLSBUF / POSIX_FADV_DONTNEED) and, when a reset hook is
	 * installed (udev mode: USB reset via libusb), run it and reopen the device. */
	int (*reset)(struct dev *d);
	void (*free)(struct dev *d);
	/* The device this one wraps and forwards to (a faulty wrapper's inner device), or NULL
	 * for a device of its own; the operation itself may be NULL for the latter. Lets the
	 * table reach the real descriptor (dev_stat, dev_set_reset_hook) through any wrapper. */
	struct dev *(*inner)(struct dev *d);
};

/* Embed first in every implementation. */
struct dev {
	const struct dev_ops *ops;
	char *name;	     /* path or description, for messages; owned */
	uint64_t size;	     /* bytes the device reports */
	unsigned block_size; /* logical block size (alignment unit) */
	bool is_block;	     /* a block device rather than a regular file */
};

enum dev_open_flags {
	DEV_OPEN_WRITE = 1 << 0,     /* open read-write (O_EXCL for block devices) */
	DEV_OPEN_NO_DIRECT = 1 << 1, /* buffered I/O (only for filesystems without O_DIRECT) */
};

/* Open a block device or regular file with O_DIRECT|O_CLOEXEC (O_EXCL for a block device
 * opened for writing, so a mounted or busy device is refused by the kernel). The open itself
 * is O_NONBLOCK and the descriptor is checked with fstat, so a path that turned into a FIFO
 * never blocks. A regular file is held under flock for the life of the device: exclusive when
 * opened for writing, shared otherwise. A regular file opened for writing keeps its size;
 * `size` is its current length. Errors: -errno of open (-EBUSY: a block device opened
 * exclusively by another process, or mounted; -EPERM/-EACCES: no write access, an immutable
 * file), -EROFS when the device is read-only and DEV_OPEN_WRITE was asked, -ENOTBLK when path
 * is neither a block device nor a regular file, -EAGAIN when a regular file is locked by
 * another open (another usbforge writing it; usb_file_lock_holder() in usb/safety.h names
 * it). */
int dev_open(const char *path, unsigned flags, struct dev **ret);

/* A hook run by reset() after the caches are dropped, e.g. a libusb port reset that waits
 * for the same stick to come back. It may return a new path to reopen (malloc'd) or NULL to
 * reopen the same path. Installed by usb/ in udev mode; none by default. */
typedef int (*dev_reset_hook_t)(void *userdata, const char *path, char **ret_new_path);
void dev_set_reset_hook(struct dev *d, dev_reset_hook_t hook, void *userdata);

static inline int dev_pread(struct dev *d, void *buf, size_t len, uint64_t off)
{
	return d->ops->pread(d, buf, len, off);
}
static inline int dev_pwrite(struct dev *d, const void *buf, size_t len, uint64_t off)
{
	return d->ops->pwrite(d, buf, len, off);
}
static inline int dev_sync(struct dev *d) { return d->ops->sync(d); }
static inline int dev_reset(struct dev *d) { return d->ops->reset(d); }
static inline uint64_t dev_size(const struct dev *d) { return d->size; }
static inline unsigned dev_block_size(const struct dev *d) { return d->block_size; }
static inline const char *dev_name(const struct dev *d) { return d->name; }
/* Accepts NULL; returns NULL. */
struct dev *dev_free(struct dev *d);

/* fstat of the open descriptor under d (through faulty wrappers). 0 or -errno; -ENODEV while
 * closed (between a reset and its reopen). */
struct stat;
int dev_stat(struct dev *d, struct stat *ret);
/* True when d is a regular file whose every name was removed since it was opened (st_nlink 0):
 * whatever it holds, no one will ever read it. dev_sync() then fails with -ENODEV. */
bool dev_unlinked(struct dev *d);

/* Buffer aligned for O_DIRECT on any device (4096-byte alignment); free() it. NULL on OOM. */
void *dev_alloc_buf(size_t len);
/* The same for a buffer that will be filled completely, again and again: when len >= 2 MiB it is
 * aligned to 2 MiB and backed by transparent huge pages where the kernel allows. A huge page is
 * zeroed whole at its first touch: a buffer mostly left untouched is cheaper from
 * dev_alloc_buf. */
void *dev_alloc_buf_filled(size_t len);

/* True for errors that mean "the device went away" (ENODEV, ENXIO, ENOMEDIUM, ESHUTDOWN). */
bool dev_errno_is_gone(int r);
/* Did the device go away, judging by the error r of an operation on d (0: none; d may be NULL
 * for an open that failed) and, when d is open, by what its path names now? The one check
 * of usbforge for "gone": a gone errno (above) or -ENOENT; a regular file unlinked or its path
 * now naming another file; a block device whose node is gone, names another device, has left
 * sysfs, or is a loop device whose backing file was detached (it stays, with size 0). Checked
 * after an I/O error, so that a pulled stick reads DEVICE_GONE and not WRITE_IO, and after a
 * write that succeeded, so that a unit written into a deleted file is not called done. */
bool dev_gone(struct dev *d, int r);
/* The job error code for the error r of an operation on d (d may be NULL): the one errno →
 * code mapping of the device path. UFC_NONE for 0; CANCELLED for -ECANCELED; DEVICE_GONE when
 * dev_gone(); DEVICE_READ_ONLY for -EROFS, -EPERM, -EACCES (a stick that turned read-only, an
 * immutable slot file); WRITE_IO for -EIO, -ENOSPC, -ETIMEDOUT (a stalled call), -EFBIG;
 * PROCESSING_FAILED for anything else. */
enum uf_code dev_error_code(struct dev *d, int r);
/* The same for an error r of dev_open(path, flags): DEVICE_UNSAFE for -EAGAIN and -EBUSY (in
 * use: locked by another writer, opened exclusively, mounted; the caller hands the job back
 * rather than blame the stick) and -ENOTBLK (neither a block device nor a regular file);
 * DEVICE_READ_ONLY for -EROFS, and for -EPERM or -EACCES when writing; DEVICE_GONE for a gone
 * errno or -ENOENT; WRITE_IO for anything else (the target cannot be opened). */
enum uf_code dev_open_error_code(int r, unsigned flags);

/* ---- the faulty device, for tests -------------------------------------------------------- */

struct dev_fault {
	uint64_t real_size;	 /* 0: no limit. Otherwise the stick's true capacity: */
	bool wrap;		 /*   true: addresses beyond real_size alias (off % real_size) */
				 /*   false: writes beyond real_size are dropped ("limbo"),
	                          *          reads there return the fill pattern below */
	uint8_t limbo_fill;	 /* what limbo reads return (0x00 or 0xff usually) */
	bool short_eio;		 /* with wrap false: I/O beyond real_size fails with -EIO instead of
	                          * limbo (a "short" fake: the controller refuses the addresses) */
	uint64_t fail_write_at;	 /* 0: never. A write covering this offset fails with -EIO */
	int fail_write_errno;	 /*   … or with -this (EROFS, EPERM: a stick that turns read-only) */
	uint64_t fail_read_at;	 /* 0: never. A read covering this offset fails with -EIO */
	uint64_t flip_read_at;	 /* 0: never. Reads covering this offset see bit 0 of that byte flipped */
	uint64_t short_write_at; /* 0: never. A write covering this offset writes only up to it,
	                          *    silently (the data past it is lost, success returned) */
	uint64_t gone_after;	 /* 0: never. After this many bytes written, every op is -ENODEV */
	uint64_t report_size;	 /* 0: inner size. Otherwise the size the device claims */
	unsigned stall_sync_ms;	 /* 0: never. Every sync blocks this many milliseconds before it
	                          *    syncs (a stick whose cache flush hangs; for the stall
	                          *    watchdog: set it well above write.stall_timeout) */
};
/* Wrap inner (ownership taken, also on failure) with the faults described. Offsets in the
 * spec use 0 to mean "off"; to fault at offset 0 use the faulty device with fail_*_at = 1
 * inside the first block (any byte of a block faults the whole op covering it). */
int dev_new_faulty(struct dev *inner, const struct dev_fault *spec, struct dev **ret);
