# The CLI against hostile input: terminal-safe text output, orders that can be fulfilled.
uf_test(NAME test_cli_safe SOURCES test_cli_safe.c LIBS uf_db PkgConfig::JANSSON DB)
add_dependencies(test_cli_safe usbforge)
