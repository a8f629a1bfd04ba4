/* usbforge job cancel / retry / logs / watch, queue stats, stuck check, events. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "db/db.h"
#include "db/jobs.h"
#include "util/macro.h"
#include "util/utf8.h"

/* Wait ms milliseconds without spinning (poll on nothing). */
static void wait_ms(int ms) { (void)poll(NULL, 0, ms); }

/* The one ID argument: 0 with *ret set, or CLI_EXIT_USAGE (reported). */
static int parse_job_id(const char *cmd, const char *usage, int argc, char **argv, long long *ret)
{
	if (optind != argc - 1)
		return cli_usage_error(cmd, usage, "expected one job ID");
	if (cli_parse_id(argv[optind], ret) < 0)
		return cli_usage_error(cmd, usage, "'%s' is not a job id", argv[optind]);
	return 0;
}

int cmd_job_cancel(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = { { "by", required_argument, NULL, 'b' }, {} };
	const char *by = cli_actor(), *status = NULL;
	long long id;
	struct db *db = NULL;
	int o, r;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != 'b')
			return cli_usage_error("job cancel", "ID [--by NAME]", "bad option");
		by = optarg;
	}
	if ((r = parse_job_id("job cancel", "ID [--by NAME]", argc, argv, &id)))
		return r;
	if ((r = cli_db_open(c, &db)))
		return r;
	r = job_cancel(db, id, by, &status);
	if (r == -ENOENT)
		r = cli_error(CLI_EXIT_NOTFOUND, "job %lld not found", id);
	else if (r == -EALREADY)
		r = cli_error(CLI_EXIT_FAIL, "job %lld has already ended; nothing to cancel", id);
	else if (r < 0)
		r = cli_error(CLI_EXIT_FAIL, "cannot cancel job %lld: %s", id, db_error(db));
	else {
		r = CLI_EXIT_OK;
		if (c->json)
			r = cli_print_json(json_pack("{s:I, s:s}", "id", (json_int_t)id, "status", status));
		else if (strcmp(status, "cancelled") == 0)
			printf("job %lld cancelled\n", id);
		else
			printf("job %lld is running: cancel requested, it stops at its next chunk boundary\n", id);
	}
	db_close(db);
	return r;
}

int cmd_job_retry(struct cli *c, int argc, char **argv)
{
	long long id;
	struct db *db = NULL;
	int r;
	if (getopt_long(argc, argv, "", (const struct option[]){ {} }, NULL) != -1)
		return cli_usage_error("job retry", "ID", "bad option");
	if ((r = parse_job_id("job retry", "ID", argc, argv, &id)))
		return r;
	if ((r = cli_db_open(c, &db)))
		return r;
	r = job_retry(db, id, cli_actor(), 1 + (int)c->cfg.retry.n_delays);
	if (r == -ENOENT)
		r = cli_error(CLI_EXIT_NOTFOUND, "job %lld not found", id);
	else if (r == -EBUSY)
		r = cli_error(CLI_EXIT_FAIL, "job %lld is not failed or cancelled; only those can be retried", id);
	else if (r < 0)
		r = cli_error(CLI_EXIT_FAIL, "cannot retry job %lld: %s", id, db_error(db));
	else {
		r = CLI_EXIT_OK;
		if (c->json)
			r = cli_print_json(json_pack("{s:I, s:s}", "id", (json_int_t)id, "status", "queued"));
		else
			printf("job %lld queued again with %zu attempts\n", id, 1 + c->cfg.retry.n_delays);
	}
	db_close(db);
	return r;
}

/* Log rows as they arrive: one compact JSON object per line with --json (a stream: --follow),
 * aligned text otherwise. *since = the last row's id. */
static void print_log_rows(bool json, json_t *rows, int64_t *since)
{
	size_t i;
	json_t *l;
	json_array_foreach(rows, i, l)
	{
		*since = json_integer_value(json_object_get(l, "id"));
		if (json) {
			json_dumpf(l, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
			fputc('\n', stdout);
			continue;
		}
		const char *code = json_string_value(json_object_get(l, "error_code"));
		if (cli_line(stdout, "%s  %-5s %-12s %-8s %s%s%s", json_string_value(json_object_get(l, "created_at")),
			     json_string_value(json_object_get(l, "level")),
			     json_string_value(json_object_get(l, "stage")),
			     json_string_value(json_object_get(l, "category")), code ? code : "", code ? " " : "",
			     json_string_value(json_object_get(l, "message"))) < 0)
			fputs("(a log row could not be shown: out of memory)\n", stdout);
	}
	fflush(stdout);
}

/* The job's status, malloc'd, into *ret. 0, -ENOENT (no such job), -ENOMEM, or db_query's
 * error (db_error tells). */
static int job_status(struct db *db, long long id, char **ret)
{
	MYSQL_RES *res = NULL;
	int r = db_query(db, &res, "SELECT status FROM processing_jobs WHERE id = ?", DB_I64(id), DB_END);
	if (r < 0)
		return r;
	MYSQL_ROW row = mysql_fetch_row(res);
	char *s = row ? strdup(row[0] ? row[0] : "") : NULL;
	mysql_free_result(res);
	if (!row)
		return -ENOENT;
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

static bool terminal(const char *s)
{
	return strcmp(s, "done") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0;
}

int cmd_job_logs(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = { { "follow", no_argument, NULL, 'f' }, {} };
	bool follow = false;
	long long id;
	int64_t since = 0;
	struct db *db = NULL;
	int o, r;
	while ((o = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (o != 'f')
			return cli_usage_error("job logs", "ID [--follow]", "bad option");
		follow = true;
	}
	if ((r = parse_job_id("job logs", "ID [--follow]", argc, argv, &id)))
		return r;
	if ((r = cli_db_open(c, &db)))
		return r;
	_cleanup_free_ char *st = NULL;
	r = job_status(db, id, &st);
	if (r < 0) {
		if (r == -ENOENT)
			r = cli_error(CLI_EXIT_NOTFOUND, "job %lld not found", id);
		else if (r != -ENOMEM)
			r = cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
		db_close(db);
		return r;
	}
	for (;;) {
		json_t *rows = NULL;
		if (job_logs(db, id, since, &rows) < 0) {
			cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
			db_close(db);
			return CLI_EXIT_FAIL;
		}
		if (c->json && !follow) {
			r = cli_print_json(rows);
			break;
		}
		print_log_rows(c->json, rows, &since);
		json_decref(rows);
		if (!follow)
			break;
		st = mfree(st);
		r = job_status(db, id, &st);
		if (r == -ENOMEM)
			break;
		if (r == 0 && terminal(st)) {
			/* one last read for rows written with the final transition */
			if (job_logs(db, id, since, &rows) == 0) {
				print_log_rows(c->json, rows, &since);
				json_decref(rows);
			}
			break;
		}
		wait_ms(500);
	}
	db_close(db);
	return r == -ENOMEM ? r : CLI_EXIT_OK;
}

int cmd_job_watch(struct cli *c, int argc, char **argv)
{
	long long id;
	struct db *db = NULL;
	int r;
	if (getopt_long(argc, argv, "", (const struct option[]){ {} }, NULL) != -1)
		return cli_usage_error("job watch", "ID", "bad option");
	if ((r = parse_job_id("job watch", "ID", argc, argv, &id)))
		return r;
	if ((r = cli_db_open(c, &db)))
		return r;
	bool tty = isatty(STDOUT_FILENO);
	char last[256] = "";
	int rc = CLI_EXIT_OK;
	for (;;) {
		MYSQL_RES *res = NULL;
		r = db_query(db, &res,
			     "SELECT status, stage, progress, attempts, max_attempts, COALESCE(error_code, ''),"
			     " COALESCE(JSON_VALUE(progress_detail, '$.rate_bytes_per_s'), 0),"
			     " COALESCE(JSON_VALUE(progress_detail, '$.eta_seconds'), 0), COALESCE(slot, '-')"
			     " FROM processing_jobs WHERE id = ?",
			     DB_I64(id), DB_END);
		if (r < 0) {
			rc = cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
			break;
		}
		MYSQL_ROW row = mysql_fetch_row(res);
		if (!row) {
			mysql_free_result(res);
			rc = cli_error(CLI_EXIT_NOTFOUND, "job %lld not found", id);
			break;
		}
		int pct = (int)db_row_i64(row, 2);
		char line[256], bar[41];
		int fill = pct * 40 / 100;
		for (int i = 0; i < 40; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[40] = 0;
		snprintf(line, sizeof(line),
			 "job %lld %-10s %-12s [%s] %3d%%  %.1f MB/s  eta %.0fs  attempt %s/%s  slot %s %s", id, row[0],
			 row[1], bar, pct, db_row_dbl(row, 6) / 1e6, db_row_dbl(row, 7), row[3], row[4], row[8],
			 row[5]);
		bool end = terminal(row[0]);
		bool failed = strcmp(row[0], "done") != 0;
		mysql_free_result(res);
		_cleanup_free_ char *shown = utf8_escape_text(line, 0); /* slot, codes: database values */
		if (!shown) {
			rc = -ENOMEM;
			break;
		}
		if (tty) {
			printf("\r\033[K%s", shown);
			fflush(stdout);
		} else if (strcmp(line, last) != 0) {
			printf("%s\n", shown);
			fflush(stdout);
			snprintf(last, sizeof(last), "%s", line);
		}
		if (end) {
			if (tty)
				printf("\n");
			rc = failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
			break;
		}
		wait_ms(tty ? 250 : 1000);
	}
	db_close(db);
	return rc;
}

int cmd_queue_stats(struct cli *c, int argc, char **argv)
{
	struct db *db = NULL;
	json_t *o = NULL;
	int r;
	if (argc != 1)
		return cli_usage_error("queue stats", "", "unexpected argument '%s'", argv[1]);
	if ((r = cli_db_open(c, &db)))
		return r;
	r = queue_stats(db, c->cfg.stuck.processing_timeout, c->cfg.stuck.queued_timeout, &o);
	if (r < 0) {
		cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
		db_close(db);
		return CLI_EXIT_FAIL;
	}
	db_close(db);
	if (c->json) {
		return cli_print_json(o);
	}
	static const char *const keys[] = { "queued", "retry",	   "processing",       "done",
					    "failed", "cancelled", "stuck_processing", "stuck_queued" };
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		printf("%-22s %lld\n", keys[i], (long long)json_integer_value(json_object_get(o, keys[i])));
	json_t *avg = json_object_get(o, "avg_duration_seconds");
	if (json_is_real(avg))
		printf("%-22s %.1f s\n", "avg_duration", json_real_value(avg));
	else
		printf("%-22s -\n", "avg_duration");
	json_decref(o);
	return CLI_EXIT_OK;
}

int cmd_stuck_check(struct cli *c, int argc, char **argv)
{
	struct db *db = NULL;
	struct reap_stats st;
	int r;
	if (argc != 1)
		return cli_usage_error("stuck check", "", "unexpected argument '%s'", argv[1]);
	if ((r = cli_db_open(c, &db)))
		return r;
	r = jobs_reap(db, c->cfg.stuck.processing_timeout, c->cfg.stuck.queued_timeout, c->cfg.retry.delays,
		      c->cfg.retry.n_delays, NULL, 0, &st);
	if (r < 0) {
		cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
		db_close(db);
		return CLI_EXIT_FAIL;
	}
	db_close(db);
	if (c->json) {
		return cli_print_json(json_pack("{s:i, s:i, s:i, s:i, s:o}", "retried", st.retried, "failed", st.failed,
						"cancelled", st.cancelled, "stuck_reported", st.stuck_reported,
						"actions", st.actions));
	}
	size_t i;
	json_t *a;
	json_array_foreach(st.actions, i, a)(void)
		cli_line(stdout, "job %lld: %s", (long long)json_integer_value(json_object_get(a, "job_id")),
			 json_string_value(json_object_get(a, "action")));
	printf("%u stuck job(s) sent to retry, %u failed, %u cancelled (cancel requested), %u reported stuck in the queue\n",
	       st.retried, st.failed, st.cancelled, st.stuck_reported);
	json_decref(st.actions);
	return CLI_EXIT_OK;
}

#define EVENTS_PAGE 1000 /* events read per query */

int cmd_events(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = { { "follow", no_argument, NULL, 'f' },
					      { "since", required_argument, NULL, 's' },
					      {} };
	bool follow = false;
	long long since = 0;
	struct db *db = NULL;
	int o, r;
	while ((o = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (o == 'f')
			follow = true;
		else if (o == 's') {
			char *end;
			errno = 0;
			since = strtoll(optarg, &end, 10);
			if (errno || *end || since < 0)
				return cli_usage_error("events", "[--follow] [--since ID]",
						       "--since: '%s' is not an event id", optarg);
		} else
			return cli_usage_error("events", "[--follow] [--since ID]", "bad option");
	}
	if (optind != argc)
		return cli_usage_error("events", "[--follow] [--since ID]", "unexpected argument '%s'", argv[optind]);
	if ((r = cli_db_open(c, &db)))
		return r;
	/* Every event after --since, read in pages of 1000; --follow then keeps reading. Without
	 * --follow, --json prints them all as one array. */
	json_t *all = NULL;
	if (c->json && !follow && !(all = json_array())) {
		db_close(db);
		return -ENOMEM;
	}
	for (;;) {
		json_t *rows = NULL;
		if (events_list(db, since, EVENTS_PAGE, &rows) < 0) {
			cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
			json_decref(all);
			db_close(db);
			return CLI_EXIT_FAIL;
		}
		size_t i, n = json_array_size(rows);
		json_t *e;
		json_array_foreach(rows, i, e)
		{
			since = json_integer_value(json_object_get(e, "id"));
			if (all) {
				json_array_append(all, e);
			} else if (c->json) {
				json_dumpf(e, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
				fputc('\n', stdout);
			} else {
				/* the payload is JSON text, escaped by jansson but for DEL and C1
				 * controls: those are escaped, its backslashes are its own */
				_cleanup_free_ char *p = json_dumps(json_object_get(e, "payload"), JSON_COMPACT);
				_cleanup_free_ char *ps = utf8_escape_text(p ? p : "", UTF8_ESCAPE_KEEP_BACKSLASH);
				_cleanup_free_ char *head = NULL;
				if (asprintf(&head, "%lld  %s  %-13s %s %lld",
					     (long long)json_integer_value(json_object_get(e, "id")),
					     json_string_value(json_object_get(e, "created_at")),
					     json_string_value(json_object_get(e, "event_type")),
					     json_string_value(json_object_get(e, "aggregate_type")),
					     (long long)json_integer_value(json_object_get(e, "aggregate_id"))) < 0)
					head = NULL;
				_cleanup_free_ char *hs = head ? utf8_escape_text(head, 0) : NULL;
				if (hs && ps)
					printf("%s  %s\n", hs, ps);
				else
					fputs("(an event could not be shown: out of memory)\n", stdout);
			}
		}
		fflush(stdout);
		json_decref(rows);
		if (n == EVENTS_PAGE)
			continue; /* more are waiting */
		if (!follow)
			break;
		wait_ms(1000);
	}
	db_close(db);
	return all ? cli_print_json(all) : CLI_EXIT_OK;
}
