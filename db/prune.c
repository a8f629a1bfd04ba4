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

/* A new file at path, created in its directory opened once (O_DIRECTORY: never a FIFO), which is
 * then fsynced: the new entry is durable before any batch deletes what the file holds. */
static int archive_open(const char *path, struct archive **ret, char **ret_error)
{
	_cleanup_free_ char *dir = strdup(path);
	struct archive *a = dir ? calloc(1, sizeof(*a)) : NULL;
	if (!a)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : path;
	const char *d = !slash ? "." : slash == dir ? "/" : (*slash = 0, dir);
	int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	a->fd = dfd < 0 ? -1 : openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	int r = a->fd < 0 || fsync(dfd) < 0 ? -errno : 0;
	if (dfd >= 0)
		close(dfd);
	if (r < 0) {
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

/* Append v to the comma-separated list *list (made when NULL). */
static int append_id(char **list, const char *v)
{
	char *n = *list ? str_printf("%s,%s", *list, v) : strdup(v);
	if (!n)
		return -ENOMEM;
	free(*list);
	*list = n;
	return 0;
}

/* One line per row: {"table": T, "row": {column: value, …}}. With key, the rows' values of that
 * column are appended to *keys (a comma-separated list of integers). */
static int archive_rows(struct archive *a, const char *table, struct db_res *res, const char *key, char **keys)
{
	db_row row;
	while ((row = db_res_next(res))) {
		json_t *o = json_object();
		if (!o)
			return -ENOMEM;
		for (unsigned i = 0; i < db_res_fields(res); i++) {
			const char *name = db_res_field_name(res, i);
			json_t *v = value_json(db_res_field_kind(res, i), row[i]);
			if (!v || json_object_set_new(o, name, v) < 0) {
				json_decref(o);
				return -EILSEQ;
			}
			if (key && strcmp(name, key) == 0 && (!row[i] || append_id(keys, row[i]) < 0)) {
				json_decref(o);
				return row[i] ? -ENOMEM : -EINVAL;
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

/* One kind of row a batch removes: FROM table WHERE where (what a dry run counts and the archive
 * holds), deleted by a join of col on a list of ids: given (the batch's locked jobs and orders,
 * whose rows the locks hold still), or, when ids is NULL, the col of the rows the WHERE selects,
 * locked (events: one the relay publishes meanwhile would match the WHERE by the DELETE). The
 * DELETE goes through the ids' list to each row by its index: a DELETE … WHERE col IN (…) may scan
 * the table (a small one), waiting on the rows of running jobs while the count rows it has
 * updated are held, and a runner's end waits on those: a deadlock (test_prune's drainers). */
struct step {
	const char *table;
	char *where; /* malloc'd */
	const char *col;
	char *ids;	/* malloc'd, "1,2,…"; NULL until selected */
	int64_t *count; /* added to */
};

#define MAX_STEPS 6 /* the jobs' logs, items and events; the orders' events, the jobs, the orders */

struct batch {
	const struct prune_req *req;
	struct archive *ar;
	const char *cutoff;
	int64_t after; /* the last job id examined by the batches before */
	int64_t last;  /* this batch's */
	bool empty;
	int archive_error; /* the archive's write failed (not the database) */
	struct prune_stats got;
	struct step steps[MAX_STEPS];
	size_t n_steps;
};

static int archive_failed(struct batch *b, int r)
{
	if (r < 0)
		b->archive_error = r;
	return r;
}

static void steps_free(struct batch *b)
{
	for (size_t i = 0; i < b->n_steps; i++) {
		free(b->steps[i].where);
		free(b->steps[i].ids);
	}
	b->n_steps = 0;
}

/* Add a step: the rows FROM table WHERE "col IN (ids)", or where (ids NULL: selected). where and
 * ids are taken; a NULL where is -ENOMEM, and so is a NULL ids with no where. */
static int step_add(struct batch *b, const char *table, const char *col, char *ids, char *where, int64_t *count)
{
	if (ids && !where)
		where = str_printf("%s IN (%s)", col, ids);
	if (!where || b->n_steps == MAX_STEPS) { /* the latter a bug: MAX_STEPS says how many */
		free(where);
		free(ids);
		return where ? -E2BIG : -ENOMEM;
	}
	b->steps[b->n_steps++] =
		(struct step){ .table = table, .where = where, .col = col, .ids = ids, .count = count };
	return 0;
}

/* The batch's steps, in order. A dry run counts. Otherwise every step's rows are selected and
 * locked (FOR UPDATE: the archive's, or the ids of the rows to delete), then the archive is
 * fsynced, before any DELETE: the DELETEs, and the count rows the triggers update, hold their
 * locks for as short as they can, never across the fsync. */
static int steps_run(struct db *db, struct batch *b)
{
	int r;
	for (size_t i = 0; i < b->n_steps; i++) {
		struct step *s = &b->steps[i];
		if (b->req->dry_run) {
			int64_t n = 0;
			_cleanup_free_ char *sql = str_printf("SELECT COUNT(*) FROM %s WHERE %s", s->table, s->where);
			if (!sql)
				return -ENOMEM;
			if ((r = db_query_i64(db, &n, sql, DB_END)) < 0)
				return r;
			*s->count += n;
			continue;
		}
		if (!b->ar && s->ids)
			continue;
		_cleanup_result_ struct db_res *res = NULL;
		_cleanup_free_ char *sql =
			str_printf("SELECT %s FROM %s WHERE %s FOR UPDATE", b->ar ? "*" : s->col, s->table, s->where);
		if (!sql)
			return -ENOMEM;
		if ((r = db_query(db, &res, sql, DB_END)) < 0)
			return r;
		_cleanup_free_ char *keys = NULL;
		if (b->ar) {
			r = archive_failed(b, archive_rows(b->ar, s->table, res, s->ids ? NULL : s->col, &keys));
			if (r < 0)
				return r;
		} else {
			db_row row;
			while ((row = db_res_next(res)))
				if (!row[0] || append_id(&keys, row[0]) < 0)
					return row[0] ? -ENOMEM : -EINVAL;
		}
		if (!s->ids)
			s->ids = TAKE_PTR(keys);
	}
	if (b->req->dry_run)
		return 0;
	if (b->ar && (r = archive_failed(b, archive_sync(b->ar))) < 0)
		return r;
	for (size_t i = 0; i < b->n_steps; i++) {
		struct step *s = &b->steps[i];
		if (!s->ids) /* selected none */
			continue;
		_cleanup_free_ char *sql =
			str_printf("DELETE t FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) k"
				   " STRAIGHT_JOIN %s t ON t.%s = k.id",
				   s->table, s->col);
		_cleanup_free_ char *list = str_printf("[%s]", s->ids);
		if (!sql || !list)
			return -ENOMEM;
		uint64_t n = 0;
		if ((r = db_exec(db, &n, sql, DB_STR(list), DB_END)) < 0)
			return r;
		*s->count += (int64_t)n;
	}
	return 0;
}

/* clang-format off */
#define FINISHED_BEFORE(alias)                                                                    \
	alias ".status IN ('done', 'failed', 'cancelled') AND COALESCE(" alias ".completed_at, "  \
	alias ".failed_at, " alias ".cancelled_at) < '%s'"
#define UNPUBLISHED_OF(type, id_sql)                                                              \
	"EXISTS (SELECT 1 FROM events u WHERE u.aggregate_type = '" type "'"                      \
	" AND u.aggregate_id = " id_sql " AND u.published_at IS NULL)"
/* The batch's orders that may go (orders, the batch's last job id, the cutoff, a locking
 * clause): finished, no unpublished event, and no job that may not (past the batch, not finished
 * before the horizon, or with an unpublished event). */
#define ORDERS_SQL                                                                                \
	"SELECT o.id FROM orders o WHERE o.id IN (%s)"                                            \
	" AND o.status IN ('done', 'failed', 'cancelled')"                                        \
	" AND NOT " UNPUBLISHED_OF("order", "o.id")                                               \
	" AND NOT EXISTS (SELECT 1 FROM processing_jobs k WHERE k.order_id = o.id"                \
	"  AND (k.id > %" PRId64 " OR NOT (" FINISHED_BEFORE("k") ")"                             \
	"   OR " UNPUBLISHED_OF("job", "k.id") "))%s"
/* Those orders' jobs (the cutoff, the orders, a locking clause), each with whether it may go. */
#define ORDER_JOBS_SQL                                                                            \
	"SELECT k.id, k.order_id, (" FINISHED_BEFORE("k") ") AND NOT " UNPUBLISHED_OF("job", "k.id") \
	" FROM processing_jobs k WHERE k.order_id IN (%s) ORDER BY k.order_id%s"
/* clang-format on */

/* --jobs: the orders that go with this batch, and their jobs. An order goes whole or not at all
 * (a unit's row left behind would let `order confirm` make that unit again): when it is
 * finished, has no unpublished event, and every one of its jobs is finished before the horizon
 * with no unpublished event. It is looked at once, in the batch that holds its last job. Its
 * row is locked (SKIP LOCKED: one an operator holds waits for the next prune), then its jobs
 * (all finished, so no runner holds them), and the jobs are checked again under those locks.
 * *gone: those orders; *gone_jobs: their jobs; *extra: those of their jobs not in ids (earlier
 * batches', or one locked then). Each a list, NULL when empty. */
static int orders_gone(struct db *db, struct batch *b, const char *orders, const int64_t *ids, size_t n_ids,
		       char **gone, char **gone_jobs, char **extra)
{
	const bool dry = b->req->dry_run;
	_cleanup_result_ struct db_res *res = NULL;
	_cleanup_free_ char *sql =
		str_printf(ORDERS_SQL, orders, b->last, b->cutoff, dry ? "" : " FOR UPDATE SKIP LOCKED");
	if (!sql)
		return -ENOMEM;
	int r = db_query(db, &res, sql, DB_END);
	if (r < 0)
		return r;
	_cleanup_free_ char *cands = NULL;
	db_row row;
	while ((row = db_res_next(res)))
		if (append_id(&cands, row[0]) < 0)
			return -ENOMEM;
	if (!cands)
		return 0;

	/* their jobs, locked, each with whether it may go, an order's together */
	_cleanup_result_ struct db_res *jres = NULL;
	_cleanup_free_ char *jsql = str_printf(ORDER_JOBS_SQL, b->cutoff, cands, dry ? "" : " FOR UPDATE");
	if (!jsql)
		return -ENOMEM;
	if ((r = db_query(db, &jres, jsql, DB_END)) < 0)
		return r;
	_cleanup_free_ char *jobs = NULL, *more = NULL; /* the order's jobs, and those not in ids */
	char order[24] = "";				/* the order of the rows in jobs (a row is not kept) */
	bool ok = true;
	for (;;) {
		row = db_res_next(jres);
		if (*order && (!row || strcmp(row[1], order) != 0)) { /* the order's last job was the row before */
			if (ok && (append_id(gone, order) < 0 || append_id(gone_jobs, jobs) < 0 ||
				   (more && append_id(extra, more) < 0)))
				return -ENOMEM;
			jobs = mfree(jobs);
			more = mfree(more);
			ok = true;
		}
		if (!row)
			return 0;
		snprintf(order, sizeof(order), "%s", row[1]);
		ok = ok && db_row_i64(row, 2) == 1; /* one changed since: the whole order stays */
		bool in_batch = false;
		for (size_t i = 0; i < n_ids && !in_batch; i++)
			in_batch = ids[i] == db_row_i64(row, 0);
		if (append_id(&jobs, row[0]) < 0 || (!in_batch && append_id(&more, row[0]) < 0))
			return -ENOMEM;
	}
}

/* The steps of the log rows, items and published events of the jobs in the list ids. */
static int job_rows_add(struct batch *b, const char *ids)
{
	struct prune_stats *g = &b->got;
	int r = step_add(b, "processing_job_logs", "job_id", strdup(ids), NULL, &g->logs);
	if (r >= 0)
		r = step_add(b, "processing_job_items", "job_id", strdup(ids), NULL, &g->items);
	if (r >= 0)
		r = step_add(b, "events", "id", NULL,
			     str_printf("aggregate_type = 'job' AND aggregate_id IN (%s) AND published_at IS NOT NULL",
					ids),
			     &g->events);
	return r;
}

static int batch_txn(struct db *db, void *userdata)
{
	struct batch *b = userdata;
	const struct prune_req *q = b->req;
	steps_free(b); /* a rerun starts over */
	b->got = (struct prune_stats){ 0 };
	_cleanup_result_ struct db_res *res = NULL;
	_cleanup_free_ char *sql =
		str_printf("SELECT j.id, j.order_id FROM processing_jobs j WHERE j.id > %" PRId64
			   " AND " FINISHED_BEFORE("j") " ORDER BY j.id LIMIT %d%s",
			   b->after, b->cutoff, PRUNE_BATCH_JOBS, q->dry_run ? "" : " FOR UPDATE SKIP LOCKED");
	if (!sql)
		return -ENOMEM;
	int r = db_query(db, &res, sql, DB_END);
	if (r < 0)
		return r;
	_cleanup_free_ char *ids = NULL, *orders = NULL, *gone = NULL, *gone_jobs = NULL, *extra = NULL;
	int64_t id[PRUNE_BATCH_JOBS];
	size_t n = 0;
	db_row row;
	while ((row = db_res_next(res)) && n < PRUNE_BATCH_JOBS) {
		id[n++] = db_row_i64(row, 0);
		if (append_id(&ids, row[0]) < 0 || append_id(&orders, row[1]) < 0)
			return -ENOMEM;
	}
	b->empty = n == 0;
	if (b->empty)
		return 0;
	b->last = id[n - 1];
	if (q->jobs && (r = orders_gone(db, b, orders, id, n, &gone, &gone_jobs, &extra)) < 0)
		return r;
	/* the rows of the batch's jobs, and of the going orders' other jobs (in a dry run, their own
	 * batch counted those) */
	if (extra && !q->dry_run && append_id(&ids, extra) < 0)
		return -ENOMEM;
	if ((r = job_rows_add(b, ids)) < 0)
		return r;
	struct prune_stats *g = &b->got;
	if (gone &&
	    ((r = step_add(b, "events", "id", NULL,
			   str_printf("aggregate_type = 'order' AND aggregate_id IN (%s) AND published_at IS NOT NULL",
				      gone),
			   &g->events)) < 0 ||
	     (r = step_add(b, "processing_jobs", "id", TAKE_PTR(gone_jobs), NULL, &g->jobs)) < 0 ||
	     (r = step_add(b, "orders", "id", TAKE_PTR(gone), NULL, &g->orders)) < 0))
		return r;
	return steps_run(db, b);
}

/* The audit row of a run that removed something: the request, the counts, and the error that
 * stopped it (NULL: it ended). */
static int prune_audit(struct db *db, const struct prune_req *req, const struct prune_stats *t, const char *error)
{
	json_t *meta = json_pack("{s:I, s:b, s:s?, s:s, s:I, s:I, s:I, s:I, s:I, s:s?}", "older_than_seconds",
				 (json_int_t)req->older_than_s, "jobs", req->jobs, "archive", req->archive, "cutoff",
				 t->cutoff, "logs", (json_int_t)t->logs, "items", (json_int_t)t->items, "events",
				 (json_int_t)t->events, "jobs_removed", (json_int_t)t->jobs, "orders",
				 (json_int_t)t->orders, "error", error);
	int r = meta ? audit_add(db, req->actor ? req->actor : "usbforge", "database", 0, "db.prune", meta) : -ENOMEM;
	json_decref(meta);
	return r;
}

/* The server's NOW(6) − horizon, checked to be a DATETIME's text (it is put into the batches'
 * SQL). */
static int prune_cutoff(struct db *db, int64_t older_than_s, char *buf, size_t size)
{
	_cleanup_result_ struct db_res *res = NULL;
	db_row row;
	int r = db_query_row(db, &res, &row, "SELECT CAST(NOW(6) - INTERVAL ? SECOND AS CHAR)", DB_I64(older_than_s),
			     DB_END);
	if (r < 0)
		return r;
	if (!row[0] || strlen(row[0]) >= size || strspn(row[0], "0123456789-: .") != strlen(row[0]))
		return -ERANGE;
	snprintf(buf, size, "%s", row[0]);
	return 0;
}

int db_prune(struct db *db, const struct prune_req *req, struct prune_stats *ret, char **ret_error)
{
	struct prune_stats total = { 0 };
	struct archive *ar = NULL;
	*ret = total;
	int r = prune_cutoff(db, req->older_than_s, total.cutoff, sizeof(total.cutoff));
	if (r == -ERANGE)
		return error_set(ret_error, r, "the server gave no usable time for NOW(6) - %" PRId64 " s",
				 req->older_than_s);
	if (r < 0)
		return r;
	if (req->archive && !req->dry_run) {
		r = archive_open(req->archive, &ar, ret_error);
		if (r < 0)
			return r;
	}
	struct batch b = { .req = req, .ar = ar, .cutoff = total.cutoff };
	int batches = 0;
	for (;;) {
		if (req->cancel && atomic_load(req->cancel)) {
			r = error_set(ret_error, -ECANCELED, "cancelled");
			break;
		}
		r = db_transaction(db, batch_txn, &b);
		steps_free(&b);
		if (r < 0 || b.empty)
			break;
		batches++;
		b.after = b.last;
		total.logs += b.got.logs;
		total.items += b.got.items;
		total.events += b.got.events;
		total.jobs += b.got.jobs;
		total.orders += b.got.orders;
	}
	if (r == -ENOMEM)
		(void)error_set(ret_error, r, "out of memory");
	else if (r < 0 && b.archive_error)
		(void)error_set(ret_error, r, "--archive: '%s': %s", req->archive,
				r == -EILSEQ ? "a value is not UTF-8" : strerror(-r));
	if (ar) {
		int k = archive_close(ar);
		if (r >= 0 && k < 0)
			r = error_set(ret_error, k, "--archive: '%s': %s", req->archive, strerror(-k));
		ar = archive_free(ar);
	}
	*ret = total; /* what the committed batches removed, also when a later one failed */
	if (req->dry_run || (r < 0 && batches == 0))
		return r;
	if (r < 0) { /* removed some: say so in the audit log too (the database may be what failed) */
		_cleanup_free_ char *why = strdup(ret_error && *ret_error ? *ret_error : db_error(db));
		(void)prune_audit(db, req, &total, why ? why : "failed");
		return r;
	}
	return prune_audit(db, req, &total, NULL);
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
