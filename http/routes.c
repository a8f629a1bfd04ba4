/* The route table of the daemon's HTTP server (http/server.h): one row per endpoint. Modules
 * append their rows and, when they keep state for the listener's life, their http_service. */
#include "http/api.h"
#include "http/page.h"
#include "http/server.h"
#include "http/sse.h"
#include "util/log.h"

/* clang-format off */
const struct http_route http_routes[] = {
	{ "GET",  "/health",                          api_health,        false },
	{ "GET",  "/health/stuck-jobs/stats",         api_stuck_stats,   false },
	{ "POST", "/health/stuck-jobs/check",         api_stuck_check,   true },
	{ "GET",  "/v1/processing/queue",             api_queue,         false },
	{ "GET",  "/v1/processing/job/:id",           api_job,           false },
	{ "GET",  "/v1/slots",                        api_slots,         false },
	{ "POST", "/v1/orders/:number/confirm",       api_order_confirm, true },
	{ "POST", "/api/admin/orders/:number/confirm", api_order_confirm, true }, /* the seeds' path */
	{ "POST", "/v1/jobs/:id/cancel",              api_job_cancel,    true },
	{ "POST", "/v1/jobs/:id/retry",               api_job_retry,     true },
	{ "GET",  "/v1/events",                       api_events,        false },
	{ "GET",  "/metrics",                         api_metrics,       false },
	{ "GET",  "/",                                page_get,          false },
	{ "GET",  "/v1/slots/events",                 sse_get,           false },
};
/* clang-format on */
const size_t http_n_routes = sizeof(http_routes) / sizeof(http_routes[0]);

const struct http_service *const http_services[] = { &sse_service };
const size_t http_n_services = sizeof(http_services) / sizeof(http_services[0]);

int http_start(const struct uf_config *cfg, struct board *board, struct http_server **ret)
{
	return http_server_start(cfg, board, http_routes, http_n_routes, http_services, http_n_services, ret);
}

int http_reload(struct http_server **srv, const struct uf_config *cfg, struct board *board)
{
	if (*srv && http_server_same_listener(*srv, cfg)) {
		http_server_reload(*srv, cfg);
		return 0;
	}
	if (*srv) {
		log_notice("http: http.listen changed to '%s': the listener restarts", cfg->http.listen);
		*srv = http_stop(*srv);
	}
	if (!cfg->http.listen || !*cfg->http.listen)
		return 0;
	return http_start(cfg, board, srv);
}
