/* UTF-8 decoding and validity, for names that come from a filesystem (bytes, not necessarily
 * text), and the terminal-safe form of any user-supplied string. Shared by the library scan
 * (db/), the FAT name mapping (stages/) and every text output of the CLI (cli/). */
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

enum {
	UTF8_ESCAPE_KEEP_BACKSLASH = 1 << 0, /* s is already an escaped form (JSON text): '\\' stays */
};

/* A copy of s that is safe to print on a terminal, for text output of user-supplied strings
 * (names, order numbers, file names, log messages): nothing in it can move the cursor, retitle
 * or clear the terminal, and what is printed is unambiguous.
 *   C0 controls (0x00-0x1f: ESC, CR, LF, TAB...) and DEL (0x7f)  -> "\x1b", "\x0a", "\x7f"
 *   C1 controls (U+0080-U+009F, encoded as UTF-8)               -> "\u009b"
 *   a byte that is not part of well-formed UTF-8 (raw 0x9b...)  -> "\x9b"
 *   a backslash                                                 -> "\\" (unless KEEP_BACKSLASH)
 * Every other character, printable UTF-8 included ("Müller", CJK), is kept as is. malloc'd;
 * NULL on ENOMEM. */
char *utf8_escape_text(const char *s, unsigned flags);

/* Whether s holds a C0, DEL or C1 control character or bytes that are not well-formed UTF-8:
 * what utf8_escape_text() would rewrite, backslashes aside. */
bool utf8_has_controls(const char *s);
