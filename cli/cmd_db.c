/* usbforge db migrate, and the CLI's database connection helper. */
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "cli/commands.h"
#include "db/db.h"
#include "db/schema.h"
#include "util/macro.h"

int cli_db_open(struct cli *c, struct db **ret)
{
	_cleanup_free_ char *err = NULL;
	int r = cli_load_config(c);
	if (r)
		return r;
	r = db_connect(&c->cfg, ret, &err);
	if (r < 0)
		return cli_error(CLI_EXIT_FAIL, "DB_UNAVAILABLE: %s", err ? err : strerror(-r));
	return 0;
}

int cmd_db_migrate(struct cli *c, int argc, char **argv)
{
	struct db *db = NULL;
	int applied = 0, cur = 0, r;

	if (argc > 1)
		return cli_usage_error("db migrate", "", "unexpected argument '%s'", argv[1]);
	r = cli_db_open(c, &db);
	if (r)
		return r;
	r = db_migrate(db, &applied);
	if (r < 0) {
		cli_error(CLI_EXIT_FAIL, "migration failed: %s", db_error(db));
		db_close(db);
		return CLI_EXIT_FAIL;
	}
	(void)db_schema_current(db, &cur);
	r = CLI_EXIT_OK;
	if (c->json)
		r = cli_print_json(json_pack("{s:i, s:i, s:s}", "schema_version", cur, "applied", applied, "server",
					     db_server_version(db)));
	else if (applied)
		printf("schema upgraded to version %d (%d migration%s applied)\n", cur, applied,
		       applied == 1 ? "" : "s");
	else
		printf("schema is current (version %d)\n", cur);
	db_close(db);
	return r;
}
