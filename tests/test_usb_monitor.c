/* Tests of the hotplug watcher (usb/monitor.c) with real kernel uevents: a loop device this test
 * adds and removes through /dev/loop-control (add, remove) and attaches/detaches a backing file
 * to (change), asserting the exact sequence of events seen for that device. And of the libusb
 * side (usb/usbdev.c) on a machine without a USB bus: port path parsing, -ENODEV lookups, and
 * the bounded wait for a stick's disk on a fake sysfs tree. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libusb.h>
#include <linux/loop.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "helpers/testutil.h"
#include "test_usb_loop.h"
#include "usb/monitor.h"
#include "usb/reset.h"
#include "usb/usbdev.h"

static char *tmp;
static void setup(void) { tmp = tu_tmpdir("mon"); }
static void teardown(void)
{
	tu_rmrf(tmp);
	free(tmp);
}
TestSuite(monitor, .init = setup, .fini = teardown);
TestSuite(usbdev, .init = setup, .fini = teardown);

#define MAX_EV 16
struct seen {
	const char *want; /* sysname of interest */
	int n;
	enum usb_monitor_action actions[MAX_EV];
	char *devnode[MAX_EV];
	dev_t devnum[MAX_EV];
};

static void on_event(void *userdata, const struct usb_monitor_event *ev)
{
	struct seen *s = userdata;
	if (strcmp(ev->sysname, s->want) != 0 || s->n == MAX_EV)
		return;
	/* block events carry no port path; USB events are never about a block device's name */
	cr_assert_null(ev->port_path, "%s %s with port path %s", usb_monitor_action_name(ev->action), ev->sysname,
		       ev->port_path);
	s->actions[s->n] = ev->action;
	s->devnode[s->n] = ev->devnode ? strdup(ev->devnode) : NULL;
	s->devnum[s->n] = ev->devnum;
	s->n++;
}

/* Process events until s holds n events for our device (each wait bounded by 5 s). */
static void wait_for(struct usb_monitor *m, struct seen *s, int n)
{
	while (s->n < n) {
		struct pollfd pfd = { .fd = usb_monitor_fd(m), .events = POLLIN };
		int k = poll(&pfd, 1, 5000);
		cr_assert(k > 0, "no uevent within 5 s (have %d of %d)", s->n, n);
		usb_monitor_process(m, on_event, s);
	}
}

/* Drain without blocking: anything more for our device is a duplicate. */
static void drain(struct usb_monitor *m, struct seen *s)
{
	struct pollfd pfd = { .fd = usb_monitor_fd(m), .events = POLLIN };
	while (poll(&pfd, 1, 0) > 0 && usb_monitor_process(m, on_event, s) > 0)
		;
}

Test(monitor, loop_add_attach_detach_remove)
{
	if (!tul_can_loop())
		cr_skip_test("needs root and /dev/loop-control");
	struct usb_monitor *m = NULL;
	cr_assert_eq(usb_monitor_new(NULL, &m), 0);
	cr_assert_str_eq(usb_monitor_source(m), access("/run/udev/control", F_OK) == 0 ? "udev" : "kernel");
	/* libusb hotplug is on too (Debian's libusb has it; libusb_init works without a USB bus):
	 * the exact counts below prove its descriptors in the same epoll set add no block events
	 * and no duplicates. */
	cr_assert(usb_monitor_has_libusb(m));
	cr_assert_geq(usb_monitor_fd(m), 0);
	cr_assert_eq(usb_monitor_process(m, NULL, NULL) >= 0, 1);

	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	cr_assert(ctl >= 0);
	int num = -1;
	for (int i = 300; i < 400 && num < 0; i++) {
		char *p = NULL;
		cr_assert(asprintf(&p, "/sys/block/loop%d", i) > 0);
		if (access(p, F_OK) < 0 && ioctl(ctl, LOOP_CTL_ADD, i) == i)
			num = i;
		free(p);
	}
	cr_assert(num >= 0, "could not add a loop device");
	char *name = NULL, *node = NULL;
	cr_assert(asprintf(&name, "loop%d", num) > 0);
	cr_assert(asprintf(&node, "/dev/loop%d", num) > 0);
	struct seen s = { .want = name };
	wait_for(m, &s, 1);
	cr_assert_eq(s.actions[0], USB_MONITOR_ADD);
	cr_assert_str_eq(s.devnode[0], node);
	cr_assert_eq(major(s.devnum[0]), 7);
	cr_assert_eq(minor(s.devnum[0]), (unsigned)num);

	/* Attach a backing file: one change; detach: one more change. */
	char *img = tu_path(tmp, "img");
	int bfd = open(img, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	cr_assert(bfd >= 0);
	cr_assert_eq(ftruncate(bfd, 1 << 20), 0);
	int lfd = open(node, O_RDWR | O_CLOEXEC);
	cr_assert(lfd >= 0, "open %s: %s", node, strerror(errno));
	struct loop_config lc;
	memset(&lc, 0, sizeof(lc));
	lc.fd = (unsigned)bfd;
	lc.info.lo_flags = LO_FLAGS_AUTOCLEAR;
	cr_assert_eq(ioctl(lfd, LOOP_CONFIGURE, &lc), 0, "LOOP_CONFIGURE: %s", strerror(errno));
	close(bfd);
	wait_for(m, &s, 2);
	cr_assert_eq(s.actions[1], USB_MONITOR_CHANGE);
	drain(m, &s);
	cr_assert_eq(s.n, 2, "exactly add + change before the detach, got %d", s.n);
	cr_assert_eq(ioctl(lfd, LOOP_CLR_FD, 0), 0);
	close(lfd);
	wait_for(m, &s, 3);
	cr_assert_eq(s.actions[2], USB_MONITOR_CHANGE);

	/* The detach finishes asynchronously; removal says EAGAIN/EBUSY until it has. */
	int rr = -1;
	for (int i = 0; i < 500; i++) {
		rr = ioctl(ctl, LOOP_CTL_REMOVE, num);
		if (rr >= 0 || (errno != EAGAIN && errno != EBUSY))
			break;
		poll(NULL, 0, 10);
	}
	cr_assert_geq(rr, 0, "LOOP_CTL_REMOVE: %s", strerror(errno)); /* 0 on new kernels, num on old */
	close(ctl);
	while (s.actions[s.n - 1] != USB_MONITOR_REMOVE && s.n < MAX_EV)
		wait_for(m, &s, s.n + 1);
	drain(m, &s);
	/* Exactly one add (first) and one remove (last); the detach is announced by one change
	 * (media) or, on 6.x kernels, two (media, then the capacity reset to 0); nothing else. */
	int adds = 0, removes = 0, changes = 0;
	for (int i = 0; i < s.n; i++) {
		adds += s.actions[i] == USB_MONITOR_ADD;
		removes += s.actions[i] == USB_MONITOR_REMOVE;
		changes += s.actions[i] == USB_MONITOR_CHANGE;
	}
	cr_assert_eq(adds, 1);
	cr_assert_eq(removes, 1);
	cr_assert_eq(s.actions[s.n - 1], USB_MONITOR_REMOVE);
	cr_assert_str_eq(s.devnode[s.n - 1], node);
	cr_assert(changes == 2 || changes == 3, "changes: %d", changes);
	cr_assert_eq(s.n, 2 + changes);

	for (int i = 0; i < s.n; i++)
		free(s.devnode[i]);
	free(img);
	free(name);
	free(node);
	usb_monitor_free(m);
}

/* The number of "tfd:" lines in /proc/self/fdinfo/FD: the descriptors an epoll set watches. */
static int epoll_watch_count(int fd)
{
	char *p = NULL;
	cr_assert(asprintf(&p, "/proc/self/fdinfo/%d", fd) > 0);
	FILE *f = fopen(p, "re");
	cr_assert_not_null(f, "%s", p);
	char *line = NULL;
	size_t cap = 0;
	int n = 0;
	while (getline(&line, &cap, f) > 0)
		n += strncmp(line, "tfd:", 4) == 0;
	free(line);
	fclose(f);
	free(p);
	return n;
}

Test(monitor, one_epoll_fd_for_netlink_and_libusb)
{
	struct usb_monitor *m = NULL, *m2 = NULL;
	cr_assert_eq(usb_monitor_new(NULL, &m), 0);
	cr_assert(usb_monitor_has_libusb(m));
	int fd = usb_monitor_fd(m);
	char *link = NULL, target[64] = "";
	cr_assert(asprintf(&link, "/proc/self/fd/%d", fd) > 0);
	ssize_t k = readlink(link, target, sizeof(target) - 1);
	cr_assert_gt(k, 0);
	target[k] = '\0';
	cr_assert_str_eq(target, "anon_inode:[eventpoll]");
	cr_assert_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

	/* Exactly the netlink socket plus every descriptor a libusb context asks to be polled. */
	libusb_context *ctx = NULL;
	cr_assert_eq(libusb_init(&ctx), 0);
	const struct libusb_pollfd **fds = libusb_get_pollfds(ctx);
	cr_assert_not_null(fds);
	int n_usb = 0;
	while (fds[n_usb])
		n_usb++;
	libusb_free_pollfds(fds);
	libusb_exit(ctx);
	cr_assert_gt(n_usb, 0);
	cr_assert_eq(epoll_watch_count(fd), 1 + n_usb);

	/* A second monitor has its own set and context; freeing one leaves the other whole. */
	cr_assert_eq(usb_monitor_new(NULL, &m2), 0);
	cr_assert_neq(usb_monitor_fd(m2), fd);
	cr_assert_eq(epoll_watch_count(usb_monitor_fd(m2)), 1 + n_usb);
	cr_assert_null(usb_monitor_free(m));
	cr_assert(usb_monitor_has_libusb(m2));
	cr_assert_geq(usb_monitor_process(m2, NULL, NULL), 0);
	cr_assert_null(usb_monitor_free(m2));
	free(link);
}

Test(monitor, names)
{
	cr_assert_str_eq(usb_monitor_action_name(USB_MONITOR_ADD), "add");
	cr_assert_str_eq(usb_monitor_action_name(USB_MONITOR_REMOVE), "remove");
	cr_assert_str_eq(usb_monitor_action_name(USB_MONITOR_CHANGE), "change");
	cr_assert_str_eq(usb_monitor_action_name(USB_MONITOR_USB_ADD), "usb_add");
	cr_assert_str_eq(usb_monitor_action_name(USB_MONITOR_USB_REMOVE), "usb_remove");
	cr_assert_eq(_USB_MONITOR_ACTION_MAX, 5);
	for (int a = 0; a < _USB_MONITOR_ACTION_MAX; a++)
		cr_assert_not_null(usb_monitor_action_name((enum usb_monitor_action)a), "%d", a);
	cr_assert_null(usb_monitor_action_name(_USB_MONITOR_ACTION_MAX));
	cr_assert_null(usb_monitor_action_name((enum usb_monitor_action) - 1));
	cr_assert_null(usb_monitor_free(NULL));
}

/* ---- usbdev --------------------------------------------------------------------------------- */

static bool have_usb_bus(void) { return access("/sys/bus/usb/devices", F_OK) == 0; }

Test(usbdev, no_bus_no_device)
{
	if (have_usb_bus())
		cr_skip_test("this machine has a USB bus");
	struct usbdev_info info;
	cr_assert_eq(usbdev_info_get("2-1.3", &info), -ENODEV);
	cr_assert_eq(usbdev_info_get("1-1", &info), -ENODEV);
	cr_assert_eq(usbdev_info_get("nope", &info), -EINVAL);
}

Test(usbdev, reset_hook_refuses_non_usb)
{
	struct usbreset *u = NULL;
	char *f = tu_path(tmp, "file");
	tu_write_file(f, "x", 1);
	cr_assert_eq(usbreset_new(f, 1000, &u), -ENODEV);
	char *missing = tu_path(tmp, "missing");
	cr_assert_eq(usbreset_new(missing, 1000, &u), -ENOENT);
	cr_assert_null(u);
	cr_assert_null(usbreset_free(NULL));
	if (tul_can_loop()) {
		char *img = tu_path(tmp, "img");
		int fd = open(img, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		cr_assert_eq(ftruncate(fd, 1 << 20), 0);
		close(fd);
		struct tul_loop l;
		tul_attach(img, false, &l);
		cr_assert_eq(usbreset_new(l.path, 1000, &u), -ENODEV); /* not on USB */
		tul_detach(&l);
		free(img);
	}
	free(f);
	free(missing);
}

/* A minimal fake sysfs stick for the wait. */
static void w(const char *dir, const char *name, const char *val)
{
	char *p = NULL;
	cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
	tu_write_file(p, val, strlen(val));
	free(p);
}

static void mk(const char *p)
{
	char *c = strdup(p);
	for (char *s = c + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			mkdir(c, 0755);
			*s = '/';
		}
	mkdir(c, 0755);
	free(c);
}

static char *fake_stick(const char *sys, const char *serial)
{
	char *u = NULL, *d = NULL, *l = NULL, *sub = NULL;
	cr_assert(asprintf(&u, "%s/devices/pci0000:00/usb2/2-1", sys) > 0);
	cr_assert(asprintf(&d, "%s/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sdb", u) > 0);
	mk(d);
	w(u, "uevent", "DEVTYPE=usb_device\n");
	cr_assert(asprintf(&sub, "%s/subsystem", u) > 0);
	cr_assert_eq(symlink("../../../../bus/usb", sub), 0);
	w(u, "serial", serial);
	w(u, "busnum", "2\n");
	w(d, "dev", "8:16\n");
	w(d, "size", "2048\n");
	w(d, "uevent", "DEVNAME=sdb\nDEVTYPE=disk\n");
	cr_assert(asprintf(&l, "%s/class/block", sys) > 0);
	mk(l);
	free(l);
	cr_assert(asprintf(&l, "%s/class/block/sdb", sys) > 0);
	cr_assert_eq(symlink(d, l), 0);
	free(l);
	free(sub);
	free(u);
	return d;
}

Test(usbdev, wait_for_disk_on_fake_sysfs)
{
	char *sys = tu_path(tmp, "sys");
	char *mi = tu_path(tmp, "mountinfo");
	char *sw = tu_path(tmp, "swaps");
	tu_write_file(mi, "", 0);
	tu_write_file(sw, "", 0);
	struct usb_env env = { .sysfs = sys, .mountinfo = mi, .swaps = sw };
	free(fake_stick(sys, "SERIAL-1\n"));

	char *node = NULL;
	cr_assert_eq(usbreset_wait_for_disk(&env, "SERIAL-1", NULL, 1000, &node), 0);
	cr_assert_str_eq(node, "/dev/sdb");
	free(node);
	node = NULL;
	cr_assert_eq(usbreset_wait_for_disk(&env, NULL, "2-1", 1000, &node), 0);
	cr_assert_str_eq(node, "/dev/sdb");
	free(node);
	node = NULL;
	/* Another serial never comes: bounded by the timeout. */
	cr_assert_eq(usbreset_wait_for_disk(&env, "SERIAL-2", NULL, 20, &node), -ETIMEDOUT);
	cr_assert_eq(usbreset_wait_for_disk(&env, NULL, "2-2", 20, &node), -ETIMEDOUT);
	cr_assert_null(node);
	cr_assert_eq(usbreset_wait_for_disk(&env, NULL, NULL, 20, &node), -EINVAL);
	free(sys);
	free(mi);
	free(sw);
}

/* The stick appears only while the waiter is blocked in poll(): a helper thread watches the
 * waiter's current system call in /proc, then creates the fake stick and makes the kernel send
 * a uevent (a "change" written to our own loop device's uevent file). */
struct late {
	pid_t waiter;
	const char *sys;
	const char *uevent;
	bool saw_poll;
};

static void *late_stick(void *arg)
{
	struct late *l = arg;
	char *p = NULL;
	if (asprintf(&p, "/proc/self/task/%d/syscall", (int)l->waiter) < 0)
		return NULL;
	for (int i = 0; i < 5000 && !l->saw_poll; i++) {
		char buf[64] = { 0 };
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			/* "7 …" is poll on x86-64; ppoll is 271. */
			if (n > 0 && (strncmp(buf, "7 ", 2) == 0 || strncmp(buf, "271 ", 4) == 0))
				l->saw_poll = true;
		}
		if (!l->saw_poll)
			poll(NULL, 0, 1);
	}
	free(p);
	free(fake_stick(l->sys, "LATE\n"));
	int fd = open(l->uevent, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "change", 6) != 6)
			l->saw_poll = false;
		close(fd);
	}
	return NULL;
}

Test(usbdev, wait_wakes_on_uevent)
{
	if (!tul_can_loop())
		cr_skip_test("needs root (a loop device to send a uevent)");
	char *img = tu_path(tmp, "img");
	int fd = open(img, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	struct tul_loop lo;
	tul_attach(img, false, &lo);
	char *uevent = NULL;
	cr_assert(asprintf(&uevent, "/sys/class/block/%s/uevent", strrchr(lo.path, '/') + 1) > 0);

	char *sys = tu_path(tmp, "sys");
	char *mi = tu_path(tmp, "mountinfo");
	char *sw = tu_path(tmp, "swaps");
	char *cb = NULL;
	cr_assert(asprintf(&cb, "%s/class/block", sys) > 0);
	mk(cb);
	tu_write_file(mi, "", 0);
	tu_write_file(sw, "", 0);
	struct usb_env env = { .sysfs = sys, .mountinfo = mi, .swaps = sw };

	struct late l = { .waiter = (pid_t)syscall(SYS_gettid), .sys = sys, .uevent = uevent };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, late_stick, &l), 0);
	char *node = NULL;
	int r = usbreset_wait_for_disk(&env, "LATE", NULL, 20000, &node);
	pthread_join(t, NULL);
	cr_assert(l.saw_poll, "the waiter never blocked in poll");
	cr_assert_eq(r, 0);
	cr_assert_str_eq(node, "/dev/sdb");
	free(node);
	tul_detach(&lo);
	free(cb);
	free(uevent);
	free(sys);
	free(mi);
	free(sw);
	free(img);
}
