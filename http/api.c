/* Implementation of http/api.h: each endpoint reads the board (what this daemon sees) and the
 * database through the server's own connections (http_db_get), never the daemon's. */
#include "http/api.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "db/jobs.h"
#include "db/jobstate.h"
#include "db/jobstats.h"
#include "db/orders.h"
#include "http/slotjson.h"
#include "util/macro.h"
#include "util/message.h"

#define API_ACTOR	 "http"
#define CACHE_TTL	 1.0  /* s: GET /v1/processing/queue, /health/stuck-jobs/stats, /metrics */
#define ORDER_NUMBER_MAX 64   /* orders.order_number */
#define EVENTS_MAX	 1000 /* GET /v1/events: limit's bound and default */

/* Whether the database answers a trivial query on one of the server's connections. */
static bool db_reachable(struct http_server *srv)
{
	struct db *db = NULL;
	int64_t one = 0;
	int r = http_db_get(srv, &db);
	if (r < 0)
		return false;
	r = db_query_i64(db, &one, "SELECT 1", DB_END);
	http_db_put(srv, db, r);
	return r >= 0 && one == 1;
}

enum MHD_Result api_health(struct http_request *req)
{
	struct board_view v;
	if (board_view(http_board(req->server), &v) < 0)
		return MHD_NO;
	bool up = db_reachable(req->server);
	json_t *data = json_pack("{s:s, s:{s:b}, s:s, s:s, s:o, s:o, s:o}", "status", up ? "ok" : "degraded",
				 "database", "reachable", up, "station", v.station, "workerId", v.worker_id,
				 "startedAt", http_json_time(v.started), "lastHeartbeat",
				 http_json_time(v.last_heartbeat), "slots", tiles_json(&v));
	board_view_done(&v);
	if (!data)
		return MHD_NO;
	if (up)
		return http_reply_json(req, MHD_HTTP_OK, data);
	json_t *doc = json_pack("{s:b, s:{s:s, s:s}, s:o}", "success", 0, "error", "code", "DATABASE_UNAVAILABLE",
				"message", "the database cannot be reached", "data", data);
	return http_reply_doc(req, MHD_HTTP_SERVICE_UNAVAILABLE, doc);
}

/* ---- shared ------------------------------------------------------------------------------ */

static enum MHD_Result db_unavailable(struct http_request *req)
{
	return http_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE",
				"the database cannot be reached");
}

/* A db error on an answered request: 503 when the connection is gone, 500 otherwise. */
/* A statement failed with r: answer 503 (the server went away) or 500, and give the connection
 * back to the pool (which drops a broken one). */
static enum MHD_Result db_failed(struct http_request *req, struct db *db, int r)
{
	enum MHD_Result q;
	if (r == -ENOMEM)
		q = MHD_NO;
	else if (db_connection_broken(db, r) || r == -ENOTCONN)
		q = db_unavailable(req);
	else
		q = http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "DATABASE_ERROR", db_error(db));
	http_db_put(req->server, db, r);
	return q;
}

static json_t *error_doc(const char *code, const char *message)
{
	return json_pack("{s:b, s:{s:s, s:s}}", "success", 0, "error", "code", code, "message", message);
}

/* db_failed() for the cached documents: the error document and its status; the connection goes
 * back to the pool. */
static json_t *db_failed_doc(struct http_request *req, struct db *db, int r, unsigned *ret_status)
{
	bool gone = db_connection_broken(db, r);
	json_t *e = error_doc(gone ? "DATABASE_UNAVAILABLE" : "DATABASE_ERROR", db_error(db));
	http_db_put(req->server, db, r);
	*ret_status = gone ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_INTERNAL_SERVER_ERROR;
	return e;
}

static json_t *ok_doc(json_t *data) { return data ? json_pack("{s:b, s:o}", "success", 1, "data", data) : NULL; }

static int path_id(struct http_request *req, int64_t *ret)
{
	return req->n_params >= 1 ? http_parse_id(req->params[0], ret) : -EINVAL;
}

static enum MHD_Result bad_id(struct http_request *req)
{
	return http_reply_error(req, MHD_HTTP_BAD_REQUEST, "BAD_ID",
				"the job id must be a decimal number between 1 and 9223372036854775807");
}

/* "2026-12-03 15:04:00.123456" (the server's UTC) → "2026-12-03T15:04:00.123456Z"; NULL → null. */
static json_t *db_time_json(const char *t)
{
	if (!t)
		return json_null();
	char buf[40];
	snprintf(buf, sizeof(buf), "%.10sT%sZ", t, strlen(t) > 11 ? t + 11 : "00:00:00");
	return json_string(buf);
}

/* ---- stuck jobs ---------------------------------------------------------------------------- */

static json_t *stuck_stats_doc(struct http_request *req, unsigned *ret_status)
{
	struct http_settings st;
	struct queue_stats qs = { 0 };
	struct db *db = NULL;
	int64_t done = 0, failed = 0;

	http_settings(req->server, &st);
	int r = http_db_get(req->server, &db);
	if (r < 0) {
		*ret_status = MHD_HTTP_SERVICE_UNAVAILABLE;
		return error_doc("DATABASE_UNAVAILABLE", "the database cannot be reached");
	}
	r = queue_get_stats(db, st.stuck.processing_timeout, st.stuck.queued_timeout, &qs);
	if (r >= 0)
		r = job_counts_ended_since(db, 86400, &done, &failed);
	if (r < 0)
		return db_failed_doc(req, db, r, ret_status);
	http_db_put(req->server, db, r);
	return ok_doc(json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:{s:f, s:f}}", "processing_jobs",
				(json_int_t)qs.jobs[JOB_STATE_PROCESSING], "queued_jobs",
				(json_int_t)(qs.jobs[JOB_STATE_QUEUED] + qs.jobs[JOB_STATE_RETRY]), "completed_jobs",
				(json_int_t)done, "failed_jobs", (json_int_t)failed, "stuck_processing",
				(json_int_t)qs.stuck_processing, "stuck_queued", (json_int_t)qs.stuck_queued,
				"thresholds_seconds", "processing", st.stuck.processing_timeout, "queued",
				st.stuck.queued_timeout));
}

enum MHD_Result api_stuck_stats(struct http_request *req)
{
	static struct http_cache cache = HTTP_CACHE_INIT;
	return http_reply_cached(req, &cache, CACHE_TTL, stuck_stats_doc);
}

static bool tile_running(enum tile_state s) { return s == TILE_CHECKING || s == TILE_WRITING || s == TILE_VERIFYING; }

enum MHD_Result api_stuck_check(struct http_request *req)
{
	struct http_settings st;
	struct board_view v;
	struct reap_stats rs = { 0 };
	struct db *db = NULL;

	http_settings(req->server, &st);
	if (board_view(http_board(req->server), &v) < 0)
		return MHD_NO;
	/* this daemon's live runners: their heartbeats may lag while the database was away */
	int64_t *skip = calloc(v.n_tiles ? v.n_tiles : 1, sizeof(*skip));
	size_t n_skip = 0;
	for (size_t i = 0; skip && i < v.n_tiles; i++)
		if (tile_running(v.tiles[i].state) && v.tiles[i].job_id > 0)
			skip[n_skip++] = v.tiles[i].job_id;
	board_view_done(&v);
	if (!skip)
		return MHD_NO;
	int r = http_db_get(req->server, &db);
	if (r < 0) {
		free(skip);
		return db_unavailable(req);
	}
	r = queue_reap(db, st.stuck.processing_timeout, st.stuck.queued_timeout, st.retry_delays, st.n_retry_delays,
		       skip, n_skip, &rs);
	free(skip);
	if (r < 0)
		return db_failed(req, db, r);
	http_db_put(req->server, db, r);
	json_t *actions = json_array();
	for (size_t i = 0; actions && i < rs.n_actions; i++)
		json_array_append_new(actions, json_pack("{s:I, s:s, s:b}", "jobId", (json_int_t)rs.actions[i].job_id,
							 "status", job_state_name(rs.actions[i].state), "stuckReported",
							 rs.actions[i].stuck_reported));
	json_t *data = actions ? json_pack("{s:i, s:i, s:i, s:i, s:i, s:o}", "total", (int)rs.n_actions, "retried",
					   (int)rs.retried, "failed", (int)rs.failed, "cancelled", (int)rs.cancelled,
					   "stuckReported", (int)rs.stuck_reported, "actions", actions)
			       : NULL;
	reap_stats_done(&rs);
	return data ? http_reply_json(req, MHD_HTTP_OK, data) : MHD_NO;
}

/* ---- queue and jobs ------------------------------------------------------------------------- */

static json_t *queue_doc(struct http_request *req, unsigned *ret_status)
{
	struct http_settings st;
	struct queue_stats qs = { 0 };
	struct board_view v;
	struct db *db = NULL;

	http_settings(req->server, &st);
	int r = http_db_get(req->server, &db);
	if (r < 0) {
		*ret_status = MHD_HTTP_SERVICE_UNAVAILABLE;
		return error_doc("DATABASE_UNAVAILABLE", "the database cannot be reached");
	}
	r = queue_get_stats(db, st.stuck.processing_timeout, st.stuck.queued_timeout, &qs);
	if (r < 0)
		return db_failed_doc(req, db, r, ret_status);
	http_db_put(req->server, db, r);
	if (board_view(http_board(req->server), &v) < 0)
		return NULL;
	int active = 0;
	for (size_t i = 0; i < v.n_tiles; i++)
		active += tile_running(v.tiles[i].state);
	unsigned max_concurrent = v.max_concurrent;
	board_view_done(&v);

	json_int_t total = 0;
	json_t *by = json_array();
	for (int s = 0; by && s < _JOB_STATE_MAX; s++) {
		total += qs.jobs[s];
		json_array_append_new(by, json_pack("{s:s, s:I}", "status", job_state_name((enum job_state)s), "count",
						    (json_int_t)qs.jobs[s]));
	}
	if (!by)
		return NULL;
	json_t *data =
		json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:{s:I, s:o, s:o, s:o}}", "total", total,
			  "queued", (json_int_t)qs.jobs[JOB_STATE_QUEUED], "processing",
			  (json_int_t)qs.jobs[JOB_STATE_PROCESSING], "completed", (json_int_t)qs.jobs[JOB_STATE_DONE],
			  "failed", (json_int_t)qs.jobs[JOB_STATE_FAILED], "retry",
			  (json_int_t)qs.jobs[JOB_STATE_RETRY], "cancelled", (json_int_t)qs.jobs[JOB_STATE_CANCELLED],
			  "activeJobs", active, "maxConcurrent", (int)max_concurrent, "dbStats", "total", total,
			  "by_status", by, "avg_duration_seconds",
			  qs.have_avg_duration ? json_real(qs.avg_duration_seconds) : json_null(),
			  "avg_duration_minutes",
			  qs.have_avg_duration ? json_real(qs.avg_duration_seconds / 60) : json_null());
	return ok_doc(data);
}

enum MHD_Result api_queue(struct http_request *req)
{
	static struct http_cache cache = HTTP_CACHE_INIT;
	return http_reply_cached(req, &cache, CACHE_TTL, queue_doc);
}

/* The column named name of the record's row, or NULL. */
static const char *col(const struct db_res *res, db_row row, const char *name)
{
	for (unsigned i = 0; i < db_res_fields(res); i++)
		if (strcmp(db_res_field_name(res, i), name) == 0)
			return row[i];
	return NULL;
}

static json_t *int_or_null(const char *s) { return s ? json_integer(strtoll(s, NULL, 10)) : json_null(); }

enum MHD_Result api_job(struct http_request *req)
{
	int64_t id;
	struct db *db = NULL;
	struct record rec = { 0 };

	if (path_id(req, &id) < 0)
		return bad_id(req);
	int r = http_db_get(req->server, &db);
	if (r < 0)
		return db_unavailable(req);
	r = job_show(db, id, &rec);
	if (r == -ENOENT) {
		http_db_put(req->server, db, 0);
		return http_reply_errorf(req, MHD_HTTP_NOT_FOUND, "JOB_NOT_FOUND", "job %lld does not exist",
					 (long long)id);
	}
	if (r < 0)
		return db_failed(req, db, r);
	http_db_put(req->server, db, 0);
	db_row row = db_res_next(rec.row);
	json_t *data = NULL;
	if (row)
		data = json_pack(
			"{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
			"id", (json_int_t)id, "orderNumber", http_json_text(col(rec.row, row, "order_number")),
			"unitIndex", int_or_null(col(rec.row, row, "unit_index")), "status",
			http_json_text(col(rec.row, row, "status")), "stage",
			http_json_text(col(rec.row, row, "stage")), "progress",
			int_or_null(col(rec.row, row, "progress")), "attempts",
			int_or_null(col(rec.row, row, "attempts")), "maxAttempts",
			int_or_null(col(rec.row, row, "max_attempts")), "slot",
			http_json_text(col(rec.row, row, "slot")), "deviceSerial",
			http_json_text(col(rec.row, row, "device_serial")), "bytesWritten",
			int_or_null(col(rec.row, row, "bytes_written")), "errorCode",
			http_json_text(col(rec.row, row, "error_code")), "failReason",
			http_json_text(col(rec.row, row, "fail_reason")), "createdAt",
			db_time_json(col(rec.row, row, "created_at")), "updatedAt",
			db_time_json(col(rec.row, row, "updated_at")), "startedAt",
			db_time_json(col(rec.row, row, "started_at")), "completedAt",
			db_time_json(col(rec.row, row, "completed_at")), "failedAt",
			db_time_json(col(rec.row, row, "failed_at")));
	record_done(&rec);
	return data ? http_reply_json(req, MHD_HTTP_OK, data) : MHD_NO;
}

enum MHD_Result api_slots(struct http_request *req)
{
	struct board_view v;
	if (board_view(http_board(req->server), &v) < 0)
		return MHD_NO;
	json_t *t = tiles_json(&v);
	board_view_done(&v);
	return t ? http_reply_json(req, MHD_HTTP_OK, t) : MHD_NO;
}

/* ---- changes ---------------------------------------------------------------------------------- */

static bool order_number_ok(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > ORDER_NUMBER_MAX)
		return false;
	for (const unsigned char *c = (const unsigned char *)n; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			return false;
	return true;
}

enum MHD_Result api_order_confirm(struct http_request *req)
{
	struct http_settings st;
	struct order_confirmation conf = { 0 };
	struct db *db = NULL;
	const char *number = req->n_params ? req->params[0] : "";

	if (!order_number_ok(number))
		return http_reply_error(req, MHD_HTTP_BAD_REQUEST, "BAD_ORDER_NUMBER",
					"the order number must be 1 to 64 characters, no control characters");
	http_settings(req->server, &st);
	int r = http_db_get(req->server, &db);
	if (r < 0)
		return db_unavailable(req);
	/* the CLI's `order confirm` exactly: the same function, the same attempt budget */
	r = order_confirm(db, number, NULL, 1 + (int)st.n_retry_delays, API_ACTOR, &conf);
	if (r == -ENOENT || r == -ECANCELED) {
		http_db_put(req->server, db, 0);
		return r == -ENOENT ? http_reply_errorf(req, MHD_HTTP_NOT_FOUND, "ORDER_NOT_FOUND",
							"order '%s' does not exist", number)
				    : http_reply_errorf(req, MHD_HTTP_CONFLICT, "ORDER_CANCELLED",
							"order '%s' is cancelled and cannot be confirmed", number);
	}
	if (r < 0)
		return db_failed(req, db, r);
	http_db_put(req->server, db, 0);
	json_t *jobs = json_array();
	for (size_t i = 0; jobs && i < conf.n_jobs; i++)
		json_array_append_new(jobs, json_pack("{s:I, s:i, s:s}", "id", (json_int_t)conf.jobs[i].id, "unitIndex",
						      conf.jobs[i].unit_index, "status",
						      job_state_name(conf.jobs[i].status)));
	json_t *data = jobs ? json_pack("{s:s, s:s, s:i, s:o}", "orderNumber", conf.order_number, "orderStatus",
					conf.order_status, "created", conf.created, "jobs", jobs)
			    : NULL;
	order_confirmation_done(&conf);
	return data ? http_reply_json(req, MHD_HTTP_OK, data) : MHD_NO;
}

enum MHD_Result api_job_cancel(struct http_request *req)
{
	int64_t id;
	enum job_state state;
	struct db *db = NULL;

	if (path_id(req, &id) < 0)
		return bad_id(req);
	int r = http_db_get(req->server, &db);
	if (r < 0)
		return db_unavailable(req);
	r = job_cancel(db, id, API_ACTOR, &state);
	if (r == -ENOENT || r == -EALREADY) {
		http_db_put(req->server, db, 0);
		return r == -ENOENT ? http_reply_errorf(req, MHD_HTTP_NOT_FOUND, "JOB_NOT_FOUND",
							"job %lld does not exist", (long long)id)
				    : http_reply_errorf(req, MHD_HTTP_CONFLICT, "JOB_ENDED",
							"job %lld has already ended", (long long)id);
	}
	if (r < 0)
		return db_failed(req, db, r);
	http_db_put(req->server, db, 0);
	/* processing: the runner stops at its next chunk boundary */
	return http_reply_json(req, MHD_HTTP_OK,
			       json_pack("{s:I, s:s, s:b}", "id", (json_int_t)id, "status", job_state_name(state),
					 "cancelRequested", state == JOB_STATE_PROCESSING));
}

enum MHD_Result api_job_retry(struct http_request *req)
{
	int64_t id;
	struct http_settings st;
	struct db *db = NULL;

	if (path_id(req, &id) < 0)
		return bad_id(req);
	http_settings(req->server, &st);
	int r = http_db_get(req->server, &db);
	if (r < 0)
		return db_unavailable(req);
	r = job_retry(db, id, API_ACTOR, 1 + (int)st.n_retry_delays);
	if (r == -ENOENT || r == -EBUSY) {
		http_db_put(req->server, db, 0);
		return r == -ENOENT ? http_reply_errorf(req, MHD_HTTP_NOT_FOUND, "JOB_NOT_FOUND",
							"job %lld does not exist", (long long)id)
				    : http_reply_errorf(req, MHD_HTTP_CONFLICT, "JOB_NOT_RETRYABLE",
							"job %lld is neither failed nor cancelled", (long long)id);
	}
	if (r < 0)
		return db_failed(req, db, r);
	http_db_put(req->server, db, 0);
	return http_reply_json(req, MHD_HTTP_OK,
			       json_pack("{s:I, s:s}", "id", (json_int_t)id, "status",
					 job_state_name(JOB_STATE_QUEUED)));
}

/* ---- events ----------------------------------------------------------------------------------- */

/* A query number: absent → def; digits only, in [min, max], else -EINVAL. */
static int query_num(struct http_request *req, const char *name, int64_t def, int64_t min, int64_t max, int64_t *ret)
{
	const char *s = http_query(req, name);
	if (!s) {
		*ret = def;
		return 0;
	}
	if (strcmp(s, "0") == 0 && min == 0) {
		*ret = 0;
		return 0;
	}
	int64_t v;
	if (http_parse_id(s, &v) < 0 || v < min || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

enum MHD_Result api_events(struct http_request *req)
{
	int64_t since, limit;
	struct event *ev = NULL;
	size_t n = 0;
	struct db *db = NULL;

	if (query_num(req, "since", 0, 0, INT64_MAX, &since) < 0)
		return http_reply_error(req, MHD_HTTP_BAD_REQUEST, "BAD_SINCE",
					"since must be an event id (a decimal number, 0 for the first page)");
	if (query_num(req, "limit", 100, 1, EVENTS_MAX, &limit) < 0)
		return http_reply_error(req, MHD_HTTP_BAD_REQUEST, "BAD_LIMIT", "limit must be between 1 and 1000");
	int r = http_db_get(req->server, &db);
	if (r < 0)
		return db_unavailable(req);
	r = event_list(db, since, false, (int)limit, &ev, &n);
	if (r < 0)
		return db_failed(req, db, r);
	http_db_put(req->server, db, 0);
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		json_t *payload = ev[i].payload ? json_loads(ev[i].payload, 0, NULL) : NULL;
		json_array_append_new(arr, json_pack("{s:I, s:o, s:I, s:o, s:i, s:o, s:o}", "id", (json_int_t)ev[i].id,
						     "aggregateType", http_json_text(ev[i].aggregate_type),
						     "aggregateId", (json_int_t)ev[i].aggregate_id, "eventType",
						     http_json_text(ev[i].event_type), "generation", ev[i].generation,
						     "payload", payload ? payload : json_null(), "createdAt",
						     db_time_json(ev[i].created_at)));
	}
	/* next: where the following page starts; the same cursor when this page was empty */
	int64_t next = n ? ev[n - 1].id : since;
	bool more = (int64_t)n == limit;
	event_list_free(ev, n);
	json_t *data = arr ? json_pack("{s:o, s:I, s:b}", "events", arr, "next", (json_int_t)next, "more", more) : NULL;
	return data ? http_reply_json(req, MHD_HTTP_OK, data) : MHD_NO;
}
