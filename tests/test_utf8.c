/* util/utf8.c: well-formed UTF-8 accepted, each kind of ill-formed sequence refused, and the
 * escaped form of a name for messages. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "util/utf8.h"

Test(utf8, valid_and_invalid)
{
	cr_assert(utf8_valid(""));
	cr_assert(utf8_valid("plain ascii"));
	cr_assert(utf8_valid("Música Clásica/Für Elise — 日本語 🎵"));
	cr_assert(utf8_valid("\xf4\x8f\xbf\xbf"), "U+10FFFF");
	cr_assert_not(utf8_valid("caf\xe9"), "Latin-1");
	cr_assert_not(utf8_valid("\xc0\xaf"), "overlong /");
	cr_assert_not(utf8_valid("\xe0\x80\xaf"), "overlong, 3 bytes");
	cr_assert_not(utf8_valid("\xed\xa0\x80"), "encoded surrogate U+D800");
	cr_assert_not(utf8_valid("\xf4\x90\x80\x80"), "above U+10FFFF");
	cr_assert_not(utf8_valid("\xe6\x97"), "truncated");
	cr_assert_not(utf8_valid("\x80"), "lone continuation byte");
}

Test(utf8, escape)
{
	char *e = utf8_escape("caf\xe9 ñ \xff");
	cr_assert_str_eq(e, "caf\\xe9 ñ \\xff");
	free(e);
}
