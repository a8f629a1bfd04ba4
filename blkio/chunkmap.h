/* Chunk hashing shared by the writer and the verifier: the window arithmetic (chunk-size
 * windows plus a boundary at 1 MiB, so the held-back head is a window of its own), the
 * per-window XXH3-128 streaming hasher, and the records both sides exchange. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#define CHUNK_HEAD (UINT64_C(1) << 20)

struct wchunk {
	uint64_t off;	   /* window start */
	uint64_t data_end; /* end of the last data byte in the window */
	uint8_t hash[16];  /* XXH3-128, canonical (big-endian) bytes */
};
struct wextent {
	uint64_t off, len;
};

/* Start of the window holding off / end of it (windows: multiples of cs, split at 1 MiB). */
uint64_t chunk_window_start(uint64_t off, uint64_t cs);
uint64_t chunk_window_end(uint64_t off, uint64_t cs);

/* Called for each completed window; a negative return stops the feed and is returned. */
typedef int (*chunk_cb)(void *userdata, const struct wchunk *c);

struct chunk_hasher {
	uint64_t cs;
	uint64_t ws; /* current window start; UINT64_MAX: none */
	uint64_t data_end;
	XXH3_state_t *st;
	chunk_cb cb;
	void *userdata;
};

/* Errors: -ENOMEM. */
int chunk_hasher_init(struct chunk_hasher *h, uint64_t cs, chunk_cb cb, void *userdata);
void chunk_hasher_done(struct chunk_hasher *h);
/* Feed n bytes at device offset off (offsets must increase). Returns 0 or the callback's
 * negative result. */
int chunk_hasher_feed(struct chunk_hasher *h, uint64_t off, const void *p, size_t n);
/* Complete the current window (if any). */
int chunk_hasher_flush(struct chunk_hasher *h);

/* Append [off, off+len) to a growing extent array, merging with the last when contiguous.
 * Errors: -ENOMEM. */
int wextent_append(struct wextent **arr, size_t *n, size_t *cap, uint64_t off, uint64_t len);
