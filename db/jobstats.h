/* Counts over the jobs for the HTTP surfaces (GET /health/stuck-jobs/stats, /metrics) that the
 * CLI's queue stats do not give: jobs that ended recently. */
#pragma once

#include <stdint.h>

struct db;

/* Jobs that became done (completed_at) and failed (failed_at) within the last seconds.
 * 0 or a db error. */
int job_counts_ended_since(struct db *db, double seconds, int64_t *ret_done, int64_t *ret_failed);
