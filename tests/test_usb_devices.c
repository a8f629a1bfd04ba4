/* Tests of `usbforge devices` (cli/cmd_devices.c) below the binary: the exact JSON document
 * for given candidates, the human table, and the whole command in static mode against a config
 * file naming a loop device, a regular file, a missing path and a mounted-style refusal. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "helpers/failalloc.h"
#include "helpers/testutil.h"
#include "test_usb_loop.h"
#include "usb/discover.h"

static char *tmp;
static void setup(void) { tmp = tu_tmpdir("devcli"); }
static void teardown(void)
{
	tu_rmrf(tmp);
	free(tmp);
}
TestSuite(devices, .init = setup, .fini = teardown);

Test(devices, json_document_exact)
{
	struct usb_candidate c[2] = {
		{ .slot = "2-1.3",
		  .devnode = "/dev/sda",
		  .serial = "SN1",
		  .vendor = "QEMU",
		  .model = "QEMU USB HARDDRIVE",
		  .capacity_bytes = 268435456,
		  .logical_block_size = 512,
		  .usb_speed_mbps = 5000,
		  .port_path = "2-1.3",
		  .root_hub = "usb2",
		  .eligible = true },
		{ .devnode = "/dev/vda",
		  .capacity_bytes = 512,
		  .eligible = false,
		  .reason = "holds the root filesystem",
		  .serial = "bad\xff" },
	};
	json_t *doc = devices_to_json(c, 2);
	cr_assert(doc);
	char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
	cr_assert_str_eq(s,
			 "[{\"slot\":\"2-1.3\",\"devnode\":\"/dev/sda\",\"serial\":\"SN1\",\"vendor\":\"QEMU\","
			 "\"model\":\"QEMU USB HARDDRIVE\",\"capacity_bytes\":268435456,\"usb_speed_mbps\":5000,"
			 "\"port_path\":\"2-1.3\",\"eligible\":true,\"reason\":null},"
			 "{\"slot\":null,\"devnode\":\"/dev/vda\",\"serial\":\"bad?\",\"vendor\":null,\"model\":null,"
			 "\"capacity_bytes\":512,\"usb_speed_mbps\":0,\"port_path\":null,\"eligible\":false,"
			 "\"reason\":\"holds the root filesystem\"}]");
	free(s);
	json_decref(doc);

	doc = devices_to_json(NULL, 0);
	s = json_dumps(doc, JSON_COMPACT);
	cr_assert_str_eq(s, "[]");
	free(s);
	json_decref(doc);
}

Test(devices, table_rows)
{
	struct usb_candidate c[2] = {
		{ .slot = "A",
		  .devnode = "/dev/sdb",
		  .serial = "SN1",
		  .vendor = "QEMU",
		  .model = "STICK",
		  .capacity_bytes = 1073741824,
		  .usb_speed_mbps = 480,
		  .port_path = "1-2",
		  .eligible = true },
		{ .slot = "B", .port_path = "1-3", .eligible = false, .reason = "empty" },
	};
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	devices_print_table(c, 2, f);
	fclose(f);
	/* Header plus two rows, in order. */
	char *l1 = out, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
	cr_assert(strstr(l1, "SLOT") == l1);
	cr_assert(strstr(l2, "A ") == l2);
	cr_assert(strstr(l2, "/dev/sdb") && strstr(l2, "1.0 GiB") && strstr(l2, "480 Mb/s") && strstr(l2, " yes"));
	cr_assert(strstr(l3, "B ") == l3);
	cr_assert(strstr(l3, "no: empty"));
	cr_assert_eq(*(strchr(l3, '\n') + 1), '\0');
	free(out);
}

/* Every allocation of the table failed once: -ENOMEM each time (it once called abort()), or
 * the whole table. */
Test(devices, table_out_of_memory_is_enomem)
{
	struct usb_candidate c[2] = {
		{ .slot = "A", .devnode = "/dev/sdb", .capacity_bytes = 1073741824, .eligible = true },
		{ .slot = "B", .port_path = "1-3", .eligible = false, .reason = "empty" },
	};
	char *whole = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&whole, &len);
	cr_assert_eq(devices_print_table(c, 2, f), 0);
	fclose(f);
	unsigned failed = 0;
	FAILALLOC_LOOP(k)
	{
		char *out = NULL;
		f = open_memstream(&out, &len);
		int r = devices_print_table(c, 2, f);
		fclose(f);
		if (r == 0)
			cr_assert_str_eq(out, whole);
		else {
			cr_assert_eq(r, -ENOMEM, "allocation %u: %d", k, r);
			failed++;
		}
		free(out);
	}
	cr_assert_geq(failed, 10);
	free(whole);
}

/* Run cmd_devices with stdout captured into a string. */
static int run_devices(const char *conf, bool json, int argc, char **argv, char **ret_out)
{
	fflush(stdout);
	char *cap = tu_path(tmp, "stdout");
	int fd = open(cap, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int saved = dup(1);
	dup2(fd, 1);
	struct cli c = { .config_path = conf, .json = json, .prog = "usbforge" };
	int r = cmd_devices(&c, argc, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	off_t n = lseek(fd, 0, SEEK_END);
	char *buf = calloc(1, (size_t)n + 1);
	cr_assert_eq(pread(fd, buf, (size_t)n, 0), n);
	close(fd);
	free(cap);
	if (c.config_loaded)
		config_done(&c.cfg);
	*ret_out = buf;
	return r;
}

Test(devices, command_in_static_mode)
{
	char *file = tu_path(tmp, "b.img");
	tu_write_file(file, "0123456789abcdef", 16);
	char *missing = tu_path(tmp, "missing.img");
	struct tul_loop l = { .fd = -1 };
	const char *a_path = "/dev/null";
	bool loop = tul_can_loop();
	if (loop) {
		char *img = tu_path(tmp, "a.img");
		int fd = open(img, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		cr_assert_eq(ftruncate(fd, 4 << 20), 0);
		close(fd);
		tul_attach(img, false, &l);
		a_path = l.path;
		free(img);
	}
	char *conf = tu_path(tmp, "usbforge.conf");
	char *text = NULL;
	cr_assert(asprintf(&text,
			   "usb = { mode = \"static\";\n"
			   "  slots = ( { name = \"A\"; path = \"%s\"; },\n"
			   "            { name = \"B\"; path = \"%s\"; },\n"
			   "            { name = \"C\"; path = \"%s\"; } ); };\n",
			   a_path, file, missing) > 0);
	tu_write_file(conf, text, strlen(text));

	char *argv[] = { "devices", NULL };
	char *out = NULL;
	cr_assert_eq(run_devices(conf, true, 1, argv, &out), CLI_EXIT_OK);
	json_error_t err;
	json_t *doc = json_loads(out, 0, &err);
	cr_assert(doc, "not JSON: %s\n%s", err.text, out);
	cr_assert_eq(json_array_size(doc), 3);
	json_t *a = json_array_get(doc, 0), *b = json_array_get(doc, 1), *c = json_array_get(doc, 2);
	cr_assert_str_eq(json_string_value(json_object_get(a, "slot")), "A");
	cr_assert_str_eq(json_string_value(json_object_get(a, "devnode")), a_path);
	if (loop) {
		cr_assert(json_is_true(json_object_get(a, "eligible")));
		cr_assert(json_is_null(json_object_get(a, "reason")));
		cr_assert_eq(json_integer_value(json_object_get(a, "capacity_bytes")), 4 << 20);
	} else {
		cr_assert(json_is_false(json_object_get(a, "eligible")));
		cr_assert_str_eq(json_string_value(json_object_get(a, "reason")),
				 "a character device, not a block device or regular file");
	}
	cr_assert_str_eq(json_string_value(json_object_get(b, "slot")), "B");
	cr_assert(json_is_true(json_object_get(b, "eligible")));
	cr_assert_eq(json_integer_value(json_object_get(b, "capacity_bytes")), 16);
	cr_assert_str_eq(json_string_value(json_object_get(c, "slot")), "C");
	cr_assert(json_is_false(json_object_get(c, "eligible")));
	cr_assert_str_eq(json_string_value(json_object_get(c, "reason")), "cannot access: No such file or directory");
	cr_assert_eq(json_object_size(a), 10);
	json_decref(doc);
	free(out);

	/* The local --json flag works too; the human table has a header and three rows. */
	char *argv2[] = { "devices", "--json", NULL };
	cr_assert_eq(run_devices(conf, false, 2, argv2, &out), CLI_EXIT_OK);
	cr_assert_eq(out[0], '[');
	free(out);
	cr_assert_eq(run_devices(conf, false, 1, argv, &out), CLI_EXIT_OK);
	int lines = 0;
	for (char *p = out; *p; p++)
		lines += *p == '\n';
	cr_assert_eq(lines, 4, "%s", out);
	free(out);

	char *argv3[] = { "devices", "--bogus", NULL };
	cr_assert_eq(run_devices(conf, false, 2, argv3, &out), CLI_EXIT_USAGE);
	free(out);

	if (loop)
		tul_detach(&l);
	free(text);
	free(conf);
	free(file);
	free(missing);
}
