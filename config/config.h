/* The daemon's and the CLI's configuration (libconfig), DESIGN.md "Config": every key with its
 * default, type and range. A bad file or value is refused with the file, the line and the key. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum usb_mode { USB_MODE_UDEV, USB_MODE_STATIC };

struct slot_conf {
	char *name;
	char *port; /* udev mode: USB port path such as "2-1.1" */
	char *path; /* static mode: a regular file or block device */
};

struct uf_config {
	char *path;      /* the file it was read from, or NULL for defaults only */
	char *station;   /* default: the host name */
	struct {
		char *host;     /* "127.0.0.1" */
		unsigned port;  /* 3306 */
		char *socket;   /* "" = TCP */
		char *user;     /* "usbforge" */
		char *password; /* from password or password_file; NULL when neither */
		char *name;     /* "usbforge" */
	} db;
	struct {
		double poll_interval;      /* 5.0 */
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
		double queued_timeout;     /* 900 */
		double check_interval;     /* 60 */
	} stuck;
	struct {
		char *root; /* "/var/lib/usbforge/content" */
	} content;
	struct {
		enum usb_mode mode; /* udev */
		struct slot_conf *slots;
		size_t n_slots;
	} usb;
	struct {
		uint64_t buffer_size;     /* 4 MiB */
		unsigned queue_depth;     /* 4 */
		bool verify;              /* true */
		bool reset_before_verify; /* true */
		double stall_timeout;     /* 180 */
		bool probe;               /* true: fake-capacity probe in validation */
	} write;
};

/* Fill *cfg with every default. */
void config_init_defaults(struct uf_config *cfg);
/* Load path over the defaults. On error returns -EINVAL (or -errno for I/O), leaves *cfg
 * freed, and sets *ret_error (malloc'd) to "FILE:LINE: key 'worker.max_concurrent': …". */
int config_load(const char *path, struct uf_config *cfg, char **ret_error);
/* Which file to read: explicit argument, else $USBFORGE_CONFIG, else the default path. */
const char *config_default_path(const char *explicit_path);
void config_done(struct uf_config *cfg);
