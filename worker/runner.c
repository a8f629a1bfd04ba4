/* Implementation of worker/runner.h. */
#include "worker/runner.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/content.h"
#include "stages/stage.h"
#include "stages/writer.h"
#include "usb/usbdev.h"
#include "util/log.h"
#include "util/macro.h"

/* Global progress range of each stage (DESIGN/issue: 0–10, 10–30, 30–80, 80–100). */
static const int range_lo[_STAGE_MAX] = {
	[STAGE_VALIDATION] = 0, [STAGE_SELECTION] = 10, [STAGE_WRITING] = 30, [STAGE_VERIFICATION] = 80, [STAGE_DONE] = 100
};
static const int range_hi[_STAGE_MAX] = {
	[STAGE_VALIDATION] = 10, [STAGE_SELECTION] = 30, [STAGE_WRITING] = 80, [STAGE_VERIFICATION] = 100, [STAGE_DONE] = 100
};

struct runner {
	pthread_t thread, ticker;
	struct runner_args a;
	char *slot, *devpath, *serial, *worker_id;
	struct claimed_job *job;
	struct db *db;
	pthread_mutex_t lock; /* guards db and the progress state below */
	pthread_cond_t tick_cond;
	pthread_cond_t throttle_cond; /* the writer (write.max_rate) and finish()'s retries wait here;
	                               * broadcast on a stop request and when the stick is gone */
	bool ticker_quit;

	atomic_bool cancel;    /* the pipeline's flag: any reason to stop */
	atomic_bool stop;      /* daemon shutdown: hand back */
	atomic_bool op_cancel; /* operator cancel seen in the database */
	atomic_bool lost;      /* job no longer ours, or database lost too long: write nothing more */
	atomic_bool finished;
	atomic_bool gone; /* the stick was pulled (hotplug) */

	/* progress state (under lock) */
	enum stage_id stage;
	uint64_t done, total, bytes_total, bytes_written;
	int last_decile[_STAGE_MAX];
	struct timespec stage_start, last_ok_beat;
	double last_beat; /* monotonic time of the last heartbeat UPDATE tried */
	bool log_warned;  /* a failed log row was reported; reset when one is written again */
	double rate;	  /* bytes/s in the current stage */
	bool bad_stick;
	bool ended_done;	 /* the job ended done (recorded) */
	bool stage_logged_error; /* the stage wrote its own error row for this failure */
};

static double now_mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double ts_to_d(const struct timespec *t) { return (double)t->tv_sec + (double)t->tv_nsec / 1e9; }

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

/* Write a log row (caller holds the lock). Failures are logged to stderr only: a lost row must
 * not fail the job. */
static void log_row_locked(struct runner *r, const char *level, enum stage_id st, const char *category, const char *msg,
			   enum uf_code code, const char *details)
{
	if (atomic_load(&r->lost))
		return;
	int q = job_log(r->db, r->job->id, r->job->attempt, level, stage_name(st), category, msg, uf_code_name(code),
			details);
	if (q >= 0)
		r->log_warned = false;
	else if (!r->log_warned) { /* once per outage: the heartbeat path says the rest */
		log_warning("job %lld: cannot write log rows (first lost: %s): %s", (long long)r->job->id, msg,
			    db_error(r->db));
		r->log_warned = true;
	}
}

static void log_row(struct runner *r, const char *level, enum stage_id st, const char *category, const char *msg,
		    enum uf_code code, const char *details)
{
	pthread_mutex_lock(&r->lock);
	log_row_locked(r, level, st, category, msg, code, details);
	pthread_mutex_unlock(&r->lock);
}

static int global_progress(struct runner *r)
{
	int lo = range_lo[r->stage], hi = range_hi[r->stage];
	if (!r->total)
		return lo;
	double f = (double)r->done / (double)r->total;
	if (f > 1)
		f = 1;
	return lo + (int)floor(f * (hi - lo));
}

/* Write heartbeat + progress (caller holds the lock). */
static void beat_locked(struct runner *r)
{
	if (atomic_load(&r->lost))
		return;
	r->last_beat = now_mono();
	double el = now_mono() - ts_to_d(&r->stage_start);
	double eta = (r->rate > 0 && r->total > r->done) ? (double)(r->total - r->done) / r->rate : 0;
	json_t *d = json_pack("{s:s, s:I, s:I, s:f, s:f, s:f}", "stage", stage_name(r->stage), "bytes_done",
			      (json_int_t)r->done, "bytes_total", (json_int_t)r->total, "rate_bytes_per_s", r->rate,
			      "eta_seconds", eta, "stage_elapsed_seconds", el);
	_cleanup_free_ char *dj = json_dumps(d, JSON_COMPACT);
	json_decref(d);
	bool cancel = false;
	int q = job_progress(r->db, r->job->id, r->worker_id, stage_name(r->stage), global_progress(r), dj,
			     r->bytes_total, r->bytes_written, &cancel);
	if (q == 0) {
		clock_gettime(CLOCK_MONOTONIC, &r->last_ok_beat);
		if (cancel && !atomic_load(&r->op_cancel)) {
			atomic_store(&r->op_cancel, true);
			atomic_store(&r->cancel, true);
			pthread_cond_broadcast(&r->throttle_cond);
		}
		return;
	}
	if (q == -ESTALE) {
		log_warning("job %lld: no longer ours (rescued by the reaper or changed by an operator); stopping",
			    (long long)r->job->id);
		atomic_store(&r->lost, true);
		atomic_store(&r->cancel, true);
		return;
	}
	/* Database trouble: reconnect; if the heartbeat cannot be written for half the stuck
	 * timeout, stop before the reaper hands the job to someone else, so it never runs twice. */
	_cleanup_free_ char *err = NULL;
	if (q == -ENOTCONN)
		(void)db_reconnect(r->db, &err);
	if (now_mono() - ts_to_d(&r->last_ok_beat) > r->a.cfg->stuck.processing_timeout / 2) {
		log_error("job %lld: heartbeat not written for %.0f s (database unavailable); stopping the job",
			  (long long)r->job->id, now_mono() - ts_to_d(&r->last_ok_beat));
		atomic_store(&r->lost, true);
		atomic_store(&r->cancel, true);
	}
}

static void *ticker_main(void *p)
{
	struct runner *r = p;
	/* Heartbeat and progress ride on one UPDATE, once a second (DESIGN: progress at most once
	 * a second); worker.heartbeat_interval paces the workers row. */
	double interval = 1.0;
	pthread_mutex_lock(&r->lock);
	while (!r->ticker_quit) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		double t = ts_to_d(&until) + interval;
		until.tv_sec = (time_t)t;
		until.tv_nsec = (long)((t - floor(t)) * 1e9);
		int w = pthread_cond_timedwait(&r->tick_cond, &r->lock, &until);
		if (r->ticker_quit)
			break;
		if (w == ETIMEDOUT)
			beat_locked(r);
	}
	pthread_mutex_unlock(&r->lock);
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
	double el = now_mono() - ts_to_d(&r->stage_start);
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
		_cleanup_free_ char *dj = json_dumps(d, JSON_COMPACT);
		json_decref(d);
		log_row_locked(r, "info", st, "progress", msg, UFC_NONE, dj);
	}
	/* write.max_rate: hold the writer until the rate is respected (or a stop comes). */
	uint64_t max_rate = r->a.cfg->write.max_rate;
	if (max_rate && st == STAGE_WRITING) {
		double due = ts_to_d(&r->stage_start) + (double)done / (double)max_rate;
		while (!atomic_load(&r->cancel) && now_mono() < due) {
			struct timespec until;
			double wake = MIN(due, now_mono() + 0.2);
			until.tv_sec = (time_t)wake;
			until.tv_nsec = (long)((wake - floor(wake)) * 1e9);
			pthread_cond_timedwait(&r->throttle_cond, &r->lock, &until);
		}
	}
	pthread_mutex_unlock(&r->lock);
}

static void sink_log(void *ud, enum log_level lvl, enum stage_id st, const char *category, enum uf_code code,
		     const char *details, const char *message)
{
	struct runner *r = ud;
	if (lvl <= LOG_LVL_ERR)
		r->stage_logged_error = true;
	log_row(r, level_name(lvl), st, category, message, code, details);
}

/* The writer's resume state after each periodic sync: a retry on this job continues from it. */
static void sink_checkpoint(void *ud, const char *resume_json)
{
	struct runner *r = ud;
	pthread_mutex_lock(&r->lock);
	if (!atomic_load(&r->lost) && job_resume_store(r->db, r->job->id, r->worker_id, resume_json) < 0)
		log_warning("job %lld: cannot store the resume state: %s", (long long)r->job->id, db_error(r->db));
	pthread_mutex_unlock(&r->lock);
}

static void enter_stage(struct runner *r, enum stage_id st)
{
	pthread_mutex_lock(&r->lock);
	r->stage = st;
	r->done = 0;
	r->total = 0;
	r->rate = 0;
	clock_gettime(CLOCK_MONOTONIC, &r->stage_start);
	/* the new stage shows at once unless a beat went out less than a second ago (then the
	 * ticker's next beat carries it): progress is written at most once a second */
	if (now_mono() - r->last_beat >= 1.0)
		beat_locked(r);
	char msg[64];
	snprintf(msg, sizeof(msg), "%s started", stage_name(st));
	log_row_locked(r, "info", st, "stage", msg, UFC_NONE, NULL);
	pthread_mutex_unlock(&r->lock);
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
		return UFC_NONE;
	}
	spec->content_root = strdup(r->a.cfg->content.root);
	json_error_t e;
	json_t *cs = json_loads(j->content_spec ? j->content_spec : "", 0, &e);
	json_t *cats = json_object_get(cs, "categories"), *ids = json_object_get(cs, "items");
	if (!cs || (cats && !json_is_array(cats)) || (ids && !json_is_array(ids))) {
		json_decref(cs);
		if (asprintf(ret_msg, "order content_spec is not {\"categories\": [...], \"items\": [...]}") < 0)
			*ret_msg = NULL;
		return UFC_ORDER_INVALID;
	}
	size_t nc = json_array_size(cats);
	spec->categories = calloc(nc + 1, sizeof(char *));
	for (size_t i = 0; i < nc; i++)
		spec->categories[i] = strdup(json_string_value(json_array_get(cats, i)) ?: "");
	spec->n_item_ids = json_array_size(ids);
	spec->item_ids = calloc(spec->n_item_ids + 1, sizeof(int64_t));
	for (size_t i = 0; i < spec->n_item_ids; i++)
		spec->item_ids[i] = json_integer_value(json_array_get(ids, i));
	json_decref(cs);
	pthread_mutex_lock(&r->lock);
	int q = job_items_load(r->db, j->id, &spec->items, &spec->n_items);
	if (q >= 0)
		q = content_load_candidates(r->db, spec->categories, spec->item_ids, spec->n_item_ids, &spec->library,
					    &spec->n_library);
	pthread_mutex_unlock(&r->lock);
	if (q < 0) {
		if (asprintf(ret_msg, "cannot load the content of the order: %s", db_error(r->db)) < 0)
			*ret_msg = NULL;
		return UFC_DB_UNAVAILABLE;
	}
	spec->items_reused = spec->n_items > 0;
	return UFC_NONE;
}

static void spec_done(struct job_spec *s)
{
	free(s->image_path);
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
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	double t = ts_to_d(&until) + seconds;
	until.tv_sec = (time_t)t;
	until.tv_nsec = (long)((t - floor(t)) * 1e9);
	pthread_mutex_lock(&r->lock);
	while (!atomic_load(&r->stop) && pthread_cond_timedwait(&r->throttle_cond, &r->lock, &until) == 0)
		;
	pthread_mutex_unlock(&r->lock);
	return atomic_load(&r->stop);
}

enum final_kind { FINAL_DONE, FINAL_FAIL, FINAL_HAND_BACK };

struct final {
	enum final_kind kind;
	const struct job_log_row *row;
	uint64_t bytes;	    /* done */
	enum uf_code code;  /* fail */
	const char *reason; /* fail, hand back */
	const char *status; /* out (fail): where the job went */
};

/* Record how the job ended: one guarded transaction with its log row (db/jobs.h). Database
 * trouble (a lost connection, or deadlocks beyond db_transaction's own retries) does not lose
 * the result: reconnect and try again, backing off, until it lands, the job turns out not to
 * be ours (-ESTALE: the reaper or an operator took it), or half the stuck timeout has passed
 * since our last heartbeat; from then on the reaper may hand the job to another worker, so
 * we must not write for it any more (it is then retried, never run twice at once). A stop
 * request ends the waiting too (the reaper returns the job). Returns 0 when recorded. */
static int finish(struct runner *r, struct final *f)
{
	const double deadline = ts_to_d(&r->last_ok_beat) + r->a.cfg->stuck.processing_timeout / 2;
	double backoff = 0.25;
	bool warned = false;

	for (;;) {
		int q;
		switch (f->kind) {
		case FINAL_DONE:
			q = job_finish_done(r->db, r->job->id, r->worker_id, f->bytes, f->row);
			break;
		case FINAL_HAND_BACK:
			q = job_hand_back(r->db, r->job->id, r->worker_id, f->reason, f->row);
			break;
		default:
			q = job_finish_fail(r->db, r->job->id, r->worker_id, f->code, f->reason, f->row,
					    r->a.cfg->retry.delays, r->a.cfg->retry.n_delays, &f->status);
			break;
		}
		if (q >= 0) {
			if (warned)
				log_notice("job %lld: end recorded after the database came back",
					   (long long)r->job->id);
			return 0;
		}
		if (q == -ESTALE && warned && f->kind == FINAL_DONE) {
			/* A commit can succeed while its answer is lost with the connection: the retry
			 * then finds the job no longer processing. Only this transition makes it done. */
			int64_t done = 0;
			if (db_query_i64(r->db, &done, "SELECT status = 'done' FROM processing_jobs WHERE id = ?",
					 DB_I64(r->job->id), DB_END) == 0 &&
			    done) {
				log_notice("job %lld: end recorded (its commit went through as the connection dropped)",
					   (long long)r->job->id);
				return 0;
			}
		}
		if (q == -ESTALE) {
			log_warning("job %lld: not recorded: the job is no longer ours (rescued by the reaper or changed "
				    "by an operator)",
				    (long long)r->job->id);
			return q;
		}
		if ((q != -ENOTCONN && q != -EAGAIN) || now_mono() + backoff > deadline) {
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
		backoff = MIN(backoff * 2, 4.0);
		if (q == -ENOTCONN) {
			_cleanup_free_ char *err = NULL;
			(void)db_reconnect(r->db, &err);
		}
	}
}

static int connect_db(struct runner *r)
{
	_cleanup_free_ char *err = NULL;
	int q = db_connect(r->a.cfg, &r->db, &err);
	if (q < 0)
		log_error("slot %s: job %lld: %s", r->slot, (long long)r->job->id, err ? err : "cannot connect");
	return q;
}

static void *runner_main(void *p)
{
	struct runner *r = p;
	struct job_spec spec = { 0 };
	struct write_opts wo;
	write_opts_from_config(r->a.cfg, &wo);
	struct stage_ctx ctx = {
		.job = &spec,
		.opts = &wo,
		.cancel = &r->cancel,
		.sink = { .userdata = r, .progress = sink_progress, .log = sink_log, .checkpoint = sink_checkpoint },
		.resume_json = r->job->resume_state,
	};
	enum uf_code code = UFC_NONE;
	struct usbdev_reset *usbreset = NULL;
	_cleanup_free_ char *msg = NULL;
	enum stage_id st = STAGE_VALIDATION;
	char line[512];

	if (connect_db(r) < 0) {
		/* Nothing written: the job stays processing under our name until the reaper
		 * returns it; the daemon's main loop will reconnect. */
		atomic_store(&r->lost, true);
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &r->last_ok_beat);
	pthread_create(&r->ticker, NULL, ticker_main, r);
	snprintf(line, sizeof(line), "attempt %d/%d on slot %s (%s%s%s)", r->job->attempt, r->job->max_attempts,
		 r->slot, r->devpath, r->serial ? ", serial " : "", r->serial ? r->serial : "");
	log_row(r, "info", STAGE_PENDING, "system", line, UFC_NONE, NULL);
	if (r->job->resume_other_stick)
		log_row(r, "info", STAGE_PENDING, "system",
			"the interrupted attempt was on another stick: this one is written from the start", UFC_NONE,
			NULL);

	code = build_spec(r, &spec, &msg);
	if (code == UFC_NONE) {
		int q = dev_open(r->devpath, DEV_OPEN_WRITE, &ctx.dev);
		if (q < 0) {
			code = q == -EROFS			      ? UFC_DEVICE_READ_ONLY
			       : (q == -EBUSY)			      ? UFC_DEVICE_UNSAFE
			       : dev_errno_is_gone(q) || q == -ENOENT ? UFC_DEVICE_GONE
								      : UFC_WRITE_IO;
			if (asprintf(&msg, "cannot open %s: %s", r->devpath, strerror(-q)) < 0)
				msg = NULL;
		} else if (r->a.cfg->usb.mode == USB_MODE_UDEV && wo.reset_before_verify && ctx.dev->is_block) {
			/* the read-back must come from flash, not from the stick's own cache */
			q = usbdev_install_reset_hook(ctx.dev, 30000, &usbreset);
			if (q < 0)
				log_warning("slot %s: no USB reset before verification (%s); relying on O_DIRECT and dropped caches",
					    r->slot, strerror(-q));
		}
	}
	for (st = STAGE_VALIDATION; code == UFC_NONE && st <= STAGE_VERIFICATION; st++) {
		if (st == STAGE_VERIFICATION && !wo.verify)
			break;
		enter_stage(r, st);
		double t0 = now_mono();
		code = stage_run(st, &ctx);
		if (st == STAGE_SELECTION && code == UFC_NONE) {
			pthread_mutex_lock(&r->lock);
			r->bytes_total = ctx.bytes_total;
			if (!spec.items_reused && spec.n_items && !atomic_load(&r->lost) &&
			    job_items_store(r->db, r->job->id, spec.items, spec.n_items) < 0) {
				code = UFC_DB_UNAVAILABLE;
				if (asprintf(&msg, "cannot record the chosen content: %s", db_error(r->db)) < 0)
					msg = NULL;
			}
			pthread_mutex_unlock(&r->lock);
		}
		if (code == UFC_NONE) {
			json_t *d = json_pack("{s:f, s:I}", "seconds", now_mono() - t0, "bytes", (json_int_t)r->done);
			_cleanup_free_ char *dj = json_dumps(d, JSON_COMPACT);
			json_decref(d);
			snprintf(line, sizeof(line), "%s done", stage_name(st));
			log_row(r, "info", st, "stage", line, UFC_NONE, dj);
		} else {
			msg = msg ? msg : (ctx.message ? strdup(ctx.message) : NULL);
			break;
		}
	}
	if (st > STAGE_VERIFICATION || (st == STAGE_VERIFICATION && !wo.verify))
		st = STAGE_DONE;

	/* Why did it stop? A stop request or a lost job outranks what the stage saw. */
	if (code != UFC_NONE && atomic_load(&r->gone) && !atomic_load(&r->op_cancel)) {
		code = UFC_DEVICE_GONE;
		free(msg);
		msg = NULL;
		if (asprintf(&msg, "the stick was removed from slot %s during %s", r->slot, stage_name(st)) < 0)
			msg = NULL;
	}
	bool hand_back = code == UFC_CANCELLED && !atomic_load(&r->op_cancel) && atomic_load(&r->stop);

	pthread_mutex_lock(&r->lock);
	r->ticker_quit = true;
	pthread_cond_signal(&r->tick_cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->ticker, NULL);

	if (atomic_load(&r->lost))
		goto out;
	if (code == UFC_NONE) {
		struct job_log_row row = { .attempt = r->job->attempt,
					   .level = "info",
					   .stage = "done",
					   .category = "stage",
					   .message = "job done" };
		struct final fin = { .kind = FINAL_DONE,
				     .row = &row,
				     .bytes = ctx.bytes_written ? ctx.bytes_written : ctx.bytes_total };
		r->stage = STAGE_DONE;
		if (finish(r, &fin) == 0) {
			log_info("job %lld: done on slot %s", (long long)r->job->id, r->slot);
			r->ended_done = true;
		}
	} else if (hand_back) {
		struct job_log_row row = { .attempt = r->job->attempt,
					   .level = "info",
					   .stage = stage_name(st),
					   .category = "system",
					   .message = "daemon stopping: job handed back, attempt not spent" };
		struct final fin = { .kind = FINAL_HAND_BACK, .row = &row, .reason = "daemon stopped" };
		(void)finish(r, &fin);
	} else {
		const char *cname = uf_code_name(code);
		json_t *d = json_pack("{s:s, s:s?, s:I}", "slot", r->slot, "device", r->devpath, "bad_offset",
				      (json_int_t)ctx.bad_offset);
		_cleanup_free_ char *dj = json_dumps(d, JSON_COMPACT);
		json_decref(d);
		snprintf(line, sizeof(line), "%s: %s", cname ? cname : "PROCESSING_FAILED", msg ? msg : "failed");
		/* one error row per failure: the stage's own (with its details) when it wrote one */
		bool own_row = !r->stage_logged_error || code == UFC_CANCELLED || atomic_load(&r->gone);
		struct job_log_row row = { .attempt = r->job->attempt,
					   .level = code == UFC_CANCELLED ? "warn" : "error",
					   .stage = stage_name(st),
					   .category = uf_code_class(code) == UFC_CLASS_BAD_STICK ? "device" : "stage",
					   .message = line,
					   .error_code = cname,
					   .details_json = dj };
		struct final fin = {
			.kind = FINAL_FAIL, .row = own_row ? &row : NULL, .code = code, .reason = msg ? msg : cname
		};
		if (finish(r, &fin) == 0)
			log_notice("job %lld: %s on slot %s (%s) -> %s", (long long)r->job->id, cname, r->slot,
				   msg ? msg : "", fin.status);
		if (uf_code_class(code) == UFC_CLASS_BAD_STICK)
			r->bad_stick = true;
	}
out:
	stage_ctx_done(&ctx);
	ctx.dev = writer_dev_free(ctx.dev); /* a stalled write thread may still hold it */
	usbreset = usbdev_reset_free(usbreset);
	spec_done(&spec);
	atomic_store(&r->finished, true);
	uint64_t one = 1;
	if (write(r->a.notify_fd, &one, sizeof(one)) < 0)
		log_debug_errno(errno, "eventfd write: %m");
	return NULL;
}

int runner_start(const struct runner_args *a, struct runner **ret)
{
	struct runner *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->a = *a;
	r->slot = strdup(a->slot);
	r->devpath = strdup(a->devpath);
	r->serial = a->serial ? strdup(a->serial) : NULL;
	r->worker_id = strdup(a->worker_id);
	r->a.slot = r->slot;
	r->a.devpath = r->devpath;
	r->a.serial = r->serial;
	r->a.worker_id = r->worker_id;
	r->job = a->job;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->tick_cond, &ca);
	pthread_cond_init(&r->throttle_cond, &ca);
	pthread_condattr_destroy(&ca);
	if (a->job->cancel_requested) {
		atomic_store(&r->op_cancel, true);
		atomic_store(&r->cancel, true);
	}
	int q = pthread_create(&r->thread, NULL, runner_main, r);
	if (q) {
		free(r);
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

void runner_join(struct runner *r, bool *ret_bad_stick, bool *ret_done)
{
	pthread_join(r->thread, NULL);
	if (ret_bad_stick)
		*ret_bad_stick = r->bad_stick;
	if (ret_done)
		*ret_done = r->ended_done;
	db_close(r->db);
	claimed_job_free(r->job);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->tick_cond);
	pthread_cond_destroy(&r->throttle_cond);
	free(r->slot);
	free(r->devpath);
	free(r->serial);
	free(r->worker_id);
	free(r);
}
