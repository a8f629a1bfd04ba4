/* Retention (issue 15): the history of finished jobs older than a horizon removed in small
 * transactions, so that daemons keep claiming and finishing jobs meanwhile. A job is finished
 * when its state is done, failed or cancelled, and older than the horizon when it ended
 * (completed_at, failed_at or cancelled_at) before it. Its log rows, item rows and published
 * events go. With `jobs`, orders go too, whole: an order that is finished, has no unpublished
 * event, and whose every job is finished before the horizon with no unpublished event goes with
 * its jobs and their rows; the job rows of any other order stay (`order confirm` makes the units
 * that have no row, so a unit's row removed on its own would come back as a new job). An
 * unpublished event is never removed. Optionally every row is first written to a
 * zstd-compressed JSON Lines archive, fsynced before the transaction that deletes it does any
 * DELETE. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct db;

/* Jobs examined per transaction (about ten log rows each). */
#define PRUNE_BATCH_JOBS 100

struct prune_req {
	int64_t older_than_s;	   /* the horizon, > 0 */
	bool jobs;		   /* also the job rows, and orders whose jobs are all gone */
	bool dry_run;		   /* count what would go; change nothing, lock nothing */
	const char *archive;	   /* a new file to write the rows to first, or NULL */
	const char *actor;	   /* audit_log's actor */
	const atomic_bool *cancel; /* may be NULL; when it turns true, -ECANCELED after this batch */
};

struct prune_stats {
	int64_t logs, items, events, jobs, orders;
	char cutoff[32]; /* the server's NOW(6) − horizon, "YYYY-MM-DD hh:mm:ss.ffffff" */
};

/* "90d", "12h", "30m", "45s", "2w" or a number of seconds: a whole, positive count of one unit.
 * 0, or -EINVAL (not a duration) / -ERANGE (zero or over 100 years). *ret only on success. */
int prune_age_parse(const char *s, int64_t *ret_seconds);

/* Prune as req says. Each batch is one transaction (db_transaction: restarted as a whole on a
 * deadlock or a lost server; an archive may then hold a batch's rows twice). The archive is
 * opened with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, must be a regular file, and its directory is
 * fsynced: -EEXIST, -ELOOP, … with *ret_error naming it. When not a dry run and something was
 * removed or the run ended, one audit_log row (entity "database", action "db.prune") records the
 * request, the counts and the error that stopped it, if any. *ret: what the committed batches
 * removed (or would), also on failure; those batches stay removed (and archived). 0, or a
 * negative errno with *ret_error (may be NULL) saying why, or a db error (*ret_error unset:
 * db_error()). -ECANCELED when req->cancel turned true. */
int db_prune(struct db *db, const struct prune_req *req, struct prune_stats *ret, char **ret_error);

/* The daily prune's lease, the row outbox_lease('prune'): taken by holder for seconds when it is
 * free (never held, or run out: a day after the last daily prune began), by one guarded UPDATE on
 * the server's clock, so that one daemon per database prunes once a day. *ret_held: whether
 * holder took it now. 0 or a db error. */
int prune_lease_take(struct db *db, const char *holder, int64_t seconds, bool *ret_held);
/* Give it up (a failed prune is tried again at the next check), if holder has it. */
int prune_lease_release(struct db *db, const char *holder);
