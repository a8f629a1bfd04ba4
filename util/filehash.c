/* Implementation of filehash.h. */
#include "util/filehash.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h> /* Debian's libxxhash picks AVX2/AVX-512 at run time */
#else
#include <xxhash.h>
#endif

#include "util/macro.h"
#include "util/openfile.h"

DEFINE_CLEANUP(EVP_MD_CTX *, EVP_MD_CTX_free)
DEFINE_CLEANUP(XXH3_state_t *, XXH3_freeState)

void filehash_hex(const unsigned char *p, unsigned n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * (size_t)n] = 0;
}

void filehash_xxh128_hex(uint64_t high64, uint64_t low64, char out[FILEHASH_XXH128_HEX])
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, (XXH128_hash_t){ .low64 = low64, .high64 = high64 });
	filehash_hex(c.digest, 16, out);
}

int filehash_file(const char *path, char ret_sha256[FILEHASH_SHA256_HEX], char ret_xxh128[FILEHASH_XXH128_HEX],
		  uint64_t *ret_size)
{
	_cleanup_close_ int fd = open_regular(path, NULL);
	if (fd < 0)
		return fd;
	return filehash_fd(fd, ret_sha256, ret_xxh128, ret_size);
}

int filehash_fd(int fd, char ret_sha256[FILEHASH_SHA256_HEX], char ret_xxh128[FILEHASH_XXH128_HEX], uint64_t *ret_size)
{
	static const size_t bufsz = 1 << 20;
	_cleanup_free_ unsigned char *buf = malloc(bufsz);
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
	_cleanup_(XXH3_freeStatep) XXH3_state_t *xs = XXH3_createState();
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dl = 0;
	uint64_t total = 0;

	if (!buf || !md || !xs)
		return -ENOMEM;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 || XXH3_128bits_reset(xs) != XXH_OK)
		return -EIO;
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (;;) {
		ssize_t n = read(fd, buf, bufsz);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return negative_errno();
		if (n == 0)
			break;
		if (EVP_DigestUpdate(md, buf, (size_t)n) != 1 || XXH3_128bits_update(xs, buf, (size_t)n) != XXH_OK)
			return -EIO;
		total += (uint64_t)n;
	}
	if (EVP_DigestFinal_ex(md, d, &dl) != 1 || dl != 32)
		return -EIO;
	XXH128_hash_t x = XXH3_128bits_digest(xs);
	filehash_hex(d, 32, ret_sha256);
	filehash_xxh128_hex(x.high64, x.low64, ret_xxh128);
	if (ret_size)
		*ret_size = total;
	return 0;
}
