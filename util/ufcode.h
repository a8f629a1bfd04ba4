/* The job-level error codes of DESIGN.md ("Error codes"). Functions below the stage level return
 * 0 or -errno; the code here is chosen where a failure is understood (a stage, the worker, the
 * CLI) and is what logs and the error_code columns carry, as its name string. */
#pragma once

enum uf_code {
	UFC_NONE = 0,
	UFC_CONFIG_INVALID,
	UFC_DB_UNAVAILABLE,
	UFC_ORDER_INVALID,
	UFC_CONTENT_MISSING,
	UFC_CONTENT_CHANGED,
	UFC_CONTENT_TOO_LARGE,
	UFC_IMAGE_UNREADABLE,
	UFC_DEVICE_GONE,
	UFC_DEVICE_TOO_SMALL,
	UFC_DEVICE_READ_ONLY,
	UFC_DEVICE_FAKE_CAPACITY,
	UFC_DEVICE_UNSAFE,
	UFC_WRITE_IO,
	UFC_VERIFY_MISMATCH,
	UFC_STUCK_TIMEOUT,
	UFC_CANCELLED,
	UFC_PROCESSING_FAILED,
	_UFC_MAX,
};

/* "WRITE_IO" for UFC_WRITE_IO; NULL for UFC_NONE or out of range. */
const char *uf_code_name(enum uf_code c);
/* The code named by s, or -1 when s names none. */
int uf_code_from_name(const char *s);

enum uf_code_class {
	UFC_CLASS_NONE,	     /* success */
	UFC_CLASS_RETRYABLE, /* spend an attempt, retry after the configured delay */
	UFC_CLASS_PERMANENT, /* fail at once */
	UFC_CLASS_BAD_STICK, /* release to the queue without spending an attempt; mark slot bad */
	UFC_CLASS_CANCELLED, /* operator cancel */
};
enum uf_code_class uf_code_class(enum uf_code c);
