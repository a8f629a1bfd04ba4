/* The candidate list (udev and static mode) and the one-off target check. Enumeration uses
 * libudev on the real sysfs (only sysfs attributes: udevd need not run) and a plain directory
 * walk on an injected sysfs tree; both feed the same facts and rules of usb/safety.c. In udev
 * mode on the real sysfs, a USB disk's identity also comes from libusb (usb/usbdev.c) and its
 * capacity from BLKGETSIZE64 on its node opened read-only (usb_node_size). See
 * usb/discover.h. */
#include "usb/discover.h"
#include "usb/sysfs.h"

#include <dirent.h>
#include <errno.h>
#include <libudev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "usb/usbdev.h"
#include "util/macro.h"
#include "util/openfile.h"

static bool env_is_real(const struct usb_env *env) { return strcmp(env->sysfs, "/sys") == 0; }

static void candidate_done(struct usb_candidate *c)
{
	free(c->slot);
	free(c->devnode);
	free(c->serial);
	free(c->vendor);
	free(c->model);
	free(c->port_path);
	free(c->root_hub);
	free(c->reason);
	*c = (struct usb_candidate){ 0 };
}

struct usb_candidate *usb_candidates_free(struct usb_candidate *c, size_t n)
{
	for (size_t i = 0; c && i < n; i++)
		candidate_done(&c[i]);
	free(c);
	return NULL;
}

struct cand_list {
	struct usb_candidate *v;
	size_t n, cap;
};

static struct usb_candidate *cand_push(struct cand_list *l)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct usb_candidate *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		l->v = v;
		l->cap = cap;
	}
	struct usb_candidate *c = &l->v[l->n++];
	*c = (struct usb_candidate){ 0 };
	return c;
}

/* Fill c from the facts and the rules of mode (slot not set here). */
static int candidate_from_facts(const struct usb_disk_facts *f, enum usb_mode mode, struct usb_candidate *c)
{
	c->devnode = strdup_or_null(f->devnode);
	c->serial = strdup_or_null(f->serial);
	c->vendor = strdup_or_null(f->vendor);
	c->model = strdup_or_null(f->model);
	c->port_path = strdup_or_null(f->port_path);
	c->root_hub = strdup_or_null(f->root_hub);
	if ((f->devnode && !c->devnode) || (f->serial && !c->serial) || (f->vendor && !c->vendor) ||
	    (f->model && !c->model) || (f->port_path && !c->port_path) || (f->root_hub && !c->root_hub))
		return -ENOMEM;
	c->capacity_bytes = f->size_bytes;
	c->logical_block_size = f->logical_block_size;
	c->usb_speed_mbps = f->speed_mbps;
	c->is_block = true;
	c->devnum = f->devnum;
	c->usb_descriptors = f->usb_descriptors;
	c->size_from_node = f->size_from_node;
	int r = usb_disk_check(f, mode, &c->reason);
	if (r == -ENOMEM)
		return r;
	c->eligible = r == 0;
	return 0;
}

static const struct slot_conf *slot_by_port(const struct uf_config *cfg, const char *port)
{
	if (!port)
		return NULL;
	for (size_t i = 0; i < cfg->usb.n_slots; i++)
		if (cfg->usb.slots[i].port && strcmp(cfg->usb.slots[i].port, port) == 0)
			return &cfg->usb.slots[i];
	return NULL;
}

/* Apply the port-to-slot mapping of udev mode to a USB disk's candidate. */
static int assign_udev_slot(const struct uf_config *cfg, struct usb_candidate *c, bool on_usb)
{
	if (!on_usb)
		return 0;
	if (cfg->usb.n_slots == 0) {
		/* every USB disk is a slot named after its port, the ineligible ones too: the daemon
		 * then shows them in the devices table as unsafe, with the reason, and never claims */
		c->slot = strdup(c->port_path ? c->port_path : "?");
		return c->slot ? 0 : -ENOMEM;
	}
	const struct slot_conf *s = slot_by_port(cfg, c->port_path);
	if (s) {
		c->slot = strdup(s->name);
		return c->slot ? 0 : -ENOMEM;
	}
	if (c->eligible) {
		c->eligible = false;
		if (asprintf(&c->reason, "port %s is not mapped to a slot", c->port_path ? c->port_path : "?") < 0) {
			c->reason = NULL;
			return -ENOMEM;
		}
	}
	return 0;
}

/* One whole disk (syspath, optional usb ancestor from libudev) into the list. */
static int add_disk(const struct usb_env *env, const struct uf_config *cfg, const char *syspath,
		    const char *usb_syspath, struct cand_list *l)
{
	struct usb_disk_facts f;
	int r = usb_disk_facts_from_syspath(env, syspath, usb_syspath, &f);
	if (r == -ENOENT)
		return 0; /* vanished meanwhile */
	if (r < 0)
		return r;
	if (!f.whole_disk || (!f.on_usb && f.size_bytes == 0)) {
		usb_disk_facts_done(&f);
		return 0;
	}
	struct usb_candidate *c = cand_push(l);
	if (!c) {
		usb_disk_facts_done(&f);
		return -ENOMEM;
	}
	r = candidate_from_facts(&f, USB_MODE_UDEV, c);
	if (r >= 0)
		r = assign_udev_slot(cfg, c, f.on_usb);
	usb_disk_facts_done(&f);
	return r;
}

static int enumerate_libudev(const struct usb_env *env, const struct uf_config *cfg, struct cand_list *l)
{
	struct udev *udev = udev_new();
	if (!udev)
		return -ENOMEM;
	struct udev_enumerate *e = udev_enumerate_new(udev);
	int r;
	if (!e) {
		r = -ENOMEM;
		goto out_udev;
	}
	r = udev_enumerate_add_match_subsystem(e, "block");
	if (r >= 0)
		r = udev_enumerate_scan_devices(e);
	if (r < 0)
		goto out;
	struct udev_list_entry *it;
	udev_list_entry_foreach(it, udev_enumerate_get_list_entry(e))
	{
		const char *syspath = udev_list_entry_get_name(it);
		struct udev_device *d = udev_device_new_from_syspath(udev, syspath);
		if (!d)
			continue; /* vanished */
		const char *devtype = udev_device_get_devtype(d);
		if (!devtype || strcmp(devtype, "disk") != 0) {
			udev_device_unref(d);
			continue;
		}
		/* The parent is owned by d. */
		struct udev_device *usb = udev_device_get_parent_with_subsystem_devtype(d, "usb", "usb_device");
		r = add_disk(env, cfg, syspath, usb ? udev_device_get_syspath(usb) : NULL, l);
		udev_device_unref(d);
		if (r < 0)
			goto out;
	}
	r = 0;
out:
	udev_enumerate_unref(e);
out_udev:
	udev_unref(udev);
	return r;
}

struct sysfs_walk {
	const struct usb_env *env;
	const struct uf_config *cfg;
	struct cand_list *l;
};

static int add_sysfs_disk(const char *syspath, void *userdata)
{
	struct sysfs_walk *w = userdata;
	int r = add_disk(w->env, w->cfg, syspath, NULL, w->l);
	return r < 0 ? r : 0;
}

static int enumerate_sysfs(const struct usb_env *env, const struct uf_config *cfg, struct cand_list *l)
{
	struct sysfs_walk w = { .env = env, .cfg = cfg, .l = l };
	int r = sysfs_for_each_block(env->sysfs, add_sysfs_disk, &w);
	return r > 0 ? 0 : r;
}

/* The rules a regular-file target shares with a block device: it must not back a loop device
 * (its file system would be overwritten under the kernel's feet, mounted or not), and no one
 * else may be writing it (the flock a writer holds; see dev_open). Returns 0; -EPERM with
 * *ret_reason; -ENOMEM; another -errno (with a reason) when loop devices cannot be listed. */
static int regular_file_check(const struct usb_env *env, const struct stat *st, char **ret_reason)
{
	_cleanup_free_ char *who = NULL;
	int r = usb_file_backs_loop(env, st->st_dev, st->st_ino, ret_reason);
	if (r == -EPERM || r == -ENOMEM)
		return r;
	if (r < 0)
		return asprintf(ret_reason, "cannot check whether it backs a loop device: %s", strerror(-r)) < 0
			       ? -ENOMEM
			       : -EPERM;
	r = usb_file_lock_holder(env, st->st_dev, st->st_ino, &who);
	if (r < 0)
		return r;
	if (r > 0)
		return asprintf(ret_reason, "in use: locked by %s", who) < 0 ? -ENOMEM : -EPERM;
	return 0;
}

static int static_slot(const struct usb_env *env, const struct slot_conf *s, struct usb_candidate *c)
{
	struct stat st;

	c->slot = strdup(s->name ? s->name : "?");
	c->devnode = strdup_or_null(s->path);
	if (!c->slot || (s->path && !c->devnode))
		return -ENOMEM;
	if (!s->path)
		return asprintf(&c->reason, "no path configured") < 0 ? -ENOMEM : 0;
	if (stat(s->path, &st) < 0)
		return asprintf(&c->reason, "cannot access: %s", strerror(errno)) < 0 ? -ENOMEM : 0;
	if (S_ISREG(st.st_mode)) {
		c->capacity_bytes = (uint64_t)st.st_size;
		c->logical_block_size = 4096;
		int r = regular_file_check(env, &st, &c->reason);
		if (r == -ENOMEM)
			return r;
		c->eligible = r == 0;
		return 0;
	}
	if (!S_ISBLK(st.st_mode))
		return asprintf(&c->reason, "%s, not a block device or regular file", file_kind(st.st_mode)) < 0
			       ? -ENOMEM
			       : 0;

	struct usb_disk_facts f;
	int r = usb_disk_facts_from_devnum(env, st.st_rdev, &f);
	if (r == -ENOENT)
		return asprintf(&c->reason, "no such block device in sysfs") < 0 ? -ENOMEM : 0;
	if (r < 0)
		return r;
	char *slot = TAKE_PTR(c->slot), *devnode = TAKE_PTR(c->devnode);
	r = candidate_from_facts(&f, USB_MODE_STATIC, c);
	/* Keep the configured name and path (the path may be a symlink to the node). */
	free(c->slot);
	free(c->devnode);
	c->slot = slot;
	c->devnode = devnode;
	usb_disk_facts_done(&f);
	return r;
}

static size_t slot_rank(const struct uf_config *cfg, const struct usb_candidate *c)
{
	if (!c->slot)
		return SIZE_MAX;
	for (size_t i = 0; i < cfg->usb.n_slots; i++)
		if (cfg->usb.slots[i].name && strcmp(cfg->usb.slots[i].name, c->slot) == 0)
			return i;
	return SIZE_MAX;
}

static int cand_cmp(const void *a, const void *b, void *cfg)
{
	const struct usb_candidate *x = a, *y = b;
	size_t rx = slot_rank(cfg, x), ry = slot_rank(cfg, y);
	if (rx != ry)
		return rx < ry ? -1 : 1;
	if (!x->devnode || !y->devnode)
		return !x->devnode - !y->devnode;
	return strcmp(x->devnode, y->devnode);
}

int usb_node_size(const char *devnode, dev_t devnum, uint64_t *ret_bytes)
{
	struct stat st;
	uint64_t bytes;

	/* Read-only: a size query needs no write access and no O_EXCL (which would fail on a
	 * stick a runner is writing); a read-only close also triggers no udev "change" event
	 * (udev watches for IN_CLOSE_WRITE). Nothing is read from or written to the node. */
	_cleanup_close_ int fd = open(devnode, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISBLK(st.st_mode))
		return -ENOTBLK;
	if (st.st_rdev != devnum)
		return -ENODEV; /* the name now belongs to another disk */
	if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
		return -errno;
	*ret_bytes = bytes;
	return 0;
}

int usb_list_candidates_env(const struct usb_env *env_in, const struct uf_config *cfg, struct usb_candidate **ret,
			    size_t *ret_n)
{
	struct usb_env env = usb_env_resolve(env_in);
	struct cand_list l = { 0 };
	int r = 0;

	if (cfg->usb.mode == USB_MODE_STATIC) {
		for (size_t i = 0; i < cfg->usb.n_slots && r >= 0; i++) {
			struct usb_candidate *c = cand_push(&l);
			r = c ? static_slot(&env, &cfg->usb.slots[i], c) : -ENOMEM;
		}
	} else {
		/* The sticks of the real sysfs are on this host's buses and nodes: ask libusb for
		 * their descriptors and the nodes for their size. An injected sysfs describes no
		 * device of this host; its tests pass hooks of their own (or none: sysfs only). */
		if (env_is_real(&env) && !env.usb_info)
			env.usb_info = usbdev_info_get_by_address;
		if (env_is_real(&env) && !env.node_size)
			env.node_size = usb_node_size;
		r = env_is_real(&env) ? enumerate_libudev(&env, cfg, &l) : enumerate_sysfs(&env, cfg, &l);
		/* Configured slots with nothing in them. */
		for (size_t i = 0; i < cfg->usb.n_slots && r >= 0; i++) {
			const struct slot_conf *s = &cfg->usb.slots[i];
			bool held = false;
			for (size_t j = 0; j < l.n && !held; j++)
				held = l.v[j].slot && s->name && strcmp(l.v[j].slot, s->name) == 0;
			if (held)
				continue;
			struct usb_candidate *c = cand_push(&l);
			if (!c) {
				r = -ENOMEM;
				break;
			}
			c->slot = strdup(s->name ? s->name : "?");
			c->port_path = strdup_or_null(s->port);
			c->reason = strdup("empty");
			if (!c->slot || !c->reason || (s->port && !c->port_path))
				r = -ENOMEM;
		}
	}
	if (r < 0) {
		usb_candidates_free(l.v, l.n);
		return r;
	}
	if (l.n > 1)
		qsort_r(l.v, l.n, sizeof(*l.v), cand_cmp, (void *)cfg);
	*ret = l.v;
	*ret_n = l.n;
	return 0;
}

int usb_list_candidates(const struct uf_config *cfg, struct usb_candidate **ret, size_t *ret_n)
{
	return usb_list_candidates_env(NULL, cfg, ret, ret_n);
}

int usb_target_check_env(const struct usb_env *env_in, const struct uf_config *cfg, const char *path, char **ret_reason)
{
	struct usb_env env = usb_env_resolve(env_in);
	struct stat st;
	char *reason = NULL;
	int r;

	if (stat(path, &st) < 0) {
		r = -errno;
		if (asprintf(&reason, "cannot access %s: %s", path, strerror(-r)) < 0)
			return -ENOMEM;
		*ret_reason = reason;
		return r;
	}
	if (S_ISREG(st.st_mode)) {
		r = regular_file_check(&env, &st, &reason);
		if (r == -EPERM) {
			char *full = NULL;
			if (asprintf(&full, "%s: %s", path, reason) < 0)
				return -ENOMEM;
			free(reason);
			*ret_reason = full;
		}
		return r;
	}
	if (!S_ISBLK(st.st_mode)) {
		if (asprintf(&reason, "%s is %s, not a block device or regular file", path, file_kind(st.st_mode)) < 0)
			return -ENOMEM;
		*ret_reason = reason;
		return -EPERM;
	}

	struct usb_disk_facts f;
	r = usb_disk_facts_from_devnum(&env, st.st_rdev, &f);
	if (r == -ENOENT) {
		if (asprintf(&reason, "no such block device in sysfs") < 0)
			return -ENOMEM;
		*ret_reason = reason;
		return -EPERM;
	}
	if (r < 0)
		return r;
	r = usb_disk_check(&f, cfg->usb.mode, &reason);
	if (r == 0 && cfg->usb.mode == USB_MODE_UDEV && cfg->usb.n_slots > 0 && !slot_by_port(cfg, f.port_path)) {
		if (asprintf(&reason, "port %s is not mapped to a slot", f.port_path ? f.port_path : "?") < 0)
			r = -ENOMEM;
		else
			r = -EPERM;
	}
	usb_disk_facts_done(&f);
	if (r == -EPERM)
		*ret_reason = reason;
	return r;
}

int usb_target_check(const struct uf_config *cfg, const char *path, char **ret_reason)
{
	return usb_target_check_env(NULL, cfg, path, ret_reason);
}
