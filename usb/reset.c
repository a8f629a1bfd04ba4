/* The USB reset between write and verify (reset.h): the hook the device table runs, which
 * resets the stick's port through libusb (usbdev.c) and waits on a udev monitor until the same
 * stick's block device is back. */
#include "usb/reset.h"

#include <errno.h>
#include <libudev.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "usb/sysfs.h"
#include "usb/usbdev.h"
#include "util/macro.h"
#include "util/monotime.h"

struct usbreset {
	char *port_path;
	char *serial;
	char *devnode;
	unsigned timeout_ms;
};

struct disk_match {
	const struct usb_env *env;
	const char *serial, *port_path;
	char *devnode; /* the match */
};

/* 1 (stop) with m->devnode when syspath is the disk looked for, 0 to go on, -ENOMEM. */
static int match_disk(const char *syspath, void *userdata)
{
	struct disk_match *m = userdata;
	struct usb_disk_facts f;
	int r = usb_disk_facts_from_syspath(m->env, syspath, NULL, &f);
	if (r < 0)
		return r == -ENOMEM ? r : 0;
	bool match = f.whole_disk && f.on_usb && f.size_bytes > 0 &&
		     (m->serial ? f.serial && strcmp(f.serial, m->serial) == 0
				: f.port_path && m->port_path && strcmp(f.port_path, m->port_path) == 0);
	if (match)
		m->devnode = TAKE_PTR(f.devnode);
	usb_disk_facts_done(&f);
	return match;
}

/* 1 and *ret_devnode when a matching disk exists now, 0 when not, -errno. */
static int scan_for_disk(const struct usb_env *env, const char *serial, const char *port_path, char **ret_devnode)
{
	struct disk_match m = { .env = env, .serial = serial, .port_path = port_path };
	int r = sysfs_for_each_block(env->sysfs, match_disk, &m);
	if (r > 0)
		*ret_devnode = m.devnode;
	return r;
}

int usbreset_wait_for_disk(const struct usb_env *env_in, const char *serial, const char *port_path, unsigned timeout_ms,
			   char **ret_devnode)
{
	struct usb_env env = usb_env_resolve(env_in);
	int64_t deadline = mono_ms() + timeout_ms;
	int r;

	if (!serial && !port_path)
		return -EINVAL;

	/* Listen before looking, so an arrival between the scan and the poll is not missed. */
	struct udev *udev = udev_new();
	if (!udev)
		return -ENOMEM;
	struct udev_monitor *mon = udev_monitor_new_from_netlink(udev, "kernel");
	if (!mon) {
		r = -ENOMEM;
		goto out_udev;
	}
	r = udev_monitor_filter_add_match_subsystem_devtype(mon, "block", NULL);
	if (r >= 0)
		r = udev_monitor_enable_receiving(mon);
	if (r < 0)
		goto out;

	for (;;) {
		char *devnode = NULL;
		r = scan_for_disk(&env, serial, port_path, &devnode);
		if (r < 0)
			goto out;
		if (r > 0) {
			*ret_devnode = devnode;
			r = 0;
			goto out;
		}
		int64_t left = deadline - mono_ms();
		if (left <= 0) {
			r = -ETIMEDOUT;
			goto out;
		}
		struct pollfd pfd = { .fd = udev_monitor_get_fd(mon), .events = POLLIN };
		int k = poll(&pfd, 1, (int)MIN(left, (int64_t)INT32_MAX));
		if (k < 0 && errno != EINTR) {
			r = negative_errno();
			goto out;
		}
		/* Drain whatever arrived; the next scan decides. */
		struct udev_device *ev;
		while ((ev = udev_monitor_receive_device(mon)))
			udev_device_unref(ev);
	}
out:
	udev_monitor_unref(mon);
out_udev:
	udev_unref(udev);
	return r;
}

int usbreset_new(const char *devnode, unsigned timeout_ms, struct usbreset **ret)
{
	struct stat st;
	if (stat(devnode, &st) < 0)
		return -errno;
	if (!S_ISBLK(st.st_mode))
		return -ENODEV;
	struct usb_disk_facts f;
	int r = usb_disk_facts_from_devnum(NULL, st.st_rdev, &f);
	if (r < 0)
		return r == -ENOENT ? -ENODEV : r;
	if (!f.on_usb || !f.port_path) {
		usb_disk_facts_done(&f);
		return -ENODEV;
	}
	struct usbreset *u = calloc(1, sizeof(*u));
	if (!u) {
		usb_disk_facts_done(&f);
		return -ENOMEM;
	}
	u->port_path = TAKE_PTR(f.port_path);
	u->serial = TAKE_PTR(f.serial);
	u->devnode = strdup(devnode);
	u->timeout_ms = timeout_ms;
	usb_disk_facts_done(&f);
	if (!u->devnode) {
		usbreset_free(u);
		return -ENOMEM;
	}
	*ret = u;
	return 0;
}

struct usbreset *usbreset_free(struct usbreset *u)
{
	if (u) {
		free(u->port_path);
		free(u->serial);
		free(u->devnode);
		free(u);
	}
	return NULL;
}

int usbreset_hook(void *userdata, const char *path, char **ret_new_path)
{
	struct usbreset *u = userdata;
	int r = usbdev_reset_port(u->port_path);
	if (r < 0)
		return r;
	char *devnode = NULL;
	r = usbreset_wait_for_disk(NULL, u->serial, u->port_path, u->timeout_ms, &devnode);
	if (r < 0)
		return r;
	if (strcmp(devnode, path) == 0) {
		free(devnode);
		*ret_new_path = NULL;
	} else {
		*ret_new_path = devnode;
	}
	return 0;
}

int usbreset_install(struct dev *d, unsigned timeout_ms, struct usbreset **ret)
{
	struct usbreset *u = NULL;
	int r = usbreset_new(dev_name(d), timeout_ms, &u);
	if (r < 0)
		return r;
	dev_set_reset_hook(d, usbreset_hook, u);
	*ret = u;
	return 0;
}
