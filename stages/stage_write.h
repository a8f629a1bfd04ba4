/* The writing and verification stages. They map the writer's and verifier's errno results to
 * job error codes (stage_fail_io), report progress per chunk through ctx->sink.progress, and
 * log notable events (resume point, bytes written and verified) through ctx->sink.log with
 * JSON details; a failure's details go with the failure (ctx->details). */
#pragma once

#include "stages/stage.h"

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
