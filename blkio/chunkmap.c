/* Implementation of chunkmap.h. */
#include <errno.h>
#include <stdlib.h>

#include "blkio/chunkmap.h"
#include "util/macro.h"
#if defined(__x86_64__) || defined(__i386__)
/* Debian's libxxhash is built for baseline x86-64; its dispatch entry points pick AVX2 or
 * AVX-512 at run time (this header routes the XXH3 calls below to them). */
#include <xxh_x86dispatch.h>
#endif

uint64_t chunk_window_start(uint64_t off, uint64_t cs)
{
	uint64_t s = ALIGN_DOWN(off, cs);
	if (off >= CHUNK_HEAD && s < CHUNK_HEAD)
		s = CHUNK_HEAD;
	return s;
}

uint64_t chunk_window_end(uint64_t off, uint64_t cs)
{
	uint64_t e = ALIGN_DOWN(off, cs) + cs;
	if (off < CHUNK_HEAD && e > CHUNK_HEAD)
		e = CHUNK_HEAD;
	return e;
}

int chunk_hasher_init(struct chunk_hasher *h, uint64_t cs, chunk_cb cb, void *userdata)
{
	*h = (struct chunk_hasher){ .cs = cs, .ws = UINT64_MAX, .cb = cb, .userdata = userdata };
	h->st = XXH3_createState();
	return h->st ? 0 : -ENOMEM;
}

void chunk_hasher_done(struct chunk_hasher *h)
{
	if (h->st)
		XXH3_freeState(h->st);
	h->st = NULL;
}

int chunk_hasher_flush(struct chunk_hasher *h)
{
	if (h->ws == UINT64_MAX)
		return 0;
	struct wchunk c = { .off = h->ws, .data_end = h->data_end };
	XXH128_canonical_t canon;
	XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(h->st));
	for (int i = 0; i < 16; i++)
		c.hash[i] = canon.digest[i];
	h->ws = UINT64_MAX;
	return h->cb ? h->cb(h->userdata, &c) : 0;
}

int chunk_hasher_feed(struct chunk_hasher *h, uint64_t off, const void *p, size_t n)
{
	const unsigned char *d = p;

	while (n > 0) {
		uint64_t ws = chunk_window_start(off, h->cs);
		if (ws != h->ws) {
			int r = chunk_hasher_flush(h);
			if (r < 0)
				return r;
			XXH3_128bits_reset(h->st);
			h->ws = ws;
		}
		size_t k = (size_t)MIN((uint64_t)n, chunk_window_end(off, h->cs) - off);
		XXH3_128bits_update(h->st, d, k);
		h->data_end = off + k;
		off += k;
		d += k;
		n -= k;
	}
	return 0;
}

int wextent_append(struct wextent **arr, size_t *n, size_t *cap, uint64_t off, uint64_t len)
{
	if (*n && (*arr)[*n - 1].off + (*arr)[*n - 1].len == off) {
		(*arr)[*n - 1].len += len;
		return 0;
	}
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct wextent *na = realloc(*arr, nc * sizeof(**arr));
		if (!na)
			return -ENOMEM;
		*arr = na;
		*cap = nc;
	}
	(*arr)[(*n)++] = (struct wextent){ off, len };
	return 0;
}
