/* Process log: one line per message on stderr with a syslog "<N>" priority prefix, which
 * journald turns into the PRIORITY field when usbforged runs under systemd. Thread-safe.
 * Library code logs at debug level at most and returns errors; the layer that decides logs. */
#pragma once

#include <errno.h>

#include "util/macro.h"

enum log_level { LOG_LVL_ERR = 3, LOG_LVL_WARNING = 4, LOG_LVL_NOTICE = 5, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

void log_set_max_level(enum log_level l);
/* Prefix "<N>" (default on when stderr is not a terminal, i.e. under journald). */
void log_set_prefix(int on);
/* Logs and returns -abs(err) so callers can "return log_error_errno(r, ...)". err may be 0. */
int log_internal(enum log_level l, int err, const char *fmt, ...) _printf_(3, 4);

#define log_debug(...)	 log_internal(LOG_LVL_DEBUG, 0, __VA_ARGS__)
#define log_info(...)	 log_internal(LOG_LVL_INFO, 0, __VA_ARGS__)
#define log_notice(...)	 log_internal(LOG_LVL_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_LVL_WARNING, 0, __VA_ARGS__)
#define log_error(...)	 log_internal(LOG_LVL_ERR, 0, __VA_ARGS__)
/* errno-carrying forms: %m in fmt prints strerror(err). */
#define log_debug_errno(e, ...)	  log_internal(LOG_LVL_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_internal(LOG_LVL_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)	  log_internal(LOG_LVL_ERR, (e), __VA_ARGS__)
