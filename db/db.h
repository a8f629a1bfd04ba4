/* MariaDB/MySQL access: one connection (struct db) with the session set up the way every
 * usbforge query expects (utf8mb4, UTC, server clock), typed placeholder queries, transactions
 * with retry on deadlock/lock-wait, and the mapping of server errors to -errno.
 *
 * Queries use '?' placeholders filled from typed arguments (DB_I64(x), DB_STR(s), …, DB_END):
 * strings are escaped with mysql_real_escape_string for the connection's character set and
 * quoted; a NULL string becomes SQL NULL. Nothing else is ever pasted into SQL text.
 *
 * Errors: -EEXIST duplicate key (1062), -EAGAIN deadlock/lock wait/record changed (1213, 1205,
 * 1020: retry the transaction), -ENOTCONN connection lost or refused (2002, 2003, 2006, 2013),
 * -EPERM CHECK constraint violated (4025, 3819), -EPROTO server too old, -EIO anything else;
 * -ENOTCONN also while the connection is down after a failed reconnect.
 * db_error() gives the server's message for the last failure. A struct db is used by one thread
 * at a time. */
#pragma once

#include <mysql.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

struct db;

enum db_arg_type { DBA_END, DBA_I64, DBA_U64, DBA_DBL, DBA_STR, DBA_NULL, DBA_RAW };
struct db_arg {
	enum db_arg_type type;
	union {
		int64_t i;
		uint64_t u;
		double d;
		const char *s;
	};
};
#define DB_I64(x) ((struct db_arg){ .type = DBA_I64, .i = (int64_t)(x) })
#define DB_U64(x) ((struct db_arg){ .type = DBA_U64, .u = (uint64_t)(x) })
#define DB_DBL(x) ((struct db_arg){ .type = DBA_DBL, .d = (double)(x) })
#define DB_STR(x) ((struct db_arg){ .type = DBA_STR, .s = (x) })
#define DB_NULL	  ((struct db_arg){ .type = DBA_NULL })
/* Pasted verbatim: only for SQL fragments built from constants, never from input. */
#define DB_RAW(x) ((struct db_arg){ .type = DBA_RAW, .s = (x) })
#define DB_END	  ((struct db_arg){ .type = DBA_END })

/* Connect with cfg->db (socket when set, else host:port), check the server version (MariaDB
 * ≥ 10.6 or MySQL ≥ 8.0.1, for SKIP LOCKED; an older server is -EPROTO with a message saying
 * so), set utf8mb4, time_zone '+00:00', READ COMMITTED. On failure *ret_error (malloc'd) says
 * what and where ("cannot connect to MariaDB at /run/mysqld/mysqld.sock as usbforge: …"). */
int db_connect(const struct uf_config *cfg, struct db **ret, char **ret_error);
/* Same, to an explicit database name (tests make one per suite); name NULL = none selected. */
int db_connect_to(const struct uf_config *cfg, const char *dbname, struct db **ret, char **ret_error);
struct db *db_close(struct db *db);
/* Why a server (its version string: "10.11.6-MariaDB-…", "8.0.36") cannot serve usbforge, or
 * NULL when it can: MariaDB ≥ 10.6 (FOR UPDATE SKIP LOCKED). MySQL has SKIP LOCKED from 8.0.1,
 * but the schema is written and tested for MariaDB only (PERSISTENT generated columns,
 * ALTER … IF NOT EXISTS, seq tables in tests), and MySQL enforces CHECK constraints only from
 * 8.0.16: rather than fail half-way through `db migrate`, a MySQL server is refused here with
 * that reason. The result is a static string. */
const char *db_version_problem(const char *version);
static inline bool db_version_supported(const char *version) { return !db_version_problem(version); }
/* Reconnect a connection whose server went away (ret_error may be NULL). When it fails the
 * connection is down: every call below returns -ENOTCONN (db_error says why) without touching
 * the client library, until a later db_reconnect succeeds. A struct db is never left with a
 * dead or NULL handle that the client library could be given. */
int db_reconnect(struct db *db, char **ret_error);
/* Whether the connection has a handle (it may still turn out lost on the next statement). */
bool db_is_up(const struct db *db);

const char *db_error(struct db *db);
unsigned db_errno(struct db *db);
/* Make db_error()/db_errno() report msg (copied) and err again, e.g. after a clean-up statement
 * that followed the failure a caller must see. */
void db_set_error(struct db *db, unsigned err, const char *msg);
/* "10.11.6-MariaDB-…" */
const char *db_server_version(struct db *db);

/* Run one statement; *ret_affected (may be NULL) = affected rows. */
int db_exec(struct db *db, uint64_t *ret_affected, const char *sql, ...);
/* Run one query; *ret = stored result (mysql_free_result it). */
int db_query(struct db *db, MYSQL_RES **ret, const char *sql, ...);
/* Run a query returning one row's first column as int64. -ENOENT when no row; NULL → 0. */
int db_query_i64(struct db *db, int64_t *ret, const char *sql, ...);
/* Last AUTO_INCREMENT id. */
uint64_t db_insert_id(struct db *db);

int db_begin(struct db *db);
int db_commit(struct db *db);
/* Never fails visibly (a rollback on a dead connection is moot). */
void db_rollback(struct db *db);

/* Run fn in a transaction, retried (up to 8 times) when it returns -EAGAIN (deadlock, lock
 * wait timeout). fn returns 0 to commit, < 0 to roll back and return that error. */
int db_transaction(struct db *db, int (*fn)(struct db *db, void *userdata), void *userdata);

/* Build a SQL text with the placeholders filled (exposed for tests and for db_exec's users
 * that need the text, e.g. EXPLAIN). Returns malloc'd SQL or NULL on bad arguments. */
char *db_format(struct db *db, const char *sql, const struct db_arg *args, size_t n);

/* Row helpers: column i of row as int64/uint64 (0 when NULL), string (NULL when NULL). */
int64_t db_row_i64(MYSQL_ROW row, unsigned i);
uint64_t db_row_u64(MYSQL_ROW row, unsigned i);
double db_row_dbl(MYSQL_ROW row, unsigned i);

static inline void db_result_freep(MYSQL_RES **r)
{
	if (*r)
		mysql_free_result(*r);
}
#define _cleanup_result_ __attribute__((cleanup(db_result_freep)))
