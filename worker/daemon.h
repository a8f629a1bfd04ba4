/* usbforged's main loop: connect (and reconnect) to the database, register the worker, watch the
 * slots, claim jobs for free sticks, run one runner thread per busy slot up to
 * worker.max_concurrent, reap stuck jobs, talk to systemd, reload its configuration on SIGHUP,
 * and stop cleanly on SIGTERM/SIGINT. */
#pragma once

#include <stdbool.h>

#include "config/config.h"

/* Run until a stop signal (or, once, until no job any slot could take remains). *cfg is taken
 * over (left zeroed); config_path (NULL: $USBFORGE_CONFIG or the default) is read again on
 * SIGHUP. Returns 0 on a clean stop, < 0 on a fatal start-up error (after logging it). */
int daemon_run(struct uf_config *cfg, const char *config_path, bool once);
