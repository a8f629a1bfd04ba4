/* The status page's live feed: GET /v1/slots/events, a Server-Sent Events stream of the board
 * (http/board.h). On connect a client gets "retry: 2000" and the current state at once,
 *     event: slots
 *     data: {"version": N, "station": "…", "db_up": true, "slots": [tile_json…]}
 * then a new "slots" message whenever the board's version has moved (changes that come while a
 * message is on its way are coalesced into the next one: every message is the whole state), and
 * a ": keepalive" comment when nothing was sent for the keepalive interval.
 *
 * A hub owns the streams of one server. Each stream is an MHD response read by a callback that
 * suspends its connection when it has nothing to send; the board's listener (runner and daemon
 * threads) only marks the suspended streams and resumes them, and a small timer thread resumes
 * the ones whose keepalive is due and, while a stream is open, settles the board every
 * BOARD_SETTLE_MS (progress the board held back, such as a stage's last before it stalls,
 * reaches the page within that). Nothing spins: a callback returns 0 only with its connection
 * suspended. The number of streams is bounded (the next one is refused, the caller answers 503).
 *
 * Threads: sse_hub_open and the callbacks run on MHD's threads; sse_hub_free on the thread that
 * stops the server, before MHD_stop_daemon (it resumes and ends every stream, and removes the
 * board listener: the board may be freed once the server has stopped). */
#pragma once

#include <microhttpd.h>

#include "http/board.h"

#define SSE_MAX_STREAMS	 32    /* streams at once; the next gets 503 */
#define SSE_KEEPALIVE_MS 15000 /* a ": keepalive" comment after this long without a message */
#define SSE_RETRY_MS	 2000  /* the "retry:" the client is told (its reconnect delay) */
#define SSE_CONN_TIMEOUT 60    /* s: a stream's connection is closed when it cannot write this long */
#define SSE_STOP_WAIT_MS 2000  /* sse_hub_free waits at most this long for the streams to end */

struct sse_hub;

/* A hub for the board (which must outlive it): at most max_streams streams at once, a keepalive
 * every keepalive_ms (tests pass small values). Registers itself as the board's listener (the
 * board has one; the hub takes it). Returns NULL on ENOMEM or when the timer thread cannot start
 * (errno set). */
struct sse_hub *sse_hub_new(struct board *board, unsigned max_streams, unsigned keepalive_ms);
/* End every stream (each suspended one is resumed and its callback ends the response), wait
 * (bounded by SSE_STOP_WAIT_MS) until each has ended, remove the board listener, stop the timer.
 * Streams whose response MHD has not freed yet keep the hub's memory until it does. NULL safe;
 * returns NULL. */
struct sse_hub *sse_hub_free(struct sse_hub *h);

/* A new stream on the connection, for its access handler to queue with status 200 and then
 * destroy (MHD_queue_response, MHD_destroy_response). 0 and *ret, or -EBUSY (max_streams already
 * open), -ESHUTDOWN (the hub is stopping), -ENOMEM. */
int sse_hub_open(struct sse_hub *h, struct MHD_Connection *conn, struct MHD_Response **ret);
/* Streams open now. */
unsigned sse_hub_streams(struct sse_hub *h);

/* The server's side (http/server.h): the hub lives as long as the listener (sse_service, in
 * http_services[]), and GET /v1/slots/events (sse_get, a row of http_routes[]) opens a stream on
 * it, or answers 503 TOO_MANY_STREAMS. */
struct http_request;
struct http_service;
extern const struct http_service sse_service;
enum MHD_Result sse_get(struct http_request *req);
