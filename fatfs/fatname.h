/* FAT names: turning names as found on disk (UTF-8, possibly invalid) into long names FAT can
 * hold, keeping them unique in a folder the way FAT compares them (case-insensitively), and
 * deriving the 8.3 short names and the VFAT long-name (LFN) entries that carry them. Pure
 * functions plus one small set type; no I/O. Shared by the selection (which must know exactly
 * how many directory entries a name takes) and the FAT32 composer (which writes them).
 *
 * Mapping rules (fatname_map), applied in this order, deterministic:
 *   - bytes that are not valid UTF-8 (incl. overlongs, encoded surrogates, > U+10FFFF) → '_';
 *   - control characters (< U+0020) and " * / : < > ? \ | → '_';
 *   - leading spaces and trailing dots and spaces are removed (Windows cannot open such names);
 *   - longer than 255 UTF-16 units: the stem is cut (at a code point boundary) so that the name
 *     with its extension fits in 255 units;
 *   - an empty result (or "." / "..") becomes "_".
 * Uniqueness (fatname_set_add_unique): two names that fold to the same string (ASCII, Latin-1,
 * Latin Extended-A, Greek, Cyrillic and fullwidth letters are folded; the rest compares as is)
 * are twins: the later one gets " (2)", " (3)", … before its extension. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FATNAME_MAX_UNITS 255 /* UTF-16 units in a long name */
#define FATNAME_LFN_UNITS 13  /* UTF-16 units per LFN entry */

/* Map NAME (a single path component, NUL-terminated, any bytes) to a FAT-valid long name.
 * *ret is malloc'd. Errors: -ENOMEM. */
int fatname_map(const char *name, char **ret);

/* True when NAME is already what fatname_map() would return (a valid FAT long name). */
bool fatname_is_valid(const char *name);

/* UTF-8 → UTF-16 (surrogate pairs above U+FFFF). *ret_units is malloc'd, not terminated.
 * Errors: -EILSEQ on invalid UTF-8, -ENOMEM. */
int fatname_utf16(const char *name, uint16_t **ret_units, size_t *ret_n);

/* True when NAME is a plain upper-case 8.3 name ("README.TXT") that needs no LFN entries. */
bool fatname_is_short(const char *name);

/* Directory entries (32 bytes each) NAME takes: 1 short entry plus ceil(units / 13) LFN
 * entries unless fatname_is_short(). NAME must be valid (fatname_is_valid). */
unsigned fatname_entries(const char *name);

/* The LFN checksum of an 11-byte short name. */
uint8_t fatname_checksum(const uint8_t sname[11]);

/* Short names for the N entries of one folder, in entry order: names that are plain 8.3 keep
 * theirs; the others get a basis name (upper-cased, spaces and extra dots dropped, characters
 * outside the 8.3 set → '_', base ≤ 8, extension ≤ 3) with a numeric tail "~N" (lowest free
 * N) whenever the basis lost information or is taken. ret must hold n entries of 11 bytes
 * (space-padded, as stored). Names must be valid and unique (case-insensitive).
 * Errors: -ENOMEM, -ENOSPC (no free tail; cannot happen below 10^6 twins). */
int fatname_short_names(const char *const *names, size_t n, uint8_t (*ret)[11]);

/* The short name as text ("README~1.TXT") into buf (≥ 13 bytes). */
void fatname_short_to_text(const uint8_t sname[11], char buf[13]);

/* A set of names compared as FAT compares them (folded, see above). */
struct fatname_set;

/* Errors: -ENOMEM. */
int fatname_set_new(struct fatname_set **ret);
/* Accepts NULL; returns NULL. */
struct fatname_set *fatname_set_free(struct fatname_set *s);
/* True when a twin of NAME is in the set. */
bool fatname_set_contains(const struct fatname_set *s, const char *name);
/* The name fatname_set_add_unique() would return, without adding it. Errors: -ENOMEM. */
int fatname_set_unique(const struct fatname_set *s, const char *name, char **ret);
/* Add NAME as is (no-op when a twin is present). Errors: -ENOMEM. */
int fatname_set_add(struct fatname_set *s, const char *name);
/* Make the valid name NAME unique in S (" (N)" before the extension when a twin is present,
 * keeping the result within 255 units), add it, and return it malloc'd in *ret.
 * Errors: -ENOMEM. */
int fatname_set_add_unique(struct fatname_set *s, const char *name, char **ret);
