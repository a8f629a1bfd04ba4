/* Retention (issue 15): the history of finished jobs older than a horizon removed in small
 * transactions, so that daemons keep claiming and finishing jobs meanwhile. A job is finished
 * when its state is done, failed or cancelled, and older than the horizon when it ended
 * (completed_at, failed_at or cancelled_at) before it. Its log rows, item rows and published
 * events go; with `jobs` the job row too, and an order once none of its jobs is left. An
 * unpublished event is never removed, and neither is its job or order. Optionally every row is
 * first written to a zstd-compressed JSON Lines archive, fsynced before the transaction that
 * deletes it commits. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct db;

/* Jobs examined per transaction (about ten log rows each). */
#define PRUNE_BATCH_JOBS 100

struct prune_req {
	int64_t older_than_s;	     /* the horizon, > 0 */
	bool jobs;		     /* also the job rows, and orders whose jobs are all gone */
	bool dry_run;		     /* count what would go; change nothing, lock nothing */
	const char *archive;	     /* a new file to write the rows to first, or NULL */
	const char *actor;	     /* audit_log's actor */
	const volatile bool *cancel; /* may be NULL; when it turns true, -ECANCELED after this batch */
};

struct prune_stats {
	int64_t logs, items, events, jobs, orders;
	char cutoff[32]; /* the server's NOW(6) − horizon, "YYYY-MM-DD hh:mm:ss.ffffff" */
};

/* "90d", "12h", "30m", "45s", "2w" or a number of seconds: a whole, positive count of one unit.
 * 0, or -EINVAL (not a duration) / -ERANGE (zero or over 100 years). *ret only on success. */
int prune_age_parse(const char *s, int64_t *ret_seconds);

/* Prune as req says. Each batch is one transaction (db_transaction: restarted as a whole on a
 * deadlock; an archive may then hold a batch's rows twice). The archive is opened with
 * O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, and must be a regular file: -EEXIST, -ELOOP, … with
 * *ret_error naming it. When not a dry run, one audit_log row (entity "database", action
 * "db.prune") records the request and the counts. *ret is written on success; on failure the
 * batches committed so far stay removed (and archived). 0, a negative errno with *ret_error
 * (may be NULL) saying why for archive errors, or a db error (db_error()). */
int db_prune(struct db *db, const struct prune_req *req, struct prune_stats *ret, char **ret_error);

/* The daily prune's lease, the row outbox_lease('prune'): taken by holder for seconds when it is
 * free (never held, or run out: a day after the last daily prune began), by one guarded UPDATE on
 * the server's clock, so that one daemon per database prunes once a day. *ret_held: whether
 * holder took it now. 0 or a db error. */
int prune_lease_take(struct db *db, const char *holder, int64_t seconds, bool *ret_held);
/* Give it up (a failed prune is tried again at the next check), if holder has it. */
int prune_lease_release(struct db *db, const char *holder);
