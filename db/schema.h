/* Schema migrations: the tables, indexes, CHECK constraints and views of DESIGN.md "Schema",
 * as numbered migrations recorded in schema_migrations. */
#pragma once

#include "db/db.h"

/* Bring the connected database to the newest schema version. Idempotent: a database already
 * current is left unchanged; an older one is upgraded in place without losing rows. Concurrent
 * callers are serialized with GET_LOCK. *ret_applied (may be NULL) = migrations applied now.
 * Errors from the server as db.h maps them, except that a statement refused for want of a
 * privilege is -EACCES (the connected account lacks CREATE, ALTER…: the admin account's work);
 * db_error() says which statement failed. The privileges the migrations need on the schema:
 * SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, REFERENCES, CREATE VIEW, TRIGGER
 * (DB_ADMIN_PRIVILEGES); the daemon and the CLI need only DB_APP_PRIVILEGES. */
#define DB_APP_PRIVILEGES   "SELECT, INSERT, UPDATE, DELETE"
#define DB_ADMIN_PRIVILEGES DB_APP_PRIVILEGES ", CREATE, ALTER, INDEX, DROP, REFERENCES, CREATE VIEW, TRIGGER"
int db_migrate(struct db *db, int *ret_applied);
/* Newest version this build knows. */
int db_schema_latest(void);
/* Version recorded in the database (0 when none). */
int db_schema_current(struct db *db, int *ret);
/* The claim query's WHERE/ORDER BY as used by the claimer, for EXPLAIN in tests: a complete
 * SELECT with '?' for (station, device size, tolerance-scaled size, device size). */
extern const char db_claim_select_sql[];
