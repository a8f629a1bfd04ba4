/* Implementation of stalldev.h. */
#include "helpers/stalldev.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int sd_pread(struct dev *d, void *buf, size_t len, uint64_t off)
{
	memset(buf, 0, len);
	(void)d;
	(void)off;
	return 0;
}

static int sd_pwrite(struct dev *d, const void *buf, size_t len, uint64_t off)
{
	struct stall_dev *s = (struct stall_dev *)d;
	(void)buf;
	if (off + len > s->stall_at) {
		struct pollfd p = { .fd = s->release, .events = POLLIN };
		poll(&p, 1, 60000);
		return -EIO;
	}
	return 0;
}

static int sd_sync(struct dev *d)
{
	(void)d;
	return 0;
}

static int sd_reset(struct dev *d)
{
	(void)d;
	return 0;
}

static void sd_free(struct dev *d)
{
	struct stall_dev *s = (struct stall_dev *)d;
	uint64_t one = 1;
	cr_assert_eq(write(s->freed, &one, 8), 8);
	free(s->base.name);
	free(s);
}

static const struct dev_ops sd_ops = {
	.pread = sd_pread, .pwrite = sd_pwrite, .sync = sd_sync, .reset = sd_reset, .free = sd_free
};

struct stall_dev *stall_dev_new(uint64_t stall_at)
{
	struct stall_dev *s = calloc(1, sizeof(*s));
	cr_assert(s);
	s->base = (struct dev){ .ops = &sd_ops, .name = strdup("stall"), .size = 64 << 20, .block_size = 512 };
	s->release = eventfd(0, EFD_CLOEXEC);
	s->freed = eventfd(0, EFD_CLOEXEC);
	cr_assert(s->base.name && s->release >= 0 && s->freed >= 0);
	s->stall_at = stall_at;
	return s;
}

void stall_dev_release(int release)
{
	uint64_t one = 1;
	cr_assert_eq(write(release, &one, 8), 8);
}

bool stall_dev_freed(int freed, int timeout_ms)
{
	struct pollfd p = { .fd = freed, .events = POLLIN };
	return poll(&p, 1, timeout_ms) == 1;
}

void stall_dev_close_fds(int release, int freed)
{
	close(release);
	close(freed);
}
