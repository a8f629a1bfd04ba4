/* The order's content selection as orders.content_spec holds it (stages/content_spec.c): what
 * is accepted, exactly, and every shape that is refused with its reason. Found by
 * fuzz_content_spec (inputs in fuzz/regress/content_spec): a category that is not a string
 * became "", an item id that is not a positive integer became 0 (or a negative id), and a
 * JSON array was taken for an empty selection. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "stages/content_spec.h"
#include "util/macro.h"

Test(content_spec, accepts_categories_and_items_in_order)
{
	struct content_spec cs = { 0 };
	char *why = NULL;

	cr_assert_eq(content_spec_parse("{\"categories\":[\"Salsa\",\"Reggaet\\u00f3n\"],\"items\":[7,3]}", &cs, &why),
		     0);
	cr_assert_null(why);
	cr_assert_str_eq(cs.categories[0], "Salsa");
	cr_assert_str_eq(cs.categories[1], "Reggaet\xc3\xb3n");
	cr_assert_null(cs.categories[2]);
	cr_assert_eq(cs.n_item_ids, 2);
	cr_assert_eq(cs.item_ids[0], 7);
	cr_assert_eq(cs.item_ids[1], 3);
	content_spec_done(&cs);
	cr_assert_null(cs.categories);

	cr_assert_eq(content_spec_parse("{}", &cs, &why), 0);
	cr_assert_null(cs.categories[0]);
	cr_assert_eq(cs.n_item_ids, 0);
	content_spec_done(&cs);
}

Test(content_spec, refuses_what_selection_cannot_use)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
		{ "", "order content_spec is not {\"categories\": [...], \"items\": [...]}" },
		{ "{\"categories\":\"Salsa\"}", "order content_spec is not {\"categories\": [...], \"items\": [...]}" },
		{ "[]", "order content_spec is not {\"categories\": [...], \"items\": [...]}" },
		{ "[{\"categories\":[\"Salsa\"]}]",
		  "order content_spec is not {\"categories\": [...], \"items\": [...]}" },
		{ "{\"categories\":[1],\"items\":[\"2\"]}",
		  "order content_spec: categories[0] is not a category name (a non-empty string)" },
		{ "{\"categories\":[\"Salsa\",\"\"]}",
		  "order content_spec: categories[1] is not a category name (a non-empty string)" },
		{ "{\"categories\":[null]}",
		  "order content_spec: categories[0] is not a category name (a non-empty string)" },
		{ "{\"items\":[\"2\"]}", "order content_spec: items[0] is not an item id (a positive integer)" },
		{ "{\"items\":[3,0]}", "order content_spec: items[1] is not an item id (a positive integer)" },
		{ "{\"items\":[-1]}", "order content_spec: items[0] is not an item id (a positive integer)" },
		{ "{\"items\":[1.5]}", "order content_spec: items[0] is not an item id (a positive integer)" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct content_spec cs = { 0 };
		char *why = NULL;
		int r = content_spec_parse(cases[i].text, &cs, &why);
		cr_assert_eq(r, -EINVAL, "%s: %d", cases[i].text, r);
		cr_assert_str_eq(why, cases[i].why, "%s", cases[i].text);
		cr_assert_null(cs.categories);
		free(why);
	}
}
