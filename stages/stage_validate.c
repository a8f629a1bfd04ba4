/* The validation stage: the order can be served (its image opens confined to content.images
 * and fits, or its content library is there), the stick is large enough for what was sold
 * and, by the probe (blkio/probe.c), writable and of genuine capacity. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blkio/probe.h"
#include "stages/stage_validate.h"
#include "util/macro.h"
#include "util/size.h"

enum uf_code stage_probe_device(struct stage_ctx *ctx)
{
	struct probe_result pr;
	char a[32], b[32];
	int r;

	if (!ctx->opts->probe) {
		/* Writable check only: block 0 read and written back unchanged. */
		_cleanup_free_ void *buf = dev_alloc_buf(4096);
		if (!buf)
			return stage_fail(ctx, UFC_PROCESSING_FAILED, "out of memory");
		r = dev_pread(ctx->dev, buf, 4096, 0);
		if (r >= 0)
			r = dev_pwrite(ctx->dev, buf, 4096, 0);
		if (r >= 0)
			r = dev_sync(ctx->dev);
		if (r < 0)
			return stage_fail_io(ctx, STAGE_VALIDATION, r, 0, "write test", NULL);
		ctx->usable_size = dev_size(ctx->dev);
		return UFC_NONE;
	}
	r = probe_run(ctx->dev, ctx->cancel, &pr);
	if (r < 0)
		return stage_fail_io(ctx, STAGE_VALIDATION, r, 0, "capacity probe", NULL);
	char *details = stage_details("{s:s, s:I, s:I, s:I}", "verdict", probe_verdict_name(pr.verdict),
				      "reported_bytes", (json_int_t)pr.reported_size, "usable_bytes",
				      (json_int_t)pr.usable_size, "blocks_probed", (json_int_t)pr.blocks_probed);
	ctx->usable_size = pr.usable_size;
	if (pr.verdict != PROBE_GENUINE) {
		ctx->bad_offset = pr.usable_size;
		return stage_fail_details(ctx, UFC_DEVICE_FAKE_CAPACITY, details,
					  "%s is fake (%s): only %s of %s reported is real", dev_name(ctx->dev),
					  probe_verdict_name(pr.verdict), format_size(pr.usable_size, a, sizeof(a)),
					  format_size(pr.reported_size, b, sizeof(b)));
	}
	stage_log(ctx, LOG_LVL_INFO, STAGE_VALIDATION, "device", UFC_NONE, details, "capacity probe: genuine, %s",
		  format_size(pr.reported_size, a, sizeof(a)));
	free(details);
	return UFC_NONE;
}

enum uf_code stage_validation(struct stage_ctx *ctx)
{
	struct job_spec *job = ctx->job;
	uint64_t devsz = dev_size(ctx->dev);
	char a[32], b[32], n[32];
	enum uf_code c;

	if (job->image_path) {
		_cleanup_free_ char *err = NULL;
		int r = job_spec_open_image(job, &ctx->src, &err);
		if (r < 0) {
			/* a path that leaves content.images or a symlink: the order itself is bad */
			enum uf_code ic = r == -EXDEV || r == -ELOOP ? UFC_ORDER_INVALID
					  : r == -ESTALE	     ? UFC_CONTENT_CHANGED
								     : UFC_IMAGE_UNREADABLE;
			return stage_fail(ctx, ic, "%s", err ? err : strerror(-r));
		}
		if (ctx->src->size > devsz)
			return stage_fail(ctx, UFC_CONTENT_TOO_LARGE, "image '%s' needs %s, the stick holds %s",
					  job->image_path, format_size(ctx->src->size, a, sizeof(a)),
					  format_size(devsz, b, sizeof(b)));
	} else {
		struct stat st;
		if (!job->content_root || stat(job->content_root, &st) < 0 || !S_ISDIR(st.st_mode))
			return stage_fail(ctx, UFC_CONTENT_MISSING, "content root '%s' is not a readable folder",
					  job->content_root ? job->content_root : "(unset)");
		if (!job->items_reused && !job->n_item_ids && !(job->categories && job->categories[0]))
			return stage_fail(ctx, UFC_ORDER_INVALID, "the order names no category and no item");
	}
	stage_progress(ctx, STAGE_VALIDATION, 1, 3);
	double tol = ctx->opts->capacity_tolerance;
	uint64_t need = (uint64_t)((double)job->capacity_bytes * (1.0 - tol));
	if (devsz < need)
		return stage_fail(ctx, UFC_DEVICE_TOO_SMALL,
				  "%s holds %s; the order is for %s (at least %s with %.0f%% tolerance)",
				  dev_name(ctx->dev), format_size(devsz, a, sizeof(a)),
				  format_size(job->capacity_bytes, b, sizeof(b)), format_size(need, n, sizeof(n)),
				  tol * 100);
	ctx->usable_size = devsz;
	c = stage_probe_device(ctx); /* writable, genuine capacity; sets usable_size */
	if (c != UFC_NONE)
		return c;
	if (ctx->usable_size < need)
		return stage_fail(ctx, UFC_DEVICE_FAKE_CAPACITY, "%s: only %s usable of %s reported",
				  dev_name(ctx->dev), format_size(ctx->usable_size, a, sizeof(a)),
				  format_size(devsz, b, sizeof(b)));
	if (ctx->src && ctx->src->size > ctx->usable_size)
		return stage_fail(ctx, UFC_DEVICE_FAKE_CAPACITY, "%s: the image needs %s but only %s is usable",
				  dev_name(ctx->dev), format_size(ctx->src->size, a, sizeof(a)),
				  format_size(ctx->usable_size, b, sizeof(b)));
	stage_progress(ctx, STAGE_VALIDATION, 3, 3);
	return UFC_NONE;
}
