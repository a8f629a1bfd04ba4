/* A host-side test driver for the FAT32 end-to-end oracle (tests/e2e/run-fat-e2e; built as
 * uf_fat_compose_tool from tests/fat.cmake, not a product binary). It turns a content folder
 * into a stick image with the project's own selection (stages/select.c) and composer
 * (fatfs/fat32.c), exactly as a content order would, and writes down what it chose so that an
 * outside reader (the Linux vfat driver in a QEMU guest, fsck.fat) can be compared with it.
 *
 *   uf_fat_compose_tool layout SIZE
 *       print "cluster_size=N clusters=N data_offset=N" for a stick of SIZE bytes.
 *   uf_fat_compose_tool compose ROOT IMAGE SIZE MANIFEST [LIST]
 *       library = every regular file under ROOT (category = first folder level; files directly
 *       in ROOT are refused), each hashed with SHA-256 here; selection = every category (in
 *       bytewise name order), or, with LIST (one rel_path per line), those files as explicit
 *       items in the list's order. IMAGE is created (or truncated) as a sparse file of SIZE
 *       bytes holding the composed stick. MANIFEST gets one line per chosen file, in
 *       placement order: "<sha256>\t<size>\t<mtime>\t<dest_path>\t<rel_path>". Prints one summary line
 *       "files=N of=M cluster_size=N used_clusters=N free_clusters=N dir_clusters=N".
 *
 * Exit status: 0 on success; 1 on any failure (said on stderr); 2 on a usage error. */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fatfs/fat32.h"
#include "stages/select.h"
#include "util/filehash.h"
#include "util/macro.h"
#include "util/size.h"

struct lib {
	struct content_item *it;
	size_t n, cap;
	char **cats; /* distinct categories, sorted; NULL-terminated */
	size_t n_cats;
};

static int lib_add(struct lib *l, const char *root, const char *rel)
{
	_cleanup_free_ char *path = NULL;
	struct content_item *it;
	const char *slash = strchr(rel, '/');
	struct stat st;
	uint64_t size;
	int r;

	if (!slash) {
		fprintf(stderr, "%s: a file directly in the content root has no category\n", rel);
		return -EINVAL;
	}
	if (asprintf(&path, "%s/%s", root, rel) < 0)
		return -ENOMEM;
	if (stat(path, &st) < 0) {
		r = -errno;
		fprintf(stderr, "%s: %s\n", path, strerror(-r));
		return r;
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		struct content_item *ni = realloc(l->it, nc * sizeof(*ni));
		if (!ni)
			return -ENOMEM;
		l->it = ni;
		l->cap = nc;
	}
	it = &l->it[l->n];
	*it = (struct content_item){ .id = (int64_t)l->n + 1, .mtime = (int64_t)st.st_mtime };
	r = filehash_file(path, it->sha256, it->xxh128, &size);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(-r));
		return r;
	}
	if (size != (uint64_t)st.st_size) {
		fprintf(stderr, "%s: changed while being hashed\n", path);
		return -EBUSY;
	}
	it->size = size;
	it->rel_path = strdup(rel);
	it->title = strdup(slash + 1);
	it->category = strndup(rel, (size_t)(slash - rel));
	if (!it->rel_path || !it->title || !it->category) {
		free(it->rel_path);
		free(it->title);
		free(it->category);
		return -ENOMEM;
	}
	l->n++;
	return 0;
}

/* Depth-first walk of root/rel (rel "" for the root itself), adding every regular file. */
static int walk(struct lib *l, const char *root, const char *rel)
{
	_cleanup_free_ char *dir = NULL;
	struct dirent *de;
	DIR *d;
	int r = 0;

	if (asprintf(&dir, "%s%s%s", root, *rel ? "/" : "", rel) < 0)
		return -ENOMEM;
	d = opendir(dir);
	if (!d) {
		r = -errno;
		fprintf(stderr, "%s: %s\n", dir, strerror(-r));
		return r;
	}
	while (r == 0 && (errno = 0, de = readdir(d))) {
		_cleanup_free_ char *sub = NULL, *full = NULL;
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0 ||
		    asprintf(&full, "%s/%s", root, sub) < 0) {
			r = -ENOMEM;
			break;
		}
		if (lstat(full, &st) < 0) {
			r = -errno;
			fprintf(stderr, "%s: %s\n", full, strerror(-r));
			break;
		}
		if (S_ISDIR(st.st_mode))
			r = walk(l, root, sub);
		else if (S_ISREG(st.st_mode))
			r = lib_add(l, root, sub);
		else
			fprintf(stderr, "%s: not a regular file, ignored\n", full);
	}
	if (r == 0 && errno != 0)
		r = -errno;
	closedir(d);
	return r;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int lib_categories(struct lib *l)
{
	l->cats = calloc(l->n + 1, sizeof(char *));
	if (!l->cats)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++) {
		bool seen = false;
		for (size_t c = 0; c < l->n_cats && !seen; c++)
			seen = strcmp(l->cats[c], l->it[i].category) == 0;
		if (!seen)
			l->cats[l->n_cats++] = l->it[i].category;
	}
	qsort(l->cats, l->n_cats, sizeof(char *), cmp_str);
	return 0;
}

static void lib_done(struct lib *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->it[i].rel_path);
		free(l->it[i].title);
		free(l->it[i].category);
	}
	free(l->it);
	free(l->cats);
}

/* Explicit item ids from LIST (rel_paths, one per line, blank lines ignored). */
static int read_list(const struct lib *l, const char *list, int64_t **ret_ids, size_t *ret_n)
{
	_cleanup_fclose_ FILE *f = fopen(list, "re");
	_cleanup_free_ char *line = NULL;
	_cleanup_free_ int64_t *ids = NULL;
	size_t cap = 0, n = 0;
	ssize_t len;

	if (!f) {
		int e = errno;
		fprintf(stderr, "%s: %s\n", list, strerror(e));
		return -e;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		size_t i;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = 0;
		if (len == 0)
			continue;
		for (i = 0; i < l->n && strcmp(l->it[i].rel_path, line) != 0; i++)
			;
		if (i == l->n) {
			fprintf(stderr, "%s: '%s' is not a file of the content root\n", list, line);
			return -ENOENT;
		}
		int64_t *ni = realloc(ids, (n + 1) * sizeof(*ni));
		if (!ni)
			return -ENOMEM;
		ids = ni;
		ids[n++] = l->it[i].id;
	}
	*ret_ids = TAKE_PTR(ids);
	*ret_n = n;
	return 0;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t w = pwrite(fd, p, len, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		len -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* Pull every extent of s and write it at its offset into IMAGE (a sparse file of `size`). */
static int write_image(struct blksrc *s, const char *image, uint64_t size)
{
	const size_t bufsize = 4u << 20;
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ uint8_t *buf = NULL;
	uint64_t total = 0, last_end = 0;
	int r;

	fd = open(image, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		int e = errno;
		fprintf(stderr, "%s: %s\n", image, strerror(e));
		return -e;
	}
	buf = malloc(bufsize);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		uint64_t off = 0;
		ssize_t got = blksrc_read(s, buf, bufsize, &off);
		if (got < 0) {
			fprintf(stderr, "compose read: %s: %s\n", strerror((int)-got),
				blksrc_error(s) ? blksrc_error(s) : "");
			return (int)got;
		}
		if (got == 0)
			break;
		if (off < last_end || off + (uint64_t)got > size) {
			fprintf(stderr, "compose read: extent at %llu+%zd out of order or past the end\n",
				(unsigned long long)off, got);
			return -EIO;
		}
		r = pwrite_all(fd, buf, (size_t)got, off);
		if (r < 0) {
			fprintf(stderr, "%s: write at %llu: %s\n", image, (unsigned long long)off, strerror(-r));
			return r;
		}
		total += (uint64_t)got;
		last_end = off + (uint64_t)got;
	}
	if (total != s->mapped) {
		fprintf(stderr, "compose: produced %llu bytes, the source announced %llu\n", (unsigned long long)total,
			(unsigned long long)s->mapped);
		return -EIO;
	}
	if (fsync(fd) < 0) {
		int e = errno;
		fprintf(stderr, "%s: fsync: %s\n", image, strerror(e));
		return -e;
	}
	return 0;
}

static int write_manifest(const char *path, const struct select_result *res)
{
	_cleanup_fclose_ FILE *f = fopen(path, "we");

	if (!f) {
		int e = errno;
		fprintf(stderr, "%s: %s\n", path, strerror(e));
		return -e;
	}
	for (size_t i = 0; i < res->n_items; i++) {
		const struct job_item *it = &res->items[i];
		fprintf(f, "%s\t%llu\t%lld\t%s\t%s\n", it->sha256, (unsigned long long)it->size, (long long)it->mtime,
			it->dest_path, it->rel_path);
	}
	if (fflush(f) != 0 || ferror(f)) {
		fprintf(stderr, "%s: write failed\n", path);
		return -EIO;
	}
	return 0;
}

static int cmd_layout(const char *size_s)
{
	struct fat_layout L;
	uint64_t size;
	int r;

	r = parse_size(size_s, &size);
	if (r < 0) {
		fprintf(stderr, "bad size '%s'\n", size_s);
		return 2;
	}
	r = fat_layout_compute(size, &L);
	if (r < 0) {
		fprintf(stderr, "layout: %s\n", strerror(-r));
		return 1;
	}
	printf("cluster_size=%u clusters=%u data_offset=%llu\n", L.cluster_size, L.n_clusters,
	       (unsigned long long)L.data_offset);
	return 0;
}

static int cmd_compose(const char *root, const char *image, const char *size_s, const char *manifest, const char *list)
{
	struct lib l = { 0 };
	struct select_result res = { 0 };
	struct blksrc *s = NULL;
	int64_t *ids = NULL;
	char *err = NULL;
	size_t n_ids = 0;
	uint64_t size;
	struct fat_stats st;
	int r, rc = 1;

	if (parse_size(size_s, &size) < 0) {
		fprintf(stderr, "bad size '%s'\n", size_s);
		return 2;
	}
	r = walk(&l, root, "");
	if (r < 0)
		goto out;
	r = lib_categories(&l);
	if (r < 0)
		goto out;
	if (list) {
		r = read_list(&l, list, &ids, &n_ids);
		if (r < 0)
			goto out;
	}
	struct job_spec job = {
		.content_root = (char *)root,
		.categories = list ? NULL : l.cats,
		.item_ids = ids,
		.n_item_ids = n_ids,
		.library = l.it,
		.n_library = l.n,
	};
	r = select_content(&job, size, NULL, NULL, &res, &err);
	if (r < 0) {
		fprintf(stderr, "select: %s (%s)\n", err ? err : "", strerror(-r));
		goto out;
	}
	free(err);
	err = NULL;
	struct fat_opts o = { .usable_size = size, .content_root = root, .label = "UF E2E" };
	r = fat32_compose(&o, res.items, res.n_items, &s, &err);
	if (r < 0) {
		fprintf(stderr, "compose: %s (%s)\n", err ? err : "", strerror(-r));
		goto out;
	}
	if (s->size > size) {
		fprintf(stderr, "compose: source ends at %llu, past the stick's %llu bytes\n",
			(unsigned long long)s->size, (unsigned long long)size);
		goto out;
	}
	r = write_image(s, image, size);
	if (r < 0)
		goto out;
	r = write_manifest(manifest, &res);
	if (r < 0)
		goto out;
	fat32_stats(s, &st);
	printf("files=%zu of=%zu cluster_size=%u used_clusters=%u free_clusters=%u dir_clusters=%u\n", res.n_items, l.n,
	       st.layout.cluster_size, st.used_clusters, st.free_clusters, st.dir_clusters);
	rc = 0;
out:
	free(err);
	free(ids);
	blksrc_free(s);
	job_items_free(res.items, res.n_items);
	lib_done(&l);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "layout") == 0)
		return cmd_layout(argv[2]);
	if ((argc == 6 || argc == 7) && strcmp(argv[1], "compose") == 0)
		return cmd_compose(argv[2], argv[3], argv[4], argv[5], argc == 7 ? argv[6] : NULL);
	fprintf(stderr, "usage: uf_fat_compose_tool layout SIZE\n"
			"       uf_fat_compose_tool compose ROOT IMAGE SIZE MANIFEST [LIST]\n");
	return 2;
}
