/* Job state transitions (DESIGN.md "Job states"): claim, heartbeat/progress, log rows, the
 * guarded finalizer with its outbox events, operator cancel/retry, hand-back, and the reaper.
 * Every transition is one guarded statement or one transaction checking affected rows; an event
 * is written in the same transaction as the transition it reports, and at most once
 * (unique aggregate_type, aggregate_id, event_type, generation).
 *
 * Errors: -ESTALE when the guard did not match (the job is no longer ours / no longer in the
 * expected state: stop and write nothing more for it), -ENOENT unknown job, db errors. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db/db.h"
#include "util/items.h"
#include "util/ufcode.h"

struct claim_req {
	const char *worker_id;
	const char *station;
	const char *slot;
	const char *device_serial;
	uint64_t device_bytes;
	double capacity_tolerance; /* a stick fits when device_bytes ≥ capacity × (1 − tolerance) */
};

struct claimed_job {
	int64_t id;
	int64_t order_id;
	char *order_number;
	int unit_index;
	int attempt; /* this attempt's number (attempts after the claim) */
	int max_attempts;
	int generation;
	uint64_t capacity_bytes;
	char *image_path;	 /* NULL for content orders */
	uint64_t image_bytes;	 /* the image's decoded size recorded by the order (0: unknown) */
	char *content_spec;	 /* JSON text, NULL for image orders */
	char *resume_state;	 /* JSON text left by an earlier attempt on this stick, or NULL */
	bool resume_other_stick; /* an earlier attempt left a resume state, but on another stick */
	bool cancel_requested;
};
void claimed_job_free(struct claimed_job *j);

/* Claim the runnable job that best fits the stick (SKIP LOCKED, claim index) and move it to
 * processing with attempts+1, locked_by, heartbeat, started_at (first attempt), slot and
 * device identity; the order becomes 'processing'. -ENOENT when nothing fits. */
int job_claim(struct db *db, const struct claim_req *req, struct claimed_job **ret);

/* What a worker holds while it runs a job: the job, its own name (locked_by) and the attempt the
 * claim gave it. Every write a worker makes for a job is guarded on all three (status
 * 'processing', locked_by, attempts): once the reaper or an operator has taken the job, or
 * another claim has started a later attempt, the write matches nothing and returns -ESTALE, so a
 * worker that lost its job (frozen, cut off from the database) writes nothing more for it. */
struct job_lease {
	int64_t id;
	const char *worker_id;
	int attempt;
};
#define JOB_LEASE(job, worker) ((struct job_lease){ .id = (job)->id, .worker_id = (worker), .attempt = (job)->attempt })

/* Heartbeat + progress (guarded on the lease). detail_json may be NULL.
 * *ret_cancel = whether an operator asked to cancel. -ESTALE when the job is no longer ours. */
int job_progress(struct db *db, const struct job_lease *l, const char *stage, int progress, const char *detail_json,
		 uint64_t bytes_total, uint64_t bytes_written, bool *ret_cancel);

/* Append a log row. level "debug|info|warn|error"; category "stage|progress|device|system".
 * Unguarded: for the reaper and operators, who write about a job they do not hold. */
int job_log(struct db *db, int64_t id, int attempt, const char *level, const char *stage, const char *category,
	    const char *message, const char *error_code, const char *details_json);

struct job_log_row;
/* Append a log row of the lease's attempt only while the lease holds (one INSERT … SELECT that
 * reads the job row under a shared lock: it waits for a reaper's transaction on it and then sees
 * its outcome). -ESTALE when the job is no longer ours. row->attempt is ignored. */
int job_log_leased(struct db *db, const struct job_lease *l, const struct job_log_row *row);

/* Record the chosen content (replacing any earlier choice of the same job); guarded on the
 * lease, -ESTALE when the job is no longer ours. */
int job_items_store(struct db *db, const struct job_lease *l, const struct job_item *items, size_t n);
/* Load a previous attempt's choice; *ret_n = 0 when none. */
int job_items_load(struct db *db, int64_t id, struct job_item **ret, size_t *ret_n);
void job_items_free(struct job_item *items, size_t n);
/* Store the writer's resume state (JSON) for a later attempt. Guarded like job_progress. */
int job_resume_store(struct db *db, const struct job_lease *l, const char *resume_json);

/* The log row of a final transition. It is written in the transition's own transaction and only
 * when the guarded update took place, so a worker that lost its job (rescued by the reaper,
 * changed by an operator) writes nothing more for it, and a transition is never recorded
 * without its row. NULL: no row. */
struct job_log_row {
	int attempt;
	const char *level, *stage, *category, *message, *error_code, *details_json;
};

/* Finalize. Each is one transaction guarded on the lease (id, processing, locked_by, attempts),
 * with *row (may be NULL; its attempt is the lease's) inserted when the guard matched:
 *  done:      done, progress 100, completed_at, job.done; order.done when every unit is done.
 *  fail:      by uf_code_class(code): RETRYABLE with attempts left → retry at now + delays[attempt−1];
 *             else (PERMANENT, or no attempts left) → failed + job.failed + order.failed
 *             (payload "refund_due": true); BAD_STICK → queued again, the attempt not spent;
 *             CANCELLED → cancelled (cancelled_at, cancelled_by from the request).
 * *ret_status (may be NULL) = the status the job went to. */
int job_finish_done(struct db *db, const struct job_lease *l, uint64_t bytes_written, const struct job_log_row *row);
int job_finish_fail(struct db *db, const struct job_lease *l, enum uf_code code, const char *reason,
		    const struct job_log_row *row, const double *delays, size_t n_delays, const char **ret_status);
/* Hand a running job back (daemon stopping): retry, next_attempt_at now, attempt not spent. */
int job_hand_back(struct db *db, const struct job_lease *l, const char *why, const struct job_log_row *row);
/* Whether the job's row says it ended done (a commit whose answer was lost with the connection
 * is recognised by this). */
int job_is_done(struct db *db, int64_t id, bool *ret);

/* Operator: queued/retry → cancelled now; processing → cancel_requested_at (the worker stops at
 * its next chunk boundary). *ret_status = "cancelled" or "cancel_requested". -EALREADY when the
 * job has ended (done/failed/cancelled). */
int job_cancel(struct db *db, int64_t id, const char *by, const char **ret_status);
/* Operator: failed/cancelled → queued with a fresh attempt budget (generation+1), audited.
 * -EBUSY when the job is not failed or cancelled. */
int job_retry(struct db *db, int64_t id, const char *actor, int max_attempts);

struct reap_stats {
	unsigned retried;	 /* stale processing → retry */
	unsigned failed;	 /* stale processing, no attempts left → failed */
	unsigned cancelled;	 /* stale processing with a cancel request → cancelled */
	unsigned stuck_reported; /* queued too long → job.stuck event + warn log */
	json_t *actions;	 /* [{"job_id", "action", "reason"}], owned by the caller */
};
/* Stuck-job recovery, one transaction per job, guarded on the stale heartbeat so a job that just
 * beat or finished is never touched. The jobs in skip[0..n_skip) (those the caller's own live
 * runners hold: their heartbeats lag only because the database was away) are left alone. The
 * log row names the stage of the attempt's last log row (the job row's stage lags it by up to a
 * heartbeat). */
int jobs_reap(struct db *db, double processing_timeout, double queued_timeout, const double *delays, size_t n_delays,
	      const int64_t *skip, size_t n_skip, struct reap_stats *ret);

/* queue stats as DESIGN.md's JSON: one key per status, stuck_processing, stuck_queued,
 * avg_duration_seconds. */
int queue_stats(struct db *db, double processing_timeout, double queued_timeout, json_t **ret);
/* Events with id > since, oldest first (limit rows). */
int events_list(struct db *db, int64_t since, int limit, json_t **ret);
/* Log rows of a job with id > since. */
int job_logs(struct db *db, int64_t id, int64_t since, json_t **ret);
