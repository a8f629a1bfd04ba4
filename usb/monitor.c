/* Hotplug watcher over a libudev netlink monitor. See usb/monitor.h. */
#include "usb/monitor.h"

#include <errno.h>
#include <libudev.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct usb_monitor {
	struct udev *udev;
	struct udev_monitor *mon;
	const char *source;
};

static const char *const action_names[_USB_MONITOR_ACTION_MAX] = {
	[USB_MONITOR_ADD] = "add",
	[USB_MONITOR_REMOVE] = "remove",
	[USB_MONITOR_CHANGE] = "change",
};

const char *usb_monitor_action_name(enum usb_monitor_action a)
{
	if ((unsigned)a >= _USB_MONITOR_ACTION_MAX)
		return NULL;
	return action_names[a];
}

int usb_monitor_new(const struct uf_config *cfg, struct usb_monitor **ret)
{
	(void)cfg;
	struct usb_monitor *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->source = access("/run/udev/control", F_OK) == 0 ? "udev" : "kernel";
	m->udev = udev_new();
	if (!m->udev) {
		free(m);
		return -ENOMEM;
	}
	m->mon = udev_monitor_new_from_netlink(m->udev, m->source);
	int r = m->mon ? 0 : (errno > 0 ? -errno : -ENOMEM);
	if (r >= 0)
		r = udev_monitor_filter_add_match_subsystem_devtype(m->mon, "block", "disk");
	if (r >= 0)
		r = udev_monitor_enable_receiving(m->mon);
	if (r < 0) {
		usb_monitor_free(m);
		return r;
	}
	*ret = m;
	return 0;
}

struct usb_monitor *usb_monitor_free(struct usb_monitor *m)
{
	if (m) {
		udev_monitor_unref(m->mon);
		udev_unref(m->udev);
		free(m);
	}
	return NULL;
}

int usb_monitor_fd(const struct usb_monitor *m)
{
	return udev_monitor_get_fd(m->mon);
}

const char *usb_monitor_source(const struct usb_monitor *m)
{
	return m->source;
}

int usb_monitor_process(struct usb_monitor *m, usb_monitor_cb cb, void *userdata)
{
	int n = 0;
	struct udev_device *d;

	/* The socket is non-blocking: NULL means drained (or one bad message; the next poll
	 * wakes us again if more wait). */
	while ((d = udev_monitor_receive_device(m->mon))) {
		const char *sub = udev_device_get_subsystem(d);
		const char *type = udev_device_get_devtype(d);
		const char *action = udev_device_get_action(d);
		struct usb_monitor_event ev = { 0 };
		bool ok = sub && type && action && strcmp(sub, "block") == 0 && strcmp(type, "disk") == 0;
		if (ok) {
			if (strcmp(action, "add") == 0)
				ev.action = USB_MONITOR_ADD;
			else if (strcmp(action, "remove") == 0)
				ev.action = USB_MONITOR_REMOVE;
			else if (strcmp(action, "change") == 0)
				ev.action = USB_MONITOR_CHANGE;
			else
				ok = false;
		}
		if (ok) {
			ev.sysname = udev_device_get_sysname(d);
			ev.devnode = udev_device_get_devnode(d);
			ev.devnum = udev_device_get_devnum(d);
			if (cb)
				cb(userdata, &ev);
			n++;
		}
		udev_device_unref(d);
	}
	return n;
}
