/* Implementation of db/prune.h. A batch is one transaction: the next PRUNE_BATCH_JOBS finished
 * jobs past the horizon, by primary key, locked FOR UPDATE SKIP LOCKED (a job an operator or a
 * daemon holds this moment is left for the next prune), then their rows archived and deleted by
 * the list of those ids, so that nothing but the locked jobs' rows is touched. */
#include "db/prune.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "config/config.h"
#include "db/db.h"
#include "db/orders.h"
#include "util/macro.h"
#include "util/message.h"

int prune_age_parse(const char *s, int64_t *ret_seconds) { return config_parse_age(s, ret_seconds); }

struct archive {
	int fd;
	ZSTD_CCtx *cz;
	void *out;
	size_t out_cap;
};

static int archive_write_all(struct archive *a, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(a->fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Feed in (may be empty) with the directive; write what zstd gives until it is done. */
static int archive_stream(struct archive *a, const void *data, size_t n, ZSTD_EndDirective how)
{
	ZSTD_inBuffer in = { data, n, 0 };
	for (;;) {
		ZSTD_outBuffer out = { a->out, a->out_cap, 0 };
		size_t left = ZSTD_compressStream2(a->cz, &out, &in, how);
		if (ZSTD_isError(left))
			return -EIO;
		int r = archive_write_all(a, a->out, out.pos);
		if (r < 0)
			return r;
		if (how == ZSTD_e_continue ? in.pos == in.size : left == 0)
			return 0;
	}
}

static struct archive *archive_free(struct archive *a)
{
	if (!a)
		return NULL;
	if (a->fd >= 0)
		close(a->fd);
	ZSTD_freeCCtx(a->cz);
	free(a->out);
	free(a);
	return NULL;
}

static int archive_open(const char *path, struct archive **ret, char **ret_error)
{
	struct archive *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (a->fd < 0) {
		int r = -errno;
		archive_free(a);
		return error_set(ret_error, r, "--archive: '%s': %s", path, strerror(-r));
	}
	struct stat st;
	if (fstat(a->fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		archive_free(a);
		return error_set(ret_error, -EINVAL, "--archive: '%s' is not a new regular file", path);
	}
	a->cz = ZSTD_createCCtx();
	a->out_cap = ZSTD_CStreamOutSize();
	a->out = malloc(a->out_cap);
	if (!a->cz || !a->out) {
		archive_free(a);
		return -ENOMEM;
	}
	(void)ZSTD_CCtx_setParameter(a->cz, ZSTD_c_compressionLevel, 3);
	*ret = a;
	return 0;
}

/* Everything written so far compressed out and on the disk. */
static int archive_sync(struct archive *a)
{
	int r = archive_stream(a, NULL, 0, ZSTD_e_flush);
	if (r < 0)
		return r;
	return fsync(a->fd) < 0 ? -errno : 0;
}

static int archive_close(struct archive *a)
{
	int r = archive_stream(a, NULL, 0, ZSTD_e_end);
	if (r >= 0 && fsync(a->fd) < 0)
		r = -errno;
	if (close(a->fd) < 0 && r >= 0)
		r = -errno;
	a->fd = -1;
	return r;
}

static json_t *value_json(enum db_kind kind, const char *v)
{
	if (!v)
		return json_null();
	switch (kind) {
	case DB_KIND_INT:
		return json_integer(strtoll(v, NULL, 10));
	case DB_KIND_UINT: {
		unsigned long long u = strtoull(v, NULL, 10);
		return u <= INT64_MAX ? json_integer((json_int_t)u) : json_string(v);
	}
	case DB_KIND_REAL:
		return json_real(strtod(v, NULL));
	default:
		return json_string(v); /* NULL when not UTF-8 */
	}
}

/* One line per row: {"table": T, "row": {column: value, …}}. */
static int archive_rows(struct archive *a, const char *table, struct db_res *res)
{
	db_row row;
	while ((row = db_res_next(res))) {
		json_t *o = json_object();
		if (!o)
			return -ENOMEM;
		for (unsigned i = 0; i < db_res_fields(res); i++) {
			json_t *v = value_json(db_res_field_kind(res, i), row[i]);
			if (!v || json_object_set_new(o, db_res_field_name(res, i), v) < 0) {
				json_decref(o);
				return -EILSEQ;
			}
		}
		json_t *doc = json_pack("{s:s, s:o}", "table", table, "row", o);
		char *line = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
		json_decref(doc);
		if (!line)
			return -ENOMEM;
		size_t n = strlen(line);
		line[n] = '\n'; /* json_dumps' terminator, not part of the line */
		int r = archive_stream(a, line, n + 1, ZSTD_e_continue);
		free(line);
		if (r < 0)
			return r;
	}
	return 0;
}

struct batch {
	const struct prune_req *req;
	struct archive *ar;
	const char *cutoff;
	int64_t after; /* the last job id examined by the batches before */
	int64_t last;  /* this batch's */
	bool empty;
	int archive_error; /* the archive's write failed (not the database) */
	struct prune_stats got;
};

static int archive_failed(struct batch *b, int r)
{
	if (r < 0)
		b->archive_error = r;
	return r;
}

static int append_id(char **list, const char *v)
{
	char *n = *list ? str_printf("%s,%s", *list, v) : strdup(v);
	if (!n)
		return -ENOMEM;
	free(*list);
	*list = n;
	return 0;
}

/* Archive then delete (or count, in a dry run) the rows "FROM table WHERE where". */
static int take(struct db *db, struct batch *b, const char *table, const char *where, int64_t *count)
{
	int r;
	if (b->req->dry_run) {
		_cleanup_free_ char *sql = str_printf("SELECT COUNT(*) FROM %s WHERE %s", table, where);
		return sql ? db_query_i64(db, count, sql, DB_END) : -ENOMEM;
	}
	if (b->ar) {
		_cleanup_result_ struct db_res *res = NULL;
		_cleanup_free_ char *sql = str_printf("SELECT * FROM %s WHERE %s", table, where);
		if (!sql)
			return -ENOMEM;
		r = db_query(db, &res, sql, DB_END);
		if (r < 0)
			return r;
		r = archive_failed(b, archive_rows(b->ar, table, res));
		if (r < 0)
			return r;
	}
	_cleanup_free_ char *sql = str_printf("DELETE FROM %s WHERE %s", table, where);
	if (!sql)
		return -ENOMEM;
	uint64_t n = 0;
	r = db_exec(db, &n, sql, DB_END);
	*count = (int64_t)n;
	return r;
}

#define UNPUBLISHED_OF(type, id_sql)                                                                                   \
	"EXISTS (SELECT 1 FROM events u WHERE u.aggregate_type = '" type "' AND u.aggregate_id = " id_sql              \
	" AND u.published_at IS NULL)"
#define ELIGIBLE_SQL                                                                                                   \
	"j.status IN ('done', 'failed', 'cancelled') AND COALESCE(j.completed_at, j.failed_at, j.cancelled_at) < ?"

static int batch_txn(struct db *db, void *userdata)
{
	struct batch *b = userdata;
	const struct prune_req *q = b->req;
	_cleanup_result_ struct db_res *res = NULL;
	_cleanup_free_ char *ids = NULL, *orders = NULL, *w = NULL;
	b->got = (struct prune_stats){ 0 };
	int r = db_query(db, &res,
			 q->dry_run ? "SELECT j.id, j.order_id FROM processing_jobs j WHERE j.id > ? AND " ELIGIBLE_SQL
				      " ORDER BY j.id LIMIT ?"
				    : "SELECT j.id, j.order_id FROM processing_jobs j WHERE j.id > ? AND " ELIGIBLE_SQL
				      " ORDER BY j.id LIMIT ? FOR UPDATE SKIP LOCKED",
			 DB_I64(b->after), DB_STR(b->cutoff), DB_I64(PRUNE_BATCH_JOBS), DB_END);
	if (r < 0)
		return r;
	db_row row;
	b->empty = true;
	while ((row = db_res_next(res))) {
		b->empty = false;
		b->last = db_row_i64(row, 0);
		if (append_id(&ids, row[0]) < 0 || append_id(&orders, row[1]) < 0)
			return -ENOMEM;
	}
	if (b->empty)
		return 0;

	w = str_printf("job_id IN (%s)", ids);
	if (!w || (r = take(db, b, "processing_job_logs", w, &b->got.logs)) < 0 ||
	    (r = take(db, b, "processing_job_items", w, &b->got.items)) < 0)
		return w ? r : -ENOMEM;
	free(w);
	w = str_printf("aggregate_type = 'job' AND aggregate_id IN (%s) AND published_at IS NOT NULL", ids);
	if (!w || (r = take(db, b, "events", w, &b->got.events)) < 0)
		return w ? r : -ENOMEM;
	if (!q->jobs)
		return b->ar ? archive_failed(b, archive_sync(b->ar)) : 0;

	free(w);
	w = str_printf("id IN (%s) AND NOT " UNPUBLISHED_OF("job", "processing_jobs.id"), ids);
	if (!w || (r = take(db, b, "processing_jobs", w, &b->got.jobs)) < 0)
		return w ? r : -ENOMEM;
	/* the orders left without a job: in a dry run, those whose every job would go by the end
	 * of this batch (counted once: in the batch holding their last job) */
	free(w);
	w = q->dry_run
		    ? str_printf("id IN (%s) AND status IN ('done', 'failed', 'cancelled') AND NOT EXISTS"
				 " (SELECT 1 FROM processing_jobs j WHERE j.order_id = orders.id AND (j.id > %" PRId64
				 " OR NOT (j.status IN ('done', 'failed', 'cancelled') AND COALESCE(j.completed_at,"
				 " j.failed_at, j.cancelled_at) < '%s') OR " UNPUBLISHED_OF(
					 "job", "j.id") "))"
							" AND NOT " UNPUBLISHED_OF("order", "orders.id"),
				 orders, b->last, b->cutoff)
		    : str_printf("id IN (%s) AND status IN ('done', 'failed', 'cancelled') AND NOT EXISTS"
				 " (SELECT 1 FROM processing_jobs j WHERE j.order_id = orders.id)"
				 " AND NOT " UNPUBLISHED_OF("order", "orders.id"),
				 orders);
	if (!w)
		return -ENOMEM;
	/* by the list of their ids (a subquery in the DELETE would scan every event) */
	_cleanup_result_ struct db_res *ores = NULL;
	_cleanup_free_ char *osql = str_printf("SELECT id FROM orders WHERE %s%s", w, q->dry_run ? "" : " FOR UPDATE");
	if (!osql)
		return -ENOMEM;
	r = db_query(db, &ores, osql, DB_END);
	if (r < 0)
		return r;
	_cleanup_free_ char *gone = NULL;
	while ((row = db_res_next(ores)))
		if (append_id(&gone, row[0]) < 0)
			return -ENOMEM;
	if (!gone)
		return b->ar ? archive_failed(b, archive_sync(b->ar)) : 0;
	/* the orders' own events first (published: the order has none unpublished) */
	_cleanup_free_ char *ew =
		str_printf("aggregate_type = 'order' AND aggregate_id IN (%s) AND published_at IS NOT NULL", gone);
	int64_t n = 0;
	if (!ew || (r = take(db, b, "events", ew, &n)) < 0)
		return ew ? r : -ENOMEM;
	b->got.events += n;
	free(w);
	w = str_printf("id IN (%s)", gone);
	if (!w)
		return -ENOMEM;
	r = take(db, b, "orders", w, &b->got.orders);
	if (r < 0)
		return r;
	return b->ar ? archive_failed(b, archive_sync(b->ar)) : 0;
}

int db_prune(struct db *db, const struct prune_req *req, struct prune_stats *ret, char **ret_error)
{
	struct prune_stats total = { 0 };
	struct archive *ar = NULL;
	_cleanup_result_ struct db_res *res = NULL;
	db_row row;
	int r = db_query_row(db, &res, &row, "SELECT CAST(NOW(6) - INTERVAL ? SECOND AS CHAR)",
			     DB_I64(req->older_than_s), DB_END);
	if (r < 0)
		return r;
	snprintf(total.cutoff, sizeof(total.cutoff), "%s", row[0]);
	if (req->archive && !req->dry_run) {
		r = archive_open(req->archive, &ar, ret_error);
		if (r < 0)
			return r;
	}
	struct batch b = { .req = req, .ar = ar, .cutoff = total.cutoff };
	for (;;) {
		if (req->cancel && *req->cancel) {
			r = -ECANCELED;
			break;
		}
		r = db_transaction(db, batch_txn, &b);
		if (r < 0 || b.empty)
			break;
		b.after = b.last;
		total.logs += b.got.logs;
		total.items += b.got.items;
		total.events += b.got.events;
		total.jobs += b.got.jobs;
		total.orders += b.got.orders;
	}
	if (r < 0 && b.archive_error)
		(void)error_set(ret_error, r, "--archive: '%s': %s", req->archive,
				r == -EILSEQ ? "a value is not UTF-8" : strerror(-r));
	if (ar) {
		int k = archive_close(ar);
		if (r >= 0 && k < 0)
			r = error_set(ret_error, k, "--archive: '%s': %s", req->archive, strerror(-k));
		ar = archive_free(ar);
	}
	if (r < 0)
		return r;
	if (!req->dry_run) {
		json_t *meta = json_pack("{s:I, s:b, s:s?, s:s, s:I, s:I, s:I, s:I, s:I}", "older_than_seconds",
					 (json_int_t)req->older_than_s, "jobs", req->jobs, "archive", req->archive,
					 "cutoff", total.cutoff, "logs", (json_int_t)total.logs, "items",
					 (json_int_t)total.items, "events", (json_int_t)total.events, "jobs_removed",
					 (json_int_t)total.jobs, "orders", (json_int_t)total.orders);
		r = audit_add(db, req->actor ? req->actor : "usbforge", "database", 0, "db.prune", meta);
		json_decref(meta);
		if (r < 0)
			return r;
	}
	*ret = total;
	return 0;
}

int prune_lease_take(struct db *db, const char *holder, int64_t seconds, bool *ret_held)
{
	uint64_t n = 0;
	/* the row of migration 5, made here too for a database that took an earlier cut of it */
	int r = db_exec(db, NULL,
			"INSERT IGNORE INTO outbox_lease (name, holder, expires_at)"
			" VALUES ('prune', NULL, '2000-01-01 00:00:00')",
			DB_END);
	if (r < 0)
		return r;
	r = db_exec(db, &n,
		    "UPDATE outbox_lease SET holder = ?, expires_at = NOW(6) + INTERVAL ? SECOND"
		    " WHERE name = 'prune' AND expires_at < NOW(6)",
		    DB_STR(holder), DB_I64(seconds), DB_END);
	if (r < 0)
		return r;
	*ret_held = n == 1;
	return 0;
}

int prune_lease_release(struct db *db, const char *holder)
{
	return db_exec(db, NULL,
		       "UPDATE outbox_lease SET holder = NULL, expires_at = NOW(6) WHERE name = 'prune' AND holder = ?",
		       DB_STR(holder), DB_END);
}
