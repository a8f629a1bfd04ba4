/* Implementation of writer.h: the producer loop (source → queue) runs in the caller's thread;
 * the device thread hashes each buffer per chunk (and, on resume, compares with the recorded
 * chunks) before it writes it, so decoding and hashing run on different cores; the head is
 * held back, and the resume state is kept and (de)serialized here. */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blkio/ioq.h"
#include "blkio/verify.h"
#include "blkio/writer.h"
#include "util/macro.h"
#include "util/message.h"
#include "util/unaligned.h"

struct writer {
	struct dev *d;
	struct blksrc *src;
	struct write_opts opts; /* a copy: the caller's may not outlive the writer */
	uint64_t cs;
	uint64_t sync_every;
	bool ran;

	/* What this run produced (hashes of the whole source, extents as written). During a run
	 * the device thread appends to chunks under chunks_lock, and the caller's thread reads them
	 * under it (writer_state_json); before and after a run (the thread joined, or abandoned:
	 * see hash_buf) only the caller's thread touches them. ext is the caller's thread's. */
	pthread_mutex_t chunks_lock;
	struct wchunk *chunks;
	size_t n_chunks, cap_chunks;
	struct wextent *ext;
	size_t n_ext, cap_ext;
	/* The device thread's hashing failure (-ESTALE: the chunk at hash_bad differs from the
	 * recorded one; -ENOMEM), set before it calls ioq_io_finish(); read by the caller only once
	 * it has seen io_done under the queue lock (which orders the two). */
	int hash_err;
	uint64_t hash_bad;

	/* Resume: the recorded state, and the offset from which this run writes. */
	struct wchunk *rchunks;
	size_t n_rchunks;
	struct wextent *rext;
	size_t n_rext;
	uint64_t rhwm;
	uint64_t write_from; /* data in [CHUNK_HEAD, write_from) is already on the device */
	size_t rci;	     /* next recorded chunk to compare with the source (device thread) */

	uint64_t synced; /* durable high-water mark (data >= CHUNK_HEAD below it is on disk) */
	struct writer_stats st;
	char *error;
};

/* ---- resume state (de)serialization ------------------------------------------------------ */

static int b64_encode(const unsigned char *p, size_t n, char **ret)
{
	char *s = malloc(4 * ((n + 2) / 3) + 1);
	if (!s)
		return -ENOMEM;
	EVP_EncodeBlock((unsigned char *)s, p, (int)n);
	*ret = s;
	return 0;
}

static int b64_decode(const char *s, unsigned char **ret, size_t *ret_n)
{
	size_t l = strlen(s);
	if (l % 4)
		return -EINVAL;
	unsigned char *p = malloc(l / 4 * 3 + 1);
	if (!p)
		return -ENOMEM;
	int n = EVP_DecodeBlock(p, (const unsigned char *)s, (int)l);
	if (n < 0) {
		free(p);
		return -EINVAL;
	}
	if (l >= 1 && s[l - 1] == '=')
		n--;
	if (l >= 2 && s[l - 2] == '=')
		n--;
	*ret = p;
	*ret_n = (size_t)n;
	return 0;
}

int writer_state_json(const struct writer *w, char **ret)
{
	uint64_t hwm = w->synced;
	size_t nc = 0;
	_cleanup_free_ unsigned char *bin = NULL;
	_cleanup_free_ char *b64 = NULL;

	/* Chunks durable on the device: outside the head, all their data below hwm, and closed
	 * (a later chunk exists or the run finished). The device thread may be appending: hold
	 * chunks_lock while reading the list (the lock is not part of the writer's value, hence
	 * the cast). */
	pthread_mutex_t *lock = (pthread_mutex_t *)&w->chunks_lock;
	pthread_mutex_lock(lock);
	bin = malloc(w->n_chunks * 24 + 1);
	for (size_t i = 0; bin && i < w->n_chunks; i++) {
		const struct wchunk *c = &w->chunks[i];
		if (c->off < CHUNK_HEAD)
			continue;
		if (c->data_end > hwm)
			break;
		unaligned_write_le64(bin + nc * 24, c->off);
		memcpy(bin + nc * 24 + 8, c->hash, 16);
		nc++;
	}
	pthread_mutex_unlock(lock);
	if (!bin)
		return -ENOMEM;
	uint64_t end = nc ? chunk_window_end(unaligned_read_le64(bin + (nc - 1) * 24), w->cs) : CHUNK_HEAD;
	if (b64_encode(bin, nc * 24, &b64) < 0)
		return -ENOMEM;
	json_t *ext = json_array();
	for (size_t i = 0; ext && i < w->n_ext; i++) {
		uint64_t s = MAX(w->ext[i].off, CHUNK_HEAD), e = MIN(w->ext[i].off + w->ext[i].len, end);
		if (s < e)
			json_array_append_new(ext, json_pack("[II]", (json_int_t)s, (json_int_t)(e - s)));
	}
	json_t *o = json_pack("{s:i, s:I, s:I, s:o, s:s}", "v", 1, "cs", (json_int_t)w->cs, "hwm", (json_int_t)end,
			      "ext", ext, "chunks", b64);
	if (!o)
		return -ENOMEM;
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

void writer_resume_done(struct writer_resume *rs)
{
	if (!rs)
		return;
	free(rs->chunks);
	free(rs->ext);
	memset(rs, 0, sizeof(*rs));
}

static int resume_parse(const char *text, uint64_t cs_expected, uint64_t dev_size, struct writer_resume *rs)
{
	json_error_t jerr;
	json_auto_t *o = json_loads(text, 0, &jerr);
	json_t *ext = NULL;
	json_int_t v = 0, cs = 0, hwm = 0;
	const char *chunks = NULL;
	_cleanup_free_ unsigned char *bin = NULL;
	size_t nbin = 0;

	if (!o ||
	    json_unpack(o, "{s:I, s:I, s:I, s:o, s:s}", "v", &v, "cs", &cs, "hwm", &hwm, "ext", &ext, "chunks",
			&chunks) < 0 ||
	    v != 1 || !json_is_array(ext))
		return -EINVAL;
	if ((uint64_t)cs != cs_expected)
		return -ERANGE;
	if (b64_decode(chunks, &bin, &nbin) < 0 || nbin % 24)
		return -EINVAL;
	rs->n_chunks = nbin / 24;
	rs->chunks = calloc(rs->n_chunks + 1, sizeof(*rs->chunks));
	rs->ext = calloc(json_array_size(ext) + 1, sizeof(*rs->ext));
	if (!rs->chunks || !rs->ext)
		return -ENOMEM;
	/* What writer_state_json() writes, and so what resume_check() relies on: hwm in
	 * [CHUNK_HEAD, dev_size]; chunks at increasing window starts whose windows end by hwm;
	 * extents increasing, disjoint, within [CHUNK_HEAD, hwm], and present when chunks are (the
	 * read-back of the recorded chunks reads the extents). */
	if (hwm < (json_int_t)CHUNK_HEAD || (uint64_t)hwm > dev_size)
		return -EINVAL;
	rs->hwm = (uint64_t)hwm;
	for (size_t i = 0; i < rs->n_chunks; i++) {
		uint64_t off = unaligned_read_le64(bin + i * 24);
		rs->chunks[i].off = off;
		memcpy(rs->chunks[i].hash, bin + i * 24 + 8, 16);
		if (off < CHUNK_HEAD || off >= rs->hwm || (i && off <= rs->chunks[i - 1].off) ||
		    chunk_window_start(off, cs_expected) != off || chunk_window_end(off, cs_expected) > rs->hwm)
			return -EINVAL;
	}
	size_t i;
	json_t *e;
	uint64_t prev = CHUNK_HEAD;
	json_array_foreach(ext, i, e)
	{
		json_int_t a, l;
		/* a + l is computed only once both are known to be within hwm (no overflow) */
		if (json_unpack(e, "[II]", &a, &l) < 0 || a < 0 || l <= 0 || (uint64_t)a < prev ||
		    (uint64_t)a >= rs->hwm || (uint64_t)l > rs->hwm - (uint64_t)a)
			return -EINVAL;
		rs->ext[i] = (struct wextent){ (uint64_t)a, (uint64_t)l };
		prev = (uint64_t)a + (uint64_t)l;
	}
	rs->n_ext = json_array_size(ext);
	if (rs->n_chunks && !rs->n_ext)
		return -EINVAL;
	return 0;
}

int writer_resume_parse(const char *text, uint64_t cs_expected, uint64_t dev_size, struct writer_resume *ret)
{
	struct writer_resume rs = { 0 };
	int r = resume_parse(text, cs_expected, dev_size, &rs);
	if (r < 0) {
		writer_resume_done(&rs);
		return r;
	}
	*ret = rs;
	return 0;
}

static int parse_state(struct writer *w, const char *text)
{
	struct writer_resume rs;
	int r = writer_resume_parse(text, w->cs, dev_size(w->d), &rs);
	if (r < 0)
		return r;
	w->rchunks = rs.chunks;
	w->n_rchunks = rs.n_chunks;
	w->rext = rs.ext;
	w->n_rext = rs.n_ext;
	w->rhwm = rs.hwm;
	return 0;
}

/* ---- construction ---------------------------------------------------------------------------- */

int writer_new(struct dev *d, struct blksrc *src, const struct write_opts *opts, const char *resume_json,
	       struct writer **ret)
{
	unsigned bs = dev_block_size(d);

	if (!opts || opts->buffer_size == 0 || opts->buffer_size % 4096 || (bs && opts->buffer_size % bs) ||
	    opts->queue_depth < 2)
		return -EINVAL;
	if (src->size > dev_size(d))
		return -EFBIG;
	struct writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->d = d;
	w->src = src;
	w->opts = *opts;
	w->cs = opts->buffer_size;
	w->sync_every = opts->sync_interval ? opts->sync_interval : WRITER_SYNC_EVERY;
	w->write_from = CHUNK_HEAD;
	pthread_mutex_init(&w->chunks_lock, NULL);
	if (resume_json) {
		int r = parse_state(w, resume_json);
		if (r == -ENOMEM) {
			pthread_mutex_destroy(&w->chunks_lock);
			free(w);
			return r;
		}
		if (r < 0) /* a static string: nothing to allocate, nothing to fail */
			w->st.resume_note =
				r == -ERANGE ? "resume state has a different chunk size" : "resume state is malformed";
		else
			w->st.resumed = true;
	}
	*ret = w;
	return 0;
}

struct writer *writer_free(struct writer *w)
{
	if (!w)
		return NULL;
	free(w->chunks);
	free(w->ext);
	free(w->rchunks);
	free(w->rext);
	free(w->error);
	pthread_mutex_destroy(&w->chunks_lock);
	free(w);
	return NULL;
}

const struct writer_stats *writer_stats(const struct writer *w) { return &w->st; }

const struct wchunk *writer_chunks(const struct writer *w, size_t *ret_n)
{
	*ret_n = w->n_chunks;
	return w->chunks;
}

const struct wextent *writer_extents(const struct writer *w, size_t *ret_n)
{
	*ret_n = w->n_ext;
	return w->ext;
}

uint64_t writer_chunk_size(const struct writer *w) { return w->cs; }

struct dev *writer_dev_free(struct dev *d) { return ioq_dev_free(d); }

static void set_error(struct writer *w, const char *fmt, ...) _printf_(2, 3);
static void set_error(struct writer *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	str_vset(&w->error, fmt, ap);
	va_end(ap);
	w->st.error = w->error;
}

/* ---- the device thread ------------------------------------------------------------------------ */

/* The device thread's state: owned by it (freed on its way out), set up by writer_run. */
struct wthread {
	struct ioq *q;
	struct dev *d;
	struct writer *w;      /* borrowed: rchunks/write_from (read-only during a run), rci,
				* chunks (under chunks_lock), hash_err; see hash_buf() */
	struct chunk_hasher h; /* XXH3 per chunk window, in stream order (a window may span buffers) */
	uint64_t bad_chunk;    /* on_chunk's -ESTALE: the chunk that differs */
	uint64_t sync_every;
	void *head;	      /* CHUNK_HEAD bytes, aligned */
	struct wextent *hext; /* head pieces */
	size_t n_hext, cap_hext;
	uint64_t written; /* bytes sent to the device */
};

/* Write len bytes at off; on -EIO, write block by block to find the failing block. */
static int write_exact(struct wthread *t, const void *buf, size_t len, uint64_t off, uint64_t *ret_bad)
{
	ioq_op_begin(t->q, "write", off);
	int r = dev_pwrite(t->d, buf, len, off);
	ioq_op_end(t->q, r < 0 ? 0 : len);
	if (r >= 0) {
		t->written += len;
		return 0;
	}
	*ret_bad = off;
	if (r != -EIO)
		return r;
	unsigned bs = dev_block_size(t->d);
	for (size_t i = 0; i < len; i += bs) {
		ioq_op_begin(t->q, "write", off + i);
		int k = dev_pwrite(t->d, (const char *)buf + i, bs, off + i);
		ioq_op_end(t->q, 0);
		if (k < 0) {
			*ret_bad = off + i;
			return k;
		}
	}
	return r;
}

static int do_sync(struct wthread *t, uint64_t off, uint64_t *ret_bad)
{
	ioq_op_begin(t->q, "sync", off);
	int r = dev_sync(t->d);
	ioq_op_end(t->q, 0);
	if (r < 0)
		*ret_bad = off;
	return r;
}

/* Device thread, for each completed chunk window: on resume, a chunk the device already holds
 * must be the same data as recorded; then append it to w->chunks (under chunks_lock: the
 * caller's thread reads the list for checkpoints). Errors: -ESTALE (t->bad_chunk set),
 * -ENOMEM. */
static int on_chunk(void *userdata, const struct wchunk *c)
{
	struct wthread *t = userdata;
	struct writer *w = t->w;
	int r = 0;

	if (w->st.resumed && c->off >= CHUNK_HEAD && c->off < w->write_from) {
		while (w->rci < w->n_rchunks && w->rchunks[w->rci].off < c->off)
			w->rci++;
		if (w->rci >= w->n_rchunks || w->rchunks[w->rci].off != c->off ||
		    memcmp(w->rchunks[w->rci].hash, c->hash, 16) != 0) {
			t->bad_chunk = c->off;
			return -ESTALE;
		}
	}
	pthread_mutex_lock(&w->chunks_lock);
	if (w->n_chunks == w->cap_chunks) {
		size_t nc = w->cap_chunks ? w->cap_chunks * 2 : 256;
		struct wchunk *na = realloc(w->chunks, nc * sizeof(*na));
		if (na) {
			w->chunks = na;
			w->cap_chunks = nc;
		} else
			r = -ENOMEM;
	}
	if (r == 0)
		w->chunks[w->n_chunks++] = *c;
	pthread_mutex_unlock(&w->chunks_lock);
	return r;
}

/* Device thread: hash a buffer (b->len == 0: close the last window). This is the only place
 * the thread touches the writer, and it always runs before any device call for the buffer
 * (and the final flush before the final sync). So a thread abandoned inside a stuck device
 * call never touches the writer again: once its call returns it finishes that buffer's writes
 * and its next ioq_pop() fails with -ECANCELED; the caller may free the writer meanwhile. On
 * failure records it in w->hash_err/hash_bad (read by the caller after io_done). */
static int hash_buf(struct wthread *t, const struct ioq_buf *b, uint64_t *ret_bad)
{
	int r = b->len ? chunk_hasher_feed(&t->h, b->off, b->data, b->len) : chunk_hasher_flush(&t->h);

	if (r < 0) {
		t->w->hash_err = r;
		t->w->hash_bad = r == -ESTALE ? t->bad_chunk : b->off;
		*ret_bad = t->w->hash_bad;
	}
	return r;
}

static void *writer_thread(void *arg)
{
	struct wthread *t = arg;
	struct ioq *q = t->q;
	struct ioq_buf *b;
	uint64_t since_sync = 0, bad = 0, last_end = 0;
	int r;

	for (;;) {
		r = ioq_pop(q, IOQ_WORK, 0, &b);
		if (r < 0)
			goto fail;
		r = hash_buf(t, b, &bad);
		if (r < 0) {
			ioq_push(q, IOQ_FREE, b);
			goto fail;
		}
		if (b->len == 0) {
			ioq_push(q, IOQ_FREE, b);
			break;
		}
		uint64_t off = b->off, end = b->off + b->len;
		uint64_t ks = MAX(off, b->skip_lo), ke = MIN(end, b->skip_hi);
		if (ke > ks) {
			/* Resume: hashed and matching the recorded chunks so far. */
			pthread_mutex_lock(&q->lock);
			q->reused += ke - ks;
			pthread_mutex_unlock(&q->lock);
		}
		if (off >= b->skip_lo && end <= b->skip_hi) {
			/* Resume: all on the device already; hashed (and compared) only. */
			ioq_push(q, IOQ_FREE, b);
			continue;
		}
		/* Head part: keep for the end. */
		if (off < CHUNK_HEAD) {
			uint64_t he = MIN(end, CHUNK_HEAD);
			memcpy((char *)t->head + off, b->data, (size_t)(he - off));
			r = wextent_append(&t->hext, &t->n_hext, &t->cap_hext, off, he - off);
			if (r < 0)
				goto fail;
			off = he;
		}
		/* The rest, minus [skip_lo, skip_hi). */
		while (off < end) {
			uint64_t e = end;
			if (off >= b->skip_lo && off < b->skip_hi) {
				off = MIN(end, b->skip_hi);
				continue;
			}
			if (off < b->skip_lo && b->skip_lo < e)
				e = b->skip_lo;
			r = write_exact(t, (char *)b->data + (off - b->off), (size_t)(e - off), off, &bad);
			if (r < 0)
				goto fail;
			since_sync += e - off;
			off = e;
		}
		last_end = end;
		ioq_push(q, IOQ_FREE, b);
		if (since_sync >= t->sync_every) {
			r = do_sync(t, last_end, &bad);
			if (r < 0)
				goto fail;
			since_sync = 0;
			pthread_mutex_lock(&q->lock);
			q->synced = last_end;
			q->sync_gen++;
			pthread_cond_broadcast(&q->cond);
			pthread_mutex_unlock(&q->lock);
		}
	}
	/* Everything but the head is written: make it durable, then the head, then sync. */
	r = do_sync(t, last_end, &bad);
	if (r < 0)
		goto fail;
	pthread_mutex_lock(&q->lock);
	q->synced = MAX(last_end, CHUNK_HEAD);
	bool abandoned = q->stop; /* the watchdog gave up on that sync: the job has failed */
	pthread_mutex_unlock(&q->lock);
	if (abandoned) {
		/* Never complete a stick whose attempt has ended: it would look valid. */
		r = -ECANCELED;
		goto fail;
	}
	for (size_t i = 0; i < t->n_hext; i++) {
		r = write_exact(t, (char *)t->head + t->hext[i].off, (size_t)t->hext[i].len, t->hext[i].off, &bad);
		if (r < 0)
			goto fail;
	}
	if (t->n_hext) {
		r = do_sync(t, 0, &bad);
		if (r < 0)
			goto fail;
	}
	pthread_mutex_lock(&q->lock);
	q->io_bytes = t->written;
	pthread_mutex_unlock(&q->lock);
	ioq_io_finish(q, 0, 0);
	goto out;
fail:
	pthread_mutex_lock(&q->lock);
	q->io_bytes = t->written;
	pthread_mutex_unlock(&q->lock);
	ioq_io_finish(q, r, bad);
out:
	chunk_hasher_done(&t->h);
	free(t->head);
	free(t->hext);
	free(t);
	ioq_io_exit(q);
	return NULL;
}

/* ---- the producer ----------------------------------------------------------------------------- */

/* Resume: find the first recorded chunk the device no longer holds. */
static int resume_check(struct writer *w, atomic_bool *cancel)
{
	struct verify_opts vo = { .buffer_size = w->opts.buffer_size,
				  .queue_depth = w->opts.queue_depth,
				  .stall_timeout = w->opts.stall_timeout };
	struct verify_result vr = { 0 };

	w->write_from = w->n_rchunks ? chunk_window_end(w->rchunks[w->n_rchunks - 1].off, w->cs) : CHUNK_HEAD;
	if (w->n_rchunks == 0)
		return 0;
	int r = dev_reset(w->d);
	if (r < 0)
		return r;
	r = verify_chunks(w->d, w->rext, w->n_rext, w->rchunks, w->n_rchunks, w->cs, &vo, cancel, &vr);
	if (r == -EBADMSG || r == -EIO)
		w->write_from = chunk_window_start(vr.bad_offset, w->cs);
	else if (r < 0) {
		w->st.bad_offset = vr.bad_offset;
		return r;
	}
	return 0;
}

static void maybe_checkpoint(struct writer *w, struct ioq *q, uint64_t *gen, const struct writer_cbs *cbs)
{
	pthread_mutex_lock(&q->lock);
	uint64_t g = q->sync_gen, synced = q->synced;
	pthread_mutex_unlock(&q->lock);
	if (g == *gen)
		return;
	*gen = g;
	w->synced = MAX(w->synced, synced);
	if (cbs && cbs->checkpoint) {
		_cleanup_free_ char *js = NULL;
		if (writer_state_json(w, &js) == 0)
			cbs->checkpoint(cbs->userdata, js);
	}
}

int writer_run(struct writer *w, atomic_bool *cancel, const struct writer_cbs *cbs)
{
	struct ioq *q = NULL;
	struct wthread *t = NULL;
	pthread_t th;
	uint64_t last_end = 0, gen = 0;
	bool unaligned_end = false;
	unsigned bs = dev_block_size(w->d);
	int r;

	if (w->ran)
		return -EALREADY;
	w->ran = true;

	if (w->st.resumed) {
		r = resume_check(w, cancel);
		if (r < 0) {
			set_error(w, "resume check failed at offset %llu", (unsigned long long)w->st.bad_offset);
			return r;
		}
		w->st.resume_from = w->write_from;
		/* Restore the durable state: what the recorded prefix says is on the device. */
		w->synced = w->write_from;
	}

	r = ioq_new(w->opts.queue_depth, w->opts.buffer_size, false, w->src->size - MIN(w->write_from, w->src->size),
		    w->opts.stall_timeout, w->d, &q);
	if (r < 0)
		return r;
	t = calloc(1, sizeof(*t));
	if (t) {
		t->head = dev_alloc_buf(CHUNK_HEAD);
		r = chunk_hasher_init(&t->h, w->cs, on_chunk, t);
	}
	if (!t || !t->head || r < 0) {
		if (t) {
			chunk_hasher_done(&t->h);
			free(t->head);
		}
		free(t);
		ioq_unref(q);
		return -ENOMEM;
	}
	/* not zeroed: only the head's extents (hext) are written, each a whole buffer's part, its
	 * last block padded with zeros by the reader; zeroing the MiB cost a fifth of a daemon's CPU
	 * per 64 KiB job (bench/jobcost) */
	t->q = q;
	t->d = w->d;
	t->w = w;
	t->sync_every = w->sync_every;
	/* From here until the thread has finished (or was abandoned), w->chunks is shared: see
	 * struct writer. */
	r = ioq_start(q, writer_thread, t, &th);
	if (r < 0) {
		chunk_hasher_done(&t->h);
		free(t->head);
		free(t);
		ioq_unref(q);
		return r;
	}

	for (;;) {
		struct ioq_buf *b;

		if (cancel && atomic_load(cancel)) {
			r = -ECANCELED;
			set_error(w, "cancelled");
			break;
		}
		r = ioq_pop(q, IOQ_FREE, IOQ_WATCH | IOQ_FAILFAST, &b);
		if (r < 0)
			break;
		uint64_t off;
		ssize_t n = blksrc_read(w->src, b->data, w->opts.buffer_size, &off);
		if (n < 0) {
			ioq_push(q, IOQ_FREE, b);
			r = (int)n;
			w->st.image_error = true;
			set_error(w, "%s", blksrc_error(w->src) ? blksrc_error(w->src) : "image read failed");
			break;
		}
		if (n > 0 && (unaligned_end || off % 4096 || off < last_end || off + (uint64_t)n > w->src->size ||
			      (size_t)n > w->opts.buffer_size)) {
			ioq_push(q, IOQ_FREE, b);
			r = -EINVAL;
			w->st.image_error = true;
			set_error(w, "source produced a bad extent at offset %llu", (unsigned long long)off);
			break;
		}
		if (n == 0) {
			b->len = 0;
			ioq_push(q, IOQ_WORK, b);
			r = 0;
			break;
		}
		size_t len = (size_t)n;
		if (len % bs) {
			size_t al = ALIGN_UP(len, (size_t)bs);
			memset((char *)b->data + len, 0, al - len);
			len = al;
			unaligned_end = true;
		}
		r = wextent_append(&w->ext, &w->n_ext, &w->cap_ext, off, len);
		if (r < 0) {
			ioq_push(q, IOQ_FREE, b);
			break;
		}
		last_end = off + len;
		b->off = off;
		b->len = len;
		b->data_len = (size_t)n;
		b->skip_lo = CHUNK_HEAD;
		b->skip_hi = w->write_from;
		/* Every buffer goes to the device thread, which hashes it (in stream order) and writes
		 * what is outside [skip_lo, skip_hi). */
		ioq_push(q, IOQ_WORK, b);
		maybe_checkpoint(w, q, &gen, cbs);
		if (cbs && cbs->progress) {
			pthread_mutex_lock(&q->lock);
			uint64_t done = q->io_bytes + q->reused; /* written, or found already on the stick */
			pthread_mutex_unlock(&q->lock);
			cbs->progress(cbs->userdata, MIN(done, w->src->mapped), w->src->mapped);
		}
	}
	if (r == 0) {
		/* Wait for the device thread to hash and write the rest, the head, and sync. */
		r = ioq_wait_done(q, IOQ_WATCH);
		if (r == 0 && q->io_err)
			r = -EPIPE;
	}
	pthread_mutex_lock(&q->lock);
	int hash_err = q->io_done ? w->hash_err : 0; /* settled once io_done */
	pthread_mutex_unlock(&q->lock);
	if (r == -EPIPE && hash_err) {
		/* The device thread stopped while hashing. */
		r = hash_err;
		if (r == -ESTALE) {
			w->st.bad_offset = w->hash_bad;
			set_error(w, "the image differs from the interrupted attempt at chunk %llu",
				  (unsigned long long)w->st.bad_offset);
		}
	} else if (r == -EPIPE) {
		r = q->io_err;
		w->st.bad_offset = q->io_err_off;
		set_error(w, "%s failed at offset %llu: %s", "write", (unsigned long long)q->io_err_off, strerror(-r));
	} else if (r == -ETIMEDOUT) {
		w->st.stalled = true;
		w->st.bad_offset = q->op_off;
		set_error(w, "%s at offset %llu did not return within %g s", q->op_what ? q->op_what : "I/O",
			  (unsigned long long)q->op_off, w->opts.stall_timeout);
	}
	pthread_mutex_lock(&q->lock);
	w->st.bytes_written = q->io_bytes;
	w->st.bytes_reused = q->reused;
	w->synced = MAX(w->synced, q->synced);
	pthread_mutex_unlock(&q->lock);
	int k = ioq_finish(q, th);
	if (k == -ETIMEDOUT && r == 0)
		r = k;
	if (r == 0 && cbs && cbs->progress)
		cbs->progress(cbs->userdata, w->src->mapped, w->src->mapped);
	return r;
}

int writer_verify(const struct writer *w, struct dev *d, const struct verify_opts *o, atomic_bool *cancel,
		  struct verify_result *ret)
{
	size_t ne, nc;
	const struct wextent *e = writer_extents(w, &ne);
	const struct wchunk *c = writer_chunks(w, &nc);
	return verify_chunks(d, e, ne, c, nc, writer_chunk_size(w), o, cancel, ret);
}
