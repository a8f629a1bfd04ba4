/* Helpers shared by the criterion suites: scratch directories and files. Every file a test
 * writes lives under a directory it created itself (tu_tmpdir), removed at the end. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A fresh directory under $TMPDIR (or /tmp) named after tag; removed by tu_rmrf(). Aborts the
 * test (criterion assert) on failure. Returns a malloc'd path. */
char *tu_tmpdir(const char *tag);
/* rm -rf path (only paths made by tu_tmpdir). */
void tu_rmrf(const char *path);
/* Write len bytes of data to path (created/truncated). Asserts on failure. */
void tu_write_file(const char *path, const void *data, size_t len);
/* path = dir/name, malloc'd. */
char *tu_path(const char *dir, const char *name);
/* Fill buf with a deterministic pattern from seed (xorshift). */
void tu_fill_pattern(void *buf, size_t len, uint64_t seed);
/* Write dir/name: len bytes of tu_fill_pattern(seed). Returns the malloc'd path. Asserts. */
char *tu_pattern_file(const char *dir, const char *name, size_t len, uint64_t seed);
/* Whether the file at path holds the n bytes of needle at any 512-byte aligned offset (where a
 * block device or a FAT32 image puts data): "did this secret reach the stick?". */
bool tu_file_holds(const char *path, const void *needle, size_t n);
/* chattr +i / -i through the ioctl. 0 or -errno (a file system without the flag). */
int tu_set_immutable(const char *path, bool on);
/* Source tree root ($UF_SOURCE_DIR, set by ctest). */
const char *tu_source_dir(void);
const char *tu_binary_dir(void);
