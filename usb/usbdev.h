/* libusb side of a stick: find the USB device behind a port path ("2-1.3" = bus 2, ports 1
 * then 3; util/portpath.h) or a bus number + device address, read its descriptors (the
 * udev-mode listing's identity, usb/safety.c), and reset its port (usb/reset.c waits for it to
 * come back). libusb_init succeeds on a machine without any USB bus; lookups there end in
 * -ENODEV. The only file of usbforge that includes libusb besides the hotplug monitor. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "util/portpath.h"

struct usbdev_info {
	unsigned busnum;
	unsigned devaddr;		    /* device address on the bus (sysfs "devnum") */
	uint8_t ports[PORT_PATH_MAX_PORTS]; /* libusb_get_port_numbers() */
	int n_ports;
	uint16_t id_vendor, id_product;
	unsigned speed_mbps; /* 0 when libusb does not know */
	char *manufacturer;  /* string descriptors; NULL when unreadable (needs access to usbfs) */
	char *product;
	char *serial;
};

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
void usbdev_info_done(struct usbdev_info *i);

/* libusb_reset_device on the device at port_path: the stick drops its own cache and
 * re-enumerates. 0 (also when it re-enumerated as a new device); -EINVAL for a malformed path;
 * -ENODEV (no such device); -EACCES (no permission on usbfs); -EIO (other libusb failure). */
int usbdev_reset_port(const char *port_path);
