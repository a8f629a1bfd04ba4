# FAT32 composer and content selection suites, and the compose benchmark's driver
# (bench/fat_compose_bench runs it; bench/ is not part of the top-level build).
uf_test(NAME test_fat32 SOURCES test_fat32.c fat_testlib.c LIBS uf_fatfs PkgConfig::CRYPTO TIMEOUT 600 LABELS fat)
uf_test(NAME test_select SOURCES test_select.c fat_testlib.c LIBS uf_stages PkgConfig::CRYPTO TIMEOUT 600 LABELS fat)

# uf_fat_bench: selection + composer + the pipelined writer onto a device (the product path);
# bench/fat_compose_bench builds it in a Release build dir.
add_executable(uf_fat_bench ${CMAKE_SOURCE_DIR}/bench/fat_bench.c)
target_link_libraries(uf_fat_bench PRIVATE uf_stages uf_config uf_util PkgConfig::CRYPTO)

# The FAT32 oracle with the Linux vfat driver (issue 6): uf_fat_compose_tool composes a stick
# image from a content folder with the project's selection and composer and writes a manifest;
# tests/e2e/run-fat-e2e boots the QEMU guest on it (read-only) and compares the kernel's view
# (names, sizes, sha256) with the manifest, and runs fsck.fat -n. The fixture test builds the
# tool first (ctest does not build).
add_executable(uf_fat_compose_tool fat_compose_tool.c)
target_link_libraries(uf_fat_compose_tool PRIVATE uf_stages uf_util PkgConfig::CRYPTO)
add_test(NAME fat_e2e_tool COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target uf_fat_compose_tool)
set_tests_properties(fat_e2e_tool PROPERTIES FIXTURES_SETUP fat_e2e_tool LABELS e2e)
add_test(NAME fat_e2e COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/run-fat-e2e ${CMAKE_BINARY_DIR}
         $<TARGET_FILE:uf_fat_compose_tool>)
set_tests_properties(fat_e2e PROPERTIES TIMEOUT 600 LABELS e2e FIXTURES_REQUIRED fat_e2e_tool
  ENVIRONMENT "TZ=UTC") # FAT times are local: the guest's vfat reads them as UTC
