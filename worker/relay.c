/* Implementation of worker/relay.h. */
#include "worker/relay.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/db.h"
#include "db/outbox.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/monotime.h"
#include "util/secretfile.h"

#define SECRET_MIN     16
#define SECRET_MAX     4096
#define LEASE_MIN      15.0 /* seconds; at least timeout + RENEW_EVERY + 5 */
#define RENEW_EVERY    5.0
#define POLL_EVERY     1.0 /* unpublished events are looked for this often */
#define BATCH	       100
#define BACKOFF_FIRST  1.0
#define BACKOFF_MAX    60.0
#define MAX_AGGREGATES 256 /* aggregates backing off at once; past that the relay backs off whole */
#define RESPONSE_MAX   65536

/* The events of one order (a job's events belong to its job's order) go out in id order: when
 * the receiver refuses one, the rest of that order waits for it. An event of no order is its
 * own aggregate's. */
struct agg_backoff {
	char type[33];
	int64_t id;
	unsigned failures;
	double until;  /* mono_s */
	unsigned pass; /* an event of it was held back in this pass: so are its later ones */
};

struct relay {
	pthread_t thread;
	bool started;
	atomic_bool stop;
	pthread_mutex_t lock; /* url, secret, timeout; the wait */
	pthread_cond_t cond;
	char *url;
	char *secret;
	double timeout;
	char *holder;
	struct uf_config dbcfg; /* the database group only */

	/* the thread's own */
	struct db *db;
	CURL *curl;
	bool held;
	double lease_until, next_renew, backoff_until;
	unsigned failures; /* deliveries in a row that got no answer */
	bool failing_logged;
	struct agg_backoff aggs[MAX_AGGREGATES];
	size_t n_aggs;
	unsigned pass;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;
static void curl_init(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

static double lease_seconds(double timeout) { return MAX(LEASE_MIN, timeout + RENEW_EVERY + 5); }

/* 1 s doubling to 60 s, ±20 %. */
static double backoff(unsigned failures)
{
	double d = BACKOFF_FIRST * ldexp(1.0, (int)MIN(failures, 8u) - 1);
	d = MIN(d, BACKOFF_MAX);
	return d * (0.8 + 0.4 * ((double)random() / (double)RAND_MAX));
}

/* The URL up to its query, for logs (a query may carry a receiver's token). */
static void url_for_log(const char *url, char *buf, size_t size)
{
	size_t n = strcspn(url, "?#");
	snprintf(buf, size, "%.*s%s", (int)MIN(n, size - 1), url, url[n] ? "?…" : "");
}

/* Wait until deadline (mono_s) or stop. */
static void relay_wait(struct relay *rl, double deadline)
{
	pthread_mutex_lock(&rl->lock);
	while (!atomic_load(&rl->stop)) {
		double left = deadline - mono_s();
		if (left <= 0)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		double t = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + left;
		ts.tv_sec = (time_t)t;
		ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
		if (pthread_cond_timedwait(&rl->cond, &rl->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&rl->lock);
}

/* A statement failed: a broken connection is dropped (made again on the next round). */
static void db_failed(struct relay *rl, int r, const char *what)
{
	log_debug("events relay: %s: %s", what, db_error(rl->db));
	if (db_connection_broken(rl->db, r)) {
		log_warning("events relay: database connection lost (%s); reconnecting", db_error(rl->db));
		rl->db = db_close(rl->db);
		rl->held = false;
		rl->lease_until = 0;
		rl->next_renew = 0;
	}
}

/* "2026-12-03 15:04:00.123456" → "2026-12-03T15:04:00.123456Z" */
static char *iso_time(const char *t)
{
	char *s = NULL;
	if (asprintf(&s, "%.10sT%sZ", t, strlen(t) > 11 ? t + 11 : "") < 0)
		return NULL;
	return s;
}

/* The POST body of e (compact JSON), malloc'd; NULL on ENOMEM. */
static char *event_body(const struct event *e)
{
	json_error_t jerr;
	json_t *payload = e->payload ? json_loads(e->payload, JSON_DECODE_ANY, &jerr) : NULL;
	_cleanup_free_ char *created = iso_time(e->created_at ? e->created_at : "");
	if (!created) {
		json_decref(payload);
		return NULL;
	}
	json_t *o =
		json_pack("{s:I, s:s, s:{s:s, s:I}, s:i, s:s, s:o}", "id", (json_int_t)e->id, "type",
			  e->event_type ? e->event_type : "", "aggregate", "type",
			  e->aggregate_type ? e->aggregate_type : "", "id", (json_int_t)e->aggregate_id, "generation",
			  e->generation, "created_at", created, "payload", payload ? payload : json_null());
	if (!o)
		return NULL;
	char *body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return body;
}

/* "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>" into buf. 0 or -ENOMEM/-EIO. */
static int sign(const char *secret, long long t, const char *body, char *buf, size_t size)
{
	_cleanup_free_ char *msg = NULL;
	int n = asprintf(&msg, "%lld.%s", t, body);
	if (n < 0) {
		msg = NULL;
		return -ENOMEM;
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, (size_t)n, md, &mdlen))
		return -EIO;
	int w = snprintf(buf, size, "t=%lld,v1=", t);
	for (unsigned i = 0; i < mdlen && (size_t)w + 2 < size; i++)
		w += snprintf(buf + w, size - (size_t)w, "%02x", md[i]);
	return 0;
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
	size_t *got = ud;
	*got += size * n;
	return *got > RESPONSE_MAX ? 0 : size * n; /* a receiver that talks on is cut off */
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct relay *rl = ud;
	return atomic_load(&rl->stop) ? 1 : 0;
}

enum post_result { POST_OK, POST_REFUSED, POST_UNREACHED, POST_STOPPED };

/* POST e to the webhook. *ret_status: the HTTP status (0 when none). */
static enum post_result post_event(struct relay *rl, const struct event *e, const char *url, const char *secret,
				   double timeout, long *ret_status, char *why, size_t why_size)
{
	_cleanup_free_ char *body = event_body(e);
	char sig[160], idem[64], hsig[200];
	*ret_status = 0;
	if (!body || sign(secret, (long long)time(NULL), body, sig, sizeof(sig)) < 0) {
		snprintf(why, why_size, "out of memory");
		return POST_UNREACHED;
	}
	snprintf(idem, sizeof(idem), "Idempotency-Key: %lld", (long long)e->id);
	snprintf(hsig, sizeof(hsig), "Usbforge-Signature: %s", sig);
	struct curl_slist *h = NULL, *t;
	static const char *const fixed[] = { "Content-Type: application/json", "Expect:" };
	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
		if ((t = curl_slist_append(h, fixed[i])))
			h = t;
	if ((t = curl_slist_append(h, idem)))
		h = t;
	if ((t = curl_slist_append(h, hsig)))
		h = t;
	size_t got = 0;
	char err[CURL_ERROR_SIZE] = "";
	CURL *c = rl->curl;
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "usbforged/" UF_VERSION);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)llround(timeout * 1000));
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)llround(MIN(timeout, 10.0) * 1000));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, rl);
	/* TLS: libcurl's defaults verify the peer and the host name against the system's CAs */
	CURLcode cc = curl_easy_perform(c);
	curl_slist_free_all(h);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	*ret_status = status;
	if (cc == CURLE_ABORTED_BY_CALLBACK && atomic_load(&rl->stop))
		return POST_STOPPED;
	if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && status >= 200 && status < 300)) {
		/* libcurl's name of the failure, and its detail (a certificate problem, an address) */
		if (err[0] && strcmp(err, curl_easy_strerror(cc)) != 0)
			snprintf(why, why_size, "%s: %s", curl_easy_strerror(cc), err);
		else
			snprintf(why, why_size, "%s", curl_easy_strerror(cc));
		return status ? POST_REFUSED : POST_UNREACHED;
	}
	if (status >= 200 && status < 300)
		return POST_OK;
	snprintf(why, why_size, "HTTP status %ld", status);
	return POST_REFUSED;
}

/* The ordering key of e: its order, else its aggregate. */
static void agg_key(const struct event *e, const char **ret_type, int64_t *ret_id)
{
	bool order = e->order_id > 0;
	*ret_type = order ? "order" : e->aggregate_type ? e->aggregate_type : "";
	*ret_id = order ? e->order_id : e->aggregate_id;
}

static struct agg_backoff *agg_find(struct relay *rl, const struct event *e)
{
	const char *type;
	int64_t id;
	agg_key(e, &type, &id);
	for (size_t i = 0; i < rl->n_aggs; i++)
		if (rl->aggs[i].id == id && strncmp(rl->aggs[i].type, type, sizeof(rl->aggs[i].type) - 1) == 0)
			return &rl->aggs[i];
	return NULL;
}

static void agg_clear(struct relay *rl, const struct event *e)
{
	struct agg_backoff *a = agg_find(rl, e);
	if (a)
		*a = rl->aggs[--rl->n_aggs];
}

/* Take or renew the lease when due. */
static void lease_round(struct relay *rl, const char *url, double timeout)
{
	double t0 = mono_s();
	if (t0 < rl->next_renew)
		return;
	bool held = false;
	double secs = lease_seconds(timeout);
	int r = outbox_lease_take(rl->db, rl->holder, secs, &held);
	if (r < 0) {
		db_failed(rl, r, "lease");
		rl->held = false;
		rl->next_renew = mono_s() + 1;
		return;
	}
	if (held && !rl->held) {
		char u[160];
		url_for_log(url, u, sizeof(u));
		log_info("events relay: delivering the outbox to %s (this daemon holds the lease)", u);
	} else if (!held && rl->held) {
		log_warning("events relay: the lease went to another daemon; this one stops delivering");
	}
	rl->held = held;
	rl->lease_until = held ? t0 + secs - 1 : 0; /* counted from before the statement: never late */
	rl->next_renew = mono_s() + (held ? RENEW_EVERY : 2.0);
}

/* Deliver one event unless its aggregate is backing off. false: end the pass (stop, the relay
 * backs off, the lease wants renewing, the database failed). */
static bool deliver_one(struct relay *rl, const struct event *e)
{
	struct agg_backoff *a = agg_find(rl, e);
	if (a && (a->pass == rl->pass || a->until > mono_s())) {
		a->pass = rl->pass; /* an earlier event of its order is waiting to be sent again */
		return true;
	}
	pthread_mutex_lock(&rl->lock);
	_cleanup_free_ char *url = strdup(rl->url);
	char *secret = strdup(rl->secret);
	double timeout = rl->timeout;
	pthread_mutex_unlock(&rl->lock);
	if (!url || !secret) {
		secretfile_free(secret);
		return false;
	}
	/* the POST and its mark must end before the lease could: renew first if not */
	if (rl->lease_until - mono_s() <= timeout + 1) {
		secretfile_free(secret);
		return false;
	}
	long status = 0;
	char why[256] = "";
	enum post_result pr = post_event(rl, e, url, secret, timeout, &status, why, sizeof(why));
	secretfile_free(secret);
	if (pr == POST_STOPPED)
		return false;
	if (pr == POST_OK) {
		bool marked = false;
		int r = outbox_mark_published(rl->db, e->id, rl->holder, &marked);
		if (r < 0) {
			db_failed(rl, r, "mark published");
			return false;
		}
		if (!marked)
			log_debug("events relay: event %lld delivered but not marked (lease lost, or published meanwhile)",
				  (long long)e->id);
		log_debug("events relay: event %lld (%s) delivered: HTTP %ld", (long long)e->id, e->event_type, status);
		agg_clear(rl, e);
		if (rl->failing_logged)
			log_notice("events relay: the webhook answers again; delivering");
		rl->failures = 0;
		rl->failing_logged = false;
		return true;
	}
	if (pr == POST_UNREACHED || (!a && rl->n_aggs == MAX_AGGREGATES)) {
		rl->failures++;
		double d = backoff(rl->failures);
		rl->backoff_until = mono_s() + d;
		if (!rl->failing_logged)
			log_warning("events relay: event %lld not delivered (%s); trying again in %.1f s, backing off up "
				    "to %.0f s",
				    (long long)e->id, why, d, BACKOFF_MAX);
		else
			log_debug("events relay: event %lld not delivered (%s); again in %.1f s", (long long)e->id, why,
				  d);
		rl->failing_logged = true;
		return false;
	}
	/* the receiver answered, and refused: this aggregate waits, the others go on */
	const char *type;
	int64_t id;
	agg_key(e, &type, &id);
	if (!a) {
		a = &rl->aggs[rl->n_aggs++];
		*a = (struct agg_backoff){ .id = id };
		snprintf(a->type, sizeof(a->type), "%s", type);
	}
	a->failures++;
	a->pass = rl->pass;
	double d = backoff(a->failures);
	a->until = mono_s() + d;
	log_warning("events relay: event %lld (%s of %s %lld) refused (%s); the rest of %s %lld waits %.1f s",
		    (long long)e->id, e->event_type, e->aggregate_type, (long long)e->aggregate_id, why, type,
		    (long long)id, d);
	return true;
}

/* One pass over the unpublished events, oldest first. */
static void deliver_pass(struct relay *rl)
{
	int64_t cursor = 0;
	rl->pass++;
	/* forget the orders refused long ago (their events published meanwhile, by a replay's
	 * operator or another daemon): the table keeps room for the ones refused now */
	double now = mono_s();
	for (size_t i = 0; i < rl->n_aggs;)
		if (rl->aggs[i].until < now - 2 * BACKOFF_MAX)
			rl->aggs[i] = rl->aggs[--rl->n_aggs];
		else
			i++;
	for (;;) {
		struct event *ev = NULL;
		size_t n = 0;
		int r = event_list(rl->db, cursor, true, BATCH, &ev, &n);
		if (r < 0) {
			db_failed(rl, r, "read the outbox");
			return;
		}
		bool go_on = true;
		for (size_t i = 0; i < n && go_on && !atomic_load(&rl->stop); i++) {
			cursor = ev[i].id;
			go_on = deliver_one(rl, &ev[i]);
		}
		event_list_free(ev, n);
		if (!go_on || n < BATCH || atomic_load(&rl->stop))
			return;
	}
}

static void *relay_main(void *userdata)
{
	struct relay *rl = userdata;
	double db_retry_at = 0;
	bool db_logged = false;

	while (!atomic_load(&rl->stop)) {
		if (!rl->db) {
			if (mono_s() < db_retry_at) {
				relay_wait(rl, db_retry_at);
				continue;
			}
			_cleanup_free_ char *err = NULL;
			if (db_connect(&rl->dbcfg, &rl->db, &err) < 0) {
				rl->db = NULL;
				if (!db_logged)
					log_warning("events relay: %s; trying again", err ? err : "cannot connect");
				db_logged = true;
				db_retry_at = mono_s() + 2;
				continue;
			}
			db_logged = false;
		}
		pthread_mutex_lock(&rl->lock);
		_cleanup_free_ char *url = strdup(rl->url);
		double timeout = rl->timeout;
		pthread_mutex_unlock(&rl->lock);
		if (!url) {
			relay_wait(rl, mono_s() + 1);
			continue;
		}
		lease_round(rl, url, timeout);
		if (!rl->db)
			continue;
		double next = rl->next_renew;
		if (rl->held && mono_s() >= rl->backoff_until) {
			deliver_pass(rl);
			next = MIN(next, mono_s() + POLL_EVERY);
		} else if (rl->held) {
			next = MIN(next, rl->backoff_until);
		}
		if (rl->held && rl->lease_until - mono_s() <= timeout + 1)
			rl->next_renew = 0; /* the pass stopped for want of lease time: renew now */
		else
			relay_wait(rl, next);
	}
	if (rl->db && rl->held)
		(void)outbox_lease_release(rl->db, rl->holder); /* the next daemon need not wait */
	rl->db = db_close(rl->db);
	return NULL;
}

static struct relay *relay_free(struct relay *rl)
{
	if (!rl)
		return NULL;
	if (rl->curl)
		curl_easy_cleanup(rl->curl);
	free(rl->url);
	secretfile_free(rl->secret);
	free(rl->holder);
	config_done(&rl->dbcfg);
	pthread_cond_destroy(&rl->cond);
	pthread_mutex_destroy(&rl->lock);
	free(rl);
	return NULL;
}

int relay_start(const struct uf_config *cfg, const char *holder, struct relay **ret)
{
	_cleanup_free_ char *err = NULL;
	char *secret = NULL;
	int r = secretfile_read("events.secret_file", "secret", cfg->events.secret_file, SECRET_MIN, SECRET_MAX,
				&secret, &err);
	if (r < 0)
		return log_error_errno(r, "%s", err ? err : "events.secret_file: out of memory");

	struct relay *rl = calloc(1, sizeof(*rl));
	if (!rl) {
		secretfile_free(secret);
		return log_error_errno(ENOMEM, "events relay: %m");
	}
	rl->secret = secret;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rl->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&rl->lock, NULL);
	rl->url = strdup(cfg->events.webhook);
	rl->holder = strdup(holder);
	rl->timeout = cfg->events.timeout;
	if (!rl->url || !rl->holder || config_copy_database(&rl->dbcfg, cfg) < 0) {
		relay_free(rl);
		return log_error_errno(ENOMEM, "events relay: %m");
	}
	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK || !(rl->curl = curl_easy_init())) {
		relay_free(rl);
		return log_error_errno(ENOMEM, "events relay: libcurl could not start");
	}
	srandom((unsigned)(mono_ns() ^ (uint64_t)getpid()));
	r = -pthread_create(&rl->thread, NULL, relay_main, rl);
	if (r < 0) {
		relay_free(rl);
		return log_error_errno(r, "events relay: cannot start its thread: %m");
	}
	rl->started = true;
	*ret = rl;
	return 0;
}

int relay_reload(struct relay *rl, const struct uf_config *cfg)
{
	_cleanup_free_ char *err = NULL;
	char *secret = NULL;
	int r = secretfile_read("events.secret_file", "secret", cfg->events.secret_file, SECRET_MIN, SECRET_MAX,
				&secret, &err);
	if (r < 0) {
		log_warning("%s; the events relay keeps the secret it has",
			    err ? err : "events.secret_file: out of memory");
		secret = NULL;
	}
	char *url = strdup(cfg->events.webhook);
	if (!url) {
		secretfile_free(secret);
		return log_error_errno(ENOMEM, "events relay: reload: %m");
	}
	pthread_mutex_lock(&rl->lock);
	free(rl->url);
	rl->url = url;
	if (secret) {
		secretfile_free(rl->secret);
		rl->secret = secret;
	}
	rl->timeout = cfg->events.timeout;
	pthread_cond_signal(&rl->cond);
	pthread_mutex_unlock(&rl->lock);
	return r < 0 ? r : 0;
}

struct relay *relay_stop(struct relay *rl)
{
	if (!rl)
		return NULL;
	if (rl->started) {
		pthread_mutex_lock(&rl->lock);
		atomic_store(&rl->stop, true);
		pthread_cond_signal(&rl->cond);
		pthread_mutex_unlock(&rl->lock);
		pthread_join(rl->thread, NULL);
	}
	return relay_free(rl);
}
