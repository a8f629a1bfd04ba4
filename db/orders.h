/* Orders and the jobs they expand into: add, idempotent confirm, and the read side used by the
 * CLI (order show, jobs, job show) returned as JSON documents whose keys are the column names. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "db/db.h"
#include "db/jobstate.h"

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

/* What a confirmation did: the order, and its jobs whether this call created them or not. */
struct confirmed_job {
	int64_t id;
	int unit_index;
	enum job_state status;
};
struct order_confirmation {
	char *order_number;
	int64_t order_id;
	char *order_status; /* "confirmed", or the state the order has moved on to */
	int created;	    /* jobs this call created (0 when they all existed) */
	struct confirmed_job *jobs;
	size_t n_jobs;
};
void order_confirmation_done(struct order_confirmation *c);

/* Confirm: in one transaction, lock the order, set it confirmed (first time), create one
 * queued job per unit keyed on (order, unit, 'v1') — insert, and on duplicate key select —
 * with one audit_log row per job created. Every later or concurrent call returns the same job
 * ids and creates nothing. Errors: -ENOENT unknown order, -ECANCELED a cancelled order, db
 * errors. */
int order_confirm(struct db *db, const char *number, const char *correlation_id, int max_attempts, const char *actor,
		  struct order_confirmation *ret);

/* A row with every column by name (db_res_field_name, db_res_field_kind) and the rows that
 * belong to it: what `order show` and `job show` print. */
struct record {
	struct db_res *row;  /* one row (db_res_next gives it) */
	struct db_res *rows; /* the order's jobs, the job's items */
};
void record_done(struct record *r);

/* The order's row (every column) and its job rows (id, unit_index, status, stage, progress,
 * attempts, slot, device_serial, error_code, completed_at). -ENOENT when unknown. */
int order_show(struct db *db, const char *number, struct record *ret);

/* Jobs, newest first, optionally filtered by status; limit ≤ 0 means 100. */
int jobs_list(struct db *db, const char *status, int limit, struct db_res **ret);

/* Every processing_jobs column by name plus order_number, and the job's items
 * (processing_job_items rows in position order). -ENOENT when unknown. */
int job_show(struct db *db, int64_t id, struct record *ret);

/* Insert an audit_log row. */
int audit_add(struct db *db, const char *actor, const char *entity_type, int64_t entity_id, const char *action,
	      json_t *metadata);
