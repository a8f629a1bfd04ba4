/* The devices table: what each slot of a station holds now, mirrored by the daemon for
 * operators and for `usbforge devices` on other machines. The slot states and their names as
 * the schema spells them (devices.state). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "db/db.h"

enum device_state {
	DEVICE_STATE_EMPTY,  /* no stick */
	DEVICE_STATE_READY,  /* a stick that may take the next job */
	DEVICE_STATE_BUSY,   /* a job runs on it */
	DEVICE_STATE_BAD,    /* refused as a bad stick until it is replaced */
	DEVICE_STATE_UNSAFE, /* not eligible (system disk, mounted, too large …) */
	DEVICE_STATE_DONE,   /* its job is done; waits to be taken out */
	_DEVICE_STATE_MAX,
	_DEVICE_STATE_INVALID = -22, /* -EINVAL */
};
/* "empty" …; NULL out of range. */
const char *device_state_name(enum device_state s);

/* One slot's row. Strings may be NULL (SQL NULL). */
struct device_row {
	const char *station, *slot;
	const char *devnode, *serial, *vendor, *model, *port_path;
	bool have_capacity; /* capacity_bytes is NULL otherwise */
	uint64_t capacity_bytes;
	unsigned usb_speed_mbps; /* 0: NULL (unknown) */
	enum device_state state;
	const char *state_reason;
	int64_t current_job_id; /* 0: none */
};

/* Insert or update the row of (station, slot); last_seen_at = now. -EINVAL for a state out of
 * range. */
int device_upsert(struct db *db, const struct device_row *d);
