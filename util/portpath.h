/* USB port paths as the kernel names them: bus "-" port { "." port }, e.g. "2-1.3" (bus 2,
 * port 1 of the root hub, then port 3 of the hub there). The config checks a slot's `port`
 * with it, usb/ matches sticks and finds them in libusb with it. */
#pragma once

#include <stdint.h>

#define PORT_PATH_MAX_PORTS 7 /* USB allows at most 7 tiers below the root hub */

/* "2-1.3" → bus 2, ports {1, 3}, n 2. Returns 0 or -EINVAL (malformed, bus 0 or > 255, a
 * port 0 or > 255, more than PORT_PATH_MAX_PORTS). Root hubs ("usb2") are not port paths.
 * ret_* may be NULL to only check. */
int port_path_parse(const char *port_path, unsigned *ret_bus, uint8_t ret_ports[PORT_PATH_MAX_PORTS], int *ret_n_ports);
/* The reverse: "2-1.3" into *ret (malloc'd). -EINVAL when n_ports is out of range, -ENOMEM. */
int port_path_format(unsigned bus, const uint8_t *ports, int n_ports, char **ret);
