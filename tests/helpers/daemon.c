/* Implementation of tests/helpers/daemon.h. */
#include "helpers/daemon.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers/clirun.h"
#include "helpers/testdb.h"
#include "helpers/testutil.h"
#include "util/macro.h"

extern char **environ;

static pid_t spawned[16];

double td_mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void track(pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(spawned); i++)
		if (!spawned[i]) {
			spawned[i] = pid;
			return;
		}
	cr_assert_fail("more than %zu daemons", ARRAY_SIZE(spawned));
}

static void untrack(pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(spawned); i++)
		if (spawned[i] == pid)
			spawned[i] = 0;
}

pid_t td_spawn(const char *conf, const char *logp)
{
	char *bin = tu_path(tu_binary_dir(), "worker/usbforged");
	char *argv[] = { bin, (char *)"--verbose", (char *)"--config", (char *)conf, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 2, logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
	pid_t pid;
	cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	free(bin);
	track(pid);
	return pid;
}

int td_wait_exit(pid_t pid, double s)
{
	double end = td_mono() + s;
	int st;
	while (td_mono() < end) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			untrack(pid);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		(void)poll(NULL, 0, 20);
	}
	cr_assert_fail("usbforged %d did not exit within %.0f s", (int)pid, s);
	return -1;
}

void td_stop(pid_t pid, double s)
{
	cr_assert_eq(kill(pid, SIGTERM), 0);
	int st = td_wait_exit(pid, s);
	cr_assert_eq(st, 0, "usbforged %d exited %d on SIGTERM", (int)pid, st);
}

void td_kill_all(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(spawned); i++)
		if (spawned[i]) {
			kill(spawned[i], SIGKILL);
			waitpid(spawned[i], NULL, 0);
			spawned[i] = 0;
		}
}

void td_wait_log(const char *logp, const char *needle, double s)
{
	double end = td_mono() + s;
	while (td_mono() < end) {
		char *t = tu_slurp(logp);
		bool found = strstr(t, needle) != NULL;
		free(t);
		if (found)
			return;
		(void)poll(NULL, 0, 20);
	}
	char *t = tu_slurp(logp);
	cr_assert_fail("no '%s' in %s within %.0f s:\n%s", needle, logp, s, t);
}

long long td_wait_count(struct db *db, const char *sql, long long want, double s)
{
	double end = td_mono() + s;
	long long v = -1;
	while (td_mono() < end) {
		v = tdb_count(db, sql);
		if (v == want)
			return v;
		(void)poll(NULL, 0, 20);
	}
	cr_assert_fail("%s = %lld, want %lld within %.0f s", sql, v, want, s);
	return v;
}
