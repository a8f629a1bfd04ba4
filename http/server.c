/* Implementation of http/server.h: the MHD daemon and its options (bounds), the dispatch of a
 * request to its route (404, 405 with Allow, 401 with WWW-Authenticate, 413, 414), the reply
 * helpers, the token, the database pool, and the guard that cuts off clients too slow to send
 * their request (MHD's own timeout counts idle time only: one header byte a second would keep a
 * connection forever). */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "db/db.h"
#include "http/token.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/message.h"
#include "util/monotime.h"

#define DB_POOL_MAX	 (HTTP_THREADS + 1)
#define DB_RETRY_AFTER	 1.0  /* s: after a failed connect, -ENOTCONN without trying until then */
#define REQUEST_DEADLINE 10.0 /* s: from a connection's start (or its last reply) to a whole request */

/* One connection, for the slow-client guard: from MHD_OPTION_NOTIFY_CONNECTION. */
struct conn_track {
	struct conn_track *prev, *next;
	int fd;
	double deadline; /* mono; 0: a request is being answered (no deadline) */
	bool cut;
};

struct http_server {
	struct MHD_Daemon *mhd;
	struct board *board;
	struct uf_config cfg; /* a copy: database, stuck, worker, http */
	unsigned port;
	const struct http_route *routes;
	size_t n_routes;
	const struct http_service *const *services;
	size_t n_services;
	void **svc_state;

	pthread_mutex_t lock; /* token, pool, tracks */
	char *token;	      /* NULL: none configured */
	struct db *pool[DB_POOL_MAX];
	size_t n_pool;
	double db_failed_at; /* mono of the last failed connect; 0 none */
	struct http_settings settings;

	struct conn_track *tracks;
	pthread_t guard;
	pthread_cond_t guard_wake;
	bool guard_started, guard_stop;
};

/* Per request (MHD's con_cls): the body as it arrives. */
struct req_state {
	char *body;
	size_t len;
	bool too_large;
	bool answered; /* an early reply was queued */
};

/* ---- configuration copy ------------------------------------------------------------------- */

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int cfg_copy(struct uf_config *dst, const struct uf_config *src)
{
	*dst = (struct uf_config){ 0 };
	if (config_copy_database(dst, src) < 0)
		return -ENOMEM;
	dst->station = dup_or_null(src->station);
	dst->worker = src->worker;
	dst->stuck = src->stuck;
	dst->http.listen = dup_or_null(src->http.listen);
	dst->http.host = dup_or_null(src->http.host);
	dst->http.port = src->http.port;
	dst->http.token_file = dup_or_null(src->http.token_file);
	if ((src->station && !dst->station) || (src->http.listen && !dst->http.listen) ||
	    (src->http.host && !dst->http.host) || (src->http.token_file && !dst->http.token_file)) {
		config_done(dst);
		return -ENOMEM;
	}
	return 0;
}

static struct http_settings settings_of(const struct uf_config *cfg)
{
	struct http_settings s = { 0 };
	s.stuck.processing_timeout = cfg->stuck.processing_timeout;
	s.stuck.queued_timeout = cfg->stuck.queued_timeout;
	s.stuck.check_interval = cfg->stuck.check_interval;
	s.worker.poll_interval = cfg->worker.poll_interval;
	s.worker.max_concurrent = cfg->worker.max_concurrent;
	s.worker.heartbeat_interval = cfg->worker.heartbeat_interval;
	s.worker.capacity_tolerance = cfg->worker.capacity_tolerance;
	s.n_retry_delays = MIN(cfg->retry.n_delays, ARRAY_SIZE(s.retry_delays));
	for (size_t i = 0; i < s.n_retry_delays; i++)
		s.retry_delays[i] = cfg->retry.delays[i];
	return s;
}

/* ---- replies ------------------------------------------------------------------------------ */

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status, const char *type, char *text, size_t len,
			     const char *extra_name, const char *extra_value)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (extra_name)
		MHD_add_response_header(r, extra_name, extra_value);
	enum MHD_Result q = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return q;
}

static enum MHD_Result queue_json(struct MHD_Connection *conn, unsigned status, json_t *doc, const char *extra_name,
				  const char *extra_value)
{
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!text)
		return MHD_NO; /* out of memory: MHD closes the connection */
	size_t len = strlen(text);
	char *nl = realloc(text, len + 2);
	if (nl) {
		text = nl;
		text[len++] = '\n';
		text[len] = '\0';
	}
	return queue(conn, status, "application/json", text, len, extra_name, extra_value);
}

static json_t *error_doc(const char *code, const char *message)
{
	return json_pack("{s:b, s:{s:s, s:s}}", "success", 0, "error", "code", code, "message", message);
}

static enum MHD_Result error_on(struct MHD_Connection *conn, unsigned status, const char *code, const char *message,
				const char *extra_name, const char *extra_value)
{
	return queue_json(conn, status, error_doc(code, message), extra_name, extra_value);
}

enum MHD_Result http_reply_json(struct http_request *req, unsigned status, json_t *data)
{
	json_t *doc = json_pack("{s:b, s:o}", "success", 1, "data", data ? data : json_null());
	return queue_json(req->conn, status, doc, NULL, NULL);
}

enum MHD_Result http_reply_doc(struct http_request *req, unsigned status, json_t *doc)
{
	return queue_json(req->conn, status, doc, NULL, NULL);
}

enum MHD_Result http_reply_error(struct http_request *req, unsigned status, const char *code, const char *message)
{
	return error_on(req->conn, status, code, message, NULL, NULL);
}

enum MHD_Result http_reply_errorf(struct http_request *req, unsigned status, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *m = str_vprintf(fmt, ap);
	va_end(ap);
	if (!m)
		return MHD_NO;
	return http_reply_error(req, status, code, m);
}

enum MHD_Result http_reply_text(struct http_request *req, unsigned status, const char *content_type, const char *text,
				size_t len)
{
	char *copy = malloc(len + 1);
	if (!copy)
		return MHD_NO;
	memcpy(copy, text, len);
	copy[len] = '\0';
	return queue(req->conn, status, content_type, copy, len, NULL, NULL);
}

enum MHD_Result http_reply_cached(struct http_request *req, struct http_cache *c, double ttl,
				  json_t *(*produce)(struct http_request *req, unsigned *ret_status))
{
	pthread_mutex_lock(&c->lock);
	while (c->busy)
		pthread_cond_wait(&c->done, &c->lock);
	if (c->text && mono_s() - c->at <= ttl) {
		char *copy = strdup(c->text);
		unsigned status = c->status;
		pthread_mutex_unlock(&c->lock);
		return copy ? queue(req->conn, status, "application/json", copy, strlen(copy), NULL, NULL) : MHD_NO;
	}
	c->busy = true;
	pthread_mutex_unlock(&c->lock);

	unsigned status = MHD_HTTP_OK;
	json_t *doc = produce(req, &status);
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	char *copy = text ? str_printf("%s\n", text) : NULL;

	pthread_mutex_lock(&c->lock);
	if (copy) {
		free(c->text);
		c->text = text ? str_printf("%s\n", text) : NULL;
		c->status = status;
		c->at = mono_s();
	}
	c->busy = false;
	pthread_cond_broadcast(&c->done);
	pthread_mutex_unlock(&c->lock);
	free(text);
	return copy ? queue(req->conn, status, "application/json", copy, strlen(copy), NULL, NULL) : MHD_NO;
}

const char *http_query(struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

int http_parse_id(const char *s, int64_t *ret)
{
	int64_t v = 0;

	if (!s || !*s || strlen(s) > 19)
		return -EINVAL;
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			return -EINVAL;
		int d = *c - '0';
		if (v > (INT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	if (v < 1)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* ---- accessors ------------------------------------------------------------------------------ */

struct board *http_board(struct http_server *srv) { return srv->board; }
const struct uf_config *http_config(struct http_server *srv) { return &srv->cfg; }
unsigned http_port(const struct http_server *srv) { return srv->port; }

void *http_service_state(struct http_server *srv, const struct http_service *svc)
{
	for (size_t i = 0; i < srv->n_services; i++)
		if (srv->services[i] == svc)
			return srv->svc_state[i];
	return NULL;
}

/* ---- database pool ---------------------------------------------------------------------------- */

int http_db_get(struct http_server *srv, struct db **ret)
{
	pthread_mutex_lock(&srv->lock);
	if (srv->n_pool > 0) {
		*ret = srv->pool[--srv->n_pool];
		pthread_mutex_unlock(&srv->lock);
		return 0;
	}
	if (srv->db_failed_at > 0 && mono_s() - srv->db_failed_at < DB_RETRY_AFTER) {
		pthread_mutex_unlock(&srv->lock);
		return -ENOTCONN;
	}
	pthread_mutex_unlock(&srv->lock);

	_cleanup_free_ char *err = NULL;
	struct db *db = NULL;
	int r = db_connect(&srv->cfg, &db, &err);
	pthread_mutex_lock(&srv->lock);
	bool first_failure = srv->db_failed_at == 0;
	srv->db_failed_at = r < 0 ? mono_s() : 0;
	pthread_mutex_unlock(&srv->lock);
	if (r < 0) {
		if (first_failure)
			log_warning("http: %s", err ? err : "cannot connect to the database");
		return r == -ENOMEM ? -ENOMEM : -ENOTCONN;
	}
	*ret = db;
	return 0;
}

void http_db_put(struct http_server *srv, struct db *db, int r)
{
	if (!db)
		return;
	if (r < 0 && db_connection_broken(db, r)) {
		db_close(db);
		return;
	}
	pthread_mutex_lock(&srv->lock);
	if (srv->n_pool < DB_POOL_MAX) {
		srv->pool[srv->n_pool++] = db;
		db = NULL;
	}
	pthread_mutex_unlock(&srv->lock);
	db_close(db);
}

/* ---- the slow-client guard --------------------------------------------------------------------- */

/* MHD calls this when a connection opens and when it closes (before its socket is closed, so a
 * shutdown() under the lock never reaches a reused descriptor). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct http_server *srv = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct conn_track *t = calloc(1, sizeof(*t));
		*socket_context = t;
		if (!t || !ci)
			return;
		t->fd = ci->connect_fd;
		t->deadline = mono_s() + REQUEST_DEADLINE;
		pthread_mutex_lock(&srv->lock);
		t->next = srv->tracks;
		if (t->next)
			t->next->prev = t;
		srv->tracks = t;
		pthread_cond_signal(&srv->guard_wake);
		pthread_mutex_unlock(&srv->lock);
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		struct conn_track *t = *socket_context;
		if (!t)
			return;
		pthread_mutex_lock(&srv->lock);
		if (t->prev)
			t->prev->next = t->next;
		else if (srv->tracks == t)
			srv->tracks = t->next;
		if (t->next)
			t->next->prev = t->prev;
		pthread_mutex_unlock(&srv->lock);
		free(t);
		*socket_context = NULL;
	}
}

static struct conn_track *track_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* A request arrived whole (deadline off) or its reply went out (the next one has until then). */
static void track_set(struct http_server *srv, struct MHD_Connection *conn, bool answering)
{
	struct conn_track *t = track_of(conn);
	if (!t)
		return;
	pthread_mutex_lock(&srv->lock);
	t->deadline = answering ? 0 : mono_s() + REQUEST_DEADLINE;
	pthread_cond_signal(&srv->guard_wake);
	pthread_mutex_unlock(&srv->lock);
}

static void *guard_main(void *userdata)
{
	struct http_server *srv = userdata;
	pthread_mutex_lock(&srv->lock);
	while (!srv->guard_stop) {
		double now = mono_s(), next = now + 60;
		for (struct conn_track *t = srv->tracks; t; t = t->next) {
			if (t->deadline <= 0 || t->cut)
				continue;
			if (t->deadline <= now) {
				/* MHD sees the end of the stream and closes the connection itself */
				log_info("http: a client took longer than %.0f s to send its request: connection cut",
					 REQUEST_DEADLINE);
				shutdown(t->fd, SHUT_RDWR);
				t->cut = true;
			} else
				next = MIN(next, t->deadline);
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		double wait = next - now + 0.05;
		ts.tv_sec += (time_t)wait;
		ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&srv->guard_wake, &srv->lock, &ts);
	}
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

/* ---- dispatch ----------------------------------------------------------------------------------- */

/* Whether path matches pattern; the :params go into req (pointing into buf, a copy of path). */
static bool route_match(const char *pattern, const char *path, char *buf, size_t bufsize, struct http_request *req)
{
	size_t n = 0;
	const char *p = pattern, *u = path;
	char *b = buf;

	req->n_params = 0;
	while (*p && *u) {
		if (*p != '/' || *u != '/')
			return false;
		p++;
		u++;
		size_t pl = strcspn(p, "/"), ul = strcspn(u, "/");
		if (*p == ':') {
			if (ul == 0 || n >= HTTP_MAX_PARAMS || (size_t)(b - buf) + ul + 1 > bufsize)
				return false;
			memcpy(b, u, ul);
			b[ul] = '\0';
			req->params[n++] = b;
			b += ul + 1;
		} else if (pl != ul || memcmp(p, u, pl) != 0)
			return false;
		p += pl;
		u += ul;
	}
	if (*p || *u)
		return false;
	req->n_params = n;
	return true;
}

static void free_state(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct http_server *srv = cls;
	struct req_state *st = *con_cls;
	(void)toe;
	if (st) {
		free(st->body);
		free(st);
		*con_cls = NULL;
	}
	track_set(srv, conn, false);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct http_server *srv = cls;
	struct req_state *st = *con_cls;
	(void)version;

	if (!st) { /* the headers are in */
		st = calloc(1, sizeof(*st));
		if (!st)
			return MHD_NO;
		*con_cls = st;
		track_set(srv, conn, true);
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && (strlen(cl) > 9 || strtoull(cl, NULL, 10) > HTTP_MAX_BODY)) {
			st->answered = true;
			return error_on(conn, MHD_HTTP_CONTENT_TOO_LARGE, "PAYLOAD_TOO_LARGE",
					"the request body is larger than 16384 bytes", "Connection", "close");
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (!st->too_large && st->len + *upload_data_size <= HTTP_MAX_BODY) {
			char *n = realloc(st->body, st->len + *upload_data_size + 1);
			if (!n)
				return MHD_NO;
			st->body = n;
			memcpy(st->body + st->len, upload_data, *upload_data_size);
			st->len += *upload_data_size;
			st->body[st->len] = '\0';
		} else
			st->too_large = true;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (st->answered)
		return MHD_YES;
	st->answered = true;
	if (st->too_large)
		return error_on(conn, MHD_HTTP_CONTENT_TOO_LARGE, "PAYLOAD_TOO_LARGE",
				"the request body is larger than 16384 bytes", "Connection", "close");
	if (strlen(url) > HTTP_MAX_URL)
		return error_on(conn, MHD_HTTP_URI_TOO_LONG, "URI_TOO_LONG", "the request path is too long", NULL,
				NULL);

	struct http_request req = { .server = srv, .conn = conn, .method = method, .path = url };
	char buf[HTTP_MAX_URL + HTTP_MAX_PARAMS + 1];
	char allow[128] = "";
	const struct http_route *route = NULL;
	for (size_t i = 0; i < srv->n_routes && !route; i++) {
		const struct http_route *rt = &srv->routes[i];
		if (!route_match(rt->pattern, url, buf, sizeof(buf), &req))
			continue;
		if (strcmp(rt->method, method) == 0) {
			route = rt;
			break;
		}
		if (!strstr(allow, rt->method) && strlen(allow) + strlen(rt->method) + 3 < sizeof(allow))
			snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s", *allow ? ", " : "",
				 rt->method);
	}
	if (!route && *allow)
		return error_on(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED",
				"this path does not take that method (see Allow)", MHD_HTTP_HEADER_ALLOW, allow);
	if (!route)
		return error_on(conn, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such endpoint", NULL, NULL);
	/* route_match ran again for later rows: run it once more on the chosen one */
	route_match(route->pattern, url, buf, sizeof(buf), &req);
	if (route->needs_token) {
		const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
		pthread_mutex_lock(&srv->lock);
		bool configured = srv->token != NULL;
		bool ok = token_matches(srv->token, auth);
		pthread_mutex_unlock(&srv->lock);
		if (!ok)
			return error_on(conn, MHD_HTTP_UNAUTHORIZED, "UNAUTHORIZED",
					!configured ? "no token configured (http.token_file)"
					: auth	    ? "wrong token"
						    : "this endpoint needs Authorization: Bearer <token>",
					MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"usbforge\"");
	}
	req.body = st->body ? st->body : "";
	req.body_len = st->len;
	return route->handler(&req);
}

/* MHD's own messages (a request too big, a connection reset…): debug lines of ours. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) _printf_(2, 0);
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	_cleanup_free_ char *m = str_vprintf(fmt, ap);
	if (!m)
		return;
	size_t n = strlen(m);
	while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == '.'))
		m[--n] = '\0';
	log_debug("http: %s", m);
}

/* ---- start / stop ------------------------------------------------------------------------------- */

/* The token of cfg's token_file into *ret (NULL when none is configured); logs the refusal. */
static int load_token(const struct uf_config *cfg, char **ret)
{
	_cleanup_free_ char *err = NULL;
	char *t = NULL;

	if (!cfg->http.token_file || !*cfg->http.token_file) {
		*ret = NULL;
		return 0;
	}
	int r = token_load(cfg->http.token_file, &t, &err);
	if (r < 0)
		return log_error_errno(r, "%s", err ? err : "http.token_file: out of memory");
	*ret = t;
	return 0;
}

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
}

struct http_server *http_stop(struct http_server *srv)
{
	if (!srv)
		return NULL;
	MHD_socket lfd = MHD_INVALID_SOCKET;
	if (srv->mhd)
		lfd = MHD_quiesce_daemon(srv->mhd); /* no new connections; the socket is ours to close */
	for (size_t i = 0; srv->svc_state && i < srv->n_services; i++)
		if (srv->svc_state[i] && srv->services[i]->stop)
			srv->services[i]->stop(srv, srv->svc_state[i]);
	if (srv->mhd)
		MHD_stop_daemon(srv->mhd);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	if (srv->guard_started) {
		pthread_mutex_lock(&srv->lock);
		srv->guard_stop = true;
		pthread_cond_signal(&srv->guard_wake);
		pthread_mutex_unlock(&srv->lock);
		pthread_join(srv->guard, NULL);
	}
	for (size_t i = 0; i < srv->n_pool; i++)
		db_close(srv->pool[i]);
	token_free(srv->token);
	free(srv->svc_state);
	config_done(&srv->cfg);
	pthread_cond_destroy(&srv->guard_wake);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
	return NULL;
}

int http_server_start(const struct uf_config *cfg, struct board *board, const struct http_route *routes,
		      size_t n_routes, const struct http_service *const *services, size_t n_services,
		      struct http_server **ret)
{
	struct http_server *srv = calloc(1, sizeof(*srv));
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int r;

	if (!srv)
		return log_error_errno(ENOMEM, "http: cannot start: %m");
	pthread_mutex_init(&srv->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->guard_wake, &ca);
	pthread_condattr_destroy(&ca);
	srv->board = board;
	srv->routes = routes;
	srv->n_routes = n_routes;
	srv->services = services;
	srv->n_services = n_services;
	srv->svc_state = calloc(n_services ? n_services : 1, sizeof(void *));
	if (!srv->svc_state || cfg_copy(&srv->cfg, cfg) < 0) {
		http_stop(srv);
		return log_error_errno(ENOMEM, "http: cannot start: %m");
	}
	srv->settings = settings_of(cfg);
	r = load_token(cfg, &srv->token);
	if (r < 0) {
		http_stop(srv);
		return r;
	}
	if (!srv->token)
		log_notice("http: no http.token_file: the endpoints that change jobs answer 401");

	if (inet_pton(AF_INET, cfg->http.host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)cfg->http.port);
		sl = sizeof(*in);
	} else if (inet_pton(AF_INET6, cfg->http.host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)cfg->http.port);
		sl = sizeof(*in6);
	} else {
		http_stop(srv);
		return log_error_errno(EINVAL, "http: http.listen '%s' is not an address", cfg->http.listen);
	}
	(void)sl;
	if (!is_loopback((struct sockaddr *)&ss))
		log_warning("http: listening on %s, which is not a loopback address: the API and the status page "
			    "are reachable from the network",
			    cfg->http.listen);

	for (size_t i = 0; i < n_services; i++) {
		r = services[i]->start ? services[i]->start(srv, &srv->svc_state[i]) : 0;
		if (r < 0) {
			log_error_errno(r, "http: cannot start %s: %m", services[i]->name);
			http_stop(srv);
			return r;
		}
	}
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
			 MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, &ss,
				    MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_THREADS, MHD_OPTION_CONNECTION_LIMIT,
				    (unsigned)HTTP_MAX_CONN, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				    (unsigned)HTTP_MAX_CONN_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
				    (unsigned)HTTP_IDLE_TIMEOUT, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				    (size_t)HTTP_MEMORY_LIMIT, MHD_OPTION_NOTIFY_COMPLETED, free_state, srv,
				    MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_EXTERNAL_LOGGER,
				    on_mhd_log, NULL, MHD_OPTION_END);
	if (!srv->mhd) {
		int e = errno ? errno : EADDRINUSE;
		http_stop(srv);
		return log_error_errno(e, "http: cannot listen on %s: %m", cfg->http.listen);
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = di ? di->port : cfg->http.port;
	if (pthread_create(&srv->guard, NULL, guard_main, srv) != 0) {
		http_stop(srv);
		return log_error_errno(EAGAIN, "http: cannot start: %m");
	}
	srv->guard_started = true;
	if (ss.ss_family == AF_INET6)
		log_info("http: listening on [%s]:%u", cfg->http.host, srv->port);
	else
		log_info("http: listening on %s:%u", cfg->http.host, srv->port);
	*ret = srv;
	return 0;
}

static bool str_differs(const char *a, const char *b) { return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0); }

bool http_server_same_listener(const struct http_server *srv, const struct uf_config *cfg)
{
	return cfg->http.listen && *cfg->http.listen && !str_differs(srv->cfg.http.host, cfg->http.host) &&
	       srv->cfg.http.port == cfg->http.port;
}

void http_server_reload(struct http_server *srv, const struct uf_config *cfg)
{
	char *t = NULL;
	if (load_token(cfg, &t) < 0) {
		log_warning("http: the token stays as it was");
		return;
	}
	char *tf = strdup(cfg->http.token_file ? cfg->http.token_file : "");
	pthread_mutex_lock(&srv->lock);
	token_free(srv->token);
	srv->token = t;
	if (tf) {
		free(srv->cfg.http.token_file);
		srv->cfg.http.token_file = tf;
	}
	srv->settings = settings_of(cfg);
	pthread_mutex_unlock(&srv->lock);
	log_info("http: token file read again (%s)", t ? cfg->http.token_file : "none");
}

void http_settings(struct http_server *srv, struct http_settings *ret)
{
	pthread_mutex_lock(&srv->lock);
	*ret = srv->settings;
	pthread_mutex_unlock(&srv->lock);
}
