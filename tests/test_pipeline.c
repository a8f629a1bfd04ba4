/* stages/pipeline.c: the four stages run in order through stage_run() on file-backed and faulty
 * devices, with no database (the sink is the test's): an image job written and verified
 * byte-exact; a cancel seen at a chunk boundary of the write (the held-back head never written)
 * and before a stage; each stage's failures with their exact code, message and bad offset
 * (validation, selection, writing, verification, an unknown stage); and the context freed by
 * stage_ctx_done() whatever the outcome (ASan checks for leaks). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers/testutil.h"
#include "stages/stage.h"
#include "util/macro.h"
#include "util/size.h"
#include "wtest.h"

#define MiB (UINT64_C(1) << 20)

static const enum stage_id order[] = { STAGE_VALIDATION, STAGE_SELECTION, STAGE_WRITING, STAGE_VERIFICATION };

/* What the stages reported through the sink: progress here, log rows in log (wtest.h). */
struct sink_rec {
	unsigned progress[_STAGE_MAX]; /* calls per stage */
	uint64_t last_done[_STAGE_MAX], last_total[_STAGE_MAX];
	bool backwards; /* a stage's progress went down */
	struct wt_logcap log;
	atomic_bool *cancel;   /* set it … */
	uint64_t cancel_at;    /* … once the write has passed this many bytes (0: never) */
	uint64_t cancelled_at; /* progress when it was set */
};

static void rec_progress(void *ud, enum stage_id st, uint64_t done, uint64_t total)
{
	struct sink_rec *r = ud;
	cr_assert(st > STAGE_PENDING && st < STAGE_DONE);
	if (r->progress[st] && done < r->last_done[st])
		r->backwards = true;
	r->progress[st]++;
	r->last_done[st] = done;
	r->last_total[st] = total;
	if (st == STAGE_WRITING && r->cancel_at && done >= r->cancel_at && !atomic_load(r->cancel)) {
		r->cancelled_at = done;
		atomic_store(r->cancel, true);
	}
}

static void rec_log(void *ud, enum log_level lvl, enum stage_id st, const char *category, enum uf_code code,
		    const char *details, const char *message)
{
	struct sink_rec *r = ud;
	wt_cap_log(&r->log, lvl, st, category, code, details, message);
}

/* One job on one target: an image of img_len pattern bytes at dir/a.img (content.images = dir),
 * a target file of dev_size bytes, wrapped in a faulty device when fault is given. */
struct pl {
	char *dir, *img, *target;
	uint8_t *data;
	size_t img_len;
	struct job_spec job;
	struct write_opts opts;
	struct dev *dev;
	atomic_bool cancel;
	struct sink_rec rec;
	struct stage_ctx ctx;
};

static void pl_init(struct pl *p, size_t img_len, uint64_t dev_size, const struct dev_fault *fault)
{
	*p = (struct pl){ .img_len = img_len };
	p->dir = tu_tmpdir("pl");
	p->img = wt_image(p->dir, "a.img", img_len, 21, &p->data);
	p->dev = wt_target(p->dir, "t.bin", dev_size, &p->target);
	if (fault) {
		struct dev *d = NULL;
		cr_assert_eq(dev_new_faulty(p->dev, fault, &d), 0);
		p->dev = d;
	}
	p->opts = wt_opts();
	p->opts.capacity_tolerance = 0.1;
	p->job = (struct job_spec){ .job_id = 1,
				    .order_id = 1,
				    .attempt = 1,
				    .capacity_bytes = dev_size,
				    .image_path = (char *)"a.img",
				    .image_root = p->dir,
				    .image_bytes = img_len };
	atomic_init(&p->cancel, false);
	p->rec.cancel = &p->cancel;
	p->ctx = (struct stage_ctx){ .job = &p->job,
				     .dev = p->dev,
				     .opts = &p->opts,
				     .cancel = &p->cancel,
				     .sink = { .userdata = &p->rec, .progress = rec_progress, .log = rec_log } };
}

/* Run the stages in order until one fails, as the worker does; the failing stage in *ret_st
 * (STAGE_DONE when none). */
static enum uf_code pl_run(struct pl *p, enum stage_id *ret_st)
{
	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		enum uf_code c = stage_run(order[i], &p->ctx);
		cr_assert_eq(p->ctx.code, c, "stage_run's result is ctx->code");
		if (c != UFC_NONE) {
			cr_assert_not_null(p->ctx.message, "a failing stage says why");
			*ret_st = order[i];
			return c;
		}
	}
	*ret_st = STAGE_DONE;
	return UFC_NONE;
}

/* Run the stages: the one named fails with code (and a message), as ctx->code says. */
static void pl_run_fails(struct pl *p, enum stage_id failing, enum uf_code code)
{
	enum stage_id st;
	cr_assert_eq(pl_run(p, &st), code, "%s", p->ctx.message ? p->ctx.message : "");
	cr_assert_eq(st, failing, "%s failed, not %s", stage_name(st), stage_name(failing));
}

/* stage_ctx_done leaves nothing behind and may be called again. */
static void pl_done(struct pl *p)
{
	stage_ctx_done(&p->ctx);
	cr_assert_null(p->ctx.src);
	cr_assert_null(p->ctx.write_state);
	cr_assert_null(p->ctx.message);
	stage_ctx_done(&p->ctx);
	dev_free(p->dev);
	tu_rmrf(p->dir);
	free(p->dir);
	free(p->img);
	free(p->target);
	free(p->data);
}

static void assert_message(const struct pl *p, const char *fmt, ...) _printf_(2, 3);
static void assert_message(const struct pl *p, const char *fmt, ...)
{
	va_list ap;
	char *want = NULL;
	va_start(ap, fmt);
	cr_assert(vasprintf(&want, fmt, ap) >= 0);
	va_end(ap);
	cr_assert_str_eq(p->ctx.message, want);
	free(want);
}

/* The failing stage's message starts with the text fmt makes. */
static void assert_message_starts(const struct pl *p, const char *fmt, ...) _printf_(2, 3);
static void assert_message_starts(const struct pl *p, const char *fmt, ...)
{
	va_list ap;
	char *want = NULL;
	va_start(ap, fmt);
	cr_assert(vasprintf(&want, fmt, ap) >= 0);
	va_end(ap);
	cr_assert(strncmp(p->ctx.message, want, strlen(want)) == 0, "'%s' does not start with '%s'", p->ctx.message,
		  want);
	free(want);
}

static const char *sz(uint64_t n, char buf[static 32]) { return format_size(n, buf, 32); }

Test(pipeline, image_job_written_and_verified)
{
	struct pl p;
	enum stage_id st;
	pl_init(&p, 8 * MiB + 1000, 32 * MiB, NULL);

	cr_assert_eq(pl_run(&p, &st), UFC_NONE, "%s", p.ctx.message ? p.ctx.message : "");
	cr_assert_eq(st, STAGE_DONE);
	cr_assert_null(p.ctx.message);
	cr_assert_eq(p.ctx.usable_size, 32 * MiB, "the probe found the file genuine");
	cr_assert_eq(p.ctx.bytes_total, 8 * MiB + 1000);
	cr_assert_eq(p.ctx.bytes_written, ALIGN_UP(8 * MiB + 1000, dev_block_size(p.dev)));
	cr_assert_not_null(p.ctx.src);
	cr_assert_not_null(p.ctx.write_state, "kept for verification until stage_ctx_done");
	/* every stage reported progress, never backwards, and ended at its total */
	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		cr_assert_gt(p.rec.progress[order[i]], 0, "%s", stage_name(order[i]));
		cr_assert_eq(p.rec.last_done[order[i]], p.rec.last_total[order[i]], "%s", stage_name(order[i]));
	}
	cr_assert_not(p.rec.backwards);
	cr_assert_eq(p.rec.log.n_err, 0);
	/* the stick holds the image, zeros after it */
	uint8_t *got = wt_read_file(p.target, 16 * MiB);
	cr_assert(memcmp(got, p.data, p.img_len) == 0);
	for (size_t i = p.img_len; i < 16 * MiB; i++)
		cr_assert_eq(got[i], 0, "byte %zu", i);
	free(got);
	pl_done(&p);
}

Test(pipeline, selection_names_the_image_and_its_size)
{
	struct pl p;
	char a[32];
	pl_init(&p, 4 * MiB, 16 * MiB, NULL);
	p.opts.probe = false;

	cr_assert_eq(stage_run(STAGE_VALIDATION, &p.ctx), UFC_NONE);
	cr_assert_eq(p.rec.log.n, 0, "no probe, no log row");
	cr_assert_eq(stage_run(STAGE_SELECTION, &p.ctx), UFC_NONE);
	cr_assert_eq(p.rec.log.n, 1);
	char *want = NULL;
	cr_assert(asprintf(&want, "image a.img: %s to write", sz(4 * MiB, a)) > 0);
	cr_assert_str_eq(p.rec.log.first, want);
	free(want);
	cr_assert_eq(p.ctx.bytes_total, 4 * MiB);
	cr_assert_eq(p.rec.last_done[STAGE_SELECTION], 1);
	cr_assert_eq(p.rec.last_total[STAGE_SELECTION], 1);
	pl_done(&p);
}

Test(pipeline, cancel_during_the_write_stops_at_a_chunk_boundary)
{
	struct pl p;
	pl_init(&p, 8 * MiB, 16 * MiB, NULL);
	p.rec.cancel_at = 3 * MiB;

	pl_run_fails(&p, STAGE_WRITING, UFC_CANCELLED);
	assert_message(&p, "cancelled during writing");
	cr_assert_eq(uf_code_class(p.ctx.code), UFC_CLASS_CANCELLED);
	cr_assert_geq(p.rec.cancelled_at, 3 * MiB);
	cr_assert_eq(p.ctx.bytes_written % p.opts.buffer_size, 0, "stopped between buffers: %llu",
		     (unsigned long long)p.ctx.bytes_written);
	cr_assert_lt(p.ctx.bytes_written, 8 * MiB, "the write did not run to its end");
	cr_assert_eq(p.rec.progress[STAGE_VERIFICATION], 0, "no stage after the cancel");
	/* the held-back head never reached the target: the stick does not look valid */
	uint8_t *got = wt_read_file(p.target, MiB);
	for (size_t i = 0; i < MiB; i++)
		cr_assert_eq(got[i], 0, "head byte %zu written", i);
	free(got);
	pl_done(&p);
}

Test(pipeline, cancel_before_a_stage_runs_nothing)
{
	struct pl p;
	pl_init(&p, 4 * MiB, 16 * MiB, NULL);
	p.opts.probe = false;
	const enum stage_id each[] = { STAGE_VALIDATION, STAGE_SELECTION, STAGE_WRITING, STAGE_VERIFICATION };

	atomic_store(&p.cancel, true);
	for (size_t i = 0; i < ARRAY_SIZE(each); i++) {
		cr_assert_eq(stage_run(each[i], &p.ctx), UFC_CANCELLED);
		assert_message(&p, "cancelled before %s", stage_name(each[i]));
	}
	cr_assert_null(p.ctx.src, "validation did not open the image");
	for (int s = 0; s < _STAGE_MAX; s++)
		cr_assert_eq(p.rec.progress[s], 0);
	/* the target was never touched */
	uint8_t *got = wt_read_file(p.target, 16 * MiB);
	for (size_t i = 0; i < 16 * MiB; i++)
		cr_assert_eq(got[i], 0, "byte %zu", i);
	free(got);
	pl_done(&p);
}

/* ---- validation ---------------------------------------------------------------------------- */

Test(pipeline, image_outside_the_root_is_order_invalid)
{
	struct pl p;
	pl_init(&p, 4 * MiB, 16 * MiB, NULL);
	p.job.image_path = (char *)"/etc/passwd";

	pl_run_fails(&p, STAGE_VALIDATION, UFC_ORDER_INVALID);
	assert_message(&p, "image '/etc/passwd' is outside content.images '%s'", p.dir);
	cr_assert_eq(uf_code_class(p.ctx.code), UFC_CLASS_PERMANENT);
	cr_assert_null(p.ctx.src);
	pl_done(&p);
}

Test(pipeline, missing_image_is_image_unreadable)
{
	struct pl p;
	pl_init(&p, 4 * MiB, 16 * MiB, NULL);
	p.job.image_path = (char *)"gone.img";

	pl_run_fails(&p, STAGE_VALIDATION, UFC_IMAGE_UNREADABLE);
	assert_message_starts(&p, "content.images '%s': ", p.dir);
	cr_assert(strstr(p.ctx.message, "gone.img"), "names the image: %s", p.ctx.message);
	pl_done(&p);
}

Test(pipeline, image_changed_since_the_order_is_content_changed)
{
	struct pl p;
	char a[32], b[32];
	pl_init(&p, 4 * MiB, 16 * MiB, NULL);
	p.job.image_bytes = 4 * MiB + 4096;

	pl_run_fails(&p, STAGE_VALIDATION, UFC_CONTENT_CHANGED);
	assert_message(&p, "image 'a.img' changed since the order was added: it decodes to %s, the order recorded %s",
		       sz(4 * MiB, a), sz(4 * MiB + 4096, b));
	pl_done(&p);
}

Test(pipeline, image_larger_than_the_stick_is_content_too_large)
{
	struct pl p;
	char a[32], b[32];
	pl_init(&p, 20 * MiB, 16 * MiB, NULL);

	pl_run_fails(&p, STAGE_VALIDATION, UFC_CONTENT_TOO_LARGE);
	assert_message(&p, "image 'a.img' needs %s, the stick holds %s", sz(20 * MiB, a), sz(16 * MiB, b));
	pl_done(&p);
}

Test(pipeline, stick_below_the_tolerance_is_device_too_small)
{
	struct pl p;
	char a[32], b[32], n[32];
	pl_init(&p, 4 * MiB, 16 * MiB, NULL);
	p.job.capacity_bytes = 32 * MiB; /* needs 28.8 MiB with 10% tolerance */

	pl_run_fails(&p, STAGE_VALIDATION, UFC_DEVICE_TOO_SMALL);
	uint64_t need = (uint64_t)((double)(32 * MiB) * 0.9);
	assert_message(&p, "%s holds %s; the order is for %s (at least %s with 10%% tolerance)", dev_name(p.dev),
		       sz(16 * MiB, a), sz(32 * MiB, b), sz(need, n));
	cr_assert_eq(uf_code_class(p.ctx.code), UFC_CLASS_BAD_STICK);
	pl_done(&p);
}

Test(pipeline, fake_stick_is_device_fake_capacity)
{
	struct pl p;
	struct dev_fault f = { .real_size = 8 * MiB, .wrap = true };
	pl_init(&p, 4 * MiB, 32 * MiB, &f);

	pl_run_fails(&p, STAGE_VALIDATION, UFC_DEVICE_FAKE_CAPACITY);
	cr_assert_eq(p.ctx.usable_size, 8 * MiB);
	cr_assert_eq(p.ctx.bad_offset, 8 * MiB, "the first byte that is not real");
	assert_message_starts(&p, "%s is fake (wraparound)", dev_name(p.dev));
	cr_assert_eq(p.rec.log.n_err, 0, "a stage writes no error row: the worker writes the one row");
	char want[160];
	snprintf(want, sizeof(want),
		 "{\"verdict\":\"wraparound\",\"reported_bytes\":%llu,\"usable_bytes\":%llu,\"blocks_probed\":",
		 (unsigned long long)(32 * MiB), (unsigned long long)(8 * MiB));
	cr_assert_not_null(p.ctx.details);
	cr_assert_eq(strncmp(p.ctx.details, want, strlen(want)), 0, "%s", p.ctx.details);
	pl_done(&p);
}

Test(pipeline, content_order_without_a_root_or_a_selection)
{
	struct pl p;
	pl_init(&p, 4 * MiB, 16 * MiB, NULL);
	p.job.image_path = NULL;

	p.job.content_root = NULL;
	cr_assert_eq(stage_run(STAGE_VALIDATION, &p.ctx), UFC_CONTENT_MISSING);
	assert_message(&p, "content root '(unset)' is not a readable folder");
	char *missing = tu_path(p.dir, "no-such-folder");
	p.job.content_root = missing;
	cr_assert_eq(stage_run(STAGE_VALIDATION, &p.ctx), UFC_CONTENT_MISSING);
	assert_message(&p, "content root '%s' is not a readable folder", missing);
	p.job.content_root = p.img; /* a file, not a folder */
	cr_assert_eq(stage_run(STAGE_VALIDATION, &p.ctx), UFC_CONTENT_MISSING);
	p.job.content_root = p.dir;
	cr_assert_eq(stage_run(STAGE_VALIDATION, &p.ctx), UFC_ORDER_INVALID);
	assert_message(&p, "the order names no category and no item");
	cr_assert_eq(p.rec.progress[STAGE_VALIDATION], 0);
	free(missing);
	pl_done(&p);
}

/* ---- writing, verification ---------------------------------------------------------------- */

Test(pipeline, write_error_is_write_io_at_its_block)
{
	struct pl p;
	struct dev_fault f = { .fail_write_at = 5 * MiB + 12345 };
	pl_init(&p, 8 * MiB, 16 * MiB, &f);
	p.opts.probe = false; /* the probe would meet the fault first */

	pl_run_fails(&p, STAGE_WRITING, UFC_WRITE_IO);
	uint64_t bad = ALIGN_DOWN(5 * MiB + 12345, dev_block_size(p.dev));
	cr_assert_eq(p.ctx.bad_offset, bad);
	assert_message(&p, "%s write at offset %llu: %s", dev_name(p.dev), (unsigned long long)bad, strerror(EIO));
	cr_assert_eq(p.rec.log.n_err, 0, "no error row of the stage's own: its details go with the failure");
	char want[64];
	snprintf(want, sizeof(want), "{\"offset\":%llu,\"errno\":%d}", (unsigned long long)bad, EIO);
	cr_assert_str_eq(p.ctx.details, want);
	cr_assert_eq(uf_code_class(p.ctx.code), UFC_CLASS_RETRYABLE);
	pl_done(&p);
}

Test(pipeline, stick_gone_mid_write_is_device_gone)
{
	struct pl p;
	struct dev_fault f = { .gone_after = 3 * MiB };
	pl_init(&p, 8 * MiB, 16 * MiB, &f);
	p.opts.probe = false;

	pl_run_fails(&p, STAGE_WRITING, UFC_DEVICE_GONE);
	assert_message_starts(&p, "%s write at offset ", dev_name(p.dev));
	cr_assert(strstr(p.ctx.message, strerror(ENODEV)), "%s", p.ctx.message);
	cr_assert_not_null(strstr(p.ctx.details, "\"errno\":19}"), "%s", p.ctx.details);
	pl_done(&p);
}

Test(pipeline, flipped_bit_is_verify_mismatch_at_the_exact_byte)
{
	struct pl p;
	struct dev_fault f = { .flip_read_at = 3 * MiB + 777 };
	pl_init(&p, 8 * MiB, 16 * MiB, &f);
	p.opts.probe = false;

	pl_run_fails(&p, STAGE_VERIFICATION, UFC_VERIFY_MISMATCH);
	cr_assert_eq(p.ctx.bad_offset, 3 * MiB + 777);
	assert_message(&p, "%s: wrong data at offset %llu", dev_name(p.dev), (unsigned long long)(3 * MiB + 777));
	cr_assert_eq(p.rec.log.n_err, 0);
	char want[96];
	snprintf(want, sizeof(want), "{\"first_bad_offset\":%llu,\"exact\":true,\"read_error\":false}",
		 (unsigned long long)(3 * MiB + 777));
	cr_assert_str_eq(p.ctx.details, want);
	cr_assert_not_null(p.ctx.write_state);
	pl_done(&p);
}

Test(pipeline, stages_out_of_order_or_unknown)
{
	struct pl p;
	pl_init(&p, 4 * MiB, 16 * MiB, NULL);

	cr_assert_eq(stage_run(STAGE_WRITING, &p.ctx), UFC_PROCESSING_FAILED);
	assert_message(&p, "no block source to write");
	cr_assert_eq(stage_run(STAGE_VERIFICATION, &p.ctx), UFC_PROCESSING_FAILED);
	assert_message(&p, "nothing was written to verify");
	cr_assert_eq(stage_run((enum stage_id)99, &p.ctx), UFC_PROCESSING_FAILED);
	assert_message(&p, "no such stage 99");
	cr_assert_eq(stage_run(STAGE_PENDING, &p.ctx), UFC_PROCESSING_FAILED);
	assert_message(&p, "no such stage 0");
	/* verification off: nothing to do, success */
	p.opts.verify = false;
	cr_assert_eq(stage_run(STAGE_VERIFICATION, &p.ctx), UFC_NONE);
	cr_assert_eq(p.ctx.code, UFC_NONE);
	pl_done(&p);
}

Test(pipeline, stage_names_round_trip)
{
	const char *names[] = { "pending", "validation", "selection", "writing", "verification", "done" };
	cr_assert_eq(ARRAY_SIZE(names), (size_t)_STAGE_MAX);
	for (int s = 0; s < _STAGE_MAX; s++) {
		cr_assert_str_eq(stage_name((enum stage_id)s), names[s]);
		cr_assert_eq(stage_from_name(names[s]), s);
	}
	cr_assert_null(stage_name(_STAGE_MAX));
	cr_assert_null(stage_name((enum stage_id) - 1));
	cr_assert_eq(stage_from_name("Writing"), -1);
	cr_assert_eq(stage_from_name(""), -1);
	cr_assert_eq(stage_from_name(NULL), -1);
}

Test(pipeline, stage_fail_replaces_the_message)
{
	struct stage_ctx ctx = { 0 };
	cr_assert_eq(stage_fail(&ctx, UFC_WRITE_IO, "first %d", 1), UFC_WRITE_IO);
	cr_assert_str_eq(ctx.message, "first 1");
	cr_assert_eq(stage_fail(&ctx, UFC_DEVICE_GONE, "second %s", "x"), UFC_DEVICE_GONE);
	cr_assert_eq(ctx.code, UFC_DEVICE_GONE);
	cr_assert_str_eq(ctx.message, "second x");
	stage_ctx_done(&ctx);
	cr_assert_null(ctx.message);
}
