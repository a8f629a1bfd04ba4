/* stages/ioq.c, the I/O queue between a compute thread and one device thread: a new queue has
 * every buffer free and aligned; each queue is FIFO through wrap-around; the errors ioq.h lists
 * for ioq_pop (-EAGAIN, -ECANCELED, -EPIPE with and without IOQ_FAILFAST); a device thread
 * writing a file-backed device (usb/dev.h) in submission order, byte-exact; a faulty device's
 * -EIO carried to the caller with its offset; and the stall watchdog: a stuck write times the
 * caller out, the thread is abandoned and frees the queue and the device on its way out. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers/stalldev.h"
#include "helpers/testutil.h"
#include "blkio/ioq.h"
#include "blkio/dev.h"
#include "util/macro.h"

#define KiB (1u << 10)
#define MiB (1u << 20)

static struct ioq *new_queue(unsigned n, size_t buf_size, bool aux, double stall, struct dev *d)
{
	struct ioq *q = NULL;
	cr_assert_eq(ioq_new(n, buf_size, aux, (uint64_t)n * buf_size, stall, d, &q), 0);
	cr_assert_not_null(q);
	return q;
}

/* The caller's reference, the only one while no device thread was started. */
static void drop_queue(struct ioq *q) { cr_assert_null(ioq_unref(q)); }

Test(ioq, new_queue_has_every_buffer_free_and_aligned)
{
	struct ioq *q = new_queue(4, 64 * KiB, true, 0, NULL);
	struct ioq_buf *b[4];

	cr_assert_eq(q->n, 4);
	cr_assert_eq(q->buf_size, 64 * KiB);
	cr_assert_eq(q->count[IOQ_FREE], 4);
	cr_assert_eq(q->count[IOQ_WORK], 0);
	cr_assert_eq(q->count[IOQ_DONE], 0);
	cr_assert_eq(q->refs, 1, "the caller's; ioq_start() adds the device thread's");
	for (unsigned i = 0; i < 4; i++) {
		cr_assert_eq(ioq_pop(q, IOQ_FREE, IOQ_NOWAIT, &b[i]), 0);
		cr_assert_eq(b[i], &q->bufs[i], "free buffers come in index order");
		cr_assert_eq((uintptr_t)b[i]->data % 4096, 0);
		cr_assert_not_null(b[i]->aux);
		cr_assert_eq((uintptr_t)b[i]->aux % 4096, 0);
		memset(b[i]->data, 0xa5, 64 * KiB); /* the whole buffer is ours */
		memset(b[i]->aux, 0x5a, 64 * KiB);
	}
	struct ioq_buf *x = NULL;
	cr_assert_eq(ioq_pop(q, IOQ_FREE, IOQ_NOWAIT, &x), -EAGAIN);
	cr_assert_eq(ioq_pop(q, IOQ_WORK, IOQ_NOWAIT, &x), -EAGAIN);
	cr_assert_eq(ioq_pop(q, IOQ_DONE, IOQ_NOWAIT, &x), -EAGAIN);
	cr_assert_null(x, "*ret untouched on error");
	drop_queue(q);

	q = new_queue(2, 4096, false, 0, NULL);
	cr_assert_null(q->bufs[0].aux);
	cr_assert_null(q->bufs[1].aux);
	drop_queue(q);
	cr_assert_null(ioq_unref(NULL));
}

Test(ioq, references)
{
	struct ioq *q = new_queue(2, 4096, false, 0, NULL);
	cr_assert_eq(ioq_ref(q), q);
	cr_assert_eq(q->refs, 2);
	cr_assert_null(ioq_unref(q));
	cr_assert_eq(q->refs, 1, "not freed while the caller holds it (ASan would see a use after free)");
	drop_queue(q);
}

Test(ioq, queues_are_fifo_through_wrap_around)
{
	struct ioq *q = new_queue(3, 4096, false, 0, NULL);
	struct ioq_buf *b;

	/* five rounds over three slots: the ring indices wrap several times */
	for (int round = 0; round < 5; round++) {
		const unsigned order[3] = { (unsigned)round % 3, (unsigned)(round + 2) % 3, (unsigned)(round + 1) % 3 };
		struct ioq_buf *all[3];
		for (unsigned i = 0; i < 3; i++)
			cr_assert_eq(ioq_pop(q, IOQ_FREE, IOQ_NOWAIT, &all[i]), 0);
		for (unsigned i = 0; i < 3; i++)
			ioq_push(q, IOQ_WORK, all[order[i]]);
		cr_assert_eq(q->count[IOQ_WORK], 3);
		for (unsigned i = 0; i < 3; i++) {
			cr_assert_eq(ioq_pop(q, IOQ_WORK, IOQ_NOWAIT, &b), 0);
			cr_assert_eq(b, all[order[i]], "round %d, position %u", round, i);
			ioq_push(q, IOQ_DONE, b);
		}
		for (unsigned i = 0; i < 3; i++) {
			cr_assert_eq(ioq_pop(q, IOQ_DONE, IOQ_NOWAIT, &b), 0);
			cr_assert_eq(b, all[order[i]], "round %d, position %u", round, i);
			ioq_push(q, IOQ_FREE, b);
		}
	}
	drop_queue(q);
}

Test(ioq, stop_cancels_only_the_work_queue)
{
	struct ioq *q = new_queue(2, 4096, false, 0, NULL);
	struct ioq_buf *b, *x = NULL;

	cr_assert_eq(ioq_pop(q, IOQ_FREE, IOQ_NOWAIT, &b), 0);
	ioq_push(q, IOQ_WORK, b);
	ioq_stop(q);
	cr_assert_eq(ioq_pop(q, IOQ_WORK, 0, &x), -ECANCELED, "even with work queued");
	cr_assert_null(x);
	cr_assert_eq(q->count[IOQ_WORK], 1);
	cr_assert_eq(ioq_pop(q, IOQ_FREE, IOQ_NOWAIT, &b), 0, "the caller's queues still pop");
	drop_queue(q);
}

Test(ioq, finished_device_thread_ends_the_waits)
{
	struct ioq *q = new_queue(3, 4096, false, 0, NULL);
	struct ioq_buf *a, *b, *x = NULL;

	cr_assert_eq(ioq_pop(q, IOQ_FREE, IOQ_NOWAIT, &a), 0);
	cr_assert_eq(ioq_pop(q, IOQ_FREE, IOQ_NOWAIT, &b), 0);
	ioq_push(q, IOQ_DONE, a);
	ioq_io_finish(q, 0, 0);
	cr_assert(q->io_done);
	cr_assert_eq(q->io_err, 0);
	/* what is queued still comes out, then -EPIPE instead of waiting forever */
	cr_assert_eq(ioq_pop(q, IOQ_DONE, 0, &x), 0);
	cr_assert_eq(x, a);
	cr_assert_eq(ioq_pop(q, IOQ_DONE, 0, &x), -EPIPE);
	cr_assert_eq(ioq_pop(q, IOQ_FREE, 0, &x), 0, "one free buffer left");
	cr_assert_eq(ioq_pop(q, IOQ_FREE, 0, &x), -EPIPE);
	/* the work queue is the device thread's: it is not ended by io_done */
	cr_assert_eq(ioq_pop(q, IOQ_WORK, IOQ_NOWAIT, &x), -EAGAIN);
	cr_assert_eq(ioq_wait_done(q, 0), 0);
	cr_assert_eq(ioq_wait_done(q, IOQ_WATCH), 0);
	(void)b;
	drop_queue(q);
}

Test(ioq, failfast_reports_the_first_error_only)
{
	struct ioq *q = new_queue(2, 4096, false, 0, NULL);
	struct ioq_buf *x = NULL;

	ioq_io_finish(q, -EIO, 12345);
	ioq_io_finish(q, -ENODEV, 999); /* a second finish changes nothing */
	cr_assert_eq(q->io_err, -EIO);
	cr_assert_eq(q->io_err_off, 12345);
	cr_assert_eq(ioq_pop(q, IOQ_FREE, IOQ_FAILFAST, &x), -EPIPE, "though buffers are free");
	cr_assert_null(x);
	cr_assert_eq(ioq_pop(q, IOQ_FREE, 0, &x), 0, "without IOQ_FAILFAST they still pop");
	drop_queue(q);

	/* a successful end is no failure */
	q = new_queue(1, 4096, false, 0, NULL);
	ioq_io_finish(q, 0, 0);
	cr_assert_eq(ioq_pop(q, IOQ_FREE, IOQ_FAILFAST, &x), 0);
	drop_queue(q);
}

/* ---- a device thread on real devices ---------------------------------------------------------- */

/* The device thread as the writer runs one: pop work, write it (bracketed for the watchdog),
 * hand it back; a zero-length buffer ends the stream; the first error ends the thread. */
struct devthread {
	struct ioq *q;
	struct dev *d;
	sem_t exited; /* posted after ioq_io_exit: the thread holds nothing any more */
};

static void *devthread_main(void *p)
{
	struct devthread *t = p;
	struct ioq *q = t->q;
	struct ioq_buf *b;
	int err = 0;
	uint64_t err_off = 0;

	while (ioq_pop(q, IOQ_WORK, 0, &b) == 0) {
		if (b->len == 0) {
			ioq_push(q, IOQ_DONE, b);
			break;
		}
		ioq_op_begin(q, "write", b->off);
		b->err = dev_pwrite(t->d, b->data, b->len, b->off);
		ioq_op_end(q, b->err < 0 ? 0 : b->len);
		if (b->err < 0) {
			err = b->err;
			err_off = b->err_off = b->off;
		}
		ioq_push(q, IOQ_DONE, b);
		if (err)
			break;
	}
	ioq_io_finish(q, err, err_off);
	ioq_io_exit(q);
	sem_post(&t->exited);
	return NULL;
}

static pthread_t devthread_start(struct devthread *t, struct ioq *q, struct dev *d)
{
	pthread_t th;
	*t = (struct devthread){ .q = q, .d = d };
	cr_assert_eq(sem_init(&t->exited, 0, 0), 0);
	cr_assert_eq(ioq_start(q, devthread_main, t, &th), 0);
	return th;
}

/* Wait (bounded) for the device thread to have left ioq_io_exit. */
static void devthread_wait_exited(struct devthread *t, int seconds)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	int r;
	while ((r = sem_timedwait(&t->exited, &ts)) < 0 && errno == EINTR)
		;
	cr_assert_eq(r, 0, "the device thread did not exit within %d s", seconds);
	sem_destroy(&t->exited);
}

struct stream_result {
	unsigned done;	   /* buffers back in IOQ_DONE, in order */
	uint64_t offs[64]; /* their offsets, in the order they came back */
	int err;	   /* first buffer error */
	uint64_t err_off;  /* its offset */
	int pop_err;	   /* the caller's pop that ended the stream early, or 0 */
};

/* Write n buffers of q->buf_size pattern bytes (seed) at offsets 0, buf_size, … through the
 * queue, then the end-of-stream buffer, recycling finished buffers as the writer does. */
static void stream(struct ioq *q, unsigned n, uint64_t seed, unsigned flags, struct stream_result *res)
{
	struct ioq_buf *b;
	unsigned sent = 0;

	*res = (struct stream_result){ 0 };
	while (sent <= n) {
		int r = ioq_pop(q, IOQ_FREE, flags | IOQ_NOWAIT, &b);
		if (r == -EAGAIN)
			r = ioq_pop(q, IOQ_DONE, flags, &b);
		else if (r == 0) {
			b->off = (uint64_t)sent * q->buf_size;
			b->len = b->data_len = sent < n ? q->buf_size : 0;
			b->err = 0;
			tu_fill_pattern(b->data, q->buf_size, seed + sent);
			ioq_push(q, IOQ_WORK, b);
			sent++;
			continue;
		}
		if (r < 0) {
			res->pop_err = r;
			return;
		}
		/* a finished buffer */
		cr_assert(res->done < ARRAY_SIZE(res->offs));
		res->offs[res->done++] = b->off;
		if (b->err && !res->err) {
			res->err = b->err;
			res->err_off = b->err_off;
		}
		ioq_push(q, IOQ_FREE, b);
	}
	/* collect the rest */
	while (ioq_pop(q, IOQ_DONE, flags, &b) == 0) {
		cr_assert(res->done < ARRAY_SIZE(res->offs));
		res->offs[res->done++] = b->off;
		if (b->err && !res->err) {
			res->err = b->err;
			res->err_off = b->err_off;
		}
		if (b->len == 0)
			break;
	}
}

static struct dev *file_dev(const char *dir, uint64_t size, char **ret_path)
{
	char *p = tu_path(dir, "t.bin");
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
	struct dev *d = NULL;
	cr_assert_eq(dev_open(p, DEV_OPEN_WRITE, &d), 0);
	*ret_path = p;
	return d;
}

Test(ioq, file_device_written_in_submission_order)
{
	enum { N = 16, DEPTH = 4 };
	char *dir = tu_tmpdir("ioq"), *path;
	struct dev *d = file_dev(dir, 2 * MiB, &path);
	struct ioq *q = new_queue(DEPTH, 64 * KiB, false, 60, d);
	struct devthread t;
	pthread_t th = devthread_start(&t, q, d);
	struct stream_result res;

	stream(q, N, 40, 0, &res);
	cr_assert_eq(res.pop_err, 0);
	cr_assert_eq(res.err, 0);
	cr_assert_eq(res.done, N + 1, "every buffer and the end of stream came back");
	for (unsigned i = 0; i <= N; i++)
		cr_assert_eq(res.offs[i], (uint64_t)i * 64 * KiB, "buffer %u came back out of order", i);
	cr_assert_eq(ioq_wait_done(q, IOQ_WATCH), 0);
	cr_assert_eq(q->io_err, 0);
	cr_assert_eq(q->io_bytes, N * 64 * KiB);
	cr_assert_eq(ioq_finish(q, th), 0);
	devthread_wait_exited(&t, 10);
	ioq_dev_free(d); /* no abandoned thread inside it: freed at once */

	/* byte-exact on the file, the rest untouched */
	uint8_t *want = malloc(64 * KiB), *got = malloc(2 * MiB);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(want && got && fd >= 0);
	cr_assert_eq(pread(fd, got, 2 * MiB, 0), (ssize_t)(2 * MiB));
	close(fd);
	for (unsigned i = 0; i < N; i++) {
		tu_fill_pattern(want, 64 * KiB, 40 + i);
		cr_assert(memcmp(got + (size_t)i * 64 * KiB, want, 64 * KiB) == 0, "buffer %u", i);
	}
	for (size_t i = N * 64 * KiB; i < 2 * MiB; i++)
		cr_assert_eq(got[i], 0, "byte %zu", i);
	free(want);
	free(got);
	free(path);
	tu_rmrf(dir);
	free(dir);
}

Test(ioq, faulty_device_error_reaches_the_caller_with_its_offset)
{
	enum { N = 16, DEPTH = 4 };
	char *dir = tu_tmpdir("ioq"), *path;
	struct dev_fault f = { .fail_write_at = 5 * 64 * KiB + 100 }; /* inside buffer 5 */
	struct dev *d = NULL;
	cr_assert_eq(dev_new_faulty(file_dev(dir, 2 * MiB, &path), &f, &d), 0);
	struct ioq *q = new_queue(DEPTH, 64 * KiB, false, 60, d);
	struct devthread t;
	pthread_t th = devthread_start(&t, q, d);
	struct stream_result res;

	stream(q, N, 50, IOQ_FAILFAST, &res);
	cr_assert_eq(res.pop_err, -EPIPE, "the caller learns of the failure instead of waiting");
	cr_assert_eq(ioq_wait_done(q, IOQ_WATCH), 0);
	cr_assert_eq(q->io_err, -EIO);
	cr_assert_eq(q->io_err_off, 5 * 64 * KiB);
	cr_assert_eq(q->io_bytes, 5 * 64 * KiB, "the five buffers before the fault were written");
	/* what came back before the failfast pop came back in order, and no buffer after the
	 * failing one was written */
	for (unsigned i = 0; i < res.done; i++)
		cr_assert_eq(res.offs[i], (uint64_t)i * 64 * KiB);
	cr_assert_leq(res.done, 6);
	if (res.err)
		cr_assert(res.err == -EIO && res.err_off == 5 * 64 * KiB);
	cr_assert_eq(ioq_finish(q, th), 0);
	devthread_wait_exited(&t, 10);
	ioq_dev_free(d);
	free(path);
	tu_rmrf(dir);
	free(dir);
}

Test(ioq, stalled_write_times_out_and_the_thread_frees_what_it_holds)
{
	struct stall_dev *s = stall_dev_new(4 * 64 * KiB); /* the fifth buffer's write hangs */
	int release = s->release, freed = s->freed;
	struct ioq *q = new_queue(4, 64 * KiB, false, 0.2, &s->base);
	struct devthread t;
	pthread_t th = devthread_start(&t, q, &s->base);
	struct ioq_buf *b;
	struct timespec t0, t1;

	/* submit five buffers; the first four are written, the fifth hangs */
	for (unsigned i = 0; i < 5; i++) {
		if (ioq_pop(q, IOQ_FREE, IOQ_NOWAIT, &b) < 0)
			cr_assert_eq(ioq_pop(q, IOQ_DONE, IOQ_WATCH, &b), 0);
		b->off = (uint64_t)i * 64 * KiB;
		b->len = b->data_len = 64 * KiB;
		ioq_push(q, IOQ_WORK, b);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r;
	while ((r = ioq_pop(q, IOQ_DONE, IOQ_WATCH, &b)) == 0)
		cr_assert_eq(b->err, 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_eq(r, -ETIMEDOUT);
	cr_assert_lt(took, 10.0, "waited %.1f s: for the write, not the watchdog", took);
	cr_assert(q->in_op);
	cr_assert_str_eq(q->op_what, "write");
	cr_assert_eq(q->op_off, 4 * 64 * KiB);
	cr_assert_eq(ioq_wait_done(q, IOQ_WATCH), -ETIMEDOUT);

	/* the caller gives up: the thread is abandoned, the device handed to it */
	cr_assert_eq(ioq_finish(q, th), -ETIMEDOUT);
	cr_assert_null(ioq_dev_free(&s->base));
	cr_assert_not(stall_dev_freed(freed, 0), "freed while a thread was inside it");
	stall_dev_release(release);
	cr_assert(stall_dev_freed(freed, 10000), "the abandoned thread did not free the device");
	devthread_wait_exited(&t, 10); /* and it dropped the queue (ASan: nothing leaked) */
	stall_dev_close_fds(release, freed);
}

Test(ioq, no_watchdog_without_a_stall_timeout)
{
	/* stall <= 0: IOQ_WATCH waits like a plain wait; -EAGAIN is the only early return */
	struct ioq *q = new_queue(1, 4096, false, 0, NULL);
	struct ioq_buf *b;
	ioq_op_begin(q, "sync", 4096);
	cr_assert_eq(ioq_pop(q, IOQ_DONE, IOQ_WATCH | IOQ_NOWAIT, &b), -EAGAIN);
	ioq_op_end(q, 0);
	cr_assert_not(q->in_op);
	drop_queue(q);
}
