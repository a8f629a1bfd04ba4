/* Domain value types shared by db/ (which loads and stores them) and stages/ (which computes
 * with them): a file of the content library, and a file chosen for a job. Plain data and their
 * destructors; kept here so that neither layer includes the other. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* One file of the content library, as the worker loads it from content_items. */
struct content_item {
	int64_t id;
	char *category;
	char *title;
	char *rel_path; /* path under content.root, as on disk */
	uint64_t size;
	char sha256[65]; /* lowercase hex */
	char xxh128[33]; /* lowercase hex, canonical (as xxh128sum prints); "" when not known */
	int64_t mtime;	 /* seconds since the epoch */
};

/* One chosen file: what processing_job_items records. */
struct job_item {
	int position;
	int64_t content_item_id;
	uint64_t size;
	char *dest_path; /* "Category/File name" on the stick, after FAT name mapping */
	char *rel_path;	 /* source, under content.root */
	char sha256[65];
	char xxh128[33]; /* "" for an item scanned before the column existed */
	int64_t mtime;
};

/* Free an array of n items and their strings. Accept NULL; return NULL. */
struct content_item *content_items_free(struct content_item *items, size_t n);
struct job_item *job_items_free(struct job_item *items, size_t n);
