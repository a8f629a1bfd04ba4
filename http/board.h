/* The board: what each slot of the kiosk is doing and what the daemon has done since it started,
 * as the HTTP surfaces show it (the status page and its event stream, GET /v1/slots, GET /health,
 * GET /metrics). The daemon's main loop and its runners write it; the HTTP threads read copies.
 * Thread-safe. Every visible change bumps a version; board_wait() sleeps until the version moves
 * and board_set_listener() calls back (the event stream resumes its connections from there). No
 * database: what the board says is what this daemon knows, which is what a kiosk screen shows. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tile_state {
	TILE_EMPTY,	/* no stick */
	TILE_READY,	/* a blank stick, waiting for a job */
	TILE_CHECKING,	/* a job runs: validation, content selection or the probe */
	TILE_WRITING,	/* a job runs: writing */
	TILE_VERIFYING, /* a job runs: verification */
	TILE_DONE,	/* the stick holds a finished unit: take it out */
	TILE_BAD,	/* the stick was refused (fake, read-only, too small): replace it */
	TILE_UNSAFE,	/* not a stick the daemon may write (reason says why) */
	_TILE_MAX,
};
/* "empty", "ready", … as the API and the page name them; NULL out of range. */
const char *tile_state_name(enum tile_state s);

#define TILE_TEXT_MAX 256 /* reason; longer texts are cut at a UTF-8 boundary */
#define TILE_NAME_MAX 128 /* slot, order number, serial */

struct tile {
	char slot[TILE_NAME_MAX];
	enum tile_state state;
	char reason[TILE_TEXT_MAX]; /* bad, unsafe: why; "" otherwise */
	char serial[TILE_NAME_MAX]; /* the stick's serial ("" unknown) */
	uint64_t capacity;	    /* bytes, 0 unknown */
	/* the job (checking, writing, verifying, and done/bad after one) */
	int64_t job_id; /* 0: none */
	char order[TILE_NAME_MAX];
	int unit;    /* unit index within the order */
	int attempt; /* attempt number */
	/* the current stage (writing, verifying) */
	uint64_t done, total; /* bytes */
	double rate;	      /* bytes/s over the last seconds (0 unknown) */
	double eta;	      /* seconds left in the stage (-1 unknown) */
	double since;	      /* wall clock (s since the epoch) when the tile entered its state */
};

/* Since the daemon started: jobs this daemon ended, bytes it wrote and verified. */
#define BOARD_DURATION_BUCKETS 10
extern const double board_duration_bounds[BOARD_DURATION_BUCKETS]; /* seconds, ascending (+Inf implied) */
struct board_counters {
	uint64_t jobs_done, attempts_failed;
	uint64_t bytes_written, bytes_verified;
	double write_seconds, verify_seconds;		      /* time spent writing, verifying */
	uint64_t duration_bucket[BOARD_DURATION_BUCKETS + 1]; /* done jobs, per bucket (not cumulative) */
	double duration_sum;				      /* seconds, done jobs */
};

struct board_view {
	uint64_t version;
	struct tile *tiles; /* in slot order (configured first, then as seen) */
	size_t n_tiles;
	struct board_counters counters;
	bool db_up;
	double last_heartbeat; /* wall clock of the last heartbeat that reached the database; 0 never */
	double started;	       /* wall clock the daemon started */
	char station[TILE_NAME_MAX], worker_id[TILE_TEXT_MAX];
	unsigned max_concurrent;
};

struct board;
struct board *board_new(const char *station, const char *worker_id, unsigned max_concurrent);
/* NULL safe; returns NULL. */
struct board *board_free(struct board *b);

/* The daemon's view of a slot that runs no job: empty, ready, done, bad or unsafe (reason for bad
 * and unsafe). A slot not on the board yet is added. Done and bad keep the job that ended there
 * (the page says which unit to hand over, or which job refused the stick); the other states
 * clear it. Running states come from board_job_*. */
void board_slot(struct board *b, const char *slot, enum tile_state st, const char *reason, const char *serial,
		uint64_t capacity);
/* A runner took a job on the slot: the tile shows it, checking. */
void board_job_start(struct board *b, const char *slot, int64_t job_id, const char *order, int unit, int attempt);
/* The runner entered a stage: checking, writing or verifying (progress reset). */
void board_job_stage(struct board *b, const char *slot, enum tile_state st);
/* Progress within the stage; the rate and time left are worked out here. Cheap enough to call
 * for every chunk: the version moves at most four times a second per slot unless the stage does.
 * A change held back (the version did not move) is in every view; board_settle() publishes it. */
void board_job_progress(struct board *b, const char *slot, uint64_t done, uint64_t total);
/* The attempt ended: counted (done: its duration in seconds). The tile keeps the job until the
 * daemon says what the slot is now (board_slot). */
void board_job_end(struct board *b, const char *slot, bool done, double duration, uint64_t bytes_written,
		   double write_seconds, uint64_t bytes_verified, double verify_seconds);

void board_db(struct board *b, bool up);
void board_heartbeat(struct board *b); /* a heartbeat reached the database now */

/* A copy of everything. 0, or -ENOMEM. */
int board_view(struct board *b, struct board_view *ret);
void board_view_done(struct board_view *v);
uint64_t board_version(struct board *b);
/* Move the version if a progress change was held back since it last moved (the last progress
 * of a stage that then stalls or ends in silence). A reader that waits on the version calls it
 * every BOARD_SETTLE_MS, so no change stays unpublished longer than that. */
void board_settle(struct board *b);
#define BOARD_SETTLE_MS 250
/* Sleep until the version differs from seen, or timeout_ms passes (< 0: forever). Returns the
 * version then. */
uint64_t board_wait(struct board *b, uint64_t seen, int timeout_ms);
/* fn(userdata) is called after each version change, from the thread that made it, with no board
 * lock held; it must be quick and must not call back into the board. One listener; NULL removes
 * it. Returns once no call of the previous listener is under way, so its userdata may be freed
 * then (never call it from the listener itself). */
void board_set_listener(struct board *b, void (*fn)(void *userdata), void *userdata);
