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

static char pw_file[2][4096];

static void pw_files_init(void)
{
	static const char *const env[2] = { "UF_DB_PASSWORD_FILE", "UF_DB_ADMIN_PASSWORD_FILE" };
	static const char *const name[2] = { "password", "admin.password" };
	const char *sock = tdb_socket();
	const char *slash = strrchr(sock, '/');
	int dirlen = slash ? (int)(slash - sock) : 1;
	for (int i = 0; i < 2; i++) {
		const char *e = getenv(env[i]);
		if (e && *e)
			snprintf(pw_file[i], sizeof(pw_file[i]), "%s", e);
		else
			snprintf(pw_file[i], sizeof(pw_file[i]), "%.*s/%s", dirlen, slash ? sock : ".", name[i]);
	}
}

const char *tdb_password_file(bool admin)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, pw_files_init);
	return pw_file[admin];
}

static char *read_password(bool admin)
{
	const char *p = tdb_password_file(admin);
	FILE *f = fopen(p, "re");
	cr_assert_not_null(f, "cannot read %s (scripts/db start makes it)", p);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	fclose(f);
	cr_assert_gt(n, 0, "%s is empty", p);
	if (line[n - 1] == '\n')
		line[n - 1] = '\0';
	return line;
}

static void base_config(struct uf_config *cfg, const char *dbname, const char *user, char *password)
{
	cr_assert_eq(config_init_defaults(cfg), 0);
	free(cfg->db.socket);
	cfg->db.socket = strdup(tdb_socket());
	free(cfg->db.user);
	cfg->db.user = strdup(user);
	free(cfg->db.password);
	cfg->db.password = password;
	free(cfg->db.name);
	cfg->db.name = strdup(dbname);
	free(cfg->station);
	cfg->station = strdup("test-station");
}

void tdb_config(struct uf_config *cfg, const char *dbname)
{
	base_config(cfg, dbname, TDB_APP_USER, read_password(false));
	cfg->db.admin.user = strdup(TDB_ADMIN_USER);
	cfg->db.admin.password_file = strdup(tdb_password_file(true));
}

static struct db *connect_as(const char *user, char *password, const char *dbname)
{
	struct uf_config cfg;
	struct db *db = NULL;
	char *err = NULL;
	base_config(&cfg, dbname ? dbname : "usbforge", user, password);
	int r = db_connect_to(&cfg, dbname, &db, &err);
	cr_assert_eq(r, 0, "connect to test database %s as %s: %s (is scripts/db start running?)",
		     dbname ? dbname : "(none)", user, err ? err : "?");
	config_done(&cfg);
	return db;
}

struct db *tdb_connect(const char *dbname) { return connect_as(TDB_APP_USER, read_password(false), dbname); }
struct db *tdb_connect_admin(const char *dbname) { return connect_as(TDB_ADMIN_USER, read_password(true), dbname); }
static struct db *connect_root(void) { return connect_as("root", NULL, NULL); }

void tdb_root_exec(const char *sql)
{
	struct db *root = connect_root();
	cr_assert_eq(db_exec(root, NULL, sql, DB_END), 0, "%s: %s", sql, db_error(root));
	db_close(root);
}

/* user@localhost gets exactly privs on dbname (what it had there before is revoked). */
static void grant_exactly(struct db *root, const char *privs, const char *dbname, const char *user)
{
	char *q = NULL;
	cr_assert(asprintf(&q, "REVOKE ALL PRIVILEGES ON `%s`.* FROM '%s'@'localhost'", dbname, user) > 0);
	(void)db_exec(root, NULL, q, DB_END); /* 1141 when it had none */
	free(q);
	cr_assert(asprintf(&q, "GRANT %s ON `%s`.* TO '%s'@'localhost'", privs, dbname, user) > 0);
	cr_assert_eq(db_exec(root, NULL, q, DB_END), 0, "%s: %s", q, db_error(root));
	free(q);
}

void tdb_empty(const char *dbname)
{
	struct db *root = connect_root();
	char *q = NULL;
	cr_assert(asprintf(&q, "DROP DATABASE IF EXISTS `%s`", dbname) > 0);
	cr_assert_eq(db_exec(root, NULL, q, DB_END), 0, "%s", db_error(root));
	free(q);
	cr_assert(asprintf(&q, "CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", dbname) > 0);
	cr_assert_eq(db_exec(root, NULL, q, DB_END), 0, "%s", db_error(root));
	free(q);
	grant_exactly(root, DB_APP_PRIVILEGES, dbname, TDB_APP_USER);
	grant_exactly(root, DB_ADMIN_PRIVILEGES, dbname, TDB_ADMIN_USER);
	db_close(root);
}

struct db *tdb_fresh(const char *dbname)
{
	tdb_empty(dbname);
	struct db *adm = tdb_connect_admin(dbname);
	int applied = -1;
	cr_assert_eq(db_migrate(adm, &applied), 0, "migrate: %s", db_error(adm));
	cr_assert_eq(applied, db_schema_latest());
	db_close(adm);
	return tdb_connect(dbname);
}

long long tdb_count(struct db *db, const char *sql)
{
	int64_t v = -1;
	int r = db_query_i64(db, &v, sql, DB_END);
	cr_assert_eq(r, 0, "%s: %s", sql, db_error(db));
	return (long long)v;
}

char *tdb_database_conf(const char *dbname)
{
	char *t = NULL;
	cr_assert(asprintf(&t,
			   "database = { socket = \"%s\"; user = \"" TDB_APP_USER "\"; password_file = \"%s\";"
			   " name = \"%s\";\n  admin = { user = \"" TDB_ADMIN_USER "\"; password_file = \"%s\"; }; };",
			   tdb_socket(), tdb_password_file(false), dbname, tdb_password_file(true)) > 0);
	return t;
}

char *tdb_write_config_as(const char *dir, const char *name, const char *dbname, const char *user, const char *password,
			  const char *extra)
{
	return tdb_write_config_station(dir, name, dbname, user, password, "test-station", extra);
}

char *tdb_write_config_station(const char *dir, const char *name, const char *dbname, const char *user,
			       const char *password, const char *station, const char *extra)
{
	char *path = tu_path(dir, name);
	FILE *f = fopen(path, "we");
	cr_assert(f, "fopen %s", path);
	if (!user) {
		char *d = tdb_database_conf(dbname);
		fprintf(f, "station = \"%s\";\n%s\n%s\n", station, d, extra ? extra : "");
		free(d);
	} else
		fprintf(f,
			"station = \"%s\";\n"
			"database = { socket = \"%s\"; user = \"%s\"; name = \"%s\"; %s%s%s};\n"
			"%s\n",
			station, tdb_socket(), user, dbname, password ? "password = \"" : "", password ? password : "",
			password ? "\"; " : "", extra ? extra : "");
	cr_assert_eq(fclose(f), 0);
	/* an inline password: the file must not be readable by others */
	cr_assert_eq(chmod(path, 0600), 0);
	return path;
}

char *tdb_write_config(const char *dir, const char *dbname, const char *extra)
{
	return tdb_write_config_as(dir, "usbforge.conf", dbname, NULL, NULL, extra);
}

void tdb_user(struct db *db, const char *user, const char *password, const char *dbname)
{
	(void)db;
	struct db *root = connect_root();
	char sql[512];
	snprintf(sql, sizeof(sql), "DROP USER IF EXISTS '%s'@'localhost'", user);
	cr_assert_eq(db_exec(root, NULL, sql, DB_END), 0, "%s", db_error(root));
	snprintf(sql, sizeof(sql), "CREATE USER '%s'@'localhost' IDENTIFIED BY '%s'", user, password);
	cr_assert_eq(db_exec(root, NULL, sql, DB_END), 0, "%s", db_error(root));
	snprintf(sql, sizeof(sql), "GRANT " DB_APP_PRIVILEGES " ON `%s`.* TO '%s'@'localhost'", dbname, user);
	cr_assert_eq(db_exec(root, NULL, sql, DB_END), 0, "%s", db_error(root));
	db_close(root);
}

int tdb_user_lock(struct db *db, const char *user, bool locked)
{
	(void)db;
	struct db *root = connect_root();
	char sql[256];
	snprintf(sql, sizeof(sql), "ALTER USER '%s'@'localhost' ACCOUNT %s", user, locked ? "LOCK" : "UNLOCK");
	cr_assert_eq(db_exec(root, NULL, sql, DB_END), 0, "%s", db_error(root));
	int kills = 0;
	if (locked) {
		/* and cut every connection it has */
		struct db_res *res = NULL;
		cr_assert_eq(db_query(root, &res, "SELECT id FROM information_schema.processlist WHERE user = ?",
				      DB_STR(user), DB_END),
			     0);
		db_row row;
		while ((row = db_res_next(res)))
			if (db_exec(root, NULL, "KILL CONNECTION ?", DB_I64(db_row_i64(row, 0)), DB_END) == 0)
				kills++;
		db_res_free(res);
	}
	db_close(root);
	return kills;
}

void tdb_order_confirmed(struct db *db, const char *number, int qty)
{
	struct order_new o = { .number = number, .capacity_bytes = 1 << 20, .quantity = qty, .image_path = "/dev/null" };
	int64_t oid;
	cr_assert_eq(order_add(db, &o, &oid), 0, "%s", db_error(db));
	struct order_confirmation r = { 0 };
	cr_assert_eq(order_confirm(db, number, NULL, 4, "t", &r), 0, "%s", db_error(db));
	order_confirmation_done(&r);
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
