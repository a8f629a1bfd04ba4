/* The facts about a block device (sysfs attributes, its USB ancestor, mounts, swap, holders,
 * the root file system) and the eligibility rules over them. Reads sysfs and procfs text (the
 * mount and swap tables through libmount, which parses and unescapes them), and through the
 * optional hooks of struct usb_env libusb's descriptors and the node's size; never opens a
 * device node itself. See usb/safety.h. */
#include "usb/safety.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libmount.h>
#include <limits.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "usb/sysfs.h"
#include "usb/usbdev.h"
#include "util/macro.h"

struct usb_env usb_env_resolve(const struct usb_env *env)
{
	struct usb_env e = { 0 };
	if (env)
		e = *env;
	if (!e.sysfs)
		e.sysfs = "/sys";
	if (!e.mountinfo)
		e.mountinfo = "/proc/self/mountinfo";
	if (!e.swaps)
		e.swaps = "/proc/swaps";
	if (!e.locks)
		e.locks = "/proc/locks";
	return e;
}

/* An optional string attribute into *ret (left as it is when absent or unreadable). 0 or
 * -ENOMEM. */
static int read_opt(const char *dir, const char *name, char **ret)
{
	char *s = NULL;
	int r = sysfs_read(dir, name, &s);
	if (r == -ENOMEM)
		return r;
	if (r == 0) {
		free(*ret);
		*ret = s;
	}
	return 0;
}

/* An optional number attribute: 1 with *ret set, 0 when absent or malformed, -ENOMEM. */
static int read_u64_opt(const char *dir, const char *name, uint64_t *ret)
{
	int r = sysfs_read_u64(dir, name, ret);
	return r == -ENOMEM ? r : r == 0;
}

static int read_devnum(const char *dir, dev_t *ret)
{
	_cleanup_free_ char *s = NULL;
	int r = sysfs_read(dir, "dev", &s);
	if (r < 0)
		return r;
	return sysfs_parse_devnum(s, ret);
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* 1 when dir is a usb_device ("subsystem" links to .../usb and uevent has
 * DEVTYPE=usb_device), 0 when not, -ENOMEM. */
static int is_usb_device(const char *dir)
{
	_cleanup_free_ char *link = NULL, *devtype = NULL;
	if (asprintf(&link, "%s/subsystem", dir) < 0)
		return -ENOMEM;
	char buf[PATH_MAX];
	ssize_t n = readlink(link, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (strcmp(base_name(buf), "usb") != 0)
		return 0;
	int r = sysfs_uevent_get(dir, "DEVTYPE", &devtype);
	if (r == -ENOMEM)
		return r;
	return r == 0 && strcmp(devtype, "usb_device") == 0;
}

/* Walk up from syspath to (not including) <sysfs>/devices looking for the usb_device. */
static int find_usb_ancestor(const char *sysfs, const char *syspath, char **ret)
{
	_cleanup_free_ char *stop = NULL, *cur = strdup(syspath);
	if (!cur || asprintf(&stop, "%s/devices", sysfs) < 0)
		return -ENOMEM;
	char *stop_real = realpath(stop, NULL);
	if (stop_real) {
		free(stop);
		stop = stop_real;
	}
	for (;;) {
		char *slash = strrchr(cur, '/');
		if (!slash || slash == cur)
			return -ENOENT;
		*slash = '\0';
		if (strlen(cur) <= strlen(stop))
			return -ENOENT;
		int r = is_usb_device(cur);
		if (r < 0)
			return r;
		if (r > 0) {
			*ret = TAKE_PTR(cur);
			return 0;
		}
	}
}

/* Next space-separated field of *p (modified in place), NULL at the end of the line. */
static char *next_field(char **p)
{
	char *s = *p;
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	if (!*s) {
		*p = s;
		return NULL;
	}
	char *e = s;
	while (*e && *e != ' ' && *e != '\t' && *e != '\n')
		e++;
	if (*e)
		*e++ = '\0';
	*p = e;
	return s;
}

/* ---- mounts, swap, root: libmount's tables of env->mountinfo and env->swaps ---------------- */

/* The device numbers of a whole disk and its partitions, with their sysnames. */
struct devset {
	dev_t *nums;
	char **names;
	size_t n;
};

static void devset_done(struct devset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->names[i]);
	free(s->nums);
	free(s->names);
	*s = (struct devset){ 0 };
}

static int devset_add(struct devset *s, dev_t d, const char *name)
{
	dev_t *nn = realloc(s->nums, (s->n + 1) * sizeof(*nn));
	if (!nn)
		return -ENOMEM;
	s->nums = nn;
	char **nm = realloc(s->names, (s->n + 1) * sizeof(*nm));
	if (!nm)
		return -ENOMEM;
	s->names = nm;
	nm[s->n] = strdup(name);
	if (!nm[s->n])
		return -ENOMEM;
	nn[s->n++] = d;
	return 0;
}

static const char *devset_find(const struct devset *s, dev_t d)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->nums[i] == d)
			return s->names[i];
	return NULL;
}

static const char *devset_find_name(const struct devset *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->names[i], name) == 0)
			return s->names[i];
	return NULL;
}

/* The disk itself and every partition directory below it. */
/* disk and its partitions (the entries of syspath that are partitions) into s. */
static int devset_fill(struct devset *s, const char *syspath, const char *sysname, dev_t disk)
{
	int r = devset_add(s, disk, sysname);
	if (r < 0)
		return r;
	DIR *d = opendir(syspath);
	if (!d)
		return negative_errno();
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *sub = NULL;
		if (asprintf(&sub, "%s/%s", syspath, de->d_name) < 0) {
			r = -ENOMEM;
			break;
		}
		dev_t pd;
		r = sysfs_exists(sub, "partition");
		if (r < 0)
			break;
		if (r == 0)
			continue;
		r = read_devnum(sub, &pd);
		if (r == -ENOMEM)
			break;
		if (r < 0) {
			r = 0;
			continue;
		}
		r = devset_add(s, pd, de->d_name);
		if (r < 0)
			break;
	}
	closedir(d);
	return r < 0 ? r : 0;
}

static int disk_devset(const char *syspath, const char *sysname, dev_t disk, struct devset *ret)
{
	struct devset s = { 0 };
	int r = devset_fill(&s, syspath, sysname, disk);
	if (r < 0) {
		devset_done(&s);
		return r;
	}
	*ret = s;
	return 0;
}

/* Resolve a mount's or swap's device: a real device number, or for "0:N" mounts (btrfs,
 * overlay) the device named by a /dev source path, found by stat() (never opened). */
static bool source_devnum(const char *source, dev_t *ret)
{
	struct stat st;
	if (!source || strncmp(source, "/dev/", 5) != 0)
		return false;
	if (stat(source, &st) < 0 || !S_ISBLK(st.st_mode))
		return false;
	*ret = st.st_rdev;
	return true;
}

static void table_unrefp(struct libmnt_table **t) { mnt_unref_table(*t); }
static void iter_freep(struct libmnt_iter **i) { mnt_free_iter(*i); }

/* The table libmount parses from path: a mountinfo file (/proc/self/mountinfo, or the tests'
 * own; the format is told by its first line) or, swaps, a /proc/swaps file. libmount undoes
 * the \ooo escapes and skips lines it cannot parse. 0, -errno of opening it (-ENOENT),
 * -ENOMEM. */
static int read_table(const char *path, bool swaps, struct libmnt_table **ret)
{
	_cleanup_(table_unrefp) struct libmnt_table *tb = mnt_new_table();

	if (!tb)
		return -ENOMEM;
	int r = swaps ? mnt_table_parse_swaps(tb, path) : mnt_table_parse_file(tb, path);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(tb);
	return 0;
}

/* The member of s an entry of a table is on: its device number (mountinfo's MAJ:MIN; not the
 * 0:N of btrfs or overlay, nor a swap's, which has none), else the device its /dev source
 * names. NULL when neither is in s. */
static const char *fs_device_in(struct libmnt_fs *fs, const struct devset *s)
{
	dev_t d = mnt_fs_get_devno(fs);
	const char *hit = NULL;

	if (major(d) != 0)
		hit = devset_find(s, d);
	if (!hit && source_devnum(mnt_fs_get_source(fs), &d))
		hit = devset_find(s, d);
	return hit;
}

struct mount_hit {
	char *mount_point;
	char *dev_name;
};

/* First mount (in mountinfo's order) whose device is in s: 1 with ret filled, 0 when none,
 * -ENOMEM. */
static int find_mount(struct libmnt_table *mounts, const struct devset *s, struct mount_hit *ret)
{
	_cleanup_(iter_freep) struct libmnt_iter *it = mnt_new_iter(MNT_ITER_FORWARD);
	struct libmnt_fs *fs;

	if (!it)
		return -ENOMEM;
	while (mnt_table_next_fs(mounts, it, &fs) == 0) {
		const char *hit = fs_device_in(fs, s);
		if (!hit || !mnt_fs_get_target(fs))
			continue;
		ret->mount_point = strdup(mnt_fs_get_target(fs));
		ret->dev_name = strdup(hit);
		if (!ret->mount_point || !ret->dev_name) {
			free(ret->mount_point);
			free(ret->dev_name);
			return -ENOMEM;
		}
		return 1;
	}
	return 0;
}

/* The device of "/": the first mount on "/" in mountinfo, by its number, else by its /dev
 * source. -ENOENT when there is none or it is on no block device (tmpfs, overlay), -ENOMEM. */
static int root_devnum(struct libmnt_table *mounts, dev_t *ret)
{
	_cleanup_(iter_freep) struct libmnt_iter *it = mnt_new_iter(MNT_ITER_FORWARD);
	struct libmnt_fs *fs;

	if (!it)
		return -ENOMEM;
	while (mnt_table_next_fs(mounts, it, &fs) == 0) {
		if (!mnt_fs_streq_target(fs, "/"))
			continue;
		dev_t d = mnt_fs_get_devno(fs);
		if (major(d) != 0 || source_devnum(mnt_fs_get_source(fs), &d)) {
			*ret = d;
			return 0;
		}
		return -ENOENT;
	}
	return -ENOENT;
}

/* Does the device at dir (a disk, partition or stacked device) lie on the disk target_syspath?
 * Follows "slaves" down through dm/md stacks; depth-bounded. 1 yes, 0 no, -ENOMEM (never a
 * "no" for want of memory: the answer decides whether the disk holding / may be written). */
static int lies_on(const char *dir, const char *target_syspath, int depth)
{
	if (depth > 8)
		return 0;
	_cleanup_free_ char *real = realpath(dir, NULL);
	if (!real)
		return errno == ENOMEM ? -ENOMEM : 0;
	/* The disk itself, or one of its partitions (a subdirectory). */
	size_t tl = strlen(target_syspath);
	if (strcmp(real, target_syspath) == 0 || (strncmp(real, target_syspath, tl) == 0 && real[tl] == '/'))
		return 1;
	_cleanup_free_ char *slaves = NULL;
	if (asprintf(&slaves, "%s/slaves", real) < 0)
		return -ENOMEM;
	DIR *d = opendir(slaves);
	if (!d)
		return errno == ENOMEM ? -ENOMEM : 0;
	int found = 0;
	struct dirent *de;
	while (found == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *sub = NULL;
		if (asprintf(&sub, "%s/%s", slaves, de->d_name) < 0)
			found = -ENOMEM;
		else
			found = lies_on(sub, target_syspath, depth + 1);
	}
	closedir(d);
	return found;
}

static int holds_root(const struct usb_env *env, struct libmnt_table *mounts, const char *syspath, bool *ret)
{
	dev_t rd;
	int r = root_devnum(mounts, &rd);
	if (r == -ENOENT) {
		*ret = false;
		return 0;
	}
	if (r < 0)
		return r;
	_cleanup_free_ char *p = NULL;
	if (asprintf(&p, "%s/dev/block/%u:%u", env->sysfs, major(rd), minor(rd)) < 0)
		return -ENOMEM;
	r = lies_on(p, syspath, 0);
	if (r < 0)
		return r;
	*ret = r > 0;
	return 0;
}

/* First entry of env->swaps naming the disk or a partition (by name, else by device number):
 * 1 with *ret (its sysname), 0 when none or there is no swaps file, -errno, -ENOMEM. */
static int find_swap(const char *swaps, const struct devset *s, char **ret)
{
	_cleanup_(table_unrefp) struct libmnt_table *tb = NULL;
	_cleanup_(iter_freep) struct libmnt_iter *it = NULL;
	struct libmnt_fs *fs;

	int r = read_table(swaps, true, &tb);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	it = mnt_new_iter(MNT_ITER_FORWARD);
	if (!it)
		return -ENOMEM;
	while (mnt_table_next_fs(tb, it, &fs) == 0) {
		const char *name = mnt_fs_get_source(fs), *hit = NULL;
		if (name && strncmp(name, "/dev/", 5) == 0)
			hit = devset_find_name(s, base_name(name));
		if (!hit)
			hit = fs_device_in(fs, s);
		if (hit) {
			*ret = strdup(hit);
			return *ret ? 1 : -ENOMEM;
		}
	}
	return 0;
}

/* First entry of <dir>/holders for the disk or any partition. */
static int find_holder(const char *syspath, const struct devset *s, char **ret)
{
	for (size_t i = 0; i < s->n; i++) {
		_cleanup_free_ char *h = NULL;
		int r = i == 0 ? asprintf(&h, "%s/holders", syspath)
			       : asprintf(&h, "%s/%s/holders", syspath, s->names[i]);
		if (r < 0)
			return -ENOMEM;
		DIR *d = opendir(h);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			*ret = strdup(de->d_name);
			closedir(d);
			return *ret ? 1 : -ENOMEM;
		}
		closedir(d);
	}
	return 0;
}

/* ---- facts ----------------------------------------------------------------------------------- */

/* Replace *field by v (NULL or empty: keep *field). 0 or -ENOMEM. */
static int take_string(char **field, const char *v)
{
	if (!v || !*v)
		return 0;
	char *c = strdup(v);
	if (!c)
		return -ENOMEM;
	free(*field);
	*field = c;
	return 0;
}

/* What libusb says about the usb_device at f->busnum/f->devaddr, over the sysfs identity:
 * libusb's speed, serial string descriptor and port numbers win (they are what the device
 * itself reports); its vendor/product ids and strings fill in only what sysfs lacks. Without
 * the hook, or when libusb cannot see the device (no bus, not yet enumerated, gone), sysfs
 * stands. 0 or -ENOMEM. */
static int usb_identity_libusb(const struct usb_env *env, struct usb_disk_facts *f)
{
	struct usbdev_info ui = { 0 };
	int r;

	if (!env->usb_info || f->busnum == 0 || f->devaddr == 0)
		return 0;
	r = env->usb_info(f->busnum, f->devaddr, &ui);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return 0; /* sysfs is the fallback */
	f->usb_descriptors = true;
	if (ui.speed_mbps)
		f->speed_mbps = ui.speed_mbps;
	r = take_string(&f->serial, ui.serial);
	if (r >= 0 && !f->vendor)
		r = take_string(&f->vendor, ui.manufacturer);
	if (r >= 0 && !f->model)
		r = take_string(&f->model, ui.product);
	if (r >= 0 && !f->id_vendor && asprintf(&f->id_vendor, "%04x", ui.id_vendor) < 0) {
		f->id_vendor = NULL;
		r = -ENOMEM;
	}
	if (r >= 0 && !f->id_product && asprintf(&f->id_product, "%04x", ui.id_product) < 0) {
		f->id_product = NULL;
		r = -ENOMEM;
	}
	char *port = NULL;
	if (r >= 0) {
		int k = port_path_format(ui.busnum, ui.ports, ui.n_ports, &port);
		if (k == -ENOMEM)
			r = k;
		else if (k == 0) {
			free(f->port_path);
			f->port_path = port;
		}
	}
	usbdev_info_done(&ui);
	return r;
}

static int usb_identity(const struct usb_env *env, struct usb_disk_facts *f)
{
	const char *u = f->usb_syspath;
	uint64_t v;
	f->port_path = strdup(base_name(u));
	if (!f->port_path)
		return -ENOMEM;
	int r = read_opt(u, "idVendor", &f->id_vendor);
	if (r >= 0)
		r = read_opt(u, "idProduct", &f->id_product);
	if (r >= 0)
		r = read_opt(u, "manufacturer", &f->vendor);
	if (r >= 0)
		r = read_opt(u, "product", &f->model);
	if (r >= 0)
		r = read_opt(u, "serial", &f->serial);
	if (r >= 0)
		r = read_u64_opt(u, "busnum", &v);
	if (r < 0)
		return r;
	if (r > 0) {
		f->busnum = (unsigned)v;
		if (asprintf(&f->root_hub, "usb%u", f->busnum) < 0) {
			f->root_hub = NULL;
			return -ENOMEM;
		}
	}
	r = read_u64_opt(u, "devnum", &v);
	if (r < 0)
		return r;
	if (r > 0 && v <= 255)
		f->devaddr = (unsigned)v;
	_cleanup_free_ char *speed = NULL;
	r = read_opt(u, "speed", &speed);
	if (r < 0)
		return r;
	if (speed) {
		char *end;
		double s = strtod(speed, &end);
		if (end != speed && s > 0 && s < 1e6)
			f->speed_mbps = (unsigned)s;
	}
	return usb_identity_libusb(env, f);
}

/* "/dev/" + the uevent's DEVNAME (it may name a subdirectory), else + sysname. 0 or -ENOMEM. */
static int devnode_of(const char *syspath, const char *sysname, char **ret)
{
	_cleanup_free_ char *devname = NULL;
	char *p;
	int r = sysfs_uevent_get(syspath, "DEVNAME", &devname);
	if (r == -ENOMEM)
		return r;
	if (asprintf(&p, "/dev/%s", r == 0 ? devname : sysname) < 0)
		return -ENOMEM;
	*ret = p;
	return 0;
}

int usb_disk_facts_from_syspath(const struct usb_env *env_in, const char *syspath, const char *usb_syspath,
				struct usb_disk_facts *ret)
{
	struct usb_env env = usb_env_resolve(env_in);
	struct usb_disk_facts f = { 0 };
	struct devset set = { 0 };
	struct libmnt_table *mounts = NULL;
	uint64_t v;
	int r;

	f.syspath = realpath(syspath, NULL);
	if (!f.syspath)
		return errno == ENOMEM ? -ENOMEM : -ENOENT;
	f.sysname = strdup(base_name(f.syspath));
	if (!f.sysname) {
		r = -ENOMEM;
		goto fail;
	}
	r = read_devnum(f.syspath, &f.devnum);
	if (r < 0) {
		r = r == -ENOMEM ? r : -ENOENT; /* not a block device directory */
		goto fail;
	}
	r = devnode_of(f.syspath, f.sysname, &f.devnode);
	if (r < 0)
		goto fail;
	r = sysfs_exists(f.syspath, "partition");
	if (r < 0)
		goto fail;
	f.whole_disk = r == 0;
	r = read_u64_opt(f.syspath, "ro", &v);
	if (r < 0)
		goto fail;
	f.ro = r > 0 && v != 0;
	r = read_u64_opt(f.syspath, "removable", &v);
	if (r < 0)
		goto fail;
	f.removable = r > 0 && v != 0;
	r = read_u64_opt(f.syspath, "size", &v);
	if (r < 0)
		goto fail;
	if (r > 0)
		f.size_bytes = v * 512;
	f.logical_block_size = 512;
	r = read_u64_opt(f.syspath, "queue/logical_block_size", &v);
	if (r < 0)
		goto fail;
	if (r > 0 && v >= 512 && v <= 65536)
		f.logical_block_size = (unsigned)v;

	if (usb_syspath) {
		f.usb_syspath = realpath(usb_syspath, NULL);
		if (!f.usb_syspath)
			f.usb_syspath = strdup(usb_syspath);
		if (!f.usb_syspath) {
			r = -ENOMEM;
			goto fail;
		}
	} else {
		r = find_usb_ancestor(env.sysfs, f.syspath, &f.usb_syspath);
		if (r == -ENOMEM)
			goto fail;
	}
	f.on_usb = f.usb_syspath != NULL;
	if (f.on_usb) {
		r = usb_identity(&env, &f);
		if (r < 0)
			goto fail;
		/* Capacity: BLKGETSIZE64 of the node when env asks and the node opens read-only
		 * (what the kernel's block layer says the disk holds now), else sysfs size × 512. */
		if (f.whole_disk && env.node_size) {
			r = env.node_size(f.devnode, f.devnum, &v);
			if (r == -ENOMEM)
				goto fail;
			if (r == 0) {
				f.size_bytes = v;
				f.size_from_node = true;
			}
		}
	}
	/* Fallbacks from the SCSI device and the disk. */
	r = f.vendor ? 0 : read_opt(f.syspath, "device/vendor", &f.vendor);
	if (r >= 0 && !f.model)
		r = read_opt(f.syspath, "device/model", &f.model);
	if (r >= 0 && !f.serial)
		r = read_opt(f.syspath, "serial", &f.serial);
	if (r < 0)
		goto fail;
	if (f.serial && !*f.serial)
		f.serial = mfree(f.serial);
	if (!f.vendor && f.id_vendor && !(f.vendor = strdup(f.id_vendor))) {
		r = -ENOMEM;
		goto fail;
	}
	if (!f.model && f.id_product && !(f.model = strdup(f.id_product))) {
		r = -ENOMEM;
		goto fail;
	}

	/* Safety. A partition is judged with its own number only; the whole-disk rule refuses it. */
	r = disk_devset(f.syspath, f.sysname, f.devnum, &set);
	if (r < 0)
		goto fail;
	r = read_table(env.mountinfo, false, &mounts);
	if (r < 0)
		goto fail;
	struct mount_hit mh = { 0 };
	r = find_mount(mounts, &set, &mh);
	if (r < 0)
		goto fail;
	f.mounted_at = mh.mount_point;
	f.mounted_dev = mh.dev_name;
	r = find_swap(env.swaps, &set, &f.swap_dev);
	if (r < 0)
		goto fail;
	r = find_holder(f.syspath, &set, &f.holder);
	if (r < 0)
		goto fail;
	r = holds_root(&env, mounts, f.syspath, &f.holds_root);
	if (r < 0)
		goto fail;
	mnt_unref_table(mounts);
	devset_done(&set);
	*ret = f;
	return 0;
fail:
	mnt_unref_table(mounts);
	devset_done(&set);
	usb_disk_facts_done(&f);
	return r;
}

int usb_disk_facts_from_devnum(const struct usb_env *env_in, dev_t devnum, struct usb_disk_facts *ret)
{
	struct usb_env env = usb_env_resolve(env_in);
	_cleanup_free_ char *p = NULL;
	if (asprintf(&p, "%s/dev/block/%u:%u", env.sysfs, major(devnum), minor(devnum)) < 0)
		return -ENOMEM;
	return usb_disk_facts_from_syspath(&env, p, NULL, ret);
}

void usb_disk_facts_done(struct usb_disk_facts *f)
{
	free(f->syspath);
	free(f->sysname);
	free(f->devnode);
	free(f->usb_syspath);
	free(f->port_path);
	free(f->root_hub);
	free(f->id_vendor);
	free(f->id_product);
	free(f->vendor);
	free(f->model);
	free(f->serial);
	free(f->mounted_at);
	free(f->mounted_dev);
	free(f->swap_dev);
	free(f->holder);
	*f = (struct usb_disk_facts){ 0 };
}

int usb_disk_check(const struct usb_disk_facts *f, enum usb_mode mode, char **ret_reason)
{
	char *reason = NULL;
	int r = 0;

	if (!f->whole_disk)
		r = asprintf(&reason, "not a whole disk (%s is a partition)", f->sysname);
	else if (f->holds_root)
		r = asprintf(&reason, "holds the root filesystem");
	else if (f->mounted_at)
		r = asprintf(&reason, "mounted at %s (%s)", f->mounted_at, f->mounted_dev);
	else if (f->swap_dev)
		r = asprintf(&reason, "used as swap (%s)", f->swap_dev);
	else if (f->holder)
		r = asprintf(&reason, "in use by %s", f->holder);
	else if (mode == USB_MODE_UDEV && !f->on_usb)
		r = asprintf(&reason, "not on USB");
	else if (f->ro)
		r = asprintf(&reason, "read-only");
	else if (f->size_bytes == 0)
		r = asprintf(&reason, "no medium");
	else
		return 0;
	if (r < 0)
		return -ENOMEM;
	*ret_reason = reason;
	return -EPERM;
}

/* ---- regular files: loop devices over them, locks on them ------------------------------------ */

/* The identity of the file behind the loop device at syspath (named sysname): 1 with *ret_dev
 * and *ret_ino set, 0 when it has none (not attached, or neither source answers), -ENOMEM. */
static int loop_backing_identity(const struct usb_env *env, const char *syspath, const char *sysname, dev_t *ret_dev,
				 ino_t *ret_ino)
{
	_cleanup_free_ char *backing = NULL;
	int r = sysfs_read(syspath, "loop/backing_file", &backing);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return 0; /* a loop device with nothing attached */
	if (strcmp(env->sysfs, "/sys") == 0) {
		/* The kernel's own answer: the backing file's device and inode (huge_encode_dev). */
		_cleanup_free_ char *node = NULL;
		r = devnode_of(syspath, sysname, &node);
		if (r < 0)
			return r;
		_cleanup_close_ int fd = open(node, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		struct loop_info64 li;
		struct stat nst;
		if (fd >= 0 && fstat(fd, &nst) == 0 && S_ISBLK(nst.st_mode) && ioctl(fd, LOOP_GET_STATUS64, &li) == 0) {
			uint64_t enc = li.lo_device;
			*ret_dev = makedev((unsigned)((enc >> 8) & 0xfff),
					   (unsigned)((enc & 0xff) | ((enc >> 12) & 0xfff00)));
			*ret_ino = (ino_t)li.lo_inode;
			return 1;
		}
	}
	/* No access to the node (an unprivileged daemon) or an injected sysfs: the name the
	 * kernel shows, resolved here; a backing file deleted since shows " (deleted)" and
	 * resolves to nothing. */
	struct stat st;
	if (stat(backing, &st) < 0)
		return 0;
	*ret_dev = st.st_dev;
	*ret_ino = st.st_ino;
	return 1;
}

int usb_file_backs_loop(const struct usb_env *env_in, dev_t dev, ino_t ino, char **ret_reason)
{
	struct usb_env env = usb_env_resolve(env_in);
	_cleanup_free_ char *dir = NULL;
	int r = 0;

	if (asprintf(&dir, "%s/block", env.sysfs) < 0)
		return -ENOMEM;
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno; /* no block devices at all (an injected sysfs) */
	struct dirent *de;
	while (r == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *sub = NULL;
		if (asprintf(&sub, "%s/%s", dir, de->d_name) < 0) {
			r = -ENOMEM;
			break;
		}
		dev_t bdev;
		ino_t bino;
		r = loop_backing_identity(&env, sub, de->d_name, &bdev, &bino);
		if (r <= 0)
			continue;
		r = 0;
		if (bdev != dev || bino != ino)
			continue;
		/* Ours: say which loop device, and what it is used for. */
		struct usb_disk_facts f;
		_cleanup_free_ char *use = NULL;
		int q = usb_disk_facts_from_syspath(&env, sub, NULL, &f);
		if (q == -ENOMEM) {
			r = q;
			break;
		}
		if (q < 0) {
			q = asprintf(ret_reason, "backs loop device %s", de->d_name);
		} else {
			if (f.holds_root)
				q = asprintf(&use, "holding the root filesystem");
			else if (f.mounted_at)
				q = asprintf(&use, "mounted at %s", f.mounted_at);
			else if (f.swap_dev)
				q = asprintf(&use, "used as swap");
			else if (f.holder)
				q = asprintf(&use, "in use by %s", f.holder);
			else
				q = asprintf(&use, "not mounted");
			if (q >= 0)
				q = asprintf(ret_reason, "backs loop device %s (%s)", f.devnode, use);
			usb_disk_facts_done(&f);
		}
		r = q < 0 ? -ENOMEM : -EPERM;
	}
	closedir(d);
	return r;
}

int usb_file_lock_holder(const struct usb_env *env_in, dev_t dev, ino_t ino, char **ret_who)
{
	struct usb_env env = usb_env_resolve(env_in);
	_cleanup_fclose_ FILE *f = fopen(env.locks, "re");
	if (!f)
		return 0;
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) >= 0) {
		/* "1: FLOCK  ADVISORY  WRITE 1234 fd:00:56789 0 EOF"; blocked waiters have "->" */
		char *cur = line, *fld[6] = { 0 };
		size_t i = 0;
		while (i < 6 && (fld[i] = next_field(&cur)))
			i++;
		if (i < 6 || strcmp(fld[1], "FLOCK") != 0)
			continue;
		unsigned ma, mi;
		unsigned long long in;
		char extra;
		if (sscanf(fld[5], "%x:%x:%llu%c", &ma, &mi, &in, &extra) != 3)
			continue;
		if (makedev(ma, mi) != dev || (ino_t)in != ino)
			continue;
		long pid = strtol(fld[4], NULL, 10);
		_cleanup_free_ char *procdir = NULL, *comm = NULL;
		if (pid > 0 && asprintf(&procdir, "/proc/%ld", pid) < 0)
			return -ENOMEM;
		int q = procdir ? sysfs_read(procdir, "comm", &comm) : -ENOENT;
		if (q == -ENOMEM)
			return q;
		if (q == 0 && *comm)
			q = asprintf(ret_who, "%s (pid %ld)", comm, pid);
		else if (pid > 0)
			q = asprintf(ret_who, "another process (pid %ld)", pid);
		else
			q = asprintf(ret_who, "another process");
		return q < 0 ? -ENOMEM : 1;
	}
	return 0;
}
