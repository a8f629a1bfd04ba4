/* Shared by the block-source targets: read a whole block source through the blksrc API and
 * check what the writer relies on (image/blksrc.h). */
#pragma once

#include <stdint.h>

#include "image/blksrc.h"

/* Read src to its end or its first error. Properties: every extent starts on a 4096-byte
 * boundary, after the previous one, and ends within src->size; only the last extent may end
 * off a 4096-byte boundary; at the end the bytes produced are src->mapped; an error has a
 * message. When expect is not NULL, each extent's bytes equal expect at their offset (expect
 * holds src->size bytes). Stops quietly after 1 GiB (a decompression bomb is no finding).
 * Returns 0 at the end, or the source's error. */
int fuzz_drain(struct blksrc *src, const uint8_t *expect);
