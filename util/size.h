/* Strict parsing and printing of sizes and durations, as the config and the CLI accept them.
 * Garbage is an error, never a silent 0. */
#pragma once

#include <stdint.h>
#include <stddef.h>

/* "16G"/"16GB" (decimal, 10^9), "16GiB" (binary), "512M", "4KiB", "123" (bytes), "1.5G".
 * Suffixes K/M/G/T with optional B are decimal; Ki/Mi/Gi/Ti with optional B are binary.
 * Case-insensitive for the letters; no sign, no spaces inside, digits on both sides of a ".";
 * the value must be a whole number of bytes ("1.5" is refused). Returns 0, -EINVAL on garbage,
 * -ERANGE on overflow; *ret is written only on success. */
int parse_size(const char *s, uint64_t *ret);
/* Seconds, integer or decimal ("5", "0.25"); optional "s" suffix. No exponent, hex, sign or
 * blanks (-EINVAL); negative or too large to be finite is -ERANGE. *ret is written only on
 * success. */
int parse_duration(const char *s, double *ret);
/* "4.0 GiB", "512 MiB", "100 B" into buf. Returns buf. */
char *format_size(uint64_t bytes, char *buf, size_t len);
