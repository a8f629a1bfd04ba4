/* A test device of the device table (usb/dev.h) whose writes at or beyond a given offset block
 * until the test releases them, and which tells the test when it is freed: for the stall
 * watchdog of stages/ioq.c and the writer (a stuck write is abandoned, and the device is freed
 * by the stuck thread on its way out, never under it). Reads return zeros; sync and reset
 * succeed. Link tests/helpers/stalldev.c into the suites that use it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "blkio/dev.h"

struct stall_dev {
	struct dev base;
	int release;	   /* eventfd: write 1 to let the blocked writes return (-EIO) */
	int freed;	   /* eventfd: readable once the device was freed */
	uint64_t stall_at; /* a write reaching past this offset blocks */
};

/* A 64 MiB device with 512-byte blocks, named "stall". Asserts on failure. Free it with
 * dev_free() (or hand it to ioq_dev_free()); the two eventfds stay open for the test to read
 * and are closed by stall_dev_close_fds(). */
struct stall_dev *stall_dev_new(uint64_t stall_at);
/* Let every blocked and future stalling write return. */
void stall_dev_release(int release);
/* Whether the device was freed within timeout_ms (0: right now). */
bool stall_dev_freed(int freed, int timeout_ms);
void stall_dev_close_fds(int release, int freed);
