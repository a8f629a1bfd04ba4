/* Implementation of probe.h. Points are kept as a sorted array of block numbers; the first
 * m are the contiguous run [0, m) and are read and written in large pieces, the others one
 * block at a time. All I/O is O_DIRECT through the device table. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>

#include "blkio/probe.h"
#include "util/macro.h"
#include "util/unaligned.h"

#define PB	  4096u /* probe block */
#define RUN_PIECE 256u	/* blocks per I/O in a contiguous run (1 MiB) */

enum pstate { P_UNTESTED, P_GOOD, P_ALIAS, P_GARBAGE, P_IOERR };

struct pctx {
	struct dev *d;
	uint8_t nonce[16];
	uint64_t *pt;	/* block numbers, ascending */
	size_t n, run;	/* points; pt[0..run) are contiguous from pt[0] */
	uint8_t *saved; /* n * PB */
	bool *have_saved;
	uint8_t *st;	 /* enum pstate */
	uint64_t *tagof; /* P_ALIAS: whose tag was read */
	uint8_t *buf;	 /* RUN_PIECE * PB, aligned */
	uint64_t written;
	uint64_t restore_limit; /* restore(): blocks below this are written back */
};

static const char *const verdict_names[_PROBE_MAX] = {
	[PROBE_GENUINE] = "genuine",
	[PROBE_WRAPAROUND] = "wraparound",
	[PROBE_LIMBO] = "limbo",
	[PROBE_SHORT] = "short",
};

const char *probe_verdict_name(enum probe_verdict v) { return (unsigned)v < _PROBE_MAX ? verdict_names[v] : NULL; }

/* The first 8 bytes of a tag (no NUL: a byte field). */
static const char tag_magic[8] = "UFPROBE\1";

static void make_tag(const struct pctx *c, uint64_t blk, uint8_t *p)
{
	memcpy(p, tag_magic, sizeof(tag_magic));
	memcpy(p + 8, c->nonce, 16);
	unaligned_write_le64(p + 24, blk);
	uint64_t x = XXH3_64bits_withSeed(c->nonce, 16, blk) | 1;
	for (size_t i = 32; i + 8 <= PB - 8; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	uint64_t h = XXH3_64bits(p, PB - 8);
	memcpy(p + PB - 8, &h, 8);
}

/* Returns true and the tagged block number when p is one of this run's tags. */
static bool read_tag(const struct pctx *c, const uint8_t *p, uint64_t *ret_blk)
{
	uint64_t h;

	if (memcmp(p, tag_magic, sizeof(tag_magic)) != 0 || memcmp(p + 8, c->nonce, 16) != 0)
		return false;
	memcpy(&h, p + PB - 8, 8);
	if (h != XXH3_64bits(p, PB - 8))
		return false;
	*ret_blk = unaligned_read_le64(p + 24);
	return true;
}

/* I/O on points [i, i+k) (contiguous blocks): op 'r' into buf, 'w' from buf. Returns 0 or -errno;
 * on -EIO with k > 1, retried block by block and per-block failures reported in fail[]. */
static int io_range(struct pctx *c, char op, uint64_t blk, size_t k, uint8_t *buf, bool *fail)
{
	int r = op == 'r' ? dev_pread(c->d, buf, k * PB, blk * PB) : dev_pwrite(c->d, buf, k * PB, blk * PB);
	if (r >= 0 || r != -EIO || k == 1) {
		if (fail)
			for (size_t j = 0; j < k; j++)
				fail[j] = r < 0;
		return r == -EIO ? 0 : r;
	}
	for (size_t j = 0; j < k; j++) {
		int q = op == 'r' ? dev_pread(c->d, buf + j * PB, PB, (blk + j) * PB)
				  : dev_pwrite(c->d, buf + j * PB, PB, (blk + j) * PB);
		if (q < 0 && q != -EIO)
			return q;
		fail[j] = q < 0;
	}
	return 0;
}

/* Apply fn to groups of points: the contiguous run in pieces, then single blocks.
 * descending: singles from high to low, then the run. */
typedef int (*group_fn)(struct pctx *c, size_t i, size_t k);
static int for_groups(struct pctx *c, size_t from, size_t to, bool descending, group_fn fn)
{
	int r;
	size_t run_end = MIN(c->run, to);
	if (descending) {
		for (size_t i = to; i > MAX(run_end, from); i--)
			if ((r = fn(c, i - 1, 1)) < 0)
				return r;
	}
	for (size_t i = from; i < run_end; i += RUN_PIECE)
		if ((r = fn(c, i, MIN((size_t)RUN_PIECE, run_end - i))) < 0)
			return r;
	if (!descending)
		for (size_t i = MAX(run_end, from); i < to; i++)
			if ((r = fn(c, i, 1)) < 0)
				return r;
	return 0;
}

/* Read points [i, i+k) into c->buf and hand each block to fn, with whether its read failed. */
static int read_points(struct pctx *c, size_t i, size_t k,
		       void (*fn)(struct pctx *c, size_t p, const uint8_t *blk, bool failed))
{
	bool fail[RUN_PIECE];
	int r = io_range(c, 'r', c->pt[i], k, c->buf, fail);
	if (r < 0)
		return r;
	for (size_t j = 0; j < k; j++)
		fn(c, i + j, c->buf + j * PB, fail[j]);
	return 0;
}

static void save_one(struct pctx *c, size_t p, const uint8_t *blk, bool failed)
{
	c->have_saved[p] = !failed;
	if (failed)
		c->st[p] = P_IOERR;
	else
		memcpy(c->saved + p * PB, blk, PB);
}

static int g_save(struct pctx *c, size_t i, size_t k) { return read_points(c, i, k, save_one); }

static int g_write_tags(struct pctx *c, size_t i, size_t k)
{
	bool fail[RUN_PIECE];
	for (size_t j = 0; j < k; j++)
		make_tag(c, c->pt[i + j], c->buf + j * PB);
	int r = io_range(c, 'w', c->pt[i], k, c->buf, fail);
	if (r < 0)
		return r;
	for (size_t j = 0; j < k; j++)
		if (fail[j])
			c->st[i + j] = P_IOERR;
	c->written += k;
	return 0;
}

static void check_one(struct pctx *c, size_t p, const uint8_t *blk, bool failed)
{
	uint64_t t;
	if (c->st[p] == P_IOERR)
		return;
	if (failed)
		c->st[p] = P_IOERR;
	else if (!read_tag(c, blk, &t))
		c->st[p] = P_GARBAGE;
	else if (t == c->pt[p])
		c->st[p] = P_GOOD;
	else {
		c->st[p] = P_ALIAS;
		c->tagof[p] = t;
	}
}

static int g_check(struct pctx *c, size_t i, size_t k) { return read_points(c, i, k, check_one); }

static int g_restore(struct pctx *c, size_t i, size_t k)
{
	/* Write back the saved blocks, piecewise around unsaved ones and the limit. */
	size_t j = 0;
	while (j < k) {
		if (!c->have_saved[i + j] || c->pt[i + j] >= c->restore_limit) {
			j++;
			continue;
		}
		size_t e = j;
		while (e < k && c->have_saved[i + e] && c->pt[i + e] < c->restore_limit)
			e++;
		int r = dev_pwrite(c->d, c->saved + (i + j) * PB, (e - j) * PB, c->pt[i + j] * PB);
		if (r < 0)
			return r;
		j = e;
	}
	return 0;
}

static bool cancelled(atomic_bool *cancel) { return cancel && atomic_load(cancel); }

/* One round over the current point set: save, tag (descending), sync+reset, check. */
static int round_run(struct pctx *c, atomic_bool *cancel)
{
	int r = for_groups(c, 0, c->n, false, g_save);
	if (r < 0)
		return r;
	if (cancelled(cancel))
		return -ECANCELED;
	r = for_groups(c, 0, c->n, true, g_write_tags);
	if (r < 0)
		return r;
	r = dev_sync(c->d);
	if (r < 0)
		return r;
	r = dev_reset(c->d);
	if (r < 0)
		return r;
	if (cancelled(cancel))
		return -ECANCELED;
	return for_groups(c, 0, c->n, false, g_check);
}

static int restore(struct pctx *c, uint64_t limit_blk)
{
	c->restore_limit = limit_blk;
	int r = for_groups(c, 0, c->n, false, g_restore);
	if (r < 0)
		return r;
	return dev_sync(c->d);
}

static void pctx_done(struct pctx *c)
{
	free(c->pt);
	free(c->saved);
	free(c->have_saved);
	free(c->st);
	free(c->tagof);
	free(c->buf);
}

static int pctx_alloc(struct pctx *c, size_t n)
{
	c->n = n;
	c->pt = calloc(n, sizeof(*c->pt));
	c->saved = dev_alloc_buf_filled(n * PB); /* written back with O_DIRECT by g_restore */
	c->have_saved = calloc(n, sizeof(bool));
	c->st = calloc(n, 1);
	c->tagof = calloc(n, sizeof(uint64_t));
	if (!c->buf)
		c->buf = dev_alloc_buf_filled((size_t)RUN_PIECE * PB);
	return c->pt && c->saved && c->have_saved && c->st && c->tagof && c->buf ? 0 : -ENOMEM;
}

int probe_run(struct dev *d, atomic_bool *cancel, struct probe_result *ret)
{
	struct probe_result res = { .reported_size = dev_size(d), .usable_size = dev_size(d) };
	struct pctx c = { .d = d };
	uint64_t N = dev_size(d) / PB;
	int r;

	if (N == 0 || dev_block_size(d) > PB || PB % dev_block_size(d))
		return -EINVAL;
	if (getrandom(c.nonce, sizeof(c.nonce), 0) != (ssize_t)sizeof(c.nonce))
		return -errno;

	uint64_t m = (uint64_t)ceil(sqrt((double)N));
	m = MAX(UINT64_C(1), MIN(m, N));
	size_t n = (size_t)m;
	for (uint64_t g = m; g < N; g += m)
		n++;
	if ((N - 1) % m != 0 && N - 1 >= m)
		n++;
	r = pctx_alloc(&c, n);
	if (r < 0)
		goto out;
	size_t k = 0;
	for (uint64_t b = 0; b < m; b++)
		c.pt[k++] = b;
	for (uint64_t g = m; g < N; g += m)
		c.pt[k++] = g;
	if (k < n)
		c.pt[k++] = N - 1;
	c.run = (size_t)m;

	r = round_run(&c, cancel);
	if (r < 0)
		goto out;
	res.blocks_probed = c.written;

	/* Wrap: among colliding pairs (lo, hi), the one with the smallest hi gives R = hi - lo. */
	uint64_t wrap_r = UINT64_MAX, best_hi = UINT64_MAX;
	for (size_t i = 0; i < c.n; i++)
		if (c.st[i] == P_ALIAS) {
			uint64_t a = c.pt[i], t = c.tagof[i];
			uint64_t lo = MIN(a, t), hi = MAX(a, t);
			if (hi < best_hi) {
				best_hi = hi;
				wrap_r = hi - lo;
				res.alias_from = a * PB;
				res.alias_to = t * PB;
			}
		}
	/* Limbo/short: the first point with no valid tag. */
	size_t zi = c.n;
	for (size_t i = 0; i < c.n; i++)
		if (c.st[i] == P_GARBAGE || c.st[i] == P_IOERR) {
			zi = i;
			break;
		}
	uint64_t limbo_r = UINT64_MAX;
	bool ioerr = false;
	if (zi < c.n) {
		uint64_t z = c.pt[zi];
		uint64_t g = zi > 0 ? c.pt[zi - 1] + 1 : 0; /* first block after the last point before z */
		ioerr = c.st[zi] == P_IOERR;
		limbo_r = z;
		if (z > g && !cancelled(cancel)) {
			/* Refine: tag every block in [g, z) (at most m blocks). */
			uint64_t first_limit = MIN(wrap_r, limbo_r);
			r = restore(&c, first_limit);
			if (r < 0)
				goto out;
			struct pctx rc = { .d = d, .buf = c.buf };
			memcpy(rc.nonce, c.nonce, sizeof(rc.nonce));
			rc.nonce[0] ^= 0x5a; /* fresh tags for the new round */
			r = pctx_alloc(&rc, (size_t)(z - g));
			if (r < 0) {
				rc.buf = NULL;
				pctx_done(&rc);
				goto out;
			}
			for (uint64_t b = g; b < z; b++)
				rc.pt[b - g] = b;
			rc.run = rc.n;
			r = round_run(&rc, cancel);
			if (r == 0) {
				for (size_t i = 0; i < rc.n; i++)
					if (rc.st[i] != P_GOOD) {
						limbo_r = rc.pt[i];
						ioerr = rc.st[i] == P_IOERR;
						break;
					}
				res.blocks_probed += rc.written;
				r = restore(&rc, MIN(wrap_r, limbo_r));
			}
			rc.buf = NULL;
			pctx_done(&rc);
			if (r < 0)
				goto out;
		}
	}

	uint64_t real = MIN(wrap_r, limbo_r);
	if (real == UINT64_MAX) {
		res.verdict = PROBE_GENUINE;
		res.usable_size = dev_size(d);
	} else {
		res.usable_size = real * PB;
		res.verdict = wrap_r <= limbo_r ? PROBE_WRAPAROUND : ioerr ? PROBE_SHORT : PROBE_LIMBO;
	}
	r = restore(&c, real == UINT64_MAX ? N : real);
	if (r < 0)
		goto out;
	res.restored = true;
	*ret = res;
out:
	pctx_done(&c);
	return r;
}
