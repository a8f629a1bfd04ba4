/* libusb lookups by port path or by bus + address (with a short cache), and the port reset.
 * Every lookup opens a libusb context of its own and finds the device in one place
 * (with_device). See usb/usbdev.h. */
#include "usb/usbdev.h"

#include <errno.h>
#include <libusb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/macro.h"
#include "util/monotime.h"
#include "util/portpath.h"

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

/* A device on a bus: by its port numbers (n_ports > 0) or by its address (n_ports 0). */
struct usb_where {
	unsigned bus;
	const uint8_t *ports;
	int n_ports;
	unsigned devaddr;
};

static bool is_at(libusb_device *dev, const struct usb_where *w)
{
	uint8_t p[PORT_PATH_MAX_PORTS];
	if (libusb_get_bus_number(dev) != w->bus)
		return false;
	if (w->n_ports == 0)
		return libusb_get_device_address(dev) == w->devaddr;
	int k = libusb_get_port_numbers(dev, p, PORT_PATH_MAX_PORTS);
	return k == w->n_ports && memcmp(p, w->ports, (size_t)k) == 0;
}

/* Run fn on the device at w, found in a libusb context of its own (the one place usbforge
 * starts libusb and searches its device list). Returns fn's result; -ENODEV when no such
 * device (always so without a USB bus); -EIO when libusb cannot start; -errno of the list. */
static int with_device(const struct usb_where *w, int (*fn)(libusb_device *dev, void *userdata), void *userdata)
{
	libusb_context *ctx = NULL;
	libusb_device **list = NULL;
	int r = -ENODEV;

	if (libusb_init(&ctx) != 0)
		return -EIO;
	ssize_t n = libusb_get_device_list(ctx, &list);
	if (n < 0)
		r = errno_from_libusb((int)n);
	for (ssize_t i = 0; i < n; i++)
		if (is_at(list[i], w)) {
			r = fn(list[i], userdata);
			break;
		}
	if (list)
		libusb_free_device_list(list, 1);
	libusb_exit(ctx);
	return r;
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
	int k = libusb_get_port_numbers(dev, info->ports, PORT_PATH_MAX_PORTS);
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

static int fill(libusb_device *dev, void *userdata)
{
	struct usbdev_info *info = userdata;
	int r = info_fill(dev, info);
	if (r < 0)
		usbdev_info_done(info);
	return r;
}

int usbdev_info_get(const char *port_path, struct usbdev_info *ret)
{
	uint8_t ports[PORT_PATH_MAX_PORTS];
	struct usb_where w = { .ports = ports };
	struct usbdev_info info = { 0 };
	int r = port_path_parse(port_path, &w.bus, ports, &w.n_ports);
	if (r < 0)
		return r;
	r = with_device(&w, fill, &info);
	if (r < 0)
		return r;
	*ret = info;
	return 0;
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
	struct usbdev_info fresh = { 0 };
	struct usb_where w = { .bus = busnum, .devaddr = devaddr };
	int64_t now = mono_ms();
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

	r = with_device(&w, fill, &fresh);
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

void usbdev_info_done(struct usbdev_info *i)
{
	free(i->manufacturer);
	free(i->product);
	free(i->serial);
	*i = (struct usbdev_info){ 0 };
}

static int reset_device(libusb_device *dev, void *userdata)
{
	libusb_device_handle *h = NULL;
	int r = errno_from_libusb(libusb_open(dev, &h));
	if (r < 0)
		return r;
	r = libusb_reset_device(h);
	libusb_close(h);
	/* NOT_FOUND: the device re-enumerated (descriptors changed); it comes back as a new
	 * device, which the caller's wait finds. */
	return r == LIBUSB_ERROR_NOT_FOUND ? 0 : errno_from_libusb(r);
}

int usbdev_reset_port(const char *port_path)
{
	uint8_t ports[PORT_PATH_MAX_PORTS];
	struct usb_where w = { .ports = ports };
	int r = port_path_parse(port_path, &w.bus, ports, &w.n_ports);
	if (r < 0)
		return r;
	return with_device(&w, reset_device, NULL);
}
