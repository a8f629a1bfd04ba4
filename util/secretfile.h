/* Secret files: a bearer token (http.token_file), a webhook's signing secret
 * (events.secret_file). The file is opened confined and checked on the open descriptor: a
 * regular file (not a symlink: O_NOFOLLOW), owned by the process's effective uid, with mode 0600
 * or 0400 — or 0640/0440 when its group is the process's effective group, and then owned by that
 * uid or by root (a package's root:usbforge 0640); anything looser is refused. Its first line
 * is the secret: visible ASCII characters without spaces, of a length the caller bounds. Every message names the key and the file, never the secret. */
#pragma once

#include <stddef.h>

/* Read the secret of path into *ret_secret (malloc'd; wipe it with secretfile_free). key is the
 * configuration key that named the file ("http.token_file"), what the thing the file holds
 * ("token", "secret"): both only for messages. The first line must hold min_len to max_len
 * (max_len ≤ 4096) visible ASCII characters. 0, or -errno with *ret_error (malloc'd, may be NULL
 * on ENOMEM) naming the key, the file and what is wrong: -ELOOP a symlink, -EINVAL not a regular
 * file / a loose mode / the wrong owner / a bad or empty first line, -ENOENT, -EACCES…, -ENOMEM. */
int secretfile_read(const char *key, const char *what, const char *path, size_t min_len, size_t max_len,
		    char **ret_secret, char **ret_error);
/* Wipes and frees; NULL safe; returns NULL. */
char *secretfile_free(char *secret);
