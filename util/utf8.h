/* UTF-8 decoding and validity, for names that come from a filesystem (bytes, not necessarily
 * text). Shared by the library scan (db/) and the FAT name mapping (stages/). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode one well-formed sequence at s (no overlongs, no encoded surrogates, nothing above
 * U+10FFFF; a NUL ends it). Returns its length (1–4) with *ret_cp, or -1 when the bytes at s
 * are not one (the caller consumes one byte). */
int utf8_decode(const unsigned char *s, uint32_t *ret_cp);

/* Whether the NUL-terminated s is well-formed UTF-8. */
bool utf8_valid(const char *s);

/* A printable copy of s for messages: every byte of an invalid sequence becomes "\xNN".
 * malloc'd; NULL on ENOMEM. */
char *utf8_escape(const char *s);
