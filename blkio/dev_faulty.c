/* The faulty device: wraps another device of the table and misbehaves exactly as described by
 * struct dev_fault (blkio/dev.h), the way fake or failing sticks do: addresses wrapping around a
 * smaller real capacity, writes vanishing past it, I/O errors at an offset, a flipped bit on
 * read, a silently short write, a sync that hangs, a stick that disappears. Owns the inner
 * device. Used by tests of the stages and the worker; never by the product on a real target. */
#include "blkio/dev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/macro.h"

struct dev_faulty {
	struct dev base;
	struct dev *inner;
	struct dev_fault spec;
	uint64_t written; /* bytes accepted by pwrite so far (for gone_after) */
	bool gone;
};

static const struct dev_ops faulty_ops;

static bool covers(uint64_t at, uint64_t off, size_t len) { return at != 0 && at >= off && at - off < len; }

/* Read (write false) or write [off, off+len) through the capacity mapping: with wrap,
 * addresses beyond real_size alias; without, writes there are dropped ("limbo") and reads
 * return limbo_fill, or both fail with -EIO (short_eio). len is block-aligned. */
static int map_io(struct dev_faulty *f, bool write, uint8_t *buf, size_t len, uint64_t off)
{
	uint64_t real = f->spec.real_size;
	if (real == 0)
		return write ? dev_pwrite(f->inner, buf, len, off) : dev_pread(f->inner, buf, len, off);
	while (len > 0) {
		uint64_t ioff = f->spec.wrap ? off % real : off;
		if (!f->spec.wrap && off >= real) {
			if (f->spec.short_eio)
				return -EIO;
			if (!write)
				memset(buf, f->spec.limbo_fill, len);
			return 0; /* limbo: a write is silently dropped */
		}
		size_t seg = (size_t)MIN((uint64_t)len, real - ioff);
		int r = write ? dev_pwrite(f->inner, buf, seg, ioff) : dev_pread(f->inner, buf, seg, ioff);
		if (r < 0)
			return r;
		buf += seg;
		off += seg;
		len -= seg;
	}
	return 0;
}

static int map_write(struct dev_faulty *f, const uint8_t *buf, size_t len, uint64_t off)
{
	return map_io(f, true, (uint8_t *)buf, len, off); /* only read from when writing */
}

static int map_read(struct dev_faulty *f, uint8_t *buf, size_t len, uint64_t off)
{
	return map_io(f, false, buf, len, off);
}

/* Write exactly n bytes (n need not be block-aligned: the tail block is read, merged and
 * written back, so the bytes past off+n keep their old contents). */
static int write_exact(struct dev_faulty *f, const uint8_t *buf, size_t n, uint64_t off)
{
	unsigned bs = f->base.block_size;
	size_t a = ALIGN_DOWN(n, bs);
	int r;

	if (a > 0) {
		r = map_write(f, buf, a, off);
		if (r < 0)
			return r;
	}
	if (n == a)
		return 0;

	uint8_t *bounce = dev_alloc_buf(bs);
	if (!bounce)
		return -ENOMEM;
	r = map_read(f, bounce, bs, off + a);
	if (r >= 0) {
		memcpy(bounce, buf + a, n - a);
		r = map_write(f, bounce, bs, off + a);
	}
	free(bounce);
	return r;
}

static int faulty_pwrite(struct dev *base, const void *buf, size_t len, uint64_t off)
{
	struct dev_faulty *f = (struct dev_faulty *)base;
	const struct dev_fault *s = &f->spec;
	int r;

	if (f->gone)
		return -ENODEV;
	if (s->report_size && (off > base->size || len > base->size - off))
		return -ENOSPC;
	if (covers(s->fail_write_at, off, len))
		return s->fail_write_errno > 0 ? -s->fail_write_errno : -EIO;

	size_t n = len; /* bytes that actually reach the medium */
	if (covers(s->short_write_at, off, len))
		n = (size_t)(s->short_write_at - off);

	if (s->gone_after && len > s->gone_after - f->written) {
		/* The stick goes away in the middle of this write. */
		size_t allowed = (size_t)(s->gone_after - f->written);
		r = write_exact(f, buf, MIN(n, allowed), off);
		f->written = s->gone_after;
		f->gone = true;
		return r < 0 ? r : -ENODEV;
	}

	r = write_exact(f, buf, n, off);
	if (r < 0)
		return r;
	f->written += len;
	if (s->gone_after && f->written >= s->gone_after)
		f->gone = true;
	return 0;
}

static int faulty_pread(struct dev *base, void *buf, size_t len, uint64_t off)
{
	struct dev_faulty *f = (struct dev_faulty *)base;
	const struct dev_fault *s = &f->spec;

	if (f->gone)
		return -ENODEV;
	if (s->report_size && (off > base->size || len > base->size - off))
		return -EIO;
	if (covers(s->fail_read_at, off, len))
		return -EIO;
	int r = map_read(f, buf, len, off);
	if (r < 0)
		return r;
	if (covers(s->flip_read_at, off, len))
		((uint8_t *)buf)[s->flip_read_at - off] ^= 1;
	return 0;
}

static int faulty_sync(struct dev *base)
{
	struct dev_faulty *f = (struct dev_faulty *)base;

	if (f->gone)
		return -ENODEV;
	if (f->spec.stall_sync_ms) {
		/* One timed sleep, not a poll: the caller's watchdog is what is under test. */
		struct timespec ts = { .tv_sec = f->spec.stall_sync_ms / 1000,
				       .tv_nsec = (long)(f->spec.stall_sync_ms % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return dev_sync(f->inner);
}

static int faulty_reset(struct dev *base)
{
	struct dev_faulty *f = (struct dev_faulty *)base;
	return f->gone ? -ENODEV : dev_reset(f->inner);
}

static void faulty_free(struct dev *base)
{
	struct dev_faulty *f = (struct dev_faulty *)base;
	dev_free(f->inner);
	free(base->name);
	free(f);
}

static struct dev *faulty_inner(struct dev *d) { return ((struct dev_faulty *)d)->inner; }

static const struct dev_ops faulty_ops = {
	.pread = faulty_pread,
	.pwrite = faulty_pwrite,
	.sync = faulty_sync,
	.reset = faulty_reset,
	.free = faulty_free,
	.inner = faulty_inner,
};

int dev_new_faulty(struct dev *inner, const struct dev_fault *spec, struct dev **ret)
{
	if (!inner)
		return -EINVAL;
	if (!spec || !ret || (spec->real_size && spec->real_size % inner->block_size != 0)) {
		dev_free(inner);
		return -EINVAL;
	}

	struct dev_faulty *f = calloc(1, sizeof(*f));
	if (!f || asprintf(&f->base.name, "faulty:%s", inner->name) < 0) {
		free(f);
		dev_free(inner);
		return -ENOMEM;
	}
	f->base.ops = &faulty_ops;
	f->base.size = spec->report_size ? spec->report_size : inner->size;
	f->base.block_size = inner->block_size;
	f->base.is_block = inner->is_block;
	f->inner = inner;
	f->spec = *spec;
	*ret = &f->base;
	return 0;
}
