/* usbforge db migrate, and the CLI's database connection helper. Every command connects as the
 * daemon's account (database.user: SELECT, INSERT, UPDATE, DELETE); db migrate connects as
 * database.admin when the config names it, the only command that reads its password file. */
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

/* The connection db migrate works through: the admin account when database.admin is set. */
static int migrate_open(struct cli *c, struct db **ret)
{
	_cleanup_free_ char *err = NULL;
	char *pw = NULL;
	int r = cli_load_config(c);
	if (r)
		return r;
	if (!c->cfg.db.admin.user)
		return cli_db_open(c, ret);
	r = config_admin_password(&c->cfg, &pw, &err);
	if (r < 0)
		return cli_error(r == -ENOMEM ? CLI_EXIT_FAIL : CLI_EXIT_USAGE, "%s", err);
	struct uf_config admin = c->cfg; /* a shallow copy: only the account differs */
	admin.db.user = c->cfg.db.admin.user;
	admin.db.password = pw;
	r = db_connect(&admin, ret, &err);
	if (pw) {
		explicit_bzero(pw, strlen(pw));
		free(pw);
	}
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
	r = migrate_open(c, &db);
	if (r)
		return r;
	r = db_migrate(db, &applied);
	if (r == -EACCES && c->cfg.db.admin.user)
		cli_error(CLI_EXIT_FAIL,
			  "migration failed: %s: the admin account '%s' (database.admin) needs " DB_ADMIN_PRIVILEGES
			  " on `%s`.*",
			  db_error(db), c->cfg.db.admin.user, c->cfg.db.name);
	else if (r == -EACCES)
		cli_error(CLI_EXIT_FAIL,
			  "migration failed: %s: db migrate needs CREATE, ALTER, INDEX, DROP, REFERENCES, CREATE "
			  "VIEW and TRIGGER, and '%s' is the daemon's account: run it as the admin account (database.admin in %s)",
			  db_error(db), c->cfg.db.user, c->cfg.path ? c->cfg.path : "the configuration");
	else if (r < 0)
		cli_error(CLI_EXIT_FAIL, "migration failed: %s", db_error(db));
	if (r < 0) {
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
