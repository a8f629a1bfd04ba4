/* libFuzzer target: the size and duration parsers of util/size.c (config values, --capacity).
 * The input is the text. Properties: an accepted size is exactly the value its digits and
 * suffix say (checked against long double arithmetic); an accepted duration is finite and
 * not negative; format_size never overflows its buffer and prints a NUL-terminated text. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz/fuzz_util.h"
#include "util/size.h"

/* The multiplier a valid suffix stands for (0: none). */
static long double suffix_mult(const char *p)
{
	static const struct {
		const char *s;
		long double m;
	} t[] = {
		{ "", 1 },
		{ "b", 1 },
		{ "k", 1e3L },
		{ "kb", 1e3L },
		{ "m", 1e6L },
		{ "mb", 1e6L },
		{ "g", 1e9L },
		{ "gb", 1e9L },
		{ "t", 1e12L },
		{ "tb", 1e12L },
		{ "ki", 1024.0L },
		{ "kib", 1024.0L },
		{ "mi", 1048576.0L },
		{ "mib", 1048576.0L },
		{ "gi", 1073741824.0L },
		{ "gib", 1073741824.0L },
		{ "ti", 1099511627776.0L },
		{ "tib", 1099511627776.0L },
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++)
		if (strcasecmp(p, t[i].s) == 0)
			return t[i].m;
	return 0;
}

static void check_size(const char *s)
{
	uint64_t v = 0xdeadbeefULL;
	int r = parse_size(s, &v);
	char buf[32];

	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE, "parse_size(\"%s\") returned %d", s, r);
	if (r < 0) {
		FUZZ_CHECK(v == 0xdeadbeefULL, "parse_size(\"%s\") wrote its result on failure", s);
		return;
	}
	/* Accepted: digits [. digits] suffix, and the value is what they say. */
	const char *p = s;
	while (isdigit((unsigned char)*p))
		p++;
	FUZZ_CHECK(p > s, "parse_size accepted \"%s\", which does not start with a digit", s);
	if (*p == '.') {
		p++;
		FUZZ_CHECK(isdigit((unsigned char)*p), "parse_size accepted \"%s\" (no digit after the dot)", s);
		while (isdigit((unsigned char)*p))
			p++;
	}
	long double m = suffix_mult(p);
	FUZZ_CHECK(m > 0, "parse_size accepted \"%s\" with the unknown suffix \"%s\"", s, p);
	_cleanup_free_ char *num = strndup(s, (size_t)(p - s));
	FUZZ_CHECK(num, "out of memory");
	long double want = strtold(num, NULL) * m;
	long double got = (long double)v;
	FUZZ_CHECK(fabsl(got - want) <= want * 1e-15L + 1, "parse_size(\"%s\") = %llu, expected about %.0Lf", s,
		   (unsigned long long)v, want);
	format_size(v, buf, sizeof(buf));
	FUZZ_CHECK(memchr(buf, '\0', sizeof(buf)) && buf[0], "format_size(%llu) printed no text",
		   (unsigned long long)v);
}

static void check_duration(const char *s)
{
	double v = -42.0;
	int r = parse_duration(s, &v);

	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE, "parse_duration(\"%s\") returned %d", s, r);
	if (r < 0) {
		FUZZ_CHECK(v == -42.0, "parse_duration(\"%s\") wrote its result on failure", s);
		return;
	}
	FUZZ_CHECK(isfinite(v) && v >= 0, "parse_duration(\"%s\") = %g", s, v);
	FUZZ_CHECK(isdigit((unsigned char)s[0]), "parse_duration accepted \"%s\"", s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_free_ char *s = fuzz_strndup(data, size);

	check_size(s);
	check_duration(s);
	return 0;
}
