/* The daemon's own rows: its workers row (registered at connect, heartbeat, stopped), the
 * settings it publishes for readers without a configuration (v_stuck_jobs reads the stuck
 * timeouts), and the test a daemon makes after a failed statement: is the connection itself
 * broken? */
#pragma once

#include <stdbool.h>

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
