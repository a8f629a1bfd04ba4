/* Implementation of cli/json.h. */
#include "cli/json.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"

json_t *cli_json_str(const char *s)
{
	if (!s)
		return json_null();
	json_t *v = json_string(s);
	return v ? v : json_stringn_nocheck(s, strlen(s)); /* not UTF-8 */
}

json_t *cli_json_text(const char *text)
{
	if (!text)
		return json_null();
	json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
	return v ? v : cli_json_str(text);
}

json_t *cli_json_job_log(const struct job_log_entry *l)
{
	return json_pack("{s:I, s:o, s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "id", (json_int_t)l->id, "created_at",
			 cli_json_str(l->created_at), "attempt", l->attempt, "level", cli_json_str(l->level), "stage",
			 cli_json_str(l->stage), "category", cli_json_str(l->category), "message",
			 cli_json_str(l->message), "error_code", cli_json_str(l->error_code), "details",
			 cli_json_text(l->details));
}

json_t *cli_json_event(const struct event *e)
{
	return json_pack("{s:I, s:o, s:I, s:o, s:i, s:o, s:o, s:o}", "id", (json_int_t)e->id, "aggregate_type",
			 cli_json_str(e->aggregate_type), "aggregate_id", (json_int_t)e->aggregate_id, "event_type",
			 cli_json_str(e->event_type), "generation", e->generation, "payload", cli_json_text(e->payload),
			 "created_at", cli_json_str(e->created_at), "published_at", cli_json_str(e->published_at));
}

json_t *cli_json_queue_stats(const struct queue_stats *st)
{
	/* the states in the order of their names, as the view groups them */
	static const enum job_state order[] = { JOB_STATE_CANCELLED,  JOB_STATE_DONE,	JOB_STATE_FAILED,
						JOB_STATE_PROCESSING, JOB_STATE_QUEUED, JOB_STATE_RETRY };
	_Static_assert(ARRAY_SIZE(order) == _JOB_STATE_MAX, "every state is counted");
	json_t *o = json_object();
	if (!o)
		return NULL;
	int r = 0;
	for (size_t i = 0; i < ARRAY_SIZE(order); i++)
		r |= json_object_set_new(o, job_state_name(order[i]), json_integer(st->jobs[order[i]]));
	r |= json_object_set_new(o, "stuck_processing", json_integer(st->stuck_processing));
	r |= json_object_set_new(o, "stuck_queued", json_integer(st->stuck_queued));
	r |= json_object_set_new(o, "avg_duration_seconds",
				 st->have_avg_duration ? json_real(st->avg_duration_seconds) : json_null());
	r |= json_object_set_new(o, "oldest_unpublished_event_age_seconds",
				 st->have_unpublished ? json_real(st->oldest_unpublished_age_seconds) : json_null());
	if (r) {
		json_decref(o);
		return NULL;
	}
	return o;
}

const char *cli_reap_action_name(const struct reap_action *a)
{
	return a->stuck_reported ? "reported_stuck" : job_state_name(a->state);
}

json_t *cli_json_reap_stats(const struct reap_stats *st)
{
	json_t *actions = json_array();
	if (!actions)
		return NULL;
	for (size_t i = 0; i < st->n_actions; i++) {
		const char *name = cli_reap_action_name(&st->actions[i]);
		if (json_array_append_new(actions, json_pack("{s:I, s:s}", "job_id", (json_int_t)st->actions[i].job_id,
							     "action", name ? name : "?")) < 0) {
			json_decref(actions);
			return NULL;
		}
	}
	return json_pack("{s:i, s:i, s:i, s:i, s:o}", "retried", st->retried, "failed", st->failed, "cancelled",
			 st->cancelled, "stuck_reported", st->stuck_reported, "actions", actions);
}

/* ---- rows by column name (order show, job show, jobs, content list) ---- */

static bool skipped(const char *name, const char *const *skip)
{
	for (; skip && *skip; skip++)
		if (strcmp(name, *skip) == 0)
			return true;
	return false;
}

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

json_t *cli_json_row(const struct db_res *res, db_row row, const char *const *skip)
{
	unsigned n = db_res_fields(res);
	const size_t *len = db_res_lengths(res);
	json_t *o = json_object();
	for (unsigned i = 0; i < n; i++) {
		const char *name = db_res_field_name(res, i);
		if (skipped(name, skip))
			continue;
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

json_t *cli_json_rows(struct db_res *res)
{
	json_t *a = json_array();
	db_row row;
	while (a && (row = db_res_next(res)))
		json_array_append_new(a, cli_json_row(res, row, NULL));
	return a;
}

json_t *cli_json_record(const struct record *r, const char *rows_key, const char *const *skip)
{
	db_res_rewind(r->row);
	db_row row = db_res_next(r->row);
	json_t *o = row ? cli_json_row(r->row, row, skip) : json_object();
	db_res_rewind(r->rows);
	if (o && json_object_set_new(o, rows_key, cli_json_rows(r->rows)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *cli_json_confirmation(const struct order_confirmation *c)
{
	json_t *jobs = json_array();
	for (size_t i = 0; jobs && i < c->n_jobs; i++)
		json_array_append_new(jobs,
				      json_pack("{s:I, s:i, s:s?}", "id", (json_int_t)c->jobs[i].id, "unit_index",
						c->jobs[i].unit_index, "status", job_state_name(c->jobs[i].status)));
	return json_pack("{s:o, s:I, s:o, s:i, s:o}", "order_number", cli_json_str(c->order_number), "order_id",
			 (json_int_t)c->order_id, "order_status", cli_json_str(c->order_status), "created", c->created,
			 "jobs", jobs);
}
