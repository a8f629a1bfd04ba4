/* The content library (content_items): incremental scan of a content tree, listing, and the
 * lookups orders and the worker need. Category = first folder level under the root; names are
 * kept exactly as on disk. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "db/db.h"
#include "util/items.h"

struct content_scan_stats {
	unsigned files;	      /* regular files seen under a category folder */
	unsigned added;	      /* new rows */
	unsigned updated;     /* size or mtime changed: re-hashed */
	unsigned unchanged;   /* size and mtime equal: not re-hashed */
	unsigned reactivated; /* were inactive, present again */
	unsigned deactivated; /* rows whose file is gone */
	unsigned skipped;     /* not regular files, files at the top level, unreadable */
	uint64_t bytes_hashed;
};

/* Scan the content library at root (content.root), or only its folder subdir (a path beneath
 * root, e.g. "Music/Salsa"; NULL or "" for all of it): hash new and changed files (SHA-256
 * and XXH3-128), upsert their rows, mark rows beneath the scanned folder whose file vanished
 * inactive (rows elsewhere are left alone). Everything is opened from its parent directory's
 * descriptor without following symlinks, and the descriptor that was checked is the one
 * hashed; kernel pseudo filesystems are not entered. Each file is committed as it is hashed,
 * so an interrupted scan loses nothing done. warn(ud, msg) is told about skipped entries (may
 * be NULL). Errors: -errno for the root or subdir (-ENOENT, -ENOTDIR: also a symlink on the
 * way to subdir, -EXDEV: subdir leaves root, -EACCES), -EREMOTEIO: a pseudo filesystem, db
 * errors. */
int content_scan(struct db *db, const char *root, const char *subdir, void (*warn)(void *ud, const char *msg), void *ud,
		 struct content_scan_stats *ret);

/* Active items, optionally of one category, ordered by category then rel_path. */
int content_list(struct db *db, const char *category, struct db_res **ret);
int content_category_count(struct db *db, const char *category, int64_t *ret);
/* -ENOENT when no such id. */
int content_item_active(struct db *db, int64_t id, bool *ret);
/* The active items of category larger than max_bytes, in rel_path order, into a malloc'd array
 * (*ret NULL when none) of which id, rel_path and size are filled in (free with
 * content_items_free() of util/items.h). 0, -ENOMEM, or db errors. */
int content_category_larger(struct db *db, const char *category, uint64_t max_bytes, struct content_item **ret,
			    size_t *ret_n);
/* Item id's size and rel_path (malloc'd), whatever its state. 0, -ENOENT when no such id,
 * -ENOMEM, or db errors. */
int content_item_size(struct db *db, int64_t id, uint64_t *ret_size, char **ret_rel_path);

/* Load the candidates of a content order (active items of the categories, and the explicit ids
 * whatever their category) into an array of struct content_item (free with
 * content_items_free() of util/items.h). */
int content_load_candidates(struct db *db, char *const *categories, const int64_t *ids, size_t n_ids,
			    struct content_item **ret, size_t *ret_n);
