/* Implementation of db/db.h: connection set-up, placeholder formatting, error mapping and
 * transactions over the MariaDB Connector/C (MySQL client API). */
#include "db/db.h"

#include <errno.h>
#include <errmsg.h>
#include <inttypes.h>
#include <mysqld_error.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/macro.h"

#define DB_IO_TIMEOUT	    20 /* seconds */
#define DB_IDLE_TXN_TIMEOUT 3  /* seconds */
#define STR_(x)		    #x
#define STR(x)		    STR_(x)

struct db {
	MYSQL *my;
	char *dbname;
	struct uf_config_db_copy {
		char *host, *socket, *user, *password;
		unsigned port;
	} c;
	char *error;  /* our own message when the failure was not the server's */
	unsigned err; /* last server errno */
};

static int map_errno(unsigned e)
{
	switch (e) {
	case 0:
		return 0;
	case ER_DUP_ENTRY:
		return -EEXIST;
	case ER_LOCK_DEADLOCK:
	case ER_LOCK_WAIT_TIMEOUT:
	case ER_CHECKREAD:
		return -EAGAIN;
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_SERVER_LOST_EXTENDED:
	case ER_CONNECTION_KILLED:
	case ER_SERVER_SHUTDOWN:
		return -ENOTCONN;
	case 4025: /* ER_CONSTRAINT_FAILED (MariaDB) */
	case 3819: /* ER_CHECK_CONSTRAINT_VIOLATED (MySQL) */
		return -EPERM;
	default:
		return -EIO;
	}
}

static void set_error(struct db *db, const char *msg)
{
	free(db->error);
	db->error = msg ? strdup(msg) : NULL;
}

static int fail(struct db *db)
{
	db->err = mysql_errno(db->my);
	free(db->error);
	db->error = NULL;
	return map_errno(db->err);
}

/* Every entry point that would hand db->my to the client library checks this first: after a
 * failed reconnect there is no handle, and the connection is down until a reconnect succeeds. */
static int check_up(struct db *db)
{
	if (db->my)
		return 0;
	db->err = CR_SERVER_GONE_ERROR;
	if (!db->error)
		set_error(db, "not connected to MariaDB (the connection was lost; reconnecting)");
	return -ENOTCONN;
}

bool db_is_up(const struct db *db) { return db->my != NULL; }
void db_set_error(struct db *db, unsigned err, const char *msg)
{
	db->err = err;
	set_error(db, msg);
}
unsigned db_errno(struct db *db) { return db->err; }
const char *db_error(struct db *db)
{
	if (db->error)
		return db->error;
	if (!db->my)
		return "not connected to MariaDB";
	const char *m = mysql_error(db->my);
	return *m ? m : "MariaDB gave no reason";
}
const char *db_server_version(struct db *db) { return db->my ? mysql_get_server_info(db->my) : "(not connected)"; }
uint64_t db_insert_id(struct db *db) { return db->my ? mysql_insert_id(db->my) : 0; }

const char *db_version_problem(const char *v)
{
	unsigned a = 0, b = 0, c = 0;
	bool maria = strstr(v, "MariaDB") != NULL;
	if (maria && strncmp(v, "5.5.5-", 6) == 0) /* old replication-compatibility prefix */
		v += 6;
	if (sscanf(v, "%u.%u.%u", &a, &b, &c) < 2)
		return "its version cannot be read: usbforge needs MariaDB >= 10.6";
	if (maria)
		return a > 10 || (a == 10 && b >= 6)
			       ? NULL
			       : "it is too old: usbforge needs MariaDB >= 10.6 (FOR UPDATE SKIP LOCKED)";
	if (a > 8 || (a == 8 && (b > 0 || c >= 1)))
		return "it is MySQL: usbforge's schema is written and tested for MariaDB >= 10.6 only";
	return "it is too old and not MariaDB: usbforge needs MariaDB >= 10.6 (FOR UPDATE SKIP LOCKED)";
}

static int do_connect(struct db *db, char **ret_error)
{
	const char *where;
	char *e = NULL;
	/* A server that stops answering must not hang the daemon past its watchdog (60 s): reads
	 * and writes time out after DB_IO_TIMEOUT (the connection then counts as lost and is
	 * reconnected), and no statement waits for a row lock longer than 10 s (error 1205, which
	 * retries the transaction). No statement of usbforge's legitimately takes longer.
	 * A client that goes silent inside a transaction (a frozen or stopped worker: its
	 * transactions never wait between statements) must not hold its row locks over the other
	 * kiosks' claims and reapers: the server ends such a session after DB_IDLE_TXN_TIMEOUT
	 * (idle_transaction_timeout, MariaDB ≥ 10.3), rolling the transaction back. */
	unsigned timeout = 5, io_timeout = DB_IO_TIMEOUT;

	*ret_error = NULL;
	db->my = mysql_init(NULL);
	if (!db->my) {
		set_error(db, "cannot set up a MariaDB connection: out of memory");
		return -ENOMEM;
	}
	mysql_options(db->my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(db->my, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
	mysql_options(db->my, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
	mysql_options(db->my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_options(db->my, MYSQL_INIT_COMMAND,
		      "SET time_zone='+00:00', innodb_lock_wait_timeout=10, idle_transaction_timeout=" STR(
			      DB_IDLE_TXN_TIMEOUT) ", "
						   "sql_mode='STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
						   "NO_ENGINE_SUBSTITUTION'");
	bool use_socket = db->c.socket && *db->c.socket;
	where = use_socket ? db->c.socket : db->c.host;
	if (!mysql_real_connect(db->my, use_socket ? "localhost" : db->c.host, db->c.user, db->c.password, db->dbname,
				use_socket ? 0 : db->c.port, use_socket ? db->c.socket : NULL, CLIENT_FOUND_ROWS)) {
		int r = fail(db);
		char port[16] = "";
		if (!use_socket)
			snprintf(port, sizeof(port), ":%u", db->c.port);
		if (asprintf(&e, "cannot connect to MariaDB at %s%s as '%s'%s%s: %s", where, port, db->c.user,
			     db->dbname ? ", database " : "", db->dbname ? db->dbname : "", mysql_error(db->my)) < 0)
			e = NULL;
		mysql_close(db->my);
		db->my = NULL;
		set_error(db, e);
		*ret_error = e;
		return r == -EIO ? -ENOTCONN : r;
	}
	/* READ COMMITTED: no gap locks on the queue tables (the claim would deadlock under
	 * REPEATABLE READ); the guarded statements give the consistency we need. */
	if (mysql_query(db->my, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED") != 0) {
		int r = fail(db);
		if (asprintf(&e, "cannot set up the session at %s: %s", where, mysql_error(db->my)) < 0)
			e = NULL;
		mysql_close(db->my);
		db->my = NULL;
		set_error(db, e);
		*ret_error = e;
		return r;
	}
	const char *v = mysql_get_server_info(db->my);
	const char *why = db_version_problem(v);
	if (why) {
		if (asprintf(&e, "server %s at %s is refused: %s", v, where, why) < 0)
			e = NULL;
		mysql_close(db->my);
		db->my = NULL;
		set_error(db, e);
		*ret_error = e;
		return -EPROTO;
	}
	set_error(db, NULL);
	db->err = 0;
	return 0;
}

int db_connect_to(const struct uf_config *cfg, const char *dbname, struct db **ret, char **ret_error)
{
	struct db *db = calloc(1, sizeof(*db));
	int r;

	*ret_error = NULL;
	if (!db)
		return -ENOMEM;
	db->c.host = strdup_or_null(cfg->db.host ? cfg->db.host : "127.0.0.1");
	db->c.socket = strdup_or_null(cfg->db.socket);
	db->c.user = strdup_or_null(cfg->db.user ? cfg->db.user : "usbforge");
	db->c.password = strdup_or_null(cfg->db.password);
	db->c.port = cfg->db.port ? cfg->db.port : 3306;
	db->dbname = strdup_or_null(dbname);
	r = do_connect(db, ret_error);
	if (r < 0) {
		db_close(db);
		return r;
	}
	*ret = db;
	return 0;
}

int db_connect(const struct uf_config *cfg, struct db **ret, char **ret_error)
{
	return db_connect_to(cfg, cfg->db.name ? cfg->db.name : "usbforge", ret, ret_error);
}

int db_reconnect(struct db *db, char **ret_error)
{
	char *e = NULL;
	if (db->my)
		mysql_close(db->my);
	db->my = NULL;
	int r = do_connect(db, &e);
	if (ret_error)
		*ret_error = e;
	else
		free(e);
	return r;
}

struct db *db_close(struct db *db)
{
	if (!db)
		return NULL;
	if (db->my)
		mysql_close(db->my);
	free(db->c.host);
	free(db->c.socket);
	free(db->c.user);
	if (db->c.password)
		explicit_bzero(db->c.password, strlen(db->c.password));
	free(db->c.password);
	free(db->dbname);
	free(db->error);
	free(db);
	return NULL;
}

char *db_format(struct db *db, const char *sql, const struct db_arg *args, size_t n)
{
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	size_t ai = 0;
	char quote = 0;

	if (!f || !db->my) {
		if (f)
			fclose(f);
		free(out);
		return NULL;
	}
	for (const char *p = sql; *p; p++) {
		if (quote) {
			fputc(*p, f);
			if (*p == '\\' && p[1]) {
				fputc(*++p, f);
			} else if (*p == quote) {
				quote = 0;
			}
			continue;
		}
		if (*p == '\'' || *p == '"' || *p == '`') {
			quote = *p;
			fputc(*p, f);
			continue;
		}
		if (*p != '?') {
			fputc(*p, f);
			continue;
		}
		if (ai >= n)
			goto bad;
		const struct db_arg *a = &args[ai++];
		switch (a->type) {
		case DBA_I64:
			fprintf(f, "%" PRId64, a->i);
			break;
		case DBA_U64:
			fprintf(f, "%" PRIu64, a->u);
			break;
		case DBA_DBL:
			fprintf(f, "%.17g", a->d);
			break;
		case DBA_NULL:
			fputs("NULL", f);
			break;
		case DBA_RAW:
			fputs(a->s, f);
			break;
		case DBA_STR: {
			if (!a->s) {
				fputs("NULL", f);
				break;
			}
			size_t l = strlen(a->s);
			char *esc = malloc(l * 2 + 1);
			if (!esc)
				goto bad;
			mysql_real_escape_string(db->my, esc, a->s, (unsigned long)l);
			fputc('\'', f);
			fputs(esc, f);
			fputc('\'', f);
			free(esc);
			break;
		}
		default:
			goto bad;
		}
	}
	if (ai != n)
		goto bad;
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
bad:
	fclose(f);
	free(out);
	return NULL;
}

static int run(struct db *db, const char *sql, va_list ap)
{
	struct db_arg args[64];
	size_t n = 0;
	int r = check_up(db);
	if (r < 0)
		return r;
	for (;;) {
		struct db_arg a = va_arg(ap, struct db_arg);
		if (a.type == DBA_END)
			break;
		if (n == ARRAY_SIZE(args))
			return -E2BIG;
		args[n++] = a;
	}
	_cleanup_free_ char *q = db_format(db, sql, args, n);
	if (!q) {
		free(db->error);
		db->error = NULL;
		if (asprintf(&db->error, "bad query arguments for: %s", sql) < 0)
			db->error = NULL;
		return -EINVAL;
	}
	if (mysql_real_query(db->my, q, strlen(q)) != 0) {
		r = fail(db);
		log_debug("db: query failed (%u %s): %s", db->err, mysql_error(db->my), q);
		return r;
	}
	db->err = 0;
	set_error(db, NULL); /* a reason kept by db_rollback belongs to a failure now past */
	return 0;
}

int db_exec(struct db *db, uint64_t *ret_affected, const char *sql, ...)
{
	va_list ap;
	va_start(ap, sql);
	int r = run(db, sql, ap);
	va_end(ap);
	if (r < 0)
		return r;
	/* A statement with a result set (rare here) must have it consumed. */
	MYSQL_RES *res = mysql_store_result(db->my);
	if (res)
		mysql_free_result(res);
	if (ret_affected)
		*ret_affected = mysql_affected_rows(db->my);
	return 0;
}

int db_query(struct db *db, MYSQL_RES **ret, const char *sql, ...)
{
	va_list ap;
	va_start(ap, sql);
	int r = run(db, sql, ap);
	va_end(ap);
	if (r < 0)
		return r;
	MYSQL_RES *res = mysql_store_result(db->my);
	if (!res)
		return mysql_errno(db->my) ? fail(db) : -EINVAL;
	*ret = res;
	return 0;
}

int db_query_i64(struct db *db, int64_t *ret, const char *sql, ...)
{
	va_list ap;
	va_start(ap, sql);
	int r = run(db, sql, ap);
	va_end(ap);
	if (r < 0)
		return r;
	_cleanup_result_ MYSQL_RES *res = mysql_store_result(db->my);
	if (!res)
		return mysql_errno(db->my) ? fail(db) : -EINVAL;
	MYSQL_ROW row = mysql_fetch_row(res);
	if (!row)
		return -ENOENT;
	*ret = db_row_i64(row, 0);
	return 0;
}

int db_begin(struct db *db) { return db_exec(db, NULL, "START TRANSACTION", DB_END); }
int db_commit(struct db *db) { return db_exec(db, NULL, "COMMIT", DB_END); }
void db_rollback(struct db *db)
{
	unsigned saved = db->err;
	if (!db->my)
		return;
	/* ROLLBACK succeeds and clears the client's message: keep the failure's reason, which
	 * is what the caller reports (db_error) once the transaction is given up */
	if (!db->error && saved && *mysql_error(db->my))
		set_error(db, mysql_error(db->my));
	(void)mysql_real_query(db->my, "ROLLBACK", 8);
	db->err = saved;
}

int db_transaction(struct db *db, int (*fn)(struct db *db, void *userdata), void *userdata)
{
	int r = -EAGAIN;
	for (int attempt = 0; attempt < 8 && r == -EAGAIN; attempt++) {
		r = db_begin(db);
		if (r < 0)
			return r;
		r = fn(db, userdata);
		if (r < 0) {
			db_rollback(db);
			continue;
		}
		r = db_commit(db);
		if (r < 0)
			db_rollback(db);
	}
	return r;
}

int64_t db_row_i64(MYSQL_ROW row, unsigned i) { return row[i] ? strtoll(row[i], NULL, 10) : 0; }
uint64_t db_row_u64(MYSQL_ROW row, unsigned i) { return row[i] ? strtoull(row[i], NULL, 10) : 0; }
double db_row_dbl(MYSQL_ROW row, unsigned i) { return row[i] ? strtod(row[i], NULL) : 0.0; }
