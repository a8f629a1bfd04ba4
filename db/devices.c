/* Implementation of db/devices.h. */
#include "db/devices.h"

#include <errno.h>

static const char *const names[_DEVICE_STATE_MAX] = {
	[DEVICE_STATE_EMPTY] = "empty", [DEVICE_STATE_READY] = "ready",	  [DEVICE_STATE_BUSY] = "busy",
	[DEVICE_STATE_BAD] = "bad",	[DEVICE_STATE_UNSAFE] = "unsafe", [DEVICE_STATE_DONE] = "done",
};

const char *device_state_name(enum device_state s)
{
	if ((int)s < 0 || s >= _DEVICE_STATE_MAX)
		return NULL;
	return names[s];
}

int device_upsert(struct db *db, const struct device_row *d)
{
	const char *state = device_state_name(d->state);
	if (!state)
		return -EINVAL;
	return db_exec(db, NULL,
		       "INSERT INTO devices (station, slot, devnode, serial, vendor, model, capacity_bytes, usb_speed_mbps,"
		       " port_path, state, state_reason, current_job_id, last_seen_at)"
		       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NOW(6)) ON DUPLICATE KEY UPDATE"
		       " devnode = VALUES(devnode), serial = VALUES(serial), vendor = VALUES(vendor), model = VALUES(model),"
		       " capacity_bytes = VALUES(capacity_bytes), usb_speed_mbps = VALUES(usb_speed_mbps),"
		       " port_path = VALUES(port_path), state = VALUES(state), state_reason = VALUES(state_reason),"
		       " current_job_id = VALUES(current_job_id), last_seen_at = NOW(6)",
		       DB_STR(d->station), DB_STR(d->slot), DB_STR(d->devnode), DB_STR(d->serial), DB_STR(d->vendor),
		       DB_STR(d->model), d->have_capacity ? DB_U64(d->capacity_bytes) : DB_NULL,
		       d->usb_speed_mbps ? DB_I64(d->usb_speed_mbps) : DB_NULL, DB_STR(d->port_path), DB_STR(state),
		       DB_STR(d->state_reason), d->current_job_id ? DB_I64(d->current_job_id) : DB_NULL, DB_END);
}
