# The status page (http/page.html) and its event stream (http/sse.c) on a libmicrohttpd daemon
# of the test's own: no database, no usbforged.
uf_test(NAME test_sse SOURCES test_sse.c LIBS uf_http_server LABELS page)
