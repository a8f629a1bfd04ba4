# usb/ suites: the device table and its faulty wrapper, discovery and safety rules, libusb,
# hotplug monitor. Suites that make loop devices need root; they say so when they cannot.
uf_test(NAME test_dev SOURCES test_dev.c test_usb_loop.c LIBS uf_blkio)
uf_test(NAME test_usb_discover SOURCES test_usb_discover.c test_usb_loop.c LIBS uf_usb FAILALLOC)
uf_test(NAME test_usb_monitor SOURCES test_usb_monitor.c test_usb_loop.c LIBS uf_usb)
# `usbforge devices` below the binary: cli/cmd_devices.c with the CLI helpers.
uf_test(NAME test_usb_devices
        SOURCES test_usb_devices.c test_usb_loop.c ../cli/cmd_devices.c ../cli/util.c
        LIBS uf_usb uf_config PkgConfig::JANSSON FAILALLOC)
uf_test(NAME test_devcode SOURCES test_devcode.c LIBS uf_blkio)
