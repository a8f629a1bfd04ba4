/* Implementation of items.h. */
#include "util/items.h"

#include <stdlib.h>

struct content_item *content_items_free(struct content_item *items, size_t n)
{
	for (size_t i = 0; items && i < n; i++) {
		free(items[i].category);
		free(items[i].title);
		free(items[i].rel_path);
	}
	free(items);
	return NULL;
}

struct job_item *job_items_free(struct job_item *items, size_t n)
{
	for (size_t i = 0; items && i < n; i++) {
		free(items[i].dest_path);
		free(items[i].rel_path);
	}
	free(items);
	return NULL;
}
