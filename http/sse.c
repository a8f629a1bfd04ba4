/* Implementation of http/sse.h: a list of streams under the hub's mutex, each an MHD callback
 * response that suspends its connection when idle; the board listener and a timer thread resume
 * them. The hub is reference counted (itself plus one per stream whose response MHD still
 * holds), so a response freed after sse_hub_free never touches freed memory. */
#include "http/sse.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/server.h"
#include "http/slotjson.h"
#include "util/macro.h"
#include "util/message.h"
#include "util/monotime.h"

struct sse_stream {
	struct sse_stream *prev, *next; /* the hub's list, under its lock */
	struct sse_hub *hub;
	struct MHD_Connection *conn;
	/* the callback's own (one MHD thread at a time per connection) */
	char *buf; /* the message being sent: buf[off..len) is left */
	size_t len, off;
	uint64_t sent;	       /* board version of the last message; 0 before the first */
	int64_t last_write_ms; /* when bytes last went out */
	/* under the hub's lock */
	int64_t idle_since_ms; /* last_write_ms when it was suspended */
	bool suspended, ended;
};

struct sse_hub {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* the timer's tick and stop, and sse_hub_free's wait for the streams */
	struct board *board;
	unsigned max_streams, keepalive_ms;
	unsigned n_streams, refs;
	bool stopping;
	struct sse_stream *streams;
	pthread_t timer;
	bool timer_started;
	struct sse_hub *next_live;
};

/* The hubs alive, for the board listener: board_set_listener(NULL) does not wait for a call
 * already on its way (its pointers were copied under the board's lock, the call runs after), so
 * the listener looks its hub up here and a hub leaves this list before it is freed. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sse_hub *live;

static void cond_deadline(struct timespec *ts, int64_t ms_from_now)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms_from_now / 1000;
	ts->tv_nsec += (long)(ms_from_now % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Under the lock: resume the suspended streams (all, or those idle since before idle_before). */
static void resume_locked(struct sse_hub *h, int64_t idle_before)
{
	for (struct sse_stream *s = h->streams; s; s = s->next)
		if (s->suspended && s->idle_since_ms <= idle_before) {
			s->suspended = false;
			MHD_resume_connection(s->conn);
		}
}

/* The board moved (runner or daemon thread, no board lock held): only mark and resume. */
static void on_board(void *userdata)
{
	pthread_mutex_lock(&live_lock);
	for (struct sse_hub *h = live; h; h = h->next_live)
		if (h == userdata) {
			pthread_mutex_lock(&h->lock);
			resume_locked(h, INT64_MAX);
			pthread_mutex_unlock(&h->lock);
			break;
		}
	pthread_mutex_unlock(&live_lock);
}

/* Until the hub stops: resumes the streams whose keepalive is due and, while any stream is open,
 * settles the board every BOARD_SETTLE_MS (a held-back progress change then reaches the page). */
static void *timer_main(void *arg)
{
	struct sse_hub *h = arg;
	int64_t tick = MAX(h->keepalive_ms / 4, 10u);
	pthread_mutex_lock(&h->lock);
	while (!h->stopping) {
		struct timespec until;
		cond_deadline(&until, h->n_streams ? MIN(tick, BOARD_SETTLE_MS) : tick);
		(void)pthread_cond_timedwait(&h->cond, &h->lock, &until);
		resume_locked(h, mono_ms() - (int64_t)h->keepalive_ms);
		if (h->stopping || !h->n_streams)
			continue;
		pthread_mutex_unlock(&h->lock); /* the board calls on_board, which takes the lock */
		board_settle(h->board);
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

static void hub_destroy(struct sse_hub *h)
{
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
}

/* Drop one reference (the lock not held); the last frees the hub. */
static void hub_unref(struct sse_hub *h)
{
	pthread_mutex_lock(&h->lock);
	bool last = --h->refs == 0;
	pthread_mutex_unlock(&h->lock);
	if (last)
		hub_destroy(h);
}

struct sse_hub *sse_hub_new(struct board *board, unsigned max_streams, unsigned keepalive_ms)
{
	struct sse_hub *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cond, &ca);
	pthread_condattr_destroy(&ca);
	h->board = board;
	h->max_streams = max_streams;
	h->keepalive_ms = keepalive_ms ? keepalive_ms : SSE_KEEPALIVE_MS;
	h->refs = 1;
	int r = pthread_create(&h->timer, NULL, timer_main, h);
	if (r != 0) {
		hub_destroy(h);
		errno = r;
		return NULL;
	}
	h->timer_started = true;
	pthread_mutex_lock(&live_lock);
	h->next_live = live;
	live = h;
	pthread_mutex_unlock(&live_lock);
	board_set_listener(board, on_board, h);
	return h;
}

static bool all_ended_locked(struct sse_hub *h)
{
	for (struct sse_stream *s = h->streams; s; s = s->next)
		if (!s->ended)
			return false;
	return true;
}

struct sse_hub *sse_hub_free(struct sse_hub *h)
{
	if (!h)
		return NULL;
	board_set_listener(h->board, NULL, NULL);
	pthread_mutex_lock(&live_lock);
	for (struct sse_hub **p = &live; *p; p = &(*p)->next_live)
		if (*p == h) {
			*p = h->next_live;
			break;
		}
	pthread_mutex_unlock(&live_lock);

	pthread_mutex_lock(&h->lock);
	h->stopping = true;
	resume_locked(h, INT64_MAX);
	pthread_cond_broadcast(&h->cond);
	struct timespec until;
	cond_deadline(&until, SSE_STOP_WAIT_MS);
	while (!all_ended_locked(h))
		if (pthread_cond_timedwait(&h->cond, &h->lock, &until) == ETIMEDOUT)
			break; /* a client that reads nothing: not suspended, MHD_stop_daemon closes it */
	pthread_mutex_unlock(&h->lock);
	if (h->timer_started)
		pthread_join(h->timer, NULL);
	hub_unref(h);
	return NULL;
}

/* The next message into s->buf: the whole board. 0 or -ENOMEM. */
static int stream_message(struct sse_stream *s)
{
	struct board_view v;
	if (board_view(s->hub->board, &v) < 0)
		return -ENOMEM;
	json_t *slots = tiles_json(&v);
	json_t *msg = slots ? json_pack("{s:I, s:o, s:b, s:O}", "version", (json_int_t)v.version, "station",
					http_json_text(v.station), "db_up", v.db_up, "slots", slots)
			    : NULL;
	char *data = msg ? json_dumps(msg, JSON_COMPACT) : NULL; /* compact: no newline inside */
	char *text = NULL;
	if (data)
		text = s->sent ? str_printf("event: slots\ndata: %s\n\n", data)
			       : str_printf("retry: %d\nevent: slots\ndata: %s\n\n", SSE_RETRY_MS, data);
	free(data);
	json_decref(msg);
	json_decref(slots);
	uint64_t version = v.version;
	board_view_done(&v);
	if (!text)
		return -ENOMEM;
	free(s->buf);
	s->buf = text;
	s->len = strlen(text);
	s->off = 0;
	s->sent = version;
	return 0;
}

static void stream_text(struct sse_stream *s, const char *text)
{
	free(s->buf);
	s->buf = strdup(text);
	s->len = s->buf ? strlen(s->buf) : 0;
	s->off = 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct sse_stream *s = cls;
	struct sse_hub *h = s->hub;
	for (;;) {
		if (s->off < s->len) {
			size_t n = MIN(max, s->len - s->off);
			memcpy(out, s->buf + s->off, n);
			s->off += n;
			s->last_write_ms = mono_ms();
			return (ssize_t)n;
		}
		pthread_mutex_lock(&h->lock);
		bool stopping = h->stopping;
		if (stopping) {
			s->ended = true;
			pthread_cond_broadcast(&h->cond);
		}
		pthread_mutex_unlock(&h->lock);
		if (stopping)
			return MHD_CONTENT_READER_END_OF_STREAM;

		if (board_version(h->board) != s->sent) {
			if (stream_message(s) < 0)
				return MHD_CONTENT_READER_END_WITH_ERROR;
			continue;
		}
		if (mono_ms() - s->last_write_ms >= (int64_t)h->keepalive_ms) {
			stream_text(s, ": keepalive\n\n");
			if (!s->buf)
				return MHD_CONTENT_READER_END_WITH_ERROR;
			continue;
		}
		/* Nothing to send: suspend. The version is read again under the hub's lock, which the
		 * listener takes after the version moved, so a change is either seen here or resumes. */
		pthread_mutex_lock(&h->lock);
		bool idle = !h->stopping && board_version(h->board) == s->sent;
		if (idle) {
			s->suspended = true;
			s->idle_since_ms = s->last_write_ms;
			MHD_suspend_connection(s->conn);
		}
		pthread_mutex_unlock(&h->lock);
		if (idle)
			return 0;
	}
}

static void stream_free(void *cls)
{
	struct sse_stream *s = cls;
	struct sse_hub *h = s->hub;
	pthread_mutex_lock(&h->lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		h->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	h->n_streams--;
	bool last = --h->refs == 0;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	free(s->buf);
	free(s);
	if (last)
		hub_destroy(h);
}

int sse_hub_open(struct sse_hub *h, struct MHD_Connection *conn, struct MHD_Response **ret)
{
	struct sse_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->hub = h;
	s->conn = conn;
	s->last_write_ms = mono_ms();
	pthread_mutex_lock(&h->lock);
	int r = h->stopping ? -ESHUTDOWN : h->n_streams >= h->max_streams ? -EBUSY : 0;
	if (r == 0) {
		s->next = h->streams;
		if (s->next)
			s->next->prev = s;
		h->streams = s;
		h->n_streams++;
		h->refs++;
		pthread_cond_broadcast(&h->cond); /* the timer's tick shortens while a stream is open */
	}
	pthread_mutex_unlock(&h->lock);
	if (r < 0) {
		free(s);
		return r;
	}
	/* from here on the response owns s: stream_free runs when MHD lets go of it */
	struct MHD_Response *resp =
		MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
	if (!resp) {
		stream_free(s);
		return -ENOMEM;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8") !=
		    MHD_YES ||
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
	    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") != MHD_YES) {
		MHD_destroy_response(resp);
		return -ENOMEM;
	}
	/* a stream is quiet between messages: the server's idle timeout is for requests, not this */
	(void)MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)SSE_CONN_TIMEOUT);
	*ret = resp;
	return 0;
}

unsigned sse_hub_streams(struct sse_hub *h)
{
	pthread_mutex_lock(&h->lock);
	unsigned n = h->n_streams;
	pthread_mutex_unlock(&h->lock);
	return n;
}

static int sse_start(struct http_server *srv, void **ret_state)
{
	struct sse_hub *h = sse_hub_new(http_board(srv), SSE_MAX_STREAMS, SSE_KEEPALIVE_MS);
	if (!h)
		return errno > 0 ? -errno : -ENOMEM;
	*ret_state = h;
	return 0;
}

static void sse_stop(struct http_server *srv, void *state) { sse_hub_free(state); }

const struct http_service sse_service = { .name = "the status page's event stream",
					  .start = sse_start,
					  .stop = sse_stop };

enum MHD_Result sse_get(struct http_request *req)
{
	struct sse_hub *h = http_service_state(req->server, &sse_service);
	struct MHD_Response *resp = NULL;
	int r = h ? sse_hub_open(h, req->conn, &resp) : -ESHUTDOWN;
	if (r == -EBUSY)
		return http_reply_errorf(req, MHD_HTTP_SERVICE_UNAVAILABLE, "TOO_MANY_STREAMS",
					 "already %d event streams open; try again later", SSE_MAX_STREAMS);
	if (r < 0)
		return http_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
					"the event stream is not available");
	enum MHD_Result q = MHD_queue_response(req->conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return q;
}
