/* Implementation of stage_write.h: thin wrappers that run writer.c and verify.c on a stage
 * context and translate their results into job error codes and log rows. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/stage_write.h"
#include "stages/stage_select.h"
#include "blkio/verify.h"
#include "blkio/writer.h"
#include "util/macro.h"
#include "util/size.h"

struct wcb {
	struct stage_ctx *ctx;
};

static void w_progress(void *ud, uint64_t done, uint64_t total)
{
	struct stage_ctx *ctx = ud;
	ctx->bytes_written = done;
	if (ctx->sink.progress)
		ctx->sink.progress(ctx->sink.userdata, STAGE_WRITING, done, total);
}

static void w_checkpoint(void *ud, const char *json)
{
	struct stage_ctx *ctx = ud;
	if (ctx->sink.checkpoint)
		ctx->sink.checkpoint(ctx->sink.userdata, json);
}

static int run_writer(struct stage_ctx *ctx, const char *resume, struct writer **ret_w)
{
	struct writer_cbs cbs = { .userdata = ctx, .progress = w_progress, .checkpoint = w_checkpoint };
	struct writer *w = NULL;
	int r = writer_new(ctx->dev, ctx->src, ctx->opts, resume, &w);
	if (r < 0)
		return r;
	const struct writer_stats *st = writer_stats(w);
	if (st->resume_note)
		stage_log(ctx, LOG_LVL_WARNING, STAGE_WRITING, "device", UFC_NONE, NULL, "resume state ignored: %s",
			  st->resume_note);
	r = writer_run(w, ctx->cancel, &cbs);
	*ret_w = w;
	return r;
}

enum uf_code stage_writing(struct stage_ctx *ctx)
{
	struct writer *w = NULL;
	char a[32], b[32];

	if (!ctx->src)
		return stage_fail(ctx, UFC_PROCESSING_FAILED, "no block source to write");
	if (ctx->src->size > dev_size(ctx->dev)) {
		ctx->bad_offset = dev_size(ctx->dev);
		return stage_fail(ctx, UFC_CONTENT_TOO_LARGE, "the image needs %s, %s holds %s",
				  format_size(ctx->src->size, a, sizeof(a)), dev_name(ctx->dev),
				  format_size(dev_size(ctx->dev), b, sizeof(b)));
	}
	ctx->write_state = writer_free(ctx->write_state);
	int r = run_writer(ctx, ctx->resume_json, &w);
	if (r == -ESTALE && ctx->job && ctx->job->image_path) {
		/* The image is not what the interrupted attempt wrote: start over. */
		stage_log(ctx, LOG_LVL_WARNING, STAGE_WRITING, "device", UFC_NONE, NULL,
			  "image differs from the interrupted attempt; writing from the start");
		w_checkpoint(ctx, NULL);
		w = writer_free(w);
		ctx->src = blksrc_free(ctx->src);
		_cleanup_free_ char *err = NULL;
		r = job_spec_open_image(ctx->job, &ctx->src, &err);
		if (r < 0)
			return stage_fail(ctx, UFC_IMAGE_UNREADABLE, "%s", err ? err : strerror(-r));
		r = run_writer(ctx, NULL, &w);
	}
	if (!w) {
		if (r == -EFBIG)
			return stage_fail(ctx, UFC_CONTENT_TOO_LARGE, "the image is larger than %s",
					  dev_name(ctx->dev));
		return stage_fail(ctx, UFC_PROCESSING_FAILED, "writer setup failed: %s", strerror(-r));
	}
	const struct writer_stats *st = writer_stats(w);
	ctx->write_state = w;
	ctx->bytes_written = st->bytes_written + st->bytes_reused;
	if (st->resumed && r != -ESTALE) {
		_cleanup_free_ char *details = stage_details("{s:I, s:I}", "resume_from", (json_int_t)st->resume_from,
							     "bytes_reused", (json_int_t)st->bytes_reused);
		stage_log(ctx, LOG_LVL_INFO, STAGE_WRITING, "device", UFC_NONE, details,
			  "resumed at offset %llu (%s already on the stick)", (unsigned long long)st->resume_from,
			  format_size(st->bytes_reused, a, sizeof(a)));
	}
	if (r == 0) {
		_cleanup_free_ char *details =
			stage_details("{s:I, s:I}", "bytes_written", (json_int_t)st->bytes_written, "bytes_reused",
				      (json_int_t)st->bytes_reused);
		stage_log(ctx, LOG_LVL_INFO, STAGE_WRITING, "device", UFC_NONE, details, "wrote %s",
			  format_size(st->bytes_written, a, sizeof(a)));
		return UFC_NONE;
	}
	if (st->image_error && ctx->job && !ctx->job->image_path) {
		/* a content file changed or vanished since the scan (the composer checks size, mtime
		 * and sha256 as it reads): CONTENT_CHANGED / CONTENT_MISSING, a permanent error */
		enum uf_code cc = stage_selection_map_read_error(r);
		if (cc != UFC_NONE)
			return stage_fail(ctx, cc, "%s", st->error ? st->error : "content changed");
	}
	if (st->image_error)
		return stage_fail(ctx, UFC_IMAGE_UNREADABLE, "%s", st->error ? st->error : "image unreadable");
	if (r == -ESTALE) {
		w_checkpoint(ctx, NULL);
		return stage_fail(ctx, UFC_PROCESSING_FAILED, "%s", st->error ? st->error : "resume state stale");
	}
	return stage_fail_io(ctx, STAGE_WRITING, r, st->bad_offset, "write", st->error);
}

static int reopen_image(void *ud, struct blksrc **ret)
{
	struct stage_ctx *ctx = ud;
	return job_spec_open_image(ctx->job, ret, NULL);
}

static void v_progress(void *ud, uint64_t done, uint64_t total)
{
	struct stage_ctx *ctx = ud;
	if (ctx->sink.progress)
		ctx->sink.progress(ctx->sink.userdata, STAGE_VERIFICATION, done, total);
}

enum uf_code stage_verification(struct stage_ctx *ctx)
{
	struct writer *w = ctx->write_state;
	struct verify_result vr = { 0 };
	int r;

	if (!w)
		return stage_fail(ctx, UFC_PROCESSING_FAILED, "nothing was written to verify");
	if (ctx->opts->reset_before_verify) {
		r = dev_reset(ctx->dev);
		if (r < 0)
			return stage_fail_io(ctx, STAGE_VERIFICATION, r, 0, "reset before verify", NULL);
	}
	struct verify_opts vo = {
		.buffer_size = ctx->opts->buffer_size,
		.queue_depth = ctx->opts->queue_depth,
		.stall_timeout = ctx->opts->stall_timeout,
		.full = ctx->opts->verify_full,
		.reopen = ctx->job && ctx->job->image_path ? reopen_image : NULL,
		.reopen_userdata = ctx,
		.progress = v_progress,
		.progress_userdata = ctx,
	};
	r = writer_verify(w, ctx->dev, &vo, ctx->cancel, &vr);
	if (r == 0) {
		_cleanup_free_ char *details = stage_details("{s:I}", "bytes_read", (json_int_t)vr.bytes_read);
		stage_log(ctx, LOG_LVL_INFO, STAGE_VERIFICATION, "device", UFC_NONE, details, "verified");
		return UFC_NONE;
	}
	if (r == -EBADMSG || r == -EIO) {
		ctx->bad_offset = vr.bad_offset;
		char *details = stage_details("{s:I, s:b, s:b}", "first_bad_offset", (json_int_t)vr.bad_offset, "exact",
					      vr.exact, "read_error", r == -EIO);
		return stage_fail_details(ctx, UFC_VERIFY_MISMATCH, details, "%s: %s at offset %llu",
					  dev_name(ctx->dev),
					  r == -EIO  ? "read error"
					  : vr.exact ? "wrong data"
						     : "wrong data in the chunk",
					  (unsigned long long)vr.bad_offset);
	}
	return stage_fail_io(ctx, STAGE_VERIFICATION, r, vr.bad_offset, "read-back", NULL);
}
