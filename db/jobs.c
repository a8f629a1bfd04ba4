/* Implementation of db/jobs.h. The job states are bound into the statements by their names
 * (db/jobstate.h); SQL text names a state only inside a view or the claim's index predicate
 * (db/schema.c). The events' payloads are data of the outbox, built here with jansson. */
#include "db/jobs.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/orders.h"
#include "db/schema.h"
#include "util/log.h"
#include "util/macro.h"

/* The stick a job is on, as the resume state records it: its USB serial, else its slot
 * (static slots and sticks without a serial). */
#define RESUME_DEVICE_SQL "COALESCE(device_serial, CONCAT('slot:', slot))"

/* A state as a bound argument. */
#define DB_STATE(s) DB_STR(job_state_name(s))

struct claimed_job *claimed_job_free(struct claimed_job *j)
{
	if (!j)
		return NULL;
	free(j->order_number);
	free(j->image_path);
	free(j->content_spec);
	free(j->resume_state);
	free(j);
	return NULL;
}

/* In every state change a transaction makes: false when the statement runs on its own. Galera
 * can roll a transaction back under its client (a conflicting commit of another node) and let
 * the next statement run in autocommit, unannounced; db_transaction notices afterwards and runs
 * the whole again, but that statement has committed by then: a job done or claimed without its
 * events, rows or order (tests/galera). With this guard it changes nothing. MariaDB. */
#define TXN_LIVE_SQL "@@in_transaction = 1"

/* The largest nominal capacity a stick of device_bytes fits:
 * capacity × (1 − tol) ≤ device  ⇔  capacity ≤ device / (1 − tol). */
static uint64_t max_capacity_for(uint64_t device_bytes, double tolerance)
{
	double lim = tolerance < 1.0 ? (double)device_bytes / (1.0 - tolerance) : 1.8e19;
	return lim >= 1.8e19 ? UINT64_MAX : (uint64_t)floor(lim);
}

/* Spreading the claims. Every kiosk asking for "the oldest runnable job" gets the same row: on
 * one server FOR UPDATE SKIP LOCKED hands the next kiosk the next row, but those locks do not
 * cross the nodes of a Galera cluster, so kiosks on different nodes all take the same row and
 * all but one fail at COMMIT (1213) and claim again. Each worker therefore takes the N-th
 * runnable row (in the claim's order), N its rank among the live workers of its station (their
 * ids sorted; modulo CLAIM_SPREAD): the first N rows go to the N live workers, and the oldest
 * jobs still go first overall. Only the station's own workers count: those are the ones that
 * compete for its jobs, and a worker of another station ranked before it would make it skip its
 * station's oldest jobs for as long as more are queued. A lone daemon (rank 0) takes the oldest
 * row, as before; when fewer rows are runnable than its rank, a worker takes the oldest. The
 * rank is read from the workers table at most every CLAIM_RANK_TTL seconds per thread (one
 * claimer per daemon: its main loop). A dead daemon's row counts until CLAIM_LIVE_AFTER has
 * passed: meanwhile the oldest jobs may wait for that long (no daemon has its rank). */
#define CLAIM_SPREAD   8
#define CLAIM_RANK_TTL 2.0
/* seconds: a workers row beating within them is live. Short, because a daemon killed with -9
 * leaves a row that still counts for this long, and the rank holes it leaves keep the oldest
 * runnable jobs waiting until it expires (chaos: a reaped job not claimed again within 15 s
 * with 30 s here). A live daemon beats every worker.heartbeat_interval (5 s by default); one
 * that beats less often than this merely drops out of the count, which shifts the others'
 * ranks down and leaves no hole. */
#define CLAIM_LIVE_AFTER "10"

static pthread_once_t claim_offset_once = PTHREAD_ONCE_INIT;
static char *claim_offset_text;

/* db_claim_select_sql with "LIMIT 1 OFFSET ?" (built once from that constant: the same index,
 * the same order, one more placeholder). */
static void build_claim_offset_sql(void)
{
	const char *lim = strstr(db_claim_select_sql, " LIMIT 1 ");
	if (!lim)
		return;
	if (asprintf(&claim_offset_text, "%.*s LIMIT 1 OFFSET ?%s", (int)(lim - db_claim_select_sql),
		     db_claim_select_sql, lim + strlen(" LIMIT 1")) < 0)
		claim_offset_text = NULL;
}

static const char *claim_offset_sql(void)
{
	pthread_once(&claim_offset_once, build_claim_offset_sql);
	return claim_offset_text;
}

static int64_t claim_offset(struct db *db, const char *worker_id, const char *station)
{
	static _Thread_local struct {
		char id[160];
		double at;
		int64_t rank;
	} cache;
	struct timespec ts;
	int64_t rank = 0;

	if (!worker_id || !station || strlen(worker_id) >= sizeof(cache.id) || !claim_offset_sql())
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	if (cache.at > 0 && now - cache.at < CLAIM_RANK_TTL && strcmp(cache.id, worker_id) == 0)
		return cache.rank;
	/* a failure costs the spread, not the claim */
	if (db_query_i64(db, &rank,
			 "SELECT COUNT(*) FROM workers WHERE station = ? AND id < ? AND stopped_at IS NULL"
			 " AND heartbeat_at > NOW(6) - INTERVAL " CLAIM_LIVE_AFTER " SECOND",
			 DB_STR(station), DB_STR(worker_id), DB_END) < 0)
		rank = 0;
	snprintf(cache.id, sizeof(cache.id), "%s", worker_id);
	cache.at = now;
	cache.rank = rank % CLAIM_SPREAD;
	return cache.rank;
}

struct claim_ctx {
	const struct claim_req *req;
	struct claimed_job *job;
};

static int claim_txn(struct db *db, void *userdata)
{
	struct claim_ctx *c = userdata;
	const struct claim_req *q = c->req;
	int64_t id = 0;
	uint64_t aff = 0;
	int r;

	c->job = claimed_job_free(c->job);
	uint64_t max_cap = max_capacity_for(q->device_bytes, q->capacity_tolerance);
	int64_t offset = claim_offset(db, q->worker_id, q->station);
	if (offset > 0) {
		r = db_query_i64(db, &id, claim_offset_sql(), DB_U64(max_cap), DB_STR(q->station),
				 DB_U64(q->device_bytes), DB_I64(offset), DB_END);
		if (r == -ENOENT) /* fewer runnable rows than the offset: the oldest one */
			offset = 0;
		else if (r < 0)
			return r;
	}
	if (offset == 0) {
		r = db_query_i64(db, &id, db_claim_select_sql, DB_U64(max_cap), DB_STR(q->station),
				 DB_U64(q->device_bytes), DB_END);
		if (r < 0)
			return r;
	}
	r = db_exec(db, &aff,
		    "UPDATE processing_jobs SET status = ?, stage = 'validation', progress = 0,"
		    " attempts = attempts + 1, claims = claims + 1, locked_by = ?, heartbeat_at = NOW(6),"
		    " started_at = COALESCE(started_at, NOW(6)), slot = ?, device_serial = ?, device_capacity_bytes = ?,"
		    " bytes_written = 0, error_code = NULL, fail_reason = NULL"
		    " WHERE id = ? AND status IN (?, ?) AND " TXN_LIVE_SQL,
		    DB_STATE(JOB_STATE_PROCESSING), DB_STR(q->worker_id), DB_STR(q->slot), DB_STR(q->device_serial),
		    DB_U64(q->device_bytes), DB_I64(id), DB_STATE(JOB_STATE_QUEUED), DB_STATE(JOB_STATE_RETRY), DB_END);
	if (r < 0)
		return r;
	if (aff != 1)
		return -EAGAIN;
	_cleanup_result_ struct db_res *res = NULL;
	db_row row;
	r = db_query_row(db, &res, &row,
			 "SELECT j.id, j.order_id, o.order_number, j.unit_index, j.attempts, j.max_attempts, j.generation,"
			 " j.capacity_bytes, o.image_path, o.content_spec, j.resume_state, j.cancel_requested_at IS NOT NULL,"
			 " j.resume_state IS NOT NULL AND NOT (j.resume_device <=> " RESUME_DEVICE_SQL "),"
			 " COALESCE(o.image_bytes, 0), o.status IN ('confirmed', 'failed')"
			 " FROM processing_jobs j JOIN orders o ON o.id = j.order_id WHERE j.id = ?",
			 DB_I64(id), DB_END);
	if (r == -ENOENT)
		return -EIO;
	if (r < 0)
		return r;
	struct claimed_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->id = db_row_i64(row, 0);
	j->order_id = db_row_i64(row, 1);
	j->order_number = strdup_or_null(row[2]);
	j->unit_index = (int)db_row_i64(row, 3);
	j->attempt = (int)db_row_i64(row, 4);
	j->max_attempts = (int)db_row_i64(row, 5);
	j->generation = (int)db_row_i64(row, 6);
	j->capacity_bytes = db_row_u64(row, 7);
	j->image_path = strdup_or_null(row[8]);
	j->image_bytes = db_row_u64(row, 13);
	j->content_spec = strdup_or_null(row[9]);
	/* the resume state only serves the stick it was written on (it is kept in the row: the
	 * job may still come back to that stick) */
	j->resume_other_stick = db_row_i64(row, 12) != 0;
	j->resume_state = j->resume_other_stick ? NULL : strdup_or_null(row[10]);
	j->cancel_requested = db_row_i64(row, 11) != 0;
	c->job = j;
	/* the order's first claim (or the first after a failure) moves it to processing; the
	 * others have nothing to change there. (A plain read: under a shared lock on the order row
	 * the claim deadlocked with the ends of the order's other units, whose order update reads
	 * the units with locks, test_prune's drainers ten times in a row.) */
	if (db_row_i64(row, 14) == 0)
		return 0;
	return db_exec(db, NULL,
		       "UPDATE orders SET status = 'processing' WHERE id = ? AND status IN ('confirmed', 'failed')",
		       DB_I64(j->order_id), DB_END);
}

int job_claim(struct db *db, const struct claim_req *req, struct claimed_job **ret)
{
	struct claim_ctx c = { .req = req };
	int r = db_transaction(db, claim_txn, &c);
	if (r < 0) {
		claimed_job_free(c.job);
		return r;
	}
	*ret = c.job;
	return 0;
}

/* The guard of every write made under a lease (four placeholders: id, state, worker, attempt). */
#define LEASE_GUARD_SQL "id = ? AND status = ? AND locked_by = ? AND attempts = ?"
#define LEASE_ARGS(l)	DB_I64((l)->id), DB_STATE(JOB_STATE_PROCESSING), DB_STR((l)->worker_id), DB_I64((l)->attempt)

int job_progress(struct db *db, const struct job_lease *l, const char *stage, int progress, const char *detail_json,
		 uint64_t bytes_total, uint64_t bytes_written, bool *ret_cancel)
{
	uint64_t aff = 0;
	int64_t cancel = 0;
	int r = db_exec(db, &aff,
			"UPDATE processing_jobs SET heartbeat_at = NOW(6), stage = ?, progress = ?,"
			" progress_detail = COALESCE(?, progress_detail), bytes_total = IF(? > 0, ?, bytes_total),"
			" bytes_written = LEAST(?, COALESCE(IF(? > 0, ?, bytes_total), ?))"
			" WHERE " LEASE_GUARD_SQL,
			DB_STR(stage),
			DB_I64(progress < 0	? 0
			       : progress > 100 ? 100
						: progress),
			DB_STR(detail_json), DB_U64(bytes_total), DB_U64(bytes_total), DB_U64(bytes_written),
			DB_U64(bytes_total), DB_U64(bytes_total), DB_U64(bytes_written), LEASE_ARGS(l), DB_END);
	if (r < 0)
		return r;
	if (aff != 1)
		return -ESTALE;
	if (ret_cancel) {
		r = db_query_i64(db, &cancel,
				 "SELECT cancel_requested_at IS NOT NULL FROM processing_jobs WHERE id = ?",
				 DB_I64(l->id), DB_END);
		if (r < 0)
			return r;
		*ret_cancel = cancel != 0;
	}
	return 0;
}

int job_log(struct db *db, int64_t id, int attempt, const char *level, const char *stage, const char *category,
	    const char *message, const char *error_code, const char *details_json)
{
	return db_exec(db, NULL,
		       "INSERT INTO processing_job_logs (job_id, attempt, level, stage, category, message, error_code, details)"
		       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		       DB_I64(id), DB_I64(attempt), DB_STR(level), DB_STR(stage), DB_STR(category), DB_STR(message),
		       DB_STR(error_code), DB_STR(details_json), DB_END);
}

int job_log_leased(struct db *db, const struct job_lease *l, const struct job_log_row *row)
{
	uint64_t aff = 0;
	int r = db_exec(db, &aff,
			"INSERT INTO processing_job_logs (job_id, attempt, level, stage, category, message, error_code, details)"
			" SELECT id, attempts, ?, ?, ?, ?, ?, ? FROM processing_jobs WHERE " LEASE_GUARD_SQL
			" LOCK IN SHARE MODE",
			DB_STR(row->level), DB_STR(row->stage), DB_STR(row->category), DB_STR(row->message),
			DB_STR(row->error_code), DB_STR(row->details_json), LEASE_ARGS(l), DB_END);
	if (r < 0)
		return r;
	return aff == 1 ? 0 : -ESTALE;
}

/* The rows as one JSON array for LOG_ROWS_TABLE: each row an object of its level, stage,
 * category, message, error code and details (its JSON text, as a string, stored as given).
 * NULL when out of memory or when a text is not UTF-8 (the server would refuse it too). */
static char *log_rows_json(const struct job_log_row *rows, size_t n)
{
	json_auto_t *a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		json_t *o =
			json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:I}", "l", rows[i].level, "s", rows[i].stage,
				  "c", rows[i].category, "m", rows[i].message, "e", rows[i].error_code, "d",
				  rows[i].details_json, "a", (json_int_t)MAX(rows[i].age_us, (int64_t)0));
		if (!o || json_array_append_new(a, o) < 0)
			return NULL;
	}
	return a ? json_dumps(a, JSON_COMPACT) : NULL;
}

/* The rows of a JSON array made by log_rows_json, in order (t.n), as a table t. */
#define LOG_ROWS_TABLE                                                                                                 \
	"JSON_TABLE(?, '$[*]' COLUMNS (n FOR ORDINALITY, l VARCHAR(16) PATH '$.l', s VARCHAR(16) PATH '$.s',"          \
	" c VARCHAR(16) PATH '$.c', m TEXT CHARSET utf8mb4 PATH '$.m', e VARCHAR(64) PATH '$.e',"                      \
	" d LONGTEXT CHARSET utf8mb4 PATH '$.d', a BIGINT PATH '$.a')) t"
#define LOG_ROWS_INSERT                                                                                                \
	"INSERT INTO processing_job_logs (job_id, attempt, level, stage, category, message, error_code, details,"      \
	" created_at)"
/* the columns after job_id and attempt */
#define LOG_ROWS_COLS " t.l, t.s, t.c, t.m, t.e, t.d, NOW(6) - INTERVAL COALESCE(t.a, 0) MICROSECOND"

int job_log_leased_rows(struct db *db, const struct job_lease *l, const struct job_log_row *rows, size_t n)
{
	if (n == 0)
		return 0;
	_cleanup_free_ char *doc = log_rows_json(rows, n);
	if (!doc)
		return -EINVAL;
	uint64_t aff = 0;
	int r = db_exec(db, &aff,
			LOG_ROWS_INSERT " SELECT id, attempts," LOG_ROWS_COLS
					" FROM processing_jobs JOIN " LOG_ROWS_TABLE " WHERE " LEASE_GUARD_SQL
					" ORDER BY t.n LOCK IN SHARE MODE",
			DB_STR(doc), LEASE_ARGS(l), DB_END);
	if (r < 0)
		return r;
	if (aff == 0)
		return -ESTALE;
	return aff == n ? 0 : -EIO;
}

/* Insert rows[0..n) of attempt `attempt` of job id, in order, in one statement: inside a
 * transaction that holds the job row (its guard checked there). */
static int log_rows_add(struct db *db, int64_t id, int attempt, const struct job_log_row *rows, size_t n)
{
	if (n == 0)
		return 0;
	if (n == 1 && !rows->age_us) /* the reaper's and the transitions' own rows: the plain insert */
		return job_log(db, id, attempt, rows->level, rows->stage, rows->category, rows->message,
			       rows->error_code, rows->details_json);
	_cleanup_free_ char *doc = log_rows_json(rows, n);
	if (!doc)
		return -EINVAL;
	return db_exec(db, NULL, LOG_ROWS_INSERT " SELECT ?, ?," LOG_ROWS_COLS " FROM " LOG_ROWS_TABLE " ORDER BY t.n",
		       DB_I64(id), DB_I64(attempt), DB_STR(doc), DB_END);
}

/* Lock the job row if the lease still holds it: the first statement of every transaction made
 * under a lease. */
static int lock_leased(struct db *db, const struct job_lease *l)
{
	int64_t one = 0;
	int r = db_query_i64(db, &one, "SELECT 1 FROM processing_jobs WHERE " LEASE_GUARD_SQL " FOR UPDATE",
			     LEASE_ARGS(l), DB_END);
	return r == -ENOENT ? -ESTALE : r;
}

struct items_ctx {
	const struct job_lease *l;
	const struct job_item *items;
	size_t n;
};

static int items_txn(struct db *db, void *userdata)
{
	struct items_ctx *c = userdata;
	int r = lock_leased(db, c->l);
	if (r >= 0)
		r = db_exec(db, NULL, "DELETE FROM processing_job_items WHERE job_id = ?", DB_I64(c->l->id), DB_END);
	for (size_t i = 0; r >= 0 && i < c->n; i++)
		r = db_exec(db, NULL,
			    "INSERT INTO processing_job_items (job_id, position, content_item_id, size_bytes, dest_path)"
			    " VALUES (?, ?, ?, ?, ?)",
			    DB_I64(c->l->id), DB_I64(c->items[i].position), DB_I64(c->items[i].content_item_id),
			    DB_U64(c->items[i].size), DB_STR(c->items[i].dest_path), DB_END);
	return r;
}

int job_items_store(struct db *db, const struct job_lease *l, const struct job_item *items, size_t n)
{
	struct items_ctx c = { l, items, n };
	return db_transaction(db, items_txn, &c);
}

int job_items_load(struct db *db, int64_t id, struct job_item **ret, size_t *ret_n)
{
	_cleanup_result_ struct db_res *res = NULL;
	int r = db_query(db, &res,
			 "SELECT i.position, i.content_item_id, i.size_bytes, i.dest_path, c.rel_path, c.sha256,"
			 " FLOOR(UNIX_TIMESTAMP(c.mtime)), c.active, c.xxh128"
			 " FROM processing_job_items i JOIN content_items c ON c.id = i.content_item_id"
			 " WHERE i.job_id = ? ORDER BY i.position",
			 DB_I64(id), DB_END);
	if (r < 0)
		return r;
	size_t n = db_res_count(res), k = 0;
	struct job_item *items = n ? calloc(n, sizeof(*items)) : NULL;
	if (n && !items)
		return -ENOMEM;
	db_row row;
	while ((row = db_res_next(res)) && k < n) {
		struct job_item *it = &items[k++];
		it->position = (int)db_row_i64(row, 0);
		it->content_item_id = db_row_i64(row, 1);
		it->size = db_row_u64(row, 2);
		it->dest_path = strdup_or_null(row[3]);
		it->rel_path = strdup_or_null(row[4]);
		snprintf(it->sha256, sizeof(it->sha256), "%s", row[5] ? row[5] : "");
		it->mtime = db_row_i64(row, 6);
		snprintf(it->xxh128, sizeof(it->xxh128), "%s", row[8] ? row[8] : "");
	}
	*ret = items;
	*ret_n = k;
	return 0;
}

int job_resume_store(struct db *db, const struct job_lease *l, const char *resume_json)
{
	uint64_t aff = 0;
	int r = db_exec(db, &aff,
			"UPDATE processing_jobs SET resume_state = ?, resume_device = " RESUME_DEVICE_SQL
			" WHERE " LEASE_GUARD_SQL,
			DB_STR(resume_json), LEASE_ARGS(l), DB_END);
	if (r < 0)
		return r;
	return aff == 1 ? 0 : -ESTALE;
}

/* Insert an outbox event once: a duplicate (same aggregate, type, generation and seq) is a
 * no-op. Takes payload (NULL: -ENOMEM, json_pack's failure). */
static int event_add_seq(struct db *db, const char *agg_type, int64_t agg_id, const char *type, int generation,
			 int64_t seq, json_t *payload)
{
	_cleanup_free_ char *p = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
	json_decref(payload);
	if (!p)
		return -ENOMEM;
	return db_exec(db, NULL,
		       "INSERT INTO events (aggregate_type, aggregate_id, event_type, generation, seq, payload)"
		       " VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE id = id",
		       DB_STR(agg_type), DB_I64(agg_id), DB_STR(type), DB_I64(generation), DB_I64(seq), DB_STR(p),
		       DB_END);
}

/* Insert an outbox event unless it is there already: 1 when inserted, 0 when it was there (the
 * caller then skips what went with it). Takes payload (NULL: -ENOMEM). */
static int event_add_new(struct db *db, const char *agg_type, int64_t agg_id, const char *type, int generation,
			 int64_t seq, json_t *payload)
{
	_cleanup_free_ char *p = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
	json_decref(payload);
	if (!p)
		return -ENOMEM;
	uint64_t aff = 0;
	int r = db_exec(db, &aff,
			"INSERT INTO events (aggregate_type, aggregate_id, event_type, generation, seq, payload)"
			" SELECT ?, ?, ?, ?, ?, ? FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM events WHERE aggregate_type = ?"
			" AND aggregate_id = ? AND event_type = ? AND generation = ? AND seq = ?)",
			DB_STR(agg_type), DB_I64(agg_id), DB_STR(type), DB_I64(generation), DB_I64(seq), DB_STR(p),
			DB_STR(agg_type), DB_I64(agg_id), DB_STR(type), DB_I64(generation), DB_I64(seq), DB_END);
	return r < 0 ? r : aff > 0;
}

/* An event written once per generation. */
static int event_add(struct db *db, const char *agg_type, int64_t agg_id, const char *type, int generation,
		     json_t *payload)
{
	return event_add_seq(db, agg_type, agg_id, type, generation, 0, payload);
}

/* The job row under lock, for a finalizer: order id, number, unit, attempts, generation … */
struct jrow {
	int64_t order_id;
	char *order_number;
	int unit_index, attempts, max_attempts, generation;
	char *slot, *serial;
	char *cancelled_by;
	double duration;
	int64_t quantity; /* the order's units */
	int64_t claims;	  /* the job's claims: job.started's seq */
	uint64_t device_capacity, capacity;
};

static void jrow_done(struct jrow *j)
{
	free(j->order_number);
	free(j->slot);
	free(j->serial);
	free(j->cancelled_by);
}

/* Lock the job if it is processing under lease l (or, l NULL, if it is processing at all: the
 * reaper). */
static int lock_job(struct db *db, int64_t id, const struct job_lease *l, struct jrow *ret)
{
	_cleanup_result_ struct db_res *res = NULL;
	/* The order row is locked too: the ends of two units of one order are serialized, so the
	 * last one sees every other unit done and marks the order done (under READ COMMITTED,
	 * without it each would see the other still processing). A session that stalls holding it
	 * is ended by the server (db.c: idle_transaction_timeout). */
	db_row row;
	int r = db_query_row(db, &res, &row,
			     "SELECT j.order_id, o.order_number, j.unit_index, j.attempts, j.max_attempts, j.generation,"
			     " j.slot, j.device_serial, j.cancelled_by,"
			     " TIMESTAMPDIFF(MICROSECOND, j.started_at, NOW(6)) / 1e6, o.quantity, j.claims,"
			     " j.device_capacity_bytes, j.capacity_bytes"
			     " FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
			     " WHERE j.id = ? AND j.status = ? AND (? IS NULL OR (j.locked_by = ? AND j.attempts = ?))"
			     " FOR UPDATE",
			     DB_I64(id), DB_STATE(JOB_STATE_PROCESSING), l ? DB_STR(l->worker_id) : DB_NULL,
			     DB_STR(l ? l->worker_id : NULL), DB_I64(l ? l->attempt : 0), DB_END);
	if (r == -ENOENT)
		return -ESTALE;
	if (r < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	ret->order_id = db_row_i64(row, 0);
	ret->order_number = strdup_or_null(row[1]);
	ret->unit_index = (int)db_row_i64(row, 2);
	ret->attempts = (int)db_row_i64(row, 3);
	ret->max_attempts = (int)db_row_i64(row, 4);
	ret->generation = (int)db_row_i64(row, 5);
	ret->slot = strdup_or_null(row[6]);
	ret->serial = strdup_or_null(row[7]);
	ret->cancelled_by = strdup_or_null(row[8]);
	ret->duration = db_row_dbl(row, 9);
	ret->quantity = db_row_i64(row, 10);
	ret->claims = db_row_i64(row, 11);
	ret->device_capacity = db_row_u64(row, 12);
	ret->capacity = db_row_u64(row, 13);
	return 0;
}

/* After a unit reaches done, in its transaction (the job row already says done): the order row
 * and the events, in two statements. The order is done when every unit is: its row says so, and
 * order.done follows job.done (ORDER BY k: the insertion order, so the ids the relay keeps per
 * order put it after), once (the events' unique key: an order done before adds nothing). The
 * order row is written by every unit that reaches done, last or not. Galera: the order row's lock
 * (lock_job's FOR UPDATE) does not cross the nodes, so two last units finishing on two nodes
 * would each see the other still processing and neither would mark the order done (measured: 1
 * order of 30 left 'processing'). The write puts the row in both write sets: certification fails
 * one of them (1213) and db_transaction runs it again, seeing the other unit done. On one server
 * it changes nothing but updated_at. Takes job_done (NULL: -ENOMEM). */
static int done_write(struct db *db, const struct jrow *j, int64_t job_id, json_t *job_done)
{
	_cleanup_free_ char *jp = job_done ? json_dumps(job_done, JSON_COMPACT) : NULL;
	json_decref(job_done);
	json_auto_t *order_done = json_pack("{s:I, s:s, s:I}", "order_id", (json_int_t)j->order_id, "order_number",
					    j->order_number, "units", (json_int_t)j->quantity);
	_cleanup_free_ char *op = order_done ? json_dumps(order_done, JSON_COMPACT) : NULL;
	if (!jp || !op)
		return -ENOMEM;
	int r = db_exec(db, NULL,
			"UPDATE orders SET updated_at = NOW(6), status = IF(EXISTS (SELECT 1 FROM processing_jobs"
			" WHERE order_id = ? AND status <> ?), status, 'done') WHERE id = ?",
			DB_I64(j->order_id), DB_STATE(JOB_STATE_DONE), DB_I64(j->order_id), DB_END);
	if (r < 0)
		return r;
	return db_exec(db, NULL,
		       "INSERT INTO events (aggregate_type, aggregate_id, event_type, generation, seq, payload)"
		       " SELECT t, a, e, g, 0, p FROM (SELECT 1 AS k, 'job' AS t, ? AS a, 'job.done' AS e, ? AS g, ? AS p"
		       " UNION ALL SELECT 2, 'order', id, 'order.done', 0, ? FROM orders WHERE id = ? AND status = 'done') n"
		       " ORDER BY k ON DUPLICATE KEY UPDATE id = id",
		       DB_I64(job_id), DB_I64(j->generation), DB_STR(jp), DB_STR(op), DB_I64(j->order_id), DB_END);
}

struct fin {
	int64_t id;
	const struct job_lease *lease; /* NULL: the reaper */
	enum uf_code code;
	const char *reason;
	const double *delays;
	size_t n_delays;
	uint64_t bytes;
	const struct job_done_stats *stats; /* done: may be NULL */
	const struct job_log_row *rows;	    /* the transition's rows, in order */
	size_t n_rows;
	/* done: the writing stage's start, still to record (NULL: recorded), with the first
	 * n_started rows */
	const struct job_started *started;
	size_t n_started;
	enum job_state state; /* out */
};

/* bytes / seconds as a JSON number, or null when either is 0 (nothing measured). */
static json_t *speed_json(uint64_t bytes, double seconds)
{
	return bytes && seconds > 0 ? json_real((double)bytes / seconds) : json_null();
}

/* The rows of a final transition, in its transaction (after the guarded update, which a leased
 * insert would no longer match): the lease's attempt, or the first row's own for the reaper. */
static int fin_rows_add(struct db *db, const struct fin *f)
{
	if (!f->n_rows)
		return 0;
	return log_rows_add(db, f->id, f->lease ? f->lease->attempt : f->rows[0].attempt, f->rows, f->n_rows);
}

/* What job.started says of the job (besides its estimate). */
struct started_info {
	int64_t id;
	int attempt, unit_index, generation;
	int64_t claim;
	const char *order_number, *slot, *serial;
	uint64_t device_capacity, capacity;
};
static int started_add(struct db *db, const struct started_info *si, const struct job_started *s);

static int done_txn(struct db *db, void *userdata)
{
	struct fin *f = userdata;
	const struct job_done_stats none = {}, *st = f->stats ? f->stats : &none;
	struct jrow j;
	uint64_t aff = 0;
	int r = lock_job(db, f->id, f->lease, &j);
	if (r < 0)
		return r;
	/* the speeds as the row keeps them (NULL: not measured) and as job.done carries them */
	json_auto_t *wspeed = speed_json(st->write_bytes, st->write_seconds);
	json_auto_t *vspeed = speed_json(st->verify_bytes, st->verify_seconds);
	size_t skip = 0; /* rows already on record */
	if (f->started) {
		/* the writing stage's start, recorded with the end (a job of milliseconds): its event
		 * as job_enter_writing writes it; the row moves on to done below */
		const struct started_info si = { .id = f->id,
						 .attempt = f->lease->attempt,
						 .unit_index = j.unit_index,
						 .generation = j.generation,
						 .claim = j.claims,
						 .order_number = j.order_number,
						 .slot = j.slot,
						 .serial = j.serial,
						 .device_capacity = j.device_capacity,
						 .capacity = j.capacity };
		r = started_add(db, &si, f->started);
		if (r < 0) {
			jrow_done(&j);
			return r;
		}
		skip = r == 0 ? MIN(f->n_started, f->n_rows) : 0; /* 0: on record, with its rows */
	}
	r = db_exec(db, &aff,
		    "UPDATE processing_jobs SET status = ?, stage = 'done', progress = 100, completed_at = NOW(6),"
		    " write_bytes_per_s = ?, verify_bytes_per_s = ?,"
		    " bytes_written = ?, bytes_total = GREATEST(COALESCE(bytes_total, 0), ?), locked_by = NULL,"
		    " progress_detail = JSON_OBJECT('stage', 'done', 'bytes_done', ?, 'bytes_total', ?,"
		    "  'duration_seconds', TIMESTAMPDIFF(MICROSECOND, started_at, NOW(6)) / 1e6),"
		    " heartbeat_at = NOW(6), resume_state = NULL, error_code = NULL, fail_reason = NULL"
		    " WHERE " LEASE_GUARD_SQL " AND " TXN_LIVE_SQL,
		    DB_STATE(JOB_STATE_DONE), json_is_real(wspeed) ? DB_DBL(json_real_value(wspeed)) : DB_NULL,
		    json_is_real(vspeed) ? DB_DBL(json_real_value(vspeed)) : DB_NULL, DB_U64(f->bytes),
		    DB_U64(f->bytes), DB_U64(f->bytes), DB_U64(f->bytes), LEASE_ARGS(f->lease), DB_END);
	if (r >= 0 && aff != 1)
		r = -ESTALE;
	if (r >= 0 && f->n_rows > skip)
		r = log_rows_add(db, f->id, f->lease->attempt, f->rows + skip, f->n_rows - skip);
	/* job.done's duration_seconds: from the job's first start (started_at, set by its first
	 * claim), so it covers every attempt; attempt_seconds: the attempt that finished */
	if (r >= 0)
		r = done_write(db, &j, f->id,
			       json_pack("{s:I, s:s, s:i, s:i, s:s?, s:s?, s:I, s:f, s:o, s:O, s:O}", "job_id",
					 (json_int_t)f->id, "order_number", j.order_number, "unit_index", j.unit_index,
					 "attempts", j.attempts, "slot", j.slot, "device_serial", j.serial,
					 "bytes_written", (json_int_t)f->bytes, "duration_seconds", j.duration,
					 "attempt_seconds",
					 st->attempt_seconds > 0 ? json_real(st->attempt_seconds) : json_null(),
					 "write_bytes_per_s", wspeed, "verify_bytes_per_s", vspeed));
	f->state = JOB_STATE_DONE;
	jrow_done(&j);
	return r;
}

int job_finish_done_rows(struct db *db, const struct job_lease *l, uint64_t bytes_written,
			 const struct job_done_stats *st, const struct job_log_row *rows, size_t n_rows)
{
	return job_finish_done_started(db, l, bytes_written, st, NULL, rows, n_rows, 0);
}

int job_finish_done_started(struct db *db, const struct job_lease *l, uint64_t bytes_written,
			    const struct job_done_stats *st, const struct job_started *started,
			    const struct job_log_row *rows, size_t n_rows, size_t n_started)
{
	struct fin f = { .id = l->id,
			 .lease = l,
			 .bytes = bytes_written,
			 .stats = st,
			 .rows = rows,
			 .n_rows = n_rows,
			 .started = started,
			 .n_started = n_started };
	return db_transaction(db, done_txn, &f);
}

int job_finish_done(struct db *db, const struct job_lease *l, uint64_t bytes_written, const struct job_done_stats *st,
		    const struct job_log_row *row)
{
	return job_finish_done_rows(db, l, bytes_written, st, row, row ? 1 : 0);
}

/* The recent average of a capacity: the speeds of its newest JOB_SPEED_SAMPLE done jobs that
 * have them, read from the covering index ix_jobs_speed (status and capacity equal, newest
 * completed_at first; db/schema.c v3). Columns: how many, their average write and read-back
 * speeds (NULL when none was verified). */
#define JOB_SPEED_SQL                                                                                                  \
	"SELECT COUNT(*), AVG(w), AVG(v) FROM (SELECT write_bytes_per_s AS w, verify_bytes_per_s AS v"                 \
	" FROM processing_jobs FORCE INDEX (ix_jobs_speed) WHERE status = ? AND capacity_bytes = ?"                    \
	" AND write_bytes_per_s > 0 ORDER BY completed_at DESC LIMIT ?) recent"

/* The stick's history: the speeds of the newest done job written to a stick of this serial, from
 * ix_jobs_serial_speed (db/schema.c v3). */
#define STICK_SPEED_SQL                                                                                                \
	"SELECT write_bytes_per_s, verify_bytes_per_s FROM processing_jobs FORCE INDEX (ix_jobs_serial_speed)"         \
	" WHERE device_serial = ? AND status = ? AND write_bytes_per_s > 0 ORDER BY completed_at DESC LIMIT 1"

/* job.started's estimate. */
struct estimate {
	const char *source; /* "stick", "stick_history", "recent_average"; NULL: none */
	int64_t jobs;	    /* recent_average: how many jobs it averages */
	double write_bps, verify_bps, seconds;
};

static int estimate_of(struct db *db, uint64_t capacity, const char *serial, const struct job_started *s,
		       struct estimate *ret)
{
	struct estimate e = {};
	if (s->write_bytes_per_s > 0) {
		e.source = "stick";
		e.write_bps = s->write_bytes_per_s;
		e.verify_bps = s->verify_bytes_per_s;
	}
	if (!e.source && serial && *serial) {
		_cleanup_result_ struct db_res *res = NULL;
		db_row row;
		int r = db_query_row(db, &res, &row, STICK_SPEED_SQL, DB_STR(serial), DB_STATE(JOB_STATE_DONE), DB_END);
		if (r < 0 && r != -ENOENT)
			return r;
		if (r >= 0) {
			e.source = "stick_history";
			e.jobs = 1;
			e.write_bps = db_row_dbl(row, 0);
			e.verify_bps = row[1] ? db_row_dbl(row, 1) : 0;
		}
	}
	if (!e.source) {
		_cleanup_result_ struct db_res *res = NULL;
		db_row row;
		int r = db_query_row(db, &res, &row, JOB_SPEED_SQL, DB_STATE(JOB_STATE_DONE), DB_U64(capacity),
				     DB_I64(JOB_SPEED_SAMPLE), DB_END);
		if (r < 0)
			return r;
		e.jobs = db_row_i64(row, 0);
		e.write_bps = row[1] ? db_row_dbl(row, 1) : 0;
		e.verify_bps = row[2] ? db_row_dbl(row, 2) : 0;
		if (e.jobs > 0 && e.write_bps > 0)
			e.source = "recent_average";
	}
	if (e.source) {
		if (e.verify_bps <= 0)
			e.verify_bps = e.write_bps; /* read-back assumed as fast as writing */
		e.seconds = (double)s->bytes_to_write / e.write_bps;
		if (s->verify)
			e.seconds += (double)s->bytes_to_write / e.verify_bps;
	}
	*ret = e;
	return 0;
}

struct enter_ctx {
	const struct job_lease *l;
	const struct job_started *s;
	const struct job_log_row *rows;
	size_t n_rows;
};

/* job.started with its estimate, once per claim: 1 inserted, 0 when it is on record already. */
static int started_add(struct db *db, const struct started_info *si, const struct job_started *s)
{
	struct estimate e;
	int r = estimate_of(db, si->capacity, si->serial, s, &e);
	if (r < 0)
		return r;
	return event_add_new(db, "job", si->id, "job.started", si->generation, si->claim,
			     json_pack("{s:I, s:s, s:i, s:i, s:s?, s:s?, s:I, s:I, s:I, s:b,"
				       " s:o, s:s?, s:s?, s:I, s:o, s:o}",
				       "job_id", (json_int_t)si->id, "order_number", si->order_number, "unit_index",
				       si->unit_index, "attempt", si->attempt, "slot", si->slot, "device_serial",
				       si->serial, "device_capacity_bytes", (json_int_t)si->device_capacity,
				       "capacity_bytes", (json_int_t)si->capacity, "bytes_to_write",
				       (json_int_t)s->bytes_to_write, "verify", (int)s->verify, "estimate_seconds",
				       e.source ? json_real(e.seconds) : json_null(), "estimate_source", e.source,
				       "estimate_reason", e.source ? NULL : "no measurement yet", "estimate_jobs",
				       (json_int_t)e.jobs, "estimate_write_bytes_per_s",
				       e.source ? json_real(e.write_bps) : json_null(), "estimate_verify_bytes_per_s",
				       e.source && s->verify ? json_real(e.verify_bps) : json_null()));
}

static int enter_writing_txn(struct db *db, void *userdata)
{
	struct enter_ctx *c = userdata;
	_cleanup_result_ struct db_res *res = NULL;
	db_row row;
	uint64_t aff = 0;
	/* the guard: the update's own match (it locks the row) */
	int r = db_exec(db, &aff,
			"UPDATE processing_jobs SET stage = 'writing', heartbeat_at = NOW(6) WHERE " LEASE_GUARD_SQL
			" AND " TXN_LIVE_SQL,
			LEASE_ARGS(c->l), DB_END);
	if (r < 0)
		return r;
	if (aff != 1)
		return -ESTALE;
	r = db_query_row(db, &res, &row,
			 "SELECT o.order_number, j.unit_index, j.generation, j.claims, j.slot, j.device_serial,"
			 " j.device_capacity_bytes, j.capacity_bytes"
			 " FROM processing_jobs j JOIN orders o ON o.id = j.order_id WHERE j.id = ?",
			 DB_I64(c->l->id), DB_END);
	if (r == -ENOENT)
		return -ESTALE;
	if (r < 0)
		return r;
	const struct started_info si = { .id = c->l->id,
					 .attempt = c->l->attempt,
					 .unit_index = (int)db_row_i64(row, 1),
					 .generation = (int)db_row_i64(row, 2),
					 .claim = db_row_i64(row, 3),
					 .order_number = row[0],
					 .slot = row[4],
					 .serial = row[5],
					 .device_capacity = db_row_u64(row, 6),
					 .capacity = db_row_u64(row, 7) };
	r = started_add(db, &si, c->s);
	/* 0: a retry of a transaction whose commit went through unseen; it is on record, rows and all */
	if (r > 0)
		r = log_rows_add(db, c->l->id, c->l->attempt, c->rows, c->n_rows);
	return r < 0 ? r : 0;
}

int job_enter_writing_rows(struct db *db, const struct job_lease *l, const struct job_started *s,
			   const struct job_log_row *rows, size_t n_rows)
{
	struct enter_ctx c = { l, s, rows, n_rows };
	return db_transaction(db, enter_writing_txn, &c);
}

int job_enter_writing(struct db *db, const struct job_lease *l, const struct job_started *s,
		      const struct job_log_row *row)
{
	return job_enter_writing_rows(db, l, s, row, row ? 1 : 0);
}

/* A status column's text as the enum: -EPROTO for a name the schema does not have. */
static int state_of(const char *name, enum job_state *ret)
{
	enum job_state s = job_state_from_name(name);
	if (s < 0)
		return -EPROTO;
	*ret = s;
	return 0;
}

/* How a read-side struct is filled from its row: which columns are numbers (into int64_t, int
 * or double fields) and which are strings (malloc'd copies into char * fields, NULL for NULL), by
 * field offset. One loader and one destructor then serve every list. */
struct col_map {
	size_t off;
	unsigned col;
	enum { COL_I64, COL_INT, COL_DBL, COL_STR } kind;
};
#define COL(c, type, field, k)                                                                                         \
	{                                                                                                              \
		offsetof(type, field), (c), (k)                                                                        \
	}

static void row_done(void *elem, const struct col_map *m, size_t n_cols)
{
	for (size_t i = 0; i < n_cols; i++)
		if (m[i].kind == COL_STR)
			free(*(char **)((char *)elem + m[i].off));
}

static int row_fill(db_row row, void *elem, const struct col_map *m, size_t n_cols)
{
	for (size_t i = 0; i < n_cols; i++) {
		void *f = (char *)elem + m[i].off;
		const char *v = row[m[i].col];
		if (m[i].kind == COL_I64) {
			*(int64_t *)f = db_row_i64(row, m[i].col);
		} else if (m[i].kind == COL_INT) {
			*(int *)f = (int)db_row_i64(row, m[i].col);
		} else if (m[i].kind == COL_DBL) {
			*(double *)f = db_row_dbl(row, m[i].col);
		} else {
			*(char **)f = v ? strdup(v) : NULL;
			if (v && !*(char **)f)
				return -ENOMEM;
		}
	}
	return 0;
}

/* Free an array of n elements of size bytes filled by rows_load with map m. Returns NULL. */
static void *rows_free(void *a, size_t n, size_t size, const struct col_map *m, size_t n_cols)
{
	for (size_t i = 0; a && i < n; i++)
		row_done((char *)a + size * i, m, n_cols);
	free(a);
	return NULL;
}

/* Every row of res into a calloc'd array (*ret, NULL when there are no rows; *ret_n rows) of
 * elements of size bytes filled by map m. 0 or -ENOMEM (then nothing is returned). */
static int rows_load(struct db_res *res, size_t size, const struct col_map *m, size_t n_cols, void **ret, size_t *ret_n)
{
	size_t n = db_res_count(res), k = 0;
	char *a = n ? calloc(n, size) : NULL;
	int r = n && !a ? -ENOMEM : 0;
	db_row row;
	while (r >= 0 && k < n && (row = db_res_next(res)))
		r = row_fill(row, a + size * k++, m, n_cols);
	if (r < 0) {
		rows_free(a, k, size, m, n_cols);
		return r;
	}
	*ret = a;
	*ret_n = k;
	return 0;
}

/* The job's state; lock: with its row locked (FOR UPDATE) in the caller's transaction.
 * -ENOENT: no such job. */
static int read_state(struct db *db, int64_t id, bool lock, enum job_state *ret)
{
	_cleanup_result_ struct db_res *res = NULL;
	db_row row;
	int r = db_query_row(db, &res, &row,
			     lock ? "SELECT status FROM processing_jobs WHERE id = ? FOR UPDATE"
				  : "SELECT status FROM processing_jobs WHERE id = ?",
			     DB_I64(id), DB_END);
	if (r < 0)
		return r;
	return state_of(row[0], ret);
}

int job_get_state(struct db *db, int64_t id, enum job_state *ret) { return read_state(db, id, false, ret); }

int job_done_by(struct db *db, const struct job_lease *l, bool *ret)
{
	int64_t n = 0;
	int r = db_query_i64(db, &n,
			     "SELECT COUNT(*) FROM processing_jobs WHERE id = ? AND status = ? AND attempts = ?",
			     DB_I64(l->id), DB_STATE(JOB_STATE_DONE), DB_I64(l->attempt), DB_END);
	if (r < 0)
		return r;
	*ret = n == 1;
	return 0;
}

/* The columns of job_get_status's SELECT after the status. */
static const struct col_map status_cols[] = {
	COL(1, struct job_status, stage, COL_STR),	 COL(2, struct job_status, progress, COL_INT),
	COL(3, struct job_status, attempts, COL_INT),	 COL(4, struct job_status, max_attempts, COL_INT),
	COL(5, struct job_status, error_code, COL_STR),	 COL(6, struct job_status, rate_bytes_per_s, COL_DBL),
	COL(7, struct job_status, eta_seconds, COL_DBL), COL(8, struct job_status, slot, COL_STR),
};

void job_status_done(struct job_status *s)
{
	row_done(s, status_cols, ARRAY_SIZE(status_cols));
	*s = (struct job_status){ 0 };
}

int job_get_status(struct db *db, int64_t id, struct job_status *ret)
{
	_cleanup_result_ struct db_res *res = NULL;
	db_row row;
	int r = db_query_row(db, &res, &row,
			     "SELECT status, stage, progress, attempts, max_attempts, error_code,"
			     " COALESCE(JSON_VALUE(progress_detail, '$.rate_bytes_per_s'), 0),"
			     " COALESCE(JSON_VALUE(progress_detail, '$.eta_seconds'), 0), slot"
			     " FROM processing_jobs WHERE id = ?",
			     DB_I64(id), DB_END);
	if (r < 0)
		return r;
	struct job_status s = {};
	r = state_of(row[0], &s.state);
	if (r >= 0)
		r = row_fill(row, &s, status_cols, ARRAY_SIZE(status_cols));
	if (r < 0) {
		job_status_done(&s);
		return r;
	}
	*ret = s;
	return 0;
}

static int fail_txn(struct db *db, void *userdata)
{
	struct fin *f = userdata;
	struct jrow j;
	uint64_t aff = 0;
	const char *code = uf_code_name(f->code) ? uf_code_name(f->code) : "PROCESSING_FAILED";
	enum uf_code_class cls = uf_code_class(f->code);
	int r = lock_job(db, f->id, f->lease, &j);
	if (r < 0)
		return r;

	if (cls == UFC_CLASS_BAD_STICK) {
		f->state = JOB_STATE_QUEUED;
		r = db_exec(db, &aff,
			    "UPDATE processing_jobs SET status = ?, stage = 'pending', progress = 0,"
			    " attempts = GREATEST(attempts - 1, 0), locked_by = NULL, slot = NULL, device_serial = NULL,"
			    " device_capacity_bytes = NULL, next_attempt_at = NOW(6), error_code = ?, fail_reason = ?"
			    " WHERE id = ? AND status = ? AND " TXN_LIVE_SQL,
			    DB_STATE(f->state), DB_STR(code), DB_STR(f->reason), DB_I64(f->id),
			    DB_STATE(JOB_STATE_PROCESSING), DB_END);
	} else if (cls == UFC_CLASS_CANCELLED) {
		f->state = JOB_STATE_CANCELLED;
		r = db_exec(db, &aff,
			    "UPDATE processing_jobs SET status = ?, cancelled_at = NOW(6), locked_by = NULL,"
			    " cancelled_by = COALESCE(cancelled_by, 'operator'), error_code = ?, fail_reason = ?"
			    " WHERE id = ? AND status = ? AND " TXN_LIVE_SQL,
			    DB_STATE(f->state), DB_STR(uf_code_name(UFC_CANCELLED)), DB_STR(f->reason), DB_I64(f->id),
			    DB_STATE(JOB_STATE_PROCESSING), DB_END);
	} else if (cls == UFC_CLASS_RETRYABLE && j.attempts < j.max_attempts && j.attempts >= 1) {
		size_t k = (size_t)j.attempts - 1;
		double delay = f->n_delays ? f->delays[k < f->n_delays ? k : f->n_delays - 1] : 0;
		f->state = JOB_STATE_RETRY;
		r = db_exec(db, &aff,
			    "UPDATE processing_jobs SET status = ?, locked_by = NULL,"
			    " next_attempt_at = NOW(6) + INTERVAL ? MICROSECOND, error_code = ?, fail_reason = ?"
			    " WHERE id = ? AND status = ? AND " TXN_LIVE_SQL,
			    DB_STATE(f->state), DB_I64((int64_t)llround(delay * 1e6)), DB_STR(code), DB_STR(f->reason),
			    DB_I64(f->id), DB_STATE(JOB_STATE_PROCESSING), DB_END);
	} else {
		f->state = JOB_STATE_FAILED;
		r = db_exec(db, &aff,
			    "UPDATE processing_jobs SET status = ?, failed_at = NOW(6), locked_by = NULL,"
			    " error_code = ?, fail_reason = ? WHERE id = ? AND status = ? AND " TXN_LIVE_SQL,
			    DB_STATE(f->state), DB_STR(code), DB_STR(f->reason), DB_I64(f->id),
			    DB_STATE(JOB_STATE_PROCESSING), DB_END);
		if (r >= 0 && aff == 1)
			r = event_add(db, "job", f->id, "job.failed", j.generation,
				      json_pack("{s:I, s:s, s:i, s:i, s:s, s:s?}", "job_id", (json_int_t)f->id,
						"order_number", j.order_number, "unit_index", j.unit_index, "attempts",
						j.attempts, "error_code", code, "reason", f->reason));
		if (r >= 0 && aff == 1)
			r = db_exec(db, NULL, "UPDATE orders SET status = 'failed' WHERE id = ? AND status <> 'failed'",
				    DB_I64(j.order_id), DB_END);
		if (r >= 0 && aff == 1)
			r = event_add(db, "order", j.order_id, "order.failed", 0,
				      json_pack("{s:I, s:s, s:I, s:s, s:b}", "order_id", (json_int_t)j.order_id,
						"order_number", j.order_number, "job_id", (json_int_t)f->id,
						"error_code", code, "refund_due", 1));
	}
	if (r >= 0 && aff != 1)
		r = -ESTALE;
	if (r >= 0)
		r = fin_rows_add(db, f);
	jrow_done(&j);
	return r;
}

int job_finish_fail_rows(struct db *db, const struct job_lease *l, enum uf_code code, const char *reason,
			 const struct job_log_row *rows, size_t n_rows, const double *delays, size_t n_delays,
			 enum job_state *ret_state)
{
	struct fin f = { .id = l->id,
			 .lease = l,
			 .code = code,
			 .reason = reason,
			 .delays = delays,
			 .n_delays = n_delays,
			 .rows = rows,
			 .n_rows = n_rows };
	int r = db_transaction(db, fail_txn, &f);
	if (r >= 0 && ret_state)
		*ret_state = f.state;
	return r;
}

int job_finish_fail(struct db *db, const struct job_lease *l, enum uf_code code, const char *reason,
		    const struct job_log_row *row, const double *delays, size_t n_delays, enum job_state *ret_state)
{
	return job_finish_fail_rows(db, l, code, reason, row, row ? 1 : 0, delays, n_delays, ret_state);
}

struct hand_back {
	const struct job_lease *l;
	const char *why;
	const struct job_log_row *rows;
	size_t n_rows;
};

static int hand_back_txn(struct db *db, void *userdata)
{
	struct hand_back *h = userdata;
	uint64_t aff = 0;
	/* the row first (its attempt is the lease's, which the update takes back) */
	int r = lock_leased(db, h->l);
	if (r >= 0)
		r = log_rows_add(db, h->l->id, h->l->attempt, h->rows, h->n_rows);
	if (r >= 0)
		r = db_exec(db, &aff,
			    "UPDATE processing_jobs SET status = ?, attempts = GREATEST(attempts - 1, 0),"
			    " locked_by = NULL, next_attempt_at = NOW(6), fail_reason = ? WHERE " LEASE_GUARD_SQL
			    " AND " TXN_LIVE_SQL,
			    DB_STATE(JOB_STATE_RETRY), DB_STR(h->why), LEASE_ARGS(h->l), DB_END);
	if (r < 0)
		return r;
	return aff == 1 ? 0 : -ESTALE;
}

int job_hand_back_rows(struct db *db, const struct job_lease *l, const char *why, const struct job_log_row *rows,
		       size_t n_rows)
{
	struct hand_back h = { l, why, rows, n_rows };
	return db_transaction(db, hand_back_txn, &h);
}

int job_hand_back(struct db *db, const struct job_lease *l, const char *why, const struct job_log_row *row)
{
	return job_hand_back_rows(db, l, why, row, row ? 1 : 0);
}

struct cancel_ctx {
	int64_t id;
	const char *by;
	enum job_state state;
};

static int cancel_txn(struct db *db, void *userdata)
{
	struct cancel_ctx *c = userdata;
	enum job_state now;
	uint64_t aff = 0;
	int r = read_state(db, c->id, true, &now);
	if (r < 0)
		return r;
	if (now == JOB_STATE_QUEUED || now == JOB_STATE_RETRY) {
		r = db_exec(db, &aff,
			    "UPDATE processing_jobs SET status = ?, cancel_requested_at = NOW(6),"
			    " cancelled_at = NOW(6), cancelled_by = ?, error_code = ?, fail_reason = 'cancelled by operator'"
			    " WHERE id = ? AND status = ? AND " TXN_LIVE_SQL,
			    DB_STATE(JOB_STATE_CANCELLED), DB_STR(c->by), DB_STR(uf_code_name(UFC_CANCELLED)),
			    DB_I64(c->id), DB_STATE(now), DB_END);
		c->state = JOB_STATE_CANCELLED;
	} else if (now == JOB_STATE_PROCESSING) {
		r = db_exec(db, &aff,
			    "UPDATE processing_jobs SET cancel_requested_at = COALESCE(cancel_requested_at, NOW(6)),"
			    " cancelled_by = ? WHERE id = ? AND status = ? AND " TXN_LIVE_SQL,
			    DB_STR(c->by), DB_I64(c->id), DB_STATE(JOB_STATE_PROCESSING), DB_END);
		c->state = JOB_STATE_PROCESSING;
	} else {
		return -EALREADY;
	}
	if (r < 0)
		return r;
	if (aff != 1)
		return -EAGAIN;
	json_t *m = json_pack("{s:s}", "result", c->state == JOB_STATE_CANCELLED ? "cancelled" : "cancel_requested");
	r = audit_add(db, c->by, "job", c->id, "cancel", m);
	json_decref(m);
	return r;
}

int job_cancel(struct db *db, int64_t id, const char *by, enum job_state *ret_state)
{
	struct cancel_ctx c = { .id = id, .by = by };
	int r = db_transaction(db, cancel_txn, &c);
	if (r >= 0)
		*ret_state = c.state;
	return r;
}

struct retry_ctx {
	int64_t id;
	const char *actor;
	int max_attempts;
};

static int retry_txn(struct db *db, void *userdata)
{
	struct retry_ctx *c = userdata;
	_cleanup_result_ struct db_res *res = NULL;
	enum job_state prev;
	uint64_t aff = 0;
	db_row row;
	int r = db_query_row(db, &res, &row, "SELECT status, order_id FROM processing_jobs WHERE id = ? FOR UPDATE",
			     DB_I64(c->id), DB_END);
	if (r < 0)
		return r;
	r = state_of(row[0], &prev);
	if (r < 0)
		return r;
	if (prev != JOB_STATE_FAILED && prev != JOB_STATE_CANCELLED)
		return -EBUSY;
	int64_t order_id = db_row_i64(row, 1);
	r = db_exec(db, &aff,
		    "UPDATE processing_jobs SET status = ?, stage = 'pending', progress = 0, progress_detail = NULL,"
		    " attempts = 0, max_attempts = ?, generation = generation + 1, next_attempt_at = NOW(6),"
		    " locked_by = NULL, heartbeat_at = NULL, slot = NULL, device_serial = NULL, device_capacity_bytes = NULL,"
		    " bytes_written = 0, resume_state = NULL, started_at = NULL, completed_at = NULL,"
		    " failed_at = NULL, cancel_requested_at = NULL, cancelled_at = NULL, cancelled_by = NULL,"
		    " fail_reason = NULL, error_code = NULL, stuck_reported_at = NULL"
		    " WHERE id = ? AND status = ? AND " TXN_LIVE_SQL,
		    DB_STATE(JOB_STATE_QUEUED), DB_I64(c->max_attempts), DB_I64(c->id), DB_STATE(prev), DB_END);
	if (r < 0)
		return r;
	if (aff != 1)
		return -EAGAIN;
	r = db_exec(db, NULL, "UPDATE orders SET status = 'processing' WHERE id = ? AND status IN ('failed', 'done')",
		    DB_I64(order_id), DB_END);
	if (r < 0)
		return r;
	json_t *m = json_pack("{s:s, s:i}", "previous_status", job_state_name(prev), "max_attempts", c->max_attempts);
	r = audit_add(db, c->actor, "job", c->id, "retry", m);
	json_decref(m);
	return r;
}

int job_retry(struct db *db, int64_t id, const char *actor, int max_attempts)
{
	struct retry_ctx c = { id, actor, max_attempts };
	return db_transaction(db, retry_txn, &c);
}

struct reap_one {
	int64_t id;
	double timeout;
	const double *delays;
	size_t n_delays;
	enum job_state state;
};

/* One stale job: lock it only if it is still processing with a stale heartbeat, and only if
 * nobody holds it right now (SKIP LOCKED: a transaction on it means its worker is ending it;
 * the reaper never waits behind a worker, and the next round sees how it went). */
static int reap_txn(struct db *db, void *userdata)
{
	struct reap_one *c = userdata;
	_cleanup_result_ struct db_res *res = NULL;
	int r = db_query(db, &res,
			 "SELECT attempts, stage, cancel_requested_at IS NOT NULL FROM processing_jobs"
			 " WHERE id = ? AND status = ? AND heartbeat_at < NOW(6) - INTERVAL ? MICROSECOND"
			 " FOR UPDATE SKIP LOCKED",
			 DB_I64(c->id), DB_STATE(JOB_STATE_PROCESSING), DB_I64((int64_t)llround(c->timeout * 1e6)),
			 DB_END);
	if (r < 0)
		return r;
	db_row row = db_res_next(res);
	if (!row)
		return -ESTALE; /* it beat or finished meanwhile */
	/* The stage: the attempt's last log row says where the worker was (the job row's stage is
	 * written with the heartbeat and lags a stage start by up to a beat). */
	_cleanup_result_ struct db_res *sres = NULL;
	r = db_query(db, &sres,
		     "SELECT stage FROM processing_job_logs WHERE job_id = ? AND attempt = ?"
		     " AND stage NOT IN ('pending', 'done') ORDER BY id DESC LIMIT 1",
		     DB_I64(c->id), DB_I64(db_row_i64(row, 0)), DB_END);
	if (r < 0)
		return r;
	db_row srow = db_res_next(sres);
	const char *stage = srow && srow[0] ? srow[0] : row[1];
	/* An operator asked to cancel a job whose worker then died: the cancel wins (no retry, no
	 * failure and no refund event for a unit the operator stopped). */
	bool cancel = db_row_i64(row, 2) != 0;
	struct job_log_row lr = {
		.attempt = (int)db_row_i64(row, 0),
		.level = "warn",
		.stage = stage,
		.category = "system",
		.message =
			cancel ? "stuck job cancelled by the reaper: cancel was requested and its worker stopped answering"
			       : "stuck job recovered by the reaper: no heartbeat from its worker",
		.error_code = uf_code_name(cancel ? UFC_CANCELLED : UFC_STUCK_TIMEOUT),
	};
	struct fin f = { .id = c->id,
			 .code = cancel ? UFC_CANCELLED : UFC_STUCK_TIMEOUT,
			 .delays = c->delays,
			 .n_delays = c->n_delays,
			 .rows = &lr,
			 .n_rows = 1,
			 .reason = cancel ? "cancelled (its worker stopped answering before it could stop)"
					  : "no heartbeat from the worker (it died or lost the database)" };
	r = fail_txn(db, &f);
	if (r >= 0)
		c->state = f.state;
	return r;
}

static int stuck_queued_txn(struct db *db, void *userdata)
{
	struct reap_one *c = userdata;
	uint64_t aff = 0;
	int r = db_exec(db, &aff,
			"UPDATE processing_jobs SET stuck_reported_at = NOW(6) WHERE id = ? AND status = ? AND " TXN_LIVE_SQL
			" AND stuck_reported_at IS NULL AND next_attempt_at < NOW(6) - INTERVAL ? MICROSECOND",
			DB_I64(c->id), DB_STATE(JOB_STATE_QUEUED), DB_I64((int64_t)llround(c->timeout * 1e6)), DB_END);
	if (r < 0)
		return r;
	if (aff != 1)
		return -ESTALE;
	_cleanup_result_ struct db_res *res = NULL;
	db_row row;
	r = db_query_row(db, &res, &row,
			 "SELECT o.order_number, j.generation, TIMESTAMPDIFF(SECOND, j.next_attempt_at, NOW(6)), j.attempts"
			 " FROM processing_jobs j JOIN orders o ON o.id = j.order_id WHERE j.id = ?",
			 DB_I64(c->id), DB_END);
	if (r == -ENOENT)
		return -ESTALE;
	if (r < 0)
		return r;
	r = event_add(db, "job", c->id, "job.stuck", (int)db_row_i64(row, 1),
		      json_pack("{s:I, s:s, s:s, s:I}", "job_id", (json_int_t)c->id, "order_number", row[0], "status",
				job_state_name(JOB_STATE_QUEUED), "queued_seconds", (json_int_t)db_row_i64(row, 2)));
	if (r >= 0)
		r = job_log(db, c->id, (int)db_row_i64(row, 3), "warn", "pending", "system",
			    "job has waited in the queue longer than stuck.queued_timeout (no fitting stick?)",
			    uf_code_name(UFC_STUCK_TIMEOUT), NULL);
	return r;
}

static bool in_list(int64_t id, const int64_t *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == id)
			return true;
	return false;
}

void reap_stats_done(struct reap_stats *st)
{
	st->actions = mfree(st->actions);
	st->n_actions = 0;
}

static int reap_note(struct reap_stats *st, int64_t id, enum job_state state, bool stuck_reported)
{
	struct reap_action *a = reallocarray(st->actions, st->n_actions + 1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	st->actions = a;
	a[st->n_actions++] = (struct reap_action){ .job_id = id, .state = state, .stuck_reported = stuck_reported };
	if (stuck_reported)
		st->stuck_reported++;
	else if (state == JOB_STATE_FAILED)
		st->failed++;
	else if (state == JOB_STATE_CANCELLED)
		st->cancelled++;
	else
		st->retried++;
	return 0;
}

/* One pass of the reaper: the stale processing jobs (pass 0) or the jobs queued too long. */
static int reap_pass(struct db *db, int pass, double timeout, const double *delays, size_t n_delays,
		     const int64_t *skip, size_t n_skip, struct reap_stats *st)
{
	_cleanup_result_ struct db_res *res = NULL;
	int r = pass == 0 ? db_query(db, &res,
				     "SELECT id FROM processing_jobs WHERE status = ?"
				     " AND heartbeat_at < NOW(6) - INTERVAL ? MICROSECOND ORDER BY id",
				     DB_STATE(JOB_STATE_PROCESSING), DB_I64((int64_t)llround(timeout * 1e6)), DB_END)
			  : db_query(db, &res,
				     "SELECT id FROM processing_jobs WHERE status = ? AND stuck_reported_at IS NULL"
				     " AND next_attempt_at < NOW(6) - INTERVAL ? MICROSECOND ORDER BY id",
				     DB_STATE(JOB_STATE_QUEUED), DB_I64((int64_t)llround(timeout * 1e6)), DB_END);
	if (r < 0)
		return r;
	db_row row;
	while ((row = db_res_next(res))) {
		struct reap_one c = {
			.id = db_row_i64(row, 0), .timeout = timeout, .delays = delays, .n_delays = n_delays
		};
		if (pass == 0 && in_list(c.id, skip, n_skip))
			continue;
		r = db_transaction(db, pass == 0 ? reap_txn : stuck_queued_txn, &c);
		if (r == -ESTALE)
			continue; /* it beat, finished or was reported meanwhile */
		if (r < 0)
			return r;
		r = reap_note(st, c.id, pass == 0 ? c.state : JOB_STATE_QUEUED, pass != 0);
		if (r < 0)
			return r;
	}
	return 0;
}

int queue_reap(struct db *db, double processing_timeout, double queued_timeout, const double *delays, size_t n_delays,
	       const int64_t *skip, size_t n_skip, struct reap_stats *ret)
{
	struct reap_stats st = {};
	int r = reap_pass(db, 0, processing_timeout, delays, n_delays, skip, n_skip, &st);
	if (r >= 0)
		r = reap_pass(db, 1, queued_timeout, delays, n_delays, skip, n_skip, &st);
	if (r < 0) {
		reap_stats_done(&st);
		return r;
	}
	*ret = st;
	return 0;
}

int queue_get_stats(struct db *db, double processing_timeout, double queued_timeout, struct queue_stats *ret)
{
	_cleanup_result_ struct db_res *res = NULL;
	struct queue_stats st = {};
	int r = db_query(db, &res, "SELECT status, jobs, avg_duration_seconds FROM v_queue_stats", DB_END);
	if (r < 0)
		return r;
	db_row row;
	while ((row = db_res_next(res))) {
		enum job_state s;
		r = state_of(row[0], &s);
		if (r < 0)
			return r;
		st.jobs[s] = db_row_i64(row, 1);
		if (s == JOB_STATE_DONE && row[2]) {
			st.avg_duration_seconds = db_row_dbl(row, 2);
			st.have_avg_duration = true;
		}
	}
	r = db_query_i64(
		db, &st.stuck_processing,
		"SELECT COUNT(*) FROM processing_jobs WHERE status = ? AND heartbeat_at < NOW(6) - INTERVAL ? MICROSECOND",
		DB_STATE(JOB_STATE_PROCESSING), DB_I64((int64_t)llround(processing_timeout * 1e6)), DB_END);
	if (r < 0)
		return r;
	r = db_query_i64(
		db, &st.stuck_queued,
		"SELECT COUNT(*) FROM processing_jobs WHERE status = ? AND next_attempt_at < NOW(6) - INTERVAL ? MICROSECOND",
		DB_STATE(JOB_STATE_QUEUED), DB_I64((int64_t)llround(queued_timeout * 1e6)), DB_END);
	if (r < 0)
		return r;
	/* the oldest unpublished event is the one with the lowest id: ix_events_unpublished */
	_cleanup_result_ struct db_res *ures = NULL;
	r = db_query_row(db, &ures, &row,
			 "SELECT TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6)) / 1e6 FROM events"
			 " WHERE published_at IS NULL ORDER BY id LIMIT 1",
			 DB_END);
	if (r < 0 && r != -ENOENT)
		return r;
	st.have_unpublished = r >= 0;
	st.oldest_unpublished_age_seconds = r >= 0 ? db_row_dbl(row, 0) : 0;
	*ret = st;
	return 0;
}

int queue_count_runnable(struct db *db, int64_t *ret)
{
	return db_query_i64(db, ret, "SELECT COUNT(*) FROM processing_jobs WHERE status IN (?, ?)",
			    DB_STATE(JOB_STATE_QUEUED), DB_STATE(JOB_STATE_RETRY), DB_END);
}

int queue_count_fitting(struct db *db, const char *station, uint64_t device_bytes, double capacity_tolerance,
			int64_t *ret)
{
	return db_query_i64(db, ret,
			    "SELECT COUNT(*) FROM processing_jobs WHERE status IN (?, ?)"
			    " AND capacity_bytes <= ? AND min_device_bytes <= ? AND (station IS NULL OR station = ?)",
			    DB_STATE(JOB_STATE_QUEUED), DB_STATE(JOB_STATE_RETRY),
			    DB_U64(max_capacity_for(device_bytes, capacity_tolerance)), DB_U64(device_bytes),
			    DB_STR(station), DB_END);
}

/* The columns of event_list's SELECT. */
static const struct col_map event_cols[] = {
	COL(0, struct event, id, COL_I64),	     COL(1, struct event, aggregate_type, COL_STR),
	COL(2, struct event, aggregate_id, COL_I64), COL(3, struct event, event_type, COL_STR),
	COL(4, struct event, generation, COL_INT),   COL(5, struct event, payload, COL_STR),
	COL(6, struct event, created_at, COL_STR),   COL(7, struct event, published_at, COL_STR),
	COL(8, struct event, order_id, COL_I64),
};

struct event *event_list_free(struct event *e, size_t n)
{
	return rows_free(e, n, sizeof(*e), event_cols, ARRAY_SIZE(event_cols));
}

int event_list(struct db *db, int64_t since, bool unpublished, int limit, struct event **ret, size_t *ret_n)
{
	_cleanup_result_ struct db_res *res = NULL;
	/* ix_events_unpublished (published_at, id) serves the unpublished form; a job's order by
	 * its primary key */
#define EVENT_LIST_SQL(where)                                                                                          \
	"SELECT e.id, e.aggregate_type, e.aggregate_id, e.event_type, e.generation, e.payload,"                        \
	" e.created_at, e.published_at,"                                                                               \
	" COALESCE(IF(e.aggregate_type = 'order', e.aggregate_id, NULL), j.order_id, 0)"                               \
	" FROM events e LEFT JOIN processing_jobs j ON e.aggregate_type = 'job' AND j.id = e.aggregate_id"             \
	" WHERE " where " ORDER BY e.id LIMIT ?"
	int64_t n = limit > 0 && limit <= 1000 ? limit : 1000;
	/* two statements, not "? = 0 OR published_at IS NULL": the unpublished form must read
	 * ix_events_unpublished, not walk every published event after `since` */
	int r = unpublished ? db_query(db, &res, EVENT_LIST_SQL("e.published_at IS NULL AND e.id > ?"), DB_I64(since),
				       DB_I64(n), DB_END)
			    : db_query(db, &res, EVENT_LIST_SQL("e.id > ?"), DB_I64(since), DB_I64(n), DB_END);
#undef EVENT_LIST_SQL
	if (r < 0)
		return r;
	void *a = NULL;
	r = rows_load(res, sizeof(struct event), event_cols, ARRAY_SIZE(event_cols), &a, ret_n);
	if (r >= 0)
		*ret = a;
	return r;
}

/* The columns of job_log_list's SELECT. */
static const struct col_map log_cols[] = {
	COL(0, struct job_log_entry, id, COL_I64),	COL(1, struct job_log_entry, created_at, COL_STR),
	COL(2, struct job_log_entry, attempt, COL_INT), COL(3, struct job_log_entry, level, COL_STR),
	COL(4, struct job_log_entry, stage, COL_STR),	COL(5, struct job_log_entry, category, COL_STR),
	COL(6, struct job_log_entry, message, COL_STR), COL(7, struct job_log_entry, error_code, COL_STR),
	COL(8, struct job_log_entry, details, COL_STR),
};

struct job_log_entry *job_log_list_free(struct job_log_entry *l, size_t n)
{
	return rows_free(l, n, sizeof(*l), log_cols, ARRAY_SIZE(log_cols));
}

int job_log_list(struct db *db, int64_t id, int64_t since, struct job_log_entry **ret, size_t *ret_n)
{
	_cleanup_result_ struct db_res *res = NULL;
	int r = db_query(db, &res,
			 "SELECT id, created_at, attempt, level, stage, category, message, error_code, details"
			 " FROM processing_job_logs WHERE job_id = ? AND id > ? ORDER BY id",
			 DB_I64(id), DB_I64(since), DB_END);
	if (r < 0)
		return r;
	void *a = NULL;
	r = rows_load(res, sizeof(struct job_log_entry), log_cols, ARRAY_SIZE(log_cols), &a, ret_n);
	if (r >= 0)
		*ret = a;
	return r;
}
