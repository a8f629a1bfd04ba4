/* Which sticks and slots this kiosk would write to, and why not: the candidate list behind
 * `usbforge devices` and the worker's slot scan, and the one-off target check of `usbforge
 * write`. udev mode enumerates whole-disk block devices (libudev over sysfs; udevd need not
 * run) and identifies their USB ancestor; static mode takes each configured slot's path.
 * Eligibility follows usb/safety.h. In udev mode on the real sysfs, a USB disk's identity
 * comes from libusb's descriptors where libusb sees the device (sysfs otherwise) and its
 * capacity from BLKGETSIZE64 where its node opens read-only (sysfs size × 512 otherwise);
 * nothing here opens a node for writing, or any node of a disk that is not on USB. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "usb/safety.h"

struct usb_candidate {
	char *slot;    /* slot name; NULL when the device is not (or cannot be) a slot */
	char *devnode; /* "/dev/sdb" or a static slot's path; NULL for an empty slot */
	char *serial;
	char *vendor;
	char *model;
	uint64_t capacity_bytes;
	unsigned logical_block_size;
	unsigned usb_speed_mbps; /* 0 when unknown or not USB */
	char *port_path;	 /* "2-1.3"; for an empty udev slot, the configured port */
	char *root_hub;		 /* "usb2" */
	bool eligible;
	char *reason; /* why not eligible; NULL when eligible */
	/* Additions beyond the DESIGN.md columns (usb/ extension): */
	bool is_block;	      /* a block device (false for a regular file or an empty slot) */
	dev_t devnum;	      /* device number of a block device, 0 otherwise */
	bool usb_descriptors; /* speed, serial, port path read from libusb (else sysfs only) */
	bool size_from_node;  /* capacity_bytes is BLKGETSIZE64 (else sysfs size × 512) */
};

/* List every candidate under cfg->usb.mode:
 * - identity and capacity of a USB disk in udev mode: see above (the hooks of struct usb_env;
 *   on the real sysfs usbdev_info_get_by_address() and usb_node_size() unless env sets
 *   others; on an injected sysfs only the hooks env sets).
 * - udev: every whole disk that is on USB, or has a medium (size > 0), in sysfs. With
 *   configured slots, a USB disk on a mapped port gets that slot's name; a USB disk on an
 *   unmapped port is ineligible ("port P is not mapped to a slot"); a configured slot with
 *   no stick is listed with devnode NULL, eligible false, reason "empty". Without slots, each
 *   eligible USB disk is a slot named after its port path.
 * - static: one entry per configured slot, in config order (regular file: eligible; block
 *   device: the safety rules except "not on USB"; missing: ineligible with the errno text).
 * Order: configured slots in config order first, then the rest by devnode.
 * *ret (array, free with usb_candidates_free) and *ret_n are written on success.
 * Errors: -ENOMEM, -errno of reading sysfs or libudev. */
int usb_list_candidates(const struct uf_config *cfg, struct usb_candidate **ret, size_t *ret_n);
/* The same against another sysfs root / mountinfo / swaps (tests). With a non-default sysfs,
 * enumeration reads <sysfs>/class/block instead of asking libudev. */
int usb_list_candidates_env(const struct usb_env *env, const struct uf_config *cfg, struct usb_candidate **ret,
			    size_t *ret_n);
/* Accepts NULL; returns NULL. */
struct usb_candidate *usb_candidates_free(struct usb_candidate *c, size_t n);

/* The size in bytes of the block device node devnode, which must still be device devnum:
 * opened O_RDONLY|O_CLOEXEC (no O_EXCL, never for writing), BLKGETSIZE64, closed. Returns 0;
 * -errno of open (-ENOENT, -EACCES, -ENOMEDIUM for a reader without a card…); -ENOTBLK when
 * devnode is not a block device; -ENODEV when it is another device than devnum; -errno of
 * the ioctl. */
int usb_node_size(const char *devnode, dev_t devnum, uint64_t *ret_bytes);

/* May path be written under the mode in force? A regular file always may (0). A block device
 * must pass the safety rules of the mode (udev: on USB, and on a mapped port when slots are
 * configured; both modes: whole disk, not mounted/swap/root/held, writable). Returns 0;
 * -EPERM with *ret_reason (malloc'd) when refused; -ENOENT (and a reason) when path does not
 * exist; -ENOMEM. Never opens path. */
int usb_target_check(const struct uf_config *cfg, const char *path, char **ret_reason);
int usb_target_check_env(const struct usb_env *env, const struct uf_config *cfg, const char *path, char **ret_reason);
