# The HTTP server and API (http/server.h, http/api.h): a real server over loopback, the real
# MariaDB, libcurl as the client; one test runs it inside usbforged.
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
uf_test(NAME test_http_api SOURCES test_http_api.c LIBS uf_http_server PkgConfig::CURL PkgConfig::JANSSON DB
        TIMEOUT 300 LABELS http)
add_dependencies(test_http_api usbforged usbforge)
