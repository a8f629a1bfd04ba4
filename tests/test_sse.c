/* http/sse and http/page on a libmicrohttpd daemon of the test's own (loopback, port 0, the
 * server's threading: internal polling thread pool, epoll, suspend/resume), read by raw
 * sockets: the first event at once, the next one within a deadline of a board change, the
 * keepalive without spinning a thread, the stream limit's 503, a clean stop, and the page's
 * headers and body. Then the same through the daemon's server (http_start: the route rows, the
 * service, the 503's JSON, http_stop ending the streams). No database. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "helpers/clirun.h"
#include "helpers/testutil.h"
#include "http/board.h"
#include "http/page.h"
#include "http/server.h"
#include "http/sse.h"
#include "util/macro.h"
#include "util/monotime.h"

#define MAX_STREAMS  3
#define KEEPALIVE_MS 300

static struct board *board;
static struct sse_hub *hub;
static struct MHD_Daemon *mhd;
static unsigned port;

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			       const char *version, const char *upload, size_t *upload_size, void **req)
{
	struct MHD_Response *r = NULL;
	unsigned status = MHD_HTTP_OK;
	if (strcmp(url, "/v1/slots/events") == 0) {
		int e = sse_hub_open(hub, c, &r);
		if (e < 0) {
			static const char busy[] = "busy\n";
			status = MHD_HTTP_SERVICE_UNAVAILABLE;
			r = MHD_create_response_from_buffer(sizeof(busy) - 1, (void *)busy, MHD_RESPMEM_PERSISTENT);
		}
	} else {
		cr_assert_eq(page_response(&r), 0);
	}
	enum MHD_Result q = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return q;
}

static void setup(void)
{
	board = board_new("test-station", "test/host/1", 4);
	board_slot(board, "A", TILE_EMPTY, NULL, NULL, 0);
	hub = sse_hub_new(board, MAX_STREAMS, KEEPALIVE_MS);
	cr_assert(hub);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL,
			       NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2,
			       MHD_OPTION_END);
	cr_assert(mhd);
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT);
	cr_assert(i && i->port);
	port = i->port;
}

/* The server's order: the hub first (it ends its streams), then MHD, then the board. */
static void teardown(void)
{
	hub = sse_hub_free(hub);
	if (mhd)
		MHD_stop_daemon(mhd);
	mhd = NULL;
	board = board_free(board);
}
TestSuite(sse, .init = setup, .fini = teardown, .timeout = 60);

struct client {
	int fd;
	char buf[1 << 16];
	size_t len, used; /* buf[used..len) not consumed yet */
};

/* Read more into c->buf until deadline (mono ms). 1 read, 0 end of stream, -ETIMEDOUT. */
static int client_fill(struct client *c, int64_t deadline)
{
	int64_t left = deadline - mono_ms();
	if (left <= 0)
		return -ETIMEDOUT;
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int r = poll(&p, 1, (int)left);
	if (r == 0)
		return -ETIMEDOUT;
	cr_assert_gt(r, 0);
	cr_assert_lt(c->len, sizeof(c->buf) - 1, "the stream sent more than the test expects");
	ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	cr_assert_geq(n, 0, "read: %s", strerror(errno));
	c->len += (size_t)n;
	c->buf[c->len] = 0;
	return n > 0;
}

/* The next piece of the stream that ends with sep (malloc'd, sep left off), within timeout_ms;
 * NULL on timeout or end of stream (*eof tells which). */
static char *client_next(struct client *c, const char *sep, int timeout_ms, bool *eof)
{
	int64_t deadline = mono_ms() + timeout_ms;
	*eof = false;
	for (;;) {
		char *end = strstr(c->buf + c->used, sep);
		if (end) {
			char *s = strndup(c->buf + c->used, (size_t)(end - (c->buf + c->used)));
			c->used = (size_t)(end - c->buf) + strlen(sep);
			return s;
		}
		int r = client_fill(c, deadline);
		if (r <= 0) {
			*eof = r == 0;
			return NULL;
		}
	}
}

/* GET path (HTTP/1.0: the body is the raw stream, not chunked), returns the status line's code
 * and the headers in *ret_headers (malloc'd). */
static int client_get(struct client *c, const char *path, char **ret_headers)
{
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(c->fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	cr_assert_eq(write(c->fd, req, (size_t)n), n);
	bool eof;
	char *h = client_next(c, "\r\n\r\n", 5000, &eof);
	cr_assert(h, "no response headers within 5 s");
	int status = 0;
	cr_assert_eq(sscanf(h, "HTTP/1.%*d %d", &status), 1, "status line: %s", h);
	*ret_headers = h;
	return status;
}

static void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* The next "event: slots" message's data, parsed; asserts it comes within timeout_ms. */
static json_t *next_slots(struct client *c, int timeout_ms, bool want_retry)
{
	bool eof;
	char *m = client_next(c, "\n\n", timeout_ms, &eof);
	cr_assert(m, "no message within %d ms (%s)", timeout_ms, eof ? "end of stream" : "timeout");
	const char *data = want_retry ? "retry: 2000\nevent: slots\ndata: " : "event: slots\ndata: ";
	cr_assert_eq(strncmp(m, data, strlen(data)), 0, "message: %s", m);
	json_error_t err;
	json_t *j = json_loads(m + strlen(data), 0, &err);
	cr_assert(j, "data is not JSON (%s): %s", err.text, m);
	free(m);
	return j;
}

static const char *slot_state(json_t *msg, size_t i)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(msg, "slots"), i), "state"));
}

static char *headers_of(const char *path, int *status)
{
	struct client c;
	char *h;
	*status = client_get(&c, path, &h);
	client_close(&c);
	return h;
}

Test(sse, first_event_then_each_change)
{
	struct client c;
	char *h;
	cr_assert_eq(client_get(&c, "/v1/slots/events", &h), 200);
	cr_expect(strstr(h, "\r\nContent-Type: text/event-stream; charset=utf-8"), "%s", h);
	cr_expect(strstr(h, "\r\nCache-Control: no-store"), "%s", h);
	free(h);

	json_t *m = next_slots(&c, 2000, true);
	cr_expect_str_eq(json_string_value(json_object_get(m, "station")), "test-station");
	cr_expect(json_is_false(json_object_get(m, "db_up")));
	cr_expect_eq(json_integer_value(json_object_get(m, "version")), (json_int_t)board_version(board));
	cr_expect_eq(json_array_size(json_object_get(m, "slots")), 1);
	cr_expect_str_eq(slot_state(m, 0), "empty");
	json_int_t v1 = json_integer_value(json_object_get(m, "version"));
	json_decref(m);

	/* a job starts: the next message says so (a deadline for a failing run, not a clock) */
	board_job_start(board, "A", 7, "ORD-7", 2, 1);
	m = next_slots(&c, 5000, false);
	cr_expect_gt(json_integer_value(json_object_get(m, "version")), v1);
	cr_expect_str_eq(slot_state(m, 0), "checking");
	json_t *job = json_object_get(json_array_get(json_object_get(m, "slots"), 0), "job");
	cr_expect_str_eq(json_string_value(json_object_get(job, "order")), "ORD-7");
	cr_expect_eq(json_integer_value(json_object_get(job, "unit")), 2);
	json_decref(m);

	/* a second slot appears and the database comes up: one message carries the latest state */
	board_slot(board, "B", TILE_BAD, "read-only: the stick refuses writes", NULL, 0);
	board_db(board, true);
	for (int i = 0; i < 2; i++) { /* the two changes come as one message or two */
		m = next_slots(&c, 5000, false);
		bool latest = json_is_true(json_object_get(m, "db_up"));
		if (latest || i == 1) {
			cr_expect(latest);
			cr_expect_str_eq(slot_state(m, 1), "bad");
			json_decref(m);
			break;
		}
		json_decref(m);
	}
	client_close(&c);
}

Test(sse, keepalive_without_spinning)
{
	struct client c;
	char *h;
	cr_assert_eq(client_get(&c, "/v1/slots/events", &h), 200);
	free(h);
	json_decref(next_slots(&c, 2000, true));

	/* nothing changes: three keepalive comments and nothing else, each after ~KEEPALIVE_MS. The
	 * process's CPU time over them shows that no thread spins while the stream is idle (a
	 * callback returning 0 without suspending would burn a core for the whole wait). */
	struct rusage r0, r1;
	cr_assert_eq(getrusage(RUSAGE_SELF, &r0), 0);
	int64_t t0 = mono_ms();
	for (int i = 0; i < 3; i++) {
		bool eof;
		char *k = client_next(&c, "\n\n", 5 * KEEPALIVE_MS, &eof);
		cr_assert(k, "keepalive %d within %d ms", i, 5 * KEEPALIVE_MS);
		cr_expect_str_eq(k, ": keepalive");
		free(k);
	}
	int64_t wall = mono_ms() - t0;
	cr_assert_eq(getrusage(RUSAGE_SELF, &r1), 0);
	double cpu =
		(double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
		(double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
	cr_expect_geq(wall, 3 * KEEPALIVE_MS - 50, "keepalives came early: %lld ms", (long long)wall);
	cr_expect_lt(cpu, 0.25 * (double)wall / 1000.0, "%.3f s of CPU in %lld ms idle", cpu, (long long)wall);
	client_close(&c);
}

Test(sse, stream_limit_503_and_a_closed_stream_frees_its_place)
{
	struct client c[MAX_STREAMS], extra;
	char *h;
	for (int i = 0; i < MAX_STREAMS; i++) {
		cr_assert_eq(client_get(&c[i], "/v1/slots/events", &h), 200);
		free(h);
		json_decref(next_slots(&c[i], 2000, true));
	}
	cr_expect_eq(sse_hub_streams(hub), MAX_STREAMS);
	int status;
	h = headers_of("/v1/slots/events", &status);
	cr_expect_eq(status, 503, "%s", h);
	free(h);

	/* a client goes away: its place is free after its next write fails (the keepalive) */
	client_close(&c[0]);
	int64_t deadline = mono_ms() + 5000;
	while (sse_hub_streams(hub) != MAX_STREAMS - 1 && mono_ms() < deadline)
		(void)board_wait(board, board_version(board), 20); /* a bounded 20 ms wait */
	cr_assert_eq(sse_hub_streams(hub), MAX_STREAMS - 1);
	cr_assert_eq(client_get(&extra, "/v1/slots/events", &h), 200);
	free(h);
	json_decref(next_slots(&extra, 2000, true));
	client_close(&extra);
	for (int i = 1; i < MAX_STREAMS; i++)
		client_close(&c[i]);
}

Test(sse, stop_ends_every_stream)
{
	struct client c[2];
	char *h;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(client_get(&c[i], "/v1/slots/events", &h), 200);
		free(h);
		json_decref(next_slots(&c[i], 2000, true));
	}
	hub = sse_hub_free(hub); /* both suspended: resumed and ended */
	MHD_stop_daemon(mhd);
	mhd = NULL;
	for (int i = 0; i < 2; i++) {
		bool eof;
		char *rest = client_next(&c[i], "\n\n", 3000, &eof);
		cr_expect_null(rest, "after stop: %s", rest);
		cr_expect(eof, "stream %d ended within 3 s", i);
		free(rest);
		client_close(&c[i]);
	}
	/* the board lives on without the hub's listener */
	board_slot(board, "A", TILE_READY, NULL, NULL, 0);
}

Test(sse, page)
{
	struct client c;
	char *h;
	cr_assert_eq(client_get(&c, "/", &h), 200);
	cr_expect(strstr(h, "\r\nContent-Type: text/html; charset=utf-8\r\n"), "%s", h);
	cr_expect(strstr(h, "\r\nCache-Control: no-store\r\n"), "%s", h);
	const char *csp = page_csp();
	cr_assert(csp);
	cr_expect(strstr(h, csp), "%s", h);
	cr_expect_eq(strncmp(csp, "default-src 'self'; script-src 'sha256-", 39), 0, "%s", csp);
	cr_expect(strstr(csp, "; style-src 'sha256-"), "%s", csp);
	cr_expect_null(strstr(csp, "unsafe-inline"), "%s", csp);
	free(h);
	/* the body is http/page.html, byte for byte */
	while (client_fill(&c, mono_ms() + 5000) > 0)
		;
	char *src = tu_path(tu_source_dir(), "http/page.html");
	char *want = tu_slurp(src);
	cr_expect_eq(c.len - c.used, strlen(want));
	cr_expect_str_eq(c.buf + c.used, want);
	free(want);
	free(src);
	client_close(&c);
}

/* ---- through the daemon's server (http/server.h): the route rows, the service, http_stop ---- */

static struct http_server *srv;
static struct uf_config srv_cfg;
static char *srv_dir;

static void server_setup(void)
{
	board = board_new("test-station", "test/host/1", 4);
	board_slot(board, "A", TILE_READY, NULL, NULL, 0);
	srv_dir = tu_tmpdir("sse");
	char *conf = tu_path(srv_dir, "usbforge.conf");
	static const char text[] = "station = \"test-station\";\nhttp = { listen = \"127.0.0.1:0\"; };\n";
	tu_write_file(conf, text, sizeof(text) - 1);
	char *err = NULL;
	cr_assert_eq(config_load(conf, &srv_cfg, &err), 0, "%s", err ? err : "?");
	free(conf);
	cr_assert_eq(http_start(&srv_cfg, board, &srv), 0);
	port = http_port(srv);
	cr_assert_gt(port, 0);
}

static void server_teardown(void)
{
	srv = http_stop(srv);
	config_done(&srv_cfg);
	board = board_free(board);
	tu_rmrf(srv_dir);
	free(srv_dir);
}
TestSuite(server, .init = server_setup, .fini = server_teardown, .timeout = 60);

Test(server, page_and_stream_rows)
{
	int status;
	char *h = headers_of("/", &status);
	cr_expect_eq(status, 200);
	cr_expect(strstr(h, "\r\nContent-Type: text/html; charset=utf-8\r\n"), "%s", h);
	cr_expect(strstr(h, page_csp()), "%s", h);
	free(h);

	struct client c;
	cr_assert_eq(client_get(&c, "/v1/slots/events", &h), 200);
	cr_expect(strstr(h, "\r\nContent-Type: text/event-stream; charset=utf-8"), "%s", h);
	free(h);
	json_t *m = next_slots(&c, 2000, true);
	cr_expect_str_eq(slot_state(m, 0), "ready");
	json_decref(m);
	board_job_start(board, "A", 9, "ORD-9", 0, 1);
	board_job_stage(board, "A", TILE_WRITING);
	board_job_progress(board, "A", 50, 100);
	int64_t deadline = mono_ms() + 5000;
	const char *st = NULL;
	/* The three changes come in one message or several; the last says writing 50 %. Progress
	 * right after a stage is held back by the board and goes out at the hub's next settle. */
	for (;;) {
		int64_t left = deadline - mono_ms();
		m = next_slots(&c, (int)MAX(left, 1), false);
		st = slot_state(m, 0);
		json_t *p = json_object_get(json_array_get(json_object_get(m, "slots"), 0), "progress");
		bool last = strcmp(st, "writing") == 0 && json_integer_value(json_object_get(p, "percent")) == 50;
		json_decref(m);
		if (last)
			break;
	}
	client_close(&c);
}

Test(server, the_stream_after_the_limit_gets_503)
{
	struct client c[SSE_MAX_STREAMS];
	char *h;
	for (int i = 0; i < SSE_MAX_STREAMS; i++) {
		cr_assert_eq(client_get(&c[i], "/v1/slots/events", &h), 200, "stream %d", i);
		free(h);
		json_decref(next_slots(&c[i], 2000, true));
	}
	struct client x;
	cr_assert_eq(client_get(&x, "/v1/slots/events", &h), 503);
	cr_expect(strstr(h, "\r\nContent-Type: application/json"), "%s", h);
	free(h);
	while (client_fill(&x, mono_ms() + 3000) > 0)
		;
	json_error_t err;
	json_t *body = json_loads(x.buf + x.used, 0, &err);
	cr_assert(body, "503 body: %s", x.buf + x.used);
	cr_expect(json_is_false(json_object_get(body, "success")));
	json_t *e = json_object_get(body, "error");
	cr_expect_str_eq(json_string_value(json_object_get(e, "code")), "TOO_MANY_STREAMS");
	cr_expect_str_eq(json_string_value(json_object_get(e, "message")),
			 "already 32 event streams open; try again later");
	json_decref(body);
	client_close(&x);
	for (int i = 0; i < SSE_MAX_STREAMS; i++)
		client_close(&c[i]);
}

Test(server, http_stop_ends_the_streams)
{
	struct client c[2];
	char *h;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(client_get(&c[i], "/v1/slots/events", &h), 200);
		free(h);
		json_decref(next_slots(&c[i], 2000, true));
	}
	srv = http_stop(srv);
	for (int i = 0; i < 2; i++) {
		bool eof;
		char *rest = client_next(&c[i], "\n\n", 3000, &eof);
		cr_expect_null(rest, "after http_stop: %s", rest);
		cr_expect(eof, "stream %d ended within 3 s", i);
		free(rest);
		client_close(&c[i]);
	}
	board_slot(board, "A", TILE_EMPTY, NULL, NULL, 0); /* no listener left behind */
}
