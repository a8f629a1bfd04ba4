/* Implementation of util/log.h. */
#include "util/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
/* the caller's location is sent (log_full's file, line, func), not this file's */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#include <unistd.h>

static enum log_level max_level = LOG_LVL_INFO;
static int prefix = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_once_t journal_once = PTHREAD_ONCE_INIT;
static bool journal;

/* The calling thread's context (log_context_set). */
static _Thread_local struct log_fields context;

void log_set_max_level(enum log_level l) { max_level = l; }
void log_set_prefix(int on) { prefix = on; }

void log_context_set(const struct log_fields *f)
{
	context = f ? *f : (struct log_fields){ 0 };
	context.message_id = NULL;
}

void log_context_set_stage(const char *stage) { context.stage = stage; }

/* JOURNAL_STREAM is "DEV:INO" of the stream systemd connected stdout/stderr to; a child that
 * inherited the variable with stderr redirected elsewhere must not take it (systemd.exec(5)). */
static void journal_detect(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	struct stat st;
	char *end;
	if (!e || !*e || fstat(STDERR_FILENO, &st) < 0)
		return;
	errno = 0;
	unsigned long long dev = strtoull(e, &end, 10);
	if (errno || end == e || *end != ':')
		return;
	const char *p = end + 1;
	unsigned long long ino = strtoull(p, &end, 10);
	if (errno || end == p || *end)
		return;
	if (dev != (unsigned long long)st.st_dev || ino != (unsigned long long)st.st_ino)
		return;
	/* sd_journal_sendv drops a message silently when the journal's socket does not exist: then
	 * the plain line, which the stream still carries */
	journal = stat("/run/systemd/journal/socket", &st) == 0 && S_ISSOCK(st.st_mode);
}

bool log_to_journal(void)
{
	(void)pthread_once(&journal_once, journal_detect);
	return journal;
}

/* Length of s cut to at most max bytes, not inside a UTF-8 sequence. */
static size_t cut_utf8(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	return max;
}

/* The journal fields of one message, each "NAME=value" in buf with its own iovec (so a value is
 * never parsed for fields: sd_journal_sendv sends a value with a newline length-prefixed). */
#define JF_MAX	    20
#define JF_NAME_MAX 24 /* "USBFORGE_DEVICE_SERIAL=" and the like */
struct jfields {
	struct iovec iov[JF_MAX];
	size_t n;
	char buf[JF_MAX * (JF_NAME_MAX + LOG_VALUE_MAX)];
	size_t used;
};

static void jf_add(struct jfields *j, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = cut_utf8(value, strlen(value), LOG_VALUE_MAX);
	if (j->n == JF_MAX || nl + 1 > JF_NAME_MAX || j->used + nl + 1 + vl > sizeof(j->buf))
		return; /* not reached with the fields below: each fits its share */
	char *p = j->buf + j->used;
	/* an iovec's bytes, sent with their length: no NUL */
	memcpy(p, name, nl); // NOLINT(bugprone-not-null-terminated-result)
	p[nl] = '=';
	memcpy(p + nl + 1, value, vl); // NOLINT(bugprone-not-null-terminated-result)
	j->iov[j->n++] = (struct iovec){ .iov_base = p, .iov_len = nl + 1 + vl };
	j->used += nl + 1 + vl;
}

static void jf_add_num(struct jfields *j, const char *name, long long v)
{
	char b[24];
	snprintf(b, sizeof(b), "%lld", v);
	jf_add(j, name, b);
}

/* Send one entry; 0, or negative when it was not sent (the caller prints the line instead). */
_printf_(7, 0) static int journal_send(enum log_level l, int err, const char *file, int line, const char *func,
				       const struct log_fields *f, const char *fmt, va_list ap)
{
	static const char msg_name[] = "MESSAGE=";
	const struct log_fields *c = &context;
	/* one byte more than is sent: where a long message is cut, the byte after shows whether the
	 * cut falls inside a UTF-8 sequence */
	_cleanup_free_ char *msg = malloc(sizeof(msg_name) - 1 + LOG_MESSAGE_MAX + 2);
	_cleanup_free_ struct jfields *j = calloc(1, sizeof(*j));
	if (!msg || !j)
		return -ENOMEM;
	memcpy(msg, msg_name, sizeof(msg_name) - 1);
	errno = err; /* %m */
	int n = vsnprintf(msg + sizeof(msg_name) - 1, LOG_MESSAGE_MAX + 2, fmt, ap);
	if (n < 0)
		return -EINVAL;
	size_t ml = cut_utf8(msg + sizeof(msg_name) - 1, MIN((size_t)n, (size_t)LOG_MESSAGE_MAX + 1), LOG_MESSAGE_MAX);

	jf_add_num(j, "PRIORITY", l);
	jf_add(j, "SYSLOG_IDENTIFIER", program_invocation_short_name);
	if (file) {
		jf_add(j, "CODE_FILE", file);
		jf_add_num(j, "CODE_LINE", line);
	}
	if (func)
		jf_add(j, "CODE_FUNC", func);
	if (err > 0)
		jf_add_num(j, "ERRNO", err);
	if (f && f->message_id)
		jf_add(j, "MESSAGE_ID", f->message_id);
	int64_t job_id = f && f->job_id > 0 ? f->job_id : c->job_id;
	if (job_id > 0)
		jf_add_num(j, "USBFORGE_JOB_ID", job_id);
	const char *order = f && f->order ? f->order : c->order;
	if (order)
		jf_add(j, "USBFORGE_ORDER", order);
	if ((f && f->has_unit) || c->has_unit)
		jf_add_num(j, "USBFORGE_UNIT", f && f->has_unit ? f->unit : c->unit);
	int attempt = f && f->attempt > 0 ? f->attempt : c->attempt;
	if (attempt > 0)
		jf_add_num(j, "USBFORGE_ATTEMPT", attempt);
	const char *slot = f && f->slot ? f->slot : c->slot;
	if (slot)
		jf_add(j, "USBFORGE_SLOT", slot);
	const char *stage = f && f->stage ? f->stage : c->stage;
	if (stage)
		jf_add(j, "USBFORGE_STAGE", stage);
	const char *code = f && f->error_code ? f->error_code : c->error_code;
	if (code)
		jf_add(j, "USBFORGE_ERROR_CODE", code);
	const char *serial = f && f->device_serial ? f->device_serial : c->device_serial;
	if (serial)
		jf_add(j, "USBFORGE_DEVICE_SERIAL", serial);
	/* the message last: it has its own buffer, of its own bound */
	j->iov[j->n++] = (struct iovec){ .iov_base = msg, .iov_len = sizeof(msg_name) - 1 + ml };
	return sd_journal_sendv(j->iov, (int)j->n);
}

int log_full(enum log_level l, int err, const char *file, int line, const char *func, const struct log_fields *f,
	     const char *fmt, ...)
{
	int saved = errno;
	if (err < 0)
		err = -err;
	if (l <= max_level) {
		va_list ap;
		int sent = -1;
		if (log_to_journal()) {
			va_start(ap, fmt);
			sent = journal_send(l, err, file, line, func, f, fmt, ap);
			va_end(ap);
		}
		if (sent < 0) { /* not the journal, or it refused: the plain line, never nothing */
			pthread_mutex_lock(&lock);
			if (prefix < 0)
				prefix = !isatty(STDERR_FILENO);
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
	}
	errno = saved;
	return -err;
}
