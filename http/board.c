/* Implementation of http/board.h: one mutex around a small array of tiles and the counters, a
 * condition variable for board_wait() and a version number. */
#include "http/board.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/macro.h"
#include "util/monotime.h"
#include "util/utf8.h"

const double board_duration_bounds[BOARD_DURATION_BUCKETS] = { 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200 };

/* How often a slot's progress alone moves the version (the page's tiles move at this pace). */
#define PROGRESS_BUMP_S (BOARD_SETTLE_MS / 1000.0)
/* The rate is a moving average over windows of at least this long. */
#define RATE_WINDOW_S 1.0

struct slotrec {
	struct tile t;
	/* the rate's window (monotonic s, bytes) and the last time progress moved the version */
	double win_start, last_bump;
	uint64_t win_done;
};

struct board {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t version;
	struct slotrec *slots;
	size_t n_slots;
	struct board_counters counters;
	bool db_up;
	double last_heartbeat, started;
	char station[TILE_NAME_MAX], worker_id[TILE_TEXT_MAX];
	unsigned max_concurrent;
	void (*listener)(void *);
	void *listener_ud;
	unsigned calling; /* listener calls under way (board_set_listener waits for them) */
	bool held;	  /* a progress change that did not move the version yet (board_settle) */
};

static const char *const tile_names[_TILE_MAX] = {
	[TILE_EMPTY] = "empty",	    [TILE_READY] = "ready",	    [TILE_CHECKING] = "checking",
	[TILE_WRITING] = "writing", [TILE_VERIFYING] = "verifying", [TILE_DONE] = "done",
	[TILE_BAD] = "bad",	    [TILE_UNSAFE] = "unsafe",
};

const char *tile_state_name(enum tile_state s) { return (unsigned)s < _TILE_MAX ? tile_names[s] : NULL; }

static double wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copy src (NULL: "") into dst[size], cut at a UTF-8 character boundary when too long. */
static void text_copy(char *dst, size_t size, const char *src)
{
	size_t n = 0;
	if (src)
		while (src[n]) {
			uint32_t cp;
			int l = utf8_decode((const unsigned char *)src + n, &cp);
			if (l < 0)
				l = 1;
			if (n + (size_t)l >= size)
				break;
			n += (size_t)l;
		}
	if (n)
		memcpy(dst, src, n);
	dst[n] = 0;
}

struct board *board_new(const char *station, const char *worker_id, unsigned max_concurrent)
{
	struct board *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	pthread_mutex_init(&b->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cond, &ca);
	pthread_condattr_destroy(&ca);
	text_copy(b->station, sizeof(b->station), station);
	text_copy(b->worker_id, sizeof(b->worker_id), worker_id);
	b->max_concurrent = max_concurrent;
	b->started = wall_s();
	b->version = 1;
	return b;
}

struct board *board_free(struct board *b)
{
	if (!b)
		return NULL;
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free(b->slots);
	free(b);
	return NULL;
}

/* Under the lock: the slot's record, added when new (NULL: out of memory; the change is lost,
 * the board stays consistent). */
static struct slotrec *find_locked(struct board *b, const char *slot)
{
	for (size_t i = 0; i < b->n_slots; i++)
		if (strncmp(b->slots[i].t.slot, slot, sizeof(b->slots[i].t.slot)) == 0)
			return &b->slots[i];
	struct slotrec *n = realloc(b->slots, (b->n_slots + 1) * sizeof(*n));
	if (!n)
		return NULL;
	b->slots = n;
	struct slotrec *s = &n[b->n_slots++];
	memset(s, 0, sizeof(*s));
	text_copy(s->t.slot, sizeof(s->t.slot), slot);
	s->t.state = TILE_EMPTY;
	s->t.eta = -1;
	s->t.since = wall_s();
	return s;
}

/* Under the lock: the version moves; then (after unlock) bump_done() tells the listener. */
static void bump_locked(struct board *b)
{
	b->version++;
	b->held = false; /* a view is the whole board: the held change goes out with this one */
	pthread_cond_broadcast(&b->cond);
}

static void unlock_bumped(struct board *b, bool bumped)
{
	void (*fn)(void *) = b->listener;
	void *ud = b->listener_ud;
	if (!bumped || !fn) {
		pthread_mutex_unlock(&b->lock);
		return;
	}
	b->calling++;
	pthread_mutex_unlock(&b->lock);
	fn(ud);
	pthread_mutex_lock(&b->lock);
	if (--b->calling == 0)
		pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static void clear_job(struct tile *t)
{
	t->job_id = 0;
	t->order[0] = 0;
	t->unit = 0;
	t->attempt = 0;
}

static void clear_progress(struct slotrec *s)
{
	s->t.done = s->t.total = 0;
	s->t.rate = 0;
	s->t.eta = -1;
	s->win_start = mono_s();
	s->win_done = 0;
}

static void set_state(struct slotrec *s, enum tile_state st)
{
	if (s->t.state != st)
		s->t.since = wall_s();
	s->t.state = st;
}

void board_slot(struct board *b, const char *slot, enum tile_state st, const char *reason, const char *serial,
		uint64_t capacity)
{
	if (!b || !slot)
		return;
	pthread_mutex_lock(&b->lock);
	struct slotrec *s = find_locked(b, slot);
	bool bumped = false;
	if (s) {
		struct tile old = s->t;
		set_state(s, st);
		text_copy(s->t.reason, sizeof(s->t.reason), st == TILE_BAD || st == TILE_UNSAFE ? reason : NULL);
		text_copy(s->t.serial, sizeof(s->t.serial), serial);
		s->t.capacity = capacity;
		if (st != TILE_DONE && st != TILE_BAD)
			clear_job(&s->t);
		if (st != old.state)
			clear_progress(s);
		bumped = memcmp(&old, &s->t, sizeof(old)) != 0;
		if (bumped)
			bump_locked(b);
	}
	unlock_bumped(b, bumped);
}

void board_job_start(struct board *b, const char *slot, int64_t job_id, const char *order, int unit, int attempt)
{
	if (!b || !slot)
		return;
	pthread_mutex_lock(&b->lock);
	struct slotrec *s = find_locked(b, slot);
	if (s) {
		set_state(s, TILE_CHECKING);
		s->t.reason[0] = 0;
		s->t.job_id = job_id;
		text_copy(s->t.order, sizeof(s->t.order), order);
		s->t.unit = unit;
		s->t.attempt = attempt;
		clear_progress(s);
		bump_locked(b);
	}
	unlock_bumped(b, s != NULL);
}

void board_job_stage(struct board *b, const char *slot, enum tile_state st)
{
	if (!b || !slot)
		return;
	pthread_mutex_lock(&b->lock);
	struct slotrec *s = find_locked(b, slot);
	if (s) {
		set_state(s, st);
		clear_progress(s);
		s->last_bump = mono_s();
		bump_locked(b);
	}
	unlock_bumped(b, s != NULL);
}

void board_job_progress(struct board *b, const char *slot, uint64_t done, uint64_t total)
{
	if (!b || !slot)
		return;
	double now = mono_s();
	bool bumped = false;
	pthread_mutex_lock(&b->lock);
	struct slotrec *s = find_locked(b, slot);
	if (s) {
		s->t.done = done;
		s->t.total = total;
		double el = now - s->win_start;
		if (el >= RATE_WINDOW_S && done >= s->win_done) {
			double r = (double)(done - s->win_done) / el;
			s->t.rate = s->t.rate > 0 ? 0.5 * s->t.rate + 0.5 * r : r;
			s->win_start = now;
			s->win_done = done;
		}
		s->t.eta = s->t.rate > 0 && total >= done ? (double)(total - done) / s->t.rate : -1;
		if (now - s->last_bump >= PROGRESS_BUMP_S || done == total) {
			s->last_bump = now;
			bump_locked(b);
			bumped = true;
		} else {
			b->held = true;
		}
	}
	unlock_bumped(b, bumped);
}

void board_job_end(struct board *b, const char *slot, bool done, double duration, uint64_t bytes_written,
		   double write_seconds, uint64_t bytes_verified, double verify_seconds)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	struct board_counters *c = &b->counters;
	if (done) {
		c->jobs_done++;
		size_t i = 0;
		while (i < BOARD_DURATION_BUCKETS && duration > board_duration_bounds[i])
			i++;
		c->duration_bucket[i]++;
		c->duration_sum += duration;
	} else {
		c->attempts_failed++;
	}
	c->bytes_written += bytes_written;
	c->bytes_verified += bytes_verified;
	c->write_seconds += write_seconds;
	c->verify_seconds += verify_seconds;
	struct slotrec *s = slot ? find_locked(b, slot) : NULL;
	if (s)
		clear_progress(s);
	bump_locked(b);
	unlock_bumped(b, true);
}

void board_db(struct board *b, bool up)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	bool bumped = b->db_up != up;
	b->db_up = up;
	if (bumped)
		bump_locked(b);
	unlock_bumped(b, bumped);
}

void board_heartbeat(struct board *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	b->last_heartbeat = wall_s();
	pthread_mutex_unlock(&b->lock); /* not a visible change: /health reads it when asked */
}

int board_view(struct board *b, struct board_view *ret)
{
	memset(ret, 0, sizeof(*ret));
	pthread_mutex_lock(&b->lock);
	if (b->n_slots) {
		ret->tiles = calloc(b->n_slots, sizeof(*ret->tiles));
		if (!ret->tiles) {
			pthread_mutex_unlock(&b->lock);
			return -ENOMEM;
		}
		for (size_t i = 0; i < b->n_slots; i++)
			ret->tiles[i] = b->slots[i].t;
		ret->n_tiles = b->n_slots;
	}
	ret->version = b->version;
	ret->counters = b->counters;
	ret->db_up = b->db_up;
	ret->last_heartbeat = b->last_heartbeat;
	ret->started = b->started;
	memcpy(ret->station, b->station, sizeof(ret->station));
	memcpy(ret->worker_id, b->worker_id, sizeof(ret->worker_id));
	ret->max_concurrent = b->max_concurrent;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

void board_view_done(struct board_view *v)
{
	free(v->tiles);
	v->tiles = NULL;
	v->n_tiles = 0;
}

uint64_t board_version(struct board *b)
{
	pthread_mutex_lock(&b->lock);
	uint64_t v = b->version;
	pthread_mutex_unlock(&b->lock);
	return v;
}

void board_settle(struct board *b)
{
	pthread_mutex_lock(&b->lock);
	bool bumped = b->held;
	if (bumped)
		bump_locked(b);
	unlock_bumped(b, bumped);
}

uint64_t board_wait(struct board *b, uint64_t seen, int timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (timeout_ms > 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&b->lock);
	while (b->version == seen && timeout_ms != 0) {
		int r = timeout_ms < 0 ? pthread_cond_wait(&b->cond, &b->lock)
				       : pthread_cond_timedwait(&b->cond, &b->lock, &until);
		if (r == ETIMEDOUT)
			break;
	}
	uint64_t v = b->version;
	pthread_mutex_unlock(&b->lock);
	return v;
}

void board_set_listener(struct board *b, void (*fn)(void *userdata), void *userdata)
{
	pthread_mutex_lock(&b->lock);
	b->listener = fn;
	b->listener_ud = userdata;
	while (b->calling) /* a call with the old listener may be under way: wait it out */
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}
