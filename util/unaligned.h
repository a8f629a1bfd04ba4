/* Little-endian fields at any byte offset of an on-disk structure (FAT boot sectors and
 * directory entries, the writer's resume map): <endian.h>'s htole/letoh conversions, and
 * memcpy for the unaligned access, which the compiler turns into one load or store. Header
 * only; no state. (systemd's unaligned.h has the same shape.) */
#pragma once

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline void unaligned_write_le16(void *p, uint16_t v)
{
	uint16_t le = htole16(v);
	memcpy(p, &le, sizeof(le));
}

static inline void unaligned_write_le32(void *p, uint32_t v)
{
	uint32_t le = htole32(v);
	memcpy(p, &le, sizeof(le));
}

static inline void unaligned_write_le64(void *p, uint64_t v)
{
	uint64_t le = htole64(v);
	memcpy(p, &le, sizeof(le));
}

static inline uint16_t unaligned_read_le16(const void *p)
{
	uint16_t le;
	memcpy(&le, p, sizeof(le));
	return le16toh(le);
}

static inline uint32_t unaligned_read_le32(const void *p)
{
	uint32_t le;
	memcpy(&le, p, sizeof(le));
	return le32toh(le);
}

static inline uint64_t unaligned_read_le64(const void *p)
{
	uint64_t le;
	memcpy(&le, p, sizeof(le));
	return le64toh(le);
}
