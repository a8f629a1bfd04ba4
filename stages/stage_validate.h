/* The validation stage (stage_validate.c). */
#pragma once

#include "stages/stage.h"

/* The order and the stick: opens an image order's image into ctx->src, checks the stick's
 * size against the order (worker.capacity_tolerance) and runs the probe (stage_probe_device),
 * which sets ctx->usable_size. Codes: ORDER_INVALID, IMAGE_UNREADABLE, CONTENT_CHANGED,
 * CONTENT_MISSING, CONTENT_TOO_LARGE, DEVICE_TOO_SMALL, DEVICE_FAKE_CAPACITY and the probe's. */
enum uf_code stage_validation(struct stage_ctx *ctx);
/* The device part of validation: the stick is writable and (opts->probe) its capacity genuine.
 * Sets ctx->usable_size. Codes: DEVICE_READ_ONLY, DEVICE_GONE, DEVICE_FAKE_CAPACITY
 * (bad_offset = the first byte that is not real), WRITE_IO, CANCELLED. */
enum uf_code stage_probe_device(struct stage_ctx *ctx);
