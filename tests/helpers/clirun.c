#include "helpers/clirun.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "helpers/testutil.h"

extern char **environ;

char *tu_slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	cr_assert(f, "%s", path);
	char *s = NULL;
	size_t n = 0;
	FILE *m = open_memstream(&s, &n);
	cr_assert(m);
	char buf[4096];
	size_t k;
	while ((k = fread(buf, 1, sizeof(buf), f)) > 0)
		cr_assert_eq(fwrite(buf, 1, k, m), k);
	cr_assert_not(ferror(f));
	fclose(f);
	cr_assert_eq(fclose(m), 0);
	return s;
}

struct tu_run tu_run_cli(const char *dir, const char *const *args)
{
	char *bin = tu_path(tu_binary_dir(), "cli/usbforge");
	char *outp = tu_path(dir, "out"), *errp = tu_path(dir, "err");
	const char *argv[64] = { bin };
	int n = 1;
	for (; args[n - 1]; n++) {
		cr_assert_lt(n, 63, "too many arguments");
		argv[n] = args[n - 1];
	}
	argv[n] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	pid_t pid;
	cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	struct tu_run r = { .status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
			    .out = tu_slurp(outp),
			    .err = tu_slurp(errp) };
	free(bin);
	free(outp);
	free(errp);
	return r;
}

void tu_run_done(struct tu_run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}
