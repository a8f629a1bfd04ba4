/* The stage dispatcher and the parts of validation and selection that concern image orders.
 * Writing, verification and the stick probe live in stage_write.c; content selection and the
 * FAT32 composer in stage_select.c. Each stage reports a log row at its start and end through
 * the sink; the worker owns everything the sink does with them. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/config.h"
#include "stages/stage.h"
#include "stages/stage_select.h"
#include "stages/stage_write.h"
#include "util/macro.h"
#include "util/openfile.h"
#include "util/size.h"

void write_opts_from_config(const struct uf_config *cfg, struct write_opts *ret)
{
	*ret = (struct write_opts){
		.buffer_size = (size_t)cfg->write.buffer_size,
		.queue_depth = cfg->write.queue_depth,
		.verify = cfg->write.verify,
		.verify_full = cfg->write.verify_full,
		.reset_before_verify = cfg->write.reset_before_verify,
		.sync_interval = cfg->write.sync_interval,
		.stall_timeout = cfg->write.stall_timeout,
		.capacity_tolerance = cfg->worker.capacity_tolerance,
		.probe = cfg->write.probe,
	};
}

int job_spec_open_image(const struct job_spec *job, struct blksrc **ret, char **ret_error)
{
	const char *root = job->image_root;
	const char *rel = job->image_path;
	struct blksrc *src = NULL;

	if (!root || !rel) {
		if (ret_error)
			*ret_error = strdup(!root ? "content.images is not set" : "the order names no image");
		return -EINVAL;
	}
	if (rel[0] == '/' && !(rel = path_beneath(root, rel))) {
		if (ret_error &&
		    asprintf(ret_error, "image '%s' is outside content.images '%s'", job->image_path, root) < 0)
			*ret_error = NULL;
		return -EXDEV;
	}
	_cleanup_close_ int dfd = open_root_dir(root);
	if (dfd < 0) {
		if (ret_error && asprintf(ret_error, "content.images '%s': %s", root, strerror(-dfd)) < 0)
			*ret_error = NULL;
		return dfd;
	}
	_cleanup_free_ char *err = NULL;
	int r = blksrc_open_image_at(dfd, rel, &src, &err);
	if (r < 0) {
		if (ret_error && asprintf(ret_error, "content.images '%s': %s", root, err ? err : strerror(-r)) < 0)
			*ret_error = NULL;
		return r;
	}
	if (job->image_bytes && src->size != job->image_bytes) {
		char a[32], b[32];
		if (ret_error && asprintf(ret_error,
					  "image '%s' changed since the order was added: it decodes to %s, "
					  "the order recorded %s",
					  job->image_path, format_size(src->size, a, sizeof(a)),
					  format_size(job->image_bytes, b, sizeof(b))) < 0)
			*ret_error = NULL;
		blksrc_free(src);
		return -ESTALE;
	}
	*ret = src;
	return 0;
}

static const char *const stage_names[_STAGE_MAX] = {
	[STAGE_PENDING] = "pending", [STAGE_VALIDATION] = "validation",	    [STAGE_SELECTION] = "selection",
	[STAGE_WRITING] = "writing", [STAGE_VERIFICATION] = "verification", [STAGE_DONE] = "done",
};

const char *stage_name(enum stage_id s)
{
	if ((int)s < 0 || s >= _STAGE_MAX)
		return NULL;
	return stage_names[s];
}

int stage_from_name(const char *s)
{
	for (int i = 0; s && i < _STAGE_MAX; i++)
		if (strcmp(stage_names[i], s) == 0)
			return i;
	return -1;
}

enum uf_code stage_fail(struct stage_ctx *ctx, enum uf_code code, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	free(ctx->message);
	ctx->message = m;
	ctx->code = code;
	return code;
}

void stage_ctx_done(struct stage_ctx *ctx)
{
	ctx->src = blksrc_free(ctx->src);
	stage_write_state_free(ctx);
	free(ctx->message);
	ctx->message = NULL;
}

static void sink_log(struct stage_ctx *ctx, enum log_level lvl, enum stage_id st, const char *category,
		     enum uf_code code, const char *details, const char *fmt, ...) _printf_(7, 8);
static void sink_log(struct stage_ctx *ctx, enum log_level lvl, enum stage_id st, const char *category,
		     enum uf_code code, const char *details, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;
	if (!ctx->sink.log)
		return;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	ctx->sink.log(ctx->sink.userdata, lvl, st, category, code, details, m ? m : "");
	free(m);
}

static void progress(struct stage_ctx *ctx, enum stage_id st, uint64_t done, uint64_t total)
{
	if (ctx->sink.progress)
		ctx->sink.progress(ctx->sink.userdata, st, done, total);
}

static bool cancelled(struct stage_ctx *ctx) { return ctx->cancel && atomic_load(ctx->cancel); }

static enum uf_code validation(struct stage_ctx *ctx)
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
	progress(ctx, STAGE_VALIDATION, 1, 3);
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
	progress(ctx, STAGE_VALIDATION, 3, 3);
	return UFC_NONE;
}

static enum uf_code selection(struct stage_ctx *ctx)
{
	if (ctx->job->image_path) {
		char a[32];
		ctx->bytes_total = ctx->src->mapped;
		sink_log(ctx, LOG_LVL_INFO, STAGE_SELECTION, "stage", UFC_NONE, NULL, "image %s: %s to write",
			 ctx->job->image_path, format_size(ctx->src->mapped, a, sizeof(a)));
		progress(ctx, STAGE_SELECTION, 1, 1);
		return UFC_NONE;
	}
	return stage_selection_content(ctx);
}

enum uf_code stage_run(enum stage_id st, struct stage_ctx *ctx)
{
	enum uf_code c;

	ctx->code = UFC_NONE;
	if (cancelled(ctx))
		return stage_fail(ctx, UFC_CANCELLED, "cancelled before %s", stage_name(st));
	switch (st) {
	case STAGE_VALIDATION:
		c = validation(ctx);
		break;
	case STAGE_SELECTION:
		c = selection(ctx);
		break;
	case STAGE_WRITING:
		c = stage_writing(ctx);
		break;
	case STAGE_VERIFICATION:
		c = ctx->opts->verify ? stage_verification(ctx) : UFC_NONE;
		break;
	default:
		c = stage_fail(ctx, UFC_PROCESSING_FAILED, "no such stage %d", (int)st);
	}
	if (c != UFC_NONE && ctx->code == UFC_NONE)
		stage_fail(ctx, c, "%s failed", stage_name(st));
	return c;
}
