# `usbforge write / verify / probe` through the built binary (cli/cmd_write.c). The suite
# spawns $UF_BINARY_DIR/cli/usbforge, so the binary must be built first.
uf_test(NAME test_cli_write SOURCES test_cli_write.c test_usb_loop.c TIMEOUT 120)
add_dependencies(test_cli_write usbforge)
