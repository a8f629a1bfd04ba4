/* MariaDB/MySQL access: one connection (struct db) with the session set up the way every
 * usbforge query expects (utf8mb4, UTC, server clock), statements with typed placeholders run as
 * prepared statements, transactions with retry on deadlock/lock-wait, and the mapping of server
 * errors to -errno. db/ is the only code that sees the client library: this header declares no
 * MYSQL_* type, and results come back as struct db_res.
 *
 * Statements use '?' placeholders bound from typed arguments (DB_I64(x), DB_STR(s), …, DB_END)
 * through the C API's prepared statements (mysql_stmt_prepare, mysql_stmt_bind_param): a value
 * travels beside the SQL text, never inside it, so no value is ever escaped or pasted into SQL
 * on the client. A NULL string binds SQL NULL. The SQL text is a constant of the caller's, or
 * built from constants only (a table name in a test, never input).
 * The rule for plain text (mysql_real_query): only a statement that carries no runtime value may
 * be sent that way, and only db.c does it (the session set-up at connect, ROLLBACK). Every
 * statement given to db_exec/db_query/db_query_i64 is prepared, DDL included: MariaDB >= 10.6
 * prepares every statement but PREPARE/EXECUTE/DEALLOCATE themselves, which usbforge never
 * sends; one the server refuses to prepare fails with its error rather than go out as text.
 * Prepared statements are kept per connection (a small cache keyed by the SQL text) and die with
 * it: a reconnect starts with none.
 *
 * Errors: -EEXIST duplicate key (1062), -EAGAIN deadlock/lock wait/record changed (1213, 1205,
 * 1020: retry the transaction; 1213 is also Galera's certification failure and brute-force
 * abort), -ENOTCONN connection lost or refused (2002, 2003, 2006, 2013) or a Galera node that is
 * not ready (1047 "WSREP has not yet prepared node for application use"),
 * -EPERM CHECK constraint violated (4025, 3819), -EPROTO server too old, -EINVAL arguments that
 * do not match the placeholders (or a result asked of a statement that has none), -ENOMEM,
 * -EIO anything else; -ENOTCONN also while the connection is down after a failed reconnect.
 * db_error() gives the server's message for the last failure. A struct db is used by one thread
 * at a time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct db;

enum db_arg_type { DBA_END, DBA_I64, DBA_U64, DBA_DBL, DBA_STR, DBA_NULL };
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
#define DB_END	  ((struct db_arg){ .type = DBA_END })

/* Connect with cfg->db (socket when set, else each server of database.hosts in their order until
 * one serves, else host:port), check the server version (MariaDB ≥ 10.6 or MySQL ≥ 8.0.1, for
 * SKIP LOCKED; an older server is -EPROTO with a message saying so), skip a Galera node whose
 * wsrep_ready is OFF (not in the primary component), set utf8mb4, time_zone '+00:00', READ
 * COMMITTED. On failure *ret_error (malloc'd) says what and where ("cannot connect to MariaDB at
 * /run/mysqld/mysqld.sock as usbforge: …"; with database.hosts: "no server of database.hosts
 * can be used: database.hosts[0]: …; database.hosts[1]: …"). */
int db_connect(const struct uf_config *cfg, struct db **ret, char **ret_error);
/* Same, to an explicit database name (tests make one per suite); name NULL = none selected. */
int db_connect_to(const struct uf_config *cfg, const char *dbname, struct db **ret, char **ret_error);
struct db *db_close(struct db *db);
static inline void db_closep(struct db **db) { db_close(*db); }
/* Why a server (its version string: "10.11.6-MariaDB-…", "8.0.36") cannot serve usbforge, or
 * NULL when it can: MariaDB ≥ 10.6 (FOR UPDATE SKIP LOCKED). MySQL has SKIP LOCKED from 8.0.1,
 * but the schema is written and tested for MariaDB only (PERSISTENT generated columns,
 * ALTER … IF NOT EXISTS, seq tables in tests), and MySQL enforces CHECK constraints only from
 * 8.0.16: rather than fail half-way through `db migrate`, a MySQL server is refused here with
 * that reason. The result is a static string. */
const char *db_version_problem(const char *version);
static inline bool db_version_supported(const char *version) { return !db_version_problem(version); }
/* Reconnect a connection whose server went away (ret_error may be NULL), trying the servers
 * from the first of database.hosts again, as db_connect does. When it fails the
 * connection is down: every call below returns -ENOTCONN (db_error says why) without touching
 * the client library, until a later db_reconnect succeeds. A struct db is never left with a
 * dead or NULL handle that the client library could be given. */
int db_reconnect(struct db *db, char **ret_error);
/* Whether the connection has a handle (it may still turn out lost on the next statement). */
bool db_is_up(const struct db *db);

const char *db_error(struct db *db);
unsigned db_errno(struct db *db);
/* Whether the failure r (< 0) of a statement on db means the connection cannot be trusted any
 * more and should be closed and made again: -ENOTCONN (lost, refused), or any other error the
 * client library raised itself (out of sync, malformed packet, out of memory: the server's
 * error numbers are below 2000, the client's from 2000). False for r ≥ 0 and for errors the
 * server answered (a deadlock, a constraint). */
bool db_connection_broken(struct db *db, int r);
/* Make db_error()/db_errno() report msg (copied) and err again, e.g. after a clean-up statement
 * that followed the failure a caller must see. */
void db_set_error(struct db *db, unsigned err, const char *msg);
/* "10.11.6-MariaDB-…" */
const char *db_server_version(struct db *db);

/* A query's rows, fetched whole from the server when the query ran (opaque; db_res_free). */
struct db_res;
/* One row: column i is row[i], a NUL-terminated copy of the column's text (NULL for SQL NULL).
 * Numbers come as their decimal text (db_row_i64…), DATE/DATETIME/TIME as the server prints
 * them ("2026-12-03 15:04:00.123456": as many fractional digits as the column has); binary
 * columns are copied exactly and may hold NULs: db_res_lengths gives their length. */
typedef const char *const *db_row;

/* Run one statement; *ret_affected (may be NULL) = affected rows (the row count for a statement
 * that returns rows, whose rows are discarded). */
int db_exec(struct db *db, uint64_t *ret_affected, const char *sql, ...);
/* Run one query; *ret = its rows (db_res_free them), written only on success. -EINVAL when the
 * statement returns no result set. */
int db_query(struct db *db, struct db_res **ret, const char *sql, ...);
/* Run a query for its first row: *ret = the rows (db_res_free them) and *ret_row = the first,
 * both written only on success; -ENOENT when there is no row. */
int db_query_row(struct db *db, struct db_res **ret, db_row *ret_row, const char *sql, ...);
/* Run a query returning one row's first column as int64. -ENOENT when no row; NULL → 0. */
int db_query_i64(struct db *db, int64_t *ret, const char *sql, ...);
/* Last AUTO_INCREMENT id (of the last statement that returned no rows). */
uint64_t db_insert_id(struct db *db);

/* The next row, or NULL past the last one (and on every call after). Valid until db_res_free. */
db_row db_res_next(struct db_res *res);
/* The byte lengths of the columns of the row db_res_next returned last (0 for NULL); NULL before
 * the first row and past the end. */
const size_t *db_res_lengths(const struct db_res *res);
/* Back before the first row: the next db_res_next() returns it again. */
void db_res_rewind(struct db_res *res);
/* Rows in the result, whatever was read of it. */
size_t db_res_count(const struct db_res *res);
/* Columns, and column i's name (as the query labels it) and kind. */
unsigned db_res_fields(const struct db_res *res);
const char *db_res_field_name(const struct db_res *res, unsigned i);
enum db_kind {
	DB_KIND_TEXT, /* strings, binary strings, dates and times, YEAR, JSON, everything else */
	DB_KIND_INT,  /* signed integers (TINYINT … BIGINT) */
	DB_KIND_UINT, /* unsigned integers */
	DB_KIND_REAL, /* DECIMAL, FLOAT, DOUBLE */
	_DB_KIND_MAX,
};
enum db_kind db_res_field_kind(const struct db_res *res, unsigned i);
/* Accepts NULL; returns NULL. */
struct db_res *db_res_free(struct db_res *res);

int db_begin(struct db *db);
int db_commit(struct db *db);
/* Never fails visibly (a rollback on a dead connection is moot). */
void db_rollback(struct db *db);

/* Run fn in a transaction. fn returns 0 to commit, < 0 to roll back and return that error; it
 * must be able to run again from its start (it is, whole, on a conflict). The whole transaction
 * is run again, up to 10 runs in all and none begun after 30 s, with a short jittered pause
 * between them (2 ms doubling, at most 250 ms), when it ends in -EAGAIN: a deadlock, a lock wait timeout, a Galera
 * certification failure or brute-force abort (1213, 1205, 1020). Once the server has aborted
 * the transaction, every further statement fn makes returns that error without being sent (the
 * session is in autocommit after an abort: it would run alone) and the run counts as failed
 * whatever fn returns. When the server goes away or answers 1047 (a Galera node not ready)
 * before COMMIT, the connection is made again (db_reconnect: the next server of
 * database.hosts that serves) and the transaction run there; a connection lost at COMMIT is
 * -ENOTCONN (its outcome is unknown: never run twice here). -ENOTCONN at once when the
 * connection is down on entry. */
int db_transaction(struct db *db, int (*fn)(struct db *db, void *userdata), void *userdata);

/* Row helpers: column i of row as int64/uint64/double (0 when NULL). */
int64_t db_row_i64(db_row row, unsigned i);
uint64_t db_row_u64(db_row row, unsigned i);
double db_row_dbl(db_row row, unsigned i);

static inline void db_res_freep(struct db_res **r) { db_res_free(*r); }
#define _cleanup_result_ __attribute__((cleanup(db_res_freep)))
