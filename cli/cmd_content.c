/* usbforge content scan / list. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/json.h"
#include "db/content.h"
#include "db/db.h"
#include "util/macro.h"
#include "util/openfile.h"
#include "util/size.h"

static void warn_cb(void *ud, const char *msg)
{
	(void)ud;
	cli_warning("%s", msg);
}

int cmd_content_scan(struct cli *c, int argc, char **argv)
{
	struct db *db = NULL;
	struct content_scan_stats st;
	char a[32];
	int r;
	if (argc > 2)
		return cli_usage_error("content scan", "[DIR]", "unexpected argument '%s'", argv[2]);
	if ((r = cli_db_open(c, &db)))
		return r;
	/* DIR is content.root or a folder beneath it: the library only ever holds files the daemon
	 * can open beneath content.root, and a scan only retires rows beneath the folder it saw */
	const char *root = c->cfg.content.root;
	const char *dir = argc == 2 ? argv[1] : root;
	_cleanup_free_ char *root_abs = realpath(root, NULL);
	if (!root_abs) {
		db_close(db);
		return cli_error(CLI_EXIT_FAIL, "content.root '%s': %m", root);
	}
	_cleanup_free_ char *abs = realpath(dir, NULL);
	if (!abs) {
		db_close(db);
		return cli_error(CLI_EXIT_FAIL, "content folder '%s': %m", dir);
	}
	const char *sub = strcmp(abs, root_abs) == 0 ? NULL : path_beneath(root_abs, abs);
	if (strcmp(abs, root_abs) != 0 && !sub) {
		db_close(db);
		return cli_error(CLI_EXIT_FAIL, "content folder '%s' is not content.root ('%s') or a folder beneath it",
				 abs, root_abs);
	}
	r = content_scan(db, root_abs, sub, warn_cb, NULL, &st);
	if (r < 0) {
		if (r == -EREMOTEIO)
			cli_error(CLI_EXIT_FAIL, "content folder '%s' is a kernel pseudo filesystem, not content", abs);
		else if (r == -ENOTDIR || r == -ENOENT || r == -EACCES || r == -EXDEV)
			cli_error(CLI_EXIT_FAIL, "content folder '%s': %s", abs, strerror(-r));
		else
			cli_error(CLI_EXIT_FAIL, "scan of '%s' failed: %s", abs, db_error(db));
		db_close(db);
		return CLI_EXIT_FAIL;
	}
	db_close(db);
	if (c->json) {
		return cli_print_json(json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I}", "root", abs, "files",
						st.files, "added", st.added, "updated", st.updated, "unchanged",
						st.unchanged, "reactivated", st.reactivated, "deactivated",
						st.deactivated, "skipped", st.skipped, "bytes_hashed",
						(json_int_t)st.bytes_hashed));
	}
	return cli_line(
		stdout,
		"%s: %u files: %u added, %u updated, %u unchanged, %u reactivated, %u gone (inactive), %u skipped; %s hashed",
		abs, st.files, st.added, st.updated, st.unchanged, st.reactivated, st.deactivated, st.skipped,
		format_size(st.bytes_hashed, a, sizeof(a)));
}

int cmd_content_list(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = { { "category", required_argument, NULL, 'k' }, {} };
	const char *cat = NULL;
	struct db *db = NULL;
	struct db_res *res = NULL;
	int o, r;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != 'k')
			return cli_usage_error("content list", "[--category C]", "bad option");
		cat = optarg;
	}
	if (optind != argc)
		return cli_usage_error("content list", "[--category C]", "unexpected argument '%s'", argv[optind]);
	if ((r = cli_db_open(c, &db)))
		return r;
	r = content_list(db, cat, &res);
	if (r < 0) {
		cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
		db_close(db);
		return CLI_EXIT_FAIL;
	}
	db_close(db);
	json_t *rows = cli_json_rows(res);
	db_res_free(res);
	if (!rows)
		return cli_error(CLI_EXIT_FAIL, "out of memory");
	if (c->json) {
		return cli_print_json(rows);
	}
	static const char *const hdr[] = { "ID", "CATEGORY", "SIZE", "PATH" };
	struct table *t = NULL;
	r = table_new(4, hdr, &t);
	size_t i;
	json_t *e;
	uint64_t total = 0;
	json_array_foreach(rows, i, e)
	{
		char id[32], sz[32];
		if (r < 0)
			break;
		snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(e, "id")));
		uint64_t b = (uint64_t)json_integer_value(json_object_get(e, "size_bytes"));
		total += b;
		r = table_addf(t, id, json_string_value(json_object_get(e, "category")), format_size(b, sz, sizeof(sz)),
			       json_string_value(json_object_get(e, "rel_path")));
	}
	if (r >= 0)
		r = table_print(t, stdout);
	table_free(t);
	if (r >= 0) {
		char tb[32];
		printf("%zu item(s), %s\n", json_array_size(rows), format_size(total, tb, sizeof(tb)));
		r = CLI_EXIT_OK;
	}
	json_decref(rows);
	return r;
}
