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

Test(utf8, escape_text_for_a_terminal)
{
	struct {
		const char *in, *out;
	} cases[] = {
		{ "", "" },
		{ "Müller 日本語 🎵", "Müller 日本語 🎵" },
		{ "\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07" },
		{ "a\x1b[2Jb", "a\\x1b[2Jb" },
		{ "tab\there\r\n", "tab\\x09here\\x0d\\x0a" },
		{ "\x01\x1f\x7f", "\\x01\\x1f\\x7f" },
		{ "csi\xc2\x9b"
		  "1m",
		  "csi\\u009b1m" },
		{ "\xc2\x80\xc2\x9f\xc2\xa0", "\\u0080\\u009f\xc2\xa0" }, /* C1 first and last; NBSP stays */
		{ "raw\x9b"
		  "31m",
		  "raw\\x9b31m" },
		{ "caf\xe9", "caf\\xe9" },
		{ "a\\x1b", "a\\\\x1b" }, /* a literal backslash: unambiguous */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *e = utf8_escape_text(cases[i].in, 0);
		cr_assert_str_eq(e, cases[i].out, "case %zu", i);
		cr_assert_not(utf8_has_controls(e), "case %zu", i);
		cr_assert_eq(utf8_has_controls(cases[i].in), strcmp(cases[i].in, cases[i].out) != 0 && i != 10,
			     "case %zu", i);
		free(e);
	}
	char *k = utf8_escape_text("{\"a\":\"\\u001b\x7f\xc2\x9b\"}", UTF8_ESCAPE_KEEP_BACKSLASH);
	cr_assert_str_eq(k, "{\"a\":\"\\u001b\\x7f\\u009b\"}");
	free(k);
}
