/* The FAT32 composer (see fat32.h): plans the whole filesystem up front (layout, clusters,
 * directory contents, boot sectors) and then serves blksrc reads from a sorted list of
 * segments — fixed buffers (MBR, reserved area, directories), the two FATs generated on the
 * fly from the allocation, and file data read from the content files — with zeros filling the
 * gaps inside the 4 KiB-aligned extents. It owns everything it allocates, including the
 * read-ahead workers (started by the first read of file data, stopped and joined by free),
 * each of which holds at most one open content file at a time. */
#include "stages/fat32.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
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

#include "stages/fatname.h"
#include "util/filehash.h"
#include "util/macro.h"

#define SECTOR 512u

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
	struct fat_layout l = {0};
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

#define RA_SLOTS	64
#define RA_CHUNK	(256u << 10)
#define RA_PIECE	(256u << 10) /* read and hash in pieces that stay in the CPU cache */
#define RA_MAX_WORKERS	4

struct ra_slot {
	uint8_t *data; /* RA_CHUNK bytes, owned */
	uint64_t seq;  /* position in the chunk sequence (slot = seq % RA_SLOTS) */
	bool ready;    /* filled and published, not yet consumed */
	size_t len;    /* bytes of file data in data */
	size_t file;
	uint64_t off; /* file offset of data[0] */
	int err;      /* < 0: the file failed (open, read, or the SHA-256 verdict carried by its
		       * last chunk); msg says why; the consumer fails before copying */
	char *msg;
};

struct fat32_src {
	struct blksrc base;
	struct fat_layout L;
	char *root;
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

	/* read-ahead (see below) */
	struct ra_slot ra[RA_SLOTS];
	uint64_t ra_head;      /* sequence number of the chunk the consumer reads next */
	uint64_t ra_used;      /* bytes of the head slot already copied out */
	size_t ra_next_file;   /* next file a worker claims */
	uint64_t ra_next_seq;  /* sequence number of that file's first chunk */
	bool ra_stop, ra_failed, ra_started;
	pthread_t ra_threads[RA_MAX_WORKERS];
	size_t n_ra_threads;
	pthread_mutex_t ra_lock;
	pthread_cond_t ra_can_put, ra_can_get;
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void set_error(struct fat32_src *s, const char *fmt, ...) _printf_(2, 3);
static void set_error(struct fat32_src *s, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	free(s->base.error);
	s->base.error = m;
}

static void fat_time(int64_t t, uint16_t *ret_date, uint16_t *ret_time)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (t < 315532800 || !gmtime_r(&tt, &tm)) { /* before 1980-01-01 */
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
	put16(e + 14, t); /* creation time */
	put16(e + 16, d); /* creation date */
	put16(e + 18, d); /* last access date */
	put16(e + 20, (uint16_t)(cluster >> 16));
	put16(e + 22, t); /* write time */
	put16(e + 24, d); /* write date */
	put16(e + 26, (uint16_t)cluster);
	put32(e + 28, size);
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
			static const uint8_t pos[13] = {1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30};
			uint8_t *e = *p;

			memset(e, 0, 32);
			e[0] = (uint8_t)(k | (k == cnt ? 0x40 : 0));
			e[11] = 0x0F;
			e[13] = sum;
			for (size_t j = 0; j < FATNAME_LFN_UNITS; j++) {
				size_t i = (k - 1) * FATNAME_LFN_UNITS + j;
				uint16_t v = i < n ? u[i] : i == n ? 0x0000 : 0xFFFF;
				put16(e + pos[j], v);
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
	put32(s->mbr + 440, s->volume_id);
	s->mbr[446] = 0x00;
	chs(FAT_PART_OFFSET / SECTOR, s->mbr + 447);
	s->mbr[450] = 0x0C;
	chs((uint32_t)(FAT_PART_OFFSET / SECTOR) + L->part_sectors - 1, s->mbr + 451);
	put32(s->mbr + 454, FAT_PART_OFFSET / SECTOR);
	put32(s->mbr + 458, L->part_sectors);
	s->mbr[510] = 0x55;
	s->mbr[511] = 0xAA;

	/* boot sector */
	b[0] = 0xEB;
	b[1] = 0x58;
	b[2] = 0x90;
	memcpy(b + 3, "MSWIN4.1", 8);
	put16(b + 11, SECTOR);
	b[13] = (uint8_t)(L->cluster_size / SECTOR);
	put16(b + 14, (uint16_t)L->reserved_sectors);
	b[16] = 2;
	b[21] = 0xF8;
	put16(b + 24, 63);
	put16(b + 26, 255);
	put32(b + 28, FAT_PART_OFFSET / SECTOR);
	put32(b + 32, L->part_sectors);
	put32(b + 36, L->fat_sectors);
	put32(b + 44, 2);
	put16(b + 48, 1);
	put16(b + 50, 6);
	b[64] = 0x80;
	b[66] = 0x29;
	put32(b + 67, s->volume_id);
	memcpy(b + 71, s->label, 11);
	memcpy(b + 82, "FAT32   ", 8);
	b[90] = 0xCD; /* int 0x18: not bootable, let the BIOS try the next device */
	b[91] = 0x18;
	b[92] = 0xEB; /* jmp $ */
	b[93] = 0xFE;
	b[510] = 0x55;
	b[511] = 0xAA;

	/* FSInfo */
	put32(fi, 0x41615252);
	put32(fi + 484, 0x61417272);
	put32(fi + 488, free_cl);
	put32(fi + 492, free_cl ? s->next_free : 0xFFFFFFFF);
	put32(fi + 508, 0xAA550000);

	/* backups at 6 and 7 */
	memcpy(s->reserved + 6 * SECTOR, b, SECTOR);
	memcpy(s->reserved + 7 * SECTOR, fi, SECTOR);
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

	r = add_seg(s, &cap, (struct seg){0, SECTOR, SEG_BUF, s->mbr, 0});
	if (r >= 0)
		r = add_seg(s, &cap,
			    (struct seg){FAT_PART_OFFSET, (uint64_t)L->reserved_sectors * SECTOR, SEG_BUF,
					 s->reserved, 0});
	if (r >= 0)
		r = add_seg(s, &cap, (struct seg){L->fat_offset, fat_bytes, SEG_FAT, NULL, 0});
	if (r >= 0)
		r = add_seg(s, &cap, (struct seg){L->fat_offset + fat_bytes, fat_bytes, SEG_FAT, NULL, 0});
	for (size_t i = 0; r >= 0 && i < s->n_dirs; i++) {
		struct fdir *d = &s->dirs[i];
		r = add_seg(s, &cap,
			    (struct seg){L->data_offset + (uint64_t)(d->first_cluster - 2) * L->cluster_size,
					 (uint64_t)d->n_clusters * L->cluster_size, SEG_BUF, d->buf, 0});
	}
	for (size_t i = 0; r >= 0 && i < s->n_files; i++) {
		struct ffile *f = &s->files[i];
		if (f->size == 0)
			continue;
		r = add_seg(s, &cap,
			    (struct seg){L->data_offset + (uint64_t)(f->first_cluster - 2) * L->cluster_size,
					 f->size, SEG_FILE, NULL, i});
	}
	if (r < 0)
		return r;

	/* Extents: the whole first MiB and every segment, 4 KiB-aligned, merged when touching. */
	s->ext = calloc(s->n_segs + 1, sizeof(*s->ext));
	if (!s->ext)
		return -ENOMEM;
	s->ext[0] = (struct extent){0, FAT_PART_OFFSET};
	s->n_ext = 1;
	for (size_t i = 0; i < s->n_segs; i++) {
		uint64_t a = ALIGN_DOWN(s->segs[i].off, 4096),
			 b = ALIGN_UP(s->segs[i].off + s->segs[i].len, 4096);
		struct extent *last = &s->ext[s->n_ext - 1];
		if (a <= last->end)
			last->end = MAX(last->end, b);
		else
			s->ext[s->n_ext++] = (struct extent){a, b};
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
		put32(tmp, fat_entry(s, e, &lo));
		memcpy(buf + done, tmp + in, n);
		done += n;
		e++;
	}
}

/* ---- the read-ahead workers ----
 * Up to RA_MAX_WORKERS threads (one per online CPU, at least 2) read the content files,
 * check them and hash them with SHA-256, so that hashing, which costs more CPU than anything
 * else on the path, runs on several cores and overlaps with the caller's writes. Each worker
 * claims the next whole file in placement order (a file's SHA-256 is sequential) and fills
 * its chunks (RA_CHUNK-byte reads) into a ring of RA_SLOTS buffers. Chunks are numbered in
 * placement order when a file is claimed (a file of size z takes ceil(z / RA_CHUNK) numbers),
 * chunk g goes into slot g % RA_SLOTS once the consumer is within RA_SLOTS of it, and blksrc
 * reads copy the chunks out in number order. The lowest chunk not yet filled always belongs
 * to a claimed file whose worker can fill it, so the ring cannot deadlock. A file's last
 * chunk carries its SHA-256 verdict, so a mismatch surfaces at the read that reaches the
 * file's last chunk; open/fstat/read failures come as an error chunk in place of the failing
 * one, and after a failure no worker claims another file. Started by the first read of file
 * data. */

static void ra_set_msg(struct ra_slot *sl, const char *fmt, ...) _printf_(2, 3);
static void ra_set_msg(struct ra_slot *sl, const char *fmt, ...)
{
	va_list ap;

	free(sl->msg);
	sl->msg = NULL;
	va_start(ap, fmt);
	if (vasprintf(&sl->msg, fmt, ap) < 0)
		sl->msg = NULL;
	va_end(ap);
}

/* Wait until chunk seq's slot is free and reset it for file i; NULL when asked to stop. */
static struct ra_slot *ra_reserve(struct fat32_src *s, size_t i, uint64_t seq)
{
	struct ra_slot *sl = NULL;
	char *old_msg = NULL;

	pthread_mutex_lock(&s->ra_lock);
	while (seq >= s->ra_head + RA_SLOTS && !s->ra_stop)
		pthread_cond_wait(&s->ra_can_put, &s->ra_lock);
	if (!s->ra_stop) {
		/* reset under the lock: the consumer may be polling this slot's ready flag */
		sl = &s->ra[seq % RA_SLOTS];
		old_msg = sl->msg;
		*sl = (struct ra_slot){.data = sl->data, .seq = seq, .file = i};
	}
	pthread_mutex_unlock(&s->ra_lock);
	free(old_msg);
	return sl;
}

static void ra_publish(struct fat32_src *s, struct ra_slot *sl)
{
	pthread_mutex_lock(&s->ra_lock);
	sl->ready = true;
	if (sl->seq == s->ra_head)
		pthread_cond_signal(&s->ra_can_get);
	pthread_mutex_unlock(&s->ra_lock);
}

/* Read, check and hash file i into the ring as chunks seq, seq + 1, … Returns 0, or < 0
 * after queueing an error chunk (or when stopped). */
/* Each read-ahead worker's hash state. A file is checked against the library's XXH3-128 when
 * the library has it (every file scanned since schema v2; util/filehash.h says why), else
 * against its SHA-256, else not at all (an empty digest: tests and tools). */
struct ra_hash {
	EVP_MD_CTX *md;
	XXH3_state_t *xs;
	enum { RA_HASH_NONE, RA_HASH_XXH128, RA_HASH_SHA256 } kind;
};

static int ra_hash_begin(struct ra_hash *h, const struct ffile *f)
{
	h->kind = f->xxh128[0] ? RA_HASH_XXH128 : f->sha256[0] ? RA_HASH_SHA256 : RA_HASH_NONE;
	if (h->kind == RA_HASH_XXH128)
		return XXH3_128bits_reset(h->xs) == XXH_OK ? 0 : -EIO;
	if (h->kind == RA_HASH_SHA256)
		return EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
	return 0;
}

static int ra_hash_update(struct ra_hash *h, const void *p, size_t n)
{
	if (h->kind == RA_HASH_XXH128)
		return XXH3_128bits_update(h->xs, p, n) == XXH_OK ? 0 : -EIO;
	if (h->kind == RA_HASH_SHA256)
		return EVP_DigestUpdate(h->md, p, n) == 1 ? 0 : -EIO;
	return 0;
}

/* 0 when the file's bytes match the library, -EBADMSG (message in sl) when not, -EIO. */
static int ra_hash_check(struct ra_hash *h, const struct ffile *f, struct ra_slot *sl)
{
	char hex[FILEHASH_SHA256_HEX];
	const char *want = NULL, *name = NULL;

	if (h->kind == RA_HASH_XXH128) {
		XXH128_hash_t x = XXH3_128bits_digest(h->xs);
		filehash_xxh128_hex(x.high64, x.low64, hex);
		want = f->xxh128;
		name = "xxh128";
	} else if (h->kind == RA_HASH_SHA256) {
		unsigned char d[EVP_MAX_MD_SIZE];
		unsigned dl = 0;
		if (EVP_DigestFinal_ex(h->md, d, &dl) != 1 || dl != 32) {
			ra_set_msg(sl, "%s: SHA-256 failed", f->rel_path);
			return -EIO;
		}
		filehash_hex(d, 32, hex);
		want = f->sha256;
		name = "sha256";
	} else
		return 0;
	if (strcmp(hex, want) != 0) {
		ra_set_msg(sl, "%s: content changed since the scan: %s mismatch (library %s, file %s)",
			   f->rel_path, name, want, hex);
		return -EBADMSG;
	}
	return 0;
}

static int ra_file(struct fat32_src *s, size_t i, uint64_t seq, struct ra_hash *hs)
{
	const struct ffile *f = &s->files[i];
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -1;
	struct ra_slot *sl;
	struct stat st;
	uint64_t off = 0;
	int err = 0;

	sl = ra_reserve(s, i, seq);
	if (!sl)
		return -ECANCELED;
	if (asprintf(&path, "%s/%s", s->root, f->rel_path) < 0) {
		err = -ENOMEM;
		ra_set_msg(sl, "%s: out of memory", f->rel_path);
		goto fail;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		err = -errno;
		ra_set_msg(sl, "%s: %s", f->rel_path, strerror(errno));
		goto fail;
	}
	err = -EBADMSG;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ra_set_msg(sl, "%s: not a regular file any more", f->rel_path);
		goto fail;
	}
	if ((uint64_t)st.st_size != f->size) {
		ra_set_msg(sl, "%s: size changed (%llu bytes, expected %llu)", f->rel_path,
			   (unsigned long long)st.st_size, (unsigned long long)f->size);
		goto fail;
	}
	if ((int64_t)st.st_mtime != f->mtime) {
		ra_set_msg(sl, "%s: mtime changed (%lld, expected %lld)", f->rel_path, (long long)st.st_mtime,
			   (long long)f->mtime);
		goto fail;
	}
	err = 0;
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (ra_hash_begin(hs, f) < 0) {
		err = -EIO;
		ra_set_msg(sl, "%s: cannot start the content hash", f->rel_path);
		goto fail;
	}

	while (off < f->size) {
		size_t want = (size_t)MIN((uint64_t)RA_CHUNK, f->size - off), got = 0;

		if (off > 0) {
			sl = ra_reserve(s, i, ++seq);
			if (!sl)
				return -ECANCELED;
		}
		while (got < want) {
			ssize_t n = read(fd, sl->data + got, MIN(want - got, (size_t)RA_PIECE));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				err = -errno;
				ra_set_msg(sl, "%s: read failed at byte %llu: %s", f->rel_path,
					   (unsigned long long)(off + got), strerror(errno));
				goto fail;
			}
			if (n == 0) {
				err = -EBADMSG;
				ra_set_msg(sl, "%s: shorter than %llu bytes (changed while reading)",
					   f->rel_path, (unsigned long long)f->size);
				goto fail;
			}
			if (ra_hash_update(hs, sl->data + got, (size_t)n) < 0) {
				err = -EIO;
				ra_set_msg(sl, "%s: content hash failed", f->rel_path);
				goto fail;
			}
			got += (size_t)n;
		}
		sl->off = off;
		sl->len = want;
		off += want;
		if (off == f->size) { /* the verdict travels with the last chunk */
			err = ra_hash_check(hs, f, sl);
			if (err < 0)
				goto fail;
		}
		ra_publish(s, sl);
	}
	return 0;
fail:
	sl->err = err;
	sl->len = 0;
	ra_publish(s, sl);
	return err;
}

/* Claim the next non-empty file and its first chunk number; false when there is none left,
 * a file failed, or the source is being freed. */
static bool ra_claim(struct fat32_src *s, size_t *ret_i, uint64_t *ret_seq)
{
	bool ok = false;

	pthread_mutex_lock(&s->ra_lock);
	while (s->ra_next_file < s->n_files && s->files[s->ra_next_file].size == 0)
		s->ra_next_file++;
	if (!s->ra_stop && !s->ra_failed && s->ra_next_file < s->n_files) {
		const struct ffile *f = &s->files[s->ra_next_file];
		*ret_i = s->ra_next_file++;
		*ret_seq = s->ra_next_seq;
		s->ra_next_seq += (f->size + RA_CHUNK - 1) / RA_CHUNK;
		ok = true;
	}
	pthread_mutex_unlock(&s->ra_lock);
	return ok;
}

static void ra_mark_failed(struct fat32_src *s)
{
	pthread_mutex_lock(&s->ra_lock);
	s->ra_failed = true;
	pthread_mutex_unlock(&s->ra_lock);
}

static void *ra_main(void *userdata)
{
	struct fat32_src *s = userdata;
	struct ra_hash hs = { .md = EVP_MD_CTX_new(), .xs = XXH3_createState() };
	uint64_t seq;
	size_t i;

	while (ra_claim(s, &i, &seq)) {
		if (!hs.md || !hs.xs) {
			struct ra_slot *sl = ra_reserve(s, i, seq);
			if (sl) {
				sl->err = -ENOMEM;
				ra_publish(s, sl);
			}
			ra_mark_failed(s);
			break;
		}
		if (ra_file(s, i, seq, &hs) < 0) {
			ra_mark_failed(s);
			break;
		}
	}
	EVP_MD_CTX_free(hs.md);
	if (hs.xs)
		XXH3_freeState(hs.xs);
	return NULL;
}

static int ra_start(struct fat32_src *s)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t want = cpus < 2 ? 2 : cpus > RA_MAX_WORKERS ? RA_MAX_WORKERS : (size_t)cpus;

	for (size_t k = 0; k < RA_SLOTS; k++) {
		s->ra[k].data = malloc(RA_CHUNK);
		if (!s->ra[k].data)
			return -ENOMEM;
	}
	s->ra_started = true; /* free() joins whatever was started */
	while (s->n_ra_threads < want && pthread_create(&s->ra_threads[s->n_ra_threads], NULL, ra_main, s) == 0)
		s->n_ra_threads++;
	return s->n_ra_threads > 0 ? 0 : -EAGAIN;
}

/* The head chunk, waiting for the workers. */
static struct ra_slot *ra_head(struct fat32_src *s)
{
	struct ra_slot *sl = &s->ra[s->ra_head % RA_SLOTS];

	pthread_mutex_lock(&s->ra_lock);
	while (!sl->ready)
		pthread_cond_wait(&s->ra_can_get, &s->ra_lock);
	pthread_mutex_unlock(&s->ra_lock);
	return sl;
}

static void ra_release(struct fat32_src *s)
{
	pthread_mutex_lock(&s->ra_lock);
	s->ra[s->ra_head % RA_SLOTS].ready = false;
	s->ra_head++;
	s->ra_used = 0;
	pthread_cond_broadcast(&s->ra_can_put);
	pthread_mutex_unlock(&s->ra_lock);
}

static int ra_fail(struct fat32_src *s, struct ra_slot *sl)
{
	free(s->base.error);
	s->base.error = sl->msg ? strdup(sl->msg) : NULL;
	return sl->err;
}

static int emit_file(struct fat32_src *s, size_t i, uint8_t *buf, uint64_t rel, uint64_t len)
{
	const struct ffile *f = &s->files[i];
	struct ra_slot *sl;
	uint64_t copied = 0;
	int r;

	if (!s->ra_started) {
		r = ra_start(s);
		if (r < 0) {
			set_error(s, "cannot start the content reader: %s", strerror(-r));
			return r;
		}
	}
	while (copied < len) {
		sl = ra_head(s);
		if (sl->err)
			return ra_fail(s, sl);
		if (sl->file != i || sl->off + s->ra_used != rel + copied) {
			set_error(s, "%s: internal error: non-sequential read", f->rel_path);
			return -EIO;
		}
		uint64_t n = MIN(sl->len - s->ra_used, len - copied);
		memcpy(buf + copied, sl->data + s->ra_used, n);
		s->ra_used += n;
		copied += n;
		if (s->ra_used == sl->len)
			ra_release(s);
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

	if (s->ra_started) {
		pthread_mutex_lock(&s->ra_lock);
		s->ra_stop = true;
		pthread_cond_broadcast(&s->ra_can_put);
		pthread_mutex_unlock(&s->ra_lock);
		for (size_t k = 0; k < s->n_ra_threads; k++)
			pthread_join(s->ra_threads[k], NULL);
	}
	for (size_t k = 0; k < RA_SLOTS; k++) {
		free(s->ra[k].data);
		free(s->ra[k].msg);
	}
	pthread_mutex_destroy(&s->ra_lock);
	pthread_cond_destroy(&s->ra_can_put);
	pthread_cond_destroy(&s->ra_can_get);
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

static int fail(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(char **ret_error, int r, const char *fmt, ...)
{
	va_list ap;

	if (ret_error) {
		va_start(ap, fmt);
		if (vasprintf(ret_error, fmt, ap) < 0)
			*ret_error = NULL;
		va_end(ap);
	}
	return r;
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
			id = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
			     (uint32_t)h[3] << 24;
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
		memcpy(out, "USBFORGE   ", 11);
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
			return fail(ret_error, -EINVAL, "%s: 4 GiB or more does not fit FAT32", f->dest_path);

		slash = strchr(f->dest_path, '/');
		f->name = slash ? slash + 1 : f->dest_path;
		if (slash) {
			_cleanup_free_ char *folder = strndup(f->dest_path, (size_t)(slash - f->dest_path));
			if (!folder)
				return -ENOMEM;
			if (!fatname_is_valid(folder))
				return fail(ret_error, -EINVAL, "%s: invalid folder name", f->dest_path);
			for (di = 1; di < s->n_dirs; di++)
				if (strcmp(s->dirs[di].name, folder) == 0)
					break;
			if (di == s->n_dirs) {
				struct fdir *nd;
				if (fatname_set_contains(s->dirs[0].names, folder))
					return fail(ret_error, -EINVAL,
						    "%s: folder name taken (case-insensitive)", f->dest_path);
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
			return fail(ret_error, -EINVAL, "%s: invalid file name", f->dest_path);
		if (fatname_set_contains(s->dirs[di].names, f->name))
			return fail(ret_error, -EINVAL, "%s: duplicate name (case-insensitive)",
				    f->dest_path);
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
			return fail(ret_error, -ENOSPC, "folder '%s' would need %llu entries (FAT allows %u)",
				    d->name ? d->name : "/", (unsigned long long)d->entries,
				    FAT_DIR_MAX_ENTRIES);
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
			return fail(ret_error, -ENOSPC, "directories alone need more than %u clusters",
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
			return fail(ret_error, -ENOSPC,
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
	pthread_mutex_init(&s->ra_lock, NULL);
	pthread_cond_init(&s->ra_can_put, NULL);
	pthread_cond_init(&s->ra_can_get, NULL);

	r = fat_layout_compute(opts->usable_size, &s->L);
	if (r < 0) {
		r = fail(ret_error, r, "a stick of %llu bytes is too small for FAT32",
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
