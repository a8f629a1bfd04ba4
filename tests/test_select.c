/* Tests of stages/select.c and stages/stage_select.c: exact order (explicit first, then
 * categories round-robin by rel_path), error codes, name mapping in dest_path, exact filling
 * to the last cluster, a property test over random libraries (the choice always fits — the
 * composer's own plan agrees cluster for cluster — explicit items come first, determinism; a
 * sample is composed and checked with fsck.fat and the independent reader), and the stage. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fat_testlib.h"
#include "helpers/testutil.h"
#include "fatfs/fat32.h"
#include "fatfs/fatname.h"
#include "stages/select.h"
#include "stages/stage_select.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

struct lib {
	struct content_item *it;
	size_t n;
};

static void lib_add(struct lib *l, int64_t id, const char *cat, const char *rel, uint64_t size)
{
	l->it = realloc(l->it, (l->n + 1) * sizeof(*l->it));
	cr_assert(l->it);
	struct content_item *c = &l->it[l->n++];
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->category = strdup(cat);
	c->title = strdup(rel);
	c->rel_path = strdup(rel);
	c->size = size;
	c->mtime = 1700000000 + id;
	snprintf(c->sha256, sizeof(c->sha256), "%064lld", (long long)id);
}

static void lib_free(struct lib *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->it[i].category);
		free(l->it[i].title);
		free(l->it[i].rel_path);
	}
	free(l->it);
	memset(l, 0, sizeof(*l));
}

static int n_skips;
static void count_skip(void *ud, const struct content_item *it, const char *reason)
{
	(void)ud;
	(void)it;
	(void)reason;
	n_skips++;
}

Test(select, explicit_first_then_round_robin)
{
	struct lib l = { 0 };
	char *cats[] = { "Salsa", "Reggaeton", NULL };
	int64_t ids[] = { 9 };
	struct select_result r;

	lib_add(&l, 1, "Salsa", "Salsa/c.mp3", 1000);
	lib_add(&l, 2, "Salsa", "Salsa/a.mp3", 1000);
	lib_add(&l, 3, "Salsa", "Salsa/B.mp3", 1000); /* 'B' < 'a' bytewise */
	lib_add(&l, 4, "Reggaeton", "Reggaeton/z.mp3", 1000);
	lib_add(&l, 5, "Reggaeton", "Reggaeton/y.mp3", 1000);
	lib_add(&l, 9, "Rock", "Rock/Explicit.mp3", 5000);
	struct job_spec job = {
		.categories = cats, .item_ids = ids, .n_item_ids = 1, .library = l.it, .n_library = l.n
	};

	cr_assert_eq(select_content(&job, 40 * MiB, NULL, NULL, &r, NULL), 0);
	const char *want[] = { "Rock/Explicit.mp3", "Salsa/B.mp3",     "Reggaeton/y.mp3",
			       "Salsa/a.mp3",	    "Reggaeton/z.mp3", "Salsa/c.mp3" };
	const int64_t want_id[] = { 9, 3, 5, 2, 4, 1 };
	cr_assert_eq(r.n_items, 6);
	for (size_t i = 0; i < 6; i++) {
		cr_assert_str_eq(r.items[i].dest_path, want[i], "item %zu: %s", i, r.items[i].dest_path);
		cr_assert_eq(r.items[i].content_item_id, want_id[i]);
		cr_assert_eq(r.items[i].position, (int)i);
		cr_assert_str_eq(r.items[i].rel_path, want[i]);
	}
	cr_assert_eq(r.items[0].size, 5000);
	cr_assert_eq(r.items[0].mtime, 1700000009);
	cr_assert_str_eq(r.items[0].sha256, "0000000000000000000000000000000000000000000000000000000000000009");
	/* 512-byte clusters: root 1 (label + 3 folders x 2 entries) + 3 folders + 10 + 5 x 2 */
	cr_assert_eq(r.used_clusters, 1 + 3 + 10 + 5 * 2);
	job_items_free(r.items, r.n_items);
	lib_free(&l);
}

Test(select, errors)
{
	struct lib l = { 0 };
	char *cats[] = { "A", NULL };
	char *none[] = { "Nope", NULL };
	int64_t ids[] = { 1, 77 };
	struct select_result r;
	char *err = NULL;

	lib_add(&l, 1, "A", "A/one", 10);
	lib_add(&l, 2, "A", "A/huge", UINT64_C(4) << 30);
	lib_add(&l, 3, "A", "A/big", 50 * MiB);
	struct job_spec job = {
		.categories = cats, .item_ids = ids, .n_item_ids = 2, .library = l.it, .n_library = l.n
	};

	cr_assert_eq(select_content(&job, 40 * MiB, NULL, NULL, &r, &err), -ENOENT);
	cr_assert_str_eq(err, "content item 77 is unknown or inactive");
	free(err);

	ids[1] = 3; /* explicit 50 MiB on a 40 MiB stick */
	cr_assert_eq(select_content(&job, 40 * MiB, NULL, NULL, &r, &err), -ENOSPC);
	cr_assert(strstr(err, "item 3"), "%s", err);
	free(err);

	/* the 4 GiB file is skipped once (named explicitly and in its category), the rest fits */
	ids[1] = 2;
	n_skips = 0;
	cr_assert_eq(select_content(&job, 64 * GiB, count_skip, NULL, &r, &err), 0);
	cr_assert_eq(n_skips, 1);
	cr_assert_eq(r.n_items, 2);
	cr_assert_eq(r.items[0].content_item_id, 1);
	cr_assert_eq(r.items[1].content_item_id, 3);
	job_items_free(r.items, r.n_items);

	/* 4 GiB - 1 byte is fine */
	l.it[1].size = (UINT64_C(4) << 30) - 1;
	n_skips = 0;
	cr_assert_eq(select_content(&job, 64 * GiB, count_skip, NULL, &r, &err), 0);
	cr_assert_eq(n_skips, 0);
	cr_assert_eq(r.n_items, 3);
	job_items_free(r.items, r.n_items);

	/* nothing ordered exists */
	struct job_spec empty = { .categories = none, .library = l.it, .n_library = l.n };
	cr_assert_eq(select_content(&empty, 40 * MiB, NULL, NULL, &r, &err), -ENODATA);
	free(err);
	/* candidates, none fits */
	struct job_spec nofit = { .categories = cats, .library = l.it + 2, .n_library = 1 };
	cr_assert_eq(select_content(&nofit, 40 * MiB, NULL, NULL, &r, &err), -ENOSPC);
	cr_assert_str_eq(err, "no file of the order fits this stick (41943040 bytes usable)");
	free(err);
	/* every candidate is 4 GiB or more: said so, not "no file fits the stick" */
	l.it[1].size = UINT64_C(5) << 30;
	struct job_spec huge = { .categories = cats, .library = l.it + 1, .n_library = 1 };
	n_skips = 0;
	cr_assert_eq(select_content(&huge, 64 * GiB, count_skip, NULL, &r, &err), -ENOSPC);
	cr_assert_str_eq(err, "every file of the order is 4 GiB or more (1 skipped): FAT32 holds files of at most "
			      "4 GiB - 1 byte (4294967295 bytes)");
	cr_assert_eq(n_skips, 1);
	free(err);
	/* stick too small for FAT32 */
	cr_assert_eq(select_content(&job, 30 * MiB, NULL, NULL, &r, &err), -ERANGE);
	free(err);
	lib_free(&l);
}

Test(select, names_are_mapped_and_unique)
{
	struct lib l = { 0 };
	char *cats[] = { "rock", "Rock.", "Bad:Cat", NULL };
	struct select_result r;

	lib_add(&l, 1, "rock", "rock/Song.mp3", 1);
	lib_add(&l, 2, "rock", "rock/sub/song.MP3", 1);
	lib_add(&l, 3, "rock", "rock/What?.mp3", 1);
	lib_add(&l, 4, "rock", "rock/trailing dot. ", 1);
	lib_add(&l, 5, "Rock.", "Rock./x.mp3", 1);
	lib_add(&l, 6, "Bad:Cat", "Bad:Cat/\001ctl.mp3", 0);
	struct job_spec job = { .categories = cats, .library = l.it, .n_library = l.n };
	cr_assert_eq(select_content(&job, 40 * MiB, NULL, NULL, &r, NULL), 0);
	const char *want[] = { "rock/Song.mp3",	 "Rock (2)/x.mp3",    "Bad_Cat/_ctl.mp3",
			       "rock/What_.mp3", "rock/song (2).MP3", "rock/trailing dot" };
	cr_assert_eq(r.n_items, 6);
	for (size_t i = 0; i < 6; i++)
		cr_assert_str_eq(r.items[i].dest_path, want[i], "item %zu: %s", i, r.items[i].dest_path);
	job_items_free(r.items, r.n_items);
	lib_free(&l);
}

Test(select, fills_to_the_last_cluster_exactly)
{
	struct lib l = { 0 };
	char *cats[] = { "C", NULL };
	struct fat_layout L;
	struct select_result r;

	cr_assert_eq(fat_layout_compute(40 * MiB, &L), 0);
	uint64_t cs = L.cluster_size, n = L.n_clusters;
	/* root 1 + folder C 1 (., .., 3 x 2 entries = 8 entries) */
	lib_add(&l, 1, "C", "C/a", (n - 2 - 1) * cs - 5);
	lib_add(&l, 2, "C", "C/b", 2 * cs); /* one cluster too many: dropped */
	lib_add(&l, 3, "C", "C/c", cs);	    /* exactly the last cluster */
	lib_add(&l, 4, "C", "C/d", 1);	    /* nothing left */
	lib_add(&l, 5, "C", "C/e", 0);	    /* empty: entries only, and the folder cluster has room */
	struct job_spec job = { .categories = cats, .library = l.it, .n_library = l.n };
	cr_assert_eq(select_content(&job, 40 * MiB, NULL, NULL, &r, NULL), 0);
	cr_assert_eq(r.n_items, 3);
	cr_assert_eq(r.items[0].content_item_id, 1);
	cr_assert_eq(r.items[1].content_item_id, 3);
	cr_assert_eq(r.items[2].content_item_id, 5);
	cr_assert_eq(r.free_clusters, 0);
	cr_assert_eq(r.used_clusters, n);

	struct blksrc *s = NULL;
	struct fat_stats st;
	struct fat_opts o = { .usable_size = 40 * MiB, .content_root = "/nonexistent" };
	cr_assert_eq(fat32_compose(&o, r.items, r.n_items, &s, NULL), 0);
	fat32_stats(s, &st);
	cr_assert_eq(st.free_clusters, 0);
	blksrc_free(s);
	job_items_free(r.items, r.n_items);
	lib_free(&l);
}

Test(select, tricky_names_compose_cleanly, .timeout = 300)
{
	char *dir = tu_tmpdir("fat-tricky"), *root = tu_path(dir, "c"), *img = tu_path(dir, "s.img"), *part = NULL;
	char *cats[] = { "Rock", "rock", "Bad:Cat.", NULL };
	const char *rels[][2] = { { "Rock", "Rock/Song.mp3" },
				  { "Rock", "Rock/a/song.MP3" },
				  { "Rock", "Rock/b/SONG.mp3" },
				  { "Rock", "Rock/What? Why*.mp3" },
				  { "Rock", "Rock/dots... " },
				  { "rock", "rock/x.mp3" },
				  { "Bad:Cat.", "Bad:Cat./<in>|out\\.txt" },
				  { "Bad:Cat.", "Bad:Cat./ .." } };
	const char *want[] = { "Rock/Song.mp3",		"rock (2)/x.mp3",    "Bad_Cat/_",	  "Rock/What_ Why_.mp3",
			       "Bad_Cat/_in__out_.txt", "Rock/song (2).MP3", "Rock/SONG (3).mp3", "Rock/dots" };
	struct lib l = { 0 };
	struct select_result r;
	char *out = NULL;

	cr_assert(mkdir(root, 0755) == 0);
	for (size_t i = 0; i < 8; i++) {
		struct job_item tmp;
		ft_make_file(root, rels[i][1], 1000 + i, i, 1700000000, NULL, &tmp);
		lib_add(&l, (int64_t)i + 1, rels[i][0], rels[i][1], tmp.size);
		l.it[i].mtime = tmp.mtime;
		memcpy(l.it[i].sha256, tmp.sha256, 65);
		memcpy(l.it[i].xxh128, tmp.xxh128, 33);
		free(tmp.rel_path);
	}
	struct job_spec job = { .categories = cats, .library = l.it, .n_library = l.n };
	cr_assert_eq(select_content(&job, 40 * MiB, NULL, NULL, &r, NULL), 0);
	cr_assert_eq(r.n_items, 8);
	for (size_t i = 0; i < 8; i++)
		cr_assert_str_eq(r.items[i].dest_path, want[i], "item %zu: %s", i, r.items[i].dest_path);

	struct fat_opts o = { .usable_size = 40 * MiB, .content_root = root };
	cr_assert_eq(ft_compose_image(&o, r.items, r.n_items, img, 1 * MiB, NULL), 0);
	cr_assert(asprintf(&part, "%s.part", img) > 0);
	cr_assert(ft_fsck_ok(part, &out), "fsck.fat:\n%s", out);
	free(out);
	struct ft_fs fs;
	ft_fs_open(&fs, part);
	cr_assert_null(fs.error, "%s", fs.error);
	for (size_t i = 0; i < 8; i++) {
		const struct ft_entry *e = ft_fs_find(&fs, want[i]);
		cr_assert(e, "%s not in the image", want[i]);
		cr_assert_eq(e->size, r.items[i].size);
	}
	ft_fs_close(&fs);
	/* mtools sees the same ASCII tree */
	char *cmd = NULL;
	cr_assert(asprintf(&cmd, "MTOOLS_SKIP_CHECK=1 mdir -/ -b -i '%s@@1M' ::/ | grep -c -v '/$'", img) > 0);
	cr_assert_eq(ft_run(cmd, &out), 0);
	cr_assert_str_eq(out, "8\n");
	free(out), free(cmd), free(part);
	job_items_free(r.items, r.n_items);
	lib_free(&l);
	tu_rmrf(dir);
	free(dir), free(root), free(img);
}

/* ---- property test ---- */

static uint64_t rng;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static const char *const stems[] = { "Song",
				     "song",
				     "Track 01",
				     "Ñandú",
				     "日本語",
				     "🎵 emoji",
				     "a:b?c",
				     "trailing.",
				     "x",
				     "README",
				     "Café",
				     "CAFÉ",
				     "A very long file name that certainly goes past sixty four characters in length" };
static const char *const exts[] = { ".mp3", ".MP3", ".flac", "", ".jpeg", ". " };
static const char *const catnames[] = { "Salsa", "salsa", "Reggaeton", "Música", "Rock:Pop", "Jazz " };

static void random_library(struct lib *l, int *ret_ncat)
{
	size_t n = 1 + rnd() % 60;
	int ncat = 1 + (int)(rnd() % 6);
	for (size_t i = 0; i < n; i++) {
		char rel[600];
		const char *cat = catnames[rnd() % (uint64_t)ncat];
		snprintf(rel, sizeof(rel), "%s/%s%s%s%u%s", cat, rnd() % 4 == 0 ? "sub/" : "",
			 stems[rnd() % (sizeof(stems) / sizeof(stems[0]))], rnd() % 3 ? "" : " ", (unsigned)(rnd() % 5),
			 exts[rnd() % (sizeof(exts) / sizeof(exts[0]))]);
		for (size_t j = 0; j < l->n; j++)
			if (strcmp(l->it[j].rel_path, rel) == 0) { /* keep rel_path unique, the base name twin */
				char *slash = strchr(rel, '/');
				char tmp[512];
				snprintf(tmp, sizeof(tmp), "%.*s/d%zu%s", (int)(slash - rel), rel, i, slash);
				snprintf(rel, sizeof(rel), "%s", tmp);
				break;
			}
		uint64_t size;
		switch (rnd() % 6) {
		case 0:
			size = 0;
			break;
		case 1:
			size = rnd() % 2048;
			break;
		case 2:
			size = rnd() % (64 * 1024);
			break;
		case 3:
			size = rnd() % (4 * MiB);
			break;
		case 4:
			size = rnd() % (16 * MiB);
			break;
		default:
			size = rnd() % 100 == 0 ? (UINT64_C(4) << 30) + rnd() % 1000 : rnd() % (1 * MiB);
		}
		lib_add(l, (int64_t)(i + 1), cat, rel, size);
	}
	*ret_ncat = ncat;
}

static bool same_result(const struct select_result *a, const struct select_result *b)
{
	if (a->n_items != b->n_items || a->used_clusters != b->used_clusters)
		return false;
	for (size_t i = 0; i < a->n_items; i++)
		if (a->items[i].content_item_id != b->items[i].content_item_id ||
		    strcmp(a->items[i].dest_path, b->items[i].dest_path) != 0)
			return false;
	return true;
}

Test(select, property_random_libraries, .timeout = 600)
{
	int composed = 0;

	for (int iter = 0; iter < 300; iter++) {
		struct lib l = { 0 };
		int ncat;
		rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(iter + 1) * 0xBF58476D1CE4E5B9ULL;
		random_library(&l, &ncat);

		char *cats[8];
		int k = 0;
		for (int c = 0; c < ncat; c++)
			if (rnd() % 4)
				cats[k++] = (char *)catnames[c];
		cats[k] = NULL;
		int64_t ids[4];
		size_t nids = rnd() % 3;
		for (size_t i = 0; i < nids; i++)
			ids[i] = 1 + (int64_t)(rnd() % l.n);
		uint64_t usable = 36 * MiB + rnd() % (60 * MiB);
		if (iter % 5 == 4) /* big sticks: only the plan is compared (4-32 KiB clusters) */
			usable = 300 * MiB + rnd() % (64 * GiB);

		struct job_spec job = {
			.categories = cats, .item_ids = ids, .n_item_ids = nids, .library = l.it, .n_library = l.n
		};
		struct select_result r, r2;
		char *err = NULL;
		int rc = select_content(&job, usable, NULL, NULL, &r, &err);
		int rc2 = select_content(&job, usable, NULL, NULL, &r2, NULL);
		cr_assert_eq(rc, rc2, "iter %d: not deterministic", iter);
		if (rc < 0) {
			cr_assert(rc == -ENOSPC || rc == -ENODATA, "iter %d: %d %s", iter, rc, err);
			free(err);
			lib_free(&l);
			continue;
		}
		cr_assert(same_result(&r, &r2), "iter %d: not deterministic", iter);
		job_items_free(r2.items, r2.n_items);

		/* explicit first: the distinct explicit ids (not 4 GiB) in order, then the rest */
		size_t pos = 0;
		for (size_t i = 0; i < nids; i++) {
			bool dup = false;
			for (size_t j = 0; j < i; j++)
				dup = dup || ids[j] == ids[i];
			if (dup || l.it[ids[i] - 1].size > FAT_MAX_FILE_SIZE)
				continue;
			cr_assert_eq(r.items[pos].content_item_id, ids[i], "iter %d: explicit item %zu not first", iter,
				     i);
			pos++;
		}
		for (size_t i = 0; i < r.n_items; i++) {
			cr_assert_leq(r.items[i].size, FAT_MAX_FILE_SIZE);
			for (size_t j = i + 1; j < r.n_items; j++)
				cr_assert_neq(r.items[i].content_item_id, r.items[j].content_item_id);
		}

		/* it fits, and the composer's plan agrees exactly */
		struct fat_layout L;
		cr_assert_eq(fat_layout_compute(usable, &L), 0);
		cr_assert_leq(r.used_clusters, L.n_clusters);
		struct blksrc *s = NULL;
		struct fat_stats st;
		struct fat_opts o = { .usable_size = usable, .content_root = "/nonexistent" };
		rc = fat32_compose(&o, r.items, r.n_items, &s, &err);
		cr_assert_eq(rc, 0, "iter %d: composer refuses the selection: %s", iter, err);
		fat32_stats(s, &st);
		cr_assert_eq(st.used_clusters, r.used_clusters, "iter %d: composer %u vs selection %llu", iter,
			     st.used_clusters, (unsigned long long)r.used_clusters);
		blksrc_free(s);

		/* a sample is written out and checked by fsck.fat and the reader */
		if (iter % 30 == 0 && usable < GiB) {
			char *dir = tu_tmpdir("fat-prop"), *root = tu_path(dir, "c"), *img = tu_path(dir, "s.img");
			char *part = NULL, *out = NULL;
			struct ft_fs fs;
			cr_assert(mkdir(root, 0755) == 0);
			for (size_t i = 0; i < r.n_items; i++) {
				struct job_item tmp;
				char *dest = r.items[i].dest_path;
				ft_make_file(root, r.items[i].rel_path, r.items[i].size, (uint64_t)i, r.items[i].mtime,
					     dest, &tmp);
				memcpy(r.items[i].sha256, tmp.sha256, sizeof(tmp.sha256));
				memcpy(r.items[i].xxh128, tmp.xxh128, sizeof(tmp.xxh128));
				free(tmp.rel_path);
				free(tmp.dest_path);
			}
			o.content_root = root;
			cr_assert_eq(ft_compose_image(&o, r.items, r.n_items, img, 1 * MiB, NULL), 0);
			cr_assert(asprintf(&part, "%s.part", img) > 0);
			cr_assert(ft_fsck_ok(part, &out), "iter %d: fsck.fat:\n%s", iter, out);
			ft_fs_open(&fs, part);
			cr_assert_null(fs.error, "iter %d: %s", iter, fs.error);
			size_t nfiles = 0;
			for (size_t j = 0; j < fs.n; j++)
				nfiles += !fs.e[j].is_dir;
			cr_assert_eq(nfiles, r.n_items);
			for (size_t i = 0; i < r.n_items; i++) {
				const struct ft_entry *e = ft_fs_find(&fs, r.items[i].dest_path);
				cr_assert(e, "iter %d: %s not in the image", iter, r.items[i].dest_path);
				cr_assert_eq(e->size, r.items[i].size);
			}
			ft_fs_close(&fs);
			free(out), free(part);
			tu_rmrf(dir);
			free(dir), free(root), free(img);
			composed++;
		}
		job_items_free(r.items, r.n_items);
		lib_free(&l);
	}
	cr_assert_geq(composed, 5, "only %d samples were composed", composed);
}

/* ---- the stage ---- */

struct logrow {
	enum log_level lvl;
	char *details;
	char *msg;
};
static struct logrow rows[64];
static int n_rows;

static void cap_log(void *ud, enum log_level lvl, enum stage_id st, const char *category, enum uf_code code,
		    const char *details, const char *message)
{
	(void)ud;
	(void)category;
	(void)code;
	cr_assert_eq(st, STAGE_SELECTION);
	cr_assert_lt(n_rows, 64);
	rows[n_rows].lvl = lvl;
	rows[n_rows].details = details ? strdup(details) : NULL;
	rows[n_rows].msg = strdup(message);
	n_rows++;
}

static void rows_clear(void)
{
	for (int i = 0; i < n_rows; i++) {
		free(rows[i].details);
		free(rows[i].msg);
	}
	n_rows = 0;
}

struct stage_fixture {
	char *dir, *root;
	struct lib l;
	struct job_spec job;
	struct stage_ctx ctx;
	atomic_bool cancel;
	char *cats[2];
};

static void fixture_init(struct stage_fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->dir = tu_tmpdir("fat-stage");
	f->root = tu_path(f->dir, "c");
	cr_assert(mkdir(f->root, 0755) == 0);
	const char *rels[] = { "Salsa/one.mp3", "Salsa/two.mp3", "Salsa/three.mp3" };
	for (int i = 0; i < 3; i++) {
		struct job_item tmp;
		ft_make_file(f->root, rels[i], 5000 + (uint64_t)i * 10000, (uint64_t)i, 1700000000 + i, NULL, &tmp);
		lib_add(&f->l, i + 1, "Salsa", rels[i], tmp.size);
		f->l.it[i].mtime = tmp.mtime;
		memcpy(f->l.it[i].sha256, tmp.sha256, 65);
		memcpy(f->l.it[i].xxh128, tmp.xxh128, 33);
		free(tmp.rel_path);
	}
	lib_add(&f->l, 4, "Salsa", "Salsa/huge.mkv", UINT64_C(5) << 30); /* not on disk: skipped */
	f->cats[0] = "Salsa";
	f->cats[1] = NULL;
	f->job = (struct job_spec){
		.content_root = f->root, .categories = f->cats, .library = f->l.it, .n_library = f->l.n
	};
	f->ctx = (struct stage_ctx){ .job = &f->job, .cancel = &f->cancel, .usable_size = 64 * MiB };
	f->ctx.sink.log = cap_log;
	rows_clear();
}

static void fixture_done(struct stage_fixture *f)
{
	blksrc_free(f->ctx.src);
	free(f->ctx.message);
	job_items_free(f->job.items, f->job.n_items);
	lib_free(&f->l);
	tu_rmrf(f->dir);
	free(f->dir);
	free(f->root);
	rows_clear();
}

static int drain(struct blksrc *s)
{
	uint8_t *buf = malloc(1 * MiB);
	uint64_t off;
	ssize_t n;
	while ((n = blksrc_read(s, buf, 1 * MiB, &off)) > 0)
		;
	free(buf);
	return (int)n;
}

Test(stage, selects_composes_and_logs)
{
	struct stage_fixture f;
	fixture_init(&f);
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_NONE, "%s", f.ctx.message);
	cr_assert_eq(f.job.n_items, 3);
	cr_assert_str_eq(f.job.items[0].dest_path, "Salsa/one.mp3");
	cr_assert_str_eq(f.job.items[1].dest_path, "Salsa/three.mp3");
	cr_assert_str_eq(f.job.items[2].dest_path, "Salsa/two.mp3");
	cr_assert(f.ctx.src);
	cr_assert_eq(f.ctx.bytes_total, f.ctx.src->mapped);
	cr_assert_eq(f.ctx.src->size, 64 * MiB);
	cr_assert_eq(n_rows, 2);
	cr_assert_eq(rows[0].lvl, LOG_LVL_WARNING);
	cr_assert_str_eq(rows[0].details,
			 "{\"content_item_id\": 4, \"rel_path\": \"Salsa/huge.mkv\", \"size_bytes\": 5368709120}");
	cr_assert_eq(rows[1].lvl, LOG_LVL_INFO);
	cr_assert_eq(drain(f.ctx.src), 0);
	fixture_done(&f);
}

Test(stage, reused_items_are_kept)
{
	struct stage_fixture f;
	fixture_init(&f);
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_NONE);
	struct job_item *kept = f.job.items;
	blksrc_free(f.ctx.src);
	f.ctx.src = NULL;
	f.job.items_reused = true;
	f.job.n_items = 2; /* a prior attempt chose two */
	free(kept[2].dest_path), free(kept[2].rel_path);
	rows_clear();
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_NONE);
	cr_assert_eq(f.job.items, kept);
	cr_assert_eq(f.job.n_items, 2);
	cr_assert_eq(n_rows, 1); /* no skip row: no selection ran */
	fixture_done(&f);
}

/* A retry reuses the first attempt's choice; on a smaller stick that choice may not fit: the
 * stick is too small for the job (bad-stick class: requeued, no attempt spent), not the order's
 * content too large (which would fail the order for good). */
Test(stage, reused_choice_on_a_smaller_stick_is_device_too_small)
{
	struct stage_fixture f;
	fixture_init(&f);
	char *big = tu_path(f.root, "Salsa/big.bin");
	int fd = open(big, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, 48 * MiB), 0);
	close(fd);
	struct stat st;
	cr_assert_eq(stat(big, &st), 0);
	struct job_item *it = calloc(1, sizeof(*it));
	cr_assert(it);
	*it = (struct job_item){ .content_item_id = 9,
				 .size = 48 * MiB,
				 .mtime = (int64_t)st.st_mtime,
				 .dest_path = strdup("Salsa/big.bin"),
				 .rel_path = strdup("Salsa/big.bin") };
	ft_hash_file(big, it->sha256, it->xxh128);
	f.job.items = it;
	f.job.n_items = 1;
	f.job.items_reused = true; /* chosen on a 64 MiB stick */
	f.ctx.usable_size = 40 * MiB;
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_DEVICE_TOO_SMALL);
	cr_assert(strstr(f.ctx.message,
			 "the content chosen for this job on an earlier attempt does not fit this stick"),
		  "%s", f.ctx.message);
	cr_assert_eq(uf_code_class(UFC_DEVICE_TOO_SMALL), UFC_CLASS_BAD_STICK);
	/* on a stick as large as the first one it is written as chosen */
	free(f.ctx.message);
	f.ctx.message = NULL;
	f.ctx.usable_size = 64 * MiB;
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_NONE, "%s", f.ctx.message ?: "");
	cr_assert_eq(f.job.n_items, 1);
	free(big);
	fixture_done(&f);
}

Test(stage, missing_changed_and_bad_hash)
{
	struct stage_fixture f;
	fixture_init(&f);
	char *p = tu_path(f.root, "Salsa/two.mp3");
	cr_assert(unlink(p) == 0);
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_CONTENT_MISSING);
	cr_assert_str_eq(f.ctx.message, "Salsa/two.mp3: vanished from the content root");
	fixture_done(&f);
	free(p);

	fixture_init(&f);
	p = tu_path(f.root, "Salsa/one.mp3");
	struct timespec ts[2] = { { 1800000000, 0 }, { 1800000000, 0 } };
	cr_assert(utimensat(AT_FDCWD, p, ts, 0) == 0);
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_CONTENT_CHANGED);
	cr_assert(strstr(f.ctx.message, "Salsa/one.mp3: mtime changed"), "%s", f.ctx.message);
	fixture_done(&f);
	free(p);

	/* same size and mtime, other bytes: the read path fails with -EBADMSG → CONTENT_CHANGED */
	fixture_init(&f);
	f.l.it[2].xxh128[5] ^= 1;
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_NONE);
	int r = drain(f.ctx.src);
	cr_assert_eq(r, -EBADMSG);
	cr_assert_eq(stage_selection_map_read_error(r), UFC_CONTENT_CHANGED);
	cr_assert(strstr(blksrc_error(f.ctx.src), "Salsa/three.mp3: content changed since the scan: xxh128 mismatch"),
		  "%s", blksrc_error(f.ctx.src));
	cr_assert_eq(stage_selection_map_read_error(-ENOENT), UFC_CONTENT_MISSING);
	cr_assert_eq(stage_selection_map_read_error(-EIO), UFC_NONE);
	fixture_done(&f);
}

Test(stage, order_errors)
{
	struct stage_fixture f;
	int64_t ids[] = { 42 };

	fixture_init(&f);
	f.job.item_ids = ids;
	f.job.n_item_ids = 1;
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_ORDER_INVALID);
	cr_assert_str_eq(f.ctx.message, "content item 42 is unknown or inactive");
	cr_assert_null(f.ctx.src);
	fixture_done(&f);

	fixture_init(&f);
	f.ctx.usable_size = 20 * MiB;
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_DEVICE_TOO_SMALL);
	fixture_done(&f);

	fixture_init(&f);
	ids[0] = 2;
	f.job.item_ids = ids;
	f.job.n_item_ids = 1;
	f.l.it[1].size = 100 * MiB;
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_CONTENT_TOO_LARGE);
	fixture_done(&f);

	fixture_init(&f);
	atomic_store(&f.cancel, true);
	cr_assert_eq(stage_selection_content(&f.ctx), UFC_CANCELLED);
	fixture_done(&f);
}
