/* Implementation of http/slotjson.h. */
#include "http/slotjson.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "util/macro.h"
#include "util/utf8.h"

json_t *http_json_text(const char *s)
{
	if (!s)
		return json_null();
	if (utf8_valid(s))
		return json_string(s);
	char *e = utf8_escape(s);
	json_t *j = e ? json_string(e) : NULL;
	free(e);
	return j;
}

json_t *http_json_time(double t)
{
	time_t s = (time_t)t;
	struct tm tm;
	char buf[32];
	if (t <= 0 || !gmtime_r(&s, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return json_null();
	return json_string(buf);
}

/* A tile's text field: "" (unknown) is null. */
static json_t *text(const char *s) { return *s ? http_json_text(s) : json_null(); }

json_t *tile_json(const struct tile *t)
{
	json_t *job = json_null(), *progress = json_null();
	if (t->job_id)
		job = json_pack("{s:I, s:o, s:i, s:i}", "id", (json_int_t)t->job_id, "order", text(t->order), "unit",
				t->unit, "attempt", t->attempt);
	if ((t->state == TILE_WRITING || t->state == TILE_VERIFYING) && t->total) {
		double pct = floor((double)t->done * 100.0 / (double)t->total);
		progress = json_pack("{s:I, s:I, s:i, s:f, s:o}", "done_bytes", (json_int_t)t->done, "total_bytes",
				     (json_int_t)t->total, "percent", (int)MIN(pct, 100.0), "rate_bytes_per_s", t->rate,
				     "eta_seconds", t->eta >= 0 ? json_real(round(t->eta)) : json_null());
	}
	if (!job || !progress) {
		json_decref(job);
		json_decref(progress);
		return NULL;
	}
	return json_pack("{s:o, s:s, s:o, s:o, s:I, s:o, s:o, s:o}", "slot", text(t->slot), "state",
			 tile_state_name(t->state) ? tile_state_name(t->state) : "?", "reason", text(t->reason),
			 "serial", text(t->serial), "capacity_bytes", (json_int_t)t->capacity, "since",
			 http_json_time(t->since), "job", job, "progress", progress);
}

json_t *tiles_json(const struct board_view *v)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < v->n_tiles; i++)
		if (json_array_append_new(a, tile_json(&v->tiles[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}
