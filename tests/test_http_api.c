/* The daemon's HTTP server and API (http/server.h, http/api.h) against the real MariaDB, over
 * loopback: the server runs in this process on a board the test drives (libcurl as the client;
 * a raw socket for the bounds and the slow client), and once inside a real usbforged (its log
 * line, SIGHUP, a refused token file). Every body is checked exactly or field by field against
 * the database. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/jobs.h"
#include "db/orders.h"
#include "helpers/clirun.h"
#include "helpers/daemon.h"
#include "helpers/testdb.h"
#include "helpers/testutil.h"
#include "http/board.h"
#include "http/server.h"
#include "http/slotjson.h"
#include "http/token.h"
#include "util/macro.h"

#define DBNAME "uf_t_http"
#define TOKEN  "t0ken-for-the-http-tests-0123456789"

static struct db *db;
static char *dir, *tokfile;
static struct board *board;
static struct http_server *srv;
static struct uf_config cfg;

static double mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char *write_token(const char *name, const char *text, mode_t mode)
{
	char *p = tu_path(dir, name);
	tu_write_file(p, text, strlen(text));
	cr_assert_eq(chmod(p, mode), 0);
	return p;
}

/* cfg for the server: the test database, 127.0.0.1 port 0, the token file (NULL: none). */
static void make_config(const char *token_file)
{
	tdb_config(&cfg, DBNAME);
	free(cfg.http.listen);
	free(cfg.http.host);
	free(cfg.http.token_file);
	cfg.http.listen = strdup("127.0.0.1:0");
	cfg.http.host = strdup("127.0.0.1");
	cfg.http.port = 0;
	cfg.http.token_file = strdup(token_file ? token_file : "");
}

static void start_server(const char *token_file)
{
	make_config(token_file);
	board = board_new("st-http", "st-http/test/1", 3);
	cr_assert(board);
	board_slot(board, "A", TILE_READY, NULL, "SER-A", 64 << 20);
	board_slot(board, "B", TILE_EMPTY, NULL, NULL, 0);
	cr_assert_eq(http_start(&cfg, board, &srv), 0);
	cr_assert_gt(http_port(srv), 0);
}

static void setup(void)
{
	db = tdb_fresh(DBNAME);
	dir = tu_tmpdir("http");
	tokfile = write_token("http.token", TOKEN "\n", 0600);
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
	td_kill_all();
	srv = http_stop(srv);
	board = board_free(board);
	config_done(&cfg);
	db = db_close(db);
	tu_rmrf(dir);
	free(dir);
	free(tokfile);
	curl_global_cleanup();
}
TestSuite(http, .init = setup, .fini = teardown, .timeout = 120);

/* ---- a client ---- */

struct resp {
	long status;
	char *body, *headers;
	size_t len, hlen;
	json_t *json; /* the body parsed, when it is JSON */
};

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
	struct resp *r = ud;
	size_t k = size * n;
	r->body = realloc(r->body, r->len + k + 1);
	memcpy(r->body + r->len, p, k);
	r->len += k;
	r->body[r->len] = '\0';
	return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct resp *r = ud;
	size_t k = size * n;
	r->headers = realloc(r->headers, r->hlen + k + 1);
	memcpy(r->headers + r->hlen, p, k);
	r->hlen += k;
	r->headers[r->hlen] = '\0';
	return k;
}

static struct resp req_on(unsigned port, const char *method, const char *path, const char *token, const char *body)
{
	struct resp r = { 0 };
	char url[4096];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
	CURL *c = curl_easy_init();
	cr_assert(c);
	struct curl_slist *h = NULL;
	char auth[1200];
	if (token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		h = curl_slist_append(h, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	else if (strcmp(method, "POST") == 0)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	CURLcode cc = curl_easy_perform(c);
	cr_assert_eq(cc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(cc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (!r.body)
		r.body = strdup("");
	r.json = json_loads(r.body, 0, NULL);
	return r;
}

static struct resp req(const char *method, const char *path, const char *token)
{
	return req_on(http_port(srv), method, path, token, NULL);
}

static void resp_done(struct resp *r)
{
	free(r->body);
	free(r->headers);
	json_decref(r->json);
}

/* The reply is status with exactly the error {code, message}. */
static void assert_error(struct resp *r, long status, const char *code, const char *message)
{
	cr_assert_eq(r->status, status, "status %ld, want %ld: %s", r->status, status, r->body);
	json_t *want = json_pack("{s:b, s:{s:s, s:s}}", "success", 0, "error", "code", code, "message", message);
	cr_assert(r->json && json_equal(r->json, want), "body %s", r->body);
	json_decref(want);
}

static json_t *data_of(struct resp *r, long status)
{
	cr_assert_eq(r->status, status, "status %ld: %s", r->status, r->body);
	cr_assert(r->json, "not JSON: %s", r->body);
	cr_assert(json_is_true(json_object_get(r->json, "success")), "%s", r->body);
	cr_assert_eq(json_object_size(r->json), 2, "%s", r->body);
	return json_object_get(r->json, "data");
}

static bool has_header(const struct resp *r, const char *line)
{
	return r->headers && strcasestr(r->headers, line) != NULL;
}

/* ---- helpers on the database ---- */

static void add_order(const char *number, int qty, uint64_t capacity)
{
	struct order_new o = { .number = number,
			       .capacity_bytes = capacity,
			       .quantity = qty,
			       .image_path = "/dev/null",
			       .image_bytes = 1 << 20 };
	int64_t id;
	cr_assert_eq(order_add(db, &o, &id), 0, "%s", db_error(db));
}

static long long count(const char *fmt, ...) _printf_(1, 2);
static long long count(const char *fmt, ...)
{
	char *q = NULL;
	va_list ap;
	va_start(ap, fmt);
	cr_assert(vasprintf(&q, fmt, ap) > 0);
	va_end(ap);
	long long v = tdb_count(db, q);
	free(q);
	return v;
}

/* ---- tests ---- */

Test(http, health_and_slots)
{
	start_server(tokfile);
	struct resp r = req("GET", "/health", NULL);
	json_t *d = data_of(&r, 200);
	struct board_view v;
	cr_assert_eq(board_view(board, &v), 0);
	json_t *tiles = tiles_json(&v);
	board_view_done(&v);
	cr_assert_str_eq(json_string_value(json_object_get(d, "status")), "ok");
	cr_assert(json_is_true(json_object_get(json_object_get(d, "database"), "reachable")));
	cr_assert_str_eq(json_string_value(json_object_get(d, "station")), "st-http");
	cr_assert_str_eq(json_string_value(json_object_get(d, "workerId")), "st-http/test/1");
	cr_assert(json_is_null(json_object_get(d, "lastHeartbeat")), "no heartbeat yet: %s", r.body);
	cr_assert(json_equal(json_object_get(d, "slots"), tiles), "%s", r.body);
	cr_assert_eq(json_object_size(d), 7, "%s", r.body);
	cr_assert(has_header(&r, "Content-Type: application/json"));
	resp_done(&r);

	board_heartbeat(board);
	r = req("GET", "/health", NULL);
	d = data_of(&r, 200);
	cr_assert(json_is_string(json_object_get(d, "lastHeartbeat")), "%s", r.body);
	resp_done(&r);

	r = req("GET", "/v1/slots", NULL);
	d = data_of(&r, 200);
	cr_assert(json_equal(d, tiles), "%s", r.body);
	cr_assert_eq(json_array_size(d), 2);
	resp_done(&r);
	json_decref(tiles);
}

Test(http, not_found_method_and_ids)
{
	start_server(tokfile);
	struct resp r = req("GET", "/nope", NULL);
	assert_error(&r, 404, "NOT_FOUND", "no such endpoint");
	resp_done(&r);
	r = req("GET", "/v1/processing/job/", NULL); /* an empty :param matches nothing */
	assert_error(&r, 404, "NOT_FOUND", "no such endpoint");
	resp_done(&r);

	r = req("DELETE", "/health", NULL);
	assert_error(&r, 405, "METHOD_NOT_ALLOWED", "this path does not take that method (see Allow)");
	cr_assert(has_header(&r, "Allow: GET\r\n"), "%s", r.headers);
	resp_done(&r);
	r = req("GET", "/v1/jobs/1/cancel", NULL);
	assert_error(&r, 405, "METHOD_NOT_ALLOWED", "this path does not take that method (see Allow)");
	cr_assert(has_header(&r, "Allow: POST\r\n"), "%s", r.headers);
	resp_done(&r);

	static const char *const bad[] = {
		"abc", "0", "-1", "1x", "+1", "01x", "9223372036854775808", "99999999999999999999", "1%20"
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char p[128];
		snprintf(p, sizeof(p), "/v1/processing/job/%s", bad[i]);
		r = req("GET", p, NULL);
		assert_error(&r, 400, "BAD_ID",
			     "the job id must be a decimal number between 1 and 9223372036854775807");
		resp_done(&r);
		snprintf(p, sizeof(p), "/v1/jobs/%s/cancel", bad[i]);
		r = req("POST", p, TOKEN);
		assert_error(&r, 400, "BAD_ID",
			     "the job id must be a decimal number between 1 and 9223372036854775807");
		resp_done(&r);
	}
	r = req("GET", "/v1/processing/job/9223372036854775807", NULL);
	assert_error(&r, 404, "JOB_NOT_FOUND", "job 9223372036854775807 does not exist");
	resp_done(&r);
}

Test(http, token)
{
	start_server(tokfile);
	struct resp r = req("POST", "/v1/jobs/1/cancel", NULL);
	assert_error(&r, 401, "UNAUTHORIZED", "this endpoint needs Authorization: Bearer <token>");
	cr_assert(has_header(&r, "WWW-Authenticate: Bearer"), "%s", r.headers);
	resp_done(&r);
	r = req("POST", "/v1/jobs/1/cancel", TOKEN "x");
	assert_error(&r, 401, "UNAUTHORIZED", "wrong token");
	resp_done(&r);
	r = req("POST", "/v1/jobs/1/cancel", "t0ken");
	assert_error(&r, 401, "UNAUTHORIZED", "wrong token");
	resp_done(&r);
	r = req("POST", "/health/stuck-jobs/check", "");
	assert_error(&r, 401, "UNAUTHORIZED", "wrong token");
	resp_done(&r);
	r = req("POST", "/v1/jobs/1/cancel", TOKEN);
	assert_error(&r, 404, "JOB_NOT_FOUND", "job 1 does not exist");
	resp_done(&r);
	srv = http_stop(srv);
	board = board_free(board);
	config_done(&cfg);

	/* no token file: every mutating endpoint says so */
	start_server(NULL);
	r = req("POST", "/v1/orders/X/confirm", TOKEN);
	assert_error(&r, 401, "UNAUTHORIZED", "no token configured (http.token_file)");
	cr_assert(has_header(&r, "WWW-Authenticate: Bearer"), "%s", r.headers);
	resp_done(&r);
	r = req("GET", "/health", NULL); /* reads need none */
	cr_assert_eq(r.status, 200);
	resp_done(&r);
}

Test(http, token_file_rules)
{
	char *err = NULL, *t = NULL, *want = NULL;
	char *loose = write_token("loose.token", TOKEN "\n", 0644);
	cr_assert_eq(token_load(loose, &t, &err), -EINVAL);
	cr_assert(asprintf(&want,
			   "http.token_file %s: mode 0644 is too open: chmod 600 (or 640 with the daemon's group, gid "
			   "%u)",
			   loose, (unsigned)getegid()) > 0);
	cr_assert_str_eq(err, want);
	free(err);
	free(want);
	err = NULL;

	char *link = tu_path(dir, "link.token");
	cr_assert_eq(symlink(tokfile, link), 0);
	cr_assert_eq(token_load(link, &t, &err), -ELOOP);
	cr_assert(asprintf(&want, "http.token_file %s: a symbolic link (not followed): name the file itself", link) >
		  0);
	cr_assert_str_eq(err, want);
	free(err);
	free(want);
	err = NULL;

	char *grp = write_token("group.token", TOKEN "\n", 0640); /* our own group: accepted */
	cr_assert_eq(token_load(grp, &t, &err), 0, "%s", err);
	cr_assert_str_eq(t, TOKEN);
	t = token_free(t);

	char *shorty = write_token("short.token", "abc\n", 0600);
	cr_assert_eq(token_load(shorty, &t, &err), -EINVAL);
	cr_assert(strstr(err, shorty) && strstr(err, "16 to 1024"), "%s", err);
	free(err);
	err = NULL;

	cr_assert(token_matches(TOKEN, "Bearer " TOKEN));
	cr_assert(!token_matches(TOKEN, "Bearer " TOKEN " "));
	cr_assert(!token_matches(TOKEN, "Basic " TOKEN));
	cr_assert(!token_matches(NULL, "Bearer "));

	/* the server refuses to start on such a file */
	make_config(loose);
	board = board_new("st", "w", 1);
	cr_assert_eq(http_start(&cfg, board, &srv), -EINVAL);
	cr_assert_null(srv);
	free(loose);
	free(link);
	free(grp);
	free(shorty);
}

/* Confirm via HTTP makes the jobs `usbforge order confirm` makes, once. */
Test(http, confirm_like_cli)
{
	start_server(tokfile);
	add_order("HTTP-1", 3, 8ULL << 30);
	add_order("CLI-1", 3, 8ULL << 30);

	struct resp r = req("POST", "/v1/orders/HTTP-1/confirm", TOKEN);
	json_t *d = data_of(&r, 200);
	cr_assert_str_eq(json_string_value(json_object_get(d, "orderNumber")), "HTTP-1");
	cr_assert_str_eq(json_string_value(json_object_get(d, "orderStatus")), "confirmed");
	cr_assert_eq(json_integer_value(json_object_get(d, "created")), 3);
	json_t *jobs = json_deep_copy(json_object_get(d, "jobs"));
	cr_assert_eq(json_array_size(jobs), 3);
	for (size_t i = 0; i < 3; i++) {
		json_t *j = json_array_get(jobs, i);
		cr_assert_eq(json_integer_value(json_object_get(j, "unitIndex")), (json_int_t)i);
		cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "queued");
		cr_assert_eq(count("SELECT COUNT(*) FROM processing_jobs j JOIN orders o ON o.id = j.order_id "
				   "WHERE o.order_number = 'HTTP-1' AND j.id = %lld AND j.unit_index = %zu",
				   (long long)json_integer_value(json_object_get(j, "id")), i),
			     1);
	}
	resp_done(&r);

	/* a second confirm (the seeds' path this time): 200, the same jobs, nothing new */
	r = req("POST", "/api/admin/orders/HTTP-1/confirm", TOKEN);
	d = data_of(&r, 200);
	cr_assert_eq(json_integer_value(json_object_get(d, "created")), 0);
	cr_assert(json_equal(json_object_get(d, "jobs"), jobs), "%s", r.body);
	resp_done(&r);
	json_decref(jobs);
	cr_assert_eq(count("SELECT COUNT(*) FROM processing_jobs"), 3);

	char *conf = tdb_write_config(dir, DBNAME, NULL);
	const char *args[] = { "--config", conf, "order", "confirm", "CLI-1", NULL };
	struct tu_run cli = tu_run_cli(dir, args);
	cr_assert_eq(cli.status, 0, "%s", cli.err);
	tu_run_done(&cli);
	free(conf);
	/* the same rows but for the order and the actor: every column that says what a job is */
	cr_assert_eq(count("SELECT COUNT(*) FROM processing_jobs a JOIN orders oa ON oa.id = a.order_id "
			   "JOIN processing_jobs b JOIN orders ob ON ob.id = b.order_id "
			   "WHERE oa.order_number = 'HTTP-1' AND ob.order_number = 'CLI-1' AND a.unit_index = b.unit_index "
			   "AND a.schema_version = b.schema_version AND a.status = b.status AND a.stage = b.stage "
			   "AND a.capacity_bytes = b.capacity_bytes AND a.min_device_bytes = b.min_device_bytes "
			   "AND a.max_attempts = b.max_attempts AND a.attempts = b.attempts "
			   "AND a.generation = b.generation AND a.station <=> b.station"),
		     3);
	cr_assert_eq(count("SELECT COUNT(*) FROM processing_jobs"), 6);
	cr_assert_eq(count("SELECT COUNT(*) FROM audit_log"), count("SELECT COUNT(*) FROM processing_jobs"));

	r = req("POST", "/v1/orders/NOPE/confirm", TOKEN);
	assert_error(&r, 404, "ORDER_NOT_FOUND", "order 'NOPE' does not exist");
	resp_done(&r);
	add_order("GONE-1", 1, 8ULL << 30);
	cr_assert_eq(db_exec(db, NULL, "UPDATE orders SET status = 'cancelled' WHERE order_number = 'GONE-1'", DB_END),
		     0, "%s", db_error(db));
	r = req("POST", "/v1/orders/GONE-1/confirm", TOKEN);
	assert_error(&r, 409, "ORDER_CANCELLED", "order 'GONE-1' is cancelled and cannot be confirmed");
	resp_done(&r);
	cr_assert_eq(count("SELECT COUNT(*) FROM processing_jobs"), 6);
}

Test(http, cancel_retry_and_job)
{
	start_server(tokfile);
	add_order("CR-1", 2, 8ULL << 30);
	struct resp r = req("POST", "/v1/orders/CR-1/confirm", TOKEN);
	json_t *d = data_of(&r, 200);
	long long j1 = json_integer_value(json_object_get(json_array_get(json_object_get(d, "jobs"), 0), "id"));
	long long j2 = json_integer_value(json_object_get(json_array_get(json_object_get(d, "jobs"), 1), "id"));
	resp_done(&r);

	char p[128];
	snprintf(p, sizeof(p), "/v1/jobs/%lld/cancel", j1);
	r = req("POST", p, TOKEN);
	d = data_of(&r, 200);
	json_t *want = json_pack("{s:I, s:s, s:b}", "id", (json_int_t)j1, "status", "cancelled", "cancelRequested", 0);
	cr_assert(json_equal(d, want), "%s", r.body);
	json_decref(want);
	resp_done(&r);
	cr_assert_eq(count("SELECT COUNT(*) FROM processing_jobs WHERE status = 'cancelled'"), 1);
	cr_assert_eq(count("SELECT COUNT(*) FROM processing_jobs WHERE id = %lld AND status = 'cancelled'", j1), 1);
	cr_assert_eq(count("SELECT COUNT(*) FROM processing_jobs WHERE id = %lld AND status = 'queued'", j2), 1);

	r = req("POST", p, TOKEN);
	char m[128];
	snprintf(m, sizeof(m), "job %lld has already ended", j1);
	assert_error(&r, 409, "JOB_ENDED", m);
	resp_done(&r);

	snprintf(p, sizeof(p), "/v1/jobs/%lld/retry", j2);
	r = req("POST", p, TOKEN);
	snprintf(m, sizeof(m), "job %lld is neither failed nor cancelled", j2);
	assert_error(&r, 409, "JOB_NOT_RETRYABLE", m);
	resp_done(&r);

	snprintf(p, sizeof(p), "/v1/jobs/%lld/retry", j1);
	r = req("POST", p, TOKEN);
	d = data_of(&r, 200);
	want = json_pack("{s:I, s:s}", "id", (json_int_t)j1, "status", "queued");
	cr_assert(json_equal(d, want), "%s", r.body);
	json_decref(want);
	resp_done(&r);
	cr_assert_eq(count("SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued'"), 2);
	cr_assert_eq(count("SELECT generation FROM processing_jobs WHERE id = %lld", j1), 1);
	cr_assert_eq(count("SELECT generation FROM processing_jobs WHERE id = %lld", j2), 0);

	r = req("POST", "/v1/jobs/999999/retry", TOKEN);
	assert_error(&r, 404, "JOB_NOT_FOUND", "job 999999 does not exist");
	resp_done(&r);

	snprintf(p, sizeof(p), "/v1/processing/job/%lld", j1);
	r = req("GET", p, NULL);
	d = data_of(&r, 200);
	cr_assert_eq(json_integer_value(json_object_get(d, "id")), j1);
	cr_assert_str_eq(json_string_value(json_object_get(d, "orderNumber")), "CR-1");
	cr_assert_eq(json_integer_value(json_object_get(d, "unitIndex")), 0);
	cr_assert_str_eq(json_string_value(json_object_get(d, "status")), "queued");
	cr_assert_str_eq(json_string_value(json_object_get(d, "stage")), "pending");
	cr_assert_eq(json_integer_value(json_object_get(d, "progress")), 0);
	cr_assert_eq(json_integer_value(json_object_get(d, "attempts")), 0);
	cr_assert_eq(json_integer_value(json_object_get(d, "maxAttempts")), 4);
	cr_assert(json_is_null(json_object_get(d, "slot")));
	cr_assert(json_is_null(json_object_get(d, "completedAt")));
	regex_t re;
	cr_assert_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$",
			     REG_EXTENDED | REG_NOSUB),
		     0);
	cr_assert_eq(regexec(&re, json_string_value(json_object_get(d, "createdAt")), 0, NULL, 0), 0, "%s", r.body);
	regfree(&re);
	cr_assert_eq(json_object_size(d), 18, "%s", r.body);
	resp_done(&r);
}

Test(http, queue_and_stuck_stats)
{
	start_server(tokfile);
	add_order("Q-1", 3, 8ULL << 30);
	struct resp r = req("POST", "/v1/orders/Q-1/confirm", TOKEN);
	resp_done(&r);
	cr_assert_eq(db_exec(db, NULL,
			     "UPDATE processing_jobs SET status = 'cancelled', cancelled_at = NOW(6) "
			     "WHERE unit_index = 2",
			     DB_END),
		     0, "%s", db_error(db));

	r = req("GET", "/v1/processing/queue", NULL);
	json_t *d = data_of(&r, 200);
	json_t *want =
		json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:{s:i, s:[{s:s,s:i},{s:s,s:i},{s:s,s:i},{s:s,s:i},{s:s,s:i},"
			  "{s:s,s:i}], s:n, s:n}}",
			  "total", 3, "queued", 2, "processing", 0, "completed", 0, "failed", 0, "retry", 0,
			  "cancelled", 1, "activeJobs", 0, "maxConcurrent", 3, "dbStats", "total", 3, "by_status",
			  "status", "queued", "count", 2, "status", "processing", "count", 0, "status", "retry",
			  "count", 0, "status", "done", "count", 0, "status", "failed", "count", 0, "status",
			  "cancelled", "count", 1, "avg_duration_seconds", "avg_duration_minutes");
	cr_assert(json_equal(d, want), "%s", r.body);
	json_decref(want);
	resp_done(&r);

	r = req("GET", "/health/stuck-jobs/stats", NULL);
	d = data_of(&r, 200);
	want = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:{s:f, s:f}}", "processing_jobs", 0, "queued_jobs", 2,
			 "completed_jobs", 0, "failed_jobs", 0, "stuck_processing", 0, "stuck_queued", 0,
			 "thresholds_seconds", "processing", 300.0, "queued", 900.0);
	cr_assert(json_equal(d, want), "%s", r.body);
	json_decref(want);
	resp_done(&r);

	/* one job queued for longer than stuck.queued_timeout: the check reports it, once */
	cr_assert_eq(db_exec(db, NULL,
			     "UPDATE processing_jobs SET created_at = created_at - INTERVAL 1 HOUR, next_attempt_at = "
			     "next_attempt_at - INTERVAL 1 HOUR WHERE unit_index = 0",
			     DB_END),
		     0, "%s", db_error(db));
	long long id0 = count("SELECT id FROM processing_jobs WHERE unit_index = 0");
	r = req("POST", "/health/stuck-jobs/check", TOKEN);
	d = data_of(&r, 200);
	want = json_pack("{s:i, s:i, s:i, s:i, s:i, s:[{s:I, s:s, s:b}]}", "total", 1, "retried", 0, "failed", 0,
			 "cancelled", 0, "stuckReported", 1, "actions", "jobId", (json_int_t)id0, "status", "queued",
			 "stuckReported", 1);
	cr_assert(json_equal(d, want), "%s", r.body);
	json_decref(want);
	resp_done(&r);
	r = req("POST", "/health/stuck-jobs/check", TOKEN);
	d = data_of(&r, 200);
	cr_assert_eq(json_integer_value(json_object_get(d, "total")), 0, "%s", r.body);
	resp_done(&r);
}

Test(http, events_paging)
{
	start_server(tokfile);
	add_order("EV-1", 3, 8ULL << 30);
	add_order("EV-2", 2, 8ULL << 30);
	struct resp r = req("POST", "/v1/orders/EV-1/confirm", TOKEN);
	resp_done(&r);
	r = req("POST", "/v1/orders/EV-2/confirm", TOKEN);
	resp_done(&r);
	/* the outbox rows the finishes would write (job.done, job.failed, …), 7 of them */
	for (int i = 0; i < 7; i++) {
		char q[256];
		snprintf(q, sizeof(q),
			 "INSERT INTO events (aggregate_type, aggregate_id, event_type, generation, payload) "
			 "VALUES ('job', %d, 'job.done', 0, '{\"n\": %d}')",
			 100 + i, i);
		cr_assert_eq(db_exec(db, NULL, q, DB_END), 0, "%s", db_error(db));
	}
	long long total = count("SELECT COUNT(*) FROM events");
	cr_assert_eq(total, 7);

	long long since = 0, seen = 0, last = 0;
	for (int page = 0; page < 100; page++) {
		char p[128];
		snprintf(p, sizeof(p), "/v1/events?since=%lld&limit=2", since);
		r = req("GET", p, NULL);
		json_t *d = data_of(&r, 200);
		json_t *evs = json_object_get(d, "events");
		size_t i;
		json_t *e;
		json_array_foreach(evs, i, e)
		{
			long long id = json_integer_value(json_object_get(e, "id"));
			cr_assert_gt(id, last, "each event once, in order: %s", r.body);
			last = id;
			seen++;
			cr_assert(json_is_string(json_object_get(e, "eventType")));
		}
		bool more = json_is_true(json_object_get(d, "more"));
		long long next = json_integer_value(json_object_get(d, "next"));
		cr_assert_eq(next, json_array_size(evs) ? last : since);
		cr_assert_eq(more, json_array_size(evs) == 2);
		resp_done(&r);
		if (!more)
			break;
		since = next;
	}
	cr_assert_eq(seen, total);

	static const char *const bad[] = { "/v1/events?since=-1", "/v1/events?since=x", "/v1/events?since=" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		r = req("GET", bad[i], NULL);
		assert_error(&r, 400, "BAD_SINCE",
			     "since must be an event id (a decimal number, 0 for the first page)");
		resp_done(&r);
	}
	static const char *const badl[] = { "/v1/events?limit=0", "/v1/events?limit=1001", "/v1/events?limit=1e3" };
	for (size_t i = 0; i < ARRAY_SIZE(badl); i++) {
		r = req("GET", badl[i], NULL);
		assert_error(&r, 400, "BAD_LIMIT", "limit must be between 1 and 1000");
		resp_done(&r);
	}
}

/* Every line of the exposition is a HELP, a TYPE or a sample (text format 0.0.4). */
static void assert_exposition(const char *text)
{
	regex_t help, type, smp;
	cr_assert_eq(regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* [^\n]*$", REG_EXTENDED | REG_NOSUB), 0);
	cr_assert_eq(regcomp(&type, "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$",
			     REG_EXTENDED | REG_NOSUB),
		     0);
	cr_assert_eq(regcomp(&smp,
			     "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\",?)*\\})? "
			     "(-?[0-9.]+(e[-+]?[0-9]+)?|[-+]Inf|NaN)$",
			     REG_EXTENDED | REG_NOSUB),
		     0);
	char *copy = strdup(text), *save = NULL;
	size_t n = 0;
	cr_assert(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++)
		cr_assert(regexec(&help, line, 0, NULL, 0) == 0 || regexec(&type, line, 0, NULL, 0) == 0 ||
				  regexec(&smp, line, 0, NULL, 0) == 0,
			  "not exposition format: '%s'", line);
	cr_assert_gt(n, 20);
	free(copy);
	regfree(&help);
	regfree(&type);
	regfree(&smp);
}

Test(http, metrics)
{
	start_server(tokfile);
	add_order("M-1", 2, 8ULL << 30);
	struct resp r = req("POST", "/v1/orders/M-1/confirm", TOKEN);
	resp_done(&r);
	board_job_start(board, "A", 1, "M-1", 0, 1);
	board_job_end(board, "A", true, 45.0, 1000, 2.0, 800, 1.0);
	board_slot(board, "A", TILE_DONE, NULL, "SER-A", 64 << 20);

	r = req("GET", "/metrics", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert(has_header(&r, "Content-Type: text/plain; version=0.0.4"), "%s", r.headers);
	assert_exposition(r.body);
	static const char *const lines[] = {
		"usbforge_database_up 1\n",
		"usbforge_jobs{state=\"queued\"} 2\n",
		"usbforge_jobs{state=\"done\"} 0\n",
		"usbforge_stuck_jobs{kind=\"processing\"} 0\n",
		"usbforge_stuck_jobs{kind=\"queued\"} 0\n",
		"usbforge_events_oldest_unpublished_age_seconds 0\n",
		"usbforge_job_duration_seconds_bucket{le=\"30\"} 0\n",
		"usbforge_job_duration_seconds_bucket{le=\"60\"} 1\n",
		"usbforge_job_duration_seconds_bucket{le=\"+Inf\"} 1\n",
		"usbforge_job_duration_seconds_sum 45\n",
		"usbforge_job_duration_seconds_count 1\n",
		"usbforge_bytes_written_total 1000\n",
		"usbforge_bytes_verified_total 800\n",
		"usbforge_write_throughput_bytes_per_second 500\n",
		"usbforge_verify_throughput_bytes_per_second 800\n",
		"usbforge_slots{state=\"done\"} 1\n",
		"usbforge_slots{state=\"empty\"} 1\n",
		"usbforge_slots{state=\"ready\"} 0\n",
		"# TYPE usbforge_job_duration_seconds histogram\n",
		"# TYPE usbforge_bytes_written_total counter\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(lines); i++)
		cr_assert(strstr(r.body, lines[i]), "missing '%s' in:\n%s", lines[i], r.body);
	resp_done(&r);
}

/* ---- raw sockets: the bounds ---- */

static int connect_raw(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k <= 0)
			return; /* the server may close early: what it answered is what counts */
		p += k;
		n -= (size_t)k;
	}
}

/* Everything the server sends until it closes (deadline: s seconds). */
static char *read_until_close(int fd, double s)
{
	char *buf = calloc(1, 65536);
	size_t len = 0;
	double end = mono() + s;
	while (mono() < end && len < 65535) {
		struct pollfd p = { fd, POLLIN, 0 };
		int ms = (int)((end - mono()) * 1000) + 1;
		if (poll(&p, 1, ms) <= 0)
			continue;
		ssize_t k = recv(fd, buf + len, 65535 - len, 0);
		if (k <= 0)
			return buf;
		len += (size_t)k;
	}
	cr_assert_fail("the server did not close the connection within %.0f s (got %zu bytes)", s, len);
	return buf;
}

Test(http, bounds)
{
	start_server(tokfile);
	/* a body above 16 KiB: 413, the handler never runs */
	char *big = malloc(20001);
	memset(big, 'x', 20000);
	big[20000] = '\0';
	struct resp r = req_on(http_port(srv), "POST", "/v1/orders/B-1/confirm", TOKEN, big);
	assert_error(&r, 413, "PAYLOAD_TOO_LARGE", "the request body is larger than 16384 bytes");
	resp_done(&r);
	free(big);

	/* a long path: 414 (ours, or MHD's when the request line exceeds its buffer) */
	char path[2100] = "/v1/";
	memset(path + 4, 'a', 2000);
	path[2004] = '\0';
	r = req("GET", path, NULL);
	assert_error(&r, 414, "URI_TOO_LONG", "the request path is too long");
	resp_done(&r);

	/* headers above the connection's memory: MHD answers 431 and closes */
	int fd = connect_raw(http_port(srv));
	const char *head = "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ";
	send_all(fd, head, strlen(head));
	char *pad = malloc(40000);
	memset(pad, 'y', 40000);
	send_all(fd, pad, 40000);
	send_all(fd, "\r\n\r\n", 4);
	free(pad);
	char *ans = read_until_close(fd, 10);
	cr_assert(strncmp(ans, "HTTP/1.1 431", 12) == 0, "got: %.80s", ans);
	free(ans);
	close(fd);

	/* and the server still answers */
	r = req("GET", "/health", NULL);
	cr_assert_eq(r.status, 200);
	resp_done(&r);
}

/* A client that sends its request one byte at a time, never finishing, is cut off by the
 * request deadline (not kept forever by the idle timeout, which each byte resets). */
Test(http, slow_client_cut_off, .timeout = 60)
{
	start_server(tokfile);
	int fd = connect_raw(http_port(srv));
	const char *head = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
	send_all(fd, head, strlen(head));
	double start = mono(), end = start + 30;
	bool closed = false;
	while (mono() < end && !closed) {
		struct pollfd p = { fd, POLLIN, 0 };
		/* a byte every 0.5 s: the idle timeout (10 s) alone would never fire */
		if (poll(&p, 1, 500) > 0) {
			char b[256];
			ssize_t k = recv(fd, b, sizeof(b), 0);
			/* the end (or an error answer): the server gave up on us */
			cr_assert(k <= 0 || strncmp(b, "HTTP/1.1 200", 12) != 0, "a 200 to an unfinished request");
			closed = true;
		} else
			send_all(fd, "a", 1);
	}
	cr_assert(closed, "the slow client was not cut off within 30 s");
	close(fd);
	/* others are served meanwhile and after */
	struct resp r = req("GET", "/health", NULL);
	cr_assert_eq(r.status, 200);
	resp_done(&r);
}

Test(http, database_away_503)
{
	/* a port nothing listens on: bound, then closed */
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &al), 0);
	close(s);

	make_config(tokfile);
	free(cfg.db.socket);
	cfg.db.socket = strdup("");
	free(cfg.db.host);
	cfg.db.host = strdup("127.0.0.1");
	cfg.db.port = ntohs(a.sin_port);
	board = board_new("st-http", "w", 3);
	cr_assert_eq(http_start(&cfg, board, &srv), 0);

	struct resp r = req("GET", "/health", NULL);
	cr_assert_eq(r.status, 503, "%s", r.body);
	json_t *e = json_object_get(r.json, "error");
	cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "DATABASE_UNAVAILABLE");
	json_t *d = json_object_get(r.json, "data");
	cr_assert(json_is_false(json_object_get(json_object_get(d, "database"), "reachable")), "%s", r.body);
	cr_assert_str_eq(json_string_value(json_object_get(d, "status")), "degraded");
	resp_done(&r);
	static const char *const paths[] = { "/v1/processing/queue", "/health/stuck-jobs/stats", "/v1/processing/job/1",
					     "/v1/events" };
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		r = req("GET", paths[i], NULL);
		assert_error(&r, 503, "DATABASE_UNAVAILABLE", "the database cannot be reached");
		resp_done(&r);
	}
	r = req("POST", "/v1/jobs/1/cancel", TOKEN);
	assert_error(&r, 503, "DATABASE_UNAVAILABLE", "the database cannot be reached");
	resp_done(&r);
	r = req("GET", "/metrics", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert(strstr(r.body, "usbforge_database_up 0\n"), "%s", r.body);
	cr_assert_null(strstr(r.body, "usbforge_jobs{"), "%s", r.body);
	assert_exposition(r.body);
	resp_done(&r);
	r = req("GET", "/v1/slots", NULL); /* the board needs no database */
	cr_assert_eq(r.status, 200);
	resp_done(&r);
}

/* ---- inside usbforged ---- */

/* The port of the daemon's "http: listening on 127.0.0.1:PORT" line. */
static unsigned wait_listening(const char *logp, double s)
{
	static const char line[] = "http: listening on 127.0.0.1:";
	double end = mono() + s;
	while (mono() < end) {
		char *t = tu_slurp(logp);
		const char *p = strstr(t, line);
		unsigned port = p ? (unsigned)strtoul(p + strlen(line), NULL, 10) : 0;
		free(t);
		if (port)
			return port;
		(void)poll(NULL, 0, 20);
	}
	char *t = tu_slurp(logp);
	cr_assert_fail("no '%s' line in %s within %.0f s:\n%s", line, logp, s, t);
	return 0;
}

Test(http, in_the_daemon)
{
	char *slot = tu_path(dir, "slotA.img");
	cr_assert_eq(truncate(slot, 0), -1);
	int fd = open(slot, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 64 << 20), 0);
	close(fd);
	char *extra = NULL;
	cr_assert(asprintf(&extra,
			   "usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"%s\"; } ); "
			   "};\nhttp = { listen = \"0\"; token_file = \"%s\"; };\n",
			   slot, tokfile) > 0);
	char *conf = tdb_write_config(dir, DBNAME, extra);
	char *logp = tu_path(dir, "d.log");
	pid_t daemon_pid = td_spawn(conf, logp);
	unsigned port = wait_listening(logp, 20);

	/* the board it shows is the daemon's: wait until slot A is ready */
	double end = mono() + 20;
	bool ready = false;
	while (!ready && mono() < end) {
		struct resp r = req_on(port, "GET", "/v1/slots", NULL, NULL);
		json_t *d = data_of(&r, 200);
		json_t *t = json_array_get(d, 0);
		ready = json_array_size(d) == 1 && strcmp(json_string_value(json_object_get(t, "slot")), "A") == 0 &&
			strcmp(json_string_value(json_object_get(t, "state")), "ready") == 0;
		resp_done(&r);
		if (!ready)
			(void)poll(NULL, 0, 50);
	}
	cr_assert(ready, "slot A never showed ready");
	struct resp r = req_on(port, "GET", "/health", NULL, NULL);
	json_t *d = data_of(&r, 200);
	cr_assert(json_is_true(json_object_get(json_object_get(d, "database"), "reachable")), "%s", r.body);
	cr_assert_eq(json_array_size(json_object_get(d, "slots")), 1, "%s", r.body);
	resp_done(&r);

	/* SIGHUP with a new token: the old one stops working, the new one works, same listener */
	char *tok2 = write_token("http2.token", "another-token-of-the-tests-9876\n", 0600);
	cr_assert_eq(rename(tok2, tokfile), 0);
	kill(daemon_pid, SIGHUP);
	end = mono() + 20;
	long status = 0;
	while (mono() < end) {
		r = req_on(port, "POST", "/v1/jobs/1/cancel", "another-token-of-the-tests-9876", NULL);
		status = r.status;
		resp_done(&r);
		if (status == 404)
			break;
		(void)poll(NULL, 0, 50);
	}
	cr_assert_eq(status, 404, "the new token was not taken");
	r = req_on(port, "POST", "/v1/jobs/1/cancel", TOKEN, NULL);
	assert_error(&r, 401, "UNAUTHORIZED", "wrong token");
	resp_done(&r);

	td_stop(daemon_pid, 30);

	/* a token file anyone can read: the daemon does not start, and says which file */
	cr_assert_eq(chmod(tokfile, 0644), 0);
	cr_assert_eq(unlink(logp), 0);
	daemon_pid = td_spawn(conf, logp);
	cr_assert_neq(td_wait_exit(daemon_pid, 30), 0);
	char *log = tu_slurp(logp);
	char *want = NULL;
	cr_assert_null(strstr(log, "http: listening"), "%s", log);
	cr_assert(asprintf(&want, "http.token_file %s: mode 0644 is too open", tokfile) > 0);
	cr_assert(strstr(log, want), "%s", log);
	free(want);
	free(log);
	free(tok2);
	free(extra);
	free(conf);
	free(logp);
	free(slot);
}

/* A port nothing listens on now: bound, then closed. */
static unsigned free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &al), 0);
	close(s);
	return ntohs(a.sin_port);
}

static int count_fds(void)
{
	int n = 0;
	char p[64];
	for (int fd = 0; fd < 4096; fd++) {
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		n += access(p, F_OK) == 0;
	}
	return n;
}

/* Start and stop (and the reload's restart) leave no descriptor behind: the listener, the
 * epoll and inter-thread channels, the database connections. */
Test(http, restart_leaves_nothing)
{
	start_server(tokfile);
	struct resp r = req("GET", "/health", NULL); /* a database connection in the pool */
	resp_done(&r);
	srv = http_stop(srv);
	int before = count_fds();
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(http_start(&cfg, board, &srv), 0);
		r = req("GET", "/health", NULL);
		cr_assert_eq(r.status, 200);
		resp_done(&r);
		/* a reload with the same listen: the same listener, the token read again */
		unsigned old = http_port(srv);
		cr_assert_eq(http_reload(&srv, &cfg, board), 0);
		cr_assert_eq(http_port(srv), old);
		/* a reload naming another port restarts the listener there */
		unsigned port = free_port();
		cfg.http.port = port;
		cr_assert_eq(http_reload(&srv, &cfg, board), 0);
		cr_assert_eq(http_port(srv), port);
		r = req("GET", "/health", NULL);
		cr_assert_eq(r.status, 200);
		resp_done(&r);
		cfg.http.port = 0;
		srv = http_stop(srv);
	}
	cr_assert_eq(count_fds(), before);
}
