/* The outbox relay end to end: real usbforged processes (static file slots) on the real MariaDB
 * POST the outbox to a receiver running in this test (libmicrohttpd on 127.0.0.1, one thread
 * per connection so that it can hold a request). The receiver records every request: its
 * Idempotency-Key, body and signature (recomputed here with the secret), and what it answered.
 * Every wait is on a state (a receiver count, a row, a log line) with a deadline. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db/jobs.h"
#include "db/orders.h"
#include "helpers/clirun.h"
#include "helpers/daemon.h"
#include "helpers/testdb.h"
#include "helpers/testutil.h"
#include "util/macro.h"

#define DBNAME "uf_t_relay"
#define SECRET "whsec_relay-tests-0123456789abcdef"
#define MAXREQ 512
extern char **environ;

static struct db *db;
static char *dir, *secretfile;

/* ---- the receiver ---- */

enum mode { ANSWER_200, ANSWER_500, HOLD };

struct request {
	long long key; /* Idempotency-Key */
	char *body;
	bool sig_ok;	 /* Usbforge-Signature verifies with SECRET */
	unsigned status; /* what was answered; 0 while held, 999 when the client left */
};

static struct receiver {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct MHD_Daemon *mhd;
	unsigned port;
	enum mode mode;
	bool release;	      /* held requests: answer now */
	long long refuse_key; /* answered 500 refuse_left more times, whatever the mode */
	unsigned refuse_left;
	unsigned held_now;
	struct request req[MAXREQ];
	size_t n;
} rx = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/* "t=T,v1=HEX" over "T.BODY" with SECRET. */
static bool signature_ok(const char *h, const char *body)
{
	long long t = 0;
	char hex[65] = "";
	if (!h || sscanf(h, "t=%lld,v1=%64[0-9a-f]", &t, hex) != 2 || strlen(hex) != 64)
		return false;
	if (llabs((long long)time(NULL) - t) > 300)
		return false;
	char *msg = NULL;
	int n = asprintf(&msg, "%lld.%s", t, body);
	cr_assert_gt(n, 0);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)msg, (size_t)n, md, &len);
	free(msg);
	char want[65];
	for (unsigned i = 0; i < len; i++)
		snprintf(want + 2 * i, 3, "%02x", md[i]);
	return len == 32 && strcmp(want, hex) == 0;
}

struct upload {
	char *buf;
	size_t len;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *data, size_t *size, void **ptr)
{
	struct upload *u = *ptr;
	if (!u) {
		*ptr = calloc(1, sizeof(struct upload));
		return MHD_YES;
	}
	if (*size) {
		u->buf = realloc(u->buf, u->len + *size + 1);
		memcpy(u->buf + u->len, data, *size);
		u->len += *size;
		u->buf[u->len] = '\0';
		*size = 0;
		return MHD_YES;
	}
	const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
	const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Usbforge-Signature");
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	pthread_mutex_lock(&rx.lock);
	size_t i = rx.n < MAXREQ ? rx.n++ : MAXREQ - 1;
	struct request *r = &rx.req[i];
	r->key = key ? atoll(key) : -1; /* NOLINT: a test's own header */
	r->body = strdup(u->buf ? u->buf : "");
	r->sig_ok = signature_ok(sig, r->body) && strcmp(method, "POST") == 0 && ct &&
		    strcmp(ct, "application/json") == 0 && strcmp(url, "/hook") == 0;
	r->status = 0;
	if (rx.mode == HOLD) {
		rx.held_now++;
		pthread_cond_broadcast(&rx.cond);
		double end = td_mono() + 30;
		while (!rx.release && td_mono() < end) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 20 * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&rx.cond, &rx.lock, &ts);
		}
		rx.held_now--;
	}
	unsigned status = rx.mode == ANSWER_500 ? 500 : 200; /* a held request: the mode it was released in */
	if (r->key == rx.refuse_key && rx.refuse_left > 0) {
		status = 500;
		rx.refuse_left--;
	}
	pthread_mutex_unlock(&rx.lock);
	struct MHD_Response *resp = MHD_create_response_from_buffer(2, (void *)"{}", MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	pthread_mutex_lock(&rx.lock);
	r->status = status;
	pthread_cond_broadcast(&rx.cond);
	pthread_mutex_unlock(&rx.lock);
	return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **ptr, enum MHD_RequestTerminationCode toe)
{
	struct upload *u = *ptr;
	if (u) {
		free(u->buf);
		free(u);
	}
	*ptr = NULL;
}

static const char *scheme = "http"; /* the webhook's in config() */

/* Listen on 127.0.0.1:port (0: any) in mode; with TLS when key and cert (PEM texts) are given. */
static void rx_start_tls(unsigned port, enum mode mode, const char *key, const char *cert)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	pthread_mutex_lock(&rx.lock);
	rx.mode = mode;
	rx.release = false;
	pthread_mutex_unlock(&rx.lock);
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
	rx.mhd = key ? MHD_start_daemon(flags | MHD_USE_TLS, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
					MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
					MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_END)
		     : MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
					MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
					MHD_OPTION_END);
	cr_assert(rx.mhd, "receiver on port %u", port);
	rx.port = MHD_get_daemon_info(rx.mhd, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void rx_start(unsigned port, enum mode mode) { rx_start_tls(port, mode, NULL, NULL); }

/* Stop listening: the port is closed. Held requests are answered 500 first. */
static void rx_stop(void)
{
	pthread_mutex_lock(&rx.lock);
	rx.mode = ANSWER_500;
	rx.release = true;
	pthread_cond_broadcast(&rx.cond);
	pthread_mutex_unlock(&rx.lock);
	if (rx.mhd)
		MHD_stop_daemon(rx.mhd);
	rx.mhd = NULL;
}

static void rx_mode(enum mode m)
{
	pthread_mutex_lock(&rx.lock);
	rx.mode = m;
	if (m != HOLD)
		rx.release = true;
	else
		rx.release = false;
	pthread_cond_broadcast(&rx.cond);
	pthread_mutex_unlock(&rx.lock);
}

static void rx_refuse(long long key, unsigned times)
{
	pthread_mutex_lock(&rx.lock);
	rx.refuse_key = key;
	rx.refuse_left = times;
	pthread_mutex_unlock(&rx.lock);
}

static void rx_reset(void)
{
	rx.refuse_key = 0;
	rx.refuse_left = 0;
	for (size_t i = 0; i < rx.n; i++)
		free(rx.req[i].body);
	rx.n = 0;
	rx.held_now = 0;
}

/* Requests received so far whose answer is status (0: any, received at all). */
static size_t rx_count(unsigned status)
{
	size_t k = 0;
	for (size_t i = 0; i < rx.n; i++)
		if (!status || rx.req[i].status == status)
			k++;
	return k;
}

static size_t rx_n(void)
{
	pthread_mutex_lock(&rx.lock);
	size_t n = rx.n;
	pthread_mutex_unlock(&rx.lock);
	return n;
}

/* Wait until rx_count(status) >= want. */
static void rx_wait(unsigned status, size_t want, double s)
{
	double end = td_mono() + s;
	pthread_mutex_lock(&rx.lock);
	while (rx_count(status) < want && td_mono() < end) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&rx.cond, &rx.lock, &ts);
	}
	size_t got = rx_count(status);
	pthread_mutex_unlock(&rx.lock);
	cr_assert_geq(got, want, "receiver: %zu request(s) answered %u, want %zu within %.0f s", got, status, want, s);
}

static void rx_wait_held(double s)
{
	double end = td_mono() + s;
	pthread_mutex_lock(&rx.lock);
	while (rx.held_now == 0 && td_mono() < end) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&rx.cond, &rx.lock, &ts);
	}
	unsigned h = rx.held_now;
	pthread_mutex_unlock(&rx.lock);
	cr_assert_gt(h, 0, "no request held within %.0f s", s);
}

/* ---- daemons, events ---- */

static void setup(void)
{
	db = tdb_fresh(DBNAME);
	dir = tu_tmpdir("relay");
	secretfile = tu_path(dir, "webhook.secret");
	tu_write_file(secretfile, SECRET "\n", strlen(SECRET) + 1);
	cr_assert_eq(chmod(secretfile, 0600), 0);
}

static void teardown(void)
{
	td_kill_all();
	rx_stop();
	rx_reset();
	scheme = "http";
	db = db_close(db);
	tu_rmrf(dir);
	free(dir);
	free(secretfile);
}
TestSuite(relay, .init = setup, .fini = teardown, .timeout = 180);

/* A config for a daemon with one static slot (its own file) and the relay to the receiver. */
static char *config(const char *name, const char *secret_path, double timeout)
{
	char *slot = NULL, *extra = NULL, *conf = NULL;
	cr_assert(asprintf(&slot, "%s/%s.slot", dir, name) > 0);
	int fd = open(slot, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 64 << 20), 0);
	close(fd);
	cr_assert(
		asprintf(&extra,
			 "worker = { poll_interval = 0.2; heartbeat_interval = 0.2; };\n"
			 "usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"%s\"; } ); };\n"
			 "content = { images = \"%s\"; };\n"
			 "events = { webhook = \"%s://127.0.0.1:%u/hook\"; secret_file = \"%s\"; timeout = %.1f; };\n",
			 slot, dir, scheme, rx.port, secret_path, timeout) > 0);
	char *cname = NULL;
	cr_assert(asprintf(&cname, "%s.conf", name) > 0);
	conf = tdb_write_config_as(dir, cname, DBNAME, NULL, NULL, extra);
	free(cname);
	free(slot);
	free(extra);
	return conf;
}

/* An outbox row, as db/jobs.c writes them (the relay reads only the table). */
static void add_event(const char *agg_type, long long agg_id, const char *type)
{
	char payload[96];
	snprintf(payload, sizeof(payload), "{\"%s_id\": %lld, \"what\": \"%s\"}", agg_type, agg_id, type);
	cr_assert_eq(db_exec(db, NULL,
			     "INSERT INTO events (aggregate_type, aggregate_id, event_type, generation, payload)"
			     " VALUES (?, ?, ?, 0, ?)",
			     DB_STR(agg_type), DB_I64(agg_id), DB_STR(type), DB_STR(payload), DB_END),
		     0, "%s", db_error(db));
}

/* Every event of the table delivered: answered 200 exactly once per id (more only where
 * extra_ok allows, and then as retries of the same key), each body the row, signed; the first
 * 200 of each order's events (a job's belong to its order; the others to their aggregate) in id
 * order. */
static void assert_delivered(long long n_events, size_t extra_ok)
{
	/* the receiver is idle by now (every event is published): read it without its lock, which
	 * an assertion failing would leave taken */
	struct db_res *res = NULL;
	cr_assert_eq(db_query(db, &res,
			      "SELECT e.id, e.aggregate_type, e.aggregate_id, e.event_type, e.generation, e.payload,"
			      " DATE_FORMAT(e.created_at, '%Y-%m-%dT%H:%i:%s.%fZ'), e.published_at,"
			      " IF(e.aggregate_type = 'order', e.aggregate_id, j.order_id)"
			      " FROM events e LEFT JOIN processing_jobs j ON e.aggregate_type = 'job' AND j.id = e.aggregate_id"
			      " ORDER BY e.id",
			      DB_END),
		     0);
	cr_assert_eq((long long)db_res_count(res), n_events);
	db_row row;
	size_t ok200 = 0;
	for (size_t i = 0; i < rx.n; i++) {
		cr_assert(rx.req[i].sig_ok, "request %zu (key %lld): bad signature or headers", i, rx.req[i].key);
		if (rx.req[i].status == 200)
			ok200++;
	}
	cr_assert_eq(ok200, (size_t)n_events + extra_ok, "%zu answered 200 for %lld events", ok200, n_events);
	struct seen {
		bool order;	    /* id is an order's, else an aggregate's of no order */
		long long id, last; /* last: the request that answered its previous event 200 */
	} seen[64];
	size_t n_seen = 0;
	long long *ids = calloc((size_t)n_events + 1, sizeof(*ids)); /* the events' ids (with gaps) */
	cr_assert(ids);
	size_t n_ids = 0;
	while ((row = db_res_next(res))) {
		long long id = db_row_i64(row, 0);
		ids[n_ids++] = id;
		cr_assert_not_null(row[7], "event %lld not published", id);
		size_t first = MAXREQ, got = 0;
		for (size_t i = 0; i < rx.n; i++)
			if (rx.req[i].key == id && rx.req[i].status == 200) {
				got++;
				if (first == MAXREQ)
					first = i;
			}
		cr_assert_geq(got, 1, "event %lld never answered 200", id);
		cr_assert(got == 1 || extra_ok, "event %lld answered 200 %zu times", id, got);
		json_error_t je;
		json_t *b = json_loads(rx.req[first].body, 0, &je);
		cr_assert(b, "body of %lld: %s", id, rx.req[first].body);
		json_t *want = json_pack("{s:I, s:s, s:{s:s, s:I}, s:I, s:s, s:o}", "id", (json_int_t)id, "type",
					 row[3], "aggregate", "type", row[1], "id", (json_int_t)db_row_i64(row, 2),
					 "generation", (json_int_t)db_row_i64(row, 4), "created_at", row[6], "payload",
					 json_loads(row[5], 0, &je));
		cr_assert(json_equal(b, want), "event %lld: got %s", id, rx.req[first].body);
		json_decref(b);
		json_decref(want);
		/* order per order: the first 200 of each event after its predecessor's */
		bool order = row[8] != NULL;
		long long key = order ? db_row_i64(row, 8) : db_row_i64(row, 2);
		size_t k = 0;
		while (k < n_seen && (seen[k].order != order || seen[k].id != key))
			k++;
		if (k == n_seen) {
			cr_assert_lt(n_seen, ARRAY_SIZE(seen));
			seen[n_seen++] = (struct seen){ order, key, -1 };
		}
		cr_assert_gt((long long)first, seen[k].last, "event %lld delivered before an earlier one of its order",
			     id);
		seen[k].last = (long long)first;
	}
	/* every request's key is an event's id: duplicates are retries of the same key */
	for (size_t i = 0; i < rx.n; i++) {
		size_t k = 0;
		while (k < n_ids && ids[k] != rx.req[i].key)
			k++;
		cr_assert_lt(k, n_ids, "request with key %lld", rx.req[i].key);
	}
	free(ids);
	db_res_free(res);
}

/* ---- the tests ---- */

Test(relay, every_event_once_in_order)
{
	rx_start(0, ANSWER_200);
	for (int k = 0; k < 4; k++) /* three orders' events interleaved */
		for (long long o = 1; o <= 3; o++)
			add_event("order", o,
				  k == 0   ? "order.confirmed"
				  : k == 1 ? "job.started"
				  : k == 2 ? "job.done"
					   : "order.done");
	char *conf = config("d1", secretfile, 5);
	char *logp = tu_path(dir, "d1.log");
	pid_t pid = td_spawn(conf, logp);
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 30);
	rx_wait(200, 12, 5);
	/* a new event is picked up by polling */
	add_event("order", 2, "order.note");
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 10);
	assert_delivered(13, 0);
	/* without failures, global id order */
	for (size_t i = 0; i < rx.n; i++)
		cr_assert_eq(rx.req[i].key, (long long)i + 1);
	td_stop(pid, 20);
	free(conf);
	free(logp);
}

Test(relay, receiver_down_nothing_lost)
{
	rx_start(0, ANSWER_500);
	unsigned port = rx.port;
	for (long long o = 1; o <= 2; o++)
		add_event("order", o, "order.confirmed");
	char *conf = config("d1", secretfile, 1.5);
	char *logp = tu_path(dir, "d1.log");
	pid_t pid = td_spawn(conf, logp);
	/* 500s: each order's first event refused, again after its backoff */
	rx_wait(500, 4, 30);
	for (long long o = 1; o <= 2; o++)
		add_event("order", o, "job.done");
	/* a receiver that holds the request past events.timeout */
	rx_mode(HOLD);
	rx_wait_held(30);
	td_wait_log(logp, "Timeout was reached", 10);
	/* then the port closed */
	rx_stop();
	td_wait_log(logp, "Couldn't connect to server", 30);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NOT NULL"), 0);
	for (long long o = 1; o <= 2; o++)
		add_event("order", o, "order.done");
	/* back: everything delivered, once, in order per order */
	size_t before = rx_n();
	rx_start(port, ANSWER_200);
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 90);
	assert_delivered(6, 0);
	cr_assert_eq(rx_n() - before, 6, "after the receiver came back: %zu requests for 6 events", rx_n() - before);
	td_stop(pid, 20);
	free(conf);
	free(logp);
}

Test(relay, bad_secret_file_refused_at_start)
{
	rx_start(0, ANSWER_200);
	struct {
		const char *name, *content;
		mode_t mode;
		bool link;
		const char *why;
	} cases[] = {
		{ "loose.secret", SECRET "\n", 0644, false, "mode 0644 is too open" },
		{ "link.secret", NULL, 0600, true, "a symbolic link (not followed)" },
		{ "empty.secret", "", 0600, false, "empty: the first line must be the secret" },
		{ "short.secret", "abc\n", 0600, false, "the first line must be the secret, 16 to 4096" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *p = tu_path(dir, cases[i].name);
		if (cases[i].link) {
			cr_assert_eq(symlink(secretfile, p), 0);
		} else {
			tu_write_file(p, cases[i].content, strlen(cases[i].content));
			cr_assert_eq(chmod(p, cases[i].mode), 0);
		}
		char *conf = config("bad", p, 5);
		char *logp = tu_path(dir, "bad.log");
		unlink(logp);
		pid_t pid = td_spawn(conf, logp);
		cr_assert_neq(td_wait_exit(pid, 30), 0, "%s", cases[i].name);
		char *log = tu_slurp(logp), *want = NULL;
		cr_assert(asprintf(&want, "events.secret_file %s: %s", p, cases[i].why) > 0);
		cr_assert(strstr(log, want), "want '%s' in:\n%s", want, log);
		free(want);
		free(log);
		free(logp);
		free(conf);
		free(p);
	}
	cr_assert_eq(rx.n, 0);
}

/* An https webhook whose certificate the system's CAs do not vouch for (self-signed) gets
 * nothing: the TLS handshake fails, the event stays unpublished, the log says why. */
Test(relay, an_unverified_certificate_gets_nothing)
{
	char *cmd = NULL;
	cr_assert(asprintf(&cmd,
			   "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
			   " -addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem 2>/dev/null",
			   dir, dir) > 0);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	free(cmd);
	char *kp = tu_path(dir, "key.pem"), *cp = tu_path(dir, "cert.pem");
	char *key = tu_slurp(kp), *cert = tu_slurp(cp);
	rx_start_tls(0, ANSWER_200, key, cert);
	scheme = "https";
	add_event("order", 1, "order.done");
	char *conf = config("d1", secretfile, 2);
	char *logp = tu_path(dir, "d1.log");
	pid_t pid = td_spawn(conf, logp);
	td_wait_log(logp,
		    "event 1 not delivered (SSL peer certificate or SSH remote key was not OK: SSL certificate problem:"
		    " self-signed certificate)",
		    30);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL"), 1);
	cr_assert_eq(rx_n(), 0, "a request got through the failed handshake");
	td_stop(pid, 20);
	free(kp);
	free(cp);
	free(key);
	free(cert);
	free(conf);
	free(logp);
}

Test(relay, two_daemons_deliver_each_event_once)
{
	rx_start(0, ANSWER_200);
	char *c1 = config("d1", secretfile, 5), *c2 = config("d2", secretfile, 5);
	char *l1 = tu_path(dir, "d1.log"), *l2 = tu_path(dir, "d2.log");
	pid_t p1 = td_spawn(c1, l1), p2 = td_spawn(c2, l2);
	for (int k = 0; k < 10; k++)
		for (long long o = 1; o <= 3; o++) {
			char type[32];
			snprintf(type, sizeof(type), "order.step%d", k);
			add_event("order", o, type);
		}
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 60);
	/* the holder stops; the other takes the lease it gave back and delivers the rest */
	long long holder_is_1 = 0;
	{
		char *t = tu_slurp(l1);
		holder_is_1 = strstr(t, "this daemon holds the lease") != NULL;
		free(t);
	}
	pid_t holder = holder_is_1 ? p1 : p2, other = holder_is_1 ? p2 : p1;
	td_stop(holder, 20);
	for (long long o = 1; o <= 3; o++)
		add_event("order", o, "order.done");
	td_wait_log(holder_is_1 ? l2 : l1, "this daemon holds the lease", 30);
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 30);
	assert_delivered(33, 0);
	td_stop(other, 20);
	free(c1);
	free(c2);
	free(l1);
	free(l2);
}

Test(relay, killed_between_post_and_mark_sends_again)
{
	rx_start(0, HOLD);
	add_event("order", 1, "order.confirmed");
	add_event("order", 1, "order.done");
	char *conf = config("d1", secretfile, 5);
	char *logp = tu_path(dir, "d1.log");
	pid_t pid = td_spawn(conf, logp);
	rx_wait_held(30);
	kill(pid, SIGKILL);
	cr_assert_eq(td_wait_exit(pid, 20), 128 + SIGKILL);
	rx_mode(ANSWER_200); /* the held request is answered 200, to nobody */
	rx_wait(200, 1, 10);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NOT NULL"), 0);
	/* restarted: the lease of the dead daemon runs out, then event 1 goes again, same key */
	pid = td_spawn(conf, logp);
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 60);
	assert_delivered(2, 1);
	cr_assert_eq(rx_n(), 3);
	cr_assert_eq(rx.req[0].key, 1);
	cr_assert_eq(rx.req[1].key, 1, "the retry carries the same Idempotency-Key");
	cr_assert_eq(rx.req[2].key, 2);
	td_stop(pid, 20);
	free(conf);
	free(logp);
}

Test(relay, cli_unpublished_replay_and_stats)
{
	rx_start(0, ANSWER_200);
	for (long long o = 1; o <= 2; o++)
		add_event("order", o, "order.confirmed");
	char *conf = config("cli", secretfile, 5);
	const char *stats[] = { "--config", conf, "--json", "queue", "stats", NULL };
	struct tu_run r = tu_run_cli(dir, stats);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_error_t je;
	json_t *j = json_loads(r.out, 0, &je);
	json_t *age = json_object_get(j, "oldest_unpublished_event_age_seconds");
	cr_assert(json_is_real(age) && json_real_value(age) >= 0 && json_real_value(age) < 60, "%s", r.out);
	json_decref(j);
	tu_run_done(&r);
	const char *unpub[] = { "--config", conf, "--json", "events", "--unpublished", "--since", "1", NULL };
	r = tu_run_cli(dir, unpub);
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = json_loads(r.out, 0, &je);
	cr_assert_eq(json_array_size(j), 1, "%s", r.out);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(j, 0), "id")), 2);
	json_decref(j);
	tu_run_done(&r);

	char *logp = tu_path(dir, "cli.log");
	pid_t pid = td_spawn(conf, logp);
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 30);
	const char *unpub_all[] = { "--config", conf, "events", "--unpublished", NULL };
	r = tu_run_cli(dir, unpub_all);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "");
	tu_run_done(&r);
	const char *stats_text[] = { "--config", conf, "queue", "stats", NULL };
	r = tu_run_cli(dir, stats_text);
	cr_assert(strstr(r.out, "oldest_unpublished     -\n"), "%s", r.out);
	tu_run_done(&r);

	/* replay event 2 only: sent again with its key, audited */
	const char *bad[] = { "--config", conf, "events", "replay", NULL };
	r = tu_run_cli(dir, bad);
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "--since is required"), "%s", r.err);
	tu_run_done(&r);
	const char *replay[] = { "--config", conf, "events", "replay", "--since", "1", "--until", "2", NULL };
	r = tu_run_cli(dir, replay);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "1 event(s) after 1 up to 2 queued to be sent again\n");
	tu_run_done(&r);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'events.replay' AND entity_id = 1"
				   " AND JSON_VALUE(metadata, '$.events') = 1"),
		     1);
	rx_wait(200, 3, 30);
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 30);
	assert_delivered(2, 1);
	cr_assert_eq(rx_n(), 3);
	cr_assert_eq(rx.req[2].key, 2);
	td_stop(pid, 20);
	free(conf);
	free(logp);
}

/* An order of capacity bytes for the image img (size len), confirmed: its one job's id. */
static long long confirm(const char *number, uint64_t capacity, const char *img, size_t len)
{
	struct order_new o = {
		.number = number, .capacity_bytes = capacity, .quantity = 1, .image_path = img, .image_bytes = len
	};
	int64_t oid;
	cr_assert_eq(order_add(db, &o, &oid), 0, "%s", db_error(db));
	struct order_confirmation cf = { 0 };
	cr_assert_eq(order_confirm(db, number, NULL, 4, "test", &cf), 0, "%s", db_error(db));
	order_confirmation_done(&cf);
	char q[160];
	snprintf(q, sizeof(q), "SELECT id FROM processing_jobs WHERE order_id = %lld", (long long)oid);
	return tdb_count(db, q);
}

static char *image(size_t len) { return tu_pattern_file(dir, "img.raw", len, 7); }

/* A job's event the receiver refuses holds back the rest of its order, the order's own
 * order.done included, while another order's events go on; once it is taken, its order follows
 * in id order. */
Test(relay, a_refused_job_event_holds_back_its_order)
{
	rx_start(0, ANSWER_200);
	char *img = image(1 << 20);
	/* an order that no stick of the daemon fits (its slot is 64 MiB): the job stays queued */
	long long job = confirm("BIG-1", 64ULL << 30, img, 1 << 20);
	long long order = tdb_count(db, "SELECT id FROM orders WHERE order_number = 'BIG-1'");
	add_event("job", job, "job.started"); /* 1: refused twice */
	add_event("order", 999, "order.confirmed");
	add_event("job", job, "job.done");
	add_event("order", order, "order.done");
	rx_refuse(1, 2);
	char *conf = config("d1", secretfile, 2);
	char *logp = tu_path(dir, "d1.log");
	pid_t pid = td_spawn(conf, logp);
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 30);
	assert_delivered(4, 0);
	/* 1 refused, 2 taken meanwhile, 1 refused again, then 1, 3, 4 */
	cr_assert_eq(rx_n(), 6);
	long long want[] = { 1, 2, 1, 1, 3, 4 };
	unsigned status[] = { 500, 200, 500, 200, 200, 200 };
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		cr_assert_eq(rx.req[i].key, want[i], "request %zu: key %lld", i, rx.req[i].key);
		cr_assert_eq(rx.req[i].status, status[i], "request %zu: status %u", i, rx.req[i].status);
	}
	td_wait_log(logp, "event 1 (job.started of job", 5);
	td_wait_log(logp, "refused (HTTP status 500); the rest of order", 5);
	td_stop(pid, 20);
	free(img);
	free(conf);
	free(logp);
}

/* The first request answered 200 after request from whose body has type and the order number
 * number (its payload's order_number); MAXREQ when none, and only one may. */
static size_t delivered(size_t from, const char *type, const char *number, json_t **ret_payload)
{
	size_t at = MAXREQ;
	for (size_t i = from; i < rx.n; i++) {
		if (rx.req[i].status != 200)
			continue;
		json_t *b = json_loads(rx.req[i].body, 0, NULL);
		cr_assert(b, "body %s", rx.req[i].body);
		json_t *p = json_object_get(b, "payload");
		const char *t = json_string_value(json_object_get(b, "type"));
		const char *n = json_string_value(json_object_get(p, "order_number"));
		if (t && n && strcmp(t, type) == 0 && strcmp(n, number) == 0) {
			cr_assert_eq(at, MAXREQ, "%s of %s answered 200 twice", type, number);
			at = i;
			if (ret_payload)
				*ret_payload = json_incref(p);
		}
		json_decref(b);
	}
	cr_assert_neq(at, MAXREQ, "%s of %s never delivered", type, number);
	return at;
}

/* Done when: an order confirmed, its stick written by usbforged, and the sales system's receiver
 * down (500s, then its port closed) while it happens; once back, every event of the order
 * arrives exactly once, in order, signed: job.started with an estimate (the kiosk's recent
 * average of the capacity: an earlier order's stick), job.done with the duration and the
 * speeds, order.done. */
Test(relay, order_to_done_with_the_receiver_down)
{
	rx_start(0, ANSWER_200);
	unsigned port = rx.port;
	size_t len = 2 << 20;
	char *img = image(len);
	char *conf = config("d1", secretfile, 2);
	char *logp = tu_path(dir, "d1.log");
	pid_t pid = td_spawn(conf, logp);
	/* the kiosk's first order: its job.started has no estimate, nothing being measured yet */
	confirm("SALE-0", 64 << 20, img, len);
	td_wait_count(db, "SELECT COUNT(*) FROM orders WHERE order_number = 'SALE-0' AND status = 'done'", 1, 60);
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 30);
	json_t *p0 = NULL;
	delivered(0, "job.started", "SALE-0", &p0);
	cr_assert(json_is_null(json_object_get(p0, "estimate_seconds")));
	cr_assert_str_eq(json_string_value(json_object_get(p0, "estimate_reason")), "no measurement yet");
	json_decref(p0);

	/* the customer's order, while the receiver refuses and then is away */
	size_t before = rx_n();
	rx_mode(ANSWER_500);
	confirm("SALE-1", 64 << 20, img, len);
	rx_wait(500, 1, 30);
	rx_stop();
	td_wait_count(db, "SELECT COUNT(*) FROM orders WHERE order_number = 'SALE-1' AND status = 'done'", 1, 60);
	td_wait_log(logp, "Couldn't connect to server", 30);
	long long n = tdb_count(db, "SELECT COUNT(*) FROM events");
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM events WHERE event_type IN ('job.started', 'job.done',"
				   " 'order.done') AND JSON_VALUE(payload, '$.order_number') = 'SALE-1'"),
		     3);
	cr_assert_eq(n, 6, "SALE-0's three events and SALE-1's: %lld", n);
	rx_start(port, ANSWER_200);
	td_wait_count(db, "SELECT COUNT(*) FROM events WHERE published_at IS NULL", 0, 90);
	assert_delivered(n, 0);
	/* SALE-1's three, each answered 200 exactly once, in order; the estimate from SALE-0's
	 * speeds; the duration and the speeds in job.done */
	json_t *ps = NULL, *pd = NULL;
	size_t started = delivered(before, "job.started", "SALE-1", &ps);
	size_t done = delivered(before, "job.done", "SALE-1", &pd);
	size_t order_done = delivered(before, "order.done", "SALE-1", NULL);
	cr_assert(started < done && done < order_done, "job.started at %zu, job.done at %zu, order.done at %zu",
		  started, done, order_done);
	cr_assert_str_eq(json_string_value(json_object_get(ps, "estimate_source")), "recent_average");
	cr_assert_eq(json_integer_value(json_object_get(ps, "estimate_jobs")), 1);
	cr_assert_gt(json_number_value(json_object_get(ps, "estimate_seconds")), 0);
	cr_assert_eq(json_integer_value(json_object_get(ps, "bytes_to_write")), (json_int_t)len);
	cr_assert_eq(tdb_count(db, "SELECT COUNT(*) FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
				   " WHERE o.order_number = 'SALE-0' AND j.write_bytes_per_s > 0"),
		     1);
	cr_assert_gt(json_number_value(json_object_get(pd, "duration_seconds")), 0);
	cr_assert_gt(json_number_value(json_object_get(pd, "write_bytes_per_s")), 0);
	cr_assert_gt(json_number_value(json_object_get(pd, "verify_bytes_per_s")), 0);
	json_decref(ps);
	json_decref(pd);
	td_stop(pid, 20);
	free(img);
	free(conf);
	free(logp);
}
