/* Implementation of db/orders.h. */
#include "db/orders.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/macro.h"

static bool is_json_column(const char *name)
{
	static const char *const cols[] = { "content_spec", "progress_detail", "details",
					    "payload",	    "metadata",	       "resume_state" };
	for (size_t i = 0; i < ARRAY_SIZE(cols); i++)
		if (strcmp(name, cols[i]) == 0)
			return true;
	return false;
}

/* An integer column's text as JSON. The sizes are BIGINT UNSIGNED: a value above 2^63 - 1 (only
 * SQL can store one: `order add` refuses it) does not fit a JSON integer of jansson (long long),
 * and a double would round it; it is given as its exact decimal digits in a string rather than
 * clamped (strtoll) or wrapped to a negative number. */
static json_t *int_to_json(const char *text, bool is_unsigned)
{
	if (is_unsigned) {
		unsigned long long u = strtoull(text, NULL, 10);
		if (u > (unsigned long long)INT64_MAX)
			return json_string(text);
		return json_integer((json_int_t)u);
	}
	return json_integer((json_int_t)strtoll(text, NULL, 10));
}

json_t *db_row_to_json(const struct db_res *res, db_row row)
{
	unsigned n = db_res_fields(res);
	const size_t *len = db_res_lengths(res);
	json_t *o = json_object();
	for (unsigned i = 0; i < n; i++) {
		const char *name = db_res_field_name(res, i);
		json_t *v;
		if (!row[i]) {
			v = json_null();
		} else if (is_json_column(name)) {
			v = json_loads(row[i], JSON_DECODE_ANY, NULL);
			if (!v)
				v = json_string(row[i]);
		} else {
			switch (db_res_field_kind(res, i)) {
			case DB_KIND_INT:
			case DB_KIND_UINT:
				v = int_to_json(row[i], db_res_field_kind(res, i) == DB_KIND_UINT);
				break;
			case DB_KIND_REAL:
				v = json_real(strtod(row[i], NULL));
				break;
			default:
				v = json_stringn(row[i], len[i]);
				if (!v) /* not UTF-8 */
					v = json_stringn_nocheck(row[i], len[i]);
			}
		}
		json_object_set_new(o, name, v);
	}
	return o;
}

json_t *db_result_to_json(struct db_res *res)
{
	json_t *a = json_array();
	db_row row;
	while ((row = db_res_next(res)))
		json_array_append_new(a, db_row_to_json(res, row));
	return a;
}

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
	json_t *result;
};

static int confirm_txn(struct db *db, void *userdata)
{
	struct confirm_args *a = userdata;
	_cleanup_result_ struct db_res *res = NULL;
	int r, created = 0;

	json_decref(a->result);
	a->result = NULL;
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

	json_t *jobs = json_array();
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
				goto fail;
			created++;
		} else if (r != -EEXIST) {
			goto fail;
		}
		_cleanup_result_ struct db_res *jr = NULL;
		r = db_query(db, &jr,
			     "SELECT id, status FROM processing_jobs"
			     " WHERE order_id = ? AND unit_index = ? AND schema_version = 'v1'",
			     DB_I64(order_id), DB_I64(unit), DB_END);
		if (r < 0)
			goto fail;
		db_row jrow = db_res_next(jr);
		if (!jrow) {
			r = -EIO;
			goto fail;
		}
		json_array_append_new(jobs, json_pack("{s:I, s:i, s:s}", "id", (json_int_t)db_row_i64(jrow, 0),
						      "unit_index", unit, "status", jrow[1]));
	}
	a->result = json_pack("{s:s, s:I, s:s, s:i, s:o}", "order_number", a->number, "order_id", (json_int_t)order_id,
			      "order_status", strcmp(status, "pending") == 0 ? "confirmed" : status, "created", created,
			      "jobs", jobs);
	return 0;
fail:
	json_decref(jobs);
	return r;
}

int order_confirm(struct db *db, const char *number, const char *correlation_id, int max_attempts, const char *actor,
		  json_t **ret)
{
	struct confirm_args a = { number, correlation_id, actor, max_attempts, NULL };
	int r = db_transaction(db, confirm_txn, &a);
	if (r < 0) {
		json_decref(a.result);
		return r;
	}
	*ret = a.result;
	return 0;
}

int order_show(struct db *db, const char *number, json_t **ret)
{
	_cleanup_result_ struct db_res *res = NULL, *jres = NULL;
	int r = db_query(db, &res, "SELECT * FROM orders WHERE order_number = ?", DB_STR(number), DB_END);
	if (r < 0)
		return r;
	db_row row = db_res_next(res);
	if (!row)
		return -ENOENT;
	json_t *o = db_row_to_json(res, row);
	r = db_query(db, &jres,
		     "SELECT id, unit_index, status, stage, progress, attempts, slot, device_serial, error_code,"
		     " completed_at FROM processing_jobs WHERE order_id = ? ORDER BY unit_index",
		     DB_I64(json_integer_value(json_object_get(o, "id"))), DB_END);
	if (r < 0) {
		json_decref(o);
		return r;
	}
	json_object_set_new(o, "jobs", db_result_to_json(jres));
	*ret = o;
	return 0;
}

int jobs_list(struct db *db, const char *status, int limit, json_t **ret)
{
	_cleanup_result_ struct db_res *res = NULL;
	int r = db_query(db, &res,
			 "SELECT j.id, o.order_number, j.unit_index, j.status, j.stage, j.progress, j.attempts,"
			 " j.max_attempts, j.slot, j.error_code, j.updated_at"
			 " FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
			 " WHERE (? IS NULL OR j.status = ?) ORDER BY j.id DESC LIMIT ?",
			 DB_STR(status), DB_STR(status), DB_I64(limit > 0 ? limit : 100), DB_END);
	if (r < 0)
		return r;
	*ret = db_result_to_json(res);
	return 0;
}

int job_show(struct db *db, int64_t id, json_t **ret)
{
	_cleanup_result_ struct db_res *res = NULL, *ires = NULL;
	int r = db_query(db, &res,
			 "SELECT j.*, o.order_number FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
			 " WHERE j.id = ?",
			 DB_I64(id), DB_END);
	if (r < 0)
		return r;
	db_row row = db_res_next(res);
	if (!row)
		return -ENOENT;
	json_t *o = db_row_to_json(res, row);
	json_object_del(o, "claimable");
	r = db_query(db, &ires,
		     "SELECT i.position, i.content_item_id, i.size_bytes, i.dest_path, c.rel_path, c.sha256, c.xxh128"
		     " FROM processing_job_items i JOIN content_items c ON c.id = i.content_item_id"
		     " WHERE i.job_id = ? ORDER BY i.position",
		     DB_I64(id), DB_END);
	if (r < 0) {
		json_decref(o);
		return r;
	}
	json_object_set_new(o, "items", db_result_to_json(ires));
	*ret = o;
	return 0;
}
