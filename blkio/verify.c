/* Implementation of verify.h. The caller's thread plans reads (from extents or from the
 * source), keeps up to queue_depth of them in flight with the device thread, and checks each
 * buffer as it comes back in order. A read that fails is retried block by block to name the
 * failing block. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "blkio/ioq.h"
#include "blkio/verify.h"
#include "util/macro.h"

/* Read len bytes at off; on -EIO, read block by block to find the failing block. */
static int read_exact(struct ioq *q, struct dev *d, void *buf, size_t len, uint64_t off, uint64_t *ret_bad)
{
	ioq_op_begin(q, "read", off);
	int r = dev_pread(d, buf, len, off);
	ioq_op_end(q, r < 0 ? 0 : len);
	if (r >= 0)
		return 0;
	*ret_bad = off;
	if (r != -EIO)
		return r;
	unsigned bs = dev_block_size(d);
	for (size_t i = 0; i < len; i += bs) {
		ioq_op_begin(q, "read", off + i);
		int k = dev_pread(d, (char *)buf + i, bs, off + i);
		ioq_op_end(q, 0);
		if (k < 0) {
			*ret_bad = off + i;
			return k;
		}
	}
	return r;
}

static void *reader_thread(void *arg)
{
	struct ioq *q = arg;
	struct ioq_buf *b;

	while (ioq_pop(q, IOQ_WORK, 0, &b) == 0) {
		b->err = read_exact(q, q->dev, b->data, b->len, b->off, &b->err_off);
		ioq_push(q, IOQ_DONE, b);
	}
	ioq_io_exit(q);
	return NULL;
}

static int check_opts(struct dev *d, const struct verify_opts *o)
{
	unsigned bs = dev_block_size(d);
	if (!o || o->buffer_size == 0 || o->buffer_size % 4096 || (bs && o->buffer_size % bs) || o->queue_depth < 2)
		return -EINVAL;
	return 0;
}

/* The next read back from the device thread, in order: 0 and *ret (counted in bytes_read);
 * -ECANCELED; -ETIMEDOUT (a read stalled) or the read's own error, with res->bad_offset exact;
 * another error of ioq_pop. */
static int next_read(struct ioq *q, atomic_bool *cancel, struct verify_result *res, struct ioq_buf **ret)
{
	struct ioq_buf *b = NULL;

	if (cancel && atomic_load(cancel))
		return -ECANCELED;
	int r = ioq_pop(q, IOQ_DONE, IOQ_WATCH, &b);
	if (r == -ETIMEDOUT) {
		res->bad_offset = q->op_off;
		res->exact = true;
		return r;
	}
	if (r < 0)
		return r;
	if (!b) /* ioq_pop gives a buffer with 0: said for the analyzer, which cannot see it */
		return -EIO;
	if (b->err) {
		int err = b->err; /* read before the buffer goes back to the device thread */
		res->bad_offset = b->err_off;
		res->exact = true;
		ioq_push(q, IOQ_FREE, b);
		return err;
	}
	res->bytes_read += b->len;
	*ret = b;
	return 0;
}

/* The reader's queue and thread for about expect bytes. */
static int start(struct dev *d, const struct verify_opts *o, bool aux, uint64_t expect, struct ioq **ret_q,
		 pthread_t *ret_t)
{
	struct ioq *q;
	int r = ioq_new(o->queue_depth, o->buffer_size, aux, expect, o->stall_timeout, d, &q);
	if (r < 0)
		return r;
	r = ioq_start(q, reader_thread, q, ret_t);
	if (r < 0) {
		ioq_unref(q);
		return r;
	}
	*ret_q = q;
	return 0;
}

/* ---- hash mode ----------------------------------------------------------------------------- */

struct hcheck {
	const struct wchunk *chunks;
	size_t n_chunks, ci;
	uint64_t bad; /* window start of the first bad chunk */
};

static int on_chunk(void *userdata, const struct wchunk *c)
{
	struct hcheck *h = userdata;

	if (h->ci >= h->n_chunks || h->chunks[h->ci].off != c->off || memcmp(h->chunks[h->ci].hash, c->hash, 16) != 0) {
		h->bad = c->off;
		return -EBADMSG;
	}
	h->ci++;
	return 0;
}

int verify_chunks(struct dev *d, const struct wextent *ext, size_t n_ext, const struct wchunk *chunks, size_t n_chunks,
		  uint64_t cs, const struct verify_opts *o, atomic_bool *cancel, struct verify_result *ret)
{
	struct verify_result res = { 0 };
	struct hcheck hc = { .chunks = chunks, .n_chunks = n_chunks, .bad = UINT64_MAX };
	struct chunk_hasher h;
	struct ioq *q = NULL;
	pthread_t t;
	int r;

	r = check_opts(d, o);
	if (r < 0)
		return r;
	if (n_ext == 0)
		return n_chunks == 0 ? 0 : -EINVAL;
	r = chunk_hasher_init(&h, cs, on_chunk, &hc);
	if (r < 0)
		return r;
	uint64_t span_end = ext[n_ext - 1].off + ext[n_ext - 1].len;
	if (o->full) { /* the whole device (whole blocks: a file target may end mid-block) */
		uint64_t bs = MAX(dev_block_size(d), 1u); /* never 0 (dev.h), said for the analyzer */
		span_end = MAX(span_end, ALIGN_DOWN(dev_size(d), bs));
	}
	uint64_t total = 0;
	if (o->full)
		total = span_end;
	else
		for (size_t i = 0; i < n_ext; i++)
			total += ext[i].len;
	r = start(d, o, false, total, &q, &t);
	if (r < 0) {
		chunk_hasher_done(&h);
		return r;
	}

	/* Planner state: next request position. */
	size_t pe = 0; /* extent index (extent mode) */
	uint64_t ppos = o->full ? 0 : ext[0].off;
	bool planned_all = false;
	/* Consumer state. */
	size_t ce = 0;
	unsigned inflight = 0;
	uint64_t done = 0;

	for (;;) {
		struct ioq_buf *b = NULL;
		while (!planned_all && ioq_pop(q, IOQ_FREE, IOQ_NOWAIT, &b) == 0) {
			uint64_t end;
			if (o->full) {
				end = MIN(span_end, ppos + o->buffer_size);
			} else {
				while (pe < n_ext && ppos >= ext[pe].off + ext[pe].len) {
					pe++;
					if (pe < n_ext)
						ppos = ext[pe].off;
				}
				if (pe >= n_ext) {
					planned_all = true;
					ioq_push(q, IOQ_FREE, b);
					break;
				}
				end = MIN(ext[pe].off + ext[pe].len, ppos + o->buffer_size);
			}
			if (ppos >= span_end) {
				planned_all = true;
				ioq_push(q, IOQ_FREE, b);
				break;
			}
			b->off = ppos;
			b->data_len = (size_t)(end - ppos);
			b->len = ALIGN_UP(b->data_len, (size_t)dev_block_size(d));
			b->err = 0;
			ppos = end;
			ioq_push(q, IOQ_WORK, b);
			inflight++;
		}
		if (inflight == 0)
			break;
		r = next_read(q, cancel, &res, &b);
		if (r < 0)
			break;
		inflight--;
		/* Hash the written bytes inside this buffer. */
		uint64_t bs = b->off, be = b->off + b->data_len;
		r = 0;
		while (ce < n_ext && ext[ce].off + ext[ce].len <= bs)
			ce++;
		for (size_t j = ce; j < n_ext && ext[j].off < be && r == 0; j++) {
			uint64_t s = MAX(ext[j].off, bs), e = MIN(ext[j].off + ext[j].len, be);
			if (s < e)
				r = chunk_hasher_feed(&h, s, (char *)b->data + (s - bs), (size_t)(e - s));
		}
		done += b->data_len;
		ioq_push(q, IOQ_FREE, b);
		if (r < 0)
			break;
		if (o->progress)
			o->progress(o->progress_userdata, done, total);
	}
	if (r == 0) {
		r = chunk_hasher_flush(&h);
		if (r == 0 && hc.ci != n_chunks) {
			/* A window the device lacks entirely cannot happen with extents from the
			 * writer; treat a short list as a mismatch at the first missing chunk. */
			hc.bad = chunks[hc.ci].off;
			r = -EBADMSG;
		}
	}
	if (r == -EBADMSG) {
		res.bad_offset = hc.bad;
		res.exact = false;
	}
	int k = ioq_finish(q, t);
	if (r == 0 && k < 0)
		r = k;
	chunk_hasher_done(&h);

	if (r == -EBADMSG && o->reopen) {
		struct blksrc *src = NULL;
		if (o->reopen(o->reopen_userdata, &src) == 0) {
			uint64_t exact;
			if (verify_locate(d, src, res.bad_offset, chunk_window_end(res.bad_offset, cs), &exact) == 0) {
				res.bad_offset = exact;
				res.exact = true;
			}
			blksrc_free(src);
		}
	}
	if (ret && (r == 0 || r == -EBADMSG || r == -EIO || r == -ETIMEDOUT || dev_errno_is_gone(r)))
		*ret = res;
	return r;
}

int verify_locate(struct dev *d, struct blksrc *src, uint64_t ws, uint64_t we, uint64_t *ret_off)
{
	size_t len = 1u << 20;
	_cleanup_free_ void *sb = dev_alloc_buf(len);
	_cleanup_free_ void *db = dev_alloc_buf(len);
	unsigned bsz = dev_block_size(d);

	if (!sb || !db)
		return -ENOMEM;
	for (;;) {
		uint64_t off;
		ssize_t n = blksrc_read(src, sb, len, &off);
		if (n < 0)
			return (int)n;
		if (n == 0 || off >= we)
			return -ENOENT;
		if (off + (uint64_t)n <= ws)
			continue;
		size_t al = ALIGN_UP((size_t)n, (size_t)bsz);
		memset((char *)sb + n, 0, al - (size_t)n);
		int r = dev_pread(d, db, al, off);
		if (r < 0)
			return r;
		uint64_t s = MAX(off, ws), e = MIN(off + al, we);
		for (uint64_t i = s; i < e; i++)
			if (((unsigned char *)sb)[i - off] != ((unsigned char *)db)[i - off]) {
				*ret_off = i;
				return 0;
			}
	}
}

/* ---- source mode --------------------------------------------------------------------------- */

int verify_source(struct dev *d, struct blksrc *src, const struct verify_opts *o, atomic_bool *cancel,
		  struct verify_result *ret)
{
	struct verify_result res = { 0 };
	struct ioq *q = NULL;
	pthread_t t;
	unsigned inflight = 0;
	bool src_end = false;
	uint64_t done = 0;
	int r;

	r = check_opts(d, o);
	if (r < 0)
		return r;
	if (src->size > dev_size(d))
		return -EFBIG;
	r = start(d, o, true, src->size, &q, &t);
	if (r < 0)
		return r;
	for (;;) {
		struct ioq_buf *b = NULL;
		r = 0;
		while (!src_end && ioq_pop(q, IOQ_FREE, IOQ_NOWAIT, &b) == 0) {
			uint64_t off;
			ssize_t n = blksrc_read(src, b->aux, o->buffer_size, &off);
			if (n <= 0) {
				ioq_push(q, IOQ_FREE, b);
				src_end = true;
				if (n < 0) {
					r = (int)n;
					res.bad_offset = UINT64_MAX;
				}
				break;
			}
			b->off = off;
			b->data_len = (size_t)n;
			b->len = ALIGN_UP((size_t)n, (size_t)dev_block_size(d));
			memset((char *)b->aux + n, 0, b->len - (size_t)n);
			b->err = 0;
			ioq_push(q, IOQ_WORK, b);
			inflight++;
		}
		if (r < 0 || inflight == 0)
			break;
		r = next_read(q, cancel, &res, &b);
		if (r < 0)
			break;
		inflight--;
		if (memcmp(b->aux, b->data, b->len) != 0) {
			const unsigned char *x = b->aux, *y = b->data;
			size_t i = 0;
			while (x[i] == y[i])
				i++;
			res.bad_offset = b->off + i;
			res.exact = true;
			r = -EBADMSG;
			ioq_push(q, IOQ_FREE, b);
			break;
		}
		done += b->data_len;
		ioq_push(q, IOQ_FREE, b);
		if (o->progress)
			o->progress(o->progress_userdata, done, src->mapped);
	}
	int k = ioq_finish(q, t);
	if (r == 0 && k < 0)
		r = k;
	if (ret && r != -ENOMEM && r != -EINVAL && r != -ECANCELED)
		*ret = res;
	return r;
}
