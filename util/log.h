/* Process log. When stderr is the journal (systemd's JOURNAL_STREAM names stderr's device and
 * inode), each message is one journal entry sent with sd_journal_sendv: MESSAGE, PRIORITY,
 * SYSLOG_IDENTIFIER, CODE_FILE/LINE/FUNC, ERRNO, MESSAGE_ID (util/logid.h) and the USBFORGE_*
 * fields of what it is about (struct log_fields), so that `journalctl USBFORGE_ORDER=A-1001`
 * finds a job's story. Otherwise (a terminal, a pipe, a file), and whenever sending fails, it
 * is one line on stderr with a syslog "<N>" priority prefix, which journald also turns into the
 * PRIORITY field. Thread-safe. Library code logs at debug level at most and returns errors; the
 * layer that decides logs. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/macro.h"

enum log_level { LOG_LVL_ERR = 3, LOG_LVL_WARNING = 4, LOG_LVL_NOTICE = 5, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

/* What a message is about: journal fields (USBFORGE_JOB_ID=, USBFORGE_ORDER=, …). Unset
 * members (NULL, 0, has_unit false) are not sent. Values come from job rows anyone with the
 * database's write access may have filled: each is sent as one field of its own, with its
 * length (a newline or "X=" in a value cannot start another field), and cut at LOG_VALUE_MAX
 * bytes. */
struct log_fields {
	const char *message_id;	   /* MESSAGE_ID: a LOG_MID_… of util/logid.h */
	int64_t job_id;		   /* USBFORGE_JOB_ID, when > 0 */
	const char *order;	   /* USBFORGE_ORDER: the order number */
	int unit;		   /* USBFORGE_UNIT: the unit index (from 0), when has_unit */
	bool has_unit;		   /* unit is set */
	int attempt;		   /* USBFORGE_ATTEMPT, when > 0 */
	const char *slot;	   /* USBFORGE_SLOT: the slot's name */
	const char *stage;	   /* USBFORGE_STAGE: stage_name() */
	const char *error_code;	   /* USBFORGE_ERROR_CODE: uf_code_name(), e.g. "DEVICE_GONE" */
	const char *device_serial; /* USBFORGE_DEVICE_SERIAL: the stick's serial */
};

/* Longest field value sent (bytes; longer ones are cut at a UTF-8 boundary). */
#define LOG_VALUE_MAX 256
/* Longest journal MESSAGE (bytes; longer ones are cut at a UTF-8 boundary). */
#define LOG_MESSAGE_MAX 16384

#define LOG_FIELDS(...) (&(const struct log_fields){ __VA_ARGS__ })

void log_set_max_level(enum log_level l);
/* Prefix "<N>" on the plain lines (default on when stderr is not a terminal). */
void log_set_prefix(int on);

/* The calling thread's context: the fields every later message of this thread carries (a
 * message's own fields win where both are set; message_id is ignored here). The struct is
 * copied; the strings it points to must stay valid and unchanged until the context is
 * replaced or cleared (f NULL). A runner thread sets its job, order, unit, attempt, slot and
 * serial once per attempt; other threads are not affected. */
void log_context_set(const struct log_fields *f);
/* Only the stage of the calling thread's context (a stage_name(), or NULL for none). */
void log_context_set_stage(const char *stage);

/* Whether messages go to the journal (stderr is the journal stream named by JOURNAL_STREAM;
 * decided once, at the first call). */
bool log_to_journal(void);

/* Logs and returns -abs(err) so callers can "return log_error_errno(r, ...)". err may be 0;
 * when not, %m in fmt prints strerror(err) and the journal entry carries ERRNO. f may be NULL.
 * file, line and func are the caller's (the macros below fill them in). */
int log_full(enum log_level l, int err, const char *file, int line, const char *func, const struct log_fields *f,
	     const char *fmt, ...) _printf_(7, 8);

#define log_internal(l, err, ...) log_full((l), (err), __FILE__, __LINE__, __func__, NULL, __VA_ARGS__)
/* A message with its fields: log_struct(LOG_LVL_INFO, LOG_FIELDS(.message_id = LOG_MID_JOB_DONE,
 * .slot = name), "job %lld: done on slot %s", id, name). */
#define log_struct(l, fields, ...)	    log_full((l), 0, __FILE__, __LINE__, __func__, (fields), __VA_ARGS__)
#define log_struct_errno(l, e, fields, ...) log_full((l), (e), __FILE__, __LINE__, __func__, (fields), __VA_ARGS__)

#define log_debug(...)	 log_internal(LOG_LVL_DEBUG, 0, __VA_ARGS__)
#define log_info(...)	 log_internal(LOG_LVL_INFO, 0, __VA_ARGS__)
#define log_notice(...)	 log_internal(LOG_LVL_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_LVL_WARNING, 0, __VA_ARGS__)
#define log_error(...)	 log_internal(LOG_LVL_ERR, 0, __VA_ARGS__)
/* errno-carrying forms: %m in fmt prints strerror(err). */
#define log_debug_errno(e, ...)	  log_internal(LOG_LVL_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_internal(LOG_LVL_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)	  log_internal(LOG_LVL_ERR, (e), __VA_ARGS__)
