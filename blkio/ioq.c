/* Implementation of ioq.h: buffers, FIFO queues, the stall watchdog and the registry of
 * abandoned device threads. One mutex and one condition variable per queue set: every state
 * change is rare (once per multi-MiB buffer), so contention is irrelevant. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blkio/ioq.h"
#include "util/macro.h"
#include "util/monotime.h"

static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ioq *abandoned_list;

uint64_t ioq_now_ns(void) { return mono_ns(); }

/* I/O buffers kept between queues. A daemon runs job after job with the same buffer size, and
 * allocating each queue's buffers anew (an mmap, a page fault per page, then munmap and its TLB
 * shootdown across the daemon's threads) took a large part of a short job's CPU time
 * (bench/jobcost, 64 KiB jobs: a daemon's CPU per job 4.8 -> 2.5 ms on a virtual machine). At most
 * CACHE_BYTES are kept; a buffer keeps its kind (filled: dev_alloc_buf_filled). A kept buffer
 * still holds the data of the job before: the writer only ever writes what it filled. */
#define CACHE_MAX   64
#define CACHE_BYTES ((size_t)64 << 20)
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	void *p;
	size_t size;
	bool filled;
} cache[CACHE_MAX];
static size_t n_cache, cache_bytes;

static void *buf_get(size_t size, bool filled)
{
	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < n_cache; i++)
		if (cache[i].size == size && cache[i].filled == filled) {
			void *p = cache[i].p;
			cache[i] = cache[--n_cache];
			cache_bytes -= size;
			pthread_mutex_unlock(&cache_lock);
			return p;
		}
	pthread_mutex_unlock(&cache_lock);
	return filled ? dev_alloc_buf_filled(size) : dev_alloc_buf(size);
}

static void buf_put(void *p, size_t size, bool filled)
{
	if (!p)
		return;
	pthread_mutex_lock(&cache_lock);
	bool kept = n_cache < CACHE_MAX && cache_bytes + size <= CACHE_BYTES;
	if (kept) {
		cache[n_cache++] = (typeof(cache[0])){ .p = p, .size = size, .filled = filled };
		cache_bytes += size;
	}
	pthread_mutex_unlock(&cache_lock);
	if (!kept)
		free(p);
}

static void ioq_free(struct ioq *q)
{
	for (unsigned i = 0; i < q->n && q->bufs; i++) {
		buf_put(q->bufs[i].data, q->buf_size, q->filled);
		buf_put(q->bufs[i].aux, q->buf_size, q->filled);
	}
	free(q->bufs);
	for (int i = 0; i < _IOQ_MAX; i++)
		free(q->fifo[i]);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

int ioq_new(unsigned n, size_t buf_size, bool aux, uint64_t expect, double stall, struct dev *d, struct ioq **ret)
{
	struct ioq *q = calloc(1, sizeof(*q));
	pthread_condattr_t ca;

	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	q->n = n;
	q->buf_size = buf_size;
	q->stall = stall;
	q->dev = d;
	q->refs = 1;
	q->bufs = calloc(n, sizeof(*q->bufs));
	for (int i = 0; i < _IOQ_MAX; i++)
		q->fifo[i] = calloc(n, sizeof(unsigned));
	if (!q->bufs || !q->fifo[0] || !q->fifo[1] || !q->fifo[2]) {
		q->n = 0;
		ioq_free(q);
		return -ENOMEM;
	}
	q->filled = expect / n >= buf_size; /* each buffer filled at least once */
	for (unsigned i = 0; i < n; i++) {
		q->bufs[i].data = buf_get(buf_size, q->filled);
		q->bufs[i].aux = aux ? buf_get(buf_size, q->filled) : NULL;
		if (!q->bufs[i].data || (aux && !q->bufs[i].aux)) {
			ioq_free(q);
			return -ENOMEM;
		}
		q->fifo[IOQ_FREE][i] = i;
	}
	q->count[IOQ_FREE] = n;
	*ret = q;
	return 0;
}

struct ioq *ioq_ref(struct ioq *q)
{
	pthread_mutex_lock(&q->lock);
	q->refs++;
	pthread_mutex_unlock(&q->lock);
	return q;
}

struct ioq *ioq_unref(struct ioq *q)
{
	if (!q)
		return NULL;
	pthread_mutex_lock(&q->lock);
	int left = --q->refs;
	pthread_mutex_unlock(&q->lock);
	if (left == 0)
		ioq_free(q);
	return NULL;
}

int ioq_start(struct ioq *q, void *(*fn)(void *arg), void *arg, pthread_t *ret_thread)
{
	ioq_ref(q); /* the device thread's, dropped by its ioq_io_exit() */
	int r = -pthread_create(ret_thread, NULL, fn, arg);
	if (r < 0)
		ioq_unref(q);
	return r;
}

void ioq_push(struct ioq *q, int which, struct ioq_buf *b)
{
	pthread_mutex_lock(&q->lock);
	unsigned idx = (unsigned)(b - q->bufs);
	q->fifo[which][(q->head[which] + q->count[which]) % q->n] = idx;
	q->count[which]++;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

/* Under lock: has the current device call exceeded the stall timeout? */
static bool stalled_locked(struct ioq *q, uint64_t now)
{
	return q->stall > 0 && q->in_op && now - q->op_start_ns > (uint64_t)(q->stall * 1e9);
}

static void timed_wait_locked(struct ioq *q, unsigned flags)
{
	if (!(flags & IOQ_WATCH) || q->stall <= 0) {
		pthread_cond_wait(&q->cond, &q->lock);
		return;
	}
	uint64_t now = ioq_now_ns(), limit = (uint64_t)(q->stall * 1e9);
	uint64_t deadline = q->in_op ? q->op_start_ns + limit + 1000000 : now + limit;
	if (deadline <= now)
		deadline = now + 1000000;
	struct timespec ts = { .tv_sec = (time_t)(deadline / 1000000000ull),
			       .tv_nsec = (long)(deadline % 1000000000ull) };
	pthread_cond_timedwait(&q->cond, &q->lock, &ts);
}

/* Under lock: wait for the queues to change; -ETIMEDOUT (without waiting) when IOQ_WATCH and
 * the current device call has stalled. */
static int wait_locked(struct ioq *q, unsigned flags)
{
	if ((flags & IOQ_WATCH) && stalled_locked(q, ioq_now_ns()))
		return -ETIMEDOUT;
	timed_wait_locked(q, flags);
	return 0;
}

int ioq_pop(struct ioq *q, int which, unsigned flags, struct ioq_buf **ret)
{
	int r;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		if (q->stop && which == IOQ_WORK) {
			r = -ECANCELED;
			break;
		}
		if ((flags & IOQ_FAILFAST) && q->io_done && q->io_err) {
			r = -EPIPE;
			break;
		}
		if (q->count[which] > 0) {
			unsigned idx = q->fifo[which][q->head[which]];
			q->head[which] = (q->head[which] + 1) % q->n;
			q->count[which]--;
			*ret = &q->bufs[idx];
			r = 0;
			break;
		}
		if (q->io_done && which != IOQ_WORK) {
			r = -EPIPE;
			break;
		}
		if (flags & IOQ_NOWAIT) {
			r = -EAGAIN;
			break;
		}
		r = wait_locked(q, flags);
		if (r < 0)
			break;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

void ioq_op_begin(struct ioq *q, const char *what, uint64_t off)
{
	pthread_mutex_lock(&q->lock);
	q->in_op = true;
	q->op_start_ns = ioq_now_ns();
	q->op_off = off;
	q->op_what = what;
	pthread_mutex_unlock(&q->lock);
}

void ioq_op_end(struct ioq *q, uint64_t bytes)
{
	pthread_mutex_lock(&q->lock);
	q->in_op = false;
	q->io_bytes += bytes;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

void ioq_io_finish(struct ioq *q, int err, uint64_t err_off)
{
	pthread_mutex_lock(&q->lock);
	if (!q->io_done) {
		q->io_done = true;
		q->io_err = err;
		q->io_err_off = err_off;
	}
	q->in_op = false;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

void ioq_stop(struct ioq *q)
{
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

int ioq_wait_done(struct ioq *q, unsigned flags)
{
	int r = 0;

	pthread_mutex_lock(&q->lock);
	while (!q->io_done) {
		r = wait_locked(q, flags);
		if (r < 0)
			break;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

void ioq_abandon(struct ioq *q, pthread_t thread)
{
	pthread_mutex_lock(&abandoned_lock);
	pthread_mutex_lock(&q->lock);
	q->abandoned = true;
	q->stop = true;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	if (!q->io_exited) {
		q->next_abandoned = abandoned_list;
		abandoned_list = q;
	}
	pthread_mutex_unlock(&abandoned_lock);
	pthread_detach(thread);
	ioq_unref(q);
}

void ioq_io_exit(struct ioq *q)
{
	struct dev *to_free = NULL;

	pthread_mutex_lock(&abandoned_lock);
	q->io_exited = true;
	for (struct ioq **p = &abandoned_list; *p; p = &(*p)->next_abandoned)
		if (*p == q) {
			*p = q->next_abandoned;
			if (q->free_dev)
				to_free = q->dev;
			break;
		}
	pthread_mutex_unlock(&abandoned_lock);
	ioq_io_finish(q, -ECANCELED, 0);
	dev_free(to_free);
	ioq_unref(q);
}

struct dev *ioq_dev_free(struct dev *d)
{
	bool handed = false;

	if (!d)
		return NULL;
	pthread_mutex_lock(&abandoned_lock);
	for (struct ioq *q = abandoned_list; q; q = q->next_abandoned)
		if (q->dev == d && !q->free_dev) {
			q->free_dev = true;
			handed = true;
			break;
		}
	pthread_mutex_unlock(&abandoned_lock);
	if (!handed)
		dev_free(d);
	return NULL;
}

int ioq_finish(struct ioq *q, pthread_t thread)
{
	ioq_stop(q);
	int r = ioq_wait_done(q, IOQ_WATCH);
	if (r == -ETIMEDOUT) {
		ioq_abandon(q, thread);
		return r;
	}
	pthread_join(thread, NULL);
	ioq_unref(q);
	return 0;
}
