/* libusb lookups by port path or by bus + address, the USB reset between write and verify,
 * and the bounded wait for the stick's block device to be back. See usb/usbdev.h. */
#include "usb/usbdev.h"

#include <dirent.h>
#include <errno.h>
#include <libudev.h>
#include <libusb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "util/macro.h"
#include "util/monotime.h"

static int64_t now_ms(void) { return (int64_t)(mono_ns() / 1000000); }

struct usbdev_reset {
	char *port_path;
	char *serial;
	char *devnode;
	unsigned timeout_ms;
};

static int errno_from_libusb(int r)
{
	switch (r) {
	case LIBUSB_SUCCESS:
		return 0;
	case LIBUSB_ERROR_ACCESS:
		return -EACCES;
	case LIBUSB_ERROR_NO_DEVICE:
	case LIBUSB_ERROR_NOT_FOUND:
		return -ENODEV;
	case LIBUSB_ERROR_BUSY:
		return -EBUSY;
	case LIBUSB_ERROR_TIMEOUT:
		return -ETIMEDOUT;
	case LIBUSB_ERROR_NO_MEM:
		return -ENOMEM;
	case LIBUSB_ERROR_INVALID_PARAM:
		return -EINVAL;
	case LIBUSB_ERROR_NOT_SUPPORTED:
		return -EOPNOTSUPP;
	default:
		return -EIO;
	}
}

int usbdev_parse_port_path(const char *port_path, unsigned *ret_bus, uint8_t ret_ports[USBDEV_MAX_PORTS],
			   int *ret_n_ports)
{
	uint8_t ports[USBDEV_MAX_PORTS];
	int n = 0;
	const char *s = port_path;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long bus = strtoul(s, &end, 10);
	if (errno || end == s || *end != '-' || bus == 0 || bus > 255)
		return -EINVAL;
	s = end + 1;
	for (;;) {
		if (*s < '0' || *s > '9' || n == USBDEV_MAX_PORTS)
			return -EINVAL;
		unsigned long p = strtoul(s, &end, 10);
		if (errno || p == 0 || p > 255)
			return -EINVAL;
		ports[n++] = (uint8_t)p;
		if (*end == '\0')
			break;
		if (*end != '.')
			return -EINVAL;
		s = end + 1;
	}
	*ret_bus = (unsigned)bus;
	memcpy(ret_ports, ports, sizeof(ports));
	*ret_n_ports = n;
	return 0;
}

/* Find the device on bus/ports in list; NULL when absent. */
static libusb_device *find_device(libusb_device **list, ssize_t n, unsigned bus, const uint8_t *ports, int n_ports)
{
	for (ssize_t i = 0; i < n; i++) {
		uint8_t p[USBDEV_MAX_PORTS];
		if (libusb_get_bus_number(list[i]) != bus)
			continue;
		int k = libusb_get_port_numbers(list[i], p, USBDEV_MAX_PORTS);
		if (k == n_ports && memcmp(p, ports, (size_t)k) == 0)
			return list[i];
	}
	return NULL;
}

static unsigned speed_mbps(int s)
{
	switch (s) {
	case LIBUSB_SPEED_LOW:
		return 1;
	case LIBUSB_SPEED_FULL:
		return 12;
	case LIBUSB_SPEED_HIGH:
		return 480;
	case LIBUSB_SPEED_SUPER:
		return 5000;
	case LIBUSB_SPEED_SUPER_PLUS:
		return 10000;
	default:
		return 0;
	}
}

/* String descriptor index as ASCII into *ret (left NULL when the device has none or does not
 * answer). 0 or -ENOMEM. */
static int string_desc(libusb_device_handle *h, uint8_t index, char **ret)
{
	unsigned char buf[256]; /* a USB string descriptor holds at most 126 UTF-16 units */
	if (!h || index == 0)
		return 0;
	int n = libusb_get_string_descriptor_ascii(h, index, buf, sizeof(buf));
	if (n <= 0)
		return 0;
	*ret = strndup((const char *)buf, (size_t)n);
	return *ret ? 0 : -ENOMEM;
}

/* Descriptors, speed, address and port numbers of dev into *info (strings only when usbfs lets
 * us open it). 0, -ENOMEM, or -errno of the device descriptor. */
static int info_fill(libusb_device *dev, struct usbdev_info *info)
{
	struct libusb_device_descriptor dd;
	int r = errno_from_libusb(libusb_get_device_descriptor(dev, &dd));
	if (r < 0)
		return r;
	info->busnum = libusb_get_bus_number(dev);
	info->devaddr = libusb_get_device_address(dev);
	int k = libusb_get_port_numbers(dev, info->ports, USBDEV_MAX_PORTS);
	info->n_ports = k > 0 ? k : 0;
	info->id_vendor = dd.idVendor;
	info->id_product = dd.idProduct;
	info->speed_mbps = speed_mbps(libusb_get_device_speed(dev));
	libusb_device_handle *h = NULL;
	if (libusb_open(dev, &h) == 0) {
		r = string_desc(h, dd.iManufacturer, &info->manufacturer);
		if (r >= 0)
			r = string_desc(h, dd.iProduct, &info->product);
		if (r >= 0)
			r = string_desc(h, dd.iSerialNumber, &info->serial);
		libusb_close(h);
	}
	return r;
}

/* The device on bus busnum with (n_ports > 0) these port numbers or (n_ports == 0) address
 * devaddr, looked up in a libusb context of its own. */
static int info_lookup(unsigned busnum, const uint8_t *ports, int n_ports, unsigned devaddr, struct usbdev_info *ret)
{
	struct usbdev_info info = { 0 };
	libusb_context *ctx = NULL;
	libusb_device **list = NULL;
	libusb_device *dev = NULL;
	int r;

	if (libusb_init(&ctx) != 0)
		return -EIO;
	ssize_t n = libusb_get_device_list(ctx, &list);
	if (n < 0) {
		r = errno_from_libusb((int)n);
		goto out;
	}
	if (n_ports > 0)
		dev = find_device(list, n, busnum, ports, n_ports);
	else
		for (ssize_t i = 0; i < n && !dev; i++)
			if (libusb_get_bus_number(list[i]) == busnum && libusb_get_device_address(list[i]) == devaddr)
				dev = list[i];
	if (!dev) {
		r = -ENODEV;
		goto out;
	}
	r = info_fill(dev, &info);
	if (r < 0)
		goto out;
	*ret = info;
	r = 0;
out:
	if (r < 0)
		usbdev_info_done(&info);
	if (list)
		libusb_free_device_list(list, 1);
	libusb_exit(ctx);
	return r;
}

int usbdev_info_get(const char *port_path, struct usbdev_info *ret)
{
	unsigned bus;
	uint8_t ports[USBDEV_MAX_PORTS];
	int n_ports;
	int r = usbdev_parse_port_path(port_path, &bus, ports, &n_ports);
	if (r < 0)
		return r;
	return info_lookup(bus, ports, n_ports, 0, ret);
}

/* The daemon lists its sticks every poll: without a cache each listing would open every
 * stick's usb_device node and send it string-descriptor requests, busy sticks included. A
 * device keeps its bus address until it is unplugged or re-enumerated (a new address), so
 * answers are kept per (bus, address) for INFO_CACHE_TTL_MS. Successes only. */
#define INFO_CACHE_SIZE	  32
#define INFO_CACHE_TTL_MS 60000 /* an address comes back only after 127 enumerations on its bus */

static struct {
	struct usbdev_info info;
	int64_t at_ms;
	bool used;
} info_cache[INFO_CACHE_SIZE];
static pthread_mutex_t info_cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* Deep copy (strings duplicated). -ENOMEM. */
static int info_copy(const struct usbdev_info *from, struct usbdev_info *to)
{
	*to = *from;
	to->manufacturer = strdup_or_null(from->manufacturer);
	to->product = strdup_or_null(from->product);
	to->serial = strdup_or_null(from->serial);
	if ((from->manufacturer && !to->manufacturer) || (from->product && !to->product) ||
	    (from->serial && !to->serial)) {
		usbdev_info_done(to);
		return -ENOMEM;
	}
	return 0;
}

int usbdev_info_get_by_address(unsigned busnum, unsigned devaddr, struct usbdev_info *ret)
{
	struct usbdev_info fresh;
	int64_t now = now_ms();
	int r = -ENOENT;

	if (busnum == 0 || busnum > 255 || devaddr == 0 || devaddr > 255)
		return -EINVAL;
	pthread_mutex_lock(&info_cache_lock);
	for (size_t i = 0; i < INFO_CACHE_SIZE && r == -ENOENT; i++)
		if (info_cache[i].used && info_cache[i].info.busnum == busnum &&
		    info_cache[i].info.devaddr == devaddr && now - info_cache[i].at_ms < INFO_CACHE_TTL_MS)
			r = info_copy(&info_cache[i].info, ret);
	pthread_mutex_unlock(&info_cache_lock);
	if (r != -ENOENT)
		return r;

	r = info_lookup(busnum, NULL, 0, devaddr, &fresh);
	if (r < 0)
		return r;
	pthread_mutex_lock(&info_cache_lock);
	size_t slot = 0; /* the same address, else a free or the oldest entry */
	for (size_t i = 0; i < INFO_CACHE_SIZE; i++) {
		if (info_cache[i].used && info_cache[i].info.busnum == busnum &&
		    info_cache[i].info.devaddr == devaddr) {
			slot = i;
			break;
		}
		if (!info_cache[i].used || (info_cache[slot].used && info_cache[i].at_ms < info_cache[slot].at_ms))
			slot = i;
	}
	if (info_cache[slot].used)
		usbdev_info_done(&info_cache[slot].info);
	info_cache[slot].used = info_copy(&fresh, &info_cache[slot].info) == 0;
	info_cache[slot].at_ms = now;
	pthread_mutex_unlock(&info_cache_lock);
	*ret = fresh;
	return 0;
}

int usbdev_info_port_path(const struct usbdev_info *i, char **ret)
{
	if (i->n_ports <= 0 || i->n_ports > USBDEV_MAX_PORTS)
		return -EINVAL;
	/* "255-" + 7 × "255." fits in 40 bytes */
	char buf[40];
	int len = snprintf(buf, sizeof(buf), "%u-%u", i->busnum, i->ports[0]);
	for (int k = 1; k < i->n_ports && len > 0 && (size_t)len < sizeof(buf); k++)
		len += snprintf(buf + len, sizeof(buf) - (size_t)len, ".%u", i->ports[k]);
	if (len < 0 || (size_t)len >= sizeof(buf))
		return -EINVAL;
	char *s = strdup(buf);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

void usbdev_info_done(struct usbdev_info *i)
{
	free(i->manufacturer);
	free(i->product);
	free(i->serial);
	*i = (struct usbdev_info){ 0 };
}

/* ---- waiting for the disk ------------------------------------------------------------------ */

/* 1 and *ret_devnode when a matching disk exists now, 0 when not, -errno. */
static int scan_for_disk(const struct usb_env *env, const char *serial, const char *port_path, char **ret_devnode)
{
	_cleanup_free_ char *dir = NULL;
	if (asprintf(&dir, "%s/class/block", env->sysfs) < 0)
		return -ENOMEM;
	DIR *d = opendir(dir);
	if (!d)
		return negative_errno();
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *p = NULL;
		if (asprintf(&p, "%s/%s", dir, de->d_name) < 0) {
			r = -ENOMEM;
			break;
		}
		struct usb_disk_facts f;
		int k = usb_disk_facts_from_syspath(env, p, NULL, &f);
		if (k == -ENOMEM) {
			r = k;
			break;
		}
		if (k < 0)
			continue;
		bool match = f.whole_disk && f.on_usb && f.size_bytes > 0 &&
			     (serial ? f.serial && strcmp(f.serial, serial) == 0
				     : f.port_path && port_path && strcmp(f.port_path, port_path) == 0);
		if (match) {
			*ret_devnode = TAKE_PTR(f.devnode);
			r = 1;
		}
		usb_disk_facts_done(&f);
	}
	closedir(d);
	return r;
}

int usbdev_wait_for_disk(const struct usb_env *env_in, const char *serial, const char *port_path, unsigned timeout_ms,
			 char **ret_devnode)
{
	struct usb_env env = usb_env_resolve(env_in);
	int64_t deadline = now_ms() + timeout_ms;
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
		int64_t left = deadline - now_ms();
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

/* ---- the reset hook ------------------------------------------------------------------------ */

int usbdev_reset_new(const char *devnode, unsigned timeout_ms, struct usbdev_reset **ret)
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
	struct usbdev_reset *u = calloc(1, sizeof(*u));
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
		usbdev_reset_free(u);
		return -ENOMEM;
	}
	*ret = u;
	return 0;
}

struct usbdev_reset *usbdev_reset_free(struct usbdev_reset *u)
{
	if (u) {
		free(u->port_path);
		free(u->serial);
		free(u->devnode);
		free(u);
	}
	return NULL;
}

static int reset_port(const char *port_path)
{
	unsigned bus;
	uint8_t ports[USBDEV_MAX_PORTS];
	int n_ports, r;
	libusb_context *ctx = NULL;
	libusb_device **list = NULL;

	r = usbdev_parse_port_path(port_path, &bus, ports, &n_ports);
	if (r < 0)
		return r;
	if (libusb_init(&ctx) != 0)
		return -EIO;
	ssize_t n = libusb_get_device_list(ctx, &list);
	if (n < 0) {
		r = errno_from_libusb((int)n);
		goto out;
	}
	libusb_device *dev = find_device(list, n, bus, ports, n_ports);
	if (!dev) {
		r = -ENODEV;
		goto out;
	}
	libusb_device_handle *h = NULL;
	r = errno_from_libusb(libusb_open(dev, &h));
	if (r < 0)
		goto out;
	r = libusb_reset_device(h);
	/* NOT_FOUND: the device re-enumerated (descriptors changed); it will come back as a new
	 * device and the wait below finds it. */
	r = r == LIBUSB_ERROR_NOT_FOUND ? 0 : errno_from_libusb(r);
	libusb_close(h);
out:
	if (list)
		libusb_free_device_list(list, 1);
	libusb_exit(ctx);
	return r;
}

int usbdev_reset_hook(void *userdata, const char *path, char **ret_new_path)
{
	struct usbdev_reset *u = userdata;
	int r = reset_port(u->port_path);
	if (r < 0)
		return r;
	char *devnode = NULL;
	r = usbdev_wait_for_disk(NULL, u->serial, u->port_path, u->timeout_ms, &devnode);
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

int usbdev_install_reset_hook(struct dev *d, unsigned timeout_ms, struct usbdev_reset **ret)
{
	struct usbdev_reset *u = NULL;
	int r = usbdev_reset_new(dev_name(d), timeout_ms, &u);
	if (r < 0)
		return r;
	dev_set_reset_hook(d, usbdev_reset_hook, u);
	*ret = u;
	return 0;
}
