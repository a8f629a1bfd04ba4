/* Tests for config/config.c: the defaults, good files (full, minimal, static mode, the shipped
 * sample) with every value checked, and bad files, each asserting the exact message — the file,
 * the line and the key — and the exact return code. Files live in a tu_tmpdir() directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "helpers/failalloc.h"
#include "helpers/testutil.h"
#include "util/macro.h"

static char *dir;
static char *conf; /* dir/usbforge.conf */

static void setup(void)
{
	dir = tu_tmpdir("config");
	conf = tu_path(dir, "usbforge.conf");
	unsetenv("USBFORGE_CONFIG");
}

static void teardown(void)
{
	tu_rmrf(dir);
	free(dir);
	free(conf);
	unsetenv("USBFORGE_CONFIG");
}

TestSuite(config, .init = setup, .fini = teardown);

static void write_text(const char *path, const char *text) { tu_write_file(path, text, strlen(text)); }

/* dir/name with mode, holding text. Returns the malloc'd path. */
static char *write_in_dir(const char *name, const char *text, mode_t mode)
{
	char *p = tu_path(dir, name);
	write_text(p, text);
	cr_assert_eq(chmod(p, mode), 0);
	return p;
}

static void load_ok(const char *text, struct uf_config *cfg)
{
	char *err = NULL;
	write_text(conf, text);
	int r = config_load(conf, cfg, &err);
	cr_assert_eq(r, 0, "config_load = %d: %s", r, err ? err : "(no message)");
	cr_assert_null(err);
	cr_assert_str_eq(cfg->path, conf);
}

/* CONF as it is must be refused with want_r and exactly "CONF" + want_tail as the message;
 * *cfg is left zeroed. */
static void expect_bad(int want_r, const char *want_tail)
{
	struct uf_config cfg;
	char *err = NULL, *want = NULL;

	memset(&cfg, 0x5a, sizeof(cfg));
	int r = config_load(conf, &cfg, &err);
	cr_assert_eq(r, want_r, "config_load = %d, want %d (%s)", r, want_r, err ? err : "(no message)");
	cr_assert(asprintf(&want, "%s%s", conf, want_tail) > 0);
	cr_assert_not_null(err);
	cr_assert_str_eq(err, want);
	cr_assert_null(cfg.path);
	cr_assert_null(cfg.station);
	cr_assert_null(cfg.usb.slots);
	config_done(&cfg);
	free(err);
	free(want);
}

static void load_bad(const char *text, int want_r, const char *want_tail)
{
	write_text(conf, text);
	expect_bad(want_r, want_tail);
}

static char *hostname(void)
{
	char h[HOST_NAME_MAX + 1];
	cr_assert_eq(gethostname(h, sizeof(h)), 0);
	h[sizeof(h) - 1] = '\0';
	return strdup(h);
}

static void assert_defaults_except_path(const struct uf_config *c)
{
	char *h = hostname();
	cr_assert_str_eq(c->station, h);
	free(h);
	cr_assert_str_eq(c->db.host, "127.0.0.1");
	cr_assert_eq(c->db.port, 3306);
	cr_assert_str_eq(c->db.socket, "");
	cr_assert_str_eq(c->db.user, "usbforge");
	cr_assert_null(c->db.password);
	cr_assert_str_eq(c->db.name, "usbforge");
	cr_assert_eq(c->worker.poll_interval, 5.0);
	cr_assert_eq(c->worker.max_concurrent, 3);
	cr_assert_eq(c->worker.heartbeat_interval, 5.0);
	cr_assert_eq(c->worker.capacity_tolerance, 0.10);
	cr_assert_eq(c->retry.n_delays, 3);
	cr_assert_eq(c->retry.delays[0], 5.0);
	cr_assert_eq(c->retry.delays[1], 15.0);
	cr_assert_eq(c->retry.delays[2], 60.0);
	cr_assert_eq(c->stuck.processing_timeout, 300.0);
	cr_assert_eq(c->stuck.queued_timeout, 900.0);
	cr_assert_eq(c->stuck.check_interval, 60.0);
	cr_assert_str_eq(c->content.root, "/var/lib/usbforge/content");
	cr_assert_eq(c->usb.mode, USB_MODE_UDEV);
	cr_assert_eq(c->usb.n_slots, 0);
	cr_assert_null(c->usb.slots);
	cr_assert_eq(c->write.buffer_size, 2097152);
	cr_assert_eq(c->write.queue_depth, 4);
	cr_assert_eq(c->write.verify, true);
	cr_assert_eq(c->write.reset_before_verify, true);
	cr_assert_eq(c->write.stall_timeout, 180.0);
	cr_assert_eq(c->write.probe, true);
	cr_assert_eq(c->write.max_rate, 0);
}

/* ---- defaults and good files ---------------------------------------------------------------- */

Test(config, defaults)
{
	struct uf_config c;
	cr_assert_eq(config_init_defaults(&c), 0);
	cr_assert_null(c.path);
	assert_defaults_except_path(&c);
	config_done(&c);
	cr_assert_null(c.station);
	config_done(&c); /* twice is harmless */
	config_done(NULL);
	cr_assert_str_eq(usb_mode_to_string(USB_MODE_UDEV), "udev");
	cr_assert_str_eq(usb_mode_to_string(USB_MODE_STATIC), "static");
	cr_assert_null(usb_mode_to_string(_USB_MODE_MAX));
}

/* Each allocation of the defaults failed once: -ENOMEM with nothing to release, else every
 * default (the station, the four database strings, the content root, the retry delays). */
Test(config, defaults_out_of_memory)
{
	unsigned failed = 0;
	FAILALLOC_LOOP(k)
	{
		struct uf_config c;
		int r = config_init_defaults(&c);
		failalloc_disarm();
		if (r == 0) {
			assert_defaults_except_path(&c);
			config_done(&c);
		} else {
			cr_assert_eq(r, -ENOMEM, "allocation %u: %d", k, r);
			cr_assert(!c.station && !c.db.host && !c.content.root && !c.retry.delays);
			failed++;
		}
	}
	cr_assert_eq(failed, 13);
}

/* Each allocation of a load failed once: -ENOMEM and "FILE: out of memory" (when even that
 * could be said), else the file's values exactly. */
Test(config, load_out_of_memory)
{
	char *pwf = write_in_dir("db.password", "s3cret\n", 0600);
	char *text = NULL;
	cr_assert(asprintf(&text,
			   "station = \"kiosk-1\";\n"
			   "database = { host = \"db.example\"; password_file = \"%s\";\n"
			   "  admin = { user = \"adm\"; password_file = \"db.password\"; }; };\n"
			   "retry = { delays = [1.5, 30.0]; };\n"
			   "content = { root = \"content\"; };\n"
			   "usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"/dev/sdx\"; } ); };\n",
			   pwf) > 0);
	write_text(conf, text);
	char *root = tu_path(dir, "content");
	unsigned failed = 0;
	FAILALLOC_LOOP(k)
	{
		struct uf_config c;
		char *err = NULL;
		int r = config_load(conf, &c, &err);
		failalloc_disarm();
		if (r == 0) {
			cr_assert_null(err);
			cr_assert_str_eq(c.station, "kiosk-1");
			cr_assert_str_eq(c.db.host, "db.example");
			cr_assert_str_eq(c.db.password, "s3cret");
			cr_assert_str_eq(c.db.admin.user, "adm");
			cr_assert_str_eq(c.db.admin.password_file, pwf);
			cr_assert_str_eq(c.content.root, root);
			cr_assert(c.retry.n_delays == 2 && c.retry.delays[1] == 30.0);
			cr_assert(c.usb.n_slots == 1 && strcmp(c.usb.slots[0].path, "/dev/sdx") == 0);
			config_done(&c);
		} else {
			cr_assert_eq(r, -ENOMEM, "allocation %u: %d (%s)", k, r, err ? err : "");
			if (err) {
				cr_assert(strstr(err, "out of memory"), "allocation %u: %s", k, err);
				free(err);
			}
			failed++;
		}
	}
	cr_assert_geq(failed, 15, "%u allocations", failed);
	free(root);
	free(text);
	free(pwf);
}

Test(config, empty_file_is_all_defaults)
{
	struct uf_config c;
	load_ok("", &c);
	assert_defaults_except_path(&c);
	config_done(&c);
}

Test(config, minimal_file)
{
	struct uf_config c;
	load_ok("# only the station\nstation = \"kiosk-7\";\n", &c);
	cr_assert_str_eq(c.station, "kiosk-7");
	free(c.station);
	c.station = hostname();
	assert_defaults_except_path(&c);
	config_done(&c);
}

Test(config, full_file_every_value)
{
	struct uf_config c;
	char *pwf = write_in_dir("db.password", "s3cret\nsecond line ignored\n", 0600);
	char *text = NULL;
	cr_assert(asprintf(&text,
			   "station = \"kiosk-1\";\n"
			   "database = { host = \"db.example\"; port = 3307; socket = \"/run/mysqld/mysqld.sock\";\n"
			   "             user = \"forge\"; password_file = \"%s\"; name = \"forge_db\"; };\n"
			   "worker = { poll_interval = 2.5; max_concurrent = 8; heartbeat_interval = 2;\n"
			   "           capacity_tolerance = 0.05; };\n"
			   "retry = { delays = [1.5, 30.0, 120.0, 600.0]; };\n"
			   "stuck = { processing_timeout = \"120s\"; queued_timeout = 3600; check_interval = 0.5; };\n"
			   "content = { root = \"/srv/content\"; };\n"
			   "usb = { mode = \"udev\";\n"
			   "        slots = ( { name = \"A\"; port = \"2-1.1\"; }, { name = \"B\"; port = \"2-1.2\"; "
			   "},\n"
			   "                  { name = \"hub-3\"; port = \"3-2.4.1\"; } ); };\n"
			   "write = { buffer_size = \"8MiB\"; queue_depth = 16; verify = false; reset_before_verify = "
			   "false;\n"
			   "          stall_timeout = 45.5; probe = false; max_rate = \"32MiB\";\n"
			   "          verify_full = true; sync_interval = \"64M\"; };\n",
			   pwf) > 0);
	load_ok(text, &c);
	cr_assert_str_eq(c.station, "kiosk-1");
	cr_assert_str_eq(c.db.host, "db.example");
	cr_assert_eq(c.db.port, 3307);
	cr_assert_str_eq(c.db.socket, "/run/mysqld/mysqld.sock");
	cr_assert_str_eq(c.db.user, "forge");
	cr_assert_str_eq(c.db.password, "s3cret");
	cr_assert_str_eq(c.db.name, "forge_db");
	cr_assert_eq(c.worker.poll_interval, 2.5);
	cr_assert_eq(c.worker.max_concurrent, 8);
	cr_assert_eq(c.worker.heartbeat_interval, 2.0);
	cr_assert_eq(c.worker.capacity_tolerance, 0.05);
	cr_assert_eq(c.retry.n_delays, 4);
	cr_assert_eq(c.retry.delays[0], 1.5);
	cr_assert_eq(c.retry.delays[1], 30.0);
	cr_assert_eq(c.retry.delays[2], 120.0);
	cr_assert_eq(c.retry.delays[3], 600.0);
	cr_assert_eq(c.stuck.processing_timeout, 120.0);
	cr_assert_eq(c.stuck.queued_timeout, 3600.0);
	cr_assert_eq(c.stuck.check_interval, 0.5);
	cr_assert_str_eq(c.content.root, "/srv/content");
	cr_assert_eq(c.usb.mode, USB_MODE_UDEV);
	cr_assert_eq(c.usb.n_slots, 3);
	cr_assert_str_eq(c.usb.slots[0].name, "A");
	cr_assert_str_eq(c.usb.slots[0].port, "2-1.1");
	cr_assert_null(c.usb.slots[0].path);
	cr_assert_str_eq(c.usb.slots[1].name, "B");
	cr_assert_str_eq(c.usb.slots[1].port, "2-1.2");
	cr_assert_null(c.usb.slots[1].path);
	cr_assert_str_eq(c.usb.slots[2].name, "hub-3");
	cr_assert_str_eq(c.usb.slots[2].port, "3-2.4.1");
	cr_assert_eq(c.write.buffer_size, 8388608);
	cr_assert_eq(c.write.queue_depth, 16);
	cr_assert_eq(c.write.verify, false);
	cr_assert_eq(c.write.reset_before_verify, false);
	cr_assert_eq(c.write.stall_timeout, 45.5);
	cr_assert_eq(c.write.probe, false);
	cr_assert_eq(c.write.max_rate, 33554432);
	cr_assert_eq(c.write.verify_full, true);
	cr_assert_eq(c.write.sync_interval, 64000000, "64M is decimal, and a multiple of 4 KiB");
	config_done(&c);
	free(text);
	free(pwf);
}

Test(config, static_mode_and_relative_paths)
{
	struct uf_config c;
	char *img = NULL, *root = NULL;
	/* Relative paths are taken relative to the file's directory, not the working directory. */
	free(write_in_dir("pw", "letmein\r\n", 0400));
	load_ok("usb = { mode = \"static\";\n"
		"        slots = ( { name = \"A\"; path = \"a.img\"; },\n"
		"                  { path = \"/dev/loop7\"; name = \"B\"; } ); };\n"
		"content = { root = \"content\"; };\n"
		"database = { password_file = \"pw\"; };\n"
		"write = { buffer_size = 65536; };\n"
		"retry = { delays = (); };\n",
		&c);
	/* tu_tmpdir may sit under a symlinked TMPDIR: compare with the resolved directory */
	char *real = realpath(dir, NULL);
	cr_assert_not_null(real);
	cr_assert(asprintf(&img, "%s/a.img", real) > 0);
	cr_assert(asprintf(&root, "%s/content", real) > 0);
	cr_assert_eq(c.usb.mode, USB_MODE_STATIC);
	cr_assert_eq(c.usb.n_slots, 2);
	cr_assert_str_eq(c.usb.slots[0].name, "A");
	cr_assert_str_eq(c.usb.slots[0].path, img);
	cr_assert_null(c.usb.slots[0].port);
	cr_assert_str_eq(c.usb.slots[1].name, "B");
	cr_assert_str_eq(c.usb.slots[1].path, "/dev/loop7");
	cr_assert_null(c.usb.slots[1].port);
	cr_assert_str_eq(c.content.root, root);
	cr_assert_str_eq(c.db.password, "letmein");
	cr_assert_eq(c.write.buffer_size, 65536);
	cr_assert_eq(c.retry.n_delays, 0);
	config_done(&c);
	free(img);
	free(root);
	free(real);
}

Test(config, sizes_and_durations_in_all_forms)
{
	struct uf_config c;
	load_ok("write = { buffer_size = \"256MiB\"; stall_timeout = \"2\"; };\n"
		"worker = { capacity_tolerance = 0; poll_interval = 1; };\n"
		"retry = { delays = (0, 2.5, 86400); };\n",
		&c);
	cr_assert_eq(c.write.buffer_size, 268435456);
	cr_assert_eq(c.write.stall_timeout, 2.0);
	cr_assert_eq(c.worker.capacity_tolerance, 0.0);
	cr_assert_eq(c.worker.poll_interval, 1.0);
	cr_assert_eq(c.retry.n_delays, 3);
	cr_assert_eq(c.retry.delays[0], 0.0);
	cr_assert_eq(c.retry.delays[1], 2.5);
	cr_assert_eq(c.retry.delays[2], 86400.0);
	config_done(&c);
	load_ok("write = { max_rate = 0; };\n", &c);
	cr_assert_eq(c.write.max_rate, 0);
	config_done(&c);
	load_ok("write = { max_rate = \"1.5G\"; };\n", &c);
	cr_assert_eq(c.write.max_rate, 1500000000);
	config_done(&c);
}

Test(config, shipped_sample_loads)
{
	struct uf_config c;
	char *err = NULL, *sample = NULL;
	cr_assert(asprintf(&sample, "%s/config/usbforge.conf.sample", tu_source_dir()) > 0);
	int r = config_load(sample, &c, &err);
	cr_assert_eq(r, 0, "%s", err ? err : "");
	cr_assert_eq(c.usb.n_slots, 2);
	cr_assert_str_eq(c.usb.slots[0].name, "A");
	cr_assert_str_eq(c.usb.slots[0].port, "2-1.1");
	cr_assert_str_eq(c.usb.slots[1].name, "B");
	cr_assert_str_eq(c.usb.slots[1].port, "2-1.2");
	/* everything else in the sample is the default */
	for (size_t i = 0; i < c.usb.n_slots; i++) {
		free(c.usb.slots[i].name);
		free(c.usb.slots[i].port);
	}
	free(c.usb.slots);
	c.usb.slots = NULL;
	c.usb.n_slots = 0;
	assert_defaults_except_path(&c);
	config_done(&c);
	free(sample);
}

/* ---- bad files: each names the file, the line and the key ------------------------------------ */

Test(config, syntax_error)
{
	load_bad("station = \"a\";\nworker = {\n  max_concurrent = ;\n};\n", -EINVAL, ":3: syntax error");
	load_bad("station = \"unterminated;\n", -EINVAL, ":2: syntax error");
	load_bad("worker = { max_concurrent = 3; };\n\nworker = { poll_interval = 1; };\n", -EINVAL,
		 ":3: duplicate setting name 'worker'");
	load_bad("@include \"other.conf\"\n", -EINVAL,
		 ":1: @include is not supported: keep the whole configuration in one file");
}

Test(config, wrong_types)
{
	load_bad("worker = {\n  max_concurrent = \"3\";\n};\n", -EINVAL,
		 ":2: key 'worker.max_concurrent': must be an integer between 1 and 64 (got \"3\")");
	load_bad("worker = { max_concurrent = 3.0; };\n", -EINVAL,
		 ":1: key 'worker.max_concurrent': must be an integer between 1 and 64 (got 3)");
	load_bad("\nstation = 5;\n", -EINVAL, ":2: key 'station': must be a string (got 5)");
	load_bad("worker = 5;\n", -EINVAL, ":1: key 'worker': must be a group { … } (got 5)");
	load_bad("write = { verify = 1; };\n", -EINVAL, ":1: key 'write.verify': must be true or false (got 1)");
	load_bad("write = {\n verify = true;\n probe = \"yes\"; };\n", -EINVAL,
		 ":3: key 'write.probe': must be true or false (got \"yes\")");
	load_bad("worker = { capacity_tolerance = \"10%\"; };\n", -EINVAL,
		 ":1: key 'worker.capacity_tolerance': must be a number between 0 and 0.5 (got \"10%\")");
	load_bad("retry = { delays = 5; };\n", -EINVAL,
		 ":1: key 'retry.delays': must be an array of 0 to 16 numbers of seconds, e.g. [5, 15, 60] "
		 "(got 5)");
	load_bad("retry = { delays = (5,\n \"x\"); };\n", -EINVAL,
		 ":2: key 'retry.delays[1]': must be a number of seconds between 0 and 86400 (got \"x\")");
	load_bad("usb = { slots = { name = \"A\"; }; };\n", -EINVAL,
		 ":1: key 'usb.slots': must be a list of groups ( { name = …; … }, … ) (got a group { … })");
	load_bad("database = { port = \"3306\"; };\n", -EINVAL,
		 ":1: key 'database.port': must be an integer between 1 and 65535 (got \"3306\")");
}

Test(config, out_of_range)
{
	load_bad("station = \"k\";\nworker = {\n  poll_interval = 5;\n  max_concurrent = 0;\n};\n", -EINVAL,
		 ":4: key 'worker.max_concurrent': must be an integer between 1 and 64 (got 0)");
	load_bad("worker = { max_concurrent = 65; };\n", -EINVAL,
		 ":1: key 'worker.max_concurrent': must be an integer between 1 and 64 (got 65)");
	load_bad("worker = { max_concurrent = -1; };\n", -EINVAL,
		 ":1: key 'worker.max_concurrent': must be an integer between 1 and 64 (got -1)");
	/* libconfig 1.5 would read this as 3 (wrapped to 32 bits) */
	load_bad("\nworker = { max_concurrent = 4294967299; };\n", -EINVAL,
		 ":2: key 'worker.max_concurrent': integer 4294967299 is out of range (libconfig reads whole "
		 "numbers as 32 bits)");
	load_bad("database = { port = 0; };\n", -EINVAL,
		 ":1: key 'database.port': must be an integer between 1 and 65535 (got 0)");
	load_bad("database = { port = 65536; };\n", -EINVAL,
		 ":1: key 'database.port': must be an integer between 1 and 65535 (got 65536)");
	load_bad("worker = { poll_interval = 0; };\n", -EINVAL,
		 ":1: key 'worker.poll_interval': must be a number of seconds between 0.05 and 3600 (got 0)");
	load_bad("worker = { heartbeat_interval = -0.5; };\n", -EINVAL,
		 ":1: key 'worker.heartbeat_interval': must be a number of seconds between 0.05 and 3600 "
		 "(got -0.5)");
	load_bad("worker = { capacity_tolerance = 0.75; };\n", -EINVAL,
		 ":1: key 'worker.capacity_tolerance': must be a number between 0 and 0.5 (got 0.75)");
	load_bad("stuck = { queued_timeout = \"15 min\"; };\n", -EINVAL,
		 ":1: key 'stuck.queued_timeout': must be a number of seconds greater than 0 and at most 2592000 "
		 "(got \"15 min\")");
	load_bad("write = { stall_timeout = 1e400; };\n", -EINVAL,
		 ":1: key 'write.stall_timeout': must be a number of seconds greater than 0 and at most "
		 "86400 (got inf)");
	load_bad("write = {\n  sync_interval = \"512KiB\";\n};\n", -EINVAL,
		 ":2: key 'write.sync_interval': must be a multiple of 4 KiB between 1 MiB and 64 GiB (got \"512KiB\")");
	load_bad("write = { verify_full = \"yes\"; };\n", -EINVAL,
		 ":1: key 'write.verify_full': must be true or false (got \"yes\")");
	load_bad("write = { queue_depth = 0; };\n", -EINVAL,
		 ":1: key 'write.queue_depth': must be an integer between 1 and 64 (got 0)");
	load_bad("retry = { delays = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]; };\n", -EINVAL,
		 ":1: key 'retry.delays': must hold at most 16 delays (got 17)");
	load_bad("retry = { delays = [5, -1]; };\n", -EINVAL,
		 ":1: key 'retry.delays[1]': must be a number of seconds between 0 and 86400 (got -1)");
	load_bad("station = \"\";\n", -EINVAL, ":1: key 'station': must not be empty");
	load_bad("station = \"kiosk 1\";\n", -EINVAL,
		 ":1: key 'station': may contain only letters, digits, '.', '_', ':' and '-' (got \"kiosk 1\")");
	load_bad("worker = { heartbeat_interval = 200; };\n", -EINVAL,
		 ":1: key 'worker.heartbeat_interval': must be at most half of stuck.processing_timeout (300 "
		 "s), or "
		 "live jobs would be taken for stuck (got 200)");
	load_bad("worker = { heartbeat_interval = 10; };\nstuck = { processing_timeout = 15; };\n", -EINVAL,
		 ":2: key 'stuck.processing_timeout': must be at least twice worker.heartbeat_interval (10 s), or "
		 "live jobs would be taken for stuck (got 15)");
}

/* The daemon queries the database every poll_interval, beats every heartbeat_interval and checks
 * for stuck jobs every check_interval: a near-zero value (1e-9 made 35,691 queries in 5 s) is
 * refused, with the same words whether it is written as a number or as a string. */
Test(config, periods_have_a_lower_bound)
{
	static const char *const keys[][2] = { { "worker", "poll_interval" },
					       { "worker", "heartbeat_interval" },
					       { "stuck", "check_interval" } };
	static const struct {
		const char *text, *got;
	} bad[] = {
		{ "1e-9", "1e-09" },  { "\"1e-9\"", "\"1e-9\"" },     { "0.01", "0.01" }, { "\"0.01\"", "\"0.01\"" },
		{ "0.049", "0.049" }, { "\"0.049s\"", "\"0.049s\"" }, { "0", "0" },	  { "\"0\"", "\"0\"" },
	};
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char *text = NULL, *tail = NULL;
			cr_assert(asprintf(&text, "%s = { %s = %s; };\n", keys[k][0], keys[k][1], bad[i].text) > 0);
			cr_assert(asprintf(&tail,
					   ":1: key '%s.%s': must be a number of seconds between 0.05 and 3600 "
					   "(got %s)",
					   keys[k][0], keys[k][1], bad[i].got) > 0);
			load_bad(text, -EINVAL, tail);
			free(text);
			free(tail);
		}
	struct uf_config c;
	char *err = NULL;
	write_text(conf, "worker = { poll_interval = 0.05; heartbeat_interval = \"0.05s\"; };\n"
			 "stuck = { check_interval = 0.05; };\n");
	cr_assert_eq(config_load(conf, &c, &err), 0, "%s", err ? err : "");
	cr_assert_eq(c.worker.poll_interval, 0.05);
	cr_assert_eq(c.worker.heartbeat_interval, 0.05);
	cr_assert_eq(c.stuck.check_interval, 0.05);
	config_done(&c);
}

/* Found by fuzz_config (fuzz/regress/config): a string value was echoed raw in "(got …)", so a
 * newline broke the one-line message and an escape sequence reached the terminal. */
Test(config, messages_escape_control_characters)
{
	load_bad("station = \"kiosk\\n1\\x1b]0;pwned\\x07\";\n", -EINVAL,
		 ":1: key 'station': may contain only letters, digits, '.', '_', ':' and '-' (got "
		 "\"kiosk\\n1\\x1b]0;pwned\\x07\")");
	load_bad("station = \"a\xc2\x9b"
		 "2J\\t\\\"q\\\\\";\n",
		 -EINVAL,
		 ":1: key 'station': may contain only letters, digits, '.', '_', ':' and '-' (got "
		 "\"a\\x9b"
		 "2J\\t\\\"q\\\\\")");
	load_bad("usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"/x\\n\"; },\n"
		 "  { name = \"B\"; path = \"/x\\n\"; } ); };\n",
		 -EINVAL, ":2: key 'usb.slots[1].path': device \"/x\\n\" is already used by usb.slots[0] (line 1)");
}

Test(config, unknown_keys)
{
	load_bad("worker = {\n  max_concurent = 3;\n};\n", -EINVAL,
		 ":2: key 'worker.max_concurent': unknown key (known keys in worker: poll_interval, "
		 "max_concurrent, "
		 "heartbeat_interval, capacity_tolerance)");
	load_bad("station = \"a\";\nstaton = \"b\";\n", -EINVAL,
		 ":2: key 'staton': unknown key (known keys: station, database, worker, retry, stuck, "
		 "content, usb, "
		 "write, http, events, retention)");
	load_bad("usb = { mode = \"udev\"; slots = ( { name = \"A\";\n port = \"1-1\";\n prot = \"1-2\"; } "
		 "); };\n",
		 -EINVAL, ":3: key 'usb.slots[0].prot': unknown key (known keys in a slot: name, port, path)");
}

Test(config, bad_sizes)
{
	load_bad("write = {\n  buffer_size = \"12X\";\n};\n", -EINVAL,
		 ":2: key 'write.buffer_size': must be a size such as \"4MiB\", \"1M\" or a number of bytes "
		 "(got \"12X\")");
	load_bad("write = { buffer_size = \"4 MiB\"; };\n", -EINVAL,
		 ":1: key 'write.buffer_size': must be a size such as \"4MiB\", \"1M\" or a number of bytes "
		 "(got \"4 MiB\")");
	load_bad("write = { buffer_size = \"\"; };\n", -EINVAL,
		 ":1: key 'write.buffer_size': must be a size such as \"4MiB\", \"1M\" or a number of bytes "
		 "(got \"\")");
	load_bad("write = { buffer_size = \"99999999999999999999\"; };\n", -EINVAL,
		 ":1: key 'write.buffer_size': is too large (got \"99999999999999999999\")");
	load_bad("write = { buffer_size = 1.5; };\n", -EINVAL,
		 ":1: key 'write.buffer_size': must be a size such as \"4MiB\", \"1M\" or a number of bytes "
		 "(got 1.5)");
	load_bad("write = { buffer_size = \"1M\"; };\n", -EINVAL,
		 ":1: key 'write.buffer_size': must be a multiple of 4 KiB between 64 KiB and 256 MiB (got "
		 "\"1M\")");
	load_bad("write = { buffer_size = \"32KiB\"; };\n", -EINVAL,
		 ":1: key 'write.buffer_size': must be a multiple of 4 KiB between 64 KiB and 256 MiB (got "
		 "\"32KiB\")");
	load_bad("write = { buffer_size = \"512MiB\"; };\n", -EINVAL,
		 ":1: key 'write.buffer_size': must be a multiple of 4 KiB between 64 KiB and 256 MiB (got "
		 "\"512MiB\")");
	load_bad("write = {\n  max_rate = \"fast\"; };\n", -EINVAL,
		 ":2: key 'write.max_rate': must be a size such as \"4MiB\", \"1M\" or a number of bytes (got \"fast\")");
	load_bad("write = { max_rate = -1; };\n", -EINVAL,
		 ":1: key 'write.max_rate': must be a size such as \"4MiB\", \"1M\" or a number of bytes (got -1)");
	load_bad("write = { buffer_size = 100000; };\n", -EINVAL,
		 ":1: key 'write.buffer_size': must be a multiple of 4 KiB between 64 KiB and 256 MiB (got "
		 "100000)");
}

Test(config, usb_mode_and_slots)
{
	load_bad("usb = {\n  mode = \"hotplug\";\n};\n", -EINVAL,
		 ":2: key 'usb.mode': must be \"udev\" or \"static\" (got \"hotplug\")");
	load_bad("usb = { mode = \"static\";\n  slots = ( { name = \"A\"; path = \"/tmp/a.img\"; },\n"
		 "            { name = \"B\"; } ); };\n",
		 -EINVAL, ":3: key 'usb.slots[1]': has no 'path': in static mode every slot needs a name and a path");
	load_bad("usb = { slots = ( { name = \"A\";\n port = \"2-1\"; },\n { name = \"a\"; port = \"2-2\"; } "
		 ");\n };\n",
		 -EINVAL, ":3: key 'usb.slots[1].name': slot name \"a\" is already used by usb.slots[0] (line 1)");
	load_bad("usb = { slots = ( { name = \"A\"; port = \"2-1\"; },\n { name = \"B\";\n port = \"2-1\"; } "
		 "); };\n",
		 -EINVAL, ":3: key 'usb.slots[1].port': port \"2-1\" is already used by usb.slots[0] (line 1)");
	load_bad("usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"/srv/x.img\"; },\n"
		 " { name = \"B\"; path = \"/srv/x.img\"; } ); };\n",
		 -EINVAL,
		 ":2: key 'usb.slots[1].path': device \"/srv/x.img\" is already used by usb.slots[0] (line 1)");
	load_bad("usb = { slots = ( { port = \"2-1\"; } ); };\n", -EINVAL, ":1: key 'usb.slots[0]': has no 'name'");
	load_bad("usb = { slots = ( { name = \"A\"; } ); };\n", -EINVAL,
		 ":1: key 'usb.slots[0]': has no 'port': in udev mode every slot needs a name and a port");
	load_bad("usb = { slots = ( { name = \"A\"; port = \"2.1\"; } ); };\n", -EINVAL,
		 ":1: key 'usb.slots[0].port': must be a USB port path such as \"2-1.1\" (got \"2.1\")");
	load_bad("usb = { slots = ( { name = \"A\"; port = \"2-1\"; path = \"/dev/loop0\"; } ); };\n", -EINVAL,
		 ":1: key 'usb.slots[0].path': is only used in static mode (usb.mode = \"static\"); a udev "
		 "slot is "
		 "matched by 'port'");
	load_bad("usb = { slots = ( { name = \"A\"; path = \"/dev/loop0\"; port = \"2-1\"; } );\n mode = "
		 "\"static\"; };\n",
		 -EINVAL,
		 ":1: key 'usb.slots[0].port': is only used in udev mode; a static slot names its device "
		 "with 'path'");
	load_bad("usb = {\n mode = \"static\"; };\n", -EINVAL,
		 ":2: key 'usb.slots': static mode needs at least one slot: slots = ( { name = \"A\"; path = "
		 "\"…\"; } )");
	load_bad("usb = { mode = \"static\";\n slots = (); };\n", -EINVAL,
		 ":2: key 'usb.slots': static mode needs at least one slot: slots = ( { name = \"A\"; path = "
		 "\"…\"; } )");
	load_bad("usb = { slots = ( 5 ); };\n", -EINVAL,
		 ":1: key 'usb.slots[0]': must be a group such as { name = \"A\"; port = \"2-1.1\"; } (got 5)");
}

Test(config, duplicate_path_through_a_symlink)
{
	char *img = write_in_dir("a.img", "x", 0644);
	char *link = tu_path(dir, "b.img");
	char *text = NULL, *tail = NULL;
	cr_assert_eq(symlink(img, link), 0);
	cr_assert(asprintf(&text,
			   "usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"%s\"; },\n"
			   "{ name = \"B\"; path = \"b.img\"; } ); };\n",
			   img) > 0);
	/* the message shows the path as written in the file */
	cr_assert(asprintf(&tail,
			   ":2: key 'usb.slots[1].path': device \"b.img\" is already used by usb.slots[0] (line 1)") >
		  0);
	load_bad(text, -EINVAL, tail);
	free(text);
	free(tail);
	free(img);
	free(link);
}

Test(config, password_and_password_file_together)
{
	char *pwf = write_in_dir("pw", "x\n", 0600);
	char *text = NULL;
	cr_assert(asprintf(&text, "database = {\n  password = \"a\";\n  password_file = \"%s\";\n};\n", pwf) > 0);
	load_bad(text, -EINVAL,
		 ":3: key 'database.password_file': cannot be used together with 'database.password' (line "
		 "2): set only one");
	free(text);
	free(pwf);
}

/* A password_file follows the rule of a config file holding an inline password: others may
 * neither read nor write it, its group may read it (operators in the usbforge group). */
Test(config, password_file_readable_by_others)
{
	char *pwf = write_in_dir("pw", "secret\n", 0644);
	char *text = NULL, *tail = NULL;
	cr_assert(asprintf(&text, "\ndatabase = { password_file = \"%s\"; };\n", pwf) > 0);
	static const mode_t refused[] = { 0644, 0604, 0602, 0620, 0660 };
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		cr_assert_eq(chmod(pwf, refused[i]), 0);
		cr_assert(asprintf(&tail,
				   ":2: key 'database.password_file': '%s' has mode %04o: a file holding a database "
				   "password must not be readable or writable by others nor writable by its group "
				   "(chmod g-w,o-rwx '%s'; the usbforge group may read it)",
				   pwf, (unsigned)refused[i], pwf) > 0);
		load_bad(text, -EINVAL, tail);
		free(tail);
	}
	/* group-readable is what operators need */
	static const mode_t accepted[] = { 0640, 0600, 0400 };
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		struct uf_config c;
		cr_assert_eq(chmod(pwf, accepted[i]), 0);
		load_ok(text, &c);
		cr_assert_str_eq(c.db.password, "secret");
		config_done(&c);
	}
	free(text);
	free(pwf);
}

Test(config, password_file_missing_empty_or_not_a_file)
{
	char *text = NULL, *tail = NULL, *missing = tu_path(dir, "nope");
	cr_assert(asprintf(&text, "database = { password_file = \"%s\"; };\n", missing) > 0);
	cr_assert(asprintf(&tail, ":1: key 'database.password_file': cannot read '%s': No such file or directory",
			   missing) > 0);
	load_bad(text, -EINVAL, tail);
	free(text);
	free(tail);

	char *empty = write_in_dir("empty", "", 0600);
	cr_assert(asprintf(&text, "database = { password_file = \"%s\"; };\n", empty) > 0);
	cr_assert(asprintf(&tail,
			   ":1: key 'database.password_file': '%s' is empty: its first line must be the password",
			   empty) > 0);
	load_bad(text, -EINVAL, tail);
	free(text);
	free(tail);

	cr_assert(asprintf(&text, "database = { password_file = \"%s\"; };\n", dir) > 0);
	cr_assert(asprintf(&tail, ":1: key 'database.password_file': '%s' is a directory, not a regular file", dir) >
		  0);
	load_bad(text, -EINVAL, tail);
	free(text);
	free(tail);
	free(empty);
	free(missing);
}

Test(config, integer_overflow_inside_a_list)
{
	load_bad("retry = { delays = (5,\n 3000000000); };\n", -EINVAL,
		 ":2: key 'retry.delays[1]': integer 3000000000 is out of range (libconfig reads whole "
		 "numbers as 32 bits)");
	/* 64-bit literals with L are fine where the range allows */
	struct uf_config c;
	load_ok("write = { buffer_size = 131072L; };\n", &c);
	cr_assert_eq(c.write.buffer_size, 131072);
	config_done(&c);
}

/* ---- which file ------------------------------------------------------------------------------ */

Test(config, default_path_order)
{
	cr_assert_str_eq(config_default_path(NULL), "/etc/usbforge/usbforge.conf");
	cr_assert_str_eq(config_default_path(""), "/etc/usbforge/usbforge.conf");
	cr_assert_str_eq(config_default_path("/x.conf"), "/x.conf");
	setenv("USBFORGE_CONFIG", "/env.conf", 1);
	cr_assert_str_eq(config_default_path(NULL), "/env.conf");
	cr_assert_str_eq(config_default_path("/x.conf"), "/x.conf");
	setenv("USBFORGE_CONFIG", "", 1);
	cr_assert_str_eq(config_default_path(NULL), "/etc/usbforge/usbforge.conf");
}

Test(config, missing_explicit_file)
{
	struct uf_config c;
	char *err = NULL, *want = NULL, *missing = tu_path(dir, "missing.conf");

	memset(&c, 0x5a, sizeof(c));
	cr_assert_eq(config_load_default(missing, &c, &err), -ENOENT);
	cr_assert(asprintf(&want, "%s: cannot read the configuration: No such file or directory", missing) > 0);
	cr_assert_str_eq(err, want);
	cr_assert_null(c.station);
	free(err);
	err = NULL;

	/* named through the environment: an error too */
	setenv("USBFORGE_CONFIG", missing, 1);
	cr_assert_eq(config_load_default(NULL, &c, &err), -ENOENT);
	cr_assert_str_eq(err, want);
	free(err);
	free(want);
	free(missing);
}

Test(config, missing_default_file_means_defaults)
{
	struct uf_config c;
	char *err = NULL;

	if (access(CONFIG_DEFAULT_PATH, F_OK) == 0)
		cr_skip_test("%s exists on this machine", CONFIG_DEFAULT_PATH);
	memset(&c, 0x5a, sizeof(c));
	cr_assert_eq(config_load_default(NULL, &c, &err), 0);
	cr_assert_null(err);
	cr_assert_null(c.path);
	assert_defaults_except_path(&c);
	config_done(&c);
}

Test(config, load_default_reads_env_file)
{
	struct uf_config c;
	char *err = NULL;
	write_text(conf, "worker = { max_concurrent = 7; };\n");
	setenv("USBFORGE_CONFIG", conf, 1);
	cr_assert_eq(config_load_default(NULL, &c, &err), 0, "%s", err ? err : "");
	cr_assert_str_eq(c.path, conf);
	cr_assert_eq(c.worker.max_concurrent, 7);
	config_done(&c);
	/* the argument wins over the environment */
	char *other = write_in_dir("other.conf", "worker = { max_concurrent = 9; };\n", 0644);
	cr_assert_eq(config_load_default(other, &c, &err), 0, "%s", err ? err : "");
	cr_assert_str_eq(c.path, other);
	cr_assert_eq(c.worker.max_concurrent, 9);
	config_done(&c);
	free(other);
}

Test(config, unreadable_config_file_and_directory)
{
	struct uf_config c;
	char *err = NULL, *want = NULL;

	cr_assert_eq(config_load(dir, &c, &err), -EISDIR);
	cr_assert(asprintf(&want, "%s: is a directory, not a regular file", dir) > 0);
	cr_assert_str_eq(err, want);
	free(err);
	free(want);
	/* a NULL ret_error is allowed */
	cr_assert_eq(config_load(dir, &c, NULL), -EISDIR);
	/* a binary file */
	tu_write_file(conf, "a = 1;\0\0", 8);
	cr_assert_eq(config_load(conf, &c, &err), -EINVAL);
	cr_assert(asprintf(&want, "%s: not a text file (contains a NUL byte)", conf) > 0);
	cr_assert_str_eq(err, want);
	free(err);
	free(want);
}

Test(config, big_numbers_in_comments_and_strings_are_not_values)
{
	struct uf_config c;
	load_ok("# 99999999999 in a comment\n"
		"station = \"k-99999999999\"; /* 4294967299\n 5000000000 */\n"
		"worker = { max_concurrent = 0x10; poll_interval = 1e1; }; // 5000000000\n"
		"write = { max_rate = \"99999999999\"; };\n",
		&c);
	cr_assert_str_eq(c.station, "k-99999999999");
	cr_assert_eq(c.worker.max_concurrent, 16);
	cr_assert_eq(c.worker.poll_interval, 10.0);
	cr_assert_eq(c.write.max_rate, 99999999999ULL);
	config_done(&c);
	/* the line count survives a multi-line comment */
	load_bad("/* one\n two */\nworker = { max_concurrent = 5000000000; };\n", -EINVAL,
		 ":3: key 'worker.max_concurrent': integer 5000000000 is out of range (libconfig reads whole numbers "
		 "as 32 bits)");
}

/* ---- secrets (issue 11) ---------------------------------------------------------------------- */

/* An inline database.password makes the config file a secret: refused when others can read or
 * write it (or its group write it), on the mode of the descriptor read; the usbforge group may
 * read it. An empty password is no secret. */
Test(config, inline_password_in_a_file_others_can_read)
{
	const char *text = "station = \"k\";\ndatabase = {\n  password = \"hunter2\";\n};\n";
	char *tail = NULL;
	write_text(conf, text);
	static const mode_t refused[] = { 0644, 0604, 0664, 0666 };
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		cr_assert_eq(chmod(conf, refused[i]), 0);
		cr_assert(
			asprintf(&tail,
				 ":3: key 'database.password': '%s' has mode %04o: a file holding a database password "
				 "must not be readable or writable by others nor writable by its group (chmod "
				 "g-w,o-rwx '%s'; the usbforge group may read it), or move the password to a "
				 "password_file",
				 conf, (unsigned)refused[i], conf) > 0);
		expect_bad(-EINVAL, tail);
		free(tail);
	}
	static const mode_t accepted[] = { 0640, 0600 };
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		struct uf_config c;
		char *err = NULL;
		cr_assert_eq(chmod(conf, accepted[i]), 0);
		cr_assert_eq(config_load(conf, &c, &err), 0, "%s", err ? err : "");
		cr_assert_str_eq(c.db.password, "hunter2");
		config_done(&c);
	}
	/* no inline password (or an empty one): the file may be world-readable */
	struct uf_config c;
	cr_assert_eq(chmod(conf, 0644), 0);
	load_ok("database = { password = \"\"; user = \"u\"; };\n", &c);
	cr_assert_str_eq(c.db.password, "");
	config_done(&c);
}

/* No message ever shows a password's value: a wrong type, a literal libconfig cannot hold, a
 * length, the admin group given a string. (Today's loader said "(got 12345)".) */
Test(config, secret_values_never_in_messages)
{
	load_bad("database = {\n  password = 12345;\n};\n", -EINVAL,
		 ":2: key 'database.password': must be a string in double quotes (the value is not shown)");
	load_bad("database = { password = 99999999999; };\n", -EINVAL,
		 ":1: key 'database.password': must be a string in double quotes (the value is not shown)");
	load_bad("database = { port = 3306; password = 99999999999; };\n", -EINVAL,
		 ":1: key 'database.password': must be a string in double quotes (the value is not shown)");
	load_bad("database = { password = 2.5; };\n", -EINVAL,
		 ":1: key 'database.password': must be a string in double quotes (the value is not shown)");
	load_bad("database = { password = [\"s3cret\"]; };\n", -EINVAL,
		 ":1: key 'database.password': must be a string in double quotes (the value is not shown)");
	char *text = NULL, *longpw = malloc(5001);
	cr_assert_not_null(longpw);
	memset(longpw, 'p', 5000);
	longpw[5000] = '\0';
	cr_assert(asprintf(&text, "database = { password = \"%s\"; };\n", longpw) > 0);
	load_bad(text, -EINVAL, ":1: key 'database.password': must be at most 4096 characters long");
	free(text);
	free(longpw);
	load_bad("database = { admin = \"s3cret\"; };\n", -EINVAL,
		 ":1: key 'database.admin': must be a group { … } (the value is not shown)");
	load_bad("database = { admin = { user = \"a\"; password = 77777777777; }; };\n", -EINVAL,
		 ":1: key 'database.admin.password': must be a string in double quotes (the value is not shown)");
	load_bad("database = {\n admin = { user = \"a\";\n password = \"s3cret\"; };\n};\n", -EINVAL,
		 ":3: key 'database.admin.password': is not accepted: the admin password belongs in a file only "
		 "its owner can read (database.admin.password_file, chmod 600), not in a file the usbforge group "
		 "reads");
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A FIFO (or a device) as the config file is refused at once, never opened for a blocking read;
 * the timeout makes a hang a failure. */
Test(config, fifo_or_device_as_config_file, .timeout = 10)
{
	char *fifo = tu_path(dir, "fifo.conf"), *want = NULL, *err = NULL;
	struct uf_config c;
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	double t0 = now_s();
	cr_assert_eq(config_load(fifo, &c, &err), -EINVAL);
	cr_assert_lt(now_s() - t0, 0.5);
	cr_assert(asprintf(&want, "%s: is a FIFO, not a regular file", fifo) > 0);
	cr_assert_str_eq(err, want);
	free(err);
	free(want);
	/* named through the environment too */
	setenv("USBFORGE_CONFIG", fifo, 1);
	cr_assert_eq(config_load_default(NULL, &c, &err), -EINVAL);
	cr_assert(asprintf(&want, "%s: is a FIFO, not a regular file", fifo) > 0);
	cr_assert_str_eq(err, want);
	free(err);
	free(want);
	/* a character device reads as an empty file: it used to load as all defaults */
	cr_assert_eq(config_load("/dev/null", &c, &err), -EINVAL);
	cr_assert_str_eq(err, "/dev/null: is a character device, not a regular file");
	free(err);
	free(fifo);
}

Test(config, fifo_as_password_file, .timeout = 10)
{
	char *fifo = tu_path(dir, "pw.fifo"), *text = NULL, *tail = NULL;
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	cr_assert(asprintf(&text, "database = {\n  password_file = \"pw.fifo\";\n};\n") > 0);
	cr_assert(asprintf(&tail, ":2: key 'database.password_file': '%s' is a FIFO, not a regular file", fifo) > 0);
	double t0 = now_s();
	load_bad(text, -EINVAL, tail);
	cr_assert_lt(now_s() - t0, 0.5);
	free(text);
	free(tail);
	cr_assert(asprintf(&text, "database = { password_file = \"/dev/zero\"; };\n") > 0);
	load_bad(text, -EINVAL,
		 ":1: key 'database.password_file': '/dev/zero' is a character device, not a regular file");
	free(text);
	free(fifo);
}

/* database.admin: the account of db migrate, its password file root-only and read on demand. */
Test(config, admin_account)
{
	struct uf_config c;
	char *pw = NULL, *err = NULL, *want = NULL;
	char *apf = write_in_dir("admin.pw", "adm1n-pw\n", 0600);
	char *dpf = write_in_dir("db.pw", "daemon-pw\n", 0640);
	load_ok("database = {\n  user = \"forge\"; password_file = \"db.pw\";\n"
		"  admin = { user = \"forge_admin\";\n    password_file = \"admin.pw\"; };\n};\n",
		&c);
	cr_assert_str_eq(c.db.user, "forge");
	cr_assert_str_eq(c.db.password, "daemon-pw");
	cr_assert_str_eq(c.db.admin.user, "forge_admin");
	cr_assert_str_eq(c.db.admin.password_file, apf);
	cr_assert_eq(c.db.admin.password_file_line, 4);
	cr_assert_eq(config_admin_password(&c, &pw, &err), 0, "%s", err ? err : "");
	cr_assert_str_eq(pw, "adm1n-pw");
	free(pw);
	pw = NULL;
	/* read when asked, with the same checks: a file made group-readable since the load */
	cr_assert_eq(chmod(apf, 0640), 0);
	cr_assert_eq(config_admin_password(&c, &pw, &err), -EINVAL);
	cr_assert_null(pw);
	cr_assert(asprintf(&want,
			   "%s:4: key 'database.admin.password_file': '%s' has mode 0640: the admin password file "
			   "must be readable by its owner only (chmod 600 '%s')",
			   conf, apf, apf) > 0);
	cr_assert_str_eq(err, want);
	free(err);
	free(want);
	/* replaced by a FIFO: refused at once */
	cr_assert_eq(unlink(apf), 0);
	cr_assert_eq(mkfifo(apf, 0600), 0);
	cr_assert_eq(config_admin_password(&c, &pw, &err), -EINVAL);
	cr_assert(asprintf(&want, "%s:4: key 'database.admin.password_file': '%s' is a FIFO, not a regular file", conf,
			   apf) > 0);
	cr_assert_str_eq(err, want);
	free(err);
	free(want);
	config_done(&c);

	/* checked at load: the mode, the kind, a missing file */
	char *text = NULL, *tail = NULL;
	cr_assert(asprintf(&text, "database = { admin = { user = \"a\";\n password_file = \"admin.pw\"; }; };\n") > 0);
	cr_assert(asprintf(&tail, ":2: key 'database.admin.password_file': '%s' is a FIFO, not a regular file", apf) >
		  0);
	load_bad(text, -EINVAL, tail);
	free(tail);
	cr_assert_eq(unlink(apf), 0);
	cr_assert(asprintf(&tail, ":2: key 'database.admin.password_file': cannot read '%s': No such file or directory",
			   apf) > 0);
	load_bad(text, -EINVAL, tail);
	free(tail);
	write_text(apf, "x\n");
	cr_assert_eq(chmod(apf, 0604), 0);
	cr_assert(asprintf(&tail,
			   ":2: key 'database.admin.password_file': '%s' has mode 0604: the admin password file must "
			   "be readable by its owner only (chmod 600 '%s')",
			   apf, apf) > 0);
	load_bad(text, -EINVAL, tail);
	free(tail);
	free(text);
	load_bad("database = {\n  admin = { password_file = \"admin.pw\"; };\n};\n", -EINVAL,
		 ":2: key 'database.admin': has no 'user': name the account that may change the schema, e.g. admin = "
		 "{ user = \"usbforge_admin\"; password_file = \"…\"; }");
	load_bad("database = { admin = { user = \"a\"; pasword_file = \"x\"; }; };\n", -EINVAL,
		 ":1: key 'database.admin.pasword_file': unknown key (known keys in database.admin: user, "
		 "password_file, password)");
	load_bad("database = { admin = { user = \"\"; }; };\n", -EINVAL,
		 ":1: key 'database.admin.user': must not be empty");

	/* no password file: an account without a password (unix_socket authentication) */
	load_ok("database = { admin = { user = \"root\"; }; };\n", &c);
	pw = (char *)"unchanged";
	cr_assert_eq(config_admin_password(&c, &pw, &err), 0);
	cr_assert_null(pw);
	config_done(&c);
	/* no admin group */
	load_ok("database = { user = \"u\"; };\n", &c);
	cr_assert_null(c.db.admin.user);
	cr_assert_eq(config_admin_password(&c, &pw, &err), -EINVAL);
	cr_assert(asprintf(&want, "%s: no database.admin group: no admin account is configured", conf) > 0);
	cr_assert_str_eq(err, want);
	free(err);
	free(want);
	config_done(&c);

	/* a reload keeps the running database group, admin included, as copies of its own */
	struct uf_config running, next;
	write_text(apf, "x\n");
	cr_assert_eq(chmod(apf, 0600), 0);
	load_ok("database = { admin = { user = \"a1\"; password_file = \"admin.pw\"; }; };\n", &running);
	load_ok("database = { admin = { user = \"a2\"; }; };\n", &next);
	cr_assert_eq(config_keep_restart_keys(&next, &running), 0);
	cr_assert_str_eq(next.db.admin.user, "a1");
	cr_assert_str_eq(next.db.admin.password_file, apf);
	cr_assert_neq(next.db.admin.user, running.db.admin.user);
	config_done(&running);
	config_done(&next);
	free(apf);
	free(dpf);
}

/* http = { listen; token_file; }: off by default; the spellings of listen; bad values named by
 * file, line and key. */
Test(config, http_group)
{
	struct uf_config c;
	char *want_tok = tu_path(dir, "http.token");

	load_ok("", &c);
	cr_assert_str_eq(c.http.listen, "");
	cr_assert_str_eq(c.http.host, "");
	cr_assert_str_eq(c.http.token_file, "");
	config_done(&c);

	static const struct {
		const char *listen, *host;
		unsigned port;
	} ok[] = {
		{ "127.0.0.1:8470", "127.0.0.1", 8470 },
		{ "8470", "127.0.0.1", 8470 },
		{ ":8470", "127.0.0.1", 8470 },
		{ "[::1]:8470", "::1", 8470 },
		{ "0", "127.0.0.1", 0 },
		{ "10.1.2.3:80", "10.1.2.3", 80 },
		{ "", "", 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		char *text = NULL;
		cr_assert(asprintf(&text, "http = { listen = \"%s\"; token_file = \"http.token\"; };\n", ok[i].listen) >
			  0);
		load_ok(text, &c);
		cr_assert_str_eq(c.http.listen, ok[i].listen);
		cr_assert_str_eq(c.http.host, ok[i].host, "%s", ok[i].listen);
		cr_assert_eq(c.http.port, ok[i].port, "%s", ok[i].listen);
		cr_assert_str_eq(c.http.token_file, want_tok);
		config_done(&c);
		free(text);
	}
	load_ok("http = { token_file = \"\"; };\n", &c);
	cr_assert_str_eq(c.http.token_file, "");
	config_done(&c);

	static const char *const bad[] = { "localhost:8470", "127.0.0.1:", "127.0.0.1:65536", "::1:8470",
					   "[::1]8470",	     "1.2.3:80",   "08470",	      "127.0.0.1:-1" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *text = NULL, *tail = NULL;
		cr_assert(asprintf(&text, "station = \"a\";\nhttp = {\n listen = \"%s\"; };\n", bad[i]) > 0);
		cr_assert(asprintf(&tail,
				   ":3: key 'http.listen': must be \"ADDRESS:PORT\" with an IPv4 address, "
				   "\"[IPv6]:PORT\", \"PORT\" alone (127.0.0.1) or \"\" (off); PORT 1..65535 (0: any "
				   "free port) (got \"%s\")",
				   bad[i]) > 0);
		load_bad(text, -EINVAL, tail);
		free(text);
		free(tail);
	}
	load_bad("http = { listen = 8470; };\n", -EINVAL,
		 ":1: key 'http.listen': must be a string: \"127.0.0.1:8470\", \"8470\", \"[::1]:8470\" or \"\" "
		 "(off) (got 8470)");
	load_bad("http = { lisen = \"1\"; };\n", -EINVAL,
		 ":1: key 'http.lisen': unknown key (known keys in http: listen, token_file)");
	free(want_tok);
}

/* events = { webhook; secret_file; timeout; }: no relay by default; https anywhere, http only to
 * loopback; a webhook needs a secret file; bad values named by file, line and key. */
Test(config, events_group)
{
	struct uf_config c;
	char *want_sec = tu_path(dir, "webhook.secret");

	load_ok("", &c);
	cr_assert_str_eq(c.events.webhook, "");
	cr_assert_str_eq(c.events.secret_file, "");
	cr_assert_float_eq(c.events.timeout, 10.0, 1e-9);
	config_done(&c);

	static const char *const ok[] = {
		"https://sales.example.com/hooks/usbforge",
		"https://sales.example.com:8443",
		"http://127.0.0.1:8080/hook",
		"http://127.9.9.9/",
		"http://localhost:1/x?y=1",
		"http://[::1]:9/h",
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		char *text = NULL;
		cr_assert(asprintf(&text,
				   "events = { webhook = \"%s\"; secret_file = \"webhook.secret\"; timeout = 2.5; };\n",
				   ok[i]) > 0);
		load_ok(text, &c);
		cr_assert_str_eq(c.events.webhook, ok[i]);
		cr_assert_str_eq(c.events.secret_file, want_sec);
		cr_assert_float_eq(c.events.timeout, 2.5, 1e-9);
		config_done(&c);
		free(text);
	}

	static const struct {
		const char *url, *why;
	} bad[] = {
		{ "http://sales.example.com/hook",
		  "must use https:// (http:// is allowed only to a loopback address: 127.0.0.1, [::1], localhost)" },
		{ "http://10.0.0.1/hook",
		  "must use https:// (http:// is allowed only to a loopback address: 127.0.0.1, [::1], localhost)" },
		{ "ftp://127.0.0.1/", "must start with https:// (or http:// to a loopback address)" },
		{ "https://user:pw@sales.example.com/", "must not carry credentials (user@host)" },
		{ "https:///path", "names no host" },
		{ "https://a b/", "must not contain spaces, control or non-ASCII characters (percent-encode them)" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *text = NULL, *tail = NULL;
		cr_assert(asprintf(&text, "station = \"a\";\nevents = {\n webhook = \"%s\"; secret_file = \"s\"; };\n",
				   bad[i].url) > 0);
		cr_assert(asprintf(&tail, ":3: key 'events.webhook': %s (got \"%s\")", bad[i].why, bad[i].url) > 0);
		load_bad(text, -EINVAL, tail);
		free(text);
		free(tail);
	}
	load_bad("events = {\n webhook = \"https://sales.example.com/\"; };\n", -EINVAL,
		 ":2: key 'events.secret_file': must name the webhook's signing secret file when events.webhook is set");
	load_bad("events = { timeout = 0; };\n", -EINVAL,
		 ":1: key 'events.timeout': must be a number of seconds greater than 0 and at most 300 (got 0)");
	load_bad("events = { hook = \"\"; };\n", -EINVAL,
		 ":1: key 'events.hook': unknown key (known keys in events: webhook, secret_file, timeout)");
	free(want_sec);
}

/* database.hosts (issue 15): a list of servers tried in order, each "HOST", "HOST:PORT" or
 * "[IPv6]:PORT" (no port: database.port); errors name the entry; never beside host or socket. */
Test(config, database_hosts)
{
	struct uf_config c;
	load_ok("database = { hosts = ( \"10.0.0.1:3307\", \"db-2.example\", \"[fd00::3]:3309\" ); port = 3310; };\n",
		&c);
	cr_assert_eq(c.db.n_hosts, 3);
	cr_assert_str_eq(c.db.hosts[0].host, "10.0.0.1");
	cr_assert_eq(c.db.hosts[0].port, 3307);
	cr_assert_str_eq(c.db.hosts[1].host, "db-2.example");
	cr_assert_eq(c.db.hosts[1].port, 0, "no port: database.port at connect");
	cr_assert_str_eq(c.db.hosts[2].host, "fd00::3");
	cr_assert_eq(c.db.hosts[2].port, 3309);
	cr_assert_eq(c.db.port, 3310);

	/* a restart key: the daemon keeps its list on SIGHUP */
	struct uf_config next;
	load_ok("database = { hosts = ( \"10.0.0.1:3307\" ); port = 3310; };\n", &next);
	const char *keys[8];
	size_t n = config_restart_keys_changed(&c, &next, keys, 8);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(keys[0], "database.hosts");
	cr_assert_eq(config_keep_restart_keys(&next, &c), 0);
	cr_assert_eq(next.db.n_hosts, 3);
	cr_assert_str_eq(next.db.hosts[2].host, "fd00::3");
	cr_assert_eq(config_restart_keys_changed(&c, &next, keys, 8), 0);
	config_done(&next);

	/* the database group copied whole (the relay's, the retention's and the HTTP server's own
	 * connections), and outliving the config it came from */
	struct uf_config copy = { 0 };
	cr_assert_eq(config_copy_database(&copy, &c), 0);
	config_done(&c);
	cr_assert_eq(copy.db.n_hosts, 3);
	cr_assert_str_eq(copy.db.hosts[1].host, "db-2.example");
	cr_assert_str_eq(copy.db.hosts[2].host, "fd00::3");
	cr_assert_eq(copy.db.hosts[2].port, 3309);
	cr_assert_eq(copy.db.port, 3310);
	cr_assert_str_eq(copy.db.user, "usbforge");
	cr_assert_null(copy.db.admin.user);
	config_done(&copy);

	load_bad("database = { hosts = ( \"10.0.0.1:3307\", \"10.0.0.2:99999\" ); };\n", -EINVAL,
		 ":1: key 'database.hosts[1]': must be \"HOST\", \"HOST:PORT\" or \"[IPv6]:PORT\" (HOST a name or an "
		 "address, PORT 1..65535; no port: database.port) (got \"10.0.0.2:99999\")");
	load_bad("database = { hosts = ( \"a b:1\" ); };\n", -EINVAL,
		 ":1: key 'database.hosts[0]': must be \"HOST\", \"HOST:PORT\" or \"[IPv6]:PORT\" (HOST a name or an "
		 "address, PORT 1..65535; no port: database.port) (got \"a b:1\")");
	load_bad("database = { hosts = ( \"[fd00::zz]:1\" ); };\n", -EINVAL,
		 ":1: key 'database.hosts[0]': must be \"HOST\", \"HOST:PORT\" or \"[IPv6]:PORT\" (HOST a name or an "
		 "address, PORT 1..65535; no port: database.port) (got \"[fd00::zz]:1\")");
	load_bad("database = { hosts = ( 3306 ); };\n", -EINVAL,
		 ":1: key 'database.hosts[0]': must be a string \"HOST\", \"HOST:PORT\" or \"[IPv6]:PORT\" (got 3306)");
	load_bad("database = { hosts = \"10.0.0.1\"; };\n", -EINVAL,
		 ":1: key 'database.hosts': must be a list of 1 to 16 \"HOST:PORT\" strings, e.g. ( \"10.0.0.1:3306\", "
		 "\"10.0.0.2:3306\" ) (got \"10.0.0.1\")");
	load_bad("database = { hosts = ( ); };\n", -EINVAL,
		 ":1: key 'database.hosts': must hold 1 to 16 servers (got 0)");
	load_bad("database = {\n host = \"10.0.0.9\";\n hosts = ( \"10.0.0.1\" );\n};\n", -EINVAL,
		 ":3: key 'database.hosts': cannot be used together with 'database.host' (line 2): set only one");
	load_bad("database = {\n hosts = ( \"10.0.0.1\" );\n socket = \"/run/mysqld/mysqld.sock\";\n};\n", -EINVAL,
		 ":2: key 'database.hosts': cannot be used together with a 'database.socket' (line 3): set only one");
}

/* retention = { older_than; jobs; daily; }: off by default with 90 days; ages in s, m, h, d, w;
 * a bad age named by file, line and key. */
Test(config, retention_group)
{
	struct uf_config c;
	load_ok("", &c);
	cr_assert_eq(c.retention.older_than_s, 90 * 86400);
	cr_assert_not(c.retention.jobs);
	cr_assert_not(c.retention.daily);
	config_done(&c);
	load_ok("retention = { older_than = \"2w\"; jobs = true; daily = true; };\n", &c);
	cr_assert_eq(c.retention.older_than_s, 14 * 86400);
	cr_assert(c.retention.jobs);
	cr_assert(c.retention.daily);
	config_done(&c);
	load_bad("retention = {\n older_than = \"9x\"; };\n", -EINVAL,
		 ":2: key 'retention.older_than': must be an age such as \"90d\", \"12h\" or \"2w\" (1 second to 100 "
		 "years) (got \"9x\")");
	load_bad("retention = { older_than = 90; };\n", -EINVAL,
		 ":1: key 'retention.older_than': must be an age such as \"90d\", \"12h\" or \"2w\" (1 second to 100 "
		 "years) (got 90)");
	load_bad("retention = { older_than = \"0d\"; };\n", -EINVAL,
		 ":1: key 'retention.older_than': must be an age such as \"90d\", \"12h\" or \"2w\" (1 second to 100 "
		 "years) (got \"0d\")");
}
