/* Implementation of db/orders.h. */
#include "db/orders.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/macro.h"

int audit_add(struct db *db, const char *actor, const char *entity_type, int64_t entity_id, const char *action,
	      json_t *metadata)
{
	_cleanup_free_ char *m = metadata ? json_dumps(metadata, JSON_COMPACT) : NULL;
	return db_exec(db, NULL,
		       "INSERT INTO audit_log (actor, entity_type, entity_id, action, metadata) VALUES (?, ?, ?, ?, ?)",
		       DB_STR(actor), DB_STR(entity_type), DB_I64(entity_id), DB_STR(action), DB_STR(m), DB_END);
}

int order_add(struct db *db, const struct order_new *o, int64_t *ret_id)
{
	int r = db_exec(db, NULL,
			"INSERT INTO orders (order_number, customer, capacity_bytes, quantity, content_spec,"
			" image_path, image_bytes, station) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			DB_STR(o->number), DB_STR(o->customer), DB_U64(o->capacity_bytes), DB_I64(o->quantity),
			DB_STR(o->content_spec), DB_STR(o->image_path),
			o->image_path ? DB_U64(o->image_bytes) : DB_NULL, DB_STR(o->station), DB_END);
	if (r < 0)
		return r;
	*ret_id = (int64_t)db_insert_id(db);
	return 0;
}

struct confirm_args {
	const char *number, *correlation_id, *actor;
	int max_attempts;
	struct order_confirmation *result;
};

static int confirm_txn(struct db *db, void *userdata)
{
	struct confirm_args *a = userdata;
	_cleanup_result_ struct db_res *res = NULL;
	int r, created = 0;

	order_confirmation_done(a->result); /* a retried transaction starts over */
	r = db_query(db, &res,
		     "SELECT id, status, quantity, station, capacity_bytes, COALESCE(image_bytes, 0)"
		     " FROM orders WHERE order_number = ? FOR UPDATE",
		     DB_STR(a->number), DB_END);
	if (r < 0)
		return r;
	db_row row = db_res_next(res);
	if (!row)
		return -ENOENT;
	int64_t order_id = db_row_i64(row, 0);
	_cleanup_free_ char *status = strdup(row[1]);
	int quantity = (int)db_row_i64(row, 2);
	_cleanup_free_ char *station = strdup_or_null(row[3]);
	uint64_t capacity = db_row_u64(row, 4), image_bytes = db_row_u64(row, 5);
	if (!status || (row[3] && !station))
		return -ENOMEM;

	if (strcmp(status, "cancelled") == 0)
		return -ECANCELED;
	if (strcmp(status, "pending") == 0) {
		r = db_exec(db, NULL,
			    "UPDATE orders SET status = 'confirmed', confirmed_at = NOW(6)"
			    " WHERE id = ? AND status = 'pending'",
			    DB_I64(order_id), DB_END);
		if (r < 0)
			return r;
	}

	struct order_confirmation *c = a->result;
	c->jobs = quantity > 0 ? calloc((size_t)quantity, sizeof(*c->jobs)) : NULL;
	if (quantity > 0 && !c->jobs)
		return -ENOMEM;
	for (int unit = 0; unit < quantity; unit++) {
		int64_t job_id = 0;
		r = db_exec(db, NULL,
			    "INSERT INTO processing_jobs (order_id, unit_index, schema_version, correlation_id,"
			    " station, capacity_bytes, min_device_bytes, max_attempts)"
			    " VALUES (?, ?, 'v1', ?, ?, ?, ?, ?)",
			    DB_I64(order_id), DB_I64(unit), DB_STR(a->correlation_id), DB_STR(station),
			    DB_U64(capacity), DB_U64(image_bytes), DB_I64(a->max_attempts), DB_END);
		if (r == 0) {
			job_id = (int64_t)db_insert_id(db);
			json_t *meta = json_pack("{s:s, s:I, s:s?}", "order_number", a->number, "unit_index",
						 (json_int_t)unit, "correlation_id", a->correlation_id);
			r = audit_add(db, a->actor, "job", job_id, "created", meta);
			json_decref(meta);
			if (r < 0)
				return r;
			created++;
		} else if (r != -EEXIST) {
			return r;
		}
		_cleanup_result_ struct db_res *jr = NULL;
		r = db_query(db, &jr,
			     "SELECT id, status FROM processing_jobs"
			     " WHERE order_id = ? AND unit_index = ? AND schema_version = 'v1'",
			     DB_I64(order_id), DB_I64(unit), DB_END);
		if (r < 0)
			return r;
		db_row jrow = db_res_next(jr);
		if (!jrow)
			return -EIO;
		c->jobs[c->n_jobs++] = (struct confirmed_job){ .id = db_row_i64(jrow, 0),
							       .unit_index = unit,
							       .status = job_state_from_name(jrow[1]) };
	}
	c->order_number = strdup(a->number);
	c->order_status = strdup(strcmp(status, "pending") == 0 ? "confirmed" : status);
	if (!c->order_number || !c->order_status)
		return -ENOMEM;
	c->order_id = order_id;
	c->created = created;
	return 0;
}

void order_confirmation_done(struct order_confirmation *c)
{
	free(c->order_number);
	free(c->order_status);
	free(c->jobs);
	*c = (struct order_confirmation){ 0 };
}

int order_confirm(struct db *db, const char *number, const char *correlation_id, int max_attempts, const char *actor,
		  struct order_confirmation *ret)
{
	struct order_confirmation c = { 0 };
	struct confirm_args a = { number, correlation_id, actor, max_attempts, &c };
	int r = db_transaction(db, confirm_txn, &a);
	if (r < 0) {
		order_confirmation_done(&c);
		return r;
	}
	*ret = c;
	return 0;
}

void record_done(struct record *r)
{
	r->row = db_res_free(r->row);
	r->rows = db_res_free(r->rows);
}

int order_show(struct db *db, const char *number, struct record *ret)
{
	_cleanup_result_ struct db_res *res = NULL, *jres = NULL;
	int r = db_query(db, &res, "SELECT * FROM orders WHERE order_number = ?", DB_STR(number), DB_END);
	if (r < 0)
		return r;
	db_row row = db_res_next(res);
	if (!row)
		return -ENOENT;
	unsigned id_col = 0;
	while (id_col < db_res_fields(res) && strcmp(db_res_field_name(res, id_col), "id") != 0)
		id_col++;
	if (id_col == db_res_fields(res))
		return -EIO;
	r = db_query(db, &jres,
		     "SELECT id, unit_index, status, stage, progress, attempts, slot, device_serial, error_code,"
		     " completed_at FROM processing_jobs WHERE order_id = ? ORDER BY unit_index",
		     DB_I64(db_row_i64(row, id_col)), DB_END);
	if (r < 0)
		return r;
	db_res_rewind(res);
	*ret = (struct record){ .row = TAKE_PTR(res), .rows = TAKE_PTR(jres) };
	return 0;
}

int jobs_list(struct db *db, const char *status, int limit, struct db_res **ret)
{
	/* newest first: the jobs' primary key, or ix_jobs_status_id within one state, read
	 * backwards, the order of each looked up (STRAIGHT_JOIN: the optimizer would rather sort
	 * every order; a parameterised "? IS NULL OR status = ?" would walk every job newest first
	 * to find a rare state's) */
#define JOBS_LIST_SQL(hint, where)                                                                                     \
	"SELECT j.id, o.order_number, j.unit_index, j.status, j.stage, j.progress, j.attempts,"                        \
	" j.max_attempts, j.slot, j.error_code, j.updated_at"                                                          \
	" FROM processing_jobs j" hint " STRAIGHT_JOIN orders o ON o.id = j.order_id" where                            \
	" ORDER BY j.id DESC LIMIT ?"
	int64_t n = limit > 0 ? limit : 100;
	if (!status)
		return db_query(db, ret, JOBS_LIST_SQL("", ""), DB_I64(n), DB_END);
	return db_query(db, ret, JOBS_LIST_SQL(" FORCE INDEX (ix_jobs_status_id)", " WHERE j.status = ?"),
			DB_STR(status), DB_I64(n), DB_END);
#undef JOBS_LIST_SQL
}

int job_show(struct db *db, int64_t id, struct record *ret)
{
	_cleanup_result_ struct db_res *res = NULL, *ires = NULL;
	int r = db_query(db, &res,
			 "SELECT j.*, o.order_number FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
			 " WHERE j.id = ?",
			 DB_I64(id), DB_END);
	if (r < 0)
		return r;
	if (db_res_count(res) == 0)
		return -ENOENT;
	r = db_query(db, &ires,
		     "SELECT i.position, i.content_item_id, i.size_bytes, i.dest_path, c.rel_path, c.sha256, c.xxh128"
		     " FROM processing_job_items i JOIN content_items c ON c.id = i.content_item_id"
		     " WHERE i.job_id = ? ORDER BY i.position",
		     DB_I64(id), DB_END);
	if (r < 0)
		return r;
	*ret = (struct record){ .row = TAKE_PTR(res), .rows = TAKE_PTR(ires) };
	return 0;
}
