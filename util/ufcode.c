/* Name table and retry classification of the job error codes. */
#include "util/ufcode.h"

#include <string.h>

#include "util/macro.h"

static const char *const names[_UFC_MAX] = {
	[UFC_CONFIG_INVALID] = "CONFIG_INVALID",
	[UFC_DB_UNAVAILABLE] = "DB_UNAVAILABLE",
	[UFC_ORDER_INVALID] = "ORDER_INVALID",
	[UFC_CONTENT_MISSING] = "CONTENT_MISSING",
	[UFC_CONTENT_CHANGED] = "CONTENT_CHANGED",
	[UFC_CONTENT_TOO_LARGE] = "CONTENT_TOO_LARGE",
	[UFC_IMAGE_UNREADABLE] = "IMAGE_UNREADABLE",
	[UFC_DEVICE_GONE] = "DEVICE_GONE",
	[UFC_DEVICE_TOO_SMALL] = "DEVICE_TOO_SMALL",
	[UFC_DEVICE_READ_ONLY] = "DEVICE_READ_ONLY",
	[UFC_DEVICE_FAKE_CAPACITY] = "DEVICE_FAKE_CAPACITY",
	[UFC_DEVICE_UNSAFE] = "DEVICE_UNSAFE",
	[UFC_WRITE_IO] = "WRITE_IO",
	[UFC_VERIFY_MISMATCH] = "VERIFY_MISMATCH",
	[UFC_STUCK_TIMEOUT] = "STUCK_TIMEOUT",
	[UFC_CANCELLED] = "CANCELLED",
	[UFC_PROCESSING_FAILED] = "PROCESSING_FAILED",
};

const char *uf_code_name(enum uf_code c)
{
	if ((int)c <= 0 || c >= _UFC_MAX)
		return NULL;
	return names[c];
}

int uf_code_from_name(const char *s)
{
	if (!s)
		return -1;
	for (int i = 1; i < _UFC_MAX; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

enum uf_code_class uf_code_class(enum uf_code c)
{
	switch (c) {
	case UFC_NONE:
		return UFC_CLASS_NONE;
	case UFC_WRITE_IO:
	case UFC_VERIFY_MISMATCH:
	case UFC_DEVICE_GONE:
	case UFC_STUCK_TIMEOUT:
	case UFC_DB_UNAVAILABLE:
	case UFC_PROCESSING_FAILED:
		return UFC_CLASS_RETRYABLE;
	case UFC_DEVICE_TOO_SMALL:
	case UFC_DEVICE_READ_ONLY:
	case UFC_DEVICE_FAKE_CAPACITY:
	case UFC_DEVICE_UNSAFE:
		return UFC_CLASS_BAD_STICK;
	case UFC_CANCELLED:
		return UFC_CLASS_CANCELLED;
	default:
		return UFC_CLASS_PERMANENT;
	}
}
