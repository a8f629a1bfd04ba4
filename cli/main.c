/* usbforge: the operator's command line. Parses the global options, finds the command in the
 * table below and runs it. Exit status: 0 success, 1 failure, 2 usage or config error,
 * 3 not found (DESIGN.md "The CLI"). */
#include <getopt.h>
#include <locale.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "util/log.h"

static const struct cli_cmd commands[] = {
	{ "db", "migrate", cmd_db_migrate, "", "create or upgrade the schema (idempotent)" },
	{ "db", "prune", cmd_db_prune, "--older-than AGE [--dry-run] [--jobs] [--archive FILE.jsonl.zst]",
	  "remove finished jobs' logs, items and events (--jobs: and the jobs) older than AGE" },
	{ "content", "scan", cmd_content_scan, "[DIR]",
	  "index a content tree (category = first folder; default content.root)" },
	{ "content", "list", cmd_content_list, "[--category C]", "the active content library" },
	{ "order", "add", cmd_order_add,
	  "NUMBER --capacity SIZE [--quantity N] [--customer NAME] [--station S] (--image PATH | --category C … [--item ID …])",
	  "record a pending order" },
	{ "order", "confirm", cmd_order_confirm, "NUMBER [--correlation-id ID]",
	  "confirm an order; prints the job ids (idempotent)" },
	{ "order", "show", cmd_order_show, "NUMBER", "an order and its jobs" },
	{ NULL, "jobs", cmd_jobs, "[--status S] [--limit N]", "list jobs, newest first" },
	{ "job", "show", cmd_job_show, "ID", "state, stage, progress, attempts, device, items" },
	{ "job", "logs", cmd_job_logs, "ID [--follow]", "the job's log rows" },
	{ "job", "watch", cmd_job_watch, "ID", "live progress bar until the job ends" },
	{ "job", "cancel", cmd_job_cancel, "ID [--by NAME]", "cancel (a running job stops at its next chunk)" },
	{ "job", "retry", cmd_job_retry, "ID", "queue a failed or cancelled job again" },
	{ "queue", "stats", cmd_queue_stats, "[--by-station]",
	  "counts per state, stuck counts, average duration, the oldest unpublished event's age;"
	  " --by-station: daemons, waiting and running jobs per station" },
	{ "stuck", "check", cmd_stuck_check, "", "run stuck-job recovery once and print what it did" },
	{ NULL, "devices", cmd_devices, "[--json]", "sticks and slots the daemon would use, and why not" },
	{ "events", "replay", cmd_events_replay, "--since ID [--until ID]",
	  "send the events after ID (up to --until) to the webhook again, same idempotency keys" },
	{ NULL, "events", cmd_events, "[--follow] [--since ID] [--unpublished]",
	  "the outbox events (--unpublished: those the relay has not delivered yet)" },
	{ NULL, "write", cmd_write, "DEVICE SOURCE [--no-verify | --full-verify] [--yes]",
	  "one-off write, no database" },
	{ NULL, "verify", cmd_verify, "DEVICE SOURCE", "read DEVICE back and compare with SOURCE" },
	{ NULL, "probe", cmd_probe, "DEVICE", "fake-capacity check" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: usbforge [--config FILE] [--json] COMMAND …\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct cli_cmd *c = &commands[i];
		char name[64];
		snprintf(name, sizeof(name), "%s%s%s", c->group ? c->group : "", c->group ? " " : "", c->name);
		fprintf(out, "  %-16s %s\n  %-16s   %s\n", name, c->usage, "", c->help);
	}
	fprintf(out, "\nconfig: --config FILE, else $USBFORGE_CONFIG, else /etc/usbforge/usbforge.conf\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },	    { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },	    {},
	};
	struct cli c = { .prog = "usbforge" };
	int o, r;

	setlocale(LC_ALL, "");
	/* I/O buffers (MiBs each) come from mmap and go back to the system when freed, instead of
	 * lingering in per-thread malloc arenas: keeps a busy kiosk's RSS to what is in use. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	log_set_prefix(0);
	/* '+': stop at the first non-option, the command's own options follow it. */
	while ((o = getopt_long(argc, argv, "+c:jvhV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			c.config_path = optarg;
			break;
		case 'j':
			c.json = true;
			break;
		case 'v':
			log_set_max_level(LOG_LVL_DEBUG);
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'V':
			printf("usbforge %s\n", UF_VERSION);
			return CLI_EXIT_OK;
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct cli_cmd *cmd = &commands[i];
		int skip;
		if (cmd->group) {
			if (strcmp(argv[0], cmd->group) != 0 || argc < 2 || strcmp(argv[1], cmd->name) != 0)
				continue;
			skip = 1;
		} else {
			if (strcmp(argv[0], cmd->name) != 0)
				continue;
			skip = 0;
		}
		optind = 0; /* full reset: commands parse their own options with getopt_long */
		r = cmd->fn(&c, argc - skip, argv + skip);
		if (c.config_loaded)
			config_done(&c.cfg);
		return cli_exit_status(r);
	}
	cli_error(CLI_EXIT_USAGE, "unknown command '%s%s%s'", argv[0], argc > 1 ? " " : "", argc > 1 ? argv[1] : "");
	usage(stderr);
	return CLI_EXIT_USAGE;
}
