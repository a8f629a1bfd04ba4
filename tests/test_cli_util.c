/* Tests of the CLI's output helpers (cli/util.c): the aligned table, exact, and under a failing
 * allocator (every allocation of a table's life failed once: -ENOMEM, never abort(), nothing
 * leaked, or the exact table), and how a command's -ENOMEM becomes exit status 1 with one
 * message. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "helpers/failalloc.h"

static const char *const hdr[] = { "ID", "NAME", "SIZE" };
static const char expect[] = "ID   NAME   SIZE\n"
			     "1    alpha  -\n"
			     "22   b      1.0 KiB\n"
			     "333  -      2 B\n";

/* The table above into a string; 0 (*ret set) or the first error. */
static int make_table(char **ret)
{
	char *out = NULL;
	size_t len = 0;
	struct table *t = NULL;
	int r = table_new(3, hdr, &t);
	if (r == 0)
		r = table_addf(t, "1", "alpha", NULL);
	if (r == 0)
		r = table_add(t, (const char *const[]){ "22", "b", "1.0 KiB" });
	if (r == 0)
		r = table_addf(t, "333", NULL, "2 B");
	FILE *f = open_memstream(&out, &len);
	cr_assert(f);
	if (r == 0)
		r = table_print(t, f);
	fclose(f);
	table_free(t);
	if (r == 0)
		*ret = out;
	else
		free(out);
	return r;
}

Test(cli_util, table_exact)
{
	char *out = NULL;
	cr_assert_eq(make_table(&out), 0);
	cr_assert_str_eq(out, expect);
	free(out);
}

Test(cli_util, table_out_of_memory_is_enomem)
{
	unsigned failed = 0, runs = 0;
	FAILALLOC_LOOP(k)
	{
		char *out = NULL;
		int r = make_table(&out);
		runs++;
		if (r == 0) {
			cr_assert_str_eq(out, expect);
			free(out);
		} else {
			cr_assert_eq(r, -ENOMEM, "allocation %u: %d", k, r);
			failed++;
		}
	}
	cr_assert_eq(failed + 1, runs, "every allocation but none past the last fails the table");
	cr_assert_geq(failed, 10, "%u allocations", failed);
}

Test(cli_util, exit_status_of_enomem, .init = cr_redirect_stderr)
{
	cr_assert_eq(cli_exit_status(CLI_EXIT_OK), CLI_EXIT_OK);
	cr_assert_eq(cli_exit_status(CLI_EXIT_NOTFOUND), CLI_EXIT_NOTFOUND);
	cr_assert_eq(cli_exit_status(-ENOMEM), CLI_EXIT_FAIL);
	fflush(stderr);
	cr_assert_stderr_eq_str("usbforge: out of memory\n");
}
