/* The CLI against hostile input (issue 11, items 5 and 6). Text output: customer names, order
 * numbers, file names, log messages and event payloads holding terminal control sequences
 * (ESC ] 0 ; … BEL retitles a terminal, ESC [2J clears it, CSI 0x9b, DEL) are printed escaped,
 * exactly as util/utf8.h's utf8_escape_text() says, in every text command and error message.
 * Orders that can never be fulfilled are refused at `order add` with the reason, and sizes are
 * shown unsigned. Runs the real binary against MariaDB. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/db.h"
#include "helpers/testdb.h"
#include "helpers/clirun.h"
#include "helpers/testutil.h"
#include "util/utf8.h"

#define DBNAME "uf_t_cli_safe"
extern char **environ;
static struct db *db;
static char *dir, *cfg;

static void setup(void)
{
	db = tdb_fresh(DBNAME);
	dir = tu_tmpdir("clisafe");
	cfg = tdb_write_config(
		dir, DBNAME,
		"usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"/nonexistent/a.img\"; } ); };");
}
static void teardown(void)
{
	db = db_close(db);
	tu_rmrf(dir);
	free(dir);
	free(cfg);
}
TestSuite(cli_text, .init = setup, .fini = teardown);

#define RUN(...) tu_run_cli(dir, (const char *const[]){ __VA_ARGS__, NULL })

/* No control character but the line ends: what reached the terminal is inert. */
static void assert_inert(const char *text, const char *what)
{
	char *copy = strdup(text);
	cr_assert(copy);
	for (char *p = copy; *p; p++)
		if (*p == '\n')
			*p = ' ';
	cr_assert_not(utf8_has_controls(copy), "%s printed a control character: %s", what, text);
	free(copy);
}

/* The hostile strings: a retitle (OSC 0 … BEL), a clear screen (CSI 2J), a C1 CSI (U+009B),
 * DEL, a backslash, and printable UTF-8 that must stay as it is. */
#define NUMBER	   "N\x1b]0;pwned\x07"
#define NUMBER_E   "N\\x1b]0;pwned\\x07"
#define CUSTOMER   "Mü\x1b[2Jller\xc2\x9b\x7f 日本"
#define CUSTOMER_E "Mü\\x1b[2Jller\\u009b\\x7f 日本"
#define PATH	   "Salsa/a\xc2\x9b\x7f\\b.mp3"
#define PATH_E	   "Salsa/a\\u009b\\x7f\\\\b.mp3"
#define LOGMSG	   "skipped Salsa/\x1b]0;x\x07.mp3\r\n"
#define LOGMSG_E   "skipped Salsa/\\x1b]0;x\\x07.mp3\\x0d\\x0a"

Test(cli_text, every_text_command_escapes_control_characters)
{
	/* What a web shop with SQL access can write (order add refuses such a number). */
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO orders (order_number, customer, capacity_bytes, quantity, image_path, image_bytes)"
			     " VALUES (?, ?, 16000000000, 1, '/srv/x.img', 4096)",
			     DB_STR(NUMBER), DB_STR(CUSTOMER), DB_END),
		     0, "%s", db_error(db));
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO content_items (category, title, rel_path, size_bytes, sha256, mtime)"
			     " VALUES ('Salsa', 'a', ?, 1024, REPEAT('a', 64), NOW(6))",
			     DB_STR(PATH), DB_END),
		     0, "%s", db_error(db));

	struct tu_run r = RUN("--config", cfg, "order", "confirm", NUMBER, "--correlation-id", "c\x1b[2J");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strncmp(r.out, "order " NUMBER_E " confirmed: 1 job\n",
			  strlen("order " NUMBER_E " confirmed: 1 job\n")) == 0,
		  "%s", r.out);
	assert_inert(r.out, "order confirm");
	tu_run_done(&r);
	long long job = tdb_count(db, "SELECT MAX(id) FROM processing_jobs");
	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", job);

	r = RUN("--config", cfg, "order", "show", NUMBER);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\norder_number           " NUMBER_E "\n"), "%s", r.out);
	cr_assert(strstr(r.out, "\ncustomer               " CUSTOMER_E "\n"), "%s", r.out);
	assert_inert(r.out, "order show");
	tu_run_done(&r);

	r = RUN("--config", cfg, "jobs");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "  " NUMBER_E "  0     queued"), "%s", r.out);
	assert_inert(r.out, "jobs");
	tu_run_done(&r);

	r = RUN("--config", cfg, "job", "show", ids);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\ncorrelation_id         c\\x1b[2J\n"), "%s", r.out);
	cr_assert(strstr(r.out, "\norder_number           " NUMBER_E "\n"), "%s", r.out);
	assert_inert(r.out, "job show");
	tu_run_done(&r);

	r = RUN("--config", cfg, "content", "list");
	cr_assert_eq(r.status, 0, "%s", r.err);
	long long item = tdb_count(db, "SELECT id FROM content_items");
	char expect[256];
	snprintf(expect, sizeof(expect),
		 "ID  CATEGORY  SIZE     PATH\n"
		 "%lld   Salsa     1.0 KiB  " PATH_E "\n"
		 "1 item(s), 1.0 KiB\n",
		 item);
	cr_assert_str_eq(r.out, expect);
	tu_run_done(&r);

	/* a log row and an event quoting hostile names */
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO processing_job_logs (job_id, level, stage, category, message, error_code)"
			     " VALUES (?, 'warn', 'selection', 'stage', ?, 'X\x1b[2J')",
			     DB_I64(job), DB_STR(LOGMSG), DB_END),
		     0, "%s", db_error(db));
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload)"
			     " VALUES ('order', 1, 'order.\x1b[2J', JSON_OBJECT('order_number', ?, 'c1', ?))",
			     DB_STR(NUMBER), DB_STR("a\xc2\x9b\x7f"), DB_END),
		     0, "%s", db_error(db));
	/* the job ends (job logs --follow returns; job watch prints its slot and code) */
	cr_assert_eq(db_exec(db, NULL,
			     "UPDATE processing_jobs SET status = 'failed', failed_at = NOW(6), slot = 'A\x1b[2J',"
			     " error_code = 'E\xc2\x9b' WHERE id = ?",
			     DB_I64(job), DB_END),
		     0, "%s", db_error(db));
	r = RUN("--config", cfg, "job", "logs", ids);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "  warn  selection    stage    X\\x1b[2J " LOGMSG_E "\n"), "%s", r.out);
	assert_inert(r.out, "job logs");
	tu_run_done(&r);
	r = RUN("--config", cfg, "job", "logs", ids, "--follow");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "  warn  selection    stage    X\\x1b[2J " LOGMSG_E "\n"), "%s", r.out);
	assert_inert(r.out, "job logs --follow");
	tu_run_done(&r);
	r = RUN("--config", cfg, "job", "watch", ids);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert(strstr(r.out, "  slot A\\x1b[2J E\\u009b\n"), "%s", r.out);
	assert_inert(r.out, "job watch");
	tu_run_done(&r);

	r = RUN("--config", cfg, "events");
	cr_assert_eq(r.status, 0, "%s", r.err);
	/* the payload is JSON: jansson escapes C0 (\u001B), the CLI DEL and C1; its own
	 * backslashes stay single */
	cr_assert(strstr(r.out, "  order.\\x1b[2J    order 1  "
				"{\"order_number\":\"N\\u001B]0;pwned\\u0007\",\"c1\":\"a\\u009b\\x7f\"}\n"),
		  "%s", r.out);
	assert_inert(r.out, "events");
	tu_run_done(&r);

	/* error messages quoting argv */
	r = RUN("--config", cfg, "order", "show", "X\x1b[2J\x9b");
	cr_assert_eq(r.status, 3);
	cr_assert_str_eq(r.err, "usbforge: order 'X\\x1b[2J\\x9b' not found\n");
	tu_run_done(&r);
	r = RUN("--config", cfg, "order", "add", "N\x1b]0;t\x07", "--capacity", "1G", "--image", "/x.img");
	cr_assert_eq(r.status, 2);
	cr_assert(strncmp(r.err,
			  "usbforge: NUMBER 'N\\x1b]0;t\\x07': ", strlen("usbforge: NUMBER 'N\\x1b]0;t\\x07': ")) == 0,
		  "%s", r.err);
	assert_inert(r.err, "a usage error");
	tu_run_done(&r);
	/* C1 and bytes that are not UTF-8 are no more printable than ESC in an order number */
	static const char *const bad_numbers[] = { "N\xc2\x9bX", "N\x9b", "N\xff", "N 1" };
	for (size_t i = 0; i < sizeof(bad_numbers) / sizeof(bad_numbers[0]); i++) {
		r = RUN("--config", cfg, "order", "add", bad_numbers[i], "--capacity", "1G", "--image", "/x.img");
		cr_assert_eq(r.status, 2, "%zu: %s", i, r.err);
		cr_assert(strstr(r.err, "': 1 to 64 printable characters, no spaces\n"), "%s", r.err);
		assert_inert(r.err, "a usage error");
		tu_run_done(&r);
	}
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders"), 1);
	r = RUN("--config", cfg, "fr\x1b[2Job");
	cr_assert_eq(r.status, 2);
	cr_assert(strncmp(r.err, "usbforge: unknown command 'fr\\x1b[2Job'\n",
			  strlen("usbforge: unknown command 'fr\\x1b[2Job'\n")) == 0,
		  "%s", r.err);
	tu_run_done(&r);

	/* --json keeps its own escaping (jansson): the document parses back to the exact bytes */
	r = RUN("--config", cfg, "--json", "order", "show", NUMBER);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = json_loads(r.out, 0, NULL);
	cr_assert(j, "%s", r.out);
	cr_assert_str_eq(json_string_value(json_object_get(j, "customer")), CUSTOMER);
	json_decref(j);
	tu_run_done(&r);
}

TestSuite(cli_orders, .init = setup, .fini = teardown);

/* A library item (active) inserted as the scan would; returns its id. */
static long long add_item(const char *category, const char *rel_path, unsigned long long size)
{
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO content_items (category, title, rel_path, size_bytes, sha256, mtime)"
			     " VALUES (?, ?, ?, ?, REPEAT('a', 64), NOW(6))",
			     DB_STR(category), DB_STR(rel_path), DB_STR(rel_path), DB_U64(size), DB_END),
		     0, "%s", db_error(db));
	return tdb_count(db, "SELECT MAX(id) FROM content_items");
}

/* The first line of s (without its '\n'), malloc'd. */
static char *first_line(const char *s)
{
	const char *nl = strchr(s, '\n');
	char *l = strndup(s, nl ? (size_t)(nl - s) : strlen(s));
	cr_assert(l);
	return l;
}

#define ADD_USAGE_LINE                                                                                                 \
	"usage: usbforge order add NUMBER --capacity SIZE [--quantity N] [--customer NAME] [--station S] (--image "    \
	"PATH | --category C … [--item ID …])\n"

Test(cli_orders, station_follows_the_config_rule)
{
	add_item("Salsa", "Salsa/a.mp3", 1000);
	static const char *const bad[] = {
		"'; DROP TABLE orders; --",
		"",
		"kiosk 1",
		"kiosk/1",
		"kiosk\x1b[2J",
		"k1234567890123456789012345678901234567890123456789012345678901234"
	}; /* 65 */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tu_run r = RUN("--config", cfg, "order", "add", "S-1", "--capacity", "1G", "--category", "Salsa",
				      "--station", bad[i]);
		cr_assert_eq(r.status, 2, "'%s': %s", bad[i], r.err);
		char *shown = utf8_escape_text(bad[i], 0), *expect = NULL;
		cr_assert(asprintf(&expect,
				   "usbforge: --station: '%s' is not a station name: 1 to 64 letters, digits, '.', "
				   "'_', ':' or '-' (as 'station' in the config)\n" ADD_USAGE_LINE,
				   shown) > 0);
		cr_assert_str_eq(r.err, expect);
		free(shown);
		free(expect);
		tu_run_done(&r);
	}
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders"), 0);
	/* 64 characters of every allowed kind */
	const char *ok = "Kiosk-1.b_c:d-12345678901234567890123456789012345678901234567890";
	cr_assert_eq(strlen(ok), 64);
	struct tu_run r =
		RUN("--config", cfg, "order", "add", "S-1", "--capacity", "1G", "--category", "Salsa", "--station", ok);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders WHERE station = "
				   "'Kiosk-1.b_c:d-12345678901234567890123456789012345678901234567890'"),
		     1);
}

Test(cli_orders, capacity_is_the_size_of_a_stick)
{
	add_item("Salsa", "Salsa/a.mp3", 1000);
	static const struct {
		const char *arg;
		unsigned long long bytes;
	} bad[] = { { "1", 1 },
		    { "1048575", 1048575 },
		    { "1M", 1000000 },
		    { "18446744073709551615", 18446744073709551615ULL },
		    { "9223372036854775808", 9223372036854775808ULL } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tu_run r =
			RUN("--config", cfg, "order", "add", "C-1", "--capacity", bad[i].arg, "--category", "Salsa");
		cr_assert_eq(r.status, 2, "%s: %s", bad[i].arg, r.err);
		char *expect = NULL, *line = first_line(r.err);
		cr_assert(asprintf(&expect,
				   "usbforge: --capacity: '%s' (%llu bytes) is not the size of a stick: it must be "
				   "between 1 MiB (1048576 bytes) and 8 EiB (9223372036854775807 bytes)",
				   bad[i].arg, bad[i].bytes) > 0);
		cr_assert_str_eq(line, expect);
		free(expect);
		free(line);
		tu_run_done(&r);
	}
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders"), 0);
	struct tu_run r = RUN("--config", cfg, "order", "add", "C-1", "--capacity", "1MiB", "--category", "Salsa");
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	r = RUN("--config", cfg, "order", "add", "C-2", "--capacity", "9223372036854775807", "--category", "Salsa");
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db,
			       "SELECT COUNT(*) FROM orders WHERE capacity_bytes IN (1048576, 9223372036854775807)"),
		     2);
}

/* BIGINT UNSIGNED sizes are shown as the unsigned numbers they are, in text and in JSON, even
 * one that only SQL can store (2^64 - 1). */
Test(cli_orders, sizes_are_shown_unsigned)
{
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO orders (order_number, capacity_bytes, quantity, content_spec)"
			     " VALUES ('U-1', 18446744073709551615, 1, '{\"categories\": [\"Salsa\"], \"items\": []}'),"
			     " ('U-2', 9223372036854775807, 1, '{\"categories\": [\"Salsa\"], \"items\": []}')",
			     DB_END),
		     0, "%s", db_error(db));
	struct tu_run r = RUN("--config", cfg, "order", "show", "U-1");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\ncapacity_bytes         18446744073709551615\n"), "%s", r.out);
	tu_run_done(&r);
	r = RUN("--config", cfg, "--json", "order", "show", "U-1");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\"capacity_bytes\": \"18446744073709551615\","), "%s", r.out);
	tu_run_done(&r);
	r = RUN("--config", cfg, "--json", "order", "show", "U-2");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\"capacity_bytes\": 9223372036854775807,"), "%s", r.out);
	tu_run_done(&r);
	/* the job copies it: job show too */
	r = RUN("--config", cfg, "order", "confirm", "U-1");
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE capacity_bytes = 18446744073709551615"),
		     1);
	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", tdb_count(db, "SELECT MAX(id) FROM processing_jobs"));
	r = RUN("--config", cfg, "job", "show", ids);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\ncapacity_bytes         18446744073709551615\n"), "%s", r.out);
	tu_run_done(&r);
}

/* FAT32 holds files of at most 4 GiB - 1 byte: an order that names a larger file explicitly,
 * or a category of which nothing else could be written, is refused at once with the reason; a
 * category with smaller files too is taken, with a warning naming the files left out. */
Test(cli_orders, files_of_4_gib_or_more_are_refused_at_order_add)
{
	long long big = add_item("Movies", "Movies/big.mkv", 5ULL << 30);
	long long edge = add_item("Edge", "Edge/max.bin", 4294967295ULL);
	add_item("Mixed", "Mixed/a.mp3", 1000);
	add_item("Mixed", "Mixed/huge.iso", 4294967296ULL);
	add_item("Mixed", "Mixed/b.mp3", 2000);
	char bigs[32], edges[32];
	snprintf(bigs, sizeof(bigs), "%lld", big);
	snprintf(edges, sizeof(edges), "%lld", edge);

	struct tu_run r = RUN("--config", cfg, "order", "add", "F-1", "--capacity", "64G", "--item", bigs);
	cr_assert_eq(r.status, 1, "%s", r.err);
	char *expect = NULL;
	cr_assert(asprintf(&expect,
			   "usbforge: ORDER_INVALID: content item %lld (Movies/big.mkv, 5368709120 bytes) could never "
			   "be written: it is 4 GiB or more, and FAT32 holds files of at most 4 GiB - 1 byte "
			   "(4294967295 bytes)\n",
			   big) > 0);
	cr_assert_str_eq(r.err, expect);
	free(expect);
	tu_run_done(&r);
	/* with other content beside it: still refused, the customer named it */
	r = RUN("--config", cfg, "order", "add", "F-1", "--capacity", "64G", "--category", "Mixed", "--item", bigs);
	cr_assert_eq(r.status, 1, "%s", r.err);
	tu_run_done(&r);

	r = RUN("--config", cfg, "order", "add", "F-2", "--capacity", "64G", "--category", "Movies");
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_str_eq(r.err, "usbforge: ORDER_INVALID: category 'Movies': nothing of it could ever be written: its "
				"1 file is 4 GiB or more, and FAT32 holds files of at most 4 GiB - 1 byte (4294967295 "
				"bytes)\n");
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders"), 0);

	r = RUN("--config", cfg, "order", "add", "F-3", "--capacity", "64G", "--category", "Mixed");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.err, "usbforge: warning: order 'F-3': category 'Mixed': 1 of its 3 files is 4 GiB or more "
				"and will be skipped (FAT32 holds files of at most 4 GiB - 1 byte (4294967295 bytes)): "
				"Mixed/huge.iso (4294967296 bytes)\n");
	tu_run_done(&r);
	/* 4 GiB - 1 byte fits */
	r = RUN("--config", cfg, "order", "add", "F-4", "--capacity", "64G", "--item", edges, "--category", "Edge");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.err, "");
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM orders"), 2);
}

/* An error message is never empty: a correlation id longer than its column is refused with the
 * limit named (it used to fail with "cannot confirm order 'X': " and nothing after), and one the
 * server refuses still shows the server's reason. */
Test(cli_orders, correlation_id_limit_and_reasons)
{
	add_item("Salsa", "Salsa/a.mp3", 1000);
	struct tu_run r = RUN("--config", cfg, "order", "add", "K-1", "--capacity", "1G", "--category", "Salsa");
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	char *long_id = malloc(10001);
	cr_assert(long_id);
	memset(long_id, 'a', 10000);
	long_id[10000] = 0;
	r = RUN("--config", cfg, "order", "confirm", "K-1", "--correlation-id", long_id);
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert_str_eq(r.err, "usbforge: --correlation-id: at most 128 characters (got 10000)\n"
				"usage: usbforge order confirm NUMBER [--correlation-id ID]\n");
	tu_run_done(&r);
	free(long_id);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 0);

	/* bytes the server refuses (not UTF-8): its reason is shown */
	r = RUN("--config", cfg, "order", "confirm", "K-1", "--correlation-id", "x\xff");
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_str_eq(r.err, "usbforge: cannot confirm order 'K-1': Incorrect string value: '\\\\xFF' for column "
				"`uf_t_cli_safe`.`processing_jobs`.`correlation_id` at row 1\n");
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs"), 0);

	/* 128 characters (256 bytes) is the limit */
	char id128[257] = "";
	for (int i = 0; i < 128; i++)
		memcpy(id128 + 2 * i, "é", 2); /* U+00E9 is two bytes; id128[256] stays the NUL */
	r = RUN("--config", cfg, "order", "confirm", "K-1", "--correlation-id", id128);
	cr_assert_eq(r.status, 0, "%s", r.err);
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs WHERE CHAR_LENGTH(correlation_id) = 128"), 1);
}
