/* Loop devices for the usb/ suites: a real block device over a scratch file, attached with
 * autoclear and held open by the test, so the kernel detaches it when the test process ends,
 * however it ends. Needs root; tul_can_loop() says whether this process can make one. */
#pragma once

#include <stdbool.h>

struct tul_loop {
	int fd;	    /* held open (non-exclusive) until tul_detach */
	char *path; /* "/dev/loopN" */
	char *file; /* the backing file */
};

/* Whether /dev/loop-control can be used (root, loop driver present). */
bool tul_can_loop(void);
/* Attach file (read-only when ro) to a free loop device. Asserts on failure. */
void tul_attach(const char *file, bool ro, struct tul_loop *ret);
/* Detach (drop our reference; autoclear does the rest) and free. */
void tul_detach(struct tul_loop *l);
/* Wait until the loop device has been released by the kernel (up to a few seconds, by polling
 * its sysfs backing_file with poll() timeouts). Returns true when gone. */
bool tul_wait_detached(const char *path);
