/* usbforged processes for the suites that run the real daemon: spawned with their stderr in a
 * log file, tracked so that the suite's teardown kills whatever a failed test left running, and
 * waited on states with deadlines (an exit, a log line, a query's value). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

struct db;

/* Start usbforged --verbose --config conf, its stderr appended to logp. Asserts. */
pid_t td_spawn(const char *conf, const char *logp);
/* Wait at most s seconds for pid to exit: its exit status, or 128 + the signal. Asserts that
 * it exits. */
int td_wait_exit(pid_t pid, double s);
/* SIGTERM pid and assert that it exits 0 within s seconds. */
void td_stop(pid_t pid, double s);
/* SIGKILL and reap every daemon still running (a suite's teardown). */
void td_kill_all(void);
/* Wait at most s seconds for needle in the file logp. Asserts, printing the log. */
void td_wait_log(const char *logp, const char *needle, double s);
/* Wait at most s seconds for the first column of sql to be want. Asserts; returns it. */
long long td_wait_count(struct db *db, const char *sql, long long want, double s);
/* Seconds on the monotonic clock. */
double td_mono(void);
