/* Implementation of tests/helpers/testdb.h. */
#include "helpers/testdb.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db/jobs.h"
#include "db/orders.h"
#include "db/schema.h"
#include "helpers/testutil.h"

static char socket_path[4096];

static void socket_path_init(void)
{
	const char *s = getenv("UF_DB_SOCKET");
	if (s && *s)
		snprintf(socket_path, sizeof(socket_path), "%s", s);
	else
		snprintf(socket_path, sizeof(socket_path), "%s/.run/db/sock", tu_source_dir());
}

const char *tdb_socket(void)
{
	/* computed once: suites call this from several threads at a time */
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, socket_path_init);
	return socket_path;
}

void tdb_config(struct uf_config *cfg, const char *dbname)
{
	cr_assert_eq(config_init_defaults(cfg), 0);
	free(cfg->db.socket);
	cfg->db.socket = strdup(tdb_socket());
	free(cfg->db.user);
	cfg->db.user = strdup("root");
	free(cfg->db.password);
	cfg->db.password = NULL;
	free(cfg->db.name);
	cfg->db.name = strdup(dbname);
	free(cfg->station);
	cfg->station = strdup("test-station");
}

struct db *tdb_connect(const char *dbname)
{
	struct uf_config cfg;
	struct db *db = NULL;
	char *err = NULL;
	tdb_config(&cfg, dbname);
	int r = db_connect_to(&cfg, dbname, &db, &err);
	cr_assert_eq(r, 0, "connect to test database %s: %s (is scripts/db start running?)", dbname, err ? err : "?");
	config_done(&cfg);
	return db;
}

struct db *tdb_fresh(const char *dbname)
{
	struct db *root = NULL;
	struct uf_config cfg;
	char *err = NULL;
	char *q = NULL;
	tdb_config(&cfg, dbname);
	int r = db_connect_to(&cfg, NULL, &root, &err);
	cr_assert_eq(r, 0, "connect: %s", err ? err : "?");
	cr_assert(asprintf(&q, "DROP DATABASE IF EXISTS `%s`", dbname) > 0);
	cr_assert_eq(db_exec(root, NULL, q, DB_END), 0, "%s", db_error(root));
	free(q);
	cr_assert(asprintf(&q, "CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", dbname) > 0);
	cr_assert_eq(db_exec(root, NULL, q, DB_END), 0, "%s", db_error(root));
	free(q);
	db_close(root);
	config_done(&cfg);
	struct db *db = tdb_connect(dbname);
	int applied = -1;
	cr_assert_eq(db_migrate(db, &applied), 0, "migrate: %s", db_error(db));
	cr_assert_eq(applied, db_schema_latest());
	return db;
}

long long tdb_count(struct db *db, const char *sql)
{
	int64_t v = -1;
	int r = db_query_i64(db, &v, sql, DB_END);
	cr_assert_eq(r, 0, "%s: %s", sql, db_error(db));
	return (long long)v;
}

char *tdb_write_config_as(const char *dir, const char *name, const char *dbname, const char *user, const char *password,
			  const char *extra)
{
	char *path = tu_path(dir, name);
	FILE *f = fopen(path, "we");
	cr_assert(f, "fopen %s", path);
	fprintf(f,
		"station = \"test-station\";\n"
		"database = { socket = \"%s\"; user = \"%s\"; name = \"%s\"; %s%s%s};\n"
		"%s\n",
		tdb_socket(), user, dbname, password ? "password = \"" : "", password ? password : "",
		password ? "\"; " : "", extra ? extra : "");
	cr_assert_eq(fclose(f), 0);
	/* an inline password: the file must not be readable by others */
	cr_assert_eq(chmod(path, 0600), 0);
	return path;
}

char *tdb_write_config(const char *dir, const char *dbname, const char *extra)
{
	return tdb_write_config_as(dir, "usbforge.conf", dbname, "root", NULL, extra);
}

void tdb_user(struct db *db, const char *user, const char *password, const char *dbname)
{
	char sql[512];
	snprintf(sql, sizeof(sql), "DROP USER IF EXISTS '%s'@'localhost'", user);
	cr_assert_eq(db_exec(db, NULL, sql, DB_END), 0, "%s", db_error(db));
	snprintf(sql, sizeof(sql), "CREATE USER '%s'@'localhost' IDENTIFIED BY '%s'", user, password);
	cr_assert_eq(db_exec(db, NULL, sql, DB_END), 0, "%s", db_error(db));
	snprintf(sql, sizeof(sql), "GRANT ALL ON `%s`.* TO '%s'@'localhost'", dbname, user);
	cr_assert_eq(db_exec(db, NULL, sql, DB_END), 0, "%s", db_error(db));
}

int tdb_user_lock(struct db *db, const char *user, bool locked)
{
	char sql[256];
	snprintf(sql, sizeof(sql), "ALTER USER '%s'@'localhost' ACCOUNT %s", user, locked ? "LOCK" : "UNLOCK");
	cr_assert_eq(db_exec(db, NULL, sql, DB_END), 0, "%s", db_error(db));
	if (!locked)
		return 0;
	/* and cut every connection it has */
	MYSQL_RES *res = NULL;
	int kills = 0;
	cr_assert_eq(db_query(db, &res, "SELECT id FROM information_schema.processlist WHERE user = ?", DB_STR(user),
			      DB_END),
		     0);
	MYSQL_ROW row;
	while ((row = mysql_fetch_row(res)))
		if (db_exec(db, NULL, "KILL CONNECTION ?", DB_I64(db_row_i64(row, 0)), DB_END) == 0)
			kills++;
	mysql_free_result(res);
	return kills;
}

void tdb_order_confirmed(struct db *db, const char *number, int qty)
{
	struct order_new o = { .number = number, .capacity_bytes = 1 << 20, .quantity = qty, .image_path = "/dev/null" };
	int64_t oid;
	cr_assert_eq(order_add(db, &o, &oid), 0, "%s", db_error(db));
	json_t *r = NULL;
	cr_assert_eq(order_confirm(db, number, NULL, 4, "t", &r), 0, "%s", db_error(db));
	json_decref(r);
}

struct claimed_job *tdb_claim(struct db *db, const char *worker_id, const char *serial)
{
	struct claim_req q = { .worker_id = worker_id,
			       .station = "test-station",
			       .slot = "A",
			       .device_serial = serial,
			       .device_bytes = 1 << 30 };
	struct claimed_job *j = NULL;
	cr_assert_eq(job_claim(db, &q, &j), 0, "%s", db_error(db));
	return j;
}
