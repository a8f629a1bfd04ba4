/* db/prune.c and `usbforge db prune` against the real private MariaDB: the age parser, exact
 * rows removed and kept (with and without --jobs, unpublished events and their jobs and orders
 * kept, a dry run changing nothing and counting the same), the archive (every removed row once,
 * zstd JSON Lines, an existing file or a symlink refused), the audit row, a prune while four
 * connections claim, log and finish jobs (nothing of theirs lost), whole orders only (a confirm
 * again makes no unit), the daily prune of real daemons (one per database), and the CLI's
 * errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/jobs.h"
#include "db/orders.h"
#include "db/prune.h"
#include "helpers/clirun.h"
#include "helpers/daemon.h"
#include "helpers/testdb.h"
#include "helpers/testutil.h"

#define DBNAME "uf_t_prune"
static struct db *db;
static char *dir;

static void setup(void)
{
	db = tdb_fresh(DBNAME);
	dir = tu_tmpdir("prune");
}
static void teardown(void)
{
	td_kill_all();
	db = db_close(db);
	tu_rmrf(dir);
	free(dir);
}
TestSuite(prune, .init = setup, .fini = teardown);

static void exec(const char *sql) { cr_assert_eq(db_exec(db, NULL, sql, DB_END), 0, "%s: %s", sql, db_error(db)); }

Test(prune, ages)
{
	static const struct {
		const char *s;
		int r;
		int64_t v;
	} cases[] = {
		{ "90d", 0, 90 * 86400 },
		{ "12h", 0, 12 * 3600 },
		{ "30m", 0, 1800 },
		{ "45s", 0, 45 },
		{ "2w", 0, 14 * 86400 },
		{ "3600", 0, 3600 },
		{ "9x", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "d", -EINVAL, 0 },
		{ "-1d", -EINVAL, 0 },
		{ "1.5d", -EINVAL, 0 },
		{ "90dd", -EINVAL, 0 },
		{ " 90d", -EINVAL, 0 },
		{ "0d", -ERANGE, 0 },
		{ "36601d", -ERANGE, 0 },
		{ "99999999999999999999", -ERANGE, 0 },
		/* past INT64_MAX: not wrapped round to a small or negative age */
		{ "9223372036854775808", -ERANGE, 0 },
		{ "922337203685477580805d", -ERANGE, 0 },
		{ "3162240000", 0, 3162240000 },
		{ "3162240001", -ERANGE, 0 },
		{ "99999999999999999999x", -EINVAL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t v = -7;
		cr_assert_eq(prune_age_parse(cases[i].s, &v), cases[i].r, "'%s'", cases[i].s);
		cr_assert_eq(v, cases[i].r == 0 ? cases[i].v : -7, "'%s'", cases[i].s);
	}
	cr_assert_eq(prune_age_parse(NULL, &(int64_t){ 0 }), -EINVAL);
}

/* Orders (jobs, each with 2 log rows, 1 item and a published job.done):
 *   OLD   3 jobs done 100 days ago, a published order.done
 *   MIX   one job done 100 days ago, one done yesterday
 *   UNPUB one job failed 100 days ago whose job.failed is unpublished
 *   LIVE  one queued job (no log, no item, no event) */
static void history(void)
{
	exec("INSERT INTO content_items (category, title, rel_path, size_bytes, sha256, mtime)"
	     " VALUES ('c', 't', 'c/t.mp3', 10, REPEAT('a', 64), NOW(6))");
	exec("INSERT INTO orders (id, order_number, capacity_bytes, quantity, image_path, status, created_at) VALUES"
	     " (1, 'OLD', 1000000, 3, '/x.img', 'done', NOW(6) - INTERVAL 101 DAY),"
	     " (2, 'MIX', 1000000, 2, '/x.img', 'done', NOW(6) - INTERVAL 101 DAY),"
	     " (3, 'UNPUB', 1000000, 1, '/x.img', 'failed', NOW(6) - INTERVAL 101 DAY),"
	     " (4, 'LIVE', 1000000, 1, '/x.img', 'processing', NOW(6))");
	exec("INSERT INTO processing_jobs (id, order_id, unit_index, capacity_bytes, status, stage, created_at,"
	     " started_at, completed_at, failed_at) VALUES"
	     " (1, 1, 0, 1000000, 'done', 'done', NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 100 DAY, NULL),"
	     " (2, 1, 1, 1000000, 'done', 'done', NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 100 DAY, NULL),"
	     " (3, 1, 2, 1000000, 'done', 'done', NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 100 DAY, NULL),"
	     " (4, 2, 0, 1000000, 'done', 'done', NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 100 DAY, NULL),"
	     " (5, 2, 1, 1000000, 'done', 'done', NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 2 DAY, NOW(6) - INTERVAL 1 DAY, NULL),"
	     " (6, 3, 0, 1000000, 'failed', 'writing', NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 101 DAY, NULL, NOW(6) - INTERVAL 100 DAY)");
	exec("INSERT INTO processing_jobs (id, order_id, unit_index, capacity_bytes) VALUES (7, 4, 0, 1000000)");
	exec("INSERT INTO processing_job_logs (job_id, level, stage, category, message)"
	     " SELECT j.id, 'info', 'writing', 'stage', CONCAT('job ', j.id, ' line ', s.seq) FROM processing_jobs j"
	     " JOIN seq_1_to_2 s WHERE j.id <= 6");
	exec("INSERT INTO processing_job_items (job_id, position, content_item_id, size_bytes, dest_path)"
	     " SELECT id, 0, (SELECT MIN(id) FROM content_items), 10, '/t.mp3' FROM processing_jobs WHERE id <= 6");
	exec("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, published_at)"
	     " SELECT 'job', id, CONCAT('job.', status), '{}', IF(id = 6, NULL, NOW(6)) FROM processing_jobs WHERE id <= 6");
	exec("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, published_at) VALUES"
	     " ('order', 1, 'order.done', '{}', NOW(6)), ('order', 4, 'order.confirmed', '{}', NULL)");
}

static void assert_stats(const struct prune_stats *st, int64_t logs, int64_t items, int64_t events, int64_t jobs,
			 int64_t orders)
{
	cr_assert_eq(st->logs, logs);
	cr_assert_eq(st->items, items);
	cr_assert_eq(st->events, events);
	cr_assert_eq(st->jobs, jobs);
	cr_assert_eq(st->orders, orders);
}

/* A dry run of q counts what the run itself then removes; after the dry run, check (NULL: none)
 * still gives want (the dry run changed nothing). */
static void dry_then_real(struct prune_req *q, const char *check, long long want, int64_t logs, int64_t items,
			  int64_t events, int64_t jobs, int64_t orders)
{
	struct prune_stats st;
	q->dry_run = true;
	cr_assert_eq(db_prune(db, q, &st, NULL), 0, "%s", db_error(db));
	assert_stats(&st, logs, items, events, jobs, orders);
	if (check)
		cr_assert_eq(tdb_count(db, check), want, "%s", check);
	q->dry_run = false;
	cr_assert_eq(db_prune(db, q, &st, NULL), 0, "%s", db_error(db));
	assert_stats(&st, logs, items, events, jobs, orders);
}

Test(prune, history_only_then_jobs_exactly)
{
	history();
	struct prune_stats st;
	struct prune_req q = { .older_than_s = 90 * 86400, .actor = "tester" };
	/* dry: counts, changes nothing; then the same for real */
	dry_then_real(&q, "SELECT COUNT(*) FROM processing_job_logs", 12, 10, 5, 4, 0, 0);
	/* left: job 5's rows (yesterday), job 6's unpublished event, order events; every job */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE job_id = 5"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_items"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE aggregate_type = 'job'"), 2);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM events WHERE aggregate_type = 'job' AND aggregate_id IN (5, 6)"),
		     2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE aggregate_type = 'order'"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 7);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'db.prune' AND actor = 'tester'"
				   " AND entity_type = 'database' AND JSON_VALUE(metadata, '$.logs') = 10"),
		     1);

	/* --jobs, dry then real: order OLD goes whole, its jobs 1-3 and its order.done; MIX keeps
	 * both jobs (job 5 is recent: an order goes whole or not at all), UNPUB its job (an
	 * unpublished event), LIVE everything */
	q.jobs = true;
	dry_then_real(&q, "SELECT COUNT(*) FROM processing_jobs", 7, 0, 0, 1, 3, 1);
	cr_assert_eq(tdb_count(db, "SELECT GROUP_CONCAT(id ORDER BY id) = '4,5,6,7' FROM processing_jobs"), 1);
	cr_assert_eq(tdb_count(db, "SELECT GROUP_CONCAT(order_number ORDER BY id) = 'MIX,UNPUB,LIVE' FROM orders"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 3);
	/* the counts of v_queue_stats follow (migration 5's triggers) */
	cr_assert_eq(tdb_count(db, "SELECT jobs FROM v_queue_stats WHERE status = 'done'"), 2);
	/* nothing left to prune */
	cr_assert_eq(db_prune(db, &q, &st, NULL), 0, "%s", db_error(db));
	assert_stats(&st, 0, 0, 0, 0, 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'db.prune'"), 3);
}

/* An order goes whole or stays whole: after a prune with --jobs, confirming an order again (the
 * sales system's retry) makes no unit, whether the order stayed (MIX: one unit recent) or went
 * (OLD: no such order any more). */
Test(prune, reconfirming_after_a_prune_makes_no_unit)
{
	history();
	struct prune_stats st;
	struct prune_req q = { .older_than_s = 90 * 86400, .jobs = true };
	cr_assert_eq(db_prune(db, &q, &st, NULL), 0, "%s", db_error(db));
	struct order_confirmation c;
	cr_assert_eq(order_confirm(db, "MIX", NULL, 3, "tester", &c), 0, "%s", db_error(db));
	cr_assert_eq(c.created, 0);
	cr_assert_eq(c.n_jobs, 2);
	order_confirmation_done(&c);
	cr_assert_eq(order_confirm(db, "OLD", NULL, 3, "tester", &c), -ENOENT);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 4);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued'"), 1); /* LIVE's */
}

/* An order whose jobs could all go but whose own event is unpublished stays, with its jobs; once
 * the event is published it goes. */
Test(prune, an_unpublished_order_event_keeps_the_order_and_its_jobs)
{
	exec("INSERT INTO orders (id, order_number, capacity_bytes, quantity, image_path, status, created_at) VALUES"
	     " (1, 'F', 1000000, 1, '/x.img', 'failed', NOW(6) - INTERVAL 101 DAY)");
	exec("INSERT INTO processing_jobs (id, order_id, unit_index, capacity_bytes, status, stage, created_at,"
	     " failed_at) VALUES (1, 1, 0, 1000000, 'failed', 'writing', NOW(6) - INTERVAL 101 DAY,"
	     " NOW(6) - INTERVAL 100 DAY)");
	exec("INSERT INTO processing_job_logs (job_id, level, stage, category, message)"
	     " VALUES (1, 'error', 'writing', 'stage', 'gone')");
	exec("INSERT INTO events (id, aggregate_type, aggregate_id, event_type, payload, published_at) VALUES"
	     " (1, 'job', 1, 'job.failed', '{}', NOW(6)), (2, 'order', 1, 'order.failed', '{}', NULL)");
	struct prune_stats st;
	struct prune_req q = { .older_than_s = 90 * 86400, .jobs = true };
	cr_assert_eq(db_prune(db, &q, &st, NULL), 0, "%s", db_error(db));
	assert_stats(&st, 1, 0, 1, 0, 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders"), 1);
	exec("UPDATE events SET published_at = NOW(6) WHERE id = 2");
	cr_assert_eq(db_prune(db, &q, &st, NULL), 0, "%s", db_error(db));
	assert_stats(&st, 0, 0, 1, 1, 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 0);
}

/* An order whose jobs straddle batches (120 jobs: two batches of PRUNE_BATCH_JOBS) is counted once
 * by a dry run and removed once, with every job, in the batch that holds its last job. */
Test(prune, an_order_across_batches_counted_and_removed_once)
{
	cr_assert_eq(PRUNE_BATCH_JOBS, 100);
	exec("INSERT INTO orders (id, order_number, capacity_bytes, quantity, image_path, status, created_at) VALUES"
	     " (1, 'BIG', 1000000, 120, '/x.img', 'done', NOW(6) - INTERVAL 101 DAY),"
	     " (2, 'NEW', 1000000, 1, '/x.img', 'done', NOW(6) - INTERVAL 2 DAY)");
	exec("INSERT INTO processing_jobs (id, order_id, unit_index, capacity_bytes, status, stage, created_at,"
	     " started_at, completed_at) SELECT seq, 1, seq - 1, 1000000, 'done', 'done', NOW(6) - INTERVAL 101 DAY,"
	     " NOW(6) - INTERVAL 101 DAY, NOW(6) - INTERVAL 100 DAY FROM seq_1_to_120");
	exec("INSERT INTO processing_jobs (id, order_id, unit_index, capacity_bytes, status, stage, created_at,"
	     " started_at, completed_at) VALUES (121, 2, 0, 1000000, 'done', 'done', NOW(6) - INTERVAL 2 DAY,"
	     " NOW(6) - INTERVAL 2 DAY, NOW(6) - INTERVAL 1 DAY)");
	exec("INSERT INTO processing_job_logs (job_id, level, stage, category, message)"
	     " SELECT id, 'info', 'writing', 'stage', 'x' FROM processing_jobs");
	struct prune_req q = { .older_than_s = 90 * 86400, .jobs = true };
	dry_then_real(&q, NULL, 0, 120, 0, 0, 120, 1);
	cr_assert_eq(tdb_count(db, "SELECT GROUP_CONCAT(id) = '121' FROM processing_jobs"), 1);
	cr_assert_eq(tdb_count(db, "SELECT GROUP_CONCAT(order_number) = 'NEW' FROM orders"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), 1);
	cr_assert_eq(tdb_count(db, "SELECT jobs FROM v_queue_stats WHERE status = 'done'"), 1);
}

static char *archive_text(const char *path)
{
	char *cmd = NULL, *out = tu_path(dir, "archive.txt");
	cr_assert(asprintf(&cmd, "zstd -q -dc '%s' > '%s'", path, out) > 0);
	cr_assert_eq(system(cmd), 0);
	free(cmd);
	char *t = tu_slurp(out);
	free(out);
	return t;
}

static int lines_with(const char *text, const char *needle)
{
	int n = 0;
	for (const char *p = text; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

Test(prune, archive_holds_every_removed_row_once)
{
	history();
	char *path = tu_path(dir, "old.jsonl.zst");
	struct prune_stats st;
	struct prune_req q = { .older_than_s = 90 * 86400, .jobs = true, .archive = path };
	cr_assert_eq(db_prune(db, &q, &st, NULL), 0, "%s", db_error(db));
	assert_stats(&st, 10, 5, 5, 3, 1);
	char *t = archive_text(path);
	cr_assert_eq(lines_with(t, "\n"), 10 + 5 + 5 + 3 + 1);
	cr_assert_eq(lines_with(t, "{\"table\":\"processing_job_logs\",\"row\":{"), 10);
	cr_assert_eq(lines_with(t, "{\"table\":\"processing_job_items\""), 5);
	cr_assert_eq(lines_with(t, "{\"table\":\"events\""), 5);
	cr_assert_eq(lines_with(t, "{\"table\":\"processing_jobs\""), 3);
	cr_assert_eq(lines_with(t, "{\"table\":\"orders\""), 1);
	cr_assert(strstr(t, "\"message\":\"job 1 line 1\""), "%s", t);
	cr_assert(strstr(t, "\"order_number\":\"OLD\""));
	cr_assert_null(strstr(t, "job 5 line"));
	free(t);
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 07777, 0600, "the archive holds customers' orders: %o", sb.st_mode & 07777);

	/* the file exists now: refused before anything is removed; a symlink too */
	char *err = NULL;
	cr_assert_eq(db_prune(db, &q, &st, &err), -EEXIST);
	cr_assert(strstr(err, path) && strstr(err, "File exists"), "%s", err);
	free(err);
	err = NULL;
	char *link = tu_path(dir, "link.jsonl.zst");
	cr_assert_eq(symlink("/nonexistent/target", link), 0);
	q.archive = link;
	cr_assert_eq(db_prune(db, &q, &st, &err), -EEXIST);
	cr_assert_eq(access("/nonexistent/target", F_OK), -1);
	free(err);
	free(link);
	free(path);
}

/* Live jobs go on while a prune runs: four connections claim, log and finish jobs of a queue;
 * the prune removes exactly the old history and nothing of theirs. */
struct drainer {
	int done;
	int rc;
};

static void *drain(void *p)
{
	struct drainer *d = p;
	struct db *conn = tdb_connect(DBNAME);
	char worker[32];
	snprintf(worker, sizeof(worker), "w%p", p);
	for (;;) {
		struct claim_req q = { .worker_id = worker,
				       .station = "test-station",
				       .slot = "A",
				       .device_serial = "S",
				       .device_bytes = 1 << 30 };
		struct claimed_job *j = NULL;
		int r = job_claim(conn, &q, &j);
		if (r == -ENOENT || (r == 0 && !j))
			break;
		if (r < 0) {
			d->rc = r;
			break;
		}
		for (int i = 0; i < 3 && r >= 0; i++)
			r = job_log(conn, j->id, j->attempt, "info", "writing", "stage", "live line", NULL, NULL);
		if (r >= 0)
			r = job_finish_done(conn, &JOB_LEASE(j, worker), 1, NULL, NULL);
		claimed_job_free(j);
		if (r < 0) {
			d->rc = r;
			break;
		}
		d->done++;
	}
	db_close(conn);
	return NULL;
}

Test(prune, while_a_queue_drains_nothing_live_is_lost)
{
	/* 300 old finished jobs of 10 log rows each, then a queue of 200 */
	exec("INSERT INTO orders (id, order_number, capacity_bytes, quantity, image_path, status, created_at)"
	     " SELECT seq, CONCAT('H', seq), 1000000, 1, '/x.img', 'done', NOW(6) - INTERVAL 200 DAY FROM seq_1_to_300");
	exec("INSERT INTO processing_jobs (id, order_id, unit_index, capacity_bytes, status, stage, created_at, started_at,"
	     " completed_at) SELECT seq, seq, 0, 1000000, 'done', 'done', NOW(6) - INTERVAL 200 DAY,"
	     " NOW(6) - INTERVAL 200 DAY, NOW(6) - INTERVAL 199 DAY FROM seq_1_to_300");
	exec("INSERT INTO processing_job_logs (job_id, level, stage, category, message)"
	     " SELECT j.id, 'info', 'writing', 'stage', 'old' FROM processing_jobs j JOIN seq_1_to_10");
	exec("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, published_at)"
	     " SELECT 'job', id, 'job.done', '{}', NOW(6) FROM processing_jobs");
	tdb_order_confirmed(db, "Q", 200);

	enum { N = 4 };
	pthread_t t[N];
	struct drainer d[N] = { 0 };
	for (int i = 0; i < N; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, drain, &d[i]), 0);
	struct prune_stats st;
	struct prune_req q = { .older_than_s = 90 * 86400, .jobs = true };
	int r = db_prune(db, &q, &st, NULL);
	for (int i = 0; i < N; i++)
		cr_assert_eq(pthread_join(t[i], NULL), 0);
	cr_assert_eq(r, 0, "%s", db_error(db));
	assert_stats(&st, 3000, 0, 300, 300, 300);
	int done = 0;
	for (int i = 0; i < N; i++) {
		cr_assert_eq(d[i].rc, 0, "drainer %d: %d", i, d[i].rc);
		done += d[i].done;
	}
	cr_assert_eq(done, 200);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done'"), 200);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 200);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'live line'"), 600);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'old'"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), 200);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders"), 1);
	cr_assert_eq(tdb_count(db, "SELECT jobs FROM v_queue_stats WHERE status = 'done'"), 200);
}

/* The daily prune's lease: one holder a day per database. */
Test(prune, daily_lease_one_holder_a_day)
{
	bool held = false;
	cr_assert_eq(prune_lease_take(db, "d1", 86400, &held), 0, "%s", db_error(db));
	cr_assert(held);
	cr_assert_eq(prune_lease_take(db, "d2", 86400, &held), 0);
	cr_assert_not(held);
	cr_assert_eq(prune_lease_take(db, "d1", 86400, &held), 0);
	cr_assert_not(held, "taken for a day, not renewed on every check");
	cr_assert_eq(prune_lease_release(db, "d2"), 0);
	cr_assert_eq(prune_lease_take(db, "d2", 86400, &held), 0);
	cr_assert_not(held);
	/* a day later (or after a failed prune gave it back) whoever asks first */
	exec("UPDATE outbox_lease SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE name = 'prune'");
	cr_assert_eq(prune_lease_take(db, "d2", 86400, &held), 0);
	cr_assert(held);
	cr_assert_eq(prune_lease_release(db, "d2"), 0);
	cr_assert_eq(prune_lease_take(db, "d1", 86400, &held), 0);
	cr_assert(held);
	/* the relay's lease is another row */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM outbox_lease WHERE name = 'relay' AND holder IS NULL"), 1);
}

/* A prune cancelled (the daemon stopping) ends after its batch with -ECANCELED. */
Test(prune, cancel_ends_between_batches)
{
	history();
	atomic_bool stop = true;
	struct prune_stats st;
	struct prune_req q = { .older_than_s = 90 * 86400, .cancel = &stop };
	cr_assert_eq(db_prune(db, &q, &st, NULL), -ECANCELED);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), 12);
	assert_stats(&st, 0, 0, 0, 0, 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'db.prune'"), 0,
		     "nothing removed: no audit row");
}

/* retention.daily: a daemon started with it prunes at once (the lease is free), as its worker id,
 * and takes the lease for a day; a second daemon of the same database finds it taken. */
Test(prune, the_daemon_prunes_daily_once_per_database)
{
	history();
	char *slot = tu_path(dir, "a.slot"), *extra = NULL, *logp[2], *conf[2];
	FILE *f = fopen(slot, "w");
	cr_assert(f);
	cr_assert_eq(ftruncate(fileno(f), 1 << 20), 0);
	fclose(f);
	pid_t pid[2];
	for (int i = 0; i < 2; i++) {
		char name[32];
		cr_assert(asprintf(&extra,
				   "worker = { poll_interval = 0.2; heartbeat_interval = 0.5; };\n"
				   "usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"%s\"; } ); };\n"
				   "content = { images = \"%s\"; };\n"
				   "retention = { older_than = \"90d\"; jobs = true; daily = true; };\n",
				   slot, dir) > 0);
		snprintf(name, sizeof(name), "d%d.conf", i);
		conf[i] = tdb_write_config_as(dir, name, DBNAME, NULL, NULL, extra);
		free(extra);
		snprintf(name, sizeof(name), "d%d.log", i);
		logp[i] = tu_path(dir, name);
	}
	pid[0] = td_spawn(conf[0], logp[0]);
	td_wait_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'db.prune'", 1, 60);
	td_wait_log(logp[0], "retention: pruned jobs that ended before ", 30);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'db.prune' AND actor = ("
				   "SELECT holder FROM outbox_lease WHERE name = 'prune' AND expires_at > NOW(6)"
				   " + INTERVAL 23 HOUR)"),
		     1, "the daemon pruned as the lease's holder, which it keeps for a day");
	cr_assert_eq(tdb_count(db, "SELECT GROUP_CONCAT(id ORDER BY id) = '4,5,6,7' FROM processing_jobs"), 1);
	/* a second daemon: the lease is taken, it prunes nothing (its thread has checked once it
	 * logs; the audit log still has the one row) */
	pid[1] = td_spawn(conf[1], logp[1]);
	td_wait_log(logp[1], "retention: the daily prune is another daemon's today, or done", 30);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'db.prune'"), 1);
	for (int i = 0; i < 2; i++) {
		td_stop(pid[i], 30);
		free(conf[i]);
		free(logp[i]);
	}
	free(slot);
}

#define RUN(...) tu_run_cli(dir, (const char *const[]){ __VA_ARGS__, NULL })

Test(prune, cli_names_bad_arguments_and_prints_counts)
{
	char *cfg = tdb_write_config(dir, DBNAME, NULL);
	struct tu_run r = RUN("--config", cfg, "db", "prune", "--older-than", "9x");
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.err,
			 "usbforge: --older-than: '9x' is not a duration (e.g. 90d, 12h, 30m, 2w)\n"
			 "usage: usbforge db prune --older-than AGE [--dry-run] [--jobs] [--archive FILE.jsonl.zst]\n");
	tu_run_done(&r);
	r = RUN("--config", cfg, "db", "prune", "--older-than", "0d");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--older-than: '0d' is out of range (1 second to 100 years)"), "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "db", "prune", "--dry-run");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "usbforge: --older-than is required\n"), "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "db", "prune", "--older-than", "90d", "extra");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "unexpected argument 'extra'"), "%s", r.err);
	tu_run_done(&r);

	history();
	r = RUN("--config", cfg, "db", "prune", "--older-than", "90d", "--dry-run", "--jobs");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strncmp(r.out, "would prune jobs that ended before ", 35) == 0, "%s", r.out);
	cr_assert(strstr(r.out, ": 10 log rows, 5 items, 5 events, 3 jobs, 1 orders\n"), "%s", r.out);
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 7);
	char *arch = tu_path(dir, "a.jsonl.zst");
	r = RUN("--config", cfg, "--json", "db", "prune", "--older-than", "90d", "--archive", arch);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\"logs\": 10") || strstr(r.out, "\"logs\":10"), "%s", r.out);
	tu_run_done(&r);
	r = RUN("--config", cfg, "db", "prune", "--older-than", "90d", "--archive", arch);
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "prune failed: --archive: '") && strstr(r.err, "': File exists"), "%s", r.err);
	tu_run_done(&r);
	free(arch);
	free(cfg);
}
