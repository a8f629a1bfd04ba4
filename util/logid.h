/* The journal's MESSAGE_IDs of usbforge: one fixed 128-bit id per kind of event, in systemd's
 * format (32 lowercase hex digits, made once with `systemd-id128 new`), so that
 * `journalctl MESSAGE_ID=…` finds every event of a kind whatever its wording. An id is never
 * reused for another kind and never changed once released: scripts and alerts match on it.
 * README "Logs in the journal" lists them. */
#pragma once

/* usbforged started (its configuration loaded); not yet connected. */
#define LOG_MID_DAEMON_STARTED "19912ab61c8f4264bf9b06e665614517"
/* usbforged connected to the database and registered its worker: READY=1. */
#define LOG_MID_DAEMON_READY "6596ffcf0d4e4d63b596d8d185005148"
/* A stop signal: running jobs are handed back at their next chunk boundary. */
#define LOG_MID_DAEMON_STOPPING "c25802a6bcdc4283b7e16d9fed084b0c"
/* usbforged stopped (every runner joined). */
#define LOG_MID_DAEMON_STOPPED "2002261ace684f31ac66374030cbf31a"
/* The database could not be reached (or the connection was lost): ERROR_CODE DB_UNAVAILABLE. */
#define LOG_MID_DB_LOST "f7c3dfd007a646fb82ef42c833b09aae"
/* The database is reachable again after DB_LOST. */
#define LOG_MID_DB_BACK "70daa0544c2943588e2017ca74c0a379"
/* SIGHUP: the configuration was reloaded. */
#define LOG_MID_CONFIG_RELOADED "f2761ce386ae4761b5d621f98870fabb"
/* SIGHUP: the new configuration was refused and the running one stays (CONFIG_INVALID). */
#define LOG_MID_CONFIG_REFUSED "71b00d2b5da7458db18776b0f7139eac"
/* A job was claimed for a slot: an attempt starts (JOB_ID, ORDER, UNIT, ATTEMPT, SLOT). */
#define LOG_MID_JOB_CLAIMED "f7af1d079267473e805e6d78bf8516e9"
/* A stage of an attempt started (STAGE). */
#define LOG_MID_STAGE_STARTED "6942a1515a66423098b8b306206fb0f6"
/* A stage of an attempt ended well (STAGE); a failing stage ends in JOB_FAILED or JOB_RETRY. */
#define LOG_MID_STAGE_DONE "45bd3bdf14c146d38ff07fecdc6ae89b"
/* The job is done: written and verified, recorded once. */
#define LOG_MID_JOB_DONE "6468487b5ea44ebb917aa014caa6d37b"
/* An attempt failed and the job is over: failed or cancelled (ERROR_CODE, STAGE). */
#define LOG_MID_JOB_FAILED "428737f8445e467082388c004a581639"
/* An attempt failed and the job goes back to the queue: a retry after the configured delay, or
 * (a bad stick) at once, the attempt not spent (ERROR_CODE, STAGE). */
#define LOG_MID_JOB_RETRY "26f1fe5c7fad46f8ab749dfb559e6c99"
/* The job was handed back to the queue without spending the attempt (slot in use elsewhere,
 * daemon stopping). */
#define LOG_MID_JOB_HANDED_BACK "065f2235a1cf442cae57c83fc5138403"
/* The job is no longer this worker's (reaper, operator, later attempt): nothing more is written
 * for it. */
#define LOG_MID_JOB_LOST "7a82e3cdc14647c0bcae1b6281ef962a"
/* A stick was removed from a busy slot. */
#define LOG_MID_STICK_REMOVED "2b47432c28d04e23a3dc4b20db9d2815"
/* A stick was refused as bad (read-only, fake capacity, too small, unsafe): the slot stays bad
 * until it is replaced. */
#define LOG_MID_STICK_BAD "5260ae5e974749b5adb1aa9540a4c04a"
/* A finished stick was taken out: the slot takes the next job. */
#define LOG_MID_STICK_TAKEN_OUT "5eaefb9f78ef404ba6d4d09769122564"
