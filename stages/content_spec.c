/* Implementation of content_spec.h (jansson). */
#include "stages/content_spec.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "util/message.h"

void content_spec_done(struct content_spec *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->categories && s->categories[i]; i++)
		free(s->categories[i]);
	free(s->categories);
	free(s->item_ids);
	memset(s, 0, sizeof(*s));
}

int content_spec_parse(const char *text, struct content_spec *ret, char **ret_error)
{
	struct content_spec s = { 0 };
	json_error_t e;
	json_t *cs = json_loads(text ? text : "", 0, &e);
	json_t *cats = json_object_get(cs, "categories"), *ids = json_object_get(cs, "items");
	int r = 0;

	/* An array is valid JSON too (json_loads takes both): it is no selection. */
	if (!json_is_object(cs) || (cats && !json_is_array(cats)) || (ids && !json_is_array(ids))) {
		json_decref(cs);
		return error_set(ret_error, -EINVAL,
				 "order content_spec is not {\"categories\": [...], \"items\": [...]}");
	}
	size_t nc = json_array_size(cats);
	s.categories = calloc(nc + 1, sizeof(char *));
	s.n_item_ids = json_array_size(ids);
	s.item_ids = calloc(s.n_item_ids + 1, sizeof(int64_t));
	if (!s.categories || !s.item_ids)
		r = -ENOMEM;
	/* What content_load_candidates() matches: category names and content_items ids. Anything
	 * else used to become "" or 0 (or a negative id) and be looked up as such. */
	for (size_t i = 0; r == 0 && i < nc; i++) {
		const char *c = json_string_value(json_array_get(cats, i));
		if (!c || !*c)
			r = error_set(ret_error, -EINVAL,
				      "order content_spec: categories[%zu] is not a category name (a non-empty string)",
				      i);
		else if (!(s.categories[i] = strdup(c)))
			r = -ENOMEM;
	}
	for (size_t i = 0; r == 0 && i < s.n_item_ids; i++) {
		json_t *v = json_array_get(ids, i);
		if (!json_is_integer(v) || json_integer_value(v) <= 0)
			r = error_set(ret_error, -EINVAL,
				      "order content_spec: items[%zu] is not an item id (a positive integer)", i);
		else
			s.item_ids[i] = json_integer_value(v);
	}
	json_decref(cs);
	if (r < 0) {
		content_spec_done(&s);
		return r;
	}
	*ret = s;
	return 0;
}
