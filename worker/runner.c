/* Implementation of worker/runner.h. */
#include "worker/runner.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/content.h"
#include "stages/content_spec.h"
#include "stages/stage.h"
#include "blkio/writer.h"
#include "usb/safety.h"
#include "usb/reset.h"
#include "util/log.h"
#include "util/logid.h"
#include "util/macro.h"
#include "util/message.h"
#include "util/monotime.h"

/* Global progress range of each stage (DESIGN/issue: 0–10, 10–30, 30–80, 80–100). */
static const int range_lo[_STAGE_MAX] = {
	[STAGE_VALIDATION] = 0, [STAGE_SELECTION] = 10, [STAGE_WRITING] = 30, [STAGE_VERIFICATION] = 80, [STAGE_DONE] = 100
};
static const int range_hi[_STAGE_MAX] = {
	[STAGE_VALIDATION] = 10, [STAGE_SELECTION] = 30, [STAGE_WRITING] = 80, [STAGE_VERIFICATION] = 100, [STAGE_DONE] = 100
};

/* A log row waiting for the runner's database thread. The row of the writing stage's start
 * carries the stage's transition (started: the job row's move to 'writing' and job.started,
 * written with the rows in one transaction, db/jobs.h job_enter_writing_rows): it is queued like
 * the rows, so the data path never waits for the database, and lands in order with them, before
 * the attempt's end.
 * The rows are written in batches, each one multi-row insert: those queued up to the writing
 * stage's start go with its transition, the rest with the heartbeat (once a second) and, at the
 * end, in the transaction of the attempt's end with its own row; a queue half full goes at once.
 * A job of a few milliseconds thus costs two writes of rows, whatever its number of rows. */
struct pending_row {
	char *level, *stage, *category, *message, *error_code, *details;
	struct job_started *started; /* NULL: a plain row */
	double queued_at;	     /* mono_s(): its age when written is its time (db/jobs.h job_log_row) */
};

/* The writing stage's start is written this long after it happened (or with the beat, or the
 * end, whichever comes first): a job of milliseconds records it with its end, in one
 * transaction; a longer one a quarter of a second late at most. */
#define TRANSITION_DELAY 0.25

/* Log rows are bounded by design (a start and an end row per stage, a progress row per 10 %,
 * error rows): a full queue means something is looping. */
#define MAX_PENDING_ROWS 256

struct runner {
	pthread_t thread, dbthread;
	bool dbthread_started;
	struct runner_args a;
	char *slot, *devpath, *serial, *worker_id;
	struct claimed_job *job;
	struct job_lease lease;

	/* The connection. The database thread uses it while the stages run, the runner thread
	 * before (loading the job) and after (recording its end) and between stages (storing the
	 * chosen content); dblock serializes them. Nothing that holds `lock` waits for it, so the
	 * data path never waits for the database. */
	struct db *db;
	pthread_mutex_t dblock;

	pthread_mutex_t lock;	      /* guards the progress state and the queue below */
	pthread_cond_t tick_cond;     /* wakes the database thread */
	pthread_cond_t throttle_cond; /* the writer (write.max_rate) and finish()'s retries wait here;
	                               * broadcast on a stop request, a lost job and a pulled stick */
	bool dbthread_quit;

	atomic_bool cancel;    /* the pipeline's flag: any reason to stop */
	atomic_bool stop;      /* daemon shutdown: hand back */
	atomic_bool op_cancel; /* operator cancel seen in the database */
	atomic_bool lost;      /* job no longer ours: write nothing more for it */
	atomic_bool finished;
	atomic_bool gone; /* the stick was pulled (hotplug) */

	/* progress state (under lock) */
	enum stage_id stage;
	uint64_t done, total, bytes_total, bytes_written;
	int last_decile[_STAGE_MAX];
	double stage_start; /* mono_s() */
	double rate;	    /* bytes/s in the current stage */
	/* for the board's counters: time and bytes of the writing and verification stages */
	double write_s, verify_s;
	uint64_t verified;
	double attempt_start;	  /* mono_s() when the runner began the attempt */
	struct pending_row *rows; /* queued log rows, oldest first */
	size_t n_rows;
	unsigned dropped_rows;
	char *checkpoint; /* the newest resume state not yet stored */
	bool have_checkpoint;

	/* the database thread's own (no lock) */
	double last_beat; /* monotonic time of the last heartbeat tried */
	double next_reconnect;
	bool db_down; /* the connection failed; rows are kept until it is back */

	bool bad_stick;
	bool ended_done;    /* the job ended done (recorded) */
	bool ended_gone;    /* the attempt ended because the stick was pulled */
	bool in_use;	    /* another writer held the slot: handed back */
	bool stage_counted; /* the current stage's time and bytes are in write_s … verified */
	char *bad_reason;   /* bad_stick: why (malloc'd) */

	/* the journal fields of the attempt (job, order, unit, attempt, slot, serial): the log
	 * context of the runner thread and of the database thread; points into job and the
	 * strings above, which outlive both threads */
	struct log_fields logctx;
};

static struct timespec d_to_ts(double t)
{
	return (struct timespec){ .tv_sec = (time_t)t, .tv_nsec = (long)((t - floor(t)) * 1e9) };
}

static const char *level_name(enum log_level l)
{
	switch (l) {
	case LOG_LVL_ERR:
		return "error";
	case LOG_LVL_WARNING:
		return "warn";
	case LOG_LVL_DEBUG:
		return "debug";
	default:
		return "info";
	}
}

static void pending_row_done(struct pending_row *p)
{
	free(p->level);
	free(p->stage);
	free(p->category);
	free(p->message);
	free(p->error_code);
	free(p->details);
	free(p->started);
}

static void drop_rows_locked(struct runner *r)
{
	for (size_t i = 0; i < r->n_rows; i++)
		pending_row_done(&r->rows[i]);
	r->n_rows = 0;
	r->checkpoint = mfree(r->checkpoint);
	r->have_checkpoint = false;
}

/* The job is not ours any more (the reaper or an operator took it, or a later attempt began):
 * stop writing the stick at the next chunk boundary and write nothing more for it. Said once,
 * on stderr: the job's history belongs to whoever holds it now. */
static void mark_lost(struct runner *r, const char *why)
{
	if (atomic_exchange(&r->lost, true))
		return;
	log_struct(LOG_LVL_WARNING, LOG_FIELDS(.message_id = LOG_MID_JOB_LOST),
		   "job %lld attempt %d: %s; stopping at the next chunk boundary and writing nothing more for it",
		   (long long)r->job->id, r->job->attempt, why);
	atomic_store(&r->cancel, true);
	pthread_mutex_lock(&r->lock);
	drop_rows_locked(r);
	pthread_cond_broadcast(&r->throttle_cond);
	pthread_mutex_unlock(&r->lock);
}

/* Queue a log row for the database thread (caller holds the lock). Never blocks on the
 * database: the row is written by the database thread, in order, while the job is ours.
 * Returns the queued row (the caller may attach a transition to it), NULL when none was. */
static struct pending_row *log_row_locked(struct runner *r, const char *level, enum stage_id st, const char *category,
					  const char *msg, enum uf_code code, const char *details)
{
	if (atomic_load(&r->lost))
		return NULL;
	if (r->n_rows == MAX_PENDING_ROWS) {
		r->dropped_rows++;
		return NULL;
	}
	struct pending_row *p = &r->rows[r->n_rows];
	*p = (struct pending_row){ .queued_at = mono_s(),
				   .level = strdup_or_null(level),
				   .stage = strdup_or_null(stage_name(st)),
				   .category = strdup_or_null(category),
				   .message = strdup_or_null(msg),
				   .error_code = strdup_or_null(uf_code_name(code)),
				   .details = strdup_or_null(details) };
	if (!p->level || !p->stage || !p->category || !p->message || (details && !p->details)) {
		pending_row_done(p);
		r->dropped_rows++;
		return NULL;
	}
	r->n_rows++;
	if (r->n_rows >= MAX_PENDING_ROWS / 2) /* else the rows wait for a transition or the beat */
		pthread_cond_signal(&r->tick_cond);
	return p;
}

static void log_row(struct runner *r, const char *level, enum stage_id st, const char *category, const char *msg,
		    enum uf_code code, const char *details)
{
	pthread_mutex_lock(&r->lock);
	(void)log_row_locked(r, level, st, category, msg, code, details);
	pthread_mutex_unlock(&r->lock);
}

static int global_progress(const struct runner *r)
{
	int lo = range_lo[r->stage], hi = range_hi[r->stage];
	if (!r->total)
		return lo;
	double f = (double)r->done / (double)r->total;
	if (f > 1)
		f = 1;
	return lo + (int)floor(f * (hi - lo));
}

/* A database call failed: -ESTALE means the job was taken from us; a lost connection is
 * reconnected (at most once a second) while the rows wait. Returns true when it is worth going
 * on with the next call. Caller holds dblock. */
static bool db_trouble(struct runner *r, int q, const char *what)
{
	if (q == -ESTALE) {
		mark_lost(r, "no longer ours (taken by the reaper or an operator, or a later attempt began)");
		return false;
	}
	if (q == -ENOTCONN || !db_is_up(r->db)) {
		if (!r->db_down)
			log_struct(LOG_LVL_WARNING,
				   LOG_FIELDS(.message_id = LOG_MID_DB_LOST,
					      .error_code = uf_code_name(UFC_DB_UNAVAILABLE)),
				   "job %lld: database unavailable (%s: %s); the stick is still written, its rows "
				   "are kept until the database is back",
				   (long long)r->job->id, what, db_error(r->db));
		r->db_down = true;
		if (mono_s() >= r->next_reconnect) {
			r->next_reconnect = mono_s() + 1.0;
			if (db_reconnect(r->db, NULL) == 0) {
				log_struct(LOG_LVL_NOTICE, LOG_FIELDS(.message_id = LOG_MID_DB_BACK),
					   "job %lld: database reachable again", (long long)r->job->id);
				r->db_down = false;
				return true;
			}
		}
		return false;
	}
	/* lock waits, deadlocks: next time */
	return false;
}

/* Caller holds the lock: when the queued transition (the writing stage's start) is due, or
 * INFINITY when none is queued. */
static double transition_due_locked(const struct runner *r)
{
	for (size_t i = 0; i < r->n_rows; i++)
		if (r->rows[i].started)
			return r->rows[i].queued_at + TRANSITION_DELAY;
	return INFINITY;
}

/* The row to write; now: mono_s() when the rows are written (once for a batch). */
static struct job_log_row row_of(const struct pending_row *p, double now)
{
	return (struct job_log_row){ .level = p->level,
				     .stage = p->stage,
				     .category = p->category,
				     .message = p->message,
				     .error_code = p->error_code,
				     .details_json = p->details,
				     .age_us = (int64_t)(MAX(now - p->queued_at, 0.0) * 1e6) };
}

/* Remove the k oldest queued rows, if they are still the ones written (first: the oldest's
 * message, which a drop by mark_lost would have freed). Takes the lock. */
static void rows_written(struct runner *r, const char *first, size_t k)
{
	pthread_mutex_lock(&r->lock);
	if (r->n_rows >= k && r->rows[0].message == first) {
		for (size_t i = 0; i < k; i++)
			pending_row_done(&r->rows[i]);
		memmove(&r->rows[0], &r->rows[k], (r->n_rows - k) * sizeof(r->rows[0]));
		r->n_rows -= k;
	}
	pthread_mutex_unlock(&r->lock);
}

/* The oldest queued row alone, as before batches: a row the server refuses for what it is (not
 * for the connection or the lease) is dropped with a warning rather than retried for ever. */
static int flush_one(struct runner *r)
{
	pthread_mutex_lock(&r->lock);
	struct pending_row p = r->rows[0]; /* only this thread removes rows; n_rows ≥ 1 */
	pthread_mutex_unlock(&r->lock);
	struct job_log_row row = row_of(&p, mono_s());
	int q = p.started ? job_enter_writing(r->db, &r->lease, p.started, &row)
			  : job_log_leased(r->db, &r->lease, &row);
	if (q == -ESTALE)
		mark_lost(r, "no longer ours (taken by the reaper or an operator, or a later attempt began)");
	if (q < 0 && q != -EIO && q != -EPERM)
		return q;
	if (q < 0)
		log_warning("job %lld: log row refused by the server and dropped (%s): %s", (long long)r->job->id,
			    db_error(r->db), p.message);
	rows_written(r, p.message, 1);
	return 0;
}

/* Write queued log rows, oldest first, in batches (one multi-row insert each), and the newest
 * checkpoint, while the lease holds: when transitions, the rows up to and including the one
 * carrying the writing stage's transition, with it; when all (the beat, a full queue: implies
 * transitions), the others too.
 * A batch the server refuses for what it is goes again row by row (flush_one). Caller holds
 * dblock, not lock. Returns 0 when what was due was written, else the error, with the job marked
 * lost on -ESTALE; the caller deals with the connection. */
static int flush_rows(struct runner *r, bool all, bool transitions)
{
	for (;;) {
		if (atomic_load(&r->lost))
			return -ESTALE;
		pthread_mutex_lock(&r->lock);
		size_t n = r->n_rows, k = 0;
		while (k < n && !r->rows[k].started)
			k++;
		bool transition = k < n;
		if (transition)
			k = transitions || all ? k + 1 : 0;
		else if (!all)
			k = 0;
		/* only this thread removes rows, and the queue is appended beyond n: rows[0..k) stay */
		const struct pending_row *pr = r->rows;
		pthread_mutex_unlock(&r->lock);
		if (k == 0)
			break;
		_cleanup_free_ struct job_log_row *batch = calloc(k, sizeof(*batch));
		int q = -ENOMEM;
		if (batch) {
			double now = mono_s();
			for (size_t i = 0; i < k; i++)
				batch[i] = row_of(&pr[i], now);
			q = transition ? job_enter_writing_rows(r->db, &r->lease, pr[k - 1].started, batch, k)
				       : job_log_leased_rows(r->db, &r->lease, batch, k);
		}
		if (q == -ESTALE) {
			mark_lost(r, "no longer ours (taken by the reaper or an operator, or a later attempt began)");
			return q;
		}
		if (q == -EIO || q == -EPERM || q == -EINVAL || q == -ENOMEM) {
			q = flush_one(r); /* refused as a batch: row by row, dropping what is refused */
			if (q < 0)
				return q;
			continue;
		}
		if (q < 0)
			return q;
		rows_written(r, pr[0].message, k);
	}
	pthread_mutex_lock(&r->lock);
	unsigned dropped = r->dropped_rows;
	r->dropped_rows = 0;
	bool have = r->have_checkpoint;
	char *cp = r->checkpoint;
	r->checkpoint = NULL;
	r->have_checkpoint = false;
	pthread_mutex_unlock(&r->lock);
	if (dropped)
		log_warning("job %lld: %u log row(s) dropped (queue full or out of memory)", (long long)r->job->id,
			    dropped);
	if (!have)
		return 0;
	int q = job_resume_store(r->db, &r->lease, cp);
	if (q < 0) {
		pthread_mutex_lock(&r->lock);
		if (!r->have_checkpoint && !atomic_load(&r->lost)) { /* keep it unless a newer one came */
			r->checkpoint = cp;
			r->have_checkpoint = true;
			cp = NULL;
		}
		pthread_mutex_unlock(&r->lock);
		if (q == -ESTALE)
			mark_lost(r, "no longer ours (taken by the reaper or an operator, or a later attempt began)");
	}
	free(cp);
	return q;
}

/* Write heartbeat + progress. Caller holds dblock, not lock. */
static void beat(struct runner *r)
{
	r->last_beat = mono_s();
	pthread_mutex_lock(&r->lock);
	double el = mono_s() - r->stage_start;
	double eta = (r->rate > 0 && r->total > r->done) ? (double)(r->total - r->done) / r->rate : 0;
	json_t *d = json_pack("{s:s, s:I, s:I, s:f, s:f, s:f}", "stage", stage_name(r->stage), "bytes_done",
			      (json_int_t)r->done, "bytes_total", (json_int_t)r->total, "rate_bytes_per_s", r->rate,
			      "eta_seconds", eta, "stage_elapsed_seconds", el);
	const char *stage = stage_name(r->stage);
	int progress = global_progress(r);
	uint64_t bytes_total = r->bytes_total, bytes_written = r->bytes_written;
	pthread_mutex_unlock(&r->lock);
	_cleanup_free_ char *dj = d ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	bool cancel = false;
	int q = job_progress(r->db, &r->lease, stage, progress, dj, bytes_total, bytes_written, &cancel);
	if (q < 0) {
		(void)db_trouble(r, q, "heartbeat");
		return;
	}
	if (cancel && !atomic_load(&r->op_cancel)) {
		atomic_store(&r->op_cancel, true);
		atomic_store(&r->cancel, true);
		pthread_mutex_lock(&r->lock);
		pthread_cond_broadcast(&r->throttle_cond);
		pthread_mutex_unlock(&r->lock);
	}
}

static void *dbthread_main(void *p)
{
	struct runner *r = p;
	/* Heartbeat and progress ride on one UPDATE, once a second (DESIGN: progress at most once
	 * a second); the queued rows (a stage's start, progress, errors) go with the writing
	 * stage's transition and with the beat, a checkpoint as it comes. While the database is
	 * away each round is one reconnect attempt, once a second. */
	double rows_retry_at = 0;
	log_context_set(&r->logctx);
	pthread_mutex_lock(&r->lock);
	while (!r->dbthread_quit) {
		double t = mono_s();
		log_context_set_stage(stage_name(r->stage)); /* what the runner thread is at */
		bool beat_due = t >= r->last_beat + 1.0;
		bool all_due = beat_due || r->n_rows >= MAX_PENDING_ROWS / 2; /* every queued row */
		double transition_at = transition_due_locked(r);
		bool transition_due = t >= transition_at;
		bool rows_due = all_due || r->have_checkpoint || transition_due;
		bool rows = (r->n_rows || r->have_checkpoint) && rows_due && !r->db_down && t >= rows_retry_at;
		if (atomic_load(&r->lost) || (!beat_due && !rows)) {
			double wake = MIN(r->last_beat + 1.0, transition_due ? INFINITY : transition_at);
			struct timespec until = d_to_ts(atomic_load(&r->lost) ? t + 1.0 : wake);
			(void)pthread_cond_timedwait(&r->tick_cond, &r->lock, &until);
			continue;
		}
		pthread_mutex_unlock(&r->lock);
		pthread_mutex_lock(&r->dblock);
		if (beat_due)
			r->last_beat = t;
		if (!r->db_down || db_trouble(r, -ENOTCONN, "reconnect")) {
			int q = flush_rows(r, all_due, transition_due);
			if (q < 0) {
				rows_retry_at = mono_s() + 0.5;
				(void)db_trouble(r, q, "log rows");
			} else if (beat_due && !atomic_load(&r->lost)) {
				beat(r);
			}
		}
		pthread_mutex_unlock(&r->dblock);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	log_context_set(NULL);
	return NULL;
}

static void sink_progress(void *ud, enum stage_id st, uint64_t done, uint64_t total)
{
	struct runner *r = ud;
	pthread_mutex_lock(&r->lock);
	if (st != r->stage) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	r->done = done;
	r->total = total;
	board_job_progress(r->a.board, r->slot, done, total);
	double el = mono_s() - r->stage_start;
	r->rate = el > 0 ? (double)done / el : 0;
	if (st == STAGE_WRITING)
		r->bytes_written = done;
	/* One progress row per 10% of a stage, at most. */
	int decile = total ? (int)(done * 10 / total) : 0;
	if (decile > 10)
		decile = 10;
	if (decile > r->last_decile[st] && decile > 0 && decile < 10) {
		char msg[128];
		r->last_decile[st] = decile;
		snprintf(msg, sizeof(msg), "%s %d%%", stage_name(st), decile * 10);
		json_t *d = json_pack("{s:I, s:I, s:f}", "done", (json_int_t)done, "total", (json_int_t)total,
				      "rate_bytes_per_s", r->rate);
		_cleanup_free_ char *dj = d ? json_dumps(d, JSON_COMPACT) : NULL;
		json_decref(d);
		(void)log_row_locked(r, "info", st, "progress", msg, UFC_NONE, dj);
	}
	/* write.max_rate: hold the writer until the rate is respected (or a stop comes). */
	uint64_t max_rate = r->a.cfg->write.max_rate;
	if (max_rate && st == STAGE_WRITING) {
		double due = r->stage_start + (double)done / (double)max_rate;
		while (!atomic_load(&r->cancel) && mono_s() < due) {
			struct timespec until = d_to_ts(MIN(due, mono_s() + 0.2));
			pthread_cond_timedwait(&r->throttle_cond, &r->lock, &until);
		}
	}
	pthread_mutex_unlock(&r->lock);
}

static void sink_log(void *ud, enum log_level lvl, enum stage_id st, const char *category, enum uf_code code,
		     const char *details, const char *message)
{
	struct runner *r = ud;
	log_row(r, level_name(lvl), st, category, message, code, details);
}

/* The writer's resume state after each periodic sync: a retry on this job continues from it.
 * Only the newest matters; the database thread stores it after the rows before it. */
static void sink_checkpoint(void *ud, const char *resume_json)
{
	struct runner *r = ud;
	char *cp = resume_json ? strdup(resume_json) : NULL;
	if (resume_json && !cp)
		return; /* out of memory: the previous checkpoint stays, which is safe (older) */
	pthread_mutex_lock(&r->lock);
	if (atomic_load(&r->lost)) {
		free(cp);
	} else {
		free(r->checkpoint);
		r->checkpoint = cp;
		r->have_checkpoint = true;
		pthread_cond_signal(&r->tick_cond);
	}
	pthread_mutex_unlock(&r->lock);
}

/* Under the lock: the stage that ends adds its time and bytes to the board's counters. */
static void stage_ended_locked(struct runner *r)
{
	if (r->stage_counted)
		return;
	r->stage_counted = true;
	double el = mono_s() - r->stage_start;
	if (r->stage == STAGE_WRITING)
		r->write_s += el;
	else if (r->stage == STAGE_VERIFICATION) {
		r->verify_s += el;
		r->verified += r->done;
	}
}

static enum tile_state tile_of_stage(enum stage_id st)
{
	return st == STAGE_WRITING ? TILE_WRITING : st == STAGE_VERIFICATION ? TILE_VERIFYING : TILE_CHECKING;
}

/* The runner enters stage st; started (the writing stage's only, else NULL) is the transition
 * that goes with its row. */
static void enter_stage(struct runner *r, enum stage_id st, const struct job_started *started)
{
	pthread_mutex_lock(&r->lock);
	stage_ended_locked(r);
	board_job_stage(r->a.board, r->slot, tile_of_stage(st));
	r->stage = st;
	r->stage_counted = false;
	r->done = 0;
	r->total = 0;
	r->rate = 0;
	r->stage_start = mono_s();
	char msg[64];
	snprintf(msg, sizeof(msg), "%s started", stage_name(st));
	struct pending_row *p = log_row_locked(r, "info", st, "stage", msg, UFC_NONE, NULL);
	if (p && started) {
		p->started = malloc(sizeof(*p->started));
		if (p->started) {
			*p->started = *started;
			pthread_cond_signal(&r->tick_cond); /* its time to go is set (TRANSITION_DELAY) */
		}
	}
	bool missed = started && (!p || !p->started) && !atomic_load(&r->lost);
	pthread_mutex_unlock(&r->lock);
	if (missed)
		log_warning("job %lld: out of memory or rows: its move to writing and job.started are not recorded",
			    (long long)r->job->id);
	log_context_set_stage(stage_name(st));
	log_struct(LOG_LVL_INFO, LOG_FIELDS(.message_id = LOG_MID_STAGE_STARTED), "job %lld: %s", (long long)r->job->id,
		   msg);
}

/* Build the job spec from the claimed job (content orders: parse the spec, load candidates and
 * any earlier choice). Returns a code; message in *ret_msg. */
static enum uf_code build_spec(struct runner *r, struct job_spec *spec, char **ret_msg)
{
	struct claimed_job *j = r->job;
	spec->job_id = j->id;
	spec->order_id = j->order_id;
	spec->attempt = j->attempt;
	spec->capacity_bytes = j->capacity_bytes;
	if (j->image_path) {
		spec->image_path = strdup(j->image_path);
		spec->image_root = strdup(r->a.cfg->content.images);
		spec->image_bytes = j->image_bytes;
		return spec->image_path && spec->image_root ? UFC_NONE : UFC_PROCESSING_FAILED;
	}
	spec->content_root = strdup(r->a.cfg->content.root);
	struct content_spec cs;
	char *why = NULL;
	int p = content_spec_parse(j->content_spec, &cs, &why);
	if (p == -EINVAL) {
		*ret_msg = why;
		return UFC_ORDER_INVALID;
	}
	if (p == 0) {
		spec->categories = cs.categories;
		spec->item_ids = cs.item_ids;
		spec->n_item_ids = cs.n_item_ids;
	}
	if (p < 0 || !spec->content_root) {
		*ret_msg = strdup("out of memory while reading the order's content");
		return UFC_PROCESSING_FAILED;
	}
	pthread_mutex_lock(&r->dblock);
	int q = job_items_load(r->db, j->id, &spec->items, &spec->n_items);
	if (q < 0 && db_connection_broken(r->db, q) &&
	    db_reconnect(r->db, NULL) == 0) /* the slot's kept one died idle */
		q = job_items_load(r->db, j->id, &spec->items, &spec->n_items);
	if (q >= 0)
		q = content_load_candidates(r->db, spec->categories, spec->item_ids, spec->n_item_ids, &spec->library,
					    &spec->n_library);
	if (q < 0 && asprintf(ret_msg, "cannot load the content of the order: %s", db_error(r->db)) < 0)
		*ret_msg = NULL;
	pthread_mutex_unlock(&r->dblock);
	if (q < 0)
		return q == -ENOMEM ? UFC_PROCESSING_FAILED : UFC_DB_UNAVAILABLE;
	spec->items_reused = spec->n_items > 0;
	return UFC_NONE;
}

static void spec_done(struct job_spec *s)
{
	free(s->image_path);
	free(s->image_root);
	free(s->content_root);
	for (size_t i = 0; s->categories && s->categories[i]; i++)
		free(s->categories[i]);
	free(s->categories);
	free(s->item_ids);
	content_items_free(s->library, s->n_library);
	job_items_free(s->items, s->n_items);
}

/* Wait up to seconds on throttle_cond, which a stop request broadcasts. True when the daemon
 * is stopping. */
static bool wait_or_stop(struct runner *r, double seconds)
{
	struct timespec until = d_to_ts(mono_s() + seconds);
	pthread_mutex_lock(&r->lock);
	while (!atomic_load(&r->stop) && pthread_cond_timedwait(&r->throttle_cond, &r->lock, &until) == 0)
		;
	pthread_mutex_unlock(&r->lock);
	return atomic_load(&r->stop);
}

/* Wait up to seconds for the hotplug event of the stick leaving (or a stop request). */
static void wait_gone(struct runner *r, double seconds)
{
	struct timespec until = d_to_ts(mono_s() + seconds);
	pthread_mutex_lock(&r->lock);
	while (!atomic_load(&r->gone) && !atomic_load(&r->stop) &&
	       pthread_cond_timedwait(&r->throttle_cond, &r->lock, &until) == 0)
		;
	pthread_mutex_unlock(&r->lock);
}

enum final_kind { FINAL_DONE, FINAL_FAIL, FINAL_HAND_BACK };

struct final {
	enum final_kind kind;
	const struct job_log_row *row;
	uint64_t bytes;		     /* done */
	struct job_done_stats stats; /* done */
	enum uf_code code;	     /* fail */
	const char *reason;	     /* fail, hand back */
	enum job_state state;	     /* out (fail): where the job went */
};

/* Record how the job ended: one guarded transaction with the rows still queued and its own log
 * row in one insert (db/jobs.h), done taking a writing stage's start still queued with it (the
 * other ends write it first). Database trouble (a lost connection, a server that went away for a
 * while, deadlocks beyond db_transaction's own retries) does not lose the result: reconnect
 * and try again (backing off from 0.25 s to 1 s, so the end lands within a second or so of the
 * server's return) until it lands or the job turns out not to be ours (-ESTALE: past the
 * heartbeat horizon the reaper may have returned it; then the retry rewrites the unit and this
 * end is not recorded, so it is never recorded twice). A stop request ends the waiting too (the
 * reaper returns the job). Called once the database thread has ended. Returns 0 when recorded. */
static int finish(struct runner *r, struct final *f)
{
	double backoff = 0.25;
	bool warned = false;

	for (;;) {
		/* done takes a transition still queued into its own transaction */
		int q = flush_rows(r, false, f->kind != FINAL_DONE);
		size_t n = 0;
		const char *first = NULL;
		if (q == 0) {
			/* the database thread has ended: this thread alone touches the queue */
			n = r->n_rows;
			first = n ? r->rows[0].message : NULL;
			_cleanup_free_ struct job_log_row *rows = calloc(n + 1, sizeof(*rows));
			if (!rows) {
				q = flush_rows(r, true, true); /* out of memory: the rows on their own first */
				n = 0;
			}
			const struct job_started *started = NULL;
			size_t n_started = 0;
			for (size_t i = 0; rows && i < n && !started; i++)
				if (r->rows[i].started) {
					started = r->rows[i].started;
					n_started = i + 1;
				}
			double now = mono_s();
			for (size_t i = 0; rows && i < n; i++)
				rows[i] = row_of(&r->rows[i], now);
			if (rows && f->row)
				rows[n] = *f->row;
			const struct job_log_row *all = rows ? rows : f->row;
			size_t n_all = rows ? n + (f->row != NULL) : (f->row != NULL);
			if (q == 0) {
				switch (f->kind) {
				case FINAL_DONE:
					q = job_finish_done_started(r->db, &r->lease, f->bytes, &f->stats, started, all,
								    n_all, n_started);
					break;
				case FINAL_HAND_BACK:
					q = job_hand_back_rows(r->db, &r->lease, f->reason, all, n_all);
					break;
				default:
					q = job_finish_fail_rows(r->db, &r->lease, f->code, f->reason, all, n_all,
								 r->a.cfg->retry.delays, r->a.cfg->retry.n_delays,
								 &f->state);
					break;
				}
			}
			if (q >= 0 && n)
				rows_written(r, first, n);
			if ((q == -EIO || q == -EPERM || q == -EINVAL) && n) {
				/* a row of the queue refused: the rows on their own (dropping what the
				 * server refuses), then the end again */
				q = flush_rows(r, true, true);
				if (q == 0)
					continue;
			}
		}
		if (q >= 0) {
			if (warned)
				log_notice("job %lld: end recorded after the database came back",
					   (long long)r->job->id);
			return 0;
		}
		if (q == -ESTALE && f->kind == FINAL_DONE) {
			/* A commit can succeed while its answer is lost with the connection (this
			 * thread's retry, or db_transaction's own run again on a new connection): the
			 * next run then finds the job no longer processing. Done at this attempt, it was
			 * this end: the stick holds the unit and must not be taken for another. */
			bool ours = false;
			if (job_done_by(r->db, &r->lease, &ours) == 0 && ours) {
				log_notice("job %lld: end recorded (its commit went through as the connection dropped)",
					   (long long)r->job->id);
				return 0;
			}
		}
		if (q == -ESTALE) {
			mark_lost(r, "its end is not recorded: no longer ours (taken by the reaper or an operator)");
			return q;
		}
		if (q != -ENOTCONN && q != -EAGAIN && db_is_up(r->db)) {
			log_error("job %lld: cannot record its end: %s; the reaper will return it",
				  (long long)r->job->id, db_error(r->db));
			return q;
		}
		if (!warned)
			log_warning("job %lld: cannot record its end yet (%s); retrying", (long long)r->job->id,
				    db_error(r->db));
		warned = true;
		if (wait_or_stop(r, backoff)) {
			log_error("job %lld: daemon stopping before its end could be recorded; the reaper will return it",
				  (long long)r->job->id);
			return q;
		}
		backoff = MIN(backoff * 2, 1.0);
		if (q == -ENOTCONN || !db_is_up(r->db))
			(void)db_reconnect(r->db, NULL);
	}
}

/* Why dev_open refused a slot that someone else holds: q is -EAGAIN (a regular file under
 * another writer's flock) or -EBUSY (a block device opened exclusively elsewhere, or mounted).
 * malloc'd; NULL when out of memory. */
static char *in_use_reason(const char *path, int q)
{
	char *m = NULL;
	if (q == -EAGAIN) {
		_cleanup_free_ char *who = NULL;
		struct stat st;
		if (stat(path, &st) < 0 || usb_file_lock_holder(NULL, st.st_dev, st.st_ino, &who) <= 0)
			who = NULL;
		if (asprintf(&m, "%s is in use: locked by %s", path, who ? who : "another process") < 0)
			m = NULL;
	} else if (asprintf(&m, "%s is in use (opened exclusively by another process, or mounted)", path) < 0) {
		m = NULL;
	}
	return m;
}

/* A regular-file slot, checked on the open descriptor (its st_dev and st_ino, not its name):
 * it must not back a loop device. 0; -EPERM with *ret_msg; -ENOMEM. */
static int file_slot_check(struct dev *d, char **ret_msg)
{
	_cleanup_free_ char *reason = NULL;
	struct stat st;
	int q = dev_stat(d, &st);
	if (q < 0)
		return 0; /* closed under us: the first write says so */
	q = usb_file_backs_loop(NULL, st.st_dev, st.st_ino, &reason);
	if (q == -ENOMEM)
		return q;
	if (q == -EPERM) {
		if (asprintf(ret_msg, "%s %s", dev_name(d), reason) < 0)
			return -ENOMEM;
		return -EPERM;
	}
	return 0; /* loop devices not listable: the listing judged it a moment ago */
}

/* The slot's connection when the caller handed one over (db/db.h checks it as it is used: a
 * broken one reconnects like any other), else a new one. */
static int connect_db(struct runner *r)
{
	_cleanup_free_ char *err = NULL;
	if (r->db)
		return 0;
	int q = db_connect(r->a.cfg, &r->db, &err);
	if (q < 0)
		log_error("slot %s: job %lld: %s", r->slot, (long long)r->job->id, err ? err : "cannot connect");
	return q;
}

/* What one attempt holds, released by attempt_done() whatever happened. */
struct attempt {
	struct job_spec spec;
	struct write_opts wo;
	struct stage_ctx ctx;
	struct usbreset *usbreset;
};

static void attempt_done(struct attempt *a)
{
	stage_ctx_done(&a->ctx);
	a->ctx.dev = writer_dev_free(a->ctx.dev); /* a stalled write thread may still hold it */
	a->usbreset = usbreset_free(a->usbreset);
	spec_done(&a->spec);
}

/* The attempt: open the stick, run the stages, record the end once. */
static void run_attempt(struct runner *r, struct attempt *a)
{
	enum uf_code code = UFC_NONE;
	bool in_use = false;
	_cleanup_free_ char *msg = NULL;
	enum stage_id st = STAGE_VALIDATION;
	char line[512];

	if (connect_db(r) < 0) {
		/* Nothing written: the job stays processing under our name until the reaper
		 * returns it; the daemon's main loop will reconnect. */
		atomic_store(&r->lost, true);
		return;
	}
	r->last_beat = mono_s(); /* the claim was the first beat */
	int tq = pthread_create(&r->dbthread, NULL, dbthread_main, r);
	if (tq != 0) {
		code = UFC_PROCESSING_FAILED;
		if (asprintf(&msg, "cannot start the slot's database thread: %s", strerror(tq)) < 0)
			msg = NULL;
	}
	r->dbthread_started = tq == 0;
	snprintf(line, sizeof(line), "attempt %d/%d on slot %s (%s%s%s)", r->job->attempt, r->job->max_attempts,
		 r->slot, r->devpath, r->serial ? ", serial " : "", r->serial ? r->serial : "");
	log_row(r, "info", STAGE_PENDING, "system", line, UFC_NONE, NULL);
	if (r->job->resume_other_stick)
		log_row(r, "info", STAGE_PENDING, "system",
			"the interrupted attempt was on another stick: this one is written from the start", UFC_NONE,
			NULL);

	if (code == UFC_NONE)
		code = build_spec(r, &a->spec, &msg);
	if (code == UFC_NONE) {
		int q = dev_open(r->devpath, DEV_OPEN_WRITE, &a->ctx.dev);
		if (q == -EAGAIN || q == -EBUSY) {
			/* Someone else is writing it: neither the stick's fault nor the job's. */
			in_use = true;
			code = UFC_DEVICE_UNSAFE; /* not recorded: the job is handed back */
			msg = in_use_reason(r->devpath, q);
		} else if (q < 0) {
			code = dev_open_error_code(q, DEV_OPEN_WRITE);
			msg = str_printf(code == UFC_DEVICE_READ_ONLY ? "read-only: cannot open %s for writing: %s"
								      : "cannot open %s: %s",
					 r->devpath, strerror(-q));
		} else if (!a->ctx.dev->is_block && (q = file_slot_check(a->ctx.dev, &msg)) != 0) {
			/* checked again on the descriptor: the listing saw the path a moment ago */
			code = q == -ENOMEM ? UFC_PROCESSING_FAILED : UFC_DEVICE_UNSAFE;
		} else if (r->a.cfg->usb.mode == USB_MODE_UDEV && a->wo.reset_before_verify && a->ctx.dev->is_block) {
			/* the read-back must come from flash, not from the stick's own cache */
			q = usbreset_install(a->ctx.dev, 30000, &a->usbreset);
			if (q < 0)
				log_warning("slot %s: no USB reset before verification (%s); relying on O_DIRECT and dropped caches",
					    r->slot, strerror(-q));
		}
	}
	for (st = STAGE_VALIDATION; code == UFC_NONE && st <= STAGE_VERIFICATION; st++) {
		if (st == STAGE_VERIFICATION && !a->wo.verify)
			break;
		/* job.started: the stick's own speed is not known before it is written (the probe
		 * times scattered 4 KiB writes and a reset, not a sequential write), so the estimate
		 * is its serial's history or the kiosk's recent average (db/jobs.h job_enter_writing) */
		struct job_started started = { .bytes_to_write = a->ctx.bytes_total, .verify = a->wo.verify };
		enter_stage(r, st, st == STAGE_WRITING ? &started : NULL);
		double t0 = mono_s();
		code = stage_run(st, &a->ctx);
		if (st == STAGE_SELECTION && code == UFC_NONE) {
			pthread_mutex_lock(&r->lock);
			r->bytes_total = a->ctx.bytes_total;
			pthread_mutex_unlock(&r->lock);
			/* the choice must be on record before a byte of it is written: a retry reuses it and
			 * verification checks it */
			if (!a->spec.items_reused && a->spec.n_items && !atomic_load(&r->lost)) {
				pthread_mutex_lock(&r->dblock);
				int q = job_items_store(r->db, &r->lease, a->spec.items, a->spec.n_items);
				if (q == -ESTALE)
					mark_lost(r, "no longer ours when its content choice was to be recorded");
				if (q < 0) {
					code = q == -ESTALE ? UFC_CANCELLED : UFC_DB_UNAVAILABLE;
					if (asprintf(&msg, "cannot record the chosen content: %s", db_error(r->db)) < 0)
						msg = NULL;
				}
				pthread_mutex_unlock(&r->dblock);
			}
		}
		if (code == UFC_NONE) {
			pthread_mutex_lock(&r->lock);
			uint64_t done = r->done;
			pthread_mutex_unlock(&r->lock);
			json_t *d = json_pack("{s:f, s:I}", "seconds", mono_s() - t0, "bytes", (json_int_t)done);
			_cleanup_free_ char *dj = d ? json_dumps(d, JSON_COMPACT) : NULL;
			json_decref(d);
			snprintf(line, sizeof(line), "%s done", stage_name(st));
			log_row(r, "info", st, "stage", line, UFC_NONE, dj);
			log_struct(LOG_LVL_INFO, LOG_FIELDS(.message_id = LOG_MID_STAGE_DONE), "job %lld: %s in %.1f s",
				   (long long)r->job->id, line, mono_s() - t0);
		} else {
			msg = msg ? msg : (a->ctx.message ? strdup(a->ctx.message) : NULL);
			break;
		}
	}
	pthread_mutex_lock(&r->lock);
	stage_ended_locked(r);
	pthread_mutex_unlock(&r->lock);
	if (st > STAGE_VERIFICATION || (st == STAGE_VERIFICATION && !a->wo.verify))
		st = STAGE_DONE;
	log_context_set_stage(stage_name(st)); /* where the attempt ended */
	/* A slot file deleted (or renamed over) while it was written holds the unit in an inode no
	 * one will ever read, a detached loop device or a replaced node the same: not done. */
	if (code == UFC_NONE && a->ctx.dev && dev_gone(a->ctx.dev, 0)) {
		code = UFC_DEVICE_GONE;
		msg = str_printf(dev_unlinked(a->ctx.dev)
					 ? "%s was deleted during the job: nothing written to it is on any stick"
					 : "%s went away during the job: what was written cannot be read back",
				 r->devpath);
	}

	/* A stick pulled mid-write fails its in-flight I/O with EIO before the kernel deletes the
	 * disk and the hotplug event comes: in udev mode an I/O error waits (bounded) for that
	 * event before it is taken for a failing stick. */
	if ((code == UFC_WRITE_IO || code == UFC_VERIFY_MISMATCH) && r->a.cfg->usb.mode == USB_MODE_UDEV)
		wait_gone(r, 3.0);
	/* Why did it stop? A stop request or a lost job outranks what the stage saw. */
	bool gone = atomic_load(&r->gone);
	if (code != UFC_NONE && gone && !atomic_load(&r->op_cancel)) {
		code = UFC_DEVICE_GONE;
		free(msg);
		msg = NULL;
		if (asprintf(&msg, "the stick was removed from slot %s during %s", r->slot, stage_name(st)) < 0)
			msg = NULL;
	}
	bool hand_back = in_use || (code == UFC_CANCELLED && !atomic_load(&r->op_cancel) && atomic_load(&r->stop));

	if (r->dbthread_started) {
		pthread_mutex_lock(&r->lock);
		r->dbthread_quit = true;
		pthread_cond_signal(&r->tick_cond);
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->dbthread, NULL);
	}

	/* From here on the runner thread is the connection's only user. */
	if (atomic_load(&r->lost))
		return;
	if (code == UFC_NONE) {
		struct job_log_row row = {
			.level = "info", .stage = "done", .category = "stage", .message = "job done"
		};
		struct final fin = { .kind = FINAL_DONE,
				     .row = &row,
				     .bytes = a->ctx.bytes_written ? a->ctx.bytes_written : a->ctx.bytes_total };
		pthread_mutex_lock(&r->lock);
		fin.stats = (struct job_done_stats){ .attempt_seconds = mono_s() - r->attempt_start,
						     .write_seconds = r->write_s,
						     .write_bytes = r->bytes_written,
						     .verify_seconds = r->verify_s,
						     .verify_bytes = r->verified };
		pthread_mutex_unlock(&r->lock);
		r->stage = STAGE_DONE;
		if (finish(r, &fin) == 0) {
			log_struct(LOG_LVL_INFO, LOG_FIELDS(.message_id = LOG_MID_JOB_DONE),
				   "job %lld: done on slot %s", (long long)r->job->id, r->slot);
			r->ended_done = true;
		}
	} else if (in_use) {
		snprintf(line, sizeof(line), "slot %s: %s; job handed back, attempt not spent", r->slot,
			 msg ? msg : "in use");
		struct job_log_row row = { .level = "warn",
					   .stage = stage_name(st),
					   .category = "device",
					   .message = line,
					   .error_code = NULL };
		struct final fin = { .kind = FINAL_HAND_BACK, .row = &row, .reason = msg ? msg : "slot in use" };
		if (finish(r, &fin) == 0)
			log_struct(LOG_LVL_NOTICE, LOG_FIELDS(.message_id = LOG_MID_JOB_HANDED_BACK),
				   "job %lld: slot %s: %s; handed back, attempt not spent", (long long)r->job->id,
				   r->slot, msg ? msg : "in use");
		r->in_use = true;
	} else if (hand_back) {
		struct job_log_row row = { .level = "info",
					   .stage = stage_name(st),
					   .category = "system",
					   .message = "daemon stopping: job handed back, attempt not spent" };
		struct final fin = { .kind = FINAL_HAND_BACK, .row = &row, .reason = "daemon stopped" };
		if (finish(r, &fin) == 0)
			log_struct(LOG_LVL_NOTICE, LOG_FIELDS(.message_id = LOG_MID_JOB_HANDED_BACK),
				   "job %lld: daemon stopping: handed back on slot %s, attempt not spent",
				   (long long)r->job->id, r->slot);
	} else {
		const char *cname = uf_code_name(code);
		/* one error row per failure, written here: the failing stage's details (its offset,
		 * errno, probe verdict…) when the failure is the stage's, and where it happened */
		json_auto_t *d = a->ctx.details && a->ctx.code == code ? json_loads(a->ctx.details, 0, NULL) : NULL;
		if (!json_is_object(d)) {
			json_decref(d);
			d = json_object();
		}
		if (d) {
			json_object_set_new(d, "slot", json_string(r->slot));
			json_object_set_new(d, "device", r->devpath ? json_string(r->devpath) : json_null());
			json_object_set_new(d, "bad_offset", json_integer((json_int_t)a->ctx.bad_offset));
		}
		_cleanup_free_ char *dj = d ? json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		/* the code is the row's error_code: the message gives the reason, never the code again */
		snprintf(line, sizeof(line), "%s", msg && *msg ? msg : "failed (no reason was given)");
		struct job_log_row row = { .level = code == UFC_CANCELLED ? "warn" : "error",
					   .stage = stage_name(st),
					   .category = uf_code_class(code) == UFC_CLASS_BAD_STICK ? "device" : "stage",
					   .message = line,
					   .error_code = cname,
					   .details_json = dj };
		struct final fin = { .kind = FINAL_FAIL,
				     .row = &row,
				     .code = code,
				     .reason = msg ? msg : cname,
				     .state = _JOB_STATE_INVALID };
		if (finish(r, &fin) == 0)
			log_struct(LOG_LVL_NOTICE,
				   LOG_FIELDS(.message_id =
						      fin.state == JOB_STATE_RETRY || fin.state == JOB_STATE_QUEUED
							      ? LOG_MID_JOB_RETRY
							      : LOG_MID_JOB_FAILED,
					      .error_code = cname),
				   "job %lld: %s on slot %s (%s) -> %s", (long long)r->job->id, cname, r->slot,
				   msg ? msg : "", job_state_name(fin.state) ? job_state_name(fin.state) : "?");
		if (uf_code_class(code) == UFC_CLASS_BAD_STICK) {
			r->bad_stick = true;
			r->bad_reason = strdup_or_null(msg ? msg : cname);
		}
		r->ended_gone = code == UFC_DEVICE_GONE;
	}
}

static void *runner_main(void *p)
{
	struct runner *r = p;
	struct attempt a = { .spec = { 0 } };
	write_opts_from_config(r->a.cfg, &a.wo);
	a.ctx = (struct stage_ctx){
		.job = &a.spec,
		.opts = &a.wo,
		.cancel = &r->cancel,
		.sink = { .userdata = r, .progress = sink_progress, .log = sink_log, .checkpoint = sink_checkpoint },
		.resume_json = r->job->resume_state,
	};
	log_context_set(&r->logctx);
	double t0 = mono_s();
	r->attempt_start = t0;
	board_job_start(r->a.board, r->slot, r->job->id, r->job->order_number, r->job->unit_index, r->job->attempt);
	run_attempt(r, &a);
	pthread_mutex_lock(&r->lock);
	board_job_end(r->a.board, r->slot, r->ended_done, mono_s() - t0, r->bytes_written, r->write_s, r->verified,
		      r->verify_s);
	pthread_mutex_unlock(&r->lock);
	attempt_done(&a);
	atomic_store(&r->finished, true);
	uint64_t one = 1;
	if (write(r->a.notify_fd, &one, sizeof(one)) < 0)
		log_debug_errno(errno, "eventfd write: %m");
	log_context_set(NULL);
	return NULL;
}

static void runner_free(struct runner *r)
{
	db_close(r->db);
	pthread_mutex_lock(&r->lock);
	drop_rows_locked(r);
	pthread_mutex_unlock(&r->lock);
	free(r->rows);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->dblock);
	pthread_cond_destroy(&r->tick_cond);
	pthread_cond_destroy(&r->throttle_cond);
	free(r->slot);
	free(r->devpath);
	free(r->serial);
	free(r->worker_id);
	free(r->bad_reason);
	free(r);
}

int runner_start(const struct runner_args *a, struct runner **ret)
{
	struct runner *r = calloc(1, sizeof(*r));
	if (!r) {
		db_close(a->db);
		return -ENOMEM;
	}
	r->a = *a;
	r->db = a->db;
	r->a.db = NULL;
	r->slot = strdup(a->slot);
	r->devpath = strdup(a->devpath);
	r->serial = strdup_or_null(a->serial);
	r->worker_id = strdup(a->worker_id);
	r->rows = calloc(MAX_PENDING_ROWS, sizeof(*r->rows));
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->dblock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->tick_cond, &ca);
	pthread_cond_init(&r->throttle_cond, &ca);
	pthread_condattr_destroy(&ca);
	if (!r->slot || !r->devpath || (a->serial && !r->serial) || !r->worker_id || !r->rows) {
		runner_free(r);
		return -ENOMEM;
	}
	r->a.slot = r->slot;
	r->a.devpath = r->devpath;
	r->a.serial = r->serial;
	r->a.worker_id = r->worker_id;
	r->job = a->job;
	r->lease = JOB_LEASE(a->job, r->worker_id);
	r->logctx = (struct log_fields){ .job_id = a->job->id,
					 .order = a->job->order_number,
					 .unit = a->job->unit_index,
					 .has_unit = true,
					 .attempt = a->job->attempt,
					 .slot = r->slot,
					 .device_serial = r->serial };
	if (a->job->cancel_requested) {
		atomic_store(&r->op_cancel, true);
		atomic_store(&r->cancel, true);
	}
	int q = pthread_create(&r->thread, NULL, runner_main, r);
	if (q) {
		runner_free(r); /* the job stays the caller's */
		return -q;
	}
	*ret = r;
	return 0;
}

void runner_request_stop(struct runner *r)
{
	atomic_store(&r->stop, true);
	atomic_store(&r->cancel, true);
	pthread_mutex_lock(&r->lock);
	pthread_cond_broadcast(&r->throttle_cond);
	pthread_mutex_unlock(&r->lock);
}

void runner_device_gone(struct runner *r)
{
	atomic_store(&r->gone, true);
	atomic_store(&r->cancel, true);
	pthread_mutex_lock(&r->lock);
	pthread_cond_broadcast(&r->throttle_cond);
	pthread_mutex_unlock(&r->lock);
}

bool runner_finished(struct runner *r) { return atomic_load(&r->finished); }
int64_t runner_job_id(struct runner *r) { return r->job->id; }
const struct log_fields *runner_log_fields(const struct runner *r) { return &r->logctx; }

void runner_join(struct runner *r, struct runner_result *ret)
{
	pthread_join(r->thread, NULL);
	if (ret)
		*ret = (struct runner_result){ .bad_stick = r->bad_stick,
					       .done = r->ended_done,
					       .gone = r->ended_gone,
					       .in_use = r->in_use,
					       .bad_reason = TAKE_PTR(r->bad_reason),
					       /* up and idle (every transaction of the attempt has ended) */
					       .db = r->db && db_is_up(r->db) && !r->db_down ? TAKE_PTR(r->db) : NULL };
	claimed_job_free(r->job);
	runner_free(r);
}

bool runner_lost(struct runner *r) { return atomic_load(&r->lost); }
