/* Content hashes of library files. Two digests are kept per file, both computed in one read
 * pass when the library is scanned:
 *   - SHA-256: the file's identity for people and for the shop (content_items.sha256);
 *   - XXH3-128: the fast check the FAT32 composer runs on every byte it copies to a stick
 *     (content_items.xxh128), so that "this is still the file that was scanned" costs a few
 *     percent of the write instead of a CPU core (SHA-256 runs at ~1.8 GB/s here, XXH3 at
 *     tens of GB/s). It detects change, not an adversary: whoever can rewrite the content root
 *     can rescan it too.
 * Both are lowercase hex. Only libcrypto and libxxhash are used. */
#pragma once

#include <stdint.h>

#define FILEHASH_SHA256_HEX 65 /* 64 hex digits + NUL */
#define FILEHASH_XXH128_HEX 33 /* 32 hex digits + NUL */

/* Hash the whole file at path (a regular file: open_regular) with 1 MiB reads. Writes both
 * digests and the number of bytes read (written only on success). Errors: -errno from
 * open/read, -EINVAL (not a regular file), -ENOMEM, -EIO (libcrypto). */
int filehash_file(const char *path, char ret_sha256[FILEHASH_SHA256_HEX], char ret_xxh128[FILEHASH_XXH128_HEX],
		  uint64_t *ret_size);
/* The same for an open descriptor, read from its current offset to its end; not closed. */
int filehash_fd(int fd, char ret_sha256[FILEHASH_SHA256_HEX], char ret_xxh128[FILEHASH_XXH128_HEX], uint64_t *ret_size);

/* Lowercase hex of n bytes into out (2n + 1 bytes). */
void filehash_hex(const unsigned char *p, unsigned n, char *out);

/* An XXH3-128 digest (as returned by XXH3_128bits_digest, passed as its two halves) in the
 * canonical big-endian byte order, as hex: the same text `xxh128sum` prints. */
void filehash_xxh128_hex(uint64_t high64, uint64_t low64, char out[FILEHASH_XXH128_HEX]);
