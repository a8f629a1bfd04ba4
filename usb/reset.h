/* The USB reset of udev mode, as a reset hook of the device table (blkio/dev.h): between
 * write and verify the stick's port is reset through libusb (usbdev_reset_port), so the
 * read-back comes from flash and not from the stick's own cache; the hook then waits — on a
 * udev monitor, bounded by a timeout, never by sleeping — until a block device with the same
 * serial (or, for sticks without one, on the same port) is back, and hands its devnode to the
 * device table. */
#pragma once

#include "blkio/dev.h"
#include "usb/safety.h"

/* Wait until a whole-disk block device on USB with this serial (or, when serial is NULL, on
 * this port path) and a medium exists in env's sysfs, for at most timeout_ms. Checks at once,
 * then after each block uevent (kernel netlink monitor). Returns 0 and the devnode
 * (malloc'd); -ETIMEDOUT; -ENOMEM; -errno of the monitor. */
int usbreset_wait_for_disk(const struct usb_env *env, const char *serial, const char *port_path, unsigned timeout_ms,
			   char **ret_devnode);

/* The state of a reset hook for one stick. */
struct usbreset;
/* For the block device at devnode (facts from sysfs): remembers its port path and serial.
 * Returns 0; -ENODEV when devnode is not a block device on USB; -errno of stat; -ENOMEM. */
int usbreset_new(const char *devnode, unsigned timeout_ms, struct usbreset **ret);
struct usbreset *usbreset_free(struct usbreset *r);
/* A dev_reset_hook_t: libusb_reset_device on the remembered port, then
 * usbreset_wait_for_disk(); *ret_new_path is NULL when the devnode is unchanged. Errors: -ENODEV
 * (no such USB device any more), -EACCES (no permission on usbfs), -ETIMEDOUT (did not come
 * back), -EIO (other libusb failure). userdata is a struct usbreset. */
int usbreset_hook(void *userdata, const char *path, char **ret_new_path);
/* Convenience: usbreset_new(dev_name(d)) then dev_set_reset_hook(d, …). *ret must outlive
 * d; free it after dev_free(d). */
int usbreset_install(struct dev *d, unsigned timeout_ms, struct usbreset **ret);
