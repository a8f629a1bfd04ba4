/* The stick-side stages: the device part of validation (writable, fake-capacity probe),
 * block writing and verification. They map the writer's, verifier's and probe's errno
 * results to job error codes (util/ufcode.h), report progress per chunk through
 * ctx->sink.progress, and log notable events (probe verdict, resume point, first bad offset)
 * through ctx->sink.log with JSON details. */
#pragma once

#include "stages/stage.h"

/* Validation, device part: the stick is writable and (opts->probe) its capacity genuine.
 * Sets ctx->usable_size. Codes: DEVICE_READ_ONLY, DEVICE_GONE, DEVICE_FAKE_CAPACITY
 * (bad_offset = the first byte that is not real), WRITE_IO, CANCELLED. */
enum uf_code stage_probe_device(struct stage_ctx *ctx);
/* Writing: ctx->src onto ctx->dev (resuming from ctx->resume_json when given). Leaves the
 * writer in ctx->write_state for verification; sets ctx->bytes_written. Codes: WRITE_IO
 * (bad_offset), DEVICE_GONE, DEVICE_READ_ONLY, IMAGE_UNREADABLE, CONTENT_TOO_LARGE (the image
 * is larger than the stick: permanent), CANCELLED, PROCESSING_FAILED. ctx->job may be NULL
 * (no job: no restart from the image path, and a source failure is IMAGE_UNREADABLE). */
enum uf_code stage_writing(struct stage_ctx *ctx);
/* Verification: dev_reset (opts->reset_before_verify), then the device read back with
 * O_DIRECT against the writer's chunk hashes; for an image job the bad chunk is compared
 * with the image again to name the exact byte. Codes: VERIFY_MISMATCH (bad_offset; also a
 * read error), DEVICE_GONE, WRITE_IO (a read stalled), CANCELLED, PROCESSING_FAILED. */
enum uf_code stage_verification(struct stage_ctx *ctx);
