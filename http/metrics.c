/* GET /metrics (http/api.h): the Prometheus text exposition format 0.0.4. The job counts come
 * from the database (through the server's pool; left out, with usbforge_database_up 0, while it
 * cannot be reached); the counters since start, the duration histogram and the slots come from
 * the board. Every family has its HELP and TYPE lines; label values are escaped. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "db/jobs.h"
#include "db/jobstate.h"
#include "http/api.h"
#include "http/board.h"
#include "util/macro.h"

/* A growing text (open_memstream). */
struct out {
	char *buf;
	size_t len;
	FILE *f;
};

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	fprintf(o->f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value as the format wants it: \ " and newline escaped. */
static void label_value(FILE *f, const char *v)
{
	for (const char *c = v; *c; c++) {
		if (*c == '\\')
			fputs("\\\\", f);
		else if (*c == '"')
			fputs("\\\"", f);
		else if (*c == '\n')
			fputs("\\n", f);
		else
			fputc(*c, f);
	}
}

static void sample_label(struct out *o, const char *name, const char *label, const char *value, double v)
{
	fprintf(o->f, "%s{%s=\"", name, label);
	label_value(o->f, value);
	fprintf(o->f, "\"} %.17g\n", v);
}

static void sample(struct out *o, const char *name, double v) { fprintf(o->f, "%s %.17g\n", name, v); }

enum MHD_Result api_metrics(struct http_request *req)
{
	struct http_settings st;
	struct queue_stats qs = { 0 };
	struct board_view v;
	struct db *db = NULL;
	struct out o = { 0 };

	http_settings(req->server, &st);
	int r = http_db_get(req->server, &db);
	if (r >= 0) {
		r = queue_get_stats(db, st.stuck.processing_timeout, st.stuck.queued_timeout, &qs);
		http_db_put(req->server, db, r);
	}
	bool db_ok = r >= 0;
	if (board_view(http_board(req->server), &v) < 0)
		return MHD_NO;
	o.f = open_memstream(&o.buf, &o.len);
	if (!o.f) {
		board_view_done(&v);
		return MHD_NO;
	}
	family(&o, "usbforge_database_up", "gauge", "Whether the HTTP server's own connection to the database works.");
	sample(&o, "usbforge_database_up", db_ok);
	if (db_ok) {
		family(&o, "usbforge_jobs", "gauge", "Jobs in the database by state.");
		for (int s = 0; s < _JOB_STATE_MAX; s++)
			sample_label(&o, "usbforge_jobs", "state", job_state_name((enum job_state)s),
				     (double)qs.jobs[s]);
		family(&o, "usbforge_stuck_jobs", "gauge",
		       "Jobs processing without a heartbeat past stuck.processing_timeout, or queued past "
		       "stuck.queued_timeout.");
		sample_label(&o, "usbforge_stuck_jobs", "kind", "processing", (double)qs.stuck_processing);
		sample_label(&o, "usbforge_stuck_jobs", "kind", "queued", (double)qs.stuck_queued);
		family(&o, "usbforge_events_oldest_unpublished_age_seconds", "gauge",
		       "Age of the oldest event the relay has not delivered yet (0 when every one is).");
		sample(&o, "usbforge_events_oldest_unpublished_age_seconds", qs.oldest_unpublished_age_seconds);
	}
	const struct board_counters *c = &v.counters;
	family(&o, "usbforge_job_duration_seconds", "histogram", "Duration of the jobs this daemon finished done.");
	uint64_t cum = 0;
	for (size_t i = 0; i < BOARD_DURATION_BUCKETS; i++) {
		char le[32];
		cum += c->duration_bucket[i];
		snprintf(le, sizeof(le), "%.17g", board_duration_bounds[i]);
		sample_label(&o, "usbforge_job_duration_seconds_bucket", "le", le, (double)cum);
	}
	cum += c->duration_bucket[BOARD_DURATION_BUCKETS];
	sample_label(&o, "usbforge_job_duration_seconds_bucket", "le", "+Inf", (double)cum);
	sample(&o, "usbforge_job_duration_seconds_sum", c->duration_sum);
	sample(&o, "usbforge_job_duration_seconds_count", (double)cum);
	family(&o, "usbforge_jobs_done_total", "counter", "Jobs this daemon finished done since it started.");
	sample(&o, "usbforge_jobs_done_total", (double)c->jobs_done);
	family(&o, "usbforge_attempts_failed_total", "counter",
	       "Attempts that failed on this daemon since it started.");
	sample(&o, "usbforge_attempts_failed_total", (double)c->attempts_failed);
	family(&o, "usbforge_bytes_written_total", "counter", "Bytes written to sticks since the daemon started.");
	sample(&o, "usbforge_bytes_written_total", (double)c->bytes_written);
	family(&o, "usbforge_bytes_verified_total", "counter",
	       "Bytes read back and verified since the daemon started.");
	sample(&o, "usbforge_bytes_verified_total", (double)c->bytes_verified);
	family(&o, "usbforge_write_throughput_bytes_per_second", "gauge",
	       "Bytes written per second of writing, over the jobs since the daemon started.");
	sample(&o, "usbforge_write_throughput_bytes_per_second",
	       c->write_seconds > 0 ? (double)c->bytes_written / c->write_seconds : 0);
	family(&o, "usbforge_verify_throughput_bytes_per_second", "gauge",
	       "Bytes verified per second of verification, over the jobs since the daemon started.");
	sample(&o, "usbforge_verify_throughput_bytes_per_second",
	       c->verify_seconds > 0 ? (double)c->bytes_verified / c->verify_seconds : 0);
	family(&o, "usbforge_slots", "gauge", "Slots by what they show.");
	for (int s = 0; s < _TILE_MAX; s++) {
		unsigned n = 0;
		for (size_t i = 0; i < v.n_tiles; i++)
			n += v.tiles[i].state == (enum tile_state)s;
		sample_label(&o, "usbforge_slots", "state", tile_state_name((enum tile_state)s), n);
	}
	board_view_done(&v);
	if (fclose(o.f) != 0) {
		free(o.buf);
		return MHD_NO;
	}
	enum MHD_Result q = http_reply_text(req, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", o.buf, o.len);
	free(o.buf);
	return q;
}
