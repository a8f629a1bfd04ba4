/* Implementation of worker/retention.h. */
#include "worker/retention.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/db.h"
#include "db/prune.h"
#include "util/log.h"
#include "util/macro.h"

#define CHECK_EVERY_S 3600	       /* whether the daily prune is due */
#define LEASE_S	      (24 * 3600 - 60) /* a day, less a minute: the check drifts by nothing */
#define RETRY_DB_S    60

struct retention {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_bool stop;
	bool started;
	bool release_due; /* a failed prune's lease is still to be given back */
	char *holder;
	struct uf_config dbcfg; /* the database group only */
	int64_t older_than_s;
	bool jobs;
};

static void rt_free(struct retention *rt)
{
	free(rt->holder);
	config_done(&rt->dbcfg);
	pthread_mutex_destroy(&rt->lock);
	pthread_cond_destroy(&rt->cond);
	free(rt);
}

/* Sleep seconds, or until stopped. */
static void rt_wait(struct retention *rt, int seconds)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += seconds;
	pthread_mutex_lock(&rt->lock);
	while (!rt->stop && pthread_cond_timedwait(&rt->cond, &rt->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&rt->lock);
}

/* One check: take the lease if it is free and prune. 0 or the error that ended it. */
static int prune_once(struct retention *rt, struct db *db)
{
	bool held = false;
	int r = prune_lease_take(db, rt->holder, LEASE_S, &held);
	if (r < 0) {
		log_warning("retention: cannot take the daily prune's lease: %s", db_error(db));
		return r;
	}
	if (!held) {
		log_debug("retention: the daily prune is another daemon's today, or done");
		return 0;
	}
	struct prune_req q = {
		.older_than_s = rt->older_than_s, .jobs = rt->jobs, .actor = rt->holder, .cancel = &rt->stop
	};
	struct prune_stats st;
	_cleanup_free_ char *err = NULL;
	r = db_prune(db, &q, &st, &err);
	if (r < 0) {
		log_warning("retention: the daily prune stopped: %s", r == -ECANCELED ? "stopping"
								      : err	      ? err
										      : db_error(db));
		/* another daemon, or this one, tries again at the next check; when the database is
		 * what failed, the lease is given back once it answers again */
		rt->release_due = prune_lease_release(db, rt->holder) < 0;
		return r;
	}
	log_info("retention: pruned jobs that ended before %s: %lld log rows, %lld items, %lld events, %lld jobs, "
		 "%lld orders",
		 st.cutoff, (long long)st.logs, (long long)st.items, (long long)st.events, (long long)st.jobs,
		 (long long)st.orders);
	return 0;
}

static void *rt_main(void *userdata)
{
	struct retention *rt = userdata;
	struct db *db = NULL;
	while (!rt->stop) {
		if (!db) {
			_cleanup_free_ char *err = NULL;
			if (db_connect(&rt->dbcfg, &db, &err) < 0) {
				db = NULL;
				log_debug("retention: %s; trying again", err ? err : "cannot connect");
				rt_wait(rt, RETRY_DB_S);
				continue;
			}
		}
		int r = 0;
		if (rt->release_due) {
			r = prune_lease_release(db, rt->holder);
			rt->release_due = r < 0;
		}
		if (r == 0)
			r = prune_once(rt, db);
		if (r < 0 && db_connection_broken(db, r))
			db = db_close(db);
		rt_wait(rt, db ? CHECK_EVERY_S : RETRY_DB_S); /* a prune the database broke goes on soon */
	}
	db_close(db);
	return NULL;
}

int retention_start(const struct uf_config *cfg, const char *holder, struct retention **ret)
{
	struct retention *rt = calloc(1, sizeof(*rt));
	if (!rt)
		return log_error_errno(ENOMEM, "retention: %m");
	pthread_mutex_init(&rt->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rt->cond, &ca);
	pthread_condattr_destroy(&ca);
	rt->older_than_s = cfg->retention.older_than_s;
	rt->jobs = cfg->retention.jobs;
	rt->holder = strdup(holder);
	if (!rt->holder || config_copy_database(&rt->dbcfg, cfg) < 0) {
		rt_free(rt);
		return log_error_errno(ENOMEM, "retention: %m");
	}
	int r = -pthread_create(&rt->thread, NULL, rt_main, rt);
	if (r < 0) {
		rt_free(rt);
		return log_error_errno(r, "retention: cannot start its thread: %m");
	}
	rt->started = true;
	*ret = rt;
	return 0;
}

struct retention *retention_stop(struct retention *rt)
{
	if (!rt)
		return NULL;
	pthread_mutex_lock(&rt->lock);
	rt->stop = true;
	pthread_cond_broadcast(&rt->cond);
	pthread_mutex_unlock(&rt->lock);
	if (rt->started)
		pthread_join(rt->thread, NULL);
	rt_free(rt);
	return NULL;
}
