/* Implementation of utf8.h. */
#include "util/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int utf8_decode(const unsigned char *s, uint32_t *ret_cp)
{
	unsigned char c = s[0];
	uint32_t v, min;
	int len;

	if (c < 0x80) {
		*ret_cp = c;
		return 1;
	}
	if ((c & 0xE0) == 0xC0) {
		len = 2;
		v = c & 0x1F;
		min = 0x80;
	} else if ((c & 0xF0) == 0xE0) {
		len = 3;
		v = c & 0x0F;
		min = 0x800;
	} else if ((c & 0xF8) == 0xF0) {
		len = 4;
		v = c & 0x07;
		min = 0x10000;
	} else
		return -1;
	for (int i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return -1;
		v = (v << 6) | (s[i] & 0x3F);
	}
	if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return -1;
	*ret_cp = v;
	return len;
}

bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;

	while (*p) {
		int n = utf8_decode(p, &cp);
		if (n < 0)
			return false;
		p += n;
	}
	return true;
}

char *utf8_escape(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = malloc(4 * strlen(s) + 1), *o = out;
	uint32_t cp;

	if (!out)
		return NULL;
	while (*p) {
		int n = utf8_decode(p, &cp);
		if (n < 0) {
			o += snprintf(o, 5, "\\x%02x", *p);
			p++;
			continue;
		}
		memcpy(o, p, (size_t)n);
		o += n;
		p += n;
	}
	*o = 0;
	return out;
}

/* A code point that must not reach a terminal raw: C0, DEL, C1. */
static bool is_control(uint32_t cp) { return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f); }

char *utf8_escape_text(const char *s, unsigned flags)
{
	const unsigned char *p = (const unsigned char *)s;
	/* worst case: every byte becomes "\xNN" (a C1 control is 2 bytes -> 6 characters) */
	char *out = malloc(4 * strlen(s) + 1), *o = out;
	uint32_t cp;

	if (!out)
		return NULL;
	while (*p) {
		int n = utf8_decode(p, &cp);
		if (n < 0 || (n == 1 && is_control(cp))) {
			o += snprintf(o, 5, "\\x%02x", *p);
			p++;
			continue;
		}
		if (is_control(cp))
			o += snprintf(o, 7, "\\u%04x", (unsigned)cp);
		else if (cp == '\\' && !(flags & UTF8_ESCAPE_KEEP_BACKSLASH)) {
			*o++ = '\\';
			*o++ = '\\';
		} else {
			memcpy(o, p, (size_t)n);
			o += n;
		}
		p += n;
	}
	*o = 0;
	return out;
}

bool utf8_has_controls(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;

	while (*p) {
		int n = utf8_decode(p, &cp);
		if (n < 0 || is_control(cp))
			return true;
		p += n;
	}
	return false;
}
