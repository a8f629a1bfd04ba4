/* The monotonic clock, in one place: every deadline, rate and timeout of the product reads it
 * here (CLOCK_MONOTONIC: never steps with the wall clock, an NTP correction or a DST change). */
#pragma once

#include <stdint.h>

/* Nanoseconds since an arbitrary start. */
uint64_t mono_ns(void);
/* The same in milliseconds, and in seconds. */
int64_t mono_ms(void);
double mono_s(void);
