/* The API's handlers (http/api.c): JSON endpoints over the board and the database, each a row of
 * http/routes.c. Each returns what MHD_queue_response returned. */
#pragma once

#include "http/server.h"

/* GET /health: 200 {"status": "ok", "database": {"reachable": true}, "station", "workerId",
 * "startedAt", "lastHeartbeat", "slots": [tile…]}; 503 DATABASE_UNAVAILABLE (the same "data"
 * beside the error) while the server's own connection to the database fails. */
enum MHD_Result api_health(struct http_request *req);
