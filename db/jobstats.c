/* Implementation of db/jobstats.h. */
#include "db/jobstats.h"

#include "db/db.h"
#include "db/jobstate.h"

int job_counts_ended_since(struct db *db, double seconds, int64_t *ret_done, int64_t *ret_failed)
{
	int64_t done = 0, failed = 0;
	int64_t us = (int64_t)(seconds * 1e6);
	int r = db_query_i64(db, &done,
			     "SELECT COUNT(*) FROM processing_jobs WHERE status = ? AND completed_at >= NOW(6) - "
			     "INTERVAL ? MICROSECOND",
			     DB_STR(job_state_name(JOB_STATE_DONE)), DB_I64(us), DB_END);
	if (r < 0)
		return r;
	r = db_query_i64(db, &failed,
			 "SELECT COUNT(*) FROM processing_jobs WHERE status = ? AND failed_at >= NOW(6) - INTERVAL ? "
			 "MICROSECOND",
			 DB_STR(job_state_name(JOB_STATE_FAILED)), DB_I64(us), DB_END);
	if (r < 0)
		return r;
	*ret_done = done;
	*ret_failed = failed;
	return 0;
}
