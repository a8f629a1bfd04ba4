/* usbforge job cancel / retry / logs / watch, queue stats, stuck check, events: db/jobs.h reads
 * and changes the rows, cli/json.h makes their JSON documents, this file the text. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/json.h"
#include "db/db.h"
#include "db/jobs.h"
#include "db/outbox.h"
#include "db/workers.h"
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

/* A database call on db failed with r: its error ("out of memory" for -ENOMEM) printed, db
 * closed, CLI_EXIT_FAIL: `return db_failed(db, r);`. */
static int db_failed(struct db *db, int r)
{
	cli_error(CLI_EXIT_FAIL, "%s", r == -ENOMEM ? "out of memory" : db_error(db));
	db_close(db);
	return CLI_EXIT_FAIL;
}

int cmd_job_cancel(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = { { "by", required_argument, NULL, 'b' }, {} };
	const char *by = cli_actor();
	enum job_state state;
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
	r = job_cancel(db, id, by, &state);
	if (r == -ENOENT)
		r = cli_error(CLI_EXIT_NOTFOUND, "job %lld not found", id);
	else if (r == -EALREADY)
		r = cli_error(CLI_EXIT_FAIL, "job %lld has already ended; nothing to cancel", id);
	else if (r < 0)
		r = cli_error(CLI_EXIT_FAIL, "cannot cancel job %lld: %s", id, db_error(db));
	else {
		r = CLI_EXIT_OK;
		bool now = state == JOB_STATE_CANCELLED; /* else running: cancel requested */
		if (c->json)
			r = cli_print_json(json_pack("{s:I, s:s}", "id", (json_int_t)id, "status",
						     now ? job_state_name(state) : "cancel_requested"));
		else if (now)
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
			r = cli_print_json(json_pack("{s:I, s:s}", "id", (json_int_t)id, "status",
						     job_state_name(JOB_STATE_QUEUED)));
		else
			printf("job %lld queued again with %zu attempts\n", id, 1 + c->cfg.retry.n_delays);
	}
	db_close(db);
	return r;
}

/* Log rows as they arrive: one compact JSON object per line with --json (a stream: --follow),
 * aligned text otherwise. *since = the last row's id. 0, or -ENOMEM (a row not shown). */
static int print_log_rows(bool json, const struct job_log_entry *rows, size_t n, int64_t *since)
{
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		const struct job_log_entry *l = &rows[i];
		*since = l->id;
		if (json) {
			json_t *o = cli_json_job_log(l);
			if (!o) {
				r = -ENOMEM;
				continue;
			}
			json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
			fputc('\n', stdout);
			json_decref(o);
			continue;
		}
		const char *code = l->error_code;
		if (cli_line(stdout, "%s  %-5s %-12s %-8s %s%s%s", l->created_at, l->level, l->stage, l->category,
			     code ? code : "", code ? " " : "", l->message) < 0)
			fputs("(a log row could not be shown: out of memory)\n", stdout);
	}
	fflush(stdout);
	return r;
}

/* The rows as one JSON array (new reference), NULL when out of memory. */
static json_t *log_rows_json(const struct job_log_entry *rows, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, cli_json_job_log(&rows[i])) < 0)
			a = (json_decref(a), NULL);
	return a;
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
	enum job_state st;
	r = job_get_state(db, id, &st);
	if (r < 0) {
		if (r == -ENOENT)
			r = cli_error(CLI_EXIT_NOTFOUND, "job %lld not found", id);
		else if (r != -ENOMEM)
			r = cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
		db_close(db);
		return r;
	}
	for (;;) {
		struct job_log_entry *rows = NULL;
		size_t n = 0;
		r = job_log_list(db, id, since, &rows, &n);
		if (r == -ENOMEM)
			break;
		if (r < 0)
			return db_failed(db, r);
		if (c->json && !follow) {
			r = cli_print_json(log_rows_json(rows, n));
			job_log_list_free(rows, n);
			break;
		}
		r = print_log_rows(c->json, rows, n, &since);
		job_log_list_free(rows, n);
		if (!follow || r == -ENOMEM)
			break;
		r = job_get_state(db, id, &st);
		if (r == -ENOMEM)
			break;
		if (r == 0 && job_state_is_terminal(st)) {
			/* one last read for rows written with the final transition */
			if (job_log_list(db, id, since, &rows, &n) == 0) {
				r = print_log_rows(c->json, rows, n, &since);
				job_log_list_free(rows, n);
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
		struct job_status js;
		r = job_get_status(db, id, &js);
		if (r == -ENOMEM) {
			rc = r;
			break;
		}
		if (r == -ENOENT) {
			rc = cli_error(CLI_EXIT_NOTFOUND, "job %lld not found", id);
			break;
		}
		if (r < 0) {
			rc = cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
			break;
		}
		int pct = js.progress;
		char line[256], bar[41];
		int fill = pct * 40 / 100;
		for (int i = 0; i < 40; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[40] = 0;
		snprintf(line, sizeof(line),
			 "job %lld %-10s %-12s [%s] %3d%%  %.1f MB/s  eta %.0fs  attempt %d/%d  slot %s %s", id,
			 job_state_name(js.state), js.stage, bar, pct, js.rate_bytes_per_s / 1e6, js.eta_seconds,
			 js.attempts, js.max_attempts, js.slot ? js.slot : "-", js.error_code ? js.error_code : "");
		bool end = job_state_is_terminal(js.state);
		bool failed = js.state != JOB_STATE_DONE;
		job_status_done(&js);
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

/* queue stats --by-station: a line per station (running daemons, jobs waiting for it, jobs its
 * daemons run, of those stuck), the orders for any station last. */
static int queue_by_station(struct cli *c)
{
	struct db *db = NULL;
	struct station_stats *st = NULL;
	size_t n = 0;
	int r;
	if ((r = cli_db_open(c, &db)))
		return r;
	r = station_stats_list(db, c->cfg.stuck.processing_timeout, &st, &n);
	if (r < 0)
		return db_failed(db, r);
	db_close(db);
	if (c->json) {
		json_t *a = json_array();
		for (size_t i = 0; a && i < n; i++)
			if (json_array_append_new(a, json_pack("{s:o, s:I, s:I, s:I, s:I}", "station",
							       cli_json_str(st[i].station), "workers",
							       (json_int_t)st[i].workers, "queued",
							       (json_int_t)st[i].queued, "processing",
							       (json_int_t)st[i].processing, "stuck_processing",
							       (json_int_t)st[i].stuck_processing)) < 0)
				a = (json_decref(a), NULL);
		station_stats_free(st, n);
		return cli_print_json(a);
	}
	static const char *const hdr[] = { "STATION", "WORKERS", "QUEUED", "PROCESSING", "STUCK" };
	struct table *t = NULL;
	r = table_new(ARRAY_SIZE(hdr), hdr, &t);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		char w[24], q[24], p[24], k[24];
		snprintf(w, sizeof(w), "%lld", (long long)st[i].workers);
		snprintf(q, sizeof(q), "%lld", (long long)st[i].queued);
		snprintf(p, sizeof(p), "%lld", (long long)st[i].processing);
		snprintf(k, sizeof(k), "%lld", (long long)st[i].stuck_processing);
		r = table_addf(t, st[i].station ? st[i].station : "(any station)", w, q, p, k);
	}
	if (r >= 0)
		r = table_print(t, stdout);
	table_free(t);
	station_stats_free(st, n);
	return r < 0 ? r : CLI_EXIT_OK;
}

int cmd_queue_stats(struct cli *c, int argc, char **argv)
{
	struct db *db = NULL;
	struct queue_stats st;
	int r;
	if (argc == 2 && strcmp(argv[1], "--by-station") == 0)
		return queue_by_station(c);
	if (argc != 1)
		return cli_usage_error("queue stats", "[--by-station]", "unexpected argument '%s'", argv[1]);
	if ((r = cli_db_open(c, &db)))
		return r;
	r = queue_get_stats(db, c->cfg.stuck.processing_timeout, c->cfg.stuck.queued_timeout, &st);
	if (r < 0)
		return db_failed(db, r);
	db_close(db);
	if (c->json)
		return cli_print_json(cli_json_queue_stats(&st));
	static const enum job_state states[] = { JOB_STATE_QUEUED, JOB_STATE_RETRY,  JOB_STATE_PROCESSING,
						 JOB_STATE_DONE,   JOB_STATE_FAILED, JOB_STATE_CANCELLED };
	for (size_t i = 0; i < ARRAY_SIZE(states); i++)
		printf("%-22s %lld\n", job_state_name(states[i]), (long long)st.jobs[states[i]]);
	printf("%-22s %lld\n", "stuck_processing", (long long)st.stuck_processing);
	printf("%-22s %lld\n", "stuck_queued", (long long)st.stuck_queued);
	if (st.have_avg_duration)
		printf("%-22s %.1f s\n", "avg_duration", st.avg_duration_seconds);
	else
		printf("%-22s -\n", "avg_duration");
	if (st.have_unpublished)
		printf("%-22s %.1f s\n", "oldest_unpublished", st.oldest_unpublished_age_seconds);
	else
		printf("%-22s -\n", "oldest_unpublished");
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
	r = queue_reap(db, c->cfg.stuck.processing_timeout, c->cfg.stuck.queued_timeout, c->cfg.retry.delays,
		       c->cfg.retry.n_delays, NULL, 0, &st);
	if (r < 0)
		return db_failed(db, r);
	db_close(db);
	if (c->json) {
		r = cli_print_json(cli_json_reap_stats(&st));
		reap_stats_done(&st);
		return r;
	}
	for (size_t i = 0; i < st.n_actions; i++)
		(void)cli_line(stdout, "job %lld: %s", (long long)st.actions[i].job_id,
			       cli_reap_action_name(&st.actions[i]));
	printf("%u stuck job(s) sent to retry, %u failed, %u cancelled (cancel requested), %u reported stuck in the queue\n",
	       st.retried, st.failed, st.cancelled, st.stuck_reported);
	reap_stats_done(&st);
	return CLI_EXIT_OK;
}

#define EVENTS_PAGE 1000 /* events read per query */

/* An event id argument: a whole number ≥ 0. */
static bool parse_event_id(const char *t, long long *ret)
{
	char *end;
	errno = 0;
	long long v = strtoll(t, &end, 10);
	if (errno || end == t || *end || v < 0)
		return false;
	*ret = v;
	return true;
}

int cmd_events(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = { { "follow", no_argument, NULL, 'f' },
					      { "since", required_argument, NULL, 's' },
					      { "unpublished", no_argument, NULL, 'u' },
					      {} };
	static const char usage[] = "[--follow] [--since ID] [--unpublished]";
	bool follow = false, unpublished = false;
	long long since = 0;
	struct db *db = NULL;
	int o, r;
	while ((o = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (o == 'f')
			follow = true;
		else if (o == 'u')
			unpublished = true;
		else if (o == 's') {
			if (!parse_event_id(optarg, &since))
				return cli_usage_error("events", usage, "--since: '%s' is not an event id", optarg);
		} else
			return cli_usage_error("events", usage, "bad option");
	}
	if (optind != argc)
		return cli_usage_error("events", usage, "unexpected argument '%s'", argv[optind]);
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
		struct event *rows = NULL;
		size_t n = 0;
		r = event_list(db, since, unpublished, EVENTS_PAGE, &rows, &n);
		if (r < 0) {
			if (r != -ENOMEM)
				r = cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
			json_decref(all);
			db_close(db);
			return r;
		}
		for (size_t i = 0; i < n; i++) {
			const struct event *e = &rows[i];
			since = e->id;
			if (c->json) {
				json_t *ev = cli_json_event(e);
				if (ev && all) {
					json_array_append_new(all, ev);
				} else if (ev) {
					json_dumpf(ev, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
					fputc('\n', stdout);
					json_decref(ev);
				} else {
					fputs("(an event could not be shown: out of memory)\n", stdout);
				}
				continue;
			}
			/* the payload is JSON text, shown compact as jansson dumps it, then escaped
			 * but for its own backslashes (DEL and C1 controls, which jansson leaves) */
			json_t *pv = cli_json_text(e->payload);
			_cleanup_free_ char *p = pv ? json_dumps(pv, JSON_COMPACT) : NULL;
			json_decref(pv);
			_cleanup_free_ char *ps = utf8_escape_text(p ? p : "", UTF8_ESCAPE_KEEP_BACKSLASH);
			_cleanup_free_ char *head = NULL;
			if (asprintf(&head, "%lld  %s  %-13s %s %lld", (long long)e->id, e->created_at, e->event_type,
				     e->aggregate_type, (long long)e->aggregate_id) < 0)
				head = NULL;
			_cleanup_free_ char *hs = head ? utf8_escape_text(head, 0) : NULL;
			if (hs && ps)
				printf("%s  %s\n", hs, ps);
			else
				fputs("(an event could not be shown: out of memory)\n", stdout);
		}
		fflush(stdout);
		event_list_free(rows, n);
		if (n == EVENTS_PAGE)
			continue; /* more are waiting */
		if (!follow)
			break;
		wait_ms(1000);
	}
	db_close(db);
	return all ? cli_print_json(all) : CLI_EXIT_OK;
}

int cmd_events_replay(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = { { "since", required_argument, NULL, 's' },
					      { "until", required_argument, NULL, 'u' },
					      {} };
	static const char usage[] = "--since ID [--until ID]";
	long long since = -1, until = 0;
	struct db *db = NULL;
	int o, r;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 's' && parse_event_id(optarg, &since))
			continue;
		if (o == 'u' && parse_event_id(optarg, &until) && until > 0)
			continue;
		if (o == 's' || o == 'u')
			return cli_usage_error("events replay", usage, "--%s: '%s' is not an event id",
					       o == 's' ? "since" : "until", optarg);
		return cli_usage_error("events replay", usage, "bad option");
	}
	if (optind != argc)
		return cli_usage_error("events replay", usage, "unexpected argument '%s'", argv[optind]);
	if (since < 0)
		return cli_usage_error("events replay", usage, "--since is required (0: every event)");
	if (until > 0 && until <= since)
		return cli_usage_error("events replay", usage, "--until %lld is not after --since %lld", until, since);
	if ((r = cli_db_open(c, &db)))
		return r;
	int64_t n = 0;
	r = outbox_replay(db, since, until, cli_actor(), &n);
	if (r < 0)
		return db_failed(db, r);
	db_close(db);
	if (c->json)
		return cli_print_json(json_pack("{s:I, s:o, s:I}", "since", (json_int_t)since, "until",
						until > 0 ? json_integer(until) : json_null(), "requeued",
						(json_int_t)n));
	if (until > 0)
		printf("%lld event(s) after %lld up to %lld queued to be sent again\n", (long long)n, since, until);
	else
		printf("%lld event(s) after %lld queued to be sent again\n", (long long)n, since);
	return CLI_EXIT_OK;
}
