/* UTF-8 validity, for names that come from a filesystem (bytes, not necessarily text). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Whether the NUL-terminated s is well-formed UTF-8 (no overlongs, no encoded surrogates,
 * nothing above U+10FFFF). */
bool utf8_valid(const char *s);

/* A printable copy of s for messages: every byte of an invalid sequence becomes "\xNN".
 * malloc'd; NULL on ENOMEM. */
char *utf8_escape(const char *s);
