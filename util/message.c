/* Implementation of message.h. */
#include "util/message.h"

#include <stdio.h>
#include <stdlib.h>

char *str_vprintf(const char *fmt, va_list ap)
{
	char *m = NULL;
	if (vasprintf(&m, fmt, ap) < 0)
		return NULL;
	return m;
}

char *str_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = str_vprintf(fmt, ap);
	va_end(ap);
	return m;
}

void str_vset(char **slot, const char *fmt, va_list ap)
{
	char *m = str_vprintf(fmt, ap);
	free(*slot);
	*slot = m;
}

void str_set(char **slot, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	str_vset(slot, fmt, ap);
	va_end(ap);
}

int error_set(char **ret_error, int r, const char *fmt, ...)
{
	va_list ap;
	if (!ret_error)
		return r;
	va_start(ap, fmt);
	*ret_error = str_vprintf(fmt, ap);
	va_end(ap);
	return r;
}
