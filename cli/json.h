/* The JSON documents of the CLI made from what db/ returns (db/jobs.h structs): job log rows,
 * events, queue stats and the reaper's report, with DESIGN.md's keys (a row's keys are its
 * column names, in column order). db/ reads rows; this is where they become output. Every
 * builder returns a new reference, or NULL when out of memory. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "db/jobs.h"
#include "db/orders.h"

/* A string column: null for NULL; text that is not UTF-8 kept byte for byte (jansson's
 * escaping of the dump then shows it) rather than dropped. */
json_t *cli_json_str(const char *s);
/* A JSON column's text: null for NULL, the parsed value, or the text as a string when it does
 * not parse. */
json_t *cli_json_text(const char *text);

/* {"id", "created_at", "attempt", "level", "stage", "category", "message", "error_code",
 * "details"} */
json_t *cli_json_job_log(const struct job_log_entry *l);
/* {"id", "aggregate_type", "aggregate_id", "event_type", "generation", "payload", "created_at",
 * "published_at"} */
json_t *cli_json_event(const struct event *e);
/* One key per job state with its count (in the order of the state names), "stuck_processing",
 * "stuck_queued", "avg_duration_seconds" (null while no job is done). */
json_t *cli_json_queue_stats(const struct queue_stats *st);
/* {"retried", "failed", "cancelled", "stuck_reported", "actions": [{"job_id", "action"}]}, the
 * action being the state a stuck job went to or "reported_stuck". */
json_t *cli_json_reap_stats(const struct reap_stats *st);
/* The text of a reap action: "retry", "failed", "cancelled" or "reported_stuck". */
const char *cli_reap_action_name(const struct reap_action *a);

/* A row of a result as an object keyed by column name, in column order (minus the names in
 * skip, a NULL-terminated list, or NULL): numbers for numeric columns (unsigned ones read
 * unsigned; one above 2^63 - 1 as a string of its exact digits), null for NULL, the parsed
 * value of a JSON column (content_spec, progress_detail, details, payload, metadata,
 * resume_state), strings otherwise. row is the one db_res_next(res) returned last. */
json_t *cli_json_row(const struct db_res *res, db_row row, const char *const *skip);
/* Every row of res (from where it stands) as an array of such objects. */
json_t *cli_json_rows(struct db_res *res);
/* A record's row as an object (minus skip), with its rows as an array under rows_key. */
json_t *cli_json_record(const struct record *r, const char *rows_key, const char *const *skip);
/* {"order_number", "order_id", "order_status", "created", "jobs": [{"id", "unit_index",
 * "status"}]} */
json_t *cli_json_confirmation(const struct order_confirmation *c);
