/* Private glue between the device table's implementations (usb/dev.c, usb/dev_faulty.c).
 * Not for stages or tests of other areas. */
#pragma once

#include <stdbool.h>

#include "usb/dev.h"

/* The device wrapped by a faulty device, or NULL when d is not a faulty device. */
struct dev *dev_faulty_inner(struct dev *d);
/* True when the innermost real device uses O_DIRECT (false for a buffered fallback). */
bool dev_is_direct(const struct dev *d);
