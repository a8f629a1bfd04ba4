/* Implementation of worker/daemon.h. Single-threaded loop around poll(): a signalfd for
 * SIGTERM/SIGINT, an eventfd the runners write when they end, the udev monitor in udev mode, and
 * a timeout for the next poll/heartbeat/reap. Only this thread claims jobs and owns the slots. */
#include "worker/daemon.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "db/devices.h"
#include "db/jobs.h"
#include "db/schema.h"
#include "blkio/dev.h"
#include "db/workers.h"
#include "http/board.h"
#include "http/server.h"
#include "usb/discover.h"
#include "usb/monitor.h"
#include "util/log.h"
#include "util/logid.h"
#include "util/macro.h"
#include "util/message.h"
#include "util/monotime.h"
#include "worker/relay.h"
#include "worker/retention.h"
#include "worker/runner.h"

struct slot {
	char *name;
	/* what it holds now */
	bool present, eligible;
	char *devnode, *serial, *vendor, *model, *port_path, *reason;
	uint64_t capacity;
	unsigned speed;
	/* a stick refused as bad stays refused until it is replaced (another serial, or the slot
	 * seen empty); in udev mode a finished stick (its job done) is not written again until it
	 * is taken out: it is a sold unit waiting for its customer */
	char *bad_serial, *done_serial;
	char *bad_reason; /* with bad_serial: why, for the devices table */
	/* another writer held the slot (a second daemon with the same slot, `usbforge write`):
	 * the job went back to the queue; not claimed for this slot again before this time */
	double in_use_until;
	bool seen; /* refresh_slots: a stick was listed in it this time */
	struct runner *runner;
	struct cfg_ref *runner_cfg; /* the configuration its runner started with */
	bool removal_logged;	    /* the hotplug event of its stick leaving was logged */
	/* its last job ended done: a static slot (which takes the next job at once) shows "done"
	 * on the board until it does */
	bool last_done;
	/* the connection its last runner used, handed to the next (the database group needs a
	 * restart to change: a reload does not make it stale); NULL: the next runner connects */
	struct db *rdb;
	/* the devices row last written for it (mirror_devices) and when: unchanged, it is written
	 * again once a heartbeat interval (last_seen_at) */
	char *mirrored;
	double mirrored_at;
};

/* A configuration and the runners that use it. A reload (SIGHUP) makes a new one current; a
 * runner keeps the one it started with (running jobs are untouched) and the last to end frees
 * a configuration that is no longer current. */
struct cfg_ref {
	struct uf_config c;
	unsigned users;
};

struct daemon {
	const struct uf_config *cfg; /* &cur->c */
	struct cfg_ref *cur;
	const char *config_path; /* as given on the command line (NULL: the default) */
	bool once;
	struct db *db;
	bool db_down_logged;
	bool schema_behind_logged; /* the account may not migrate: said once until it is migrated */
	double db_retry_at, db_backoff;
	char *worker_id, *hostname;
	struct slot *slots;
	size_t n_slots;
	int sfd, efd;
	struct usb_monitor *mon;
	double next_poll, next_reap, next_beat;
	bool stopping;
	unsigned busy;
	struct board *board;	     /* what the HTTP surfaces show */
	struct http_server *http;    /* NULL: http.listen is "" */
	struct relay *relay;	     /* NULL: events.webhook is "" */
	struct retention *retention; /* NULL: retention.daily is false */
};

static void slot_clear(struct slot *s)
{
	free(s->devnode);
	free(s->serial);
	free(s->vendor);
	free(s->model);
	free(s->port_path);
	free(s->reason);
	s->devnode = s->serial = s->vendor = s->model = s->port_path = s->reason = NULL;
	s->present = s->eligible = false;
	s->capacity = 0;
	s->speed = 0;
}

static struct slot *slot_find(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->n_slots; i++)
		if (strcmp(d->slots[i].name, name) == 0)
			return &d->slots[i];
	return NULL;
}

/* NULL when out of memory (the stick is then not used this round; said once per call). */
static struct slot *slot_add(struct daemon *d, const char *name)
{
	char *copy = strdup(name);
	struct slot *n = copy ? realloc(d->slots, (d->n_slots + 1) * sizeof(*n)) : NULL;
	if (!n) {
		free(copy);
		log_struct(LOG_LVL_ERR, LOG_FIELDS(.slot = name), "slot %s: out of memory; not used", name);
		return NULL;
	}
	d->slots = n;
	memset(&n[d->n_slots], 0, sizeof(*n));
	n[d->n_slots].name = copy;
	return &n[d->n_slots++];
}

static void cfg_unref(struct daemon *d, struct cfg_ref *c)
{
	if (!c)
		return;
	assert(c->users > 0);
	if (--c->users == 0 && c != d->cur) {
		config_done(&c->c);
		free(c);
	}
}

/* What identifies the stick in a slot: its USB serial, or (static slots, sticks without one)
 * its device path — such a slot stays bad until the daemon restarts. */
static const char *slot_identity(const struct slot *s) { return s->serial ? s->serial : s->devnode ? s->devnode : ""; }

/* Re-read what every slot holds (sysfs and stat; in udev mode also each USB stick's libusb
 * descriptors, cached per device for a minute, and a read-only BLKGETSIZE64; see usb/discover.h).
 * A busy slot keeps its runner; if its stick vanished the runner sees DEVICE_GONE through its
 * I/O. */
static void refresh_slots(struct daemon *d)
{
	struct usb_candidate *c = NULL;
	size_t n = 0;
	int r = usb_list_candidates(d->cfg, &c, &n);
	if (r < 0) {
		log_warning_errno(r, "cannot list devices: %m");
		return;
	}
	for (size_t i = 0; i < d->n_slots; i++) {
		d->slots[i].seen = d->slots[i].runner != NULL;
		if (!d->slots[i].runner)
			slot_clear(&d->slots[i]);
	}
	for (size_t i = 0; i < n; i++) {
		if (!c[i].slot)
			continue;
		struct slot *s = slot_find(d, c[i].slot);
		if (!s)
			s = slot_add(d, c[i].slot);
		if (!s || s->runner)
			continue;
		s->present = c[i].devnode != NULL; /* a configured slot with no stick is listed empty */
		s->eligible = c[i].eligible;
		s->devnode = strdup_or_null(c[i].devnode);
		s->serial = strdup_or_null(c[i].serial);
		s->vendor = strdup_or_null(c[i].vendor);
		s->model = strdup_or_null(c[i].model);
		s->port_path = strdup_or_null(c[i].port_path);
		s->reason = strdup_or_null(c[i].reason);
		s->capacity = c[i].capacity_bytes;
		s->speed = c[i].usb_speed_mbps;
		s->seen = s->present;
	}
	usb_candidates_free(c, n);
	for (size_t i = 0; i < d->n_slots; i++) {
		struct slot *s = &d->slots[i];
		if (s->runner)
			continue;
		/* replaced by another stick, or taken out */
		if (s->bad_serial && (!s->seen || strcmp(s->bad_serial, slot_identity(s)) != 0)) {
			s->bad_serial = mfree(s->bad_serial);
			s->bad_reason = mfree(s->bad_reason);
		}
		if (!s->seen)
			s->last_done = false;
		if (s->done_serial && (!s->seen || strcmp(s->done_serial, slot_identity(s)) != 0)) {
			log_struct(LOG_LVL_INFO,
				   LOG_FIELDS(.message_id = LOG_MID_STICK_TAKEN_OUT, .slot = s->name,
					      .device_serial = s->done_serial),
				   "slot %s: finished stick taken out; the slot takes the next job", s->name);
			s->done_serial = mfree(s->done_serial);
		}
	}
}

static enum device_state slot_state(const struct slot *s)
{
	if (s->runner)
		return DEVICE_STATE_BUSY;
	if (!s->present)
		return DEVICE_STATE_EMPTY;
	if (!s->eligible)
		return DEVICE_STATE_UNSAFE;
	if (s->bad_serial)
		return DEVICE_STATE_BAD;
	if (s->done_serial)
		return DEVICE_STATE_DONE;
	return DEVICE_STATE_READY;
}

static void db_check(struct daemon *d, int r);

/* A column of the mirrored row as text: NULL and "" differ. */
static const char *col_text(const char *s) { return s ? s : "\x01"; }

/* Mirror the slots into the devices table; the first failure ends the round (db_check). A slot
 * whose runner lost its job does not name that job. A row is written when it changed, and
 * unchanged once a heartbeat interval (its last_seen_at); force: every row now. */
static void mirror_devices(struct daemon *d, bool force)
{
	for (size_t i = 0; d->db && i < d->n_slots; i++) {
		struct slot *s = &d->slots[i];
		struct device_row row = {
			.station = d->cfg->station,
			.slot = s->name,
			.devnode = s->devnode,
			.serial = s->serial,
			.vendor = s->vendor,
			.model = s->model,
			.port_path = s->port_path,
			.have_capacity = s->present,
			.capacity_bytes = s->capacity,
			.usb_speed_mbps = s->speed,
			.state = slot_state(s),
			.state_reason = s->bad_serial	 ? (s->bad_reason ? s->bad_reason
									  : "stick refused (bad stick); replace it")
					: s->done_serial ? "job done; take the stick out to start the next one"
					: s->eligible	 ? NULL
							 : s->reason,
			.current_job_id = s->runner && !runner_lost(s->runner) ? runner_job_id(s->runner) : 0,
		};
		/* the row as a text, to see whether it changed (NULL: out of memory, written) */
		_cleanup_free_ char *key =
			str_printf("%s|%s|%s|%s|%s|%s|%d|%" PRIu64 "|%u|%s|%" PRId64,
				   col_text(device_state_name(row.state)), col_text(row.devnode), col_text(row.serial),
				   col_text(row.vendor), col_text(row.model), col_text(row.port_path),
				   row.have_capacity, row.capacity_bytes, row.usb_speed_mbps,
				   col_text(row.state_reason), row.current_job_id);
		double t = mono_s();
		if (!force && key && s->mirrored && strcmp(key, s->mirrored) == 0 &&
		    t < s->mirrored_at + d->cfg->worker.heartbeat_interval)
			continue;
		int r = device_upsert(d->db, &row);
		if (r < 0) {
			s->mirrored = mfree(s->mirrored);
			db_check(d, r);
			return;
		}
		free(s->mirrored);
		s->mirrored = TAKE_PTR(key);
		s->mirrored_at = t;
	}
}

/* The board (http/board.h): each slot that runs no job, as the devices table has it; a busy
 * slot's tile belongs to its runner. */
static void publish_board(struct daemon *d)
{
	static const enum tile_state tile_of[] = {
		[DEVICE_STATE_EMPTY] = TILE_EMPTY, [DEVICE_STATE_READY] = TILE_READY,	[DEVICE_STATE_DONE] = TILE_DONE,
		[DEVICE_STATE_BAD] = TILE_BAD,	   [DEVICE_STATE_UNSAFE] = TILE_UNSAFE,
	};
	board_db(d->board, d->db != NULL);
	for (size_t i = 0; i < d->n_slots; i++) {
		const struct slot *s = &d->slots[i];
		enum device_state st = slot_state(s);
		if (st == DEVICE_STATE_BUSY || (size_t)st >= ARRAY_SIZE(tile_of))
			continue;
		enum tile_state tile = st == DEVICE_STATE_READY && s->last_done ? TILE_DONE : tile_of[st];
		board_slot(d->board, s->name, tile, st == DEVICE_STATE_BAD ? s->bad_reason : s->reason, s->serial,
			   s->present ? s->capacity : 0);
	}
}

/* The stuck timeouts, for readers with no config of their own (v_stuck_jobs). */
static int write_settings(struct daemon *d)
{
	return settings_store_stuck_timeouts(d->db, d->cfg->stuck.processing_timeout, d->cfg->stuck.queued_timeout);
}

static int db_up(struct daemon *d)
{
	_cleanup_free_ char *err = NULL;
	if (d->db)
		return 0;
	if (mono_s() < d->db_retry_at)
		return -EAGAIN;
	int r = db_connect(d->cfg, &d->db, &err);
	if (r < 0) {
		if (!d->db_down_logged) {
			log_struct(LOG_LVL_ERR,
				   LOG_FIELDS(.message_id = LOG_MID_DB_LOST, .error_code = "DB_UNAVAILABLE"),
				   "DB_UNAVAILABLE: %s; retrying with backoff", err ? err : "cannot connect");
			sd_notifyf(0, "STATUS=waiting for the database: %s", err ? err : "cannot connect");
		}
		d->db_down_logged = true;
		/* at most a second between tries: back at work within a second or two of the server's return */
		d->db_backoff = d->db_backoff ? MIN(d->db_backoff * 2, 1.0) : 0.25;
		d->db_retry_at = mono_s() + d->db_backoff;
		log_debug("database still unavailable; next try in %.2f s", d->db_backoff);
		return r;
	}
	if (d->db_down_logged)
		log_struct(LOG_LVL_NOTICE, LOG_FIELDS(.message_id = LOG_MID_DB_BACK), "database reachable again");
	d->db_down_logged = false;
	d->db_backoff = 0;
	r = db_migrate(d->db, NULL);
	if (r == -EACCES) {
		/* least privilege: the daemon's account cannot change the schema; the operator runs
		 * db migrate as the admin account, and the daemon starts as soon as that is done */
		if (!d->schema_behind_logged) {
			log_error("the database schema is older than this usbforged (version %d) and '%s' may not "
				  "change it (%s): run 'usbforge db migrate' as the admin account (database.admin); "
				  "waiting",
				  db_schema_latest(), d->cfg->db.user, db_error(d->db));
			sd_notifyf(0, "STATUS=waiting for 'usbforge db migrate' (schema version %d)",
				   db_schema_latest());
		}
		d->schema_behind_logged = true;
		d->db = db_close(d->db);
		d->db_retry_at = mono_s() + 1.0;
		return r;
	}
	if (r < 0) {
		if (db_connection_broken(d->db, r))
			log_struct(LOG_LVL_ERR,
				   LOG_FIELDS(.message_id = LOG_MID_DB_LOST, .error_code = "DB_UNAVAILABLE"),
				   "DB_UNAVAILABLE: %s (while checking the schema); retrying", db_error(d->db));
		else
			log_error("migration failed: %s", db_error(d->db));
		d->db = db_close(d->db);
		d->db_down_logged = true;
		d->db_retry_at = mono_s() + 1.0;
		return r;
	}
	if (d->schema_behind_logged)
		log_notice("the database schema is current: at work");
	d->schema_behind_logged = false;
	r = worker_register(d->db, &(struct worker_info){ .id = d->worker_id,
							  .station = d->cfg->station,
							  .hostname = d->hostname,
							  .pid = (int)getpid(),
							  .version = UF_VERSION });
	if (r >= 0)
		r = write_settings(d);
	if (r < 0) {
		db_check(d, r);
		return r;
	}
	return 0;
}

/* A failed statement on the main connection: drop it if the server went away (it is tried
 * again at once, then at most a second apart). No new job is claimed meanwhile; running jobs
 * go on (their runners have connections of their own). */
static void db_check(struct daemon *d, int r)
{
	if (d->db && db_connection_broken(d->db, r)) {
		log_struct(LOG_LVL_ERR, LOG_FIELDS(.message_id = LOG_MID_DB_LOST, .error_code = "DB_UNAVAILABLE"),
			   "DB_UNAVAILABLE: %s; reconnecting", db_error(d->db));
		sd_notifyf(0, "STATUS=database unavailable (%s); no new job is claimed, running ones go on",
			   db_error(d->db));
		d->db_down_logged = true;
		d->db = db_close(d->db);
		d->db_backoff = 0;
		d->db_retry_at = mono_s();
	}
}

static void reap(struct daemon *d)
{
	struct reap_stats st;
	/* our own live runners' jobs are not stuck: their heartbeats lag only while the database
	 * was away, and each runner beats again (or learns it lost the job) on its own */
	int64_t *live = d->n_slots ? calloc(d->n_slots, sizeof(*live)) : NULL;
	size_t n_live = 0;
	if (d->n_slots && !live) {
		log_error("reaper: out of memory; skipped this round");
		return;
	}
	for (size_t i = 0; i < d->n_slots; i++)
		if (d->slots[i].runner && !runner_finished(d->slots[i].runner) && !runner_lost(d->slots[i].runner))
			live[n_live++] = runner_job_id(d->slots[i].runner);
	int r = queue_reap(d->db, d->cfg->stuck.processing_timeout, d->cfg->stuck.queued_timeout, d->cfg->retry.delays,
			   d->cfg->retry.n_delays, live, n_live, &st);
	free(live);
	if (r < 0) {
		db_check(d, r);
		return;
	}
	if (st.retried || st.failed || st.cancelled || st.stuck_reported)
		log_notice("reaper: %u stuck job(s) back to retry, %u failed, %u cancelled, %u reported stuck in the queue",
			   st.retried, st.failed, st.cancelled, st.stuck_reported);
	reap_stats_done(&st);
}

static void claim_for_free_slots(struct daemon *d)
{
	for (size_t i = 0; i < d->n_slots && d->busy < d->cfg->worker.max_concurrent && !d->stopping; i++) {
		struct slot *s = &d->slots[i];
		if (s->runner || !s->present || !s->eligible || s->bad_serial || s->done_serial || !s->devnode ||
		    mono_s() < s->in_use_until)
			continue;
		struct claim_req q = { .worker_id = d->worker_id,
				       .station = d->cfg->station,
				       .slot = s->name,
				       .device_serial = s->serial,
				       .device_bytes = s->capacity,
				       .capacity_tolerance = d->cfg->worker.capacity_tolerance };
		struct claimed_job *job = NULL;
		int r = job_claim(d->db, &q, &job);
		if (r == -ENOENT)
			continue;
		if (r < 0) {
			log_struct(LOG_LVL_WARNING, LOG_FIELDS(.slot = s->name, .device_serial = s->serial),
				   "claim for slot %s failed: %s", s->name, db_error(d->db));
			db_check(d, r);
			return;
		}
		struct runner_args a = { .cfg = &d->cur->c,
					 .worker_id = d->worker_id,
					 .slot = s->name,
					 .devpath = s->devnode,
					 .serial = s->serial,
					 .job = job,
					 .board = d->board,
					 .notify_fd = d->efd,
					 .db = TAKE_PTR(s->rdb) };
		const struct log_fields jf = { .message_id = LOG_MID_JOB_CLAIMED,
					       .job_id = job->id,
					       .order = job->order_number,
					       .unit = job->unit_index,
					       .has_unit = true,
					       .attempt = job->attempt,
					       .slot = s->name,
					       .device_serial = s->serial };
		log_struct(LOG_LVL_INFO, &jf, "job %lld (order %s unit %d, attempt %d/%d) claimed for slot %s (%s)",
			   (long long)job->id, job->order_number, job->unit_index, job->attempt, job->max_attempts,
			   s->name, s->devnode);
		r = runner_start(&a, &s->runner);
		if (r < 0) {
			struct log_fields ef = jf;
			ef.message_id = NULL;
			log_struct_errno(LOG_LVL_ERR, r, &ef, "cannot start a runner: %m");
			struct job_lease l = JOB_LEASE(job, d->worker_id);
			db_check(d, job_hand_back(d->db, &l, "runner could not start", NULL));
			claimed_job_free(job);
			s->runner = NULL;
			if (!d->db)
				return;
			continue;
		}
		s->runner_cfg = d->cur;
		s->last_done = false;
		d->cur->users++;
		d->busy++;
	}
}

static void join_finished(struct daemon *d)
{
	for (size_t i = 0; i < d->n_slots; i++) {
		struct slot *s = &d->slots[i];
		struct runner_result res;
		if (!s->runner || !runner_finished(s->runner))
			continue;
		/* the attempt's fields outlive its runner for the lines below */
		struct log_fields jf = *runner_log_fields(s->runner);
		_cleanup_free_ char *order = strdup_or_null(jf.order);
		jf.order = order;
		runner_join(s->runner, &res);
		db_close(s->rdb);
		s->rdb = res.db;   /* for the slot's next job */
		jf.slot = s->name; /* the runner's copies went with it */
		jf.device_serial = s->serial;
		bool bad = res.bad_stick, done = res.done;
		s->last_done = done;
		/* a pull its I/O saw before the hotplug event came: said here, once (the event, when
		 * it comes, finds the slot idle and says nothing) */
		if (res.gone && !s->removal_logged) {
			jf.message_id = LOG_MID_STICK_REMOVED;
			log_struct(LOG_LVL_WARNING, &jf, "slot %s: stick %s removed while busy", s->name,
				   s->devnode ? s->devnode : "");
		}
		s->removal_logged = false;
		s->runner = NULL;
		cfg_unref(d, s->runner_cfg);
		s->runner_cfg = NULL;
		d->busy--;
		/* While busy the slot was not re-read (refresh_slots skips it): the hotplug events of
		 * its stick leaving, or of its disk node coming back under another name after the
		 * reset, may all have come before the runner ended. Rescan before the slot is
		 * claimed or mirrored again. */
		d->next_poll = 0;
		if (bad && s->devnode) {
			free(s->bad_serial);
			free(s->bad_reason);
			s->bad_serial = strdup(slot_identity(s)); /* NULL (out of memory): not marked */
			if (asprintf(&s->bad_reason, "%s; replace it",
				     res.bad_reason ? res.bad_reason : "stick refused (bad stick)") < 0)
				s->bad_reason = NULL;
			jf.message_id = LOG_MID_STICK_BAD;
			log_struct(LOG_LVL_WARNING, &jf,
				   "slot %s: stick %s refused (%s); the slot stays bad until the stick is replaced",
				   s->name, s->bad_serial ? s->bad_serial : s->devnode,
				   res.bad_reason ? res.bad_reason : "bad stick");
		}
		free(res.bad_reason);
		/* Another writer has it: not a bad stick, and the job went back unspent. Give the
		 * slot a rest before it is tried again, so that two daemons do not pass a job to
		 * and fro at full speed. */
		if (res.in_use) {
			double rest = MAX(d->cfg->worker.poll_interval, 1.0);
			s->in_use_until = mono_s() + rest;
			jf.message_id = NULL; /* the runner said JOB_HANDED_BACK */
			log_struct(LOG_LVL_NOTICE, &jf,
				   "slot %s: in use by another writer; job handed back, the slot is tried again in %.1f s",
				   s->name, rest);
		}
		/* Static slots (files, loop devices: tests, demo, bench) stand for a stick that is
		 * replaced at once; a real stick must be taken out first. */
		if (done && s->devnode && d->cfg->usb.mode == USB_MODE_UDEV) {
			free(s->done_serial);
			s->done_serial = strdup(slot_identity(s));
		}
	}
}

/* --once: is there still work a slot of ours could take (now or after a retry delay)? */
static int work_left(struct daemon *d, bool *ret)
{
	if (d->busy) {
		*ret = true;
		return 0;
	}
	*ret = false;
	for (size_t i = 0; i < d->n_slots; i++) {
		struct slot *s = &d->slots[i];
		if (!s->present || !s->eligible || s->bad_serial || s->done_serial)
			continue;
		int64_t n = 0;
		int r = queue_count_fitting(d->db, d->cfg->station, s->capacity, d->cfg->worker.capacity_tolerance, &n);
		if (r < 0)
			return r;
		if (n) {
			*ret = true;
			return 0;
		}
	}
	return 0;
}

static void notify_status(struct daemon *d)
{
	int64_t queued = -1;
	if (!getenv("NOTIFY_SOCKET")) /* no service manager listens: nothing to count for */
		return;
	if (d->db)
		db_check(d, queue_count_runnable(d->db, &queued));
	if (d->db)
		sd_notifyf(0, "STATUS=%u/%zu slots busy, %lld queued", d->busy, d->n_slots, (long long)queued);
	else
		sd_notifyf(0, "STATUS=%u/%zu slots busy; database unavailable: no new job is claimed until it is back",
			   d->busy, d->n_slots);
}

/* SIGHUP: read the configuration again. The keys that can change in place take effect for what
 * starts from now on (claims, new runners, intervals, the reaper); running jobs keep the
 * configuration they started with. The station and the database and usb groups need a restart:
 * when they changed, a warning names them and their running values stay. A file that does not
 * load is refused with its error, and the running configuration stays whole. */
static void reload(struct daemon *d)
{
	const char *path = config_default_path(d->config_path);
	_cleanup_free_ char *err = NULL;
	sd_notify(0, "RELOADING=1");
	struct cfg_ref *n = calloc(1, sizeof(*n));
	int r = n ? config_load_default(d->config_path, &n->c, &err) : -ENOMEM;
	if (r < 0) {
		log_struct(LOG_LVL_ERR,
			   LOG_FIELDS(.message_id = LOG_MID_CONFIG_REFUSED, .error_code = "CONFIG_INVALID"),
			   "CONFIG_INVALID: reload refused, the running configuration stays: %s",
			   err ? err : "out of memory");
		free(n);
		sd_notify(0, "READY=1");
		return;
	}
	const char *changed[16];
	size_t k = config_restart_keys_changed(d->cfg, &n->c, changed, ARRAY_SIZE(changed));
	if (k) {
		char list[256] = "";
		for (size_t i = 0; i < k; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", changed[i]);
		if (config_keep_restart_keys(&n->c, d->cfg) < 0) {
			log_struct(LOG_LVL_ERR, LOG_FIELDS(.message_id = LOG_MID_CONFIG_REFUSED),
				   "reload of %s refused (out of memory); the running configuration stays", path);
			config_done(&n->c);
			free(n);
			sd_notify(0, "READY=1");
			return;
		}
		log_warning("reload: %s: %s changed; that takes a restart (systemctl restart usbforged), the running "
			    "value stays until then",
			    path, list);
	}
	struct cfg_ref *old = d->cur;
	d->cur = n;
	d->cfg = &n->c;
	if (old->users == 0) {
		config_done(&old->c);
		free(old);
	}
	d->next_poll = d->next_beat = d->next_reap = 0; /* the new intervals start now */
	(void)http_reload(&d->http, d->cfg, d->board);	/* logs its own failure */
	if (!*d->cfg->events.webhook)
		d->relay = relay_stop(d->relay);
	else if (d->relay)
		(void)relay_reload(d->relay, d->cfg); /* logs its own failure */
	else
		(void)relay_start(d->cfg, d->worker_id, &d->relay); /* logs its own failure */
	if (d->db)
		db_check(d, write_settings(d));
	log_struct(LOG_LVL_NOTICE, LOG_FIELDS(.message_id = LOG_MID_CONFIG_RELOADED),
		   "configuration reloaded from %s: poll %.2f s, up to %u at once, stuck after %.0f s", path,
		   d->cfg->worker.poll_interval, d->cfg->worker.max_concurrent, d->cfg->stuck.processing_timeout);
	sd_notify(0, "READY=1");
}

/* A stick pulled from a busy slot: tell its runner at once, so the attempt ends with
 * DEVICE_GONE within seconds instead of waiting for an I/O error to surface. Told either by
 * its block device leaving (devnode) or by its USB device leaving (port path). */
static void on_hotplug(void *userdata, const struct usb_monitor_event *ev)
{
	struct daemon *d = userdata;
	if (ev->action == USB_MONITOR_USB_REMOVE && ev->port_path) {
		for (size_t i = 0; i < d->n_slots; i++) {
			struct slot *s = &d->slots[i];
			if (s->runner && s->port_path && strcmp(s->port_path, ev->port_path) == 0) {
				struct log_fields jf = *runner_log_fields(s->runner);
				jf.message_id = LOG_MID_STICK_REMOVED;
				log_struct(LOG_LVL_WARNING, &jf, "slot %s: USB device on port %s removed while busy",
					   s->name, ev->port_path);
				s->removal_logged = true;
				runner_device_gone(s->runner);
			}
		}
		return;
	}
	if (ev->action != USB_MONITOR_REMOVE || !ev->devnode)
		return;
	/* A stick on a USB port is "gone" when its USB device leaves (above): its disk node also
	 * comes and goes across the USB reset before verification, which must not end the job.
	 * Slots without a port (static mode, loop devices) go by the disk node. */
	for (size_t i = 0; i < d->n_slots; i++) {
		struct slot *s = &d->slots[i];
		if (s->runner && !s->port_path && s->devnode && strcmp(s->devnode, ev->devnode) == 0) {
			struct log_fields jf = *runner_log_fields(s->runner);
			jf.message_id = LOG_MID_STICK_REMOVED;
			log_struct(LOG_LVL_WARNING, &jf, "slot %s: stick %s removed while busy", s->name, ev->devnode);
			s->removal_logged = true;
			runner_device_gone(s->runner);
		}
	}
}

int daemon_run(struct uf_config *initial, const char *config_path, bool once)
{
	struct daemon d = { .config_path = config_path, .once = once, .sfd = -1, .efd = -1 };
	sigset_t mask;
	char host[256] = "";
	int r = 0;
	uint64_t wd_usec = 0;

	d.cur = calloc(1, sizeof(*d.cur));
	if (!d.cur)
		return log_error_errno(ENOMEM, "cannot start: %m");
	d.cur->c = *initial; /* taken over */
	memset(initial, 0, sizeof(*initial));
	d.cfg = &d.cur->c;
	const struct uf_config *cfg = d.cfg; /* the start-up configuration, for start-up only */

	gethostname(host, sizeof(host) - 1);
	d.hostname = strdup(host);
	if (!d.hostname || asprintf(&d.worker_id, "%s/%s/%d", cfg->station, host, (int)getpid()) < 0) {
		d.worker_id = NULL;
		r = log_error_errno(ENOMEM, "cannot start: %m");
		goto out;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	d.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	d.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d.sfd < 0 || d.efd < 0) {
		r = log_error_errno(errno, "signalfd/eventfd: %m");
		goto out;
	}
	d.board = board_new(cfg->station, d.worker_id, cfg->worker.max_concurrent);
	if (!d.board) {
		r = log_error_errno(ENOMEM, "cannot start: %m");
		goto out;
	}
	if (cfg->http.listen && *cfg->http.listen) {
		r = http_start(cfg, d.board, &d.http);
		if (r < 0)
			goto out;
	}
	/* a bad secret file stops the start here, named, like a bad token file */
	if (*cfg->events.webhook) {
		r = relay_start(cfg, d.worker_id, &d.relay);
		if (r < 0)
			goto out;
	}
	if (cfg->retention.daily && !d.once) {
		r = retention_start(cfg, d.worker_id, &d.retention);
		if (r < 0)
			goto out;
	}
	for (size_t i = 0; i < cfg->usb.n_slots; i++)
		if (!slot_add(&d, cfg->usb.slots[i].name)) {
			r = -ENOMEM;
			goto out;
		}
	if (cfg->usb.mode == USB_MODE_UDEV) {
		r = usb_monitor_new(cfg, &d.mon);
		if (r < 0)
			log_warning_errno(r, "udev monitor unavailable (%m): polling every %.1f s instead",
					  cfg->worker.poll_interval);
	}
	bool wd = sd_watchdog_enabled(0, &wd_usec) > 0;

	log_struct(LOG_LVL_INFO, LOG_FIELDS(.message_id = LOG_MID_DAEMON_STARTED),
		   "usbforged %s starting: station %s, %s mode, %zu configured slot(s), up to %u at once", UF_VERSION,
		   cfg->station, cfg->usb.mode == USB_MODE_UDEV ? "udev" : "static", cfg->usb.n_slots,
		   cfg->worker.max_concurrent);
	bool ready = false;
	for (;;) {
		double t = mono_s();
		if (wd)
			sd_notify(0, "WATCHDOG=1");
		if (!d.db && db_up(&d) == 0 && !ready) {
			sd_notify(0, "READY=1");
			ready = true;
			log_struct(LOG_LVL_INFO, LOG_FIELDS(.message_id = LOG_MID_DAEMON_READY),
				   "connected to %s; worker %s ready", db_server_version(d.db), d.worker_id);
		}
		join_finished(&d);
		if (d.stopping && d.busy == 0)
			break;
		if (t >= d.next_poll || !d.mon) {
			refresh_slots(&d);
			d.next_poll = t + d.cfg->worker.poll_interval;
		}
		if (d.db) {
			if (t >= d.next_beat) {
				int q = worker_heartbeat(d.db, d.worker_id);
				if (q >= 0)
					board_heartbeat(d.board);
				db_check(&d, q);
				d.next_beat = t + d.cfg->worker.heartbeat_interval;
			}
		}
		if (d.db && t >= d.next_reap) {
			reap(&d);
			d.next_reap = t + d.cfg->stuck.check_interval;
		}
		if (d.db && !d.stopping)
			claim_for_free_slots(&d);
		if (d.db)
			mirror_devices(&d, false);
		publish_board(&d);
		if (d.once && d.db && !d.stopping) {
			bool left = true;
			int q = work_left(&d, &left);
			if (q < 0)
				db_check(&d, q);
			else if (!left)
				break;
		}
		notify_status(&d);

		/* wait */
		double next = d.next_poll;
		if (d.db)
			next = MIN(next, MIN(d.next_beat, d.next_reap));
		else
			next = MIN(next, d.db_retry_at);
		for (size_t i = 0; i < d.n_slots; i++) /* a slot in use elsewhere is tried again then */
			if (d.slots[i].in_use_until > mono_s())
				next = MIN(next, d.slots[i].in_use_until);
		if (d.once)
			next = MIN(next, mono_s() + 0.25); /* retries come due without an event */
		if (wd)
			next = MIN(next, mono_s() + (double)wd_usec / 2e6);
		double wait = next - mono_s();
		int timeout = wait <= 0 ? 0 : (int)ceil(wait * 1000);
		struct pollfd p[3] = { { d.sfd, POLLIN, 0 }, { d.efd, POLLIN, 0 }, { -1, POLLIN, 0 } };
		if (d.mon)
			p[2].fd = usb_monitor_fd(d.mon);
		int pr = poll(p, 3, timeout);
		if (pr < 0 && errno != EINTR) {
			r = log_error_errno(errno, "poll: %m");
			break;
		}
		if (pr > 0 && (p[0].revents & POLLIN)) {
			struct signalfd_siginfo si;
			ssize_t n = read(d.sfd, &si, sizeof(si));
			if (n == sizeof(si) && si.ssi_signo == SIGHUP) {
				if (!d.stopping)
					reload(&d);
			} else if (n == sizeof(si) && !d.stopping) {
				log_struct(LOG_LVL_NOTICE, LOG_FIELDS(.message_id = LOG_MID_DAEMON_STOPPING),
					   "signal %u: stopping; running jobs are handed back at their next chunk boundary",
					   si.ssi_signo);
				sd_notify(0, "STOPPING=1");
				d.stopping = true;
				for (size_t i = 0; i < d.n_slots; i++)
					if (d.slots[i].runner)
						runner_request_stop(d.slots[i].runner);
			}
		}
		if (pr > 0 && (p[1].revents & POLLIN)) {
			uint64_t v;
			if (read(d.efd, &v, sizeof(v)) < 0)
				log_debug_errno(errno, "eventfd read: %m");
		}
		if (pr > 0 && d.mon && (p[2].revents & POLLIN)) {
			if (usb_monitor_process(d.mon, on_hotplug, &d) > 0)
				d.next_poll = 0; /* something changed: rescan now */
		}
	}
	/* stop: wait for every runner (they hand their jobs back) */
	for (size_t i = 0; i < d.n_slots; i++)
		if (d.slots[i].runner) {
			runner_request_stop(d.slots[i].runner);
			runner_join(d.slots[i].runner, NULL);
			d.slots[i].runner = NULL;
			cfg_unref(&d, d.slots[i].runner_cfg);
			d.slots[i].runner_cfg = NULL;
		}
	if (d.db) {
		d.busy = 0;
		mirror_devices(&d, true);
	}
	if (d.db) /* the mirror may have found the connection lost, and dropped it */
		(void)worker_stop(d.db, d.worker_id);
	log_struct(LOG_LVL_INFO, LOG_FIELDS(.message_id = LOG_MID_DAEMON_STOPPED), "usbforged stopped");
out:
	for (size_t i = 0; i < d.n_slots; i++) {
		slot_clear(&d.slots[i]);
		free(d.slots[i].name);
		free(d.slots[i].bad_serial);
		free(d.slots[i].bad_reason);
		free(d.slots[i].done_serial);
		free(d.slots[i].mirrored);
		db_close(d.slots[i].rdb);
	}
	free(d.slots);
	d.relay = relay_stop(d.relay);
	d.retention = retention_stop(d.retention);
	d.http = http_stop(d.http); /* before the board it shows */
	board_free(d.board);
	usb_monitor_free(d.mon);
	db_close(d.db);
	if (d.sfd >= 0)
		close(d.sfd);
	if (d.efd >= 0)
		close(d.efd);
	free(d.worker_id);
	free(d.hostname);
	config_done(&d.cur->c);
	free(d.cur);
	return r < 0 ? r : 0;
}
