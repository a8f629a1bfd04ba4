/* libFuzzer target: FAT name mapping (fatfs/fatname.c). The input is split at '/' and NUL into
 * up to 64 names as found on disk (any bytes); they go through fatname_map(), are made unique
 * in one folder (fatname_set_add_unique) and get their 8.3 short names, as the selection and
 * the FAT32 composer do. Properties: a mapped name is valid (fatname_is_valid, mapping it again
 * changes nothing), 1 to 255 UTF-16 units, without reserved characters, leading spaces or
 * trailing dots and spaces; a unique name is valid too; the short names are distinct, space
 * padded 8.3 fields of allowed characters; fatname_entries() counts the LFN entries exactly. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "fatfs/fatname.h"

#define MAX_NAMES 64

static void check_long(const char *what, const char *orig, const char *m)
{
	_cleanup_free_ uint16_t *u = NULL;
	_cleanup_free_ char *again = NULL;
	size_t n = 0, len = strlen(m);

	FUZZ_CHECK(fatname_utf16(m, &u, &n) == 0, "%s of '%s' is not valid UTF-8: '%s'", what, orig, m);
	FUZZ_CHECK(n >= 1 && n <= FATNAME_MAX_UNITS, "%s of '%s' has %zu UTF-16 units", what, orig, n);
	FUZZ_CHECK(fatname_is_valid(m), "%s of '%s' is not valid: '%s'", what, orig, m);
	FUZZ_CHECK(fatname_map(m, &again) == 0 && strcmp(again, m) == 0, "%s '%s' maps again to '%s'", what, m,
		   again ? again : "(oom)");
	FUZZ_CHECK(strcmp(m, ".") != 0 && strcmp(m, "..") != 0, "%s of '%s' is '%s'", what, orig, m);
	FUZZ_CHECK(m[0] != ' ', "%s of '%s' starts with a space: '%s'", what, orig, m);
	FUZZ_CHECK(m[len - 1] != ' ' && m[len - 1] != '.', "%s of '%s' ends with a dot or space: '%s'", what, orig, m);
	for (const char *p = m; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && !strchr("\"*/:<>?\\|", *p),
			   "%s of '%s' holds the reserved byte 0x%02x: '%s'", what, orig, (unsigned char)*p, m);
	unsigned want = fatname_is_short(m) ? 1 : 1 + (unsigned)((n + FATNAME_LFN_UNITS - 1) / FATNAME_LFN_UNITS);
	FUZZ_CHECK(fatname_entries(m) == want, "fatname_entries('%s') = %u, expected %u", m, fatname_entries(m), want);
}

static bool short_ok(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'()-@^_`{}~", c));
}

/* An 8- or 3-byte field: allowed characters, then only padding. */
static bool field_ok(const uint8_t *f, size_t len, bool need_one)
{
	size_t i = 0;
	while (i < len && f[i] != ' ') {
		if (!short_ok(f[i]))
			return false;
		i++;
	}
	if (need_one && i == 0)
		return false;
	for (; i < len; i++)
		if (f[i] != ' ')
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *names[MAX_NAMES] = { 0 }, *uniq[MAX_NAMES] = { 0 };
	uint8_t sn[MAX_NAMES][11];
	struct fatname_set *set = NULL;
	size_t n = 0, start = 0;

	FUZZ_CHECK(fatname_set_new(&set) == 0, "out of memory");
	for (size_t i = 0; i <= size && n < MAX_NAMES; i++) {
		if (i < size && data[i] != '/' && data[i] != '\0')
			continue;
		_cleanup_free_ char *orig = fuzz_strndup(data + start, i - start);
		start = i + 1;
		FUZZ_CHECK(fatname_map(orig, &names[n]) == 0, "fatname_map failed");
		check_long("the mapping", orig, names[n]);
		FUZZ_CHECK(fatname_set_add_unique(set, names[n], &uniq[n]) == 0, "fatname_set_add_unique failed");
		check_long("the unique name", names[n], uniq[n]);
		FUZZ_CHECK(fatname_set_contains(set, uniq[n]), "'%s' is not in the set it was added to", uniq[n]);
		n++;
	}
	/* The unique names are pairwise distinct as FAT compares them. */
	struct fatname_set *seen = NULL;
	FUZZ_CHECK(fatname_set_new(&seen) == 0, "out of memory");
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(!fatname_set_contains(seen, uniq[i]), "'%s' (name %zu) has a twin among the unique names",
			   uniq[i], i);
		FUZZ_CHECK(fatname_set_add(seen, uniq[i]) == 0, "out of memory");
	}
	seen = fatname_set_free(seen);

	int r = fatname_short_names((const char *const *)uniq, n, sn);
	FUZZ_CHECK(r == 0, "fatname_short_names returned %d", r);
	for (size_t i = 0; i < n; i++) {
		char text[13];
		fatname_short_to_text(sn[i], text);
		FUZZ_CHECK(field_ok(sn[i], 8, true) && field_ok(sn[i] + 8, 3, false),
			   "short name '%.11s' of '%s' is not a valid 8.3 field", (const char *)sn[i], uniq[i]);
		if (fatname_is_short(uniq[i]))
			FUZZ_CHECK(strcmp(text, uniq[i]) == 0, "the 8.3 name '%s' got the short name '%s'", uniq[i],
				   text);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(memcmp(sn[i], sn[j], 11) != 0, "'%s' and '%s' share the short name '%s'", uniq[j],
				   uniq[i], text);
	}
	for (size_t i = 0; i < n; i++) {
		free(names[i]);
		free(uniq[i]);
	}
	fatname_set_free(set);
	return 0;
}
