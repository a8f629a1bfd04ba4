/* Implementation of db/db.h: connection set-up, prepared statements (a per-connection cache of
 * them), results copied out of the client library into struct db_res, error mapping and
 * transactions over the MariaDB Connector/C (MySQL client API). */
#include "db/db.h"

#include <errno.h>
#include <errmsg.h>
#include <inttypes.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "util/macro.h"

#define DB_IO_TIMEOUT	    20 /* seconds */
#define DB_IDLE_TXN_TIMEOUT 3  /* seconds */
#define DB_STMT_CACHE	    32 /* prepared statements kept per connection */
#define DB_MAX_ARGS	    64 /* placeholders in one statement */
#define DB_TXN_ATTEMPTS	    10 /* a transaction's runs before a conflict is given up */
#define DB_TXN_BACKOFF_MS   2  /* the first retry's pause; doubled each time, jittered */
#define DB_TXN_BACKOFF_MAX  250
#define DB_TXN_BUDGET_S	    30 /* s: no run of a transaction begins later (its caller hears the error) */
#define STR_(x)		    #x
#define STR(x)		    STR_(x)

struct db {
	MYSQL *my;
	char *dbname;
	struct uf_config_db_copy {
		char *socket, *user, *password;
		/* the servers tried in order (database.hosts, or database.host alone); from_list:
		 * they came from database.hosts, whose name the messages give */
		struct uf_db_host *hosts;
		size_t n_hosts;
		bool from_list;
	} c;
	size_t node;	  /* the entry of c.hosts connected to */
	bool in_txn;	  /* db_transaction is running its function */
	bool txn_aborted; /* …and the server aborted that transaction: nothing more may run in it */
	int txn_abort_r;  /* the abort's error (-EAGAIN, -ENOTCONN) */
	char *error;	  /* the last failure's message (the server's, or ours) */
	unsigned err;	  /* last server errno */
	uint64_t insert_id;
	uint64_t tick; /* statement use counter, for the cache's LRU */
	struct db_stmt {
		char *sql; /* the text it was prepared from (the cache key) */
		MYSQL_STMT *st;
		uint64_t used;
	} stmts[DB_STMT_CACHE];
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
	/* a Galera node that is not (or no longer) part of the primary component answers every
	 * statement with 1047 "WSREP has not yet prepared node for application use": as useless
	 * as a lost connection, and the cure is the same (another node) */
	case ER_UNKNOWN_COM_ERROR:
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
/* The first error number of the client library (CR_MIN_ERROR in errmsg.h). */
#define CLIENT_ERROR_MIN 2000

bool db_connection_broken(struct db *db, int r)
{
	return r == -ENOTCONN || (r < 0 && db_errno(db) >= CLIENT_ERROR_MIN);
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
uint64_t db_insert_id(struct db *db) { return db->my ? db->insert_id : 0; }

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

/* After mysql_close(db->my) (which detaches the statements from the connection), so that no
 * COM_STMT_CLOSE is sent to a server that may be gone. */
static void drop_statements(struct db *db)
{
	for (size_t i = 0; i < ARRAY_SIZE(db->stmts); i++) {
		if (db->stmts[i].st)
			mysql_stmt_close(db->stmts[i].st);
		free(db->stmts[i].sql);
		db->stmts[i] = (struct db_stmt){ 0 };
	}
}

static void close_connection(struct db *db)
{
	if (db->my)
		mysql_close(db->my);
	db->my = NULL;
	drop_statements(db);
	db->insert_id = 0;
}

/* Whether the server is a Galera node that may not serve clients now (wsrep_ready OFF: not in
 * the primary component, or still joining). A server without Galera has no such status: ready. */
static bool show_is_off(MYSQL *my, const char *show)
{
	bool off = false;
	if (mysql_query(my, show) != 0)
		return false; /* the statements that follow will tell */
	MYSQL_RES *res = mysql_store_result(my);
	if (!res)
		return false;
	MYSQL_ROW row = mysql_fetch_row(res);
	if (row && row[1] && strcmp(row[1], "ON") != 0)
		off = true;
	mysql_free_result(res);
	return off;
}

static bool node_not_ready(MYSQL *my)
{
	/* a MariaDB server built with wsrep but not running Galera says wsrep_ready OFF too */
	return show_is_off(my, "SHOW STATUS LIKE 'wsrep\\_ready'") &&
	       !show_is_off(my, "SHOW VARIABLES LIKE 'wsrep\\_on'");
}

/* Connect to one server: the socket, or c.hosts[i]. On failure *ret_error (malloc'd, may be
 * NULL on OOM) says what and where, and db->my is NULL. */
static int connect_one(struct db *db, size_t i, char **ret_error)
{
	char where[300];
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
		*ret_error = strdup("cannot set up a MariaDB connection: out of memory");
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
	const struct uf_db_host *h = use_socket ? NULL : &db->c.hosts[i];
	if (use_socket)
		snprintf(where, sizeof(where), "%s", db->c.socket);
	else if (strchr(h->host, ':'))
		snprintf(where, sizeof(where), "[%s]:%u", h->host, h->port);
	else
		snprintf(where, sizeof(where), "%s:%u", h->host, h->port);
	if (!mysql_real_connect(db->my, use_socket ? "localhost" : h->host, db->c.user, db->c.password, db->dbname,
				use_socket ? 0 : h->port, use_socket ? db->c.socket : NULL, CLIENT_FOUND_ROWS)) {
		int r = fail(db);
		if (asprintf(&e, "cannot connect to MariaDB at %s as '%s'%s%s: %s", where, db->c.user,
			     db->dbname ? ", database " : "", db->dbname ? db->dbname : "", mysql_error(db->my)) < 0)
			e = NULL;
		mysql_close(db->my);
		db->my = NULL;
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
		*ret_error = e;
		return -EPROTO;
	}
	if (node_not_ready(db->my)) {
		if (asprintf(&e,
			     "the Galera node at %s is not ready (wsrep_ready is OFF: it is not part of the "
			     "cluster's primary component)",
			     where) < 0)
			e = NULL;
		mysql_close(db->my);
		db->my = NULL;
		db->err = ER_UNKNOWN_COM_ERROR;
		*ret_error = e;
		return -ENOTCONN;
	}
	return 0;
}

/* Connect to the first server of c.hosts that answers and is ready, in their order (or the
 * socket). With several, a failure names the key and lists every entry's reason. */
static int do_connect(struct db *db, char **ret_error)
{
	size_t n = db->c.socket && *db->c.socket ? 1 : db->c.n_hosts;
	char *all = NULL;
	int r = -ENOTCONN;
	unsigned err = 0;

	*ret_error = NULL;
	for (size_t i = 0; i < n; i++) {
		char *e = NULL;
		r = connect_one(db, i, &e);
		if (r == 0) {
			free(all);
			db->node = i;
			set_error(db, NULL);
			db->err = 0;
			if (i > 0)
				log_debug("db: connected to database.hosts[%zu] (the entries before it failed)", i);
			return 0;
		}
		err = db->err;
		if (!db->c.from_list) {
			all = e;
			break;
		}
		char *next = NULL;
		if (asprintf(&next, "%s%sdatabase.hosts[%zu]: %s", all ? all : "", all ? "; " : "", i,
			     e ? e : "out of memory") < 0)
			next = NULL;
		free(e);
		free(all);
		all = next;
	}
	if (db->c.from_list && all) {
		char *m = NULL;
		if (asprintf(&m, "no server of database.hosts can be used: %s", all) < 0)
			m = NULL;
		free(all);
		all = m;
	}
	db->err = err;
	set_error(db, all);
	*ret_error = all;
	return r;
}

int db_connect_to(const struct uf_config *cfg, const char *dbname, struct db **ret, char **ret_error)
{
	struct db *db = calloc(1, sizeof(*db));
	unsigned port = cfg->db.port ? cfg->db.port : 3306;
	int r;

	*ret_error = NULL;
	if (!db)
		return -ENOMEM;
	db->c.from_list = cfg->db.n_hosts > 0;
	db->c.n_hosts = db->c.from_list ? cfg->db.n_hosts : 1;
	db->c.hosts = calloc(db->c.n_hosts, sizeof(*db->c.hosts));
	bool oom = !db->c.hosts;
	for (size_t i = 0; !oom && i < db->c.n_hosts; i++) {
		const char *h = db->c.from_list ? cfg->db.hosts[i].host : cfg->db.host ? cfg->db.host : "127.0.0.1";
		unsigned p = db->c.from_list && cfg->db.hosts[i].port ? cfg->db.hosts[i].port : port;
		db->c.hosts[i] = (struct uf_db_host){ .host = strdup(h), .port = p };
		oom = !db->c.hosts[i].host;
	}
	db->c.socket = strdup_or_null(cfg->db.socket);
	db->c.user = strdup_or_null(cfg->db.user ? cfg->db.user : "usbforge");
	db->c.password = strdup_or_null(cfg->db.password);
	db->dbname = strdup_or_null(dbname);
	if (oom || !db->c.user || (cfg->db.socket && !db->c.socket) || (cfg->db.password && !db->c.password) ||
	    (dbname && !db->dbname)) {
		db_close(db);
		return -ENOMEM;
	}
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
	close_connection(db);
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
	close_connection(db);
	for (size_t i = 0; db->c.hosts && i < db->c.n_hosts; i++)
		free(db->c.hosts[i].host);
	free(db->c.hosts);
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

/* ---- prepared statements --------------------------------------------------------------------- */

/* The connection's prepared statements, least recently used evicted first. A statement belongs
 * to its connection: close_connection frees them all, after mysql_close, when the connection is
 * replaced or closed. */
static struct db_stmt *stmt_lookup(struct db *db, const char *sql)
{
	for (size_t i = 0; i < ARRAY_SIZE(db->stmts); i++)
		if (db->stmts[i].st && strcmp(db->stmts[i].sql, sql) == 0)
			return &db->stmts[i];
	return NULL;
}

/* Close st and forget it (it is in the cache: stmt_get put it there). */
static void stmt_evict(struct db *db, MYSQL_STMT *st)
{
	for (size_t i = 0; i < ARRAY_SIZE(db->stmts); i++)
		if (db->stmts[i].st == st) {
			mysql_stmt_close(st);
			free(db->stmts[i].sql);
			db->stmts[i] = (struct db_stmt){ 0 };
			return;
		}
}

static int stmt_fail(struct db *db, MYSQL_STMT *st, const char *sql)
{
	db->err = mysql_stmt_errno(st);
	if (db->err == 0) /* the client library failed without saying why: count it as its error */
		db->err = CR_UNKNOWN_ERROR;
	const char *m = mysql_stmt_error(st);
	set_error(db, m && *m ? m : "MariaDB gave no reason");
	log_debug("db: statement failed (%u %s): %s", db->err, db_error(db), sql);
	int r = map_errno(db->err);
	if (db->in_txn && (r == -EAGAIN || r == -ENOTCONN || db->err >= CLIENT_ERROR_MIN)) {
		db->txn_aborted = true;
		db->txn_abort_r = r == -EAGAIN ? r : -ENOTCONN;
	}
	return r < 0 ? r : -EIO; /* db->err is not 0 here: always < 0 (said for the analyzer) */
}

static int bad_arguments(struct db *db, const char *why, const char *sql)
{
	free(db->error);
	if (asprintf(&db->error, "%s: %s", why, sql) < 0)
		db->error = NULL;
	db->err = 0;
	return -EINVAL;
}

/* The prepared statement for sql on this connection: from the cache, or prepared now and cached
 * (evicting the least recently used one). */
static int stmt_get(struct db *db, const char *sql, MYSQL_STMT **ret)
{
	struct db_stmt *e = stmt_lookup(db, sql);
	if (e) {
		e->used = ++db->tick;
		*ret = e->st;
		return 0;
	}
	MYSQL_STMT *st = mysql_stmt_init(db->my);
	if (!st) {
		set_error(db, "cannot set up a statement: out of memory");
		return -ENOMEM;
	}
	my_bool on = 1;
	(void)mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &on);
	if (mysql_stmt_prepare(st, sql, strlen(sql)) != 0) {
		int r = stmt_fail(db, st, sql);
		mysql_stmt_close(st);
		return r;
	}
	char *copy = strdup(sql);
	if (!copy) {
		mysql_stmt_close(st);
		set_error(db, "out of memory");
		return -ENOMEM;
	}
	e = &db->stmts[0];
	for (size_t i = 1; i < ARRAY_SIZE(db->stmts) && e->st; i++)
		if (!db->stmts[i].st || db->stmts[i].used < e->used)
			e = &db->stmts[i];
	if (e->st)
		mysql_stmt_close(e->st);
	free(e->sql);
	*e = (struct db_stmt){ .sql = copy, .st = st, .used = ++db->tick };
	*ret = st;
	return 0;
}

/* ---- results ------------------------------------------------------------------------------------ */

/* One row, in one allocation: n column pointers, then n lengths, then the bytes (each column
 * NUL-terminated). */
struct db_res_row {
	size_t *len;
	const char *col[];
};

struct db_res {
	unsigned nfields;
	char **names;
	enum db_kind *kinds;
	struct db_res_row **rows;
	size_t nrows, next;
	const struct db_res_row *cur;
};

struct db_res *db_res_free(struct db_res *res)
{
	if (!res)
		return NULL;
	for (unsigned i = 0; res->names && i < res->nfields; i++)
		free(res->names[i]);
	free(res->names);
	free(res->kinds);
	for (size_t i = 0; i < res->nrows; i++)
		free(res->rows[i]);
	free(res->rows);
	free(res);
	return NULL;
}

db_row db_res_next(struct db_res *res)
{
	if (res->next >= res->nrows) {
		res->cur = NULL;
		return NULL;
	}
	res->cur = res->rows[res->next++];
	return res->cur->col;
}

void db_res_rewind(struct db_res *res)
{
	res->next = 0;
	res->cur = NULL;
}

const size_t *db_res_lengths(const struct db_res *res) { return res->cur ? res->cur->len : NULL; }
size_t db_res_count(const struct db_res *res) { return res->nrows; }
unsigned db_res_fields(const struct db_res *res) { return res->nfields; }
const char *db_res_field_name(const struct db_res *res, unsigned i) { return i < res->nfields ? res->names[i] : NULL; }
enum db_kind db_res_field_kind(const struct db_res *res, unsigned i)
{
	return i < res->nfields ? res->kinds[i] : DB_KIND_TEXT;
}

/* How a column is fetched: integers, floating point and temporal values in their binary form
 * and printed here the way the server's text protocol prints them; everything else (strings,
 * binary strings, DECIMAL, ENUM, JSON…) as the bytes the server sent. */
enum col_form { FORM_BYTES, FORM_INT, FORM_YEAR, FORM_DOUBLE, FORM_FLOAT, FORM_DATE, FORM_DATETIME, FORM_TIME };

struct col {
	enum col_form form;
	unsigned decimals;
	union {
		int64_t i;
		double d;
		float f;
		MYSQL_TIME t;
	} v;
	char *buf;     /* FORM_BYTES */
	char text[64]; /* the others, printed */
	unsigned long length;
	my_bool is_null, error;
};

static enum col_form form_of(const MYSQL_FIELD *f)
{
	switch (f->type) {
	case MYSQL_TYPE_TINY:
	case MYSQL_TYPE_SHORT:
	case MYSQL_TYPE_INT24:
	case MYSQL_TYPE_LONG:
	case MYSQL_TYPE_LONGLONG:
		return FORM_INT;
	case MYSQL_TYPE_YEAR:
		return FORM_YEAR;
	case MYSQL_TYPE_DOUBLE:
		return FORM_DOUBLE;
	case MYSQL_TYPE_FLOAT:
		return FORM_FLOAT;
	case MYSQL_TYPE_DATE:
	case MYSQL_TYPE_NEWDATE:
		return FORM_DATE;
	case MYSQL_TYPE_DATETIME:
	case MYSQL_TYPE_TIMESTAMP:
		return FORM_DATETIME;
	case MYSQL_TYPE_TIME:
		return FORM_TIME;
	default:
		return FORM_BYTES;
	}
}

/* The kind db_row_to_json and other readers go by (DECIMAL is read as bytes but is a number). */
static enum db_kind kind_of(const MYSQL_FIELD *f)
{
	switch (form_of(f)) {
	case FORM_INT:
		return f->flags & UNSIGNED_FLAG ? DB_KIND_UINT : DB_KIND_INT;
	case FORM_DOUBLE:
	case FORM_FLOAT:
		return DB_KIND_REAL;
	default:
		return f->type == MYSQL_TYPE_DECIMAL || f->type == MYSQL_TYPE_NEWDECIMAL ? DB_KIND_REAL : DB_KIND_TEXT;
	}
}

/* The shortest %g (from 15 significant digits, 6 for a float) that reads back as the same value,
 * as the server prints them ("0.1", not "0.10000000000000001"). */
static void print_double(char *out, size_t size, double d)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, size, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

static void print_float(char *out, size_t size, float f)
{
	for (int prec = 6; prec <= 9; prec++) {
		snprintf(out, size, "%.*g", prec, (double)f);
		if (strtof(out, NULL) == f)
			return;
	}
}

/* ".123456" cut to the column's fractional digits (nothing for none). */
static void print_fraction(char *out, size_t size, unsigned decimals, unsigned long usec)
{
	unsigned long div = 1;
	if (decimals > 6) /* an expression of unknown precision */
		decimals = usec ? 6 : 0;
	if (decimals == 0) {
		*out = '\0';
		return;
	}
	for (unsigned k = decimals; k < 6; k++)
		div *= 10;
	snprintf(out, size, ".%0*lu", (int)decimals, usec % 1000000 / div);
}

/* Column c's value as text into out (a value that is not FORM_BYTES). */
static void print_value(const struct col *c, bool is_unsigned, char *out, size_t size)
{
	const MYSQL_TIME *t = &c->v.t;
	char frac[16];
	switch (c->form) {
	case FORM_INT:
		if (is_unsigned)
			snprintf(out, size, "%" PRIu64, (uint64_t)c->v.i);
		else
			snprintf(out, size, "%" PRId64, c->v.i);
		break;
	case FORM_YEAR:
		snprintf(out, size, "%04" PRId64, c->v.i);
		break;
	case FORM_DOUBLE:
		print_double(out, size, c->v.d);
		break;
	case FORM_FLOAT:
		print_float(out, size, c->v.f);
		break;
	case FORM_DATE:
		snprintf(out, size, "%04u-%02u-%02u", t->year, t->month, t->day);
		break;
	case FORM_DATETIME:
		print_fraction(frac, sizeof(frac), c->decimals, t->second_part);
		snprintf(out, size, "%04u-%02u-%02u %02u:%02u:%02u%s", t->year, t->month, t->day, t->hour, t->minute,
			 t->second, frac);
		break;
	case FORM_TIME:
		print_fraction(frac, sizeof(frac), c->decimals, t->second_part);
		snprintf(out, size, "%s%02u:%02u:%02u%s", t->neg ? "-" : "", t->day * 24 + t->hour, t->minute,
			 t->second, frac);
		break;
	case FORM_BYTES:
		*out = '\0';
		break;
	}
}

struct fetch {
	MYSQL_STMT *st;
	MYSQL_FIELD *fields;
	unsigned n;
	struct col *cols;
	MYSQL_BIND *binds;
};

static void fetch_done(struct fetch *f)
{
	for (unsigned i = 0; f->cols && i < f->n; i++)
		free(f->cols[i].buf);
	free(f->cols);
	free(f->binds);
}

static int fetch_bind(struct fetch *f)
{
	f->cols = calloc(f->n ? f->n : 1, sizeof(*f->cols));
	f->binds = calloc(f->n ? f->n : 1, sizeof(*f->binds));
	if (!f->cols || !f->binds)
		return -ENOMEM;
	for (unsigned i = 0; i < f->n; i++) {
		struct col *c = &f->cols[i];
		MYSQL_BIND *b = &f->binds[i];
		c->form = form_of(&f->fields[i]);
		c->decimals = f->fields[i].decimals;
		b->is_null = &c->is_null;
		b->error = &c->error;
		b->length = &c->length;
		switch (c->form) {
		case FORM_INT:
		case FORM_YEAR:
			b->buffer_type = MYSQL_TYPE_LONGLONG;
			b->is_unsigned = (my_bool)((f->fields[i].flags & UNSIGNED_FLAG) != 0);
			b->buffer = &c->v.i;
			break;
		case FORM_DOUBLE:
			b->buffer_type = MYSQL_TYPE_DOUBLE;
			b->buffer = &c->v.d;
			break;
		case FORM_FLOAT:
			b->buffer_type = MYSQL_TYPE_FLOAT;
			b->buffer = &c->v.f;
			break;
		case FORM_DATE:
		case FORM_DATETIME:
		case FORM_TIME:
			b->buffer_type = f->fields[i].type == MYSQL_TYPE_NEWDATE ? MYSQL_TYPE_DATE : f->fields[i].type;
			b->buffer = &c->v.t;
			break;
		case FORM_BYTES: {
			/* max_length: the longest value in the stored result (STMT_ATTR_UPDATE_MAX_LENGTH);
			 * a longer one is fetched again at its length (fetch_row) */
			size_t size = (size_t)f->fields[i].max_length + 1;
			c->buf = malloc(size);
			if (!c->buf)
				return -ENOMEM;
			b->buffer_type = MYSQL_TYPE_STRING;
			b->buffer = c->buf;
			b->buffer_length = (unsigned long)size;
			break;
		}
		}
	}
	return mysql_stmt_bind_result(f->st, f->binds) ? -EIO : 0;
}

/* Copy the fetched row into one allocation (struct db_res_row). */
static int fetch_row(struct fetch *f, struct db_res_row **ret)
{
	size_t total = 0;
	bool rebind = false;

	for (unsigned i = 0; i < f->n; i++) {
		struct col *c = &f->cols[i];
		if (c->is_null)
			continue;
		if (c->form != FORM_BYTES) {
			print_value(c, (f->fields[i].flags & UNSIGNED_FLAG) != 0, c->text, sizeof(c->text));
			c->length = (unsigned long)strlen(c->text);
		} else if (c->length >= f->binds[i].buffer_length) {
			/* longer than the stored result's max_length said: fetch it again whole */
			char *nb = realloc(c->buf, (size_t)c->length + 1);
			if (!nb)
				return -ENOMEM;
			c->buf = nb;
			f->binds[i].buffer = nb;
			f->binds[i].buffer_length = c->length + 1;
			if (mysql_stmt_fetch_column(f->st, &f->binds[i], i, 0) != 0)
				return -EIO;
			rebind = true;
		}
		total += (size_t)c->length + 1;
	}
	if (rebind && mysql_stmt_bind_result(f->st, f->binds) != 0)
		return -EIO;
	struct db_res_row *row = malloc(sizeof(*row) + f->n * (sizeof(char *) + sizeof(size_t)) + total);
	if (!row)
		return -ENOMEM;
	row->len = (size_t *)(row->col + f->n);
	char *p = (char *)(row->len + f->n);
	for (unsigned i = 0; i < f->n; i++) {
		struct col *c = &f->cols[i];
		if (c->is_null) {
			row->col[i] = NULL;
			row->len[i] = 0;
			continue;
		}
		memcpy(p, c->form == FORM_BYTES ? c->buf : c->text, c->length);
		p[c->length] = '\0';
		row->col[i] = p;
		row->len[i] = c->length;
		p += c->length + 1;
	}
	*ret = row;
	return 0;
}

/* Every row of the executed statement st (its result stored) into a new struct db_res. */
static int fetch_all(struct db *db, MYSQL_STMT *st, const char *sql, struct db_res **ret)
{
	_cleanup_(fetch_done) struct fetch f = { .st = st };
	_cleanup_result_ struct db_res *res = calloc(1, sizeof(*res));
	MYSQL_RES *meta = mysql_stmt_result_metadata(st);
	int r = 0;

	if (!res || !meta) {
		if (meta)
			mysql_free_result(meta);
		return res ? stmt_fail(db, st, sql) : -ENOMEM;
	}
	f.n = mysql_num_fields(meta);
	f.fields = mysql_fetch_fields(meta);
	res->nfields = f.n;
	res->names = calloc(f.n ? f.n : 1, sizeof(char *));
	res->kinds = calloc(f.n ? f.n : 1, sizeof(enum db_kind));
	size_t rows = (size_t)mysql_stmt_num_rows(st);
	res->rows = calloc(rows ? rows : 1, sizeof(struct db_res_row *));
	if (!res->names || !res->kinds || !res->rows)
		r = -ENOMEM;
	for (unsigned i = 0; r == 0 && i < f.n; i++) {
		res->kinds[i] = kind_of(&f.fields[i]);
		if (!(res->names[i] = strdup(f.fields[i].name)))
			r = -ENOMEM;
	}
	if (r == 0)
		r = fetch_bind(&f);
	while (r == 0) {
		int s = mysql_stmt_fetch(st);
		if (s == MYSQL_NO_DATA)
			break;
		if (s == 1) {
			r = stmt_fail(db, st, sql);
			break;
		}
		if (res->nrows == rows) { /* the stored result said fewer: cannot be */
			r = -EIO;
			break;
		}
		r = fetch_row(&f, &res->rows[res->nrows]);
		if (r == 0)
			res->nrows++;
	}
	mysql_free_result(meta);
	if (r < 0) {
		if (r == -ENOMEM)
			set_error(db, "out of memory reading a result");
		else if (!db->error)
			set_error(db, "cannot read a result");
		return r;
	}
	*ret = TAKE_PTR(res);
	return 0;
}

/* ---- running statements --------------------------------------------------------------------- */

/* Bind args to st and run it. 0, or the client library's failure (its errno in st). */
static int bind_and_execute(MYSQL_STMT *st, struct db_arg *args, size_t n)
{
	MYSQL_BIND binds[DB_MAX_ARGS];
	memset(binds, 0, sizeof(binds));
	for (size_t i = 0; i < n; i++) {
		struct db_arg *a = &args[i];
		MYSQL_BIND *b = &binds[i];
		switch (a->type) {
		case DBA_I64:
			b->buffer_type = MYSQL_TYPE_LONGLONG;
			b->buffer = &a->i;
			break;
		case DBA_U64:
			b->buffer_type = MYSQL_TYPE_LONGLONG;
			b->is_unsigned = 1;
			b->buffer = &a->u;
			break;
		case DBA_DBL:
			b->buffer_type = MYSQL_TYPE_DOUBLE;
			b->buffer = &a->d;
			break;
		case DBA_STR:
			if (a->s) {
				b->buffer_type = MYSQL_TYPE_STRING;
				b->buffer = (void *)a->s;
				b->buffer_length = (unsigned long)strlen(a->s);
			} else {
				b->buffer_type = MYSQL_TYPE_NULL;
			}
			break;
		default: /* DBA_NULL (run checked the types) */
			b->buffer_type = MYSQL_TYPE_NULL;
			break;
		}
	}
	if (n && mysql_stmt_bind_param(st, binds) != 0)
		return -1;
	return mysql_stmt_execute(st) != 0 ? -1 : 0;
}

/* Run sql with the arguments in ap (up to DB_END) as a prepared statement. With ret_res, its rows
 * into *ret_res (-EINVAL when it returns none); without, its rows are discarded and
 * *ret_affected (may be NULL) is the affected (or returned) rows. */
static int run(struct db *db, const char *sql, va_list ap, struct db_res **ret_res, uint64_t *ret_affected)
{
	struct db_arg args[DB_MAX_ARGS];
	MYSQL_STMT *st = NULL;
	size_t n = 0;
	int r = check_up(db);
	if (r < 0)
		return r;
	/* After a deadlock, a lock wait timeout, a Galera certification failure or brute-force
	 * abort (1213 on the next statement), the server has rolled the transaction back and the
	 * session is in autocommit: a later statement of the same transaction would run alone,
	 * committed at once. None does: db_transaction runs the whole transaction again. */
	if (db->in_txn && db->txn_aborted)
		return db->txn_abort_r == -ENOTCONN ? -ENOTCONN : -EAGAIN;
	for (;;) {
		struct db_arg a = va_arg(ap, struct db_arg);
		if (a.type == DBA_END)
			break;
		if (n == ARRAY_SIZE(args))
			return bad_arguments(db, "too many query arguments for", sql);
		if (a.type != DBA_I64 && a.type != DBA_U64 && a.type != DBA_DBL && a.type != DBA_STR &&
		    a.type != DBA_NULL)
			return bad_arguments(db, "bad query argument type for", sql);
		args[n++] = a;
	}
	for (int attempt = 0;; attempt++) {
		r = stmt_get(db, sql, &st);
		if (r < 0)
			return r;
		if (mysql_stmt_param_count(st) != n)
			return bad_arguments(db, "bad query arguments for", sql);
		if (bind_and_execute(st, args, n) == 0)
			break;
		/* A table of a cached statement changed its columns since it was prepared (SELECT *
		 * after an ALTER TABLE): the client library refuses the result. Prepared again and
		 * run again, once: only statements that return rows see this, and usbforge's are
		 * reads. */
		if (attempt == 0 && mysql_stmt_errno(st) == CR_NEW_STMT_METADATA) {
			stmt_evict(db, st);
			continue;
		}
		return stmt_fail(db, st, sql);
	}
	db->err = 0;
	set_error(db, NULL); /* a reason kept by db_rollback belongs to a failure now past */
	if (db->in_txn && !(db->my->server_status & SERVER_STATUS_IN_TRANS)) {
		/* the server says no transaction is open: it was rolled back under us (a Galera
		 * brute-force abort) and this statement ran on its own; nothing more may follow */
		db->err = ER_LOCK_DEADLOCK;
		set_error(db, "the transaction was rolled back by the server (a conflicting commit of another node)");
		log_debug("db: statement ran outside its aborted transaction: %s", sql);
		db->txn_aborted = true;
		db->txn_abort_r = -EAGAIN;
	}
	if (mysql_stmt_field_count(st) == 0) {
		db->insert_id = mysql_stmt_insert_id(st);
		if (ret_res)
			return bad_arguments(db, "the statement returns no rows", sql);
		if (ret_affected)
			*ret_affected = mysql_stmt_affected_rows(st);
		return 0;
	}
	if (mysql_stmt_store_result(st) != 0) {
		r = stmt_fail(db, st, sql);
		mysql_stmt_free_result(st);
		return r;
	}
	if (ret_res)
		r = fetch_all(db, st, sql, ret_res);
	else if (ret_affected)
		*ret_affected = mysql_stmt_num_rows(st);
	mysql_stmt_free_result(st);
	return r;
}

int db_exec(struct db *db, uint64_t *ret_affected, const char *sql, ...)
{
	va_list ap;
	va_start(ap, sql);
	int r = run(db, sql, ap, NULL, ret_affected);
	va_end(ap);
	return r;
}

int db_query(struct db *db, struct db_res **ret, const char *sql, ...)
{
	va_list ap;
	va_start(ap, sql);
	int r = run(db, sql, ap, ret, NULL);
	va_end(ap);
	return r;
}

int db_query_row(struct db *db, struct db_res **ret, db_row *ret_row, const char *sql, ...)
{
	_cleanup_result_ struct db_res *res = NULL;
	va_list ap;
	va_start(ap, sql);
	int r = run(db, sql, ap, &res, NULL);
	va_end(ap);
	if (r < 0)
		return r;
	if (!res) /* run gives rows on success (said for the analyzer) */
		return -EIO;
	db_row row = db_res_next(res);
	if (!row)
		return -ENOENT;
	*ret_row = row;
	*ret = TAKE_PTR(res);
	return 0;
}

int db_query_i64(struct db *db, int64_t *ret, const char *sql, ...)
{
	_cleanup_result_ struct db_res *res = NULL;
	va_list ap;
	va_start(ap, sql);
	int r = run(db, sql, ap, &res, NULL);
	va_end(ap);
	if (r < 0)
		return r;
	if (!res) /* run gives rows on success (said for the analyzer) */
		return -EIO;
	db_row row = db_res_next(res);
	if (!row)
		return -ENOENT;
	if (db_res_fields(res) < 1) /* a row of no column: no statement returns one */
		return -EIO;
	*ret = db_row_i64(row, 0);
	return 0;
}

/* START TRANSACTION and COMMIT go as plain text (they carry no value): Galera reports a
 * transaction that a replicated commit aborted (brute force) to the next statement, and a
 * prepared COMMIT after such an abort was answered OK with nothing committed (tests/galera: 2
 * of 600 jobs "done" in the daemon, processing in the database). */
static int run_text(struct db *db, const char *sql)
{
	int r = check_up(db);
	if (r < 0)
		return r;
	if (mysql_real_query(db->my, sql, strlen(sql)) != 0) {
		db->err = mysql_errno(db->my);
		set_error(db, mysql_error(db->my));
		log_debug("db: statement failed (%u %s): %s", db->err, db_error(db), sql);
		return map_errno(db->err);
	}
	db->err = 0;
	set_error(db, NULL);
	return 0;
}

int db_begin(struct db *db) { return run_text(db, "START TRANSACTION"); }
int db_commit(struct db *db) { return run_text(db, "COMMIT"); }
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

/* A pause of about DB_TXN_BACKOFF_MS × 2^(attempt − 1) ms (at most DB_TXN_BACKOFF_MAX), drawn
 * between half and all of it, so that two kiosks whose transactions collided do not collide
 * again in step. */
static void txn_backoff(int attempt)
{
	static _Thread_local uint64_t x;
	struct timespec now, pause;
	unsigned ms = DB_TXN_BACKOFF_MS;

	for (int i = 1; i < attempt && ms < DB_TXN_BACKOFF_MAX; i++)
		ms *= 2;
	if (ms > DB_TXN_BACKOFF_MAX)
		ms = DB_TXN_BACKOFF_MAX;
	if (x == 0) {
		clock_gettime(CLOCK_REALTIME, &now);
		x = ((uint64_t)now.tv_nsec << 20) ^ (uint64_t)now.tv_sec ^ (uint64_t)(uintptr_t)&now;
		x |= 1;
	}
	x ^= x << 13; /* xorshift64 */
	x ^= x >> 7;
	x ^= x << 17;
	uint64_t us = (uint64_t)ms * 1000 / 2 + x % ((uint64_t)ms * 1000 / 2 + 1);
	pause.tv_sec = (time_t)(us / 1000000);
	pause.tv_nsec = (long)(us % 1000000) * 1000;
	while (nanosleep(&pause, &pause) < 0 && errno == EINTR)
		;
}

int db_transaction(struct db *db, int (*fn)(struct db *db, void *userdata), void *userdata)
{
	int r = check_up(db);
	if (r < 0)
		return r;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int attempt = 0;; attempt++) {
		bool committing = false;
		if (attempt > 0)
			txn_backoff(attempt);
		r = db_begin(db);
		if (r == 0) {
			db->in_txn = true;
			db->txn_aborted = false;
			r = fn(db, userdata);
			/* fn may have gone on past the abort (an error it expected, ignored): the
			 * server rolled the transaction back all the same */
			if (db->txn_aborted)
				r = db->txn_abort_r;
			db->in_txn = false;
			db->txn_aborted = false;
			if (r == 0 && db->my && !(db->my->server_status & SERVER_STATUS_IN_TRANS)) {
				db->err = ER_LOCK_DEADLOCK;
				set_error(db, "the transaction was rolled back by the server (a conflicting commit "
					      "of another node)");
				r = -EAGAIN;
			}
			if (r == 0) {
				committing = true;
				r = db_commit(db);
			}
		}
		if (r == 0)
			return 0;
		unsigned err = db->err;
		db_rollback(db);
		if (attempt + 1 >= DB_TXN_ATTEMPTS || (r != -EAGAIN && r != -ENOTCONN))
			return r;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= DB_TXN_BUDGET_S) /* lock waits of 10 s each, reconnects */
			return r;
		if (r == -ENOTCONN) {
			/* The server or node is gone (or says it is not ready: 1047). Before COMMIT
			 * nothing of the transaction was committed: run it again on a connection to
			 * the next server that answers. A lost answer to COMMIT leaves its outcome
			 * unknown: that is the caller's to find out (its guarded statements tell), not
			 * ours to run twice; a node that refused the COMMIT (1047) committed nothing. */
			if (committing && err != ER_UNKNOWN_COM_ERROR)
				return r;
			log_debug("db: transaction lost its server (%u: %s); reconnecting to run it again", err,
				  db_error(db));
			r = db_reconnect(db, NULL);
			if (r < 0)
				return r;
			continue;
		}
		log_debug("db: transaction conflicted (%u: %s); running it again (attempt %d)", err, db_error(db),
			  attempt + 2);
	}
}

int64_t db_row_i64(db_row row, unsigned i) { return row[i] ? strtoll(row[i], NULL, 10) : 0; }
uint64_t db_row_u64(db_row row, unsigned i) { return row[i] ? strtoull(row[i], NULL, 10) : 0; }
double db_row_dbl(db_row row, unsigned i) { return row[i] ? strtod(row[i], NULL) : 0.0; }
