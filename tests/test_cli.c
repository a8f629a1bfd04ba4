/* The usbforge CLI as a person or a script uses it: exit codes (0, 1, 2, 3), messages that name
 * the argument or the file and line, --json documents with DESIGN.md's keys, idempotent
 * confirm, cancel/retry through the command line. Runs the real binary against MariaDB. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/schema.h"
#include "helpers/testdb.h"
#include "helpers/testutil.h"

#define DBNAME "uf_t_cli"
extern char **environ;
static struct db *db;
static char *dir, *cfg;

static void setup(void)
{
	db = tdb_fresh(DBNAME);
	dir = tu_tmpdir("cli");
	cfg = tdb_write_config(dir, DBNAME, "usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"/nonexistent/a.img\"; } ); };");
}
static void teardown(void)
{
	db = db_close(db);
	tu_rmrf(dir);
	free(dir);
	free(cfg);
}
TestSuite(cli, .init = setup, .fini = teardown);

struct run {
	int status;
	char *out, *err;
};

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	cr_assert(f);
	char *s = NULL;
	size_t n = 0;
	cr_assert(getdelim(&s, &n, '\0', f) >= 0 || (s && !*s) || feof(f));
	fclose(f);
	return s ? s : strdup("");
}

/* Run usbforge with args (NULL-terminated), stdin from /dev/null. */
static struct run run(const char *const *args)
{
	char *bin = tu_path(tu_binary_dir(), "cli/usbforge");
	char *outp = tu_path(dir, "out"), *errp = tu_path(dir, "err");
	const char *argv[32] = { bin };
	int n = 1;
	for (; args[n - 1]; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	pid_t pid;
	cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	int st;
	waitpid(pid, &st, 0);
	struct run r = { .status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), .out = slurp(outp), .err = slurp(errp) };
	free(bin);
	free(outp);
	free(errp);
	return r;
}

static void done(struct run *r)
{
	free(r->out);
	free(r->err);
}

#define RUN(...) run((const char *const[]){ __VA_ARGS__, NULL })

Test(cli, orders_end_to_end_with_exit_codes)
{
	char *img = tu_path(dir, "x.img");
	char buf[8192];
	tu_fill_pattern(buf, sizeof(buf), 9);
	tu_write_file(img, buf, sizeof(buf));

	struct run r = RUN("--config", cfg, "order", "add", "N-1", "--capacity", "16GB", "--quantity", "2", "--image", img);
	cr_assert_eq(r.status, 0, "%s", r.err);
	done(&r);
	r = RUN("--config", cfg, "order", "add", "N-1", "--capacity", "16GB", "--image", img);
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "order 'N-1' already exists"), "%s", r.err);
	done(&r);
	r = RUN("--config", cfg, "order", "add", "N-2", "--capacity", "16 GB", "--image", img);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--capacity: '16 GB' is not a size"), "%s", r.err);
	done(&r);
	r = RUN("--config", cfg, "order", "add", "N-3", "--capacity", "1G", "--image", "/nonexistent.img");
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "ORDER_INVALID: image '/nonexistent.img'"), "%s", r.err);
	done(&r);
	r = RUN("--config", cfg, "order", "add", "N-4", "--capacity", "1G", "--image", img, "--category", "Salsa");
	cr_assert_eq(r.status, 2, "image and category together");
	done(&r);

	r = RUN("--config", cfg, "--json", "order", "confirm", "N-1");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j1 = json_loads(r.out, 0, NULL);
	cr_assert(j1, "not JSON: %s", r.out);
	cr_assert_str_eq(json_string_value(json_object_get(j1, "order_number")), "N-1");
	cr_assert_eq(json_array_size(json_object_get(j1, "jobs")), 2);
	done(&r);
	r = RUN("--config", cfg, "--json", "order", "confirm", "N-1");
	json_t *j2 = json_loads(r.out, 0, NULL);
	cr_assert(json_equal(j1, j2), "confirm twice prints the same document");
	done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 2);
	json_int_t id = json_integer_value(json_object_get(json_array_get(json_object_get(j1, "jobs"), 0), "id"));
	json_decref(j1);
	json_decref(j2);

	r = RUN("--config", cfg, "order", "confirm", "NOPE");
	cr_assert_eq(r.status, 3);
	cr_assert(strstr(r.err, "order 'NOPE' not found"), "%s", r.err);
	done(&r);
	r = RUN("--config", cfg, "job", "show", "999999");
	cr_assert_eq(r.status, 3);
	done(&r);
	r = RUN("--config", cfg, "job", "show", "abc");
	cr_assert_eq(r.status, 2);
	done(&r);

	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	r = RUN("--config", cfg, "--json", "job", "show", ids);
	cr_assert_eq(r.status, 0);
	json_t *js = json_loads(r.out, 0, NULL);
	cr_assert_str_eq(json_string_value(json_object_get(js, "status")), "queued");
	cr_assert(json_is_array(json_object_get(js, "items")));
	cr_assert(json_object_get(js, "cancel_requested_at") && json_is_null(json_object_get(js, "cancel_requested_at")));
	json_decref(js);
	done(&r);

	r = RUN("--config", cfg, "job", "cancel", ids, "--by", "ana");
	cr_assert_eq(r.status, 0, "%s", r.err);
	done(&r);
	r = RUN("--config", cfg, "job", "cancel", ids);
	cr_assert_eq(r.status, 1, "a cancelled job cannot be cancelled again");
	done(&r);
	r = RUN("--config", cfg, "job", "retry", ids);
	cr_assert_eq(r.status, 0, "%s", r.err);
	done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued'"), 2);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action IN ('cancel', 'retry')"), 2);

	r = RUN("--config", cfg, "--json", "queue", "stats");
	cr_assert_eq(r.status, 0);
	json_t *qs = json_loads(r.out, 0, NULL);
	static const char *const keys[] = { "queued", "processing", "retry", "done", "failed", "cancelled",
					    "stuck_processing", "stuck_queued", "avg_duration_seconds" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_assert(json_object_get(qs, keys[i]), "queue stats lacks %s", keys[i]);
	cr_assert_eq(json_integer_value(json_object_get(qs, "queued")), 2);
	json_decref(qs);
	done(&r);

	r = RUN("--config", cfg, "--json", "jobs", "--status", "queued");
	json_t *jl = json_loads(r.out, 0, NULL);
	cr_assert_eq(json_array_size(jl), 2);
	json_decref(jl);
	done(&r);
	r = RUN("--config", cfg, "jobs", "--status", "weird");
	cr_assert_eq(r.status, 2);
	done(&r);
	free(img);
}

Test(cli, config_and_usage_errors)
{
	char *bad = tu_path(dir, "bad.conf");
	const char *text = "station = \"k\";\nworker = { max_concurrent = 0; };\n";
	tu_write_file(bad, text, strlen(text));
	struct run r = RUN("--config", bad, "jobs");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "bad.conf:2") && strstr(r.err, "worker.max_concurrent"), "%s", r.err);
	done(&r);
	r = RUN("--config", "/nonexistent/usbforge.conf", "jobs");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "/nonexistent/usbforge.conf"), "%s", r.err);
	done(&r);
	r = RUN("frobnicate");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "unknown command 'frobnicate'"), "%s", r.err);
	done(&r);
	/* a database that is not there: exit 1, DB_UNAVAILABLE, names where */
	char *nodb = tu_path(dir, "nodb.conf");
	const char *t2 = "database = { socket = \"/nonexistent/sock\"; user = \"u\"; };\n";
	tu_write_file(nodb, t2, strlen(t2));
	r = RUN("--config", nodb, "jobs");
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "DB_UNAVAILABLE") && strstr(r.err, "/nonexistent/sock"), "%s", r.err);
	done(&r);
	free(bad);
	free(nodb);
}

Test(cli, migrate_is_idempotent_through_the_cli)
{
	struct run r = RUN("--config", cfg, "--json", "db", "migrate");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = json_loads(r.out, 0, NULL);
	cr_assert_eq(json_integer_value(json_object_get(j, "applied")), 0);
	cr_assert_eq(json_integer_value(json_object_get(j, "schema_version")), db_schema_latest());
	cr_assert_eq(db_schema_latest(), 2);
	json_decref(j);
	done(&r);
}
