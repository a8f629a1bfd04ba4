/* Bench driver for bench/fat_compose_bench (built as uf_fat_bench from tests/fat.cmake; not a
 * product binary). It runs the product's content path, the same code the daemon runs for a
 * content order: selection (select_content), the FAT32 composer (fat32_compose, which reads
 * every file and checks its XXH3-128, or SHA-256 with a sha256sum manifest) and the pipelined
 * O_DIRECT writer (writer_new/writer_run,
 * write options from the usbforge config: buffer_size, queue_depth, stall_timeout), no verify.
 *
 *   uf_fat_bench compose ROOT MANIFEST TARGET [CONF]
 *       MANIFEST = `xxh128sum` (or `sha256sum`) output for files under ROOT (paths relative to ROOT, category =
 *       first folder; categories in first-seen order). Selects for TARGET's size, composes and
 *       writes onto TARGET (dev_open DEV_OPEN_WRITE). CONF: a usbforge config file (default:
 *       the built-in defaults).
 *   uf_fat_bench image ROOT MANIFEST SIZE OUT
 *       the same selection and composition for a SIZE-byte stick, its extents written into
 *       the regular file OUT (holes left as holes), which is then cut at the end of the last
 *       extent: a raw image of exactly the bytes `compose` writes. OUT "-" discards the bytes
 *       (the source alone: selection + composer reading and hashing every file).
 *
 * Prints one line "mode=… bytes=… seconds=… MiB/s=… files=… …" (seconds: from the manifest
 * loaded to the last byte synced). Exit 0 on success, 1 on a failure (message on stderr). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "fatfs/fat32.h"
#include "stages/select.h"
#include "blkio/writer.h"
#include "blkio/dev.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "uf_fat_bench: %s: %s\n", what, detail ? detail : "(no detail)");
	exit(1);
}

/* The library described by an xxh128sum manifest (the digest the composer checks; a sha256sum
 * manifest works too and makes the composer check SHA-256, as for rows scanned before v2). */
struct lib {
	struct content_item *items;
	size_t n;
	char **cats; /* NULL-terminated; borrowed from items[].category */
	size_t ncat;
};

static void lib_load(const char *root, const char *manifest, struct lib *ret)
{
	FILE *m = fopen(manifest, "re");
	struct lib l = { 0 };
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	if (!m)
		die(manifest, strerror(errno));
	while ((len = getline(&line, &cap, m)) > 0) {
		char *path = NULL, *rel, *slash;
		struct stat st;
		struct content_item *it;
		size_t c;

		if (line[len - 1] == '\n')
			line[len - 1] = 0;
		size_t dl = strcspn(line, " ");
		if ((dl != 32 && dl != 64) || strlen(line) < dl + 3)
			continue;
		rel = line + dl + 2;
		l.items = realloc(l.items, (l.n + 1) * sizeof(*l.items));
		if (!l.items || asprintf(&path, "%s/%s", root, rel) < 0)
			die("manifest", "out of memory");
		if (stat(path, &st) < 0)
			die(path, strerror(errno));
		free(path);
		it = &l.items[l.n];
		memset(it, 0, sizeof(*it));
		it->id = (int64_t)l.n + 1;
		it->rel_path = strdup(rel);
		slash = strchr(rel, '/');
		it->category = slash ? strndup(rel, (size_t)(slash - rel)) : strdup("Misc");
		it->title = strdup(rel);
		if (!it->rel_path || !it->category || !it->title)
			die("manifest", "out of memory");
		if (dl == 64)
			memcpy(it->sha256, line, 64);
		else
			memcpy(it->xxh128, line, 32);
		it->size = (uint64_t)st.st_size;
		it->mtime = (int64_t)st.st_mtime;
		for (c = 0; c < l.ncat && strcmp(l.cats[c], it->category); c++)
			;
		if (c == l.ncat) {
			l.cats = realloc(l.cats, (l.ncat + 2) * sizeof(char *));
			if (!l.cats)
				die("manifest", "out of memory");
			l.cats[l.ncat++] = it->category;
			l.cats[l.ncat] = NULL;
		}
		l.n++;
	}
	free(line);
	fclose(m);
	*ret = l;
}

static void lib_free(struct lib *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].rel_path);
		free(l->items[i].category);
		free(l->items[i].title);
	}
	free(l->items);
	free(l->cats);
}

/* Selection + composer for a stick of `size` bytes; *ret_n = files placed. */
static struct blksrc *compose(const char *root, struct lib *l, uint64_t size, size_t *ret_n)
{
	struct job_spec job = {
		.content_root = (char *)root, .categories = l->cats, .library = l->items, .n_library = l->n
	};
	struct select_result res;
	struct fat_opts o = { .usable_size = size, .content_root = root };
	struct blksrc *s = NULL;
	char *err = NULL;
	int r;

	r = select_content(&job, size, NULL, NULL, &res, &err);
	if (r < 0)
		die("select", err ? err : strerror(-r));
	r = fat32_compose(&o, res.items, res.n_items, &s, &err);
	if (r < 0)
		die("compose", err ? err : strerror(-r));
	*ret_n = res.n_items;
	job_items_free(res.items, res.n_items);
	return s;
}

static int cmd_compose(const char *root, const char *manifest, const char *target, const char *conf)
{
	struct uf_config cfg;
	struct write_opts wo;
	struct dev *d = NULL;
	struct writer *w = NULL;
	struct lib l;
	char *err = NULL;
	size_t nfiles;
	int r;

	if (conf) {
		r = config_load(conf, &cfg, &err);
		if (r < 0)
			die(conf, err ? err : strerror(-r));
	} else if (config_init_defaults(&cfg) < 0)
		die("config", "out of memory");
	wo = (struct write_opts){
		.buffer_size = (size_t)cfg.write.buffer_size,
		.queue_depth = cfg.write.queue_depth,
		.verify = false,
		.stall_timeout = cfg.write.stall_timeout,
	};

	double t0 = now();
	lib_load(root, manifest, &l);
	r = dev_open(target, DEV_OPEN_WRITE, &d);
	if (r < 0)
		die(target, strerror(-r));
	double t1 = now();
	struct blksrc *s = compose(root, &l, d->size, &nfiles);
	double t2 = now();
	r = writer_new(d, s, &wo, NULL, &w);
	if (r < 0)
		die("writer_new", strerror(-r));
	r = writer_run(w, NULL, NULL);
	if (r < 0)
		die("writer_run", writer_stats(w)->error ? writer_stats(w)->error : strerror(-r));
	double t3 = now();

	struct fat_stats st;
	uint64_t written = writer_stats(w)->bytes_written;
	fat32_stats(s, &st);
	printf("mode=compose bytes=%llu seconds=%.3f MiB/s=%.1f files=%zu of=%zu cluster=%u buffer=%zu queue=%u"
	       " load=%.3f plan=%.3f write=%.3f\n",
	       (unsigned long long)written, t3 - t0, (double)written / 1048576.0 / (t3 - t0), nfiles, l.n,
	       st.layout.cluster_size, wo.buffer_size, wo.queue_depth, t1 - t0, t2 - t1, t3 - t2);
	writer_free(w);
	blksrc_free(s);
	writer_dev_free(d);
	lib_free(&l);
	config_done(&cfg);
	return 0;
}

static int cmd_image(const char *root, const char *manifest, uint64_t size, const char *out)
{
	const size_t bufsize = 4u << 20;
	bool discard = strcmp(out, "-") == 0;
	uint64_t total = 0, end = 0;
	uint8_t *buf = NULL;
	struct lib l;
	size_t nfiles;
	int fd = -1;

	if (posix_memalign((void **)&buf, 4096, bufsize))
		die("buffer", "out of memory");
	if (!discard) {
		fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			die(out, strerror(errno));
	}
	double t0 = now();
	lib_load(root, manifest, &l);
	struct blksrc *s = compose(root, &l, size, &nfiles);
	for (;;) {
		uint64_t off;
		ssize_t n = blksrc_read(s, buf, bufsize, &off);
		if (n < 0)
			die("read", blksrc_error(s) ? blksrc_error(s) : strerror((int)-n));
		if (n == 0)
			break;
		for (size_t done = 0; !discard && done < (size_t)n;) {
			ssize_t k = pwrite(fd, buf + done, (size_t)n - done, (off_t)(off + done));
			if (k <= 0)
				die(out, strerror(errno));
			done += (size_t)k;
		}
		total += (uint64_t)n;
		end = off + (uint64_t)n;
	}
	if (!discard && (ftruncate(fd, (off_t)end) < 0 || fsync(fd) < 0 || close(fd) < 0))
		die(out, strerror(errno));
	double dt = now() - t0;
	printf("mode=%s bytes=%llu end=%llu seconds=%.3f MiB/s=%.1f files=%zu of=%zu\n", discard ? "source" : "image",
	       (unsigned long long)total, (unsigned long long)end, dt, (double)total / 1048576.0 / dt, nfiles, l.n);
	blksrc_free(s);
	lib_free(&l);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "compose") == 0)
		return cmd_compose(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
	if (argc == 6 && strcmp(argv[1], "image") == 0) {
		char *e;
		errno = 0;
		unsigned long long size = strtoull(argv[4], &e, 10);
		if (errno || *e || size == 0)
			die("SIZE", argv[4]);
		return cmd_image(argv[2], argv[3], size, argv[5]);
	}
	fprintf(stderr, "usage: uf_fat_bench compose ROOT MANIFEST TARGET [CONF]\n"
			"       uf_fat_bench image ROOT MANIFEST SIZE OUT|-\n");
	return 2;
}
