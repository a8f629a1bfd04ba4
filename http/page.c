/* Implementation of http/page.h. */
#include "http/page.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "http/server.h"
#include "util/macro.h"
#include "util/message.h"

static pthread_once_t csp_once = PTHREAD_ONCE_INIT;
static char *csp;

/* The text between "<tag>" and "</tag>" of the document, when the tag occurs exactly once. */
static int element_body(const char *doc, const char *tag, const char **ret, size_t *ret_len)
{
	_cleanup_free_ char *open = str_printf("<%s>", tag), *close = str_printf("</%s>", tag);
	if (!open || !close)
		return -ENOMEM;
	const char *a = strstr(doc, open);
	if (!a || strstr(a + 1, open))
		return -EINVAL;
	a += strlen(open);
	const char *b = strstr(a, close);
	if (!b)
		return -EINVAL;
	*ret = a;
	*ret_len = (size_t)(b - a);
	return 0;
}

/* "'sha256-BASE64'" of the element's text, as CSP hashes it (the exact bytes between the tags). */
static char *element_hash(const char *doc, const char *tag)
{
	const char *body;
	size_t len;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	if (element_body(doc, tag, &body, &len) < 0 || EVP_Digest(body, len, md, &md_len, EVP_sha256(), NULL) != 1)
		return NULL;
	unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
	EVP_EncodeBlock(b64, md, (int)md_len);
	return str_printf("'sha256-%s'", (const char *)b64);
}

static void csp_init(void)
{
	_cleanup_free_ char *script = element_hash((const char *)page_html, "script");
	_cleanup_free_ char *style = element_hash((const char *)page_html, "style");
	if (script && style)
		csp = str_printf("default-src 'self'; script-src %s; style-src %s; connect-src 'self'; img-src 'self'; "
				 "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
				 script, style);
}

const char *page_csp(void)
{
	pthread_once(&csp_once, csp_init);
	return csp;
}

int page_response(struct MHD_Response **ret)
{
	const char *policy = page_csp();
	if (!policy)
		return -EINVAL;
	struct MHD_Response *r =
		MHD_create_response_from_buffer(page_html_len, (void *)page_html, MHD_RESPMEM_PERSISTENT);
	if (!r)
		return -ENOMEM;
	static const char *const headers[][2] = {
		{ MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8" },
		{ MHD_HTTP_HEADER_CACHE_CONTROL, "no-store" },
		{ "X-Content-Type-Options", "nosniff" },
		{ "X-Frame-Options", "DENY" },
		{ "Referrer-Policy", "no-referrer" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(headers); i++)
		if (MHD_add_response_header(r, headers[i][0], headers[i][1]) != MHD_YES) {
			MHD_destroy_response(r);
			return -ENOMEM;
		}
	if (MHD_add_response_header(r, "Content-Security-Policy", policy) != MHD_YES) {
		MHD_destroy_response(r);
		return -ENOMEM;
	}
	*ret = r;
	return 0;
}

enum MHD_Result page_get(struct http_request *req)
{
	struct MHD_Response *r = NULL;
	if (page_response(&r) < 0)
		return http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "INTERNAL",
					"the status page is not available");
	enum MHD_Result q = MHD_queue_response(req->conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return q;
}
