/* Hotplug watcher over a libudev netlink monitor and libusb hotplug callbacks, both behind one
 * epoll descriptor. See usb/monitor.h. USB arrivals and departures can be reported by both
 * sources; they are told apart per device (bus number + address, unique on a bus while the
 * device is attached and reassigned only after the counter wraps) by counting each source's
 * reports: a report is delivered only when its source is ahead of the other for that device,
 * so whichever source is first delivers and the other's matching report is dropped. */
#include "usb/monitor.h"

#include <errno.h>
#include <libudev.h>
#include <libusb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util/macro.h"
#include "util/portpath.h"
#include "util/log.h"

/* The Linux usbfs character devices: major 189, minor (bus - 1) * 128 + (address - 1). */
#define USBFS_MAJOR 189

enum source {
	SRC_NETLINK,
	SRC_LIBUSB,
	_SRC_MAX,
};

/* Reports per device and source, for the duplicate rule above. */
struct usb_seen {
	unsigned bus, addr;
	unsigned long n[_SRC_MAX];
};

/* A libusb hotplug report, queued by the callback until usb_monitor_process() delivers it. */
struct usb_pending {
	enum usb_monitor_action action;
	unsigned bus, addr;
	char *port_path;
};

struct usb_monitor {
	struct udev *udev;
	struct udev_monitor *mon;
	const char *source;
	int epfd;
	libusb_context *usb; /* NULL: netlink only */
	libusb_hotplug_callback_handle cb_handle;
	struct usb_pending *pending;
	size_t n_pending, cap_pending;
	struct usb_seen *seen;
	size_t n_seen, cap_seen;
};

static const char *const action_names[_USB_MONITOR_ACTION_MAX] = {
	[USB_MONITOR_ADD] = "add",	   [USB_MONITOR_REMOVE] = "remove",	    [USB_MONITOR_CHANGE] = "change",
	[USB_MONITOR_USB_ADD] = "usb_add", [USB_MONITOR_USB_REMOVE] = "usb_remove",
};

const char *usb_monitor_action_name(enum usb_monitor_action a)
{
	if ((unsigned)a >= _USB_MONITOR_ACTION_MAX)
		return NULL;
	return action_names[a];
}

/* Count a report of the device (bus, addr) from src; true when it is the first report of this
 * arrival or departure (src is now ahead of the other source). When the table cannot grow the
 * report is delivered: a duplicate is better than a lost removal. */
static bool first_report(struct usb_monitor *m, enum source src, unsigned bus, unsigned addr)
{
	struct usb_seen *s = NULL;
	for (size_t i = 0; i < m->n_seen && !s; i++)
		if (m->seen[i].bus == bus && m->seen[i].addr == addr)
			s = &m->seen[i];
	if (!s) {
		if (m->n_seen == m->cap_seen) {
			size_t cap = m->cap_seen ? 2 * m->cap_seen : 8;
			struct usb_seen *n = reallocarray(m->seen, cap, sizeof(*n));
			if (!n)
				return true;
			m->seen = n;
			m->cap_seen = cap;
		}
		s = &m->seen[m->n_seen++];
		*s = (struct usb_seen){ .bus = bus, .addr = addr };
	}
	s->n[src]++;
	return s->n[src] > s->n[src == SRC_NETLINK ? SRC_LIBUSB : SRC_NETLINK];
}

static bool deliver_usb(struct usb_monitor *m, enum source src, enum usb_monitor_action action, unsigned bus,
			unsigned addr, const char *port_path, usb_monitor_cb cb, void *userdata)
{
	if (!first_report(m, src, bus, addr)) {
		log_debug("monitor: %s %s from %s dropped: reported already", usb_monitor_action_name(action),
			  port_path, src == SRC_LIBUSB ? "libusb" : "netlink");
		return false;
	}
	struct usb_monitor_event ev = {
		.action = action,
		.sysname = port_path,
		.devnum = bus && addr ? makedev(USBFS_MAJOR, (bus - 1) * 128 + (addr - 1)) : 0,
		.port_path = port_path,
	};
	if (cb)
		cb(userdata, &ev);
	return true;
}

/* "002" → 2; 0 when absent or malformed (bus numbers and addresses start at 1). */
static unsigned parse_num(const char *s, unsigned max)
{
	if (!s || *s < '0' || *s > '9')
		return 0;
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return 0;
	return (unsigned)v;
}

static int ep_add(int epfd, int fd, short events)
{
	struct epoll_event ev = { .data.fd = fd };
	if (events & POLLIN)
		ev.events |= EPOLLIN;
	if (events & POLLOUT)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
		return 0;
	if (errno == EEXIST && epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
		return 0;
	return -errno;
}

static void LIBUSB_CALL pollfd_added(int fd, short events, void *userdata)
{
	struct usb_monitor *m = userdata;
	int r = ep_add(m->epfd, fd, events);
	if (r < 0)
		log_debug_errno(r, "monitor: cannot watch libusb fd %d: %m", fd);
}

static void LIBUSB_CALL pollfd_removed(int fd, void *userdata)
{
	struct usb_monitor *m = userdata;
	(void)epoll_ctl(m->epfd, EPOLL_CTL_DEL, fd, NULL); /* ENOENT/EBADF: already gone */
}

static int LIBUSB_CALL on_libusb_hotplug(libusb_context *ctx, libusb_device *dev, libusb_hotplug_event event,
					 void *userdata)
{
	(void)ctx;
	struct usb_monitor *m = userdata;
	uint8_t ports[PORT_PATH_MAX_PORTS];
	int n = libusb_get_port_numbers(dev, ports, PORT_PATH_MAX_PORTS);
	if (n <= 0) /* a root hub (or deeper than USB allows) */
		return 0;
	_cleanup_free_ char *path = NULL;
	if (port_path_format(libusb_get_bus_number(dev), ports, n, &path) < 0) {
		log_debug("monitor: out of memory queueing a libusb hotplug event");
		return 0;
	}
	if (m->n_pending == m->cap_pending) {
		size_t cap = m->cap_pending ? 2 * m->cap_pending : 8;
		struct usb_pending *p = reallocarray(m->pending, cap, sizeof(*p));
		if (!p) {
			log_debug("monitor: out of memory queueing a libusb hotplug event");
			return 0;
		}
		m->pending = p;
		m->cap_pending = cap;
	}
	bool arrived = event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED;
	m->pending[m->n_pending++] = (struct usb_pending){
		.action = arrived ? USB_MONITOR_USB_ADD : USB_MONITOR_USB_REMOVE,
		.bus = libusb_get_bus_number(dev),
		.addr = libusb_get_device_address(dev),
		.port_path = TAKE_PTR(path),
	};
	return 0; /* stay registered */
}

static void libusb_stop(struct usb_monitor *m)
{
	if (!m->usb)
		return;
	if (m->cb_handle)
		libusb_hotplug_deregister_callback(m->usb, m->cb_handle);
	libusb_set_pollfd_notifiers(m->usb, NULL, NULL, NULL);
	libusb_exit(m->usb);
	m->usb = NULL;
	m->cb_handle = 0;
}

/* Start libusb hotplug into m's epoll set; on any failure m stays on netlink alone. */
static void libusb_start(struct usb_monitor *m)
{
	if (!libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG)) {
		log_debug("monitor: libusb has no hotplug support; netlink only");
		return;
	}
	int r = libusb_init(&m->usb);
	if (r != 0) {
		log_debug("monitor: libusb_init: %s; netlink only", libusb_error_name(r));
		m->usb = NULL;
		return;
	}
	libusb_set_pollfd_notifiers(m->usb, pollfd_added, pollfd_removed, m);
	const struct libusb_pollfd **fds = libusb_get_pollfds(m->usb);
	bool ok = fds != NULL;
	for (size_t i = 0; ok && fds[i]; i++)
		ok = ep_add(m->epfd, fds[i]->fd, fds[i]->events) >= 0;
	libusb_free_pollfds(fds);
	if (ok) {
		r = libusb_hotplug_register_callback(m->usb,
						     LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED |
							     LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT,
						     LIBUSB_HOTPLUG_NO_FLAGS, LIBUSB_HOTPLUG_MATCH_ANY,
						     LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY,
						     on_libusb_hotplug, m, &m->cb_handle);
		ok = r == LIBUSB_SUCCESS;
	}
	if (!ok) {
		log_debug("monitor: libusb hotplug unavailable; netlink only");
		libusb_stop(m);
	}
}

int usb_monitor_new(const struct uf_config *cfg, struct usb_monitor **ret)
{
	(void)cfg;
	struct usb_monitor *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->epfd = -1;
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
		r = udev_monitor_filter_add_match_subsystem_devtype(m->mon, "usb", "usb_device");
	if (r >= 0)
		r = udev_monitor_enable_receiving(m->mon);
	if (r >= 0) {
		m->epfd = epoll_create1(EPOLL_CLOEXEC);
		r = m->epfd >= 0 ? ep_add(m->epfd, udev_monitor_get_fd(m->mon), POLLIN) : -errno;
	}
	if (r < 0) {
		usb_monitor_free(m);
		return r;
	}
	libusb_start(m);
	*ret = m;
	return 0;
}

struct usb_monitor *usb_monitor_free(struct usb_monitor *m)
{
	if (m) {
		libusb_stop(m);
		for (size_t i = 0; i < m->n_pending; i++)
			free(m->pending[i].port_path);
		free(m->pending);
		free(m->seen);
		if (m->epfd >= 0)
			close(m->epfd);
		udev_monitor_unref(m->mon);
		udev_unref(m->udev);
		free(m);
	}
	return NULL;
}

int usb_monitor_fd(const struct usb_monitor *m) { return m->epfd; }

const char *usb_monitor_source(const struct usb_monitor *m) { return m->source; }

bool usb_monitor_has_libusb(const struct usb_monitor *m) { return m->usb != NULL; }

/* One netlink uevent: delivered when it is about a whole disk or a (non-root-hub) USB device. */
static bool process_uevent(struct usb_monitor *m, struct udev_device *d, usb_monitor_cb cb, void *userdata)
{
	const char *sub = udev_device_get_subsystem(d);
	const char *type = udev_device_get_devtype(d);
	const char *action = udev_device_get_action(d);
	const char *sysname = udev_device_get_sysname(d);
	if (!sub || !type || !action || !sysname)
		return false;

	if (strcmp(sub, "usb") == 0 && strcmp(type, "usb_device") == 0) {
		enum usb_monitor_action a;
		if (strcmp(action, "add") == 0)
			a = USB_MONITOR_USB_ADD;
		else if (strcmp(action, "remove") == 0)
			a = USB_MONITOR_USB_REMOVE;
		else
			return false; /* bind, unbind, change */
		unsigned path_bus;
		if (port_path_parse(sysname, &path_bus, NULL, NULL) < 0)
			return false; /* a root hub ("usb2") */
		unsigned bus = parse_num(udev_device_get_property_value(d, "BUSNUM"), 255);
		unsigned addr = parse_num(udev_device_get_property_value(d, "DEVNUM"), 127);
		if (bus == 0 || addr == 0 || bus != path_bus)
			return false;
		return deliver_usb(m, SRC_NETLINK, a, bus, addr, sysname, cb, userdata);
	}

	if (strcmp(sub, "block") != 0 || strcmp(type, "disk") != 0)
		return false;
	struct usb_monitor_event ev = { 0 };
	if (strcmp(action, "add") == 0)
		ev.action = USB_MONITOR_ADD;
	else if (strcmp(action, "remove") == 0)
		ev.action = USB_MONITOR_REMOVE;
	else if (strcmp(action, "change") == 0)
		ev.action = USB_MONITOR_CHANGE;
	else
		return false;
	ev.sysname = sysname;
	ev.devnode = udev_device_get_devnode(d);
	ev.devnum = udev_device_get_devnum(d);
	if (cb)
		cb(userdata, &ev);
	return true;
}

int usb_monitor_process(struct usb_monitor *m, usb_monitor_cb cb, void *userdata)
{
	int n = 0;
	struct udev_device *d;

	/* The socket is non-blocking: NULL means drained (or one bad message; the next poll
	 * wakes us again if more wait). */
	while ((d = udev_monitor_receive_device(m->mon))) {
		if (process_uevent(m, d, cb, userdata))
			n++;
		udev_device_unref(d);
	}

	if (m->usb) {
		/* Zero timeout: handle what is ready, never wait. Hotplug reports queue up in
		 * on_libusb_hotplug() and are delivered here, outside libusb's event handling. */
		struct timeval tv = { 0, 0 };
		int r = libusb_handle_events_timeout_completed(m->usb, &tv, NULL);
		if (r != 0)
			log_debug("monitor: libusb_handle_events: %s", libusb_error_name(r));
		for (size_t i = 0; i < m->n_pending; i++) {
			struct usb_pending *p = &m->pending[i];
			if (deliver_usb(m, SRC_LIBUSB, p->action, p->bus, p->addr, p->port_path, cb, userdata))
				n++;
			free(p->port_path);
		}
		m->n_pending = 0;
	}
	return n;
}
