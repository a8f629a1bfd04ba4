/* Content selection: which library files go on a stick, in which order, under which names.
 * Explicit items first (in the order's order), then the order's categories round-robin, each
 * category's candidates in a stable order (rel_path, bytewise); a candidate is added when it
 * still fits, computed exactly from the FAT32 layout of the stick (fat32.h): data clusters,
 * directory clusters (every 32-byte entry, LFN entries included, of the root and of each
 * category folder) and the FAT itself (via the layout's cluster count). A candidate that does
 * not fit when its turn comes is dropped for good. Names go through fatname_map() and are made
 * unique per folder (fatname_set_add_unique); dest_path = "Category/Name". Pure: no I/O. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "stages/stage.h"

/* Called for every candidate that is skipped because it cannot be on FAT32 (4 GiB or more). */
typedef void (*select_skip_fn)(void *userdata, const struct content_item *it, const char *reason);

struct select_result {
	struct job_item *items; /* owned; free with job_items_free() */
	size_t n_items;
	uint64_t used_clusters; /* directories + files */
	uint64_t free_clusters;
};

/* Choose the content of JOB (library, item_ids, categories) for a stick of usable_size bytes.
 * On success *ret is filled (positions 0 … n-1). skip may be NULL.
 * Errors (message in *ret_error, malloc'd, when not NULL):
 *   -ENOENT  an explicit item id is not in the library (unknown or inactive) → ORDER_INVALID;
 *   -ENOSPC  the explicit items alone do not fit → CONTENT_TOO_LARGE;
 *   -ENODATA the order names nothing that exists (no explicit items, no candidates) →
 *            ORDER_INVALID;
 *   -ERANGE  the stick is too small for FAT32 → DEVICE_TOO_SMALL;
 *   -ENOMEM. */
int select_content(const struct job_spec *job, uint64_t usable_size, select_skip_fn skip, void *userdata,
		   struct select_result *ret, char **ret_error);
