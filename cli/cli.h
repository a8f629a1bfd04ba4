/* The usbforge command line: shared state of one invocation, the command table's entry type,
 * exit codes, and output helpers (aligned tables for people, one JSON document with --json).
 * Each command group lives in cli/cmd_<group>.c and registers in the table of cli/main.c. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "config/config.h"

enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAIL = 1,
	CLI_EXIT_USAGE = 2, /* usage or config error */
	CLI_EXIT_NOTFOUND = 3,
};

struct cli {
	const char *config_path; /* --config, or NULL */
	bool json;		 /* --json */
	bool config_loaded;
	struct uf_config cfg;
	const char *prog; /* "usbforge" */
};

/* A command: argv[0] is the last word of the command's name ("add" for "order add"); options
 * follow. Returns a CLI_EXIT_* status, or a negative errno for a failure it has not reported
 * (-ENOMEM): main() then prints it and exits CLI_EXIT_FAIL (cli_exit_status). */
typedef int (*cli_cmd_fn)(struct cli *c, int argc, char **argv);

struct cli_cmd {
	const char *group; /* "order", or NULL for one-word commands ("devices") */
	const char *name;  /* "add" */
	cli_cmd_fn fn;
	const char *usage; /* "NUMBER --capacity SIZE [--quantity N] …" */
	const char *help;  /* one line */
};

/* Load the config once (--config, $USBFORGE_CONFIG, default path); on error prints
 * "usbforge: FILE:LINE: …" and returns CLI_EXIT_USAGE; 0 on success. A missing default file
 * (not named explicitly) is fine: defaults are used. */
int cli_load_config(struct cli *c);

/* Text output. Every string a user or a program could have chosen (names, order numbers, file
 * names, log messages, argv, database values) is printed through utf8_escape_text() (util/utf8.h):
 * C0/DEL bytes as \xNN, C1 controls as \u00NN, invalid UTF-8 bytes as \xNN, '\' as "\\"; the
 * functions below and the table do it for the whole text they print. */

/* Print "usbforge: <msg>" (escaped) to stderr; returns status. */
int cli_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "usbforge: warning: <msg>" (escaped) to stderr. */
void cli_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the formatted line, escaped, and '\n' to out. 0 or -ENOMEM (nothing printed). */
int cli_line(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print a usage error (escaped) for cmd plus its usage line. */
void cli_usage_message(const char *cmd, const char *usage, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* cli_usage_message(), then CLI_EXIT_USAGE: `return cli_usage_error(…);`. A macro so that the
 * value is known where it is returned (no path where a usage error "succeeds"). */
#define cli_usage_error(cmd, usage, ...) (cli_usage_message((cmd), (usage), __VA_ARGS__), CLI_EXIT_USAGE)

/* Dump one JSON document to stdout (indent 2) and steal the reference. Returns 0 (CLI_EXIT_OK),
 * or -ENOMEM for a NULL doc (the jansson call that built it ran out of memory). */
int cli_print_json(json_t *doc);
/* A command's result as the process's exit status: r itself when r >= 0; for a negative errno,
 * prints "usbforge: out of memory" (or strerror) and returns CLI_EXIT_FAIL. */
int cli_exit_status(int r);

/* Aligned text tables: cols (> 0) column headers; add rows of cols strings (NULL prints "-"),
 * stored escaped (utf8_escape_text), so the columns align on what is printed.
 * Each returns 0 or -ENOMEM (a row that could not be added is not added). */
struct table;
int table_new(size_t cols, const char *const *headers, struct table **ret);
int table_add(struct table *t, const char *const *cells);
int table_addf(struct table *t, ...); /* cols char* arguments */
int table_print(struct table *t, FILE *out);
struct table *table_free(struct table *t);

/* Who is acting, for audit rows: $SUDO_USER, else $USER, else "cli". */
const char *cli_actor(void);

/* Parse a positive integer id argument; returns 0 or -EINVAL. */
int cli_parse_id(const char *s, long long *ret);
