/* Tests of discovery and the safety rules (usb/discover.c, usb/safety.c): on a fake sysfs tree
 * with fake mountinfo/swaps under a tmpdir (USB sticks, a virtual disk, partitions, holders,
 * a dm stack holding /), and on the real system with loop devices this test creates (static
 * mode eligible, udev mode "not on USB", a mounted file system refused, the disk holding /
 * refused — found through mountinfo and probed in sysfs only, never opened). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libmount.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/failalloc.h"
#include "helpers/testutil.h"
#include "test_usb_loop.h"
#include "blkio/dev.h"
#include "usb/discover.h"
#include "usb/safety.h"
#include "usb/usbdev.h"
#include "util/macro.h"

static char *tmp;
static char *sysfs;
static char *mountinfo;
static char *swaps;
static struct usb_env env;
static char *mounted_dir; /* unmounted by teardown if a test stops half-way */

static void setup(void)
{
	tmp = tu_tmpdir("disc");
	sysfs = tu_path(tmp, "sys");
	mountinfo = tu_path(tmp, "mountinfo");
	swaps = tu_path(tmp, "swaps");
	cr_assert_eq(mkdir(sysfs, 0755), 0);
	const char *mi = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
			 "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
	tu_write_file(mountinfo, mi, strlen(mi));
	const char *sw = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
	tu_write_file(swaps, sw, strlen(sw));
	env = (struct usb_env){ .sysfs = sysfs, .mountinfo = mountinfo, .swaps = swaps };
}

static void teardown(void)
{
	if (mounted_dir) {
		umount2(mounted_dir, MNT_DETACH);
		free(mounted_dir);
		mounted_dir = NULL;
	}
	tu_rmrf(tmp);
	free(tmp);
	free(sysfs);
	free(mountinfo);
	free(swaps);
}

TestSuite(fakesys, .init = setup, .fini = teardown);
TestSuite(realsys, .init = setup, .fini = teardown);

/* ---- building a fake sysfs ----------------------------------------------------------------- */

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...)
{
	va_list ap;
	char *p = NULL;
	va_start(ap, fmt);
	cr_assert(vasprintf(&p, fmt, ap) > 0);
	va_end(ap);
	return p;
}

static void mkdirs(const char *path)
{
	char *p = strdup(path);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			mkdir(p, 0755);
			*s = '/';
		}
	mkdir(p, 0755);
	free(p);
}

static void attr(const char *dir, const char *name, const char *value)
{
	char *p = pathf("%s/%s", dir, name);
	char *slash = strrchr(p, '/');
	*slash = '\0';
	mkdirs(p);
	*slash = '/';
	char *v = pathf("%s\n", value);
	tu_write_file(p, v, strlen(v));
	free(v);
	free(p);
}

static void link_to(const char *target, const char *linkpath)
{
	char *p = strdup(linkpath);
	*strrchr(p, '/') = '\0';
	mkdirs(p);
	free(p);
	cr_assert_eq(symlink(target, linkpath), 0, "symlink %s: %s", linkpath, strerror(errno));
}

/* A block device directory at devdir (absolute), registered in class/block and dev/block. */
static void fake_block(const char *devdir, const char *name, const char *devnum, uint64_t sectors, bool partition)
{
	mkdirs(devdir);
	attr(devdir, "dev", devnum);
	char *s = pathf("%llu", (unsigned long long)sectors);
	attr(devdir, "size", s);
	free(s);
	attr(devdir, "ro", "0");
	char *ue = pathf("MAJOR=%u\nMINOR=%u\nDEVNAME=%s\nDEVTYPE=%s", 0u, 0u, name, partition ? "partition" : "disk");
	attr(devdir, "uevent", ue);
	free(ue);
	if (partition) {
		attr(devdir, "partition", "1");
	} else {
		attr(devdir, "removable", "1");
		attr(devdir, "queue/logical_block_size", "512");
	}
	char *h = pathf("%s/holders", devdir);
	mkdirs(h);
	free(h);
	char *l1 = pathf("%s/class/block/%s", sysfs, name);
	link_to(devdir, l1);
	char *l2 = pathf("%s/dev/block/%s", sysfs, devnum);
	link_to(devdir, l2);
	free(l1);
	free(l2);
}

/* The USB address fake_stick gives the stick of disk name: 2 + its last letter ("sdb" → 3). */
static unsigned fake_addr(const char *name) { return 2u + (unsigned)(name[strlen(name) - 1] - 'a'); }

/* A USB stick at port (e.g. "2-1.3" on bus 2, address fake_addr(name)) whose disk is
 * name/devnum. Returns the disk dir. */
static char *fake_stick(const char *port, const char *name, const char *devnum, const char *serial, uint64_t sectors)
{
	unsigned bus = (unsigned)(port[0] - '0');
	char *usbdev = pathf("%s/devices/pci0000:00/0000:00:14.0/usb%u/%s", sysfs, bus, port);
	mkdirs(usbdev);
	attr(usbdev, "uevent", "MAJOR=189\nMINOR=1\nDEVNAME=bus/usb/002/002\nDEVTYPE=usb_device\nDRIVER=usb");
	char *sub = pathf("%s/subsystem", usbdev);
	link_to("../../../../../bus/usb", sub);
	free(sub);
	attr(usbdev, "idVendor", "46f4");
	attr(usbdev, "idProduct", "0001");
	attr(usbdev, "manufacturer", "QEMU");
	attr(usbdev, "product", "QEMU USB HARDDRIVE");
	if (serial)
		attr(usbdev, "serial", serial);
	attr(usbdev, "speed", "5000");
	char *b = pathf("%u", bus);
	attr(usbdev, "busnum", b);
	free(b);
	char *a = pathf("%u", fake_addr(name));
	attr(usbdev, "devnum", a);
	free(a);
	/* The interface (subsystem usb too, but DEVTYPE=usb_interface) and the SCSI chain. */
	char *intf = pathf("%s/%s:1.0", usbdev, port);
	attr(intf, "uevent", "DEVTYPE=usb_interface\nDRIVER=usb-storage");
	char *isub = pathf("%s/subsystem", intf);
	link_to("../../../../../../bus/usb", isub);
	free(isub);
	char *disk = pathf("%s/host6/target6:0:0/6:0:0:0/block/%s", intf, name);
	fake_block(disk, name, devnum, sectors, false);
	free(intf);
	free(usbdev);
	return disk;
}

static char *fake_partition(const char *disk, const char *name, const char *devnum)
{
	char *p = pathf("%s/%s", disk, name);
	fake_block(p, name, devnum, 1000, true);
	return p;
}

static char *fake_vda(void)
{
	char *d = pathf("%s/devices/pci0000:00/0000:00:04.0/virtio1/block/vda", sysfs);
	fake_block(d, "vda", "254:0", 1000000, false);
	attr(d, "removable", "0");
	return d;
}

static struct uf_config cfg_udev(void)
{
	struct uf_config c;
	memset(&c, 0, sizeof(c));
	c.usb.mode = USB_MODE_UDEV;
	return c;
}

static void list(const struct uf_config *cfg, struct usb_candidate **ret, size_t *ret_n)
{
	cr_assert_eq(usb_list_candidates_env(&env, cfg, ret, ret_n), 0);
}

/* The candidates in udev mode with no configured slot. */
static void list_udev(struct usb_candidate **ret, size_t *ret_n)
{
	struct uf_config cfg = cfg_udev();
	list(&cfg, ret, ret_n);
}

static void put(const char *path, const char *text) { tu_write_file(path, text, strlen(text)); }

static void append(const char *path, const char *text)
{
	FILE *f = fopen(path, "ae");
	cr_assert(f);
	fputs(text, f);
	fclose(f);
}

/* ---- fake sysfs: identity and slots -------------------------------------------------------- */

Test(fakesys, usb_stick_is_eligible_slot_named_after_port)
{
	free(fake_stick("2-1.3", "sdb", "8:16", "SN-B", 2097152));
	free(fake_vda());
	struct usb_candidate *c;
	size_t n;
	list_udev(&c, &n);
	cr_assert_eq(n, 2);
	/* Slot "2-1.3" is not a configured slot: both rank equal, sorted by devnode. */
	cr_assert_str_eq(c[0].devnode, "/dev/sdb");
	cr_assert_str_eq(c[0].slot, "2-1.3");
	cr_assert_str_eq(c[0].serial, "SN-B");
	cr_assert_str_eq(c[0].vendor, "QEMU");
	cr_assert_str_eq(c[0].model, "QEMU USB HARDDRIVE");
	cr_assert_eq(c[0].capacity_bytes, 2097152ULL * 512);
	cr_assert_eq(c[0].logical_block_size, 512);
	cr_assert_eq(c[0].usb_speed_mbps, 5000);
	cr_assert_str_eq(c[0].port_path, "2-1.3");
	cr_assert_str_eq(c[0].root_hub, "usb2");
	cr_assert(c[0].eligible);
	cr_assert_null(c[0].reason);
	cr_assert(c[0].is_block);
	cr_assert_eq(c[0].devnum, makedev(8, 16));

	cr_assert_str_eq(c[1].devnode, "/dev/vda");
	cr_assert_null(c[1].slot);
	cr_assert_not(c[1].eligible);
	cr_assert_str_eq(c[1].reason, "holds the root filesystem");
	cr_assert_null(c[1].port_path);
	cr_assert_eq(c[1].usb_speed_mbps, 0);
	usb_candidates_free(c, n);
}

Test(fakesys, non_usb_disk_and_empty_loop)
{
	/* A virtual disk with a medium is listed as "not on USB"; an empty loop is skipped. */
	char *d = pathf("%s/devices/virtual/block/loop0", sysfs);
	fake_block(d, "loop0", "7:0", 0, false);
	free(d);
	d = pathf("%s/devices/virtual/block/loop1", sysfs);
	fake_block(d, "loop1", "7:1", 2048, false);
	free(d);
	struct usb_candidate *c;
	size_t n;
	list_udev(&c, &n);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(c[0].devnode, "/dev/loop1");
	cr_assert_not(c[0].eligible);
	cr_assert_str_eq(c[0].reason, "not on USB");
	cr_assert_null(c[0].slot);
	usb_candidates_free(c, n);
}

Test(fakesys, configured_slots_map_ports)
{
	free(fake_stick("2-1.3", "sdb", "8:16", "SN-B", 2048));
	free(fake_stick("2-1.9", "sdc", "8:32", "SN-C", 2048));
	struct slot_conf slots[] = {
		{ .name = "B", .port = "2-1.4" },
		{ .name = "A", .port = "2-1.3" },
	};
	struct uf_config cfg = cfg_udev();
	cfg.usb.slots = slots;
	cfg.usb.n_slots = 2;
	struct usb_candidate *c;
	size_t n;
	list(&cfg, &c, &n);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(c[0].slot, "B");
	cr_assert_null(c[0].devnode);
	cr_assert_str_eq(c[0].port_path, "2-1.4");
	cr_assert_not(c[0].eligible);
	cr_assert_str_eq(c[0].reason, "empty");
	cr_assert_str_eq(c[1].slot, "A");
	cr_assert_str_eq(c[1].devnode, "/dev/sdb");
	cr_assert(c[1].eligible);
	cr_assert_null(c[2].slot);
	cr_assert_str_eq(c[2].devnode, "/dev/sdc");
	cr_assert_not(c[2].eligible);
	cr_assert_str_eq(c[2].reason, "port 2-1.9 is not mapped to a slot");
	usb_candidates_free(c, n);
}

Test(fakesys, usb_stick_without_medium_and_serial_fallback)
{
	char *d = fake_stick("1-2", "sdb", "8:16", NULL, 0);
	attr(d, "serial", "DISK-SERIAL");
	free(d);
	struct usb_candidate *c;
	size_t n;
	list_udev(&c, &n);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(c[0].serial, "DISK-SERIAL");
	cr_assert_str_eq(c[0].root_hub, "usb1");
	cr_assert_not(c[0].eligible);
	cr_assert_str_eq(c[0].reason, "no medium");
	cr_assert_str_eq(c[0].slot, "1-2", "the port's slot, shown with its reason");
	usb_candidates_free(c, n);
}

/* ---- fake sysfs: identity from libusb, capacity from the node ------------------------------ */

/* A stand-in for libusb (env.usb_info): answers `result`, or with `info` (strings copied) when
 * result is 0 and bus/address match; counts the calls. */
static struct {
	int result;
	struct usbdev_info info;
	unsigned calls, bus, addr;
} fusb;

static int fake_usb_info(unsigned bus, unsigned addr, struct usbdev_info *ret)
{
	fusb.calls++;
	fusb.bus = bus;
	fusb.addr = addr;
	if (fusb.result)
		return fusb.result;
	if (bus != fusb.info.busnum || addr != fusb.info.devaddr)
		return -ENODEV;
	struct usbdev_info i = fusb.info;
	i.manufacturer = strdup_or_null(fusb.info.manufacturer);
	i.product = strdup_or_null(fusb.info.product);
	i.serial = strdup_or_null(fusb.info.serial);
	if ((fusb.info.manufacturer && !i.manufacturer) || (fusb.info.product && !i.product) ||
	    (fusb.info.serial && !i.serial)) {
		usbdev_info_done(&i);
		return -ENOMEM;
	}
	*ret = i;
	return 0;
}

/* A stand-in for the read-only BLKGETSIZE64 query (env.node_size). */
static struct {
	int result;
	uint64_t bytes;
	unsigned calls;
	char devnode[64];
	dev_t devnum;
} fnode;

static int fake_node_size(const char *devnode, dev_t devnum, uint64_t *ret)
{
	fnode.calls++;
	snprintf(fnode.devnode, sizeof(fnode.devnode), "%s", devnode);
	fnode.devnum = devnum;
	if (fnode.result)
		return fnode.result;
	*ret = fnode.bytes;
	return 0;
}

static void fakes_reset(void)
{
	memset(&fusb, 0, sizeof(fusb));
	memset(&fnode, 0, sizeof(fnode));
}

/* sdb on 2-1.3 (sysfs: serial SN-B, QEMU / QEMU USB HARDDRIVE, 5000 Mbit/s, 2097152 sectors)
 * beside vda, listed with both stand-ins; returns the candidate of sdb in *ret (array in
 * *ret_all, 2 entries). */
static const struct usb_candidate *list_sdb_with_fakes(struct usb_candidate **ret_all)
{
	struct usb_env e = env;
	e.usb_info = fake_usb_info;
	e.node_size = fake_node_size;
	struct uf_config cfg = cfg_udev();
	struct usb_candidate *c;
	size_t n;
	cr_assert_eq(usb_list_candidates_env(&e, &cfg, &c, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(c[0].devnode, "/dev/sdb");
	cr_assert_str_eq(c[1].devnode, "/dev/vda");
	/* vda is not on USB: neither libusb nor its node was asked about it. */
	cr_assert_not(c[1].usb_descriptors);
	cr_assert_not(c[1].size_from_node);
	cr_assert_eq(c[1].capacity_bytes, 1000000ULL * 512);
	*ret_all = c;
	return &c[0];
}

Test(fakesys, libusb_descriptors_over_sysfs)
{
	char *d = fake_stick("2-1.3", "sdb", "8:16", "SN-B", 2097152);
	free(d);
	free(fake_vda());
	/* sysfs lacks the manufacturer string (the kernel could not read it). */
	char *m = pathf("%s/devices/pci0000:00/0000:00:14.0/usb2/2-1.3/manufacturer", sysfs);
	cr_assert_eq(unlink(m), 0);
	free(m);
	fakes_reset();
	fusb.info = (struct usbdev_info){ .busnum = 2,
					  .devaddr = fake_addr("sdb"),
					  .ports = { 1, 4 },
					  .n_ports = 2,
					  .id_vendor = 0x1234,
					  .id_product = 0x5678,
					  .speed_mbps = 480,
					  .manufacturer = "Acme",
					  .product = "Acme Stick",
					  .serial = "LIBUSB-SN" };
	fnode.bytes = 1000 * 4096;

	struct usb_candidate *all;
	const struct usb_candidate *c = list_sdb_with_fakes(&all);
	/* Exactly one lookup each, for sdb's usb_device (bus 2, address 3) and node. */
	cr_assert_eq(fusb.calls, 1);
	cr_assert_eq(fusb.bus, 2);
	cr_assert_eq(fusb.addr, 3);
	cr_assert_eq(fnode.calls, 1);
	cr_assert_str_eq(fnode.devnode, "/dev/sdb");
	cr_assert_eq(fnode.devnum, makedev(8, 16));
	cr_assert(c->usb_descriptors);
	cr_assert(c->size_from_node);
	/* libusb's serial, speed and port numbers win; its strings only fill what sysfs lacks. */
	cr_assert_str_eq(c->serial, "LIBUSB-SN");
	cr_assert_eq(c->usb_speed_mbps, 480);
	/* (ports 1.4 differ from the sysfs name 2-1.3 here only to show which one is taken) */
	cr_assert_str_eq(c->port_path, "2-1.4");
	cr_assert_str_eq(c->slot, "2-1.4");
	cr_assert_str_eq(c->vendor, "Acme");
	cr_assert_str_eq(c->model, "QEMU USB HARDDRIVE");
	cr_assert_eq(c->capacity_bytes, 1000 * 4096);
	cr_assert(c->eligible);
	usb_candidates_free(all, 2);
}

Test(fakesys, libusb_ids_when_sysfs_has_no_strings)
{
	char *d = fake_stick("2-1", "sdb", "8:16", NULL, 2097152);
	free(fake_vda());
	char *u = pathf("%s/devices/pci0000:00/0000:00:14.0/usb2/2-1", sysfs);
	const char *gone[] = { "manufacturer", "product", "idVendor", "idProduct", "speed" };
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		char *p = pathf("%s/%s", u, gone[i]);
		cr_assert_eq(unlink(p), 0, "%s", p);
		free(p);
	}
	free(u);
	/* no SCSI vendor/model either */
	free(d);
	fakes_reset();
	/* libusb sees it but may not open it (no usbfs access): no strings. */
	fusb.info = (struct usbdev_info){ .busnum = 2,
					  .devaddr = fake_addr("sdb"),
					  .ports = { 1 },
					  .n_ports = 1,
					  .id_vendor = 0x46f4,
					  .id_product = 0x0001,
					  .speed_mbps = 5000 };
	fnode.result = -EACCES;

	struct usb_candidate *all;
	const struct usb_candidate *c = list_sdb_with_fakes(&all);
	cr_assert_eq(fusb.calls, 1);
	cr_assert_eq(fnode.calls, 1);
	cr_assert(c->usb_descriptors);
	cr_assert_not(c->size_from_node);
	cr_assert_str_eq(c->vendor, "46f4");
	cr_assert_str_eq(c->model, "0001");
	cr_assert_null(c->serial);
	cr_assert_eq(c->usb_speed_mbps, 5000);
	cr_assert_str_eq(c->port_path, "2-1");
	cr_assert_eq(c->capacity_bytes, 2097152ULL * 512);
	usb_candidates_free(all, 2);
}

/* libusb absent (lists 0 devices: -ENODEV), unable to start (-EIO) or refused (-EACCES), and
 * the node not openable: the sysfs identity and size stand, exactly as without the hooks. */
Test(fakesys, libusb_absent_falls_back_to_sysfs)
{
	free(fake_stick("2-1.3", "sdb", "8:16", "SN-B", 2097152));
	free(fake_vda());
	const int results[] = { -ENODEV, -EIO, -EACCES };
	const int node_results[] = { -ENOENT, -ENOMEDIUM, -EACCES };
	for (size_t i = 0; i < 3; i++) {
		fakes_reset();
		fusb.result = results[i];
		fnode.result = node_results[i];
		struct usb_candidate *all;
		const struct usb_candidate *c = list_sdb_with_fakes(&all);
		cr_assert_eq(fusb.calls, 1);
		cr_assert_eq(fusb.bus, 2);
		cr_assert_eq(fusb.addr, 3);
		cr_assert_eq(fnode.calls, 1);
		cr_assert_not(c->usb_descriptors);
		cr_assert_not(c->size_from_node);
		cr_assert_str_eq(c->serial, "SN-B");
		cr_assert_str_eq(c->vendor, "QEMU");
		cr_assert_str_eq(c->model, "QEMU USB HARDDRIVE");
		cr_assert_eq(c->usb_speed_mbps, 5000);
		cr_assert_str_eq(c->port_path, "2-1.3");
		cr_assert_str_eq(c->slot, "2-1.3");
		cr_assert_eq(c->capacity_bytes, 2097152ULL * 512);
		cr_assert(c->eligible);
		usb_candidates_free(all, 2);
	}
	/* A usb_device without a "devnum" cannot be matched: libusb is not asked. */
	char *dn = pathf("%s/devices/pci0000:00/0000:00:14.0/usb2/2-1.3/devnum", sysfs);
	cr_assert_eq(unlink(dn), 0);
	free(dn);
	fakes_reset();
	struct usb_candidate *all;
	const struct usb_candidate *c = list_sdb_with_fakes(&all);
	cr_assert_eq(fusb.calls, 0);
	cr_assert_not(c->usb_descriptors);
	cr_assert_str_eq(c->serial, "SN-B");
	usb_candidates_free(all, 2);
	/* And an injected sysfs without hooks asks neither (the default off /sys). */
	fakes_reset();
	struct uf_config cfg = cfg_udev();
	size_t n;
	struct usb_candidate *c2;
	list(&cfg, &c2, &n);
	cr_assert_eq(n, 2);
	cr_assert_eq(fusb.calls + fnode.calls, 0);
	cr_assert_not(c2[0].usb_descriptors);
	cr_assert_not(c2[0].size_from_node);
	usb_candidates_free(c2, n);
}

/* ---- fake sysfs: the safety rules ---------------------------------------------------------- */

static char *reason_of_sdb(void)
{
	struct usb_candidate *c;
	size_t n;
	list_udev(&c, &n);
	for (size_t i = 0; i < n; i++)
		if (c[i].devnode && strcmp(c[i].devnode, "/dev/sdb") == 0) {
			cr_assert_not(c[i].eligible);
			/* still a slot named after its port (shown as unsafe), never claimed */
			cr_assert(c[i].slot && c[i].port_path, "an ineligible USB stick keeps its port's slot");
			cr_assert_str_eq(c[i].slot, c[i].port_path);
			char *r = strdup(c[i].reason);
			usb_candidates_free(c, n);
			return r;
		}
	cr_assert_fail("sdb not listed");
	return NULL;
}

/* The stick sdb (8:16, 2048 sectors, serial "S") on port 2-1 with partitions sdb1 … sdb<parts>
 * (8:17, 8:18, …); returns its sysfs folder. */
static char *sdb_stick(int parts)
{
	char *d = fake_stick("2-1", "sdb", "8:16", "S", 2048);
	for (int i = 1; i <= parts; i++) {
		char name[16], devnum[16];
		snprintf(name, sizeof(name), "sdb%d", i);
		snprintf(devnum, sizeof(devnum), "8:%d", 16 + i);
		free(fake_partition(d, name, devnum));
	}
	return d;
}

/* A device-mapper device dm-0 (253:0) stacked on the partition at sysfs folder part (sdb1):
 * its slaves/ and the partition's holders/ link each other. */
static void fake_dm_over(const char *part)
{
	char *dm = pathf("%s/devices/virtual/block/dm-0", sysfs);
	fake_block(dm, "dm-0", "253:0", 2000, false);
	char *sl = pathf("%s/slaves/sdb1", dm);
	link_to(part, sl);
	char *hl = pathf("%s/holders/dm-0", part);
	link_to(dm, hl);
	free(hl);
	free(sl);
	free(dm);
}

/* sdb's reason is exactly want. */
static void assert_sdb_reason(const char *want)
{
	char *r = reason_of_sdb();
	cr_assert_str_eq(r, want);
	free(r);
}

Test(fakesys, mounted_partition)
{
	char *d = sdb_stick(2);
	append(mountinfo, "90 27 8:18 / /media/my\\040stick rw - vfat /dev/sdb2 rw\n");
	assert_sdb_reason("mounted at /media/my stick (sdb2)");
	free(d);
}

Test(fakesys, mounted_whole_disk)
{
	free(sdb_stick(0));
	append(mountinfo, "90 27 8:16 / /mnt rw - ext4 /dev/sdb rw\n");
	assert_sdb_reason("mounted at /mnt (sdb)");
}

/* The tables are libmount's reading of the files: a line it cannot parse is skipped and the
 * mounts after it still count; escapes (\011, \134) are undone in the mount point. */
Test(fakesys, mountinfo_unparsable_lines_are_skipped)
{
	free(fake_stick("2-1", "sdb", "8:16", "S", 2048));
	append(mountinfo, "not a mount line\n"
			  "91 27 8:16 / /mnt/a\\011b\\134c rw\n" /* no " - " separator */
			  "92 27 8:16 / /mnt/x\\011y\\134z rw,noatime shared:5 - vfat /dev/sdb rw\n");
	char *r = reason_of_sdb();
	cr_assert_str_eq(r, "mounted at /mnt/x\ty\\z (sdb)");
	free(r);
}

/* A swap file on a mounted partition names no device of its own: the partition's mount is
 * the reason; a swap device is found by its /dev name, escapes undone. */
Test(fakesys, swap_file_and_escaped_swap_name)
{
	char *d = fake_stick("2-1", "sdb", "8:16", "S", 2048);
	free(fake_partition(d, "sdb1", "8:17"));
	append(swaps, "/swap\\040file                             file\t\t1048572\t\t0\t\t-3\n");
	struct usb_disk_facts f;
	char *dev = pathf("%s/class/block/sdb", sysfs);
	cr_assert_eq(usb_disk_facts_from_syspath(&env, dev, NULL, &f), 0);
	cr_assert_null(f.swap_dev);
	cr_assert_null(f.mounted_at);
	usb_disk_facts_done(&f);
	append(swaps, "/dev/sdb\\061                               partition\t1048572\t\t0\t\t-2\n");
	cr_assert_eq(usb_disk_facts_from_syspath(&env, dev, NULL, &f), 0);
	cr_assert_str_eq(f.swap_dev, "sdb1");
	usb_disk_facts_done(&f);
	free(dev);
	free(d);
}

/* No mount table to read is an error, not "nothing mounted"; no swaps file is no swap. */
Test(fakesys, missing_mountinfo_is_an_error)
{
	free(fake_stick("2-1", "sdb", "8:16", "S", 2048));
	char *dev = pathf("%s/class/block/sdb", sysfs);
	struct usb_disk_facts f;
	cr_assert_eq(unlink(swaps), 0);
	cr_assert_eq(usb_disk_facts_from_syspath(&env, dev, NULL, &f), 0);
	cr_assert_null(f.swap_dev);
	usb_disk_facts_done(&f);
	cr_assert_eq(unlink(mountinfo), 0);
	cr_assert_eq(usb_disk_facts_from_syspath(&env, dev, NULL, &f), -ENOENT);
	free(dev);
}

Test(fakesys, swap_partition)
{
	char *d = sdb_stick(1);
	append(swaps, "/dev/sdb1                               partition\t1048572\t\t0\t\t-2\n");
	assert_sdb_reason("used as swap (sdb1)");
	free(d);
}

Test(fakesys, root_on_a_partition)
{
	char *d = sdb_stick(1);
	put(mountinfo, "1 0 8:17 / / rw - ext4 /dev/sdb1 rw\n");
	assert_sdb_reason("holds the root filesystem");
	free(d);
}

Test(fakesys, root_through_device_mapper)
{
	char *d = fake_stick("2-1", "sdb", "8:16", "S", 2048);
	char *p = fake_partition(d, "sdb1", "8:17");
	fake_dm_over(p);
	put(mountinfo, "1 0 253:0 / / rw - ext4 /dev/mapper/root rw\n");
	assert_sdb_reason("holds the root filesystem");

	/* Not root any more: the stack is still in use. */
	put(mountinfo, "1 0 254:0 / / rw - ext4 /dev/vda rw\n");
	assert_sdb_reason("in use by dm-0");
	free(p);
	free(d);
}

Test(fakesys, read_only)
{
	char *d = sdb_stick(0);
	attr(d, "ro", "1");
	assert_sdb_reason("read-only");
	free(d);
}

Test(fakesys, facts_and_rules_directly)
{
	char *d = fake_stick("2-1.2", "sdb", "8:16", "S", 2048);
	char *p = fake_partition(d, "sdb1", "8:17");
	struct usb_disk_facts f;
	cr_assert_eq(usb_disk_facts_from_devnum(&env, makedev(8, 17), &f), 0);
	cr_assert_str_eq(f.sysname, "sdb1");
	cr_assert_not(f.whole_disk);
	cr_assert(f.on_usb);
	cr_assert_str_eq(f.port_path, "2-1.2");
	char *reason = NULL;
	cr_assert_eq(usb_disk_check(&f, USB_MODE_UDEV, &reason), -EPERM);
	cr_assert_str_eq(reason, "not a whole disk (sdb1 is a partition)");
	free(reason);
	usb_disk_facts_done(&f);

	cr_assert_eq(usb_disk_facts_from_devnum(&env, makedev(8, 16), &f), 0);
	cr_assert(f.whole_disk);
	cr_assert_eq(usb_disk_check(&f, USB_MODE_UDEV, &reason), 0);
	cr_assert_eq(usb_disk_check(&f, USB_MODE_STATIC, &reason), 0);
	f.on_usb = false;
	cr_assert_eq(usb_disk_check(&f, USB_MODE_STATIC, &reason), 0);
	cr_assert_eq(usb_disk_check(&f, USB_MODE_UDEV, &reason), -EPERM);
	cr_assert_str_eq(reason, "not on USB");
	free(reason);
	usb_disk_facts_done(&f);

	cr_assert_eq(usb_disk_facts_from_devnum(&env, makedev(9, 9), &f), -ENOENT);
	free(p);
	free(d);
}

/* Write junk over the stack the next call will use, so a variable read before it is set holds
 * a wild pointer as it would in the daemon, not a lucky zero. */
static __attribute__((noinline)) void scribble_stack(void)
{
	volatile unsigned char junk[16384];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = 0xa5;
}

/* A sysfs directory that is not a block device (no "dev" attribute) is -ENOENT, and the
 * failure path frees nothing that was never set: it once jumped past a cleanup variable's
 * initialisation and freed stack junk (clang refused it: "cannot jump from this goto statement
 * to its label"). */
Test(fakesys, not_a_block_device_is_enoent)
{
	char *d = pathf("%s/devices/virtual/misc/thing", sysfs);
	attr(d, "uevent", "DEVNAME=thing");
	struct usb_disk_facts f;
	scribble_stack();
	cr_assert_eq(usb_disk_facts_from_syspath(&env, d, NULL, &f), -ENOENT);
	free(d);
}

static bool str_same(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* Every member of two sets of facts equal (strings by value). */
static void assert_facts_eq(const struct usb_disk_facts *a, const struct usb_disk_facts *b, unsigned k)
{
	const char *const sa[] = { a->syspath,	a->sysname,    a->devnode,     a->usb_syspath, a->port_path,
				   a->root_hub, a->id_vendor,  a->id_product,  a->vendor,      a->model,
				   a->serial,	a->mounted_at, a->mounted_dev, a->swap_dev,    a->holder };
	const char *const sb[] = { b->syspath,	b->sysname,    b->devnode,     b->usb_syspath, b->port_path,
				   b->root_hub, b->id_vendor,  b->id_product,  b->vendor,      b->model,
				   b->serial,	b->mounted_at, b->mounted_dev, b->swap_dev,    b->holder };
	for (size_t i = 0; i < ARRAY_SIZE(sa); i++)
		cr_assert(str_same(sa[i], sb[i]), "allocation %u failed: string %zu is '%s', not '%s'", k, i,
			  sa[i] ? sa[i] : "(null)", sb[i] ? sb[i] : "(null)");
	cr_assert(a->devnum == b->devnum && a->whole_disk == b->whole_disk && a->ro == b->ro &&
			  a->removable == b->removable && a->size_bytes == b->size_bytes &&
			  a->size_from_node == b->size_from_node && a->logical_block_size == b->logical_block_size &&
			  a->on_usb == b->on_usb && a->busnum == b->busnum && a->devaddr == b->devaddr &&
			  a->speed_mbps == b->speed_mbps && a->usb_descriptors == b->usb_descriptors &&
			  a->holds_root == b->holds_root,
		  "allocation %u failed: a flag or number differs", k);
}

/* Every allocation of the facts of a stick failed once (its partition holds / through dm-0 and
 * is mounted, libusb answers): -ENOMEM, or exactly the facts of a run without failure. An
 * out-of-memory is never read as a "no" (not a partition, not root, not on USB, no vendor):
 * these facts decide what may be written. */
Test(fakesys, facts_out_of_memory_is_enomem)
{
	char *d = fake_stick("2-1.3", "sdb", "8:16", "SN-B", 2048);
	char *p = fake_partition(d, "sdb1", "8:17");
	fake_dm_over(p);
	put(mountinfo, "1 0 253:0 / / rw - ext4 /dev/mapper/root rw\n"
		       "2 1 8:17 / /mnt/stick rw - vfat /dev/sdb1 rw\n");
	fakes_reset();
	fusb.info = (struct usbdev_info){ .busnum = 2,
					  .devaddr = fake_addr("sdb"),
					  .ports = { 1, 3 },
					  .n_ports = 2,
					  .speed_mbps = 480,
					  .manufacturer = "Acme",
					  .serial = "LIBUSB-SN" };
	struct usb_env e = env;
	e.usb_info = fake_usb_info;
	char *dev = pathf("%s/class/block/sdb", sysfs);
	struct usb_disk_facts want, got;
	cr_assert_eq(usb_disk_facts_from_syspath(&e, dev, NULL, &want), 0);
	cr_assert(want.holds_root && want.on_usb && want.whole_disk && want.usb_descriptors);
	cr_assert_str_eq(want.mounted_at, "/mnt/stick");
	cr_assert_str_eq(want.holder, "dm-0");

	unsigned failed = 0;
	FAILALLOC_LOOP(k)
	{
		int r = usb_disk_facts_from_syspath(&e, dev, NULL, &got);
		failalloc_disarm();
		if (r == 0) {
			assert_facts_eq(&got, &want, k);
			usb_disk_facts_done(&got);
		} else {
			cr_assert_eq(r, -ENOMEM, "allocation %u failed: %d", k, r);
			failed++;
		}
	}
	cr_assert_geq(failed, 20, "%u allocations", failed);
	usb_disk_facts_done(&want);
	free(dev);
	free(p);
	free(d);
}

/* ---- the real system, with loop devices ---------------------------------------------------- */

static char *make_image(const char *name, size_t size)
{
	char *p = tu_path(tmp, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
	return p;
}

Test(realsys, static_and_udev_modes_on_a_loop_device)
{
	if (!tul_can_loop())
		cr_skip_test("needs root and /dev/loop-control");
	char *img = make_image("stick.img", 8 << 20);
	char *file = make_image("target.img", 1 << 20);
	char *missing = tu_path(tmp, "missing.img");
	struct tul_loop l;
	tul_attach(img, false, &l);

	struct slot_conf slots[] = {
		{ .name = "A", .path = l.path },
		{ .name = "B", .path = file },
		{ .name = "C", .path = missing },
		{ .name = "D", .path = "/dev/null" },
	};
	struct uf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.usb.mode = USB_MODE_STATIC;
	cfg.usb.slots = slots;
	cfg.usb.n_slots = 4;
	struct usb_candidate *c;
	size_t n;
	cr_assert_eq(usb_list_candidates(&cfg, &c, &n), 0);
	cr_assert_eq(n, 4);
	cr_assert_str_eq(c[0].slot, "A");
	cr_assert_str_eq(c[0].devnode, l.path);
	cr_assert(c[0].eligible, "loop: %s", c[0].reason);
	cr_assert_eq(c[0].capacity_bytes, 8 << 20);
	cr_assert_eq(c[0].logical_block_size, 512);
	cr_assert(c[0].is_block);
	cr_assert_null(c[0].port_path);
	cr_assert_str_eq(c[1].slot, "B");
	cr_assert(c[1].eligible);
	cr_assert_not(c[1].is_block);
	cr_assert_eq(c[1].capacity_bytes, 1 << 20);
	cr_assert_str_eq(c[2].slot, "C");
	cr_assert_not(c[2].eligible);
	cr_assert_str_eq(c[2].reason, "cannot access: No such file or directory");
	cr_assert_str_eq(c[3].slot, "D");
	cr_assert_not(c[3].eligible);
	cr_assert_str_eq(c[3].reason, "a character device, not a block device or regular file");
	usb_candidates_free(c, n);

	char *reason = NULL;
	cr_assert_eq(usb_target_check(&cfg, l.path, &reason), 0);
	cr_assert_eq(usb_target_check(&cfg, file, &reason), 0);

	/* udev mode: the loop device is not on USB; a regular file is still fine. */
	cfg.usb.mode = USB_MODE_UDEV;
	cfg.usb.slots = NULL;
	cfg.usb.n_slots = 0;
	cr_assert_eq(usb_target_check(&cfg, l.path, &reason), -EPERM);
	cr_assert_str_eq(reason, "not on USB");
	free(reason);
	cr_assert_eq(usb_target_check(&cfg, file, &reason), 0);
	cr_assert_eq(usb_target_check(&cfg, "/dev/null", &reason), -EPERM);
	cr_assert_str_eq(reason, "/dev/null is a character device, not a block device or regular file");
	free(reason);
	cr_assert_eq(usb_target_check(&cfg, missing, &reason), -ENOENT);
	free(reason);

	cr_assert_eq(usb_list_candidates(&cfg, &c, &n), 0);
	size_t found = 0;
	for (size_t i = 0; i < n; i++)
		if (c[i].devnode && strcmp(c[i].devnode, l.path) == 0) {
			found++;
			cr_assert_not(c[i].eligible);
			cr_assert_null(c[i].slot);
			cr_assert_str_eq(c[i].reason, "not on USB");
			cr_assert_eq(c[i].capacity_bytes, 8 << 20);
		}
	cr_assert_eq(found, 1);
	usb_candidates_free(c, n);

	tul_detach(&l);
	free(img);
	free(file);
	free(missing);
}

/* A static-mode configuration with the given slots (none: slots NULL, n 0). */
static struct uf_config cfg_static(struct slot_conf *slots, size_t n)
{
	struct uf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.usb.mode = USB_MODE_STATIC;
	cfg.usb.slots = slots;
	cfg.usb.n_slots = n;
	return cfg;
}

static void run(const char *const argv[])
{
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed", argv[0]);
}

Test(realsys, mounted_loop_device_is_refused)
{
	if (!tul_can_loop() || access("/usr/sbin/mkfs.ext4", X_OK) < 0)
		cr_skip_test("needs root, /dev/loop-control and mkfs.ext4");
	char *img = make_image("fs.img", 8 << 20);
	run((const char *const[]){ "mkfs.ext4", "-q", "-F", img, NULL });
	struct tul_loop l;
	tul_attach(img, false, &l);
	char *mnt = tu_path(tmp, "mnt");
	cr_assert_eq(mkdir(mnt, 0755), 0);
	cr_assert_eq(mount(l.path, mnt, "ext4", 0, NULL), 0, "mount: %s", strerror(errno));
	mounted_dir = strdup(mnt);

	struct slot_conf slots[] = { { .name = "A", .path = l.path } };
	struct uf_config cfg = cfg_static(slots, 1);
	struct usb_candidate *c;
	size_t n;
	cr_assert_eq(usb_list_candidates(&cfg, &c, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_not(c[0].eligible);
	const char *name = strrchr(l.path, '/') + 1;
	char *want = pathf("mounted at %s (%s)", mnt, name);
	cr_assert_str_eq(c[0].reason, want);
	usb_candidates_free(c, n);
	char *reason = NULL;
	cr_assert_eq(usb_target_check(&cfg, l.path, &reason), -EPERM);
	cr_assert_str_eq(reason, want);
	free(reason);
	/* And the kernel refuses the exclusive open too. */
	struct dev *d = NULL;
	cr_assert_eq(dev_open(l.path, DEV_OPEN_WRITE, &d), -EBUSY);

	cr_assert_eq(umount(mnt), 0);
	free(mounted_dir);
	mounted_dir = NULL;
	cr_assert_eq(usb_target_check(&cfg, l.path, &reason), 0);
	free(want);
	free(mnt);
	tul_detach(&l);
	free(img);
}

/* One static slot "F" at path, listed: its reason (NULL when eligible). */
static char *static_reason(const char *path)
{
	struct slot_conf slots[] = { { .name = "F", .path = (char *)path } };
	struct uf_config cfg = cfg_static(slots, 1);
	struct usb_candidate *c;
	size_t n;
	cr_assert_eq(usb_list_candidates(&cfg, &c, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(c[0].eligible, c[0].reason == NULL, "eligible %d, reason %s", c[0].eligible, c[0].reason);
	char *r = c[0].reason ? strdup(c[0].reason) : NULL;
	usb_candidates_free(c, n);
	return r;
}

/* The static slot at path is refused with exactly want. */
static void assert_static_reason(const char *path, const char *want)
{
	char *got = static_reason(path);
	cr_assert_str_eq(got, want);
	free(got);
}

/* `usbforge write` (usb_target_check) refuses path with "path: want". */
static void assert_target_refused(const struct uf_config *cfg, const char *path, const char *want)
{
	char *reason = NULL;
	cr_assert_eq(usb_target_check(cfg, path, &reason), -EPERM);
	char *want_path = pathf("%s: %s", path, want);
	cr_assert_str_eq(reason, want_path);
	free(reason);
	free(want_path);
}

/* A regular file gets the checks a block device gets: the file behind a loop device is refused
 * (by identity: a hard link of it under another name too), naming the loop device and whether
 * it is mounted, in the listing and for `usbforge write` (usb_target_check). */
Test(realsys, file_backing_a_loop_device_is_refused)
{
	if (!tul_can_loop() || access("/usr/sbin/mkfs.ext4", X_OK) < 0)
		cr_skip_test("needs root, /dev/loop-control and mkfs.ext4");
	char *img = make_image("backing.img", 8 << 20);
	char *alias = tu_path(tmp, "other-name.img");
	cr_assert_eq(link(img, alias), 0, "link: %s", strerror(errno));
	cr_assert_null(static_reason(img), "eligible before it backs anything");
	run((const char *const[]){ "mkfs.ext4", "-q", "-F", img, NULL });
	struct tul_loop l;
	tul_attach(img, false, &l);

	char *want = pathf("backs loop device %s (not mounted)", l.path);
	assert_static_reason(img, want);
	assert_static_reason(alias, want);
	struct uf_config cfg = cfg_static(NULL, 0);
	char *reason = NULL;
	assert_target_refused(&cfg, alias, want);
	free(want);

	char *mnt = tu_path(tmp, "mnt");
	cr_assert_eq(mkdir(mnt, 0755), 0);
	cr_assert_eq(mount(l.path, mnt, "ext4", MS_RDONLY, NULL), 0, "mount: %s", strerror(errno));
	mounted_dir = strdup(mnt);
	want = pathf("backs loop device %s (mounted at %s)", l.path, mnt);
	assert_static_reason(img, want);
	assert_target_refused(&cfg, img, want);
	free(want);

	cr_assert_eq(umount(mnt), 0);
	free(mounted_dir);
	mounted_dir = NULL;
	tul_detach(&l);
	cr_assert_null(static_reason(img), "eligible again once the loop device is gone");
	cr_assert_eq(usb_target_check(&cfg, img, &reason), 0);
	free(mnt);
	free(alias);
	free(img);
}

/* A regular file that another open holds under flock (a writer: dev_open for writing) is listed
 * ineligible, "in use", naming the holder; free again when the holder lets go. */
Test(realsys, file_locked_by_a_writer_is_in_use)
{
	char *img = make_image("locked.img", 1 << 20);
	struct dev *d = NULL;
	cr_assert_eq(dev_open(img, DEV_OPEN_WRITE, &d), 0);
	char comm[64] = "";
	FILE *f = fopen("/proc/self/comm", "re");
	cr_assert(f && fgets(comm, sizeof(comm), f));
	fclose(f);
	comm[strcspn(comm, "\n")] = 0;
	char *want = pathf("in use: locked by %s (pid %d)", comm, (int)getpid());
	assert_static_reason(img, want);
	struct uf_config cfg = cfg_static(NULL, 0);
	char *reason = NULL;
	assert_target_refused(&cfg, img, want);
	free(want);
	d = dev_free(d);
	cr_assert_null(static_reason(img));
	cr_assert_eq(usb_target_check(&cfg, img, &reason), 0);
	free(img);
}

Test(realsys, disk_holding_root_is_refused)
{
	/* Find "/" in mountinfo; probe its disk in sysfs only. */
	struct libmnt_table *tb = mnt_new_table_from_file("/proc/self/mountinfo");
	cr_assert(tb);
	struct libmnt_fs *root = mnt_table_find_target(tb, "/", MNT_ITER_FORWARD);
	cr_assert(root);
	unsigned ma = major(mnt_fs_get_devno(root)), mi = minor(mnt_fs_get_devno(root));
	mnt_unref_table(tb);
	if (ma == 0)
		cr_skip_test("/ is not on a block device (%u:%u)", ma, mi);

	char *link = pathf("/sys/dev/block/%u:%u", ma, mi);
	char *dir = realpath(link, NULL);
	cr_assert(dir);
	char *part = pathf("%s/partition", dir);
	if (access(part, F_OK) == 0)
		*strrchr(dir, '/') = '\0'; /* the whole disk */
	struct usb_disk_facts facts;
	cr_assert_eq(usb_disk_facts_from_syspath(NULL, dir, NULL, &facts), 0);
	cr_assert(facts.whole_disk);
	cr_assert(facts.holds_root);
	char *reason = NULL;
	cr_assert_eq(usb_disk_check(&facts, USB_MODE_STATIC, &reason), -EPERM);
	cr_assert_str_eq(reason, "holds the root filesystem");
	free(reason);
	cr_assert_eq(usb_disk_check(&facts, USB_MODE_UDEV, &reason), -EPERM);
	cr_assert_str_eq(reason, "holds the root filesystem");
	free(reason);

	/* The udev-mode list names it with the same reason. */
	struct uf_config cfg = cfg_udev();
	struct usb_candidate *c;
	size_t n, hits = 0;
	cr_assert_eq(usb_list_candidates(&cfg, &c, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (c[i].devnum == facts.devnum) {
			hits++;
			cr_assert_not(c[i].eligible);
			cr_assert_str_eq(c[i].reason, "holds the root filesystem");
		}
	cr_assert_eq(hits, 1);
	usb_candidates_free(c, n);
	usb_disk_facts_done(&facts);
	free(part);
	free(dir);
	free(link);
}

/* ---- real libusb and real nodes ------------------------------------------------------------- */

/* This host has no USB bus (libusb_init succeeds and lists 0 devices): the real lookup says
 * -ENODEV, and a listing that uses it keeps the sysfs identity. */
Test(realsys, real_libusb_without_a_bus_falls_back_to_sysfs)
{
	if (access("/sys/bus/usb/devices", F_OK) == 0)
		cr_skip_test("this machine has a USB bus");
	struct usbdev_info info;
	cr_assert_eq(usbdev_info_get_by_address(2, 3, &info), -ENODEV);
	cr_assert_eq(usbdev_info_get_by_address(1, 1, &info), -ENODEV);
	cr_assert_eq(usbdev_info_get_by_address(0, 1, &info), -EINVAL);
	cr_assert_eq(usbdev_info_get_by_address(1, 0, &info), -EINVAL);
	cr_assert_eq(usbdev_info_get_by_address(256, 1, &info), -EINVAL);

	free(fake_stick("2-1.3", "sdb", "8:16", "SN-B", 2097152));
	struct usb_env e = env;
	e.usb_info = usbdev_info_get_by_address; /* no node_size: /dev/sdb of this host is not the fake's */
	struct uf_config cfg = cfg_udev();
	struct usb_candidate *c;
	size_t n;
	cr_assert_eq(usb_list_candidates_env(&e, &cfg, &c, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_not(c[0].usb_descriptors);
	cr_assert_not(c[0].size_from_node);
	cr_assert_str_eq(c[0].serial, "SN-B");
	cr_assert_str_eq(c[0].vendor, "QEMU");
	cr_assert_str_eq(c[0].model, "QEMU USB HARDDRIVE");
	cr_assert_eq(c[0].usb_speed_mbps, 5000);
	cr_assert_str_eq(c[0].port_path, "2-1.3");
	cr_assert_eq(c[0].capacity_bytes, 2097152ULL * 512);
	cr_assert(c[0].eligible);
	usb_candidates_free(c, n);
}

/* usb_node_size on a loop device (the only node this suite opens): its exact size; refusals for
 * a stale device number, a regular file and a missing node. Then a fake stick whose disk is that
 * loop device: the listing's capacity is BLKGETSIZE64, not the (deliberately wrong) sysfs size,
 * and falls back to sysfs when the node is another device. */
Test(realsys, capacity_from_the_node_read_only)
{
	if (!tul_can_loop())
		cr_skip_test("needs root and /dev/loop-control");
	char *img = make_image("stick.img", 8 << 20);
	struct tul_loop l;
	tul_attach(img, false, &l);
	struct stat st;
	cr_assert_eq(stat(l.path, &st), 0);
	uint64_t bytes = 0;
	cr_assert_eq(usb_node_size(l.path, st.st_rdev, &bytes), 0);
	cr_assert_eq(bytes, 8 << 20);
	cr_assert_eq(usb_node_size(l.path, makedev(major(st.st_rdev), minor(st.st_rdev) + 1000), &bytes), -ENODEV);
	cr_assert_eq(usb_node_size(img, st.st_rdev, &bytes), -ENOTBLK);
	char *missing = tu_path(tmp, "missing");
	cr_assert_eq(usb_node_size(missing, st.st_rdev, &bytes), -ENOENT);

	const char *name = strrchr(l.path, '/') + 1; /* "loopN" */
	char *devnum = pathf("%u:%u", major(st.st_rdev), minor(st.st_rdev));
	char *d = fake_stick("2-1", "sdb", devnum, "SN-L", 1000);
	char *ue = pathf("MAJOR=%u\nMINOR=%u\nDEVNAME=%s\nDEVTYPE=disk", major(st.st_rdev), minor(st.st_rdev), name);
	attr(d, "uevent", ue);
	struct usb_env e = env;
	e.node_size = usb_node_size;
	struct uf_config cfg = cfg_udev();
	struct usb_candidate *c;
	size_t n;
	cr_assert_eq(usb_list_candidates_env(&e, &cfg, &c, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(c[0].devnode, l.path);
	cr_assert(c[0].size_from_node);
	cr_assert_eq(c[0].capacity_bytes, 8 << 20);
	usb_candidates_free(c, n);

	/* The fake disk claims another device number than the node has: sysfs size × 512. */
	char *other = pathf("%u:%u", major(st.st_rdev), minor(st.st_rdev) + 1000);
	attr(d, "dev", other);
	cr_assert_eq(usb_list_candidates_env(&e, &cfg, &c, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_not(c[0].size_from_node);
	cr_assert_eq(c[0].capacity_bytes, 1000 * 512);
	usb_candidates_free(c, n);

	tul_detach(&l);
	free(other);
	free(ue);
	free(d);
	free(devnum);
	free(missing);
	free(img);
}
