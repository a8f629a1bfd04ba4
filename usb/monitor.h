/* The hotplug watcher: a udev monitor on netlink ("udev" source when udevd runs, i.e.
 * /run/udev/control exists, else the kernel's own uevents) filtered to whole-disk block
 * devices and USB devices, plus libusb hotplug callbacks (arrived/left, any device) when libusb
 * has the capability — so the worker can rescan its slots when a stick arrives and notice at
 * once when one is pulled. Both are behind one pollable descriptor (an epoll set of the netlink
 * socket and libusb's descriptors). A USB device's arrival or departure is reported once even
 * though both sources may see it: Debian's libusb learns of hotplug from udevd, so without
 * udevd only the kernel's usb_device uevents tell; with udevd both do and the later report is
 * dropped. The worker polls usb_monitor_fd() in its loop and calls usb_monitor_process() when it
 * is readable. Not thread-safe: one thread owns a monitor. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "config/config.h"

enum usb_monitor_action {
	USB_MONITOR_ADD,
	USB_MONITOR_REMOVE,
	USB_MONITOR_CHANGE,	/* media or size change (also loop attach/detach) */
	USB_MONITOR_USB_ADD,	/* a USB device (not a root hub) arrived: port_path is set */
	USB_MONITOR_USB_REMOVE, /* a USB device left: port_path is set */
	_USB_MONITOR_ACTION_MAX,
};

/* "add", "remove", "change", "usb_add", "usb_remove"; NULL out of range. */
const char *usb_monitor_action_name(enum usb_monitor_action a);

struct usb_monitor_event {
	enum usb_monitor_action action;
	const char *sysname;   /* "sdb"; for USB events the usb_device's name, equal to port_path */
	const char *devnode;   /* "/dev/sdb", or NULL when the event carries none (always for USB) */
	dev_t devnum;	       /* for USB events the usbfs node's number, 189:(bus-1)*128+address-1 (0 if unknown) */
	const char *port_path; /* USB events: "2-1.3" (bus 2, port 1, then port 3); NULL otherwise */
};

/* Called once per event; the strings are valid during the call only. */
typedef void (*usb_monitor_cb)(void *userdata, const struct usb_monitor_event *ev);

struct usb_monitor;

/* Open and start the monitor (cfg may be NULL; reserved for filters by mode). Returns 0;
 * -ENOMEM; -errno of the netlink socket (-EPERM without the right to listen) or of the epoll
 * set. libusb failing to start or lacking hotplug is not an error: the monitor then runs on
 * netlink alone (see usb_monitor_has_libusb()). */
int usb_monitor_new(const struct uf_config *cfg, struct usb_monitor **ret);
struct usb_monitor *usb_monitor_free(struct usb_monitor *m);
/* The pollable descriptor (POLLIN when events may wait); owned by m. */
int usb_monitor_fd(const struct usb_monitor *m);
/* Which netlink source is in use: "udev" or "kernel". */
const char *usb_monitor_source(const struct usb_monitor *m);
/* Whether libusb hotplug callbacks are registered (false: netlink only). */
bool usb_monitor_has_libusb(const struct usb_monitor *m);
/* Deliver every waiting event to cb, without blocking: whole-disk block devices (add, remove,
 * change) and USB devices other than root hubs (usb_add, usb_remove; each arrival and departure
 * once, whichever source saw it first). Other events (partitions, interfaces, other subsystems)
 * are read and dropped. Returns the number delivered (0 when none waited). */
int usb_monitor_process(struct usb_monitor *m, usb_monitor_cb cb, void *userdata);
