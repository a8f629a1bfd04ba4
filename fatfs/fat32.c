/* The FAT32 composer (see fat32.h): plans the whole filesystem up front (layout, clusters,
 * directory contents, boot sectors) and then serves blksrc reads from a sorted list of
 * segments — fixed buffers (MBR, reserved area, directories), the two FATs generated on the
 * fly from the allocation, and file data read from the content files — with zeros filling the
 * gaps inside the 4 KiB-aligned extents. It owns everything it allocates, including the one
 * content file open at a time (closed by free). */
#include "fatfs/fat32.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h>
#else
#include <xxhash.h>
#endif

#include "fatfs/fatname.h"
#include "util/filehash.h"
#include "util/macro.h"
#include "util/openfile.h"
#include "util/message.h"
#include "util/unaligned.h"

#define SECTOR 512u

/* Fixed-width on-disk fields, space padded, no NUL (hence the exact array sizes). */
static const char oem_name[8] = "MSWIN4.1";
static const char fs_type[8] = "FAT32   ";
static const char default_label[11] = "USBFORGE   ";

/* ---- layout ---- */

static uint32_t table_cluster_size(uint64_t bytes)
{
	const uint64_t GiB = UINT64_C(1) << 30;
	if (bytes <= 8 * GiB)
		return 4096;
	if (bytes <= 16 * GiB)
		return 8192;
	if (bytes <= 32 * GiB)
		return 16384;
	return 32768;
}

/* Clusters left for a FAT of `fat` sectors; fills l. Returns 0 or -ERANGE. */
static int layout_try(uint32_t total, uint32_t cs, uint64_t fat, struct fat_layout *l)
{
	uint32_t spc = cs / SECTOR, align = MAX(cs, 4096u) / SECTOR;
	uint64_t res = ALIGN_UP(32 + 2 * fat, align) - 2 * fat;
	uint64_t meta = res + 2 * fat, clusters;

	if (meta + spc > total)
		return -ERANGE;
	clusters = (total - meta) / spc;
	if (clusters > 0x0FFFFFF5u - 2)
		clusters = 0x0FFFFFF5u - 2;
	l->part_sectors = total;
	l->cluster_size = cs;
	l->reserved_sectors = (uint32_t)res;
	l->fat_sectors = (uint32_t)fat;
	l->n_clusters = (uint32_t)clusters;
	l->fat_offset = FAT_PART_OFFSET + res * SECTOR;
	l->data_offset = FAT_PART_OFFSET + meta * SECTOR;
	l->size = FAT_PART_OFFSET + (uint64_t)total * SECTOR;
	return 0;
}

static bool fat_holds(const struct fat_layout *l)
{
	return ((uint64_t)l->n_clusters + 2) * 4 <= (uint64_t)l->fat_sectors * SECTOR;
}

/* The smallest FAT (in 4 KiB steps) that holds an entry for every cluster it leaves. */
static int layout_for(uint32_t total, uint32_t cs, struct fat_layout *l)
{
	uint64_t fat = 8;
	int r;

	for (;;) { /* grow until it holds */
		r = layout_try(total, cs, fat, l);
		if (r < 0)
			return r;
		if (fat_holds(l))
			break;
		fat = MAX(fat + 8, ALIGN_UP(((uint64_t)l->n_clusters + 2) * 4 / SECTOR, 8));
	}
	while (fat > 8) { /* then shrink while a smaller one still holds */
		struct fat_layout t;
		if (layout_try(total, cs, fat - 8, &t) < 0 || !fat_holds(&t))
			break;
		*l = t;
		fat -= 8;
	}
	return 0;
}

int fat_layout_compute(uint64_t usable_size, struct fat_layout *ret)
{
	struct fat_layout l = { 0 };
	uint64_t sectors;
	uint32_t cs;

	if (usable_size <= FAT_PART_OFFSET)
		return -ERANGE;
	sectors = ALIGN_DOWN((usable_size - FAT_PART_OFFSET) / SECTOR, 8);
	if (sectors > 0xFFFFFFF8u)
		sectors = 0xFFFFFFF8u;
	for (cs = table_cluster_size(usable_size); cs >= SECTOR; cs /= 2) {
		int r = layout_for((uint32_t)sectors, cs, &l);
		if (r == 0 && l.n_clusters >= FAT_MIN_CLUSTERS) {
			*ret = l;
			return 0;
		}
	}
	return -ERANGE;
}

uint64_t fat_file_clusters(const struct fat_layout *l, uint64_t size)
{
	return (size + l->cluster_size - 1) / l->cluster_size;
}

uint64_t fat_dir_clusters(const struct fat_layout *l, uint64_t entries)
{
	uint64_t c = (entries * 32 + l->cluster_size - 1) / l->cluster_size;
	return c ? c : 1;
}

/* ---- the plan ---- */

struct ffile {
	char *rel_path;
	const char *name; /* into dest_path */
	char *dest_path;
	uint64_t size;
	int64_t mtime;
	char sha256[65];
	char xxh128[33];
	uint32_t first_cluster, n_clusters;
};

struct fdir {
	char *name; /* NULL for the root */
	int64_t mtime;
	size_t *files; /* indexes into files[] */
	size_t n_files;
	size_t *subdirs; /* root only: indexes into dirs[] */
	size_t n_subdirs;
	uint64_t entries;
	uint32_t first_cluster, n_clusters;
	uint8_t *buf;
	struct fatname_set *names;
};

enum seg_kind { SEG_BUF, SEG_FAT, SEG_FILE };

struct seg {
	uint64_t off, len;
	enum seg_kind kind;
	const uint8_t *buf;
	size_t file;
};

struct extent {
	uint64_t start, end;
};

/* Content files are read straight into the writer's buffer in pieces of this size, each hashed
 * while it is still in the CPU's cache. */
#define FILE_PIECE (256u << 10)
/* How far ahead of the file being copied the kernel is asked to read (posix_fadvise
 * WILLNEED), so that a cold library on a slow disk streams instead of seeking per file. */
#define READAHEAD_BYTES (32u << 20)
#define READAHEAD_FILES 64

/* The hash a file is checked against: the library's XXH3-128 when it has one (every file
 * scanned since schema v2; util/filehash.h says why), else its SHA-256, else none (an empty
 * digest: tests and tools). */
struct fhash {
	EVP_MD_CTX *md;
	XXH3_state_t *xs;
	enum { FHASH_NONE, FHASH_XXH128, FHASH_SHA256 } kind;
};

struct fat32_src {
	struct blksrc base;
	struct fat_layout L;
	char *root;  /* content root: every file is opened beneath it (open_beneath) */
	int root_fd; /* opened at the first file, by the reading thread; -1 before */
	char label[11];
	uint32_t volume_id;

	struct ffile *files;
	size_t n_files;
	struct fdir *dirs;
	size_t n_dirs;
	uint32_t next_free;
	uint32_t dir_clusters;
	uint32_t *ends; /* last cluster of every allocated object, ascending */
	size_t n_ends;

	uint8_t *mbr;
	uint8_t *reserved;

	struct seg *segs;
	size_t n_segs;
	struct extent *ext;
	size_t n_ext;

	/* read cursor */
	size_t ext_idx;
	uint64_t pos;
	size_t seg_idx;
	int err;

	/* the content file being copied (see emit_file) */
	size_t cur_file; /* index into files[], SIZE_MAX when none is open */
	int cur_fd;
	uint64_t cur_pos;  /* bytes of it copied and hashed */
	size_t ra_next;	   /* the next file not yet advised for read-ahead */
	uint64_t ra_ahead; /* bytes advised ahead of the open file (see advise_ahead) */
	struct fhash fh;
};

static void set_error(struct fat32_src *s, const char *fmt, ...) _printf_(2, 3);
static void set_error(struct fat32_src *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	str_vset(&s->base.error, fmt, ap);
	va_end(ap);
}

static void fat_time(int64_t t, uint16_t *ret_date, uint16_t *ret_time)
{
	struct tm tm;
	time_t tt = (time_t)t;

	/* FAT times are local times (as every FAT reader shows them): the kiosk's time zone */
	if (t < 315532800 || !localtime_r(&tt, &tm)) { /* before 1980-01-01 */
		*ret_date = (0 << 9) | (1 << 5) | 1;
		*ret_time = 0;
		return;
	}
	if (tm.tm_year + 1900 > 2107) {
		*ret_date = (uint16_t)((127 << 9) | (12 << 5) | 31);
		*ret_time = (uint16_t)((23 << 11) | (59 << 5) | 29);
		return;
	}
	*ret_date = (uint16_t)(((tm.tm_year + 1900 - 1980) << 9) | ((tm.tm_mon + 1) << 5) | tm.tm_mday);
	*ret_time = (uint16_t)((tm.tm_hour << 11) | (tm.tm_min << 5) | (tm.tm_sec / 2));
}

/* One short directory entry. */
static void put_dirent(uint8_t *e, const uint8_t sname[11], uint8_t attr, uint32_t cluster, uint32_t size,
		       int64_t mtime)
{
	uint16_t d, t;

	fat_time(mtime, &d, &t);
	memset(e, 0, 32);
	memcpy(e, sname, 11);
	e[11] = attr;
	unaligned_write_le16(e + 14, t); /* creation time */
	unaligned_write_le16(e + 16, d); /* creation date */
	unaligned_write_le16(e + 18, d); /* last access date */
	unaligned_write_le16(e + 20, (uint16_t)(cluster >> 16));
	unaligned_write_le16(e + 22, t); /* write time */
	unaligned_write_le16(e + 24, d); /* write date */
	unaligned_write_le16(e + 26, (uint16_t)cluster);
	unaligned_write_le32(e + 28, size);
}

/* LFN entries for name followed by its short entry at *p; advances *p. */
static int put_named(uint8_t **p, const char *name, const uint8_t sname[11], uint8_t attr, uint32_t cluster,
		     uint32_t size, int64_t mtime)
{
	if (!fatname_is_short(name)) {
		_cleanup_free_ uint16_t *u = NULL;
		size_t n, cnt;
		uint8_t sum = fatname_checksum(sname);
		int r = fatname_utf16(name, &u, &n);

		if (r < 0)
			return r;
		cnt = (n + FATNAME_LFN_UNITS - 1) / FATNAME_LFN_UNITS;
		for (size_t k = cnt; k >= 1; k--) {
			static const uint8_t pos[13] = { 1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30 };
			uint8_t *e = *p;

			memset(e, 0, 32);
			e[0] = (uint8_t)(k | (k == cnt ? 0x40 : 0));
			e[11] = 0x0F;
			e[13] = sum;
			for (size_t j = 0; j < FATNAME_LFN_UNITS; j++) {
				size_t i = (k - 1) * FATNAME_LFN_UNITS + j;
				uint16_t v = i < n ? u[i] : i == n ? 0x0000 : 0xFFFF;
				unaligned_write_le16(e + pos[j], v);
			}
			*p += 32;
		}
	}
	put_dirent(*p, sname, attr, cluster, size, mtime);
	*p += 32;
	return 0;
}

static int build_dir(struct fat32_src *s, size_t di)
{
	struct fdir *d = &s->dirs[di];
	size_t n = di == 0 ? d->n_subdirs + d->n_files : d->n_files;
	_cleanup_free_ const char **names = calloc(n + 1, sizeof(char *));
	_cleanup_free_ uint8_t(*sn)[11] = calloc(n + 1, 11);
	uint8_t *p;
	size_t k = 0;
	int r;

	if (!names || !sn)
		return -ENOMEM;
	if (di == 0)
		for (size_t i = 0; i < d->n_subdirs; i++)
			names[k++] = s->dirs[d->subdirs[i]].name;
	for (size_t i = 0; i < d->n_files; i++)
		names[k++] = s->files[d->files[i]].name;
	r = fatname_short_names(names, n, sn);
	if (r < 0)
		return r;

	d->buf = calloc(d->n_clusters, s->L.cluster_size);
	if (!d->buf)
		return -ENOMEM;
	p = d->buf;
	k = 0;
	if (di == 0) {
		put_dirent(p, (const uint8_t *)s->label, 0x08, 0, 0, d->mtime);
		p += 32;
		for (size_t i = 0; i < d->n_subdirs; i++, k++) {
			struct fdir *sub = &s->dirs[d->subdirs[i]];
			r = put_named(&p, sub->name, sn[k], 0x10, sub->first_cluster, 0, sub->mtime);
			if (r < 0)
				return r;
		}
	} else {
		put_dirent(p, (const uint8_t *)".          ", 0x10, d->first_cluster, 0, d->mtime);
		put_dirent(p + 32, (const uint8_t *)"..         ", 0x10, 0, 0, d->mtime);
		p += 64;
	}
	for (size_t i = 0; i < d->n_files; i++, k++) {
		struct ffile *f = &s->files[d->files[i]];
		r = put_named(&p, f->name, sn[k], 0x20, f->first_cluster, (uint32_t)f->size, f->mtime);
		if (r < 0)
			return r;
	}
	return 0;
}

static void chs(uint32_t lba, uint8_t out[3])
{
	uint32_t c = lba / (255 * 63), h = (lba / 63) % 255, sct = lba % 63 + 1;
	if (c > 1023) {
		c = 1023;
		h = 254;
		sct = 63;
	}
	out[0] = (uint8_t)h;
	out[1] = (uint8_t)(sct | ((c >> 2) & 0xC0));
	out[2] = (uint8_t)c;
}

static void build_boot(struct fat32_src *s)
{
	const struct fat_layout *L = &s->L;
	uint8_t *b = s->reserved, *fi = s->reserved + SECTOR;
	uint32_t free_cl = L->n_clusters - (s->next_free - 2);

	/* MBR */
	unaligned_write_le32(s->mbr + 440, s->volume_id);
	s->mbr[446] = 0x00;
	chs(FAT_PART_OFFSET / SECTOR, s->mbr + 447);
	s->mbr[450] = 0x0C;
	chs((uint32_t)(FAT_PART_OFFSET / SECTOR) + L->part_sectors - 1, s->mbr + 451);
	unaligned_write_le32(s->mbr + 454, FAT_PART_OFFSET / SECTOR);
	unaligned_write_le32(s->mbr + 458, L->part_sectors);
	s->mbr[510] = 0x55;
	s->mbr[511] = 0xAA;

	/* boot sector */
	b[0] = 0xEB;
	b[1] = 0x58;
	b[2] = 0x90;
	memcpy(b + 3, oem_name, sizeof(oem_name));
	unaligned_write_le16(b + 11, SECTOR);
	b[13] = (uint8_t)(L->cluster_size / SECTOR);
	unaligned_write_le16(b + 14, (uint16_t)L->reserved_sectors);
	b[16] = 2;
	b[21] = 0xF8;
	unaligned_write_le16(b + 24, 63);
	unaligned_write_le16(b + 26, 255);
	unaligned_write_le32(b + 28, FAT_PART_OFFSET / SECTOR);
	unaligned_write_le32(b + 32, L->part_sectors);
	unaligned_write_le32(b + 36, L->fat_sectors);
	unaligned_write_le32(b + 44, 2);
	unaligned_write_le16(b + 48, 1);
	unaligned_write_le16(b + 50, 6);
	b[64] = 0x80;
	b[66] = 0x29;
	unaligned_write_le32(b + 67, s->volume_id);
	memcpy(b + 71, s->label, 11);
	memcpy(b + 82, fs_type, sizeof(fs_type));
	b[90] = 0xCD; /* int 0x18: not bootable, let the BIOS try the next device */
	b[91] = 0x18;
	b[92] = 0xEB; /* jmp $ */
	b[93] = 0xFE;
	b[510] = 0x55;
	b[511] = 0xAA;

	/* FSInfo */
	unaligned_write_le32(fi, 0x41615252);
	unaligned_write_le32(fi + 484, 0x61417272);
	unaligned_write_le32(fi + 488, free_cl);
	unaligned_write_le32(fi + 492, free_cl ? s->next_free : 0xFFFFFFFF);
	unaligned_write_le32(fi + 508, 0xAA550000);

	/* backups at 6 and 7 */
	memcpy(s->reserved + (size_t)6 * SECTOR, b, SECTOR);
	memcpy(s->reserved + (size_t)7 * SECTOR, fi, SECTOR);
}

static int add_seg(struct fat32_src *s, size_t *cap, struct seg sg)
{
	if (sg.len == 0)
		return 0;
	if (s->n_segs == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct seg *ns = realloc(s->segs, nc * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		s->segs = ns;
		*cap = nc;
	}
	s->segs[s->n_segs++] = sg;
	return 0;
}

static int build_segments(struct fat32_src *s)
{
	const struct fat_layout *L = &s->L;
	uint64_t fat_bytes = (uint64_t)L->fat_sectors * SECTOR, mapped = 0;
	size_t cap = 0;
	int r;

	r = add_seg(s, &cap, (struct seg){ 0, SECTOR, SEG_BUF, s->mbr, 0 });
	if (r >= 0)
		r = add_seg(s, &cap,
			    (struct seg){ FAT_PART_OFFSET, (uint64_t)L->reserved_sectors * SECTOR, SEG_BUF, s->reserved,
					  0 });
	if (r >= 0)
		r = add_seg(s, &cap, (struct seg){ L->fat_offset, fat_bytes, SEG_FAT, NULL, 0 });
	if (r >= 0)
		r = add_seg(s, &cap, (struct seg){ L->fat_offset + fat_bytes, fat_bytes, SEG_FAT, NULL, 0 });
	for (size_t i = 0; r >= 0 && i < s->n_dirs; i++) {
		struct fdir *d = &s->dirs[i];
		r = add_seg(s, &cap,
			    (struct seg){ L->data_offset + (uint64_t)(d->first_cluster - 2) * L->cluster_size,
					  (uint64_t)d->n_clusters * L->cluster_size, SEG_BUF, d->buf, 0 });
	}
	for (size_t i = 0; r >= 0 && i < s->n_files; i++) {
		struct ffile *f = &s->files[i];
		if (f->size == 0)
			continue;
		r = add_seg(s, &cap,
			    (struct seg){ L->data_offset + (uint64_t)(f->first_cluster - 2) * L->cluster_size, f->size,
					  SEG_FILE, NULL, i });
	}
	if (r < 0)
		return r;

	/* Extents: the whole first MiB and every segment, 4 KiB-aligned, merged when touching. */
	s->ext = calloc(s->n_segs + 1, sizeof(*s->ext));
	if (!s->ext)
		return -ENOMEM;
	s->ext[0] = (struct extent){ 0, FAT_PART_OFFSET };
	s->n_ext = 1;
	for (size_t i = 0; i < s->n_segs; i++) {
		uint64_t a = ALIGN_DOWN(s->segs[i].off, 4096), b = ALIGN_UP(s->segs[i].off + s->segs[i].len, 4096);
		struct extent *last = &s->ext[s->n_ext - 1];
		if (a <= last->end)
			last->end = MAX(last->end, b);
		else
			s->ext[s->n_ext++] = (struct extent){ a, b };
	}
	for (size_t i = 0; i < s->n_ext; i++)
		mapped += s->ext[i].end - s->ext[i].start;
	s->base.size = L->size;
	s->base.mapped = mapped;
	s->pos = s->ext[0].start;
	return 0;
}

/* ---- reading ---- */

static uint32_t fat_entry(const struct fat32_src *s, uint64_t e, size_t *hint)
{
	if (e == 0)
		return 0x0FFFFFF8;
	if (e == 1)
		return 0x0FFFFFFF;
	if (e >= s->next_free)
		return 0;
	while (*hint < s->n_ends && s->ends[*hint] < e)
		(*hint)++;
	return *hint < s->n_ends && s->ends[*hint] == e ? 0x0FFFFFFF : (uint32_t)(e + 1);
}

static void emit_fat(const struct fat32_src *s, uint8_t *buf, uint64_t rel, uint64_t len)
{
	uint64_t e = rel / 4;
	size_t lo = 0, hi = s->n_ends;
	uint8_t tmp[4];

	while (lo < hi) { /* first end >= e */
		size_t mid = (lo + hi) / 2;
		if (s->ends[mid] < e)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint64_t done = 0; done < len;) {
		uint64_t in = (rel + done) % 4;
		uint64_t n = MIN(4 - in, len - done);
		unaligned_write_le32(tmp, fat_entry(s, e, &lo));
		memcpy(buf + done, tmp + in, n);
		done += n;
		e++;
	}
}

/* ---- copying the content files ----
 * Each file is read once, in placement order, by the caller's thread (the writer's producer),
 * straight into the buffer the writer is filling, FILE_PIECE bytes per read() and each piece
 * hashed at once, while it sits in the cache: no copy from a staging ring, no thread hand-off.
 * Opening a file checks it against the item (a regular file of the same size and mtime); the
 * hash verdict comes when its last byte has been read, so a file that changed since the scan
 * fails the read that reaches its end (CONTENT_CHANGED), before the writer has finished and
 * before anything is verified. The kernel reads ahead: POSIX_FADV_SEQUENTIAL on the open file
 * and WILLNEED on the next files, up to READAHEAD_BYTES / READAHEAD_FILES ahead. */

static int fhash_begin(struct fhash *h, const struct ffile *f)
{
	h->kind = f->xxh128[0] ? FHASH_XXH128 : f->sha256[0] ? FHASH_SHA256 : FHASH_NONE;
	if (h->kind == FHASH_XXH128)
		return XXH3_128bits_reset(h->xs) == XXH_OK ? 0 : -EIO;
	if (h->kind == FHASH_SHA256)
		return EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
	return 0;
}

static int fhash_update(struct fhash *h, const void *p, size_t n)
{
	if (h->kind == FHASH_XXH128)
		return XXH3_128bits_update(h->xs, p, n) == XXH_OK ? 0 : -EIO;
	if (h->kind == FHASH_SHA256)
		return EVP_DigestUpdate(h->md, p, n) == 1 ? 0 : -EIO;
	return 0;
}

/* 0 when the file's bytes match the library; -EBADMSG (with the error set) when not; -EIO. */
static int fhash_check(struct fat32_src *s, const struct ffile *f)
{
	struct fhash *h = &s->fh;
	char hex[FILEHASH_SHA256_HEX];
	const char *want = NULL, *name = NULL;

	if (h->kind == FHASH_XXH128) {
		XXH128_hash_t x = XXH3_128bits_digest(h->xs);
		filehash_xxh128_hex(x.high64, x.low64, hex);
		want = f->xxh128;
		name = "xxh128";
	} else if (h->kind == FHASH_SHA256) {
		unsigned char d[EVP_MAX_MD_SIZE];
		unsigned dl = 0;
		if (EVP_DigestFinal_ex(h->md, d, &dl) != 1 || dl != 32) {
			set_error(s, "%s: SHA-256 failed", f->rel_path);
			return -EIO;
		}
		filehash_hex(d, 32, hex);
		want = f->sha256;
		name = "sha256";
	} else
		return 0;
	if (strcmp(hex, want) != 0) {
		set_error(s, "%s: content changed since the scan: %s mismatch (library %s, file %s)", f->rel_path, name,
			  want, hex);
		return -EBADMSG;
	}
	return 0;
}

static void close_file(struct fat32_src *s)
{
	if (s->cur_fd >= 0)
		close(s->cur_fd);
	s->cur_fd = -1;
	s->cur_file = SIZE_MAX;
	s->cur_pos = 0;
}

/* Ask the kernel to start reading the files after i (they are read in index order). */
static void advise_ahead(struct fat32_src *s, size_t i)
{
	/* ra_ahead = the bytes of the files (i, ra_next) already advised (files open in order) */
	if (s->ra_next <= i) {
		s->ra_next = i + 1;
		s->ra_ahead = 0;
	} else
		s->ra_ahead -= s->files[i].size;
	for (; s->ra_next < s->n_files && s->ra_next - i <= READAHEAD_FILES && s->ra_ahead < READAHEAD_BYTES;
	     s->ra_next++) {
		const struct ffile *f = &s->files[s->ra_next];
		s->ra_ahead += f->size;
		if (f->size == 0 || s->root_fd < 0)
			continue;
		int fd = open_beneath(s->root_fd, f->rel_path, NULL);
		if (fd < 0)
			continue; /* it fails properly when its turn comes */
		(void)posix_fadvise(fd, 0, (off_t)MIN(f->size, (uint64_t)READAHEAD_BYTES), POSIX_FADV_WILLNEED);
		close(fd);
	}
}

static int open_file(struct fat32_src *s, size_t i)
{
	const struct ffile *f = &s->files[i];
	struct stat st;

	close_file(s);
	if (s->root_fd < 0) {
		s->root_fd = open_root_dir(s->root);
		if (s->root_fd < 0) {
			int r = s->root_fd;
			set_error(s, "content root '%s': %s", s->root, strerror(-r));
			return r == -ENOTDIR ? -ENOENT : r;
		}
	}
	/* beneath the root only, no symlink on the way, never blocking: a row or a file swapped
	 * since the scan cannot make the composer read anything else */
	int fd = open_beneath(s->root_fd, f->rel_path, &st);
	if (fd < 0) {
		set_error(s, "%s: %s", f->rel_path, open_strerror(s->root_fd, f->rel_path, fd));
		switch (fd) {
		case -ENOENT:
		case -ENOTDIR:
			return -ENOENT; /* CONTENT_MISSING */
		case -EXDEV:
		case -ELOOP:
		case -EINVAL:
		case -EISDIR:
		case -ENXIO:
			return -EBADMSG; /* not the regular file the scan saw: CONTENT_CHANGED */
		default:
			return fd;
		}
	}
	if ((uint64_t)st.st_size != f->size) {
		close(fd);
		set_error(s, "%s: size changed (%llu bytes, expected %llu)", f->rel_path,
			  (unsigned long long)st.st_size, (unsigned long long)f->size);
		return -EBADMSG;
	}
	if ((int64_t)st.st_mtime != f->mtime) {
		close(fd);
		set_error(s, "%s: mtime changed (%lld, expected %lld)", f->rel_path, (long long)st.st_mtime,
			  (long long)f->mtime);
		return -EBADMSG;
	}
	if (!s->fh.xs)
		s->fh.xs = XXH3_createState();
	if (!s->fh.md)
		s->fh.md = EVP_MD_CTX_new();
	if (!s->fh.xs || !s->fh.md) {
		close(fd);
		return -ENOMEM;
	}
	if (fhash_begin(&s->fh, f) < 0) {
		close(fd);
		set_error(s, "%s: cannot start the content hash", f->rel_path);
		return -EIO;
	}
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	s->cur_fd = fd;
	s->cur_file = i;
	s->cur_pos = 0;
	advise_ahead(s, i);
	return 0;
}

/* Copy bytes [rel, rel + len) of file i into buf. Files are copied in order, each from its
 * first byte to its last. */
static int emit_file(struct fat32_src *s, size_t i, uint8_t *buf, uint64_t rel, uint64_t len)
{
	const struct ffile *f = &s->files[i];
	int r;

	if (s->cur_file != i) {
		if (rel != 0) {
			set_error(s, "%s: internal error: non-sequential read", f->rel_path);
			return -EIO;
		}
		r = open_file(s, i);
		if (r < 0)
			return r;
	}
	if (rel != s->cur_pos) {
		set_error(s, "%s: internal error: non-sequential read", f->rel_path);
		return -EIO;
	}
	for (uint64_t got = 0; got < len;) {
		ssize_t n = read(s->cur_fd, buf + got, (size_t)MIN(len - got, (uint64_t)FILE_PIECE));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			set_error(s, "%s: read failed at byte %llu: %s", f->rel_path,
				  (unsigned long long)s->cur_pos + got, strerror(-r));
			return r;
		}
		if (n == 0) {
			set_error(s, "%s: shorter than %llu bytes (changed while reading)", f->rel_path,
				  (unsigned long long)f->size);
			return -EBADMSG;
		}
		if (fhash_update(&s->fh, buf + got, (size_t)n) < 0) {
			set_error(s, "%s: content hash failed", f->rel_path);
			return -EIO;
		}
		got += (uint64_t)n;
	}
	s->cur_pos += len;
	if (s->cur_pos == f->size) { /* the verdict */
		close_file(s);
		r = fhash_check(s, f);
		if (r < 0)
			return r;
	}
	return 0;
}

static int fill(struct fat32_src *s, uint8_t *buf, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;

	while (off < end) {
		while (s->seg_idx < s->n_segs && s->segs[s->seg_idx].off + s->segs[s->seg_idx].len <= off)
			s->seg_idx++;
		if (s->seg_idx == s->n_segs || s->segs[s->seg_idx].off >= end) {
			memset(buf, 0, end - off);
			return 0;
		}
		const struct seg *g = &s->segs[s->seg_idx];
		if (g->off > off) {
			memset(buf, 0, g->off - off);
			buf += g->off - off;
			off = g->off;
			continue;
		}
		uint64_t n = MIN(end, g->off + g->len) - off, rel = off - g->off;
		switch (g->kind) {
		case SEG_BUF:
			memcpy(buf, g->buf + rel, n);
			break;
		case SEG_FAT:
			emit_fat(s, buf, rel, n);
			break;
		case SEG_FILE: {
			int r = emit_file(s, g->file, buf, rel, n);
			if (r < 0)
				return r;
			break;
		}
		}
		buf += n;
		off += n;
	}
	return 0;
}

static ssize_t fat32_read(struct blksrc *b, void *buf, size_t len, uint64_t *ret_off)
{
	struct fat32_src *s = (struct fat32_src *)b;
	uint64_t n, off;
	int r;

	if (s->err)
		return s->err;
	if (len == 0 || len % 4096)
		return -EINVAL;
	if (s->ext_idx >= s->n_ext)
		return 0;
	off = s->pos;
	n = MIN((uint64_t)len, s->ext[s->ext_idx].end - off);
	r = fill(s, buf, off, n);
	if (r < 0) {
		s->err = r;
		return r;
	}
	s->pos += n;
	if (s->pos == s->ext[s->ext_idx].end && ++s->ext_idx < s->n_ext)
		s->pos = s->ext[s->ext_idx].start;
	*ret_off = off;
	return (ssize_t)n;
}

static void fat32_free(struct blksrc *b)
{
	struct fat32_src *s = (struct fat32_src *)b;

	close_file(s);
	EVP_MD_CTX_free(s->fh.md);
	if (s->fh.xs)
		XXH3_freeState(s->fh.xs);
	for (size_t i = 0; i < s->n_files; i++) {
		free(s->files[i].rel_path);
		free(s->files[i].dest_path);
	}
	free(s->files);
	for (size_t i = 0; i < s->n_dirs; i++) {
		free(s->dirs[i].name);
		free(s->dirs[i].files);
		free(s->dirs[i].subdirs);
		free(s->dirs[i].buf);
		fatname_set_free(s->dirs[i].names);
	}
	free(s->dirs);
	free(s->ends);
	free(s->mbr);
	free(s->reserved);
	free(s->segs);
	free(s->ext);
	free(s->root);
	if (s->root_fd >= 0)
		close(s->root_fd);
	free(s->base.error);
	free(s);
}

static const struct blksrc_ops fat32_ops = {
	.read = fat32_read,
	.free = fat32_free,
};

/* ---- composing ---- */

static int push_idx(size_t **arr, size_t *n, size_t v)
{
	size_t *na = realloc(*arr, (*n + 1) * sizeof(size_t));
	if (!na)
		return -ENOMEM;
	na[(*n)++] = v;
	*arr = na;
	return 0;
}

static uint32_t derive_volume_id(const struct job_item *items, size_t n)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char h[EVP_MAX_MD_SIZE];
	unsigned hl = 0;
	uint32_t id = 0x55464F52; /* "UFOR" */

	if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
		for (size_t i = 0; i < n; i++) {
			char meta[64];
			int l = snprintf(meta, sizeof(meta), "|%llu|%lld|", (unsigned long long)items[i].size,
					 (long long)items[i].mtime);
			EVP_DigestUpdate(md, items[i].dest_path, strlen(items[i].dest_path));
			EVP_DigestUpdate(md, meta, (size_t)l);
		}
		if (EVP_DigestFinal_ex(md, h, &hl) == 1 && hl >= 4)
			id = unaligned_read_le32(h);
	}
	EVP_MD_CTX_free(md);
	return id ? id : 1;
}

static void make_label(const char *in, char out[11])
{
	size_t k = 0;

	memset(out, ' ', 11);
	for (; in && *in && k < 11; in++) {
		unsigned char c = (unsigned char)*in;
		if (c >= 'a' && c <= 'z')
			c = (unsigned char)(c - 32);
		if (c == ' ' || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    (c && strchr("!#$%&'()-@^_`{}~", c)))
			out[k++] = (char)c;
		else
			out[k++] = '_';
	}
	if (k == 0)
		memcpy(out, default_label, sizeof(default_label));
}

static int plan(struct fat32_src *s, const struct job_item *items, size_t n, char **ret_error)
{
	const struct fat_layout *L = &s->L;
	uint64_t cl;
	int r;

	s->files = calloc(n + 1, sizeof(*s->files));
	s->dirs = calloc(1, sizeof(*s->dirs));
	if (!s->files || !s->dirs)
		return -ENOMEM;
	s->n_dirs = 1;
	r = fatname_set_new(&s->dirs[0].names);
	if (r < 0)
		return r;

	for (size_t i = 0; i < n; i++) {
		struct ffile *f = &s->files[i];
		const char *dp = items[i].dest_path, *slash;
		size_t di = 0;

		f->dest_path = strdup(dp ? dp : "");
		f->rel_path = strdup(items[i].rel_path ? items[i].rel_path : "");
		if (!f->dest_path || !f->rel_path)
			return -ENOMEM;
		s->n_files = i + 1;
		f->size = items[i].size;
		f->mtime = items[i].mtime;
		memcpy(f->sha256, items[i].sha256, sizeof(f->sha256));
		f->sha256[64] = 0;
		memcpy(f->xxh128, items[i].xxh128, sizeof(f->xxh128));
		f->xxh128[32] = 0;
		if (f->size > FAT_MAX_FILE_SIZE)
			return error_set(ret_error, -EINVAL, "%s: 4 GiB or more does not fit FAT32", f->dest_path);

		slash = strchr(f->dest_path, '/');
		f->name = slash ? slash + 1 : f->dest_path;
		if (slash) {
			_cleanup_free_ char *folder = strndup(f->dest_path, (size_t)(slash - f->dest_path));
			if (!folder)
				return -ENOMEM;
			if (!fatname_is_valid(folder))
				return error_set(ret_error, -EINVAL, "%s: invalid folder name", f->dest_path);
			for (di = 1; di < s->n_dirs; di++)
				if (strcmp(s->dirs[di].name, folder) == 0)
					break;
			if (di == s->n_dirs) {
				struct fdir *nd;
				if (fatname_set_contains(s->dirs[0].names, folder))
					return error_set(ret_error, -EINVAL, "%s: folder name taken (case-insensitive)",
							 f->dest_path);
				nd = realloc(s->dirs, (s->n_dirs + 1) * sizeof(*nd));
				if (!nd)
					return -ENOMEM;
				s->dirs = nd;
				memset(&nd[di], 0, sizeof(nd[di]));
				s->n_dirs++;
				nd[di].name = TAKE_PTR(folder);
				r = fatname_set_new(&nd[di].names);
				if (r >= 0) {
					_cleanup_free_ char *got = NULL;
					r = fatname_set_add_unique(nd[0].names, nd[di].name, &got);
				}
				if (r >= 0)
					r = push_idx(&nd[0].subdirs, &nd[0].n_subdirs, di);
				if (r < 0)
					return r;
			}
		}
		if (!fatname_is_valid(f->name))
			return error_set(ret_error, -EINVAL, "%s: invalid file name", f->dest_path);
		if (fatname_set_contains(s->dirs[di].names, f->name))
			return error_set(ret_error, -EINVAL, "%s: duplicate name (case-insensitive)", f->dest_path);
		{
			_cleanup_free_ char *got = NULL;
			r = fatname_set_add_unique(s->dirs[di].names, f->name, &got);
			if (r < 0)
				return r;
		}
		r = push_idx(&s->dirs[di].files, &s->dirs[di].n_files, i);
		if (r < 0)
			return r;
		if (f->mtime > s->dirs[di].mtime)
			s->dirs[di].mtime = f->mtime;
		if (f->mtime > s->dirs[0].mtime)
			s->dirs[0].mtime = f->mtime;
	}

	/* Directory sizes. */
	for (size_t di = 0; di < s->n_dirs; di++) {
		struct fdir *d = &s->dirs[di];
		d->entries = di == 0 ? 1 : 2;
		if (di == 0)
			for (size_t i = 0; i < d->n_subdirs; i++)
				d->entries += fatname_entries(s->dirs[d->subdirs[i]].name);
		for (size_t i = 0; i < d->n_files; i++)
			d->entries += fatname_entries(s->files[d->files[i]].name);
		if (d->entries > FAT_DIR_MAX_ENTRIES)
			return error_set(ret_error, -ENOSPC, "folder '%s' would need %llu entries (FAT allows %u)",
					 d->name ? d->name : "/", (unsigned long long)d->entries, FAT_DIR_MAX_ENTRIES);
	}

	/* Allocation: directories first, then files in item order. */
	s->ends = calloc(s->n_dirs + n + 1, sizeof(uint32_t));
	if (!s->ends)
		return -ENOMEM;
	cl = 2;
	for (size_t di = 0; di < s->n_dirs; di++) {
		struct fdir *d = &s->dirs[di];
		uint64_t c = fat_dir_clusters(L, d->entries);
		if (cl + c > (uint64_t)L->n_clusters + 2)
			return error_set(ret_error, -ENOSPC, "directories alone need more than %u clusters",
					 L->n_clusters);
		d->first_cluster = (uint32_t)cl;
		d->n_clusters = (uint32_t)c;
		cl += c;
		s->ends[s->n_ends++] = (uint32_t)(cl - 1);
	}
	s->dir_clusters = (uint32_t)(cl - 2);
	for (size_t i = 0; i < n; i++) {
		struct ffile *f = &s->files[i];
		uint64_t c = fat_file_clusters(L, f->size);
		if (c == 0)
			continue;
		if (cl + c > (uint64_t)L->n_clusters + 2)
			return error_set(ret_error, -ENOSPC,
					 "content does not fit: %s needs %llu clusters, %llu of %u are free",
					 f->dest_path, (unsigned long long)c,
					 (unsigned long long)(L->n_clusters + 2 - cl), L->n_clusters);
		f->first_cluster = (uint32_t)cl;
		f->n_clusters = (uint32_t)c;
		cl += c;
		s->ends[s->n_ends++] = (uint32_t)(cl - 1);
	}
	s->next_free = (uint32_t)cl;
	return 0;
}

int fat32_compose(const struct fat_opts *opts, const struct job_item *items, size_t n, struct blksrc **ret,
		  char **ret_error)
{
	struct fat32_src *s;
	int r;

	if (ret_error)
		*ret_error = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base.ops = &fat32_ops;
	s->cur_fd = -1;
	s->root_fd = -1;
	s->cur_file = SIZE_MAX;

	r = fat_layout_compute(opts->usable_size, &s->L);
	if (r < 0) {
		r = error_set(ret_error, r, "a stick of %llu bytes is too small for FAT32",
			      (unsigned long long)opts->usable_size);
		goto out;
	}
	s->root = strdup(opts->content_root ? opts->content_root : ".");
	s->mbr = calloc(1, SECTOR);
	s->reserved = calloc(s->L.reserved_sectors, SECTOR);
	if (!s->root || !s->mbr || !s->reserved) {
		r = -ENOMEM;
		goto out;
	}
	make_label(opts->label ? opts->label : "USBFORGE", s->label);
	s->volume_id = opts->volume_id ? opts->volume_id : derive_volume_id(items, n);

	r = plan(s, items, n, ret_error);
	if (r < 0)
		goto out;
	for (size_t di = 0; di < s->n_dirs; di++) {
		r = build_dir(s, di);
		if (r < 0)
			goto out;
	}
	build_boot(s);
	r = build_segments(s);
	if (r < 0)
		goto out;
	*ret = &s->base;
	return 0;
out:
	if (r == -ENOMEM && ret_error && !*ret_error)
		*ret_error = strdup("out of memory");
	fat32_free(&s->base);
	return r;
}

void fat32_stats(const struct blksrc *b, struct fat_stats *ret)
{
	const struct fat32_src *s = (const struct fat32_src *)b;

	*ret = (struct fat_stats){
		.layout = s->L,
		.used_clusters = s->next_free - 2,
		.free_clusters = s->L.n_clusters - (s->next_free - 2),
		.dir_clusters = s->dir_clusters,
		.volume_id = s->volume_id,
	};
}
