/* The outbox's delivery side: the relay's lease (one deliverer per database), the unpublished
 * events it reads in id order, the guarded "published" mark, and what operators do with them
 * (replay a range; the oldest unpublished one's age is in queue_get_stats). The events themselves are written, and
 * listed (event_list), by db/jobs.c in the transactions of their transitions.
 *
 * The lease is the row outbox_lease('relay'): holder and expires_at, taken or renewed by one
 * guarded UPDATE on the server's clock (a holder whose lease ran out is replaced by whoever asks
 * next), and every published mark is guarded on still holding it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "db/db.h"
#include "db/jobs.h"

/* Take the lease for holder, or renew it when holder has it, for seconds from the server's
 * now. *ret_held: whether holder holds it now. 0, or a db error (-ENOTCONN…). */
int outbox_lease_take(struct db *db, const char *holder, double seconds, bool *ret_held);
/* Give the lease up (a clean stop), if holder has it. 0 or a db error. */
int outbox_lease_release(struct db *db, const char *holder);

/* Mark event id published (published_at = now) if it is still unpublished and holder still holds
 * the lease (on the server's clock). *ret_marked: whether this call marked it. 0 or db error. */
int outbox_mark_published(struct db *db, int64_t id, const char *holder, bool *ret_marked);
/* Operator: published_at back to NULL for the events since < id ≤ until (until ≤ 0: no upper
 * bound), so the relay sends them again with the same idempotency keys; one audit_log row
 * (actor, entity 'events' since, action 'events.replay', metadata {since, until, events}) in
 * the same transaction. *ret_n: how many were published and are now queued again. 0 or db
 * error. */
int outbox_replay(struct db *db, int64_t since, int64_t until, const char *actor, int64_t *ret_n);
