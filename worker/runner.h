/* A slot runner: the thread that takes one claimed job through the four stages on one stick,
 * with its own database connection (the slot's, kept from one job to the next by the caller:
 * runner_args.db, runner_result.db). It reports progress and heartbeats (at most once a second),
 * log rows (stage start/end, errors, one progress row per 10% of a stage), honours operator
 * cancellation and daemon shutdown at chunk boundaries, and finalizes the job through the
 * guarded transitions of db/jobs.h.
 *
 * Two threads per runner: the runner thread drives the stages; a database thread writes what
 * they report (queued log rows, the resume checkpoint, the heartbeat with progress). The data
 * path never waits for the database: while it is away the stick is still written to the end,
 * the rows wait in order, and the end is recorded when the database is back. Every write is
 * guarded on the lease (db/jobs.h), so a runner whose job was taken (a frozen worker thawed
 * after the reaper returned it) writes nothing more for it and stops at the next chunk. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "db/jobs.h"
#include "http/board.h"
#include "util/log.h"

struct runner;

struct runner_args {
	const struct uf_config *cfg;
	const char *worker_id;
	const char *slot;	 /* slot name */
	const char *devpath;	 /* device node or file to write */
	const char *serial;	 /* device identity, for log rows */
	struct claimed_job *job; /* ownership taken */
	struct board *board;	 /* the slot's tile and the counters (http/board.h); may be NULL */
	int notify_fd;		 /* eventfd written when the runner ends (main loop wakes) */
	struct db *db;		 /* a connection to use (ownership taken; the runner's own from
	                          * then on), or NULL: the runner connects */
};

/* Start a runner thread. Errors: -errno of pthread_create, -ENOMEM. */
int runner_start(const struct runner_args *a, struct runner **ret);
/* Ask it to stop at the next chunk boundary and hand the job back (daemon shutdown). */
void runner_request_stop(struct runner *r);
/* The stick was pulled: stop now; the attempt ends with DEVICE_GONE. */
void runner_device_gone(struct runner *r);
bool runner_finished(struct runner *r);
struct runner_result {
	bool bad_stick;	  /* the stick was refused: mark the slot bad */
	bool done;	  /* the job ended done and that was recorded */
	bool gone;	  /* the attempt ended DEVICE_GONE: the stick was pulled */
	bool in_use;	  /* another writer holds the slot (flock, O_EXCL): the job was handed back
	                   * without spending an attempt; the slot is not bad, only busy elsewhere */
	char *bad_reason; /* bad_stick: why ("read-only: …"), malloc'd, the caller's to free */
	struct db *db;	  /* the runner's connection, handed back when it is up and idle (for
	                   * the slot's next job), else NULL; the caller's to close */
};
/* Join the thread and free it; ret (may be NULL) says how the attempt ended. */
void runner_join(struct runner *r, struct runner_result *ret);
int64_t runner_job_id(struct runner *r);
/* The attempt's journal fields (job, order, unit, attempt, slot, serial; util/log.h), valid
 * until runner_join. */
const struct log_fields *runner_log_fields(const struct runner *r);
/* The job was taken from this runner (reaper, operator, a later attempt): it writes nothing more
 * for it and ends at the next chunk boundary. */
bool runner_lost(struct runner *r);
