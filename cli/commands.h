/* Every command function of the usbforge CLI, one group per cli/cmd_<group>.c. The table that
 * names them is in cli/main.c. */
#pragma once

#include "cli/cli.h"

struct db;
/* Load the config and connect to the database; on failure prints the reason (DB_UNAVAILABLE)
 * and returns CLI_EXIT_FAIL (or CLI_EXIT_USAGE for a config error). */
int cli_db_open(struct cli *c, struct db **ret);

/* cmd_db.c */
int cmd_db_migrate(struct cli *c, int argc, char **argv);
int cmd_db_prune(struct cli *c, int argc, char **argv);
/* cmd_order.c */
int cmd_order_add(struct cli *c, int argc, char **argv);
int cmd_order_confirm(struct cli *c, int argc, char **argv);
int cmd_order_show(struct cli *c, int argc, char **argv);
int cmd_jobs(struct cli *c, int argc, char **argv);
int cmd_job_show(struct cli *c, int argc, char **argv);
/* cmd_jobs.c */
int cmd_job_cancel(struct cli *c, int argc, char **argv);
int cmd_job_retry(struct cli *c, int argc, char **argv);
int cmd_job_logs(struct cli *c, int argc, char **argv);
int cmd_job_watch(struct cli *c, int argc, char **argv);
int cmd_queue_stats(struct cli *c, int argc, char **argv);
int cmd_stuck_check(struct cli *c, int argc, char **argv);
int cmd_events(struct cli *c, int argc, char **argv);
int cmd_events_replay(struct cli *c, int argc, char **argv);
/* cmd_content.c */
int cmd_content_scan(struct cli *c, int argc, char **argv);
int cmd_content_list(struct cli *c, int argc, char **argv);
/* cmd_devices.c */
int cmd_devices(struct cli *c, int argc, char **argv);
struct usb_candidate;
/* The `devices --json` document: an array of objects with DESIGN.md's fields (new reference). */
json_t *devices_to_json(const struct usb_candidate *c, size_t n);
/* The human table of `devices`. 0 or -ENOMEM. */
int devices_print_table(const struct usb_candidate *c, size_t n, FILE *out);
/* cmd_write.c: one-off write / verify / probe of one target, no database */
int cmd_write(struct cli *c, int argc, char **argv);
int cmd_verify(struct cli *c, int argc, char **argv);
int cmd_probe(struct cli *c, int argc, char **argv);
