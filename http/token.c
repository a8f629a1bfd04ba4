/* Implementation of http/token.h: the file's rules are util/secretfile.h's. */
#include "http/token.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>

#include "util/secretfile.h"

char *token_free(char *token) { return secretfile_free(token); }

int token_load(const char *path, char **ret_token, char **ret_error)
{
	return secretfile_read("http.token_file", "token", path, TOKEN_MIN_LEN, TOKEN_MAX_LEN, ret_token, ret_error);
}

bool token_matches(const char *token, const char *authorization)
{
	static const char prefix[] = "Bearer ";
	unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];

	if (!token || !authorization || strncasecmp(authorization, prefix, sizeof(prefix) - 1) != 0)
		return false;
	const char *given = authorization + sizeof(prefix) - 1;
	size_t n = strnlen(given, TOKEN_MAX_LEN + 1);
	SHA256((const unsigned char *)given, n, a);
	SHA256((const unsigned char *)token, strlen(token), b);
	return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}
