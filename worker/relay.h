/* The outbox relay of usbforged: a thread with its own database connection and libcurl handle
 * that POSTs every unpublished event to events.webhook, signed, and marks it published on a 2xx.
 * One daemon per database delivers: the one holding the lease row (db/outbox.h); the others
 * keep asking for it and take over when it runs out. Job processing never waits for it.
 *
 * Each POST: body {"id", "type", "aggregate": {"type", "id"}, "generation", "created_at",
 * "payload"} (compact JSON), Content-Type: application/json, Idempotency-Key: <event id>,
 * Usbforge-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.
 * Order: id order per order (a job's events belong to its job's order; an event of no order
 * to its aggregate). A delivery the receiver answers with a non-2xx status holds back that order's
 * later events (1 s doubling to 60 s, ±20 %), the others go on; a delivery that
 * gets no answer (connection refused, timeout, TLS) backs the whole relay off the same way, since
 * the receiver is away. At least once: a relay that dies between a 2xx and its published mark
 * sends that event again, with the same Idempotency-Key. */
#pragma once

#include "config/config.h"

struct relay;

/* Read cfg->events.secret_file (util/secretfile.h rules) and start the thread delivering to
 * cfg->events.webhook as holder (the worker id: unique per process). cfg is copied. 0, or < 0
 * after logging why (the secret file named): the daemon does not start. */
int relay_start(const struct uf_config *cfg, const char *holder, struct relay **ret);
/* SIGHUP: take cfg's webhook, timeout and secret file (read again now). A secret file that is
 * refused keeps the running secret (logged). 0 or < 0 (logged). */
int relay_reload(struct relay *rl, const struct uf_config *cfg);
/* Stop: a POST under way is cut off (within its progress callback), the lease given back, the
 * thread joined. NULL safe; returns NULL. */
struct relay *relay_stop(struct relay *rl);
