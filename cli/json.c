/* Implementation of cli/json.h. */
#include "cli/json.h"

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
