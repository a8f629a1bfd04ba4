/* blkio/dev.c's error vocabulary: dev_gone() (is the device still the one that was opened?)
 * and the errno → job code mappings of I/O and of opening, the one place each is decided. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "blkio/dev.h"
#include "helpers/testutil.h"

static char *dir;

static void setup(void) { dir = tu_tmpdir("devcode"); }
static void teardown(void)
{
	tu_rmrf(dir);
	free(dir);
}
TestSuite(devcode, .init = setup, .fini = teardown);

static struct dev *open_file(const char *name, char **ret_path)
{
	char *p = tu_path(dir, name);
	char buf[64 * 1024] = { 0 };
	tu_write_file(p, buf, sizeof(buf));
	struct dev *d = NULL;
	cr_assert_eq(dev_open(p, DEV_OPEN_WRITE, &d), 0, "%s", p);
	*ret_path = p;
	return d;
}

Test(devcode, a_file_that_is_still_there_is_not_gone)
{
	char *p;
	struct dev *d = open_file("here", &p);
	cr_assert_not(dev_gone(d, 0));
	cr_assert_not(dev_gone(d, -EIO));
	cr_assert_eq(dev_error_code(d, -EIO), UFC_WRITE_IO, "an I/O error on a present device is the stick's");
	dev_free(d);
	free(p);
}

Test(devcode, an_unlinked_file_is_gone)
{
	char *p;
	struct dev *d = open_file("unlinked", &p);
	cr_assert_eq(unlink(p), 0);
	cr_assert(dev_gone(d, 0));
	cr_assert(dev_unlinked(d));
	cr_assert_eq(dev_error_code(d, -EIO), UFC_DEVICE_GONE);
	dev_free(d);
	free(p);
}

Test(devcode, a_file_replaced_under_its_name_is_gone)
{
	char *p;
	struct dev *d = open_file("replaced", &p);
	char *q = tu_path(dir, "other");
	tu_write_file(q, "x", 1);
	cr_assert_eq(rename(q, p), 0);
	cr_assert(dev_gone(d, 0), "the path names another file now");
	cr_assert(dev_unlinked(d), "renamed over: the opened file lost its last name");
	cr_assert_eq(dev_error_code(d, -EIO), UFC_DEVICE_GONE);
	dev_free(d);
	free(q);
	free(p);
}

Test(devcode, io_errno_to_code)
{
	static const struct {
		int r;
		enum uf_code code;
	} table[] = {
		{ 0, UFC_NONE },
		{ -ECANCELED, UFC_CANCELLED },
		{ -ENODEV, UFC_DEVICE_GONE },
		{ -ENXIO, UFC_DEVICE_GONE },
		{ -ENOMEDIUM, UFC_DEVICE_GONE },
		{ -ESHUTDOWN, UFC_DEVICE_GONE },
		{ -ENOENT, UFC_DEVICE_GONE },
		{ -EROFS, UFC_DEVICE_READ_ONLY },
		{ -EPERM, UFC_DEVICE_READ_ONLY },
		{ -EACCES, UFC_DEVICE_READ_ONLY },
		{ -EIO, UFC_WRITE_IO },
		{ -ENOSPC, UFC_WRITE_IO },
		{ -ETIMEDOUT, UFC_WRITE_IO },
		{ -EFBIG, UFC_WRITE_IO },
		{ -ENOMEM, UFC_PROCESSING_FAILED },
		{ -EINVAL, UFC_PROCESSING_FAILED },
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		cr_assert_eq(dev_error_code(NULL, table[i].r), table[i].code, "errno %d: %s, want %s", -table[i].r,
			     uf_code_name(dev_error_code(NULL, table[i].r)), uf_code_name(table[i].code));
}

Test(devcode, open_errno_to_code)
{
	static const struct {
		int r;
		unsigned flags;
		enum uf_code code;
	} table[] = {
		{ 0, DEV_OPEN_WRITE, UFC_NONE },
		{ -EAGAIN, DEV_OPEN_WRITE, UFC_DEVICE_UNSAFE },
		{ -EBUSY, DEV_OPEN_WRITE, UFC_DEVICE_UNSAFE },
		{ -ENOTBLK, 0, UFC_DEVICE_UNSAFE },
		{ -EROFS, DEV_OPEN_WRITE, UFC_DEVICE_READ_ONLY },
		{ -EROFS, 0, UFC_DEVICE_READ_ONLY },
		{ -EPERM, DEV_OPEN_WRITE, UFC_DEVICE_READ_ONLY },
		{ -EACCES, DEV_OPEN_WRITE, UFC_DEVICE_READ_ONLY },
		{ -EACCES, 0, UFC_WRITE_IO }, /* reading only: not a read-only stick, an unreadable node */
		{ -ENOENT, DEV_OPEN_WRITE, UFC_DEVICE_GONE },
		{ -ENXIO, DEV_OPEN_WRITE, UFC_DEVICE_GONE },
		{ -EIO, DEV_OPEN_WRITE, UFC_WRITE_IO },
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		cr_assert_eq(dev_open_error_code(table[i].r, table[i].flags), table[i].code, "errno %d flags %u: %s",
			     -table[i].r, table[i].flags,
			     uf_code_name(dev_open_error_code(table[i].r, table[i].flags)));
}
