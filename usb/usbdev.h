/* libusb side of a stick: find the USB device behind a port path ("2-1.3" = bus 2, ports 1
 * then 3) or a bus number + device address, read its descriptors (the udev-mode listing's
 * identity, usb/discover.c), and reset it between write and verify so the read-back comes
 * from flash and not from the stick's own cache. The reset hook waits — on a udev monitor,
 * bounded by a timeout, never by sleeping — until a block device with the same serial (or, for
 * sticks without one, on the same port) is back, and hands its devnode to the device table.
 * libusb_init succeeds on a machine without any USB bus; lookups there end in -ENODEV. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "blkio/dev.h"
#include "usb/safety.h"

#define USBDEV_MAX_PORTS 7

struct usbdev_info {
	unsigned busnum;
	unsigned devaddr;		 /* device address on the bus (sysfs "devnum") */
	uint8_t ports[USBDEV_MAX_PORTS]; /* libusb_get_port_numbers() */
	int n_ports;
	uint16_t id_vendor, id_product;
	unsigned speed_mbps; /* 0 when libusb does not know */
	char *manufacturer;  /* string descriptors; NULL when unreadable (needs access to usbfs) */
	char *product;
	char *serial;
};

/* "2-1.3" → bus 2, ports {1, 3}. Returns 0 or -EINVAL (malformed, bus 0, port 0 or > 255,
 * more than USBDEV_MAX_PORTS). Root hubs ("usb2") are not port paths. */
int usbdev_parse_port_path(const char *port_path, unsigned *ret_bus, uint8_t ret_ports[USBDEV_MAX_PORTS],
			   int *ret_n_ports);

/* Descriptors and speed of the device on port_path through libusb. Returns 0; -EINVAL for a
 * malformed path; -ENODEV when no such device (always so without a USB bus); -ENOMEM; -EIO
 * when libusb cannot start. Release with usbdev_info_done(). */
int usbdev_info_get(const char *port_path, struct usbdev_info *ret);
/* The same for the device at address devaddr on bus busnum (the "busnum" and "devnum"
 * attributes of its sysfs usb_device): how the udev-mode listing matches a block device's USB
 * ancestor to libusb's device list. Opens the device (usbfs) only to read its string
 * descriptors; when that is refused the strings are NULL and the rest is still returned.
 * Returns 0; -EINVAL (bus or address 0, or > 255); -ENODEV when libusb does not list such a
 * device (always so without a USB bus: libusb_init succeeds and lists 0 devices); -ENOMEM;
 * -EIO when libusb cannot start. Release with usbdev_info_done(). Successful answers are
 * cached per (bus, address) for a minute (thread-safe), so listing the sticks every poll does
 * not send each one descriptor requests every time. */
int usbdev_info_get_by_address(unsigned busnum, unsigned devaddr, struct usbdev_info *ret);
/* "2-1.3" from i's bus number and port numbers; -EINVAL when i has no ports (a root hub),
 * -ENOMEM. *ret is malloc'd. */
int usbdev_info_port_path(const struct usbdev_info *i, char **ret);
void usbdev_info_done(struct usbdev_info *i);

/* Wait until a whole-disk block device on USB with this serial (or, when serial is NULL, on
 * this port path) and a medium exists in env's sysfs, for at most timeout_ms. Checks at once,
 * then after each block uevent (kernel netlink monitor). Returns 0 and the devnode
 * (malloc'd); -ETIMEDOUT; -ENOMEM; -errno of the monitor. */
int usbdev_wait_for_disk(const struct usb_env *env, const char *serial, const char *port_path, unsigned timeout_ms,
			 char **ret_devnode);

/* The state of a reset hook for one stick. */
struct usbdev_reset;
/* For the block device at devnode (facts from sysfs): remembers its port path and serial.
 * Returns 0; -ENODEV when devnode is not a block device on USB; -errno of stat; -ENOMEM. */
int usbdev_reset_new(const char *devnode, unsigned timeout_ms, struct usbdev_reset **ret);
struct usbdev_reset *usbdev_reset_free(struct usbdev_reset *r);
/* A dev_reset_hook_t: libusb_reset_device on the remembered port, then
 * usbdev_wait_for_disk(); *ret_new_path is NULL when the devnode is unchanged. Errors: -ENODEV
 * (no such USB device any more), -EACCES (no permission on usbfs), -ETIMEDOUT (did not come
 * back), -EIO (other libusb failure). userdata is a struct usbdev_reset. */
int usbdev_reset_hook(void *userdata, const char *path, char **ret_new_path);
/* Convenience: usbdev_reset_new(dev_name(d)) then dev_set_reset_hook(d, …). *ret must outlive
 * d; free it after dev_free(d). */
int usbdev_install_reset_hook(struct dev *d, unsigned timeout_ms, struct usbdev_reset **ret);
