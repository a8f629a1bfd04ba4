/* Database fixtures for the suites that need the private MariaDB (scripts/db start; ctest's
 * "db" fixture starts it). Each suite works in a database of its own, dropped and recreated at
 * the start, so suites can run in parallel and a test never sees another's rows.
 *
 * Accounts, as on a kiosk (README "Using an existing MariaDB server"): scripts/db makes the
 * daemon's account TDB_APP_USER (SELECT, INSERT, UPDATE, DELETE) and the admin account
 * TDB_ADMIN_USER (the same plus the DDL of db migrate); tdb_fresh grants both exactly that on the
 * suite's database. Migrations run as the admin account, everything else as the daemon's: what
 * the product does in a test is proven to need no more. root (through the socket) only sets
 * up: databases, accounts, grants, and cutting connections. */
#pragma once

#include "config/config.h"
#include "db/db.h"

#define TDB_APP_USER   "usbforge"
#define TDB_ADMIN_USER "usbforge_admin"

/* The socket of the private server: $UF_DB_SOCKET, else $UF_SOURCE_DIR/.run/db/sock. */
const char *tdb_socket(void);
/* The accounts' password files: $UF_DB_PASSWORD_FILE / $UF_DB_ADMIN_PASSWORD_FILE, else
 * "password" / "admin.password" beside the socket (scripts/db's layout). */
const char *tdb_password_file(bool admin);
/* Config pointing at the private server through the socket, database dbname, as the daemon's
 * account (password read from its file; database.admin names the admin account). */
void tdb_config(struct uf_config *cfg, const char *dbname);
/* Drop and create database dbname (empty) and grant the two accounts their privileges on it.
 * Asserts. */
void tdb_empty(const char *dbname);
/* Drop and create database dbname, grant the two accounts their privileges on it, migrate it as
 * the admin account, and return a connection to it as the daemon's account. Asserts. */
struct db *tdb_fresh(const char *dbname);
/* Another connection to an existing test database, as the daemon's account. Asserts. */
struct db *tdb_connect(const char *dbname);
/* The same as the admin account (migrations, and the DDL a test does to fake an old schema). */
struct db *tdb_connect_admin(const char *dbname);
/* One statement as root (DROP USER, …). Asserts it succeeds. */
void tdb_root_exec(const char *sql);
/* SELECT returning one integer (asserts it succeeds). */
long long tdb_count(struct db *db, const char *sql);
/* The "database = { … };" line of a config file for dbname as the daemon's account (with its
 * password_file, and database.admin for db migrate). malloc'd. */
char *tdb_database_conf(const char *dbname);
/* Write a config file for CLI/daemon runs into dir; returns its malloc'd path. extra is
 * appended verbatim (e.g. a usb = {...} block). */
char *tdb_write_config(const char *dir, const char *dbname, const char *extra);
/* The same as file dir/name, connecting as user (NULL: the daemon's account as in
 * tdb_write_config; else with password inline when not NULL, mode 0600). */
char *tdb_write_config_as(const char *dir, const char *name, const char *dbname, const char *user, const char *password,
			  const char *extra);
/* The same for a kiosk of station (tdb_write_config_as's is "test-station"). */
char *tdb_write_config_station(const char *dir, const char *name, const char *dbname, const char *user,
			       const char *password, const char *station, const char *extra);
/* (Re)create user@localhost with password and the daemon's privileges (SELECT, INSERT, UPDATE,
 * DELETE) on dbname: a suite that cuts its daemon off the database does it to an account of its
 * own, not to the other suites' sessions. Done as root; db is not used. */
void tdb_user(struct db *db, const char *user, const char *password, const char *dbname);
/* Lock (new connections refused, and every connection it has killed; returns how many) or
 * unlock the account. Done as root; db is not used. Asserts. */
int tdb_user_lock(struct db *db, const char *user, bool locked);

struct claimed_job;
/* Add order number (an image order of /dev/null, 1 MiB nominal, qty units, any station) and
 * confirm it with 4 attempts per job. Asserts. */
void tdb_order_confirmed(struct db *db, const char *number, int qty);
/* Claim the next job as worker_id on a 1 GiB stick (serial may be NULL) in slot "A" of
 * station "test-station". Asserts that one is claimed. */
struct claimed_job *tdb_claim(struct db *db, const char *worker_id, const char *serial);
