/* `usbforge devices [--json]`: the sticks and slots this kiosk would use, and why not
 * (DESIGN.md "The CLI", "Devices and safety"). Lists usb_list_candidates() under the mode of
 * the configuration in force; never opens a device. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "usb/discover.h"
#include "util/macro.h"
#include "util/size.h"

/* A JSON string, or null; bytes that are not valid UTF-8 (a stick's odd serial) become '?'. */
static json_t *str_or_null(const char *s)
{
	if (!s)
		return json_null();
	json_t *v = json_string(s);
	if (v)
		return v;
	_cleanup_free_ char *copy = strdup(s);
	if (!copy)
		return NULL;
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	return json_string(copy);
}

json_t *devices_to_json(const struct usb_candidate *c, size_t n)
{
	json_t *a = json_array();
	if (!a)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		json_t *o =
			json_pack("{s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:o, s:b, s:o}", "slot", str_or_null(c[i].slot),
				  "devnode", str_or_null(c[i].devnode), "serial", str_or_null(c[i].serial), "vendor",
				  str_or_null(c[i].vendor), "model", str_or_null(c[i].model), "capacity_bytes",
				  (json_int_t)c[i].capacity_bytes, "usb_speed_mbps", (json_int_t)c[i].usb_speed_mbps,
				  "port_path", str_or_null(c[i].port_path), "eligible", (int)c[i].eligible, "reason",
				  str_or_null(c[i].reason));
		if (!o || json_array_append_new(a, o) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

int devices_print_table(const struct usb_candidate *c, size_t n, FILE *out)
{
	static const char *const headers[] = { "SLOT",	 "DEVICE", "SIZE",   "SPEED",	"PORT",
					       "VENDOR", "MODEL",  "SERIAL", "ELIGIBLE" };
	struct table *t = NULL;
	int r = table_new(ARRAY_SIZE(headers), headers, &t);
	for (size_t i = 0; r == 0 && i < n; i++) {
		char size[32], speed[32];
		_cleanup_free_ char *why = NULL;
		const char *sz = c[i].devnode ? format_size(c[i].capacity_bytes, size, sizeof(size)) : NULL;
		const char *sp = NULL;
		if (c[i].usb_speed_mbps) {
			snprintf(speed, sizeof(speed), "%u Mb/s", c[i].usb_speed_mbps);
			sp = speed;
		}
		if (!c[i].eligible && asprintf(&why, "no: %s", c[i].reason ? c[i].reason : "?") < 0) {
			why = NULL;
			r = -ENOMEM;
			break;
		}
		const char *cells[] = { c[i].slot,  c[i].devnode,   sz,
					sp,	    c[i].port_path, c[i].vendor,
					c[i].model, c[i].serial,    c[i].eligible ? "yes" : why };
		r = table_add(t, cells);
	}
	if (r == 0)
		r = table_print(t, out);
	table_free(t);
	return r;
}

int cmd_devices(struct cli *c, int argc, char **argv)
{
	static const char *usage = "[--json]";
	bool json = c->json;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			return cli_usage_error("devices", usage, "unexpected argument '%s'", argv[i]);
	}
	int r = cli_load_config(c);
	if (r != 0)
		return r;

	struct usb_candidate *cand = NULL;
	size_t n = 0;
	r = usb_list_candidates(&c->cfg, &cand, &n);
	if (r < 0)
		return cli_error(CLI_EXIT_FAIL, "cannot list devices: %s", strerror(-r));
	if (json) {
		json_t *doc = devices_to_json(cand, n);
		usb_candidates_free(cand, n);
		return cli_print_json(doc);
	}
	if (n == 0)
		printf("No devices (usb.mode = %s).\n", c->cfg.usb.mode == USB_MODE_STATIC ? "static" : "udev");
	else
		r = devices_print_table(cand, n, stdout);
	usb_candidates_free(cand, n);
	return r;
}
