/* libFuzzer target: an order's content selection, orders.content_spec (JSON text from the
 * database, stages/content_spec.c). Properties: accepted or refused with a reason, never a
 * crash or a leak; what is accepted is what the selection stage can use: every category a
 * non-empty string, every item id a positive integer (content_items.id). */
#include <errno.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "stages/content_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_free_ char *text = fuzz_strndup(data, size);
	_cleanup_free_ char *why = NULL;
	struct content_spec cs;

	int r = content_spec_parse(text, &cs, &why);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM, "content_spec_parse returned %d", r);
		FUZZ_CHECK(r == -ENOMEM || (why && *why), "refused without a reason");
		return 0;
	}
	FUZZ_CHECK(!why, "accepted with a reason: %s", why);
	FUZZ_CHECK(cs.categories && cs.item_ids, "accepted without lists");
	for (size_t i = 0; cs.categories[i]; i++)
		FUZZ_CHECK(cs.categories[i][0], "accepted an empty category name (categories[%zu])", i);
	for (size_t i = 0; i < cs.n_item_ids; i++)
		FUZZ_CHECK(cs.item_ids[i] > 0, "accepted the item id %lld (items[%zu])", (long long)cs.item_ids[i], i);
	content_spec_done(&cs);
	return 0;
}
