/* The content-selection stage (see stage_select.h): selection (select.c), a size/mtime check of
 * every chosen file against the library, and the FAT32 composer (fat32.c) as ctx->src. It
 * reports skipped files and its result as log rows through the sink; it owns nothing past its
 * return except what it hands to ctx (src) and job (items). */
#include "stages/stage_select.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fatfs/fat32.h"
#include "stages/select.h"
#include "util/macro.h"
#include "util/openfile.h"
#include "util/size.h"

static void on_skip(void *userdata, const struct content_item *it, const char *reason)
{
	struct stage_ctx *ctx = userdata;
	_cleanup_free_ char *details = NULL, *msg = NULL;

	if (!ctx->sink.log)
		return;
	/* NULL (the row goes without details) on OOM; rel_path is UTF-8 (the scan keeps no other) */
	json_t *o = json_pack("{s:I, s:s, s:I}", "content_item_id", (json_int_t)it->id, "rel_path", it->rel_path,
			      "size_bytes", (json_int_t)it->size);
	details = o ? json_dumps(o, JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	if (asprintf(&msg, "skipped %s (%llu bytes): %s", it->rel_path, (unsigned long long)it->size, reason) < 0)
		msg = NULL;
	ctx->sink.log(ctx->sink.userdata, LOG_LVL_WARNING, STAGE_SELECTION, "stage", UFC_NONE, details,
		      msg ? msg : "skipped a file of 4 GiB or more");
}

enum uf_code stage_selection_map_read_error(int r)
{
	if (r == -EBADMSG)
		return UFC_CONTENT_CHANGED;
	if (r == -ENOENT)
		return UFC_CONTENT_MISSING;
	return UFC_NONE;
}

/* Every chosen file, opened as the composer will open it (beneath the content root, no
 * symlink, never blocking) and checked on that descriptor against what the scan recorded. */
static enum uf_code check_files(struct stage_ctx *ctx)
{
	const struct job_spec *job = ctx->job;
	_cleanup_close_ int root = open_root_dir(job->content_root);

	if (root < 0)
		return stage_fail(ctx, UFC_CONTENT_MISSING, "content root '%s': %s", job->content_root,
				  strerror(-root));
	for (size_t i = 0; i < job->n_items; i++) {
		const struct job_item *it = &job->items[i];
		struct stat st;

		int fd = open_beneath(root, it->rel_path, &st);
		if (fd < 0) {
			const char *why = open_strerror(root, it->rel_path, fd);
			switch (fd) {
			case -ENOENT:
			case -ENOTDIR:
				return stage_fail(ctx, UFC_CONTENT_MISSING, "%s: vanished from the content root",
						  it->rel_path);
			case -EXDEV:
			case -ELOOP:
			case -EINVAL:
			case -EISDIR:
			case -ENXIO:
				return stage_fail(ctx, UFC_CONTENT_CHANGED, "%s: %s", it->rel_path, why);
			default:
				return stage_fail(ctx, UFC_PROCESSING_FAILED, "%s: %s", it->rel_path, why);
			}
		}
		close(fd);
		if ((uint64_t)st.st_size != it->size)
			return stage_fail(ctx, UFC_CONTENT_CHANGED, "%s: size changed (%llu bytes, library %llu)",
					  it->rel_path, (unsigned long long)st.st_size, (unsigned long long)it->size);
		if ((int64_t)st.st_mtime != it->mtime)
			return stage_fail(ctx, UFC_CONTENT_CHANGED, "%s: mtime changed (%lld, library %lld)",
					  it->rel_path, (long long)st.st_mtime, (long long)it->mtime);
	}
	return UFC_NONE;
}

enum uf_code stage_selection_content(struct stage_ctx *ctx)
{
	struct job_spec *job = ctx->job;
	uint64_t usable = ctx->usable_size;
	_cleanup_free_ char *err = NULL;
	struct blksrc *src = NULL;
	enum uf_code c;
	int r;

	if (ctx->cancel && atomic_load(ctx->cancel))
		return stage_fail(ctx, UFC_CANCELLED, "cancelled");
	if (!job->content_root)
		return stage_fail(ctx, UFC_CONFIG_INVALID, "content.root is not set");
	if (usable == 0 && ctx->dev)
		usable = dev_size(ctx->dev);
	if (usable == 0)
		return stage_fail(ctx, UFC_PROCESSING_FAILED, "the stick's usable size is unknown");

	if (!job->items_reused) {
		struct select_result res;

		r = select_content(job, usable, on_skip, ctx, &res, &err);
		if (r < 0) {
			const char *m = err ? err : strerror(-r);
			switch (r) {
			case -ENOENT:
			case -ENODATA:
				return stage_fail(ctx, UFC_ORDER_INVALID, "%s", m);
			case -ENOSPC:
				return stage_fail(ctx, UFC_CONTENT_TOO_LARGE, "%s", m);
			case -ERANGE:
				return stage_fail(ctx, UFC_DEVICE_TOO_SMALL, "%s", m);
			default:
				return stage_fail(ctx, UFC_PROCESSING_FAILED, "selection failed: %s", m);
			}
		}
		job_items_free(job->items, job->n_items);
		job->items = res.items;
		job->n_items = res.n_items;
	}

	c = check_files(ctx);
	if (c != UFC_NONE)
		return c;

	struct fat_opts opts = {
		.usable_size = usable,
		.content_root = job->content_root,
	};
	r = fat32_compose(&opts, job->items, job->n_items, &src, &err);
	if (r < 0) {
		const char *m = err ? err : strerror(-r);
		switch (r) {
		case -ENOSPC:
			/* A retry reuses the content chosen on the first stick: when this stick is
			 * smaller and that content does not fit, the stick is too small for the job
			 * (it goes back to the queue for a larger one, no attempt spent), the order is
			 * not at fault. */
			if (job->items_reused)
				return stage_fail(
					ctx, UFC_DEVICE_TOO_SMALL,
					"the content chosen for this job on an earlier attempt does not fit this stick: %s",
					m);
			return stage_fail(ctx, UFC_CONTENT_TOO_LARGE, "%s", m);
		case -ERANGE:
			return stage_fail(ctx, UFC_DEVICE_TOO_SMALL, "%s", m);
		default:
			return stage_fail(ctx, UFC_PROCESSING_FAILED, "FAT32 composer: %s", m);
		}
	}
	ctx->src = blksrc_free(ctx->src);
	ctx->src = src;
	ctx->bytes_total = src->mapped;

	if (ctx->sink.log) {
		struct fat_stats st;
		_cleanup_free_ char *msg = NULL, *details = NULL;
		char a[32], b[32];
		uint64_t bytes = 0;

		fat32_stats(src, &st);
		for (size_t i = 0; i < job->n_items; i++)
			bytes += job->items[i].size;
		json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "items", (json_int_t)job->n_items,
				      "content_bytes", (json_int_t)bytes, "bytes_total", (json_int_t)src->mapped,
				      "cluster_size", (json_int_t)st.layout.cluster_size, "clusters",
				      (json_int_t)st.layout.n_clusters, "free_clusters", (json_int_t)st.free_clusters,
				      "reused", job->items_reused);
		details = o ? json_dumps(o, JSON_PRESERVE_ORDER) : NULL;
		json_decref(o);
		if (asprintf(&msg, "%zu files, %s of content, %s to write (FAT32, %u-byte clusters, %u free)",
			     job->n_items, format_size(bytes, a, sizeof(a)), format_size(src->mapped, b, sizeof(b)),
			     st.layout.cluster_size, st.free_clusters) < 0)
			msg = NULL;
		ctx->sink.log(ctx->sink.userdata, LOG_LVL_INFO, STAGE_SELECTION, "stage", UFC_NONE, details,
			      msg ? msg : "content selected");
	}
	if (ctx->sink.progress)
		ctx->sink.progress(ctx->sink.userdata, STAGE_SELECTION, 1, 1);
	return UFC_NONE;
}
