/* Many stations on one database (issue 15, part 5): ten usbforged of ten stations (one static
 * file slot each) drain orders addressed to each station and to any; every order addressed to a
 * station is written there and nowhere else, every job once, every event once; an order for a
 * station that runs no daemon waits. Every wait is on a state with a deadline. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/orders.h"
#include "helpers/clirun.h"
#include "helpers/daemon.h"
#include "helpers/testdb.h"
#include "helpers/testutil.h"
#include "util/macro.h"

#define DBNAME	   "uf_t_stations"
#define STATIONS   10
#define PER	   2  /* orders addressed to each station */
#define ANY	   10 /* orders for any station */
#define SLOT_BYTES (8 << 20)

static struct db *db;
static char *dir;

static void setup(void)
{
	db = tdb_fresh(DBNAME);
	dir = tu_tmpdir("stations");
}

static void teardown(void)
{
	td_kill_all();
	db = db_close(db);
	tu_rmrf(dir);
	free(dir);
}
TestSuite(stations, .init = setup, .fini = teardown, .timeout = 300);

static void order(const char *number, const char *station, const char *img, size_t len)
{
	struct order_new o = { .number = number,
			       .station = station,
			       .capacity_bytes = SLOT_BYTES,
			       .quantity = 1,
			       .image_path = img,
			       .image_bytes = len };
	int64_t id;
	cr_assert_eq(order_add(db, &o, &id), 0, "%s", db_error(db));
	struct order_confirmation cf = { 0 };
	cr_assert_eq(order_confirm(db, number, NULL, 4, "test", &cf), 0, "%s", db_error(db));
	order_confirmation_done(&cf);
}

/* The config of station shop-i: its own slot file dir/shop-i.slot. */
static char *station_config(int i)
{
	char name[32], station[32], *slot = NULL, *extra = NULL;
	snprintf(station, sizeof(station), "shop-%d", i);
	snprintf(name, sizeof(name), "shop-%d.conf", i);
	cr_assert(asprintf(&slot, "%s/shop-%d.slot", dir, i) > 0);
	int fd = open(slot, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, SLOT_BYTES), 0);
	close(fd);
	cr_assert(asprintf(&extra,
			   "worker = { poll_interval = 0.2; heartbeat_interval = 0.5; };\n"
			   "usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"%s\"; } ); };\n"
			   "content = { images = \"%s\"; };\n",
			   slot, dir) > 0);
	char *conf = tdb_write_config_station(dir, name, DBNAME, NULL, NULL, station, extra);
	free(slot);
	free(extra);
	return conf;
}

/* usbforge --json queue stats --by-station is want (JSON, compared as values). */
static void assert_by_station(const char *conf, const char *want)
{
	const char *args[] = { "--config", conf, "--json", "queue", "stats", "--by-station", NULL };
	struct tu_run r = tu_run_cli(dir, args);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_error_t e;
	json_t *got = json_loads(r.out, 0, &e), *w = json_loads(want, 0, &e);
	cr_assert(w, "want: %s: %s", want, e.text);
	cr_assert(got && json_equal(got, w), "got %s\nwant %s", r.out, want);
	json_decref(got);
	json_decref(w);
	tu_run_done(&r);
}

Test(stations, ten_stations_drain_their_own_orders_and_any)
{
	size_t len = 64 << 10;
	char *img = tu_pattern_file(dir, "img.raw", len, 3);
	char number[32], station[32];
	for (int i = 0; i < STATIONS; i++)
		for (int k = 0; k < PER; k++) {
			snprintf(number, sizeof(number), "S%d-%d", i, k);
			snprintf(station, sizeof(station), "shop-%d", i);
			order(number, station, img, len);
		}
	for (int k = 0; k < ANY; k++) {
		snprintf(number, sizeof(number), "ANY-%d", k);
		order(number, NULL, img, len);
	}
	order("CLOSED-1", "shop-closed", img, len); /* no daemon runs that station */

	pid_t pid[STATIONS];
	char *conf[STATIONS], *logp[STATIONS];
	for (int i = 0; i < STATIONS; i++)
		conf[i] = station_config(i);
	/* before any daemon: what waits for each station, the orders for any last */
	char want[2048] = "[";
	for (int i = 0; i < STATIONS; i++)
		snprintf(want + strlen(want), sizeof(want) - strlen(want),
			 "{\"station\": \"shop-%d\", \"workers\": 0, \"queued\": %d, \"processing\": 0, "
			 "\"stuck_processing\": 0}, ",
			 i, PER);
	snprintf(want + strlen(want), sizeof(want) - strlen(want),
		 "{\"station\": \"shop-closed\", \"workers\": 0, \"queued\": 1, \"processing\": 0, "
		 "\"stuck_processing\": 0}, {\"station\": null, \"workers\": 0, \"queued\": %d, "
		 "\"processing\": 0, \"stuck_processing\": 0}]",
		 ANY);
	assert_by_station(conf[0], want);
	for (int i = 0; i < STATIONS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "shop-%d.log", i);
		logp[i] = tu_path(dir, name);
		pid[i] = td_spawn(conf[i], logp[i]);
	}
	const int n = STATIONS * PER + ANY;
	char q[512];
	snprintf(q, sizeof(q), "SELECT COUNT(*) FROM orders WHERE status = 'done'");
	td_wait_count(db, q, n, 180);

	/* each job ran once (one attempt row), on a station its order allows: the attempt's row
	 * names the slot file, which is the station's */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_job_logs WHERE message LIKE 'attempt %'"), n);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done' AND attempts = 1"), n);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
				   " JOIN processing_job_logs l ON l.job_id = j.id AND l.message LIKE 'attempt %'"
				   " WHERE o.station IS NOT NULL"
				   " AND l.message LIKE CONCAT('attempt 1/4 on slot A (%/', o.station, '.slot)')"),
		     STATIONS * PER);
	/* every job's done and every order's done, once */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'job.done'"), n);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(DISTINCT aggregate_id) FROM events WHERE event_type = 'job.done'"), n);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type = 'order.done'"), n);
	/* one workers row per station, each alive */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(DISTINCT station) FROM workers WHERE station LIKE 'shop-%'"),
		     STATIONS);
	/* the order for the station without a daemon waits, untouched */
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
				   " WHERE o.order_number = 'CLOSED-1' AND j.status = 'queued' AND j.attempts = 0"),
		     1);
	/* drained: each station's daemon, nothing waiting but the closed station's order */
	snprintf(want, sizeof(want), "[");
	for (int i = 0; i < STATIONS; i++)
		snprintf(want + strlen(want), sizeof(want) - strlen(want),
			 "{\"station\": \"shop-%d\", \"workers\": 1, \"queued\": 0, \"processing\": 0, "
			 "\"stuck_processing\": 0}, ",
			 i);
	snprintf(want + strlen(want), sizeof(want) - strlen(want),
		 "{\"station\": \"shop-closed\", \"workers\": 0, \"queued\": 1, \"processing\": 0, "
		 "\"stuck_processing\": 0}]");
	assert_by_station(conf[0], want);
	const char *text[] = { "--config", conf[0], "queue", "stats", "--by-station", NULL };
	struct tu_run r = tu_run_cli(dir, text);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "STATION      WORKERS  QUEUED  PROCESSING  STUCK\n"
				"shop-0       1        0       0           0\n"),
		  "%s", r.out);
	cr_assert(strstr(r.out, "shop-closed  0        1       0           0\n"), "%s", r.out);
	tu_run_done(&r);
	for (int i = 0; i < STATIONS; i++) {
		td_stop(pid[i], 30);
		free(conf[i]);
		free(logp[i]);
	}
	free(img);
}
