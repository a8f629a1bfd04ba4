/* db/jobs.c, db/jobstate.c, db/workers.c, db/devices.c against the real private MariaDB: the
 * claim (one claimer wins, SKIP LOCKED passes a locked job by), the lease (a worker whose job
 * another worker took writes nothing more), retry scheduling and the end of the attempt budget,
 * operator cancel and retry, completion with exactly one event, job.started once per claim
 * with its estimate and job.done with its speeds, the read side the CLI prints
 * (state, status, log rows, events, queue counts), the daemon's rows, and the state names. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/devices.h"
#include "db/jobs.h"
#include "db/schema.h"
#include "db/workers.h"
#include "helpers/testdb.h"

#define DBNAME "uf_t_jobs"
static struct db *db;

static void setup(void) { db = tdb_fresh(DBNAME); }
static void teardown(void) { db = db_close(db); }
TestSuite(jobs, .init = setup, .fini = teardown);

static const struct claim_req CLAIM_A = {
	.worker_id = "w1", .station = "test-station", .slot = "A", .device_serial = "SER-A", .device_bytes = 1 << 30
};

/* Make every retry due now. */
static void make_due(void)
{
	cr_assert_eq(db_exec(db, NULL, "UPDATE processing_jobs SET next_attempt_at = NOW(6) - INTERVAL 1 SECOND",
			     DB_END),
		     0, "%s", db_error(db));
}

/* Make the processing jobs look abandoned: started half an hour ago, their last heartbeat 10 s
 * ago (the CHECK constraints keep the times in order). */
static void make_stale(void)
{
	cr_assert_eq(db_exec(db, NULL,
			     "UPDATE processing_jobs SET created_at = NOW(6) - INTERVAL 1 HOUR,"
			     " started_at = NOW(6) - INTERVAL 30 MINUTE, heartbeat_at = NOW(6) - INTERVAL 10 SECOND"
			     " WHERE status = 'processing'",
			     DB_END),
		     0, "%s", db_error(db));
}

Test(jobs, state_names_round_trip)
{
	static const char *const names[] = { "queued", "processing", "retry", "done", "failed", "cancelled" };
	cr_assert_eq(_JOB_STATE_MAX, sizeof(names) / sizeof(names[0]), "exactly the schema's states");
	for (int s = 0; s < _JOB_STATE_MAX; s++) {
		cr_assert_str_eq(job_state_name(s), names[s]);
		cr_assert_eq(job_state_from_name(names[s]), s);
	}
	cr_assert_null(job_state_name(_JOB_STATE_MAX));
	cr_assert_null(job_state_name(-1));
	cr_assert_eq(job_state_from_name(NULL), -EINVAL);
	cr_assert_eq(job_state_from_name(""), -EINVAL);
	cr_assert_eq(job_state_from_name("Queued"), -EINVAL);
	cr_assert_eq(job_state_from_name("cancel_requested"), -EINVAL);
	cr_assert_eq(job_state_is_terminal(JOB_STATE_DONE) + job_state_is_terminal(JOB_STATE_FAILED) +
			     job_state_is_terminal(JOB_STATE_CANCELLED),
		     3);
	cr_assert_eq(job_state_is_terminal(JOB_STATE_QUEUED) + job_state_is_terminal(JOB_STATE_PROCESSING) +
			     job_state_is_terminal(JOB_STATE_RETRY),
		     0);
	/* and the schema agrees: the view counts exactly these */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM v_queue_stats"), _JOB_STATE_MAX);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM v_queue_stats WHERE status IN"
				   " ('queued', 'processing', 'retry', 'done', 'failed', 'cancelled')"),
		     _JOB_STATE_MAX);
}

struct claimer {
	pthread_barrier_t *barrier;
	const char *worker;
	int rc;
	int64_t id;
};

static void *claim_thread(void *p)
{
	struct claimer *c = p;
	struct db *conn = tdb_connect(DBNAME);
	struct claim_req q = CLAIM_A;
	struct claimed_job *j = NULL;
	q.worker_id = c->worker;
	pthread_barrier_wait(c->barrier);
	c->rc = job_claim(conn, &q, &j);
	c->id = j ? j->id : 0;
	claimed_job_free(j);
	db_close(conn);
	return NULL;
}

Test(jobs, one_of_eight_claimers_wins_the_only_job)
{
	enum { N = 8 };
	static const char *const workers[N] = { "w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7" };
	tdb_order_confirmed(db, "ONE", 1);
	pthread_barrier_t b;
	pthread_barrier_init(&b, NULL, N);
	pthread_t t[N];
	struct claimer c[N];
	for (int i = 0; i < N; i++) {
		c[i] = (struct claimer){ .barrier = &b, .worker = workers[i] };
		pthread_create(&t[i], NULL, claim_thread, &c[i]);
	}
	int won = 0, empty = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		if (c[i].rc == 0)
			won++;
		else
			cr_assert_eq(c[i].rc, -ENOENT, "claimer %d: %d", i, c[i].rc);
		empty += c[i].rc == -ENOENT;
	}
	pthread_barrier_destroy(&b);
	cr_assert_eq(won, 1);
	cr_assert_eq(empty, N - 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'processing' AND attempts = 1"
				   " AND locked_by LIKE 'w_' AND slot = 'A' AND device_serial = 'SER-A'"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders WHERE status = 'processing'"), 1);
}

Test(jobs, claim_skips_a_job_another_transaction_holds)
{
	tdb_order_confirmed(db, "SKIP", 2);
	int64_t first = tdb_count(db, "SELECT MIN(id) FROM processing_jobs");
	/* another session holds the first job's row */
	struct db *other = tdb_connect(DBNAME);
	int64_t held = 0;
	cr_assert_eq(db_begin(other), 0);
	cr_assert_eq(db_query_i64(other, &held, "SELECT id FROM processing_jobs WHERE id = ? FOR UPDATE", DB_I64(first),
				  DB_END),
		     0);
	cr_assert_eq(held, first);
	struct claimed_job *j = NULL;
	cr_assert_eq(job_claim(db, &CLAIM_A, &j), 0, "%s", db_error(db));
	cr_assert_eq(j->id, first + 1, "the locked job is passed by, not waited for");
	j = claimed_job_free(j);
	/* nothing else is free while the lock is held: no wait, no job */
	cr_assert_eq(job_claim(db, &CLAIM_A, &j), -ENOENT);
	cr_assert_null(j);
	db_rollback(other);
	db_close(other);
	cr_assert_eq(job_claim(db, &CLAIM_A, &j), 0);
	cr_assert_eq(j->id, first);
	cr_assert_eq(j->attempt, 1);
	cr_assert_eq(j->max_attempts, 4);
	cr_assert_str_eq(j->order_number, "SKIP");
	claimed_job_free(j);
}

Test(jobs, writes_of_a_worker_whose_job_was_taken_are_refused)
{
	tdb_order_confirmed(db, "LEASE", 1);
	struct claimed_job *j1 = tdb_claim(db, "w1", "SER-A");
	struct job_lease l1 = JOB_LEASE(j1, "w1");
	bool cancel = true;
	cr_assert_eq(job_progress(db, &l1, "writing", 40, NULL, 100, 40, &cancel), 0);
	cr_assert_not(cancel);
	/* w1 stops beating; the reaper returns the job and w2 takes it (attempt 2) */
	make_stale();
	struct reap_stats rs;
	cr_assert_eq(queue_reap(db, 1.0, 3600, (double[]){ 0 }, 1, NULL, 0, &rs), 0, "%s", db_error(db));
	cr_assert_eq(rs.retried, 1);
	cr_assert_eq(rs.n_actions, 1);
	cr_assert_eq(rs.actions[0].job_id, j1->id);
	cr_assert_eq(rs.actions[0].state, JOB_STATE_RETRY);
	cr_assert_not(rs.actions[0].stuck_reported);
	reap_stats_done(&rs);
	cr_assert_null(rs.actions);
	make_due();
	struct claimed_job *j2 = tdb_claim(db, "w2", "SER-B");
	cr_assert_eq(j2->id, j1->id);
	cr_assert_eq(j2->attempt, 2);
	long long logs = tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs");
	long long events = tdb_count(db, "SELECT COUNT(*) FROM events");

	/* every write under w1's lease matches nothing */
	struct job_log_row row = { .level = "info", .stage = "writing", .category = "stage", .message = "late" };
	struct job_item item = { .position = 0, .content_item_id = 1, .size = 1, .dest_path = "A/x" };
	enum job_state st = _JOB_STATE_INVALID;
	cr_assert_eq(job_progress(db, &l1, "writing", 90, NULL, 100, 90, &cancel), -ESTALE);
	cr_assert_eq(job_log_leased(db, &l1, &row), -ESTALE);
	cr_assert_eq(job_resume_store(db, &l1, "{\"v\":1}"), -ESTALE);
	cr_assert_eq(job_items_store(db, &l1, &item, 1), -ESTALE);
	cr_assert_eq(job_finish_done(db, &l1, 100, NULL, &row), -ESTALE);
	cr_assert_eq(job_finish_fail(db, &l1, UFC_WRITE_IO, "late", &row, (double[]){ 0 }, 1, &st), -ESTALE);
	cr_assert_eq(st, _JOB_STATE_INVALID, "not written on failure");
	cr_assert_eq(job_hand_back(db, &l1, "late", &row), -ESTALE);
	cr_assert_eq(job_enter_writing(db, &l1, &(struct job_started){ .bytes_to_write = 100 }, &row), -ESTALE);
	/* nor under w2's name with the old attempt */
	struct job_lease stale_attempt = { .id = j1->id, .worker_id = "w2", .attempt = 1 };
	cr_assert_eq(job_finish_done(db, &stale_attempt, 100, NULL, NULL), -ESTALE);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), logs, "no row from w1");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), events);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_items"), 0);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_jobs WHERE status = 'processing' AND locked_by = 'w2'"
			       " AND attempts = 2 AND resume_state IS NULL AND progress = 0"),
		     1);
	/* w2's lease holds */
	struct job_lease l2 = JOB_LEASE(j2, "w2");
	cr_assert_eq(job_log_leased(db, &l2, &row), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE attempt = 2 AND message = 'late'"),
		     1);
	cr_assert_eq(job_finish_done(db, &l2, 100, NULL, NULL), 0);
	claimed_job_free(j1);
	claimed_job_free(j2);
}

/* Seconds from now until the job's next attempt (microsecond precision). */
static double due_in(void)
{
	return (double)tdb_count(db,
				 "SELECT TIMESTAMPDIFF(MICROSECOND, NOW(6), next_attempt_at) FROM processing_jobs") /
	       1e6;
}

Test(jobs, retryable_failures_back_off_then_fail_with_one_refund_event)
{
	static const double delays[] = { 5, 15, 60 };
	static const double expect[] = { 5, 15, 60 };
	tdb_order_confirmed(db, "RETRY", 1);
	for (int attempt = 1; attempt <= 3; attempt++) {
		struct claimed_job *j = NULL;
		cr_assert_eq(job_claim(db, &CLAIM_A, &j), 0, "attempt %d: %s", attempt, db_error(db));
		cr_assert_eq(j->attempt, attempt);
		enum job_state st;
		cr_assert_eq(job_finish_fail(db, &JOB_LEASE(j, "w1"), UFC_WRITE_IO, "io error", NULL, delays, 3, &st),
			     0);
		cr_assert_eq(st, JOB_STATE_RETRY);
		double d = due_in();
		cr_assert(d > expect[attempt - 1] - 2 && d <= expect[attempt - 1], "attempt %d: due in %.3f s", attempt,
			  d);
		cr_assert_eq(tdb_count(db,
				       "SELECT COUNT(*) FROM processing_jobs WHERE status = 'retry'"
				       " AND error_code = 'WRITE_IO' AND fail_reason = 'io error' AND locked_by IS NULL"),
			     1);
		/* not due yet: nothing to claim */
		struct claimed_job *none = NULL;
		cr_assert_eq(job_claim(db, &CLAIM_A, &none), -ENOENT);
		claimed_job_free(j);
		make_due();
	}
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 0, "a retry is not an event");
	/* the fourth attempt is the last: failed, with one job.failed and one order.failed */
	struct claimed_job *j = NULL;
	cr_assert_eq(job_claim(db, &CLAIM_A, &j), 0);
	cr_assert_eq(j->attempt, 4);
	enum job_state st;
	cr_assert_eq(job_finish_fail(db, &JOB_LEASE(j, "w1"), UFC_WRITE_IO, "io error", NULL, delays, 3, &st), 0);
	cr_assert_eq(st, JOB_STATE_FAILED);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.failed'"
				   " AND JSON_VALUE(payload, '$.error_code') = 'WRITE_IO'"
				   " AND JSON_VALUE(payload, '$.attempts') = 4"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'order.failed'"
				   " AND JSON_EXTRACT(payload, '$.refund_due') = true"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders WHERE status = 'failed'"), 1);
	/* a failure that comes again is refused and writes nothing */
	cr_assert_eq(job_finish_fail(db, &JOB_LEASE(j, "w1"), UFC_WRITE_IO, "io error", NULL, delays, 3, &st), -ESTALE);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 2);
	enum job_state now;
	cr_assert_eq(job_get_state(db, j->id, &now), 0);
	cr_assert_eq(now, JOB_STATE_FAILED);
	claimed_job_free(j);
}

Test(jobs, cancel_queued_running_and_ended_jobs)
{
	tdb_order_confirmed(db, "CAN", 2);
	int64_t first = tdb_count(db, "SELECT MIN(id) FROM processing_jobs");
	enum job_state st;
	cr_assert_eq(job_cancel(db, 999999, "ops", &st), -ENOENT);
	/* the first unit runs, the second waits */
	struct claimed_job *j = tdb_claim(db, "w1", NULL);
	cr_assert_eq(j->id, first);
	cr_assert_eq(job_cancel(db, first + 1, "ops", &st), 0);
	cr_assert_eq(st, JOB_STATE_CANCELLED, "a queued job is cancelled at once");
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_jobs WHERE status = 'cancelled' AND cancelled_by = 'ops'"
			       " AND error_code = 'CANCELLED' AND cancelled_at IS NOT NULL"),
		     1);
	cr_assert_eq(job_cancel(db, first, "ops", &st), 0);
	cr_assert_eq(st, JOB_STATE_PROCESSING, "a running job is asked to stop");
	bool cancel = false;
	cr_assert_eq(job_progress(db, &JOB_LEASE(j, "w1"), "writing", 50, NULL, 0, 0, &cancel), 0);
	cr_assert(cancel, "the worker learns it at its next heartbeat");
	/* the worker stops: cancelled, no event, no refund */
	cr_assert_eq(job_finish_fail(db, &JOB_LEASE(j, "w1"), UFC_CANCELLED, "stopped", NULL, (double[]){ 5 }, 1, &st),
		     0);
	cr_assert_eq(st, JOB_STATE_CANCELLED);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'cancelled'"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'cancel' AND actor = 'ops'"
				   " AND JSON_VALUE(metadata, '$.result') IN ('cancelled', 'cancel_requested')"),
		     2);
	/* ended: nothing to cancel; an operator's retry queues it again with a fresh budget */
	cr_assert_eq(job_cancel(db, first, "ops", &st), -EALREADY);
	cr_assert_eq(job_retry(db, first, "ops", 3), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued' AND attempts = 0"
				   " AND max_attempts = 3 AND generation = 1 AND cancel_requested_at IS NULL"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'retry'"
				   " AND JSON_VALUE(metadata, '$.previous_status') = 'cancelled'"),
		     1);
	cr_assert_eq(job_retry(db, first, "ops", 3), -EBUSY, "a queued job is not retried");
	cr_assert_eq(job_retry(db, 999999, "ops", 3), -ENOENT);
	claimed_job_free(j);
}

Test(jobs, completion_writes_exactly_one_event_per_transition)
{
	tdb_order_confirmed(db, "DONE", 2);
	struct claimed_job *a = tdb_claim(db, "w1", NULL);
	struct claimed_job *b = tdb_claim(db, "w2", NULL);
	struct job_log_row row = { .level = "info", .stage = "done", .category = "stage", .message = "job done" };
	cr_assert_eq(job_finish_done(db, &JOB_LEASE(a, "w1"), 4096, NULL, &row), 0, "%s", db_error(db));
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 1, "the first unit: job.done only");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"
				   " AND JSON_VALUE(payload, '$.bytes_written') = 4096"),
		     1);
	/* the same end again is refused and writes nothing; the runner then asks whether its own
	 * end went through (an answer lost): yes for a's attempt, not for b (still running) nor for
	 * another attempt of a */
	cr_assert_eq(job_finish_done(db, &JOB_LEASE(a, "w1"), 4096, NULL, &row), -ESTALE);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 1);
	bool ours = false;
	cr_assert_eq(job_done_by(db, &JOB_LEASE(a, "w1"), &ours), 0);
	cr_assert(ours);
	cr_assert_eq(job_done_by(db, &JOB_LEASE(b, "w2"), &ours), 0);
	cr_assert_not(ours);
	struct job_lease other = JOB_LEASE(a, "w1");
	other.attempt++;
	cr_assert_eq(job_done_by(db, &other, &ours), 0);
	cr_assert_not(ours);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'job done'"), 1);
	/* the last unit ends the order */
	cr_assert_eq(job_finish_done(db, &JOB_LEASE(b, "w2"), 4096, NULL, NULL), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 3);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'order.done'"
				   " AND JSON_VALUE(payload, '$.units') = 2"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders WHERE status = 'done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND progress = 100"
				   " AND locked_by IS NULL AND bytes_written = 4096"),
		     2);

	/* the read side the CLI prints */
	struct event *ev = NULL;
	size_t n = 0;
	cr_assert_eq(event_list(db, 0, false, 0, &ev, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(ev[0].event_type, "job.done");
	cr_assert_str_eq(ev[0].aggregate_type, "job");
	cr_assert_eq(ev[0].aggregate_id, a->id);
	cr_assert_not_null(strstr(ev[0].payload, "\"order_number\""));
	cr_assert_not_null(ev[0].created_at);
	cr_assert_null(ev[0].published_at);
	cr_assert_str_eq(ev[2].event_type, "order.done");
	int64_t second = ev[1].id;
	ev = event_list_free(ev, n);
	cr_assert_eq(event_list(db, second, false, 1, &ev, &n), 0);
	cr_assert_eq(n, 1, "since and limit");
	cr_assert_str_eq(ev[0].event_type, "order.done");
	ev = event_list_free(ev, n);
	cr_assert_eq(event_list(db, 1 << 30, false, 0, &ev, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_null(ev);

	struct job_log_entry *l = NULL;
	cr_assert_eq(job_log_list(db, a->id, 0, &l, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(l[0].message, "job done");
	cr_assert_str_eq(l[0].level, "info");
	cr_assert_eq(l[0].attempt, 1);
	cr_assert_null(l[0].error_code);
	cr_assert_null(l[0].details);
	l = job_log_list_free(l, n);

	struct job_status js;
	cr_assert_eq(job_get_status(db, a->id, &js), 0);
	cr_assert_eq(js.state, JOB_STATE_DONE);
	cr_assert_str_eq(js.stage, "done");
	cr_assert_eq(js.progress, 100);
	cr_assert_eq(js.attempts, 1);
	cr_assert_eq(js.max_attempts, 4);
	cr_assert_str_eq(js.slot, "A");
	cr_assert_null(js.error_code);
	job_status_done(&js);
	cr_assert_eq(job_get_status(db, 999999, &js), -ENOENT);
	enum job_state st;
	cr_assert_eq(job_get_state(db, 999999, &st), -ENOENT);
	claimed_job_free(a);
	claimed_job_free(b);
}

Test(jobs, queue_counts)
{
	tdb_order_confirmed(db, "Q", 3);
	struct claimed_job *j = tdb_claim(db, "w1", NULL);
	cr_assert_eq(job_finish_done(db, &JOB_LEASE(j, "w1"), 1, NULL, NULL), 0);
	claimed_job_free(j);
	j = tdb_claim(db, "w1", NULL); /* processing, and stale */
	make_stale();
	struct queue_stats qs;
	cr_assert_eq(queue_get_stats(db, 1.0, 3600, &qs), 0, "%s", db_error(db));
	cr_assert_eq(qs.jobs[JOB_STATE_QUEUED], 1);
	cr_assert_eq(qs.jobs[JOB_STATE_PROCESSING], 1);
	cr_assert_eq(qs.jobs[JOB_STATE_DONE], 1);
	cr_assert_eq(qs.jobs[JOB_STATE_RETRY] + qs.jobs[JOB_STATE_FAILED] + qs.jobs[JOB_STATE_CANCELLED], 0);
	cr_assert_eq(qs.stuck_processing, 1);
	cr_assert_eq(qs.stuck_queued, 0);
	cr_assert(qs.have_avg_duration);
	cr_assert(qs.avg_duration_seconds >= 0);
	/* the job's done is unpublished (no relay here): its age, from a minute back; none once
	 * published */
	cr_assert(qs.have_unpublished);
	cr_assert_eq(db_exec(db, NULL, "UPDATE events SET created_at = NOW(6) - INTERVAL 60 SECOND", DB_END), 0);
	cr_assert_eq(queue_get_stats(db, 1.0, 3600, &qs), 0, "%s", db_error(db));
	cr_assert(qs.oldest_unpublished_age_seconds >= 60 && qs.oldest_unpublished_age_seconds < 120, "%f",
		  qs.oldest_unpublished_age_seconds);
	cr_assert_eq(db_exec(db, NULL, "UPDATE events SET published_at = NOW(6)", DB_END), 0);
	cr_assert_eq(queue_get_stats(db, 1.0, 3600, &qs), 0, "%s", db_error(db));
	cr_assert_not(qs.have_unpublished);
	cr_assert_eq(qs.oldest_unpublished_age_seconds, 0);
	int64_t n = -1;
	cr_assert_eq(queue_count_runnable(db, &n), 0);
	cr_assert_eq(n, 1);
	/* the jobs are for 1 MiB sticks: a bigger stick fits, a 512 KiB one does not */
	cr_assert_eq(queue_count_fitting(db, "test-station", 1 << 30, 0.1, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(queue_count_fitting(db, "test-station", 512 << 10, 0.1, &n), 0);
	cr_assert_eq(n, 0);
	claimed_job_free(j);
}

/* queue_get_stats' counts equal COUNT(*) per state, and its mean duration AVG over the done
 * jobs, exactly. */
static void assert_counts_exact(void)
{
	struct queue_stats qs;
	cr_assert_eq(queue_get_stats(db, 300, 900, &qs), 0, "%s", db_error(db));
	for (int s = 0; s < _JOB_STATE_MAX; s++) {
		char *q = NULL;
		cr_assert(asprintf(&q, "SELECT COUNT(*) FROM processing_jobs WHERE status = '%s'", job_state_name(s)) >
			  0);
		cr_assert_eq(qs.jobs[s], tdb_count(db, q), "%s", job_state_name(s));
		free(q);
	}
	_cleanup_result_ struct db_res *res = NULL;
	db_row row;
	cr_assert_eq(db_query_row(db, &res, &row,
				  "SELECT AVG(TIMESTAMPDIFF(MICROSECOND, started_at, completed_at)) / 1e6"
				  " FROM processing_jobs WHERE status = 'done'",
				  DB_END),
		     0);
	cr_assert_eq(qs.have_avg_duration, row[0] != NULL);
	if (row[0])
		cr_assert(fabs(qs.avg_duration_seconds - db_row_dbl(row, 0)) < 1e-6, "%f vs %s",
			  qs.avg_duration_seconds, row[0]);
}

/* The finished states are counted by migration 5's triggers: every way a job enters or leaves
 * done, failed or cancelled keeps the counts exact. */
Test(jobs, finished_counts_follow_every_transition)
{
	tdb_order_confirmed(db, "F", 6);
	assert_counts_exact();
	for (int i = 0; i < 2; i++) { /* two done */
		struct claimed_job *j = tdb_claim(db, "w1", NULL);
		cr_assert_eq(job_finish_done(db, &JOB_LEASE(j, "w1"), 1, NULL, NULL), 0);
		claimed_job_free(j);
	}
	assert_counts_exact();
	/* their durations as an operator might correct them */
	cr_assert_eq(db_exec(db, NULL,
			     "UPDATE processing_jobs SET created_at = NOW(6) - INTERVAL 1 HOUR,"
			     " started_at = NOW(6) - INTERVAL (7 * id) SECOND, completed_at = NOW(6)"
			     " WHERE status = 'done'",
			     DB_END),
		     0, "%s", db_error(db));
	assert_counts_exact();
	/* one cancelled while queued, then queued again, then cancelled again */
	int64_t queued = tdb_count(db, "SELECT MIN(id) FROM processing_jobs WHERE status = 'queued'");
	enum job_state st;
	cr_assert_eq(job_cancel(db, queued, "test", &st), 0, "%s", db_error(db));
	cr_assert_eq(st, JOB_STATE_CANCELLED);
	assert_counts_exact();
	cr_assert_eq(job_retry(db, queued, "test", 4), 0, "%s", db_error(db));
	assert_counts_exact();
	cr_assert_eq(job_cancel(db, queued, "test", &st), 0, "%s", db_error(db));
	/* one failed, by hand */
	cr_assert_eq(db_exec(db, NULL,
			     "UPDATE processing_jobs SET status = 'failed', failed_at = NOW(6)"
			     " WHERE status = 'queued' ORDER BY id LIMIT 1",
			     DB_END),
		     0);
	assert_counts_exact();
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'failed'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'cancelled'"), 1);
	/* a finished job deleted (as db prune --jobs does), and a done one */
	cr_assert_eq(db_exec(db, NULL, "DELETE FROM processing_jobs WHERE status IN ('failed', 'cancelled')", DB_END),
		     0, "%s", db_error(db));
	cr_assert_eq(db_exec(db, NULL, "DELETE FROM processing_jobs WHERE status = 'done' ORDER BY id LIMIT 1", DB_END),
		     0, "%s", db_error(db));
	assert_counts_exact();
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done'"), 1);
	/* and rows inserted already finished (an import) */
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO processing_jobs (order_id, unit_index, capacity_bytes, status, created_at,"
			     " started_at, completed_at)"
			     " SELECT order_id, 100 + unit_index, capacity_bytes, 'done', NOW(6) - INTERVAL 1 DAY,"
			     " NOW(6) - INTERVAL 1 DAY, NOW(6) - INTERVAL 1 DAY + INTERVAL 90 SECOND FROM processing_jobs",
			     DB_END),
		     0, "%s", db_error(db));
	assert_counts_exact();
	/* migration 5 rerun (an interrupted upgrade) seeds the same counts again */
	cr_assert_eq(db_exec(db, NULL, "UPDATE job_status_counts SET jobs = jobs + 5", DB_END), 0);
	cr_assert_eq(db_exec(db, NULL, "DELETE FROM schema_migrations WHERE version = 5", DB_END), 0);
	struct db *adm = tdb_connect_admin(DBNAME);
	cr_assert_eq(db_migrate(adm, NULL), 0, "%s", db_error(adm));
	db_close(adm);
	assert_counts_exact();
}

Test(jobs, the_daemons_rows)
{
	struct worker_info w = { .id = "st/host/1", .station = "st", .hostname = "host", .pid = 1, .version = "t" };
	cr_assert_eq(worker_register(db, &w), 0, "%s", db_error(db));
	cr_assert_eq(worker_stop(db, w.id), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM workers WHERE stopped_at IS NOT NULL"), 1);
	cr_assert_eq(worker_register(db, &w), 0, "a restart with the same id");
	cr_assert_eq(worker_heartbeat(db, w.id), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM workers WHERE id = 'st/host/1' AND stopped_at IS NULL"), 1);
	cr_assert_eq(settings_store_stuck_timeouts(db, 12.5, 34), 0);
	cr_assert_eq(tdb_count(db, "SELECT value * 10 FROM settings WHERE name = 'stuck.processing_timeout'"), 125);
	cr_assert_eq(tdb_count(db, "SELECT value FROM settings WHERE name = 'stuck.queued_timeout'"), 34);

	struct device_row d = { .station = "st", .slot = "A", .devnode = "/dev/loop7", .state = DEVICE_STATE_EMPTY };
	cr_assert_eq(device_upsert(db, &d), 0, "%s", db_error(db));
	d.have_capacity = true;
	d.capacity_bytes = 1 << 30;
	d.usb_speed_mbps = 480;
	d.state = DEVICE_STATE_DONE;
	d.state_reason = "take it out";
	d.current_job_id = 7;
	cr_assert_eq(device_upsert(db, &d), 0, "%s", db_error(db));
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM devices WHERE station = 'st' AND slot = 'A' AND state = 'done'"
				   " AND capacity_bytes = 1073741824 AND usb_speed_mbps = 480 AND current_job_id = 7"
				   " AND state_reason = 'take it out'"),
		     1);
	d.state = _DEVICE_STATE_MAX;
	cr_assert_eq(device_upsert(db, &d), -EINVAL);
	for (int s = 0; s < _DEVICE_STATE_MAX; s++)
		cr_assert_not_null(device_state_name(s));
	cr_assert_null(device_state_name(_DEVICE_STATE_MAX));

	/* a server error is not a broken connection; a lost one is */
	cr_assert_eq(db_exec(db, NULL, "SELECT * FROM no_such_table", DB_END), -EIO);
	cr_assert_not(db_connection_broken(db, -EIO));
	cr_assert(db_connection_broken(db, -ENOTCONN));
	cr_assert_not(db_connection_broken(db, 0));
}

/* The payload of the only job.started of job id and claim seq, as one line of its fields (the
 * numbers as JSON prints them). */
static char *started_payload(int64_t id, int seq)
{
	char q[1024];
	snprintf(q, sizeof(q),
		 "SELECT CONCAT_WS(' ', JSON_VALUE(payload, '$.job_id'), JSON_VALUE(payload, '$.order_number'),"
		 " JSON_VALUE(payload, '$.unit_index'), JSON_VALUE(payload, '$.attempt'), JSON_VALUE(payload, '$.slot'),"
		 " JSON_VALUE(payload, '$.device_serial'), JSON_VALUE(payload, '$.device_capacity_bytes'),"
		 " JSON_VALUE(payload, '$.capacity_bytes'), JSON_VALUE(payload, '$.bytes_to_write'),"
		 " JSON_EXTRACT(payload, '$.verify'), JSON_EXTRACT(payload, '$.estimate_seconds'),"
		 " JSON_EXTRACT(payload, '$.estimate_source'), JSON_EXTRACT(payload, '$.estimate_reason'),"
		 " JSON_EXTRACT(payload, '$.estimate_jobs'), JSON_EXTRACT(payload, '$.estimate_write_bytes_per_s'),"
		 " JSON_EXTRACT(payload, '$.estimate_verify_bytes_per_s'), JSON_LENGTH(payload))"
		 " FROM events WHERE event_type = 'job.started' AND aggregate_type = 'job' AND aggregate_id = %lld"
		 " AND seq = %d",
		 (long long)id, seq);
	_cleanup_result_ struct db_res *res = NULL;
	db_row row;
	cr_assert_eq(db_query_row(db, &res, &row, q, DB_END), 0, "job %lld claim %d: %s", (long long)id, seq,
		     db_error(db));
	cr_assert_eq(db_res_count(res), 1);
	return strdup(row[0]);
}

static void assert_started(int64_t id, int seq, const char *want)
{
	char *got = started_payload(id, seq);
	cr_assert_str_eq(got, want);
	free(got);
}

/* job.started: with the move to writing and its row, once per claim (a repeated call adds
 * nothing), its estimate null with the reason on an empty kiosk, then the average of the done
 * jobs of the capacity, or the stick's own speed, or its serial's history; job.done with the
 * attempt's speeds. */
Test(jobs, started_once_per_claim_with_an_estimate_and_done_with_speeds)
{
	tdb_order_confirmed(db, "ST-1", 3);
	struct claimed_job *a = tdb_claim(db, "w1", "SER-A");
	struct job_lease la = JOB_LEASE(a, "w1");
	struct job_log_row row = {
		.level = "info", .stage = "writing", .category = "stage", .message = "writing started"
	};
	struct job_started s = { .bytes_to_write = 100000000, .verify = true };
	char want[512];

	cr_assert_eq(job_enter_writing(db, &la, &s, &row), 0, "%s", db_error(db));
	snprintf(want, sizeof(want),
		 "%lld ST-1 0 1 A SER-A 1073741824 1048576 100000000 true null null \"no measurement yet\" 0 null null 16",
		 (long long)a->id);
	assert_started(a->id, 1, want);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_jobs WHERE stage = 'writing' AND status = 'processing'"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'writing started'"
				   " AND attempt = 1 AND stage = 'writing'"),
		     1);
	/* the same transition again (a retried transaction whose commit went through): nothing more */
	cr_assert_eq(job_enter_writing(db, &la, &s, &row), 0, "%s", db_error(db));
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), 1);

	/* done: 100 MB written in 2 s, read back in 1 s; the attempt took 4 s */
	struct job_done_stats st = { .attempt_seconds = 4.0,
				     .write_seconds = 2.0,
				     .write_bytes = 100000000,
				     .verify_seconds = 1.0,
				     .verify_bytes = 100000000 };
	cr_assert_eq(job_finish_done(db, &la, 100000000, &st, NULL), 0, "%s", db_error(db));
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"
				   " AND JSON_VALUE(payload, '$.write_bytes_per_s') = 50000000"
				   " AND JSON_VALUE(payload, '$.verify_bytes_per_s') = 100000000"
				   " AND JSON_VALUE(payload, '$.attempt_seconds') = 4"
				   " AND JSON_VALUE(payload, '$.duration_seconds') >= 0"
				   " AND JSON_VALUE(payload, '$.bytes_written') = 100000000"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE write_bytes_per_s = 50000000"
				   " AND verify_bytes_per_s = 100000000"),
		     1);

	/* the next unit of that capacity: 100 MB at 50 MB/s and 100 MB/s = 3 s, from 1 job */
	struct claimed_job *b = tdb_claim(db, "w2", "SER-B");
	struct job_lease lb = JOB_LEASE(b, "w2");
	cr_assert_eq(job_enter_writing(db, &lb, &s, NULL), 0, "%s", db_error(db));
	snprintf(want, sizeof(want),
		 "%lld ST-1 1 1 A SER-B 1073741824 1048576 100000000 true 3.0 \"recent_average\" null 1 50000000.0"
		 " 100000000.0 16",
		 (long long)b->id);
	assert_started(b->id, 1, want);
	/* a unit done without verification adds a write speed only: the averages are 40 MB/s
	 * (50 and 30) and 100 MB/s (the one verified) */
	st = (struct job_done_stats){ .attempt_seconds = 1, .write_seconds = 1.0, .write_bytes = 30000000 };
	cr_assert_eq(job_finish_done(db, &lb, 30000000, &st, NULL), 0, "%s", db_error(db));
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"
				   " AND JSON_VALUE(payload, '$.write_bytes_per_s') = 30000000"
				   " AND JSON_TYPE(JSON_EXTRACT(payload, '$.verify_bytes_per_s')) = 'NULL'"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE verify_bytes_per_s IS NULL"
				   " AND write_bytes_per_s = 30000000"),
		     1);

	/* the third unit: written without verification (the estimate is the write alone), then
	 * handed back and claimed again under the same attempt number: a second start, claim 2 */
	struct claimed_job *c = tdb_claim(db, "w3", "SER-C");
	struct job_lease lc = JOB_LEASE(c, "w3");
	s.verify = false;
	cr_assert_eq(job_enter_writing(db, &lc, &s, NULL), 0, "%s", db_error(db));
	snprintf(want, sizeof(want),
		 "%lld ST-1 2 1 A SER-C 1073741824 1048576 100000000 false 2.5 \"recent_average\" null 2 40000000.0"
		 " null 16",
		 (long long)c->id);
	assert_started(c->id, 1, want);
	cr_assert_eq(job_hand_back(db, &lc, "stopping", NULL), 0, "%s", db_error(db));
	struct claimed_job *c2 = tdb_claim(db, "w3", "SER-C");
	cr_assert_eq(c2->id, c->id);
	cr_assert_eq(c2->attempt, 1, "a hand-back does not spend the attempt");
	struct job_lease lc2 = JOB_LEASE(c2, "w3");
	/* this stick's own measured speeds: 100 MB at 10 MB/s, and 20 MB/s read back = 15 s */
	s = (struct job_started){ .bytes_to_write = 100000000,
				  .verify = true,
				  .write_bytes_per_s = 10000000,
				  .verify_bytes_per_s = 20000000 };
	cr_assert_eq(job_enter_writing(db, &lc2, &s, NULL), 0, "%s", db_error(db));
	snprintf(want, sizeof(want),
		 "%lld ST-1 2 1 A SER-C 1073741824 1048576 100000000 true 15.0 \"stick\" null 0 10000000.0"
		 " 20000000.0 16",
		 (long long)c->id);
	assert_started(c->id, 2, want);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.started'"), 4);

	/* a stick written here before (SER-A, the first unit's: 50 MB/s, 100 MB/s read back) is
	 * estimated from its own history, not from the capacity's average (40 and 100 MB/s) */
	tdb_order_confirmed(db, "ST-2", 1);
	struct claimed_job *d = tdb_claim(db, "w4", "SER-A");
	struct job_lease ld = JOB_LEASE(d, "w4");
	s = (struct job_started){ .bytes_to_write = 100000000, .verify = true };
	cr_assert_eq(job_enter_writing(db, &ld, &s, NULL), 0, "%s", db_error(db));
	snprintf(want, sizeof(want),
		 "%lld ST-2 0 1 A SER-A 1073741824 1048576 100000000 true 3.0 \"stick_history\" null 1 50000000.0"
		 " 100000000.0 16",
		 (long long)d->id);
	assert_started(d->id, 1, want);
	claimed_job_free(d);
	claimed_job_free(a);
	claimed_job_free(b);
	claimed_job_free(c);
	claimed_job_free(c2);
}

/* A job retried after a write failure: one job.started per attempt that reached writing, in id
 * order; a lease lost before the transition writes none; an operator's retry starts a new
 * generation whose first claim is on record again. */
Test(jobs, started_per_attempt_across_retries)
{
	tdb_order_confirmed(db, "ST-2", 1);
	struct job_started s = { .bytes_to_write = 4096, .verify = true };
	struct claimed_job *j1 = tdb_claim(db, "w1", "SER-A");
	struct job_lease l1 = JOB_LEASE(j1, "w1");
	cr_assert_eq(job_enter_writing(db, &l1, &s, NULL), 0, "%s", db_error(db));
	enum job_state state;
	cr_assert_eq(job_finish_fail(db, &l1, UFC_WRITE_IO, "write error", NULL, (double[]){ 0 }, 1, &state), 0);
	cr_assert_eq(state, JOB_STATE_RETRY);
	make_due();
	struct claimed_job *j2 = tdb_claim(db, "w2", "SER-B");
	cr_assert_eq(j2->attempt, 2);
	cr_assert_eq(job_enter_writing(db, &l1, &s, NULL), -ESTALE, "w1's attempt 1 is over");
	struct job_lease l2 = JOB_LEASE(j2, "w2");
	cr_assert_eq(job_enter_writing(db, &l2, &s, NULL), 0, "%s", db_error(db));
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.started'"), 2);
	cr_assert_eq(tdb_count(db, "SELECT GROUP_CONCAT(JSON_VALUE(payload, '$.attempt') ORDER BY id SEPARATOR '')"
				   " FROM events WHERE event_type = 'job.started'"),
		     12, "attempts 1 then 2, in id order");
	cr_assert_eq(tdb_count(db, "SELECT GROUP_CONCAT(seq ORDER BY id SEPARATOR '') FROM events"
				   " WHERE event_type = 'job.started'"),
		     12);
	/* the reaper takes attempt 2 before it reaches writing again: no start from it */
	make_stale();
	struct reap_stats rs;
	cr_assert_eq(queue_reap(db, 1.0, 3600, (double[]){ 0 }, 1, NULL, 0, &rs), 0, "%s", db_error(db));
	reap_stats_done(&rs);
	cr_assert_eq(job_enter_writing(db, &l2, &s, NULL), -ESTALE);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.started'"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE stage = 'writing'"), 1,
		     "the stage the reaper left");
	claimed_job_free(j1);
	claimed_job_free(j2);
}

/* Claims spread (issue 15): each worker takes the N-th runnable job, N its rank among the live
 * workers of its station (by id), so that kiosks on different Galera nodes do not all take the
 * same row; a worker takes the oldest when fewer jobs are runnable than its rank, and a lone
 * worker (rank 0, every other test here) the oldest. A worker of another station does not
 * count: it would make this station's workers skip their oldest jobs. */
Test(jobs, claims_spread_by_the_workers_rank)
{
	tdb_order_confirmed(db, "SPREAD", 5);
	int64_t id[5];
	struct db_res *res = NULL;
	cr_assert_eq(db_query(db, &res, "SELECT id FROM processing_jobs ORDER BY id", DB_END), 0);
	cr_assert_eq(db_res_count(res), 5);
	for (int i = 0; i < 5; i++)
		id[i] = db_row_i64(db_res_next(res), 0);
	db_res_free(res);
	static const char *const ids[] = { "st/a/1", "st/b/2", "st/c/3" };
	for (int i = 0; i < 3; i++) {
		struct worker_info w = {
			.id = ids[i], .station = "test-station", .hostname = "h", .pid = i + 1, .version = "t"
		};
		cr_assert_eq(worker_register(db, &w), 0, "%s", db_error(db));
	}
	struct worker_info other = { .id = "aa/1", .station = "other", .hostname = "h", .pid = 7, .version = "t" };
	cr_assert_eq(worker_register(db, &other), 0);
	/* a stopped worker and one whose heartbeat is a minute old have no rank */
	struct worker_info gone = {
		.id = "st/0/9", .station = "test-station", .hostname = "h", .pid = 9, .version = "t"
	};
	cr_assert_eq(worker_register(db, &gone), 0);
	cr_assert_eq(worker_stop(db, gone.id), 0);
	struct worker_info stale = {
		.id = "st/00/8", .station = "test-station", .hostname = "h", .pid = 8, .version = "t"
	};
	cr_assert_eq(worker_register(db, &stale), 0);
	cr_assert_eq(db_exec(db, NULL, "UPDATE workers SET heartbeat_at = NOW(6) - INTERVAL 1 MINUTE WHERE id = ?",
			     DB_STR(stale.id), DB_END),
		     0);

	struct claimed_job *c = tdb_claim(db, "st/c/3", NULL); /* rank 2: the third runnable */
	cr_assert_eq(c->id, id[2]);
	struct claimed_job *a = tdb_claim(db, "st/a/1", NULL); /* rank 0: the oldest */
	cr_assert_eq(a->id, id[0]);
	struct claimed_job *b = tdb_claim(db, "st/b/2", NULL); /* rank 1 of [1, 3, 4]: 3 */
	cr_assert_eq(b->id, id[3]);
	struct claimed_job *c2 = tdb_claim(db, "st/c/3", NULL); /* rank 2 of [1, 4]: none, so the oldest */
	cr_assert_eq(c2->id, id[1]);
	struct claimed_job *a2 = tdb_claim(db, "st/a/1", NULL);
	cr_assert_eq(a2->id, id[4]);
	struct claimed_job *none = NULL;
	struct claim_req q = CLAIM_A;
	q.worker_id = "st/b/2";
	cr_assert_eq(job_claim(db, &q, &none), -ENOENT);
	claimed_job_free(a);
	claimed_job_free(b);
	claimed_job_free(c);
	claimed_job_free(c2);
	claimed_job_free(a2);
}

/* Issue 15: a runner's queued rows go in one insert, in order, each with its own time, texts as
 * given (quotes, backslashes, new lines, non-ASCII); under a lease that no longer holds, none of
 * them. A writing stage's start still queued at the end is recorded in the end's transaction;
 * given there again after its own commit went through (its answer lost), neither job.started nor
 * its rows are added twice. */
Test(jobs, rows_batched_in_one_insert_and_a_start_recorded_with_the_end)
{
	tdb_order_confirmed(db, "BATCH", 1);
	struct claimed_job *j = tdb_claim(db, "w1", "SER-A");
	struct job_lease l = JOB_LEASE(j, "w1");
	const struct job_log_row rows[] = {
		{ .level = "info", .stage = "pending", .category = "system", .message = "first", .age_us = 3000000 },
		{ .level = "warn",
		  .stage = "validation",
		  .category = "device",
		  .message = "a \"b\" \\ c\nd é 💾",
		  .error_code = "WRITE_IO",
		  .details_json = "{\"x\":1.5e-05,\"y\":[1,2]}",
		  .age_us = 1000001 },
		{ .level = "info", .stage = "writing", .category = "stage", .message = "writing started" },
	};
	long long before = tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs");
	cr_assert_eq(job_log_leased_rows(db, &l, rows, 3), 0, "%s", db_error(db));
	struct job_log_entry *got = NULL;
	size_t n = 0;
	cr_assert_eq(job_log_list(db, j->id, 0, &got, &n), 0);
	cr_assert_eq(n, 3);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(got[i].attempt, 1);
		cr_assert_str_eq(got[i].level, rows[i].level);
		cr_assert_str_eq(got[i].stage, rows[i].stage);
		cr_assert_str_eq(got[i].category, rows[i].category);
		cr_assert_str_eq(got[i].message, rows[i].message);
		if (i)
			cr_assert_gt(got[i].id, got[i - 1].id);
	}
	cr_assert_null(got[0].error_code);
	cr_assert_null(got[0].details);
	cr_assert_str_eq(got[1].error_code, "WRITE_IO");
	cr_assert_str_eq(got[1].details, "{\"x\":1.5e-05,\"y\":[1,2]}");
	job_log_list_free(got, n);
	/* each row's time is the server's NOW(6) of the insert less the row's age (one statement:
	 * one NOW(6)), never a time the kiosk's clock made */
	char tq[320];
	snprintf(tq, sizeof(tq),
		 "SELECT GROUP_CONCAT(TIMESTAMPDIFF(MICROSECOND, created_at, (SELECT MAX(created_at) FROM"
		 " processing_job_logs WHERE job_id = %lld)) ORDER BY id) = '3000000,1000001,0'"
		 " FROM processing_job_logs WHERE job_id = %lld",
		 (long long)j->id, (long long)j->id);
	cr_assert_eq(tdb_count(db, tq), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE created_at > NOW(6)"), 0);
	/* not ours: nothing */
	struct job_lease other = { .id = j->id, .worker_id = "w2", .attempt = 1 };
	cr_assert_eq(job_log_leased_rows(db, &other, rows, 3), -ESTALE);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), before + 3);
	char q[256];

	/* the writing stage's start given again with the end (its own commit went through, its
	 * answer lost): the start and its row are not added twice */
	struct job_started s = { .bytes_to_write = 4096, .verify = true };
	const struct job_log_row end_rows[] = {
		{ .level = "info", .stage = "writing", .category = "stage", .message = "writing started" },
		{ .level = "info", .stage = "writing", .category = "stage", .message = "writing done" },
		{ .level = "info", .stage = "done", .category = "stage", .message = "job done" },
	};
	cr_assert_eq(job_enter_writing_rows(db, &l, &s, end_rows, 1), 0, "%s", db_error(db));
	cr_assert_eq(job_finish_done_started(db, &l, 4096, NULL, &s, end_rows, 3, 1), 0, "%s", db_error(db));
	snprintf(q, sizeof(q), "SELECT COUNT(*) FROM processing_job_logs WHERE job_id = %lld AND message = '%s'",
		 (long long)j->id, "writing started");
	cr_assert_eq(tdb_count(db, q), 2, "the batch's and the start's, once each");
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM events WHERE aggregate_id = %lld AND event_type IN ('job.started', 'job.done')",
		 (long long)j->id);
	cr_assert_eq(tdb_count(db, q), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), before + 6);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND stage = 'done'"), 1);
	/* the same end again: the job is done, not ours any more */
	cr_assert_eq(job_finish_done_started(db, &l, 4096, NULL, &s, end_rows, 3, 1), -ESTALE);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), before + 6);
	claimed_job_free(j);
}
