#include "util/monotime.h"

#include <time.h>

uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

double mono_s(void) { return (double)mono_ns() / 1e9; }

int64_t mono_ms(void) { return (int64_t)(mono_ns() / 1000000); }
