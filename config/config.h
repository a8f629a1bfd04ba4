/* The daemon's and the CLI's configuration (libconfig), DESIGN.md "Config": every key with its
 * default, type and range. A bad file or value is refused with the file, the line and the key. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum usb_mode { USB_MODE_UDEV, USB_MODE_STATIC, _USB_MODE_MAX };

/* "udev" / "static"; NULL for an out-of-range value. */
const char *usb_mode_to_string(enum usb_mode m);

struct slot_conf {
	char *name;
	char *port; /* udev mode: USB port path such as "2-1.1" */
	char *path; /* static mode: a regular file or block device */
};

/* One entry of database.hosts: a node of a cluster (or a server and its standby). */
struct uf_db_host {
	char *host;    /* a name, an IPv4 address or an IPv6 address (without brackets) */
	unsigned port; /* 0: database.port */
};

struct uf_config {
	char *path;    /* the file it was read from, or NULL for defaults only */
	char *station; /* default: the host name */
	struct {
		char *host;    /* "127.0.0.1" */
		unsigned port; /* 3306 */
		/* database.hosts: the servers tried in order at every connect and reconnect
		 * (n_hosts 0: host and port alone); never set together with host or socket */
		struct uf_db_host *hosts;
		size_t n_hosts;
		char *socket;	/* "" = TCP */
		char *user;	/* "usbforge" */
		char *password; /* from password or password_file; NULL when neither */
		char *name;	/* "usbforge" */
		/* database.admin: the account `usbforge db migrate` uses (DDL rights); read by
		 * nothing else. user NULL = no admin group: migrate uses the account above. The
		 * password file is read only by config_admin_password() (it is root-only; the
		 * daemon and the operators cannot read it). */
		struct {
			char *user;
			char *password_file;	     /* resolved path, NULL = no password */
			unsigned password_file_line; /* its line in the file, for messages */
		} admin;
	} db;
	struct {
		double poll_interval;	   /* 5.0 */
		unsigned max_concurrent;   /* 3 */
		double heartbeat_interval; /* 5.0 */
		double capacity_tolerance; /* 0.10 */
	} worker;
	struct {
		double *delays; /* {5, 15, 60} */
		size_t n_delays;
	} retry;
	struct {
		double processing_timeout; /* 300 */
		double queued_timeout;	   /* 900 */
		double check_interval;	   /* 60 */
	} stuck;
	struct {
		char *root;   /* "/var/lib/usbforge/content": content items, rel_path beneath it */
		char *images; /* "/var/lib/usbforge/images": an image order's file must lie beneath it */
	} content;
	struct {
		enum usb_mode mode; /* udev */
		struct slot_conf *slots;
		size_t n_slots;
	} usb;
	struct {
		uint64_t buffer_size;	  /* 2 MiB */
		unsigned queue_depth;	  /* 4 */
		bool verify;		  /* true */
		bool verify_full;	  /* false: read back the written ranges only */
		bool reset_before_verify; /* true */
		uint64_t sync_interval;	  /* 256 MiB: fdatasync (and resume checkpoint) interval */
		double stall_timeout;	  /* 180 */
		bool probe;		  /* true: fake-capacity probe in validation */
		uint64_t max_rate;	  /* bytes/s per slot while writing; 0 = unlimited */
	} write;
	struct {
		/* listen as written ("" = no HTTP server, the default), and what it means: host
		 * "127.0.0.1", "::1", … (an IP address, never a name) and port (0: any free one) */
		char *listen;
		char *host;
		unsigned port;
		unsigned listen_line; /* its line in the file, 0 = default */
		char *token_file;     /* resolved path; "" = none (mutating endpoints answer 401) */
		unsigned token_file_line;
	} http;
	struct {
		/* the sales system's webhook the outbox relay POSTs every event to; "" (the
		 * default) = no relay. https://, or http:// to a loopback host only (tests). */
		char *webhook;
		unsigned webhook_line;
		char *secret_file; /* resolved path of the signing secret; "" only with no webhook */
		unsigned secret_file_line;
		double timeout; /* 10: one delivery's whole HTTP exchange, seconds */
	} events;
	struct {
		/* usbforged's daily prune (db/prune.h): once a day, by one daemon per database, the
		 * history of jobs that ended more than older_than_s ago (90 days); with jobs, the
		 * jobs and orders too. Off unless daily. */
		int64_t older_than_s;
		bool jobs;
		bool daily;
	} retention;
};

#define CONFIG_DEFAULT_PATH "/etc/usbforge/usbforge.conf"

/* Fill *cfg (overwritten, not freed first) with every default; release with config_done().
 * 0, or -ENOMEM with *cfg zeroed (nothing to release). */
int config_init_defaults(struct uf_config *cfg);
/* Read path and apply it over the defaults into *cfg (overwritten, not freed first; release
 * with config_done()). Relative paths in the file (password_file, content.root, socket, slot
 * paths) are taken relative to the file's directory. Returns 0, or:
 *   -errno  the file itself cannot be read (-ENOENT, -EACCES, -EISDIR, -EFBIG…);
 *   -EINVAL a syntax error, an unknown key, a bad type or value, a bad password_file;
 *   -ENOMEM.
 * On error *cfg is left zeroed (config_done() on it is harmless) and, when ret_error is not
 * NULL, *ret_error is a malloc'd one-line message naming the file, the line and the key:
 * "FILE:LINE: key 'worker.max_concurrent': must be an integer between 1 and 64 (got 0)". */
int config_load(const char *path, struct uf_config *cfg, char **ret_error);
/* The admin account's password for `usbforge db migrate`: reads cfg->db.admin.password_file
 * (opened with open_regular: a FIFO or device is refused at once; it must be a regular file
 * that neither group nor others can access, and its first line is the password). *ret_password
 * is NULL when the admin group names no password file. Returns 0, -EINVAL (no database.admin
 * group, or a bad file), -errno of the open (-ENOENT, -EACCES…) or -ENOMEM; on failure
 * *ret_error (may be NULL) is a malloc'd message naming the config file, the line and the key
 * ("FILE:LINE: key 'database.admin.password_file': '/etc/…' has mode 0640: …"). The password
 * never appears in a message. */
int config_admin_password(const struct uf_config *cfg, char **ret_password, char **ret_error);
/* Which file to read: explicit argument, else $USBFORGE_CONFIG, else CONFIG_DEFAULT_PATH.
 * Empty strings count as unset. Returns a borrowed pointer (the argument, the environment's
 * string or the constant). */
const char *config_default_path(const char *explicit_path);
/* config_load(config_default_path(explicit_path), …), except that when the path came from
 * neither the argument nor $USBFORGE_CONFIG and the default file does not exist, *cfg gets the
 * defaults (cfg->path NULL) and 0 is returned. An explicitly named missing file is an error
 * (-ENOENT, message naming the file). Same contract as config_load otherwise. */
int config_load_default(const char *explicit_path, struct uf_config *cfg, char **ret_error);
/* Reload (usbforged's SIGHUP): the keys a running daemon cannot change in place are the
 * station, the database group and the usb group (its slots, connections and monitor are built
 * from them). config_restart_keys_changed() names (static strings, up to max, into ret) those
 * that differ between the running configuration and the next; config_keep_restart_keys()
 * gives next copies of running's values for them, so that the rest of next can take effect.
 * -ENOMEM (next unchanged). */
size_t config_restart_keys_changed(const struct uf_config *running, const struct uf_config *next, const char **ret,
				   size_t max);
int config_keep_restart_keys(struct uf_config *next, const struct uf_config *running);
/* An age: "90d", "12h", "30m", "45s", "2w", or a whole number of seconds; a whole, positive
 * count of one unit up to 100 years. 0, -EINVAL (not an age) or -ERANGE (0 or too long);
 * *ret_seconds only on success. (retention.older_than, usbforge db prune --older-than.) */
int config_parse_age(const char *s, int64_t *ret_seconds);
/* http.listen's syntax: "" (off: host ""), "PORT" or ":PORT" (127.0.0.1), "IPv4:PORT",
 * "[IPv6]:PORT"; PORT 0..65535 (0: any free port). *ret_host malloc'd. 0, -EINVAL or -ENOMEM. */
int config_parse_listen(const char *listen, char **ret_host, unsigned *ret_port);
/* One database.hosts entry: "HOST", "HOST:PORT" or "[IPv6]:PORT" (HOST: letters, digits, '.',
 * '-', '_' or an IPv6 address in brackets, at most 255 bytes; PORT 1..65535; no port: 0, which
 * means database.port). *ret_host malloc'd. 0, -EINVAL or -ENOMEM. */
int config_parse_db_host(const char *entry, char **ret_host, unsigned *ret_port);
/* events.webhook's rule: "" (no relay), "https://HOST[:PORT][/PATH]", or "http://" with the
 * host 127.0.0.0/8, [::1] or localhost; no credentials ('@'), no spaces or control characters,
 * at most 2048 bytes. 0 or -EINVAL; *ret_why (may be NULL) a static reason. */
int config_check_webhook(const char *url, const char **ret_why);
/* Free every field and zero *cfg. NULL is accepted. */
void config_done(struct uf_config *cfg);
/* Deep-copy src's database group (host, port, hosts, socket, user, password, name; not admin)
 * into dst, whose database group must be empty (zeroed): for a thread or server that connects on
 * its own and outlives a reload of src. Freed by config_done(dst). 0, or -ENOMEM with dst's
 * database group left empty. */
int config_copy_database(struct uf_config *dst, const struct uf_config *src);
