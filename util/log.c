/* Implementation of util/log.h. */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static enum log_level max_level = LOG_LVL_INFO;
static int prefix = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_max_level(enum log_level l) { max_level = l; }
void log_set_prefix(int on) { prefix = on; }

int log_internal(enum log_level l, int err, const char *fmt, ...)
{
	int saved = errno;
	if (err < 0)
		err = -err;
	if (l <= max_level) {
		va_list ap;
		if (prefix < 0)
			prefix = !isatty(STDERR_FILENO);
		pthread_mutex_lock(&lock);
		if (prefix)
			fprintf(stderr, "<%d>", (int)l);
		errno = err; /* %m */
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
		fflush(stderr);
		pthread_mutex_unlock(&lock);
	}
	errno = saved;
	return -err;
}
