/* Tiny sysfs readers shared inside usb/ (safety.c, discover.c, reset.c). The attribute readers
 * take a directory and an attribute name relative to it, and return 0 or -errno; strings are
 * malloc'd with trailing whitespace removed. Private to usb/. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

int sysfs_read(const char *dir, const char *name, char **ret);
int sysfs_read_u64(const char *dir, const char *name, uint64_t *ret);
/* Value of KEY=value in dir/uevent; -ENOENT when absent. */
int sysfs_uevent_get(const char *dir, const char *key, char **ret);
/* 1 when dir/name exists, 0 when not, -ENOMEM. */
int sysfs_exists(const char *dir, const char *name);
/* "8:16" → makedev(8, 16); -EINVAL otherwise. */
int sysfs_parse_devnum(const char *s, dev_t *ret);
/* Call fn with the path of every entry of <sysfs>/class/block ("/sys/class/block/sda"), in
 * directory order, until it returns non-zero; returns that value (> 0: stopped early), 0 after
 * the last entry, or -errno when the directory cannot be read. */
int sysfs_for_each_block(const char *sysfs, int (*fn)(const char *syspath, void *userdata), void *userdata);
