/* An order's content selection, as orders.content_spec holds it: the JSON text
 * {"categories": ["Salsa", …], "items": [12, …]} (either key may be missing). The text comes
 * from the database, where a web shop, a sales bot or a clerk with SQL access put it, so it
 * is untrusted: this module turns it into the lists the selection stage works from, or says
 * what is wrong with it. Pure: no I/O. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct content_spec {
	char **categories; /* NULL-terminated, in the order's order */
	int64_t *item_ids; /* n_item_ids of them (the array holds one more, zeroed) */
	size_t n_item_ids;
};

/* Parse TEXT (NUL-terminated) into *ret (overwritten; release with content_spec_done()).
 * Every category must be a non-empty string and every item a positive integer (an id of
 * content_items). Errors: -EINVAL when TEXT is not such an object (the reason, naming the bad
 * element, in *ret_error, malloc'd, when not NULL); -ENOMEM. *ret is written only on success. */
int content_spec_parse(const char *text, struct content_spec *ret, char **ret_error);
/* Free the lists and zero *s. NULL is accepted. */
void content_spec_done(struct content_spec *s);
