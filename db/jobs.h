/* Job state transitions (DESIGN.md "Job states"): claim, heartbeat/progress, log rows, the
 * guarded finalizer with its outbox events, operator cancel/retry, hand-back, and the reaper;
 * and the read side of jobs, the queue and the outbox (status, log rows, queue counts, events)
 * returned as structs (cli/ makes the JSON and the text of them).
 * Every transition is one guarded statement or one transaction checking affected rows; an event
 * is written in the same transaction as the transition it reports, and at most once
 * (unique aggregate_type, aggregate_id, event_type, generation, seq: seq is the claim's number
 * for job.started, written once per claim, and 0 for the events written once per generation).
 *
 * Names: job_* act on one job, queue_* on the queue as a whole (reaper, counts), event_* on the
 * outbox; a struct's destructor is <struct>_free (accepts NULL, returns NULL) or _done for one
 * the caller holds by value.
 *
 * Errors: -ESTALE when the guard did not match (the job is no longer ours / no longer in the
 * expected state: stop and write nothing more for it), -ENOENT unknown job, db errors. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/db.h"
#include "db/jobstate.h"
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
/* Accepts NULL; returns NULL. */
struct claimed_job *claimed_job_free(struct claimed_job *j);

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
/* Append rows[0..n) of the lease's attempt, in order, in one statement (an INSERT … SELECT of a
 * JSON_TABLE of the rows, joined to the job row under the lease guard, shared lock as above):
 * all of them or none. -ESTALE when the job is no longer ours, -EINVAL when a text is not UTF-8
 * (the server would refuse it too), -EIO when only some matched (never expected). */
int job_log_leased_rows(struct db *db, const struct job_lease *l, const struct job_log_row *rows, size_t n);

/* Record the chosen content (replacing any earlier choice of the same job); guarded on the
 * lease, -ESTALE when the job is no longer ours. */
int job_items_store(struct db *db, const struct job_lease *l, const struct job_item *items, size_t n);
/* Load a previous attempt's choice; *ret_n = 0 when none. */
int job_items_load(struct db *db, int64_t id, struct job_item **ret, size_t *ret_n);
/* Store the writer's resume state (JSON) for a later attempt. Guarded like job_progress. */
int job_resume_store(struct db *db, const struct job_lease *l, const char *resume_json);

/* The log row of a final transition. It is written in the transition's own transaction and only
 * when the guarded update took place, so a worker that lost its job (rescued by the reaper,
 * changed by an operator) writes nothing more for it, and a transition is never recorded
 * without its row. NULL: no row. */
struct job_log_row {
	int attempt;
	const char *level, *stage, *category, *message, *error_code, *details_json;
	/* how long ago it happened, in microseconds: a row queued by a runner and written later in
	 * a batch keeps its own time, the server's NOW(6) less this (times are the server's, never
	 * the kiosk's clock); 0: the time of the insert. Only the multi-row inserts (the *_rows
	 * functions) take it. */
	int64_t age_us;
};

/* What the worker measured of the attempt that ended done (job_finish_done; NULL: nothing). The
 * job row keeps the speeds (the recent average job_enter_writing estimates with), job.done
 * carries them: bytes/seconds, null when a stage's time or bytes are 0 (no verification). */
struct job_done_stats {
	double attempt_seconds; /* the attempt, from its runner's start to its end (worker's clock) */
	double write_seconds;	/* time in the writing stage */
	uint64_t write_bytes;	/* bytes it wrote */
	double verify_seconds;	/* time in the verification stage, 0 when there was none */
	uint64_t verify_bytes;	/* bytes it read back */
};

/* What the worker knows as the writing stage begins (job_enter_writing). */
struct job_started {
	uint64_t bytes_to_write; /* the unit's bytes (a resumed attempt re-checks what it skips) */
	bool verify;		 /* verification follows: the estimate covers it too */
	/* this stick's measured sequential write and read-back speeds (bytes/s), 0 when none is
	 * known; the read-back speed defaults to the write speed */
	double write_bytes_per_s, verify_bytes_per_s;
};

/* How many of the newest done jobs of a capacity make the recent average of job.started's
 * estimate. */
#define JOB_SPEED_SAMPLE 20

/* The attempt under lease l reaches the writing stage: one transaction moves the job row to
 * stage 'writing' (and beats; its progress is the next heartbeat's), inserts *row (may be NULL; its attempt is the
 * lease's) and the job.started event, once per claim (a retried transaction, whose first commit
 * went through unseen, adds nothing). The event's estimate of the seconds left (writing and,
 * when s->verify, verification) comes from the stick's measured speeds when s gives them
 * ("stick"), else from the speeds of the newest done job written to a stick of its serial
 * ("stick_history"), else from the average speeds of the last JOB_SPEED_SAMPLE done jobs of the
 * job's capacity ("recent_average"), else it is null with the reason (README "Events"). -ESTALE when the job is no longer ours (nothing is
 * written), -ENOMEM, db errors. */
int job_enter_writing(struct db *db, const struct job_lease *l, const struct job_started *s,
		      const struct job_log_row *row);
/* The same with rows[0..n_rows) (the rows queued up to the stage's start, in order) in one
 * multi-row insert. The transaction's statements: the guarded update, one read of the job, the
 * estimate's read, the event (inserted unless it is there: then nothing more), the rows. */
int job_enter_writing_rows(struct db *db, const struct job_lease *l, const struct job_started *s,
			   const struct job_log_row *rows, size_t n_rows);

/* Finalize. Each is one transaction guarded on the lease (id, processing, locked_by, attempts),
 * with *row (may be NULL; its attempt is the lease's) inserted when the guard matched:
 *  done:      done, progress 100, completed_at, the speeds of *st, job.done (duration_seconds
 *             from the job's first start, attempt_seconds and the speeds from *st); order.done
 *             when every unit is done.
 *  fail:      by uf_code_class(code): RETRYABLE with attempts left → retry at now + delays[attempt−1];
 *             else (PERMANENT, or no attempts left) → failed + job.failed + order.failed
 *             (payload "refund_due": true); BAD_STICK → queued again, the attempt not spent;
 *             CANCELLED → cancelled (cancelled_at, cancelled_by from the request).
 * *ret_state (may be NULL) = the state the job went to. */
int job_finish_done(struct db *db, const struct job_lease *l, uint64_t bytes_written, const struct job_done_stats *st,
		    const struct job_log_row *row);
int job_finish_fail(struct db *db, const struct job_lease *l, enum uf_code code, const char *reason,
		    const struct job_log_row *row, const double *delays, size_t n_delays, enum job_state *ret_state);
/* Hand a running job back (daemon stopping): retry, next_attempt_at now, attempt not spent. */
int job_hand_back(struct db *db, const struct job_lease *l, const char *why, const struct job_log_row *row);
/* The three with rows[0..n_rows) (the attempt's rows still queued, then the transition's own) in
 * one multi-row insert of the transaction. */
int job_finish_done_rows(struct db *db, const struct job_lease *l, uint64_t bytes_written,
			 const struct job_done_stats *st, const struct job_log_row *rows, size_t n_rows);
int job_finish_fail_rows(struct db *db, const struct job_lease *l, enum uf_code code, const char *reason,
			 const struct job_log_row *rows, size_t n_rows, const double *delays, size_t n_delays,
			 enum job_state *ret_state);
int job_hand_back_rows(struct db *db, const struct job_lease *l, const char *why, const struct job_log_row *rows,
		       size_t n_rows);
/* Done, for an attempt whose writing stage's start (started, not NULL) is still to be recorded
 * (a job of milliseconds: its end came before the transition was written): one transaction
 * records job.started as job_enter_writing_rows does, with rows[0..n_started) (skipped, like
 * the event, when a commit of it went through unseen), and then the end as job_finish_done_rows
 * with the other rows. started NULL: job_finish_done_rows. */
int job_finish_done_started(struct db *db, const struct job_lease *l, uint64_t bytes_written,
			    const struct job_done_stats *st, const struct job_started *started,
			    const struct job_log_row *rows, size_t n_rows, size_t n_started);
/* The job's state (a commit whose answer was lost with the connection is recognised by it).
 * -ENOENT when there is no such job. */
int job_get_state(struct db *db, int64_t id, enum job_state *ret);
/* Whether the lease's own end made the job done: done, at the lease's attempt (a claim counts
 * the attempts, so no other holder ends that one). What a done end that failed with -ESTALE asks:
 * its commit may have gone through with its answer lost. 0 or a db error. */
int job_done_by(struct db *db, const struct job_lease *l, bool *ret);

/* What `job watch` shows of a job. */
struct job_status {
	enum job_state state;
	char *stage;
	int progress;
	int attempts, max_attempts;
	char *error_code;	 /* NULL when none */
	double rate_bytes_per_s; /* progress_detail's rate, 0 when unknown */
	double eta_seconds;	 /* progress_detail's eta, 0 when unknown */
	char *slot;		 /* NULL when none */
};
/* -ENOENT when there is no such job, -ENOMEM, db errors. Free with job_status_done. */
int job_get_status(struct db *db, int64_t id, struct job_status *ret);
void job_status_done(struct job_status *s);

/* Operator: queued/retry → cancelled now (*ret_state = JOB_STATE_CANCELLED); processing →
 * cancel_requested_at, the worker stops at its next chunk boundary (*ret_state =
 * JOB_STATE_PROCESSING). -EALREADY when the job has ended (done/failed/cancelled). */
int job_cancel(struct db *db, int64_t id, const char *by, enum job_state *ret_state);
/* Operator: failed/cancelled → queued with a fresh attempt budget (generation+1), audited.
 * -EBUSY when the job is not failed or cancelled. */
int job_retry(struct db *db, int64_t id, const char *actor, int max_attempts);

/* What the reaper did to one job: a stale processing job went to state (retry, failed or
 * cancelled), or (stuck_reported) a job waiting in the queue too long was reported stuck. */
struct reap_action {
	int64_t job_id;
	enum job_state state;
	bool stuck_reported;
};

struct reap_stats {
	unsigned retried;	     /* stale processing → retry */
	unsigned failed;	     /* stale processing, no attempts left → failed */
	unsigned cancelled;	     /* stale processing with a cancel request → cancelled */
	unsigned stuck_reported;     /* queued too long → job.stuck event + warn log */
	struct reap_action *actions; /* in the order taken; free with reap_stats_done */
	size_t n_actions;
};
void reap_stats_done(struct reap_stats *st);
/* Stuck-job recovery, one transaction per job, guarded on the stale heartbeat so a job that just
 * beat or finished is never touched. The jobs in skip[0..n_skip) (those the caller's own live
 * runners hold: their heartbeats lag only because the database was away) are left alone. The
 * log row names the stage of the attempt's last log row (the job row's stage lags it by up to a
 * heartbeat). *ret is written on success only (its actions then belong to the caller). */
int queue_reap(struct db *db, double processing_timeout, double queued_timeout, const double *delays, size_t n_delays,
	       const int64_t *skip, size_t n_skip, struct reap_stats *ret);

/* Queue counts (DESIGN.md `queue stats`). */
struct queue_stats {
	int64_t jobs[_JOB_STATE_MAX];	       /* per state */
	int64_t stuck_processing;	       /* processing, heartbeat older than processing_timeout */
	int64_t stuck_queued;		       /* queued longer than queued_timeout */
	bool have_avg_duration;		       /* false while no job is done */
	double avg_duration_seconds;	       /* of the done jobs */
	bool have_unpublished;		       /* false while every event is published */
	double oldest_unpublished_age_seconds; /* the oldest unpublished event's age (server clock) */
};
int queue_get_stats(struct db *db, double processing_timeout, double queued_timeout, struct queue_stats *ret);
/* Jobs queued or waiting to retry (whatever their stick). */
int queue_count_runnable(struct db *db, int64_t *ret);
/* Jobs queued or waiting to retry that a stick of device_bytes in station could take (the
 * claim's fit, capacity_tolerance as in struct claim_req), due now or later. */
int queue_count_fitting(struct db *db, const char *station, uint64_t device_bytes, double capacity_tolerance,
			int64_t *ret);

/* An outbox row. payload is its JSON text. */
struct event {
	int64_t id;
	char *aggregate_type;
	int64_t aggregate_id;
	int64_t order_id; /* the order it belongs to: its aggregate's, or its job's order (0 if none) */
	char *event_type;
	int generation;
	char *payload;
	char *created_at;   /* "YYYY-MM-DD HH:MM:SS.ffffff" (UTC) */
	char *published_at; /* NULL while unpublished */
};
/* Events with id > since (only the unpublished ones when unpublished), oldest first, at most
 * limit (limit ≤ 0 or > 1000 means 1000), into a malloc'd array (*ret NULL when none). 0,
 * -ENOMEM, db errors. */
int event_list(struct db *db, int64_t since, bool unpublished, int limit, struct event **ret, size_t *ret_n);
/* Accepts NULL; returns NULL. */
struct event *event_list_free(struct event *e, size_t n);

/* A log row as read back. details is its JSON text or NULL. */
struct job_log_entry {
	int64_t id;
	char *created_at; /* "YYYY-MM-DD HH:MM:SS.ffffff" (UTC) */
	int attempt;
	char *level, *stage, *category, *message;
	char *error_code; /* NULL when none */
	char *details;	  /* NULL when none */
};
/* Log rows of a job with id > since, oldest first, into a malloc'd array (*ret NULL when none).
 * 0, -ENOMEM, db errors. */
int job_log_list(struct db *db, int64_t id, int64_t since, struct job_log_entry **ret, size_t *ret_n);
/* Accepts NULL; returns NULL. */
struct job_log_entry *job_log_list_free(struct job_log_entry *l, size_t n);
