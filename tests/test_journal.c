/* util/log.h in the journal (issue 13, part 5): usbforged runs against the private MariaDB with
 * a static slot and its stderr connected to a private systemd-journald as systemd connects a
 * service's (tests/journal/with-journald, uf_journal_stream); journalctl reads the entries back
 * by their fields and the test checks them exactly: a done job and a failed one, the daemon's
 * own events, hostile field values (tests/journal/logprobe.c), and plain "<N>" lines when
 * stderr is a pipe. Needs root (mount and PID namespaces). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db/orders.h"
#include "helpers/clirun.h"
#include "helpers/testdb.h"
#include "helpers/testutil.h"
#include "util/logid.h"
#include "util/macro.h"

#define DBNAME "uf_t_journal"
extern char **environ;

static struct db *db;
static char *dir;
static pid_t spawned; /* a child not yet waited for: killed by teardown */

static void setup(void)
{
	cr_assert_eq(geteuid(), 0, "test_journal needs root: a private journald in mount and PID namespaces");
	db = tdb_fresh(DBNAME);
	dir = tu_tmpdir("journal");
}
static void teardown(void)
{
	if (spawned > 0) {
		kill(spawned, SIGKILL);
		waitpid(spawned, NULL, 0);
		spawned = 0;
	}
	db = db_close(db);
	tu_rmrf(dir);
	free(dir);
}
TestSuite(journal, .init = setup, .fini = teardown, .timeout = 240);

static double mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Run argv (envp: NULL for ours) with stdout in dir/out_name and stderr in dir/err_name (NULL:
 * inherited); wait for it with a deadline; return its exit status. */
static int run(char *const argv[], char *const envp[], const char *out_name, const char *err_name, double timeout)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	_cleanup_free_ char *out = out_name ? tu_path(dir, out_name) : NULL;
	_cleanup_free_ char *err = err_name ? tu_path(dir, err_name) : NULL;
	if (out)
		posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (err)
		posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	pid_t pid;
	cr_assert_eq(posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp ? envp : environ), 0, "cannot run %s", argv[0]);
	posix_spawn_file_actions_destroy(&fa);
	spawned = pid;
	double end = mono() + timeout;
	int st;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		cr_assert(mono() < end, "%s did not exit within %.0f s", argv[0], timeout);
		(void)poll(NULL, 0, 20);
	}
	spawned = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* journalctl -D jdir -o json --all MATCH… : the entries, oldest first (a JSON array). */
static json_t *journal_query(const char *jdir, const char *m1, const char *m2)
{
	char *argv[] = { (char *)"journalctl", (char *)"--no-pager", (char *)"-q", (char *)"-o",
			 (char *)"json",       (char *)"--all",	     (char *)"-D", (char *)jdir,
			 (char *)m1,	       (char *)m2,	     NULL };
	cr_assert_eq(run(argv, NULL, "query.json", "query.err", 60), 0, "journalctl %s %s failed", m1, m2 ? m2 : "");
	_cleanup_free_ char *p = tu_path(dir, "query.json");
	_cleanup_free_ char *text = tu_slurp(p);
	json_t *a = json_array();
	for (char *line = text; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (*line) {
			json_error_t e;
			json_t *o = json_loads(line, 0, &e);
			cr_assert(json_is_object(o), "journalctl printed a line that is not a JSON object: %s (%s)",
				  line, e.text);
			json_array_append_new(a, o);
		}
		line = nl ? nl + 1 : NULL;
	}
	return a;
}

/* The entry's field as a string; NULL when absent (or not a string). */
static const char *fld(json_t *e, const char *name) { return json_string_value(json_object_get(e, name)); }

static size_t count_with(json_t *entries, const char *name, const char *value)
{
	size_t i, n = 0;
	json_t *e;
	json_array_foreach(entries, i, e)
	{
		const char *v = fld(e, name);
		if (value ? v && strcmp(v, value) == 0 : v != NULL)
			n++;
	}
	return n;
}

/* The one entry with name=value (asserts there is exactly one). */
static json_t *the_one(json_t *entries, const char *name, const char *value)
{
	cr_assert_eq(count_with(entries, name, value), 1, "%zu entries with %s=%s, not one",
		     count_with(entries, name, value), name, value);
	size_t i;
	json_t *e;
	json_array_foreach(entries, i, e)
	{
		const char *v = fld(e, name);
		if (v && strcmp(v, value) == 0)
			return e;
	}
	return NULL;
}

static char *make_file(const char *name, size_t bytes, bool pattern)
{
	char *p = tu_path(dir, name);
	if (pattern) {
		char *buf = malloc(bytes);
		cr_assert(buf);
		tu_fill_pattern(buf, bytes, 7);
		tu_write_file(p, buf, bytes);
		free(buf);
	} else {
		int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
		cr_assert(fd >= 0);
		cr_assert_eq(ftruncate(fd, (off_t)bytes), 0);
		close(fd);
	}
	return p;
}

/* An image order of one unit, confirmed; image_bytes as the order records it (0: unknown, so
 * any stick of the capacity is claimed for it). Returns the job's id. */
static int64_t add_order(const char *number, const char *image, uint64_t capacity, uint64_t image_bytes)
{
	struct order_new o = { .number = number,
			       .capacity_bytes = capacity,
			       .quantity = 1,
			       .image_path = image,
			       .image_bytes = image_bytes };
	int64_t id;
	cr_assert_eq(order_add(db, &o, &id), 0, "%s", db_error(db));
	struct order_confirmation c = { 0 };
	cr_assert_eq(order_confirm(db, number, NULL, 1, "test", &c), 0, "%s", db_error(db));
	cr_assert_eq(c.n_jobs, 1);
	int64_t job = c.jobs[0].id;
	order_confirmation_done(&c);
	return job;
}

/* A config with one static slot S0 at stick (images under dir). */
static char *config(const char *stick)
{
	_cleanup_free_ char *extra = NULL;
	cr_assert(asprintf(&extra,
			   "worker = { poll_interval = 0.2; heartbeat_interval = 0.2; };\n"
			   "usb = { mode = \"static\"; slots = ({ name = \"S0\"; path = \"%s\"; }); };\n"
			   "content = { images = \"%s\"; };\n",
			   stick, dir) > 0);
	return tdb_write_config(dir, DBNAME, extra);
}

static char *bin(const char *rel) { return tu_path(tu_binary_dir(), rel); }

Test(journal, a_done_and_a_failed_job_carry_their_fields)
{
	char *img = make_file("small.raw", 4 << 20, true);
	char *big = make_file("big.raw", 32 << 20, true);
	char *stick = make_file("stick.img", 16 << 20, false);
	char *cfg = config(stick);
	int64_t done_id = add_order("J-1", img, 16 << 20, 4 << 20);
	int64_t fail_id = add_order("J-2", big, 16 << 20, 0); /* 32 MiB for a 16 MiB stick */

	_cleanup_free_ char *jdir = tu_path(dir, "journal");
	cr_assert_eq(mkdir(jdir, 0755), 0);
	_cleanup_free_ char *with = tu_path(tu_source_dir(), "tests/journal/with-journald");
	_cleanup_free_ char *stream = bin("tests/uf_journal_stream");
	_cleanup_free_ char *daemon = bin("worker/usbforged");
	char *argv[] = { with, jdir, stream, (char *)"usbforged", daemon, (char *)"--config", cfg, (char *)"--once",
			 NULL };
	cr_assert_eq(run(argv, NULL, "ns.out", "ns.err", 180), 0, "usbforged under the private journald failed");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done'"), 1);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'failed'"
				   " AND error_code = 'CONTENT_TOO_LARGE' AND attempts = 1"),
		     1);

	char m[64];
	/* the done job: every entry says which job, order, unit, attempt and slot */
	snprintf(m, sizeof(m), "USBFORGE_JOB_ID=%lld", (long long)done_id);
	json_auto_t *d = journal_query(jdir, m, NULL);
	size_t n = json_array_size(d);
	cr_assert_geq(n, 10, "only %zu entries for the done job", n);
	cr_assert_eq(count_with(d, "USBFORGE_ORDER", "J-1"), n);
	cr_assert_eq(count_with(d, "USBFORGE_UNIT", "0"), n);
	cr_assert_eq(count_with(d, "USBFORGE_ATTEMPT", "1"), n);
	cr_assert_eq(count_with(d, "USBFORGE_SLOT", "S0"), n);
	cr_assert_eq(count_with(d, "SYSLOG_IDENTIFIER", "usbforged"), n);
	cr_assert_eq(count_with(d, "_TRANSPORT", "journal"), n, "a line reached the journal as text, not as an entry");
	cr_assert_eq(count_with(d, "USBFORGE_ERROR_CODE", NULL), 0);
	json_t *e = the_one(d, "MESSAGE_ID", LOG_MID_JOB_CLAIMED);
	cr_assert_str_eq(fld(e, "PRIORITY"), "6");
	cr_assert_null(fld(e, "USBFORGE_STAGE"));
	e = the_one(d, "MESSAGE_ID", LOG_MID_JOB_DONE);
	cr_assert_str_eq(fld(e, "PRIORITY"), "6");
	cr_assert_str_eq(fld(e, "USBFORGE_STAGE"), "done");
	cr_assert_str_eq(fld(e, "CODE_FUNC"), "run_attempt");
	cr_assert(fld(e, "CODE_FILE") && strstr(fld(e, "CODE_FILE"), "worker/runner.c"), "CODE_FILE=%s",
		  fld(e, "CODE_FILE"));
	cr_assert(fld(e, "CODE_LINE") && strtol(fld(e, "CODE_LINE"), NULL, 10) > 0);
	char want[128];
	snprintf(want, sizeof(want), "job %lld: done on slot S0", (long long)done_id);
	cr_assert_str_eq(fld(e, "MESSAGE"), want);
	/* each stage once started and once done, under its own name */
	cr_assert_eq(count_with(d, "MESSAGE_ID", LOG_MID_STAGE_STARTED), 4);
	cr_assert_eq(count_with(d, "MESSAGE_ID", LOG_MID_STAGE_DONE), 4);
	static const char *const stages[] = { "validation", "selection", "writing", "verification" };
	for (size_t k = 0; k < ARRAY_SIZE(stages); k++) {
		size_t i, started = 0, ended = 0;
		json_array_foreach(d, i, e)
		{
			const char *id = fld(e, "MESSAGE_ID"), *st = fld(e, "USBFORGE_STAGE");
			if (!id || !st || strcmp(st, stages[k]) != 0)
				continue;
			started += strcmp(id, LOG_MID_STAGE_STARTED) == 0;
			ended += strcmp(id, LOG_MID_STAGE_DONE) == 0;
		}
		cr_assert_eq(started, 1, "%s started %zu times", stages[k], started);
		cr_assert_eq(ended, 1, "%s done %zu times", stages[k], ended);
	}

	/* the failed job: one failure entry with its code, at notice level, in its stage */
	snprintf(m, sizeof(m), "USBFORGE_JOB_ID=%lld", (long long)fail_id);
	json_auto_t *f = journal_query(jdir, m, NULL);
	n = json_array_size(f);
	cr_assert_eq(count_with(f, "USBFORGE_ORDER", "J-2"), n);
	cr_assert_eq(count_with(f, "MESSAGE_ID", LOG_MID_JOB_DONE), 0);
	cr_assert_eq(count_with(f, "MESSAGE_ID", LOG_MID_JOB_RETRY), 0);
	e = the_one(f, "MESSAGE_ID", LOG_MID_JOB_FAILED);
	cr_assert_str_eq(fld(e, "USBFORGE_ERROR_CODE"), "CONTENT_TOO_LARGE");
	cr_assert_str_eq(fld(e, "PRIORITY"), "5");
	cr_assert_str_eq(fld(e, "USBFORGE_STAGE"), "validation");
	cr_assert_str_eq(fld(e, "USBFORGE_ATTEMPT"), "1");
	cr_assert_str_eq(fld(e, "USBFORGE_SLOT"), "S0");
	cr_assert_eq(count_with(f, "USBFORGE_ERROR_CODE", NULL), 1);

	/* the same entries found by the order number, as README shows */
	json_auto_t *o = journal_query(jdir, "USBFORGE_ORDER=J-2", NULL);
	cr_assert_eq(json_array_size(o), n);

	/* the daemon's own events, once each */
	json_auto_t *all = journal_query(jdir, "SYSLOG_IDENTIFIER=usbforged", NULL);
	cr_assert_eq(count_with(all, "MESSAGE_ID", LOG_MID_DAEMON_STARTED), 1);
	cr_assert_eq(count_with(all, "MESSAGE_ID", LOG_MID_DAEMON_READY), 1);
	cr_assert_eq(count_with(all, "MESSAGE_ID", LOG_MID_DAEMON_STOPPED), 1);
	cr_assert_eq(count_with(all, "MESSAGE_ID", LOG_MID_JOB_CLAIMED), 2);
	cr_assert_eq(count_with(all, "_TRANSPORT", "journal"), json_array_size(all));
	free(img);
	free(big);
	free(stick);
	free(cfg);
}

/* Field values from outside cannot add fields or grow without bound; a thread's context is its
 * own. */
Test(journal, field_values_are_bounded_and_cannot_add_fields)
{
	_cleanup_free_ char *jdir = tu_path(dir, "journal");
	cr_assert_eq(mkdir(jdir, 0755), 0);
	_cleanup_free_ char *with = tu_path(tu_source_dir(), "tests/journal/with-journald");
	_cleanup_free_ char *stream = bin("tests/uf_journal_stream");
	_cleanup_free_ char *probe = bin("tests/uf_log_probe");
	char *argv[] = { with, jdir, stream, (char *)"uf_log_probe", probe, NULL };
	cr_assert_eq(run(argv, NULL, "ns.out", "ns.err", 60), 0);

	json_auto_t *all = journal_query(jdir, "SYSLOG_IDENTIFIER=uf_log_probe", NULL);
	cr_assert_eq(json_array_size(all), 5);
	cr_assert_eq(count_with(all, "_TRANSPORT", "journal"), 5);
	/* the order number with a newline is one value, whole; it added no job id or priority */
	json_t *e = the_one(all, "MESSAGE", "probe: hostile order");
	cr_assert_str_eq(fld(e, "USBFORGE_ORDER"), "P-1\nUSBFORGE_JOB_ID=999\nPRIORITY=0");
	cr_assert_str_eq(fld(e, "USBFORGE_JOB_ID"), "41");
	cr_assert_str_eq(fld(e, "PRIORITY"), "4");
	cr_assert_str_eq(fld(e, "USBFORGE_SLOT"), "S=0");
	cr_assert_str_eq(fld(e, "USBFORGE_ERROR_CODE"), "DEVICE_GONE");
	cr_assert_str_eq(fld(e, "MESSAGE_ID"), LOG_MID_JOB_FAILED);
	json_auto_t *none = journal_query(jdir, "USBFORGE_JOB_ID=999", NULL);
	cr_assert_eq(json_array_size(none), 0);
	json_auto_t *emerg = journal_query(jdir, "PRIORITY=0", NULL);
	cr_assert_eq(json_array_size(emerg), 0);

	/* the long serial cut to 256 bytes between characters; the long message to 16384 */
	json_auto_t *l = journal_query(jdir, "USBFORGE_JOB_ID=42", NULL);
	cr_assert_eq(json_array_size(l), 1);
	e = json_array_get(l, 0);
	const char *serial = fld(e, "USBFORGE_DEVICE_SERIAL");
	cr_assert(serial);
	cr_assert_eq(strlen(serial), 256);
	for (size_t i = 0; i < 256; i += 2)
		cr_assert(memcmp(serial + i, "\xc3\xa9", 2) == 0);
	const char *msg = fld(e, "MESSAGE");
	cr_assert(msg, "the long message is not in the entry");
	cr_assert_eq(strlen(msg), 16384);
	cr_assert(strncmp(msg, "probe: long mmm", 15) == 0);
	cr_assert_str_eq(fld(e, "PRIORITY"), "3");

	/* the context: the message's own stage and code win, the rest comes from the thread */
	e = the_one(all, "MESSAGE", "probe: with context: Input/output error");
	cr_assert_str_eq(fld(e, "USBFORGE_JOB_ID"), "43");
	cr_assert_str_eq(fld(e, "USBFORGE_ORDER"), "P-3");
	cr_assert_str_eq(fld(e, "USBFORGE_UNIT"), "0");
	cr_assert_str_eq(fld(e, "USBFORGE_ATTEMPT"), "2");
	cr_assert_str_eq(fld(e, "USBFORGE_SLOT"), "S1");
	cr_assert_str_eq(fld(e, "USBFORGE_DEVICE_SERIAL"), "SER-3");
	cr_assert_str_eq(fld(e, "USBFORGE_STAGE"), "verification");
	cr_assert_str_eq(fld(e, "USBFORGE_ERROR_CODE"), "WRITE_IO");
	cr_assert_str_eq(fld(e, "ERRNO"), "5");
	cr_assert_str_eq(fld(e, "CODE_FUNC"), "main");
	static const char *const bare[] = { "probe: another thread, no context", "probe: context cleared" };
	for (size_t k = 0; k < ARRAY_SIZE(bare); k++) {
		e = the_one(all, "MESSAGE", bare[k]);
		const char *names[] = { "USBFORGE_JOB_ID",	  "USBFORGE_ORDER", "USBFORGE_UNIT",
					"USBFORGE_SLOT",	  "USBFORGE_STAGE", "USBFORGE_ATTEMPT",
					"USBFORGE_DEVICE_SERIAL", "MESSAGE_ID" };
		for (size_t i = 0; i < ARRAY_SIZE(names); i++)
			cr_assert_null(fld(e, names[i]), "'%s' carries %s", bare[k], names[i]);
	}
	cr_assert_str_eq(fld(the_one(all, "MESSAGE", bare[0]), "PRIORITY"), "5");
}

/* stderr a pipe, with a JOURNAL_STREAM that names something else (inherited from a parent whose
 * stderr was the journal): today's plain lines, each with its "<N>" prefix. */
Test(journal, a_pipe_gets_plain_prefixed_lines)
{
	char *img = make_file("small.raw", 4 << 20, true);
	char *stick = make_file("stick.img", 16 << 20, false);
	char *cfg = config(stick);
	int64_t id = add_order("P-1", img, 16 << 20, 4 << 20);
	struct stat st;
	cr_assert_eq(stat("/dev/null", &st), 0);
	char js[96];
	snprintf(js, sizeof(js), "JOURNAL_STREAM=%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	/* the environment, with JOURNAL_STREAM replaced */
	size_t ne = 0;
	while (environ[ne])
		ne++;
	char **envp = calloc(ne + 2, sizeof(*envp));
	size_t k = 0;
	for (size_t i = 0; i < ne; i++)
		if (strncmp(environ[i], "JOURNAL_STREAM=", 15) != 0)
			envp[k++] = environ[i];
	envp[k++] = js;

	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	_cleanup_free_ char *daemon = bin("worker/usbforged");
	char *argv[] = { daemon, (char *)"--config", cfg, (char *)"--once", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	pid_t pid;
	cr_assert_eq(posix_spawn(&pid, daemon, &fa, NULL, argv, envp), 0);
	posix_spawn_file_actions_destroy(&fa);
	spawned = pid;
	close(p[1]);
	/* read to the end (the daemon exits: --once), with a deadline */
	char *out = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&out, &len);
	double end = mono() + 120;
	for (;;) {
		struct pollfd pf = { p[0], POLLIN, 0 };
		int left = (int)((end - mono()) * 1000);
		cr_assert(left > 0 && poll(&pf, 1, left) > 0, "usbforged's stderr did not end within 120 s");
		char b[4096];
		ssize_t got = read(p[0], b, sizeof(b));
		cr_assert(got >= 0);
		if (got == 0)
			break;
		fwrite(b, 1, (size_t)got, mf);
	}
	fclose(mf);
	close(p[0]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	spawned = 0;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s", out);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE status = 'done'"), 1);

	/* every line "<N>text", N a level the daemon uses; the done line as before */
	size_t lines = 0;
	for (char *line = out; *line;) {
		char *nl = strchr(line, '\n');
		cr_assert(nl, "a line without its newline: %s", line);
		*nl = '\0';
		cr_assert(line[0] == '<' && line[1] >= '3' && line[1] <= '7' && line[2] == '>' && line[3],
			  "not a prefixed line: %s", line);
		lines++;
		line = nl + 1;
	}
	cr_assert_geq(lines, 10);
	char want[96];
	snprintf(want, sizeof(want), "\n<6>job %lld: done on slot S0\n", (long long)id);
	/* the lines were cut at their newlines above: look in a fresh copy */
	for (size_t i = 0; i < len; i++)
		if (out[i] == '\0')
			out[i] = '\n';
	cr_assert(strstr(out, want), "no '%s' line in:\n%s", want + 1, out);
	snprintf(want, sizeof(want), "\n<6>job %lld: writing started\n", (long long)id);
	cr_assert(strstr(out, want), "no '%s' line in:\n%s", want + 1, out);
	free(out);
	free(envp);
	free(img);
	free(stick);
	free(cfg);
}

/* stderr is "the journal" by JOURNAL_STREAM but the journal's socket refuses (nobody listens on
 * it): every message still comes out, as its plain line. */
Test(journal, a_refused_send_falls_back_to_the_plain_line)
{
	_cleanup_free_ char *probe = bin("tests/uf_log_probe");
	_cleanup_free_ char *errf = tu_path(dir, "probe.err");
	_cleanup_free_ char *script = NULL;
	cr_assert(asprintf(&script,
			   "set -e; mount -t tmpfs uf-journal-run /run; mkdir -p /run/systemd/journal;"
			   " python3 -c 'import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)"
			   ".bind(\"/run/systemd/journal/socket\")';"
			   " test -S /run/systemd/journal/socket; exec 2>'%s';"
			   " JOURNAL_STREAM=$(stat -L -c %%d:%%i '%s') exec '%s' --say-target",
			   errf, errf, probe) > 0);
	char *argv[] = { (char *)"unshare",
			 (char *)"--mount",
			 (char *)"--propagation",
			 (char *)"private",
			 (char *)"bash",
			 (char *)"-c",
			 script,
			 NULL };
	cr_assert_eq(run(argv, NULL, "ns.out", NULL, 60), 0);
	_cleanup_free_ char *out = tu_slurp(errf);
	static const char *const want[] = { "<4>probe: hostile order\n", "<3>probe: long mmm",
					    "<3>probe: with context: Input/output error\n",
					    "<5>probe: another thread, no context\n", "<6>probe: context cleared\n" };
	const char *p = out;
	for (size_t k = 0; k < ARRAY_SIZE(want); k++) {
		cr_assert(strncmp(p, want[k], strlen(want[k])) == 0, "line %zu is not '%s':\n%.200s", k + 1, want[k],
			  p);
		p = strchr(p, '\n');
		cr_assert(p);
		p++;
	}
	cr_assert_str_eq(p, "", "more than the five lines: %.200s", p);
	/* it did take stderr for the journal: the lines are the fallback of refused sends */
	_cleanup_free_ char *outp = tu_path(dir, "ns.out");
	_cleanup_free_ char *said = tu_slurp(outp);
	cr_assert_str_eq(said, "journal=1\n");
}
