/* The I/O queue between a compute thread (the caller: decoding, hashing, comparing) and one
 * device thread (the only thread that calls dev_pread/dev_pwrite/dev_sync during a run): a
 * fixed set of aligned buffers moving between FIFO queues, plus the stall watchdog. The
 * device thread brackets each device call with ioq_op_begin()/ioq_op_end(); a caller waiting
 * with IOQ_WATCH gets -ETIMEDOUT when a call has been running longer than the stall timeout.
 *
 * A stuck device thread cannot be stopped (it sleeps in the kernel). The caller then
 * abandons the queue (ioq_abandon): the thread keeps its own reference and leaves when its
 * call returns. The device it is inside must not be freed meanwhile: ioq_dev_free() frees a
 * device at once when no abandoned thread is inside it, or hands it to that thread, which
 * frees it on its way out. Private to stages/ (writer.c, verify.c). */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blkio/dev.h"

enum { IOQ_FREE, IOQ_WORK, IOQ_DONE, _IOQ_MAX };

enum {
	IOQ_WATCH = 1 << 0,    /* time out with -ETIMEDOUT when the device thread stalls */
	IOQ_NOWAIT = 1 << 1,   /* -EAGAIN instead of waiting */
	IOQ_FAILFAST = 1 << 2, /* -EPIPE as soon as the device thread failed */
};

struct ioq_buf {
	void *data;		   /* aligned, ioq->buf_size bytes */
	void *aux;		   /* second buffer when asked for (source bytes), else NULL */
	uint64_t off;		   /* device offset of data[0] */
	size_t len;		   /* bytes of the request (aligned); 0 = end of stream */
	size_t data_len;	   /* meaningful bytes (<= len) */
	uint64_t skip_lo, skip_hi; /* writer: do not write this device range */
	int err;		   /* device thread's result for this buffer */
	uint64_t err_off;	   /* offset of the failing block when err */
};

struct ioq {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC; broadcast on every change */
	size_t buf_size;
	unsigned n;
	bool filled; /* its buffers are of dev_alloc_buf_filled (see ioq_new) */
	struct ioq_buf *bufs;
	unsigned *fifo[_IOQ_MAX];
	unsigned head[_IOQ_MAX], count[_IOQ_MAX];

	bool stop;    /* caller → device thread: leave at the next pop */
	bool io_done; /* device thread has finished (successfully or not) */
	int io_err;   /* its error, 0 when none */
	uint64_t io_err_off;

	double stall; /* seconds; <= 0: no watchdog */
	bool in_op;
	uint64_t op_start_ns;
	uint64_t op_off;
	const char *op_what;

	uint64_t io_bytes; /* bytes moved by the device thread */
	uint64_t synced;   /* writer: device offset below which data is durable */
	uint64_t sync_gen; /* bumped at each periodic sync */
	uint64_t reused;   /* writer: resumed bytes the device thread hashed, not written */

	int refs;
	struct dev *dev; /* for the abandoned registry */
	bool abandoned, io_exited, free_dev;
	struct ioq *next_abandoned;
};

/* n buffers of buf_size bytes (aux: a second buffer each), all in IOQ_FREE; one reference,
 * the caller's. expect: the bytes the queue is to carry, which decides whether every buffer will
 * be filled (then dev_alloc_buf_filled's huge pages). Errors: -ENOMEM. */
int ioq_new(unsigned n, size_t buf_size, bool aux, uint64_t expect, double stall, struct dev *d, struct ioq **ret);
struct ioq *ioq_ref(struct ioq *q);
/* Drop one reference; the last frees everything. Accepts NULL; returns NULL. */
struct ioq *ioq_unref(struct ioq *q);
/* Start the device thread fn(arg) for q, with a reference of its own (dropped by its
 * ioq_io_exit()). 0 or -errno of pthread_create (then no thread and no extra reference). */
int ioq_start(struct ioq *q, void *(*fn)(void *arg), void *arg, pthread_t *ret_thread);

void ioq_push(struct ioq *q, int which, struct ioq_buf *b);
/* Pop the oldest buffer of a queue. Errors: -ECANCELED (q->stop set), -EPIPE (device thread
 * finished and the queue is empty; or failed, with IOQ_FAILFAST), -ETIMEDOUT (IOQ_WATCH and a
 * device call stalled; q->op_off names its offset), -EAGAIN (IOQ_NOWAIT and empty). */
int ioq_pop(struct ioq *q, int which, unsigned flags, struct ioq_buf **ret);
/* Device thread: bracket one device call. */
void ioq_op_begin(struct ioq *q, const char *what, uint64_t off);
void ioq_op_end(struct ioq *q, uint64_t bytes);
/* Device thread: finished with err (0 or -errno) at err_off. */
void ioq_io_finish(struct ioq *q, int err, uint64_t err_off);
/* Caller: ask the device thread to leave. */
void ioq_stop(struct ioq *q);
/* Caller: wait until the device thread has finished; with IOQ_WATCH, -ETIMEDOUT on a stall. */
int ioq_wait_done(struct ioq *q, unsigned flags);
/* Caller: stop waiting for a stuck device thread (detach it; it frees the queue and, when
 * ioq_dev_free() asked, the device, once its call returns). Drops the caller's reference. */
void ioq_abandon(struct ioq *q, pthread_t thread);
/* Device thread: the last thing it does. Drops its reference. */
void ioq_io_exit(struct ioq *q);
/* Free d now, or hand it to the abandoned thread still inside it. Returns NULL. */
struct dev *ioq_dev_free(struct dev *d);

/* Caller-side end of a run: stop the device thread, wait for it (watching for a stall), join
 * it or abandon it. Returns 0, or -ETIMEDOUT when it had to be abandoned. */
int ioq_finish(struct ioq *q, pthread_t thread);

uint64_t ioq_now_ns(void);
