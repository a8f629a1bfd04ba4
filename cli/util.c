/* Output helpers of cli/cli.h: aligned tables, JSON documents, error messages, config. Every
 * text they print goes through utf8_escape_text() (util/utf8.h): a customer name, order number,
 * file name or log message read from the database or argv never reaches the terminal with its
 * control characters raw. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "cli/cli.h"
#include "util/macro.h"
#include "util/message.h"
#include "util/utf8.h"

int cli_load_config(struct cli *c)
{
	_cleanup_free_ char *err = NULL;
	if (c->config_loaded)
		return 0;
	int r = config_load_default(c->config_path, &c->cfg, &err);
	if (r < 0)
		return cli_error(CLI_EXIT_USAGE, "%s", err ? err : "cannot load the configuration");
	c->config_loaded = true;
	return 0;
}

/* Print prefix, the formatted message with its control characters escaped, and '\n'. */
static void print_escaped(FILE *out, const char *prefix, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
static void print_escaped(FILE *out, const char *prefix, const char *fmt, va_list ap)
{
	_cleanup_free_ char *m = NULL, *e = NULL;
	m = str_vprintf(fmt, ap);
	e = m ? utf8_escape_text(m, 0) : NULL;
	fputs(prefix, out);
	fputs(e ? e : "out of memory (while formatting a message)", out);
	fputc('\n', out);
}

int cli_error(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	print_escaped(stderr, "usbforge: ", fmt, ap);
	va_end(ap);
	return status;
}

void cli_warning(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	print_escaped(stderr, "usbforge: warning: ", fmt, ap);
	va_end(ap);
}

void cli_usage_message(const char *cmd, const char *usage, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	print_escaped(stderr, "usbforge: ", fmt, ap);
	va_end(ap);
	fprintf(stderr, "usage: usbforge %s %s\n", cmd, usage ? usage : "");
}

int cli_line(FILE *out, const char *fmt, ...)
{
	va_list ap;
	_cleanup_free_ char *m = NULL, *e = NULL;
	va_start(ap, fmt);
	m = str_vprintf(fmt, ap);
	va_end(ap);
	e = m ? utf8_escape_text(m, 0) : NULL;
	if (!e)
		return -ENOMEM;
	fputs(e, out);
	fputc('\n', out);
	return 0;
}

int cli_print_json(json_t *doc)
{
	if (!doc)
		return -ENOMEM;
	json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	fputc('\n', stdout);
	json_decref(doc);
	return 0;
}

int cli_exit_status(int r)
{
	if (r >= 0)
		return r;
	return cli_error(CLI_EXIT_FAIL, "%s", r == -ENOMEM ? "out of memory" : strerror(-r));
}

int cli_parse_id(const char *s, long long *ret)
{
	char *end;
	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v <= 0)
		return -EINVAL;
	*ret = v;
	return 0;
}

struct table {
	size_t cols, rows, cap;
	char **cells; /* rows+1 (header) × cols */
};

int table_new(size_t cols, const char *const *headers, struct table **ret)
{
	struct table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->cols = cols;
	int r = table_add(t, headers);
	if (r < 0) {
		table_free(t);
		return r;
	}
	*ret = t;
	return 0;
}

int table_add(struct table *t, const char *const *cells)
{
	if (t->rows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **c = reallocarray(t->cells, cap * t->cols, sizeof(char *));
		if (!c)
			return -ENOMEM;
		t->cells = c;
		t->cap = cap;
	}
	char **row = t->cells + t->rows * t->cols;
	for (size_t i = 0; i < t->cols; i++) {
		row[i] = utf8_escape_text(cells[i] ? cells[i] : "-", 0);
		if (!row[i]) {
			while (i > 0)
				free(row[--i]);
			return -ENOMEM;
		}
	}
	t->rows++;
	return 0;
}

int table_addf(struct table *t, ...)
{
	va_list ap;
	_cleanup_free_ const char **cells = calloc(t->cols, sizeof(char *));
	if (!cells)
		return -ENOMEM;
	va_start(ap, t);
	for (size_t i = 0; i < t->cols; i++)
		cells[i] = va_arg(ap, const char *);
	va_end(ap);
	return table_add(t, cells);
}

/* Display width of a UTF-8 string (wide characters count 2). */
static size_t display_width(const char *s)
{
	mbstate_t st = { 0 };
	size_t w = 0;
	wchar_t wc;
	size_t n;
	while (*s && (n = mbrtowc(&wc, s, MB_CUR_MAX, &st)) != 0) {
		if (n == (size_t)-1 || n == (size_t)-2) {
			w++;
			s++;
			memset(&st, 0, sizeof(st));
			continue;
		}
		int cw = wcwidth(wc);
		w += cw > 0 ? (size_t)cw : 0;
		s += n;
	}
	return w;
}

int table_print(struct table *t, FILE *out)
{
	_cleanup_free_ size_t *w = calloc(t->cols, sizeof(size_t));
	if (!w)
		return -ENOMEM;
	for (size_t r = 0; r < t->rows; r++)
		for (size_t c = 0; c < t->cols; c++)
			w[c] = MAX(w[c], display_width(t->cells[r * t->cols + c]));
	for (size_t r = 0; r < t->rows; r++) {
		for (size_t c = 0; c < t->cols; c++) {
			const char *s = t->cells[r * t->cols + c];
			fputs(s, out);
			if (c + 1 < t->cols)
				for (size_t p = display_width(s); p < w[c] + 2; p++)
					fputc(' ', out);
		}
		fputc('\n', out);
	}
	return 0;
}

struct table *table_free(struct table *t)
{
	if (!t)
		return NULL;
	for (size_t i = 0; i < t->rows * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
	return NULL;
}

const char *cli_actor(void)
{
	const char *u = getenv("SUDO_USER");
	if (!u || !*u)
		u = getenv("USER");
	return u && *u ? u : "cli";
}
