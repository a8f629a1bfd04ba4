/* Running the usbforge CLI from a test: the binary of this build, stdin from /dev/null, stdout
 * and stderr captured whole. Shared by the CLI suites. */
#pragma once

struct tu_run {
	int status; /* exit status, or 128 + signal */
	char *out, *err;
};

/* Run usbforge with args (NULL-terminated); the output files live in dir. Asserts on failure to
 * run. Free with tu_run_done(). */
struct tu_run tu_run_cli(const char *dir, const char *const *args);
void tu_run_done(struct tu_run *r);
/* The whole file at path as a NUL-terminated string ("" when empty), malloc'd. */
char *tu_slurp(const char *path);
