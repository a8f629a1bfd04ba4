/* The configuration loader of config/config.h: reads the libconfig file of DESIGN.md "Config"
 * over the built-in defaults, checks every key's type and range, refuses unknown keys, and
 * reports the first problem as "FILE:LINE: key 'a.b': what is wrong (got VALUE)". It owns the
 * key tables (one per group), the reading of database.password_file and the slot list checks.
 * libconfig 1.5 silently wraps integer literals that do not fit 32 bits (3000000000 reads as
 * -1294967296), so the file text is also scanned for such literals before the values are used,
 * and @include is refused (included files would escape that scan and the key checks).
 * Secrets: the config file and the password files are opened with open_regular() (a FIFO or a
 * device is refused at once, never read); a file holding a password (the config file with an
 * inline database.password, a password_file) must not be accessible to others, and no message
 * ever shows a password's value. */
#include "config/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/macro.h"
#include "util/openfile.h"
#include "util/name.h"
#include "util/portpath.h"
#include "util/size.h"
#include "util/message.h"

#define CONFIG_MAX_FILE_SIZE 1048576 /* 1 MiB */
#define MAX_SLOTS	     64
#define MAX_RETRY_DELAYS     16
#define MAX_DB_HOSTS	     16
#define MIN_PERIOD	     0.05 /* s: worker.poll_interval and heartbeat_interval, stuck.check_interval */

static const char *const usb_mode_table[_USB_MODE_MAX] = {
	[USB_MODE_UDEV] = "udev",
	[USB_MODE_STATIC] = "static",
};

const char *usb_mode_to_string(enum usb_mode m)
{
	if ((unsigned)m >= _USB_MODE_MAX)
		return NULL;
	return usb_mode_table[m];
}

/* ---- defaults ----------------------------------------------------------------------------- */

static char *default_station(void)
{
	char host[HOST_NAME_MAX + 1];

	if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
		return strdup("localhost");
	host[sizeof(host) - 1] = '\0';
	return strdup(host);
}

static bool defaults_complete(const struct uf_config *cfg);

int config_init_defaults(struct uf_config *cfg)
{
	static const double delays[] = { 5, 15, 60 };

	*cfg = (struct uf_config){
	    .path = NULL,
	    .station = default_station(),
	    .db =
		{
		    .host = strdup("127.0.0.1"),
		    .port = 3306,
		    .socket = strdup(""),
		    .user = strdup("usbforge"),
		    .password = NULL,
		    .name = strdup("usbforge"),
		},
	    .worker =
		{
		    .poll_interval = 5.0,
		    .max_concurrent = 3,
		    .heartbeat_interval = 5.0,
		    .capacity_tolerance = 0.10,
		},
	    .stuck =
		{
		    .processing_timeout = 300,
		    .queued_timeout = 900,
		    .check_interval = 60,
		},
	    .content = {.root = strdup("/var/lib/usbforge/content"), .images = strdup("/var/lib/usbforge/images")},
	    .usb = {.mode = USB_MODE_UDEV, .slots = NULL, .n_slots = 0},
	    .write =
		{
		    .buffer_size = 2ULL * 1024 * 1024,
		    .queue_depth = 4,
		    .verify = true,
		    .verify_full = false,
		    .reset_before_verify = true,
		    .sync_interval = 256ULL * 1024 * 1024,
		    .stall_timeout = 180,
		    .probe = true,
		},
	    .http = {.listen = strdup(""), .host = strdup(""), .token_file = strdup("")},
	    .events = {.webhook = strdup(""), .secret_file = strdup(""), .timeout = 10},
	    .retention = {.older_than_s = 90LL * 86400, .jobs = false, .daily = false},
	};
	cfg->retry.delays = malloc(sizeof(delays));
	if (cfg->retry.delays) {
		memcpy(cfg->retry.delays, delays, sizeof(delays));
		cfg->retry.n_delays = ARRAY_SIZE(delays);
	}
	if (!defaults_complete(cfg)) {
		config_done(cfg);
		return -ENOMEM;
	}
	return 0;
}

static bool defaults_complete(const struct uf_config *cfg)
{
	return cfg->station && cfg->db.host && cfg->db.socket && cfg->db.user && cfg->db.name && cfg->content.root &&
	       cfg->content.images && cfg->retry.delays && cfg->http.listen && cfg->http.host && cfg->http.token_file &&
	       cfg->events.webhook && cfg->events.secret_file;
}

static void slots_free(struct slot_conf *slots, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(slots[i].name);
		free(slots[i].port);
		free(slots[i].path);
	}
	free(slots);
}

static void db_hosts_free(struct uf_db_host *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(h[i].host);
	free(h);
}

static char *dup_or_null_oom(const char *s, bool *oom)
{
	char *d = s ? strdup(s) : NULL;
	if (s && !d)
		*oom = true;
	return d;
}

int config_copy_database(struct uf_config *dst, const struct uf_config *src)
{
	bool oom = false;
	dst->db.host = dup_or_null_oom(src->db.host, &oom);
	dst->db.port = src->db.port;
	dst->db.socket = dup_or_null_oom(src->db.socket, &oom);
	dst->db.user = dup_or_null_oom(src->db.user, &oom);
	dst->db.password = dup_or_null_oom(src->db.password, &oom);
	dst->db.name = dup_or_null_oom(src->db.name, &oom);
	if (src->db.n_hosts) {
		dst->db.hosts = calloc(src->db.n_hosts, sizeof(*dst->db.hosts));
		oom |= !dst->db.hosts;
		for (size_t i = 0; dst->db.hosts && i < src->db.n_hosts; i++) {
			dst->db.hosts[i].host = dup_or_null_oom(src->db.hosts[i].host, &oom);
			dst->db.hosts[i].port = src->db.hosts[i].port;
		}
		dst->db.n_hosts = dst->db.hosts ? src->db.n_hosts : 0;
	}
	if (!oom)
		return 0;
	free(dst->db.host);
	db_hosts_free(dst->db.hosts, dst->db.n_hosts);
	free(dst->db.socket);
	free(dst->db.user);
	if (dst->db.password)
		explicit_bzero(dst->db.password, strlen(dst->db.password));
	free(dst->db.password);
	free(dst->db.name);
	memset(&dst->db, 0, sizeof(dst->db));
	return -ENOMEM;
}

void config_done(struct uf_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->station);
	free(cfg->db.host);
	db_hosts_free(cfg->db.hosts, cfg->db.n_hosts);
	free(cfg->db.socket);
	free(cfg->db.user);
	if (cfg->db.password)
		explicit_bzero(cfg->db.password, strlen(cfg->db.password));
	free(cfg->db.password);
	free(cfg->db.name);
	free(cfg->db.admin.user);
	free(cfg->db.admin.password_file);
	free(cfg->retry.delays);
	free(cfg->content.root);
	free(cfg->content.images);
	slots_free(cfg->usb.slots, cfg->usb.n_slots);
	free(cfg->http.listen);
	free(cfg->http.host);
	free(cfg->http.token_file);
	free(cfg->events.webhook);
	free(cfg->events.secret_file);
	memset(cfg, 0, sizeof(*cfg));
}

/* ---- the loader and its error message ------------------------------------------------------ */

struct loader {
	const char *file; /* as given, for messages */
	char *dir;	  /* absolute directory of file, for relative paths */
	char *error;	  /* the first error, malloc'd */
	bool oom;
	struct uf_config *cfg;
	config_t lc;
	char *password_file; /* resolved path of database.password_file, read at the end */
	const config_setting_t *slots;
	mode_t file_mode; /* of the config file itself (fstat of its descriptor) */
};

static int oom(struct loader *l)
{
	l->oom = true;
	return -ENOMEM;
}

/* Records "FILE:LINE: key 'KEY': MESSAGE" (line 0 and key NULL leave those parts out) as the
 * error, keeps the first one only, and returns r (-ENOMEM when the message cannot be built). */
static int _printf_(5, 6) failv(struct loader *l, unsigned line, const char *key, int r, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL, *where = NULL, *what = NULL;
	va_list ap;

	if (l->error)
		return r;
	va_start(ap, fmt);
	msg = str_vprintf(fmt, ap);
	va_end(ap);
	if (!msg)
		return oom(l);
	if (line > 0 ? asprintf(&where, "%s:%u", l->file, line) < 0 : asprintf(&where, "%s", l->file) < 0)
		return oom(l);
	if (key ? asprintf(&what, "key '%s': ", key) < 0 : asprintf(&what, "%s", "") < 0)
		return oom(l);
	if (asprintf(&l->error, "%s: %s%s", where, what, msg) < 0) {
		l->error = NULL;
		return oom(l);
	}
	return r;
}

#define fail(l, s, key, ...) failv((l), (s) ? config_setting_source_line(s) : 0, (key), -EINVAL, __VA_ARGS__)

/* T for messages, as a libconfig string would write it: '"' and '\\' escaped, and so are C0
 * controls, DEL and C1 controls (U+0080–U+009F, shown as \x80–\x9f), so that a message
 * stays one line and no value sends control sequences to the terminal. malloc'd; NULL on
 * OOM. */
static char *escape_text(const char *t)
{
	static const char hex[] = "0123456789abcdef";
	size_t len = strlen(t);
	char *out = malloc(len * 4 + 1), *o = out; /* at most 4 bytes out per byte in */

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
		if (*p == '"' || *p == '\\' || *p == '\n' || *p == '\t') {
			*o++ = '\\';
			*o++ = (char)(*p == '\n' ? 'n' : *p == '\t' ? 't' : *p);
		} else if (*p < 0x20 || *p == 0x7f || (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) {
			unsigned c = *p == 0xc2 ? *++p : *p; /* C1: the code point, \x80-\x9f */
			*o++ = '\\';
			*o++ = 'x';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)*p;
		}
	}
	*o = '\0';
	return out;
}

/* A short description of what a setting holds, for "(got …)": 0, 2.5, "abc", true, a group. */
static char *describe(const config_setting_t *s)
{
	_cleanup_free_ char *text = NULL;
	char *d = NULL;
	int r = -1;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		r = asprintf(&d, "%lld", config_setting_get_int64(s));
		break;
	case CONFIG_TYPE_FLOAT:
		r = asprintf(&d, "%.15g", config_setting_get_float(s));
		break;
	case CONFIG_TYPE_STRING:
		text = escape_text(config_setting_get_string(s));
		r = text ? asprintf(&d, "\"%s\"", text) : -1;
		break;
	case CONFIG_TYPE_BOOL:
		r = asprintf(&d, "%s", config_setting_get_bool(s) ? "true" : "false");
		break;
	case CONFIG_TYPE_GROUP:
		r = asprintf(&d, "a group { … }");
		break;
	case CONFIG_TYPE_LIST:
		r = asprintf(&d, "a list ( … )");
		break;
	case CONFIG_TYPE_ARRAY:
		r = asprintf(&d, "an array [ … ]");
		break;
	default:
		r = asprintf(&d, "nothing");
		break;
	}
	return r < 0 ? NULL : d;
}

/* fail() with " (got DESCRIPTION)" appended. */
#define fail_got(l, s, key, fmt, ...)                                                                                  \
	({                                                                                                             \
		_cleanup_free_ char *_got = describe(s);                                                               \
		_got ? fail((l), (s), (key), fmt " (got %s)", ##__VA_ARGS__, _got) : oom(l);                           \
	})

static char *key_join(const char *prefix, const char *name)
{
	char *k = NULL;

	if (!prefix || !*prefix)
		return strdup(name);
	if (asprintf(&k, "%s.%s", prefix, name) < 0)
		return NULL;
	return k;
}

static bool is_int(const config_setting_t *s)
{
	return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

static bool is_number(const config_setting_t *s) { return is_int(s) || config_setting_type(s) == CONFIG_TYPE_FLOAT; }

/* "greater than 0 and at most 3600", "between 0 and 86400". */
static char *range_text(double min, bool min_exclusive, double max)
{
	char *t = NULL;
	int r = min_exclusive ? asprintf(&t, "greater than %.15g and at most %.15g", min, max)
			      : asprintf(&t, "between %.15g and %.15g", min, max);
	return r < 0 ? NULL : t;
}

/* A path from the file: relative ones are taken relative to the file's directory. */
static char *resolve_path(const struct loader *l, const char *v)
{
	_cleanup_free_ char *p = NULL;

	if (v[0] == '\0')
		return strdup(v);
	if (v[0] != '/' && asprintf(&p, "%s/%s", l->dir, v) < 0)
		return NULL;
	return path_tidy(p ? p : v); /* "/srv/x/" and "/srv//x" name /srv/x: one spelling */
}

/* ---- key tables ----------------------------------------------------------------------------- */

enum key_kind {
	K_STRING,  /* char * at off */
	K_UINT,	   /* unsigned at off, integer in [min, max] */
	K_SECONDS, /* double at off, number or duration string in [min, max] */
	K_NUMBER,  /* double at off, number in [min, max] */
	K_BOOL,	   /* bool at off */
	K_SIZE,	   /* uint64_t at off: size string or integer in [min, max], a multiple of align */
	K_GROUP,   /* sub-table */
	K_CUSTOM,  /* fn */
};

enum {
	F_MIN_EXCLUSIVE = 1 << 0, /* K_SECONDS/K_NUMBER: value > min */
	F_EMPTY_OK = 1 << 1,	  /* K_STRING: "" allowed */
	F_NAME = 1 << 2,	  /* K_STRING: [A-Za-z0-9._:-], at most NAME_MAX_LEN */
	F_PATH = 1 << 3,	  /* K_STRING: relative to the file's directory */
	F_SECRET = 1 << 4,	  /* K_STRING, K_GROUP: never show the value in a message */
};

struct key_def {
	const char *name;
	enum key_kind kind;
	unsigned flags;
	size_t off;
	double min, max;
	uint64_t align;	  /* K_SIZE: 0 = any */
	const char *hint; /* K_SIZE: what is wrong when out of [min, max] or unaligned */
	int (*fn)(struct loader *l, const config_setting_t *s, const char *key);
	const struct key_def *sub;
	size_t n_sub;
};

#define FIELD(f)	 offsetof(struct uf_config, f)
#define AT(l, def, type) ((type *)((char *)(l)->cfg + (def)->off))

static int load_password_file(struct loader *l, const config_setting_t *s, const char *key);
static int load_admin_password_file(struct loader *l, const config_setting_t *s, const char *key);
static int refuse_admin_password(struct loader *l, const config_setting_t *s, const char *key);
static int load_retry_delays(struct loader *l, const config_setting_t *s, const char *key);
static int load_db_hosts(struct loader *l, const config_setting_t *s, const char *key);
static int load_usb_mode(struct loader *l, const config_setting_t *s, const char *key);
static int load_usb_slots(struct loader *l, const config_setting_t *s, const char *key);
static int load_http_listen(struct loader *l, const config_setting_t *s, const char *key);
static int load_http_token_file(struct loader *l, const config_setting_t *s, const char *key);
static int load_events_webhook(struct loader *l, const config_setting_t *s, const char *key);
static int load_events_secret_file(struct loader *l, const config_setting_t *s, const char *key);
static int load_retention_age(struct loader *l, const config_setting_t *s, const char *key);

/* clang-format off */
#define STR(n, f, fl)        { .name = (n), .kind = K_STRING, .off = FIELD(f), .flags = (fl) }
#define UINT(n, f, lo, hi)   { .name = (n), .kind = K_UINT, .off = FIELD(f), .min = (lo), .max = (hi) }
#define SECONDS(n, f, hi)    { .name = (n), .kind = K_SECONDS, .off = FIELD(f), .max = (hi), .flags = F_MIN_EXCLUSIVE }
/* a period the daemon runs a statement at: a floor keeps it from spinning on the database */
#define PERIOD(n, f, lo, hi) { .name = (n), .kind = K_SECONDS, .off = FIELD(f), .min = (lo), .max = (hi) }
#define NUMBER(n, f, lo, hi) { .name = (n), .kind = K_NUMBER, .off = FIELD(f), .min = (lo), .max = (hi) }
#define BOOL(n, f)           { .name = (n), .kind = K_BOOL, .off = FIELD(f) }
#define SIZE(n, f, lo, hi, al, h) \
	{ .name = (n), .kind = K_SIZE, .off = FIELD(f), .min = (lo), .max = (hi), .align = (al), .hint = (h) }
#define CUSTOM(n, f)         { .name = (n), .kind = K_CUSTOM, .fn = (f) }
#define GROUP(n, t)          { .name = (n), .kind = K_GROUP, .sub = (t), .n_sub = ARRAY_SIZE(t) }

static const struct key_def admin_keys[] = {
	STR("user", db.admin.user, 0),
	CUSTOM("password_file", load_admin_password_file),
	CUSTOM("password", refuse_admin_password),
};

static const struct key_def database_keys[] = {
	STR("host", db.host, 0),
	CUSTOM("hosts", load_db_hosts),
	UINT("port", db.port, 1, 65535),
	STR("socket", db.socket, F_EMPTY_OK | F_PATH),
	STR("user", db.user, 0),
	STR("password", db.password, F_EMPTY_OK | F_SECRET),
	CUSTOM("password_file", load_password_file),
	{ .name = "name", .kind = K_STRING, .off = FIELD(db.name), .max = 64 },
	{ .name = "admin", .kind = K_GROUP, .flags = F_SECRET, .sub = admin_keys, .n_sub = ARRAY_SIZE(admin_keys) },
};

static const struct key_def worker_keys[] = {
	PERIOD("poll_interval", worker.poll_interval, MIN_PERIOD, 3600),
	UINT("max_concurrent", worker.max_concurrent, 1, 64),
	PERIOD("heartbeat_interval", worker.heartbeat_interval, MIN_PERIOD, 3600),
	NUMBER("capacity_tolerance", worker.capacity_tolerance, 0, 0.5),
};

static const struct key_def retry_keys[] = {
	CUSTOM("delays", load_retry_delays),
};

static const struct key_def stuck_keys[] = {
	SECONDS("processing_timeout", stuck.processing_timeout, 86400),
	SECONDS("queued_timeout", stuck.queued_timeout, 30 * 86400),
	PERIOD("check_interval", stuck.check_interval, MIN_PERIOD, 3600),
};

static const struct key_def content_keys[] = {
	STR("root", content.root, F_PATH),
	STR("images", content.images, F_PATH),
};

static const struct key_def usb_keys[] = {
	CUSTOM("mode", load_usb_mode),
	CUSTOM("slots", load_usb_slots),
};

static const struct key_def write_keys[] = {
	SIZE("buffer_size", write.buffer_size, 64 * 1024, 256 * 1024 * 1024, 4096,
	     "must be a multiple of 4 KiB between 64 KiB and 256 MiB"),
	UINT("queue_depth", write.queue_depth, 1, 64),
	BOOL("verify", write.verify),
	BOOL("verify_full", write.verify_full),
	BOOL("reset_before_verify", write.reset_before_verify),
	SIZE("sync_interval", write.sync_interval, 1024 * 1024, (double)(64ULL << 30), 4096,
	     "must be a multiple of 4 KiB between 1 MiB and 64 GiB"),
	SECONDS("stall_timeout", write.stall_timeout, 86400),
	BOOL("probe", write.probe),
	SIZE("max_rate", write.max_rate, 0, (double)UINT64_MAX, 0, NULL),
};

static const struct key_def http_keys[] = {
	CUSTOM("listen", load_http_listen),
	CUSTOM("token_file", load_http_token_file),
};

static const struct key_def events_keys[] = {
	CUSTOM("webhook", load_events_webhook),
	CUSTOM("secret_file", load_events_secret_file),
	SECONDS("timeout", events.timeout, 300),
};

static const struct key_def retention_keys[] = {
	CUSTOM("older_than", load_retention_age),
	BOOL("jobs", retention.jobs),
	BOOL("daily", retention.daily),
};

static const struct key_def root_keys[] = {
	STR("station", station, F_NAME),
	GROUP("database", database_keys),
	GROUP("worker", worker_keys),
	GROUP("retry", retry_keys),
	GROUP("stuck", stuck_keys),
	GROUP("content", content_keys),
	GROUP("usb", usb_keys),
	GROUP("write", write_keys),
	GROUP("http", http_keys),
	GROUP("events", events_keys),
	GROUP("retention", retention_keys),
};
/* clang-format on */

static char *known_keys(const struct key_def *defs, size_t n)
{
	size_t len = 1;
	char *t, *p;

	for (size_t i = 0; i < n; i++)
		len += strlen(defs[i].name) + 2;
	t = p = malloc(len);
	if (!t)
		return NULL;
	*p = '\0';
	for (size_t i = 0; i < n; i++)
		p += snprintf(p, len - (size_t)(p - t), "%s%s", i ? ", " : "", defs[i].name);
	return t;
}

static int load_string(struct loader *l, const struct key_def *def, const config_setting_t *s, const char *key)
{
	const char *v;
	char **field = AT(l, def, char *);
	char *copy;
	size_t max = def->max > 0 ? (size_t)def->max : (def->flags & F_NAME) ? NAME_MAX_LEN : 4096;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		if (def->flags & F_SECRET)
			return fail(l, s, key, "must be a string in double quotes (the value is not shown)");
		return fail_got(l, s, key, "must be a string");
	}
	v = config_setting_get_string(s);
	if (!*v && !(def->flags & F_EMPTY_OK))
		return fail(l, s, key, "must not be empty");
	if (strlen(v) > max && (def->flags & F_SECRET))
		return fail(l, s, key, "must be at most %zu characters long", max);
	if (strlen(v) > max)
		return fail(l, s, key, "must be at most %zu characters long (got %zu)", max, strlen(v));
	if ((def->flags & F_NAME) && !name_chars_ok(v))
		return fail_got(l, s, key, "may contain only letters, digits, '.', '_', ':' and '-'");
	copy = (def->flags & F_PATH) ? resolve_path(l, v) : strdup(v);
	if (!copy)
		return oom(l);
	free(*field);
	*field = copy;
	return 0;
}

static int load_uint(struct loader *l, const struct key_def *def, const config_setting_t *s, const char *key)
{
	long long v;

	if (!is_int(s))
		return fail_got(l, s, key, "must be an integer between %.0f and %.0f", def->min, def->max);
	v = config_setting_get_int64(s);
	if ((double)v < def->min || (double)v > def->max)
		return fail_got(l, s, key, "must be an integer between %.0f and %.0f", def->min, def->max);
	*AT(l, def, unsigned) = (unsigned)v;
	return 0;
}

static bool in_range(double v, double min, bool min_exclusive, double max)
{
	if (!isfinite(v) || v > max)
		return false;
	return min_exclusive ? v > min : v >= min;
}

static int load_seconds(struct loader *l, const struct key_def *def, const config_setting_t *s, const char *key)
{
	bool excl = def->flags & F_MIN_EXCLUSIVE;
	_cleanup_free_ char *range = range_text(def->min, excl, def->max);
	double v;

	if (!range)
		return oom(l);
	if (is_number(s))
		v = is_int(s) ? (double)config_setting_get_int64(s) : config_setting_get_float(s);
	else if (config_setting_type(s) != CONFIG_TYPE_STRING || parse_duration(config_setting_get_string(s), &v) < 0)
		return fail_got(l, s, key, "must be a number of seconds %s", range);
	if (!in_range(v, def->min, excl, def->max))
		return fail_got(l, s, key, "must be a number of seconds %s", range);
	*AT(l, def, double) = v;
	return 0;
}

static int load_number(struct loader *l, const struct key_def *def, const config_setting_t *s, const char *key)
{
	bool excl = def->flags & F_MIN_EXCLUSIVE;
	_cleanup_free_ char *range = range_text(def->min, excl, def->max);
	double v;

	if (!range)
		return oom(l);
	if (!is_number(s))
		return fail_got(l, s, key, "must be a number %s", range);
	v = is_int(s) ? (double)config_setting_get_int64(s) : config_setting_get_float(s);
	if (!in_range(v, def->min, excl, def->max))
		return fail_got(l, s, key, "must be a number %s", range);
	*AT(l, def, double) = v;
	return 0;
}

static int load_bool(struct loader *l, const struct key_def *def, const config_setting_t *s, const char *key)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return fail_got(l, s, key, "must be true or false");
	*AT(l, def, bool) = config_setting_get_bool(s);
	return 0;
}

static int load_size(struct loader *l, const struct key_def *def, const config_setting_t *s, const char *key)
{
	uint64_t v;

	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		int r = parse_size(config_setting_get_string(s), &v);
		if (r == -ERANGE)
			return fail_got(l, s, key, "is too large");
		if (r < 0)
			return fail_got(l, s, key, "must be a size such as \"4MiB\", \"1M\" or a number of bytes");
	} else if (is_int(s) && config_setting_get_int64(s) >= 0)
		v = (uint64_t)config_setting_get_int64(s);
	else
		return fail_got(l, s, key, "must be a size such as \"4MiB\", \"1M\" or a number of bytes");
	if ((double)v < def->min || (double)v > def->max || (def->align && v % def->align))
		return fail_got(l, s, key, "%s", def->hint ? def->hint : "is out of range");
	*AT(l, def, uint64_t) = v;
	return 0;
}

static int load_group(struct loader *l, const config_setting_t *g, const char *prefix, const struct key_def *defs,
		      size_t n_defs);

static int load_key(struct loader *l, const struct key_def *def, const config_setting_t *s, const char *key)
{
	switch (def->kind) {
	case K_STRING:
		return load_string(l, def, s, key);
	case K_UINT:
		return load_uint(l, def, s, key);
	case K_SECONDS:
		return load_seconds(l, def, s, key);
	case K_NUMBER:
		return load_number(l, def, s, key);
	case K_BOOL:
		return load_bool(l, def, s, key);
	case K_SIZE:
		return load_size(l, def, s, key);
	case K_GROUP:
		if (config_setting_type(s) != CONFIG_TYPE_GROUP && (def->flags & F_SECRET))
			return fail(l, s, key, "must be a group { … } (the value is not shown)");
		if (config_setting_type(s) != CONFIG_TYPE_GROUP)
			return fail_got(l, s, key, "must be a group { … }");
		return load_group(l, s, key, def->sub, def->n_sub);
	case K_CUSTOM:
		return def->fn(l, s, key);
	}
	return -EINVAL;
}

static int load_group(struct loader *l, const config_setting_t *g, const char *prefix, const struct key_def *defs,
		      size_t n_defs)
{
	int n = config_setting_length(g);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct key_def *def = NULL;
		_cleanup_free_ char *key = key_join(prefix, name ? name : "?");
		int r;

		if (!key)
			return oom(l);
		for (size_t j = 0; j < n_defs && !def; j++)
			if (name && strcmp(defs[j].name, name) == 0)
				def = &defs[j];
		if (!def) {
			_cleanup_free_ char *known = known_keys(defs, n_defs);
			if (!known)
				return oom(l);
			return fail(l, s, key, "unknown key (known keys%s%s: %s)", *prefix ? " in " : "", prefix,
				    known);
		}
		r = load_key(l, def, s, key);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- custom keys ---------------------------------------------------------------------------- */

/* A non-empty string naming a file, resolved against the config file's folder, into *slot. */
static int load_file_path(struct loader *l, const config_setting_t *s, const char *key, char **slot)
{
	const char *v;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail_got(l, s, key, "must be a string");
	v = config_setting_get_string(s);
	if (!*v)
		return fail(l, s, key, "must not be empty");
	for (const unsigned char *c = (const unsigned char *)v; *c; c++)
		if (*c < 0x20 || *c == 0x7f) /* every later message names the file: keep it one line */
			return fail_got(l, s, key, "must not contain control characters");
	free(*slot);
	*slot = resolve_path(l, v);
	return *slot ? 0 : oom(l);
}

static int load_password_file(struct loader *l, const config_setting_t *s, const char *key)
{
	return load_file_path(l, s, key, &l->password_file);
}

static int load_admin_password_file(struct loader *l, const config_setting_t *s, const char *key)
{
	struct uf_config *c = l->cfg;
	int r = load_file_path(l, s, key, &c->db.admin.password_file);
	if (r == 0)
		c->db.admin.password_file_line = (unsigned)config_setting_source_line(s);
	return r;
}

static int refuse_admin_password(struct loader *l, const config_setting_t *s, const char *key)
{
	return fail(l, s, key,
		    "is not accepted: the admin password belongs in a file only its owner can read "
		    "(database.admin.password_file, chmod 600), not in a file the usbforge group reads");
}

/* *ret = the formatted message and r, or *ret = NULL and -ENOMEM. */
static int _printf_(3, 4) msgf(char **ret, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	*ret = str_vprintf(fmt, ap);
	va_end(ap);
	return *ret ? r : -ENOMEM;
}

/* Who may hold a file that holds a password. */
enum secret_rule {
	SECRET_GROUP_MAY_READ, /* the config file, password_file: the usbforge group (operators) reads them */
	SECRET_OWNER_ONLY,     /* database.admin.password_file */
};

/* 0 when a file of mode suits rule; else -EINVAL and *ret_msg (malloc'd) says what is wrong
 * with path, or -ENOMEM. */
static int secret_mode_check(const char *path, mode_t mode, enum secret_rule rule, char **ret_msg)
{
	if (rule == SECRET_GROUP_MAY_READ) {
		if (!(mode & (S_IWGRP | S_IRWXO)))
			return 0;
		return msgf(ret_msg, -EINVAL,
			    "'%s' has mode %04o: a file holding a database password must not be readable or "
			    "writable by others nor writable by its group (chmod g-w,o-rwx '%s'; the usbforge "
			    "group may read it)",
			    path, (unsigned)(mode & 07777), path);
	}
	if (!(mode & 077))
		return 0;
	return msgf(ret_msg, -EINVAL,
		    "'%s' has mode %04o: the admin password file must be readable by its owner only (chmod 600 '%s')",
		    path, (unsigned)(mode & 07777), path);
}

/* "'PATH' is a FIFO, not a regular file" for a path that open_regular() refused with r, else
 * "cannot read 'PATH': REASON". malloc'd; NULL on ENOMEM. */
static char *not_regular_text(const char *path, int r)
{
	bool special = r == -EINVAL || r == -EISDIR || r == -ENXIO;
	struct stat st;
	char *m = NULL;
	int q;

	if (special && stat(path, &st) == 0 && !S_ISREG(st.st_mode) &&
	    strcmp(file_kind(st.st_mode), "not a regular file") != 0)
		q = asprintf(&m, "'%s' is %s, not a regular file", path, file_kind(st.st_mode));
	else if (special)
		q = asprintf(&m, "'%s' is not a regular file", path);
	else
		q = asprintf(&m, "cannot read '%s': %s", path, strerror(-r));
	return q < 0 ? NULL : m;
}

/* Reads the first line of a file holding a password: opened with open_regular (never blocks on
 * a FIFO), its mode checked on that descriptor against rule. 0 and *ret_line (malloc'd), or a
 * negative errno and *ret_msg (malloc'd, naming the path, never the content; NULL with
 * -ENOMEM). */
static int read_secret_file(const char *p, enum secret_rule rule, char **ret_line, char **ret_msg)
{
	_cleanup_close_ int fd = -1;
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	struct stat st;
	int r;

	*ret_msg = NULL;
	fd = open_regular(p, &st);
	if (fd < 0) {
		r = fd == -EISDIR || fd == -ENXIO ? -EINVAL : fd;
		*ret_msg = not_regular_text(p, fd);
		return *ret_msg ? r : -ENOMEM;
	}
	r = secret_mode_check(p, st.st_mode, rule, ret_msg);
	if (r < 0)
		return r;
	f = fdopen(fd, "re");
	if (!f)
		return msgf(ret_msg, -EIO, "cannot read '%s': %s", p, strerror(errno));
	/* owned by f now; closep reads fd at scope exit, which clang-tidy 14 does not model */
	fd = -1; // NOLINT(clang-analyzer-deadcode.DeadStores)
	errno = 0;
	n = getline(&line, &cap, f);
	if (n < 0 && ferror(f))
		return msgf(ret_msg, -EIO, "cannot read '%s': %s", p, strerror(errno ? errno : EIO));
	if (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	if (n <= 0)
		return msgf(ret_msg, -EINVAL, "'%s' is empty: its first line must be the password", p);
	if (memchr(line, '\0', (size_t)n)) {
		explicit_bzero(line, (size_t)n);
		return msgf(ret_msg, -EINVAL, "'%s' contains a NUL byte in its first line", p);
	}
	*ret_line = TAKE_PTR(line);
	return 0;
}

/* Reads the password file once the whole file is known to be consistent. */
static int read_password_file(struct loader *l, const config_setting_t *s, const char *key)
{
	_cleanup_free_ char *msg = NULL;
	char *pw = NULL;
	int r = read_secret_file(l->password_file, SECRET_GROUP_MAY_READ, &pw, &msg);

	if (r < 0)
		return msg ? fail(l, s, key, "%s", msg) : oom(l);
	free(l->cfg->db.password);
	l->cfg->db.password = pw;
	return 0;
}

/* database.admin: a user, and a password file checked here as far as this reader can see it
 * (kind and mode: stat needs no right on the file) and read only by config_admin_password(). */
static int check_admin(struct loader *l)
{
	config_setting_t *g = config_lookup(&l->lc, "database.admin");
	config_setting_t *pf = config_lookup(&l->lc, "database.admin.password_file");
	const char *p = l->cfg->db.admin.password_file;
	const char *key = "database.admin.password_file";
	_cleanup_free_ char *m = NULL;
	struct stat st;

	if (!g)
		return 0;
	if (!l->cfg->db.admin.user)
		return failv(l, (unsigned)config_setting_source_line(g), "database.admin", -EINVAL,
			     "has no 'user': name the account that may change the schema, e.g. "
			     "admin = { user = \"usbforge_admin\"; password_file = \"…\"; }");
	if (!p)
		return 0;
	if (stat(p, &st) < 0) {
		if (errno == EACCES)
			return 0; /* a directory on the way is closed to this reader: db migrate checks it */
		return fail(l, pf, key, "cannot read '%s': %s", p, strerror(errno));
	}
	if (!S_ISREG(st.st_mode)) {
		m = not_regular_text(p, -EINVAL);
		return m ? fail(l, pf, key, "%s", m) : oom(l);
	}
	int r = secret_mode_check(p, st.st_mode, SECRET_OWNER_ONLY, &m);
	if (r < 0)
		return r == -EINVAL ? fail(l, pf, key, "%s", m) : oom(l);
	return 0;
}

int config_admin_password(const struct uf_config *cfg, char **ret_password, char **ret_error)
{
	_cleanup_free_ char *msg = NULL;
	char *pw = NULL, *e = NULL;
	int r;

	if (!cfg->db.admin.user) {
		r = -EINVAL;
		if (asprintf(&e, "%s: no database.admin group: no admin account is configured",
			     cfg->path ? cfg->path : "(built-in defaults)") < 0)
			e = NULL;
	} else if (!cfg->db.admin.password_file) {
		*ret_password = NULL;
		return 0;
	} else {
		r = read_secret_file(cfg->db.admin.password_file, SECRET_OWNER_ONLY, &pw, &msg);
		if (r == 0) {
			*ret_password = pw;
			return 0;
		}
		if (!msg || asprintf(&e, "%s:%u: key 'database.admin.password_file': %s", cfg->path ? cfg->path : "?",
				     cfg->db.admin.password_file_line, msg) < 0) {
			r = -ENOMEM;
			e = NULL;
		}
	}
	if (ret_error)
		*ret_error = e ? e : strdup("out of memory");
	else
		free(e);
	return r;
}

int config_parse_db_host(const char *entry, char **ret_host, unsigned *ret_port)
{
	const char *h = entry, *end, *colon;
	size_t len = strlen(entry);
	unsigned long port = 0;

	if (len == 0 || len > 255 + 8)
		return -EINVAL;
	if (entry[0] == '[') { /* [IPv6] or [IPv6]:PORT */
		end = strchr(entry, ']');
		if (!end || end == entry + 1)
			return -EINVAL;
		h = entry + 1;
		colon = end[1] == ':' ? end + 1 : NULL;
		if (!colon && end[1] != '\0')
			return -EINVAL;
		char tmp[INET6_ADDRSTRLEN];
		struct in6_addr a6;
		if ((size_t)(end - h) >= sizeof(tmp))
			return -EINVAL;
		memcpy(tmp, h, (size_t)(end - h));
		tmp[end - h] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return -EINVAL;
	} else {
		colon = strchr(entry, ':');
		end = colon ? colon : entry + len;
		if (end == entry || (size_t)(end - entry) > 255)
			return -EINVAL;
		for (const char *p = entry; p < end; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			      *p == '.' || *p == '-' || *p == '_'))
				return -EINVAL;
	}
	if (colon) {
		const char *d = colon + 1;
		if (*d == '\0' || strlen(d) > 5)
			return -EINVAL;
		for (const char *p = d; *p; p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			port = port * 10 + (unsigned long)(*p - '0');
		}
		if (port < 1 || port > 65535)
			return -EINVAL;
	}
	char *host = strndup(h, (size_t)(end - h));
	if (!host)
		return -ENOMEM;
	*ret_host = host;
	*ret_port = (unsigned)port;
	return 0;
}

/* database.hosts = ( "HOST[:PORT]", … ): 1 to MAX_DB_HOSTS entries, never beside database.host
 * or a database.socket (which would leave unclear which server is meant). */
static int load_db_hosts(struct loader *l, const config_setting_t *s, const char *key)
{
	int type = config_setting_type(s);
	int n = config_setting_length(s);
	struct uf_db_host *hosts = NULL;
	size_t got = 0;
	int r = 0;

	if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
		return fail_got(l, s, key,
				"must be a list of 1 to %d \"HOST:PORT\" strings, e.g. ( \"10.0.0.1:3306\", "
				"\"10.0.0.2:3306\" )",
				MAX_DB_HOSTS);
	if (n < 1 || n > MAX_DB_HOSTS)
		return fail(l, s, key, "must hold 1 to %d servers (got %d)", MAX_DB_HOSTS, n);
	const config_setting_t *other = config_lookup(&l->lc, "database.host");
	if (other)
		return fail(l, s, key, "cannot be used together with 'database.host' (line %u): set only one",
			    (unsigned)config_setting_source_line(other));
	other = config_lookup(&l->lc, "database.socket");
	if (other && config_setting_type(other) == CONFIG_TYPE_STRING && *config_setting_get_string(other))
		return fail(l, s, key, "cannot be used together with a 'database.socket' (line %u): set only one",
			    (unsigned)config_setting_source_line(other));
	hosts = calloc((size_t)n, sizeof(*hosts));
	if (!hosts)
		return oom(l);
	for (int i = 0; i < n && r == 0; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		_cleanup_free_ char *ekey = NULL;

		if (asprintf(&ekey, "%s[%d]", key, i) < 0) {
			ekey = NULL;
			r = oom(l);
			break;
		}
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			r = fail_got(l, e, ekey, "must be a string \"HOST\", \"HOST:PORT\" or \"[IPv6]:PORT\"");
			break;
		}
		r = config_parse_db_host(config_setting_get_string(e), &hosts[i].host, &hosts[i].port);
		if (r == -ENOMEM)
			r = oom(l);
		else if (r < 0)
			r = fail_got(l, e, ekey,
				     "must be \"HOST\", \"HOST:PORT\" or \"[IPv6]:PORT\" (HOST a name or an address, PORT "
				     "1..65535; no port: database.port)");
		else
			got++;
	}
	if (r < 0) {
		db_hosts_free(hosts, got);
		return r;
	}
	db_hosts_free(l->cfg->db.hosts, l->cfg->db.n_hosts);
	l->cfg->db.hosts = hosts;
	l->cfg->db.n_hosts = (size_t)n;
	return 0;
}

static int load_retry_delays(struct loader *l, const config_setting_t *s, const char *key)
{
	int type = config_setting_type(s);
	int n = config_setting_length(s);
	_cleanup_free_ double *d = NULL;

	if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
		return fail_got(l, s, key, "must be an array of 0 to %d numbers of seconds, e.g. [5, 15, 60]",
				MAX_RETRY_DELAYS);
	if (n > MAX_RETRY_DELAYS)
		return fail(l, s, key, "must hold at most %d delays (got %d)", MAX_RETRY_DELAYS, n);
	d = calloc(n > 0 ? (size_t)n : 1, sizeof(double));
	if (!d)
		return oom(l);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		_cleanup_free_ char *ekey = NULL;
		double v = 0;

		if (asprintf(&ekey, "%s[%d]", key, i) < 0)
			return oom(l);
		if (is_number(e))
			v = is_int(e) ? (double)config_setting_get_int64(e) : config_setting_get_float(e);
		if (!is_number(e) || !in_range(v, 0, false, 86400))
			return fail_got(l, e, ekey, "must be a number of seconds between 0 and 86400");
		d[i] = v;
	}
	free(l->cfg->retry.delays);
	l->cfg->retry.delays = TAKE_PTR(d);
	l->cfg->retry.n_delays = (size_t)n;
	return 0;
}

static int load_usb_mode(struct loader *l, const config_setting_t *s, const char *key)
{
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		for (unsigned m = 0; m < _USB_MODE_MAX; m++)
			if (strcmp(config_setting_get_string(s), usb_mode_table[m]) == 0) {
				l->cfg->usb.mode = (enum usb_mode)m;
				return 0;
			}
	return fail_got(l, s, key, "must be \"udev\" or \"static\"");
}

static int load_usb_slots(struct loader *l, const config_setting_t *s, const char *key)
{
	/* Checked in check_slots() once usb.mode is known, wherever it stands in the group. */
	l->slots = s;
	return 0;
}

/* ---- checks that span keys ------------------------------------------------------------------ */

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	if (strcmp(a, b) == 0)
		return true;
	if (stat(a, &sa) < 0 || stat(b, &sb) < 0)
		return false;
	if (S_ISBLK(sa.st_mode) && S_ISBLK(sb.st_mode))
		return sa.st_rdev == sb.st_rdev;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int load_slot(struct loader *l, const config_setting_t *e, const char *ekey, struct slot_conf *slot)
{
	static const char *const members[] = { "name", "port", "path" };
	bool is_static = l->cfg->usb.mode == USB_MODE_STATIC;
	int n = config_setting_length(e);

	if (config_setting_type(e) != CONFIG_TYPE_GROUP)
		return fail_got(l, e, ekey, "must be a group such as { name = \"A\"; %s }",
				is_static ? "path = \"/dev/loop0\";" : "port = \"2-1.1\";");
	for (int i = 0; i < n; i++) {
		const config_setting_t *m = config_setting_get_elem(e, (unsigned)i);
		const char *name = config_setting_name(m);
		_cleanup_free_ char *mkey = NULL;
		const char *v;
		size_t which = ARRAY_SIZE(members);
		char **field;

		if (asprintf(&mkey, "%s.%s", ekey, name ? name : "?") < 0)
			return oom(l);
		for (size_t j = 0; j < ARRAY_SIZE(members); j++)
			if (name && strcmp(name, members[j]) == 0)
				which = j;
		if (which == ARRAY_SIZE(members))
			return fail(l, m, mkey, "unknown key (known keys in a slot: name, port, path)");
		if (config_setting_type(m) != CONFIG_TYPE_STRING)
			return fail_got(l, m, mkey, "must be a string");
		v = config_setting_get_string(m);
		switch (which) {
		case 0:
			if (!name_valid(v))
				return fail_got(l, m, mkey, "must be 1 to %d letters, digits, '.', '_', ':' or '-'",
						NAME_MAX_LEN);
			field = &slot->name;
			break;
		case 1:
			if (is_static)
				return fail(l, m, mkey,
					    "is only used in udev mode; a static slot names its device with "
					    "'path'");
			if (port_path_parse(v, NULL, NULL, NULL) < 0)
				return fail_got(l, m, mkey, "must be a USB port path such as \"2-1.1\"");
			field = &slot->port;
			break;
		default:
			if (!is_static)
				return fail(l, m, mkey,
					    "is only used in static mode (usb.mode = \"static\"); a udev slot is "
					    "matched by 'port'");
			if (!*v)
				return fail(l, m, mkey, "must not be empty");
			field = &slot->path;
			break;
		}
		*field = which == 2 ? resolve_path(l, v) : strdup(v);
		if (!*field)
			return oom(l);
	}
	if (!slot->name)
		return failv(l, config_setting_source_line(e), ekey, -EINVAL, "has no 'name'");
	if (is_static && !slot->path)
		return failv(l, config_setting_source_line(e), ekey, -EINVAL,
			     "has no 'path': in static mode every slot needs a name and a path");
	if (!is_static && !slot->port)
		return failv(l, config_setting_source_line(e), ekey, -EINVAL,
			     "has no 'port': in udev mode every slot needs a name and a port");
	return 0;
}

static const config_setting_t *slot_member(const config_setting_t *e, const char *name)
{
	return config_setting_get_member(e, name);
}

/* Load the n groups of usb.slots into slots[], refusing a name, port or device used twice. */
static int load_slots(struct loader *l, const config_setting_t *s, int n, struct slot_conf *slots)
{
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		_cleanup_free_ char *ekey = NULL;

		if (asprintf(&ekey, "usb.slots[%d]", i) < 0)
			return oom(l);
		int r = load_slot(l, e, ekey, &slots[i]);
		if (r < 0)
			return r;
		for (int j = 0; j < i; j++) {
			const char *what = NULL, *member = NULL;

			if (slots[i].name && slots[j].name && strcasecmp(slots[i].name, slots[j].name) == 0)
				what = "slot name", member = "name";
			else if (slots[i].port && slots[j].port && strcmp(slots[i].port, slots[j].port) == 0)
				what = "port", member = "port";
			else if (slots[i].path && slots[j].path && same_file(slots[i].path, slots[j].path))
				what = "device", member = "path";
			if (!what)
				continue;
			const config_setting_t *m = slot_member(e, member);
			const config_setting_t *prev = config_setting_get_elem(s, (unsigned)j);
			_cleanup_free_ char *mkey = NULL;
			if (asprintf(&mkey, "%s.%s", ekey, member) < 0)
				return oom(l);
			_cleanup_free_ char *shown = escape_text(config_setting_get_string(m));
			if (!shown)
				return oom(l);
			return fail(l, m, mkey, "%s \"%s\" is already used by usb.slots[%d] (line %u)", what, shown, j,
				    config_setting_source_line(slot_member(prev, member)));
		}
	}
	return 0;
}

static int check_slots(struct loader *l)
{
	const config_setting_t *s = l->slots;
	bool is_static = l->cfg->usb.mode == USB_MODE_STATIC;
	struct slot_conf *slots;
	int n, r;

	if (!s) {
		if (!is_static)
			return 0;
		config_setting_t *mode = config_lookup(&l->lc, "usb.mode");
		return fail(l, mode, "usb.slots",
			    "static mode needs at least one slot: slots = ( { name = \"A\"; path = \"…\"; } )");
	}
	n = config_setting_length(s);
	if (config_setting_type(s) != CONFIG_TYPE_LIST && !(config_setting_type(s) == CONFIG_TYPE_ARRAY && n == 0))
		return fail_got(l, s, "usb.slots", "must be a list of groups ( { name = …; … }, … )");
	if (n > MAX_SLOTS)
		return fail(l, s, "usb.slots", "must hold at most %d slots (got %d)", MAX_SLOTS, n);
	if (n == 0 && is_static)
		return fail(l, s, "usb.slots",
			    "static mode needs at least one slot: slots = ( { name = \"A\"; path = \"…\"; } )");
	slots = calloc(n > 0 ? (size_t)n : 1, sizeof(*slots));
	if (!slots)
		return oom(l);
	r = load_slots(l, s, n, slots);
	if (r < 0) {
		slots_free(slots, (size_t)n);
		return r;
	}
	slots_free(l->cfg->usb.slots, l->cfg->usb.n_slots);
	l->cfg->usb.slots = TAKE_PTR(slots);
	l->cfg->usb.n_slots = (size_t)n;
	return 0;
}

static int check_cross(struct loader *l)
{
	config_setting_t *pw = config_lookup(&l->lc, "database.password");
	config_setting_t *pwf = config_lookup(&l->lc, "database.password_file");
	int r;

	if (pw && pwf)
		return fail(l, pwf, "database.password_file",
			    "cannot be used together with 'database.password' (line %u): set only one",
			    config_setting_source_line(pw));
	if (pwf) {
		r = read_password_file(l, pwf, "database.password_file");
		if (r < 0)
			return r;
	}
	/* an inline password is as secret as a password_file: the same rule for the file */
	if (pw && l->cfg->db.password && *l->cfg->db.password) {
		_cleanup_free_ char *m = NULL;
		r = secret_mode_check(l->file, l->file_mode, SECRET_GROUP_MAY_READ, &m);
		if (r < 0)
			return r == -EINVAL ? fail(l, pw, "database.password",
						   "%s, or move the password to a password_file", m)
					    : oom(l);
	}
	r = check_admin(l);
	if (r < 0)
		return r;

	r = check_slots(l);
	if (r < 0)
		return r;

	/* a webhook without a secret would send unsigned events: refused here, not at the first POST */
	if (*l->cfg->events.webhook && !*l->cfg->events.secret_file)
		return failv(l, l->cfg->events.webhook_line, "events.secret_file", -EINVAL,
			     "must name the webhook's signing secret file when events.webhook is set");

	/* The reaper takes a job whose heartbeat is older than processing_timeout for stuck; a live
	 * runner beats every heartbeat_interval, so the timeout must leave room for a late beat. */
	if (l->cfg->stuck.processing_timeout < 2 * l->cfg->worker.heartbeat_interval) {
		config_setting_t *pt = config_lookup(&l->lc, "stuck.processing_timeout");
		config_setting_t *hb = config_lookup(&l->lc, "worker.heartbeat_interval");
		if (pt)
			return fail_got(l, pt, "stuck.processing_timeout",
					"must be at least twice worker.heartbeat_interval (%.15g s), or live jobs "
					"would be taken for stuck",
					l->cfg->worker.heartbeat_interval);
		return fail_got(l, hb, "worker.heartbeat_interval",
				"must be at most half of stuck.processing_timeout (%.15g s), or live jobs would "
				"be taken for stuck",
				l->cfg->stuck.processing_timeout);
	}
	return 0;
}

/* ---- the text scan for what libconfig 1.5 gets wrong ----------------------------------------- */

struct scan_result {
	unsigned include_line; /* first @include, 0 = none */
	unsigned int_line;     /* first integer literal libconfig would wrap, 0 = none */
	char *int_text;
};

static bool ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
	       c == '*';
}

static bool digit(char c) { return c >= '0' && c <= '9'; }

/* Walks the text like libconfig's scanner (comments, strings, names, numbers) and records the
 * first @include and the first integer literal that does not fit: 32 bits without an L suffix,
 * 64 bits with one. Returns 0 or -ENOMEM. */
static int scan_text(const char *t, struct scan_result *res)
{
	unsigned line = 1;
	const char *p = t;

	while (*p) {
		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			while (*p && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
				if (*p == '\n')
					line++;
			if (*p)
				p += 2;
		} else if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				if (*p == '\n')
					line++;
			}
			if (*p)
				p++;
		} else if (*p == '@') {
			if (strncmp(p, "@include", 8) == 0 && !res->include_line)
				res->include_line = line;
			p++;
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '*') {
			while (ident_char(*p))
				p++;
		} else if (digit(*p) || ((*p == '-' || *p == '+') && digit(p[1])) || (*p == '.' && digit(p[1]))) {
			const char *start = p;
			bool hex = false, is_float = false;

			if (*p == '-' || *p == '+')
				p++;
			if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
				hex = true;
				for (p += 2; digit(*p) || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'); p++)
					;
			} else {
				while (digit(*p))
					p++;
				if (*p == '.' || *p == 'e' || *p == 'E') {
					is_float = true;
					for (p++; digit(*p) || *p == '.' || *p == 'e' || *p == 'E' ||
						  ((*p == '-' || *p == '+') && (p[-1] == 'e' || p[-1] == 'E'));
					     p++)
						;
				}
			}
			if (is_float)
				continue;
			size_t len = (size_t)(p - start);
			bool is_long = *p == 'L';
			while (*p == 'L')
				p++;
			_cleanup_free_ char *num = strndup(start, len);
			if (!num)
				return -ENOMEM;
			errno = 0;
			char *end;
			long long v = hex ? (long long)strtoull(num, &end, 16) : strtoll(num, &end, 10);
			bool bad = errno == ERANGE || (hex && (*num == '-' || *num == '+')) ||
				   (hex && strtoull(num, NULL, 16) > (unsigned long long)LLONG_MAX);
			if (!is_long && (v > INT32_MAX || v < INT32_MIN))
				bad = true;
			if (bad && !res->int_line) {
				res->int_line = line;
				res->int_text = TAKE_PTR(num);
			}
		} else
			p++;
	}
	return 0;
}

/* The dotted name of any setting, "usb.slots[1].name", for errors about settings that need not
 * be known keys. */
static char *setting_path(const config_setting_t *s)
{
	const config_setting_t *parent = config_setting_parent((config_setting_t *)s);
	_cleanup_free_ char *head = NULL;
	char *p = NULL;
	int r;

	if (!parent)
		return strdup("");
	head = setting_path(parent);
	if (!head)
		return NULL;
	if (config_setting_name(s) && config_setting_type(parent) == CONFIG_TYPE_GROUP)
		r = *head ? asprintf(&p, "%s.%s", head, config_setting_name(s))
			  : asprintf(&p, "%s", config_setting_name(s));
	else
		r = asprintf(&p, "%s[%d]", head, config_setting_index((config_setting_t *)s));
	return r < 0 ? NULL : p;
}

static const config_setting_t *find_int_at(const config_setting_t *s, unsigned line)
{
	int n;

	if (is_int(s) && config_setting_source_line(s) == line)
		return s;
	if (!config_setting_is_aggregate(s))
		return NULL;
	n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *f = find_int_at(config_setting_get_elem(s, (unsigned)i), line);
		if (f)
			return f;
	}
	return NULL;
}

/* "duplicate setting name" names no setting; the name is the first word of its line. */
static char *line_name(const char *text, unsigned line)
{
	const char *p = text, *b;

	for (unsigned i = 1; i < line && p; i++) {
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	if (!p)
		return NULL;
	while (*p == ' ' || *p == '\t')
		p++;
	for (b = p; ident_char(*p); p++)
		;
	return p > b ? strndup(b, (size_t)(p - b)) : NULL;
}

/* ---- entry points ------------------------------------------------------------------------------ */

/* The file's text and its mode (fstat of the descriptor read). -errno of open_regular: a FIFO,
 * a device or a socket is -EINVAL/-ENXIO and a directory -EISDIR, refused without a read. */
static int read_text(const char *path, char **ret, mode_t *ret_mode)
{
	struct stat st;
	_cleanup_close_ int fd = open_regular(path, &st);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;

	if (fd < 0)
		return fd;
	buf = malloc(CONFIG_MAX_FILE_SIZE + 1);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(fd, buf + len, CONFIG_MAX_FILE_SIZE + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CONFIG_MAX_FILE_SIZE)
			return -EFBIG;
	}
	if (memchr(buf, '\0', len))
		return -EBADMSG;
	buf[len] = '\0';
	*ret = TAKE_PTR(buf);
	*ret_mode = st.st_mode;
	return 0;
}

static char *dir_of(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	char *slash, *abs;

	if (!copy)
		return NULL;
	slash = strrchr(copy, '/');
	if (slash == copy)
		return strdup("/");
	if (slash)
		*slash = '\0';
	abs = realpath(slash ? copy : ".", NULL);
	if (abs)
		return abs;
	return slash ? TAKE_PTR(copy) : strdup(".");
}

static int load_text(struct loader *l, const char *text)
{
	struct scan_result scan = { 0 };
	_cleanup_free_ char *int_text = NULL;
	int r;

	r = scan_text(text, &scan);
	int_text = scan.int_text;
	if (r < 0)
		return oom(l);
	if (scan.include_line)
		return failv(l, scan.include_line, NULL, -EINVAL,
			     "@include is not supported: keep the whole configuration in one file");

	if (!config_read_string(&l->lc, text)) {
		int line = config_error_line(&l->lc);
		const char *what = config_error_text(&l->lc);
		_cleanup_free_ char *name = NULL;

		if (what && strcmp(what, "duplicate setting name") == 0 && (name = line_name(text, (unsigned)line)))
			return failv(l, (unsigned)line, NULL, -EINVAL, "duplicate setting name '%s'", name);
		return failv(l, line > 0 ? (unsigned)line : 0, NULL, -EINVAL, "%s",
			     what ? what : "cannot parse the file");
	}

	if (scan.int_line) {
		const config_setting_t *s = find_int_at(config_root_setting(&l->lc), scan.int_line);
		_cleanup_free_ char *key = s ? setting_path(s) : NULL;
		static const char *const secrets[] = { "database.password", "database.admin.password" };
		for (size_t i = 0; i < ARRAY_SIZE(secrets); i++) {
			const config_setting_t *pw = config_lookup(&l->lc, secrets[i]);
			if (pw && config_setting_source_line(pw) == scan.int_line)
				/* the literal may be the password: name the key, never the value */
				return failv(l, scan.int_line, secrets[i], -EINVAL,
					     "must be a string in double quotes (the value is not shown)");
		}
		return failv(l, scan.int_line, key, -EINVAL,
			     "integer %s is out of range (libconfig reads whole numbers as 32 bits)", int_text);
	}

	r = load_group(l, config_root_setting(&l->lc), "", root_keys, ARRAY_SIZE(root_keys));
	if (r < 0)
		return r;
	return check_cross(l);
}

/* Read and load path into l->cfg (already holding the defaults). */
static int load_file(struct loader *l, const char *path)
{
	_cleanup_free_ char *text = NULL;

	if (!(l->cfg->path = strdup(path)) || !(l->dir = dir_of(path)))
		return oom(l);
	int r = read_text(path, &text, &l->file_mode);
	if (r == -EINVAL || r == -ENXIO || r == -EISDIR) {
		_cleanup_free_ char *m = not_regular_text(path, r);
		/* "FILE: is a FIFO, not a regular file": the path leads the message already */
		const char *tail = m ? strstr(m, "' is ") : NULL;
		if (!tail)
			return oom(l);
		return failv(l, 0, NULL, r == -EISDIR ? -EISDIR : -EINVAL, "%s", tail + 2);
	}
	if (r == -EBADMSG)
		return failv(l, 0, NULL, -EINVAL, "not a text file (contains a NUL byte)");
	if (r == -EFBIG)
		return failv(l, 0, NULL, r, "larger than %d bytes: not a configuration file", CONFIG_MAX_FILE_SIZE);
	if (r < 0 && r != -ENOMEM)
		return failv(l, 0, NULL, r, "cannot read the configuration: %s", strerror(-r));
	if (r < 0)
		return r;
	return load_text(l, text);
}

int config_load(const char *path, struct uf_config *cfg, char **ret_error)
{
	struct uf_config tmp;
	struct loader l = { .file = path, .cfg = &tmp };

	assert(path);
	int r = config_init_defaults(&tmp);
	config_init(&l.lc);
	r = r < 0 ? oom(&l) : load_file(&l, path);
	if (l.oom || (r == -ENOMEM && !l.error)) {
		r = -ENOMEM;
		str_set(&l.error, "%s: out of memory", path);
	}
	config_destroy(&l.lc);
	free(l.dir);
	free(l.password_file);
	if (r < 0) {
		config_done(&tmp);
		memset(cfg, 0, sizeof(*cfg));
		if (ret_error)
			*ret_error = TAKE_PTR(l.error);
		free(l.error);
		return r;
	}
	free(l.error);
	*cfg = tmp;
	return 0;
}

const char *config_default_path(const char *explicit_path)
{
	const char *env;

	if (explicit_path && *explicit_path)
		return explicit_path;
	env = getenv("USBFORGE_CONFIG");
	if (env && *env)
		return env;
	return CONFIG_DEFAULT_PATH;
}

int config_load_default(const char *explicit_path, struct uf_config *cfg, char **ret_error)
{
	const char *env = getenv("USBFORGE_CONFIG");
	bool named = (explicit_path && *explicit_path) || (env && *env);
	_cleanup_free_ char *err = NULL;
	int r;

	r = config_load(config_default_path(explicit_path), cfg, &err);
	if (r == -ENOENT && !named) {
		/* No file where the default one would be: the built-in defaults are the config. */
		if (config_init_defaults(cfg) == 0)
			return 0;
		free(err);
		err = strdup("out of memory");
		r = -ENOMEM;
	}
	if (r < 0 && ret_error)
		*ret_error = TAKE_PTR(err);
	return r;
}

/* ---- http ---------------------------------------------------------------------------------- */

/* "1".."65535", or "0" (any free port: tests). */
static bool parse_port(const char *p, unsigned *ret)
{
	unsigned v = 0;

	if (!*p || strlen(p) > 5)
		return false;
	for (const char *c = p; *c; c++) {
		if (!digit(*c))
			return false;
		v = v * 10 + (unsigned)(*c - '0');
	}
	if (v > 65535 || (p[0] == '0' && p[1]))
		return false;
	*ret = v;
	return true;
}

int config_parse_listen(const char *v, char **ret_host, unsigned *ret_port)
{
	_cleanup_free_ char *host = NULL;
	const char *port;
	unsigned char buf[sizeof(struct in6_addr)];

	if (!*v) {
		host = strdup("");
		port = NULL;
	} else if (v[0] == '[') { /* [v6]:port */
		const char *end = strchr(v, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		host = strndup(v + 1, (size_t)(end - v - 1));
		if (!host)
			return -ENOMEM;
		if (inet_pton(AF_INET6, host, buf) != 1)
			return -EINVAL;
		port = end + 2;
	} else {
		const char *colon = strrchr(v, ':');
		if (colon && strchr(v, ':') != colon)
			return -EINVAL; /* a bare IPv6 address: write [::1]:8470 */
		host = colon && colon > v ? strndup(v, (size_t)(colon - v)) : strdup("127.0.0.1");
		if (!host)
			return -ENOMEM;
		if (inet_pton(AF_INET, host, buf) != 1)
			return -EINVAL;
		port = colon ? colon + 1 : v;
	}
	if (!host)
		return -ENOMEM;
	unsigned p = 0;
	if (port && !parse_port(port, &p))
		return -EINVAL;
	*ret_host = TAKE_PTR(host);
	*ret_port = p;
	return 0;
}

static int load_http_listen(struct loader *l, const config_setting_t *s, const char *key)
{
	struct uf_config *c = l->cfg;
	char *host = NULL;
	unsigned port = 0;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail_got(l, s, key,
				"must be a string: \"127.0.0.1:8470\", \"8470\", \"[::1]:8470\" or \"\" (off)");
	const char *v = config_setting_get_string(s);
	int r = strlen(v) > 64 ? -EINVAL : config_parse_listen(v, &host, &port);
	if (r == -ENOMEM)
		return oom(l);
	if (r < 0)
		return fail_got(l, s, key,
				"must be \"ADDRESS:PORT\" with an IPv4 address, \"[IPv6]:PORT\", \"PORT\" alone "
				"(127.0.0.1) or \"\" (off); PORT 1..65535 (0: any free port)");
	char *copy = strdup(v);
	if (!copy) {
		free(host);
		return oom(l);
	}
	free(c->http.listen);
	free(c->http.host);
	c->http.listen = copy;
	c->http.host = host;
	c->http.port = port;
	c->http.listen_line = (unsigned)config_setting_source_line(s);
	return 0;
}

static int load_http_token_file(struct loader *l, const config_setting_t *s, const char *key)
{
	struct uf_config *c = l->cfg;

	if (config_setting_type(s) == CONFIG_TYPE_STRING && !*config_setting_get_string(s)) {
		free(c->http.token_file);
		c->http.token_file = strdup("");
		c->http.token_file_line = (unsigned)config_setting_source_line(s);
		return c->http.token_file ? 0 : oom(l);
	}
	int r = load_file_path(l, s, key, &c->http.token_file);
	if (r == 0)
		c->http.token_file_line = (unsigned)config_setting_source_line(s);
	return r;
}

/* ---- events -------------------------------------------------------------------------------- */

#define WEBHOOK_MAX 2048

int config_check_webhook(const char *url, const char **ret_why)
{
	const char *why = NULL;
	const char *host;
	bool https = strncmp(url, "https://", 8) == 0;
	bool http = strncmp(url, "http://", 7) == 0;

	if (!*url)
		return 0;
	if (strlen(url) > WEBHOOK_MAX)
		why = "is longer than 2048 bytes";
	else if (!https && !http)
		why = "must start with https:// (or http:// to a loopback address)";
	for (const unsigned char *c = (const unsigned char *)url; !why && *c; c++)
		if (*c <= 0x20 || *c >= 0x7f)
			why = "must not contain spaces, control or non-ASCII characters (percent-encode them)";
	if (!why) {
		host = url + (https ? 8 : 7);
		size_t alen = strcspn(host, "/?#");
		size_t hlen;
		if (memchr(host, '@', alen))
			why = "must not carry credentials (user@host)";
		else if (host[0] == '[')
			hlen = (const char *)memchr(host, ']', alen)
				       ? (size_t)((const char *)memchr(host, ']', alen) - host) + 1
				       : 0;
		else
			hlen = strcspn(host, ":/?#");
		if (!why && (hlen == 0 || (host[0] == '[' && hlen < 3)))
			why = "names no host";
		if (!why && http) {
			char name[64] = "";
			unsigned char a[sizeof(struct in6_addr)];
			bool v6 = host[0] == '[';
			size_t n = v6 ? hlen - 2 : hlen;
			if (n < sizeof(name))
				memcpy(name, host + (v6 ? 1 : 0), n);
			bool loop = n < sizeof(name) && ((v6 && inet_pton(AF_INET6, name, a) == 1 &&
							  IN6_IS_ADDR_LOOPBACK((struct in6_addr *)a)) ||
							 (!v6 && inet_pton(AF_INET, name, a) == 1 && a[0] == 127) ||
							 (!v6 && strcasecmp(name, "localhost") == 0));
			if (!loop)
				why = "must use https:// (http:// is allowed only to a loopback address: 127.0.0.1, [::1], localhost)";
		}
	}
	if (why) {
		if (ret_why)
			*ret_why = why;
		return -EINVAL;
	}
	return 0;
}

static int load_events_webhook(struct loader *l, const config_setting_t *s, const char *key)
{
	struct uf_config *c = l->cfg;
	const char *why = NULL;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail_got(l, s, key, "must be a string: \"https://…\" or \"\" (no relay)");
	const char *v = config_setting_get_string(s);
	if (config_check_webhook(v, &why) < 0)
		return fail_got(l, s, key, "%s", why);
	char *copy = strdup(v);
	if (!copy)
		return oom(l);
	free(c->events.webhook);
	c->events.webhook = copy;
	c->events.webhook_line = (unsigned)config_setting_source_line(s);
	return 0;
}

static int load_events_secret_file(struct loader *l, const config_setting_t *s, const char *key)
{
	struct uf_config *c = l->cfg;

	if (config_setting_type(s) == CONFIG_TYPE_STRING && !*config_setting_get_string(s)) {
		free(c->events.secret_file);
		c->events.secret_file = strdup("");
		c->events.secret_file_line = (unsigned)config_setting_source_line(s);
		return c->events.secret_file ? 0 : oom(l);
	}
	int r = load_file_path(l, s, key, &c->events.secret_file);
	if (r == 0)
		c->events.secret_file_line = (unsigned)config_setting_source_line(s);
	return r;
}

/* ---- reload ----------------------------------------------------------------------------------- */

static bool str_differs(const char *a, const char *b) { return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0); }

static bool slots_differ(const struct uf_config *a, const struct uf_config *b)
{
	if (a->usb.n_slots != b->usb.n_slots)
		return true;
	for (size_t i = 0; i < a->usb.n_slots; i++)
		if (str_differs(a->usb.slots[i].name, b->usb.slots[i].name) ||
		    str_differs(a->usb.slots[i].port, b->usb.slots[i].port) ||
		    str_differs(a->usb.slots[i].path, b->usb.slots[i].path))
			return true;
	return false;
}

static bool db_hosts_differ(const struct uf_config *a, const struct uf_config *b)
{
	if (a->db.n_hosts != b->db.n_hosts)
		return true;
	for (size_t i = 0; i < a->db.n_hosts; i++)
		if (str_differs(a->db.hosts[i].host, b->db.hosts[i].host) || a->db.hosts[i].port != b->db.hosts[i].port)
			return true;
	return false;
}

size_t config_restart_keys_changed(const struct uf_config *running, const struct uf_config *next, const char **ret,
				   size_t max)
{
	const struct {
		const char *key;
		bool differs;
	} keys[] = {
		{ "station", str_differs(running->station, next->station) },
		{ "database.host", str_differs(running->db.host, next->db.host) },
		{ "database.hosts", db_hosts_differ(running, next) },
		{ "database.port", running->db.port != next->db.port },
		{ "database.socket", str_differs(running->db.socket, next->db.socket) },
		{ "database.user", str_differs(running->db.user, next->db.user) },
		{ "database.password", str_differs(running->db.password, next->db.password) },
		{ "database.name", str_differs(running->db.name, next->db.name) },
		{ "usb.mode", running->usb.mode != next->usb.mode },
		{ "usb.slots", slots_differ(running, next) },
	};
	size_t n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (keys[i].differs && n < max)
			ret[n++] = keys[i].key;
	return n;
}

int config_keep_restart_keys(struct uf_config *next, const struct uf_config *running)
{
	struct uf_config t = { 0 };
	t.station = strdup_or_null(running->station);
	t.db = running->db;
	t.db.host = strdup_or_null(running->db.host);
	t.db.hosts = running->db.n_hosts ? calloc(running->db.n_hosts, sizeof(*t.db.hosts)) : NULL;
	bool hosts_oom = running->db.n_hosts && !t.db.hosts;
	for (size_t i = 0; !hosts_oom && i < running->db.n_hosts; i++) {
		t.db.hosts[i].host = strdup(running->db.hosts[i].host);
		t.db.hosts[i].port = running->db.hosts[i].port;
		hosts_oom = !t.db.hosts[i].host;
	}
	if (hosts_oom) /* freed by config_done(&t) below: n_hosts counts every slot, NULLs free fine */
		t.db.n_hosts = t.db.hosts ? running->db.n_hosts : 0;
	t.db.socket = strdup_or_null(running->db.socket);
	t.db.user = strdup_or_null(running->db.user);
	t.db.password = strdup_or_null(running->db.password);
	t.db.name = strdup_or_null(running->db.name);
	t.db.admin.user = strdup_or_null(running->db.admin.user);
	t.db.admin.password_file = strdup_or_null(running->db.admin.password_file);
	t.usb.mode = running->usb.mode;
	t.usb.n_slots = running->usb.n_slots;
	t.usb.slots = running->usb.n_slots ? calloc(running->usb.n_slots, sizeof(*t.usb.slots)) : NULL;
	bool oom = hosts_oom || (running->station && !t.station) || (running->db.host && !t.db.host) ||
		   (running->db.socket && !t.db.socket) || (running->db.user && !t.db.user) ||
		   (running->db.password && !t.db.password) || (running->db.name && !t.db.name) ||
		   (running->db.admin.user && !t.db.admin.user) ||
		   (running->db.admin.password_file && !t.db.admin.password_file) ||
		   (running->usb.n_slots && !t.usb.slots);
	for (size_t i = 0; !oom && i < running->usb.n_slots; i++) {
		const struct slot_conf *s = &running->usb.slots[i];
		t.usb.slots[i] =
			(struct slot_conf){ strdup_or_null(s->name), strdup_or_null(s->port), strdup_or_null(s->path) };
		oom = (s->name && !t.usb.slots[i].name) || (s->port && !t.usb.slots[i].port) ||
		      (s->path && !t.usb.slots[i].path);
	}
	if (oom) {
		config_done(&t);
		return -ENOMEM;
	}
	/* hand the copies to next, and next's own values to t, which frees them */
	struct uf_config old = *next;
	next->station = t.station;
	next->db = t.db;
	next->usb = t.usb;
	t = (struct uf_config){ .station = old.station, .db = old.db, .usb = old.usb };
	config_done(&t);
	return 0;
}

int config_parse_age(const char *s, int64_t *ret_seconds)
{
	static const struct {
		char unit;
		int64_t seconds;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { 'w', 7LL * 86400 } };
	if (!s || !*s)
		return -EINVAL;
	const int64_t max = 100LL * 366 * 86400;
	int64_t n = 0;
	const char *p = s;
	bool over = false; /* past max: the digits are still read, to tell -EINVAL from -ERANGE */
	for (; *p >= '0' && *p <= '9'; p++)
		if (!over && (n = n * 10 + (*p - '0')) > max)
			over = true;
	if (p == s)
		return -EINVAL;
	int64_t mult = 1;
	if (*p) {
		size_t i = 0;
		while (i < ARRAY_SIZE(units) && units[i].unit != *p)
			i++;
		if (i == ARRAY_SIZE(units) || p[1])
			return -EINVAL;
		mult = units[i].seconds;
	}
	if (over || n == 0 || n > max / mult)
		return -ERANGE;
	*ret_seconds = n * mult;
	return 0;
}

static int load_retention_age(struct loader *l, const config_setting_t *s, const char *key)
{
	const char *v = config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
	if (!v || config_parse_age(v, &l->cfg->retention.older_than_s) < 0)
		return fail_got(l, s, key, "must be an age such as \"90d\", \"12h\" or \"2w\" (1 second to 100 years)");
	return 0;
}
