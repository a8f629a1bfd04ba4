# The real-kernel USB end-to-end test (issue 4): Debian's kernel under QEMU (TCG) with two
# emulated usb-storage sticks, the usbforge binary in a busybox initramfs (tests/e2e/).
# Needs the usbforge target built; installs what it needs through scripts/setup --e2e and
# fails loudly (never skips) when the kernel or QEMU cannot be had.
add_test(NAME usb_e2e COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/run-usb-e2e ${CMAKE_BINARY_DIR})
set_tests_properties(usb_e2e PROPERTIES TIMEOUT 600 LABELS e2e)

# The daemon's real-kernel end-to-end test: usbforged in udev mode in the same kind of guest,
# against the private MariaDB (fixture db) through QEMU's one forwarded port; a stick plugged in
# while it runs, another pulled mid-write, every outcome checked from SQL (tests/e2e/run-usbd-e2e).
add_test(NAME usbd_e2e COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/run-usbd-e2e ${CMAKE_BINARY_DIR})
set_tests_properties(usbd_e2e PROPERTIES TIMEOUT 600 LABELS e2e FIXTURES_REQUIRED db)

# uf_monitor_watch: the hotplug watcher as a program for the guest (prints one line per event);
# run-usb-e2e passes it in with --bin when it is built.
add_executable(uf_monitor_watch ${CMAKE_CURRENT_SOURCE_DIR}/e2e/uf_monitor_watch.c)
target_link_libraries(uf_monitor_watch PRIVATE uf_usb uf_config uf_util)
