/* Implementation of db/content.h. */
#include "db/content.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "db/orders.h"
#include "util/filehash.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/openfile.h"
#include "util/utf8.h"

/* Title: the file name without its last extension. */
static char *title_of(const char *name)
{
	const char *dot = strrchr(name, '.');
	if (!dot || dot == name)
		return strdup(name);
	return strndup(name, (size_t)(dot - name));
}

/* A file's mtime as the DATETIME(6) the row keeps, from two bound integers: seconds since the
 * epoch and microseconds (the session's time zone is UTC, so it is the file's UTC time). Whole
 * numbers keep it exact; a DOUBLE would round the microseconds. As before, a time FROM_UNIXTIME
 * cannot represent (before 1970) is NULL, which the NOT NULL column refuses. */
#define MTIME_SQL "(FROM_UNIXTIME(?) + INTERVAL ? MICROSECOND)"

struct scan {
	struct db *db;
	const char *root; /* for messages */
	void (*warn)(void *ud, const char *msg);
	void *ud;
	struct content_scan_stats st;
	int64_t run; /* scan mark: every row seen in this run gets it */
};

static void warnf(struct scan *s, const char *fmt, ...) _printf_(2, 3);
static void warnf(struct scan *s, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;
	s->st.skipped++;
	if (!s->warn)
		return;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	if (m)
		s->warn(s->ud, m);
	free(m);
}

/* Filesystems that are views of the kernel, not content: a scan never enters them. */
static bool pseudo_fs(int fd)
{
	static const unsigned long magic[] = {
		PROC_SUPER_MAGIC,    SYSFS_MAGIC,    DEVPTS_SUPER_MAGIC, CGROUP_SUPER_MAGIC,
		CGROUP2_SUPER_MAGIC, DEBUGFS_MAGIC,  TRACEFS_MAGIC,	 SECURITYFS_MAGIC,
		BPF_FS_MAGIC,	     PSTOREFS_MAGIC, EFIVARFS_MAGIC,	 NSFS_MAGIC,
		SELINUX_MAGIC,	     SMACK_MAGIC,    BINFMTFS_MAGIC,	 FUTEXFS_SUPER_MAGIC,
	};
	struct statfs sf;
	if (fstatfs(fd, &sf) < 0)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(magic); i++)
		if ((unsigned long)sf.f_type == magic[i])
			return true;
	return false;
}

/* One entry that lstat called a regular file: opened without following a symlink and
 * without blocking, checked on the descriptor, and that descriptor hashed. A file swapped
 * for a symlink or a FIFO after the directory was read is skipped, never followed. */
static int scan_file(struct scan *s, int dfd, const char *category, const char *rel, const char *name)
{
	_cleanup_result_ struct db_res *res = NULL;
	_cleanup_free_ char *title = NULL;
	struct stat st, after;
	int r;

	_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		warnf(s, "%s/%s: cannot open: %s", s->root, rel,
		      errno == ELOOP ? "it became a symbolic link (not followed)" : strerror(errno));
		return 0;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		warnf(s, "%s/%s: not a regular file, skipped", s->root, rel);
		return 0;
	}
	/* the file's mtime to the microsecond, bound as whole seconds and microseconds (MTIME_SQL) */
	const struct db_arg mtime_s = DB_I64(st.st_mtim.tv_sec), mtime_us = DB_I64(st.st_mtim.tv_nsec / 1000);
	s->st.files++;
	r = db_query(s->db, &res,
		     "SELECT id, size_bytes, mtime = " MTIME_SQL ", active, xxh128 IS NOT NULL FROM content_items"
		     " WHERE rel_path_hash = UNHEX(SHA2(?, 256)) AND rel_path = ?",
		     mtime_s, mtime_us, DB_STR(rel), DB_STR(rel), DB_END);
	if (r < 0)
		return r;
	db_row row = db_res_next(res);
	/* Unchanged in size and mtime: not re-read, unless the row predates the xxh128 column. */
	if (row && db_row_u64(row, 1) == (uint64_t)st.st_size && db_row_i64(row, 2) == 1 && db_row_i64(row, 4) == 1) {
		if (db_row_i64(row, 3) == 0)
			s->st.reactivated++;
		else
			s->st.unchanged++;
		return db_exec(s->db, NULL, "UPDATE content_items SET active = 1, scan_mark = ? WHERE id = ?",
			       DB_I64(s->run), DB_I64(db_row_i64(row, 0)), DB_END);
	}
	char hex[FILEHASH_SHA256_HEX], xxh[FILEHASH_XXH128_HEX];
	uint64_t size = 0;
	r = filehash_fd(fd, hex, xxh, &size);
	if (r < 0) {
		warnf(s, "%s/%s: cannot read: %s", s->root, rel, strerror(-r));
		return 0;
	}
	s->st.bytes_hashed += size;
	if (fstat(fd, &after) < 0 || size != (uint64_t)st.st_size || after.st_size != st.st_size ||
	    after.st_mtim.tv_sec != st.st_mtim.tv_sec || after.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
		warnf(s, "%s/%s: changed while it was read, skipped (scan again when it is complete)", s->root, rel);
		return 0;
	}
	title = title_of(name);
	if (row) {
		s->st.updated++;
		return db_exec(s->db, NULL,
			       "UPDATE content_items SET category = ?, title = ?, size_bytes = ?, sha256 = ?, xxh128 = ?,"
			       " mtime = " MTIME_SQL ", active = 1, scan_mark = ? WHERE id = ?",
			       DB_STR(category), DB_STR(title), DB_U64(size), DB_STR(hex), DB_STR(xxh), mtime_s,
			       mtime_us, DB_I64(s->run), DB_I64(db_row_i64(row, 0)), DB_END);
	}
	s->st.added++;
	return db_exec(s->db, NULL,
		       "INSERT INTO content_items (category, title, rel_path, size_bytes, sha256, xxh128, mtime, active,"
		       " scan_mark) VALUES (?, ?, ?, ?, ?, ?, " MTIME_SQL ", 1, ?)",
		       DB_STR(category), DB_STR(title), DB_STR(rel), DB_U64(size), DB_STR(hex), DB_STR(xxh), mtime_s,
		       mtime_us, DB_I64(s->run), DB_END);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The names in the directory dfd, sorted for a stable order (., .. and hidden files left out). */
static int read_names(int dfd, char ***ret, size_t *ret_n)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	int fd = dup(dfd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		r = -errno;
		close(fd);
		return r;
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue; /* ., .., hidden files */
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof(char *));
			if (!nn) {
				r = -ENOMEM;
				break;
			}
			names = nn;
		}
		if (!(names[n] = strdup(de->d_name))) {
			r = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
		return r;
	}
	if (n)
		qsort(names, n, sizeof(char *), cmp_names);
	*ret = names;
	*ret_n = n;
	return 0;
}

/* Walk the directory dfd (rel beneath the root, NULL for the root itself). Every entry is
 * reached from its parent's descriptor without following a symlink: nothing outside the
 * root is ever read, whatever is swapped in during the scan. */
static int scan_dir(struct scan *s, int dfd, const char *category, const char *rel)
{
	char **names = NULL;
	size_t n = 0;
	int r = read_names(dfd, &names, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n && r >= 0; i++) {
		_cleanup_free_ char *crel = NULL;
		struct stat st;
		bool utf8 = utf8_valid(names[i]);
		if (!utf8 || !path_is_safe_relative(names[i])) {
			/* the library keeps names exactly, as UTF-8 text without control characters
			 * (a name a terminal would act on): this one cannot be kept */
			_cleanup_free_ char *shown = utf8_escape(names[i]);
			warnf(s, "%s%s%s/%s: the name is not valid UTF-8%s; skipped (rename it)", s->root,
			      rel ? "/" : "", rel ? rel : "", shown ? shown : "?",
			      utf8 ? " text without control characters" : "");
			continue;
		}
		if (asprintf(&crel, "%s%s%s", rel ? rel : "", rel ? "/" : "", names[i]) < 0) {
			r = -ENOMEM;
			break;
		}
		if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			warnf(s, "%s/%s: %s", s->root, crel, strerror(errno));
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			int cfd = openat(dfd, names[i], O_RDONLY | O_CLOEXEC | O_DIRECTORY | O_NOFOLLOW);
			if (cfd < 0) {
				warnf(s, "%s/%s: %s", s->root, crel,
				      errno == ENOTDIR || errno == ELOOP ? "it became a symbolic link (not followed)"
									 : strerror(errno));
				continue;
			}
			if (pseudo_fs(cfd))
				warnf(s, "%s/%s: a kernel pseudo filesystem, skipped", s->root, crel);
			else
				r = scan_dir(s, cfd, category ? category : names[i], crel);
			close(cfd);
			if (r == -EACCES) {
				warnf(s, "%s/%s: permission denied", s->root, crel);
				r = 0;
			}
		} else if (!S_ISREG(st.st_mode)) {
			warnf(s, "%s/%s: not a regular file, skipped", s->root, crel);
		} else if (!category) {
			warnf(s, "%s/%s: files at the top level have no category, skipped (put it in a folder)",
			      s->root, crel);
		} else {
			r = scan_file(s, dfd, category, crel, names[i]);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

int content_scan(struct db *db, const char *root, const char *subdir, void (*warn)(void *ud, const char *msg), void *ud,
		 struct content_scan_stats *ret)
{
	struct scan s = { .db = db, .root = root, .warn = warn, .ud = ud };
	uint64_t aff = 0;
	int r;

	if (subdir && !*subdir)
		subdir = NULL;
	_cleanup_close_ int rootfd = open_root_dir(root);
	if (rootfd < 0)
		return rootfd;
	_cleanup_close_ int dfd = open_beneath_dir(rootfd, subdir);
	if (dfd < 0)
		return dfd == -ELOOP ? -ENOTDIR : dfd;
	if (pseudo_fs(dfd))
		return -EREMOTEIO;
	/* the category is the first folder beneath the root, whatever folder is scanned */
	_cleanup_free_ char *category = subdir ? strndup(subdir, strcspn(subdir, "/")) : NULL;
	if (subdir && !category)
		return -ENOMEM;
	r = db_query_i64(db, &s.run, "SELECT COALESCE(MAX(scan_mark), 0) + 1 FROM content_items", DB_END);
	if (r < 0)
		return r;
	r = scan_dir(&s, dfd, category, subdir);
	if (r < 0)
		return r;
	/* only rows beneath the scanned folder can have vanished from it */
	if (subdir)
		r = db_exec(db, &aff,
			    "UPDATE content_items SET active = 0 WHERE active = 1 AND scan_mark <> ?"
			    " AND LEFT(rel_path, CHAR_LENGTH(?) + 1) = CONCAT(?, '/')",
			    DB_I64(s.run), DB_STR(subdir), DB_STR(subdir), DB_END);
	else
		r = db_exec(db, &aff, "UPDATE content_items SET active = 0 WHERE active = 1 AND scan_mark <> ?",
			    DB_I64(s.run), DB_END);
	if (r < 0)
		return r;
	s.st.deactivated = (unsigned)aff;
	*ret = s.st;
	return 0;
}

int content_list(struct db *db, const char *category, struct db_res **ret)
{
	return db_query(db, ret,
			"SELECT id, category, title, rel_path, size_bytes, sha256, xxh128, mtime FROM content_items"
			" WHERE active = 1 AND (? IS NULL OR category = ?) ORDER BY category, rel_path",
			DB_STR(category), DB_STR(category), DB_END);
}

int content_category_count(struct db *db, const char *category, int64_t *ret)
{
	return db_query_i64(db, ret, "SELECT COUNT(*) FROM content_items WHERE active = 1 AND category = ?",
			    DB_STR(category), DB_END);
}

int content_item_active(struct db *db, int64_t id, bool *ret)
{
	int64_t a = 0;
	int r = db_query_i64(db, &a, "SELECT active FROM content_items WHERE id = ?", DB_I64(id), DB_END);
	if (r < 0)
		return r;
	*ret = a != 0;
	return 0;
}

int content_category_larger(struct db *db, const char *category, uint64_t max_bytes, struct content_item **ret,
			    size_t *ret_n)
{
	_cleanup_result_ struct db_res *res = NULL;
	int r = db_query(db, &res,
			 "SELECT id, rel_path, size_bytes FROM content_items"
			 " WHERE active = 1 AND category = ? AND size_bytes > ? ORDER BY rel_path",
			 DB_STR(category), DB_U64(max_bytes), DB_END);
	if (r < 0)
		return r;
	size_t n = db_res_count(res), k = 0;
	struct content_item *items = n ? calloc(n, sizeof(*items)) : NULL;
	if (n && !items)
		return -ENOMEM;
	db_row row;
	while (k < n && (row = db_res_next(res))) {
		struct content_item *it = &items[k++];
		it->id = db_row_i64(row, 0);
		it->size = db_row_u64(row, 2);
		it->rel_path = strdup(row[1] ? row[1] : "");
		if (!it->rel_path) {
			content_items_free(items, k);
			return -ENOMEM;
		}
	}
	*ret = items;
	*ret_n = k;
	return 0;
}

int content_item_size(struct db *db, int64_t id, uint64_t *ret_size, char **ret_rel_path)
{
	_cleanup_result_ struct db_res *res = NULL;
	int r = db_query(db, &res, "SELECT size_bytes, rel_path FROM content_items WHERE id = ?", DB_I64(id), DB_END);
	if (r < 0)
		return r;
	db_row row = db_res_next(res);
	if (!row)
		return -ENOENT;
	char *p = strdup(row[1] ? row[1] : "");
	if (!p)
		return -ENOMEM;
	*ret_size = db_row_u64(row, 0);
	*ret_rel_path = p;
	return 0;
}

/* content_load_candidates into *items (n of them, cap allocated); the caller frees them. */
static int load_candidates(struct db *db, char *const *categories, const int64_t *ids, size_t n_ids,
			   struct content_item **items_p, size_t *n_p)
{
	/* One query per category / id, each value bound as a placeholder. */
	struct content_item *items = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	for (size_t pass = 0; pass < 2; pass++) {
		size_t count = 0;
		if (pass == 0)
			count = n_ids;
		else
			while (categories && categories[count])
				count++;
		for (size_t k = 0; k < count; k++) {
			_cleanup_result_ struct db_res *res = NULL;
			if (pass == 0)
				r = db_query(db, &res,
					     "SELECT id, category, title, rel_path, size_bytes, sha256, FLOOR(UNIX_TIMESTAMP(mtime)), xxh128"
					     " FROM content_items WHERE id = ? AND active = 1",
					     DB_I64(ids[k]), DB_END);
			else
				r = db_query(db, &res,
					     "SELECT id, category, title, rel_path, size_bytes, sha256, FLOOR(UNIX_TIMESTAMP(mtime)), xxh128"
					     " FROM content_items WHERE category = ? AND active = 1 ORDER BY rel_path",
					     DB_STR(categories[k]), DB_END);
			if (r < 0)
				return r;
			db_row row;
			while ((row = db_res_next(res))) {
				bool dup = false;
				for (size_t i = 0; i < n && !dup; i++)
					dup = items[i].id == db_row_i64(row, 0);
				if (dup)
					continue;
				if (n == cap) {
					cap = cap ? cap * 2 : 64;
					struct content_item *ni = realloc(items, cap * sizeof(*items));
					if (!ni)
						return -ENOMEM;
					*items_p = items = ni;
				}
				struct content_item *it = &items[n];
				memset(it, 0, sizeof(*it));
				*n_p = ++n;
				it->id = db_row_i64(row, 0);
				it->category = strdup(row[1]);
				it->title = strdup(row[2]);
				it->rel_path = strdup(row[3]);
				if (!it->category || !it->title || !it->rel_path)
					return -ENOMEM;
				it->size = db_row_u64(row, 4);
				snprintf(it->sha256, sizeof(it->sha256), "%s", row[5]);
				it->mtime = db_row_i64(row, 6);
				snprintf(it->xxh128, sizeof(it->xxh128), "%s", row[7] ? row[7] : "");
			}
		}
	}
	return 0;
}

int content_load_candidates(struct db *db, char *const *categories, const int64_t *ids, size_t n_ids,
			    struct content_item **ret, size_t *ret_n)
{
	struct content_item *items = NULL;
	size_t n = 0;
	int r = load_candidates(db, categories, ids, n_ids, &items, &n);
	if (r < 0) {
		content_items_free(items, n);
		return r;
	}
	*ret = items;
	*ret_n = n;
	return 0;
}
