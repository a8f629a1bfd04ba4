/* The status page, GET /: one self-contained HTML document (http/page.html, embedded at build
 * time by http/embed.cmake; inline style and script, no other asset) that shows one tile per
 * slot and follows the board through GET /v1/slots/events (http/sse.h).
 *
 * Its Content-Security-Policy allows nothing but the page's own inline style sheet and script,
 * by their SHA-256 hashes (worked out once from the embedded document), and connections to the
 * page's own origin (the event stream). */
#pragma once

#include <microhttpd.h>
#include <stddef.h>

/* The embedded document (NUL-terminated) and its length. */
extern const unsigned char page_html[];
extern const size_t page_html_len;

/* The Content-Security-Policy header's value: "default-src 'self'; script-src 'sha256-…'; …".
 * Static storage, worked out on first use; NULL if the document has not exactly one <style>
 * and one <script> (a build mistake) or on ENOMEM. Thread-safe. */
const char *page_csp(void);
/* The page's response (the document, Content-Type text/html; charset=utf-8, Cache-Control
 * no-store, the CSP and a few hardening headers), for the caller to queue with status 200 and
 * destroy. 0, or -ENOMEM, -EINVAL (page_csp() failed). */
int page_response(struct MHD_Response **ret);

struct http_request;
/* GET / (a row of http/routes.c). */
enum MHD_Result page_get(struct http_request *req);
