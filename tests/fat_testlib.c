/* Implementation of tests/fat_testlib.h. The reader below follows Microsoft's FAT32 spec
 * directly and shares nothing with fatfs/fat32.c or fatfs/fatname.c. */
#include "fat_testlib.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/testutil.h"
#include "util/filehash.h"
#include "util/macro.h"

static void mkdirs_for(const char *path)
{
	char *p = strdup(path);
	cr_assert(p);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			mkdir(p, 0755);
			*s = '/';
		}
	free(p);
}

void ft_hash_file(const char *path, char sha256[65], char xxh128[33])
{
	cr_assert_eq(filehash_file(path, sha256, xxh128, NULL), 0, "%s", path);
}

void ft_make_file(const char *root, const char *rel, uint64_t size, uint64_t seed, int64_t mtime, const char *dest,
		  struct job_item *it)
{
	char *path = NULL;
	uint8_t *buf = malloc(size ? size : 1);
	struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };

	cr_assert(buf);
	cr_assert(asprintf(&path, "%s/%s", root, rel) > 0);
	mkdirs_for(path);
	tu_fill_pattern(buf, size, seed);
	tu_write_file(path, buf, size);
	cr_assert(utimensat(AT_FDCWD, path, ts, 0) == 0);
	memset(it, 0, sizeof(*it));
	it->rel_path = strdup(rel);
	it->dest_path = dest ? strdup(dest) : NULL;
	it->size = size;
	it->mtime = mtime;
	ft_hash_file(path, it->sha256, it->xxh128);
	free(buf);
	free(path);
}

void ft_items_free(struct job_item *items, size_t n)
{
	for (size_t i = 0; items && i < n; i++) {
		free(items[i].rel_path);
		free(items[i].dest_path);
	}
	free(items);
}

static void pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len) {
		ssize_t w = pwrite(fd, p, len, (off_t)off);
		cr_assert(w > 0, "pwrite: %s", strerror(errno));
		p += w;
		len -= (size_t)w;
		off += (uint64_t)w;
	}
}

int ft_compose_image(const struct fat_opts *o, const struct job_item *items, size_t n, const char *img, size_t bufsize,
		     char **ret_msg)
{
	struct blksrc *s = NULL;
	char *err = NULL, *part = NULL;
	uint8_t *buf;
	uint64_t total = 0, last_end = 0;
	int r, fd, pfd;

	r = fat32_compose(o, items, n, &s, &err);
	cr_assert_eq(r, 0, "compose: %d %s", r, err ? err : "");
	cr_assert(asprintf(&part, "%s.part", img) > 0);
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	pfd = open(part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0 && pfd >= 0);
	cr_assert(ftruncate(fd, (off_t)s->size) == 0);
	cr_assert(ftruncate(pfd, (off_t)(s->size - FAT_PART_OFFSET)) == 0);
	buf = malloc(bufsize);
	cr_assert(buf);
	for (;;) {
		uint64_t off = UINT64_MAX;
		ssize_t got = blksrc_read(s, buf, bufsize, &off);
		if (got < 0) {
			r = (int)got;
			if (ret_msg)
				*ret_msg = blksrc_error(s) ? strdup(blksrc_error(s)) : NULL;
			break;
		}
		if (got == 0) {
			r = 0;
			break;
		}
		cr_assert_eq(off % 4096, 0, "extent offset %llu not aligned", (unsigned long long)off);
		cr_assert((size_t)got <= bufsize);
		cr_assert(off >= last_end, "offset %llu goes back before %llu", (unsigned long long)off,
			  (unsigned long long)last_end);
		cr_assert((uint64_t)off + (uint64_t)got <= s->size);
		cr_assert_eq((uint64_t)got % 4096, 0, "chunk of %zd bytes", got);
		pwrite_all(fd, buf, (size_t)got, off);
		if (off + (uint64_t)got > FAT_PART_OFFSET) {
			uint64_t skip = off < FAT_PART_OFFSET ? FAT_PART_OFFSET - off : 0;
			pwrite_all(pfd, buf + skip, (size_t)got - skip, off + skip - FAT_PART_OFFSET);
		}
		total += (uint64_t)got;
		last_end = off + (uint64_t)got;
	}
	if (r == 0)
		cr_assert_eq(total, s->mapped, "emitted %llu, mapped says %llu", (unsigned long long)total,
			     (unsigned long long)s->mapped);
	free(buf);
	close(fd);
	close(pfd);
	free(part);
	free(err);
	blksrc_free(s);
	return r;
}

int ft_run(const char *cmd, char **ret_out)
{
	char *full = NULL, *out = NULL;
	size_t len = 0, cap = 0;
	char chunk[4096];
	FILE *p;
	int st;

	cr_assert(asprintf(&full, "%s 2>&1", cmd) > 0);
	p = popen(full, "re");
	cr_assert(p, "popen %s", cmd);
	size_t k;
	while ((k = fread(chunk, 1, sizeof(chunk), p)) > 0) {
		if (len + k + 1 > cap) {
			cap = (len + k + 1) * 2;
			out = realloc(out, cap);
			cr_assert(out);
		}
		memcpy(out + len, chunk, k);
		len += k;
	}
	if (!out)
		out = calloc(1, 1);
	out[len] = 0;
	st = pclose(p);
	free(full);
	if (ret_out)
		*ret_out = out;
	else
		free(out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool ft_fsck_ok(const char *part_img, char **ret_out)
{
	char *cmd = NULL, *out = NULL;
	int st;
	bool ok;

	cr_assert(asprintf(&cmd, "fsck.fat -n -v '%s'", part_img) > 0);
	st = ft_run(cmd, &out);
	ok = st == 0 && !strstr(out, "differences") && !strstr(out, "Dirty") && !strstr(out, "wrong") &&
	     !strstr(out, "Free cluster summary") && !strstr(out, "Orphan") && !strstr(out, "Bad ") &&
	     !strstr(out, "invalid") && !strstr(out, "Invalid") && !strstr(out, "Leaving") &&
	     !strstr(out, "duplicate") && !strstr(out, "Perform changes");
	free(cmd);
	if (ret_out)
		*ret_out = out;
	else
		free(out);
	return ok;
}

/* ---- the reader ---- */

static uint16_t g16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t g32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t ft_fs_fat(const struct ft_fs *fs, uint32_t c)
{
	size_t off = (size_t)fs->reserved * fs->bps + (size_t)c * 4;
	cr_assert(off + 4 <= fs->part_len);
	return g32(fs->part + off) & 0x0FFFFFFF;
}

static uint8_t *cluster_ptr(const struct ft_fs *fs, uint32_t c)
{
	cr_assert(c >= 2 && c < fs->n_clusters + 2, "cluster %u out of range", c);
	return fs->part + fs->data_off + (uint64_t)(c - 2) * fs->spc * fs->bps;
}

static void seterr(struct ft_fs *fs, const char *what, const char *where)
{
	if (fs->error)
		return;
	cr_assert(asprintf(&fs->error, "%s: %s", where, what) > 0);
}

/* UTF-16 units → UTF-8, independent of fatname.c. */
static char *u16_to_utf8(const uint16_t *u, size_t n)
{
	char *out = malloc(n * 4 + 1), *p = out;
	cr_assert(out);
	for (size_t i = 0; i < n; i++) {
		uint32_t c = u[i];
		if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && u[i + 1] >= 0xDC00 && u[i + 1] <= 0xDFFF) {
			c = 0x10000 + ((c - 0xD800) << 10) + (u[i + 1] - 0xDC00);
			i++;
		}
		if (c < 0x80)
			*p++ = (char)c;
		else if (c < 0x800) {
			*p++ = (char)(0xC0 | c >> 6);
			*p++ = (char)(0x80 | (c & 0x3F));
		} else if (c < 0x10000) {
			*p++ = (char)(0xE0 | c >> 12);
			*p++ = (char)(0x80 | ((c >> 6) & 0x3F));
			*p++ = (char)(0x80 | (c & 0x3F));
		} else {
			*p++ = (char)(0xF0 | c >> 18);
			*p++ = (char)(0x80 | ((c >> 12) & 0x3F));
			*p++ = (char)(0x80 | ((c >> 6) & 0x3F));
			*p++ = (char)(0x80 | (c & 0x3F));
		}
	}
	*p = 0;
	return out;
}

static void add_entry(struct ft_fs *fs, struct ft_entry e)
{
	fs->e = realloc(fs->e, (fs->n + 1) * sizeof(*fs->e));
	cr_assert(fs->e);
	fs->e[fs->n++] = e;
}

static void read_dir(struct ft_fs *fs, uint32_t first, const char *prefix, uint32_t parent, int depth)
{
	size_t csz = (size_t)fs->spc * fs->bps;
	uint16_t lfn[20 * 13];
	int lfn_next = 0, lfn_count = 0;
	uint8_t lfn_sum = 0;
	bool end = false;
	int guard = 0;

	cr_assert(depth < 4);
	for (uint32_t c = first; !end && c >= 2 && c < 0x0FFFFFF8; c = ft_fs_fat(fs, c)) {
		uint8_t *d = cluster_ptr(fs, c);
		cr_assert(++guard < 100000, "directory chain loops");
		for (size_t off = 0; off < csz; off += 32) {
			uint8_t *e = d + off;
			if (e[0] == 0x00) {
				end = true;
				break;
			}
			if (e[0] == 0xE5)
				continue;
			if (e[11] == 0x0F) {
				int ord = e[0] & 0x1F;
				if (e[0] & 0x40) {
					lfn_count = ord;
					lfn_next = ord;
					lfn_sum = e[13];
					memset(lfn, 0xFF, sizeof(lfn));
				} else if (ord != lfn_next - 1 || e[13] != lfn_sum) {
					seterr(fs, "LFN ordinals or checksums out of sequence", prefix);
				}
				static const int pos[13] = { 1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30 };
				cr_assert(ord >= 1 && ord <= 20);
				for (int j = 0; j < 13; j++)
					lfn[(ord - 1) * 13 + j] = g16(e + pos[j]);
				lfn_next = ord;
				continue;
			}
			char sn[13];
			int k = 0;
			for (int i = 0; i < 8 && e[i] != ' '; i++)
				sn[k++] = (char)e[i];
			if (e[8] != ' ') {
				sn[k++] = '.';
				for (int i = 8; i < 11 && e[i] != ' '; i++)
					sn[k++] = (char)e[i];
			}
			sn[k] = 0;
			if (e[11] & 0x08) { /* volume label */
				lfn_count = 0;
				continue;
			}
			uint32_t cl = (uint32_t)g16(e + 20) << 16 | g16(e + 26);
			if (strcmp(sn, ".") == 0 || strcmp(sn, "..") == 0) {
				if (strcmp(sn, ".") == 0 && cl != first)
					seterr(fs, "'.' does not point at its directory", prefix);
				if (strcmp(sn, "..") == 0 && cl != parent)
					seterr(fs, "'..' does not point at the parent", prefix);
				lfn_count = 0;
				continue;
			}
			char *name;
			if (lfn_count) {
				uint8_t sum = 0;
				for (int i = 0; i < 11; i++)
					sum = (uint8_t)(((sum & 1) << 7) + (sum >> 1) + e[i]);
				if (sum != lfn_sum || lfn_next != 1)
					seterr(fs, "LFN checksum or ordinal mismatch", sn);
				size_t len = 0, max = (size_t)lfn_count * 13;
				while (len < max && lfn[len] != 0)
					len++;
				for (size_t i = len + 1; i < max; i++)
					if (lfn[i] != 0xFFFF)
						seterr(fs, "LFN padding is not 0xFFFF", sn);
				name = u16_to_utf8(lfn, len);
			} else
				name = strdup(sn);
			lfn_count = 0;
			struct ft_entry fe = { 0 };
			cr_assert(asprintf(&fe.path, "%s%s%s", prefix, *prefix ? "/" : "", name) > 0);
			free(name);
			memcpy(fe.shortname, sn, sizeof(sn));
			fe.is_dir = e[11] & 0x10;
			fe.cluster = cl;
			fe.size = g32(e + 28);
			fe.wtime = g16(e + 22);
			fe.wdate = g16(e + 24);
			add_entry(fs, fe);
			if (fe.is_dir)
				read_dir(fs, cl, fs->e[fs->n - 1].path, first == fs->root_cluster ? 0 : first,
					 depth + 1);
		}
	}
}

void ft_fs_open(struct ft_fs *fs, const char *part_img)
{
	struct stat st;
	int fd = open(part_img, O_RDONLY | O_CLOEXEC);
	uint8_t *b;

	memset(fs, 0, sizeof(*fs));
	cr_assert(fd >= 0);
	cr_assert(fstat(fd, &st) == 0);
	fs->part_len = (size_t)st.st_size;
	fs->part = mmap(NULL, fs->part_len, PROT_READ, MAP_PRIVATE, fd, 0);
	cr_assert(fs->part != MAP_FAILED);
	close(fd);
	b = fs->part;
	cr_assert(b[510] == 0x55 && b[511] == 0xAA);
	fs->bps = g16(b + 11);
	fs->spc = b[13];
	fs->reserved = g16(b + 14);
	fs->nfats = b[16];
	fs->fatsz = g32(b + 36);
	fs->root_cluster = g32(b + 44);
	uint32_t tot = g32(b + 32);
	fs->data_off = (uint64_t)(fs->reserved + fs->nfats * fs->fatsz) * fs->bps;
	fs->n_clusters = (uint32_t)((tot - fs->reserved - fs->nfats * fs->fatsz) / fs->spc);
	read_dir(fs, fs->root_cluster, "", 0, 0);
}

void ft_fs_close(struct ft_fs *fs)
{
	for (size_t i = 0; i < fs->n; i++)
		free(fs->e[i].path);
	free(fs->e);
	free(fs->error);
	munmap(fs->part, fs->part_len);
	memset(fs, 0, sizeof(*fs));
}

const struct ft_entry *ft_fs_find(const struct ft_fs *fs, const char *path)
{
	for (size_t i = 0; i < fs->n; i++)
		if (strcmp(fs->e[i].path, path) == 0)
			return &fs->e[i];
	return NULL;
}

uint8_t *ft_fs_read(const struct ft_fs *fs, const struct ft_entry *e)
{
	size_t csz = (size_t)fs->spc * fs->bps, got = 0;
	uint8_t *out = malloc(e->size + 1);
	uint32_t c = e->cluster;

	cr_assert(out);
	while (got < e->size) {
		cr_assert(c >= 2 && c < 0x0FFFFFF8, "%s: chain ends early at %zu bytes", e->path, got);
		size_t k = MIN(csz, e->size - got);
		memcpy(out + got, cluster_ptr(fs, c), k);
		got += k;
		c = ft_fs_fat(fs, c);
	}
	if (e->size)
		cr_assert(c >= 0x0FFFFFF8, "%s: chain longer than the file", e->path);
	return out;
}
