/* The API's bearer token: read from http.token_file, opened confined, and compared in constant
 * time. The file must be a regular file (not a symlink: O_NOFOLLOW, checked on the open
 * descriptor) owned by the daemon's user, with mode 0600 or 0400 — or 0640/0440 when its group
 * is the daemon's group, owned by that user or by root (the package's root:usbforge 0640);
 * anything looser is refused. Its first line is the token: 16 to 1024
 * visible ASCII characters (no spaces). */
#pragma once

#include <stdbool.h>

#define TOKEN_MIN_LEN 16
#define TOKEN_MAX_LEN 1024

/* *ret_token malloc'd (wipe with token_free). 0, or -errno with *ret_error (malloc'd, may be
 * NULL on ENOMEM) naming the file and what is wrong: -ELOOP a symlink, -EINVAL not a regular
 * file / a loose mode / wrong owner / a bad token, -ENOENT, -EACCES…, -ENOMEM. */
int token_load(const char *path, char **ret_token, char **ret_error);
/* Wipes and frees; NULL safe; returns NULL. */
char *token_free(char *token);
/* Whether the Authorization header value (may be NULL) is "Bearer <token>"; token NULL never
 * matches. Time does not depend on where the two differ (both sides are hashed, then compared
 * with CRYPTO_memcmp). */
bool token_matches(const char *token, const char *authorization);
