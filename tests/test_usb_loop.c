/* Implementation of tests/test_usb_loop.h. */
#include "test_usb_loop.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

bool tul_can_loop(void)
{
	if (geteuid() != 0)
		return false;
	int fd = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

void tul_attach(const char *file, bool ro, struct tul_loop *ret)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	cr_assert(ctl >= 0, "open /dev/loop-control: %s", strerror(errno));
	int bfd = open(file, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	cr_assert(bfd >= 0, "open %s: %s", file, strerror(errno));

	for (int tries = 0; tries < 64; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		cr_assert(n >= 0, "LOOP_CTL_GET_FREE: %s", strerror(errno));
		char *path = NULL;
		cr_assert(asprintf(&path, "/dev/loop%d", n) > 0);
		int lfd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (lfd < 0) {
			free(path);
			continue;
		}
		struct loop_config lc;
		memset(&lc, 0, sizeof(lc));
		lc.fd = (unsigned)bfd;
		lc.info.lo_flags = LO_FLAGS_AUTOCLEAR | (ro ? LO_FLAGS_READ_ONLY : 0);
		snprintf((char *)lc.info.lo_file_name, sizeof(lc.info.lo_file_name), "%s", file);
		if (ioctl(lfd, LOOP_CONFIGURE, &lc) == 0) {
			close(bfd);
			close(ctl);
			ret->fd = lfd;
			ret->path = path;
			ret->file = strdup(file);
			return;
		}
		int e = errno;
		close(lfd);
		free(path);
		cr_assert(e == EBUSY, "LOOP_CONFIGURE: %s", strerror(e));
	}
	cr_assert_fail("no free loop device");
}

void tul_detach(struct tul_loop *l)
{
	if (l->fd >= 0) {
		/* Explicit clear as well: autoclear then only applies to a crash. */
		ioctl(l->fd, LOOP_CLR_FD, 0);
		close(l->fd);
	}
	l->fd = -1;
	if (l->path)
		tul_wait_detached(l->path);
	free(l->path);
	free(l->file);
	l->path = l->file = NULL;
}

bool tul_wait_detached(const char *path)
{
	const char *name = strrchr(path, '/');
	char *bf = NULL;
	cr_assert(asprintf(&bf, "/sys/block/%s/loop/backing_file", name ? name + 1 : path) > 0);
	bool gone = false;
	for (int i = 0; i < 300 && !gone; i++) {
		gone = access(bf, F_OK) < 0;
		if (!gone)
			poll(NULL, 0, 10);
	}
	free(bf);
	return gone;
}
