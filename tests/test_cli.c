/* The usbforge CLI as a person or a script uses it: exit codes (0, 1, 2, 3), messages that name
 * the argument or the file and line, --json documents with DESIGN.md's keys, idempotent
 * confirm, cancel/retry through the command line. Runs the real binary against MariaDB. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/jobs.h"
#include "db/orders.h"
#include "db/schema.h"
#include "helpers/testdb.h"
#include "helpers/clirun.h"
#include "helpers/testutil.h"

#define DBNAME "uf_t_cli"
extern char **environ;
static struct db *db;
static char *dir, *cfg;

static void setup(void)
{
	db = tdb_fresh(DBNAME);
	dir = tu_tmpdir("cli");
	cfg = tdb_write_config(dir, DBNAME,
			       "usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"/nonexistent/a.img\"; } ); };\n"
			       "content = { root = \"content\"; images = \".\"; };"); /* relative to the config */
}
static void teardown(void)
{
	db = db_close(db);
	tu_rmrf(dir);
	free(dir);
	free(cfg);
}
TestSuite(cli, .init = setup, .fini = teardown);

#define RUN(...) tu_run_cli(dir, (const char *const[]){ __VA_ARGS__, NULL })

Test(cli, orders_end_to_end_with_exit_codes)
{
	char *img = tu_path(dir, "x.img");
	char buf[8192];
	tu_fill_pattern(buf, sizeof(buf), 9);
	tu_write_file(img, buf, sizeof(buf));

	struct tu_run r =
		RUN("--config", cfg, "order", "add", "N-1", "--capacity", "16GB", "--quantity", "2", "--image", img);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "order", "add", "N-1", "--capacity", "16GB", "--image", img);
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "order 'N-1' already exists"), "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "order", "add", "N-2", "--capacity", "16 GB", "--image", img);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--capacity: '16 GB' is not a size"), "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "order", "add", "N-3", "--capacity", "1G", "--image", "/nonexistent.img");
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "ORDER_INVALID: image '/nonexistent.img'"), "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "order", "add", "N-4", "--capacity", "1G", "--image", img, "--category", "Salsa");
	cr_assert_eq(r.status, 2, "image and category together");
	tu_run_done(&r);

	r = RUN("--config", cfg, "--json", "order", "confirm", "N-1");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j1 = json_loads(r.out, 0, NULL);
	cr_assert(j1, "not JSON: %s", r.out);
	cr_assert_str_eq(json_string_value(json_object_get(j1, "order_number")), "N-1");
	cr_assert_eq(json_array_size(json_object_get(j1, "jobs")), 2);
	tu_run_done(&r);
	r = RUN("--config", cfg, "--json", "order", "confirm", "N-1");
	json_t *j2 = json_loads(r.out, 0, NULL);
	cr_assert(json_equal(j1, j2), "confirm twice prints the same document");
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 2);
	json_int_t id = json_integer_value(json_object_get(json_array_get(json_object_get(j1, "jobs"), 0), "id"));
	json_decref(j1);
	json_decref(j2);

	r = RUN("--config", cfg, "order", "confirm", "NOPE");
	cr_assert_eq(r.status, 3);
	cr_assert(strstr(r.err, "order 'NOPE' not found"), "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "job", "show", "999999");
	cr_assert_eq(r.status, 3);
	tu_run_done(&r);
	r = RUN("--config", cfg, "job", "show", "abc");
	cr_assert_eq(r.status, 2);
	tu_run_done(&r);

	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	r = RUN("--config", cfg, "--json", "job", "show", ids);
	cr_assert_eq(r.status, 0);
	json_t *js = json_loads(r.out, 0, NULL);
	cr_assert_str_eq(json_string_value(json_object_get(js, "status")), "queued");
	cr_assert(json_is_array(json_object_get(js, "items")));
	cr_assert(json_object_get(js, "cancel_requested_at") &&
		  json_is_null(json_object_get(js, "cancel_requested_at")));
	json_decref(js);
	tu_run_done(&r);

	r = RUN("--config", cfg, "job", "cancel", ids, "--by", "ana");
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "job", "cancel", ids);
	cr_assert_eq(r.status, 1, "a cancelled job cannot be cancelled again");
	tu_run_done(&r);
	r = RUN("--config", cfg, "job", "retry", ids);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued'"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action IN ('cancel', 'retry')"), 2);

	r = RUN("--config", cfg, "--json", "queue", "stats");
	cr_assert_eq(r.status, 0);
	json_t *qs = json_loads(r.out, 0, NULL);
	static const char *const keys[] = { "queued",
					    "processing",
					    "retry",
					    "done",
					    "failed",
					    "cancelled",
					    "stuck_processing",
					    "stuck_queued",
					    "avg_duration_seconds",
					    "oldest_unpublished_event_age_seconds" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_assert(json_object_get(qs, keys[i]), "queue stats lacks %s", keys[i]);
	cr_assert_eq(json_integer_value(json_object_get(qs, "queued")), 2);
	json_decref(qs);
	tu_run_done(&r);

	r = RUN("--config", cfg, "--json", "jobs", "--status", "queued");
	json_t *jl = json_loads(r.out, 0, NULL);
	cr_assert_eq(json_array_size(jl), 2);
	json_decref(jl);
	tu_run_done(&r);
	r = RUN("--config", cfg, "jobs", "--status", "weird");
	cr_assert_eq(r.status, 2);
	tu_run_done(&r);
	free(img);
}

static int count_char(const char *s, char c)
{
	int n = 0;
	for (; *s; s++)
		n += *s == c;
	return n;
}

/* events (paged past 1000), job logs (--json, --follow --json), job watch, stuck check. */
Test(cli, monitoring_commands)
{
	tdb_order_confirmed(db, "M-1", 2);
	struct claimed_job *a = tdb_claim(db, "w1", NULL);
	struct claimed_job *b = tdb_claim(db, "w1", NULL);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(job_log(db, a->id, 1, "info", "writing", "progress", "writing 10%", NULL, NULL), 0);
	struct job_log_row row = {
		.attempt = 1, .level = "info", .stage = "done", .category = "stage", .message = "job done"
	};
	cr_assert_eq(job_finish_done(db, &JOB_LEASE(a, "w1"), 0, NULL, &row), 0);
	char ida[32], idb[32];
	snprintf(ida, sizeof(ida), "%lld", (long long)a->id);
	snprintf(idb, sizeof(idb), "%lld", (long long)b->id);

	struct tu_run r = RUN("--config", cfg, "--json", "job", "logs", ida);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = json_loads(r.out, 0, NULL);
	cr_assert_eq(json_array_size(j), 4, "%s", r.out);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 3), "message")), "job done");
	json_decref(j);
	tu_run_done(&r);
	/* --follow on a job that has ended: every row, as JSON lines, then exit */
	r = RUN("--config", cfg, "--json", "job", "logs", ida, "--follow");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_eq(count_char(r.out, '\n'), 4, "%s", r.out);
	for (char *line = r.out, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
		*nl = 0;
		json_t *l = json_loads(line, 0, NULL);
		cr_assert(json_is_object(l), "not a JSON object: %s", line);
		json_decref(l);
	}
	tu_run_done(&r);
	r = RUN("--config", cfg, "job", "logs", ida);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(count_char(r.out, '\n'), 4, "%s", r.out);
	cr_assert(strstr(r.out, "job done"), "%s", r.out);
	tu_run_done(&r);
	r = RUN("--config", cfg, "job", "logs", "999999");
	cr_assert_eq(r.status, 3);
	tu_run_done(&r);

	/* job watch on a finished job, not a terminal: one plain line, exit 0 */
	r = RUN("--config", cfg, "job", "watch", ida);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_eq(count_char(r.out, '\n'), 1, "%s", r.out);
	cr_assert(strstr(r.out, " done ") && strstr(r.out, "100%"), "%s", r.out);
	cr_assert_null(strchr(r.out, '\r'), "no terminal control codes on a pipe");
	tu_run_done(&r);

	/* events: more than one page */
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload)"
			     " SELECT 'test', seq, 'test.event', '{}' FROM seq_1_to_2500",
			     DB_END),
		     0, "%s", db_error(db));
	long long total = tdb_count(db, "SELECT COUNT(*) FROM events");
	cr_assert_eq(total, 2500 + 1, "2500 + job.done (the order has a second unit: no order.done)");
	r = RUN("--config", cfg, "--json", "events");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = json_loads(r.out, 0, NULL);
	cr_assert_eq((long long)json_array_size(j), total);
	json_decref(j);
	tu_run_done(&r);
	long long mid = tdb_count(db, "SELECT id FROM events ORDER BY id LIMIT 1 OFFSET 99");
	char since[32];
	snprintf(since, sizeof(since), "%lld", mid);
	r = RUN("--config", cfg, "events", "--since", since);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_eq(count_char(r.out, '\n'), total - 100, "one line per event after --since");
	tu_run_done(&r);

	/* stuck check: b's worker stopped beating an hour ago */
	cr_assert_eq(db_exec(db, NULL,
			     "UPDATE processing_jobs SET created_at = NOW(6) - INTERVAL 2 HOUR,"
			     " started_at = NOW(6) - INTERVAL 90 MINUTE, heartbeat_at = NOW(6) - INTERVAL 1 HOUR WHERE id = ?",
			     DB_I64(b->id), DB_END),
		     0);
	r = RUN("--config", cfg, "--json", "stuck", "check");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = json_loads(r.out, 0, NULL);
	cr_assert_eq(json_integer_value(json_object_get(j, "retried")), 1, "%s", r.out);
	cr_assert_eq(json_integer_value(json_object_get(j, "failed")) +
			     json_integer_value(json_object_get(j, "cancelled")),
		     0);
	cr_assert_eq(json_array_size(json_object_get(j, "actions")), 1);
	json_decref(j);
	tu_run_done(&r);
	r = RUN("--config", cfg, "stuck", "check");
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "0 stuck job(s) sent to retry"), "the second run finds nothing: %s", r.out);
	tu_run_done(&r);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM processing_jobs WHERE status = 'retry' AND error_code = 'STUCK_TIMEOUT'"),
		1);
	claimed_job_free(a);
	claimed_job_free(b);
	(void)idb;
}

static void put(const char *root, const char *rel, const char *text)
{
	char *p = tu_path(root, rel);
	char *slash = strrchr(p, '/');
	*slash = 0;
	mkdir(p, 0755);
	*slash = '/';
	tu_write_file(p, text, strlen(text));
	free(p);
}

/* content scan / content list [--category C], and job show's items of a content order. */
Test(cli, content_commands_and_job_items)
{
	char *root = tu_path(dir, "content");
	cr_assert_eq(mkdir(root, 0755), 0);
	put(root, "Salsa/Uno.mp3", "uno");
	put(root, "Salsa/Dos.mp3", "dos!");
	put(root, "Reggaetón/Tres canción.mp3", "tres");
	struct tu_run r = RUN("--config", cfg, "--json", "content", "scan", root);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = json_loads(r.out, 0, NULL);
	cr_assert_eq(json_integer_value(json_object_get(j, "added")), 3, "%s", r.out);
	json_decref(j);
	tu_run_done(&r);
	r = RUN("--config", cfg, "--json", "content", "list");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = json_loads(r.out, 0, NULL);
	cr_assert_eq(json_array_size(j), 3, "%s", r.out);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "category")), "Reggaetón");
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "title")), "Tres canción");
	json_decref(j);
	tu_run_done(&r);
	r = RUN("--config", cfg, "--json", "content", "list", "--category", "Salsa");
	j = json_loads(r.out, 0, NULL);
	cr_assert_eq(json_array_size(j), 2, "%s", r.out);
	json_decref(j);
	tu_run_done(&r);
	r = RUN("--config", cfg, "content", "list", "--category", "Cumbia");
	cr_assert_eq(r.status, 0, "an empty category is an empty list, not an error");
	tu_run_done(&r);

	r = RUN("--config", cfg, "order", "add", "C-1", "--capacity", "1G", "--category", "Salsa", "--category",
		"Reggaetón");
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "order", "add", "C-2", "--capacity", "1G", "--category", "Cumbia");
	cr_assert_eq(r.status, 1, "a category with no content is refused at order time");
	cr_assert(strstr(r.err, "Cumbia"), "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "--json", "order", "confirm", "C-1");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = json_loads(r.out, 0, NULL);
	json_int_t id = json_integer_value(json_object_get(json_array_get(json_object_get(j, "jobs"), 0), "id"));
	json_decref(j);
	tu_run_done(&r);
	/* what the selection stage records */
	cr_assert_eq(
		db_exec(db, NULL,
			"INSERT INTO processing_job_items (job_id, position, content_item_id, size_bytes, dest_path)"
			" SELECT ?, ROW_NUMBER() OVER (ORDER BY rel_path) - 1, id, size_bytes, rel_path FROM content_items",
			DB_I64(id), DB_END),
		0, "%s", db_error(db));
	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	r = RUN("--config", cfg, "--json", "job", "show", ids);
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = json_loads(r.out, 0, NULL);
	json_t *items = json_object_get(j, "items");
	cr_assert_eq(json_array_size(items), 3, "%s", r.out);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 0), "dest_path")),
			 "Reggaetón/Tres canción.mp3");
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(items, 2), "size_bytes")), 3);
	json_decref(j);
	tu_run_done(&r);
	r = RUN("--config", cfg, "job", "show", ids);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "Salsa/Uno.mp3") && strstr(r.out, "Reggaetón/Tres canción.mp3"), "%s", r.out);
	tu_run_done(&r);
	free(root);
}

Test(cli, config_and_usage_errors)
{
	char *bad = tu_path(dir, "bad.conf");
	const char *text = "station = \"k\";\nworker = { max_concurrent = 0; };\n";
	tu_write_file(bad, text, strlen(text));
	struct tu_run r = RUN("--config", bad, "jobs");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "bad.conf:2") && strstr(r.err, "worker.max_concurrent"), "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", "/nonexistent/usbforge.conf", "jobs");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "/nonexistent/usbforge.conf"), "%s", r.err);
	tu_run_done(&r);
	r = RUN("frobnicate");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "unknown command 'frobnicate'"), "%s", r.err);
	tu_run_done(&r);
	/* a database that is not there: exit 1, DB_UNAVAILABLE, names where */
	char *nodb = tu_path(dir, "nodb.conf");
	const char *t2 = "database = { socket = \"/nonexistent/sock\"; user = \"u\"; };\n";
	tu_write_file(nodb, t2, strlen(t2));
	r = RUN("--config", nodb, "jobs");
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "DB_UNAVAILABLE") && strstr(r.err, "/nonexistent/sock"), "%s", r.err);
	tu_run_done(&r);
	free(bad);
	free(nodb);
}

Test(cli, migrate_is_idempotent_through_the_cli)
{
	struct tu_run r = RUN("--config", cfg, "--json", "db", "migrate");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = json_loads(r.out, 0, NULL);
	cr_assert_eq(json_integer_value(json_object_get(j, "applied")), 0);
	cr_assert_eq(json_integer_value(json_object_get(j, "schema_version")), db_schema_latest());
	cr_assert_eq(db_schema_latest(), 5);
	json_decref(j);
	tu_run_done(&r);
}

/* order add --image: only a regular, non-empty file beneath content.images (the test's folder)
 * is accepted, opened exactly as the daemon will open it; everything else is refused with the
 * reason, in well under a second for a FIFO, and no order row is written. */
Test(cli, order_add_confines_the_image, .timeout = 60)
{
	char *outside = tu_tmpdir("cli-outside");
	char *secret = tu_path(outside, "shadow");
	tu_write_file(secret, "root:$6$x\n", 10);
	char *link = tu_path(dir, "link.img"), *fifo = tu_path(dir, "fifo.img"), *empty = tu_path(dir, "empty.img");
	cr_assert_eq(symlink(secret, link), 0);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	tu_write_file(empty, "", 0);
	char *up = NULL, *want = NULL;
	cr_assert(asprintf(&up, "%s/../%s/shadow", dir, strrchr(outside, '/') + 1) > 0);

	struct {
		const char *image, *err;
	} bad[] = {
		{ secret, "is not beneath content.images" },
		{ "/proc/self/environ", "is not beneath content.images" },
		{ up, "../" },
		{ link, "link.img: a symbolic link on the way (not followed)" },
		{ fifo, "fifo.img: a FIFO, not a regular file" },
		{ empty, "empty.img is empty (0 bytes)" },
		{ dir, "is not beneath content.images" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char num[16];
		snprintf(num, sizeof(num), "H-%zu", i);
		struct tu_run r =
			RUN("--config", cfg, "order", "add", num, "--capacity", "1G", "--image", bad[i].image);
		cr_expect_eq(r.status, 1, "%s: exit %d", bad[i].image, r.status);
		cr_expect(strstr(r.err, "usbforge: ORDER_INVALID: ") && strstr(r.err, bad[i].err), "%s: %s",
			  bad[i].image, r.err);
		tu_run_done(&r);
	}
	/* "../" resolved by the kernel beneath the root: said as leaving it */
	struct tu_run r = RUN("--config", cfg, "order", "add", "H-up", "--capacity", "1G", "--image", up);
	cr_assert(strstr(r.err, "outside its folder"), "%s", r.err);
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders"), 0);

	/* a good one, given relative to the working directory: stored beneath the configured root */
	char img[8192];
	tu_fill_pattern(img, sizeof(img), 3);
	char *good = tu_path(dir, "good.img");
	tu_write_file(good, img, sizeof(img));
	r = RUN("--config", cfg, "order", "add", "H-ok", "--capacity", "1G", "--image", good);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	cr_assert(asprintf(&want, "SELECT COUNT(*) FROM orders WHERE image_path = '%s' AND image_bytes = 8192", good) >
		  0);
	cr_assert_eq(tdb_count(db, want), 1);
	free(want), free(up), free(secret), free(link), free(fifo), free(empty), free(good);
	tu_rmrf(outside);
	free(outside);
}

/* content scan DIR: content.root or a folder beneath it, nothing else; a pseudo filesystem never. */
Test(cli, content_scan_stays_in_the_library, .timeout = 60)
{
	char *root = tu_path(dir, "content");
	cr_assert_eq(mkdir(root, 0755), 0);
	put(root, "A/1.mp3", "1");
	put(root, "B/2.mp3", "22");
	char *other = tu_path(dir, "other");
	cr_assert_eq(mkdir(other, 0755), 0);
	put(other, "C/3.mp3", "333");

	struct tu_run r = RUN("--config", cfg, "content", "scan");
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE active"), 2);

	r = RUN("--config", cfg, "content", "scan", other);
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "' is not content.root ('") && strstr(r.err, "') or a folder beneath it"), "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "content", "scan", "/proc");
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "content folder '/proc' is not content.root"), "%s", r.err);
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE active"), 2, "nothing retired");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items"), 2, "nothing added");

	/* a folder beneath the root: only its rows can be retired */
	char *p = tu_path(root, "B/2.mp3");
	cr_assert_eq(unlink(p), 0);
	free(p);
	p = tu_path(root, "A");
	r = RUN("--config", cfg, "--json", "content", "scan", p);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = json_loads(r.out, 0, NULL);
	cr_assert_eq(json_integer_value(json_object_get(j, "deactivated")), 0, "%s", r.out);
	cr_assert_eq(json_integer_value(json_object_get(j, "unchanged")), 1, "%s", r.out);
	json_decref(j);
	tu_run_done(&r);
	free(p);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE active"), 2);
	free(root), free(other);
}

/* ---- least privilege and secrets (issue 11) ---------------------------------------------------- */

#define MIGDB "uf_t_cli_migrate"

/* db migrate on an empty database: the daemon's account alone fails with what to do (exit 1,
 * nothing created); with database.admin it creates the schema; afterwards the daemon's account
 * finds it current and the CLI works with it. */
Test(cli, migrate_needs_the_admin_account)
{
	tdb_empty(MIGDB);
	char *small = tu_path(dir, "small.conf"), *text = NULL;
	cr_assert(asprintf(&text,
			   "database = { socket = \"%s\"; user = \"" TDB_APP_USER "\"; password_file = \"%s\";"
			   " name = \"" MIGDB "\"; };\n",
			   tdb_socket(), tdb_password_file(false)) > 0);
	tu_write_file(small, text, strlen(text));
	free(text);
	struct tu_run r = RUN("--config", small, "db", "migrate");
	cr_assert_eq(r.status, 1);
	char *want = NULL;
	cr_assert(
		asprintf(&want,
			 "usbforge: migration failed: CREATE command denied to user 'usbforge'@'localhost' for table "
			 "`" MIGDB "`.`schema_migrations`: db migrate needs CREATE, ALTER, INDEX, DROP, REFERENCES, "
			 "CREATE VIEW and TRIGGER, and 'usbforge' is the daemon's account: run it as the admin account "
			 "(database.admin in %s)\n",
			 small) > 0);
	cr_assert_str_eq(r.err, want);
	cr_assert_str_eq(r.out, "");
	free(want);
	tu_run_done(&r);

	char *full = tdb_write_config_as(dir, "full.conf", MIGDB, NULL, NULL, NULL);
	r = RUN("--config", full, "db", "migrate");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "schema upgraded to version 5 (5 migrations applied)\n");
	tu_run_done(&r);
	r = RUN("--config", small, "db", "migrate");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "schema is current (version 5)\n");
	tu_run_done(&r);
	r = RUN("--config", small, "--json", "jobs");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "[]\n");
	tu_run_done(&r);

	/* an admin account without the DDL privileges says which it needs */
	tdb_root_exec("REVOKE ALTER ON `" MIGDB "`.* FROM '" TDB_ADMIN_USER "'@'localhost'");
	struct db *adm = tdb_connect_admin(MIGDB);
	cr_assert_eq(db_exec(adm, NULL, "DELETE FROM schema_migrations WHERE version >= 2", DB_END), 0);
	db_close(adm);
	r = RUN("--config", full, "db", "migrate");
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err,
			 "usbforge: migration failed: ALTER command denied to user 'usbforge_admin'@'localhost' for "
			 "table `" MIGDB "`.`processing_jobs`: the admin account 'usbforge_admin' "
			 "(database.admin) needs SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, "
			 "REFERENCES, CREATE VIEW, TRIGGER on `" MIGDB "`.*\n");
	tu_run_done(&r);
	tdb_root_exec("DROP DATABASE `" MIGDB "`");
	free(small);
	free(full);
}

/* The admin password file is read by db migrate only, and checked when it is: a file others can
 * read is refused with the file, line and key (exit 2), while every other command works. */
Test(cli, admin_password_file_is_for_migrate_only)
{
	char *apf = tu_path(dir, "admin.pw"), *text = NULL, *conf = tu_path(dir, "adm.conf");
	tu_write_file(apf, "x\n", 2);
	cr_assert_eq(chmod(apf, 0600), 0);
	cr_assert(asprintf(&text,
			   "database = { socket = \"%s\"; user = \"" TDB_APP_USER "\"; password_file = \"%s\";"
			   " name = \"" DBNAME "\";\n  admin = { user = \"" TDB_ADMIN_USER "\";\n"
			   "    password_file = \"admin.pw\"; }; };\n",
			   tdb_socket(), tdb_password_file(false)) > 0);
	tu_write_file(conf, text, strlen(text));
	free(text);
	cr_assert_eq(chmod(apf, 0644), 0);
	struct tu_run r = RUN("--config", conf, "db", "migrate");
	cr_assert_eq(r.status, 2);
	char *want = NULL;
	cr_assert(asprintf(&want,
			   "usbforge: %s:3: key 'database.admin.password_file': '%s' has mode 0644: the admin password "
			   "file must be readable by its owner only (chmod 600 '%s')\n",
			   conf, apf, apf) > 0);
	cr_assert_str_eq(r.err, want);
	free(want);
	tu_run_done(&r);
	/* a wrong admin password: db migrate cannot connect and says as whom */
	cr_assert_eq(chmod(apf, 0600), 0);
	r = RUN("--config", conf, "db", "migrate");
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "usbforge: DB_UNAVAILABLE: cannot connect to MariaDB at ") &&
			  strstr(r.err, " as 'usbforge_admin', database " DBNAME ": Access denied for user "
					"'usbforge_admin'@'localhost' (using password: YES)\n"),
		  "%s", r.err);
	tu_run_done(&r);
	/* nothing else reads it */
	r = RUN("--config", conf, "--json", "jobs");
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	free(apf);
	free(conf);
}

/* A FIFO as the config file (--config or $USBFORGE_CONFIG) is refused at once, exit 2. */
Test(cli, fifo_as_config_file, .timeout = 20)
{
	char *fifo = tu_path(dir, "fifo.conf"), *want = NULL;
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	struct tu_run r = RUN("--config", fifo, "jobs");
	cr_assert_eq(r.status, 2);
	cr_assert(asprintf(&want, "usbforge: %s: is a FIFO, not a regular file\n", fifo) > 0);
	cr_assert_str_eq(r.err, want);
	tu_run_done(&r);
	free(want);
	free(fifo);
}

/* An inline password in a config file others can read: refused, the value never shown. */
Test(cli, inline_password_in_a_world_readable_config)
{
	char *conf = tu_path(dir, "inline.conf"), *want = NULL;
	const char *text = "database = { user = \"u\";\n  password = \"pa55-w0rd\"; };\n";
	tu_write_file(conf, text, strlen(text));
	cr_assert_eq(chmod(conf, 0644), 0);
	struct tu_run r = RUN("--config", conf, "jobs");
	cr_assert_eq(r.status, 2);
	cr_assert(asprintf(&want,
			   "usbforge: %s:2: key 'database.password': '%s' has mode 0644: a file holding a database "
			   "password must not be readable or writable by others nor writable by its group (chmod "
			   "g-w,o-rwx '%s'; the usbforge group may read it), or move the password to a password_file\n",
			   conf, conf, conf) > 0);
	cr_assert_str_eq(r.err, want);
	cr_assert_null(strstr(r.err, "pa55-w0rd"));
	tu_run_done(&r);
	free(want);
	free(conf);
}
