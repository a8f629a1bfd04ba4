/* util/portpath.c: USB port paths parsed and printed, with the kernel's limits (bus and ports
 * 1..255, at most 7 tiers), shared by the config's slot check and usb/. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "util/portpath.h"

Test(portpath, parse_good)
{
	unsigned bus;
	uint8_t ports[PORT_PATH_MAX_PORTS];
	int n;

	cr_assert_eq(port_path_parse("2-1.3", &bus, ports, &n), 0);
	cr_assert_eq(bus, 2);
	cr_assert_eq(n, 2);
	cr_assert_eq(ports[0], 1);
	cr_assert_eq(ports[1], 3);
	cr_assert_eq(port_path_parse("255-1.2.3.4.5.6.255", &bus, ports, &n), 0);
	cr_assert_eq(bus, 255);
	cr_assert_eq(n, 7);
	cr_assert_eq(ports[6], 255);
	cr_assert_eq(port_path_parse("1-1", NULL, NULL, NULL), 0, "only checking");
}

Test(portpath, parse_bad)
{
	static const char *const bad[] = {
		"",
		"usb2",
		"2",
		"2-",
		"-1",
		"0-1",
		"2-0",
		"256-1",
		"2-256",
		"2-1.",
		"2-1..2",
		"2-1.x",
		"2-1 ",
		" 2-1",
		"+2-1",
		"2--1",
		"2-1-3",
		"2-1.2.3.4.5.6.7.8",
		"99999999999999999999-1",
		"2-99999999999999999999",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(port_path_parse(bad[i], NULL, NULL, NULL), -EINVAL, "'%s'", bad[i]);
	cr_assert_eq(port_path_parse(NULL, NULL, NULL, NULL), -EINVAL);
}

Test(portpath, format_round_trips)
{
	static const char *const good[] = { "1-1", "2-1.3", "11-4.4.4", "255-1.2.3.4.5.6.255" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		unsigned bus;
		uint8_t ports[PORT_PATH_MAX_PORTS];
		int n;
		char *s = NULL;
		cr_assert_eq(port_path_parse(good[i], &bus, ports, &n), 0);
		cr_assert_eq(port_path_format(bus, ports, n, &s), 0);
		cr_assert_str_eq(s, good[i]);
		free(s);
	}
}

Test(portpath, format_bad)
{
	uint8_t ports[PORT_PATH_MAX_PORTS + 1] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	char *s = NULL;
	cr_assert_eq(port_path_format(1, ports, 0, &s), -EINVAL, "a root hub has no port path");
	cr_assert_eq(port_path_format(1, ports, PORT_PATH_MAX_PORTS + 1, &s), -EINVAL);
	cr_assert_eq(port_path_format(0, ports, 1, &s), -EINVAL);
	cr_assert_eq(port_path_format(256, ports, 1, &s), -EINVAL);
	cr_assert_null(s);
}
