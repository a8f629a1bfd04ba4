/* Orders and the jobs they expand into: add, idempotent confirm, and the read side used by the
 * CLI (order show, jobs, job show) returned as JSON documents whose keys are the column names. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "db/db.h"

struct order_new {
	const char *number;
	const char *customer; /* may be NULL */
	const char *station;  /* NULL = any kiosk */
	uint64_t capacity_bytes;
	int quantity;
	const char *image_path;	  /* exactly one of image_path / content_spec */
	uint64_t image_bytes;	  /* size of the decoded image (a stick must hold it) */
	const char *content_spec; /* JSON text {"categories": [...], "items": [...]} */
};

/* Insert a pending order. -EEXIST when the number is taken; -EPERM when a CHECK refuses it. */
int order_add(struct db *db, const struct order_new *o, int64_t *ret_id);

/* Confirm: in one transaction, lock the order, set it confirmed (first time), create one
 * queued job per unit keyed on (order, unit, 'v1') — insert, and on duplicate key select —
 * with one audit_log row per job created. Every later or concurrent call returns the same job
 * ids and creates nothing. *ret = {"order_number", "order_id", "created": n,
 * "jobs": [{"id", "unit_index", "status"}…]}. Errors: -ENOENT unknown order, -ECANCELED a
 * cancelled order, db errors. */
int order_confirm(struct db *db, const char *number, const char *correlation_id, int max_attempts, const char *actor,
		  json_t **ret);

/* The order's row (every column) plus "jobs": its job rows (id, unit_index, status, stage,
 * progress, attempts, slot, error_code). -ENOENT when unknown. */
int order_show(struct db *db, const char *number, json_t **ret);

/* Jobs, newest first, optionally filtered by status; limit ≤ 0 means 100. */
int jobs_list(struct db *db, const char *status, int limit, json_t **ret);

/* Every processing_jobs column by name, plus "order_number" and "items" (processing_job_items
 * rows in position order). -ENOENT when unknown. */
int job_show(struct db *db, int64_t id, json_t **ret);

/* Rows of a result as a JSON array of objects keyed by column name: numbers for numeric
 * columns (unsigned ones read unsigned; one above 2^63 - 1 as a string of its exact digits),
 * null for NULL, parsed JSON for JSON columns, strings otherwise. */
json_t *db_result_to_json(struct db_res *res);
/* One row of res as an object: row is the one db_res_next(res) returned last. */
json_t *db_row_to_json(const struct db_res *res, db_row row);
/* Insert an audit_log row. */
int audit_add(struct db *db, const char *actor, const char *entity_type, int64_t entity_id, const char *action,
	      json_t *metadata);
