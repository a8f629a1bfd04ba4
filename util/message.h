/* Messages built with printf formats: the one place usbforge turns a format into a malloc'd
 * string. Every module that reports "what and where" in a message (the ret_error of a
 * function, a source's or writer's last error, a stage's failure) uses these rather than its
 * own vasprintf wrapper. */
#pragma once

#include <stdarg.h>

#include "util/macro.h"

/* The formatted text, malloc'd; NULL when memory ran out. */
char *str_vprintf(const char *fmt, va_list ap) _printf_(1, 0);
char *str_printf(const char *fmt, ...) _printf_(1, 2);

/* Replace *slot (freed) with the formatted text (NULL when memory ran out). */
void str_vset(char **slot, const char *fmt, va_list ap) _printf_(2, 0);
void str_set(char **slot, const char *fmt, ...) _printf_(2, 3);

/* The error-reporting idiom "fill *ret_error when the caller asked for it, return the
 * error": *ret_error (when ret_error is not NULL) = the formatted text, malloc'd, or NULL when
 * memory ran out; returns r. */
int error_set(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
