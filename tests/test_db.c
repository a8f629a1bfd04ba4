/* db/db.c against the real MariaDB: a connection that loses its server and cannot get it back
 * is down, not dangling. Every call then returns -ENOTCONN with a message and never hands the
 * client library a NULL or dead handle (issue 10: usbforged died with SIGSEGV in libmariadb
 * when a reconnect failed); a later reconnect brings it back. And the prepared-statement path
 * (issue 12): values are bound, never pasted into SQL, and come back exactly (quotes,
 * backslashes, binary bytes, NULL, 64 KiB); results (struct db_res) print numbers and times as
 * the server does; errors keep their mapping; the statement cache survives a reconnect and a
 * changed table. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "helpers/testdb.h"

#define DBNAME "uf_t_db"
#define USER   "uf_t_db_user"

static struct db *admin; /* the daemon's account: it may kill its own connections only */

static void setup(void)
{
	admin = tdb_fresh(DBNAME);
	tdb_user(admin, USER, "pw-db-test", DBNAME);
	/* a table of our own for the value tests (DDL: the admin account's) */
	struct db *ddl = tdb_connect_admin(DBNAME);
	cr_assert_eq(db_exec(ddl, NULL,
			     "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, s MEDIUMTEXT NULL, b MEDIUMBLOB NULL, n BIGINT NULL)"
			     " DEFAULT CHARSET=utf8mb4",
			     DB_END),
		     0, "%s", db_error(ddl));
	db_close(ddl);
}
static void teardown(void)
{
	tdb_root_exec("DROP USER IF EXISTS '" USER "'@'localhost'");
	admin = db_close(admin);
}
TestSuite(db, .init = setup, .fini = teardown, .timeout = 60);

static struct db *connect_as_user(void)
{
	struct uf_config cfg;
	tdb_config(&cfg, DBNAME);
	free(cfg.db.user);
	cfg.db.user = strdup(USER);
	free(cfg.db.password);
	cfg.db.password = strdup("pw-db-test");
	struct db *db = NULL;
	char *err = NULL;
	cr_assert_eq(db_connect(&cfg, &db, &err), 0, "%s", err ? err : "");
	config_done(&cfg);
	return db;
}

static int txn_select(struct db *db, void *userdata)
{
	(void)userdata;
	return db_exec(db, NULL, "SELECT 1", DB_END);
}

Test(db, failed_reconnect_leaves_the_connection_down_and_every_call_safe)
{
	struct db *db = connect_as_user();
	cr_assert_eq(db_exec(db, NULL, "SELECT 1", DB_END), 0);
	cr_assert(db_is_up(db));

	/* the server refuses the account and cuts its connection */
	cr_assert_eq(tdb_user_lock(admin, USER, true), 1);
	cr_assert_eq(db_exec(db, NULL, "SELECT 1", DB_END), -ENOTCONN, "%s", db_error(db));
	char *err = NULL;
	cr_assert_lt(db_reconnect(db, &err), 0);
	cr_assert(err && strstr(err, USER), "the reason names the account: %s", err ? err : "(none)");
	free(err);
	cr_assert_not(db_is_up(db));

	/* down: every entry point answers, none crashes */
	struct db_res *res = NULL;
	int64_t v = 0;
	cr_assert_eq(db_exec(db, NULL, "SELECT ?", DB_STR("x"), DB_END), -ENOTCONN);
	cr_assert_eq(db_query(db, &res, "SELECT 1", DB_END), -ENOTCONN);
	cr_assert_null(res);
	cr_assert_eq(db_query(db, &res, "SELECT ?", DB_I64(1), DB_END), -ENOTCONN);
	cr_assert_null(res);
	cr_assert_eq(db_query_i64(db, &v, "SELECT 1", DB_END), -ENOTCONN);
	cr_assert_eq(db_begin(db), -ENOTCONN);
	cr_assert_eq(db_commit(db), -ENOTCONN);
	db_rollback(db);
	cr_assert_eq(db_transaction(db, txn_select, NULL), -ENOTCONN);
	cr_assert_eq(db_insert_id(db), 0);
	cr_assert(strlen(db_error(db)) > 0);
	cr_assert(strlen(db_server_version(db)) > 0);
	cr_assert_geq(db_errno(db), 2000u, "a client-side error number, so callers treat it as a lost connection");
	/* a reconnect that fails again keeps it down */
	cr_assert_lt(db_reconnect(db, NULL), 0);
	cr_assert_eq(db_exec(db, NULL, "SELECT 1", DB_END), -ENOTCONN);

	/* the server takes the account back: one reconnect and it works again */
	cr_assert_eq(tdb_user_lock(admin, USER, false), 0);
	cr_assert_eq(db_reconnect(db, NULL), 0, "%s", db_error(db));
	cr_assert(db_is_up(db));
	cr_assert_eq(db_query_i64(db, &v, "SELECT 41 + 1", DB_END), 0, "%s", db_error(db));
	cr_assert_eq(v, 42);
	db_close(db);
}

/* A statement on a connection the server killed reports it as lost (-ENOTCONN), so callers
 * reconnect instead of treating it as a query error. */
Test(db, a_killed_connection_is_reported_lost)
{
	struct db *db = connect_as_user();
	int64_t id = 0;
	cr_assert_eq(db_query_i64(db, &id, "SELECT CONNECTION_ID()", DB_END), 0);
	char kill[64];
	snprintf(kill, sizeof(kill), "KILL CONNECTION %lld", (long long)id);
	tdb_root_exec(kill);
	cr_assert_eq(db_exec(db, NULL, "SELECT 1", DB_END), -ENOTCONN, "%s", db_error(db));
	cr_assert_eq(db_reconnect(db, NULL), 0, "%s", db_error(db));
	cr_assert_eq(db_exec(db, NULL, "SELECT 1", DB_END), 0);
	db_close(db);
}

/* ---- prepared statements (issue 12) ------------------------------------------------------------ */

/* Column 0 of the one row of sql (with one bound argument), malloc'd with its length. */
static char *one_value(struct db *db, size_t *ret_len, const char *sql, struct db_arg arg)
{
	struct db_res *res = NULL;
	cr_assert_eq(db_query(db, &res, sql, arg, DB_END), 0, "%s: %s", sql, db_error(db));
	cr_assert_eq(db_res_count(res), 1, "%s", sql);
	db_row row = db_res_next(res);
	cr_assert(row);
	char *v = NULL;
	if (row[0]) {
		*ret_len = db_res_lengths(res)[0];
		v = malloc(*ret_len + 1);
		cr_assert(v);
		memcpy(v, row[0], *ret_len + 1);
	}
	db_res_free(res);
	return v;
}

Test(db, values_with_quotes_backslashes_and_binary_bytes_round_trip_exactly)
{
	static const char *const texts[] = {
		"it's",
		"a \"quoted\" back\\slash \\' and \\\\",
		"'); DROP TABLE t; --",
		"? and ?? are not placeholders inside a value",
		"%s %n",
		"Für Elise — 曲 1 🎵",
		"\\0\\n\\Z\\%\\_",
		"",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		cr_assert_eq(db_exec(admin, NULL, "INSERT INTO t (id, s) VALUES (?, ?)", DB_I64(i), DB_STR(texts[i]),
				     DB_END),
			     0, "%s", db_error(admin));
		size_t len = 0;
		char *back = one_value(admin, &len, "SELECT s FROM t WHERE id = ?", DB_I64(i));
		cr_assert(back);
		cr_assert_eq(len, strlen(texts[i]));
		cr_assert_str_eq(back, texts[i]);
		free(back);
		/* and the server compares it equal to the same bound value */
		cr_assert_eq(tdb_count(admin, "SELECT COUNT(*) FROM t"), (long long)i + 1);
		int64_t n = -1;
		cr_assert_eq(db_query_i64(admin, &n, "SELECT COUNT(*) FROM t WHERE s = ? AND id = ?", DB_STR(texts[i]),
					  DB_I64(i), DB_END),
			     0);
		cr_assert_eq(n, 1, "%s", texts[i]);
	}
	/* every byte value but NUL, into a binary column and back */
	char bin[256];
	for (int i = 0; i < 255; i++)
		bin[i] = (char)(i + 1);
	bin[255] = '\0';
	cr_assert_eq(db_exec(admin, NULL, "INSERT INTO t (id, b) VALUES (100, ?)", DB_STR(bin), DB_END), 0, "%s",
		     db_error(admin));
	size_t len = 0;
	char *back = one_value(admin, &len, "SELECT b FROM t WHERE id = ?", DB_I64(100));
	cr_assert_eq(len, 255);
	cr_assert_eq(memcmp(back, bin, 255), 0);
	free(back);
	cr_assert_eq(tdb_count(admin, "SELECT LENGTH(b) FROM t WHERE id = 100"), 255);
	/* a BINARY(32) value made by the server (content_items.rel_path_hash) keeps its 32 bytes, NULs
	 * included */
	back = one_value(admin, &len, "SELECT UNHEX(CONCAT('00ff00', REPEAT('7f', 29)))", DB_END);
	cr_assert_eq(len, 32);
	cr_assert_eq(memcmp(back, "\x00\xff\x00\x7f", 4), 0);
	free(back);
}

Test(db, null_binds_and_null_columns)
{
	cr_assert_eq(db_exec(admin, NULL, "INSERT INTO t (id, s, b, n) VALUES (1, ?, ?, ?)", DB_STR(NULL), DB_NULL,
			     DB_NULL, DB_END),
		     0, "%s", db_error(admin));
	cr_assert_eq(tdb_count(admin, "SELECT s IS NULL AND b IS NULL AND n IS NULL FROM t WHERE id = 1"), 1);
	struct db_res *res = NULL;
	cr_assert_eq(db_query(admin, &res, "SELECT s, b, n, ? IS NULL, ? FROM t WHERE id = 1", DB_STR(NULL), DB_NULL,
			      DB_END),
		     0, "%s", db_error(admin));
	db_row row = db_res_next(res);
	cr_assert(row);
	cr_assert_null(row[0]);
	cr_assert_null(row[1]);
	cr_assert_null(row[2]);
	cr_assert_str_eq(row[3], "1");
	cr_assert_null(row[4]);
	cr_assert_eq(db_res_lengths(res)[0], 0);
	cr_assert_eq(db_row_i64(row, 2), 0);
	cr_assert_eq(db_row_u64(row, 2), 0);
	cr_assert_eq(db_row_dbl(row, 2), 0.0);
	db_res_free(res);
}

Test(db, a_string_of_64_kib_round_trips)
{
	size_t big = 64 * 1024;
	char *v = malloc(big + 1);
	cr_assert(v);
	for (size_t i = 0; i < big; i++)
		v[i] = "abc'\\\"xyz"[i % 8];
	v[big] = '\0';
	cr_assert_eq(db_exec(admin, NULL, "INSERT INTO t (id, s, b) VALUES (1, ?, ?)", DB_STR(v), DB_STR(v), DB_END), 0,
		     "%s", db_error(admin));
	cr_assert_eq(tdb_count(admin, "SELECT LENGTH(s) + LENGTH(b) FROM t WHERE id = 1"), (long long)(2 * big));
	struct db_res *res = NULL;
	/* a short row first: the long one does not fit the first row's size */
	cr_assert_eq(db_exec(admin, NULL, "INSERT INTO t (id, s) VALUES (0, 'short')", DB_END), 0);
	cr_assert_eq(db_query(admin, &res, "SELECT s, b, ? FROM t ORDER BY id", DB_STR(v), DB_END), 0, "%s",
		     db_error(admin));
	cr_assert_eq(db_res_count(res), 2);
	db_row row = db_res_next(res);
	cr_assert_str_eq(row[0], "short");
	row = db_res_next(res);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(db_res_lengths(res)[i], big, "column %d", i);
		cr_assert_eq(memcmp(row[i], v, big + 1), 0, "column %d", i);
	}
	db_res_free(res);
	free(v);
}

Test(db, the_result_api)
{
	for (int i = 1; i <= 3; i++)
		cr_assert_eq(db_exec(admin, NULL, "INSERT INTO t (id, s, n) VALUES (?, ?, ?)", DB_I64(i),
				     i == 2 ? DB_NULL : DB_STR("x"), DB_I64(-i), DB_END),
			     0);
	struct db_res *res = NULL;
	cr_assert_eq(db_query(admin, &res,
			      "SELECT id, s, n AS minus, CAST(id AS UNSIGNED), id / 2, 1e0 * id FROM t"
			      " WHERE id >= ? ORDER BY id",
			      DB_I64(1), DB_END),
		     0, "%s", db_error(admin));
	cr_assert_eq(db_res_count(res), 3);
	cr_assert_eq(db_res_fields(res), 6);
	cr_assert_str_eq(db_res_field_name(res, 0), "id");
	cr_assert_str_eq(db_res_field_name(res, 2), "minus");
	cr_assert_null(db_res_field_name(res, 6));
	cr_assert_eq(db_res_field_kind(res, 0), DB_KIND_INT);
	cr_assert_eq(db_res_field_kind(res, 1), DB_KIND_TEXT);
	cr_assert_eq(db_res_field_kind(res, 3), DB_KIND_UINT);
	cr_assert_eq(db_res_field_kind(res, 4), DB_KIND_REAL); /* DECIMAL */
	cr_assert_eq(db_res_field_kind(res, 5), DB_KIND_REAL); /* DOUBLE */
	cr_assert_null(db_res_lengths(res), "no row read yet");
	for (int i = 1; i <= 3; i++) {
		db_row row = db_res_next(res);
		cr_assert(row, "row %d", i);
		cr_assert_eq(db_row_i64(row, 0), i);
		if (i == 2)
			cr_assert_null(row[1]);
		else
			cr_assert_str_eq(row[1], "x");
		cr_assert_eq(db_row_i64(row, 2), -i);
		cr_assert_eq(db_row_dbl(row, 5), (double)i);
	}
	cr_assert_null(db_res_next(res), "past the end");
	cr_assert_null(db_res_next(res), "and it stays there");
	cr_assert_null(db_res_lengths(res));
	cr_assert_eq(db_res_count(res), 3);
	res = db_res_free(res);
	cr_assert_null(db_res_free(NULL));

	/* an empty result */
	cr_assert_eq(db_query(admin, &res, "SELECT id FROM t WHERE id > ?", DB_I64(99), DB_END), 0);
	cr_assert_eq(db_res_count(res), 0);
	cr_assert_null(db_res_next(res));
	db_res_free(res);
	int64_t v = 7;
	cr_assert_eq(db_query_i64(admin, &v, "SELECT id FROM t WHERE id > ?", DB_I64(99), DB_END), -ENOENT);
	cr_assert_eq(v, 7);

	/* no result set, and placeholders the arguments do not match: -EINVAL, res untouched */
	res = NULL;
	cr_assert_eq(db_query(admin, &res, "UPDATE t SET n = n WHERE id = ?", DB_I64(1), DB_END), -EINVAL);
	cr_assert_null(res);
	cr_assert_eq(db_query(admin, &res, "SELECT ? + ?", DB_I64(1), DB_END), -EINVAL);
	cr_assert_null(res);
	cr_assert(strstr(db_error(admin), "bad query arguments"), "%s", db_error(admin));
	cr_assert_eq(db_exec(admin, NULL, "SELECT ?", DB_I64(1), DB_I64(2), DB_END), -EINVAL);
	/* db_exec of a query: its rows are counted and dropped */
	uint64_t aff = 0;
	cr_assert_eq(db_exec(admin, &aff, "SELECT id FROM t", DB_END), 0);
	cr_assert_eq(aff, 3);
	cr_assert_eq(db_exec(admin, &aff, "UPDATE t SET n = 0 WHERE id <= ?", DB_I64(2), DB_END), 0);
	cr_assert_eq(aff, 2);
}

/* Numbers, DECIMAL and temporal values read as the server's own text for them (CAST … AS CHAR,
 * a string column, is the oracle). */
Test(db, query_row_gives_the_first_row_or_enoent)
{
	cr_assert_eq(db_exec(admin, NULL, "INSERT INTO t (id, s, n) VALUES (1, 'one', -1), (2, 'two', -2)", DB_END), 0);
	struct db_res *res = NULL;
	db_row row = NULL;
	cr_assert_eq(db_query_row(admin, &res, &row, "SELECT s, n FROM t WHERE id >= ? ORDER BY id", DB_I64(1), DB_END),
		     0, "%s", db_error(admin));
	cr_assert_not_null(res);
	cr_assert_str_eq(row[0], "one");
	cr_assert_eq(db_row_i64(row, 1), -1);
	cr_assert_str_eq(db_res_next(res)[0], "two", "the rest of the rows follow");
	res = db_res_free(res);
	row = NULL;
	cr_assert_eq(db_query_row(admin, &res, &row, "SELECT s FROM t WHERE id = ?", DB_I64(99), DB_END), -ENOENT);
	cr_assert_null(res, "nothing returned without a row");
	cr_assert_null(row);
	cr_assert_eq(db_query_row(admin, &res, &row, "SELECT nope FROM t", DB_END), -EIO);
	cr_assert_null(res);
}

Test(db, numbers_and_times_read_as_the_server_prints_them)
{
	static const char *const exprs[] = {
		"CAST(? AS DATETIME(6))", "CAST(? AS DATETIME(3))", "CAST(? AS DATETIME)",	"CAST(? AS DATE)",
		"CAST(? AS TIME(6))",	  "TIMESTAMP(?)",	    "CAST(? AS DECIMAL(20,6))",
	};
	static const char *const values[] = { "2026-12-03 15:04:05.012345", "1999-01-02 03:04:05.000000",
					      "2026-12-03 15:04:05.5" };
	for (size_t e = 0; e < sizeof(exprs) / sizeof(exprs[0]); e++)
		for (size_t k = 0; k < sizeof(values) / sizeof(values[0]); k++) {
			char *sql = NULL;
			cr_assert(asprintf(&sql, "SELECT %s, CAST(%s AS CHAR)", exprs[e], exprs[e]) > 0);
			struct db_res *res = NULL;
			const char *v = e == 6 ? "12345.678" : values[k]; /* the DECIMAL */
			cr_assert_eq(db_query(admin, &res, sql, DB_STR(v), DB_STR(v), DB_END), 0, "%s",
				     db_error(admin));
			db_row row = db_res_next(res);
			cr_assert(row && row[0] && row[1], "%s", sql);
			cr_assert_str_eq(row[0], row[1], "%s with %s", exprs[e], v);
			db_res_free(res);
			free(sql);
		}
	struct db_res *res = NULL;
	cr_assert_eq(db_query(admin, &res,
			      "SELECT CAST(? AS UNSIGNED), ?, 0.1e0, 1e0 / 3, CAST(2.5 AS FLOAT), CAST(? AS TIME), ?",
			      DB_U64(UINT64_MAX), DB_I64(INT64_MIN), DB_STR("-838:59:59"), DB_DBL(0.1), DB_END),
		     0, "%s", db_error(admin));
	db_row row = db_res_next(res);
	cr_assert_str_eq(row[0], "18446744073709551615");
	cr_assert_eq(db_row_u64(row, 0), UINT64_MAX);
	cr_assert_str_eq(row[1], "-9223372036854775808");
	cr_assert_eq(db_row_i64(row, 1), INT64_MIN);
	cr_assert_str_eq(row[2], "0.1");
	cr_assert_eq(db_row_dbl(row, 3), 1.0 / 3);
	cr_assert_str_eq(row[4], "2.5");
	cr_assert_str_eq(row[5], "-838:59:59");
	cr_assert_eq(db_row_dbl(row, 6), 0.1, "a bound double comes back exactly");
	db_res_free(res);
}

Test(db, a_duplicate_key_is_eexist)
{
	cr_assert_eq(db_exec(admin, NULL, "INSERT INTO t (id) VALUES (?)", DB_I64(5), DB_END), 0);
	cr_assert_eq(db_insert_id(admin), 0, "no AUTO_INCREMENT column");
	cr_assert_eq(db_exec(admin, NULL, "INSERT INTO t (id) VALUES (?)", DB_I64(5), DB_END), -EEXIST);
	cr_assert_eq(db_errno(admin), 1062u);
	cr_assert(strstr(db_error(admin), "Duplicate entry '5'"), "%s", db_error(admin));
	/* the next statement clears it */
	cr_assert_eq(db_exec(admin, NULL, "INSERT INTO t (id) VALUES (?)", DB_I64(6), DB_END), 0);
	cr_assert_eq(db_errno(admin), 0);
	/* a syntax error is -EIO with the server's message */
	cr_assert_eq(db_exec(admin, NULL, "SELEC ?", DB_I64(1), DB_END), -EIO);
	cr_assert(strstr(db_error(admin), "SQL syntax"), "%s", db_error(admin));
	/* the AUTO_INCREMENT id of an insert */
	cr_assert_eq(db_exec(admin, NULL,
			     "INSERT INTO audit_log (actor, entity_type, entity_id, action) VALUES (?, ?, ?, ?)",
			     DB_STR("t"), DB_STR("job"), DB_I64(1), DB_STR("x"), DB_END),
		     0, "%s", db_error(admin));
	cr_assert_eq(db_insert_id(admin), (uint64_t)tdb_count(admin, "SELECT MAX(id) FROM audit_log"));
}

/* A prepared statement dies with its connection: after the server killed it and a reconnect, the
 * same statement text (the cache's key) is prepared again on the new connection. */
Test(db, a_statement_runs_again_after_a_reconnect)
{
	struct db *db = connect_as_user();
	static const char sql[] = "SELECT CONNECTION_ID() + ? - ?";
	int64_t id = 0, id2 = 0;
	cr_assert_eq(db_query_i64(db, &id, sql, DB_I64(5), DB_I64(5), DB_END), 0, "%s", db_error(db));
	char kill[64];
	snprintf(kill, sizeof(kill), "KILL CONNECTION %lld", (long long)id);
	tdb_root_exec(kill);
	cr_assert_eq(db_query_i64(db, &id2, sql, DB_I64(5), DB_I64(5), DB_END), -ENOTCONN, "%s", db_error(db));
	cr_assert_eq(db_reconnect(db, NULL), 0, "%s", db_error(db));
	cr_assert_eq(db_query_i64(db, &id2, sql, DB_I64(5), DB_I64(5), DB_END), 0, "%s", db_error(db));
	cr_assert_neq(id2, id, "a new connection");
	/* the same text from another buffer is the same statement */
	char *copy = strdup(sql);
	cr_assert_eq(db_query_i64(db, &id, copy, DB_I64(1), DB_I64(1), DB_END), 0);
	cr_assert_eq(id, id2);
	free(copy);
	db_close(db);
}

/* More statements than the cache holds, and a table changed under a cached statement. */
Test(db, the_statement_cache_evicts_and_follows_a_changed_table)
{
	int64_t v = 0;
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 80; i++) {
			char sql[64];
			snprintf(sql, sizeof(sql), "SELECT ? + %d", i);
			cr_assert_eq(db_query_i64(admin, &v, sql, DB_I64(round), DB_END), 0, "%s", db_error(admin));
			cr_assert_eq(v, i + round);
		}
	struct db *ddl = tdb_connect_admin(DBNAME);
	cr_assert_eq(db_exec(ddl, NULL, "INSERT INTO t (id, n) VALUES (1, 10)", DB_END), 0);
	struct db_res *res = NULL;
	cr_assert_eq(db_query(ddl, &res, "SELECT * FROM t WHERE id = ?", DB_I64(1), DB_END), 0);
	cr_assert_eq(db_res_fields(res), 4);
	db_res_free(res);
	cr_assert_eq(db_exec(ddl, NULL, "ALTER TABLE t ADD COLUMN extra VARCHAR(8) NOT NULL DEFAULT 'new'", DB_END), 0,
		     "%s", db_error(ddl));
	cr_assert_eq(db_query(ddl, &res, "SELECT * FROM t WHERE id = ?", DB_I64(1), DB_END), 0, "%s", db_error(ddl));
	cr_assert_eq(db_res_fields(res), 5);
	cr_assert_str_eq(db_res_field_name(res, 4), "extra");
	db_row row = db_res_next(res);
	cr_assert_str_eq(row[4], "new");
	cr_assert_str_eq(row[3], "10");
	db_res_free(res);
	db_close(ddl);
}

/* The plain-text rule (db.h): a statement the server will not prepare fails with its error; it
 * never goes out as text instead. */
Test(db, a_statement_that_cannot_be_prepared_fails)
{
	cr_assert_eq(db_exec(admin, NULL, "PREPARE s FROM 'SELECT 1'", DB_END), -EIO);
	cr_assert_eq(db_errno(admin), 1295u, "%s", db_error(admin)); /* ER_UNSUPPORTED_PS */
	cr_assert_eq(db_exec(admin, NULL, "SELECT 1", DB_END), 0, "the connection carries on");
}

/* ---- issue 15: database.hosts, transactions run again whole ------------------------------------ */

/* The private server's TCP port (scripts/db keeps it beside the socket). */
static unsigned server_port(void)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s", tdb_socket());
	char *slash = strrchr(path, '/');
	cr_assert(slash);
	snprintf(slash + 1, sizeof(path) - (size_t)(slash + 1 - path), "port");
	FILE *f = fopen(path, "re");
	cr_assert(f, "no %s (scripts/db start writes it)", path);
	unsigned port = 0;
	cr_assert_eq(fscanf(f, "%u", &port), 1);
	fclose(f);
	return port;
}

/* cfg for the daemon's account over TCP with database.hosts = the given ports on 127.0.0.1. */
static void hosts_config(struct uf_config *cfg, const unsigned *ports, size_t n)
{
	/* the daemon's account over TCP is 'usbforge'@'127.0.0.1' (scripts/db): give it this
	 * suite's database as tdb_fresh gave it @localhost */
	tdb_root_exec("GRANT SELECT, INSERT, UPDATE, DELETE ON " DBNAME ".* TO '" TDB_APP_USER "'@'127.0.0.1'");
	tdb_config(cfg, DBNAME);
	free(cfg->db.socket);
	cfg->db.socket = strdup("");
	cfg->db.hosts = calloc(n, sizeof(*cfg->db.hosts));
	cr_assert(cfg->db.hosts);
	cfg->db.n_hosts = n;
	for (size_t i = 0; i < n; i++)
		cfg->db.hosts[i] = (struct uf_db_host){ .host = strdup("127.0.0.1"), .port = ports[i] };
}

Test(db, database_hosts_are_tried_in_order)
{
	/* nothing listens on ports 1 and 2 of the loopback: refused at once */
	unsigned ports[] = { 1, server_port(), 2 };
	struct uf_config cfg;
	hosts_config(&cfg, ports, 3);
	struct db *db = NULL;
	char *err = NULL;
	cr_assert_eq(db_connect(&cfg, &db, &err), 0, "%s", err ? err : "");
	int64_t port = 0;
	cr_assert_eq(db_query_i64(db, &port, "SELECT @@port", DB_END), 0, "%s", db_error(db));
	cr_assert_eq(port, (int64_t)ports[1], "the first entry that answers");
	/* a reconnect starts from the first entry again, and lands on the same one */
	cr_assert_eq(db_reconnect(db, NULL), 0, "%s", db_error(db));
	cr_assert_eq(db_query_i64(db, &port, "SELECT @@port", DB_END), 0);
	cr_assert_eq(port, (int64_t)ports[1]);
	db_close(db);
	config_done(&cfg);

	/* none answers: the message names the key and every entry with its reason */
	unsigned dead[] = { 1, 2 };
	hosts_config(&cfg, dead, 2);
	db = NULL;
	err = NULL;
	cr_assert_eq(db_connect(&cfg, &db, &err), -ENOTCONN);
	cr_assert_null(db);
	cr_assert(err && strstr(err, "no server of database.hosts can be used: database.hosts[0]: ") &&
			  strstr(err, "at 127.0.0.1:1 as 'usbforge'") && strstr(err, "; database.hosts[1]: ") &&
			  strstr(err, "at 127.0.0.1:2 as 'usbforge'"),
		  "%s", err ? err : "(none)");
	free(err);
	config_done(&cfg);
}

/* A real deadlock: txn_a (the victim, having changed fewer rows) is aborted with 1213 halfway;
 * it ignores that error and goes on, as a careless function might: nothing more of that run may
 * reach the server (the session is in autocommit after the abort: its INSERT would be committed
 * alone), the run counts as failed whatever it returns, and the whole transaction runs again. */
struct deadlock {
	struct db *b, *watch;
	int runs;
	int b_result;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool a_holds_row1, b_holds_rows;
};

static void wait_flag(struct deadlock *d, const bool *flag)
{
	pthread_mutex_lock(&d->mu);
	while (!*flag)
		pthread_cond_wait(&d->cv, &d->mu);
	pthread_mutex_unlock(&d->mu);
}

static void set_flag(struct deadlock *d, bool *flag)
{
	pthread_mutex_lock(&d->mu);
	*flag = true;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static void *deadlock_b(void *userdata)
{
	struct deadlock *d = userdata;
	wait_flag(d, &d->a_holds_row1);
	int r = db_begin(d->b);
	/* heavier than a: 40 rows changed, so InnoDB picks a as the victim */
	if (r == 0)
		r = db_exec(d->b, NULL, "UPDATE t SET n = n + 1 WHERE id >= 2 AND id < 42", DB_END);
	set_flag(d, &d->b_holds_rows);
	if (r == 0) /* waits for a's lock on row 1 */
		r = db_exec(d->b, NULL, "UPDATE t SET n = n + 1 WHERE id = 1", DB_END);
	if (r == 0)
		r = db_commit(d->b);
	else
		db_rollback(d->b);
	d->b_result = r;
	return NULL;
}

static int txn_a(struct db *db, void *userdata)
{
	struct deadlock *d = userdata;
	d->runs++;
	int r = db_exec(db, NULL, "UPDATE t SET n = n + 10 WHERE id = 1", DB_END);
	if (r < 0)
		return r;
	if (d->runs == 1) {
		set_flag(d, &d->a_holds_row1);
		wait_flag(d, &d->b_holds_rows);
		/* until b's statement on row 1 is at the server (it cannot end: a holds the row) */
		for (int i = 0; i < 2000; i++) {
			int64_t n = 0;
			cr_assert_eq(db_query_i64(d->watch, &n,
						  "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
						  " WHERE INFO = 'UPDATE t SET n = n + 1 WHERE id = 1'",
						  DB_END),
				     0, "%s", db_error(d->watch));
			if (n)
				break;
			struct timespec ts = { 0, 5 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		r = db_exec(db, NULL, "UPDATE t SET n = n + 10 WHERE id = 2", DB_END);
		cr_expect_eq(r, -EAGAIN, "the deadlock's victim: %d %s", r, db_error(db));
		cr_expect_eq(db_errno(db), 1213u);
		/* carelessly on: refused without reaching the server */
		cr_expect_eq(db_exec(db, NULL, "INSERT INTO t (id, n) VALUES (101, 1)", DB_END), -EAGAIN);
		return 0; /* and a lie: the run failed all the same */
	}
	r = db_exec(db, NULL, "UPDATE t SET n = n + 10 WHERE id = 2", DB_END);
	if (r == 0)
		r = db_exec(db, NULL, "INSERT INTO t (id, n) VALUES (102, 1)", DB_END);
	return r;
}

Test(db, a_deadlocked_transaction_runs_again_whole_and_nothing_of_it_runs_alone)
{
	struct db *a = connect_as_user();
	struct deadlock d = { .b = connect_as_user(),
			      .watch = connect_as_user(),
			      .mu = PTHREAD_MUTEX_INITIALIZER,
			      .cv = PTHREAD_COND_INITIALIZER };
	cr_assert_eq(db_exec(a, NULL, "INSERT INTO t (id, n) SELECT seq, 0 FROM seq_1_to_50", DB_END), 0, "%s",
		     db_error(a));
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, deadlock_b, &d), 0);
	int r = db_transaction(a, txn_a, &d);
	pthread_join(th, NULL);
	cr_assert_eq(r, 0, "%s", db_error(a));
	cr_assert_eq(d.b_result, 0, "b committed: %s", db_error(d.b));
	cr_assert_eq(d.runs, 2, "the victim ran again");
	cr_assert_eq(tdb_count(admin, "SELECT n FROM t WHERE id = 1"), 11, "a's +10 once, b's +1");
	cr_assert_eq(tdb_count(admin, "SELECT n FROM t WHERE id = 2"), 11);
	cr_assert_eq(tdb_count(admin, "SELECT COUNT(*) FROM t WHERE id = 101"), 0,
		     "the aborted run's INSERT never ran alone");
	cr_assert_eq(tdb_count(admin, "SELECT COUNT(*) FROM t WHERE id = 102"), 1);
	db_close(d.watch);
	db_close(d.b);
	db_close(a);
}

/* The server goes away halfway through a transaction (before COMMIT): it is run again whole on
 * a new connection (with database.hosts, the next server that answers). */
struct lost {
	int runs;
};

static int txn_lost(struct db *db, void *userdata)
{
	struct lost *l = userdata;
	l->runs++;
	int r = db_exec(db, NULL, "INSERT INTO t (id, n) VALUES (200 + ?, 1)", DB_I64(l->runs), DB_END);
	if (r < 0 || l->runs > 1)
		return r;
	int64_t id = 0;
	r = db_query_i64(db, &id, "SELECT CONNECTION_ID()", DB_END);
	if (r < 0)
		return r;
	char kill[64];
	snprintf(kill, sizeof(kill), "KILL CONNECTION %lld", (long long)id);
	tdb_root_exec(kill);
	return db_exec(db, NULL, "INSERT INTO t (id, n) VALUES (299, 1)", DB_END);
}

Test(db, a_transaction_that_lost_its_server_runs_again_on_a_new_connection)
{
	unsigned ports[] = { 1, server_port() };
	struct uf_config cfg;
	hosts_config(&cfg, ports, 2);
	struct db *db = NULL;
	char *err = NULL;
	cr_assert_eq(db_connect(&cfg, &db, &err), 0, "%s", err ? err : "");
	config_done(&cfg);
	struct lost l = { 0 };
	cr_assert_eq(db_transaction(db, txn_lost, &l), 0, "%s", db_error(db));
	cr_assert_eq(l.runs, 2);
	cr_assert_eq(tdb_count(admin, "SELECT COUNT(*) FROM t WHERE id IN (201, 299)"), 0,
		     "nothing of the lost run was committed");
	cr_assert_eq(tdb_count(admin, "SELECT COUNT(*) FROM t WHERE id = 202"), 1);
	db_close(db);
}
