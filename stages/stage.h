/* The stage interface: what the worker hands each of the four stages and what they return.
 * A stage never touches the database or udev: it gets a context (the job, the target device,
 * the content, a progress and log sink, a cancel flag) and returns a job error code. This
 * keeps every stage testable with no server and no stick. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blkio/dev.h"
#include "blkio/writer.h"
#include "image/blksrc.h"
#include "util/items.h"
#include "util/log.h"
#include "util/ufcode.h"

enum stage_id {
	STAGE_PENDING,
	STAGE_VALIDATION,
	STAGE_SELECTION,
	STAGE_WRITING,
	STAGE_VERIFICATION,
	STAGE_DONE,
	_STAGE_MAX,
};
/* "validation", …; NULL out of range. */
const char *stage_name(enum stage_id s);
int stage_from_name(const char *s);

struct job_spec {
	int64_t job_id;
	int64_t order_id;
	int attempt;
	uint64_t capacity_bytes; /* nominal capacity sold */
	/* image orders (NULL for content orders): image_path as the order stored it, absolute
	 * beneath image_root or relative to it; it is opened beneath image_root only (no "..",
	 * no symlink), and must decode to image_bytes when that is not 0 */
	char *image_path;
	char *image_root; /* content.images */
	uint64_t image_bytes;
	/* content orders: */
	char *content_root;
	char **categories; /* NULL-terminated, in the order's order */
	int64_t *item_ids; /* explicit items, n_item_ids of them */
	size_t n_item_ids;
	struct content_item *library; /* active candidates (explicit ids and the categories) */
	size_t n_library;
	struct job_item *items; /* chosen; filled by selection, or reused from a prior attempt */
	size_t n_items;
	bool items_reused;
};

struct uf_config;
/* The write options of a configuration (write.* and worker.capacity_tolerance): the daemon and
 * the CLI write the same way. */
void write_opts_from_config(const struct uf_config *cfg, struct write_opts *ret);

/* Where stages report to. Called from the stage's thread; the worker throttles. */
struct stage_sink {
	void *userdata;
	/* done/total in bytes (or any unit) within the current stage. */
	void (*progress)(void *userdata, enum stage_id st, uint64_t done, uint64_t total);
	/* A log row: level, category ("stage", "progress", "device", "system"), error code
	 * (UFC_NONE when none), details as a JSON object text or NULL, message. */
	void (*log)(void *userdata, enum log_level lvl, enum stage_id st, const char *category, enum uf_code code,
		    const char *details_json, const char *message);
	/* Writing: the resume state to store for this job after each periodic sync (JSON text;
	 * NULL: forget any stored state). Optional (NULL: not stored). */
	void (*checkpoint)(void *userdata, const char *resume_json);
};

struct stage_ctx {
	struct job_spec *job;
	struct dev *dev; /* opened target, borrowed */
	const struct write_opts *opts;
	atomic_bool *cancel; /* set by the worker: stop at the next chunk boundary */
	struct stage_sink sink;
	const char *resume_json; /* writing: the state a previous attempt checkpointed, or NULL */

	/* Passed between stages (owned by the context; stage_ctx_done() frees): */
	struct blksrc *src;	    /* built by selection, consumed by writing */
	struct writer *write_state; /* the writer, with its chunk hashes, for the verifier */
	uint64_t bytes_total;	    /* set by selection */
	uint64_t bytes_written;	    /* updated by writing */
	uint64_t usable_size;	    /* set by validation: real usable bytes of the stick */

	/* Result of the failing stage: */
	enum uf_code code;
	char *message;	     /* owned */
	char *details;	     /* owned: the failure's facts as a JSON object text (offset, errno, the
	                * probe's verdict, …) or NULL; the worker writes them into its one error row */
	uint64_t bad_offset; /* VERIFY_MISMATCH / WRITE_IO: first bad byte offset */
};

/* Open the job's image as described at job_spec.image_path. Errors: -EXDEV (outside
 * image_root: never opened), -ESTALE (it no longer decodes to image_bytes), or those of
 * blksrc_open_image_at(); the reason, naming the image, in *ret_error (malloc'd). */
struct blksrc;
int job_spec_open_image(const struct job_spec *job, struct blksrc **ret, char **ret_error);

/* Run one stage. Returns UFC_NONE on success, or a code with ctx->message set. */
enum uf_code stage_run(enum stage_id st, struct stage_ctx *ctx);
/* Set ctx->code and ctx->message (printf-style); returns code. A stage reports its failure
 * only so: it writes no error row of its own (the worker writes one per failure). */
enum uf_code stage_fail(struct stage_ctx *ctx, enum uf_code code, const char *fmt, ...) _printf_(3, 4);
/* The same with details (ctx->details; taken over, may be NULL), e.g. from stage_details(). */
enum uf_code stage_fail_details(struct stage_ctx *ctx, enum uf_code code, char *details, const char *fmt, ...)
	_printf_(4, 5);
/* Fail with the job code of a device error r (dev_error_code) at offset off during what
 * ("write", "read-back", "capacity probe"), with the offset and errno as details. stalled: for
 * -ETIMEDOUT, the watchdog's own account of which call stalled ("sync at offset N did not
 * return within S s"), used as the message when given. */
enum uf_code stage_fail_io(struct stage_ctx *ctx, enum stage_id st, int r, uint64_t off, const char *what,
			   const char *stalled);
/* A log row's or a failure's details: the object json_pack() builds from fmt, as compact JSON
 * with the keys in the order given; malloc'd, NULL when it cannot be built (out of memory). */
char *stage_details(const char *fmt, ...);
void stage_ctx_done(struct stage_ctx *ctx);
/* A log row through the sink (nothing when the sink has no log). */
void stage_log(struct stage_ctx *ctx, enum log_level lvl, enum stage_id st, const char *category, enum uf_code code,
	       const char *details, const char *fmt, ...) _printf_(7, 8);
/* Progress through the sink: done of total within stage st. */
void stage_progress(struct stage_ctx *ctx, enum stage_id st, uint64_t done, uint64_t total);
/* Whether the worker asked this job to stop. */
bool stage_cancelled(const struct stage_ctx *ctx);
