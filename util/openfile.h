/* Opening files that someone else named: a path from the command line, a config file, or a
 * database row that a shop, a sales bot or a clerk with SQL access may have written.
 *
 *   open_regular()   a path the caller chose (config file, password_file, `usbforge write`'s
 *                    source): opened with O_NONBLOCK so that a FIFO, a terminal or a device
 *                    cannot block the open, then checked with fstat on the descriptor; anything
 *                    but a regular file is refused with -EINVAL and its kind named.
 *   open_beneath()   a path relative to a root directory (content.root, content.images): the
 *                    kernel resolves it with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 *                    RESOLVE_NO_MAGICLINKS), so "..", an absolute path or a symlink anywhere on
 *                    the way fails (-EXDEV / -ELOOP) instead of leaving the root. Kernels
 *                    without openat2 (before 5.6) get an O_NOFOLLOW walk, one component at a
 *                    time. The descriptor is then checked like open_regular's.
 *
 * Both return a descriptor (O_RDONLY | O_CLOEXEC | O_NOCTTY, blocking again) or a negative
 * errno; *ret_st (may be NULL) is the fstat of that very descriptor, written only on success.
 * file_kind() names a mode for messages: "a FIFO", "a directory", … */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>

int open_regular(const char *path, struct stat *ret_st);
int open_beneath(int rootfd, const char *rel, struct stat *ret_st);
/* A directory beneath rootfd, under the same rules (O_DIRECTORY; -ENOTDIR otherwise); rel
 * NULL or "" reopens rootfd itself. */
int open_beneath_dir(int rootfd, const char *rel);
/* open_beneath's fallback for kernels without openat2; exported so the tests run it here. */
int open_beneath_walk(int rootfd, const char *rel, struct stat *ret_st);

/* Open a directory that serves as a root (content.root, content.images). The root itself
 * comes from the configuration, which is trusted: a symlinked root is followed. -ENOTDIR when
 * it is not a directory. */
int open_root_dir(const char *path);

/* True when rel is a path open_beneath can accept at all: relative, not empty, no "..", no
 * empty or "." components, no control characters, at most PATH_MAX. Checked before a path is
 * stored (order add, content scan) so that a bad row is refused with its reason, not at the
 * stick. */
bool path_is_safe_relative(const char *rel);

const char *file_kind(mode_t mode);

/* Why open_regular(path) (dirfd AT_FDCWD) or open_beneath(dirfd, path) failed with r, for a
 * message "PATH: why": "a FIFO, not a regular file", "a symbolic link on the way (not
 * followed)", "outside its folder (…)", or strerror's text. A constant string. */
const char *open_strerror(int dirfd, const char *path, int r);

/* path with "//", "/./" and a trailing "/" or "/." taken out (".." is left alone): the same
 * name, spelled once. "dir/." → "dir", "/a//b/" → "/a/b", "." → ".". malloc'd; NULL on ENOMEM. */
char *path_tidy(const char *path);

/* When path names something beneath root (root + "/" + rel, lexically; root's trailing
 * slashes ignored), rel; else NULL. Nothing is resolved: open_beneath() does the checking. */
const char *path_beneath(const char *root, const char *path);
