/* Tests for util/size.c: parse_size, parse_duration and format_size. Every accepted form is
 * checked against its exact byte count or seconds; every rejected one against its exact error
 * code, and the output parameter must stay untouched on failure. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "util/size.h"

#define SENTINEL 0xdeadbeefULL

static void size_ok(const char *s, uint64_t want)
{
	uint64_t v = SENTINEL;
	int r = parse_size(s, &v);
	cr_assert_eq(r, 0, "parse_size(\"%s\") = %d, want 0", s, r);
	cr_assert_eq(v, want, "parse_size(\"%s\") = %llu, want %llu", s, (unsigned long long)v,
		     (unsigned long long)want);
}

static void size_bad(const char *s, int want)
{
	uint64_t v = SENTINEL;
	int r = parse_size(s, &v);
	cr_assert_eq(r, want, "parse_size(\"%s\") = %d, want %d", s, r, want);
	cr_assert_eq(v, SENTINEL, "parse_size(\"%s\") wrote its output on failure", s);
}

Test(size, decimal_suffixes)
{
	size_ok("16G", 16000000000ULL);
	size_ok("16GB", 16000000000ULL);
	size_ok("16g", 16000000000ULL);
	size_ok("16gb", 16000000000ULL);
	size_ok("512M", 512000000ULL);
	size_ok("512MB", 512000000ULL);
	size_ok("4K", 4000ULL);
	size_ok("4kB", 4000ULL);
	size_ok("2T", 2000000000000ULL);
	size_ok("2TB", 2000000000000ULL);
}

Test(size, binary_suffixes)
{
	size_ok("16GiB", 17179869184ULL);
	size_ok("16Gi", 17179869184ULL);
	size_ok("16gib", 17179869184ULL);
	size_ok("4KiB", 4096ULL);
	size_ok("4MiB", 4194304ULL);
	size_ok("256MiB", 268435456ULL);
	size_ok("1TiB", 1099511627776ULL);
}

Test(size, plain_bytes)
{
	size_ok("0", 0);
	size_ok("123", 123);
	size_ok("123B", 123);
	size_ok("123b", 123);
	size_ok("18446744073709551615", UINT64_MAX);
}

Test(size, fractions)
{
	size_ok("1.5G", 1500000000ULL);
	size_ok("1.5GiB", 1610612736ULL);
	size_ok("0.5KiB", 512ULL);
	size_ok("2.25M", 2250000ULL);
	size_ok("1.000G", 1000000000ULL);
	/* beyond the ninth decimal digit: must not be cut off silently */
	size_ok("1.0000000001T", 1000000000100ULL);
	size_ok("1.000000000000000000000000G", 1000000000ULL);
}

Test(size, garbage)
{
	size_bad(NULL, -EINVAL);
	size_bad("", -EINVAL);
	size_bad("abc", -EINVAL);
	size_bad("12X", -EINVAL);
	size_bad("-1", -EINVAL);
	size_bad("+1", -EINVAL);
	size_bad(" 12", -EINVAL);
	size_bad("12 ", -EINVAL);
	size_bad("12 G", -EINVAL);
	size_bad("G", -EINVAL);
	size_bad("1.5", -EINVAL);    /* not a whole number of bytes */
	size_bad("0.3KiB", -EINVAL); /* 307.2 bytes */
	size_bad("1.", -EINVAL);
	size_bad(".5G", -EINVAL);
	size_bad("1..5G", -EINVAL);
	size_bad("1.5.G", -EINVAL);
	size_bad("0x10", -EINVAL);
	size_bad("1e9", -EINVAL);
	size_bad("16GG", -EINVAL);
	size_bad("16iB", -EINVAL);
	size_bad("1.0000000000000000000001G", -EINVAL); /* a fraction of a byte */
}

Test(size, overflow)
{
	size_bad("99999999999999999999", -ERANGE);
	size_bad("18446744073709551616", -ERANGE);
	size_bad("18446744073709551615K", -ERANGE);
	size_bad("20000000T", -ERANGE);
	size_bad("16777216TiB", -ERANGE);
	size_bad("18446744073709551615.5K", -ERANGE);
}

static void dur_ok(const char *s, double want)
{
	double v = -1;
	int r = parse_duration(s, &v);
	cr_assert_eq(r, 0, "parse_duration(\"%s\") = %d, want 0", s, r);
	cr_assert_eq(v, want, "parse_duration(\"%s\") = %g, want %g", s, v, want);
}

static void dur_bad(const char *s, int want)
{
	double v = -1;
	int r = parse_duration(s, &v);
	cr_assert_eq(r, want, "parse_duration(\"%s\") = %d, want %d", s, r, want);
	cr_assert_eq(v, -1, "parse_duration(\"%s\") wrote its output on failure", s);
}

Test(duration, accepted)
{
	dur_ok("5", 5.0);
	dur_ok("0", 0.0);
	dur_ok("0.25", 0.25);
	dur_ok("300s", 300.0);
	dur_ok("1.5s", 1.5);
	dur_ok("86400", 86400.0);
}

Test(duration, rejected)
{
	dur_bad(NULL, -EINVAL);
	dur_bad("", -EINVAL);
	dur_bad("s", -EINVAL);
	dur_bad("abc", -EINVAL);
	dur_bad("5 s", -EINVAL);
	dur_bad(" 5", -EINVAL);
	dur_bad("5m", -EINVAL);
	dur_bad("5ss", -EINVAL);
	dur_bad("0x10", -EINVAL);
	dur_bad("1e3", -EINVAL);
	dur_bad("inf", -EINVAL);
	dur_bad("nan", -EINVAL);
	dur_bad("1.", -EINVAL);
	dur_bad(".5", -EINVAL);
	dur_bad("1.2.3", -EINVAL);
	dur_bad("+5", -EINVAL);
	dur_bad("-1", -ERANGE);
	dur_bad("-0.5s", -ERANGE);
}

Test(duration, overflow)
{
	char big[400];
	memset(big, '9', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	dur_bad(big, -ERANGE);
}

static void fmt_is(uint64_t bytes, const char *want)
{
	char buf[32];
	memset(buf, 'x', sizeof(buf));
	cr_assert_eq(format_size(bytes, buf, sizeof(buf)), buf);
	cr_assert_str_eq(buf, want, "format_size(%llu) = \"%s\", want \"%s\"", (unsigned long long)bytes, buf, want);
}

Test(format, values)
{
	fmt_is(0, "0 B");
	fmt_is(100, "100 B");
	fmt_is(1023, "1023 B");
	fmt_is(1024, "1.0 KiB");
	fmt_is(1536, "1.5 KiB");
	fmt_is(4194304, "4.0 MiB");
	fmt_is(16000000000ULL, "14.9 GiB");
	fmt_is(17179869184ULL, "16.0 GiB");
	fmt_is(1099511627776ULL, "1.0 TiB");
	fmt_is(1125899906842624ULL, "1024.0 TiB");
}

Test(format, truncates_to_buffer)
{
	char buf[5];
	format_size(17179869184ULL, buf, sizeof(buf));
	cr_assert_str_eq(buf, "16.0");
}
