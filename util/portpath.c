/* Implementation of portpath.h. */
#include "util/portpath.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decimal number 1..255 at *s (digits only, no sign, no spaces); *s moves past it. */
static int number(const char **s, unsigned long *ret)
{
	char *end;
	if (**s < '0' || **s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(*s, &end, 10);
	if (errno || v == 0 || v > 255)
		return -EINVAL;
	*s = end;
	*ret = v;
	return 0;
}

int port_path_parse(const char *port_path, unsigned *ret_bus, uint8_t ret_ports[PORT_PATH_MAX_PORTS], int *ret_n_ports)
{
	uint8_t ports[PORT_PATH_MAX_PORTS] = { 0 };
	unsigned long bus, p;
	const char *s = port_path;
	int n = 0;

	if (!s || number(&s, &bus) < 0 || *s++ != '-')
		return -EINVAL;
	for (;;) {
		if (n == PORT_PATH_MAX_PORTS || number(&s, &p) < 0)
			return -EINVAL;
		ports[n++] = (uint8_t)p;
		if (*s == '\0')
			break;
		if (*s++ != '.')
			return -EINVAL;
	}
	if (ret_bus)
		*ret_bus = (unsigned)bus;
	if (ret_ports)
		memcpy(ret_ports, ports, sizeof(ports));
	if (ret_n_ports)
		*ret_n_ports = n;
	return 0;
}

int port_path_format(unsigned bus, const uint8_t *ports, int n_ports, char **ret)
{
	/* "255-" + 7 × "255." fits in 40 bytes */
	char buf[40];

	if (n_ports <= 0 || n_ports > PORT_PATH_MAX_PORTS || bus == 0 || bus > 255)
		return -EINVAL;
	int len = snprintf(buf, sizeof(buf), "%u-%u", bus, ports[0]);
	for (int k = 1; k < n_ports && len > 0 && (size_t)len < sizeof(buf); k++)
		len += snprintf(buf + len, sizeof(buf) - (size_t)len, ".%u", ports[k]);
	if (len < 0 || (size_t)len >= sizeof(buf))
		return -EINVAL;
	char *s = strdup(buf);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}
