/* Station and slot names: the one rule the config (station, usb.slots[].name) and the CLI
 * (`order add --station`) share, so that an order can only name a station a kiosk can have. */
#pragma once

#include <stdbool.h>

#define NAME_MAX_LEN 64 /* VARCHAR(64) of station and slot in the schema */

/* Whether every character of s is one of [A-Za-z0-9._:-] (an empty s passes: callers that
 * report emptiness and length separately check those first). */
bool name_chars_ok(const char *s);

/* Whether s is a valid station or slot name: 1 to NAME_MAX_LEN characters of [A-Za-z0-9._:-]. */
bool name_valid(const char *s);
