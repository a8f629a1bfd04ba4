# Database layer suites (real MariaDB: scripts/db start).
uf_test(NAME test_db SOURCES test_db.c LIBS uf_db DB)
uf_test(NAME test_schema SOURCES test_schema.c LIBS uf_db DB)
uf_test(NAME test_orders SOURCES test_orders.c LIBS uf_db DB)
uf_test(NAME test_worker SOURCES test_worker.c test_usb_loop.c LIBS uf_db DB TIMEOUT 900)
add_dependencies(test_worker usbforged usbforge)
uf_test(NAME test_content SOURCES test_content.c LIBS uf_db DB)
uf_test(NAME test_cli SOURCES test_cli.c LIBS uf_db PkgConfig::JANSSON DB)
add_dependencies(test_cli usbforge)
