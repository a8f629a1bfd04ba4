/* Implementation of http/api.h: each endpoint reads the board (what this daemon sees) and the
 * database through the server's own connections (http_db_get), never the daemon's. */
#include "http/api.h"

#include <errno.h>
#include <time.h>

#include "db/db.h"
#include "http/slotjson.h"
#include "util/macro.h"

/* RFC 3339 UTC of a wall clock time; null for 0 (never). */
static json_t *time_json(double t)
{
	char buf[32];
	struct tm tm;
	time_t s = (time_t)t;
	if (t <= 0 || !gmtime_r(&s, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return json_null();
	return json_string(buf);
}

/* Whether the database answers a trivial query on one of the server's connections. */
static bool db_reachable(struct http_server *srv)
{
	struct db *db = NULL;
	int64_t one = 0;
	int r = http_db_get(srv, &db);
	if (r < 0)
		return false;
	r = db_query_i64(db, &one, "SELECT 1", DB_END);
	http_db_put(srv, db, r);
	return r >= 0 && one == 1;
}

enum MHD_Result api_health(struct http_request *req)
{
	struct board_view v;
	if (board_view(http_board(req->server), &v) < 0)
		return MHD_NO;
	bool up = db_reachable(req->server);
	json_t *data =
		json_pack("{s:s, s:{s:b}, s:s, s:s, s:o, s:o, s:o}", "status", up ? "ok" : "degraded", "database",
			  "reachable", up, "station", v.station, "workerId", v.worker_id, "startedAt",
			  time_json(v.started), "lastHeartbeat", time_json(v.last_heartbeat), "slots", tiles_json(&v));
	board_view_done(&v);
	if (!data)
		return MHD_NO;
	if (up)
		return http_reply_json(req, MHD_HTTP_OK, data);
	json_t *doc = json_pack("{s:b, s:{s:s, s:s}, s:o}", "success", 0, "error", "code", "DATABASE_UNAVAILABLE",
				"message", "the database cannot be reached", "data", data);
	return http_reply_doc(req, MHD_HTTP_SERVICE_UNAVAILABLE, doc);
}
