/* db/orders.c: add, idempotent confirm (also 8 threads at once), the read side. Real MariaDB. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "db/orders.h"
#include "helpers/testdb.h"

#define DBNAME "uf_t_orders"
static struct db *db;

static void setup(void) { db = tdb_fresh(DBNAME); }
static void teardown(void) { db = db_close(db); }
TestSuite(orders, .init = setup, .fini = teardown);

static int64_t add(const char *number, int quantity)
{
	struct order_new o = { .number = number,
			       .capacity_bytes = 16000000000ULL,
			       .quantity = quantity,
			       .image_path = "/srv/img.raw",
			       .image_bytes = 1 << 20,
			       .customer = "Ana" };
	int64_t id = 0;
	cr_assert_eq(order_add(db, &o, &id), 0, "%s", db_error(db));
	return id;
}

Test(orders, add_then_duplicate_number_refused)
{
	add("A-1", 2);
	struct order_new o = { .number = "A-1", .capacity_bytes = 1, .quantity = 1, .image_path = "/x" };
	int64_t id;
	cr_assert_eq(order_add(db, &o, &id), -EEXIST);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders WHERE status = 'pending' AND confirmed_at IS NULL"), 1);
}

/* A statement that fails inside confirm's transaction: the caller gets the server's reason
 * (the ROLLBACK after it used to wipe it: "cannot confirm order 'X': " with nothing after). */
Test(orders, a_failed_confirm_keeps_the_servers_reason)
{
	add("R-1", 2);
	char corr[130];
	memset(corr, 'c', 129);
	corr[129] = 0;
	struct order_confirmation res = { 0 };
	cr_assert_eq(order_confirm(db, "R-1", corr, 4, "t", &res), -EIO);
	cr_assert_null(res.jobs, "nothing returned on failure");
	cr_assert_eq(res.n_jobs, 0);
	cr_assert_str_eq(db_error(db), "Data too long for column 'correlation_id' at row 1");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders WHERE status = 'pending'"), 1);
	/* the next failure reports its own reason, not the old one */
	cr_assert_eq(db_exec(db, NULL, "SELECT * FROM no_such_table", DB_END), -EIO);
	cr_assert(strstr(db_error(db), "no_such_table"), "%s", db_error(db));
}

Test(orders, confirm_creates_quantity_jobs_once)
{
	add("A-2", 3);
	struct order_confirmation r1 = { 0 }, r2 = { 0 };
	cr_assert_eq(order_confirm(db, "A-2", "corr-1", 4, "tester", &r1), 0, "%s", db_error(db));
	cr_assert_eq(r1.created, 3);
	cr_assert_eq(r1.n_jobs, 3);
	cr_assert_str_eq(r1.order_number, "A-2");
	cr_assert_str_eq(r1.order_status, "confirmed");
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(r1.jobs[i].unit_index, (int)i);
		cr_assert_eq(r1.jobs[i].status, JOB_STATE_QUEUED);
	}
	cr_assert_eq(order_confirm(db, "A-2", "corr-2", 4, "tester", &r2), 0);
	cr_assert_eq(r2.created, 0);
	cr_assert_eq(r2.n_jobs, 3);
	cr_assert_eq(r2.order_id, r1.order_id);
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(r2.jobs[i].id, r1.jobs[i].id, "same job ids");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 3);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued' AND max_attempts = 4"
			  " AND capacity_bytes = 16000000000 AND min_device_bytes = 1048576 AND correlation_id = 'corr-1'"),
		3);
	cr_assert_eq(
		tdb_count(db,
			  "SELECT COUNT(*) FROM audit_log WHERE entity_type = 'job' AND action = 'created' AND actor = 'tester'"),
		3);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM orders WHERE status = 'confirmed' AND confirmed_at >= created_at"),
		     1);
	order_confirmation_done(&r1);
	order_confirmation_done(&r2);
}

Test(orders, confirm_unknown_and_cancelled)
{
	struct order_confirmation r = { 0 };
	cr_assert_eq(order_confirm(db, "nope", NULL, 4, "t", &r), -ENOENT);
	add("A-3", 1);
	cr_assert_eq(db_exec(db, NULL, "UPDATE orders SET status = 'cancelled' WHERE order_number = 'A-3'", DB_END), 0);
	cr_assert_eq(order_confirm(db, "A-3", NULL, 4, "t", &r), -ECANCELED);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log"), 0);
}

struct racer {
	pthread_barrier_t *barrier;
	int64_t jobs[8];
	size_t n_jobs;
	int created;
	int rc;
};

static void *race(void *p)
{
	struct racer *r = p;
	struct db *c = tdb_connect(DBNAME);
	struct order_confirmation res = { 0 };
	pthread_barrier_wait(r->barrier);
	r->rc = order_confirm(c, "RACE", NULL, 4, "racer", &res);
	if (r->rc == 0) {
		r->n_jobs = res.n_jobs;
		for (size_t i = 0; i < res.n_jobs && i < 8; i++)
			r->jobs[i] = res.jobs[i].id;
		r->created = res.created;
		order_confirmation_done(&res);
	}
	db_close(c);
	return NULL;
}

Test(orders, eight_concurrent_confirms_make_quantity_jobs)
{
	enum { N = 8, Q = 5 };
	add("RACE", Q);
	pthread_barrier_t b;
	pthread_barrier_init(&b, NULL, N);
	pthread_t t[N];
	struct racer r[N];
	for (int i = 0; i < N; i++) {
		r[i] = (struct racer){ .barrier = &b };
		pthread_create(&t[i], NULL, race, &r[i]);
	}
	int total_created = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(r[i].rc, 0, "racer %d: %d", i, r[i].rc);
		total_created += r[i].created;
	}
	cr_assert_eq(total_created, Q, "exactly one caller created the jobs");
	cr_assert_eq(r[0].n_jobs, Q);
	for (int i = 1; i < N; i++) {
		cr_assert_eq(r[i].n_jobs, Q);
		cr_assert_eq(memcmp(r[0].jobs, r[i].jobs, Q * sizeof(r[0].jobs[0])), 0,
			     "every caller sees the same ids");
	}
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), Q);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(DISTINCT unit_index) FROM processing_jobs"), Q);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'created'"), Q);
	pthread_barrier_destroy(&b);
}

static int column_index(const struct db_res *res, const char *name)
{
	for (unsigned i = 0; i < db_res_fields(res); i++)
		if (strcmp(db_res_field_name(res, i), name) == 0)
			return (int)i;
	return -1;
}
static bool has_column(const struct db_res *res, const char *name) { return column_index(res, name) >= 0; }
static const char *column(const struct db_res *res, db_row row, const char *name)
{
	int i = column_index(res, name);
	cr_assert(i >= 0, "no column %s", name);
	return row[i];
}
static enum db_kind column_kind(const struct db_res *res, const char *name)
{
	int i = column_index(res, name);
	cr_assert(i >= 0, "no column %s", name);
	return db_res_field_kind(res, (unsigned)i);
}

Test(orders, show_and_job_show_carry_columns)
{
	add("S-1", 2);
	struct order_confirmation c = { 0 };
	struct record orec = { 0 }, jrec = { 0 }, none = { 0 };
	struct db_res *l = NULL;
	cr_assert_eq(order_confirm(db, "S-1", NULL, 4, "t", &c), 0);
	cr_assert_eq(order_show(db, "S-1", &orec), 0);
	/* every column by name and kind: what the CLI turns into JSON (cli/json.c) */
	db_row row = db_res_next(orec.row);
	cr_assert_not_null(row);
	cr_assert_str_eq(column(orec.row, row, "status"), "confirmed");
	cr_assert_str_eq(column(orec.row, row, "customer"), "Ana");
	cr_assert_eq(db_res_count(orec.rows), 2);
	cr_assert_eq(job_show(db, c.jobs[0].id, &jrec), 0);
	row = db_res_next(jrec.row);
	cr_assert_not_null(row);
	static const char *const cols[] = { "id",
					    "order_id",
					    "unit_index",
					    "schema_version",
					    "correlation_id",
					    "station",
					    "capacity_bytes",
					    "status",
					    "stage",
					    "progress",
					    "progress_detail",
					    "attempts",
					    "max_attempts",
					    "next_attempt_at",
					    "locked_by",
					    "heartbeat_at",
					    "slot",
					    "device_serial",
					    "device_capacity_bytes",
					    "bytes_total",
					    "bytes_written",
					    "created_at",
					    "started_at",
					    "completed_at",
					    "failed_at",
					    "cancel_requested_at",
					    "cancelled_at",
					    "cancelled_by",
					    "fail_reason",
					    "error_code",
					    "updated_at" };
	for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
		cr_assert(has_column(jrec.row, cols[i]), "job show lacks %s", cols[i]);
	cr_assert(has_column(jrec.row, "order_number"));
	cr_assert_str_eq(column(jrec.row, row, "progress"), "0");
	cr_assert(column_kind(jrec.row, "progress") == DB_KIND_INT ||
		  column_kind(jrec.row, "progress") == DB_KIND_UINT);
	cr_assert_eq(column_kind(jrec.row, "capacity_bytes"), DB_KIND_UINT);
	cr_assert_eq(column_kind(jrec.row, "status"), DB_KIND_TEXT);
	cr_assert_str_eq(column(jrec.row, row, "status"), "queued");
	cr_assert_eq(db_res_count(jrec.rows), 0, "an image order's job has no items");
	cr_assert_eq(job_show(db, 999999, &none), -ENOENT);
	cr_assert_null(none.row);
	cr_assert_eq(jobs_list(db, "queued", 10, &l), 0);
	cr_assert_eq(db_res_count(l), 2);
	l = db_res_free(l);
	cr_assert_eq(jobs_list(db, "done", 10, &l), 0);
	cr_assert_eq(db_res_count(l), 0);
	l = db_res_free(l);
	order_confirmation_done(&c);
	record_done(&orec);
	record_done(&jrec);
}
