/* The states of a processing job (DESIGN.md "Job states", the processing_jobs.status column) and
 * their names as the schema spells them. db/ binds these names into its statements and returns
 * the enum; cli/ prints the names. */
#pragma once

#include <stdbool.h>

enum job_state {
	JOB_STATE_QUEUED,
	JOB_STATE_PROCESSING,
	JOB_STATE_RETRY,
	JOB_STATE_DONE,
	JOB_STATE_FAILED,
	JOB_STATE_CANCELLED,
	_JOB_STATE_MAX,
	_JOB_STATE_INVALID = -22, /* -EINVAL: what job_state_from_name returns for an unknown name */
};

/* "queued" for JOB_STATE_QUEUED …; NULL out of range. */
const char *job_state_name(enum job_state s);
/* The state named s (exact, as the schema spells it), or _JOB_STATE_INVALID (-EINVAL) when s is
 * NULL or names none. */
enum job_state job_state_from_name(const char *s);
/* done, failed and cancelled: only an operator's `job retry` leaves them. */
bool job_state_is_terminal(enum job_state s);
