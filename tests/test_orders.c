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
	json_t *res = NULL;
	cr_assert_eq(order_confirm(db, "R-1", corr, 4, "t", &res), -EIO);
	cr_assert_null(res);
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
	json_t *r1 = NULL, *r2 = NULL;
	cr_assert_eq(order_confirm(db, "A-2", "corr-1", 4, "tester", &r1), 0, "%s", db_error(db));
	cr_assert_eq(json_integer_value(json_object_get(r1, "created")), 3);
	cr_assert_eq(json_array_size(json_object_get(r1, "jobs")), 3);
	cr_assert_eq(order_confirm(db, "A-2", "corr-2", 4, "tester", &r2), 0);
	cr_assert_eq(json_integer_value(json_object_get(r2, "created")), 0);
	cr_assert(json_equal(json_object_get(r1, "jobs"), json_object_get(r2, "jobs")), "same job ids");
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
	json_decref(r1);
	json_decref(r2);
}

Test(orders, confirm_unknown_and_cancelled)
{
	json_t *r = NULL;
	cr_assert_eq(order_confirm(db, "nope", NULL, 4, "t", &r), -ENOENT);
	add("A-3", 1);
	cr_assert_eq(db_exec(db, NULL, "UPDATE orders SET status = 'cancelled' WHERE order_number = 'A-3'", DB_END), 0);
	cr_assert_eq(order_confirm(db, "A-3", NULL, 4, "t", &r), -ECANCELED);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 0);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log"), 0);
}

struct racer {
	pthread_barrier_t *barrier;
	json_t *jobs;
	int created;
	int rc;
};

static void *race(void *p)
{
	struct racer *r = p;
	struct db *c = tdb_connect(DBNAME);
	json_t *res = NULL;
	pthread_barrier_wait(r->barrier);
	r->rc = order_confirm(c, "RACE", NULL, 4, "racer", &res);
	if (r->rc == 0) {
		r->jobs = json_incref(json_object_get(res, "jobs"));
		r->created = (int)json_integer_value(json_object_get(res, "created"));
		json_decref(res);
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
	for (int i = 1; i < N; i++)
		cr_assert(json_equal(r[0].jobs, r[i].jobs), "every caller sees the same ids");
	cr_assert_eq(json_array_size(r[0].jobs), Q);
	for (int i = 0; i < N; i++)
		json_decref(r[i].jobs);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), Q);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(DISTINCT unit_index) FROM processing_jobs"), Q);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'created'"), Q);
	pthread_barrier_destroy(&b);
}

Test(orders, show_and_job_show_carry_columns)
{
	add("S-1", 2);
	json_t *c = NULL, *o = NULL, *j = NULL, *l = NULL;
	cr_assert_eq(order_confirm(db, "S-1", NULL, 4, "t", &c), 0);
	cr_assert_eq(order_show(db, "S-1", &o), 0);
	cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "confirmed");
	cr_assert_str_eq(json_string_value(json_object_get(o, "customer")), "Ana");
	cr_assert_eq(json_array_size(json_object_get(o, "jobs")), 2);
	json_int_t id = json_integer_value(json_object_get(json_array_get(json_object_get(c, "jobs"), 0), "id"));
	cr_assert_eq(job_show(db, id, &j), 0);
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
					    "updated_at",
					    "items" };
	for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
		cr_assert(json_object_get(j, cols[i]), "job show lacks %s", cols[i]);
	cr_assert_eq(json_integer_value(json_object_get(j, "progress")), 0);
	cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "queued");
	cr_assert_eq(job_show(db, 999999, &l), -ENOENT);
	cr_assert_eq(jobs_list(db, "queued", 10, &l), 0);
	cr_assert_eq(json_array_size(l), 2);
	json_decref(l);
	cr_assert_eq(jobs_list(db, "done", 10, &l), 0);
	cr_assert_eq(json_array_size(l), 0);
	json_decref(l);
	json_decref(c);
	json_decref(o);
	json_decref(j);
}
