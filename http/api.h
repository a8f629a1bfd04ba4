/* The API's handlers (http/api.c): JSON endpoints over the board and the database, each a row of
 * http/routes.c. Each returns what MHD_queue_response returned. Bodies are documented in
 * README.md "HTTP API". */
#pragma once

#include "http/server.h"

/* GET /health: 200 {"status": "ok", "database": {"reachable": true}, "station", "workerId",
 * "startedAt", "lastHeartbeat", "slots": [tile…]}; 503 DATABASE_UNAVAILABLE (the same "data"
 * beside the error) while the server's own connection to the database fails. */
enum MHD_Result api_health(struct http_request *req);
enum MHD_Result api_stuck_stats(struct http_request *req);   /* GET /health/stuck-jobs/stats */
enum MHD_Result api_stuck_check(struct http_request *req);   /* POST /health/stuck-jobs/check */
enum MHD_Result api_queue(struct http_request *req);	     /* GET /v1/processing/queue */
enum MHD_Result api_job(struct http_request *req);	     /* GET /v1/processing/job/:id */
enum MHD_Result api_slots(struct http_request *req);	     /* GET /v1/slots */
enum MHD_Result api_order_confirm(struct http_request *req); /* POST /v1/orders/:number/confirm */
enum MHD_Result api_job_cancel(struct http_request *req);    /* POST /v1/jobs/:id/cancel */
enum MHD_Result api_job_retry(struct http_request *req);     /* POST /v1/jobs/:id/retry */
enum MHD_Result api_events(struct http_request *req);	     /* GET /v1/events?since=&limit= */
enum MHD_Result api_metrics(struct http_request *req);	     /* GET /metrics */
