/* Implementation of db/jobstate.h: the name table of the job states. */
#include "db/jobstate.h"

#include <errno.h>
#include <string.h>

#include "util/macro.h"

static const char *const names[_JOB_STATE_MAX] = {
	[JOB_STATE_QUEUED] = "queued", [JOB_STATE_PROCESSING] = "processing", [JOB_STATE_RETRY] = "retry",
	[JOB_STATE_DONE] = "done",     [JOB_STATE_FAILED] = "failed",	      [JOB_STATE_CANCELLED] = "cancelled",
};

_Static_assert(_JOB_STATE_INVALID == -EINVAL, "_JOB_STATE_INVALID is -EINVAL");

const char *job_state_name(enum job_state s)
{
	if ((int)s < 0 || s >= _JOB_STATE_MAX)
		return NULL;
	return names[s];
}

enum job_state job_state_from_name(const char *s)
{
	if (!s)
		return _JOB_STATE_INVALID;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(names[i], s) == 0)
			return (enum job_state)i;
	return _JOB_STATE_INVALID;
}

bool job_state_is_terminal(enum job_state s)
{
	return s == JOB_STATE_DONE || s == JOB_STATE_FAILED || s == JOB_STATE_CANCELLED;
}
