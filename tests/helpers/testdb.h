/* Database fixtures for the suites that need the private MariaDB (scripts/db start; ctest's
 * "db" fixture starts it). Each suite works in a database of its own, dropped and recreated at
 * the start, so suites can run in parallel and a test never sees another's rows. */
#pragma once

#include "config/config.h"
#include "db/db.h"

/* The socket of the private server: $UF_DB_SOCKET, else $UF_SOURCE_DIR/.run/db/sock. */
const char *tdb_socket(void);
/* Config pointing at the private server as root through the socket, database dbname. */
void tdb_config(struct uf_config *cfg, const char *dbname);
/* Drop and create database dbname, migrate it, and return a connection to it. Asserts. */
struct db *tdb_fresh(const char *dbname);
/* Another connection to an existing test database. Asserts. */
struct db *tdb_connect(const char *dbname);
/* SELECT returning one integer (asserts it succeeds). */
long long tdb_count(struct db *db, const char *sql);
/* Write a config file for CLI/daemon runs into dir; returns its malloc'd path. extra is
 * appended verbatim (e.g. a usb = {...} block). */
char *tdb_write_config(const char *dir, const char *dbname, const char *extra);
/* The same as file dir/name, connecting as user (password inline when not NULL; mode 0600). */
char *tdb_write_config_as(const char *dir, const char *name, const char *dbname, const char *user, const char *password,
			  const char *extra);
/* (Re)create user@localhost with password and every right on dbname: a suite that cuts its
 * daemon off the database does it to an account of its own, not to root's other sessions. */
void tdb_user(struct db *db, const char *user, const char *password, const char *dbname);
/* Lock (new connections refused, and every connection it has killed; returns how many) or
 * unlock the account. Asserts. */
int tdb_user_lock(struct db *db, const char *user, bool locked);

struct claimed_job;
/* Add order number (an image order of /dev/null, 1 MiB nominal, qty units, any station) and
 * confirm it with 4 attempts per job. Asserts. */
void tdb_order_confirmed(struct db *db, const char *number, int qty);
/* Claim the next job as worker_id on a 1 GiB stick (serial may be NULL) in slot "A" of
 * station "test-station". Asserts that one is claimed. */
struct claimed_job *tdb_claim(struct db *db, const char *worker_id, const char *serial);
