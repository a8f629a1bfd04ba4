/* The stage context's helpers (stage.h): stage names, failing with a message, the sink's log
 * rows and progress, freeing what stages pass between them, the write options of a
 * configuration and opening an order's image confined to content.images. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "stages/stage.h"
#include "util/macro.h"
#include "util/openfile.h"
#include "util/message.h"
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

	if (!root || !rel)
		return error_set(ret_error, -EINVAL, "%s",
				 !root ? "content.images is not set" : "the order names no image");
	if (rel[0] == '/' && !(rel = path_beneath(root, rel)))
		return error_set(ret_error, -EXDEV, "image '%s' is outside content.images '%s'", job->image_path, root);
	_cleanup_close_ int dfd = open_root_dir(root);
	if (dfd < 0)
		return error_set(ret_error, dfd, "content.images '%s': %s", root, strerror(-dfd));
	_cleanup_free_ char *err = NULL;
	int r = blksrc_open_image_at(dfd, rel, &src, &err);
	if (r < 0)
		return error_set(ret_error, r, "content.images '%s': %s", root, err ? err : strerror(-r));
	if (job->image_bytes && src->size != job->image_bytes) {
		char a[32], b[32];
		uint64_t got = src->size;
		blksrc_free(src);
		return error_set(ret_error, -ESTALE,
				 "image '%s' changed since the order was added: it decodes to %s, the order recorded %s",
				 job->image_path, format_size(got, a, sizeof(a)),
				 format_size(job->image_bytes, b, sizeof(b)));
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

static enum uf_code vfail(struct stage_ctx *ctx, enum uf_code code, char *details, const char *fmt, va_list ap)
	_printf_(4, 0);
static enum uf_code vfail(struct stage_ctx *ctx, enum uf_code code, char *details, const char *fmt, va_list ap)
{
	str_vset(&ctx->message, fmt, ap);
	free(ctx->details);
	ctx->details = details;
	ctx->code = code;
	return code;
}

enum uf_code stage_fail(struct stage_ctx *ctx, enum uf_code code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(ctx, code, NULL, fmt, ap);
	va_end(ap);
	return code;
}

enum uf_code stage_fail_details(struct stage_ctx *ctx, enum uf_code code, char *details, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(ctx, code, details, fmt, ap);
	va_end(ap);
	return code;
}

enum uf_code stage_fail_io(struct stage_ctx *ctx, enum stage_id st, int r, uint64_t off, const char *what,
			   const char *stalled)
{
	if (r == -ECANCELED)
		return stage_fail(ctx, UFC_CANCELLED, "cancelled during %s", stage_name(st));
	enum uf_code c = dev_error_code(ctx->dev, r);
	ctx->bad_offset = off;
	char *details = stage_details("{s:I, s:i}", "offset", (json_int_t)off, "errno", -r);
	if (r == -ETIMEDOUT && stalled)
		return stage_fail_details(ctx, c, details, "%s: %s", dev_name(ctx->dev), stalled);
	if (c == UFC_DEVICE_GONE && dev_unlinked(ctx->dev))
		return stage_fail_details(
			ctx, c, details,
			"%s was deleted during the %s (at offset %llu): nothing written to it is on any stick",
			dev_name(ctx->dev), what, (unsigned long long)off);
	if (c == UFC_DEVICE_READ_ONLY)
		return stage_fail_details(ctx, c, details, "read-only: %s refused the %s at offset %llu: %s",
					  dev_name(ctx->dev), what, (unsigned long long)off, strerror(-r));
	return stage_fail_details(ctx, c, details, "%s %s at offset %llu: %s", dev_name(ctx->dev), what,
				  (unsigned long long)off, r == -ETIMEDOUT ? "did not return in time" : strerror(-r));
}

char *stage_details(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	json_auto_t *o = json_vpack_ex(NULL, 0, fmt, ap);
	va_end(ap);
	return o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

void stage_ctx_done(struct stage_ctx *ctx)
{
	ctx->src = blksrc_free(ctx->src);
	ctx->write_state = writer_free(ctx->write_state);
	ctx->message = mfree(ctx->message);
	ctx->details = mfree(ctx->details);
}

void stage_log(struct stage_ctx *ctx, enum log_level lvl, enum stage_id st, const char *category, enum uf_code code,
	       const char *details, const char *fmt, ...)
{
	va_list ap;
	if (!ctx->sink.log)
		return;
	va_start(ap, fmt);
	char *m = str_vprintf(fmt, ap);
	va_end(ap);
	ctx->sink.log(ctx->sink.userdata, lvl, st, category, code, details, m ? m : "");
	free(m);
}

void stage_progress(struct stage_ctx *ctx, enum stage_id st, uint64_t done, uint64_t total)
{
	if (ctx->sink.progress)
		ctx->sink.progress(ctx->sink.userdata, st, done, total);
}

bool stage_cancelled(const struct stage_ctx *ctx) { return ctx->cancel && atomic_load(ctx->cancel); }
