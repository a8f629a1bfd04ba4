/* Tests of the device table (blkio/dev.c) on regular files and loop devices, and of every fault
 * of the faulty device (blkio/dev_faulty.c) through plain writes and reads at exact offsets,
 * including the write + read-back comparison that names the first bad offset. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers/testutil.h"
#include "test_usb_loop.h"
#include "blkio/dev.h"
#include "util/macro.h"

#define K 1024u

static char *tmp;
/* the faulty suite's device under test and the path of its inner file (faulty_fixture) */
static struct dev *fx_dev;
static char *fx_path;

static void setup(void) { tmp = tu_tmpdir("dev"); }
static void teardown(void)
{
	fx_dev = dev_free(fx_dev);
	fx_path = mfree(fx_path);
	tu_rmrf(tmp);
	free(tmp);
}

TestSuite(dev, .init = setup, .fini = teardown);
TestSuite(faulty, .init = setup, .fini = teardown);
TestSuite(devblk, .init = setup, .fini = teardown);

static char *make_file(const char *name, size_t size, uint8_t fill)
{
	char *p = tu_path(tmp, name);
	uint8_t *b = malloc(size ? size : 1);
	memset(b, fill, size);
	tu_write_file(p, b, size);
	free(b);
	return p;
}

/* make_file(name, size, fill) opened through the device table with flags; the path in
 * *ret_path (malloc'd). */
static struct dev *open_file(const char *name, size_t size, uint8_t fill, unsigned flags, char **ret_path)
{
	char *p = make_file(name, size, fill);
	struct dev *d = NULL;
	int r = dev_open(p, flags, &d);
	cr_assert_eq(r, 0, "dev_open %s: %d", p, r);
	*ret_path = p;
	return d;
}

static void read_file(const char *path, void *buf, size_t len, off_t off)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static uint8_t *pattern(size_t len, uint64_t seed)
{
	uint8_t *b = dev_alloc_buf(len);
	cr_assert(b);
	tu_fill_pattern(b, len, seed);
	return b;
}

/* ---- dev_open on regular files ------------------------------------------------------------ */

Test(dev, open_errors)
{
	struct dev *d = NULL;
	char *missing = tu_path(tmp, "missing");
	cr_assert_eq(dev_open(missing, 0, &d), -ENOENT);
	cr_assert_eq(dev_open(tmp, 0, &d), -ENOTBLK);
	cr_assert_eq(dev_open("/dev/null", 0, &d), -ENOTBLK);
	cr_assert_null(d);
	free(missing);
}

/* A regular file has no O_EXCL: its writer holds an exclusive flock, so that a second writer
 * (another daemon with the same slot, `usbforge write` on a slot being written) is refused
 * with -EAGAIN instead of interleaving its blocks; a reader takes a shared lock. */
Test(dev, a_written_file_is_locked_against_a_second_open)
{
	char *p = make_file("locked", 64 * K, 0);
	struct dev *w = NULL, *w2 = NULL, *r1 = NULL, *r2 = NULL;
	cr_assert_eq(dev_open(p, DEV_OPEN_WRITE, &w), 0);
	cr_assert_eq(dev_open(p, DEV_OPEN_WRITE, &w2), -EAGAIN);
	cr_assert_eq(dev_open(p, 0, &r1), -EAGAIN);
	cr_assert_null(w2);
	cr_assert_null(r1);
	w = dev_free(w);
	/* two readers share; a writer waits for both to go */
	cr_assert_eq(dev_open(p, 0, &r1), 0);
	cr_assert_eq(dev_open(p, 0, &r2), 0);
	cr_assert_eq(dev_open(p, DEV_OPEN_WRITE, &w), -EAGAIN);
	r1 = dev_free(r1);
	r2 = dev_free(r2);
	cr_assert_eq(dev_open(p, DEV_OPEN_WRITE, &w), 0);
	dev_free(w);
	free(p);
}

/* A file unlinked while it is written: the next sync says the device is gone, and
 * dev_unlinked() says why. */
Test(dev, sync_of_an_unlinked_file_is_gone)
{
	char *p;
	struct dev *d = open_file("unlinked", 64 * K, 0, DEV_OPEN_WRITE, &p);
	struct stat st;
	uint8_t *w = pattern(16 * K, 9);
	cr_assert_eq(dev_pwrite(d, w, 16 * K, 0), 0);
	cr_assert_eq(dev_sync(d), 0);
	cr_assert_not(dev_unlinked(d));
	cr_assert_eq(dev_stat(d, &st), 0);
	cr_assert_eq(st.st_nlink, 1);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(dev_pwrite(d, w, 16 * K, 16 * K), 0);
	cr_assert_eq(dev_sync(d), -ENODEV);
	cr_assert(dev_unlinked(d));
	cr_assert(dev_errno_is_gone(dev_sync(d)));
	dev_free(d);
	free(w);
	free(p);
}

Test(dev, file_geometry_and_roundtrip)
{
	char *p;
	struct dev *d = open_file("f", 64 * K, 0, DEV_OPEN_WRITE, &p);
	cr_assert_eq(dev_size(d), 64 * K);
	cr_assert_eq(dev_block_size(d), 4096);
	cr_assert_not(d->is_block);
	cr_assert_str_eq(dev_name(d), p);

	uint8_t *w = pattern(8 * K, 1), *r = dev_alloc_buf(8 * K);
	cr_assert_eq(((uintptr_t)r) % 4096, 0);
	cr_assert_eq(dev_pwrite(d, w, 8 * K, 12 * K), 0);
	cr_assert_eq(dev_sync(d), 0);
	cr_assert_eq(dev_pread(d, r, 8 * K, 12 * K), 0);
	cr_assert_eq(memcmp(w, r, 8 * K), 0);

	uint8_t f[8 * K];
	read_file(p, f, sizeof(f), 12 * K);
	cr_assert_eq(memcmp(w, f, 8 * K), 0);

	/* Writing at the end grows the file; the device keeps its opened size. */
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 64 * K), 0);
	cr_assert_eq(dev_size(d), 64 * K);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_size, 68 * K);

	free(w);
	free(r);
	dev_free(d);
	free(p);
}

Test(dev, read_past_end_of_file_is_zeros)
{
	char *p;
	struct dev *d = open_file("f", 8 * K, 0xaa, 0, &p);
	uint8_t *r = dev_alloc_buf(16 * K);
	memset(r, 0x55, 16 * K);
	cr_assert_eq(dev_pread(d, r, 16 * K, 0), 0);
	for (size_t i = 0; i < 16 * K; i++)
		cr_assert_eq(r[i], i < 8 * K ? 0xaa : 0x00, "byte %zu", i);
	memset(r, 0x55, 4 * K);
	cr_assert_eq(dev_pread(d, r, 4 * K, 1024 * K), 0);
	cr_assert_eq(r[0], 0);
	cr_assert_eq(r[4 * K - 1], 0);
	free(r);
	dev_free(d);
	free(p);
}

Test(dev, write_on_read_only_open_is_ebadf)
{
	char *p;
	struct dev *d = open_file("f", 8 * K, 0, 0, &p);
	uint8_t *w = pattern(4 * K, 2);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 0), -EBADF);
	free(w);
	dev_free(d);
	free(p);
}

Test(dev, misaligned_direct_io_is_einval)
{
	char *p;
	struct dev *d = open_file("f", 8 * K, 0, DEV_OPEN_WRITE, &p);
	uint8_t *w = pattern(8 * K, 2);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 100), -EINVAL);
	cr_assert_eq(dev_pread(d, w, 4 * K, 100), -EINVAL);
	free(w);
	dev_free(d);
	free(p);
}

Test(dev, helpers)
{
	cr_assert(dev_errno_is_gone(-ENODEV));
	cr_assert(dev_errno_is_gone(-ENXIO));
	cr_assert(dev_errno_is_gone(-ENOMEDIUM));
	cr_assert(dev_errno_is_gone(-ESHUTDOWN));
	cr_assert(dev_errno_is_gone(ENODEV));
	cr_assert_not(dev_errno_is_gone(-EIO));
	cr_assert_not(dev_errno_is_gone(0));
	cr_assert_null(dev_free(NULL));
	void *b = dev_alloc_buf(1);
	cr_assert_eq(((uintptr_t)b) % 4096, 0);
	free(b);
}

/* ---- reset and its hook -------------------------------------------------------------------- */

struct hook_rec {
	int calls;
	char *seen_path;
	const char *new_path; /* returned (dup'd) when set */
	int result;
};

static int hook(void *userdata, const char *path, char **ret_new_path)
{
	struct hook_rec *h = userdata;
	h->calls++;
	free(h->seen_path);
	h->seen_path = strdup(path);
	if (h->result < 0)
		return h->result;
	*ret_new_path = h->new_path ? strdup(h->new_path) : NULL;
	return 0;
}

Test(dev, reset_without_hook_keeps_data)
{
	char *p;
	struct dev *d = open_file("f", 16 * K, 0, DEV_OPEN_WRITE, &p);
	uint8_t *w = pattern(4 * K, 3), *r = dev_alloc_buf(4 * K);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 4 * K), 0);
	cr_assert_eq(dev_reset(d), 0);
	cr_assert_eq(dev_pread(d, r, 4 * K, 4 * K), 0);
	cr_assert_eq(memcmp(w, r, 4 * K), 0);
	free(w);
	free(r);
	dev_free(d);
	free(p);
}

Test(dev, reset_hook_reopens_new_path)
{
	char *a, *b = make_file("b", 16 * K, 0x22);
	struct dev *d = open_file("a", 16 * K, 0x11, DEV_OPEN_WRITE, &a);
	struct hook_rec h = { .new_path = b };
	dev_set_reset_hook(d, hook, &h);
	cr_assert_eq(dev_reset(d), 0);
	cr_assert_eq(h.calls, 1);
	cr_assert_str_eq(h.seen_path, a);
	uint8_t *r = dev_alloc_buf(4 * K);
	cr_assert_eq(dev_pread(d, r, 4 * K, 0), 0);
	cr_assert_eq(r[0], 0x22); /* now reading b */

	/* Same path again (NULL from the hook): reopens b. */
	h.new_path = NULL;
	cr_assert_eq(dev_reset(d), 0);
	cr_assert_eq(h.calls, 2);
	cr_assert_str_eq(h.seen_path, b);
	cr_assert_eq(dev_pread(d, r, 4 * K, 0), 0);
	cr_assert_eq(r[0], 0x22);
	free(r);
	free(h.seen_path);
	dev_free(d);
	free(a);
	free(b);
}

Test(dev, reset_hook_failure_and_different_medium)
{
	char *a, *c = make_file("c", 32 * K, 0x33);
	struct dev *d = open_file("a", 16 * K, 0x11, DEV_OPEN_WRITE, &a);
	struct hook_rec h = { .result = -ETIMEDOUT };
	dev_set_reset_hook(d, hook, &h);
	cr_assert_eq(dev_reset(d), -ETIMEDOUT);
	cr_assert_eq(h.calls, 1);
	/* The device is closed now: every op says it is gone. */
	uint8_t *r = dev_alloc_buf(4 * K);
	cr_assert_eq(dev_pread(d, r, 4 * K, 0), -ENODEV);
	dev_free(d);
	free(h.seen_path);

	cr_assert_eq(dev_open(a, DEV_OPEN_WRITE, &d), 0);
	h = (struct hook_rec){ .new_path = c };
	dev_set_reset_hook(d, hook, &h);
	cr_assert_eq(dev_reset(d), -ENODEV); /* 32 KiB is not the 16 KiB medium we had */
	cr_assert_eq(dev_pread(d, r, 4 * K, 0), -ENODEV);
	free(h.seen_path);
	free(r);
	dev_free(d);
	free(a);
	free(c);
}

/* ---- block devices (loop) ------------------------------------------------------------------ */

Test(devblk, loop_device)
{
	if (!tul_can_loop())
		cr_skip_test("needs root and /dev/loop-control");
	char *p = make_file("img", 1024 * K, 0);
	struct tul_loop l;
	tul_attach(p, false, &l);

	struct dev *d = NULL, *d2 = NULL;
	cr_assert_eq(dev_open(l.path, DEV_OPEN_WRITE, &d), 0);
	cr_assert(d->is_block);
	cr_assert_eq(dev_size(d), 1024 * K);
	cr_assert_eq(dev_block_size(d), 512);

	/* O_EXCL: a second writer is refused; a reader is not. */
	cr_assert_eq(dev_open(l.path, DEV_OPEN_WRITE, &d2), -EBUSY);
	cr_assert_eq(dev_open(l.path, 0, &d2), 0);

	uint8_t *w = pattern(64 * K, 4), *r = dev_alloc_buf(64 * K);
	cr_assert_eq(dev_pwrite(d, w, 64 * K, 960 * K), 0);
	cr_assert_eq(dev_sync(d), 0);
	cr_assert_eq(dev_reset(d), 0);
	cr_assert_eq(dev_pread(d2, r, 64 * K, 960 * K), 0);
	cr_assert_eq(memcmp(w, r, 64 * K), 0);
	/* Past the end of a block device. */
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 1024 * K), -ENOSPC);
	cr_assert_eq(dev_pread(d, r, 4 * K, 1024 * K), -EIO);

	dev_free(d2);
	dev_free(d);
	uint8_t *f = malloc(64 * K);
	read_file(p, f, 64 * K, 960 * K);
	cr_assert_eq(memcmp(w, f, 64 * K), 0);
	free(f);
	free(w);
	free(r);
	tul_detach(&l);
	free(p);
}

Test(devblk, read_only_loop_is_erofs)
{
	if (!tul_can_loop())
		cr_skip_test("needs root and /dev/loop-control");
	char *p = make_file("img", 256 * K, 0);
	struct tul_loop l;
	tul_attach(p, true, &l);
	struct dev *d = NULL;
	cr_assert_eq(dev_open(l.path, DEV_OPEN_WRITE, &d), -EROFS);
	cr_assert_null(d);
	cr_assert_eq(dev_open(l.path, 0, &d), 0);
	cr_assert_eq(dev_size(d), 256 * K);
	dev_free(d);
	tul_detach(&l);
	free(p);
}

/* ---- the faulty device --------------------------------------------------------------------- */

/* Faulty device over a fresh zero-filled file of inner_size bytes. */
static struct dev *faulty(const char *name, size_t inner_size, const struct dev_fault *spec, char **ret_path)
{
	struct dev *d = NULL;
	cr_assert_eq(dev_new_faulty(open_file(name, inner_size, 0, DEV_OPEN_WRITE, ret_path), spec, &d), 0);
	return d;
}

/* The faulty suite's fixture: faulty() over file "f", freed by teardown; its path in fx_path. */
static struct dev *faulty_fixture(size_t inner_size, const struct dev_fault *spec)
{
	cr_assert_null(fx_dev, "one fixture device per test");
	fx_dev = faulty("f", inner_size, spec, &fx_path);
	return fx_dev;
}

/* What a verifier does: write data at 0 in chunks, read it all back, and return the first
 * offset that differs (or -errno of the first failing op; UINT64_MAX when all matches). */
static int64_t write_verify(struct dev *d, const uint8_t *data, size_t len, size_t chunk, uint64_t *ret_bad)
{
	for (size_t off = 0; off < len; off += chunk) {
		int r = dev_pwrite(d, data + off, MIN(chunk, len - off), off);
		if (r < 0) {
			*ret_bad = off;
			return r;
		}
	}
	int r = dev_sync(d);
	if (r < 0)
		return r;
	r = dev_reset(d);
	if (r < 0)
		return r;
	uint8_t *buf = dev_alloc_buf(chunk);
	*ret_bad = UINT64_MAX;
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = MIN(chunk, len - off);
		r = dev_pread(d, buf, n, off);
		if (r < 0) {
			*ret_bad = off;
			free(buf);
			return r;
		}
		for (size_t i = 0; i < n; i++)
			if (buf[i] != data[off + i]) {
				*ret_bad = off + i;
				free(buf);
				return 0;
			}
	}
	free(buf);
	return 0;
}

/* Every fault through what a verifier does (write_verify): the first bad byte, or the failing
 * operation's error at the offset of its chunk, on a fresh faulty device of inner bytes. */
Test(faulty, write_verify_names_the_first_bad_byte)
{
	static const struct {
		const char *name;
		struct dev_fault spec;
		size_t inner, chunk;
		uint64_t seed;
		int want_r;
		uint64_t want_bad; /* UINT64_MAX: all read back right */
	} cases[] = {
		{ "no faults", { 0 }, 64 * K, 16 * K, 5, 0, UINT64_MAX },
		/* the first byte is overwritten by the alias at 48K, whose pattern differs */
		{ "wrap-around", { .real_size = 16 * K, .wrap = true, .report_size = 64 * K }, 16 * K, 16 * K, 9, 0, 0 },
		/* limbo reads 0xff past 16K: the first byte that differs from it (all[16K] is not 0xff
		 * for this seed; asserted below) */
		{ "limbo",
		  { .real_size = 16 * K, .limbo_fill = 0xff, .report_size = 64 * K },
		  16 * K,
		  8 * K,
		  11,
		  0,
		  16 * K },
		{ "fail_write_at", { .fail_write_at = 20000 }, 64 * K, 4 * K, 13, -EIO, 16384 },
		{ "fail_read_at", { .fail_read_at = 40960 }, 64 * K, 8 * K, 15, -EIO, 40960 },
		{ "flip_read_at", { .flip_read_at = 5000 }, 64 * K, 16 * K, 17, 0, 5000 },
		/* the lost byte is set to differ from the zeros left on the medium */
		{ "short_write_at", { .short_write_at = 6000 }, 64 * K, 16 * K, 19, 0, 6000 },
		/* the write at offset 8192 is the one that fails */
		{ "gone_after", { .gone_after = 10000 }, 64 * K, 4 * K, 21, -ENODEV, 8192 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *p;
		struct dev *d = faulty(cases[i].name, cases[i].inner, &cases[i].spec, &p);
		uint8_t *all = pattern(64 * K, cases[i].seed);
		if (cases[i].spec.short_write_at)
			all[cases[i].spec.short_write_at] = 0x5a;
		if (cases[i].spec.limbo_fill)
			cr_assert_neq(all[16 * K], cases[i].spec.limbo_fill, "the case's seed");
		uint64_t bad = 0;
		cr_assert_eq(write_verify(d, all, 64 * K, cases[i].chunk, &bad), cases[i].want_r, "%s", cases[i].name);
		cr_assert_eq(bad, cases[i].want_bad, "%s: first bad byte %llu", cases[i].name, (unsigned long long)bad);
		free(all);
		dev_free(d);
		free(p);
	}
}

Test(faulty, no_faults_is_transparent)
{
	struct dev_fault s = { 0 };
	struct dev *d = faulty_fixture(64 * K, &s);
	const char *p = fx_path;
	cr_assert_eq(dev_size(d), 64 * K);
	cr_assert_eq(dev_block_size(d), 4096);
	char *name = NULL;
	cr_assert(asprintf(&name, "faulty:%s", p) > 0);
	cr_assert_str_eq(dev_name(d), name);
	free(name);
}

Test(faulty, bad_spec)
{
	char *p = make_file("f", 16 * K, 0);
	struct dev *in = NULL, *d = NULL;
	cr_assert_eq(dev_open(p, DEV_OPEN_WRITE, &in), 0);
	struct dev_fault s = { .real_size = 5000 };
	cr_assert_eq(dev_new_faulty(in, &s, &d), -EINVAL); /* inner freed */
	cr_assert_null(d);
	cr_assert_eq(dev_new_faulty(NULL, &s, &d), -EINVAL);
	free(p);
}

Test(faulty, wrap_around)
{
	/* A "64 KiB" stick holding 16 KiB: addresses alias modulo 16 KiB. */
	struct dev_fault s = { .real_size = 16 * K, .wrap = true, .report_size = 64 * K };
	struct dev *d = faulty_fixture(16 * K, &s);
	const char *p = fx_path;
	cr_assert_eq(dev_size(d), 64 * K);

	uint8_t *a = pattern(4 * K, 6), *b = pattern(4 * K, 7), *r = dev_alloc_buf(8 * K);
	cr_assert_eq(dev_pwrite(d, a, 4 * K, 0), 0);
	cr_assert_eq(dev_pwrite(d, b, 4 * K, 16 * K), 0); /* lands on 0 */
	cr_assert_eq(dev_pread(d, r, 4 * K, 0), 0);
	cr_assert_eq(memcmp(r, b, 4 * K), 0);
	cr_assert_eq(dev_pread(d, r, 4 * K, 48 * K), 0);
	cr_assert_eq(memcmp(r, b, 4 * K), 0);

	/* One write across the wrap point: 12K..20K → inner 12K..16K and 0..4K. */
	uint8_t *c = pattern(8 * K, 8);
	cr_assert_eq(dev_pwrite(d, c, 8 * K, 12 * K), 0);
	uint8_t f[4 * K];
	read_file(p, f, 4 * K, 12 * K);
	cr_assert_eq(memcmp(f, c, 4 * K), 0);
	read_file(p, f, 4 * K, 0);
	cr_assert_eq(memcmp(f, c + 4 * K, 4 * K), 0);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_size, 16 * K); /* nothing past the real capacity */
	/* A read across it. */
	cr_assert_eq(dev_pread(d, r, 8 * K, 28 * K), 0);
	cr_assert_eq(memcmp(r, c, 8 * K), 0);
	/* Past the claimed size. */
	cr_assert_eq(dev_pwrite(d, a, 4 * K, 64 * K), -ENOSPC);
	cr_assert_eq(dev_pread(d, r, 4 * K, 64 * K), -EIO);
	free(a);
	free(b);
	free(c);
	free(r);
}

Test(faulty, limbo)
{
	struct dev_fault s = { .real_size = 16 * K, .limbo_fill = 0xff, .report_size = 64 * K };
	struct dev *d = faulty_fixture(16 * K, &s);
	const char *p = fx_path;
	uint8_t *c = pattern(8 * K, 10), *r = dev_alloc_buf(8 * K);
	cr_assert_eq(dev_pwrite(d, c, 8 * K, 12 * K), 0);
	cr_assert_eq(dev_pread(d, r, 8 * K, 12 * K), 0);
	cr_assert_eq(memcmp(r, c, 4 * K), 0);
	for (size_t i = 4 * K; i < 8 * K; i++)
		cr_assert_eq(r[i], 0xff, "byte %zu", i);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_size, 16 * K);
	free(c);
	free(r);
}

Test(faulty, fail_write_at)
{
	struct dev_fault s = { .fail_write_at = 20000 };
	struct dev *d = faulty_fixture(64 * K, &s);
	const char *p = fx_path;
	uint8_t *w = pattern(16 * K, 12);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 16384), -EIO); /* covers 16384..20479 */
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 12288), 0);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 20480), 0);
	cr_assert_eq(dev_pwrite(d, w, 16 * K, 16384), -EIO);
	uint8_t f[4 * K];
	read_file(p, f, 4 * K, 16384); /* the failed op wrote nothing */
	for (size_t i = 0; i < sizeof(f); i++)
		cr_assert_eq(f[i], 0);
	free(w);
}

Test(faulty, fail_write_at_first_block)
{
	struct dev_fault s = { .fail_write_at = 1 };
	struct dev *d = faulty_fixture(16 * K, &s);
	uint8_t *w = pattern(4 * K, 14);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 0), -EIO);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 4096), 0);
	free(w);
}

Test(faulty, fail_read_at)
{
	struct dev_fault s = { .fail_read_at = 40960 };
	struct dev *d = faulty_fixture(64 * K, &s);
	uint8_t *r = dev_alloc_buf(8 * K);
	cr_assert_eq(dev_pread(d, r, 4 * K, 36864), 0);
	cr_assert_eq(dev_pread(d, r, 4 * K, 40960), -EIO);
	cr_assert_eq(dev_pread(d, r, 8 * K, 36864), -EIO);
	cr_assert_eq(dev_pread(d, r, 4 * K, 45056), 0);
	free(r);
}

Test(faulty, flip_read_at)
{
	struct dev_fault s = { .flip_read_at = 5000 };
	struct dev *d = faulty_fixture(64 * K, &s);
	const char *p = fx_path;
	uint8_t *w = pattern(8 * K, 16), *r = dev_alloc_buf(8 * K);
	cr_assert_eq(dev_pwrite(d, w, 8 * K, 0), 0);
	cr_assert_eq(dev_pread(d, r, 4 * K, 4096), 0);
	cr_assert_eq(r[5000 - 4096], w[5000] ^ 1);
	cr_assert_eq(memcmp(r, w + 4096, 5000 - 4096), 0);
	cr_assert_eq(memcmp(r + 905, w + 5001, 4 * K - 905), 0);
	cr_assert_eq(dev_pread(d, r, 4 * K, 0), 0);
	cr_assert_eq(memcmp(r, w, 4 * K), 0);
	uint8_t f[8 * K];
	read_file(p, f, 8 * K, 0); /* the medium holds the right data */
	cr_assert_eq(memcmp(f, w, 8 * K), 0);
	free(w);
	free(r);
}

Test(faulty, short_write_at)
{
	struct dev_fault s = { .short_write_at = 6000 };
	struct dev *d = faulty_fixture(64 * K, &s);
	const char *p = fx_path;
	uint8_t *w = pattern(8 * K, 18);
	cr_assert_eq(dev_pwrite(d, w, 8 * K, 4096), 0); /* success, silently short */
	uint8_t f[8 * K];
	read_file(p, f, 8 * K, 4096);
	cr_assert_eq(memcmp(f, w, 6000 - 4096), 0);
	for (size_t i = 6000 - 4096; i < 8 * K; i++)
		cr_assert_eq(f[i], 0, "byte %zu", i);
	free(w);
}

Test(faulty, gone_after)
{
	struct dev_fault s = { .gone_after = 10000 };
	struct dev *d = faulty_fixture(64 * K, &s);
	const char *p = fx_path;
	uint8_t *w = pattern(4 * K, 20), *r = dev_alloc_buf(4 * K);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 0), 0);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 4096), 0);
	cr_assert_eq(dev_pread(d, r, 4 * K, 0), 0);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 8192), -ENODEV); /* 8192 + 4096 > 10000 */
	uint8_t f[4 * K];
	read_file(p, f, 4 * K, 8192);
	cr_assert_eq(memcmp(f, w, 10000 - 8192), 0); /* written up to the pull */
	for (size_t i = 10000 - 8192; i < 4 * K; i++)
		cr_assert_eq(f[i], 0, "byte %zu", i);
	cr_assert_eq(dev_pread(d, r, 4 * K, 0), -ENODEV);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 0), -ENODEV);
	cr_assert_eq(dev_sync(d), -ENODEV);
	cr_assert_eq(dev_reset(d), -ENODEV);
	cr_assert(dev_errno_is_gone(dev_sync(d)));
	free(w);
	free(r);
}

Test(faulty, gone_exactly_at_boundary)
{
	struct dev_fault s = { .gone_after = 8192 };
	struct dev *d = faulty_fixture(64 * K, &s);
	uint8_t *w = pattern(8 * K, 22);
	cr_assert_eq(dev_pwrite(d, w, 8 * K, 0), 0); /* reaches exactly 8192 */
	cr_assert_eq(dev_sync(d), -ENODEV);
	free(w);
}

Test(faulty, report_size_only)
{
	/* A 16 KiB file that claims 64 KiB: writes past 16K extend the file (no real_size). */
	struct dev_fault s = { .report_size = 64 * K };
	struct dev *d = faulty_fixture(16 * K, &s);
	cr_assert_eq(dev_size(d), 64 * K);
	uint8_t *w = pattern(4 * K, 23);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 60 * K), 0);
	cr_assert_eq(dev_pwrite(d, w, 4 * K, 61 * K), -ENOSPC);
	free(w);
}

Test(faulty, reset_hook_reaches_inner)
{
	char *a = make_file("a", 16 * K, 0x11);
	char *b = make_file("b", 16 * K, 0x22);
	struct dev *in = NULL, *d = NULL;
	cr_assert_eq(dev_open(a, DEV_OPEN_WRITE, &in), 0);
	struct dev_fault s = { .flip_read_at = 1 };
	cr_assert_eq(dev_new_faulty(in, &s, &d), 0);
	struct hook_rec h = { .new_path = b };
	dev_set_reset_hook(d, hook, &h);
	cr_assert_eq(dev_reset(d), 0);
	cr_assert_eq(h.calls, 1);
	uint8_t *r = dev_alloc_buf(4 * K);
	cr_assert_eq(dev_pread(d, r, 4 * K, 0), 0);
	cr_assert_eq(r[0], 0x22);
	cr_assert_eq(r[1], 0x23);
	free(r);
	free(h.seen_path);
	dev_free(d);
	free(a);
	free(b);
}
