/* db/schema.c: migrations are idempotent and upgrade in place; every CHECK constraint refuses a
 * bad row; the claim query is served by the claim index (no filesort). Real MariaDB. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/schema.h"
#include "helpers/testdb.h"
#include "helpers/testutil.h"

static struct db *db;  /* the daemon's account */
static struct db *adm; /* the admin account: migrations, and faking an old schema */

static void setup(void)
{
	db = tdb_fresh("uf_t_schema");
	adm = tdb_connect_admin("uf_t_schema");
}
static void teardown(void)
{
	db = db_close(db);
	adm = db_close(adm);
}

TestSuite(schema, .init = setup, .fini = teardown);

static long long tables(void)
{
	return tdb_count(db, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()");
}

Test(schema, migrate_twice_changes_nothing)
{
	long long before = tables();
	cr_assert_eq(before, 16, "12 tables + settings + 3 views, got %lld", before);
	int applied = -1;
	cr_assert_eq(db_migrate(adm, &applied), 0, "%s", db_error(adm));
	cr_assert_eq(applied, 0);
	cr_assert_eq(tables(), before);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM schema_migrations"), db_schema_latest());
	int cur = -1;
	cr_assert_eq(db_schema_current(db, &cur), 0);
	cr_assert_eq(cur, db_schema_latest());
}

Test(schema, rows_survive_a_rerun)
{
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO orders (order_number, capacity_bytes, quantity, image_path) VALUES ('K1', 1000, 2, '/x.img')",
			     DB_END),
		     0, "%s", db_error(db));
	/* An interrupted upgrade replays the newest migration: drop its version row and rerun. */
	cr_assert_eq(db_exec(db, NULL, "DELETE FROM schema_migrations WHERE version = ?", DB_I64(db_schema_latest()),
			     DB_END),
		     0);
	int applied = -1;
	cr_assert_eq(db_migrate(adm, &applied), 0, "%s", db_error(adm));
	cr_assert_eq(applied, 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders WHERE order_number = 'K1' AND quantity = 2"), 1);
}

static void insert_order(void);

Test(schema, v1_database_upgrades_in_place)
{
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO content_items (category, title, rel_path, size_bytes, sha256, mtime)"
			     " VALUES ('A', 'b', 'A/b.mp3', 3, SHA2('abc', 256), NOW())",
			     DB_END),
		     0, "%s", db_error(db));
	/* Turn the database back into a v1 one, as an appliance installed before v2 has it. */
	cr_assert_eq(db_exec(adm, NULL, "ALTER TABLE content_items DROP CONSTRAINT ck_content_xxh", DB_END), 0, "%s",
		     db_error(adm));
	cr_assert_eq(db_exec(adm, NULL, "ALTER TABLE content_items DROP COLUMN xxh128", DB_END), 0, "%s",
		     db_error(adm));
	cr_assert_eq(db_exec(adm, NULL,
			     "ALTER TABLE processing_jobs DROP INDEX ix_jobs_claim_rank, DROP COLUMN claim_rank,"
			     " ADD KEY ix_jobs_claim (claimable DESC, capacity_bytes DESC, id, station, next_attempt_at, min_device_bytes)",
			     DB_END),
		     0, "%s", db_error(adm));
	cr_assert_eq(db_exec(db, NULL, "DELETE FROM schema_migrations WHERE version >= 2", DB_END), 0);
	insert_order();
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO processing_jobs (order_id, unit_index, capacity_bytes) VALUES (1, 0, 1000)",
			     DB_END),
		     0);
	int cur = -1, applied = -1;
	cr_assert_eq(db_schema_current(db, &cur), 0);
	cr_assert_eq(cur, 1);
	cr_assert_eq(db_migrate(adm, &applied), 0, "%s", db_error(adm));
	cr_assert_eq(applied, db_schema_latest() - 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM content_items WHERE rel_path = 'A/b.mp3' AND xxh128 IS NULL"),
		     1, "the row survives, its xxh128 waits for the next scan");
	cr_assert_eq(db_exec(db, NULL, "UPDATE content_items SET xxh128 = 'not hex' WHERE rel_path = 'A/b.mp3'",
			     DB_END),
		     -EPERM, "the v2 CHECK constraint is in force");
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM processing_jobs WHERE capacity_bytes = 1000 AND claim_rank = ~1000"),
		     1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE()"
				   " AND table_name = 'processing_jobs' AND index_name = 'ix_jobs_claim'"),
		     0, "the v1 index is gone");
}

static void insert_order(void)
{
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO orders (id, order_number, capacity_bytes, quantity, image_path)"
			     " VALUES (1, 'O1', 1000, 1, '/x.img')",
			     DB_END),
		     0, "%s", db_error(db));
}

static int job_with(const char *cols, const char *vals)
{
	char *q = NULL;
	cr_assert(
		asprintf(&q,
			 "INSERT INTO processing_jobs (order_id, unit_index, capacity_bytes%s%s) VALUES (1, 0, 1000%s%s)",
			 *cols ? ", " : "", cols, *vals ? ", " : "", vals) > 0);
	int r = db_exec(db, NULL, q, DB_END);
	free(q);
	return r;
}

/* Run sql; it must give want (0, -EPERM for a CHECK constraint, -EEXIST for a unique key). */
static void exec_is(int want, const char *sql)
{
	int r = db_exec(db, NULL, sql, DB_END);
	cr_assert_eq(r, want, "%s: got %d, want %d (%s)", sql, r, want, db_error(db));
}

Test(schema, check_constraints_refuse_bad_rows)
{
	insert_order();
	/* orders */
	exec_is(-EPERM,
		"INSERT INTO orders (order_number, capacity_bytes, quantity, image_path) VALUES ('Q0', 1, 0, '/x')");
	exec_is(-EPERM,
		"INSERT INTO orders (order_number, capacity_bytes, quantity, image_path) VALUES ('C0', 0, 1, '/x')");
	exec_is(-EPERM,
		"INSERT INTO orders (order_number, capacity_bytes, quantity) VALUES ('N0', 1, 1)"); /* no source */
	exec_is(-EPERM,
		"INSERT INTO orders (order_number, capacity_bytes, quantity, content_spec) VALUES ('J0', 1, 1, '{bad')");
	exec_is(-EPERM,
		"INSERT INTO orders (order_number, capacity_bytes, quantity, image_path, created_at, confirmed_at)"
		" VALUES ('T0', 1, 1, '/x', NOW(6), NOW(6) - INTERVAL 1 SECOND)");
	/* processing_jobs */
	static const struct {
		const char *cols, *vals;
	} bad_jobs[] = {
		{ "progress", "101" },
		{ "progress", "-1" },
		{ "resume_state", "'{no'" },
		{ "created_at, cancelled_at", "NOW(6), NOW(6) - INTERVAL 1 SECOND" },
		{ "created_at, cancel_requested_at", "NOW(6), NOW(6) - INTERVAL 1 SECOND" },
		{ "created_at, heartbeat_at", "NOW(6), NOW(6) - INTERVAL 1 SECOND" },
		{ "attempts", "-1" },
		{ "attempts, max_attempts", "5, 4" },
		{ "max_attempts", "0" },
		{ "started_at", "NOW(6) - INTERVAL 1 HOUR" },
		{ "started_at, completed_at", "NOW(6) + INTERVAL 2 SECOND, NOW(6) + INTERVAL 1 SECOND" },
		{ "completed_at", "NOW(6) + INTERVAL 1 SECOND" },
		{ "started_at, failed_at", "NOW(6) + INTERVAL 2 SECOND, NOW(6) + INTERVAL 1 SECOND" },
		{ "started_at, cancelled_at", "NOW(6) + INTERVAL 2 SECOND, NOW(6) + INTERVAL 1 SECOND" },
		{ "failed_at", "NOW(6) - INTERVAL 1 HOUR" },
		{ "progress_detail", "'not json'" },
		{ "bytes_total, bytes_written", "10, 11" },
	};
	for (size_t i = 0; i < sizeof(bad_jobs) / sizeof(bad_jobs[0]); i++)
		cr_assert_eq(job_with(bad_jobs[i].cols, bad_jobs[i].vals), -EPERM, "job (%s) = (%s) was accepted",
			     bad_jobs[i].cols, bad_jobs[i].vals);
	exec_is(-EPERM, "INSERT INTO processing_jobs (order_id, unit_index, capacity_bytes) VALUES (1, -1, 1000)");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 0);
	/* and a good one passes */
	cr_assert_eq(job_with("progress, started_at, completed_at", "100, NOW(6), NOW(6) + INTERVAL 1 SECOND"), 0, "%s",
		     db_error(db));
	cr_assert_eq(job_with("", ""), -EEXIST, "unit key (order, unit, version) is unique");
	/* logs, events, audit */
	exec_is(-EPERM, "INSERT INTO processing_job_logs (job_id, level, stage, category, message, details)"
			" SELECT id, 'info', 'writing', 'stage', 'm', '{x' FROM processing_jobs");
	exec_is(-EPERM,
		"INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES ('job', 1, 'job.done', 'x')");
	exec_is(0,
		"INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES ('job', 1, 'job.done', '{}')");
	exec_is(-EEXIST,
		"INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES ('job', 1, 'job.done', '{}')");
	exec_is(-EPERM,
		"INSERT INTO content_items (category, title, rel_path, size_bytes, sha256, mtime) VALUES ('a','b','a/b',1,'XYZ',NOW())");
	exec_is(-EPERM,
		"INSERT INTO audit_log (actor, entity_type, entity_id, action, metadata) VALUES ('t', 'job', 1, 'x', '{no')");
	exec_is(0,
		"INSERT INTO audit_log (actor, entity_type, entity_id, action, metadata) VALUES ('t', 'job', 1, 'x', '{}')");
	exec_is(0,
		"INSERT INTO content_items (category, title, rel_path, size_bytes, sha256, mtime) VALUES ('a','b','a/b',1,SHA2('b',256),NOW())");
	exec_is(-EPERM, "INSERT INTO processing_job_items (job_id, position, content_item_id, size_bytes, dest_path)"
			" SELECT j.id, -1, c.id, 1, 'a/b' FROM processing_jobs j, content_items c");
	exec_is(0, "INSERT INTO processing_job_items (job_id, position, content_item_id, size_bytes, dest_path)"
		   " SELECT j.id, 0, c.id, 1, 'a/b' FROM processing_jobs j, content_items c");
}

Test(schema, times_come_from_the_server)
{
	insert_order();
	cr_assert_eq(tdb_count(db,
			       "SELECT ABS(TIMESTAMPDIFF(SECOND, created_at, NOW(6))) < 5 FROM orders WHERE id = 1"),
		     1);
	cr_assert_eq(tdb_count(db,
			       "SELECT DATETIME_PRECISION FROM information_schema.columns WHERE table_schema = DATABASE()"
			       " AND table_name = 'processing_jobs' AND column_name = 'heartbeat_at'"),
		     6);
}

/* EXPLAIN the claim's SELECT (sel: its text, with or without the index hint) as a prepared
 * statement with the claim's arguments bound, as the claimer runs it. */
static void explain_uses_claim_index(const char *sel)
{
	char *q = NULL;
	cr_assert(asprintf(&q, "EXPLAIN %s", sel) > 0);
	struct db_res *res = NULL;
	cr_assert_eq(db_query(db, &res, q, DB_U64(4000000), DB_STR("test-station"), DB_U64(4000000), DB_END), 0, "%s",
		     db_error(db));
	cr_assert_eq(db_res_count(res), 1, "one table, one row of EXPLAIN");
	db_row row = db_res_next(res);
	cr_assert(row);
	const char *key = NULL, *extra = NULL;
	for (unsigned i = 0; i < db_res_fields(res); i++) {
		if (strcmp(db_res_field_name(res, i), "key") == 0)
			key = row[i];
		if (strcmp(db_res_field_name(res, i), "Extra") == 0)
			extra = row[i];
	}
	cr_assert(key, "%s", q);
	cr_assert_str_eq(key, "ix_jobs_claim_rank", "%s", q);
	cr_assert(extra && strstr(extra, "Using index") && !strstr(extra, "filesort"), "Extra: %s",
		  extra ? extra : "(null)");
	cr_assert_null(db_res_next(res), "one table, one row of EXPLAIN");
	db_res_free(res);
	free(q);
}

Test(schema, claim_uses_the_claim_index_without_filesort)
{
	insert_order();
	/* Enough rows that the optimizer has a real choice. */
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO processing_jobs (order_id, unit_index, capacity_bytes, status)"
			     " SELECT 1, seq, 1000000 * (seq % 7 + 1), ELT(seq % 4 + 1, 'queued', 'retry', 'done', 'failed')"
			     " FROM seq_0_to_1999",
			     DB_END),
		     0, "%s", db_error(db));
	cr_assert_eq(db_exec(db, NULL, "ANALYZE TABLE processing_jobs", DB_END), 0);
	char *sel = strdup(db_claim_select_sql);
	cr_assert(sel);
	explain_uses_claim_index(sel);
	/* and the optimizer picks the index by itself: the hint only guards against odd statistics */
	char *hint = strstr(sel, " FORCE INDEX (ix_jobs_claim_rank)");
	cr_assert(hint, "%s", sel);
	memmove(hint, hint + strlen(" FORCE INDEX (ix_jobs_claim_rank)"),
		strlen(hint + strlen(" FORCE INDEX (ix_jobs_claim_rank)")) + 1);
	explain_uses_claim_index(sel);
	free(sel);

	/* the order itself: largest capacity that fits first, then the oldest */
	cr_assert_eq(db_exec(db, NULL, "UPDATE processing_jobs SET next_attempt_at = NOW(6) - INTERVAL 1 SECOND",
			     DB_END),
		     0);
	int64_t want =
		tdb_count(db, "SELECT MIN(id) FROM processing_jobs WHERE capacity_bytes = 4000000 AND claimable = 1");
	int64_t got = -1;
	cr_assert_eq(db_query_i64(db, &got, db_claim_select_sql, DB_U64(4000000), DB_STR("test-station"),
				  DB_U64(4000000), DB_END),
		     0, "%s", db_error(db));
	cr_assert_eq(got, want);
	cr_assert_eq(db_query_i64(db, &got, db_claim_select_sql, DB_U64(UINT64_MAX), DB_STR("test-station"),
				  DB_U64(UINT64_MAX), DB_END),
		     0);
	cr_assert_eq(got,
		     tdb_count(db,
			       "SELECT MIN(id) FROM processing_jobs WHERE capacity_bytes = 7000000 AND claimable = 1"),
		     "no limit: the largest capacity");
}

Test(schema, old_servers_are_refused)
{
	cr_assert(db_version_supported("10.11.6-MariaDB-0+deb12u1"));
	cr_assert(db_version_supported("10.6.0-MariaDB"));
	cr_assert(db_version_supported("11.4.2-MariaDB"));
	/* MySQL has SKIP LOCKED, but the schema is MariaDB's: refused with that reason */
	cr_assert_str_eq(db_version_problem("8.0.36"),
			 "it is MySQL: usbforge's schema is written and tested for MariaDB >= 10.6 only");
	cr_assert_not(db_version_supported("8.4.0"));
	cr_assert(strstr(db_version_problem("10.5.23-MariaDB"), "too old: usbforge needs MariaDB >= 10.6"));
	cr_assert_not(db_version_supported("10.5.23-MariaDB"));
	cr_assert_not(db_version_supported("5.5.5-10.3.39-MariaDB"));
	cr_assert(db_version_supported("5.5.5-10.11.6-MariaDB"), "replication-compat prefix skipped");
	cr_assert_not(db_version_supported("5.7.44"));
	cr_assert_not(db_version_supported("8.0.0"));
	cr_assert_not(db_version_supported("garbage"));
}

/* ---- least privilege (issue 11) ---------------------------------------------------------------- */

static char *query_str(struct db *c, const char *sql)
{
	struct db_res *res = NULL;
	cr_assert_eq(db_query(c, &res, sql, DB_END), 0, "%s: %s", sql, db_error(c));
	db_row row = db_res_next(res);
	char *v = strdup(row && row[0] ? row[0] : "(null)");
	db_res_free(res);
	return v;
}

static void assert_denied(const char *sql, const char *want)
{
	cr_assert_eq(db_exec(db, NULL, sql, DB_END), -EIO, "%s", sql);
	cr_assert_str_eq(db_error(db), want);
}

/* The daemon's account (the one every suite but the migrations runs as) may read and write rows
 * and nothing more: it cannot create, drop or alter a table, an index or a view. */
Test(schema, the_daemons_account_cannot_change_the_schema)
{
	assert_denied("CREATE TABLE t_x (id INT)",
		      "CREATE command denied to user 'usbforge'@'localhost' for table `uf_t_schema`.`t_x`");
	assert_denied("DROP TABLE orders",
		      "DROP command denied to user 'usbforge'@'localhost' for table `uf_t_schema`.`orders`");
	assert_denied("ALTER TABLE orders ADD COLUMN x INT",
		      "ALTER command denied to user 'usbforge'@'localhost' for table `uf_t_schema`.`orders`");
	assert_denied("CREATE INDEX ix_x ON orders (customer)",
		      "INDEX command denied to user 'usbforge'@'localhost' for table `uf_t_schema`.`orders`");
	assert_denied("CREATE OR REPLACE VIEW v_queue_stats AS SELECT 1",
		      "CREATE VIEW command denied to user 'usbforge'@'localhost' for table `uf_t_schema`.`v_queue_stats`");
	assert_denied("TRUNCATE TABLE events",
		      "DROP command denied to user 'usbforge'@'localhost' for table `uf_t_schema`.`events`");
	cr_assert_eq(tables(), 16);
	/* exactly the four privileges on the schema and none on the server */
	char *privs = query_str(db, "SELECT GROUP_CONCAT(privilege_type ORDER BY privilege_type)"
				    " FROM information_schema.schema_privileges WHERE table_schema = DATABASE()");
	cr_assert_str_eq(privs, "DELETE,INSERT,SELECT,UPDATE");
	free(privs);
	privs = query_str(db, "SELECT GROUP_CONCAT(privilege_type) FROM information_schema.user_privileges");
	cr_assert_str_eq(privs, "USAGE");
	free(privs);
	privs = query_str(adm, "SELECT GROUP_CONCAT(privilege_type ORDER BY privilege_type)"
			       " FROM information_schema.schema_privileges WHERE table_schema = DATABASE()");
	cr_assert_str_eq(privs, "ALTER,CREATE,CREATE VIEW,DELETE,DROP,INDEX,INSERT,REFERENCES,SELECT,TRIGGER,UPDATE");
	free(privs);
}

/* scripts/db gives its two accounts exactly these privileges on "usbforge" (the demo, bench and
 * chaos databases get the same through `scripts/db grant`). */
Test(schema, scripts_db_accounts_have_exactly_their_privileges)
{
	char *privs = query_str(db, "SELECT GROUP_CONCAT(privilege_type ORDER BY privilege_type)"
				    " FROM information_schema.schema_privileges WHERE table_schema = 'usbforge'");
	cr_assert_str_eq(privs, "DELETE,INSERT,SELECT,UPDATE");
	free(privs);
	privs = query_str(adm, "SELECT GROUP_CONCAT(privilege_type ORDER BY privilege_type)"
			       " FROM information_schema.schema_privileges WHERE table_schema = 'usbforge'");
	cr_assert_str_eq(privs, "ALTER,CREATE,CREATE VIEW,DELETE,DROP,INDEX,INSERT,REFERENCES,SELECT,TRIGGER,UPDATE");
	free(privs);
	privs = query_str(adm, "SELECT GROUP_CONCAT(privilege_type) FROM information_schema.user_privileges");
	cr_assert_str_eq(privs, "USAGE");
	free(privs);
}

/* A migration the daemon's account would have to run is refused as -EACCES (the CLI then names
 * the admin account) and changes nothing; the admin account applies it. */
Test(schema, migrate_as_the_daemons_account_is_eacces)
{
	int applied = -1;
	/* current: nothing to change, nothing refused */
	cr_assert_eq(db_migrate(db, &applied), 0, "%s", db_error(db));
	cr_assert_eq(applied, 0);
	cr_assert_eq(db_exec(db, NULL, "DELETE FROM schema_migrations WHERE version = ?", DB_I64(db_schema_latest()),
			     DB_END),
		     0);
	applied = -1;
	cr_assert_eq(db_migrate(db, &applied), -EACCES);
	cr_assert_eq(applied, -1);
	cr_assert_str_eq(db_error(db),
			 "INDEX command denied to user 'usbforge'@'localhost' for table `uf_t_schema`.`processing_jobs`");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM schema_migrations"), db_schema_latest() - 1);
	cr_assert_eq(db_migrate(adm, &applied), 0, "%s", db_error(adm));
	cr_assert_eq(applied, 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM schema_migrations"), db_schema_latest());
}
