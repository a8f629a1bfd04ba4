/* The worker end to end against the real MariaDB, on file targets: the job lifecycle of
 * DESIGN.md with exact counts — units on slots, concurrent claimers, retries after ENOSPC, a
 * daemon killed mid-write and recovered, the finish-versus-reaper race, cancellation, and
 * SIGTERM hand-back. usbforged runs as a real process. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db/content.h"
#include "db/jobs.h"
#include "db/orders.h"
#include "db/schema.h"
#include "helpers/testdb.h"
#include "helpers/clirun.h"
#include "helpers/testutil.h"
#include "test_usb_loop.h"
#include "util/macro.h"

#define DBNAME "uf_t_worker"
extern char **environ;

static struct db *db;
static char *dir;
/* daemons started and not yet waited for: a failed assertion leaves none behind (frozen ones
 * included) */
static pid_t spawned[8];

static void track(pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(spawned); i++)
		if (!spawned[i]) {
			spawned[i] = pid;
			return;
		}
}

static void untrack(pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(spawned); i++)
		if (spawned[i] == pid)
			spawned[i] = 0;
}

/* a file a test made immutable (chattr +i): made mutable again by teardown, whatever happened */
static char *immutable;
static struct tul_loop loopdev = { .fd = -1 };
/* a directory a test made on /dev/shm: removed by teardown, whatever happened */
static char shm[sizeof("/dev/shm/uf-cost-XXXXXX")];

static void setup(void)
{
	db = tdb_fresh(DBNAME);
	dir = tu_tmpdir("worker");
}
static void teardown(void)
{
	if (immutable) {
		(void)tu_set_immutable(immutable, false);
		free(immutable);
		immutable = NULL;
	}
	if (loopdev.path)
		tul_detach(&loopdev);
	if (shm[0]) {
		tu_rmrf(shm);
		shm[0] = '\0';
	}
	for (size_t i = 0; i < ARRAY_SIZE(spawned); i++)
		if (spawned[i]) {
			kill(spawned[i], SIGCONT);
			kill(spawned[i], SIGKILL);
			waitpid(spawned[i], NULL, 0);
			spawned[i] = 0;
		}
	db = db_close(db);
	tu_rmrf(dir);
	free(dir);
}
TestSuite(worker, .init = setup, .fini = teardown, .timeout = 240);

static double mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Wait (bounded) until sql returns want; polls every 20 ms. */
static long long wait_for(const char *sql, long long want, double timeout)
{
	double end = mono() + timeout;
	long long v = -1;
	while (mono() < end) {
		v = tdb_count(db, sql);
		if (v == want)
			return v;
		(void)poll(NULL, 0, 20);
	}
	return v;
}

/* The attempts of the job.started events in id order, as the digits of a number ("12": attempt 1,
 * then attempt 2); 0 when there is none. */
static long long started_attempts(void)
{
	return tdb_count(db,
			 "SELECT COALESCE(GROUP_CONCAT(JSON_VALUE(payload, '$.attempt') ORDER BY id SEPARATOR ''), 0)"
			 " FROM events WHERE event_type = 'job.started'");
}

/* The test's clock, instead of waiting in real time: the daemon and the reaper decide with the
 * server's NOW(6) against a job's own timestamps (heartbeat_at for the stuck check,
 * next_attempt_at for a retry's delay). Moving the whole timeline of the jobs matching where back
 * by seconds (every timestamp, so the schema's order checks still hold) is the server's clock
 * running that much ahead for those jobs and nothing else. Only for jobs no running daemon
 * writes meanwhile (a killed, frozen or waiting one). */
static void age_jobs(double seconds, const char *where)
{
	static const char *const cols[] = { "created_at",	   "next_attempt_at", "heartbeat_at",
					    "started_at",	   "completed_at",    "failed_at",
					    "cancel_requested_at", "cancelled_at",    "stuck_reported_at" };
	char *set = NULL, *q = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&set, &len);
	cr_assert(f);
	for (size_t i = 0; i < ARRAY_SIZE(cols); i++)
		fprintf(f, "%s%s = %s - INTERVAL %lld MICROSECOND", i ? ", " : "", cols[i], cols[i],
			(long long)(seconds * 1e6));
	cr_assert_eq(fclose(f), 0);
	cr_assert(asprintf(&q, "UPDATE processing_jobs SET %s WHERE %s", set, where) > 0);
	cr_assert_eq(db_exec(db, NULL, q, DB_END), 0, "%s: %s", q, db_error(db));
	free(q);
	free(set);
}

static char *make_image(const char *name, size_t mib, uint64_t seed)
{
	char *p = tu_path(dir, name);
	size_t len = mib << 20;
	char *buf = malloc(len);
	cr_assert(buf);
	tu_fill_pattern(buf, len, seed);
	tu_write_file(p, buf, len);
	free(buf);
	return p;
}

static char *make_stick(const char *name, uint64_t bytes)
{
	char *p = tu_path(dir, name);
	int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, (off_t)bytes), 0);
	close(fd);
	return p;
}

/* A config text with static slots at the given paths (NULL-terminated). */
static char *config_text(const char *const *slots, const char *extra)
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);
	fprintf(f, "worker = { poll_interval = 0.2; max_concurrent = 4; heartbeat_interval = 0.2; };\n");
	if (!extra || !strstr(extra, "stuck ="))
		fprintf(f, "stuck = { processing_timeout = 60; queued_timeout = 3600; check_interval = 60; };\n");
	fprintf(f, "usb = { mode = \"static\"; slots = (");
	for (int i = 0; slots[i]; i++)
		fprintf(f, "%s{ name = \"S%d\"; path = \"%s\"; }", i ? ", " : "", i, slots[i]);
	fprintf(f, "); };\n%s\n", extra ? extra : "");
	if (!extra || !strstr(extra, "content ="))
		fprintf(f, "content = { images = \"%s\"; };\n", dir); /* the test's images are made there */
	fclose(f);
	return s;
}

static char *config(const char *const *slots, const char *extra)
{
	char *s = config_text(slots, extra);
	char *p = tdb_write_config(dir, DBNAME, s);
	free(s);
	return p;
}

/* The same, as file dir/name, connecting as user (the daemon's account when NULL). */
static char *config_as(const char *name, const char *user, const char *password, const char *const *slots,
		       const char *extra)
{
	char *s = config_text(slots, extra);
	char *p = tdb_write_config_as(dir, name, DBNAME, user, password, s);
	free(s);
	return p;
}

/* usbforged with its stderr in errp. */
static pid_t spawn_daemon_logged(const char *cfg, bool once, const char *errp)
{
	char *bin = tu_path(tu_binary_dir(), "worker/usbforged");
	/* --verbose: the debug lines are states a test may wait on */
	char *argv[] = {
		bin, (char *)"--verbose", (char *)"--config", (char *)cfg, once ? (char *)"--once" : NULL, NULL
	};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	pid_t pid;
	cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	free(bin);
	track(pid);
	return pid;
}

static pid_t spawn_daemon(const char *cfg, bool once)
{
	char *bin = tu_path(tu_binary_dir(), "worker/usbforged");
	char *argv[] = { bin, (char *)"--config", (char *)cfg, once ? (char *)"--once" : NULL, NULL };
	pid_t pid;
	cr_assert_eq(posix_spawn(&pid, bin, NULL, NULL, argv, environ), 0);
	free(bin);
	track(pid);
	return pid;
}

static int wait_exit(pid_t pid, double timeout)
{
	double end = mono() + timeout;
	int st;
	while (mono() < end) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			untrack(pid);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		(void)poll(NULL, 0, 20);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	untrack(pid);
	cr_assert_fail("usbforged did not exit within %.0f s", timeout);
	return -1;
}

static int64_t add_confirm(const char *number, int qty, const char *image, uint64_t capacity)
{
	struct order_new o = { .number = number, .capacity_bytes = capacity, .quantity = qty, .image_path = image };
	struct stat st;
	cr_assert_eq(stat(image, &st), 0);
	o.image_bytes = (uint64_t)st.st_size;
	int64_t id;
	cr_assert_eq(order_add(db, &o, &id), 0, "%s", db_error(db));
	struct order_confirmation r = { 0 };
	cr_assert_eq(order_confirm(db, number, NULL, 4, "test", &r), 0, "%s", db_error(db));
	order_confirmation_done(&r);
	return id;
}

static void assert_same_bytes(const char *a, const char *b, size_t len)
{
	FILE *fa = fopen(a, "re"), *fb = fopen(b, "re");
	cr_assert(fa && fb);
	char *x = malloc(1 << 20), *y = malloc(1 << 20);
	for (size_t off = 0; off < len; off += 1 << 20) {
		size_t n = len - off < (1 << 20) ? len - off : (1 << 20);
		cr_assert_eq(fread(x, 1, n, fa), n);
		cr_assert_eq(fread(y, 1, n, fb), n);
		cr_assert(memcmp(x, y, n) == 0, "%s and %s differ in MiB %zu", a, b, off >> 20);
	}
	free(x);
	free(y);
	fclose(fa);
	fclose(fb);
}

Test(worker, three_units_on_two_slots)
{
	char *img = make_image("img.raw", 8, 1);
	char *s0 = make_stick("s0.img", 64 << 20), *s1 = make_stick("s1.img", 64 << 20);
	const char *slots[] = { s0, s1, NULL };
	char *cfg = config(slots, NULL);
	add_confirm("W-1", 3, img, 64 << 20);
	pid_t pid = spawn_daemon(cfg, true);
	cr_assert_eq(wait_exit(pid, 120), 0);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND progress = 100 AND attempts = 1"),
		3);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), 3);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'order.done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 7);
	cr_assert_eq(started_attempts(), 111, "job.started of each attempt that reached writing");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders WHERE status = 'done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(DISTINCT slot) FROM processing_jobs"), 2);
	/* one start and one end row per stage per job */
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM processing_job_logs WHERE category = 'stage' AND message LIKE '% started'"),
		12);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM processing_job_logs WHERE category = 'stage' AND message LIKE '% done' AND stage <> 'done'"),
		12);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'error'"), 0);
	/* at most one progress row per 10% of a stage */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM (SELECT job_id, stage, COUNT(*) c FROM processing_job_logs"
				   " WHERE category = 'progress' GROUP BY job_id, stage HAVING c > 9) x"),
		     0);
	assert_same_bytes(img, s0, 8 << 20);
	assert_same_bytes(img, s1, 8 << 20);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM workers WHERE stopped_at IS NOT NULL"), 1);
	/* the devices table mirrors the slots: both present, free again, sizes known */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM devices WHERE station = 'test-station' AND state = 'ready'"
				   " AND capacity_bytes = 67108864 AND current_job_id IS NULL"),
		     2);
	free(img);
	free(s0);
	free(s1);
	free(cfg);
}

struct claimer {
	pthread_barrier_t *b;
	int claimed;
	int64_t *seen;
	int rc;
	int idx;
};

static void *claimer_main(void *p)
{
	struct claimer *c = p;
	struct db *cdb = tdb_connect(DBNAME);
	char wid[32], slot[16];
	snprintf(wid, sizeof(wid), "claimer-%d", c->idx);
	snprintf(slot, sizeof(slot), "C%d", c->idx);
	struct claim_req q = { .worker_id = wid,
			       .station = "test-station",
			       .slot = slot,
			       .device_bytes = 1ULL << 40,
			       .capacity_tolerance = 0.1 };
	pthread_barrier_wait(c->b);
	for (;;) {
		struct claimed_job *j = NULL;
		int r = job_claim(cdb, &q, &j);
		if (r == -ENOENT)
			break;
		if (r < 0) {
			c->rc = r;
			break;
		}
		c->seen[c->claimed++] = j->id;
		r = job_finish_done(cdb, &JOB_LEASE(j, wid), 0, NULL, NULL);
		claimed_job_free(j);
		if (r < 0) {
			c->rc = r;
			break;
		}
	}
	db_close(cdb);
	return NULL;
}

Test(worker, eight_claimers_take_each_of_1000_jobs_once)
{
	enum { N = 8, JOBS = 1000 };
	struct order_new o = {
		.number = "BULK", .capacity_bytes = 1 << 30, .quantity = JOBS, .image_path = "/dev/null"
	};
	int64_t id;
	cr_assert_eq(order_add(db, &o, &id), 0);
	struct order_confirmation r = { 0 };
	cr_assert_eq(order_confirm(db, "BULK", NULL, 4, "t", &r), 0, "%s", db_error(db));
	order_confirmation_done(&r);
	pthread_barrier_t b;
	pthread_barrier_init(&b, NULL, N);
	pthread_t t[N];
	struct claimer c[N];
	for (int i = 0; i < N; i++) {
		c[i] = (struct claimer){ .b = &b, .seen = calloc(JOBS, sizeof(int64_t)), .idx = i };
		pthread_create(&t[i], NULL, claimer_main, &c[i]);
	}
	int total = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(c[i].rc, 0, "claimer %d: %d", i, c[i].rc);
		total += c[i].claimed;
	}
	cr_assert_eq(total, JOBS, "every job claimed exactly once in total");
	/* no id claimed by two claimers */
	char *hit = calloc(JOBS * 2 + 10, 1);
	int64_t base = tdb_count(db, "SELECT MIN(id) FROM processing_jobs");
	for (int i = 0; i < N; i++)
		for (int k = 0; k < c[i].claimed; k++) {
			int64_t off = c[i].seen[k] - base;
			cr_assert(off >= 0 && off < JOBS);
			cr_assert_eq(hit[off], 0, "job %lld claimed twice", (long long)c[i].seen[k]);
			hit[off] = 1;
		}
	free(hit);
	for (int i = 0; i < N; i++)
		free(c[i].seen);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND attempts = 1"),
		     JOBS);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), JOBS);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'order.done'"), 1);
	pthread_barrier_destroy(&b);
}

/* A stick that fills up fails each attempt with WRITE_IO; with the production retry delays
 * (5, 15, 60 s: no retry key in the configuration) each retry is due exactly its delay after the
 * failure, is not taken before that, and the test's clock (age_jobs) makes it due instead of the
 * test waiting 80 s; the fourth failure fails the job and the order once. */
Test(worker, enospc_retries_at_the_delays_then_fails_once)
{
	char *mnt = tu_path(dir, "tmpfs");
	cr_assert_eq(mkdir(mnt, 0755), 0);
	cr_assert_eq(mount("uf-test", mnt, "tmpfs", 0, "size=4m"), 0, "mount tmpfs: %s", strerror(errno));
	char *stick = tu_path(mnt, "stick.img");
	int fd = open(stick, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, 64 << 20), 0); /* says 64 MiB, holds 4 */
	close(fd);
	char *img = make_image("img.raw", 16, 2);
	const char *slots[] = { stick, NULL };
	char *cfg = config(slots, "write = { probe = false; };");
	add_confirm("E-1", 1, img, 64 << 20);
	pid_t pid = spawn_daemon(cfg, true);
	const double delays[] = { 5, 15, 60 };
	char q[512];
	for (int a = 1; a <= 3; a++) {
		snprintf(q, sizeof(q), "SELECT COUNT(*) FROM processing_jobs WHERE status = 'retry' AND attempts = %d",
			 a);
		cr_assert_eq(wait_for(q, 1, 60), 1, "attempt %d did not end in a retry", a);
		/* due delays[a-1] after the failure: its error row, which the runner writes in the
		 * transaction of the transition (a statement or two apart) */
		snprintf(q, sizeof(q),
			 "SELECT TIMESTAMPDIFF(MICROSECOND, e.created_at, j.next_attempt_at) FROM processing_jobs j"
			 " JOIN processing_job_logs e ON e.job_id = j.id AND e.attempt = %d AND e.level = 'error'",
			 a);
		long long us = tdb_count(db, q), want = (long long)(delays[a - 1] * 1e6);
		cr_assert(us > want - 1000000 && us < want + 1000000,
			  "attempt %d: retry due %lld us after the failure, not %lld", a, us, want);
		snprintf(q, sizeof(q), "SET @aged%d = NOW(6)", a);
		cr_assert_eq(db_exec(db, NULL, q, DB_END), 0);
		age_jobs(delays[a - 1], "status = 'retry'");
	}
	int rc = wait_exit(pid, 120);
	umount2(mnt, MNT_DETACH);
	cr_assert_eq(rc, 0, "failed jobs are results, not daemon failures");
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_jobs WHERE status = 'failed' AND error_code = 'WRITE_IO'"
			       " AND attempts = 4 AND failed_at IS NOT NULL"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.failed'"), 1);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM events WHERE event_type = 'order.failed'"
			  " AND JSON_TYPE(JSON_EXTRACT(payload, '$.refund_due')) = 'BOOLEAN' AND JSON_VALUE(payload, '$.refund_due') = 1"),
		1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 6);
	cr_assert_eq(started_attempts(), 1234, "job.started of each attempt that reached writing");
	/* one error row per attempt, attempts 1..4 */
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(DISTINCT attempt) FROM processing_job_logs WHERE level = 'error' AND error_code = 'WRITE_IO'"),
		4);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'error'"), 4);
	/* attempt n+1 started only once the retry was due: after the test's clock made it so */
	for (int a = 2; a <= 4; a++) {
		snprintf(q, sizeof(q),
			 "SELECT COUNT(*) FROM processing_job_logs WHERE category = 'system' AND message LIKE 'attempt %%'"
			 " AND attempt = %d AND created_at >= @aged%d",
			 a, a - 1);
		cr_assert_eq(tdb_count(db, q), 1, "attempt %d came before its delay", a);
	}
	free(mnt);
	free(stick);
	free(img);
	free(cfg);
}

/* usbforged killed mid-write (after a few periodic syncs: write.sync_interval = 32 MiB) →
 * the stuck check returns the job → the next attempt on the same stick re-checks the chunks
 * the first one made durable and continues after them (resume), → done, exactly one job.done. */
Test(worker, killed_mid_write_is_recovered_once_and_resumes)
{
	char *img = make_image("big.raw", 256, 3);
	char *s0 = make_stick("s0.img", 1ULL << 30);
	const char *slots[] = { s0, NULL };
	/* throttled so "mid-write" lasts a few seconds; processing_timeout well above the 1 s
	 * heartbeat so the second daemon never reaps its own job */
	char *cfg = config(slots, "write = { max_rate = \"48MiB\"; probe = false; sync_interval = \"32MiB\"; };\n"
				  "stuck = { processing_timeout = 3; queued_timeout = 3600; check_interval = 0.5; };");
	add_confirm("K-1", 1, img, 1ULL << 30);
	pid_t pid = spawn_daemon(cfg, false);
	/* at least two checkpoints stored (64 MiB of 256 durable), the write still going */
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_jobs WHERE stage = 'writing' AND resume_state IS NOT NULL"
			      " AND JSON_VALUE(resume_state, '$.hwm') >= 67108864",
			      1, 60),
		     1);
	kill(pid, SIGKILL);
	int st;
	waitpid(pid, &st, 0);
	untrack(pid);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'processing'"), 1);
	long long hwm = tdb_count(db, "SELECT JSON_VALUE(resume_state, '$.hwm') FROM processing_jobs");
	cr_assert(hwm >= 64 << 20 && hwm < 256 << 20, "durable high-water mark %lld", hwm);
	/* the stuck check (as `usbforge stuck check` runs it), 10 s later by the test's clock (a
	 * statement of the killed daemon's still in flight could beat again: then real time does) */
	age_jobs(10, "status = 'processing'");
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_jobs WHERE heartbeat_at < NOW(6) - INTERVAL 3 SECOND", 1,
			      15),
		     1);
	struct reap_stats rs;
	double delays[] = { 0.1, 0.1, 0.1 };
	cr_assert_eq(queue_reap(db, 3.0, 3600, delays, 3, NULL, 0, &rs), 0);
	cr_assert_eq(rs.retried, 1);
	cr_assert_eq(rs.failed, 0);
	reap_stats_done(&rs);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM processing_jobs WHERE status = 'retry' AND error_code = 'STUCK_TIMEOUT'"),
		1);
	/* the second attempt need not be slow: no max_rate */
	char *cfg2 = config_as("resume.conf", NULL, NULL, slots,
			       "write = { probe = false; sync_interval = \"32MiB\"; };\n"
			       "stuck = { processing_timeout = 3; queued_timeout = 3600; check_interval = 0.5; };");
	pid = spawn_daemon(cfg2, true);
	cr_assert_eq(wait_exit(pid, 180), 0);
	free(cfg2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND attempts = 2"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 4);
	cr_assert_eq(started_attempts(), 12, "job.started of each attempt that reached writing");
	/* attempt 2 resumed where attempt 1's last sync left the stick, and reused what it had */
	char *q = NULL;
	cr_assert(asprintf(&q,
			   "SELECT COUNT(*) FROM processing_job_logs WHERE attempt = 2 AND stage = 'writing'"
			   " AND message LIKE 'resumed at offset %%' AND JSON_VALUE(details, '$.resume_from') = %lld"
			   " AND JSON_VALUE(details, '$.bytes_reused') = %lld",
			   hwm, hwm - (1 << 20)) > 0);
	cr_assert_eq(tdb_count(db, q), 1, "%s", q);
	free(q);
	assert_same_bytes(img, s0, 256 << 20);
	free(img);
	free(s0);
	free(cfg);
}

/* A resume state belongs to its stick: the same job claimed on another stick is written from
 * the start, and says so. */
Test(worker, resume_state_of_another_stick_is_not_used)
{
	tdb_order_confirmed(db, "RS", 1);
	struct claim_req q = { .worker_id = "w1",
			       .station = "test-station",
			       .slot = "A",
			       .device_serial = "SER-A",
			       .device_bytes = 1 << 30 };
	struct claimed_job *j = NULL;
	cr_assert_eq(job_claim(db, &q, &j), 0);
	cr_assert_eq(job_resume_store(db, &JOB_LEASE(j, "w1"), "{\"v\":1}"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE resume_device = 'SER-A'"), 1);
	cr_assert_eq(job_finish_fail(db, &JOB_LEASE(j, "w1"), UFC_WRITE_IO, "x", NULL, (double[]){ 0 }, 1, NULL), 0);
	claimed_job_free(j);
	cr_assert_eq(db_exec(db, NULL, "UPDATE processing_jobs SET next_attempt_at = NOW(6) - INTERVAL 1 SECOND",
			     DB_END),
		     0);
	/* another stick */
	struct claim_req q2 = q;
	q2.device_serial = "SER-B";
	cr_assert_eq(job_claim(db, &q2, &j), 0);
	cr_assert(j->resume_other_stick);
	cr_assert_null(j->resume_state);
	cr_assert_eq(job_finish_fail(db, &JOB_LEASE(j, "w1"), UFC_WRITE_IO, "x", NULL, (double[]){ 0 }, 1, NULL), 0);
	claimed_job_free(j);
	cr_assert_eq(db_exec(db, NULL, "UPDATE processing_jobs SET next_attempt_at = NOW(6) - INTERVAL 1 SECOND",
			     DB_END),
		     0);
	/* back on the first one: its state is there again */
	cr_assert_eq(job_claim(db, &q, &j), 0);
	cr_assert_not(j->resume_other_stick);
	cr_assert_str_eq(j->resume_state, "{\"v\":1}");
	claimed_job_free(j);
}

struct reaper_arg {
	int rc;
	struct reap_stats st;
};

/* One reaper round on a connection of its own (as another kiosk's daemon would run it). */
static void run_reaper(struct reaper_arg *a)
{
	struct db *rdb = tdb_connect(DBNAME);
	double delays[] = { 5, 15, 60 };
	a->rc = queue_reap(rdb, 1.0, 3600, delays, 3, NULL, 0, &a->st);
	db_close(rdb);
}

/* Make the claimed jobs look abandoned by their worker: started half an hour ago, the last
 * heartbeat 10 s ago (older than the 1 s stuck timeout the tests reap with); extra: more
 * "column = value" assignments, or "". */
static void make_stale(const char *extra)
{
	char *q = NULL;
	cr_assert(asprintf(&q,
			   "UPDATE processing_jobs SET created_at = NOW(6) - INTERVAL 1 HOUR,"
			   " started_at = NOW(6) - INTERVAL 30 MINUTE, heartbeat_at = NOW(6) - INTERVAL 10 SECOND%s%s"
			   " WHERE status = 'processing'",
			   *extra ? ", " : "", extra) > 0);
	cr_assert_eq(db_exec(db, NULL, q, DB_END), 0, "%s", db_error(db));
	free(q);
}

Test(worker, finish_racing_the_reaper_stays_done)
{
	tdb_order_confirmed(db, "RACE", 1);
	struct claimed_job *j = tdb_claim(db, "w1", NULL);
	/* the worker's heartbeat looks stale… */
	make_stale("");
	/* …but it is finishing: its transaction holds the row when the reaper comes. */
	struct db *w = tdb_connect(DBNAME);
	cr_assert_eq(db_begin(w), 0);
	int64_t locked = 0;
	cr_assert_eq(db_query_i64(w, &locked, "SELECT id FROM processing_jobs WHERE id = ? FOR UPDATE", DB_I64(j->id),
				  DB_END),
		     0);
	/* the reaper neither waits behind the worker nor touches the job (SKIP LOCKED) */
	struct reaper_arg ra = { 0 };
	run_reaper(&ra);
	cr_assert_eq(ra.rc, 0);
	cr_assert_eq(ra.st.retried + ra.st.failed + ra.st.cancelled, 0, "the reaper left the job being finished alone");
	reap_stats_done(&ra.st);
	cr_assert_eq(db_exec(w, NULL,
			     "UPDATE processing_jobs SET status = 'done', stage = 'done', progress = 100, completed_at = NOW(6),"
			     " heartbeat_at = NOW(6) WHERE id = ? AND status = 'processing' AND locked_by = 'w1'",
			     DB_I64(j->id), DB_END),
		     0);
	cr_assert_eq(db_commit(w), 0);
	/* and the next round finds it done */
	run_reaper(&ra);
	cr_assert_eq(ra.rc, 0);
	cr_assert_eq(ra.st.retried + ra.st.failed + ra.st.cancelled, 0);
	reap_stats_done(&ra.st);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type IN ('job.failed', 'order.failed')"),
		     0);
	/* the reverse order (reaper first, then the real finalizer) is the next test */
	db_close(w);
	claimed_job_free(j);
}

Test(worker, reaped_job_cannot_be_finished_by_its_old_worker)
{
	tdb_order_confirmed(db, "OLD", 1);
	struct claimed_job *j = tdb_claim(db, "w1", NULL);
	make_stale("");
	struct reap_stats rs;
	double d[] = { 5 };
	cr_assert_eq(queue_reap(db, 1.0, 3600, d, 1, NULL, 0, &rs), 0);
	cr_assert_eq(rs.retried, 1);
	reap_stats_done(&rs);
	cr_assert_eq(job_finish_done(db, &JOB_LEASE(j, "w1"), 0, NULL, NULL), -ESTALE);
	bool cancel;
	cr_assert_eq(job_progress(db, &JOB_LEASE(j, "w1"), "writing", 50, NULL, 0, 0, &cancel), -ESTALE);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'retry'"), 1);
	claimed_job_free(j);
}

Test(worker, reaper_cancels_a_dead_workers_job_when_cancel_was_requested)
{
	tdb_order_confirmed(db, "CR", 1);
	struct claimed_job *j = tdb_claim(db, "w1", NULL);
	enum job_state st;
	cr_assert_eq(job_cancel(db, j->id, "ops", &st), 0);
	cr_assert_eq(st, JOB_STATE_PROCESSING);
	/* the worker dies before it sees the request */
	make_stale("cancel_requested_at = NOW(6) - INTERVAL 20 SECOND");
	struct reap_stats rs;
	double d[] = { 5 };
	cr_assert_eq(queue_reap(db, 1.0, 3600, d, 1, NULL, 0, &rs), 0);
	cr_assert_eq(rs.cancelled, 1);
	cr_assert_eq(rs.retried + rs.failed + rs.stuck_reported, 0);
	reap_stats_done(&rs);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_jobs WHERE status = 'cancelled' AND error_code = 'CANCELLED'"
			       " AND cancelled_by = 'ops' AND locked_by IS NULL"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 0, "no job.failed, no order.failed, no refund");
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_job_logs WHERE error_code = 'CANCELLED' AND attempt = 1"
			       " AND message LIKE 'stuck job cancelled by the reaper%'"),
		     1);
	cr_assert_eq(job_finish_done(db, &JOB_LEASE(j, "w1"), 0, NULL, NULL), -ESTALE);
	claimed_job_free(j);
}

Test(worker, cancel_that_comes_after_the_end_leaves_it_done)
{
	tdb_order_confirmed(db, "CD", 1);
	struct claimed_job *j = tdb_claim(db, "w1", NULL);
	/* the operator asks while the worker is on its last chunk; the worker finishes first */
	enum job_state st;
	cr_assert_eq(job_cancel(db, j->id, "ops", &st), 0);
	cr_assert_eq(st, JOB_STATE_PROCESSING);
	cr_assert_eq(job_finish_done(db, &JOB_LEASE(j, "w1"), 0, NULL, NULL), 0);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND cancelled_at IS NULL"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type IN ('job.done', 'order.done')"), 2);
	/* and a cancel of the finished job is refused */
	cr_assert_eq(job_cancel(db, j->id, "ops", &st), -EALREADY);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done'"), 1);
	claimed_job_free(j);
}

Test(worker, queued_too_long_is_reported_once_from_its_last_requeue)
{
	tdb_order_confirmed(db, "SQ", 2);
	/* unit 0 has waited 2 hours; unit 1 was created as long ago but requeued a minute ago */
	cr_assert_eq(db_exec(db, NULL,
			     "UPDATE processing_jobs SET created_at = NOW(6) - INTERVAL 2 HOUR,"
			     " next_attempt_at = IF(unit_index = 0, NOW(6) - INTERVAL 2 HOUR, NOW(6) - INTERVAL 1 MINUTE)",
			     DB_END),
		     0);
	double d[] = { 5 };
	for (int pass = 0; pass < 2; pass++) {
		struct reap_stats rs;
		cr_assert_eq(queue_reap(db, 60, 900, d, 1, NULL, 0, &rs), 0);
		cr_assert_eq(rs.stuck_reported, pass == 0 ? 1u : 0u, "pass %d", pass);
		cr_assert_eq(rs.retried + rs.failed + rs.cancelled, 0);
		reap_stats_done(&rs);
	}
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.stuck'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events e JOIN processing_jobs j ON j.id = e.aggregate_id"
				   " WHERE e.event_type = 'job.stuck' AND j.unit_index = 0"
				   " AND JSON_VALUE(e.payload, '$.queued_seconds') >= 7200"),
		     1);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'warn' AND error_code = 'STUCK_TIMEOUT'"),
		1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued'"), 2,
		     "reporting changes no state");
}

Test(worker, final_log_row_only_with_its_transition)
{
	tdb_order_confirmed(db, "FL", 2);
	struct claimed_job *a = tdb_claim(db, "w1", NULL);
	struct claimed_job *b = tdb_claim(db, "w1", NULL);
	struct job_log_row row = {
		.attempt = 1, .level = "info", .stage = "done", .category = "stage", .message = "job done"
	};
	/* a is taken away (an operator's hand, as the reaper would): its worker's final row is not written */
	cr_assert_eq(db_exec(db, NULL, "UPDATE processing_jobs SET locked_by = 'w2' WHERE id = ?", DB_I64(a->id),
			     DB_END),
		     0);
	cr_assert_eq(job_finish_done(db, &JOB_LEASE(a, "w1"), 0, NULL, &row), -ESTALE);
	struct job_log_row frow = { .attempt = 1,
				    .level = "error",
				    .stage = "writing",
				    .category = "stage",
				    .message = "WRITE_IO: x",
				    .error_code = "WRITE_IO" };
	cr_assert_eq(job_finish_fail(db, &JOB_LEASE(a, "w1"), UFC_WRITE_IO, "x", &frow, (double[]){ 5 }, 1, NULL),
		     -ESTALE);
	cr_assert_eq(job_hand_back(db, &JOB_LEASE(a, "w1"), "stopping", &row), -ESTALE);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), 0);
	/* b is still ours: the transition and its row land together */
	cr_assert_eq(job_finish_done(db, &JOB_LEASE(b, "w1"), 0, NULL, &row), 0);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'job done' AND attempt = 1"),
		     1);
	char *sql = NULL;
	cr_assert(asprintf(&sql, "SELECT COUNT(*) FROM processing_job_logs WHERE job_id = %lld", (long long)b->id) > 0);
	cr_assert_eq(tdb_count(db, sql), 1);
	free(sql);
	claimed_job_free(a);
	claimed_job_free(b);
}

struct killer_arg {
	double window; /* seconds of killing */
	int kills;
	long long spare; /* the test's own connection */
};

/* Kill every connection of the daemon (all but the test's) every 20 ms for k->window seconds. */
static void *killer_main(void *p)
{
	struct killer_arg *k = p;
	struct db *kdb = tdb_connect(DBNAME);
	double end = mono() + k->window;
	while (mono() < end) {
		struct db_res *res = NULL;
		if (db_query(kdb, &res,
			     "SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()"
			     " AND id <> ? AND command <> 'Killed'",
			     DB_STR(DBNAME), DB_I64(k->spare), DB_END) == 0) {
			db_row row;
			while ((row = db_res_next(res)))
				if (db_exec(kdb, NULL, "KILL CONNECTION ?", DB_I64(db_row_i64(row, 0)), DB_END) == 0)
					k->kills++;
			db_res_free(res);
		}
		(void)poll(NULL, 0, 20);
	}
	db_close(kdb);
	return NULL;
}

static int count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "re");
	cr_assert(f, "%s", path);
	char line[2048];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

/* Wait (bounded) until path has at least want lines holding needle; returns the count. */
static int wait_line(const char *path, const char *needle, int want, double timeout)
{
	double end = mono() + timeout;
	int n = 0;
	while (mono() < end) {
		n = count_lines(path, needle);
		if (n >= want)
			return n;
		(void)poll(NULL, 0, 20);
	}
	return n;
}

/* No sanitizer report in a daemon's stderr. */
static void assert_clean_stderr(const char *errp)
{
	cr_assert_eq(count_lines(errp, "AddressSanitizer"), 0, "%s", errp);
	cr_assert_eq(count_lines(errp, "LeakSanitizer"), 0, "%s", errp);
	cr_assert_eq(count_lines(errp, "runtime error:"), 0, "%s", errp);
}

/* The database drops every connection from 80% of the write until after the job has ended: the
 * end (done, job.done, order.done, its log row) is recorded once, when the database is back. */
Test(worker, database_lost_at_the_end_of_a_job_still_records_it_once)
{
	char *img = make_image("flaky.img", 24, 77);
	char *s0 = make_stick("s0.img", 64 << 20);
	const char *slots[] = { s0, NULL };
	char *cfg = config(slots, "write = { max_rate = \"4MiB\"; probe = false; };\n"
				  "stuck = { processing_timeout = 30; queued_timeout = 3600; check_interval = 60; };");
	add_confirm("FLAKY", 1, img, 64 << 20);
	char *errp = tu_path(dir, "daemon.err");
	pid_t pid = spawn_daemon_logged(cfg, true, errp);
	/* writing is 30–80% and takes 6 s at 4 MiB/s; progress is written once a second: 70% is
	 * 80% of the write, a second or so before the job ends, inside the 3 s of killing */
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_jobs WHERE progress >= 70", 1, 60), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'processing'"), 1);
	struct killer_arg k = { .window = 3.0, .spare = tdb_count(db, "SELECT CONNECTION_ID()") };
	pthread_t t;
	pthread_create(&t, NULL, killer_main, &k);
	pthread_join(t, NULL);
	int rc = wait_exit(pid, 60);
	cr_assert_eq(rc, 0, "usbforged exited with %d; its stderr:\n%s", rc, tu_slurp(errp));
	cr_assert(k.kills >= 3, "the outage was real: %d connections killed", k.kills);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND attempts = 1"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'order.done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 3);
	cr_assert_eq(started_attempts(), 1, "job.started of each attempt that reached writing");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'job done'"), 1);
	/* the end either went through on a new connection inside db_transaction (it reruns a
	 * transaction whose server was lost before COMMIT), or waited for the database and said so */
	int waited = count_lines(errp, "cannot record its end yet");
	cr_assert_leq(waited, 1);
	cr_assert_eq(count_lines(errp, "end recorded after the database came back"), waited);
	assert_same_bytes(img, s0, 24 << 20);
	free(errp);
	free(img);
	free(s0);
	free(cfg);
}

Test(worker, cancel_queued_and_running)
{
	char *img = make_image("big.raw", 256, 4);
	char *s0 = make_stick("s0.img", 1ULL << 30);
	const char *slots[] = { s0, NULL };
	char *cfg = config(slots, "write = { max_rate = \"32MiB\"; probe = false; };");
	add_confirm("C-1", 2, img, 1ULL << 30);
	int64_t first = tdb_count(db, "SELECT MIN(id) FROM processing_jobs");
	enum job_state st;
	/* the second unit is cancelled while queued */
	cr_assert_eq(job_cancel(db, first + 1, "tester", &st), 0);
	cr_assert_eq(st, JOB_STATE_CANCELLED);
	pid_t pid = spawn_daemon(cfg, true);
	char q[256];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_jobs WHERE id = %lld AND stage = 'writing' AND progress > 32",
		 (long long)first);
	cr_assert_eq(wait_for(q, 1, 60), 1);
	cr_assert_eq(job_cancel(db, first, "tester", &st), 0);
	cr_assert_eq(st, JOB_STATE_PROCESSING);
	cr_assert_eq(wait_exit(pid, 60), 0);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_jobs WHERE status = 'cancelled' AND error_code = 'CANCELLED'"
			       " AND cancelled_by = 'tester' AND cancelled_at IS NOT NULL"),
		     2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 1);
	cr_assert_eq(started_attempts(), 1, "job.started of each attempt that reached writing");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'cancel'"), 2);
	/* a finished job cannot be cancelled; the cancelled one can be retried */
	cr_assert_eq(job_cancel(db, first, "tester", &st), -EALREADY);
	cr_assert_eq(job_retry(db, first, "tester", 4), 0);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued' AND attempts = 0 AND generation = 1"),
		1);
	cr_assert_eq(job_retry(db, first, "tester", 4), -EBUSY);
	free(img);
	free(s0);
	free(cfg);
}

Test(worker, sigterm_hands_the_job_back)
{
	char *img = make_image("big.raw", 256, 5);
	char *s0 = make_stick("s0.img", 1ULL << 30);
	const char *slots[] = { s0, NULL };
	char *cfg = config(slots, "write = { max_rate = \"32MiB\"; probe = false; };");
	add_confirm("T-1", 1, img, 1ULL << 30);
	pid_t pid = spawn_daemon(cfg, false);
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_jobs WHERE stage = 'writing' AND progress > 32", 1, 60),
		     1);
	kill(pid, SIGTERM);
	cr_assert_eq(wait_exit(pid, 60), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'retry' AND attempts = 0"
				   " AND locked_by IS NULL AND next_attempt_at <= NOW(6)"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message LIKE '%handed back%'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 1);
	cr_assert_eq(started_attempts(), 1, "job.started of each attempt that reached writing");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM workers WHERE stopped_at IS NOT NULL"), 1);
	free(img);
	free(s0);
	free(cfg);
}

Test(worker, no_database_means_waiting_not_exiting)
{
	char *s0 = make_stick("s0.img", 64 << 20);
	char *conf = tu_path(dir, "nodb.conf");
	char *text = NULL;
	cr_assert(asprintf(&text,
			   "database = { socket = \"%s/nosock\"; user = \"root\"; };\n"
			   "worker = { poll_interval = 0.1; };\n"
			   "usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"%s\"; } ); };\n",
			   dir, s0) > 0);
	tu_write_file(conf, text, strlen(text));
	char *errp = tu_path(dir, "daemon.err");
	pid_t pid = spawn_daemon_logged(conf, true, errp);
	/* several reconnect attempts (each logged at debug level, --verbose) */
	cr_assert_eq(wait_line(errp, "database still unavailable", 3, 30), 3);
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "usbforged must not exit without its database");
	kill(pid, SIGTERM);
	cr_assert_eq(wait_exit(pid, 20), 0);
	cr_assert_eq(count_lines(errp, "DB_UNAVAILABLE"), 1, "the outage is logged once, not once per retry");
	free(text);
	free(conf);
	free(errp);
	free(s0);
}

static void put_file(const char *root, const char *rel, size_t len, uint64_t seed)
{
	char *p = tu_path(root, rel);
	char *slash = strrchr(p, '/');
	*slash = 0;
	mkdir(p, 0755);
	*slash = '/';
	char *buf = malloc(len ? len : 1);
	tu_fill_pattern(buf, len, seed);
	tu_write_file(p, buf, len);
	free(buf);
	free(p);
}

static int64_t add_content_order(const char *number, const char *spec, uint64_t capacity)
{
	struct order_new o = { .number = number, .capacity_bytes = capacity, .quantity = 1, .content_spec = spec };
	int64_t id;
	cr_assert_eq(order_add(db, &o, &id), 0, "%s", db_error(db));
	struct order_confirmation r = { 0 };
	cr_assert_eq(order_confirm(db, number, NULL, 4, "test", &r), 0, "%s", db_error(db));
	order_confirmation_done(&r);
	return id;
}

Test(worker, content_order_composes_a_fat32_stick)
{
	char *root = tu_path(dir, "content");
	mkdir(root, 0755);
	put_file(root, "Salsa/Uno – canción.mp3", 300000, 1);
	put_file(root, "Salsa/Dos.mp3", 200000, 2);
	put_file(root, "Reggaetón/Tres.mp3", 250000, 3);
	struct content_scan_stats st;
	cr_assert_eq(content_scan(db, root, NULL, NULL, NULL, &st), 0);
	cr_assert_eq(st.added, 3);
	char *s0 = make_stick("s0.img", 96 << 20);
	const char *slots[] = { s0, NULL };
	char *extra = NULL;
	cr_assert(asprintf(&extra, "content = { root = \"%s\"; };", root) > 0);
	char *cfg = config(slots, extra);
	add_content_order("M-1", "{\"categories\": [\"Salsa\", \"Reggaetón\"], \"items\": []}", 96 << 20);
	pid_t pid = spawn_daemon(cfg, true);
	cr_assert_eq(wait_exit(pid, 120), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_items"), 3);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_job_items WHERE dest_path = 'Salsa/Uno – canción.mp3'"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type IN ('job.done', 'order.done')"), 2);
	/* an outside oracle: dosfstools checks the partition at 1 MiB */
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "dd if=%s of=%s.part bs=1M skip=1 status=none && fsck.fat -n %s.part >/dev/null", s0,
		 s0, s0);
	cr_assert_eq(system(cmd), 0, "fsck.fat found errors on the composed stick");

	/* a file that changes after the scan fails the next order at once: CONTENT_CHANGED */
	put_file(root, "Salsa/Dos.mp3", 200000, 99); /* same size, new bytes and mtime */
	add_content_order("M-2", "{\"categories\": [\"Salsa\"], \"items\": []}", 96 << 20);
	pid = spawn_daemon(cfg, true);
	cr_assert_eq(wait_exit(pid, 120), 0);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
			  " WHERE o.order_number = 'M-2' AND j.status = 'failed' AND j.error_code = 'CONTENT_CHANGED' AND j.attempts = 1"),
		1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'order.failed'"), 1);

	/* an order whose only file is 4 GiB or more (only SQL can make one: order add refuses it)
	 * fails at selection saying so, once, and the message does not repeat its code */
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO content_items (category, title, rel_path, size_bytes, sha256, mtime)"
			     " VALUES ('Huge', 'big', 'Huge/big.mkv', 5368709120, REPEAT('a', 64), NOW(6))",
			     DB_END),
		     0, "%s", db_error(db));
	add_content_order("M-3", "{\"categories\": [\"Huge\"], \"items\": []}", 96 << 20);
	pid = spawn_daemon(cfg, true);
	cr_assert_eq(wait_exit(pid, 120), 0);
	static const char why[] = "every file of the order is 4 GiB or more (1 skipped): FAT32 holds files of at most "
				  "4 GiB - 1 byte (4294967295 bytes)";
	char q[1024];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_jobs j JOIN orders o ON o.id = j.order_id WHERE o.order_number = 'M-3'"
		 " AND j.status = 'failed' AND j.error_code = 'CONTENT_TOO_LARGE' AND j.fail_reason = '%s'",
		 why);
	cr_assert_eq(tdb_count(db, q), 1);
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_job_logs l JOIN processing_jobs j ON j.id = l.job_id"
		 " JOIN orders o ON o.id = j.order_id WHERE o.order_number = 'M-3' AND l.level = 'error'"
		 " AND l.error_code = 'CONTENT_TOO_LARGE' AND l.stage = 'selection' AND l.message = '%s'",
		 why);
	cr_assert_eq(tdb_count(db, q), 1);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_job_logs l JOIN processing_jobs j ON j.id = l.job_id"
			       " JOIN orders o ON o.id = j.order_id WHERE o.order_number = 'M-3' AND l.level = 'error'"),
		     1);
	/* no row of any job repeats its code in its message, and none is empty */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE error_code IS NOT NULL"
				   " AND message LIKE CONCAT(error_code, '%')"),
		     0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = ''"), 0);
	free(extra);
	free(cfg);
	free(s0);
	free(root);
}

static int64_t order_with(const char *number, uint64_t capacity, const char *station, uint64_t image_bytes)
{
	struct order_new o = { .number = number,
			       .capacity_bytes = capacity,
			       .quantity = 1,
			       .image_path = "/x.img",
			       .image_bytes = image_bytes,
			       .station = station };
	int64_t id;
	cr_assert_eq(order_add(db, &o, &id), 0, "%s", db_error(db));
	struct order_confirmation r = { 0 };
	cr_assert_eq(order_confirm(db, number, NULL, 4, "t", &r), 0);
	cr_assert_eq(r.n_jobs, 1);
	int64_t jid = r.jobs[0].id;
	order_confirmation_done(&r);
	return jid;
}

static int64_t claim_for(const char *station, uint64_t device_bytes)
{
	struct claim_req q = { .worker_id = "w",
			       .station = station,
			       .slot = "A",
			       .device_bytes = device_bytes,
			       .capacity_tolerance = 0.10 };
	struct claimed_job *j = NULL;
	int r = job_claim(db, &q, &j);
	if (r == -ENOENT)
		return 0;
	cr_assert_eq(r, 0, "%s", db_error(db));
	int64_t id = j->id;
	claimed_job_free(j);
	return id;
}

Test(worker, claim_matches_stick_station_and_size)
{
	int64_t small = order_with("S8", 8000000000ULL, NULL, 0);
	int64_t big_other = order_with("B16-other", 16000000000ULL, "kiosk-2", 0);
	int64_t big_a = order_with("B16-a", 16000000000ULL, NULL, 0);
	int64_t big_b = order_with("B16-b", 16000000000ULL, "test-station", 0);
	int64_t huge_img = order_with("IMG", 8000000000ULL, NULL, 9000000000ULL);
	/* a "16 GB" stick that really holds 14.9 GB: ≥ 16 GB × 0.9 */
	cr_assert_eq(claim_for("test-station", 14900000000ULL), big_a, "largest capacity first, then the oldest");
	cr_assert_eq(claim_for("test-station", 14900000000ULL), big_b);
	/* kiosk-2's job is not ours; the image job needs 9 GB; the 8 GB job fits */
	cr_assert_eq(claim_for("test-station", 7300000000ULL), small, "8 GB × 0.9 = 7.2 GB fits a 7.3 GB stick");
	cr_assert_eq(claim_for("test-station", 7100000000ULL), 0, "the image needs 9 GB, nothing else fits");
	cr_assert_eq(claim_for("test-station", 9100000000ULL), huge_img);
	cr_assert_eq(claim_for("test-station", 64000000000ULL), 0, "kiosk-2's job stays for kiosk-2");
	cr_assert_eq(claim_for("kiosk-2", 15000000000ULL), big_other);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'processing' AND attempts = 1"),
		     5);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders WHERE status = 'processing'"), 5);
}

Test(worker, read_only_stick_is_never_claimed)
{
	char *backing = make_stick("ro.img", 64 << 20);
	char cmd[1024], loop[64] = "";
	snprintf(cmd, sizeof(cmd), "losetup -r -f --show %s", backing);
	FILE *p = popen(cmd, "r");
	cr_assert(p);
	cr_assert(fgets(loop, sizeof(loop), p), "losetup failed");
	pclose(p);
	loop[strcspn(loop, "\n")] = 0;
	char *img = make_image("img.raw", 4, 7);
	const char *slots[] = { loop, NULL };
	char *cfg = config(slots, NULL);
	add_confirm("RO-1", 1, img, 64 << 20);
	pid_t pid = spawn_daemon(cfg, true);
	int rc = wait_exit(pid, 60);
	snprintf(cmd, sizeof(cmd), "losetup -d %s", loop);
	int detach = system(cmd);
	cr_assert_eq(rc, 0);
	cr_assert_eq(detach, 0);
	/* the safety check sees it first: the slot is unsafe, the job untouched, --once ends */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued' AND attempts = 0"
				   " AND started_at IS NULL"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), 0);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM devices WHERE slot = 'S0' AND state = 'unsafe' AND state_reason = 'read-only'"),
		1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 0);
	free(backing);
	free(img);
	free(cfg);
}

Test(worker, bad_stick_goes_back_to_the_queue_without_spending_an_attempt)
{
	int64_t id = order_with("FAKE", 16000000000ULL, NULL, 0);
	cr_assert_eq(claim_for("test-station", 15000000000ULL), id);
	enum job_state st;
	double d[] = { 5, 15, 60 };
	struct job_lease l = { .id = id, .worker_id = "w", .attempt = 1 };
	cr_assert_eq(job_finish_fail(db, &l, UFC_DEVICE_FAKE_CAPACITY, "only 1 GiB real", NULL, d, 3, &st), 0);
	cr_assert_eq(st, JOB_STATE_QUEUED);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued' AND attempts = 0"
				   " AND error_code = 'DEVICE_FAKE_CAPACITY' AND slot IS NULL AND locked_by IS NULL"),
		     1);
	/* and the next stick takes it as a first attempt */
	cr_assert_eq(claim_for("test-station", 15000000000ULL), id);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE attempts = 1"), 1);
	/* a permanent error fails at once, with its events */
	cr_assert_eq(job_finish_fail(db, &l, UFC_CONTENT_MISSING, "gone", NULL, d, 3, &st), 0);
	cr_assert_eq(st, JOB_STATE_FAILED);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type IN ('job.failed', 'order.failed')"),
		     2);
	/* finalizing again is refused and writes nothing */
	cr_assert_eq(job_finish_fail(db, &l, UFC_CONTENT_MISSING, "gone", NULL, d, 3, &st), -ESTALE);
	cr_assert_eq(job_finish_done(db, &l, 0, NULL, NULL), -ESTALE);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 2);
}

/* The server goes away for good while a job writes: its account is locked and every connection
 * of it killed, so each reconnect fails (before, the handle a failed reconnect left NULL was
 * handed to libmariadb: SIGSEGV). The write runs to its end, the rows written meanwhile are kept
 * in order, the end is recorded once the server takes the account back, and the daemon is at
 * work again at once: it takes the second unit. */
Test(worker, database_outage_with_refused_reconnects_is_survived_and_nothing_is_lost)
{
	const char *user = "uf_t_worker_outage";
	tdb_user(db, user, "pw-outage", DBNAME);
	char *img = make_image("outage.img", 24, 91);
	char *s0 = make_stick("s0.img", 64 << 20);
	const char *slots[] = { s0, NULL };
	char *cfg = config_as("outage.conf", user, "pw-outage", slots,
			      "write = { max_rate = \"4MiB\"; probe = false; };\n"
			      "stuck = { processing_timeout = 60; queued_timeout = 3600; check_interval = 0.5; };");
	add_confirm("OUTAGE", 2, img, 64 << 20);
	long long first = tdb_count(db, "SELECT MIN(id) FROM processing_jobs");
	char *errp = tu_path(dir, "outage.err");
	pid_t pid = spawn_daemon_logged(cfg, true, errp);
	char q[512];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_jobs WHERE id = %lld AND stage = 'writing' AND progress >= 50",
		 first);
	cr_assert_eq(wait_for(q, 1, 60), 1);
	cr_assert_eq(tdb_user_lock(db, user, true), 2, "the daemon's and the runner's connections were cut");
	/* the write goes on to its end; its end cannot be recorded while the account is locked */
	cr_assert_eq(wait_line(errp, "cannot record its end yet", 1, 60), 1);
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "usbforged outlives the outage");
	long long down = tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'job done'");
	cr_assert_eq(down, 0);
	/* the newest row just before the account is back: a row inserted after it was kept while
	 * the database was away (its created_at is when it happened, queued by the runner) */
	cr_assert_eq(db_exec(db, NULL, "SET @id_back = (SELECT COALESCE(MAX(id), 0) FROM processing_job_logs)", DB_END),
		     0);
	cr_assert_eq(db_exec(db, NULL, "SET @t_back = NOW(6)", DB_END), 0);
	cr_assert_eq(tdb_user_lock(db, user, false), 0);
	cr_assert_eq(wait_exit(pid, 120), 0);

	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND attempts = 1"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'order.done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 5);
	cr_assert_eq(started_attempts(), 11, "job.started of each attempt that reached writing");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'job done'"), 2);
	/* nothing reported during the outage was lost: the rows of the rest of the first unit's
	 * write and of its verification were kept and written when the server was back, once
	 * each, in order */
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_job_logs WHERE job_id = %lld AND id > @id_back"
		 " AND message IN ('writing done', 'verification started', 'verification done', 'job done')",
		 first);
	cr_assert_eq(tdb_count(db, q), 4);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE category = 'stage'"
				   " AND (message LIKE '% started' OR (message LIKE '% done' AND stage <> 'done'))"),
		     16);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM (SELECT job_id FROM processing_job_logs"
			       " WHERE category = 'progress' GROUP BY job_id, stage, message HAVING COUNT(*) > 1) x"),
		     0);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_job_logs a JOIN processing_job_logs b"
			       " ON b.job_id = a.job_id AND b.id > a.id WHERE"
			       " FIELD(b.stage, 'pending', 'validation', 'selection', 'writing', 'verification', 'done')"
			       " < FIELD(a.stage, 'pending', 'validation', 'selection', 'writing', 'verification', 'done')"
			       " OR (a.category = 'progress' AND b.category = 'progress' AND b.stage = a.stage"
			       "  AND CAST(SUBSTRING_INDEX(SUBSTRING_INDEX(b.message, ' ', -1), '%', 1) AS UNSIGNED)"
			       "   < CAST(SUBSTRING_INDEX(SUBSTRING_INDEX(a.message, ' ', -1), '%', 1) AS UNSIGNED))"),
		     0, "rows are in the order they were reported");
	/* back at work as soon as the server was: the end recorded and the next unit claimed */
	long long ms = tdb_count(db, "SELECT TIMESTAMPDIFF(MICROSECOND, @t_back, MAX(completed_at))"
				     " DIV 1000 FROM processing_jobs WHERE unit_index = 0");
	long long claim_ms = tdb_count(db, "SELECT TIMESTAMPDIFF(MICROSECOND, @t_back, started_at)"
					   " DIV 1000 FROM processing_jobs WHERE unit_index = 1");
	cr_log_info("outage: end recorded %lld ms and next unit claimed %lld ms after the server was back", ms,
		    claim_ms);
	cr_assert_lt(ms, 5000, "the end was recorded %lld ms after the server came back", ms);
	cr_assert_lt(claim_ms, 5000, "the next unit was claimed %lld ms after the server came back", claim_ms);
	cr_assert_eq(count_lines(errp, "end recorded after the database came back"), 1);
	assert_clean_stderr(errp);
	assert_same_bytes(img, s0, 24 << 20);
	tdb_root_exec("DROP USER IF EXISTS 'uf_t_worker_outage'@'localhost'");
	free(errp);
	free(img);
	free(s0);
	free(cfg);
}

/* A worker frozen (SIGSTOP) past the stuck timeout loses its job to another daemon's reaper and
 * claim; thawed, it writes nothing more for it (before, it wrote "writing 60%" for attempt 1
 * after attempt 2 had begun) and says so once on stderr. The reaper's row names the stage the
 * frozen attempt was in (writing), not the lagging job row's. */
Test(worker, frozen_worker_writes_nothing_for_the_job_it_lost)
{
	char *img = make_image("frozen.img", 16, 92);
	char *sa = make_stick("sa.img", 64 << 20), *sb = make_stick("sb.img", 64 << 20);
	const char *slots_a[] = { sa, NULL }, *slots_b[] = { sb, NULL };
	const char *extra = "write = { max_rate = \"4MiB\"; probe = false; };\n"
			    "retry = { delays = [0.1, 0.1, 0.1]; };\n"
			    "stuck = { processing_timeout = 2; queued_timeout = 3600; check_interval = 0.25; };";
	char *cfg_a = config_as("a.conf", NULL, NULL, slots_a, extra);
	char *cfg_b = config_as("b.conf", NULL, NULL, slots_b, extra);
	add_confirm("FROZEN", 1, img, 64 << 20);
	char *err_a = tu_path(dir, "a.err"), *err_b = tu_path(dir, "b.err");
	pid_t a = spawn_daemon_logged(cfg_a, false, err_a);
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_jobs WHERE stage = 'writing' AND progress >= 40", 1, 60),
		     1);
	kill(a, SIGSTOP);
	/* frozen past the stuck timeout by the test's clock (should a heartbeat of a's still in
	 * flight land after this, the 2 s timeout passes in real time) */
	age_jobs(10, "status = 'processing'");
	pid_t b = spawn_daemon_logged(cfg_b, false, err_b);
	/* b's reaper returns the job, b claims it: attempt 2 has begun */
	cr_assert_eq(wait_for("SELECT COUNT(*) > 0 FROM processing_job_logs WHERE attempt = 2", 1, 60), 1);
	kill(a, SIGCONT);
	cr_assert_eq(wait_line(err_a, "no longer ours", 1, 30), 1);
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_jobs WHERE status = 'done'", 1, 60), 1);
	kill(a, SIGTERM);
	kill(b, SIGTERM);
	cr_assert_eq(wait_exit(a, 60), 0);
	cr_assert_eq(wait_exit(b, 60), 0);

	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND attempts = 2"
				   " AND locked_by IS NULL"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT MAX(attempt) FROM processing_job_logs"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE attempt = 1"
				   " AND id > (SELECT MIN(id) FROM processing_job_logs WHERE attempt = 2)"),
		     0, "attempt 1 wrote a row after attempt 2 began");
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_job_logs WHERE attempt = 1"
			       " AND created_at > (SELECT MIN(created_at) FROM processing_job_logs WHERE attempt = 2)"),
		     0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE error_code = 'STUCK_TIMEOUT'"
				   " AND attempt = 1 AND stage = 'writing'"),
		     1, "the reaper names the stage the frozen attempt was in");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'order.done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 4);
	cr_assert_eq(started_attempts(), 12, "job.started of each attempt that reached writing");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'job done'"), 1);
	cr_assert_eq(count_lines(err_a, "no longer ours"), 1, "said once, on stderr");
	assert_clean_stderr(err_a);
	assert_clean_stderr(err_b);
	assert_same_bytes(img, sb, 16 << 20);
	free(err_a);
	free(err_b);
	free(cfg_a);
	free(cfg_b);
	free(sa);
	free(sb);
	free(img);
}

/* SIGHUP reloads the configuration (before, it killed the daemon: exit 129): the keys that can
 * change in place do, a restart-only key that changed is named and keeps its running value, a
 * file that does not load is refused with its name and the running configuration stays, and a
 * job running through both reloads is untouched. */
Test(worker, sighup_reloads_the_configuration_and_refuses_a_bad_file)
{
	char *img = make_image("hup.img", 16, 93);
	char *s0 = make_stick("s0.img", 64 << 20);
	const char *slots[] = { s0, NULL };
	char *cfg = config(slots, "write = { max_rate = \"8MiB\"; probe = false; };");
	add_confirm("HUP", 2, img, 64 << 20);
	char *errp = tu_path(dir, "hup.err");
	pid_t pid = spawn_daemon_logged(cfg, false, errp);
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_jobs WHERE stage = 'writing' AND progress >= 35", 1, 60),
		     1);

	/* a good file with a new poll interval and a new station */
	char *text = config_text(slots, "write = { max_rate = \"8MiB\"; probe = false; };");
	char *good = NULL;
	char *dbconf = tdb_database_conf(DBNAME);
	cr_assert(asprintf(&good, "station = \"other-station\";\n%s\n%s", dbconf, strstr(text, "worker =")) > 0);
	free(dbconf);
	good = realloc(good, strlen(good) + 64);
	char *pi = strstr(good, "poll_interval = 0.2");
	cr_assert(pi);
	memcpy(pi, "poll_interval = 0.3", 19);
	tu_write_file(cfg, good, strlen(good));
	kill(pid, SIGHUP);
	cr_assert_eq(wait_line(errp, "configuration reloaded", 1, 30), 1);
	cr_assert_eq(count_lines(errp, "station changed; that takes a restart"), 1);
	cr_assert_eq(count_lines(errp, "poll 0.30 s"), 1);

	/* a file that does not load */
	const char *bad = "worker = { poll_interval = ; };\n";
	tu_write_file(cfg, bad, strlen(bad));
	kill(pid, SIGHUP);
	char *needle = NULL;
	cr_assert(asprintf(&needle, "reload refused, the running configuration stays: %s:1", cfg) > 0);
	cr_assert_eq(wait_line(errp, needle, 1, 30), 1);
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "usbforged survives SIGHUP");

	/* it goes on working under the running configuration: both units done, each in one attempt */
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND attempts = 1", 2, 60), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE slot IS NOT NULL AND status = 'done'"),
		     2);
	kill(pid, SIGTERM);
	cr_assert_eq(wait_exit(pid, 60), 0);
	cr_assert_eq(count_lines(errp, "configuration reloaded"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'error'"), 0);
	assert_clean_stderr(errp);
	free(needle);
	free(good);
	free(text);
	free(errp);
	free(img);
	free(s0);
	free(cfg);
}

/* Every write made under a lease stops matching once the job is not the lease's any more: the
 * reaper took it, or a later claim (even by the same worker) began another attempt. */
Test(worker, writes_under_a_lost_lease_match_nothing)
{
	tdb_order_confirmed(db, "LEASE", 1);
	struct claimed_job *j = tdb_claim(db, "w1", NULL);
	struct job_lease l1 = JOB_LEASE(j, "w1");
	struct job_log_row row = {
		.level = "info", .stage = "writing", .category = "progress", .message = "writing 10%"
	};
	bool cancel = false;
	cr_assert_eq(job_log_leased(db, &l1, &row), 0, "%s", db_error(db));
	cr_assert_eq(job_progress(db, &l1, "writing", 40, NULL, 0, 0, &cancel), 0);
	cr_assert_eq(job_resume_store(db, &l1, "{\"v\":1}"), 0);
	struct job_item it = { .position = 0, .content_item_id = 1, .size = 1, .dest_path = (char *)"/x" };
	make_stale("stage = 'validation'"); /* the job row lags its log */
	struct reap_stats rs;
	cr_assert_eq(queue_reap(db, 1.0, 3600, (double[]){ 0 }, 1, NULL, 0, &rs), 0);
	cr_assert_eq(rs.retried, 1);
	reap_stats_done(&rs);
	/* the reaper's row names the stage of the attempt's last row, not the job row's */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE error_code = 'STUCK_TIMEOUT'"
				   " AND stage = 'writing' AND attempt = 1"),
		     1);
	cr_assert_eq(job_log_leased(db, &l1, &row), -ESTALE);
	cr_assert_eq(job_progress(db, &l1, "writing", 50, NULL, 0, 0, &cancel), -ESTALE);
	cr_assert_eq(job_resume_store(db, &l1, "{\"v\":2}"), -ESTALE);
	cr_assert_eq(job_items_store(db, &l1, &it, 1), -ESTALE);
	/* the same worker claims it again: attempt 2; the attempt-1 lease still matches nothing */
	claimed_job_free(j);
	j = tdb_claim(db, "w1", NULL);
	cr_assert_eq(j->attempt, 2);
	struct job_lease l2 = JOB_LEASE(j, "w1");
	cr_assert_eq(job_log_leased(db, &l1, &row), -ESTALE);
	cr_assert_eq(job_progress(db, &l1, "writing", 50, NULL, 0, 0, &cancel), -ESTALE);
	cr_assert_eq(job_finish_done(db, &l1, 0, NULL, NULL), -ESTALE);
	cr_assert_eq(job_log_leased(db, &l2, &row), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE category = 'progress'"), 2);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_job_logs WHERE category = 'progress' AND attempt = 2"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE resume_state = '{\"v\":1}'"), 1);
	cr_assert_eq(job_finish_done(db, &l2, 0, NULL, NULL), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), 1);
	claimed_job_free(j);
}

/* Rows a hostile clerk edited in the database: image paths outside content.images (absolute,
 * "..", a symlink beneath it) and a library rel_path leaving content.root. Every job fails
 * permanently after one attempt, and not a byte of the other file reaches any stick. */
Test(worker, rows_that_leave_the_roots_put_nothing_on_a_stick)
{
	char *outside = tu_tmpdir("w-outside");
	char *secret = tu_path(outside, "secret.img");
	size_t len = 1 << 20;
	char *buf = malloc(len);
	tu_fill_pattern(buf, len, 4242);
	tu_write_file(secret, buf, len);
	char needle[4096];
	memcpy(needle, buf + 8192, sizeof(needle));
	free(buf);
	char *img = make_image("ok.img", 1, 5);
	char *link = tu_path(dir, "link.img");
	cr_assert_eq(symlink(secret, link), 0);
	char *root = tu_path(dir, "content");
	mkdir(root, 0755);
	put_file(root, "Salsa/Uno.mp3", len, 6);
	struct content_scan_stats st;
	cr_assert_eq(content_scan(db, root, NULL, NULL, NULL, &st), 0);

	char *up = NULL, *q = NULL;
	cr_assert(asprintf(&up, "../%s/secret.img", strrchr(outside, '/') + 1) > 0);
	const char *paths[] = { secret, up, link };
	for (int i = 0; i < 3; i++) {
		char num[8];
		snprintf(num, sizeof(num), "E-%d", i);
		add_confirm(num, 1, img, 64 << 20);
		cr_assert_eq(db_exec(db, NULL, "UPDATE orders SET image_path = ? WHERE order_number = ?",
				     DB_STR(paths[i]), DB_STR(num), DB_END),
			     0);
	}
	add_content_order("E-3", "{\"categories\": [\"Salsa\"], \"items\": []}", 64 << 20);
	cr_assert(asprintf(&q, "../../%s/secret.img", strrchr(outside, '/') + 1) > 0);
	cr_assert_eq(db_exec(db, NULL, "UPDATE content_items SET rel_path = ?", DB_STR(q), DB_END), 0);
	free(q);

	char *sticks[5];
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "e%d.img", i);
		sticks[i] = make_stick(name, 64 << 20);
	}
	sticks[4] = NULL;
	char *extra = NULL;
	cr_assert(asprintf(&extra, "content = { root = \"%s\"; images = \"%s\"; };", root, dir) > 0);
	char *cfg = config((const char *const *)sticks, extra);
	pid_t pid = spawn_daemon(cfg, true);
	cr_assert_eq(wait_exit(pid, 120), 0);

	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 4);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
			       " WHERE o.order_number LIKE 'E-_' AND o.order_number <> 'E-3' AND j.status = 'failed'"
			       " AND j.error_code = 'ORDER_INVALID' AND j.attempts = 1"),
		     3);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
				   " WHERE o.order_number = 'E-3' AND j.status = 'failed'"
				   " AND j.error_code = 'CONTENT_CHANGED' AND j.attempts = 1"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE fail_reason LIKE '%outside%'"
				   " OR fail_reason LIKE '%symbolic link%'"),
		     4, "each reason names the escape");
	for (int i = 0; i < 4; i++) {
		cr_assert_not(tu_file_holds(sticks[i], needle, sizeof(needle)), "%s holds bytes of the secret",
			      sticks[i]);
		free(sticks[i]);
	}
	free(extra), free(cfg), free(up), free(root), free(link), free(img), free(secret);
	tu_rmrf(outside);
	free(outside);
}

/* ---- slots that are safe whatever they are ------------------------------------------------------ */

/* A config whose writes take about 2 s per 8 MiB (so that a test can act mid-write), no probe. */
#define SLOW_WRITE "write = { max_rate = \"4MiB\"; probe = false; };"

/* An immutable slot file (chattr +i: EPERM at open) is a read-only stick: the job goes back to
 * the queue without spending an attempt, the slot is bad with that reason, no event is written
 * (before: WRITE_IO retried 4 times, the order failed with a refund). */
Test(worker, immutable_slot_is_a_read_only_stick_released_unspent)
{
	char *stick = make_stick("imm.img", 64 << 20);
	/* ext4 and tmpfs (Linux >= 6.0) both keep the flag: a skip would hide the finding */
	cr_assert_eq(tu_set_immutable(stick, true), 0, "chattr +i failed");
	immutable = strdup(stick);
	char *img = make_image("img.raw", 4, 21);
	const char *slots[] = { stick, NULL };
	char *cfg = config(slots, NULL);
	add_confirm("IMM-1", 1, img, 64 << 20);
	pid_t pid = spawn_daemon(cfg, true);
	cr_assert_eq(wait_exit(pid, 60), 0);

	char q[1024];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued' AND attempts = 0"
		 " AND error_code = 'DEVICE_READ_ONLY' AND slot IS NULL"
		 " AND fail_reason = 'read-only: cannot open %s for writing: Operation not permitted'",
		 stick);
	cr_assert_eq(tdb_count(db, q), 1);
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM devices WHERE slot = 'S0' AND state = 'bad'"
		 " AND state_reason = 'read-only: cannot open %s for writing: Operation not permitted; replace it'",
		 stick);
	cr_assert_eq(tdb_count(db, q), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'error'"
				   " AND error_code = 'DEVICE_READ_ONLY' AND category = 'device' AND attempt = 1"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'error'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 0);
	cr_assert_eq(tu_set_immutable(stick, false), 0);
	free(stick);
	free(img);
	free(cfg);
}

/* The same when the slot turns immutable while it is written (EPERM from pwrite). */
Test(worker, slot_turning_read_only_mid_write_is_released_unspent)
{
	char *stick = make_stick("imm2.img", 64 << 20);
	/* ext4 and tmpfs (Linux >= 6.0) both keep the flag: a skip would hide the finding */
	cr_assert_eq(tu_set_immutable(stick, true), 0, "chattr +i failed");
	cr_assert_eq(tu_set_immutable(stick, false), 0);
	char *img = make_image("img.raw", 16, 22);
	const char *slots[] = { stick, NULL };
	char *cfg = config(slots, SLOW_WRITE);
	add_confirm("IMM-2", 1, img, 64 << 20);
	pid_t pid = spawn_daemon(cfg, true);
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_job_logs WHERE message = 'writing started'", 1, 60), 1);
	immutable = strdup(stick);
	cr_assert_eq(tu_set_immutable(stick, true), 0);
	cr_assert_eq(wait_exit(pid, 60), 0);

	char q[1024];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued' AND attempts = 0"
		 " AND error_code = 'DEVICE_READ_ONLY' AND fail_reason LIKE 'read-only: %s refused the write at offset %%:"
		 " Operation not permitted'",
		 stick);
	cr_assert_eq(tdb_count(db, q), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM devices WHERE slot = 'S0' AND state = 'bad'"
				   " AND state_reason LIKE 'read-only: %; replace it'"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'error'"
				   " AND error_code <> 'DEVICE_READ_ONLY'"),
		     0);
	/* one error row for the failure, written by the worker: the writing stage's facts (the
	 * offset and errno of the refused write) and where it happened (slot, device, bad_offset) */
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'error' AND category = 'device'"
		 " AND stage = 'writing' AND JSON_VALUE(details, '$.errno') = %d AND JSON_VALUE(details, '$.slot') = 'S0'"
		 " AND JSON_VALUE(details, '$.device') = '%s'"
		 " AND JSON_VALUE(details, '$.offset') = JSON_VALUE(details, '$.bad_offset')",
		 EPERM, stick);
	cr_assert_eq(tdb_count(db, q), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'error'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'job done'"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 1);
	cr_assert_eq(started_attempts(), 1, "job.started of each attempt that reached writing");
	free(stick);
	free(img);
	free(cfg);
}

/* The slot file is deleted while it is written: the attempt ends DEVICE_GONE (retryable, one
 * attempt spent), not done and verified into an unlinked inode. */
Test(worker, slot_file_unlinked_mid_write_is_device_gone)
{
	char *stick = make_stick("gone.img", 64 << 20);
	char *img = make_image("img.raw", 16, 23);
	const char *slots[] = { stick, NULL };
	char *cfg = config(slots, SLOW_WRITE);
	add_confirm("GONE-1", 1, img, 64 << 20);
	pid_t pid = spawn_daemon(cfg, true);
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_job_logs WHERE message = 'writing started'", 1, 60), 1);
	cr_assert_eq(unlink(stick), 0);
	/* the slot's path is gone: nothing left to take the retry, --once ends */
	cr_assert_eq(wait_exit(pid, 60), 0);

	char q[1024];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_jobs WHERE status = 'retry' AND attempts = 1"
		 " AND error_code = 'DEVICE_GONE' AND fail_reason LIKE '%s was deleted during the %%'",
		 stick);
	cr_assert_eq(tdb_count(db, q), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'job done'"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE stage = 'verification'"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 1);
	cr_assert_eq(started_attempts(), 1, "job.started of each attempt that reached writing");
	free(stick);
	free(img);
	free(cfg);
}

/* A static slot whose file backs a loop device is unsafe, naming the loop device: never claimed
 * (before: listed eligible and the loop device's file system overwritten). */
Test(worker, slot_file_backing_a_loop_device_is_never_written)
{
	if (!tul_can_loop())
		cr_skip_test("needs root and /dev/loop-control");
	char *stick = make_stick("backing.img", 64 << 20);
	tul_attach(stick, false, &loopdev);
	char *img = make_image("img.raw", 4, 24);
	const char *slots[] = { stick, NULL };
	char *cfg = config(slots, NULL);
	add_confirm("LOOP-1", 1, img, 64 << 20);
	pid_t pid = spawn_daemon(cfg, true);
	cr_assert_eq(wait_exit(pid, 60), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued' AND attempts = 0"
				   " AND started_at IS NULL"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs"), 0);
	char q[1024];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM devices WHERE slot = 'S0' AND state = 'unsafe'"
		 " AND state_reason = 'backs loop device %s (not mounted)'",
		 loopdev.path);
	cr_assert_eq(tdb_count(db, q), 1);
	/* not a byte written */
	uint8_t *b = malloc(1 << 20);
	int fd = open(stick, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0 && b);
	cr_assert_eq(pread(fd, b, 1 << 20, 0), 1 << 20);
	close(fd);
	for (size_t i = 0; i < (1 << 20); i++)
		cr_assert_eq(b[i], 0, "byte %zu written", i);
	free(b);
	tul_detach(&loopdev);
	free(stick);
	free(img);
	free(cfg);
}

/* A block-device slot that another process holds open exclusively (the kernel says EBUSY at
 * the daemon's O_EXCL open): "in use", the job handed back without spending an attempt, the
 * slot not marked bad; once the holder lets go, the same job is written on its first attempt
 * (before: DEVICE_UNSAFE, the slot bad "until the stick is replaced"). */
Test(worker, slot_held_exclusively_elsewhere_is_in_use_not_bad)
{
	if (!tul_can_loop())
		cr_skip_test("needs root and /dev/loop-control");
	char *backing = make_stick("excl.img", 64 << 20);
	tul_attach(backing, false, &loopdev);
	int holder = open(loopdev.path, O_RDONLY | O_EXCL | O_CLOEXEC);
	cr_assert(holder >= 0, "open %s O_EXCL: %s", loopdev.path, strerror(errno));
	char *img = make_image("img.raw", 4, 25);
	const char *slots[] = { loopdev.path, NULL };
	char *cfg = config(slots, "write = { probe = false; };");
	add_confirm("EXCL-1", 1, img, 64 << 20);
	pid_t pid = spawn_daemon(cfg, true);
	char q[1024];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) > 0 FROM processing_job_logs WHERE level = 'warn' AND category = 'device'"
		 " AND message = 'slot S0: %s is in use (opened exclusively by another process, or mounted);"
		 " job handed back, attempt not spent'",
		 loopdev.path);
	cr_assert_eq(wait_for(q, 1, 60), 1);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_jobs WHERE status IN ('retry', 'queued', 'processing')"
			       " AND attempts <= 1"),
		     1);
	close(holder);
	cr_assert_eq(wait_exit(pid, 60), 0);

	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND attempts = 1"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE attempt <> 1"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'error'"), 0);
	/* every claim but the last was handed back as "in use" */
	long long claims =
		tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message LIKE 'attempt 1/4 on slot S0 %'");
	long long in_use =
		tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message LIKE 'slot S0: % is in use %'");
	cr_assert_geq(in_use, 1);
	cr_assert_eq(claims, in_use + 1, "%lld claims, %lld handed back", claims, in_use);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 3);
	cr_assert_eq(started_attempts(), 1, "job.started of each attempt that reached writing");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM devices WHERE slot = 'S0' AND state = 'ready'"), 1);
	assert_same_bytes(img, loopdev.path, 4 << 20);
	tul_detach(&loopdev);
	free(backing);
	free(img);
	free(cfg);
}

/* Two daemons with the same regular-file slot: the writer holds it under flock, so exactly one
 * writes at a time; the other neither writes nor marks the slot bad nor spends an attempt
 * (before: both wrote at once, one reported a fake stick and marked the slot bad). */
Test(worker, two_daemons_with_the_same_file_slot_never_write_it_at_once)
{
	char *stick = make_stick("shared.img", 64 << 20);
	char *img = make_image("img.raw", 8, 26);
	const char *slots[] = { stick, NULL };
	char *cfg = config(slots, "write = { max_rate = \"4MiB\"; };");
	add_confirm("TWO-1", 2, img, 64 << 20);
	char *errb = tu_path(dir, "b.stderr");
	pid_t a = spawn_daemon(cfg, true);
	cr_assert_eq(wait_for("SELECT COUNT(*) FROM processing_job_logs WHERE message = 'writing started'", 1, 60), 1);
	pid_t b = spawn_daemon_logged(cfg, true, errb);
	cr_assert_eq(wait_exit(b, 120), 0);
	cr_assert_eq(wait_exit(a, 120), 0);

	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND attempts = 1"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE level = 'error'"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE attempt <> 1"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'job done'"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 5);
	cr_assert_eq(started_attempts(), 11, "job.started of each attempt that reached writing");
	/* never two writers at once: from a job's first row on its stick to its end, no other job's */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM"
				   " (SELECT job_id, MAX(IF(message = 'validation started', created_at, NULL)) s,"
				   "         MAX(IF(message = 'job done', created_at, NULL)) e"
				   "    FROM processing_job_logs GROUP BY job_id) x"
				   " JOIN (SELECT job_id, MAX(IF(message = 'validation started', created_at, NULL)) s,"
				   "         MAX(IF(message = 'job done', created_at, NULL)) e"
				   "    FROM processing_job_logs GROUP BY job_id) y"
				   " ON x.job_id < y.job_id AND x.s < y.e AND y.s < x.e"),
		     0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM devices WHERE state = 'bad'"), 0);
	cr_assert_eq(count_lines(errb, "refused"), 0);
	assert_same_bytes(img, stick, 8 << 20);
	free(errb);
	free(stick);
	free(img);
	free(cfg);
}

/* Least privilege (issue 11): the daemon's account cannot change the schema. A daemon that finds
 * the schema older than itself says once what to do and starts as soon as `db migrate` has run
 * as the admin account (before, it logged an empty "migration failed: " every second). */
Test(worker, schema_behind_waits_for_db_migrate_by_the_admin)
{
	char *img = make_image("behind.img", 1, 95);
	char *s0 = make_stick("s0.img", 64 << 20);
	const char *slots[] = { s0, NULL };
	char *cfg = config(slots, "write = { probe = false; };");
	add_confirm("BEHIND", 1, img, 64 << 20);
	cr_assert_eq(db_exec(db, NULL, "DELETE FROM schema_migrations WHERE version = ?", DB_I64(db_schema_latest()),
			     DB_END),
		     0);
	char *errp = tu_path(dir, "behind.err");
	pid_t pid = spawn_daemon_logged(cfg, true, errp);
	const char *said = "may not change it (INDEX command denied to user 'usbforge'@'localhost' for table "
			   "`uf_t_worker`.`processing_jobs`): run 'usbforge db migrate' as the admin account "
			   "(database.admin); waiting";
	cr_assert_eq(wait_line(errp, said, 1, 30), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued'"), 1);
	struct db *adm = tdb_connect_admin(DBNAME);
	int applied = -1;
	cr_assert_eq(db_migrate(adm, &applied), 0, "%s", db_error(adm));
	cr_assert_eq(applied, 1);
	db_close(adm);
	cr_assert_eq(wait_exit(pid, 60), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done'"), 1);
	cr_assert_eq(count_lines(errp, said), 1, "said once");
	cr_assert_eq(count_lines(errp, "the database schema is current: at work"), 1);
	cr_assert_eq(count_lines(errp, "migration failed"), 0);
	assert_clean_stderr(errp);
	free(errp);
	free(cfg);
	free(img);
	free(s0);
}

/* CPU seconds (user + system) the process has used so far, from /proc/PID/stat. */
static double cpu_seconds(pid_t pid)
{
	char p[64], buf[1024];
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(p, "re");
	cr_assert(f, "%s", p);
	cr_assert(fgets(buf, sizeof(buf), f));
	fclose(f);
	const char *c = strrchr(buf, ')'); /* the command name may hold spaces */
	cr_assert(c);
	unsigned long long ut = 0, stime = 0;
	/* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
	cr_assert_eq(sscanf(c + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stime), 2);
	return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* A daemon with nothing to do sleeps until its next poll, heartbeat or stuck check: it must
 * not spin. (A slot-rest change once made the main loop wake at once while the database was
 * up: a whole core, and runners starved of it.) Measured over two idle seconds once the
 * daemon is at work; a spinning loop burns far more than the bound even on a shared machine. */
Test(worker, an_idle_daemon_does_not_spin)
{
	char *s0 = make_stick("idle.img", 64 << 20);
	const char *slots[] = { s0, NULL };
	char *cfg = config(slots, NULL);
	char *errp = tu_path(dir, "idle.err");
	pid_t pid = spawn_daemon_logged(cfg, false, errp);
	cr_assert_eq(wait_line(errp, "ready", 1, 30), 1);
	/* the window: until the daemon's own heartbeat (every 0.2 s here) is 2 s past its value now */
	double c0 = cpu_seconds(pid), t0 = mono();
	long long h0 = tdb_count(db, "SELECT CAST(MAX(UNIX_TIMESTAMP(heartbeat_at)) * 1000 AS SIGNED) FROM workers"
				     " WHERE stopped_at IS NULL");
	char *q = NULL;
	cr_assert(asprintf(&q,
			   "SELECT COUNT(*) FROM workers WHERE stopped_at IS NULL"
			   " AND UNIX_TIMESTAMP(heartbeat_at) * 1000 >= %lld + 2000",
			   h0) > 0);
	cr_assert_eq(wait_for(q, 1, 30), 1);
	free(q);
	double used = cpu_seconds(pid) - c0, wall = mono() - t0;
	kill(pid, SIGTERM);
	cr_assert_eq(wait_exit(pid, 60), 0);
	cr_assert_lt(used, 0.25 * wall, "an idle usbforged used %.2f s of CPU in %.2f s", used, wall);
	free(errp), free(cfg), free(s0);
}

/* One line of the fields of job id's job.started payloads (claim order), numbers as JSON prints
 * them, with the estimate's seconds left out (the first job's measured speeds make them). */
static char *started_line(int64_t id)
{
	char q[1024];
	snprintf(q, sizeof(q),
		 "SELECT GROUP_CONCAT(CONCAT_WS(' ', JSON_VALUE(payload, '$.order_number'),"
		 " JSON_VALUE(payload, '$.unit_index'), JSON_VALUE(payload, '$.attempt'), JSON_VALUE(payload, '$.slot'),"
		 " JSON_EXTRACT(payload, '$.device_serial'), JSON_VALUE(payload, '$.device_capacity_bytes'),"
		 " JSON_VALUE(payload, '$.capacity_bytes'), JSON_VALUE(payload, '$.bytes_to_write'),"
		 " JSON_EXTRACT(payload, '$.verify'), JSON_EXTRACT(payload, '$.estimate_source'),"
		 " JSON_EXTRACT(payload, '$.estimate_reason'), JSON_EXTRACT(payload, '$.estimate_jobs'))"
		 " ORDER BY id SEPARATOR ' | ')"
		 " FROM events WHERE event_type = 'job.started' AND aggregate_type = 'job' AND aggregate_id = %lld",
		 (long long)id);
	_cleanup_result_ struct db_res *res = NULL;
	db_row row;
	cr_assert_eq(db_query_row(db, &res, &row, q, DB_END), 0, "%s", db_error(db));
	return strdup(row[0] ? row[0] : "(none)");
}

static int64_t job_of(const char *number)
{
	char q[256];
	snprintf(q, sizeof(q),
		 "SELECT j.id FROM processing_jobs j JOIN orders o ON o.id = j.order_id WHERE o.order_number = '%s'",
		 number);
	return (int64_t)tdb_count(db, q);
}

/* The customer's events from a daemon: job.started as the unit's writing begins (no estimate on
 * an empty kiosk, with the reason; the next unit of the capacity is estimated from the first
 * one's measured speeds), then job.done with the speeds and order.done, in that order, each
 * once; a unit that fails validation has no job.started. */
Test(worker, started_with_an_estimate_then_done_with_speeds)
{
	char *img = make_image("img.raw", 8, 11);
	char *bad = make_image("bad.raw", 8, 12);
	char *s0 = make_stick("s0.img", 64 << 20);
	const char *slots[] = { s0, NULL };
	char *cfg = config(slots, NULL);
	add_confirm("ST-1", 1, img, 64 << 20);
	cr_assert_eq(wait_exit(spawn_daemon(cfg, true), 120), 0);
	int64_t j1 = job_of("ST-1");
	char *got = started_line(j1);
	cr_assert_str_eq(got, "ST-1 0 1 S0 null 67108864 67108864 8388608 true null \"no measurement yet\" 0");
	free(got);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.started'"
				   " AND JSON_TYPE(JSON_EXTRACT(payload, '$.estimate_seconds')) = 'NULL'"),
		     1);
	/* started, done, order done: in that order, each once */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events"), 3);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM (SELECT GROUP_CONCAT(event_type ORDER BY id) AS t FROM events) x"
			       " WHERE t = 'job.started,job.done,order.done'"),
		     1);
	/* job.done: the attempt's duration and its measured speeds, kept on the row too */
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM events e JOIN processing_jobs j ON j.id = e.aggregate_id"
			       " WHERE e.event_type = 'job.done' AND JSON_VALUE(payload, '$.write_bytes_per_s') > 0"
			       " AND JSON_VALUE(payload, '$.verify_bytes_per_s') > 0"
			       " AND JSON_VALUE(payload, '$.attempt_seconds') > 0"
			       " AND JSON_VALUE(payload, '$.duration_seconds') >= JSON_VALUE(payload, '$.attempt_seconds') - 1"
			       " AND JSON_VALUE(payload, '$.write_bytes_per_s') = j.write_bytes_per_s"
			       " AND JSON_VALUE(payload, '$.verify_bytes_per_s') = j.verify_bytes_per_s"),
		     1);
	/* the move to writing went with its row, in one transaction: one 'writing started' row */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message = 'writing started'"), 1);

	/* the next order of that capacity is estimated from the first job's speeds; an order whose
	 * image changed after it was confirmed fails validation and never starts writing */
	add_confirm("ST-2", 1, img, 64 << 20);
	add_confirm("ST-3", 1, bad, 64 << 20);
	char *chg = tu_path(dir, "bad.raw");
	cr_assert_eq(truncate(chg, 4 << 20), 0);
	free(chg);
	cr_assert_eq(wait_exit(spawn_daemon(cfg, true), 120), 0);
	int64_t j2 = job_of("ST-2"), j3 = job_of("ST-3");
	got = started_line(j2);
	cr_assert_str_eq(got, "ST-2 0 1 S0 null 67108864 67108864 8388608 true \"recent_average\" null 1");
	free(got);
	char q[1024];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM events e, processing_jobs j1 WHERE j1.id = %lld AND e.aggregate_id = %lld"
		 " AND e.event_type = 'job.started'"
		 " AND JSON_VALUE(e.payload, '$.estimate_write_bytes_per_s') = j1.write_bytes_per_s"
		 " AND JSON_VALUE(e.payload, '$.estimate_verify_bytes_per_s') = j1.verify_bytes_per_s"
		 " AND ABS(JSON_VALUE(e.payload, '$.estimate_seconds')"
		 "  - (8388608 / j1.write_bytes_per_s + 8388608 / j1.verify_bytes_per_s)) < 1e-6"
		 " AND JSON_VALUE(e.payload, '$.estimate_seconds') > 0",
		 (long long)j1, (long long)j2);
	cr_assert_eq(tdb_count(db, q), 1);
	got = started_line(j3);
	cr_assert_str_eq(got, "(none)");
	free(got);
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_jobs WHERE id = %lld AND status = 'failed'"
		 " AND error_code = 'CONTENT_CHANGED'",
		 (long long)j3);
	cr_assert_eq(tdb_count(db, q), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.started'"), 2);
	free(img);
	free(bad);
	free(s0);
	free(cfg);
}

/* The statements the cost test's account sent, from the server's general log (on for the run,
 * in a table; root reads it): queries and prepared executions, not the statements the
 * history's triggers run inside them (job_status_counts is written by those alone), nor the
 * claim's rank among the live daemons, read at most every 2 s whatever the jobs (db/jobs.c: a
 * cost of time, not of a job, which a loaded machine stretching the run would add). */
static long long cost_statements(const char *user)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "CREATE OR REPLACE TABLE " DBNAME ".t_cost AS SELECT COUNT(*) AS stmts FROM mysql.general_log"
		 " WHERE user_host LIKE '%s[%%' AND command_type IN ('Query', 'Execute')"
		 " AND argument NOT LIKE 'INSERT INTO job_status_counts%%'"
		 " AND argument NOT LIKE 'SELECT COUNT(*) FROM workers WHERE id < %%'",
		 user);
	tdb_root_exec(sql);
	return tdb_count(db, "SELECT stmts FROM t_cost");
}

/* One --once run of a daemon of one static slot (probe off, verification on, every periodic
 * duty far apart) on an order of qty units of a 64 KiB image: the statements it cost. */
static long long cost_run(const char *user, const char *cfg, const char *number, int qty, const char *image)
{
	add_confirm(number, qty, image, 64 << 20);
	tdb_root_exec("SET GLOBAL log_output = 'TABLE'");
	tdb_root_exec("SET GLOBAL general_log = 0");
	tdb_root_exec("TRUNCATE TABLE mysql.general_log");
	tdb_root_exec("SET GLOBAL general_log = 1");
	char *errp = tu_path(dir, "cost.err");
	pid_t pid = spawn_daemon_logged(cfg, true, errp);
	cr_assert_eq(wait_exit(pid, 60), 0);
	assert_clean_stderr(errp);
	free(errp);
	char q[256];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
		 " WHERE o.order_number = '%s' AND j.status = 'done' AND j.attempts = 1",
		 number);
	cr_assert_eq(tdb_count(db, q), qty);
	tdb_root_exec("SET GLOBAL general_log = 0");
	return cost_statements(user);
}

/* Issue 15: the database cost of a job. A happy-path job of milliseconds writes exactly the rows
 * it always did (its log rows are batched: those up to the writing stage's start with its
 * transition, the rest with its end, each batch one insert) and costs at most 15 statements:
 * its claim (5: begin, pick, take, read, commit), its end with the writing stage's start and
 * every row (9: begin, lock, estimate, job.started, the job row, the log rows, the order row,
 * job.done with order.done when it is the last unit, commit), the slot's devices row (1); the
 * first claim of an order moves the order (1 more). Counted from the server's general log (the
 * statements the daemon sent; the history's triggers run theirs inside them), as the difference
 * between an order of 6 units and one of 1 (the daemon's start and end cost the same). */
Test(worker, a_happy_job_writes_its_exact_rows_in_at_most_15_statements)
{
	const char *user = "uf_t_worker_cost";
	tdb_user(db, user, "pw-cost", DBNAME);
	char *img = tu_path(dir, "cost.img");
	char *buf = malloc(64 << 10);
	cr_assert(buf);
	tu_fill_pattern(buf, 64 << 10, 77);
	tu_write_file(img, buf, 64 << 10);
	free(buf);
	/* the stick on a tmpfs when there is one: the count assumes jobs of milliseconds (a start
	 * written with its end), which a disk's fsync on a loaded machine could stretch past the
	 * runner's quarter of a second */
	snprintf(shm, sizeof(shm), "/dev/shm/uf-cost-XXXXXX");
	bool on_shm = mkdtemp(shm) != NULL;
	if (!on_shm)
		shm[0] = '\0';
	char *s0 = NULL;
	if (on_shm) {
		s0 = tu_path(shm, "cost0.img");
		int fd = open(s0, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		cr_assert_geq(fd, 0, "%s: %s", s0, strerror(errno));
		cr_assert_eq(ftruncate(fd, 64 << 20), 0);
		close(fd);
	} else {
		s0 = make_stick("cost0.img", 64 << 20);
	}
	char *text = NULL;
	cr_assert(asprintf(&text,
			   "worker = { poll_interval = 30; max_concurrent = 1; heartbeat_interval = 600; };\n"
			   "stuck = { processing_timeout = 3600; queued_timeout = 86400; check_interval = 3600; };\n"
			   "usb = { mode = \"static\"; slots = ( { name = \"S0\"; path = \"%s\"; } ); };\n"
			   "write = { probe = false; verify = true; };\n"
			   "content = { images = \"%s\"; };\n",
			   s0, dir) > 0);
	char *cfg = tdb_write_config_as(dir, "cost.conf", DBNAME, user, "pw-cost", text);
	free(text);

	long long one = cost_run(user, cfg, "COST-1", 1, img);
	long long six = cost_run(user, cfg, "COST-6", 6, img);
	cr_log_info("statements: %lld for 1 job, %lld for 6 jobs: %.1f per job", one, six, (double)(six - one) / 5);
	cr_assert_leq(six - one, 5 * 15, "%lld statements for 5 more jobs (at most 15 each)", six - one);

	/* the rows of the order's second unit, exactly */
	long long id = tdb_count(db, "SELECT j.id FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
				     " WHERE o.order_number = 'COST-6' AND j.unit_index = 1");
	char *attempt_line = NULL, *image_line = NULL;
	cr_assert(asprintf(&attempt_line, "attempt 1/4 on slot S0 (%s)", s0) > 0);
	cr_assert(asprintf(&image_line, "image %s: 64.0 KiB to write", img) > 0);
	const struct {
		const char *level, *stage, *category, *message,
			*details; /* details: exact, "*" any object, NULL none */
	} want[] = {
		{ "info", "pending", "system", attempt_line, NULL },
		{ "info", "validation", "stage", "validation started", NULL },
		{ "info", "validation", "progress", "validation 30%", "*" },
		{ "info", "validation", "stage", "validation done", "*" },
		{ "info", "selection", "stage", "selection started", NULL },
		{ "info", "selection", "stage", image_line, NULL },
		{ "info", "selection", "stage", "selection done", "*" },
		{ "info", "writing", "stage", "writing started", NULL },
		{ "info", "writing", "device", "wrote 64.0 KiB", "{\"bytes_written\":65536,\"bytes_reused\":0}" },
		{ "info", "writing", "stage", "writing done", "*" },
		{ "info", "verification", "stage", "verification started", NULL },
		{ "info", "verification", "device", "verified", "{\"bytes_read\":65536}" },
		{ "info", "verification", "stage", "verification done", "*" },
		{ "info", "done", "stage", "job done", NULL },
	};
	struct job_log_entry *rows = NULL;
	size_t n = 0;
	cr_assert_eq(job_log_list(db, id, 0, &rows, &n), 0);
	cr_assert_eq(n, ARRAY_SIZE(want), "%zu rows", n);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(rows[i].attempt, 1);
		cr_assert_str_eq(rows[i].level, want[i].level, "row %zu", i);
		cr_assert_str_eq(rows[i].stage, want[i].stage, "row %zu", i);
		cr_assert_str_eq(rows[i].category, want[i].category, "row %zu", i);
		cr_assert_str_eq(rows[i].message, want[i].message, "row %zu", i);
		cr_assert_null(rows[i].error_code, "row %zu", i);
		if (!want[i].details)
			cr_assert_null(rows[i].details, "row %zu: %s", i, rows[i].details);
		else if (strcmp(want[i].details, "*") == 0)
			cr_assert(rows[i].details && rows[i].details[0] == '{', "row %zu", i);
		else
			cr_assert_str_eq(rows[i].details, want[i].details, "row %zu", i);
		if (i) /* each keeps the time it happened, in order */
			cr_assert_geq(strcmp(rows[i].created_at, rows[i - 1].created_at), 0, "row %zu", i);
	}
	job_log_list_free(rows, n);
	/* the stage rows' details as the stages gave them */
	char q[256];
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM processing_job_logs WHERE job_id = %lld AND ((message = 'writing done'"
		 " AND JSON_VALUE(details, '$.bytes') = 65536) OR (message = 'validation 30%%'"
		 " AND JSON_VALUE(details, '$.done') = 1 AND JSON_VALUE(details, '$.total') = 3))",
		 id);
	cr_assert_eq(tdb_count(db, q), 2);
	snprintf(q, sizeof(q),
		 "SELECT COUNT(*) FROM events WHERE aggregate_type = 'job' AND aggregate_id = %lld"
		 " AND event_type IN ('job.started', 'job.done')",
		 id);
	cr_assert_eq(tdb_count(db, q), 2, "job.started and job.done once each");
	tdb_root_exec("DROP USER IF EXISTS 'uf_t_worker_cost'@'localhost'");
	free(attempt_line);
	free(image_line);
	free(cfg);
	free(s0);
	free(img);
}
