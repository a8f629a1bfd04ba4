/* Test helpers for the FAT suites: making content files and items, composing to sparse image
 * files (checking the blksrc contract on the way), running the outside oracles (fsck.fat,
 * mtools), and an independent minimal FAT32 reader written from the specification (it shares
 * no code with fatfs/fat*.c) that lists a tree with its long names and reads files back. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fatfs/fat32.h"

/* Write `size` pattern bytes (seed) to root/rel (creating folders), set its mtime, and fill
 * *it (rel_path, size, sha256, mtime; dest_path = dest, strdup'd). */
void ft_make_file(const char *root, const char *rel, uint64_t size, uint64_t seed, int64_t mtime, const char *dest,
		  struct job_item *it);
void ft_items_free(struct job_item *items, size_t n);
/* Lowercase hex SHA-256 of a file (buf of 65). */
void ft_hash_file(const char *path, char sha256[65], char xxh128[33]);

/* Compose items into IMG (the whole stick, sparse) and IMG.part (the partition alone, sparse)
 * pulling with `bufsize`-byte reads; asserts the blksrc contract (aligned, increasing,
 * non-overlapping extents, sum == mapped, within size). Returns the blksrc read result: 0 on a
 * full pass, or the negative error (with *ret_msg = blksrc_error, strdup'd). */
int ft_compose_image(const struct fat_opts *o, const struct job_item *items, size_t n, const char *img, size_t bufsize,
		     char **ret_msg);

/* fsck.fat -n -v on path: exit status 0 and none of the error phrases. Output in *ret_out. */
bool ft_fsck_ok(const char *part_img, char **ret_out);
/* Run a shell command, capture stdout+stderr; returns exit status. */
int ft_run(const char *cmd, char **ret_out);

/* The independent reader. */
struct ft_entry {
	char *path; /* "Folder/Name" (UTF-8 long name, or the short name when no LFN) */
	char shortname[13];
	bool is_dir;
	uint32_t cluster;
	uint32_t size;
	uint16_t wdate, wtime;
};
struct ft_fs {
	uint8_t *part; /* the partition image mapped in memory */
	size_t part_len;
	uint32_t bps, spc, reserved, nfats, fatsz, root_cluster, n_clusters;
	uint64_t data_off;
	struct ft_entry *e;
	size_t n;
	char *error; /* first inconsistency met (bad checksum, ordinals, chain), or NULL */
};
/* Open IMG.part and list every entry (root and folders, depth-first). Asserts on I/O errors;
 * inconsistencies go to fs->error. */
void ft_fs_open(struct ft_fs *fs, const char *part_img);
void ft_fs_close(struct ft_fs *fs);
const struct ft_entry *ft_fs_find(const struct ft_fs *fs, const char *path);
/* A file's bytes by following its chain; malloc'd. */
uint8_t *ft_fs_read(const struct ft_fs *fs, const struct ft_entry *e);
/* FAT entry of cluster c. */
uint32_t ft_fs_fat(const struct ft_fs *fs, uint32_t c);
