/* db/db.c against the real MariaDB: a connection that loses its server and cannot get it back
 * is down, not dangling. Every call then returns -ENOTCONN with a message and never hands the
 * client library a NULL or dead handle (issue 10: usbforged died with SIGSEGV in libmariadb
 * when a reconnect failed); a later reconnect brings it back. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
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
