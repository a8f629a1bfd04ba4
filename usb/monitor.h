/* The hotplug watcher: a udev monitor on netlink ("udev" source when udevd runs, i.e.
 * /run/udev/control exists, else the kernel's own uevents) filtered to whole-disk block
 * devices, so the worker can rescan its slots when a stick arrives and notice at once when
 * one is pulled. The worker polls usb_monitor_fd() in its loop and calls usb_monitor_process()
 * when it is readable. Not thread-safe: one thread owns a monitor. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "config/config.h"

enum usb_monitor_action {
	USB_MONITOR_ADD,
	USB_MONITOR_REMOVE,
	USB_MONITOR_CHANGE, /* media or size change (also loop attach/detach) */
	_USB_MONITOR_ACTION_MAX,
};

/* "add", "remove", "change"; NULL out of range. */
const char *usb_monitor_action_name(enum usb_monitor_action a);

struct usb_monitor_event {
	enum usb_monitor_action action;
	const char *sysname; /* "sdb" */
	const char *devnode; /* "/dev/sdb", or NULL when the event carries none */
	dev_t devnum;
};

/* Called once per event; the strings are valid during the call only. */
typedef void (*usb_monitor_cb)(void *userdata, const struct usb_monitor_event *ev);

struct usb_monitor;

/* Open and start the monitor (cfg may be NULL; reserved for filters by mode). Returns 0;
 * -ENOMEM; -errno of the netlink socket (-EPERM without the right to listen). */
int usb_monitor_new(const struct uf_config *cfg, struct usb_monitor **ret);
struct usb_monitor *usb_monitor_free(struct usb_monitor *m);
/* The pollable descriptor (POLLIN when events wait); owned by m. */
int usb_monitor_fd(const struct usb_monitor *m);
/* Which netlink source is in use: "udev" or "kernel". */
const char *usb_monitor_source(const struct usb_monitor *m);
/* Deliver every waiting event for whole-disk block devices to cb, without blocking. Other
 * events (partitions, other subsystems) are read and dropped. Returns the number delivered
 * (0 when none waited). */
int usb_monitor_process(struct usb_monitor *m, usb_monitor_cb cb, void *userdata);
