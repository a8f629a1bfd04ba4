# The Debian package test (issue 13): scripts/package's .deb installed with apt into a minimal
# Debian 12 root (cached in ~/.cache/usbforge, tests/package/bookworm-root) booted with
# systemd-nspawn; usbforged READY in its sandbox against the private MariaDB (fixture db), migrate,
# devices, reload, stop, the unit's exposure and verify, remove and purge (tests/package/).
# Needs root; builds the package in BUILD_DIR/pkg. About 30 s once the root and the package
# build exist (the first run: about a minute for debootstrap, one for the build).
add_test(NAME package COMMAND ${CMAKE_SOURCE_DIR}/tests/package/run-package-test ${CMAKE_BINARY_DIR})
set_tests_properties(package PROPERTIES TIMEOUT 900 LABELS package FIXTURES_REQUIRED db)

# The unit generated for this build's prefix, checked offline (a second, no root needed).
add_test(NAME unit_exposure COMMAND ${CMAKE_SOURCE_DIR}/tests/package/check-unit-exposure
         ${CMAKE_BINARY_DIR}/systemd/usbforged.service 2.0)
set_tests_properties(unit_exposure PROPERTIES TIMEOUT 60 LABELS package)
