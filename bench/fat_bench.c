/* Bench driver for bench/fat_compose_bench (built as uf_fat_bench from tests/fat.cmake; not a
 * product binary). Two modes, one writer loop, so that only the source differs:
 *
 *   uf_fat_bench compose ROOT MANIFEST TARGET [BUFSIZE]
 *       MANIFEST = `sha256sum` output for files under ROOT (paths relative to ROOT, category =
 *       first folder); selects them all (select_content, categories in first-seen order) for
 *       TARGET's size, composes FAT32 and writes the extents to TARGET.
 *   uf_fat_bench raw IMAGE TARGET [BUFSIZE]
 *       writes IMAGE to TARGET sequentially.
 *
 * The writer: one thread, BUFSIZE-byte (default 4 MiB) aligned buffers, O_DIRECT pwrite at the
 * source's offsets (buffered when the target refuses O_DIRECT), fdatasync at the end. Prints
 * one line "mode=… bytes=… seconds=… MiB/s=… files=…". Exit 0 on success. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stages/fat32.h"
#include "stages/select.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_target(const char *path, uint64_t *ret_size)
{
	struct stat st;
	int fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);

	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, ret_size) < 0) {
			fprintf(stderr, "%s: BLKGETSIZE64: %s\n", path, strerror(errno));
			exit(1);
		}
	} else
		*ret_size = (uint64_t)st.st_size;
	return fd;
}

static void pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t w = pwrite(fd, p, len, (off_t)off);
		if (w <= 0) {
			fprintf(stderr, "pwrite at %llu: %s\n", (unsigned long long)off, strerror(errno));
			exit(1);
		}
		p += w;
		len -= (size_t)w;
		off += (uint64_t)w;
	}
}

static double t_read, t_write;

static uint64_t write_src(struct blksrc *s, int fd, size_t bufsize)
{
	uint8_t *buf = NULL;
	uint64_t total = 0;
	double t;

	if (posix_memalign((void **)&buf, 4096, bufsize)) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (;;) {
		uint64_t off;
		t = now();
		ssize_t n = blksrc_read(s, buf, bufsize, &off);
		t_read += now() - t;
		if (n < 0) {
			fprintf(stderr, "read: %s: %s\n", strerror((int)-n),
				blksrc_error(s) ? blksrc_error(s) : "");
			exit(1);
		}
		if (n == 0)
			break;
		size_t wl = ((size_t)n + 4095) / 4096 * 4096;
		if (wl != (size_t)n)
			memset(buf + n, 0, wl - (size_t)n);
		t = now();
		pwrite_all(fd, buf, wl, off);
		t_write += now() - t;
		total += (uint64_t)n;
	}
	free(buf);
	return total;
}

static int cmd_raw(const char *img, const char *target, size_t bufsize)
{
	uint64_t size, total = 0;
	int in = open(img, O_RDONLY | O_CLOEXEC), fd = open_target(target, &size);
	uint8_t *buf = NULL;
	double t0 = now();

	if (in < 0 || posix_memalign((void **)&buf, 4096, bufsize)) {
		fprintf(stderr, "%s: %s\n", img, strerror(errno));
		return 1;
	}
	(void)posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (;;) {
		size_t got = 0;
		while (got < bufsize) {
			ssize_t n = read(in, buf + got, bufsize - got);
			if (n < 0) {
				fprintf(stderr, "%s: %s\n", img, strerror(errno));
				return 1;
			}
			if (n == 0)
				break;
			got += (size_t)n;
		}
		if (got == 0)
			break;
		size_t wl = (got + 4095) / 4096 * 4096;
		memset(buf + got, 0, wl - got);
		pwrite_all(fd, buf, wl, total);
		total += got;
		if (got < bufsize)
			break;
	}
	fdatasync(fd);
	double dt = now() - t0;
	printf("mode=raw bytes=%llu seconds=%.3f MiB/s=%.1f\n", (unsigned long long)total, dt,
	       (double)total / 1048576.0 / dt);
	close(fd);
	close(in);
	free(buf);
	return 0;
}

static int cmd_compose(const char *root, const char *manifest, const char *target, size_t bufsize)
{
	FILE *m = fopen(manifest, "re");
	struct content_item *lib = NULL;
	char **cats = NULL;
	size_t n = 0, ncat = 0;
	char line[8192];
	uint64_t size;
	int fd;

	if (!m) {
		fprintf(stderr, "%s: %s\n", manifest, strerror(errno));
		return 1;
	}
	while (fgets(line, sizeof(line), m)) {
		char *rel = line + 66, *nl = strchr(line, '\n'), *path = NULL, *slash;
		struct stat st;
		if (nl)
			*nl = 0;
		if (strlen(line) < 67)
			continue;
		lib = realloc(lib, (n + 1) * sizeof(*lib));
		if (!lib || asprintf(&path, "%s/%s", root, rel) < 0 || stat(path, &st) < 0) {
			fprintf(stderr, "%s: %s\n", rel, strerror(errno));
			return 1;
		}
		free(path);
		struct content_item *it = &lib[n];
		memset(it, 0, sizeof(*it));
		it->id = (int64_t)n + 1;
		it->rel_path = strdup(rel);
		slash = strchr(rel, '/');
		it->category = slash ? strndup(rel, (size_t)(slash - rel)) : strdup("Misc");
		it->title = strdup(rel);
		memcpy(it->sha256, line, 64);
		it->sha256[64] = 0;
		it->size = (uint64_t)st.st_size;
		it->mtime = (int64_t)st.st_mtime;
		size_t c;
		for (c = 0; c < ncat && strcmp(cats[c], it->category); c++)
			;
		if (c == ncat) {
			cats = realloc(cats, (ncat + 2) * sizeof(char *));
			cats[ncat++] = it->category;
			cats[ncat] = NULL;
		}
		n++;
	}
	fclose(m);

	fd = open_target(target, &size);
	double t0 = now();
	struct job_spec job = {
	    .content_root = (char *)root, .categories = cats, .library = lib, .n_library = n};
	struct select_result res;
	char *err = NULL;
	int r = select_content(&job, size, NULL, NULL, &res, &err);
	if (r < 0) {
		fprintf(stderr, "select: %s\n", err ? err : strerror(-r));
		return 1;
	}
	struct fat_opts o = {.usable_size = size, .content_root = root};
	struct blksrc *s = NULL;
	r = fat32_compose(&o, res.items, res.n_items, &s, &err);
	if (r < 0) {
		fprintf(stderr, "compose: %s\n", err ? err : strerror(-r));
		return 1;
	}
	uint64_t total = write_src(s, fd, bufsize);
	fdatasync(fd);
	double dt = now() - t0;
	struct fat_stats st;
	fat32_stats(s, &st);
	printf("mode=compose bytes=%llu seconds=%.3f MiB/s=%.1f files=%zu of=%zu cluster=%u free_clusters=%u"
	       " in_read=%.3f in_write=%.3f\n",
	       (unsigned long long)total, dt, (double)total / 1048576.0 / dt, res.n_items, n,
	       st.layout.cluster_size, st.free_clusters, t_read, t_write);
	s->ops->free(s);
	select_items_free(res.items, res.n_items);
	for (size_t i = 0; i < n; i++) {
		free(lib[i].rel_path);
		free(lib[i].category);
		free(lib[i].title);
	}
	free(lib);
	free(cats);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && strcmp(argv[1], "compose") == 0)
		return cmd_compose(argv[2], argv[3], argv[4],
				   argc > 5 ? strtoul(argv[5], NULL, 10) : 4u << 20);
	if (argc >= 4 && strcmp(argv[1], "raw") == 0)
		return cmd_raw(argv[2], argv[3], argc > 4 ? strtoul(argv[4], NULL, 10) : 4u << 20);
	fprintf(stderr,
		"usage: uf_fat_bench compose ROOT MANIFEST TARGET [BUFSIZE] | raw IMAGE TARGET [BUFSIZE]\n");
	return 2;
}
