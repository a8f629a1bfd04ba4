/* The FAT32 composer: a block source (struct blksrc) that produces a complete partitioned FAT32
 * filesystem holding a list of content files, in device-offset order, in one sequential pass,
 * with no temporary image, no mkfs and no mount. It owns the on-stick layout:
 *
 *   [0, 1 MiB)        MBR (one partition, type 0x0C, LBA 2048) and zeros (old partition
 *                     tables and signatures in the first MiB are wiped)
 *   partition         reserved area (boot sector, FSInfo, backup boot sector at 6, its FSInfo
 *                     copy at 7, zeros), FAT #1, FAT #2 (written in full), then the data
 *                     region: root directory at cluster 2, one folder per category, then every
 *                     file's clusters, contiguous, in item order. Free clusters are holes.
 *
 * Cluster size follows Microsoft's table for the stick's usable size (≤ 8 GiB 4 KiB, ≤ 16 GiB
 * 8 KiB, ≤ 32 GiB 16 KiB, larger 32 KiB) and is halved (down to 512 B) while the filesystem
 * would have fewer than 65525 clusters, so sticks below ~260 MiB get 2 KiB, 1 KiB or 512 B
 * clusters and stay valid FAT32; below ~34 MiB FAT32 is impossible (-ERANGE). The FAT size is
 * a multiple of 4 KiB and the reserved area is padded so that the data region (cluster 2)
 * starts at a device offset aligned to max(cluster size, 4 KiB); every extent is 4 KiB-aligned
 * and padded with zeros to 4 KiB (cluster slack, free space).
 *
 * Names are taken as given in job_item.dest_path ("Folder/Name" or "Name"), already mapped by
 * fatname_map() and unique per folder; short names are derived here (fatname_short_names).
 * Timestamps come from each file's mtime, in the local time zone (FAT stores local times;
 * TZ / /etc/localtime of the kiosk); a folder's is its newest file's.
 *
 * Content check: the files (content_root/rel_path) are read in placement order by the thread
 * that calls blksrc_read, straight into its buffer, once each, in 256 KiB reads; each piece is
 * hashed while it is in the CPU's cache (XXH3-128 against the library's xxh128; SHA-256 for
 * items that have no xxh128 yet). A file is checked against the item's size and mtime when it
 * is opened (fstat) and against its hash when its last byte is read; the kernel is asked to
 * read the next files ahead (posix_fadvise). A mismatch fails the read with -EBADMSG and
 * blksrc_error() = "<rel_path>: content changed since the scan: xxh128 mismatch …" / "size
 * changed" / "mtime changed" / "shorter than …"; a vanished file fails with -ENOENT
 * ("<rel_path>: …"). The stage
 * maps -EBADMSG to CONTENT_CHANGED and -ENOENT to CONTENT_MISSING. Errors are sticky. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "image/blksrc.h"
#include "util/items.h"

#define FAT_PART_OFFSET	    (UINT64_C(1) << 20) /* partition start: 1 MiB, LBA 2048 */
#define FAT_MIN_CLUSTERS    65525u		/* fewer clusters would make it FAT16 */
#define FAT_DIR_MAX_ENTRIES 65536u		/* 32-byte entries a directory may hold */
#define FAT_MAX_FILE_SIZE   UINT64_C(0xFFFFFFFF)

struct fat_layout {
	uint64_t size;		   /* partition end = blksrc.size (≤ the usable size) */
	uint32_t part_sectors;	   /* 512-byte sectors in the partition */
	uint32_t cluster_size;	   /* bytes: 512 … 32768 */
	uint32_t reserved_sectors; /* ≥ 32 */
	uint32_t fat_sectors;	   /* per FAT, multiple of 8 */
	uint32_t n_clusters;	   /* data clusters, numbered 2 … n_clusters + 1 */
	uint64_t fat_offset;	   /* device offset of FAT #1 */
	uint64_t data_offset;	   /* device offset of cluster 2 */
};

/* The layout of a FAT32 filesystem on a stick of usable_size bytes.
 * Errors: -ERANGE when the stick is too small for FAT32 (< ~34 MiB). */
int fat_layout_compute(uint64_t usable_size, struct fat_layout *ret);

/* Clusters a file of `size` bytes takes (0 for an empty file). */
uint64_t fat_file_clusters(const struct fat_layout *l, uint64_t size);
/* Clusters a directory of `entries` 32-byte entries takes (at least 1). */
uint64_t fat_dir_clusters(const struct fat_layout *l, uint64_t entries);

struct fat_opts {
	uint64_t usable_size;	  /* stick bytes to use (the partition ends at or below it) */
	const char *content_root; /* item rel_paths are under it; borrowed during the call */
	const char *label;	  /* volume label; NULL → "USBFORGE"; upper-cased, cut to 11 */
	uint32_t volume_id;	  /* 0 → derived from the items (deterministic) */
};

/* What a composed filesystem holds, for callers and tests. */
struct fat_stats {
	struct fat_layout layout;
	uint32_t used_clusters; /* directories + files */
	uint32_t free_clusters; /* = FSInfo free count */
	uint32_t dir_clusters;	/* root + folders */
	uint32_t volume_id;
};

/* Build the composer for items[0..n) (dest_path, rel_path, size, mtime, xxh128 or sha256 are
 * used; with both digests empty the bytes are not checked). Nothing is opened or read here: files are read by
 * blksrc_read(). The items are copied. *ret->size = layout.size, ->mapped = bytes produced.
 * Errors (with a message in *ret_error, malloc'd, when ret_error is not NULL):
 *   -ERANGE  stick too small for FAT32;
 *   -ENOSPC  the items do not fit (clusters, or more than 65536 entries in a directory);
 *   -EINVAL  a dest_path that is not "Name" or "Folder/Name" with valid mapped names, a
 *            duplicate (case-insensitive) name in a folder, or a file of 4 GiB or more;
 *   -ENOMEM. */
int fat32_compose(const struct fat_opts *opts, const struct job_item *items, size_t n, struct blksrc **ret,
		  char **ret_error);

/* Stats of a source made by fat32_compose() (undefined for other sources). */
void fat32_stats(const struct blksrc *s, struct fat_stats *ret);
