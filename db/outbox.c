/* Implementation of db/outbox.h. */
#include "db/outbox.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"

#define LEASE_NAME "relay"

int outbox_lease_take(struct db *db, const char *holder, double seconds, bool *ret_held)
{
	uint64_t n = 0;
	/* CLIENT_FOUND_ROWS: a renewal counts even within the same microsecond */
	int r = db_exec(db, &n,
			"UPDATE outbox_lease SET holder = ?, expires_at = NOW(6) + INTERVAL ? MICROSECOND"
			" WHERE name = '" LEASE_NAME "' AND (holder = ? OR holder IS NULL OR expires_at < NOW(6))",
			DB_STR(holder), DB_I64((int64_t)llround(seconds * 1e6)), DB_STR(holder), DB_END);
	if (r < 0)
		return r;
	*ret_held = n == 1;
	return 0;
}

int outbox_lease_release(struct db *db, const char *holder)
{
	return db_exec(db, NULL,
		       "UPDATE outbox_lease SET holder = NULL, expires_at = NOW(6) WHERE name = '" LEASE_NAME
		       "' AND holder = ?",
		       DB_STR(holder), DB_END);
}

int outbox_mark_published(struct db *db, int64_t id, const char *holder, bool *ret_marked)
{
	uint64_t n = 0;
	int r = db_exec(db, &n,
			"UPDATE events e JOIN outbox_lease l ON l.name = '" LEASE_NAME "' AND l.holder = ?"
			" AND l.expires_at > NOW(6)"
			" SET e.published_at = NOW(6) WHERE e.id = ? AND e.published_at IS NULL",
			DB_STR(holder), DB_I64(id), DB_END);
	if (r < 0)
		return r;
	*ret_marked = n == 1;
	return 0;
}

struct replay_tx {
	int64_t since, until;
	const char *actor;
	int64_t n;
};

static int replay_fn(struct db *db, void *userdata)
{
	struct replay_tx *t = userdata;
	uint64_t n = 0;
	int r = db_exec(db, &n,
			"UPDATE events SET published_at = NULL WHERE id > ? AND id <= ? AND published_at IS NOT NULL",
			DB_I64(t->since), DB_I64(t->until > 0 ? t->until : INT64_MAX), DB_END);
	if (r < 0)
		return r;
	char meta[128];
	if (t->until > 0)
		snprintf(meta, sizeof(meta), "{\"since\": %lld, \"until\": %lld, \"events\": %llu}",
			 (long long)t->since, (long long)t->until, (unsigned long long)n);
	else
		snprintf(meta, sizeof(meta), "{\"since\": %lld, \"until\": null, \"events\": %llu}",
			 (long long)t->since, (unsigned long long)n);
	r = db_exec(db, NULL,
		    "INSERT INTO audit_log (actor, entity_type, entity_id, action, metadata)"
		    " VALUES (?, 'events', ?, 'events.replay', ?)",
		    DB_STR(t->actor), DB_I64(t->since), DB_STR(meta), DB_END);
	if (r < 0)
		return r;
	t->n = (int64_t)n;
	return 0;
}

int outbox_replay(struct db *db, int64_t since, int64_t until, const char *actor, int64_t *ret_n)
{
	struct replay_tx t = { .since = since, .until = until, .actor = actor };
	int r = db_transaction(db, replay_fn, &t);
	if (r < 0)
		return r;
	*ret_n = t.n;
	return 0;
}
