/* http/board: the slot tiles the HTTP surfaces show, the counters behind /metrics, and the
 * version that wakes the event stream. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "http/board.h"
#include "http/slotjson.h"

static struct board *b;
static void setup(void) { b = board_new("st1", "st1/host/1", 2); }
static void teardown(void) { b = board_free(b); }
TestSuite(board, .init = setup, .fini = teardown);

static struct tile tile(const char *slot)
{
	struct board_view v;
	cr_assert_eq(board_view(b, &v), 0);
	struct tile t = { .state = _TILE_MAX };
	for (size_t i = 0; i < v.n_tiles; i++)
		if (strcmp(v.tiles[i].slot, slot) == 0)
			t = v.tiles[i];
	board_view_done(&v);
	cr_assert_neq(t.state, _TILE_MAX, "slot %s is on the board", slot);
	return t;
}

Test(board, names)
{
	const char *want[] = { "empty", "ready", "checking", "writing", "verifying", "done", "bad", "unsafe" };
	for (int s = 0; s < _TILE_MAX; s++)
		cr_expect_str_eq(tile_state_name(s), want[s]);
	cr_expect_null(tile_state_name(_TILE_MAX));
	cr_expect_null(tile_state_name(-1));
}

Test(board, slots_in_order_and_job_lifecycle)
{
	board_slot(b, "a", TILE_READY, "ignored for ready", "SER1", 1000);
	board_slot(b, "b", TILE_UNSAFE, "mounted", NULL, 0);
	struct board_view v;
	cr_assert_eq(board_view(b, &v), 0);
	cr_assert_eq(v.n_tiles, 2);
	cr_expect_str_eq(v.tiles[0].slot, "a");
	cr_expect_str_eq(v.tiles[1].slot, "b");
	cr_expect_str_eq(v.station, "st1");
	cr_expect_eq(v.max_concurrent, 2);
	board_view_done(&v);
	cr_expect_str_eq(tile("a").reason, "");
	cr_expect_str_eq(tile("a").serial, "SER1");
	cr_expect_str_eq(tile("b").reason, "mounted");

	board_job_start(b, "a", 42, "A-1001", 3, 1);
	struct tile t = tile("a");
	cr_expect_eq(t.state, TILE_CHECKING);
	cr_expect_eq(t.job_id, 42);
	cr_expect_str_eq(t.order, "A-1001");
	cr_expect_eq(t.unit, 3);
	board_job_stage(b, "a", TILE_WRITING);
	board_job_progress(b, "a", 250, 1000);
	t = tile("a");
	cr_expect_eq(t.state, TILE_WRITING);
	cr_expect_eq(t.done, 250);
	cr_expect_eq(t.total, 1000);
	board_job_end(b, "a", true, 45.0, 1000, 2.0, 1000, 1.0);
	board_slot(b, "a", TILE_DONE, NULL, "SER1", 1000);
	t = tile("a");
	cr_expect_eq(t.state, TILE_DONE);
	cr_expect_eq(t.job_id, 42, "a done tile keeps its job: which unit to hand over");
	cr_expect_str_eq(t.order, "A-1001");
	board_slot(b, "a", TILE_EMPTY, NULL, NULL, 0);
	t = tile("a");
	cr_expect_eq(t.job_id, 0, "taken out: the job is gone from the tile");
	cr_expect_str_eq(t.order, "");
	cr_expect_str_eq(t.serial, "");
}

Test(board, counters_and_histogram)
{
	board_job_end(b, "a", true, 5, 100, 1.0, 100, 0.5); /* bucket <=10 */
	board_job_end(b, "a", true, 10, 100, 1.0, 0, 0);    /* <=10 (bounds are inclusive) */
	board_job_end(b, "a", true, 99999, 100, 1.0, 0, 0); /* +Inf */
	board_job_end(b, "a", false, 3, 50, 0.5, 0, 0);	    /* a failed attempt: no duration */
	struct board_view v;
	cr_assert_eq(board_view(b, &v), 0);
	const struct board_counters *c = &v.counters;
	cr_expect_eq(c->jobs_done, 3);
	cr_expect_eq(c->attempts_failed, 1);
	cr_expect_eq(c->bytes_written, 350);
	cr_expect_eq(c->bytes_verified, 100);
	cr_expect_float_eq(c->write_seconds, 3.5, 1e-9);
	cr_expect_float_eq(c->verify_seconds, 0.5, 1e-9);
	cr_expect_eq(c->duration_bucket[0], 2);
	cr_expect_eq(c->duration_bucket[BOARD_DURATION_BUCKETS], 1);
	cr_expect_float_eq(c->duration_sum, 100014.0, 1e-6);
	board_view_done(&v);
}

Test(board, long_texts_cut_at_a_character_boundary)
{
	char reason[2 * TILE_TEXT_MAX];
	size_t n = 0;
	while (n + 2 < sizeof(reason) - 1) { /* "ü" is two bytes: the cut must not split one */
		reason[n++] = (char)0xc3;
		reason[n++] = (char)0xbc;
	}
	reason[n] = 0;
	board_slot(b, "x", TILE_BAD, reason, NULL, 0);
	struct tile t = tile("x");
	size_t l = strlen(t.reason);
	cr_expect_lt(l, (size_t)TILE_TEXT_MAX);
	cr_expect_eq(l % 2, 0, "cut between characters, not inside one (%zu bytes)", l);
	cr_expect_eq(l, TILE_TEXT_MAX - 2);
}

Test(board, version_moves_only_on_visible_change)
{
	uint64_t v0 = board_version(b);
	board_slot(b, "a", TILE_READY, NULL, "S", 1);
	uint64_t v1 = board_version(b);
	cr_expect_gt(v1, v0);
	board_slot(b, "a", TILE_READY, NULL, "S", 1); /* the same again: nothing to show */
	cr_expect_eq(board_version(b), v1);
	board_heartbeat(b);
	cr_expect_eq(board_version(b), v1);
	board_db(b, true);
	cr_expect_gt(board_version(b), v1);
	cr_expect_eq(board_wait(b, board_version(b), 0), board_version(b), "a zero timeout does not wait");
}

static int calls;
static void on_change(void *ud) { (*(int *)ud)++; }

static void *changer(void *p)
{
	board_slot(p, "late", TILE_READY, NULL, NULL, 0);
	return NULL;
}

Test(board, wait_wakes_on_change_and_listener_is_told)
{
	calls = 0;
	board_set_listener(b, on_change, &calls);
	uint64_t v = board_version(b);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, changer, b), 0);
	uint64_t now = board_wait(b, v, 10000); /* a deadline, not a clock: it returns on the change */
	pthread_join(th, NULL);
	cr_expect_gt(now, v);
	cr_expect_eq(calls, 1);
	board_set_listener(b, NULL, NULL);
	board_slot(b, "late", TILE_EMPTY, NULL, NULL, 0);
	cr_expect_eq(calls, 1);
}

Test(board, settle_publishes_held_back_progress_once)
{
	calls = 0;
	board_slot(b, "a", TILE_READY, NULL, "S", 1000);
	board_job_start(b, "a", 7, "A-7", 1, 1);
	board_job_stage(b, "a", TILE_WRITING);
	board_set_listener(b, on_change, &calls);
	uint64_t v = board_version(b);
	/* Right after the stage moved the version this is held back (or, on a machine slower than
	 * the coalescing interval, published at once): either way one move, by the time settle is
	 * done, and a reader at that version sees the progress. */
	board_job_progress(b, "a", 500, 1000);
	board_settle(b);
	cr_expect_eq(board_version(b), v + 1);
	cr_expect_eq(calls, 1);
	cr_expect_eq(tile("a").done, 500);
	board_settle(b);
	cr_expect_eq(board_version(b), v + 1, "nothing held back: settle leaves the version");
	board_job_progress(b, "a", 1000, 1000); /* the stage's last chunk always goes out */
	cr_expect_eq(board_version(b), v + 2);
	board_settle(b);
	cr_expect_eq(board_version(b), v + 2);
	cr_expect_eq(calls, 2);
	board_set_listener(b, NULL, NULL);
}

Test(board, tile_json_shape)
{
	board_slot(b, "a", TILE_READY, NULL,
		   "S\xff"
		   "1",
		   1000); /* a serial that is not UTF-8 */
	board_job_start(b, "a", 7, "A-1", 2, 1);
	board_job_stage(b, "a", TILE_WRITING);
	board_job_progress(b, "a", 500, 1000);
	struct tile t = tile("a");
	json_t *j = tile_json(&t);
	cr_assert_not_null(j);
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	cr_assert_not_null(s);
	/* since is the wall clock: checked for its shape, then cut out */
	char *since = strstr(s, "\"since\":\"");
	cr_assert_not_null(since);
	cr_expect_eq(strlen(since) > 32 && since[13] == '-' && since[19] == 'T' && since[29] == '"', true, "%s", since);
	memmove(since, since + 31, strlen(since + 31) + 1);
	cr_expect_str_eq(s, "{\"capacity_bytes\":1000,\"job\":{\"attempt\":1,\"id\":7,\"order\":\"A-1\",\"unit\":2},"
			    "\"progress\":{\"done_bytes\":500,\"eta_seconds\":null,\"percent\":50,"
			    "\"rate_bytes_per_s\":0.0,\"total_bytes\":1000},\"reason\":null,\"serial\":\"S\\\\xff1\","
			    "\"slot\":\"a\",\"state\":\"writing\"}");
	free(s);
}

/* board_set_listener(NULL) returns only once a call already under way has ended. */
static pthread_mutex_t slow_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slow_cond = PTHREAD_COND_INITIALIZER;
static int slow_state; /* 1: the listener runs; 2: it may end; 3: it ended */
static void slow_listener(void *ud)
{
	pthread_mutex_lock(&slow_lock);
	slow_state = 1;
	pthread_cond_broadcast(&slow_cond);
	while (slow_state != 2)
		pthread_cond_wait(&slow_cond, &slow_lock);
	slow_state = 3;
	pthread_mutex_unlock(&slow_lock);
}

static void *remover(void *p)
{
	board_set_listener(p, NULL, NULL);
	pthread_mutex_lock(&slow_lock);
	int seen = slow_state;
	pthread_mutex_unlock(&slow_lock);
	return (void *)(intptr_t)seen;
}

Test(board, removing_the_listener_waits_for_a_call_under_way)
{
	slow_state = 0;
	board_set_listener(b, slow_listener, NULL);
	pthread_t ch, rm;
	cr_assert_eq(pthread_create(&ch, NULL, changer, b), 0);
	pthread_mutex_lock(&slow_lock);
	while (slow_state != 1) /* the listener is running */
		pthread_cond_wait(&slow_cond, &slow_lock);
	pthread_mutex_unlock(&slow_lock);
	cr_assert_eq(pthread_create(&rm, NULL, remover, b), 0);
	pthread_mutex_lock(&slow_lock);
	slow_state = 2; /* let it end; the remover must not have returned before (it sees 3) */
	pthread_cond_broadcast(&slow_cond);
	pthread_mutex_unlock(&slow_lock);
	void *seen;
	pthread_join(rm, &seen);
	pthread_join(ch, NULL);
	cr_expect_eq((intptr_t)seen, 3, "board_set_listener(NULL) returned while the listener ran");
}
