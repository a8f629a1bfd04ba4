# The outbox relay (worker/relay.h, db/outbox.h): real usbforged processes on the real MariaDB
# delivering to a receiver inside the test (libmicrohttpd on 127.0.0.1), the CLI's catch-up
# commands.
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
uf_test(NAME test_relay SOURCES test_relay.c LIBS uf_db PkgConfig::MHD PkgConfig::JANSSON PkgConfig::CRYPTO DB
        TIMEOUT 400 LABELS relay)
add_dependencies(test_relay usbforged usbforge)
