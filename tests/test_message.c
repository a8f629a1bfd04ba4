/* util/message.c: the printf-to-string helpers every module reports errors with. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "util/message.h"

Test(message, str_printf)
{
	char *s = str_printf("%s: %d", "x", 42);
	cr_assert_str_eq(s, "x: 42");
	free(s);
}

Test(message, str_set_replaces)
{
	char *slot = NULL;
	str_set(&slot, "first %d", 1);
	cr_assert_str_eq(slot, "first 1");
	str_set(&slot, "second %s", "time");
	cr_assert_str_eq(slot, "second time"); /* the first was freed: ASan's leak check says so */
	free(slot);
}

Test(message, error_set)
{
	char *err = NULL;
	cr_assert_eq(error_set(&err, -ENOENT, "%s: missing", "a.img"), -ENOENT);
	cr_assert_str_eq(err, "a.img: missing");
	free(err);
	cr_assert_eq(error_set(NULL, -EIO, "%s", "nobody asked"), -EIO, "no ret_error: only the code");
	cr_assert_eq(error_set(&err, 0, "%s", "a note"), 0);
	cr_assert_str_eq(err, "a note");
	free(err);
}
