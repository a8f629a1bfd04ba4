# The status page (http/page.html) and its event stream (http/sse.c) on a libmicrohttpd daemon
# of the test's own: no database, no usbforged.
uf_test(NAME test_sse SOURCES test_sse.c LIBS uf_http_server LABELS page)
# The page in Debian's chromium against a real usbforged (tests/page/run-page): slots brought
# to writing, done and bad, the tiles' text asserted in the DOM, the screenshot kept as
# BUILD_DIR/page/status-page.png. Needs the private MariaDB (fixture db) and chromium
# (scripts/setup --e2e).
add_test(NAME page_browser COMMAND ${CMAKE_SOURCE_DIR}/tests/page/run-page ${CMAKE_BINARY_DIR})
set_tests_properties(page_browser PROPERTIES TIMEOUT 240 LABELS page FIXTURES_REQUIRED db ENVIRONMENT "TZ=UTC")
# A board with a slot in each state behind the daemon's server, for run-page's states.py.
add_executable(page_states page/page_states.c)
target_link_libraries(page_states PRIVATE uf_http_server)
