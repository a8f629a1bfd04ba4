/* usbforge db prune: the history of finished jobs older than a horizon removed (db/prune.h),
 * optionally archived first, or only counted with --dry-run. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "db/db.h"
#include "db/prune.h"
#include "util/macro.h"

#define PRUNE_USAGE "--older-than AGE [--dry-run] [--jobs] [--archive FILE.jsonl.zst]"

int cmd_db_prune(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = { { "older-than", required_argument, NULL, 'o' },
					      { "dry-run", no_argument, NULL, 'n' },
					      { "jobs", no_argument, NULL, 'j' },
					      { "archive", required_argument, NULL, 'a' },
					      {} };
	struct prune_req q = { .actor = cli_actor() };
	const char *age = NULL;
	int o, r;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'o':
			age = optarg;
			r = prune_age_parse(optarg, &q.older_than_s);
			if (r == -ERANGE)
				return cli_usage_error("db prune", PRUNE_USAGE,
						       "--older-than: '%s' is out of range (1 second to 100 years)",
						       optarg);
			if (r < 0)
				return cli_usage_error("db prune", PRUNE_USAGE,
						       "--older-than: '%s' is not a duration (e.g. 90d, 12h, 30m, 2w)",
						       optarg);
			break;
		case 'n':
			q.dry_run = true;
			break;
		case 'j':
			q.jobs = true;
			break;
		case 'a':
			if (!*optarg)
				return cli_usage_error("db prune", PRUNE_USAGE, "--archive: an empty file name");
			q.archive = optarg;
			break;
		default:
			return cli_usage_error("db prune", PRUNE_USAGE, "bad option");
		}
	}
	if (optind < argc)
		return cli_usage_error("db prune", PRUNE_USAGE, "unexpected argument '%s'", argv[optind]);
	if (!age)
		return cli_usage_error("db prune", PRUNE_USAGE, "--older-than is required");

	struct db *db = NULL;
	if ((r = cli_db_open(c, &db)))
		return r;
	struct prune_stats st;
	_cleanup_free_ char *err = NULL;
	r = db_prune(db, &q, &st, &err);
	if (r < 0) {
		r = cli_error(CLI_EXIT_FAIL, "prune failed: %s", err ? err : db_error(db));
		db_close(db);
		return r;
	}
	db_close(db);
	if (c->json)
		return cli_print_json(json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:I}", "dry_run", q.dry_run,
						"ended_before", st.cutoff, "logs", (json_int_t)st.logs, "items",
						(json_int_t)st.items, "events", (json_int_t)st.events, "jobs",
						(json_int_t)st.jobs, "orders", (json_int_t)st.orders));
	printf("%s jobs that ended before %s: %lld log rows, %lld items, %lld events",
	       q.dry_run ? "would prune" : "pruned", st.cutoff, (long long)st.logs, (long long)st.items,
	       (long long)st.events);
	if (q.jobs)
		printf(", %lld jobs, %lld orders", (long long)st.jobs, (long long)st.orders);
	putchar('\n');
	if (q.archive && !q.dry_run)
		printf("archived to %s\n", q.archive);
	return CLI_EXIT_OK;
}
