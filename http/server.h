/* The daemon's HTTP server (libmicrohttpd): the listener of the `http` config group, a route
 * table (http/routes.c: method, path pattern with :params, handler, needs the token), the JSON
 * replies of the API ({"success": true, "data": …} / {"success": false, "error": {"code",
 * "message"}}), the bearer token, the bounds on requests, and a small pool of database
 * connections of its own (never the daemon's or a runner's).
 *
 * Threads: MHD's internal polling threads (a pool of HTTP_THREADS, epoll) run the handlers; a
 * handler may block on the database (through http_db_get) but not for long. The daemon's main
 * thread calls http_start/http_reload/http_stop.
 *
 * Adding an endpoint: append a row to http_routes[] in http/routes.c. A handler gets a struct
 * http_request and returns what MHD_queue_response returned (MHD_YES/MHD_NO), usually through
 * http_reply_json()/http_reply_error()/http_reply_text().
 *
 * Streaming (Server-Sent Events): the daemon is created with MHD_ALLOW_SUSPEND_RESUME and an
 * inter-thread channel, so a handler may queue its own response:
 *     struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, fn, st, free_fn);
 *     MHD_add_response_header(r, "Content-Type", "text/event-stream");
 *     enum MHD_Result q = MHD_queue_response(req->conn, MHD_HTTP_OK, r);
 *     MHD_destroy_response(r);
 *     return q;
 * and, from its content callback, call MHD_suspend_connection(conn) when it has nothing to send
 * (returning 0), and MHD_resume_connection(conn) from any thread when there is more (a board
 * listener, see http/board.h). A module that keeps suspended connections registers an
 * http_service in http/routes.c: its start() runs in http_start before the listener opens and
 * its stop() in http_stop before the listener closes — stop() must resume every connection it
 * suspended and make their callbacks end (MHD_CONTENT_READER_END_OF_STREAM), because MHD cannot
 * stop with suspended connections. Its state is http_service_state(req->server, &its_service). */
#pragma once

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "http/board.h"

struct db;
struct http_server;

#define HTTP_THREADS	     3	   /* MHD's thread pool */
#define HTTP_MAX_BODY	     16384 /* request body, bytes: 413 above */
#define HTTP_MAX_URL	     1024  /* request target, bytes: 414 above */
#define HTTP_MEMORY_LIMIT    32768 /* per connection: request line + headers (431 above) */
#define HTTP_MAX_CONN	     256   /* connections at once */
#define HTTP_MAX_CONN_PER_IP 64	   /* from one address */
#define HTTP_IDLE_TIMEOUT    10	   /* s: a connection with no complete request is closed */
#define HTTP_MAX_PARAMS	     4	   /* :params in a pattern */

/* One request, as a handler sees it. Valid for the call only. */
struct http_request {
	struct http_server *server;
	struct MHD_Connection *conn;
	const char *method, *path;
	const char *params[HTTP_MAX_PARAMS]; /* the :params of the pattern, in order (NUL-terminated) */
	size_t n_params;
	const char *body; /* NUL-terminated; "" when none */
	size_t body_len;
};

typedef enum MHD_Result (*http_handler)(struct http_request *req);

struct http_route {
	const char *method;  /* "GET", "POST" */
	const char *pattern; /* "/v1/jobs/:id/cancel": ':' segments match one non-empty segment */
	http_handler handler;
	bool needs_token; /* 401 unless Authorization: Bearer <http.token_file's token> */
};

/* A module with state that lives as long as the listener (see the top of this file). */
struct http_service {
	const char *name;
	int (*start)(struct http_server *srv, void **ret_state); /* 0 or -errno (http_start fails) */
	void (*stop)(struct http_server *srv, void *state);	 /* resume and end what it suspended; free */
};

/* http/routes.c: the tables, and http_start/http_reload below (they hand the tables to
 * http_server_start, so that server.c never calls into the handlers that call it). */
extern const struct http_route http_routes[];
extern const size_t http_n_routes;
extern const struct http_service *const http_services[];
extern const size_t http_n_services;

/* What may change on SIGHUP without a restart of the listener, for handlers. */
struct http_settings {
	struct {
		double processing_timeout, queued_timeout, check_interval;
	} stuck;
	struct {
		double poll_interval;
		unsigned max_concurrent;
		double heartbeat_interval, capacity_tolerance;
	} worker;
	double retry_delays[16]; /* retry.delays (at most 16: config.c's bound) */
	size_t n_retry_delays;
};

/* Start the listener of cfg->http (listen must not be ""; the daemon does not call this when
 * it is). The token file (http.token_file) is read here (see http_token_load). The bound
 * address is logged as "http: listening on ADDR:PORT" (the port the kernel chose when the
 * config said 0). The server copies what it needs of cfg; board must outlive the server.
 * 0, or -errno: -EINVAL a bad token file (logged naming it), -EADDRINUSE and friends from
 * bind (logged), -ENOMEM. *ret written on success only. */
int http_start(const struct uf_config *cfg, struct board *board, struct http_server **ret);
/* Close the listener, end every connection (services first), close the database connections.
 * NULL safe; returns NULL. */
struct http_server *http_stop(struct http_server *srv);
/* SIGHUP: cfg is the new configuration. A changed listen address restarts the listener (*srv
 * may change, or become NULL when listen is now ""); otherwise the token file is read again and
 * the database settings taken over for new connections. A token file that no longer passes the
 * checks keeps the old token (logged). With *srv NULL and listen set, the listener starts.
 * 0, or -errno of a failed restart (logged; *srv is then NULL). */
int http_reload(struct http_server **srv, const struct uf_config *cfg, struct board *board);
/* server.c's side of the above: start with explicit tables; whether cfg names the listener
 * srv has; take over cfg's token file (read again; kept when it fails, logged) and settings. */
int http_server_start(const struct uf_config *cfg, struct board *board, const struct http_route *routes,
		      size_t n_routes, const struct http_service *const *services, size_t n_services,
		      struct http_server **ret);
bool http_server_same_listener(const struct http_server *srv, const struct uf_config *cfg);
void http_server_reload(struct http_server *srv, const struct uf_config *cfg);
/* The port the listener is bound to (for tests that asked for port 0). */
unsigned http_port(const struct http_server *srv);

/* ---- for handlers ---- */
struct board *http_board(struct http_server *srv);
/* The server's copy of the configuration as at start (database and http groups; the
 * database group cannot change without a restart). */
const struct uf_config *http_config(struct http_server *srv);
/* The stuck and worker settings as of the last reload (a copy, taken under the lock). */
void http_settings(struct http_server *srv, struct http_settings *ret);
void *http_service_state(struct http_server *srv, const struct http_service *svc);
/* A database connection of the server's pool for this thread's use; give it back with
 * http_db_put. -ENOTCONN (the database is away: said by the last attempt, retried at most once
 * a second) or -ENOMEM. */
int http_db_get(struct http_server *srv, struct db **ret);
/* r: the result of the last statement on it (a broken connection is closed, not pooled). */
void http_db_put(struct http_server *srv, struct db *db, int r);

/* 200 {"success": true, "data": data} (data stolen; NULL means null). */
enum MHD_Result http_reply_json(struct http_request *req, unsigned status, json_t *data);
/* {"success": false, "error": {"code": code, "message": message}} with status. */
enum MHD_Result http_reply_error(struct http_request *req, unsigned status, const char *code, const char *message);
enum MHD_Result http_reply_errorf(struct http_request *req, unsigned status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A whole JSON document (stolen) as the body, for replies outside the two shapes above. */
enum MHD_Result http_reply_doc(struct http_request *req, unsigned status, json_t *doc);
/* A text body (copied) with its content type. */
enum MHD_Result http_reply_text(struct http_request *req, unsigned status, const char *content_type, const char *text,
				size_t len);
/* A reply shared by the requests of up to ttl seconds (single flight: while one request makes
 * it, the others wait for it), so a burst of reads costs the database one query. produce
 * returns the whole document (NULL: out of memory) and its status. One static cache per
 * endpoint: static struct http_cache c = HTTP_CACHE_INIT; */
struct http_cache {
	pthread_mutex_t lock;
	pthread_cond_t done;
	bool busy;
	double at; /* mono when made; 0 none */
	unsigned status;
	char *text;
};
#define HTTP_CACHE_INIT                                                                                                \
	{                                                                                                              \
		PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0, NULL                                 \
	}
enum MHD_Result http_reply_cached(struct http_request *req, struct http_cache *c, double ttl,
				  json_t *(*produce)(struct http_request *req, unsigned *ret_status));
/* A query argument ("since" in ?since=5), or NULL. */
const char *http_query(struct http_request *req, const char *name);
/* Strict id: digits only, 1..INT64_MAX. 0 or -EINVAL. */
int http_parse_id(const char *s, int64_t *ret);
