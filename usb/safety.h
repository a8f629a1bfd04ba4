/* What usb/ knows about one block device before it may be written, and the rules that decide
 * it: whole disk, on USB (udev mode), not mounted (itself or any partition), not swap, not
 * holding the root filesystem, not held by another device, not read-only. Facts come from
 * sysfs, /proc/self/mountinfo and /proc/swaps (both read with libmount), and every one of
 * those paths is injectable (struct usb_env) so the rules run on a fake sysfs tree and fake
 * mount and swap tables in the unit tests. Only when the caller's env asks for it (the
 * udev-mode listing of discover.c does, on the real sysfs) are a USB disk's identity and size
 * also taken from libusb's descriptors and from the device node opened read-only for
 * BLKGETSIZE64; the safety facts never depend on either, and nothing here opens a node for
 * writing. Used by discover.c and by the CLI's write command (through usb_target_check in
 * discover.h). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"

struct usbdev_info;

/* Where the facts are read from. NULL paths mean the real system's path. */
struct usb_env {
	const char *sysfs;     /* "/sys" */
	const char *mountinfo; /* "/proc/self/mountinfo" */
	const char *swaps;     /* "/proc/swaps" */
	const char *locks;     /* "/proc/locks" */
	/* Optional sources beside sysfs for a disk on USB; NULL: not asked (usb_env_resolve keeps
	 * them NULL; discover.c's udev listing sets the real ones when env's sysfs is /sys).
	 * usb_info: usbdev_info_get_by_address()'s contract (usb/usbdev.h), called with the
	 * usb_device's busnum and devnum; any error but -ENOMEM means "libusb does not know it"
	 * and sysfs stands. node_size: usb_node_size()'s contract (usb/discover.h); on any error
	 * but -ENOMEM the capacity is sysfs size × 512. */
	int (*usb_info)(unsigned busnum, unsigned devaddr, struct usbdev_info *ret);
	int (*node_size)(const char *devnode, dev_t devnum, uint64_t *ret_bytes);
};

struct usb_disk_facts {
	char *syspath; /* resolved sysfs directory of the block device */
	char *sysname; /* "sdb", "loop3" */
	char *devnode; /* "/dev/sdb" (from uevent DEVNAME) */
	dev_t devnum;
	bool whole_disk;	     /* no "partition" attribute */
	bool ro;		     /* sysfs "ro" */
	bool removable;		     /* sysfs "removable" (informational only) */
	uint64_t size_bytes;	     /* sysfs "size" × 512, or env->node_size's answer */
	bool size_from_node;	     /* size_bytes is BLKGETSIZE64 of the node (env->node_size) */
	unsigned logical_block_size; /* queue/logical_block_size, 512 when absent */

	/* The USB device ancestor (udev mode identity); all NULL/0 when not on USB. */
	bool on_usb;
	char *usb_syspath;
	char *port_path; /* "2-1.3": libusb's bus + port numbers, else the usb_device's sysname */
	char *root_hub;	 /* "usb2" */
	unsigned busnum;
	unsigned devaddr;	      /* the usb_device's "devnum": its address on the bus */
	char *id_vendor, *id_product; /* "46f4", "0001" (sysfs, else libusb's descriptor) */
	char *vendor;	      /* manufacturer (sysfs, else libusb's string), else the SCSI vendor, else idVendor */
	char *model;	      /* product (sysfs, else libusb's string), else the SCSI model, else idProduct */
	char *serial;	      /* libusb's serial string, else the sysfs usb serial, else the block
	                   * device's "serial" attribute */
	unsigned speed_mbps;  /* libusb's, else sysfs "speed" */
	bool usb_descriptors; /* env->usb_info found the device: libusb's speed, serial and port
	                       * path are in, sysfs filled in only what libusb lacked */

	/* Safety. */
	bool holds_root;
	char *mounted_at;  /* first mount point of the disk or a partition, NULL when none */
	char *mounted_dev; /* the sysname mounted there */
	char *swap_dev;	   /* the sysname used as swap, NULL when none */
	char *holder;	   /* a device stacked on it or a partition (dm-0, md0), NULL when none */
};

/* Fill in the defaults for NULL members (the returned struct points to static strings). */
struct usb_env usb_env_resolve(const struct usb_env *env);

/* Gather the facts of the block device whose sysfs directory is syspath (any path resolving
 * to it, e.g. <sysfs>/class/block/sdb). usb_syspath names its usb_device ancestor when the
 * caller already knows it (libudev), or NULL to find it by walking the sysfs parents (a
 * directory whose "subsystem" links to "usb" and whose uevent says DEVTYPE=usb_device).
 * Returns 0, -ENOENT when syspath does not exist, -ENOMEM. ret is initialised only on
 * success; release with usb_disk_facts_done(). */
int usb_disk_facts_from_syspath(const struct usb_env *env, const char *syspath, const char *usb_syspath,
				struct usb_disk_facts *ret);
/* The same for a device number (<sysfs>/dev/block/MAJ:MIN). -ENOENT when unknown. */
int usb_disk_facts_from_devnum(const struct usb_env *env, dev_t devnum, struct usb_disk_facts *ret);
void usb_disk_facts_done(struct usb_disk_facts *f);

/* Apply the rules of mode to f. Returns 0 when eligible; -EPERM when not, with *ret_reason
 * (malloc'd) saying why, the gravest reason first; -ENOMEM. Port-to-slot mapping is not
 * judged here (discover.c does it). */
int usb_disk_check(const struct usb_disk_facts *f, enum usb_mode mode, char **ret_reason);

/* Does the regular file with this identity (st_dev and st_ino of the caller's stat or fstat,
 * never a name) back a loop device? Each attached loop device of <sysfs>/block is asked for
 * its backing file's identity: LOOP_GET_STATUS64 on its node opened read-only (real sysfs
 * only), else stat() of its sysfs loop/backing_file. Returns 0 when none does; -EPERM with
 * *ret_reason (malloc'd), e.g. "backs loop device /dev/loop3 (mounted at /mnt)" or "backs
 * loop device /dev/loop3 (not mounted)"; -ENOMEM; -errno when <sysfs>/block cannot be read
 * (a sysfs without it has no block device, so none).
 * Never opens a node for writing. */
int usb_file_backs_loop(const struct usb_env *env, dev_t dev, ino_t ino, char **ret_reason);

/* Is the file with this identity under a flock (an exclusive or shared lock of another open:
 * another usbforge writing it, or a verify reading it)? Read from env->locks ("/proc/locks").
 * Returns 0 when not; 1 with *ret_who (malloc'd) naming the holder: "usbforged (pid 1234)",
 * or "another process" when its pid is not visible here; -ENOMEM. An unreadable locks file
 * reads as "not locked" (the flock taken at open is what guards; this only names). */
int usb_file_lock_holder(const struct usb_env *env, dev_t dev, ino_t ino, char **ret_who);
