/* The content-selection stage of content orders: chooses the files (select.h) unless a prior
 * attempt's choice is reused, checks that each chosen file is still what the library scanned,
 * and builds the FAT32 composer (fat32.h) as the block source the writing stage consumes. */
#pragma once

#include "stages/stage.h"

/* Content selection for ctx->job (a content order). Uses ctx->usable_size (or the device size
 * when 0). On success: job->items/n_items filled (unless job->items_reused), ctx->src = the
 * composer, ctx->bytes_total = bytes it will produce; returns UFC_NONE. Failures (with
 * ctx->message): ORDER_INVALID (unknown/inactive explicit item, nothing ordered),
 * CONTENT_TOO_LARGE (explicit items or reused items do not fit), CONTENT_MISSING (a chosen
 * file vanished), CONTENT_CHANGED (size or mtime differ from the library), DEVICE_TOO_SMALL
 * (no FAT32 possible), CANCELLED, PROCESSING_FAILED. Files of 4 GiB or more are skipped with a
 * warn log row. sha256 is checked later, by the composer's read path: it fails with -EBADMSG
 * (→ CONTENT_CHANGED) or -ENOENT (→ CONTENT_MISSING), see stage_selection_map_read_error(). */
enum uf_code stage_selection_content(struct stage_ctx *ctx);

/* The job code for a composer read error r (< 0): -EBADMSG → CONTENT_CHANGED, -ENOENT →
 * CONTENT_MISSING, anything else → UFC_NONE (the caller's own code applies, e.g. WRITE_IO). */
enum uf_code stage_selection_map_read_error(int r);
