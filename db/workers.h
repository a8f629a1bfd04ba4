/* The daemon's own rows: its workers row (registered at connect, heartbeat, stopped), the
 * settings it publishes for readers without a configuration (v_stuck_jobs reads the stuck
 * timeouts), and the test a daemon makes after a failed statement: is the connection itself
 * broken? */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/db.h"

struct worker_info {
	const char *id; /* "station/host/pid" */
	const char *station;
	const char *hostname;
	int pid;
	const char *version;
};

/* Insert the worker's row, or (same id: a reconnect) mark it beating and not stopped. */
int worker_register(struct db *db, const struct worker_info *w);
/* heartbeat_at = now. */
int worker_heartbeat(struct db *db, const char *id);
/* stopped_at = heartbeat_at = now. */
int worker_stop(struct db *db, const char *id);

/* Publish stuck.processing_timeout and stuck.queued_timeout (seconds) in settings. */
int settings_store_stuck_timeouts(struct db *db, double processing_timeout, double queued_timeout);

/* What a station has now: its running daemons, the jobs waiting for it, the jobs its daemons
 * run. station NULL is the line of the orders for any station (its workers and processing are
 * 0: every station's daemons take them). */
struct station_stats {
	char *station;
	int64_t workers;	  /* daemons not stopped whose heartbeat is within processing_timeout */
	int64_t queued;		  /* jobs queued or waiting to retry, addressed to it */
	int64_t processing;	  /* jobs its daemons are running */
	int64_t stuck_processing; /* of those, without a heartbeat past processing_timeout */
};
/* One line per station that has a running daemon or a waiting job, by name, the line of any
 * station last; a malloc'd array (*ret NULL when none). 0, -ENOMEM, db errors. */
int station_stats_list(struct db *db, double processing_timeout, struct station_stats **ret, size_t *ret_n);
/* NULL safe; returns NULL. */
struct station_stats *station_stats_free(struct station_stats *s, size_t n);
