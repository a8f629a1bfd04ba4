/* The pipeline: runs one stage of a job on its context (stage_run of stage.h). The stages live
 * in stage_validate.c, stage_select.c and stage_write.c; the context's helpers in stage.c. Each
 * stage reports a log row at its start and end through the sink; the worker owns everything
 * the sink does with them. */
#include "stages/stage.h"
#include "stages/stage_select.h"
#include "stages/stage_validate.h"
#include "stages/stage_write.h"
#include "util/size.h"

/* Selection: an image order writes its image as it is; a content order chooses files
 * (stage_select.c). */
static enum uf_code selection(struct stage_ctx *ctx)
{
	if (ctx->job->image_path) {
		char a[32];
		ctx->bytes_total = ctx->src->mapped;
		stage_log(ctx, LOG_LVL_INFO, STAGE_SELECTION, "stage", UFC_NONE, NULL, "image %s: %s to write",
			  ctx->job->image_path, format_size(ctx->src->mapped, a, sizeof(a)));
		stage_progress(ctx, STAGE_SELECTION, 1, 1);
		return UFC_NONE;
	}
	return stage_selection_content(ctx);
}

enum uf_code stage_run(enum stage_id st, struct stage_ctx *ctx)
{
	enum uf_code c;

	ctx->code = UFC_NONE;
	ctx->details = mfree(ctx->details);
	if (stage_cancelled(ctx))
		return stage_fail(ctx, UFC_CANCELLED, "cancelled before %s", stage_name(st));
	switch (st) {
	case STAGE_VALIDATION:
		c = stage_validation(ctx);
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
