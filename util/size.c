/* Implementation of util/size.h. */
#include "util/size.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/macro.h"

int parse_size(const char *s, uint64_t *ret)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} table[] = {
		{ "", 1 },
		{ "b", 1 },
		{ "k", 1000ULL },
		{ "kb", 1000ULL },
		{ "m", 1000ULL * 1000 },
		{ "mb", 1000ULL * 1000 },
		{ "g", 1000ULL * 1000 * 1000 },
		{ "gb", 1000ULL * 1000 * 1000 },
		{ "t", 1000ULL * 1000 * 1000 * 1000 },
		{ "tb", 1000ULL * 1000 * 1000 * 1000 },
		{ "ki", 1ULL << 10 },
		{ "kib", 1ULL << 10 },
		{ "mi", 1ULL << 20 },
		{ "mib", 1ULL << 20 },
		{ "gi", 1ULL << 30 },
		{ "gib", 1ULL << 30 },
		{ "ti", 1ULL << 40 },
		{ "tib", 1ULL << 40 },
	};
	const char *p = s;
	uint64_t whole = 0;
	/* The fraction keeps 19 digits exactly (10^19 * 2^40 still fits 128 bits); a nonzero digit
	 * beyond them is a fraction of a byte under every multiplier and is refused. */
	uint64_t frac_num = 0, frac_den = 1;
	bool frac_lost = false;
	int digits = 0;

	if (!s)
		return -EINVAL;
	while (isdigit((unsigned char)*p)) {
		unsigned d = (unsigned)(*p - '0');
		if (whole > (UINT64_MAX - d) / 10)
			return -ERANGE;
		whole = whole * 10 + d;
		p++;
		digits++;
	}
	if (digits == 0)
		return -EINVAL; /* "", ".5", "-1", " 1" */
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL; /* "1." */
		while (isdigit((unsigned char)*p)) {
			if (frac_den <= UINT64_MAX / 10) {
				frac_num = frac_num * 10 + (unsigned)(*p - '0');
				frac_den *= 10;
			} else if (*p != '0')
				frac_lost = true;
			p++;
		}
	}
	if (frac_lost)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		if (strcasecmp(p, table[i].suffix) != 0)
			continue;
		uint64_t m = table[i].mult;
		if (whole && m > UINT64_MAX / whole)
			return -ERANGE;
		uint64_t v = whole * m;
		/* fraction: frac_num/frac_den * m, must land on a whole byte count */
		if (frac_num) {
			unsigned __int128 f = (unsigned __int128)frac_num * m;
			if (f % frac_den)
				return -EINVAL; /* "1.5" bytes */
			uint64_t add = (uint64_t)(f / frac_den);
			if (v > UINT64_MAX - add)
				return -ERANGE;
			v += add;
		}
		*ret = v;
		return 0;
	}
	return -EINVAL;
}

int parse_duration(const char *s, double *ret)
{
	const char *p = s;
	char *end;
	double v;

	if (!s)
		return -EINVAL;
	if (*p == '-')
		return -ERANGE;
	/* Exactly digits [ "." digits ] [ "s" ]: strtod alone would also take hex, exponents,
	 * "inf", leading blanks and signs. */
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 's')
		p++;
	if (*p)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (end == s)
		return -EINVAL;
	if (!isfinite(v))
		return -ERANGE; /* hundreds of digits */
	*ret = v;
	return 0;
}

char *format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}
