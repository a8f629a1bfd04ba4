/* util/ufcode.c: the job error codes of DESIGN.md ("Error codes"). Every code's name is the
 * string DESIGN.md lists and round-trips through uf_code_from_name; UFC_NONE, out-of-range
 * values and unknown, NULL or differently spelled names name nothing; and each code falls in
 * the retry class the worker acts on (retryable, permanent, bad stick, cancelled). */
#include <criterion/criterion.h>
#include <string.h>

#include "util/macro.h"
#include "util/ufcode.h"

/* The codes as DESIGN.md spells them, with the class ufcode.c gives each. */
static const struct {
	enum uf_code code;
	const char *name;
	enum uf_code_class cls;
} codes[] = {
	{ UFC_CONFIG_INVALID, "CONFIG_INVALID", UFC_CLASS_PERMANENT },
	{ UFC_DB_UNAVAILABLE, "DB_UNAVAILABLE", UFC_CLASS_RETRYABLE },
	{ UFC_ORDER_INVALID, "ORDER_INVALID", UFC_CLASS_PERMANENT },
	{ UFC_CONTENT_MISSING, "CONTENT_MISSING", UFC_CLASS_PERMANENT },
	{ UFC_CONTENT_CHANGED, "CONTENT_CHANGED", UFC_CLASS_PERMANENT },
	{ UFC_CONTENT_TOO_LARGE, "CONTENT_TOO_LARGE", UFC_CLASS_PERMANENT },
	{ UFC_IMAGE_UNREADABLE, "IMAGE_UNREADABLE", UFC_CLASS_PERMANENT },
	{ UFC_DEVICE_GONE, "DEVICE_GONE", UFC_CLASS_RETRYABLE },
	{ UFC_DEVICE_TOO_SMALL, "DEVICE_TOO_SMALL", UFC_CLASS_BAD_STICK },
	{ UFC_DEVICE_READ_ONLY, "DEVICE_READ_ONLY", UFC_CLASS_BAD_STICK },
	{ UFC_DEVICE_FAKE_CAPACITY, "DEVICE_FAKE_CAPACITY", UFC_CLASS_BAD_STICK },
	{ UFC_DEVICE_UNSAFE, "DEVICE_UNSAFE", UFC_CLASS_BAD_STICK },
	{ UFC_WRITE_IO, "WRITE_IO", UFC_CLASS_RETRYABLE },
	{ UFC_VERIFY_MISMATCH, "VERIFY_MISMATCH", UFC_CLASS_RETRYABLE },
	{ UFC_STUCK_TIMEOUT, "STUCK_TIMEOUT", UFC_CLASS_RETRYABLE },
	{ UFC_CANCELLED, "CANCELLED", UFC_CLASS_CANCELLED },
	{ UFC_PROCESSING_FAILED, "PROCESSING_FAILED", UFC_CLASS_RETRYABLE },
};

Test(ufcode, the_table_lists_every_code_once)
{
	/* one row per code between UFC_NONE and _UFC_MAX: a new code must be added here too */
	cr_assert_eq(ARRAY_SIZE(codes), (size_t)_UFC_MAX - 1);
	for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
		cr_assert_eq(codes[i].code, (enum uf_code)(i + 1), "row %zu", i);
}

Test(ufcode, every_name_round_trips)
{
	for (size_t i = 0; i < ARRAY_SIZE(codes); i++) {
		const char *n = uf_code_name(codes[i].code);
		cr_assert_not_null(n, "code %d", (int)codes[i].code);
		cr_assert_str_eq(n, codes[i].name);
		cr_assert_eq(uf_code_from_name(codes[i].name), (int)codes[i].code, "%s", codes[i].name);
		cr_assert_eq(uf_code_from_name(n), (int)codes[i].code, "%s", n);
	}
}

Test(ufcode, names_are_distinct)
{
	for (int a = 1; a < _UFC_MAX; a++)
		for (int b = a + 1; b < _UFC_MAX; b++)
			cr_assert_str_neq(uf_code_name((enum uf_code)a), uf_code_name((enum uf_code)b), "%d and %d", a,
					  b);
}

Test(ufcode, none_and_out_of_range_have_no_name)
{
	cr_assert_null(uf_code_name(UFC_NONE));
	cr_assert_null(uf_code_name(_UFC_MAX));
	cr_assert_null(uf_code_name((enum uf_code)(_UFC_MAX + 1)));
	cr_assert_null(uf_code_name((enum uf_code) - 1));
	cr_assert_null(uf_code_name((enum uf_code)1000));
}

Test(ufcode, unknown_names_are_minus_one)
{
	const char *unknown[] = {
		"",		    /* empty */
		"NONE",		    /* UFC_NONE has no name */
		"write_io",	    /* names are case-sensitive */
		"WRITE_IO ",	    /* trailing blank */
		" WRITE_IO",	    /* leading blank */
		"WRITE",	    /* a prefix */
		"WRITE_IO_ERROR",   /* a longer name */
		"DEVICE",	    /* a prefix of several */
		"_UFC_MAX",	    /* the enum's end */
		"UFC_WRITE_IO",	    /* the C identifier */
		"PROCESSING FAILED" /* a space for the underscore */
	};
	for (size_t i = 0; i < ARRAY_SIZE(unknown); i++)
		cr_assert_eq(uf_code_from_name(unknown[i]), -1, "'%s'", unknown[i]);
	cr_assert_eq(uf_code_from_name(NULL), -1);
}

Test(ufcode, each_code_has_its_class)
{
	cr_assert_eq(uf_code_class(UFC_NONE), UFC_CLASS_NONE);
	for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
		cr_assert_eq(uf_code_class(codes[i].code), codes[i].cls, "%s: class %d", codes[i].name,
			     (int)uf_code_class(codes[i].code));
}

Test(ufcode, class_counts)
{
	/* the retry policy at a glance: what spends an attempt, what fails at once, what blames the
	 * stick, what the operator asked for */
	unsigned n[UFC_CLASS_CANCELLED + 1] = { 0 };
	for (int c = 1; c < _UFC_MAX; c++)
		n[uf_code_class((enum uf_code)c)]++;
	cr_assert_eq(n[UFC_CLASS_NONE], 0);
	cr_assert_eq(n[UFC_CLASS_RETRYABLE], 6);
	cr_assert_eq(n[UFC_CLASS_PERMANENT], 6);
	cr_assert_eq(n[UFC_CLASS_BAD_STICK], 4);
	cr_assert_eq(n[UFC_CLASS_CANCELLED], 1);
}

Test(ufcode, out_of_range_codes_are_permanent)
{
	/* an unknown code is never retried forever or blamed on a stick */
	cr_assert_eq(uf_code_class(_UFC_MAX), UFC_CLASS_PERMANENT);
	cr_assert_eq(uf_code_class((enum uf_code)1000), UFC_CLASS_PERMANENT);
	cr_assert_eq(uf_code_class((enum uf_code) - 1), UFC_CLASS_PERMANENT);
}
