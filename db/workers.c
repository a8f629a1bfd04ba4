/* Implementation of db/workers.h. */
#include "db/workers.h"

#include <errno.h>

int worker_register(struct db *db, const struct worker_info *w)
{
	return db_exec(db, NULL,
		       "INSERT INTO workers (id, station, hostname, pid, version) VALUES (?, ?, ?, ?, ?)"
		       " ON DUPLICATE KEY UPDATE heartbeat_at = NOW(6), stopped_at = NULL",
		       DB_STR(w->id), DB_STR(w->station), DB_STR(w->hostname), DB_I64(w->pid), DB_STR(w->version),
		       DB_END);
}

int worker_heartbeat(struct db *db, const char *id)
{
	return db_exec(db, NULL, "UPDATE workers SET heartbeat_at = NOW(6) WHERE id = ?", DB_STR(id), DB_END);
}

int worker_stop(struct db *db, const char *id)
{
	return db_exec(db, NULL, "UPDATE workers SET stopped_at = NOW(6), heartbeat_at = NOW(6) WHERE id = ?",
		       DB_STR(id), DB_END);
}

int settings_store_stuck_timeouts(struct db *db, double processing_timeout, double queued_timeout)
{
	return db_exec(db, NULL,
		       "INSERT INTO settings (name, value) VALUES ('stuck.processing_timeout', ?), ('stuck.queued_timeout', ?)"
		       " ON DUPLICATE KEY UPDATE value = VALUES(value)",
		       DB_DBL(processing_timeout), DB_DBL(queued_timeout), DB_END);
}
