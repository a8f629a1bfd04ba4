/* usbforged's daily prune (retention.daily): a thread with its own database connection that
 * checks every hour whether the database's daily prune is due (db/prune.h's lease: free a day
 * after the last one began, taken by one daemon per database) and, when this daemon takes it,
 * runs db_prune with retention.older_than and retention.jobs, in small transactions beside the
 * jobs. The outcome is logged and audited (actor: the worker id). */
#pragma once

#include "config/config.h"

struct retention;

/* Start the thread as holder (the worker id). cfg's database group and retention group are
 * copied (a reload does not change them). 0, or < 0 after logging why. */
int retention_start(const struct uf_config *cfg, const char *holder, struct retention **ret);
/* Stop: a prune under way ends after its current batch; the thread is joined. NULL safe;
 * returns NULL. */
struct retention *retention_stop(struct retention *rt);
