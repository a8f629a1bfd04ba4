/* The JSON form of a slot's tile, one shape for every surface that shows slots: GET /v1/slots,
 * GET /health and the status page's event stream. */
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
/* An array of tile_json() of every tile of the view. */
json_t *tiles_json(const struct board_view *v);
