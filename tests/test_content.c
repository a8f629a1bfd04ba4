/* db/content.c: the incremental library scan (exact counts of added/updated/unchanged/gone,
 * bytes hashed), names kept exactly as on disk, candidates loading. Real MariaDB. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "db/content.h"
#include "util/filehash.h"
#include "helpers/testdb.h"
#include "helpers/testutil.h"

static struct db *db;
static char *root;

static void setup(void)
{
	db = tdb_fresh("uf_t_content");
	root = tu_tmpdir("content");
}
static void teardown(void)
{
	db = db_close(db);
	tu_rmrf(root);
	free(root);
}
TestSuite(content, .init = setup, .fini = teardown);

static void put(const char *rel, const char *data)
{
	char *p = tu_path(root, rel);
	char *slash = strrchr(p, '/');
	*slash = 0;
	mkdir(p, 0755);
	*slash = '/';
	tu_write_file(p, data, strlen(data));
	free(p);
}

static const char *xxh128sum(const char *path)
{
	static char hex[33];
	char *cmd = NULL;
	cr_assert(asprintf(&cmd, "xxh128sum '%s'", path) > 0);
	FILE *p = popen(cmd, "r");
	cr_assert(p, "%s", cmd);
	cr_assert(fscanf(p, "%32s", hex) == 1, "%s", cmd);
	cr_assert_eq(pclose(p), 0, "%s", cmd);
	free(cmd);
	return hex;
}

static struct content_scan_stats scan(void)
{
	struct content_scan_stats st;
	cr_assert_eq(content_scan(db, root, NULL, NULL, NULL, &st), 0, "%s", db_error(db));
	return st;
}

Test(content, incremental_rescan)
{
	put("Salsa/Uno.mp3", "uno");
	put("Salsa/uno.mp3", "UNO!");		       /* case-only twin: a different file */
	put("Música Clásica/Für Elise.flac", "elise"); /* UTF-8 kept exactly */
	put("日本/曲 1.mp3", "kyoku");
	put("top-level.mp3", "no category");
	struct content_scan_stats st = scan();
	cr_assert_eq(st.files, 4);
	cr_assert_eq(st.added, 4);
	cr_assert_eq(st.skipped, 1);
	cr_assert_eq(st.bytes_hashed, 3 + 4 + 5 + 5);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE rel_path = 'Música Clásica/Für Elise.flac'"
				   " AND category = 'Música Clásica' AND title = 'Für Elise' AND size_bytes = 5"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE category = '日本' AND title = '曲 1'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE category = 'Salsa'"), 2);
	/* the server's SHA2 as an independent oracle for ours */
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM content_items WHERE rel_path = 'Salsa/Uno.mp3' AND sha256 = SHA2('uno', 256)"),
		1);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM content_items WHERE rel_path = 'Salsa/uno.mp3' AND sha256 = SHA2('UNO!', 256)"),
		1);
	/* xxh128sum (Debian's xxhash) as the oracle for the XXH3-128 column */
	char *elise = tu_path(root, "Música Clásica/Für Elise.flac");
	char *q = NULL;
	cr_assert(asprintf(&q,
			   "SELECT COUNT(*) FROM content_items WHERE rel_path = 'Música Clásica/Für Elise.flac'"
			   " AND xxh128 = '%s'",
			   xxh128sum(elise)) > 0);
	cr_assert_eq(tdb_count(db, q), 1, "%s", q);
	free(q);
	free(elise);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE xxh128 IS NULL"), 0);

	st = scan();
	cr_assert_eq(st.unchanged, 4);
	cr_assert_eq(st.added + st.updated + st.deactivated, 0);
	cr_assert_eq(st.bytes_hashed, 0, "unchanged files are not re-hashed");

	/* change one (size), remove one */
	put("Salsa/Uno.mp3", "uno-longer");
	char *gone = tu_path(root, "日本/曲 1.mp3");
	cr_assert_eq(unlink(gone), 0);
	st = scan();
	cr_assert_eq(st.updated, 1);
	cr_assert_eq(st.unchanged, 2);
	cr_assert_eq(st.deactivated, 1);
	cr_assert_eq(st.bytes_hashed, 10);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE active = 0 AND category = '日本'"), 1);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM content_items WHERE rel_path = 'Salsa/Uno.mp3' AND sha256 = SHA2('uno-longer', 256)"),
		1);
	/* it comes back */
	put("日本/曲 1.mp3", "kyoku");
	struct timeval tv[2] = { { 1700000000, 0 }, { 1700000000, 0 } };
	st = scan();
	cr_assert_eq(st.updated + st.reactivated, 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE active = 1"), 4);
	/* an mtime change alone re-hashes */
	cr_assert_eq(utimes(gone, tv), 0);
	st = scan();
	cr_assert_eq(st.updated, 1);
	cr_assert_eq(st.bytes_hashed, 5);
	free(gone);

	int64_t n = -1;
	cr_assert_eq(content_category_count(db, "Salsa", &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(content_category_count(db, "salsa", &n), 0);
	cr_assert_eq(n, 0, "categories are exact, not case-folded");
}

Test(content, rows_from_before_v2_get_their_xxh128_on_the_next_scan)
{
	put("A/1.mp3", "1");
	put("A/2.mp3", "22");
	scan();
	/* as after the v2 upgrade of an appliance scanned under v1 */
	cr_assert_eq(db_exec(db, NULL, "UPDATE content_items SET xxh128 = NULL WHERE rel_path = 'A/2.mp3'", DB_END), 0);
	struct content_scan_stats st = scan();
	cr_assert_eq(st.unchanged, 1);
	cr_assert_eq(st.updated, 1);
	cr_assert_eq(st.bytes_hashed, 2, "only the row without xxh128 is read again");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE xxh128 IS NULL"), 0);
	st = scan();
	cr_assert_eq(st.unchanged, 2);
	cr_assert_eq(st.bytes_hashed, 0);
}

static char warned[1024];
static void collect_warning(void *ud, const char *msg)
{
	(void)ud;
	snprintf(warned, sizeof(warned), "%s", msg);
}

/* A name that is not UTF-8 (here Latin-1 "café") cannot be kept as the library's text: it is
 * skipped with a warning naming it, and the rest of the tree is indexed. */
Test(content, non_utf8_names_are_skipped_with_a_warning)
{
	put("Salsa/Uno.mp3", "uno");
	put("Salsa/caf\xe9.mp3", "latin-1");
	struct content_scan_stats st;
	cr_assert_eq(content_scan(db, root, NULL, collect_warning, NULL, &st), 0, "%s", db_error(db));
	cr_assert_eq(st.added, 1);
	cr_assert_eq(st.skipped, 1);
	cr_assert(strstr(warned, "/Salsa/caf\\xe9.mp3: the name is not valid UTF-8; skipped"), "%s", warned);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items"), 1);
}

Test(content, candidates_and_errors)
{
	put("A/1.mp3", "1");
	put("A/2.mp3", "22");
	put("B/3.mp3", "333");
	scan();
	struct content_item *it = NULL;
	size_t n = 0;
	char *cats[] = { (char *)"A", NULL };
	int64_t b3 = tdb_count(db, "SELECT id FROM content_items WHERE rel_path = 'B/3.mp3'");
	cr_assert_eq(content_load_candidates(db, cats, &b3, 1, &it, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(it[0].rel_path, "B/3.mp3", "explicit items first");
	cr_assert_str_eq(it[1].rel_path, "A/1.mp3");
	cr_assert_str_eq(it[2].rel_path, "A/2.mp3");
	cr_assert_eq(it[2].size, 2);
	cr_assert_eq(strlen(it[2].sha256), 64);
	cr_assert_eq(strlen(it[2].xxh128), 32);
	content_items_free(it, n);
	struct content_scan_stats st;
	char *missing = tu_path(root, "nope");
	cr_assert_eq(content_scan(db, missing, NULL, NULL, NULL, &st), -ENOENT);
	free(missing);
	char *file = tu_path(root, "A/1.mp3");
	cr_assert_eq(content_scan(db, file, NULL, NULL, NULL, &st), -ENOTDIR);
	free(file);
}

static atomic_bool stop_swapping;
struct swapper {
	char *song, *tmp, *secret;
	const char *data;
};

/* Replace song by a symlink to the secret and back, atomically (rename), until told to stop. */
static void *swap_loop(void *arg)
{
	struct swapper *w = arg;
	while (!atomic_load(&stop_swapping)) {
		unlink(w->tmp);
		if (symlink(w->secret, w->tmp) == 0)
			(void)rename(w->tmp, w->song);
		tu_write_file(w->tmp, w->data, strlen(w->data));
		(void)rename(w->tmp, w->song);
	}
	return NULL;
}

/* A file swapped for a symlink to a root-only file between the directory read and the open:
 * the scan never follows it, so the secret's hash never enters the library (the old scan
 * checked with lstat and then opened the path following symlinks). 300 scans race the swap. */
Test(content, a_file_swapped_for_a_symlink_is_never_followed, .timeout = 120)
{
	char *outside = tu_tmpdir("content-secret");
	char *secret = tu_path(outside, "shadow");
	const char *secret_text = "root:$6$not-for-sticks\n";
	tu_write_file(secret, secret_text, strlen(secret_text));
	put("A/song.mp3", "la la la la");
	struct swapper w = { .song = tu_path(root, "A/song.mp3"),
			     .tmp = tu_path(root, "A/.swap"), /* hidden: the scan skips it */
			     .secret = secret,
			     .data = "la la la la" };
	pthread_t th;
	atomic_store(&stop_swapping, false);
	cr_assert_eq(pthread_create(&th, NULL, swap_loop, &w), 0);
	char sha[FILEHASH_SHA256_HEX], xxh[FILEHASH_XXH128_HEX];
	cr_assert_eq(filehash_file(secret, sha, xxh, NULL), 0);
	char *q = NULL;
	cr_assert(asprintf(&q, "SELECT COUNT(*) FROM content_items WHERE sha256 = '%s' OR size_bytes = %zu", sha,
			   strlen(secret_text)) > 0);
	long long leaked = 0;
	for (int i = 0; i < 300 && !leaked; i++) {
		struct content_scan_stats st;
		cr_assert_eq(content_scan(db, root, NULL, NULL, NULL, &st), 0, "%s", db_error(db));
		leaked = tdb_count(db, q); /* a later scan may overwrite the row: look after each */
	}
	atomic_store(&stop_swapping, true);
	pthread_join(th, NULL);
	cr_assert_eq(leaked, 0, "the secret entered the library");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items"), 1);
	free(q), free(w.song), free(w.tmp), free(secret);
	tu_rmrf(outside);
	free(outside);
}

/* content scan of a folder beneath the root: categories stay the first folder beneath the root,
 * and only rows beneath the folder can be retired. */
Test(content, scan_of_a_folder_touches_only_its_rows)
{
	put("A/1.mp3", "1");
	put("A/2.mp3", "22");
	put("B/3.mp3", "333");
	cr_assert_eq(scan().added, 3);
	char *p = tu_path(root, "A/1.mp3");
	cr_assert_eq(unlink(p), 0);
	free(p);
	p = tu_path(root, "B/3.mp3");
	cr_assert_eq(unlink(p), 0);
	free(p);
	put("A/sub/4.mp3", "4444");
	struct content_scan_stats st;
	cr_assert_eq(content_scan(db, root, "A", NULL, NULL, &st), 0, "%s", db_error(db));
	cr_assert_eq(st.files, 2);
	cr_assert_eq(st.added, 1);
	cr_assert_eq(st.deactivated, 1, "only A/1.mp3 is gone from A");
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM content_items WHERE active AND rel_path IN ('A/2.mp3', 'B/3.mp3', "
			       "'A/sub/4.mp3')"),
		     3);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM content_items WHERE rel_path = 'A/sub/4.mp3' AND category = 'A'"),
		     1);
	cr_assert_eq(content_scan(db, root, "A/sub", NULL, NULL, &st), 0);
	cr_assert_eq(st.files, 1);
	cr_assert_eq(st.deactivated, 0);
	/* a folder that leaves the root, or a symlink on the way to it */
	cr_assert_eq(content_scan(db, root, "../x", NULL, NULL, &st), -EXDEV);
	cr_assert_eq(content_scan(db, root, "/etc", NULL, NULL, &st), -EXDEV);
	p = tu_path(root, "L");
	cr_assert_eq(symlink("A", p), 0);
	free(p);
	cr_assert_eq(content_scan(db, root, "L", NULL, NULL, &st), -ENOTDIR);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE active"), 3);
}

/* Kernel pseudo filesystems are refused at once, and no row is written. */
Test(content, pseudo_filesystems_are_refused, .timeout = 10)
{
	struct content_scan_stats st;
	cr_assert_eq(content_scan(db, "/proc", NULL, NULL, NULL, &st), -EREMOTEIO);
	cr_assert_eq(content_scan(db, "/sys", "kernel", NULL, NULL, &st), -EREMOTEIO);
	cr_assert_eq(content_scan(db, "/", "proc", NULL, NULL, &st), -EREMOTEIO);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items"), 0);
}
