/* Content selection; see select.h. The space accounting mirrors fat32.c's plan exactly: root
 * directory = 1 label entry + each folder's entries, a folder = 2 ("." and "..") + each file's
 * entries, every directory at least one cluster, files ceil(size / cluster) clusters. */
#include "stages/select.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fatfs/fat32.h"
#include "fatfs/fatname.h"
#include "util/macro.h"
#include "util/message.h"

struct sfolder {
	const char *category; /* borrowed from the library */
	char *name;	      /* mapped, unique in the root */
	struct fatname_set *names;
	uint64_t entries;
};

struct sel {
	struct fat_layout L;
	uint64_t used;	       /* clusters: all directories + files */
	uint64_t root_entries; /* label + folders */
	struct fatname_set *root_names;
	struct sfolder *folders;
	size_t n_folders;
	struct job_item *items;
	size_t n_items, cap;
	bool *taken; /* per library index */
};

static void sel_done(struct sel *s)
{
	for (size_t i = 0; i < s->n_folders; i++) {
		free(s->folders[i].name);
		fatname_set_free(s->folders[i].names);
	}
	free(s->folders);
	fatname_set_free(s->root_names);
	job_items_free(s->items, s->n_items);
	free(s->taken);
}

static const char *base_name(const char *rel_path)
{
	const char *s = strrchr(rel_path, '/');
	return s ? s + 1 : rel_path;
}

/* Add library item IT if it fits. Returns 1 when added, 0 when it does not fit, or -errno. */
static int try_add(struct sel *s, const struct content_item *it)
{
	const struct fat_layout *L = &s->L;
	_cleanup_free_ char *fmapped = NULL, *fname = NULL, *cmapped = NULL, *cname = NULL;
	_cleanup_free_ char *dest = NULL, *rel = NULL;
	struct sfolder *f = NULL;
	uint64_t delta, fe, e;
	int r;

	for (size_t i = 0; i < s->n_folders; i++)
		if (strcmp(s->folders[i].category, it->category) == 0) {
			f = &s->folders[i];
			break;
		}

	r = fatname_map(base_name(it->rel_path), &fmapped);
	if (r < 0)
		return r;
	if (f) {
		r = fatname_set_unique(f->names, fmapped, &fname);
		if (r < 0)
			return r;
		e = fatname_entries(fname);
		if (f->entries + e > FAT_DIR_MAX_ENTRIES)
			return 0;
		delta = fat_dir_clusters(L, f->entries + e) - fat_dir_clusters(L, f->entries);
	} else {
		uint64_t re;
		r = fatname_map(it->category, &cmapped);
		if (r < 0)
			return r;
		r = fatname_set_unique(s->root_names, cmapped, &cname);
		if (r < 0)
			return r;
		fname = TAKE_PTR(fmapped); /* a new folder: no twin yet */
		e = fatname_entries(fname);
		re = fatname_entries(cname);
		if (s->root_entries + re > FAT_DIR_MAX_ENTRIES || 2 + e > FAT_DIR_MAX_ENTRIES)
			return 0;
		delta = fat_dir_clusters(L, s->root_entries + re) - fat_dir_clusters(L, s->root_entries) +
			fat_dir_clusters(L, 2 + e);
	}
	fe = e;
	delta += fat_file_clusters(L, it->size);
	if (s->used + delta > L->n_clusters)
		return 0;

	/* It fits: commit. */
	if (asprintf(&dest, "%s/%s", f ? f->name : cname, fname) < 0)
		return -ENOMEM;
	rel = strdup(it->rel_path);
	if (!rel)
		return -ENOMEM;
	if (s->n_items == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		struct job_item *ni = realloc(s->items, nc * sizeof(*ni));
		if (!ni)
			return -ENOMEM;
		s->items = ni;
		s->cap = nc;
	}
	if (!f) {
		struct sfolder *nf = realloc(s->folders, (s->n_folders + 1) * sizeof(*nf));
		if (!nf)
			return -ENOMEM;
		s->folders = nf;
		f = &nf[s->n_folders];
		*f = (struct sfolder){ .category = it->category, .entries = 2 };
		r = fatname_set_new(&f->names);
		if (r < 0)
			return r;
		s->n_folders++;
		r = fatname_set_add(s->root_names, cname);
		if (r < 0)
			return r;
		s->root_entries += fatname_entries(cname);
		f->name = TAKE_PTR(cname);
	}
	r = fatname_set_add(f->names, fname);
	if (r < 0)
		return r;
	f->entries += fe;
	s->used += delta;

	struct job_item *ji = &s->items[s->n_items];
	*ji = (struct job_item){
		.position = (int)s->n_items,
		.content_item_id = it->id,
		.size = it->size,
		.dest_path = TAKE_PTR(dest),
		.rel_path = TAKE_PTR(rel),
		.mtime = it->mtime,
	};
	memcpy(ji->sha256, it->sha256, sizeof(ji->sha256));
	ji->sha256[64] = 0;
	memcpy(ji->xxh128, it->xxh128, sizeof(ji->xxh128));
	ji->xxh128[32] = 0;
	s->n_items++;
	return 1;
}

/* Why a file of 4 GiB or more is skipped (the log row says "skipped NAME (N bytes): …"). */
#define SKIP_REASON "FAT32 holds files of at most 4 GiB - 1 byte (4294967295 bytes)"

static int cmp_rel(const void *a, const void *b, void *lib)
{
	const struct content_item *L = lib;
	const struct content_item *x = &L[*(const size_t *)a], *y = &L[*(const size_t *)b];
	int c = strcmp(x->rel_path, y->rel_path);
	if (c)
		return c;
	return x->id < y->id ? -1 : x->id > y->id;
}

int select_content(const struct job_spec *job, uint64_t usable_size, select_skip_fn skip, void *userdata,
		   struct select_result *ret, char **ret_error)
{
	struct sel s = { 0 };
	size_t n_cat = 0, n_candidates = 0, n_skipped = 0, n_tried = 0;
	size_t **cand = NULL, *n_cand = NULL, *next = NULL;
	bool *skipped = NULL;
	int r;

	if (ret_error)
		*ret_error = NULL;
	r = fat_layout_compute(usable_size, &s.L);
	if (r < 0)
		return error_set(ret_error, r, "a stick of %llu bytes is too small for FAT32",
				 (unsigned long long)usable_size);
	s.root_entries = 1; /* volume label */
	s.used = fat_dir_clusters(&s.L, s.root_entries);
	r = fatname_set_new(&s.root_names);
	if (r < 0)
		goto out;
	s.taken = calloc(job->n_library + 1, sizeof(bool));
	skipped = calloc(job->n_library + 1, sizeof(bool));
	if (!s.taken || !skipped) {
		r = -ENOMEM;
		goto out;
	}

	/* Explicit items, in the order's order. */
	for (size_t k = 0; k < job->n_item_ids; k++) {
		size_t i;
		for (i = 0; i < job->n_library; i++)
			if (job->library[i].id == job->item_ids[k])
				break;
		if (i == job->n_library) {
			r = error_set(ret_error, -ENOENT, "content item %lld is unknown or inactive",
				      (long long)job->item_ids[k]);
			goto out;
		}
		if (s.taken[i] || skipped[i])
			continue; /* named twice */
		if (job->library[i].size > FAT_MAX_FILE_SIZE) {
			skipped[i] = true;
			n_skipped++;
			if (skip)
				skip(userdata, &job->library[i], SKIP_REASON);
			continue;
		}
		r = try_add(&s, &job->library[i]);
		n_tried++;
		if (r < 0)
			goto out;
		if (r == 0) {
			r = error_set(ret_error, -ENOSPC,
				      "the explicit items do not fit: item %lld (%s, %llu bytes) leaves no room",
				      (long long)job->library[i].id, job->library[i].rel_path,
				      (unsigned long long)job->library[i].size);
			goto out;
		}
		s.taken[i] = true;
	}

	/* Categories: candidates of each, sorted by rel_path; duplicates of a category ignored. */
	for (; job->categories && job->categories[n_cat]; n_cat++)
		;
	cand = calloc(n_cat + 1, sizeof(*cand));
	n_cand = calloc(n_cat + 1, sizeof(*n_cand));
	next = calloc(n_cat + 1, sizeof(*next));
	if (!cand || !n_cand || !next) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t c = 0; c < n_cat; c++) {
		bool dup = false;
		for (size_t d = 0; d < c; d++)
			dup = dup || strcmp(job->categories[d], job->categories[c]) == 0;
		if (dup)
			continue;
		cand[c] = calloc(job->n_library + 1, sizeof(size_t));
		if (!cand[c]) {
			r = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < job->n_library; i++)
			if (strcmp(job->library[i].category, job->categories[c]) == 0)
				cand[c][n_cand[c]++] = i;
		qsort_r(cand[c], n_cand[c], sizeof(size_t), cmp_rel, job->library);
		n_candidates += n_cand[c];
	}

	/* Round-robin: each turn, each category adds its next candidate that fits. */
	for (bool progress = true; progress;) {
		progress = false;
		for (size_t c = 0; c < n_cat; c++) {
			while (next[c] < n_cand[c]) {
				size_t i = cand[c][next[c]++];
				if (s.taken[i] || skipped[i])
					continue;
				if (job->library[i].size > FAT_MAX_FILE_SIZE) {
					skipped[i] = true;
					n_skipped++;
					if (skip)
						skip(userdata, &job->library[i], SKIP_REASON);
					continue;
				}
				r = try_add(&s, &job->library[i]);
				n_tried++;
				if (r < 0)
					goto out;
				if (r == 1) {
					s.taken[i] = true;
					progress = true;
					break;
				}
			}
			if (next[c] < n_cand[c])
				progress = true;
		}
	}

	if (s.n_items == 0) {
		if (job->n_item_ids == 0 && n_candidates == 0)
			r = error_set(ret_error, -ENODATA, "the order names no content that exists in the library");
		else if (n_tried == 0)
			r = error_set(ret_error, -ENOSPC,
				      "every file of the order is 4 GiB or more (%zu skipped): " SKIP_REASON,
				      n_skipped);
		else
			r = error_set(ret_error, -ENOSPC, "no file of the order fits this stick (%llu bytes usable)",
				      (unsigned long long)usable_size);
		goto out;
	}
	*ret = (struct select_result){
		.items = TAKE_PTR(s.items),
		.n_items = s.n_items,
		.used_clusters = s.used,
		.free_clusters = s.L.n_clusters - s.used,
	};
	s.n_items = 0;
	r = 0;
out:
	for (size_t c = 0; cand && c < n_cat; c++)
		free(cand[c]);
	free(cand);
	free(n_cand);
	free(next);
	free(skipped);
	if (r == -ENOMEM && ret_error && !*ret_error)
		*ret_error = strdup("out of memory");
	sel_done(&s);
	return r;
}
