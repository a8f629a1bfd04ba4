/* Implementation of util/name.h. */
#include "util/name.h"

#include <string.h>

bool name_chars_ok(const char *s)
{
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '_' || *p == ':' || *p == '-'))
			return false;
	return true;
}

bool name_valid(const char *s) { return *s && strlen(s) <= NAME_MAX_LEN && name_chars_ok(s); }
