/* The JSON form of a slot's tile, one shape for every surface that shows slots: GET /v1/slots,
 * GET /health and the status page's event stream; and the two conversions every document of
 * http/ shares (outside texts, wall clock times). */
#pragma once

#include <jansson.h>

#include "http/board.h"

/* {"slot", "state", "reason", "serial", "capacity_bytes", "since",
 *  "job": {"id", "order", "unit", "attempt"} | null,
 *  "progress": {"done_bytes", "total_bytes", "percent", "rate_bytes_per_s", "eta_seconds"} | null}
 * reason and serial are null when unknown; since is RFC 3339 UTC; progress is there while a
 * stage reports it (writing, verifying); eta_seconds is null until a rate is known.
 * New reference; NULL on ENOMEM. */
json_t *tile_json(const struct tile *t);
/* A text from the database, a device or the configuration (an order number, a serial, a station)
 * as a JSON string: bytes that are not UTF-8 are shown escaped ("\xNN") rather than failing the
 * document. NULL is null. NULL on ENOMEM. */
json_t *http_json_text(const char *s);
/* RFC 3339 UTC ("2026-12-03T18:20:21Z") of a wall clock time in seconds since the epoch; null
 * for 0 (never). */
json_t *http_json_time(double t);

/* An array of tile_json() of every tile of the view. */
json_t *tiles_json(const struct board_view *v);
