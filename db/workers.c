/* Implementation of db/workers.h. */
#include "db/workers.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"

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

struct station_stats *station_stats_free(struct station_stats *s, size_t n)
{
	for (size_t i = 0; s && i < n; i++)
		free(s[i].station);
	free(s);
	return NULL;
}

int station_stats_list(struct db *db, double processing_timeout, struct station_stats **ret, size_t *ret_n)
{
	_cleanup_result_ struct db_res *res = NULL;
	int64_t timeout_us = (int64_t)llround(processing_timeout * 1e6);
	/* the waiting jobs by ix_jobs_claim (claimable first), the running ones by ix_jobs_status,
	 * the stations by ix_workers_station */
	int r = db_query(db, &res,
			 "SELECT s.station,"
			 " (SELECT COUNT(*) FROM workers w WHERE w.station = s.station AND w.stopped_at IS NULL"
			 "   AND w.heartbeat_at >= NOW(6) - INTERVAL ? MICROSECOND),"
			 " (SELECT COUNT(*) FROM processing_jobs j WHERE j.claimable = 1 AND j.station <=> s.station),"
			 " (SELECT COUNT(*) FROM processing_jobs j JOIN workers w ON w.id = j.locked_by"
			 "   WHERE j.status = 'processing' AND w.station = s.station),"
			 " (SELECT COUNT(*) FROM processing_jobs j JOIN workers w ON w.id = j.locked_by"
			 "   WHERE j.status = 'processing' AND w.station = s.station"
			 "   AND j.heartbeat_at < NOW(6) - INTERVAL ? MICROSECOND)"
			 " FROM (SELECT station FROM workers WHERE stopped_at IS NULL"
			 "       UNION SELECT station FROM processing_jobs WHERE claimable = 1) s"
			 " ORDER BY s.station IS NULL, s.station",
			 DB_I64(timeout_us), DB_I64(timeout_us), DB_END);
	if (r < 0)
		return r;
	size_t n = db_res_count(res), k = 0;
	struct station_stats *a = n ? calloc(n, sizeof(*a)) : NULL;
	if (n && !a)
		return -ENOMEM;
	db_row row;
	while (k < n && (row = db_res_next(res))) {
		struct station_stats *s = &a[k++];
		if (row[0] && !(s->station = strdup(row[0]))) {
			station_stats_free(a, k);
			return -ENOMEM;
		}
		s->workers = db_row_i64(row, 1);
		s->queued = db_row_i64(row, 2);
		s->processing = db_row_i64(row, 3);
		s->stuck_processing = db_row_i64(row, 4);
	}
	*ret = a;
	*ret_n = k;
	return 0;
}
